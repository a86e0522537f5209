"""``effvid eval DATA --checkpoint CKPT``: accuracy under TSM's test protocols.

DATA is a list file, Something-Something v2's validation.json, Kinetics' validate.csv (listed
videos missing from the download are skipped and counted), HMDB51's or UCF101's split folder
(the test part of ``--official-split``), a class-folder root (its ``val/`` part if it has one)
or a folder of class folders; ``--classes`` numbers a list's
integer labels (UCF101's classInd.txt). Views are clips x crops, with logits averaged: 1 clip
x 1 crop is TSM's single-view protocol; ``--clips 10 --crops 3`` with ``--sampling dense`` is its dense
Kinetics protocol; ``--twice --crops 3`` is its "twice sample" Something-Something protocol.
3 crops are --size squares along the long side of frames whose short side is resized to
--scale-size, as the original's ``--test_crops=3`` (224 of 256 by default); its ``--full_res``
(256x256 crops, in its dense Kinetics command) is ``--size 256 --scale-size 256``.
A folder (or list) that the run split by ``--val-fraction`` is evaluated whole, training videos
too, unless ``--held-out`` keeps only the ones the run held out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cli import HelpFormatter, UserError, add_device_argument, plural, results_file, write_results
from ..errors import some_names
from ..training.config import AMP_DTYPES, TrainConfig
from .views import add_view_arguments, check_views, mirrored_views_note, view_protocol


def eval_samples(source: str, classes: list[str], root: str | None, class_file: str | None = None,
                 official_split: int | None = None, notice=None):
    """The samples of DATA, labelled with the checkpoint's ``classes``; ``notice`` (e.g.
    ``print``) is told of the listed videos a Kinetics CSV's download lacks. ``official_split``
    (default 1) is for a split folder only."""
    from ..data import (has_split_folders, read_class_file, read_samples, read_split_folder, scan_class_folders,
                        split_folder_kind)
    from ..data.files import not_found

    src = Path(source)
    if not (src.is_file() or src.is_dir()):
        raise not_found("dataset source", src)
    kind = split_folder_kind(src)
    if official_split is not None and kind is None:  # it would be ignored: nothing else has splits
        raise UserError(f"--official-split picks a split of HMDB51's or UCF101's split folder "
                        f"(testTrainMulti_7030_splits, ucfTrainTestlist); {source} is not one "
                        "(drop --official-split)")
    if src.is_file():
        # the class file numbers DATA's integer labels; the classes are the checkpoint's
        numbers = read_class_file(class_file) if class_file else None
        return read_samples(src, root=root, classes=classes, class_numbers=numbers, notice=notice)[0]
    if class_file:  # it would be ignored: folders name their classes, and nothing is numbered
        named_by = ({"hmdb51": "HMDB51's split folder, whose split files name the classes",
                     "ucf101": "UCF101's split folder, whose classInd.txt numbers the classes"}[kind]
                    if kind else "a folder, whose class folders name the classes")
        raise UserError(f"--classes numbers the integer labels of a list file; {source} is "
                        f"{named_by} (drop --classes)")
    if kind is not None:  # HMDB51's or UCF101's published splits: the test part
        return read_split_folder(src, "test", official_split or 1, root=root, classes=classes)[0]
    if (src / "val").is_dir() or has_split_folders(src):  # which refuses a train/ without val/
        src = src / "val"
    return scan_class_folders(src, classes=classes)[0]


def run_config_beside(checkpoint: str) -> TrainConfig | None:
    """The configuration of the run whose folder holds ``checkpoint`` (its config.json), or None
    for a checkpoint kept elsewhere."""
    from ..training.config import TrainConfig

    path = Path(checkpoint).parent / "config.json"
    return TrainConfig.load(path) if path.is_file() else None


def held_out_samples(source: str, checkpoint: str, classes: list[str], root: str | None, notice=None):
    """The videos of DATA that the run of ``checkpoint`` held out for validation: its split,
    drawn again by training's own code from the run's config.json and split.json (which keeps
    each video's side), labelled with the checkpoint's ``classes``."""
    import dataclasses

    from ..data import VideoSample
    from ..training.run_folder import read_split
    from ..training.run_data import build_datasets, split_changes, split_record, splits_by_fraction

    run = Path(checkpoint).parent
    cfg = run_config_beside(checkpoint)
    if cfg is None:
        raise UserError(f"--held-out evaluates the videos a run held out of its data, as its "
                        f"config.json and split.json say; {run} has no config.json (give the "
                        "checkpoint in its run folder)")
    if not splits_by_fraction(cfg):
        given = (f"--val-data {cfg.val_data}" if cfg.val_data else
                 f"the validation part of {cfg.data} (its val/ folder or published split)")
        raise UserError(f"--held-out: {run} held out nothing of its data, it validated on {given}: "
                        "evaluate that without --held-out")
    split = read_split(run)
    if split is None:
        raise UserError(f"--held-out: {run} has no split.json: it was trained by an effvid from "
                        "before the held-out split was saved, and that split cannot be drawn again")
    cfg = dataclasses.replace(cfg, data=source, data_root=root or cfg.data_root)
    if not splits_by_fraction(cfg):
        raise UserError(f"--held-out: {source} brings its own validation part (val/ or a published "
                        f"split); {run} held out part of {cfg.data}, a folder or a list file")
    train_set, val_set = build_datasets(cfg, cfg.seed, notice=notice, previous_split=split)
    current = split_record(cfg, cfg.seed, train_set, val_set)
    if not set(current["train"] + current["val"]) & set(split["train"] + split["val"]):
        raise UserError(f"--held-out: none of the videos of {source} is one of those {run} "
                        "split (split.json): give the data it was trained on")
    if notice and (change := split_changes(split, current)):
        notice(f"note: {change}")
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({val_set.classes[s.label] for s in val_set.samples} - index.keys())
    if unknown:
        raise UserError(f"--held-out: {source} has classes the checkpoint was not trained on: "
                        f"{some_names(unknown)}")
    if notice:
        notice(f"the {plural(len(val_set), 'video')} {run} held out of {source} for validation (split.json)")
    return [VideoSample(s.path, index[val_set.classes[s.label]]) for s in val_set.samples]


def trained_on_note(source: str, checkpoint: str) -> str | None:
    """A note for DATA that the checkpoint's run split by fraction and mostly trained on, or None."""
    import os

    from ..training.run_data import splits_by_fraction

    try:
        cfg = run_config_beside(checkpoint)
    except ValueError:  # an unreadable config.json: no note, the evaluation goes on
        return None
    if cfg is None or os.path.realpath(source) != os.path.realpath(cfg.data) or not splits_by_fraction(cfg):
        return None
    return (f"note: {Path(checkpoint).parent} trained on most of these videos (it held out "
            f"{100 * cfg.val_fraction:g}% of each class for validation): --held-out evaluates "
            "only the held-out ones")


def per_class_lines(classes: list[str], per_class: list[float | None]) -> str:
    """The accuracy of each class with videos, in a column after the longest name (up to 60
    characters; Something-Something's names are sentences), and the classes without videos on
    one line: a Kinetics-400 class list evaluated on part of its classes printed a line for
    each missing class, and the percentages wandered with the names' lengths."""
    measured = [(name, acc) for name, acc in zip(classes, per_class) if acc is not None]
    width = min(max((len(name) for name, _ in measured), default=0), 60)
    lines = [f"  {name:<{width}} {100 * acc:6.2f}%" for name, acc in measured]
    missing = [name for name, acc in zip(classes, per_class) if acc is None]
    if missing:
        names = ": " + ", ".join(missing) if len(missing) <= 10 else " (null in --json's per_class)"
        lines.append(f"  no videos for {len(missing)} of {plural(len(classes), 'class')}{names}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Evaluate; under torchrun each process evaluates a shard of the videos (each once), and
    the first one prints and writes the results of all."""
    from ..training.distributed import close_distributed, init_distributed

    env = init_distributed(str(args.device))
    result = evaluate_command(args, env)
    close_distributed(env)
    return result


def evaluate_command(args: argparse.Namespace, env) -> int:
    from torch.utils.data import DataLoader

    from ..data import collate_clips, find_class_file
    from ..inference import load_recognizer, test_dataset
    from ..training.distributed import all_gather_objects, build_sampler, process_device
    from ..training.evaluate import bad_videos_report, evaluate, no_readable_clips

    device = process_device(args.device, env)

    def notice(line: str) -> None:  # on stderr, as predict's: standard output is the results
        print(line, file=sys.stderr)

    say = notice if env.is_main else None  # once
    model, meta = load_recognizer(args.checkpoint, args.num_segments)
    classes = meta["classes"]
    check_views(args, meta)  # before reading the data, which may take minutes
    if say and (note := mirrored_views_note(args.checkpoint, meta, args.crops)):
        say(note)
    # said before reading: an error about a label's number names no file
    if say and not args.classes and (found := find_class_file(args.data)) is not None:
        say(f"class numbers from {found}, found beside the data (--classes FILE to give another)")
    if args.held_out:
        if args.classes or args.official_split:  # the run's own settings draw its split
            raise UserError(f"--held-out takes the run's settings from its config.json (drop "
                            f"{'--classes' if args.classes else '--official-split'})")
        samples = held_out_samples(args.data, args.checkpoint, classes, args.data_root, notice=say)
    else:
        samples = eval_samples(args.data, classes, args.data_root, args.classes, args.official_split,
                               notice=say)
        if say and (note := trained_on_note(args.data, args.checkpoint)):
            say(note)
    dataset = test_dataset(samples, meta, num_segments=model.num_segments, num_clips=args.clips,
                           num_crops=args.crops, twice=args.twice, sampling=args.sampling,
                           size=args.size, scale_size=args.scale_size)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers,
                        sampler=build_sampler(dataset, env, shuffle=False, seed=0), collate_fn=collate_clips)
    videos: list = []
    computed: list = []
    stats = evaluate(model.to(device), loader, device, len(classes), env=env, amp=args.amp,
                     amp_dtype=args.amp_dtype, progress=not args.quiet, per_video=videos,
                     computed=computed)  # the metrics: of all processes
    # the lists: each process has its shard's, in the order of the data
    order = {s.path: k for k, s in enumerate(samples)}
    stats["bad"] = sorted((b for part in all_gather_objects(stats["bad"], env) for b in part),
                          key=lambda b: order.get(b[0], -1))
    videos = sorted((v for part in all_gather_objects(videos, env) for v in part), key=lambda v: order[v[0]])
    if stats["count"] == 0:  # a 0% that measured nothing must not read as a result
        raise no_readable_clips("evaluated", f"video in {args.data}", stats["bad"])
    if not env.is_main:
        return 0
    protocol = view_protocol(args, meta, model.num_segments)
    if computed[0] < stats["count"] * protocol["views"]:  # the protocol did not do what it says
        notice(f"note: {computed[0]:,} of the {stats['count'] * protocol['views']:,} views differ, and each was "
               f"computed once: the clips of a video with no more frames than the {model.num_segments} segments, "
               "or under dense sampling's 64-frame window, are the same frames (and crops of frames no larger "
               "than the crop the same pixels)")
    if args.json:
        # written before anything is printed: a reader of standard output that leaves (| head)
        # must not cost the file. Each video's label and top-5, to find the ones that were
        # wrong; the unreadable ones as effvid check lists them
        videos = [{"video": path, "label": classes[label], "correct": top[0][0] == label,
                   "top": [{"label": classes[c], "score": round(p, 6)} for c, p in top]}
                  for path, label, top in videos]
        metrics = {k: v for k, v in stats.items() if k != "bad"}
        unreadable = [{"path": path, "reason": reason} for path, reason in stats["bad"]]
        write_results(args.json, json.dumps(metrics | {"unreadable": unreadable, "classes": classes,
                                                         "videos": videos, "data": str(args.data),
                                                         "checkpoint": str(args.checkpoint),
                                                         "protocol": protocol}, indent=1) + "\n")
    views = protocol["views"]
    print(f"{plural(stats['count'], 'video')}, {plural(views, 'view')} each: top-1 {100 * stats['top1']:.2f}%"
          + (f", top-5 {100 * stats['top5']:.2f}%" if "top5" in stats else "")
          + (f" ({env.world_size} processes)" if env.distributed else ""))
    print(per_class_lines(classes, stats["per_class"]))
    if stats["bad"]:
        print(bad_videos_report(stats["bad"], when="", full_list="--json FILE lists them all"
                                if not args.json else f"all in {args.json}"))
    if stats["bad"]:
        # exit status 0 all the same (unlike check, predict and stream): the results are valid,
        # for the videos that were read, and this line says they are not of all
        total = stats["count"] + len(stats["bad"])
        print(f"effvid eval: {len(stats['bad'])} of {total} videos could not be read; the results "
              f"are of the other {stats['count']}", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint", description=__doc__,
                       formatter_class=HelpFormatter)
    p.add_argument("data", help="list file, class-folder root, Something-Something v2's "
                                "validation.json, Kinetics' validate.csv, or HMDB51's / UCF101's "
                                "split folder")
    p.add_argument("--checkpoint", "-c", required=True, help="effvid .safetensors checkpoint")
    p.add_argument("--data-root", help="base folder for relative paths in a list file "
                                       "(Something-Something, Kinetics, HMDB51, UCF101's split folder: "
                                       "the videos' folder)")
    p.add_argument("--classes", metavar="FILE",
                   help="class file that numbers DATA's integer labels (UCF101's classInd.txt; "
                        "default: classInd.txt or labels.json beside DATA, if there); the classes "
                        "are the checkpoint's")
    p.add_argument("--official-split", type=int, choices=(1, 2, 3),
                   help="with HMDB51's or UCF101's split folder as DATA: which split's test part "
                        "(default: 1)")
    p.add_argument("--held-out", action="store_true",
                   help="with the DATA a run split by --val-fraction: only the videos it held out "
                        "for validation (from config.json and split.json beside the checkpoint)")
    add_view_arguments(p)  # and --batch-size, --workers
    add_device_argument(p)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="mixed precision on a GPU, as training's (default: on; no effect on the CPU)")
    p.add_argument("--amp-dtype", choices=AMP_DTYPES, default="auto",
                   help="auto (bfloat16 from Ampere on, float16 before), bfloat16 or float16 "
                        "(default: %(default)s)")
    p.add_argument("--json", metavar="FILE", type=results_file,
                   help="also write the metrics, and each video's label and top-5, as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
