"""The documentation names only options and Python names that exist.

Cheap checks (no model is run): every ``--option`` of an ``effvid COMMAND`` line in README.md
and docs/*.md (code blocks and inline code) is an option of that command, every bare
```--option``` mentioned in the text is an option of some command, every import line of a
Python block runs, and every dotted ``effvid.x.y`` name resolves.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest

from effvid.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# options of other programs that the docs mention in passing
FOREIGN_OPTIONS = {"--nproc-per-node", "--nnodes", "--rdzv-endpoint", "--logdir", "--help"}


def _blocks(text: str, langs: tuple[str, ...]) -> list[str]:
    return [m.group(2) for m in re.finditer(r"```(\w*)\n(.*?)```", text, re.S) if m.group(1) in langs]


def _commands(text: str) -> list[list[str]]:
    """Token lists of the ``effvid COMMAND ...`` invocations in shell text."""
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s)#.*", "", line)  # comments
        for part in re.split(r"&&|;|\||>", line):
            try:
                tokens = shlex.split(part)
            except ValueError:
                continue
            for i, tok in enumerate(tokens):
                is_cli = tok == "effvid" or tok.endswith("/effvid")
                if is_cli and (i == 0 or tokens[i - 1] in ("-m",) or "/" in tok):
                    found.append(tokens[i + 1:])
                    break
    return found


@pytest.fixture(scope="module")
def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _options(tokens: list[str]) -> list[str]:
    return [t.split("=", 1)[0] for t in tokens if t.startswith("--")]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_documented_command_options_exist(doc, subcommands):
    text = doc.read_text(encoding="utf-8")
    shell = "\n".join(_blocks(text, ("bash", "sh", "shell")))
    inline = "\n".join(re.findall(r"`([^`\n]*\beffvid [a-z]+[^`\n]*)`", text))
    wrong = []
    for tokens in _commands(shell + "\n" + inline):
        if not tokens or tokens[0].startswith("-"):
            continue
        name = tokens[0].removesuffix(":")  # a message, "effvid check: error: ...", is of that command
        if name not in subcommands:
            wrong.append(f"unknown command {name!r}")
            continue
        known = subcommands[name]._option_string_actions
        wrong += [f"effvid {name} {opt}" for opt in _options(tokens[1:]) if opt not in known]
    # bare `--option` spans in the text: an option of some command
    every = set().union(*(p._option_string_actions for p in subcommands.values()))
    for span in re.findall(r"`(--[a-z][a-z0-9-]*)[^`]*`", text):
        if span not in every and span not in FOREIGN_OPTIONS:
            wrong.append(span)
    assert not wrong, f"{doc.name} names options that do not exist: {wrong}"


def _resolve(dotted: str):
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):  # the longest importable module prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_documented_python_names_exist(doc):
    text = doc.read_text(encoding="utf-8")
    for block in _blocks(text, ("python",)):
        imports = "\n".join(ln for ln in block.splitlines() if re.match(r"(from \S+ )?import ", ln))
        exec(compile(imports, f"{doc.name} (imports)", "exec"), {})
    for dotted in sorted(set(re.findall(r"\beffvid(?:\.[A-Za-z_]\w*)+", text))):
        _resolve(dotted)


def test_public_names_have_docstrings():
    """help() on every class and function in a module's __all__ says something (a statement
    before a class's docstring, e.g. ``__test__ = False``, silently turns it into no docstring)."""
    import inspect
    import pkgutil

    import effvid

    names = ["effvid"] + [m.name for m in pkgutil.walk_packages(effvid.__path__, "effvid.")
                          if not m.name.endswith("__main__")]
    missing = []
    for name in names:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", []):
            obj = getattr(module, attr)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and not (obj.__doc__ or "").strip():
                missing.append(f"{name}.{attr}")
    assert not missing, f"no docstring: {missing}"


def test_the_python_api_snippet_classifies_a_video(tmp_path, monkeypatch, capsys):
    """usage.md's "Classifying a video file from Python" block, run as written, on a checkpoint
    and videos at the paths it names: the class and probability it prints are the model's, and
    for an unreadable video (a zero-byte file here) the reason. The loop called probs.argmax() on
    the reason, a str: AttributeError."""
    import torch

    import effvid
    from effvid.data.synthetic import make_synthetic_dataset
    from effvid.inference import test_dataset
    from effvid.models.weights import save_weights

    block = next(b for b in _blocks((ROOT / "docs" / "usage.md").read_text(encoding="utf-8"), ("python",))
                 if "predict_paths(" in b)
    monkeypatch.chdir(tmp_path)
    make_synthetic_dataset(tmp_path / "effvid-quickstart" / "data", classes=("left", "right"),
                           videos_per_class_train=0, videos_per_class_val=1, num_frames=8, size=32, seed=3)
    unreadable = "effvid-quickstart/data/val/right/right_0000.mp4"
    (tmp_path / unreadable).write_bytes(b"")
    torch.manual_seed(0)
    model = effvid.create_model("tsm_resnet_tiny", num_classes=2, num_segments=4)
    save_weights(model, tmp_path / "runs" / "try" / "best.safetensors",
                 {"classes": ["left", "right"], "extra": {"size": 32, "scale_size": 32, "sampling": "segment"}})
    exec(compile(block, "usage.md (Python API)", "exec"), {})
    video = "effvid-quickstart/data/val/left/left_0000.mp4"
    meta = {"classes": ["left", "right"], "extra": {"size": 32, "scale_size": 32, "sampling": "segment"}}
    clip = test_dataset([(video, 0)], meta, num_segments=4)[0]["video"]
    with torch.no_grad():
        probs = model.eval()(clip[None]).softmax(dim=1)[0]
    best = int(probs.argmax())
    reason = test_dataset([(unreadable, 0)], meta, num_segments=4)[0].reason
    assert reason  # what the decoder said, e.g. that the file is empty
    assert capsys.readouterr().out == (f"{video}: {meta['classes'][best]} {float(probs[best]):.3f}\n"
                                       f"{unreadable}: unreadable: {reason}\n")


def test_the_av_quick_start_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    """av.md's Quick start, run as written on the two videos it names: it used ``paths`` without
    defining it (NameError). Its videos are a second long, so the 30 clips hold one each and the
    CNNs run on that one (masked clips are skipped); the report it prints is effvid info av's."""
    from effvid.av import format_parameter_report, parameter_report
    from effvid.cli import main
    from effvid.data.synthetic import make_synthetic_dataset

    block = next(b for b in _blocks((ROOT / "docs" / "av.md").read_text(encoding="utf-8"), ("python",))
                 if "LongVideoSampler(" in b)
    monkeypatch.chdir(tmp_path)
    make_synthetic_dataset(tmp_path / "effvid-quickstart" / "data", classes=("left", "right"),
                           videos_per_class_train=0, videos_per_class_val=1, num_frames=8, size=32, seed=3)
    namespace: dict = {}
    exec(compile(block, "av.md (Quick start)", "exec"), namespace)
    assert namespace["out"].fused_summary.shape == (2, 1536)
    # features, as it says: no dropout or batch statistics (it ran in training mode, two calls
    # differed), and no autograd graph kept (tens of GB for a 30-clip video)
    assert not namespace["model"].training and not namespace["out"].fused_summary.requires_grad
    printed = capsys.readouterr().out
    assert printed == format_parameter_report(parameter_report(namespace["model"])) + "\n"
    assert main(["info", "av", "--visual-cnn", "slow_r50"]) == 0
    assert capsys.readouterr().out == printed


def test_the_online_snippets_run_as_written(tmp_path, monkeypatch, capsys):
    """online.md's Python blocks, run as written on the checkpoint, video and export they name:
    they used ``frames``, ``clip`` and ``frame_np`` without making them (NameError). Each prints
    a line per frame of the video, the PyTorch and the ONNX Runtime step the same classes."""
    pytest.importorskip("onnxruntime")
    import torch

    import effvid
    from effvid.cli import main
    from effvid.data.synthetic import make_synthetic_dataset
    from effvid.models.weights import save_weights

    blocks = [b for b in _blocks((ROOT / "docs" / "online.md").read_text(encoding="utf-8"), ("python",))
              if "open_frames(" in b]
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    make_synthetic_dataset(tmp_path / "data", classes=("left", "right"), videos_per_class_train=0,
                           videos_per_class_val=1, num_frames=8, size=32, seed=3)
    (tmp_path / "data" / "val" / "left" / "left_0000.mp4").rename(tmp_path / "clip.mp4")
    torch.manual_seed(0)
    model = effvid.create_model("tsm_resnet_tiny", num_classes=2, num_segments=4, shift_direction="causal")
    save_weights(model, tmp_path / "run" / "best.safetensors",
                 {"classes": ["left", "right"], "extra": {"size": 32, "scale_size": 36, "sampling": "segment"}})
    assert main(["export", "-c", "run/best.safetensors", "--output", "exported", "--exporter", "torchscript"]) == 0
    capsys.readouterr()
    printed = []
    for i, block in enumerate(blocks):
        exec(compile(block, f"online.md (Python block {i + 1})", "exec"), {})
        printed.append(capsys.readouterr().out.splitlines())
    torch_lines, onnx_lines = printed
    assert len(torch_lines) == 8 and torch_lines[0].startswith(" 0.00 s  ")
    assert {line.split()[-1] for line in torch_lines} <= {"left", "right"}
    assert onnx_lines == torch_lines
