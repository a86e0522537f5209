"""2D CNN backbones for TSN/TSM: torchvision models with their classifier removed.

``build_backbone`` returns a module mapping frames (N*T, 3, H, W) to features (N*T, D). ImageNet
weights are loaded from a local file *before* the shift is inserted, so torchvision's own keys
apply unchanged.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn
from torchvision import models as tvm

from .resnet_tiny import ResNetTiny
from .temporal_shift import _insert_temporal_shift

_CONSTRUCTORS = {
    "resnet18": tvm.resnet18,
    "resnet34": tvm.resnet34,
    "resnet50": tvm.resnet50,
    "resnet101": tvm.resnet101,
    "resnet152": tvm.resnet152,
    "mobilenet_v2": tvm.mobilenet_v2,
    "resnet_tiny": ResNetTiny,
}
ARCHS = tuple(_CONSTRUCTORS)


def _remove_head(model: nn.Module) -> int:
    """Replace the classifier with Identity; return the feature dimension."""
    if isinstance(getattr(model, "fc", None), nn.Linear):
        dim = model.fc.in_features
        model.fc = nn.Identity()
        return dim
    if isinstance(model, tvm.MobileNetV2):
        dim = model.last_channel
        model.classifier = nn.Identity()
        return dim
    raise ValueError(f"do not know how to remove the classifier of {type(model).__name__}")


def build_backbone(
    arch: str,
    *,
    num_segments: int,
    shift: bool = True,
    shift_div: int = 8,
    shift_direction: str = "bidirectional",
    shift_place: str = "residual",
    imagenet_weights: str | Path | None = None,
) -> tuple[nn.Module, int]:
    """A frame-level feature extractor, with a temporal shift if ``shift``."""
    if arch not in _CONSTRUCTORS:
        raise ValueError(f"unknown backbone {arch!r}; choose one of {', '.join(ARCHS)}")
    model = _CONSTRUCTORS[arch]()
    if imagenet_weights is not None:
        from .weights import load_imagenet_weights

        load_imagenet_weights(model, imagenet_weights)
    feature_dim = _remove_head(model)
    if shift:
        # errors name shift_div, this function's (and create_model's) name for fold_div
        _insert_temporal_shift(model, num_segments, shift_div, shift_direction, shift_place, None, "shift_div")
    return model, feature_dim
