"""Long-video sampling for the audio-visual model.

A long video becomes a sequence of ``K`` consecutive clips of ``clip_seconds`` each (the paper:
30 clips of 1 s, 16 frames per clip at 16 fps = 480 frames for a 30-second video). Every clip
carries its frames and the audio of exactly the same time window. Videos shorter than ``K``
clips are zero-padded and the padding is marked in ``mask`` (never dropped), so batches of
sequences can be fed to :class:`effvid.av.model.AVModel` with an attention mask.

All times are seconds on the container's timeline, 0 = the container's start; frame ``j`` of
clip ``k`` is the frame displayed at ``start + k·clip_seconds + j·clip_seconds/frames_per_clip``
(the last frame whose presentation time is at or before that instant), and the clip's audio is
``[start + k·clip_seconds, start + (k+1)·clip_seconds)``.

``mask`` and ``audio_mask`` say what really decoded, not only what the header promises: a clip
counts as video when every one of its frame instants shows a decoded frame (a truncated file's
clips past its last decodable frame, which would repeat that frame, are masked), and as audio
when the decoded audio covers its window (an audio track shorter than the video leaves the later
clips' audio masked, and one that starts late the earlier clips', not zero-filled silence marked
valid; so does a gap in the middle of the track, whose clips hold the zeros that keep the later
audio at its time).
"""

from __future__ import annotations

import math
import numbers
import os
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.video import (BadPackets, av_reason, counted_duration, display_rotation, main_video_stream,
                          program_stream, stream_duration, timed_frames, upright_rgb)
from ..errors import BadValue, check_positive_ints, check_seconds
from .audio import (AudioDecodeError, check_missing_audio, clip_samples, container_origin, open_media,
                    read_audio)

__all__ = ["AVSequence", "LongVideoSampler", "collate_av_sequences", "frames_to_clips"]


@dataclass
class AVSequence:
    """One long video as ``K`` time-aligned clips.

    Attributes:
        frames: uint8 ``(K, T, H, W, 3)``; padded clips are zeros.
        audio: float32 ``(K, samples_per_clip)`` mono waveform per clip; zeros where padded.
        mask: bool ``(K,)``, True for clips whose frames all decoded (see :class:`LongVideoSampler`).
        audio_mask: bool ``(K,)``, ``mask`` and the decoded audio covers the clip.
        clip_starts: float64 ``(K,)`` clip start times in seconds (padded clips continue the grid).
        has_audio: whether the file has an audio track.
        path: the source file.
    """

    frames: torch.Tensor
    audio: torch.Tensor
    mask: torch.Tensor
    audio_mask: torch.Tensor
    clip_starts: torch.Tensor
    has_audio: bool
    path: str = ""
    sample_rate: int = 16000
    extra: dict = field(default_factory=dict)

    @property
    def num_valid(self) -> int:
        return int(self.mask.sum())


class _PastLastFrame(AudioDecodeError):
    """A start past a truncated file's last decodable frame (which ends at ``video_end``)."""

    def __init__(self, path, reason: str, video_end: float):
        super().__init__(path, reason)
        self.video_end = video_end


class LongVideoSampler:
    """Cut a video file into ``num_clips`` consecutive clips with frames and aligned audio.

    Args:
        num_clips: ``K``, clips per sequence (30 in the paper).
        clip_seconds: length of a clip (1.0).
        frames_per_clip: frames sampled uniformly in each clip (16, i.e. 16 fps for 1-s clips).
        sample_rate: audio rate after resampling (Hz).
        start: where the sequence starts: a number of seconds, or ``"random"`` (uniform over the
            positions that keep the sequence inside the video; 0 for short videos; drawn again
            inside the frames that decode when a truncated file's header promised more).
        size: optional ``(height, width)`` to resize frames to while decoding.
        missing_audio: ``"error"`` (raise for files without audio) or ``"mask"`` (zero audio,
            ``audio_mask`` all False).

    ``sampler(path)`` returns an :class:`AVSequence`. ``mask`` marks the clips inside the video
    whose frame instants are all shown by decoded frames: frames past the last decodable frame of
    a truncated file are not real, so a clip that reaches past it is masked (zeros), even if only
    partly (it would repeat the last frame). As for a video shorter than one clip, the first clip
    stays valid, holding the last frame, when at least its first instant decoded. ``audio_mask``
    marks the valid clips whose window the decoded audio covers but for a tenth of a clip at
    either end (codec frame edges; for a single short clip, up to where its frames end): clips
    before an audio track that starts late or past one that ends early are masked, and so are
    clips that gaps in the track (time its timestamps skip) cover more than a tenth of, their
    overlaps summed. A missing file raises
    ``FileNotFoundError``; unreadable files, files without video (or without audio when
    ``missing_audio="error"``) raise :class:`effvid.av.audio.AudioDecodeError`, a
    ``VideoDecodeError`` naming the file. Display-rotation metadata is applied, as in
    :func:`effvid.data.read_frames` (frames come out upright; ``size`` is the upright size).
    """

    def __init__(
        self,
        num_clips: int = 30,
        clip_seconds: float = 1.0,
        frames_per_clip: int = 16,
        sample_rate: int = 16000,
        *,
        start: float | str = 0.0,
        size: tuple[int, int] | None = None,
        missing_audio: str = "error",
    ):
        # all checked here, naming the argument: a size of 0 or a rate of 0 was taken, then
        # every video failed to decode (or a bare ZeroDivisionError) when read
        check_positive_ints(num_clips=num_clips, frames_per_clip=frames_per_clip, sample_rate=sample_rate)
        clip_samples(clip_seconds, sample_rate)
        _check_start(start)
        if size is not None and not (isinstance(size, (tuple, list)) and len(size) == 2
                                     and all(not isinstance(v, bool) and isinstance(v, numbers.Integral) and v > 0
                                             for v in size)):
            raise BadValue("size", size, "must be two positive ints (height, width)")
        check_missing_audio(missing_audio)  # not only once the first file is read
        self.num_clips = num_clips
        self.clip_seconds = float(clip_seconds)
        self.frames_per_clip = frames_per_clip
        self.sample_rate = sample_rate
        self.start = start
        self.size = size
        self.missing_audio = missing_audio

    @property
    def samples_per_clip(self) -> int:
        return clip_samples(self.clip_seconds, self.sample_rate)

    def __call__(self, path, start: float | str | None = None, rng: random.Random | None = None) -> AVSequence:
        path = os.fspath(path)
        start = self.start if start is None else _check_start(start)
        try:
            return self._read(path, start, rng)
        except _PastLastFrame as e:
            if start != "random":
                raise
            # A truncated file's header promises more than decodes, and a random start drawn
            # past its last frame failed the sample (a third of the time for a file cut at 20 s
            # of 60, with 30-s sequences): drawn again inside what decoded.
            slack = max(0.0, e.video_end - self.num_clips * self.clip_seconds)
            return self._read(path, (rng or random).uniform(0.0, slack), rng)

    def _read(self, path: str, start: float | str, rng: random.Random | None) -> AVSequence:
        container = open_media(path)
        try:
            if not container.streams.video:
                raise AudioDecodeError(path, "file has no video stream")
            stream = main_video_stream(container)
            stream.thread_type = "AUTO"
            origin = container_origin(container)
            duration = _duration_seconds(container, stream, origin)
            if start == "random":
                slack = max(0.0, duration - self.num_clips * self.clip_seconds)
                start = (rng or random).uniform(0.0, slack)
            start = float(start)
            # Clips that fit in the video (1 ms tolerance for rounded durations); a video shorter
            # than one clip still yields one (partially repeated) clip rather than nothing.
            fit = math.floor((duration - start) / self.clip_seconds + 1e-3)
            num_valid = min(self.num_clips, max(fit, 1 if duration > start else 0))
            if num_valid == 0:
                raise AudioDecodeError(path, f"start {start:.3f}s is past the end of the video ({duration:.3f}s)")
            frames, shown, video_end = self._decode_frames(container, stream, origin, start, num_valid, path)
        finally:
            container.close()

        K, T = self.num_clips, self.frames_per_clip
        # only clips whose frames all decoded (a truncated file's header promises more); the
        # first one, like a video shorter than a clip, whenever its first instant decoded
        if shown == 0:
            raise _PastLastFrame(path, f"start {start:.3f}s is past the last decodable frame "
                                       f"(frames end at {video_end:.3f}s, the header says {duration:.3f}s)",
                                 video_end)
        num_valid = max(1, min(num_valid, shown // T))
        frames = frames[: num_valid * T]
        out_frames = torch.zeros((K, T, *frames.shape[1:]), dtype=torch.uint8)
        out_frames[:num_valid] = torch.from_numpy(frames).view(num_valid, T, *frames.shape[1:])

        # the duration of exactly num_valid * samples_per_clip samples (clip_seconds * rate may
        # not be a whole number of samples)
        audio = read_audio(path, start=start, duration=num_valid * self.samples_per_clip / self.sample_rate,
                           sample_rate=self.sample_rate, missing_audio=self.missing_audio)
        out_audio = torch.zeros(K, self.samples_per_clip)
        out_audio[:num_valid] = audio.waveform.view(num_valid, self.samples_per_clip)

        mask = torch.arange(K) < num_valid
        # A clip has audio when the decoded audio covers it from its start to its end (or, for a
        # single short clip, where its frames end), give or take a tenth of a clip at each end
        # for codec frame edges; before a track that starts late and past the end of the track
        # read_audio zero-pads, and that silence is not the file's.
        audio_begin = start + audio.decoded_from / self.sample_rate
        audio_end = start + audio.decoded_samples / self.sample_rate
        clip_starts = start + self.clip_seconds * torch.arange(K, dtype=torch.float64)
        clip_ends = clip_starts + self.clip_seconds
        tolerance = 0.1 * self.clip_seconds
        covered = ((audio_begin <= clip_starts + tolerance)
                   & (audio_end >= torch.clamp(clip_ends, max=video_end) - tolerance))
        # Time the track skips (gaps, zero-filled) costs a clip its audio when its gaps cover more
        # than a tenth of it together, as the ends may lack a tenth. (Asking whether a gap reached
        # a tenth into the clip masked one for a single 64-ms AAC frame lost mid-clip.)
        in_gaps = torch.zeros(K, dtype=torch.float64)
        for gap_from, gap_to in audio.gaps:
            gap_start, gap_end = start + gap_from / self.sample_rate, start + gap_to / self.sample_rate
            in_gaps += (torch.clamp(clip_ends, max=gap_end) - torch.clamp(clip_starts, min=gap_start)).clamp(min=0)
        covered &= in_gaps <= tolerance
        return AVSequence(
            frames=out_frames,
            audio=out_audio,
            mask=mask,
            audio_mask=mask & covered & audio.has_audio,
            clip_starts=clip_starts,
            has_audio=audio.has_audio,
            path=path,
            sample_rate=self.sample_rate,
        )

    def _decode_frames(self, container, stream, origin, start, num_valid, path):
        """Frames displayed at the target instants, as uint8 ``(num_valid * T, H, W, 3)``; how
        many leading targets a decoded frame really shows (the rest hold the last frame past
        its display time); and where the decoded frames end (seconds; ``inf`` when decoding
        stopped before the end of the stream)."""
        import av

        step = self.clip_seconds / self.frames_per_clip
        targets = [start + i * step for i in range(num_valid * self.frames_per_clip)]
        # times where the frames are shown, not FFmpeg's made-up ones in an AVI (timed_frames); a
        # damaged packet's frames are lost, and the frame before is shown for longer
        frames = timed_frames(container, stream, (origin + start) / stream.time_base if start > 0 else None,
                              bad=BadPackets(path, AudioDecodeError))
        picked: list[np.ndarray | None] = [None] * len(targets)
        nxt = 0  # next target to fill
        prev, prev_t = None, None  # last decoded frame not after the current target, its time
        rotation, frame_size = None, None  # known once the first frame is decoded

        def rgb(frame) -> np.ndarray:
            return upright_rgb(frame, rotation, frame_size)

        try:
            for pts, frame in frames:
                if pts is None:
                    continue
                if rotation is None:
                    rotation = display_rotation(frame, stream)
                    # (width, height) of the stored, unrotated picture; without ``size``, the
                    # first frame's, so that a mid-stream size change still stacks
                    frame_size = (frame.width, frame.height)
                    if self.size is not None:
                        h, w = self.size
                        frame_size = (h, w) if rotation in (90, -90) else (w, h)
                t = float(pts * stream.time_base) - origin
                while nxt < len(targets) and t > targets[nxt] + _SHOWN_TOLERANCE:
                    if prev is None:  # the first frame comes after the target: use it anyway
                        prev, prev_t = frame, t
                    picked[nxt] = rgb(prev)
                    nxt += 1
                if nxt == len(targets):
                    break
                prev, prev_t = frame, t
        except av.FFmpegError as exc:
            raise AudioDecodeError(path, f"video decoding failed ({av_reason(exc)})") from exc
        if prev is None:
            raise AudioDecodeError(path, "no decodable video frames in the requested window")
        shown, video_end = len(targets), math.inf
        if nxt < len(targets):  # the stream ended first: the last frame shows until its end
            video_end = prev_t + _frame_seconds(prev, stream)
            shown = nxt + sum(1 for t in targets[nxt:] if t < video_end - _SHOWN_TOLERANCE)
        last = None
        for i in range(nxt, len(targets)):  # targets after the last frame: hold the last frame
            last = rgb(prev) if last is None else last
            picked[i] = last
        return np.stack(picked), shown, video_end


# A frame stored at up to 0.5 ms after a target counts as displayed at it: Matroska and WebM
# round times to milliseconds (the frame at 1/16 s is stored as 62 or 63 ms), and such times keep
# that error when remuxed into a finer time base. Not half a tick of the time base: an AVI's tick
# is a frame (1/25 s), and half of it took the next frame up to 20 ms early. 0.5 ms is an eightieth
# of a 25-fps frame. (1e-9: the float error of the targets.)
_SHOWN_TOLERANCE = 0.0005 + 1e-9


def _check_start(start):
    # a negative start was refused only by read_audio, once the frames had been decoded
    if start != "random":
        check_seconds("start", start, why="must be seconds >= 0 or 'random'")
    return start


def _frame_seconds(frame, stream) -> float:
    """How long ``frame`` is displayed: its own duration, else one period of the stream's rate."""
    if frame.duration:
        return float(frame.duration * stream.time_base)
    rate = stream.average_rate or stream.guessed_rate
    return 1 / float(rate) if rate else 0.0


def _duration_seconds(container, stream, origin: float) -> float:
    if program_stream(container):  # its frames are counted (timed_frames), and so its duration
        duration = counted_duration(container, stream)
    else:
        duration = stream_duration(container, stream)  # an mp4's frames may be shown past its header's
    if duration is not None:
        first = float(stream.start_time * stream.time_base) if stream.start_time is not None else origin
        return first - origin + float(duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    raise AudioDecodeError(container.name, "cannot determine the video's duration")


def collate_av_sequences(batch: list[AVSequence]) -> dict[str, torch.Tensor]:
    """Stack :class:`AVSequence` items: ``frames (B, K, T, H, W, 3)`` uint8, ``audio (B, K, S)``,
    ``mask``/``audio_mask (B, K)`` bool, ``clip_starts (B, K)``. The items must have one shape:
    frames of videos of different sizes stack only when the sampler resizes them (``size=``)."""
    if not batch:
        raise ValueError("collate_av_sequences needs at least one AVSequence, got an empty batch")
    for name in ("frames", "audio", "mask"):  # audio_mask and clip_starts have mask's shape
        shapes = [tuple(getattr(b, name).shape) for b in batch]
        odd = next((i for i, shape in enumerate(shapes) if shape != shapes[0]), None)
        if odd is None:
            continue
        if name == "frames" and shapes[odd][:2] == shapes[0][:2]:  # the same clips, other (H, W)
            remedy = "pass size=(height, width) to LongVideoSampler to decode every video to one size"
        else:
            remedy = ("sample them with the same LongVideoSampler settings (num_clips, frames_per_clip, "
                      "clip_seconds, sample_rate)")
        raise ValueError(f"cannot batch AV sequences whose {name} differ in shape: sample 0 "
                         f"({batch[0].path or 'no path'}) has {shapes[0]}, sample {odd} "
                         f"({batch[odd].path or 'no path'}) has {shapes[odd]}; {remedy}")
    return {
        "frames": torch.stack([b.frames for b in batch]),
        "audio": torch.stack([b.audio for b in batch]),
        "mask": torch.stack([b.mask for b in batch]),
        "audio_mask": torch.stack([b.audio_mask for b in batch]),
        "clip_starts": torch.stack([b.clip_starts for b in batch]),
    }


def frames_to_clips(frames: torch.Tensor, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)) -> torch.Tensor:
    """uint8 ``(..., T, H, W, 3)`` → normalised float ``(..., 3, T, H, W)``, the clip layout the
    model's visual encoders take."""
    x = frames.float().div_(255)
    x = (x - x.new_tensor(mean)) / x.new_tensor(std)
    return x.movedim(-1, -4).contiguous()
