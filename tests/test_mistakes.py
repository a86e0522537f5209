"""Common user mistakes, each answered with what went wrong and what to do instead: weights given
to the wrong flag, a quoted ~, a list file's header line, a misspelt model name, ... One test per
mistake, on real files (tiny models, videos encoded with PyAV)."""

from __future__ import annotations

import json
import pytest
import torch
from safetensors.torch import save_file

import effvid
from effvid.cli import main
from effvid.data.synthetic import make_synthetic_dataset
from effvid.models.weights import METADATA_KEY, load_model, save_weights

CLASSES = ["grow", "left"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Class folders with train/ and val/: 2 classes, 2 + 1 videos each (32x32, 8 frames)."""
    root = tmp_path_factory.mktemp("mistakes") / "data"
    make_synthetic_dataset(root, classes=tuple(CLASSES), videos_per_class_train=2,
                           videos_per_class_val=1, num_frames=8, size=32, seed=2)
    return root


@pytest.fixture(scope="module")
def video(data):
    return sorted((data / "val" / "grow").glob("*.mp4"))[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An effvid checkpoint: a 4-segment TSM-ResNet-tiny of CLASSES, trained at 32x32."""
    torch.manual_seed(0)
    model = effvid.create_model("tsm_resnet_tiny", num_classes=2, num_segments=4).eval()
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(model, path, {"classes": CLASSES, "extra": {"size": 32}})
    return path


def _train(data, tmp_path, *flags):
    return ["train", str(data), "--model", "tsm_resnet_tiny", "--num-segments", "4", "--size", "32",
            "--epochs", "1", "--workers", "0", "--no-progress", "--output", str(tmp_path / "run"), *flags]


def _last_error(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


# 3 ------------------------------------------------------------------------------------------


def test_weights_saved_from_a_data_parallel_model_load(tiny, video, tmp_path, capsys):
    # DistributedDataParallel and DataParallel name every key "module.<key>"
    state, meta = effvid.models.weights.load_weights(tiny)
    wrapped = tmp_path / "ddp.safetensors"
    save_file({"module." + k: v for k, v in state.items()}, str(wrapped),
              metadata={METADATA_KEY: json.dumps(meta)})
    model, _ = load_model(wrapped)
    plain, _ = load_model(tiny)
    x = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))
    assert main(["predict", str(video), "-c", str(wrapped), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert main(["predict", str(video), "-c", str(tiny), "--workers", "0"]) == 0
    assert out == capsys.readouterr().out  # the same top classes and scores
    # and to start a run from
    from effvid.training.init_weights import load_init_weights

    fresh = effvid.create_model("tsm_resnet_tiny", num_classes=2, num_segments=4)
    said = load_init_weights(fresh, str(wrapped), CLASSES, "tsm_resnet_tiny")
    assert said == f"starting from {wrapped}: all its weights, classifier included"
    assert torch.equal(fresh.backbone.conv1.weight, plain.backbone.conv1.weight)
