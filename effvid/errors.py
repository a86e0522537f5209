"""Errors shared across effvid, the argument checks that raise them, and the helpers that word
messages (counts, lists of names, commands to paste)."""

import difflib
import math
import numbers
import os
import re
import shlex
import stat
from collections.abc import Mapping
from pathlib import PurePath


class UserError(Exception):
    """An error caused by the user's input (a path, a value); printed without a traceback."""


class BadValue(ValueError):
    """A bad value of a named setting (a keyword argument, a config field). ``name``, ``value``
    and ``why`` let a command line say it as the option the user typed: ``effvid train``
    reports ``shift_div must be ...`` as ``argument --shift-div: must be ..., got 1``."""

    def __init__(self, name: str, value, why: str, message: str | None = None):
        super().__init__(message or f"{name} {why}, got {value!r}")
        self.name, self.value, self.why = name, value, why


def command_line(*words) -> str:
    """A command for the user to paste, each word quoted as a shell needs it: a path with a space
    or an apostrophe, printed bare, split into other arguments when pasted."""
    return " ".join(shlex.quote(str(w)) for w in words)


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an s unless there is one: "1 epoch", "3 epochs", "1,200
    videos" (a message said "completed 1 of 1 epochs"); es after s, x, sh and a ch said as in
    "batch": "2 classes", "2 batches" (not after "epoch", whose ch is a k)."""
    sibilant = noun.endswith(("s", "x", "sh")) or (noun.endswith("ch") and not noun.endswith("och"))
    return f"{count:,} {noun}{'' if count == 1 else 'es' if sibilant else 's'}"


def some_names(names, shown: int = 10) -> str:
    """The first ``shown`` of ``names`` and how many more, for a message: an error that listed a
    400-class checkpoint's classes filled the screen."""
    names = [str(n) for n in names]
    more = f" and {len(names) - shown:,} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def the_classes(classes) -> str:
    """"the 6 classes (down, grow, ...)": the classes a label or folder is not one of, named in
    every such refusal (a class folder's, a list's, an annotation file's), not only counted."""
    return f"the {len(classes)} classes ({some_names(classes)})"


def did_you_mean(word: str, choices) -> str:
    """"did you mean 'X'?" for the one of ``choices`` closest to a misspelt ``word`` (as difflib
    finds it), or "" when none is close. ``choices`` may map each name compared to what is
    shown (a folder's name to its path)."""
    shown = choices if isinstance(choices, Mapping) else {str(c): str(c) for c in choices}
    close = difflib.get_close_matches(word, list(shown), n=1)
    return f"did you mean {shown[close[0]]!r}?" if close else ""


def not_a_regular_file(path: str | os.PathLike, noun: str = "file") -> str | None:
    """What ``path`` is when it is there but is no file to read from ("a folder, not a video
    file", "not a regular file (a FIFO)"); None for a regular file (or a link to one) and for
    nothing there. Each was "not found". Asked of stat, never by opening the path: a FIFO's open
    waits for a writer, forever."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return f"a folder, not a {noun}"
    kind = next((name for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                                         (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
                 if test(mode)), None)
    return f"not a regular file ({kind})" if kind else "not a regular file"


def unread_path_hint(path: str | os.PathLike) -> str:
    """Why a path that is not there was perhaps never a local path, for its "not found" error
    to add ("; ..."), else "": a ``~`` that the shell did not expand (the path was quoted,
    ``'~/videos'``), or a URL (effvid downloads nothing). ``Path()`` writes ``s3://b`` as
    ``s3:/b``: either is known."""
    text = os.fspath(path)
    if re.search(r"(^|/)[A-Za-z][A-Za-z0-9+.-]+:/", text):
        return "; effvid reads local files only and downloads nothing: download it first"
    if any(part.startswith("~") for part in PurePath(text).parts):
        return ("; the shell did not expand this ~ (it was quoted, or not at the start of a word): write "
                "the path out, or use $HOME")
    return ""


def layout_hint(shape, channels_first: bool) -> str:
    """For a frame or clip refused by its ``shape``: that its 3 colour channels are on the other
    side of H and W than where this takes them (``channels_first``: ``(..., 3, H, W)``, as the
    models do; else ``(..., H, W, 3)``, as decoders give frames), and how to move them; else ""."""
    shape = tuple(shape)
    if len(shape) >= 3 and channels_first and shape[-1] == 3 and shape[-3] != 3:
        given, wanted, move = "last (..., H, W, 3)", "first (..., 3, H, W)", "-1, -3"
    elif len(shape) >= 3 and not channels_first and shape[-3] == 3 and shape[-1] != 3:
        given, wanted, move = "first (..., 3, H, W)", "last (..., H, W, 3)", "-3, -1"
    else:
        return ""
    return (f": channels {given}, and this takes channels {wanted}: x.movedim({move}) "
            f"(numpy: np.moveaxis(x, {move})) moves them")


def check_seconds(name: str, value, *, positive: bool = False, why: str | None = None):
    """Refuse a time that is not a finite number of seconds, >= 0 (> 0 if ``positive``), naming
    its argument (``why`` words the refusal); returns ``value``. NaN fails no comparison, and a
    NaN or infinite time failed later, as "cannot convert float NaN to integer" or an
    OverflowError; a bool is no number of seconds."""
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and (0 < value if positive else 0 <= value) and value < math.inf)
    if not ok:
        raise BadValue(name, value, why or ("must be a positive number of seconds" if positive
                                            else "must be a number of seconds >= 0"))
    return value


def check_positive_ints(**values) -> None:
    """Refuse any value that is not an integer >= 1, naming its argument: a size of 0 builds
    zero-element weights without an error (a rank-0 factorised matrix outputs just its bias)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise BadValue(name, value, "must be a positive integer")


def check_dropout(dropout) -> None:
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
        raise BadValue("dropout", dropout, "must be a number in [0, 1)")
