"""The annotation layouts that video datasets publish, and :func:`read_samples`, which reads a
dataset's file by its kind:

- Something-Something v2's annotation JSON (``train.json``, ``validation.json``);
- HMDB51's and UCF101's split folders (their three published train/test splits);
- Kinetics' annotation CSV (``train.csv``, ``validate.csv``), whose videos missing from the
  download (deleted from YouTube) are skipped and counted.
"""

from __future__ import annotations

import collections
import csv
import errno
import io
import json
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..errors import the_classes
from .files import MissingVideo, MissingVideos, VideoSample, not_found, read_text
from .lists import find_class_file, read_class_file, read_list_file
from .video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

__all__ = [
    "read_something_annotations",
    "split_folder_kind",
    "read_split_folder",
    "read_kinetics_annotations",
    "read_samples",
    "is_something_annotations",
]


def _folder_above(path: Path) -> Path:
    """The folder that holds ``path``: ``..`` for ``.``, whose ``Path.parent`` is ``.`` itself
    (a command run inside the split folder or beside the CSV looked for the videos there)."""
    return Path(os.path.normpath(os.path.join(path, os.pardir)))


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
        entries = json.loads(read_text(annotation_path, "annotation file"))
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
    samples, not_there = [], MissingVideos(missing)
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
            raise ValueError(f"{where}: class {label!r} is not one of {the_classes(classes)}")
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
                      notice: Callable[[str], None] | None = None,
                      missing: list | None = None) -> tuple[list[VideoSample], list[str]]:
    """The ``part`` (``"train"`` or ``"test"``) of the published split ``number`` (1, 2 or 3) of a
    split folder (:func:`split_folder_kind`), and the classes.

    - HMDB51: ``<class>_test_split<N>.txt`` has a line ``<video> <id>`` for each video of the
      class, id 1 for training, 2 for testing, 0 for neither. The classes are the files' class
      names, sorted; the videos are ``root/<class>/<video>``.
    - UCF101: ``trainlist0<N>.txt`` or ``testlist0<N>.txt``, read as list files with the folder's
      ``classInd.txt`` (:func:`read_list_file`, which tells ``notice`` of videos listed twice);
      the videos are ``root/<Class>/<video>``.

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
                              class_numbers=numbers, notice=notice, missing=missing)

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
    samples, not_there = [], MissingVideos(missing)
    for path, name in zip(files, names):
        if name not in index:
            raise ValueError(f"{str(path)!r}: class {name!r} is not one of {the_classes(classes)}")
        if not (base / name).is_dir():
            raise FileNotFoundError(errno.ENOENT, f"the videos of HMDB51 class {name!r} are not in "
                                    f"{str(base)!r} (--data-root gives the folder that holds the class "
                                    "folders, brush_hair/ ...)", str(base / name))
        for lineno, raw in enumerate(read_text(path, "split file").splitlines(), 1):
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
    a list ``missing`` gets a :class:`~effvid.data.files.MissingVideo` for each, its path the
    one the video would have, as :func:`read_list_file` gives them; its ``why`` is None, or for a
    clip whose id the CSV lists more than once and whose ``<youtube_id>`` file is there, why that
    file is not used.
    No listed video found at all, a line that does not parse or a file without labels (the
    test set's ``test.csv``) raises ValueError naming the file (and the line).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise not_found("annotation file", csv_path)
    name = repr(str(csv_path))
    text = read_text(csv_path, "annotation file")
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
            raise ValueError(f"{name} line {lineno}: label {label!r} is not one of "
                             + (f"the {len(classes)} classes{hint}" if hint else the_classes(classes)))

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
        missing += [MissingVideo(str(_expected_kinetics_video(base, *pairs[k], extensions)),
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
    (:func:`read_list_file`, which tells ``notice`` of videos listed twice). Without
    ``class_numbers``, the class file published beside it (:func:`find_class_file`) is read. ``missing``: see :func:`read_list_file`."""
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:  # it was read as a list file: "is not UTF-8 text"
        raise ValueError(f"{str(path)!r} is a video: the data is a folder of class folders, a list file "
                         "or an annotation file (effvid predict classifies single videos)")
    if suffix in IMAGE_EXTENSIONS:  # the same; FFmpeg's image demuxer would read it as a video
        raise ValueError(f"{str(path)!r} is an image, not a video: the data is a folder of class folders "
                         "of videos, a list file or an annotation file")
    if class_numbers is None and (found := find_class_file(path)) is not None:
        class_numbers = read_class_file(found)
    if suffix == ".csv":
        return read_kinetics_annotations(path, root=root, classes=classes, class_numbers=class_numbers,
                                         notice=notice, missing=missing)
    if is_something_annotations(path):
        return read_something_annotations(path, root=root, classes=classes, class_numbers=class_numbers,
                                          missing=missing)
    return read_list_file(path, root=root, classes=classes, class_numbers=class_numbers, notice=notice,
                          missing=missing)


def is_something_annotations(path: str | os.PathLike) -> bool:
    """Whether :func:`read_samples` reads the file ``path`` as Something-Something v2's
    annotation JSON (it reads every ``.json`` file so)."""
    return Path(path).suffix.lower() == ".json"
