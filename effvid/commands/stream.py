"""``effvid stream SOURCE``: frame-by-frame recognition with an online (causal) TSM.

SOURCE is a video file, a directory of videos (each one a new stream) or a camera index
(``0`` for /dev/video0). Prints one JSON line per frame (source, frame, time, label, index,
score, latency_ms) and, at the end, frames per second and per-frame latency on stderr.

The model is an effvid checkpoint of a causal TSM (``--checkpoint run/best.safetensors``), an
online ONNX export (``--checkpoint model.online.onnx``, run with ONNX Runtime), or, for a
demo without training, ``--model tsm_mobilenet_v2 --num-classes 10`` (random weights).

Examples::

    effvid stream clip.mp4 --checkpoint best.safetensors --smooth 8 \\
        --output-video annotated.mp4 --plot probs.png
    effvid stream 0 --checkpoint model.online.onnx --max-frames 300
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

from ..cli import WEIGHTS_SUFFIXES, HelpFormatter, UserError, command_line, plural, positive_int, results_file


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (one of --checkpoint or --model)")
    g.add_argument("--checkpoint", "-c", metavar="PATH",
                   help="effvid .safetensors checkpoint (or, for stream, an online .onnx export)")
    g.add_argument("--model", metavar="NAME",
                   help="build this model with random weights instead (demos, benchmarks), "
                   "e.g. tsm_mobilenet_v2")
    g.add_argument("--num-classes", type=positive_int, default=10, help="with --model (default: 10)")
    g.add_argument("--num-segments", type=positive_int, default=8, help="with --model (default: 8)")
    g.add_argument("--shift-direction", default="causal", choices=("causal", "bidirectional"),
                   help="with --model (default: causal)")
    g.add_argument("--labels", metavar="FILE",
                   help="class names, one per line (default: those stored in the checkpoint)")


def load_model_from_args(args: argparse.Namespace):
    """(Recognizer, class names or None, the checkpoint's metadata ({} for --model)) from
    --checkpoint / --model."""
    import torch

    from ..models import create_model

    if bool(args.checkpoint) == bool(args.model):
        raise UserError("give exactly one of --checkpoint PATH or --model NAME")
    if args.checkpoint:
        from ..models.weights import load_model, weights_not_found

        path = Path(args.checkpoint)
        if not path.is_file():
            raise UserError(str(weights_not_found(path, "checkpoint")))
        model, meta = load_model(path)
        classes = meta.get("classes")
    else:
        torch.manual_seed(0)
        kwargs = dict(num_classes=args.num_classes, num_segments=args.num_segments)
        if args.model.startswith("tsm_"):
            kwargs["shift_direction"] = args.shift_direction
        model = create_model(args.model, **kwargs)
        print(f"note: {args.model} has random weights (use --checkpoint for a trained model)",
              file=sys.stderr)
        classes, meta = None, {}
    model.eval()
    return model, class_names(args, classes, model.num_classes), meta


def read_labels(path: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"labels file not found: {p}")
    labels = [line.strip() for line in p.read_text().splitlines() if line.strip()]
    if not labels:
        raise UserError(f"labels file {p} is empty")
    return labels


def class_names(args: argparse.Namespace, stored, num_classes: int | None) -> list[str] | None:
    """The --labels file's names, else ``stored`` (those the --checkpoint holds); refused
    unless there is one per class of the model (export and stream)."""
    classes, origin = (read_labels(args.labels), f"labels file {args.labels}") if args.labels \
        else (stored, f"checkpoint {args.checkpoint}")
    if classes is not None and num_classes is not None and len(classes) != num_classes:
        raise UserError(f"{origin}: {plural(len(classes), 'class name')} for a model with "
                        f"{plural(num_classes, 'class')}")
    return classes


def _recognizer(args: argparse.Namespace):
    """(recogniser with step/reset, class names, input size, resize of the shorter side). The
    size is --size, else the size an .onnx was exported for or a checkpoint was trained at,
    else 224; the resize is the one the checkpoint was validated with (its --scale-size, which
    the checkpoint and the .onnx record), else size x 256/224 rounded down, so that the stream sees frames as
    effvid eval does."""
    if args.checkpoint and Path(args.checkpoint).suffix.lower() == ".onnx":
        if args.model:
            raise UserError("give exactly one of --checkpoint PATH or --model NAME")
        try:
            from ..export.onnx import OnnxOnlineRunner
        except ImportError as e:
            raise UserError(str(e)) from None
        try:
            runner = OnnxOnlineRunner(args.checkpoint, threads=args.threads)
        except ImportError as e:
            raise UserError(str(e)) from None
        if args.size and args.size != runner.height:
            print(f"note: {args.checkpoint} was exported for {runner.height}x{runner.width} "
                  "input; using that size", file=sys.stderr)
        classes = class_names(args, runner.classes, runner.num_classes)
        view = runner.metadata.get("preprocess", {})  # effvid export records it
        return runner, classes, runner.height, view.get("scale_size") if view.get("size") == runner.height else None
    import torch

    from ..models.online import OnlineRecognizer

    if args.threads:
        torch.set_num_threads(args.threads)
    from ..inference import test_view

    model, classes, meta = load_model_from_args(args)
    view = test_view(meta, size=args.size)  # as trained, or at --size with TSM's 256/224
    try:
        online = OnlineRecognizer.from_model(model)
    except ValueError as e:
        raise UserError(str(e)) from None
    return online, classes, view["size"], view["scale_size"]


def _output_names(sources: list[str]) -> dict[str, str]:
    """A file name stem per source, unique: x.mp4 and x.mkv in one folder get x_mp4, x_mkv."""
    from .. import stream as st

    stems = {s: "camera" + s if st.is_camera(s) else Path(s).stem for s in sources}
    taken = Counter(stems.values())
    return {s: stem if taken[stem] == 1 else f"{stem}_{Path(s).suffix.lstrip('.')}"
            for s, stem in stems.items()}


def _output_for(path: str | None, name: str, multi: bool, suffix: str) -> Path | None:
    """Where an output of one source goes: in the folder PATH when SOURCE is a folder or PATH
    is a folder (existing, or written with a trailing slash), else PATH itself (with
    ``suffix`` added if it has none)."""
    if not path:
        return None
    if multi or Path(path).is_dir() or path.endswith(("/", os.sep)):
        return Path(path) / f"{name}{suffix}"
    return Path(path) if Path(path).suffix else Path(path).with_suffix(suffix)


def _refuse_file_names_for_folders(args: argparse.Namespace) -> None:
    """With a folder as SOURCE, --output-video and --plot are folders (one file per video): one
    named as a file ("o.mp4") became a folder of that name, unsaid, which train and check later
    refused as "a folder named like a video"."""
    from ..data.video import VIDEO_EXTENSIONS

    for flag, path, suffixes in (("--output-video", args.output_video, VIDEO_EXTENSIONS),
                                 ("--plot", args.plot, (".png", ".jpg", ".jpeg", ".pdf", ".svg"))):
        if path and Path(path).suffix.lower() in suffixes and not Path(path).is_dir():
            raise UserError(f"{flag} {path} names a file, and SOURCE {args.source} is a folder: its "
                            f"{'annotated videos' if flag == '--output-video' else 'plots'} go into a "
                            f"folder, one per video; give a folder ({flag} {Path(path).with_suffix('')})")


def _refuse_overwriting_sources(outputs: list[Path], sources: list[str]) -> None:
    inputs = {Path(s).resolve() for s in sources}
    for out in outputs:
        if out.resolve() in inputs:
            raise UserError(f"{out} is one of the videos being streamed; writing there would "
                            "destroy it: choose another output path")


def run(args: argparse.Namespace) -> int:
    from .. import stream as st

    if args.source.lower().endswith(WEIGHTS_SUFFIXES):  # "effvid stream best.safetensors"
        raise UserError(f"{args.source} is a weights file, not a video: stream takes the checkpoint with "
                        "--checkpoint, and SOURCE is a video, a folder of videos or a camera "
                        f"({command_line('effvid', 'stream', 'VIDEO', '--checkpoint', args.source)})")
    try:
        sources = st.list_sources(args.source)
    except st.StreamError as e:
        raise UserError(str(e)) from None
    multi = Path(args.source).is_dir() if not st.is_camera(args.source) else False
    if multi:
        _refuse_file_names_for_folders(args)
    names = _output_names(sources)
    outputs = {s: (_output_for(args.output_video, names[s], multi, ".mp4"),
                   _output_for(args.plot, names[s], multi, ".png")) for s in sources}
    _refuse_overwriting_sources([p for pair in outputs.values() for p in pair if p is not None]
                                + ([Path(args.jsonl)] if args.jsonl else []), sources)
    recognizer, classes, size, scale_size = _recognizer(args)
    if args.jsonl:
        Path(args.jsonl).parent.mkdir(parents=True, exist_ok=True)
    out = open(args.jsonl, "w") if args.jsonl else sys.stdout
    failed = []
    interrupted = False
    try:
        for source in sources:
            video, plot = outputs[source]
            fps = st.source_fps(source)
            try:
                frames = st.open_frames(source)
                summary = st.run_stream(
                    recognizer, frames, classes=classes, size=size, scale_size=scale_size, smooth=args.smooth,
                    source=source, out=out, video_path=video, video_fps=fps, plot_path=plot,
                    max_frames=args.max_frames)
            except st.StreamError as e:
                if not multi:
                    raise UserError(str(e)) from None
                # the error names the video already ("cannot open video X: ..."): once is enough
                said = str(e) if str(source) in str(e) else f"{source}: {e}"
                print(f"effvid stream: skipping: {said}", file=sys.stderr)
                failed.append(source)
                continue
            print(st.format_summary(summary), file=sys.stderr)
            for what, path in (("annotated video", video), ("plot", plot)):
                if path is not None and summary.frames:
                    print(f"  {what}: {path}", file=sys.stderr)
            if summary.interrupted:
                interrupted = True
                break
    finally:  # (a closed stdout, e.g. `| head`, ends the command quietly: see effvid.cli)
        if out is not sys.stdout:
            out.close()
    if interrupted:
        return 130
    if failed:
        if len(failed) == len(sources):
            raise UserError(f"none of the {plural(len(sources), 'video')} in {args.source} could be read")
        print(f"effvid stream: {len(failed)} of {plural(len(sources), 'video')} could not be read",
              file=sys.stderr)
        return 1
    return 0


def register(sub) -> None:
    p = sub.add_parser("stream", help="frame-by-frame recognition of a video or camera "
                       "with an online TSM", description=__doc__,
                       formatter_class=HelpFormatter)
    p.add_argument("source", help="video file, directory of videos, or camera index (0 = /dev/video0)")
    add_model_arguments(p)
    p.add_argument("--size", type=positive_int, default=None,
                   help="input crop size (default: the size a checkpoint was trained at or an "
                   ".onnx was exported for, else 224)")
    p.add_argument("--smooth", type=positive_int, default=1, metavar="N",
                   help="average class probabilities over the last N frames (default: 1, none)")
    p.add_argument("--output-video", metavar="PATH",
                   help="write an annotated video (a folder when SOURCE is a folder)")
    p.add_argument("--plot", metavar="PATH",
                   help="write a PNG of class probabilities over time (a folder when SOURCE is "
                   "a folder)")
    p.add_argument("--jsonl", metavar="PATH", type=results_file, help="write the JSON lines here instead of stdout")
    p.add_argument("--max-frames", type=positive_int, metavar="N", help="stop each stream after N frames")
    p.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads for the model")
    p.set_defaults(func=run)
