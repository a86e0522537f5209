"""Online TSM: conversion of a causal model, frame-by-frame equivalence, caches and reset."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import effvid
from effvid.models import Recognizer, TemporalShift, insert_temporal_shift
from effvid.models.online import OnlineRecognizer, OnlineStep, check_causal, to_online_step
from effvid.models.temporal_shift import set_shift_segments, shift_modules


pytestmark = pytest.mark.usefixtures("one_thread")


def _randomise(model: nn.Module, seed: int = 0, size: int = 32) -> nn.Module:
    """Realistic BatchNorm statistics (estimated on random clips, so that eval-mode
    activations neither vanish nor saturate), random BN affine parameters, and a classifier
    with O(1) logits (the default init gives ~1e-3 logits, where a 1e-5 comparison would be
    meaningless)."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
        m.bias.data.copy_(torch.rand(m.bias.shape, generator=g) * 0.2 - 0.1)
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, model.num_segments, 3, size, size, generator=g))
    model.fc.weight.data.normal_(0, 2 / model.fc.in_features ** 0.5, generator=g)
    return model.eval()


def _causal(name: str, t: int = 5, size: int = 32, **kw) -> Recognizer:
    torch.manual_seed(0)
    return _randomise(effvid.create_model(name, num_classes=7, num_segments=t,
                                          shift_direction="causal", **kw), size=size)


CASES = [
    ("tsm_resnet_tiny", {}, 32),
    ("tsm_resnet18", {}, 32),
    ("tsm_resnet18", {"shift_place": "inplace"}, 32),
    ("tsm_mobilenet_v2", {}, 32),
]


@pytest.mark.parametrize("name,kw,size", CASES, ids=["resnet_tiny", "resnet18", "resnet18_inplace",
                                                     "mobilenet_v2"])
def test_online_matches_offline_frame_by_frame(name, kw, size):
    t = 4
    model = _causal(name, t, size, **kw)
    video = torch.randn(2, t, 3, size, size)  # every frame differs, so shifted channels differ
    with torch.no_grad():
        offline = model.frame_logits(video)
    online = OnlineRecognizer.from_model(model)
    assert online.num_caches == len(shift_modules(model)) > 0
    got = torch.stack([online.step(video[:, i]) for i in range(t)], dim=1)
    assert offline.abs().max() > 0.1  # logits of a sensible scale
    torch.testing.assert_close(got, offline, atol=1e-5, rtol=0)

    # Control: without the caches (a new stream at every frame) only frame 0 matches, so the
    # comparison above really tests the cached shift.
    no_cache = []
    for i in range(t):
        online.reset()
        no_cache.append(online.step(video[:, i]))
    no_cache = torch.stack(no_cache, dim=1)
    torch.testing.assert_close(no_cache[:, 0], offline[:, 0], atol=1e-5, rtol=0)
    assert (no_cache[:, 1:] - offline[:, 1:]).abs().max() > 1e-3


def test_online_matches_offline_in_float64_batch_1():
    # In float64 the rounding differences between batch sizes (oneDNN picks kernels by batch)
    # vanish, leaving only the algorithm: the match is exact to 1e-10.
    model = _causal("tsm_mobilenet_v2", 4).double()
    video = torch.randn(1, 4, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        offline = model.frame_logits(video)
    online = OnlineRecognizer.from_model(model)
    torch.testing.assert_close(online.run(video), offline, atol=1e-10, rtol=0)


def test_single_frame_and_run_and_longer_stream():
    model = _causal("tsm_resnet_tiny", t=4)
    online = OnlineRecognizer.from_model(model)
    video = torch.randn(10, 3, 24, 24)
    # A stream longer than the training clip: equal to the offline model over 10 frames.
    offline = copy.deepcopy(model)
    set_shift_segments(offline, 10)
    with torch.no_grad():
        expected = offline.frame_logits(video[None])[0]
    per_frame = torch.stack([online.step(f) for f in video])  # (3, H, W) frames -> (K,) logits
    assert per_frame.shape == (10, 7)
    torch.testing.assert_close(per_frame, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(online.run(video), expected, atol=1e-5, rtol=0)
    assert online.caches is None  # run() leaves a fresh stream


def test_cache_shapes_and_reset():
    model = _causal("tsm_resnet_tiny", t=4)
    online = OnlineRecognizer.from_model(model)
    shifts = shift_modules(model)
    assert online.caches is None and online.frames_seen == 0
    frames = torch.randn(3, 2, 3, 32, 32)
    first = online.step(frames[0])
    assert online.frames_seen == 1
    # One cache per shifted block: (B, C // fold_div, H, W) of that block's input.
    shapes = [tuple(c.shape) for c in online.caches]
    assert shapes == online.step_module.cache_shapes(2, 32, 32)
    assert shapes == [(2, 16 // 8, 16, 16), (2, 16 // 8, 16, 16), (2, 32 // 8, 8, 8),
                      (2, 64 // 8, 4, 4)]
    assert len(shapes) == len(shifts)
    online.step(frames[1])
    online.reset()
    assert online.caches is None and online.frames_seen == 0
    torch.testing.assert_close(online.step(frames[0]), first, atol=0, rtol=0)
    with pytest.raises(ValueError, match="reset"):
        online.step(torch.randn(2, 3, 40, 40))  # a different size within a stream
    online.reset()
    assert online.step(torch.randn(2, 3, 40, 40)).shape == (2, 7)
    with pytest.raises(ValueError, match="frame"):
        online.step(torch.randn(2, 4, 32, 32))


def test_stateless_step_has_explicit_caches():
    model = _causal("tsm_mobilenet_v2", t=3)
    step = to_online_step(model)
    assert isinstance(step, OnlineStep) and not step.training
    frames = torch.randn(3, 2, 3, 32, 32)  # (T, B, 3, H, W)
    caches = step.zero_caches(frames[0])
    assert len(caches) == step.num_caches == 10  # the 10 shifted MobileNetV2 blocks
    outs = []
    with torch.no_grad():
        for f in frames:
            logits, *caches = step(f, *caches)
            outs.append(logits)
        expected = model.frame_logits(frames.transpose(0, 1))
    torch.testing.assert_close(torch.stack(outs, 1), expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="caches"):
        step(frames[0])
    step.train()
    assert not step.training  # inference only


def test_bidirectional_model_is_refused():
    model = effvid.create_model("tsm_resnet_tiny", num_classes=3, num_segments=4)
    assert model.config["shift_direction"] == "bidirectional"
    with pytest.raises(ValueError) as err:
        OnlineRecognizer.from_model(model)
    msg = str(err.value)
    assert "'bidirectional'" in msg and "causal" in msg and "--shift-direction causal" in msg
    with pytest.raises(ValueError, match="bidirectional"):
        check_causal(model)


def test_conversion_leaves_model_untouched_and_tsn_converts():
    model = _causal("tsm_resnet_tiny", t=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    online = OnlineRecognizer.from_model(model)
    assert len(shift_modules(model)) == 4  # the original keeps its TemporalShift modules
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # State-dict keys are unchanged by the conversion (OnlineShift keeps `.net`).
    assert set(online.step_module.state_dict()) == set(model.state_dict())

    tsn = _randomise(effvid.create_model("tsn_resnet_tiny", num_classes=5, num_segments=3), size=24)
    online_tsn = OnlineRecognizer.from_model(tsn)
    assert online_tsn.num_caches == 0
    video = torch.randn(1, 3, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(online_tsn.run(video), tsn.frame_logits(video), atol=1e-5, rtol=0)


def test_generic_insertion_rule_backbone():
    """A CNN that is neither a ResNet nor a MobileNetV2: the generic rule shifts the input of
    every conv after the stem; the online form still matches the offline one."""
    torch.manual_seed(3)
    backbone = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 4, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(4, 8, 1), nn.ReLU(),  # 4 // 8 == 0 channels to shift: not wrapped
        nn.AdaptiveAvgPool2d(1), nn.Flatten())
    insert_temporal_shift(backbone, num_segments=4, direction="causal")
    assert len(shift_modules(backbone)) == 2 and not isinstance(backbone[7], TemporalShift)
    model = _randomise(Recognizer(backbone, 8, num_classes=3, num_segments=4, dropout=0.0), size=16)
    online = OnlineRecognizer.from_model(model)
    assert online.num_caches == 2  # the two 16-channel inputs
    video = torch.randn(2, 4, 3, 16, 16)
    with torch.no_grad():
        expected = model.frame_logits(video)
    torch.testing.assert_close(online.run(video), expected, atol=1e-5, rtol=0)


def test_from_checkpoint(tmp_path):
    from effvid.models.weights import save_weights

    model = _causal("tsm_resnet_tiny", t=4)
    save_weights(model, tmp_path / "m.safetensors", {"classes": [f"c{i}" for i in range(7)]})
    online, meta = OnlineRecognizer.from_checkpoint(tmp_path / "m.safetensors")
    assert meta["classes"][0] == "c0" and online.config["shift_direction"] == "causal"
    video = torch.randn(4, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(online.run(video), model.frame_logits(video[None])[0],
                                   atol=1e-5, rtol=0)
