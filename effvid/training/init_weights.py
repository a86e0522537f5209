"""Starting a run from trained weights (``--init-weights``): an effvid checkpoint, whose
classifier is kept when it was trained on the same classes, or an original TSM release file,
which gives its backbone; and what the run is told of the weights it starts from."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from ..models.weights import METADATA_KEY, check_state_dict_fits, load_weights, weights_kind, wrong_weights


def without_shift_wrapper(key: str) -> str:
    """A state-dict key as a TSN names it: a TSM's shifted conv is ``...conv1.net.weight``
    (TemporalShift keeps the conv as ``net``), the same conv of a TSN ``...conv1.weight``."""
    return key.replace(".net.", ".")


def match_shift_wrappers(state: dict, own: dict) -> dict:
    """``state``'s keys as ``own`` names them where they differ only by the temporal shift's
    wrapper (:func:`without_shift_wrapper`), so the weights of one start the other (a TSN's into
    a TSM, as TSM starts from 2D weights)."""
    own_unwrapped = {without_shift_wrapper(k): k for k in own}
    out = {}
    for key, value in state.items():
        if key not in own:  # a TSN key in a TSM, or a TSM key in a TSN
            key = own_unwrapped.get(without_shift_wrapper(key), key)
        out[key] = value
    return out


def load_init_weights(model: nn.Module, path: str, classes: list[str], name: str,
                      size: int | None = None) -> str:
    """Start from an effvid checkpoint (fine-tuning). Its classifier is kept when it was trained
    on the same classes, in the same order, and replaced otherwise. An original TSM release
    checkpoint (.pth) gives its backbone only (it has no class names). Returns what was loaded,
    for the run's first lines: which classifier, and the settings the source was trained with
    that differ from ``model``'s (the weights load, but compute something else: a TSN's into a
    TSM, a bidirectional shift's into a causal one; fine-tuning adapts them), and the frame size
    it was trained at when it is not this run's ``size``."""
    new_fc = f"a new classifier for {len(classes)} classes"
    config = getattr(model, "config", {})
    if Path(path).suffix != ".safetensors":  # read as safetensors it failed: "header too large"
        from ..models.tsm_checkpoint import tsm_init_weights

        state, info = tsm_init_weights(path, model)
        model.load_state_dict(state, strict=False)
        return (f"starting from {path}: the original TSM checkpoint's backbone, {new_fc}"
                + _release_file_differences(info, config))
    state, meta = load_weights(path)
    if (kind := weights_kind(state, meta)) not in ("effvid", None):
        raise wrong_weights(path, kind, "an effvid checkpoint")
    state = match_shift_wrappers(state, model.state_dict())
    kept = keeps_classifier(path, classes)
    if not kept:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        check_state_dict_fits(state, model.state_dict(), f"{path} does not match {name}",
                              may_miss=lambda k: k in ("fc.weight", "fc.bias"))
    except ValueError:
        if meta.get("name") in (None, name):
            raise
        raise ValueError(f"{path} holds a {meta['name']} (as its metadata records), not the {name} being "
                         f"trained: fine-tune it with --model {_same_shift(meta['name'], name)}") from None
    model.load_state_dict(state, strict=False)
    differs = [f"{k} {meta.get(k, '-')} (this run: {config.get(k, '-')})"
               for k in ("name", "shift_div", "shift_place", "shift_direction", "num_segments")
               if (k in meta or k in config) and meta.get(k) != config.get(k)]
    trained_size = meta.get("extra", {}).get("size")  # not a model setting: the training's input
    if size is not None and trained_size is not None and trained_size != size:
        differs.append(f"size {trained_size} (this run: {size})")
    which = "all its weights, classifier included" if kept else f"its backbone, {new_fc}"
    return f"starting from {path}: {which}" + (f"; it was trained as {', '.join(differs)}" if differs else "")


def _same_shift(trained: str, name: str) -> str:
    """The model of ``trained``'s backbone with ``name``'s temporal shift or none (tsm_resnet18
    for a tsn_resnet18's weights in a TSM run): its weights load either way."""
    from ..models import list_models

    ours = f"{name.split('_', 1)[0]}_{trained.split('_', 1)[-1]}"
    return ours if ours in list_models() else trained


def keeps_classifier(path: str, classes: list[str]) -> bool:
    """Whether load_init_weights keeps the classifier of the weights file ``path`` for a run on
    ``classes``: an effvid checkpoint trained on the same classes, in the same order (an
    original TSM .pth names no classes). Reads the file's header only."""
    if Path(path).suffix != ".safetensors":
        return False
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get(METADATA_KEY, "{}"))
    return meta.get("classes") == classes


def _release_file_differences(info, config: dict) -> str:
    """What an original TSM checkpoint's name or keys say it was trained with that differs from
    this run's ``config`` (the weights load either way: a model trained on 8 segments, or with a
    bidirectional shift, fine-tuned on 4 or as a causal model computes something else at first;
    a TSN's into a TSM), and what its name does not say, which the weights cannot tell either:
    "" when neither. (An architecture, shift placement or fraction that
    differs was refused by tsm_init_weights.) A TSN's weights compute the same for any number
    of segments: not named."""
    named = {k: getattr(info, k) for k, source in info.sources.items()
             if k in ("num_segments", "shift_div", "shift_place", "shift_direction")
             and source in ("file name", "keys")
             and (info.shift or k != "num_segments")}
    other_model = info.model_name != config.get("name")  # a TSN's weights in a TSM, or a TSM's in a TSN
    differs = [f"name {info.model_name} (this run: {config.get('name', '-')})"] if other_model else []
    # a TSM's settings that a TSN run does not have are named too ("this run: -"), as for an effvid file
    differs += [f"{k} {v} (this run: {config.get(k, '-')})" for k, v in named.items()
                if (k in config or other_model) and v != config.get(k)]
    line = f"; it was trained as {', '.join(differs)}" if differs else ""
    if (unnamed := info.assumed()) and "shift_div" in config:  # a TSN run has no shift fraction to say
        from ..models.tsm_checkpoint import SETTINGS_NOT_IN_WEIGHTS as words

        ours = {"num_segments": f"{config.get('num_segments')} segments",
                "shift_div": f"shift 1/{config.get('shift_div')}"}
        line += (f"; its name does not say {' or '.join(words[k][0] for k in unnamed)} it was trained "
                 f"with, which the weights cannot tell (this run's: {' and '.join(ours[k] for k in unnamed)})")
    return line
