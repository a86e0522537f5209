"""Per-clip encoders for the audio-visual model.

Every encoder maps a batch of clips to one embedding per clip and exposes ``out_dim``:

* visual encoders take ``(N, 3, T, H, W)`` float clips (torchvision's video layout):
  :class:`TSMClipEncoder` (a 2D TSM backbone from :mod:`effvid.models`, features averaged over
  the clip's frames), :class:`TorchvisionVideoEncoder` (``r3d_18``, ``mc3_18``,
  ``r2plus1d_18``) and :class:`ResNet3D` (slow-only 3D ResNet; ``slow_r50`` is the paper's
  visual CNN, 2048-d);
* the audio encoder :class:`AudioResNet` takes ``(N, 1, n_mels, frames)`` log-mel spectrograms
  (``resnet50_half`` is the paper's half-width ResNet-50, 1024-d).

:func:`build_visual_encoder` / :func:`build_audio_encoder` create them by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "TSMClipEncoder",
    "TorchvisionVideoEncoder",
    "ResNet3D",
    "AudioResNet",
    "build_visual_encoder",
    "build_audio_encoder",
    "VISUAL_ENCODERS",
    "AUDIO_ENCODERS",
]


# --------------------------------------------------------------------------------------------
# Visual: TSM (2D + temporal shift)
# --------------------------------------------------------------------------------------------


class TSMClipEncoder(nn.Module):
    """A TSM backbone applied to the ``T`` frames of each clip; the clip embedding is the mean
    of its per-frame features. ``T`` must equal the backbone's ``num_segments`` (the shift
    mixes neighbouring frames of a clip, never frames of different clips)."""

    def __init__(self, arch: str = "resnet50", *, frames_per_clip: int = 16, **backbone_kwargs):
        super().__init__()
        from effvid.models import build_backbone

        self.frames_per_clip = frames_per_clip
        self.backbone, self.out_dim = build_backbone(arch, num_segments=frames_per_clip, **backbone_kwargs)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = clips.shape
        if t != self.frames_per_clip:
            raise ValueError(f"TSM encoder built for {self.frames_per_clip} frames per clip, got {t}")
        frames = clips.transpose(1, 2).reshape(n * t, c, h, w)
        return self.backbone(frames).view(n, t, -1).mean(dim=1)


# --------------------------------------------------------------------------------------------
# Visual: torchvision video ResNets
# --------------------------------------------------------------------------------------------


class TorchvisionVideoEncoder(nn.Module):
    """torchvision's ``r3d_18`` / ``mc3_18`` / ``r2plus1d_18`` with the classifier removed
    (512-d). ``weights`` is passed to torchvision (e.g. ``"KINETICS400_V1"``, needs the file)."""

    def __init__(self, arch: str = "r3d_18", *, weights=None):
        super().__init__()
        from torchvision.models import video

        if arch not in ("r3d_18", "mc3_18", "r2plus1d_18"):
            raise ValueError(f"unknown torchvision video arch {arch!r}")
        net = getattr(video, arch)(weights=weights)
        self.out_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.net(clips)


class _Bottleneck(nn.Module):
    """The forward pass both bottlenecks share; subclasses build conv1-3, bn1-3, downsample."""

    expansion = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# --------------------------------------------------------------------------------------------
# Visual: slow-only 3D ResNet
# --------------------------------------------------------------------------------------------


class Bottleneck3D(_Bottleneck):
    """1×1×1 (or kt×1×1) → 1×3×3 → 1×1×1 bottleneck; temporal kernel only on the first conv,
    as in the SlowFast paper's slow pathway."""

    def __init__(self, in_ch: int, width: int, *, stride: int = 1, temporal_kernel: int = 1):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv3d(in_ch, width, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0), bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(width, width, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(width)
        self.conv3 = nn.Conv3d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_ch, out_ch, 1, stride=(1, stride, stride), bias=False), nn.BatchNorm3d(out_ch)
            )


class ResNet3D(nn.Module):
    """Slow-only 3D ResNet (Feichtenhofer et al., SlowFast, "slow pathway" alone).

    Stem: 1×7×7 conv stride (1, 2, 2) + 1×3×3 max-pool; four stages of :class:`Bottleneck3D`
    with ``depths`` blocks and bottleneck widths ``widths`` (output = 4 × width), spatial stride
    2 from the second stage on, temporal kernel 3 in the stages listed in ``temporal_stages``
    (res4 and res5 for slow-only). No temporal down-sampling. Global average pool → ``out_dim``.
    ``slow_r50`` (depths 3-4-6-3, widths 64…512) has 31.6M parameters and a 2048-d output.
    """

    def __init__(
        self,
        depths: Sequence[int] = (3, 4, 6, 3),
        widths: Sequence[int] = (64, 128, 256, 512),
        *,
        stem_width: int = 64,
        temporal_stages: Sequence[int] = (2, 3),
        in_channels: int = 3,
    ):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(in_channels, stem_width, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(stem_width),
            nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        stages = []
        in_ch = stem_width
        for i, (depth, width) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(depth):
                blocks.append(Bottleneck3D(in_ch, width, stride=2 if (j == 0 and i > 0) else 1,
                                           temporal_kernel=3 if i in temporal_stages else 1))
                in_ch = width * Bottleneck3D.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.out_dim = in_ch
        _init_resnet(self)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(clips))).flatten(1)


# --------------------------------------------------------------------------------------------
# Audio: 2D ResNet on log-mel spectrograms
# --------------------------------------------------------------------------------------------


class Bottleneck2D(_Bottleneck):
    def __init__(self, in_ch: int, width: int, *, stride: int = 1):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))


class AudioResNet(nn.Module):
    """Bottleneck ResNet on 1-channel log-mel spectrograms ``(N, 1, n_mels, frames)`` (a 3-D
    ``(N, n_mels, frames)`` input gets the channel added).

    ``AudioResNet()`` is the paper's half-width ResNet-50: every width halved (stem 32, stage
    widths 32-64-128-256), output 1024-d, 5.9M parameters. 7×7 stride-2 stem + 3×3 max-pool,
    stage strides 1-2-2-2, global average pool over frequency and time.
    """

    def __init__(self, depths: Sequence[int] = (3, 4, 6, 3), widths: Sequence[int] = (32, 64, 128, 256), *,
                 stem_width: int = 32, in_channels: int = 1):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages = []
        in_ch = stem_width
        for i, (depth, width) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(depth):
                blocks.append(Bottleneck2D(in_ch, width, stride=2 if (j == 0 and i > 0) else 1))
                in_ch = width * Bottleneck2D.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = in_ch
        _init_resnet(self)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        if spec.dim() == 3:
            spec = spec.unsqueeze(1)
        return self.pool(self.stages(self.stem(spec))).flatten(1)


def _init_resnet(module: nn.Module) -> None:
    """He init for convs; the last BN of each residual branch starts at 0 (identity blocks)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    for m in module.modules():
        if isinstance(m, (Bottleneck2D, Bottleneck3D)):
            nn.init.zeros_(m.bn3.weight)


# --------------------------------------------------------------------------------------------
# Factories
# --------------------------------------------------------------------------------------------

VISUAL_ENCODERS = (
    "tsm_resnet18", "tsm_resnet34", "tsm_resnet50", "tsm_resnet101", "tsm_mobilenet_v2", "tsm_resnet_tiny",
    "r3d_18", "mc3_18", "r2plus1d_18", "slow_r50", "slow_tiny",
)
AUDIO_ENCODERS = ("resnet50_half", "resnet_tiny")


def build_visual_encoder(name: str, *, frames_per_clip: int = 16, **kwargs) -> nn.Module:
    """Visual clip encoder by name (see ``VISUAL_ENCODERS``): ``tsm_<arch>`` builds
    ``effvid.models.build_backbone(<arch>)`` (extra kwargs go there, e.g. ``imagenet_weights``);
    ``slow_tiny`` is a 4-block, 32-d slow-only net for tests and CPU benchmarks."""
    if name.startswith("tsm_"):
        return TSMClipEncoder(name[4:], frames_per_clip=frames_per_clip, **kwargs)
    if name in ("r3d_18", "mc3_18", "r2plus1d_18"):
        return TorchvisionVideoEncoder(name, **kwargs)
    if name == "slow_r50":
        return ResNet3D(**kwargs)
    if name == "slow_tiny":
        return ResNet3D(depths=(1, 1, 1, 1), widths=(2, 4, 4, 8), stem_width=4, **kwargs)
    raise ValueError(f"unknown visual encoder {name!r}; choose from {VISUAL_ENCODERS}")


def build_audio_encoder(name: str, **kwargs) -> nn.Module:
    """Audio clip encoder by name: ``resnet50_half`` (paper, 1024-d) or ``resnet_tiny`` (32-d)."""
    if name == "resnet50_half":
        return AudioResNet(**kwargs)
    if name == "resnet_tiny":
        return AudioResNet(depths=(1, 1, 1, 1), widths=(2, 4, 4, 8), stem_width=4, **kwargs)
    raise ValueError(f"unknown audio encoder {name!r}; choose from {AUDIO_ENCODERS}")
