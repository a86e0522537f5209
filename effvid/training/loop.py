"""The training loop, readable top to bottom: ``train(config)``.

Structure (also what runs under torchrun, one process per GPU):
  1. set up: seed, process group, device
  2. data: datasets, samplers (:func:`build_sampler`), loaders
  3. model, optimiser (classifier LR multiplier, no weight decay on BN and biases), schedule
  4. resume from the last checkpoint if asked; only then the run folder and config.json, so
     a failed start writes nothing (but the lock file that keeps a second run out, run_lock.py)
  5. per epoch: train, evaluate, log, write checkpoint (atomically) and the best model, plots

Only the main process writes files (:class:`RunWriter`). Bad videos are skipped by the data
pipeline and reported at the end of each epoch with their paths; history.json lists each once,
in the epoch that first met it, and bad_videos.json all of them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from .. import runtime
from ..data import collate_clips, find_class_file, split_folder_kind
from ..models import create_model
from ..errors import UserError
from ..models.weights import (atomic_replace, check_state_dict_fits, load_torch_file, load_weights,
                              save_weights)
from .config import INPUT_PATHS, TrainConfig
from .distributed import (DistEnv, all_gather_objects, all_reduce_sum, any_process, broadcast_buffers,
                          process_device,
                          build_sampler, close_distributed, init_distributed, set_sampler_epoch)
from .evaluate import amp_dtype, autocast, bad_videos_report, evaluate, no_readable_clips
from .interrupts import StopsOnCtrlC, ctrl_c_recorded
from .metrics import ClassificationMeter, per_class_report
from .progress import TimedWait, progress_bar
from .run_lock import hold_run_folder


def on_cpu(obj):
    """``obj`` (dicts, lists and tuples of tensors and plain values) with every tensor on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(on_cpu(v) for v in obj)
    return obj


def resolve_device(name: str) -> torch.device:
    try:
        return runtime.resolve_device(name)
    except ValueError as e:
        raise ValueError(f"bad config value device={e}") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
            # checkpoint, so TensorBoard shows each epoch once
            self.tb = SummaryWriter(str(self.folder / "tensorboard"), purge_step=start_epoch or None)

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


def split_record(cfg: TrainConfig, seed: int, train_set, val_set) -> dict:
    """What split.json keeps of a held-out split: each side's videos by :func:`split_key`, so
    that a resume (and ``effvid eval --held-out``) keeps them where they were when DATA changed."""
    from ..data import split_key

    root = split_root(cfg)
    return {"seed": seed, "val_fraction": cfg.val_fraction,
            "train": [split_key(s.path, root) for s in train_set.samples],
            "val": [split_key(s.path, root) for s in val_set.samples]}


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


def split_changes(previous: dict, current: dict) -> str | None:
    """One line on how the videos of ``current`` differ from those of ``previous`` (two
    :func:`split_record`), or None when they are the same videos on the same sides."""
    before = {k: "train" for k in previous["train"]} | {k: "val" for k in previous["val"]}
    now = {k: "train" for k in current["train"]} | {k: "val" for k in current["val"]}
    added, removed = now.keys() - before.keys(), before.keys() - now.keys()
    moved = sum(now[k] != before[k] for k in now.keys() & before.keys())
    if not (added or removed or moved):
        return None
    new_val = sum(now[k] == "val" for k in added)
    return (f"the data has changed since the run started: {len(added)} video(s) added, "
            f"{len(removed)} removed; {moved} video(s) changed sides; validation: "
            f"{len(previous['val'])} -> {len(current['val'])} videos ({new_val} of them added)")


def _one_edit_apart(a: str, b: str) -> bool:
    """Whether one letter substituted, inserted or deleted makes ``a`` into ``b``."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = next((k for k in range(len(a)) if a[k] != b[k]), len(a))
    return a[i + (len(a) == len(b)):] == b[i + 1:]


def data_summary(train_set, val_set, cfg: TrainConfig, seed: int) -> list[str]:
    """The run's first word on its data: one line of counts, and a warning for each class the
    model cannot learn (no training video) and each label that looks like a typo (a class of
    one training video one letter away from a class of more: "jumpin" beside "jumping")."""
    classes = train_set.classes
    trains = np.bincount(train_set.labels, minlength=len(classes))
    held = (f" ({100 * cfg.val_fraction:g}% of each class held out, seed {seed})"
            if splits_by_fraction(cfg) else "")
    lines = [f"data: {len(classes)} classes, {len(train_set):,} training and {len(val_set):,} "
             f"validation videos{held}"]
    untrained = [c for c, n in zip(classes, trains) if n == 0]
    if untrained:
        names = ", ".join(untrained[:10]) + (f" and {len(untrained) - 10} more" if len(untrained) > 10 else "")
        one = len(untrained) == 1
        lines.append(f"warning: {len(untrained)} of {len(classes)} classes {'has' if one else 'have'} no "
                     f"training videos, so the model cannot learn {'it' if one else 'them'}: {names}")
    for c, n in zip(classes, trains):
        if n != 1:
            continue
        near = [(o, m) for o, m in zip(classes, trains) if m > 1 and _one_edit_apart(c, o)]
        if near:
            other, m = max(near, key=lambda pair: pair[1])
            lines.append(f"warning: class {c!r} has 1 training video and {other!r} has {m}: is "
                         f"{c!r} a typo of {other!r}? (each label is a class)")
    return lines


def unlearnable_classes(train_set, unreadable: set[str]) -> list[str]:
    """The classes that have training videos, all of them unreadable (a class folder holding
    one zero-byte file): listed, they count in the summary, but nothing trains them."""
    paths: dict[int, list[str]] = {}
    for s in train_set.samples:
        paths.setdefault(s.label, []).append(s.path)
    return [train_set.classes[label] for label, ps in sorted(paths.items())
            if all(p in unreadable for p in ps)]


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


def load_resume_state(folder: Path) -> dict | None:
    """The last completed epoch's training state in ``folder``, or None if there is none."""
    path = folder / "last_state.pt"
    if not path.exists():
        return None
    return load_torch_file(path)  # weights_only: tensors and plain data only


def committed_history(folder: Path) -> list[dict] | None:
    """The records of the epochs committed in ``folder`` (its last_state.pt's), or None when it
    has no state. history.json is written after the commit point and may be an epoch behind:
    a Ctrl-C between the two writes was reported, and shown by effvid info, as an epoch fewer
    than a resume continues from. The state's tensors are mapped, not read."""
    path = folder / "last_state.pt"
    if not path.exists():
        return None
    history = json.loads(load_torch_file(path, mmap=True)["history"])
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


def check_run_folder(cfg: TrainConfig, resume: dict | None, env: DistEnv) -> None:
    """Refuse what would silently damage a run: a new run over an existing one, and a resume
    with settings that differ from the run's (it would not continue exactly)."""
    out = Path(cfg.output)
    if resume is None:
        if not cfg.overwrite and any((out / f).exists() for f in ("last_state.pt", "history.json")):
            raise ValueError(f"{out} already holds a run: continue it with --resume, write the new "
                             "run elsewhere with --output, or replace it with --overwrite")
        return
    if "config" in resume:  # states written before this check existed have no config
        diffs = cfg.resume_differences(json.loads(resume["config"]))
        if diffs:
            raise ValueError(f"cannot resume {out} with changed settings ({'; '.join(diffs)}): "
                             f"resume it as it was (effvid train --output {out} --resume), or "
                             "start a new run with another --output")
    # --batch-size is per process: another number of processes changes the effective batch,
    # the steps per epoch and the data shards, so the run would not continue the same way
    saved_world = resume.get("world_size", env.world_size)  # older states do not say
    if saved_world != env.world_size:
        raise ValueError(f"cannot resume {out} with {env.world_size} process(es): it was trained with "
                         f"{saved_world} (effective batch {saved_world * cfg.batch_size}, now "
                         f"{env.world_size * cfg.batch_size}); resume it with {saved_world} "
                         "(torchrun --nproc-per-node), or start a new run from its weights "
                         f"(--init-weights {out / 'last.safetensors'} --output NEW)")


def run_seed(cfg: TrainConfig, env: DistEnv, resume: dict | None) -> int:
    """The run's seed: a resumed run's own, else ``cfg.seed``, else the clock's; the same on
    every process (the training shards are permutations that must agree)."""
    if resume is not None:
        return int(resume["seed"])
    if cfg.seed is not None:
        return cfg.seed
    return int(all_gather_objects(int(time.time()), env)[0])  # rank 0's clock


def match_shift_wrappers(state: dict, own: dict) -> dict:
    """``state``'s keys as ``own`` names them where they differ only by the temporal shift's
    wrapper: a TSM's shifted conv is ``...conv1.net.weight`` and the same conv of a TSN
    ``...conv1.weight``, so the weights of one start the other (a TSN's into a TSM, as TSM
    starts from 2D weights)."""
    own_unwrapped = {k.replace(".net.", "."): k for k in own}
    out = {}
    for key, value in state.items():
        if key not in own:  # a TSN key in a TSM, or a TSM key in a TSN
            key = own_unwrapped.get(key.replace(".net.", "."), key)
        out[key] = value
    return out


def load_init_weights(model: nn.Module, path: str, classes: list[str], name: str,
                      size: int | None = None) -> str:
    """Start from an effvid checkpoint (fine-tuning). Its classifier is kept when it was trained
    on the same classes, in the same order, and replaced otherwise. An original TSM release
    checkpoint (.pth) gives its backbone only (it has no class names). Returns what was loaded,
    for the run's first lines: which classifier, and the settings the source was trained with
    that differ from ``model``'s (the weights load, but compute something else: a TSN's into a
    TSM, a bidirectional shift's into a causal one; fine-tuning adapts them), and the frame size
    it was trained at when it is not this run's ``size``."""
    new_fc = f"a new classifier for {len(classes)} classes"
    if Path(path).suffix != ".safetensors":  # read as safetensors it failed: "header too large"
        from ..models.tsm_checkpoint import tsm_init_state_dict

        model.load_state_dict(tsm_init_state_dict(path, model), strict=False)
        return f"starting from {path}: the original TSM checkpoint's backbone, {new_fc}"
    state, meta = load_weights(path)
    state = match_shift_wrappers(state, model.state_dict())
    kept = meta.get("classes") == classes
    if not kept:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    check_state_dict_fits(state, model.state_dict(), f"{path} does not match {name}",
                          may_miss=lambda k: k in ("fc.weight", "fc.bias"))
    model.load_state_dict(state, strict=False)
    config = getattr(model, "config", {})
    differs = [f"{k} {meta.get(k, '-')} (this run: {config.get(k, '-')})"
               for k in ("name", "shift_div", "shift_place", "shift_direction", "num_segments")
               if (k in meta or k in config) and meta.get(k) != config.get(k)]
    trained_size = meta.get("extra", {}).get("size")  # not a model setting: the training's input
    if size is not None and trained_size is not None and trained_size != size:
        differs.append(f"size {trained_size} (this run: {size})")
    which = "all its weights, classifier included" if kept else f"its backbone, {new_fc}"
    return f"starting from {path}: {which}" + (f"; it was trained as {', '.join(differs)}" if differs else "")


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (or AdamW); the new classifier learns faster (TSM: 5x weight, 10x
    bias); no weight decay on BatchNorm parameters and biases."""
    groups = {"decay": [], "no_decay": [], "fc_weight": [], "fc_bias": []}
    fc = getattr(model, "fc", None)
    fc_params = {id(p): name for name, p in (fc.named_parameters() if fc is not None else [])}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if id(p) in fc_params:
            groups["fc_" + fc_params[id(p)]].append(p)
        elif p.ndim <= 1:
            groups["no_decay"].append(p)
        else:
            groups["decay"].append(p)
    settings = {"decay": (1.0, cfg.weight_decay), "no_decay": (1.0, 0.0),
                "fc_weight": (cfg.fc_lr_mult, cfg.weight_decay),
                "fc_bias": (2 * cfg.fc_lr_mult, 0.0)}
    param_groups = [{"params": ps, "lr_mult": settings[k][0], "weight_decay": settings[k][1],
                     "lr": cfg.lr * settings[k][0]} for k, ps in groups.items() if ps]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(param_groups, lr=cfg.lr)
    return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum)


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up, then cosine decay to zero or x0.1 steps at the given epochs."""
    epoch = step / steps_per_epoch
    if epoch < cfg.warmup_epochs:
        return min(1.0, (step + 1) / (cfg.warmup_epochs * steps_per_epoch))
    if cfg.schedule == "step":
        return 0.1 ** sum(epoch >= s for s in cfg.lr_steps)
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-8)
    return 0.5 * (1 + math.cos(math.pi * min((epoch - cfg.warmup_epochs) / span, 1.0)))


def splits_by_fraction(cfg: TrainConfig) -> bool:
    """Whether the run holds out ``val_fraction`` of DATA: neither ``val_data`` nor DATA's own
    parts (train/ and val/, HMDB51's or UCF101's split folder) give the validation videos."""
    from ..data import has_parts

    return cfg.val_data is None and not has_parts(cfg.data)


def split_root(cfg: TrainConfig) -> str:
    """The folder a held-out split names its videos relative to (:func:`split_key`): DATA, or
    for a list or annotation file the folder its relative paths start from."""
    data = Path(cfg.data)
    return str(data if data.is_dir() else Path(cfg.data_root) if cfg.data_root else data.parent)


def unused_val_fraction(cfg: TrainConfig) -> str | None:
    """Why a ``val_fraction`` other than the default would be ignored (the validation videos
    come from elsewhere), or None: refused, not ignored, as official_split is."""
    if cfg.val_fraction == TrainConfig.val_fraction or splits_by_fraction(cfg):
        return None
    if cfg.val_data is not None:
        where = f"--val-data {cfg.val_data} gives the validation videos"
    elif split_folder_kind(cfg.data):
        where = f"{cfg.data} is a split folder, whose published split gives the validation videos"
    else:
        where = f"{cfg.data} has train/ and val/ folders, whose val/ validates"
    return (f"val_fraction={cfg.val_fraction} holds out part of DATA for validation, but {where}; "
            "nothing is held out (drop --val-fraction)")


def _for_val_data(message: str, missing: bool = False) -> str:
    """A reader's message about --val-data's videos: the readers name --data-root, the folder
    of DATA's, which --val-data-root replaces for the validation videos."""
    if "--data-root" in message:
        return message.replace("--data-root", "--val-data-root")
    return message + (" (--val-data-root gives the folder of --val-data's videos)" if missing else "")


def build_datasets(cfg: TrainConfig, seed: int | None = None, notice=None, previous_split: dict | None = None):
    """Training and validation sets: with ``val_data``, all of ``data`` and all of ``val_data``
    (its val/ part if it has train/ and val/; its relative paths resolved against
    ``val_data_root``, default ``data_root``); without, ``data``'s val/ part or a split of it
    drawn with the run's ``seed`` (the clock's for a seedless run, which its config.json and
    state keep: a resume, or a new run from that config.json, gets the same split).
    ``previous_split`` (a run's split.json, :func:`split_record`) keeps its videos on their
    sides (:func:`~effvid.data.stratified_split`).
    ``notice`` (e.g. ``print``) is told of the listed videos a Kinetics CSV's download lacks."""
    seed = (cfg.seed or 0) if seed is None else seed
    from ..data import (TestTransform, TrainTransform, VideoClipDataset, build_dataset,
                        has_parts, read_class_file, stratified_split)

    if cfg.official_split != 1 and not any(split_folder_kind(p) for p in (cfg.data, cfg.val_data) if p):
        # it would be ignored: only these folders have published splits
        raise ValueError(f"official_split={cfg.official_split} picks a split of HMDB51's or UCF101's "
                         f"split folder (testTrainMulti_7030_splits, ucfTrainTestlist); {cfg.data} is "
                         "not one (drop --official-split)")
    train_tf = TrainTransform(cfg.size, scales=cfg.crop_scales, flip=cfg.flip)
    val_tf = TestTransform(cfg.size, cfg.test_scale_size)
    # read once, for both sets: the validation data's integer labels are the same numbers
    class_file = cfg.classes or find_class_file(cfg.data)
    class_numbers = read_class_file(class_file) if class_file else None
    common = dict(num_segments=cfg.num_segments, sampling=cfg.sampling, root=cfg.data_root,
                  val_fraction=cfg.val_fraction, seed=seed, class_numbers=class_numbers,
                  official_split=cfg.official_split, notice=notice)
    if splits_by_fraction(cfg):  # a folder of class folders, or a list or annotation file
        everything = build_dataset(cfg.data, split="all", train=True, transform=train_tf, **common)
        train_samples, val_samples = stratified_split(everything.samples, cfg.val_fraction, seed,
                                                      root=split_root(cfg), previous=previous_split)
        classes = everything.classes
        train_set = VideoClipDataset(train_samples, classes, cfg.num_segments, True, train_tf, cfg.sampling)
        val_set = VideoClipDataset(val_samples, classes, cfg.num_segments, False, val_tf, cfg.sampling)
    elif cfg.val_data is None:
        train_set = build_dataset(cfg.data, split="train", train=True, transform=train_tf, **common)
        val_set = build_dataset(cfg.data, split="val", train=False, transform=val_tf,
                                classes=train_set.classes, **common)
    else:
        train_set = build_dataset(cfg.data, split="all", train=True, transform=train_tf, **common)
        val_split = "val" if has_parts(cfg.val_data) else "all"  # its validation (test) part
        val_notice = notice and (lambda text: notice(_for_val_data(text)))
        try:
            val_set = build_dataset(cfg.val_data, split=val_split, train=False, transform=val_tf,
                                    classes=train_set.classes,
                                    **dict(common, root=cfg.val_data_root or cfg.data_root, notice=val_notice))
        except FileNotFoundError as e:
            raise FileNotFoundError(e.errno, _for_val_data(e.strerror, missing=True), e.filename) from None
        except ValueError as e:
            raise ValueError(_for_val_data(str(e))) from None
    if len(train_set.classes) < 2:
        raise ValueError(f"{cfg.data} has {len(train_set.classes)} class ({', '.join(train_set.classes)}); "
                         "a classifier needs at least 2")
    if len(val_set) == 0:
        raise ValueError(f"no validation videos: {cfg.data} has too few videos per class for "
                         f"val_fraction={cfg.val_fraction} (each class needs 2); add videos or "
                         "pass validation data (--val-data)")
    return train_set, val_set


def print_found_class_file(cfg: TrainConfig) -> None:
    """Say which class file build_datasets reads without --classes: the one beside DATA, else
    the one beside --val-data, which numbers that data's integer labels."""
    if cfg.classes:
        return
    if (found := find_class_file(cfg.data)) is not None:
        print(f"class names and numbers from {found}, found beside the data (--classes FILE to give another)")
    elif split_folder_kind(cfg.data) == "ucf101":
        print(f"class names and numbers from {Path(cfg.data) / 'classInd.txt'}, UCF101's split folder")
    elif cfg.val_data and (found := find_class_file(cfg.val_data)) is not None:
        print(f"class numbers of {cfg.val_data} from {found}, found beside it (--classes FILE to give another)")


def optimizer_step(loss: torch.Tensor, model: nn.Module, optimizer, scaler, clip_grad: float | None) -> None:
    """Backward and update. With float16 autocast ``scaler`` scales the loss, so that small
    gradients do not flush to zero, and unscales the gradients before clipping (the threshold
    is for the true norm); a step whose gradients overflowed is skipped and the scale lowered.
    Disabled (float32, bfloat16), it passes everything through."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip_grad:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    scaler.step(optimizer)
    scaler.update()


def epoch_report(record: dict, epochs: int, classes: list[str], is_best: bool) -> str:
    """The lines that say how an epoch went (``record``, its history entry)."""
    train_stats, val_stats = record["train"], record["val"]
    waited = (f", {100 * train_stats['data_wait']:.0f}% waiting for data"
              if "data_wait" in train_stats else "")  # older runs' records do not say
    lines = [f"epoch {record['epoch'] + 1}/{epochs}: train loss {train_stats['loss']:.3f} "
             f"top1 {100 * train_stats['top1']:.1f}% | val top1 {100 * val_stats['top1']:.1f}%"
             + (f" top5 {100 * val_stats['top5']:.1f}%" if "top5" in val_stats else "")
             + f" | {record['seconds']:.0f}s{waited}" + (" | best" if is_best else "")]
    if "per_class" in val_stats:
        lines.append("  val top-1 per class: " + per_class_report(classes, val_stats["per_class"]))
    return "\n".join(lines)


def data_wait_hint(data_wait: float, device: torch.device, workers: int, epoch: int) -> str | None:
    """A note for a GPU run that spent most of an epoch waiting for decoded clips. (On a CPU the
    decoding workers and the step share the cores: more workers do not help there.)"""
    if device.type != "cuda" or data_wait < 0.5:
        return None
    return (f"note: the GPU waited for data {100 * data_wait:.0f}% of epoch {epoch + 1}: decoding "
            f"is the bottleneck. More --workers (now {workers}; this machine has {os.cpu_count()} "
            "CPUs) or a copy of the videos at training size (effvid prepare) feed it faster")


def train_one_epoch(model, loader, optimizer, scaler, precision, cfg, device, epoch, steps_per_epoch, env):
    model.train()
    meter = ClassificationMeter(model.num_classes)
    bad: list = []
    start, seen = time.perf_counter(), 0
    batches = TimedWait(StopsOnCtrlC(loader))
    bar = progress_bar(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", enabled=cfg.progress and env.is_main)
    for i, batch in enumerate(bar):
        bad.extend(batch["bad"])
        # A batch whose clips were all unreadable is skipped, by every process at once: DDP
        # all-reduces in each backward, so a process that skipped alone would pair its next
        # step's gradients with the others' current ones (tests/test_distributed.py).
        if any_process(len(batch["label"]) == 0, env, device):
            continue
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * group["lr_mult"] * lr_factor(cfg, epoch * steps_per_epoch + i, steps_per_epoch)
        video = batch["video"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        with autocast(precision):
            logits = model(video)
            loss = F.cross_entropy(logits.float(), labels)
        # Checked by every process together: under torchrun only the first process reports
        # errors, and one that stopped alone left the others without the reason.
        if any_process(not torch.isfinite(loss).item(), env, device):
            losses = all_gather_objects(loss.item(), env)
            rank = next(r for r, value in enumerate(losses) if not math.isfinite(value))
            where = f" (process {rank})" if env.distributed else ""
            raise UserError(f"loss is {losses[rank]} at epoch {epoch + 1}, step {i + 1} of "
                            f"{steps_per_epoch}{where}; lower --lr or check the data")
        optimizer_step(loss, model, optimizer, scaler, cfg.clip_grad)
        meter.update(logits, labels, loss.item())
        seen += len(labels)
        s = meter.summary()
        # refresh=False: the bar redraws on its own schedule (every 30 s into a log), with a
        # current batch count; refreshing here wrote one stale line per batch
        bar.set_postfix(loss=f"{s['loss']:.3f}", acc=f"{100 * s['top1']:.1f}",
                        clips_s=f"{seen / (time.perf_counter() - start):.1f}", refresh=False)
    meter.load_state(all_reduce_sum(meter.state().to(device), env).cpu())
    if meter.count == 0:
        raise no_readable_clips(f"epoch {epoch + 1} trained", "training video", bad, env.distributed)
    stats = meter.summary()
    stats["lr"] = cfg.lr * lr_factor(cfg, (epoch + 1) * steps_per_epoch - 1, steps_per_epoch)
    # the share of the epoch the step stood idle waiting for batches, averaged over processes
    waited = torch.tensor([batches.seconds, time.perf_counter() - start], dtype=torch.float64)
    waited = all_reduce_sum(waited.to(device), env).cpu()
    stats["data_wait"] = float(waited[0] / waited[1]) if waited[1] > 0 else 0.0
    return stats, bad


def train(cfg: TrainConfig) -> dict:
    # 1. set up
    cfg.validate()
    device = resolve_device(cfg.device)
    # Ctrl-C stops the run also when it comes as the loaders start their workers (interrupts.py)
    with ctrl_c_recorded():
        env = init_distributed(str(device))
        with hold_run_folder(cfg.output, env):  # one run at a time in a folder (run_lock.py)
            result = train_in_held_folder(cfg, device, env)
            close_distributed(env)  # a run that ended as planned, with or without epochs to do
            return result


def train_in_held_folder(cfg: TrainConfig, device: torch.device, env: DistEnv) -> dict:
    device = process_device(device, env)
    out = Path(cfg.output)
    resume = load_resume_state(out) if cfg.resume else None
    check_run_folder(cfg, resume, env)
    if resume is None and (why := unused_val_fraction(cfg)):  # a resumed run's config may hold one
        raise ValueError(why)
    # Input paths made absolute, as config.json keeps them (so that `effvid train --output RUN
    # --resume` finds the data from any working folder): the videos' paths in reports and
    # bad_videos.json then read the same before and after a resume.
    cfg = dataclasses.replace(cfg, **{k: os.path.abspath(getattr(cfg, k)) for k in INPUT_PATHS
                                      if getattr(cfg, k)})
    seed = run_seed(cfg, env, resume)
    seed_everything(seed)  # model initialisation: the same on every process

    # 2. data
    if env.is_main:  # before reading: an error about a label's number names no file
        print_found_class_file(cfg)
    # a held-out split keeps the sides the run drew when DATA changes (videos added or removed)
    previous_split = read_split(out) if resume is not None and splits_by_fraction(cfg) else None
    # the videos a Kinetics CSV lists but the download lacks: said once, by the main process
    train_set, val_set = build_datasets(cfg, seed, notice=print if env.is_main else None,
                                        previous_split=previous_split)
    split = split_record(cfg, seed, train_set, val_set) if splits_by_fraction(cfg) else None
    if env.is_main:
        print("\n".join(data_summary(train_set, val_set, cfg, seed)))
        if split is not None and resume is not None:
            change = (split_changes(previous_split, split) if previous_split is not None else
                      f"{out} has no split.json (a run from before effvid saved its held-out split): "
                      "the validation videos are drawn again, and some of them may have been "
                      "trained on in the epochs before")
            if change:
                print(f"note: {change}")
    classes = list(train_set.classes)
    train_sampler = build_sampler(train_set, env, shuffle=True, seed=seed)
    val_sampler = build_sampler(val_set, env, shuffle=False, seed=seed)
    loader_args = dict(batch_size=cfg.batch_size, num_workers=cfg.workers, collate_fn=collate_clips,
                       pin_memory=device.type == "cuda", persistent_workers=False)
    # drop a ragged last batch (BatchNorm on a batch of 1 is noise), unless that would leave a
    # process with nothing: each gets ceil(len / world_size) clips
    per_process = math.ceil(len(train_set) / env.world_size)
    train_loader = DataLoader(train_set, sampler=train_sampler, drop_last=per_process > cfg.batch_size,
                              **loader_args)
    val_loader = DataLoader(val_set, sampler=val_sampler, **loader_args)
    steps_per_epoch = max(len(train_loader), 1)

    # 3. model and optimiser
    model = create_model(cfg.model, num_classes=len(classes), num_segments=cfg.num_segments,
                         dropout=cfg.dropout, partial_bn=cfg.partial_bn,
                         # a resume overwrites the starting weights: they need not be there
                         imagenet_weights=cfg.imagenet_weights if resume is None else None,
                         **({"shift_div": cfg.shift_div, "shift_direction": cfg.shift_direction,
                             "shift_place": cfg.shift_place} if cfg.model.startswith("tsm_") else {}))
    if cfg.init_weights and resume is None:
        loaded = load_init_weights(model, cfg.init_weights, classes, cfg.model, cfg.size)
        if env.is_main:
            print(loaded)
    model.to(device)
    precision = amp_dtype(device, cfg.amp, cfg.amp_dtype)  # the autocast dtype, None: float32
    if env.is_main:
        print(f"training on {runtime.describe_device(device, precision)}"
              + (f", {env.world_size} processes" if env.distributed else ""))
    train_model = model
    if env.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
        train_model.num_classes = model.num_classes
    optimizer = build_optimizer(model, cfg)
    # loss scaling for float16 autocast (GPUs before Ampere); a pass-through otherwise
    scaler = torch.amp.GradScaler("cuda", enabled=precision == torch.float16)
    # what eval and predict need to view videos as training's validation did
    metadata = {"classes": classes, "extra": {"size": cfg.size, "scale_size": cfg.test_scale_size,
                                              "sampling": cfg.sampling}}

    # 4. resume
    history: list[dict] = []
    start_epoch, best = 0, -1.0

    def outcome() -> dict:  # what train() returns, also for a run that had nothing left to do
        return {"output": str(out), "best_top1": best, "classes": classes, "history": history,
                "last": history[-1] if history else {}, "seed": seed, "is_main": env.is_main}

    if resume is not None:
        # DATA may move on resume, but not change classes: with as many classes, the weights
        # would load and the run would go on with its labels silently renamed or permuted
        saved_classes = resume.get("classes", classes)  # older states do not say
        if saved_classes != classes:
            raise ValueError(f"cannot resume {out}: it was trained on the classes "
                             f"{', '.join(saved_classes)}, and {cfg.data} has "
                             f"{', '.join(classes)}; resume it with its own data, or start a new "
                             "run with another --output")
        try:
            model.load_state_dict(resume["model"])
            optimizer.load_state_dict(resume["optimizer"])
            if scaler.is_enabled() and resume.get("scaler"):  # a float16 run's current scale
                scaler.load_state_dict(resume["scaler"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise ValueError(f"cannot resume {out}: its last_state.pt does not fit {cfg.model} "
                             f"with {len(classes)} classes ({str(e).strip().splitlines()[0]})") from e
        start_epoch, best = resume["epoch"] + 1, resume["best"]
        history = json.loads(resume["history"])
        upgrade_bad_samples(history)
        absolute_bad_paths(history, [s.path for s in train_set.samples + val_set.samples])
    elif cfg.resume and env.is_main:
        print(f"nothing to resume in {out}; starting from scratch")
    # Only now, with the data, the model and any resume state known to be valid, is the run
    # folder written: a failed start leaves an existing run alone. The saved configuration
    # holds the seed actually used, so that it repeats a seedless run too.
    run_config = dataclasses.replace(cfg, seed=seed, resume=False, overwrite=False).to_json()
    finished = resume is not None and start_epoch >= cfg.epochs
    writer = None if finished else RunWriter(out, env, start_epoch, replace=cfg.overwrite and resume is None)
    if resume is not None and epoch_files_missing(out, history):
        # A crash after the last commit point left the files derived from it unwritten (all
        # of them for good, when it was the final epoch): write them from the state. A
        # finished run's folder gets only these (no new TensorBoard file).
        (writer or RunWriter(out, env, tensorboard=False)).epoch_files(
            model, history, classes, metadata, last_epoch_is_best(history, best))
        if env.is_main:  # its results are printed after these files: the run stopped before
            last = history[-1]
            print(f"epoch {last['epoch'] + 1} was saved just before the run stopped; its results, "
                  "not shown then:")
            print(epoch_report(last, cfg.epochs, classes, last_epoch_is_best(history, best)))
            if last.get("bad_count"):
                print(f"  skipped {last['bad_count']} unreadable video(s) that epoch (all in "
                      "bad_videos.json)")
    if finished:
        if env.is_main:
            print(f"{out} has completed {start_epoch} of {cfg.epochs} epochs: nothing to do "
                  "(raise --epochs to train on)")
        return outcome()
    if resume is not None and env.is_main:
        print(f"resumed from {out / 'last_state.pt'} at epoch {start_epoch + 1}")
    writer.text("config.json", run_config)
    if split is not None:
        writer.text("split.json", json.dumps(split, indent=0))

    # 5. epochs
    seen_bad = {path for h in history for path, _ in h["bad_new"]}  # a resumed run's too
    hinted = False  # data_wait_hint: once a run
    unlearnable_said: set[str] = set()
    for epoch in range(start_epoch, cfg.epochs):
        # Every random stream of an epoch depends only on (seed, epoch, rank), so a resumed
        # run repeats exactly what the uninterrupted run would have done.
        seed_everything(seed * 1000003 + epoch * 1009 + env.rank)
        set_sampler_epoch(train_sampler, epoch, seed)
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        t0 = time.perf_counter()
        train_stats, bad = train_one_epoch(train_model, train_loader, optimizer, scaler, precision, cfg, device,
                                           epoch, steps_per_epoch, env)
        broadcast_buffers(model, env)  # evaluate (and save) rank 0's BatchNorm statistics
        val_stats = evaluate(model, val_loader, device, len(classes), env=env, amp=cfg.amp,
                             amp_dtype=cfg.amp_dtype, progress=cfg.progress)
        if val_stats["count"] == 0:  # all-reduced: every process stops here together
            # its 0% (and loss 0) would be recorded, plotted and even chosen as the best model
            raise no_readable_clips(f"epoch {epoch + 1} validated", "validation video", val_stats["bad"],
                                    env.distributed)
        # every process's, one reason per path
        bad = sorted(dict(p for group in all_gather_objects(bad + val_stats.pop("bad"), env)
                          for p in group).items())
        record = {"epoch": epoch, "train": train_stats, "val": val_stats,
                  "seconds": time.perf_counter() - t0, "bad_count": len(bad),
                  "bad_new": first_seen(bad, seen_bad)}
        history.append(record)
        is_best = val_stats["top1"] > best
        best = max(best, val_stats["top1"])
        drop_old_confusions(history, best)
        writer.scalars("train", train_stats, epoch)
        writer.scalars("val", {k: v for k, v in val_stats.items() if k != "confusion"}, epoch)
        writer.scalars("val_per_class", dict(zip(classes, val_stats["per_class"])), epoch)
        # The commit point of the epoch: the state holds everything a resume needs (the
        # weights too). It is written first and the files derived from it after, which a
        # resume rewrites from it: a crash between any two writes cannot mix two epochs, nor
        # put an uncommitted epoch's weights into best.safetensors (a resume that redid that
        # epoch differently, with other --workers or on a GPU, would then lose the best).
        writer.state({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "scaler": scaler.state_dict(), "epoch": epoch, "best": best, "seed": seed, "history": json.dumps(history),
                      "config": run_config, "world_size": env.world_size, "classes": classes},
                     "last_state.pt")
        writer.epoch_files(model, history, classes, metadata, is_best)
        if env.is_main:
            print(epoch_report(record, cfg.epochs, classes, is_best))
            if bad:
                print(bad_videos_report(bad))
            unlearnable = [c for c in unlearnable_classes(train_set, seen_bad) if c not in unlearnable_said]
            if unlearnable:
                unlearnable_said.update(unlearnable)
                print(f"warning: every training video of {', '.join(unlearnable)} is unreadable: the "
                      "model cannot learn " + ("it" if len(unlearnable) == 1 else "them"))
            hint = None if hinted else data_wait_hint(train_stats["data_wait"], device, cfg.workers, epoch)
            if hint:
                print(hint)
                hinted = True
    writer.close()
    return outcome()
