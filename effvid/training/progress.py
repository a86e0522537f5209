"""Progress bars that suit both a terminal and a log file."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class LogLines:
    """tqdm's output as whole lines, for a log file or pipe. tqdm starts every redraw with a
    carriage return, which a terminal turns into an overwrite and a file keeps: a training log
    read with less or grep was one long line of ``^M``-separated bars per epoch, and a bar that
    cleared itself (leave=False) left a line of spaces."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        for part in text.replace("\n", "\r").split("\r"):
            if part.strip():
                self.stream.write(part.rstrip() + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable, *, desc: str, enabled: bool = True, unit: str = "batch", **kwargs) -> tqdm:
    """A tqdm bar on stderr. On a terminal it redraws ~10 times a second and is cleared when
    done (the caller prints its result instead); when stderr is a file or pipe (a log, CI) it
    writes a line at most every 30 s instead of thousands of carriage-return updates, each on a
    line of its own, and its final state (100%, with the overall rate) when done: a log that
    kept only the first line, 0%, read as if the bar had stuck."""
    interactive = sys.stderr.isatty()
    return tqdm(iterable, desc=desc, unit=unit, leave=not interactive, disable=not enabled,
                dynamic_ncols=True, mininterval=0.1 if interactive else 30.0,
                file=sys.stderr if interactive else LogLines(sys.stderr), **kwargs)


class TimedWait:
    """Iterates over ``iterable`` and adds up, in ``seconds``, the time spent waiting for each
    next item: for a DataLoader, how long the training step stood idle for want of a batch."""

    def __init__(self, iterable):
        self.iterable = iterable
        self.seconds = 0.0

    def __len__(self) -> int:
        return len(self.iterable)

    def __iter__(self):
        items = iter(self.iterable)
        while True:
            start = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - start
            yield item
