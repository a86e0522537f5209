"""Benchmark: effvid's temporal shift vs the original zeros-plus-slice-copies formulation.

Forward + backward of the shift op alone at ResNet-50-like activation shapes (8 clips of 8
frames, i.e. N*T = 64), float32 on CPU. The two implementations are timed interleaved (A, B, A,
B, ...) in one run and the median of each is compared; the target is effvid >= 1.5x faster
for forward + backward (training). Forward alone (inference) is printed for information: it is
bound by allocating and writing the output, so the two are close there.
Also checks that both give identical outputs and gradients.

    python benchmarks/bench_shift_op.py [--reps 9] [--threads N] [--shapes 64x256x56x56 ...]

Runs in about a minute on 2 CPU cores. ``--device cuda`` runs it on the GPU (float32 and
bfloat16), each repetition the mean of 20 calls between CUDA synchronisations; there effvid's
shift is one Triton kernel, and an extra column times its eager formulation (five kernels).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext

import torch
from _machine import check_device, describe_machine, repetitions

from effvid.models import shift_kernel
from effvid.models.temporal_shift import temporal_shift

TARGET = 1.5
DEFAULT_SHAPES = ("64x256x56x56", "64x64x56x56", "64x512x28x28")


def reference_shift(x: torch.Tensor, t: int, fold_div: int = 8) -> torch.Tensor:
    """The original TSM code's formulation: a zero tensor and three slice copies."""
    nt, c, h, w = x.shape
    v = x.view(nt // t, t, c, h, w)
    fold = c // fold_div
    out = torch.zeros_like(v)
    out[:, :-1, :fold] = v[:, 1:, :fold]
    out[:, 1:, fold:2 * fold] = v[:, :-1, fold:2 * fold]
    out[:, :, 2 * fold:] = v[:, :, 2 * fold:]
    return out.view(nt, c, h, w)


def effvid_shift(x: torch.Tensor, t: int) -> torch.Tensor:
    return temporal_shift(x, t, 8)


def effvid_eager_shift(x: torch.Tensor, t: int) -> torch.Tensor:
    """effvid's shift without its GPU kernel (on the CPU that is what effvid runs)."""
    with shift_kernel.disabled():
        return temporal_shift(x, t, 8)


def _sync(x: torch.Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize()


def fwd_bwd(fn, x: torch.Tensor, grad: torch.Tensor, t: int, inner: int = 1) -> float:
    x = x.detach().requires_grad_(True)
    _sync(x)
    start = time.perf_counter()
    # (the eager variant's backward must run without the kernel too)
    with (shift_kernel.disabled() if fn is effvid_eager_shift else nullcontext()):
        for _ in range(inner):
            y = fn(x, t)
            y.backward(grad)
            del y
    _sync(x)
    return (time.perf_counter() - start) / inner


def fwd_only(fn, x: torch.Tensor, t: int, inner: int = 1) -> float:
    with torch.no_grad():
        _sync(x)
        start = time.perf_counter()
        for _ in range(inner):
            y = fn(x, t)
            del y
        _sync(x)
    return (time.perf_counter() - start) / inner


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=repetitions, default=9)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--segments", type=repetitions, default=8, help="frames per clip, T (default: 8)")
    p.add_argument("--shapes", nargs="+", default=list(DEFAULT_SHAPES), metavar="NTxCxHxW",
                   help="activation shapes N*T x C x H x W; N*T a multiple of --segments, C of 8 "
                        f"(default: {' '.join(DEFAULT_SHAPES)})")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = p.parse_args(argv)
    for spec in args.shapes:
        dims = spec.split("x")
        if len(dims) != 4 or not all(d.isdigit() and int(d) > 0 for d in dims):
            p.error(f"--shapes: expected N*TxCxHxW, four positive whole numbers, got {spec!r}")
        if int(dims[0]) % args.segments:
            p.error(f"--shapes {spec}: N*T={dims[0]} must be a multiple of --segments {args.segments}")
        if int(dims[1]) < 8:
            p.error(f"--shapes {spec}: C={dims[1]} must be at least 8 (the shift moves C // 8 channels each way)")
    check_device(p, args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    inner = 20 if cuda else 1
    dtypes = (torch.float32, torch.bfloat16) if cuda else (torch.float32,)
    print(f"machine: {describe_machine(*([f'GPU {torch.cuda.get_device_name(0)}'] if cuda else []))}")
    print(f"shift: fold_div=8, bidirectional, T={args.segments}; {args.reps} interleaved reps, median"
          + (f"; each rep the mean of {inner} calls on {args.device}" if cuda else ""))
    if cuda:
        kernel = "one Triton kernel" if shift_kernel.available(torch.empty(1, device="cuda")) else "eager (no Triton)"
        print(f"effvid's shift on the GPU: {kernel}; 'eager ms': its eager formulation (5 kernels)")
    # on the CPU effvid runs the eager formulation: no separate column
    variants = {"effvid": effvid_shift, **({"eager": effvid_eager_shift} if cuda else {}),
                "reference": reference_shift}
    print(f"{'shape (N*T,C,H,W)':<22}{'pass':<10}{'effvid ms':>11}" + (f"{'eager ms':>10}" if cuda else "")
          + f"{'reference ms':>14}{'speed-up':>10}{'target':>9}")
    worst = float("inf")
    for spec, dtype in ((spec, dtype) for spec in args.shapes for dtype in dtypes):
        shape = tuple(int(s) for s in spec.split("x"))
        torch.manual_seed(0)
        x = torch.randn(shape).to(args.device, dtype)
        grad = torch.randn(shape).to(args.device, dtype)
        if cuda:
            spec = f"{spec} {str(dtype)[6:]}"
        # correctness first
        results = []
        for fn in variants.values():
            a = x.clone().requires_grad_(True)
            with (shift_kernel.disabled() if fn is effvid_eager_shift else nullcontext()):
                y = fn(a, args.segments)
                y.backward(grad)
            results.append((y, a.grad))
        for y, g in results[:-1]:
            assert torch.equal(y, results[-1][0]) and torch.equal(g, results[-1][1]), "outputs differ"
        del results
        for label, run in (("fwd+bwd", lambda fn: fwd_bwd(fn, x, grad, args.segments, inner)),
                           ("fwd", lambda fn: fwd_only(fn, x, args.segments, inner))):
            for fn in variants.values():  # warm-up
                run(fn)
            times = {name: [] for name in variants}
            for _ in range(args.reps):
                for name, fn in variants.items():
                    times[name].append(run(fn))
            e, r = statistics.median(times["effvid"]), statistics.median(times["reference"])
            eager = f"{statistics.median(times['eager']) * 1e3:>10.3f}" if cuda else ""
            ratio = r / e
            if label == "fwd+bwd":
                worst = min(worst, ratio)
            target = f">= {TARGET}x" if label == "fwd+bwd" else "(info)"
            print(f"{spec:<22}{label:<10}{e * 1e3:>11.{3 if cuda else 1}f}{eager}{r * 1e3:>14.{3 if cuda else 1}f}"
                  f"{ratio:>9.2f}x{target:>9}")
    if shift_kernel.off_reason():
        print(f"NOTE: the shift kernel was turned off during the run ({shift_kernel.off_reason()})")
    verdict = "meets" if worst >= TARGET else "MISSES"
    print(f"worst fwd+bwd speed-up {worst:.2f}x {verdict} the target (>= {TARGET}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
