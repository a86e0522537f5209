"""ONNX export of TSM recognisers, and an ONNX Runtime runner for the online model.

* :func:`export_offline`: the clip model, input ``video`` (N, T, 3, H, W) with a dynamic batch
  N, output ``logits`` (N, K) (the average of the per-frame logits).
* :func:`export_online`: the one-frame step of a causal TSM
  (:class:`effvid.models.online.OnlineStep`), inputs ``frame`` (B, 3, H, W) and
  ``cache_in_0..n-1``, outputs ``logits`` (B, K) and ``cache_out_0..n-1``. A device runtime
  loops frame by frame, feeding each ``cache_out_i`` back as ``cache_in_i`` (zeros at the
  first frame). Batch is dynamic; height and width are fixed at export time (the cache shapes
  depend on them).
* :class:`OnnxOnlineRunner`: that loop, in ONNX Runtime.

The shift is built by concatenation (see :mod:`effvid.models.temporal_shift`), so the exported
graph moves the data (Slice + Concat nodes); it does not bake the example input into constants,
the bug of the original TSM's export.

Both files carry a JSON ``effvid`` entry in the ONNX metadata: the model configuration, the
kind (``offline``/``online``), the input size, the cache names and class names when given.
Each is written under a temporary name next to its path and renamed into place once complete
(opset checked, metadata added): a refused export leaves the file already there unchanged.

ONNX, ONNX Runtime and onnxscript are the optional ``export`` dependency group
(``pip install effvid[export]``); they are imported only when needed.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..errors import layout_hint

__all__ = [
    "EXPORTERS", "METADATA_KEY", "OnnxOnlineRunner", "export_offline", "export_online",
    "read_metadata", "run_offline",
]

EXPORTERS = ("dynamo", "torchscript")
METADATA_KEY = "effvid"


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as e:
        raise ImportError(
            f"{module} is needed for ONNX export/inference but is not installed; install the "
            f"optional dependencies with `pip install effvid[export]` ({e})") from e


def _size(height: int, width: int | None) -> tuple[int, int]:
    width = height if width is None else width
    if height < 8 or width < 8:
        raise ValueError(f"input size must be at least 8x8, got {height}x{width}")
    return int(height), int(width)


def _newest_opset(exporter: str) -> int:
    """The newest ONNX opset ``exporter`` can write with the installed torch and onnx."""
    newest = _require("onnx").defs.onnx_opset_version()
    if exporter == "torchscript":  # the legacy exporter stops earlier ("Unsupported onnx_opset_version")
        try:
            from torch.onnx._constants import ONNX_MAX_OPSET  # private: may move in another torch
        except ImportError:
            return newest
        newest = min(newest, ONNX_MAX_OPSET)
    return newest


def _check_export_options(exporter: str, opset: int | None) -> None:
    """Refuse an unknown exporter or an opset it cannot write, before anything is exported."""
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    onnx = _require("onnx")
    if opset is not None:
        newest = _newest_opset(exporter)
        if not 1 <= opset <= newest:
            raise ValueError(f"opset {opset} cannot be written: the {exporter} exporter writes opsets "
                             f"up to {newest} with the installed torch {torch.__version__} and onnx "
                             f"{onnx.__version__}")


def _write_atomically(path: Path, export, info: dict) -> None:
    """``export(tmp)``, the metadata, then the rename over ``path``: a refused or failed export
    leaves the file already at ``path`` as it was (and no folder it created)."""
    from ..models.weights import atomic_replace

    existed = path.exists()
    try:
        atomic_replace(path, lambda tmp: (export(tmp), _write_metadata(tmp, info)))
    except ValueError as e:
        if not existed:
            raise
        raise ValueError(f"{e}; the previous {path} is unchanged") from e


def _export(module: nn.Module, args: tuple, path: Path, input_names: list[str],
            output_names: list[str], exporter: str, opset: int | None) -> None:
    # Every input and output has the batch as its first axis, which is dynamic.
    kwargs: dict = dict(input_names=input_names, output_names=output_names, opset_version=opset)
    if exporter == "dynamo":
        _require("onnxscript")
        batch = torch.export.Dim("batch", min=1, max=4096)
        if len(args) == 1:
            shapes: tuple = ({0: batch},)
        else:
            # forward(frame, *caches): the varargs are one entry, a tuple of per-cache specs.
            shapes = ({0: batch}, tuple({0: batch} for _ in args[1:]))
        kwargs.update(dynamo=True, external_data=False, verbose=False, dynamic_shapes=shapes)
    else:
        kwargs.update(dynamo=False, dynamic_axes={n: {0: "batch"} for n in input_names + output_names})
    # The exporters are chatty (progress lines on stdout, deprecation and shape warnings);
    # the caller prints what matters.
    log = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        warnings.simplefilter("ignore")
        try:
            with torch.no_grad():
                torch.onnx.export(module, args, str(path), **kwargs)
        except Exception as e:  # the exporters raise many types; say what failed in one line
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0].split("  [Caused by")[0]
            raise ValueError(f"ONNX export ({exporter} exporter, opset {opset or 'default'}) "
                             f"failed: {type(e).__name__}: {reason}") from e
    if opset is not None:
        # The dynamo exporter falls back to its own opset when it cannot convert, and says so
        # only in its log: check what was written.
        written = next((o.version for o in _require("onnx").load(str(path)).opset_import
                        if o.domain in ("", "ai.onnx")), None)
        if written != opset:
            if written is not None and opset < written:
                why = f"it could not convert this model down from opset {written}" + (
                    "; --exporter torchscript writes older opsets" if exporter == "dynamo" else "")
            else:
                why = f"it could not convert this model up from opset {written}"
            raise ValueError(f"the {exporter} exporter wrote opset {written}, not the requested "
                             f"{opset} ({why})")


def _write_metadata(path: Path, info: dict) -> None:
    onnx = _require("onnx")
    model = onnx.load(str(path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(info)
    onnx.save(model, str(path))


def read_metadata(path: str | Path) -> dict:
    """The ``effvid`` metadata of an exported file ({} if it has none)."""
    onnx = _require("onnx")
    model = onnx.load(str(path), load_external_data=False)
    for entry in model.metadata_props:
        if entry.key == METADATA_KEY:
            return json.loads(entry.value)
    return {}


def export_offline(model: nn.Module, path: str | Path, *, height: int = 224, width: int | None = None,
                   num_segments: int | None = None, classes: Sequence[str] | None = None,
                   preprocess: dict | None = None, exporter: str = "dynamo",
                   opset: int | None = None) -> Path:
    """Export a clip recogniser: ``video`` (N, T, 3, H, W) -> ``logits`` (N, K), N dynamic.

    T is ``num_segments`` (default: the model's), H and W are fixed.
    """
    _check_export_options(exporter, opset)
    path = Path(path)
    h, w = _size(height, width)
    t = int(num_segments or getattr(model, "num_segments", 0) or model.config["num_segments"])
    info = {"kind": "offline", "config": dict(getattr(model, "config", {}) or {}),
            "num_segments": t, "height": h, "width": w, "exporter": exporter}
    if classes is not None:
        info["classes"] = list(classes)
    if preprocess is not None:
        info["preprocess"] = dict(preprocess)
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        example = torch.randn(2, t, 3, h, w, dtype=p.dtype, device=p.device)
        _write_atomically(path, lambda tmp: _export(model, (example,), tmp, ["video"], ["logits"],
                                                    exporter, opset), info)
    finally:
        model.train(was_training)
    return path


def export_online(model: nn.Module, path: str | Path, *, height: int = 224, width: int | None = None,
                  classes: Sequence[str] | None = None, preprocess: dict | None = None,
                  exporter: str = "dynamo", opset: int | None = None) -> Path:
    """Export the one-frame step of a causal TSM with every cache as an explicit input/output.

    ``model`` is a causal :class:`~effvid.models.recognizer.Recognizer` (converted here; a
    bi-directional one raises ValueError), an :class:`~effvid.models.online.OnlineStep` or an
    :class:`~effvid.models.online.OnlineRecognizer`.
    """
    from ..models.online import OnlineRecognizer, OnlineStep, to_online_step

    _check_export_options(exporter, opset)
    if isinstance(model, OnlineRecognizer):
        step = model.step_module
    elif isinstance(model, OnlineStep):
        step = model
    else:
        step = to_online_step(model)
    path = Path(path)
    h, w = _size(height, width)
    p = next(step.parameters())
    # Example inputs: random frame and random caches (never zeros), batch 2, so nothing about
    # them can be mistaken for a constant.
    frame = torch.randn(2, 3, h, w, dtype=p.dtype, device=p.device)
    caches = [torch.randn_like(c) for c in step.zero_caches(frame)]
    n = len(caches)
    inputs = ["frame"] + [f"cache_in_{i}" for i in range(n)]
    outputs = ["logits"] + [f"cache_out_{i}" for i in range(n)]
    info = {"kind": "online", "config": dict(step.config), "height": h, "width": w,
            "cache_inputs": inputs[1:], "cache_outputs": outputs[1:],
            "cache_shapes": [list(c.shape[1:]) for c in caches], "exporter": exporter}
    if classes is not None:
        info["classes"] = list(classes)
    if preprocess is not None:
        info["preprocess"] = dict(preprocess)
    _write_atomically(path, lambda tmp: _export(step, (frame, *caches), tmp, inputs, outputs,
                                                exporter, opset), info)
    return path


def _session(path: str | Path, threads: int | None, providers: Sequence[str] | None):
    ort = _require("onnxruntime")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options,
                                    providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as e:  # onnxruntime raises its own exception types
        raise ValueError(f"cannot load {path} in ONNX Runtime: {e}") from e


def _float_input(x, path: Path, online: bool, metadata: dict | None = None) -> np.ndarray:
    """``x`` (numpy or torch) as float32 for ONNX Runtime. Integers are refused: raw uint8 pixels
    were cast to floats in 0..255 and run, where the model takes normalised ones, and the
    logits were garbage without a word."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        metadata = read_metadata(path) if metadata is None else metadata  # (only now: it reads the file)
        view = metadata.get("preprocess", {})  # effvid export records how frames become the input
        mean, std = (tuple(view.get(k, d)) for k, d in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)))
        what, how = (("frames (3, H, W) or (B, 3, H, W)", "effvid.stream.preprocess_frame(frame, size) "
                      "makes one from an RGB uint8 frame (H, W, 3)") if online else
                     ("clips (N, T, 3, H, W)", "effvid.data.transforms.TestTransform(size, scale_size) "
                      "makes one (T, 3, H, W) from an RGB uint8 clip (T, H, W, 3)"))
        raise ValueError(f"{path} takes float {what}: RGB scaled to [0, 1], then normalised with mean "
                         f"{mean} and std {std}; got {x.dtype} (raw pixels?). {how}")
    return np.ascontiguousarray(x, dtype=np.float32)


def run_offline(path: str | Path, video: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """Run an exported offline model on ``video`` (N, T, 3, H, W) float32; returns (N, K).

    T, H and W are those of the export (N is free); another shape raises ValueError naming both.
    """
    path = Path(path)
    sess = _session(path, threads, None)
    inputs = sess.get_inputs()
    if [i.name for i in inputs] != ["video"]:
        if read_metadata(path).get("kind") == "online" or inputs and inputs[0].name == "frame":
            # the mirror of OnnxOnlineRunner's refusal of an offline file
            raise ValueError(f"{path} is an online model, which takes one frame at a time with its "
                             "caches (frame, cache_in_0..): run it with effvid.export.OnnxOnlineRunner "
                             "or effvid stream. run_offline takes whole clips (N, T, 3, H, W): the "
                             ".offline.onnx that effvid export writes next to it")
        raise ValueError(f"{path} is not an effvid offline model: its inputs are "
                         f"{[i.name for i in inputs]}, not ['video']")
    video = _float_input(video, path, online=False)
    expected = inputs[0].shape  # [batch name, T, 3, H, W]: named (dynamic) axes are free
    if video.ndim != len(expected) or any(isinstance(e, int) and e != g
                                          for e, g in zip(expected, video.shape)):
        want = ", ".join(str(e) if isinstance(e, int) else "N" for e in expected)
        hint = layout_hint(video.shape, channels_first=True) or (
            " (one clip: add the batch axis, video[None])" if video.ndim == len(expected) - 1 else "")
        raise ValueError(f"{path} takes video ({want}) for any N, got {tuple(video.shape)}{hint}")
    return sess.run(None, {"video": video})[0]


class OnnxOnlineRunner:
    """Frame-by-frame inference with an exported online model in ONNX Runtime.

    ``step(frame)`` takes a preprocessed float frame (3, H, W) or (B, 3, H, W) (numpy or torch)
    and returns the logits (K,) or (B, K) as numpy; ``reset()`` starts a new stream.
    """

    def __init__(self, path: str | Path, *, threads: int | None = None,
                 providers: Sequence[str] | None = None):
        self.path = Path(path)
        self.session = _session(self.path, threads, providers)
        self.metadata = read_metadata(self.path)
        if self.metadata.get("kind", "online") != "online":
            # effvid stream passes an offline file here too: say what runs it and what streams
            raise ValueError(f"{self.path} is an {self.metadata['kind']} model, which takes whole "
                             "clips (N, T, 3, H, W): run it with effvid.export.run_offline. Frame by "
                             "frame (effvid stream, OnnxOnlineRunner) needs the .online.onnx that "
                             "effvid export writes for a model trained with --shift-direction causal")
        inputs = self.session.get_inputs()
        if not inputs or inputs[0].name != "frame":
            raise ValueError(f"{self.path} is not an effvid online model (no 'frame' input)")
        self.cache_names = [i.name for i in inputs[1:]]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._cache_shapes = [tuple(i.shape[1:]) for i in inputs[1:]]
        self.height, self.width = (int(d) for d in inputs[0].shape[2:])
        self.caches: list[np.ndarray] | None = None
        self.frames_seen = 0

    @property
    def classes(self) -> list[str] | None:
        return self.metadata.get("classes")

    @property
    def num_classes(self) -> int | None:
        k = self.session.get_outputs()[0].shape[-1]
        return k if isinstance(k, int) else None

    def reset(self) -> None:
        self.caches = None
        self.frames_seen = 0

    def step(self, frame) -> np.ndarray:
        frame = _float_input(frame, self.path, online=True, metadata=self.metadata)
        given = frame.shape  # the error names what was passed, not the batch of one made of it
        single = frame.ndim == 3
        if single:
            frame = frame[None]
        if frame.ndim != 4 or frame.shape[1:] != (3, self.height, self.width):
            raise ValueError(f"expected a frame (3, {self.height}, {self.width}) or (B, 3, "
                             f"{self.height}, {self.width}), got {given}"
                             + layout_hint(given, channels_first=True))
        if self.caches is None or self.caches and self.caches[0].shape[0] != frame.shape[0]:
            if self.caches:
                raise ValueError("batch size changed within a stream; call reset() first")
            self.caches = [np.zeros((frame.shape[0],) + s, np.float32) for s in self._cache_shapes]
        feeds = {"frame": frame, **dict(zip(self.cache_names, self.caches))}
        out = self.session.run(self.output_names, feeds)
        self.caches = out[1:]
        self.frames_seen += 1
        return out[0][0] if single else out[0]

    def run(self, video) -> np.ndarray:
        """Per-frame logits of a clip (T, 3, H, W) or (B, T, 3, H, W) from a fresh stream."""
        if isinstance(video, torch.Tensor):
            video = video.detach().cpu().numpy()
        single = video.ndim == 4
        if single:
            video = video[None]
        self.reset()
        try:
            out = np.stack([self.step(video[:, t]) for t in range(video.shape[1])], axis=1)
        finally:
            self.reset()
        return out[0] if single else out
