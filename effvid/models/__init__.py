"""Model registry: ``create_model(name, **kwargs)`` over a small table of factories.

Every recogniser takes the same keyword arguments::

    model = effvid.create_model("tsm_resnet50", num_classes=400, num_segments=8)

Names are ``tsm_<arch>`` (with temporal shift) and ``tsn_<arch>`` (without), for the archs in
:data:`effvid.models.backbones.ARCHS`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

from torch import nn

from ..errors import BadValue, check_positive_ints, did_you_mean
from .backbones import ARCHS, build_backbone
from .recognizer import Recognizer
from .weights import load_model, save_weights
from .temporal_shift import (DIRECTIONS, PLACEMENTS, TemporalShift, _check_fold_div, insert_temporal_shift,
                             temporal_shift)

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
    """Add ``factory`` under ``name`` for :func:`create_model`; a taken name is refused."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = factory


def list_models() -> list[str]:
    """The registered model names, sorted (what ``effvid info --list`` prints)."""
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name; keyword arguments go to its factory.

    Every recogniser (``tsm_<arch>``, ``tsn_<arch>``; :func:`list_models`) takes the keyword
    arguments of :func:`build_recognizer`: ``num_classes`` (400), ``num_segments`` (8),
    ``dropout`` (0.5), ``partial_bn`` (False), ``imagenet_weights`` (a local torchvision file,
    loaded before the shift is inserted), and the shift's ``shift_div`` (8),
    ``shift_direction`` ("bidirectional" or "causal") and ``shift_place`` ("residual" or
    "inplace"), which a ``tsn_`` model refuses at other values than these defaults.
    The audio-visual model is not in this registry: :func:`effvid.av.create_av_model` builds it."""
    if name not in _REGISTRY:
        hint, available = did_you_mean(name, list_models()), f"available: {', '.join(list_models())}"
        if name.lower() == "av":
            hint = "the audio-visual model is built by effvid.av.create_av_model, not create_model"
        raise ValueError(f"unknown model {name!r}; " + (f"{hint} ({available})" if hint else available))
    return _REGISTRY[name](**kwargs)


def build_recognizer(
    arch: str,
    *,
    shift: bool,
    num_classes: int = 400,  # Kinetics-400's, as torchvision's video models default to
    num_segments: int = 8,
    dropout: float = 0.5,
    shift_div: int = 8,
    shift_direction: str = "bidirectional",
    shift_place: str = "residual",
    partial_bn: bool = False,
    imagenet_weights: str | Path | None = None,
) -> Recognizer:
    """A TSN (``shift=False``) or TSM recogniser over a torchvision backbone."""
    check_positive_ints(num_segments=num_segments)
    # checked for TSN too, so that a typo is not silently ignored
    if shift_direction not in DIRECTIONS or shift_place not in PLACEMENTS:
        raise ValueError(f"shift_direction must be one of {DIRECTIONS} and shift_place one of "
                         f"{PLACEMENTS}, got {shift_direction!r}, {shift_place!r}")
    _check_fold_div(shift_div, shift_direction, "shift_div")
    if not shift:  # the same arguments for every model, but a TSN's shift settings would do nothing
        defaults = {k: p.default for k, p in inspect.signature(build_recognizer).parameters.items()}
        given = {"shift_div": shift_div, "shift_direction": shift_direction, "shift_place": shift_place}
        for key, value in given.items():
            if value != defaults[key]:
                raise BadValue(key, value, f"does nothing in tsn_{arch}, which has no temporal shift "
                               f"(tsm_{arch} has one)")
    elif shift_place == "inplace" and arch == "mobilenet_v2":
        # MobileNetV2's shift sits in the expansion conv of its residual blocks, as the paper's
        raise BadValue("shift_place", shift_place, "must be 'residual' for MobileNetV2: its blocks "
                       "have no in-place rule (it is a ResNet option)")
    backbone, dim = build_backbone(
        arch, num_segments=num_segments, shift=shift, shift_div=shift_div,
        shift_direction=shift_direction, shift_place=shift_place,
        imagenet_weights=imagenet_weights)
    model = Recognizer(backbone, dim, num_classes, num_segments, dropout, partial_bn)
    model.config = {
        "name": f"{'tsm' if shift else 'tsn'}_{arch}", "num_classes": num_classes,
        "num_segments": num_segments, "dropout": dropout, "partial_bn": partial_bn,
    }
    if shift:
        model.config.update(shift_div=shift_div, shift_direction=shift_direction,
                            shift_place=shift_place)
    return model


def _recognizer_factory(arch: str, shift: bool) -> Callable[..., Recognizer]:
    # a closure, not partial(): a partial's keywords can be overridden, and
    # create_model("tsm_resnet50", shift=False) built a TSN under the TSM name
    name = f"{'tsm' if shift else 'tsn'}_{arch}"

    def factory(**kwargs) -> Recognizer:
        if "shift" in kwargs:
            raise TypeError(f"{name} takes no 'shift': the name says it (tsm_{arch} shifts, tsn_{arch} does not)")
        # by this name, with a suggestion: "build_recognizer() got an unexpected keyword argument"
        takes = [p for p in inspect.signature(build_recognizer).parameters if p not in ("arch", "shift")]
        if unknown := [key for key in kwargs if key not in takes]:
            hint = did_you_mean(unknown[0], takes)
            raise TypeError(f"{name} got an unexpected keyword argument {unknown[0]!r}"
                            + (f"; {hint}" if hint else f" (it takes {', '.join(takes)})"))
        return build_recognizer(arch, shift=shift, **kwargs)

    factory.__name__ = name
    return factory


for _arch in ARCHS:
    register_model(f"tsm_{_arch}", _recognizer_factory(_arch, shift=True))
    register_model(f"tsn_{_arch}", _recognizer_factory(_arch, shift=False))

__all__ = [
    "ARCHS", "Recognizer", "TemporalShift", "build_backbone", "build_recognizer",
    "create_model", "insert_temporal_shift", "list_models", "load_model", "register_model",
    "save_weights", "temporal_shift",
]
