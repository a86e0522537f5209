"""Long-video sampler of effvid.av: clip/audio alignment, padding masks, bad files."""

import math
import random
from fractions import Fraction

import numpy as np
import pytest
import torch

from effvid.av import AudioDecodeError, LongVideoSampler, collate_av_sequences, frames_to_clips
from effvid.data.video import write_video

SR = 16000
FPS = 16
TONES = [440.0, 622.0, 880.0, 1245.0, 1760.0]  # one per second
LEVELS = [20, 70, 120, 170, 220]  # frame brightness per second


def signal(seconds):
    t = np.arange(SR) / SR
    return np.concatenate([0.5 * np.sin(2 * np.pi * TONES[i] * t) for i in range(seconds)]).astype(np.float32)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("av_seq")
    n = len(TONES)
    frames = np.stack([np.full((32, 48, 3), LEVELS[i // FPS], np.uint8) for i in range(n * FPS)])
    five = write_video(d / "five.mp4", frames, fps=FPS, audio=signal(n), audio_rate=SR)
    silent = write_video(d / "silent.mp4", frames[: 2 * FPS], fps=FPS)
    bad = d / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 50)
    return {"five": five, "silent": silent, "bad": bad, "signal": signal(n)}


def dominant_hz(x):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * SR / len(x)


def best_lag(decoded, reference, max_lag=200):
    """Lag (samples) maximising the correlation of ``decoded`` with ``reference``."""
    n = len(decoded) - 2 * max_lag
    core = decoded[max_lag : max_lag + n]
    scores = [np.dot(core, reference[max_lag + lag : max_lag + lag + n]) for lag in range(-max_lag, max_lag + 1)]
    return int(np.argmax(scores)) - max_lag


@pytest.mark.parametrize("start", [0.0, 1.0, 1.25])
def test_audio_and_frames_aligned(videos, start):
    sampler = LongVideoSampler(num_clips=3, frames_per_clip=8, sample_rate=SR, start=start)
    seq = sampler(videos["five"])
    assert seq.frames.shape == (3, 8, 32, 48, 3) and seq.audio.shape == (3, SR)
    assert seq.mask.all() and seq.audio_mask.all() and seq.has_audio
    assert torch.allclose(seq.clip_starts, torch.tensor([start, start + 1, start + 2], dtype=torch.float64))
    for k in range(3):
        for j in range(8):  # frame j of clip k is the one shown at start + k + j/8
            second = int(start + k + j / 8)
            assert abs(int(seq.frames[k, j].float().mean()) - LEVELS[second]) <= 3, (k, j)
        if start == int(start):  # whole-second clips hold one tone, also at their edges
            clip = seq.audio[k].numpy()
            expect = TONES[int(start) + k]
            assert abs(dominant_hz(clip) - expect) < 2
            assert abs(dominant_hz(clip[:800]) - expect) < 25 and abs(dominant_hz(clip[-800:]) - expect) < 25
    # sample-accurate: the clips, concatenated, are the source signal from `start` on
    decoded = seq.audio.reshape(-1).numpy()
    reference = videos["signal"][int(start * SR) : int(start * SR) + len(decoded)]
    assert best_lag(decoded, reference) == 0
    assert np.abs(decoded[1000:-1000] - reference[1000:-1000]).mean() < 0.02


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_gives_upright_frames(tmp_path, rotation):
    from effvid.data import index_pattern_frames, read_frames

    src = index_pattern_frames(2 * FPS, 32, 48)  # 2 s, every frame distinct
    path = write_video(tmp_path / f"rot{rotation}.mp4", src, fps=FPS, audio=signal(2), audio_rate=SR,
                       rotation=rotation, pix_fmt="yuv444p")
    seq = LongVideoSampler(num_clips=2, frames_per_clip=4, sample_rate=SR)(path)
    upright = (48, 32) if rotation in (90, -90) else (32, 48)
    assert seq.frames.shape == (2, 4, *upright, 3)
    # the same frames read_frames returns (which applies the rotation): indices 0, 4, 8, ...
    expected = read_frames(path, [4 * i for i in range(8)])
    assert torch.equal(seq.frames.reshape(8, *upright, 3), expected)
    # and they are the source turned by the display rotation (counter-clockwise)
    turned = np.rot90(src[4], k=rotation // 90, axes=(0, 1))
    assert np.abs(seq.frames[0, 1].numpy().astype(int) - turned).mean() < 4
    sized = LongVideoSampler(num_clips=1, frames_per_clip=2, sample_rate=SR, size=(24, 16))(path)
    assert sized.frames.shape == (1, 2, 24, 16, 3)


def test_short_video_padded_with_mask(videos):
    sampler = LongVideoSampler(num_clips=8, frames_per_clip=4, sample_rate=SR)
    seq = sampler(videos["five"], start=2.0)
    assert seq.mask.tolist() == [True, True, True, False, False, False, False, False]
    assert seq.num_valid == 3 and seq.audio_mask.tolist() == seq.mask.tolist()
    assert seq.frames[3:].abs().sum() == 0 and seq.audio[3:].abs().sum() == 0
    assert abs(int(seq.frames[2].float().mean()) - LEVELS[4]) <= 3
    assert abs(dominant_hz(seq.audio[2].numpy()) - TONES[4]) < 2
    # random start on a video shorter than the sequence starts at 0
    seq = sampler(videos["five"], start="random")
    assert float(seq.clip_starts[0]) == 0.0 and seq.num_valid == 5


def test_random_start_stays_inside(videos):
    sampler = LongVideoSampler(num_clips=2, frames_per_clip=2, sample_rate=SR, start="random")
    starts = [float(sampler(videos["five"], rng=random.Random(i)).clip_starts[0]) for i in range(4)]
    assert all(0.0 <= s <= 3.0 for s in starts) and len(set(starts)) > 1
    for i in range(2):
        seq = sampler(videos["five"], rng=random.Random(i))
        assert seq.mask.all()


def test_missing_audio_and_bad_files(videos, tmp_path):
    strict = LongVideoSampler(num_clips=4, frames_per_clip=2, sample_rate=SR)
    with pytest.raises(AudioDecodeError, match="no audio stream") as err:
        strict(videos["silent"])
    assert err.value.path == str(videos["silent"])
    lenient = LongVideoSampler(num_clips=4, frames_per_clip=2, sample_rate=SR, missing_audio="mask")
    seq = lenient(videos["silent"])
    assert not seq.has_audio
    assert seq.mask.tolist() == [True, True, False, False] and not seq.audio_mask.any()
    assert seq.audio.abs().sum() == 0
    with pytest.raises(AudioDecodeError) as err:
        strict(videos["bad"])
    assert str(videos["bad"]) in str(err.value)
    with pytest.raises(FileNotFoundError):
        strict(tmp_path / "missing.mp4")
    with pytest.raises(AudioDecodeError, match="past the end"):
        strict(videos["five"], start=7.0)


def test_collate_and_clip_layout(videos):
    sampler = LongVideoSampler(num_clips=6, frames_per_clip=4, sample_rate=8000)
    batch = collate_av_sequences([sampler(videos["five"]), sampler(videos["five"], start=3.0)])
    assert batch["frames"].shape == (2, 6, 4, 32, 48, 3) and batch["audio"].shape == (2, 6, 8000)
    assert batch["mask"].sum(1).tolist() == [5, 2]
    clips = frames_to_clips(batch["frames"])
    assert clips.shape == (2, 6, 3, 4, 32, 48) and clips.dtype == torch.float32
    level = LEVELS[0] / 255
    assert clips[0, 0, 0].mean().item() == pytest.approx((level - 0.485) / 0.229, abs=0.03)


def test_missing_audio_is_checked_when_the_sampler_is_made():
    # it used to be refused only when the first file was read
    with pytest.raises(ValueError) as err:
        LongVideoSampler(missing_audio="maks")
    assert str(err.value) == "missing_audio must be one of ('error', 'mask'), got 'maks'"


@pytest.mark.parametrize("kwargs, message", [
    # each was taken, then every video was blamed ("video decoding failed") or a bare
    # ZeroDivisionError came when a file was read
    (dict(size=(0, 10)), "size must be two positive ints (height, width), got (0, 10)"),
    (dict(size=(-3, 10)), "size must be two positive ints (height, width), got (-3, 10)"),
    (dict(size=(16,)), "size must be two positive ints (height, width), got (16,)"),
    (dict(sample_rate=0), "sample_rate must be a positive integer, got 0"),
    (dict(sample_rate=-16000), "sample_rate must be a positive integer, got -16000"),
    (dict(num_clips=0), "num_clips must be a positive integer, got 0"),
    (dict(frames_per_clip=2.5), "frames_per_clip must be a positive integer, got 2.5"),
    (dict(clip_seconds=0), "clip_seconds must be a positive number of seconds, got 0"),
    (dict(clip_seconds=1e-5, sample_rate=16000), "clip_seconds holds no audio sample at sample_rate=16000, got 1e-05"),
    (dict(start=-1.5), "start must be seconds >= 0 or 'random', got -1.5"),
    (dict(start="rnd"), "start must be seconds >= 0 or 'random', got 'rnd'"),
])
def test_bad_sampler_arguments_are_named_when_the_sampler_is_made(kwargs, message):
    with pytest.raises(ValueError) as err:
        LongVideoSampler(**kwargs)
    assert str(err.value) == message


def test_a_bad_start_given_to_the_call_is_named(videos):
    with pytest.raises(ValueError) as err:
        LongVideoSampler(num_clips=2, frames_per_clip=4, sample_rate=SR)(videos["five"], start=-2)
    assert str(err.value) == "start must be seconds >= 0 or 'random', got -2"


def test_collate_names_the_samples_that_differ_and_the_remedy(videos, tmp_path):
    small = write_video(tmp_path / "small.mp4", np.full((2 * FPS, 16, 24, 3), 90, np.uint8), fps=FPS,
                        audio=signal(2), audio_rate=SR)
    sampler = LongVideoSampler(num_clips=2, frames_per_clip=4, sample_rate=SR)
    big, little = sampler(videos["five"]), sampler(small)
    with pytest.raises(ValueError) as err:  # was torch's "stack expects each tensor to be equal size"
        collate_av_sequences([big, big, little])
    assert str(err.value) == (
        f"cannot batch AV sequences whose frames differ in shape: sample 0 ({videos['five']}) has "
        f"(2, 4, 32, 48, 3), sample 2 ({small}) has (2, 4, 16, 24, 3); pass size=(height, width) to "
        "LongVideoSampler to decode every video to one size")
    resized = LongVideoSampler(num_clips=2, frames_per_clip=4, sample_rate=SR, size=(16, 24))
    assert collate_av_sequences([resized(videos["five"]), little])["frames"].shape == (2, 2, 4, 16, 24, 3)
    longer = LongVideoSampler(num_clips=3, frames_per_clip=4, sample_rate=SR)(videos["five"])
    with pytest.raises(ValueError, match=r"sample 1 .* has \(3, 4, 32, 48, 3\); sample them with the same "
                                         r"LongVideoSampler settings"):
        collate_av_sequences([big, longer])
    with pytest.raises(ValueError, match="empty batch"):
        collate_av_sequences([])


def test_mpeg_ts_window_starts_at_the_right_frame(tmp_path):
    # In MPEG-TS a seek lands after its target (by up to a GOP); the sampler seeks further back
    # instead of taking the late frame for the first targets of the window.
    frames = np.stack([np.full((16, 16, 3), 2 * i, np.uint8) for i in range(6 * FPS)])
    ts = write_video(tmp_path / "gop8.ts", frames, fps=FPS, gop=8)
    sampler = LongVideoSampler(num_clips=1, frames_per_clip=8, sample_rate=SR, missing_audio="mask")
    for start in (0.0, 2.0, 4.4):
        seq = sampler(ts, start=start)
        got = np.array([float(seq.frames[0, j].float().mean()) / 2 for j in range(8)])  # frame index
        want = np.array([int(start * FPS + 2 * j + 1e-6) for j in range(8)])
        assert np.abs(got - want).max() < 0.6, (start, got.round(1), want)


def test_clip_length_that_is_not_a_whole_number_of_samples(videos):
    # 0.75 s at 11025 Hz is 8268.75 samples: each clip gets round() of it, and the window read
    # holds exactly that many per clip (it used to fail to reshape)
    seq = LongVideoSampler(num_clips=3, clip_seconds=0.75, frames_per_clip=4, sample_rate=11025)(videos["five"])
    assert seq.audio.shape == (3, 8269) and seq.mask.all()
    assert 600 < dominant_hz(seq.audio[2].numpy()) * 11025 / SR < 640  # 1.5-2.25 s: the 622 Hz tone


@pytest.mark.parametrize("ext,codec,src_fps", [
    ("mkv", "libx264", 16), ("webm", "libvpx-vp9", 16),  # frame 1 stored at 62/63 ms, not 62.5
    ("mkv", "libx264", 30), ("webm", "libvpx-vp9", 25),  # other source rates sampled at 16 fps
    ("mp4", "libx264", 30),
])
def test_frames_at_millisecond_timestamps(tmp_path, ext, codec, src_fps):
    # Matroska and WebM round frame times to milliseconds; frame j of clip k must still be the
    # one displayed at k + j/16 s (it used to take the previous frame whenever the stored time
    # was rounded up: [0, 0, 2, 2, 4, 4, ...] at 16 fps).
    import av

    from effvid.data import decode_frame_index, index_pattern_frames

    n = 2 * src_fps
    path = write_video(tmp_path / f"idx{src_fps}.{ext}", index_pattern_frames(n, 32, 48, marker=False),
                       fps=src_fps, codec=codec)
    if ext != "mp4":
        with av.open(str(path)) as c:
            assert c.streams.video[0].time_base == Fraction(1, 1000)  # the case under test
    seq = LongVideoSampler(num_clips=2, frames_per_clip=FPS, sample_rate=SR, missing_audio="mask")(path)
    assert seq.mask.tolist() == [True, True]
    got = [decode_frame_index(seq.frames[k, j].numpy(), n) for k in range(2) for j in range(FPS)]
    want = [int((k + j / FPS) * src_fps + 1e-6) for k in range(2) for j in range(FPS)]
    assert got == want


@pytest.mark.parametrize("name,codec", [("mpeg4.avi", "mpeg4"), ("h264.avi", "libx264"), ("h264.mp4", "libx264")])
@pytest.mark.parametrize("start", [0.0, 0.5])
def test_25_fps_frames_are_the_ones_on_screen_whatever_the_time_base(tmp_path, name, codec, start):
    # An AVI's time base is one frame (1/25 s): the tolerance was half a tick, 20 ms, and the
    # sampler took the nearest frame, up to half a frame early ([0, 2, 3, 5, ...] for
    # [0, 1, 3, 4, ...]); the mp4 (time base 1/12800) was right. UCF101 and HMDB51 are AVIs.
    import av

    from effvid.data import decode_frame_index, index_pattern_frames

    n = 2 * 25  # index_pattern_frames tells up to ~50 frames apart through a lossy codec
    path = write_video(tmp_path / name, index_pattern_frames(n, 32, 48), fps=25, codec=codec)
    with av.open(str(path)) as c:  # the case under test: a time base of one frame, or finer
        assert c.streams.video[0].time_base == (Fraction(1, 25) if name.endswith(".avi") else Fraction(1, 12800))
    clips = 2 if start == 0.0 else 1  # (and from 0.5 s, after a seek)
    sampler = LongVideoSampler(num_clips=clips, frames_per_clip=FPS, sample_rate=SR, missing_audio="mask")
    seq = sampler(path, start=start)
    assert seq.mask.all()
    got = [[decode_frame_index(seq.frames[k, j].numpy(), n) for j in range(FPS)] for k in range(clips)]
    # frame i is shown from i/25 s: the one on screen at start + k + j/16 is floor(25 (start + k + j/16))
    want = [[math.floor((start + k + j / FPS) * 25 + 1e-6) for j in range(FPS)] for k in range(clips)]
    if start == 0.0:
        assert want[0] == [0, 1, 3, 4, 6, 7, 9, 10, 12, 14, 15, 17, 18, 20, 21, 23]  # the report's
    assert got == want


def test_a_damaged_packet_loses_only_its_own_frame(tmp_path, index_videos):
    # the sampler failed the file at its first damaged packet ("video decoding failed"); now
    # the frame before a lost one is shown until the next
    from conftest import N_FRAMES, damage_packets
    from effvid.data import decode_frame_index

    path = damage_packets(index_videos["mov_mjpeg"], tmp_path / "damaged.mov", [3, 10])
    sampler = LongVideoSampler(num_clips=3, frames_per_clip=8, sample_rate=SR, missing_audio="mask")
    seq = sampler(path)  # 8 fps: every frame
    assert seq.mask.all()
    got = [decode_frame_index(f.numpy(), N_FRAMES) for f in seq.frames.flatten(0, 1)]
    assert got == [i - (i in (3, 10)) for i in range(N_FRAMES)]


def test_truncated_file_masks_clips_past_its_last_frame(tmp_path):
    # The header of a cut file promises 3 s; the clips whose frames did not decode are masked
    # (they used to be valid, the last decoded frame repeated), and so is their audio.
    import av

    from effvid.data import decode_frame_index, index_pattern_frames

    n = 3 * FPS
    full = write_video(tmp_path / "full.mkv", index_pattern_frames(n, 32, 48, marker=False), fps=FPS,
                       audio=signal(3), audio_rate=SR)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.55)])
    with av.open(str(cut)) as c:
        assert c.duration / 1e6 > 3.0  # the header still says 3 s
        decoded = sum(1 for _ in c.decode(c.streams.video[0]))
    assert FPS + 1 < decoded < 2 * FPS  # clip 0 whole, clip 1 partly decoded
    sampler = LongVideoSampler(num_clips=3, frames_per_clip=8, sample_rate=SR)
    seq = sampler(cut)
    assert seq.mask.tolist() == [True, False, False] and seq.audio_mask.tolist() == [True, False, False]
    assert [decode_frame_index(f.numpy(), n) for f in seq.frames[0]] == list(range(0, FPS, 2))
    assert seq.frames[1:].abs().sum() == 0 and seq.audio[1:].abs().sum() == 0
    # a first clip that is only partly decoded stays valid, as for a video shorter than a clip:
    # its frames up to the last decoded one, then that frame held
    seq = sampler(cut, start=1.0)
    assert seq.mask.tolist() == [True, False, False]
    got = [decode_frame_index(f.numpy(), n) for f in seq.frames[0]]
    assert got == [min(FPS + 2 * j, decoded - 1) for j in range(8)]
    with pytest.raises(AudioDecodeError, match="past the last decodable frame"):
        sampler(cut, start=2.0)
    # a random start is drawn over what the header promises (3 s); one past the last frame
    # failed the sample, and is now drawn again inside the frames that decode (just over 1 s)
    sampler = LongVideoSampler(num_clips=1, frames_per_clip=8, sample_rate=SR, start="random")
    starts = []
    for seed in range(24):
        seq = sampler(cut, rng=random.Random(seed))
        starts.append(float(seq.clip_starts[0]))
        assert seq.mask.tolist() == [True]
        first = decode_frame_index(seq.frames[0, 0].numpy(), n)
        assert first == math.floor(starts[-1] * FPS + 1e-6) and first < decoded
    # the first draws (over 3 s - 1 s of header) of these seeds: some past the decoded frames
    assert sum(random.Random(seed).uniform(0.0, 2.0) > decoded / FPS for seed in range(24)) >= 3
    assert max(starts) < decoded / FPS  # all of them inside


def test_audio_shorter_than_video_is_masked_where_it_ends(tmp_path):
    # 6 s of video, 2.5 s of audio: clips 0-1 have audio; clip 2 only half (masked), clips 3-5
    # none (they used to be valid, zero-filled silence).
    frames = np.stack([np.full((32, 48, 3), LEVELS[i // FPS % 5], np.uint8) for i in range(6 * FPS)])
    path = write_video(tmp_path / "short_audio.mp4", frames, fps=FPS, audio=signal(3)[: int(2.5 * SR)],
                       audio_rate=SR)
    seq = LongVideoSampler(num_clips=8, frames_per_clip=4, sample_rate=SR)(path)
    assert seq.mask.tolist() == [True] * 6 + [False] * 2
    assert seq.audio_mask.tolist() == [True, True] + [False] * 6
    assert abs(dominant_hz(seq.audio[1].numpy()) - TONES[1]) < 2
    assert seq.audio[3:].abs().sum() == 0
    # read_audio says where the decoded audio ends (the AAC decoder may add a short tail)
    from effvid.av import read_audio

    window = read_audio(path, start=1.0, duration=3.0, sample_rate=SR)
    assert 1.5 * SR <= window.decoded_samples < 1.5 * SR + 1024
    assert read_audio(path, start=0.5, duration=1.0, sample_rate=SR).decoded_samples == SR


def write_late_audio_video(path, seconds, audio_start, gaps=()):
    """A video of ``seconds`` whose AAC audio track (the test signal from ``audio_start`` on)
    begins ``audio_start`` seconds after the first frame: the audio frames' pts start there.
    ``gaps=[(a, b), ...]``: the audio frames (1024 samples, 64 ms) starting in the seconds
    [a, b) are left out (their time skipped)."""
    import av

    frames = np.stack([np.full((32, 48, 3), LEVELS[i // FPS % 5], np.uint8) for i in range(seconds * FPS)])
    wav = signal(seconds)[int(audio_start * SR):]
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=FPS, options={"crf": "18", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = 48, 32, "yuv420p"
        audio = container.add_stream("aac", rate=SR)
        audio.layout = "mono"
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        step = audio.codec_context.frame_size or 1024
        for pos in range(0, len(wav), step):
            if any(a * SR <= int(audio_start * SR) + pos < b * SR for a, b in gaps):
                continue
            aframe = av.AudioFrame.from_ndarray(np.ascontiguousarray(wav[None, pos:pos + step]), format="fltp",
                                                layout="mono")
            aframe.sample_rate = SR
            aframe.pts, aframe.time_base = int(audio_start * SR) + pos, Fraction(1, SR)
            for packet in audio.encode(aframe):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    return path


def test_audio_that_starts_late_is_masked_before_it_starts(tmp_path):
    # 4 s of video whose audio starts at 1 s: clip 0's window is silence padding, not the
    # file's audio, and is masked (it used to be valid); clips 1-3 keep their audio unchanged.
    import av

    from effvid.av import read_audio

    path = write_late_audio_video(tmp_path / "late_audio.mkv", 4, audio_start=1.0)
    with av.open(str(path)) as c:  # the file really says so
        a, v = c.streams.audio[0], c.streams.video[0]
        assert abs(float(a.start_time * a.time_base) - 1.0) < 0.05
        assert float(v.start_time * v.time_base) < 0.01
    seq = LongVideoSampler(num_clips=5, frames_per_clip=4, sample_rate=SR)(path)
    assert seq.mask.tolist() == [True] * 4 + [False]
    assert seq.audio_mask.tolist() == [False, True, True, True, False]
    assert seq.audio[0].abs().max() < 0.01
    decoded = seq.audio[1:4].reshape(-1).numpy()
    reference = signal(4)[SR:]
    assert best_lag(decoded, reference) == 0
    assert np.abs(decoded[1000:-2000] - reference[1000:-2000]).mean() < 0.02
    for k in (1, 2, 3):
        assert abs(dominant_hz(seq.audio[k].numpy()) - TONES[k]) < 2
    # read_audio says where the decoded audio begins (0 for windows inside the track)
    window = read_audio(path, start=0.5, duration=2.0, sample_rate=SR)
    assert window.decoded_from == SR // 2 and window.decoded_samples == 2 * SR
    assert read_audio(path, start=1.5, duration=1.0, sample_rate=SR).decoded_from == 0
    # a window wholly before the track: nothing of it decoded
    before = read_audio(path, start=0.0, duration=0.5, sample_rate=SR)
    assert before.decoded_from == before.decoded_samples and before.waveform.abs().max() == 0


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_a_gap_in_the_audio_track_is_masked_and_the_audio_after_it_stays_in_time(tmp_path, ext):
    # The audio of 5 s of video skips [1.5 s, 2.5 s) (packets dropped in a recording). Its
    # decoded chunks were concatenated, so everything after the gap came 1 s early: clips 3-4
    # heard the tones of seconds 2-3, out of step with their frames, and were marked valid.
    from effvid.av import read_audio

    path = write_late_audio_video(tmp_path / f"gap.{ext}", 5, audio_start=0.0, gaps=[(1.5, 2.5)])
    seq = LongVideoSampler(num_clips=5, frames_per_clip=4, sample_rate=SR)(path)
    assert seq.mask.tolist() == [True] * 5
    assert seq.audio_mask.tolist() == [True, False, False, True, True]
    for k in (0, 3, 4):
        assert abs(dominant_hz(seq.audio[k].numpy()) - TONES[k]) < 2
    decoded = seq.audio[3:].reshape(-1).numpy()
    reference = signal(5)[3 * SR:]
    assert best_lag(decoded, reference) == 0
    assert np.abs(decoded[1000:-2000] - reference[1000:-2000]).mean() < 0.02
    # the gap is zeros, and read_audio says where it is (give or take a codec frame)
    window = read_audio(path, start=1.0, duration=3.0, sample_rate=SR)
    (gap_from, gap_to), = window.gaps
    assert abs(gap_from - SR // 2) <= 1024 and abs(gap_to - 3 * SR // 2) <= 1024
    assert window.waveform[gap_from:gap_to].abs().max() == 0
    assert read_audio(path, start=3.0, duration=1.0, sample_rate=SR).gaps == []


@pytest.mark.parametrize("gaps, seconds_lost, audio_mask", [
    # one AAC frame lost inside clip 2: 64 ms, less than a tenth (it masked clip 2)
    ([(2.49, 2.5)], [(2.496, 2.56)], [True] * 5),
    # one lost across clips 2 and 3: 56 ms of clip 2 and 8 ms of clip 3
    ([(2.94, 2.95)], [(2.944, 3.008)], [True] * 5),
    # both: 64 + 56 = 120 ms of clip 2, more than a tenth together; clip 3 still loses 8 ms
    ([(2.49, 2.5), (2.94, 2.95)], [(2.496, 2.56), (2.944, 3.008)], [True, True, False, True, True]),
])
def test_audio_gaps_mask_a_clip_when_they_cover_more_than_a_tenth_of_it(tmp_path, gaps, seconds_lost, audio_mask):
    # the mask was whether a gap reached more than a tenth of a clip into it, whatever its length
    from effvid.av import read_audio

    path = write_late_audio_video(tmp_path / "gaps.mp4", 5, audio_start=0.0, gaps=gaps)
    assert read_audio(path, duration=5.0).gaps == [(round(a * SR), round(b * SR)) for a, b in seconds_lost]
    seq = LongVideoSampler(num_clips=5, frames_per_clip=4, sample_rate=SR)(path)
    assert seq.mask.tolist() == [True] * 5
    assert seq.audio_mask.tolist() == audio_mask


def test_variable_frame_rate_mp4_with_b_frames_reaches_its_last_second(tmp_path):
    # The mp4 header of a VFR file with B-frames ends early (1.85 s for frames shown to 1.9 s,
    # with 2 s of sound): its second clip was left out as past the end of the video
    from effvid.data import decode_frame_index, index_pattern_frames

    ts = [0, 0.1, 0.15, 0.4, 0.45, 0.5, 0.9, 1.0, 1.05, 1.5, 1.6, 1.7, 1.9]
    path = write_video(tmp_path / "vfr_b.mp4", index_pattern_frames(len(ts)), fps=10, timestamps=ts,
                       audio=signal(2), audio_rate=SR)
    seq = LongVideoSampler(num_clips=2, frames_per_clip=4, sample_rate=SR)(path)
    assert seq.mask.tolist() == [True, True] and seq.audio_mask.tolist() == [True, True]
    shown = [[decode_frame_index(seq.frames[k, j].numpy(), len(ts)) for j in range(4)] for k in range(2)]
    # the frame shown at k + j/4: the last one whose time is at or before it
    assert shown == [[max(i for i, t in enumerate(ts) if t <= k + j / 4) for j in range(4)] for k in range(2)]


@pytest.mark.parametrize("start", [0.0, 1.0])
def test_h264_avi_picture_is_shown_with_its_sound(tmp_path, start):
    # FFmpeg makes up an AVI's H.264 timestamps a frame late (pts = dts + 1 while the stream
    # starts at 0): the frame shown at t was the one before (read_frames counts from the first)
    import av

    from effvid.data import decode_frame_index, index_pattern_frames

    n = 3 * FPS
    path = write_video(tmp_path / "h264.avi", index_pattern_frames(n), fps=FPS, gop=8, options={"bf": "0"},
                       audio=signal(3), audio_rate=SR)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        first = next(packet for packet in c.demux(s) if packet.size)
        assert (s.start_time, first.dts, first.pts) == (0, 0, 1)  # the case under test
    seq = LongVideoSampler(num_clips=2, frames_per_clip=8, sample_rate=SR, start=start)(path)
    assert seq.mask.all() and seq.audio_mask.all()
    shown = [[decode_frame_index(seq.frames[k, j].numpy(), n) for j in range(8)] for k in range(2)]
    assert shown == [[int((start + k + j / 8) * FPS) for j in range(8)] for k in range(2)]  # at k + j/8


@pytest.fixture(scope="module")
def b_frame_avis(tmp_path_factory):
    """kind -> a 4-s AVI with B-frames at 8 fps, frame i numbered i, one tone per second (PCM)."""
    from conftest import B_FRAME_AVI_KINDS, write_b_frame_avi
    from effvid.data import index_pattern_frames

    d = tmp_path_factory.mktemp("b_frame_avis")
    return {kind: write_b_frame_avi(d / f"{kind}.avi", index_pattern_frames(32), kind, fps=8, audio=signal(4),
                                    audio_rate=SR)
            for kind in B_FRAME_AVI_KINDS}


def test_the_b_frame_avis_are_the_cases_under_test(b_frame_avis):
    import av

    from effvid.data import decode_frame_index

    for kind, path in b_frame_avis.items():
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            chunks = [(p.dts, p.is_keyframe, bytes(p)) for p in c.demux(s) if p.size]
            c.seek(0)
            frames = [(f.pts, f.key_frame, decode_frame_index(f.to_ndarray(format="rgb24"), 32)) for f in c.decode(s)]
            assert s.codec_context.has_b_frames, kind
        # one chunk per frame, all coming out in order (FFmpeg's timestamps or not)
        assert len(chunks) == 32 and [i for _, _, i in frames] == list(range(32)), kind
        if kind in ("h264", "mpeg4_packed"):  # timestamps made up in decode order
            assert [pts for pts, _, _ in frames] != sorted(pts for pts, _, _ in frames), kind
        stored = [dts for dts, key, _ in chunks if key]
        shown = [i for _, key, i in frames if key]
        if kind == "h264":  # closed GOPs: a keyframe is shown at its chunk
            assert stored == shown and len(stored) > 2, (stored, shown)
        else:  # B-frames stored after a keyframe are shown before it
            assert all(dts < i for dts, i in zip(stored[1:], shown[1:])), (kind, stored, shown)
        if kind == "mpeg4_packed":
            assert sum(data.count(b"\x00\x00\x01\xb6") == 2 for _, _, data in chunks) > 4
            assert b"DivX503b1393p" in chunks[0][2]


@pytest.mark.parametrize("kind", ["h264", "h264_open_gop", "mpeg4", "mpeg4_packed"])
@pytest.mark.parametrize("start", [0.0, 0.875, 1.375])
def test_avi_with_b_frames_shows_each_picture_with_its_sound(b_frame_avis, kind, start):
    # FFmpeg makes up an AVI's timestamps in decode order: with B-frames the frames came out
    # with wrong, unordered ones, and the sampler showed frames [0, 0, 0, 2, 4, 4, 5, 7] at
    # 0, 1/8 .. 7/8 s. Frame i is shown at i/8 s, with the sound of that time. 0.875 s is the
    # frame before a keyframe: in the open GOP and the MPEG-4 files, a B-frame stored after it
    # (the seek goes a keyframe further back); 1.375 s lies inside a GOP.
    from effvid.data import decode_frame_index

    seq = LongVideoSampler(num_clips=2, frames_per_clip=8, sample_rate=SR, start=start)(b_frame_avis[kind])
    assert seq.mask.all() and seq.audio_mask.all()
    shown = [[decode_frame_index(seq.frames[k, j].numpy(), 32) for j in range(8)] for k in range(2)]
    assert shown == [[round((start + k + j / 8) * 8) for j in range(8)] for k in range(2)]  # at k + j/8
    reference = torch.from_numpy(signal(4)[round(start * SR):round((start + 2) * SR)])
    assert torch.allclose(seq.audio.flatten(), reference, atol=1e-3)  # PCM: the samples themselves


@pytest.mark.parametrize("b_frames", [0, 2])
def test_an_mpeg_program_stream_is_sampled_by_counting_its_frames(tmp_path, b_frames):
    # FFmpeg mistimes frames of an MPEG program stream (.mpg), and the first one after a seek:
    # the sampler showed some frames a frame late or early. Its duration, FFmpeg's estimate, said
    # 2.96 s for this 3-s file (2.0 s for one of larger frames), and the clips past it were
    # masked. Its frames are counted from the start: frame i is shown at i/25 s.
    from conftest import mpeg_level, write_mpeg_program_stream

    path = write_mpeg_program_stream(tmp_path / "clip.mpg", 75, b_frames)
    sampler = LongVideoSampler(num_clips=3, frames_per_clip=8, sample_rate=SR, missing_audio="mask")
    for start in (0.0, 0.3, 0.7):
        seq = sampler(path, start=start)
        assert seq.mask.tolist() == [True, True, start == 0.0], start  # 3 s: a third clip from 0 only
        valid = seq.num_valid
        got = seq.frames[:valid].float().mean(dim=(2, 3, 4)).flatten()
        want = [mpeg_level(int((start + k + j / 8) * 25 + 1e-6)) for k in range(valid) for j in range(8)]
        assert (got - torch.tensor(want, dtype=torch.float32)).abs().max() < 1.5, start
