"""Benchmark: TSM vs TSN forward latency with channels_last (NHWC) weights and activations.

PyTorch's CPU convolutions are often faster on channels_last tensors. A TSM keeps that layout
through its shifts (each used to make its input NCHW again, which cost a channels_last TSM
more than the layout gained). This times TSN and TSM, in NCHW and in channels_last, with the
same weights, interleaved (each repetition runs all four), and prints each one's median and
TSM/TSN per layout. Eval mode, ``torch.inference_mode``, after ``effvid.retain_freed_memory()``
(what the ``effvid`` command does).

    python benchmarks/bench_channels_last.py [--arch resnet50] [--size 160] [--frames 8] [--reps 15]

Runs in about a minute on 2 CPU cores at the defaults.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from _machine import describe_machine, repetitions

import effvid
from effvid.training.init_weights import match_shift_wrappers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="resnet50", help="resnet50, resnet18 or mobilenet_v2")
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--reps", type=repetitions, default=15)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    effvid.retain_freed_memory()
    print(f"machine: {describe_machine()}")
    print(f"input: 1 clip x {args.frames} frames x 3 x {args.size} x {args.size}, eval, inference_mode; "
          f"{args.reps} interleaved reps")
    torch.manual_seed(0)
    tsn = effvid.create_model(f"tsn_{args.arch}", num_classes=400, num_segments=args.frames).eval()
    tsm = effvid.create_model(f"tsm_{args.arch}", num_classes=400, num_segments=args.frames).eval()
    # the same weights: only the shift differs
    tsn.load_state_dict(match_shift_wrappers(tsm.state_dict(), tsn.state_dict()))
    clip = torch.randn(1, args.frames, 3, args.size, args.size)
    frames = clip.view(args.frames, 3, args.size, args.size)
    inputs = {"nchw": clip, "channels_last": frames.contiguous(memory_format=torch.channels_last).view(clip.shape)}
    runs = {}
    for layout, x in inputs.items():
        for name, model in (("TSN", tsn), ("TSM", tsm)):
            m = copy.deepcopy(model)
            if layout == "channels_last":
                m = m.to(memory_format=torch.channels_last)
            runs[layout, name] = (m, x)
    times = {key: [] for key in runs}
    with torch.inference_mode():
        outputs = {key: m(x) for key, (m, x) in runs.items()}  # warm-up, and the values compared
        for _ in range(args.reps):
            for key, (m, x) in runs.items():
                start = time.perf_counter()
                m(x)
                times[key].append(time.perf_counter() - start)
    for layout in inputs:
        diff = (outputs[layout, "TSM"] - outputs["nchw", "TSM"]).abs().max().item()
        tsn_ms, tsm_ms = (1000 * statistics.median(times[layout, n]) for n in ("TSN", "TSM"))
        print(f"{layout:>14}: TSN {tsn_ms:7.1f} ms  TSM {tsm_ms:7.1f} ms  TSM/TSN {tsm_ms / tsn_ms:.3f}  "
              f"(TSM logits vs NCHW: max |diff| {diff:.1e})")
    ratio = statistics.median(times["channels_last", "TSM"]) / statistics.median(times["nchw", "TSM"])
    print(f"TSM channels_last / TSM NCHW: {ratio:.3f}")


if __name__ == "__main__":
    main()
