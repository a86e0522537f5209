"""Video classification datasets decoding clips straight from video files.

Sources:

- a folder per class, ``root/<class>/<video>``; if ``root/train`` and ``root/val``
  exist they are the splits, else a deterministic stratified split is made;
- a list file with ``path label`` or TSM's ``path num_frames label`` per line
  (label: int or class name; ``#`` comments and blank lines allowed; relative
  paths resolved against ``root``, default the list's folder), or a path alone
  (UCF101's testlist), whose first folder names the class;
- Something-Something v2's annotation JSON (``train.json``, ``validation.json``);
- Kinetics' annotation CSV (``train.csv``, ``validate.csv``), whose videos missing from the
  download (deleted from YouTube) are skipped and counted;
- a class file (one name per line, UCF101's ``classInd.txt``, Something-Something's
  ``labels.json``) giving the classes and the numbers that integer labels stand for.

Layouts are validated at construction (missing/empty folders, unknown
extensions, bad lines, missing files raise with the offending path/line), but
videos are only probed lazily in ``__getitem__``. An unreadable video does not
raise there: it yields a :class:`BadSample` that :func:`collate_clips` drops and
reports in ``batch["bad"]``.
"""

from __future__ import annotations

import collections
import csv
import errno
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np
import torch

from ..errors import plural, some_names
from .sampling import dense_indices, dense_test_clips, segment_indices, test_clips
from .transforms import TestTransform, TrainTransform, default_scale_size
from .video import VIDEO_EXTENSIONS, VideoDecodeError, VideoInfo, av_reason, not_a_video_file, read_frames

__all__ = [
    "VideoSample",
    "BadSample",
    "find_files",
    "has_split_folders",
    "has_parts",
    "scan_class_folders",
    "read_list_file",
    "read_class_file",
    "find_class_file",
    "read_something_annotations",
    "read_kinetics_annotations",
    "read_samples",
    "is_something_annotations",
    "split_key",
    "stratified_split",
    "VideoClipDataset",
    "collate_clips",
    "build_dataset",
]


class VideoSample(NamedTuple):
    path: str
    label: int
    num_frames: int | None = None  # from a TSM list; informational only (refers to extracted frames)


@dataclass(frozen=True)
class BadSample:
    """Marker returned by the dataset for a video that cannot be decoded."""

    path: str
    reason: str


def _has_video_ext(path: str | Path, extensions: Sequence[str]) -> bool:
    return Path(path).suffix.lower() in extensions


_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_FRAMES_HINT = "; effvid decodes video files, not folders of extracted frames: point it at the videos themselves"


def _check_ext(path: Path, where: str, extensions: Sequence[str]) -> None:
    if _has_video_ext(path, extensions):
        return
    hint = ""
    # the lists made for the original TSM code name folders of extracted frames (there, or
    # not extracted on this machine: a path without an extension), or the frames themselves
    if path.is_dir() or path.suffix.lower() in _IMAGE_EXTENSIONS or (not path.suffix and not path.exists()):
        hint = _FRAMES_HINT
    raise ValueError(f"{where}: unsupported video extension {path.suffix!r} for {str(path)!r} "
                     f"(expected one of {', '.join(extensions)}){hint}")


def _file_or_broken_link(path: str) -> bool:
    return os.path.isfile(path) or (os.path.islink(path) and not os.path.exists(path))


def find_files(folder: str | os.PathLike, others: list | None = None,
               extensions: Sequence[str] = ()) -> list[Path]:
    """Every file under ``folder``, sorted; hidden files and folders (``.*``) are left out.

    Symlinked folders are followed (``Path.rglob`` does not follow them before Python 3.13,
    which silently dropped the videos of a linked class folder), each real folder once.
    Broken links are kept, for the caller to report: leaving them out made the videos of a
    link farm whose targets moved vanish without a word.

    Given a list ``others``, what is there but is no file is added to it, sorted, for the caller
    to report: a FIFO, a device or a socket (never opened: a FIFO's open waits for a writer), and
    a folder named like a video (one of ``extensions``), which is not searched. Without it they
    are left out, and every folder is searched.
    """
    found, seen, not_files = [], set(), []
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # a link back up the tree: do not loop
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if others is not None:
            not_files += [Path(top, d) for d in dirs if _has_video_ext(d, extensions)]
            dirs[:] = [d for d in dirs if not _has_video_ext(d, extensions)]
        for f in files:
            if not f.startswith("."):
                (found if _file_or_broken_link(os.path.join(top, f)) else not_files).append(Path(top, f))
    if others is not None:
        others += sorted(not_files)
    return sorted(found)


def broken_link(path: str | os.PathLike) -> str | None:
    """"broken link to TARGET" for a symbolic link whose target is not there, else None."""
    if os.path.islink(path) and not os.path.exists(path):
        return f"broken link to {os.readlink(path)}"
    return None


def not_found(what: str, path: str | os.PathLike) -> FileNotFoundError:
    """The error for ``what`` ("list file") not at ``path``; a broken link is named with its
    target, as a class folder's are: a list file that was a broken link said "not found"."""
    link = broken_link(path)
    said = f"{what} {str(path)!r} is a {link}" if link else f"{what} not found: {str(path)!r}"
    return FileNotFoundError(errno.ENOENT, said, str(path))


def scan_class_folders(root: str | os.PathLike, extensions: Sequence[str] = VIDEO_EXTENSIONS,
                       classes: Sequence[str] | None = None, *,
                       missing: list | None = None) -> tuple[list[VideoSample], list[str]]:
    """Samples from ``root/<class>/**/<video>``; classes are the sorted folder names.

    Hidden files (``.*``) are ignored. Raises FileNotFoundError for a missing root, and for
    broken links and what is named like a video but is no file (a FIFO, a device, a folder named
    ``x.mp4``, which is not searched), naming the first, the next and how many; ValueError for
    an empty class folder, a file with an unknown extension, a root without class folders, or
    (when ``classes`` is given) an unknown class folder; files of other kinds among the videos
    are all named in one ValueError. Given a list ``missing``, each broken link and each such
    path is appended to it as ``(path, where, None)`` instead and left out (effvid check reports
    them all; see :class:`_MissingVideos`).
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
    broken = _MissingVideos(missing, counted="videos in the class folders")
    links = not_files = 0  # what was noted, for the error's words
    not_videos: list[Path] = []  # files of other kinds: all named in one error, not the first alone
    for name in folders:
        if name not in index:
            raise ValueError(f"class folder {str(root / name)!r} is not one of the {len(classes)} "
                             f"classes ({some_names(classes)})")
        others: list[Path] = []
        files = find_files(root / name, others, extensions)
        # a FIFO or a device named like a video was left out without a word, and a folder named
        # x.mp4 searched: named here, as a list file's are (never opened: a FIFO's open blocks)
        named_like_videos = [p for p in others if _has_video_ext(p, extensions)]
        if not files and not named_like_videos:
            raise ValueError(f"class folder {str(root / name)!r} contains no videos")
        where = f"class folder {str(root / name)!r}"
        videos = [f for f in files if _has_video_ext(f, extensions)]
        others_here = [f for f in files if not _has_video_ext(f, extensions)]
        if others_here and not videos and not named_like_videos and all(
                f.suffix.lower() in _IMAGE_EXTENSIONS for f in others_here):
            raise ValueError(f"{where} holds images and no videos "
                             f"({some_names((repr(str(f)) for f in others_here), shown=1)}){_FRAMES_HINT}")
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


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


def _check_fields(path: str, line: str, where: str, extensions: Sequence[str]) -> None:
    """A line whose fields after the video are not ``label`` or ``num_frames label`` leaves some
    in the path, and the error would be about an extension ".mp4 air"; say what happened."""
    if _has_video_ext(path, extensions):
        return
    # The video ends at the last extension followed by a space. Searched once, in ``path``
    # itself (a prefix of ``line``): positions in a lowered copy were off wherever lower()
    # lengthens a character ("İ"), and the error fell back to the extension ".mp4 air".
    ends = [m.end() for m in re.finditer("(?:" + "|".join(map(re.escape, extensions)) + r")(?=\s)",
                                         path, re.IGNORECASE) if m.start() > 0]
    if not ends:
        return
    fields = line[ends[-1]:].split()
    if any(f.startswith("#") for f in fields):
        raise ValueError(f"{where}: a comment must be a line of its own (starting with #)")
    if all(_is_int(f) for f in fields):  # e.g. a multi-label line "x.mp4 3 17 52"
        raise ValueError(f"{where}: {len(fields)} numbers after the video; expected "
                         "'path label' or 'path num_frames label' (one label per video)")
    name = " ".join(fields[1:] if _is_int(fields[0]) else fields)
    raise ValueError(f"{where}: the label is the last word of a line, so the class name "
                     f"{name!r} cannot contain spaces: write it as "
                     f"{name.replace(' ', '_')!r} or use integer labels")


def _read_text(path: Path, what: str) -> str:
    try:  # utf-8-sig: a byte-order mark (Windows editors) is not part of the first line
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{what} {str(path)!r} is not UTF-8 text ({e})") from e


def _folder_above(path: Path) -> Path:
    """The folder that holds ``path``: ``..`` for ``.``, whose ``Path.parent`` is ``.`` itself
    (a command run inside the split folder or beside the CSV looked for the videos there)."""
    return Path(os.path.normpath(os.path.join(path, os.pardir)))


# a class file's "number name" line (UCF101's classInd.txt: "1 ApplyEyeMakeup")
_NUMBERED_CLASS = re.compile(r"(\d+)\s+(\S.*)")


def read_class_file(path: str | os.PathLike) -> dict[int, str]:
    """The classes of a class file, ``{number: name}`` in number order (the names in that
    order are the model's classes; integer labels in list files are these numbers):

    - one class name per line (names may contain spaces), numbered 0, 1, ... in line order;
    - ``number name`` lines, numbered from 0 or 1 without gaps, as UCF101's ``classInd.txt``
      (``1 ApplyEyeMakeup`` ... ``101 YoYo``); the first line decides which of the two a file is;
    - a ``.json`` file: Something-Something's ``labels.json`` (``{"name": "number", ...}``,
      numbered from 0), or a list of names.

    Blank lines and ``#`` comments are skipped. A repeated number or name, a gap in the numbers
    or an empty file raises ValueError naming the file and the line (the entry, for JSON).
    """
    path = Path(path)
    if not path.is_file():
        raise not_found("class file", path)
    text = _read_text(path, "class file")
    if path.suffix.lower() == ".json":
        return _read_json_class_file(path, text)
    lines = [(k, raw.strip()) for k, raw in enumerate(text.splitlines(), 1)]
    lines = [(k, line) for k, line in lines if line and not line.startswith("#")]
    if not lines:
        raise ValueError(f"class file {str(path)!r} names no classes")
    numbered = _NUMBERED_CLASS.fullmatch(lines[0][1]) is not None
    numbers: dict[int, str] = {}
    line_of_number: dict[int, int] = {}
    line_of_name: dict[str, int] = {}
    for position, (lineno, line) in enumerate(lines):
        where = f"class file {str(path)!r} line {lineno}"
        if numbered:
            m = _NUMBERED_CLASS.fullmatch(line)
            if m is None:
                raise ValueError(f"{where}: expected 'number name' like line {lines[0][0]}, got {line!r}")
            number, name = int(m.group(1)), m.group(2)
        else:
            number, name = position, line
        if number in numbers:
            raise ValueError(f"{where}: number {number} is already class {numbers[number]!r} "
                             f"(line {line_of_number[number]})")
        if name in line_of_name:
            raise ValueError(f"{where}: class {name!r} repeats line {line_of_name[name]}")
        numbers[number], line_of_number[number], line_of_name[name] = name, lineno, lineno
    first = min(numbers)
    if first not in (0, 1):
        raise ValueError(f"class file {str(path)!r} line {line_of_number[first]}: the numbers start "
                         f"at {first}; expected 0 or 1")
    missing = next((k for k in range(first, first + len(numbers)) if k not in numbers), None)
    if missing is not None:
        after = min(k for k in numbers if k > missing)
        raise ValueError(f"class file {str(path)!r} line {line_of_number[after]}: number {after}, "
                         f"but no class is numbered {missing} (the numbers must have no gaps)")
    return dict(sorted(numbers.items()))


def _read_json_class_file(path: Path, text: str) -> dict[int, str]:
    def no_repeated_names(pairs):  # json.loads keeps the last of two equal keys without a word
        seen = set()
        for name, _ in pairs:
            if name in seen:
                raise ValueError(f"class file {str(path)!r}: class {name!r} appears twice")
            seen.add(name)
        return dict(pairs)

    try:
        data = json.loads(text, object_pairs_hook=no_repeated_names)
    except json.JSONDecodeError as e:
        raise ValueError(f"class file {str(path)!r} is not valid JSON: {e}") from e
    if isinstance(data, list) and all(isinstance(name, str) for name in data):
        data = no_repeated_names([(name, k) for k, name in enumerate(data)])
    if not isinstance(data, dict) or not data:
        raise ValueError(f"class file {str(path)!r} must hold a JSON object of class name -> "
                         "number (as Something-Something's labels.json) or a list of names")
    numbers: dict[int, str] = {}
    for name, number in data.items():
        where = f"class file {str(path)!r}, class {name!r}"
        if isinstance(number, bool) or not (isinstance(number, int) or
                                            (isinstance(number, str) and number.strip().isdigit())):
            raise ValueError(f"{where}: its number {number!r} is not a whole number")
        number = int(number)
        if number in numbers:
            raise ValueError(f"{where}: number {number} is already class {numbers[number]!r}")
        numbers[number] = name
    missing = next((k for k in range(len(numbers)) if k not in numbers), None)
    if missing is not None:
        raise ValueError(f"class file {str(path)!r}: no class is numbered {missing} (the numbers "
                         f"must be 0..{len(numbers) - 1})")
    return dict(sorted(numbers.items()))


def find_class_file(source: str | os.PathLike) -> Path | None:
    """The class file a dataset publishes beside its annotation files, if there: ``labels.json``
    beside Something-Something's ``train.json``, UCF101's ``classInd.txt`` beside a list file."""
    source = Path(source)
    if not source.is_file():
        return None
    found = source.parent / ("labels.json" if source.suffix.lower() == ".json" else "classInd.txt")
    return found if found.is_file() and found.name != source.name else None


def _class_of_path(path: str, index: Mapping[str, int], where: str) -> int:
    """The class of a line without a label (UCF101's testlist): the first folder of its path."""
    parts = Path(path).parts
    if Path(path).is_absolute() or len(parts) < 2:
        raise ValueError(f"{where}: {path!r} has no label, and no relative folder to take the "
                         f"class from: write 'path label', or 'class/video' relative to the root")
    if parts[0] not in index:
        raise ValueError(f"{where}: {path!r} has no label, and its first folder {parts[0]!r} is "
                         f"not one of the {len(index)} classes")
    return index[parts[0]]


def _numbered_class(number: int, class_numbers: Mapping[int, str], index: Mapping[str, int],
                    where: str) -> int:
    if number not in class_numbers:
        raise ValueError(f"{where}: label {number} is not a class number: the class file numbers "
                         f"its {len(class_numbers)} classes {min(class_numbers)}..{max(class_numbers)}")
    name = class_numbers[number]
    if name not in index:
        raise ValueError(f"{where}: label {number} is class {name!r}, which is not one of the "
                         f"{len(index)} classes")
    return index[name]


def _video_path(path: str, base: Path, where: str, extensions: Sequence[str]) -> str:
    p = Path(path)
    if not p.is_absolute():
        p = base / p
    _check_ext(p, where, extensions)
    if not p.is_file():  # a broken link said "video not found", naming no target
        what = not_a_video_file(p) or (f"a {link}" if (link := broken_link(p)) else None)
        raise FileNotFoundError(errno.ENOENT, f"{where}: {str(p)!r} is {what}" if what else
                                f"{where}: video not found: {str(p)!r}", str(p))
    return str(p)


class _MissingVideos:
    """The listed videos that are not there. A reader notes each one and raises once, at its
    end, for all of them: a list with 300 missing files stopped at the first, and a run per
    missing file found the next. Given a list (``missing``, effvid check's), it does not raise
    but appends ``(path, where, None)`` for each, and the reader goes on without them (the
    third item is a reason a reader may know beyond "not there")."""

    def __init__(self, missing: list | None = None, counted: str = "listed videos",
                 being: tuple[str, str] = ("missing", "missing")) -> None:
        self.errors: list[tuple[FileNotFoundError, str]] = []  # (error, where)
        self.listed = 0  # the videos looked for
        self.missing = missing
        self.counted, self.being = counted, being  # the error's words: "listed videos", "missing"

    def note(self, error: FileNotFoundError, where: str) -> None:
        """A video that is not there; ``error`` names it."""
        self.errors.append((error, where))

    def path(self, path: str, base: Path, where: str, extensions: Sequence[str]) -> str | None:
        """:func:`_video_path`, or None for a video that is not there (noted)."""
        self.listed += 1
        try:
            return _video_path(path, base, where, extensions)
        except FileNotFoundError as e:
            self.note(e, where)
            return None

    def raise_if_any(self) -> None:
        """The first missing video's error, with how many more there are and the next one; or,
        with a ``missing`` list, every missing video added to it."""
        if self.missing is not None:
            self.missing += [(e.filename, where, None) for e, where in self.errors]
            return
        if not self.errors:
            return
        first, more = self.errors[0][0], len(self.errors) - 1
        message = first.strerror + (f"; {more:,} more of the {self.listed:,} {self.counted} "
                                    f"{'is ' + self.being[0] if more == 1 else 'are ' + self.being[1]} "
                                    f"too (the next: {self.errors[1][0].strerror})" if more else "")
        raise FileNotFoundError(errno.ENOENT, message, first.filename)


def read_list_file(list_path: str | os.PathLike, root: str | os.PathLike | None = None,
                   classes: Sequence[str] | None = None,
                   extensions: Sequence[str] = VIDEO_EXTENSIONS, *,
                   class_numbers: Mapping[int, str] | None = None,
                   missing: list | None = None) -> tuple[list[VideoSample], list[str]]:
    """Parse a list file into samples and the class list.

    Class names: ``classes`` if given; else those of ``class_numbers`` (a class file's
    ``{number: name}``, see :func:`read_class_file`) in number order; else, if labels are
    names, their sorted set; else (int labels) ``["0", ..., str(max)]``. With classes known,
    labels are class names when every label in the file is one (classes named "0".."10" sort
    as text, so label "2" is class "2", not ``classes[2]``); otherwise integers are the class
    file's numbers (UCF101's classInd.txt: label 1 is its class 1), or without one indices into
    ``classes``. A line with a path alone (UCF101's testlist) is of the class its first folder
    names, which needs the classes known. Paths may contain spaces (the label, and TSM's frame
    count, are taken from the end of the line).

    A listed video that is not there raises FileNotFoundError, naming the first, the next and
    how many; given a list ``missing``, each is appended to it as ``(path, where, None)``
    instead and left out (effvid check reports them all).
    """
    list_path = Path(list_path)
    if not list_path.is_file():
        raise not_found("list file", list_path)
    base = Path(root) if root is not None else list_path.parent
    parsed: list[tuple[int, str, str | None, int | None]] = []
    text = _read_text(list_path, "list file")
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{str(list_path)!r} line {lineno}"
        if _has_video_ext(line, extensions):  # a path alone (UCF101's testlist)
            parsed.append((lineno, line, None, None))
            continue
        parts = line.rsplit(None, 2)
        if len(parts) == 3 and _is_int(parts[1]) and (_is_int(parts[2]) or _has_video_ext(parts[0], extensions)):
            # TSM: path num_frames label; the label may be a class name, as in 'path label'
            # (the path ends in a video extension, so the number cannot be part of it)
            path, nf, label = parts[0], int(parts[1]), parts[2]
        else:
            parts = line.rsplit(None, 1)
            if len(parts) != 2:
                raise ValueError(f"{where}: cannot parse {raw!r} (expected 'path label' "
                                 f"or 'path num_frames label')")
            path, nf, label = parts[0], None, parts[1]
        _check_fields(path, line, where, extensions)
        parsed.append((lineno, path, label, nf))
    if not parsed:
        raise ValueError(f"list file {str(list_path)!r} has no samples")

    if classes is None and class_numbers is not None:
        classes = list(class_numbers.values())
    labelled = [(lineno, lb) for lineno, _, lb, _ in parsed if lb is not None]
    if classes is None:
        if len(labelled) < len(parsed):
            lineno, path = next((lineno, path) for lineno, path, lb, _ in parsed if lb is None)
            raise ValueError(f"{str(list_path)!r} line {lineno}: {path!r} has no label: write "
                             f"'path label', or give the classes (a class file such as UCF101's "
                             f"classInd.txt: --classes) so that its first folder names its class")
        int_labels = [_is_int(lb) for _, lb in labelled]
        if all(int_labels):
            classes = [str(i) for i in range(max(int(lb) for _, lb in labelled) + 1)]
        elif not any(int_labels):
            classes = sorted({lb for _, lb in labelled})
        else:
            lineno = labelled[int_labels.index(not int_labels[0])][0]
            raise ValueError(f"{str(list_path)!r} line {lineno}: labels mix class names and "
                             f"integers; use class names on every line or integers on every line")
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    # Classes named by numbers (folders "0".."10", sorted as text: "0", "1", "10", "2", ...):
    # a list whose every label names a class means those classes, not indices, else label
    # "2" would silently be class "10". Decided once per file, so lines cannot mix the two.
    by_name = all(lb in index for _, lb in labelled)
    samples, not_there = [], _MissingVideos(missing)
    for lineno, path, label, nf in parsed:
        where = f"{str(list_path)!r} line {lineno}"
        if label is None:
            y = _class_of_path(path, index, where)
        elif by_name:
            y = index[label]
        elif _is_int(label) and class_numbers is not None:
            y = _numbered_class(int(label), class_numbers, index, where)
        elif _is_int(label):
            y = int(label)
            if not 0 <= y < len(classes):
                raise ValueError(f"{where}: label {y} out of range for {len(classes)} classes")
        elif label in index:
            y = index[label]
        else:
            raise ValueError(f"{where}: unknown class {label!r}")
        if (video := not_there.path(path, base, where, extensions)) is not None:
            samples.append(VideoSample(video, y, nf))
    not_there.raise_if_any()
    return samples, classes


def read_something_annotations(annotation_path: str | os.PathLike, root: str | os.PathLike | None = None,
                               classes: Sequence[str] | None = None,
                               extensions: Sequence[str] = VIDEO_EXTENSIONS, *,
                               class_numbers: Mapping[int, str] | None = None,
                               missing: list | None = None) -> tuple[list[VideoSample], list[str]]:
    """Samples from Something-Something v2's ``train.json`` or ``validation.json``: a list of
    ``{"id": "78687", "template": "Holding [something] next to [something]", ...}``.

    The video is ``root/<id>.webm`` (``root``: default the JSON's folder; a video converted to
    another container, ``<id>.mp4``, is found too). The class is the template without its
    brackets ("Holding something next to something"), as ``labels.json`` names it; the classes
    are ``classes`` or ``class_numbers`` (labels.json read by :func:`read_class_file`), one of
    which is needed. A bad entry, a template that is not a class or a missing video raises,
    naming the entry (missing videos: see ``missing`` in :func:`read_list_file`).
    """
    annotation_path = Path(annotation_path)
    if not annotation_path.is_file():
        raise not_found("annotation file", annotation_path)
    name = f"annotation file {str(annotation_path)!r}"
    try:
        entries = json.loads(_read_text(annotation_path, "annotation file"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{name} is not valid JSON: {e}") from e
    if isinstance(entries, dict):
        raise ValueError(f"{name} holds a JSON object, not a list of videos: a class file such as "
                         "labels.json goes to --classes, and train.json or validation.json is the data")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{name} must hold a non-empty list of videos "
                         '({"id": ..., "template": ...}, as Something-Something v2\'s train.json)')
    if classes is None and class_numbers is not None:
        classes = list(class_numbers.values())
    if classes is None:
        raise ValueError(f"{name}: its videos are labelled by template, and the class numbers are "
                         "in labels.json: put it beside the annotation file, or pass it (--classes)")
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    base = Path(root) if root is not None else annotation_path.parent
    others = [e for e in extensions if e != ".webm"]
    samples, not_there = [], _MissingVideos(missing)
    entry_of_id: dict[str, int] = {}
    for k, entry in enumerate(entries):
        video_id = entry.get("id") if isinstance(entry, dict) else None
        where = f"{name} entry {k}" + (f" (id {video_id!r})" if video_id is not None else "")
        if not isinstance(video_id, (str, int)) or isinstance(video_id, bool) or str(video_id) == "":
            raise ValueError(f"{where}: expected an object with an \"id\" and a \"template\", "
                             f"got {json.dumps(entry)[:200]}")
        if str(video_id) in entry_of_id:  # one video counted twice, perhaps with two classes
            raise ValueError(f"{where}: the id of entry {entry_of_id[str(video_id)]} again")
        entry_of_id[str(video_id)] = k
        template = entry.get("template")
        if not isinstance(template, str):
            raise ValueError(f"{where}: no \"template\" (the class): a file without labels, such "
                             "as the test set's, cannot be trained or evaluated on")
        label = template.replace("[", "").replace("]", "")
        if label not in index:
            raise ValueError(f"{where}: class {label!r} is not one of the {len(classes)} classes")
        video = f"{video_id}.webm"
        if not (base / video).is_file():  # converted videos: the same id, another container
            video = next((f"{video_id}{e}" for e in others if (base / f"{video_id}{e}").is_file()), video)
        if (found := not_there.path(video, base, where, extensions)) is not None:
            samples.append(VideoSample(found, index[label]))
    not_there.raise_if_any()
    return samples, classes


HMDB51_SPLIT_IDS = {"1": "train", "2": "test", "0": None}  # 0: in neither part of that split


def _hmdb51_split_files(folder: Path, number: str) -> list[Path]:
    """``<class>_test_split<number>.txt`` in ``folder``, sorted; hidden files are left out (the
    ``._brush_hair_test_split1.txt`` that macOS leaves beside each file would be a class)."""
    return sorted(f for f in folder.glob(f"*_test_split{number}.txt") if not f.name.startswith("."))


def split_folder_kind(folder: str | os.PathLike) -> str | None:
    """``"hmdb51"`` for a folder of HMDB51's split files (``testTrainMulti_7030_splits``:
    ``<class>_test_split<N>.txt``), ``"ucf101"`` for UCF101's ``ucfTrainTestlist`` (``classInd.txt``,
    ``trainlist0<N>.txt``, ``testlist0<N>.txt``), else None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    if _hmdb51_split_files(folder, "[123]"):
        return "hmdb51"
    if (folder / "classInd.txt").is_file() and next(folder.glob("trainlist0[123].txt"), None) is not None:
        return "ucf101"
    return None


def read_split_folder(folder: str | os.PathLike, part: str, number: int = 1,
                      root: str | os.PathLike | None = None, classes: Sequence[str] | None = None,
                      extensions: Sequence[str] = VIDEO_EXTENSIONS, *,
                      missing: list | None = None) -> tuple[list[VideoSample], list[str]]:
    """The ``part`` (``"train"`` or ``"test"``) of the published split ``number`` (1, 2 or 3) of a
    split folder (:func:`split_folder_kind`), and the classes.

    - HMDB51: ``<class>_test_split<N>.txt`` has a line ``<video> <id>`` for each video of the
      class, id 1 for training, 2 for testing, 0 for neither. The classes are the files' class
      names, sorted; the videos are ``root/<class>/<video>``.
    - UCF101: ``trainlist0<N>.txt`` or ``testlist0<N>.txt``, read as list files with the folder's
      ``classInd.txt`` (:func:`read_list_file`); the videos are ``root/<Class>/<video>``.

    ``root`` defaults to the folder's parent, or to ``UCF-101`` beside the folder when that
    exists (the archives unpack side by side). ``classes`` (a checkpoint's) must include every
    class of the files. Bad lines and missing videos raise, naming the file and line (missing
    videos: see ``missing`` in :func:`read_list_file`)."""
    folder = Path(folder)
    kind = split_folder_kind(folder)
    if kind is None:
        raise ValueError(f"{str(folder)!r} is not a split folder: expected HMDB51's "
                         "<class>_test_split1.txt files or UCF101's classInd.txt and trainlist01.txt")
    if part not in ("train", "test"):
        raise ValueError(f"part must be 'train' or 'test', got {part!r}")
    if isinstance(number, bool) or number not in (1, 2, 3):
        raise ValueError(f"bad split number {number!r}: {kind.upper()} publishes splits 1, 2 and 3")
    above = _folder_above(folder)
    if kind == "ucf101":
        base = Path(root) if root is not None else (
            above / "UCF-101" if (above / "UCF-101").is_dir() else above)
        list_file = folder / f"{'trainlist' if part == 'train' else 'testlist'}0{number}.txt"
        if not list_file.is_file():
            raise FileNotFoundError(errno.ENOENT, f"UCF101 split {number} has no {part} list", str(list_file))
        numbers = read_class_file(folder / "classInd.txt")
        if not any((base / name).is_dir() for name in numbers.values()):
            # else the first line's "video not found" left the user to guess where it looked
            beside = ", and no UCF-101/ is beside the split folder" if root is None and base == above else ""
            raise FileNotFoundError(errno.ENOENT, f"the videos of UCF101 are not in {str(base)!r}: none "
                                    f"of its class folders ({numbers[min(numbers)]}/ ...) is there{beside} "
                                    "(--data-root gives the folder that holds the class folders)", str(base))
        return read_list_file(list_file, root=base, classes=classes, extensions=extensions,
                              class_numbers=numbers, missing=missing)

    suffix = f"_test_split{number}.txt"
    files = _hmdb51_split_files(folder, str(number))
    if not files:
        raise FileNotFoundError(errno.ENOENT, f"no HMDB51 split {number} files (*{suffix}) in the split folder",
                                str(folder))
    names = [f.name[:-len(suffix)] for f in files]
    if classes is None:
        classes = sorted(names)
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    base = Path(root) if root is not None else above
    samples, not_there = [], _MissingVideos(missing)
    for path, name in zip(files, names):
        if name not in index:
            raise ValueError(f"{str(path)!r}: class {name!r} is not one of the {len(classes)} classes")
        if not (base / name).is_dir():
            raise FileNotFoundError(errno.ENOENT, f"the videos of HMDB51 class {name!r} are not in "
                                    f"{str(base)!r} (--data-root gives the folder that holds the class "
                                    "folders, brush_hair/ ...)", str(base / name))
        for lineno, raw in enumerate(_read_text(path, "split file").splitlines(), 1):
            fields = raw.split()
            if not fields:
                continue
            where = f"{str(path)!r} line {lineno}"
            if len(fields) != 2 or fields[1] not in HMDB51_SPLIT_IDS:
                raise ValueError(f"{where}: expected '<video> <0, 1 or 2>', got {raw.strip()!r}")
            if HMDB51_SPLIT_IDS[fields[1]] == part and (
                    video := not_there.path(f"{name}/{fields[0]}", base, where, extensions)) is not None:
                samples.append(VideoSample(video, index[name]))
    not_there.raise_if_any()
    return samples, classes


# Kinetics' split column -> the folder CVDF's download extracts that split to, beside annotations/
_KINETICS_SPLIT_FOLDERS = {"train": "train", "val": "val", "validate": "val", "validation": "val",
                           "test": "test"}
_KINETICS_HEADER = "label,youtube_id,time_start,time_end,split"


def _whole_seconds(value: str, column: str, where: str) -> int:
    """A Kinetics time, written ``84`` or ``84.0``."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not (seconds.is_integer() and seconds >= 0):  # also refuses nan and inf
        raise ValueError(f"{where}: {column} {value!r} is not a whole number of seconds")
    return int(seconds)


def _videos_in(folder: Path, extensions: Sequence[str]) -> dict[str, str]:
    """``{stem: file name}`` of the videos directly in ``folder`` ({} if it is not a folder); a
    stem with several extensions gets the first of ``extensions``. One listing per folder:
    a stat per extension and layout for each of 246,534 clips would be millions of calls."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    rank = {e: k for k, e in enumerate(extensions)}
    found: dict[str, str] = {}
    for entry in sorted(entries, key=lambda e: rank.get(os.path.splitext(e.name)[1].lower(), -1)):
        stem, ext = os.path.splitext(entry.name)
        if ext.lower() in rank and not entry.name.startswith(".") and entry.is_file():
            found.setdefault(stem, entry.name)
    return found


def _kinetics_folders(root: Path, label: str) -> list[Path]:
    """Where a clip of ``label`` may be: ``root`` (CVDF's flat download) or ``root/<label>/``,
    the label as in the CSV or with underscores for its spaces (as other downloaders write it)."""
    return [root, root / label, root / label.replace(" ", "_")]


def _find_kinetics_videos(root: Path, clips: Sequence[tuple[str, Sequence[str]]],
                          extensions: Sequence[str]) -> list[str | None]:
    """The video of each ``(label, stems)`` clip under ``root``: the first of its ``stems`` (file
    names without extension, in order of preference) found in any of its folders; None where
    none is."""
    listings: dict[Path, dict[str, str]] = {}  # each folder listed once
    places: dict[str, list[tuple[Path, dict[str, str]]]] = {}  # label -> its folders' listings
    found: list[str | None] = []
    for label, stems in clips:
        if label not in places:
            for folder in _kinetics_folders(root, label):
                if folder not in listings:
                    listings[folder] = _videos_in(folder, extensions)
            places[label] = [(folder, listings[folder]) for folder in _kinetics_folders(root, label)]
        found.append(next((str(folder / videos[stem]) for stem in stems
                           for folder, videos in places[label] if stem in videos), None))
    return found


def _expected_kinetics_video(root: Path, label: str, stem: str, extensions: Sequence[str]) -> Path:
    """The path a missing clip would have: in its class folder if there is one, else flat."""
    folder = next((f for f in _kinetics_folders(root, label)[1:] if f.is_dir()), root)
    return folder / f"{stem}{extensions[0]}"


def _kinetics_roots(csv_path: Path, root: str | os.PathLike | None, split: str) -> list[Path]:
    """The folders that may hold a Kinetics CSV's videos, in the order tried: ``root`` (default
    the CSV's folder); its ``<split>/`` folder, so that one --data-root holding train/ and val/
    serves DATA and --val-data alike; and, without ``root``, ``<CSV's folder>/../<split>/``
    (CVDF's download: ``annotations/train.csv`` beside ``train/``). ``split`` is the CSV's split
    column; ``validate``'s folder is ``val`` (or ``validate``)."""
    base = Path(root) if root is not None else csv_path.parent
    names = list(dict.fromkeys(n for n in (_KINETICS_SPLIT_FOLDERS.get(split.lower()), split) if n))
    candidates = [base / n for n in names] + ([_folder_above(base) / n for n in names] if root is None else [])
    roots = [base]
    for folder in candidates:
        if folder.is_dir() and all(folder.resolve() != r.resolve() for r in roots):
            roots.append(folder)
    return roots


def read_kinetics_annotations(csv_path: str | os.PathLike, root: str | os.PathLike | None = None,
                              classes: Sequence[str] | None = None,
                              extensions: Sequence[str] = VIDEO_EXTENSIONS, *,
                              class_numbers: Mapping[int, str] | None = None,
                              notice: Callable[[str], None] | None = None,
                              missing: list | None = None) -> tuple[list[VideoSample], list[str]]:
    """Samples from Kinetics-400/600/700's ``train.csv`` or ``validate.csv``: a header line
    ``label,youtube_id,time_start,time_end,split`` (Kinetics-700-2020 adds ``is_cc``; columns are
    found by name), then one clip a line, e.g. ``"passing American football (in game)",--33Lscn6sk,4,14,train``.

    The clip's video is ``<youtube_id>_<time_start:06d>_<time_end:06d>`` with any of
    ``extensions``, else ``<youtube_id>`` (as downloaders that save a clip by its id name it;
    only for an id the CSV lists once, as such a file cannot say which of two clips it holds),
    directly in ``root`` (CVDF's flat download) or in ``root/<label>/`` (the label as in the
    CSV, or with underscores for its spaces). ``root`` defaults to the CSV's folder;
    when no listed video is in it, its ``<split>/`` folder is tried, then (by default only)
    ``<CSV's folder>/../<split>/``, CVDF's layout (see :func:`_kinetics_roots`); ``notice`` is
    told which one was read.

    Classes: ``classes``, else ``class_numbers``' names, else the sorted labels (Kinetics' own
    numbering is alphabetical); a label that is not one of them raises, naming its line.

    Videos missing from the download (5-10% of any: deleted from YouTube) are skipped, and
    ``notice``, if given, is called once with a line saying how many and the first one's path;
    a list ``missing`` gets each one's ``(path it would have, where, why)``, as
    :func:`read_list_file` gives them; ``why`` is None, or for a clip whose id the CSV lists
    more than once and whose ``<youtube_id>`` file is there, why that file is not used.
    No listed video found at all, a line that does not parse or a file without labels (the
    test set's ``test.csv``) raises ValueError naming the file (and the line).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise not_found("annotation file", csv_path)
    name = repr(str(csv_path))
    text = _read_text(csv_path, "annotation file")
    rows = csv.reader(io.StringIO(text), strict=True)  # strict: an unclosed quote raises
    next_line = 1  # the line the next row starts on (a quoted label may span lines)
    try:
        header = [column.strip() for column in next(rows, [])]
        if "youtube_id" not in header:
            first = text.splitlines()[0] if text.strip() else ""
            raise ValueError(f"{name} line 1: a .csv file is read as Kinetics' annotations, whose "
                             f"first line names the columns ({_KINETICS_HEADER}); this one is "
                             f"{first[:200]!r} (a list file of 'path label' lines needs another "
                             "extension, such as .txt)")
        column = {c: k for k, c in reversed(list(enumerate(header)))}  # the first of a repeated name
        for needed in ("time_start", "time_end"):
            if needed not in column:
                raise ValueError(f"{name} line 1: no {needed!r} column in the header "
                                 f"{','.join(header)!r} (expected {_KINETICS_HEADER})")
        if "label" not in column:
            raise ValueError(f"{name} has no label column (its columns: {', '.join(header)}): a file "
                             "without labels, such as Kinetics' test.csv, cannot be trained or "
                             "evaluated on")
        clips: list[tuple[int, str, str, str, str]] = []  # line, label, file name without extension, split, id
        next_line = rows.line_num + 1
        for row in rows:
            lineno, next_line = next_line, rows.line_num + 1
            if not any(field.strip() for field in row):  # a blank line
                continue
            where = f"{name} line {lineno}"
            if len(row) != len(header):
                raise ValueError(f"{where}: {len(row)} fields, but the header names {len(header)} "
                                 f"({','.join(header)}); a label with a comma must be in quotes")
            field = {c: row[k].strip() for c, k in column.items()}
            if not field["label"]:
                raise ValueError(f"{where}: no label (a file without labels, such as Kinetics' "
                                 "test.csv, cannot be trained or evaluated on)")
            if not field["youtube_id"]:
                raise ValueError(f"{where}: no youtube_id")
            start = _whole_seconds(field["time_start"], "time_start", where)
            end = _whole_seconds(field["time_end"], "time_end", where)
            clips.append((lineno, field["label"], f"{field['youtube_id']}_{start:06d}_{end:06d}",
                          field.get("split", ""), field["youtube_id"]))
    except csv.Error as e:  # an unclosed quote, a NUL byte
        raise ValueError(f"{name} line {next_line}: not valid CSV ({e})") from e
    if not clips:
        raise ValueError(f"annotation file {name} lists no videos")
    # A clip listed twice is one video: read once (the first line's label), said once; a
    # second label for it is named, since one of the two is wrong
    first_line: dict[str, tuple[int, str]] = {}
    repeated: list[tuple[int, int, str, str]] = []  # (first line, this line, first label, this label)
    for lineno, label, stem, *_ in clips:
        if stem in first_line:
            repeated.append((*first_line[stem][:1], lineno, first_line[stem][1], label))
        else:
            first_line[stem] = (lineno, label)
    if repeated:
        clips = [c for c in clips if first_line[c[2]][0] == c[0]]
        if notice is not None:
            first, again, label, other = repeated[0]
            labels = f" (labels {label!r} and {other!r}; the first is kept)" if label != other else ""
            notice(f"{csv_path}: {len(repeated):,} line(s) repeat a clip listed earlier and are read "
                   f"once (the first: line {again} repeats line {first}{labels})")

    if classes is None and class_numbers is not None:
        classes = list(class_numbers.values())
    classes = sorted({label for _, label, *_ in clips}) if classes is None else list(classes)
    index = {c: i for i, c in enumerate(classes)}
    for lineno, label, *_ in clips:
        if label not in index:
            hint = (f" (the classes name it {label.replace(' ', '_')!r})"
                    if label.replace(" ", "_") in index else "")
            raise ValueError(f"{name} line {lineno}: label {label!r} is not one of the "
                             f"{len(classes)} classes{hint}")

    roots = _kinetics_roots(csv_path, root, clips[0][3])
    pairs = [(label, stem) for _, label, stem, *_ in clips]
    # the timed name, else the id alone where the CSV lists the id once
    clips_per_id = collections.Counter(youtube_id for *_, youtube_id in clips)
    names = [(label, (stem,) + ((youtube_id,) if clips_per_id[youtube_id] == 1 else ()))
             for _, label, stem, _, youtube_id in clips]
    for base in roots:
        videos = _find_kinetics_videos(base, names, extensions)
        if any(videos):
            break
    else:
        label, stem = pairs[0]
        tried = repr(str(roots[0])) if len(roots) == 1 else "any of " + ", ".join(repr(str(r)) for r in roots)
        first = _expected_kinetics_video(roots[0], label, stem, extensions)
        raise ValueError(f"{name}: none of its {len(clips):,} listed videos is in {tried} (the first "
                         f"would be {str(first)!r}): give the videos' folder, or the folder that holds "
                         "their train/ and val/ folders, with --data-root")
    if notice is not None and base != roots[0]:
        notice(f"{csv_path}: videos from {base}, as no listed video is in {roots[0]} "
               "(--data-root to give another folder)")
    skipped = [k for k, video in enumerate(videos) if video is None]
    # a skipped clip whose id the CSV lists more than once may have its <youtube_id> file there,
    # unused: it was said as plain "not found"
    ids = [clips[k][4] for k in skipped]
    plain = _find_kinetics_videos(base, [(pairs[k][0], (i,) if clips_per_id[i] > 1 else ())
                                         for k, i in zip(skipped, ids)], extensions)
    why = [f"{file} is there, but the CSV lists {i} for {clips_per_id[i]} clips, and a file named by "
           "the id alone cannot say which it holds" if file else None for file, i in zip(plain, ids)]
    if skipped and notice is not None:
        label, stem = pairs[skipped[0]]
        unusable = [w for w in why if w]
        more = f" (and {len(unusable) - 1:,} more like it)" if len(unusable) > 1 else ""
        notice(f"{csv_path}: {len(skipped):,} of {len(clips):,} listed videos not found under {base} "
               f"(skipped; the first: {_expected_kinetics_video(base, label, stem, extensions)})"
               + (f"; {unusable[0]}{more}" if unusable else ""))
    if missing is not None:
        missing += [(str(_expected_kinetics_video(base, *pairs[k], extensions)),
                     f"{name} line {clips[k][0]}", w) for k, w in zip(skipped, why)]
    return [VideoSample(video, index[label]) for video, (label, _) in zip(videos, pairs)
            if video is not None], classes


def read_samples(path: str | os.PathLike, root: str | os.PathLike | None = None,
                 classes: Sequence[str] | None = None, *,
                 class_numbers: Mapping[int, str] | None = None,
                 notice: Callable[[str], None] | None = None,
                 missing: list | None = None) -> tuple[list[VideoSample], list[str]]:
    """Samples and classes from a file: Something-Something's annotation JSON (``.json``, see
    :func:`read_something_annotations`), Kinetics' annotation CSV (``.csv``, see
    :func:`read_kinetics_annotations`, which tells ``notice`` what it skipped) or a list file
    (:func:`read_list_file`). Without ``class_numbers``, the class file published beside it
    (:func:`find_class_file`) is read. ``missing``: see :func:`read_list_file`."""
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:  # it was read as a list file: "is not UTF-8 text"
        raise ValueError(f"{str(path)!r} is a video: the data is a folder of class folders, a list file "
                         "or an annotation file (effvid predict classifies single videos)")
    if class_numbers is None and (found := find_class_file(path)) is not None:
        class_numbers = read_class_file(found)
    if suffix == ".csv":
        return read_kinetics_annotations(path, root=root, classes=classes, class_numbers=class_numbers,
                                         notice=notice, missing=missing)
    reader = read_something_annotations if is_something_annotations(path) else read_list_file
    return reader(path, root=root, classes=classes, class_numbers=class_numbers, missing=missing)


def is_something_annotations(path: str | os.PathLike) -> bool:
    """Whether :func:`read_samples` reads the file ``path`` as Something-Something v2's
    annotation JSON (it reads every ``.json`` file so)."""
    return Path(path).suffix.lower() == ".json"


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
    - Randomness: a per-item numpy generator is seeded from torch's RNG, so
      ``torch.manual_seed`` makes it reproducible and DataLoader workers differ.
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

    def __len__(self) -> int:
        return len(self.samples)

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
        seed = int(torch.randint(0, 2**62, (1,)).item())
        rng = np.random.default_rng(seed)
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
    ``missing``, they are appended to it as ``(path, where, why)`` and left out (:func:`read_list_file`).

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
                                                 missing=missing)
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
