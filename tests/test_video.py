import os
import pickle
import subprocess
import sys

import av
import numpy as np
import pytest
import torch

from effvid.data import (VideoDecodeError, decode_frame_index, index_pattern_frames, probe_video,
                         read_all_frames, read_frames, write_video)
from effvid.data import video as video_mod

from conftest import (B_FRAME_AVI_KINDS, FPS, HEIGHT, INDEX_VIDEO_SPECS, LONG_FRAMES, N_FRAMES, WIDTH,
                      damage_packets, mpeg_level, write_b_frame_avi, write_mpeg_program_stream)


def indices_of(frames, n=N_FRAMES):
    return [decode_frame_index(f.numpy(), n) for f in frames]


@pytest.mark.parametrize("key", sorted(INDEX_VIDEO_SPECS))
def test_probe_and_full_decode(index_videos, key):
    path = index_videos[key]
    info = probe_video(path)
    assert info.path == str(path)
    assert info.num_frames == N_FRAMES
    assert info.fps == pytest.approx(FPS)
    assert info.duration_s == pytest.approx(N_FRAMES / FPS, abs=0.15)
    assert (info.width, info.height) == (WIDTH, HEIGHT)
    assert info.rotation == 0 and not info.has_audio
    full = read_all_frames(path)
    assert full.dtype == torch.uint8 and full.shape == (N_FRAMES, HEIGHT, WIDTH, 3)
    assert indices_of(full) == list(range(N_FRAMES))


@pytest.mark.parametrize("key", sorted(INDEX_VIDEO_SPECS))
def test_sparse_decode_returns_the_requested_frames(index_videos, key):
    path = index_videos[key]
    full = read_all_frames(path)
    idx = [0, 5, 5, 3, 23, 12, 13, 1]  # unsorted, duplicated, adjacent
    got = read_frames(path, idx)
    assert got.shape == (len(idx), HEIGHT, WIDTH, 3) and got.dtype == torch.uint8
    assert indices_of(got) == idx
    assert torch.equal(got, full[idx])  # bit-identical to the sequential decode


def test_indices_chosen_from_the_probed_info(index_videos):
    # one opening: the file is probed, then indices are chosen from its length (TSN segments)
    path = index_videos["mkv_hevc"]
    seen = []

    def last_and_middle(info):
        seen.append(info.num_frames)
        return [info.num_frames - 1, info.num_frames // 2]

    got = read_frames(path, last_and_middle)
    assert seen == [N_FRAMES] and indices_of(got) == [N_FRAMES - 1, N_FRAMES // 2]
    with pytest.raises(ValueError, match="negative frame index"):
        read_frames(path, lambda info: [-1])


@pytest.mark.parametrize("thread_type", ["SLICE", "FRAME", "AUTO"])
def test_every_decoder_threading_mode_gives_the_same_frames(index_videos, thread_type):
    for key in ("mp4_h264", "mkv_hevc"):
        path = index_videos[key]
        idx = [23, 0, 9, 10, 17]
        got = read_frames(path, idx, thread_type=thread_type)
        assert indices_of(got) == idx
        assert torch.equal(got, read_all_frames(path)[idx])


def test_indices_past_end_give_last_frame(index_videos):
    path = index_videos["mp4_h264"]
    got = read_frames(path, [22, 23, 40, 1000])
    assert indices_of(got) == [22, 23, 23, 23]
    assert read_frames(path, []).shape == (0, HEIGHT, WIDTH, 3)
    with pytest.raises(ValueError):
        read_frames(path, [-1])


def test_a_frame_in_the_last_gop_of_an_mpeg_ts(index_videos):
    # Seeking an MPEG-TS to its last keyframe lands at the end, with no frame left: the reader
    # gave up ("no frame could be decoded") instead of seeking further back.
    path = index_videos["ts_h264"]
    for i in (16, 20, 23):
        assert indices_of(read_frames(path, [i])) == [i]
    assert indices_of(read_frames(path, [1000])) == [N_FRAMES - 1]


def test_grayscale_video(index_videos):
    got = read_frames(index_videos["mp4_gray"], [2, 17]).int()
    assert (got[..., 0] - got[..., 1]).abs().max() <= 2
    assert (got[..., 0] - got[..., 2]).abs().max() <= 2
    assert indices_of(got) == [2, 17]


def test_odd_size(video_factory):
    src = index_pattern_frames(N_FRAMES, 47, 63)
    # MJPEG and 4:4:4 H.264 keep odd sizes ...
    for name, kw in [("odd.avi", dict(codec="mjpeg")), ("odd444.mp4", dict(codec="libx264", pix_fmt="yuv444p"))]:
        p = video_factory(name, src, fps=FPS, **kw)
        info = probe_video(p)
        assert (info.width, info.height) == (63, 47)
        got = read_frames(p, [4, 9], info)
        assert got.shape == (2, 47, 63, 3)
        assert indices_of(got) == [4, 9]
        assert np.abs(got.numpy().astype(int) - src[[4, 9]]).mean() < 3
    # ... 4:2:0 H.264 pads to even by repeating the edge
    p = video_factory("odd420.mp4", src, fps=FPS)
    got = read_frames(p, [7])
    assert got.shape == (1, 48, 64, 3) and indices_of(got) == [7]


@pytest.mark.parametrize("rotation,k", [(90, 1), (-90, -1), (180, 2)])
def test_rotation_metadata_is_applied(video_factory, index_frames, rotation, k):
    p = video_factory(f"rot{rotation}.mp4", index_frames, fps=FPS, rotation=rotation)
    with av.open(str(p)) as c:  # the raw decoded frame is not rotated ...
        raw = next(c.decode(video=0))
        assert (raw.width, raw.height) == (WIDTH, HEIGHT) and raw.rotation % 360 == rotation % 360
    info = probe_video(p)
    assert info.rotation == rotation
    expected = np.rot90(index_frames[[3, 10]], k=k, axes=(1, 2))  # ... ours is turned upright
    assert (info.height, info.width) == expected.shape[1:3]
    got = read_frames(p, [3, 10], info).numpy()
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected).mean() < 3
    # the white marker really moved: e.g. 90 deg CCW puts the top-left block bottom-left
    h, w = got.shape[1:3]
    corners = {"tl": got[0, 2, 2], "tr": got[0, 2, w - 3], "bl": got[0, h - 3, 2], "br": got[0, h - 3, w - 3]}
    white = {c for c, v in corners.items() if v.min() > 230}
    assert white == {90: {"bl"}, -90: {"tr"}, 180: {"br"}}[rotation]
    assert torch.equal(read_all_frames(p)[[3, 10]], torch.from_numpy(got))


def test_webm_header_without_frame_count(index_videos):
    path = index_videos["webm_vp9"]
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0  # the header really does not say
    info = probe_video(path)
    assert info.num_frames == N_FRAMES and info.num_frames_source == "duration"


def test_frame_count_by_packets(index_videos, monkeypatch):
    monkeypatch.setattr(video_mod, "_stream_duration_s", lambda container, stream: None)
    info = probe_video(index_videos["mkv_hevc"])
    assert info.num_frames == N_FRAMES and info.num_frames_source == "packets"
    assert info.fps == pytest.approx(FPS)


def test_audio_track(video_factory, index_frames):
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * 16000) / 16000)
    for ext in ("mp4", "webm", "mkv", "avi"):
        # (avi + H.264 B-frames has no real timestamps: exercises the frame-counting path)
        p = video_factory(f"tone.{ext}", index_frames, fps=FPS, audio=tone, audio_rate=16000,
                          codec="libvpx-vp9" if ext == "webm" else "libx264")
        info = probe_video(p)
        assert info.has_audio
        assert info.num_frames == N_FRAMES  # audio must not inflate the frame estimate
        assert indices_of(read_frames(p, [6, 20], info)) == [6, 20]
        with av.open(str(p)) as c:
            a = c.streams.audio[0]
            samples = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(a)])
            rate = a.rate
        assert len(samples) >= 0.95 * 3 * rate
        # dominant frequency of the decoded track is the tone
        spec = np.abs(np.fft.rfft(samples[: rate * 2].astype(np.float64)))
        assert np.argmax(spec) * rate / (rate * 2) == pytest.approx(440, abs=3)


def test_variable_frame_rate(video_factory):
    ts = [0, 0.1, 0.15, 0.4, 0.45, 0.5, 0.9, 1.0, 1.05, 1.5]
    frames = index_pattern_frames(len(ts))
    p = video_factory("vfr.mkv", frames, fps=10, timestamps=ts)
    info = probe_video(p)
    want = list(range(16))
    got = [decode_frame_index(f.numpy(), len(ts)) for f in read_frames(p, want, info)]
    # expected: first frame whose time >= (i - 0.5) / fps, else the last frame
    exp = []
    for i in want:
        later = [k for k, t in enumerate(ts) if t >= (i - 0.5) / info.fps - 1e-9]
        exp.append(later[0] if later else len(ts) - 1)
    assert got == exp
    assert got[:6] == [0, 1, 2, 3, 3, 4]



def test_mkv_whose_video_starts_late_counts_its_frames(tmp_path):
    # FFmpeg's Matroska DURATION tag is where the stream ends, not how long it lasts: a video
    # whose first frame is at 0.5 s (after the audio, or cut from a stream) was counted 28
    # frames for its 24, and TSN's last segments read the last frame again
    ts = [0.5 + i / FPS for i in range(N_FRAMES)]
    for ext in ("mkv", "webm"):
        p = write_video(tmp_path / f"late.{ext}", index_pattern_frames(N_FRAMES), fps=FPS, timestamps=ts,
                        codec="libvpx-vp9" if ext == "webm" else "libx264")
        with av.open(str(p)) as c:
            assert c.streams.video[0].start_time * c.streams.video[0].time_base == pytest.approx(0.5)
        info = probe_video(p)
        assert (info.num_frames, info.num_frames_source) == (N_FRAMES, "duration"), ext
        assert info.duration_s == pytest.approx(N_FRAMES / FPS)
        stats = {}
        assert indices_of(read_frames(p, [0, 11, 23], info, stats=stats)) == [0, 11, 23]
        assert stats["past_end"] == 0

def test_a_thumbnail_stream_before_the_video_is_passed_over(tmp_path):
    # an mkv whose first video stream is a one-frame 16x16 picture (a thumbnail) and whose second
    # is the video: every reader took the thumbnail, and trained on one frame of it
    from effvid.stream import open_frames

    path = tmp_path / "thumb_first.mkv"
    frames = index_pattern_frames(N_FRAMES)
    with av.open(str(path), "w") as out:
        thumb = out.add_stream("mjpeg", rate=1)
        thumb.width = thumb.height = 16
        thumb.pix_fmt = "yuvj420p"
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        picture = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 255, np.uint8), format="rgb24")
        for packet in [*thumb.encode(picture), *thumb.encode(None)]:
            out.mux(packet)
        for f in frames:
            out.mux(video.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(video.encode(None))
    with av.open(str(path)) as c:
        assert [s.width for s in c.streams.video] == [16, WIDTH]  # the thumbnail first
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height) == (N_FRAMES, WIDTH, HEIGHT)
    assert indices_of(read_frames(path, [0, 5, N_FRAMES - 1], info)) == [0, 5, N_FRAMES - 1]
    assert indices_of(read_all_frames(path)) == list(range(N_FRAMES))
    streamed = [frame for _, frame in open_frames(str(path))]
    assert [decode_frame_index(f, N_FRAMES) for f in streamed] == list(range(N_FRAMES))


def test_variable_frame_rate_mp4_with_b_frames_lasts_to_its_last_frame(tmp_path):
    # An mp4 header sums frame durations in decode order: with B-frames and a variable rate
    # the last frame shown lies past that (the header said 1.85 s for frames up to 1.9 s), so
    # the frame rate FFmpeg derives from it was too high and the last index read frame 11
    ts = [0, 0.1, 0.15, 0.4, 0.45, 0.5, 0.9, 1.0, 1.05, 1.5, 1.6, 1.7, 1.9]
    n = len(ts)
    p = write_video(tmp_path / "vfr_b.mp4", index_pattern_frames(n), fps=10, timestamps=ts)
    with av.open(str(p)) as c:
        s = c.streams.video[0]
        packets = [pk for pk in c.demux(s) if pk.size]
        header = float(s.duration * s.time_base)
        end = float(max(pk.pts + pk.duration for pk in packets) * s.time_base)
    assert any(pk.pts != pk.dts for pk in packets) and header < ts[-1] < end  # B-frames, short header
    info = probe_video(p)
    assert info.duration_s == pytest.approx(end) and info.fps == pytest.approx(n / end)
    assert (info.num_frames, info.num_frames_source) == (n, "header")
    got = indices_of(read_frames(p, range(n), info), n)
    assert got[-1] == n - 1 and got == sorted(got)
    # the index maps to time as ever: the first frame at or after (i - 0.5) / fps
    assert got == [next(k for k, t in enumerate(ts) if t >= (i - 0.5) / info.fps - 1e-9) for i in range(n)]



def test_variable_frame_rate_mp4_with_b_frames_is_not_read_as_trimmed(tmp_path):
    # FFmpeg's frame rate of an mp4 is its frames over their durations in decode order, which
    # with B-frames and a variable rate is not the time they are shown (0.96 s for 0.8 here):
    # duration x rate said 13 frames of 16 ("edit list"), and the last 3 could not be indexed.
    # FFmpeg marks the frames an edit list leaves out in the index; here it leaves out none.
    ts = [0, 0.1, 0.2, 0.3, 0.34, 0.38, 0.42, 0.46, 0.5, 0.54, 0.58, 0.62, 0.64, 0.66, 0.68, 0.7]
    n = len(ts)
    p = write_video(tmp_path / "vfr_b.mp4", index_pattern_frames(n), fps=10, timestamps=ts)
    with av.open(str(p)) as c:
        s = c.streams.video[0]
        assert any(pk.pts != pk.dts for pk in c.demux(s) if pk.size)  # B-frames
        assert n / float(s.average_rate) > float(s.duration * s.time_base) + 0.1
    info = probe_video(p)
    assert (info.num_frames, info.num_frames_source) == (n, "header")
    assert info.fps == pytest.approx(n / info.duration_s)
    got = [decode_frame_index(f.numpy(), n) for f in read_frames(p, [0, 8, n - 2, n - 1], info)]
    assert got == [0, 5, 14, 15]

@pytest.mark.parametrize("name,kwargs,b_frames", [
    ("x264.mp4", {}, True),  # x264's defaults: B-frames
    ("x264_bf0.mp4", {"options": {"bf": "0"}}, False),
    ("x264_baseline.mp4", {"options": {"profile": "baseline"}}, False),
    ("mpeg4_bf2.mp4", {"codec": "mpeg4", "options": {"bf": "2"}}, True),
    ("mpeg4.mov", {"codec": "mpeg4"}, False),
])
def test_stream_duration_reads_packets_only_where_frames_can_be_reordered(tmp_path, name, kwargs, b_frames):
    # Reading the last GOP for the end made every probe of an mp4 with one keyframe read the
    # whole file (52 MB: 22.5 ms, was 1.7 ms); only B-frames make the header's duration short.
    p = write_video(tmp_path / name, index_pattern_frames(30), fps=10, gop=1000, **kwargs)

    class Counting:  # the container, counting the packets demuxed through it
        def __init__(self, container):
            self.container, self.packets = container, 0

        def __getattr__(self, attr):
            return getattr(self.container, attr)

        def demux(self, *args, **kwargs):
            for packet in self.container.demux(*args, **kwargs):
                self.packets += 1
                yield packet

    with av.open(str(p)) as c:
        s = c.streams.video[0]
        reordered = any(pk.pts != pk.dts for pk in c.demux(s) if pk.size)
        c.seek(0)
        assert reordered == b_frames  # the files are the cases under test
        assert video_mod._scan_for_duration(c, s) == b_frames
        counting = Counting(c)
        duration = video_mod.stream_duration(counting, s)
        assert (counting.packets > 0) == b_frames
        if not b_frames:
            assert duration == s.duration
        assert next(c.decode(s)).pts == s.start_time  # left at its beginning


def _distinct_frames(n, h=48, w=64):
    """Frames that all differ: a bar moving across + brightness steps."""
    f = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        f[i] = 30 + (i // 8) * 12
        x = (i % 8) * 8
        f[i, :, x:x + 6] = 255
    return f


@pytest.mark.parametrize("name,kw", [
    ("long.mp4", dict(codec="libx264", gop=30)),          # B-frames + full keyframe index
    ("long.mkv", dict(codec="libx264", gop=30)),          # no keyframe index: distance heuristic
    ("long.webm", dict(codec="libvpx-vp9", gop=30)),
    ("long.avi", dict(codec="libx264", gop=30, options={"bf": "0"})),  # H.264 in AVI, made-up pts
])
def test_sparse_decode_seeks_and_matches_full_decode(video_factory, name, kw, monkeypatch):
    n = 150
    p = video_factory(name, _distinct_frames(n), fps=30, **kw)
    full = read_all_frames(p)
    assert full.shape[0] == n
    rng = np.random.default_rng(0)
    for idx in ([9, 28, 46, 65, 84, 103, 121, 140], [140, 3, 77, 77, 76], sorted(rng.integers(0, n, 8))):
        st = {}
        got = read_frames(p, idx, seek_ahead_frames=20, stats=st)
        assert torch.equal(got, full[list(idx)]), (name, idx)
        assert st["decoded"] < n and not st["sequential"]
    st = {}
    assert torch.equal(read_frames(p, [9, 140], seek_ahead_frames=20, stats=st), full[[9, 140]])
    assert st["seeks"] == 2 and st["decoded"] < 80  # jumped instead of decoding 130 frames forward
    st = {}
    read_frames(p, [100, 101, 103], seek_ahead_frames=20, stats=st)
    assert st["seeks"] == 1 and st["decoded"] < 40  # nearby targets reuse the decoder


@pytest.mark.parametrize("kind", B_FRAME_AVI_KINDS)
def test_avi_with_b_frames_counts_frames(tmp_path, index_frames, kind):
    # AVI stores no presentation timestamps; with B-frames FFmpeg's invented ones are wrong
    # (also for DivX/Xvid's packed bitstream, whose chunks hold a frame each all the same)
    p = write_b_frame_avi(tmp_path / f"{kind}.avi", index_frames, kind, fps=FPS)
    st = {}
    got = read_frames(p, [20, 1, 7, 7], stats=st)
    assert st["sequential"]
    assert indices_of(got) == [20, 1, 7, 7]
    # effvid check's count of the frames a file holds (it raised the reader's internal
    # "unreliable timestamps" signal): the whole file, and one cut short
    assert video_mod.decodable_frames(p) == N_FRAMES
    data = p.read_bytes()
    cut = tmp_path / f"{kind}_cut.avi"
    cut.write_bytes(data[: len(data) * 9 // 10])  # its index and last frames gone
    assert 0 < video_mod.decodable_frames(cut) < N_FRAMES


@pytest.mark.parametrize("name,options", [("h264_no_b.avi", {"bf": "0"}),
                                          ("h264_baseline.avi", {"profile": "baseline"})])
def test_avi_h264_without_b_frames_reads_the_requested_frames(video_factory, index_frames, name, options):
    # As cameras and baseline encoders write. AVI stores no presentation times: FFmpeg makes up
    # H.264's as dts + 1 while the stream's start_time stays 0, and index i read frame i - 1.
    p = video_factory(name, index_frames, fps=FPS, codec="libx264", gop=8, options=options)
    with av.open(str(p)) as c:
        s = c.streams.video[0]
        first = next(packet for packet in c.demux(s) if packet.size)
        assert (s.start_time, first.dts, first.pts) == (0, 0, 1)  # the case under test
        assert not s.codec_context.has_b_frames
    full = read_all_frames(p)
    assert indices_of(full) == list(range(N_FRAMES))
    for idx in ([0, 3, 10, 23], [23], [1], [8], [23, 0, 12, 12, 7], [9, 16, 17]):
        for thread_type in ("SLICE", "FRAME"):
            st = {}
            got = read_frames(p, idx, thread_type=thread_type, stats=st)
            assert indices_of(got) == idx and torch.equal(got, full[idx]), (idx, thread_type)
            assert not st["sequential"]  # by timestamps, seeking
    st = {}  # every frame in order: one seek, then decoding forward
    assert indices_of(read_frames(p, range(N_FRAMES), stats=st)) == list(range(N_FRAMES))
    assert st["seeks"] == 1
    # counting frames from the start (the reader's fallback for B-frames in AVI) agrees
    with av.open(str(p)) as c:
        counted, _ = video_mod._read_sequential(c, c.streams.video[0], [0, 3, 10, 23], video_mod.BadPackets(p))
    assert [decode_frame_index(video_mod.frame_to_rgb(counted[i]), N_FRAMES) for i in (0, 3, 10, 23)] \
        == [0, 3, 10, 23]
    # decoding on from the start without a seek (effvid check's count of the frames a file
    # holds) reaches every frame: finding frame 0's pts had consumed the first keyframe's packet,
    # and the count lost the first GOP (8 frames)
    assert video_mod.decodable_frames(p) == N_FRAMES


def test_mp4_edit_list_that_starts_after_a_keyframe(index_videos, tmp_path):
    # The first 3 frames of a GOP are decoded but not shown (an edit list cut them, as trimming
    # without re-encoding does): the first packet's pts lies before start_time, the first frame
    # shown is index 0.
    trimmed = tmp_path / "trimmed.mp4"
    with av.open(str(index_videos["mp4_h264"])) as src, av.open(str(trimmed), "w") as dst:
        stream = src.streams.video[0]
        out = dst.add_stream_from_template(stream)
        shift = round(3 / (FPS * stream.time_base))
        for packet in src.demux(stream):
            if packet.dts is None:  # the empty flush packet
                continue
            packet.pts, packet.dts, packet.stream = packet.pts - shift, packet.dts - shift, out
            dst.mux(packet)
    with av.open(str(trimmed)) as c:
        s = c.streams.video[0]
        assert next(packet for packet in c.demux(s) if packet.size).pts < s.start_time == 0
    full = read_all_frames(trimmed)
    assert indices_of(full) == list(range(3, N_FRAMES))
    idx = [0, 5, 12, 20, 1]
    got = read_frames(trimmed, idx)
    assert indices_of(got) == [3, 8, 15, 23, 4] and torch.equal(got, full[idx])
    # the header counts 24 frames; the 21 shown are the video's (index 21 read the last again)
    info = probe_video(trimmed)
    assert (info.num_frames, info.num_frames_source) == (21, "edit list")
    assert probe_video(index_videos["mp4_h264"]).num_frames_source == "header"
    # The keyframes are shown at 5 and 13 (the source's 8 and 16). Frame 5 is one: a seek
    # lands on it and 9 follows. The table put them 3 frames late: 5 was read from a seek to
    # the cut-off first keyframe, then "a keyframe at 8" before 9 seeked back to 5 again.
    stats = {}
    got = read_frames(trimmed, [5, 9], stats=stats)
    assert indices_of(got) == [8, 12] and torch.equal(got, full[[5, 9]])
    assert (stats["seeks"], stats["decoded"]) == (1, 3)
    # 6 then 13: decoded from the keyframe at 5 (the table's keyframe at 0 was the cut-off
    # one), and on to 13
    stats = {}
    assert torch.equal(read_frames(trimmed, [6, 13], stats=stats), full[[6, 13]])
    assert (stats["seeks"], stats["decoded"]) == (1, 7)
    for idx in ([0, 20], [4, 10, 16, 20], [2, 7, 12, 17], [13, 12, 5, 4]):  # each GOP, each way
        assert torch.equal(read_frames(trimmed, idx), full[idx]), idx



@pytest.mark.parametrize("b_frames", [0, 2])
def test_an_mpeg_program_stream_is_read_by_counting_frames(tmp_path, b_frames):
    # MPEG-PS (.mpg) timestamps go back and jump, and the first frame after a seek is
    # mislabelled: 20 of 20 TSN clips of this file read a frame 1-2 off. Its frames are now
    # counted from the start, as a reordered AVI's are: exact, and slower on long files.
    from effvid.data.sampling import segment_indices, test_clips

    n, level = 200, mpeg_level
    path = write_mpeg_program_stream(tmp_path / "clip.mpg", n, b_frames)
    with av.open(str(path)) as c:  # the file is sound: a plain decode shows every frame in order
        assert [abs(f.to_ndarray(format="rgb24").mean() - level(i)) < 1.5
                for i, f in enumerate(c.decode(video=0))] == [True] * n
    info = probe_video(path)
    assert info.num_frames == n
    rng = np.random.default_rng(0)
    clips = [test_clips(n, 8)[0]] + [segment_indices(n, 8, True, rng) for _ in range(5)] + [[93, 5, 93, 199]]
    for idx in clips:
        stats: dict = {}
        frames = read_frames(path, idx, info, stats=stats)
        assert [abs(float(f.float().mean()) - level(i)) < 1.5 for f, i in zip(frames, idx)] == [True] * len(idx)
        assert stats["sequential"] and stats["decoded"] >= max(idx) + 1  # the counted frames counted too


@pytest.mark.skipif(not {"libsvtav1", "libdav1d"} <= av.codecs_available, reason="no AV1 encoder/decoder")
def test_av1_read_with_the_probed_info_keeps_non_reference_frames(tmp_path):
    # libdav1d reads skip_frame once, when it opens: given the info (a dataset's cached probe),
    # nothing had opened the decoder before the frames before a target were set to be skipped,
    # and every non-reference frame was dropped for good: each odd index read the next frame
    n = 16
    scheduling = os.sched_getscheduler(0), os.sched_getparam(0)
    p = write_video(tmp_path / "av1.mkv", index_pattern_frames(n, 64, 64), fps=FPS, codec="libsvtav1",
                    options={"preset": "12"})
    # SVT-AV1 made the writing thread real-time (as root), and write_video put it back
    assert (os.sched_getscheduler(0), os.sched_getparam(0)) == scheduling
    info = probe_video(p)
    full = read_all_frames(p)
    assert indices_of(full, n) == list(range(n))
    for i in range(n):
        got = read_frames(p, [i], info)
        assert indices_of(got, n) == [i] and torch.equal(got[0], full[i]), i
    idx = [3, 5, 9, 1, 14]
    assert torch.equal(read_frames(p, idx, info), full[idx])

def test_missing_file():
    with pytest.raises(FileNotFoundError, match="does_not_exist.mp4"):
        probe_video("/nonexistent/does_not_exist.mp4")
    with pytest.raises(FileNotFoundError, match="does_not_exist.mp4"):
        read_frames("/nonexistent/does_not_exist.mp4", [0])


def test_zero_byte_and_garbage(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="empty.mp4.*empty"):
        probe_video(empty)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoDecodeError, match="garbage.mp4") as e:
        read_frames(garbage, [0])
    assert e.value.path == str(garbage)
    # picklable, so it survives DataLoader worker processes
    e2 = pickle.loads(pickle.dumps(e.value))
    assert e2.path == e.value.path and str(e2) == str(e.value)


def test_truncated_files(tmp_path, index_videos):
    # mp4 keeps its index at the end: half a file cannot be opened
    data = index_videos["mp4_h264"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError, match="cut.mp4"):
        read_frames(cut, [0, 10])
    # webm streams: part of a file opens, and indices past the cut get the last good frame
    data = index_videos["webm_vp9"].read_bytes()
    cut = tmp_path / "cut.webm"
    cut.write_bytes(data[: len(data) * 6 // 10])
    info = probe_video(cut)
    assert info.num_frames == N_FRAMES  # header still claims the full length
    got = indices_of(read_frames(cut, [0, 2, 23], info))
    assert got[:2] == [0, 2]
    assert 2 <= got[2] < 23
    full = read_all_frames(cut)
    assert got[2] == indices_of(full)[-1]


def test_corrupt_first_packets_keep_the_frames_after_them(tmp_path, index_videos):
    # garbage over the first keyframe: the probe gave up on the first failing packet and the
    # whole video was skipped ("cannot decode first frame"), though frames 8-23 (the next GOPs)
    # decode, as a corrupt packet later in a file always did
    data = bytearray(index_videos["mp4_h264"].read_bytes())
    start = data.find(b"mdat") + 4
    data[start:start + 64] = np.random.default_rng(0).bytes(64)
    bad = tmp_path / "bad_start.mp4"
    bad.write_bytes(bytes(data))
    info = probe_video(bad)
    assert info.num_frames == N_FRAMES and (info.width, info.height) == (WIDTH, HEIGHT)
    got = indices_of(read_frames(bad, [0, 12, 20], info))
    assert got[1:] == [12, 20] and got[0] < 12  # before the damage's end: the first frame that decodes
    end = data.find(b"moov") - 4  # every packet damaged, the index (at the end) intact
    data[start:end] = np.random.default_rng(1).bytes(end - start)
    bad.write_bytes(bytes(data))
    with pytest.raises(VideoDecodeError, match="cannot decode first frame|no decodable"):
        probe_video(bad)


LIMIT = video_mod.MAX_BAD_PACKETS


def test_damaged_packets_count_across_seeks_up_to_the_limit(tmp_path, long_mjpeg):
    # Every other packet damaged, and every target one of them: each seek (seek_ahead_frames=0:
    # one per target) meets one damaged packet and gives the frame after it. The damaged packets
    # are counted across the seeks: one more than MAX_BAD_PACKETS fails the file, naming it (the
    # sparse decoder had read the rest as the end of the file, and given the last frame read).
    damaged = [2 * k + 1 for k in range(LIMIT)]
    at_limit = damage_packets(long_mjpeg, tmp_path / "at_limit.mov", damaged)
    stats = {}
    got = read_frames(at_limit, damaged, seek_ahead_frames=0, stats=stats)
    # (an MJPEG packet decodes on its own: its frame is the undamaged file's, bit for bit)
    assert torch.equal(got, read_all_frames(long_mjpeg)[[i + 1 for i in damaged]])
    assert stats["seeks"] >= LIMIT
    assert video_mod.decodable_frames(at_limit) == LONG_FRAMES - LIMIT
    over = damage_packets(long_mjpeg, tmp_path / "over.mov", damaged + [2 * LIMIT + 1])
    for read in (lambda: read_frames(over, damaged + [2 * LIMIT + 1], seek_ahead_frames=0),
                 lambda: video_mod.decodable_frames(over)):
        with pytest.raises(VideoDecodeError, match=f"more than {LIMIT} damaged video packets") as e:
            read()
        assert e.value.path == str(over) and str(over) in str(e.value)


def test_every_reader_passes_over_damaged_packets(tmp_path, index_videos, long_mjpeg):
    # read_all_frames, timed_frames (effvid stream, the audio-visual sampler) and the count from
    # the start (read_frames without timestamps) stopped at the first damaged packet: [0, 1, 2]
    src = index_videos["mov_mjpeg"]
    bad = damage_packets(src, tmp_path / "damaged.mov", [3, 10])
    kept = [i for i in range(N_FRAMES) if i not in (3, 10)]
    full = read_all_frames(src)  # (an MJPEG packet decodes on its own: the same pixels)
    assert torch.equal(read_all_frames(bad), full[kept])
    # by time, a target among the damaged gets the next frame; counted, the frames after them
    # are counted one or two early (a count cannot tell a lost frame)
    assert torch.equal(read_frames(bad, [2, 3, 4, 10, 23]), full[[2, 4, 4, 11, 23]])
    with av.open(str(bad)) as c:
        s = c.streams.video[0]
        timed = list(video_mod.timed_frames(c, s, bad=video_mod.BadPackets(bad)))
        assert [round(pts * s.time_base * FPS) for pts, _ in timed] == kept  # each at its own time
        c.seek(0)
        counted, n = video_mod._read_sequential(c, s, [2, 3, 10, 23], video_mod.BadPackets(bad))
    assert torch.equal(torch.stack([torch.from_numpy(video_mod.frame_to_rgb(f)) for _, f in timed]), full[kept])
    assert n == N_FRAMES - 2
    assert [decode_frame_index(video_mod.frame_to_rgb(counted[i]), N_FRAMES) for i in (2, 3, 10, 23)] \
        == [2, 4, 12, 23]
    # past MAX_BAD_PACKETS each names the file
    over = damage_packets(long_mjpeg, tmp_path / "over.mov", range(1, 2 * LIMIT + 2, 2))

    def timed_over():
        with av.open(str(over)) as c:
            list(video_mod.timed_frames(c, c.streams.video[0], bad=video_mod.BadPackets(over)))

    for read in (lambda: read_all_frames(over), timed_over):
        with pytest.raises(VideoDecodeError, match=f"more than {LIMIT} damaged video packets") as e:
            read()
        assert e.value.path == str(over) and str(over) in str(e.value)


def test_small_hevc_frames_encode(tmp_path):
    # libx265's CU-tree corrupted the heap on 40 and 48 px frames, and the process aborted.
    # A subprocess, so that a regression fails this test instead of killing the test run.
    script = f"""
import numpy as np
from effvid.data import write_video, read_all_frames
for size in (40, 48):
    for seed in range(3):
        frames = np.random.default_rng(seed).integers(0, 256, (12, size, size, 3), dtype=np.uint8)
        path = write_video(r"{tmp_path}/s%d_%d.mkv" % (size, seed), frames, codec="libx265")
        assert tuple(read_all_frames(path).shape) == (12, size, size, 3), path
print("done")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and "done" in proc.stdout, proc.stderr[-2000:]



def test_probe_with_pyav_logging_on_does_not_hang(index_videos):
    # probe_video decoded its one frame with frame threads; closing the file with packets still
    # in them hung the process whenever PyAV's logging was on (a thread's log callback waits
    # for the GIL that close() holds). A subprocess, so that a hang fails only this test.
    script = f"""
import av
av.logging.set_level(av.logging.ERROR)
from effvid.data import probe_video, read_frames
for _ in range(3):
    for path in {[str(index_videos[k]) for k in ("mp4_h264", "mkv_hevc", "avi_mpeg4", "webm_vp9")]!r}:
        info = probe_video(path)
        read_frames(path, [3, 20])
print("done", info.num_frames)
"""
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("probe_video hung with PyAV's logging on")
    assert proc.returncode == 0 and "done 24" in proc.stdout, proc.stderr[-2000:]

def test_frame_to_rgb_matches_pyav_conversion(index_videos):
    # one reused swscale context per thread must give PyAV's own per-frame conversion, across
    # pixel formats (a format change sets the context up again) and with resizing
    for key in ("mp4_h264", "mov_mjpeg", "mp4_gray", "mp4_h264"):
        with av.open(str(index_videos[key])) as c:
            for frame in c.decode(video=0):
                np.testing.assert_array_equal(video_mod.frame_to_rgb(frame), frame.to_ndarray(format="rgb24"))
                np.testing.assert_array_equal(video_mod.frame_to_rgb(frame, 32, 24),
                                              frame.to_ndarray(format="rgb24", width=32, height=24))


def test_10_bit_video_reads_the_levels_of_8_bit(tmp_path):
    # swscale's packed-RGB output from 10-bit 4:2:0 read about 2 levels dark (grey 128 as 126).
    # Lossless 8- and 10-bit encodes of the same greys must read the same levels, and 10 bits
    # the source's (a colour in 8 bits reads ~2 levels off: its chroma has 8 bits).
    h, w = 32, 128
    ramp = np.tile(np.linspace(0, 255, w).round().astype(np.uint8)[None, :, None], (h, 1, 3))
    frames = np.stack([np.full((h, w, 3), 128, np.uint8), ramp, ramp[:, ::-1],
                       np.full((h, w, 3), (200, 60, 100), np.uint8)])
    ten, eight = (read_frames(write_video(tmp_path / f"{fmt}.mp4", frames, pix_fmt=fmt, crf=0),
                              range(4)).numpy().astype(int)
                  for fmt in ("yuv420p10le", "yuv420p"))
    assert (ten[0] == 128).all(), np.unique(ten[0])
    assert np.abs(ten[:3] - eight[:3]).max() <= 1, np.abs(ten[:3] - eight[:3]).max()
    assert np.abs(ten - frames).max() <= 1, np.abs(ten - frames).max()
    assert abs((ten - frames).mean()) < 0.3, (ten - frames).mean()


def test_frame_conversion_in_forked_workers(index_videos, tmp_path):
    # The parent converts frames of one size, then forked DataLoader workers convert frames of
    # another: an inherited swscale context with a thread pool hung the workers. Subprocess
    # with a timeout, so that a hang fails this test instead of stalling the run.
    small = tmp_path / "small.mp4"
    script = f"""
import numpy as np, torch
from effvid.data import read_frames, write_video
write_video(r"{small}", np.full((6, 32, 32, 3), 90, np.uint8))
big = read_frames(r"{index_videos['mp4_h264']}", [0, 5])  # 64x48, in the parent

class Clips(torch.utils.data.Dataset):
    def __len__(self):
        return 4
    def __getitem__(self, i):
        return read_frames(r"{small}", [i])

loader = torch.utils.data.DataLoader(Clips(), batch_size=2, num_workers=2,
                                     multiprocessing_context="fork")
frames = torch.cat(list(loader))
assert frames.shape == (4, 1, 32, 32, 3) and abs(frames.float().mean() - 90) < 3, frames.float().mean()
print("done", tuple(big.shape))
"""
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("DataLoader workers hung converting frames after fork")
    assert proc.returncode == 0 and "done (2, 48, 64, 3)" in proc.stdout, proc.stderr[-2000:]


def test_timed_frames_after_scene_cut_keyframes_in_b_frame_avi(tmp_path):
    # x264 (veryfast: B-frames) puts keyframes at scene cuts, at irregular places, when the
    # picture changes abruptly; after a seek the frames are timed from where the first is shown
    # (_avi_landing), checked against the frames decoded from the start (by their pixels, not
    # decode_frame_index: with many frames the pattern's grey levels step by less than one)
    n = 240
    p = video_mod.write_video(tmp_path / "scenecut.avi", index_pattern_frames(n), fps=25, gop=100000)
    with av.open(str(p)) as c:
        s = c.streams.video[0]
        keys = [pk.dts for pk in c.demux(s) if pk.size and pk.is_keyframe]
        c.seek(0)
        seq = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    assert len(seq) == n and len(keys) > 3 and any(k % 25 for k in keys[1:])  # scene cuts
    for k in keys[1:]:
        for target in (k, k + 2):
            with av.open(str(p)) as c:
                s = c.streams.video[0]
                got = list(zip(range(8), video_mod.timed_frames(c, s, target, bad=video_mod.BadPackets(p))))
                assert video_mod.reordered_avi(c, s)
            assert got and got[0][1][0] <= target
            for _, (pts, frame) in got:
                assert np.array_equal(frame.to_ndarray(format="rgb24"), seq[pts]), (k, target, pts)


# ---------------------------------------------------------------------------------------------
# More containers: MPEG-TS (.ts/.mts/.m2ts), 3GP, FLV, ASF/WMV, each with its typical codecs

def _write_with_audio(path, video_codec, audio=None, fmt=None, options=None, bf=None, n=N_FRAMES,
                      fps=FPS, gop=8):
    """An index video (128x96: H.263 takes only its few sizes) with a tone in ``audio``
    ``(codec, rate)``, the two interleaved as a camera's or an encoder's would be."""
    frames = index_pattern_frames(n, 96, 128)
    with av.open(str(path), "w", format=fmt, options=options or {}) as out:
        vs = out.add_stream(video_codec, rate=fps, options={"bf": str(bf)} if bf is not None else {})
        vs.width, vs.height, vs.pix_fmt = 128, 96, "yuv420p"
        vs.codec_context.gop_size = gop
        if video_codec == "libx264":
            vs.codec_context.options = {**vs.codec_context.options, "crf": "18"}
        else:
            vs.codec_context.bit_rate = 2_000_000
            if bf:
                vs.codec_context.max_b_frames = bf
        a = None
        if audio:
            a = out.add_stream(audio[0], rate=audio[1])
            a.layout, a.codec_context.bit_rate = "mono", 64000
        sent = 0
        for i in range(n + 1):
            while a is not None and sent <= i * audio[1] / fps:  # audio up to the frame's time
                step = a.codec_context.frame_size or 1024
                samples = np.zeros((1, step), np.float32 if a.format.name.startswith("flt") else np.int16)
                if a.format.name.startswith("s32"):
                    samples = samples.astype(np.int32)
                af = av.AudioFrame.from_ndarray(samples, format=a.format.name, layout="mono")
                af.sample_rate, af.pts = audio[1], sent
                out.mux(a.encode(af))
                sent += step
            if i < n:
                vf = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
                vf.pts = i
                out.mux(vs.encode(vf))
        out.mux(vs.encode())
        if a is not None:
            out.mux(a.encode())
    return path


MORE_CONTAINERS = {
    # broadcast / camcorder MPEG-TS: B-frames, timestamps from 1.4 s (FFmpeg's default delay)
    "h264.ts": dict(video_codec="libx264", bf=3, audio=("aac", 48000), options={"max_delay": "700000"}),
    "mpeg2.mts": dict(video_codec="mpeg2video", bf=2, audio=("mp2", 48000), fmt="mpegts",
                      options={"mpegts_m2ts_mode": "1"}),
    "hevc.m2ts": dict(video_codec="libx265", fmt="mpegts", options={"mpegts_m2ts_mode": "1"}),
    "h263.3gp": dict(video_codec="h263", audio=("libopencore_amrnb", 8000)),
    # MP3's encoder delay starts the video 50 ms in: seek(0) failed (EPERM) in FLV
    "flv1_mp3.flv": dict(video_codec="flv", audio=("libmp3lame", 22050)),
    "h264.flv": dict(video_codec="libx264", bf=3, audio=("aac", 44100)),
    # ASF gives the video the file's duration (audio's too): 25 frames were counted for 24
    "wmv2.wmv": dict(video_codec="wmv2", audio=("wmav2", 44100)),
    "msmpeg4.asf": dict(video_codec="msmpeg4"),
}


@pytest.mark.parametrize("name", sorted(MORE_CONTAINERS))
def test_more_containers_read_the_requested_frames(tmp_path, name):
    spec = MORE_CONTAINERS[name]
    codecs = [spec["video_codec"]] + ([spec["audio"][0]] if "audio" in spec else [])
    if missing := [c for c in codecs if c not in av.codecs_available]:
        pytest.skip(f"this FFmpeg lacks {missing}")
    path = _write_with_audio(tmp_path / name, **spec)
    assert path.suffix in video_mod.VIDEO_EXTENSIONS
    info = probe_video(path)
    assert (info.num_frames, info.fps, info.width, info.height) == (N_FRAMES, FPS, 128, 96)
    assert info.has_audio == ("audio" in spec)
    idx = [23, 0, 5, 5, 3, 12, 13, 1, 22, 40]  # unsorted, repeated, adjacent, past the end
    assert indices_of(read_frames(path, idx, info)) == [min(i, N_FRAMES - 1) for i in idx]
    assert indices_of(read_frames(path, lambda i: range(i.num_frames))) == list(range(N_FRAMES))


def test_mpeg_ts_cut_mid_gop_starts_at_its_first_keyframe(tmp_path):
    # A recording begun mid-broadcast: the frames before the first keyframe do not decode. They
    # were counted (32 frames for 24), indices 0-7 all gave the keyframe, and the reader's seek
    # to frame 0 (the first keyframe, after start_time) landed on the next keyframe.
    data = _write_with_audio(tmp_path / "full.ts", "libx264", bf=3, audio=("aac", 48000),
                             n=40, options={"max_delay": "700000"}).read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[len(data) * 3 // 10 // 188 * 188:])  # whole 188-byte TS packets
    with av.open(str(cut)) as c:
        seq = [decode_frame_index(f.to_ndarray(format="rgb24"), 40) for f in c.decode(video=0)]
    k = seq[0]
    assert k > 0 and seq == list(range(k, 40))  # starts at a keyframe after the cut
    info = probe_video(cut)
    assert info.num_frames == 40 - k
    idx = [0, 1, 5, info.num_frames - 1, 2, 0]
    assert [decode_frame_index(f.numpy(), 40) for f in read_frames(cut, idx, info)] == [k + i for i in idx]
    # and cut at both ends (a truncated file): the last index gets the last frame that decodes
    end = tmp_path / "both.ts"
    end.write_bytes(cut.read_bytes()[: len(cut.read_bytes()) * 2 // 3])
    with av.open(str(end)) as c:
        last = [decode_frame_index(f.to_ndarray(format="rgb24"), 40) for f in c.decode(video=0)]
    info = probe_video(end)
    got = [decode_frame_index(f.numpy(), 40) for f in read_frames(end, [0, 3, 1000], info)]
    assert got == [k, k + 3, last[-1]]


def test_an_mp4_cut_inside_its_header_is_said_to_be_truncated(tmp_path):
    # "head -c 1500 ok.mp4 > cut.mp4" of a file with its header first (faststart): FFmpeg opens
    # it with no stream, which was "no video stream in container", as for an audio file
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width = stream.height = 32
        for k in range(16):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), 16 * k, np.uint8))))
        container.mux(stream.encode())
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:100])
    with pytest.raises(VideoDecodeError) as e:
        video_mod.open_video(cut)
    assert e.value.reason == ("no readable stream in container (100 bytes): the file is likely truncated, "
                              "or a download that did not finish")
    # an audio file has no video stream indeed
    sound = tmp_path / "sound.mp4"
    with av.open(str(sound), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for k in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, 1024 * k
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(VideoDecodeError) as e:
        video_mod.open_video(sound)
    assert e.value.reason == "no video stream in container"
