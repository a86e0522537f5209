import json

import numpy as np
import pytest

from effvid.data import (SYNTHETIC_CLASSES, make_synthetic_dataset, probe_video, read_all_frames,
                         render_motion_clip)


def _object_track(frames):
    """Per-frame centroid (x, y) and area of pixels far from the background colour.

    Background = the most common colour of the first frame's border, so this works
    for any random background; distractors add a constant-ish offset only.
    """
    f = frames.astype(np.int32)
    border = np.concatenate([f[0, 0], f[0, -1], f[0, :, 0], f[0, :, -1]])
    vals, counts = np.unique(border // 16, axis=0, return_counts=True)
    bg = vals[counts.argmax()] * 16 + 8
    mask = np.abs(f - bg).sum(-1) > 90
    ys, xs = np.mgrid[0:f.shape[1], 0:f.shape[2]]
    area = mask.sum((1, 2)).astype(float)
    cx = (mask * xs).sum((1, 2)) / np.maximum(area, 1)
    cy = (mask * ys).sum((1, 2)) / np.maximum(area, 1)
    return cx, cy, area


def _slope(v):
    return np.polyfit(np.arange(len(v)), v, 1)[0]


def test_files_layout_and_decoding(synthetic_root):
    for split, n in (("train", 3), ("val", 2)):
        for cls in SYNTHETIC_CLASSES:
            files = sorted((synthetic_root / split / cls).glob("*.mp4"))
            assert len(files) == n
            info = probe_video(files[0])
            assert (info.num_frames, info.width, info.height, info.fps) == (16, 64, 64, 8)


def test_summary_and_determinism(tmp_path):
    s1 = make_synthetic_dataset(tmp_path / "a", classes=("left", "right"), videos_per_class_train=2,
                                videos_per_class_val=1, seed=3)
    s2 = make_synthetic_dataset(tmp_path / "b", classes=("left", "right"), videos_per_class_train=2,
                                videos_per_class_val=1, seed=3)
    assert s1["counts"] == {"train": {"left": 2, "right": 2}, "val": {"left": 1, "right": 1}}
    assert len(s1["paths"]["train"]["right"]) == 2
    a = read_all_frames(s1["paths"]["train"]["right"][1])
    b = read_all_frames(s2["paths"]["train"]["right"][1])
    assert np.array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match="sideways"):
        make_synthetic_dataset(tmp_path / "c", classes=("sideways",))


def test_motion_direction_in_decoded_videos(synthetic_root):
    slopes = {}
    for cls in SYNTHETIC_CLASSES:
        for p in sorted((synthetic_root / "train" / cls).glob("*.mp4")):
            cx, cy, area = _object_track(read_all_frames(p).numpy())
            slopes.setdefault(cls, []).append((_slope(cx), _slope(cy), _slope(area)))
    for cls, vals in slopes.items():
        sx, sy, sa = np.array(vals).T
        if cls == "left":
            assert np.all(sx < 0)
        elif cls == "right":
            assert np.all(sx > 0)
        elif cls == "up":
            assert np.all(sy < 0)
        elif cls == "down":
            assert np.all(sy > 0)
        elif cls == "grow":
            assert np.all(sa > 0)
        elif cls == "shrink":
            assert np.all(sa < 0)


def test_mirrored_classes_have_the_same_frame_distribution():
    """A time-reversed 'left' clip looks like a 'right' clip, and single frames carry no class."""
    n = 80
    stats = {}
    for cls in ("left", "right"):
        xs, slopes = [], []
        for k in range(n):
            clip = render_motion_clip(cls, np.random.default_rng([7, k, cls == "right"]), 16, 64)
            cx, _, _ = _object_track(clip)
            xs.append(cx)
            slopes.append(_slope(cx))
        stats[cls] = (np.array(xs), np.array(slopes))
    (lx, ls), (rx, rs) = stats["left"], stats["right"]
    assert np.all(ls < 0) and np.all(rs > 0)
    # left reversed in time moves like right
    assert np.all(np.array([_slope(x[::-1]) for x in lx]) > 0)
    # the pooled distribution of per-frame object positions is the same for both classes
    pooled_l, pooled_r = np.sort(lx.ravel()), np.sort(rx.ravel())
    assert abs(pooled_l.mean() - pooled_r.mean()) < 1.0
    assert np.max(np.abs(np.quantile(pooled_l, [.1, .25, .5, .75, .9]) -
                         np.quantile(pooled_r, [.1, .25, .5, .75, .9]))) < 2.0
    # first frames of right clips look like last frames of left clips
    assert abs(rx[:, 0].mean() - lx[:, -1].mean()) < 2.0 and abs(rx[:, -1].mean() - lx[:, 0].mean()) < 2.0


def test_fast_enough(tmp_path):
    s = make_synthetic_dataset(tmp_path, videos_per_class_train=10, videos_per_class_val=0)
    assert sum(s["counts"]["train"].values()) == 60
    assert s["seconds"] < 10  # ~12 ms per 16x64x64 video on 2 cores


def test_a_second_call_with_fewer_videos_removes_the_first_calls_extra_ones(tmp_path):
    """effvid quickstart --videos-per-class 10 into the folder of a run with 20 announced 60
    training videos and trained on 120: the earlier run's extra videos were still there."""
    make_synthetic_dataset(tmp_path, classes=("left", "right", "up"), videos_per_class_train=3,
                           videos_per_class_val=2, num_frames=4, size=16)
    mine = tmp_path / "train" / "left" / "mine.mp4"  # not recorded: never touched
    mine.write_bytes(b"kept")
    s = make_synthetic_dataset(tmp_path, classes=("left", "right"), videos_per_class_train=1,
                               videos_per_class_val=1, num_frames=4, size=16)
    on_disk = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert on_disk == ["effvid-synthetic.json", "train/left/left_0000.mp4", "train/left/mine.mp4",
                       "train/right/right_0000.mp4", "val/left/left_0000.mp4", "val/right/right_0000.mp4"]
    assert not (tmp_path / "train" / "up").exists()  # the class folders left empty are removed
    assert s["counts"] == {"train": {"left": 1, "right": 1}, "val": {"left": 1, "right": 1}}
    record = json.loads((tmp_path / "effvid-synthetic.json").read_text())
    assert record["settings"]["videos_per_class"] == {"train": 1, "val": 1}
    assert record["files"] == ["train/left/left_0000.mp4", "train/right/right_0000.mp4",
                               "val/left/left_0000.mp4", "val/right/right_0000.mp4"]


def test_a_record_that_names_other_files_deletes_none_of_them(tmp_path):
    """Only names the generator writes, in real folders under the root, are deleted: a record
    edited by hand or copied could name "/tmp/x/y" (three parts, as <split>/<class>/<video>), and
    a class folder may be a link to the user's own videos."""
    root, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    (elsewhere / "left").mkdir(parents=True)
    victims = [elsewhere / "victim.txt", elsewhere / "left" / "left_0007.mp4", tmp_path / "x.mp4"]
    for v in victims:
        v.write_bytes(b"precious")
    (root / "val").mkdir(parents=True)
    (root / "val" / "left").symlink_to(elsewhere / "left")  # the user's folder, linked in
    ours = root / "train" / "up" / "up_0003.mp4"
    ours.parent.mkdir(parents=True)
    ours.write_bytes(b"an earlier call's")
    (root / "effvid-synthetic.json").write_text(json.dumps({"files": [
        str(victims[0]), "val/left/left_0007.mp4", "train/left/../../../x.mp4", "train/up/up_0003.mp4"]}))
    make_synthetic_dataset(root, classes=("right",), videos_per_class_train=1, videos_per_class_val=0,
                           num_frames=4, size=16)
    assert all(v.read_bytes() == b"precious" for v in victims)
    assert not ours.exists()  # the one name the generator writes, in its own folder
