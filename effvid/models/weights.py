"""Weights on disk: effvid safetensors files and local ImageNet weights.

effvid never unpickles untrusted files: its own weights are safetensors (with the model
configuration and class names as JSON metadata) and every ``torch.load`` uses
``weights_only=True``. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import UserError, command_line, not_a_regular_file, unread_path_hint

METADATA_KEY = "effvid"


def atomic_replace(path: str | Path, write) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``, so a crash never leaves half a file.
    If ``write`` raises, ``path`` is untouched and the folders made for it are removed again."""
    path = Path(path)
    made = [d for d in (path.parent, *path.parent.parents) if not d.exists()]  # deepest first
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    replaced = False
    try:
        write(tmp)
        # as open() would create it: safetensors makes its files 0600 whatever the umask,
        # which left best.safetensors unreadable to the other users of a shared run folder
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        replaced = True
    except (OSError, RuntimeError, SafetensorError) as e:
        # A full disk, a file-size limit or a read-only folder: torch.save reports these as
        # "unexpected pos 1415296 vs 1415184" and safetensors without the path, so say which
        # file, and that the one already there is untouched.
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
        kept = f"; the previous {path.name} is unchanged" if path.exists() else ""
        raise UserError(f"could not write {path} ({detail}): is the disk full, the folder "
                        f"read-only or the file over a size limit?{kept}") from e
    finally:
        if tmp.exists():
            tmp.unlink()
        if not replaced:
            for folder in made:
                try:
                    folder.rmdir()
                except OSError:  # something else was written there meanwhile: keep it
                    break


def unwrapped(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel, DataParallel and torch.compile's wrapper, which
    hide its ``config`` and put ``module.`` or ``_orig_mod.`` before every key."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def save_weights(model: nn.Module, path: str | Path, metadata: dict | None = None) -> None:
    """Save ``model``'s state dict as safetensors; ``model.config`` and ``metadata`` (e.g.
    ``{"classes": [...]}``) are stored as JSON in the file header. A model wrapped for training
    (DistributedDataParallel, DataParallel, torch.compile) is saved as the model inside, which
    :func:`load_model` rebuilds."""
    model = unwrapped(model)
    info = dict(getattr(model, "config", {}) or {})
    info.update(metadata or {})
    # safetensors refuses shared or non-contiguous storage; clone to be safe.
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    atomic_replace(path, lambda tmp: save_file(state, str(tmp), metadata={METADATA_KEY: json.dumps(info)}))


RESUME_STATE = "last_state.pt"  # a run's resume state (weights, optimizer, history), as train writes it


def is_resume_state(path: str | Path, content=None) -> bool:
    """Whether ``path`` is a run's resume state rather than weights: by its name, or, once
    loaded, by its ``content`` (the keys train writes), so that a renamed copy is known too."""
    if Path(path).name == RESUME_STATE:
        return True
    return isinstance(content, dict) and {"model", "optimizer", "history"} <= content.keys()


def resume_state_error(path: str | Path) -> ValueError:
    """What every command says when given a resume state where weights are wanted: the weights
    files of that run folder (read as a release checkpoint, the state "holds no state dict of
    tensors", and effvid convert was suggested)."""
    folder = Path(path).parent
    found = [str(folder / n) for n in ("best.safetensors", "last.safetensors") if (folder / n).is_file()]
    from ..training.run_folder import resume_command  # (it imports this module)

    use = (f"use {' or '.join(found)}" if found
           else f"its folder {folder} has no best.safetensors or last.safetensors")
    return ValueError(f"{path} is a run's resume state, not weights: {use} "
                      f"({resume_command(folder)} continues that run)")


def weights_not_found(path: str | Path, called: str = "weights file") -> FileNotFoundError:
    """The error for no weights file at ``path`` (which a command ``called`` so): a folder is
    named as one, with the weights of a run folder (each command said "not found" of a run
    folder, or only some did); a FIFO or a device as what it is."""
    path = Path(path)
    if path.is_dir():
        hint = next((f" such as {path / n}" for n in ("best.safetensors", "last.safetensors")
                     if (path / n).is_file()), "")
        return FileNotFoundError(f"{path} is a folder: give a weights file{hint}")
    what = not_a_regular_file(path, "weights file")
    return FileNotFoundError(f"{path} is {what}" if what else f"{called} not found: {path}{unread_path_hint(path)}")


def not_weights(path: Path) -> ValueError | None:
    """The error for a file that its name says is a video or an ONNX export, not weights: read
    as weights, it failed as "not a readable PyTorch checkpoint ...: Unsupported operand 0" or
    "damaged, or not a safetensors file (header too large)"."""
    from ..data.video import VIDEO_EXTENSIONS

    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return ValueError(f"{path} is a video, not a weights file (an effvid checkpoint is a .safetensors "
                          "file, such as a run's best.safetensors)")
    if suffix == ".onnx":
        return ValueError(f"{path} is an ONNX export, not a weights file: ONNX Runtime runs it (effvid "
                          "stream --checkpoint takes an online one); the other commands take the "
                          ".safetensors it was exported from")
    return None


def strip_module_prefix(state: dict) -> dict:
    """``state`` without the ``module.`` that DataParallel and DistributedDataParallel put before
    every key (the original TSM release files have it too); unchanged unless every key has it."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


# What a weights file holds (weights_kind): in words, and what takes it
WEIGHTS_KINDS = {
    "effvid": ("an effvid checkpoint", "effvid train --init-weights fine-tunes from it, and eval, predict, "
               "export and stream take it with --checkpoint"),
    "imagenet": ("torchvision ImageNet weights", "effvid train --imagenet-weights takes them"),
    "tsm_release": ("an original TSM release checkpoint", "effvid train --init-weights fine-tunes from its "
                    "backbone, and effvid convert makes an effvid checkpoint of it for the other commands"),
}


def weights_kind(state, meta: dict | None = None) -> str | None:
    """Which of :data:`WEIGHTS_KINDS` a state dict (or its keys) holds: "effvid" (an effvid
    recogniser: ``backbone.*`` and ``fc.*``, or ``meta``, an effvid file's metadata, naming its
    model), "tsm_release" (the original TSM code's ``base_model.*`` and ``new_fc.*``), "imagenet"
    (a torchvision ResNet or MobileNetV2 as a 2D network: ``conv1.*`` and ``layer1.*``, or
    ``features.*`` and ``classifier.1.*``); None for anything else. DataParallel's ``module.``
    prefix is looked through."""
    if meta and "name" in meta:
        return "effvid"
    keys = list(strip_module_prefix(dict.fromkeys(state)))
    if any(k.startswith(("base_model.", "new_fc.")) for k in keys):
        return "tsm_release"
    if any(k.startswith("backbone.") for k in keys) and all(k.startswith(("backbone.", "fc.")) for k in keys):
        return "effvid"
    if (("conv1.weight" in keys and any(k.startswith("layer1.") for k in keys))
            or ("features.0.0.weight" in keys and "classifier.1.weight" in keys)):
        return "imagenet"
    return None


def file_weights_kind(path: str | Path) -> str | None:
    """:func:`weights_kind` of the file ``path``: from a safetensors header, or a PyTorch file's
    keys (its tensors mapped, not read); None for a file that is neither."""
    if safetensors_problem(path) is None:
        with safe_open(str(path), framework="pt") as f:
            return weights_kind(f.keys(), json.loads((f.metadata() or {}).get(METADATA_KEY, "{}")))
    content = None
    for mmap in (True, False):  # mmap reads only zip files, not the format before PyTorch 1.6
        try:
            content = load_torch_file(path, mmap=mmap)
            break
        except ValueError:
            pass
    if isinstance(content, dict) and isinstance(content.get("state_dict"), dict):
        content = content["state_dict"]
    return weights_kind(content) if isinstance(content, dict) else None


def wrong_weights(path: str | Path, kind: str, wanted: str) -> ValueError:
    """The error for weights of ``kind`` (see :func:`weights_kind`) given where ``wanted`` ones
    are: what the file is, and which flag takes it."""
    what, use = WEIGHTS_KINDS[kind]
    return ValueError(f"{path} is {what}, not {wanted}: {use}")


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Return (state_dict, metadata) of an effvid safetensors file. Keys saved from a
    DataParallel or DistributedDataParallel model lose their ``module.`` prefix."""
    path = Path(path)
    if not path.is_file():
        raise weights_not_found(path)
    if is_resume_state(path):
        raise resume_state_error(path)
    if error := not_weights(path):
        raise error
    try:
        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        if _starts_like_torch_save(path):  # safetensors says "header too large"
            if file_weights_kind(path) == "imagenet":
                raise wrong_weights(path, "imagenet", "an effvid checkpoint") from e
            from ..errors import command_line

            raise ValueError(
                f"{path} is a PyTorch checkpoint, not effvid's .safetensors weights: convert an "
                f"original TSM release checkpoint with {command_line('effvid', 'convert', path, 'model.safetensors')} "
                "--classes CLASS_FILE, or fine-tune from it with effvid train --init-weights") from e
        raise ValueError(f"{path} is not a readable safetensors file: {_safetensors_reason(e)}") from e
    return strip_module_prefix(state), json.loads(header.get(METADATA_KEY, "{}"))


def _safetensors_reason(error: Exception) -> str:
    """safetensors' error in words that say what happened to the file ("incomplete metadata,
    file not fully covered" is a truncated file)."""
    if isinstance(error, OSError):
        return error.strerror or str(error)
    text = str(error).removeprefix("Error while deserializing header: ")
    if "not fully covered" in text:
        return "its size is not what its header lists (truncated, or a copy that did not finish)"
    if "invalid header length" in text:  # the file ends before the header it announces does
        return "it ends inside its header (truncated, or a copy that did not finish)"
    return f"damaged, or not a safetensors file ({text})"


def safetensors_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a readable safetensors file (:func:`load_weights`'s words), or None.
    Only the header is read: safe_open parses it and checks that the file is as long as the
    tensors it lists, which finds a truncated file at once (no tensor is read)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            f.metadata()
    except (SafetensorError, OSError) as e:
        return _safetensors_reason(e)
    return None


def _starts_like_torch_save(path: Path) -> bool:
    """Whether a file begins as torch.save writes: a zip archive, or (before PyTorch 1.6) a
    pickle."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head == b"PK\x03\x04" or head[:1] == b"\x80"


def load_model(path: str | Path, **overrides) -> tuple[nn.Module, dict]:
    """Rebuild a model from an effvid weights file; returns (model, metadata).

    The model is in eval mode, ready to classify, as
    :func:`effvid.models.tsm_checkpoint.load_tsm_checkpoint` returns one (``model.train()`` to
    train it further; :func:`effvid.create_model`, like torchvision's constructors, returns a new
    model in training mode). ``overrides`` change construction arguments, e.g.
    ``num_segments=16``; an argument that :func:`effvid.create_model` does not take raises its
    ``TypeError``, and so does ``name`` (the file's model is built).
    """
    from . import create_model

    state, meta = load_weights(path)
    if "name" not in meta:
        if (kind := weights_kind(state)) not in ("effvid", None):
            raise wrong_weights(path, kind, "an effvid checkpoint")
        raise ValueError(f"{path} has no effvid model configuration in its metadata")
    if "name" in overrides:  # create_model's own argument: "got multiple values for argument 'name'"
        raise TypeError(f"load_model cannot override name ({overrides['name']!r}): it builds the model the "
                        f"file holds, a {meta['name']} (to start a {overrides['name']} from its weights: "
                        f"{command_line('effvid', 'train', '--model', overrides['name'], '--init-weights', path)})")
    kwargs = _factory_kwargs(meta)
    # overrides are not filtered: a misspelt one (num_segmnts=16) must raise create_model's
    # TypeError, not be dropped silently
    kwargs.update(overrides)
    model = create_model(meta["name"], **kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # e.g. num_classes overridden: say which file and which keys
        raise ValueError(f"{path} does not fit {meta['name']} built with {overrides or 'its own configuration'}: "
                         + str(e).split("\n\t", 1)[-1].replace("\n\t", "; ")) from e
    # trained weights are loaded to be used: in training mode, BatchNorm used each batch's
    # statistics and dropout dropped, so a user's model(x) gave other, noisier answers
    return model.eval(), meta


def _factory_kwargs(meta: dict) -> dict:
    allowed = {"num_classes", "num_segments", "dropout", "partial_bn", "shift_div",
               "shift_direction", "shift_place"}
    return {k: v for k, v in meta.items() if k in allowed}


def _numpy_scalar_globals() -> list:
    """numpy's scalar reconstruction function (under its numpy 1 and numpy 2 module paths) and
    the numeric dtype classes: what a pickled ``np.float64`` needs, and nothing else."""
    import numpy as np

    try:
        scalar = np._core.multiarray.scalar
    except AttributeError:  # numpy 1.x
        scalar = np.core.multiarray.scalar
    allowed: list = [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
    ]
    numeric = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
               "float16", "float32", "float64", "longdouble", "complex64", "complex128")
    for name in numeric:
        cls = type(np.dtype(name))
        if cls is not np.dtype:  # numpy >= 1.25 has one class per dtype (np.dtypes.Float64DType)
            allowed.append((cls, f"numpy.dtypes.{cls.__name__}"))
    return allowed


def _is_refusal(err: Exception) -> bool:
    """Whether torch.load refused an object type (as opposed to failing on a corrupt or foreign
    file, which weights_only reports in the same words)."""
    return (isinstance(err, pickle.UnpicklingError) and "Weights only load failed" in str(err)
            and re.search(r"unsupported global|Unsupported class", str(err), re.I) is not None)


def _load_error_detail(err: Exception) -> str:
    """The useful part of torch.load's error. Never torch's advice to retry with
    ``weights_only=False``, which would run whatever code the file carries."""
    text = str(err)
    m = re.search(r"unsupported global: GLOBAL ([\w.]+)|unsupported GLOBAL ([\w.]+)", text, re.I)
    if m:
        return f"it contains a pickled {m.group(1) or m.group(2)}"
    m = re.search(r"Unsupported operand \d+|Unsupported class [\w.]+", text)
    if m:
        return m.group(0)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "weights_only" not in ln]
    return f"{type(err).__name__}: {lines[-1]}" if lines else type(err).__name__


def load_torch_file(path: str | Path, mmap: bool = False):
    """``torch.load(path, weights_only=True)`` with errors that name the file.

    numpy scalars are allowed too (the original TSM checkpoints store ``best_prec1`` as one);
    any other pickled class is refused with its name, and nothing in the file is executed.
    ``mmap``: the tensors are mapped, not read, for a caller that wants the plain values only
    (a 200 MB state then loads in ~50 ms instead of ~1 s).
    """
    path = Path(path)
    if not path.is_file():
        raise weights_not_found(path)
    if error := not_weights(path):
        raise error
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # a corrupt or foreign file fails with many exception types
        if _is_refusal(e):
            raise ValueError(
                f"{path}: refused to load: {_load_error_detail(e)}; effvid reads .pth files with "
                "torch.load(weights_only=True), which allows only tensors, plain Python values "
                "and numpy scalars") from e
        raise ValueError(f"{path} is not a readable PyTorch checkpoint (corrupt, truncated or "
                         f"another format): {_load_error_detail(e)}") from e


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a local .safetensors, or .pth/.pt file (loaded with weights_only),
    without DataParallel's ``module.`` prefix."""
    path = Path(path)
    if not path.is_file():
        raise weights_not_found(path)
    if path.suffix == ".safetensors":
        return load_weights(path)[0]
    obj = load_torch_file(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return strip_module_prefix(obj)


def load_imagenet_weights(model: nn.Module, path: str | Path) -> None:
    """Load torchvision ImageNet weights (e.g. ``resnet50-11ad3fa6.pth``) from a local file into
    a torchvision model *before* its head is removed and the shift inserted. The ImageNet
    classifier is skipped. Files saved before PyTorch 0.4.1 (such as the classic
    ``resnet50-19c8e357.pth``) have no BatchNorm ``num_batches_tracked``; that is accepted."""
    state = read_state_dict(path)
    if (kind := weights_kind(state)) in ("effvid", "tsm_release"):
        raise wrong_weights(path, kind, "ImageNet weights for --imagenet-weights")
    head = ("fc.", "classifier.")
    state = {k: v for k, v in state.items() if not k.startswith(head)}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(head)}
    check_state_dict_fits(state, own, f"{path} does not match {type(model).__name__}",
                          may_miss=lambda k: k.endswith("num_batches_tracked"))
    model.load_state_dict(state, strict=False)


def check_state_dict_fits(state: dict, own: dict, what: str, may_miss=lambda key: False) -> None:
    """Raise ``ValueError(what: missing [...], unexpected [...], wrong shape [...])`` unless
    ``state`` loads into a model whose state dict is ``own``; keys for which ``may_miss`` is
    true may be absent. (``load_state_dict(strict=False)`` raises a RuntimeError on a shape
    mismatch, with a message that names neither the file nor the model.)"""
    missing = sorted(k for k in own.keys() - state.keys() if not may_miss(k))
    unexpected = sorted(state.keys() - own.keys())
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
             for k in sorted(state.keys() & own.keys()) if state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{what}: missing {missing[:5]}, unexpected {unexpected[:5]}, "
                         f"wrong shape {wrong[:3]}")
