"""The temporal shift op and its insertion into CNNs (effvid.models.temporal_shift)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torchvision import models as tvm

import effvid
from effvid.errors import BadValue
from effvid.models.temporal_shift import (
    TemporalShift,
    insert_temporal_shift,
    set_shift_segments,
    shift_modules,
    temporal_shift,
)


def reference_shift(x: torch.Tensor, t: int, fold_div: int = 8, direction: str = "bidirectional"):
    """The original TSM formulation: a zero tensor and slice copies."""
    nt, c, h, w = x.shape
    v = x.view(nt // t, t, c, h, w)
    out = torch.zeros_like(v)
    fold = c // fold_div
    if direction == "bidirectional":
        out[:, :-1, :fold] = v[:, 1:, :fold]  # from the future
        out[:, 1:, fold:2 * fold] = v[:, :-1, fold:2 * fold]  # from the past
        out[:, :, 2 * fold:] = v[:, :, 2 * fold:]
    else:
        out[:, 1:, :fold] = v[:, :-1, :fold]
        out[:, :, fold:] = v[:, :, fold:]
    return out.view(nt, c, h, w)


def _labelled(n: int, t: int, c: int, h: int = 2, w: int = 3) -> torch.Tensor:
    """x[n*T + t, c, i, j] = a unique positive value (0 is reserved for padding)."""
    return torch.arange(1, n * t * c * h * w + 1, dtype=torch.float64).view(n * t, c, h, w)


def _expected(x: torch.Tensor, t: int, fold_div: int, direction: str) -> torch.Tensor:
    """Element by element: which frame each channel of each output frame comes from."""
    nt, c = x.shape[:2]
    fold = c // fold_div
    out = torch.empty_like(x)
    for n in range(nt // t):
        for ti in range(t):
            for ch in range(c):
                if direction == "bidirectional" and ch < fold:
                    src = ti + 1
                elif direction == "bidirectional" and ch < 2 * fold:
                    src = ti - 1
                elif direction == "causal" and ch < fold:
                    src = ti - 1
                else:
                    src = ti
                if 0 <= src < t:
                    out[n * t + ti, ch] = x[n * t + src, ch]
                else:
                    out[n * t + ti, ch] = 0.0
    return out


# ----------------------------------------------------------------------------------------------
# The op
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["bidirectional", "causal"])
@pytest.mark.parametrize("n,t,c,fold_div", [(2, 4, 16, 8), (1, 3, 16, 4), (2, 5, 10, 4), (1, 8, 32, 16),
                                            (3, 2, 8, 8), (1, 1, 16, 8)])
def test_every_element_goes_where_it_should(direction, n, t, c, fold_div):
    x = _labelled(n, t, c)
    y = temporal_shift(x, t, fold_div, direction)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.equal(y, _expected(x, t, fold_div, direction))
    assert torch.equal(y, reference_shift(x, t, fold_div, direction))


def test_explicit_small_case_and_zero_padding():
    # N=1, T=3, C=8, fold_div=4 -> fold=2: channels 0,1 from t+1; 2,3 from t-1; 4..7 stay
    x = _labelled(1, 3, 8, 1, 1)
    y = temporal_shift(x, 3, 4).view(3, 8)
    v = x.view(3, 8)
    assert torch.equal(y[0, :2], v[1, :2]) and torch.equal(y[1, :2], v[2, :2])
    assert torch.equal(y[2, :2], torch.zeros(2, dtype=y.dtype))  # last frame: no future
    assert torch.equal(y[0, 2:4], torch.zeros(2, dtype=y.dtype))  # first frame: no past
    assert torch.equal(y[1, 2:4], v[0, 2:4]) and torch.equal(y[2, 2:4], v[1, 2:4])
    assert torch.equal(y[:, 4:], v[:, 4:])
    c = temporal_shift(x, 3, 4, "causal").view(3, 8)
    assert torch.equal(c[0, :2], torch.zeros(2, dtype=c.dtype))
    assert torch.equal(c[1:, :2], v[:-1, :2]) and torch.equal(c[:, 2:], v[:, 2:])
    # clips do not leak into each other
    x2 = _labelled(2, 3, 8, 1, 1)
    y2 = temporal_shift(x2, 3, 4).view(2, 3, 8)
    assert torch.equal(y2[0, 2, :2], torch.zeros(2, dtype=y2.dtype))
    assert torch.equal(y2[1, 0, 2:4], torch.zeros(2, dtype=y2.dtype))


def test_fewer_channels_than_fold_div_is_identity():
    x = torch.randn(8, 7, 3, 3)
    assert torch.equal(temporal_shift(x, 4, 8), x)
    assert torch.equal(temporal_shift(x, 4, 8, "causal"), x)


def test_input_validation():
    with pytest.raises(ValueError, match="multiple of num_segments"):
        temporal_shift(torch.zeros(6, 8, 2, 2), 4)
    with pytest.raises(ValueError, match="shift direction"):
        temporal_shift(torch.zeros(8, 8, 2, 2), 4, direction="forward")
    with pytest.raises(ValueError, match=r"\(N\*T, C, H, W\)"):
        temporal_shift(torch.zeros(8, 8, 2), 4)


def test_non_contiguous_input():
    x = torch.randn(8, 3, 5, 16).permute(0, 3, 1, 2)  # (8, 16, 3, 5), not contiguous
    assert torch.equal(temporal_shift(x, 4), reference_shift(x.contiguous(), 4))


@pytest.mark.parametrize("direction", ["bidirectional", "causal"])
def test_gradient_matches_autograd_through_reference(direction):
    torch.manual_seed(0)
    x = torch.randn(2 * 4, 24, 3, 3)
    upstream = torch.randn_like(x)
    a = x.clone().requires_grad_(True)
    temporal_shift(a, 4, 8, direction).backward(upstream)
    b = x.clone().requires_grad_(True)
    reference_shift(b, 4, 8, direction).backward(upstream)
    assert torch.equal(a.grad, b.grad)
    # the gradient of a shift is the opposite shift
    opposite = {"bidirectional": lambda g: _expected_grad_bidir(g, 4, 8), "causal": None}[direction]
    if opposite is not None:
        assert torch.equal(a.grad, opposite(upstream))


def _expected_grad_bidir(g, t, fold_div):
    # channels [0, fold) were read from t+1 -> their gradient goes back to t+1 (i.e. from t-1)
    nt, c = g.shape[:2]
    fold = c // fold_div
    v = g.view(nt // t, t, c, *g.shape[2:])
    out = torch.zeros_like(v)
    out[:, 1:, :fold] = v[:, :-1, :fold]
    out[:, :-1, fold:2 * fold] = v[:, 1:, fold:2 * fold]
    out[:, :, 2 * fold:] = v[:, :, 2 * fold:]
    return out.view_as(g)


@pytest.mark.parametrize("direction", ["bidirectional", "causal"])
def test_gradcheck_float64(direction):
    x = torch.randn(2 * 3, 8, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: temporal_shift(v, 3, 4, direction), (x,))
    assert torch.autograd.gradgradcheck(lambda v: temporal_shift(v, 3, 4, direction), (x,))


def test_no_grad_path_equals_grad_path():
    x = torch.randn(16, 32, 4, 4)
    with torch.no_grad():
        a = temporal_shift(x, 8)
    b = temporal_shift(x.clone().requires_grad_(True), 8)
    c = temporal_shift(x, 8)  # grad enabled, input without grad
    assert b.requires_grad
    assert torch.equal(a, b.detach()) and torch.equal(a, c)


def test_output_does_not_alias_input():
    x = torch.randn(8, 16, 2, 2)
    y = temporal_shift(x, 4)
    y.add_(1.0)
    assert torch.equal(temporal_shift(x, 4) + 1.0, y)


class _LayoutRecordingConv(nn.Conv2d):
    """A conv that notes whether its input came channels_last (not a hook: a hook on the wrapped
    conv sends TemporalShift down its plain path)."""

    def forward(self, x):
        self.got_channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        return super().forward(x)


@pytest.mark.parametrize("direction", ["bidirectional", "causal"])
def test_channels_last_activations_stay_channels_last_through_the_shift(direction):
    # a channels_last TSM ran slower than its TSN: each shift made its input NCHW again
    torch.manual_seed(0)
    x = _labelled(2, 4, 16, 5, 7).float()
    cl = x.contiguous(memory_format=torch.channels_last)
    y = temporal_shift(cl, 4, 8, direction)
    assert torch.equal(y, _expected(x, 4, 8, direction)) and y.is_contiguous(memory_format=torch.channels_last)
    grad = torch.randn_like(x)
    a, b = x.clone().requires_grad_(), cl.clone().requires_grad_()
    temporal_shift(a, 4, 8, direction).backward(grad)
    temporal_shift(b, 4, 8, direction).backward(grad.contiguous(memory_format=torch.channels_last))
    assert torch.equal(a.grad, b.grad)
    # the inference paths (a shifted copy in the scratch buffer, or the input borrowed) give the
    # conv a channels_last input, the same values, and leave the input as it was
    for borrow in (False, True):
        conv = _LayoutRecordingConv(16, 6, 3, padding=1).to(memory_format=torch.channels_last)
        shift = TemporalShift(conv, 4, 8, direction, borrow_input=borrow).eval()
        before = cl.clone()
        with torch.inference_mode():
            out = shift(cl)
        assert conv.got_channels_last, borrow
        assert torch.allclose(out, nn.functional.conv2d(_expected(x, 4, 8, direction), conv.weight, conv.bias,
                                                        padding=1), atol=1e-5)
        assert torch.equal(cl, before)


# ----------------------------------------------------------------------------------------------
# Insertion rules
# ----------------------------------------------------------------------------------------------


def _meta(fn, *args, **kwargs):
    with torch.device("meta"):  # structure only, no init cost
        return fn(*args, **kwargs)


def test_resnet50_all_16_blocks_shifted():
    m = insert_temporal_shift(_meta(tvm.resnet50), 8)
    shifts = shift_modules(m)
    assert len(shifts) == 16
    for layer in (m.layer1, m.layer2, m.layer3, m.layer4):
        for block in layer:
            assert isinstance(block.conv1, TemporalShift)  # residual placement: conv1 only
            assert not isinstance(block.conv2, TemporalShift)
    assert all(s.num_segments == 8 and s.fold_div == 8 for s in shifts)


def test_resnet101_every_other_block():
    m = insert_temporal_shift(_meta(tvm.resnet101), 8)
    for layer in (m.layer1, m.layer2, m.layer3, m.layer4):
        flags = [isinstance(b.conv1, TemporalShift) for b in layer]
        assert flags == [i % 2 == 0 for i in range(len(layer))]
    assert len(shift_modules(m)) == 2 + 2 + 12 + 2
    # in-place placement: the original wraps every block (its every-other rule is for blockres)
    m = insert_temporal_shift(_meta(tvm.resnet101), 8, placement="inplace")
    for layer in (m.layer1, m.layer2, m.layer3, m.layer4):
        assert all(isinstance(b, TemporalShift) for b in layer)
    assert len(shift_modules(m)) == 3 + 4 + 23 + 3


def test_mobilenet_v2_ten_blocks():
    m = insert_temporal_shift(_meta(tvm.mobilenet_v2), 8)
    shifts = shift_modules(m)
    assert len(shifts) == 10
    shifted = [i for i, f in enumerate(m.features) if any(isinstance(x, TemporalShift) for x in f.modules())]
    assert shifted == [3, 5, 6, 8, 9, 10, 12, 13, 15, 16]  # the residual blocks with expansion
    for i in shifted:
        assert isinstance(m.features[i].conv[0][0], TemporalShift)
        assert m.features[i].use_res_connect
    with pytest.raises(ValueError, match="only residual"):
        insert_temporal_shift(_meta(tvm.mobilenet_v2), 8, placement="inplace")


class _PlainCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.body = nn.Sequential(nn.Conv2d(16, 16, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1))
        self.head = nn.Conv2d(32, 8, 1)

    def forward(self, x):
        return self.head(self.body(self.dw(self.stem(x))))


def test_generic_rule_and_explicit_modules():
    with pytest.raises(ValueError, match="no residual-placement rule for _PlainCNN"):
        insert_temporal_shift(_PlainCNN(), 4, fold_div=4, placement="residual")
    m = insert_temporal_shift(_PlainCNN(), 4, fold_div=4)
    # every ungrouped conv except the stem
    assert not isinstance(m.stem, TemporalShift) and not isinstance(m.dw, TemporalShift)
    assert isinstance(m.body[0], TemporalShift) and isinstance(m.body[2], TemporalShift)
    assert isinstance(m.head, TemporalShift)
    assert len(shift_modules(m)) == 3

    m = insert_temporal_shift(_PlainCNN(), 4, modules=["body.2", "dw"])
    assert isinstance(m.dw, TemporalShift) and isinstance(m.body[2], TemporalShift)
    assert len(shift_modules(m)) == 2
    with pytest.raises(ValueError, match="already has a temporal shift"):
        insert_temporal_shift(m, 4, modules=["dw"])
    # a second insertion into a shifted ResNet (whose blocks no longer look like ResNet
    # blocks) used to fall through to the generic rule and add 19 more shifts
    inplace = insert_temporal_shift(_meta(tvm.resnet50), 8, placement="inplace")
    with pytest.raises(ValueError, match="already has a temporal shift"):
        insert_temporal_shift(inplace, 8, placement="inplace")
    with pytest.raises(ValueError, match="no rule"):
        insert_temporal_shift(nn.Sequential(nn.Conv2d(3, 3, 1)), 4)

    # the explicit insertion computes shift-then-module
    torch.manual_seed(0)
    plain = _PlainCNN()
    shifted = insert_temporal_shift(copy.deepcopy(plain), 4, modules=["body.2"])
    x = torch.randn(8, 3, 6, 6)
    with torch.no_grad():
        want = plain.head(plain.body[2](temporal_shift(plain.body[1](plain.body[0](plain.dw(plain.stem(x)))), 4)))
        assert torch.allclose(shifted(x), want, atol=1e-6)


def test_fold_div_above_a_layers_channels_names_it_and_changes_nothing():
    # the low-level API keeps its name, fold_div; the layer is named by its dotted name
    with pytest.raises(ValueError, match=r"^fold_div must be at most 64 for this model \(a 1/128 shift of the 64 "
                                         r"input channels of layer1\.0\.conv1 moves none of them\), got 128$"):
        insert_temporal_shift(_meta(tvm.resnet18), 8, fold_div=128)
    with pytest.raises(ValueError, match=r"at most 64 .* of layer1\.0 moves none"):  # in-place: the block
        insert_temporal_shift(_meta(tvm.resnet18), 8, fold_div=128, placement="inplace")
    # every module is checked before the first is wrapped: a refusal leaves the model as it was
    # (body.2 has 16 input channels, head 32; "head" was wrapped before body.2 was refused)
    plain = _PlainCNN()
    with pytest.raises(ValueError, match=r"at most 16 .* of body\.2 moves none of them\), got 32$"):
        insert_temporal_shift(plain, 4, fold_div=32, modules=["head", "body.2"])
    assert shift_modules(plain) == []


@pytest.mark.parametrize("modules,message", [
    (["layer1.0.conv1", "layer1.0.conv1"], "modules names 'layer1.0.conv1' more than once, got "
                                           "['layer1.0.conv1', 'layer1.0.conv1']"),
    (["layer1.0", "layer1.0.conv1"], "modules names 'layer1.0.conv1' inside 'layer1.0': shift one or the other, "
                                     "got ['layer1.0', 'layer1.0.conv1']"),
    ("layer1.0.conv1", "modules must be a list of dotted module names, not a str (modules=['layer1.0.conv1'] "
                       "for one module), got 'layer1.0.conv1'"),
    ([], "modules names no module to shift (leave it out for the rules), got []"),
    (["layer1.1.conv2", "layer1.0.con"], "modules names 'layer1.0.con', not a submodule of ResNet "
                                          "(did you mean 'layer1.0.conv2'?), got ['layer1.1.conv2', 'layer1.0.con']"),
    (["layer1.1.conv1", ""], "modules names '', not a submodule of ResNet, got ['layer1.1.conv1', '']"),
    (["layer1.1.conv1", 3], "modules must be dotted module names (strings): 3, got ['layer1.1.conv1', 3]"),
])
def test_bad_modules_are_refused_by_name_before_anything_is_wrapped(modules, message):
    # each was taken: twice shifted, or AttributeError after wrapping layer1.0, "no attribute `l`",
    # or nothing shifted
    model = _meta(tvm.resnet18)
    with pytest.raises(BadValue) as e:
        insert_temporal_shift(model, 8, modules=modules)
    assert str(e.value) == message
    assert shift_modules(model) == []


def test_a_recognizer_is_refused_with_how_to_build_its_tsm():
    # the generic rule took it (52 shifts of a TSN-ResNet50, shortcut projections included) and
    # its clip-length check stayed off
    tsn = effvid.create_model("tsn_resnet18", num_classes=5)
    with pytest.raises(ValueError) as e:
        insert_temporal_shift(tsn, 8)
    assert str(e.value) == (
        "insert_temporal_shift does not take an effvid Recognizer (tsn_resnet18): build the TSM with "
        "effvid.create_model('tsm_resnet18', ...) (a TSN's weights load into it: "
        "tsm.load_state_dict(effvid.training.init_weights.match_shift_wrappers(tsn.state_dict(), "
        "tsm.state_dict())), or effvid train --init-weights with the TSN's file), or call it on a torchvision backbone")
    assert shift_modules(tsn) == []
    # what it says works: every TSN weight lands in the TSM
    from effvid.training.init_weights import match_shift_wrappers

    tsm = effvid.create_model("tsm_resnet18", num_classes=5)
    tsm.load_state_dict(match_shift_wrappers(tsn.state_dict(), tsm.state_dict()))
    assert torch.equal(tsm.backbone.layer1[0].conv1.net.weight, tsn.backbone.layer1[0].conv1.weight)


class _HandWrittenSE(nn.Module):
    """A plain CNN whose squeeze-and-excitation branch is an nn.Sequential, not torchvision's."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.conv = nn.Conv2d(16, 32, 3, padding=1)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(32, 8, 1), nn.ReLU(),
                                nn.Conv2d(8, 32, 1), nn.Sigmoid())
        self.head = nn.Conv2d(32, 8, 1)

    def forward(self, x):
        x = self.conv(self.stem(x))
        return self.head(x * self.se(x))


def _listed_modules(message: str) -> list[str]:
    import ast

    return ast.literal_eval(message[message.rindex("modules=[") + len("modules="):])


@pytest.mark.parametrize("build,pooled,others", [(tvm.efficientnet_b0, 32, 32), (tvm.mobilenet_v3_small, 18, 22),
                                                 (_HandWrittenSE, 2, 2)])
def test_generic_rule_refuses_squeeze_and_excitation(build, pooled, others):
    # It shifted the SE blocks' 1x1 convs too (61 convs of EfficientNet-B0, 40 of MobileNetV3-
    # Small), whose input is a per-frame summary of the channels, not a feature map
    from torchvision.ops import SqueezeExcitation

    model = _meta(build)
    se_convs = {f"{name}.{c}" for name, m in model.named_modules() if isinstance(m, SqueezeExcitation)
                for c in ("fc1", "fc2")} | ({"se.1", "se.3"} if build is _HandWrittenSE else set())
    assert len(se_convs) == pooled
    with pytest.raises(ValueError) as e:
        insert_temporal_shift(model, 8)
    message = str(e.value)
    assert message.startswith(f"{type(model).__name__} has {pooled} convs whose input is a globally pooled 1x1 map "
                              "(squeeze-and-excitation blocks, such as ")
    assert "pass modules=[...]" in message and f"the generic rule's other convs ({others}): modules=[" in message
    assert shift_modules(model) == []
    # the listed convs: the generic rule's, but for the pooled ones; pasted, they are what is shifted
    listed = _listed_modules(message)
    assert len(listed) == others and not se_convs & set(listed)
    generic = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups == 1][1:]
    assert listed == [n for n in generic if n not in se_convs and model.get_submodule(n).in_channels >= 8]
    insert_temporal_shift(model, 8, modules=listed)
    assert len(shift_modules(model)) == others
    assert all(isinstance(model.get_submodule(n), TemporalShift) for n in listed)


def test_generic_rule_still_takes_plain_cnns_and_resnet_variants():
    # ResNeXt and Wide ResNet take the ResNet rule; VGG the generic one (no pooled convs)
    for build, count in ((tvm.resnext50_32x4d, 16), (tvm.wide_resnet50_2, 16), (tvm.vgg11, 7)):
        assert len(shift_modules(insert_temporal_shift(_meta(build), 8))) == count, build.__name__
    # a conv after a global pool in an nn.Sequential (a conv head on the pooled map) is not shifted either
    head = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 16, 3), nn.AdaptiveAvgPool2d((1, 1)), nn.Conv2d(16, 4, 1))
    with pytest.raises(ValueError, match=r"^Sequential has 1 conv whose .* such as 3\).*other convs \(1\): modules=\['1'\]$"):
        insert_temporal_shift(head, 4)


def test_generic_rule_refuses_residual_blocks_and_linear_pointwise_layers():
    # ConvNeXt took 3 shifts (its downsampling convs: a TSN in effect), RegNetX 48 (shortcut
    # projections too), unsaid
    how = ("pass modules=[...], the dotted names of the modules whose input to shift (for residual placement, "
           "the first layer of each residual branch)")
    convnext = _meta(tvm.convnext_tiny)
    with pytest.raises(ValueError) as e:
        insert_temporal_shift(convnext, 8)
    assert str(e.value) == (
        "ConvNeXt has 18 residual blocks (CNBlock, such as features.1.0), whose branch and shortcut the generic "
        "rule, for plain CNNs, cannot tell apart (it would shift 3 convs: features.2.1, features.4.1, "
        f"features.6.1): {how}")
    regnet = tvm.regnet_x_400mf()  # its constructor cannot run on the meta device
    with pytest.raises(ValueError) as e:
        insert_temporal_shift(regnet, 8)
    assert str(e.value) == (
        "RegNet has 22 residual blocks (ResBottleneckBlock, such as trunk_output.block1.block1-0), whose branch "
        "and shortcut the generic rule, for plain CNNs, cannot tell apart (it would shift 48 convs: "
        "trunk_output.block1.block1-0.proj.0, trunk_output.block1.block1-0.f.a.0, "
        f"trunk_output.block1.block1-0.f.c.0, trunk_output.block2.block2-0.proj.0 and 44 more): {how}")
    assert shift_modules(convnext) == shift_modules(regnet) == []
    # named, its blocks' branches are shifted
    branches = [f"features.{s}.{b}.block" for s in (1, 3, 5, 7) for b in range(len(convnext.features[s]))]
    assert len(shift_modules(insert_temporal_shift(convnext, 8, modules=branches))) == 18

    # a hand-written network whose pointwise layers are nn.Linear; a classifier after the last conv is not one
    linear = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Linear(16, 16), nn.Conv2d(16, 32, 2, stride=2), nn.Linear(32, 4))
    with pytest.raises(ValueError) as e:
        insert_temporal_shift(linear, 8)
    assert str(e.value) == ("Sequential has 1 nn.Linear layer among its convs (pointwise layers, such as 1), which "
                            f"the generic rule does not shift (it would shift 1 conv: 2): {how}")
    del linear[1]
    assert len(shift_modules(insert_temporal_shift(linear, 8))) == 1
    # multi-branch networks without a residual sum still take it
    for build, count in ((tvm.densenet121, 119), (tvm.shufflenet_v2_x0_5, 36), (tvm.squeezenet1_0, 25)):
        assert len(shift_modules(insert_temporal_shift(_meta(build), 8))) == count, build.__name__


def _twin_blocks(place):
    torch.manual_seed(0)
    tsm = effvid.create_model("tsm_resnet50", num_classes=5, num_segments=4, shift_place=place).eval()
    tsn = effvid.create_model("tsn_resnet50", num_classes=5, num_segments=4).eval()
    tsn.load_state_dict({k.replace(".net.", "."): v for k, v in tsm.state_dict().items()})
    return tsm, tsn


def test_residual_placement_shifts_only_conv1_input():
    tsm, tsn = _twin_blocks("residual")
    block = tsm.backbone.layer2[0]  # with a downsample branch
    plain = tsn.backbone.layer2[0]
    x = torch.randn(8, 256, 8, 8)
    with torch.no_grad():
        out = block(x)
        # by hand: shift feeds conv1 only; the identity/downsample path sees x unshifted
        h = plain.relu(plain.bn1(plain.conv1(temporal_shift(x, 4))))
        h = plain.relu(plain.bn2(plain.conv2(h)))
        h = plain.bn3(plain.conv3(h))
        assert torch.allclose(out, plain.relu(h + plain.downsample(x)), atol=1e-5)
        wrong = plain.relu(h + plain.downsample(temporal_shift(x, 4)))
        assert not torch.allclose(out, wrong, atol=1e-3)
        # a block without downsample: the identity is x itself
        x1 = torch.randn(8, 256, 8, 8)
        b1, p1 = tsm.backbone.layer1[1], tsn.backbone.layer1[1]
        h = p1.relu(p1.bn1(p1.conv1(temporal_shift(x1, 4))))
        h = p1.bn3(p1.conv3(p1.relu(p1.bn2(p1.conv2(h)))))
        assert torch.allclose(b1(x1), p1.relu(h + x1), atol=1e-5)


def test_inplace_placement_shifts_whole_block_input():
    tsm, tsn = _twin_blocks("inplace")
    assert isinstance(tsm.backbone.layer1[0], TemporalShift)
    x = torch.randn(8, 256, 8, 8)
    with torch.no_grad():
        assert torch.allclose(tsm.backbone.layer2[0](x), tsn.backbone.layer2[0](temporal_shift(x, 4)), atol=1e-5)
        assert len(shift_modules(tsm)) == 16


def test_tsn_and_tsm_have_identical_parameters():
    for arch in ("resnet50", "mobilenet_v2", "resnet_tiny"):
        tsm = _meta(effvid.create_model, f"tsm_{arch}", num_classes=400)
        tsn = _meta(effvid.create_model, f"tsn_{arch}", num_classes=400)
        assert sum(p.numel() for p in tsm.parameters()) == sum(p.numel() for p in tsn.parameters())
        assert [k.replace(".net.", ".") for k in tsm.state_dict()] == list(tsn.state_dict())


def test_set_shift_segments_changes_clip_length():
    torch.manual_seed(0)
    model = effvid.create_model("tsm_resnet_tiny", num_classes=3, num_segments=8).eval()
    set_shift_segments(model, 4)
    # the recogniser's own length and saved configuration follow (save / export use them)
    assert model.num_segments == 4 and model.config["num_segments"] == 4
    assert all(s.num_segments == 4 for s in shift_modules(model))
    # two 4-frame clips, as one (2, 4, ...) batch, equal the same clips run one at a time
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        both = model(x)
        assert torch.allclose(both[0], model(x[:1])[0], atol=1e-5)
        assert torch.allclose(both[1], model(x[1:])[0], atol=1e-5)
    with pytest.raises(ValueError, match="takes clips of 4 frames, got 3"):
        model(torch.randn(1, 3, 3, 32, 32))


def test_clip_of_the_wrong_length_is_refused_not_mixed():
    # Two 4-frame clips given to an 8-frame TSM would be one 8-frame clip to the shifts:
    # clip 0's logits would depend on clip 1. Refused; a TSN takes any length.
    tsm = effvid.create_model("tsm_resnet_tiny", num_classes=3, num_segments=8).eval()
    with pytest.raises(ValueError, match="takes clips of 8 frames, got 4"):
        tsm(torch.randn(2, 4, 3, 32, 32))
    with pytest.raises(ValueError, match="takes clips of 8 frames, got 16"):
        tsm.frame_logits(torch.randn(1, 16, 3, 32, 32))
    tsn = effvid.create_model("tsn_resnet_tiny", num_classes=3, num_segments=8).eval()
    assert tsn(torch.randn(2, 4, 3, 32, 32)).shape == (2, 3)


def test_set_shift_segments_then_save_and_reload(tmp_path):
    from effvid.models.weights import load_model, save_weights

    model = effvid.create_model("tsm_resnet_tiny", num_classes=3, num_segments=4)
    set_shift_segments(model, 8)
    save_weights(model, tmp_path / "m.safetensors")
    again, _ = load_model(tmp_path / "m.safetensors")
    assert again.num_segments == 8 and {s.num_segments for s in shift_modules(again)} == {8}


def test_create_model_defaults_to_kinetics_400_classes():
    # num_classes was required: create_model("tsm_resnet18") raised a TypeError, where
    # torchvision's video models (and timm's image models, with 1000) have a default
    model = effvid.create_model("tsm_resnet_tiny")
    assert model.config["num_classes"] == 400 and model.fc.out_features == 400
    # shift= overrode the name's (a partial's keyword): tsm_resnet_tiny built a TSN
    with pytest.raises(TypeError, match="tsm_resnet_tiny takes no 'shift'"):
        effvid.create_model("tsm_resnet_tiny", shift=False)


def test_bad_model_arguments_name_the_value():
    with pytest.raises(ValueError, match="partial_bn must be True or False, got 'no'"):
        effvid.create_model("tsn_resnet_tiny", num_classes=3, partial_bn="no")
    with pytest.raises(ValueError, match="dropout must be a number in \\[0, 1\\), got '0.5'"):
        effvid.create_model("tsn_resnet_tiny", num_classes=3, dropout="0.5")
    with pytest.raises(ValueError, match="num_segments must be a positive integer, got 0"):
        effvid.create_model("tsn_resnet_tiny", num_classes=3, num_segments=0)
    with pytest.raises(ValueError, match="got 2.5"):
        effvid.create_model("tsm_resnet_tiny", num_classes=3, num_segments=2.5)
    with pytest.raises(ValueError, match="'bogus'"):
        effvid.create_model("tsn_resnet_tiny", num_classes=3, shift_direction="bogus")
    # fold_div 1 with two directions would move every channel to t+1 and none to t-1; the
    # factory's errors name its own argument, shift_div (they said fold_div)
    with pytest.raises(ValueError, match="^shift_div must be an integer >= 2 for a bidirectional shift, got 1$"):
        effvid.create_model("tsm_resnet_tiny", num_classes=3, shift_div=1)
    assert effvid.create_model("tsm_resnet_tiny", num_classes=3, shift_div=1, shift_direction="causal")
    # a shift_div larger than a shifted conv's input channels would shift nothing: a TSN in
    # disguise. The error names the layer (it said "Conv2d") and the largest shift_div allowed.
    with pytest.raises(ValueError, match=r"^shift_div must be at most 16 for this model \(a 1/512 shift of the 16 "
                                         r"input channels of layer1\.0\.conv1 moves none of them\), got 512$"):
        effvid.create_model("tsm_resnet_tiny", num_classes=3, shift_div=512)
    assert len(shift_modules(effvid.create_model("tsm_resnet_tiny", num_classes=3, shift_div=16))) == 4
    x = torch.randn(4, 8, 2, 2)
    with pytest.raises(ValueError, match="fold_div must be an integer >= 2 for a bidirectional shift, got 1"):
        temporal_shift(x, 2, fold_div=1)  # moved every channel to t+1, none to t-1
    with pytest.raises(ValueError, match="num_segments must be a positive integer, got 0"):
        temporal_shift(x, 0)
    assert torch.equal(temporal_shift(x, 2, fold_div=1, direction="causal"),
                       reference_shift(x, 2, 1, "causal"))
    # these crashed with ZeroDivisionError / torch's "empty(): argument 'size'" TypeError
    with pytest.raises(ValueError, match="^shift_div must be an integer >= 2 for a bidirectional shift, got 0$"):
        effvid.create_model("tsm_resnet_tiny", num_classes=3, shift_div=0)
    with pytest.raises(ValueError, match="fold_div must be an integer >= 1 for a causal shift, got 0"):
        insert_temporal_shift(tvm.resnet18(), 4, fold_div=0, direction="causal")
    with pytest.raises(ValueError, match="got 0"):  # a TSN checks it too, like the direction
        effvid.create_model("tsn_resnet_tiny", num_classes=3, shift_div=0)
    for bad in (True, 3.0, "3"):
        with pytest.raises(ValueError, match=f"num_classes must be a positive integer, got {bad!r}"):
            effvid.create_model("tsn_resnet_tiny", num_classes=bad)
    # a TSN takes the shift's arguments (every model takes the same), but refuses values that
    # would change a TSM: create_model("tsn_resnet_tiny", shift_div=3000) was silently a TSN
    for key, value in (("shift_div", 4), ("shift_direction", "causal"), ("shift_place", "inplace")):
        with pytest.raises(ValueError, match=f"^{key} does nothing in tsn_resnet_tiny, which has no temporal "
                                             f"shift \\(tsm_resnet_tiny has one\\), got {value!r}$"):
            effvid.create_model("tsn_resnet_tiny", num_classes=3, **{key: value})
    assert effvid.create_model("tsn_resnet_tiny", num_classes=3, shift_div=8, shift_place="residual")
    with pytest.raises(ValueError, match="^shift_place must be 'residual' for MobileNetV2: its blocks have no "
                                         "in-place rule \\(it is a ResNet option\\), got 'inplace'$"):
        effvid.create_model("tsm_mobilenet_v2", num_classes=3, shift_place="inplace")
    with pytest.raises(ValueError, match="effvid.av.create_av_model"):
        effvid.create_model("av")


@pytest.mark.filterwarnings("ignore")  # torch.jit.trace deprecation / tracer warnings
@pytest.mark.parametrize("direction", ["bidirectional", "causal"])
def test_export_path_equals_eager_path(direction):
    # eager mode writes slices into one tensor; tracing/export builds the result by concatenation
    from effvid.models.temporal_shift import _OFFSETS, _shift, _shift_eager

    for n, t, c, fold_div in [(2, 4, 16, 8), (1, 1, 16, 8), (2, 5, 10, 4)]:
        x = _labelled(n, t, c)
        fold = c // fold_div
        assert torch.equal(_shift(x, t, fold, _OFFSETS[direction]), _shift_eager(x, t, fold, _OFFSETS[direction]))
    x = torch.randn(8, 16, 3, 3)
    traced = torch.jit.trace(lambda v: temporal_shift(v, 4, 8, direction), (x,))
    y = torch.randn(12, 16, 3, 3)  # a new batch: real data movement, not traced constants
    assert torch.equal(traced(y[:8]), temporal_shift(y[:8], 4, 8, direction))


# ----------------------------------------------------------------------------------------------
# CPU inference: TemporalShift writes into a reused per-thread scratch buffer
# ----------------------------------------------------------------------------------------------


class _Record(nn.Module):
    """Returns a copy of what it received (and keeps one), so tests can see the shifted input."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.clone())
        return x * 2.0


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_inference_path_equals_functional_shift_across_shapes(mode):
    ctx = torch.no_grad if mode == "no_grad" else torch.inference_mode
    big, small = _labelled(2, 4, 16, 5, 5).float(), _labelled(1, 4, 16, 2, 3).float()
    rec = _Record()
    m = TemporalShift(rec, 4, 8)
    with ctx():
        outs = [m(big), m(small), m(big), m(small.double())]
    for out, x in zip(outs, [big, small, big, small.double()]):
        assert torch.equal(out, 2.0 * _expected(x, 4, 8, "bidirectional"))
    # the second call reuses the first (larger) buffer: its outputs stay intact
    assert torch.equal(outs[0], outs[2])


def test_inference_outputs_survive_later_calls_and_other_modules():
    torch.manual_seed(0)
    model = insert_temporal_shift(tvm.resnet18(num_classes=5), 4).eval()
    x1, x2 = torch.randn(4, 3, 32, 32), torch.randn(8, 3, 48, 48)
    with torch.enable_grad():
        ref1, ref2 = model(x1).detach(), model(x2).detach()  # allocating path
    with torch.inference_mode():
        y1 = model(x1)
        y2 = model(x2)
        y1_again = model(x1)
    assert torch.allclose(y1, ref1, atol=1e-5) and torch.allclose(y2, ref2, atol=1e-5)
    assert torch.equal(y1, y1_again)


def test_net_returning_its_input_keeps_its_own_tensor():
    m = TemporalShift(nn.Identity(), 2, 8)
    x1, x2 = _labelled(1, 2, 8).float(), _labelled(1, 2, 8).float() + 1000
    with torch.no_grad():
        y1 = m(x1)
        y2 = m(x2)  # must not overwrite y1, which *is* the shifted tensor
    assert torch.equal(y1, _expected(x1, 2, 8, "bidirectional"))
    assert torch.equal(y2, _expected(x2, 2, 8, "bidirectional"))


def test_nested_shift_does_not_share_the_buffer():
    inner = TemporalShift(nn.Identity(), 2, 8)
    outer = TemporalShift(nn.Sequential(inner, _Record()), 2, 8)
    x = _labelled(1, 2, 16).float()
    with torch.no_grad():
        y = outer(x)
    once = _expected(x, 2, 8, "bidirectional")
    assert torch.equal(y, 2.0 * _expected(once, 2, 8, "bidirectional"))


def _in_threads(fn, inputs: list) -> list:
    """fn(x) for every x, each in its own thread, all at once, under inference mode."""
    import threading

    results = [None] * len(inputs)

    def run(i):
        with torch.inference_mode():
            results[i] = fn(inputs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results


def test_threads_do_not_share_the_buffer():
    m = TemporalShift(_Slow(), 4, 8)
    xs = [torch.full((8, 16, 4, 4), float(i + 1)) + _labelled(2, 4, 16, 4, 4).float() for i in range(4)]
    for x, y in zip(xs, _in_threads(m, xs)):
        assert torch.equal(y, _expected(x, 4, 8, "bidirectional") + 1.0)


class _Slow(nn.Module):
    """Reads its input, sleeps (other threads run), then reads it again."""

    def forward(self, x):
        import time

        first = x.clone()
        time.sleep(0.05)
        assert torch.equal(first, x), "input changed while this thread was using it"
        return x + 1.0


def test_grad_mode_forward_is_not_disturbed_by_a_later_inference_forward():
    # With autograd on, the conv keeps its input for backward: that input must not be the
    # reused buffer, or an inference forward before backward would overwrite it.
    torch.manual_seed(0)
    model = insert_temporal_shift(tvm.resnet18(num_classes=3), 2)
    x, other = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    expected = torch.autograd.grad(model(x).sum(), list(model.parameters()))
    loss = model(x).sum()
    with torch.no_grad():
        model(other)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(grads, expected))


# ----------------------------------------------------------------------------------------------
# CPU inference with borrow_input: the conv reads the input shifted in place, whose moved
# channel groups are then put back
# ----------------------------------------------------------------------------------------------


class _RecordingConv(nn.Conv2d):
    """A conv that records (data_ptr, copy) of each input it gets. (Not a hook: TemporalShift
    gives hooked modules a shifted copy of their own, so a hook could not see the borrowing.)"""

    def __init__(self, *args, fail: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen, self.fail = [], fail

    def forward(self, x):
        self.seen.append((x.data_ptr(), x.clone()))
        if self.fail:
            raise RuntimeError("conv failed")
        return super().forward(x)


def _borrowing_conv(c: int, t: int, fold_div: int, direction: str):
    """A borrowing TemporalShift around a 1x1 conv that records what it got."""
    conv = _RecordingConv(c, c, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(c).view(c, c, 1, 1))  # identity conv: output = its input
    conv.double()
    return TemporalShift(conv, t, fold_div, direction, borrow_input=True), conv.seen


@pytest.mark.parametrize("direction", ["bidirectional", "causal"])
@pytest.mark.parametrize("n,t,c,fold_div", [(2, 4, 16, 8), (1, 3, 16, 4), (2, 5, 10, 4), (1, 1, 16, 8),
                                            (3, 2, 8, 2)])
@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_borrowing_shift_is_exact_and_restores_the_input(direction, n, t, c, fold_div, mode):
    m, seen = _borrowing_conv(c, t, fold_div, direction)
    x = _labelled(n, t, c)
    before = x.clone()
    with (torch.no_grad() if mode == "no_grad" else torch.inference_mode()):
        y = m(x)
    want = _expected(before, t, fold_div, direction)
    assert torch.equal(y, want)
    ptr, got = seen[0]
    assert ptr == x.data_ptr()  # the conv read x itself, shifted: no copy was made
    assert torch.equal(got, want)
    assert torch.equal(x, before)  # and x holds its own values again


def test_borrowing_restores_the_input_when_the_conv_raises():
    conv = _RecordingConv(16, 4, 1, fail=True)
    m = TemporalShift(conv, 4, 8, borrow_input=True)
    x = _labelled(2, 4, 16).float()
    before = x.clone()
    with torch.no_grad(), pytest.raises(RuntimeError, match="conv failed"):
        m(x)
    assert conv.seen[0][0] == x.data_ptr()  # it did borrow x
    assert torch.equal(x, before)


@pytest.mark.parametrize("borrow", [True, False])
def test_a_hook_that_keeps_the_conv_input_gets_the_shifted_input_for_good(borrow):
    # Feature extraction / Grad-CAM style: a forward hook stores the wrapped conv's input. On the
    # inference fast paths that input is the block input shifted in place (restored afterwards)
    # or a scratch buffer (overwritten by the next shift), so hooked modules get their own copy.
    conv = nn.Conv2d(16, 16, 1)
    kept = []
    conv.register_forward_hook(lambda mod, args, out: kept.append(args[0]))
    m = TemporalShift(conv, 4, 8, borrow_input=borrow)
    x = _labelled(2, 4, 16).float()
    with torch.inference_mode():
        m(x)
        m(x + 1)  # a second shift would overwrite a scratch buffer
    assert torch.equal(kept[0], _expected(x, 4, 8, "bidirectional"))
    assert torch.equal(kept[1], _expected(x + 1, 4, 8, "bidirectional"))


def test_borrowing_falls_back_to_a_copy_where_it_cannot_modify_the_input():
    # non-contiguous input; an inference tensor outside inference mode (read-only there);
    # autograd on; a wrapped module that is not a convolution (it could return its input)
    m, seen = _borrowing_conv(16, 4, 8, "bidirectional")
    base = _labelled(2, 4, 32)
    x = base[:, ::2]
    with torch.no_grad():
        assert torch.equal(m(x), _expected(x, 4, 8, "bidirectional"))
    with torch.inference_mode():
        frozen = _labelled(2, 4, 16)
    with torch.no_grad():
        assert torch.equal(m(frozen), _expected(frozen, 4, 8, "bidirectional"))
    assert all(ptr not in (x.data_ptr(), frozen.data_ptr()) for ptr, _ in seen)
    x = _labelled(2, 4, 16).requires_grad_()
    assert torch.equal(m(x), _expected(x.detach(), 4, 8, "bidirectional"))
    assert seen[-1][0] != x.data_ptr()
    ident = TemporalShift(nn.Identity(), 4, 8, borrow_input=True)
    x = _labelled(2, 4, 16)
    with torch.no_grad():
        y = ident(x)
    assert torch.equal(y, _expected(x, 4, 8, "bidirectional")) and torch.equal(x, _labelled(2, 4, 16))


def test_insert_borrows_only_network_internal_inputs():
    r = insert_temporal_shift(_meta(tvm.resnet50), 8)
    assert all(m.borrow_input for m in shift_modules(r))
    mb = insert_temporal_shift(_meta(tvm.mobilenet_v2), 8)
    assert len(shift_modules(mb)) == 10 and all(m.borrow_input for m in shift_modules(mb))
    inplace = insert_temporal_shift(_meta(tvm.resnet50), 8, placement="inplace")
    generic = insert_temporal_shift(_PlainCNN(), 4)
    assert not any(m.borrow_input for m in shift_modules(inplace) + shift_modules(generic))


def test_borrowing_model_equals_copying_model_and_leaves_its_input_alone():
    torch.manual_seed(0)
    model = effvid.create_model("tsm_resnet_tiny", num_classes=4, num_segments=4).eval()
    x = torch.randn(2, 4, 3, 32, 32)
    before = x.clone()
    with torch.inference_mode():
        borrowed = model(x)
        for m in shift_modules(model):
            m.borrow_input = False
        copied = model(x)
    assert torch.equal(x, before)
    assert torch.allclose(borrowed, copied, atol=1e-6)


def test_borrowing_model_in_several_threads_matches_one_thread():
    # borrowing writes only into each call's own activations and the calling thread's scratch
    # buffer, so concurrent calls of one model give the results of sequential ones
    torch.manual_seed(0)
    model = effvid.create_model("tsm_resnet_tiny", num_classes=4, num_segments=4).eval()
    assert all(m.borrow_input for m in shift_modules(model))
    xs = [torch.randn(2, 4, 3, 96, 96) for _ in range(4)]
    with torch.inference_mode():
        expected = [model(x) for x in xs]
    results = _in_threads(lambda x: [model(x) for _ in range(10)], xs)
    for want, got in zip(expected, results):
        assert all(torch.equal(y, want) for y in got)


def test_torch_compile_gives_the_eager_results():
    """Under torch.compile the shift is built by concatenation (the branch that tracing and ONNX
    export also take); a compiled TSM must give the eager model's outputs and gradients."""
    import torch._dynamo

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = effvid.create_model("tsm_resnet_tiny", num_classes=5, num_segments=4, dropout=0.0)
    x = torch.randn(2, 4, 3, 32, 32)
    compiled = torch.compile(model, dynamic=False)
    try:
        model.eval()
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-6)
        model.train()
        grads = []
        for f in (compiled, model):
            model.zero_grad()
            f(x).pow(2).sum().backward()
            grads.append([p.grad.clone() for p in model.parameters()])
        for got, want in zip(*grads):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
        assert any(g.abs().sum() > 0 for g in grads[0])
    finally:
        torch._dynamo.reset()


# ----------------------------------------------------------------------------------------------
# The GPU kernel (effvid/models/shift_kernel.py), run by Triton's interpreter on the CPU
# ----------------------------------------------------------------------------------------------

_KERNEL_CHECK = r"""
import itertools, sys, torch
sys.path.insert(0, {tests!r})
from test_temporal_shift import _expected, _labelled
from effvid.models import shift_kernel
from effvid.models.temporal_shift import _OFFSETS
checked = 0
for (n, t, c, h, w), fold_div, direction in itertools.product(
        [(2, 4, 16, 3, 5), (1, 3, 24, 1, 1), (2, 2, 8, 40, 40), (1, 8, 3, 2, 2), (3, 5, 10, 7, 7), (2, 1, 17, 2, 2)],
        [8, 4, 2], ["bidirectional", "causal"]):
    fold = c // fold_div
    if fold == 0:
        continue
    x = _labelled(n, t, c, h, w)
    y = shift_kernel.launch(x, t, fold, _OFFSETS[direction])
    assert torch.equal(y, _expected(x, t, fold_div, direction)), (n, t, c, h, w, fold_div, direction)
    # the backward pass is the kernel with the offsets negated: it sends each gradient back
    g = torch.randn(x.shape, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    (_expected(xr, t, fold_div, direction) * g).sum().backward()
    back = shift_kernel.launch(g, t, fold, tuple(-o for o in _OFFSETS[direction]))
    assert torch.equal(back, xr.grad), ("backward", n, t, c, h, w, fold_div, direction)
    # GPU inference's borrowing: the same shift in place, then every value put back
    y = x.clone()
    saved = shift_kernel.launch_in_place(y, t, fold, _OFFSETS[direction])
    assert torch.equal(y, _expected(x, t, fold_div, direction)), ("in place", n, t, c, h, w, fold_div, direction)
    assert saved.numel() == n * len(_OFFSETS[direction]) * fold * h * w
    shift_kernel.launch_restore(y, saved, t, fold, _OFFSETS[direction])
    assert torch.equal(y, x), ("restore", n, t, c, h, w, fold_div, direction)
    checked += 1
print("checked", checked)
"""


def test_gpu_kernel_moves_every_element_where_the_eager_shift_does():
    pytest.importorskip("triton")
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, TRITON_INTERPRET="1")  # must be set before triton is imported
    out = subprocess.run([sys.executable, "-c", _KERNEL_CHECK.format(tests=str(Path(__file__).parent))],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["checked", "32"]


def test_gpu_kernel_is_not_used_for_cpu_tensors():
    from effvid.models import shift_kernel

    x = torch.randn(4, 8, 2, 2)
    assert not shift_kernel.available(x)
    assert shift_kernel.shift(x, 2, 1, (1, -1)) is None


def test_gpu_kernels_compile_for_an_nvidia_gpu_with_any_argument_equal_to_one():
    # The interpreter does not specialise arguments; a real build turns an integer argument
    # equal to 1 into a constant (a `.to()` on one failed to compile). Build every variant for
    # an H100 on this machine (Triton brings ptxas), and check in the PTX that the in-place
    # kernel does all its loads before the barrier and all its stores to x after it.
    triton = pytest.importorskip("triton")
    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError:
        pytest.skip("this Triton version has no ASTSource / GPUTarget")
    from effvid.models import shift_kernel

    copy_kernel, in_place_kernel = shift_kernel._build()
    cases = [(copy_kernel, dict(rows=1024, hw=49, channels=64, segments=8, fold=8, off0=1, off1=-1),
              dict(NGROUPS=2, ROWS=64, COLS=64))]
    for restore in (False, True):
        cases.append((in_place_kernel, dict(hw=49, channels=64, segments=8, fold=8, moved=16, off0=1, off1=-1),
                      dict(RESTORE=restore, TB=8, COLS=64)))
    built = 0
    for kernel, scalars, constants in cases:
        for one in [None, *scalars]:
            sig, consts = {}, dict(constants)
            for name in kernel.arg_names:
                if name.endswith("_ptr"):
                    sig[name] = "*fp32"
                elif name in constants or name == one:
                    sig[name] = "constexpr"
                    consts.setdefault(name, 1)
                else:
                    sig[name] = "i32"
            compiled = triton.compile(ASTSource(kernel, sig, consts), target=GPUTarget("cuda", 90, 32))
            built += 1
            if kernel is in_place_kernel and one is None:
                lines = [ln.strip() for ln in compiled.asm["ptx"].splitlines()]
                barrier = next(i for i, ln in enumerate(lines) if ln.startswith("bar.sync"))
                loads = [i for i, ln in enumerate(lines) if ln.startswith("ld.global") or " ld.global" in ln]
                stores = [i for i, ln in enumerate(lines) if ln.startswith("st.global") or " st.global" in ln]
                assert loads and max(loads) < barrier, constants
                after = [i for i in stores if i > barrier]
                # restore: every store after the barrier; shift: all but the saved frame's
                assert len(after) == len(stores) - (0 if constants["RESTORE"] else 1) and after, constants
    assert built == 8 + 2 * 8


@pytest.mark.parametrize("direction", ["bidirectional", "causal"])
def test_a_kernel_that_fails_is_turned_off_and_the_input_is_put_back(direction, monkeypatch):
    # A Triton launch on this GPU-less machine fails for real ("0 active drivers"), as a build
    # failure would on a GPU machine without a C compiler: the restore must still put every
    # value back (in PyTorch), warn once, and leave the kernels off for the process.
    pytest.importorskip("triton")
    from effvid.models import shift_kernel
    from effvid.models.temporal_shift import _OFFSETS, _shift_eager

    monkeypatch.setattr(shift_kernel, "_off_reason", None)  # restored after the test
    t, c, fold_div = 4, 16, 8
    x = _labelled(2, t, c)
    fold, offsets = c // fold_div, _OFFSETS[direction]
    # the state after an in-place shift: x shifted, and the frame each moved channel dropped
    shifted = _shift_eager(x, t, fold, offsets)
    x5 = x.view(2, t, c, 2, 3)
    saved = torch.cat([x5[:, 0 if off > 0 else t - 1, g * fold:(g + 1) * fold] for g, off in enumerate(offsets)], dim=1)
    with pytest.warns(RuntimeWarning, match="temporal-shift kernel failed"):
        shift_kernel.restore(shifted, saved, t, fold, offsets)
    assert torch.equal(shifted, x)
    assert shift_kernel.off_reason() and "driver" in shift_kernel.off_reason()
    # and an in-place shift that cannot launch changes nothing
    y = x.clone()
    with pytest.warns(RuntimeWarning):
        assert shift_kernel.shift_in_place(y, t, fold, offsets) is None
    assert torch.equal(y, x)


def test_disabling_the_kernel_is_per_thread_and_nests():
    import threading

    from effvid.models import shift_kernel

    seen = []
    with shift_kernel.disabled():
        with shift_kernel.disabled():
            pass
        assert shift_kernel._local.disabled_depth == 1  # the inner block did not end the outer
        t = threading.Thread(target=lambda: seen.append(shift_kernel._local.disabled_depth))
        t.start()
        t.join()
    assert seen == [0] and shift_kernel._local.disabled_depth == 0
