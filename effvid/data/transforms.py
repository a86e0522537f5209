"""Clip transforms: the same crop and flip for every frame of a clip.

Input: uint8 clip (T, H, W, 3) as returned by :func:`effvid.data.read_frames`.
Output: float32 (T, 3, H', W') normalised with ImageNet mean/std by default, or for
multi-crop testing a stack of views (V, T, 3, H', W').

All geometric ops run once on the (T, 3, H, W) tensor via
``torchvision.transforms.v2.functional`` (which treats leading dims as a batch), so
every frame gets exactly the same crop box and flip.
"""

from __future__ import annotations

import random
from typing import Sequence, Union

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "to_chw",
    "normalize_clip",
    "multi_scale_crop_params",
    "default_scale_size",
    "TrainTransform",
    "TestTransform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Rng = Union[np.random.Generator, random.Random, torch.Generator, None]


def default_scale_size(size: int) -> int:
    """The test-time resize of the shorter side for a centre crop of ``size`` when none is
    given: the original TSM's ``input_size * 256 // 224``, rounded down as it does (256 for 224,
    292 for 256; rounding to nearest made 293)."""
    return int(size) * 256 // 224


def _randint(rng: Rng, n: int) -> int:
    """Uniform integer in [0, n)."""
    if n <= 1:
        return 0
    if rng is None:
        return int(torch.randint(n, (1,)).item())
    if isinstance(rng, torch.Generator):
        return int(torch.randint(n, (1,), generator=rng).item())
    if isinstance(rng, random.Random):
        return rng.randrange(n)
    return int(rng.integers(n))


def to_chw(clip: torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) uint8 (tensor or numpy) -> (T, 3, H, W) uint8 tensor."""
    if isinstance(clip, np.ndarray):
        clip = torch.from_numpy(clip)
    if clip.ndim != 4 or clip.shape[-1] != 3:
        raise ValueError(f"expected a clip (T, H, W, 3), got {tuple(clip.shape)}")
    return clip.permute(0, 3, 1, 2).contiguous()


def normalize_clip(clip: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
                   std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float32 in [0, 1], then (x - mean) / std per channel."""
    x = F.to_dtype(clip, torch.float32, scale=True)
    return F.normalize(x, mean=list(mean), std=list(std))


def _fixed_offsets(h: int, w: int, ch: int, cw: int, more: bool) -> list[tuple[int, int]]:
    """(top, left) candidates: 4 corners + centre, optionally 8 more grid positions."""
    hs, ws = (h - ch) // 4, (w - cw) // 4
    pos = [(0, 0), (0, 4 * ws), (4 * hs, 0), (4 * hs, 4 * ws), (2 * hs, 2 * ws)]
    if more:
        pos += [(2 * hs, 0), (2 * hs, 4 * ws), (4 * hs, 2 * ws), (0, 2 * ws),
                (hs, ws), (hs, 3 * ws), (3 * hs, ws), (3 * hs, 3 * ws)]
    return pos


def multi_scale_crop_params(h: int, w: int, size: int,
                            scales: Sequence[float] = (1, 0.875, 0.75, 0.66),
                            max_distort: int = 1, fix_crop: bool = True,
                            more_fix_crop: bool = True, rng: Rng = None) -> tuple[int, int, int, int]:
    """TSM's multi-scale crop box (top, left, height, width) for an h x w image.

    Crop sides are ``scale * min(h, w)`` (snapped to ``size`` when within 3 px);
    height and width scales may differ by at most ``max_distort`` steps. With
    ``fix_crop`` the box sits at a corner/centre (plus grid points with
    ``more_fix_crop``) rather than anywhere.
    """
    base = min(h, w)
    sides = [int(base * s) for s in scales]
    sides = [size if abs(s - size) < 3 else s for s in sides]
    pairs = [(sh, sw) for i, sh in enumerate(sides) for j, sw in enumerate(sides)
             if abs(i - j) <= max_distort]
    ch, cw = pairs[_randint(rng, len(pairs))]
    ch, cw = max(1, min(ch, h)), max(1, min(cw, w))
    if fix_crop:
        offs = _fixed_offsets(h, w, ch, cw, more_fix_crop)
        top, left = offs[_randint(rng, len(offs))]
    else:
        top, left = _randint(rng, h - ch + 1), _randint(rng, w - cw + 1)
    return top, left, ch, cw


class TrainTransform:
    """Multi-scale crop + resize to ``size`` + optional horizontal flip + normalise.

    ``flip=False`` disables flipping (needed when left/right changes the label, e.g.
    "moving something left"). Deterministic given ``rng`` (numpy Generator,
    random.Random or torch.Generator); with ``rng=None`` uses torch's global RNG.
    Returns float32 (T, 3, size, size).
    """

    def __init__(self, size: int = 224, scales: Sequence[float] = (1, 0.875, 0.75, 0.66),
                 max_distort: int = 1, flip: bool = True, more_fix_crop: bool = True,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.size, self.scales, self.max_distort = int(size), tuple(scales), max_distort
        self.flip, self.more_fix_crop = flip, more_fix_crop
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, clip: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        x = to_chw(clip)
        h, w = x.shape[-2:]
        top, left, ch, cw = multi_scale_crop_params(h, w, self.size, self.scales, self.max_distort,
                                                    True, self.more_fix_crop, rng)
        x = F.resized_crop(x, top, left, ch, cw, [self.size, self.size], antialias=True)
        if self.flip and _randint(rng, 2) == 1:
            x = F.horizontal_flip(x)
        return normalize_clip(x, self.mean, self.std)

    def __repr__(self) -> str:
        return (f"TrainTransform(size={self.size}, scales={self.scales}, "
                f"max_distort={self.max_distort}, flip={self.flip})")


class TestTransform:
    """Deterministic test-time views.

    - ``num_crops=1``: resize shorter side to ``scale_size``, centre crop ``size``;
      returns (T, 3, size, size).
    - ``num_crops=3``: resize shorter side to ``scale_size`` and take 3 ``size`` squares
      along the long side (left/centre/right or top/middle/bottom), centred across it, as
      the original's ``GroupFullResSample`` (``test_models.py --test_crops=3``; its
      ``--full_res`` is ``size == scale_size``); returns (3, T, 3, size, size).
    - ``num_crops=10``: resize shorter side to ``scale_size``; 4 corners + centre,
      then the same 5 flipped; returns (10, T, 3, size, size).
    """

    __test__ = False  # not a pytest test class (after the docstring, which must come first)

    def __init__(self, size: int = 224, scale_size: int = 256, num_crops: int = 1,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        if num_crops not in (1, 3, 10):
            raise ValueError(f"num_crops must be 1, 3 or 10, got {num_crops}")
        if scale_size < size:
            raise ValueError(f"scale_size ({scale_size}) must be >= size ({size})")
        self.size, self.scale_size, self.num_crops = int(size), int(scale_size), num_crops
        self.mean, self.std = tuple(mean), tuple(std)

    @property
    def num_views(self) -> int:
        return self.num_crops

    def __call__(self, clip: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        x = to_chw(clip)
        s = self.size
        if self.num_crops == 1:
            x = F.resize(x, [self.scale_size], antialias=True)  # int size -> shorter side
            x = F.center_crop(x, [s, s])
            return normalize_clip(x, self.mean, self.std)
        # Crop positions on the original's grid of quarter steps (ops/transforms.py): the far
        # edge is at 4 * ((w - s) // 4), up to 3 px short of w - s.
        x = F.resize(x, [self.scale_size], antialias=True)
        h, w = x.shape[-2:]
        if self.num_crops == 3:
            hs, ws = (h - s) // 4, (w - s) // 4
            if w >= h:
                boxes = [(2 * hs, k * ws) for k in (0, 2, 4)]
            else:  # the original steps along the width here too, within the short side;
                # effvid along the long side: top/middle/bottom
                boxes = [(k * hs, 2 * ws) for k in (0, 2, 4)]
            views = [F.crop(x, t, l, s, s) for t, l in boxes]
        else:
            views = [F.crop(x, t, l, s, s) for t, l in _fixed_offsets(h, w, s, s, more=False)]
            views += [F.horizontal_flip(v) for v in views]
        return normalize_clip(torch.stack(views), self.mean, self.std)

    def __repr__(self) -> str:
        return f"TestTransform(size={self.size}, scale_size={self.scale_size}, num_crops={self.num_crops})"
