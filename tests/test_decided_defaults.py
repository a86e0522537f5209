"""Defaults a run decides when it starts: horizontal flips off where they would change the
labels (Something-Something's annotations, classes named by a direction), and the classifier's
learning rate at 1x when --init-weights brings it trained on the same classes, and the learning
rate and weight decay of the optimiser chosen; each saved in config.json and kept by a resume (the
first two said in one line)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from effvid.cli import main
from effvid.data import render_motion_clip, write_video
from effvid.models.weights import load_weights
from effvid.training.config import TrainConfig
from effvid.training.loop import train
from effvid.training.run_data import build_datasets, flips_change_labels

TINY = ["--model", "tsm_resnet_tiny", "--num-segments", "2", "--size", "32", "--scale-size", "32",
        "--epochs", "1", "--batch-size", "2", "--workers", "0", "--no-progress"]


ALL = ["flip", "fc_lr_mult", "lr", "weight_decay"]  # what a run decides, in config.json's order


def _videos(paths):
    """One small real video (H.264 mp4), copied to every path."""
    first = write_video(paths[0], render_motion_clip("grow", np.random.default_rng(0), num_frames=8, size=32),
                        fps=8, codec="libx264")
    for p in paths[1:]:
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(first, p)


def _class_folders(root, classes):
    """root/train/<class>/ with 2 videos and root/val/<class>/ with 1."""
    _videos([root / split / c / f"{k}.mp4" for c in classes for split, n in (("train", 2), ("val", 1))
             for k in range(n)])
    return root


@pytest.fixture
def ssv2(tmp_path):
    """labels/{labels,train,validation}.json as published, videos/<id>.mp4 (converted), with
    templates that name no direction: only the format says that flips change its labels."""
    labels = tmp_path / "labels"
    labels.mkdir()
    templates = ["Holding [something] next to [something]", "Approaching [something] with your camera"]
    (labels / "labels.json").write_text(json.dumps({t.replace("[", "").replace("]", ""): str(k)
                                                    for k, t in enumerate(templates)}))
    train = [{"id": str(100 + k), "template": templates[k % 2], "placeholders": []} for k in range(4)]
    val = [{"id": str(200 + k), "template": templates[k], "placeholders": []} for k in range(2)]
    (labels / "train.json").write_text(json.dumps(train))
    (labels / "validation.json").write_text(json.dumps(val))
    _videos([tmp_path / "videos" / f"{e['id']}.mp4" for e in train + val])
    return tmp_path


def _saved(run) -> dict:
    return json.loads((run / "config.json").read_text())


def test_class_names_that_a_flip_changes():
    for named in (["Swiping Left", "Thumb Up"], ["moving_left"], ["TurnRight"], ["pan-RIGHT"],
                  ["Turning Hand Counterclockwise"], ["rotate counter-clockwise"], ["left2right"],
                  ["swipe_rightwards"], ["Leftward"], ["roll rightward"]):
        assert flips_change_labels("data", named) is not None, named
    # "left"/"right" inside other words are no direction
    assert flips_change_labels("data", ["Leftover", "bright", "upright", "copyright", "Thumb Up"]) is None
    assert flips_change_labels("data", ["Swiping Left", "Swiping Right", "Thumb Up"]) == (
        "class 'Swiping Left' (and 1 more) names a direction, which a flip reverses")


def test_something_something_trains_without_flips_and_says_why(ssv2, capsys):
    labels, run = ssv2 / "labels", ssv2 / "run"
    args = ["train", str(labels / "train.json"), "--val-data", str(labels / "validation.json"),
            "--data-root", str(ssv2 / "videos"), *TINY]
    assert main([*args, "--output", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.count("horizontal flips") == 1
    assert (f"note: horizontal flips are off: {labels / 'train.json'} is Something-Something's annotation "
            "file, whose classes name directions that a flip reverses (\"from left to right\"; the "
            "official TSM code turns flips off for it too); --flip turns them on\n") in out
    assert _saved(run)["flip"] is False
    # a resume from Python, flip left undecided (None), continues as the run started: it was
    # refused as "changed settings (flip False -> None)"
    cfg = dataclasses.replace(TrainConfig.load(run / "config.json"), flip=None, resume=True)
    assert train(cfg)["history"][0]["epoch"] == 0  # nothing left to do: 1 of 1 epochs
    assert "nothing to do" in capsys.readouterr().out
    # --flip wins, without a note
    assert main([*args, "--output", str(ssv2 / "flipped"), "--flip"]) == 0
    assert "horizontal flips" not in capsys.readouterr().out
    assert _saved(ssv2 / "flipped")["flip"] is True


def test_classes_named_by_a_direction_train_without_flips(tmp_path, capsys):
    swipes = _class_folders(tmp_path / "swipes", ["Swiping Left", "Swiping Right"])
    assert main(["train", str(swipes), *TINY, "--output", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert ("note: horizontal flips are off: class 'Swiping Left' (and 1 more) names a direction, "
            "which a flip reverses; --flip turns them on\n") in out
    assert _saved(tmp_path / "run")["flip"] is False
    # so are its checkpoints' metadata, which eval reads (its note on 10 crops, 5 of them mirrored)
    assert load_weights(tmp_path / "run" / "best.safetensors")[1]["extra"]["flip"] is False
    # the training transform is the one decided; a flip given is used as given
    assert build_datasets(TrainConfig(data=str(swipes)))[0].transform.flip is False
    assert build_datasets(TrainConfig(data=str(swipes), flip=True))[0].transform.flip is True


def test_neutral_class_names_keep_flips(tmp_path, capsys):
    gestures = _class_folders(tmp_path / "gestures", ["Drumming Fingers", "Thumb Up"])
    assert main(["train", str(gestures), *TINY, "--output", str(tmp_path / "run")]) == 0
    assert "horizontal flips" not in capsys.readouterr().out
    assert _saved(tmp_path / "run")["flip"] is True


def _classifier_lr_mults(run) -> list[float]:
    """The learning-rate multipliers of the run's optimiser groups for the classifier's weight
    and bias, from its last_state.pt (the groups: decay, no_decay, fc_weight, fc_bias)."""
    from effvid.training.run_folder import load_resume_state

    return [g["lr_mult"] for g in load_resume_state(run)["optimizer"]["param_groups"][-2:]]


def test_a_classifier_kept_from_init_weights_learns_at_1x(tmp_path, capsys):
    # the official code: fc_lr5 = not (tune_from and dataset in tune_from); effvid gave a
    # classifier trained on these very classes 5x again
    gestures = _class_folders(tmp_path / "gestures", ["Drumming Fingers", "Thumb Up"])
    assert main(["train", str(gestures), *TINY, "--output", str(tmp_path / "first")]) == 0
    assert _saved(tmp_path / "first")["fc_lr_mult"] == 5.0  # a new classifier
    assert _classifier_lr_mults(tmp_path / "first") == [5.0, 10.0]
    start = ["--init-weights", str(tmp_path / "first" / "best.safetensors")]
    capsys.readouterr()
    assert main(["train", str(gestures), *TINY, *start, "--output", str(tmp_path / "kept")]) == 0
    out = capsys.readouterr().out
    assert ("all its weights, classifier included\nnote: the classifier learns at 1x the learning rate, "
            "not 5x: --init-weights brings it trained on these classes (as in the official TSM code); "
            "--fc-lr-mult sets another multiplier\n") in out
    assert _saved(tmp_path / "kept")["fc_lr_mult"] == 1.0
    assert _classifier_lr_mults(tmp_path / "kept") == [1.0, 2.0]
    # given, it is used as given, without a note
    assert main(["train", str(gestures), *TINY, *start, "--fc-lr-mult", "5", "--output", str(tmp_path / "given")]) == 0
    assert "note: the classifier" not in capsys.readouterr().out
    assert _saved(tmp_path / "given")["fc_lr_mult"] == 5.0
    # other classes: a new classifier, at 5x
    thumbs = _class_folders(tmp_path / "thumbs", ["Thumb Down", "Thumb Up"])
    assert main(["train", str(thumbs), *TINY, *start, "--output", str(tmp_path / "new")]) == 0
    out = capsys.readouterr().out
    assert "a new classifier for 2 classes" in out and "note: the classifier" not in out
    assert _saved(tmp_path / "new")["fc_lr_mult"] == 5.0


def test_a_resume_keeps_what_the_run_decided():
    saved = {"flip": False, "fc_lr_mult": 1.0}
    decided = TrainConfig(data="x").with_run_decisions(saved)
    assert (decided.flip, decided.fc_lr_mult) == (False, 1.0)
    given = TrainConfig(data="x", flip=True, fc_lr_mult=3.0).with_run_decisions(saved)
    assert (given.flip, given.fc_lr_mult) == (True, 3.0)  # then refused as a changed setting


def test_a_new_run_from_a_config_decides_again(tmp_path, capsys):
    # config.json lists what the run decided from its data: --config for a new run on other data
    # decides it again (it kept flips off for classes that name no direction, and was silent)
    swipes = _class_folders(tmp_path / "swipes", ["left", "right"])
    sizes = _class_folders(tmp_path / "sizes", ["grow", "shrink"])
    run_a = tmp_path / "a"
    assert main(["train", str(swipes), *TINY, "--output", str(run_a)]) == 0
    assert "note: horizontal flips are off" in capsys.readouterr().out
    assert (_saved(run_a)["flip"], _saved(run_a)["decided"]) == (False, ALL)
    config = ["--config", str(run_a / "config.json")]
    assert main(["train", str(sizes), *config, "--output", str(tmp_path / "b")]) == 0
    assert "horizontal flips" not in capsys.readouterr().out
    assert (_saved(tmp_path / "b")["flip"], _saved(tmp_path / "b")["decided"]) == (True, ALL)
    # on its own data, decided again, with the note again
    assert main(["train", *config, "--output", str(tmp_path / "c")]) == 0
    assert "note: horizontal flips are off" in capsys.readouterr().out
    assert _saved(tmp_path / "c")["flip"] is False
    # a resume goes on with its run's decisions, without a note, and keeps the list
    assert main(["train", "--output", str(run_a), "--resume", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "horizontal flips" not in out and "changed settings" not in out
    assert (_saved(run_a)["flip"], _saved(run_a)["decided"]) == (False, ALL)
    assert json.loads(load_resume_state_plain(run_a)["config"])["decided"] == ALL
    # a resume of the run from --config, on other data: its own decision, not the file's
    assert main(["train", "--output", str(tmp_path / "b"), "--resume", "--epochs", "2"]) == 0
    assert "horizontal flips" not in capsys.readouterr().out
    assert _saved(tmp_path / "b")["flip"] is True


def load_resume_state_plain(run) -> dict:
    from effvid.training.run_folder import load_resume_state

    return load_resume_state(run, mmap=True)


@pytest.mark.parametrize("given", ["--no-flip", "--flip"])
def test_a_flip_given_is_carried_by_config(tmp_path, capsys, given):
    swipes = _class_folders(tmp_path / "swipes", ["left", "right"])
    sizes = _class_folders(tmp_path / "sizes", ["grow", "shrink"])
    assert main(["train", str(swipes), *TINY, given, "--output", str(tmp_path / "a")]) == 0
    assert _saved(tmp_path / "a")["decided"] == ALL[1:]
    capsys.readouterr()
    for data in (sizes, swipes):  # given, it holds on either data, without a note
        out = tmp_path / f"from_{data.name}"
        assert main(["train", str(data), "--config", str(tmp_path / "a" / "config.json"), "--output", str(out)]) == 0
        assert "horizontal flips" not in capsys.readouterr().out
        assert (_saved(out)["flip"], _saved(out)["decided"]) == (given == "--flip", ALL[1:])


def test_config_files_without_the_list_hold_values_given(tmp_path):
    # a file by hand, or from an older effvid: its values are the user's, as before
    values = {"data": "x", "flip": False, "fc_lr_mult": 1.0}
    (tmp_path / "old.json").write_text(json.dumps(values))
    for redecide in (False, True):
        cfg = TrainConfig.load(tmp_path / "old.json", redecide=redecide)
        assert (cfg.flip, cfg.fc_lr_mult) == (False, 1.0)
    (tmp_path / "new.json").write_text(json.dumps({**values, "decided": ["flip"]}))
    assert TrainConfig.load(tmp_path / "new.json").flip is False  # eval, info: what the run used
    assert (TrainConfig.load(tmp_path / "new.json", redecide=True).flip,
            TrainConfig.load(tmp_path / "new.json", redecide=True).fc_lr_mult) == (None, 1.0)
    (tmp_path / "bad.json").write_text(json.dumps({**values, "decided": ["epochs"]}))
    with pytest.raises(ValueError, match="decided"):
        TrainConfig.load(tmp_path / "bad.json")


def test_the_optimizer_chosen_brings_its_learning_rate_and_weight_decay(tmp_path):
    # AdamW at SGD's 0.01 (0.05 for a new classifier) wrecks ImageNet weights, and its decoupled
    # decay of 5e-4 is next to none: each optimiser has its own defaults, and a run's file keeps
    # the decision only for its own optimiser
    import torch

    from effvid.models import create_model
    from effvid.training.loop import build_optimizer

    data = _class_folders(tmp_path / "sizes", ["grow", "shrink"])
    assert main(["train", str(data), *TINY, "--optimizer", "adamw", "--output", str(tmp_path / "a")]) == 0
    saved = _saved(tmp_path / "a")
    assert (saved["lr"], saved["weight_decay"], saved["decided"]) == (1e-3, 0.05, ALL)
    config = ["--config", str(tmp_path / "a" / "config.json")]
    assert main(["train", *config, "--optimizer", "sgd", "--output", str(tmp_path / "b")]) == 0
    assert (_saved(tmp_path / "b")["lr"], _saved(tmp_path / "b")["weight_decay"]) == (0.01, 5e-4)
    # given, a value is the user's: carried by --config to another optimiser, and not listed
    assert main(["train", *config, "--lr", "0.002", "--output", str(tmp_path / "c")]) == 0
    assert main(["train", "--config", str(tmp_path / "c" / "config.json"), "--optimizer", "sgd",
                 "--output", str(tmp_path / "d")]) == 0
    saved = _saved(tmp_path / "d")
    assert (saved["lr"], saved["weight_decay"], saved["decided"]) == (0.002, 5e-4, ["flip", "fc_lr_mult", "weight_decay"])
    # a resume keeps its run's decision
    assert main(["train", "--output", str(tmp_path / "a"), "--resume", "--epochs", "2"]) == 0
    assert (_saved(tmp_path / "a")["lr"], _saved(tmp_path / "a")["weight_decay"]) == (1e-3, 0.05)
    # the optimiser built from a configuration not yet settled gets the same values
    model = create_model("tsm_resnet_tiny", num_classes=2, num_segments=2)
    opt = build_optimizer(model, TrainConfig(data="x", optimizer="adamw"))
    assert isinstance(opt, torch.optim.AdamW)
    assert sorted((g["lr_mult"], round(g["lr"], 9), g["weight_decay"]) for g in opt.param_groups) == [
        (1.0, 1e-3, 0.0), (1.0, 1e-3, 0.05), (5.0, 5e-3, 0.05), (10.0, 1e-2, 0.0)]
