"""``effvid prepare SRC DST``: a copy of a video collection made for training.

Every video under SRC is re-encoded to the same path and name under DST (.mpg, .mpeg, .ts, .mts,
.m2ts, .3gp, .flv, .wmv and .asf videos as mp4, named NAME.mp4): short side 256 pixels
(TSM's scale size; never enlarged), a keyframe every second (so that reading a clip's 8 frames
seeks near each one instead of decoding seconds of video), the rotation applied to the pixels,
the timestamps and the audio kept. List files, class files, Kinetics' CSV and
Something-Something's JSON (.txt, .csv, .json, .lst) are copied as they are (a list file with
the new names of the videos copied as mp4), so DST is given to effvid train as SRC was. This
replaces extracting frames to folders of images.

Long runs: --workers processes; each video appears under its name only when complete, so a run
stopped by Ctrl-C is finished by running the same command again (videos already there are
skipped). An unreadable video is copied unchanged, so that DST trains as SRC does (training
skips and counts it), and named, at the end and in DST's effvid-prepare-report.txt; the exit
status is then 1. A broken link (a video's or an annotation file's) is not copied but made
again in DST as a link pointing where it points, and named with its target; the exit status
is then 1 too.

    effvid prepare /data/ucf101 /data/ucf101_256 --workers 8
"""

from __future__ import annotations

import argparse
import sys

from ..cli import (HelpFormatter, UserError, command_line, nonnegative_int, plural, positive_int,
                   torchrun_processes, worker_count)
from ..runtime import usable_cpus


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def short_side_value(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be >= 2 (the sides are made even), got {value}")
    return value


def fps_value(text: str) -> float:
    from ..data.prepare import MIN_FPS

    value = positive_float(text)
    if value < MIN_FPS:
        raise argparse.ArgumentTypeError(f"must be >= {MIN_FPS} (a frame every {1 / MIN_FPS:g} s), got {text}")
    return value


def crf_value(text: str) -> int:
    value = nonnegative_int(text)
    if value > 51:
        raise argparse.ArgumentTypeError(f"must be 0 to 51, got {value}")
    return value


def _size(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} kB"


def _not_files(count: int) -> str:
    return ("1 path named like a video is not a regular file" if count == 1 else
            f"{count:,} paths named like videos are not regular files")


def run(args: argparse.Namespace) -> int:
    from ..data.prepare import prepare_folder
    from ..training.evaluate import bad_videos_report
    from ..training.progress import progress_bar

    if (processes := torchrun_processes()) > 1:
        # every process wrote the same DST: one prepared the videos, the other found some there
        raise UserError(f"prepare runs in one process, which starts --workers processes itself; under "
                        f"torchrun (WORLD_SIZE={processes}) each process wrote the same DST: "
                        f"run it without torchrun ({command_line('effvid', 'prepare', args.src, args.dst)} "
                        "--workers N)")

    def progress(results, total):
        return progress_bar(results, desc="prepare", unit="video", total=total)

    summary = prepare_folder(args.src, args.dst, short_side=args.short_side,
                             keyframe_interval=args.keyframe_interval, crf=args.crf,
                             audio=not args.no_audio, fps=args.fps, workers=args.workers,
                             overwrite=args.overwrite, progress=None if args.quiet else progress)
    total = len(summary.prepared) + summary.already_there + len(summary.skipped) + len(summary.linked)
    print(f"prepared {len(summary.prepared):,} of {plural(total, 'video')} in {summary.seconds:,.1f} s"
          + (f" ({summary.already_there:,} already there)" if summary.already_there else "")
          + (f": {_size(summary.bytes_in)} -> {_size(summary.bytes_out)}" if summary.prepared else ""))
    print(f"copied {len(summary.copied):,} annotation file(s)"
          + (f"; left out {len(summary.left_out):,} other file(s), e.g. {summary.left_out[0]}"
             if summary.left_out else ""))
    if summary.renamed:  # a container prepare does not write, or .mpg (see effvid.data.prepare.copy_name)
        source, copy = summary.renamed[0]
        print(f"  {len(summary.renamed):,} video(s) copied as .mp4 under a new name, e.g. {source} -> {copy}"
              + (f"; rewrote {len(summary.rewritten):,} list file(s) with the new names"
                 if summary.rewritten else ""))
    full_list = f"all in {summary.report}"
    if summary.skipped:
        print(bad_videos_report(summary.skipped, when=", copied unchanged", verb="found", full_list=full_list))
    if summary.linked:  # nothing to copy: each is made again as a link, pointing where it points
        print(bad_videos_report(summary.linked, when=", made again as links", verb="found",
                                what="video(s) that are broken links", full_list=full_list))
    if summary.broken_links:
        print(f"  {len(summary.broken_links):,} annotation file(s) are broken links, made again as links:")
        print("\n".join(f"    {path}: {reason}" for path, reason in summary.broken_links))
    if summary.not_files:
        print(f"  {_not_files(len(summary.not_files))}, left out:")
        print("\n".join(f"    {path}: {what}" for path, what in summary.not_files))
    print(f"wrote {summary.report}")
    if summary.skipped:
        one = len(summary.skipped) == 1
        print(f"effvid prepare: {len(summary.skipped):,} of {plural(total, 'video')} "
              f"{'is' if one else 'are'} unreadable and {'was' if one else 'were'} copied unchanged",
              file=sys.stderr)
    if summary.linked:
        one = len(summary.linked) == 1
        print(f"effvid prepare: {len(summary.linked):,} of {plural(total, 'video')} "
              f"{'is a broken link' if one else 'are broken links'} and {'was' if one else 'were'} made again "
              f"as {'a link' if one else 'links'}", file=sys.stderr)
    if summary.broken_links:
        print(f"effvid prepare: {len(summary.broken_links):,} annotation file(s) are broken links and "
              "were made again as links", file=sys.stderr)
    if summary.not_files:
        one = len(summary.not_files) == 1
        print(f"effvid prepare: {_not_files(len(summary.not_files))} and {'was' if one else 'were'} left out "
              f"(training on SRC counts {'it' if one else 'them'} as missing)", file=sys.stderr)
    return 1 if summary.skipped or summary.linked or summary.broken_links or summary.not_files else 0


def register(sub) -> None:
    p = sub.add_parser("prepare", help="re-encode a video collection for training: 256-px short side, "
                                       "a keyframe every second", description=__doc__,
                       formatter_class=HelpFormatter)
    p.add_argument("src", help="the folder of the videos (class folders, or videos with their list, "
                               "split or annotation files)")
    p.add_argument("dst", help="the folder for the copy (made if needed; outside SRC)")
    p.add_argument("--short-side", type=short_side_value, default=256,
                   help="short side of the frames in pixels; smaller videos keep their size (default: 256)")
    p.add_argument("--keyframe-interval", type=positive_float, default=1.0,
                   help="seconds between keyframes (default: 1.0)")
    p.add_argument("--crf", type=crf_value, default=23,
                   help="quality of H.264 (mp4, mov, mkv) and VP9 (webm): lower is better and "
                        "larger (default: 23)")
    p.add_argument("--fps", type=fps_value,
                   help="resample to this constant frame rate, dropping frames (videos at a lower "
                        "rate keep theirs; default: keep every frame and its timestamp)")
    p.add_argument("--no-audio", action="store_true", help="leave the audio out (default: kept)")
    p.add_argument("--workers", type=worker_count, default=usable_cpus(),
                   help="videos encoded at once, one process each (default: the CPU count)")
    p.add_argument("--overwrite", action="store_true",
                   help="redo the videos already in DST (default: skip them, to finish a stopped run)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
