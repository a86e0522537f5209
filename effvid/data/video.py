"""Video I/O with PyAV: probing, sparse frame decoding and a small writer.

Frames are decoded straight from the container (no frame extraction). For a
sparse set of frame indices (e.g. the 8 frames of a TSN clip) :func:`read_frames`
seeks to the keyframe before each target and decodes forward only as far as the
target, reusing the decoder when the next target is close ahead. On a long video
this is many times faster than decoding every frame.

Frame index ``i`` means presentation time ``start + i / fps``, where ``start`` is the
timestamp of the stream's first frame and ``fps`` its average frame rate; the returned frame
is the first one whose timestamp is at or after that time (with half a frame of tolerance
for timestamp rounding), which also gives sensible answers for variable-frame-rate files.
"""

from __future__ import annotations

import errno
import functools
import itertools
import math
import os
import re
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Sequence

import av
import numpy as np
from av.video.reformatter import VideoReformatter
import torch

from ..errors import not_a_regular_file

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "an_image",
    "VideoDecodeError",
    "VideoInfo",
    "probe_video",
    "read_frames",
    "read_all_frames",
    "write_video",
]

# Containers whose frames come back right (tests/test_video.py encodes each): MPEG-TS as
# camcorders (.mts, .m2ts: AVCHD) and broadcast recordings (.ts) write it, 3GP from phones, FLV
# and ASF/WMV. Not .ogv: FFmpeg here cannot write Theora, so the usual .ogv is untested.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg",
                    ".ts", ".mts", ".m2ts", ".3gp", ".flv", ".wmv", ".asf")

# Still images (and GIFs): FFmpeg's image demuxers decode one as a one-frame "video", which a
# model then classified as if it were one (a .jpg failed as "no frame could be decoded")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def an_image(path: str | os.PathLike) -> str | None:
    """Why ``path``, named like an image, is refused where a video is expected, else None
    (a name, not the file's content, decides: it is never opened)."""
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        return None
    return (f"{path} is an image ({suffix}), not a video: effvid classifies videos "
            f"({', '.join(VIDEO_EXTENSIONS)})")


# Errors PyAV/FFmpeg raise for unreadable data. av.FFmpegError covers the
# libav* error codes; the others are raised by PyAV itself on odd inputs.
AV_ERRORS = (av.FFmpegError, EOFError, ValueError, IndexError, MemoryError)

# Packets that fail to decode before a file counts as unreadable: a damaged first GOP (or a
# corrupt packet anywhere) loses those frames, not the whole video.
MAX_BAD_PACKETS = 50


class VideoDecodeError(RuntimeError):
    """A video exists but cannot be opened/decoded. ``str(err)`` names the path and reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = str(reason)
        super().__init__(f"cannot decode video {self.path!r}: {self.reason}")

    def __reduce__(self):  # keep it picklable across DataLoader worker processes
        return (type(self), (self.path, self.reason))


def av_reason(e: BaseException) -> str:
    """An FFmpeg error's message without its "[Errno N]" and the file name (the error that
    carries it names the file already)."""
    return getattr(e, "strerror", None) or str(e)


class BadPackets:
    """The damaged packets a reader of ``path`` has met: a packet that fails to decode loses its
    own frames (or audio), not the file's, up to ``MAX_BAD_PACKETS`` of them; one more raises
    ``error`` (:class:`VideoDecodeError` or a subclass) naming ``path``. A packet is counted once
    however often it is decoded (by its place in the file: readers that seek back decode some
    twice). Only strings are kept, never an exception: its traceback would hold the reader's
    stack frames, and the open container with them, in a reference cycle."""

    def __init__(self, path: str | os.PathLike, error: type[VideoDecodeError] = VideoDecodeError):
        self.path = path
        self.error = error
        self.count = 0
        self.reason: str | None = None  # FFmpeg's message for the last one
        self._seen: set[int] = set()  # their byte positions, where the demuxer says

    def add(self, packet, reason: str) -> None:
        """Count ``packet``, which failed to decode with ``reason``."""
        if packet.pos is not None:
            if packet.pos in self._seen:
                return
            self._seen.add(packet.pos)
        self.count += 1
        self.reason = reason
        if self.count > MAX_BAD_PACKETS:
            raise self.error(self.path, f"more than {MAX_BAD_PACKETS} damaged {packet.stream.type} "
                                        f"packets (the last: {reason})")


def decode_packet(packet, bad: BadPackets) -> list:
    """The frames (video or audio) ``packet`` decodes to, or none for a damaged packet, which
    ``bad`` counts (and refuses past ``MAX_BAD_PACKETS``). The one place readers decode a packet."""
    try:
        return packet.decode()
    except AV_ERRORS as e:
        reason = av_reason(e)
    bad.add(packet, reason)  # outside the handler: a raise here carries no FFmpeg traceback
    return []


def decoded_frames(container, stream, bad: BadPackets):
    """``stream``'s frames from where ``container`` stands to its end, as
    ``container.decode(stream)`` gives them, but passing over damaged packets
    (:func:`decode_packet`) where that stopped at the first."""
    for packet in container.demux(stream):
        yield from decode_packet(packet, bad)


@dataclass(frozen=True)
class VideoInfo:
    """Metadata of the first video stream.

    ``width``/``height`` are the *displayed* size, i.e. after applying ``rotation``
    (swapped for +-90 degrees), which is the size :func:`read_frames` returns.
    ``rotation`` is the counter-clockwise display rotation in degrees (0, 90, 180, -90).
    ``num_frames_source`` says where ``num_frames`` came from: "header",
    "duration" (duration x fps estimate), "edit list" (the part of the header's frames that an
    mp4's edit list shows: duration x fps) or "packets" (counted by demuxing).
    """

    path: str
    num_frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    rotation: int
    has_audio: bool
    num_frames_source: str = "header"


# ---------------------------------------------------------------------------
# opening / probing


def not_a_video_file(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it is there but no video file (a folder, a FIFO); see
    :func:`effvid.errors.not_a_regular_file`."""
    return not_a_regular_file(path, "video file")


def unopenable_video(path: str | os.PathLike) -> str | None:
    """Why ``path``, which is there, is no video file to open, asked before FFmpeg opens it (a
    FIFO would block av.open, and of an empty file FFmpeg says only "Invalid data found"):
    "path is a folder, not a video file", "file is empty (0 bytes)"; else None."""
    if what := not_a_video_file(path):
        return f"path is {what}"
    try:
        if os.stat(path).st_size == 0:
            return "file is empty (0 bytes)"
    except OSError:  # gone since, or not to be read: opening it says why
        pass
    return None


def main_video_stream(container):
    """The video stream every reader takes: the one FFmpeg picks as the file's video
    (av_find_best_stream: not a cover picture, and of two the one with frames to show), not
    simply the first, which in an mkv can be a one-frame thumbnail; None without one."""
    try:
        best = container.streams.best("video")
    except (AttributeError, *AV_ERRORS):  # an older PyAV without it
        best = None
    return best or (container.streams.video[0] if container.streams.video else None)


TRUNCATED = ": the file is likely truncated, or a download that did not finish"


def open_video(path: str | os.PathLike, thread_type: str = "AUTO") -> av.container.InputContainer:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(errno.ENOENT, "video file not found", str(p))
    if why := unopenable_video(p):
        raise VideoDecodeError(p, why)
    try:
        container = av.open(str(p), mode="r")
    except AV_ERRORS as e:
        ends = isinstance(e, EOFError)  # the file ended before its header did
        raise VideoDecodeError(p, f"cannot open container ({av_reason(e)})" + (TRUNCATED if ends else "")) from e
    if not container.streams.video:
        # an mp4 cut inside its header opens with no stream, or a codec-less one; an audio file
        # (or subtitles) has no video stream indeed
        complete = container.streams.audio or container.streams.subtitles
        container.close()
        raise VideoDecodeError(p, "no video stream in container" if complete else
                               f"no readable stream in container ({os.path.getsize(p):,} bytes){TRUNCATED}")
    # Must be set before the decoder is opened. Frame threading ("AUTO" = frame + slice) suits
    # long sequential decodes; sparse reads use "SLICE": frame threading pays a pipeline
    # refill after every seek (H.264/HEVC/MPEG-4 sparse clips decode 1.1-1.8x faster with
    # SLICE, VP9 ~10% slower; benchmarks/bench_decode.py compares both).
    main_video_stream(container).thread_type = thread_type
    return container


def rewind(container) -> None:
    """Seek ``container`` back to its beginning.

    FFmpeg's generic seek (FLV) refuses a time before the first keyframe it has indexed
    (EPERM), and an FLV's video often starts after its audio (the 50 ms an MP3 encoder delays
    it): ``seek(0)`` failed, and the file was probed and read from where it stood. Seeking
    forward from 0 lands on that first keyframe."""
    try:
        container.seek(0)
    except AV_ERRORS:
        container.seek(0, backward=False)


def _stream_fps(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            fps = float(rate)
            if 0 < fps < 1000:  # some containers report 1/time_base (e.g. 90000) as base rate
                return fps
    return None


_DURATION_TAG = re.compile(r"^(\d+):(\d+):(\d+(?:\.\d+)?)$")


def _is_mp4(container) -> bool:
    return "mp4" in container.format.name.split(",")


def _scan_for_duration(container, stream) -> bool:
    """Whether :func:`stream_duration` reads ``stream``'s last GOP for its end: in an mp4/mov
    whose frames can be reordered (B-frames), which its decoder knows from the header
    (``has_b_frames``: set for x264's and x265's defaults and MPEG-4 part 2 with B-frames, not
    for bf=0 or H.264's baseline profile)."""
    return _is_mp4(container) and bool(stream.codec_context.has_b_frames)


def stream_duration(container, stream) -> int | None:
    """How long ``stream`` lasts from its start_time, in its time base: the header's duration,
    or, in an mp4/mov whose frames are shown past it, up to where the last one ends.

    An mp4 header counts the frames' durations in decode order. With B-frames and a variable
    frame rate the last frame shown lies further past the last one decoded than the first
    one did (a 2.05 s file said 1.85 s): its packets from the last keyframe on are demuxed,
    not decoded, for their largest pts + duration (one GOP read: 300 packets in 0.7 ms).
    Packets an edit list leaves out do not count. Only a stream that can reorder frames
    (:func:`_scan_for_duration`) is read: without B-frames the header's duration is right, and
    the scan from the last keyframe would read a file with one keyframe whole.
    Leaves ``container`` at its beginning.
    """
    if stream.duration is None or stream.duration <= 0 or not stream.time_base:
        return None
    if not _scan_for_duration(container, stream):
        return stream.duration
    start = stream.start_time or 0
    end = start + stream.duration
    try:
        container.seek(end, stream=stream, backward=True, any_frame=False)  # the last keyframe
        for packet in container.demux(stream):
            if packet.pts is not None and packet.size > 0 and not packet.is_discard:
                end = max(end, packet.pts + (packet.duration or 0))
    except AV_ERRORS:
        pass  # a truncated file: the header's, or as far as its packets reached
    try:
        rewind(container)
    except AV_ERRORS:
        pass
    return end - start


def _stream_duration_s(container, stream) -> float | None:
    duration = stream_duration(container, stream)
    if duration is not None:
        return float(duration * stream.time_base)
    # Matroska/WebM store a per-stream "DURATION" tag (HH:MM:SS.fffffffff). FFmpeg writes where
    # the stream ends (its last timestamp + duration), mkvmerge (beside its "_STATISTICS_" tags)
    # how long it lasts. A stream that starts late (its first frame at 0.28 s) counted the time
    # before it as frames (47 of 40), and the indices past the last frame all read it again.
    metadata = stream.metadata or {}
    for key, value in metadata.items():
        if key.lower() == "duration":
            m = _DURATION_TAG.match(str(value).strip())
            if m:
                h, mi, s = m.groups()
                duration = int(h) * 3600 + int(mi) * 60 + float(s)
                if stream.start_time and stream.time_base and \
                        not any(k.upper().startswith("_STATISTICS_") for k in metadata):
                    duration -= float(stream.start_time * stream.time_base)
                if duration > 0:
                    return duration
    # The container duration covers all streams; only trust it for video-only files
    # (an audio track may be longer than the video).
    if container.duration and len(container.streams) == len(container.streams.video):
        return container.duration / 1_000_000
    return None


def _frames_shown(stream) -> int | None:
    """How many frames of an mp4/mov ``stream`` its edit list shows: the index entries FFmpeg
    does not mark discarded (those outside the edit, kept to decode from a keyframe), or None
    without an index."""
    try:
        entries = stream.index_entries
        if entries is None or len(entries) == 0:
            return None
        return sum(1 for e in entries if not e.is_discard)
    except (AttributeError, av.FFmpegError):
        return None


def display_rotation(frame, stream) -> int:
    """Counter-clockwise display rotation (multiple of 90) from side data or the legacy tag."""
    rot = 0
    try:
        rot = frame.rotation or 0
    except (AttributeError, av.FFmpegError):
        rot = 0
    if not rot:
        tag = (stream.metadata or {}).get("rotate")
        if tag:
            try:
                rot = -int(float(tag))  # the legacy tag is clockwise
            except ValueError:
                rot = 0
    rot = int(round(rot / 90.0)) * 90 % 360
    return rot - 360 if rot > 180 else rot


def _count_packets(container, stream, from_pts: int | None = None) -> int:
    """Packets of ``stream`` from where ``container`` stands (demuxed, not decoded); with
    ``from_pts``, those shown from then on (and untimed ones). A container that breaks midway
    counts as far as it reads."""
    n = 0
    try:
        for packet in container.demux(stream):
            if packet.size > 0 and (from_pts is None or packet.pts is None or packet.pts >= from_pts):
                n += 1  # (size 0: the empty flush packet at EOF)
    except AV_ERRORS:
        pass
    return n


def _first_frame(container, stream, path: str):
    """The first frame that decodes. Damaged packets are passed over (:func:`decode_packet`, up
    to ``MAX_BAD_PACKETS``), as every reader does: a file whose first packets are corrupt still
    has the frames after them."""
    bad = BadPackets(path)
    try:
        for packet in container.demux(stream):
            frames = decode_packet(packet, bad)
            if frames:
                return frames[0]
    except AV_ERRORS as e:  # the container itself is broken
        raise VideoDecodeError(path, f"cannot decode first frame ({av_reason(e)})") from e
    if bad.count:
        raise VideoDecodeError(path, f"cannot decode first frame ({bad.reason})")
    raise VideoDecodeError(path, "no decodable video frame")


def probe_open(container, path: str) -> VideoInfo:
    stream = main_video_stream(container)
    fps = _stream_fps(stream)
    duration = _stream_duration_s(container, stream)
    has_audio = len(container.streams.audio) > 0

    # Decode the first frame: validates that the stream really decodes and gives
    # the rotation side data (exported per frame by PyAV 18).
    first = _first_frame(container, stream, path)
    rotation = display_rotation(first, stream)

    num = int(stream.frames or 0)
    source = "header"
    # MPEG program/transport streams have no frame count, and FFmpeg's duration estimate for
    # them can be far off (1 frame for a 12-frame file): count their packets instead. So for
    # ASF (wmv): every stream gets the file's duration, from 0, though the video starts after
    # the audio's encoder delay and may end before it (49 frames for 48).
    estimate_ok = container.format.name not in ("mpeg", "mpegts", "asf")
    # An mp4 edit list (trimmed without re-encoding) shows part of the frames the header
    # counts: the indices past the part shown all got its last frame. FFmpeg marks the index
    # entries of the frames it leaves out as discarded (_frames_shown). Without an index: the
    # stream's duration is the part shown; the frame rate is of all the frames (FFmpeg divides
    # the count by the whole media's duration), so the two give the frames shown, and the
    # header's count otherwise (up to rounding).
    if num > 0 and duration and fps and _is_mp4(container):
        shown = _frames_shown(stream)
        if shown is None:
            shown = int(round(duration * fps))
        if 0 < shown < num:
            num, source = shown, "edit list"
        # A VFR mp4's frame rate is its frames over the time they are shown: where the frames are
        # shown for longer than the header says (stream_duration), or where FFmpeg's rate, the
        # frames over their durations in decode order, is not (B-frames: 60 frames shown for
        # 3.447 s said 3.507 s, and 59 were counted by the estimate above)
        if source == "header" and stream.duration and (
                duration > float(stream.duration * stream.time_base) or abs(duration * fps - num) >= 0.5):
            fps = num / duration
    if num <= 0 and duration and fps and estimate_ok:
        num = int(round(duration * fps))
        source = "duration"
    if num <= 0:
        try:
            rewind(container)
        except AV_ERRORS:
            pass
        # in a transport stream cut mid-GOP the frames before its first keyframe do not
        # decode: count from the first frame that does (_first_pts starts there too)
        from_pts = first.pts if container.format.name == "mpegts" else None
        num = _count_packets(container, stream, from_pts)
        source = "packets"
    num = max(num, 1)
    if fps is None:
        fps = num / duration if duration else 25.0
    if not duration or not estimate_ok:
        duration = num / fps

    w, h = first.width, first.height
    if rotation in (90, -90):
        w, h = h, w
    return VideoInfo(str(path), num, float(fps), float(duration), int(w), int(h), rotation,
                     has_audio, source)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read the metadata of ``path`` (decodes one frame, never the whole file).

    ``num_frames`` is exact when the header stores it (mp4/mov/avi), else estimated
    from duration x fps (mkv/webm), else counted by demuxing packets, without decoding
    (MPEG-PS/TS, whose duration estimates are unreliable, ASF/WMV, whose duration is the whole
    file's, and files without a duration).
    Raises FileNotFoundError (missing) or VideoDecodeError (empty/corrupt).
    """
    # One frame: no frame threads. Closed with packets still in them, they hung the process in
    # close() whenever PyAV's logging was on (av.logging.set_level: their log callback waits
    # for the GIL that close() holds, PyAV issue #751).
    container = open_video(path, "SLICE")
    try:
        return probe_open(container, str(path))
    finally:
        container.close()


# ---------------------------------------------------------------------------
# decoding


class _Reformatter(threading.local):
    """One swscale context per thread (and process), single-threaded.

    ``frame.to_ndarray(format="rgb24")`` sets up a new context with a slice-thread pool for
    every frame: 0.4-3 ms per frame here, more than decoding a small frame. A kept context
    with ``threads=1`` converts a 32x32 frame in microseconds and a 720p one about 2x faster
    than with threads, with the same pixels. Without a thread pool there is also nothing
    for a forked DataLoader worker to inherit half-alive: a pooled context reused after fork
    hung the worker in pthread_join.
    """

    pid: int | None = None
    reformatter: VideoReformatter | None = None


_reformatter = _Reformatter()


@functools.lru_cache(maxsize=None)
def _deep_format(name: str) -> bool:
    """Whether pixel format ``name`` has more than 8 bits per component (yuv420p10le, p010le...)."""
    return max(c.bits for c in av.VideoFormat(name).components) > 8


def frame_to_rgb(frame: av.VideoFrame, width: int | None = None, height: int | None = None) -> np.ndarray:
    """A decoded frame as a uint8 (H, W, 3) RGB array, optionally resized."""
    local = _reformatter
    if local.pid != os.getpid():  # first use in this thread, or in a forked child
        local.reformatter, local.pid = VideoReformatter(), os.getpid()
    # swscale's packed-RGB output from YUV with subsampled chroma and more than 8 bits per
    # component reads up to 2.4 levels (of 255) dark: grey 128 encoded in 10 bits read 126 (in
    # 8 bits, 128). Planar RGB takes its full-chroma path, which gives the nearest level (+-0.5),
    # at ~2x the time (a 720p frame: 5.8 ms instead of 2.8). 8-bit frames keep the packed path,
    # their pixels unchanged.
    rgb = "gbrp" if _deep_format(frame.format.name) else "rgb24"
    return local.reformatter.reformat(frame, format=rgb, width=width, height=height,
                                      threads=1).to_ndarray()


def upright_rgb(frame, rotation: int, size: tuple[int, int] | None) -> np.ndarray:
    if size is not None and (frame.width, frame.height) != size:
        arr = frame_to_rgb(frame, size[0], size[1])
    else:
        arr = frame_to_rgb(frame)
    if rotation:
        # np.rot90 with k>0 turns the picture counter-clockwise, matching the
        # display-matrix convention (FFmpeg's autorotate does the same).
        arr = np.rot90(arr, k=rotation // 90, axes=(0, 1))
    return arr


def _frame_ts(frame) -> int | None:
    if frame.pts is not None:
        return frame.pts
    return getattr(frame, "dts", None)


def _first_pts(container, stream) -> tuple[int, int]:
    """Where frame 0 lies, and how much earlier the stream's first packet lies: the presentation
    timestamp of ``stream``'s first frame, and that minus the first packet's (a keyframe, shown
    first unless an edit list cuts it; demuxed, not decoded). ``container`` must be at its
    beginning.

    Frame 0 is at the stream's start_time, except where FFmpeg's timestamps start later: AVI
    stores only the decode order (dts = frame number), and FFmpeg makes up H.264's pts as dts + 1
    (a guessed reorder delay, B-frames or not) while start_time stays at the first dts, 0;
    counted from start_time, index i read frame i - 1. The first packet's pts can also lie
    before start_time (the second number, otherwise 0): an mp4 edit list that starts after a
    keyframe has the frames before its start decoded but not shown, and start_time is the
    first one shown.
    """
    start = stream.start_time if stream.start_time is not None else 0
    try:
        packets = (p for p in container.demux(stream) if p.size > 0)
        first = next(packets, None)
        if first is not None and not first.is_keyframe and container.format.name == "mpegts":
            # A transport stream cut mid-GOP (a recording started mid-broadcast): the frames
            # before its first keyframe do not decode, and frame 0 is that keyframe (the probe
            # counts from it; they were counted, and every index read that many frames late).
            first = next((p for p in itertools.islice(packets, _KEYFRAME_SCAN) if p.is_keyframe), first)
    except AV_ERRORS:
        first = None
    try:  # back to the beginning: a reader that decodes on from here without seeking first
        rewind(container)  # (decodable_frames) lost the first keyframe, and its whole GOP
    except AV_ERRORS:
        pass
    if first is None or first.pts is None:
        return start, 0
    return max(start, first.pts), max(0, start - first.pts)


# Packets searched for an MPEG-TS's first keyframe (_first_pts): a GOP of broadcast video is at
# most a few hundred frames.
_KEYFRAME_SCAN = 1000


def pts_delay(container, stream) -> int:
    """How far FFmpeg's timestamps of ``stream`` lie after its frames' presentation times (its
    time base): in an AVI, the reorder delay FFmpeg makes up for H.264 (one frame; see
    :func:`_first_pts`), else 0. Readers that go by time subtract it, so that the picture stays
    with the sound, as :func:`read_frames` counts frame 0 from it. ``container`` must be at its
    beginning and is left there.

    Only AVI, whose presentation times FFmpeg makes up: elsewhere they are the file's own.
    """
    if container.format.name != "avi":
        return 0
    start = stream.start_time if stream.start_time is not None else 0
    return _first_pts(container, stream)[0] - start


def reordered_avi(container, stream) -> bool:
    """Whether ``stream``'s frame timestamps cannot be trusted: an AVI (which stores only the
    decode order, one frame per chunk) whose decoder reorders frames (B-frames: H.264, MPEG-4
    part 2, also DivX/Xvid "packed bitstream"). FFmpeg makes up their timestamps in decode order,
    so frames come out with wrong, unordered ones; the k-th frame out is the k-th shown. Known
    once a frame has decoded (``has_b_frames`` comes with the first one)."""
    return container.format.name == "avi" and bool(stream.codec_context.has_b_frames)


def program_stream(container) -> bool:
    """Whether ``container`` is an MPEG program stream (.mpg, .mpeg), whose frames' timestamps
    go back and jump even in a plain decode (FFmpeg gives a frame the timestamp of another one
    in its PES packet) and whose first frame after a seek is mislabelled: its frames are
    counted from the start (:func:`counted_not_timed`, :func:`timed_frames`)."""
    return container.format.name == "mpeg"


def counted_not_timed(container, stream) -> bool:
    """Whether ``stream``'s frames must be counted from the start, not found by their
    timestamps: a reordered AVI (:func:`reordered_avi`), or an MPEG program stream
    (:func:`program_stream`; of 20 TSN clips of a 150-frame MPEG-2 file, every one read frames
    1-2 off). Known once a frame has decoded."""
    return program_stream(container) or reordered_avi(container, stream)


def frame_ticks(stream) -> Fraction:
    """One frame period of ``stream`` in its time base (as :func:`probe_video` gets the rate)."""
    return 1 / (Fraction(_stream_fps(stream) or 25.0).limit_denominator(1001) * stream.time_base)


def counted_duration(container, stream) -> Fraction:
    """How long a program stream's (:func:`program_stream`) video lasts, in its time base: its
    frames, counted as :func:`probe_video` counts them (packets, demuxed, not decoded: the whole
    file is read), one :func:`frame_ticks` each, as :func:`timed_frames` times them. FFmpeg's
    duration is estimated from the timestamps near the end, which a PES packet of small frames
    gives to its first one only (79 frames of 100). Leaves ``container`` at its beginning."""
    count = 0
    try:
        rewind(container)
        count = _count_packets(container, stream)
    except AV_ERRORS:
        pass  # a container that cannot seek back: nothing counted
    try:
        rewind(container)
    except AV_ERRORS:
        pass
    return count * frame_ticks(stream)


class _UnreliableTimestamps(Exception):
    """The container's timestamps cannot map frames to indices (e.g. B-frames in AVI)."""


class _SparseDecoder:
    """Forward decoder over one stream that can jump (seek) when a target is far ahead.
    ``container`` must be at its beginning (frame 0's pts is read there: :func:`_first_pts`).
    Damaged packets are passed over and counted in ``bad`` across seeks: a file with more than
    ``MAX_BAD_PACKETS`` of them fails, however few lie between one seek and the next."""

    def __init__(self, container, stream, fps: float, seek_ahead_frames: int, skip_nonref: bool,
                 bad: BadPackets, check_timestamps: bool = True):
        self.container = container
        self.stream = stream
        self.bad = bad
        self.tb = stream.time_base or Fraction(1, 1000)
        self.frame_pts = 1.0 / (fps * float(self.tb))  # one frame in pts units
        # frame 0's pts, and how far before it an edit list starts the stream (_first_pts)
        self.start_pts, self.edit_cut = _first_pts(container, stream)
        self.seek_ahead = seek_ahead_frames * self.frame_pts
        self.skip_nonref = skip_nonref
        # Open the decoder before skip_frame first changes: libdav1d (AV1) reads it once, when it
        # opens, and then drops every non-reference frame, targets too (read_frames given
        # ``info``, so with no probe to open it, read the frame after the one asked for)
        if not stream.codec_context.is_open:
            stream.codec_context.open(strict=False)
        self.keyframes = self._keyframe_table()
        self.packets = None  # active demux iterator
        self.buffer: list = []  # frames decoded but not yet consumed
        self.last = None  # most recently consumed frame (our position)
        self.skip_below = -math.inf  # packets before this pts cannot be a target
        self.exhausted = False
        self.decoded = 0
        self.seeks = 0
        # whether the frames must be counted instead (counted_not_timed, asked once a frame
        # has decoded: an AVI's reordering is known then)
        self.check_reorder = check_timestamps

    def _keyframe_table(self) -> np.ndarray | None:
        """Presentation timestamps of all keyframes, if the container indexes every packet.

        mp4/mov/avi index every packet (by decode timestamp); Matroska cues list only
        some keyframes, so they are not usable. With B-frames a keyframe's pts is its
        dts plus the constant reorder delay, which is the first packet's dts offset (in AVI,
        whose H.264 pts FFmpeg makes up as dts + 1, that made-up delay). Where an mp4 edit list
        starts after the first keyframe, that packet lies ``edit_cut`` before frame 0.
        """
        try:
            entries = self.stream.index_entries
            if entries is None or len(entries) < 2:
                return None
            flags = [(e.timestamp, e.is_keyframe) for e in entries]
        except (AttributeError, av.FFmpegError):
            return None
        if all(k for _, k in flags) or not any(k for _, k in flags):
            return None  # intra-only or cue-only tables say nothing useful
        offset = max(0, self.start_pts - min(t for t, _ in flags)) - self.edit_cut
        return np.array(sorted(t + offset for t, k in flags if k), dtype=np.int64)

    def seek_point(self, threshold: float) -> float:
        """Where to seek for a target: its keyframe's pts if known, else the target time.

        FFmpeg's mp4 demuxer maps a seek's pts to its index as if the edit list began at the
        first packet: to land on a keyframe, seek ``edit_cut`` past it (at it, the seek landed
        a keyframe earlier, and the keyframe table without the cut had seeks that went back)."""
        if self.keyframes is not None:
            i = np.searchsorted(self.keyframes, threshold + 0.5 * self.frame_pts, side="right") - 1
            if i >= 0:
                return float(self.keyframes[i] + self.edit_cut)
        return threshold

    def pts_of(self, index: float) -> float:
        return self.start_pts + index * self.frame_pts

    # -- low level
    def seek(self, pts: float) -> None:
        self.seeks += 1
        try:
            if pts <= self.start_pts:
                # frame 0 can lie after start_time (an MPEG-TS cut mid-GOP starts at its first
                # keyframe), and a seek to it in MPEG-TS lands on the next keyframe
                rewind(self.container)
            else:
                seek_to_pts(self.container, self.stream, pts)
        except AV_ERRORS:
            # Some files cannot seek; restart from the beginning instead.
            rewind(self.container)
        self.packets = None
        self.buffer = []
        self.last = None
        self.exhausted = False

    def next_frame(self):
        """The next frame in presentation order, or None at the end (of what decodes)."""
        while not self.buffer:
            if self.exhausted:
                return None
            if self.packets is None:
                self.packets = self.container.demux(self.stream)
            try:
                packet = next(self.packets)
            except StopIteration:
                self.exhausted = True
                return None
            except AV_ERRORS:
                self.exhausted = True  # broken/truncated container: treat as EOF
                return None
            if self.skip_nonref:
                # Frames before the current target are never returned, so the decoder
                # may drop the ones nothing else refers to (B-frames mostly).
                want = "NONREF" if (packet.pts is not None and packet.size > 0
                                    and packet.pts < self.skip_below) else "DEFAULT"
                cc = self.stream.codec_context
                if cc.skip_frame != want:
                    cc.skip_frame = want
            self.buffer.extend(decode_packet(packet, self.bad))
            self.decoded += len(self.buffer)
            if self.check_reorder and self.buffer:
                if counted_not_timed(self.container, self.stream):
                    raise _UnreliableTimestamps()
                self.check_reorder = False
        return self.buffer.pop(0)

    def needs_seek(self, target: float) -> bool:
        if self.packets is None and self.last is None and not self.buffer:
            return True
        if self.last is None or _frame_ts(self.last) is None:
            return False
        pos = _frame_ts(self.last)
        if target <= pos:
            return False
        if self.keyframes is not None:
            # Seek only if a keyframe lies between where we are and the target
            # (a few frames of margin: seeking has a fixed cost too).
            lo = pos + 2 * self.frame_pts
            i = np.searchsorted(self.keyframes, lo, side="right")
            return i < len(self.keyframes) and self.keyframes[i] <= target
        return target - pos > self.seek_ahead

    def frame_at(self, index: int):
        """First frame with pts >= time of ``index`` (minus half a frame), or the nearest fallback."""
        threshold = self.pts_of(index - 0.5)
        if self.last is not None and _frame_ts(self.last) is not None \
                and _frame_ts(self.last) >= threshold:
            return self.last
        self.skip_below = threshold
        if self.needs_seek(threshold):
            # If the seek lands after the target (inexact index, odd container), seek
            # again further back (_seek_schedule).
            for seek_to in _seek_schedule(self.seek_point(threshold), threshold, self.start_pts,
                                          1.0 / float(self.tb)):
                self.seek(seek_to)
                first = self.next_frame()
                if first is None:  # landed at the end (MPEG-TS, seeking to its last keyframe)
                    continue
                ts = _frame_ts(first)
                self.last = first
                if ts is None or ts <= threshold + self.frame_pts or seek_to <= self.start_pts:
                    break
            if self.last is not None and _frame_ts(self.last) is not None \
                    and _frame_ts(self.last) >= threshold:
                return self.last
        while True:
            frame = self.next_frame()
            if frame is None:  # EOF / truncated: nearest is the last frame we saw
                return self.last
            self.last = frame
            ts = _frame_ts(frame)
            if ts is None or ts >= threshold:
                return frame


def _seek_schedule(first: float, target: float, start: float, second: float):
    """Where to seek, in turn, for a frame at ``target`` (pts; ``second`` is one second in
    pts): ``first``, then, while the demuxer lands after the target (MPEG-TS, inexact
    indexes), 1 s, 4 s and 16 s before it, then the stream's ``start``."""
    yield first
    for back in (1, 4, 16):
        yield max(start, target - back * second)
    yield start


def seek_to_pts(container, stream, pts: float) -> None:
    """Seek ``stream`` to the keyframe at or before ``pts`` (its time base). At or before the
    stream's first timestamp, seek the container to its beginning instead: in MPEG-TS a seek
    to the first timestamp itself lands on the second keyframe."""
    start = stream.start_time if stream.start_time is not None else 0
    if pts <= start:
        rewind(container)
    else:
        container.seek(int(pts), stream=stream, backward=True, any_frame=False)


def decode_from(container, stream, pts: float, bad: BadPackets):
    """Decoded frames of ``stream`` from the keyframe at or before ``pts`` (its time base) on,
    damaged packets passed over (:func:`decoded_frames`).

    Some demuxers (MPEG-TS) land after the target: then seek further back, as
    :func:`read_frames` does (:func:`_seek_schedule`).
    """
    start = stream.start_time if stream.start_time is not None else 0
    for seek_to in _seek_schedule(pts, pts, start, 1 / float(stream.time_base)):
        seek_to_pts(container, stream, seek_to)
        frames = decoded_frames(container, stream, bad)
        first = next((f for f in frames if f.pts is not None), None)
        if first is None or first.pts <= pts or seek_to <= start:
            break
    if first is not None:
        yield first
    yield from frames


# Chunks fed past a keyframe's decoder delay (has_b_frames) when counting the frames lost after
# it (:func:`_avi_landing`): the lost B-frames are stored right after the keyframe.
_AVI_LANDING_SLACK = 16


def _avi_landing(container, stream, pts: float, bad: BadPackets) -> int:
    """Seek an AVI with reordered frames (:func:`reordered_avi`) to the keyframe at or before
    ``pts`` (its time base) and return where the first frame decoded from there is shown: the
    keyframe's chunk (its dts) plus the frames it loses. Decoding starts there afterwards.

    Neither the index nor FFmpeg's timestamp of the keyframe says where that is: the B-frames
    stored after a keyframe but shown before it (MPEG-4 part 2 with B-frames, H.264 with an open
    GOP) are lost when decoding starts at it, as they refer to the frames before, so the first
    frame is shown later than the keyframe's chunk; in H.264 FFmpeg's timestamp is that chunk's,
    and in a packed bitstream a frame early. So it is counted: the chunks up to the next keyframe
    are decoded and the decoder drained (a packed bitstream holds no B-frame back there); each
    chunk is one frame, and those that gave none are the ones lost, shown first. Those are the
    chunks right after the keyframe, so at most ``has_b_frames`` + :data:`_AVI_LANDING_SLACK`
    chunks are fed, not a whole GOP (with one keyframe, the whole file). When the target is one
    of them, the keyframe before is tried. A damaged chunk (counted in ``bad``) gives no frame,
    as in the decode that follows."""
    start = stream.start_time if stream.start_time is not None else 0
    cc = stream.codec_context
    limit = (cc.has_b_frames or 0) + _AVI_LANDING_SLACK  # known: a frame has decoded
    target, last_key = pts, math.inf
    while True:
        seek_to_pts(container, stream, target)
        key, fed, out = None, 0, 0
        try:
            for packet in container.demux(stream):
                if not packet.size:  # the empty packet demux ends with
                    continue
                if key is None:
                    key = packet.dts if packet.dts is not None else int(target)
                elif packet.is_keyframe or fed >= limit:
                    break
                fed += 1
                out += len(decode_packet(packet, bad))
            out += len(cc.decode(None))
        except AV_ERRORS:
            pass  # a broken container: as far as it reads
        if key is None:  # nothing at or after the keyframe: decode from where the seek lands
            seek_to_pts(container, stream, target)
            return int(target)
        shown = key + fed - out
        # (a target worked out from seconds may lie a hair before its frame's tick)
        if shown <= pts + 1e-3 or key <= start or target <= start:
            seek_to_pts(container, stream, key)  # (also resets the drained decoder)
            return shown
        # a seek that does not go back (no index?) goes to the beginning instead
        target, last_key = (key - 1 if key < last_key else start), key


def timed_frames(container, stream, pts: float | None = None, *, bad: BadPackets):
    """``(pts, frame)`` for the decoded frames of ``stream``, from its beginning, or from the
    keyframe at or before ``pts`` (its time base); ``pts`` is where the frame is shown, in the
    stream's time base (None for a frame without a timestamp). ``container`` must be at its
    beginning. For readers that go by time (:class:`effvid.av.LongVideoSampler`,
    :func:`effvid.stream.open_frames`), so that the picture stays with the sound.

    A frame's time is its timestamp, less the frame FFmpeg adds to an AVI's H.264
    (:func:`pts_delay`). In an AVI whose frames are reordered (:func:`reordered_avi`) FFmpeg's
    timestamps are made up in decode order, so the frames are timed by the order they come out,
    one tick of the time base (an AVI's frame) each, as :func:`read_frames` counts them: from
    the stream's start, or after a seek from where the first frame is shown
    (:func:`_avi_landing`). In an MPEG program stream (:func:`program_stream`) the frames are
    counted from the start, one :func:`frame_ticks` each from the first frame's timestamp, as
    :func:`read_frames` counts them; there ``pts`` does not seek: decoding starts at the
    beginning (exact, and slower the further in the frames lie).

    Damaged packets are passed over (:func:`decode_packet`), their frames lost, and counted in
    ``bad``, which raises its error past ``MAX_BAD_PACKETS``.
    """
    if program_stream(container):
        frames = decoded_frames(container, stream, bad)
        first = next(frames, None)
        if first is not None:
            at = first.pts if first.pts is not None else (stream.start_time or 0)
            ticks = frame_ticks(stream)
            for k, frame in enumerate(itertools.chain([first], frames)):
                yield at + k * ticks, frame
        return
    delay = pts_delay(container, stream)
    frames = (decoded_frames(container, stream, bad) if pts is None
              else decode_from(container, stream, pts + delay, bad))
    first = next(frames, None)  # has_b_frames is known once a frame has decoded
    if first is None:
        return
    if not reordered_avi(container, stream):
        for frame in itertools.chain([first], frames):
            yield (frame.pts - delay if frame.pts is not None else None), frame
        return
    if pts is None:
        shown = stream.start_time if stream.start_time is not None else 0
        frames = itertools.chain([first], frames)
    else:
        frames.close()
        shown = _avi_landing(container, stream, pts, bad)
        frames = decoded_frames(container, stream, bad)
    for k, frame in enumerate(frames):
        yield shown + k, frame


def _read_sequential(container, stream, wanted: list[int], bad: BadPackets) -> tuple[dict[int, object], int]:
    """Fallback for streams without timestamps: count frames from the start, damaged packets
    passed over (counted in ``bad``; their frames are not counted). Returns the frames and how
    many of them decoded (targets past that number get the last one)."""
    out: dict[int, object] = {}
    targets = iter(wanted)
    tgt = next(targets, None)
    last = None
    count = 0
    try:
        for i, frame in enumerate(decoded_frames(container, stream, bad)):
            last, count = frame, i + 1
            while tgt is not None and tgt == i:
                out[tgt] = frame
                tgt = next(targets, None)
            if tgt is None:
                break
    except AV_ERRORS:
        pass
    while tgt is not None and last is not None:
        out[tgt] = last
        tgt = next(targets, None)
    return out, count


def decodable_frames(path: str | os.PathLike) -> int:
    """How many frames :func:`read_frames` can reach in ``path``, decoding it from the start
    as it does (damaged packets passed over, a broken container read as its end): fewer than
    ``num_frames`` when the file ends early (truncated). Decodes the whole file. Raises
    VideoDecodeError where more than ``MAX_BAD_PACKETS`` packets are damaged."""
    container = open_video(path, "SLICE")
    try:
        stream = main_video_stream(container)
        # a count needs no timestamps (an AVI's with B-frames are wrong)
        dec = _SparseDecoder(container, stream, _stream_fps(stream) or 25.0, 0, skip_nonref=False,
                             bad=BadPackets(path), check_timestamps=False)
        count = 0
        while dec.next_frame() is not None:
            count += 1
        return count
    finally:
        container.close()


def _check_indices(indices: Iterable[int], path) -> list[int]:
    idx = [int(i) for i in indices]
    if any(i < 0 for i in idx):
        raise ValueError(f"negative frame index in {idx} for {str(path)!r}")
    return idx


def read_frames(path: str | os.PathLike, indices: Iterable[int] | Callable[[VideoInfo], Iterable[int]],
                info: VideoInfo | None = None,
                *, seek_ahead_frames: int | None = None, skip_nonref: bool = True,
                thread_type: str = "SLICE", stats: dict | None = None) -> torch.Tensor:
    """Decode the frames at ``indices`` from ``path`` as a uint8 tensor (T, H, W, 3), RGB, upright.

    Indices may be unsorted and repeated; the output follows their order. Indices past
    the end (or past where a truncated file stops) give the last decodable frame.
    ``indices`` may also be a function of the file's :class:`VideoInfo` (e.g. to place TSN
    segments): without ``info`` the file is then probed and read in one opening, about half
    the time of :func:`probe_video` followed by a read for short clips.
    ``seek_ahead_frames``: when the container has no full keyframe index (mkv/webm),
    seek rather than decode forward if the next target is more than this many frames
    ahead (default: 2 s of video). ``skip_nonref`` lets the decoder drop
    non-reference frames that lie before a target (faster; never changes results
    except that a truncated file's fallback "last frame" may be a reference frame).
    ``thread_type``: PyAV decoder threading ("SLICE", "FRAME" or "AUTO"; see ``open_video``).
    A damaged packet loses its own frames: a target among them gets the next frame that decodes.
    Raises FileNotFoundError, or VideoDecodeError if no frame could be decoded or more than
    ``MAX_BAD_PACKETS`` of the packets decoded are damaged.
    ``stats``, if given, receives ``decoded`` (frames decoded), ``seeks``, ``sequential``
    (counted from the start: no usable timestamps) and ``past_end``: how many of the distinct
    indices lay past where the file stops and got an earlier frame instead.
    """
    if not callable(indices):
        idx = _check_indices(indices, path)
    container = open_video(path, thread_type)
    try:
        if info is None:
            info = probe_open(container, str(path))
            rewind(container)
        if callable(indices):
            idx = _check_indices(indices(info), path)
        stream = main_video_stream(container)
        if not idx:
            return torch.empty((0, info.height, info.width, 3), dtype=torch.uint8)
        wanted = sorted(set(idx))
        fps = info.fps if info.fps and info.fps > 0 else 25.0
        ahead = seek_ahead_frames if seek_ahead_frames is not None else max(16, int(2 * fps))
        bad = BadPackets(path)
        dec = _SparseDecoder(container, stream, fps, ahead, skip_nonref, bad)
        got: dict[int, object] = {}
        sequential = False
        try:
            try:
                for i in wanted:
                    frame = dec.frame_at(i)
                    if frame is None:
                        break
                    if _frame_ts(frame) is None:
                        raise _UnreliableTimestamps()
                    got[i] = frame
            except _UnreliableTimestamps:
                # No usable timestamps: decode from the start and count frames (exact, slower).
                rewind(container)
                stream.codec_context.skip_frame = "DEFAULT"
                sequential = True
                got, count = _read_sequential(container, stream, wanted, bad)
        except AV_ERRORS as e:
            if not got:
                raise VideoDecodeError(path, f"decoding failed ({av_reason(e)})") from e
        if stats is not None:
            # targets past where the file stops (truncated, or a header that promises more
            # frames than there are) get an earlier frame: say how many, for effvid check
            if sequential:
                past_end = sum(i >= count for i in wanted)
            else:
                past_end = sum(i not in got or _frame_ts(got[i]) < dec.pts_of(i - 0.5) for i in wanted)
            # the fallback's frames too: it said 1 decoded where 51 were (bench_decode divides by it)
            decoded = dec.decoded + (count if sequential else 0)
            stats.update(decoded=decoded, seeks=dec.seeks, sequential=sequential, past_end=past_end)
        if not got:
            raise VideoDecodeError(path, "no frame could be decoded")
        # Targets after a premature EOF get the last frame that did decode.
        last = got[max(got)]
        rotation = info.rotation
        first = got[min(got)]
        size = (first.width, first.height)
        arrays = {}
        for i in wanted:
            frame = got.get(i, last)
            key = id(frame)
            if key not in arrays:
                arrays[key] = upright_rgb(frame, rotation, size)
            arrays[i] = arrays[key]
        out = np.stack([arrays[i] for i in idx])
        return torch.from_numpy(np.ascontiguousarray(out))
    finally:
        container.close()


def read_all_frames(path: str | os.PathLike) -> torch.Tensor:
    """Decode every frame of ``path`` (uint8 (T, H, W, 3), upright). For tests/baselines.
    Like every reader, passes over damaged packets (their frames lost) and raises VideoDecodeError
    past ``MAX_BAD_PACKETS`` of them."""
    container = open_video(path)
    try:
        stream = main_video_stream(container)
        frames, rotation, size = [], 0, None
        try:
            for frame in decoded_frames(container, stream, BadPackets(path)):
                if size is None:
                    size = (frame.width, frame.height)
                    rotation = display_rotation(frame, stream)
                frames.append(upright_rgb(frame, rotation, size))
        except AV_ERRORS as e:
            if not frames:
                raise VideoDecodeError(path, f"decoding failed ({av_reason(e)})") from e
        if not frames:
            raise VideoDecodeError(path, "no frame could be decoded")
        return torch.from_numpy(np.ascontiguousarray(np.stack(frames)))
    finally:
        container.close()


# ---------------------------------------------------------------------------
# writing

# Default pixel format per encoder. yuv420p is the most widely decodable choice;
# MJPEG wants the full-range "j" variant.
_PIX_FMT = {
    "libx264": "yuv420p",
    "h264": "yuv420p",
    "libx265": "yuv420p",
    "hevc": "yuv420p",
    "mpeg4": "yuv420p",
    "libvpx-vp9": "yuv420p",
    "libvpx": "yuv420p",
    "mjpeg": "yuvj420p",
    "ffv1": "yuv444p",
    "png": "rgb24",
}
_SUBSAMPLED = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "nv12", "nv21")
_AUDIO_CODEC = {".webm": "libopus", ".avi": "pcm_s16le"}  # everything else: aac


def _frame_u8(frame) -> np.ndarray:
    if isinstance(frame, torch.Tensor):
        frame = frame.detach().cpu().numpy()
    arr = np.asarray(frame)
    if arr.dtype != np.uint8:
        raise TypeError(f"frames must be uint8, got {arr.dtype}")
    if arr.ndim == 2:  # grayscale
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"each frame must be (H, W, 3) or (H, W), got {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr


def _iter_frames(frames):
    """Yield (H, W, 3) uint8 frames from a (T, H, W[, 3]) array/tensor or an iterable of frames."""
    if isinstance(frames, (np.ndarray, torch.Tensor)):
        if frames.ndim not in (3, 4):
            raise ValueError(f"frames must be (T, H, W, 3) or (T, H, W), got {tuple(frames.shape)}")
        for i in range(frames.shape[0]):
            yield _frame_u8(frames[i])
    else:
        for f in frames:
            yield _frame_u8(f)


def _thread_scheduling() -> tuple | None:
    """The calling thread's scheduling policy and its parameters (None where there are none)."""
    return (os.sched_getscheduler(0), os.sched_getparam(0)) if hasattr(os, "sched_getscheduler") else None


def _restore_thread_scheduling(saved: tuple | None) -> None:
    """Give the calling thread back the scheduling ``_thread_scheduling()`` read. SVT-AV1's encoder,
    run as root (a container's usual user), makes the thread that opens it real-time (SCHED_FIFO,
    priority 99) and leaves it so: every process the program started later inherited that, and
    on a busy machine such a process's real-time workers kept its main thread from running, its
    Ctrl-C handler included."""
    if saved is not None and _thread_scheduling() != saved:
        os.sched_setscheduler(0, *saved)


def write_video(path: str | os.PathLike, frames, fps: float = 8, codec: str = "libx264",
                audio=None, audio_rate: int = 16000, *, pix_fmt: str | None = None,
                crf: int | None = 18, preset: str | None = "veryfast", gop: int | None = None,
                bit_rate: int | None = None, rotation: int = 0, threads: int | None = None,
                options: dict | None = None, timestamps: Sequence[float] | None = None) -> Path:
    """Encode uint8 frames (T, H, W, 3) or grayscale (T, H, W) to ``path`` with PyAV.

    ``frames`` may also be any iterable of (H, W, 3) frames (streamed, for long videos).

    The container follows the extension. ``pix_fmt`` defaults per codec (yuv420p,
    or yuvj420p for mjpeg); with a 4:2:0/4:2:2 format odd frame sizes are padded
    to even by repeating the last row/column (the file is then 1 px larger; use
    e.g. ``pix_fmt="yuv444p"`` or mjpeg to keep odd sizes). ``pix_fmt="gray"``
    (libx264/libx265) writes a monochrome stream. ``crf``/``preset`` apply to
    x264/x265 (``crf`` also to vp9), ``bit_rate`` to the others (default: high
    quality), ``gop`` is the keyframe interval. ``rotation`` stores a display
    rotation (counter-clockwise degrees, as :attr:`VideoInfo.rotation`).
    ``audio``: optional mono float waveform in [-1, 1] at ``audio_rate`` Hz, encoded as
    AAC (mp4/mov/mkv), Opus (webm) or 16-bit PCM (avi).
    ``timestamps``: optional per-frame presentation times in seconds (increasing) to
    write a variable-frame-rate file (millisecond precision; ``fps`` is then nominal).
    """
    path = Path(path)
    it = _iter_frames(frames)
    first = next(it, None)
    if first is None:
        raise ValueError(f"no frames to write to {str(path)!r}")
    h, w, _ = first.shape
    fmt = pix_fmt or _PIX_FMT.get(codec, "yuv420p")
    pad_h = pad_w = 0
    if fmt in _SUBSAMPLED and codec != "mjpeg" and (h % 2 or w % 2):
        pad_h, pad_w = h % 2, w % 2
        h, w = h + pad_h, w + pad_w

    rate = Fraction(fps).limit_denominator(1001)
    opts = {}
    if codec in ("libx264", "libx265"):
        if crf is not None:
            opts["crf"] = str(crf)
        if preset:
            opts["preset"] = preset
        if codec == "libx265":
            opts["x265-params"] = "log-level=error"
            if min(h, w) < 64:
                # x265's CU-tree (a lookahead that spreads bits across frames) corrupts the heap
                # on some small frames, e.g. 40 or 48 px sides: the process aborts in free()
                opts["x265-params"] += ":cutree=0"
    elif codec in ("libvpx-vp9", "libvpx"):
        if crf is not None:
            opts.update({"crf": str(max(crf, 4)), "b": "0"})
        opts.update({"deadline": "realtime", "cpu-used": "8"})
    opts.update(options or {})

    path.parent.mkdir(parents=True, exist_ok=True)
    scheduling = _thread_scheduling()
    container = av.open(str(path), mode="w")
    try:
        stream = container.add_stream(codec, rate=rate, options=opts)
        stream.width, stream.height, stream.pix_fmt = w, h, fmt
        cc = stream.codec_context
        if fmt == "gray":
            cc.color_range = 2  # full range, else decoders read it as 16..235 video range
        if gop is not None:
            cc.gop_size = int(gop)
        if threads is not None:
            cc.thread_count = int(threads)
        if codec not in ("libx264", "libx265", "libvpx-vp9", "libvpx"):
            cc.bit_rate = int(bit_rate) if bit_rate else max(1_000_000, int(w * h * float(fps) * 2))
            if codec == "mjpeg":
                cc.qmin, cc.qmax = 1, 3
        elif bit_rate:
            cc.bit_rate = int(bit_rate)
        if rotation:
            stream.set_display_rotation(int(rotation))
        tb = Fraction(1, 1) / rate
        if timestamps is not None:
            tb = Fraction(1, 1000)
            cc.time_base = tb

        astream = None
        if audio is not None:
            acodec = _AUDIO_CODEC.get(path.suffix.lower(), "aac")
            astream = container.add_stream(acodec, rate=int(audio_rate))
            astream.layout = "mono"

        def all_frames():
            yield first
            yield from it

        for i, img in enumerate(all_frames()):
            if img.shape[:2] != first.shape[:2]:
                raise ValueError(f"frame {i} has shape {img.shape}, expected {first.shape}")
            if pad_h or pad_w:
                img = np.pad(img, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            if timestamps is not None:
                if i >= len(timestamps):
                    raise ValueError(f"got more frames than timestamps ({len(timestamps)})")
                frame.pts = int(round(float(timestamps[i]) * 1000))
            else:
                frame.pts = i
            frame.time_base = tb
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)

        if astream is not None:
            wav = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
            wav = np.clip(wav.astype(np.float32).reshape(-1), -1.0, 1.0)
            sfmt = astream.format.name
            if sfmt.startswith("s16"):
                data = (wav * 32767).round().astype(np.int16)[None]
            else:
                data = wav[None]
            # Codec-sized frames with explicit pts (in samples): one big frame would be re-framed
            # by PyAV's resampler and land a few ms late.
            step = astream.codec_context.frame_size or 1024
            for pos in range(0, data.shape[1], step):
                aframe = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, pos:pos + step]),
                                                    format=sfmt, layout="mono")
                aframe.sample_rate = int(audio_rate)
                aframe.pts = pos
                aframe.time_base = Fraction(1, int(audio_rate))
                for packet in astream.encode(aframe):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    except BaseException:
        container.close()
        path.unlink(missing_ok=True)
        raise
    finally:
        _restore_thread_scheduling(scheduling)
    container.close()
    return path
