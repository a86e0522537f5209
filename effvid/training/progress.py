"""Progress bars that suit both a terminal and a log file."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(iterable, *, desc: str, enabled: bool = True, **kwargs) -> tqdm:
    """A tqdm bar on stderr. On a terminal it redraws ~10 times a second; when stderr is a
    file or pipe (a log, CI) it writes a line at most every 30 s instead of thousands of
    carriage-return updates."""
    interactive = sys.stderr.isatty()
    return tqdm(iterable, desc=desc, unit="batch", leave=False, disable=not enabled,
                dynamic_ncols=True, mininterval=0.1 if interactive else 30.0, **kwargs)
