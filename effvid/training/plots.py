"""PNG plots written into the run folder: training curves and a confusion matrix."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..models.weights import atomic_replace  # noqa: E402
from ..plot_text import missing_glyphs_noted, shorten_label  # noqa: E402


def _save(fig, path: str | Path) -> None:
    """Write the figure through a temp file: a run killed while plotting keeps the previous
    epoch's PNG instead of half of a new one."""
    try:
        atomic_replace(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    finally:
        plt.close(fig)


# one colour per split in both panels (the accuracy panel drew val first, which swapped them)
SPLIT_COLOURS = {"train": "C0", "val": "C1"}


def curves_figure(history: list[dict]):
    """The loss and accuracy panels of ``curves.png`` (a matplotlib Figure; the caller closes it)."""
    epochs = [h["epoch"] + 1 for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    splits = ["train", "val"] if all("val" in h for h in history) else ["train"]
    for split in splits:
        colour = SPLIT_COLOURS[split]
        ax_loss.plot(epochs, [h[split]["loss"] for h in history], "o-", color=colour, label=split)
        ax_acc.plot(epochs, [100 * h[split]["top1"] for h in history], "o-", color=colour,
                    label=f"{split} top-1")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy", ylim=(0, 100))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no tick at 1.5
    fig.tight_layout()
    return fig


def plot_curves(history: list[dict], path: str | Path) -> None:
    _save(curves_figure(history), path)


def plot_confusion(confusion, classes: list[str], path: str | Path, title: str = "") -> None:
    with missing_glyphs_noted(Path(path).name):
        _plot_confusion(confusion, classes, path, title)


def _plot_confusion(confusion, classes: list[str], path: str | Path, title: str) -> None:
    import numpy as np

    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    labelled = len(classes) <= 40
    labels = [shorten_label(name) for name in classes] if labelled else []
    # grows with the classes and room for their labels (~0.08 inch a character) while they are
    # labelled, then stays at 20 inches (2000 px): at 400 classes the unbounded size was
    # 18200 px square, 96 s and 15 GB to draw every epoch
    label_room = 0.08 * max(map(len, labels), default=0)
    size = min(max(4.0, 0.45 * len(classes) + 2 + label_room), 20.0)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if labelled:
        ax.set_xticks(range(len(classes)), labels, rotation=90)
        ax.set_yticks(range(len(classes)), labels)
        for i in range(len(classes)):
            for j in range(len(classes)):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title or "Confusion matrix")
    fig.tight_layout()
    _save(fig, path)
