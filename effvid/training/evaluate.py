"""Evaluation over a loader, with multi-view test protocols (clips x crops averaged)."""

from __future__ import annotations

import functools
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .config import AMP_DTYPES
from .distributed import DistEnv, all_reduce_sum
from .interrupts import StopsOnCtrlC
from .metrics import ClassificationMeter
from .progress import progress_bar


def amp_dtype(device: torch.device, enabled: bool, name: str = "auto") -> torch.dtype | None:
    """The autocast dtype of mixed precision on ``device``: None (full precision) when disabled
    and on the CPU; ``name`` on a GPU, where ``"auto"`` is bfloat16 from Ampere on (compute
    capability 8) and float16 before (a V100's or T4's bfloat16 is emulated, or refused), which
    training pairs with loss scaling."""
    if not enabled or device.type != "cuda":
        return None
    if name == "auto":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.bfloat16 if torch.cuda.get_device_capability(index)[0] >= 8 else torch.float16
    if name not in AMP_DTYPES:
        raise ValueError(f"amp_dtype must be one of {', '.join(AMP_DTYPES)}, got {name!r}")
    return getattr(torch, name)


def autocast(precision: torch.dtype | None):
    """CUDA autocast to ``precision`` (:func:`amp_dtype`'s answer); None: full precision."""
    return torch.autocast("cuda", dtype=precision) if precision is not None else nullcontext()


def autocast_for(device: torch.device, enabled: bool, dtype: str = "auto"):
    """Mixed precision (:func:`amp_dtype`) on GPU when enabled; full precision elsewhere."""
    return autocast(amp_dtype(device, enabled, dtype))


@functools.lru_cache(maxsize=4)
def _key_places(length: int) -> torch.Tensor:
    """Up to 4096 places among ``length``, the same each time (drawing them took 50 ms a batch)."""
    return torch.randperm(length, generator=torch.Generator().manual_seed(0))[:4096].sort().values


def distinct_views(views: torch.Tensor) -> tuple[list[int], list[int]]:
    """``(first, inverse)`` for a batch of views (M, ...): the place of the first of each set of
    identical views, and each view's among those, so that ``views[first][inverse]`` is ``views``."""
    flat = views.flatten(1)
    # The values at a few thousand fixed places find the candidates, and torch.equal decides.
    # Values, not a sum: a sum's rounding depended on the row's place in the batch, and
    # missed copies. The places are scattered, so that a mirror image differs in them.
    keys = [row.tobytes() for row in flat[:, _key_places(flat.shape[1]).to(flat.device)].cpu().numpy()]
    first: list[int] = []
    inverse: list[int] = []
    candidates: dict[bytes, list[int]] = {}
    for m, key in enumerate(keys):
        same = next((j for j in candidates.get(key, ()) if torch.equal(flat[first[j]], flat[m])), None)
        if same is None:
            same = len(first)
            first.append(m)
            candidates.setdefault(key, []).append(same)
        inverse.append(same)
    return first, inverse


def predict_views(model: nn.Module, video: torch.Tensor, computed: list | None = None) -> torch.Tensor:
    """Logits for a batch of clips (N, T, 3, H, W) or of views (N, V, T, 3, H, W); views
    (clips x crops) are averaged, as in TSM's test protocol. Identical views are computed once
    and their logits used for each: the clips of a video with no more frames than segments, or
    of dense sampling under its 64-frame window, are the same frames, and ``--clips 10 --crops
    10`` was 100 forwards of 10 views. ``computed``, a list, gets the number of views computed."""
    if video.dim() == 5:
        if computed is not None:
            computed.append(len(video))
        return model(video)
    n, v = video.shape[:2]
    views = video.flatten(0, 1)
    first, inverse = distinct_views(views)
    if computed is not None:
        computed.append(len(first))
    if len(first) == len(views):
        return model(views).view(n, v, -1).mean(dim=1)
    index = torch.tensor(inverse, device=views.device)
    return model(views[torch.tensor(first, device=views.device)])[index].view(n, v, -1).mean(dim=1)


def no_readable_clips(done: str, videos: str, bad: list, on_this_process: bool = False) -> UserError:
    """The error for a pass over data that read no clip: its 0% (and loss 0) measured nothing
    and must not be recorded as a result. One wording for training, validation and
    ``effvid eval``: "``done`` on no clips: every ``videos`` was unreadable (N unreadable; the
    first: PATH: REASON)"; ``bad`` is the pass's [(path, reason)], of this process only when
    ``on_this_process`` (under torchrun the others have their own)."""
    first = f"{bad[0][0]}: {bad[0][1]}" if bad else "-"
    where = " on this process" if on_this_process else ""
    return UserError(f"{done} on no clips: every {videos} was unreadable ({len(bad)} unreadable{where}; "
                     f"the first: {first})")


def bad_videos_report(bad: list, when: str = " this epoch", full_list: str = "all in bad_videos.json",
                      shown: int = 10, verb: str = "skipped", what: str = "unreadable video(s)") -> str:
    """Unreadable videos (``what``) for the console: the first ``shown`` with their reasons and a
    count of the rest, which ``full_list`` says where to find. A Kinetics download has thousands
    of broken files, and a line for every one of them buried the report."""
    lines = [f"  {verb} {len(bad)} {what}{when}:"]
    lines += [f"    {path}: {reason}" for path, reason in bad[:shown]]
    if len(bad) > shown:
        lines.append(f"    ... and {len(bad) - shown} more ({full_list})")
    return "\n".join(lines)


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, num_classes: int, *,
             env: DistEnv | None = None, amp: bool = True, amp_dtype: str = "auto",
             progress: bool = True, per_video: list | None = None, topk: int = 5,
             computed: list | None = None) -> dict:
    """Top-1/top-5, per-class accuracy, loss and the confusion matrix; ``bad`` lists the
    videos that could not be read. ``per_video``, a list, gets ``(path, label, top)`` for each
    readable video of this process, ``top`` its ``topk`` (class, probability) pairs, for finding
    which videos were wrong. ``computed``, a list, gets the number of views the model computed
    on all processes, identical views of a video once (:func:`predict_views`)."""
    env = env or DistEnv()
    model.eval()
    meter = ClassificationMeter(num_classes)
    bad = []
    views: list[int] = []
    for batch in progress_bar(StopsOnCtrlC(loader), desc="eval", enabled=progress and env.is_main):
        bad.extend(batch["bad"])
        if len(batch["label"]) == 0:
            continue
        labels = batch["label"].to(device)
        with autocast_for(device, amp, amp_dtype):
            logits = predict_views(model, batch["video"].to(device), views).float()
        meter.update(logits, labels, F.cross_entropy(logits, labels).item())
        if per_video is not None:
            probs, classes = logits.softmax(dim=1).topk(min(topk, num_classes), dim=1)
            per_video.extend((path, label, list(zip(c, p))) for path, label, c, p in
                             zip(batch["path"], labels.tolist(), classes.tolist(), probs.tolist()))
    # the views' count rides on the metrics' all-reduce
    state = all_reduce_sum(torch.cat([meter.state(), torch.tensor([float(sum(views))], dtype=torch.float64)])
                           .to(device), env).cpu()
    meter.load_state(state[:-1])
    if computed is not None:
        computed.append(int(state[-1]))
    out = meter.summary()
    out["confusion"] = meter.confusion.tolist()
    out["bad"] = bad
    return out
