"""On a CUDA GPU: the shift, the recognisers in float32 and bfloat16, mixed-precision training
that learns, a resumed GPU run served on the CPU, online TSM and the AV model.

Skipped without a GPU (CI has none). On a GPU machine: ``python -m pytest tests/test_cuda.py``.
Comparisons with the CPU turn TF32 off (cuDNN uses it for float32 convolutions by default, with
10-bit mantissas), so that float32 means float32 on both.
"""

from __future__ import annotations

import json
import warnings
from contextlib import nullcontext

import pytest
import torch
from torch import nn

import effvid
from effvid.cli import main
from effvid.data.synthetic import make_synthetic_dataset
from effvid.models.online import OnlineRecognizer
from effvid.models.weights import load_model
from effvid.models.temporal_shift import DIRECTIONS, temporal_shift

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def true_float32():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _sensible(model: nn.Module, size: int = 64) -> nn.Module:
    """Activations and logits of a sensible scale in eval mode: BatchNorm statistics estimated on
    random clips (with the initial ones a MobileNetV2's logits are ~1e-9) and O(1) logits (the
    default classifier init gives ~1e-3), where tolerances mean something."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, model.num_segments, 3, size, size))
        model.fc.weight.normal_(0, 2 / model.fc.in_features ** 0.5)
    return model.eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_shift_on_cuda_moves_exactly_what_it_moves_on_the_cpu(direction, dtype):
    torch.manual_seed(0)
    t, c = 4, 16
    x = torch.randn(2 * t, c, 3, 5).to(dtype)
    grad = torch.randn_like(x)
    cpu_in = x.clone().requires_grad_(True)
    cpu_out = temporal_shift(cpu_in, t, 8, direction)
    cpu_out.backward(grad)
    gpu_in = x.cuda().requires_grad_(True)
    gpu_out = temporal_shift(gpu_in, t, 8, direction)
    gpu_out.backward(grad.cuda())
    assert torch.equal(gpu_out.detach().cpu(), cpu_out.detach())
    assert torch.equal(gpu_in.grad.cpu(), cpu_in.grad)
    # the values themselves: channel 0 of frame 1 comes from frame 2 (bidirectional) or frame 0
    # (causal), channel 1 of the last frame is zero (bidirectional: it has no next frame),
    # channel 4 (unshifted) stays
    got, src = gpu_out.detach().cpu().view(2, t, c, 3, 5), x.view(2, t, c, 3, 5)
    assert torch.equal(got[:, 1, 0], src[:, 2 if direction == "bidirectional" else 0, 0])
    assert torch.equal(got[:, 1, 4], src[:, 1, 4])
    if direction == "bidirectional":
        assert got[:, t - 1, 1].abs().sum() == 0 and torch.equal(got[:, t - 1, 2], src[:, t - 2, 2])
    # channels-last input (cuDNN's preferred layout) gives the same values
    cl = temporal_shift(x.cuda().to(memory_format=torch.channels_last), t, 8, direction)
    assert torch.equal(cl.cpu(), cpu_out.detach())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("shape", [(16, 64, 56, 56), (24, 40, 7, 7), (8, 2048, 1, 1), (6, 24, 3, 5)],
                         ids=["layer1", "small_hw", "pooled", "odd"])
def test_one_kernel_shift_equals_the_eager_shift_on_cuda(shape, dtype):
    # the kernel is what effvid uses on a GPU: check it is used (no fallback warning) and that
    # it writes exactly what the eager formulation writes, forward and backward
    from effvid.models import shift_kernel

    torch.manual_seed(0)
    x = torch.randn(shape, device="cuda").to(dtype)
    grad = torch.randn_like(x)
    assert shift_kernel.available(x)
    for direction, t in (("bidirectional", 8), ("causal", 2), ("bidirectional", 3)):
        if shape[0] % t:
            continue
        results = []
        for use_kernel in (True, False):
            inp = x.clone().requires_grad_(True)
            with warnings.catch_warnings(), (nullcontext() if use_kernel else shift_kernel.disabled()):
                warnings.simplefilter("error")  # a kernel that fails falls back with a RuntimeWarning
                out = temporal_shift(inp, t, 8, direction)
                out.backward(grad)
            results.append((out.detach(), inp.grad))
        assert torch.equal(results[0][0], results[1][0]), direction
        assert torch.equal(results[0][1], results[1][1]), direction


class _RecordingConv(nn.Conv2d):
    """A conv that keeps the tensor it was given (a subclass, not a hook: a hook that keeps the
    input turns borrowing off)."""

    def forward(self, x):
        self.seen, self.seen_values = x, x.clone()
        return super().forward(x)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_gpu_inference_shifts_the_input_in_place_and_puts_it_back(direction, monkeypatch):
    from effvid.models import shift_kernel
    from effvid.models.temporal_shift import TemporalShift

    torch.manual_seed(0)
    conv = _RecordingConv(32, 16, 1).cuda().eval()
    mod = TemporalShift(conv, 4, 8, direction, borrow_input=True)
    x = torch.randn(8, 32, 14, 14, device="cuda")
    before = x.clone()
    with torch.inference_mode():  # small inputs are copied (the in-place pair does not pay off)
        mod(x)
    assert conv.seen is not x and torch.equal(x, before)
    monkeypatch.setattr(shift_kernel, "IN_PLACE_MIN_BYTES", 0)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("error")
        y = mod(x)
        seen, seen_values = conv.seen, conv.seen_values
        expected_in = temporal_shift(before, 4, 8, direction)
        expected = conv(expected_in)
    assert seen is x  # borrowed: the conv got the input itself, not a copy
    assert torch.equal(seen_values, expected_in)  # holding the shifted values meanwhile
    assert torch.equal(x, before)  # and every value was put back
    torch.testing.assert_close(y, expected, rtol=1e-6, atol=1e-6)
    # with the kernel off it shifts a copy: the same output, the input never touched
    with torch.inference_mode(), shift_kernel.disabled():
        y_copy = mod(x)
    assert conv.seen is not x
    torch.testing.assert_close(y_copy, expected, rtol=1e-6, atol=1e-6)


def test_tsm_replayed_as_a_cuda_graph_equals_eager():
    # the one-kernel shift is captured into a CUDA graph (how a deployed model runs without
    # per-launch CPU cost) and the replay gives the eager forward's logits
    torch.manual_seed(0)
    model = _sensible(effvid.create_model("tsm_resnet18", num_classes=10, num_segments=4)).eval().cuda()
    x = torch.randn(2, 4, 3, 64, 64, device="cuda")
    with torch.inference_mode():
        eager = model(x).clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            model(x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = model(x)
        x.copy_(torch.randn_like(x))  # a new clip in the captured input
        graph.replay()
        torch.testing.assert_close(out, model(x), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(out, eager)


# bfloat16 keeps 8 bits of mantissa; the relative error of the logits (L2) of these random-weight
# networks under the CPU's bfloat16 autocast was 0.009-0.021 for the ResNet-18s and 0.12-0.14
# for MobileNetV2 (3 seeds each; its depthwise layers amplify rounding), hence the bounds.
@pytest.mark.parametrize("name,kw,bf16_error", [("tsm_resnet18", {}, 0.05), ("tsm_resnet18", {"shift_place": "inplace"}, 0.05),
                                                ("tsm_mobilenet_v2", {}, 0.25), ("tsn_resnet18", {}, 0.05)],
                         ids=["resnet18", "resnet18_inplace", "mobilenet_v2", "tsn_resnet18"])
def test_recognizer_on_cuda_matches_the_cpu_and_bfloat16_stays_close(name, kw, bf16_error):
    torch.manual_seed(0)
    model = _sensible(effvid.create_model(name, num_classes=10, num_segments=4, **kw)).eval()
    video = torch.randn(2, 4, 3, 64, 64)
    with torch.no_grad():
        cpu = model(video)
        model.cuda()
        gpu = model(video.cuda()).cpu()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            half = model(video.cuda()).float().cpu()
    scale = cpu.abs().max().item()
    assert scale > 0.1
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-3 * scale)
    error = ((half - cpu).norm() / cpu.norm()).item()
    assert error < bf16_error, error


def test_quickstart_learns_on_cuda(tmp_path, capsys):
    """The README's main job on the GPU (--device auto picks it; float32, see quickstart.py's
    --amp): the same bar as on the CPU (tests/test_training.py)."""
    from effvid.commands.quickstart import PAIRS, pair_accuracy

    out = tmp_path / "qs"
    assert main(["quickstart", "--output", str(out), "--quiet", "--workers", "4"]) == 0
    printed = capsys.readouterr().out
    assert printed.count(f"training on cuda:0 ({torch.cuda.get_device_name(0)}, float32)") == 2
    history = {k: json.loads((out / k / "history.json").read_text())[-1]["val"] for k in ("tsn", "tsm")}
    assert history["tsm"]["top1"] >= 0.9, history["tsm"]["top1"]
    classes = load_model(out / "tsm" / "best.safetensors")[1]["classes"]
    for pair in PAIRS:
        assert pair_accuracy(history["tsn"]["confusion"], classes, pair) <= 0.6
        assert pair_accuracy(history["tsm"]["confusion"], classes, pair) >= 0.85


def _tiny_gpu_run(tmp_path, *flags: str):
    """(data, run folder, the `effvid train` arguments of a tiny run on the GPU, ``flags`` added)."""
    data = tmp_path / "data"
    make_synthetic_dataset(data, classes=("left", "right"), videos_per_class_train=8,
                           videos_per_class_val=4, num_frames=8, size=32, seed=1)
    run = tmp_path / "run"
    argv = ["train", str(data), "--model", "tsm_resnet_tiny", "--num-segments", "4", "--size", "32",
            "--scale-size", "32", "--no-flip", "--batch-size", "4", "--workers", "2", "--seed", "0",
            "--no-progress", "--device", "cuda", "--output", str(run), *flags]
    return data, run, argv


def test_a_gpu_run_resumes_and_its_weights_serve_on_the_cpu(tmp_path, capsys):
    data, run, argv = _tiny_gpu_run(tmp_path)
    assert main(argv + ["--epochs", "2"]) == 0
    assert "training on cuda:0 (" in capsys.readouterr().out
    # the training state holds CPU tensors: it loads on a machine without CUDA too
    saved = torch.load(run / "last_state.pt", weights_only=True)
    tensors = [*saved["model"].values(), *(t for s in saved["optimizer"]["state"].values() for t in s.values()
                                             if isinstance(t, torch.Tensor))]
    assert len(tensors) > len(saved["model"]) and {t.device.type for t in tensors} == {"cpu"}
    assert main(argv + ["--epochs", "3", "--resume"]) == 0
    assert f"resumed from {run / 'last_state.pt'} at epoch 3" in capsys.readouterr().out
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2]
    # the resumed run kept the first two epochs (their training statistics as they were)
    assert [h["train"] for h in json.loads(saved["history"])] == [h["train"] for h in history[:2]]

    # the weights (written from GPU tensors) load and predict on the CPU as on the GPU
    ckpt = run / "last.safetensors"
    videos = [str(p) for p in sorted((data / "val").rglob("*.mp4"))]
    scores = {}
    for device in ("cpu", "cuda"):
        report = tmp_path / f"{device}.json"
        assert main(["predict", *videos, "-c", str(ckpt), "--device", device, "--workers", "0",
                     "--topk", "2", "--json", str(report), "--quiet"]) == 0
        scores[device] = torch.tensor([[t["score"] for t in sorted(r["top"], key=lambda t: t["label"])]
                                       for r in json.loads(report.read_text())])
    assert scores["cpu"].shape == (8, 2)
    torch.testing.assert_close(scores["cuda"], scores["cpu"], rtol=0, atol=1e-4)
    # eval on the GPU runs in bfloat16: the same clips, a loss within rounding
    stats = {}
    for device in ("cpu", "cuda"):
        report = tmp_path / f"eval_{device}.json"
        assert main(["eval", str(data / "val"), "-c", str(ckpt), "--device", device, "--workers", "0",
                     "--json", str(report), "--quiet"]) == 0
        stats[device] = json.loads(report.read_text())
    assert stats["cuda"]["count"] == stats["cpu"]["count"] == 8
    assert abs(stats["cuda"]["loss"] - stats["cpu"]["loss"]) < 0.02
    # --no-amp: float32 on the GPU too (TF32 is off in these tests), the CPU's loss to rounding
    report = tmp_path / "eval_fp32.json"
    assert main(["eval", str(data / "val"), "-c", str(ckpt), "--device", "cuda", "--no-amp", "--workers", "0",
                 "--json", str(report), "--quiet"]) == 0
    assert abs(json.loads(report.read_text())["loss"] - stats["cpu"]["loss"]) < 1e-4


def test_online_tsm_on_cuda_matches_the_offline_model_frame_by_frame():
    torch.manual_seed(0)
    t = 4
    model = _sensible(effvid.create_model("tsm_resnet18", num_classes=7, num_segments=t,
                                          shift_direction="causal"), size=32).cuda()
    video = torch.randn(2, t, 3, 32, 32, device="cuda")
    with torch.no_grad():
        offline = model.frame_logits(video)
    online = OnlineRecognizer.from_model(model)
    got = torch.stack([online.step(video[:, i]) for i in range(t)], dim=1)
    assert got.device.type == "cuda"
    scale = offline.abs().max().item()
    torch.testing.assert_close(got, offline, rtol=0, atol=1e-4 * scale)
    # control: without the cache (a new stream at each frame) the later frames differ
    fresh = []
    for i in range(t):
        online.reset()
        fresh.append(online.step(video[:, i]))
    assert (torch.stack(fresh, dim=1)[:, 1:] - offline[:, 1:]).abs().max().item() > 1e-2 * scale


def test_av_model_trains_on_cuda_in_bfloat16():
    from effvid.av import create_av_model

    torch.manual_seed(0)
    model = create_av_model(visual_cnn="slow_tiny", audio_cnn="resnet_tiny", width=32, heads=4, ffn=64,
                            rank=8, layers=3, sharing="partial", frames_per_clip=4, clip_seconds=0.25).cuda()
    video = torch.randn(2, 3, 3, 4, 32, 32, device="cuda")
    audio = torch.randn(2, 3, 4000, device="cuda")
    model.eval()
    with torch.no_grad():
        full = model(video, audio).fused_summary
        with torch.autocast("cuda", dtype=torch.bfloat16):
            half = model(video, audio).fused_summary.float()
    scale = full.abs().max().item()
    assert scale > 0.1 and (half - full).abs().max().item() < 0.08 * scale
    model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(video, audio)
    out.fused_summary.float().pow(2).mean().backward()
    u = model.visual_transformer.layers[0].query.U.weight
    assert u is model.multimodal_transformer.layers[0].query.U.weight  # shared across transformers
    assert u.grad is not None and torch.isfinite(u.grad).all() and u.grad.abs().sum() > 0
    assert model.visual_cnn.stem[0].weight.grad.abs().sum() > 0


def test_float16_training_scales_the_loss_and_resumes_with_its_scale(tmp_path, capsys):
    # what a GPU before Ampere (V100, T4) gets with --amp-dtype auto
    _, run, argv = _tiny_gpu_run(tmp_path, "--amp-dtype", "float16")
    assert main(argv + ["--epochs", "2"]) == 0
    assert "float16 autocast with loss scaling)" in capsys.readouterr().out
    state = torch.load(run / "last_state.pt", weights_only=True)
    assert state["scaler"]["scale"] > 0 and state["scaler"]["_growth_tracker"] >= 0
    # a scale that a fresh scaler (2**16) does not reach in the epoch's 4 steps (it halves at
    # most once a step, and grows only after 2,000 steps without overflow): the resumed run
    # must go on from it
    state["scaler"]["scale"] = 1024.0
    torch.save(state, run / "last_state.pt")
    assert main(argv + ["--epochs", "3", "--resume"]) == 0
    assert torch.load(run / "last_state.pt", weights_only=True)["scaler"]["scale"] <= 1024.0
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert all(torch.isfinite(torch.tensor(h["train"]["loss"])) for h in history)
