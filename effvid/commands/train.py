"""``effvid train DATA``: train a TSN/TSM recogniser on a folder-per-class root, a list file,
Something-Something v2's annotation JSON, Kinetics' annotation CSV or HMDB51's / UCF101's split
folder.

Every field of :class:`effvid.training.config.TrainConfig` is a flag (``--num-segments 8``,
``--no-flip``, ``--shift-direction causal``, ...); ``--config run/config.json`` starts from a
saved configuration and flags override it. ``effvid train --output RUN --resume`` continues the
run in RUN with its own saved configuration.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import sys
import traceback
import typing
from dataclasses import MISSING, asdict, fields, replace
from pathlib import Path

from ..cli import HelpFormatter, device_name, reports_errors, torchrun_processes, worker_count
from ..errors import BadValue, did_you_mean
from ..training.config import CHOICES, OPTIMIZER_DEFAULTS, TrainConfig
from ..training.interrupts import STALLED, Stopped, ctrl_c_recorded, worker_deaths_ignored
from ..training.recipes import RECIPES, number_text, recipe_values


def _optimizer_default(key: str) -> str:
    return "(default: " + ", ".join(f"{number_text(values[key])} with --optimizer {name}"
                                    for name, values in OPTIMIZER_DEFAULTS.items()) + ")"


HELP = {
    "data": "class-folder root (root/<class>/<video>, optionally with train/ and val/), a list "
            "file, Something-Something v2's train.json, Kinetics' train.csv, or HMDB51's / "
            "UCF101's split folder (testTrainMulti_7030_splits, ucfTrainTestlist)",
    "val_data": "validation list file, folder or annotation file (default: DATA/val, or a split of DATA)",
    "data_root": "folder that relative paths in list files are resolved against (Something-"
                 "Something, Kinetics, HMDB51, UCF101's split folder: the videos' folder)",
    "val_data_root": "the same for --val-data, when its videos are not under --data-root "
                     "(unset: --data-root serves both)",
    "classes": "class file: one name per line, UCF101's classInd.txt ('number name' lines: "
               "integer labels are its numbers) or Something-Something's labels.json (default: "
               "classInd.txt or labels.json beside DATA, if there)",
    "scale_size": "validation's resize of the short side, before the centre --size crop "
                  "(default: --size x 256/224, rounded down as the original TSM does: 256 for 224, "
                  "292 for 256)",
    "model": "model name (effvid info --list lists them), e.g. tsm_resnet50, tsn_mobilenet_v2",
    "shift_direction": "bidirectional (offline TSM) or causal (past only; convertible to online)",
    "flip": "random horizontal flips (default: on, but off when DATA is Something-Something's "
            "annotation file or a class name says left, right or clockwise, which a flip "
            "reverses; --flip turns them on anyway)",
    "crop_scales": "multi-scale crop sides as fractions of the short side (TSM's augmentation)",
    "imagenet_weights": "local torchvision ImageNet weights file (.pth or .safetensors)",
    "init_weights": "effvid .safetensors to fine-tune from (its classifier is replaced when "
                    "the classes differ), or an original TSM release .pth (its backbone)",
    "resume": "continue the run in --output from its last checkpoint, with its saved configuration",
    "overwrite": "start a new run in an --output that already holds one, replacing it",
    "fc_lr_mult": "learning-rate multiplier of the classifier's weight (bias: 2x this) (default: 5 "
                  "for a new classifier; 1 when --init-weights brings one trained on the same "
                  "classes)",
    "device": "auto, cpu, cuda or cuda:N",
    "amp_dtype": "mixed precision on GPU: auto (bfloat16 from Ampere on, float16 with loss scaling "
                 "before), bfloat16 or float16",
    "official_split": "with HMDB51's split files (testTrainMulti_7030_splits) or UCF101's "
                      "ucfTrainTestlist as DATA: which published split (1, 2 or 3) to train and "
                      "validate on",
    "worker_timeout": "seconds to wait for a batch from the data-loading workers (with --workers "
                      "above 0) before the run ends as stalled; 0 waits forever (default: 600)",
    "seed": "random seed (runs with the same seed repeat exactly)",
    "val_fraction": "the fraction of DATA held out for validation, where DATA has no val/ folder, "
                    "--val-data or published split",
    "num_segments": "frames per clip: one from each of this many equal parts of the video (TSN's "
                    "segments), or this many consecutive ones with --sampling dense",
    "shift_div": "1/shift-div of the channels shift each way in time (8: 1/8 from the past, 1/8 "
                 "from the future; causal: 1/8 from the past)",
    "shift_place": "residual: shift inside each block's residual branch (the paper's choice); "
                   "inplace: shift the block's input",
    "dropout": "dropout before the classifier",
    "partial_bn": "freeze every BatchNorm but the first (TSN's partial BN, for fine-tuning on "
                  "small datasets)",
    "size": "the crop side in pixels, in training and validation",
    "sampling": "segment: a random frame in each segment in training, segment centres in "
                "validation (TSN); dense: --num-segments frames at a stride from a random 64-frame "
                "window (validation: its centre)",
    "optimizer": "sgd: SGD with momentum (TSM's recipes); adamw: AdamW (faster from scratch)",
    "epochs": "training epochs",
    "batch_size": "clips per step (per process under torchrun)",
    "lr": "learning rate after warm-up (of the backbone; the classifier's: x --fc-lr-mult) "
          + _optimizer_default("lr"),
    "momentum": "SGD's momentum",
    "weight_decay": "weight decay of the weights (not of BatchNorm parameters and biases) "
                    + _optimizer_default("weight_decay"),
    "clip_grad": "clip the gradients' total L2 norm to this; 0: no clipping",
    "schedule": "cosine: decay to 0 over the epochs after warm-up; step: x0.1 at each of --lr-steps",
    "lr_steps": "epochs after which --schedule step multiplies the learning rate by 0.1",
    "warmup_epochs": "epochs (fractions too) of linear warm-up from 0 to --lr",
    "output": "run folder: weights, training state, configuration, curves and TensorBoard logs",
    "workers": "data-loading processes (0: load in the training process)",
    "amp": "mixed precision (autocast) on a GPU; no effect on the CPU",
    "progress": "a progress bar with loss, accuracy and clips/s",
}


# flags checked as they are parsed, as the other commands' same flags are
FLAG_TYPES = {"device": device_name, "workers": worker_count}


def add_config_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per TrainConfig field, with no default so a --config file can fill it."""
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else f.default_factory()
        kind = hints[f.name]
        base = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]  # X of "X | None"
        help_text = HELP.get(f.name, "")
        # None says nothing ("(default: None)" followed the help's own "(default: DATA/val ...)")
        if default is not None and "(default:" not in help_text and "(unset:" not in help_text:
            help_text += f" (default: {default})"
        if base[0] is bool:  # --flip / --no-flip (None: the default, or the data's decision)
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(kind) is list:
            item = typing.get_args(kind)[0]
            parser.add_argument(flag, type=item, nargs="+", default=None, help=help_text)
        else:
            parser.add_argument(flag, type=FLAG_TYPES.get(f.name, base[0]), default=None, help=help_text,
                                choices=CHOICES.get(f.name))


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's configuration: TrainConfig's defaults, then ``--recipe`` or ``--config`` (or, on
    ``--resume``, the run's saved config.json), then the flags given."""
    base = args.config
    values = {}
    if base is None and args.resume:  # "--output RUN --resume": the run's own configuration
        saved = Path(args.output or TrainConfig.output) / "config.json"
        base = saved if saved.is_file() else state_config(saved.parent)
    if isinstance(base, TrainConfig):  # last_state.pt's (the resume rewrites config.json)
        values, base = asdict(base), saved.parent / "last_state.pt"
    elif base:
        # what the run that wrote it decided from its data (DECIDED_KEY) left to this run to
        # decide, for its data; a resume goes on with its run's decisions (with_run_decisions)
        values = asdict(TrainConfig.load(base, redecide=True))
    if getattr(args, "recipe", None):
        if base:  # a saved configuration already holds every value, the recipe's included
            raise ValueError(f"--recipe starts a new run from the paper's settings; {base} already "
                             "holds a whole configuration (drop --recipe, or --config / --resume)")
        # the learning rate is scaled to the batch of all processes together (torchrun sets WORLD_SIZE)
        # the flags given override the recipe: its line names them as the user's
        given = {f.name: getattr(args, f.name, None) for f in fields(TrainConfig)
                 if f.name not in ("batch_size", "init_weights", "imagenet_weights")}
        recipe, line = recipe_values(args.recipe, args.batch_size or TrainConfig.batch_size,
                                     torchrun_processes(),
                                     init_weights=args.init_weights, imagenet_weights=args.imagenet_weights,
                                     **given)
        values.update(recipe)
        if os.environ.get("RANK", "0") == "0":
            print(line)
    for f in fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = value
    warmup = values.get("warmup_epochs") or 0
    if args.epochs is not None and args.warmup_epochs is None and warmup > args.epochs:
        # the warm-up of a saved configuration or recipe: "warmup_epochs=3.0 must be in [0,
        # epochs=2]" named neither the flag given nor where the 3 came from
        fix = (f"give --epochs {math.ceil(warmup)} or more" if args.resume else
               f"give --warmup-epochs {args.epochs} or less too, or --epochs {math.ceil(warmup)} or more")
        where = "the run's" if args.resume else f"{base}'s" if base else "the recipe's"
        raise ValueError(f"--epochs {args.epochs} ends inside {where} warm-up of {warmup:g} epochs "
                         f"(warmup_epochs): {fix}")
    return TrainConfig.from_dict(values)


def state_config(folder: Path) -> TrainConfig | None:
    """The configuration that ``folder``'s last_state.pt holds (it commits every epoch, with
    the configuration), for a run whose config.json is gone; None without one."""
    from ..training.run_folder import load_resume_state

    state = load_resume_state(folder, mmap=True)  # the plain values only; unreadable: named
    if state is None or not isinstance(state.get("config"), str):  # states of older runs hold none
        return None
    return TrainConfig.from_json(state["config"], f"the configuration in {folder / 'last_state.pt'}",
                                 redecide=True)


def saved_epochs(cfg: TrainConfig, *options: str) -> str | None:
    """What a run that stopped can be continued from, for its last message, with the command
    (and ``options``, such as fewer --workers) that continues it; None when it stopped before
    its first epoch was completed."""
    from ..training.run_folder import committed_history, resume_command

    out = Path(cfg.output)
    try:  # the state, the commit point, counts them (history.json may be an epoch behind)
        history = committed_history(out)
    except (OSError, ValueError, KeyError):  # a damaged state: its resume will say what is wrong
        history = []
    if history is None:
        return None
    done = f" ({len(history)} of {cfg.epochs})" if history else ""
    return f"the last completed epoch{done} is saved: continue with {resume_command(out, *options)}"


def stdout_reader_left() -> bool:
    """Whether standard output is a pipe whose reader has closed it (poll reports POLLERR on such
    a pipe's write end), which tells a BrokenPipeError of the output from one of a loader's
    pipes."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), 0)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or stdout replaced
        return False


def say(line: str) -> None:
    """A last line on stderr, which a closed terminal (SIGHUP) may no longer take (EIO): the
    exit status still says why the run stopped."""
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass


def _this_process() -> str:
    """`` (process N)`` under torchrun but for the first process: a process's own trouble (a
    dead worker, its GPU's memory) is reported by that process, which says which it is."""
    rank = os.environ.get("RANK", "0")
    return f" (process {rank})" if rank != "0" else ""


def _saved_sentence(cfg: TrainConfig, *options: str) -> str:
    """saved_epochs as the last sentence of an error message."""
    saved = saved_epochs(cfg, *options)
    return f"{saved[0].upper()}{saved[1:]}." if saved else "No epoch was completed; nothing to resume."


def worker_died_message(cfg: TrainConfig, error: str) -> str:
    """A DataLoader worker that died (the kernel's OOM killer sends SIGKILL) ended the run with
    PyTorch's traceback: say what probably happened, what to change, and what is saved."""
    where = _this_process()
    # Without a Python error (that would have been re-raised), a worker dies of a signal: most
    # often the OOM killer's SIGKILL ("killed by signal: Killed", or "exited unexpectedly" when
    # PyTorch noticed it missing before the signal was reported)
    crashed = "killed by signal" in error and "Killed" not in error  # a segfault, a bus error
    cause = "it crashed" if crashed else "most likely the system ran out of memory and killed it"
    # --workers may change on resume; --batch-size may not (it would no longer be the same run)
    then = _saved_sentence(cfg, "--workers", str(cfg.workers // 2))
    return (f"effvid train{where}: error: a data-loading worker process died ({error}); {cause}. "
            f"Try fewer --workers (this run: {cfg.workers}) or a smaller --batch-size (this run: "
            f"{cfg.batch_size}). {then}")


def peer_ended(error: RuntimeError) -> bool:
    """Whether ``error`` is a collective that failed because another process of a torchrun job
    ended (its own error, a dead loader worker, a kill): gloo's "Connection closed by peer",
    NCCL's DistBackendError."""
    import torch.distributed as dist

    if torchrun_processes() <= 1:
        return False
    return isinstance(error, dist.DistError) or "closed by peer" in str(error) or "reset by peer" in str(error)


def stop_reason(signum: int) -> str:
    """What the stop line says of the signal that stopped the run. Under torchrun a SIGTERM is
    most often torchrun's own: it ends the other processes so when one of them ended (a kill, a
    dead loader worker, an error), and "stopped by SIGTERM" read as if someone had stopped the
    run from outside (a job system's SIGTERM reaches torchrun, which passes it on, the same way)."""
    if signum == signal.SIGINT:
        return "interrupted"
    if signum == signal.SIGTERM and torchrun_processes() > 1:
        return ("stopped by torchrun (SIGTERM), typically because another process of the run ended "
                "(its own message, or torchrun's report, says why), or by the job system")
    return f"stopped by {signal.Signals(signum).name}"


def worker_stalled_message(cfg: TrainConfig) -> str:
    """No batch came from the data-loading workers within --worker-timeout: a worker stopped
    (kill -STOP, a debugger) or stuck (an unresponsive network disk). The run hung forever,
    silently, before the loaders had a timeout."""
    then = _saved_sentence(cfg)
    return (f"effvid train{_this_process()}: error: a data-loading worker process stalled: no batch "
            f"came for {cfg.worker_timeout:g} s (--worker-timeout); it was stopped, or stuck reading "
            f"a video (an unresponsive disk?). {then}")


def out_of_memory_message(cfg: TrainConfig, error: str, gpu: bool = True) -> str:
    """The GPU's memory ran out (``error``: PyTorch's message), or the CPU's (``gpu`` False;
    ``error``: :func:`effvid.runtime.cpu_out_of_memory`'s words), and PyTorch's traceback ended
    the run: what needs less, and what is saved. A resume keeps --batch-size and --size, so it
    helps only once memory is freed."""
    where = _this_process()
    first = error.strip().splitlines()[0] if error.strip() else "out of memory"
    saved = saved_epochs(cfg)
    then = (f"{saved[0].upper()}{saved[1:]} once the memory is free (a resume keeps the batch size), "
            f"or start a new run with a smaller --batch-size." if saved
            else "No epoch was completed; start again with a smaller --batch-size or --size.")
    what, others = (("the GPU ran out of memory", "other processes on the GPU hold memory too (nvidia-smi "
                     "lists them)") if gpu else
                    ("this machine ran out of memory", "other processes hold memory too"))
    return (f"effvid train{where}: error: {what} ({first}). A smaller --batch-size (this run: "
            f"{cfg.batch_size}), fewer --num-segments ({cfg.num_segments}) or a smaller --size "
            f"({cfg.size}) needs less; {others}. {then}")


def as_flag(error: BadValue, args: argparse.Namespace) -> ValueError:
    """A bad value the user gave as a flag, said as that flag, as argparse says its own refusals
    (``argument --shift-div: must be >= 2 for a bidirectional shift, got 1``), and the other
    settings its reason names as their flags too (``--val-data``, not ``val_data``); a value
    from a --config file or a saved run keeps its config name."""
    given = getattr(args, error.name, None)
    if given is None:
        return error
    shown = " ".join(map(str, given)) if isinstance(given, list) else given
    fields_named = {f.name for f in fields(TrainConfig) if "_" in f.name}  # "size", "data": also words
    why = re.sub(r"\b[a-z]+(?:_[a-z]+)+\b",
                 lambda m: "--" + m[0].replace("_", "-") if m[0] in fields_named else m[0], error.why)
    return ValueError(f"argument --{error.name.replace('_', '-')}: {why}, got {shown}")


def refuse_unused_flags(args: argparse.Namespace, cfg: TrainConfig) -> None:
    """Refuse a flag typed on the command line that the run's other settings leave unused:
    ``--lr-steps`` under the cosine schedule was ignored without a word. Only flags typed: a
    --config file or a run's config.json holds every field, used or not."""
    tsm = cfg.model.startswith("tsm_")
    unused = {  # flag: why this run does not use it, and what would
        "lr_steps": cfg.schedule != "step" and (
            f"the {cfg.schedule} schedule does not use it, only --schedule step does; add --schedule "
            "step, or drop --lr-steps"),
        "momentum": cfg.optimizer != "sgd" and (
            f"--optimizer {cfg.optimizer} does not use it, only --optimizer sgd does; drop --momentum"),
        "amp_dtype": not cfg.amp and (
            "--no-amp turns mixed precision off, and with it --amp-dtype; drop one of them"),
        "worker_timeout": cfg.workers == 0 and (
            "--workers 0 reads the data in this process, and only worker processes time out; drop "
            "--worker-timeout, or give --workers above 0"),
        **{name: not tsm and (f"--model {cfg.model} has no temporal shift (only the tsm_ models "
                              f"do); drop --{name.replace('_', '-')}")
           for name in ("shift_div", "shift_direction", "shift_place")},
    }
    # a step at epoch N lowers the rate from epoch N + 1 (lr_factor): one at the last epoch or
    # later never comes, and a run of --lr-steps 5 --epochs 2 trained at one rate, unsaid. The
    # steps typed, or, for --schedule step typed alone, the defaults (not a --config's, a
    # resumed run's or a recipe's, which the run set itself)
    late = [s for s in cfg.lr_steps if s >= cfg.epochs] if cfg.schedule == "step" else []
    if late and args.lr_steps:
        unused["lr_steps"] = (f"a step at epoch {late[0]} or later never comes in a run of "
                              f"{cfg.epochs} epochs (a step at N lowers the rate from epoch N + 1); give "
                              f"steps below {cfg.epochs}")
    elif late and not (getattr(args, "config", None) or args.resume or getattr(args, "recipe", None)):
        unused["schedule"] = (f"its default steps at {' and '.join(map(str, cfg.lr_steps))} include "
                              f"{late[0]}, which never comes in a run of {cfg.epochs} epochs; give --lr-steps")
    for name, why in unused.items():
        if why and getattr(args, name, None) is not None:
            given = getattr(args, name)
            shown = " ".join(map(str, given)) if isinstance(given, list) else given
            raise ValueError(f"argument --{name.replace('_', '-')}: {why} (got {shown})")


def bounded_config_workers(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with workers at most the usable CPUs, as --workers is (worker_count): also a
    value from --config or a resumed run's config.json, saved on a larger machine."""
    from ..runtime import bounded_workers

    workers, note = bounded_workers(cfg.workers)
    if note and reports_errors():
        print(note, file=sys.stderr)
    return replace(cfg, workers=workers)


def check_resume_folder(args: argparse.Namespace) -> None:
    """Refuse a --resume that names no run folder: an --output that is a file (it was told that
    the run "stopped before it started"), or ``effvid train --resume RUN``, where RUN, as
    --resume takes no value, became DATA (and was read as a list file or class folders)."""
    from ..training.run_folder import resume_command, run_left_without_state
    from ..training.run_lock import why_not_a_folder

    given = Path(args.data) if args.data else None
    run = given if given is None or given.is_dir() else given.parent
    if args.output is None and run is not None and ((run / "last_state.pt").is_file() or run_left_without_state(run)):
        what = "a run folder" if run == given else f"a file of the run in {run}"
        raise ValueError(f"{given} is {what}, not training data: --resume takes no value (it continues the "
                         f"run in --output); {resume_command(run)} continues that run")
    out = Path(args.output or TrainConfig.output)
    if why := why_not_a_folder(out):  # as a new run's --output FILE is refused
        raise ValueError(f"cannot resume {out}: {why}")


def run_named_like(out: Path) -> str:
    """"; did you mean 'runs/tsm_lr0.01'?" for a run folder beside ``out`` named like it (a
    mistyped --output of a --resume), else ""."""
    from ..training.run_folder import RunWriter

    try:
        runs = {p.name: str(p) for p in out.parent.iterdir()
                if any((p / name).is_file() for name in RunWriter.RUN_FILES)}
    except OSError:  # no such parent folder either
        return ""
    hint = did_you_mean(out.name, runs)
    return f"; {hint}" if hint else ""


def run(args: argparse.Namespace) -> int:
    from ..runtime import cpu_out_of_memory
    from ..training.loop import train
    from ..training.run_folder import missing_state_advice, resume_command, run_left_without_state

    if args.resume:
        check_resume_folder(args)
    try:
        cfg = config_from_args(args)
    except BadValue as e:
        raise as_flag(e, args) from None
    refuse_unused_flags(args, cfg)
    cfg = bounded_config_workers(cfg)
    if not cfg.data:
        out = Path(cfg.output)
        if args.config is not None:
            raise ValueError(f"no training data given: pass DATA, or 'data' in {args.config}")
        if args.resume and not out.exists():
            raise ValueError(f"nothing to resume in {out}: there is no such folder{run_named_like(out)}")
        if args.resume and (out / "config.json").is_file():  # train writes 'data' there always
            raise ValueError(f"cannot resume {out}: its config.json holds no 'data' (it is empty or "
                             "damaged); resume it with DATA and the run's original options")
        if args.resume and (out / "last_state.pt").is_file():
            raise ValueError(f"cannot resume {out}: its config.json is missing, and its last_state.pt "
                             "(from an older effvid) does not hold the configuration; resume it with "
                             "DATA and the run's original options: "
                             f"{resume_command(out, data=('DATA',))} ...")
        if args.resume and run_left_without_state(out):
            raise ValueError(f"cannot resume {out}: {missing_state_advice(out)}")
        if args.resume:
            raise ValueError(f"nothing to resume in {out}: it has no config.json (the run stopped "
                             "before it started); pass DATA to start it")
        raise ValueError("no training data given: pass DATA or a --config with 'data'")
    out = Path(cfg.output)
    if args.resume and not out.exists() and reports_errors() and (hint := run_named_like(out)):
        # with DATA, --resume of a folder that is not there starts the run (a job script's one
        # command for its first start and its restarts): a mistyped name started it afresh unsaid
        print(f"note: nothing to resume in {out}, which is not there: this run starts from scratch{hint}")
    try:
        # SIGTERM (docker stop, a batch scheduler's end of job) and SIGHUP (a closed terminal)
        # stop the run as Ctrl-C does: they ended it with no word of what was saved
        with ctrl_c_recorded(also_on=(signal.SIGTERM, signal.SIGHUP)):
            result = train(cfg)
    except BadValue as e:  # a setting the model refuses (create_model names it as the config does)
        raise as_flag(e, args) from None
    except BrokenPipeError as e:
        if not stdout_reader_left():
            raise
        # "effvid train ... | head" or a tee that died: the run stops, as Unix programs do when
        # the reader of their output leaves, but saying where it stands; it ended with status 0
        # and no word, and a job script took the run for finished
        traceback.clear_frames(e.__traceback__)  # they hold the pass's loader: end its workers now
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
        saved = saved_epochs(cfg)
        if reports_errors():
            say("effvid train: stopped, the reader of its output left (broken pipe); "
                + (saved or "the first epoch was not completed; nothing to resume"))
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt as e:
        signum = e.signum if isinstance(e, Stopped) else signal.SIGINT
        why = stop_reason(signum)
        with worker_deaths_ignored():  # the signal may have reached the loader workers too
            saved = saved_epochs(cfg)
        if reports_errors():  # torchrun passes a Ctrl-C to every process
            say(f"effvid train: {why}; {saved}" if saved else f"effvid train: {why} before the first "
                "epoch was completed; nothing to resume")
        return 128 + signum
    except RuntimeError as e:
        if type(e).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError (CUDA's)
            print(out_of_memory_message(cfg, str(e)), file=sys.stderr)
            return 1
        if failed := cpu_out_of_memory(e):  # a 63-line traceback ended in "can't allocate memory"
            print(out_of_memory_message(cfg, failed, gpu=False), file=sys.stderr)
            return 1
        if str(e).startswith(STALLED):
            print(worker_stalled_message(cfg), file=sys.stderr)
            return 1
        if peer_ended(e):  # under torchrun: a 35-line traceback of gloo's "Connection closed by peer"
            # gloo's "[.../pair.cc:561] Connection closed by peer [127.0.0.1]:21205. This is ... GLHF!"
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            first = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". ")[0]
            say(f"effvid train{_this_process()}: stopped: another process of the run ended ({first}); "
                f"its own message says why. {_saved_sentence(cfg)}")
            return 1
        if not str(e).startswith("DataLoader worker (pid"):
            raise
        print(worker_died_message(cfg, str(e).strip()), file=sys.stderr)
        return 1
    if not result["is_main"]:  # under torchrun, one process reports
        return 0
    print(f"best val top-1 {100 * result['best_top1']:.1f}%; run folder: {result['output']} "
          f"(best.safetensors, last.safetensors, curves.png, confusion.png, tensorboard/)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train a TSN/TSM recogniser", description=__doc__,
                       formatter_class=HelpFormatter)
    p.add_argument("data", nargs="?", default=None, help=HELP["data"])
    p.add_argument("--config", help="JSON configuration to start from (e.g. a run's config.json)")
    p.add_argument("--recipe", choices=list(RECIPES),
                   help="the original TSM training recipe for Kinetics, Something-Something or "
                        "fine-tuning on UCF101 (optimiser, schedule, weight decay, dropout, ...), "
                        "with its learning rate scaled to this run's batch; flags override it")
    add_config_arguments(p, skip=("data",))
    p.set_defaults(func=run)
