"""``effvid check DATA``: every video read as training would, before training."""

from __future__ import annotations

import json

from effvid.cli import main
from effvid.data.synthetic import make_synthetic_dataset


def test_check_reports_unreadable_videos_classes_and_ranges(tmp_path, capsys):
    data = tmp_path / "data"
    make_synthetic_dataset(data, classes=("left", "right"), videos_per_class_train=3, videos_per_class_val=2,
                           num_frames=8, size=32, seed=1)
    assert main(["check", str(data), "--workers", "0", "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("checked 10 videos (train 6, val 4) in ")
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
