"""Online TSM benchmarks, all measured in one run on this machine (CPU).

1. Per-frame latency of the online TSM-MobileNetV2 (cached causal shift) vs a plain
   MobileNetV2 (TSN, no shift) on one frame, both as effvid one-frame steps in PyTorch.
   Target: ratio <= 1.05.
2. Frames per second of the online TSM-MobileNetV2 in ONNX Runtime (exported with
   ``effvid.export.export_online``), batch 1. Target: >= 30 fps on the 2-core CPU at 224x224.
3. Online (one frame of work per new frame) vs re-running an 8-frame offline TSM on a sliding
   window for each new frame: the ratio of per-frame costs.

Timings are interleaved (A, B, A, B, ...) and summarised by the median, so that load from
other processes hits both sides alike. Usage::

    python benchmarks/bench_online.py [--size 224] [--repeats 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _machine import describe_machine, repetitions

import effvid
from effvid.models.online import OnlineRecognizer


def calibrate(model: torch.nn.Module, size: int) -> None:
    """Random weights, but realistic BatchNorm statistics (from two random clips) and O(1)
    logits, so that activations neither vanish nor saturate (which would make timings
    (denormals) and the ONNX Runtime vs PyTorch comparison meaningless)."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(1, model.num_segments, 3, size, size))
    model.fc.weight.data.normal_(0, 3 / model.fc.in_features ** 0.5)
    model.eval()


def interleaved(fns: dict, repeats: int, warmup: int = 5) -> dict[str, list[float]]:
    """Seconds per call for each function, measured round-robin."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def paired_ratio(a: list[float], b: list[float]) -> float:
    return float(np.median(np.asarray(a) / np.asarray(b)))


def ms(xs: list[float]) -> str:
    return f"median {1000 * statistics.median(xs):7.2f} ms (p10 {1000 * np.percentile(xs, 10):6.2f}, " \
           f"p90 {1000 * np.percentile(xs, 90):6.2f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=repetitions, default=40)
    ap.add_argument("--threads", type=int, default=None, help="torch and ORT threads (default: all)")
    ap.add_argument("--window", type=int, default=8, help="sliding-window length (default: 8)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    size, k = args.size, 400

    tsm = effvid.create_model("tsm_mobilenet_v2", num_classes=k, num_segments=args.window,
                              shift_direction="causal").eval()
    tsn = effvid.create_model("tsn_mobilenet_v2", num_classes=k, num_segments=args.window).eval()
    for m in (tsm, tsn):
        calibrate(m, size)
    online_tsm = OnlineRecognizer.from_model(tsm)
    online_tsn = OnlineRecognizer.from_model(tsn)  # no shift, no caches: a plain MobileNetV2
    frame = torch.randn(1, 3, size, size)
    window = torch.randn(1, args.window, 3, size, size)

    import onnxruntime

    print(f"machine: {describe_machine(f'onnxruntime {onnxruntime.__version__}')}")
    print(f"input {size}x{size}, batch 1, {k} classes, {args.repeats} interleaved repeats\n")

    # 1 and 3: PyTorch. Paired rounds (A then B), summarised by the median of the per-round
    # ratios, which cancels slow changes in machine load.
    with torch.inference_mode():
        online_tsm.step(frame)  # first frame: allocate caches
        online_tsn.step(frame)
        t = interleaved({"tsm_online": lambda: online_tsm.step(frame),
                         "mbv2_plain": lambda: online_tsn.step(frame)}, args.repeats)
        tw = interleaved({"tsm_online": lambda: online_tsm.step(frame),
                          "tsm_window": lambda: tsm.frame_logits(window)},
                         max(5, args.repeats // 4), warmup=2)
    print("PyTorch (eager, CPU)")
    print(f"  online TSM-MobileNetV2, one frame:          {ms(t['tsm_online'])}")
    print(f"  plain MobileNetV2, one frame:               {ms(t['mbv2_plain'])}")
    print(f"  offline TSM, {args.window}-frame window per new frame: {ms(tw['tsm_window'])}")
    r1 = paired_ratio(t["tsm_online"], t["mbv2_plain"])
    r3 = paired_ratio(tw["tsm_window"], tw["tsm_online"])
    print(f"  [1] online TSM / plain MobileNetV2 latency: {r1:.3f} (median of paired ratios; "
          f"target <= 1.05: {'met' if r1 <= 1.05 else 'NOT met'})")
    print(f"  [3] sliding window ({args.window} frames) / online, per new frame: {r3:.2f}x")

    # 2: ONNX Runtime.
    from effvid.export import OnnxOnlineRunner, export_online

    with tempfile.TemporaryDirectory() as tmp:
        tsm_path = export_online(tsm, Path(tmp) / "tsm.onnx", height=size)
        tsn_path = export_online(tsn, Path(tmp) / "mbv2.onnx", height=size)
        runner = OnnxOnlineRunner(tsm_path, threads=args.threads)
        plain = OnnxOnlineRunner(tsn_path, threads=args.threads)
        frame_np = frame.numpy()
        # Correctness at this size: ONNX Runtime vs PyTorch over a short stream.
        clip = torch.randn(1, 4, 3, size, size)
        expected = online_tsm.run(clip).numpy()
        diff = float(np.abs(runner.run(clip.numpy()) - expected).max())
        scale = float(np.abs(expected).max())
        t2 = interleaved({"ort_tsm": lambda: runner.step(frame_np),
                          "ort_plain": lambda: plain.step(frame_np)}, 4 * args.repeats)
        # Sustained throughput over a stream of frames (caches fed back each frame).
        runner.reset()
        n = max(60, args.repeats)
        frames = np.random.default_rng(0).standard_normal((8, 1, 3, size, size)).astype(np.float32)
        t0 = time.perf_counter()
        for i in range(n):
            runner.step(frames[i % 8])
        fps = n / (time.perf_counter() - t0)
    print("\nONNX Runtime (CPUExecutionProvider, online model exported by effvid export; "
          f"max |ORT - PyTorch| over 4 frames: {diff:.1e}, logits up to {scale:.2f})")
    print(f"  online TSM-MobileNetV2, one frame:          {ms(t2['ort_tsm'])}")
    print(f"  plain MobileNetV2, one frame:               {ms(t2['ort_plain'])}")
    r2 = paired_ratio(t2["ort_tsm"], t2["ort_plain"])
    print(f"  online TSM / plain MobileNetV2 latency:     {r2:.3f} (median of paired ratios)")
    print(f"  [2] sustained online stream: {fps:.1f} frames/s over {n} frames (target >= 30: "
          f"{'met' if fps >= 30 else 'NOT met'}); median-latency fps "
          f"{1 / statistics.median(t2['ort_tsm']):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
