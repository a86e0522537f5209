"""Common user mistakes, each answered with what went wrong and what to do instead: weights given
to the wrong flag, a quoted ~, a list file's header line, a misspelt model name, ... One test per
mistake, on real files (tiny models, videos encoded with PyAV)."""

from __future__ import annotations

import json
import pytest
import torch
from safetensors.torch import load_file, save_file

import effvid
from effvid.cli import main
from effvid.data.synthetic import make_synthetic_dataset
from effvid.models.weights import METADATA_KEY, load_model, save_weights

CLASSES = ["grow", "left"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Class folders with train/ and val/: 2 classes, 2 + 1 videos each (32x32, 8 frames)."""
    root = tmp_path_factory.mktemp("mistakes") / "data"
    make_synthetic_dataset(root, classes=tuple(CLASSES), videos_per_class_train=2,
                           videos_per_class_val=1, num_frames=8, size=32, seed=2)
    return root


@pytest.fixture(scope="module")
def video(data):
    return sorted((data / "val" / "grow").glob("*.mp4"))[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An effvid checkpoint: a 4-segment TSM-ResNet-tiny of CLASSES, trained at 32x32."""
    torch.manual_seed(0)
    model = effvid.create_model("tsm_resnet_tiny", num_classes=2, num_segments=4).eval()
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(model, path, {"classes": CLASSES, "extra": {"size": 32}})
    return path


def _train(data, tmp_path, *flags):
    return ["train", str(data), "--model", "tsm_resnet_tiny", "--num-segments", "4", "--size", "32",
            "--epochs", "1", "--workers", "0", "--no-progress", "--output", str(tmp_path / "run"), *flags]


def _last_error(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


# 1 ------------------------------------------------------------------------------------------


def test_weights_given_to_the_wrong_flag_say_which_flag_takes_them(data, video, tiny, tmp_path, capsys):
    from test_tsm_checkpoint import _save_original

    from effvid.models.resnet_tiny import ResNetTiny

    # torchvision's ResNet layout (conv1, bn1, layer1.., fc), as an ImageNet file holds it
    imagenet = tmp_path / "resnet_tiny_imagenet.pth"
    torch.save(ResNetTiny().state_dict(), imagenet)
    # the original TSM code's layout: module.base_model.*, module.new_fc.*
    release = _save_original(effvid.create_model("tsm_resnet_tiny", num_classes=3, num_segments=4),
                             tmp_path / "TSM_kinetics_RGB_resnet_tiny_shift8_blockres_avg_segment4_e50.pth")
    # an effvid checkpoint as ImageNet weights: a list of missing and unexpected keys was all it said
    assert main(_train(data, tmp_path, "--imagenet-weights", str(tiny))) == 2
    assert _last_error(capsys) == (
        f"effvid train: error: {tiny} is an effvid checkpoint, not ImageNet weights for --imagenet-weights: "
        "effvid train --init-weights fine-tunes from it, and eval, predict, export and stream take it "
        "with --checkpoint")
    # an original TSM checkpoint as ImageNet weights: the same list of keys
    assert main(_train(data, tmp_path, "--imagenet-weights", str(release))) == 2
    assert _last_error(capsys) == (
        f"effvid train: error: {release} is an original TSM release checkpoint, not ImageNet weights for "
        "--imagenet-weights: effvid train --init-weights fine-tunes from its backbone, and effvid convert "
        "makes an effvid checkpoint of it for the other commands")
    # ImageNet weights to start from: "this is not a checkpoint of the original TSM code"
    assert main(_train(data, tmp_path, "--init-weights", str(imagenet))) == 2
    assert _last_error(capsys) == (
        f"effvid train: error: {imagenet} is torchvision ImageNet weights, not an original TSM release "
        "checkpoint: effvid train --imagenet-weights takes them")
    # ImageNet weights to classify with: it said to convert them with effvid convert
    assert main(["predict", str(video), "-c", str(imagenet)]) == 2
    assert _last_error(capsys) == (
        f"effvid predict: error: {imagenet} is torchvision ImageNet weights, not an effvid checkpoint: "
        "effvid train --imagenet-weights takes them")
    # the same as a .safetensors file: "has no effvid model configuration in its metadata", and
    # for --init-weights a list of keys
    imagenet_st = tmp_path / "resnet_tiny_imagenet.safetensors"
    save_file(ResNetTiny().state_dict(), str(imagenet_st))
    assert main(["predict", str(video), "-c", str(imagenet_st)]) == 2
    assert _last_error(capsys) == (
        f"effvid predict: error: {imagenet_st} is torchvision ImageNet weights, not an effvid checkpoint: "
        "effvid train --imagenet-weights takes them")
    assert main(_train(data, tmp_path, "--init-weights", str(imagenet_st))) == 2
    assert _last_error(capsys) == (
        f"effvid train: error: {imagenet_st} is torchvision ImageNet weights, not an effvid checkpoint: "
        "effvid train --imagenet-weights takes them")
    # where they belong, they load
    model = effvid.create_model("tsn_resnet_tiny", num_classes=2, num_segments=4, imagenet_weights=imagenet_st)
    assert torch.equal(model.backbone.conv1.weight, load_file(str(imagenet_st))["conv1.weight"])
    # the kinds, as told from the keys (and an effvid file's metadata)
    from effvid.models.weights import load_weights, read_state_dict, weights_kind

    assert weights_kind(*load_weights(tiny)) == "effvid"
    assert weights_kind(read_state_dict(imagenet)) == "imagenet"
    assert weights_kind(read_state_dict(release)) == "tsm_release"
    assert weights_kind({"module." + k: v for k, v in ResNetTiny().state_dict().items()}) == "imagenet"
    assert weights_kind({"encoder.weight": torch.zeros(1)}) is None


# 2 ------------------------------------------------------------------------------------------


def test_a_checkpoint_of_another_architecture_is_named_by_its_metadata(data, tiny, tmp_path, capsys):
    # fine-tuning a ResNet-18 from a ResNet-tiny checkpoint listed missing, unexpected and
    # wrong-shape keys; the checkpoint's metadata says what it holds
    flags = _train(data, tmp_path, "--init-weights", str(tiny))
    flags[flags.index("tsm_resnet_tiny")] = "tsn_resnet18"
    assert main(flags) == 2
    assert _last_error(capsys) == (
        f"effvid train: error: {tiny} holds a tsm_resnet_tiny (as its metadata records), not the "
        "tsn_resnet18 being trained: fine-tune it with --model tsn_resnet_tiny")


# 3 ------------------------------------------------------------------------------------------


def test_weights_saved_from_a_data_parallel_model_load(tiny, video, tmp_path, capsys):
    # DistributedDataParallel and DataParallel name every key "module.<key>"
    state, meta = effvid.models.weights.load_weights(tiny)
    wrapped = tmp_path / "ddp.safetensors"
    save_file({"module." + k: v for k, v in state.items()}, str(wrapped),
              metadata={METADATA_KEY: json.dumps(meta)})
    model, _ = load_model(wrapped)
    plain, _ = load_model(tiny)
    x = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))
    assert main(["predict", str(video), "-c", str(wrapped), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert main(["predict", str(video), "-c", str(tiny), "--workers", "0"]) == 0
    assert out == capsys.readouterr().out  # the same top classes and scores
    # and to start a run from
    from effvid.training.init_weights import load_init_weights

    fresh = effvid.create_model("tsm_resnet_tiny", num_classes=2, num_segments=4)
    said = load_init_weights(fresh, str(wrapped), CLASSES, "tsm_resnet_tiny")
    assert said == f"starting from {wrapped}: all its weights, classifier included"
    assert torch.equal(fresh.backbone.conv1.weight, plain.backbone.conv1.weight)


# 4 ------------------------------------------------------------------------------------------


def test_converting_an_effvid_checkpoint_says_it_is_one_already(tiny, tmp_path, capsys):
    # it said "no 'base_model.*' keys; this is not a checkpoint of the original TSM code (first keys: [...])"
    assert main(["convert", str(tiny), str(tmp_path / "out.safetensors")]) == 2
    assert capsys.readouterr().err == (
        f"effvid convert: error: {tiny} is already an effvid checkpoint: there is nothing to convert; eval, "
        "predict, export, stream and info take it as it is\n")
    assert not (tmp_path / "out.safetensors").exists()


# 5 ------------------------------------------------------------------------------------------


def test_a_config_that_is_no_json_file_is_named_in_one_line(data, tiny, tmp_path, capsys):
    run_folder = tmp_path / "old_run"
    run_folder.mkdir()
    (run_folder / "config.json").write_text("{}")
    missing = tmp_path / "nothere.json"
    # a weights file: "'utf-8' codec can't decode byte 0x80 in position 7506" named no file; a
    # folder: a traceback of IsADirectoryError; a missing file: "No such file or directory"
    for config, said in ((tiny, f"config file {str(tiny)!r} is not UTF-8 text"),
                         (run_folder, f"config file {str(run_folder)!r} is a folder, not a JSON file "
                                      f"(the run's configuration is {run_folder / 'config.json'})"),
                         (missing, f"config file not found: {str(missing)!r}")):
        assert main(_train(data, tmp_path, "--config", str(config))) == 2
        out, err = capsys.readouterr()
        assert err.startswith(f"effvid train: error: {said}") and err.count("\n") == 1, err
        assert "data:" not in out  # before the data is read


# 6 ------------------------------------------------------------------------------------------


def test_a_list_file_with_a_header_line_is_refused_saying_so(data, tmp_path, capsys):
    from effvid.data.lists import read_list_file

    rows = [f"{p.relative_to(data)} {p.parent.name}" for p in sorted((data / "train").rglob("*.mp4"))]
    spaced = data / "with_header.txt"
    spaced.write_text("path label\n" + "\n".join(rows) + "\n")
    commas = data / "with_csv_header.txt"
    commas.write_text("video,label\n" + "\n".join(rows) + "\n")
    # "unsupported video extension '' for '.../path'" with the hint on frame folders; and
    # "cannot parse 'video,label'"
    for lst, header in ((spaced, "path label"), (commas, "video,label")):
        with pytest.raises(ValueError) as e:
            read_list_file(lst)
        assert str(e.value) == (f"{str(lst)!r} line 1: {header!r} looks like a header; a list file has no "
                                "header line: delete it, or start it with # (a comment)")
    assert main(_train(spaced, tmp_path)) == 2
    assert "line 1: 'path label' looks like a header" in _last_error(capsys)
    # without it the list reads
    spaced.write_text("# path label\n" + "\n".join(rows) + "\n")
    samples, classes = read_list_file(spaced)
    assert classes == CLASSES and len(samples) == 4


# 7 ------------------------------------------------------------------------------------------


def test_labels_numbered_from_1_are_named_as_such(data, tiny, capsys):
    from effvid.data.lists import read_list_file

    def numbered(split, first):
        lst = data / f"{split}_from_{first}.txt"
        lst.write_text("".join(f"{p.relative_to(data)} {CLASSES.index(p.parent.name) + first}\n"
                               for p in sorted((data / split).rglob("*.mp4"))))
        return lst

    # training on it made 3 classes, class "0" without a video, and said nothing
    with pytest.raises(ValueError) as e:
        read_list_file(numbered("train", 1))
    assert str(e.value) == (
        f"list file {str(data / 'train_from_1.txt')!r}: its integer labels run from 1 to 2, with no 0; "
        "effvid numbers classes from 0, so class 0 would have no videos: number the labels from 0, or "
        "give a class file that numbers the classes from 1 (--classes, as UCF101's classInd.txt)")
    assert read_list_file(numbered("train", 0))[1] == ["0", "1"]
    # evaluated with a 2-class checkpoint: "label 2 out of range for 2 classes" alone
    lst = numbered("val", 1)
    assert main(["eval", str(lst), "-c", str(tiny), "--workers", "0"]) == 2
    assert _last_error(capsys) == (
        f"effvid eval: error: {str(lst)!r} line 2: label 2 out of range for 2 classes; the labels look "
        "numbered from 1 (none is 0): number the labels from 0, or give a class file that numbers the "
        "classes from 1 (--classes, as UCF101's classInd.txt)")


# 8 ------------------------------------------------------------------------------------------


def test_a_quoted_tilde_or_a_url_is_said_to_be_unread(data, video, tiny, tmp_path, capsys):
    from pathlib import Path

    tilde = ("; the shell did not expand this ~ (it was quoted, or not at the start of a word): write "
             "the path out, or use $HOME")
    url = "; effvid reads local files only and downloads nothing: download it first"
    # a video, DATA, a list's video, a checkpoint and --init-weights: "not found" alone
    assert main(["predict", "~/clips/a.mp4", "-c", str(tiny)]) == 2
    assert _last_error(capsys) == f"effvid predict: error: video not found: ~/clips/a.mp4{tilde}"
    assert main(["eval", "https://example.org/k400/val.csv", "-c", str(tiny)]) == 2
    assert _last_error(capsys) == f"effvid eval: error: dataset source not found: 'https:/example.org/k400/val.csv'{url}"
    lst = tmp_path / "list.txt"
    lst.write_text("~/clips/a.mp4 0\n")
    assert main(_train(lst, tmp_path)) == 2
    assert _last_error(capsys) == (f"effvid train: error: {str(lst)!r} line 1: video not found: "
                                   f"{str(tmp_path / '~/clips/a.mp4')!r}{tilde}")
    assert main(["predict", str(video), "-c", "s3://bucket/best.safetensors"]) == 2
    assert _last_error(capsys) == f"effvid predict: error: weights file not found: s3:/bucket/best.safetensors{url}"
    assert main(_train(data, tmp_path, "--init-weights", "~/runs/a/best.safetensors")) == 2
    assert _last_error(capsys) == (f"effvid train: error: weights file not found: "
                                   f"{Path.cwd() / '~/runs/a/best.safetensors'}{tilde}")
    from effvid.errors import unread_path_hint

    assert unread_path_hint("~/videos/a.mp4") == tilde
    assert unread_path_hint("/data/~/videos") == tilde
    assert unread_path_hint("https://example.org/a.mp4") == url
    assert unread_path_hint("s3:/bucket/w.safetensors") == url  # as Path() writes s3://
    assert unread_path_hint("videos/a.mp4") == ""


# 9 ------------------------------------------------------------------------------------------


def test_resuming_a_run_folder_that_is_not_there_names_the_one_that_is(tmp_path, capsys):
    runs = tmp_path / "runs"
    (runs / "tsm_lr0.01").mkdir(parents=True)
    (runs / "tsm_lr0.01" / "config.json").write_text("{}")
    (runs / "tsm_lr0.1b").mkdir()  # as close, but no run: not suggested
    # "nothing to resume in ...: it has no config.json (the run stopped before it started)"
    assert main(["train", "--output", str(runs / "tsm_lr0.1"), "--resume"]) == 2
    assert capsys.readouterr().err == (
        f"effvid train: error: nothing to resume in {runs / 'tsm_lr0.1'}: there is no such folder; "
        f"did you mean {str(runs / 'tsm_lr0.01')!r}?\n")
    assert main(["train", "--output", str(runs / "other"), "--resume"]) == 2
    assert capsys.readouterr().err == (
        f"effvid train: error: nothing to resume in {runs / 'other'}: there is no such folder\n")
    # with DATA the run starts there (resume-or-start), after a note; this DATA stops it at once
    data = tmp_path / "data"
    (data / "left").mkdir(parents=True)
    assert main(["train", str(data), "--output", str(runs / "tsm_lr0.1"), "--resume"]) == 2
    said = capsys.readouterr()
    assert said.out.startswith(f"note: nothing to resume in {runs / 'tsm_lr0.1'}, which is not there: this run "
                               f"starts from scratch; did you mean {str(runs / 'tsm_lr0.01')!r}?\n"), said.out
    assert "left" in said.err  # the empty class folder, refused
    assert main(["train", str(data), "--output", str(runs / "other"), "--resume"]) == 2
    assert "did you mean" not in capsys.readouterr().out


# 10 -----------------------------------------------------------------------------------------


def test_a_checkpoint_given_where_the_command_does_not_take_it_names_the_right_form(video, tiny, capsys):
    def refused(argv):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        return _last_error(capsys)

    # export and stream take the checkpoint with --checkpoint: "unrecognized arguments: tiny.safetensors"
    assert refused(["export", str(tiny), "--output", "out"]) == (
        f"effvid export: error: unrecognized arguments: {tiny} (effvid export takes a checkpoint with "
        f"--checkpoint: --checkpoint {tiny})")
    assert refused(["stream", str(video), str(tiny)]) == (
        f"effvid stream: error: unrecognized arguments: {tiny} (effvid stream takes a checkpoint with "
        f"--checkpoint: --checkpoint {tiny})")
    # predict's VIDEO... took it for a video, and the parser said only that --checkpoint is required
    assert refused(["predict", str(video), str(tiny)]) == (
        f"effvid predict: error: the following arguments are required: --checkpoint/-c (effvid predict "
        f"takes a checkpoint with --checkpoint: --checkpoint {tiny})")
    assert refused(["predict", str(video)]) == "effvid predict: error: the following arguments are required: --checkpoint/-c"
    # info takes it as MODEL: "unrecognized arguments: --checkpoint"
    assert refused(["info", "--checkpoint", str(tiny)]) == (
        "effvid info: error: unrecognized arguments: --checkpoint (effvid info takes the checkpoint as "
        "its argument MODEL, without --checkpoint)")
    # no hint where the command takes no checkpoint (it raised StopIteration for quickstart)
    assert refused(["quickstart", "-c", str(tiny)]) == f"effvid quickstart: error: unrecognized arguments: -c {tiny}"
    # the checkpoint as stream's SOURCE: "give exactly one of --checkpoint PATH or --model NAME"
    assert main(["stream", str(tiny)]) == 2
    assert _last_error(capsys) == (
        f"effvid stream: error: {tiny} is a weights file, not a video: stream takes the checkpoint with "
        f"--checkpoint, and SOURCE is a video, a folder of videos or a camera (effvid stream VIDEO "
        f"--checkpoint {tiny})")


# 11 -----------------------------------------------------------------------------------------


def test_frames_in_the_other_channel_layout_are_named_as_such(tmp_path, one_thread):
    import numpy as np

    from effvid.models.online import OnlineRecognizer
    from effvid.stream import preprocess_frame

    torch.manual_seed(0)
    model = effvid.create_model("tsm_resnet_tiny", num_classes=2, num_segments=4,
                                shift_direction="causal").eval()
    to_first = "channels last (..., H, W, 3), and this takes channels first (..., 3, H, W): x.movedim(-1, -3) " \
               "(numpy: np.moveaxis(x, -1, -3)) moves them"
    # a clip as a decoder gives it, (N, T, H, W, 3): a conv's "expected input to have 3 channels"
    with pytest.raises(ValueError) as e:
        model(torch.rand(1, 4, 32, 32, 3))
    assert str(e.value) == f"expected video of shape (N, T, 3, H, W), got (1, 4, 32, 32, 3): {to_first}"
    # a 3D CNN's (N, 3, T, H, W): "this TSM takes clips of 4 frames, got 3"
    with pytest.raises(ValueError) as e:
        model(torch.rand(2, 3, 4, 32, 32))
    assert str(e.value) == ("expected video of shape (N, T, 3, H, W), got (2, 3, 4, 32, 32): this looks like "
                            "(N, 3, T, H, W), channels before frames; x.transpose(1, 2) makes it (N, T, 3, H, W)")
    online = OnlineRecognizer.from_model(model)
    with pytest.raises(ValueError) as e:
        online.step(torch.rand(32, 32, 3))
    assert str(e.value) == f"expected a frame (3, H, W) or (B, 3, H, W), got (32, 32, 3): {to_first}"
    # and the other way round: stream's preprocessing takes a decoded RGB frame (H, W, 3)
    with pytest.raises(ValueError) as e:
        preprocess_frame(np.zeros((3, 48, 64), np.uint8), 32)
    assert str(e.value) == ("expected an RGB frame (H, W, 3), got (3, 48, 64): channels first (..., 3, H, W), "
                            "and this takes channels last (..., H, W, 3): x.movedim(-3, -1) (numpy: "
                            "np.moveaxis(x, -3, -1)) moves them")
    pytest.importorskip("onnxruntime")
    from effvid.export import OnnxOnlineRunner, export_offline, export_online, run_offline

    export_online(model, tmp_path / "m.online.onnx", height=32, exporter="torchscript")
    export_offline(model, tmp_path / "m.offline.onnx", height=32, exporter="torchscript")
    with pytest.raises(ValueError) as e:
        OnnxOnlineRunner(tmp_path / "m.online.onnx").step(np.zeros((32, 32, 3), np.float32))
    assert str(e.value) == f"expected a frame (3, 32, 32) or (B, 3, 32, 32), got (32, 32, 3): {to_first}"
    with pytest.raises(ValueError) as e:
        run_offline(tmp_path / "m.offline.onnx", np.zeros((1, 4, 32, 32, 3), np.float32))
    assert str(e.value) == (f"{tmp_path / 'm.offline.onnx'} takes video (N, 4, 3, 32, 32) for any N, got "
                            f"(1, 4, 32, 32, 3): {to_first}")


# 12 -----------------------------------------------------------------------------------------


def test_a_misspelt_model_name_or_argument_gets_a_suggestion():
    with pytest.raises(ValueError) as e:
        effvid.create_model("tsm_resnet5")
    assert str(e.value).startswith("unknown model 'tsm_resnet5'; did you mean 'tsm_resnet50'? (available: "
                                   "tsm_mobilenet_v2, ")
    # it said "build_recognizer() got an unexpected keyword argument 'num_segmnts'"
    with pytest.raises(TypeError) as e:
        effvid.create_model("tsm_resnet_tiny", num_segmnts=4)
    assert str(e.value) == ("tsm_resnet_tiny got an unexpected keyword argument 'num_segmnts'; did you "
                            "mean 'num_segments'?")
    with pytest.raises(TypeError) as e:
        effvid.create_model("tsn_resnet_tiny", pretrained=True)
    assert str(e.value).startswith("tsn_resnet_tiny got an unexpected keyword argument 'pretrained' (it takes "
                                   "num_classes, num_segments, ")
    from effvid.errors import did_you_mean

    assert did_you_mean("tsm_resnet5", effvid.models.list_models()) == "did you mean 'tsm_resnet50'?"
    assert did_you_mean("vgg16", effvid.models.list_models()) == ""



def test_a_misspelt_config_key_gets_a_suggestion(data, tmp_path, capsys):
    # "unknown config keys: learning_rate", and nothing more; difflib finds lr too far from it,
    # so its words' initials are tried too, and a key spelt as its flag (lr-steps) is matched
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"learning_rate": 0.1, "lr-steps": [3], "bogus": 1}))
    assert main(_train(data, tmp_path, "--config", str(config))) == 2
    assert capsys.readouterr().err == (
        f"effvid train: error: config file {str(config)!r}: unknown config keys: bogus, learning_rate (did you "
        "mean 'lr'?), lr-steps (did you mean 'lr_steps'?)\n")


# 13 -----------------------------------------------------------------------------------------


def test_a_non_positive_scale_size_is_refused_as_the_flag(data, tmp_path, capsys):
    # --scale-size 0 trained a model (0 read as "not given"), -1 failed in the first validation
    for value in ("0", "-1"):
        assert main(_train(data, tmp_path, "--scale-size", value)) == 2
        out, err = capsys.readouterr()
        assert err == f"effvid train: error: argument --scale-size: must be >= 1, got {value}\n"
        assert "data:" not in out and not (tmp_path / "run").exists()
    # below the crop: "scale_size (16) must be >= size (32)", by the config names, after the data scan
    assert main(_train(data, tmp_path, "--scale-size", "16")) == 2
    out, err = capsys.readouterr()
    assert err == "effvid train: error: argument --scale-size: must be at least the crop size (32), got 16\n"
    assert "data:" not in out
    # the other settings a reason names are said as their flags too ("the folder of val_data's videos")
    assert main(_train(data, tmp_path, "--val-data-root", str(data))) == 2
    assert capsys.readouterr().err == (
        f"effvid train: error: argument --val-data-root: it gives the folder of --val-data's videos, and "
        "there is no --val-data (without it the validation videos are part of data, found with "
        f"--data-root), got {data}\n")
    # a config file's value keeps its config name
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"scale_size": 0}))
    assert main(_train(data, tmp_path, "--config", str(config))) == 2
    assert capsys.readouterr().err == (f"effvid train: error: config file {str(config)!r}: bad config value "
                                       "scale_size=0: must be >= 1\n")


# 14 -----------------------------------------------------------------------------------------


def test_a_run_folder_given_for_a_checkpoint_names_its_weights(data, video, tiny, tmp_path, capsys):
    # train --init-weights, stream, convert and export said "checkpoint not found" of a folder
    # that is there; predict and eval named the weights in it
    import shutil

    run = tmp_path / "myrun"
    run.mkdir()
    shutil.copy(tiny, run / "best.safetensors")
    said = f"{run} is a folder: give a weights file such as {run / 'best.safetensors'}"
    for argv in (_train(data, tmp_path, "--init-weights", str(run)),
                 ["stream", str(video), "-c", str(run)],
                 ["convert", str(run), str(tmp_path / "x.safetensors")],
                 ["export", "-c", str(run), "--output", str(tmp_path / "exported")],
                 ["predict", str(video), "-c", str(run)]):
        assert main(argv) == 2, argv
        assert _last_error(capsys) == f"effvid {argv[0]}: error: {said}", argv
    # a folder without them is still named as a folder
    assert main(["stream", str(video), "-c", str(tmp_path)]) == 2
    assert _last_error(capsys) == f"effvid stream: error: {tmp_path} is a folder: give a weights file"


# 15 -----------------------------------------------------------------------------------------


def test_a_video_or_an_onnx_export_given_for_weights_is_named_as_such(data, video, tmp_path, capsys):
    # "is not a readable PyTorch checkpoint (...): Unsupported operand 0", or "damaged, or not a
    # safetensors file (header too large)"
    from effvid.export.onnx import export_offline

    onnx = tmp_path / "tiny.offline.onnx"
    export_offline(effvid.create_model("tsm_resnet_tiny", num_classes=2, num_segments=4).eval(), onnx,
                   height=32, exporter="torchscript")
    is_video = f"{video} is a video, not a weights file (an effvid checkpoint is a .safetensors file, such as a run's best.safetensors)"
    is_onnx = (f"{onnx} is an ONNX export, not a weights file: ONNX Runtime runs it (effvid stream --checkpoint "
               "takes an online one); the other commands take the .safetensors it was exported from")
    for argv, said in ((["info", str(video)], is_video),
                       (["predict", str(video), "-c", str(video)], is_video),
                       (["convert", str(video), str(tmp_path / "x.safetensors")], is_video),
                       (_train(data, tmp_path, "--imagenet-weights", str(video)), is_video),
                       (["export", "-c", str(onnx), "--output", str(tmp_path / "out")], is_onnx),
                       (["eval", str(data), "-c", str(onnx)], is_onnx),
                       (_train(data, tmp_path, "--init-weights", str(onnx)), is_onnx)):
        assert main(argv) == 2, argv
        assert _last_error(capsys) == f"effvid {argv[0]}: error: {said}", argv
