"""``effvid info MODEL``: parameters and FLOPs of a model.

MODEL is one of

* a registered recogniser name (``effvid info --list`` shows them), e.g. ``tsm_resnet50``;
  built on the meta device (no weights allocated, nothing downloaded);
* an effvid ``.safetensors`` weights file (its stored configuration is used);
* an original TSM release checkpoint (``TSM_kinetics_RGB_resnet50_...pth``), read safely;
* ``av``: the audio-visual transformer (:mod:`effvid.av`); prints its parameter report
  (``--sharing``, ``--fusion``, ``--visual-cnn``, ``--audio-cnn``);
* a run folder of ``effvid train``: where the run stands (epochs done, best and last
  accuracy, unreadable videos, whether it runs now, and how to continue it).

FLOPs are given as multiply-adds ("GFLOPs" in the TSM paper's convention: TSM-ResNet-50 at
8x224x224 is about 33 G) and as counted by torch (2 per multiply-add). The temporal shift costs
no FLOPs, so a TSM and its TSN counterpart print the same.

Examples::

    effvid info tsm_resnet50
    effvid info tsm_mobilenet_v2 --num-classes 174 --num-segments 16 --json
    effvid info runs/best.safetensors
    effvid info runs/k400
    effvid info av --sharing partial
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..cli import HelpFormatter, UserError, command_line, plural, positive_int

SHARING_CHOICES = ("none", "layers", "all", "partial")
FUSION_CHOICES = ("early", "mid", "late")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "info", help="parameters and FLOPs of a model, or where a training run stands",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=HelpFormatter)
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help="registered model name, .safetensors file, original TSM .pth, 'av', or a run folder")
    p.add_argument("--list", action="store_true", help="list the registered model names and exit")
    p.add_argument("--num-classes", type=positive_int, default=None,
                   help="classes for a model name (default: 400; files use their own)")
    p.add_argument("--num-segments", "--frames", type=positive_int, default=None,
                   help="frames per clip (default: 8, or the file's)")
    p.add_argument("--shift-div", type=positive_int, default=None,
                   help="for an original TSM .pth whose name does not say it: 1/N of the channels "
                   "shift each way (default: from the name, else 8)")
    p.add_argument("--size", type=positive_int, default=None,
                   help="frame height and width (default: 224, or the size a checkpoint was trained at)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    g = p.add_argument_group("audio-visual model (MODEL = av)")
    # defaults None, so that one given with another MODEL is known to be given (and refused)
    g.add_argument("--sharing", choices=SHARING_CHOICES, default=None,
                   help="transformer weight sharing (default: partial)")
    g.add_argument("--fusion", choices=FUSION_CHOICES, default=None, help="fusion (default: mid)")
    g.add_argument("--visual-cnn", default=None, help="visual clip encoder (default: the model's)")
    g.add_argument("--audio-cnn", default=None, help="audio clip encoder (default: the model's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models import list_models

    if args.list:
        # 'av' apart: it is no --model of train/eval/predict, nor a create_model name
        print("\n".join(list_models() + ["", "av  (effvid info only: the audio-visual model, docs/av.md)"]))
        return 0
    if not args.model:
        raise UserError("give a MODEL (a name from 'effvid info --list', a .safetensors file, 'av', "
                        "or a run folder)")

    if args.model == "av":
        return _run_av(args)
    if given := av_flags_given(args):  # they were ignored, and the recogniser's report printed
        words = [word for flag in given for word in (flag, getattr(args, flag[2:].replace("-", "_")))]
        raise UserError(f"{_do_not_apply(given)} to {args.model} (only to the audio-visual model: "
                        f"{command_line('effvid', 'info', 'av', *words)})")
    if Path(args.model).is_dir():
        if given := model_flags_given(args):  # they would be ignored: the run has its own model
            weights = Path(args.model) / "best.safetensors"
            raise UserError(f"{_do_not_apply(given)} to a run folder ({args.model} is one); "
                            f"for its model's parameters and FLOPs: {command_line('effvid', 'info', weights)}")
        info = run_folder_info(Path(args.model))
        print(json.dumps(info, indent=2) if args.json else format_run_folder(info))
        return 0
    model, source, trained, classes, note = _build(args)
    info = describe(model, num_segments=args.num_segments, size=args.size or trained.get("size") or 224)
    info["source"] = source
    if trained:  # an effvid file's: how its run read the videos, which eval and predict repeat
        info["trained"] = trained
    if classes:
        info["classes"] = classes
    if note:
        info["note"] = note
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(format_info(info))
    return 0


def model_flags_given(args: argparse.Namespace) -> list[str]:
    """The flags given that describe a recogniser to build, which 'av' and a run folder refuse
    rather than ignore."""
    return [flag for flag, value in (("--num-classes", args.num_classes), ("--num-segments", args.num_segments),
                                     ("--shift-div", args.shift_div), ("--size", args.size))
            if value is not None]


def av_flags_given(args: argparse.Namespace) -> list[str]:
    """The flags given that describe the audio-visual model, which other MODELs refuse."""
    return [flag for flag in ("--sharing", "--fusion", "--visual-cnn", "--audio-cnn")
            if getattr(args, flag[2:].replace("-", "_")) is not None]


def _build(args: argparse.Namespace):
    """(model, source description, how it was trained to see videos (an effvid file's size,
    scale_size, sampling and flip; else empty), its class names if known, and a note on settings
    that were assumed) for a model name or a weights file."""
    import torch

    from ..models import create_model, list_models
    from ..models.weights import weights_not_found

    path = Path(args.model)
    if args.shift_div is not None and (args.model in list_models() or path.suffix == ".safetensors"):
        # a name builds what it is given, and an effvid file says its own
        raise UserError("--shift-div applies to an original TSM .pth (whose name does not say it), "
                        f"not to {args.model}")
    if args.model in list_models():
        kwargs = {"num_classes": args.num_classes or 400, "num_segments": args.num_segments or 8}
        try:
            with torch.device("meta"):  # shapes only: fast, no memory, no weights
                model = create_model(args.model, **kwargs)
        except (RuntimeError, NotImplementedError):
            model = create_model(args.model, **kwargs)
        return model, "registry", {}, None, None
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise UserError(str(weights_not_found(path)))
        from ..models.weights import load_model

        overrides = {}
        if args.num_segments is not None:
            overrides["num_segments"] = args.num_segments
        if args.num_classes is not None:
            raise UserError("--num-classes does not apply to a weights file (it has its own)")
        model, meta = load_model(path, **overrides)
        return model, str(path), meta.get("extra", {}), meta.get("classes"), None
    if path.suffix in (".pth", ".pt", ".tar") or path.is_file():
        if not path.is_file():
            raise UserError(str(weights_not_found(path, "checkpoint")))
        from ..models.tsm_checkpoint import assumed_settings_note, load_tsm_checkpoint, tsn_segments_note

        model = load_tsm_checkpoint(path, num_segments=args.num_segments, shift_div=args.shift_div)
        ci = model.checkpoint_info  # what the file says of its training, from its name and fields
        about = [ci.dataset, f"epoch {ci.epoch}" if ci.epoch is not None else None,
                 f"best top-1 {ci.best_prec1:.1f}%" if ci.best_prec1 is not None else None,
                 "dense sampling" if ci.dense else None]
        about = ": " + ", ".join(a for a in about if a) if any(about) else ""
        # no class names inside; what its name does not give was assumed
        kind = "original TSM online demo checkpoint" if ci.online_demo else "original TSM checkpoint"
        # (a TSN's number of segments is never assumed: its note is the other one)
        return (model, f"{path} ({kind}{about})", {}, None,
                assumed_settings_note(ci) or tsn_segments_note(ci))
    raise UserError(
        f"unknown model {args.model!r}: not a registered name ({', '.join(list_models())}), "
        "not a .safetensors file, not 'av', and not a folder")


def describe(model, *, num_segments: int | None = None, size: int = 224) -> dict:
    """Parameters and FLOPs of a recogniser on one clip of ``num_segments`` frames of
    ``size`` x ``size`` (default: the model's own number of segments)."""
    from ..models.complexity import count_flops, count_parameters

    config = dict(getattr(model, "config", {}) or {})
    t = num_segments or getattr(model, "num_segments", None) or config.get("num_segments") or 8
    if num_segments is not None:
        from ..models.temporal_shift import set_shift_segments

        set_shift_segments(model, num_segments)  # the model's own num_segments too
        config["num_segments"] = num_segments
    shape = (1, t, 3, size, size)
    try:
        flops = count_flops(model, shape)
    except Exception as e:  # a model that cannot run this input: say which
        raise UserError(f"cannot run {config.get('name', type(model).__name__)} on input "
                        f"{shape}: {e}") from e
    params = count_parameters(model)
    return {
        "model": config.get("name", type(model).__name__),
        "config": config,
        "input_shape": list(shape),
        "parameters": params,
        "trainable_parameters": count_parameters(model, trainable_only=True),
        "macs": flops["macs"],
        "gflops_multiply_adds": round(flops["gmacs"], 4),
        "flops_torch": flops["flops"],
        "gflops_torch": round(flops["gflops"], 4),
        "gflops_per_frame_multiply_adds": round(flops["gmacs"] / t, 4),
        "by_operator": flops["by_operator"],
    }


def format_info(info: dict) -> str:
    cfg = info["config"]
    details = []
    if "num_classes" in cfg:
        details.append(plural(cfg['num_classes'], 'class'))
    if "shift_div" in cfg:
        details.append(f"shift 1/{cfg['shift_div']} {cfg.get('shift_place', '')} "
                       f"{cfg.get('shift_direction', '')}".rstrip())
    elif str(info["model"]).startswith("tsn_"):
        details.append("no shift")
    shape = " x ".join(str(s) for s in info["input_shape"])
    lines = [
        f"model        {info['model']}" + (f"  ({', '.join(details)})" if details else ""),
    ]
    if info.get("source") not in (None, "registry"):
        lines.append(f"from         {info['source']}")
    if info.get("classes"):
        names, more = info["classes"][:10], len(info["classes"]) - 10
        lines.append(f"classes      {', '.join(names)}" + (f", ... and {more} more (all in --json)" if more > 0 else ""))
    if trained := info.get("trained"):
        from ..inference import test_view

        view = test_view({"extra": trained})  # its defaults for what an older file does not hold
        flips = {True: ", with flips", False: ", without flips"}.get(trained.get("flip"), "")
        lines.append(f"trained      {view['size']} px crops of frames resized to a {view['scale_size']} px "
                     f"short side, {view['sampling']} sampling{flips} (eval and predict view videos so)")
    lines += [
        f"input        {shape}  (clips x frames x channels x height x width)",
        f"parameters   {info['parameters']:,}  ({info['parameters'] / 1e6:.2f} M)",
        f"GFLOPs       {info['gflops_multiply_adds']:.2f}  multiply-adds per clip "
        "(the TSM paper's 'FLOPs')",
        f"             {info['gflops_torch']:.2f}  FLOPs as counted by torch (2 per multiply-add)",
        f"per frame    {info['gflops_per_frame_multiply_adds']:.3f} GFLOPs (multiply-adds)",
        "counted      convolutions and matrix products; BatchNorm, activations, pooling and the "
        "temporal shift count zero",
    ]
    if info.get("note"):
        lines.append(info["note"])
    return "\n".join(lines)


RUN_FILES = ("best.safetensors", "last.safetensors", "curves.png", "confusion.png", "bad_videos.json",
             "split.json", "tensorboard")


def run_folder_info(folder: Path) -> dict:
    """Where the run in ``folder`` stands, from its config.json, the epochs its last_state.pt
    commits (its tensors are not read) or else history.json, and its lock
    (:func:`~effvid.training.run_lock.run_folder_holder`); and which of its weights files are
    damaged (their headers read)."""
    from dataclasses import asdict

    from ..models.weights import safetensors_problem
    from ..training.config import TrainConfig
    from ..training.run_folder import (absolute_bad_paths, bad_videos_list, best_epoch, check_history,
                                       committed_history, missing_state_advice, resume_command, run_left_without_state,
                                       upgrade_bad_samples)
    from ..training.run_lock import run_folder_holder

    def read_json(name: str):
        try:
            return json.loads((folder / name).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read {folder / name}: {e}") from e

    # checked as train --resume and eval check them: a file of another shape is named (status
    # 2), where it failed later with a traceback
    try:
        cfg = TrainConfig.load(folder / "config.json") if (folder / "config.json").is_file() else None
        config = asdict(cfg) if cfg is not None else None
        history = read_json("history.json")
        history = [] if history is None else check_history(history, folder / "history.json")
    except ValueError as e:
        raise UserError(str(e)) from e
    if config is not None and not config["data"]:  # train writes DATA, made absolute, always
        raise UserError(f"{folder / 'config.json'} holds no 'data': it is not a run's configuration "
                        "(empty or damaged)")
    has_state = (folder / "last_state.pt").is_file()
    if config is None and not history and not has_state:
        raise UserError(f"{folder} is a folder, not an effvid run folder (it has no config.json, "
                        "history.json or last_state.pt)")
    upgrade_bad_samples(history)  # runs written before bad_new
    unreadable_state = None
    try:  # the commit point: history.json is written after it and may be an epoch behind
        history = committed_history(folder) or history
    except (OSError, ValueError) as e:  # a damaged state: what to do, in missing_state_advice's words
        unreadable_state = str(e)
    # An older run's history spells a video relative to where it started, then absolute after a
    # resume: each relative path is the absolute one it ends with, as a resume reads them (the
    # data is not scanned here: a video met under both spellings has its absolute one in there)
    absolute_bad_paths(history, [path for h in history for path, _ in h["bad_new"] if os.path.isabs(path)])
    total = (config or {}).get("epochs")
    info = {"folder": str(folder), "model": (config or {}).get("model"),
            "num_segments": (config or {}).get("num_segments"), "data": (config or {}).get("data"),
            "val_data": (config or {}).get("val_data"), "epochs_done": len(history), "epochs": total,
            "seconds": round(sum(h.get("seconds", 0) for h in history), 1),
            "unreadable_videos": len(bad_videos_list(history)),
            "files": [name for name in RUN_FILES if (folder / name).exists()]}
    # a truncated best.safetensors (a full disk, a copy that did not finish) was found only by
    # eval or predict, while info presented the run as fine
    info["damaged"] = {name: why for name in ("best.safetensors", "last.safetensors")
                       if (folder / name).is_file() and (why := safetensors_problem(folder / name))}
    if history:
        best = max(h["val"]["top1"] for h in history)
        last = history[-1]
        # the confusion matrix: runs written before per_class (2026-11-23) have it too
        info |= {"num_classes": len(last["val"]["confusion"]), "best_top1": best,
                 "best_epoch": best_epoch(history, best) + 1,
                 "last": {"train_loss": last["train"]["loss"], "train_top1": last["train"]["top1"],
                          "val_top1": last["val"]["top1"], "val_top5": last["val"].get("top5")}}
    if cfg is not None and (note := unsaved_split_note(cfg, folder)):
        info["note"] = note
    holder = run_folder_holder(folder)
    if holder:
        info["state"] = f"running now ({holder})"
    elif total is not None and len(history) >= total:
        info["state"] = "finished" + (f", and {unreadable_state}" if unreadable_state else "")
    elif unreadable_state:
        info["state"] = f"stopped, and {unreadable_state}"
    elif has_state:
        info["state"] = f"stopped: continue with {resume_command(folder)}"
    elif run_left_without_state(folder):  # its epochs' files, without the state that resumes them
        info["state"] = f"stopped, and {missing_state_advice(folder)}"
    else:
        info["state"] = "stopped before its first epoch was completed: nothing to resume"
    return info


def unsaved_split_note(cfg, folder: Path) -> str | None:
    """What to say of a run that held out part of its data for validation but has no split.json
    (a run from before effvid saved it, or the file deleted): ``effvid eval --held-out`` cannot
    draw that split again. None otherwise, and where the data is gone (its layout unknown)."""
    from ..training.run_data import splits_by_fraction

    if (folder / "split.json").exists() or not cfg.data or not Path(cfg.data).exists():
        return None
    try:
        if not splits_by_fraction(cfg):
            return None
    except (OSError, ValueError):  # DATA not readable as a run reads it: its run would say so
        return None
    return (f"no split.json: the run held out {100 * cfg.val_fraction:g}% of each class of its data for "
            "validation, and that split cannot be drawn again, so effvid eval --held-out cannot "
            "evaluate those videos (a run from before effvid saved its split, or the file was deleted)")


def format_run_folder(info: dict) -> str:
    def pct(x):
        return f"{100 * x:.1f}%"

    minutes = info["seconds"] / 60
    took = f"{minutes / 60:.1f} h" if minutes >= 90 else f"{minutes:.0f} min" if minutes >= 1 else f"{info['seconds']:.0f} s"
    lines = [f"run folder   {info['folder']}"]
    if info["model"]:
        lines.append(f"model        {info['model']}, {plural(info['num_segments'], 'segment')}"
                     + (f", {plural(info['num_classes'], 'class')}" if "num_classes" in info else ""))
    if info["data"]:
        lines.append(f"data         {info['data']}" + (f" (validation: {info['val_data']})" if info["val_data"] else ""))
    if info.get("note"):
        lines.append(f"note         {info['note']}")
    lines.append(f"epochs       {info['epochs_done']}" + (f" of {info['epochs']}" if info["epochs"] else "")
                 + (f" ({took} of training and validation)" if info["epochs_done"] else ""))
    if "best_top1" in info:
        last = info["last"]
        lines += [f"best         val top-1 {pct(info['best_top1'])} at epoch {info['best_epoch']}",
                  f"last epoch   train loss {last['train_loss']:.3f}, top-1 {pct(last['train_top1'])}; "
                  f"val top-1 {pct(last['val_top1'])}" + (f", top-5 {pct(last['val_top5'])}" if last["val_top5"] is not None else "")]
    if info["unreadable_videos"]:  # runs written before bad_videos.json list them in history.json only
        listed = "bad_videos.json" if "bad_videos.json" in info["files"] else "history.json"
        lines.append(f"unreadable   {info['unreadable_videos']:,} video(s) skipped ({listed})")
    lines += [f"damaged      {name}: {why}" for name, why in info["damaged"].items()]
    lines += [f"state        {info['state']}", f"files        {', '.join(info['files']) or '-'}"]
    return "\n".join(lines)


def _do_not_apply(given: list[str]) -> str:
    """"--size does not apply", "--num-segments, --size do not apply"."""
    return f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply"


def _run_av(args: argparse.Namespace) -> int:
    # Hook into the audio-visual package (effvid.av): create_av_model + parameter_report.
    try:
        from ..av import create_av_model, format_parameter_report, parameter_report
    except ImportError as e:
        raise UserError(f"the audio-visual model is not available in this build ({e})") from e
    if given := model_flags_given(args):  # the report is of parameters, which do not depend on these
        raise UserError(f"{_do_not_apply(given)} to 'av' (its report counts parameters; "
                        "use --sharing, --fusion, --visual-cnn, --audio-cnn)")
    kwargs = {"sharing": args.sharing or "partial", "fusion": args.fusion or "mid"}
    if args.visual_cnn:
        kwargs["visual_cnn"] = args.visual_cnn
    if args.audio_cnn:
        kwargs["audio_cnn"] = args.audio_cnn
    import torch

    try:
        try:
            with torch.device("meta"):
                model = create_av_model(**kwargs)
        except (RuntimeError, NotImplementedError, TypeError):
            model = create_av_model(**kwargs)  # e.g. a parametrisation without meta support
    except ValueError as e:
        raise UserError(str(e)) from e
    report = parameter_report(model)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_parameter_report(report))
    return 0


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["info", *sys.argv[1:]]))
