"""The readers that go by time (LongVideoSampler's frames and audio, read_audio, open_frames for
``effvid stream``) on every container effvid reads, with the audio codecs each one takes.

Each file is written here with PyAV: frame i shows i (three base-8 digits, one per column) and
the sound is silent but for a chirp from where frames ``EVENTS`` are shown. Expected values come
from the source (frame i was encoded at i/fps, each chirp at its frame's time), placed on the
container's timeline by where a plain PyAV decode shows its first frame; not from effvid.
"""

from fractions import Fraction

import av
import numpy as np
import pytest

from effvid.av import LongVideoSampler, read_audio
from effvid.data.video import VIDEO_EXTENSIONS
from effvid.stream import open_frames

FPS, SECONDS, SR = 25, 3, 16000
EVENTS = (25, 55)  # chirps from frames 25 and 55 (1.0 s and 2.2 s) on


def digits_frame(i: int, height: int, width: int) -> np.ndarray:
    """Frame ``i``: columns of grey 16 + 32·d for i's base-8 digits d (a 4th column: mid grey)."""
    img = np.full((height, width, 3), 128, np.uint8)
    col = width // 4
    for c, d in enumerate(((i >> 6) & 7, (i >> 3) & 7, i & 7)):
        img[:, c * col:(c + 1) * col] = 16 + 32 * d
    return img


def frame_index(rgb) -> int:
    arr = np.asarray(rgb, np.float32)
    h, col = arr.shape[0], arr.shape[1] // 4
    d = [int(round((np.median(arr[h // 4:3 * h // 4, c * col + col // 4:(c + 1) * col - col // 4]) - 16) / 32))
         for c in range(3)]
    return 64 * d[0] + 8 * d[1] + d[2]


def chirp(rate: int) -> np.ndarray:
    """0.1 s rising from 300 to 3000 Hz (inside AMR-NB's band; sharp to correlate)."""
    t = np.arange(rate // 10) / rate
    return (0.5 * np.sin(2 * np.pi * (300 * t + 2700 / 0.2 * t * t))).astype(np.float32)


def chirp_starts(wave) -> list[int]:
    """Samples (at SR) where a chirp starts: peaks of the correlation with it above half its own."""
    c = chirp(SR).astype(np.float64)
    score = np.correlate(np.asarray(wave, np.float64), c, mode="valid") / np.dot(c, c)
    starts: list[int] = []
    for i in np.flatnonzero(score > 0.5):
        if starts and i - starts[-1] < SR // 5:
            starts[-1] = i if score[i] > score[starts[-1]] else starts[-1]
        else:
            starts.append(int(i))
    return starts


def write(path, video, audio, rate=48000, fmt=None, options=None, bf=0, size=(48, 64), n=FPS * SECONDS, gop=12):
    """Video ``video`` (digit frames) with audio ``audio`` at ``rate`` Hz (the chirps), interleaved
    as a muxer gets them from a camera or an encoder."""
    height, width = size
    with av.open(str(path), "w", format=fmt, options=options or {}) as out:
        vs = out.add_stream(video, rate=FPS, options={"bf": str(bf)} if video == "libx264" else {})
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        cc = vs.codec_context
        cc.gop_size = gop
        if video == "libx264":
            cc.options = {**cc.options, "crf": "12"}
        else:
            cc.bit_rate, cc.qmin, cc.qmax, cc.max_b_frames = 2_000_000, 1, 3, bf
        wave = np.zeros(int((n / FPS + 0.5) * rate), np.float32)
        for e in EVENTS:
            at = round(e / FPS * rate)
            wave[at:at + rate // 10] = chirp(rate)
        a = out.add_stream(audio, rate=rate)
        a.layout = "mono"
        a.codec_context.bit_rate = 128000 if audio in ("mp2", "ac3") else 64000
        step = a.codec_context.frame_size or 1024
        sent = 0
        for i in range(n + 1):
            while sent <= i * rate / FPS:
                chunk = wave[sent:sent + step]
                kind = a.format.name  # what the encoder takes: float, 16 or 32 bits (LAME)
                data = (chunk if kind.startswith("flt") else (chunk * 32767).astype(np.int16)
                        if kind.startswith("s16") else (chunk * 2 ** 31 * 0.999).astype(np.int32))
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[None]), format=kind, layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = rate, sent, Fraction(1, rate)
                out.mux(a.encode(frame))
                sent += step
            if i < n:
                frame = av.VideoFrame.from_ndarray(digits_frame(i, height, width), format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, FPS)
                out.mux(vs.encode(frame))
        out.mux(vs.encode())
        out.mux(a.encode())
    return path


def plain_decode(path):
    """A plain PyAV decode: where its first frame is shown (seconds after the container's start,
    and after the video stream's) and the frame indices in the order they come out."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [(f.pts, frame_index(f.to_ndarray(format="rgb24"))) for f in c.decode(s)]
        first = float(frames[0][0] * s.time_base)
        return (first - c.start_time / 1e6, first - float(s.start_time * s.time_base), [i for _, i in frames])


# How far a chirp may lie from its frame's time, in samples at SR. AAC's and MP3's priming
# samples are where the timestamps say (TS, FLV: before the first frame; mp4/3gp: cut by the
# edit list), so 2: resampling (measured: within 0.4). Where times are whole milliseconds
# (FLV, ASF), frames and audio packets lie up to 1 ms off (ASF truncates: the video shifted by
# WMA's 46.44-ms priming starts at 46 ms), and a window read after a seek starts where its
# first packet's rounded time says (measured: 7 samples). AMR-NB comes out of FFmpeg's decoder
# 1.25 ms before its timestamps say, in a plain decode too (measured: 20).
MS = SR // 1000
CONTAINERS = {
    # MPEG program streams: DVD/VCD style, with B-frames; FFmpeg's timestamps of the frames go
    # back and jump, so effvid counts them
    "mpeg2_mp2.mpg": dict(video="mpeg2video", audio="mp2", bf=2),
    "mpeg1_mp2.mpeg": dict(video="mpeg1video", audio="mp2", rate=44100, bf=2, fmt="mpeg"),
    # MPEG-TS: broadcast H.264 + AAC from 1.4 s, with B-frames; AVCHD (m2ts) MPEG-2 + MP2, HEVC + AC-3
    "h264_aac.ts": dict(video="libx264", audio="aac", bf=3, options={"max_delay": "700000"}),
    "mpeg2_mp2.mts": dict(video="mpeg2video", audio="mp2", bf=2, fmt="mpegts", options={"mpegts_m2ts_mode": "1"}),
    "hevc_ac3.m2ts": dict(video="libx265", audio="ac3", fmt="mpegts", options={"mpegts_m2ts_mode": "1"}),
    # phones: H.264 + AAC, H.263 + AMR-NB
    "h264_aac.3gp": dict(video="libx264", audio="aac", bf=2),
    "h263_amrnb.3gp": dict(video="h263", audio="libopencore_amrnb", rate=8000, size=(96, 128), tolerance=1.5 * MS),
    # FLV: Sorenson + MP3 (seek(0) is refused), H.264 + AAC
    "flv1_mp3.flv": dict(video="flv", audio="libmp3lame", rate=22050, tolerance=MS + 2),
    "h264_aac.flv": dict(video="libx264", audio="aac", rate=44100, bf=3, tolerance=MS + 2),
    # ASF: WMV + WMA
    "wmv2_wmav2.wmv": dict(video="wmv2", audio="wmav2", rate=44100, tolerance=MS + 2),
    "msmpeg4_wmav1.asf": dict(video="msmpeg4", audio="wmav1", rate=22050, tolerance=MS + 2),
}


def check_time_based_readers(path, tolerance: float = 2, starts=(0.0, 0.7)):
    """LongVideoSampler (2 clips of 5 frames from each of ``starts``), read_audio and open_frames
    on ``path``, against the source's frame times and the chirps at their frames' times."""
    t0, stream_t0, order = plain_decode(path)
    first = order[0]  # (a transport stream cut mid-GOP starts at its first keyframe)
    assert order == list(range(first, first + len(order)))  # the file is sound: every frame, in order
    for start in starts:
        seq = LongVideoSampler(num_clips=2, frames_per_clip=5, sample_rate=SR, start=start)(path)
        assert seq.mask.tolist() == [True, True] and seq.audio_mask.tolist() == [True, True], start
        # frame j of clip k: the one shown at start + k + j/5, frame i being shown at
        # t0 + (i - first)/FPS (before the first frame: the first frame)
        got = [frame_index(seq.frames[k, j].numpy()) for k in range(2) for j in range(5)]
        assert got == [first + max(0, int((start + k + j / 5 - t0) * FPS + 1e-6))
                       for k in range(2) for j in range(5)], start
        # each chirp where its frame is shown
        heard = chirp_starts(seq.audio.flatten().numpy())
        at = [t0 + (e - first) / FPS - start for e in EVENTS if e >= first]
        want = [t * SR for t in at if 0 <= t < 1.9]
        assert len(heard) == len(want) and np.abs(np.subtract(heard, want)).max() <= tolerance, (start, heard, want)
    begin = at[-1] + start - 0.3  # a window around the last chirp, on its own
    window = read_audio(path, start=begin, duration=0.5, sample_rate=SR)
    assert window.gaps == [] and window.decoded_from == 0 and window.decoded_samples == SR // 2
    assert abs(chirp_starts(window.waveform.numpy())[0] - 0.3 * SR) <= tolerance
    # streamed: every frame once, in order, at its time after the video stream's start
    streamed = [(t, frame_index(rgb)) for t, rgb in open_frames(str(path))]
    assert [i for _, i in streamed] == order
    assert np.abs([t - stream_t0 - (i - first) / FPS for t, i in streamed]).max() < 1e-6


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_time_based_readers_on_every_container(tmp_path, name):
    spec = dict(CONTAINERS[name])
    tolerance = spec.pop("tolerance", 2)
    if missing := [c for c in (spec["video"], spec["audio"]) if c not in av.codecs_available]:
        pytest.skip(f"this FFmpeg cannot encode {missing}")
    path = write(tmp_path / name, **spec)
    assert path.suffix in VIDEO_EXTENSIONS
    check_time_based_readers(path, tolerance)


def test_time_based_readers_on_a_transport_stream_cut_mid_gop(tmp_path):
    # A recording begun mid-broadcast: it starts at 1.4 s + the cut, with audio before the first
    # keyframe and frames before it that do not decode
    full = write(tmp_path / "full.ts", "libx264", "aac", bf=3, gop=25, n=100, options={"max_delay": "700000"})
    data = full.read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[len(data) // 5 // 188 * 188:])  # whole 188-byte TS packets
    with av.open(str(cut)) as c:  # the case under test
        video, audio = c.streams.video[0], c.streams.audio[0]
        assert float(c.start_time / 1e6) > 1.4 and audio.start_time * audio.time_base < video.start_time * video.time_base
        assert next(p for p in c.demux(video) if p.size).is_keyframe is False
    t0, _, order = plain_decode(cut)
    assert 0 < order[0] < EVENTS[0] and t0 > 0.1
    check_time_based_readers(cut, starts=(0.0, 1.1))
