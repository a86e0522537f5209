"""Audio for the audio-visual model: decoding with PyAV, log-mel spectrograms, SpecAugment.

Everything after decoding is plain torch, so spectrograms are computed in batches on whatever
device the waveforms live on (move the :class:`LogMelSpectrogram` module to the GPU with the
model).

* :func:`read_audio` decodes a time window of a file's audio track, mixed to mono and resampled.
* :func:`mel_filterbank` builds a triangular mel filterbank (HTK or Slaney mel scale).
* :class:`LogMelSpectrogram` maps waveforms ``(..., samples)`` to ``(..., n_mels, frames)``.
* :class:`SpecAugment` applies random frequency and time masks in training mode.
"""

from __future__ import annotations

import errno
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from effvid.data.video import BadPackets, VideoDecodeError, av_reason, decode_packet
from effvid.errors import BadValue, check_positive_ints, check_seconds

__all__ = [
    "AudioDecodeError",
    "AudioWindow",
    "read_audio",
    "container_origin",
    "open_media",
    "hz_to_mel",
    "mel_to_hz",
    "mel_filterbank",
    "LogMelSpectrogram",
    "SpecAugment",
]

# What read_audio and LongVideoSampler do with a file without audio: raise, or zeros and a mask
MISSING_AUDIO_MODES = ("error", "mask")


def check_missing_audio(missing_audio) -> None:
    if missing_audio not in MISSING_AUDIO_MODES:
        raise ValueError(f"missing_audio must be one of {MISSING_AUDIO_MODES}, got {missing_audio!r}")


class AudioDecodeError(VideoDecodeError):
    """A file's audio (or, from :class:`effvid.av.LongVideoSampler`, its frames) could not be
    decoded: missing file, no audio stream, corrupt data. A :class:`effvid.data.video.VideoDecodeError`
    (so a ``RuntimeError``); ``path`` names the file and ``reason`` says why."""

    def __init__(self, path, reason: str):
        super().__init__(path, reason)
        self.args = (f"cannot read {self.path!r}: {self.reason}",)  # audio or frames, not "video"


def clip_samples(clip_seconds, sample_rate) -> int:
    """The samples in a clip's waveform, ``round(clip_seconds * sample_rate)``, as
    :class:`effvid.av.LongVideoSampler` cuts them and :class:`effvid.av.AVModel` expects them.
    Refuses, naming the argument, a ``clip_seconds`` that is not a positive number of seconds or
    holds no sample (the audio CNN refuses an empty waveform), and a ``sample_rate`` that is not a
    positive integer."""
    check_positive_ints(sample_rate=sample_rate)
    check_seconds("clip_seconds", clip_seconds, positive=True)
    samples = round(clip_seconds * sample_rate)
    if samples < 1:
        raise BadValue("clip_seconds", clip_seconds, f"holds no audio sample at sample_rate={sample_rate}")
    return samples


def open_media(path):
    """Open ``path`` with PyAV: ``FileNotFoundError`` if it does not exist,
    :class:`AudioDecodeError` naming it if FFmpeg cannot read it."""
    import av

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "media file not found", path)
    if os.path.isdir(path):
        raise AudioDecodeError(path, "path is a directory, not a media file")
    if os.path.getsize(path) == 0:
        raise AudioDecodeError(path, "file is empty (0 bytes)")
    try:
        return av.open(path)
    except Exception as exc:  # FFmpeg errors come in many classes
        raise AudioDecodeError(path, f"cannot open container ({av_reason(exc)})") from exc


@dataclass
class AudioWindow:
    """A mono waveform window: ``waveform`` is float32 ``(samples,)`` in [-1, 1];
    ``has_audio`` is False when the file has no audio track (waveform is then all zeros).
    ``decoded_samples``: how far (in samples from the window's start) the decoded audio reaches;
    the rest of the window lies past the end of the stream and is zero padding (0 without audio;
    ``None``: the whole window). ``decoded_from``: where (in samples from the window's start) the
    decoded audio begins; before it the window lies before the start of the stream and is zero
    padding (0 when the stream starts at or before the window). The real audio is
    ``waveform[decoded_from:decoded_samples]``, except for ``gaps``: ``[(from, to)]`` sample
    ranges of the window that the stream's timestamps skip (a recording that dropped packets,
    joined files), zero-filled so that the audio after them stays at its time."""

    waveform: torch.Tensor
    sample_rate: int
    has_audio: bool
    decoded_samples: int | None = None
    decoded_from: int = 0
    gaps: list = field(default_factory=list)


# A jump in the audio timestamps larger than this is a gap (or an overlap): smaller ones are the
# rounding of millisecond time bases (Matroska, WebM) and are not followed.
_GAP_SECONDS = 0.02


def read_audio(
    path,
    *,
    start: float = 0.0,
    duration: float | None = None,
    sample_rate: int = 16000,
    missing_audio: str = "error",
) -> AudioWindow:
    """Decode ``[start, start + duration)`` seconds of a file's audio, mixed to mono (the mean of
    the channels) and resampled to ``sample_rate``.

    Args:
        path: a media file readable by FFmpeg (the same files the video frames come from).
        start: window start in seconds, on the container's timeline (0 = the container's start,
            as for the video frames; a stream that starts later is zero-padded before it).
        duration: window length in seconds; ``None`` reads to the end of the stream. The result
            always has exactly ``round(duration * sample_rate)`` samples: audio past the end of
            the stream is zero-padded (``decoded_samples`` says where the padding starts), and so
            is the part before a stream that starts late (``decoded_from`` says where it ends).
        sample_rate: output rate in Hz (the stream is resampled).
        missing_audio: ``"error"`` raises :class:`AudioDecodeError` for a file without an audio
            stream; ``"mask"`` returns zeros with ``has_audio=False`` so the caller can mask them.

    Only the needed part of the stream is decoded: the demuxer seeks to ``start`` and decoding
    stops once the window is filled. A damaged packet loses its own audio, zero-filled where
    the stream's timestamps say (see ``gaps``); a file with more damaged packets than
    ``effvid.data.video.MAX_BAD_PACKETS`` raises :class:`AudioDecodeError`.
    """
    import av

    # as LongVideoSampler checks them: NaN and inf failed later as "cannot convert float NaN to
    # integer" or an OverflowError (or a NaN start read from 0), a str rate as a TypeError, and a
    # rate of 16000.5 Hz was taken
    check_missing_audio(missing_audio)
    check_seconds("start", start)
    if duration is not None:
        check_seconds("duration", duration)
    check_positive_ints(sample_rate=sample_rate)
    want = None if duration is None else int(round(duration * sample_rate))
    container = open_media(path)
    try:
        if not container.streams.audio:
            if missing_audio == "mask":
                n = want if want is not None else _video_samples(container, sample_rate, start)
                return AudioWindow(torch.zeros(n), sample_rate, has_audio=False, decoded_samples=0)
            raise AudioDecodeError(path, "file has no audio stream (pass missing_audio='mask' to get a masked zero waveform)")
        stream = container.streams.audio[0]
        # Times are on the container's timeline, 0 = the container's start (the same origin
        # effvid.av.sequence uses for frames), so audio and frames of a file stay aligned even
        # when their streams start at different times.
        t_begin = container_origin(container) + start
        if start > 0:
            # Seek a little before the window: audio packets are all key frames, but decoders
            # such as AAC need the previous frame for their overlap-add.
            seek_to = max(0.0, t_begin - 0.1)
            container.seek(int(seek_to / stream.time_base), stream=stream, backward=True, any_frame=False)
        if want is None and stream.duration is not None:  # read to the end of the stream
            stream_end = float((stream.duration + (stream.start_time or 0)) * stream.time_base)
            want = max(0, int(round((stream_end - t_begin) * sample_rate)))
        # Resample keeping the channel layout, then mix to mono as the mean of the channels
        # (FFmpeg's own downmix would scale a stereo pair by 1/sqrt(2) each instead).
        resampler = av.AudioResampler(format="fltp", rate=sample_rate)
        chunks: list[np.ndarray] = []
        first_time = None  # time (s) of the first resampled sample we kept
        have = 0  # samples placed after first_time
        gaps: list[tuple[int, int]] = []  # (from, to) samples after first_time, zero-filled
        tolerance = _GAP_SECONDS * sample_rate

        def place(out) -> None:
            # Each chunk goes where its timestamp says: concatenated, the audio after a gap in
            # the stream came that much early, out of step with the frames for the rest of the file.
            nonlocal first_time, have
            arr = out.to_ndarray().mean(axis=0, dtype=np.float32)
            if first_time is None:
                first_time = float(out.pts * out.time_base) if out.pts is not None else t_begin
            elif out.pts is not None:
                at = int(round((float(out.pts * out.time_base) - first_time) * sample_rate))
                if at - have > tolerance:
                    chunks.append(np.zeros(at - have, np.float32))
                    gaps.append((have, at))
                    have = at
                elif have - at > tolerance:  # it repeats time already placed: the rest is new
                    arr = arr[have - at:]
            chunks.append(arr)
            have += arr.shape[0]

        def filled() -> bool:
            return want is not None and first_time is not None and \
                have - (t_begin - first_time) * sample_rate >= want

        # A damaged packet loses its audio (a gap, if it lay inside the window), not the file's:
        # the partial packet a seek in an MPEG program stream (.mpg) lands in failed every window
        # that did not start at 0. Up to MAX_BAD_PACKETS, as for frames.
        bad = BadPackets(path, AudioDecodeError)
        try:
            for packet in container.demux(stream):
                for frame in decode_packet(packet, bad):
                    for out in resampler.resample(frame):
                        place(out)
                if filled():
                    break
            else:
                for out in resampler.resample(None):
                    place(out)
        except av.FFmpegError as exc:  # demuxing (a broken container) or resampling
            raise AudioDecodeError(path, f"audio decoding failed ({av_reason(exc)})") from exc
    finally:
        container.close()

    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    first_time = t_begin if first_time is None else first_time
    offset = int(round((t_begin - first_time) * sample_rate))
    if offset >= 0:
        samples = samples[offset:]
    else:  # the stream starts after the requested time: pad the gap with silence
        samples = np.concatenate([np.zeros(-offset, np.float32), samples])
    decoded = samples.shape[0] if want is None else min(samples.shape[0], want)
    decoded_from = min(max(0, -offset), decoded)  # a stream starting after the window: none of it
    if want is not None:
        if samples.shape[0] >= want:
            samples = samples[:want]
        else:
            samples = np.concatenate([samples, np.zeros(want - samples.shape[0], np.float32)])
    gaps = [(max(a - offset, 0), min(b - offset, decoded)) for a, b in gaps]  # in the window
    return AudioWindow(torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)), sample_rate, has_audio=True,
                       decoded_samples=decoded, decoded_from=decoded_from, gaps=[g for g in gaps if g[0] < g[1]])


def container_origin(container) -> float:
    """Start time of a PyAV container in seconds (0 when the container does not say)."""
    return container.start_time / 1_000_000 if container.start_time is not None else 0.0


def _video_samples(container, sample_rate: int, start: float) -> int:
    """Number of samples covering the container from ``start`` to its end (for missing audio)."""
    duration = container.duration / 1_000_000 if container.duration else 0.0
    return max(0, int(round((duration - start) * sample_rate)))


# --------------------------------------------------------------------------------------------
# Mel filterbank and log-mel spectrogram
# --------------------------------------------------------------------------------------------


# The Slaney mel scale (librosa's default): linear below 1 kHz, 200/3 Hz per mel; logarithmic
# above, 27 mels for each factor of 6.4 in frequency
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(freq, mel_scale: str = "htk"):
    """Hertz to mel. ``"htk"``: 2595·log10(1 + f/700). ``"slaney"``: linear below 1 kHz
    (f / (200/3)), logarithmic above (15 + 27·ln(f/1000)/ln(6.4)). Works on floats and tensors."""
    f = torch.as_tensor(freq, dtype=torch.float64)
    if mel_scale == "htk":
        mel = 2595.0 * torch.log10(1.0 + f / 700.0)
    elif mel_scale == "slaney":
        mel = torch.where(f >= _MIN_LOG_HZ, _MIN_LOG_MEL + torch.log(f.clamp_min(_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP,
                          f / _F_SP)
    else:
        raise ValueError(f"mel_scale must be 'htk' or 'slaney', got {mel_scale!r}")
    return mel if isinstance(freq, torch.Tensor) else float(mel)


def mel_to_hz(mel, mel_scale: str = "htk"):
    """Inverse of :func:`hz_to_mel`."""
    m = torch.as_tensor(mel, dtype=torch.float64)
    if mel_scale == "htk":
        f = 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    elif mel_scale == "slaney":
        f = torch.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * torch.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), _F_SP * m)
    else:
        raise ValueError(f"mel_scale must be 'htk' or 'slaney', got {mel_scale!r}")
    return f if isinstance(mel, torch.Tensor) else float(f)


def mel_filterbank(
    n_freqs: int,
    n_mels: int,
    sample_rate: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    *,
    mel_scale: str = "htk",
    norm: str | None = None,
) -> torch.Tensor:
    """Triangular mel filterbank of shape ``(n_freqs, n_mels)``.

    ``n_freqs = n_fft // 2 + 1`` STFT bins spanning 0 … sample_rate/2. Filter ``m`` rises
    linearly from centre frequency ``c[m-1]`` to ``c[m]`` (value 1 at ``c[m]``) and falls to 0 at
    ``c[m+1]``, where the ``n_mels + 2`` edges ``c`` are equally spaced on the mel scale between
    ``f_min`` and ``f_max``. ``norm="slaney"`` scales each filter to unit area (2 / bandwidth).
    Apply as ``power_spec.transpose(-1, -2) @ fb``.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate/2, got {f_min}, {f_max}, {sample_rate}")
    bin_hz = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64)
    mel_edges = torch.linspace(hz_to_mel(f_min, mel_scale), hz_to_mel(f_max, mel_scale), n_mels + 2, dtype=torch.float64)
    hz_edges = mel_to_hz(mel_edges, mel_scale)
    lower, centre, upper = hz_edges[:-2], hz_edges[1:-1], hz_edges[2:]
    rising = (bin_hz[:, None] - lower) / (centre - lower)
    falling = (upper - bin_hz[:, None]) / (upper - centre)
    fb = torch.minimum(rising, falling).clamp_min(0.0)
    if norm == "slaney":
        fb = fb * (2.0 / (upper - lower))
    elif norm is not None:
        raise ValueError(f"norm must be None or 'slaney', got {norm!r}")
    return fb.to(torch.float32)


class LogMelSpectrogram(nn.Module):
    """Waveform ``(..., samples)`` → log-mel spectrogram ``(..., n_mels, frames)``.

    Power spectrum from ``torch.stft`` (Hann window, centred frames, reflect padding), projected
    on :func:`mel_filterbank`, then ``log(max(mel, floor))``. With ``center=True`` the number
    of frames is ``samples // hop_length + 1``. The window and filterbank are buffers, so the
    module moves to the GPU with the model and runs on batches of any leading shape.

    Defaults follow the paper's audio setup at 16 kHz: 80 mels, 25 ms window (400 samples, FFT
    512), 10 ms hop (160 samples) — ~100 frames per 1-s clip.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        *,
        n_mels: int = 80,
        n_fft: int = 512,
        win_length: int | None = 400,
        hop_length: int = 160,
        f_min: float = 0.0,
        f_max: float | None = None,
        floor: float = 1e-6,
        power: float = 2.0,
        mel_scale: str = "htk",
        center: bool = True,
    ):
        super().__init__()
        self.sample_rate = sample_rate
        self.n_mels = n_mels
        self.n_fft = n_fft
        self.win_length = win_length or n_fft
        self.hop_length = hop_length
        self.floor = floor
        self.power = power
        self.center = center
        if self.win_length > n_fft:
            raise ValueError(f"win_length ({self.win_length}) must be <= n_fft ({n_fft})")
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        fb = mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate, f_min, f_max, mel_scale=mel_scale)
        self.register_buffer("filterbank", fb, persistent=False)

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.hop_length + 1 if self.center else 1 + (num_samples - self.n_fft) // self.hop_length

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        # Computed in float32 whatever the module's dtype (model.half() / .bfloat16() convert the
        # window and filterbank too); the result comes back in the module's dtype.
        lead = waveform.shape[:-1]
        if self.center and waveform.shape[-1] <= self.n_fft // 2:
            raise ValueError(f"{waveform.shape[-1]} samples are too few for the spectrogram's "
                             f"reflect padding: it needs more than n_fft // 2 = {self.n_fft // 2}")
        x = waveform.reshape(-1, waveform.shape[-1]).float()
        spec = torch.stft(
            x,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window.float(),
            center=self.center,
            pad_mode="reflect",
            return_complex=True,
        )
        power = spec.abs().pow(self.power)  # (B, n_freqs, frames)
        mel = torch.matmul(power.transpose(-1, -2), self.filterbank.float()).transpose(-1, -2)  # (B, n_mels, frames)
        logmel = torch.log(mel.clamp_min(self.floor)).to(self.filterbank.dtype)
        return logmel.reshape(*lead, self.n_mels, logmel.shape[-1])

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_mels={self.n_mels}, n_fft={self.n_fft}, "
                f"win_length={self.win_length}, hop_length={self.hop_length}, floor={self.floor}")


class SpecAugment(nn.Module):
    """SpecAugment-style masking of ``(..., n_mels, frames)`` spectrograms (training mode only).

    Each spectrogram (every leading index independently) gets ``num_freq_masks`` bands of
    ``f ~ U{0..freq_mask_param}`` consecutive mel bins and ``num_time_masks`` spans of
    ``t ~ U{0..time_mask_param}`` frames set to ``mask_value`` (``"mean"``: the spectrogram's own
    mean, a neutral value for log-mels). Identity in eval mode.
    """

    def __init__(self, freq_mask_param: int = 16, time_mask_param: int = 20, num_freq_masks: int = 2,
                 num_time_masks: int = 2, mask_value: float | str = "mean"):
        super().__init__()
        self.freq_mask_param = freq_mask_param
        self.time_mask_param = time_mask_param
        self.num_freq_masks = num_freq_masks
        self.num_time_masks = num_time_masks
        self.mask_value = mask_value

    def _masks(self, count: int, size: int, max_width: int, n: int, device) -> torch.Tensor:
        """Boolean ``(n, size)``: union of ``count`` random spans per row."""
        keep = torch.zeros(n, size, dtype=torch.bool, device=device)
        idx = torch.arange(size, device=device)
        for _ in range(count):
            width = torch.randint(0, min(max_width, size) + 1, (n, 1), device=device)
            begin = (torch.rand(n, 1, device=device) * (size - width + 1)).floor().long()
            keep |= (idx >= begin) & (idx < begin + width)
        return keep

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return spec
        n_mels, frames = spec.shape[-2:]
        x = spec.reshape(-1, n_mels, frames)
        n = x.shape[0]
        freq = self._masks(self.num_freq_masks, n_mels, self.freq_mask_param, n, x.device)
        time = self._masks(self.num_time_masks, frames, self.time_mask_param, n, x.device)
        mask = freq[:, :, None] | time[:, None, :]
        if self.mask_value == "mean":
            value = x.mean(dim=(-2, -1), keepdim=True).expand_as(x)
        else:
            value = torch.full_like(x, float(self.mask_value))
        return torch.where(mask, value, x).reshape(spec.shape)

    def extra_repr(self) -> str:
        return (f"freq_mask_param={self.freq_mask_param}, time_mask_param={self.time_mask_param}, "
                f"num_freq_masks={self.num_freq_masks}, num_time_masks={self.num_time_masks}")
