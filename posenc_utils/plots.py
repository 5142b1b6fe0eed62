"""The paper's figures, drawn from computed results and written as PNG."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .images import ImageSet
from .targets import PATTERN_NAMES, PATTERNS, target_map


def off_axes(ax):
    """No ticks: an image panel."""
    ax.set_xticks([])
    ax.set_yticks([])


def fig3_samples_and_targets(train: ImageSet, tests: list[ImageSet], path: Path, n_each: int = 3) -> plt.Figure:
    """Fig 3: sample training and test images (top) and the five target maps (bottom)."""
    samples = [(train.load()[i], f"train: {train.name} #{i}") for i in range(min(n_each, train.n))]
    for t in tests:
        samples += [(t.load()[i], f"test: {t.name} #{i}") for i in range(min(n_each if t.n > 1 else 1, t.n))]
    ncol = max(len(samples), len(PATTERNS))
    fig, axes = plt.subplots(2, ncol, figsize=(1.9 * ncol, 4.4))
    for ax in axes.ravel():
        off_axes(ax)
        ax.set_frame_on(False)
    for ax, (img, title) in zip(axes[0], samples):
        ax.imshow(img)
        ax.set_title(title, fontsize=7)
        ax.set_frame_on(True)
    for ax, p in zip(axes[1], PATTERNS):
        ax.imshow(target_map(p, train.size), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{p}: {PATTERN_NAMES[p]}", fontsize=8)
        ax.set_frame_on(True)
    fig.suptitle(f"Sample images ({train.size}x{train.size}) and the five ground-truth position maps", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def fig4_qualitative(results: dict, test_set: ImageSet, index: int, path: Path,
                     patterns: tuple[str, ...] = PATTERNS) -> plt.Figure:
    """Fig 4: predictions of every probed encoder for each pattern on one test image.

    ``results`` maps a row label to a :class:`~posenc_utils.experiments.ProbeResult`.
    """
    size = test_set.size
    labels = list(results)
    fig, axes = plt.subplots(len(patterns), 2 + len(labels), figsize=(1.7 * (2 + len(labels)), 1.75 * len(patterns)))
    axes = np.atleast_2d(axes)
    image = test_set.load()[index]
    for r, p in enumerate(patterns):
        axes[r, 0].imshow(image)
        axes[r, 1].imshow(target_map(p, size), cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_ylabel(p, fontsize=10)
        for c, label in enumerate(labels):
            pred = results[label].upsampled(test_set.name, p, size, slice(index, index + 1))[0]
            axes[r, 2 + c].imshow(pred, cmap="gray", vmin=0, vmax=1)
        for ax in axes[r]:
            off_axes(ax)
    for c, title in enumerate(["input", "ground truth"] + labels):
        axes[0, c].set_title(title.replace(" (", "\n("), fontsize=7)
    fig.suptitle(f"Predicted position maps on {test_set.name} image #{index}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def save_figure(fig: plt.Figure, path: Path) -> None:
    """Write ``fig`` as PNG (folders made as needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
