"""AV transformer model of effvid.av: factorised linear, sharing, parameter counts, masks."""

import copy

import pytest
import torch

from effvid.av import (FactorizedLinear, TransformerLayer, build_transformers, create_av_model,
                       format_parameter_report, parameter_report)
from effvid.av.encoders import ResNet3D, build_audio_encoder, build_visual_encoder

# clips of 4 frames and 0.25 s (4000 samples at 16 kHz)
TINY = dict(visual_cnn="slow_tiny", audio_cnn="resnet_tiny", width=32, heads=4, ffn=64, rank=8, layers=3,
            frames_per_clip=4, clip_seconds=0.25)
MATRICES = ("query", "key", "value", "output", "ffn_in", "ffn_out")


def count(module):
    return sum(p.numel() for p in module.parameters())


# -- factorised linear ------------------------------------------------------------------------------


def test_factorized_linear_equals_dense_product():
    torch.manual_seed(0)
    fl = FactorizedLinear(24, 40, 6, normalize=False)
    x = torch.randn(5, 7, 24)
    u, s, v = fl.U.weight, fl.S.weight, fl.V.weight
    assert u.shape == (40, 6) and s.shape == (6, 6) and v.shape == (6, 24)
    expected = x @ (u @ s @ v).T + fl.U.bias
    assert torch.allclose(fl(x), expected, atol=1e-5)
    assert torch.allclose(fl.dense_weight(), u @ s @ v)
    # the paper's variant L2-normalises V·x before S
    fl.normalize = True
    h = x @ v.T
    assert torch.allclose(fl(x), (h / h.norm(dim=-1, keepdim=True)) @ s.T @ u.T + fl.U.bias, atol=1e-5)


def test_S_stays_orthogonal_under_adamw():
    torch.manual_seed(0)
    fl = FactorizedLinear(16, 16, 12)
    opt = torch.optim.AdamW(fl.parameters(), lr=0.05, weight_decay=0.1)
    before = fl.S.weight.detach().clone()
    for _ in range(20):
        opt.zero_grad()
        loss = (fl(torch.randn(32, 16)) - torch.randn(32, 16)).pow(2).mean()
        loss.backward()
        opt.step()
    s = fl.S.weight.detach()
    assert not torch.allclose(s, before, atol=1e-3)  # it did train
    assert torch.allclose(s.T @ s, torch.eye(12), atol=1e-5)
    assert torch.allclose(s @ s.T, torch.eye(12), atol=1e-5)


def trained_partial_model():
    """A tiny partial-sharing model after one AdamW step (so each S has moved from its base), in
    eval mode, and a batch for it."""
    torch.manual_seed(0)
    model = create_av_model(sharing="partial", **TINY)
    video, audio = torch.randn(2, 3, 3, 4, 32, 32), torch.randn(2, 3, 4000) * 0.1
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(video, audio).fused_summary.pow(2).mean().backward()
    opt.step()
    S = model.visual_transformer.layers[0].query.S
    assert (S.weight - S.parametrizations.weight[0].base).abs().max() > 1e-5  # S trained
    return model.eval(), video, audio


@pytest.mark.parametrize("dtype, atol", [(torch.bfloat16, 0.1), (torch.float16, 0.02)])
def test_a_trained_partial_model_runs_in_half_precision(dtype, atol):
    # torch.matrix_exp gives NaN in bfloat16/float16 on the CPU: every output of a trained model
    # cast with .bfloat16() or .half() was NaN. S is computed in float32, then cast.
    model, video, audio = trained_partial_model()
    with torch.no_grad():
        want = model(video, audio)
        got = copy.deepcopy(model).to(dtype)(video.to(dtype), audio.to(dtype))
    for name in ("fused_summary", "visual_tokens", "audio_tokens", "fused_visual_tokens", "fused_audio_tokens"):
        out = getattr(got, name)
        assert out.dtype == dtype and torch.isfinite(out).all(), name
        torch.testing.assert_close(out.float(), getattr(want, name), atol=atol, rtol=0.05, msg=name)
    S = model.to(dtype).audio_transformer.layers[0].ffn_in.S.weight
    assert S.dtype == dtype
    torch.testing.assert_close((S.T @ S).float(), torch.eye(8), atol=0.03, rtol=0)


def test_S_of_a_float64_model_is_computed_in_float64():
    model, _, _ = trained_partial_model()
    S = model.double().audio_transformer.layers[0].ffn_in.S.weight
    assert S.dtype == torch.float64  # not rounded to float32
    torch.testing.assert_close(S.T @ S, torch.eye(8, dtype=torch.float64), atol=1e-6, rtol=0)


def test_a_partial_model_trains_under_autocast():
    model, video, audio = trained_partial_model()
    with torch.no_grad():
        want = model(video, audio).fused_summary
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        S = model.visual_transformer.layers[0].query.S.weight
        out = model(video, audio).fused_summary
    # S is computed in float32 under autocast too (its product with the base is not run in bfloat16)
    assert S.dtype == torch.float32
    torch.testing.assert_close(S.T @ S, torch.eye(8), atol=1e-5, rtol=0)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), want, atol=0.1, rtol=0.05)
    out.float().pow(2).mean().backward()
    grad = model.visual_transformer.layers[0].query.S.parametrizations.weight.original.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().max() > 0  # gradients reach S


# -- sharing ---------------------------------------------------------------------------------------


def small_transformers(sharing, names=("visual", "audio", "multimodal")):
    return build_transformers(names, sharing=sharing, width=32, heads=4, depth=3, ffn=64, rank=8, dropout=0.0)


def test_partial_sharing_shares_U_and_norms_only():
    torch.manual_seed(0)
    ts = small_transformers("partial")
    layers = [t.layers[0] for t in ts.values()]
    assert all(len(t.layers) == 1 and t.depth == 3 for t in ts.values())
    for m in MATRICES:
        fls = [getattr(layer, m) for layer in layers]
        assert fls[0].U.weight is fls[1].U.weight is fls[2].U.weight
        assert fls[0].U.bias is fls[1].U.bias is fls[2].U.bias
        for a, b in ((0, 1), (0, 2), (1, 2)):
            assert fls[a].V.weight is not fls[b].V.weight and not torch.allclose(fls[a].V.weight, fls[b].V.weight)
            assert fls[a].S.parametrizations.weight.original is not fls[b].S.parametrizations.weight.original
            assert not torch.allclose(fls[a].S.weight, fls[b].S.weight)
    assert layers[0].norm1.weight is layers[1].norm1.weight is layers[2].norm1.weight
    assert layers[0].norm2.bias is layers[2].norm2.bias


def test_shared_U_gradient_sums_over_transformers():
    torch.manual_seed(0)
    ts = small_transformers("partial")
    inputs = {n: torch.randn(2, 5, 32) for n in ts}
    targets = {n: torch.randn(2, 5, 32) for n in ts}
    u = ts["visual"].layers[0].ffn_in.U.weight

    def loss_of(name):
        return (ts[name](inputs[name]) - targets[name]).pow(2).mean()

    parts = []
    for name in ts:  # each transformer's contribution, computed separately
        u.grad = None
        loss_of(name).backward()
        assert u.grad is not None and u.grad.abs().sum() > 0
        parts.append(u.grad.clone())
    u.grad = None
    sum(loss_of(n) for n in ts).backward()
    assert torch.allclose(u.grad, parts[0] + parts[1] + parts[2], atol=1e-6)
    assert not torch.allclose(parts[0], parts[1])


def test_layers_and_all_sharing_identity():
    ts = small_transformers("layers")
    assert len({id(t) for t in ts.values()}) == 3 and all(len(t.layers) == 1 for t in ts.values())
    ts = small_transformers("all")
    assert len({id(t) for t in ts.values()}) == 1
    ts = small_transformers("none")
    assert all(len(t.layers) == 3 for t in ts.values())
    assert ts["visual"].layers[0].query.weight is not ts["visual"].layers[1].query.weight


# -- parameter counts at the paper configuration ---------------------------------------------------


def test_bert_layer_arithmetic():
    assert count(TransformerLayer(768, 12, 3072)) == 4 * (768**2 + 768) + (768 * 3072 + 3072) + (3072 * 768 + 768) + 4 * 768 == 7_087_872


@pytest.mark.parametrize("sharing,total", [("none", 127_581_696), ("layers", 21_263_616), ("all", 7_087_872),
                                           ("partial", 3_843_840)])
def test_paper_transformer_parameter_counts(sharing, total):
    model = create_av_model(visual_cnn="slow_tiny", audio_cnn="resnet_tiny", sharing=sharing)
    report = parameter_report(model)
    t = report["transformers"]
    assert t["total"] == total
    assert report["total"] == count(model)  # deduplicated like model.parameters()
    comps = report["components"]
    assert set(comps) == {"visual_cnn", "audio_cnn", "visual_projection", "audio_projection", "visual_embedding",
                          "audio_embedding", "fusion_embedding", "visual_transformer", "audio_transformer",
                          "multimodal_transformer"}
    assert sum(c["total"] for n, c in comps.items() if not n.endswith("transformer")) + t["total"] == report["total"]
    assert comps["visual_projection"]["total"] == 32 * 768 + 768 + 2 * 768  # Linear(32→768) + LayerNorm
    if sharing == "partial":
        # torch's orthogonal parametrisation stores S as a full 128×128 tensor: the count above.
        # By degrees of freedom each of the 18 S matrices has 128·127/2 values.
        assert t["orthogonal_matrices"] == 18
        assert t["free"] == 3_843_840 - 18 * (128 * 128 - 128 * 127 // 2) == 3_695_232
        # shared: 6 U matrices with bias + 2 LayerNorms
        assert t["shared"] == 4 * (768 * 128 + 768) + (3072 * 128 + 3072) + (768 * 128 + 768) + 4 * 768
        assert comps["visual_transformer"]["shared"] == t["shared"]
    else:
        assert t["free"] == total
    if sharing == "all":
        assert model.visual_transformer is model.audio_transformer is model.multimodal_transformer
        # one module serves the three roles: all its parameters are shared between them
        assert t["unique_modules"] == 1 and (t["shared"], t["private"]) == (total, 0)
        for role in ("visual_transformer", "audio_transformer", "multimodal_transformer"):
            assert (comps[role]["total"], comps[role]["private"], comps[role]["shared"]) == (total, 0, total)
    else:  # separate modules per role: only partial shares anything (checked above)
        assert t["unique_modules"] == 3
        if sharing != "partial":
            assert (t["shared"], t["private"]) == (0, total)
            assert all(c["shared"] == 0 for c in comps.values())
    text = format_parameter_report(report)
    assert f"{total:,}" in text and "visual_cnn" in text


def test_report_of_one_module_serving_two_roles():
    # `effvid info av --fusion late --sharing all` read "0 shared between transformers, 7,087,872
    # private" and 0 in each role's shared column, though one module serves both roles
    text = format_parameter_report(create_av_model(visual_cnn="slow_tiny", audio_cnn="resnet_tiny",
                                                   sharing="all", fusion="late")).splitlines()
    assert f"{'visual_transformer':<24}{'7,087,872':>14}{'0':>14}{'7,087,872':>14}" in text
    assert f"{'audio_transformer':<24}{'7,087,872':>14}{'0':>14}{'7,087,872':>14}" in text
    assert ("transformers (2 roles, 1 module(s)): 7,087,872 parameters (7,087,872 shared between "
            "transformers, 0 private)") in text
    assert "model total: 7,252,904 parameters (7,252,904 trainable)" in text  # counted once
    assert ("note: the 2 transformer roles are 1 module(s): a module's parameters are shared between the "
            "roles it serves, listed in each of their rows and counted once in the totals") in text
    # one role: nothing to share with
    early = parameter_report(create_av_model(sharing="all", fusion="early", **TINY))
    assert early["components"]["multimodal_transformer"]["shared"] == early["transformers"]["shared"] == 0
    assert not any("roles are" in note for note in early["notes"])


def test_docs_example_report_is_what_the_model_prints():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "av.md").read_text(encoding="utf-8")
    intro = 'Example (`create_av_model(visual_cnn="slow_tiny", audio_cnn="resnet_tiny")`):\n\n```\n'
    assert intro in doc
    example = doc.split(intro, 1)[1].split("\n```", 1)[0]
    model = create_av_model(visual_cnn="slow_tiny", audio_cnn="resnet_tiny")
    assert format_parameter_report(model) == example


def test_fusion_modes_transformer_sets():
    late = parameter_report(create_av_model(sharing="layers", fusion="late", **TINY))
    assert late["transformers"]["names"] == ["visual_transformer", "audio_transformer"]
    early = create_av_model(sharing="none", fusion="early", **TINY)
    assert not hasattr(early, "visual_transformer")
    one_layer = 4 * (32 * 32 + 32) + (32 * 64 + 64) + (64 * 32 + 32) + 4 * 32
    assert parameter_report(early)["transformers"]["total"] == 3 * one_layer
    assert late["transformers"]["total"] == 2 * one_layer
    assert "transformers (1 role, 1 module(s))" in format_parameter_report(early)  # was "1 roles"
    assert "transformers (2 roles, 2 module(s))" in format_parameter_report(late)


# -- argument checks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name,value", [("rank", 0), ("rank", -1), ("rank", 2.5), ("rank", True), ("width", 0),
                                        ("heads", 0), ("layers", 0), ("ffn", 0), ("max_clips", 0),
                                        ("frames_per_clip", 0), ("sample_rate", 0), ("n_mels", 0), ("heads", 4.0)])
def test_create_av_model_refuses_sizes_below_one(name, value):
    # rank=0 used to build zero-element S, V, U with only torch's "Initializing zero-element
    # tensors" warning: every factorised matrix then output just its bias
    with pytest.raises(ValueError) as err:
        create_av_model(**{**TINY, name: value})
    assert str(err.value) == f"{name} must be a positive integer, got {value!r}"


@pytest.mark.parametrize("value, message", [
    (0, "clip_seconds must be a positive number of seconds, got 0"),
    (float("nan"), "clip_seconds must be a positive number of seconds, got nan"),
    ("1", "clip_seconds must be a positive number of seconds, got '1'"),
    (1e-5, "clip_seconds holds no audio sample at sample_rate=16000, got 1e-05"),
])
def test_create_av_model_refuses_clip_seconds_as_the_sampler_does(value, message):
    with pytest.raises(ValueError) as err:
        create_av_model(**{**TINY, "clip_seconds": value})
    assert str(err.value) == message


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5, "0.1"])
def test_create_av_model_refuses_dropout_outside_0_1(value):
    with pytest.raises(ValueError) as err:
        create_av_model(**TINY, dropout=value)
    assert str(err.value) == f"dropout must be a number in [0, 1), got {value!r}"


def test_building_blocks_refuse_rank_below_one():
    with pytest.raises(ValueError, match="^rank must be a positive integer, got 0$"):
        FactorizedLinear(8, 8, 0)
    with pytest.raises(ValueError, match="^depth must be a positive integer, got 0$"):
        build_transformers(["visual"], sharing="layers", width=32, heads=4, ffn=64, depth=0)
    torch.manual_seed(0)  # rank 1 is the smallest that works: the output depends on the input
    fl = FactorizedLinear(4, 3, 1)
    assert not torch.allclose(fl(torch.ones(1, 4)), fl(-torch.ones(1, 4)))


# -- forward, masks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fusion", ["early", "mid", "late"])
@pytest.mark.parametrize("sharing", ["none", "partial"])
def test_padding_mask_makes_padded_clips_irrelevant(fusion, sharing):
    torch.manual_seed(0)
    model = create_av_model(sharing=sharing, fusion=fusion, **TINY).eval()
    b, k = 2, 5
    video = torch.randn(b, k, 3, 4, 32, 32)
    audio = torch.randn(b, k, 4000)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    with torch.no_grad():
        out = model(video, audio, mask)
        garbage = video.clone()
        garbage[1, 3:] = 100.0
        noisy_audio = audio.clone()
        noisy_audio[1, 3:] = 1.0
        out2 = model(garbage, noisy_audio, mask)
        short = model(video[1:, :3], audio[1:, :3])  # the same video cut to its 3 real clips
    assert out.fused_summary.shape == (2, 64) and out.visual_tokens.shape == (2, 5, 32)
    assert out.visual_features.shape == (2, 5, 32) and out.visual_features[1, 3:].abs().sum() == 0
    assert torch.allclose(out.fused_summary, out2.fused_summary, atol=1e-5)
    assert torch.allclose(out.fused_summary[1], short.fused_summary[0], atol=1e-4)
    assert torch.allclose(out.visual_tokens[1, :3], short.visual_tokens[0], atol=1e-4)
    if fusion == "late":
        assert out.fused_visual_tokens is None
    else:
        assert torch.allclose(out.fused_audio_tokens[1, :3], short.fused_audio_tokens[0], atol=1e-4)


def test_no_audio_mask_and_backward():
    torch.manual_seed(0)
    model = create_av_model(sharing="partial", spec_augment=True, **TINY).train()
    video = torch.randn(2, 3, 3, 4, 32, 32)
    audio = torch.randn(2, 3, 4000)
    audio_mask = torch.tensor([[True] * 3, [False] * 3])  # second video has no audio
    out = model(video, audio, audio_mask=audio_mask)
    assert out.audio_features[1].abs().sum() == 0 and torch.isfinite(out.fused_summary).all()
    out.fused_summary.sum().backward()
    u = model.visual_transformer.layers[0].query.U.weight
    assert u is model.multimodal_transformer.layers[0].query.U.weight and u.grad is not None
    assert model.visual_cnn.stem[0].weight.grad is not None
    # log-mel input is accepted as well
    spec = model.audio_frontend[0](audio)
    assert model.eval()(video, spec).fused_summary.shape == (2, 64)


@pytest.mark.parametrize("video_shape, audio_shape, masks, message", [
    # torch said "The shape of the mask [2, 3] at index 1 does not match ..."
    ((2, 3), (2, 4), {}, "video and audio must be the same (B, K) sequences of clips, got 3 clips for video, "
                         "4 for audio"),
    ((2, 3), (1, 4), {}, "video and audio must be the same (B, K) sequences of clips, got a batch of 2 for "
                         "video, 1 for audio and 3 clips for video, 4 for audio"),
    ((2, 3), (2, 3), {"mask": (2, 4)}, "mask must be (B, K) = (2, 3), as video is, got (2, 4)"),
    ((2, 3), (2, 3), {"audio_mask": (3,)}, "audio_mask must be (B, K) = (2, 3), as video is, got (3,)"),
])
def test_video_and_audio_of_other_clip_counts_are_named(video_shape, audio_shape, masks, message):
    model = create_av_model(**TINY)
    masks = {name: torch.ones(shape, dtype=torch.bool) for name, shape in masks.items()}
    with pytest.raises(ValueError) as err:
        model(torch.randn(*video_shape, 3, 4, 32, 32), torch.randn(*audio_shape, 4000), **masks)
    assert str(err.value) == message


def test_contextualize_refuses_features_of_other_clip_counts():
    # early fusion split the joined tokens at the wrong place, silently
    model = create_av_model(fusion="early", **TINY)
    with pytest.raises(ValueError) as err:
        model.contextualize(torch.randn(2, 3, 32), torch.randn(2, 5, 32), torch.ones(2, 3, dtype=torch.bool))
    assert str(err.value) == ("visual_features and audio_features must be the same (B, K) sequences of clips, "
                              "got 3 clips for visual_features, 5 for audio_features")


def test_video_of_other_layouts_is_refused_by_its_shape():
    with pytest.raises(ValueError) as err:
        create_av_model(**TINY)(torch.randn(2, 3, 4, 32, 32), torch.randn(2, 3, 4000))
    assert str(err.value) == "video must be (B, K, 3, T, H, W) clips, got (2, 3, 4, 32, 32)"


def _bad_inputs():
    """name -> (video, audio, the message) for TINY models: each was taken, or failed deep in a CNN."""
    video, audio = torch.randn(1, 2, 3, 4, 32, 32), torch.randn(1, 2, 4000) * 0.1
    frames = torch.randint(0, 256, (1, 2, 4, 32, 32, 3), dtype=torch.uint8)
    return {
        # a 40-mel spectrogram ran, as did a waveform of 8-kHz audio, as one of 16 kHz
        "mel bins": (video, torch.randn(1, 2, 40, 26),
                     "audio spectrograms must have the model's n_mels=80 mel bins, (B, K, 80, frames), got 40 in "
                     "(1, 2, 40, 26)"),
        "samples": (video, torch.randn(1, 2, 2000),
                    "audio waveforms must have 4000 samples per clip (the model's clip_seconds=0.25 at "
                    "sample_rate=16000), got 2000 in (1, 2, 2000): read them with LongVideoSampler("
                    "clip_seconds=0.25, sample_rate=16000), or build the model with the clip length and rate "
                    "they have"),
        # taken for spectrograms of 1 mel bin and 4000 frames
        "waveform channel": (video, audio[:, :, None],
                             "audio must be (B, K, samples) waveforms or (B, K, n_mels, frames) log-mels, got "
                             "(1, 2, 1, 4000): waveforms with a channel dimension, taken for spectrograms of one mel "
                             "bin? audio.squeeze(2) takes it off"),
        # a 3D CNN ran on them
        "frames per clip": (video[:, :, :, :2], audio,
                            "video must have the model's frames_per_clip=4 frames per clip, (B, K, 3, 4, H, W), got 2 "
                            "in (1, 2, 3, 2, 32, 32): sample clips with LongVideoSampler(frames_per_clip=4), or build "
                            "the model with frames_per_clip=2"),
        # "Given groups=1, weight of size [4, 3, 1, 7, 7], expected input[2, 4, 32, 32, 3] to have 3 channels"
        "sampler layout": (frames, audio,
                           "video must be (B, K, 3, T, H, W) normalised float clips, got (1, 2, 4, 32, 32, 3) "
                           "torch.uint8, the layout of LongVideoSampler's frames (B, K, T, H, W, 3): "
                           "effvid.av.frames_to_clips(frames) converts them"),
        # "expected scalar type Byte but found Float"
        "uint8 clips": (frames.permute(0, 1, 5, 2, 3, 4), audio,
                        "video must be normalised float clips, as effvid.av.frames_to_clips makes them "
                        "(torch.float32, as the model's weights are), got torch.uint8"),
        # "expected scalar type Double but found Float"
        "float64 video": (video.double(), audio,
                          "video must be torch.float32, as the model's weights are, got torch.float64: "
                          "video.to(torch.float32)"),
        "float64 spectrograms": (video, torch.randn(1, 2, 80, 26, dtype=torch.float64),
                                 "audio must be torch.float32, as the model's weights are, got torch.float64: "
                                 "audio.to(torch.float32)"),
        # taken as floats 32768 times too loud
        "int16 waveforms": (video, (audio * 32767).to(torch.int16),
                            "audio must be float waveforms in [-1, 1] (as read_audio and LongVideoSampler give them) "
                            "or float log-mel spectrograms, got torch.int16; int16 PCM: audio / 32768"),
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
@pytest.mark.parametrize("visual_cnn", ["slow_tiny", "tsm_resnet_tiny"])
def test_wrong_inputs_are_refused_before_the_cnns_run(case, visual_cnn):
    model = create_av_model(**{**TINY, "visual_cnn": visual_cnn, "layers": 1})
    ran = []
    for cnn in (model.visual_cnn, model.audio_cnn):
        cnn.register_forward_pre_hook(lambda module, args: ran.append(module))
    video, audio, message = _bad_inputs()[case]
    with pytest.raises(ValueError) as err:
        model(video, audio)
    assert str(err.value) == message
    assert ran == []  # refused early, not once the visual CNN had run


def test_the_inputs_the_checks_let_through_give_the_same_features():
    torch.manual_seed(0)
    model = create_av_model(**TINY).eval()
    video, audio = torch.randn(1, 2, 3, 4, 32, 32), torch.randn(1, 2, 4000) * 0.1
    with torch.no_grad():
        want = model(video, audio).fused_summary
        # float64 waveforms: the log-mel frontend computes in float32 whatever it is given
        torch.testing.assert_close(model(video, audio.double()).fused_summary, want)
        # log-mels of the model's own frontend, in place of the waveforms
        torch.testing.assert_close(model(video, model.spectrogram(audio)).fused_summary, want)
        # under autocast, inputs of another float dtype than the weights' are cast by autocast
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(video.bfloat16(), audio).fused_summary
    torch.testing.assert_close(got.float(), want, atol=0.1, rtol=0.05)
    # an AVModel made without frames_per_clip or clip_seconds checks neither
    from effvid.av import AVModel

    transformers = {name.removesuffix("_transformer"): t for name, t in model.transformers().items()}
    free = AVModel(model.visual_cnn, model.audio_cnn, transformers, width=32,
                   audio_frontend=model.audio_frontend).eval()
    assert (free.frames_per_clip, free.samples_per_clip, free.n_mels) == (None, None, 80)
    with torch.no_grad():
        assert free(video[:, :, :, :2], audio[..., :2000]).fused_summary.shape == (1, 64)


# -- clip encoders ------------------------------------------------------------------------------------


def test_clip_encoders():
    slow = ResNet3D()
    assert slow.out_dim == 2048 and 31_000_000 < count(slow) < 33_000_000  # slow-only R50: 31.6M
    half = build_audio_encoder("resnet50_half")
    assert half.out_dim == 1024 and 5_500_000 < count(half) < 6_500_000
    assert half(torch.randn(2, 1, 80, 101)).shape == (2, 1024)
    r3d = build_visual_encoder("r3d_18")
    assert r3d.out_dim == 512 and r3d(torch.randn(1, 3, 4, 32, 32)).shape == (1, 512)
    tsm = build_visual_encoder("tsm_resnet_tiny", frames_per_clip=4)
    clips = torch.randn(3, 3, 4, 32, 32)
    feats = tsm(clips)
    assert feats.shape == (3, tsm.out_dim)
    # clip embedding = mean of the per-frame TSM features of that clip
    per_frame = tsm.backbone(clips.transpose(1, 2).reshape(12, 3, 32, 32)).view(3, 4, -1)
    assert torch.allclose(feats, per_frame.mean(1), atol=1e-5)
    with pytest.raises(ValueError):
        tsm(torch.randn(1, 3, 8, 32, 32))
    model = create_av_model(visual_cnn="tsm_resnet_tiny", audio_cnn="resnet_tiny", frames_per_clip=4, clip_seconds=0.25,
                            sharing="all", width=32, heads=4, ffn=64, layers=2)
    assert model(torch.randn(1, 2, 3, 4, 32, 32), torch.randn(1, 2, 4000)).fused_summary.shape == (1, 64)
    with pytest.raises(ValueError):
        create_av_model(sharing="some")


def test_state_dict_round_trip_keeps_sharing():
    torch.manual_seed(0)
    a = create_av_model(sharing="partial", **TINY).eval()
    torch.manual_seed(1)
    b = create_av_model(sharing="partial", **TINY).eval()
    b.load_state_dict(a.state_dict())  # includes each S's orthogonal base buffer
    x = (torch.randn(1, 2, 3, 4, 32, 32), torch.randn(1, 2, 4000))
    with torch.no_grad():
        assert torch.allclose(a(*x).fused_summary, b(*x).fused_summary, atol=1e-6)
    assert b.visual_transformer.layers[0].value.U is b.audio_transformer.layers[0].value.U
