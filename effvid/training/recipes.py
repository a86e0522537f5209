"""The original TSM training recipes (Lin, Gan, Han, ICCV 2019, and its official scripts) as
:class:`~effvid.training.config.TrainConfig` values, with the learning rate scaled to the run's
batch.

A recipe's learning rate was set for a batch of ``batch`` clips over all GPUs; the paper scales it
linearly with the batch, and a run that copies the number without scaling trains at the wrong
rate (a common reason that reproductions fall short). :func:`recipe_values` does the scaling
for ``batch_size`` clips per process times the number of processes.

Values that RESEARCH.md's summary of the paper does not give name the file of the official
repository (mit-han-lab/temporal-shift-module) they come from (``official_code``), said so when
the recipe is used: none is effvid's own choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import plural


@dataclass(frozen=True)
class Recipe:
    summary: str                   # what it trains, from what
    batch: int                     # the batch the learning rate was set for (all GPUs together)
    values: dict                   # TrainConfig fields
    # fields of ``values`` taken from the official code, and where: its file and what there
    official_code: dict = field(default_factory=dict)
    fine_tunes: str | None = None   # the model it starts from, which --init-weights gives (else ImageNet's)


# Shared by the three: SGD with momentum 0.9, gradient clipping at 20, step decay x0.1. The
# classifier's multiplier is the run's decision, as main.py's fc_lr5 = not (tune_from and
# dataset in tune_from): 5x (10x its bias) for a new classifier, 1x for one --init-weights keeps
# (set here, it trained a kept classifier at 5x).
_SGD = dict(optimizer="sgd", momentum=0.9, clip_grad=20.0, schedule="step", warmup_epochs=0.0)

RECIPES = {
    "kinetics": Recipe(
        "TSM on Kinetics from ImageNet",
        batch=128,
        values=dict(_SGD, epochs=50, lr_steps=[20, 40], lr=0.02, weight_decay=1e-4, dropout=0.5)),
    "something": Recipe(
        "TSM on Something-Something v1/v2 from ImageNet",
        batch=64,
        values=dict(_SGD, epochs=50, lr_steps=[20, 40], lr=0.01, weight_decay=5e-4, dropout=0.5, flip=False),
        official_code={"lr_steps": "README.md's Something-Something command"}),
    "ucf101-finetune": Recipe(
        "TSM fine-tuned on UCF101 from a Kinetics model",
        batch=64,
        values=dict(_SGD, epochs=25, lr_steps=[10, 20], lr=0.001, weight_decay=5e-4, dropout=0.8,
                    partial_bn=True),
        official_code={"lr_steps": "scripts/finetune_tsm_ucf101_rgb_8f.sh",
                       "weight_decay": "opts.py's default"},
        fine_tunes="a Kinetics model (an effvid .safetensors or the original TSM_kinetics_*.pth)"),
}


def number_text(v) -> str:
    """1e-4 rather than 0.0001; 0.5 and 20 as they are."""
    if isinstance(v, float) and v and abs(v) < 1e-2:
        mantissa, exponent = f"{v:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _and(items) -> str:
    items = [str(i) for i in items]
    return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


def _schedule(values: dict) -> str:
    if values["schedule"] != "step":
        return f"{values['schedule']} schedule"
    return f"steps at {_and(values['lr_steps'])}" if values["lr_steps"] else "no steps"


# How the line names a recipe's value: (words before it, the value in words). The first six are
# always named when the recipe sets them; the others (the docs' "SGD, momentum 0.9, ...", shared
# by all) only when the user changed them.
_WORDS = {
    "epochs": ("", lambda v: plural(v, "epoch")),
    "schedule": ("", None),  # with lr_steps: _schedule
    "weight_decay": ("weight decay ", number_text),
    "dropout": ("dropout ", number_text),
    "flip": ("", lambda v: "horizontal flips" if v else "no horizontal flips"),
    "partial_bn": ("", lambda v: "partial BatchNorm" if v else "no partial BatchNorm"),
    "optimizer": ("optimizer ", str),
    "momentum": ("momentum ", number_text),
    "clip_grad": ("gradient clip ", lambda v: "none" if v is None else number_text(v)),
    "fc_lr_mult": ("the classifier's lr x", number_text),
    "warmup_epochs": ("warm-up epochs ", number_text),
}
_ALWAYS_NAMED = ("epochs", "schedule", "weight_decay", "dropout", "flip", "partial_bn")


def recipe_values(name: str, batch_size: int, world_size: int = 1, init_weights: str | None = None,
                  imagenet_weights: str | None = None, **given) -> tuple[dict, str]:
    """The TrainConfig values of recipe ``name`` for ``batch_size`` clips per process on
    ``world_size`` processes, and a line that says the values the run uses: the recipe's,
    and those the user gave instead (``given``: TrainConfig values, e.g. ``weight_decay=1e-3``),
    marked "(yours; the recipe's ...)" (flags override the recipe, so the line said "dropout
    0.5" for a run with --dropout 0.2). ``lr`` (given by the user) replaces the scaled learning
    rate; without the weights its settings assume (``init_weights`` for a fine-tuning recipe,
    else ``imagenet_weights`` or ``init_weights``) the line says what to start from: from
    random weights those settings do not train as the paper's did. Other ``epochs`` (given by
    the user) move the recipe's decay steps in proportion, unless ``lr_steps`` are given too:
    steps at 20 and 40 of 50 epochs never came in a 15-epoch run."""
    from .config import TrainConfig

    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}: choose one of {', '.join(RECIPES)}")
    unknown = sorted(set(given) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise TypeError(f"recipe_values: not TrainConfig fields: {', '.join(unknown)}")
    recipe = RECIPES[name]
    values = dict(recipe.values)
    given = {k: v for k, v in given.items() if v is not None}
    batch = batch_size * world_size
    if "lr" not in given:
        values["lr"] = recipe.values["lr"] * batch / recipe.batch
        rate = (f"lr {recipe.values['lr']:g} at batch {recipe.batch} scaled to {values['lr']:.4g} for "
                f"batch {batch_size}" + (f" x {world_size} processes" if world_size > 1 else ""))
    else:
        del values["lr"]
        rate = f"lr {given['lr']:g} as given (the recipe's: {recipe.values['lr']:g} at batch {recipe.batch})"
    used = values | {k: v for k, v in given.items() if k in recipe.values and k != "lr"}
    moved = ("epochs" in given and "lr_steps" not in given and used["schedule"] == "step"
             and given["epochs"] != recipe.values["epochs"])
    if moved:
        # a step at epoch N lowers the rate from epoch N + 1 (lr_factor), so in E epochs only
        # steps 1 to E - 1 come: --epochs 2 printed, and kept, a step at 2 that never came
        last = given["epochs"] - 1
        values["lr_steps"] = used["lr_steps"] = sorted(
            {min(last, max(1, round(s * given["epochs"] / recipe.values["epochs"])))
             for s in recipe.values["lr_steps"]} if last >= 1 else set())

    def named(key: str) -> str:
        before, words = _WORDS[key]
        if key == "schedule":
            ours, theirs = _schedule(used), _schedule(recipe.values)
            if moved and ours != theirs and "schedule" not in given:
                fewer = ""
                if len(used["lr_steps"]) < len(recipe.values["lr_steps"]):
                    fits = (f"only {plural(len(used['lr_steps']), 'step')} fits" if used["lr_steps"]
                            else "none fits")
                    fewer = (f"; {fits} in {plural(given['epochs'], 'epoch')}, as a step at epoch N lowers "
                             "the rate from epoch N + 1")
                return (f"{ours} (the recipe's {_and(recipe.values['lr_steps'])} of "
                        f"{recipe.values['epochs']} epochs, moved in proportion{fewer})")
            yours = any(k in given for k in ("schedule", "lr_steps"))
        else:
            ours, theirs = words(used[key]), words(recipe.values[key])
            yours = key in given
        if not yours or ours == theirs:
            return before + ours
        # "weight decay 1e-3 (yours; the recipe's 1e-4)", "15 epochs (yours; the recipe's 50)",
        # "horizontal flips (yours; the recipe's: no horizontal flips)"
        theirs = (f" {recipe.values[key]}" if key == "epochs" else f" {theirs}" if before
                  else f": {theirs}")
        return f"{before}{ours} (yours; the recipe's{theirs})"

    shown = [k for k in _ALWAYS_NAMED if k in recipe.values]
    shown += [k for k in _WORDS if k not in shown and k in given and k in recipe.values
              and given[k] != recipe.values[k]]
    line = f"recipe {name} ({recipe.summary}): {', '.join(named(k) for k in shown)}; {rate}"
    # what the user gave is not the official code's
    official = [k for k in recipe.official_code if k not in given]
    if official:
        line += ("; from the official TSM repository: "
                 + ", ".join(f"{k}={recipe.values[k]} ({recipe.official_code[k]})" for k in official))
    if recipe.fine_tunes and not init_weights:
        line += f"; it fine-tunes {recipe.fine_tunes}: give it with --init-weights"
    elif not recipe.fine_tunes and not (imagenet_weights or init_weights):
        line += ("; it starts from ImageNet weights: give them with --imagenet-weights (without, "
                 "the model starts from random weights)")
    return values, line
