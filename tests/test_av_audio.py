"""Audio pipeline of effvid.av: decoding, mel filterbank, log-mel, SpecAugment."""

import math
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from effvid.av import (AudioDecodeError, LogMelSpectrogram, SpecAugment, hz_to_mel, mel_filterbank, mel_to_hz,
                       read_audio)
from effvid.data.video import MAX_BAD_PACKETS, VideoDecodeError, write_video

from conftest import damage_packets

SR = 16000


def tone(freq, seconds, rate=SR, amp=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("av_audio")
    frames = np.zeros((24, 32, 32, 3), np.uint8)  # 3 s at 8 fps
    audio = np.concatenate([tone(440, 1), tone(1000, 1), tone(2000, 1)])
    with_audio = write_video(d / "tones.mp4", frames, fps=8, audio=audio, audio_rate=SR)
    silent = write_video(d / "silent.mp4", frames, fps=8)
    corrupt = d / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x01garbage" * 100)
    # stereo file: 440 Hz left, 1000 Hz right, at 22.05 kHz (tests mono mix + resampling)
    stereo = d / "stereo.mkv"
    c = av.open(str(stereo), "w")
    s = c.add_stream("pcm_s16le", rate=22050)
    s.layout = "stereo"
    n = 22050 * 2
    both = np.stack([tone(440, 2, 22050), tone(1000, 2, 22050)])
    pcm = (both * 32767).astype(np.int16).T.reshape(1, -1)  # packed s16
    fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm), format="s16", layout="stereo")
    fr.sample_rate, fr.pts = 22050, 0
    for p in s.encode(fr):
        c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
    assert n == both.shape[1]
    return {"tones": with_audio, "silent": silent, "corrupt": corrupt, "stereo": stereo}


def dominant_hz(x, rate=SR):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * rate / len(x)


# -- decoding -----------------------------------------------------------------------------------


def test_read_audio_window_and_resample(media):
    w = read_audio(media["tones"], start=1.0, duration=1.0, sample_rate=SR)
    assert w.has_audio and w.waveform.dtype == torch.float32 and w.waveform.shape == (SR,)
    assert abs(dominant_hz(w.waveform.numpy()) - 1000) < 2
    w8 = read_audio(media["tones"], start=2.0, duration=0.5, sample_rate=8000)
    assert w8.waveform.shape == (4000,)
    assert abs(dominant_hz(w8.waveform.numpy(), 8000) - 2000) < 4
    full = read_audio(media["tones"], sample_rate=SR)
    assert abs(full.waveform.shape[0] - 3 * SR) < 1100  # to the end of the stream (AAC frame granularity)
    padded = read_audio(media["tones"], start=2.5, duration=1.0)  # past the end: zero padded
    # (the encoder rounds the stream up to whole 1024-sample AAC frames, so it ends by ~3.07 s)
    assert padded.waveform.shape == (SR,) and padded.waveform[SR // 2 + 2000 :].abs().max() == 0


def test_read_audio_mixes_stereo_to_mono(media):
    w = read_audio(media["stereo"], start=0.5, duration=1.0, sample_rate=SR).waveform.numpy()
    spec = np.abs(np.fft.rfft(w))  # 1 Hz bins
    assert spec[440] > 0.2 * spec.max() and spec[1000] > 0.2 * spec.max()
    assert abs(spec[440] / spec[1000] - 1) < 0.1  # equal-weight mix
    assert np.abs(w).max() < 0.6  # a mean, not a sum, of the two channels


def test_missing_audio_error_and_mask(media):
    with pytest.raises(AudioDecodeError, match="no audio stream") as err:
        read_audio(media["silent"])
    assert err.value.path == str(media["silent"]) and isinstance(err.value, VideoDecodeError)
    assert str(err.value) == f"cannot read {str(media['silent'])!r}: file has no audio stream " \
                             "(pass missing_audio='mask' to get a masked zero waveform)"
    for bad in (dict(duration=-1.0), dict(sample_rate=0)):
        with pytest.raises(ValueError, match="must be"):
            read_audio(media["silent"], **bad)
    w = read_audio(media["silent"], start=0.5, duration=1.0, missing_audio="mask")
    assert not w.has_audio and w.waveform.shape == (SR,) and w.waveform.abs().sum() == 0


@pytest.mark.parametrize("kwargs, message", [
    # each failed late and unnamed ("cannot convert float NaN to integer", an OverflowError, a
    # TypeError) or was taken (a NaN start read from 0, a rate of 16000.5 Hz)
    (dict(start=math.nan), "start must be a number of seconds >= 0, got nan"),
    (dict(start=math.inf), "start must be a number of seconds >= 0, got inf"),
    (dict(start=-0.5), "start must be a number of seconds >= 0, got -0.5"),
    (dict(start="1.0"), "start must be a number of seconds >= 0, got '1.0'"),
    (dict(duration=math.inf), "duration must be a number of seconds >= 0, got inf"),
    (dict(duration=math.nan), "duration must be a number of seconds >= 0, got nan"),
    (dict(duration=-1.0), "duration must be a number of seconds >= 0, got -1.0"),
    (dict(sample_rate="16000"), "sample_rate must be a positive integer, got '16000'"),
    (dict(sample_rate=16000.5), "sample_rate must be a positive integer, got 16000.5"),
    (dict(sample_rate=0), "sample_rate must be a positive integer, got 0"),
    (dict(sample_rate=True), "sample_rate must be a positive integer, got True"),
])
@pytest.mark.parametrize("file", ["tones", "silent"])
def test_read_audio_names_a_bad_argument(media, kwargs, message, file):
    # the same checks as LongVideoSampler's, before the file is opened (with or without audio)
    with pytest.raises(ValueError) as err:
        read_audio(media[file], missing_audio="mask", **kwargs)
    assert str(err.value) == message


def test_read_audio_takes_numpy_numbers_and_a_zero_duration(media):
    w = read_audio(media["tones"], start=np.float32(1.0), duration=np.float64(0.5), sample_rate=np.int64(8000))
    assert w.waveform.shape == (4000,) and abs(dominant_hz(w.waveform.numpy(), 8000) - 1000) < 4
    assert read_audio(media["tones"], start=1, duration=0).waveform.shape == (0,)


def test_bad_files(media, tmp_path):
    with pytest.raises(AudioDecodeError) as err:
        read_audio(media["corrupt"])
    assert str(media["corrupt"]) in str(err.value)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty"):
        read_audio(empty)
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        read_audio(tmp_path / "nope.mp4")
    with pytest.raises(ValueError):
        read_audio(media["tones"], missing_audio="ignore")


def write_flac(path, wave, rate=SR):
    """``wave`` as FLAC in Matroska: lossless, and each packet decodes on its own (so a damaged
    one takes no other's audio with it, as an AAC packet's overlap would). Returns the packets'
    length in samples."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("flac", rate=rate)
        s.layout, s.format = "mono", "s16"
        s.codec_context.open()
        step = s.codec_context.frame_size
        pcm = (wave * 32767).round().astype(np.int16)[None]
        for pos in range(0, pcm.shape[1], step):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, pos:pos + step]), format="s16", layout="mono")
            f.sample_rate, f.pts, f.time_base = rate, pos, Fraction(1, rate)
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return step


def test_damaged_audio_packets_lose_only_their_own_audio(tmp_path):
    src = tmp_path / "tone.mkv"
    step = write_flac(src, tone(440, 5))
    bad = damage_packets(src, tmp_path / "damaged.mkv", [2, 5], "audio")
    for start, duration in ((0.0, None), (0.1, 0.3)):
        clean = read_audio(src, start=start, duration=duration)
        got = read_audio(bad, start=start, duration=duration)
        n, first = clean.decoded_samples, int(start * SR)
        lost = [(k * step - first, min((k + 1) * step - first, n)) for k in (2, 5)]  # in the window
        assert got.gaps == lost and got.decoded_samples == n
        assert got.waveform.shape == clean.waveform.shape == (n,)
        kept = torch.ones(n, dtype=torch.bool)
        for a, b in lost:
            kept[a:b] = False
        assert torch.equal(got.waveform[kept], clean.waveform[kept])
        assert not got.waveform[~kept].any() and clean.waveform[~kept].abs().max() > 0.4
    over = damage_packets(src, tmp_path / "over.mkv", range(MAX_BAD_PACKETS + 1), "audio")
    with pytest.raises(AudioDecodeError, match=f"more than {MAX_BAD_PACKETS} damaged audio packets") as err:
        read_audio(over)
    assert err.value.path == str(over) and str(over) in str(err.value)


# -- mel filterbank -------------------------------------------------------------------------------


def test_mel_scale_formula():
    for f in (0.0, 440.0, 700.0, 1000.0, 4000.0, 8000.0):
        assert hz_to_mel(f) == pytest.approx(2595 * math.log10(1 + f / 700))
        assert mel_to_hz(hz_to_mel(f)) == pytest.approx(f, abs=1e-6)
    assert hz_to_mel(1000.0) == pytest.approx(1000.0, abs=0.05)  # HTK: 1 kHz ≈ 1000 mel
    assert hz_to_mel(1000.0, "slaney") == pytest.approx(15.0)
    assert hz_to_mel(6400.0, "slaney") == pytest.approx(42.0)
    assert mel_to_hz(hz_to_mel(3000.0, "slaney"), "slaney") == pytest.approx(3000.0)


def test_mel_filterbank_against_formula():
    n_fft, n_mels = 512, 40
    fb = mel_filterbank(n_fft // 2 + 1, n_mels, SR)
    assert fb.shape == (257, n_mels)
    edges = [mel_to_hz(m) for m in np.linspace(0, hz_to_mel(SR / 2), n_mels + 2)]
    bin_hz = SR / n_fft
    for m in (0, 5, 17, 39):
        lo, c, hi = edges[m], edges[m + 1], edges[m + 2]
        # the filter peaks at the STFT bin nearest its centre frequency ...
        assert int(fb[:, m].argmax()) == pytest.approx(c / bin_hz, abs=0.5 + 1e-6)
        # ... and equals the triangle formula at every bin
        for k in range(257):
            f = k * bin_hz
            expect = max(0.0, min((f - lo) / (c - lo), (hi - f) / (hi - c)))
            assert float(fb[k, m]) == pytest.approx(expect, abs=1e-5)
    # a bin at exactly a known frequency: 1000 Hz is bin 32; the filters covering it sum to 1
    assert float(fb[32].sum()) == pytest.approx(1.0, abs=1e-5)
    assert (fb >= 0).all() and float(fb.max()) <= 1.0
    slaney = mel_filterbank(257, n_mels, SR, norm="slaney")
    assert torch.allclose(slaney[:, 3] / slaney[:, 3].max(), mel_filterbank(257, n_mels, SR)[:, 3] / fb[:, 3].max(), atol=1e-6)


def test_logmel_tone_lands_in_right_bin():
    lm = LogMelSpectrogram(SR, n_mels=64)
    x = torch.from_numpy(tone(440, 1.0))
    spec = lm(x)
    assert spec.shape == (64, SR // 160 + 1) == (64, lm.num_frames(SR))
    centres = [mel_to_hz(m) for m in np.linspace(0, hz_to_mel(SR / 2), 64 + 2)][1:-1]
    expected = int(np.argmin([abs(c - 440) for c in centres]))
    energy = spec[:, 5:-5].mean(dim=1)
    assert int(energy.argmax()) == expected
    # batched over any leading dims gives the same per-item result
    batch = torch.stack([x, torch.from_numpy(tone(2000, 1.0))]).view(2, 1, -1)
    out = lm(batch)
    assert out.shape == (2, 1, 64, 101) and torch.allclose(out[0, 0], spec, atol=1e-4)
    assert int(out[1, 0, :, 5:-5].mean(1).argmax()) == int(np.argmin([abs(c - 2000) for c in centres]))


def test_logmel_floor_and_config():
    lm = LogMelSpectrogram(SR, n_mels=80, n_fft=1024, win_length=1024, hop_length=320, floor=1e-4)
    out = lm(torch.zeros(3, 8000))
    assert out.shape == (3, 80, 8000 // 320 + 1)
    assert torch.allclose(out, torch.full_like(out, math.log(1e-4)))
    with pytest.raises(ValueError):
        LogMelSpectrogram(SR, n_fft=256, win_length=400)
    with pytest.raises(ValueError, match="256 samples are too few .* more than n_fft // 2 = 256"):
        LogMelSpectrogram(SR, n_fft=512)(torch.zeros(2, 256))
    assert LogMelSpectrogram(SR, n_fft=512)(torch.zeros(257)).shape[-1] == 257 // 160 + 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_logmel_in_a_half_precision_model(dtype):
    # model.half() / .bfloat16() also converts the window and filterbank buffers; the
    # spectrogram is still computed in float32 and returned in the module's dtype
    wave = torch.randn(2, 4000)
    lm = LogMelSpectrogram(SR, n_mels=40)
    want = lm(wave)
    got = lm.to(dtype)(wave.to(dtype))
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want, atol=0.1, rtol=0.02)


def test_spec_augment_masks():
    torch.manual_seed(0)
    aug = SpecAugment(freq_mask_param=10, time_mask_param=15, num_freq_masks=1, num_time_masks=1, mask_value=-100.0)
    spec = torch.randn(4, 2, 80, 100)
    aug.eval()
    assert torch.equal(aug(spec), spec)
    aug.train()
    out = aug(spec)
    assert out.shape == spec.shape
    masked = out == -100.0
    for item in masked.view(-1, 80, 100):
        rows = item.all(dim=1).nonzero().flatten()  # masked mel bands span all frames
        cols = item.all(dim=0).nonzero().flatten()  # masked time spans span all bins
        assert len(rows) <= 10 and len(cols) <= 15
        if len(rows):
            assert rows.max() - rows.min() + 1 == len(rows)  # one contiguous band
        if len(cols):
            assert cols.max() - cols.min() + 1 == len(cols)
        # nothing else is masked
        expect = item.all(dim=1)[:, None] | item.all(dim=0)[None, :]
        assert torch.equal(item, expect)
    assert masked.any()
    mean_aug = SpecAugment(freq_mask_param=80, time_mask_param=0, num_freq_masks=1, num_time_masks=0).train()
    x = torch.randn(1, 80, 50) + 3.0
    y = mean_aug(x)
    changed = (y != x).any(dim=-1)
    assert torch.allclose(y[0][changed[0]], x.mean().expand(int(changed.sum()), 50))
