"""``effvid check DATA``: every video read as training would, before training."""

from __future__ import annotations

import json

import pytest

from effvid.cli import main
from effvid.data.synthetic import make_synthetic_dataset


def test_check_reports_unreadable_videos_classes_and_ranges(tmp_path, capsys):
    data = tmp_path / "data"
    make_synthetic_dataset(data, classes=("left", "right"), videos_per_class_train=3, videos_per_class_val=2,
                           num_frames=8, size=32, seed=1)
    assert main(["check", str(data), "--workers", "0"]) == 0
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[0].startswith("checked 10 videos (train 6, val 4) in ")
    # the progress bar (into a log here: its first and final lines) counts videos, not batches
    bar = captured.err.splitlines()
    assert bar[0].startswith("check:   0%|") and bar[0].endswith("| 0/10 [00:00<?, ?video/s]"), bar
    assert bar[-1].startswith("check: 100%|") and "| 10/10 [" in bar[-1] and bar[-1].endswith("video/s]"), bar
    assert out[1:] == ["unreadable: none",
                       "frames:     8 to 8, median 8",
                       "fps:        8.0 to 8.0, median 8.0",
                       "seconds:    1.0 to 1.0, median 1.0",
                       "size:       width 32 to 32, median 32; height 32 to 32, median 32",
                       "train:      2 classes, readable videos per class 3 to 3, median 3",
                       "val:        2 classes, readable videos per class 2 to 2, median 2"]

    (data / "train" / "right" / "empty.mp4").write_bytes(b"")
    (data / "val" / "left" / "noise.mp4").write_bytes(b"not a video" * 100)
    for video in (data / "val" / "right").glob("*.mp4"):  # a class left with no readable video
        video.write_bytes(b"")
    report = tmp_path / "check.json"
    assert main(["check", str(data), "--workers", "2", "--quiet", "--json", str(report)]) == 1
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[0].startswith("checked 12 videos (train 7, val 5) in ")
    assert out[1] == "  found 4 unreadable video(s):"
    assert out[2] == f"    {data / 'train' / 'right' / 'empty.mp4'}: file is empty (0 bytes)"
    assert out[3].startswith(f"    {data / 'val' / 'left' / 'noise.mp4'}: ")
    assert out[-3:] == ["train:      2 classes, readable videos per class 3 to 3, median 3",
                        "val:        2 classes, readable videos per class 0 to 2, median 1; none for 1: right",
                        f"wrote {report}"]
    assert captured.err.splitlines()[-1] == "effvid check: 4 of 12 videos are unreadable"
    saved = json.loads(report.read_text())
    assert saved["videos"] == 12 and len(saved["unreadable"]) == 4
    assert saved["per_class"] == {"train": {"left": 3, "right": 3}, "val": {"left": 2, "right": 0}}
    assert len(saved["videos_info"]) == 8 and {v["frames"] for v in saved["videos_info"]} == {8}


def test_videos_shorter_than_a_second_are_timed_in_hundredths(tmp_path, capsys):
    import numpy as np

    from effvid.data import write_video

    for name, frames in (("a", 2), ("b", 50)):  # 0.08 s and 2 s at 25 fps
        (tmp_path / name).mkdir()
        write_video(tmp_path / name / "v.mp4", np.full((frames, 16, 16, 3), 100, np.uint8), fps=25)
    assert main(["check", str(tmp_path), "--workers", "0", "--quiet"]) == 0
    assert "seconds:    0.08 to 2.00, median 1.04" in capsys.readouterr().out.splitlines()


def test_check_lists_missing_videos_and_checks_the_others(tmp_path, capsys):
    # training stops at a list's missing videos with one error naming the first; check lists
    # them all, and reads the videos that are there
    data = tmp_path / "data"
    make_synthetic_dataset(data, classes=("left", "right"), videos_per_class_train=2, videos_per_class_val=0,
                           num_frames=8, size=32, seed=1)
    videos = data / "train"
    (videos / "right" / "empty.mp4").write_bytes(b"")
    lst = tmp_path / "lists" / "train.txt"
    lst.parent.mkdir()
    gone = [f"left/gone_{k}.mp4" for k in range(12)]
    listed = ["left/left_0000.mp4", *gone, "left/left_0001.mp4", "right/right_0000.mp4",
              "right/right_0001.mp4", "right/empty.mp4"]
    lst.write_text("".join(f"{p} {p.split('/')[0]}\n" for p in listed))
    report = tmp_path / "check.json"
    assert main(["check", str(lst), "--data-root", str(videos), "--workers", "0", "--quiet",
                 "--json", str(report)]) == 1
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[0].startswith("checked 5 videos in ")
    assert out[1:15] == ["  found 12 listed video(s) missing:",
                         *[f"    {videos / p}: listed in {str(lst)!r} line {k}"
                           for k, p in enumerate(gone[:10], 2)],
                         f"    ... and 2 more (all in {report})",
                         "  found 1 unreadable video(s):",
                         f"    {videos / 'right' / 'empty.mp4'}: file is empty (0 bytes)"]
    assert out[-2:] == ["all:        2 classes, readable videos per class 2 to 2, median 2",
                        f"wrote {report}"]
    assert captured.err.splitlines()[-1] == \
        "effvid check: 12 listed videos are missing; 1 of 5 videos is unreadable"
    saved = json.loads(report.read_text())
    assert saved["videos"] == 5 and len(saved["unreadable"]) == 1
    assert saved["missing"] == [{"path": str(videos / p), "part": "all", "listed": f"{str(lst)!r} line {k}",
                                 "reason": f"listed in {str(lst)!r} line {k}"} for k, p in enumerate(gone, 2)]

    # nothing listed is there (a wrong --data-root): all of it is listed, and nothing checked
    assert main(["check", str(lst), "--data-root", str(tmp_path), "--workers", "0", "--quiet"]) == 1
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[:3] == ["checked 0 videos in 0 s", "  found 17 listed video(s) missing:",
                       f"    {tmp_path / 'left' / 'left_0000.mp4'}: listed in {str(lst)!r} line 1"]
    assert out[12] == "    ... and 7 more (--json FILE lists them all)"
    assert captured.err.splitlines()[-1] == "effvid check: 17 listed videos are missing"


def _six_videos(tmp_path):
    """A split folder of 2 classes: 4 training videos and 2 validation ones."""
    data = tmp_path / "data"
    make_synthetic_dataset(data, classes=("left", "right"), videos_per_class_train=2, videos_per_class_val=1,
                           num_frames=8, size=32, seed=1)
    return data


def _check_finds_three_missing(data, tmp_path, capsys, missing: list) -> dict:
    """effvid check of ``_six_videos`` with 3 of them missing, each ``(path, reason)``: its
    lines and exit status, and its JSON report."""
    report = tmp_path / "check.json"
    assert main(["check", str(data), "--workers", "0", "--quiet", "--json", str(report)]) == 1
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[0].startswith("checked 6 videos (train 4, val 2) in ")
    assert out[1:6] == ["  found 3 video(s) missing:", *[f"    {path}: {why}" for path, why in missing],
                        "unreadable: none"]
    assert captured.err.splitlines()[-1] == "effvid check: 3 videos are missing"
    return json.loads(report.read_text())


def test_check_names_the_listed_paths_that_are_not_videos_and_checks_the_others(tmp_path, capsys):
    # training refuses a list line naming another kind of file (a TSM list's frame folders, a
    # .txt) at start; check stopped at the first one with that error and checked nothing else
    data = tmp_path / "data"
    make_synthetic_dataset(data, classes=("left", "right"), videos_per_class_train=2, videos_per_class_val=0,
                           num_frames=8, size=32, seed=1)
    videos = data / "train"
    (videos / "left" / "notes.txt").write_text("shot on a phone\n")
    (videos / "right" / "frames_0001").mkdir()  # extracted frames, as the original TSM lists name them
    lst = tmp_path / "train.txt"
    lst.write_text("left/left_0000.mp4 left\nleft/notes.txt left\nleft/left_0001.mp4 left\n"
                   "right/frames_0001 right\nright/right_0000.mp4 right\nright/right_0001.mp4 right\n")
    report = tmp_path / "check.json"
    assert main(["check", str(lst), "--data-root", str(videos), "--workers", "0", "--quiet",
                 "--json", str(report)]) == 1
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    reads = ".mp4, .avi, .mkv, .webm, .mov, .m4v, .mpg, .mpeg, .ts, .mts, .m2ts, .3gp, .flv, .wmv, .asf"
    assert out[0].startswith("checked 4 videos in ")
    assert out[1:4] == [
        "  found 2 listed file(s) that are not videos:",
        f"    {videos / 'left' / 'notes.txt'}: not a video (.txt: effvid reads {reads}); listed in {str(lst)!r} "
        "line 2; training refuses it",
        f"    {videos / 'right' / 'frames_0001'}: not a video (no extension: effvid reads {reads}); listed in "
        f"{str(lst)!r} line 4; training refuses it; effvid decodes video files, not folders of extracted "
        "frames: point it at the videos themselves"]
    assert "unreadable: none" in out
    assert captured.err.splitlines()[-1] == "effvid check: 2 files are not videos (training refuses them)"
    saved = json.loads(report.read_text())
    assert [v["path"] for v in saved["not_videos"]] == [str(videos / "left" / "notes.txt"),
                                                        str(videos / "right" / "frames_0001")]
    assert saved["videos"] == 4 and saved["missing"] == [] and saved["unreadable"] == []
    # training still stops at the first, naming it
    assert main(["train", str(lst), "--data-root", str(videos), "--workers", "0",
                 "--output", str(tmp_path / "run")]) == 2
    assert (f"{str(lst)!r} line 2: unsupported video extension '.txt' for "
            f"{str(videos / 'left' / 'notes.txt')!r}") in capsys.readouterr().err


def test_check_lists_every_broken_link_of_the_class_folders(tmp_path, capsys):
    # the first broken link stopped check as it stops training: the others, and every other
    # video, went unchecked
    data = _six_videos(tmp_path)
    gone = tmp_path / "moved"
    links = [data / "train" / "left" / "a.mp4", data / "train" / "right" / "b.mp4", data / "val" / "right" / "c.mp4"]
    for link in links:
        link.symlink_to(gone / link.name)
    saved = _check_finds_three_missing(data, tmp_path, capsys,
                                       [(link, f"broken link to {gone / link.name}") for link in links])
    assert [(m["part"], m["path"], m["reason"]) for m in saved["missing"]] == [
        ("train", str(links[0]), f"broken link to {gone / 'a.mp4'}"),
        ("train", str(links[1]), f"broken link to {gone / 'b.mp4'}"),
        ("val", str(links[2]), f"broken link to {gone / 'c.mp4'}")]
    assert saved["per_class"] == {"train": {"left": 2, "right": 2}, "val": {"left": 1, "right": 1}}
    # training stops at them, naming the first and counting the others
    assert main(["train", str(data), "--workers", "0", "--output", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"effvid train: error: dataset: {str(links[0])!r} is a broken link to {gone / 'a.mp4'}; 1 more of "
        f"the 6 videos in the class folders is a broken link too (the next: dataset: {str(links[1])!r} "
        f"is a broken link to {gone / 'b.mp4'})")


def test_check_lists_the_videos_a_kinetics_csv_skips(tmp_path, capsys):
    from test_kinetics import TRAIN, _file, _write_clips, _write_csv

    csv = _write_csv(tmp_path / "annotations" / "train.csv", TRAIN, "train")
    _write_clips([tmp_path / "train" / _file(r) for r in TRAIN if not r[4]])
    assert main(["check", str(csv), "--workers", "0", "--quiet"]) == 1
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[1] == (f"{csv}: 2 of 6 listed videos not found under {tmp_path / 'train'} (skipped; "
                      f"the first: {tmp_path / 'train' / _file(TRAIN[3])})")  # as training says it
    assert out[2].startswith("checked 4 videos in ")
    assert out[3:7] == ["  found 2 listed video(s) missing:",
                        f"    {tmp_path / 'train' / _file(TRAIN[3])}: listed in {str(csv)!r} line 5",
                        f"    {tmp_path / 'train' / _file(TRAIN[5])}: listed in {str(csv)!r} line 7",
                        "unreadable: none"]
    assert captured.err.splitlines()[-1] == "effvid check: 2 listed videos are missing"


def test_check_names_the_part_of_a_split_folder_a_missing_video_is_in(tmp_path, capsys):
    from test_annotation_formats import HMDB_CLASSES, _write_clips

    videos, splits = tmp_path / "hmdb51", tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    for c in HMDB_CLASSES:  # clip 0 trains, clip 1 validates (tests), clip 2 is missing from both
        _write_clips([videos / c / f"{c}_{k}.avi" for k in (0, 1)], codec="mpeg4")
        (splits / f"{c}_test_split1.txt").write_text(
            f"{c}_0.avi 1 \n{c}_1.avi 2 \n{c}_2.avi {1 if c == 'catch' else 2} \n")
    report = tmp_path / "check.json"
    assert main(["check", str(splits), "--data-root", str(videos), "--workers", "0", "--quiet",
                 "--json", str(report)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("checked 6 videos (train 3, val 3) in ")
    saved = json.loads(report.read_text())
    assert [(m["part"], m["path"]) for m in saved["missing"]] == [
        ("train", str(videos / "catch" / "catch_2.avi")),
        ("val", str(videos / "brush_hair" / "brush_hair_2.avi")),
        ("val", str(videos / "cartwheel" / "cartwheel_2.avi"))]
    assert saved["missing"][0]["listed"] == f"{str(splits / 'catch_test_split1.txt')!r} line 3"
    assert saved["per_class"]["val"] == {c: 1 for c in HMDB_CLASSES}


def test_check_reports_videos_that_end_before_their_header_says(tmp_path, capsys):
    # a .mkv cut at 3/4 still opens and its header still says 40 frames: check reported
    # "frames: 40" and nothing else, while training repeated the last decodable frame for the
    # segments past the cut
    import av

    from effvid.data import index_pattern_frames, write_video
    from effvid.data.synthetic import decode_frame_index
    from effvid.data.video import probe_video, read_frames

    data = tmp_path / "data"
    for name in ("left", "right"):
        (data / name).mkdir(parents=True)
        write_video(data / name / "whole.mkv", index_pattern_frames(40, 48, 64), fps=8, gop=8)
    whole = (data / "right" / "whole.mkv").read_bytes()
    cut = data / "right" / "cut.mkv"
    cut.write_bytes(whole[:len(whole) * 3 // 4])
    with av.open(str(cut)) as container:  # what plain PyAV decodes of it, stopping at the cut
        decodable = 0
        try:
            for _ in container.decode(video=0):
                decodable += 1
        except av.FFmpegError:
            pass
    assert probe_video(cut).num_frames == 40 and 10 < decodable < 35
    # the centres of 8 segments past the cut get the last frame that decodes
    centres = [2, 7, 12, 17, 22, 27, 32, 37]
    stats = {}
    frames = read_frames(cut, centres, stats=stats)
    got = [decode_frame_index(f.numpy(), 40) for f in frames]
    assert got[-1] == got[-2] < 37 and stats["past_end"] == sum(i > got[-1] for i in centres) > 0

    report = tmp_path / "check.json"
    assert main(["check", str(data), "--workers", "0", "--quiet", "--json", str(report)]) == 1
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[1:4] == ["unreadable: none",
                        "  found 1 video(s) that end early (frames past the cut repeat the last one):",
                        f"    {cut}: {decodable} of the 40 frames in its header decode"]
    assert captured.err.splitlines()[-1] == "effvid check: 1 of 3 videos ends early"
    saved = json.loads(report.read_text())
    assert saved["ends_early"] == [{"path": str(cut), "part": "all", "frames": 40, "decodable_frames": decodable}]
    assert [(v["path"], v["frames"], v.get("decodable_frames")) for v in saved["videos_info"]] == [
        (str(data / "left" / "whole.mkv"), 40, None), (str(cut), 40, decodable),
        (str(data / "right" / "whole.mkv"), 40, None)]
    cut.unlink()  # the whole files alone: nothing to report
    assert main(["check", str(data), "--workers", "0", "--quiet"]) == 0
    assert "end early" not in capsys.readouterr().out


def test_check_names_a_video_that_ends_early_with_too_many_damaged_packets_unreadable(tmp_path, capsys):
    # The frames training reads of it decode (damaged packets lie between them), but one lies
    # past the cut, so check decodes the whole file to count what it holds: more than
    # MAX_BAD_PACKETS damaged packets make it unreadable, as they do prepare's copy of it
    from conftest import damage_packets
    from effvid.data import index_pattern_frames, write_video
    from effvid.data.video import MAX_BAD_PACKETS, VideoDecodeError, decodable_frames, read_frames

    data = tmp_path / "data"
    n, centres = 416, [26, 78, 130, 182, 234, 286, 338, 390]  # the centres of 8 segments
    for name in ("left", "right"):
        (data / name).mkdir(parents=True)
        write_video(data / name / "whole.mkv", index_pattern_frames(n, 16, 16), fps=8, codec="mjpeg")
    damaged = [c + j for c in centres[:7] for j in range(1, 9)]  # 56, after each of 7 centres
    bad = damage_packets(data / "right" / "whole.mkv", tmp_path / "damaged.mkv", damaged).read_bytes()
    cut = data / "right" / "cut.mkv"
    cut.write_bytes(bad[:len(bad) * 8 // 10])  # (Matroska: its header still says 416 frames)
    stats = {}
    read_frames(cut, centres, stats=stats)
    assert stats["past_end"] > 0
    with pytest.raises(VideoDecodeError, match=f"more than {MAX_BAD_PACKETS} damaged video packets") as e:
        decodable_frames(cut)
    reason = e.value.reason

    assert main(["check", str(data), "--workers", "0", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[1:3] == ["  found 1 unreadable video(s):", f"    {cut}: {reason}"]
    assert captured.err.splitlines()[-1] == "effvid check: 1 of 3 videos is unreadable"


def test_fifos_devices_and_folders_named_like_videos_in_class_folders_are_named(tmp_path, capsys):
    # a FIFO or a device named like a video was left out of a class folder without a word, and a
    # folder named x.mp4 (extracted frames) searched; training and check name them, never
    # opening the FIFO (it would wait for a writer)
    import os

    from test_datasets import _let_a_stuck_reader_go

    data = _six_videos(tmp_path)
    fifo, frames, device = data / "train" / "left" / "pipe.mp4", data / "train" / "right" / "v.mp4", \
        data / "val" / "left" / "null.mp4"
    os.mkfifo(fifo)
    frames.mkdir()
    (frames / "img_00001.jpg").write_bytes(b"")  # searched, it stopped training as a .jpg
    device.symlink_to(os.devnull)
    _let_a_stuck_reader_go(fifo)
    assert main(["train", str(data), "--workers", "0", "--output", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"effvid train: error: dataset: {str(fifo)!r} is not a regular file (a FIFO); 1 more of the 6 videos "
        f"in the class folders is not a video file too (the next: dataset: {str(frames)!r} is a folder, "
        "not a video file)")
    saved = _check_finds_three_missing(data, tmp_path, capsys, [
        (fifo, "not a regular file (a FIFO)"), (frames, "a folder, not a video file"),
        (device, "not a regular file (a character device)")])
    assert [(m["part"], m["path"]) for m in saved["missing"]] == [
        ("train", str(fifo)), ("train", str(frames)), ("val", str(device))]
    # a class folder with nothing but a FIFO holds no video, and says which
    device.unlink()
    (frames / "img_00001.jpg").unlink()
    frames.rmdir()
    for video in (data / "train" / "left").glob("*.mp4"):
        if video != fifo:
            video.unlink()
    assert main(["train", str(data), "--workers", "0", "--output", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"effvid train: error: dataset: {str(fifo)!r} is not a regular file (a FIFO)")


def test_check_reports_every_file_that_is_not_a_video_and_checks_the_videos(tmp_path, capsys):
    # training refuses an unknown extension at start, naming them all; check stopped there too,
    # and checked nothing else: it names them apart (they are there, not missing) and goes on
    data = _six_videos(tmp_path)
    notes, other = data / "train" / "left" / "notes.txt", data / "val" / "right" / "clip.xyz"
    notes.write_text("shot on a phone\n")
    other.write_bytes(b"\0" * 10)
    empty = sorted((data / "train" / "right").glob("*.mp4"))[0]
    empty.write_bytes(b"")  # and a video that is unreadable
    report = tmp_path / "check.json"
    assert main(["check", str(data), "--workers", "0", "--quiet", "--json", str(report)]) == 1
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    reads = ".mp4, .avi, .mkv, .webm, .mov, .m4v, .mpg, .mpeg, .ts, .mts, .m2ts, .3gp, .flv, .wmv, .asf"
    start = out.index("  found 2 file(s) that are not videos in the class folders:")
    assert out[start + 1:start + 3] == [f"    {notes}: not a video (.txt: effvid reads {reads}); training refuses it",
                                        f"    {other}: not a video (.xyz: effvid reads {reads}); training refuses it"]
    assert out[0].startswith("checked 6 videos (train 4, val 2) in")
    assert captured.err.strip().endswith("effvid check: 2 files are not videos (training refuses them); 1 of 6 "
                                         "videos is unreadable")
    saved = json.loads(report.read_text())
    assert [(v["part"], v["path"]) for v in saved["not_videos"]] == [("train", str(notes)), ("val", str(other))]
    assert saved["missing"] == [] and [u["path"] for u in saved["unreadable"]] == [str(empty)]
    assert main(["train", str(data), "--workers", "0", "--output", str(tmp_path / "run")]) == 2
    assert f"1 file in the class folders is not a video (expected one of {reads}): {str(notes)!r}" in capsys.readouterr().err
