"""The training loop on real (tiny, synthetic) video files: it learns, resumes exactly, writes
its run folder, and survives unreadable videos."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from effvid.data.synthetic import make_synthetic_dataset
from effvid.models.weights import load_model, load_weights
from effvid.training.config import TrainConfig
from effvid.training.loop import lr_factor, train


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_dataset(root, classes=("left", "right"), videos_per_class_train=6,
                           videos_per_class_val=3, num_frames=8, size=32, seed=1)
    return root


def tiny_config(data, out, **kw):
    base = dict(data=str(data), model="tsm_resnet_tiny", num_segments=4, size=32, scale_size=32,
                flip=False, epochs=2, batch_size=4, lr=0.02, output=str(out), seed=3, workers=0,
                progress=False, dropout=0.0)
    base.update(kw)
    return TrainConfig(**base)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="num_segments"):
        TrainConfig(data="x", num_segments=0)
    with pytest.raises(ValueError, match="shift_direction"):
        TrainConfig(data="x", shift_direction="sideways")
    with pytest.raises(ValueError, match="unknown config keys: bogus"):
        TrainConfig.from_dict({"bogus": 1})


def test_lr_schedule_values():
    cfg = TrainConfig(data="x", epochs=10, warmup_epochs=1, schedule="cosine")
    assert lr_factor(cfg, 0, 10) == pytest.approx(0.1)          # warm-up step 1 of 10
    assert lr_factor(cfg, 9, 10) == pytest.approx(1.0)          # end of warm-up
    assert lr_factor(cfg, 10 + 45, 10) == pytest.approx(0.5)    # half-way through cosine
    step = TrainConfig(data="x", epochs=10, schedule="step", lr_steps=[3, 6])
    assert [lr_factor(step, e * 10, 10) for e in (0, 3, 6)] == pytest.approx([1, 0.1, 0.01])


class Crash(Exception):
    pass


def test_run_folder_and_resume_is_exact(tiny_data, tmp_path, monkeypatch):
    full = train(tiny_config(tiny_data, tmp_path / "full"))
    run = tmp_path / "full"
    for name in ("config.json", "history.json", "last.safetensors", "best.safetensors",
                 "last_state.pt", "curves.png", "confusion.png"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").iterdir())
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    assert json.loads((run / "config.json").read_text())["model"] == "tsm_resnet_tiny"
    _, meta = load_weights(run / "best.safetensors")
    assert meta["classes"] == ["left", "right"] and meta["name"] == "tsm_resnet_tiny"

    # A run that crashes after its first epoch's checkpoint, resumed, ends with the same weights.
    from effvid.training import loop

    real_plots = loop.RunWriter.plots

    def plots_then_crash(self, history, classes):
        real_plots(self, history, classes)
        raise Crash()

    half = tmp_path / "half"
    monkeypatch.setattr(loop.RunWriter, "plots", plots_then_crash)
    with pytest.raises(Crash):
        train(tiny_config(tiny_data, half))
    monkeypatch.setattr(loop.RunWriter, "plots", real_plots)
    resumed = train(tiny_config(tiny_data, half, resume=True))
    a, _ = load_weights(run / "last.safetensors")
    b, _ = load_weights(half / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert [h["epoch"] for h in resumed["history"]] == [0, 1]
    assert resumed["history"][1]["train"]["loss"] == pytest.approx(full["history"][1]["train"]["loss"])


def test_bad_videos_are_skipped_and_reported(tiny_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "train" / "left" / "zero.mp4").write_bytes(b"")
    good = sorted((data / "train" / "right").glob("*.mp4"))[0]
    (data / "train" / "right" / "truncated.mp4").write_bytes(good.read_bytes()[:300])
    (data / "train" / "right" / "garbage.mp4").write_bytes(b"\x00\x01not a video" * 50)
    result = train(tiny_config(data, tmp_path / "run", epochs=1))
    bad = {p for p, _ in result["history"][0]["bad_samples"]}
    assert {p.rsplit("/", 1)[1] for p in bad} == {"zero.mp4", "truncated.mp4", "garbage.mp4"}
    out = capsys.readouterr().out
    assert "skipped 3 unreadable video(s)" in out and "garbage.mp4" in out
    assert (tmp_path / "run" / "last.safetensors").is_file()


@pytest.mark.slow
def test_tsm_learns_order_that_tsn_cannot(tmp_path):
    """Left vs right, up vs down: the same frames in opposite order. TSN averages per-frame
    evidence and stays near chance; TSM's shift sees order and separates them."""
    data = tmp_path / "data"
    make_synthetic_dataset(data, classes=("left", "right", "up", "down"), videos_per_class_train=100,
                           videos_per_class_val=25, num_frames=8, size=32, seed=5)
    acc = {}
    for kind in ("tsn", "tsm"):
        cfg = tiny_config(data, tmp_path / kind, model=f"{kind}_resnet_tiny", num_segments=8,
                          epochs=12, batch_size=32, optimizer="adamw", lr=0.003, weight_decay=1e-4,
                          warmup_epochs=1, fc_lr_mult=1.0, dropout=0.2, crop_scales=[1.0], workers=2)
        acc[kind] = train(cfg)["history"][-1]["val"]["top1"]
    assert acc["tsm"] >= 0.9, acc
    assert acc["tsn"] <= 0.65, acc  # 4 classes in 2 mirrored pairs: a perfect TSN gets 50%
    model, meta = load_model(tmp_path / "tsm" / "best.safetensors")
    assert meta["classes"] == ["down", "left", "right", "up"] and model.num_segments == 8
