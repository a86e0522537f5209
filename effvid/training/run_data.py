"""A training run's data: the training and validation sets as the configuration asks for
them (:func:`build_datasets`), the held-out split a resume keeps (``split.json``), and the
run's first lines about its data.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from ..data import find_class_file, is_something_annotations, split_folder_kind
from ..errors import BadValue, plural, some_names
from .config import TrainConfig


def split_record(cfg: TrainConfig, seed: int, train_set, val_set) -> dict:
    """What split.json keeps of a held-out split: each side's videos by :func:`split_key`, so
    that a resume (and ``effvid eval --held-out``) keeps them where they were when DATA changed."""
    from ..data import split_key

    root = split_root(cfg)
    return {"seed": seed, "val_fraction": cfg.val_fraction,
            "train": [split_key(s.path, root) for s in train_set.samples],
            "val": [split_key(s.path, root) for s in val_set.samples]}


def split_changes(previous: dict, current: dict) -> str | None:
    """One line on how the videos of ``current`` differ from those of ``previous`` (two
    :func:`split_record`), or None when they are the same videos on the same sides."""
    before = {k: "train" for k in previous["train"]} | {k: "val" for k in previous["val"]}
    now = {k: "train" for k in current["train"]} | {k: "val" for k in current["val"]}
    added, removed = now.keys() - before.keys(), before.keys() - now.keys()
    moved = sum(now[k] != before[k] for k in now.keys() & before.keys())
    if not (added or removed or moved):
        return None
    new_val = sum(now[k] == "val" for k in added)
    return (f"the data has changed since the run started: {len(added)} video(s) added, "
            f"{len(removed)} removed; {moved} video(s) changed sides; validation: "
            f"{len(previous['val'])} -> {len(current['val'])} videos ({new_val} of them added)")


def validation_source(cfg: TrainConfig, held_out: bool = False) -> tuple[str, str, str] | None:
    """Where ``cfg``'s validation videos come from: its kind ("given", "parts" or "held out"),
    the folder or file that holds them (real path) and in words; ``held_out``: the run held out
    part of DATA (it has a split.json), which DATA itself no longer tells when it has moved,
    gone or been rearranged. None where that cannot be told (DATA gone, or not readable as a run
    reads it)."""
    from ..data import has_parts

    try:
        if cfg.val_data is not None:
            own = Path(cfg.val_data) / "val" if has_parts(cfg.val_data) and not split_folder_kind(cfg.val_data) else None
            return "given", os.path.realpath(own or cfg.val_data), f"--val-data {cfg.val_data}"
        if not held_out and not Path(cfg.data).exists():
            return None
        if not held_out and has_parts(cfg.data):
            if kind := split_folder_kind(cfg.data):
                return ("parts", os.path.realpath(cfg.data),
                        f"the test part of {cfg.data}'s published split {cfg.official_split} ({kind})")
            return "parts", os.path.realpath(Path(cfg.data) / "val"), f"the val/ folder of {cfg.data}"
    except (OSError, ValueError):
        return None
    return "held out", os.path.realpath(cfg.data), f"{100 * cfg.val_fraction:g}% of each class of {cfg.data} (held out)"


def check_validation_source(saved: TrainConfig, cfg: TrainConfig, held_out: bool) -> str | None:
    """Refuse a resume (``cfg``) whose DATA or --val-data would validate on other videos than
    the run did (``saved``, its configuration; ``held_out``: it has a split.json): DATA of
    another layout (train/ and val/ against one folder split by fraction) or a --val-data where
    DATA's own part validated switched the validation set silently, and with it what
    best.safetensors is chosen on; and --val-data, once in config.json, cannot be unset. The
    same layout elsewhere (moved) gets a note, returned; None when nothing changed, or it cannot
    be told (a missing DATA is the data reader's to report). Of a held-out split of DATA moved,
    :func:`split_changes` says which videos changed."""
    before, now = validation_source(saved, held_out), validation_source(cfg)
    if before is None or now is None or before[1] == now[1] or before[0] == now[0] == "held out":
        return None
    from ..errors import command_line
    from .run_folder import resume_command

    out = Path(cfg.output)
    keep = resume_command(out, data=(saved.data, *(["--val-data", saved.val_data] if saved.val_data else [])))
    if before[0] == now[0]:  # the same layout elsewhere: moved, perhaps
        return (f"the run validated on {before[2]}; this resume validates on {now[2]} (moved? the same "
                f"videos keep the epochs' accuracies comparable; to validate as before: {keep})")
    raise ValueError(f"cannot resume {out}: it validated on {before[2]}, and this resume would validate on "
                     f"{now[2]}: its epochs' accuracies would be on other videos (some of them perhaps "
                     f"trained on) and best.safetensors the best of both; resume it with its data ({keep}), "
                     f"or start a new run from its weights ({command_line('--init-weights', out / 'last.safetensors')} "
                     "--output NEW)")


def _one_edit_apart(a: str, b: str) -> bool:
    """Whether one letter substituted, inserted or deleted makes ``a`` into ``b``."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = next((k for k in range(len(a)) if a[k] != b[k]), len(a))
    return a[i + (len(a) == len(b)):] == b[i + 1:]


def ragged_batch_dropped(num_videos: int, batch_size: int, world_size: int = 1) -> int:
    """The training videos each process leaves out of every epoch (a different few each time):
    a ragged last batch is dropped, as the original TSM code does (BatchNorm on a batch of one
    clip is noise), unless that would leave the process nothing. Each process gets
    ceil(num_videos / world_size) clips."""
    per_process = math.ceil(num_videos / world_size)
    return per_process % batch_size if per_process > batch_size else 0


def epoch_coverage_note(num_videos: int, batch_size: int, world_size: int = 1) -> str | None:
    """The note on what an epoch trains other than each training video once, else None: a
    ragged last batch dropped (silent, it left 20% of a small collection untrained each epoch),
    and under torchrun DistributedSampler's padding: each process takes ceil(N / processes)
    videos, the few missing repeated (the first of the epoch's shuffled order, so different ones
    each epoch), which trains them twice. (No flag named: quickstart, which prints it too, has
    no --batch-size.)"""
    share = math.ceil(num_videos / world_size)
    repeated = share * world_size - num_videos
    dropped = ragged_batch_dropped(num_videos, batch_size, world_size)
    left_out = f"batches of {batch_size} leave {dropped} training {'video' if dropped == 1 else 'videos'}"
    if world_size == 1:
        return (f"note: {left_out} out of each epoch (a different {dropped} each time; a batch size "
                f"that divides {share:,} trains on all of them)") if dropped else None
    if not repeated:
        return (f"note: {left_out} per process out of each epoch (a different {dropped} each time; a "
                f"batch size that divides {share:,}, each process's share, trains on each video once)"
                ) if dropped else None
    padding = (f"note: {world_size} processes share the {num_videos:,} training videos as {share:,} "
               f"each, {repeated} of them repeated to make {share * world_size:,} (the sampler pads the "
               f"shares to one size), so each epoch trains {repeated} {'video' if repeated == 1 else 'videos'} "
               f"twice ({'a different one' if repeated == 1 else 'different ones'} each time)")
    once = f"each video exactly once needs a number of processes that divides {num_videos:,}"
    if not dropped:
        return f"{padding}; {once}"
    return (f"{padding}, and {left_out} per process out of it (a different {dropped} each time); a batch "
            f"size that divides {share:,} trains on every video, {repeated} of them twice; {once}")


def videos_in_both(train_set, val_set) -> list[str]:
    """The validation videos that are training videos too: the same file, however its folder is
    spelled (a link to DATA given as --val-data). Each folder is resolved once, not each video
    (a realpath per video took seconds for Kinetics' 260,000)."""
    real: dict[str, str] = {}

    def key(path: str) -> str:
        folder, name = os.path.split(path)
        if folder not in real:
            real[folder] = os.path.realpath(folder)
        return os.path.join(real[folder], name)

    trained = {key(s.path) for s in train_set.samples}
    return [s.path for s in val_set.samples if key(s.path) in trained]


def data_summary(train_set, val_set, cfg: TrainConfig, seed: int, world_size: int = 1) -> list[str]:
    """The run's first word on its data: one line of counts, a note when validation videos are
    training videos too, a note when batches leave videos out of each epoch, and a warning for
    each class the model cannot learn (no training video) and each label that looks like a typo
    (a class of one training video one letter away from a class of more: "jumpin" beside
    "jumping")."""
    classes = train_set.classes
    trains = np.bincount(train_set.labels, minlength=len(classes))
    held = (f" ({100 * cfg.val_fraction:g}% of each class held out, seed {seed})"
            if splits_by_fraction(cfg) else "")
    lines = [f"data: {len(classes)} classes, {len(train_set):,} training and {len(val_set):,} "
             f"validation videos{held}"]
    if both := videos_in_both(train_set, val_set):
        # --val-data naming DATA's videos validated on what the run trained on, without a word
        lines.append(f"note: {len(both):,} of the {plural(len(val_set), 'validation video')} "
                     f"{'is a training video' if len(both) == 1 else 'are training videos'} too "
                     f"({some_names(both, shown=3)}): their accuracy is not that of unseen videos")
    if note := epoch_coverage_note(len(train_set), cfg.batch_size, world_size):
        lines.append(note)
    untrained = [c for c, n in zip(classes, trains) if n == 0]
    if untrained:
        names = some_names(untrained)
        one = len(untrained) == 1
        lines.append(f"warning: {len(untrained)} of {len(classes)} classes {'has' if one else 'have'} no "
                     f"training videos, so the model cannot learn {'it' if one else 'them'}: {names}")
    for c, n in zip(classes, trains):
        if n != 1:
            continue
        # (not between numbers: a list's label 5 among 0s and 1s is no misspelt 0; the warning
        # above names the classes 2 to 4 it leaves empty)
        near = [(o, m) for o, m in zip(classes, trains)
                if m > 1 and _one_edit_apart(c, o) and not (c.isdigit() and o.isdigit())]
        if near:
            other, m = max(near, key=lambda pair: pair[1])
            lines.append(f"warning: class {c!r} has 1 training video and {other!r} has {m}: is "
                         f"{c!r} a typo of {other!r}? (each label is a class)")
    return lines


# A direction that a horizontal flip reverses, as a word of a class name (lowercased, its
# camelCase split): "Swiping Left", "moving_left", "TurnRight", "Turning Hand Counterclockwise",
# "swipe_rightwards"
_MIRRORED_DIRECTION = re.compile(
    r"(?<![a-z])(left|right|leftwards?|rightwards?|clockwise|counterclockwise|anticlockwise)(?![a-z])")


def flips_change_labels(data: str, classes: list[str]) -> str | None:
    """Why a horizontal flip would change the labels of ``data`` (of ``classes``), or None:
    ``data`` is Something-Something's annotation file (the official TSM code turns flips off
    for Something-Something and Jester, whose classes, "Swiping Left", are found by name), or
    a class is named by a direction a flip reverses ("Swiping Left", flipped, swipes right)."""
    if is_something_annotations(data):
        return (f"{data} is Something-Something's annotation file, whose classes name directions "
                "that a flip reverses (\"from left to right\"; the official TSM code turns flips off "
                "for it too)")
    named = [c for c in classes
             if _MIRRORED_DIRECTION.search(re.sub(r"(?<=[a-z])(?=[A-Z])", " ", c).lower())]
    if not named:
        return None
    more = f" (and {len(named) - 1} more)" if len(named) > 1 else ""
    return f"class {named[0]!r}{more} names a direction, which a flip reverses"


def unlearnable_classes(train_set, unreadable: set[str]) -> list[str]:
    """The classes that have training videos, all of them unreadable (a class folder holding
    one zero-byte file): listed, they count in the summary, but nothing trains them."""
    paths: dict[int, list[str]] = {}
    for s in train_set.samples:
        paths.setdefault(s.label, []).append(s.path)
    return [train_set.classes[label] for label, ps in sorted(paths.items())
            if all(p in unreadable for p in ps)]


def splits_by_fraction(cfg: TrainConfig) -> bool:
    """Whether the run holds out ``val_fraction`` of DATA: neither ``val_data`` nor DATA's own
    parts (train/ and val/, HMDB51's or UCF101's split folder) give the validation videos."""
    from ..data import has_parts

    return cfg.val_data is None and not has_parts(cfg.data)


def split_root(cfg: TrainConfig) -> str:
    """The folder a held-out split names its videos relative to (:func:`split_key`): DATA, or
    for a list or annotation file the folder its relative paths start from."""
    data = Path(cfg.data)
    return str(data if data.is_dir() else Path(cfg.data_root) if cfg.data_root else data.parent)


def unused_val_fraction(cfg: TrainConfig) -> str | None:
    """Why a ``val_fraction`` other than the default would be ignored (the validation videos
    come from elsewhere), or None: refused, not ignored, as official_split is."""
    if cfg.val_fraction == TrainConfig.val_fraction or splits_by_fraction(cfg):
        return None
    if cfg.val_data is not None:
        where = f"--val-data {cfg.val_data} gives the validation videos"
    elif split_folder_kind(cfg.data):
        where = f"{cfg.data} is a split folder, whose published split gives the validation videos"
    else:
        where = f"{cfg.data} has train/ and val/ folders, whose val/ validates"
    return (f"val_fraction={cfg.val_fraction} holds out part of DATA for validation, but {where}; "
            "nothing is held out (drop --val-fraction)")


def output_in_data(cfg: TrainConfig) -> str | None:
    """Why the run folder cannot be ``cfg.output``: it is DATA or --val-data (a folder), or inside
    one. The run wrote its tensorboard/ there, which the next run on that data read as a class
    folder (and a new folder inside DATA, as an empty class, failed this run). None where it can."""
    out = os.path.realpath(cfg.output)
    for what, source in (("training data", cfg.data), ("validation data (--val-data)", cfg.val_data)):
        if not (source and Path(source).is_dir()):  # a list or annotation file names its videos
            continue
        folder = os.path.realpath(source)
        if os.path.commonpath([out, folder]) == folder:
            given = (f"--output {cfg.output} (the default, in the working folder)"
                     if cfg.output == TrainConfig.output else f"--output {cfg.output}")
            # quoted: "inside the training data data" read as a doubled word; and the part it is
            # in named (DATA/val/x is in the validation videos)
            parts = [Path(source) / name for name in ("train", "val")]
            part = next((p for p in parts if all(q.is_dir() for q in parts)
                         and os.path.commonpath([out, os.path.realpath(p)]) == os.path.realpath(p)), None)
            where = f"the {what} {str(source)!r}"
            if part is not None:
                where = f"{str(part)!r}, the {'training' if part.name == 'train' else 'validation'} part of {where}"
            inside = "" if out in (folder, part and os.path.realpath(part)) else "inside "
            return (f"{given} is {inside}{where}: the run's files (tensorboard/, ...) would be read as data "
                    "by the next run on it; write the run outside it (--output runs/NAME)")
    return None


def _for_val_data(message: str, missing: bool = False) -> str:
    """A reader's message about --val-data's videos: the readers name --data-root, the folder
    of DATA's, which --val-data-root replaces for the validation videos."""
    if "--data-root" in message:
        return message.replace("--data-root", "--val-data-root")
    return message + (" (--val-data-root gives the folder of --val-data's videos)" if missing else "")


def build_datasets(cfg: TrainConfig, seed: int | None = None, notice=None, previous_split: dict | None = None):
    """Training and validation sets: with ``val_data``, all of ``data`` and all of ``val_data``
    (its val/ part if it has train/ and val/; its relative paths resolved against
    ``val_data_root``, default ``data_root``); without, ``data``'s val/ part or a split of it
    drawn with the run's ``seed`` (the clock's for a seedless run, which its config.json and
    state keep: a resume, or a new run from that config.json, gets the same split).
    ``previous_split`` (a run's split.json, :func:`split_record`) keeps its videos on their
    sides (:func:`~effvid.data.stratified_split`).
    ``notice`` (e.g. ``print``) is told of the listed videos a Kinetics CSV's download lacks,
    and why flips are off when ``flip`` is None and the data decides it (:func:`flips_change_labels`;
    the training set's ``transform.flip`` says what was decided)."""
    seed = (cfg.seed or 0) if seed is None else seed
    from ..data import (TestTransform, TrainTransform, VideoClipDataset, build_dataset,
                        has_parts, read_class_file, stratified_split)

    if cfg.official_split != 1 and not any(split_folder_kind(p) for p in (cfg.data, cfg.val_data) if p):
        # it would be ignored: only these folders have published splits. A BadValue, which train
        # says as the flag typed ("argument --official-split: ..., got 2"), as its other refusals
        raise BadValue("official_split", cfg.official_split,
                       "picks a split of HMDB51's or UCF101's split folder (testTrainMulti_7030_splits, "
                       f"ucfTrainTestlist), and {cfg.data} is not one (drop it)")
    # flip None: decided below, once the classes are known (and before a clip is read)
    train_tf = TrainTransform(cfg.size, scales=cfg.crop_scales, flip=cfg.flip is not False)
    val_tf = TestTransform(cfg.size, cfg.test_scale_size)
    # read once, for both sets: the validation data's integer labels are the same numbers
    class_file = cfg.classes or find_class_file(cfg.data)
    class_numbers = read_class_file(class_file) if class_file else None
    common = dict(num_segments=cfg.num_segments, sampling=cfg.sampling, root=cfg.data_root,
                  val_fraction=cfg.val_fraction, seed=seed, class_numbers=class_numbers,
                  official_split=cfg.official_split, notice=notice)
    if splits_by_fraction(cfg):  # a folder of class folders, or a list or annotation file
        everything = build_dataset(cfg.data, split="all", train=True, transform=train_tf, **common)
        train_samples, val_samples = stratified_split(everything.samples, cfg.val_fraction, seed,
                                                      root=split_root(cfg), previous=previous_split)
        classes = everything.classes
        train_set = VideoClipDataset(train_samples, classes, cfg.num_segments, True, train_tf, cfg.sampling)
        val_set = VideoClipDataset(val_samples, classes, cfg.num_segments, False, val_tf, cfg.sampling)
    elif cfg.val_data is None:
        train_set = build_dataset(cfg.data, split="train", train=True, transform=train_tf, **common)
        val_set = build_dataset(cfg.data, split="val", train=False, transform=val_tf,
                                classes=train_set.classes, **common)
    else:
        train_set = build_dataset(cfg.data, split="all", train=True, transform=train_tf, **common)
        val_split = "val" if has_parts(cfg.val_data) else "all"  # its validation (test) part
        val_notice = notice and (lambda text: notice(_for_val_data(text)))
        try:
            val_set = build_dataset(cfg.val_data, split=val_split, train=False, transform=val_tf,
                                    classes=train_set.classes,
                                    **dict(common, root=cfg.val_data_root or cfg.data_root, notice=val_notice))
        except FileNotFoundError as e:
            raise FileNotFoundError(e.errno, _for_val_data(e.strerror, missing=True), e.filename) from None
        except ValueError as e:
            raise ValueError(_for_val_data(str(e))) from None
    if len(train_set.classes) < 2:
        raise ValueError(f"{cfg.data} has {len(train_set.classes)} class ({', '.join(train_set.classes)}); "
                         "a classifier needs at least 2")
    if len(val_set) == 0:
        raise ValueError(f"no validation videos: {cfg.data} has too few videos per class for "
                         f"val_fraction={cfg.val_fraction} (each class needs 2); add videos or "
                         "pass validation data (--val-data)")
    if cfg.flip is None and (why := flips_change_labels(cfg.data, train_set.classes)):
        train_tf.flip = False
        if notice:
            notice(f"note: horizontal flips are off: {why}; --flip turns them on")
    return train_set, val_set


def print_found_class_file(cfg: TrainConfig) -> None:
    """Say which class file build_datasets reads without --classes: the one beside DATA, else
    the one beside --val-data, which numbers that data's integer labels."""
    if cfg.classes:
        return
    if (found := find_class_file(cfg.data)) is not None:
        print(f"class names and numbers from {found}, found beside the data (--classes FILE to give another)")
    elif split_folder_kind(cfg.data) == "ucf101":
        print(f"class names and numbers from {Path(cfg.data) / 'classInd.txt'}, UCF101's split folder")
    elif cfg.val_data and (found := find_class_file(cfg.val_data)) is not None:
        print(f"class numbers of {cfg.val_data} from {found}, found beside it (--classes FILE to give another)")
