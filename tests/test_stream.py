"""The streaming loop and the ``effvid stream`` command on short generated videos."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import effvid
from effvid import stream as st
from effvid.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from effvid.cli import main
from effvid.models.online import OnlineRecognizer

SIZE = 32


pytestmark = pytest.mark.usefixtures("one_thread")
KEYS = {"source", "frame", "time", "label", "index", "score", "latency_ms"}


def _write_video(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    """A small H.264 file written with PyAV directly (frames: (T, H, W, 3) uint8)."""
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt = "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _frames(n: int = 12, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, h, w, 3)) * 255).astype(np.uint8)


def _decoded_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return _write_video(tmp_path_factory.mktemp("v") / "clip.mp4", _frames())


def _causal_model(num_classes: int = 3):
    torch.manual_seed(0)
    model = effvid.create_model("tsm_resnet_tiny", num_classes=num_classes, num_segments=4,
                                shift_direction="causal").eval()
    model.fc.weight.data.normal_(0, 0.5)
    return model


def test_stream_command_outputs(video, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("walk\nrun\njump\n")
    out_video, plot = tmp_path / "out" / "annotated.mp4", tmp_path / "out" / "probs.png"
    rc = main(["stream", str(video), "--model", "tsm_resnet_tiny", "--num-classes", "3",
               "--size", str(SIZE), "--smooth", "3", "--labels", str(labels),
               "--output-video", str(out_video), "--plot", str(plot)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert len(lines) == 12
    assert all(set(r) == KEYS for r in lines)
    assert [r["frame"] for r in lines] == list(range(12))
    assert all(r["label"] in ("walk", "run", "jump") and 0 < r["score"] <= 1 for r in lines)
    times = [r["time"] for r in lines]
    assert times == sorted(times) and times[1] == pytest.approx(0.1, abs=1e-3)
    assert "fps" in captured.err and "latency" in captured.err
    assert _decoded_frames(out_video) == 12
    with av.open(str(out_video)) as c:
        assert (c.streams.video[0].height, c.streams.video[0].width) == (48, 64)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stream_matches_online_model_from_checkpoint(video, tmp_path, capsys):
    from effvid.models.weights import save_weights

    model = _causal_model()
    ckpt = tmp_path / "m.safetensors"
    save_weights(model, ckpt, {"classes": ["a", "b", "c"]})
    jsonl = tmp_path / "preds.jsonl"
    rc = main(["stream", str(video), "--checkpoint", str(ckpt), "--size", str(SIZE),
               "--jsonl", str(jsonl), "--max-frames", "6"])
    assert rc == 0, capsys.readouterr().err
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(lines) == 6
    # Same labels as running the online model by hand on the same preprocessed frames.
    online = OnlineRecognizer.from_model(model)
    expected = []
    for _, frame in st.open_frames(str(video)):
        if len(expected) == 6:
            break
        expected.append("abc"[int(online.step(st.preprocess_frame(frame, SIZE)).argmax())])
    assert [r["label"] for r in lines] == expected


def _offline_scores(model, video: Path, frames: int, scale_size: int) -> np.ndarray:
    """The largest class probability per frame of the offline model on the first ``frames``
    frames, prepared as effvid eval prepares them (TestTransform at the checkpoint's size and
    scale size): for a causal TSM, frame t's output sees frames 0..t only, as a stream's."""
    from effvid.data.transforms import TestTransform

    decoded = [frame for _, (_, frame) in zip(range(frames), st.open_frames(str(video)))]
    clip = TestTransform(SIZE, scale_size)(torch.from_numpy(np.stack(decoded)))
    with torch.no_grad():
        return model.frame_logits(clip[None])[0].softmax(-1).max(-1).values.numpy()


def test_stream_resizes_frames_as_the_checkpoint_was_validated(video, tmp_path, capsys):
    """A run trained with --size 32 --scale-size 48 records both; stream resized the shorter
    side to 37 (32 x 256/224) whatever was recorded, so its scores were not eval's."""
    pytest.importorskip("onnxruntime")
    from effvid.export import export_online
    from effvid.data.transforms import default_scale_size
    from effvid.inference import test_view
    from effvid.models.weights import save_weights

    model = _causal_model()
    meta = {"classes": ["a", "b", "c"], "extra": {"size": SIZE, "scale_size": 48}}  # as training writes
    ckpt = tmp_path / "best.safetensors"
    save_weights(model, ckpt, meta)
    onnx = export_online(model, tmp_path / "best.online.onnx", height=SIZE, classes=meta["classes"],
                         preprocess=test_view(meta), exporter="torchscript")
    expected = _offline_scores(model, video, 4, scale_size=48)
    # what the test tells apart: the default resize gives other scores
    assert np.abs(_offline_scores(model, video, 4, scale_size=default_scale_size(SIZE)) - expected).max() > 1e-3
    for path in (ckpt, onnx):
        assert main(["stream", str(video), "-c", str(path), "--max-frames", "4"]) == 0
        scores = [json.loads(line)["score"] for line in capsys.readouterr().out.splitlines()]
        np.testing.assert_allclose(scores, expected, atol=2e-5, err_msg=str(path))


def test_bidirectional_checkpoint_refused(video, tmp_path, capsys):
    from effvid.models.weights import save_weights

    model = effvid.create_model("tsm_resnet_tiny", num_classes=3, num_segments=4)
    save_weights(model, tmp_path / "bi.safetensors")
    rc = main(["stream", str(video), "--checkpoint", str(tmp_path / "bi.safetensors")])
    err = capsys.readouterr().err
    assert rc == 2 and "bidirectional" in err and "causal" in err


@pytest.mark.parametrize("source,message", [
    ("7", "cannot open camera 7"),
    ("missing.mp4", "no such file"),
    ("notavideo.mp4", "cannot open video"),
    ("emptydir", "no video files"),
])
def test_bad_sources_give_clean_errors(source, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notavideo.mp4").write_text("this is not a video")
    (tmp_path / "emptydir").mkdir()
    if source == "7" and Path("/dev/video7").exists():
        pytest.skip("a camera is attached at /dev/video7")
    rc = main(["stream", source, "--model", "tsm_resnet_tiny", "--size", str(SIZE)])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("kind, reason", [("empty", "file is empty (0 bytes)"),
                                          ("fifo", "path is not a regular file (a FIFO)")])
def test_an_empty_file_or_a_fifo_is_said_as_predict_says_it(kind, reason, tmp_path, capsys, monkeypatch):
    # FFmpeg's "Invalid data found when processing input" of an empty file, and a FIFO waited
    # on forever for a writer
    monkeypatch.chdir(tmp_path)
    if kind == "empty":
        Path("bad.mp4").write_bytes(b"")
    else:
        os.mkfifo("bad.mp4")
    rc = main(["stream", "bad.mp4", "--model", "tsm_resnet_tiny", "--size", str(SIZE)])
    assert rc == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"effvid stream: error: cannot open video bad.mp4: {reason}"


def test_truncated_videos_end_cleanly(tmp_path, capsys):
    # Matroska has its header first: half a file decodes some frames, then the stream ends.
    data = _write_video(tmp_path / "full.mkv", _frames()).read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) // 2])
    rc = main(["stream", str(tmp_path / "cut.mkv"), "--model", "tsm_resnet_tiny",
               "--size", str(SIZE)])
    captured = capsys.readouterr()
    assert rc == 0 and "Traceback" not in captured.err
    assert 1 <= len(captured.out.splitlines()) < 12
    assert "frames in" in captured.err  # the summary is still printed
    # MP4 keeps its index at the end here: half a file cannot be opened; a one-line error.
    data = _write_video(tmp_path / "full.mp4", _frames()).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    rc = main(["stream", str(tmp_path / "cut.mp4"), "--model", "tsm_resnet_tiny",
               "--size", str(SIZE)])
    captured = capsys.readouterr()
    assert rc == 2 and "cannot open video" in captured.err and "Traceback" not in captured.err


def test_directory_source_skips_unreadable_files(tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    _write_video(folder / "a.mp4", _frames(5, seed=1))
    _write_video(folder / "b.mp4", _frames(4, 40, 40, seed=2))
    (folder / "c.mp4").write_text("broken")
    (folder / "notes.txt").write_text("ignored")
    rc = main(["stream", str(folder), "--model", "tsm_resnet_tiny", "--size", str(SIZE),
               "--output-video", str(tmp_path / "ann"), "--plot", str(tmp_path / "plots")])
    captured = capsys.readouterr()
    assert rc == 1  # clean exit, but one file could not be read
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [Path(r["source"]).name for r in lines] == ["a.mp4"] * 5 + ["b.mp4"] * 4
    assert [r["frame"] for r in lines] == list(range(5)) + list(range(4))  # each a new stream
    # the path once ("skipping X: cannot open video X: ..." said it twice)
    skipped = [line for line in captured.err.splitlines() if "skipping" in line]
    assert len(skipped) == 1 and skipped[0].startswith(
        f"effvid stream: skipping: cannot open video {folder / 'c.mp4'}: ") and skipped[0].count("c.mp4") == 1
    assert _decoded_frames(tmp_path / "ann" / "a.mp4") == 5
    assert _decoded_frames(tmp_path / "ann" / "b.mp4") == 4
    assert (tmp_path / "plots" / "a.png").is_file() and (tmp_path / "plots" / "b.png").is_file()


def test_frames_of_another_size_are_resized(tmp_path):
    online = OnlineRecognizer.from_model(_causal_model())
    rng = np.random.default_rng(3)
    sizes = [(48, 64), (48, 64), (30, 90), (100, 50), (48, 64)]
    frames = [(i / 10, (rng.random((h, w, 3)) * 255).astype(np.uint8))
              for i, (h, w) in enumerate(sizes)]
    out = io.StringIO()
    summary = st.run_stream(online, iter(frames), size=SIZE, out=out,
                            video_path=tmp_path / "v.mp4", video_fps=10)
    assert summary.frames == 5 and len(out.getvalue().splitlines()) == 5
    assert summary.as_dict()["fps"] > 0
    with av.open(str(tmp_path / "v.mp4")) as c:
        decoded = [f.to_ndarray(format="rgb24").shape for f in c.decode(video=0)]
    assert decoded == [(48, 64, 3)] * 5
    assert online.caches is None  # run_stream leaves the recogniser reset


def test_preprocess_and_smoother():
    frame = np.full((120, 160, 3), 255, np.uint8)
    x = st.preprocess_frame(frame, 64)
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(x[:, 10, 10], expected)
    assert st.preprocess_frame(np.zeros((20, 500, 3), np.uint8), 64).shape == (3, 64, 64)

    smoother = st.Smoother(2)
    p1 = smoother(np.array([0.0, 0.0]))
    np.testing.assert_allclose(p1, [0.5, 0.5])
    p2 = smoother(np.array([10.0, 0.0]))
    p3 = smoother(np.array([10.0, 0.0]))
    assert p2[0] < p3[0] and p3[0] == pytest.approx(st.softmax(np.array([10.0, 0.0]))[0])
    with pytest.raises(ValueError):
        st.Smoother(0)


def test_stream_with_onnx_runner(video, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from effvid.export import export_online

    model = _causal_model()
    path = export_online(model, tmp_path / "m.online.onnx", height=SIZE, classes=["x", "y", "z"],
                         exporter="torchscript")
    rc = main(["stream", str(video), "--checkpoint", str(path), "--max-frames", "5"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    lines = [json.loads(line) for line in captured.out.splitlines()]
    online = OnlineRecognizer.from_model(model)
    expected = []
    for _, frame in st.open_frames(str(video)):
        if len(expected) == 5:
            break
        expected.append("xyz"[int(online.step(st.preprocess_frame(frame, SIZE)).argmax())])
    assert [r["label"] for r in lines] == expected
    # --labels of another number of names: the check export and a checkpoint get too
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    assert main(["stream", str(video), "--checkpoint", str(path), "--labels", str(labels)]) == 2
    assert f"labels file {labels}: 2 class names for a model with 3 classes" in capsys.readouterr().err


def test_outputs_never_overwrite_the_videos_streamed(tmp_path, capsys):
    folder = tmp_path / "d"
    folder.mkdir()
    clip = _write_video(folder / "x.mp4", _frames(4))
    before = clip.read_bytes()
    for extra in (["--output-video", str(folder)], ["--plot", str(clip)]):
        source = str(folder) if extra[0] == "--output-video" else str(clip)
        rc = main(["stream", source, "--model", "tsm_resnet_tiny", "--size", str(SIZE)] + extra)
        err = capsys.readouterr().err
        assert rc == 2 and "is one of the videos being streamed" in err, extra
    # --jsonl names no video at all (a video is refused as the flag is read)
    with pytest.raises(SystemExit) as e:
        main(["stream", str(clip), "--model", "tsm_resnet_tiny", "--size", str(SIZE), "--jsonl", str(clip)])
    assert e.value.code == 2
    assert f"argument --jsonl: {clip} is a video, and the output would overwrite it" in capsys.readouterr().err
    assert clip.read_bytes() == before


def test_folder_outputs_same_stems_hidden_files_and_a_wrong_label_count(tmp_path, capsys):
    folder = tmp_path / "coll"
    folder.mkdir()
    _write_video(folder / "x.mp4", _frames(4))
    _write_video(folder / "x.mkv", _frames(3, seed=1))
    (folder / "._x.mp4").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # hidden: left out
    rc = main(["stream", str(folder), "--model", "tsm_resnet_tiny", "--size", str(SIZE),
               "--output-video", str(tmp_path / "A")])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "A").iterdir()) == ["x_mkv.mp4", "x_mp4.mp4"]
    assert _decoded_frames(tmp_path / "A" / "x_mp4.mp4") == 4
    assert _decoded_frames(tmp_path / "A" / "x_mkv.mp4") == 3
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    rc = main(["stream", str(folder), "--model", "tsm_resnet_tiny", "--num-classes", "3",
               "--size", str(SIZE), "--labels", str(labels)])
    assert rc == 2 and f"labels file {labels}: 2 class names for a model with 3 classes" in capsys.readouterr().err


def test_rotated_video_is_streamed_upright_and_times_start_at_zero(tmp_path):
    from effvid.data.video import write_video

    frames = np.zeros((3, 32, 48, 3), np.uint8)
    frames[:, :4, :4] = 255  # a white corner at the top left of the stored picture
    path = write_video(tmp_path / "rot.mp4", frames, fps=10, rotation=90)
    (t0, first), *_ = list(st.open_frames(str(path)))
    assert first.shape == (48, 32, 3) and t0 == 0.0  # displayed 90 degrees counter-clockwise
    assert first[-4:, :4].mean() > 200 and first[:4, :4].mean() < 50  # the corner went bottom left


@pytest.mark.parametrize("ext,options", [(".avi", {"bf": "0"}), (".mp4", {})])
def test_frame_times_of_an_h264_avi_are_its_frames(tmp_path, ext, options):
    # FFmpeg makes up an AVI's H.264 timestamps a frame late (pts = dts + 1 from 0): frame i
    # was timed (i + 1) / fps, a frame after its sound; the mp4 is the reference
    from effvid.data.synthetic import decode_frame_index, index_pattern_frames
    from effvid.data.video import write_video

    path = write_video(tmp_path / f"h264{ext}", index_pattern_frames(12), fps=8, gop=4, options=options)
    got = [(t, decode_frame_index(frame, 12)) for t, frame in st.open_frames(str(path))]
    assert got == [(i / 8, i) for i in range(12)]


def test_a_file_with_damaged_packets_streams_the_frames_between_them(tmp_path, index_videos, long_mjpeg):
    # the stream ended at the first damaged packet, with a warning; now only their frames are
    # missing, the others at their times, up to MAX_BAD_PACKETS damaged packets
    from conftest import FPS, N_FRAMES, damage_packets
    from effvid.data.synthetic import decode_frame_index
    from effvid.data.video import MAX_BAD_PACKETS

    warnings = []
    path = damage_packets(index_videos["mov_mjpeg"], tmp_path / "damaged.mov", [3, 10])
    got = [(t, decode_frame_index(frame, N_FRAMES)) for t, frame in st.open_frames(str(path), warnings.append)]
    assert got == [(i / FPS, i) for i in range(N_FRAMES) if i not in (3, 10)] and warnings == []
    # one more ends the stream there with a warning that says why
    path = damage_packets(long_mjpeg, tmp_path / "over.mov", range(1, 2 * MAX_BAD_PACKETS + 2, 2))
    got = list(st.open_frames(str(path), warnings.append))
    assert len(got) == MAX_BAD_PACKETS + 1  # the frames before the last damaged packet
    assert warnings == [f"{path}: stream ended after {len(got)} frames: more than {MAX_BAD_PACKETS} "
                        f"damaged video packets (the last: Invalid data found when processing input)"]


@pytest.mark.parametrize("kind", ["h264", "h264_open_gop", "mpeg4", "mpeg4_packed"])
def test_frame_times_of_an_avi_with_b_frames_are_its_frames(tmp_path, kind):
    # FFmpeg makes up an AVI's timestamps in decode order: with B-frames (H.264, and DivX/Xvid's
    # packed bitstream) frames came out timed 0, 3, 2, 4, 1, ... frames; frame i is at i/fps
    from conftest import write_b_frame_avi
    from effvid.data.synthetic import decode_frame_index, index_pattern_frames

    path = write_b_frame_avi(tmp_path / f"{kind}.avi", index_pattern_frames(16), kind, fps=8)
    got = [(t, decode_frame_index(frame, 16)) for t, frame in st.open_frames(str(path))]
    assert got == [(i / 8, i) for i in range(16)]


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotated_frames_go_to_torch_as_they_are(tmp_path, rotation):
    # np.rot90 views have a negative stride: torch.from_numpy refused them ("At least one stride
    # in the given numpy array is negative")
    from effvid.data.synthetic import index_pattern_frames
    from effvid.data.video import write_video

    frames = index_pattern_frames(2, 32, 48)  # a white block at the top left shows the orientation
    path = write_video(tmp_path / f"rot{rotation}.mp4", frames, fps=10, rotation=rotation, pix_fmt="yuv444p")
    upright = np.rot90(frames, k=rotation // 90, axes=(1, 2))
    got = [frame for _, frame in st.open_frames(str(path))]
    assert len(got) == 2
    for frame, expected in zip(got, upright):
        assert frame.flags.c_contiguous and frame.shape == expected.shape
        tensor = torch.from_numpy(frame)
        assert np.abs(tensor.numpy().astype(int) - expected).mean() < 3  # lossy H.264


def test_a_folder_named_with_digits_is_not_a_camera(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "12").mkdir()
    _write_video(tmp_path / "12" / "a.mp4", _frames(3))
    assert not st.is_camera("12") and st.is_camera("13")
    assert main(["stream", "12", "--model", "tsm_resnet_tiny", "--size", str(SIZE)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_annotated_webm_and_plot_paths(video, tmp_path, capsys):
    (tmp_path / "plots").mkdir()
    rc = main(["stream", str(video), "--model", "tsm_resnet_tiny", "--size", str(SIZE),
               "--max-frames", "3", "--output-video", str(tmp_path / "a.webm"),
               "--plot", str(tmp_path / "plots")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert _decoded_frames(tmp_path / "a.webm") == 3  # VP9: webm cannot hold H.264
    assert f"plot: {tmp_path / 'plots' / 'clip.png'}" in err and (tmp_path / "plots" / "clip.png").is_file()


def test_stream_a_folder_twice_with_its_output_inside_and_trailing_slash_outputs(tmp_path, capsys):
    folder = tmp_path / "sv"
    folder.mkdir()
    _write_video(folder / "x.mp4", _frames(3))
    args = ["stream", str(folder), "--model", "tsm_resnet_tiny", "--size", str(SIZE),
            "--output-video", str(folder / "annot")]
    assert main(args) == 0
    assert main(args) == 0, capsys.readouterr().err  # its own outputs are not streamed next time
    assert [p.name for p in (folder / "annot").iterdir()] == ["x.mp4"]
    # one video, outputs named as folders with a trailing slash: files inside them
    rc = main(["stream", str(folder / "x.mp4"), "--model", "tsm_resnet_tiny", "--size", str(SIZE),
               "--output-video", f"{tmp_path / 'newdir'}/", "--plot", f"{tmp_path / 'plotdir'}/"])
    assert rc == 0
    assert (tmp_path / "newdir" / "x.mp4").is_file() and (tmp_path / "plotdir" / "x.png").is_file()
    # a folder, outputs named as files: refused (they became folders "o.mp4" and "p.png", unsaid)
    for flag, name, what in (("--output-video", "o.mp4", "annotated videos"), ("--plot", "p.png", "plots")):
        capsys.readouterr()
        assert main(["stream", str(folder), "--model", "tsm_resnet_tiny", "--size", str(SIZE),
                     flag, str(tmp_path / name)]) == 2
        assert capsys.readouterr().err == (
            f"effvid stream: error: {flag} {tmp_path / name} names a file, and SOURCE {folder} is a folder: "
            f"its {what} go into a folder, one per video; give a folder ({flag} {tmp_path / name[0]})\n")
        assert not (tmp_path / name).exists()


def test_a_closed_stdout_ends_the_stream_quietly(video):
    # `effvid stream clip.mp4 | head -1`: the reader goes away; no traceback, exit code 0
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "effvid", "stream", str(video), "--model",
                               "tsm_resnet_tiny", "--size", str(SIZE)],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr


def test_probability_plot_keeps_its_axes_with_a_sentence_long_class_name(tmp_path, monkeypatch):
    import matplotlib.figure

    saved = []
    real_savefig = matplotlib.figure.Figure.savefig

    def keep(self, *args, **kwargs):
        saved.append(self)
        return real_savefig(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    name = "moving something from left to right " * 5 + "slowly"
    st.plot_probabilities(np.arange(4) / 8, np.array([[0.8, 0.1, 0.1]] * 4), [name, "b", "c"],
                          tmp_path / "p.png")
    ax = saved[0].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(labels[0]) == 40 and labels[0].endswith("right slowly") and labels[1:] == ["b", "c"]
    # the legend held the full 186 characters and squeezed the plot to the right edge
    assert ax.get_position().width > 0.8


def test_probability_plot_does_not_import_the_training_package(tmp_path):
    # its label helpers lived as private names in effvid.training.plots, so plotting a stream
    # imported the training package (and reached into its privates)
    code = ("import sys, numpy as np; from effvid.stream import plot_probabilities; "
            f"plot_probabilities([0.0, 0.5], np.array([[0.9, 0.1], [0.2, 0.8]]), ['a', 'b'], {str(tmp_path / 'p.png')!r}); "
            "print(sorted(m for m in sys.modules if m.startswith('effvid.training')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]" and (tmp_path / "p.png").is_file()


@pytest.mark.parametrize("b_frames", [0, 2])
def test_frame_times_of_an_mpeg_program_stream_are_counted(tmp_path, b_frames):
    # FFmpeg gives some frames of an MPEG program stream (.mpg) the timestamp of another one in
    # their PES packet: frame 38 was timed as frame 37, then frame 73 three frames after 72.
    # Its frames are counted, as read_frames counts them: frame i is at i/fps.
    from conftest import mpeg_level, write_mpeg_program_stream

    n = 75
    path = write_mpeg_program_stream(tmp_path / "clip.mpg", n, b_frames)
    with av.open(str(path)) as c:  # the case under test: a plain decode's times go wrong
        s = c.streams.video[0]
        times = [float((f.pts - s.start_time) * s.time_base) for f in c.decode(s)]
        assert times != [i / 25 for i in range(n)]
    got = list(st.open_frames(str(path)))
    assert [abs(float(rgb.mean()) - mpeg_level(i)) < 1.5 for i, (_, rgb) in enumerate(got)] == [True] * n
    assert np.abs([t - i / 25 for i, (t, _) in enumerate(got)]).max() < 1e-9
