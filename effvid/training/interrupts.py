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

effvid train handles SIGTERM and SIGHUP the same way (``ctrl_c_recorded(also_on=...)``), raised
as :class:`Stopped`, a KeyboardInterrupt that names its signal. A pass whose loader timed out
(a stalled worker) has its workers killed by :class:`StopsOnCtrlC`, the one wrapper every
loader goes through.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import traceback

_main_pid: int | None = None  # the process whose run ctrl_c_recorded() watches
_received = 0  # the stop signal (SIGINT: a Ctrl-C) that came during the run; 0: none
_deferred = False  # workers are being started: record, raise later
_sigchld_before = None  # the SIGCHLD handler the stopped run replaced (_quiet_worker_deaths)


class Stopped(KeyboardInterrupt):
    """A stop signal other than Ctrl-C (SIGTERM, SIGHUP) that a block handles as Ctrl-C
    (``ctrl_c_recorded(also_on=...)``): ``signum`` says which, for the command's message and
    its exit status, 128 + signum."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interruption() -> KeyboardInterrupt:
    return KeyboardInterrupt() if _received == signal.SIGINT else Stopped(_received)


def _on_stop_signal(signum, frame) -> None:
    global _received
    if os.getpid() != _main_pid:  # a forked DataLoader worker, which inherits the handler
        return
    _received = _received or signum  # the first one says why the run stops
    _quiet_worker_deaths()
    if not _deferred and not _in_finalizer(frame):
        raise _interruption()


def _in_finalizer(frame) -> bool:
    """Whether the signal came during a ``__del__`` (a DataLoader iterator joining its workers
    as it is dropped): Python prints an exception raised there as "Exception ignored in ..."
    with a traceback, and drops it. Recorded only, it is raised at the next batch or as the
    block ends (:func:`raise_if_interrupted`)."""
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _child_ended(signum, frame) -> None:
    pass


def _quiet_worker_deaths() -> None:
    """Once the run stops, a loader worker that died of the same signal is no error. A stop
    signal sent to the process group can reach a worker after PyTorch installed its own SIGTERM
    handler and before ``worker_stops_quietly`` replaced it (a wide window on a loaded machine);
    the worker died of it, and PyTorch's SIGCHLD handler raised "DataLoader worker (pid N) is
    killed by signal" in the main process, as the stopping run shut its loader down: a traceback
    ("Exception ignored in ... __del__") above the stop line. A no-op Python handler rather than
    SIG_DFL: a SIGCHLD already pending when the handler changes runs it, and finding SIG_DFL
    there Python prints "Signal 17 ignored due to race condition"."""
    global _sigchld_before
    if hasattr(signal, "SIGCHLD") and _sigchld_before is None:
        _sigchld_before = signal.signal(signal.SIGCHLD, _child_ended)


def _exit_quietly(signum, frame) -> None:
    os._exit(0)


def worker_stops_quietly(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: a SIGTERM ends the worker with status 0, as PyTorch's own
    handler does only for one from the main process. One sent to the whole process group
    (``timeout``, Slurm's scancel, systemd, ``kill -TERM -PGID``) killed the worker, and as the
    main process stopped the run on the same signal, PyTorch's SIGCHLD handler printed a
    traceback ("DataLoader worker (pid N) is killed by signal: Terminated") above its line."""
    signal.signal(signal.SIGTERM, _exit_quietly)


@contextlib.contextmanager
def worker_deaths_ignored():
    """For a block run after a stop signal: PyTorch's SIGCHLD handler raises, wherever the main
    process is, when a loader worker died of a signal, and the workers the signal reached (sent to
    the process group) are no error then. One that died before its ``worker_stops_quietly``
    raised inside torch.load as the stop line read the saved epochs, which then read as damaged
    ("the last completed epoch is saved", without the count)."""
    if not hasattr(signal, "SIGCHLD") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGCHLD, previous)


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt (:class:`Stopped` for another stop signal) if a Ctrl-C came
    during the run and was not acted on yet."""
    if _received and os.getpid() == _main_pid:
        raise _interruption()


@contextlib.contextmanager
def ctrl_c_recorded(also_on: tuple[int, ...] = ()):
    """Handle SIGINT as the module says for the block (in the main thread; elsewhere there is
    no signal handler to install), then restore the previous handler. The signals ``also_on``
    (effvid train's SIGTERM and SIGHUP: docker stop, a batch scheduler, a closed terminal) are
    handled the same way, raised as :class:`Stopped`: they ended a run with no word of what
    was saved."""
    global _main_pid, _received, _deferred, _sigchld_before
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # a block nested in another (an API user's script that prepares, then trains, in its own)
    # gives the outer one its state back: reset, the outer block ignored every later Ctrl-C
    outer = _main_pid, _received, _deferred, _sigchld_before
    _main_pid, _received, _deferred, _sigchld_before = os.getpid(), 0, False, None
    handled = (signal.SIGINT, *also_on)
    previous = {signum: signal.signal(signum, _on_stop_signal) for signum in handled}
    try:
        yield
        raise_if_interrupted()  # one that came in a finalizer after the last check
    except KeyboardInterrupt as e:
        if _received:
            # the frames it passed through hold the pass's loader: shut its workers down now,
            # while their deaths are quiet, not when the caller drops the exception
            traceback.clear_frames(e.__traceback__)
        raise
    except Exception as e:
        if _received:  # a consequence of the Ctrl-C, not a fault of its own
            traceback.clear_frames(e.__traceback__)
            raise _interruption() from e
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if _sigchld_before is not None:
            signal.signal(signal.SIGCHLD, _sigchld_before)
        _main_pid, _received, _deferred, _sigchld_before = outer


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


STALLED = "DataLoader timed out"  # how PyTorch's error begins when a loader's timeout passed


class StopsOnCtrlC:
    """Iterates over a DataLoader: a Ctrl-C that comes while it forks its workers is raised
    once they are started, and one that was dropped anywhere is raised at the next batch.
    When no batch came within the loader's ``timeout`` (a worker stalled), its workers are
    ended before PyTorch's error is raised again (:func:`end_stalled_workers`)."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        before = set(multiprocessing.active_children())
        with only_recorded():
            batches = iter(self.loader)  # forks the workers
        workers = [p for p in multiprocessing.active_children() if p not in before]
        while True:
            raise_if_interrupted()
            stalled = None
            try:
                batch = next(batches)
            except StopIteration:
                return
            except RuntimeError as e:
                if not str(e).startswith(STALLED):
                    raise
                stalled = str(e)  # raised again below, once the error no longer holds the loader
            if stalled is not None:
                del batches
                end_stalled_workers(workers)
                raise RuntimeError(stalled)
            yield batch


def end_stalled_workers(workers: list) -> None:
    """Kill the workers of a pass that stalled and is shut down. PyTorch asks them to exit,
    then sends SIGTERM, which a stopped (SIGSTOP) worker leaves pending: it stayed, and Python's
    exit waited for it forever (multiprocessing joins its children). SIGKILL also ends a
    stopped process. Only after the shutdown: PyTorch reported a worker killed while it still
    watched it as "a worker died"."""
    for process in workers:
        if process.is_alive():
            process.kill()
            process.join()
