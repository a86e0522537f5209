"""Class names as plot text, shared by the training plots (``effvid.training.plots``) and the
stream's probability plots (``effvid.stream``): shortened to fit, and one note for the
characters the plotting font cannot draw. No matplotlib import here: its warnings are caught."""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager

_NOTED: set[str] = set()


@contextmanager
def missing_glyphs_noted(what: str):
    """One note for the characters of class names that the plotting font lacks: matplotlib
    warns once per character, twice (layout and drawing), and 30 Chinese class names printed
    ~480 warning lines in a run's first epoch. Other warnings pass through."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    missing = set()
    for w in caught:
        if "missing from font" in str(w.message):
            missing.add(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    note = (f"note: {what}: the plotting font has no glyph for {len(missing)} character(s) of the "
            "class names; they show as empty boxes")
    if missing and note not in _NOTED:  # once, not every epoch
        _NOTED.add(note)
        print(note, file=sys.stderr)


def shorten_label(name: str, limit: int = 40) -> str:
    """A label of at most ``limit`` characters, its start and end: a longer class name (a
    sentence, as in Something-Something) pushed the matrix out of the figure."""
    if len(name) <= limit:
        return name
    tail = (limit - 1) // 2
    return name[:limit - 1 - tail] + "\u2026" + name[-tail:]
