"""``effvid prepare``: a training copy of a video collection, checked on real small videos.

Frames are made so that each one names itself: the bottom half is grey at a level that counts
the frames, the top half has red rising left to right and green top to bottom, and a white block
marks the top-left corner, so a dropped, repeated, flipped or turned frame shows in the values.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from effvid.av.audio import read_audio
from effvid.cli import main
from effvid.data import build_dataset, probe_video, read_all_frames, write_video
from effvid.data.datasets import BadSample, scan_class_folders
from effvid.data.files import broken_link
from effvid.data.prepare import REPORT_NAME, output_size, part_path, prepare_folder, prepare_video
from effvid.data.video import MAX_BAD_PACKETS, VideoDecodeError
from effvid.errors import BadValue

from conftest import FPS, N_FRAMES, damage_packets, mpeg_level, write_mpeg_program_stream

ROOT = Path(__file__).resolve().parents[1]


def _step(num_frames: int) -> float:
    return min(8.0, 200.0 / max(1, num_frames - 1))  # grey levels 16 to 216 at most


def named_frames(num_frames: int, height: int, width: int) -> np.ndarray:
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    top = height // 2
    frames[:, :top, :, 0] = np.linspace(30, 220, width)[None, None, :]
    frames[:, :top, :, 1] = np.linspace(30, 220, top)[None, :, None]
    frames[:, :top, :, 2] = 128
    frames[:, top:] = np.round(16 + _step(num_frames) * np.arange(num_frames))[:, None, None, None]
    frames[:, : height // 4, : width // 4] = 255
    return frames


def frame_numbers(frames: torch.Tensor, num_frames: int) -> list[int]:
    """The index each frame of :func:`named_frames` shows (its bottom quarter's grey level)."""
    grey = frames[:, frames.shape[1] * 3 // 4:].float().flatten(1).median(dim=1).values
    return [int(round((g - 16) / _step(num_frames))) for g in grey.tolist()]


def resized(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    x = frames.permute(0, 3, 1, 2).float()
    return F.interpolate(x, size=(height, width), mode="bicubic", antialias=True,
                         align_corners=False).clamp(0, 255).permute(0, 2, 3, 1)


def keyframe_times(path) -> list[float]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return sorted(round(float(p.pts * stream.time_base), 4) for p in c.demux(stream)
                      if p.size and p.is_keyframe)


def frame_times(path) -> list[float]:
    with av.open(str(path)) as c:
        return [round(f.time, 4) for f in c.decode(video=0)]


def assert_keyframe_every(path, interval: float) -> None:
    """The first frame at or after every ``interval`` seconds is a keyframe (x264 may add more,
    at scene cuts)."""
    times, keys = frame_times(path), set(keyframe_times(path))
    for start in np.arange(0, times[-1] + 1e-9, interval):
        first = min(t for t in times if t >= start - 1e-6)
        assert first in keys, (start, first, sorted(keys))


def test_output_size():
    assert output_size(1280, 720, 256) == (456, 256)  # 455.1 rounded to even
    assert output_size(720, 1280, 256) == (256, 456)
    assert output_size(320, 240, 256) == (320, 240)  # never enlarged
    assert output_size(63, 47, 256) == (62, 46)  # odd sides lose a column / row
    assert output_size(101, 50, 25) == (50, 24)  # 50.5 -> 50; 25 -> 24


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotated_video_is_written_upright_resized_with_its_frames(tmp_path, rotation):
    # stored turned clockwise by `rotation` degrees, with a display rotation of `rotation`
    # degrees counter-clockwise: shown (and read) upright, 64 wide and 96 high
    upright = named_frames(12, 96, 64)
    src = write_video(tmp_path / "turned.mp4", np.rot90(upright, k=-rotation // 90, axes=(1, 2)), fps=8,
                      rotation=rotation, gop=100)
    original = read_all_frames(src)
    assert probe_video(src).rotation == rotation and original.shape == (12, 96, 64, 3)
    assert (original.float() - torch.from_numpy(upright).float()).abs().mean() < 2

    info = prepare_video(src, tmp_path / "out" / "turned.mp4", short_side=32)
    assert (info.width, info.height, info.rotation, info.num_frames) == (32, 48, 0, 12)
    got = read_all_frames(info.path)
    assert got.shape == (12, 48, 32, 3) and frame_numbers(got, 12) == list(range(12))
    # Against the reader's picture of the original resized by torch (bicubic, antialiased): 2.0
    # levels off on average for each rotation (1.3 of it with crf 0: 4:2:0 chroma at 16x24 on
    # the colour ramps and the block's edges; the rest from crf 23); 4 is the bound. A picture
    # flipped or turned the wrong way is 26 (left-right: the grey half stays) to 90 levels off.
    reference = resized(original, 48, 32)
    error = (got.float() - reference).abs().mean().item()
    assert error < 4, error
    for wrong in (reference.flip(1), reference.flip(2), reference.flip(1, 2)):
        assert (got.float() - wrong).abs().mean().item() > 20
    assert got[:, :8, :4].float().mean() > 240  # the white block is in the top-left corner
    assert not os.path.exists(tmp_path / "out" / ".turned.effvid-part.mp4")


def test_keyframes_every_interval_frame_count_timestamps_and_audio(tmp_path):
    fps, n = 4, 20  # 5 s
    t = np.arange(5 * 16000) / 16000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    src = write_video(tmp_path / "src.mp4", named_frames(n, 48, 64), fps=fps, gop=250, audio=tone)
    assert keyframe_times(src) == [0.0]

    info = prepare_video(src, tmp_path / "out.mp4", short_side=32, keyframe_interval=1.0)
    assert (info.width, info.height, info.num_frames, info.fps) == (42, 32, n, fps)
    assert_keyframe_every(info.path, 1.0)
    assert frame_times(info.path) == frame_times(src)
    assert frame_numbers(read_all_frames(info.path), n) == list(range(n))
    assert info.has_audio
    kept, original = read_audio(info.path).waveform, read_audio(src).waveform
    assert kept.shape == original.shape  # same length, same start (AAC: lag 0)
    assert np.corrcoef(kept.numpy(), original.numpy())[0, 1] > 0.99

    info = prepare_video(src, tmp_path / "half.mp4", short_side=32, keyframe_interval=0.5,
                         audio=False, fps=2)
    assert not info.has_audio and (info.num_frames, info.fps) == (n // 2, 2)
    assert frame_numbers(read_all_frames(info.path), n) == list(range(0, n, 2))  # every other frame
    assert keyframe_times(info.path) == [k / 2 for k in range(10)]  # every frame: 0.5 s apart


def test_variable_frame_rate_timestamps_are_kept(tmp_path):
    times = [0.0, 0.1, 0.15, 0.4, 0.45, 0.5, 0.9, 1.3, 1.35, 2.1, 2.2, 2.25]
    src = write_video(tmp_path / "vfr.mkv", named_frames(len(times), 48, 64), fps=8, timestamps=times)
    assert frame_times(src) == times
    info = prepare_video(src, tmp_path / "out" / "vfr.mkv", short_side=32, keyframe_interval=1.0)
    assert frame_times(info.path) == times
    assert frame_numbers(read_all_frames(info.path), len(times)) == list(range(len(times)))
    assert_keyframe_every(info.path, 1.0)  # the first frames at or after 0, 1 and 2 s
    assert {1.3, 2.1} <= set(keyframe_times(info.path))


@pytest.mark.parametrize("options", [{"bf": "0"}, {}])
def test_an_h264_avi_copy_shows_each_frame_at_its_number(tmp_path, options):
    # AVI stores no presentation times; FFmpeg makes up H.264's as dts + 1: the copy kept them,
    # its picture a frame after its sound (B-frames: in decode order)
    fps, n = 8, 16
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(2 * 16000) / 16000)
    src = write_video(tmp_path / "h264.avi", named_frames(n, 48, 64), fps=fps, codec="libx264",
                      gop=8, options=options, audio=tone)
    info = prepare_video(src, tmp_path / "out.mp4", short_side=32)
    assert frame_times(info.path) == [i / fps for i in range(n)]
    assert frame_numbers(read_all_frames(info.path), n) == list(range(n))


@pytest.mark.parametrize("name, kwargs", [
    ("gray.mp4", dict(codec="libx264", pix_fmt="gray")),  # grayscale, odd sizes
    ("odd.webm", dict(codec="libvpx-vp9", pix_fmt="yuv444p")),
    ("odd.avi", dict(codec="mjpeg")),  # full range (yuvj)
    ("rgb.mov", dict(codec="png")),  # RGB
])
def test_small_and_odd_sized_videos_keep_their_pixels(tmp_path, name, kwargs):
    src = write_video(tmp_path / name, named_frames(10, 47, 63), fps=8, **kwargs)
    original = read_all_frames(src)
    assert original.shape == (10, 47, 63, 3)
    info = prepare_video(src, tmp_path / "out" / name, short_side=256, keyframe_interval=0.5)
    got = read_all_frames(info.path)
    assert got.shape == (10, 46, 62, 3)  # not enlarged: the odd last row and column dropped
    assert frame_numbers(got, 10) == frame_numbers(original, 10) == list(range(10))
    # The same pixels through 4:2:0 and a second lossy encoding: 4:2:0 alone moves this
    # picture (colour ramps, the block's edges; 4:4:4, RGB or greyscale sources) by 2.4 levels
    # on average; measured 1.0 (greyscale) to 3.1 (RGB); 4 is the bound.
    assert (got.float() - original[:, :46, :62].float()).abs().mean() < 4
    assert_keyframe_every(info.path, 0.5)


def test_a_copy_of_damaged_packets_loses_only_their_frames(tmp_path, index_videos, long_mjpeg):
    # As read_frames reads the original: the frames of a damaged packet are lost, the others
    # keep their times; one damaged packet more than MAX_BAD_PACKETS fails the video, naming it
    # (the copy had stopped there, its frames after that lost without a word).
    src = damage_packets(index_videos["mov_mjpeg"], tmp_path / "damaged.mov", [3, 10])
    kept = [i for i in range(N_FRAMES) if i not in (3, 10)]
    info = prepare_video(src, tmp_path / "out" / "damaged.mp4", short_side=32)
    assert frame_times(info.path) == [i / FPS for i in kept]
    assert frame_numbers(read_all_frames(info.path), N_FRAMES) == kept
    damaged = [2 * k + 1 for k in range(MAX_BAD_PACKETS + 1)]
    src = damage_packets(long_mjpeg, tmp_path / "over.mov", damaged)
    dst = tmp_path / "out" / "over.mp4"
    with pytest.raises(VideoDecodeError, match=f"more than {MAX_BAD_PACKETS} damaged video packets") as e:
        prepare_video(src, dst, short_side=16)
    assert e.value.path == str(src)
    assert not dst.exists() and not part_path(dst).exists()


def make_collection(root: Path) -> Path:
    """Class folders with a list file and a class file beside them, a note, and two bad videos."""
    frames = named_frames(8, 48, 64)
    write_video(root / "videos" / "jump" / "a.mp4", frames, fps=8)
    write_video(root / "videos" / "jump" / "b.webm", frames, fps=8, codec="libvpx-vp9")
    write_video(root / "videos" / "run" / "c.avi", frames, fps=8, codec="mpeg4")
    write_video(root / "videos" / "run" / "d.mkv", frames, fps=8)
    (root / "videos" / "run" / "empty.mp4").write_bytes(b"")
    (root / "videos" / "run" / "noise.mp4").write_bytes(b"not a video" * 100)
    (root / "train.txt").write_text("videos/jump/a.mp4 1\nvideos/run/c.avi 2\nvideos/run/d.mkv 2\n")
    (root / "classInd.txt").write_text("1 jump\n2 run\n")
    (root / "README.md").write_text("notes\n")
    return root


def test_folder_layout_kept_bad_videos_named_and_rerun_skips(tmp_path, capsys):
    src, dst = make_collection(tmp_path / "src"), tmp_path / "dst"
    args = ["prepare", str(src), str(dst), "--short-side", "32", "--quiet"]
    assert main(args + ["--workers", "2"]) == 1
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[0].startswith("prepared 4 of 6 videos in ")
    assert out[1] == f"copied 2 annotation file(s); left out 1 other file(s), e.g. {src / 'README.md'}"
    assert out[2:5] == ["  found 2 unreadable video(s), copied unchanged:",
                        f"    {src / 'videos/run/empty.mp4'}: file is empty (0 bytes)",
                        f"    {src / 'videos/run/noise.mp4'}: cannot open container (Invalid data "
                        "found when processing input)"]
    assert captured.err.splitlines()[-1] == ("effvid prepare: 2 of 6 videos are unreadable and were copied "
                                             "unchanged")
    written = sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file())
    assert written == sorted([REPORT_NAME, "classInd.txt", "train.txt", "videos/jump/a.mp4", "videos/jump/b.webm",
                              "videos/run/c.avi", "videos/run/d.mkv", "videos/run/empty.mp4",
                              "videos/run/noise.mp4"])  # and no temporary file
    for bad in ("videos/run/empty.mp4", "videos/run/noise.mp4"):
        assert (dst / bad).read_bytes() == (src / bad).read_bytes()
    assert (dst / "train.txt").read_text() == (src / "train.txt").read_text()
    report = (dst / REPORT_NAME).read_text()
    assert "videos: 4 written, 0 already there, 2 unreadable (copied unchanged), 0 broken links (made again as links)" in report
    assert "copied unchanged (unreadable):" in report
    assert f"  {src / 'videos/run/empty.mp4'}: file is empty (0 bytes)" in report
    for video in ("videos/jump/b.webm", "videos/run/c.avi"):
        with av.open(str(dst / video)) as c:
            assert c.streams.video[0].codec_context.name == ("vp9" if video.endswith("webm") else "mpeg4")
        assert frame_numbers(read_all_frames(dst / video), 8) == list(range(8))

    # the list file, with the class file found beside it, reads the prepared videos
    dataset = build_dataset(dst / "train.txt", split="all", num_segments=4, train=False, size=32)
    assert dataset.classes == ["jump", "run"] and dataset.labels == [0, 1, 1]
    assert [s.path for s in dataset.samples] == [str(dst / "videos/jump/a.mp4"), str(dst / "videos/run/c.avi"),
                                                 str(dst / "videos/run/d.mkv")]
    assert dataset[1]["video"].shape == (4, 3, 32, 32)

    # a rerun writes nothing again (the unreadable videos are tried again and named again);
    # other settings are refused while videos are there
    stamps = {p: p.stat().st_mtime_ns for p in dst.rglob("*.m*")}
    assert main(args + ["--workers", "0"]) == 1
    assert capsys.readouterr().out.splitlines()[0].startswith("prepared 0 of 6 videos in ")
    assert stamps == {p: p.stat().st_mtime_ns for p in dst.rglob("*.m*")}
    assert "videos: 0 written, 4 already there, 2 unreadable (copied unchanged)," in (dst / REPORT_NAME).read_text()
    assert main(["prepare", str(src), str(dst), "--short-side", "48", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "holds 4 videos prepared with other settings: short_side 32 (now 48)" in err and "--overwrite" in err
    assert main(["prepare", str(src), str(dst), "--short-side", "48", "--overwrite", "--quiet", "--workers", "0"]) == 1
    assert capsys.readouterr().out.startswith("prepared 4 of 6 videos in ")
    assert probe_video(dst / "videos/run/d.mkv").height == 48


def test_a_list_file_naming_an_unreadable_video_reads_the_copy_as_the_original(tmp_path, capsys):
    # The unreadable video was left out of DST: its list file stopped training ("line 4: video
    # not found"), where SRC's trains and counts it unreadable; effvid check called it missing
    src, dst = make_collection(tmp_path / "src"), tmp_path / "dst"
    (src / "all.txt").write_text("videos/jump/a.mp4 1\nvideos/run/c.avi 2\nvideos/run/empty.mp4 2\n"
                                 "videos/run/noise.mp4 2\n")
    args = ["prepare", str(src), str(dst), "--short-side", "32", "--quiet", "--workers", "0"]
    assert main(args) == 1
    capsys.readouterr()
    for root in (src, dst):
        dataset = build_dataset(root / "all.txt", split="all", num_segments=4, train=False, size=32)
        assert [s.path for s in dataset.samples] == [str(root / "videos" / v) for v in (
            "jump/a.mp4", "run/c.avi", "run/empty.mp4", "run/noise.mp4")]
        assert [isinstance(dataset[k], BadSample) for k in range(4)] == [False, False, True, True]
        assert dataset[3].reason.startswith("cannot open container")
        report = root.parent / f"check_{root.name}.json"
        assert main(["check", str(root / "all.txt"), "--json", str(report), "--quiet"]) == 1
        found = json.loads(report.read_text())
        capsys.readouterr()
        assert found["missing"] == []
        assert sorted(found["unreadable"], key=str) == sorted([
            {"path": str(root / "videos/run/empty.mp4"), "reason": "file is empty (0 bytes)"},
            {"path": str(root / "videos/run/noise.mp4"), "reason": "cannot open container (Invalid data "
                                                                   "found when processing input)"}],
            key=str), found

    # A copied-unchanged video is not "done": a rerun tries it again, and prepares it once its
    # source is mended
    write_video(src / "videos/run/noise.mp4", named_frames(8, 48, 64), fps=8)
    assert main(args) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("prepared 1 of 6 videos in ") and "(4 already there)" in out[0]
    assert out[2:4] == ["  found 1 unreadable video(s), copied unchanged:",
                        f"    {src / 'videos/run/empty.mp4'}: file is empty (0 bytes)"]
    assert frame_numbers(read_all_frames(dst / "videos/run/noise.mp4"), 8) == list(range(8))
    assert probe_video(dst / "videos/run/noise.mp4").height == 32


def test_broken_links_are_made_again_and_named(tmp_path, capsys):
    # Links whose targets are missing: a video's was named "video file not found; not copied"
    # and left out of DST (whose class folders then trained without it, without a word); an
    # annotation file's stopped the run, naming no link
    src, dst = tmp_path / "src", tmp_path / "out" / "dst"
    write_video(src / "jump" / "a.mp4", named_frames(8, 48, 64), fps=8)
    (src / "run").mkdir()
    moved = tmp_path / "moved"
    os.symlink(moved / "b.mp4", src / "run" / "b.mp4")
    os.symlink("../../moved/c.mp4", src / "run" / "c.mp4")  # relative: from DST it names another file
    os.symlink(moved / "train.txt", src / "train.txt")
    args = ["prepare", str(src), str(dst), "--short-side", "32", "--quiet", "--workers", "0"]
    assert main(args) == 1
    captured = capsys.readouterr()
    # each is counted once, as what was done: the list file was counted as copied and as a
    # broken link, and the videos as "unreadable video(s), copied unchanged"
    assert captured.out.splitlines()[1:8] == [
        "copied 0 annotation file(s)",
        "  found 2 video(s) that are broken links, made again as links:",
        f"    {src / 'run/b.mp4'}: broken link to {moved / 'b.mp4'}",
        f"    {src / 'run/c.mp4'}: broken link to ../../moved/c.mp4",
        "  1 annotation file(s) are broken links, made again as links:",
        f"    {src / 'train.txt'}: broken link to {moved / 'train.txt'}",
        f"wrote {dst / REPORT_NAME}"]
    assert captured.err.splitlines() == [
        "effvid prepare: 2 of 3 videos are broken links and were made again as links",
        "effvid prepare: 1 annotation file(s) are broken links and were made again as links"]
    for name in ("run/b.mp4", "run/c.mp4", "train.txt"):  # pointing where SRC's point
        assert broken_link(dst / name) and os.path.realpath(dst / name) == os.path.realpath(src / name)
    report = (dst / REPORT_NAME).read_text().splitlines()
    assert report[3:] == [
        "videos: 1 written, 0 already there, 0 unreadable (copied unchanged), 2 broken links (made again as links)",
        "annotation files copied: 0, broken links (made again as links): 1",
        "other files left out: 0",
        "named like videos but not regular files (left out): 0",
        "videos that are broken links (made again as links):",
        f"  {src / 'run/b.mp4'}: broken link to {moved / 'b.mp4'}",
        f"  {src / 'run/c.mp4'}: broken link to ../../moved/c.mp4",
        "annotation files that are broken links (made again as links):",
        f"  {src / 'train.txt'}: broken link to {moved / 'train.txt'}"]
    missing = []
    scan_class_folders(dst, missing=missing)  # training and effvid check name them as in SRC
    assert sorted(path for path, *_ in missing) == [str(dst / "run/b.mp4"), str(dst / "run/c.mp4")]

    # the targets back, a rerun prepares them
    for name in ("b.mp4", "c.mp4"):
        write_video(moved / name, named_frames(8, 48, 64), fps=8)
    assert main(args) == 1  # the list file's target is still missing
    assert capsys.readouterr().out.startswith("prepared 2 of 3 videos in ")
    for name in ("run/b.mp4", "run/c.mp4"):
        assert not os.path.islink(dst / name) and probe_video(dst / name).height == 32


def test_a_fifo_named_like_a_video_is_named_and_left_out(tmp_path, capsys):
    # it was dropped without a word (training on SRC names it as missing), and never opened: a
    # FIFO's open waits for a writer
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_video(src / "jump" / "a.mp4", named_frames(8, 48, 64), fps=8)
    os.mkfifo(src / "jump" / "b.mp4")
    os.mkfifo(src / "jump" / "notes.fifo")  # not named like a video: one more "other file"
    assert main(["prepare", str(src), str(dst), "--short-side", "32", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[1:4] == [
        f"copied 0 annotation file(s); left out 1 other file(s), e.g. {src / 'jump/notes.fifo'}",
        "  1 path named like a video is not a regular file, left out:",
        f"    {src / 'jump/b.mp4'}: not a regular file (a FIFO)"]
    assert captured.err == ("effvid prepare: 1 path named like a video is not a regular file and was left "
                            "out (training on SRC counts it as missing)\n")
    report = (dst / REPORT_NAME).read_text().splitlines()
    assert report[5:] == ["other files left out: 1", "named like videos but not regular files (left out): 1",
                          "named like videos but not regular files (left out):",
                          f"  {src / 'jump/b.mp4'}: not a regular file (a FIFO)"]
    assert sorted(p.name for p in (dst / "jump").iterdir()) == ["a.mp4"]


def test_refused_folders_are_named(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for dst, says in ((src, "is SRC"), (src / "copy", "is inside SRC"), (tmp_path, "is inside DST")):
        assert main(["prepare", str(src), str(dst)]) == 2
        err = capsys.readouterr().err
        assert says in err and repr(str(dst)) in err
    assert main(["prepare", str(tmp_path / "missing"), str(tmp_path / "dst")]) == 2
    assert f"source folder not found: {str(tmp_path / 'missing')!r}" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["prepare", str(src), str(tmp_path / "file")]) == 2
    assert f"DST {str(tmp_path / 'file')!r} is a file" in capsys.readouterr().err


@pytest.mark.parametrize("stop", ["ctrl-c", "kill"])
def test_a_stopped_run_leaves_no_partial_video_and_a_rerun_finishes(tmp_path, stop):
    src, dst = tmp_path / "src", tmp_path / "dst"
    frames = named_frames(240, 240, 320)  # about 0.2 s each to prepare, two at a time
    for k in range(8):
        write_video(src / f"v{k}.mp4", frames, fps=30, preset="ultrafast")
    command = [sys.executable, "-m", "effvid", "prepare", str(src), str(dst), "--workers", "2", "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(command, env=env, start_new_session=True, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(dst.glob(".*.effvid-part.mp4")) and time.monotonic() < deadline:
        time.sleep(0.005)
    if stop == "ctrl-c":  # the terminal signals the whole process group
        os.killpg(proc.pid, signal.SIGINT)
    else:  # kill PID: the command's process alone, which stops its workers
        os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err.strip()) == ((130, "effvid prepare: interrupted") if stop == "ctrl-c"
                                              else (128 + signal.SIGTERM, ""))
    assert not list(dst.glob(".*effvid-part*"))
    done = list(dst.glob("*.mp4"))
    assert len(done) < 8 and all(probe_video(video).num_frames == 240 for video in done)  # complete
    assert "status: not finished" in (dst / REPORT_NAME).read_text()
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.startswith(f"prepared {8 - len(done)} of 8 videos in ")
    assert [probe_video(p).num_frames for p in sorted(dst.glob("*.mp4"))] == [240] * 8


@pytest.mark.parametrize("flag, value, says", [
    ("--short-side", "1", "must be >= 2 (the sides are made even), got 1"),
    ("--short-side", "0", "must be >= 1, got 0"),
    ("--keyframe-interval", "0", "must be > 0, got 0"),
    ("--keyframe-interval", "inf", "must be > 0, got inf"),
    ("--fps", "0.0001", "must be >= 0.001 (a frame every 1000 s), got 0.0001"),
    ("--crf", "52", "must be 0 to 51, got 52"),
    ("--workers", "-1", "must be >= 0, got -1"),
])
def test_flags_out_of_bounds_are_refused_before_anything_is_written(tmp_path, capsys, flag, value, says):
    # --short-side 1 passed the parser; the library refused it at the first video, in its own
    # names, after DST had its list files and a "not finished" report
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_video(src / "a.mp4", named_frames(8, 48, 64), fps=8)
    with pytest.raises(SystemExit) as e:
        main(["prepare", str(src), str(dst), flag, value, "--quiet"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"effvid prepare: error: argument {flag}: {says}"
    assert not dst.exists()


@pytest.mark.parametrize("setting, value, says", [
    ("short_side", 1, "short_side must be an integer >= 2 (the sides are made even), got 1"),
    ("keyframe_interval", float("inf"), "keyframe_interval must be a finite number of seconds > 0, got inf"),
    ("crf", 2.5, "crf must be an integer from 0 to 51, got 2.5"),
    ("fps", 0, "fps must be None or a number >= 0.001, got 0"),
])
def test_library_settings_out_of_bounds_are_named_one_at_a_time(tmp_path, setting, value, says):
    src, dst = write_video(tmp_path / "src" / "a.mp4", named_frames(8, 48, 64), fps=8), tmp_path / "dst"
    with pytest.raises(BadValue) as e:
        prepare_video(src, dst / "a.mp4", **{setting: value})
    assert (str(e.value), e.value.name) == (says, setting)
    with pytest.raises(BadValue, match=f"^{re.escape(says)}$"):
        prepare_folder(src.parent, dst, **{setting: value})
    assert not dst.exists()


def test_a_keyframe_interval_longer_than_the_video_gives_one_keyframe(tmp_path):
    # it overflowed the encoder's GOP size, a traceback
    src = write_video(tmp_path / "a.mp4", named_frames(8, 48, 64), fps=8)
    info = prepare_video(src, tmp_path / "out.mp4", short_side=32, keyframe_interval=1e12)
    assert info.num_frames == 8 and keyframe_times(info.path) == [0.0]


def test_prepare_under_torchrun_is_refused(tmp_path, capsys, monkeypatch):
    # torchrun --nproc-per-node 2 ran two runs writing the same DST ("prepared 64 of 64" and
    # "prepared 30 of 64 (34 already there)")
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_video(src / "a.mp4", named_frames(8, 48, 64), fps=8)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert main(["prepare", str(src), str(dst), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        "effvid prepare: error: prepare runs in one process, which starts --workers processes itself; "
        "under torchrun (WORLD_SIZE=2) each process wrote the same DST: run it without torchrun "
        f"(effvid prepare {src} {dst} --workers N)\n")
    monkeypatch.setenv("LOCAL_RANK", "1")  # the others exit quietly, with the same status
    assert main(["prepare", str(src), str(dst), "--quiet"]) == 2
    assert capsys.readouterr().err == ""
    assert not dst.exists()


def stop_after(count: int):
    """A ``progress`` for prepare_folder that stops the run (as Ctrl-C does) once ``count``
    videos are done."""
    def progress(results, total):
        results = iter(results)
        for _ in range(count):
            yield next(results)
        raise KeyboardInterrupt
    return progress


def test_an_overwrite_with_new_settings_stopped_midway_is_finished_with_them(tmp_path, capsys):
    # The report named the new settings from the start, and the copies of the old ones were
    # still there: a rerun said "prepared 0 of 230 videos (224 already there)", "finished",
    # and effvid check found 185 videos at 32x32 and 39 at 16x16
    src, dst = tmp_path / "src", tmp_path / "dst"
    for k in range(5):
        write_video(src / "jump" / f"v{k}.mp4", named_frames(8, 48, 64), fps=8)
    prepare_folder(src, dst, short_side=32)
    with pytest.raises(KeyboardInterrupt):
        prepare_folder(src, dst, short_side=16, overwrite=True, progress=stop_after(1))
    assert "status: not finished" in (dst / REPORT_NAME).read_text()
    assert [probe_video(p).height for p in sorted(dst.glob("jump/*.mp4"))] == [16]  # no 32 left
    assert main(["prepare", str(src), str(dst), "--short-side", "16", "--quiet", "--workers", "0"]) == 0
    assert capsys.readouterr().out.startswith("prepared 4 of 5 videos in ")
    assert "status: finished" in (dst / REPORT_NAME).read_text()
    assert [probe_video(p).height for p in sorted(dst.glob("jump/*.mp4"))] == [16] * 5
    # and the old settings are refused now, as for any copy with other settings
    assert main(["prepare", str(src), str(dst), "--short-side", "32", "--quiet", "--workers", "0"]) == 2
    assert "holds 5 videos prepared with other settings: short_side 16 (now 32)" in capsys.readouterr().err


def test_videos_in_containers_prepare_does_not_write_are_copied_as_mp4_and_listed_so(tmp_path, capsys):
    # A .ts (or .mts, .m2ts, .3gp, .flv, .wmv, .asf) stopped the whole run at the first one:
    # "cannot write 'a/ok.ts'"; an .mpg was copied as an MPEG program stream, which is read by
    # counting its frames from its start, so its new keyframes did not speed reading it up
    src, dst = tmp_path / "src", tmp_path / "dst"
    n = 16
    write_video(src / "jump" / "a.ts", named_frames(n, 48, 64), fps=8, codec="libx264")  # B-frames
    write_mpeg_program_stream(src / "jump" / "b.mpg", 75, b_frames=2)  # some frames mistimed by FFmpeg
    write_video(src / "run" / "c.flv", named_frames(n, 48, 64), fps=8, codec="flv")
    write_video(src / "run" / "d.mp4", named_frames(n, 48, 64), fps=8)
    (src / "train.txt").write_text("jump/a.ts 1\r\n  jump/b.mpg 75 1\r\n# jump/a.ts 1\r\nrun/c.flv 2\r\n"
                                   "run/d.mp4 2\r\n")
    (src / "testlist.txt").write_text("jump/a.ts\nrun/c.flv\n")  # paths alone (UCF101's)
    (src / "absolute.txt").write_text(f"{src / 'jump/a.ts'} 1\n")  # names the original, still there
    (src / "classInd.txt").write_text("1 jump\n2 run\n")
    args = ["prepare", str(src), str(dst), "--short-side", "32", "--quiet", "--workers", "0"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("prepared 4 of 4 videos in ")
    assert out[1:3] == ["copied 4 annotation file(s)",
                        f"  3 video(s) copied as .mp4 under a new name, e.g. {src / 'jump/a.ts'} -> "
                        f"{dst / 'jump/a.mp4'}; rewrote 2 list file(s) with the new names"]
    written = sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file())
    assert written == sorted([REPORT_NAME, "absolute.txt", "classInd.txt", "testlist.txt", "train.txt",
                              "jump/a.mp4", "jump/b.mp4", "run/c.mp4", "run/d.mp4"])
    assert (dst / "train.txt").read_text() == ("jump/a.mp4 1\n  jump/b.mp4 75 1\n# jump/a.ts 1\nrun/c.mp4 2\n"
                                               "run/d.mp4 2\n")
    assert (dst / "train.txt").read_bytes().count(b"\r\n") == 5  # its line ends kept
    assert (dst / "testlist.txt").read_text() == "jump/a.mp4\nrun/c.mp4\n"
    for name in ("absolute.txt", "classInd.txt"):
        assert (dst / name).read_bytes() == (src / name).read_bytes()
    for video, seconds in (("jump/a.mp4", 2), ("jump/b.mp4", 3), ("run/c.mp4", 2)):
        with av.open(str(dst / video)) as c:
            assert "mp4" in c.format.name and c.streams.video[0].codec_context.name == "h264"
        start = frame_times(dst / video)[0]  # the .ts starts at 0.25 s, and its copy too
        assert set(range(seconds)) <= {round(t - start, 4) for t in keyframe_times(dst / video)}
    # the frames as read_frames reads the originals: in order, each at its time
    for video in ("jump/a.mp4", "run/c.mp4"):
        times = frame_times(dst / video)
        assert [round(t - times[0], 4) for t in times] == [i / 8 for i in range(n)]
        assert frame_numbers(read_all_frames(dst / video), n) == list(range(n))
    assert frame_times(dst / "jump/b.mp4") == [round(i / 25, 4) for i in range(75)]  # FFmpeg's went back
    levels = read_all_frames(dst / "jump/b.mp4").float().mean(dim=(1, 2, 3))
    assert (levels - torch.tensor([mpeg_level(i) for i in range(75)])).abs().max() < 2
    report = (dst / REPORT_NAME).read_text().splitlines()
    assert report[4] == ("videos copied as .mp4 under a new name (NAME.mp4 for NAME.mpg, NAME.ts, ...): 3; "
                         "list files rewritten with the new names: 2")
    assert report[-3:] == ["list files rewritten with the new names:", f"  {src / 'testlist.txt'}",
                           f"  {src / 'train.txt'}"]

    # the list file trains on the copies, and effvid check finds every one of them
    dataset = build_dataset(dst / "train.txt", split="all", num_segments=4, train=False, size=32)
    assert [s.path for s in dataset.samples] == [str(dst / v) for v in (
        "jump/a.mp4", "jump/b.mp4", "run/c.mp4", "run/d.mp4")]
    assert dataset.classes == ["jump", "run"] and dataset[1]["video"].shape == (4, 3, 32, 32)
    assert main(["check", str(dst / "train.txt"), "--json", str(tmp_path / "check.json"), "--quiet"]) == 0
    found = json.loads((tmp_path / "check.json").read_text())
    assert found["missing"] == [] and found["unreadable"] == []
    capsys.readouterr()

    # a rerun finds them there; an .mpg copy an earlier effvid wrote as .mpg is replaced, not kept
    # beside the .mp4 (class folders would read both)
    (dst / "jump/b.mp4").rename(dst / "jump/b.mpg")
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("prepared 1 of 4 videos in ")
    assert sorted(p.name for p in (dst / "jump").iterdir()) == ["a.mp4", "b.mp4"]
    # prepare_video writes the containers it names; the others it refuses, saying what prepare does
    with pytest.raises(ValueError, match=re.escape(f"cannot write {str(tmp_path / 'x.mpg')!r}: expected one "
                                                   "of .mp4, .m4v, .mov, .mkv, .webm, .avi (effvid prepare "
                                                   "writes a .mpg video as NAME.mp4)")):
        prepare_video(src / "run/d.mp4", tmp_path / "x.mpg")


def test_two_videos_whose_copies_would_share_a_name_are_refused_naming_both(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    for name in ("x.ts", "x.mp4", "y.mts", "y.m2ts"):
        write_video(src / "a" / name, named_frames(8, 48, 64), fps=8, codec="libx264")
    assert main(["prepare", str(src), str(dst), "--short-side", "32", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"effvid prepare: error: {str(src / 'a/x.mp4')!r} and {str(src / 'a/x.ts')!r} would both be "
        f"copied to {str(dst / 'a/x.mp4')!r} (a .ts video is written as .mp4); 1 more pair of videos "
        "too: rename one of them, and the list files that name it\n")
    assert not dst.exists()


def test_an_unreadable_or_linked_video_copied_as_mp4_is_named_so_and_tried_again(tmp_path, capsys):
    # the copies of the videos that could not be prepared take the same new names, so that the
    # list files, rewritten with them, still name them, and a rerun tries them again
    src, dst, moved = tmp_path / "src", tmp_path / "dst", tmp_path / "moved"
    write_video(src / "jump" / "a.mp4", named_frames(8, 48, 64), fps=8)
    (src / "jump" / "bad.ts").write_bytes(b"not a video" * 100)
    os.symlink(moved / "gone.wmv", src / "jump" / "gone.wmv")
    (src / "all.txt").write_text("jump/a.mp4 0\njump/bad.ts 0\njump/gone.wmv 0\n")
    args = ["prepare", str(src), str(dst), "--short-side", "32", "--quiet", "--workers", "0"]
    assert main(args) == 1
    assert capsys.readouterr().out.splitlines()[2:7] == [
        f"  2 video(s) copied as .mp4 under a new name, e.g. {src / 'jump/bad.ts'} -> "
        f"{dst / 'jump/bad.mp4'}; rewrote 1 list file(s) with the new names",
        "  found 1 unreadable video(s), copied unchanged:",
        f"    {src / 'jump/bad.ts'}: cannot open container (Invalid data found when processing input)",
        "  found 1 video(s) that are broken links, made again as links:",
        f"    {src / 'jump/gone.wmv'}: broken link to {moved / 'gone.wmv'}"]
    assert (dst / "jump/bad.mp4").read_bytes() == (src / "jump/bad.ts").read_bytes()
    assert broken_link(dst / "jump/gone.mp4") == f"broken link to {moved / 'gone.wmv'}"
    assert sorted(p.name for p in (dst / "jump").iterdir()) == ["a.mp4", "bad.mp4", "gone.mp4"]
    assert (dst / "all.txt").read_text() == "jump/a.mp4 0\njump/bad.mp4 0\njump/gone.mp4 0\n"
    assert main(["check", str(dst / "all.txt"), "--json", str(tmp_path / "check.json"), "--quiet"]) == 1
    found = json.loads((tmp_path / "check.json").read_text())
    capsys.readouterr()
    assert [v["path"] for v in found["unreadable"]] == [str(dst / "jump/bad.mp4")]
    assert [v["path"] for v in found["missing"]] == [str(dst / "jump/gone.mp4")]

    write_video(src / "jump" / "bad.ts", named_frames(8, 48, 64), fps=8, codec="libx264")  # mended
    write_video(moved / "gone.wmv", named_frames(8, 48, 64), fps=8, codec="wmv2")  # back
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("prepared 2 of 3 videos in ")
    for name in ("bad.mp4", "gone.mp4"):
        assert not os.path.islink(dst / "jump" / name) and probe_video(dst / "jump" / name).height == 32
