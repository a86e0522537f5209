"""Loading original TSM release checkpoints (effvid.models.tsm_checkpoint).

The original-format files are built here from freshly initialised effvid models by an explicit
renaming written independently of the loader (effvid -> original, the opposite direction), and
saved the way the original training script saves them.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import effvid
from effvid.errors import BadValue
from effvid.models.tsm_checkpoint import (
    convert_tsm_checkpoint,
    inspect_tsm_checkpoint,
    load_tsm_checkpoint,
    tsm_init_state_dict,
)
from effvid.models.weights import load_model

# ----------------------------------------------------------------------------------------------
# effvid -> original renaming (independent of the loader's mapping)
# ----------------------------------------------------------------------------------------------

# torchvision/effvid MobileNetV2 InvertedResidual sub-module path -> original index
_MBV2_EXPANSION_TO_ORIG = [("conv.0.0.", "conv.0."), ("conv.0.1.", "conv.1."),
                           ("conv.1.0.", "conv.3."), ("conv.1.1.", "conv.4."),
                           ("conv.2.", "conv.6."), ("conv.3.", "conv.7.")]
_MBV2_DW_FIRST_TO_ORIG = [("conv.0.0.", "conv.0."), ("conv.0.1.", "conv.1."),
                          ("conv.1.", "conv.3."), ("conv.2.", "conv.4.")]


def _original_key(effvid_key: str) -> str:
    if effvid_key.startswith("fc."):
        return "module.new_fc." + effvid_key[3:]
    assert effvid_key.startswith("backbone.")
    rest = effvid_key[len("backbone."):]
    m = re.match(r"features\.(\d+)\.(conv\..*)$", rest)
    if m:
        block, sub = int(m.group(1)), m.group(2)
        table = _MBV2_DW_FIRST_TO_ORIG if block == 1 else _MBV2_EXPANSION_TO_ORIG
        for ours, theirs in table:
            if sub.startswith(ours):
                sub = theirs + sub[len(ours):]
                break
        else:
            raise AssertionError(f"no original name for {effvid_key}")
        rest = f"features.{block}.{sub}"
    return "module.base_model." + rest


def _randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial values everywhere (BN statistics and the classifier too) so that any wrong
    mapping shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(7)
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith(("running_mean", "bias")):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif name.endswith("weight") and t.dim() == 1:  # BN scale
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g) * (2.0 / fan_in) ** 0.5)


def _save_original(model, path, *, legacy=False, best_prec1=None, extra_keys=None, drop=()):
    state = {_original_key(k): v.clone() for k, v in model.state_dict().items()
             if not any(k.endswith(d) for d in drop)}
    state.update(extra_keys or {})
    ckpt = {
        "epoch": 50,
        "arch": "resnet50",
        "state_dict": state,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "momentum": 0.9, "params": [0, 1]}]},
        "best_prec1": np.float64(74.1) if best_prec1 is None else best_prec1,
    }
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    return path


def _clip(t: int, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(2, t, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _assert_same_outputs(src, loaded, t):
    src.eval()
    loaded.eval()
    x = _clip(t)
    with torch.no_grad():
        assert torch.equal(src(x), loaded(x))


# ----------------------------------------------------------------------------------------------
# Loading each supported layout
# ----------------------------------------------------------------------------------------------


def test_resnet50_residual_shift_config_from_keys_and_name(tmp_path):
    src = effvid.create_model("tsm_resnet50", num_classes=7, num_segments=4, shift_div=4)
    _randomise(src)
    path = _save_original(src, tmp_path / "TSM_something_RGB_resnet50_shift4_blockres_avg_segment4_e50.pth")
    model = load_tsm_checkpoint(path)
    info = model.checkpoint_info
    assert (info.arch, info.shift, info.shift_place, info.num_classes) == ("resnet50", True, "residual", 7)
    assert (info.shift_div, info.num_segments) == (4, 4)
    assert info.sources["arch"] == "keys" and info.sources["num_segments"] == "file name"
    assert info.sources["shift_div"] == "file name"
    assert info.dataset == "something" and info.epoch == 50 and info.best_prec1 == pytest.approx(74.1)
    assert model.config["name"] == "tsm_resnet50"
    assert not model.training
    _assert_same_outputs(src, model, 4)


def test_resnet18_inplace_legacy_format_and_renamed_file(tmp_path):
    src = effvid.create_model("tsm_resnet18", num_classes=5, num_segments=4, shift_place="inplace")
    _randomise(src, seed=3)
    assert any(".net.conv1." in k for k in src.state_dict())  # in-place: layerX.i.net.conv1
    release = _save_original(src, tmp_path / "TSM_kinetics_RGB_resnet18_shift8_block_avg_segment4_e50.pth",
                             legacy=True, best_prec1=torch.tensor(70.5))
    model = load_tsm_checkpoint(release)
    assert model.checkpoint_info.shift_place == "inplace"
    assert model.checkpoint_info.best_prec1 == pytest.approx(70.5)
    _assert_same_outputs(src, model, 4)

    # Keys first: a meaningless name loads the same network; only segments / fold_div fall back
    # to the defaults (8/8) or the caller.
    renamed = tmp_path / "weights.bin"
    renamed.write_bytes(release.read_bytes())
    info = inspect_tsm_checkpoint(renamed)
    assert (info.arch, info.shift, info.shift_place, info.num_classes) == ("resnet18", True, "inplace", 5)
    assert (info.num_segments, info.shift_div) == (8, 8)
    assert info.sources["num_segments"] == "default"
    model = load_tsm_checkpoint(renamed, num_segments=4)
    assert model.checkpoint_info.sources["num_segments"] == "caller"
    _assert_same_outputs(src, model, 4)


def test_mobilenet_v2_original_index_layout(tmp_path):
    src = effvid.create_model("tsm_mobilenet_v2", num_classes=5, num_segments=4)
    _randomise(src, seed=5)
    path = _save_original(src, tmp_path / "TSM_something_RGB_mobilenetv2_shift8_blockres_avg_segment4_e25.pth")
    keys = torch.load(path, weights_only=False)["state_dict"].keys()  # our own file
    # the original layout, as written by the independent renaming above
    assert "module.base_model.features.1.conv.3.weight" in keys
    assert "module.base_model.features.3.conv.0.net.weight" in keys
    assert "module.base_model.features.2.conv.0.weight" in keys  # no residual: not shifted
    assert "module.base_model.features.2.conv.7.running_var" in keys
    model = load_tsm_checkpoint(path)
    info = model.checkpoint_info
    assert (info.arch, info.shift_place, info.num_segments) == ("mobilenet_v2", "residual", 4)
    _assert_same_outputs(src, model, 4)


def test_tsn_checkpoint_and_missing_num_batches_tracked(tmp_path):
    src = effvid.create_model("tsn_resnet18", num_classes=3, num_segments=5)
    _randomise(src, seed=7)
    # checkpoints of old PyTorch versions have no num_batches_tracked
    path = _save_original(src, tmp_path / "TSN_kinetics_RGB_resnet18_avg_segment5_e50.pth",
                          drop=("num_batches_tracked",))
    model = load_tsm_checkpoint(path)
    info = model.checkpoint_info
    assert (info.shift, info.shift_place, info.num_segments, info.arch) == (False, None, 5, "resnet18")
    assert model.config["name"] == "tsn_resnet18"
    _assert_same_outputs(src, model, 5)
    with pytest.raises(ValueError, match="TSN checkpoint"):
        load_tsm_checkpoint(path, shift_place="inplace")


def test_convert_to_safetensors(tmp_path):
    src = effvid.create_model("tsm_resnet18", num_classes=3, num_segments=4)
    _randomise(src, seed=11)
    path = _save_original(src, tmp_path / "TSM_ucf_RGB_resnet18_shift8_blockres_avg_segment4_e25_dense.pth")
    dst = tmp_path / "out" / "tsm_r18.safetensors"
    info = convert_tsm_checkpoint(path, dst, classes=["a", "b", "c"])
    assert info.dense and info.num_segments == 4
    model, meta = load_model(dst)
    assert meta["classes"] == ["a", "b", "c"]
    assert meta["extra"]["converted_from"] == path.name
    _assert_same_outputs(src, model, 4)
    with pytest.raises(ValueError, match="2 class names"):
        convert_tsm_checkpoint(path, tmp_path / "x.safetensors", classes=["a", "b"])


def test_convert_command(tmp_path, capsys):
    from effvid.cli import main

    src = effvid.create_model("tsm_resnet18", num_classes=3, num_segments=4)
    _randomise(src, seed=12)
    path = _save_original(src, tmp_path / "TSM_ucf_RGB_resnet18_shift8_blockres_avg_segment4_e25_dense.pth")
    (tmp_path / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n3 BabyCrawling\n")
    dst = tmp_path / "r18.safetensors"
    assert main(["convert", str(path), str(dst), "--classes", str(tmp_path / "classInd.txt")]) == 0
    assert capsys.readouterr().out == (f"wrote {dst}: tsm_resnet18, 3 classes, 4 segments, shift 1/8 "
                                       "residual, dense sampling\n")
    model, meta = load_model(dst)
    assert meta["classes"] == ["ApplyEyeMakeup", "Archery", "BabyCrawling"]
    assert meta["extra"]["sampling"] == "dense"
    _assert_same_outputs(src, model, 4)
    # an existing output is kept unless --overwrite; a segment count the name does not say is given
    assert main(["convert", str(path), str(dst)]) == 2
    assert f"{dst} exists; --overwrite replaces it" in capsys.readouterr().err
    renamed = tmp_path / "my_model.pth"
    path.rename(renamed)
    assert main(["convert", str(renamed), str(dst), "--overwrite", "--num-segments", "4"]) == 0
    assert "4 segments" in capsys.readouterr().out and load_model(dst)[1].get("classes") is None
    assert main(["convert", str(tmp_path / "missing.pth"), str(dst)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["convert", str(renamed), str(tmp_path / "x.pth")]) == 2
    assert "must be a .safetensors file" in capsys.readouterr().err


def test_convert_says_1_segment_and_1_class_name(tmp_path, capsys):
    # "1 segments", "1 class names given"
    from effvid.cli import main

    src = effvid.create_model("tsm_resnet18", num_classes=3, num_segments=1)
    path = _save_original(src, tmp_path / "TSM_ucf_RGB_resnet18_shift8_blockres_avg_segment1_e25.pth")
    dst = tmp_path / "r18.safetensors"
    assert main(["convert", str(path), str(dst)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {dst}: tsm_resnet18, 3 classes, 1 segment, shift 1/8 ")
    with pytest.raises(ValueError, match="^1 class name given but the checkpoint has 3 classes$"):
        convert_tsm_checkpoint(path, tmp_path / "x.safetensors", classes=["a"])
    # a class file of the wrong length is named (it was "2 class names given but ...")
    (tmp_path / "cls2.txt").write_text("a\nb\n")
    assert main(["convert", str(path), str(tmp_path / "x.safetensors"), "--classes", str(tmp_path / "cls2.txt")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"effvid convert: error: 2 class names in {tmp_path / 'cls2.txt'} but the checkpoint has 3 classes")
    # it said "class file not found: '/dev/null'", and of a folder too
    for given, what in (("/dev/null", "not a regular file (a character device)"), (tmp_path, "a folder, not a class file")):
        assert main(["convert", str(path), str(tmp_path / "x.safetensors"), "--classes", str(given)]) == 2
        assert capsys.readouterr().err.strip() == f"effvid convert: error: class file {str(given)!r} is {what}"
    assert not (tmp_path / "x.safetensors").exists()


def test_convert_reads_class_files_and_keeps_dense_sampling(tmp_path):
    from effvid.data import VideoSample
    from effvid.inference import load_recognizer, test_dataset

    src = effvid.create_model("tsn_resnet18", num_classes=3, num_segments=4)
    dense = _save_original(src, tmp_path / "TSN_kinetics_RGB_resnet18_avg_segment4_e100_dense.pth")
    (tmp_path / "classInd.txt").write_text("1 ApplyEyeMakeup\r\n2 Archery\r\n3 BabyCrawling\r\n")
    convert_tsm_checkpoint(dense, tmp_path / "dense.safetensors", classes=tmp_path / "classInd.txt")
    model, meta = load_recognizer(tmp_path / "dense.safetensors")
    # classInd.txt's numbers are not part of the names (they were: "1 ApplyEyeMakeup")
    assert meta["classes"] == ["ApplyEyeMakeup", "Archery", "BabyCrawling"]
    # a dense model is evaluated on dense clips (it was evaluated on segment clips)
    video = [VideoSample("v.mp4", 0)]
    assert test_dataset(video, meta, num_segments=4).sampling == "dense"
    plain = _save_original(src, tmp_path / "TSN_kinetics_RGB_resnet18_avg_segment4_e100.pth")
    convert_tsm_checkpoint(plain, tmp_path / "plain.safetensors")
    _, meta = load_recognizer(tmp_path / "plain.safetensors")
    assert test_dataset(video, meta, num_segments=4).sampling == "segment"


def test_convert_records_that_something_something_was_trained_without_flips(tmp_path):
    # the original's main.py turns flips off for Something-Something and Jester: their 10-crop
    # views are mirrored, which effvid eval notes
    from effvid.commands.views import mirrored_views_note

    src = effvid.create_model("tsn_resnet18", num_classes=3, num_segments=4)
    for name, flip in (("TSM_somethingv2_RGB_resnet18_avg_segment4_e45.pth", False),
                       ("TSM_kinetics_RGB_resnet18_avg_segment4_e50.pth", True),
                       ("renamed.pth", None)):
        dst = tmp_path / (name + ".safetensors")
        convert_tsm_checkpoint(_save_original(src, tmp_path / name), dst)
        meta = load_model(dst)[1]
        assert meta["extra"].get("flip") is flip
        note = mirrored_views_note(str(dst), meta, 10)
        assert (note is not None) == (flip is False)
        assert mirrored_views_note(str(dst), meta, 3) is None


def test_fine_tune_from_original_checkpoint(tmp_path):
    """effvid train --init-weights X.pth: the backbone of the release file, a new classifier."""
    from effvid.training.init_weights import load_init_weights

    src = effvid.create_model("tsm_resnet18", num_classes=400, num_segments=8)
    _randomise(src, seed=13)
    path = _save_original(src, tmp_path / "TSM_kinetics_RGB_resnet18_shift8_blockres_avg_segment8_e50.pth")
    model = effvid.create_model("tsm_resnet18", num_classes=3, num_segments=4)
    fresh_fc = model.fc.weight.clone()
    load_init_weights(model, str(path), ["a", "b", "c"], "tsm_resnet18")
    released = src.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(value, released[key]), key
    assert torch.equal(model.fc.weight, fresh_fc)
    # another architecture, placement or fraction: the flags that fit the file
    for other, flags in [(dict(name="tsm_resnet34"), "--model tsm_resnet18"),
                         (dict(shift_place="inplace"), "--shift-place residual"),
                         (dict(shift_div=4), "--shift-div 8")]:
        kwargs = {"num_classes": 3, "num_segments": 4} | {k: v for k, v in other.items() if k != "name"}
        with pytest.raises(ValueError, match=rf"holds a tsm_resnet18, residual shift 1/8, .*: "
                                             rf"fine-tune it with {flags}$"):
            load_init_weights(effvid.create_model(other.get("name", "tsm_resnet18"), **kwargs),
                              str(path), ["a", "b", "c"], "x")
    # the Python loader, asked for other classes, says how to fine-tune
    with pytest.raises(ValueError, match=r"num_classes=3 disagrees .*tsm_init_state_dict\(path, model\)"):
        load_tsm_checkpoint(path, num_classes=3)


def test_commands_given_an_original_checkpoint_say_how_to_convert_it(tmp_path, capsys):
    from effvid.cli import main

    src = effvid.create_model("tsn_resnet18", num_classes=3, num_segments=4)
    for legacy in (False, True):
        path = _save_original(src, tmp_path / f"TSN_kinetics_RGB_resnet18_avg_segment4_{legacy}.pth", legacy=legacy)
        with pytest.raises(ValueError, match=r"is a PyTorch checkpoint, .*effvid convert"):
            load_model(path)
    # "not a readable safetensors file: ... header too large" was all eval and predict said
    assert main(["eval", str(tmp_path), "-c", str(path)]) == 2
    assert "effvid convert" in capsys.readouterr().err


def test_info_says_what_the_release_file_tells(tmp_path, capsys):
    from effvid.cli import main

    src = effvid.create_model("tsn_resnet18", num_classes=3, num_segments=4)
    path = _save_original(src, tmp_path / "TSN_kinetics_RGB_resnet18_avg_segment4_e100_dense.pth")
    assert main(["info", str(path), "--size", "32"]) == 0
    assert f"from         {path} (original TSM checkpoint: kinetics, epoch 50, best top-1 74.1%, " \
           "dense sampling)" in capsys.readouterr().out


def test_a_renamed_file_says_which_settings_were_assumed(tmp_path, capsys):
    """A renamed release file was built as 8 segments and shift 1/8 without a word: the weights
    cannot tell either (same shapes), and a model trained with shift 1/4 gives other logits."""
    from effvid.cli import main

    src = effvid.create_model("tsm_resnet18", num_classes=3, num_segments=4, shift_div=4)
    _randomise(src, seed=21)
    release = _save_original(src, tmp_path / "TSM_kinetics_RGB_resnet18_shift4_blockres_avg_segment4_e50.pth")
    renamed = tmp_path / "renamed.pth"
    renamed.write_bytes(release.read_bytes())
    note = ("note: the name renamed.pth does not give the number of segments or the shift fraction, "
            "which the weights cannot tell: assumed 8 segments and shift 1/8; if it was trained "
            "otherwise, give --num-segments N and --shift-div N")
    dst = tmp_path / "renamed.safetensors"
    assert main(["convert", str(renamed), str(dst)]) == 0
    assert capsys.readouterr().out == (f"wrote {dst}: tsm_resnet18, 3 classes, 8 segments, shift 1/8 "
                                       f"residual, segment sampling (classes numbered: --classes FILE "
                                       f"names them)\n{note}\n")
    # the guess computes something else, even on the right number of segments
    guessed = load_model(dst, num_segments=4)[0]
    src.eval()
    with torch.no_grad():
        assert not torch.allclose(guessed(_clip(4)), src(_clip(4)), atol=1e-3)
    # given, no note, and the network of the file
    assert main(["convert", str(renamed), str(dst), "--overwrite", "--num-segments", "4",
                 "--shift-div", "4"]) == 0
    assert "note" not in capsys.readouterr().out
    _assert_same_outputs(src, load_model(dst)[0], 4)
    # one of the two given: the other is named alone
    assert main(["convert", str(renamed), str(dst), "--overwrite", "--num-segments", "4"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        "note: the name renamed.pth does not give the shift fraction, which the weights cannot tell: "
        "assumed shift 1/8; if it was trained otherwise, give --shift-div N")
    # the release name gives both
    assert main(["convert", str(release), str(dst), "--overwrite"]) == 0
    assert "note" not in capsys.readouterr().out

    # effvid info: the same line, in --json too; its flags set them
    assert main(["info", str(renamed), "--size", "32"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == note and "shift 1/8 residual" in out
    assert main(["info", str(renamed), "--size", "32", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["note"] == note
    assert main(["info", str(renamed), "--size", "32", "--num-segments", "4", "--shift-div", "4"]) == 0
    out = capsys.readouterr().out
    assert "note" not in out and "shift 1/4 residual" in out and "1 x 4 x 3 x 32 x 32" in out
    assert main(["info", "tsm_resnet18", "--shift-div", "4"]) == 2
    assert "--shift-div applies to an original TSM .pth" in capsys.readouterr().err
    # a TSN has no shift, and its weights compute the same on any number of segments: nothing
    # was assumed that could be wrong
    tsn = _save_original(effvid.create_model("tsn_resnet18", num_classes=3), tmp_path / "tsn.pth")
    assert main(["info", str(tsn), "--size", "32"]) == 0
    assert "note" not in capsys.readouterr().out


def test_a_tsn_release_file_says_the_original_tested_it_on_8_segments(tmp_path, capsys):
    # TSM_kinetics_RGB_resnet50_avg_segment5_e50.pth converted to a 5-segment model, which eval
    # then used; the original README tests it with --test_segments=8
    from effvid.cli import main
    from effvid.training.init_weights import load_init_weights

    src = effvid.create_model("tsn_resnet18", num_classes=3, num_segments=5)
    _randomise(src, seed=17)
    path = _save_original(src, tmp_path / "TSM_kinetics_RGB_resnet18_avg_segment5_e50.pth")
    note = ("note: a TSN's weights do not depend on the number of segments (each frame is classified "
            "alone, and the clip's logits are their average); TSM_kinetics_RGB_resnet18_avg_segment5_e50.pth "
            "was trained on 5, and the original's results evaluate it on 8: give --num-segments 8 for those")
    dst = tmp_path / "tsn.safetensors"
    assert main(["convert", str(path), str(dst)]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [note]
    assert main(["info", str(path), "--size", "32"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == note
    assert main(["convert", str(path), str(dst), "--overwrite", "--num-segments", "8"]) == 0
    assert "note" not in capsys.readouterr().out
    # what the note says: per frame, the 8-segment model computes what the 5-segment one does
    eight, five = load_model(dst)[0], load_tsm_checkpoint(path)
    assert (eight.num_segments, five.num_segments) == (8, 5)
    clip = _clip(8)
    with torch.no_grad():
        assert torch.allclose(eight.frame_logits(clip)[:, :5], five.frame_logits(clip[:, :5]), atol=1e-5)
    # a TSM's segments do change what it computes: no such note
    tsm = _save_original(effvid.create_model("tsm_resnet18", num_classes=3, num_segments=5),
                         tmp_path / "TSM_kinetics_RGB_resnet18_shift8_blockres_avg_segment5_e50.pth")
    assert main(["convert", str(tsm), str(tmp_path / "tsm.safetensors")]) == 0
    assert "note" not in capsys.readouterr().out
    # fine-tuning a TSN from it on 8 segments: nothing to say about its 5
    line = load_init_weights(effvid.create_model("tsn_resnet18", num_classes=2, num_segments=8), str(path),
                             ["a", "b"], "tsn_resnet18")
    assert line == f"starting from {path}: the original TSM checkpoint's backbone, a new classifier for 2 classes"


def test_fine_tuning_from_a_release_file_names_what_differs_and_what_its_name_does_not_say(tmp_path):
    """--init-weights X.pth said nothing of the settings the file was trained with, where an
    effvid checkpoint's differences are named."""
    from effvid.training.init_weights import load_init_weights

    src = effvid.create_model("tsm_resnet18", num_classes=5, num_segments=8)
    path = _save_original(src, tmp_path / "TSM_kinetics_RGB_resnet18_shift8_blockres_avg_segment8_e50.pth")
    line = load_init_weights(effvid.create_model("tsm_resnet18", num_classes=3, num_segments=4),
                             str(path), ["a", "b", "c"], "tsm_resnet18")
    assert line == (f"starting from {path}: the original TSM checkpoint's backbone, a new classifier "
                    "for 3 classes; it was trained as num_segments 8 (this run: 4)")
    same = effvid.create_model("tsm_resnet18", num_classes=3, num_segments=8)
    assert load_init_weights(same, str(path), ["a", "b", "c"], "x").endswith("for 3 classes")
    # a causal (online) run from the bidirectional release file, as from an effvid checkpoint
    causal = effvid.create_model("tsm_resnet18", num_classes=3, num_segments=8, shift_direction="causal")
    assert load_init_weights(causal, str(path), ["a", "b", "c"], "x") == (
        f"starting from {path}: the original TSM checkpoint's backbone, a new classifier for 3 classes; "
        "it was trained as shift_direction bidirectional (this run: causal)")
    effvid_file = tmp_path / "bidirectional.safetensors"
    convert_tsm_checkpoint(path, effvid_file)
    assert load_init_weights(causal, str(effvid_file), ["a", "b", "c"], "x").endswith(
        "; it was trained as shift_direction bidirectional (this run: causal)")
    renamed = tmp_path / "weights.pth"
    renamed.write_bytes(path.read_bytes())
    line = load_init_weights(effvid.create_model("tsm_resnet18", num_classes=3, num_segments=4, shift_div=4),
                             str(renamed), ["a", "b", "c"], "x")
    assert line.endswith("a new classifier for 3 classes; its name does not say the number of segments "
                         "or the shift fraction it was trained with, which the weights cannot tell "
                         "(this run's: 4 segments and shift 1/4)")


# ----------------------------------------------------------------------------------------------
# Refusals
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def r18_state():
    torch.manual_seed(0)
    src = effvid.create_model("tsm_resnet18", num_classes=4)
    return {_original_key(k): v for k, v in src.state_dict().items()}


def _write(path, state):
    torch.save({"epoch": 1, "state_dict": state, "best_prec1": np.float64(1.0)}, path)
    return path


def test_corrupt_and_truncated_files(tmp_path, r18_state):
    bad = tmp_path / "TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth"
    bad.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        load_tsm_checkpoint(bad)
    good = _write(tmp_path / "good.pth", r18_state)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.pth is not a readable PyTorch checkpoint"):
        load_tsm_checkpoint(truncated)
    with pytest.raises(FileNotFoundError):
        load_tsm_checkpoint(tmp_path / "missing.pth")


CALLED = []


def _side_effect(*args):
    CALLED.append(args)
    return 0


class _Evil:
    def __reduce__(self):
        return (_side_effect, ("unpickled!",))


def test_arbitrary_class_is_refused(tmp_path, r18_state):
    path = tmp_path / "evil.pth"
    torch.save({"epoch": 1, "state_dict": r18_state, "best_prec1": _Evil()}, path)
    with pytest.raises(ValueError, match=r"evil\.pth: refused to load: .*_side_effect"):
        load_tsm_checkpoint(path)
    assert CALLED == []
    # numpy arrays (not scalars) are not on the allow-list either
    path = tmp_path / "array.pth"
    torch.save({"epoch": 1, "state_dict": r18_state, "best_prec1": np.array([1.0, 2.0])}, path)
    with pytest.raises(ValueError, match="array.pth: refused to load"):
        load_tsm_checkpoint(path)


def test_numpy1_scalar_path_is_allowed(tmp_path, r18_state):
    # Files written with numpy 1.x name numpy.core.multiarray.scalar (numpy 2: numpy._core).
    path = tmp_path / "np1.pth"
    torch.save({"epoch": 1, "state_dict": r18_state, "best_prec1": np.float64(3.5)}, path,
               _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    new = b"numpy.core.multiarray\nscalar"
    if b"numpy._core.multiarray\nscalar" in data:
        data = data.replace(b"numpy._core.multiarray\nscalar", new)
    assert new in data
    path.write_bytes(data)
    assert load_tsm_checkpoint(path).checkpoint_info.best_prec1 == 3.5


def test_unsupported_variants_named(tmp_path, r18_state):
    nl = dict(r18_state)
    nl["module.base_model.layer2.0.nl.g.weight"] = torch.zeros(64, 128, 1, 1, 1)
    path = _write(tmp_path / "TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e100_dense_nl.pth", nl)
    with pytest.raises(ValueError, match=r"_nl\.pth: non-local"):
        load_tsm_checkpoint(path)

    # TemporalPool wraps layer2 as a whole: layer2.net.0.conv1.net.weight
    tpool = {re.sub(r"^module\.base_model\.layer2\.", "module.base_model.layer2.net.", k): v
             for k, v in r18_state.items()}
    path = _write(tmp_path / "TSM_kinetics_RGB_resnet18_shift8_blockres_tpool_avg_segment8_e50.pth", tpool)
    with pytest.raises(ValueError, match=r"tpool_avg_segment8_e50\.pth: temporal-pooling \(_tpool\)"):
        load_tsm_checkpoint(path)

    flow = dict(r18_state)
    flow["module.base_model.conv1.weight"] = torch.zeros(64, 10, 7, 7)
    path = _write(tmp_path / "TSM_kinetics_Flow_resnet18_shift8_blockres_avg_segment8_e50.pth", flow)
    with pytest.raises(ValueError, match=r"Flow_resnet18.*\.pth: the first conv takes 10 input channels"):
        load_tsm_checkpoint(path)

    bninception = {"module.base_model.conv1_7x7_s2.weight": torch.zeros(64, 3, 7, 7),
                   "module.new_fc.weight": torch.zeros(400, 1024)}
    path = _write(tmp_path / "TSN_kinetics_RGB_BNInception_avg_segment3.pth", bninception)
    with pytest.raises(ValueError, match=r"BNInception_avg_segment3\.pth: unsupported architecture"):
        load_tsm_checkpoint(path)

    odd = {k: v for k, v in r18_state.items() if not k.startswith("module.base_model.layer3.1.")}
    path = _write(tmp_path / "odd.pth", odd)
    with pytest.raises(ValueError, match=r"odd\.pth: unknown ResNet variant \(basic blocks, \[2, 2, 1, 2\]"):
        load_tsm_checkpoint(path)


def test_strict_mapping_lists_keys(tmp_path, r18_state):
    extra = dict(r18_state)
    extra["module.base_model.fc.weight"] = torch.zeros(1000, 512)
    extra["module.consensus.bogus"] = torch.zeros(1)
    path = _write(tmp_path / "extra.pth", extra)
    with pytest.raises(ValueError, match=r"extra\.pth: cannot load strictly: 2 key\(s\).*base_model\.fc\.weight.*consensus\.bogus"):
        load_tsm_checkpoint(path)

    missing = {k: v for k, v in r18_state.items() if k != "module.base_model.layer1.0.bn2.weight"}
    path = _write(tmp_path / "missing.pth", missing)
    with pytest.raises(ValueError, match=r"not in the file: backbone\.layer1\.0\.bn2\.weight"):
        load_tsm_checkpoint(path)

    wrong = dict(r18_state)
    wrong["module.base_model.layer1.0.conv2.weight"] = torch.zeros(64, 64, 1, 1)
    path = _write(tmp_path / "wrong.pth", wrong)
    with pytest.raises(ValueError, match=r"shape mismatches: module\.base_model\.layer1\.0\.conv2\.weight"):
        load_tsm_checkpoint(path)

    path = _write(tmp_path / "ok.pth", r18_state)
    with pytest.raises(ValueError, match="num_classes=10 disagrees"):
        load_tsm_checkpoint(path, num_classes=10)
    # no DataParallel prefix is fine too
    bare = {k[len("module."):]: v for k, v in r18_state.items()}
    model = load_tsm_checkpoint(_write(tmp_path / "bare.pth", bare), dropout=0.8)
    assert model.checkpoint_info.num_classes == 4 and model.dropout.p == 0.8


@pytest.mark.parametrize("arch,classifier", [("resnet18", "fc"), ("mobilenet_v2", "classifier")])
def test_checkpoint_trained_without_dropout(tmp_path, arch, classifier):
    # With dropout 0 the original has no new_fc: the backbone's last layer is the classifier
    # (base_model.fc for ResNets, base_model.classifier for its MobileNetV2).
    src = effvid.create_model(f"tsm_{arch}", num_classes=4, num_segments=4)
    _randomise(src, seed=9)
    path = _save_original(src, tmp_path / f"TSM_kinetics_RGB_{arch.replace('_', '')}_shift8_blockres_avg_segment4_e50.pth")
    ckpt = torch.load(path, weights_only=False)  # our own file
    state = ckpt["state_dict"]
    for name in ("weight", "bias"):
        state[f"module.base_model.{classifier}.{name}"] = state.pop(f"module.new_fc.{name}")
    torch.save(ckpt, path)
    model = load_tsm_checkpoint(path)
    assert model.checkpoint_info.num_classes == 4
    _assert_same_outputs(src, model, 4)


# ----------------------------------------------------------------------------------------------
# Against the original forward: checkpoints in the original layout built from the architecture
# spec alone (not from an effvid model), and the original TSN/TSM forward written out with
# torch.nn.functional over those state dicts.
# ----------------------------------------------------------------------------------------------


def _bn(sd, p, c, g):
    sd[p + "weight"] = torch.rand(c, generator=g) + 0.5
    sd[p + "bias"] = torch.randn(c, generator=g) * 0.1
    sd[p + "running_mean"] = torch.randn(c, generator=g) * 0.1
    sd[p + "running_var"] = torch.rand(c, generator=g) + 0.5
    sd[p + "num_batches_tracked"] = torch.tensor(5)


def _conv(sd, key, shape, g):
    sd[key] = torch.randn(shape, generator=g) * (2.0 / (shape[1] * shape[2] * shape[3])) ** 0.5


_RESNET_SPEC = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet50": ("bottleneck", (3, 4, 6, 3)),
                "resnet101": ("bottleneck", (3, 4, 23, 3))}


def _resnet_ckpt(arch, place, classes, seed=0):
    """State dict as the original TSN(..., base_model=arch, is_shift=place is not None) saves it."""
    kind, blocks = _RESNET_SPEC[arch]
    g = torch.Generator().manual_seed(seed)
    exp = 4 if kind == "bottleneck" else 1
    n_round = 2 if blocks[2] >= 23 else 1
    sd = {}
    _conv(sd, "base_model.conv1.weight", (64, 3, 7, 7), g)
    _bn(sd, "base_model.bn1.", 64, g)
    inp = 64
    for s, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
        for i in range(n):
            stride = 2 if s > 1 and i == 0 else 1
            p = f"base_model.layer{s}.{i}."
            if place == "block":
                p += "net."
            c1 = p + ("conv1.net." if place == "blockres" and i % n_round == 0 else "conv1.")
            if kind == "bottleneck":
                _conv(sd, c1 + "weight", (planes, inp, 1, 1), g)
                _conv(sd, p + "conv2.weight", (planes, planes, 3, 3), g)
                _conv(sd, p + "conv3.weight", (planes * 4, planes, 1, 1), g)
                _bn(sd, p + "bn3.", planes * 4, g)
            else:
                _conv(sd, c1 + "weight", (planes, inp, 3, 3), g)
                _conv(sd, p + "conv2.weight", (planes, planes, 3, 3), g)
            _bn(sd, p + "bn1.", planes, g)
            _bn(sd, p + "bn2.", planes, g)
            if stride != 1 or inp != planes * exp:
                _conv(sd, p + "downsample.0.weight", (planes * exp, inp, 1, 1), g)
                _bn(sd, p + "downsample.1.", planes * exp, g)
            inp = planes * exp
    sd["new_fc.weight"] = torch.randn(classes, inp, generator=g) * 0.05
    sd["new_fc.bias"] = torch.randn(classes, generator=g) * 0.1
    return {"module." + k: v for k, v in sd.items()}


_MBV2_SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                 (6, 160, 3, 2), (6, 320, 1, 1)]


def _mbv2_blocks():
    inp, out = 32, []
    for t, c, n, s in _MBV2_SETTING:
        for i in range(n):
            out.append((inp, c, s if i == 0 else 1, t))
            inp = c
    return out  # features 1..17


def _mbv2_ckpt(shift, classes, seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    _conv(sd, "base_model.features.0.0.weight", (32, 3, 3, 3), g)
    _bn(sd, "base_model.features.0.1.", 32, g)
    for b, (inp, oup, stride, t) in enumerate(_mbv2_blocks(), start=1):
        p, hid = f"base_model.features.{b}.conv.", inp * t
        if t == 1:
            _conv(sd, p + "0.weight", (hid, 1, 3, 3), g)
            _bn(sd, p + "1.", hid, g)
            _conv(sd, p + "3.weight", (oup, hid, 1, 1), g)
            _bn(sd, p + "4.", oup, g)
            continue
        res = stride == 1 and inp == oup
        _conv(sd, p + ("0.net.weight" if shift and res else "0.weight"), (hid, inp, 1, 1), g)
        _bn(sd, p + "1.", hid, g)
        _conv(sd, p + "3.weight", (hid, 1, 3, 3), g)
        _bn(sd, p + "4.", hid, g)
        _conv(sd, p + "6.weight", (oup, hid, 1, 1), g)
        _bn(sd, p + "7.", oup, g)
    _conv(sd, "base_model.features.18.0.weight", (1280, 320, 1, 1), g)
    _bn(sd, "base_model.features.18.1.", 1280, g)
    sd["new_fc.weight"] = torch.randn(classes, 1280, generator=g) * 0.05
    sd["new_fc.bias"] = torch.randn(classes, generator=g) * 0.1
    return {"module." + k: v for k, v in sd.items()}


# The original forward, from its formulas (ops/temporal_shift.py, torchvision's ResNet as the
# original used it, archs/mobilenet_v2.py, TSN.forward in eval mode).

def _shift(x, t, div):
    """ops/temporal_shift.py TemporalShift.shift (the non-inplace version)."""
    nt, c, h, w = x.shape
    x = x.view(nt // t, t, c, h, w)
    fold = c // div
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]
    out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]
    out[:, :, 2 * fold:] = x[:, :, 2 * fold:]
    return out.view(nt, c, h, w)


def _bnf(x, sd, p):
    return F.batch_norm(x, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"],
                        sd[p + "bias"], False, 0.0, 1e-5)


def _ref_resnet(sd, x, t, div):
    sd = {k[len("module.base_model."):]: v for k, v in sd.items() if k.startswith("module.base_model.")}
    x = F.max_pool2d(F.relu(_bnf(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), sd, "bn1.")), 3, 2, 1)
    for s in range(1, 5):
        i = 0
        while any(k.startswith(f"layer{s}.{i}.") for k in sd):
            p = f"layer{s}.{i}."
            if any(k.startswith(p + "net.") for k in sd):  # in-place ("block"): whole input shifted
                p += "net."
                x = _shift(x, t, div)
            stride = 2 if s > 1 and i == 0 else 1
            if p + "conv1.net.weight" in sd:  # residual ("blockres"): only the branch
                w1, xin = sd[p + "conv1.net.weight"], _shift(x, t, div)
            else:
                w1, xin = sd[p + "conv1.weight"], x
            if p + "conv3.weight" in sd:
                y = F.relu(_bnf(F.conv2d(xin, w1), sd, p + "bn1."))
                y = F.relu(_bnf(F.conv2d(y, sd[p + "conv2.weight"], stride=stride, padding=1), sd, p + "bn2."))
                y = _bnf(F.conv2d(y, sd[p + "conv3.weight"]), sd, p + "bn3.")
            else:
                y = F.relu(_bnf(F.conv2d(xin, w1, stride=stride, padding=1), sd, p + "bn1."))
                y = _bnf(F.conv2d(y, sd[p + "conv2.weight"], padding=1), sd, p + "bn2.")
            idn = x
            if p + "downsample.0.weight" in sd:
                idn = _bnf(F.conv2d(x, sd[p + "downsample.0.weight"], stride=stride), sd, p + "downsample.1.")
            x = F.relu(y + idn)
            i += 1
    return x.mean(dim=(2, 3))


def _ref_mbv2(sd, x, t, div):
    sd = {k[len("module.base_model."):]: v for k, v in sd.items() if k.startswith("module.base_model.")}
    r6 = lambda z: z.clamp(0, 6)
    x = r6(_bnf(F.conv2d(x, sd["features.0.0.weight"], stride=2, padding=1), sd, "features.0.1."))
    for b, (inp, oup, stride, e) in enumerate(_mbv2_blocks(), start=1):
        p = f"features.{b}.conv."
        if e == 1:
            w = sd[p + "0.weight"]
            y = r6(_bnf(F.conv2d(x, w, stride=stride, padding=1, groups=w.shape[0]), sd, p + "1."))
            x = _bnf(F.conv2d(y, sd[p + "3.weight"]), sd, p + "4.")
            continue
        if p + "0.net.weight" in sd:
            y = F.conv2d(_shift(x, t, div), sd[p + "0.net.weight"])
        else:
            y = F.conv2d(x, sd[p + "0.weight"])
        y = r6(_bnf(y, sd, p + "1."))
        w = sd[p + "3.weight"]
        y = r6(_bnf(F.conv2d(y, w, stride=stride, padding=1, groups=w.shape[0]), sd, p + "4."))
        y = _bnf(F.conv2d(y, sd[p + "6.weight"]), sd, p + "7.")
        x = x + y if stride == 1 and inp == oup else y
    x = r6(_bnf(F.conv2d(x, sd["features.18.0.weight"]), sd, "features.18.1."))
    return x.mean(3).mean(2)


def _ref_tsn(sd, video, div, backbone):
    """TSN.forward in eval mode: frames through the backbone, (dropout = identity) new_fc,
    view (N, T, K), average consensus."""
    n, t = video.shape[:2]
    feats = backbone(sd, video.reshape(n * t, *video.shape[2:]), t, div)
    logits = F.linear(feats, sd["module.new_fc.weight"], sd["module.new_fc.bias"])
    return logits.view(n, t, -1).mean(dim=1)


@pytest.mark.parametrize("name,arch,place,t,div", [
    ("TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth", "resnet50", "blockres", 8, 8),
    ("TSM_kinetics_RGB_resnet101_shift8_blockres_avg_segment2_e50_dense.pth", "resnet101", "blockres", 2, 8),
    ("TSM_kinetics_RGB_resnet18_shift4_block_avg_segment4_e50.pth", "resnet18", "block", 4, 4),
    ("TSM_kinetics_RGB_resnet18_avg_segment3_e50.pth", "resnet18", None, 3, 8),
])
def test_resnet_matches_original_forward(tmp_path, name, arch, place, t, div):
    sd = _resnet_ckpt(arch, place, classes=6)
    path = tmp_path / name
    torch.save({"epoch": 50, "arch": arch, "state_dict": sd, "best_prec1": np.float64(70.0)}, path)
    model = load_tsm_checkpoint(path)
    video = torch.randn(1, t, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(video)
        ref = _ref_tsn(sd, video, div, _ref_resnet)
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())


def test_mobilenet_v2_matches_original_forward(tmp_path):
    name, t = "TSM_something_RGB_mobilenetv2_shift8_blockres_avg_segment8_e25.pth", 8
    sd = _mbv2_ckpt(True, classes=6)
    path = tmp_path / name
    torch.save({"epoch": 25, "state_dict": sd}, path)
    model = load_tsm_checkpoint(path)
    video = torch.randn(1, t, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = model(video)
        ref = _ref_tsn(sd, video, 8, _ref_mbv2)
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())


def test_a_shift_div_that_the_original_bidirectional_shift_cannot_have_is_refused(tmp_path, capsys):
    # 1 was accepted: 1/1 to the past and 1/1 to the future of the same channels
    from effvid.cli import main

    src = effvid.create_model("tsm_resnet18", num_classes=3, num_segments=4, shift_div=4)
    release = _save_original(src, tmp_path / "TSM_kinetics_RGB_resnet18_shift4_blockres_avg_segment4_e50.pth")
    for argv in (["convert", str(release), str(tmp_path / "x.safetensors"), "--shift-div", "1"],
                 ["info", str(release), "--size", "32", "--shift-div", "1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "shift_div must be >= 2 for the original TSM's bidirectional shift, got 1" in err, err
        assert not (tmp_path / "x.safetensors").exists()


# ----------------------------------------------------------------------------------------------
# The online demo's checkpoint (mobilenetv2_jester_online.pth.tar): the bare state dict of the
# demo's own MobileNetV2 (online_demo/mobilenet_v2_tsm.py), written out here from its structure:
# flat Sequentials in each block, a plain Linear classifier, and in the blocks it shifts the
# first 1/8 of the input's channels replaced by the previous frame's, passed in and out as
# buffers.
# ----------------------------------------------------------------------------------------------


def _conv_bn_relu6(inp, oup, kernel, stride):
    return torch.nn.Sequential(torch.nn.Conv2d(inp, oup, kernel, stride, kernel // 2, bias=False),
                               torch.nn.BatchNorm2d(oup), torch.nn.ReLU6())


class _DemoBlock(torch.nn.Module):
    """The demo's InvertedResidual, or with ``shift`` its InvertedResidualWithShift."""

    def __init__(self, inp, oup, stride, expand, shift):
        super().__init__()
        hid = inp * expand
        self.residual, self.shift = stride == 1 and inp == oup, shift
        dw = [torch.nn.Conv2d(hid, hid, 3, stride, 1, groups=hid, bias=False), torch.nn.BatchNorm2d(hid),
              torch.nn.ReLU6()]
        pw_linear = [torch.nn.Conv2d(hid, oup, 1, bias=False), torch.nn.BatchNorm2d(oup)]
        pw = [] if expand == 1 else [torch.nn.Conv2d(inp, hid, 1, bias=False), torch.nn.BatchNorm2d(hid),
                                      torch.nn.ReLU6()]
        self.conv = torch.nn.Sequential(*pw, *dw, *pw_linear)

    def forward(self, x, buffer=None):
        if not self.shift:
            return x + self.conv(x) if self.residual else self.conv(x)
        fold = x.shape[1] // 8
        return x + self.conv(torch.cat((buffer, x[:, fold:]), dim=1)), x[:, :fold]


class _DemoMobileNetV2(torch.nn.Module):
    SHIFTED = {2, 4, 5, 7, 8, 9, 11, 12, 14, 15}  # the demo's shift_block_idx, counting blocks from 0

    def __init__(self, classes):
        super().__init__()
        blocks = [(inp, oup, stride, t) for inp, oup, stride, t in _mbv2_blocks()]
        self.features = torch.nn.ModuleList(
            [_conv_bn_relu6(3, 32, 3, 2)]
            + [_DemoBlock(*b, shift=i in self.SHIFTED) for i, b in enumerate(blocks)]
            + [_conv_bn_relu6(320, 1280, 1, 1)])
        self.classifier = torch.nn.Linear(1280, classes)

    def forward(self, x, *buffers):
        buffers, out = list(buffers), []
        for f in self.features:
            if getattr(f, "shift", False):
                x, kept = f(x, buffers.pop(0))
                out.append(kept)
            else:
                x = f(x)
        return (self.classifier(x.mean(3).mean(2)), *out)


def _demo_zero_buffers(demo, frame):
    """The demo's first-frame buffers for frames shaped like ``frame``: zeros, each with 1/8 of
    its block's input channels, at that block's resolution (a dry run finds the sizes)."""
    buffers, x = [], frame
    for f in demo.features:
        if getattr(f, "shift", False):
            buffers.append(torch.zeros(x.shape[0], x.shape[1] // 8, *x.shape[2:]))
            x = f(x, buffers[-1])[0]
        else:
            x = f(x)
    return buffers


def test_the_online_demo_checkpoint_is_a_causal_online_model(tmp_path, capsys, one_thread):
    from effvid.cli import main
    from effvid.models.online import OnlineRecognizer
    from effvid.training.init_weights import load_init_weights

    demo = _DemoMobileNetV2(27).eval()
    _randomise(demo, seed=4)
    path = tmp_path / "mobilenetv2_jester_online.pth.tar"
    torch.save(demo.state_dict(), path)  # as the demo loads it: a bare state dict
    assert {"features.3.conv.0.weight", "features.1.conv.3.weight", "classifier.weight"} <= demo.state_dict().keys()

    model = load_tsm_checkpoint(path)
    info = model.checkpoint_info
    assert (info.model_name, info.num_classes, info.shift_place, info.shift_div) == ("tsm_mobilenet_v2", 27, "residual", 8)
    assert info.online_demo and model.config["shift_direction"] == "causal"
    online = OnlineRecognizer.from_model(model)
    assert online.num_caches == 10

    g = torch.Generator().manual_seed(3)
    frames = [torch.randn(2, 3, 64, 64, generator=g) for _ in range(8)]  # a clip of the default 8 segments
    with torch.no_grad():
        zeros = _demo_zero_buffers(demo, frames[0])  # as the demo starts a stream
        buffers, reference, without_past = zeros, [], []
        for x in frames:
            logits, *buffers = demo(x, *buffers)
            reference.append(logits)
            without_past.append(demo(x, *zeros)[0])
        ours = [online.step(x) for x in frames]
        offline = model.frame_logits(torch.stack(frames, dim=1))  # the same causal model on the clip
    for t, (a, b) in enumerate(zip(ours, reference)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item()), t
        assert torch.allclose(offline[:, t], b, rtol=1e-4, atol=1e-4 * b.abs().max().item()), t
    # the control: the previous frame's channels change the logits from the second frame on
    assert not torch.allclose(reference[1], without_past[1], atol=1e-3)

    # effvid convert: a causal model for stream and export, Jester's (trained without flips)
    dst = tmp_path / "jester_online.safetensors"
    assert main(["convert", str(path), str(dst)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"wrote {dst}: tsm_mobilenet_v2, 27 classes, 8 segments, shift 1/8 residual causal, segment "
        "sampling (classes numbered: --classes FILE names them)")
    converted, meta = OnlineRecognizer.from_checkpoint(dst)
    assert meta["extra"]["flip"] is False and meta["extra"]["dataset"] == "jester"
    with torch.no_grad():
        assert torch.allclose(converted.run(torch.stack(frames, 1)), torch.stack(ours, 1), atol=1e-5)

    # fine-tuning from it: the backbone, into a causal model
    student = effvid.create_model("tsm_mobilenet_v2", num_classes=3, shift_direction="causal")
    load_init_weights(student, str(path), ["a", "b", "c"], "tsm_mobilenet_v2")
    assert torch.equal(student.backbone.features[3].conv[0][0].net.weight, demo.features[3].conv[0].weight)
    line = load_init_weights(effvid.create_model("tsm_mobilenet_v2", num_classes=3), str(path), ["a", "b", "c"], "x")
    assert "; it was trained as shift_direction causal (this run: bidirectional);" in line
    # the demo is causal: it cannot be loaded as a bidirectional model
    with pytest.raises(ValueError, match="shift_direction='bidirectional' disagrees with the weights"):
        load_tsm_checkpoint(path, shift_direction="bidirectional")


def test_the_online_demo_checkpoint_note_says_what_its_segments_are_for(tmp_path, capsys):
    # convert and info said "assumed 8 segments; if it was trained otherwise, give --num-segments
    # N" of a model that effvid stream runs frame by frame, where the number changes nothing
    from effvid.cli import main

    path = tmp_path / "mobilenetv2_jester_online.pth.tar"
    torch.save(_DemoMobileNetV2(27).state_dict(), path)
    note = ("note: mobilenetv2_jester_online.pth.tar is the online demo's model: effvid stream runs it frame "
            "by frame, where the number of segments changes nothing; for what classifies whole clips (effvid "
            "eval and predict, the offline ONNX export) 8 segments were assumed, as its name does not say "
            "(--num-segments N for another)")
    assert main(["convert", str(path), str(tmp_path / "a.safetensors")]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [note]
    assert main(["info", str(path), "--size", "32"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == note and "trained otherwise" not in "\n".join(out)
    # given, nothing was assumed: no note
    assert main(["convert", str(path), str(tmp_path / "b.safetensors"), "--num-segments", "4"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


@pytest.mark.parametrize("kwargs,message", [
    (dict(num_segments=True), "num_segments must be a positive integer, got True"),
    (dict(num_segments=8.5), "num_segments must be a positive integer, got 8.5"),
    (dict(shift_div=8.9), "shift_div must be a positive integer, got 8.9"),
])
def test_a_setting_that_is_not_an_integer_is_refused_not_truncated(tmp_path, kwargs, message):
    # int() took True as 1 segment, 8.5 as 8 and a shift_div of 8.9 as 8
    src = effvid.create_model("tsm_resnet18", num_classes=3, num_segments=4, shift_div=4)
    release = _save_original(src, tmp_path / "TSM_kinetics_RGB_resnet18_shift4_blockres_avg_segment4_e50.pth")
    for call in (load_tsm_checkpoint, lambda p, **kw: convert_tsm_checkpoint(p, tmp_path / "x.safetensors", **kw)):
        with pytest.raises(BadValue) as e:
            call(release, **kwargs)
        assert str(e.value) == message
    assert not (tmp_path / "x.safetensors").exists()


def test_a_shift_div_for_a_tsn_release_file_is_refused(tmp_path, capsys):
    # it was ignored, by effvid convert too (exit 0), while effvid info tsn_resnet50 --shift-div 4 refuses it
    from effvid.cli import main

    src = effvid.create_model("tsn_resnet18", num_classes=3, num_segments=5)
    release = _save_original(src, tmp_path / "TSN_kinetics_RGB_resnet18_avg_segment5_e50.pth")
    message = f"shift_div does not apply: {release} is a TSN checkpoint (no temporal shift), got 4"
    with pytest.raises(BadValue) as e:
        load_tsm_checkpoint(release, shift_div=4)
    assert str(e.value) == message
    assert main(["convert", str(release), str(tmp_path / "x.safetensors"), "--shift-div", "4"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
    assert load_tsm_checkpoint(release).checkpoint_info.shift is False  # without it, it loads


@pytest.mark.parametrize("place", ["residual", "inplace"])
def test_a_release_tsn_starts_a_tsm_and_a_release_tsm_a_tsn(tmp_path, place):
    # "holds a tsn_resnet18, not the tsm_resnet18 being trained: fine-tune it with --model tsn_resnet18",
    # while effvid checkpoints start either from the other; the keys differ only by the shift's wrapper
    from effvid.training.init_weights import load_init_weights

    tsn = effvid.create_model("tsn_resnet18", num_classes=400, num_segments=5)
    _randomise(tsn, seed=5)
    tsn_file = _save_original(tsn, tmp_path / "TSN_kinetics_RGB_resnet18_avg_segment5_e50.pth")
    tsm = effvid.create_model("tsm_resnet18", num_classes=3, num_segments=8, shift_place=place)
    state = tsm_init_state_dict(tsn_file, tsm)
    wrapped = "backbone.layer1.0.conv1.net.weight" if place == "residual" else "backbone.layer1.0.net.conv1.weight"
    assert torch.equal(state[wrapped], tsn.state_dict()["backbone.layer1.0.conv1.weight"])
    tsn_state = tsn.state_dict()
    for key in tsm.state_dict():
        if not key.startswith("fc."):
            assert torch.equal(state[key], tsn_state[key.replace(".net.", ".")]), key
    assert load_init_weights(tsm, str(tsn_file), ["a", "b", "c"], "tsm_resnet18") == (
        f"starting from {tsn_file}: the original TSM checkpoint's backbone, a new classifier for 3 classes; "
        "it was trained as name tsn_resnet18 (this run: tsm_resnet18)")
    loaded = tsm.state_dict()  # into the model too
    assert all(torch.equal(v, tsn_state[k.replace(".net.", ".")]) for k, v in loaded.items() if not k.startswith("fc."))

    # a TSM's release file into a TSN: its settings that the TSN has not are named too
    src = effvid.create_model("tsm_resnet18", num_classes=400, num_segments=8, shift_place=place)
    _randomise(src, seed=6)
    label = "blockres" if place == "residual" else "block"
    tsm_file = _save_original(src, tmp_path / f"TSM_kinetics_RGB_resnet18_shift8_{label}_avg_segment8_e50.pth")
    target = effvid.create_model("tsn_resnet18", num_classes=3, num_segments=8)
    said = load_init_weights(target, str(tsm_file), ["a", "b", "c"], "tsn_resnet18")
    assert said == (f"starting from {tsm_file}: the original TSM checkpoint's backbone, a new classifier for 3 "
                    f"classes; it was trained as name tsm_resnet18 (this run: tsn_resnet18), shift_place {place} "
                    "(this run: -), shift_direction bidirectional (this run: -), shift_div 8 (this run: -)")
    src_state = src.state_dict()
    for key, value in target.state_dict().items():
        if not key.startswith("fc."):
            wrapped = next(k for k in src_state if k.replace(".net.", ".") == key)
            assert torch.equal(value, src_state[wrapped]), key
    # another architecture is still refused, with this run's kind of model of the file's architecture
    with pytest.raises(ValueError, match=r"holds a tsn_resnet18, not the tsm_resnet34 being trained: "
                                         r"fine-tune it with --model tsm_resnet18$"):
        tsm_init_state_dict(tsn_file, effvid.create_model("tsm_resnet34", num_classes=3))
