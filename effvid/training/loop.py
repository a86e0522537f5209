"""The training loop, readable top to bottom: ``train(config)``.

Structure (also what runs under torchrun, one process per GPU), :func:`train_in_held_folder`
calling a function per stage:
  1. set up: process group, device, the run's configuration (:func:`settle_config`), seed
  2. data: datasets (:func:`read_data`), samplers (:func:`build_sampler`), loaders
     (:func:`build_loaders`)
  3. model, optimiser (classifier LR multiplier, no weight decay on BN and biases), schedule
     (:func:`build_model`)
  4. resume from the last checkpoint if asked (:func:`load_run_state`); only then the run
     folder and config.json, so a failed start writes nothing (but the lock file that keeps a
     second run out, run_lock.py)
  5. per epoch (:func:`run_epochs`): train, evaluate, log, write checkpoint (atomically) and
     the best model, plots

The data sets and the held-out split are built in ``run_data.py``; what the run writes and a
resume reads back is in ``run_folder.py``, where only the main process writes. Bad videos are skipped by the data
pipeline and reported at the end of each epoch with their paths; history.json lists each once,
in the epoch that first met it, and bad_videos.json all of them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Sampler

from .. import runtime
from ..data import VideoClipDataset, collate_clips
from ..errors import UserError, plural, some_names
from ..models import create_model
from .config import DECIDED_AT_START, DECIDED_KEY, INPUT_PATHS, NEW_CLASSIFIER_LR_MULT, TrainConfig
from .distributed import (DistEnv, all_gather_objects, all_reduce_sum, any_process, broadcast_buffers,
                          build_sampler, close_distributed, init_distributed, process_device,
                          set_sampler_epoch)
from .evaluate import amp_dtype, autocast, bad_videos_report, evaluate, no_readable_clips
from .init_weights import keeps_classifier, load_init_weights
from .interrupts import StopsOnCtrlC, ctrl_c_recorded, worker_stops_quietly
from .metrics import ClassificationMeter, per_class_report
from .progress import TimedWait, progress_bar
from .run_data import (build_datasets, check_validation_source, data_summary, print_found_class_file,
                       output_in_data, ragged_batch_dropped, split_changes, split_record, splits_by_fraction,
                       unlearnable_classes, unused_val_fraction)
from .run_folder import (RunWriter, absolute_bad_paths, check_run_folder, drop_old_confusions,
                         epoch_files_missing, first_seen, last_epoch_is_best, load_resume_state,
                         read_split, upgrade_bad_samples)
from .run_lock import hold_run_folder


def resolve_device(name: str) -> torch.device:
    try:
        return runtime.resolve_device(name)
    except ValueError as e:
        # a run saved on a GPU machine, resumed on one without: say how to choose another
        raise ValueError(f"bad config value device={e} (--device sets it for this run)") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_seed(cfg: TrainConfig, env: DistEnv, resume: dict | None) -> int:
    """The run's seed: a resumed run's own, else ``cfg.seed``, else the clock's; the same on
    every process (the training shards are permutations that must agree)."""
    if resume is not None:
        return int(resume["seed"])
    if cfg.seed is not None:
        return cfg.seed
    return int(all_gather_objects(int(time.time()), env)[0])  # rank 0's clock


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (or AdamW); the new classifier learns faster (TSM: 5x weight, 10x
    bias); no weight decay on BatchNorm parameters and biases."""
    cfg = cfg.with_optimizer_defaults()  # a run's are decided already (settle_config)
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
    fc_mult = NEW_CLASSIFIER_LR_MULT if cfg.fc_lr_mult is None else cfg.fc_lr_mult  # None: a new one's
    settings = {"decay": (1.0, cfg.weight_decay), "no_decay": (1.0, 0.0),
                "fc_weight": (fc_mult, cfg.weight_decay),
                "fc_bias": (2 * fc_mult, 0.0)}
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


def epochs_change_note(cfg: TrainConfig, run_epochs: int, history: list[dict], steps_per_epoch: int) -> str | None:
    """What a resume with another ``epochs`` than the run's (``run_epochs``) does to the
    learning rate, or None when it is the same. The cosine schedule spans the run's length:
    resuming a 5-epoch run with 8 raised the rate again, with 4 dropped it, unsaid."""
    if cfg.epochs == run_epochs or not history:
        return None
    changed = f"note: --epochs {cfg.epochs} differs from the run's {run_epochs}"
    if cfg.schedule == "step":
        return (f"{changed}: the step schedule's epochs (--lr-steps "
                f"{' '.join(map(str, cfg.lr_steps))}) do not change; the run ends after epoch {cfg.epochs}")
    done = len(history)
    if done < cfg.warmup_epochs:  # the rate rises as before: the change comes after the warm-up
        return (f"{changed}: the warm-up goes on as planned (to --lr {cfg.lr:g} at epoch "
                f"{cfg.warmup_epochs:g}), and the cosine schedule then decays from there to epoch "
                f"{cfg.epochs} instead of {run_epochs}; the weights will differ from those of a run "
                "of either length")
    last = history[-1]["train"].get("lr")  # the rate at the end of the last completed epoch
    now = cfg.lr * lr_factor(cfg, done * steps_per_epoch, steps_per_epoch)
    if last is None:
        moves = ""
    elif f"{last:.3g}" == f"{now:.3g}":  # early in a long run: "drops from 0.005 ... to 0.005" said nothing
        moves = (f", so the learning rate goes on at {now:.3g} in epoch {done + 1}, as at the end of epoch "
                 f"{done}, and then decays {'more slowly' if cfg.epochs > run_epochs else 'faster'}")
    else:
        moves = (f", so the learning rate {'rises' if now > last else 'drops'} from "
                 f"{last:.3g} (end of epoch {done}) to {now:.3g} (epoch {done + 1})")
    return (f"{changed}: the cosine schedule now decays over {cfg.epochs} epochs instead of "
            f"{run_epochs}{moves}; the weights will differ from those of a run of either length")


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
            f"is the bottleneck. More --workers (now {workers}; this process can use {runtime.usable_cpus()} "
            "CPUs) or a copy of the videos at training size (effvid prepare) feed it faster")


def train_one_epoch(model, loader, optimizer, scaler, precision, cfg: TrainConfig, device, *, epoch: int,
                    steps_per_epoch: int, num_classes: int, env: DistEnv) -> tuple[dict, list]:
    """One epoch of ``model`` (DDP-wrapped under torchrun) over ``loader``: the summed loss and
    accuracy of every process, and the bad videos this process met."""
    model.train()
    meter = ClassificationMeter(num_classes)
    bad: list = []
    start, seen = time.perf_counter(), 0
    batches = TimedWait(StopsOnCtrlC(loader))
    # under torchrun the bar's loss, accuracy and clips/s are the first process's own: an
    # all-reduce per step would slow training, and the epoch's line gives all processes' mean
    whose = f" (process 0 of {env.world_size})" if env.distributed else ""
    bar = progress_bar(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}{whose}", enabled=cfg.progress and env.is_main)
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


def model_settings(cfg: TrainConfig) -> dict:
    """create_model's keyword arguments from the run's configuration, but for the number of
    classes (from the data) and the ImageNet weights."""
    shift = ({"shift_div": cfg.shift_div, "shift_direction": cfg.shift_direction,
              "shift_place": cfg.shift_place} if cfg.model.startswith("tsm_") else {})
    return dict(num_segments=cfg.num_segments, dropout=cfg.dropout, partial_bn=cfg.partial_bn, **shift)


def check_model_settings(cfg: TrainConfig) -> None:
    """Build the model's structure alone (on the meta device: no memory, no weights), so that a
    setting it refuses (an unknown --model, a --shift-div above a shifted layer's channels) is
    refused before the data is read, which can take minutes."""
    with torch.device("meta"):
        create_model(cfg.model, num_classes=1, **model_settings(cfg))


def run_result(out: Path, best: float, classes: list[str], history: list[dict], seed: int, env: DistEnv) -> dict:
    """What :func:`train` returns, also for a run that had nothing left to do."""
    return {"output": str(out), "best_top1": best, "classes": classes, "history": history,
            "last": history[-1] if history else {}, "seed": seed, "is_main": env.is_main}


def train(cfg: TrainConfig) -> dict:
    """Run ``cfg`` (what ``effvid train`` runs) into the folder ``cfg.output``, or continue it
    (``cfg.resume``), under torchrun too (one process per GPU). Returns ``{"output", "best_top1",
    "classes", "history" (a record per epoch), "last" (the last record), "seed", "is_main"}``."""
    # 1. set up
    cfg.validate()
    check_model_settings(cfg)
    if why := output_in_data(cfg):  # before the run folder (its lock file) is made
        raise ValueError(why)
    device = resolve_device(cfg.device)
    # Ctrl-C stops the run also when it comes as the loaders start their workers (interrupts.py)
    with ctrl_c_recorded():
        env = init_distributed(str(device))
        with hold_run_folder(cfg.output, env):  # one run at a time in a folder (run_lock.py)
            result = train_in_held_folder(cfg, device, env)
            close_distributed(env)  # a run that ended as planned, with or without epochs to do
            return result


def main_print(env: DistEnv):
    """``print`` on the main process, a no-op on the others: the run's lines come from the main
    process alone (under torchrun there is one per GPU)."""
    return print if env.is_main else (lambda *args, **kwargs: None)


def train_in_held_folder(cfg: TrainConfig, device: torch.device, env: DistEnv) -> dict:
    """:func:`train` in its run folder, held: the stages of the module docstring, in order."""
    device = process_device(device, env)
    say = main_print(env)
    out = Path(cfg.output)
    # the run's configuration: a resumed run's own, checked before the data is read
    resume = load_resume_state(out) if cfg.resume else None
    cfg, saved, decided, moved = settle_config(cfg, resume, out, env)
    seed = run_seed(cfg, env, resume)
    seed_everything(seed)  # model initialisation: the same on every process

    # 2. data
    cfg, train_set, val_set, split = read_data(cfg, out, seed, resume, moved, env)
    classes = list(train_set.classes)
    train_sampler, train_loader, val_loader = build_loaders(cfg, train_set, val_set, device, seed, env)
    steps_per_epoch = max(len(train_loader), 1)

    # 3. model and optimiser
    cfg, model, train_model, optimizer, scaler, precision = build_model(cfg, classes, resume, device, env)

    # 4. resume
    start_epoch, best, history = load_run_state(resume, cfg, out, classes, model, optimizer, scaler,
                                                train_set, val_set, env)
    # Only now, with the data, the model and any resume state known to be valid, is the run
    # folder written: a failed start leaves an existing run alone. The saved configuration
    # holds the seed actually used, so that it repeats a seedless run too.
    run_config = dataclasses.replace(cfg, seed=seed, resume=False, overwrite=False).to_json(decided)
    if resume is not None and epoch_files_missing(out, history):
        write_missing_epoch_files(out, env, model, cfg, classes, history, best)
    if resume is not None and start_epoch >= cfg.epochs:
        say(f"{out} has completed {start_epoch} of {plural(cfg.epochs, 'epoch')}: nothing to do "
            "(raise --epochs to train on)")
        return run_result(out, best, classes, history, seed, env)
    if resume is not None and env.is_main:
        print(f"resumed from {out / 'last_state.pt'} at epoch {start_epoch + 1}")
        if saved is not None and (note := epochs_change_note(cfg, saved["epochs"], history, steps_per_epoch)):
            print(note)
    writer = RunWriter(out, env, start_epoch, replace=cfg.overwrite and resume is None)
    writer.text("config.json", run_config)
    if split is not None:
        writer.text("split.json", json.dumps(split, indent=0))

    # 5. epochs
    best = run_epochs(cfg, env, device, seed, model=model, train_model=train_model, optimizer=optimizer,
                      scaler=scaler, precision=precision, train_set=train_set, train_sampler=train_sampler,
                      train_loader=train_loader, val_loader=val_loader, classes=classes,
                      steps_per_epoch=steps_per_epoch, writer=writer, run_config=run_config,
                      history=history, start_epoch=start_epoch, best=best)
    writer.close()
    return run_result(out, best, classes, history, seed, env)


def settle_config(cfg: TrainConfig, resume: dict | None, out: Path,
                  env: DistEnv) -> tuple[TrainConfig, dict | None, list[str], str | None]:
    """The run's configuration, checked before the data is read: a resumed run goes on with its
    own decisions; input paths are made absolute. Also returns the configuration a resumed run
    saved (None: a new run, or an older run's state, which holds none), the DECIDED_AT_START
    fields that config.json lists, and a note when DATA moved (else None)."""
    # the run's configuration (states of older runs hold none)
    saved = json.loads(resume["config"]) if resume is not None and "config" in resume else None
    # the DECIDED_AT_START fields this run decides (config.json lists them: a new run from it
    # decides them again), or on resume those its run decided, which it goes on with
    decided = [k for k in DECIDED_AT_START if getattr(cfg, k) is None]
    if saved is not None:
        cfg = cfg.with_run_decisions(saved)
        decided = [k for k in DECIDED_AT_START if k in saved.get(DECIDED_KEY, ())]
    cfg = cfg.with_optimizer_defaults()  # a resume has its run's (with_run_decisions)
    check_run_folder(cfg, resume, env)
    if resume is None and (why := unused_val_fraction(cfg)):  # a resumed run's config may hold one
        raise ValueError(why)
    # Input paths made absolute, as config.json keeps them (so that `effvid train --output RUN
    # --resume` finds the data from any working folder): the videos' paths in reports and
    # bad_videos.json then read the same before and after a resume.
    cfg = dataclasses.replace(cfg, **{k: os.path.abspath(getattr(cfg, k)) for k in INPUT_PATHS
                                      if getattr(cfg, k)})
    # DATA of another layout, or another --val-data, refused before the data is read (states of
    # older runs hold no configuration to compare); the same layout moved: a note
    moved = None
    if saved is not None:
        moved = check_validation_source(
            dataclasses.replace(cfg, **{k: saved[k] for k in ("data", "val_data", "val_fraction", "official_split")
                                        if k in saved}), cfg, held_out=(out / "split.json").is_file())
    return cfg, saved, decided, moved


def read_data(cfg: TrainConfig, out: Path, seed: int, resume: dict | None, moved: str | None,
              env: DistEnv) -> tuple[TrainConfig, VideoClipDataset, VideoClipDataset, dict | None]:
    """The training and validation sets, and the held-out split to save (None: DATA is not split
    by fraction); the configuration comes back with the flip the data decided. The main process
    says what it read, and what changed since the run it resumes (``moved``: settle_config's)."""
    if env.is_main:  # before reading: an error about a label's number names no file
        print_found_class_file(cfg)
    # a held-out split keeps the sides the run drew when DATA changes (videos added or removed)
    previous_split = read_split(out) if resume is not None and splits_by_fraction(cfg) else None
    # the videos a Kinetics CSV lists but the download lacks: said once, by the main process
    train_set, val_set = build_datasets(cfg, seed, notice=print if env.is_main else None,
                                        previous_split=previous_split)
    cfg = dataclasses.replace(cfg, flip=train_set.transform.flip)  # flip None: the data decided
    split = split_record(cfg, seed, train_set, val_set) if splits_by_fraction(cfg) else None
    if env.is_main:
        print("\n".join(data_summary(train_set, val_set, cfg, seed, env.world_size)))
        if moved:
            print(f"note: {moved}")
        if split is not None and resume is not None:
            change = (split_changes(previous_split, split) if previous_split is not None else
                      f"{out} has no split.json (a run from before effvid saved its held-out split): "
                      "the validation videos are drawn again, and some of them may have been "
                      "trained on in the epochs before")
            if change:
                print(f"note: {change}")
    return cfg, train_set, val_set, split


def build_loaders(cfg: TrainConfig, train_set: VideoClipDataset, val_set: VideoClipDataset,
                  device: torch.device, seed: int, env: DistEnv) -> tuple[Sampler, DataLoader, DataLoader]:
    """The training sampler (set to each epoch by :func:`run_epochs`) and the two loaders."""
    train_sampler = build_sampler(train_set, env, shuffle=True, seed=seed)
    val_sampler = build_sampler(val_set, env, shuffle=False, seed=seed)
    loader_args = dict(batch_size=cfg.batch_size, num_workers=cfg.workers, collate_fn=collate_clips,
                       pin_memory=device.type == "cuda", persistent_workers=False,
                       # a stalled worker (stopped, stuck on a dead disk) hung the run forever,
                       # silently; the timeout ends it with a message (commands/train.py)
                       timeout=cfg.worker_timeout if cfg.workers > 0 else 0,
                       worker_init_fn=worker_stops_quietly)  # a SIGTERM to the process group
    dropped = ragged_batch_dropped(len(train_set), cfg.batch_size, env.world_size)
    train_loader = DataLoader(train_set, sampler=train_sampler, drop_last=dropped > 0, **loader_args)
    val_loader = DataLoader(val_set, sampler=val_sampler, **loader_args)
    return train_sampler, train_loader, val_loader


def build_model(cfg: TrainConfig, classes: list[str], resume: dict | None, device: torch.device,
                env: DistEnv) -> tuple[TrainConfig, nn.Module, nn.Module, torch.optim.Optimizer,
                                       torch.amp.GradScaler, torch.dtype | None]:
    """The model on ``device``, with ``--init-weights`` loaded into a new run's; the module that
    trains (the model, DDP-wrapped under torchrun); the optimiser; the loss scaler; and the
    autocast dtype (None: float32). The configuration comes back with the classifier's
    learning-rate multiplier decided."""
    say = main_print(env)
    model = create_model(cfg.model, num_classes=len(classes), **model_settings(cfg),
                         # a resume overwrites the starting weights: they need not be there
                         imagenet_weights=cfg.imagenet_weights if resume is None else None)
    if cfg.init_weights and resume is None:
        say(load_init_weights(model, cfg.init_weights, classes, cfg.model, cfg.size))
    if cfg.fc_lr_mult is None:  # not given (a resume has the run's own): decided here, saved
        # The official code gives the classifier 5x unless it fine-tunes on the same dataset
        # (fc_lr5 = not (tune_from and dataset in tune_from)), whose classifier it keeps, trained
        kept = bool(cfg.init_weights) and resume is None and keeps_classifier(cfg.init_weights, classes)
        cfg = dataclasses.replace(cfg, fc_lr_mult=1.0 if kept else NEW_CLASSIFIER_LR_MULT)
        if kept:
            say(f"note: the classifier learns at 1x the learning rate, not {NEW_CLASSIFIER_LR_MULT:g}x: "
                  "--init-weights brings it trained on these classes (as in the official TSM code); "
                  "--fc-lr-mult sets another multiplier")
    model.to(device)
    precision = amp_dtype(device, cfg.amp, cfg.amp_dtype)  # the autocast dtype, None: float32
    say(f"training on {runtime.describe_device(device, precision)}"
        + (f", {env.world_size} processes" if env.distributed else ""))
    train_model = model
    if env.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = build_optimizer(model, cfg)
    # loss scaling for float16 autocast (GPUs before Ampere); a pass-through otherwise
    scaler = torch.amp.GradScaler("cuda", enabled=precision == torch.float16)
    return cfg, model, train_model, optimizer, scaler, precision


def checkpoint_metadata(cfg: TrainConfig, classes: list[str]) -> dict:
    """What eval and predict need to view videos as training's validation did; flip: whether
    mirrored test views (--crops 10) are views it was trained on."""
    return {"classes": classes, "extra": {"size": cfg.size, "scale_size": cfg.test_scale_size,
                                          "sampling": cfg.sampling, "flip": cfg.flip}}


def load_run_state(resume: dict | None, cfg: TrainConfig, out: Path, classes: list[str], model: nn.Module,
                   optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, train_set: VideoClipDataset,
                   val_set: VideoClipDataset, env: DistEnv) -> tuple[int, float, list[dict]]:
    """The epoch to start at, the best validation top-1 so far and the history: a resumed run's,
    whose model, optimiser and scaler states are loaded here, else a new run's (0, -1, [])."""
    say = main_print(env)
    history: list[dict] = []
    start_epoch, best = 0, -1.0
    if resume is not None:
        # DATA may move on resume, but not change classes: with as many classes, the weights
        # would load and the run would go on with its labels silently renamed or permuted
        saved_classes = resume.get("classes", classes)  # older states do not say
        if saved_classes != classes:
            raise ValueError(f"cannot resume {out}: it was trained on the {len(saved_classes)} classes "
                             f"{some_names(saved_classes)}, and {cfg.data} has {len(classes)}: "
                             f"{some_names(classes)}; resume it with its own data, or start a new "
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
    elif cfg.resume:
        say(f"nothing to resume in {out}; starting from scratch")
    return start_epoch, best, history


def write_missing_epoch_files(out: Path, env: DistEnv, model: nn.Module, cfg: TrainConfig,
                              classes: list[str], history: list[dict], best: float) -> None:
    """A crash after the last commit point left the files derived from it unwritten (all
    of them for good, when it was the final epoch): write them from the state. A
    finished run's folder gets only these (no new TensorBoard file)."""
    RunWriter(out, env, tensorboard=False).epoch_files(
        model, history, classes, checkpoint_metadata(cfg, classes), last_epoch_is_best(history, best))
    if env.is_main:  # its results are printed after these files: the run stopped before
        last = history[-1]
        print(f"epoch {last['epoch'] + 1} was saved just before the run stopped; its results, "
              "not shown then:")
        print(epoch_report(last, cfg.epochs, classes, last_epoch_is_best(history, best)))
        if last.get("bad_count"):
            print(f"  skipped {last['bad_count']} unreadable video(s) that epoch (all in "
                  "bad_videos.json)")


def run_epochs(cfg: TrainConfig, env: DistEnv, device: torch.device, seed: int, *, model: nn.Module,
               train_model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               precision: torch.dtype | None, train_set: VideoClipDataset, train_sampler: Sampler,
               train_loader: DataLoader, val_loader: DataLoader, classes: list[str], steps_per_epoch: int,
               writer: RunWriter, run_config: str, history: list[dict], start_epoch: int, best: float) -> float:
    """Train and validate the epochs from ``start_epoch`` on, each appended to ``history`` and
    saved by ``writer`` as it ends; returns the best validation top-1."""
    metadata = checkpoint_metadata(cfg, classes)
    seen_bad = {path for h in history for path, _ in h["bad_new"]}  # a resumed run's too
    hinted = False  # data_wait_hint: once a run
    unlearnable_said: set[str] = set()
    for epoch in range(start_epoch, cfg.epochs):
        # Every random stream of an epoch depends only on (seed, epoch, rank), so a resumed
        # run repeats exactly what the uninterrupted run would have done.
        seed_everything(seed * 1000003 + epoch * 1009 + env.rank)
        set_sampler_epoch(train_sampler, epoch, seed)
        train_set.set_epoch(epoch, seed)
        t0 = time.perf_counter()
        train_stats, bad = train_one_epoch(train_model, train_loader, optimizer, scaler, precision, cfg, device,
                                           epoch=epoch, steps_per_epoch=steps_per_epoch,
                                           num_classes=len(classes), env=env)
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
                      "config": run_config, "world_size": env.world_size, "classes": classes,
                      # the processes on each machine, for the torchrun command that resumes it
                      "local_world_size": int(os.environ.get("LOCAL_WORLD_SIZE", env.world_size))},
                     "last_state.pt")
        writer.epoch_files(model, history, classes, metadata, is_best)
        if env.is_main:
            print(epoch_report(record, cfg.epochs, classes, is_best))
            if bad:
                print(bad_videos_report(bad))
            unlearnable = [c for c in unlearnable_classes(train_set, seen_bad) if c not in unlearnable_said]
            if unlearnable:
                unlearnable_said.update(unlearnable)
                print(f"warning: every training video of {some_names(unlearnable)} is unreadable: the "
                      "model cannot learn " + ("it" if len(unlearnable) == 1 else "them"))
            hint = None if hinted else data_wait_hint(train_stats["data_wait"], device, cfg.workers, epoch)
            if hint:
                print(hint)
                hinted = True
    return best
