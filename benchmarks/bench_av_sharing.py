"""Benchmark the AV transformer's sharing modes (effvid.av) on CPU.

For each sharing mode (none, layers, all, partial) at the paper's transformer configuration
(6 layers, width 768, 12 heads, FFN 3072, rank 128, mid fusion) with tiny CNNs
(slow_tiny / resnet_tiny), in a fresh subprocess per mode:

* parameters (transformers and whole model, shared weights counted once);
* AdamW optimizer state bytes after one step;
* peak memory of one training step (forward + backward + AdamW) on a batch of ``--batch``
  sequences of ``--clips`` one-second clips (30; 16 frames of 32×32, 16 kHz audio): peak RSS
  during the step minus RSS before it (the first step, so it includes allocating the optimizer
  state); it varies by a few MB between runs;
* inference time of the whole model (log-mel, both CNNs, three transformers) on one video of
  ``--clips`` seconds (``--clips`` clips × 16 frames), best of ``--repeats`` runs.

Run: ``python benchmarks/bench_av_sharing.py`` (1–1.5 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

MODES = ("none", "layers", "all", "partial")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_mode(mode: str, batch: int, clips: int, repeats: int, visual_cnn: str, audio_cnn: str, size: int) -> dict:
    import torch

    from effvid.av import create_av_model, parameter_report

    torch.manual_seed(0)
    model = create_av_model(visual_cnn=visual_cnn, audio_cnn=audio_cnn, sharing=mode, frames_per_clip=16)
    report = parameter_report(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), weight_decay=1e-4, amsgrad=True)
    video = torch.randn(batch, clips, 3, 16, size, size)
    audio = torch.randn(batch, clips, 16000) * 0.1
    mask = torch.ones(batch, clips, dtype=torch.bool)

    model.train()
    before = rss_bytes()
    t0 = time.perf_counter()
    out = model(video, audio, mask)
    loss = out.fused_summary.pow(2).mean() + out.fused_visual_tokens.pow(2).mean() + out.fused_audio_tokens.pow(2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    step_s = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    state_bytes = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
                      if torch.is_tensor(t) and t.dim() > 0)
    del out, loss

    model.eval()
    v1, a1 = video[:1], audio[:1]
    times = []
    with torch.no_grad():
        model(v1, a1)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(v1, a1)
            times.append(time.perf_counter() - t0)
    med = min(times)  # best of N: the least disturbed by other load on a shared machine
    return {
        "sharing": mode,
        "transformer_params": report["transformers"]["total"],
        "transformer_free_params": report["transformers"]["free"],
        "model_params": report["total"],
        "optimizer_state_bytes": state_bytes,
        "train_step_peak_bytes": max(0, peak - before),
        "train_step_s": step_s,
        "video_s": med,
        "clips_per_s": clips / med,
    }


def main(argv=None) -> int:
    from _machine import repetitions  # benchmarks/ is on sys.path when run as a script

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--clips", type=int, default=30)
    p.add_argument("--size", type=int, default=32, help="frame height/width")
    p.add_argument("--repeats", type=repetitions, default=3)
    p.add_argument("--visual-cnn", default="slow_tiny")
    p.add_argument("--audio-cnn", default="resnet_tiny")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._child:  # one mode in this (fresh) process; print JSON
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        res = run_mode(args._child, args.batch, args.clips, args.repeats, args.visual_cnn, args.audio_cnn, args.size)
        print(json.dumps(res))
        return 0

    import torch

    from _machine import describe_machine
    from effvid.errors import plural

    print(f"# effvid AV sharing benchmark — {describe_machine()}")
    print(f"# transformers: 6 layers, width 768, 12 heads, FFN 3072, rank 128, mid fusion; CNNs: "
          f"{args.visual_cnn} / {args.audio_cnn}; train batch {args.batch} x {plural(args.clips, 'clip')} x 16 frames "
          f"{args.size}x{args.size} + 1 s audio; AdamW (amsgrad)")
    header = (f"{'sharing':<9}{'transformer params':>20}{'model params':>14}{'AdamW state MB':>16}"
              f"{'step peak MB':>14}{'step s':>8}{f'{args.clips}-s video s':>14}{'clips/s':>9}")
    print(header)
    rows = []
    for mode in args.modes:
        cmd = [sys.executable, __file__, "--_child", mode, "--batch", str(args.batch), "--clips", str(args.clips),
               "--size", str(args.size), "--repeats", str(args.repeats), "--visual-cnn", args.visual_cnn,
               "--audio-cnn", args.audio_cnn] + (["--threads", str(args.threads)] if args.threads else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        rows.append(r)
        print(f"{r['sharing']:<9}{r['transformer_params']:>20,}{r['model_params']:>14,}"
              f"{r['optimizer_state_bytes'] / 2**20:>16.1f}{r['train_step_peak_bytes'] / 2**20:>14.0f}"
              f"{r['train_step_s']:>8.2f}{r['video_s']:>14.3f}{r['clips_per_s']:>9.1f}", flush=True)
    part = [r for r in rows if r["sharing"] == "partial"]
    if part:
        print(f"# partial: {part[0]['transformer_params']:,} stored (S as full 128x128, torch's orthogonal "
              f"parametrisation), {part[0]['transformer_free_params']:,} by degrees of freedom")
    return 0


if __name__ == "__main__":
    sys.exit(main())
