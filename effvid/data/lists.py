"""Class files and list files: the classes of a dataset and its videos, a line each.

- a class file names the classes, one a line (or ``number name`` lines, as UCF101's
  ``classInd.txt``; or JSON, as Something-Something's ``labels.json``), and gives the numbers
  that integer labels stand for;
- a list file has ``path label`` or TSM's ``path num_frames label`` per line (label: int or
  class name; ``#`` comments and blank lines allowed; relative paths resolved against ``root``,
  default the list's folder), or a path alone (UCF101's testlist), whose first folder names
  the class.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..errors import not_a_regular_file, the_classes
from .files import MissingVideos, VideoSample, has_video_ext, not_found, read_text
from .video import VIDEO_EXTENSIONS

__all__ = [
    "read_class_file",
    "find_class_file",
    "read_list_file",
]


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


def _check_fields(path: str, line: str, where: str, extensions: Sequence[str]) -> None:
    """A line whose fields after the video are not ``label`` or ``num_frames label`` leaves some
    in the path, and the error would be about an extension ".mp4 air"; say what happened."""
    if has_video_ext(path, extensions):
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


# Words of a header line ("path label", "video,label"), which a list file does not have
_HEADER_WORDS = {"path", "video", "file", "filename", "label", "class", "category", "name", "num_frames",
                 "frames", "id"}


def _looks_like_header(line: str) -> bool:
    """Whether ``line`` (a list file's first) names columns rather than a video: two or three
    words, no path or number among them, one of them a column's usual name."""
    words = re.split(r"[\s,;]+", line)
    return (2 <= len(words) <= 3 and all(re.fullmatch(r"[A-Za-z_]+", w) for w in words)
            and any(w.lower() in _HEADER_WORDS for w in words))


# what a list numbered from 1 needs (UCF101's lists are, with classInd.txt beside them)
_ONE_BASED_FIX = ("number the labels from 0, or give a class file that numbers the classes from 1 "
                  "(--classes, as UCF101's classInd.txt)")

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
    if what := not_a_regular_file(path, "class file"):  # /dev/null, a folder: was "not found"
        raise ValueError(f"class file {str(path)!r} is {what}")
    if not path.is_file():
        raise not_found("class file", path)
    text = read_text(path, "class file")
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
                         f"not one of {the_classes(index)}")
    return index[parts[0]]


def _numbered_class(number: int, class_numbers: Mapping[int, str], index: Mapping[str, int],
                    where: str) -> int:
    if number not in class_numbers:
        raise ValueError(f"{where}: label {number} is not a class number: the class file numbers "
                         f"its {len(class_numbers)} classes {min(class_numbers)}..{max(class_numbers)}")
    name = class_numbers[number]
    if name not in index:
        raise ValueError(f"{where}: label {number} is class {name!r}, which is not one of "
                         f"{the_classes(index)}")
    return index[name]


def _first_of_each_video(parsed: list[tuple[int, str, str | None, int | None]], list_path: Path, base: Path,
                         notice: Callable[[str], None] | None) -> list[tuple[int, str, str | None, int | None]]:
    """The parsed lines of a list file, each video's first only (as Kinetics' CSV reader keeps a
    repeated clip's first line); ``notice`` is told how many lines repeat one, with the first."""
    first: dict[str, tuple[int, str | None]] = {}  # the video's file -> its first line and label
    kept, repeated = [], []
    for entry in parsed:
        lineno, path, label, _ = entry
        video = os.path.normpath(os.path.join(base, path))  # "./a.mp4" and "a.mp4" are one video
        if video in first:
            repeated.append((first[video], lineno, path, label))
        else:
            first[video] = (lineno, label)
            kept.append(entry)
    if repeated and notice is not None:
        # one with another label first: one of its two labels is wrong
        (line, label), again, path, other = next((r for r in repeated if r[0][1] != r[3]), repeated[0])
        def name(lb):  # a path-only line has none ("labelled None there")
            return "no label" if lb is None else repr(lb)

        labels = (f", {'with no label' if other is None else f'labelled {other!r}'} there and {name(label)} on "
                  f"line {line}; each video is read once, "
                  "with its first label" if other != label else "; each video is read once")
        more = len(repeated) - 1
        notice(f"note: {list_path} line {again} lists {path} again (first on line {line}){labels}"
               + (f"; {more:,} more {'line repeats' if more == 1 else 'lines repeat'} a video" if more else ""))
    return kept


def split_list_line(line: str, extensions: Sequence[str] = VIDEO_EXTENSIONS
                    ) -> tuple[str, int | None, str | None] | None:
    """``(path, num_frames, label)`` of a list file's ``line`` (stripped; not blank, not a
    comment): a path alone (UCF101's testlist) has neither number nor label, TSM's
    "path num_frames label" both, "path label" a label; None for a line that is none of these.
    Paths may contain spaces: the fields are taken from the end of the line."""
    if has_video_ext(line, extensions):
        return line, None, None
    parts = line.rsplit(None, 2)
    if len(parts) == 3 and _is_int(parts[1]) and (_is_int(parts[2]) or has_video_ext(parts[0], extensions)):
        # TSM: path num_frames label; the label may be a class name, as in 'path label'
        # (the path ends in a video extension, so the number cannot be part of it)
        return parts[0], int(parts[1]), parts[2]
    parts = line.rsplit(None, 1)
    return (parts[0], None, parts[1]) if len(parts) == 2 else None


def read_list_file(list_path: str | os.PathLike, root: str | os.PathLike | None = None,
                   classes: Sequence[str] | None = None,
                   extensions: Sequence[str] = VIDEO_EXTENSIONS, *,
                   class_numbers: Mapping[int, str] | None = None,
                   notice: Callable[[str], None] | None = None,
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

    A video listed twice is read once, with the first line's label (twice, it weighed double in
    training and in an evaluation's accuracy); ``notice``, if given, is told the lines.

    A listed video that is not there raises FileNotFoundError, naming the first, the next and
    how many; given a list ``missing``, each is appended to it as a
    :class:`~effvid.data.files.MissingVideo` instead and left out (effvid check reports them all).
    """
    list_path = Path(list_path)
    if not list_path.is_file():
        raise not_found("list file", list_path)
    base = Path(root) if root is not None else list_path.parent
    parsed: list[tuple[int, str, str | None, int | None]] = []
    text = read_text(list_path, "list file")
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{str(list_path)!r} line {lineno}"
        if not parsed and _looks_like_header(line):  # it was read as a video "path" of class "label"
            raise ValueError(f"{where}: {line!r} looks like a header; a list file has no header line: "
                             "delete it, or start it with # (a comment)")
        if (fields := split_list_line(line, extensions)) is None:
            raise ValueError(f"{where}: cannot parse {raw!r} (expected 'path label' "
                             f"or 'path num_frames label')")
        path, nf, label = fields
        if label is None:  # a path alone (UCF101's testlist)
            parsed.append((lineno, path, None, None))
            continue
        _check_fields(path, line, where, extensions)
        parsed.append((lineno, path, label, nf))
    if not parsed:
        raise ValueError(f"list file {str(list_path)!r} has no samples")
    parsed = _first_of_each_video(parsed, list_path, base, notice)

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
            numbers = [int(lb) for _, lb in labelled]
            if min(numbers) == 1:  # class "0" would be trained without a video
                raise ValueError(f"list file {str(list_path)!r}: its integer labels run from 1 to {max(numbers)}, "
                                 "with no 0; effvid numbers classes from 0, so class 0 would have no videos: "
                                 + _ONE_BASED_FIX)
            classes = [str(i) for i in range(max(numbers) + 1)]
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
    samples, not_there = [], MissingVideos(missing)
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
                one_based = y == len(classes) and not any(_is_int(lb) and int(lb) == 0 for _, lb in labelled)
                raise ValueError(f"{where}: label {y} out of range for {len(classes)} classes"
                                 + (f"; the labels look numbered from 1 (none is 0): {_ONE_BASED_FIX}"
                                    if one_based else ""))
        elif label in index:
            y = index[label]
        else:
            # the classes listed, as for a class folder that is not one (a checkpoint's, for eval)
            raise ValueError(f"{where}: class {label!r} is not one of {the_classes(classes)}")
        if (video := not_there.path(path, base, where, extensions)) is not None:
            samples.append(VideoSample(video, y, nf))
    not_there.raise_if_any()
    return samples, classes
