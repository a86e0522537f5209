"""Loading original TSM release checkpoints (effvid.models.tsm_checkpoint).

The original-format files are built here from freshly initialised effvid models by an explicit
renaming written independently of the loader (effvid -> original, the opposite direction), and
saved the way the original training script saves them.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import effvid
from effvid.models.tsm_checkpoint import (
    convert_tsm_checkpoint,
    inspect_tsm_checkpoint,
    load_tsm_checkpoint,
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
