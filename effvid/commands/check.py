"""``effvid check DATA``: read every video of a dataset as training would, before training.

A download of Kinetics has thousands of broken files. Training skips and counts them, but only
finds them while it runs, epoch after epoch. ``check`` decodes one clip of each video (the
segment centres, as validation does) in worker processes and reports the unreadable ones with
their reasons, the videos per class, and the range of lengths, frame rates and sizes. DATA is
anything ``effvid train`` reads; both parts of a folder with train/ and val/ (or of a split
folder) are checked. Listed videos that are not there (a list file's, an annotation file's, a
split folder's, a Kinetics CSV's skipped ones), a class folder's broken links, FIFOs, devices
and folders named like videos, and the files of other kinds (an unknown extension, which
training refuses) a class folder holds or a list names are reported too, and the others
checked. So are videos that end before their header says (truncated): they open, but the segments past the cut get the last frame that decodes, again and again. Exit
status 1 when a video is unreadable, missing or ends early, or a file is not a video, so that
scripts can stop.

    effvid check /data/k400/annotations/train.csv --workers 8 --json k400_train_check.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from ..cli import HelpFormatter, UserError, plural, positive_int, results_file, worker_count, write_results
from ..errors import some_names


class _Checked:
    """Item ``i``: ``(part, path, label, reason or None, (frames, fps, duration, width, height) or
    None, decodable frames or None)``; the last is set when a wanted frame lay past where the file
    stops (truncated): how many frames decode, against the header's ``frames``."""

    def __init__(self, parts):
        self.items = [(name, dataset, i) for name, dataset in parts for i in range(len(dataset))]
        for _, dataset in parts:
            dataset.read_stats = {}  # each read's past_end, in the worker that read it

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int):
        from ..data import BadSample
        from ..data.video import VideoDecodeError, decodable_frames

        part, dataset, i = self.items[k]
        sample = dataset.samples[i]
        got = dataset[i]
        if isinstance(got, BadSample):
            return part, sample.path, sample.label, got.reason, None, None
        info = dataset.probed[sample.path]  # the probe the dataset made while reading it
        # training would repeat an earlier frame for the segments past the cut; count the frames
        # there are (the whole file is decoded, for these few files only). A file whose frames
        # all decode is not cut: its timestamps only stray from frame number / fps (variable rate)
        try:
            ends = decodable_frames(sample.path) if dataset.read_stats[sample.path]["past_end"] else None
        except VideoDecodeError as e:  # more damaged packets in the whole file than the read met
            return part, sample.path, sample.label, e.reason, None, None
        if ends is not None and ends >= info.num_frames:
            ends = None
        return part, sample.path, sample.label, None, (info.num_frames, info.fps, info.duration_s,
                                                        info.width, info.height), ends


def _first(batch):
    return batch[0]


def _first_frame(clip, rng):
    """The clips' transform: the frames are decoded all the same; one is enough to pass on."""
    return clip[:1]


def data_parts(args, missing: list) -> list:
    """``[(name, VideoClipDataset)]``: the parts of DATA that training reads, without the listed
    videos that are not there (training stops at them), which ``missing`` gets as
    ``(part, MissingVideo)`` pairs."""
    from ..data import build_dataset, find_class_file, has_parts, read_class_file

    src = Path(args.data)
    class_file = args.classes or find_class_file(src)
    common = dict(num_segments=args.num_segments, train=False, transform=_first_frame,
                  root=args.data_root, official_split=args.official_split,
                  class_numbers=read_class_file(class_file) if class_file else None, notice=print)

    def part(name: str, split: str, **kwargs):
        not_there: list = []
        dataset = build_dataset(src, split=split, missing=not_there, **common, **kwargs)
        missing.extend((name, video) for video in not_there)
        return name, dataset

    if has_parts(src):
        train = part("train", "train")
        return [train, part("val", "val", classes=train[1].classes)]
    return [part("all", "all")]


def found_in_class_folder(where: str) -> bool:
    """Whether a video left out of DATA (its ``where``) was found in a class folder, not listed."""
    return where.startswith("class folder ")  # as scan_class_folders says it


def why_missing(video) -> str:
    """Why a video of DATA (a :class:`~effvid.data.files.MissingVideo`) is left out: a link whose
    target is gone (a class folder's, or one a list names) says where it pointed; a FIFO, a
    device or a folder named like a video, what it is; one the reader knows more of (its
    ``why``: a Kinetics id it cannot tell apart), that; a listed one, where it is listed."""
    from ..data.files import broken_link
    from ..data.video import not_a_video_file

    if link := broken_link(video.path):
        return link
    what = video.why or not_a_video_file(video.path)
    if found_in_class_folder(video.where):
        return what or "gone since the scan"
    return f"{what}; listed in {video.where}" if what else f"listed in {video.where}"


def are(things) -> str:
    """The verb after a count of ``things``: "1 of 3 videos is", "2 of 3 videos are"."""
    return "is" if len(things) == 1 else "are"


def _spread(values, fmt="{:,.0f}") -> str:
    return (f"{fmt.format(min(values))} to {fmt.format(max(values))}, "
            f"median {fmt.format(statistics.median(values))}")


def run(args: argparse.Namespace) -> int:
    from torch.utils.data import DataLoader

    from ..data.files import broken_link
    from ..training.evaluate import bad_videos_report
    from ..training.interrupts import StopsOnCtrlC
    from ..training.progress import progress_bar

    missing: list = []
    parts = data_parts(args, missing)
    # files of other kinds in class folders: said apart from the videos that are not there
    others = [(part, video) for part, video in missing if video.not_video]
    missing = [(part, video) for part, video in missing if not video.not_video]
    classes = parts[0][1].classes
    checked = _Checked(parts)
    if len(checked) == 0 and not missing and not others:
        raise UserError(f"no videos in {args.data}")
    start = time.perf_counter()
    loader = DataLoader(checked, batch_size=1, num_workers=args.workers, collate_fn=_first)
    results = list(progress_bar(StopsOnCtrlC(loader), desc="check", unit="video",  # batches of 1
                                enabled=not args.quiet))
    seconds = time.perf_counter() - start
    bad = [(path, reason) for _, path, _, reason, _, _ in results if reason is not None]
    early = [(part, path, info[0], ends) for part, path, _, _, info, ends in results if ends is not None]
    infos = [info for *_, info, _ in results if info is not None]
    names = [name for name, _ in parts]
    per_part = Counter(part for part, *_ in results)
    why = [why_missing(video) for _, video in missing]
    readable = Counter((part, label) for part, _, label, reason, _, _ in results if reason is None)
    if args.json:  # before anything is printed: a reader of standard output that leaves (| head) must not cost it
        write_results(args.json, json.dumps({
            "data": str(args.data), "videos": len(results), "seconds": round(seconds, 1), "classes": classes,
            "unreadable": [{"path": p, "reason": r} for p, r in bad],
            "missing": [{"path": video.path, "part": part, "listed": video.where, "reason": reason}
                        for (part, video), reason in zip(missing, why)],
            "not_videos": [{"path": video.path, "part": part, "reason": video.why} for part, video in others],
            "ends_early": [{"path": path, "part": part, "frames": frames, "decodable_frames": ends}
                           for part, path, frames, ends in early],
            "per_class": {name: {c: readable[name, k] for k, c in enumerate(classes)} for name in names},
            "videos_info": [{"path": path, "part": part, "frames": info[0], "fps": info[1], "seconds": info[2],
                             "width": info[3], "height": info[4],
                             **({"decodable_frames": ends} if ends is not None else {})}
                            for part, path, _, _, info, ends in results if info is not None]}, indent=1) + "\n")
    print(f"checked {plural(len(results), 'video')}" + (" (" + ", ".join(f"{n} {per_part[n]:,}" for n in names) + ")"
                                               if len(names) > 1 else "") + f" in {seconds:.0f} s")
    full_list = f"all in {args.json}" if args.json else "--json FILE lists them all"
    # "listed video(s) missing" where every one is a list's, not a link, not a class folder's
    listed = "" if any(broken_link(video.path) or found_in_class_folder(video.where)
                       for _, video in missing) else "listed "
    if missing:
        print(bad_videos_report([(video.path, reason) for (_, video), reason in zip(missing, why)], when="",
                                verb="found", what=f"{listed}video(s) missing", full_list=full_list))
    if others:
        print(bad_videos_report([(video.path, video.why) for _, video in others], when="", verb="found",
                                what="file(s) that are not videos in the class folders"
                                if found_in_class_folder(others[0][1].where) else
                                "listed file(s) that are not videos", full_list=full_list))
    if bad:
        print(bad_videos_report(bad, when="", verb="found", full_list=full_list))
    else:
        print("unreadable: none")
    if early:
        print(bad_videos_report([(path, f"{ends} of the {plural(frames, 'frame')} in its header decode")
                                 for _, path, frames, ends in early], when="", verb="found",
                                what="video(s) that end early (frames past the cut repeat the last one)",
                                full_list=full_list))
    if infos:
        frames, fps, duration, width, height = zip(*infos)
        print(f"frames:     {_spread(frames)}")
        print(f"fps:        {_spread(fps, '{:.1f}')}")
        # hundredths below a second: a 2-frame video was "0.0" seconds long
        print(f"seconds:    {_spread(duration, '{:.2f}' if min(duration) < 1 else '{:.1f}')}")
        print(f"size:       width {_spread(width)}; height {_spread(height)}")
    for name in names:
        counts = [readable[name, k] for k in range(len(classes))]
        empty = [c for c, n in zip(classes, counts) if n == 0]
        print(f"{name + ':':<11} {plural(len(classes), 'class')}, readable videos per class {_spread(counts)}"
              + (f"; none for {len(empty)}: {some_names(empty)}" if empty else ""))
    if args.json:
        print(f"wrote {args.json}")
    trouble = ([f"{plural(len(missing), listed + 'video')} {are(missing)} missing"] if missing else []) + (
        [f"{plural(len(others), 'file')} {'is not a video' if len(others) == 1 else 'are not videos'} "
         "(training refuses them)"] if others else []) + (
        [f"{len(bad):,} of {plural(len(results), 'video')} {are(bad)} unreadable"] if bad else []) + (
        [f"{len(early):,} of {plural(len(results), 'video')} {'ends' if len(early) == 1 else 'end'} early"]
        if early else [])
    if trouble:
        print(f"effvid check: {'; '.join(trouble)}", file=sys.stderr)
    return 1 if trouble else 0


def register(sub) -> None:
    p = sub.add_parser("check", help="read every video of a dataset as training would, before training",
                       description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("data", help="what effvid train reads: class folders, a list file, an annotation file "
                                "or a split folder")
    p.add_argument("--data-root", help="the videos' folder, as for effvid train")
    p.add_argument("--classes", metavar="FILE", help="class file, as for effvid train")
    p.add_argument("--official-split", type=int, choices=(1, 2, 3), default=1,
                   help="with HMDB51's or UCF101's split folder: which split (default: 1)")
    p.add_argument("--num-segments", type=positive_int, default=8,
                   help="frames decoded per video, at the segment centres (default: 8)")
    p.add_argument("--workers", type=worker_count, default=2, help="decoding processes (default: 2)")
    p.add_argument("--json", metavar="FILE", type=results_file, help="also write the results, every video's, as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
