"""The configuration of a training run: one flat dataclass, saved as JSON in the run folder."""

from __future__ import annotations

import json
import math
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from ..errors import BadValue, did_you_mean, not_a_regular_file

# Mixed precision's autocast dtypes on GPU (effvid.training.evaluate.amp_dtype)
AMP_DTYPES = ("auto", "bfloat16", "float16")

# The values a field of a few names takes (effvid train's --help shows them)
CHOICES = {"schedule": ("cosine", "step"), "optimizer": ("sgd", "adamw"), "sampling": ("segment", "dense"),
           "amp_dtype": AMP_DTYPES, "shift_direction": ("bidirectional", "causal"),
           "shift_place": ("residual", "inplace")}

# Fields that may differ when a run is resumed: where and how it runs, and how long. Everything
# else defines the run (model, data transforms, optimiser, schedule) and must stay the same,
# or "--resume continues exactly" would not hold.
# Files and folders the run reads (config.json stores them absolute).
INPUT_PATHS = ("data", "val_data", "data_root", "val_data_root", "classes", "imagenet_weights",
               "init_weights")
RESUMABLE_CHANGES = ("data", "val_data", "data_root", "val_data_root", "classes", "imagenet_weights",
                     "init_weights", "epochs", "output", "workers", "worker_timeout", "device", "amp_dtype", "resume",
                     "overwrite", "progress")
# Fields whose default (None) a run decides when it starts, from its data, --init-weights or
# --optimizer; config.json holds the decision, which a resume keeps (TrainConfig.with_run_decisions), and
# under its key DECIDED_KEY the names of those decided, not given: a new run from the file
# (--config) decides them again, for its own data (TrainConfig.load's redecide)
DECIDED_AT_START = ("flip", "fc_lr_mult", "lr", "weight_decay")
DECIDED_KEY = "decided"
# fc_lr_mult for a new classifier (TSM's 5x from ImageNet; its bias gets 2x that). A classifier
# that --init-weights brings trained on the run's classes learns at 1x, as in the official code.
NEW_CLASSIFIER_LR_MULT = 5.0
# lr and weight_decay when not given: TSM's SGD settings, and AdamW's usual ones (SGD's 0.01
# with Adam wrecked ImageNet weights, and its decoupled decay of 5e-4 is next to none)
OPTIMIZER_DEFAULTS = {"sgd": {"lr": 0.01, "weight_decay": 5e-4},
                      "adamw": {"lr": 1e-3, "weight_decay": 0.05}}


@dataclass
class TrainConfig:
    # data
    data: str = ""                 # a class-folder root, a list file, an SSv2 JSON or a Kinetics CSV
    val_data: str | None = None    # validation list/folder; default: root/val or a split
    data_root: str | None = None   # base folder for relative paths in list files (SSv2: the videos)
    # the same for val_data, whose videos may lie elsewhere; default (and in the config.json of
    # runs from before it existed): data_root
    val_data_root: str | None = None
    classes: str | None = None     # class file; default: classInd.txt / labels.json beside DATA
    val_fraction: float = 0.2      # used when the data has no train/ and val/ folders
    official_split: int = 1        # which of HMDB51's / UCF101's published splits (1, 2 or 3)
    # model
    model: str = "tsm_resnet50"
    num_segments: int = 8
    shift_div: int = 8
    shift_direction: str = "bidirectional"
    shift_place: str = "residual"
    dropout: float = 0.5
    partial_bn: bool = False
    imagenet_weights: str | None = None   # local torchvision ImageNet .pth/.safetensors
    init_weights: str | None = None       # effvid .safetensors or original TSM .pth to fine-tune from
    # input
    size: int = 224
    scale_size: int | None = None  # test resize of the short side; default size * 256 // 224
    # random horizontal flips; None: on, unless they would change the labels (Something-
    # Something's annotations, classes named by a direction: run_data.flips_change_labels),
    # decided when the run starts (config.json holds the decision)
    flip: bool | None = None
    crop_scales: list[float] = field(default_factory=lambda: [1.0, 0.875, 0.75, 0.66])
    sampling: str = "segment"      # "segment" (TSN) or "dense"
    # optimisation
    optimizer: str = "sgd"         # "sgd" (TSM's recipe) or "adamw" (faster from scratch)
    epochs: int = 50
    batch_size: int = 8
    lr: float | None = None         # None: the optimizer's (OPTIMIZER_DEFAULTS), decided at start
    momentum: float = 0.9
    weight_decay: float | None = None  # None: the optimizer's, as lr
    clip_grad: float | None = 20.0
    # classifier weight LR multiplier (its bias gets 2x this); None: NEW_CLASSIFIER_LR_MULT,
    # or 1 when --init-weights keeps its classifier (decided when the run starts)
    fc_lr_mult: float | None = None
    schedule: str = "cosine"       # "cosine" or "step"
    lr_steps: list[int] = field(default_factory=lambda: [20, 40])
    warmup_epochs: float = 0.0
    # run
    output: str = "runs/effvid"
    seed: int | None = 0
    workers: int = 2
    # seconds the run waits for a batch from its data-loading workers before it ends as stalled
    # (a stopped worker, one stuck on an unresponsive disk); 0: forever. A slow but healthy
    # batch of long videos takes tens of seconds: 600 leaves a wide margin.
    worker_timeout: float = 600.0
    device: str = "auto"           # "auto", "cpu", "cuda", "cuda:1", ...
    amp: bool = True               # mixed precision on GPU (autocast); ignored on CPU
    amp_dtype: str = "auto"        # "auto" (bfloat16 from Ampere on, else float16), "bfloat16", "float16"
    resume: bool = False
    overwrite: bool = False        # start a new run in an --output that already holds one
    progress: bool = True

    def __post_init__(self) -> None:
        # From Python, paths and tuples are natural; the saved JSON holds strings and lists.
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, os.PathLike):
                setattr(self, f.name, os.fspath(value))
            elif isinstance(value, tuple):
                setattr(self, f.name, list(value))
        self.validate()

    def validate(self) -> None:
        def bad(name, why):
            value = getattr(self, name)
            raise BadValue(name, value, why, f"bad config value {name}={value!r}: {why}")

        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            if not _has_type(value, hints[f.name]):
                bad(f.name, f"expected {_type_name(hints[f.name])}, got {type(value).__name__}")
            if isinstance(value, float) and not math.isfinite(value):
                bad(f.name, "must be a finite number")
        for name in ("num_segments", "epochs", "batch_size", "size"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1")
        # 0 read as "not given" (test_scale_size), and a run trained with it
        if self.scale_size is not None and self.scale_size < 1:
            bad("scale_size", "must be >= 1")
        if self.scale_size is not None and self.scale_size < self.size:  # the centre crop is cut from it
            bad("scale_size", f"must be at least the crop size ({self.size})")
        if self.lr is not None and self.lr <= 0:
            bad("lr", "must be > 0")
        if not 0 <= self.dropout < 1:
            bad("dropout", "must be in [0, 1)")
        if not 0 < self.val_fraction < 1:
            bad("val_fraction", "must be in (0, 1)")
        if self.val_data_root is not None and self.val_data is None:
            bad("val_data_root", "it gives the folder of val_data's videos, and there is no val_data "
                "(without it the validation videos are part of data, found with data_root)")
        if self.official_split not in (1, 2, 3):
            bad("official_split", "must be 1, 2 or 3 (HMDB51 and UCF101 publish three splits)")
        if self.workers < 0:
            bad("workers", "must be >= 0")
        if self.worker_timeout < 0:
            bad("worker_timeout", "must be >= 0 (0: wait forever)")
        if self.weight_decay is not None and self.weight_decay < 0:
            bad("weight_decay", "must be >= 0")
        if not self.crop_scales or not all(0 < c <= 1 for c in self.crop_scales):
            bad("crop_scales", "must be fractions in (0, 1]")
        if not 0 <= self.warmup_epochs <= self.epochs:
            bad("warmup_epochs", f"must be in [0, epochs={self.epochs}]")
        if not 0 <= self.momentum < 1:
            bad("momentum", "must be in [0, 1)")
        if self.clip_grad is not None and self.clip_grad < 0:
            bad("clip_grad", "must be > 0, or 0 / null for no clipping")
        if self.fc_lr_mult is not None and self.fc_lr_mult <= 0:
            bad("fc_lr_mult", "must be > 0")
        if any(s < 1 for s in self.lr_steps) or self.lr_steps != sorted(set(self.lr_steps)):
            bad("lr_steps", "must be increasing epoch numbers >= 1")
        if self.seed is not None and not 0 <= self.seed < 2**32:
            bad("seed", "must be in [0, 2**32)")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                bad(name, f"choose one of {', '.join(allowed)}")
        # A bidirectional shift moves 1/shift_div of the channels each way: 1 would move them
        # all to t+1 and none to t-1 (the bound of effvid.models.temporal_shift, checked here
        # so that a run is refused before its data is read)
        fewest_div = 2 if self.shift_direction == "bidirectional" else 1
        if self.shift_div < fewest_div:
            bad("shift_div", f"must be >= {fewest_div} for a {self.shift_direction} shift")

    @property
    def test_scale_size(self) -> int:
        from ..data.transforms import default_scale_size  # here: importing config stays light (no torch)

        return self.scale_size or default_scale_size(self.size)

    def to_json(self, decided: list[str] | None = None) -> str:
        """The configuration as JSON; ``decided``: the DECIDED_AT_START fields that the run
        decided rather than was given, listed under DECIDED_KEY (a run's config.json)."""
        values = asdict(self)
        if decided is not None:
            values[DECIDED_KEY] = [k for k in DECIDED_AT_START if k in decided]
        return json.dumps(values, indent=2)

    @classmethod
    def from_dict(cls, values: dict, redecide: bool = False) -> "TrainConfig":
        """The configuration in ``values``; ``redecide``: the fields that DECIDED_KEY lists
        (decided by the run that wrote them) set to None, for a new run to decide again. A file
        without the key (by hand, or from an older effvid) holds only values given."""
        values = dict(values)
        decided = values.pop(DECIDED_KEY, [])
        if not (isinstance(decided, list) and all(k in DECIDED_AT_START for k in decided)):
            raise ValueError(f"bad config value {DECIDED_KEY}={decided!r}: expected a list of the "
                             f"fields a run decides ({', '.join(DECIDED_AT_START)})")
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError("unknown config keys: " + ", ".join(
                f"{key} ({hint})" if (hint := _field_hint(key, known)) else key for key in sorted(unknown)))
        if redecide:
            values.update(dict.fromkeys(decided))
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path, redecide: bool = False) -> "TrainConfig":
        """The configuration in the JSON file ``path``; a folder, a missing file or one that is no
        text (a weights file) is refused naming it (they raised IsADirectoryError, or said
        "'utf-8' codec can't decode byte 0x80")."""
        from ..data.files import not_found, read_text  # here: importing config stays light (no torch)

        path = Path(path)
        if what := not_a_regular_file(path, "JSON file"):
            saved = path / "config.json"  # a run folder given for its config.json
            raise ValueError(f"config file {str(path)!r} is {what}"
                             + (f" (the run's configuration is {saved})" if saved.is_file() else ""))
        if not path.is_file():
            raise not_found("config file", path)
        return cls.from_json(read_text(path, "config file"), f"config file {str(path)!r}", redecide)

    @classmethod
    def from_json(cls, text: str, source: str, redecide: bool = False) -> "TrainConfig":
        """The configuration in ``text``, read from ``source`` (which errors name); ``redecide``:
        as from_dict's."""
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{source} is not valid JSON: {e}") from e
        if not isinstance(values, dict):
            raise ValueError(f"{source} must hold a JSON object")
        try:
            return cls.from_dict(values, redecide)
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from e

    def with_run_decisions(self, saved: dict) -> "TrainConfig":
        """This configuration with a saved run's decisions (``saved``: its config as a dict) in
        place of its undecided (None) DECIDED_AT_START fields: a resume continues as the run
        started, whatever its data would decide now."""
        decided = {k: saved[k] for k in DECIDED_AT_START if getattr(self, k) is None and saved.get(k) is not None}
        return replace(self, **decided)

    def with_optimizer_defaults(self) -> "TrainConfig":
        """This configuration with its optimizer's lr and weight_decay where they are None."""
        defaults = OPTIMIZER_DEFAULTS[self.optimizer]
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def resume_differences(self, saved: dict, on_cpu: bool = False) -> list[str]:
        """The settings that differ from a saved run's (``saved``: its config as a dict) and
        may not change on resume. A ``seed`` of None, or of a DECIDED_AT_START field, means "the
        run's own" (what with_run_decisions gives it). ``on_cpu``: the
        resume trains on the CPU, where ``amp`` does nothing (--no-amp was refused there)."""
        diffs = []
        for f in fields(self):
            if f.name in RESUMABLE_CHANGES or f.name not in saved or (on_cpu and f.name == "amp"):
                continue
            mine = getattr(self, f.name)
            if mine is None and (f.name == "seed" or f.name in DECIDED_AT_START):
                continue
            if mine != saved[f.name]:
                diffs.append(f"{f.name} {saved[f.name]!r} -> {mine!r}")
        return diffs


def _has_type(value, hint) -> bool:
    """Whether a JSON-loaded value fits a field's annotation (int for float is fine; bool is
    not an int here, and "false" is not a bool)."""
    if hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, h) for h in typing.get_args(hint))
    if origin is list:
        return isinstance(value, list) and all(_has_type(v, typing.get_args(hint)[0]) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _field_hint(key: str, known: set[str]) -> str:
    """"did you mean 'lr_steps'?" for a mistyped config key, also one spelt as its flag
    (``lr-steps``); or "did you mean 'lr'?" for words whose initials are a field
    (``learning_rate``), which difflib finds too far apart; else ""."""
    spelt = key.replace("-", "_")
    if hint := did_you_mean(spelt, sorted(known)):
        return hint
    words = [w for w in spelt.lower().split("_") if w]
    initials = "".join(w[0] for w in words)
    return f"did you mean {initials!r}?" if len(words) > 1 and initials in known else ""
