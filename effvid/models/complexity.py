"""Model complexity: parameter counts and FLOPs.

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode`, which counts the
matrix products and convolutions (2 FLOPs per multiply-add) and nothing else: BatchNorm,
activations, pooling, additions and the temporal shift (pure data movement) count zero. The
papers' "FLOPs" (TSM: 33 G for TSM-ResNet-50 at 8x224x224) are multiply-adds, so both are
returned: ``flops`` (torch's convention) and ``macs`` = ``flops / 2`` (the papers').

The forward pass runs on the *meta* device when the model allows it (no memory is touched and
no arithmetic is done, so ResNet-50 at 8x224x224 is counted in well under a second), else on a
zero input on the model's device.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_parameters", "count_flops"]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters; a parameter shared by several modules counts once."""
    seen: set[int] = set()
    total = 0
    for _, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def _run_counted(model: nn.Module, x: torch.Tensor, params: dict | None) -> FlopCounterMode:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        if params is None:
            model(x)
        else:
            torch.func.functional_call(model, params, (x,), tie_weights=True, strict=False)
    return counter


def count_flops(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    dtype: torch.dtype = torch.float32,
    meta: bool = True,
) -> dict:
    """FLOPs of one forward pass of ``model`` in eval mode on an input of ``input_shape``.

    For an effvid recogniser the input is ``(N, T, 3, H, W)``, e.g. ``(1, 8, 3, 224, 224)``.
    Returns ``{"flops", "macs", "gflops", "gmacs", "by_operator", "device"}``: ``flops`` as
    counted by torch (2 per multiply-add), ``macs`` the multiply-adds (what the TSM paper calls
    FLOPs), ``by_operator`` torch's FLOPs per aten operator, ``device`` where it ran ("meta"
    unless the model does not support it). The model's training mode is restored afterwards.
    """
    shape = tuple(int(s) for s in input_shape)
    was_training = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        counter = None
        device = "meta"
        if meta:
            try:
                # Parameters and buffers swapped for meta tensors without touching the model.
                params = {k: torch.empty_like(v, device="meta")
                          for k, v in model.state_dict(keep_vars=True).items()}
                x = torch.empty(shape, dtype=dtype, device="meta")
                counter = _run_counted(model, x, params)
            except (RuntimeError, NotImplementedError, TypeError, ValueError):
                counter = None  # an op without a meta kernel, or a device-bound module
        if counter is None:
            ref = next(iter(model.parameters()), None)
            dev = ref.device if ref is not None else torch.device("cpu")
            device = str(dev)
            x = torch.zeros(shape, dtype=dtype, device=dev)
            counter = _run_counted(model, x, None)
    finally:
        for m, mode in was_training:
            m.training = mode
    flops = int(counter.get_total_flops())
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return {
        "flops": flops,
        "macs": flops // 2,
        "gflops": flops / 1e9,
        "gmacs": flops / 2e9,
        "by_operator": by_op,
        "device": device,
    }
