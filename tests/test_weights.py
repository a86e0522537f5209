"""effvid weights files (safetensors) and local ImageNet weights (effvid.models.weights)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torchvision import models as tvm

import effvid
from effvid.models.temporal_shift import shift_modules
from effvid.models.weights import (
    METADATA_KEY,
    load_imagenet_weights,
    load_model,
    load_weights,
    read_state_dict,
    save_weights,
)

CLASSES = ["abseiling", "air drumming", "ünïcödé", "zumba"]


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    model = effvid.create_model("tsm_resnet_tiny", num_classes=4, num_segments=4, dropout=0.3,
                                shift_place="inplace")
    with torch.no_grad():  # non-default BN statistics must survive too
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_()
    return model.eval()


def test_round_trip_with_metadata_and_classes(tmp_path, tiny):
    path = tmp_path / "sub" / "tiny.safetensors"
    save_weights(tiny, path, metadata={"classes": CLASSES, "extra": {"epoch": 3}})
    assert not list(path.parent.glob(".*tmp*"))  # atomic write leaves no temporary file
    state, meta = load_weights(path)
    assert set(state) == set(tiny.state_dict())
    for k, v in tiny.state_dict().items():
        assert torch.equal(state[k], v), k
    assert meta["classes"] == CLASSES and meta["extra"] == {"epoch": 3}
    assert meta["name"] == "tsm_resnet_tiny" and meta["num_segments"] == 4
    assert meta["shift_place"] == "inplace" and meta["dropout"] == 0.3
    with safe_open(str(path), framework="pt") as f:  # plain safetensors, readable by anyone
        assert json.loads(f.metadata()[METADATA_KEY])["classes"] == CLASSES
    # created with the umask's mode, like other files (safetensors alone makes them 0600)
    umask = os.umask(0o027)
    try:
        save_weights(tiny, path)
        assert path.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(umask)


def test_load_model_rebuilds_exactly(tmp_path, tiny):
    path = tmp_path / "tiny.safetensors"
    save_weights(tiny, path, metadata={"classes": CLASSES})
    model, meta = load_model(path)
    assert type(model) is type(tiny) and model.config == tiny.config
    assert meta["classes"] == CLASSES
    # in eval mode, ready to classify (it came in training mode: BatchNorm used the batch's
    # statistics, and the same clip got another answer in another batch)
    assert not any(m.training for m in model.modules())
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), tiny(x))
    # overrides change construction arguments
    m8, _ = load_model(path, num_segments=8)
    assert m8.num_segments == 8 and {s.num_segments for s in shift_modules(m8)} == {8}
    with pytest.raises(ValueError, match=r"tiny\.safetensors does not fit tsm_resnet_tiny built with "
                                         r"\{'num_classes': 9\}: size mismatch for fc\.weight"):
        load_model(path, num_classes=9)
    # a misspelt override is an error, not silently dropped (it gave a 4-segment model)
    with pytest.raises(TypeError, match="num_segmnts"):
        load_model(path, num_segmnts=8)
    # "create_model() got multiple values for argument 'name'"
    with pytest.raises(TypeError) as e:
        load_model(path, name="tsn_resnet_tiny")
    assert str(e.value) == ("load_model cannot override name ('tsn_resnet_tiny'): it builds the model the file "
                            "holds, a tsm_resnet_tiny (to start a tsn_resnet_tiny from its weights: effvid train "
                            f"--model tsn_resnet_tiny --init-weights {path})")


def test_a_model_wrapped_for_training_is_saved_as_the_model_inside(tmp_path, tiny):
    # wrapped, the file held "module."/"_orig_mod." keys and no config: load_model could not rebuild it
    for wrapped in (torch.nn.DataParallel(tiny), torch.compile(tiny), torch.nn.DataParallel(torch.compile(tiny))):
        path = tmp_path / "wrapped.safetensors"
        save_weights(wrapped, path, metadata={"classes": CLASSES})
        with safe_open(str(path), framework="pt") as f:
            assert set(f.keys()) == set(tiny.state_dict())
        model, meta = load_model(path)
        assert model.config == tiny.config and meta["classes"] == CLASSES
        x = torch.randn(1, 4, 3, 32, 32)
        with torch.no_grad():
            assert torch.equal(model(x), tiny(x))


def test_corrupt_or_foreign_file_errors_name_the_file(tmp_path, tiny):
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x00\x01garbage" * 50)
    with pytest.raises(ValueError, match="corrupt.safetensors"):
        load_weights(bad)
    with pytest.raises(ValueError, match="corrupt.safetensors"):
        load_model(bad)
    good = tmp_path / "good.safetensors"
    save_weights(tiny, good)
    cut = tmp_path / "truncated.safetensors"
    cut.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated.safetensors"):
        load_model(cut)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_model(tmp_path / "missing.safetensors")
    # a FIFO or a device in a weights file's place said "weights file not found" (never opened)
    from effvid.models.weights import load_torch_file, read_state_dict
    os.mkfifo(tmp_path / "fifo.safetensors")
    for reader, path, what in ((load_model, tmp_path / "fifo.safetensors", "not a regular file (a FIFO)"),
                               (read_state_dict, Path(os.devnull), "not a regular file (a character device)"),
                               (load_torch_file, tmp_path, "a folder: give a weights file")):
        with pytest.raises(FileNotFoundError) as e:
            reader(path)
        assert str(e.value) == f"{path} is {what}"
    # a safetensors file without effvid metadata
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="foreign.safetensors has no effvid model configuration"):
        load_model(foreign)


@pytest.fixture(scope="module")
def imagenet_r18(tmp_path_factory):
    """A torchvision-format ResNet-18 ImageNet file with random weights (nothing downloaded)."""
    torch.manual_seed(1)
    ref = tvm.resnet18()
    with torch.no_grad():
        for name, buf in ref.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("imagenet") / "resnet18-f37072fd.pth"
    torch.save(ref.state_dict(), path)
    return path, ref.state_dict()


def test_imagenet_weights_loaded_before_shift(imagenet_r18):
    path, ref = imagenet_r18
    model = effvid.create_model("tsm_resnet18", num_classes=7, imagenet_weights=path)
    state = model.state_dict()
    n_shifted = 0
    for k, v in ref.items():
        if k.startswith("fc."):
            continue  # the ImageNet classifier is not used
        ours = "backbone." + k
        if ours not in state:  # the shifted conv1 of each block is wrapped as .net
            ours = ours.replace(".conv1.", ".conv1.net.")
            n_shifted += 1
        assert torch.equal(state[ours], v), k
    assert n_shifted == 8  # ResNet-18: 8 blocks, all shifted
    assert model.fc.out_features == 7
    # also the in-place placement and TSN
    for name, kw in (("tsm_resnet18", {"shift_place": "inplace"}), ("tsn_resnet18", {})):
        m = effvid.create_model(name, num_classes=7, imagenet_weights=path, **kw)
        flat = {k.replace(".net.", ".").removeprefix("backbone."): v for k, v in m.state_dict().items()}
        assert all(torch.equal(flat[k], v) for k, v in ref.items() if not k.startswith("fc."))


def test_imagenet_checkpoint_dict_and_direct_loader(tmp_path, imagenet_r18):
    _, ref = imagenet_r18
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": ref, "epoch": 90}, wrapped)
    assert set(read_state_dict(wrapped)) == set(ref)
    target = tvm.resnet18()
    load_imagenet_weights(target, wrapped)
    assert torch.equal(target.layer4[1].conv2.weight, ref["layer4.1.conv2.weight"])


def test_imagenet_file_from_before_pytorch_0_4_1(tmp_path, imagenet_r18):
    # Files saved before PyTorch 0.4.1 (e.g. resnet50-19c8e357.pth, which the original TSM
    # code loads) have no BatchNorm num_batches_tracked; load_state_dict accepts that, so do we.
    _, ref = imagenet_r18
    old = tmp_path / "resnet18-5c106cde.pth"
    torch.save({k: v for k, v in ref.items() if not k.endswith("num_batches_tracked")}, old)
    model = effvid.create_model("tsn_resnet18", num_classes=7, imagenet_weights=old)
    assert torch.equal(model.backbone.layer3[0].bn2.running_var, ref["layer3.0.bn2.running_var"])


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the plain pickle below
def test_unsafe_or_unreadable_pth_errors(tmp_path, imagenet_r18):
    _, ref = imagenet_r18
    # a pickled class is refused by name, and torch's advice to load with weights_only=False
    # (which would run the file's code) is not passed on
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": ref, "extra": _NotATensor()}, evil)
    with pytest.raises(ValueError, match=r"evil\.pth: refused to load: it contains a pickled "
                                         r"(tests\.)?test_weights\._NotATensor") as e:
        read_state_dict(evil)
    assert "weights_only` set to `False`" not in str(e.value)
    import pickle

    plain = tmp_path / "plain.pth"  # a plain pickle, not a torch file: not a "refusal"
    plain.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match=r"plain\.pth is not a readable PyTorch checkpoint"):
        read_state_dict(plain)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"hello, not a pickle")
    with pytest.raises(ValueError, match=r"garbage\.pth is not a readable PyTorch checkpoint "
                                         r"\(corrupt, truncated or another format\): \w+Error"):
        read_state_dict(garbage)
    # a state dict whose shapes do not fit: a ValueError that names the key, not a RuntimeError
    wide = dict(ref, **{"layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1)})
    torch.save(wide, tmp_path / "wide.pth")
    with pytest.raises(ValueError, match=r"wrong shape \['layer1\.0\.conv1\.weight \(64, 64, 1, 1\) vs \(64, 64, 3, 3\)"):
        effvid.create_model("tsn_resnet18", num_classes=7, imagenet_weights=tmp_path / "wide.pth")


class _NotATensor:
    pass


def test_mismatched_imagenet_file_is_refused(tmp_path, imagenet_r18):
    path, _ = imagenet_r18
    with pytest.raises(ValueError, match=r"resnet18-f37072fd\.pth does not match ResNet"):
        effvid.create_model("tsm_resnet34", num_classes=7, imagenet_weights=path)
    with pytest.raises(ValueError, match="does not match MobileNetV2"):
        effvid.create_model("tsm_mobilenet_v2", num_classes=7, imagenet_weights=path)
    with pytest.raises(FileNotFoundError):
        effvid.create_model("tsm_resnet18", num_classes=7, imagenet_weights=tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pth"):
        effvid.create_model("tsm_resnet18", num_classes=7, imagenet_weights=junk)

    class Evil:
        def __reduce__(self):
            return (print, ("unpickled",))

    evil = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "x": Evil()}, evil)
    with pytest.raises(ValueError, match="evil.pth.*weights_only"):
        read_state_dict(evil)


def test_test_view_keeps_the_trained_scale_size_for_the_trained_size_given_again():
    # `effvid eval --size 32` on a run trained at 32 with --scale-size 48 resized to 37
    # (32 x 256/224), unlike the same eval without --size
    from effvid.inference import test_view

    meta = {"extra": {"size": 32, "scale_size": 48, "sampling": "segment"}}
    assert test_view(meta)["scale_size"] == 48
    assert test_view(meta, size=32)["scale_size"] == 48
    assert test_view(meta, size=64)["scale_size"] == 73  # 64 x 256/224 = 73.1
    assert test_view(meta, size=64, scale_size=80)["scale_size"] == 80
