"""The published annotation files of UCF101 and Something-Something v2, read as they are:
class files (classInd.txt, labels.json), UCF101's split lists (1-based labels; testlist with
paths alone) and Something-Something's train.json / validation.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from effvid.cli import main
from effvid.data import (find_class_file, read_class_file, read_list_file, read_samples,
                         read_something_annotations, render_motion_clip, write_video)
from effvid.models.weights import load_weights
from effvid.training.config import TrainConfig
from effvid.training.run_data import build_datasets

# as in UCF101's classInd.txt: numbered from 1, in an order that is not Python's sort
# ("JumpRope" < "JumpingJack" for Python; classInd lists JumpingJack first)
UCF_CLASSES = ["ApplyEyeMakeup", "JumpingJack", "JumpRope"]
SSV2_LABELS = {  # labels.json: template -> number as a string, not in number order
    "Pushing something from left to right": "2",
    "Holding something next to something": "0",
    "Approaching something with your camera": "1",
}
SSV2_CLASSES = ["Holding something next to something", "Approaching something with your camera",
                "Pushing something from left to right"]


def _write_clips(paths, motion="grow", codec="libx264"):
    """One small real video, copied to every path (encoding each would only cost time)."""
    first = write_video(paths[0], render_motion_clip(motion, np.random.default_rng(0), num_frames=8,
                                                     size=32), fps=8, codec=codec)
    for p in paths[1:]:
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(first, p)


@pytest.fixture
def ucf(tmp_path):
    """UCF-101/<Class>/v_<Class>_gNN_c01.avi (3 per class) and ucfTrainTestlist/ with classInd.txt,
    trainlist01.txt (groups 1-2, 1-based labels) and testlist01.txt (group 3, paths alone), with
    the published files' CRLF line ends."""
    videos = tmp_path / "UCF-101"
    names = {c: [f"{c}/v_{c}_g{g:02d}_c01.avi" for g in (1, 2, 3)] for c in UCF_CLASSES}
    for motion, (c, files) in zip(("grow", "left", "up"), names.items()):
        _write_clips([videos / f for f in files], motion, codec="mpeg4")
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_bytes("".join(f"{k} {c}\r\n" for k, c in enumerate(UCF_CLASSES, 1)).encode())
    (lists / "trainlist01.txt").write_bytes("".join(
        f"{files[g]} {k}\r\n" for k, files in enumerate(names.values(), 1) for g in (0, 1)).encode())
    (lists / "testlist01.txt").write_bytes("".join(f"{files[2]}\r\n" for files in names.values()).encode())
    return tmp_path


def test_class_file_forms(tmp_path):
    names = tmp_path / "names.txt"  # one name per line: numbered from 0 in line order
    names.write_text("# Kinetics-style names may have spaces\nair drumming\n\nabseiling\n")
    assert read_class_file(names) == {0: "air drumming", 1: "abseiling"}
    ind = tmp_path / "classInd.txt"
    ind.write_bytes("\ufeff1 ApplyEyeMakeup\r\n3 JumpRope\r\n2 JumpingJack\r\n".encode())
    numbers = read_class_file(ind)
    assert numbers == {1: "ApplyEyeMakeup", 2: "JumpingJack", 3: "JumpRope"}
    assert list(numbers.values()) == UCF_CLASSES  # in number order, whatever the line order
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(SSV2_LABELS, indent=1))
    assert read_class_file(labels) == dict(enumerate(SSV2_CLASSES))
    labels.write_text(json.dumps(["b", "a"]))  # a list of names
    assert read_class_file(labels) == {0: "b", 1: "a"}


@pytest.mark.parametrize("name,content,match", [
    ("c.txt", "1 a\n2 b\n2 c\n", r"c.txt' line 3: number 2 is already class 'b' \(line 2\)"),
    ("c.txt", "1 a\n2 b\n3 a\n", r"c.txt' line 3: class 'a' repeats line 1"),
    ("c.txt", "1 a\n2 b\n4 d\n", r"c.txt' line 3: number 4, but no class is numbered 3"),
    ("c.txt", "2 a\n3 b\n", r"c.txt' line 1: the numbers start at 2; expected 0 or 1"),
    ("c.txt", "1 a\nb\n", r"c.txt' line 2: expected 'number name' like line 1, got 'b'"),
    ("c.txt", "a\nb\na\n", r"c.txt' line 3: class 'a' repeats line 1"),
    ("c.txt", "# nothing\n\n", r"c.txt' names no classes"),
    ("c.json", '{"a": "0", "b": "1", "a": "2"}', r"c.json': class 'a' appears twice"),
    ("c.json", '{"a": "0", "b": "0"}', r"c.json', class 'b': number 0 is already class 'a'"),
    ("c.json", '{"a": "0", "b": "2"}', r"c.json': no class is numbered 1 \(the numbers must be 0..1\)"),
    ("c.json", '{"a": "zero"}', r"c.json', class 'a': its number 'zero' is not a whole number"),
    ("c.json", '[{"id": "1"}]', r"c.json' must hold a JSON object of class name -> number"),
])
def test_class_file_contradictions_name_file_and_line(tmp_path, name, content, match):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=match):
        read_class_file(tmp_path / name)


def test_ucf101_split_files(ucf):
    lists, videos = ucf / "ucfTrainTestlist", ucf / "UCF-101"
    numbers = read_class_file(lists / "classInd.txt")
    samples, classes = read_list_file(lists / "trainlist01.txt", root=videos, class_numbers=numbers)
    assert classes == UCF_CLASSES  # not "0".."3" with an empty class "0"
    # label 1 is classInd's first class, label 3 its third
    assert [(s.path.split("/")[-2], classes[s.label]) for s in samples] == [
        (c, c) for c in UCF_CLASSES for _ in (0, 1)]
    assert [s.label for s in samples] == [0, 0, 1, 1, 2, 2]
    # testlist: paths alone, the class from the first folder
    test, classes = read_list_file(lists / "testlist01.txt", root=videos, class_numbers=numbers)
    assert [(s.path, s.label) for s in test] == [
        (str(videos / c / f"v_{c}_g03_c01.avi"), k) for k, c in enumerate(UCF_CLASSES)]
    # classInd.txt beside the lists is found (read_samples, build_dataset, train and eval use it)
    assert find_class_file(lists / "trainlist01.txt") == lists / "classInd.txt"
    assert read_samples(lists / "trainlist01.txt", root=videos) == (samples, UCF_CLASSES)
    # a checkpoint's classes in another order (trained on class folders, sorted by Python):
    # the numbers still name the right classes
    ckpt_classes = sorted(UCF_CLASSES)
    assert ckpt_classes == ["ApplyEyeMakeup", "JumpRope", "JumpingJack"]
    got, _ = read_samples(lists / "trainlist01.txt", root=videos, classes=ckpt_classes)
    assert [ckpt_classes[s.label] for s in got] == [c for c in UCF_CLASSES for _ in (0, 1)]


def test_ucf101_errors_name_the_line(ucf, tmp_path):
    lists, videos = ucf / "ucfTrainTestlist", ucf / "UCF-101"
    numbers = read_class_file(lists / "classInd.txt")
    with pytest.raises(ValueError, match=r"testlist01.txt' line 1: 'ApplyEyeMakeup/v_ApplyEyeMakeup_g03_c01.avi' "
                                         r"has no label: write 'path label', or give the classes .*--classes"):
        read_list_file(lists / "testlist01.txt", root=videos)
    bad = tmp_path / "bad.txt"
    bad.write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\nJumpRope/v_JumpRope_g01_c01.avi 0\n")
    with pytest.raises(ValueError, match=r"bad.txt' line 2: label 0 is not a class number: the class "
                                         r"file numbers its 3 classes 1..3"):
        read_list_file(bad, root=videos, class_numbers=numbers)
    bad.write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nYoYo/v_YoYo_g01_c01.avi\n")
    with pytest.raises(ValueError, match=r"bad.txt' line 2: 'YoYo/v_YoYo_g01_c01.avi' has no label, "
                                         r"and its first folder 'YoYo' is not one of the 3 classes "
                                         r"\(ApplyEyeMakeup, JumpingJack, JumpRope\)$"):
        read_list_file(bad, root=videos, class_numbers=numbers)
    bad.write_text("JumpRope/v_JumpRope_g01_c01.avi 3\n")  # a class the checkpoint lacks
    with pytest.raises(ValueError, match=r"line 1: label 3 is class 'JumpRope', which is not one of the 2 classes "
                                         r"\(ApplyEyeMakeup, JumpingJack\)$"):
        read_list_file(bad, root=videos, classes=["ApplyEyeMakeup", "JumpingJack"], class_numbers=numbers)
    # a class name the checkpoint lacks (eval): its classes listed, as for a class folder (it
    # said "unknown class 'YoYo'" alone)
    bad.write_text("YoYo/v_YoYo_g01_c01.avi YoYo\n")
    with pytest.raises(ValueError) as err:
        read_list_file(bad, root=videos, classes=[f"class{k}" for k in range(12)])
    assert str(err.value) == (f"{str(bad)!r} line 1: class 'YoYo' is not one of the 12 classes (class0, class1, "
                              "class2, class3, class4, class5, class6, class7, class8, class9 and 2 more)")


@pytest.fixture
def ssv2(tmp_path):
    """labels/{labels,train,validation}.json and videos/<id>.webm (VP9), as published."""
    labels, videos = tmp_path / "labels", tmp_path / "videos"
    labels.mkdir()
    (labels / "labels.json").write_text(json.dumps(SSV2_LABELS, indent=1))
    templates = ["Holding [something] next to [something]", "Approaching [something] with your camera",
                 "Pushing [something] from left to right"]
    train = [{"id": str(100 + k), "label": "a filled-in label", "template": templates[k % 3],
              "placeholders": ["potato", "bottle"]} for k in range(6)]
    val = [{"id": str(200 + k), "label": "x", "template": templates[k], "placeholders": []} for k in range(3)]
    (labels / "train.json").write_text(json.dumps(train))
    (labels / "validation.json").write_text(json.dumps(val))
    _write_clips([videos / f"{e['id']}.webm" for e in train + val], codec="libvpx-vp9")
    return tmp_path


def test_something_something_annotations(ssv2, monkeypatch):
    labels, videos = ssv2 / "labels", ssv2 / "videos"
    samples, classes = read_something_annotations(labels / "train.json", root=videos,
                                                  class_numbers=read_class_file(labels / "labels.json"))
    assert classes == SSV2_CLASSES  # labels.json's numbers, not its key order
    # entry k: template k % 3: "Holding ..." is labels.json's 0, "Approaching ..." 1, "Pushing ..." 2
    assert [(s.path, s.label) for s in samples] == [(str(videos / f"{100 + k}.webm"), k % 3) for k in range(6)]
    # labels.json beside the annotation file is found
    assert read_samples(labels / "train.json", root=videos) == (samples, classes)
    # relative paths, as typed in a shell from the dataset's folder (the root was joined twice:
    # 'videos/videos/100.webm')
    monkeypatch.chdir(ssv2)
    relative = read_samples(Path("labels") / "train.json", root="videos")
    assert [(str(ssv2 / s.path), s.label) for s in relative[0]] == [(s.path, s.label) for s in samples]
    # a video converted to another container is found too
    (videos / "101.webm").rename(videos / "101.mp4")
    assert read_samples(labels / "train.json", root=videos)[0][1].path == str(videos / "101.mp4")
    # a training configuration: classes from labels.json, the validation set numbered alike
    train_set, val_set = build_datasets(TrainConfig(data=str(labels / "train.json"), data_root=str(videos),
                                                    val_data=str(labels / "validation.json")))
    assert train_set.classes == val_set.classes == SSV2_CLASSES
    assert [(s.path.split("/")[-1], s.label) for s in val_set.samples] == [("200.webm", 0), ("201.webm", 1),
                                                                           ("202.webm", 2)]


def test_something_something_errors_name_the_entry(ssv2, tmp_path):
    labels, videos = ssv2 / "labels", ssv2 / "videos"
    (videos / "102.webm").unlink()
    with pytest.raises(FileNotFoundError, match=r"train.json' entry 2 \(id '102'\): video not found: .*videos/102.webm"):
        read_samples(labels / "train.json", root=videos)
    with pytest.raises(FileNotFoundError, match=r"entry 0 \(id '100'\): video not found: .*labels/100.webm"):
        read_samples(labels / "train.json")  # without --data-root: the JSON's own folder
    ann = tmp_path / "ann.json"
    cases = [
        ([{"id": "200", "template": "Dropping [something]"}],
         r"ann.json' entry 0 \(id '200'\): class 'Dropping something' is not one of the 3 classes "
         r"\(.*Holding something next to something.*\)$"),
        ([{"id": "200", "template": SSV2_CLASSES[0]}, {"id": "5"}],  # the test set has no labels
         r"ann.json' entry 1 \(id '5'\): no \"template\""),
        ([{"id": "200", "template": SSV2_CLASSES[0]}, ["201"]], r"ann.json' entry 1: expected an object with an \"id\""),
        ([{"id": "200", "template": SSV2_CLASSES[0]}, {"id": "201", "template": SSV2_CLASSES[0]},
          {"id": 200, "template": SSV2_CLASSES[1]}], r"ann.json' entry 2 \(id 200\): the id of entry 0 again"),
        (SSV2_LABELS, r"holds a JSON object, not a list of videos: a class file such as labels.json goes to --classes"),
    ]
    for content, match in cases:
        ann.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=match):
            read_samples(ann, root=videos, classes=SSV2_CLASSES)
    ann.write_text(json.dumps([{"id": "200", "template": SSV2_CLASSES[0]}]))
    with pytest.raises(ValueError, match=r"ann.json': its videos are labelled by template, and the class "
                                         r"numbers are in labels.json: put it beside"):
        read_samples(ann, root=videos)  # no labels.json beside it


def test_train_eval_predict_on_ucf101_files(ucf, capsys):
    lists, videos, run = ucf / "ucfTrainTestlist", ucf / "UCF-101", ucf / "run"
    # --classes given explicitly; testlist01.txt reads its classes from the paths
    assert main(["train", str(lists / "trainlist01.txt"), "--val-data", str(lists / "testlist01.txt"),
                 "--classes", str(lists / "classInd.txt"), "--data-root", str(videos),
                 "--model", "tsm_resnet_tiny", "--num-segments", "2", "--size", "32", "--scale-size", "32",
                 "--epochs", "1", "--batch-size", "2", "--workers", "0", "--no-progress",
                 "--output", str(run)]) == 0
    assert load_weights(run / "best.safetensors")[1]["classes"] == UCF_CLASSES
    assert json.loads((run / "config.json").read_text())["classes"] == str(lists / "classInd.txt")
    capsys.readouterr()
    # eval on the 1-based trainlist (classInd.txt found beside it): every video counted under
    # its own class (the rows of the confusion matrix are the true classes)
    assert main(["eval", str(lists / "trainlist01.txt"), "-c", str(run / "best.safetensors"),
                 "--data-root", str(videos), "--workers", "0", "--quiet", "--json", str(ucf / "e.json")]) == 0
    assert f"class numbers from {lists / 'classInd.txt'}, found beside the data" in capsys.readouterr().err
    stats = json.loads((ucf / "e.json").read_text())
    assert stats["classes"] == UCF_CLASSES and [sum(row) for row in stats["confusion"]] == [2, 2, 2]
    # the same list elsewhere needs --classes to be read with classInd's numbers
    moved = ucf / "trainlist01.txt"
    shutil.copyfile(lists / "trainlist01.txt", moved)
    capsys.readouterr()
    assert main(["eval", str(moved), "-c", str(run / "best.safetensors"), "--data-root", str(videos),
                 "--workers", "0", "--quiet"]) == 2  # label 3 read as an index of 3 classes
    assert "trainlist01.txt' line 5: label 3 out of range for 3 classes" in capsys.readouterr().err
    assert main(["eval", str(moved), "-c", str(run / "best.safetensors"), "--data-root", str(videos),
                 "--classes", str(lists / "classInd.txt"), "--workers", "0", "--quiet",
                 "--json", str(ucf / "e2.json")]) == 0
    assert json.loads((ucf / "e2.json").read_text())["confusion"] == stats["confusion"]
    capsys.readouterr()
    assert main(["predict", str(videos / "JumpRope" / "v_JumpRope_g03_c01.avi"), "-c",
                 str(run / "best.safetensors"), "--json", "-", "--workers", "0"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"]
    assert sorted(t["label"] for t in top) == sorted(UCF_CLASSES)


def test_a_class_file_found_beside_the_data_is_named_before_an_error_about_its_numbers(ucf, capsys):
    # A list of 0-based labels beside a classInd.txt: the error says label 0 is not one of
    # "the class file"'s numbers; the line naming that file, which the user did not give,
    # was printed only after a successful read
    lists, videos = ucf / "ucfTrainTestlist", ucf / "UCF-101"
    zero_based = lists / "mine.txt"
    zero_based.write_text("".join(f"{c}/v_{c}_g01_c01.avi {k}\n" for k, c in enumerate(UCF_CLASSES)))
    common = ["--data-root", str(videos), "--model", "tsm_resnet_tiny", "--num-segments", "2",
              "--size", "32", "--epochs", "1", "--workers", "0", "--no-progress"]
    assert main(["train", str(zero_based), *common, "--output", str(ucf / "run")]) == 2
    out, err = capsys.readouterr()
    assert out == f"class names and numbers from {lists / 'classInd.txt'}, found beside the data (--classes FILE to give another)\n"
    assert "mine.txt' line 1: label 0 is not a class number" in err
    # training on the class folders, the validation list's numbers come from the classInd.txt
    # beside it (silently, before)
    assert main(["train", str(videos), "--val-data", str(zero_based), *common, "--output", str(ucf / "run")]) == 2
    out, err = capsys.readouterr()
    assert out == (f"class numbers of {zero_based} from {lists / 'classInd.txt'}, found beside it "
                   "(--classes FILE to give another)\n")
    assert "mine.txt' line 1: label 0 is not a class number" in err
    # effvid eval
    weights = ucf / "w.safetensors"
    from effvid.models import create_model
    from effvid.models.weights import save_weights
    save_weights(create_model("tsm_resnet_tiny", num_classes=3, num_segments=2), weights, {"classes": UCF_CLASSES})
    assert main(["eval", str(zero_based), "-c", str(weights), "--data-root", str(videos), "--quiet"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"class numbers from {lists / 'classInd.txt'}, found beside the data "
                                        "(--classes FILE to give another)\n")
    assert "mine.txt' line 1: label 0 is not a class number" in err
    assert not (ucf / "run").exists()


# -- published split folders: HMDB51's testTrainMulti_7030_splits, UCF101's ucfTrainTestlist ------

HMDB_CLASSES = ["brush_hair", "cartwheel", "catch"]


@pytest.fixture
def hmdb(tmp_path):
    """hmdb51/<class>/<video>.avi (4 per class) and testTrainMulti_7030_splits/ with split 1 and 2
    files, lines '<video> <id> ' as published (id 1 train, 2 test, 0 neither; a trailing space)."""
    videos, splits = tmp_path / "hmdb51", tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    names = {c: [f"{c}_clip_{k}.avi" for k in range(4)] for c in HMDB_CLASSES}
    for motion, (c, files) in zip(("grow", "left", "up"), names.items()):
        _write_clips([videos / c / f for f in files], motion, codec="mpeg4")
    ids = {1: ["1", "1", "2", "0"], 2: ["2", "2", "1", "1"]}
    for number, id_of in ids.items():
        for c, files in names.items():
            (splits / f"{c}_test_split{number}.txt").write_text(
                "".join(f"{f} {i} \n" for f, i in zip(files, id_of)))
    return videos, splits


def test_hmdb51_split_files(hmdb):
    from effvid.data import read_split_folder, split_folder_kind

    videos, splits = hmdb
    assert split_folder_kind(splits) == "hmdb51" and split_folder_kind(videos) is None
    got = {}
    for number in (1, 2):
        for part in ("train", "test"):
            samples, classes = read_split_folder(splits, part, number, root=videos)
            assert classes == HMDB_CLASSES
            got[number, part] = [(Path(s.path).relative_to(videos).as_posix(), s.label) for s in samples]
    # split 1: clips 0 and 1 train, clip 2 test, clip 3 in neither
    assert got[1, "train"] == [(f"{c}/{c}_clip_{k}.avi", i) for i, c in enumerate(HMDB_CLASSES) for k in (0, 1)]
    assert got[1, "test"] == [(f"{c}/{c}_clip_2.avi", i) for i, c in enumerate(HMDB_CLASSES)]
    assert got[2, "train"] == [(f"{c}/{c}_clip_{k}.avi", i) for i, c in enumerate(HMDB_CLASSES) for k in (2, 3)]
    assert got[2, "test"] == [(f"{c}/{c}_clip_{k}.avi", i) for i, c in enumerate(HMDB_CLASSES) for k in (0, 1)]
    # the videos' folder defaults to the split folder's parent: here it holds no class folders
    with pytest.raises(FileNotFoundError, match=r"the videos of HMDB51 class 'brush_hair' are not in .*"
                                                r"--data-root gives the folder that holds the class folders"):
        read_split_folder(splits, "train", 1)
    with pytest.raises(FileNotFoundError, match=r"no HMDB51 split 3 files \(\*_test_split3.txt\)"):
        read_split_folder(splits, "train", 3, root=videos)
    with pytest.raises(ValueError, match=r"bad split number 4: HMDB51 publishes splits 1, 2 and 3"):
        read_split_folder(splits, "train", 4, root=videos)
    # a checkpoint's classes must hold every class of the files
    with pytest.raises(ValueError, match=r"catch_test_split1.txt': class 'catch' is not one of the 2 classes \(brush_hair, cartwheel\)$"):
        read_split_folder(splits, "test", 1, root=videos, classes=HMDB_CLASSES[:2])
    (splits / "catch_test_split1.txt").write_text("catch_clip_0.avi 1\ncatch_clip_1.avi 3\n")
    with pytest.raises(ValueError, match=r"catch_test_split1.txt' line 2: expected '<video> <0, 1 or 2>', "
                                         r"got 'catch_clip_1.avi 3'"):
        read_split_folder(splits, "train", 1, root=videos)
    (splits / "catch_test_split1.txt").write_text("catch_clip_9.avi 1\n")
    with pytest.raises(FileNotFoundError, match=r"catch_test_split1.txt' line 1: video not found: .*catch_clip_9.avi"):
        read_split_folder(splits, "train", 1, root=videos)


def test_ucf101_split_folder(ucf, capsys):
    from effvid.data import read_split_folder, split_folder_kind
    from effvid.training.run_data import print_found_class_file

    lists, videos = ucf / "ucfTrainTestlist", ucf / "UCF-101"
    assert split_folder_kind(lists) == "ucf101"
    # UCF-101/ beside the lists is the default videos' folder
    train, classes = read_split_folder(lists, "train", 1)
    test, _ = read_split_folder(lists, "test", 1)
    assert classes == UCF_CLASSES  # classInd.txt's order
    assert [(Path(s.path).relative_to(videos).as_posix(), s.label) for s in train] == [
        (f"{c}/v_{c}_g{g:02d}_c01.avi", k) for k, c in enumerate(UCF_CLASSES) for g in (1, 2)]
    assert [(Path(s.path).relative_to(videos).as_posix(), s.label) for s in test] == [
        (f"{c}/v_{c}_g03_c01.avi", k) for k, c in enumerate(UCF_CLASSES)]
    with pytest.raises(FileNotFoundError, match="UCF101 split 2 has no train list"):
        read_split_folder(lists, "train", 2)
    # as DATA: training on the train part, validating on the test part
    cfg = TrainConfig(data=str(lists), model="tsm_resnet_tiny", num_segments=2, size=32)
    train_set, val_set = build_datasets(cfg)
    print_found_class_file(cfg)  # what train says before reading
    assert capsys.readouterr().out == (f"class names and numbers from {lists / 'classInd.txt'}, UCF101's "
                                       "split folder\n")
    assert [s.path for s in train_set.samples] == [s.path for s in train]
    assert [s.path for s in val_set.samples] == [s.path for s in test]
    assert train_set.classes == val_set.classes == UCF_CLASSES
    with pytest.raises(ValueError, match=r"official_split=4: must be 1, 2 or 3"):
        build_datasets(TrainConfig(data=str(lists), official_split=4))


def test_train_and_eval_on_hmdb51_split_folder(hmdb, tmp_path, capsys):
    videos, splits = hmdb
    run = tmp_path / "run"
    assert main(["train", str(splits), "--data-root", str(videos), "--official-split", "2",
                 "--model", "tsm_resnet_tiny", "--num-segments", "2", "--size", "32", "--scale-size", "32",
                 "--epochs", "1", "--batch-size", "3", "--workers", "0", "--no-progress",
                 "--output", str(run)]) == 0
    history = json.loads((run / "history.json").read_text())
    # split 2: 6 training clips (2 per class), its 6 test clips validated
    assert history[0]["train"]["count"] == 6 and history[0]["val"]["count"] == 6
    saved = json.loads((run / "config.json").read_text())
    assert saved["official_split"] == 2 and saved["data"] == str(splits.resolve())
    _, meta = load_weights(run / "best.safetensors")
    assert meta["classes"] == HMDB_CLASSES
    capsys.readouterr()
    for number, expected in ((1, 3), (2, 6)):  # the test parts: clip 2 of each class / clips 0 and 1
        report = tmp_path / f"eval{number}.json"
        assert main(["eval", str(splits), "-c", str(run / "best.safetensors"), "--data-root", str(videos),
                     "--official-split", str(number), "--workers", "0", "--quiet", "--json", str(report)]) == 0
        assert f"{expected} videos, 1 view each" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["eval", str(splits), "-c", str(run / "best.safetensors"), "--official-split", "4"])
    # options that would be ignored are refused (they were, without a word): --classes for a
    # split folder, whose files name (HMDB51) or number (UCF101) the classes; --official-split
    # for data without published splits, in eval and in train
    capsys.readouterr()
    assert main(["eval", str(splits), "-c", str(run / "best.safetensors"), "--data-root", str(videos),
                 "--classes", str(tmp_path / "classes.txt")]) == 2
    assert (f"--classes numbers the integer labels of a list file; {splits} is HMDB51's split folder, "
            "whose split files name the classes (drop --classes)") in capsys.readouterr().err
    assert main(["eval", str(videos), "-c", str(run / "best.safetensors"), "--official-split", "1"]) == 2
    assert (f"--official-split picks a split of HMDB51's or UCF101's split folder (testTrainMulti_7030_splits, "
            f"ucfTrainTestlist); {videos} is not one (drop --official-split)") in capsys.readouterr().err
    assert main(["train", str(videos), "--official-split", "2", "--output", str(tmp_path / "run2")]) == 2
    # named as typed, as train's other refusals are (it said "official_split=2")
    assert capsys.readouterr().err.splitlines()[-1] == (
        "effvid train: error: argument --official-split: picks a split of HMDB51's or UCF101's split folder "
        f"(testTrainMulti_7030_splits, ucfTrainTestlist), and {videos} is not one (drop it), got 2")
    # with a split folder as --val-data, it is used
    train_set, val_set = build_datasets(TrainConfig(data=str(videos), val_data=str(splits), data_root=str(videos),
                                                      official_split=2))
    assert len(train_set) == 12 and len(val_set) == 6


def test_split_folders_as_unpacked_and_typed(ucf, hmdb, monkeypatch):
    from effvid.data import read_split_folder, split_folder_kind

    lists = ucf / "ucfTrainTestlist"
    train, classes = read_split_folder(lists, "train", 1)
    # typed inside the split folder: "." has no Path.parent, and UCF-101/ beside it was not found
    monkeypatch.chdir(lists)
    assert read_split_folder(".", "train", 1) == ([s._replace(path=str(Path("..", Path(s.path).relative_to(ucf))))
                                                   for s in train], classes)
    # no UCF-101/ beside the split folder: said so, instead of the first line's "video not found"
    (ucf / "UCF-101").rename(ucf / "videos")
    with pytest.raises(FileNotFoundError, match=r"the videos of UCF101 are not in '..': none of its class "
                                                r"folders \(ApplyEyeMakeup/ ...\) is there, and no UCF-101/ is "
                                                r"beside the split folder \(--data-root gives the folder"):
        read_split_folder(".", "test", 1)
    with pytest.raises(FileNotFoundError, match=r"the videos of UCF101 are not in '..': none of its class "
                                                r"folders \(ApplyEyeMakeup/ ...\) is there \(--data-root"):
        read_split_folder(".", "test", 1, root="..")
    assert len(read_split_folder(".", "test", 1, root=ucf / "videos")[0]) == 3
    # HMDB51's split files as macOS unpacks them, with a ._ file beside each: not classes
    videos, splits = hmdb
    for f in sorted(splits.iterdir()):
        (splits / f"._{f.name}").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    assert split_folder_kind(splits) == "hmdb51"
    samples, classes = read_split_folder(splits, "train", 1, root=videos)
    assert classes == HMDB_CLASSES and len(samples) == 6
