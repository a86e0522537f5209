"""``effvid predict VIDEO... --checkpoint CKPT``: top-k labels with scores for each video."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cli import (HelpFormatter, UserError, add_device_argument, command_line, plural, positive_int, results_file,
                   write_results)
from ..errors import unread_path_hint
from .views import add_view_arguments


def json_file(text: str) -> str:
    """--json's FILE, refused when it is a video: in "--json v1.mp4 v2.mp4" argparse gives
    v1.mp4 to --json, and the JSON would overwrite it; with one video ("--json v1.mp4") none was
    left, and the parser said only that VIDEO is required."""
    from ..data.video import VIDEO_EXTENSIONS

    if Path(text).suffix.lower() in VIDEO_EXTENSIONS:
        raise argparse.ArgumentTypeError(f"{text} is a video, and the JSON would overwrite it; put "
                                         "--json after the videos, or write --json=results.json")
    return text if text == "-" else results_file(text)  # "-": standard output


def run(args: argparse.Namespace) -> int:
    from ..data import find_files
    from ..data.video import VIDEO_EXTENSIONS, an_image
    from ..inference import load_recognizer, predict_paths, test_dataset
    from ..errors import some_names
    from .views import check_views, mirrored_views_note, view_protocol

    paths = []
    for v in args.videos:
        p = Path(v)
        if p.is_dir():
            found = find_files(p)
            paths += [str(f) for f in found if f.suffix.lower() in VIDEO_EXTENSIONS]
            if others := [f for f in found if f.suffix.lower() not in VIDEO_EXTENSIONS]:
                # left out without a word, where train and check name such files
                print(f"effvid predict: left out {plural(len(others), 'file')} in {v} that "
                      f"{'is not a video' if len(others) == 1 else 'are not videos'} "
                      f"({some_names(others, shown=3)})", file=sys.stderr)
        elif p.suffix.lower() in (".csv", ".json", ".txt") and p.is_file():
            # decoded, it failed as "cannot open container", which hid the command meant
            raise UserError(f"{v} is an annotation or list file, not a video: {command_line('effvid', 'eval', v)} -c CKPT "
                            "measures accuracy on the videos it lists")
        elif why := an_image(p):  # FFmpeg decoded a .png as a one-frame video, and it was classified
            raise UserError(why)
        elif p.is_file():
            paths.append(str(p))
        else:
            from ..data.video import not_a_video_file

            what = not_a_video_file(p)
            raise UserError(f"{v} is {what}" if what else f"video not found: {v}{unread_path_hint(v)}")
    if not paths:
        raise UserError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) in {' '.join(args.videos)}")
    model, meta = load_recognizer(args.checkpoint, args.num_segments)
    classes = meta["classes"]
    check_views(args, meta)
    if note := mirrored_views_note(args.checkpoint, meta, args.crops):
        print(note, file=sys.stderr)  # stdout may be the JSON
    dataset = test_dataset([(p, 0) for p in paths], meta, num_segments=model.num_segments,
                           num_clips=args.clips, num_crops=args.crops, twice=args.twice,
                           sampling=args.sampling, size=args.size, scale_size=args.scale_size)
    failures = 0
    results = []
    # in each entry: the JSON is a list of them, and a key around it would break its readers
    produced_by = {"checkpoint": str(args.checkpoint), "protocol": view_protocol(args, meta, model.num_segments)}
    # Text output streams one result per video; for JSON a progress bar (stderr) shows the work.
    for path, out in predict_paths(model, dataset, batch_size=args.batch_size, workers=args.workers,
                                   device=args.device, progress=bool(args.json) and not args.quiet):
        if isinstance(out, str):
            failures += 1
            print(f"effvid predict: cannot read {path}: {out}", file=sys.stderr)
            results.append({"video": path, "error": out, **produced_by})
            continue
        scores, idx = out.topk(min(args.topk, len(classes)))
        top = [{"label": classes[i], "score": round(float(s), 6)} for s, i in zip(scores, idx.tolist())]
        results.append({"video": path, "top": top, **produced_by})
        if not args.json:
            print(path)
            # the scores in a column after the longest name shown, up to 60 characters (long
            # names pushed them out), the ranks right-aligned ("10." is wider than " 9.")
            width, rank_width = min(max(len(t["label"]) for t in top), 60), len(str(len(top)))
            for rank, t in enumerate(top, 1):
                print(f"  {rank:>{rank_width}}. {t['label']:<{width}} {t['score']:.3f}")
    if args.json:
        text = json.dumps(results, indent=2)
        if args.json == "-":
            print(text)
        else:
            write_results(args.json, text + "\n")
            print(f"wrote {args.json}")
    if failures:  # exit status 1 as `effvid stream`: a script sees that some input failed
        print(f"effvid predict: {failures} of {plural(len(paths), 'video')} could not be read", file=sys.stderr)
    return 1 if failures else 0


def register(sub) -> None:
    p = sub.add_parser("predict", help="classify videos with a trained checkpoint", description=__doc__,
                       formatter_class=HelpFormatter)
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or folders of videos")
    p.add_argument("--checkpoint", "-c", required=True, help="effvid .safetensors checkpoint")
    p.add_argument("--topk", "-k", type=positive_int, default=5,
                   help="classes shown per video (default: %(default)s)")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE", type=json_file,
                   help="write JSON (to FILE, or to standard output with no FILE); put it after "
                   "the videos, or write --json=FILE")
    add_view_arguments(p)  # and --batch-size, --workers
    p.add_argument("--quiet", action="store_true", help="no progress bar with --json")
    add_device_argument(p)
    p.set_defaults(func=run)
