"""The Temporal Shift Module (Lin, Gan, Han, ICCV 2019).

Activations of a clip are laid out as (N*T, C, H, W) with the time index T innermost. With
``fold = C // fold_div``:

* ``"bidirectional"`` (offline TSM): channels ``[0, fold)`` of frame t come from frame t+1,
  channels ``[fold, 2*fold)`` come from frame t-1, the rest stay.
* ``"causal"`` (online TSM): channels ``[0, fold)`` of frame t come from frame t-1, the rest
  stay. Only the past is used, so a stream can be processed frame by frame (see
  :mod:`effvid.models.online`).

Missing neighbours at the ends of the clip are zeros.

In eager mode the result is written into one uninitialised tensor by slice copies (each
element written once; only the missing-neighbour slices are zeroed). When tracing, compiling or
exporting it is built by concatenation instead: slice-assignment into a fresh tensor is traced
as constants by the TorchScript exporter (a known bug of the original code), concatenation
exports as real data movement. The backward pass is the same shift with the offsets negated,
written as a custom autograd function so that it is one pass too.

On a CUDA GPU the shift is one Triton kernel instead (:mod:`effvid.models.shift_kernel`), and
GPU inference on large inputs borrows them the same way with an in-place kernel.

CPU inference (no autograd) avoids even that allocation: :class:`TemporalShift` writes the
shifted tensor into a reused per-thread buffer, or, for inputs that are the network's
own activations (``borrow_input``), saves the channel groups the shift replaces, shifts them in
place, and puts them back after the wrapped conv has read the input.
"""

from __future__ import annotations

import math
import threading
from typing import Iterable

import torch
from torch import nn

from effvid.errors import BadValue, check_positive_ints, did_you_mean, plural, some_names
from effvid.models import shift_kernel

DIRECTIONS = ("bidirectional", "causal")
PLACEMENTS = ("residual", "inplace")

# For each direction, the time offset each shifted channel group reads from: group g covers
# channels [g*fold, (g+1)*fold) and takes frame t + offsets[g].
_OFFSETS = {"bidirectional": (1, -1), "causal": (-1,)}


def _check_direction(direction: str) -> tuple[int, ...]:
    if direction not in _OFFSETS:
        raise ValueError(f"shift direction must be one of {DIRECTIONS}, got {direction!r}")
    return _OFFSETS[direction]


def _check_fold_div(fold_div, direction: str, name: str = "fold_div") -> None:
    """``name``: the argument as the caller's user typed it (``shift_div`` for create_model)."""
    groups = len(_check_direction(direction))
    if isinstance(fold_div, bool) or not isinstance(fold_div, int) or fold_div < groups:
        # fold_div 1 with two directions would shift every channel one way and none the other
        raise BadValue(name, fold_div, f"must be an integer >= {groups} for a {direction} shift")


def _check_segments(num_segments) -> None:
    check_positive_ints(num_segments=num_segments)


def _shift_time(x: torch.Tensor, offset: int) -> torch.Tensor:
    """x: (N, T, c, H, W). Returns y with y[:, t] = x[:, t + offset], zeros outside [0, T)."""
    n, t = x.shape[:2]
    if abs(offset) >= t:
        return torch.zeros_like(x)
    pad = x.new_zeros((n, abs(offset)) + tuple(x.shape[2:]))
    if offset > 0:
        return torch.cat((x[:, offset:], pad), dim=1)
    return torch.cat((pad, x[:, :offset]), dim=1)


def _shift(x: torch.Tensor, num_segments: int, fold: int, offsets: tuple[int, ...]) -> torch.Tensor:
    nt, c, h, w = x.shape
    x5 = x.view(nt // num_segments, num_segments, c, h, w)
    parts = [_shift_time(x5[:, :, g * fold:(g + 1) * fold], off) for g, off in enumerate(offsets)]
    parts.append(x5[:, :, len(offsets) * fold:])
    return torch.cat(parts, dim=2).view(nt, c, h, w)


def _shift_eager(x: torch.Tensor, num_segments: int, fold: int, offsets: tuple[int, ...],
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """Same result as :func:`_shift`, for eager mode: one allocation (or none, given ``out``),
    each element written once (slice copies into an uninitialised tensor; only the
    missing-neighbour slices are zeroed). Not used when tracing/exporting, where slice
    assignment would be traced as constants."""
    nt, c, h, w = x.shape
    t = num_segments
    x5 = x.view(nt // t, t, c, h, w)
    out = torch.empty_like(x5) if out is None else out.view(x5.shape)
    for g, off in enumerate(offsets):
        lo, hi = g * fold, (g + 1) * fold
        k = min(abs(off), t)
        if off > 0:
            out[:, :t - k, lo:hi].copy_(x5[:, k:, lo:hi])
            out[:, t - k:, lo:hi].zero_()
        else:
            out[:, k:, lo:hi].copy_(x5[:, :t - k, lo:hi])
            out[:, :k, lo:hi].zero_()
    rest = len(offsets) * fold
    if rest < c:  # (a borrowing TemporalShift passes only the shifted groups)
        out[:, :, rest:].copy_(x5[:, :, rest:])
    return out.view(nt, c, h, w)


def _dense(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself where it is dense in NCHW or channels_last, else an NCHW copy: the eager
    shift works on either layout, and a channels_last model's activations stay channels_last
    (made NCHW at every shift, its convs ran slower than a TSN's, losing channels_last's gain)."""
    if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):
        return x
    return x.contiguous()


def _shift_kernel_or_eager(x: torch.Tensor, num_segments: int, fold: int, offsets: tuple[int, ...]) -> torch.Tensor:
    """On a GPU, one Triton kernel (effvid/models/shift_kernel.py: the eager shift's five
    kernels cost launches there, not bytes); elsewhere, or without Triton, the eager shift."""
    y = shift_kernel.shift(x, num_segments, fold, offsets)
    return _shift_eager(x, num_segments, fold, offsets) if y is None else y


class _ShiftFunction(torch.autograd.Function):
    # The gradient of "read from t+k" is "send the gradient back to t+k", i.e. the same shift
    # with the offset negated; one pass instead of autograd's chain of slice backward ops (each
    # of which allocates a full-size zero tensor). Backward goes through apply() again so that
    # double backward works.
    @staticmethod
    def forward(ctx, x, num_segments, fold, offsets):
        ctx.shift_args = (num_segments, fold, tuple(-o for o in offsets))
        return _shift_kernel_or_eager(x, num_segments, fold, offsets)

    @staticmethod
    def backward(ctx, grad):
        return _ShiftFunction.apply(_dense(grad), *ctx.shift_args), None, None, None


def temporal_shift(
    x: torch.Tensor, num_segments: int, fold_div: int = 8, direction: str = "bidirectional"
) -> torch.Tensor:
    """Shift channels of ``x`` (N*T, C, H, W) along time; see the module docstring."""
    offsets = _check_direction(direction)
    # the same checks as TemporalShift: fold_div 1 with two directions silently shifted every
    # channel to t+1 and none to t-1; 0 divided by zero
    _check_fold_div(fold_div, direction)
    _check_segments(num_segments)
    if x.dim() != 4:
        raise ValueError(f"temporal_shift expects (N*T, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[0] % num_segments:
        raise ValueError(
            f"batch dimension {x.shape[0]} is not a multiple of num_segments={num_segments}"
        )
    fold = x.shape[1] // fold_div
    if fold == 0:
        return x
    x = _dense(x)
    exporting = torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()
    if exporting:
        return _shift(x, num_segments, fold, offsets)
    if x.requires_grad and torch.is_grad_enabled():
        return _ShiftFunction.apply(x, num_segments, fold, offsets)
    return _shift_kernel_or_eager(x, num_segments, fold, offsets)


class _Scratch(threading.local):
    """A per-thread CPU buffer that TemporalShift reuses during inference, for the shifted copy
    or, when it borrows its input, for the channel groups it moves.

    With glibc malloc, every large CPU tensor is a fresh mmap whose pages fault in (and are
    zeroed by the kernel) on first write, and the shifted copy of a ResNet-50 block input is
    up to 26 MB: allocating it anew in each of the 16 shifted blocks cost ~10% of a
    TSM-ResNet50 forward on 2 cores, against ~1% for the data movement itself (see
    docs/benchmarks.md). The shifted tensor is dead as soon as the wrapped conv has read it,
    so one buffer per thread serves every shift of every model.
    """

    buf: torch.Tensor | None = None
    busy: bool = False

    def take(self, shape, dtype: torch.dtype, channels_last: bool = False) -> torch.Tensor:
        n = math.prod(shape)
        if self.buf is None or self.buf.dtype != dtype or self.buf.numel() < n:
            self.buf = None  # free the old one first
            with torch.inference_mode(False):  # a normal tensor, writable in and out of inference mode
                self.buf = torch.empty(n, dtype=dtype)
        if channels_last:  # (N, C, H, W) with channels_last strides
            nt, c, h, w = shape
            return self.buf[:n].view(nt, h, w, c).permute(0, 3, 1, 2)
        return self.buf[:n].view(shape)


_scratch = _Scratch()


def release_shift_scratch() -> None:
    """Free this thread's shift scratch buffer (it is otherwise kept for the next forward)."""
    _scratch.buf = None


def _has_hooks(m: nn.Module) -> bool:
    from torch.nn.modules import module as _module

    return bool(m._forward_hooks or m._forward_pre_hooks
                or getattr(_module, "_global_forward_hooks", None)
                or getattr(_module, "_global_forward_pre_hooks", None))


class TemporalShift(nn.Module):
    """Shift the input along time, then apply ``net``.

    The wrapped module is called ``net`` so that state-dict keys match the original TSM release
    (``layer1.0.conv1.net.weight``).

    ``borrow_input``: during inference, when ``net`` is a convolution, shift the input tensor
    itself, run the conv, and put the input back, instead of writing a shifted copy: on the CPU
    always, on an NVIDIA GPU for inputs of at least ``shift_kernel.IN_PLACE_MIN_BYTES`` (there
    the Triton kernels keep only the frame each moved channel drops).
    Only the shifted channel groups (a quarter of the channels for fold_div 8) are saved and
    moved, and the conv reads the activation that the previous layer has just left in the
    cache rather than a copy (see docs/benchmarks.md). The input holds shifted values while
    the conv runs, so this is only for inputs no other thread reads meanwhile:
    :func:`insert_temporal_shift` sets it where the input is an activation of the network's own
    forward pass (ResNet residual placement, MobileNetV2).

    Both inference paths (the reused buffer and borrowing) are skipped while ``net`` has
    forward hooks, so a hook that keeps ``net``'s input (feature extraction, Grad-CAM) gets the
    shifted input as a tensor of its own.
    """

    def __init__(self, net: nn.Module, num_segments: int, fold_div: int = 8,
                 direction: str = "bidirectional", borrow_input: bool = False):
        super().__init__()
        _check_fold_div(fold_div, direction)
        _check_segments(num_segments)
        self.net = net
        self.num_segments = num_segments
        self.fold_div = fold_div
        self.direction = direction
        self.borrow_input = borrow_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (torch.is_grad_enabled() or x.dim() != 4
                or _has_hooks(self.net)  # a hook that keeps net's input must get a tensor of its own
                or x.shape[0] % self.num_segments or x.shape[1] // self.fold_div == 0
                or torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
                or torch.onnx.is_in_onnx_export()):
            return self._net_on_shifted_copy(x)  # what autograd and tracing can see
        channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        borrow = (self.borrow_input and isinstance(self.net, nn.Conv2d) and (x.is_contiguous() or channels_last)
                  and (torch.is_inference_mode_enabled() or not x.is_inference()))
        if x.device.type != "cpu":  # GPU inference: in place and back where that pays off
            if borrow and shift_kernel.use_in_place(x, self.num_segments):
                return self._forward_borrowing_on_gpu(x)
            return self._net_on_shifted_copy(x)
        if _scratch.busy:
            return self._net_on_shifted_copy(x)
        if borrow:
            return self._forward_borrowing(x, channels_last)
        # CPU inference: shift into the reusable scratch buffer (see _Scratch), in the input's
        # layout. Without autograd nothing keeps the shifted tensor once net has read it; busy
        # guards against a net that itself contains a shift.
        x = _dense(x)  # (a layout neither NCHW nor channels_last: made NCHW, as channels_last says)
        offsets = _OFFSETS[self.direction]
        _scratch.busy = True
        try:
            shifted = _shift_eager(x, self.num_segments, x.shape[1] // self.fold_div, offsets,
                                   out=_scratch.take(x.shape, x.dtype, channels_last))
            y = self.net(shifted)
        finally:
            _scratch.busy = False
        if not isinstance(y, torch.Tensor) or y.untyped_storage().data_ptr() == shifted.untyped_storage().data_ptr():
            _scratch.buf = None  # net returned (a view of) its input: hand the buffer over to it
        return y

    def _forward_borrowing(self, x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        nt, c, h, w = x.shape
        offsets = _OFFSETS[self.direction]
        fold = c // self.fold_div
        moved = x[:, :len(offsets) * fold]  # the channel groups that the shift replaces
        _scratch.busy = True
        try:
            saved = _scratch.take(moved.shape, x.dtype, channels_last).copy_(moved)
            _shift_eager(saved, self.num_segments, fold, offsets, out=moved)
            try:
                return self.net(x)  # a convolution: its output never aliases x
            finally:
                moved.copy_(saved)
        finally:
            _scratch.busy = False

    def _forward_borrowing_on_gpu(self, x: torch.Tensor) -> torch.Tensor:
        # The same idea with the GPU kernels: shift the moved channel groups in place (only the
        # frame each drops is kept aside), run the conv, shift them back. The restore is queued
        # on the stream after the conv, so the conv reads the shifted input. Shift and restore
        # move half the bytes of a shifted copy (docs/benchmarks.md).
        fold = x.shape[1] // self.fold_div
        offsets = _OFFSETS[self.direction]
        saved = shift_kernel.shift_in_place(x, self.num_segments, fold, offsets)
        if saved is None:  # the kernel failed (and is now off): nothing was changed
            return self._net_on_shifted_copy(x)
        try:
            return self.net(x)
        finally:
            shift_kernel.restore(x, saved, self.num_segments, fold, offsets)

    def _net_on_shifted_copy(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(temporal_shift(x, self.num_segments, self.fold_div, self.direction))

    def extra_repr(self) -> str:
        borrow = ", borrow_input=True" if self.borrow_input else ""
        return (f"num_segments={self.num_segments}, fold_div={self.fold_div}, "
                f"direction={self.direction!r}{borrow}")


# ----------------------------------------------------------------------------------------------
# Inserting the shift into torchvision CNNs
# ----------------------------------------------------------------------------------------------


def _resnet_blocks(model: nn.Module, placement: str) -> list[str] | None:
    """The dotted names of the blocks to shift in a torchvision-style ResNet, or None."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    layers = [getattr(model, f"layer{i}", None) for i in range(1, 5)]
    if not all(isinstance(layer, nn.Sequential) for layer in layers):
        return None
    if not all(isinstance(b, (BasicBlock, Bottleneck)) for layer in layers for b in layer):
        return None
    # ResNet-101/152 (layer3 has >= 23 blocks): the original shifts every other block with
    # residual placement, and every block with in-place placement.
    every = 2 if placement == "residual" and len(model.layer3) >= 23 else 1
    return [f"layer{n}.{i}" for n, layer in enumerate(layers, 1) for i in range(0, len(layer), every)]


def _mobilenet_v2_blocks(model: nn.Module) -> list[str] | None:
    """The dotted names of the MobileNetV2 blocks to shift, or None for another model."""
    from torchvision.models.mobilenetv2 import InvertedResidual, MobileNetV2

    if not isinstance(model, MobileNetV2):
        return None
    # Blocks with a residual connection and an expansion conv (10 in the standard network).
    return [f"features.{i}" for i, m in enumerate(model.features)
            if isinstance(m, InvertedResidual) and m.use_res_connect and len(m.conv) == 4]


def _is_global_pool(m: nn.Module) -> bool:
    return isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and m.output_size in (1, (1, 1))


def _pooled_convs(model: nn.Module) -> list[str]:
    """The dotted names of the convs whose input is a globally pooled 1x1 map, in model order:
    those of torchvision's squeeze-and-excitation blocks (EfficientNet, MobileNetV3, RegNetY),
    and those after a global adaptive pool in an ``nn.Sequential`` (which runs its children in
    order: a hand-written SE block, a conv head)."""
    from torchvision.ops import SqueezeExcitation

    def dotted(*parts: str) -> str:
        return ".".join(p for p in parts if p)

    def convs_in(name: str, m: nn.Module) -> list[str]:
        return [dotted(name, n) for n, c in m.named_modules() if isinstance(c, nn.Conv2d)]

    pooled: set[str] = set()
    for name, m in model.named_modules():
        if isinstance(m, SqueezeExcitation):
            pooled.update(convs_in(name, m))
        elif isinstance(m, nn.Sequential):
            children = list(m.named_children())
            first_pool = next((i for i, (_, c) in enumerate(children) if _is_global_pool(c)), None)
            if first_pool is not None:
                for child_name, child in children[first_pool + 1:]:
                    pooled.update(convs_in(dotted(name, child_name), child))
    return [name for name, _ in model.named_modules() if name in pooled]


def _generic_rule_convs(model: nn.Module, fold_div: int) -> list[str]:
    """The convs whose input the generic rule shifts (see insert_temporal_shift)."""
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups == 1]
    convs = [name for name in convs[1:] if model.get_submodule(name).in_channels // fold_div > 0]
    pooled = _pooled_convs(model)
    others = [name for name in convs if name not in pooled]
    if set(pooled) & set(convs):
        # Their input is a per-frame summary of the channels, not a feature map; the original
        # TSM shifts feature maps only. The rule cannot tell which of the other convs the
        # network's design wants shifted: the user names them.
        listed = f"; the generic rule's other convs ({len(others)}): modules={others!r}" if others else ""
        raise ValueError(
            f"{type(model).__name__} has {len(pooled)} conv{'s' * (len(pooled) != 1)} whose input is a "
            "globally pooled 1x1 map "
            f"(squeeze-and-excitation blocks, such as {pooled[0]}), which the generic rule would "
            "shift too: pass modules=[...], the dotted names of the modules whose input to shift "
            f"(for residual placement, the first conv of each residual branch){listed}")
    _refuse_unknown_blocks(model, others)
    if not others:
        raise ValueError(
            f"no rule to insert a temporal shift into {type(model).__name__}: pass modules=[...]")
    return others


def _residual_block_types() -> tuple[type, ...]:
    """torchvision's blocks that add a branch to a shortcut, outside the ResNet and MobileNetV2
    rules (those rules' blocks are here too: a model that the rules do not take as a whole)."""
    from torchvision.models.convnext import CNBlock
    from torchvision.models.mnasnet import _InvertedResidual
    from torchvision.models.mobilenetv2 import InvertedResidual
    from torchvision.models.regnet import ResBottleneckBlock
    from torchvision.models.resnet import BasicBlock, Bottleneck

    return CNBlock, _InvertedResidual, InvertedResidual, ResBottleneckBlock, BasicBlock, Bottleneck


def _refuse_unknown_blocks(model: nn.Module, convs: list[str]) -> None:
    """Refuse what the generic rule, for plain CNNs, would shift wrongly unsaid: residual blocks
    it cannot tell the branch of from the shortcut (RegNetX: 48 convs, the shortcut projections
    too), and pointwise layers that are ``nn.Linear`` among the convs (ConvNeXt: it reached
    only the 3 downsampling convs, a TSN in effect)."""
    kind = type(model).__name__
    how = ("pass modules=[...], the dotted names of the modules whose input to shift (for residual "
           "placement, the first layer of each residual branch)")
    blocks = [(name, m) for name, m in model.named_modules() if isinstance(m, _residual_block_types())]
    if blocks:
        name, block = blocks[0]
        raise ValueError(
            f"{kind} has {len(blocks)} residual blocks ({type(block).__name__}, such as {name}), whose branch "
            f"and shortcut the generic rule, for plain CNNs, cannot tell apart (it would shift "
            f"{plural(len(convs), 'conv')}: {some_names(convs, 4)}): {how}")
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    last_conv = max((i for i, (_, m) in enumerate(layers) if isinstance(m, nn.Conv2d)), default=-1)
    linears = [name for name, m in layers[:max(last_conv, 0)] if isinstance(m, nn.Linear)]
    if linears:
        raise ValueError(
            f"{kind} has {plural(len(linears), 'nn.Linear layer')} among its convs (pointwise layers, such as "
            f"{linears[0]}), which the generic rule does not shift (it would shift "
            f"{plural(len(convs), 'conv')}: {some_names(convs, 4)}): {how}")


def _shift_targets(model: nn.Module, fold_div: int, placement: str | None) -> list[tuple[str, bool]]:
    """(dotted name, borrow_input) of each module whose input the rules shift."""
    blocks = _resnet_blocks(model, placement or "residual")
    if blocks is not None:
        if placement in (None, "residual"):
            # the block input is the previous block's output: safe to borrow
            return [(f"{block}.conv1", True) for block in blocks]
        return [(block, False) for block in blocks]
    mb_blocks = _mobilenet_v2_blocks(model)
    if mb_blocks is not None:
        if placement not in (None, "residual"):
            raise ValueError("MobileNetV2 supports only residual shift placement")
        # the expansion Conv2dNormActivation: [Conv2d, BatchNorm2d, ReLU6]
        return [(f"{block}.conv.0.0", True) for block in mb_blocks]
    if placement == "residual":
        raise ValueError(
            f"no residual-placement rule for {type(model).__name__}: pass modules=[...] (the "
            "first conv of each residual branch), or placement='inplace' for the generic rule")
    return [(name, False) for name in _generic_rule_convs(model, fold_div)]


def _check_shifted_channels(model: nn.Module, names: list[str], fold_div: int, fold_div_name: str) -> None:
    """Refuse a fold_div larger than the input channels of a module to shift: it would shift
    none of them there (a TSN in disguise)."""
    channels = []
    for name in names:
        m = model.get_submodule(name)
        conv = m if isinstance(m, nn.Conv2d) else getattr(m, "conv1", None)  # a ResNet block: its first conv
        if isinstance(conv, nn.Conv2d):
            channels.append((conv.in_channels, name))
    if channels:
        fewest, name = min(channels, key=lambda cn: cn[0])
        if fewest // fold_div == 0:
            raise BadValue(fold_div_name, fold_div,
                           f"must be at most {fewest} for this model (a 1/{fold_div} shift of the "
                           f"{fewest} input channels of {name} moves none of them)")


def _refuse_recognizer(model: nn.Module) -> None:
    """An effvid recogniser is refused: the rules would see its ``backbone.``-prefixed names
    (a ResNet took the generic rule, shortcut projections included), and it checks clip lengths
    against the shifts it was built with only."""
    from effvid.models.recognizer import Recognizer  # it imports this module

    if isinstance(model, Recognizer):
        name = model.config.get("name", "")
        tsm = f"tsm_{name.split('_', 1)[1]}" if name.startswith("tsn_") else "tsm_..."
        raise ValueError(
            f"insert_temporal_shift does not take an effvid Recognizer{f' ({name})' if name else ''}: "
            f"build the TSM with effvid.create_model({tsm!r}, ...) (a TSN's weights load into it: "
            "tsm.load_state_dict(effvid.training.init_weights.match_shift_wrappers(tsn.state_dict(), "
            "tsm.state_dict())), or effvid train --init-weights with the TSN's file), or call it on a "
            "torchvision backbone")


def _check_module_names(model: nn.Module, modules) -> list[str]:
    """``modules`` as a list, refused before anything is wrapped unless it names distinct,
    existing submodules none of which is inside another (its shift would wrap an already
    wrapped module, or look for a child the outer wrapper no longer has)."""
    if isinstance(modules, str):  # iterating it gave one name per character
        raise BadValue("modules", modules, f"must be a list of dotted module names, not a str "
                                           f"(modules=[{modules!r}] for one module)")
    names = list(modules)
    if not names:
        raise BadValue("modules", names, "names no module to shift (leave it out for the rules)")
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise BadValue("modules", names, f"must be dotted module names (strings): {some_names(map(repr, bad))}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BadValue("modules", names, f"names {some_names(map(repr, twice))} more than once")
    own = dict(model.named_modules())
    missing = [n for n in names if not n or n not in own]
    if missing:
        hints = [did_you_mean(n, list(own)) for n in missing[:1] if n]
        hint = f" ({hints[0]})" if hints and hints[0] else ""
        raise BadValue("modules", names, f"names {some_names(map(repr, missing))}, not a submodule of "
                                         f"{type(model).__name__}{hint}")
    nested = [(inner, outer) for inner in names for outer in names if inner.startswith(outer + ".")]
    if nested:
        inner, outer = nested[0]
        raise BadValue("modules", names, f"names {inner!r} inside {outer!r}: shift one or the other")
    return names


def insert_temporal_shift(
    model: nn.Module,
    num_segments: int,
    fold_div: int = 8,
    direction: str = "bidirectional",
    placement: str | None = None,
    modules: Iterable[str] | None = None,
) -> nn.Module:
    """Turn a 2D CNN into a TSM, in place, and return it.

    Rules, as in the original TSM:

    * torchvision ResNet-18/34/50/101/152 (any model with ``layer1``..``layer4`` of
      ``BasicBlock``/``Bottleneck``, so also ResNeXt and Wide ResNet). ``placement="residual"``
      (the default) shifts only the input of each block's first conv, so the identity path sees
      the unshifted input; every block, or every other block when ``layer3`` has 23 or more
      (ResNet-101/152). ``"inplace"`` shifts the whole input of every block.
    * torchvision MobileNetV2: the first 1x1 expansion conv of each inverted-residual block
      that has a residual connection (10 blocks). Only residual placement is defined.
    * Any other CNN: pass ``modules``, the dotted names of the modules whose *input* should be
      shifted (for residual placement, the first conv of each residual branch); ``placement``
      is then not used. Without ``modules`` the generic rule shifts the input of every
      ungrouped (``groups == 1``) ``nn.Conv2d`` except the first one (the stem sees RGB) and
      except those with fewer than ``fold_div`` input channels: the in-place variant, for plain
      CNNs. It is refused with ``placement="residual"``, which needs to know the branches. It
      refuses networks with squeeze-and-excitation (EfficientNet, MobileNetV3, RegNetY: convs
      whose input is a globally pooled 1x1 map, found as torchvision's ``SqueezeExcitation``
      or as convs after a global adaptive pool in an ``nn.Sequential``); its error lists the
      other convs it would have shifted, as ``modules=[...]`` to choose from. It refuses
      networks of residual blocks the other rules do not take (torchvision's RegNetX, ConvNeXt,
      MNASNet; RegNetX took 48 convs, shortcut projections too), whose branch and shortcut it
      cannot tell apart, and networks with ``nn.Linear`` layers among their convs (pointwise
      layers: it shifted only ConvNeXt's 3 downsampling convs). Multi-branch networks without a
      residual sum (DenseNet, ShuffleNetV2, SqueezeNet) still take it.

    A ``fold_div`` larger than the input channels of a module to shift is refused (it would
    shift none of them there), as is a model that already contains a shift, an effvid
    Recognizer (build a TSM with ``effvid.create_model("tsm_...")``), and a ``modules`` that is a
    str, empty, names a module twice, one inside another or one that is not there. Nothing is
    changed when the insertion is refused.
    """
    return _insert_temporal_shift(model, num_segments, fold_div, direction, placement, modules, "fold_div")


def _insert_temporal_shift(model: nn.Module, num_segments: int, fold_div: int, direction: str,
                           placement: str | None, modules: Iterable[str] | None,
                           fold_div_name: str) -> nn.Module:
    """:func:`insert_temporal_shift`, whose errors call ``fold_div`` ``fold_div_name``: the name
    the caller's user typed (``shift_div`` for :func:`effvid.models.build_backbone`)."""
    _check_fold_div(fold_div, direction, fold_div_name)  # before anything divides by it
    _check_segments(num_segments)
    if placement is not None and placement not in PLACEMENTS:
        raise ValueError(f"shift placement must be one of {PLACEMENTS}, got {placement!r}")
    if shift_modules(model):
        raise ValueError(f"{type(model).__name__} already has a temporal shift")
    _refuse_recognizer(model)
    if modules is not None:
        targets = [(name, False) for name in _check_module_names(model, modules)]
    else:
        targets = _shift_targets(model, fold_div, placement)
    # all checked before the first is wrapped, so that a refusal leaves the model as it was
    _check_shifted_channels(model, [name for name, _ in targets], fold_div, fold_div_name)
    for name, borrow_input in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, TemporalShift(getattr(parent, attr), num_segments, fold_div, direction, borrow_input))
    return model


def shift_modules(model: nn.Module) -> list[TemporalShift]:
    """All TemporalShift modules of a model, in forward order of registration."""
    return [m for m in model.modules() if isinstance(m, TemporalShift)]


def set_shift_segments(model: nn.Module, num_segments: int) -> None:
    """Change the clip length a TSM expects (e.g. to run a trained model on 16 frames). A
    recogniser's own ``num_segments`` and saved configuration follow, so that saving and
    exporting it afterwards use the new length."""
    _check_segments(num_segments)
    for m in shift_modules(model):
        m.num_segments = num_segments
    if hasattr(model, "num_segments"):
        model.num_segments = num_segments
    if isinstance(getattr(model, "config", None), dict) and "num_segments" in model.config:
        model.config["num_segments"] = num_segments

