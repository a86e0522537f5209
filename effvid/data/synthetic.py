"""Synthetic videos: an order-dependent toy dataset and index-coded test clips.

:func:`make_synthetic_dataset` writes real mp4 files whose class can only be told
from the *order* of frames: each mirrored class ("right", "down", "shrink") is
rendered as the time-reversed frames of a fresh "left"/"up"/"grow" video, so the
distribution of individual frames is identical within each pair and a
frame-order-blind model cannot beat chance between them.

:func:`index_pattern_frames` / :func:`decode_frame_index` make and read frames whose
brightness encodes the frame index, for checking which frames a decoder returned.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .video import write_video

__all__ = [
    "SYNTHETIC_CLASSES",
    "render_motion_clip",
    "make_synthetic_dataset",
    "index_pattern_frames",
    "decode_frame_index",
]

SYNTHETIC_CLASSES = ("left", "right", "up", "down", "grow", "shrink")
# class -> (base motion rendered forward, reverse time?)
_BASE = {
    "left": ("left", False), "right": ("left", True),
    "up": ("up", False), "down": ("up", True),
    "grow": ("grow", False), "shrink": ("grow", True),
}


def _contrasting_colour(rng: np.random.Generator, other: np.ndarray, min_dist: int = 160) -> np.ndarray:
    colour = rng.integers(0, 256, 3)
    for _ in range(20):  # keep the object visible against the background
        if np.abs(colour - other).sum() >= min_dist:
            break
        colour = rng.integers(0, 256, 3)
    return colour


def _shape_mask(yy, xx, cy, cx, r, disc: bool) -> np.ndarray:
    # cy, cx, r: (T,) -> mask (T, S, S)
    dy = yy[None] - cy[:, None, None]
    dx = xx[None] - cx[:, None, None]
    rr = r[:, None, None]
    if disc:
        return dy * dy + dx * dx <= rr * rr
    return (np.abs(dy) <= rr) & (np.abs(dx) <= rr)


def render_motion_clip(cls: str, rng: np.random.Generator, num_frames: int = 16, size: int = 64,
                       noise: float = 3.0) -> np.ndarray:
    """Render one clip of class ``cls`` as uint8 (T, S, S, 3)."""
    if cls not in _BASE:
        raise ValueError(f"unknown synthetic class {cls!r}; choose from {SYNTHETIC_CLASSES}")
    motion, reverse = _BASE[cls]
    t, s = num_frames, size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    bg = rng.integers(0, 256, 3)
    obj = _contrasting_colour(rng, bg)
    disc = bool(rng.integers(2))
    ramp = np.linspace(0.0, 1.0, t, dtype=np.float32)

    if motion == "grow":
        r0 = rng.uniform(0.08, 0.12) * s
        r = r0 + ramp * r0 * rng.uniform(1.0, 1.6)
        cx = np.full(t, rng.uniform(0.35, 0.65) * s, np.float32)
        cy = np.full(t, rng.uniform(0.35, 0.65) * s, np.float32)
    else:
        r = np.full(t, rng.uniform(0.1, 0.16) * s, np.float32)
        start = rng.uniform(0.78, 0.88) * s
        along = start - ramp * rng.uniform(0.55, 0.65) * s  # decreasing: left / up
        across = np.full(t, rng.uniform(0.2, 0.8) * s, np.float32)
        cx, cy = (along, across) if motion == "left" else (across, along)

    img = np.broadcast_to(bg.astype(np.uint8), (t, s, s, 3)).copy()
    for _ in range(int(rng.integers(1, 3))):  # 1-2 distractor blobs, static or jittering
        dr = np.full(t, rng.uniform(0.04, 0.08) * s, np.float32)
        dcx = np.full(t, rng.uniform(0.1, 0.9) * s, np.float32)
        dcy = np.full(t, rng.uniform(0.1, 0.9) * s, np.float32)
        if rng.random() < 0.5:  # i.i.d. jitter is symmetric under time reversal
            dcx = dcx + rng.normal(0, 1.5, t)
            dcy = dcy + rng.normal(0, 1.5, t)
        m = _shape_mask(yy, xx, dcy, dcx, dr, bool(rng.integers(2)))
        img[m] = _contrasting_colour(rng, bg, 100).astype(np.uint8)
    img[_shape_mask(yy, xx, cy, cx, r, disc)] = obj.astype(np.uint8)
    if noise > 0:
        img = np.clip(img + rng.normal(0, noise, img.shape).astype(np.float32), 0, 255).astype(np.uint8)
    return img[::-1].copy() if reverse else img


# in the dataset's root: the settings and files of the call that wrote it, so that a call with
# fewer videos (effvid quickstart --videos-per-class) removes the earlier call's extra ones
RECORD = "effvid-synthetic.json"
_OUR_NAME = re.compile(r"(?:train|val)/(?P<cls>%s)/(?P=cls)_\d{4}\.(?:mp4|webm|avi|mkv)"
                       % "|".join(SYNTHETIC_CLASSES))


def _remove_earlier_videos(root: Path, keep: set[str]) -> None:
    """Delete the videos that ``root``'s record says an earlier call wrote and ``keep`` (this
    call's, relative to ``root``) does not hold, and the class folders they leave empty; files
    the record does not name are never touched. An unreadable record removes nothing."""
    try:
        earlier = json.loads((root / RECORD).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    for name in earlier:
        # only a name this function writes (train|val/<class>/<class>_NNNN.<ext>), in real folders
        # under root: a record edited by hand or copied elsewhere must not reach other files
        # ("/tmp/x/y" has three parts too; a class folder may be a link to the user's videos)
        if not isinstance(name, str) or name in keep or not _OUR_NAME.fullmatch(name):
            continue
        path = root / name
        if any(p.is_symlink() for p in (path, path.parent, path.parent.parent)):
            continue
        if path.is_file():
            path.unlink()
            if not any(path.parent.iterdir()):
                path.parent.rmdir()


def make_synthetic_dataset(root: str | os.PathLike, classes: Sequence[str] = SYNTHETIC_CLASSES,
                           videos_per_class_train: int = 20, videos_per_class_val: int = 5,
                           num_frames: int = 16, size: int = 64, fps: float = 8, seed: int = 0,
                           codec: str = "libx264") -> dict:
    """Write ``root/{train,val}/<class>/<class>_NNNN.mp4`` (mkv/webm/avi if the codec needs it).

    Deterministic for ``seed`` (each video has its own seed derived from
    (seed, split, class, number), so changing counts does not change other videos).
    Returns ``{"root", "classes", "counts": {split: {class: n}},
    "paths": {split: {class: [path, ...]}}, "seconds"}``. (Datasets built from the
    folders number classes in sorted folder-name order, not in ``classes`` order.)

    The settings and the files written are recorded in ``root/effvid-synthetic.json``; the
    videos an earlier call recorded there that this call does not write (it had more videos
    or other classes) are deleted, so that the folders hold what the summary counts.
    """
    unknown = [c for c in classes if c not in _BASE]
    if unknown:
        raise ValueError(f"unknown synthetic classes {unknown}; choose from {SYNTHETIC_CLASSES}")
    root = Path(root)
    ext = {"libvpx-vp9": ".webm", "mpeg4": ".avi", "mjpeg": ".avi", "libx265": ".mkv"}.get(codec, ".mp4")
    # Full-resolution colour: at 32-64 px, 4:2:0 chroma blurs the edges of objects that differ
    # from the background mostly in hue, which slows learning a lot.
    pix_fmt = "yuv444p" if codec in ("libx264", "libx265") else None
    t0 = time.perf_counter()
    counts = {"train": videos_per_class_train, "val": videos_per_class_val}

    def name(split: str, cls: str, k: int) -> str:
        return f"{split}/{cls}/{cls}_{k:04d}{ext}"

    written = [name(split, cls, k) for split, n in counts.items() for cls in classes for k in range(n)]
    _remove_earlier_videos(root, set(written))
    # recorded before writing: a call that is interrupted is cleaned up after all
    root.mkdir(parents=True, exist_ok=True)
    settings = {"classes": list(classes), "videos_per_class": counts, "num_frames": num_frames,
                "size": size, "fps": fps, "seed": seed, "codec": codec}
    (root / RECORD).write_text(json.dumps({"settings": settings, "files": written}, indent=1) + "\n",
                               encoding="utf-8")
    summary = {"root": str(root), "classes": list(classes), "counts": {}, "paths": {}}
    for split_id, (split, n) in enumerate(counts.items()):
        summary["counts"][split], summary["paths"][split] = {}, {}
        for ci, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            paths = summary["paths"][split][cls] = []
            for k in range(n):
                rng = np.random.default_rng([seed, split_id, ci, k])
                frames = render_motion_clip(cls, rng, num_frames, size)
                p = root / name(split, cls, k)
                # tiny files: one encoder thread avoids thread start-up cost
                write_video(p, frames, fps=fps, codec=codec, preset="ultrafast", crf=10, pix_fmt=pix_fmt, threads=1)
                paths.append(str(p))
            summary["counts"][split][cls] = n
    summary["seconds"] = time.perf_counter() - t0
    return summary


def _index_step(num_frames: int) -> float:
    return min(8.0, 200.0 / max(1, num_frames - 1))


def index_pattern_frames(num_frames: int, height: int = 48, width: int = 64,
                         marker: bool = True) -> np.ndarray:
    """uint8 (T, H, W, 3) frames: frame i is uniform grey 16 + i*step (step <= 8, so
    distinguishable through lossy codecs; keep T <= ~50) with, if ``marker``, a white
    block in the top-left (H//4 x W//4) to check orientation.
    """
    step = _index_step(num_frames)
    levels = np.round(16 + np.arange(num_frames) * step).astype(np.uint8)
    frames = np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3)).copy()
    if marker:
        frames[:, : max(1, height // 4), : max(1, width // 4)] = 255
    return frames


def decode_frame_index(frame, num_frames: int) -> int:
    """Recover the index of a frame made by :func:`index_pattern_frames` (any orientation)."""
    arr = np.asarray(frame, dtype=np.float32)
    return int(round((float(np.median(arr)) - 16) / _index_step(num_frames)))
