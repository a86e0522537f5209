"""Ctrl-C during an effvid command (train, eval, predict, check, prepare...): it always stops the
run, and only the main process acts on it.

Python raises KeyboardInterrupt wherever the main thread is when the signal's handler runs. In
a few places an exception is "ignored" (printed and dropped): in os.fork's after-fork hooks
(logging's ``_releaseLock`` is one), in ``__del__`` methods. A DataLoader forks its workers
at the start of every pass (``persistent_workers=False``), so a Ctrl-C that came at that
moment was dropped and the run trained on to its end; the workers, in the same process group
(a terminal sends Ctrl-C to all of it), died of the same signal and the run ended with a false
"worker died, out of memory" report. effvid prepare's process pool forks its workers the same
way, and a Ctrl-C dropped there let the run finish and exit 0.

So for the run (:func:`ctrl_c_recorded`) SIGINT has a handler that records it before raising,
and that does nothing in a forked process (a worker: the main process stops the run and ends
its workers). While processes are forked (:func:`only_recorded`; :class:`StopsOnCtrlC` as a
pass starts its workers) it only records it and raises it once they are started; the pass
checks again after every batch (:func:`raise_if_interrupted`), which catches one dropped
elsewhere. An error that follows a Ctrl-C (a worker or a torchrun peer it ended)
is reported as the interrupt it is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

_main_pid: int | None = None  # the process whose run ctrl_c_recorded() watches
_received = False  # a Ctrl-C came during the run
_deferred = False  # workers are being started: record, raise later


def _on_sigint(signum, frame) -> None:
    global _received
    if os.getpid() != _main_pid:  # a forked DataLoader worker, which inherits the handler
        return
    _received = True
    if not _deferred:
        raise KeyboardInterrupt


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C came during the run and was not acted on yet."""
    if _received and os.getpid() == _main_pid:
        raise KeyboardInterrupt


@contextlib.contextmanager
def ctrl_c_recorded():
    """Handle SIGINT as the module says for the block (in the main thread; elsewhere there is
    no signal handler to install), then restore the previous handler."""
    global _main_pid, _received, _deferred
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # a block nested in another (an API user's script that prepares, then trains, in its own)
    # gives the outer one its state back: reset, the outer block ignored every later Ctrl-C
    outer = _main_pid, _received, _deferred
    _main_pid, _received, _deferred = os.getpid(), False, False
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    except Exception as e:
        if _received:  # a consequence of the Ctrl-C, not a fault of its own
            raise KeyboardInterrupt from e
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
        _main_pid, _received, _deferred = outer


@contextlib.contextmanager
def only_recorded():
    """Within the block (which forks processes) a Ctrl-C is only recorded; it is raised when the
    block is done, its processes started, for the caller to stop them."""
    global _deferred
    _deferred = True
    try:
        yield
    finally:
        _deferred = False
    raise_if_interrupted()


class StopsOnCtrlC:
    """Iterates over a DataLoader: a Ctrl-C that comes while it forks its workers is raised
    once they are started, and one that was dropped anywhere is raised at the next batch."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        with only_recorded():
            batches = iter(self.loader)  # forks the workers
        while True:
            raise_if_interrupted()
            try:
                batch = next(batches)
            except StopIteration:
                return
            yield batch
