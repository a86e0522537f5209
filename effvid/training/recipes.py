"""The original TSM training recipes (Lin, Gan, Han, ICCV 2019, and its official scripts) as
:class:`~effvid.training.config.TrainConfig` values, with the learning rate scaled to the run's
batch.

A recipe's learning rate was set for a batch of ``batch`` clips over all GPUs; the paper scales it
linearly with the batch, and a run that copies the number without scaling trains at the wrong
rate (a common reason that reproductions fall short). :func:`recipe_values` does the scaling
for ``batch_size`` clips per process times the number of processes.

What the paper and RESEARCH.md state is kept apart from what they do not (``unstated``): those
values are effvid's choice, said so when the recipe is used.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    summary: str
    batch: int                     # the batch the learning rate was set for (all GPUs together)
    values: dict                   # TrainConfig fields
    unstated: tuple[str, ...] = ()  # fields of ``values`` that the sources do not give
    fine_tunes: str | None = None   # the model it starts from, which --init-weights gives (else ImageNet's)


# Shared by the three: SGD with momentum 0.9, gradient clipping at 20, step decay x0.1, the new
# classifier at 5x the learning rate (10x its bias).
_SGD = dict(optimizer="sgd", momentum=0.9, clip_grad=20.0, schedule="step", fc_lr_mult=5.0, warmup_epochs=0.0)

RECIPES = {
    "kinetics": Recipe(
        "TSM on Kinetics from ImageNet: 50 epochs, steps at 20 and 40, lr 0.02 at batch 128, "
        "weight decay 1e-4, dropout 0.5",
        batch=128,
        values=dict(_SGD, epochs=50, lr_steps=[20, 40], lr=0.02, weight_decay=1e-4, dropout=0.5)),
    "something": Recipe(
        "TSM on Something-Something v1/v2 from ImageNet: 50 epochs, lr 0.01 at batch 64, weight "
        "decay 5e-4, dropout 0.5, no horizontal flips",
        batch=64,
        values=dict(_SGD, epochs=50, lr_steps=[20, 40], lr=0.01, weight_decay=5e-4, dropout=0.5, flip=False),
        unstated=("lr_steps",)),
    "ucf101-finetune": Recipe(
        "TSM fine-tuned on UCF101 from a Kinetics model: 25 epochs, lr 0.001 at batch 64, "
        "partial BatchNorm, dropout 0.8",
        batch=64,
        values=dict(_SGD, epochs=25, lr_steps=[10, 20], lr=0.001, weight_decay=5e-4, dropout=0.8,
                    partial_bn=True),
        unstated=("lr_steps", "weight_decay", "fc_lr_mult"),
        fine_tunes="a Kinetics model (an effvid .safetensors or the original TSM_kinetics_*.pth)"),
}


def recipe_values(name: str, batch_size: int, world_size: int = 1, lr: float | None = None,
                  init_weights: str | None = None, imagenet_weights: str | None = None,
                  epochs: int | None = None, lr_steps: list[int] | None = None) -> tuple[dict, str]:
    """The TrainConfig values of recipe ``name`` for ``batch_size`` clips per process on
    ``world_size`` processes, and a line that says what was applied. ``lr`` (given by the user)
    replaces the scaled learning rate; without the weights its settings assume (``init_weights``
    for a fine-tuning recipe, else ``imagenet_weights`` or ``init_weights``) the line says what to
    start from: from random weights those settings do not train as the paper's did. Other
    ``epochs`` (given by the user) move the recipe's decay steps in proportion, unless
    ``lr_steps`` are given too: steps at 20 and 40 of 50 epochs never came in a 15-epoch run."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}: choose one of {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    values = dict(recipe.values)
    batch = batch_size * world_size
    if lr is None:
        values["lr"] = recipe.values["lr"] * batch / recipe.batch
        rate = (f"lr {recipe.values['lr']:g} at batch {recipe.batch} scaled to {values['lr']:.4g} for "
                f"batch {batch_size}" + (f" x {world_size} processes" if world_size > 1 else ""))
    else:
        del values["lr"]
        rate = f"lr {lr:g} as given (the recipe's: {recipe.values['lr']:g} at batch {recipe.batch})"
    line = f"recipe {name}: {recipe.summary}; {rate}"
    if epochs is not None and lr_steps is None and epochs != recipe.values["epochs"]:
        steps = sorted({max(1, round(s * epochs / recipe.values["epochs"])) for s in recipe.values["lr_steps"]})
        values["lr_steps"] = steps
        line += f"; for {epochs} epochs the steps at {', '.join(map(str, steps))}"
    if recipe.unstated:
        line += ("; not given by the paper, effvid's choice: "
                 + ", ".join(f"{k}={recipe.values[k]}" for k in recipe.unstated))
    if recipe.fine_tunes and not init_weights:
        line += f"; it fine-tunes {recipe.fine_tunes}: give it with --init-weights"
    elif not recipe.fine_tunes and not (imagenet_weights or init_weights):
        line += ("; it starts from ImageNet weights: give them with --imagenet-weights (without, "
                 "the model starts from random weights)")
    return values, line
