"""Classification metrics accumulated over an epoch."""

from __future__ import annotations

import torch


class ClassificationMeter:
    """Accumulates a confusion matrix and top-k hits from logits."""

    def __init__(self, num_classes: int, topk: tuple[int, ...] = (1, 5)):
        self.num_classes = num_classes
        self.topk = tuple(k for k in topk if k <= num_classes) or (1,)
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
        self.hits = {k: 0 for k in self.topk}
        self.count = 0
        self.loss_sum = 0.0

    def update(self, logits: torch.Tensor, labels: torch.Tensor, loss: float | None = None) -> None:
        logits, labels = logits.detach().float().cpu(), labels.cpu()
        top = logits.topk(max(self.topk), dim=1).indices
        for k in self.topk:
            self.hits[k] += (top[:, :k] == labels[:, None]).any(dim=1).sum().item()
        self.confusion += torch.bincount(labels * self.num_classes + top[:, 0],
                                         minlength=self.num_classes ** 2).view_as(self.confusion)
        self.count += len(labels)
        if loss is not None:
            self.loss_sum += loss * len(labels)

    def state(self) -> torch.Tensor:
        """Everything as one float64 tensor, so processes can all-reduce it in one call."""
        hits = torch.tensor([self.hits[k] for k in self.topk], dtype=torch.float64)
        head = torch.tensor([self.count, self.loss_sum], dtype=torch.float64)
        return torch.cat([head, hits, self.confusion.flatten().double()])

    def load_state(self, state: torch.Tensor) -> None:
        self.count, self.loss_sum = int(state[0]), float(state[1])
        n = len(self.topk)
        self.hits = {k: int(v) for k, v in zip(self.topk, state[2:2 + n])}
        self.confusion = state[2 + n:].round().long().view(self.num_classes, self.num_classes)

    def summary(self) -> dict:
        n = max(self.count, 1)
        per_class_total = self.confusion.sum(dim=1).tolist()
        # None for a class without samples: its accuracy is unknown, not 0
        per_class = [int(hit) / total if total else None
                     for hit, total in zip(self.confusion.diag().tolist(), per_class_total)]
        out = {f"top{k}": self.hits[k] / n for k in self.topk}
        out.update(loss=self.loss_sum / n, count=self.count, per_class=per_class)
        return out


def per_class_report(classes: list[str], per_class: list[float | None], limit: int = 10) -> str:
    """Top-1 accuracy per class (``per_class`` as :meth:`ClassificationMeter.summary` gives it)
    as one line: every class when there are at most ``limit``, else the ``limit`` lowest.
    Classes without validation clips (None) are counted apart: "lowest 10 of 400" counted
    them among the 400 although they had no accuracy to rank."""
    measured = [(name, acc) for name, acc in zip(classes, per_class) if acc is not None]
    head = ""
    if len(measured) > limit:
        head = f"lowest {limit} of {len(measured)}: "
        measured = sorted(measured, key=lambda r: r[1])[:limit]
    line = head + ", ".join(f"{name} {100 * acc:.1f}%" for name, acc in measured)
    missing = sum(acc is None for acc in per_class)
    if missing:
        line += f" ({missing} {'class' if missing == 1 else 'classes'} had no validation clips)"
    return line
