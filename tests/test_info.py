"""Parameter and FLOP counting (effvid.models.complexity) and ``effvid info``."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import effvid
from effvid.cli import main
from effvid.models.complexity import count_flops, count_parameters
from effvid.models.weights import save_weights


def _info_json(capsys, *argv) -> dict:
    assert main(["info", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# ----------------------------------------------------------------------------------------------
# complexity
# ----------------------------------------------------------------------------------------------


class _Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(10, 10)
        self.b = nn.Linear(10, 10)
        self.b.weight = self.a.weight  # shared: counted once
        self.c = self.a  # the same module twice


def test_count_parameters_dedupes_shared():
    m = _Tied()
    assert count_parameters(m) == 100 + 10 + 10
    m.b.bias.requires_grad_(False)
    assert count_parameters(m, trainable_only=True) == 110


class _Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        return self.fc(self.drop(y.mean((2, 3))))


def test_count_flops_by_hand_meta_and_cpu_agree_and_mode_restored():
    m = _Small().train()
    # conv: 8 out x 3 in x 3x3 kernel x 16x16 outputs per image; fc: 8 x 5; batch 4
    macs = 4 * (8 * 3 * 9 * 16 * 16 + 8 * 5)
    meta = count_flops(m, (4, 3, 32, 32))
    cpu = count_flops(m, (4, 3, 32, 32), meta=False)
    assert meta["device"] == "meta" and cpu["device"] == "cpu"
    assert meta["macs"] == cpu["macs"] == macs
    assert meta["flops"] == 2 * macs
    assert m.training and m.bn.training  # eval only during the count
    assert m.conv.weight.device.type == "cpu"  # the model was not moved


def test_tsm_and_tsn_have_equal_flops_and_parameters():
    kw = dict(num_classes=10, num_segments=4)
    tsm, tsn = effvid.create_model("tsm_resnet_tiny", **kw), effvid.create_model("tsn_resnet_tiny", **kw)
    shape = (1, 4, 3, 64, 64)
    a, b = count_flops(tsm, shape), count_flops(tsn, shape)
    assert a["flops"] == b["flops"] > 0 and a["by_operator"] == b["by_operator"]
    assert count_parameters(tsm) == count_parameters(tsn)
    # on a real forward too (the shift runs, and costs nothing)
    assert count_flops(tsm, shape, meta=False)["flops"] == a["flops"]


def test_tsm_resnet50_matches_the_paper(capsys):
    # TSM paper: TSM-ResNet-50, 8 frames at 224x224, Kinetics (400 classes): 24.3M params, 33G FLOPs
    info = _info_json(capsys, "tsm_resnet50", "--num-classes", "400", "--num-segments", "8", "--size", "224")
    assert info["parameters"] == pytest.approx(24.3e6, abs=0.05e6)
    assert round(info["gflops_multiply_adds"]) == 33
    assert info["flops_torch"] == 2 * info["macs"]
    tsn = _info_json(capsys, "tsn_resnet50")
    assert tsn["macs"] == info["macs"] and tsn["parameters"] == info["parameters"]
    # 16 frames: twice the work (paper: 65 G)
    assert _info_json(capsys, "tsm_resnet50", "--num-segments", "16")["macs"] == 2 * info["macs"]
    assert main(["info", "tsm_resnet50"]) == 0
    out = capsys.readouterr().out
    assert "24.33 M" in out and "32.70  multiply-adds" in out and "65.41  FLOPs as counted by torch" in out


def test_info_on_safetensors_file(tmp_path, capsys):
    model = effvid.create_model("tsm_resnet_tiny", num_classes=7, num_segments=4)
    path = tmp_path / "tiny.safetensors"
    save_weights(model, path, metadata={"classes": [str(i) for i in range(7)]})
    info = _info_json(capsys, str(path), "--size", "64")
    assert info["model"] == "tsm_resnet_tiny"
    assert info["config"]["num_classes"] == 7 and info["input_shape"] == [1, 4, 3, 64, 64]
    assert info["parameters"] == count_parameters(model)
    assert info["macs"] == count_flops(model, (1, 4, 3, 64, 64))["macs"]
    eight = _info_json(capsys, str(path), "--size", "64", "--num-segments", "8")
    assert eight["input_shape"][1] == 8 and eight["macs"] == 2 * info["macs"]
    assert info["classes"] == [str(i) for i in range(7)]
    names = [f"class {i}" for i in range(12)]
    save_weights(effvid.create_model("tsm_resnet_tiny", num_classes=12, num_segments=4), path,
                 metadata={"classes": names})
    assert main(["info", str(path), "--size", "32"]) == 0
    out = capsys.readouterr().out.splitlines()
    line = next(x for x in out if x.startswith("classes"))
    assert line.endswith("class 8, class 9, ... and 2 more (all in --json)")
    assert not any(x.startswith("trained") for x in out)  # the file holds none
    # how the run read its videos (a run's checkpoint holds it): eval and predict view videos so
    save_weights(model, path, metadata={"classes": [str(i) for i in range(7)],
                                        "extra": {"size": 64, "scale_size": 72, "sampling": "dense", "flip": False}})
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "trained      64 px crops of frames resized to a 72 px short side, dense sampling, without flips (eval " \
           "and predict view videos so)" in out
    assert out[out.index(next(x for x in out if x.startswith("trained"))) + 1].startswith("input        1 x 4 x 3 x 64 x 64")
    assert _info_json(capsys, str(path))["trained"] == {"size": 64, "scale_size": 72, "sampling": "dense", "flip": False}


def test_info_user_errors(tmp_path, capsys):
    assert main(["info", "no_such_model"]) == 2
    assert "unknown model 'no_such_model'" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "missing.safetensors")]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # refused by the parser, before anything runs
        main(["info", "tsm_resnet_tiny", "--size", "0"])
    assert e.value.code == 2 and "argument --size: must be >= 1, got 0" in capsys.readouterr().err
    assert main(["info", "av", "--size", "112"]) == 2  # it used to be ignored silently
    assert "--size does not apply to 'av'" in capsys.readouterr().err  # one flag: "does"
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    assert main(["info", str(bad)]) == 2
    assert "bad.safetensors" in capsys.readouterr().err
    assert main(["info", "--list"]) == 0
    out = capsys.readouterr().out
    import effvid

    # 'av' was listed among the --model names, which train and create_model refuse
    assert out == "\n".join(effvid.list_models()) + "\n\nav  (effvid info only: the audio-visual model, docs/av.md)\n"
    assert "tsm_resnet50" in effvid.list_models() and "av" not in effvid.list_models()


def test_info_refuses_the_av_flags_for_another_model(tmp_path, capsys):
    # they were ignored, and the recogniser's report printed with status 0
    assert main(["info", "tsm_resnet50", "--fusion", "late", "--sharing", "none", "--visual-cnn", "x"]) == 2
    assert capsys.readouterr().err.strip() == (
        "effvid info: error: --sharing, --fusion, --visual-cnn do not apply to tsm_resnet50 (only to the "
        "audio-visual model: effvid info av --sharing none --fusion late --visual-cnn x)")
    assert main(["info", str(tmp_path), "--audio-cnn", "resnet_tiny"]) == 2  # a folder too
    assert capsys.readouterr().err.strip() == (
        f"effvid info: error: --audio-cnn does not apply to {tmp_path} (only to the audio-visual model: "
        "effvid info av --audio-cnn resnet_tiny)")
    assert main(["info", "tsm_resnet_tiny", "--size", "32"]) == 0  # defaults are not flags given


def test_info_av_parameter_report(capsys):
    pytest.importorskip("effvid.av")
    # RESEARCH.md section 2: 3 transformers x 6 layers, D=768, F=3072, O=128
    small = ("--visual-cnn", "tsm_resnet_tiny", "--audio-cnn", "resnet_tiny")  # transformers unchanged
    all_shared = _info_json(capsys, "av", "--sharing", "all", *small)
    assert all_shared["sharing"] == "all"
    assert all_shared["transformers"]["total"] == 7_087_872
    # one module serves the three roles: its parameters are shared between them (was: "0 shared")
    assert (all_shared["transformers"]["shared"], all_shared["transformers"]["private"]) == (7_087_872, 0)
    assert all_shared["components"]["audio_transformer"] == {"total": 7_087_872, "private": 0, "shared": 7_087_872}
    assert main(["info", "av", "--fusion", "late", "--sharing", "all", *small]) == 0
    assert ("transformers (2 roles, 1 module(s)): 7,087,872 parameters (7,087,872 shared between transformers, "
            "0 private)") in capsys.readouterr().out.splitlines()
    partial = _info_json(capsys, "av", "--sharing", "partial", *small)
    assert partial["transformers"]["total"] == 3_843_840
    assert main(["info", "av", "--sharing", "layers", *small]) == 0
    assert "21,263,616" in capsys.readouterr().out


def test_info_av_names_its_cnns_and_which_are_the_papers(capsys):
    """The default visual CNN is a TSM-ResNet-50, not the paper's slow_r50: the report's total
    (35,762,720) is not the paper model's (43,889,184), and its header named no CNN."""
    pytest.importorskip("effvid.av")
    assert main(["info", "av"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("AV model  visual_cnn=tsm_resnet50 (the paper's: slow_r50)  audio_cnn=resnet50_half "
                        "(the paper's)  sharing=partial  fusion=mid")
    assert "model total: 35,762,720 parameters (35,762,720 trainable)" in lines
    assert ("note: the total is of a model with visual_cnn=tsm_resnet50, not the paper's slow_r50: effvid "
            "info av --visual-cnn slow_r50 counts the paper's model") in lines
    report = _info_json(capsys, "av", "--visual-cnn", "slow_r50")
    assert (report["visual_cnn"], report["audio_cnn"], report["total"]) == ("slow_r50", "resnet50_half", 43_889_184)
    assert not any("paper's model" in note for note in report["notes"])
    assert main(["info", "av", "--visual-cnn", "slow_tiny", "--audio-cnn", "resnet_tiny"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("AV model  visual_cnn=slow_tiny (the paper's: slow_r50)  audio_cnn=resnet_tiny "
                          "(the paper's: resnet50_half)  sharing=partial")
    assert ("with visual_cnn=slow_tiny and audio_cnn=resnet_tiny, not the paper's slow_r50 and resnet50_half: "
            "effvid info av --visual-cnn slow_r50 --audio-cnn resnet50_half counts") in out


def test_info_on_a_run_folder_says_where_the_run_stands(tmp_path, capsys):
    import os
    import socket

    from effvid.data.synthetic import make_synthetic_dataset
    from effvid.training.run_lock import lock_run_folder, release_run_folder

    data = tmp_path / "data"
    make_synthetic_dataset(data, classes=("left", "right"), videos_per_class_train=3, videos_per_class_val=2,
                           num_frames=8, size=32, seed=1)
    (data / "train" / "left" / "empty.mp4").write_bytes(b"")
    run = tmp_path / "run"
    assert main(["train", str(data), "--model", "tsm_resnet_tiny", "--num-segments", "2", "--size", "32",
                 "--epochs", "2", "--batch-size", "2", "--workers", "0", "--no-progress", "--output", str(run)]) == 0
    capsys.readouterr()
    history = json.loads((run / "history.json").read_text())
    best = max(h["val"]["top1"] for h in history)
    assert main(["info", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"run folder   {run}"
    assert lines[1] == "model        tsm_resnet_tiny, 2 segments, 2 classes"
    assert lines[2] == f"data         {data.resolve()}"
    assert lines[3].startswith("epochs       2 of 2 (")
    assert lines[4] == (f"best         val top-1 {100 * best:.1f}% at epoch "
                        f"{next(h['epoch'] for h in history if h['val']['top1'] == best) + 1}")
    assert lines[5].startswith(f"last epoch   train loss {history[-1]['train']['loss']:.3f}, ")
    assert lines[6] == "unreadable   1 video(s) skipped (bad_videos.json)"  # once, not once per epoch
    assert lines[7] == "state        finished"
    assert lines[8] == ("files        best.safetensors, last.safetensors, curves.png, confusion.png, "
                        "bad_videos.json, tensorboard")
    # a run that stopped after its first epoch (as if killed: config asks for 3)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config | {"epochs": 3}))
    assert main(["info", str(run), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["epochs_done"], info["epochs"], info["unreadable_videos"]) == (2, 3, 1)
    assert info["state"] == f"stopped: continue with effvid train --output {run} --resume"
    # while a train holds the folder
    fd = lock_run_folder(run)
    try:
        assert main(["info", str(run), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["state"] == \
            f"running now (pid {os.getpid()} on {socket.gethostname()})"
    finally:
        release_run_folder(fd, run, None)
    assert main(["info", str(run), "--json"]) == 0  # and once it ends, the lock no longer counts
    assert json.loads(capsys.readouterr().out)["state"].startswith("stopped")
    # a folder that is not a run
    assert main(["info", str(data)]) == 2
    assert "is a folder, not an effvid run folder" in capsys.readouterr().err


def test_info_on_a_run_written_before_per_class_and_bad_videos_json(tmp_path, capsys):
    # history.json as runs wrote it on 2026-11-22: no per_class, each epoch's unreadable videos
    # under bad_samples, no bad_videos.json
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": "tsm_resnet_tiny", "num_segments": 4,
                                                 "data": "/data/ucf", "val_data": None, "epochs": 3}))
    val = {"top1": 0.5, "top5": 0.75, "loss": 1.2, "count": 4, "confusion": [[1, 1, 0], [0, 1, 1], [0, 0, 0]]}
    history = [{"epoch": e, "train": {"loss": 1.5 - e / 10, "top1": 0.4}, "val": val, "seconds": 30.0,
                "bad_samples": [["/data/ucf/a.avi", "no video stream"]]} for e in range(2)]
    (run / "history.json").write_text(json.dumps(history))
    # info reads the epochs committed in the state (its tensors are not read)
    torch.save({"model": {"w": torch.zeros(3)}, "epoch": 1, "history": json.dumps(history)},
               run / "last_state.pt")
    assert main(["info", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "model        tsm_resnet_tiny, 4 segments, 3 classes"
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config | {"num_segments": 1}))
    assert main(["info", str(run)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "model        tsm_resnet_tiny, 1 segment, 3 classes"
    (run / "config.json").write_text(json.dumps(config))
    assert lines[3] == "epochs       2 of 3 (1 min of training and validation)"
    assert lines[4] == "best         val top-1 50.0% at epoch 1"
    assert lines[5] == "last epoch   train loss 1.400, top-1 40.0%; val top-1 50.0%, top-5 75.0%"
    assert lines[6] == "unreadable   1 video(s) skipped (history.json)"  # the file that lists it
    assert lines[7] == f"state        stopped: continue with effvid train --output {run} --resume"
    # a state that cannot be read: the epochs from history.json, and no resume offered
    (run / "last_state.pt").write_bytes(b"not a state")
    assert main(["info", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3] == "epochs       2 of 3 (1 min of training and validation)"
    # (it was PyTorch's paragraph on "PytorchStreamReader failed reading zip archive")
    assert lines[7] == (f"state        stopped, and its resume state {run / 'last_state.pt'} is damaged "
                        "(truncated, or not a file effvid wrote), so the run cannot be continued exactly: "
                        "replace it with --overwrite"), lines[7]  # it has no weights to start from
    # a model's flags are refused, not ignored (the run has its own model)
    assert main(["info", str(run), "--size", "112", "--num-segments", "8"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"effvid info: error: --num-segments, --size do not apply to a run folder ({run} is one); for its "
        f"model's parameters and FLOPs: effvid info {run / 'best.safetensors'}")
    assert main(["info", str(run), "--size", "112"]) == 2
    assert capsys.readouterr().err.startswith(
        f"effvid info: error: --size does not apply to a run folder ({run} is one); ")


def test_info_counts_a_video_once_under_both_spellings_of_an_older_run(tmp_path, capsys):
    # runs before input paths were made absolute recorded the unreadable videos relative to
    # where they started, and absolute after a resume: info counted the same video twice
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": "tsm_resnet_tiny", "num_segments": 4,
                                                 "data": "/home/u/data/ucf", "val_fraction": 0.2,
                                                 "epochs": 3}))
    val = {"top1": 0.5, "top5": 1.0, "loss": 1.2, "count": 4, "confusion": [[1, 1], [1, 1]]}
    bad = [[["data/ucf/a/x.avi", "no video stream"], ["./data/ucf/b/y.avi", "file is empty (0 bytes)"]],
           [["/home/u/data/ucf/a/x.avi", "no video stream"], ["/home/u/data/ucf/b/z.avi", "cut"]]]
    history = [{"epoch": e, "train": {"loss": 1.0, "top1": 0.5}, "val": val, "seconds": 10.0,
                "bad_count": 2, "bad_new": bad[e]} for e in range(2)]
    (run / "history.json").write_text(json.dumps(history))
    (run / "bad_videos.json").write_text("[]")
    (run / "split.json").write_text(json.dumps({"train": [], "val": []}))
    assert main(["info", str(run), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["unreadable_videos"] == 3  # x.avi once; y.avi (before only) and z.avi (after only)
    assert info["files"] == ["bad_videos.json", "split.json"]  # the held-out split is the run's
