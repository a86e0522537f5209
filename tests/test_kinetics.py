"""Kinetics' annotation CSVs (train.csv, validate.csv) read as published: the videos in the flat
layout of CVDF's download or in class folders, the ones deleted from YouTube skipped and
counted, and the classes numbered alphabetically."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from effvid.cli import main
from effvid.data import read_kinetics_annotations, read_samples
from effvid.models.weights import load_weights
from effvid.training.config import TrainConfig
from effvid.training.run_data import build_datasets
from test_annotation_formats import _write_clips

# sorted: Kinetics numbers its classes alphabetically, whatever the order of the CSV's lines
LABELS = ["abseiling", "air drumming", "passing American football, in game"]
HEADER = "label,youtube_id,time_start,time_end,split"
# label, youtube_id, time_start, time_end as written (84.0: some releases write floats), missing
TRAIN = [
    ('"passing American football, in game"', "--33Lscn6sk", "4", "14", False),
    ("air drumming", "-VtLx-mcPds", "84.0", "94.0", False),
    ("abseiling", "0347ZoDXyP0", "0", "10", False),
    ('"passing American football, in game"', "gone_from_yt", "1", "11", True),
    ("air drumming", "aaaaaaaaaaa", "12", "22", False),
    ("abseiling", "b_b-bbbbbbb", "100", "110", True),
]
VAL = [
    ("abseiling", "v0000000000", "5", "15", False),
    ("air drumming", "v1111111111", "6", "16", False),
    ('"passing American football, in game"', "v2222222222", "7", "17", False),
    ("abseiling", "v3333333333", "8", "18", True),
]


def _label(written: str) -> str:
    return written.strip('"')


def _file(row) -> str:
    _, video_id, start, end, _ = row
    return f"{video_id}_{int(float(start)):06d}_{int(float(end)):06d}.mp4"


def _write_csv(path: Path, rows, split: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "\n" + "".join(f"{lb},{vid},{s},{e},{split}\n" for lb, vid, s, e, _ in rows))
    return path


def _folder(label: str) -> str:
    """Class folders as downloaders write them: one with underscores for its spaces."""
    return label.replace(" ", "_") if label == "air drumming" else label


@pytest.fixture
def k400(tmp_path):
    """CVDF's layout: annotations/{train,validate}.csv beside flat train/ and val/ folders, with
    the videos of the rows marked missing left out."""
    annotations = tmp_path / "annotations"
    _write_csv(annotations / "train.csv", TRAIN, "train")
    _write_csv(annotations / "validate.csv", VAL, "validate")  # its folder is val/
    _write_clips([tmp_path / "train" / _file(r) for r in TRAIN if not r[4]] +
                 [tmp_path / "val" / _file(r) for r in VAL if not r[4]])
    return tmp_path


@pytest.mark.parametrize("layout", ["flat", "class folders"])
def test_samples_classes_and_missing_videos(tmp_path, layout):
    csv = _write_csv(tmp_path / "train.csv", TRAIN, "train")
    videos = tmp_path / "videos"

    def where(row) -> Path:
        return videos if layout == "flat" else videos / _folder(_label(row[0]))

    _write_clips([where(r) / _file(r) for r in TRAIN if not r[4]])
    # any video extension: a converted video is found under its new one
    (where(TRAIN[2]) / _file(TRAIN[2])).rename(where(TRAIN[2]) / "0347ZoDXyP0_000000_000010.mkv")
    notes: list[str] = []
    samples, classes = read_kinetics_annotations(csv, root=videos, notice=notes.append)
    assert classes == LABELS
    assert [(s.path, s.label) for s in samples] == [
        (str(where(TRAIN[0]) / "--33Lscn6sk_000004_000014.mp4"), 2),
        (str(where(TRAIN[1]) / "-VtLx-mcPds_000084_000094.mp4"), 1),
        (str(where(TRAIN[2]) / "0347ZoDXyP0_000000_000010.mkv"), 0),
        (str(where(TRAIN[4]) / "aaaaaaaaaaa_000012_000022.mp4"), 1),
    ]
    # said once, with the first missing video's path (in its class folder, if there is one)
    assert notes == [f"{csv}: 2 of 6 listed videos not found under {videos} (skipped; the first: "
                     f"{where(TRAIN[3]) / 'gone_from_yt_000001_000011.mp4'})"]
    assert read_samples(csv, root=videos) == (samples, classes)  # .csv: read as Kinetics'
    # given classes (a checkpoint's, the training set's): their numbers
    given = [LABELS[2], LABELS[0], LABELS[1], "zumba"]
    got, classes = read_samples(csv, root=videos, classes=given)
    assert classes == given and [s.label for s in got] == [0, 2, 1, 2]


def test_default_root_and_one_root_for_both_splits(k400, tmp_path):
    train_csv, val_csv = k400 / "annotations" / "train.csv", k400 / "annotations" / "validate.csv"
    # without --data-root: no video beside the CSV, so CVDF's annotations/../train/ (val/ for validate)
    notes: list[str] = []
    samples, _ = read_samples(train_csv, notice=notes.append)
    assert [s.path for s in samples] == [str(k400 / "train" / _file(r)) for r in TRAIN if not r[4]]
    val, _ = read_samples(val_csv, notice=notes.append)
    assert [s.path for s in val] == [str(k400 / "val" / _file(r)) for r in VAL if not r[4]]
    assert notes == [
        f"{train_csv}: videos from {k400 / 'train'}, as no listed video is in {k400 / 'annotations'} "
        "(--data-root to give another folder)",
        f"{train_csv}: 2 of 6 listed videos not found under {k400 / 'train'} (skipped; the first: "
        f"{k400 / 'train' / 'gone_from_yt_000001_000011.mp4'})",
        f"{val_csv}: videos from {k400 / 'val'}, as no listed video is in {k400 / 'annotations'} "
        "(--data-root to give another folder)",
        f"{val_csv}: 1 of 4 listed videos not found under {k400 / 'val'} (skipped; the first: "
        f"{k400 / 'val' / 'v3333333333_000008_000018.mp4'})",
    ]
    # --data-root holding train/ and val/ serves both CSVs; the split folder itself too
    assert read_samples(train_csv, root=k400)[0] == samples
    # without --val-data, a training configuration splits the CSV's videos, saying what is missing
    notes_train_missing = notes[1]
    notes.clear()
    train_set, val_set = build_datasets(TrainConfig(data=str(train_csv), data_root=str(k400)),
                                        notice=notes.append)
    assert sorted(train_set.samples + val_set.samples) == sorted(samples)
    assert train_set.classes == LABELS and len(val_set) == 1  # air drumming's second video
    assert notes == [f"{train_csv}: videos from {k400 / 'train'}, as no listed video is in {k400} "
                     "(--data-root to give another folder)", notes_train_missing]
    assert read_samples(val_csv, root=k400)[0] == val
    assert read_samples(val_csv, root=k400 / "val")[0] == val
    # no listed video at all: a wrong --data-root, named with the path it would have
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"validate.csv': none of its 4 listed videos is in "
                                         rf"'{tmp_path}/empty' \(the first would be "
                                         rf"'{tmp_path}/empty/v0000000000_000005_000015.mp4'\): give the "
                                         r"videos' folder, or the folder that holds their train/ and val/"):
        read_samples(val_csv, root=tmp_path / "empty")
    shutil.rmtree(k400 / "val")
    with pytest.raises(ValueError, match=rf"none of its 4 listed videos is in '{k400}/annotations' \(the first"):
        read_samples(val_csv)


def test_default_root_from_inside_the_annotations_folder(k400, monkeypatch):
    # "effvid train train.csv" typed in annotations/: the CSV's folder is ".", whose Path.parent
    # is "." again, so CVDF's ../train/ was looked for in ./train/ and nothing was found
    monkeypatch.chdir(k400 / "annotations")
    notes: list[str] = []
    samples, _ = read_samples("train.csv", notice=notes.append)
    assert [s.path for s in samples] == [str(Path("..", "train", _file(r))) for r in TRAIN if not r[4]]
    assert notes[0] == "train.csv: videos from ../train, as no listed video is in . (--data-root to give another folder)"


def test_kinetics_700_2020_file(tmp_path):
    """A byte-order mark, CRLF line ends, the is_cc column, a blank line; labels checked
    against given classes, naming the line."""
    csv = tmp_path / "validate.csv"
    csv.write_bytes(("\ufefflabel,youtube_id,time_start,time_end,split,is_cc\r\n"
                     "air drumming,x1,3,13,val,0\r\n\r\n"
                     '"passing American football, in game",x2,0,10,val,1\r\n').encode())
    _write_clips([tmp_path / "x1_000003_000013.mp4", tmp_path / "x2_000000_000010.mp4"])
    samples, classes = read_samples(csv)  # the videos beside the CSV: the default root
    assert classes == [LABELS[1], LABELS[2]]
    assert [(Path(s.path).name, s.label) for s in samples] == [("x1_000003_000013.mp4", 0),
                                                               ("x2_000000_000010.mp4", 1)]
    with pytest.raises(ValueError, match=r"validate.csv' line 4: label 'passing American football, in "
                                         r"game' is not one of the 2 classes \(abseiling, air drumming\)$"):
        read_samples(csv, classes=["abseiling", "air drumming"])
    with pytest.raises(ValueError, match=r"line 2: label 'air drumming' is not one of the 1 classes "
                                         r"\(the classes name it 'air_drumming'\)"):
        read_samples(csv, classes=["air_drumming"])


@pytest.mark.parametrize("content,match", [
    (f"{HEADER}\nabseiling,a,0,10,train\nabseiling,b,0,10\n",
     r"k.csv' line 3: 4 fields, but the header names 5 \(label,youtube_id,time_start,time_end,split\)"),
    (f"{HEADER}\npassing American football, in game,a,0,10,train\n", r"k.csv' line 2: 6 fields, but the "
     r"header names 5 .*a label with a comma must be in quotes"),
    (f"{HEADER}\nabseiling,a,0,10,train\n\nabseiling,b,0.5,10,train\n",
     r"k.csv' line 4: time_start '0.5' is not a whole number of seconds"),
    (f"{HEADER}\nabseiling,a,0,ten,train\n", r"k.csv' line 2: time_end 'ten' is not a whole number"),
    (f"{HEADER}\nabseiling,a,0,10,train\n,b,0,10,train\n", r"k.csv' line 3: no label"),
    (f'{HEADER}\n"air\ndrumming",a,0,10,train\n"abseiling,b,0,10,train\n',
     r"k.csv' line 4: not valid CSV \(unexpected end of data\)"),  # an unclosed quote
    ("label,youtube_id,time_start,split\nabseiling,a,0,train\n",
     r"k.csv' line 1: no 'time_end' column in the header 'label,youtube_id,time_start,split'"),
    ("abseiling,a,0,10,train\n", r"k.csv' line 1: a .csv file is read as Kinetics' annotations, whose "
     r"first line names the columns \(label,youtube_id,time_start,time_end,split\); this one is "
     r"'abseiling,a,0,10,train' \(a list file .* needs another extension"),
    (f"{HEADER}\n", r"annotation file '.*k.csv' lists no videos"),
    # the test set: no labels
    ("youtube_id,time_start,time_end,split\na,0,10,test\n", r"k.csv' has no label column \(its columns: "
     r"youtube_id, time_start, time_end, split\): a file without labels, such as Kinetics' test.csv, "
     r"cannot be trained or evaluated on"),
])
def test_malformed_files_name_the_line(tmp_path, content, match):
    (tmp_path / "k.csv").write_text(content)
    with pytest.raises(ValueError, match=match):
        read_samples(tmp_path / "k.csv")


def test_train_eval_resume_on_kinetics_csv(k400, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(k400)  # relative paths, as typed in the dataset's folder
    run = tmp_path / "run"
    common = ["--model", "tsm_resnet_tiny", "--num-segments", "2", "--size", "32", "--epochs", "1",
              "--batch-size", "2", "--workers", "0", "--no-progress", "--output", str(run)]
    assert main(["train", "annotations/train.csv", "--val-data", "annotations/validate.csv",
                 "--data-root", ".", *common]) == 0
    out = capsys.readouterr().out
    # the paths absolute, as config.json keeps them: a resume names them the same way
    train_note = (f"{k400 / 'annotations/train.csv'}: 2 of 6 listed videos not found under {k400 / 'train'} "
                  f"(skipped; the first: {k400 / 'train/gone_from_yt_000001_000011.mp4'})")
    val_note = (f"{k400 / 'annotations/validate.csv'}: 1 of 4 listed videos not found under {k400 / 'val'} "
                f"(skipped; the first: {k400 / 'val/v3333333333_000008_000018.mp4'})")
    assert out.count(train_note) == 1 and out.count(val_note) == 1, out
    assert load_weights(run / "best.safetensors")[1]["classes"] == LABELS
    config = json.loads((run / "config.json").read_text())
    assert (config["data"], config["data_root"]) == (str(k400 / "annotations" / "train.csv"), str(k400))
    assert config["val_data"] == str(k400 / "annotations" / "validate.csv")
    # eval on the validation CSV, with the checkpoint's classes
    assert main(["eval", "annotations/validate.csv", "-c", str(run / "best.safetensors"), "--data-root",
                 "val", "--workers", "0", "--quiet", "--json", str(tmp_path / "e.json")]) == 0
    out, err = capsys.readouterr()
    val_note = ("annotations/validate.csv: 1 of 4 listed videos not found under val (skipped; "
                "the first: val/v3333333333_000008_000018.mp4)")  # eval's: as typed
    assert err == val_note + "\n"  # on stderr: stdout is the results
    assert out.startswith("3 videos, 1 view each")
    stats = json.loads((tmp_path / "e.json").read_text())
    assert stats["classes"] == LABELS and [sum(row) for row in stats["confusion"]] == [1, 1, 1]
    # --resume from elsewhere: the saved absolute paths find the CSVs and videos again
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--output", str(run), "--resume"]) == 0
    out = capsys.readouterr().out
    assert train_note in out
    assert "has completed 1 of 1 epoch: nothing to do" in out


def test_a_clip_listed_twice_is_read_once_and_said(tmp_path):
    rows = TRAIN[:3] + [("abseiling", "--33Lscn6sk", "4", "14", False),   # TRAIN[0] again, another label
                        ("air drumming", "-VtLx-mcPds", "84", "94", False)]  # TRAIN[1] again, same label
    csv = _write_csv(tmp_path / "train.csv", rows, "train")
    _write_clips([tmp_path / _file(r) for r in rows[:3]])
    notes: list[str] = []
    samples, classes = read_kinetics_annotations(csv, notice=notes.append)
    assert [(Path(s.path).name, classes[s.label]) for s in samples] == [
        ("--33Lscn6sk_000004_000014.mp4", LABELS[2]), ("-VtLx-mcPds_000084_000094.mp4", "air drumming"),
        ("0347ZoDXyP0_000000_000010.mp4", "abseiling")]
    assert notes == [f"{csv}: 2 line(s) repeat a clip listed earlier and are read once (the first: line 5 "
                     f"repeats line 2 (labels {LABELS[2]!r} and 'abseiling'; the first is kept))"]


@pytest.mark.parametrize("layout", ["flat", "class folders"])
def test_videos_named_by_their_youtube_id_alone(tmp_path, layout):
    # Downloaders that save a clip as <youtube_id>.mp4: found as the timed name is, which is
    # preferred where both are there. An id listed twice (two clips of one YouTube video) is
    # not read from <id>.mp4, which cannot say which clip it holds.
    rows = TRAIN[:3] + [("abseiling", "twice000000", "0", "10", False),
                        ("air drumming", "twice000000", "30", "40", False)]
    csv = _write_csv(tmp_path / "train.csv", rows, "train")
    videos = tmp_path / "videos"

    def where(row) -> Path:
        return videos if layout == "flat" else videos / _folder(_label(row[0]))

    _write_clips([where(rows[0]) / "--33Lscn6sk.mp4", where(rows[1]) / "-VtLx-mcPds.mkv",
                  where(rows[2]) / "0347ZoDXyP0.mp4", where(rows[2]) / _file(rows[2]),
                  where(rows[3]) / "twice000000.mp4"])
    notes: list[str] = []
    samples, classes = read_kinetics_annotations(csv, root=videos, notice=notes.append)
    assert [(s.path, classes[s.label]) for s in samples] == [
        (str(where(rows[0]) / "--33Lscn6sk.mp4"), LABELS[2]),
        (str(where(rows[1]) / "-VtLx-mcPds.mkv"), "air drumming"),
        (str(where(rows[2]) / "0347ZoDXyP0_000000_000010.mp4"), "abseiling"),  # the timed name first
    ]
    # the unused <id>.mp4 is said, not plain "not found" (flat: both clips' file; in class
    # folders, the second clip's folder has none)
    plain = where(rows[3]) / "twice000000.mp4"
    assert notes == [f"{csv}: 2 of 5 listed videos not found under {videos} (skipped; the first: "
                     f"{where(rows[3]) / 'twice000000_000000_000010.mp4'}); {plain} is there, but the CSV "
                     "lists twice000000 for 2 clips, and a file named by the id alone cannot say which it "
                     "holds" + (" (and 1 more like it)" if layout == "flat" else "")]
    report = tmp_path / "check.json"
    assert main(["check", str(csv), "--data-root", str(videos), "--workers", "0", "--quiet",
                 "--json", str(report)]) == 1
    assert [(m["path"], m["reason"]) for m in json.loads(report.read_text())["missing"]] == [
        (str(where(row) / _file(row)), (f"{plain} is there, but the CSV lists twice000000 for 2 clips, and a "
                                        "file named by the id alone cannot say which it holds; "
                                        if layout == "flat" or row is rows[3] else "")
         + f"listed in {str(csv)!r} line {line}") for row, line in ((rows[3], 5), (rows[4], 6))]
