"""Shared fixtures: small index-coded videos in several codecs, and a tiny synthetic dataset.

Videos are written once per session with :func:`effvid.data.write_video`; frame i of an
"index video" has brightness encoding i (see :func:`effvid.data.index_pattern_frames`),
so tests can check *which* frames a reader returned.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from effvid.data import index_pattern_frames, make_synthetic_dataset, write_video

N_FRAMES, HEIGHT, WIDTH, FPS = 24, 48, 64, 8

# name -> (file name, write_video kwargs)
INDEX_VIDEO_SPECS = {
    "mp4_h264": ("h264.mp4", dict(codec="libx264", gop=8)),
    "mkv_hevc": ("hevc.mkv", dict(codec="libx265", gop=8)),
    "avi_mpeg4": ("mpeg4.avi", dict(codec="mpeg4", gop=8)),
    "webm_vp9": ("vp9.webm", dict(codec="libvpx-vp9", gop=8)),
    "mov_mjpeg": ("mjpeg.mov", dict(codec="mjpeg")),
    "avi_mjpeg": ("mjpeg.avi", dict(codec="mjpeg")),
    "mp4_gray": ("gray.mp4", dict(codec="libx264", pix_fmt="gray", gop=8)),
    "mpg_mpeg2": ("mpeg2.mpg", dict(codec="mpeg2video", gop=8)),  # MPEG-PS: no frame count
    "ts_h264": ("h264.ts", dict(codec="libx264", gop=8)),  # MPEG-TS: seeks land late
}


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="session")
def video_factory(video_dir):
    """``make(name, frames, **write_video_kwargs) -> Path``, cached per name for the session."""
    cache: dict[str, Path] = {}

    def make(name: str, frames, **kwargs) -> Path:
        if name not in cache:
            cache[name] = write_video(video_dir / name, frames, **kwargs)
        return cache[name]

    return make


@pytest.fixture(scope="session")
def index_frames():
    """The (N_FRAMES, HEIGHT, WIDTH, 3) uint8 source frames of the index videos."""
    return index_pattern_frames(N_FRAMES, HEIGHT, WIDTH)


@pytest.fixture(scope="session")
def index_videos(video_factory, index_frames) -> dict[str, Path]:
    """name -> path of a 24-frame 64x48 8-fps index video, one per codec/container."""
    return {key: video_factory(fname, index_frames, fps=FPS, **kw)
            for key, (fname, kw) in INDEX_VIDEO_SPECS.items()}


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A tiny synthetic motion dataset: 3 train + 2 val videos for each of 6 classes."""
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_dataset(root, videos_per_class_train=3, videos_per_class_val=2, seed=0)
    return root


@pytest.fixture
def one_thread():
    """Tiny models: one intra-op thread is about as fast, and far less sensitive to other
    processes competing for the CPUs (spinning OpenMP threads)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
