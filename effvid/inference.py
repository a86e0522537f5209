"""Running a trained recogniser on videos: shared by ``effvid eval`` and ``effvid predict``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .data import TestTransform, VideoClipDataset, collate_clips
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, default_scale_size
from .models.weights import load_model
from .training.evaluate import predict_views
from .training.interrupts import StopsOnCtrlC
from .training.progress import progress_bar


def load_recognizer(checkpoint: str | Path, num_segments: int | None = None):
    """(model in eval mode, metadata) from an effvid .safetensors checkpoint."""
    overrides = {"num_segments": num_segments} if num_segments else {}
    model, meta = load_model(checkpoint, **overrides)
    if "classes" not in meta:
        meta["classes"] = [str(i) for i in range(model.num_classes)]
    return model.eval(), meta


def test_dataset(samples, meta: dict, *, num_segments: int, size: int | None = None,
                 scale_size: int | None = None, num_clips: int = 1, num_crops: int = 1,
                 twice: bool = False, sampling: str | None = None) -> VideoClipDataset:
    """A dataset with the test protocol: clips x crops views, at the checkpoint's input size
    and, unless ``sampling`` is given, with its frame sampling (segment for checkpoints that
    do not say)."""
    view = test_view(meta, size=size, scale_size=scale_size, sampling=sampling)
    transform = TestTransform(view["size"], view["scale_size"], num_crops)
    return VideoClipDataset(samples, meta["classes"], num_segments, train=False, transform=transform,
                            sampling=view["sampling"], num_clips=num_clips, twice=twice)


def test_view(meta: dict, *, size: int | None = None, scale_size: int | None = None,
              sampling: str | None = None) -> dict:
    """How a checkpoint sees a video at test time, from its metadata (as its training
    validated) unless overridden: ``sampling`` of the frames, the shorter side resized to
    ``scale_size``, the centre ``size`` x ``size`` crop, and the RGB ``mean`` and ``std`` that
    normalise pixels in [0, 1]. Exported ONNX files record it too."""
    extra = meta.get("extra", {})
    if size is None or size == extra.get("size"):  # as trained (the trained size given again)
        size = extra.get("size", 224)
        scale_size = scale_size or extra.get("scale_size")
    return {"sampling": sampling or extra.get("sampling", "segment"), "size": int(size),
            # a new size: TSM's 256/224 ratio
            "scale_size": int(scale_size or default_scale_size(size)),
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


@torch.no_grad()
def predict_paths(model, dataset: VideoClipDataset, *, batch_size: int = 4, workers: int = 0,
                  device: str | torch.device = "cpu", progress: bool = False):
    """Yield (path, probabilities) for readable videos and (path, error) for unreadable ones,
    in the dataset's order."""
    device = torch.device(device)
    model.to(device)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_clips)
    # a Ctrl-C as it forks its workers is raised once they are started (training/interrupts.py)
    for k, batch in enumerate(progress_bar(StopsOnCtrlC(loader), desc="predict", enabled=progress)):
        results = {}  # path -> outputs; collate_clips separates the good clips from the bad
        for path, reason in batch["bad"]:
            results.setdefault(path, []).append(reason)
        if len(batch["path"]):
            probs = predict_views(model, batch["video"].to(device)).float().softmax(dim=1).cpu()
            for path, p in zip(batch["path"], probs):
                results.setdefault(path, []).append(p)
        for sample in dataset.samples[k * batch_size:(k + 1) * batch_size]:
            yield sample.path, results[sample.path].pop(0)
