"""A dataset's video files on disk: finding them, reading its text files, and noting the
videos it names that are not there.

Every reader of a dataset (class folders in :mod:`.datasets`, list and class files in
:mod:`.lists`, the layouts of published datasets in :mod:`.published`) returns
:class:`VideoSample` records, and notes the videos it does not find in one
:class:`MissingVideos`, which raises once for all of them, or hands them to ``effvid check`` as
:class:`MissingVideo` records.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import NamedTuple, Sequence

from ..errors import unread_path_hint
from .video import IMAGE_EXTENSIONS, not_a_video_file

__all__ = [
    "VideoSample",
    "MissingVideo",
    "find_files",
    "broken_link",
    "not_found",
]


class VideoSample(NamedTuple):
    """A video of a dataset: its file and the index of its class."""

    path: str
    label: int
    num_frames: int | None = None  # from a TSM list; informational only (refers to extracted frames)


class MissingVideo(NamedTuple):
    """A video a dataset names that is not there, as a reader hands it to a ``missing`` list
    (effvid check reports them all; training stops at them)."""

    path: str  # where the video would be
    where: str  # where it is named: "'train.txt' line 3", "class folder 'data/a'"
    why: str | None = None  # what the reader knows beyond "not there", else None
    not_video: bool = False  # there, but a file of another kind (an unknown extension)


def has_video_ext(path: str | Path, extensions: Sequence[str]) -> bool:
    return Path(path).suffix.lower() in extensions


FRAMES_HINT = "; effvid decodes video files, not folders of extracted frames: point it at the videos themselves"


def _frames_hint(path: Path) -> str:
    # the lists made for the original TSM code name folders of extracted frames (there, or
    # not extracted on this machine: a path without an extension), or the frames themselves
    if path.is_dir() or path.suffix.lower() in IMAGE_EXTENSIONS or (not path.suffix and not path.exists()):
        return FRAMES_HINT
    return ""


def _check_ext(path: Path, where: str, extensions: Sequence[str]) -> None:
    if not has_video_ext(path, extensions):
        raise ValueError(f"{where}: unsupported video extension {path.suffix!r} for {str(path)!r} "
                         f"(expected one of {', '.join(extensions)}){_frames_hint(path)}")


def not_a_video(path: Path, extensions: Sequence[str], where: str, listed: bool = False) -> MissingVideo:
    """A file of another kind (an unknown extension) that a dataset holds (in ``where``, a class
    folder) or names (``listed`` on ``where``, a list's line), as effvid check reports it beside
    the videos; training refuses it at start."""
    return MissingVideo(str(path), where,
                        f"not a video ({path.suffix or 'no extension'}: effvid reads {', '.join(extensions)})"
                        + (f"; listed in {where}; training refuses it{_frames_hint(path)}" if listed
                           else "; training refuses it"),
                        not_video=True)


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
            not_files += [Path(top, d) for d in dirs if has_video_ext(d, extensions)]
            dirs[:] = [d for d in dirs if not has_video_ext(d, extensions)]
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


class _NamedNotFound(FileNotFoundError):
    """str() is the message alone, which names the path: from Python, "[Errno 2] dataset source
    not found: '/x': '/x'" said it twice."""

    def __str__(self) -> str:
        return self.strerror


def not_found(what: str, path: str | os.PathLike) -> FileNotFoundError:
    """The error for ``what`` ("list file") not at ``path``; a broken link is named with its
    target, as a class folder's are: a list file that was a broken link said "not found"."""
    link = broken_link(path)
    said = f"{what} {str(path)!r} is a {link}" if link else f"{what} not found: {str(path)!r}{unread_path_hint(path)}"
    return _NamedNotFound(errno.ENOENT, said, str(path))


def read_text(path: Path, what: str) -> str:
    try:  # utf-8-sig: a byte-order mark (Windows editors) is not part of the first line
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{what} {str(path)!r} is not UTF-8 text ({e})") from e


def _listed_path(path: str, base: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else base / p


def _video_path(path: str, base: Path, where: str, extensions: Sequence[str]) -> str:
    p = _listed_path(path, base)
    _check_ext(p, where, extensions)
    if not p.is_file():  # a broken link said "video not found", naming no target
        what = not_a_video_file(p) or (f"a {link}" if (link := broken_link(p)) else None)
        raise FileNotFoundError(errno.ENOENT, f"{where}: {str(p)!r} is {what}" if what else
                                f"{where}: video not found: {str(p)!r}{unread_path_hint(p)}", str(p))
    return str(p)


class MissingVideos:
    """The listed videos that are not there. A reader notes each one and raises once, at its
    end, for all of them: a list with 300 missing files stopped at the first, and a run per
    missing file found the next. Given a list (``missing``, effvid check's), it does not raise
    but appends a :class:`MissingVideo` for each, and the reader goes on without them."""

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
        """:func:`_video_path`, or None for a video that is not there (noted). Given a
        ``missing`` list, a path of another kind (an unknown extension) is added to it, and
        left out, as a class folder's are: effvid check stopped at it and checked nothing."""
        self.listed += 1
        if self.missing is not None and not has_video_ext(path, extensions):
            self.missing.append(not_a_video(_listed_path(path, base), extensions, where, listed=True))
            return None
        try:
            return _video_path(path, base, where, extensions)
        except FileNotFoundError as e:
            self.note(e, where)
            return None

    def raise_if_any(self) -> None:
        """The first missing video's error, with how many more there are and the next one; or,
        with a ``missing`` list, every missing video added to it."""
        if self.missing is not None:
            self.missing += [MissingVideo(e.filename, where) for e, where in self.errors]
            return
        if not self.errors:
            return
        first, more = self.errors[0][0], len(self.errors) - 1
        message = first.strerror + (f"; {more:,} more of the {self.listed:,} {self.counted} "
                                    f"{'is ' + self.being[0] if more == 1 else 'are ' + self.being[1]} "
                                    f"too (the next: {self.errors[1][0].strerror})" if more else "")
        raise FileNotFoundError(errno.ENOENT, message, first.filename)
