"""The original TSM training recipes: their values, the learning rate scaled to the run's batch,
and how they combine with flags, --config and --resume."""

from __future__ import annotations

import json

import pytest

from effvid.cli import build_parser
from effvid.commands.train import config_from_args
from effvid.training.loop import lr_factor
from effvid.training.recipes import RECIPES, recipe_values


def test_learning_rate_scales_with_the_batch_of_all_processes():
    values, line = recipe_values("kinetics", batch_size=8, world_size=2)
    # 0.02 at batch 128 -> 16 clips per step
    assert values["lr"] == pytest.approx(0.02 * 16 / 128) == pytest.approx(0.0025)
    assert {k: values[k] for k in ("optimizer", "epochs", "schedule", "lr_steps", "weight_decay", "dropout",
                                   "momentum", "clip_grad")} == {
        "optimizer": "sgd", "epochs": 50, "schedule": "step", "lr_steps": [20, 40], "weight_decay": 1e-4,
        "dropout": 0.5, "momentum": 0.9, "clip_grad": 20.0}
    # the classifier's multiplier is the run's decision (5x new, 1x kept), as main.py's fc_lr5
    assert "fc_lr_mult" not in values
    assert "lr 0.02 at batch 128 scaled to 0.0025 for batch 8 x 2 processes" in line
    assert "effvid's choice" not in line and "official" not in line  # all of it in RESEARCH.md
    # at the recipe's own batch, the recipe's rate
    assert recipe_values("something", batch_size=64)[0]["lr"] == pytest.approx(0.01)
    # a rate the user gives is kept, and said
    values, line = recipe_values("something", batch_size=8, lr=0.05)
    assert "lr" not in values and "lr 0.05 as given (the recipe's: 0.01 at batch 64)" in line
    # what RESEARCH.md does not give names the file of the official repository it comes from
    # (it was called effvid's choice): its README's training command
    _, line = recipe_values("something", 8)
    assert ("; from the official TSM repository: lr_steps=[20, 40] (README.md's Something-Something "
            "command);") in line
    assert "effvid's choice" not in line


def test_fine_tuning_recipe_asks_for_the_model_it_starts_from():
    values, line = recipe_values("ucf101-finetune", batch_size=16)
    assert values["partial_bn"] is True and values["dropout"] == 0.8 and values["epochs"] == 25
    assert values["lr"] == pytest.approx(0.001 * 16 / 64)
    assert "give it with --init-weights" in line
    assert "--init-weights" not in recipe_values("ucf101-finetune", 16, init_weights="k400.safetensors")[1]
    # the official fine-tuning script and opts.py's default weight decay, named as such (not as
    # effvid's choice)
    assert ("; from the official TSM repository: lr_steps=[10, 20] (scripts/finetune_tsm_ucf101_rgb_8f.sh), "
            "weight_decay=0.0005 (opts.py's default);") in line
    assert "effvid's choice" not in line
    # the classifier's multiplier is left to the run: 1x for a classifier --init-weights keeps
    # (a kept one trained at 5x, with the recipe's line saying "for the new classifier")
    parse = build_parser().parse_args
    cfg = config_from_args(parse(["train", "videos", "--recipe", "ucf101-finetune", "--init-weights", "k.safetensors"]))
    assert cfg.fc_lr_mult is None


def test_imagenet_recipes_ask_for_imagenet_weights():
    # their settings are for a model that starts from ImageNet: from random weights, said
    for name in ("kinetics", "something"):
        assert recipe_values(name, 8)[1].endswith(
            "; it starts from ImageNet weights: give them with --imagenet-weights (without, the model "
            "starts from random weights)")
        for weights in ({"imagenet_weights": "resnet50.pth"}, {"init_weights": "run.safetensors"}):
            assert "--imagenet-weights" not in recipe_values(name, 8, **weights)[1]
    assert "--imagenet-weights" not in recipe_values("ucf101-finetune", 8)[1]  # it asks for --init-weights
    with pytest.raises(ValueError, match=r"unknown recipe 'imagenet': choose one of kinetics, something"):
        recipe_values("imagenet", 8)


def test_recipe_then_flags_on_the_command_line(tmp_path, monkeypatch, capsys):
    parse = build_parser().parse_args
    monkeypatch.setenv("WORLD_SIZE", "4")  # as torchrun sets it: 4 processes x 16 clips
    cfg = config_from_args(parse(["train", "videos", "--recipe", "something", "--batch-size", "16",
                                  "--epochs", "3"]))
    assert cfg.lr == pytest.approx(0.01) and cfg.flip is False and cfg.weight_decay == 5e-4
    assert cfg.schedule == "step" and cfg.epochs == 3  # the flag overrides the recipe's 50
    assert "scaled to 0.01 for batch 16 x 4 processes" in capsys.readouterr().out
    config_from_args(parse(["train", "videos", "--recipe", "kinetics", "--imagenet-weights", "r50.pth"]))
    assert "--imagenet-weights" not in capsys.readouterr().out  # the flag reaches the recipe
    monkeypatch.setenv("RANK", "1")  # only the first process says it
    config_from_args(parse(["train", "videos", "--recipe", "something"]))
    assert capsys.readouterr().out == ""
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    # a whole saved configuration and a recipe do not combine
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps({"data": "videos", "epochs": 7}))
    with pytest.raises(ValueError, match=r"--recipe starts a new run .* already holds a whole configuration"):
        config_from_args(parse(["train", "--config", str(saved), "--recipe", "kinetics"]))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": "videos"}))
    with pytest.raises(ValueError, match="already holds a whole configuration"):
        config_from_args(parse(["train", "--output", str(run), "--resume", "--recipe", "kinetics"]))
    assert set(RECIPES) == {"kinetics", "something", "ucf101-finetune"}


def test_fewer_epochs_move_the_decay_steps_in_proportion(capsys):
    # steps at 20 and 40 were kept for --epochs 15: the rate was never lowered
    parse = build_parser().parse_args
    cfg = config_from_args(parse(["train", "videos", "--recipe", "kinetics", "--epochs", "15"]))
    assert cfg.epochs == 15 and cfg.lr_steps == [6, 12]
    assert ("15 epochs (yours; the recipe's 50), steps at 6 and 12 (the recipe's 20 and 40 of 50 "
            "epochs, moved in proportion)") in capsys.readouterr().out
    # a step at epoch N lowers the rate from epoch N + 1: in E epochs, only steps 1 to E - 1 come
    # (--epochs 2 printed and kept "steps at 1 and 2", and the step at 2 never came)
    cfg = config_from_args(parse(["train", "videos", "--recipe", "ucf101-finetune", "--epochs", "2"]))
    assert cfg.lr_steps == [1]  # 10 and 20 of 25 -> 0.8 and 1.6, rounded, and 2 kept inside the run
    assert [lr_factor(cfg, epoch * 10, 10) for epoch in (0, 1)] == [1.0, pytest.approx(0.1)]  # the last epoch
    assert ("2 epochs (yours; the recipe's 25), steps at 1 (the recipe's 10 and 20 of 25 epochs, moved in "
            "proportion; only 1 step fits in 2 epochs, as a step at epoch N lowers the rate from epoch N + 1)"
            ) in capsys.readouterr().out
    cfg = config_from_args(parse(["train", "videos", "--recipe", "kinetics", "--epochs", "3"]))
    assert cfg.lr_steps == [1, 2]  # 1.2 and 2.4: both come
    assert "steps at 1 and 2 (the recipe's 20 and 40 of 50 epochs, moved in proportion), " in capsys.readouterr().out
    cfg = config_from_args(parse(["train", "videos", "--recipe", "kinetics", "--epochs", "1"]))
    assert cfg.lr_steps == []  # no step comes in one epoch
    assert ("1 epoch (yours; the recipe's 50), no steps (the recipe's 20 and 40 of 50 epochs, moved in "
            "proportion; none fits in 1 epoch, as a step at epoch N lowers the rate from epoch N + 1)"
            ) in capsys.readouterr().out
    # steps given with the epochs are used as given; the recipe's own epochs keep its steps
    cfg = config_from_args(parse(["train", "videos", "--recipe", "kinetics", "--epochs", "15",
                                  "--lr-steps", "10"]))
    assert cfg.lr_steps == [10]
    assert config_from_args(parse(["train", "videos", "--recipe", "kinetics", "--epochs", "50"])).lr_steps == [20, 40]


def test_the_line_names_the_values_used_and_which_are_the_users(capsys):
    """Flags override the recipe, but its line said the recipe's values: "no horizontal flips"
    for a run with --flip, "weight decay 1e-4, dropout 0.5" with --weight-decay 1e-3 --dropout 0.2."""
    parse = build_parser().parse_args
    cfg = config_from_args(parse(["train", "videos", "--recipe", "something", "--flip"]))
    line = capsys.readouterr().out
    assert cfg.flip is True
    assert line.startswith("recipe something (TSM on Something-Something v1/v2 from ImageNet): 50 epochs, "
                           "steps at 20 and 40, weight decay 5e-4, dropout 0.5, horizontal flips (yours; "
                           "the recipe's: no horizontal flips); lr 0.01 at batch 64 scaled to ")
    cfg = config_from_args(parse(["train", "videos", "--recipe", "kinetics", "--weight-decay", "1e-3",
                                  "--dropout", "0.2", "--schedule", "cosine", "--momentum", "0.8"]))
    line = capsys.readouterr().out
    assert (cfg.weight_decay, cfg.dropout, cfg.schedule, cfg.momentum) == (1e-3, 0.2, "cosine", 0.8)
    assert line.startswith("recipe kinetics (TSM on Kinetics from ImageNet): 50 epochs, cosine schedule "
                           "(yours; the recipe's: steps at 20 and 40), weight decay 1e-3 (yours; the "
                           "recipe's 1e-4), dropout 0.2 (yours; the recipe's 0.5), momentum 0.8 (yours; "
                           "the recipe's 0.9); lr 0.02 at batch 128 scaled to ")
    # a cosine run has no steps to move; the steps given are the user's, not the official code's
    config_from_args(parse(["train", "videos", "--recipe", "kinetics", "--epochs", "10", "--schedule", "cosine"]))
    assert "10 epochs (yours; the recipe's 50), cosine schedule (yours;" in capsys.readouterr().out
    _, line = recipe_values("ucf101-finetune", 64, lr_steps=[5], weight_decay=5e-4, partial_bn=False)
    assert line.startswith("recipe ucf101-finetune (TSM fine-tuned on UCF101 from a Kinetics model): "
                           "25 epochs, steps at 5 (yours; the recipe's: steps at 10 and 20), weight decay "
                           "5e-4, dropout 0.8, no partial BatchNorm (yours; the recipe's: partial BatchNorm);")
    # lr_steps and weight_decay: the user's
    assert "from the official TSM repository" not in line
    with pytest.raises(TypeError, match="not TrainConfig fields: wieght_decay"):
        recipe_values("kinetics", 8, wieght_decay=1e-3)
