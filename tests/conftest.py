"""Shared fixtures: small index-coded videos in several codecs, and a tiny synthetic dataset.

Videos are written once per session with :func:`effvid.data.write_video`; frame i of an
"index video" has brightness encoding i (see :func:`effvid.data.index_pattern_frames`),
so tests can check *which* frames a reader returned.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import av
import pytest

from effvid.data import index_pattern_frames, make_synthetic_dataset, write_video
from effvid.data.video import MAX_BAD_PACKETS

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


@pytest.fixture(autouse=True)
def scheduling_unchanged():
    """Fail a test that leaves this process's scheduling policy changed: every later test's
    subprocesses inherit it. SVT-AV1's encoder made the test process real-time (SCHED_FIFO 99,
    as root), and a Ctrl-C test's effvid prepare, run later, finished every video before its
    main thread ran to stop it (effvid.data.write_video now puts the policy back)."""
    if not hasattr(os, "sched_getscheduler"):
        yield
        return
    before = os.sched_getscheduler(0), os.sched_getparam(0)
    yield
    after = os.sched_getscheduler(0), os.sched_getparam(0)
    if after != before:
        os.sched_setscheduler(0, *before)
        pytest.fail(f"the test changed the process's scheduling from {before} to {after}")


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


# ---------------------------------------------------------------------------------------------
# AVI files whose frames the decoder reorders (B-frames), as old datasets (HMDB51, UCF101) hold

B_FRAME_AVI_KINDS = ("h264", "h264_open_gop", "mpeg4", "mpeg4_packed")
_VOP = b"\x00\x00\x01\xb6"  # MPEG-4 part 2: start code of a picture (VOP)


def _vop_type(data: bytes) -> str:
    """I, P, B or S: the type of the first picture in ``data``."""
    return "IPBS"[data[data.find(_VOP) + 4] >> 6]


def _not_coded_vop(data: bytes, time_bits: int) -> bytes:
    """A not-coded P-VOP with the time of the first picture in ``data`` (``time_bits``: the bits
    of vop_time_increment): the placeholder a packed bitstream stores in the chunk it frees."""
    i = data.find(_VOP)
    bits = "".join(f"{b:08b}" for b in data[i + 4:i + 12])
    end = bits.index("0", 2) + 1  # modulo_time_base: ones ended by a zero
    head = "01" + bits[2:end + time_bits + 2] + "0"  # P; time, marker bits; vop_coded = 0
    head += "0" + "1" * (-(len(head) + 1) % 8)  # stuffing up to a byte
    return _VOP + int(head, 2).to_bytes(len(head) // 8, "big")


def pack_b_frames(src: Path, dst: Path) -> Path:
    """Rewrite an MPEG-4 part 2 AVI with B-frames (audio copied) as DivX's and Xvid's "packed
    bitstream" (FFmpeg cannot write one): a P- or I-frame shares its chunk with the first B-frame
    after it, a not-coded VOP takes the chunk freed, and user data "DivX503b1393p" (in place of
    FFmpeg's "Lavc...") tells decoders so. One chunk per frame, as for a decoder without delay."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        video = inp.streams.video[0]
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        chunks, others = [], []
        for packet in inp.demux():
            if packet.size and packet.stream.index == video.index:
                chunks.append(bytes(packet))
            elif packet.size:
                others.append(packet)
        time_bits = (video.time_base.denominator - 1).bit_length()  # as FFmpeg's encoder writes it
        packed, i = [], 0
        while i < len(chunks):
            j = i + 1
            while j < len(chunks) and _vop_type(chunks[j]) == "B":
                j += 1
            packed += ([chunks[i]] if j == i + 1 else
                       [chunks[i] + chunks[i + 1], *chunks[i + 2:j], _not_coded_vop(chunks[i], time_bits)])
            i = j
        for k, data in enumerate(packed):
            packet = av.Packet(re.sub(rb"\x00\x00\x01\xb2Lavc[0-9.]+", b"\x00\x00\x01\xb2DivX503b1393p", data))
            packet.dts = packet.pts = k
            packet.time_base, packet.stream = video.time_base, streams[video.index]
            packet.is_keyframe = _vop_type(data) == "I"
            out.mux(packet)
        for packet in others:
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dst


_B_FRAME_OPTIONS = {
    "h264": {},  # x264's veryfast preset: up to 3 B-frames
    "h264_open_gop": {"options": {"x264-params": "open-gop=1:bframes=2:b-adapt=0:scenecut=0"}},
    "mpeg4": {"codec": "mpeg4", "options": {"bf": "2"}},
}


def write_b_frame_avi(path: Path, frames, kind: str, fps: float, **kwargs) -> Path:
    """An AVI of ``frames`` whose decoder reorders them, a keyframe every second: ``kind`` "h264"
    (x264's B-frames), "h264_open_gop" (B-frames stored after a keyframe but shown before it),
    "mpeg4" (MPEG-4 part 2 with 2 B-frames, where that happens too) or "mpeg4_packed" (the same,
    packed). ``kwargs`` go to write_video (audio)."""
    if kind == "mpeg4_packed":
        unpacked = write_b_frame_avi(path.with_name(path.stem + "_unpacked.avi"), frames, "mpeg4", fps, **kwargs)
        return pack_b_frames(unpacked, path)
    return write_video(path, frames, fps=fps, gop=int(fps), **_B_FRAME_OPTIONS[kind], **kwargs)


# ---------------------------------------------------------------------------------------------
# MPEG program streams whose frames FFmpeg mistimes


def mpeg_level(i: int) -> int:
    """The grey level of frame ``i`` of :func:`write_mpeg_program_stream` (flat frames: MPEG-2
    keeps their level exactly)."""
    return 4 + (i * 5) % 240


def write_mpeg_program_stream(path: Path, n: int, b_frames: int, fps: int = 25) -> Path:
    """An MPEG-2 program stream (.mpg) of ``n`` flat 64x48 frames at ``mpeg_level(i)``, a keyframe
    every 12. Its frames are small, several to a PES packet, and FFmpeg gives some of them the
    timestamp of another one (from frame 16 without B-frames, 38 with 2); a plain decode still
    shows every frame in order."""
    from fractions import Fraction

    import numpy as np

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg2video", rate=fps)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        cc = s.codec_context
        cc.gop_size, cc.max_b_frames, cc.bit_rate, cc.qmin, cc.qmax = 12, b_frames, 4_000_000, 1, 2
        cc.time_base = Fraction(1, fps)
        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), mpeg_level(i), np.uint8), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, fps)
            c.mux(s.encode(f))
        c.mux(s.encode())
    return path


# ---------------------------------------------------------------------------------------------
# Damaged packets

LONG_FRAMES = 2 * MAX_BAD_PACKETS + 4  # room for one more damaged packet than allowed, between good ones


@pytest.fixture(scope="session")
def long_mjpeg(video_factory):
    """An 8-fps MJPEG index video (each packet one frame, which decodes on its own) of
    LONG_FRAMES 16x16 frames."""
    return video_factory("long_mjpeg.mov", index_pattern_frames(LONG_FRAMES, 16, 16), fps=FPS, codec="mjpeg")


def damage_packets(src: Path, dst: Path, packets, kind: str = "video") -> Path:
    """A copy of ``src`` whose ``packets`` (numbers of the non-empty packets of its first
    ``kind`` stream, in demux order) have their payload zeroed in place, the rest of the file
    unchanged: each is found in the file from the position the demuxer gives it (a container
    that stores a packet in one piece: mp4/mov, mkv, avi). Zeroed, an MJPEG, H.264, MPEG-4 part
    2, AAC or FLAC packet fails to decode."""
    data = bytearray(src.read_bytes())
    with av.open(str(src)) as c:
        stream = getattr(c.streams, kind)[0]
        stored = [(p.pos, bytes(p)) for p in c.demux(stream) if p.size]
    for k in sorted(set(packets)):
        pos, payload = stored[k]
        at = data.find(payload, pos)
        assert at >= 0, f"packet {k} of {src} not found in the file"
        data[at:at + len(payload)] = bytes(len(payload))
    dst.write_bytes(bytes(data))
    return dst
