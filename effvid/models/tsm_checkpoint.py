"""Load checkpoints of the original TSM release (``TSM_kinetics_RGB_resnet50_shift8_...pth``).

The original code saves ``torch.save({"epoch", "arch", "state_dict", "optimizer",
"best_prec1"})`` with the network wrapped in ``DataParallel`` and its TSN wrapper, so keys look
like ``module.base_model.layer1.0.conv1.net.weight`` and ``module.new_fc.weight``. This module
maps them onto an effvid :class:`~effvid.models.recognizer.Recognizer` (``backbone.*`` and
``fc.*``).

**The online demo.** ``mobilenetv2_jester_online.pth.tar``, the only released causal (online)
model, is the bare state dict of the demo's own MobileNetV2 (``online_demo/mobilenet_v2_tsm.py``:
``features.N.conv.K...`` and ``classifier.*``, no ``base_model.`` and no ``.net`` wrappers).
Its code shifts the first 1/8 of the channels of each residual block's input from the previous
frame, as effvid's causal residual shift does, so it loads as a causal ``tsm_mobilenet_v2``:
its keys are renamed into the release layout, ``.net`` added where the demo shifts.

**Keys first.** Everything the weights can tell is read from the weights, not from the file
name: the architecture (MobileNetV2 if there are ``features.*`` keys; the ResNet depth from the
number of blocks per stage and whether blocks have a ``conv3``), whether there is a temporal
shift (``.net`` wrappers), its placement (``conv1.net`` = residual/"blockres";
``layerX.i.net.conv1`` = in-place/"block") and the number of classes (``new_fc``, or, for a
model trained without dropout, ``base_model.fc`` / ``base_model.classifier``). Only what
the weights cannot tell (the shift's ``fold_div`` and the number of segments) is taken from the
caller, else from the file name (``shift8``, ``segment8``), else the defaults 8 and 8. So a
renamed file loads the same.

**Safety.** Files are read with ``torch.load(weights_only=True)`` only. ``best_prec1`` is
sometimes a numpy scalar; for that case exactly numpy's scalar-reconstruction function and its
numeric dtype classes are allowed, nothing else.

**Strictness.** Every key of the file must map onto a parameter or buffer of the effvid model
with the same shape, and every parameter of the model must be present (only BatchNorm's
``num_batches_tracked`` counters may be absent, as in checkpoints of old PyTorch versions);
otherwise the error lists the offending keys.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import torch

from ..errors import BadValue, check_positive_ints, plural
from .recognizer import Recognizer
from .weights import (is_resume_state, load_torch_file, resume_state_error, strip_module_prefix, weights_kind,
                      weights_not_found, wrong_weights)

__all__ = [
    "TSMCheckpointInfo",
    "assumed_settings_note",
    "convert_tsm_checkpoint",
    "inspect_tsm_checkpoint",
    "load_tsm_checkpoint",
    "read_tsm_checkpoint",
    "tsm_init_state_dict",
    "tsm_init_weights",
    "tsm_to_effvid_state_dict",
    "tsn_segments_note",
]

DEFAULT_SHIFT_DIV = 8
DEFAULT_NUM_SEGMENTS = 8
ONLINE_DEMO_SHIFT_DIV = 8  # online_demo/mobilenet_v2_tsm.py shifts c // 8 channels, always

# (block type, blocks per stage) -> effvid arch
_RESNETS = {
    ("basic", (2, 2, 2, 2)): "resnet18",
    ("basic", (3, 4, 6, 3)): "resnet34",
    ("bottleneck", (3, 4, 6, 3)): "resnet50",
    ("bottleneck", (3, 4, 23, 3)): "resnet101",
    ("bottleneck", (3, 8, 36, 3)): "resnet152",
}

# The original MobileNetV2's InvertedResidual ``conv`` Sequential indices -> torchvision's.
# With expansion: [pw conv, bn, relu6, dw conv, bn, relu6, pw-linear conv, bn];
# expand_ratio=1 (features.1): [dw conv, bn, relu6, pw-linear conv, bn].
_MBV2_EXPAND = {0: "0.0", 1: "0.1", 3: "1.0", 4: "1.1", 6: "2", 7: "3"}
_MBV2_NO_EXPAND = {0: "0.0", 1: "0.1", 3: "1", 4: "2"}
_MBV2_BLOCK_KEY = re.compile(r"^features\.(\d+)\.conv\.(\d+)\.(.+)$")


class TSMCheckpointError(ValueError):
    """A file that is not a loadable original-TSM checkpoint (a ValueError, so the CLI prints it
    as one line)."""


@dataclass
class TSMCheckpointInfo:
    """What was inferred about an original TSM checkpoint, and from where.

    ``sources`` maps each field to ``"keys"``, ``"file name"``, ``"caller"`` or ``"default"``.
    """

    path: str
    arch: str
    shift: bool
    shift_place: str | None
    shift_div: int
    num_segments: int
    num_classes: int
    sources: dict[str, str] = field(default_factory=dict)
    dataset: str | None = None
    dense: bool = False
    epoch: int | None = None
    best_prec1: float | None = None
    shift_direction: str = "bidirectional"  # causal: the online demo's
    online_demo: bool = False

    @property
    def model_name(self) -> str:
        return f"{'tsm' if self.shift else 'tsn'}_{self.arch}"

    def create_kwargs(self) -> dict:
        kwargs = {"num_classes": self.num_classes, "num_segments": self.num_segments}
        if self.shift:
            kwargs.update(shift_div=self.shift_div, shift_place=self.shift_place,
                          shift_direction=self.shift_direction)
        return kwargs

    def as_dict(self) -> dict:
        d = asdict(self)
        d["model_name"] = self.model_name
        return d

    def assumed(self) -> dict[str, str]:
        """The settings that neither the caller nor the file name gave, so the defaults were
        taken (the weights cannot tell them: any number of segments and any shift fraction give
        the same shapes): setting -> its value in words ({} when none was assumed). A TSN's
        number of segments is not one: its weights compute the same for any
        (:func:`tsn_segments_note`)."""
        out = {}
        if self.shift and self.sources.get("num_segments") == "default":
            out["num_segments"] = plural(self.num_segments, "segment")
        if self.shift and self.sources.get("shift_div") == "default":
            out["shift_div"] = f"shift 1/{self.shift_div}"
        return out


# The words and flags for what a file name may not give (TSMCheckpointInfo.assumed)
SETTINGS_NOT_IN_WEIGHTS = {"num_segments": ("the number of segments", "--num-segments"),
            "shift_div": ("the shift fraction", "--shift-div")}


def assumed_settings_note(info: TSMCheckpointInfo) -> str | None:
    """One line for the commands that build a model of an original TSM checkpoint (convert,
    info): the settings its name did not give and were assumed, and the flags that set them;
    None when the name (or the caller) gave them all. Without it a renamed file was built as 8
    segments and shift 1/8 without a word, and gave wrong logits if it was trained otherwise. For
    the online demo's file, which is streamed frame by frame, it says what the number is for."""
    assumed = info.assumed()
    if not assumed:
        return None
    if info.online_demo:  # its code fixes the shift fraction: only the segments can be assumed
        # streamed frame by frame, the number means nothing; "if it was trained otherwise" misled
        return (f"note: {Path(info.path).name} is the online demo's model: effvid stream runs it frame by "
                "frame, where the number of segments changes nothing; for what classifies whole clips "
                f"(effvid eval and predict, the offline ONNX export) {assumed['num_segments']} were assumed, "
                "as its name does not say (--num-segments N for another)")
    return (f"note: the name {Path(info.path).name} does not give "
            f"{' or '.join(SETTINGS_NOT_IN_WEIGHTS[k][0] for k in assumed)}, which the weights cannot tell: assumed "
            f"{' and '.join(assumed.values())}; if it was trained otherwise, give "
            f"{' and '.join(SETTINGS_NOT_IN_WEIGHTS[k][1] + ' N' for k in assumed)}")


ORIGINAL_TEST_SEGMENTS = 8  # what the original README's commands test its TSN on


def tsn_segments_note(info: TSMCheckpointInfo) -> str | None:
    """One line for convert and info when a TSN file's name gives a number of segments other
    than the 8 the original's results were measured with (the Kinetics TSN baseline is
    ``_segment5``, and its README evaluates it with ``--test_segments=8``): without it, effvid
    eval took the 5 as the file's own. None for a TSM, or when the caller chose the number."""
    if info.shift or info.sources.get("num_segments") != "file name" or info.num_segments == ORIGINAL_TEST_SEGMENTS:
        return None
    return (f"note: a TSN's weights do not depend on the number of segments (each frame is "
            f"classified alone, and the clip's logits are their average); {Path(info.path).name} "
            f"was trained on {info.num_segments}, and the original's results evaluate it on "
            f"{ORIGINAL_TEST_SEGMENTS}: give --num-segments {ORIGINAL_TEST_SEGMENTS} for those")


# ----------------------------------------------------------------------------------------------
# Reading the file
# ----------------------------------------------------------------------------------------------


def read_tsm_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Return (state_dict, extras) of a checkpoint file, read with ``weights_only=True``.

    ``extras`` holds ``epoch``, ``arch`` and ``best_prec1`` (as a float) when present. A bare
    state dict (no wrapper) is accepted too. The online demo's state dict is returned in the
    release layout (:func:`_online_demo_as_release`), with ``extras["online_demo"] = True``.
    """
    path = Path(path)
    if not path.is_file():
        raise weights_not_found(path, "checkpoint")
    if is_resume_state(path):
        raise TSMCheckpointError(str(resume_state_error(path)))
    try:
        obj = load_torch_file(path)
    except ValueError as e:
        raise TSMCheckpointError(str(e)) from e
    if is_resume_state(path, obj):
        raise TSMCheckpointError(str(resume_state_error(path)))

    extras: dict = {}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state = obj["state_dict"]
        for k in ("epoch", "arch", "best_prec1"):
            if k in obj:
                extras[k] = obj[k]
    else:
        state = obj
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise TSMCheckpointError(f"{path} does not hold a state dict of tensors")
    if _is_online_demo(state):
        state, extras["online_demo"] = _online_demo_as_release(state), True
    if "best_prec1" in extras:
        try:
            extras["best_prec1"] = float(extras["best_prec1"])
        except (TypeError, ValueError):
            del extras["best_prec1"]
    if "epoch" in extras:
        try:
            extras["epoch"] = int(extras["epoch"])
        except (TypeError, ValueError):
            del extras["epoch"]
    return state, extras


# ----------------------------------------------------------------------------------------------
# Inference from the keys (and the file name for what keys cannot tell)
# ----------------------------------------------------------------------------------------------


def _is_online_demo(state: dict[str, torch.Tensor]) -> bool:
    """Whether ``state`` is the online demo's MobileNetV2: ``features.*`` and a plain Linear
    ``classifier`` (torchvision's MobileNetV2 has ``classifier.1.*``, the release files
    ``base_model.*``)."""
    keys = strip_module_prefix(state)
    return "classifier.weight" in keys and all(k.startswith(("features.", "classifier.")) for k in keys)


def _online_demo_as_release(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The online demo's state dict as the release files name it: under ``base_model.``, and
    the first conv of each block the demo shifts wrapped (``conv.0.net.``). The demo shifts
    the blocks with a residual connection (its ``shift_block_idx``), which the keys show as an
    expansion block whose output has as many channels as its input."""
    state = {"base_model." + k: v for k, v in strip_module_prefix(state).items()}
    shifted = set()
    for block in _mbv2_expansion_blocks(state):
        first = state.get(f"base_model.features.{block}.conv.0.weight")
        last = state.get(f"base_model.features.{block}.conv.6.weight")
        if first is not None and last is not None and first.shape[1] == last.shape[0]:
            shifted.add(block)
    out = {}
    for key, value in state.items():
        m = _MBV2_BLOCK_KEY.match(key[len("base_model."):])
        if m and int(m.group(1)) in shifted and m.group(2) == "0":
            key = f"base_model.features.{m.group(1)}.conv.0.net.{m.group(3)}"
        out[key] = value
    return out


def _parse_file_name(name: str) -> dict:
    """Hints from a release-style file name; every field optional."""
    stem = name.rsplit(".", 1)[0] if name.endswith((".pth", ".pt", ".tar")) else name
    tokens = stem.split("_")
    hints: dict = {}
    for tok in tokens:
        if m := re.fullmatch(r"shift(\d+)", tok):
            hints["shift_div"] = int(m.group(1))
        elif m := re.fullmatch(r"segment(\d+)", tok):
            hints["num_segments"] = int(m.group(1))
    if "dense" in tokens:
        hints["dense"] = True
    if len(tokens) > 2 and tokens[0].upper() in ("TSM", "TSN"):
        hints["dataset"] = tokens[1]
    return hints


def _arch_from_keys(keys: list[str], where: str) -> str:
    base = [k[len("base_model."):] for k in keys if k.startswith("base_model.")]
    if not base and (kind := weights_kind(keys)) in ("effvid", "imagenet"):
        raise TSMCheckpointError(str(wrong_weights(where, kind, "an original TSM release checkpoint")))
    if not base:
        raise TSMCheckpointError(
            f"{where}: no 'base_model.*' keys; this is not a checkpoint of the original TSM code "
            f"(first keys: {keys[:3]})")
    if any(re.search(r"(^|\.)nl\.", k) for k in base) or any(
            re.match(r"layer\d+\.\d+\.block\.", k) for k in base):
        raise TSMCheckpointError(
            f"{where}: non-local (_nl) TSM checkpoints are not supported by effvid")
    if any(re.match(r"layer\d+\.net\.", k) for k in base):
        # TemporalPool wraps a whole stage (layer2.net.0.conv1...): without this check it read
        # as a ResNet with an empty stage, "unknown ResNet variant ([3, 0, 6, 3])"
        raise TSMCheckpointError(
            f"{where}: temporal-pooling (_tpool) TSM checkpoints are not supported by effvid")
    if any(k.startswith("features.") for k in base):
        blocks = {int(k.split(".")[1]) for k in base if k.startswith("features.")}
        if blocks != set(range(19)):
            raise TSMCheckpointError(
                f"{where}: 'features.*' keys with {len(blocks)} blocks; only the standard "
                "MobileNetV2 (19 feature blocks, width 1.0) is supported")
        return "mobilenet_v2"
    if any(k.startswith("layer1.") for k in base):
        counts = []
        for stage in range(1, 5):
            idx = {int(m.group(1)) for k in base if (m := re.match(rf"layer{stage}\.(\d+)\.", k))}
            counts.append(max(idx) + 1 if idx else 0)
        kind = "bottleneck" if any(re.search(r"^layer\d+\.\d+\.(net\.)?conv3\.", k) for k in base) \
            else "basic"
        arch = _RESNETS.get((kind, tuple(counts)))
        if arch is None:
            raise TSMCheckpointError(
                f"{where}: unknown ResNet variant ({kind} blocks, {counts} per stage); "
                f"supported: {', '.join(sorted(_RESNETS.values()))}")
        return arch
    raise TSMCheckpointError(
        f"{where}: unsupported architecture (keys like {base[:2]}); effvid loads the original "
        "TSM/TSN ResNet-18/34/50/101/152 and MobileNetV2 checkpoints")


def _stem_key(arch: str) -> str:
    return "base_model.features.0.0.weight" if arch == "mobilenet_v2" else "base_model.conv1.weight"


def inspect_tsm_checkpoint(
    path: str | Path,
    *,
    num_segments: int | None = None,
    shift_div: int | None = None,
    _loaded: tuple[dict, dict] | None = None,
) -> TSMCheckpointInfo:
    """Infer the configuration of an original TSM checkpoint (keys first, then the file name)."""
    path = Path(path)
    state, extras = _loaded if _loaded is not None else read_tsm_checkpoint(path)
    state = strip_module_prefix(state)
    keys = list(state)
    where = str(path)
    arch = _arch_from_keys(keys, where)

    stem = state.get(_stem_key(arch))
    if stem is None:
        raise TSMCheckpointError(f"{where}: missing the first conv ({_stem_key(arch)})")
    if stem.dim() != 4 or stem.shape[1] != 3:
        raise TSMCheckpointError(
            f"{where}: the first conv takes {stem.shape[1] if stem.dim() > 1 else '?'} input "
            "channels, not 3 (RGB); Flow and RGBDiff modality checkpoints are not supported")

    fc = next((state[f"{p}weight"] for p in _CLASSIFIERS if f"{p}weight" in state), None)
    if fc is None or fc.dim() != 2:
        raise TSMCheckpointError(f"{where}: no classifier 'new_fc.weight' [classes, features]")
    num_classes = int(fc.shape[0])

    shifted = [k for k in keys if ".net." in k]
    shift = bool(shifted)
    shift_place = None
    if shift:
        residual = any(re.search(r"(conv1|conv\.0)\.net\.", k) for k in shifted)
        inplace = any(re.search(r"layer\d+\.\d+\.net\.", k) for k in shifted)
        if residual and inplace:
            raise TSMCheckpointError(f"{where}: mixes residual and in-place shift placements")
        if not (residual or inplace):
            raise TSMCheckpointError(
                f"{where}: temporal shift at unexpected positions: {shifted[:4]}")
        shift_place = "residual" if residual else "inplace"

    demo = bool(extras.get("online_demo"))
    hints = _parse_file_name(path.name)
    sources = {"arch": "keys", "shift": "keys", "num_classes": "keys"}
    if shift:
        # the original code's shift is bidirectional; the online demo's is causal
        sources["shift_place"] = sources["shift_direction"] = "keys"

    def pick(name: str, given: int | None, default: int) -> int:
        if given is not None:
            # refused as create_model refuses it: int() took True as 1 and 8.9 as 8
            check_positive_ints(**{name: given})
            sources[name] = "caller"
            return int(given)  # a NumPy integer: a plain one, for the saved config's JSON
        if name in hints:
            sources[name] = "file name"
            return hints[name]
        sources[name] = "default"
        return default

    segs = pick("num_segments", num_segments, DEFAULT_NUM_SEGMENTS)
    if demo and shift_div is None:  # its code fixes the fraction
        div, sources["shift_div"] = ONLINE_DEMO_SHIFT_DIV, "keys"
    else:
        div = pick("shift_div", shift_div, DEFAULT_SHIFT_DIV)
    check_positive_ints(num_segments=segs)
    if shift and not demo and div < 2:  # the released TSMs shift both ways: 1/div to the past, 1/div to the future
        raise BadValue("shift_div", div, "must be >= 2 for the original TSM's bidirectional shift")
    return TSMCheckpointInfo(
        path=str(path), arch=arch, shift=shift, shift_place=shift_place, shift_div=div,
        num_segments=segs, num_classes=num_classes, sources=sources,
        # the demo's only checkpoint is Jester's (online_demo/main.py)
        dataset="jester" if demo else hints.get("dataset"), dense=hints.get("dense", False),
        epoch=extras.get("epoch"), best_prec1=extras.get("best_prec1"),
        shift_direction="causal" if demo else "bidirectional", online_demo=demo)


# ----------------------------------------------------------------------------------------------
# Key mapping
# ----------------------------------------------------------------------------------------------


def _mbv2_expansion_blocks(keys: Iterable[str]) -> set[int]:
    """Feature blocks whose ``conv`` Sequential has the 8-module (expansion) layout."""
    out = set()
    for k in keys:
        m = _MBV2_BLOCK_KEY.match(k[len("base_model."):]) if k.startswith("base_model.") else None
        if m and int(m.group(2)) > 4:
            out.add(int(m.group(1)))
    return out


# Where the original keeps the classifier: ``new_fc`` when it trained with dropout (the
# backbone's last layer becomes the Dropout), else the backbone's own last layer, replaced by
# a Linear over the new classes (``fc`` for ResNets, ``classifier`` for its MobileNetV2).
_CLASSIFIERS = ("new_fc.", "base_model.fc.", "base_model.classifier.")


def _map_key(key: str, arch: str, expansion: set[int]) -> str | None:
    """effvid key of one (prefix-stripped) original key, or None if it has no counterpart."""
    for prefix in _CLASSIFIERS:
        if key.startswith(prefix):
            return "fc." + key[len(prefix):]
    if not key.startswith("base_model."):
        return None
    rest = key[len("base_model."):]
    if arch == "mobilenet_v2":
        m = _MBV2_BLOCK_KEY.match(rest)
        if m:
            block, idx, tail = int(m.group(1)), int(m.group(2)), m.group(3)
            table = _MBV2_EXPAND if block in expansion else _MBV2_NO_EXPAND
            if idx not in table:
                return None
            rest = f"features.{block}.conv.{table[idx]}.{tail}"
    return "backbone." + rest


def tsm_to_effvid_state_dict(
    state: dict[str, torch.Tensor], arch: str, target: dict[str, torch.Tensor], where: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Rename an original TSM state dict onto ``target`` (an effvid model's state dict), strictly.

    Raises a :class:`TSMCheckpointError` listing every key of the file that maps nowhere (or to a
    tensor of another shape) and every model key the file lacks (BatchNorm's
    ``num_batches_tracked`` may be absent; the model's value is kept).
    """
    prefix = "module." if all(k.startswith("module.") for k in state) else ""
    state = strip_module_prefix(state)
    expansion = _mbv2_expansion_blocks(state) if arch == "mobilenet_v2" else set()
    out: dict[str, torch.Tensor] = {}
    seen: set[str] = set()
    unmapped: list[str] = []
    shape_mismatch: list[str] = []
    for key, value in state.items():
        new = _map_key(key, arch, expansion)
        if new is None or new not in target or new in seen:
            unmapped.append(prefix + key)
            continue
        seen.add(new)
        if tuple(target[new].shape) != tuple(value.shape):
            shape_mismatch.append(
                f"{prefix + key} {tuple(value.shape)} vs {new} {tuple(target[new].shape)}")
        else:
            out[new] = value
    missing = [k for k in target if k not in seen and not k.endswith("num_batches_tracked")]
    if unmapped or missing or shape_mismatch:
        parts = []
        if unmapped:
            parts.append(f"{len(unmapped)} key(s) of the file map to nothing in effvid's "
                         f"{arch}: {', '.join(unmapped[:20])}" + (" ..." if len(unmapped) > 20 else ""))
        if shape_mismatch:
            parts.append(f"shape mismatches: {'; '.join(shape_mismatch[:10])}")
        if missing:
            parts.append(f"{len(missing)} model key(s) not in the file: {', '.join(missing[:20])}"
                         + (" ..." if len(missing) > 20 else ""))
        raise TSMCheckpointError(f"{where}: cannot load strictly: " + "; ".join(parts))
    for k in target:
        if k not in out:  # num_batches_tracked of old checkpoints
            out[k] = target[k]
    return out


# ----------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------


def load_tsm_checkpoint(
    path: str | Path,
    *,
    num_segments: int | None = None,
    shift_div: int | None = None,
    **overrides,
) -> Recognizer:
    """Build the effvid recogniser of an original TSM/TSN release checkpoint (or of the online
    demo's ``mobilenetv2_jester_online.pth.tar``: a causal TSM-MobileNetV2, for
    :class:`effvid.models.online.OnlineRecognizer`) and load its weights.

    ``num_segments`` and ``shift_div`` override the file name (they cannot be read from the
    weights); other ``overrides`` go to :func:`effvid.create_model` (e.g. ``dropout``,
    ``partial_bn``, ``shift_direction="causal"`` to start an online model). ``num_classes`` and
    ``shift_place`` are read from the weights and may only be passed if they agree.

    The returned model is in eval mode; ``model.checkpoint_info`` is the
    :class:`TSMCheckpointInfo`.
    """
    from . import create_model

    loaded = read_tsm_checkpoint(path)
    info = inspect_tsm_checkpoint(path, num_segments=num_segments, shift_div=shift_div,
                                  _loaded=loaded)
    kwargs = info.create_kwargs()
    if not info.shift:
        if shift_div is not None:  # an argument of its own, not among the overrides: it was ignored
            raise BadValue("shift_div", shift_div, f"does not apply: {path} is a TSN checkpoint (no temporal shift)")
        for name in ("shift_div", "shift_place", "shift_direction"):
            if overrides.get(name) is not None:
                raise ValueError(f"{path} is a TSN checkpoint (no temporal shift); {name} does not apply")
            overrides.pop(name, None)
    # a bidirectional release file may start a causal model; the causal demo stays causal
    fixed = ("num_classes", "shift_place") + (("shift_direction",) if info.online_demo else ())
    for name in fixed:
        if name in overrides and overrides[name] != kwargs.get(name):
            from ..errors import command_line

            hint = ("; to fine-tune on other classes, build the model with create_model and load "
                    "tsm_init_state_dict(path, model) into it, or run "
                    f"{command_line('effvid', 'train', '--init-weights', path)}") if name == "num_classes" else ""
            raise ValueError(
                f"{path}: {name}={overrides[name]!r} disagrees with the weights "
                f"({name}={kwargs.get(name)!r}){hint}")
    kwargs.update(overrides)
    model = create_model(info.model_name, **kwargs)
    state = tsm_to_effvid_state_dict(loaded[0], info.arch, model.state_dict(), where=str(path))
    model.load_state_dict(state, strict=True)
    model.eval()
    model.checkpoint_info = info
    return model


def tsm_init_state_dict(path: str | Path, model: Recognizer) -> dict[str, torch.Tensor]:
    """The weights of an original TSM checkpoint for fine-tuning ``model``: see
    :func:`tsm_init_weights`, which returns what was inferred of the file too."""
    return tsm_init_weights(path, model)[0]


def tsm_init_weights(path: str | Path, model: Recognizer) -> tuple[dict[str, torch.Tensor], TSMCheckpointInfo]:
    """The weights of an original TSM checkpoint for fine-tuning ``model``, an effvid recogniser
    of the same architecture with any number of classes (``effvid train --init-weights X.pth``):
    every backbone weight, renamed, and none of the classifier's (the file has no class names,
    so its classes cannot be matched with the new ones). A model built with another
    architecture, shift placement or shift fraction (the latter when the file name tells it) is
    refused with the flags that match the file. A TSN's file starts a TSM of its architecture,
    and a TSM's a TSN, as effvid checkpoints do: the same weights, the shifted convs wrapped.
    Returns (state dict, what was inferred of the file)."""
    loaded = read_tsm_checkpoint(path)
    info = inspect_tsm_checkpoint(path, _loaded=loaded)
    config = getattr(model, "config", {})
    name = config.get("name") or ""
    tsm = name.startswith("tsm_")
    flags = []
    if name.partition("_")[2] != info.arch:
        ours = f"{name.partition('_')[0]}_{info.arch}"  # this run's TSN or TSM, of the file's architecture
        from . import list_models

        flags.append(f"--model {ours if ours in list_models() else info.model_name}")
    elif info.shift and tsm:
        if info.shift_place != config.get("shift_place"):
            flags.append(f"--shift-place {info.shift_place}")
        if info.sources["shift_div"] != "default" and info.shift_div != config.get("shift_div"):
            flags.append(f"--shift-div {info.shift_div}")
    if flags:
        shift = f", {info.shift_place} shift 1/{info.shift_div}" if info.shift else ""
        raise TSMCheckpointError(
            f"{path} holds a {info.model_name}{shift}, not the {config.get('name')} being trained: "
            f"fine-tune it with {' '.join(flags)}")
    backbone = {k: v for k, v in strip_module_prefix(loaded[0]).items() if not k.startswith(_CLASSIFIERS)}
    target = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    if info.shift == tsm:
        return tsm_to_effvid_state_dict(backbone, info.arch, target, where=str(path)), info
    # A TSN's file into a TSM or a TSM's into a TSN: the keys differ only by the shift's wrapper
    # (conv1.net.weight, or an in-place block's layer1.0.net.conv1.weight): mapped without it,
    # then named as the model names them.
    from ..training.init_weights import match_shift_wrappers, without_shift_wrapper

    def as_tsn(state: dict) -> dict:
        return {without_shift_wrapper(k): v for k, v in state.items()}

    state = tsm_to_effvid_state_dict(as_tsn(backbone), info.arch, as_tsn(target), where=str(path))
    return match_shift_wrappers(state, target), info


def _read_classes(classes, num_classes: int) -> list[str] | None:
    if classes is None:
        return None
    source = "given"
    if isinstance(classes, (str, os.PathLike)):
        from ..data import read_class_file  # the class files effvid train reads (classInd.txt too)

        names = list(read_class_file(classes).values())
        source = f"in {os.fspath(classes)}"  # which file: it was not named
    else:
        names = [str(c) for c in classes]
    if len(names) != num_classes:
        raise ValueError(f"{plural(len(names), 'class name')} {source} but the checkpoint has "
                         f"{plural(num_classes, 'class')}")
    return names


def convert_tsm_checkpoint(
    src: str | Path,
    dst_safetensors: str | Path,
    classes: Iterable[str] | str | Path | None = None,
    **load_kwargs,
) -> TSMCheckpointInfo:
    """Convert an original TSM checkpoint to an effvid ``.safetensors`` weights file.

    ``classes``: the class names (a list, or a class file as ``effvid train --classes`` reads:
    one name per line, ``number name`` lines, or ``labels.json``), stored in the file's
    metadata; their number must match the checkpoint's. A ``_dense`` checkpoint is evaluated
    with dense sampling by ``effvid eval`` and ``effvid predict``. ``load_kwargs`` go to
    :func:`load_tsm_checkpoint` (e.g. ``num_segments=16``). The result loads with
    :func:`effvid.models.weights.load_model`. Returns what was inferred. A file name's dataset
    records whether it was trained with horizontal flips (not on Something-Something and Jester,
    as the original's main.py), for effvid eval's note on mirrored views.
    """
    from .weights import save_weights

    model = load_tsm_checkpoint(src, **load_kwargs)
    info: TSMCheckpointInfo = model.checkpoint_info
    # "sampling": what effvid eval and predict sample frames with (a _dense model: dense clips)
    meta: dict = {"extra": {"converted_from": Path(src).name, "epoch": info.epoch,
                            "best_prec1": info.best_prec1, "dataset": info.dataset,
                            "dense": info.dense, "sampling": "dense" if info.dense else "segment"}}
    if info.dataset is not None:  # the original's main.py trains these two without flips
        meta["extra"]["flip"] = not any(d in info.dataset for d in ("something", "jester"))
    names = _read_classes(classes, info.num_classes)
    if names is not None:
        meta["classes"] = names
    save_weights(model, dst_safetensors, metadata=meta)
    return info
