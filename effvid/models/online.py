"""Online TSM: frame-by-frame recognition of a stream with a causal temporal shift.

A TSM trained with ``shift_direction="causal"`` only moves channels from frame t-1 to frame t.
Such a model can process a stream one frame at a time: each shifted block keeps, as a cache,
the ``fold`` channels of its input at the previous frame, and replaces the same channels of
the current frame with them. The work per frame is one 2D CNN forward plus a few small copies,
whatever the length of the stream.

Two forms share the same modules:

* :class:`OnlineStep`, a *stateless* ``nn.Module``:
  ``forward(frame, *caches) -> (logits, *new_caches)``. It is what gets exported to ONNX, so a
  device runtime can loop frame by frame with the caches as explicit inputs and outputs.
* :class:`OnlineRecognizer`, a stateful wrapper for Python:
  ``step(frame) -> logits`` and ``reset()``.

Caches start as zeros, so that the online output at frame t equals, to float rounding, the
offline causal model's ``frame_logits`` at frame t for any clip starting at the same frame
(the offline shift pads with zeros at t=0). The online model runs in evaluation mode: dropout
off, BatchNorm with its running statistics.

Example::

    model = effvid.create_model("tsm_mobilenet_v2", num_classes=27, shift_direction="causal")
    online = OnlineRecognizer.from_model(model)
    for frame in frames:              # each a preprocessed (3, H, W) float tensor
        logits = online.step(frame)   # (num_classes,)
    online.reset()                    # before the next stream
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from ..errors import layout_hint
from .temporal_shift import TemporalShift, shift_modules

__all__ = ["OnlineRecognizer", "OnlineShift", "OnlineStep", "check_causal", "to_online_step"]


class _CacheSlots:
    """Where the shift modules of one :class:`OnlineStep` read and write their caches during a
    forward call. A plain object (not a module) shared by the step and its shifts."""

    def __init__(self, n: int):
        self.inputs: list[torch.Tensor | None] = [None] * n
        self.outputs: list[torch.Tensor | None] = [None] * n


class OnlineShift(nn.Module):
    """The online form of a causal :class:`TemporalShift` for ONE frame (B, C, H, W).

    Outputs ``net(cat(cache, x[:, fold:]))`` and keeps ``x[:, :fold]`` as the next cache. The
    cache comes from, and goes to, the slot ``index`` of the owning :class:`OnlineStep`; a
    missing cache (``None``) means the first frame of a stream and reads as zeros.
    """

    def __init__(self, net: nn.Module, fold: int, index: int, slots: _CacheSlots):
        super().__init__()
        if fold < 1:
            raise ValueError(f"fold must be >= 1, got {fold}")
        self.net = net  # same name as in TemporalShift, so state-dict keys are unchanged
        self.fold = fold
        self.index = index
        self._slots = slots

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cache = self._slots.inputs[self.index]
        # One split (views in PyTorch, a single Split node in ONNX), then a concatenation:
        # never slice-assignment into a new tensor, so the export is real data movement.
        head, rest = torch.split(x, [self.fold, x.shape[1] - self.fold], dim=1)
        if cache is None:
            cache = torch.zeros_like(head)
        shifted = torch.cat((cache, rest), dim=1)
        self._slots.outputs[self.index] = head
        return self.net(shifted)

    def extra_repr(self) -> str:
        return f"fold={self.fold}, index={self.index}"


def _input_channels(module: nn.Module) -> int:
    """Channels of the input a shifted module expects: those of its first Conv2d."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    raise ValueError(
        f"cannot tell the input channels of the shifted {type(module).__name__}: online "
        "conversion needs an nn.Conv2d inside each TemporalShift")


def check_causal(model: nn.Module) -> list[TemporalShift]:
    """Return the model's TemporalShift modules; raise ValueError unless all are causal."""
    shifts = shift_modules(model)
    wrong = sorted({s.direction for s in shifts if s.direction != "causal"})
    if wrong:
        n = sum(s.direction != "causal" for s in shifts)
        raise ValueError(
            f"cannot convert this model to an online (streaming) model: {n} of its {len(shifts)} "
            f"temporal shifts are {', '.join(repr(w) for w in wrong)}, which read channels from "
            "the NEXT frame, and a stream does not have it yet. Online TSM needs a model trained "
            "with a causal (past-only) shift: train one with `effvid train --shift-direction "
            "causal` or build it with create_model(..., shift_direction='causal').")
    return shifts


class OnlineStep(nn.Module):
    """Stateless one-frame step of an online TSM.

    ``forward(frame, *caches) -> (logits, *new_caches)`` with ``frame`` (B, 3, H, W) and one
    cache per shifted block, shaped (B, fold_i, H_i, W_i); use :meth:`zero_caches` for the first
    frame of a stream. Build it with :func:`to_online_step` or
    :meth:`OnlineRecognizer.from_model`.
    """

    def __init__(self, backbone: nn.Module, fc: nn.Linear, shifts: list[OnlineShift],
                 slots: _CacheSlots, config: dict | None = None):
        super().__init__()
        self.backbone = backbone
        self.fc = fc
        self._shifts = shifts  # a plain list: the modules are registered inside the backbone
        self._slots = slots
        self.config = dict(config or {})
        self._shape_memo: dict[tuple[int, int, int], list[tuple[int, ...]]] = {}

    @property
    def num_caches(self) -> int:
        return len(self._shifts)

    @property
    def num_classes(self) -> int:
        return self.fc.out_features

    def forward(self, frame: torch.Tensor, *caches: torch.Tensor):
        if frame.dim() != 4:
            raise ValueError(f"OnlineStep expects a frame (B, 3, H, W), got {tuple(frame.shape)}")
        if len(caches) != self.num_caches:
            raise ValueError(f"expected {self.num_caches} caches, got {len(caches)}")
        return self._run(frame, list(caches))

    def _run(self, frame: torch.Tensor, caches: list[torch.Tensor | None]):
        slots = self._slots
        slots.inputs = list(caches)
        slots.outputs = [None] * self.num_caches
        try:
            logits = self.fc(self.backbone(frame))
            new_caches = slots.outputs
            if any(c is None for c in new_caches):
                raise RuntimeError("a shifted block did not run; the backbone skips it")
        finally:
            slots.inputs = [None] * self.num_caches
            slots.outputs = [None] * self.num_caches
        return (logits, *new_caches)

    @torch.no_grad()
    def cache_shapes(self, batch: int, height: int, width: int) -> list[tuple[int, ...]]:
        """Shapes of the caches for frames (batch, 3, height, width) (one dry run, memoised)."""
        key = (batch, height, width)
        if key not in self._shape_memo:
            p = next(self.parameters())
            frame = torch.zeros(batch, 3, height, width, dtype=p.dtype, device=p.device)
            out = self._run(frame, [None] * self.num_caches)
            self._shape_memo[key] = [tuple(c.shape) for c in out[1:]]
        return list(self._shape_memo[key])

    def zero_caches(self, frame: torch.Tensor) -> list[torch.Tensor]:
        """All-zero caches for a stream of frames shaped like ``frame`` (B, 3, H, W)."""
        b, _, h, w = frame.shape
        return [frame.new_zeros(s) for s in self.cache_shapes(b, h, w)]

    def train(self, mode: bool = True) -> "OnlineStep":
        # Inference only: dropout off, BatchNorm with running statistics, always.
        return super().train(False)


def to_online_step(model: nn.Module) -> OnlineStep:
    """Convert a causal TSM (or a TSN, which has no shift) :class:`Recognizer` into an
    :class:`OnlineStep`. The model itself is not modified (a deep copy is converted)."""
    for attr in ("backbone", "fc"):
        if not hasattr(model, attr):
            raise ValueError(f"expected an effvid Recognizer (with .backbone and .fc), "
                             f"got {type(model).__name__}")
    check_causal(model)
    backbone = copy.deepcopy(model.backbone)
    fc = copy.deepcopy(model.fc)
    named = [(name, m) for name, m in backbone.named_modules() if isinstance(m, TemporalShift)]
    slots = _CacheSlots(0)
    shifts: list[OnlineShift] = []
    for name, ts in named:
        fold = _input_channels(ts.net) // ts.fold_div
        if fold == 0:
            replacement: nn.Module = ts.net  # the offline shift is a no-op here too
        else:
            replacement = OnlineShift(ts.net, fold, len(shifts), slots)
            shifts.append(replacement)
        parent_name, _, attr = name.rpartition(".")
        parent = backbone.get_submodule(parent_name) if parent_name else backbone
        setattr(parent, attr, replacement)
    slots.inputs = [None] * len(shifts)
    slots.outputs = [None] * len(shifts)
    config = dict(getattr(model, "config", {}) or {})
    step = OnlineStep(backbone, fc, shifts, slots, config)
    step.eval()
    for p in step.parameters():
        p.requires_grad_(False)
    return step


class OnlineRecognizer:
    """Stateful frame-by-frame recogniser over an :class:`OnlineStep`.

    ``step(frame)`` takes a preprocessed float frame, (3, H, W) or (B, 3, H, W), and returns
    the logits of that frame, (K,) or (B, K). ``reset()`` starts a new stream (zero caches).
    """

    def __init__(self, step_module: OnlineStep):
        self.step_module = step_module
        self.caches: list[torch.Tensor] | None = None
        self.frames_seen = 0
        self._frame_shape: tuple[int, ...] | None = None

    @classmethod
    def from_model(cls, model: nn.Module) -> "OnlineRecognizer":
        """Convert a trained causal TSM; raises ValueError for a bi-directional one."""
        return cls(to_online_step(model))

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> tuple["OnlineRecognizer", dict]:
        """Load an effvid safetensors checkpoint; returns (online recogniser, its metadata)."""
        from .weights import load_model

        model, meta = load_model(path)
        return cls.from_model(model), meta

    @property
    def config(self) -> dict:
        return self.step_module.config

    @property
    def num_classes(self) -> int:
        return self.step_module.num_classes

    @property
    def num_caches(self) -> int:
        return self.step_module.num_caches

    def reset(self) -> None:
        """Forget the stream so far; the next frame is treated as the first."""
        self.caches = None
        self.frames_seen = 0
        self._frame_shape = None

    @torch.no_grad()
    def step(self, frame: torch.Tensor) -> torch.Tensor:
        given = tuple(frame.shape)  # the error names what was passed, not the batch of one made of it
        single = frame.dim() == 3
        if single:
            frame = frame.unsqueeze(0)
        if frame.dim() != 4 or frame.shape[1] != 3:
            raise ValueError(f"expected a frame (3, H, W) or (B, 3, H, W), got {given}"
                             + layout_hint(given, channels_first=True))
        p = next(self.step_module.parameters())
        frame = frame.to(device=p.device, dtype=p.dtype)
        caches: list[torch.Tensor | None]
        if self.caches is None:
            caches = [None] * self.num_caches
        else:
            caches = list(self.caches)
            if self._frame_shape != tuple(frame.shape):
                raise ValueError(
                    f"frame shape {tuple(frame.shape)} differs from the stream's "
                    f"{self._frame_shape}; resize frames to one size, or call reset() to start "
                    "a new stream")
        out = self.step_module._run(frame, caches)
        # Own copies (fold channels each, cheap): independent of the activations they were
        # cut from, whatever the backbone later does to those in place.
        self.caches = [c.clone() for c in out[1:]]
        self._frame_shape = tuple(frame.shape)
        self.frames_seen += 1
        logits = out[0]
        return logits[0] if single else logits

    @torch.no_grad()
    def run(self, video: torch.Tensor) -> torch.Tensor:
        """Feed a clip (T, 3, H, W) or (B, T, 3, H, W) frame by frame from a fresh stream;
        return the per-frame logits (T, K) or (B, T, K). Resets before and after."""
        single = video.dim() == 4
        if single:
            video = video.unsqueeze(0)
        self.reset()
        try:
            out = torch.stack([self.step(video[:, t]) for t in range(video.shape[1])], dim=1)
        finally:
            self.reset()
        return out[0] if single else out
