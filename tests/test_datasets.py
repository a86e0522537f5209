import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from effvid.data import (BadSample, TestTransform, TrainTransform, VideoClipDataset, VideoSample,
                         build_dataset, collate_clips, decode_frame_index,
                         read_list_file, scan_class_folders, split_key, stratified_split, write_video)
from effvid.data.video import VIDEO_EXTENSIONS

CLASSES = sorted(["down", "grow", "left", "right", "shrink", "up"])


def _identity(clip, rng=None):
    """Keep raw frames (as float, channels first) so tests can decode frame indices."""
    return clip.permute(0, 3, 1, 2).float()


def _frame_ids(video, n):
    return [decode_frame_index(f.permute(1, 2, 0).numpy(), n) for f in video]


@pytest.fixture
def index_root(tmp_path, index_frames):
    """root/<a|b>/<video>: 3 + 2 index videos (24 frames each)."""
    for cls, n in (("a", 3), ("b", 2)):
        for k in range(n):
            write_video(tmp_path / "root" / cls / f"{cls}{k}.mp4", index_frames, fps=8, preset="ultrafast")
    return tmp_path / "root"


def test_build_from_train_val_folders(synthetic_root):
    tr = build_dataset(synthetic_root, "train", num_segments=4, size=32)
    va = build_dataset(synthetic_root, "val", num_segments=4, size=32)
    assert tr.classes == va.classes == CLASSES
    assert len(tr) == 18 and len(va) == 12
    assert tr.train and not va.train
    for ds in (tr, va):
        for s in ds.samples:  # labels follow folder names
            assert ds.classes[s.label] == s.path.split("/")[-2]
    item = tr[0]
    assert item["video"].shape == (4, 3, 32, 32) and item["video"].dtype == torch.float32
    assert item["label"] == tr.samples[0].label and item["path"] == tr.samples[0].path
    assert isinstance(tr.transform, TrainTransform) and isinstance(va.transform, TestTransform)
    torch.manual_seed(0)
    a = tr[3]["video"]
    torch.manual_seed(0)
    assert torch.equal(a, tr[3]["video"])  # reproducible under torch.manual_seed
    # validation is deterministic regardless of seed
    assert torch.equal(va[1]["video"], va[1]["video"])


def test_segment_and_dense_indices_reach_decoder(index_root):
    samples, classes = scan_class_folders(index_root)
    test = VideoClipDataset(samples, classes, num_segments=4, train=False, transform=_identity)
    assert _frame_ids(test[0]["video"], 24) == [3, 9, 15, 21]  # segment centres
    dense = VideoClipDataset(samples, classes, num_segments=4, train=False, transform=_identity,
                             sampling="dense", window=8)
    assert _frame_ids(dense[0]["video"], 24) == [8, 10, 12, 14]  # centred 8-frame window
    train = VideoClipDataset(samples, classes, num_segments=4, train=True, transform=_identity)
    for _ in range(5):
        ids = _frame_ids(train[1]["video"], 24)
        assert all(6 * k <= i < 6 * k + 6 for k, i in enumerate(ids))


def test_multi_clip_multi_crop_views(index_root):
    samples, classes = scan_class_folders(index_root)
    ds = VideoClipDataset(samples, classes, num_segments=4, train=False, transform=_identity,
                          num_clips=2, twice=True)
    v = ds[0]["video"]
    assert v.shape == (3, 4, 3, 48, 64)
    assert [_frame_ids(v[c], 24) for c in range(3)] == [[1, 7, 13, 19], [4, 10, 16, 22], [0, 6, 12, 18]]
    ds3 = VideoClipDataset(samples, classes, num_segments=4, train=False, num_clips=2,
                           transform=TestTransform(size=32, scale_size=32, num_crops=3))
    assert ds3[0]["video"].shape == (6, 4, 3, 32, 32)  # clips x crops


def test_stratified_split_from_flat_folder(index_root):
    tr = build_dataset(index_root, "train", num_segments=2, val_fraction=0.5, seed=1)
    va = build_dataset(index_root, "val", num_segments=2, val_fraction=0.5, seed=1)
    assert tr.classes == va.classes == ["a", "b"]
    assert not set(s.path for s in tr.samples) & set(s.path for s in va.samples)
    assert len(tr) + len(va) == 5
    assert sorted(s.label for s in va.samples) == [0, 0, 1]  # round(3 * .5) = 2 of a, 1 of b
    # deterministic
    again = build_dataset(index_root, "val", num_segments=2, val_fraction=0.5, seed=1)
    assert again.samples == va.samples
    samples, _ = scan_class_folders(index_root)
    t2, v2 = stratified_split(samples, 0.5, seed=1, root=index_root)
    assert v2 == va.samples and t2 == tr.samples


def test_list_files(tmp_path, index_root):
    lst = tmp_path / "list.txt"
    lst.write_text("# comment\n\na/a0.mp4 a\n  b/b1.mp4   b  \n")
    samples, classes = read_list_file(lst, root=index_root)
    assert classes == ["a", "b"]
    assert samples == [VideoSample(str(index_root / "a/a0.mp4"), 0), VideoSample(str(index_root / "b/b1.mp4"), 1)]
    tsm = index_root / "tsm.txt"  # relative to the list's own folder by default
    tsm.write_text("a/a1.mp4 24 0\nb/b0.mp4 24 2\n")
    samples, classes = read_list_file(tsm)
    assert classes == ["0", "1", "2"] and [s.label for s in samples] == [0, 2]
    assert samples[0].num_frames == 24
    ds = build_dataset(tsm, "val", num_segments=2, classes=["x", "y", "z"], size=32)
    assert ds.classes == ["x", "y", "z"] and ds[1]["label"] == 2 and ds[1]["video"].shape == (2, 3, 32, 32)
    # the TSM format with class names: refused with "the class name 'b' cannot contain spaces"
    named = index_root / "named.txt"
    named.write_text("a/a1.mp4 24 b\nb/b0.mp4 31 a\n")
    samples, classes = read_list_file(named)
    assert classes == ["a", "b"] and [(s.label, s.num_frames) for s in samples] == [(1, 24), (0, 31)]


@pytest.mark.parametrize("content,match", [
    ("a/a0.mp4\n", "line 1"),                          # no label
    ("a/a0.mp4 0\na/a1.mp4 cat\n", "line 2"),         # mixed label kinds
    ("a/a0.mp4 5\n", "line 1: label 5 out of range"),  # with classes given below
    ("a/a0.txt 0\n", "line 1.*a0.txt"),                # unknown extension
    ("a 24 0\n", "line 1.*not folders of extracted frames"),  # original TSM list of frame folders
    # the same, its frame folders not extracted on this machine: there was no hint
    ("/data/sth/frames/1234 47 12\n", "line 1: unsupported video extension '' for '/data/sth/frames/1234'.*"
                                       "not folders of extracted frames"),
    # Kinetics-style names with spaces: the error was about an "unsupported extension '.mp4 air'"
    ("a/a0.mp4 air drumming\n", "line 1: .*class name 'air drumming' cannot contain spaces: write it as 'air_drumming'"),
    ("a/a0.mp4 24 air drumming\n", "line 1: .*class name 'air drumming' cannot contain spaces"),
    ("a/a0.mp4 3 17 52\n", "line 1: 3 numbers after the video; expected 'path label' or 'path num_frames label'"),
    ("a/a0.mp4 0  # a note\n", "line 1: a comment must be a line of its own"),
    # "İ".lower() is 2 characters: the extension was found at the wrong place, and the error
    # was about an extension ".mp4 air" again
    ("İstanbul/a0.MP4 air drumming\n", "line 1: .*class name 'air drumming' cannot contain spaces"),
])
def test_list_file_errors(tmp_path, index_root, content, match):
    lst = tmp_path / "bad.txt"
    lst.write_text(content)
    with pytest.raises(ValueError, match=match):
        read_list_file(lst, root=index_root, classes=["a", "b"] if "5" in content else None)


def test_list_labels_name_numbered_classes(tmp_path, index_root):
    # class folders "0".."10" sort as text ("0", "1", "10", "2", ...); a validation list labelled
    # with those folder names read label "2" as classes[2] == "10" (9 of 11 classes wrong)
    classes = sorted(str(k) for k in range(11))
    lst = tmp_path / "val.txt"
    for k in range(11):  # a video each (one listed 11 times is read once); not decoded here
        (tmp_path / f"v{k}.mp4").write_bytes(b"")
    lst.write_text("".join(f"v{k}.mp4 {k}\n" for k in range(11)))
    samples, got = read_list_file(lst, classes=classes)
    assert got == classes and [got[s.label] for s in samples] == [str(k) for k in range(11)]
    # labels that are not all class names stay indices
    lst.write_text("a/a0.mp4 0\na/a1.mp4 2\n")
    samples, _ = read_list_file(lst, root=index_root, classes=["x", "y", "z"])
    assert [s.label for s in samples] == [0, 2]


def test_a_video_listed_twice_is_read_once_and_said(tmp_path, index_root):
    # twice, it weighed double in training and counted twice in an evaluation's accuracy
    lst = tmp_path / "l.txt"
    lst.write_text("a/a0.mp4 a\nb/b0.mp4 b\n./a/a0.mp4 a\na/a1.mp4 a\n")
    said = []
    samples, classes = read_list_file(lst, root=index_root, notice=said.append)
    assert [s.path for s in samples] == [str(index_root / v) for v in ("a/a0.mp4", "b/b0.mp4", "a/a1.mp4")]
    assert said == [f"note: {lst} line 3 lists ./a/a0.mp4 again (first on line 1); each video is read once"]
    # with another label: the first is kept, and a line with two labels is the one said
    lst.write_text("a/a0.mp4 a\nb/b0.mp4 b\na/a0.mp4 a\nb/b0.mp4 a\nb/b0.mp4 b\n")
    said.clear()
    samples, _ = read_list_file(lst, root=index_root, notice=said.append)
    assert [(s.path, s.label) for s in samples] == [(str(index_root / "a/a0.mp4"), 0),
                                                    (str(index_root / "b/b0.mp4"), 1)]
    assert said == [f"note: {lst} line 4 lists b/b0.mp4 again (first on line 2), labelled 'a' there and 'b' on "
                    "line 2; each video is read once, with its first label; 2 more lines repeat a video"]
    # a path-only line (a list of unlabelled videos, or a label forgotten): "no label", not None
    lst.write_text("a/a0.mp4 a\na/a0.mp4\n")
    said.clear()
    read_list_file(lst, root=index_root, classes=["a", "b"], notice=said.append)
    assert said == [f"note: {lst} line 2 lists a/a0.mp4 again (first on line 1), with no label there and 'a' on "
                    "line 1; each video is read once, with its first label"]
    # a missing video listed twice is missing once
    lst.write_text("a/a0.mp4 a\nb/gone.mp4 b\nb/gone.mp4 b\n")
    missing = []
    samples, _ = read_list_file(lst, root=index_root, missing=missing)
    assert [m.where for m in missing] == [f"{str(lst)!r} line 2"]


def test_list_file_missing_video(tmp_path, index_root):
    lst = tmp_path / "l.txt"
    lst.write_text("a/a0.mp4 0\na/nope.mp4 0\n")
    with pytest.raises(FileNotFoundError, match="line 2.*nope.mp4"):
        read_list_file(lst, root=index_root)
    with pytest.raises(FileNotFoundError, match="missing_list.txt"):
        read_list_file(tmp_path / "missing_list.txt")


def test_folder_errors(tmp_path, index_root):
    with pytest.raises(FileNotFoundError, match="no_such_root"):
        build_dataset(tmp_path / "no_such_root")
    (index_root / "c").mkdir()
    with pytest.raises(ValueError, match="c.*contains no videos"):
        scan_class_folders(index_root)
    (index_root / "c" / "clip.gif").write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="clip.gif"):
        scan_class_folders(index_root)
    (index_root / "c" / "clip.gif").unlink()
    (index_root / "c" / "img_00001.jpg").write_bytes(b"\xff\xd8")
    (index_root / "c" / "img_00002.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ValueError) as e:
        scan_class_folders(index_root)
    assert str(e.value) == (f"class folder {str(index_root / 'c')!r} holds images and no videos "
                            f"({str(index_root / 'c/img_00001.jpg')!r} and 1 more); effvid decodes video "
                            "files, not folders of extracted frames: point it at the videos themselves")
    for f in (index_root / "c").iterdir():
        f.unlink()
    (index_root / "c").rmdir()
    # other files among the videos stopped the run at the first, one run per file, and a
    # thumbnail was called a folder of extracted frames
    for f in ("a/notes.srt", "a/sub/b.srt", "b/thumb.jpg"):
        (index_root / f).parent.mkdir(exist_ok=True)
        (index_root / f).write_bytes(b"x")
    with pytest.raises(ValueError) as e:
        scan_class_folders(index_root)
    assert str(e.value) == (
        f"dataset {str(index_root)!r}: 3 files in the class folders are not videos (expected one of "
        f"{', '.join(VIDEO_EXTENSIONS)}): {str(index_root / 'a/notes.srt')!r}, {str(index_root / 'a/sub/b.srt')!r}, "
        f"{str(index_root / 'b/thumb.jpg')!r}; move them out, or hide them (names starting with '.' are left out)")
    for f in ("a/notes.srt", "b/thumb.jpg"):
        (index_root / f).rename((index_root / f).with_name("." + (index_root / f).name))
    (index_root / "a/sub/b.srt").unlink()
    (index_root / "a/sub").rmdir()
    (index_root / "a" / ".DS_Store").write_bytes(b"x")  # hidden files are ignored
    assert len(scan_class_folders(index_root)[0]) == 5


def test_linked_folders_are_followed_once(tmp_path, index_root):
    # Path.rglob (Python < 3.13) does not follow linked folders: a class folder's linked
    # subfolder was silently dropped
    (index_root / "a" / "more").symlink_to(index_root / "b", target_is_directory=True)
    (index_root / "b" / "loop").symlink_to(index_root / "b", target_is_directory=True)  # no endless walk
    (index_root / "a" / ".hidden").mkdir()
    (index_root / "a" / ".hidden" / "x.mp4").write_bytes(b"")
    samples, classes = scan_class_folders(index_root)
    names = sorted(s.path.split("/root/", 1)[1] for s in samples)
    assert names == ["a/a0.mp4", "a/a1.mp4", "a/a2.mp4", "a/more/b0.mp4", "a/more/b1.mp4",
                     "b/b0.mp4", "b/b1.mp4"]


def test_broken_links_are_reported_not_dropped(tmp_path, index_root):
    # a link farm whose targets moved: the broken links were left out without a word, so
    # class a silently had 3 videos instead of 4
    (index_root / "a" / "moved.mp4").symlink_to(tmp_path / "elsewhere" / "moved.mp4")
    from effvid.data import find_files

    assert [f.name for f in find_files(index_root / "a")] == ["a0.mp4", "a1.mp4", "a2.mp4", "moved.mp4"]
    gone = tmp_path / "elsewhere"
    with pytest.raises(FileNotFoundError) as e:
        scan_class_folders(index_root)
    assert e.value.filename == str(index_root / "a" / "moved.mp4")
    assert e.value.strerror == f"dataset: {str(index_root / 'a' / 'moved.mp4')!r} is a broken link to {gone / 'moved.mp4'}"
    # it stopped at the first: a run per broken link found the next; now one error counts them
    for name in ("b/lost.mp4", "b/sub/lost2.mp4"):
        (index_root / name).parent.mkdir(exist_ok=True)
        (index_root / name).symlink_to(gone / name)
    with pytest.raises(FileNotFoundError) as e:
        build_dataset(index_root, split="all")
    assert e.value.strerror == (
        f"dataset: {str(index_root / 'a' / 'moved.mp4')!r} is a broken link to {gone / 'moved.mp4'}; 2 more "
        f"of the 8 videos in the class folders are broken links too (the next: dataset: "
        f"{str(index_root / 'b' / 'lost.mp4')!r} is a broken link to {gone / 'b' / 'lost.mp4'})")
    # given a list (effvid check's), each is appended to it and left out
    missing = []
    dataset = build_dataset(index_root, split="all", missing=missing)
    assert sorted(Path(s.path).name for s in dataset.samples) == ["a0.mp4", "a1.mp4", "a2.mp4", "b0.mp4", "b1.mp4"]
    assert missing == [(str(index_root / "a" / "moved.mp4"), f"class folder {str(index_root / 'a')!r}", None, False),
                       (str(index_root / "b" / "lost.mp4"), f"class folder {str(index_root / 'b')!r}", None, False),
                       (str(index_root / "b" / "sub" / "lost2.mp4"), f"class folder {str(index_root / 'b')!r}", None,
                        False)]


def test_a_train_folder_without_val_is_refused(tmp_path, index_root):
    # it used to be read as one class named "train"
    root = tmp_path / "ds"
    shutil.copytree(index_root, root / "train")
    with pytest.raises(ValueError, match=r"has a train/ folder but no val/ folder: add val/, or point at"):
        build_dataset(root)
    (root / "test").mkdir()
    with pytest.raises(ValueError, match=r"to validate on .*test', pass it as the validation data"):
        build_dataset(root)


def test_split_all_takes_everything(index_root):
    every = build_dataset(index_root, "all", num_segments=4, size=32)
    assert len(every) == 5 and every.train
    tr, va = build_dataset(index_root, "train"), build_dataset(index_root, "val")
    assert sorted(s.path for s in tr.samples + va.samples) == sorted(s.path for s in every.samples)


def test_list_file_with_a_byte_order_mark_or_not_utf8(tmp_path, index_root):
    lst = tmp_path / "bom.txt"
    lst.write_bytes("\ufeffa/a0.mp4 0\nb/b0.mp4 1\n".encode("utf-8"))
    samples, _ = read_list_file(lst, root=index_root)
    assert samples[0].path == str(index_root / "a" / "a0.mp4")
    lst.write_bytes(b"a/\xff\xfe.mp4 0\n")
    with pytest.raises(ValueError, match=r"bom.txt' is not UTF-8 text"):
        read_list_file(lst, root=index_root)


def test_a_video_given_as_the_data_is_named_as_a_video(index_root):
    # it was read as a list file: "is not UTF-8 text"
    video = index_root / "a" / "a0.mp4"
    with pytest.raises(ValueError, match=r"a0.mp4' is a video: the data is a folder of class folders, a list "
                                         r"file or an annotation file \(effvid predict classifies single videos\)"):
        build_dataset(video, "all", num_segments=2)


@pytest.fixture
def bad_root(tmp_path, index_root):
    """index_root plus a zero-byte, a random-bytes, a truncated video and a deleted one."""
    good = (index_root / "a" / "a0.mp4").read_bytes()
    (index_root / "a" / "zero.mp4").write_bytes(b"")
    (index_root / "b" / "random.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    (index_root / "b" / "half.mp4").write_bytes(good[: len(good) // 2])
    return index_root


def test_bad_files_become_markers_and_are_reported(bad_root):
    samples, classes = scan_class_folders(bad_root)
    (bad_root / "a" / "a2.mp4").unlink()  # vanished after the scan
    ds = VideoClipDataset(samples, classes, num_segments=4, train=True, size=32)
    items = [ds[i] for i in range(len(ds))]
    bad = {it.path.split("/")[-1]: it.reason for it in items if isinstance(it, BadSample)}
    assert set(bad) == {"zero.mp4", "random.mp4", "half.mp4", "a2.mp4"}
    for name, reason in bad.items():
        assert name not in reason  # the marker's path names the file; reports print both
    assert "empty" in bad["zero.mp4"] and "not found" in bad["a2.mp4"]

    batch = collate_clips(items)
    assert batch["video"].shape == (4, 4, 3, 32, 32)
    assert batch["label"].tolist() == [ds.samples[i].label for i, it in enumerate(items) if isinstance(it, dict)]
    assert len(batch["path"]) == 4 and len(batch["bad"]) == 4

    all_bad = collate_clips([it for it in items if isinstance(it, BadSample)])
    assert all_bad["video"].shape[0] == 0 and all_bad["label"].shape == (0,)
    assert len(all_bad["bad"]) == 4


def test_dataloader_with_workers_reports_bad_files(bad_root):
    samples, classes = scan_class_folders(bad_root)
    ds = VideoClipDataset(samples, classes, num_segments=4, train=True, size=32)
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_clips)
    seen, bad = 0, []
    for batch in loader:
        seen += batch["video"].shape[0]
        bad += batch["bad"]
    assert seen == 5
    assert sorted(p.split("/")[-1] for p, _ in bad) == ["half.mp4", "random.mp4", "zero.mp4"]


def test_dataset_rejects_bad_labels(index_root):
    with pytest.raises(ValueError, match="out of range"):
        VideoClipDataset([(str(index_root / "a" / "a0.mp4"), 3)], ["a", "b"])
    with pytest.raises(ValueError, match="sampling"):
        VideoClipDataset([], ["a"], sampling="random")


def _let_a_stuck_reader_go(fifo, after: float = 5.0) -> None:
    """Open ``fifo``'s writing end after ``after`` seconds, if something waits to read it, so
    that a reader stuck opening it (what is tested against) fails the test instead of hanging it."""
    import threading
    import time

    def release():
        time.sleep(after)
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # no reader waiting: nothing was stuck
            pass

    threading.Thread(target=release, daemon=True).start()


def test_a_listed_video_that_is_a_broken_link_names_its_target(tmp_path):
    # it said "video not found", naming neither the link nor where it pointed
    (tmp_path / "moved.mp4").symlink_to(tmp_path / "gone" / "clip.mp4")
    lst = tmp_path / "l.txt"
    lst.write_text("moved.mp4 0\n")
    with pytest.raises(FileNotFoundError) as e:
        read_list_file(lst)
    assert e.value.strerror == (f"{str(lst)!r} line 1: {str(tmp_path / 'moved.mp4')!r} is a broken link "
                                f"to {str(tmp_path / 'gone' / 'clip.mp4')}")


def test_a_listed_path_that_is_no_file_says_what_it_is(tmp_path, index_root):
    # a FIFO, a folder named like a video and a device were each "video not found"
    from effvid.data import VideoDecodeError, probe_video

    os.mkfifo(tmp_path / "fifo.mp4")
    (tmp_path / "folder.mp4").mkdir()
    (tmp_path / "null.mp4").symlink_to(os.devnull)
    lst = tmp_path / "l.txt"
    lst.write_text("fifo.mp4 0\nfolder.mp4 0\nnull.mp4 1\n")
    with pytest.raises(FileNotFoundError) as e:
        read_list_file(lst)
    assert e.value.strerror == (
        f"{str(lst)!r} line 1: {str(tmp_path / 'fifo.mp4')!r} is not a regular file (a FIFO); 2 more of "
        f"the 3 listed videos are missing too (the next: {str(lst)!r} line 2: "
        f"{str(tmp_path / 'folder.mp4')!r} is a folder, not a video file)")
    missing: list = []
    read_list_file(lst, missing=missing)
    assert [p for p, *_ in missing] == [str(tmp_path / n) for n in ("fifo.mp4", "folder.mp4", "null.mp4")]
    # the decoder is never given a FIFO to open: it would wait for a writer
    _let_a_stuck_reader_go(tmp_path / "fifo.mp4")
    for name, what in (("fifo.mp4", "not a regular file (a FIFO)"), ("folder.mp4", "a folder, not a video file"),
                       ("null.mp4", "not a regular file (a character device)")):
        with pytest.raises(VideoDecodeError) as e:
            probe_video(tmp_path / name)
        assert e.value.reason == f"path is {what}"


def test_all_missing_videos_of_a_list_are_counted_in_one_error(tmp_path, index_root):
    # the first missing video stopped the reading: a list with 300 missing files took 300 runs
    lst = tmp_path / "l.txt"
    lst.write_text("a/a0.mp4 0\na/nope1.mp4 0\nb/b0.mp4 1\nb/nope2.mp4 1\nb/nope3.mp4 1\n")
    with pytest.raises(FileNotFoundError) as e:
        read_list_file(lst, root=index_root)
    assert e.value.strerror == (
        f"{str(lst)!r} line 2: video not found: {str(index_root / 'a' / 'nope1.mp4')!r}; 2 more of the 5 "
        f"listed videos are missing too (the next: {str(lst)!r} line 4: video not found: "
        f"{str(index_root / 'b' / 'nope2.mp4')!r})")
    lst.write_text("a/a0.mp4 0\na/nope1.mp4 0\nb/nope2.mp4 1\n")  # one more: "is missing"
    with pytest.raises(FileNotFoundError) as e:
        read_list_file(lst, root=index_root)
    assert e.value.strerror.split("; ", 1)[1].startswith("1 more of the 3 listed videos is missing too (the next: ")


def _class_files(root, counts):
    """root/<class>/vNN.mp4 for each class's count: the split reads names, not frames."""
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            (root / cls / f"v{k:02d}.mp4").write_bytes(b"")
    return root


def _sides(root, fraction=0.2, seed=0, previous=None):
    samples, _ = scan_class_folders(root)
    train, val = stratified_split(samples, fraction, seed, root=root, previous=previous)
    return {"train": [split_key(s.path, root) for s in train], "val": [split_key(s.path, root) for s in val]}


def test_split_moves_no_other_video_when_videos_are_added_or_removed(tmp_path):
    # An rng drawn class after class: 3 videos added to one class moved 7 of 12 validation
    # videos into training, also in classes that got no new video.
    root = _class_files(tmp_path / "d", {"a": 12, "b": 12, "c": 12, "d": 12})
    before = _sides(root)
    assert [sum(k.startswith(c + "/") for k in before["val"]) for c in "abcd"] == [2, 2, 2, 2]  # round(2.4)
    for k in range(12, 15):
        (root / "a" / f"v{k:02d}.mp4").write_bytes(b"")
    (root / "c" / "v05.mp4").unlink()
    after = _sides(root)
    for c in "bd":  # classes without a new video: the same validation videos
        assert [k for k in after["val"] if k.startswith(c + "/")] == [k for k in before["val"] if k.startswith(c + "/")]
    # c lost a video (its share stays 2): its other validation videos stay
    assert {k for k in before["val"] if k.startswith("c/")} - {"c/v05.mp4"} <= set(after["val"])
    moved = set(before["val"]) & set(after["train"])
    assert len(moved) <= 1  # at most one where a class's count changes its share
    # a moved DATA folder, or DATA spelled relative, splits the same
    shutil.copytree(root, tmp_path / "moved")
    assert _sides(tmp_path / "moved") == after
    assert _sides(Path(os.path.relpath(root))) == after
    # another seed, another split
    assert _sides(root, seed=1) != after
    for fraction in (0.01, 0.99):  # each class of >= 2 videos keeps one on each side
        sides = _sides(root, fraction)
        assert all(any(k.startswith(c + "/") for k in sides[side]) for c in "abcd" for side in ("train", "val"))


def test_split_keeps_the_sides_of_a_previous_split(tmp_path):
    root = _class_files(tmp_path / "d", {"a": 10, "b": 3, "c": 2})
    first = _sides(root)
    assert len(first["val"]) == 2 + 1 + 1  # each class with >= 2 videos validates one at least
    # videos added: the earlier ones keep their sides, the new ones fill each class's share
    for k in range(10, 16):
        (root / "a" / f"v{k:02d}.mp4").write_bytes(b"")
    again = _sides(root, previous=first)
    assert set(first["val"]) <= set(again["val"]) and set(first["train"]) <= set(again["train"])
    assert sum(k.startswith("a/") for k in again["val"]) == 3  # round(16 * 0.2)
    # class c's training video removed: its validation video trains (a class must be learnable)
    (c_train,) = [k for k in first["train"] if k.startswith("c/")]
    (c_val,) = [k for k in first["val"] if k.startswith("c/")]
    (root / c_train).unlink()
    (root / "c" / "v09.mp4").write_bytes(b"")  # a new one
    third = _sides(root, previous=again)
    assert c_val in third["val"] and "c/v09.mp4" in third["train"]
    (root / "c" / "v09.mp4").unlink()
    fourth = _sides(root, previous=again)
    assert c_val in fourth["train"]  # a lone validation video would leave c untrained
    # b's validation video removed: no trained video moves to validation (it would be measured
    # on what it learnt); b validates on nothing
    (b_val,) = [k for k in first["val"] if k.startswith("b/")]
    (root / b_val).unlink()
    fifth = _sides(root, previous=again)
    assert not [k for k in fifth["val"] if k.startswith("b/")]
