"""Streaming recognition: decode a video file or a camera frame by frame, run an online TSM,
emit per-frame predictions, an annotated video and a plot of class probabilities.

The pieces are usable on their own:

* :func:`open_frames` yields ``(time_s, frame)`` with ``frame`` a C-contiguous RGB uint8 (H, W, 3)
  array (``torch.from_numpy`` takes it as is),
  from a file or a V4L2 camera (``"0"`` means ``/dev/video0``); :func:`list_sources` expands a
  directory of videos.
* :func:`preprocess_frame`: resize the shorter side, centre crop, ImageNet normalisation.
* :class:`Smoother`: the average of the class probabilities over the last N frames.
* :func:`run_stream`: the loop over one stream; returns a :class:`StreamSummary`.

Any recogniser with ``step(frame) -> logits`` and ``reset()`` works: an
:class:`~effvid.models.online.OnlineRecognizer` or an ONNX Runtime
:class:`~effvid.export.onnx.OnnxOnlineRunner`.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TextIO

import av
import numpy as np
import torch

from .errors import layout_hint, plural, unread_path_hint
from .data.transforms import TestTransform, default_scale_size
from .data.video import (AV_ERRORS, VIDEO_EXTENSIONS, BadPackets, VideoDecodeError, an_image, display_rotation,
                         main_video_stream, timed_frames, unopenable_video, upright_rgb)

__all__ = [
    "AnnotatedVideoWriter", "StreamError", "StreamSummary", "Smoother", "list_sources",
    "open_frames", "plot_probabilities", "preprocess_frame", "run_stream",
]

# PyAV/FFmpeg raise these for files or devices they cannot open or decode (a camera that
# cannot be opened: an OSError).
_AV_ERRORS = (*AV_ERRORS, OSError)


class StreamError(Exception):
    """A source cannot be opened or read (missing camera, unreadable file, no frames)."""


def _describe(e: BaseException) -> str:
    """FFmpeg's reason without the errno noise ("[Errno 1094995529] ... 'path'")."""
    reason = getattr(e, "strerror", None) or str(e)
    if isinstance(e, av.FFmpegError) and "Invalid data" in reason:
        reason += " (not a video, or a damaged file)"
    return reason


# ----------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------


def is_camera(source: str | int) -> bool:
    """A camera index: an int, or digits that do not name an existing file or folder."""
    return isinstance(source, int) or (isinstance(source, str) and source.isdigit()
                                       and not Path(source).exists())


def list_sources(source: str | int) -> list[str]:
    """A camera index, a video file, or the video files directly in a directory (sorted;
    hidden files left out, as for datasets; subfolders are not searched, so an output folder
    inside it is not streamed on the next run)."""
    if is_camera(source):
        return [str(source)]
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                       and p.suffix.lower() in VIDEO_EXTENSIONS)
        if not files:
            raise StreamError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) in directory {path}")
        return [str(p) for p in files]
    if why := an_image(path):  # FFmpeg decodes one as a one-frame video
        raise StreamError(why)
    if not path.exists():
        raise StreamError(f"no such file, directory or camera index: {source}{unread_path_hint(source)}")
    return [str(path)]


def _open_container(source: str):
    if is_camera(source):
        device = f"/dev/video{int(source)}"
        try:
            return av.open(device, format="v4l2")
        except _AV_ERRORS as e:
            raise StreamError(f"cannot open camera {source} ({device}): {_describe(e)}") from None
    if why := unopenable_video(source):  # as predict, check and train say it
        raise StreamError(f"cannot open video {source}: {why}")
    try:
        return av.open(str(source))
    except _AV_ERRORS as e:
        raise StreamError(f"cannot open video {source}: {_describe(e)}") from None


def open_frames(source: str | int, on_warning: Callable[[str], None] | None = None
                ) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(time_s, rgb_uint8_HWC)`` for each frame of a file or camera: upright (display
    rotation applied, as by every effvid reader), C-contiguous, with the time from the stream's
    start.

    Raises :class:`StreamError` if the source cannot be opened or has no video stream. A
    file's damaged packet loses its own frames. A decoding error after the first frame ends the
    stream with a warning (``on_warning``), not an exception: a camera unplugged, a truncated
    file or one with more damaged packets than ``MAX_BAD_PACKETS`` ends the stream cleanly.
    """
    source = str(source)
    container = _open_container(source)
    warn = on_warning or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    try:
        if not container.streams.video:
            raise StreamError(f"{source} has no video stream")
        stream = main_video_stream(container)
        stream.thread_type = "AUTO"
        camera = is_camera(source)
        start = time.perf_counter()
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 25.0
        origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        # a file's frames at the times they are shown, not FFmpeg's made-up ones in an AVI
        frames = (((None, frame) for frame in container.decode(stream)) if camera
                  else timed_frames(container, stream, bad=BadPackets(source)))
        rotation = None
        index = 0
        while True:
            try:
                pts, frame = next(frames)
            except StopIteration:
                break
            except (*_AV_ERRORS, VideoDecodeError) as e:  # (VideoDecodeError: too many damaged packets)
                reason = e.reason if isinstance(e, VideoDecodeError) else _describe(e)
                if index == 0:
                    raise StreamError(f"cannot decode video {source}: {reason}") from None
                warn(f"{source}: stream ended after {plural(index, 'frame')}: {reason}")
                break
            if camera:
                t = time.perf_counter() - start
            elif pts is not None:
                t = float(pts * stream.time_base) - origin
            else:
                t = index / fps
            if rotation is None:
                rotation = display_rotation(frame, stream)
            # a rotated frame is a negative-stride view (np.rot90), which torch.from_numpy
            # refuses. ascontiguousarray copies it (and a frame whose rows FFmpeg padded, which
            # preprocess_frame and the video writer would copy anyway) and returns the rest as is.
            yield t, np.ascontiguousarray(upright_rgb(frame, rotation, None))
            index += 1
        if index == 0:
            raise StreamError(f"{source}: no frames could be decoded")
    finally:
        container.close()


def source_fps(source: str, default: float = 25.0) -> float:
    """The frame rate of a file (for the annotated video); ``default`` for cameras/unknown."""
    if is_camera(source) or unopenable_video(source):  # a FIFO would block av.open; open_frames says why
        return default
    try:
        with av.open(str(source)) as c:
            if stream := main_video_stream(c):
                rate = stream.average_rate or stream.guessed_rate
                if rate:
                    return float(rate)
    except _AV_ERRORS:
        pass
    return default


# ----------------------------------------------------------------------------------------------
# Preprocessing and smoothing
# ----------------------------------------------------------------------------------------------


def preprocess_frame(frame: np.ndarray, size: int = 224, scale: int | None = None) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> normalised float (3, size, size): resize the shorter side to
    ``scale`` (default ``size * 256 // 224``), centre crop ``size``, ImageNet mean/std.

    Any input size works, so frames that change size mid-stream are simply resized.
    """
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an RGB frame (H, W, 3), got {frame.shape}"
                         + layout_hint(frame.shape, channels_first=False))
    # The same test-time transform as evaluation (a one-frame clip), so streams see what
    # `effvid eval` sees.
    transform = TestTransform(size, scale or default_scale_size(size))
    return transform(torch.from_numpy(np.ascontiguousarray(frame))[None])[0].contiguous()


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max()
    e = np.exp(z)
    return e / e.sum()


class Smoother:
    """Average of the softmax probabilities over the last ``window`` frames (1: no smoothing)."""

    def __init__(self, window: int = 1):
        if window < 1:
            raise ValueError(f"smoothing window must be >= 1, got {window}")
        self.history: deque[np.ndarray] = deque(maxlen=window)

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        self.history.append(softmax(np.asarray(logits, dtype=np.float64)))
        return np.mean(self.history, axis=0)

    def reset(self) -> None:
        self.history.clear()


# ----------------------------------------------------------------------------------------------
# Outputs: annotated video, plot
# ----------------------------------------------------------------------------------------------


def _font(height: int):
    from PIL import ImageFont

    size = max(10, height // 18)
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def annotate(frame: np.ndarray, text: str) -> np.ndarray:
    """The frame with ``text`` drawn in white on a dark band at the top."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    font = _font(img.height)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(2, img.height // 100)
    draw.rectangle((0, 0, min(img.width, right - left + 4 * pad), bottom - top + 2 * pad + top),
                   fill=(0, 0, 0))
    draw.text((2 * pad, pad), text, fill=(255, 255, 255), font=font)
    return np.asarray(img)


class AnnotatedVideoWriter:
    """Encode RGB frames to a video file with PyAV, one at a time. The first frame fixes the
    size (rounded down to even); later frames of another size are resized to it. The codec
    follows the container: VP9 for .webm, H.264 otherwise."""

    def __init__(self, path: str | Path, fps: float = 25.0, codec: str | None = None):
        self.path = Path(path)
        self.fps = fps
        self.codec = codec or ("libvpx-vp9" if self.path.suffix.lower() == ".webm" else "libx264")
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self._container = None
        self._stream = None

    def _start(self, h: int, w: int) -> None:
        self.size = (max(2, h - h % 2), max(2, w - w % 2))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self.path), mode="w")
            rate = Fraction(self.fps).limit_denominator(1001)
            options = {"crf": "23", "preset": "veryfast"} if self.codec == "libx264" else {}
            self._stream = self._container.add_stream(self.codec, rate=rate, options=options)
        except _AV_ERRORS as e:
            if self._container is not None:
                self._container.close()
                self._container = None
            raise StreamError(f"cannot write video {self.path}: {_describe(e)}") from None
        self._stream.height, self._stream.width = self.size
        self._stream.pix_fmt = "yuv420p"

    def write(self, frame: np.ndarray) -> None:
        if self.size is None:
            self._start(*frame.shape[:2])
        h, w = self.size
        if frame.shape[:2] != (h, w):
            from PIL import Image

            frame = np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR))
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None or self._stream is None:
            return
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None


def plot_probabilities(times: Sequence[float], probs: np.ndarray, classes: Sequence[str],
                       path: str | Path, top: int = 5, title: str | None = None) -> Path:
    """PNG of the class probabilities over time; the ``top`` classes with the highest peak."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    probs = np.asarray(probs)
    # a sentence-long name squeezed the plot away; a name in a script the font lacks printed
    # two warnings a character
    from .plot_text import missing_glyphs_noted, shorten_label

    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    try:
        if len(probs):
            order = np.argsort(-probs.max(axis=0))[:top]
            for k in order:
                ax.plot(times, probs[:, k], label=shorten_label(classes[k]))
            ax.legend(loc="upper right", fontsize="small")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("probability")
        ax.set_ylim(0, 1)
        ax.set_title(title or "class probabilities")
        ax.grid(alpha=0.3)
        with missing_glyphs_noted(path.name):
            fig.tight_layout()
            fig.savefig(path)
    finally:
        plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------


@dataclass
class StreamSummary:
    source: str
    frames: int = 0
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    interrupted: bool = False

    @property
    def fps(self) -> float:
        """Frames per second of the whole loop (decoding, model, outputs)."""
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    #: the first frames pay one-off costs (kernel selection, allocations); latency statistics
    #: leave them out when the stream has more than ``2 * WARMUP`` frames.
    WARMUP = 2

    def as_dict(self) -> dict:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        warmup = self.WARMUP if len(lat) > 2 * self.WARMUP else 0
        lat = lat[warmup:]
        return {
            "source": self.source, "frames": self.frames, "seconds": round(self.wall_s, 3),
            "fps": round(self.fps, 2),
            "latency_ms": {"mean": round(float(lat.mean()), 3),
                           "p50": round(float(np.percentile(lat, 50)), 3),
                           "p95": round(float(np.percentile(lat, 95)), 3),
                           "max": round(float(lat.max()), 3)},
            "latency_warmup_frames_excluded": warmup,
            "model_fps": round(1000.0 / float(lat.mean()), 2) if lat.mean() > 0 else 0.0,
            "interrupted": self.interrupted,
        }


def _to_numpy(logits) -> np.ndarray:
    if isinstance(logits, torch.Tensor):
        return logits.detach().float().cpu().numpy()
    return np.asarray(logits, dtype=np.float32)


def run_stream(recognizer, frames: Iterable[tuple[float, np.ndarray]], *,
               classes: Sequence[str] | None = None, size: int = 224, scale_size: int | None = None,
               smooth: int = 1,
               source: str = "", out: TextIO | None = None, video_path: str | Path | None = None,
               video_fps: float = 25.0, plot_path: str | Path | None = None,
               max_frames: int | None = None) -> StreamSummary:
    """Run ``recognizer`` (``step``/``reset``) over ``frames`` ((time_s, RGB uint8) pairs),
    each resized to ``scale_size`` on its shorter side (default ``size * 256 // 224``; the model's
    validation resize, which effvid stream reads from the checkpoint) and centre-cropped to ``size``.

    Writes one JSON line per frame to ``out`` (``source``, ``frame``, ``time``, ``label``,
    ``index``, ``score``, ``latency_ms``; the score is the smoothed probability of the label),
    optionally an annotated video and a probability plot. Latency is preprocessing plus the
    model step. Ctrl-C stops the stream; the outputs written so far are kept.
    """
    recognizer.reset()
    smoother = Smoother(smooth)
    summary = StreamSummary(source=source)
    writer = AnnotatedVideoWriter(video_path, video_fps) if video_path else None
    times: list[float] = []
    probs_history: list[np.ndarray] = []
    start = time.perf_counter()
    try:
        for t, frame in frames:
            if max_frames is not None and summary.frames >= max_frames:
                break
            t0 = time.perf_counter()
            x = preprocess_frame(frame, size, scale_size)
            logits = _to_numpy(recognizer.step(x))
            latency = (time.perf_counter() - t0) * 1000.0
            if classes is None:
                classes = [f"class_{i}" for i in range(logits.shape[-1])]
            elif len(classes) != logits.shape[-1]:
                raise StreamError(f"{plural(len(classes), 'class name')} for a model with "
                                  f"{plural(logits.shape[-1], 'class')}")
            probs = smoother(logits)
            k = int(np.argmax(probs))
            record = {"source": source, "frame": summary.frames, "time": round(float(t), 4),
                      "label": classes[k], "index": k, "score": round(float(probs[k]), 5),
                      "latency_ms": round(latency, 3)}
            # the JSON line last, so that after Ctrl-C it never lists a frame the video lacks
            if writer is not None:
                writer.write(annotate(frame, f"{classes[k]} {probs[k]:.2f}"))
            if out is not None:
                out.write(json.dumps(record) + "\n")
                out.flush()
            if plot_path is not None:
                times.append(float(t))
                probs_history.append(probs.astype(np.float32))
            summary.frames += 1
            summary.latencies_ms.append(latency)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        summary.wall_s = time.perf_counter() - start
        if writer is not None:
            writer.close()
        recognizer.reset()
    if plot_path is not None and probs_history:
        plot_probabilities(times, np.stack(probs_history), classes, plot_path,
                           title=f"class probabilities: {Path(source).name or source}")
    return summary


def format_summary(summary: StreamSummary) -> str:
    d = summary.as_dict()
    lat = d["latency_ms"]
    return (f"{d['source']}: {plural(d['frames'], 'frame')} in {d['seconds']:.2f} s, {d['fps']:.1f} fps "
            f"end to end; per-frame latency (preprocess + model"
            + (f", first {plural(d['latency_warmup_frames_excluded'], 'frame')} excluded"
               if d["latency_warmup_frames_excluded"] else "")
            + f") mean {lat['mean']:.2f} ms, p50 {lat['p50']:.2f} ms, p95 {lat['p95']:.2f} ms "
            f"({d['model_fps']:.1f} fps)"
            + (" [interrupted]" if d["interrupted"] else ""))

