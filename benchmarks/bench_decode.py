"""Benchmark: sparse TSN-clip decoding vs decoding the whole file, and DataLoader throughput.

    python benchmarks/bench_decode.py [--cache-dir DIR] [--repeats 5]

Generates (once, cached) a 30 s 1280x720 30 fps H.264 video (veryfast preset, crf 23,
GOP 60 frames = 2 s, B-frames on: a typical web video), then times loading one
8-segment TSN clip with effvid's sparse decoder against decoding every frame.
Runs in well under 2 minutes on 2 CPU cores (about 15 s of it is the one-off encode).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from effvid.data import (build_dataset, collate_clips, make_synthetic_dataset, probe_video,
                         read_frames, segment_indices, write_video)


def make_bench_video(path: Path, seconds: int = 30, fps: int = 30, h: int = 720, w: int = 1280) -> Path:
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    n = seconds * fps
    # smooth random texture wider than the frame, panned 1 px per frame, plus a moving
    # block and a slow colour drift: every frame differs, as in real footage
    small = torch.from_numpy(rng.integers(0, 256, (3, h // 16 + 2, (w + n) // 16 + 2), dtype=np.uint8))
    tex = F.interpolate(small[None].float(), scale_factor=16, mode="bilinear")[0]
    tex = tex.clamp(0, 255).byte().permute(1, 2, 0).numpy()

    def frames():
        for i in range(n):
            f = tex[:h, i:i + w].copy()
            x = (i * 13) % (w - 100)
            f[300:400, x:x + 100] = 255
            f[..., 2] = f[..., 2] // 2 + (i % 128)
            yield f

    tmp = path.with_suffix(".tmp.mp4")
    write_video(tmp, frames(), fps=fps, codec="libx264", crf=23, preset="veryfast", gop=2 * fps)
    os.replace(tmp, path)
    return path


def full_decode_pick(path, indices, convert_all: bool) -> np.ndarray:
    """Baseline: decode every frame in order and keep the wanted ones."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        want, out = set(indices), {}
        for i, frame in enumerate(c.decode(s)):
            if convert_all:  # what a "read the whole video, then index" loader does
                arr = frame.to_ndarray(format="rgb24")
                if i in want:
                    out[i] = arr
            elif i in want:
                out[i] = frame.to_ndarray(format="rgb24")
    return np.stack([out[i] for i in indices])


def best_of(fn, repeats: int) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds of this process, all threads).

    CPU time is reported too because wall time is meaningless on a loaded machine;
    the decoder runs in this process, so CPU time measures its work.
    """
    walls, cpus = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "effvid_bench"))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)

    print(f"machine: {platform.platform()} | {platform.processor() or platform.machine()} | "
          f"cpus={os.cpu_count()} | python {platform.python_version()} | torch {torch.__version__} | "
          f"av {av.__version__} | torch threads={torch.get_num_threads()}")

    t0 = time.perf_counter()
    video = make_bench_video(cache / "bench_720p30_30s_gop60.mp4")
    gen_s = time.perf_counter() - t0
    info = probe_video(video)
    print(f"video: {video} ({video.stat().st_size / 1e6:.1f} MB, {info.width}x{info.height}, "
          f"{info.num_frames} frames @ {info.fps:g} fps, GOP 60){'  [generated in %.1fs]' % gen_s if gen_s > 1 else '  [cached]'}")

    test_idx = segment_indices(info.num_frames, 8, train=False)
    rng = np.random.default_rng(0)
    train_idx = [segment_indices(info.num_frames, 8, train=True, rng=rng) for _ in range(args.repeats)]
    sparse = read_frames(video, test_idx, info)
    assert np.array_equal(sparse.numpy(), full_decode_pick(video, test_idx, False)), "sparse != full decode"

    t_sparse = best_of(lambda: read_frames(video, test_idx, info), args.repeats)
    it = iter(train_idx * 2)
    t_sparse_train = best_of(lambda: read_frames(video, next(it), info), args.repeats)
    t_full = best_of(lambda: full_decode_pick(video, test_idx, False), max(2, args.repeats // 2))
    t_full_all = best_of(lambda: full_decode_pick(video, test_idx, True), 2)
    try:
        load = " (1-min load average %.1f on %d cpus)" % (os.getloadavg()[0], os.cpu_count())
    except OSError:
        load = ""
    print(f"TSN 8-segment clip (test centres {test_idx}), best of {args.repeats}{load}:")
    print(f"  {'':46s} {'wall ms':>9s} {'cpu ms':>9s}")

    def row(name, t):
        print(f"  {name:46s} {t[0] * 1000:9.1f} {t[1] * 1000:9.1f}")

    row("sparse decode (seek + decode to each target)", t_sparse)
    row("sparse decode, random train clip", t_sparse_train)
    row("full decode, convert only the 8 picked frames", t_full)
    row("full decode, convert every frame to RGB", t_full_all)
    st = {}
    read_frames(video, test_idx, info, stats=st)
    print(f"  frames decoded: sparse {st['decoded']} (with {st['seeks']} seeks) vs full {info.num_frames} "
          f"-> {info.num_frames / st['decoded']:.1f}x less decoding work")
    print(f"  => sparse vs full decode: {t_full[0] / t_sparse[0]:.1f}x wall, {t_full[1] / t_sparse[1]:.1f}x cpu; "
          f"vs full decode+convert-all: {t_full_all[0] / t_sparse[0]:.1f}x wall, "
          f"{t_full_all[1] / t_sparse[1]:.1f}x cpu")

    # DataLoader throughput on the synthetic dataset
    root = cache / "synthetic"
    if not (root / "val").is_dir():
        s = make_synthetic_dataset(root, videos_per_class_train=20, videos_per_class_val=5)
        print(f"synthetic dataset: 150 videos written in {s['seconds']:.1f}s")
    ds = build_dataset(root, "train", num_segments=8, size=56)
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True, num_workers=2,
                                         collate_fn=collate_clips, persistent_workers=True)
    for _ in loader:  # warm-up epoch: worker start-up and probe caches
        pass
    t = time.perf_counter()
    n = 0  # (wall time: the work happens in the worker processes)
    for _ in range(2):
        for batch in loader:
            n += batch["video"].shape[0]
    dt = time.perf_counter() - t
    print(f"DataLoader (synthetic 16x64x64 mp4, 8 segments, train transform 56 px, batch 8, "
          f"2 workers): {n / dt:.0f} clips/s ({n} clips in {dt:.2f}s)")


if __name__ == "__main__":
    main()
