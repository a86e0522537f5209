"""The training loop on real (tiny, synthetic) video files: it learns, resumes exactly, writes
its run folder, and survives unreadable videos."""

from __future__ import annotations

import io
import json
import math
import shutil
import sys
import time

import pytest
import torch

from effvid.data.synthetic import make_synthetic_dataset
from effvid.errors import UserError
from effvid.models import create_model
from effvid.models.weights import load_model, load_weights
from effvid.training.config import TrainConfig
from effvid.training.loop import data_wait_hint, lr_factor, train
from effvid.training.run_data import _for_val_data
from effvid.training.metrics import per_class_report
from effvid.training.progress import TimedWait, progress_bar


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
    with pytest.raises(ValueError, match="^unknown config keys: bogus$"):
        TrainConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match=r"^unknown config keys: epoch \(did you mean 'epochs'\?\)$"):
        TrainConfig.from_dict({"epoch": 1})


def test_per_class_report():
    per_class = [0.75, None, 0.5]  # class b has no validation clips
    assert per_class_report(["a", "b", "c"], per_class) == "a 75.0%, c 50.0% (1 class had no validation clips)"
    # b is neither ranked among the lowest (as 0%) nor counted in "of N"
    assert per_class_report(["a", "b", "c"], per_class, limit=1) == \
        "lowest 1 of 2: c 50.0% (1 class had no validation clips)"
    assert per_class_report(["a", "c"], [0.75, 0.5]) == "a 75.0%, c 50.0%"
    names = [f"c{i}" for i in range(15)]
    report = per_class_report(names, [i / 10 if i % 5 else None for i in range(15)], limit=3)
    assert report == "lowest 3 of 12: c1 10.0%, c2 20.0%, c3 30.0% (3 classes had no validation clips)"


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


def test_crash_between_checkpoint_files_resumes_exactly_without_a_seed(tiny_data, tmp_path, monkeypatch):
    # The run dies while writing epoch 2's checkpoint: last_state.pt (the commit point, written
    # first) and last.safetensors are still epoch 1's. The resume must continue from epoch 1's weights, not mix
    # epoch 2's weights with epoch 1's optimizer, and with the first run's clock seed.
    from effvid.training import loop

    real_state = loop.RunWriter.state
    calls = []

    def state_crashing_at_epoch_2(self, state, name):
        calls.append(state["epoch"])
        if state["epoch"] == 1:
            raise Crash()
        real_state(self, state, name)

    run = tmp_path / "run"
    monkeypatch.setattr(loop.RunWriter, "state", state_crashing_at_epoch_2)
    monkeypatch.setattr(loop.time, "time", lambda: 1234.5)
    with pytest.raises(Crash):
        train(tiny_config(tiny_data, run, seed=None))
    assert calls == [0, 1] and load_weights(run / "last.safetensors")[1]["epoch"] == 1
    monkeypatch.setattr(loop.RunWriter, "state", real_state)
    monkeypatch.setattr(loop.time, "time", lambda: 999.0)  # a later clock: a different seed
    resumed = train(tiny_config(tiny_data, run, seed=None, resume=True))
    assert resumed["seed"] == 1234 and [h["epoch"] for h in resumed["history"]] == [0, 1]
    full = train(tiny_config(tiny_data, tmp_path / "full", seed=1234))
    a, _ = load_weights(tmp_path / "full" / "last.safetensors")
    b, _ = load_weights(run / "last.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert resumed["history"][1]["train"]["loss"] == pytest.approx(full["history"][1]["train"]["loss"])


def test_bad_videos_are_skipped_and_reported(tiny_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "train" / "left" / "zero.mp4").write_bytes(b"")
    good = sorted((data / "train" / "right").glob("*.mp4"))[0]
    (data / "train" / "right" / "truncated.mp4").write_bytes(good.read_bytes()[:300])
    (data / "train" / "right" / "garbage.mp4").write_bytes(b"\x00\x01not a video" * 50)
    result = train(tiny_config(data, tmp_path / "run", epochs=1))
    bad = {p for p, _ in result["history"][0]["bad_new"]}
    assert {p.rsplit("/", 1)[1] for p in bad} == {"zero.mp4", "truncated.mp4", "garbage.mp4"}
    assert result["history"][0]["bad_count"] == 3
    out = capsys.readouterr().out
    assert "skipped 3 unreadable video(s)" in out and "garbage.mp4" in out
    (left, right), = [result["history"][0]["val"]["per_class"]]
    assert f"val top-1 per class: left {100 * left:.1f}%, right {100 * right:.1f}%\n" in out
    assert (tmp_path / "run" / "last.safetensors").is_file()


def test_many_bad_videos_are_counted_not_all_printed_and_kept_once(tiny_data, tmp_path, capsys, monkeypatch):
    # A Kinetics download has thousands of broken files: each epoch printed a line for each,
    # and history.json listed all of them again in every epoch (21 MB after 50 epochs of
    # 2,400, rewritten and dumped into last_state.pt every epoch).
    from effvid.training import loop

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    for i in range(13):
        (data / "train" / "left" / f"zero{i:02d}.mp4").write_bytes(b"")
    real_state = loop.RunWriter.state

    def state_crashing_at_epoch_2(self, state, name):
        if state["epoch"] == 1:
            raise Crash()
        real_state(self, state, name)

    run = tmp_path / "run"
    monkeypatch.setattr(loop.RunWriter, "state", state_crashing_at_epoch_2)
    with pytest.raises(Crash):  # the resume redoes epoch 2 from epoch 1's state
        # 25 training clips in batches of 5: no ragged last batch dropped, every clip read
        train(tiny_config(data, run, epochs=2, batch_size=5))
    monkeypatch.setattr(loop.RunWriter, "state", real_state)
    assert len(json.loads((run / "bad_videos.json").read_text())) == 13
    out = capsys.readouterr().out
    assert "skipped 13 unreadable video(s) this epoch:" in out
    assert sum("zero" in line for line in out.splitlines()) == 10
    assert "    ... and 3 more (all in bad_videos.json)\n" in out
    # a video that breaks after the crash is new in epoch 2; the 13 were met before it
    good = sorted((data / "val" / "right").glob("*.mp4"))[0]
    good.write_bytes(b"")
    result = train(tiny_config(data, run, epochs=2, batch_size=5, resume=True))
    out = capsys.readouterr().out
    assert "skipped 14 unreadable video(s) this epoch:" in out and "... and 4 more" in out

    zeros = sorted(str(data / "train" / "left" / f"zero{i:02d}.mp4") for i in range(13))
    history = json.loads((run / "history.json").read_text())
    assert history == result["history"]
    assert [h["bad_count"] for h in history] == [13, 14]
    assert [p for p, _ in history[0]["bad_new"]] == zeros
    assert history[1]["bad_new"] == [[str(good), "file is empty (0 bytes)"]]
    assert all("bad_samples" not in h for h in history)
    listed = json.loads((run / "bad_videos.json").read_text())
    assert [(b["path"], b["epoch"]) for b in listed] == [(p, 0) for p in zeros] + [(str(good), 1)]
    assert listed[0]["reason"] == "file is empty (0 bytes)"
    state = torch.load(run / "last_state.pt", weights_only=True)
    assert json.loads(state["history"]) == history


def test_history_of_an_older_run_lists_each_bad_video_once_on_resume():
    # records written before bad_new listed every unreadable video of their epoch
    from effvid.training.run_folder import bad_videos_list, upgrade_bad_samples

    history = [{"epoch": 0, "bad_samples": [["a.mp4", "empty"], ["b.mp4", "no video stream"]]},
               {"epoch": 1, "bad_samples": [["a.mp4", "empty"], ["c.mp4", "truncated"]]},
               {"epoch": 2, "bad_samples": []}]
    upgrade_bad_samples(history)
    assert history == [{"epoch": 0, "bad_count": 2, "bad_new": [["a.mp4", "empty"], ["b.mp4", "no video stream"]]},
                       {"epoch": 1, "bad_count": 2, "bad_new": [["c.mp4", "truncated"]]},
                       {"epoch": 2, "bad_count": 0, "bad_new": []}]
    assert bad_videos_list(history) == [{"path": "a.mp4", "reason": "empty", "epoch": 0},
                                        {"path": "b.mp4", "reason": "no video stream", "epoch": 0},
                                        {"path": "c.mp4", "reason": "truncated", "epoch": 1}]
    # a history already in the new format, resumed a second time, stays as it is
    again = json.loads(json.dumps(history))
    upgrade_bad_samples(again)
    assert again == history


def test_no_readable_training_video_stops_the_run_with_the_first_path_and_reason(tiny_data, tmp_path):
    from effvid.errors import UserError

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    for video in (data / "train").glob("*/*.mp4"):
        video.write_bytes(b"")
    with pytest.raises(UserError) as caught:
        train(tiny_config(data, tmp_path / "run", epochs=1))
    # the same wording as validation's and effvid eval's (it used to give the path without a reason)
    head = "epoch 1 trained on no clips: every training video was unreadable (12 unreadable; the first: "
    message = str(caught.value)
    assert message.startswith(head), message
    first = message[len(head):].split(": ", 1)[0]  # the shuffled order's first
    assert first in {str(p) for p in (data / "train").glob("*/*.mp4")}
    assert message.endswith(f"{first}: file is empty (0 bytes))"), message
    assert not (tmp_path / "run" / "last_state.pt").exists()


def test_progress_bar_into_a_log_is_not_redrawn_every_batch(tiny_data, tmp_path, capsys):
    # stderr is not a terminal here, as in a log file or CI: the bar writes its first line and
    # its final one (a redraw every 30 s between), not one line per batch (12 batches)
    train(tiny_config(tiny_data, tmp_path / "run", epochs=1, batch_size=1, progress=True))
    err = capsys.readouterr().err
    # each redraw on a line of its own: no carriage returns, no blank lines (the bar's clearing)
    lines = err.splitlines()
    assert "\r" not in err and lines and all(line.strip() for line in lines), repr(err)
    assert err.endswith("\n"), repr(err)
    bar = [line for line in lines if line.startswith("epoch 1/1")]
    assert len(bar) <= 3 and bar[0].startswith("epoch 1/1:   0%|"), err
    # the final state, once: the log showed only the 0% line, as if the bar had stuck
    assert bar[-1].startswith("epoch 1/1: 100%|") and "| 12/12 [" in bar[-1], err
    # tqdm writes a rate below 1 as its inverse, "s/batch" (a loaded machine)
    assert any(f"{rate}, acc=" in bar[-1] for rate in ("batch/s", "s/batch")) and "loss=" in bar[-1], bar[-1]
    evals = [line for line in lines if line.startswith("eval")]
    assert evals[0].startswith("eval:   0%|") and evals[-1].startswith("eval: 100%|"), err
    assert "| 6/6 [" in evals[-1] and ("batch/s]" in evals[-1] or "s/batch]" in evals[-1]), evals[-1]
    assert len(bar) + len(evals) == len(lines), err


def test_progress_bar_on_a_terminal_is_cleared_when_done(monkeypatch):
    # on a terminal the bar redraws in place and is cleared at the end: the caller's result
    # line (the epoch's) takes its place

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert list(progress_bar(range(3), desc="check", unit="video")) == [0, 1, 2]
    out = terminal.getvalue()
    assert "\n" not in out and "video/s" in out, repr(out)
    assert out.endswith("\r") and out.split("\r")[-2].strip() == "", repr(out)  # cleared


def test_timed_wait_counts_the_waits_for_items_not_the_work_between_them():
    def slow_items():
        for i in range(3):
            time.sleep(0.05)
            yield i

    waits = TimedWait(slow_items())
    start = time.perf_counter()
    items = []
    for item in waits:
        items.append(item)
        time.sleep(0.1)  # the consumer's own work
    elapsed = time.perf_counter() - start
    assert items == [0, 1, 2]
    assert 0.15 <= waits.seconds <= elapsed - 0.3


def test_epochs_report_the_share_spent_waiting_for_data(tiny_data, tmp_path, capsys):
    # workers=0: every clip is decoded in the training process, between steps
    history = train(tiny_config(tiny_data, tmp_path / "run", epochs=1))["history"]
    wait = history[0]["train"]["data_wait"]
    assert 0.0 < wait < 1.0
    assert f"{100 * wait:.0f}% waiting for data" in capsys.readouterr().out


def test_a_gpu_run_waiting_for_data_gets_one_hint_to_add_workers():
    hint = data_wait_hint(0.62, torch.device("cuda", 0), workers=2, epoch=0)
    assert "waited for data 62% of epoch 1" in hint and "--workers (now 2;" in hint
    assert data_wait_hint(0.3, torch.device("cuda", 0), workers=2, epoch=0) is None
    # on a CPU the workers share the cores with the step: no advice to add more
    assert data_wait_hint(0.9, torch.device("cpu"), workers=2, epoch=0) is None


@pytest.mark.slow
def test_quickstart_tsm_learns_order_that_tsn_cannot(tmp_path, capsys):
    """The README's main job, end to end: left vs right, up vs down, grow vs shrink, where each
    mirrored class is the other's frames in reverse order. TSN is blind to frame order (its
    logits for a clip and its reversal are identical), so it cannot beat 50% on such a pair;
    TSM's shift sees order and separates them (>= 90%)."""
    from effvid.cli import main
    from effvid.commands.quickstart import PAIRS, pair_accuracy
    from effvid.inference import test_dataset

    out = tmp_path / "qs"
    assert main(["quickstart", "--output", str(out), "--quiet"]) == 0
    assert "validation accuracy (top-1)" in capsys.readouterr().out
    history = {k: json.loads((out / k / "history.json").read_text())[-1]["val"] for k in ("tsn", "tsm")}
    assert history["tsm"]["top1"] >= 0.9
    tsm, meta = load_model(out / "tsm" / "best.safetensors")
    for pair in PAIRS:
        assert pair_accuracy(history["tsn"]["confusion"], meta["classes"], pair) <= 0.6
        assert pair_accuracy(history["tsm"]["confusion"], meta["classes"], pair) >= 0.85

    tsn = create_model("tsn_resnet_tiny", num_classes=6, num_segments=8)
    # The same weights without the shift (the shifted conv is wrapped as `.net`).
    tsn.load_state_dict({k.replace(".net.", "."): v for k, v in tsm.state_dict().items()})
    # Every validation "left" clip, and its frames reversed (a "right" clip): TSN's logits are
    # the same for both, TSM names both (one clip was checked before; a run on a GPU, 98%
    # right overall, got that one wrong)
    videos = sorted((out / "data" / "val" / "left").glob("*.mp4"))
    dataset = test_dataset([(str(v), 0) for v in videos], meta, num_segments=8)
    clips = torch.stack([dataset[i]["video"] for i in range(len(videos))])
    tsm.eval(), tsn.eval()
    with torch.no_grad():
        torch.testing.assert_close(tsn(clips), tsn(clips.flip(1)), rtol=1e-5, atol=1e-5)
        left = (tsm(clips).argmax(1) == meta["classes"].index("left")).float().mean().item()
        right = (tsm(clips.flip(1)).argmax(1) == meta["classes"].index("right")).float().mean().item()
    assert len(videos) == 75 and left >= 0.9 and right >= 0.9, (left, right)


def test_quickstart_table_shows_the_epoch_its_checkpoint_holds(tmp_path, capsys):
    # the table printed the last epoch (TSM 10.0%) next to best.safetensors (its best epoch:
    # 16.7%, which effvid eval gave), and judged a 2-epoch run by the 12-epoch run's 90%
    from effvid.cli import main
    from effvid.commands.quickstart import PAIRS, pair_accuracy

    out = tmp_path / "qs"
    # a high learning rate: the second epoch overshoots, below the first
    assert main(["quickstart", "--output", str(out), "--epochs", "2", "--videos-per-class", "4",
                 "--lr", "0.02", "--seed", "2", "--workers", "0", "--quiet", "--device", "cpu"]) == 0  # no verdict
    printed = capsys.readouterr().out.splitlines()
    histories = {k: json.loads((out / k / "history.json").read_text()) for k in ("tsn", "tsm")}
    best = {k: max(h, key=lambda e: (e["val"]["top1"], -e["epoch"])) for k, h in histories.items()}
    assert best["tsm"]["epoch"] == 0 and histories["tsm"][-1]["val"]["top1"] < best["tsm"]["val"]["top1"]
    classes = load_weights(out / "tsm" / "best.safetensors")[1]["classes"]
    start = printed.index("validation accuracy (top-1)       TSN      TSM")
    pct = {k: [100 * best[k]["val"]["top1"]] + [100 * pair_accuracy(best[k]["val"]["confusion"], classes, p)
                                                 for p in PAIRS] for k in ("tsn", "tsm")}
    rows = ["  all 6 classes", "   left vs right", "     up vs down", "   grow vs shrink"]
    assert printed[start + 1:start + 6] == [
        f"{'  best epoch (of 2)':<32}{best['tsn']['epoch'] + 1:5d}        1",
        *[f"{row:<32}{pct['tsn'][i]:5.1f}%   {pct['tsm'][i]:5.1f}%" for i, row in enumerate(rows)]]
    assert printed[start + 8] == f"TSM checkpoint: {out / 'tsm' / 'best.safetensors'} (epoch 1)"
    assert printed[-1] == ("(the expected TSM accuracy, 90%, is for the default settings; this run changed "
                           "--epochs, --videos-per-class, --lr)")
    # the checkpoint it points to scores what the table says
    report = tmp_path / "eval.json"
    assert main(["eval", str(out / "data"), "-c", str(out / "tsm" / "best.safetensors"), "--workers", "0",
                 "--quiet", "--device", "cpu", "--json", str(report)]) == 0
    assert f"{100 * json.loads(report.read_text())['top1']:5.1f}%" == f"{pct['tsm'][0]:5.1f}%"


def test_config_types_ranges_and_finite_numbers():
    # a config file is JSON: "0.01" or "false" must not pass as a number or a bool
    for values, match in [({"lr": "0.01"}, "lr='0.01': expected float"),
                          ({"flip": "false"}, "flip='false': expected bool"),
                          ({"epochs": 1.5}, "epochs=1.5: expected int"),
                          ({"crop_scales": 0.5}, "crop_scales=0.5: expected list"),
                          ({"seed": "abc"}, "seed='abc': expected int | None"),
                          ({"lr": float("nan")}, "lr=nan: must be a finite number"),
                          ({"clip_grad": -1.0}, "clip_grad=-1.0: must be > 0, or 0 / null"),
                          ({"fc_lr_mult": -1.0}, "fc_lr_mult=-1.0: must be > 0"),
                          ({"momentum": 1.5}, r"momentum=1.5: must be in \[0, 1\)"),
                          ({"epochs": 2, "warmup_epochs": 10}, r"warmup_epochs=10: must be in \[0, epochs=2\]"),
                          ({"lr_steps": [40, 20]}, "lr_steps=.*increasing"),
                          ({"seed": 10**14}, "seed=100000000000000")]:
        with pytest.raises(ValueError, match=match):
            TrainConfig.from_dict({"data": "x", **values})
    ok = TrainConfig.from_dict({"data": "x", "lr": 1, "clip_grad": None, "warmup_epochs": 2})
    assert ok.lr == 1 and ok.clip_grad is None


def test_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "cfg.json"
    bad.write_text('{"lr": 0.1,')
    with pytest.raises(ValueError, match=r"cfg\.json' is not valid JSON"):
        TrainConfig.load(bad)
    bad.write_text('{"lr": "0.1"}')
    with pytest.raises(ValueError, match=r"cfg\.json': bad config value lr='0.1'"):
        TrainConfig.load(bad)


def test_warmup_never_overshoots_the_learning_rate():
    # 0.3 epochs of 6 steps is 1.8 steps: step 2 used to get 1.11x the set rate
    cfg = TrainConfig(data="x", epochs=2, warmup_epochs=0.3)
    factors = [lr_factor(cfg, s, 6) for s in range(12)]
    assert max(factors) == pytest.approx(1.0) and factors[0] == pytest.approx(1 / 1.8)
    assert factors[1] == 1.0 and factors == sorted(factors[:2]) + factors[2:]


def test_per_class_accuracy_of_a_class_without_samples_is_none():
    from effvid.training.metrics import ClassificationMeter

    meter = ClassificationMeter(3)
    meter.update(torch.tensor([[5.0, 0, 0], [0, 0, 5.0], [0, 0, 5.0]]), torch.tensor([0, 0, 2]))
    assert meter.summary()["per_class"] == [0.5, None, 1.0]


def test_amp_may_change_on_resume_on_the_cpu_only():
    # on the CPU autocast is off either way: "changed settings (amp True -> False)" protected nothing
    import dataclasses

    saved = dataclasses.asdict(TrainConfig(data="videos").with_optimizer_defaults())  # as a run saves it
    resumed = TrainConfig(data="videos", amp=False)
    assert resumed.resume_differences(saved) == ["amp True -> False"]  # on a GPU it changes the run
    assert resumed.resume_differences(saved, on_cpu=True) == []
    assert TrainConfig(data="videos", amp=False, lr=0.5).resume_differences(saved, on_cpu=True) == ["lr 0.01 -> 0.5"]


def test_run_folder_is_protected(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    first = train(tiny_config(tiny_data, run, epochs=1, seed=None))
    saved = json.loads((run / "config.json").read_text())
    # the saved configuration holds the seed the run used (here the clock's), not "resume"
    assert saved["seed"] == first["seed"] and saved["resume"] is False
    # the learning rate of the last step is logged (3 steps; cosine over 1 epoch: 0.25 of 0.02)
    assert first["history"][0]["train"]["lr"] == pytest.approx(0.02 * 0.25)

    def snapshot():
        return {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}

    # a killed process's temp file is removed at the next start; a user's own files are not
    (run / ".last_state.pt.tmp4242").write_bytes(b"half")
    (run / ".notes.tmp").write_text("mine")
    before = snapshot()
    # a new run into it is refused
    with pytest.raises(ValueError, match="already holds a run: continue it with --resume"):
        train(tiny_config(tiny_data, run, epochs=1))
    # a resume that changes how the run trains is refused, with the differences, before any write
    with pytest.raises(ValueError, match=r"cannot resume .* with changed settings \(momentum 0.9 -> 0.5; "
                                         r"weight_decay 0.0005 -> 0.0\)"):
        train(tiny_config(tiny_data, run, epochs=2, resume=True, momentum=0.5, weight_decay=0.0, seed=None))
    with pytest.raises(ValueError, match=r"model 'tsm_resnet_tiny' -> 'tsn_resnet_tiny'; seed \d+ -> 3"):
        train(tiny_config(tiny_data, run, epochs=2, resume=True, model="tsn_resnet_tiny"))
    # a state from before the check (no config in it) that does not fit: one clear line
    state = torch.load(run / "last_state.pt", weights_only=True)
    del state["config"]
    torch.save(state, tmp_path / "old_state.pt")
    shutil.copy(tmp_path / "old_state.pt", run / "last_state.pt")
    before[run.joinpath("last_state.pt").relative_to(run)] = (run / "last_state.pt").read_bytes()
    with pytest.raises(ValueError, match="last_state.pt does not fit tsn_resnet_tiny with 2 classes"):
        train(tiny_config(tiny_data, run, epochs=2, resume=True, model="tsn_resnet_tiny"))
    # a finished run resumed with the same number of epochs: nothing to do
    assert train(tiny_config(tiny_data, run, epochs=1, resume=True, seed=None))["history"] == first["history"]
    assert "has completed 1 of 1 epoch: nothing to do" in capsys.readouterr().out
    assert snapshot() == before  # none of the refused or empty starts wrote (or removed) anything
    # what may change: more epochs (and workers, device, ...)
    more = train(tiny_config(tiny_data, run, epochs=2, resume=True, seed=None))
    assert not (run / ".last_state.pt.tmp4242").exists() and (run / ".notes.tmp").read_text() == "mine"
    assert [h["epoch"] for h in more["history"]] == [0, 1]
    # --overwrite starts again, without the old run's TensorBoard points
    again = train(tiny_config(tiny_data, run, epochs=1, overwrite=True))
    assert len(again["history"]) == 1 and len(list((run / "tensorboard").iterdir())) == 1


def test_init_weights_keep_the_classifier_only_for_the_same_classes(tmp_path):
    from effvid.models.weights import save_weights
    from effvid.training.init_weights import load_init_weights

    source = create_model("tsm_resnet_tiny", num_classes=2, num_segments=4)
    torch.nn.init.normal_(source.fc.weight)
    save_weights(source, tmp_path / "w.safetensors", {"classes": ["left", "right"]})
    same = create_model("tsm_resnet_tiny", num_classes=2, num_segments=4)
    said = load_init_weights(same, tmp_path / "w.safetensors", ["left", "right"], "tsm_resnet_tiny")
    assert said == f"starting from {tmp_path / 'w.safetensors'}: all its weights, classifier included"
    assert torch.equal(same.fc.weight, source.fc.weight)
    assert torch.equal(same.backbone.conv1.weight, source.backbone.conv1.weight)
    other = create_model("tsm_resnet_tiny", num_classes=2, num_segments=4)
    fresh = other.fc.weight.clone()
    said = load_init_weights(other, tmp_path / "w.safetensors", ["up", "down"], "tsm_resnet_tiny")
    assert said.endswith(": its backbone, a new classifier for 2 classes")
    assert torch.equal(other.fc.weight, fresh)  # new classes: a new classifier
    # the same weights in a network that computes differently load, and the run says so
    causal = create_model("tsm_resnet_tiny", num_classes=2, num_segments=8, shift_direction="causal")
    said = load_init_weights(causal, tmp_path / "w.safetensors", ["left", "right"], "tsm_resnet_tiny")
    assert said.endswith("classifier included; it was trained as shift_direction bidirectional "
                         "(this run: causal), num_segments 4 (this run: 8)"), said
    # a TSN's weights start a TSM and the other way round (the shifted convs are wrapped)
    tsn = create_model("tsn_resnet_tiny", num_classes=2, num_segments=4)
    said = load_init_weights(tsn, tmp_path / "w.safetensors", ["left", "right"], "tsn_resnet_tiny")
    assert torch.equal(tsn.backbone.layer1[0].conv1.weight, source.backbone.layer1[0].conv1.net.weight)
    assert said.endswith("; it was trained as name tsm_resnet_tiny (this run: tsn_resnet_tiny), "
                         "shift_div 8 (this run: -), shift_place residual (this run: -), "
                         "shift_direction bidirectional (this run: -)"), said
    save_weights(tsn, tmp_path / "tsn.safetensors", {"classes": ["left", "right"]})
    tsm = create_model("tsm_resnet_tiny", num_classes=2, num_segments=4)
    load_init_weights(tsm, tmp_path / "tsn.safetensors", ["left", "right"], "tsm_resnet_tiny")
    assert all(torch.equal(a, b) for a, b in zip(tsm.state_dict().values(), source.state_dict().values()))
    from effvid.training.init_weights import match_shift_wrappers

    tsm_keys = create_model("tsm_mobilenet_v2", num_classes=2, num_segments=4).state_dict()
    tsn_keys = create_model("tsn_mobilenet_v2", num_classes=2, num_segments=4).state_dict()
    assert sum(".net." in k for k in tsm_keys) == 10  # MobileNetV2 wraps a Sequential, not a conv
    assert set(match_shift_wrappers(tsn_keys, tsm_keys)) == set(tsm_keys)
    assert set(match_shift_wrappers(tsm_keys, tsn_keys)) == set(tsn_keys)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last_state.pt").write_bytes(b"PK\x03\x04")
    (tmp_path / "run" / "best.safetensors").write_bytes((tmp_path / "w.safetensors").read_bytes())
    with pytest.raises(ValueError, match=r"last_state.pt is a run's resume state, not weights: "
                                         r"use .*run/best.safetensors \(effvid train --output "):
        load_init_weights(tsm, tmp_path / "run" / "last_state.pt", ["left", "right"], "tsm_resnet_tiny")
    div4 = create_model("tsm_resnet_tiny", num_classes=2, num_segments=4, shift_div=4)
    said = load_init_weights(div4, tmp_path / "w.safetensors", ["left", "right"], "tsm_resnet_tiny")
    assert said.endswith("; it was trained as shift_div 8 (this run: 4)"), said
    # the frame size it was trained at (train's metadata), when this run's differs: it was not said
    save_weights(source, tmp_path / "at32.safetensors", {"classes": ["left", "right"], "extra": {"size": 32}})
    said = load_init_weights(div4, tmp_path / "at32.safetensors", ["left", "right"], "tsm_resnet_tiny", 64)
    assert said.endswith("; it was trained as shift_div 8 (this run: 4), size 32 (this run: 64)"), said
    said = load_init_weights(same, tmp_path / "at32.safetensors", ["left", "right"], "tsm_resnet_tiny", 32)
    assert said.endswith(": all its weights, classifier included"), said
    assert torch.equal(other.backbone.conv1.weight, source.backbone.conv1.weight)
    wide = create_model("tsm_resnet18", num_classes=2, num_segments=4)
    # named by the model its metadata records, not by the keys that differ
    with pytest.raises(ValueError, match=r"w\.safetensors holds a tsm_resnet_tiny \(as its metadata records\), "
                                         r"not the tsm_resnet18 being trained: fine-tune it with --model "
                                         r"tsm_resnet_tiny$"):
        load_init_weights(wide, tmp_path / "w.safetensors", ["up", "down"], "tsm_resnet18")


def test_resume_does_not_need_the_starting_weights(tiny_data, tmp_path, capsys):
    """The weights a run started from are overwritten by its last_state.pt on resume: a resume
    refused with 'weights file not found' once the fine-tuning source was moved away."""
    from effvid.models.weights import save_weights

    init = tmp_path / "k400.safetensors"
    save_weights(create_model("tsm_resnet_tiny", num_classes=5, num_segments=4), init)
    kw = dict(init_weights=str(init), schedule="step")  # a constant rate: 1 + 1 epochs = 2
    train(tiny_config(tiny_data, tmp_path / "run", epochs=1, **kw))
    # the run says what it started from (the classifier was replaced silently)
    assert f"starting from {init}: its backbone, a new classifier for 2 classes\n" in capsys.readouterr().out
    train(tiny_config(tiny_data, tmp_path / "full", epochs=2, **kw))
    init.unlink()
    resumed = train(tiny_config(tiny_data, tmp_path / "run", epochs=2, resume=True, **kw))
    assert [h["epoch"] for h in resumed["history"]] == [0, 1]
    a, b = load_weights(tmp_path / "run" / "last.safetensors")[0], load_weights(tmp_path / "full" / "last.safetensors")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_validation_data_is_used_whole(synthetic_root, tmp_path):
    from effvid.training.run_data import build_datasets

    # --val-data: all of DATA trains and all of the validation folder validates (each used to
    # lose a 20% split); a root with train/ and val/ as --val-data gives its val/ part
    tr, va = build_datasets(TrainConfig(data=str(synthetic_root / "train"), val_data=str(synthetic_root / "val")))
    assert (len(tr), len(va)) == (18, 12) and tr.train and not va.train
    tr, va = build_datasets(TrainConfig(data=str(synthetic_root), val_data=str(synthetic_root)))
    assert (len(tr), len(va)) == (18, 12)
    # one class, or no validation videos: refused at start
    one = tmp_path / "one"
    shutil.copytree(synthetic_root / "train" / "left", one / "left")
    with pytest.raises(ValueError, match="has 1 class \\(left\\); a classifier needs at least 2"):
        build_datasets(TrainConfig(data=str(one)))
    shutil.copytree(synthetic_root / "val" / "right", one / "right")
    for f in sorted((one / "right").iterdir())[1:]:
        f.unlink()
    for f in sorted((one / "left").iterdir())[1:]:
        f.unlink()
    with pytest.raises(ValueError, match="no validation videos: .* too few videos per class"):
        build_datasets(TrainConfig(data=str(one)))


def test_optimizer_groups_and_partial_bn_under_ddp(tmp_path):
    # The original's get_optim_policies (trained from ImageNet): classifier weight 5x LR with
    # weight decay, its bias 10x without; BatchNorm and biases without weight decay. Partial
    # BN as in its TSN.train(): the first BatchNorm adapts, every later one keeps its
    # statistics and affine parameters (eval mode, no gradient, not in the optimiser). Under
    # DistributedDataParallel, built before the first train(), the second step used to fail
    # ("Expected to have finished reduction in the prior iteration").
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch import nn

    from effvid.training.loop import build_optimizer

    torch.manual_seed(0)
    model = create_model("tsm_resnet_tiny", num_classes=3, num_segments=2, partial_bn=True)
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(data="x", model="tsm_resnet_tiny", lr=0.1, weight_decay=1e-4)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(model)
        opt = build_optimizer(model, cfg)
        group_of = {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
        assert group_of[id(model.fc.weight)] == (pytest.approx(0.5), 1e-4)
        assert group_of[id(model.fc.bias)] == (pytest.approx(1.0), 0.0)
        assert group_of[id(model.backbone.conv1.weight)] == (pytest.approx(0.1), 1e-4)
        assert group_of[id(bns[0].weight)] == group_of[id(bns[0].bias)] == (pytest.approx(0.1), 0.0)
        assert not any(id(p) in group_of for bn in bns[1:] for p in bn.parameters())
        ddp.train()
        for _ in range(2):
            loss = F.cross_entropy(ddp(torch.randn(4, 2, 3, 32, 32)), torch.tensor([0, 1, 2, 0]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        dist.destroy_process_group()
    after = model.state_dict()
    names = [k for k, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert not torch.equal(after[f"{names[0]}.weight"], before[f"{names[0]}.weight"])
    assert not torch.equal(after[f"{names[0]}.running_mean"], before[f"{names[0]}.running_mean"])
    for name in names[1:]:
        for t in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(after[f"{name}.{t}"], before[f"{name}.{t}"]), f"{name}.{t}"


def test_resume_from_another_folder_finds_relative_data(tiny_data, tmp_path, monkeypatch):
    # config.json stores the data path absolute: `effvid train --output RUN --resume` from
    # elsewhere used to fail with "dataset source not found: 'data'"
    from effvid.commands.train import config_from_args, register

    shutil.copytree(tiny_data, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    train(tiny_config("data", run, epochs=1))
    assert json.loads((run / "config.json").read_text())["data"] == str(tmp_path / "data")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    parser = __import__("argparse").ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", "--output", str(run), "--resume", "--epochs", "2"])
    assert [h["epoch"] for h in train(config_from_args(args))["history"]] == [0, 1]


def test_seedless_run_keeps_its_validation_split_on_resume(tiny_data, tmp_path, monkeypatch):
    # A folder without train/ and val/ is split with the run's seed. A seedless run's seed is
    # the clock's, saved in config.json; the split used to be drawn with seed 0 at first and
    # with the saved clock seed on resume, so the resumed epochs trained on validation videos.
    from effvid.commands.train import config_from_args, register
    from effvid.training import loop

    flat = tmp_path / "flat"
    shutil.copytree(tiny_data / "train", flat)
    monkeypatch.setattr(loop.time, "time", lambda: 1234.5)
    full = train(tiny_config(flat, tmp_path / "full", seed=None, val_fraction=0.34))

    real_plots = loop.RunWriter.plots

    def plots_then_crash(self, history, classes):
        real_plots(self, history, classes)
        raise Crash()

    run = tmp_path / "run"
    monkeypatch.setattr(loop.RunWriter, "plots", plots_then_crash)
    with pytest.raises(Crash):
        train(tiny_config(flat, run, seed=None, val_fraction=0.34))
    monkeypatch.setattr(loop.RunWriter, "plots", real_plots)
    parser = __import__("argparse").ArgumentParser()
    register(parser.add_subparsers())
    resumed = train(config_from_args(parser.parse_args(["train", "--output", str(run), "--resume"])))
    assert resumed["seed"] == 1234
    a, _ = load_weights(tmp_path / "full" / "last.safetensors")
    b, _ = load_weights(run / "last.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert resumed["history"][1]["val"]["confusion"] == full["history"][1]["val"]["confusion"]


def test_crashes_around_the_commit_point_keep_best_and_history(tiny_data, tmp_path, monkeypatch):
    # Validation improves every epoch, so every epoch is the best.
    from effvid.training import loop

    real_evaluate, real_state, real_text = loop.evaluate, loop.RunWriter.state, loop.RunWriter.text
    evaluations = []

    def improving(*args, **kwargs):
        stats = real_evaluate(*args, **kwargs)
        evaluations.append(1)
        stats["top1"] = 0.1 * len(evaluations)
        return stats

    def state_crashing_at_epoch_2(self, state, name):
        if state["epoch"] == 1:
            raise Crash()
        real_state(self, state, name)

    def history_crashing_at_epoch_2(self, name, content):
        if name == "history.json" and len(json.loads(content)) == 2:
            raise Crash()
        real_text(self, name, content)

    monkeypatch.setattr(loop, "evaluate", improving)
    # 1. killed while writing epoch 2's state: best.safetensors (and last) must still be epoch
    # 1's, the committed one; they used to hold epoch 2's weights, which no record describes
    # (and which a resume that redoes epoch 2 differently would never replace)
    run = tmp_path / "run"
    monkeypatch.setattr(loop.RunWriter, "state", state_crashing_at_epoch_2)
    with pytest.raises(Crash):
        train(tiny_config(tiny_data, run))
    committed = torch.load(run / "last_state.pt", weights_only=True)
    assert committed["epoch"] == 0
    for name in ("best.safetensors", "last.safetensors"):
        weights, meta = load_weights(run / name)
        assert meta["epoch"] == 1, name
        for k, v in weights.items():
            torch.testing.assert_close(v, committed["model"][k], rtol=0, atol=0, msg=k)
    monkeypatch.setattr(loop.RunWriter, "state", real_state)

    # 2. killed after committing the final epoch, before its history.json: the resume has
    # nothing to train but must complete the epoch's files (history.json used to stay at 1 epoch)
    run = tmp_path / "run2"
    monkeypatch.setattr(loop.RunWriter, "text", history_crashing_at_epoch_2)
    with pytest.raises(Crash):
        train(tiny_config(tiny_data, run))
    monkeypatch.setattr(loop.RunWriter, "text", real_text)
    assert len(json.loads((run / "history.json").read_text())) == 1
    train(tiny_config(tiny_data, run, resume=True))
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [0, 1]
    committed = torch.load(run / "last_state.pt", weights_only=True)
    for name in ("best.safetensors", "last.safetensors"):
        weights, meta = load_weights(run / name)
        assert meta["epoch"] == 2, name
        for k, v in weights.items():
            torch.testing.assert_close(v, committed["model"][k], rtol=0, atol=0, msg=k)


def test_a_stop_after_the_commit_point_counts_and_shows_the_committed_epoch(tiny_data, tmp_path, monkeypatch,
                                                                           capsys):
    # Ctrl-C (here a crash) after epoch 2's last_state.pt, before its history.json: the message
    # and effvid info counted history.json's 1 epoch, the resume went on at epoch 3, and epoch
    # 2's results were never shown
    from effvid.cli import main
    from effvid.commands.train import saved_epochs
    from effvid.training import loop

    real_text = loop.RunWriter.text

    def history_crashing_at_epoch_2(self, name, content):
        if name == "history.json" and len(json.loads(content)) == 2:
            raise Crash()
        real_text(self, name, content)

    run = tmp_path / "run"
    cfg = tiny_config(tiny_data, run, epochs=3)
    monkeypatch.setattr(loop.RunWriter, "text", history_crashing_at_epoch_2)
    with pytest.raises(Crash):
        train(cfg)
    monkeypatch.setattr(loop.RunWriter, "text", real_text)
    capsys.readouterr()
    assert len(json.loads((run / "history.json").read_text())) == 1
    committed = json.loads(torch.load(run / "last_state.pt", weights_only=True)["history"])
    assert [h["epoch"] for h in committed] == [0, 1]

    assert saved_epochs(cfg) == (f"the last completed epoch (2 of 3) is saved: continue with effvid "
                                 f"train --output {run} --resume")
    assert main(["info", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3].startswith("epochs       2 of 3 ("), lines
    assert lines[5].startswith(f"last epoch   train loss {committed[1]['train']['loss']:.3f}, "), lines
    assert main(["info", str(run), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["epochs_done"] == 2 and info["last"]["val_top1"] == committed[1]["val"]["top1"]

    # the resume shows epoch 2's results (as the run would have) before it goes on at epoch 3
    train(tiny_config(tiny_data, run, epochs=3, resume=True))
    out = capsys.readouterr().out.splitlines()
    at = out.index("epoch 2 was saved just before the run stopped; its results, not shown then:")
    train_stats, val_stats = committed[1]["train"], committed[1]["val"]
    assert out[at + 1] == (f"epoch 2/3: train loss {train_stats['loss']:.3f} top1 {100 * train_stats['top1']:.1f}% "
                           f"| val top1 {100 * val_stats['top1']:.1f}% | {committed[1]['seconds']:.0f}s, "
                           f"{100 * train_stats['data_wait']:.0f}% waiting for data"
                           + (" | best" if val_stats["top1"] > committed[0]["val"]["top1"] else ""))
    assert out[at + 2].startswith("  val top-1 per class: left ")
    assert out[at + 3] == f"resumed from {run / 'last_state.pt'} at epoch 3"
    assert out[at + 4].startswith("epoch 3/3: ")
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [0, 1, 2]


def test_curves_use_one_colour_per_split_in_both_panels():
    # the accuracy panel drew val blue and train orange, the loss panel train blue and val orange
    import matplotlib.colors
    import matplotlib.pyplot as plt

    from effvid.training.plots import curves_figure

    history = [{"epoch": e, "train": {"loss": 2.0 - e, "top1": 0.3 + 0.1 * e},
                "val": {"loss": 2.5 - e, "top1": 0.2 + 0.1 * e}} for e in range(2)]
    fig = curves_figure(history)
    try:
        ax_loss, ax_acc = fig.axes
        loss = {line.get_label(): line for line in ax_loss.get_lines()}
        acc = {line.get_label(): line for line in ax_acc.get_lines()}
        assert sorted(loss) == ["train", "val"] and sorted(acc) == ["train top-1", "val top-1"]
        for split in ("train", "val"):
            assert (matplotlib.colors.to_hex(loss[split].get_color())
                    == matplotlib.colors.to_hex(acc[f"{split} top-1"].get_color())), split
        assert (matplotlib.colors.to_hex(loss["train"].get_color())
                != matplotlib.colors.to_hex(loss["val"].get_color()))
        assert list(loss["val"].get_ydata()) == [2.5, 1.5]
        assert list(acc["train top-1"].get_ydata()) == pytest.approx([30.0, 40.0])
        # whole epochs on the x axis (it showed 1.0, 1.2, 1.4, ... for 2 epochs)
        fig.canvas.draw()
        for ax in (ax_loss, ax_acc):
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks == [1.0, 2.0], ticks
    finally:
        plt.close(fig)


def test_write_failures_name_the_file_and_keep_the_previous_one(tmp_path, monkeypatch):
    import matplotlib.figure

    from effvid.errors import UserError
    from effvid.models.weights import atomic_replace
    from effvid.training.plots import plot_curves

    # a full disk or a file-size limit (ulimit -f): torch.save said only "unexpected pos
    # 1415296 vs 1415184", with a traceback
    path = tmp_path / "last_state.pt"
    torch.save({"epoch": 0}, path)

    def write_full_disk(tmp):
        with open(tmp, "wb") as f:
            f.write(b"x" * 100)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1415296 vs 1415184")

    with pytest.raises(UserError, match=r"could not write .*last_state\.pt \(.*unexpected pos.*disk full.*"
                                        r"the previous last_state\.pt is unchanged"):
        atomic_replace(path, write_full_disk)
    assert torch.load(path, weights_only=True) == {"epoch": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_state.pt"]

    # a plot killed half-way leaves the previous PNG (it was written in place)
    history = [{"epoch": 0, "train": {"loss": 1.0, "top1": 0.5}, "val": {"loss": 1.0, "top1": 0.5}}]
    plot_curves(history, tmp_path / "curves.png")
    before = (tmp_path / "curves.png").read_bytes()
    real_savefig = matplotlib.figure.Figure.savefig

    def half_savefig(self, fname, **kw):
        real_savefig(self, fname, **kw)
        with open(fname, "r+b") as f:
            f.truncate(100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", half_savefig)
    with pytest.raises(UserError, match=r"could not write .*curves\.png \(.*No space left"):
        plot_curves(history * 2, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes() == before


def test_resume_with_another_number_of_processes_is_refused(tiny_data, tmp_path, monkeypatch):
    # --batch-size is per process: a 2-process run resumed in 1 process continued silently with
    # half the effective batch and other shards
    from effvid.training import loop, run_lock
    from effvid.training.distributed import DistEnv

    run = tmp_path / "run"
    train(tiny_config(tiny_data, run, epochs=1))
    assert torch.load(run / "last_state.pt", weights_only=True)["world_size"] == 1
    monkeypatch.setattr(loop, "init_distributed", lambda device: DistEnv(0, 2, 0))
    # no process group: the second process's answer to the run-folder lock, which it never takes
    monkeypatch.setattr(run_lock, "all_gather_objects", lambda obj, env: [obj, None])
    with pytest.raises(ValueError, match=r"cannot resume .* with 2 process\(es\): it was trained with 1 "
                                         r"\(effective batch 4, now 8\); resume it with 1"):
        train(tiny_config(tiny_data, run, epochs=2, resume=True))


def test_resume_on_data_with_other_classes_is_refused(tiny_data, tmp_path):
    # DATA may move on resume; with as many classes but other names (or another order), the
    # weights loaded and the run went on with its labels renamed
    run = tmp_path / "run"
    train(tiny_config(tiny_data, run, epochs=1))
    assert torch.load(run / "last_state.pt", weights_only=True)["classes"] == ["left", "right"]
    moved = tmp_path / "moved"
    for split in ("train", "val"):
        shutil.copytree(tiny_data / split / "left", moved / split / "left")
        shutil.copytree(tiny_data / split / "right", moved / split / "up")
    with pytest.raises(ValueError, match=r"cannot resume .* trained on the 2 classes left, right, and "
                                         r".*moved has 2: left, up;"):
        train(tiny_config(moved, run, epochs=2, resume=True))
    renamed = tmp_path / "renamed"  # the same classes in a new place resume
    shutil.copytree(tiny_data, renamed)
    assert [h["epoch"] for h in train(tiny_config(renamed, run, epochs=2, resume=True))["history"]] == [0, 1]


def test_resume_on_data_of_another_layout_is_refused(tiny_data, tmp_path, capsys):
    # a run on DATA with train/ and val/, resumed on DATA/train (one folder, split by fraction)
    # or with a --val-data, or a run on one folder resumed on train/ and val/, validated on other
    # videos from then on, silently (and best.safetensors was the best of both)
    run, flat, run2 = tmp_path / "run", tmp_path / "flat", tmp_path / "run2"
    train(tiny_config(tiny_data, run, epochs=1))
    shutil.copytree(tiny_data / "train", flat)
    train(tiny_config(flat, run2, epochs=1))

    def refusal(run, before, now, keep):
        return (f"cannot resume {run}: it validated on {before}, and this resume would validate on {now}: its "
                "epochs' accuracies would be on other videos (some of them perhaps trained on) and "
                f"best.safetensors the best of both; resume it with its data (effvid train {keep} --output "
                f"{run} --resume), or start a new run from its weights (--init-weights {run / 'last.safetensors'} "
                "--output NEW)")

    parts = f"the val/ folder of {tiny_data}"
    for data, val_data, now in ((tiny_data / "train", None, f"20% of each class of {tiny_data / 'train'} (held out)"),
                                (tiny_data / "train", str(tmp_path / "val"), f"--val-data {tmp_path / 'val'}")):
        with pytest.raises(ValueError) as e:
            train(tiny_config(data, run, epochs=2, resume=True, val_data=val_data))
        assert str(e.value) == refusal(run, parts, now, tiny_data)
    with pytest.raises(ValueError) as e:
        train(tiny_config(tiny_data, run2, epochs=2, resume=True))
    assert str(e.value) == refusal(run2, f"20% of each class of {flat} (held out)", parts, flat)
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [0]  # untouched
    # the same layout elsewhere (moved): a note; the same videos as --val-data: nothing to say
    moved = tmp_path / "moved"
    shutil.copytree(tiny_data, moved)
    capsys.readouterr()
    train(tiny_config(moved, run, epochs=1, resume=True))
    assert (f"note: the run validated on {parts}; this resume validates on the val/ folder of {moved} (moved? "
            "the same videos keep the epochs' accuracies comparable; to validate as before: effvid train "
            f"{tiny_data} --output {run} --resume)\n") in capsys.readouterr().out
    train(tiny_config(tiny_data / "train", run, epochs=1, resume=True, val_data=str(tiny_data / "val")))
    assert "note:" not in capsys.readouterr().out


def png_size(path) -> tuple[int, int]:
    import struct

    return struct.unpack(">II", path.read_bytes()[16:24])  # the IHDR chunk: width, height


def test_confusion_plot_stays_drawable_with_many_classes_and_long_names(tmp_path):
    from effvid.plot_text import shorten_label
    from effvid.training.plots import plot_confusion

    # 60 classes drew 2900 px square (400: 18200 px, 96 s and 15 GB every epoch)
    n = 60
    confusion = [[3 if i == j else int(j == (i + 1) % n) for j in range(n)] for i in range(n)]
    plot_confusion(confusion, [f"class {i}" for i in range(n)], tmp_path / "many.png")
    assert png_size(tmp_path / "many.png") == (2000, 2000)
    # Something-Something-like names: labels keep both ends (where such names differ), and the
    # figure makes room for them instead of pushing the matrix out (400 px, labels cut off)
    names = ["moving something from left to right " * 5 + "slowly",
             "moving something from left to right " * 5 + "quickly"]
    labels = [shorten_label(name) for name in names]
    assert labels[0] != labels[1] and max(map(len, labels)) == 40
    assert labels[0].startswith("moving something") and labels[0].endswith("slowly")
    plot_confusion([[2, 1], [0, 3]], names, tmp_path / "long.png")
    assert png_size(tmp_path / "long.png") == (610, 610)


def test_history_keeps_the_confusion_matrix_of_the_best_and_last_epochs_only(tiny_data, tmp_path, monkeypatch):
    # A matrix per epoch made history.json 65 MB after 50 epochs of 400 classes, rewritten
    # (5 s) every epoch, and last_state.pt 24 MB.
    from effvid.training import loop

    real_evaluate, matrices = loop.evaluate, []

    def best_first(*args, **kwargs):
        stats = real_evaluate(*args, **kwargs)
        stats["top1"] = (0.5, 0.2, 0.3)[len(matrices)]
        matrices.append(stats["confusion"])
        return stats

    monkeypatch.setattr(loop, "evaluate", best_first)
    run = tmp_path / "run"
    train(tiny_config(tiny_data, run, epochs=3))
    history = json.loads((run / "history.json").read_text())
    assert [("confusion" in h["val"]) for h in history] == [True, False, True]
    assert history[0]["val"]["confusion"] == matrices[0] and history[2]["val"]["confusion"] == matrices[2]
    assert json.loads(torch.load(run / "last_state.pt", weights_only=True)["history"]) == history


def test_class_names_the_font_cannot_draw_give_one_note_not_a_warning_per_character(tmp_path, capsys):
    import warnings

    from effvid.training.plots import plot_confusion

    # private-use characters: no plotting font draws them (as DejaVu Sans, matplotlib's
    # default, draws no Chinese); 30 Chinese class names printed ~480 warning lines
    names = ["".join(chr(0xE000 + 4 * i + k) for k in range(4)) for i in range(6)]
    confusion = [[int(i == j) for j in range(6)] for i in range(6)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # two epochs
            plot_confusion(confusion, names, tmp_path / "confusion.png")
    assert [str(w.message) for w in caught] == []
    assert capsys.readouterr().err.splitlines() == [
        "note: confusion.png: the plotting font has no glyph for 24 character(s) of the class "
        "names; they show as empty boxes"]


def test_more_processes_than_gpus_is_refused_by_every_process(tiny_data, tmp_path, monkeypatch):
    # process 1 of 2 on a one-GPU machine took cuda:1 and met CUDA's "invalid device ordinal";
    # process 0, the one that reports errors, must say why too
    from effvid.training import loop, run_lock
    from effvid.training.distributed import DistEnv

    monkeypatch.setattr(loop, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(run_lock, "all_gather_objects", lambda obj, env: [obj, None])
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    for rank in (0, 1):
        monkeypatch.setattr(loop, "init_distributed", lambda device, r=rank: DistEnv(r, 2, r))
        with pytest.raises(UserError, match=r"torchrun started 2 processes on this machine, which has 1 "
                                            r"GPU\(s\): give --nproc-per-node at most 1"):
            train(tiny_config(tiny_data, tmp_path / f"run{rank}", device="cuda"))


def test_float16_loss_scaling_unscales_before_clipping_and_skips_overflowing_steps():
    # float16 autocast (GPUs before Ampere) needs loss scaling; it runs on the CPU here, with
    # the same GradScaler logic as on CUDA
    import copy

    from torch import nn

    from effvid.training.loop import optimizer_step

    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    reference = copy.deepcopy(model)
    x = torch.randn(8, 4)
    opt, ref_opt = (torch.optim.SGD(m.parameters(), lr=0.1) for m in (model, reference))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    # the update equals a plain step clipped at the true gradient norm (the scaled gradients
    # are 4096x larger: clipped before unscaling, the step would be 4096x too small)
    ref_opt.zero_grad()
    reference(x).pow(2).mean().backward()
    assert torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.05) > 0.05  # clipping matters
    ref_opt.step()
    optimizer_step(model(x).pow(2).mean(), model, opt, scaler, clip_grad=0.05)
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert scaler.get_scale() == 2.0 ** 12
    # gradients that overflow at this scale: the step is skipped and the scale halved
    before = [p.detach().clone() for p in model.parameters()]
    optimizer_step(model(x).sum() * 1e36, model, opt, scaler, clip_grad=0.05)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))
    assert scaler.get_scale() == 2.0 ** 11
    # disabled (float32, bfloat16): a plain step
    off = torch.amp.GradScaler("cpu", enabled=False)
    optimizer_step(model(x).pow(2).mean(), model, opt, off, clip_grad=None)
    assert not all(torch.equal(a, b) for a, b in zip(model.parameters(), before))


def test_mixed_precision_dtype_follows_the_gpu(monkeypatch):
    from effvid.training.evaluate import amp_dtype

    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (7, 5))  # a T4
    assert amp_dtype(cuda, True) is torch.float16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (9, 0))  # an H100
    assert amp_dtype(cuda, True) is torch.bfloat16
    assert amp_dtype(cuda, True, "float16") is torch.float16
    assert amp_dtype(cuda, False) is None and amp_dtype(torch.device("cpu"), True, "float16") is None
    with pytest.raises(ValueError, match=r"amp_dtype='half': choose one of auto, bfloat16, float16"):
        TrainConfig(amp_dtype="half")


def test_validation_videos_in_another_folder_with_val_data_root(tmp_path, capsys):
    # Kinetics-like: the training videos on one disk, the validation videos on another, with no
    # common parent to give as --data-root; one --data-root served both lists
    from effvid.cli import main
    from effvid.commands.train import config_from_args, register

    synthetic = tmp_path / "synthetic"
    make_synthetic_dataset(synthetic, classes=("left", "right"), videos_per_class_train=4,
                           videos_per_class_val=2, num_frames=8, size=32, seed=1)
    train_videos, val_videos = tmp_path / "disk1" / "k400" / "train", tmp_path / "disk2" / "val"
    train_videos.parent.mkdir(parents=True)
    val_videos.parent.mkdir(parents=True)
    shutil.move(synthetic / "train", train_videos)
    shutil.move(synthetic / "val", val_videos)
    for video in val_videos.rglob("*.mp4"):  # names of their own, as Kinetics' clips have
        video.rename(video.with_name("val_" + video.name))
    lists = tmp_path / "lists"
    lists.mkdir()
    for name, videos in (("train.txt", train_videos), ("val.txt", val_videos)):
        (lists / name).write_text("".join(f"{p.relative_to(videos).as_posix()} {p.parent.name}\n"
                                          for p in sorted(videos.rglob("*.mp4"))))
    run = tmp_path / "run"
    args = ["train", str(lists / "train.txt"), "--val-data", str(lists / "val.txt"), "--data-root",
            str(train_videos), "--model", "tsm_resnet_tiny", "--num-segments", "4", "--size", "32",
            "--scale-size", "32", "--no-flip", "--epochs", "1", "--batch-size", "4", "--workers", "0",
            "--no-progress", "--output", str(run)]
    # without --val-data-root the validation list is read against --data-root: its videos are
    # reported missing, named, before anything is written
    assert main(args) == 2
    val_list = repr(str(lists / "val.txt"))
    assert capsys.readouterr().err == (
        f"effvid train: error: {val_list} line 1: video not found: "
        f"{str(train_videos / 'left' / 'val_left_0000.mp4')!r}; 3 more of the 4 listed videos are missing "
        f"too (the next: {val_list} line 2: video not found: "
        f"{str(train_videos / 'left' / 'val_left_0001.mp4')!r}) (--val-data-root gives the folder "
        "of --val-data's videos)\n")
    assert not run.exists()
    # the readers' own hints name --data-root, DATA's folder: for --val-data, the flag is another
    assert _for_val_data("v.csv: none of its 4 listed videos is in '/x': give the videos' folder "
                         "with --data-root") == ("v.csv: none of its 4 listed videos is in '/x': give "
                                                 "the videos' folder with --val-data-root")
    assert main([*args, "--val-data-root", str(val_videos)]) == 0
    history = json.loads((run / "history.json").read_text())
    assert (history[0]["train"]["count"], history[0]["val"]["count"]) == (8, 4)
    saved = json.loads((run / "config.json").read_text())
    assert (saved["data_root"], saved["val_data_root"]) == (str(train_videos), str(val_videos))
    # it gives --val-data's folder: without --val-data it would be ignored, so it is refused
    with pytest.raises(ValueError, match=r"val_data_root='v': it gives the folder of val_data's videos, "
                                         r"and there is no val_data"):
        TrainConfig(data="x", val_data_root="v")

    # a run from before --val-data-root: its config.json and state have no val_data_root, and it
    # resumes with --data-root serving both (here the training list validates, as a stand-in)
    old = tmp_path / "old"
    train(tiny_config(lists / "train.txt", old, val_data=str(lists / "train.txt"),
                      data_root=str(train_videos), epochs=1))
    config = json.loads((old / "config.json").read_text())
    del config["val_data_root"]
    (old / "config.json").write_text(json.dumps(config))
    state = torch.load(old / "last_state.pt", weights_only=True)
    state["config"] = json.dumps({k: v for k, v in json.loads(state["config"]).items()
                                  if k != "val_data_root"})
    torch.save(state, old / "last_state.pt")
    assert TrainConfig.load(old / "config.json").val_data_root is None
    parser = __import__("argparse").ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", "--output", str(old), "--resume", "--epochs", "2"])
    resumed = train(config_from_args(args))
    assert [h["epoch"] for h in resumed["history"]] == [0, 1]
    assert resumed["history"][1]["val"]["count"] == 8


def _resume_args(run, *more):
    from effvid.commands.train import config_from_args, register

    parser = __import__("argparse").ArgumentParser()
    register(parser.add_subparsers())
    return config_from_args(parser.parse_args(["train", "--output", str(run), "--resume", *more]))


def test_resume_after_the_data_changed_keeps_its_validation_videos(tiny_data, tmp_path, capsys):
    # Adding 3 videos and resuming moved 7 of 12 validation videos into training, silently.
    flat = tmp_path / "flat"
    shutil.copytree(tiny_data / "train", flat)
    run = tmp_path / "run"
    train(tiny_config(flat, run, epochs=1, val_fraction=0.34))
    split = json.loads((run / "split.json").read_text())
    assert (split["seed"], split["val_fraction"]) == (3, 0.34)
    assert len(split["val"]) == 4 and len(split["train"]) == 8  # round(6 * 0.34) of each class
    assert all(not key.startswith("/") and key.split("/")[0] in ("left", "right")
               for key in split["val"] + split["train"])  # relative to DATA
    for video in sorted((tiny_data / "val").glob("*/*.mp4")):  # 3 new videos in each class
        shutil.copy(video, flat / video.parent.name / f"new_{video.name}")
    (flat / split["train"][0]).unlink()  # and a training video of left gone
    capsys.readouterr()
    resumed = train(_resume_args(run, "--epochs", "2"))
    out = capsys.readouterr().out
    # left 8 videos: round(2.72) = 3 validate; right 9: round(3.06) = 3; one new video each
    assert ("note: the data has changed since the run started: 6 video(s) added, 1 removed; 0 "
            "video(s) changed sides; validation: 4 -> 6 videos (2 of them added)\n") in out
    assert f"resumed from {run / 'last_state.pt'} at epoch 2" in out
    again = json.loads((run / "split.json").read_text())
    assert set(split["val"]) <= set(again["val"]) and not set(split["train"]) & set(again["val"])
    assert resumed["history"][1]["val"]["count"] == 6
    # unchanged data: nothing to say
    capsys.readouterr()
    train(_resume_args(run, "--epochs", "3"))
    assert "note: the data" not in capsys.readouterr().out  # (the other --epochs has its note)
    # a run from before split.json resumes, with the split drawn again and a note
    (run / "split.json").unlink()
    train(_resume_args(run, "--epochs", "4"))
    out = capsys.readouterr().out
    assert (f"note: {run} has no split.json (a run from before effvid saved its held-out split): the "
            "validation videos are drawn again, and some of them may have been trained on in the "
            "epochs before\n") in out
    from effvid.data import scan_class_folders, split_key, stratified_split

    _, fresh = stratified_split(scan_class_folders(flat)[0], 0.34, 3, root=flat)
    assert json.loads((run / "split.json").read_text())["val"] == [split_key(s.path, flat) for s in fresh]


def test_val_fraction_that_would_be_ignored_is_refused(tiny_data, tmp_path):
    # `effvid train tv --val-fraction 0.5` (tv has train/ and val/) and a --val-fraction beside
    # --val-data were silently ignored, as --official-split is not
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=r"^val_fraction=0.5 holds out part of DATA for validation, but "
                                         rf"{tiny_data} has train/ and val/ folders, whose val/ validates; "
                                         r"nothing is held out \(drop --val-fraction\)$"):
        train(tiny_config(tiny_data, run, val_fraction=0.5))
    with pytest.raises(ValueError, match=rf"^val_fraction=0.3 .*, but --val-data {tiny_data / 'val'} gives "
                                         "the validation videos; nothing is held out"):
        train(tiny_config(tiny_data / "train", run, val_data=str(tiny_data / "val"), val_fraction=0.3))
    assert not run.exists()
    # a run whose config.json holds one (saved before it was refused) still resumes
    train(tiny_config(tiny_data, run, epochs=1))
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config | {"val_fraction": 0.5}))
    state = torch.load(run / "last_state.pt", weights_only=True)
    state["config"] = json.dumps(json.loads(state["config"]) | {"val_fraction": 0.5})
    torch.save(state, run / "last_state.pt")
    assert [h["epoch"] for h in train(_resume_args(run, "--epochs", "2"))["history"]] == [0, 1]


def test_the_run_summarises_its_data_and_warns_of_classes_it_cannot_learn(tiny_data, tmp_path, capsys):
    flat = tmp_path / "flat"
    shutil.copytree(tiny_data / "train", flat)
    (flat / "still").mkdir()
    (flat / "still" / "empty.mp4").write_bytes(b"")  # listed, so counted; unreadable when decoded
    # one batch of all 11 training clips: none is dropped as a ragged last batch
    train(tiny_config(flat, tmp_path / "run", epochs=1, batch_size=11))
    out = capsys.readouterr().out
    assert out.startswith("data: 3 classes, 11 training and 2 validation videos (20% of each class "
                          "held out, seed 3)\n")
    assert "warning: every training video of still is unreadable: the model cannot learn it\n" in out

    # a list's typo'd label makes a class of 1 video; a class all held out trains on nothing
    from effvid.training.run_data import build_datasets, data_summary

    videos = sorted(str(p) for p in (tiny_data / "train").glob("*/*.mp4"))
    lines = [f"{v} {v.split('/')[-2]}" for v in videos]
    lines[2] = lines[2].replace(" left", " lef")
    shutil.copy(videos[0], tmp_path / "up.mp4")  # (one video listed twice is read once)
    lines.append(f"{tmp_path / 'up.mp4'} up")
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    cfg = tiny_config(tmp_path / "train.txt", tmp_path / "r2", val_fraction=0.8)
    assert data_summary(*build_datasets(cfg, 3), cfg, 3) == [
        # left 5: 4 validate, 1 trains; right 6: 5 and 1; lef 1 and up 1: round(0.8) = 1 validates
        "data: 4 classes, 2 training and 11 validation videos (80% of each class held out, seed 3)",
        "warning: 2 of 4 classes have no training videos, so the model cannot learn them: lef, up",
    ]
    cfg = tiny_config(tmp_path / "train.txt", tmp_path / "r2")
    assert cfg.batch_size == 4
    assert data_summary(*build_datasets(cfg, 3), cfg, 3)[1:] == [
        # a ragged last batch is dropped: it left 20% of a small collection untrained each
        # epoch without a word
        "note: batches of 4 leave 3 training videos out of each epoch (a different 3 each time; a "
        "batch size that divides 11 trains on all of them)",
        "warning: class 'lef' has 1 training video and 'left' has 4: is 'lef' a typo of 'left'? "
        "(each label is a class)"]
    # integer labels: a 5 among 0s and 1s is not "a typo of '0'"
    numbered = [f"{v} {0 if 'left' in v else 1}" for v in videos]
    numbered[2] = numbered[2].rsplit(" ", 1)[0] + " 5"
    (tmp_path / "numbered.txt").write_text("\n".join(numbered) + "\n")
    summary = data_summary(*build_datasets(tiny_config(tmp_path / "numbered.txt", tmp_path / "r3"), 3), cfg, 3)
    assert summary[-1] == ("warning: 3 of 6 classes have no training videos, so the model cannot learn them: "
                           "2, 3, 4") and not any("typo" in line for line in summary), summary
    from effvid.training.run_data import ragged_batch_dropped

    assert [ragged_batch_dropped(n, 8, w) for n, w in ((30, 1), (32, 1), (8, 1), (5, 1), (30, 2), (33, 2))] == \
        [6, 0, 0, 0, 7, 1]
    # 11 videos on 2 processes: DistributedSampler pads them to 2 x 6, training one twice ("a
    # batch size that divides 6 trains on all of them" said nothing of it)
    assert data_summary(*build_datasets(cfg, 3), cfg, 3, world_size=2)[1] == (
        "note: 2 processes share the 11 training videos as 6 each, 1 of them repeated to make 12 (the "
        "sampler pads the shares to one size), so each epoch trains 1 video twice (a different one each "
        "time), and batches of 4 leave 2 training videos per process out of it (a different 2 each time); "
        "a batch size that divides 6 trains on every video, 1 of them twice; each video exactly once "
        "needs a number of processes that divides 11")


def test_unreadable_videos_are_listed_once_across_a_resume(tiny_data, tmp_path, monkeypatch, capsys):
    # DATA given relative: the first epochs recorded data/train/left/zero.mp4, the resumed ones
    # (config.json keeps DATA absolute) the absolute path, and bad_videos.json listed it twice
    shutil.copytree(tiny_data, tmp_path / "data")
    (tmp_path / "data" / "train" / "left" / "zero.mp4").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    train(tiny_config("data", run, epochs=1, batch_size=13))  # one batch: every clip is read
    first = capsys.readouterr().out
    zero = str(tmp_path / "data" / "train" / "left" / "zero.mp4")
    assert f"    {zero}: file is empty (0 bytes)" in first
    train(_resume_args(run, "--epochs", "2"))
    assert f"    {zero}: file is empty (0 bytes)" in capsys.readouterr().out
    assert json.loads((run / "bad_videos.json").read_text()) == [
        {"path": zero, "reason": "file is empty (0 bytes)", "epoch": 0}]

    # an older run's history, with both spellings, lists each video once after a resume
    from effvid.training.run_folder import absolute_bad_paths

    history = [{"epoch": 0, "bad_new": [["vids/running/empty.mp4", "empty"], ["./vids/a/x.mp4", "bad"]]},
               {"epoch": 1, "bad_new": [["/r/vids/running/empty.mp4", "empty"], ["/r/vids/sitting/t.mp4", "cut"]]}]
    absolute_bad_paths(history, ["/r/vids/running/empty.mp4", "/r/vids/sitting/t.mp4", "/r/vids/a/x.mp4",
                                 "/r/vids/b/ok.mp4"])
    assert history == [{"epoch": 0, "bad_new": [["/r/vids/running/empty.mp4", "empty"], ["/r/vids/a/x.mp4", "bad"]]},
                       {"epoch": 1, "bad_new": [["/r/vids/sitting/t.mp4", "cut"]]}]
    # a path that two videos end with is left as it was
    history = [{"epoch": 0, "bad_new": [["x.mp4", "bad"]]}]
    absolute_bad_paths(history, ["/r/a/x.mp4", "/r/b/x.mp4"])
    assert history == [{"epoch": 0, "bad_new": [["x.mp4", "bad"]]}]


def test_a_resume_with_other_epochs_says_what_happens_to_the_learning_rate(tiny_data, tmp_path, capsys):
    from effvid.training.loop import epochs_change_note

    # The cosine schedule spans the run's length: raising --epochs raised the rate again, unsaid.
    # 12 training videos in batches of 4: 3 steps an epoch; the rate is set per step
    run = tmp_path / "run"
    train(tiny_config(tiny_data, run, epochs=2))
    capsys.readouterr()
    train(tiny_config(tiny_data, run, epochs=3, resume=True))
    ended = 0.02 * 0.5 * (1 + math.cos(math.pi * 5 / 6))  # step 6 of 6, of the 2-epoch schedule
    starts = 0.02 * 0.5 * (1 + math.cos(math.pi * 6 / 9))  # step 7 of 9, of the 3-epoch one
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert notes == [f"note: --epochs 3 differs from the run's 2: the cosine schedule now decays over 3 "
                     f"epochs instead of 2, so the learning rate rises from {ended:.3g} (end of epoch 2) "
                     f"to {starts:.3g} (epoch 3); the weights will differ from those of a run of either length"]
    # the same length again (its config.json now says 3): no note
    train(tiny_config(tiny_data, run, epochs=4, resume=True))
    capsys.readouterr()
    train(tiny_config(tiny_data, run, epochs=4, resume=True))
    assert "note:" not in capsys.readouterr().out
    # lowered: a 5-epoch run of 10 steps an epoch, 2 epochs done, resumed with 4
    history = [{"train": {"lr": 0.1 * 0.5 * (1 + math.cos(math.pi * (10 * e + 9) / 50))}} for e in range(2)]
    note = epochs_change_note(TrainConfig(data="x", epochs=4, lr=0.1), 5, history, 10)
    assert note == (f"note: --epochs 4 differs from the run's 5: the cosine schedule now decays over 4 "
                    f"epochs instead of 5, so the learning rate drops from {history[1]['train']['lr']:.3g} "
                    "(end of epoch 2) to 0.05 (epoch 3); the weights will differ from those of a run of "
                    "either length")
    assert epochs_change_note(TrainConfig(data="x", epochs=4, schedule="step", lr_steps=[2, 3]), 5,
                              history, 10) == ("note: --epochs 4 differs from the run's 5: the step "
                                               "schedule's epochs (--lr-steps 2 3) do not change; the run "
                                               "ends after epoch 4")
    assert epochs_change_note(TrainConfig(data="x", epochs=5), 5, history, 10) is None
    # rates equal to 3 digits (1 epoch of 100 done, resumed with 101) said "drops from 0.01 ... to 0.01"
    history = [{"train": {"lr": 0.01 * 0.5 * (1 + math.cos(math.pi * 9 / 1000))}}]
    for epochs, decays in ((101, "more slowly"), (99, "faster")):
        note = epochs_change_note(TrainConfig(data="x", epochs=epochs, lr=0.01), 100, history, 10)
        assert note == (f"note: --epochs {epochs} differs from the run's 100: the cosine schedule now decays "
                        f"over {epochs} epochs instead of 100, so the learning rate goes on at 0.01 in epoch 2, "
                        f"as at the end of epoch 1, and then decays {decays}; the weights will differ from "
                        "those of a run of either length")
    # inside the warm-up the rate rises as planned: the change comes after it (the note said the
    # rate "rises" because of the schedule's new length)
    history = [{"train": {"lr": 0.1 * 10 / 30}}]
    assert epochs_change_note(TrainConfig(data="x", epochs=8, lr=0.1, warmup_epochs=3), 5, history, 10) == (
        "note: --epochs 8 differs from the run's 5: the warm-up goes on as planned (to --lr 0.1 at epoch 3), "
        "and the cosine schedule then decays from there to epoch 8 instead of 5; the weights will differ "
        "from those of a run of either length")


def test_tensorboard_shows_each_epoch_once_after_a_crash_before_its_commit(tiny_data, tmp_path):
    # An epoch's scalars are logged just before its state (the commit point) is written: a run
    # killed in between left a point that the resume logged again at the same step. Before the
    # first commit too: purge_step was None for a run that starts at epoch 0.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    def stray_point(run, step):  # what the killed run logged of the epoch it did not commit
        tb = SummaryWriter(str(run / "tensorboard"))
        tb.add_scalar("train/loss", 999.0, step)
        tb.close()
        time.sleep(1.1)  # event files are named by the second

    def losses(run):
        events = EventAccumulator(str(run / "tensorboard"))
        events.Reload()
        return [(e.step, e.value) for e in events.Scalars("train/loss")]

    run = tmp_path / "run"
    stray_point(run, 0)
    history = train(tiny_config(tiny_data, run, epochs=1))["history"]
    assert losses(run) == [(0, pytest.approx(history[0]["train"]["loss"]))]
    stray_point(run, 1)
    history = train(tiny_config(tiny_data, run, epochs=2, resume=True))["history"]
    assert losses(run) == [(0, pytest.approx(history[0]["train"]["loss"])),
                           (1, pytest.approx(history[1]["train"]["loss"]))]


def test_a_resume_with_other_workers_continues_exactly(tiny_data, tmp_path, monkeypatch):
    # Each clip's random frames, crop and flip come from (seed, epoch, index): they came from
    # torch's RNG, which is each worker's own, or with --workers 0 the training process's (which
    # dropout draws from too), and the documented "--resume --workers 0" (after a worker died)
    # trained on other clips than the uninterrupted run. Dropout on, flips on: every stream used.
    from effvid.training import loop

    settings = dict(dropout=0.5, flip=True, crop_scales=[1.0, 0.75], worker_timeout=0)
    full = train(tiny_config(tiny_data, tmp_path / "full", workers=0, **settings))
    real_plots = loop.RunWriter.plots

    def plots_then_crash(self, history, classes):
        real_plots(self, history, classes)
        raise Crash()

    monkeypatch.setattr(loop.RunWriter, "plots", plots_then_crash)
    with pytest.raises(Crash):  # after the first epoch's commit
        train(tiny_config(tiny_data, tmp_path / "half", workers=1, **settings))
    monkeypatch.setattr(loop.RunWriter, "plots", real_plots)
    resumed = train(tiny_config(tiny_data, tmp_path / "half", workers=0, resume=True, **settings))
    a, _ = load_weights(tmp_path / "full" / "last.safetensors")
    b, _ = load_weights(tmp_path / "half" / "last.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert [h["train"]["loss"] for h in resumed["history"]] == [h["train"]["loss"] for h in full["history"]]
