"""Benchmark: forward latency of TSM vs TSN (the cost of the temporal shift in a whole network).

Both networks get the same weights; only the shift differs. Forward pass in eval mode under
``torch.inference_mode`` on CPU, one clip (batch 1) of 8 frames at 224x224: ResNet-50 and
MobileNetV2. TSM and TSN are timed back to back in each repetition (alternating which goes
first) after warm-up, and the median of the per-repetition ratios is reported; the target is
TSM/TSN <= 1.03 (the paper: the shift adds no FLOPs and little latency). The same run also
times the shift ops alone at the network's shapes, to separate the shift's cost from noise, and
TSM once more with ``borrow_input`` turned off (the shift writes a shifted copy of each block
input instead of shifting a quarter of the input's channels in place and back), to show what
borrowing saves.

Everything is measured twice: first with glibc malloc's defaults (what a plain script gets),
then after ``effvid.retain_freed_memory()`` (what the ``effvid`` command does; see
effvid/runtime.py), which removes the page faults of re-allocating activations.

    python benchmarks/bench_tsm_vs_tsn.py [--reps N] [--threads N] [--malloc both|default|retain]

Runs in about 2 minutes on 2 idle CPU cores (ResNet-50 at 8x224x224 is 33 GMACs per forward).

``--device cuda`` times the same pair on the GPU instead, in float32 and under bfloat16
autocast, for batches of 1 and 8 clips (``--batches``): each repetition is the mean of 10
forwards between CUDA synchronisations, interleaved as above. It also times TSM with the shift's
eager formulation instead of effvid's one-kernel GPU shift, and both networks replayed as CUDA
graphs (which removes the CPU's launch cost from both and leaves the GPU time the shift adds),
there also with every block input copied and with every one shifted in place and back.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext

import torch
from _machine import check_device, describe_machine, repetitions

import effvid
from effvid.models import shift_kernel
from effvid.models.temporal_shift import shift_modules
from effvid.training.init_weights import match_shift_wrappers

TARGET = 1.03
DEFAULT_REPS = {"resnet50": 21, "mobilenet_v2": 41}


def _timed(model, x) -> float:
    with torch.inference_mode():
        start = time.perf_counter()
        model(x)
        return time.perf_counter() - start


def _per_shift_times(model, x, repeats: int = 24) -> dict:
    """Per shifted conv, on its real input shape (captured by hooks), ``repeats`` interleaved
    runs, in rotating order, of: the shift op alone, the conv alone (what TSN runs), the shifted
    conv as effvid runs it, and the shifted conv with ``borrow_input`` off (a shifted copy). The
    extra time over the conv alone is taken per run (paired) and its median summed over the
    network: on a noisy machine these sums show the shift's cost when whole-network times
    cannot. They miss one cost: in the network the conv of a shifted copy reads memory that the
    previous layer has not just written, which isolated runs (always warm) do not see."""
    inputs = []
    hooks = [m.register_forward_pre_hook(lambda mod, args: inputs.append((mod, args[0].clone())))
             for m in shift_modules(model)]
    with torch.inference_mode():
        model(x)
    for h in hooks:
        h.remove()
    from effvid.models.temporal_shift import temporal_shift

    def run(fn):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    totals = {"shift": 0.0, "as_run": 0.0, "copy": 0.0, "borrow_wins": 0, "pairs": 0,
              "n_borrowing": sum(m.borrow_input for m, _ in inputs)}
    for mod, inp in inputs:
        flag = mod.borrow_input

        def copying():
            mod.borrow_input = False
            mod(inp)
            mod.borrow_input = flag

        variants = {"shift": lambda: temporal_shift(inp, mod.num_segments, mod.fold_div, mod.direction),
                    "conv": lambda: mod.net(inp), "as_run": lambda: mod(inp), "copy": copying}
        times = {name: [] for name in variants}
        names = list(variants)
        with torch.inference_mode():
            for r in range(repeats):
                # rotate the order: under glibc's defaults what ran just before (and freed
                # what) changes the page faults of the next run, which must not favour one
                for name in names[r % len(names):] + names[:r % len(names)]:
                    times[name].append(run(variants[name]))
        totals["shift"] += min(times["shift"])
        for name in ("as_run", "copy"):
            totals[name] += statistics.median(a - b for a, b in zip(times[name], times["conv"]))
        if flag:
            totals["borrow_wins"] += sum(a < b for a, b in zip(times["as_run"], times["copy"]))
            totals["pairs"] += repeats
    return totals


def quartiles(values: list[float]) -> tuple[float, float]:
    """The first and third quartiles (one value's: itself; statistics.quantiles needs two)."""
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def bench(arch: str, reps: int, frames: int, size: int) -> dict:
    torch.manual_seed(0)
    tsm = effvid.create_model(f"tsm_{arch}", num_classes=400, num_segments=frames).eval()
    tsn = effvid.create_model(f"tsn_{arch}", num_classes=400, num_segments=frames).eval()
    tsn.load_state_dict(match_shift_wrappers(tsm.state_dict(), tsn.state_dict()))
    x = torch.randn(1, frames, 3, size, size)
    borrows = [m.borrow_input for m in shift_modules(tsm)]
    for m in (tsm, tsn, tsm, tsn):  # warm-up (oneDNN primitive caches, allocator)
        _timed(m, x)
    t_tsm, t_tsn, t_copy = [], [], []
    for i in range(reps):
        # alternate which goes first, so neither always follows the other
        order = ((tsm, t_tsm), (tsn, t_tsn)) if i % 2 == 0 else ((tsn, t_tsn), (tsm, t_tsm))
        for model, out in order:
            out.append(_timed(model, x))
        for m in shift_modules(tsm):
            m.borrow_input = False
        t_copy.append(_timed(tsm, x))
        for m, flag in zip(shift_modules(tsm), borrows):
            m.borrow_input = flag
    per_shift = _per_shift_times(tsm, x)
    m_tsm, m_tsn = statistics.median(t_tsm), statistics.median(t_tsn)
    # Each rep times TSM and TSN back to back, so their ratio cancels slow drifts of the
    # machine (other VMs, frequency changes); the median of those paired ratios is the headline.
    paired = sorted(a / b for a, b in zip(t_tsm, t_tsn))
    copy_paired = [a / b for a, b in zip(t_copy, t_tsn)]
    q1, q3 = quartiles(paired)
    return {"arch": arch, "tsm_ms": m_tsm * 1e3, "tsn_ms": m_tsn * 1e3,
            "ratio": statistics.median(paired), "ratio_q1": q1, "ratio_q3": q3,
            "ratio_of_medians": m_tsm / m_tsn,
            "ratio_min": min(t_tsm) / min(t_tsn), "shift_ms": per_shift["shift"] * 1e3,
            "shift_ratio": (m_tsn + per_shift["shift"]) / m_tsn,
            "as_run_implied": (m_tsn + per_shift["as_run"]) / m_tsn,
            "copy_implied": (m_tsn + per_shift["copy"]) / m_tsn,
            "as_run_extra_ms": per_shift["as_run"] * 1e3, "copy_extra_ms": per_shift["copy"] * 1e3,
            "borrow_wins": per_shift["borrow_wins"], "pairs": per_shift["pairs"],
            "spread_tsm": (max(t_tsm) - min(t_tsm)) / m_tsm, "spread_tsn": (max(t_tsn) - min(t_tsn)) / m_tsn,
            "n_shifts": len(shift_modules(tsm)), "reps": reps,
            "borrowing": per_shift["n_borrowing"], "copy_ratio": statistics.median(copy_paired)}


def bench_cuda(arch: str, reps: int, frames: int, size: int, batch: int, precision: str,
               inner: int = 10) -> dict:
    """TSM vs TSN on the GPU, three ways, interleaved in each repetition: eager with effvid's
    one-kernel shift (what effvid runs), eager with the shift's eager formulation (five kernels,
    shift_kernel.disabled()), and both networks replayed as CUDA graphs (no per-launch CPU cost,
    so the ratio is the GPU time the shift adds)."""
    torch.manual_seed(0)
    tsm = effvid.create_model(f"tsm_{arch}", num_classes=400, num_segments=frames).eval().cuda()
    tsn = effvid.create_model(f"tsn_{arch}", num_classes=400, num_segments=frames).eval().cuda()
    tsn.load_state_dict(match_shift_wrappers(tsm.state_dict(), tsn.state_dict()))
    x = torch.randn(batch, frames, 3, size, size, device="cuda")
    # autocast's weight cache cannot live across a graph capture; off for every variant alike
    autocast = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False))
                if precision == "bfloat16" else nullcontext)

    def timed(run) -> float:
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(inner):
            run()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / inner

    def eager(model, kernel: bool = True):
        def run():
            with torch.inference_mode(), autocast(), (nullcontext() if kernel else shift_kernel.disabled()):
                model(x)
        return run

    def graphed(model):
        with torch.inference_mode(), autocast():
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):  # warm-up outside the capture (cuDNN choice, Triton build)
                    model(x)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                model(x)
        return graph.replay

    borrows = [m.borrow_input for m in shift_modules(tsm)]
    for m in shift_modules(tsm):
        m.borrow_input = False
    copy_graph = graphed(tsm)  # the kernel writes a shifted copy of every block input
    for m, flag in zip(shift_modules(tsm), borrows):
        m.borrow_input = flag
    threshold, shift_kernel.IN_PLACE_MIN_BYTES = shift_kernel.IN_PLACE_MIN_BYTES, 0
    in_place_graph = graphed(tsm)  # every block input shifted in place and back
    shift_kernel.IN_PLACE_MIN_BYTES = threshold
    variants = {"tsm": eager(tsm), "tsn": eager(tsn), "tsm_eager_shift": eager(tsm, kernel=False),
                "tsm_graph": graphed(tsm), "tsn_graph": graphed(tsn), "tsm_graph_copy": copy_graph,
                "tsm_graph_in_place": in_place_graph}
    for run in list(variants.values()) * 2:  # warm-up
        timed(run)
    times = {name: [] for name in variants}
    names = list(variants)
    for i in range(reps):
        for name in names[i % len(names):] + names[:i % len(names)]:  # rotate the order
            times[name].append(timed(variants[name]))

    def ratio(a: str, b: str) -> tuple[float, float, float]:
        paired = sorted(p / q for p, q in zip(times[a], times[b]))
        return (statistics.median(paired), *quartiles(paired))

    ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    return {"ms": ms, "ratio": ratio("tsm", "tsn"), "eager_shift": ratio("tsm_eager_shift", "tsn"),
            "graph": ratio("tsm_graph", "tsn_graph"), "graph_copy": ratio("tsm_graph_copy", "tsn_graph"),
            "graph_in_place": ratio("tsm_graph_in_place", "tsn_graph")}


def run_cuda(args) -> int:
    name = torch.cuda.get_device_name(0)
    print(f"machine: {describe_machine(f'GPU {name}', f'CUDA {torch.version.cuda}')}")
    kernel = "one Triton kernel" if shift_kernel.available(torch.empty(1, device="cuda")) else "eager (no Triton)"
    print(f"input: B clips x {args.frames} frames x 3 x {args.size} x {args.size}, eval, inference_mode; "
          f"{args.reps or 21} interleaved reps of 10 forwards; ratios = median of the per-rep ratios; "
          f"TSM's shift: {kernel}")
    print(f"{'model':<14}{'batch':>6}{'precision':>10}{'TSM ms':>9}{'TSN ms':>9}{'TSM/TSN':>9}{'quartiles':>14}"
          f"{'5-kernel shift':>16}{'graphs TSM ms':>15}{'TSN ms':>8}{'TSM/TSN':>9}{'quartiles':>14}"
          f"{'copying':>9}{'in place':>9}")
    ok = ok_graph = True
    for arch in args.archs:
        for batch in args.batches:
            for precision in ("float32", "bfloat16"):
                r = bench_cuda(arch, args.reps or 21, args.frames, args.size, batch, precision)
                ok &= r["ratio"][0] <= TARGET
                ok_graph &= r["graph"][0] <= TARGET
                ms = r["ms"]
                print(f"{arch:<14}{batch:>6}{precision:>10}{ms['tsm']:>9.2f}{ms['tsn']:>9.2f}"
                      f"{r['ratio'][0]:>9.3f}{r['ratio'][1]:>8.3f}..{r['ratio'][2]:.3f}"
                      f"{r['eager_shift'][0]:>16.3f}{ms['tsm_graph']:>15.2f}{ms['tsn_graph']:>8.2f}"
                      f"{r['graph'][0]:>9.3f}{r['graph'][1]:>8.3f}..{r['graph'][2]:.3f}"
                      f"{r['graph_copy'][0]:>9.3f}{r['graph_in_place'][0]:>9.3f}")
    print(f"TSM/TSN target (<= {TARGET} on every row): eager " + ("meets" if ok else "MISSES")
          + "; CUDA graphs " + ("meet" if ok_graph else "MISS"))
    print("'5-kernel shift': TSM/TSN with the shift's eager formulation instead of the kernel (eager). "
          "'graphs': both networks captured once and replayed as CUDA graphs, TSM as effvid runs it (block "
          f"inputs of >= {shift_kernel.IN_PLACE_MIN_BYTES >> 20} MiB shifted in place and back, smaller ones "
          "copied); 'copying': every block input copied; 'in place': every block input shifted in place and back.")
    if shift_kernel.off_reason():
        print(f"NOTE: the shift kernels were turned off during the run ({shift_kernel.off_reason()}): "
              "rows after that used the eager shift")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", nargs="+", default=["resnet50", "mobilenet_v2"])
    p.add_argument("--reps", type=repetitions, default=None, help="interleaved repetitions (default: 21 / 41)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--malloc", choices=("both", "default", "retain"), default="both",
                   help="glibc malloc settings to measure under (retain is irreversible, so it runs last)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="clips per forward (cuda only)")
    args = p.parse_args(argv)
    check_device(p, args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda":
        return run_cuda(args)
    print(f"machine: {describe_machine()}")
    print(f"input: 1 clip x {args.frames} frames x 3 x {args.size} x {args.size}, eval, inference_mode; "
          "interleaved reps; TSM/TSN = median of the per-rep ratios")
    verdicts = []
    for mode in (("default", "retain") if args.malloc == "both" else (args.malloc,)):
        if mode == "retain" and not effvid.retain_freed_memory():
            print("malloc: effvid.retain_freed_memory() does not apply here (not glibc); skipped")
            continue
        ok = run_table(args, mode)
        verdicts.append(f"malloc {mode}: " + ("meets" if ok else "MISSES"))
    print(f"TSM/TSN target (<= {TARGET} on every model): " + "; ".join(verdicts))
    print("'TSN+shift/TSN' is the ratio implied by timing the shift ops alone (fastest of 21 per op). "
          "With a load average above the core count, or a wide spread, the times are not meaningful.")
    return 0


def run_table(args, mode: str) -> bool:
    print(f"-- malloc: {'glibc defaults' if mode == 'default' else 'effvid.retain_freed_memory()'}")
    print(f"{'model':<14}{'reps':>5}{'TSM ms':>10}{'TSN ms':>10}{'TSM/TSN':>9}{'target':>9}"
          f"{'shifts':>8}{'shift ms':>10}{'TSN+shift/TSN':>15}")
    ok = True
    for arch in args.archs:
        r = bench(arch, args.reps or DEFAULT_REPS.get(arch, 11), args.frames, args.size)
        ok &= r["ratio"] <= TARGET
        print(f"{arch:<14}{r['reps']:>5}{r['tsm_ms']:>10.1f}{r['tsn_ms']:>10.1f}{r['ratio']:>9.3f}"
              f"{'<= ' + str(TARGET):>9}{r['n_shifts']:>8}{r['shift_ms']:>10.1f}{r['shift_ratio']:>15.3f}")
        print(f"{'':<14}{r['borrowing']} of {r['n_shifts']} shifts borrow their input; with "
              f"borrow_input off (a shifted copy per block) TSM/TSN is {r['copy_ratio']:.3f}")
        wins = (f"; borrowing beat copying in {r['borrow_wins']} of {r['pairs']} paired runs"
                if r["pairs"] else "")
        print(f"{'':<14}shifted convs one at a time, extra time over the conv alone (median of paired runs), "
              f"summed: {r['as_run_extra_ms']:.1f} ms as run, {r['copy_extra_ms']:.1f} ms copying every input "
              f"-> implied TSM/TSN {r['as_run_implied']:.3f} as run, {r['copy_implied']:.3f} copying{wins}")
        print(f"{'':<14}per-rep ratios: quartiles {r['ratio_q1']:.3f}..{r['ratio_q3']:.3f}; ratio of medians "
              f"{r['ratio_of_medians']:.3f}; fastest-run ratio {r['ratio_min']:.3f}; spread (max-min)/median: "
              f"TSM {r['spread_tsm']:.1%}, TSN {r['spread_tsn']:.1%}")
    return ok


if __name__ == "__main__":
    sys.exit(main())
