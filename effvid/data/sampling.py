"""Frame-index sampling for clips (TSN segment sampling and dense sampling).

Pure functions of ``num_frames``; they return lists of valid, non-decreasing
frame indices. Randomness comes only from the ``rng`` passed in (a
``numpy.random.Generator`` or ``random.Random``; ``None`` means a fresh,
unseeded numpy generator), so results are reproducible.
"""

from __future__ import annotations

import math
import random
from typing import Union

import numpy as np

__all__ = [
    "segment_bounds",
    "segment_indices",
    "test_clips",
    "dense_indices",
    "dense_test_clips",
]

Rng = Union[np.random.Generator, random.Random, None]


def _randint(rng: Rng, low: int, high: int) -> int:
    """Uniform integer in [low, high)."""
    if high <= low + 1:
        return low
    if rng is None:
        rng = np.random.default_rng()
    if isinstance(rng, random.Random):
        return rng.randrange(low, high)
    return int(rng.integers(low, high))


def _check(num_frames: int, num_segments: int) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")


def segment_bounds(num_frames: int, num_segments: int) -> list[tuple[int, int]]:
    """Half-open [start, end) frame range of each of the T equal segments.

    Segment k starts at floor(k*N/T). When N < T, segments would be empty; each
    then holds just its start frame, so frames repeat (non-decreasing).
    """
    _check(num_frames, num_segments)
    n, t = num_frames, num_segments
    bounds = []
    for k in range(t):
        start = (k * n) // t
        end = max(start + 1, ((k + 1) * n) // t)
        bounds.append((start, end))
    return bounds


def segment_indices(num_frames: int, num_segments: int, train: bool, rng: Rng = None) -> list[int]:
    """TSN sampling: one frame per segment; random within it (train) or its centre (test)."""
    if train:
        return [_randint(rng, s, e) for s, e in segment_bounds(num_frames, num_segments)]
    return _offset_clip(num_frames, num_segments, 0.5)


def _offset_clip(num_frames: int, num_segments: int, offset: float) -> list[int]:
    # frame at fraction `offset` through each segment (0 = start, 0.5 = centre)
    _check(num_frames, num_segments)
    tick = num_frames / num_segments
    # Written as the original's int(tick / 2.0 + tick * k), floating-point rounding included:
    # tick * (k + 0.5) differs from it at exact segment boundaries (8 frames, T=12: 5 vs 4).
    return [min(num_frames - 1, int(tick * offset + tick * k)) for k in range(num_segments)]


def test_clips(num_frames: int, num_segments: int, num_clips: int = 1, twice: bool = False) -> list[list[int]]:
    """Deterministic test clips.

    Clip c takes the frame at fraction (c + 0.5) / num_clips through each segment,
    so ``num_clips=1`` gives the segment centres and several clips are evenly offset.
    ``twice=True`` (TSM's "twice" sampling) adds one more clip at the segment starts.
    """
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    clips = [_offset_clip(num_frames, num_segments, (c + 0.5) / num_clips) for c in range(num_clips)]
    if twice:
        clips.append(_offset_clip(num_frames, num_segments, 0.0))
    return clips


test_clips.__test__ = False  # not a pytest test, even when imported into a test module


def _dense_clip(num_frames: int, num_segments: int, window: int, start: int) -> list[int]:
    if num_frames >= window and window >= num_segments:
        stride = window // num_segments  # the original's integer stride (64 // 12 = 5)
    else:
        stride = min(window, num_frames) / num_segments  # short videos: squeeze the window to the video
    return [min(num_frames - 1, start + int(math.floor(k * stride))) for k in range(num_segments)]


def dense_indices(num_frames: int, num_segments: int, window: int = 64, train: bool = True,
                  rng: Rng = None) -> list[int]:
    """Dense sampling: T frames with stride window // T inside a ``window``-frame span.

    Training picks the window start uniformly; test uses the centred window. Videos
    shorter than the window use the whole video (stride N/T), never wrapping around.
    """
    _check(num_frames, num_segments)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    slack = max(0, num_frames - window)
    start = _randint(rng, 0, slack + 1) if train else slack // 2
    return _dense_clip(num_frames, num_segments, window, start)


def dense_test_clips(num_frames: int, num_segments: int, window: int = 64, num_clips: int = 10) -> list[list[int]]:
    """``num_clips`` dense windows with starts evenly spread from 0 to N - window (rounded
    down, as the original's ``np.linspace(..., dtype=int)``)."""
    _check(num_frames, num_segments)
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    slack = max(0, num_frames - window)
    if num_clips == 1:
        starts = [slack // 2]
    else:
        starts = np.linspace(0, slack, num_clips).astype(int).tolist()
    return [_dense_clip(num_frames, num_segments, window, s) for s in starts]
