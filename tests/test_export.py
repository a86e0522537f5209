"""ONNX export of the offline and online TSM, and the ONNX Runtime online runner."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import effvid
from effvid.models.online import OnlineRecognizer, to_online_step

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from effvid.export import OnnxOnlineRunner, export_offline, export_online, read_metadata, run_offline  # noqa: E402

SIZE = 32


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(direction: str = "causal", t: int = 4) -> nn.Module:
    torch.manual_seed(0)
    model = effvid.create_model("tsm_resnet_tiny", num_classes=5, num_segments=t,
                                shift_direction=direction)
    g = torch.Generator().manual_seed(1)
    for m in model.modules():  # realistic BN statistics, O(1) logits
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randn(4, t, 3, SIZE, SIZE, generator=g))
    model.fc.weight.data.normal_(0, 2 / model.fc.in_features ** 0.5, generator=g)
    return model.eval()


@pytest.fixture(scope="module")
def causal_model():
    return _model("causal")


@pytest.fixture(scope="module", params=["dynamo", "torchscript"])
def online_onnx(request, causal_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / f"online_{request.param}.onnx"
    export_online(causal_model, path, height=SIZE, classes=list("abcde"), exporter=request.param)
    return path


def test_online_runner_matches_pytorch_over_a_stream(causal_model, online_onnx):
    # A stream of 10 frames (longer than the 4-frame training clip), batch 3 (the export
    # example had batch 2): ONNX Runtime vs PyTorch, frame by frame.
    torch.manual_seed(5)
    video = torch.randn(3, 10, 3, SIZE, SIZE)
    expected = OnlineRecognizer.from_model(causal_model).run(video).numpy()
    runner = OnnxOnlineRunner(online_onnx)
    got = np.stack([runner.step(video[:, t].numpy()) for t in range(10)], axis=1)
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    # Single frames (3, H, W), reset between streams.
    runner.reset()
    first = runner.step(video[0, 0].numpy())
    assert first.shape == (5,)
    np.testing.assert_allclose(first, expected[0, 0], atol=1e-4, rtol=0)
    np.testing.assert_allclose(runner.run(video[1]), expected[1], atol=1e-4, rtol=0)


def test_exported_shift_is_real_data_movement(causal_model, online_onnx):
    """Feed caches and frames unlike the export example: the graph must read the cache inputs
    (a shift traced as constants would ignore them) and move them into the right channels."""
    import onnxruntime as ort

    step = to_online_step(causal_model)
    sess = ort.InferenceSession(str(online_onnx), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    assert names[0] == "frame" and len(names) == 1 + step.num_caches == 5
    g = torch.Generator().manual_seed(7)
    frame = torch.randn(1, 3, SIZE, SIZE, generator=g)
    for trial in range(2):
        caches = [torch.randn(c.shape, generator=g) * (trial + 1) for c in step.zero_caches(frame)]
        with torch.no_grad():
            expected = step(frame, *caches)
        got = sess.run(None, {"frame": frame.numpy(),
                              **{n: c.numpy() for n, c in zip(names[1:], caches)}})
        for e, o in zip(expected, got):
            np.testing.assert_allclose(o, e.numpy(), atol=1e-4, rtol=0)
        # The cache outputs are the first fold channels of each shifted block's input; for the
        # first block that input is the stem output, so check the channel count and values.
        assert got[1].shape == (1, 16 // 8, SIZE // 2, SIZE // 2)
    # Changing only the caches changes the logits: they are live inputs, not constants.
    zero = sess.run(None, {"frame": frame.numpy(),
                           **{n: np.zeros(c.shape, np.float32)
                              for n, c in zip(names[1:], step.zero_caches(frame))}})[0]
    assert np.abs(zero - got[0]).max() > 1e-2


def test_online_metadata(online_onnx):
    meta = read_metadata(online_onnx)
    assert meta["kind"] == "online" and meta["classes"] == list("abcde")
    assert meta["config"]["shift_direction"] == "causal" and meta["height"] == SIZE
    assert len(meta["cache_inputs"]) == len(meta["cache_shapes"]) == 4
    runner = OnnxOnlineRunner(online_onnx)
    assert runner.classes == list("abcde") and runner.cache_names == meta["cache_inputs"]
    # the shape passed, not the batch of one made of it ("got (1, 3, 33, 32)")
    with pytest.raises(ValueError, match=rf"expected a frame .*, got \(3, {SIZE + 1}, {SIZE}\)$"):
        runner.step(np.zeros((3, SIZE + 1, SIZE), np.float32))


def test_offline_export_dynamic_batch_bidirectional(tmp_path):
    # The offline (bidirectional) model: frames differ, so both shifted channel groups carry
    # different data; batches other than the export example's.
    model = _model("bidirectional")
    path = export_offline(model, tmp_path / "offline.onnx", height=SIZE)  # dynamo exporter
    assert read_metadata(path)["kind"] == "offline"
    for n in (1, 3):
        video = torch.randn(n, 4, 3, SIZE, SIZE)
        with torch.no_grad():
            expected = model(video).numpy()
        np.testing.assert_allclose(run_offline(path, video.numpy()), expected, atol=1e-4, rtol=0)
    # A per-frame permutation changes the result (the shift mixes frames; a model that ignored
    # time would not notice).
    video = torch.randn(1, 4, 3, SIZE, SIZE)
    a = run_offline(path, video.numpy())
    b = run_offline(path, video[:, [1, 0, 3, 2]].numpy())
    assert np.abs(a - b).max() > 1e-3
    with pytest.raises(ValueError, match=r"offline model, .*run_offline\. .*--shift-direction causal"):
        OnnxOnlineRunner(path)
    # the wrong clip length or a clip without its batch axis: refused before ONNX Runtime runs,
    # naming the file and both shapes (not "[ONNXRuntimeError] ... index: 1 Got: 8 Expected: 4")
    with pytest.raises(ValueError, match=rf"offline.onnx takes video \(N, 4, 3, {SIZE}, {SIZE}\) "
                       rf"for any N, got \(1, 8, 3, {SIZE}, {SIZE}\)$"):
        run_offline(path, np.zeros((1, 8, 3, SIZE, SIZE), np.float32))
    with pytest.raises(ValueError, match=rf"got \(4, 3, {SIZE}, {SIZE}\) \(one clip: .*video\[None\]"):
        run_offline(path, np.zeros((4, 3, SIZE, SIZE), np.float32))


def test_runners_refuse_raw_pixels_saying_what_the_model_takes(online_onnx, tmp_path):
    # uint8 pixels were cast to floats in 0..255 and run: logits of nothing the model was trained
    # on, without a word (the model takes RGB in [0, 1], normalised)
    runner = OnnxOnlineRunner(online_onnx)
    frame = np.full((3, SIZE, SIZE), 200, np.uint8)

    def said(dtype):
        return (rf"^{online_onnx} takes float frames \(3, H, W\) or \(B, 3, H, W\): RGB scaled to \[0, 1\], "
                r"then normalised with mean \(0.485, 0.456, 0.406\) and std \(0.229, 0.224, 0.225\); got "
                rf"{dtype} \(raw pixels\?\)\. effvid\.stream\.preprocess_frame\(frame, size\) makes one from an "
                r"RGB uint8 frame \(H, W, 3\)$")

    for pixels, dtype in ((frame, "uint8"), (torch.from_numpy(frame), "uint8"), (frame[None].astype(np.int64), "int64")):
        with pytest.raises(ValueError, match=said(dtype)):
            runner.step(pixels)
    with pytest.raises(ValueError, match=said("uint8")):
        runner.run(np.stack([frame] * 4))
    # what preprocess_frame makes runs, in float32 or float64
    from effvid.stream import preprocess_frame

    x = preprocess_frame(np.full((40, 50, 3), 200, np.uint8), SIZE)
    runner.reset()
    expected = runner.step(x)
    runner.reset()
    np.testing.assert_allclose(runner.step(x.double().numpy()), expected, atol=1e-5)
    # the offline file names the normalisation its export recorded
    path = export_offline(_model("bidirectional"), tmp_path / "offline.onnx", height=SIZE, exporter="torchscript",
                          preprocess={"size": SIZE, "scale_size": SIZE, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]})
    with pytest.raises(ValueError, match=rf"^{path} takes float clips \(N, T, 3, H, W\): RGB scaled to \[0, 1\], "
                       r"then normalised with mean \(0.5, 0.5, 0.5\) and std \(0.25, 0.25, 0.25\); got uint8 "
                       r"\(raw pixels\?\)\. effvid\.data\.transforms\.TestTransform\(size, scale_size\) makes one "
                       r"\(T, 3, H, W\) from an RGB uint8 clip \(T, H, W, 3\)$"):
        run_offline(path, np.zeros((1, 4, 3, SIZE, SIZE), np.uint8))
    assert run_offline(path, np.zeros((1, 4, 3, SIZE, SIZE), np.float32)).shape == (1, 5)


def test_run_offline_refuses_an_online_file(online_onnx):
    # not "Required inputs (['frame', 'cache_in_0', ...]) are missing": what the file is and
    # what runs it
    with pytest.raises(ValueError, match=rf"{online_onnx.name} is an online model, .*OnnxOnlineRunner "
                       r"or effvid stream\. run_offline takes whole clips .*\.offline\.onnx"):
        run_offline(online_onnx, np.zeros((1, 4, 3, SIZE, SIZE), np.float32))


def test_bidirectional_online_export_refused(tmp_path):
    with pytest.raises(ValueError, match="bidirectional"):
        export_online(_model("bidirectional"), tmp_path / "x.onnx", height=SIZE)


def test_runner_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        OnnxOnlineRunner(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ValueError):
        OnnxOnlineRunner(bad)


def test_export_command(tmp_path, capsys):
    from effvid.cli import main

    out = tmp_path / "exp"
    rc = main(["export", "--model", "tsm_resnet_tiny", "--num-classes", "4", "--num-segments", "4",
               "--size", str(SIZE), "-o", str(out), "--exporter", "torchscript"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert (out / "tsm_resnet_tiny.offline.onnx").is_file()
    assert (out / "tsm_resnet_tiny.online.onnx").is_file()
    assert text.count("(ok)") == 2
    # A bidirectional model: --mode online is refused with the reason; auto skips online.
    rc = main(["export", "--model", "tsm_resnet_tiny", "--shift-direction", "bidirectional",
               "--size", str(SIZE), "-o", str(out), "--mode", "online", "--no-verify",
               "--exporter", "torchscript"])
    err = capsys.readouterr().err
    assert rc == 2 and "bidirectional" in err and "causal" in err
    assert main(["export", "-o", str(out)]) == 2
    assert "--checkpoint" in capsys.readouterr().err


def test_export_checks_the_opset_the_size_and_the_output(tmp_path, capsys):
    from effvid.cli import main
    from effvid.models.weights import save_weights

    model = effvid.create_model("tsm_resnet_tiny", num_classes=3, num_segments=4, shift_direction="causal")
    ckpt = tmp_path / "m.safetensors"
    save_weights(model, ckpt, {"classes": ["a", "b", "c"], "extra": {"size": 40, "scale_size": 48,
                                                                   "sampling": "dense"}})
    # the default exporter cannot convert this model to opset 13 and writes its own: refused,
    # nothing left, not even the folder it was to go in
    rc = main(["export", "-c", str(ckpt), "-o", str(tmp_path / "e13"), "--opset", "13",
               "--mode", "offline", "--no-verify"])
    assert rc == 2 and ("wrote opset 18, not the requested 13 (it could not convert this model down "
                        "from opset 18; --exporter torchscript writes older opsets)") in capsys.readouterr().err
    assert not (tmp_path / "e13").exists()
    # the checkpoint's training size is the default
    rc = main(["export", "-c", str(ckpt), "-o", str(tmp_path / "e"), "--mode", "offline",
               "--exporter", "torchscript"])
    assert rc == 0 and "(40x40 input" in capsys.readouterr().out
    # the file says how its input is made: the test view the checkpoint was validated with
    assert read_metadata(tmp_path / "e" / "m.offline.onnx")["preprocess"] == {
        "sampling": "dense", "size": 40, "scale_size": 48,
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    # at another --size: TSM's 256/224 resize ratio, as effvid eval --size does
    assert main(["export", "-c", str(ckpt), "-o", str(tmp_path / "e56"), "--mode", "offline",
                 "--size", "56", "--no-verify", "--exporter", "torchscript"]) == 0
    view = read_metadata(tmp_path / "e56" / "m.offline.onnx")["preprocess"]
    assert (view["size"], view["scale_size"], view["sampling"]) == (56, 64, "dense")
    (tmp_path / "afile").write_text("x")
    assert main(["export", "-c", str(ckpt), "-o", str(tmp_path / "afile")]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err


def test_verify_is_relative_to_the_logits(tmp_path):
    # Random-weight logits can be 1e-11: an absolute tolerance of 1e-3 passed any export.
    # Compare an export with a model whose classifier differs by 10% of its (tiny) logits.
    import copy

    from effvid.commands.export import VERIFY_TOLERANCE, _verify_offline

    torch.manual_seed(0)
    model = effvid.create_model("tsm_resnet_tiny", num_classes=3, num_segments=4).eval()
    with torch.no_grad():
        model.fc.weight.mul_(1e-8)
    path = tmp_path / "m.onnx"
    export_offline(model, path, height=SIZE, exporter="torchscript")
    assert _verify_offline(model, path, SIZE, 4) <= VERIFY_TOLERANCE
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.fc.weight.mul_(1.1)
    assert _verify_offline(other, path, SIZE, 4) > VERIFY_TOLERANCE


def test_a_refused_export_keeps_the_files_already_there(tmp_path, capsys):
    """A refusal (here: an opset the dynamo exporter writes but cannot convert this model to)
    leaves the earlier export as it was; it used to delete it."""
    import onnx

    from effvid.cli import main

    out = tmp_path / "exported"
    model = ["export", "--model", "tsm_resnet_tiny", "--num-classes", "2", "--num-segments", "4",
             "--size", str(SIZE), "--mode", "offline", "--no-verify"]
    args = model + ["-o", str(out)]
    assert main(args + ["--exporter", "torchscript"]) == 0
    before = (out / "tsm_resnet_tiny.offline.onnx").read_bytes()
    capsys.readouterr()
    assert main(args + ["--opset", "9"]) == 2
    assert (out / "tsm_resnet_tiny.offline.onnx").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["tsm_resnet_tiny.offline.onnx"]  # no temporary file
    err = capsys.readouterr().err
    assert "not the requested 9" in err and f"the previous {out / 'tsm_resnet_tiny.offline.onnx'} is unchanged" in err
    # An opset above what the installed onnx (or the TorchScript exporter) writes is refused
    # before exporting, with the newest one; not called older, and no folder is made.
    newest = onnx.defs.onnx_opset_version()
    for exporter, opset, up_to in (("dynamo", newest + 1, f"up to {newest} "), ("torchscript", 99, "up to ")):
        fresh = tmp_path / f"fresh_{exporter}"
        rc = main(model + ["-o", str(fresh), "--exporter", exporter, "--opset", str(opset)])
        err = capsys.readouterr().err
        assert rc == 2 and f"opset {opset} cannot be written: the {exporter} exporter writes opsets {up_to}" in err
        assert "older" not in err and not fresh.exists()


def test_export_refuses_labels_of_another_number_of_classes(tmp_path, capsys):
    # as effvid stream does (one check for both): before anything is exported, naming the file
    from effvid.cli import main

    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    out = tmp_path / "exported"
    rc = main(["export", "--model", "tsm_resnet_tiny", "--num-classes", "2", "--num-segments", "4",
               "--size", str(SIZE), "-o", str(out), "--labels", str(labels), "--no-verify",
               "--exporter", "torchscript"])
    assert rc == 2
    assert f"labels file {labels}: 3 class names for a model with 2 classes" in capsys.readouterr().err
    assert not out.exists()
