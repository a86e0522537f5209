"""``effvid export``: ONNX files of a TSM for edge devices.

Writes, into ``--output`` (a folder):

* ``<name>.offline.onnx``: input ``video`` (N, T, 3, H, W) with a dynamic batch N, output
  ``logits`` (N, K);
* ``<name>.online.onnx`` (causal models only): the one-frame step, inputs ``frame``
  (B, 3, H, W) and ``cache_in_0..n-1``, outputs ``logits`` and ``cache_out_0..n-1``; loop
  frame by frame feeding each ``cache_out_i`` back as ``cache_in_i`` (zeros for the first
  frame). ``effvid.export.OnnxOnlineRunner`` does that in ONNX Runtime, and
  ``effvid stream --checkpoint <name>.online.onnx`` runs it on a video or camera.

Each file is checked against PyTorch in ONNX Runtime on random inputs (``--no-verify`` skips).
Needs the optional dependencies: ``pip install effvid[export]``.

Example::

    effvid export --checkpoint run/best.safetensors --output exported/ --size 224
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import HelpFormatter, UserError, positive_int
from .stream import add_model_arguments, load_model_from_args

# max |ONNX Runtime - PyTorch| on the logits, relative to the largest PyTorch logit, before the
# export is rejected. Relative: a random-weight model's logits can be 1e-11, where an absolute
# tolerance would pass any export.
VERIFY_TOLERANCE = 1e-3


def _relative_diff(got, ref) -> float:
    """max |got - ref| as a fraction of the largest |ref| (see VERIFY_TOLERANCE)."""
    import numpy as np

    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))


def _verify_offline(model, path: Path, size: int, num_segments: int) -> float:
    import torch

    from ..export.onnx import run_offline

    torch.manual_seed(1)
    video = torch.randn(3, num_segments, 3, size, size)  # batch 3: not the export's example
    with torch.no_grad():
        ref = model(video).numpy()
    return _relative_diff(run_offline(path, video.numpy()), ref)


def _verify_online(model, path: Path, size: int, frames: int = 6) -> float:
    import torch

    from ..export.onnx import OnnxOnlineRunner
    from ..models.online import OnlineRecognizer

    torch.manual_seed(2)
    video = torch.randn(3, frames, 3, size, size)  # batch 3: not the export's example
    ref = OnlineRecognizer.from_model(model).run(video).numpy()
    return _relative_diff(OnnxOnlineRunner(path).run(video.numpy()), ref)


def run(args: argparse.Namespace) -> int:
    try:
        from ..export import onnx as ex

        ex._require("onnx")
        ex._require("onnxruntime")
        if args.exporter == "dynamo":
            ex._require("onnxscript")
    except ImportError as e:
        raise UserError(str(e)) from None
    from ..inference import test_view
    from ..models.online import check_causal

    out = Path(args.output)
    if out.suffix.lower() == ".onnx":
        raise UserError("--output is a folder (two files may be written); use --name for the "
                        "file names")
    if out.exists() and not out.is_dir():
        raise UserError(f"--output {out} is a file; give a folder")
    model, classes, meta = load_model_from_args(args)
    # the test view the checkpoint was validated with (at --size, if given): what a runtime
    # feeding the ONNX file must do to frames, recorded in it
    view = test_view(meta, size=args.size)
    size = view["size"]
    if size < 8:
        raise UserError(f"--size must be at least 8, got {size}")
    name = args.name or (Path(args.checkpoint).stem if args.checkpoint else args.model)
    modes = ["offline", "online"] if args.mode == "auto" else [args.mode]
    if "online" in modes:
        try:
            check_causal(model)
        except ValueError as e:
            if args.mode == "online":
                raise UserError(str(e)) from None
            print("note: not exporting an online model: this model's temporal shift is "
                  "bidirectional (train with --shift-direction causal for online use)",
                  file=sys.stderr)
            modes.remove("online")
    num_segments = int(model.config.get("num_segments", 8))
    bad = []
    for mode in modes:
        path = out / f"{name}.{mode}.onnx"
        if mode == "offline":
            ex.export_offline(model, path, height=size, classes=classes, preprocess=view,
                              exporter=args.exporter, opset=args.opset)
        else:
            ex.export_online(model, path, height=size, classes=classes, preprocess=view,
                             exporter=args.exporter, opset=args.opset)
        line = f"wrote {path} ({size}x{size} input, {path.stat().st_size / 1e6:.1f} MB)"
        if args.verify:
            diff = (_verify_offline(model, path, size, num_segments) if mode == "offline"
                    else _verify_online(model, path, size))
            ok = diff <= VERIFY_TOLERANCE
            line += (f"; ONNX Runtime vs PyTorch max |diff| {diff:.2e} of the largest logit "
                     f"({'ok' if ok else 'MISMATCH'})")
            if not ok:
                bad.append(path)
        print(line)
    if bad:
        print(f"effvid export: error: ONNX Runtime output differs from PyTorch by more than "
              f"{VERIFY_TOLERANCE} of the largest logit for {', '.join(map(str, bad))}", file=sys.stderr)
        return 1
    return 0


def register(sub) -> None:
    p = sub.add_parser("export", help="export a TSM to ONNX (offline clip model and online "
                       "frame-by-frame model)", description=__doc__,
                       formatter_class=HelpFormatter)
    add_model_arguments(p)
    p.add_argument("--output", "-o", default="exported", help="output folder (default: exported)")
    p.add_argument("--name", help="file name stem (default: the checkpoint's or model's name)")
    p.add_argument("--mode", choices=("auto", "offline", "online"), default="auto",
                   help="auto: offline, plus online if the model is causal (default)")
    p.add_argument("--size", type=positive_int, default=None,
                   help="input height and width (default: the size a checkpoint was trained at, else 224)")
    p.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo",
                   help="torch.onnx exporter: dynamo (torch.export, default) or the legacy "
                   "TorchScript tracer (faster to export, deprecated upstream)")
    p.add_argument("--opset", type=positive_int, help="ONNX opset (default: the exporter's)")
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="compare ONNX Runtime with PyTorch after export (default: on)")
    p.set_defaults(func=run)
