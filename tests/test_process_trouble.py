"""The command line under process-level trouble, with real processes and real signals: a second
run in a folder that a run is using, a data-loading worker killed by the kernel, Ctrl-C while
torch is still being imported, and errors under torchrun printed once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from effvid.cli import interrupted, main
from effvid.commands.train import worker_died_message
from effvid.data.synthetic import make_synthetic_dataset
from effvid.models.weights import load_weights
from effvid.training.config import TrainConfig
from effvid.errors import UserError
from effvid.training.run_lock import BUSY_WAIT_S, LOCK_NAME, lock_run_folder, release_run_folder


@pytest.fixture(autouse=True)
def python_handles_ctrl_c():
    """These tests send Ctrl-C: give it Python's handler, which a shell that started the tests in
    the background (``cmd &``: SIGINT ignored, as POSIX says for jobs without job control) left
    out; two tests then failed on the ignored signal."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_dataset(root, classes=("left", "right"), videos_per_class_train=4,
                           videos_per_class_val=2, num_frames=8, size=32, seed=1)
    return root


def train_args(data, out, *more: str) -> list[str]:
    return ["train", str(data), "--model", "tsm_resnet_tiny", "--num-segments", "4", "--size", "32",
            "--scale-size", "32", "--no-flip", "--epochs", "1", "--batch-size", "4", "--workers", "0",
            "--seed", "3", "--no-progress", "--output", str(out), *more]


def wait_for_lock(folder, proc: subprocess.Popen) -> None:
    """Until ``proc`` holds the run folder (its pid in the lock file)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if (folder / LOCK_NAME).read_text().split()[:1] == [str(proc.pid)]:
                return
        except OSError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it locked {folder}:\n{proc.communicate()}")
        time.sleep(0.02)
    pytest.fail(f"{proc.pid} did not lock {folder}")


def test_a_second_run_is_refused_while_one_uses_the_folder_and_a_killed_one_blocks_nothing(
        tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "effvid", *train_args(tiny_data, run)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_lock(run, first)
        first.send_signal(signal.SIGSTOP)  # holds the folder
        before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
        # another run, a resume, and a replacement with other settings: all refused, naming
        # the folder and the process that holds it, before they read or write anything
        for more in ((), ("--resume",), ("--overwrite", "--seed", "4")):
            assert main(train_args(tiny_data, run, *more)) == 2
            err = capsys.readouterr().err
            assert err == (f"effvid train: error: {run} is in use by another effvid train (pid "
                           f"{first.pid} on {socket.gethostname()}): wait for it to end or stop it, "
                           "or write this run elsewhere with --output\n"), more
            assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
        first.send_signal(signal.SIGCONT)
        out, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 0, out + err
    # the first run's files are its own: its seed, its one epoch, loadable weights
    assert json.loads((run / "config.json").read_text())["seed"] == 3
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0]
    assert load_weights(run / "best.safetensors")[1]["epoch"] == 1

    # A process killed while it holds the folder (kill -9: no clean-up at all) leaves the lock
    # file, with its pid; a resume is not blocked by it.
    killed = subprocess.run([sys.executable, "-c", "import os, pathlib, sys; from effvid.training."
                             "run_lock import lock_run_folder; lock_run_folder(pathlib.Path("
                             "sys.argv[1])); os.kill(os.getpid(), 9)", str(run)])
    assert killed.returncode == -signal.SIGKILL
    holder = (run / LOCK_NAME).read_text().split()[0]
    assert holder not in (str(first.pid), str(os.getpid()))
    assert main(["train", "--output", str(run), "--resume", "--epochs", "2"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [0, 1]
    assert (run / LOCK_NAME).read_text().split()[0] == str(os.getpid())


def test_a_failed_start_leaves_no_folder_and_a_folder_that_cannot_be_made_is_one_line(
        tiny_data, tmp_path, capsys):
    out = tmp_path / "new" / "run"
    assert main(train_args(tmp_path / "missing", out)) == 2
    assert "missing" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # the folders it made went, with the lock file
    (tmp_path / "file").write_text("")
    assert main(train_args(tiny_data, tmp_path / "file" / "run")) == 2
    assert capsys.readouterr().err == (f"effvid train: error: cannot write to the run folder "
                                       f"{tmp_path / 'file' / 'run'}: Not a directory\n")
    # the run folder itself a file: mkdir says only "File exists"
    assert main(train_args(tiny_data, tmp_path / "file")) == 2
    assert capsys.readouterr().err == (f"effvid train: error: cannot write to the run folder "
                                       f"{tmp_path / 'file'}: it is a file, not a folder\n")

def test_a_failed_start_in_an_existing_folder_leaves_it_empty_and_an_earlier_lock_file_alone(
        tiny_data, tmp_path, capsys):
    # a folder the user made: a run that stops before it writes anything (here at the data, read
    # once the folder is locked) left its lock file there
    out = tmp_path / "run"
    out.mkdir()
    assert main(train_args(tmp_path / "missing", out)) == 2
    assert "missing" in capsys.readouterr().err
    assert out.is_dir() and list(out.iterdir()) == []
    # the lock file of an earlier run (killed before it wrote anything) is not this run's to remove
    (out / LOCK_NAME).write_text("4242 elsewhere\n")
    assert main(train_args(tmp_path / "missing", out)) == 2
    assert "missing" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == [LOCK_NAME]


def test_a_momentary_shared_lock_does_not_refuse_a_run_and_a_holder_still_does(tmp_path):
    # effvid info takes a shared lock for an instant to tell whether a train holds the folder: a
    # train that met it was refused as "in use by another effvid train (pid of an earlier run)"
    import fcntl
    import threading

    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text("4242 elsewhere\n")
    shared = os.open(run / LOCK_NAME, os.O_RDONLY)
    fcntl.flock(shared, fcntl.LOCK_SH | fcntl.LOCK_NB)
    unlock = threading.Timer(0.2, fcntl.flock, (shared, fcntl.LOCK_UN))  # held longer than info does
    start = time.monotonic()
    unlock.start()
    try:
        fd = lock_run_folder(run)
    finally:
        unlock.join()
        os.close(shared)
    assert time.monotonic() - start >= 0.2
    try:
        assert (run / LOCK_NAME).read_text() == f"{os.getpid()} {socket.gethostname()}\n"
        # an exclusive holder (this lock, on another open file) still refuses, after the wait
        start = time.monotonic()
        with pytest.raises(UserError) as refused:
            lock_run_folder(run)
        assert time.monotonic() - start >= BUSY_WAIT_S
        assert str(refused.value) == (f"{run} is in use by another effvid train (pid {os.getpid()} on "
                                      f"{socket.gethostname()}): wait for it to end or stop it, or "
                                      "write this run elsewhere with --output")
    finally:
        release_run_folder(fd, run, None)


def test_a_run_folder_whose_path_cannot_be_looked_at_is_the_same_one_line(tiny_data, tmp_path, capsys):
    # Path.exists() raises for a name too long (or a parent that cannot be searched): raised by
    # the main process alone, outside the refusal that every process receives, it was a
    # traceback, and under torchrun the other processes waited for the main one forever
    out = tmp_path / ("x" * 300) / "run"
    assert main(train_args(tiny_data, out)) == 2
    assert capsys.readouterr().err == (f"effvid train: error: cannot write to the run folder {out}: "
                                       "File name too long\n")



def test_a_forked_worker_does_not_keep_the_lock_after_its_run_ends(tmp_path):
    # DataLoader workers are forked: their copy of the lock file's descriptor kept the folder
    # locked after the run itself had ended (killed), until they noticed and exited
    run = tmp_path / "run"
    fd = lock_run_folder(run)
    ready_read, ready_write = os.pipe()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # a worker: says it has started, and lives until the test lets it go
        os.write(ready_write, b"x")
        os.read(read_end, 1)
        os._exit(0)
    try:
        os.read(ready_read, 1)
        release_run_folder(fd, run, created=None)
        release_run_folder(lock_run_folder(run), run, created=None)  # not "in use"
    finally:
        os.write(write_end, b"x")
        os.waitpid(child, 0)


# Trains as `effvid train` does, with a dataset whose loading worker is killed by SIGKILL, as
# the kernel's OOM killer does, on its first clip once an epoch has been saved.
_KILLED_WORKER = """
import os, signal, sys
from pathlib import Path
from torch.utils.data import get_worker_info
from effvid.cli import main
from effvid.data.datasets import VideoClipDataset

run = Path(sys.argv[sys.argv.index("--output") + 1])
load = VideoClipDataset.__getitem__

def killed_after_first_epoch(self, i):
    if get_worker_info() is not None and (run / "last_state.pt").exists():
        os.kill(os.getpid(), signal.SIGKILL)
    return load(self, i)

VideoClipDataset.__getitem__ = killed_after_first_epoch
sys.exit(main(sys.argv[1:]))
"""


def test_a_worker_killed_by_the_kernel_ends_the_run_with_what_to_do(tiny_data, tmp_path, capsys):
    driver = tmp_path / "driver.py"
    driver.write_text(_KILLED_WORKER)
    run = tmp_path / "run"
    args = train_args(tiny_data, run, "--epochs", "2", "--workers", "1")
    proc = subprocess.run([sys.executable, str(driver), *args], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "epoch 1/2:" in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.startswith("effvid")]
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("effvid train: error: a data-loading worker process died (DataLoader "
                           "worker (pid")
    # PyTorch says "is killed by signal: Killed" or, when it noticed first, "exited unexpectedly"
    assert "is killed by signal: Killed" in line or "exited unexpectedly" in line
    assert line.endswith("most likely the system ran out of memory and killed it. Try fewer "
                         "--workers (this run: 1) or a smaller --batch-size (this run: 4). The last "
                         f"completed epoch (1 of 2) is saved: continue with effvid train --output "
                         f"{run} --resume --workers 0."), line
    # which it does
    assert main(["train", "--output", str(run), "--resume", "--workers", "0"]) == 0
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [0, 1]
    # killed in the first epoch: nothing to resume, said so
    cfg = TrainConfig(data=str(tiny_data), output=str(tmp_path / "none"), workers=3)
    assert worker_died_message(cfg, "DataLoader worker (pid 7) is killed by signal: Killed.").endswith(
        "(this run: 3) or a smaller --batch-size (this run: 8). No epoch was completed; nothing to resume.")


# Runs an effvid command (its arguments after the driver's first two, ARMED_BY and FORKED_BY);
# once the file ARMED_BY exists, the next worker forked from code under FORKED_BY (a DataLoader's:
# a pass forks its workers anew; effvid prepare's process pool) meets a Ctrl-C as a terminal
# sends it, to the whole process group (the worker too). It comes while the
# parent's after-fork hooks run, where Python drops exceptions ("Exception ignored in: <function
# _releaseLock ...>"): the run went on to its end, or ended with a worker's death.
_CTRL_C_AS_A_WORKER_STARTS = """
import os, signal, sys, time, traceback
from pathlib import Path
from effvid.cli import main

armed_by, forked_by = Path(sys.argv[1]), sys.argv[2]
sent = []

def ctrl_c_as_a_worker_starts():
    if sent or not armed_by.exists():
        return
    if not any(forked_by in f.filename for f in traceback.extract_stack()):
        return  # a fork, but not one of those
    sent.append(1)
    assert os.getpgid(0) == os.getpid(), "run me in a process group of my own"
    (Path(__file__).parent / "sigint_at").write_text(repr(time.time()))
    os.killpg(0, signal.SIGINT)
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # Python runs the handler here, in the hook
        pass

os.register_at_fork(after_in_parent=ctrl_c_as_a_worker_starts)
sys.exit(main(sys.argv[3:]))
"""


def ctrl_c_as_a_worker_starts(tmp_path, armed_by, args: list[str], forked_by: str = "torch/utils/data"
                              ) -> tuple[subprocess.CompletedProcess, float]:
    """The command ``args`` run by the driver above, and how long after the Ctrl-C it ended."""
    driver = tmp_path / "driver.py"
    driver.write_text(_CTRL_C_AS_A_WORKER_STARTS)
    proc = subprocess.run([sys.executable, str(driver), str(armed_by), forked_by, *args], capture_output=True,
                          text=True, timeout=300, start_new_session=True)  # its killpg reaches it and its workers only
    ended = time.time()
    assert (tmp_path / "sigint_at").exists(), proc.stdout + proc.stderr
    return proc, ended - float((tmp_path / "sigint_at").read_text())


def test_ctrl_c_as_a_data_loading_worker_starts_stops_the_run(tiny_data, tmp_path):
    run = tmp_path / "run"
    args = train_args(tiny_data, run, "--epochs", "3", "--workers", "1")
    # once epoch 1 is saved
    proc, took = ctrl_c_as_a_worker_starts(tmp_path, run / "last_state.pt", args)
    # not trained on (exit 0), nor a worker "died, most likely out of memory" (exit 1), nor a
    # traceback from the hook or from the worker
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [
        f"effvid train: interrupted; the last completed epoch (1 of 3) is saved: continue with "
        f"effvid train --output {run} --resume"], proc.stderr
    assert took < 10
    assert "epoch 1/3:" in proc.stdout and "epoch 2/3" not in proc.stdout
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [0]


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("checkpoint") / "run"
    assert main(train_args(tiny_data, run)) == 0
    return run / "best.safetensors"


@pytest.mark.parametrize("command", ["eval", "predict", "check"])
def test_ctrl_c_as_eval_predict_or_check_starts_its_workers_stops_it(tiny_data, tiny_checkpoint, tmp_path, command):
    # They ended with the worker's death ("DataLoader worker (pid N) exited unexpectedly", a
    # traceback), or went on to their results as if nothing had happened
    data = tiny_data / "val" if command == "eval" else tiny_data / "val" / "left"
    if command == "check":
        args = ["check", str(tiny_data), "--workers", "1", "--quiet"]
    else:
        args = [command, str(data), "--checkpoint", str(tiny_checkpoint), "--workers", "1", "--batch-size", "1"]
        args += ["--quiet"] * (command == "eval")
    proc, took = ctrl_c_as_a_worker_starts(tmp_path, tiny_checkpoint, args)
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [f"effvid {command}: interrupted"], proc.stderr
    assert proc.stdout == ""  # no results
    assert took < 10


def test_ctrl_c_as_prepare_starts_its_workers_stops_it_and_a_rerun_finishes(tmp_path):
    # The Ctrl-C came in the pool's after-fork hook and was dropped ("Exception ignored in:
    # <function _releaseLock ...>"): the run prepared every video and exited 0
    from effvid.data import probe_video, write_video
    from effvid.data.prepare import REPORT_NAME

    src, dst = tmp_path / "src", tmp_path / "dst"
    frames = np.zeros((8, 32, 32, 3), np.uint8)
    for k in range(3):
        write_video(src / f"v{k}.mp4", frames, fps=8)
    args = ["prepare", str(src), str(dst), "--workers", "2", "--quiet"]
    proc, took = ctrl_c_as_a_worker_starts(tmp_path, src, args, forked_by="multiprocessing/pool")
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == ["effvid prepare: interrupted"], proc.stderr
    assert proc.stdout == "" and took < 10
    # stopped before any video was given to a worker: none written, no partial file
    assert sorted(p.name for p in dst.iterdir()) == [REPORT_NAME]
    assert "status: not finished" in (dst / REPORT_NAME).read_text()
    assert main(args) == 0
    assert [probe_video(dst / f"v{k}.mp4").num_frames for k in range(3)] == [8] * 3
    assert "videos: 3 written, 0 already there" in (dst / REPORT_NAME).read_text()


def test_an_error_after_a_ctrl_c_is_the_interrupt_and_workers_leave_ctrl_c_to_the_run():
    from torch.utils.data import DataLoader

    from effvid.training.interrupts import StopsOnCtrlC, ctrl_c_recorded

    # A Ctrl-C dropped where Python drops exceptions (an after-fork hook, a __del__), then the
    # error it caused (its worker ended by it): the interrupt, not "a worker died"
    with pytest.raises(KeyboardInterrupt) as raised:
        with ctrl_c_recorded():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)  # ended by the handler's KeyboardInterrupt
            except KeyboardInterrupt:
                pass  # dropped
            raise RuntimeError("DataLoader worker (pid 7) exited unexpectedly")
    assert isinstance(raised.value.__cause__, RuntimeError)
    # without a Ctrl-C an error is its own; the handler is put back either way
    with pytest.raises(RuntimeError):
        with ctrl_c_recorded():
            raise RuntimeError("DataLoader worker (pid 7) exited unexpectedly")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # a dropped Ctrl-C is raised at the next batch
    with pytest.raises(KeyboardInterrupt), ctrl_c_recorded():
        batches = iter(StopsOnCtrlC(range(3)))
        assert next(batches) == 0
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            pass
        next(batches)

    # A worker that gets a Ctrl-C (a terminal sends it to the whole process group) goes on: it
    # used to end (PyTorch's worker catches KeyboardInterrupt and returns), or die of it as it
    # started, and the run reported "a data-loading worker process died"
    with ctrl_c_recorded():
        loader = DataLoader(_SigintInWorker(), batch_size=1, num_workers=1,
                            multiprocessing_context="fork")
        assert [int(b) for b in StopsOnCtrlC(loader)] == [0, 1, 2]


def test_ctrl_c_stops_a_run_after_a_run_nested_in_it_ended():
    from effvid.training.interrupts import ctrl_c_recorded

    # e.g. prepare_folder called within another ctrl_c_recorded block: the inner block's end
    # left the outer one ignoring Ctrl-C (its handler saw no run to stop)
    with pytest.raises(KeyboardInterrupt), ctrl_c_recorded():
        with ctrl_c_recorded():
            pass
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # ended by the handler's KeyboardInterrupt
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_stop_signal_during_a_finalizer_is_raised_after_it_not_printed(monkeypatch):
    from effvid.training.interrupts import Stopped, ctrl_c_recorded

    # torchrun's SIGTERM (another process had ended) came as a DataLoader iterator's __del__
    # joined its workers: raised there, Python printed it ("Exception ignored in:
    # <function _MultiProcessingDataLoaderIter.__del__>", a traceback) above the stop line
    printed = []
    monkeypatch.setattr(sys, "unraisablehook", printed.append)
    went_on = False
    with pytest.raises(Stopped) as raised, ctrl_c_recorded(also_on=(signal.SIGTERM,)):
        _SignalInFinalizer(signal.SIGTERM)  # dropped at once: its __del__ runs here
        went_on = True
    assert printed == [] and went_on and raised.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


class _SignalInFinalizer:
    """Sends ``signum`` to its process as it is dropped, and waits for the handler there."""

    def __init__(self, signum: int):
        self.signum = signum

    def __del__(self):
        os.kill(os.getpid(), self.signum)
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:  # the handler runs by now
            pass


class _SigintInWorker:
    """Three items; loading each sends a Ctrl-C to the worker that loads it."""

    def __len__(self):
        return 3

    def __getitem__(self, i):
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:  # the handler runs by now
            pass
        return i


def test_ctrl_c_while_torch_is_imported_is_one_line(monkeypatch, capsys):
    # -X importtime reports each module as its import ends: once a module inside torch has
    # been imported, torch itself is still being imported, and that is when Ctrl-C comes. The
    # import of torch reports its end even when interrupted, so "torch is the last import" says
    # the Ctrl-C came in it; a slow test machine may miss that moment, so it tries again.
    for attempt in range(5):
        proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "effvid", "info",
                                 "tsm_resnet50"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        lines, sent = [], False
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            if not sent and line.rsplit("|", 1)[-1].strip().startswith("torch."):
                proc.send_signal(signal.SIGINT)
                sent = True
        out = proc.stdout.read()
        proc.wait(timeout=120)
        imports = [line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")]
        if imports and imports[-1] == "torch":
            break
    else:
        pytest.skip(f"Ctrl-C never came while torch was being imported: {imports[-3:]}")
    assert proc.returncode == 130 and out == ""
    assert [line for line in lines if not line.startswith("import time:")] == ["effvid info: interrupted"]

    # the handler itself, and under torchrun (which passes Ctrl-C to every process) only the
    # first process says it
    assert interrupted(["info", "--list"]) == 130 and capsys.readouterr().err == "effvid info: interrupted\n"
    monkeypatch.setenv("LOCAL_RANK", "1")
    # a rank left in the environment outside a multi-process job does not silence it
    assert interrupted(["train", "data"]) == 130 and capsys.readouterr().err == "effvid train: interrupted\n"
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert interrupted(["train", "data"]) == 130 and capsys.readouterr().err == ""


def test_import_effvid_still_gives_its_models_package():
    # the package imports effvid.models on first use (so that Ctrl-C during the import of torch
    # is caught); `import effvid; effvid.models.load_model(...)` worked before and must still
    code = ("import sys, effvid; assert 'torch' not in sys.modules; "
            "print(effvid.models.create_model is effvid.create_model, "
            "'tsm_resnet50' in effvid.models.list_models())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout == "True True\n", proc.stderr


def test_under_torchrun_an_error_is_printed_once(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "effvid", *train_args(tmp_path / "missing", tmp_path / "run"), "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("effvid train: error:")]
    assert len(lines) == 1 and "missing" in lines[0], proc.stderr
    assert not (tmp_path / "run").exists()  # the folder the failed start created is removed


# One process's loss turns NaN at its second step (rank 1's, which does not print errors).
_NAN_ON_ONE_PROCESS = """
import os, sys
import torch.nn.functional as F
from effvid.training import loop

cross_entropy, calls = F.cross_entropy, []

def nan_on_rank_1(logits, labels, *args, **kwargs):
    loss = cross_entropy(logits, labels, *args, **kwargs)
    calls.append(1)
    return loss * float("nan") if os.environ["RANK"] == "1" and len(calls) == 2 else loss

loop.F = type("F", (), {"cross_entropy": staticmethod(nan_on_rank_1)})
from effvid.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_under_torchrun_a_nan_loss_on_one_process_is_reported(tiny_data, tmp_path):
    # it was checked by the process that met it alone, which under torchrun does not print:
    # the run ended with no reason given
    driver = tmp_path / "driver.py"
    driver.write_text(_NAN_ON_ONE_PROCESS)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(driver), *train_args(tiny_data, tmp_path / "run", "--batch-size", "1"), "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("effvid train: error:")]
    assert lines == ["effvid train: error: loss is nan at epoch 1, step 2 of 4 (process 1); lower --lr "
                     "or check the data"], proc.stderr


def test_a_nan_loss_in_one_process_names_the_step(tiny_data, tmp_path, monkeypatch, capsys):
    import torch.nn.functional as F

    from effvid.training import loop

    calls = []

    def nan_at_third_step(logits, labels):
        calls.append(1)
        return F.cross_entropy(logits, labels) * (float("nan") if len(calls) == 3 else 1.0)

    monkeypatch.setattr(loop, "F", type("F", (), {"cross_entropy": staticmethod(nan_at_third_step)}))
    assert main(train_args(tiny_data, tmp_path / "run", "--batch-size", "1")) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "effvid train: error: loss is nan at epoch 1, step 3 of 8; lower --lr or check the data")


def test_a_file_system_without_locks_runs_unlocked_and_says_so(tmp_path, monkeypatch, capsys):
    # some network file systems refuse flock (ENOLCK): the run goes on, but not silently
    import errno
    import fcntl

    from effvid.training import run_lock
    from effvid.training.distributed import DistEnv

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with run_lock.hold_run_folder(tmp_path / "run", DistEnv()):
        assert (tmp_path / "run").is_dir()
    assert capsys.readouterr().err == (f"note: the file system of {tmp_path / 'run'} has no file locks: "
                                       "nothing keeps a second effvid train from writing the same folder\n")


def test_gpu_out_of_memory_is_one_line_with_what_to_change(tiny_data, tmp_path, monkeypatch, capsys):
    # CUDA's out-of-memory error, the most common end of a GPU run, was a traceback; raised here
    # on the CPU as torch raises it on the GPU
    import torch
    import torch.nn.functional as F

    from effvid import inference
    from effvid.training import evaluate as evaluate_module
    from effvid.training import loop

    # imported before predict_views is patched below: inference binds the name at import, and a
    # first import under the patch kept the fake for later tests
    assert inference.predict_views is evaluate_module.predict_views

    calls = []
    oom = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 15.89 GiB"

    def out_of_memory_in_epoch_2(logits, labels):
        calls.append(1)
        if len(calls) == 3:  # 2 steps per epoch: the first step of epoch 2
            raise torch.OutOfMemoryError(oom + "\nmore details")
        return F.cross_entropy(logits, labels)

    monkeypatch.setattr(loop, "F", type("F", (), {"cross_entropy": staticmethod(out_of_memory_in_epoch_2)}))
    run = tmp_path / "run"
    assert main(train_args(tiny_data, run, "--epochs", "2")) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"effvid train: error: the GPU ran out of memory ({oom}). A smaller --batch-size (this run: 4), "
        "fewer --num-segments (4) or a smaller --size (32) needs less; other processes on the GPU hold "
        "memory too (nvidia-smi lists them). The last completed epoch (1 of 2) is saved: continue with "
        f"effvid train --output {run} --resume once the memory is free (a resume keeps the batch size), "
        "or start a new run with a smaller --batch-size.")

    def out_of_memory(model, video, computed=None):
        raise torch.OutOfMemoryError(oom)

    monkeypatch.setattr(evaluate_module, "predict_views", out_of_memory)
    assert main(["eval", str(tiny_data), "-c", str(run / "best.safetensors"), "--workers", "0", "--quiet"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"effvid eval: error: the GPU ran out of memory ({oom}); a smaller --batch-size needs less, and "
        "other processes on the GPU hold memory too (nvidia-smi lists them)")


def _with_memory_limit():
    """A child's address space capped at 16 GB: the huge allocations below fail at once on any
    machine (without the cap, a machine that overcommits memory freely would grant them and
    then run out as they are filled)."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))


def test_cpu_out_of_memory_is_one_line_and_a_rerun_starts_over(tiny_data, tmp_path, capsys):
    # --size 100000 died with a 63-line traceback ending in "DefaultCPUAllocator: can't allocate
    # memory", where the GPU's out-of-memory error was one line; here --size 1000000: the clips'
    # resize asks for 12 TB (4 frames x 3 x 10^12 bytes) in the process (--workers 0) or in a
    # data-loading worker, whose error the loader re-raises
    run = tmp_path / "run"
    huge = ["--size", "1000000", "--scale-size", "1000000"]
    for workers in ("0", "1"):
        proc = subprocess.run([sys.executable, "-m", "effvid", *train_args(tiny_data, run, *huge, "--workers", workers)],
                              capture_output=True, text=True, timeout=300, preexec_fn=_with_memory_limit)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.splitlines()[-1] == (
            "effvid train: error: this machine ran out of memory (an allocation of 12,000.0 GB failed). A "
            "smaller --batch-size (this run: 4), fewer --num-segments (4) or a smaller --size (1000000) needs "
            "less; other processes hold memory too. No epoch was completed; start again with a smaller "
            "--batch-size or --size.")
    # The run folder holds what a run that stopped in its first epoch leaves (config.json,
    # tensorboard/), as after a Ctrl-C then: said to be so, and a rerun into it with a smaller
    # --size starts over (it is not refused as a run to resume or overwrite)
    assert main(["info", str(run)]) == 0
    assert "state        stopped before its first epoch was completed: nothing to resume" in capsys.readouterr().out
    assert main(train_args(tiny_data, run)) == 0
    assert json.loads((run / "config.json").read_text())["size"] == 32
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [0]
    # eval and predict say it as train does, with their own flags
    for command in (["predict", str(tiny_data / "val" / "left")], ["eval", str(tiny_data), "--quiet"]):
        proc = subprocess.run([sys.executable, "-m", "effvid", *command, "-c", str(run / "best.safetensors"),
                               "--size", "1000000", "--workers", "1"],
                              capture_output=True, text=True, timeout=300, preexec_fn=_with_memory_limit)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.splitlines()[-1].startswith(
            f"effvid {command[0]}: error: this machine ran out of memory (an allocation of ")
        assert proc.stderr.splitlines()[-1].endswith(
            " GB failed); a smaller --batch-size or --size needs less, and other processes hold memory too")


# Trains as `effvid train` does; once an epoch is saved, each data-loading worker stops itself
# with SIGSTOP (as `kill -STOP` does) on its first clip, after writing its pid to stopped_PID.
_STOPPED_WORKER = """
import os, signal, sys
from pathlib import Path
from torch.utils.data import get_worker_info
from effvid.cli import main
from effvid.data.datasets import VideoClipDataset

run = Path(sys.argv[sys.argv.index("--output") + 1])
load = VideoClipDataset.__getitem__

def stopped_after_first_epoch(self, i):
    if get_worker_info() is not None and (run / "last_state.pt").exists():
        (run.parent / f"stopped_{os.getpid()}").write_text("")
        os.kill(os.getpid(), signal.SIGSTOP)
    return load(self, i)

VideoClipDataset.__getitem__ = stopped_after_first_epoch
sys.exit(main(sys.argv[1:]))
"""


def test_a_stalled_worker_ends_the_run_after_the_worker_timeout_with_what_is_saved(tiny_data, tmp_path):
    # No timeout: the run waited for the stopped worker forever, silently
    driver = tmp_path / "driver.py"
    driver.write_text(_STOPPED_WORKER)
    run = tmp_path / "run"
    args = train_args(tiny_data, run, "--epochs", "2", "--workers", "2", "--worker-timeout", "4")
    proc = subprocess.Popen([sys.executable, str(driver), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        stopped = [int(p.name.split("_")[1]) for p in tmp_path.glob("stopped_*")]
        for pid in stopped:  # a worker left stopped would outlive the test
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert stopped, out + err
    assert proc.returncode == 1, out + err
    assert "Traceback" not in err and "epoch 1/2:" in out and "epoch 2/2:" not in out
    assert err.splitlines() == [
        "effvid train: error: a data-loading worker process stalled: no batch came for 4 s "
        "(--worker-timeout); it was stopped, or stuck reading a video (an unresponsive disk?). The "
        f"last completed epoch (1 of 2) is saved: continue with effvid train --output {run} --resume."], err
    # the run ended its stopped workers (SIGKILL ends a stopped process; SIGTERM waits for SIGCONT)
    for pid in stopped:
        try:
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            continue
        assert state in "ZX", (pid, state)
    # which it does
    assert subprocess.run([sys.executable, "-m", "effvid", "train", "--output", str(run), "--resume",
                           "--workers", "0"], capture_output=True, timeout=120).returncode == 0
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [0, 1]
    # a bad value is refused as the flag
    assert main(train_args(tiny_data, tmp_path / "bad", "--worker-timeout", "-1")) == 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_stops_a_run_as_ctrl_c_does_with_what_is_saved(tiny_data, tmp_path, signum):
    # docker stop, a batch scheduler or a closed terminal ended the run silently (143, 129)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "effvid", *train_args(
        tiny_data, run, "--epochs", "50", "--workers", "2")], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "last_state.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        # with its loader's workers running: PyTorch's worker handler let a SIGTERM that was not
        # from the main process kill the worker, and the main process printed a traceback
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        while not children.read_text().split() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()
        # as a scheduler or a closing terminal does: to the run and its worker (the process group)
        os.killpg(proc.pid, signum)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum, out + err
    name = signal.Signals(signum).name
    # one line: the epochs state.pt holds, and how to continue
    from effvid.training.run_folder import committed_history

    done = len(committed_history(run))
    assert done >= 1 and err.splitlines() == [f"effvid train: stopped by {name}; the last completed epoch ({done} "
                                f"of 50) is saved: continue with effvid train --output {run} --resume"], err
    assert done < 50


def test_a_run_whose_output_reader_leaves_stops_saying_what_is_saved(tiny_data, tmp_path):
    # "effvid train ... | head -3": the run stopped at its next line with status 0 and no word
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "effvid", *train_args(
        tiny_data, run, "--epochs", "50", "--workers", "2")], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]  # the data, the device, epoch 1
        proc.stdout.close()  # as head does once it has its lines
        err = proc.stderr.read()
        proc.wait(timeout=120)
    finally:
        proc.kill()
    assert lines[-1].startswith("epoch 1/50:"), lines
    assert proc.returncode == 128 + signal.SIGPIPE, err
    from effvid.training.run_folder import committed_history

    done = len(committed_history(run))
    assert 2 <= done < 50 and err.splitlines() == [
        f"effvid train: stopped, the reader of its output left (broken pipe); the last completed epoch "
        f"({done} of 50) is saved: continue with effvid train --output {run} --resume"], err
    # which continues it
    assert subprocess.run([sys.executable, "-m", "effvid", "train", "--output", str(run), "--resume",
                           "--epochs", str(done + 1), "--workers", "0"], capture_output=True,
                          timeout=120).returncode == 0
    assert len(committed_history(run)) == done + 1


def test_sigterm_before_the_first_epoch_says_nothing_is_saved(tiny_data, tmp_path, monkeypatch, capsys):
    import effvid.training.loop as loop
    from effvid.cli import build_parser
    from effvid.commands.train import run as train_command

    args = build_parser().parse_args(train_args(tiny_data, tmp_path / "run"))
    real = loop.build_datasets

    def terminated_while_reading(*a, **kw):  # the signal comes as the data is read
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # ended by the handler
        return real(*a, **kw)

    monkeypatch.setattr(loop, "build_datasets", terminated_while_reading)
    assert train_command(args) == 143
    assert capsys.readouterr().err == ("effvid train: stopped by SIGTERM before the first epoch was "
                                       "completed; nothing to resume\n")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back


STOPPED_IN_WORKER_START = """
import signal, sys, time
from pathlib import Path
from torch.utils.data import DataLoader
from effvid.training.interrupts import Stopped, StopsOnCtrlC, ctrl_c_recorded, worker_stops_quietly

def slow_start(worker_id):  # worker 0: the window a loaded machine leaves before the quiet handler, widened
    if worker_id == 0:
        Path(sys.argv[1]).touch()
        time.sleep(5)
    worker_stops_quietly(worker_id)

try:
    with ctrl_c_recorded(also_on=(signal.SIGTERM,)):
        for batch in StopsOnCtrlC(DataLoader(list(range(8)), num_workers=2, worker_init_fn=slow_start)):
            pass
except Stopped as e:
    print("stopped by", signal.Signals(e.signum).name)
    print("SIGCHLD handler from", signal.getsignal(signal.SIGCHLD).__module__)  # PyTorch's, put back
    sys.exit(128 + e.signum)
"""


def test_a_worker_killed_by_the_stop_signal_as_it_starts_prints_no_traceback(tmp_path):
    """A SIGTERM to the process group that reached a loader worker after PyTorch set its own
    handler and before worker_stops_quietly replaced it killed the worker; the stopping run then
    printed PyTorch's "DataLoader worker (pid N) is killed by signal" as an "Exception ignored"
    traceback from the loader's __del__ (seen once in the SIGTERM test above, under load)."""
    started = tmp_path / "worker_started"
    proc = subprocess.Popen([sys.executable, "-c", STOPPED_IN_WORKER_START, str(started)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(1.5)  # the main process waits for worker 0's first batch
        assert proc.poll() is None, proc.communicate()
        # worker 0 is in slow_start, with PyTorch's handler, and dies of it; worker 1 exits quietly,
        # and its SIGCHLD ran PyTorch's check of the workers, which raised for worker 0
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert (proc.returncode, err) == (143, "")
    assert out == "stopped by SIGTERM\nSIGCHLD handler from torch.utils.data._utils.signal_handling\n"


def test_a_loader_worker_ends_quietly_on_a_sigterm_from_outside():
    """A SIGTERM to the whole process group (timeout, scancel, systemd) also reaches the
    DataLoader workers. PyTorch's worker handler exits quietly only for one sent by the main
    process; from anyone else it killed the worker, and the main process, stopping the run on
    the same signal, printed 'DataLoader worker (pid N) is killed by signal: Terminated'."""
    from torch.utils.data import DataLoader

    from effvid.training.interrupts import worker_stops_quietly

    loader = DataLoader(list(range(64)), batch_size=1, num_workers=1, worker_init_fn=worker_stops_quietly)
    batches = iter(loader)
    assert int(next(batches)) == 0  # the worker has run its init
    worker = batches._workers[0]
    subprocess.run(["kill", "-TERM", str(worker.pid)], check=True)  # sent by another process
    worker.join(timeout=30)
    assert worker.exitcode == 0
    del batches
