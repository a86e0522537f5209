"""The train / eval / predict command lines on a tiny real run."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from effvid.cli import build_parser, main
from effvid.commands.train import config_from_args
from effvid.training.config import TrainConfig
from effvid.data.synthetic import make_synthetic_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmd")
    data = root / "data"
    make_synthetic_dataset(data, classes=("grow", "left"), videos_per_class_train=4,
                           videos_per_class_val=2, num_frames=8, size=32, seed=2)
    # --flip: a class named "left" turns flips off by default; this model is trained with them
    code = main(["train", str(data), "--model", "tsm_resnet_tiny", "--num-segments", "4",
                 "--size", "32", "--scale-size", "32", "--epochs", "1", "--batch-size", "4",
                 "--workers", "0", "--no-progress", "--flip", "--output", str(root / "run")])
    assert code == 0
    return data, root / "run" / "best.safetensors"


def test_train_flags_become_config(tmp_path):
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps({"data": "videos", "epochs": 7, "lr": 0.5}))
    args = build_parser().parse_args(["train", "--config", str(saved), "--lr", "0.1", "--no-flip",
                                      "--crop-scales", "1", "0.8", "--lr-steps", "3", "5"])
    cfg = config_from_args(args)
    assert (cfg.data, cfg.epochs, cfg.lr, cfg.flip) == ("videos", 7, 0.1, False)
    assert cfg.crop_scales == [1.0, 0.8] and cfg.lr_steps == [3, 5]


def test_fewer_epochs_than_a_saved_warm_up_names_the_flag_and_the_fix(tmp_path):
    # it said "bad config value warmup_epochs=3.0: must be in [0, epochs=2]": neither the flag
    # typed nor where the 3 came from
    saved = tmp_path / "config.json"
    saved.write_text(TrainConfig(data="videos", epochs=10, warmup_epochs=3).to_json())
    parse = build_parser().parse_args
    with pytest.raises(ValueError) as e:
        config_from_args(parse(["train", "--config", str(saved), "--epochs", "2"]))
    assert str(e.value) == (f"--epochs 2 ends inside {saved}'s warm-up of 3 epochs (warmup_epochs): give "
                            "--warmup-epochs 2 or less too, or --epochs 3 or more")
    assert config_from_args(parse(["train", "--config", str(saved), "--epochs", "2", "--warmup-epochs", "1"])).epochs == 2
    # a resume may not change the warm-up (it defines the run): only --epochs is offered
    with pytest.raises(ValueError, match=r"^--epochs 2 ends inside the run's warm-up of 3 epochs "
                                         r"\(warmup_epochs\): give --epochs 3 or more$"):
        config_from_args(parse(["train", "--output", str(tmp_path), "--resume", "--epochs", "2"]))
    assert config_from_args(parse(["train", "--output", str(tmp_path), "--resume", "--epochs", "3"])).epochs == 3


def test_train_reports_bad_values_in_one_line(tmp_path, capsys):
    # a setting the model refuses, named as the flag typed (it said "MobileNetV2 supports only
    # residual shift placement"), before the data is read
    assert main(["train", str(tmp_path / "nowhere"), "--model", "tsm_mobilenet_v2", "--shift-place", "inplace"]) == 2
    assert capsys.readouterr().err == ("effvid train: error: argument --shift-place: must be 'residual' for "
                                       "MobileNetV2: its blocks have no in-place rule (it is a ResNet option), "
                                       "got inplace\n")
    assert main(["train", str(tmp_path), "--num-segments", "0"]) == 2
    # named as the flag typed, as argparse and eval's --num-segments say it
    assert capsys.readouterr().err == "effvid train: error: argument --num-segments: must be >= 1, got 0\n"
    assert main(["train", str(tmp_path / "missing"), "--epochs", "1", "--output", str(tmp_path / "o")]) == 2
    assert "missing" in capsys.readouterr().err


def test_train_refuses_a_bad_shift_div_before_reading_the_data(tmp_path, capsys):
    # --shift-div 1 was refused only after the data scan, as "fold_div must be ...", and 0 as
    # "must be >= 1" (a bidirectional shift needs 2); a too-large one after the scan too
    data = tmp_path / "data"
    make_synthetic_dataset(data, classes=("grow", "left"), videos_per_class_train=1,
                           videos_per_class_val=1, num_frames=4, size=16, seed=0)
    run = tmp_path / "run"
    common = ["train", str(data), "--model", "tsm_resnet_tiny", "--num-segments", "2", "--size", "16",
              "--epochs", "1", "--workers", "0", "--no-progress", "--output", str(run)]
    for flags, why in ((["--shift-div", "1"], "must be >= 2 for a bidirectional shift, got 1"),
                       (["--shift-div", "0"], "must be >= 2 for a bidirectional shift, got 0"),
                       (["--shift-div", "0", "--shift-direction", "causal"], "must be >= 1 for a causal shift, got 0"),
                       (["--shift-div", "64"], "must be at most 16 for this model (a 1/64 shift of the 16 input "
                                               "channels of layer1.0.conv1 moves none of them), got 64")):
        assert main(common + flags) == 2
        out, err = capsys.readouterr()
        assert err == f"effvid train: error: argument --shift-div: {why}\n"
        assert "data:" not in out and not run.exists()  # "data: 2 classes, ..." came first
    # a value from a --config file keeps the file's name for it
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps({"shift_div": 1}))
    assert main(common + ["--config", str(saved)]) == 2
    assert capsys.readouterr().err == (f"effvid train: error: config file {str(saved)!r}: bad config value "
                                       "shift_div=1: must be >= 2 for a bidirectional shift\n")
    # from Python, the field's name; a causal shift takes 1
    with pytest.raises(ValueError, match="^bad config value shift_div=1: must be >= 2 for a bidirectional shift$"):
        TrainConfig(data=str(data), shift_div=1)
    assert TrainConfig(data=str(data), shift_div=1, shift_direction="causal").shift_div == 1


def test_ctrl_c_says_whether_there_is_an_epoch_to_resume(tmp_path, capsys, monkeypatch):
    from effvid.training import loop

    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", interrupted)
    run = tmp_path / "run"
    # during the first epoch nothing is saved (it used to say "the last completed epoch is saved")
    assert main(["train", str(tmp_path), "--output", str(run)]) == 130
    assert "before the first epoch was completed; nothing to resume" in capsys.readouterr().err
    run.mkdir()
    torch.save({"epoch": 0}, run / "last_state.pt")
    assert main(["train", str(tmp_path), "--output", str(run)]) == 130
    assert f"continue with effvid train --output {run} --resume" in capsys.readouterr().err


def test_predict_json_and_bad_file(trained, tmp_path, capsys):
    data, ckpt = trained
    video = sorted((data / "val" / "left").glob("*.mp4"))[0]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 10)
    # two decoding processes: results still come in the order the videos were given
    assert main(["predict", str(video), str(broken), "-c", str(ckpt), "--json", "-", "-k", "2",
                 "--workers", "2"]) == 1  # some input unreadable: exit status 1, like stream
    captured = capsys.readouterr()
    assert "1 of 2 videos could not be read" in captured.err
    results = json.loads(captured.out)
    assert [r["video"] for r in results] == [str(video), str(broken)]
    good = [r for r in results if "top" in r]
    assert len(good) == 1 and good[0]["video"] == str(video)
    assert "predict" in captured.err  # the progress bar
    labels = [t["label"] for t in good[0]["top"]]
    assert sorted(labels) == ["grow", "left"]
    scores = [t["score"] for t in good[0]["top"]]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-4)
    assert "broken.mp4" in captured.err
    # The same probabilities as running the model by hand on the centre clip.
    from effvid.inference import load_recognizer, predict_paths, test_dataset

    model, meta = load_recognizer(ckpt)
    ds = test_dataset([(str(video), 0)], meta, num_segments=4)
    (_, probs), = list(predict_paths(model, ds))
    with torch.no_grad():
        by_hand = torch.softmax(model(ds[0]["video"][None]), dim=1)[0]
    torch.testing.assert_close(probs, by_hand)
    assert max(scores) == pytest.approx(float(by_hand.max()), abs=1e-5)


def test_predict_on_a_folder_names_the_files_it_leaves_out(trained, tmp_path, capsys):
    # the files of a folder that are not videos were left out without a word
    data, ckpt = trained
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(sorted((data / "val" / "left").glob("*.mp4"))[0], folder / "a.mp4")
    (folder / "notes.txt").write_text("x")
    (folder / "thumb.jpg").write_bytes(b"x")
    assert main(["predict", str(folder), "-c", str(ckpt), "--json", "-", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert [r["video"] for r in json.loads(captured.out)] == [str(folder / "a.mp4")]
    assert captured.err == (f"effvid predict: left out 2 files in {folder} that are not videos "
                            f"({folder / 'notes.txt'}, {folder / 'thumb.jpg'})\n")


def test_predict_missing_video_is_a_clear_error(trained, capsys):
    _, ckpt = trained
    assert main(["predict", "nowhere.mp4", "-c", str(ckpt)]) == 2
    assert "video not found: nowhere.mp4" in capsys.readouterr().err


def test_a_video_path_that_is_no_file_says_what_it_is(trained, tmp_path, capsys):
    # predict, eval and check said "video not found" of a FIFO, a device and a folder named like a video
    import os

    data, ckpt = trained
    fifo = tmp_path / "fifo.mp4"
    os.mkfifo(fifo)
    assert main(["predict", str(fifo), "-c", str(ckpt)]) == 2
    assert capsys.readouterr().err == f"effvid predict: error: {fifo} is not a regular file (a FIFO)\n"
    assert main(["predict", os.devnull, "-c", str(ckpt)]) == 2
    assert capsys.readouterr().err == f"effvid predict: error: {os.devnull} is not a regular file (a character device)\n"
    (tmp_path / "folder.mp4").mkdir()
    lst = tmp_path / "list.txt"
    lst.write_text(f"folder.mp4 left\n{sorted((data / 'val' / 'left').glob('*.mp4'))[0]} left\n")
    assert main(["eval", str(lst), "-c", str(ckpt), "--workers", "0"]) == 2
    assert capsys.readouterr().err == (f"effvid eval: error: {str(lst)!r} line 1: {str(tmp_path / 'folder.mp4')!r} "
                                       "is a folder, not a video file\n")
    assert main(["check", str(lst), "--workers", "0", "--quiet"]) == 1
    assert (f"    {tmp_path / 'folder.mp4'}: a folder, not a video file; listed in {str(lst)!r} line 1"
            in capsys.readouterr().out.splitlines())


def test_eval_protocols(trained, tmp_path, capsys):
    data, ckpt = trained
    out = tmp_path / "metrics.json"
    assert main(["eval", str(data), "-c", str(ckpt), "--clips", "2", "--crops", "3", "--twice",
                 "--workers", "0", "--quiet", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "4 videos, 9 views each" in text
    metrics = json.loads(out.read_text())
    assert metrics["classes"] == ["grow", "left"] and metrics["count"] == 4
    assert sum(map(sum, metrics["confusion"])) == 4
    assert metrics["top1"] == pytest.approx(sum(metrics["confusion"][i][i] for i in range(2)) / 4)


def test_predict_json_never_overwrites_a_video(trained, tmp_path, capsys):
    # "--json v1.mp4 v2.mp4": argparse hands v1.mp4 to --json; it used to be overwritten
    data, ckpt = trained
    video = tmp_path / "v1.mp4"
    video.write_bytes(sorted((data / "val" / "left").glob("*.mp4"))[0].read_bytes())
    before = video.read_bytes()
    # with one video, none was left for VIDEO: "the following arguments are required: VIDEO"
    for videos in ([str(video)], [str(video), str(video)]):
        with pytest.raises(SystemExit) as e:
            main(["predict", "--json", *videos, "-c", str(ckpt)])
        assert e.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"effvid predict: error: argument --json: {video} is a video, and the JSON would overwrite "
            "it; put --json after the videos, or write --json=results.json")
    assert video.read_bytes() == before


def test_count_arguments_are_checked_by_the_parser(trained, capsys):
    _, ckpt = trained
    for args, message in ((["predict", "x.mp4", "-c", str(ckpt), "--topk", "-1"], "argument --topk/-k: must be >= 1, got -1"),
                          (["predict", "x.mp4", "-c", str(ckpt), "--clips", "0"], "argument --clips: must be >= 1, got 0"),
                          (["eval", "data", "-c", str(ckpt), "--num-segments", "0"], "argument --num-segments: must be >= 1"),
                          (["eval", "data", "-c", str(ckpt), "--workers", "-2"], "argument --workers: must be >= 0")):
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 2 and message in capsys.readouterr().err


def test_eval_options_that_used_to_fail(trained, capsys):
    data, ckpt = trained
    # a new --size without --scale-size: the resize follows the new size (it kept the trained 32)
    assert main(["eval", str(data), "-c", str(ckpt), "--size", "48", "--workers", "0", "--quiet"]) == 0
    assert "4 videos, 1 view each" in capsys.readouterr().out
    # --twice is a segment-sampling protocol: with dense sampling it was ignored but counted;
    # then refused after reading the data, naming the dataset's field ("twice (...)")
    assert main(["eval", str(data), "-c", str(ckpt), "--twice", "--sampling", "dense", "--workers", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.err == ("effvid eval: error: --twice (a second clip at the segment starts) needs "
                            "segment sampling, not --sampling dense\n") and captured.out == ""
    # the trained size is 32: "scale_size (20) must be >= size (32)" came after the data too
    assert main(["eval", str(data), "-c", str(ckpt), "--scale-size", "20", "--workers", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.err == ("effvid eval: error: --scale-size 20 is below the crop size 32 (--size): "
                            "the short side must be at least the crop's\n") and captured.out == ""
    # 3 crops are cut from frames resized to --scale-size, as the original's (they were cut from
    # frames resized to --size, and a note said --scale-size did nothing)
    assert main(["eval", str(data), "-c", str(ckpt), "--crops", "3", "--scale-size", "40", "--workers", "0",
                 "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("4 videos, 3 views each")
    # a run folder instead of a checkpoint file
    assert main(["eval", str(data), "-c", str(ckpt.parent)]) == 2
    assert f"is a folder: give a weights file such as {ckpt}" in capsys.readouterr().err


def test_predict_takes_eval_s_view_options_checked_alike(trained, tmp_path, capsys):
    # predict had no --size/--scale-size, and its --twice with dense sampling failed in the
    # dataset, naming its field; one set of options now serves both (commands/views.py)
    data, ckpt = trained
    video = str(sorted((data / "val" / "left").glob("*.mp4"))[0])
    assert main(["predict", video, "-c", str(ckpt), "--twice", "--sampling", "dense"]) == 2
    assert capsys.readouterr().err == ("effvid predict: error: --twice (a second clip at the segment starts) "
                                       "needs segment sampling, not --sampling dense\n")
    assert main(["predict", video, "-c", str(ckpt), "--scale-size", "20"]) == 2
    assert "--scale-size 20 is below the crop size 32 (--size)" in capsys.readouterr().err
    # the same probabilities as eval's at another size (48 crops of frames resized to 54)
    assert main(["predict", video, "-c", str(ckpt), "--size", "48", "--json", "-", "-k", "1"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"][0]
    (tmp_path / "one.txt").write_text(f"{video} left\n")
    assert main(["eval", str(tmp_path / "one.txt"), "-c", str(ckpt), "--size", "48", "--json",
                 str(tmp_path / "e.json"), "--workers", "0", "--quiet"]) == 0
    (ev,) = json.loads((tmp_path / "e.json").read_text())["videos"]
    assert ev["top"][0] == top
    capsys.readouterr()
    # and not the trained size's
    assert main(["predict", video, "-c", str(ckpt), "--json", "-", "-k", "1"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"][0]["score"] != top["score"]


def test_eval_and_predict_sample_frames_as_trained(trained, tmp_path, capsys):
    # a dense-sampling run was evaluated and predicted with segment sampling (predict had no
    # choice): eval's loss differed from the run's own validation loss on the same videos
    data, _ = trained
    run = tmp_path / "dense"
    assert main(["train", str(data), "--model", "tsm_resnet_tiny", "--num-segments", "4", "--size", "32",
                 "--scale-size", "32", "--sampling", "dense", "--epochs", "1", "--batch-size", "4",
                 "--workers", "0", "--no-progress", "--seed", "0", "--output", str(run)]) == 0
    val = json.loads((run / "history.json").read_text())[-1]["val"]
    out = tmp_path / "m.json"
    ckpt = str(run / "last.safetensors")
    assert main(["eval", str(data), "-c", ckpt, "--workers", "0", "--quiet", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["loss"] == pytest.approx(val["loss"], rel=1e-5)
    from effvid.inference import load_recognizer, test_dataset

    _, meta = load_recognizer(ckpt)
    assert test_dataset([], meta, num_segments=4).sampling == "dense"
    assert test_dataset([], meta, num_segments=4, sampling="segment").sampling == "segment"
    video = str(sorted((data / "val" / "left").glob("*.mp4"))[0])
    capsys.readouterr()
    scores = {}
    for sampling in ("dense", "segment"):
        assert main(["predict", video, "-c", ckpt, "--json", "-", "--sampling", sampling, "--workers", "0"]) == 0
        scores[sampling] = json.loads(capsys.readouterr().out)[0]["top"]
    assert main(["predict", video, "-c", ckpt, "--json", "-", "--workers", "0"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"] == scores["dense"] != scores["segment"]


def test_ten_crops_of_a_model_trained_without_flips_say_they_are_mirrored(trained, tmp_path, capsys):
    # --no-flip is for labels that mirroring changes; --crops 10 mirrored half its views anyway
    from effvid.models.weights import load_model, load_weights, save_weights

    data, flipped = trained
    assert load_weights(flipped)[1]["extra"]["flip"] is True
    assert main(["eval", str(data), "-c", str(flipped), "--crops", "10", "--workers", "0", "--quiet"]) == 0
    assert "mirror" not in capsys.readouterr().err
    run = tmp_path / "noflip"
    assert main(["train", str(data), "--model", "tsm_resnet_tiny", "--num-segments", "4", "--size", "32",
                 "--scale-size", "32", "--no-flip", "--epochs", "1", "--batch-size", "4", "--workers", "0",
                 "--no-progress", "--output", str(run)]) == 0
    ckpt = run / "best.safetensors"
    assert load_weights(ckpt)[1]["extra"]["flip"] is False

    def note(path):
        return (f"note: {path} was trained without horizontal flips, and 5 of the 10 crops are mirror "
                "images, in which left and right change places (a label such as 'moving something "
                "left' then shows the opposite): --crops 3 has no mirrored views")

    capsys.readouterr()
    assert main(["eval", str(data), "-c", str(ckpt), "--crops", "10", "--workers", "0", "--quiet"]) == 0
    # on stderr, as predict's (there so that the JSON on stdout stays JSON): stdout is the results
    captured = capsys.readouterr()
    # (then the note that these 10 crops of square frames are 2 views: the corners are the centre)
    assert captured.err.startswith(note(ckpt) + "\nnote: 8 of the 40 views differ")
    assert captured.out.startswith("4 videos, 10 views each")
    for crops in ("1", "3"):
        assert main(["eval", str(data), "-c", str(ckpt), "--crops", crops, "--workers", "0", "--quiet"]) == 0
        assert "mirror" not in capsys.readouterr().err
    video = str(sorted((data / "val" / "left").glob("*.mp4"))[0])
    assert main(["predict", video, "-c", str(ckpt), "--crops", "10", "--json", "-", "--workers", "0",
                 "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == note(ckpt) + "\n" and json.loads(captured.out)[0]["video"] == video
    # a checkpoint from before flips were recorded: its run folder's config.json says
    model, meta = load_model(ckpt)
    del meta["extra"]["flip"]
    save_weights(model, run / "old.safetensors", metadata=meta)
    assert "flip" not in load_weights(run / "old.safetensors")[1]["extra"]
    assert main(["predict", video, "-c", str(run / "old.safetensors"), "--crops", "10", "--workers", "0"]) == 0
    assert capsys.readouterr().err == note(run / "old.safetensors") + "\n"
    # and kept elsewhere, nothing says: no note
    (tmp_path / "elsewhere").mkdir()
    (run / "old.safetensors").rename(tmp_path / "elsewhere" / "old.safetensors")
    assert main(["predict", video, "-c", str(tmp_path / "elsewhere" / "old.safetensors"), "--crops", "10",
                 "--workers", "0"]) == 0
    assert capsys.readouterr().err == ""


def test_no_readable_validation_video_is_an_error_not_zero_percent(trained, tmp_path, capsys):
    # every validation video unreadable: training printed "val top1 0.0% | best" (loss 0,
    # saved as the best model) and eval "0 videos: top-1 0.00%" with exit code 0
    import shutil

    data, ckpt = trained
    root = tmp_path / "data"
    shutil.copytree(data / "train", root / "train")
    for name in ("grow", "left"):
        (root / "val" / name).mkdir(parents=True)
        (root / "val" / name / "broken.mp4").write_bytes(b"not a video" * 10)
    assert main(["eval", str(root), "-c", str(ckpt), "--workers", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    # one wording for eval and training (effvid.training.evaluate.no_readable_clips)
    assert f"evaluated on no clips: every video in {root} was unreadable (2 unreadable; the first: " in err
    assert "grow/broken.mp4: " in err
    assert main(["train", str(root), "--model", "tsn_resnet_tiny", "--num-segments", "2", "--size", "32",
                 "--epochs", "1", "--batch-size", "4", "--workers", "0", "--no-progress",
                 "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "epoch 1 validated on no clips: every validation video was unreadable (2 unreadable; the first: " in err
    assert "grow/broken.mp4: " in err and "on this process" not in err  # one process: no others
    assert not (tmp_path / "run" / "best.safetensors").exists()


def test_info_on_a_checkpoint_uses_its_training_size(trained, capsys):
    _, ckpt = trained
    assert main(["info", str(ckpt), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["input_shape"] == [1, 4, 3, 32, 32]  # it used to report 224x224


def test_resume_of_a_run_that_never_started_says_so(tmp_path, capsys):
    assert main(["train", "--output", str(tmp_path / "run"), "--resume"]) == 2
    assert "nothing to resume in" in capsys.readouterr().err


def test_resume_of_a_file_or_of_a_run_given_as_data_says_what_it_is(trained, tmp_path, capsys):
    # --output FILE --resume said "nothing to resume in FILE: ... the run stopped before it started"
    file = tmp_path / "file"
    file.write_text("")
    for data in ([], [str(trained[0])]):  # with DATA, it was "cannot write to the run folder"
        assert main(["train", *data, "--output", str(file), "--resume"]) == 2
        assert capsys.readouterr().err == f"effvid train: error: cannot resume {file}: it is a file, not a folder\n"
    # --resume takes no value: `--resume RUN` made RUN the DATA, read as class folders (its
    # tensorboard/ file had an "unsupported video extension") or a list file ("not UTF-8 text")
    run = trained[1].parent
    for given, what in ((run, "a run folder"), (run / "last_state.pt", f"a file of the run in {run}")):
        assert main(["train", "--resume", str(given)]) == 2
        assert capsys.readouterr().err == (
            f"effvid train: error: {given} is {what}, not training data: --resume takes no value (it "
            f"continues the run in --output); effvid train --output {run} --resume continues that run\n")


def test_eval_and_predict_columns_with_many_classes_and_long_names(trained, tmp_path, capsys):
    from effvid.models import create_model
    from effvid.models.weights import save_weights

    data, _ = trained
    names = [f"class_{i}" for i in range(11)] + ["pretending_to_put_something_onto_something_else_" * 2]
    ckpt = tmp_path / "many.safetensors"
    save_weights(create_model("tsm_resnet_tiny", num_classes=12, num_segments=4), ckpt,
                 {"classes": names, "extra": {"size": 32, "scale_size": 32, "sampling": "segment"}})
    video, other = sorted((data / "val" / "grow").glob("*.mp4"))[:2]  # (a video listed twice is read once)
    (tmp_path / "val.txt").write_text(f"{video} class_3\n{other} {names[-1]}\n")
    assert main(["eval", str(tmp_path / "val.txt"), "-c", str(ckpt), "--workers", "0", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    # the two classes with videos, their percentages in one column (after 60 characters of a
    # longer name), then one line for the 10 without videos (it was a line each)
    assert len(lines) == 3 and lines[0].startswith("  class_3 ") and lines[1].startswith("  pretending")
    assert lines[0].index("%") == 2 + 60 + 7
    assert lines[2] == "  no videos for 10 of 12 classes: " + ", ".join(n for n in names[:11] if n != "class_3")
    assert main(["predict", str(video), "-c", str(ckpt), "-k", "12", "--workers", "0"]) == 0
    ranks = capsys.readouterr().out.splitlines()[1:]
    assert len(ranks) == 12 and ranks[0].startswith("   1. ") and ranks[-1].startswith("  12. ")
    # the scores in one column after 60 characters of names (the longer name overflows alone)
    assert {line.rindex(" ") for line in ranks if names[-1] not in line} == {2 + 4 + 60}


def test_eval_lists_the_first_10_unreadable_videos(trained, tmp_path, capsys):
    # a broken Kinetics validation set printed one line per unreadable video (thousands)
    import shutil

    data, ckpt = trained
    root = tmp_path / "data"
    shutil.copytree(data / "val", root)
    for k in range(12):
        (root / "left" / f"broken_{k:02d}.mp4").write_bytes(b"")
    # exit status 0: the results are valid for the 4 videos read; stderr says they are not of all
    assert main(["eval", str(root), "-c", str(ckpt), "--workers", "0", "--quiet"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert captured.err == "effvid eval: 12 of 16 videos could not be read; the results are of the other 4\n"
    assert "  skipped 12 unreadable video(s):" in out, out
    # each named once, with its reason (which repeated the path)
    assert out.count("broken_") == 10 and "left/broken_00.mp4: file is empty (0 bytes)\n" in out, out
    assert "broken_09.mp4" in out and "broken_10.mp4" not in out
    assert "    ... and 2 more (--json FILE lists them all)" in out
    report = tmp_path / "e.json"
    assert main(["eval", str(root), "-c", str(ckpt), "--workers", "0", "--quiet", "--json", str(report)]) == 0
    assert f"... and 2 more (all in {report})" in capsys.readouterr().out
    # as effvid check lists them: {"path", "reason"} objects under "unreadable"
    saved = json.loads(report.read_text())
    assert "bad" not in saved and saved["count"] == 4
    assert sorted(saved["unreadable"], key=lambda b: b["path"]) == [
        {"path": str(root / "left" / f"broken_{k:02d}.mp4"), "reason": "file is empty (0 bytes)"} for k in range(12)]


def test_eval_refuses_classes_for_a_folder(trained, capsys):
    # it was ignored without a word
    data, ckpt = trained
    assert main(["eval", str(data), "-c", str(ckpt), "--classes", str(data / "x.txt"), "--workers", "0",
                 "--quiet"]) == 2
    assert f"--classes numbers the integer labels of a list file; {data} is a folder" in capsys.readouterr().err


def test_bad_device_is_one_line_naming_the_value(trained, tmp_path, capsys, monkeypatch):
    # eval and predict passed --device to torch.device() unchecked: a traceback for "gpu",
    # and for "cuda" on a machine without one, torch's driver error from deep inside
    data, ckpt = trained
    video = str(sorted((data / "val" / "left").glob("*.mp4"))[0])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # train's said "bad config value device='cuda': ...", the way of a config file's value
    for command in (["eval", str(data), "-c", str(ckpt)], ["predict", video, "-c", str(ckpt)],
                    ["train", str(data), "--output", str(tmp_path / "r")],
                    ["quickstart", "--output", str(tmp_path / "q")]):
        for device, says in (("gpu", "'gpu': use auto, cpu, cuda or cuda:N"),
                             ("mps", "'mps': effvid runs on the CPU or on CUDA GPUs"),
                             ("cuda", "'cuda': CUDA is not available (no NVIDIA GPU, driver or CUDA "
                                      "build of torch); use cpu"),
                             ("cuda:1", "'cuda:1': CUDA is not available")):
            with pytest.raises(SystemExit) as e:  # refused by the parser, before anything runs
                main(command + ["--device", device, "--workers", "0"])
            assert e.value.code == 2
            err = capsys.readouterr().err
            assert f"effvid {command[0]}: error: argument --device: {says}" in err and "Traceback" not in err, err
    assert not (tmp_path / "r").exists() and not (tmp_path / "q").exists()
    # a config file's device keeps its config name
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data": str(data), "device": "cuda"}))
    assert main(["train", "--config", str(config), "--output", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "bad config value device='cuda': CUDA is not available" in err
    assert err.rstrip().endswith("use cpu (--device sets it for this run)")  # a run saved on a GPU machine
    assert main(["train", "--config", str(config), "--output", str(tmp_path / "r_cpu"), "--device", "cpu",
                 "--model", "tsm_resnet_tiny", "--size", "32", "--num-segments", "2", "--epochs", "1",
                 "--workers", "0", "--no-progress"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    # auto is the CPU here, and train says where it runs
    assert main(["predict", video, "-c", str(ckpt), "--workers", "0"]) == 0
    assert "  1. " in capsys.readouterr().out
    assert main(["train", str(data), "--model", "tsm_resnet_tiny", "--num-segments", "2", "--size", "32",
                 "--epochs", "1", "--workers", "0", "--no-progress", "--output", str(tmp_path / "r")]) == 0
    threads = torch.get_num_threads()
    assert f"training on cpu ({threads} thread{'s' * (threads != 1)})" in capsys.readouterr().out


def test_device_index_beyond_the_gpus_is_refused(monkeypatch):
    from effvid.runtime import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(ValueError, match=r"'cuda:2': this machine has 2 GPU\(s\), cuda:0 to cuda:1"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_predict_refuses_an_annotation_file(trained, tmp_path, capsys):
    # decoded as a video, a list file or Kinetics' CSV failed as "cannot open container"
    _, ckpt = trained
    csv = tmp_path / "validate.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\nabseiling,a,0,10,val\n")
    assert main(["predict", str(csv), "-c", str(ckpt)]) == 2
    assert (f"{csv} is an annotation or list file, not a video: effvid eval {csv} -c CKPT measures "
            "accuracy on the videos it lists") in capsys.readouterr().err


def test_eval_json_lists_each_video_with_its_top_classes(trained, tmp_path, capsys):
    # the metrics alone did not say which videos were wrong
    data, ckpt = trained
    report = tmp_path / "e.json"
    assert main(["eval", str(data), "-c", str(ckpt), "--workers", "0", "--quiet", "--json", str(report)]) == 0
    stats = json.loads(report.read_text())
    videos = stats["videos"]
    expected = sorted(str(p) for p in (data / "val").rglob("*.mp4"))
    assert sorted(v["video"] for v in videos) == expected and stats["count"] == len(expected) == 4
    for v in videos:
        assert v["label"] == v["video"].split("/")[-2]  # its class folder
        assert [t["label"] for t in v["top"]] in (["grow", "left"], ["left", "grow"])
        assert v["top"][0]["score"] >= v["top"][1]["score"] and abs(sum(t["score"] for t in v["top"]) - 1) < 1e-4
        assert v["correct"] == (v["top"][0]["label"] == v["label"])
    # the same answers as the metrics
    assert sum(v["correct"] for v in videos) / len(videos) == pytest.approx(stats["top1"])
    assert sum(v["correct"] for v in videos) == sum(stats["confusion"][k][k] for k in range(2))


def test_eval_held_out_evaluates_only_the_videos_the_run_held_out(trained, tmp_path, capsys):
    # `effvid eval vids -c RUN/best.safetensors` on the folder the run split itself: "53 videos
    # ... top-1 100.00%", about 80% of them trained on, and nothing said
    import shutil

    data, ckpt = trained
    flat = tmp_path / "flat"
    shutil.copytree(data / "train", flat)
    for video in sorted((data / "val").glob("*/*.mp4")):  # 6 videos of each class
        shutil.copy(video, flat / video.parent.name / f"v_{video.name}")
    run = tmp_path / "run"
    assert main(["train", str(flat), "--model", "tsm_resnet_tiny", "--num-segments", "4", "--size", "32",
                 "--scale-size", "32", "--epochs", "1", "--batch-size", "4", "--workers", "0",
                 "--val-fraction", "0.34", "--no-progress", "--output", str(run)]) == 0
    held_out = [str(flat / key) for key in json.loads((run / "split.json").read_text())["val"]]
    assert len(held_out) == 4  # round(6 * 0.34) of each class
    capsys.readouterr()
    common = ["-c", str(run / "best.safetensors"), "--workers", "0", "--quiet"]
    assert main(["eval", str(flat), *common]) == 0
    captured = capsys.readouterr()  # notes on stderr: stdout is the results
    assert captured.err == (f"note: {run} trained on most of these videos (it held out 34% of each class "
                            "for validation): --held-out evaluates only the held-out ones\n")
    assert captured.out.startswith("12 videos")
    report = tmp_path / "e.json"
    assert main(["eval", str(flat), *common, "--held-out", "--json", str(report)]) == 0
    captured = capsys.readouterr()
    assert captured.err == f"the 4 videos {run} held out of {flat} for validation (split.json)\n"
    assert captured.out.startswith("4 videos")
    assert [v["video"] for v in json.loads(report.read_text())["videos"]] == held_out
    # the run's own validation: the same accuracy as its last epoch
    history = json.loads((run / "history.json").read_text())
    assert json.loads(report.read_text())["top1"] == pytest.approx(history[-1]["val"]["top1"])
    # DATA spelled relative, or moved: the same videos
    moved = tmp_path / "moved"
    shutil.copytree(flat, moved)
    assert main(["eval", str(moved), *common, "--held-out", "--json", str(report)]) == 0
    assert [v["video"] for v in json.loads(report.read_text())["videos"]] == [
        p.replace(str(flat), str(moved)) for p in held_out]
    assert "note:" not in capsys.readouterr().err

    # errors: no run beside the checkpoint, a run that held nothing out, an older run
    elsewhere = tmp_path / "copy.safetensors"
    shutil.copy(run / "best.safetensors", elsewhere)
    assert main(["eval", str(flat), "-c", str(elsewhere), "--held-out"]) == 2
    assert (f"--held-out evaluates the videos a run held out of its data, as its config.json and "
            f"split.json say; {tmp_path} has no config.json") in capsys.readouterr().err
    assert main(["eval", str(data), "-c", str(ckpt), "--held-out"]) == 2
    assert (f"--held-out: {ckpt.parent} held out nothing of its data, it validated on the validation "
            f"part of {data} (its val/ folder or published split)") in capsys.readouterr().err
    assert main(["eval", str(data / "train"), "-c", str(ckpt)]) == 0  # not its DATA: no note
    assert "note:" not in capsys.readouterr().err
    assert main(["info", str(run), "--json"]) == 0
    assert "note" not in json.loads(capsys.readouterr().out)
    (run / "split.json").unlink()
    assert main(["eval", str(flat), *common, "--held-out"]) == 2
    assert f"--held-out: {run} has no split.json" in capsys.readouterr().err
    # and effvid info says so of the run (it said nothing)
    assert main(["info", str(run)]) == 0
    assert ("note         no split.json: the run held out 34% of each class of its data for validation, "
            "and that split cannot be drawn again, so effvid eval --held-out cannot evaluate those videos "
            "(a run from before effvid saved its split, or the file was deleted)"
            in capsys.readouterr().out.splitlines())


def test_a_resume_state_given_as_weights_points_to_the_runs_weights(trained, tmp_path, capsys):
    # predict said "is a PyTorch checkpoint ... convert it with effvid convert", and convert then
    # "does not hold a state dict of tensors"; only train --init-weights knew the file
    data, ckpt = trained
    run = ckpt.parent
    state = run / "last_state.pt"
    video = str(sorted((data / "val" / "left").glob("*.mp4"))[0])
    said = (f"{state} is a run's resume state, not weights: use {run / 'best.safetensors'} or "
            f"{run / 'last.safetensors'} (effvid train --output {run} --resume continues that run)")
    for args in (["predict", video, "-c", str(state)], ["eval", str(data), "-c", str(state)],
                 ["info", str(state)], ["convert", str(state), str(tmp_path / "w.safetensors")],
                 ["stream", video, "-c", str(state)],
                 ["train", str(data), "--init-weights", str(state), "--output", str(tmp_path / "t")]):
        assert main(args) == 2, args
        assert capsys.readouterr().err == f"effvid {args[0]}: error: {said}\n", args
    assert not (tmp_path / "w.safetensors").exists() and not (tmp_path / "t").exists()
    # a renamed copy is known by what it holds; a folder with only the state says that
    copy = tmp_path / "state.pt"
    copy.write_bytes(state.read_bytes())
    assert main(["convert", str(copy), str(tmp_path / "w.safetensors")]) == 2
    assert capsys.readouterr().err == (
        f"effvid convert: error: {copy} is a run's resume state, not weights: its folder {tmp_path} "
        f"has no best.safetensors or last.safetensors (effvid train --output {tmp_path} --resume "
        "continues that run)\n")


def test_an_unknown_option_is_refused_with_the_commands_usage(capsys):
    # it printed "usage: effvid [-h] [--version] COMMAND ...", the top level's
    from effvid.cli import build_parser

    parsers = next(a for a in build_parser()._actions if a.dest == "command").choices
    for argv, unknown in ((["train", "vids", "--bogus"], "--bogus"),
                          (["check", "vids", "--val-data", "val.txt"], "--val-data val.txt")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.splitlines()
        usage = parsers[argv[0]].format_usage().splitlines()[0]
        assert usage.startswith(f"usage: effvid {argv[0]} [-h] ")
        assert err[0] == usage
        assert err[-1] == f"effvid {argv[0]}: error: unrecognized arguments: {unknown}"


def test_help_states_the_defaults(capsys):
    """effvid quickstart --help showed no default for --epochs (12), --videos-per-class (300),
    --size (32), ...; eval's and predict's --batch-size and --workers had none either."""
    import argparse

    with pytest.raises(SystemExit):
        main(["quickstart", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # as argparse wraps it
    for shown in ("--epochs EPOCHS epochs of each model (default: 12)",
                  "training videos per class; validation gets a quarter, at least 4 (default: 300)",
                  "--size SIZE video frame size in pixels (default: 32)",
                  "--optimizer {sgd,adamw} optimiser (default: adamw)",
                  "--lr LR learning rate (default: 0.003)",
                  "--workers WORKERS data-loading processes (default: 2)",
                  "--seed SEED random seed of the data and the training (default: 0)"):
        assert shown in text, shown
    # every command's option with a default says it
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    silent = [f"{name} {a.option_strings[0]}" for name, parser in commands.items() for a in parser._actions
              if a.option_strings and not isinstance(a, argparse._HelpAction)
              and a.default is not None and a.default is not False and "default" not in (a.help or "")]
    assert not silent


def test_train_help_states_each_default_once_and_never_none(capsys):
    # "(default: DATA/val, or a split of DATA) (default: None)", "(unset: --data-root serves
    # both) (default: None)"
    from effvid.cli import build_parser

    train = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    helps = {a.option_strings[0]: a.help or "" for a in train._actions if a.option_strings}
    assert all(h.count("(default:") + h.count("(unset:") <= 1 for h in helps.values()), helps
    assert not [o for o, h in helps.items() if "(default: None)" in h]
    assert helps["--val-data"].endswith("(default: DATA/val, or a split of DATA)")
    assert helps["--val-data-root"].endswith("(unset: --data-root serves both)")
    assert helps["--scale-size"].endswith("(default: --size x 256/224, rounded down as the original TSM "
                                          "does: 256 for 224, 292 for 256)")
    assert helps["--epochs"].endswith("(default: 50)")
    # every flag says what it does, not only its default ("--shift-place SHIFT_PLACE (default:
    # residual)" named no other place), and the flags of a few values list them in the usage
    import re

    assert not [o for o, h in helps.items() if not re.sub(r"\((default|unset):.*\)$", "", h).strip()]
    choices = {a.option_strings[0]: a.choices for a in train._actions if a.choices}
    assert choices["--schedule"] == ("cosine", "step") and choices["--optimizer"] == ("sgd", "adamw")
    assert choices["--shift-place"] == ("residual", "inplace") and choices["--sampling"] == ("segment", "dense")
    with pytest.raises(SystemExit):
        main(["train", "videos", "--schedule", "cosin"])
    assert capsys.readouterr().err.splitlines()[-1] == (
        "effvid train: error: argument --schedule: invalid choice: 'cosin' (choose from 'cosine', 'step')")


def _copy_run(trained, tmp_path, name="run"):
    """A copy of the tiny trained run's folder, to damage."""
    import shutil

    run = tmp_path / name
    shutil.copytree(trained[1].parent, run)
    return run


def test_printed_commands_quote_paths_so_they_paste(tmp_path, capsys, monkeypatch):
    import shlex

    from effvid.commands.train import worker_died_message
    from effvid.training import loop

    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", interrupted)
    run = tmp_path / "my run ü"
    run.mkdir()
    torch.save({"epoch": 0, "history": "[]"}, run / "last_state.pt")
    (run / "config.json").write_text(TrainConfig(data=str(tmp_path), output=str(run), epochs=3).to_json())
    assert main(["train", str(tmp_path), "--output", str(run)]) == 130
    err = capsys.readouterr().err
    assert f"continue with effvid train --output '{run}' --resume" in err, err

    def pasted(command: str):  # what the shell gives effvid: the same folder
        words = shlex.split(command)
        assert words[:2] == ["effvid", "train"]
        return build_parser().parse_args(words[1:])

    assert pasted(err.split("continue with ")[1].strip()).output == str(run)
    cfg = TrainConfig(data=str(tmp_path), output=str(run), workers=4)
    said = worker_died_message(cfg, "DataLoader worker (pid 7) is killed by signal: Killed.")
    command = said.split("continue with ")[1].rstrip(".")
    assert command == f"effvid train --output '{run}' --resume --workers 2"
    assert (pasted(command).output, pasted(command).workers) == (str(run), 2)
    assert main(["info", str(run), "--json"]) == 0
    state = json.loads(capsys.readouterr().out)["state"]
    assert state == f"stopped: continue with effvid train --output '{run}' --resume"
    assert pasted(state.split("continue with ")[1]).output == str(run)


def test_info_names_a_history_or_config_of_the_wrong_shape(trained, tmp_path, capsys):
    run = _copy_run(trained, tmp_path)
    (run / "last_state.pt").unlink()  # the state's history would be read instead of history.json
    history = (run / "history.json").read_text()
    (run / "history.json").write_text("[1, 2]")
    assert main(["info", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"effvid info: error: {run / 'history.json'} is not a run's history") and \
        err.count("\n") == 1, err
    (run / "history.json").write_text(history)
    for content in ("[1, 2]", "{}"):
        (run / "config.json").write_text(content)
        assert main(["info", str(run)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("effvid info: error: ") and str(run / "config.json") in err and \
            err.count("\n") == 1, err


def test_a_new_run_never_overwrites_the_weights_of_a_run_without_its_state(trained, tmp_path, capsys):
    data = trained[0]
    run = _copy_run(trained, tmp_path)
    (run / "last_state.pt").unlink()
    (run / "history.json").unlink()
    weights = {n: (run / n).read_bytes() for n in ("best.safetensors", "last.safetensors")}
    flags = ["--model", "tsm_resnet_tiny", "--num-segments", "4", "--size", "32", "--scale-size", "32",
             "--epochs", "1", "--batch-size", "4", "--workers", "0", "--no-progress", "--output", str(run)]
    for more in ([], ["--resume"]):
        assert main(["train", str(data), *flags, *more]) == 2
        err = capsys.readouterr().err
        assert f"{run} already holds a run (best.safetensors, last.safetensors), but its resume state " \
               "last_state.pt is missing" in err, err
        assert f"--init-weights {run / 'last.safetensors'} --output NEW" in err and "--overwrite" in err
    assert main(["train", "--output", str(run), "--resume"]) == 2  # its config.json gives DATA
    assert "last_state.pt is missing" in capsys.readouterr().err
    assert {n: (run / n).read_bytes() for n in weights} == weights


def test_a_run_without_its_resume_state_is_said_to_be_so(trained, tmp_path, capsys):
    run = _copy_run(trained, tmp_path)
    (run / "last_state.pt").unlink()
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config | {"epochs": 3}))  # not finished
    assert main(["info", str(run), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["epochs_done"] == 1
    assert info["state"] == (f"stopped, and its resume state last_state.pt is missing, so the run cannot be "
                             f"continued exactly: start a new run from its weights with --init-weights "
                             f"{run / 'last.safetensors'} --output NEW, or replace it with --overwrite")
    assert main(["train", "--output", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "last_state.pt is missing" in err and "continue it with --resume" not in err, err


def test_a_damaged_resume_state_is_one_line_with_the_ways_on(trained, tmp_path, capsys):
    # a truncated last_state.pt (a full disk, a copy that did not finish) gave PyTorch's paragraph
    # on "PytorchStreamReader failed reading zip archive ... internal miniz error"; random bytes
    # "KeyError: 2910924322"
    import os

    run = _copy_run(trained, tmp_path)
    state = (run / "last_state.pt").read_bytes()
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config | {"epochs": 2}))  # not finished
    advice = (f"its resume state {run / 'last_state.pt'} is damaged (truncated, or not a file effvid wrote), "
              f"so the run cannot be continued exactly: start a new run from its weights with --init-weights "
              f"{run / 'last.safetensors'} --output NEW, or replace it with --overwrite")
    for damaged in (state[: len(state) // 2], os.urandom(3000)):
        (run / "last_state.pt").write_bytes(damaged)
        assert main(["train", "--output", str(run), "--resume", "--no-progress"]) == 2
        assert capsys.readouterr().err == f"effvid train: error: cannot resume {run}: {advice}\n"
        assert main(["info", str(run), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["state"] == f"stopped, and {advice}"
        # a new run into it suggested --resume, which then refused with the advice above
        assert main(["train", str(trained[0]), "--output", str(run), "--no-progress"]) == 2
        assert capsys.readouterr().err == f"effvid train: error: {run} already holds a run, but {advice}\n"
        assert (run / "last_state.pt").read_bytes() == damaged
    (run / "config.json").write_text(json.dumps(config))  # finished: it said "finished", no more
    assert main(["info", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == f"finished, and {advice}"
    (run / "config.json").unlink()  # the configuration is then read from the state
    assert main(["train", "--output", str(run), "--resume"]) == 2
    assert capsys.readouterr().err == f"effvid train: error: cannot resume {run}: {advice}\n"
    # the state of no run (a tensor saved under its name)
    torch.save(torch.zeros(2), run / "last_state.pt")
    assert main(["train", "--output", str(run), "--resume"]) == 2
    assert capsys.readouterr().err == (f"effvid train: error: cannot resume {run}: its resume state "
                                       f"{run / 'last_state.pt'} is not a run's resume state (it holds no "
                                       f"history), so {advice.split(', so ')[1]}\n")
    # a folder or a FIFO in its place said "weights file not found: .../last_state.pt"
    (run / "last_state.pt").unlink()
    (run / "last_state.pt").mkdir()
    assert main(["train", "--output", str(run), "--resume"]) == 2
    assert capsys.readouterr().err == (f"effvid train: error: cannot resume {run}: its resume state "
                                       f"{run / 'last_state.pt'} is a folder, not a file, so "
                                       f"{advice.split(', so ')[1]}\n")
    (run / "last_state.pt").rmdir()
    os.mkfifo(run / "last_state.pt")  # never opened: that would wait for a writer
    assert main(["info", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == (
        f"stopped, and its resume state {run / 'last_state.pt'} is not a regular file (a FIFO), so "
        f"{advice.split(', so ')[1]}")


def test_damaged_weights_are_named_by_info_eval_and_predict(trained, tmp_path, capsys):
    # a truncated best.safetensors (a full disk, a copy that did not finish) was found only by
    # eval or predict, in safetensors' words ("incomplete metadata, file not fully covered"),
    # while effvid info presented the run as fine
    data = trained[0]
    run = _copy_run(trained, tmp_path)
    best, last = run / "best.safetensors", run / "last.safetensors"
    best.write_bytes(best.read_bytes()[:-100])
    last.write_bytes(last.read_bytes()[:20])  # cut inside its header
    cut = "its size is not what its header lists (truncated, or a copy that did not finish)"
    assert main(["info", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[6:9] == [f"damaged      best.safetensors: {cut}",
                          "damaged      last.safetensors: it ends inside its header (truncated, or a copy that "
                          "did not finish)",
                          "state        finished"], lines
    video = str(sorted((data / "val" / "left").glob("*.mp4"))[0])
    for args in (["eval", str(data), "-c", str(best)], ["predict", video, "-c", str(best)]):
        assert main(args) == 2
        assert capsys.readouterr().err == f"effvid {args[0]}: error: {best} is not a readable safetensors file: {cut}\n"
    # without its state, the weights to start from are those that can be read
    (run / "last_state.pt").unlink()
    (run / "config.json").write_text(json.dumps(json.loads((run / "config.json").read_text()) | {"epochs": 2}))
    (run / "best.safetensors").write_bytes(trained[1].read_bytes())
    assert main(["info", str(run), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert list(info["damaged"]) == ["last.safetensors"]
    assert f"start a new run from its weights with --init-weights {best} --output NEW" in info["state"]
    (run / "best.safetensors").write_text("")
    assert main(["info", str(run), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["damaged"]["best.safetensors"] == "damaged, or not a safetensors file (header too small)"
    assert info["state"].endswith("cannot be continued exactly: replace it with --overwrite")


def test_counts_of_one_are_singular(trained, tmp_path, capsys):
    # "has completed 1 of 1 epochs", "[2/3] training TSN (resnet_tiny, 8 segments, 1 epochs)"
    run = _copy_run(trained, tmp_path)
    assert main(["train", "--output", str(run), "--resume"]) == 0
    assert f"{run} has completed 1 of 1 epoch: nothing to do (raise --epochs to train on)" in \
        capsys.readouterr().out.splitlines()
    assert main(["quickstart", "--output", str(tmp_path / "qs"), "--epochs", "1", "--videos-per-class", "1",
                 "--size", "16", "--workers", "0", "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "[2/3] training TSN (resnet_tiny, 8 segments, 1 epoch) ..." in out, out


def test_quickstart_rerun_with_fewer_videos_trains_on_what_it_announces(tmp_path, capsys):
    """A rerun into the folder of a run with more videos announced 60 training and 24 validation
    videos, and trained on the earlier run's 120 and 30, still there."""
    data = tmp_path / "qs" / "data"
    make_synthetic_dataset(data, classes=("left", "right", "up", "down", "grow", "shrink"),
                           videos_per_class_train=3, videos_per_class_val=5, num_frames=8, size=16)
    command = ["quickstart", "--output", str(tmp_path / "qs"), "--epochs", "1", "--videos-per-class", "1",
               "--size", "16", "--workers", "0", "--quiet"]
    assert main(command) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("      6 training and 24 validation videos (mp4, H.264) in "), out
    assert out.count("data: 6 classes, 6 training and 24 validation videos") == 2, out  # TSN's and TSM's
    # videos it did not write (an older effvid kept no record of its own) are refused, not deleted
    other = data / "train" / "left" / "left_0007.mp4"
    other.write_bytes(b"")
    assert main(command) == 2
    assert capsys.readouterr().err == (
        f"effvid quickstart: error: {data} holds files that this run did not write ({other}), which "
        "training would read too: an earlier quickstart of an older effvid left them, or they were "
        f"put there; delete them (or {data}), or give another --output\n")
    assert other.exists()


def test_resume_without_config_json_takes_the_configuration_from_the_state(trained, tmp_path, capsys):
    run = _copy_run(trained, tmp_path)
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").unlink()
    assert main(["train", "--output", str(run), "--resume", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "at epoch 2" in out, out
    rewritten = json.loads((run / "config.json").read_text())
    assert rewritten == saved | {"epochs": 2, "output": str(run)}
    assert len(json.loads((run / "history.json").read_text())) == 2
    # a state of an older effvid holds no configuration: say so, and how to resume
    state = torch.load(run / "last_state.pt", weights_only=True)
    del state["config"]
    torch.save(state, run / "last_state.pt")
    (run / "config.json").unlink()
    assert main(["train", "--output", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"cannot resume {run}: its config.json is missing" in err and "DATA" in err, err
    assert "stopped before it started" not in err
    (run / "config.json").write_text("{}")
    assert main(["train", "--output", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"cannot resume {run}: its config.json holds no 'data'" in err, err


def test_counts_of_one_are_singular_in_eval_predict_check_prepare_and_stream(trained, tmp_path, capsys):
    # "1 videos, 1 view(s) each", "1 of 1 videos could not be read", "checked 1 videos",
    # "prepared 0 of 1 videos", "none of the 1 videos", "1 frames in"
    from effvid.cli import plural

    assert (plural(1, "class"), plural(2, "class"), plural(1200, "video")) == ("1 class", "2 classes", "1,200 videos")
    assert (plural(1, "epoch"), plural(3, "epoch"), plural(2, "batch")) == ("1 epoch", "3 epochs", "2 batches")
    data, ckpt = trained
    video = sorted((data / "val" / "left").glob("*.mp4"))[0]
    one = tmp_path / "one.txt"
    one.write_text(f"{video} left\n")
    assert main(["eval", str(one), "-c", str(ckpt), "--workers", "0", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("1 video, 1 view each: top-1 ")

    broken = tmp_path / "videos" / "only" / "broken.mp4"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a video at all" * 10)
    assert main(["predict", str(broken), "-c", str(ckpt)]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == "effvid predict: 1 of 1 video could not be read"

    assert main(["check", str(tmp_path / "videos"), "--workers", "0", "--quiet"]) == 1
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[0].startswith("checked 1 video in ") and out[1] == "  found 1 unreadable video(s):"
    assert out[-1] == "all:        1 class, readable videos per class 0 to 0, median 0; none for 1: only"
    assert captured.err.splitlines()[-1] == "effvid check: 1 of 1 video is unreadable"

    assert main(["prepare", str(tmp_path / "videos"), str(tmp_path / "prepared"), "--quiet", "--workers", "0"]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("prepared 0 of 1 video in ")
    assert captured.err.splitlines()[-1] == "effvid prepare: 1 of 1 video is unreadable and was copied unchanged"

    assert main(["stream", str(broken.parent), "--model", "tsm_resnet_tiny", "--size", "32"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"effvid stream: error: none of the 1 video in {broken.parent} could be read")
    assert main(["stream", str(video), "--model", "tsm_resnet_tiny", "--size", "32", "--max-frames", "1"]) == 0
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"{video}: 1 frame in ")


def test_an_unknown_class_folder_names_a_few_of_the_checkpoints_classes(trained, tmp_path, capsys):
    """eval on data whose class folder a 400-class checkpoint does not know printed all 400 names."""
    import effvid
    from effvid.models.weights import save_weights

    data, _ = trained
    ckpt = tmp_path / "k400.safetensors"
    classes = [str(k) for k in range(400)]
    save_weights(effvid.create_model("tsm_resnet_tiny", num_classes=400, num_segments=4), ckpt,
                 {"classes": classes, "extra": {"size": 32, "scale_size": 32, "sampling": "segment"}})
    assert main(["eval", str(data), "-c", str(ckpt), "--workers", "0"]) == 2
    assert capsys.readouterr().err == (
        f"effvid eval: error: class folder {str(data / 'val' / 'grow')!r} is not one of the 400 classes "
        "(0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 390 more)\n")


def test_data_that_is_a_broken_link_names_its_target(trained, tmp_path, capsys):
    """A list file (or annotation file) that is a broken link said "dataset source not found",
    where a class folder's broken links say where they point."""
    _, ckpt = trained
    for name in ("list.txt", "train.csv"):
        link = tmp_path / name
        link.symlink_to(f"/nonexistent/gone/{name}")
        for command in (["train", str(link), "--output", str(tmp_path / "run")], ["check", str(link)],
                        ["eval", str(link), "-c", str(ckpt)]):
            assert main(command) == 2
            assert capsys.readouterr().err == (f"effvid {command[0]}: error: dataset source {str(link)!r} "
                                               f"is a broken link to /nonexistent/gone/{name}\n"), command
    classes = tmp_path / "classInd.txt"  # as a class file given with --classes
    classes.symlink_to("/nonexistent/classInd.txt")
    assert main(["check", str(trained[0]), "--classes", str(classes)]) == 2
    assert capsys.readouterr().err == (f"effvid check: error: class file {str(classes)!r} is a broken link "
                                       "to /nonexistent/classInd.txt\n")


def test_help_is_plain_text_in_filled_paragraphs(monkeypatch):
    """--help showed the docstrings' reST (``--classes``, :mod:, :class:) and their source line
    breaks: eval's "... class folders; ``--classes`` numbers a list's" ended a line early."""
    import re

    monkeypatch.setenv("COLUMNS", "100")
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    for name, parser in commands.items():
        text = parser.format_help()
        assert not [m for m in ("``", ":mod:", ":class:", ":func:", "::") if m in text], (name, text)
        description = text.split("\n\n", 1)[1].split("\npositional arguments:")[0].split("\noptions:")[0]
        for paragraph in description.split("\n\n"):
            lines = paragraph.splitlines()
            if lines[0].startswith(" "):  # an example, as written
                continue
            for line, after in zip(lines, lines[1:]):  # each line as full as the next word allows
                if not after.startswith("* "):
                    assert len(line) + 1 + len(after.split()[0]) > 98, (name, line, after)
    eval_help = commands["eval"].format_help()
    assert "or a folder of class folders; --classes numbers a list's integer labels (UCF101's" in \
        " ".join(eval_help.split())
    assert re.search(r"^effvid eval DATA --checkpoint CKPT: accuracy under TSM's test protocols\.$", eval_help, re.M)


@pytest.mark.parametrize("command", [["predict", "v.mp4", "-c", "best.safetensors", "--json"],
                                     ["eval", "val.txt", "-c", "best.safetensors", "--json"],
                                     ["check", "val.txt", "--json"],
                                     ["stream", "v.mp4", "-c", "best.safetensors", "--jsonl"]])
def test_json_output_never_names_a_weights_file(tmp_path, capsys, command):
    # --json onto the checkpoint the command read turned 44.7 MB of weights into 273 bytes of JSON
    weights = tmp_path / "best.safetensors"
    weights.write_bytes(b"weights")
    with pytest.raises(SystemExit) as e:
        main([*command, str(weights)])
    assert e.value.code == 2
    assert f"{weights} is a weights file, and the output would overwrite it" in capsys.readouterr().err
    assert weights.read_bytes() == b"weights"


# the commands whose --json (--jsonl) writes a results file, each on the tiny run's data
def _results_commands(data, ckpt):
    video = str(sorted((data / "val" / "left").glob("*.mp4"))[0])
    quiet = ["--workers", "0", "--quiet"]
    return {"predict": ["predict", video, "-c", str(ckpt), *quiet, "--json"],
            "eval": ["eval", str(data), "-c", str(ckpt), *quiet, "--json"],
            "check": ["check", str(data), *quiet, "--json"],
            "stream": ["stream", video, "--model", "tsm_resnet_tiny", "--num-classes", "2", "--size", "32",
                       "--max-frames", "2", "--jsonl"]}


@pytest.mark.parametrize("command", ["predict", "eval", "check", "stream"])
def test_json_output_never_overwrites_a_runs_files_or_an_input(trained, tmp_path, capsys, command):
    # --json RUN/config.json replaced the run's configuration (a resume then failed), and --json
    # train.txt the list file; each is refused, the file left as it was
    data, ckpt = trained
    args = _results_commands(data, ckpt)[command]
    run = _copy_run(trained, tmp_path)
    (tmp_path / "train.txt").write_text("left/a.mp4 left\n")
    (tmp_path / "classInd.txt").write_text("1 grow\n2 left\n")
    (tmp_path / "labels.json").write_text('{"grow": "0", "left": "1"}\n')  # JSON, but no results
    shutil.copy(sorted((data / "val" / "left").glob("*.mp4"))[0], tmp_path / "v.mp4")
    overwrite = ", and the output would overwrite it; name another file"
    refused = {run / name: f"is a file of the training run in {run}{overwrite}"
               for name in ("config.json", "history.json", "bad_videos.json")}  # the last: not written yet
    refused[run / "tensorboard"] = "is a folder; give a file name"
    refused |= {tmp_path / name: "holds something other than effvid's results (it is no earlier --json or "
                f"--jsonl output){overwrite}" for name in ("train.txt", "classInd.txt", "labels.json")}
    # predict's as before (a video after --json: see the test above)
    refused[tmp_path / "v.mp4"] = ("is a video, and the JSON would overwrite it; put --json after the videos, "
                                   "or write --json=results.json" if command == "predict" else
                                   "is a video, and the output would overwrite it; name a .json file")
    # in a "folder" that is a file: it failed as the results were written, after all the work
    refused[tmp_path / "train.txt" / "r.json"] = f"is in {tmp_path / 'train.txt'}, which is a file, not a folder"
    flag = "--jsonl" if command == "stream" else "--json"
    for path, why in refused.items():
        before = path.read_bytes() if path.is_file() else None
        with pytest.raises(SystemExit) as e:
            main([*args, str(path)])
        assert e.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1] == f"effvid {command}: error: argument {flag}: {path} {why}"
        assert (path.read_bytes() if path.is_file() else None) == before


def test_json_output_overwrites_an_earlier_results_file(trained, tmp_path, capsys):
    # a rerun writes over its own results, and any command over another's
    data, ckpt = trained
    commands = _results_commands(data, ckpt)
    out = tmp_path / "results.json"
    out.write_text("")  # empty (a stream stopped before its first frame)
    shapes = {"predict": lambda r: isinstance(r, list) and "top" in r[0],
              "eval": lambda r: "top1" in r and "videos" in r,
              "check": lambda r: "per_class" in r and "unreadable" in r}
    for command in ("stream", "stream", "eval", "eval", "predict", "predict", "check", "check", "stream"):
        os.utime(out, (0, 0))  # the command's write shows in the modification time
        assert main([*commands[command], str(out)]) == 0, command
        capsys.readouterr()
        assert out.stat().st_mtime > 0, command
        if command == "stream":
            lines = [json.loads(line) for line in out.read_text().splitlines()]
            assert [line["frame"] for line in lines] == [0, 1]
        else:
            assert shapes[command](json.loads(out.read_text())), command
    # into a folder that is not there yet: made (the error came after all the work, which was lost)
    for command in ("stream", "eval", "predict", "check"):
        new = tmp_path / "new" / command / "results.json"
        assert main([*commands[command], str(new)]) == 0, command
        capsys.readouterr()
        assert new.read_text().strip(), command
    # a results file in a run folder, named as the run names none of its files
    run = _copy_run(trained, tmp_path)
    assert main([*commands["eval"], str(run / "eval.json")]) == 0
    assert main([*commands["eval"], str(run / "eval.json")]) == 0
    assert "top1" in json.loads((run / "eval.json").read_text())


def test_train_refuses_an_output_in_its_data(tmp_path, capsys, monkeypatch):
    # --output DATA wrote tensorboard/ into the data, which the next run read as a class (and an
    # --output inside DATA failed as "class folder .../runs contains no videos")
    data = tmp_path / "data"
    make_synthetic_dataset(data, classes=("grow", "left"), videos_per_class_train=2,
                           videos_per_class_val=1, num_frames=4, size=16, seed=0)
    flat = tmp_path / "flat"
    shutil.copytree(data / "train", flat)
    before = sorted(p for p in tmp_path.rglob("*"))
    common = ["--model", "tsm_resnet_tiny", "--num-segments", "2", "--size", "16", "--epochs", "1",
              "--workers", "0", "--no-progress"]
    why = "the run's files (tensorboard/, ...) would be read as data by the next run on it; write the run " \
          "outside it (--output runs/NAME)"
    # the data quoted ("is inside the training data data" read as a doubled word), and the part named
    for args, said in (([str(flat), "--output", str(flat)], f"--output {flat} is the training data {str(flat)!r}"),
                       ([str(flat), "--output", str(flat / "runs" / "x")],
                        f"--output {flat / 'runs' / 'x'} is inside the training data {str(flat)!r}"),
                       ([str(data), "--output", str(data / "val")],
                        f"--output {data / 'val'} is {str(data / 'val')!r}, the validation part of the training "
                        f"data {str(data)!r}"),
                       ([str(data), "--output", str(data / "train" / "x")],
                        f"--output {data / 'train' / 'x'} is inside {str(data / 'train')!r}, the training part of "
                        f"the training data {str(data)!r}"),
                       ([str(data), "--output", str(data / "runs")],
                        f"--output {data / 'runs'} is inside the training data {str(data)!r}"),
                       ([str(flat), "--val-data", str(data), "--output", str(data / "val" / "r")],
                        f"--output {data / 'val' / 'r'} is inside {str(data / 'val')!r}, the validation part of "
                        f"the validation data (--val-data) {str(data)!r}")):
        assert main(["train", *args, *common]) == 2
        out, err = capsys.readouterr()
        assert err == f"effvid train: error: {said}: {why}\n"
        assert "data:" not in out
    # the default, runs/effvid in the working folder, is fine unless that folder is in DATA
    monkeypatch.chdir(flat)
    assert main(["train", ".", *common]) == 2
    assert capsys.readouterr().err == ("effvid train: error: --output runs/effvid (the default, in the working "
                                       f"folder) is inside the training data '.': {why}\n")
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written, not even a lock file


def test_train_notes_validation_videos_it_trains_on(tmp_path, capsys):
    # --val-data naming DATA's videos (the same folder, a link to it, a list of the same videos)
    # validated on what the run trained on without a word, and a video listed twice counted twice
    data = tmp_path / "data"
    make_synthetic_dataset(data, classes=("grow", "left"), videos_per_class_train=2,
                           videos_per_class_val=1, num_frames=4, size=16, seed=0)
    videos = sorted((data / "train").rglob("*.mp4"))
    (tmp_path / "train.txt").write_text("".join(f"{v} {v.parent.name}\n" for v in videos))
    val = tmp_path / "val.txt"
    val.write_text(f"{videos[0]} grow\n{videos[2]} left\n{videos[0]} grow\n")
    (tmp_path / "link").symlink_to(data / "train")
    common = ["--model", "tsm_resnet_tiny", "--num-segments", "2", "--size", "16", "--epochs", "1",
              "--batch-size", "2", "--workers", "0", "--no-progress", "--no-flip"]
    for k, (args, notes) in enumerate((
            ([str(tmp_path / "train.txt"), "--val-data", str(val)],
             [f"note: {val} line 3 lists {videos[0]} again (first on line 1); each video is read once",
              "data: 2 classes, 4 training and 2 validation videos",
              f"note: 2 of the 2 validation videos are training videos too ({videos[0]}, {videos[2]}): "
              "their accuracy is not that of unseen videos"]),
            ([str(data / "train"), "--val-data", str(tmp_path / "link")],
             ["data: 2 classes, 4 training and 4 validation videos",
              "note: 4 of the 4 validation videos are training videos too ("
              + ", ".join(str(tmp_path / "link" / v.parent.name / v.name) for v in videos[:3])
              + " and 1 more): their accuracy is not that of unseen videos"]),
            ([str(data)], ["data: 2 classes, 4 training and 2 validation videos"]))):  # train/ and val/: none
        assert main(["train", *args, *common, "--output", str(tmp_path / f"run{k}")]) == 0
        assert [line for line in capsys.readouterr().out.splitlines() if line.startswith(("note:", "data:"))] == notes


def test_eval_and_check_read_a_video_listed_twice_once(trained, tmp_path, capsys):
    # counted twice, it skewed the accuracy
    data, ckpt = trained
    videos = sorted((data / "val").rglob("*.mp4"))
    listed = tmp_path / "val.txt"
    listed.write_text("".join(f"{v} {v.parent.name}\n" for v in videos) + f"{videos[1]} {videos[1].parent.name}\n")
    note = (f"note: {listed} line 5 lists {videos[1]} again (first on line 2); each video is read once")
    report = tmp_path / "e.json"
    assert main(["eval", str(listed), "-c", str(ckpt), "--workers", "0", "--quiet", "--json", str(report)]) == 0
    captured = capsys.readouterr()  # eval's notes on stderr: stdout is the results
    assert captured.err == note + "\n" and captured.out.startswith("4 videos, 1 view each: top-1")
    assert json.loads(report.read_text())["count"] == 4
    assert main(["check", str(listed), "--workers", "0", "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == note and out[1].startswith("checked 4 videos in")


def test_still_images_are_refused_as_not_videos(trained, tmp_path, capsys):
    # FFmpeg's image demuxer decodes a still image as a one-frame video: predict classified a
    # .png (or .bmp, .gif, ...) as one, and said of a .jpg "no frame could be decoded"
    from PIL import Image

    from effvid.data.video import VIDEO_EXTENSIONS

    data, ckpt = trained
    video = sorted((data / "val" / "left").glob("*.mp4"))[0]
    pixels = Image.new("RGB", (32, 32), (200, 30, 30))
    for ext in ("png", "jpg", "JPEG", "bmp", "gif", "webp", "tif"):
        image = tmp_path / f"still.{ext}"
        pixels.save(image)
        said = (f"{image} is an image (.{ext.lower()}), not a video: effvid classifies videos "
                f"({', '.join(VIDEO_EXTENSIONS)})")
        # refused with a video beside it too, before anything is classified
        assert main(["predict", str(video), str(image), "-c", str(ckpt), "--workers", "0"]) == 2
        out, err = capsys.readouterr()
        assert (out, err) == ("", f"effvid predict: error: {said}\n")
        assert main(["stream", str(image), "-c", str(ckpt)]) == 2
        assert capsys.readouterr().err == f"effvid stream: error: {said}\n"
    # as DATA it was read as a list file: "list file 'still.png' is not UTF-8 text"
    image = tmp_path / "still.png"
    for command in (["eval", str(image), "-c", str(ckpt)], ["check", str(image)],
                    ["train", str(image), "--output", str(tmp_path / "run")]):
        assert main(command) == 2
        assert capsys.readouterr().err == (
            f"effvid {command[0]}: error: {str(image.absolute()) if command[0] == 'train' else str(image)!r} is an "
            "image, not a video: the data is a folder of class folders of videos, a list file or an annotation file\n")
    assert not (tmp_path / "run").exists()


def test_workers_above_the_usable_cpus_are_lowered_with_a_note(tmp_path, capsys):
    # --workers 1000 forked ~960 decoding processes, and a SIGTERM then took 3 minutes
    import os

    cpus = len(os.sched_getaffinity(0))  # the CPUs this process may run on
    note = (f"note: --workers 100000 lowered to {cpus}, the CPUs this process can use (more worker "
            "processes than CPUs only compete for them)\n")
    parse = build_parser().parse_args
    for command in (["train", "data"], ["eval", "data", "-c", "m.safetensors"], ["predict", "v.mp4", "-c", "m.safetensors"],
                    ["check", "data"], ["prepare", "src", "dst"], ["quickstart"]):
        assert parse([*command, "--workers", "100000"]).workers == cpus, command
        assert capsys.readouterr().err == note
        assert parse([*command, "--workers", str(cpus)]).workers == cpus  # as many: as given
        assert capsys.readouterr().err == ""
    # a --config file's (or a resumed run's) value too, which config.json then keeps
    data = tmp_path / "data"
    make_synthetic_dataset(data, classes=("grow", "left"), videos_per_class_train=2,
                           videos_per_class_val=1, num_frames=4, size=16, seed=0)
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps({"workers": 100000, "worker_timeout": 60}))
    run = tmp_path / "run"
    assert main(["train", str(data), "--config", str(saved), "--model", "tsm_resnet_tiny", "--num-segments", "2",
                 "--size", "16", "--epochs", "1", "--batch-size", "2", "--no-progress", "--output", str(run)]) == 0
    assert note in capsys.readouterr().err
    assert json.loads((run / "config.json").read_text())["workers"] == cpus


def test_flags_the_run_would_not_use_are_refused_naming_both(tmp_path, capsys):
    # --lr-steps under the default cosine schedule was ignored without a word
    missing = str(tmp_path / "missing")
    common = ["train", missing, "--output", str(tmp_path / "run")]
    for flags, said in (
            (["--lr-steps", "5", "8"], "--lr-steps: the cosine schedule does not use it, only --schedule step does; "
                                       "add --schedule step, or drop --lr-steps (got 5 8)"),
            (["--optimizer", "adamw", "--momentum", "0.8"], "--momentum: --optimizer adamw does not use it, only "
                                                            "--optimizer sgd does; drop --momentum (got 0.8)"),
            (["--no-amp", "--amp-dtype", "float16"], "--amp-dtype: --no-amp turns mixed precision off, and with it "
                                                     "--amp-dtype; drop one of them (got float16)"),
            (["--workers", "0", "--worker-timeout", "30"], "--worker-timeout: --workers 0 reads the data in this "
                                                           "process, and only worker processes time out; drop "
                                                           "--worker-timeout, or give --workers above 0 (got 30.0)"),
            (["--model", "tsn_resnet_tiny", "--shift-div", "4"], "--shift-div: --model tsn_resnet_tiny has no temporal "
                                                                 "shift (only the tsm_ models do); drop --shift-div (got 4)"),
            # a step the run never reaches: it trained at one rate, unsaid
            (["--schedule", "step", "--epochs", "2", "--lr-steps", "1", "5"],
             "--lr-steps: a step at epoch 5 or later never comes in a run of 2 epochs (a step at N lowers the "
             "rate from epoch N + 1); give steps below 2 (got 1 5)"),
            (["--schedule", "step", "--epochs", "30"],
             "--schedule: its default steps at 20 and 40 include 40, which never comes in a run of 30 epochs; "
             "give --lr-steps (got step)")):
        assert main(common + flags) == 2
        assert capsys.readouterr().err == f"effvid train: error: argument {said}\n", flags
        assert not (tmp_path / "run").exists()
    # used, they pass on (to the missing data); a --config file (a run's config.json) holds every
    # field, lr_steps with a cosine schedule too: not refused
    saved = tmp_path / "config.json"
    saved.write_text(TrainConfig(data=missing, schedule="cosine", lr_steps=[20, 40]).to_json())
    for flags in (["--schedule", "step", "--lr-steps", "5"], ["--momentum", "0.8"], ["--amp-dtype", "float16"],
                  ["--worker-timeout", "30"], ["--shift-div", "4"], ["--config", str(saved)]):
        assert main(common + flags) == 2
        assert "missing" in capsys.readouterr().err, flags


def test_eval_and_check_write_their_json_when_the_reader_of_their_output_leaves(trained, tmp_path):
    # "effvid eval ... --json out.json | true": no out.json and status 0; with standard output
    # closed (>&-), out.json and then a traceback at the last flush
    import subprocess
    import sys

    data, ckpt = trained
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for command in (["eval", str(data), "-c", str(ckpt)], ["check", str(data)]):
        out = tmp_path / f"{command[0]}.json"
        read, write = os.pipe()
        os.close(read)  # the reader left before the first line
        try:
            proc = subprocess.run([sys.executable, "-m", "effvid", *command, "--workers", "0", "--quiet",
                                   "--json", str(out)], stdout=write, stderr=subprocess.PIPE, text=True,
                                  env=env, timeout=120)
        finally:
            os.close(write)
        assert proc.returncode == 141, proc.stderr  # 128 + SIGPIPE, as train's
        assert json.loads(out.read_text())["classes"] == ["grow", "left"]
        out.unlink()
        proc = subprocess.run(["/bin/bash", "-c", '"$@" >&-', "bash", sys.executable, "-m", "effvid", *command,
                               "--workers", "0", "--quiet", "--json", str(out)],
                              stderr=subprocess.PIPE, text=True, env=env, timeout=120)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        assert json.loads(out.read_text())["classes"] == ["grow", "left"]


def test_eval_and_predict_json_record_the_checkpoint_and_the_protocol(trained, tmp_path, capsys):
    data, ckpt = trained
    report = tmp_path / "e.json"
    assert main(["eval", str(data), "-c", str(ckpt), "--clips", "2", "--twice", "--crops", "3",
                 "--workers", "0", "--quiet", "--json", str(report)]) == 0
    # the fixture's run: 4 segments, 32 px crops of frames scaled to 32, segment sampling
    protocol = {"clips": 2, "crops": 3, "twice": True, "sampling": "segment", "num_segments": 4,
                "size": 32, "scale_size": 32, "views": 9}
    stats = json.loads(report.read_text())
    assert (stats["checkpoint"], stats["data"], stats["protocol"]) == (str(ckpt), str(data), protocol)
    assert stats["count"] == 4 and len(stats["videos"]) == 4  # the keys of before, as they were
    capsys.readouterr()
    video = str(sorted((data / "val" / "left").glob("*.mp4"))[0])
    assert main(["predict", video, "-c", str(ckpt), "--size", "24", "--num-segments", "2", "--sampling", "dense",
                 "--json", "-", "--workers", "0", "--quiet"]) == 0
    entry, = json.loads(capsys.readouterr().out)
    assert entry["video"] == video and len(entry["top"]) == 2
    assert (entry["checkpoint"], entry["protocol"]) == (str(ckpt), {
        "clips": 1, "crops": 1, "twice": False, "sampling": "dense", "num_segments": 2, "size": 24,
        "scale_size": 27, "views": 1})  # a new size: its scale size 24 x 256/224 rounded down


def test_eval_of_a_folder_with_train_but_no_val_says_so_as_train_and_check_do(trained, tmp_path, capsys):
    # eval said "class folder '.../train' is not one of the 2 classes (grow, left)"
    data, ckpt = trained
    tonly = tmp_path / "tonly"
    shutil.copytree(data / "train", tonly / "train")
    said = (f"{str(tonly)!r} has a train/ folder but no val/ folder: add val/, or point at "
            f"{str(tonly / 'train')!r} to split it")
    for command in (["eval", str(tonly), "-c", str(ckpt)], ["check", str(tonly)]):
        assert main([*command, "--workers", "0", "--quiet"]) == 2
        assert capsys.readouterr().err == f"effvid {command[0]}: error: {said}\n"


def test_identical_views_are_computed_once_and_said(trained, tmp_path, capsys):
    # dense sampling of 8-frame videos (under its 64-frame window): every clip is frames 0, 2, 4,
    # 6, and the 3 crops of these square 32 px frames (--scale-size 32) are the same pixels:
    # --clips 5 --crops 3 computed 15 views, all the same, with no word
    from effvid.training.evaluate import distinct_views

    data, ckpt = trained
    common = ["-c", str(ckpt), "--sampling", "dense", "--workers", "0", "--quiet", "--json"]
    assert main(["eval", str(data), *common, str(tmp_path / "one.json")]) == 0
    assert capsys.readouterr().err == ""  # 1 view: nothing to say
    assert main(["eval", str(data), *common, str(tmp_path / "five.json"), "--clips", "5", "--crops", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ("note: 4 of the 60 views differ, and each was computed once: the clips of a video "
                            "with no more frames than the 4 segments, or under dense sampling's 64-frame window, "
                            "are the same frames (and crops of frames no larger than the crop the same pixels)\n")
    assert captured.out.startswith("4 videos, 15 views each")
    one, five = (json.loads((tmp_path / name).read_text()) for name in ("one.json", "five.json"))
    # the average of 15 copies of a view is that view's
    assert (five["top1"], five["confusion"]) == (one["top1"], one["confusion"])
    assert five["loss"] == pytest.approx(one["loss"], rel=1e-6)
    for a, b in zip(one["videos"], five["videos"]):
        assert [t["label"] for t in a["top"]] == [t["label"] for t in b["top"]]
        assert [t["score"] for t in a["top"]] == pytest.approx([t["score"] for t in b["top"]], abs=2e-6)
    # identical views found by their values, a mirror image told apart
    a, b = torch.rand(2, 4, 3, 8, 8)
    assert distinct_views(torch.stack([a, b, a, a.flip(-1), b, a.clone()])) == ([0, 1, 3], [0, 1, 0, 2, 1, 0])
