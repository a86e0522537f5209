"""The TSN/TSM recogniser: backbone -> dropout -> per-frame linear classifier -> average.

TSN and TSM are the same class; TSM's backbone contains temporal shifts. Consensus is the
average of per-frame logits (before softmax), as in the original code.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import check_dropout, check_positive_ints, layout_hint
from .temporal_shift import TemporalShift


class Recognizer(nn.Module):
    """Clip classifier over T frames.

    Input ``video``: (N, T, 3, H, W). ``forward`` returns (N, num_classes) logits;
    ``frame_logits`` returns the per-frame logits (N, T, num_classes) before the average. A TSM
    refuses a T other than its shifts' ``num_segments`` (a torch.jit.trace of it does not
    record that check).
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, num_segments: int,
                 dropout: float = 0.5, partial_bn: bool = False):
        super().__init__()
        check_positive_ints(num_classes=num_classes)
        check_dropout(dropout)
        if not isinstance(partial_bn, bool):  # "no" would be taken as true
            raise ValueError(f"partial_bn must be True or False, got {partial_bn!r}")
        self.backbone = backbone
        self.num_segments = num_segments
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(feature_dim, num_classes)
        nn.init.normal_(self.fc.weight, 0.0, 0.001)
        nn.init.zeros_(self.fc.bias)
        self.partial_bn = partial_bn
        self.config: dict = {}  # filled by create_model; saved with the weights
        # One of the backbone's shifts, to check clip lengths against (in a tuple, so that it is
        # not registered a second time as a submodule). Found once: searching the modules on
        # every forward cost 0.4% of a TSN-MobileNetV2 forward.
        self._a_shift = (next((m for m in backbone.modules() if isinstance(m, TemporalShift)), None),)
        if partial_bn:
            # Frozen from the start, not only from the first train(): DistributedDataParallel
            # and the optimiser take the parameters that require grad when they are built, and
            # DDP waits forever for gradients of parameters frozen after that (it stops at the
            # second step). The original leaves these out of its optimiser too.
            self._freeze_partial_bn()

    def frame_logits(self, video: torch.Tensor) -> torch.Tensor:
        hint = layout_hint(video.shape, channels_first=True)  # a decoder's (N, T, H, W, 3)
        if video.dim() == 5 and video.shape[1] == 3 and video.shape[2] != 3:
            # a 3D CNN's layout: a TSM took it for clips of 3 frames, and said only that
            hint = (": this looks like (N, 3, T, H, W), channels before frames; x.transpose(1, 2) makes it "
                    "(N, T, 3, H, W)")
        if video.dim() != 5 or hint:
            raise ValueError(f"expected video of shape (N, T, 3, H, W), got {tuple(video.shape)}{hint}")
        n, t = video.shape[:2]
        # A TSM's shifts know where one clip ends only by counting frames: a clip of any other
        # length would silently exchange channels with its neighbour in the batch.
        shift = self._a_shift[0]
        if shift is not None and shift.num_segments != t:
            raise ValueError(f"this TSM takes clips of {shift.num_segments} frames, got {t} "
                             "(effvid.models.temporal_shift.set_shift_segments changes it)")
        features = self.backbone(video.reshape(n * t, *video.shape[2:]))
        return self.fc(self.dropout(features)).view(n, t, -1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.frame_logits(video).mean(dim=1)

    def train(self, mode: bool = True) -> "Recognizer":
        super().train(mode)
        if mode and self.partial_bn:
            self._freeze_partial_bn()
        return self

    def _freeze_partial_bn(self) -> None:
        # Partial BN (TSN): only the first BatchNorm adapts; the rest keep ImageNet
        # statistics and affine parameters, which helps small fine-tuning sets.
        bns = [m for m in self.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
        for bn in bns[1:]:
            bn.eval()
            bn.weight.requires_grad_(False)
            bn.bias.requires_grad_(False)

    @property
    def num_classes(self) -> int:
        return self.fc.out_features
