"""Video classification datasets decoding clips straight from video files.

Sources:

- a folder per class, ``root/<class>/<video>``; if ``root/train`` and ``root/val``
  exist they are the splits, else a deterministic stratified split is made;
- a list file with ``path label`` or TSM's ``path num_frames label`` per line, or a path
  alone (UCF101's testlist), and a class file giving the classes and the numbers that integer
  labels stand for (read by :mod:`.lists`);
- Something-Something v2's annotation JSON, HMDB51's and UCF101's split folders and
  Kinetics' annotation CSV (read by :mod:`.published`).

Layouts are validated at construction (missing/empty folders, unknown
extensions, bad lines, missing files raise with the offending path/line), but
videos are only probed lazily in ``__getitem__``. An unreadable video does not
raise there: it yields a :class:`BadSample` that :func:`collate_clips` drops and
reports in ``batch["bad"]``.
"""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from ..errors import plural, some_names, the_classes
from .files import (FRAMES_HINT, MissingVideos, VideoSample, broken_link, find_files, has_video_ext,
                    not_a_video, not_found)
from .published import read_samples, read_split_folder, split_folder_kind
from .sampling import dense_indices, dense_test_clips, segment_indices, test_clips
from .transforms import TestTransform, TrainTransform, default_scale_size
from .video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoDecodeError, VideoInfo, av_reason, not_a_video_file, read_frames

__all__ = [
    "BadSample",
    "has_split_folders",
    "has_parts",
    "scan_class_folders",
    "split_key",
    "stratified_split",
    "VideoClipDataset",
    "collate_clips",
    "build_dataset",
]


@dataclass(frozen=True)
class BadSample:
    """Marker returned by the dataset for a video that cannot be decoded."""

    path: str
    reason: str


def scan_class_folders(root: str | os.PathLike, extensions: Sequence[str] = VIDEO_EXTENSIONS,
                       classes: Sequence[str] | None = None, *,
                       missing: list | None = None) -> tuple[list[VideoSample], list[str]]:
    """Samples from ``root/<class>/**/<video>``; classes are the sorted folder names.

    Hidden files (``.*``) are ignored. Raises FileNotFoundError for a missing root, and for
    broken links and what is named like a video but is no file (a FIFO, a device, a folder named
    ``x.mp4``, which is not searched), naming the first, the next and how many; ValueError for
    an empty class folder, a file with an unknown extension, a root without class folders, or
    (when ``classes`` is given) an unknown class folder; files of other kinds among the videos
    are all named in one ValueError. Given a list ``missing``, each broken link, each such
    path and each file of another kind is appended to it as a
    :class:`~effvid.data.files.MissingVideo` instead and left out (effvid check reports them
    all; see :class:`~effvid.data.files.MissingVideos`).
    """
    root = Path(root)
    if not root.is_dir():
        raise not_found("dataset root", root)
    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not folders:
        raise ValueError(f"no class folders in {str(root)!r}")
    classes = list(classes) if classes is not None else folders
    index = {c: i for i, c in enumerate(classes)}
    samples = []
    # as a list file's missing videos: refused at start, all of them in one error
    broken = MissingVideos(missing, counted="videos in the class folders")
    links = not_files = 0  # what was noted, for the error's words
    not_videos: list[Path] = []  # files of other kinds: all named in one error, not the first alone
    for name in folders:
        if name not in index:
            raise ValueError(f"class folder {str(root / name)!r} is not one of {the_classes(classes)}")
        others: list[Path] = []
        files = find_files(root / name, others, extensions)
        # a FIFO or a device named like a video was left out without a word, and a folder named
        # x.mp4 searched: named here, as a list file's are (never opened: a FIFO's open blocks)
        named_like_videos = [p for p in others if has_video_ext(p, extensions)]
        if not files and not named_like_videos:
            raise ValueError(f"class folder {str(root / name)!r} contains no videos")
        where = f"class folder {str(root / name)!r}"
        videos = [f for f in files if has_video_ext(f, extensions)]
        others_here = [f for f in files if not has_video_ext(f, extensions)]
        if others_here and not videos and not named_like_videos and all(
                f.suffix.lower() in IMAGE_EXTENSIONS for f in others_here):
            raise ValueError(f"{where} holds images and no videos "
                             f"({some_names((repr(str(f)) for f in others_here), shown=1)}){FRAMES_HINT}")
        if missing is not None:  # effvid check: named with the rest, and the videos checked
            missing += [not_a_video(f, extensions, where) for f in others_here]
        else:
            not_videos += others_here
        not_file_paths = set(named_like_videos)
        for f in sorted(videos + named_like_videos):
            broken.listed += 1
            if (reason := broken_link(f)) is not None:  # find_files keeps them, to be reported
                broken.note(FileNotFoundError(errno.ENOENT, f"dataset: {str(f)!r} is a {reason}", str(f)), where)
                links += 1
            elif f in not_file_paths:
                what = not_a_video_file(f) or "not a video file"  # (gone since: said as best it can)
                broken.note(FileNotFoundError(errno.ENOENT, f"dataset: {str(f)!r} is {what}", str(f)), where)
                not_files += 1
            else:
                samples.append(VideoSample(str(f), index[name]))
    if not_videos:
        raise ValueError(
            f"dataset {str(root)!r}: {plural(len(not_videos), 'file')} in the class folders "
            f"{'is not a video' if len(not_videos) == 1 else 'are not videos'} (expected one of "
            f"{', '.join(extensions)}): {some_names(repr(str(f)) for f in not_videos)}; move "
            f"{'it' if len(not_videos) == 1 else 'them'} out, or hide {'it' if len(not_videos) == 1 else 'them'} "
            "(names starting with '.' are left out)")
    if links and not_files:
        broken.being = ("a broken link or not a video file", "broken links or not video files")
    elif not_files:
        broken.being = ("not a video file", "not video files")
    else:
        broken.being = ("a broken link", "broken links")
    broken.raise_if_any()
    return samples, classes


def split_key(path: str | os.PathLike, root: str | os.PathLike | None) -> str:
    """A video's name in a split: its path relative to ``root`` (DATA's folder), with ``/``
    between folders, so that a moved DATA folder, or DATA spelled absolute or relative, gives
    the same split. Without ``root``, the path as given."""
    if root is None:
        return Path(path).as_posix()
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root))).as_posix()


def _split_rank(seed: int, key: str) -> bytes:
    # a hash, not an rng drawn in turn: a video's rank depends on nothing but itself and the seed
    return hashlib.blake2b(f"{seed}/{key}".encode(), digest_size=8).digest()


def stratified_split(samples: Sequence[VideoSample], val_fraction: float = 0.2, seed: int = 0, *,
                     root: str | os.PathLike | None = None,
                     previous: Mapping[str, Sequence[str]] | None = None,
                     ) -> tuple[list[VideoSample], list[VideoSample]]:
    """Deterministic per-class split: within each class the videos are ranked by a hash of
    ``seed`` and their :func:`split_key` (the path relative to ``root``), and the first
    round(n * val_fraction) validate. Classes with >= 2 videos keep at least one on each side
    when 0 < val_fraction < 1.

    A video's side depends only on its own rank among its class's: adding or removing videos
    moves few others (an rng drawn class after class moved most of every later class).

    ``previous``: an earlier split of (mostly) the same videos, ``{"train": [keys], "val":
    [keys]}``, as a resumed run saved it. Its videos keep their sides; the videos it does not
    know fill each class's validation share in rank order, the rest train. A trained video never
    moves to validation; a validation video moves to training only when its class would
    otherwise have no training video (where a new split would give it one).

    Both lists are sorted by (label, path).
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    was_val = set(previous["val"]) if previous is not None else set()
    was_train = set(previous["train"]) if previous is not None else set()
    by_class: dict[int, list[tuple[bytes, str, VideoSample]]] = {}
    for s in samples:
        key = split_key(s.path, root)
        by_class.setdefault(s.label, []).append((_split_rank(seed, key), key, s))
    train, val = [], []
    for label in sorted(by_class):
        ranked = sorted(by_class[label])
        items = [s for _, _, s in ranked]
        keys = {s: key for _, key, s in ranked}
        n = len(items)
        n_val = int(round(n * val_fraction))
        if 0 < val_fraction < 1 and n >= 2:
            n_val = min(max(n_val, 1), n - 1)
        if previous is None:
            chosen = items[:n_val]
        else:
            kept = [s for s in items if keys[s] in was_val]
            new = [s for s in items if keys[s] not in was_val and keys[s] not in was_train]
            chosen = kept + new[:max(n_val - len(kept), 0)]
            if len(chosen) == n > n_val:  # nothing left to train on: the last ranked trains
                chosen.remove(max(chosen, key=items.index))
        chosen_set = set(chosen)
        val += [s for s in items if s in chosen_set]
        train += [s for s in items if s not in chosen_set]
    order = lambda s: (s.label, s.path)  # noqa: E731
    return sorted(train, key=order), sorted(val, key=order)


class VideoClipDataset(torch.utils.data.Dataset):
    """Clips of ``num_segments`` frames decoded on the fly.

    Item: ``{"video": float (T, 3, H, W) or (V, T, 3, H, W), "label": int, "path": str}``,
    or a :class:`BadSample` if the video cannot be decoded.

    - ``sampling="segment"``: TSN segments (random frame per segment when training,
      centres otherwise); ``"dense"``: ``window``-frame span with stride window/T.
    - Test-time multi-view: ``num_clips`` clips (``twice`` adds segment starts for
      segment sampling) x the transform's crops, stacked as V = clips x crops views
      (clip-major). A single clip and single crop gives (T, 3, H, W).
    - ``transform``: called as ``transform(clip_uint8_THWC, rng)``; default
      :class:`TrainTransform` (train) / :class:`TestTransform` (test) at ``size``.
    - Randomness: a per-item numpy generator. After :meth:`set_epoch` it is seeded by (seed,
      epoch, index) alone, so the draws do not depend on the DataLoader workers (a run resumed
      with other ``--workers`` draws what the uninterrupted run did); before, from torch's RNG
      (``torch.manual_seed`` makes it reproducible, and DataLoader workers differ).
    """

    def __init__(self, samples: Sequence[VideoSample | tuple], classes: Sequence[str],
                 num_segments: int = 8, train: bool = True, transform: Callable | None = None,
                 sampling: str = "segment", window: int = 64, num_clips: int = 1,
                 twice: bool = False, size: int = 224, flip: bool = True):
        if sampling not in ("segment", "dense"):
            raise ValueError(f"sampling must be 'segment' or 'dense', got {sampling!r}")
        if twice and sampling != "segment":
            raise ValueError("twice (a second clip at the segment starts) needs segment sampling")
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        self.samples = [s if isinstance(s, VideoSample) else VideoSample(*s) for s in samples]
        self.classes = list(classes)
        for s in self.samples:
            if not 0 <= s.label < len(self.classes):
                raise ValueError(f"label {s.label} of {s.path!r} out of range for {len(self.classes)} classes")
        self.num_segments, self.train, self.sampling = num_segments, train, sampling
        self.window, self.num_clips, self.twice = window, num_clips, twice
        if transform is None:
            transform = TrainTransform(size, flip=flip) if train else TestTransform(size, default_scale_size(size))
        self.transform = transform
        # each video's probe, kept per process (a second epoch opens the file once, not twice);
        # effvid check reads it for the frame counts
        self.probed: dict[str, VideoInfo] = {}
        # set to {} to keep read_frames' stats of each video read, by path (effvid check
        # learns from them which videos end before their header says)
        self.read_stats: dict[str, dict] | None = None
        self.epoch_key: tuple[int, int] | None = None  # set_epoch's (seed, epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int, seed: int = 0) -> None:
        """Seed each item's random draws (frames, crop, flip) by (``seed``, ``epoch``, index):
        with torch's RNG, which differs per worker, and with no workers is the training
        process's own (dropout's too), other --workers drew other clips."""
        self.epoch_key = (seed, epoch)

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def clip_indices(self, num_frames: int, rng) -> list[list[int]]:
        """Frame indices of each clip for a video of ``num_frames`` frames."""
        t = self.num_segments
        if self.sampling == "segment":
            if self.train:
                return [segment_indices(num_frames, t, True, rng)]
            return test_clips(num_frames, t, self.num_clips, self.twice)
        if self.train:
            return [dense_indices(num_frames, t, self.window, True, rng)]
        return dense_test_clips(num_frames, t, self.window, self.num_clips)

    def __getitem__(self, i: int):
        sample = self.samples[i]
        if self.epoch_key is not None:
            rng = np.random.default_rng([*self.epoch_key, i])
        else:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        clips: list[list[int]] = []

        def choose(info: VideoInfo) -> list[int]:  # called once the file is open and probed
            self.probed[sample.path] = info
            clips.extend(self.clip_indices(info.num_frames, rng))
            return [j for c in clips for j in c]

        try:
            # one opening of the file: probe (unless cached), then one pass for all clips
            stats = {} if self.read_stats is not None else None
            frames = read_frames(sample.path, choose, self.probed.get(sample.path), stats=stats)
            if stats is not None:
                self.read_stats[sample.path] = stats
        except (VideoDecodeError, OSError) as e:
            # the reason alone: reports print it beside the path, which str(e) repeated
            return BadSample(sample.path, e.reason if isinstance(e, VideoDecodeError) else av_reason(e))
        views = []
        for clip in frames.split(self.num_segments):  # the clips' frames, one after another
            v = self.transform(clip, rng)
            views.append(v if v.ndim == 5 else v.unsqueeze(0))
        video = torch.cat(views) if len(views) > 1 or views[0].shape[0] > 1 else views[0][0]
        return {"video": video, "label": sample.label, "path": sample.path}


def collate_clips(batch: Sequence) -> dict:
    """DataLoader ``collate_fn``: stack good items, drop and report :class:`BadSample` markers.

    Returns ``{"video": (B, ...), "label": int64 (B,), "path": [str], "bad": [(path, reason)]}``.
    If every item is bad, ``video`` is an empty float tensor of shape (0,) and ``label``
    an empty int64 tensor; check ``batch["video"].shape[0] == 0`` and skip the step.
    """
    good = [b for b in batch if not isinstance(b, BadSample)]
    bad = [(b.path, b.reason) for b in batch if isinstance(b, BadSample)]
    if not good:
        return {"video": torch.empty(0), "label": torch.empty(0, dtype=torch.long), "path": [], "bad": bad}
    return {
        "video": torch.stack([b["video"] for b in good]),
        "label": torch.tensor([int(b["label"]) for b in good], dtype=torch.long),
        "path": [b["path"] for b in good],
        "bad": bad,
    }


def has_split_folders(folder: Path) -> bool:
    """Whether ``folder`` holds ``train/`` and ``val/`` splits of class folders. A ``train/``
    without ``val/`` is refused: it would otherwise be read as a class named "train"."""
    if (folder / "train").is_dir() and (folder / "val").is_dir():
        return True
    if (folder / "train").is_dir():
        other = next((n for n in ("test", "valid", "validation") if (folder / n).is_dir()), None)
        hint = (f"; to validate on {str(folder / other)!r}, pass it as the validation data "
                f"(--val-data)" if other else "")
        raise ValueError(f"{str(folder)!r} has a train/ folder but no val/ folder: add val/, or "
                         f"point at {str(folder / 'train')!r} to split it{hint}")
    return False


def has_parts(source: str | os.PathLike) -> bool:
    """Whether DATA brings its own training and validation parts: a folder with ``train/`` and
    ``val/`` (:func:`has_split_folders`), or HMDB51's / UCF101's split folder (whose test part
    validates). :func:`build_dataset` gives them for ``split="train"`` and ``"val"``."""
    src = Path(source)
    return src.is_dir() and (split_folder_kind(src) is not None or has_split_folders(src))


def build_dataset(source: str | os.PathLike, split: str = "train", num_segments: int = 8,
                  train: bool | None = None, transform: Callable | None = None,
                  sampling: str = "segment", *, root: str | os.PathLike | None = None,
                  classes: Sequence[str] | None = None, val_fraction: float = 0.2, seed: int = 0,
                  class_numbers: Mapping[int, str] | None = None, official_split: int = 1,
                  notice: Callable[[str], None] | None = None, missing: list | None = None,
                  **kwargs) -> VideoClipDataset:
    """Build a :class:`VideoClipDataset` from a class-folder root, a split folder, a list file or an
    annotation file.

    - split folder of HMDB51 or UCF101 (:func:`read_split_folder`): the training part of their
      split ``official_split``, or its test part for ``split="val"``;
    - folder with ``train/`` and ``val/``: uses ``source/<split>`` (``"all"``: ``train/``);
      classes come from ``train/`` (so both splits share label ids);
    - other folder: class folders directly under ``source``, stratified
      ``val_fraction`` split with ``seed``, or all of them for ``split="all"``;
    - file: a list file, Something-Something's annotation JSON or Kinetics' CSV (the whole
      file, whatever the split, see :func:`read_samples`, which tells ``notice`` of videos it
      skipped); ``root`` resolves relative paths.

    A list's (a file's or a split folder's) videos that are not there raise; given a list
    ``missing``, they are appended to it as :class:`~effvid.data.files.MissingVideo` records and
    left out (:func:`read_list_file`).

    ``class_numbers`` (a class file's, :func:`read_class_file`) gives the classes when
    ``classes`` is None, and what integer labels stand for. ``train`` defaults to
    ``split != "val"``; other kwargs go to VideoClipDataset.
    """
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
    train = (split != "val") if train is None else train
    src = Path(source)
    if classes is None and class_numbers is not None:
        classes = list(class_numbers.values())
    if src.is_file():
        samples, classes = read_samples(src, root=root, classes=classes, class_numbers=class_numbers,
                                        notice=notice, missing=missing)
    elif src.is_dir():
        if split_folder_kind(src) is not None:  # HMDB51's or UCF101's published splits
            samples, classes = read_split_folder(src, "test" if split == "val" else "train",
                                                 official_split, root=root, classes=classes,
                                                 notice=notice, missing=missing)
        elif has_split_folders(src):
            if classes is None:  # its broken links are the train part's, noted there
                _, classes = scan_class_folders(src / "train", missing=None if missing is None else [])
            samples, classes = scan_class_folders(src / ("val" if split == "val" else "train"),
                                                  classes=classes, missing=missing)
        else:
            everything, classes = scan_class_folders(src, classes=classes, missing=missing)
            tr, va = (stratified_split(everything, val_fraction, seed, root=src) if split != "all"
                      else (everything, []))
            samples = va if split == "val" else tr
    else:
        raise not_found("dataset source", src)
    return VideoClipDataset(samples, classes, num_segments, train, transform, sampling, **kwargs)
