"""Weights on disk: effvid safetensors files and local ImageNet weights.

effvid never unpickles untrusted files: its own weights are safetensors (with the model
configuration and class names as JSON metadata) and every ``torch.load`` uses
``weights_only=True``. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

METADATA_KEY = "effvid"


def atomic_replace(path: str | Path, write) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_weights(model: nn.Module, path: str | Path, metadata: dict | None = None) -> None:
    """Save ``model``'s state dict as safetensors; ``model.config`` and ``metadata`` (e.g.
    ``{"classes": [...]}``) are stored as JSON in the file header."""
    info = dict(getattr(model, "config", {}) or {})
    info.update(metadata or {})
    # safetensors refuses shared or non-contiguous storage; clone to be safe.
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    atomic_replace(path, lambda tmp: save_file(state, str(tmp), metadata={METADATA_KEY: json.dumps(info)}))


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Return (state_dict, metadata) of an effvid safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        state = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} is not a readable safetensors file: {e}") from e
    return state, json.loads(header.get(METADATA_KEY, "{}"))


def load_model(path: str | Path, **overrides) -> tuple[nn.Module, dict]:
    """Rebuild a model from an effvid weights file; returns (model, metadata).

    ``overrides`` change construction arguments, e.g. ``num_segments=16``.
    """
    from . import create_model

    state, meta = load_weights(path)
    if "name" not in meta:
        raise ValueError(f"{path} has no effvid model configuration in its metadata")
    kwargs = {k: v for k, v in meta.items() if k not in ("name", "classes", "extra")}
    kwargs.update(overrides)
    model = create_model(meta["name"], **_factory_kwargs(kwargs))
    model.load_state_dict(state)
    return model, meta


def _factory_kwargs(meta: dict) -> dict:
    allowed = {"num_classes", "num_segments", "dropout", "partial_bn", "shift_div",
               "shift_direction", "shift_place"}
    return {k: v for k, v in meta.items() if k in allowed}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a local .safetensors, or .pth/.pt file (loaded with weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        return load_weights(path)[0]
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors come in many types
        raise ValueError(f"cannot read {path} as a PyTorch weights file (weights_only): {e}") from e
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return obj


def load_imagenet_weights(model: nn.Module, path: str | Path) -> None:
    """Load torchvision ImageNet weights (e.g. ``resnet50-11ad3fa6.pth``) from a local file into
    a torchvision model *before* its head is removed and the shift inserted. The ImageNet
    classifier is skipped."""
    state = read_state_dict(path)
    head = ("fc.", "classifier.")
    state = {k: v for k, v in state.items() if not k.startswith(head)}
    own = {k for k in model.state_dict() if not k.startswith(head)}
    missing, unexpected = own - set(state), set(state) - own
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match {type(model).__name__}: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}")
    model.load_state_dict(state, strict=False)
