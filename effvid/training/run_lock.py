"""One run at a time in a run folder.

Two ``effvid train`` processes writing the same ``--output`` (a run started twice, a resume
while the run still runs) overwrite each other's checkpoints and history. The main process
holds an exclusive ``flock`` on ``RUN/.effvid-run.lock`` for as long as the run runs. The
operating system releases it when the process ends, however it ends (a crash, ``kill -9``, the
OOM killer), so the file a killed run leaves behind blocks nothing: a resume takes it again.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from pathlib import Path

from ..errors import UserError
from .distributed import DistEnv, all_gather_objects

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
    fcntl = None

LOCK_NAME = ".effvid-run.lock"

# How long a run waits for a busy lock before it is refused: effvid info takes a shared lock for
# an instant (run_folder_holder), and a run that met it was refused as if a train held the folder
BUSY_WAIT_S = 1.0

# Descriptors of the locks this process holds. A forked child (a DataLoader worker) closes its
# copies: the lock belongs to the open file, so a worker still alive for a few seconds after
# its run was killed kept the folder locked until it noticed and exited.
_held: set[int] = set()


def _close_held_in_child() -> None:
    for fd in _held:
        os.close(fd)  # the child's copy only: the parent's lock stays
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_in_child)


def lock_run_folder(folder: Path) -> int | None:
    """Create ``folder`` if needed and lock it: the locked file's descriptor (closing it
    releases the lock), or None where the file system has no locks. Raises UserError naming
    the folder and the process that holds it."""
    path = folder / LOCK_NAME
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # a failed run removed the folder it had made, just now
            continue
        try:
            locked = lock_exclusive(fd, BUSY_WAIT_S)
        except OSError:  # a file system without locks (some network ones): run unlocked
            os.close(fd)
            return None
        if not locked:
            holder = read_holder(fd)
            os.close(fd)
            who = f" ({holder})" if holder else ""
            raise UserError(f"{folder} is in use by another effvid train{who}: wait for it to end "
                            "or stop it, or write this run elsewhere with --output")
        # A run that gave up a folder it had created removes it, lock file included
        # (release_run_folder): the lock counts only if the path still names the file locked.
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    _held.add(fd)
    return fd


def lock_exclusive(fd: int, wait_s: float) -> bool:
    """Take an exclusive flock on ``fd``, trying for up to ``wait_s`` seconds while it is busy:
    False if it stayed busy. OSError where the file system has no locks."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def read_holder(fd: int) -> str | None:
    """``"pid N on HOST"``, as the holder of a lock file wrote it (lock_run_folder), or None
    when it has not written it yet."""
    holder = os.read(fd, 200).decode(errors="replace").split()
    return f"pid {holder[0]} on {holder[1]}" if len(holder) == 2 else None


def run_folder_holder(folder: Path) -> str | None:
    """``"pid N on HOST"`` (or ``"a process"``) while an effvid train holds ``folder``, else None.
    A shared lock, taken and dropped at once, conflicts with the run's exclusive one only."""
    if fcntl is None:
        return None
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDONLY)
    except OSError:  # no lock file: no run ever held it (or it was removed with its folder)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except BlockingIOError:
        return read_holder(fd) or "a process"
    except OSError:  # a file system without locks: cannot tell
        return None
    finally:
        os.close(fd)


def release_run_folder(fd: int, folder: Path, created: Path | None, new_lock_file: bool = False) -> None:
    """Unlock. A new run that failed before it wrote anything leaves the file system as it found
    it: ``new_lock_file``: the lock file did not exist before this run (true whenever ``created``
    is set); ``created``: the first folder of ``folder``'s path that this run created. Where the
    folder holds the lock file alone, the lock file goes, then the folders this run created."""
    if new_lock_file:
        try:
            if [p.name for p in folder.iterdir()] == [LOCK_NAME]:
                # still locked: a run that opened the file meanwhile and locks it once this one
                # closes it finds its path gone, and locks a new file (lock_run_folder)
                (folder / LOCK_NAME).unlink()
                if created is not None:
                    for path in (folder.absolute(), *folder.absolute().parents):
                        path.rmdir()
                        if path == created:
                            break
        except OSError:
            pass  # a file appeared meanwhile, or the folder is not ours to remove: leave it
    _held.discard(fd)
    os.close(fd)


def why_not_a_folder(path: Path) -> str | None:
    """'it is a file, not a folder' where that is why a run folder cannot be used (mkdir's error
    says only 'File exists'; a resume said the run had not started)."""
    try:
        return "it is a file, not a folder" if path.exists() and not path.is_dir() else None
    except OSError:
        return None


@contextlib.contextmanager
def hold_run_folder(folder: str | Path, env: DistEnv):
    """Hold the run folder while the block runs. Only the main process locks it; every process
    stops with the same UserError when another run holds it, so that none waits in a
    collective operation for a main process that has left."""
    folder = Path(folder)
    fd, refusal, created, new_lock_file = None, None, None, False
    if env.is_main and fcntl is not None:
        path = folder.absolute()
        try:  # exists() too raises (a name too long, a folder not searchable): the others wait
            created = next((p for p in reversed((path, *path.parents)) if not p.exists()), None)
            # a failed start removes the lock file it made, not an earlier run's
            new_lock_file = not (path / LOCK_NAME).exists()
            fd = lock_run_folder(folder)
            if fd is None:
                print(f"note: the file system of {folder} has no file locks: nothing keeps a second "
                      "effvid train from writing the same folder", file=sys.stderr)
        except (UserError, OSError) as e:  # OSError: the folder cannot be made or written
            refusal = (str(e) if isinstance(e, UserError)
                       else f"cannot write to the run folder {folder}: {why_not_a_folder(path) or e.strerror or e}")
    refusal = all_gather_objects(refusal, env)[0]
    if refusal is not None:
        raise UserError(refusal)
    try:
        yield
    finally:
        if fd is not None:
            release_run_folder(fd, folder, created, new_lock_file)
