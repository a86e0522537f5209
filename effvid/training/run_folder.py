"""The run folder: what a training run writes, and what a resume reads back.

Only the main process writes (:class:`RunWriter`). ``last_state.pt`` is each epoch's commit
point: it holds everything a resume needs, and the files derived from it (weights, plots,
``history.json``, ``bad_videos.json``) are written after it, so a resume can rewrite them
(:func:`epoch_files_missing`). Unreadable videos are kept once each, in the epoch that first
met them (:func:`first_seen`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from ..errors import command_line, not_a_regular_file
from ..models.weights import atomic_replace, load_torch_file, safetensors_problem, save_weights
from .config import TrainConfig
from .distributed import DistEnv


def on_cpu(obj):
    """``obj`` (dicts, lists and tuples of tensors and plain values) with every tensor on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(on_cpu(v) for v in obj)
    return obj


class RunWriter:
    """Everything the run writes to disk goes through here; only the main process writes."""

    # what a run writes; --overwrite removes an earlier run's before the new one starts
    RUN_FILES = ("config.json", "history.json", "last.safetensors", "last_state.pt",
                 "best.safetensors", "curves.png", "confusion.png", "bad_videos.json", "split.json")

    def __init__(self, folder: str | Path, env: DistEnv, start_epoch: int = 0, replace: bool = False,
                 tensorboard: bool = True):
        self.folder = Path(folder)
        self.enabled = env.is_main
        self.tb = None
        if self.enabled:
            if replace:
                for name in self.RUN_FILES:
                    (self.folder / name).unlink(missing_ok=True)
                shutil.rmtree(self.folder / "tensorboard", ignore_errors=True)
            self.folder.mkdir(parents=True, exist_ok=True)
            for name in self.RUN_FILES:  # atomic_replace's temp files, left by a killed process
                for tmp in self.folder.glob(f".{name}.tmp*"):
                    if tmp.is_file() and tmp.name[len(name) + 5:].isdigit():
                        tmp.unlink()
        if self.enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: a resumed run hides the points a crashed one logged after its last
            # checkpoint, so TensorBoard shows each epoch once (from epoch 0 too: a first run killed
            # after logging its first epoch, before committing it)
            self.tb = SummaryWriter(str(self.folder / "tensorboard"), purge_step=start_epoch)

    def text(self, name: str, content: str) -> None:
        if self.enabled:
            atomic_replace(self.folder / name, lambda tmp: Path(tmp).write_text(content))

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        if self.tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.tb.add_scalar(f"{prefix}/{key}", value, step)
            self.tb.flush()

    def weights(self, model: nn.Module, name: str, metadata: dict) -> None:
        if self.enabled:
            save_weights(model, self.folder / name, metadata)

    def state(self, state: dict, name: str) -> None:
        if self.enabled:
            # CPU tensors: a GPU run's state then loads anywhere, also with a plain
            # torch.load on a machine without CUDA (torch.save copies them to the host anyway)
            atomic_replace(self.folder / name, lambda tmp: torch.save(on_cpu(state), tmp))

    def epoch_files(self, model: nn.Module, history: list[dict], classes: list[str], metadata: dict,
                    is_best: bool) -> None:
        """What is derived from a committed epoch (``history[-1]``, ``model`` its weights):
        last.safetensors, best.safetensors when that epoch is the best, the plots,
        bad_videos.json when a video was unreadable, and last history.json, whose being up to
        date says that the others are (epoch_files_missing)."""
        epoch_meta = metadata | {"epoch": history[-1]["epoch"] + 1}
        self.weights(model, "last.safetensors", epoch_meta)
        if is_best:
            self.weights(model, "best.safetensors", epoch_meta)
        self.plots(history, classes)
        bad = bad_videos_list(history)
        if bad:
            self.text("bad_videos.json", json.dumps(bad, indent=1))
        self.text("history.json", json.dumps(history, indent=1))

    def plots(self, history: list[dict], classes: list[str]) -> None:
        if not self.enabled or not history:
            return
        from .plots import plot_confusion, plot_curves

        plot_curves(history, self.folder / "curves.png")
        last = history[-1].get("val")
        if last is not None:
            plot_confusion(last["confusion"], classes, self.folder / "confusion.png",
                           title=f"Validation, epoch {history[-1]['epoch'] + 1}")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def first_seen(bad: list, seen: set[str]) -> list[list[str]]:
    """The [path, reason] of ``bad`` whose path is not in ``seen``, each path once; adds them
    to ``seen``. An epoch's record keeps only these (``bad_new``) and a count: with the full
    list in every epoch, 2,400 broken Kinetics files made history.json 21 MB after 50 epochs,
    rewritten, and dumped into last_state.pt, every epoch."""
    new = []
    for path, reason in bad:
        if path not in seen:
            seen.add(path)
            new.append([path, reason])
    return new


def bad_videos_list(history: list[dict]) -> list[dict]:
    """Every video the run found unreadable, once, with the epoch that first met it: the
    contents of bad_videos.json."""
    return [{"path": path, "reason": reason, "epoch": h["epoch"]}
            for h in history for path, reason in h["bad_new"]]


def upgrade_bad_samples(history: list[dict]) -> None:
    """Records written before ``bad_new`` listed every unreadable video of their epoch under
    ``bad_samples``: rewrite them as count and first seen, as the run would now have written
    them, so that a resumed older run goes on in one format (and its history shrinks)."""
    seen: set[str] = set()
    for h in history:
        if "bad_samples" in h:
            bad = h.pop("bad_samples")
            h["bad_count"] = len({path for path, _ in bad})
            h["bad_new"] = first_seen(bad, seen)
        else:
            seen.update(path for path, _ in h["bad_new"])


def read_split(folder: Path) -> dict | None:
    """A run's split.json (:func:`split_record`), or None where it has none (runs from before
    it was saved)."""
    path = Path(folder) / "split.json"
    try:
        split = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    if not (isinstance(split, dict) and isinstance(split.get("train"), list) and isinstance(split.get("val"), list)):
        raise ValueError(f"{path} is not a split (a JSON object with lists 'train' and 'val')")
    return split


def absolute_bad_paths(history: list[dict], videos: list[str]) -> None:
    """Runs before paths were made absolute recorded unreadable videos as DATA was spelled:
    relative ones before a resume, absolute ones after it (config.json keeps DATA absolute), so
    bad_videos.json listed a video twice. Rewrite each relative path as the one video of the
    run's data (``videos``, absolute) whose path ends with it, and keep each video once, in the
    epoch that first met it."""
    if all(os.path.isabs(path) for h in history for path, _ in h["bad_new"]):
        return
    by_tail: dict[str, str | None] = {}
    for video in videos:
        parts = Path(video).parts
        for k in range(1, len(parts)):
            tail = os.path.join(*parts[k:])
            by_tail[tail] = video if by_tail.get(tail, video) == video else None  # None: two videos
    seen: set[str] = set()
    for h in history:
        kept = []
        for path, reason in h["bad_new"]:
            if not os.path.isabs(path):
                parts = Path(os.path.normpath(path)).parts
                tail = os.path.join(*[p for p in parts if p != os.pardir] or [path])
                path = by_tail.get(tail) or path
            if path not in seen:
                seen.add(path)
                kept.append([path, reason])
        h["bad_new"] = kept


def read_state(folder: Path, mmap: bool = False) -> dict | None:
    """``folder``'s last_state.pt, or None where it has none (``mmap``: its tensors mapped, not
    read, for the plain values). One that cannot be read (truncated by a full disk or a copy that
    did not finish) is a ValueError saying so and what to do, in :func:`missing_state_advice`'s
    words: it was PyTorch's "PytorchStreamReader failed reading zip archive: ... internal miniz
    error ..." paragraph."""
    path = folder / "last_state.pt"
    if not path.exists():
        return None
    if what := not_a_regular_file(path):  # a folder or a FIFO read as "weights file not found"
        raise ValueError(missing_state_advice(folder, f"is {what}"))
    try:
        state = load_torch_file(path, mmap=mmap)  # weights_only: tensors and plain data only
    except ValueError as e:
        cause = e.__cause__
        why = (f"cannot be read ({cause.strerror})" if isinstance(cause, OSError) and cause.strerror
               else "is damaged (truncated, or not a file effvid wrote)")
        raise ValueError(missing_state_advice(folder, why)) from e
    if not (isinstance(state, dict) and isinstance(state.get("history"), str)):  # every state has it
        raise ValueError(missing_state_advice(folder, "is not a run's resume state (it holds no history)"))
    return state


def load_resume_state(folder: Path, mmap: bool = False) -> dict | None:
    """The last completed epoch's training state in ``folder``, or None if there is none
    (``mmap``: its tensors mapped, not read, for the plain values)."""
    try:
        return read_state(folder, mmap)
    except ValueError as e:
        raise ValueError(f"cannot resume {folder}: {e}") from e


def check_history(history, source: Path) -> list[dict]:
    """``history`` (read from ``source``) if it is a list of epoch records, else a ValueError
    naming the file: valid JSON of another shape failed later with a TypeError."""
    if not (isinstance(history, list) and all(
            isinstance(h, dict) and isinstance(h.get("epoch"), int) and isinstance(h.get("train"), dict)
            and isinstance(h.get("val"), dict) and ("bad_new" in h or "bad_samples" in h) for h in history)):
        raise ValueError(f"{source} is not a run's history (a JSON list of epoch records with "
                         "'epoch', 'train', 'val' and 'bad_new')")
    return history


def resume_command(folder: Path, *options: str, state: dict | None = None, data: tuple = ()) -> str:
    """The command that continues the run in ``folder`` (with ``options``, such as fewer
    --workers, and ``data``, the words of DATA and --val-data before --output): under torchrun
    with the processes its state (``state``, else read from ``folder``) was trained with, as a
    resume with another number is refused (it would change the batch); every hint printed
    "effvid train --output RUN --resume", which a run of 2 processes refused."""
    if state is None:
        try:
            state = read_state(folder, mmap=True) or {}
        except ValueError:  # damaged: its resume says so
            state = {}
    world = int(state.get("world_size", 1))
    local = int(state.get("local_world_size", world))  # states before it: one machine
    words = ("train", *data, "--output", folder, "--resume", *options)
    if world <= 1:
        return command_line("effvid", *words)
    machines = ("--nnodes", world // local) if 0 < local < world else ()
    return command_line("torchrun", *machines, "--nproc-per-node", local, "-m", "effvid", *words)


def committed_history(folder: Path) -> list[dict] | None:
    """The records of the epochs committed in ``folder`` (its last_state.pt's), or None when it
    has no state. history.json is written after the commit point and may be an epoch behind:
    a Ctrl-C between the two writes was reported, and shown by effvid info, as an epoch fewer
    than a resume continues from. The state's tensors are mapped, not read."""
    state = read_state(folder, mmap=True)
    if state is None:
        return None
    history = check_history(json.loads(state["history"]), folder / "last_state.pt")
    upgrade_bad_samples(history)  # runs written before bad_new
    return history


def epoch_files_missing(folder: Path, history: list[dict]) -> bool:
    """Whether a crash after the last commit point left the files derived from it unwritten
    (history.json, written last of them, is behind the committed history)."""
    try:
        return json.loads((folder / "history.json").read_text()) != history
    except (OSError, ValueError):
        return True


def best_epoch(history: list[dict], best: float) -> int | None:
    """The epoch best.safetensors holds: the first to reach ``best``."""
    return next((h["epoch"] for h in history if h["val"]["top1"] == best), None)


def last_epoch_is_best(history: list[dict], best: float) -> bool:
    return bool(history) and best_epoch(history, best) == history[-1]["epoch"]


def drop_old_confusions(history: list[dict], best: float) -> None:
    """Keep the validation confusion matrix of the last epoch and of the best one (the epoch
    best.safetensors holds) only: a matrix per epoch made history.json, rewritten every
    epoch, 65 MB and 5 s to write after 50 epochs of 400 classes (last_state.pt 24 MB)."""
    keep = best_epoch(history, best)
    for h in history[:-1]:
        if h["epoch"] != keep:
            h["val"].pop("confusion", None)


def run_left_without_state(folder: Path) -> list[str]:
    """The files of a run that ``folder`` holds besides its resume state (history.json and the
    weights): a run whose last_state.pt is gone, which a new run would overwrite."""
    return [name for name in ("history.json", "best.safetensors", "last.safetensors") if (folder / name).is_file()]


def missing_state_advice(folder: Path, unusable: str | None = None) -> str:
    """What to say of a run without its resume state, or with one that cannot be used
    (``unusable`` says why: "is damaged (...)"): why it cannot be resumed, and the ways on."""
    weights = next((folder / n for n in ("last.safetensors", "best.safetensors")
                    if (folder / n).is_file() and safetensors_problem(folder / n) is None), None)
    ways = (f"start a new run from its weights with {command_line('--init-weights', weights)} --output NEW, "
            "or replace it with --overwrite" if weights else "replace it with --overwrite")
    state = f"{folder / 'last_state.pt'} {unusable}" if unusable else "last_state.pt is missing"
    return f"its resume state {state}, so the run cannot be continued exactly: {ways}"


def check_run_folder(cfg: TrainConfig, resume: dict | None, env: DistEnv) -> None:
    """Refuse what would silently damage a run: a new run over an existing one, and a resume
    with settings that differ from the run's (it would not continue exactly)."""
    out = Path(cfg.output)
    if resume is None:
        if cfg.overwrite:
            return
        if (out / "last_state.pt").exists():  # not resumed: --resume was not given
            try:  # a damaged state: --resume would refuse it, so give the ways on that it gives
                read_state(out, mmap=True)
            except ValueError as e:
                raise ValueError(f"{out} already holds a run, but {e}") from None
            raise ValueError(f"{out} already holds a run: continue it with --resume, write the new "
                             "run elsewhere with --output, or replace it with --overwrite")
        # without its resume state, a run's weights would still be overwritten by the new run's
        # (and a --resume would start from scratch over them)
        left = run_left_without_state(out)
        if left:
            raise ValueError(f"{out} already holds a run ({', '.join(left)}), but {missing_state_advice(out)}")
        return
    if "config" in resume:  # states written before this check existed have no config
        from ..runtime import resolve_device

        diffs = cfg.resume_differences(json.loads(resume["config"]), on_cpu=resolve_device(cfg.device).type == "cpu")
        if diffs:
            raise ValueError(f"cannot resume {out} with changed settings ({'; '.join(diffs)}): "
                             f"resume it as it was ({resume_command(out, state=resume)}), or "
                             "start a new run with another --output")
    # --batch-size is per process: another number of processes changes the effective batch,
    # the steps per epoch and the data shards, so the run would not continue the same way
    saved_world = resume.get("world_size", env.world_size)  # older states do not say
    if saved_world != env.world_size:
        raise ValueError(f"cannot resume {out} with {env.world_size} process(es): it was trained with "
                         f"{saved_world} (effective batch {saved_world * cfg.batch_size}, now "
                         f"{env.world_size * cfg.batch_size}); resume it with {saved_world} "
                         f"({resume_command(out, state=resume)}), or start a new run from its weights "
                         f"({command_line('--init-weights', out / 'last.safetensors')} --output NEW)")
