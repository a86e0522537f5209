"""A training copy of a video collection: smaller frames and a keyframe every second.

Training reads a few frames of every video, epoch after epoch. :func:`read_frames` seeks to the
keyframe before each wanted frame and decodes forward from it, so the work per clip grows with
the keyframe interval and the frame size: a 720p video with x264's default 250-frame GOP loads
an 8-segment clip about 3x faster sparse than by a full decode, 10x with 1-s GOPs, and TSM
resizes to a 256-pixel short side anyway (docs/benchmarks.md). :func:`prepare_video` re-encodes
one video: short side ``short_side`` (never enlarged), a keyframe every ``keyframe_interval``
seconds, the display rotation applied to the pixels, the timestamps kept (variable frame rates
too), the audio re-encoded. :func:`prepare_folder` does it for every video under a folder,
writing each to the same relative path and name (an mp4 named NAME.mp4 for the containers it
does not write, :func:`copy_name`), and copies the list and annotation files (a list file with
the new names), so the copy is read as the original was. This replaces the frame extraction to
folders of JPEGs that other toolboxes need.

Each video is written under a hidden temporary name beside its final one and renamed when
complete: an interrupted run leaves no partial video under a video's name, and a rerun skips the
videos that are there.
"""

from __future__ import annotations

import dataclasses
import filecmp
import json
import math
import multiprocessing
import numbers
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

import av
import numpy as np
from av.video.frame import PictureType
from av.video.reformatter import VideoReformatter

from ..errors import BadValue, not_a_regular_file, plural
from ..training.interrupts import ctrl_c_recorded, only_recorded, raise_if_interrupted
from .files import broken_link, find_files
from .lists import split_list_line
from .video import (AV_ERRORS, VIDEO_EXTENSIONS, BadPackets, VideoDecodeError, VideoInfo, av_reason,
                    decode_packet, main_video_stream, open_video, probe_open, probe_video, program_stream,
                    rewind)

__all__ = ["ANNOTATION_EXTENSIONS", "REPORT_NAME", "PrepareSummary", "output_size", "copy_name",
           "prepare_video", "prepare_folder", "check_folders"]

# The small files that layouts need beside the videos: list files and class files (.txt, .lst),
# Kinetics' CSV, Something-Something's JSON; UCF101's and HMDB51's split files are .txt.
ANNOTATION_EXTENSIONS = (".txt", ".csv", ".json", ".lst")
REPORT_NAME = "effvid-prepare-report.txt"
_PART = ".effvid-part"  # ".<stem>.effvid-part<ext>": hidden, so datasets never read one

# extension -> (video encoder, audio encoder). AVI: MPEG-4 part 2 at a fixed high quality, as
# AVI stores no presentation times and FFmpeg makes up H.264's as dts + 1 (B-frames off or not):
# read_frames counts H.264 frames from the first, but readers that go by time (effvid.av,
# players) would show the picture a frame after the sound; and MP2, which starts at time 0:
# MP3's and AAC's first packets start before it (encoder delay), and the AVI muxer then shifts
# every stream, the video by a whole frame.
_ENCODERS = {
    ".mp4": ("libx264", "aac"), ".m4v": ("libx264", "aac"), ".mov": ("libx264", "aac"),
    ".mkv": ("libx264", "aac"), ".webm": ("libvpx-vp9", "libopus"),
    ".avi": ("mpeg4", "mp2"),
}
# Every other video's copy is an mp4 (copy_name): .ts, .mts, .m2ts, .3gp, .flv, .wmv and .asf,
# which FFmpeg here writes only in part, and .mpg and .mpeg, as an MPEG program stream is read
# by counting its frames from its start (effvid.data.video.program_stream), which its keyframes
# cannot speed up; an mp4 is read by seeking to them, exactly.
_COPIED_AS = ".mp4"
# Containers that store a frame rate, not timestamps (and encoders that want 1/rate time bases):
# their frames are numbered in order.
_CONSTANT_RATE = (".avi",)
# MPEG-4 part 2 quantizer (2 = best, 31 = worst). On the 720p benchmark video (at 456x256) MPEG-4 at
# 3 is 35 dB PSNR from a lossless copy, where x264 at crf 23 is 32 dB, in a file 5x as large.
_MPEG_QUANTIZER = 3
# The 720p benchmark video's whole preparation took 2.7 s with veryfast, 4.7 s with x264's
# default (medium).
_X264_PRESET = "veryfast"


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """The (width, height) of a ``width`` x ``height`` picture with its short side made
    ``short_side``, never enlarged; both even (4:2:0 encoders need even sizes)."""
    scale = min(1.0, short_side / min(width, height))
    if scale == 1.0:  # kept: an odd side loses its last row or column
        return max(2, width - width % 2), max(2, height - height % 2)
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


# The lowest fps: the rate is kept as a fraction with a denominator up to 1001 (30000/1001), and a
# lower one came out as 0 frames a second.
MIN_FPS = 0.001


def _integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _finite_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_settings(*, short_side, keyframe_interval, crf, fps) -> None:
    """Refuse a setting of :func:`prepare_video` out of its bounds, naming it; ``effvid prepare``
    refuses its flags so before anything is written (a short side of 1 was found by the first
    video, after DST was made)."""
    if not _integer(short_side) or short_side < 2:
        raise BadValue("short_side", short_side, "must be an integer >= 2 (the sides are made even)")
    if not _finite_number(keyframe_interval) or keyframe_interval <= 0:
        raise BadValue("keyframe_interval", keyframe_interval, "must be a finite number of seconds > 0")
    if not _integer(crf) or not 0 <= crf <= 51:
        raise BadValue("crf", crf, "must be an integer from 0 to 51")
    if fps is not None and (not _finite_number(fps) or fps < MIN_FPS):
        raise BadValue("fps", fps, f"must be None or a number >= {MIN_FPS}")


def copy_name(name: str) -> str:
    """The name of the copy of the video ``name`` (a path, as a string): its own, or, for a
    container prepare does not write (see ``_COPIED_AS``), ``.mp4`` for its extension
    ("a/x.ts": "a/x.mp4"). Anything not named like a video is returned as it is."""
    stem, ext = os.path.splitext(name)
    if ext.lower() in VIDEO_EXTENSIONS and ext.lower() not in _ENCODERS:
        return stem + _COPIED_AS
    return name


def part_path(dst: str | os.PathLike) -> Path:
    """The hidden name ``dst`` is written under until it is complete."""
    dst = Path(dst)
    return dst.with_name(f".{dst.stem}{_PART}{dst.suffix}")


def _video_encoder(out, codec: str, rate: Fraction, size: tuple[int, int], crf: int, gop: int):
    options = {}
    if codec == "libx264":
        options = {"crf": str(crf), "preset": _X264_PRESET}
    elif codec == "libvpx-vp9":
        # "good" at cpu-used 5, its fastest: the 720p benchmark video took 7.8 s (13.3 s at
        # cpu-used 2, for a 5% larger file)
        options = {"crf": str(crf), "b": "0", "deadline": "good", "cpu-used": "5"}
    stream = out.add_stream(codec, rate=rate, options=options)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    cc = stream.codec_context
    cc.thread_count = 1  # one process per CPU (workers) does the parallel work
    cc.gop_size = gop  # an upper bound; keyframes are placed by time (pict_type I)
    if codec == "mpeg4":
        # a fixed quantizer: the bit rate is only a ceiling then
        cc.qmin = cc.qmax = _MPEG_QUANTIZER
        cc.bit_rate = 50_000_000
        cc.max_b_frames = 0  # an AVI's B-frames leave frame order to guesswork (see video.py)
    return stream


def _audio_encoder(out, codec: str, source):
    """An encoder for the audio stream ``source``: its sample rate where the codec takes it (else
    the next one up), mono kept mono and anything else stereo (every codec here takes those)."""
    rates = av.codec.Codec(codec, "w").audio_rates
    rate = source.codec_context.sample_rate or 48000
    if rates and rate not in rates:
        higher = [r for r in rates if r >= rate]
        rate = min(higher) if higher else max(rates)
    stream = out.add_stream(codec, rate=rate)
    stream.layout = "mono" if source.codec_context.channels == 1 else "stereo"
    return stream


def _end_time(stream) -> float | None:
    """Where ``stream`` ends in seconds, if its container says."""
    if stream.duration is None or not stream.time_base:
        return None
    return float((stream.duration + (stream.start_time or 0)) * stream.time_base)


def _cut_after(frame: av.AudioFrame, end: float | None) -> av.AudioFrame | None:
    """``frame`` without its samples at or after ``end`` seconds (None if it has none before).
    Decoders give whole codec frames: an AAC stream's last one has up to 1023 samples of padding
    past the stream's end, which the copy would otherwise keep and lengthen the sound by."""
    if end is None or frame.pts is None or frame.time_base is None:
        return frame
    start = float(frame.pts * frame.time_base)
    keep = round((end - start) * frame.sample_rate)
    if keep >= frame.samples:
        return frame
    if keep <= 0:
        return None
    samples = frame.to_ndarray()  # (channels, samples), or (1, samples x channels) if packed
    per_sample = 1 if frame.format.is_planar else len(frame.layout.channels)
    cut = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, :keep * per_sample]),
                                     format=frame.format.name, layout=frame.layout.name)
    cut.sample_rate, cut.pts, cut.time_base = frame.sample_rate, frame.pts, frame.time_base
    return cut


def _turned(picture: av.VideoFrame, rotation: int) -> av.VideoFrame:
    """A 4:2:0 ``picture`` turned ``rotation`` degrees counter-clockwise (its planes turned as
    read_frames turns RGB frames)."""
    w, h = picture.width, picture.height
    flat = picture.to_ndarray().reshape(-1)  # the Y plane, then U, then V
    planes = (flat[:w * h].reshape(h, w), flat[w * h:w * h * 5 // 4].reshape(h // 2, w // 2),
              flat[w * h * 5 // 4:].reshape(h // 2, w // 2))
    planes = [np.rot90(p, k=rotation // 90) for p in planes]
    width = planes[0].shape[1]
    return av.VideoFrame.from_ndarray(np.concatenate([p.ravel() for p in planes]).reshape(-1, width),
                                      format="yuv420p")


@dataclass
class _Frames:
    """Turns decoded frames into the encoder's: resized, rotated upright, timed, with keyframes."""

    stream: object  # the output video stream
    out: object  # the output container
    rotation: int
    size: tuple[int, int]  # displayed (width, height) of the output
    time_base: Fraction  # of the output frames' pts
    constant_rate: bool  # number the frames (pts = index) instead of keeping their timestamps
    fps_in: float
    keyframe_interval: float
    fps_out: float | None = None  # resample to this rate (lower than fps_in)
    source_time_base: Fraction = Fraction(1, 1000)
    times_from_pts: bool = True
    written: int = 0
    decoded: int = 0
    _start: float | None = None
    _next_key: float = 0.0
    _last_pts: int | None = None
    _tagged: bool = False
    # kept single-threaded contexts, as effvid.data.video.frame_to_rgb's
    _convert: VideoReformatter = field(default_factory=VideoReformatter)
    _subsample: VideoReformatter = field(default_factory=VideoReformatter)

    def _time(self, frame) -> float:
        """Seconds since the first frame (from the timestamps, or the frame's number)."""
        if self.times_from_pts and frame.pts is not None:
            t = float(frame.pts * self.source_time_base)
        else:
            t = self.decoded / self.fps_in
        if self._start is None:
            self._start = t
        return t - self._start

    def _picture(self, frame) -> av.VideoFrame:
        """``frame`` as the encoder takes it: 4:2:0 in video range at the output size, upright.

        Resized in YUV, bicubic (as FFmpeg's scale filter, which frame-extraction scripts use):
        on the 720p benchmark video as fast as 0.7 ms a frame, where going through RGB at full
        size (read_frames' picture, then resized) took 3.6 ms and made the copy 1.2 levels
        darker on average, the 4:2:0 round trip's rounding; both are 5.8 levels from
        read_frames' frames resized by torch (bicubic, antialiased), most of it the 4:2:0
        chroma of that saturated noise at 456x256.
        """
        w, h = self.size
        if self.rotation in (90, -90):  # the stored picture is the displayed one turned
            w, h = h, w
        # Video range everywhere: full-range (yuvj, greyscale) pictures are converted, as
        # MPEG-4 part 2 cannot say they are full range.
        if (frame.width, frame.height) == (w, h):
            picture = self._convert.reformat(frame, format="yuv420p", dst_color_range="MPEG", threads=1)
        elif (frame.width - frame.width % 2, frame.height - frame.height % 2) == (w, h):
            # not resized: the odd last row or column is dropped (in 4:4:4, before subsampling)
            planes = self._convert.reformat(frame, format="yuv444p", dst_color_range="MPEG",
                                            threads=1).to_ndarray()
            full = av.VideoFrame.from_ndarray(np.ascontiguousarray(planes[:, :h, :w]), format="yuv444p")
            full.colorspace = frame.colorspace
            picture = self._subsample.reformat(full, format="yuv420p", dst_color_range="MPEG", threads=1)
        else:
            picture = self._convert.reformat(frame, format="yuv420p", width=w, height=h,
                                             interpolation="BICUBIC", dst_color_range="MPEG", threads=1)
        if not self._tagged:
            # The copy's YUV values keep the source's colour matrix (RGB and greyscale pictures
            # get the default one): say which, so that read_frames turns them into the same RGB.
            # (MPEG-4 part 2 cannot say: an AVI in BT.709, rare, is read back as BT.601.)
            cc = self.stream.codec_context
            cc.colorspace, cc.color_range = picture.colorspace, picture.color_range
            cc.color_primaries, cc.color_trc = picture.color_primaries, picture.color_trc
            self._tagged = True
        return _turned(picture, self.rotation) if self.rotation else picture

    def add(self, frame) -> None:
        t = self._time(frame)
        self.decoded += 1
        if self.fps_out is None:
            # an AVI's frames at their numbers: FFmpeg's made-up H.264 pts lie a frame late, and
            # with B-frames in decode order
            self._encode(frame, t, frame.pts if self.times_from_pts else None)
            return
        # Output frame k shows the first frame at or after k / fps_out seconds (half a source
        # frame early counts), as read_frames picks frame k of a video: frames are dropped,
        # and one repeated over a gap of a variable-rate video.
        tolerance = 0.5 / self.fps_in
        while self.written / self.fps_out <= t + tolerance:
            slot = self.written / self.fps_out
            self._encode(frame, slot, None if self.constant_rate else
                         round((self._start + slot) / self.source_time_base))

    def _encode(self, frame, t: float, pts: int | None) -> None:
        picture = self._picture(frame)
        if self.constant_rate:
            pts = self.written
        elif pts is None:  # no timestamp: one frame after the last
            pts = round((self._start + t) / self.time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # encoders refuse repeated or decreasing timestamps
        picture.pts, picture.time_base, self._last_pts = pts, self.time_base, pts
        # I forces a keyframe; NONE lets the encoder choose (a decoded frame passed on as it
        # is keeps its own type, which libx264 would follow)
        picture.pict_type = PictureType.NONE
        if t >= self._next_key - 1e-6:
            picture.pict_type = PictureType.I
            self._next_key = (math.floor(t / self.keyframe_interval + 1e-6) + 1) * self.keyframe_interval
        for packet in self.stream.encode(picture):
            self.out.mux(packet)
        self.written += 1

    def finish(self) -> None:
        for packet in self.stream.encode(None):
            self.out.mux(packet)


def _transcode(container, info: VideoInfo, tmp: Path, *, short_side: int, keyframe_interval: float,
               crf: int, audio: bool, fps: float | None) -> int:
    """Write ``container``'s video (and audio) to ``tmp``; the number of frames written."""
    ext = tmp.suffix.lower()
    video_codec, audio_codec = _ENCODERS[ext]
    source = main_video_stream(container)
    size = output_size(info.width, info.height, short_side)
    fps_out = fps if fps is not None and fps < info.fps else None
    rate = Fraction(fps_out if fps_out else (source.average_rate or info.fps)).limit_denominator(1001)
    constant = ext in _CONSTANT_RATE
    time_base = Fraction(1, 1) / rate if constant else (source.time_base or Fraction(1, 90000))
    # an int the encoders take (a --keyframe-interval longer than the video: one keyframe)
    gop = max(1, round(min(keyframe_interval * float(rate), 2**31 - 1)))
    sound = container.streams.audio[0] if audio and container.streams.audio else None

    with av.open(str(tmp), mode="w") as out:
        stream = _video_encoder(out, video_codec, rate, size, crf, gop)
        stream.codec_context.time_base = time_base
        frames = _Frames(stream, out, info.rotation, size, time_base, constant, info.fps,
                         keyframe_interval, fps_out, source.time_base or Fraction(1, 90000),
                         # AVI has no presentation timestamps (FFmpeg's are made up), and an MPEG
                         # program stream's go back and jump: their frames are counted, as
                         # read_frames counts them
                         times_from_pts=container.format.name != "avi" and not program_stream(container))
        audio_out = _audio_encoder(out, audio_codec, sound) if sound is not None else None
        sound_end = _end_time(sound) if sound is not None else None
        # As read_frames and read_audio: a damaged packet loses its own frames or audio (a moment
        # of silence), and a stream with more than MAX_BAD_PACKETS of them fails the video.
        bad_video, bad_sound = BadPackets(container.name), BadPackets(container.name)
        try:
            for packet in container.demux(*([source] + ([sound] if sound is not None else []))):
                if sound is not None and packet.stream.index == sound.index:
                    for frame in decode_packet(packet, bad_sound):
                        frame = _cut_after(frame, sound_end)
                        if frame is not None:
                            for p in audio_out.encode(frame):
                                out.mux(p)
                    continue
                for frame in decode_packet(packet, bad_video):
                    frames.add(frame)
        except AV_ERRORS:
            pass  # a truncated or damaged container: keep the frames it gave, as read_frames does
        if frames.written == 0:
            raise VideoDecodeError(container.name, "no frame could be decoded")
        frames.finish()
        if audio_out is not None:
            for p in audio_out.encode(None):
                out.mux(p)
    return frames.written


def prepare_video(src: str | os.PathLike, dst: str | os.PathLike, *, short_side: int = 256,
                  keyframe_interval: float = 1.0, crf: int = 23, audio: bool = True,
                  fps: float | None = None) -> VideoInfo:
    """Re-encode the video ``src`` to ``dst`` for training and return ``dst``'s :class:`VideoInfo`.

    The container follows ``dst``'s extension: mp4/mov/m4v/mkv get H.264 (libx264, ``crf``) and
    AAC, webm VP9 (``crf`` on VP9's scale, where 23 is high quality) and Opus, avi MPEG-4 part 2
    and MP2 (at a fixed high quality; MP2 starts the sound about 5 ms late, its encoder's delay).
    Other extensions are refused: :func:`copy_name` names a video's copy.
    The picture is what :func:`read_frames` shows for ``src``: the display rotation is applied
    to the pixels (no rotation tag is written), then the short side is made ``short_side``
    (never enlarged; sides rounded to even numbers). Every frame keeps its timestamp (the
    frames of an AVI source, whose timestamps FFmpeg makes up, of an MPEG program stream, whose
    timestamps go back and jump, and of AVI copies are numbered at the stream's rate instead),
    unless ``fps``, below the video's rate, resamples it to that constant rate. The first frame
    at or after every ``keyframe_interval`` seconds is a keyframe. ``audio``: the first audio
    stream is kept.
    As when the original is read, a damaged packet loses only its own frames (or audio), and a
    stream with more than ``MAX_BAD_PACKETS`` damaged packets fails the video.

    ``dst`` appears only when complete (written as ``part_path(dst)``, then renamed).
    Raises FileNotFoundError, or VideoDecodeError for a file that cannot be read (naming ``src``)
    or whose copy cannot be written or read back.
    """
    src, dst = Path(src), Path(dst)
    ext = dst.suffix.lower()
    if ext not in _ENCODERS:
        raise ValueError(f"cannot write {str(dst)!r}: expected one of {', '.join(_ENCODERS)} "
                         f"(effvid prepare writes a {ext} video as {copy_name('NAME' + ext)})")
    check_settings(short_side=short_side, keyframe_interval=keyframe_interval, crf=crf, fps=fps)
    container = open_video(src, "SLICE")
    main_video_stream(container).codec_context.thread_count = 1
    tmp = part_path(dst)
    try:
        info = probe_open(container, str(src))
        rewind(container)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            _transcode(container, info, tmp, short_side=short_side, keyframe_interval=keyframe_interval,
                       crf=crf, audio=audio, fps=fps)
        except AV_ERRORS as e:
            raise VideoDecodeError(src, f"cannot write its copy {str(dst)!r} ({av_reason(e)})") from e
        try:
            written = probe_video(tmp)
        except VideoDecodeError as e:
            raise VideoDecodeError(src, f"its copy does not read back ({e.reason})") from e
        os.replace(tmp, dst)
    except BaseException:  # an error, Ctrl-C or SystemExit (a worker terminated): no partial file
        tmp.unlink(missing_ok=True)
        raise
    finally:
        container.close()
    return dataclasses.replace(written, path=str(dst))


# ---------------------------------------------------------------------------
# a folder


def check_folders(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Refuse a missing SRC, a SRC that is not a folder, and DST equal to SRC, inside it or
    holding it."""
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise FileNotFoundError(2, "source folder not found", str(src))
    if not src.is_dir():
        raise ValueError(f"{str(src)!r} is a file: SRC is the folder that holds the videos (and "
                         "their list or annotation files), which is copied as a whole")
    if dst.exists() and not dst.is_dir():
        raise ValueError(f"DST {str(dst)!r} is a file: it must be a folder (made if missing)")
    real_src, real_dst = src.resolve(), dst.resolve()
    if real_dst == real_src:
        raise ValueError(f"DST {str(dst)!r} is SRC: the copy needs a folder of its own (its videos "
                         "keep their names)")
    if real_src in real_dst.parents:
        raise ValueError(f"DST {str(dst)!r} is inside SRC {str(src)!r}: its videos would be read "
                         "as SRC's; choose a folder outside SRC")
    if real_dst in real_src.parents:
        raise ValueError(f"SRC {str(src)!r} is inside DST {str(dst)!r}: copies could land on "
                         "source files; choose a folder beside SRC")


@dataclass
class PrepareSummary:
    """What :func:`prepare_folder` did. ``prepared``: ``[(src, VideoInfo of the copy)]``;
    ``skipped``: ``[(src, reason)]`` for the unreadable videos, not prepared but copied unchanged
    (the reason says if one could not be copied); ``linked``: ``[(src, reason)]`` for the videos
    that are broken links, and ``broken_links`` for the annotation files that are, each made
    again as a link pointing where it points (not copied: there is nothing to copy);
    ``copied``: the annotation files copied; ``left_out``: files neither video nor annotation,
    not copied; ``not_files``: ``[(src, what)]`` for what is named like a video but is no file
    (a FIFO, a device: never opened), left out and listed; ``renamed``: ``[(src, copy)]`` for
    the videos whose copy has another name (:func:`copy_name`), and ``rewritten`` the list files
    copied with those names for theirs."""

    src: str
    dst: str
    settings: dict
    prepared: list = field(default_factory=list)
    already_there: int = 0
    skipped: list = field(default_factory=list)
    linked: list = field(default_factory=list)
    copied: list = field(default_factory=list)
    broken_links: list = field(default_factory=list)
    left_out: list = field(default_factory=list)
    not_files: list = field(default_factory=list)
    renamed: list = field(default_factory=list)
    rewritten: list = field(default_factory=list)
    seconds: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0

    @property
    def report(self) -> Path:
        return Path(self.dst) / REPORT_NAME


def _settings_line(settings: dict) -> str:
    return "settings: " + json.dumps(settings, sort_keys=True)


def _previous_settings(report: Path) -> dict | None:
    try:
        for line in report.read_text(encoding="utf-8").splitlines():
            if line.startswith("settings: "):
                return json.loads(line[len("settings: "):])
    except (OSError, ValueError):
        pass
    return None


def _write_report(summary: PrepareSummary, finished: bool) -> None:
    lines = [f"effvid prepare {summary.src} {summary.dst}", _settings_line(summary.settings)]
    if not finished:
        lines.append("status: not finished (running, or interrupted: rerun the command to finish)")
    else:
        lines += [f"status: finished in {summary.seconds:,.1f} s",
                  f"videos: {len(summary.prepared)} written, {summary.already_there} already there, "
                  f"{len(summary.skipped)} unreadable (copied unchanged), {len(summary.linked)} broken "
                  "links (made again as links)",
                  *([f"videos copied as {_COPIED_AS} under a new name (NAME{_COPIED_AS} for NAME.mpg, "
                     f"NAME.ts, ...): {len(summary.renamed)}; list files rewritten with the new names: "
                     f"{len(summary.rewritten)}"] if summary.renamed else []),
                  f"annotation files copied: {len(summary.copied)}, broken links (made again as "
                  f"links): {len(summary.broken_links)}",
                  f"other files left out: {len(summary.left_out)}",
                  f"named like videos but not regular files (left out): {len(summary.not_files)}"]
        for header, items in ((UNCHANGED, summary.skipped), (LINKED, summary.linked),
                              (NOT_FILES, summary.not_files),
                              ("annotation files that are broken links (made again as links):",
                               summary.broken_links)):
            if items:
                lines.append(header)
                lines += [f"  {path}: {reason}" for path, reason in items]
        if summary.rewritten:
            lines.append("list files rewritten with the new names:")
            lines += [f"  {path}" for path in summary.rewritten]
    tmp = part_path(summary.report)
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, summary.report)


def _stop_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds prepare_video, which removes its partial file


def _worker_init() -> None:
    # Ctrl-C reaches every process of the terminal's group: the parent stops the pool, whose
    # SIGTERM each worker turns into SystemExit (a quiet exit that removes its partial file).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)


def _prepare_job(job: tuple[Path, Path, dict]):
    src, dst, options = job
    try:
        return src, prepare_video(src, dst, **options), None
    except (VideoDecodeError, OSError) as e:
        reason = broken_link(src) or (e.reason if isinstance(e, VideoDecodeError) else av_reason(e))
    return src, None, _copy_unchanged(src, dst, reason)


def _copy_unchanged(src: Path, dst: Path, reason: str) -> str:
    """Copy the video ``src``, which could not be prepared, to ``dst`` as it is, so that DST is
    read as SRC is: training skips and counts it, effvid check names its reason (missing, a
    list file naming it stopped training with "video not found"). A broken link is made again,
    pointing where ``src`` points (a relative target made absolute, which would name another
    file from DST): training on DST and effvid check name it as they do in SRC, and it reads
    once its target is back. ``reason``, and why it could not be copied if so."""
    tmp = part_path(dst)
    try:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        if broken_link(src):
            tmp.unlink(missing_ok=True)  # one left by a killed run
            os.symlink(os.path.join(os.path.abspath(os.path.dirname(src)), os.readlink(src)), tmp)
        else:
            shutil.copy2(src, tmp)  # with its times, which _copied_unchanged compares
        os.replace(tmp, dst)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        return f"{reason}; not copied ({av_reason(e)})"
    except BaseException:  # Ctrl-C, or SystemExit (a worker terminated): no partial file
        tmp.unlink(missing_ok=True)
        raise
    return reason


# the report's sections of the videos that were not prepared, which a rerun tries again
UNCHANGED = "copied unchanged (unreadable):"
LINKED = "videos that are broken links (made again as links):"
NOT_FILES = "named like videos but not regular files (left out):"


def _copied_unchanged_before(report: Path) -> set[str]:
    """The videos (source paths) that ``report``, a finished run's, names as copied unchanged or
    made again as links. Its lines are "  PATH: REASON", and a path or a reason may hold ": ":
    every candidate."""
    try:
        lines = report.read_text(encoding="utf-8").splitlines()
    except OSError:
        return set()
    paths, section = set(), None
    for line in lines:
        if not line.startswith("  "):
            section = line
            continue
        if section not in (UNCHANGED, LINKED):
            continue
        end = line.find(": ")
        while end != -1:
            paths.add(line[2:end])
            end = line.find(": ", end + 1)
    return paths


def _copied_unchanged(src: Path, dst: Path, listed: set[str]) -> bool:
    """Whether ``dst`` is ``src`` copied as it is (an unreadable video), not a prepared copy: a
    rerun tries it again (and names it again, or prepares a source mended since) rather than
    counting it as done. The report of the run that copied it names it (``listed``); one
    stopped before it wrote the list left the copy with the source's size and modification time
    (the same bytes; a prepared copy differs in size but by chance)."""
    if str(src) in listed:
        return True
    try:
        return filecmp.cmp(src, dst, shallow=True)
    except OSError:
        return False


def _refuse_shared_copies(videos: list[tuple[Path, Path]]) -> None:
    """Refuse two videos whose copies would have one name ("a/x.ts" and "a/x.mp4"; see
    :func:`copy_name`), naming both, before anything is written."""
    first_of, shared = {}, []
    for source, target in videos:
        if (other := first_of.setdefault(target, source)) != source:
            shared.append((other, source, target))
    if shared:
        a, b, target = shared[0]
        renamed = a if a.name != target.name else b
        more = f"; {plural(len(shared) - 1, 'more pair')} of videos too" if len(shared) > 1 else ""
        raise ValueError(f"{str(a)!r} and {str(b)!r} would both be copied to {str(target)!r} (a "
                         f"{renamed.suffix} video is written as {_COPIED_AS}){more}: rename one of "
                         "them, and the list files that name it")


def _list_naming_copies(path: Path) -> str | None:
    """The text of the list file ``path`` with the videos it names by relative paths under their
    copies' names (:func:`copy_name`: "a/x.ts 3" as "a/x.mp4 3"), or None if it names none so
    (it is copied as it is). Kinetics' CSV and Something-Something's JSON name videos by id,
    found under any extension; an absolute path names the original, which is still there."""
    if path.suffix.lower() in (".csv", ".json"):  # read_samples reads every other file as a list
        return None
    try:
        lines = path.read_bytes().decode("utf-8").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError):
        return None  # copied as it is (an unreadable file stops the run there, naming it)
    changed = False
    for k, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or (fields := split_list_line(stripped)) is None:
            continue
        video = fields[0]  # where the stripped line starts
        if os.path.isabs(video) or copy_name(video) == video:
            continue
        at = line.index(video)
        lines[k] = line[:at] + copy_name(video) + line[at + len(video):]
        changed = True
    return "".join(lines) if changed else None


def _prepare_all(pool, todo: list, summary: PrepareSummary, progress) -> None:
    results = pool.imap_unordered(_prepare_job, todo) if pool else map(_prepare_job, todo)
    if progress is not None:
        results = progress(results, len(todo))
    for path, info, reason in results:
        raise_if_interrupted()  # one dropped elsewhere
        if info is None:  # a broken link is made again as one, not copied
            (summary.linked if broken_link(path) else summary.skipped).append((str(path), reason))
        else:
            summary.prepared.append((str(path), info))
            summary.bytes_in += path.stat().st_size
            summary.bytes_out += os.path.getsize(info.path)


def prepare_folder(src: str | os.PathLike, dst: str | os.PathLike, *, short_side: int = 256,
                   keyframe_interval: float = 1.0, crf: int = 23, audio: bool = True,
                   fps: float | None = None, workers: int = 0, overwrite: bool = False,
                   progress: Callable[[Iterable, int], Iterable] | None = None) -> PrepareSummary:
    """:func:`prepare_video` for every video under ``src`` (effvid's video extensions), written to
    the same relative path under ``dst``, under the name :func:`copy_name` gives; the annotation
    files (:data:`ANNOTATION_EXTENSIONS`) are copied as they are, except that a list file naming
    a renamed video by a relative path names its copy; hidden files and folders are left out, as
    datasets do. Two videos whose copies would have one name are refused, before anything is
    written.

    ``workers`` processes (0: in this one). A video whose copy exists is skipped unless
    ``overwrite``; a rerun after an interruption thus finishes the job, and a rerun with other
    settings than those ``dst``'s report names is refused (``overwrite`` redoes every video,
    first removing the copies when the settings are not the report's, so that every copy in
    ``dst`` is always made with the settings its report names).
    An unreadable video is copied unchanged (so that ``dst`` reads as ``src``: training skips and
    counts it) and listed; a rerun tries it again. A broken link (a video or an annotation file)
    is made again in ``dst``, pointing where it points, and listed. ``progress(iterable, total)`` may wrap the
    results as they come (a progress bar). ``dst/effvid-prepare-report.txt`` records the
    settings and the outcome.
    """
    check_settings(short_side=short_side, keyframe_interval=keyframe_interval, crf=crf, fps=fps)
    check_folders(src, dst)
    start = time.perf_counter()
    src, dst = Path(src), Path(dst)
    settings = {"short_side": short_side, "keyframe_interval": keyframe_interval, "crf": crf,
                "audio": audio, "fps": fps}
    summary = PrepareSummary(str(src), str(dst), settings)
    videos, others = [], []
    for path in find_files(src, others):  # (no extensions: every folder is searched)
        rel = path.relative_to(src)
        suffix = path.suffix.lower()
        if suffix in VIDEO_EXTENSIONS:
            videos.append((path, dst / copy_name(str(rel))))
        elif suffix in ANNOTATION_EXTENSIONS and rel != Path(REPORT_NAME):
            summary.copied.append((path, dst / rel))
        else:
            summary.left_out.append(path)
    for path in others:  # a FIFO named like a video was dropped without a word; training names it
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            summary.not_files.append((str(path), not_a_regular_file(path, "video file") or "not a regular file"))
        else:
            summary.left_out.append(path)
    _refuse_shared_copies(videos)
    summary.renamed = [(str(s), str(d)) for s, d in videos if d.name != s.name]
    unchanged_before = _copied_unchanged_before(summary.report)
    done = [(s, d) for s, d in videos
            if not overwrite and d.exists() and not _copied_unchanged(s, d, unchanged_before)]
    previous = _previous_settings(summary.report)
    if done and previous is not None and previous != settings:
        changed = ", ".join(f"{k} {previous.get(k)!r} (now {v!r})" for k, v in settings.items()
                            if previous.get(k) != v)
        raise ValueError(f"{str(dst)!r} holds {plural(len(done), 'video')} prepared with other settings: "
                         f"{changed} ({summary.report}): rerun with those to finish it, or add "
                         "--overwrite to redo every video")
    if overwrite and previous != settings:
        # Removed before the report names the new settings: a run stopped midway left copies of
        # the old ones, which a rerun counted as done (a copy of two sizes, reported finished).
        for _, target in videos:
            if target.is_file() or target.is_symlink():
                target.unlink()
    for source, _ in summary.renamed:
        # a copy under the video's own name: an earlier effvid wrote .mpg copies as .mpg, which
        # class folders would read beside the .mp4 (nothing else is copied to that name)
        old = dst / Path(source).relative_to(src)
        if old.is_file() or old.is_symlink():
            old.unlink()
    dst.mkdir(parents=True, exist_ok=True)
    _write_report(summary, finished=False)
    for path, target in list(summary.copied):
        target.parent.mkdir(parents=True, exist_ok=True)
        if (reason := broken_link(path)) is not None:  # copyfile stopped the run, naming no link
            summary.broken_links.append((str(path), _copy_unchanged(path, target, reason)))
            summary.copied.remove((path, target))  # made again as a link, not copied
        elif summary.renamed and (text := _list_naming_copies(path)) is not None:
            target.write_bytes(text.encode("utf-8"))
            summary.rewritten.append(str(path))
        else:
            shutil.copyfile(path, target)
    summary.already_there = len(done)
    for _, target in done:  # a copy left by a run killed while redoing it (--overwrite)
        part_path(target).unlink(missing_ok=True)
    options = dict(short_side=short_side, keyframe_interval=keyframe_interval, crf=crf, audio=audio, fps=fps)
    done_set = set(done)
    todo = [(s, d, options) for s, d in videos if (s, d) not in done_set]
    # A kill (SIGTERM) stops the run as Ctrl-C does: partial files removed, the workers stopped
    # (they would finish their videos and die on the closed pipe, with tracebacks).
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_handler = signal.signal(signal.SIGTERM, _stop_on_sigterm) if in_main_thread else None
    pool = None
    try:
        with ctrl_c_recorded():
            if workers > 0 and todo:
                # A Ctrl-C while the pool forks came in an after-fork hook, where Python drops
                # it: the run went on to its end. Recorded, it is raised once the pool is there.
                with only_recorded():
                    pool = multiprocessing.Pool(workers, initializer=_worker_init)
            _prepare_all(pool, todo, summary, progress)
    except BaseException:
        if pool is not None:
            pool.terminate()
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_handler)
    summary.prepared.sort(key=lambda item: item[0])
    summary.skipped.sort()
    summary.linked.sort()
    summary.seconds = time.perf_counter() - start
    _write_report(summary, finished=True)
    return summary
