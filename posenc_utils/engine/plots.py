"""The paper's figures, drawn from computed results and written as PNG.

Every figure made of image panels (Figs 1, 3-7) leaves its drawn data beside it:
:func:`save_figure` writes ``results/<name>.grid.npz`` (each panel's array, colour map and limits, titles,
labels, texts), and :func:`redraw_grid` draws the same figure from that file alone, with no encoder and
no training (notebook 06). Figures of lines and heat maps are redrawn from their CSV tables instead.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ..primitives import cache, timing
from .images import ImageSet
from ..primitives.products import GRID_SUFFIX, KINDS, RESULTS, declare
from ..primitives.targets import PATTERN_NAMES, PATTERNS, target_map


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

    ``results`` maps a row label to a :class:`~posenc_utils.studies.experiments.ProbeResult`.
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


STYLE = {"context": "paper", "style": "ticks"}  # seaborn's theme: one style for every figure of the study


def spread_labels(fig: plt.Figure, labels: list, step: float = 2.0, rounds: int = 40) -> None:
    """Move annotations (placed with offsets in points) apart, a step at a time, until no two of them overlap as
    the saved file draws them: labels of points that lie close together stay readable. The earlier label keeps
    its place; a later one moves away from the one it overlaps (up if it sits higher, else down)."""
    before = fig.dpi
    fig.set_dpi(DPI)  # text is measured at the resolution it is saved at (its hinted width differs on screen)
    try:
        renderer = fig.canvas.get_renderer()
        for _ in range(rounds):
            boxes = [_box(t, renderer) for t in labels]
            moved = False
            for i, t in enumerate(labels):
                hit = next((boxes[j] for j in range(i) if boxes[i].overlaps(boxes[j])), None)
                if hit is not None:
                    x, y = t.xyann
                    t.xyann = (x, y + (step if boxes[i].y0 + boxes[i].y1 >= hit.y0 + hit.y1 else -step))
                    boxes[i] = _box(t, renderer)
                    moved = True
            if not moved:
                return
    finally:
        fig.set_dpi(before)


def _box(label, renderer):
    """A label's drawn extent with a small margin."""
    return label.get_window_extent(renderer).expanded(1.02, 1.05)


def use_style() -> None:
    """Apply the study's figure style (done once when this module is imported)."""
    import seaborn as sns

    sns.set_theme(**STYLE)


use_style()

FAILED_STYLE = dict(marker="x", s=70, color="red", zorder=6, linewidths=1.5)


def mark_failed(ax, x, y) -> None:
    """Cross out the points of readouts that failed to train (``readout failed``: they measure nothing)."""
    if len(x):
        ax.scatter(x, y, label="readout failed", **FAILED_STYLE)


FORMATS = KINDS["figure"]


def grid_path(figure_path: Path) -> Path:
    """Where the panel data of the image figure ``figure_path`` is kept."""
    figure_path = Path(figure_path)
    return figure_path.parent / RESULTS / f"{figure_path.stem}{GRID_SUFFIX}"


def _is_image_grid(fig: plt.Figure) -> bool:
    """A figure whose axes come from one grid and hold only images and text (no lines, meshes, patches)."""
    axes = fig.axes
    return bool(axes) and any(ax.get_images() for ax in axes) and all(
        ax.get_subplotspec() is not None and not ax.lines and not ax.collections and not ax.patches for ax in axes)


def grid_data(fig: plt.Figure) -> tuple[dict, dict[str, np.ndarray]]:
    """(layout and text, arrays) of an image-grid figure: enough to draw it again."""
    meta = {"size": [float(v) for v in fig.get_size_inches()], "panels": [],
            "suptitle": fig._suptitle.get_text() if fig._suptitle else "",
            "suptitle_size": fig._suptitle.get_fontsize() if fig._suptitle else 10}
    arrays = {}
    for k, ax in enumerate(fig.axes):
        spec = ax.get_subplotspec()
        nrows, ncols = spec.get_geometry()[:2]
        panel = {"row": spec.rowspan.start, "col": spec.colspan.start, "nrows": nrows, "ncols": ncols,
                 "title": ax.get_title(), "title_size": ax.title.get_fontsize(), "ylabel": ax.get_ylabel(),
                 "ylabel_size": ax.yaxis.label.get_fontsize(), "frame": ax.get_frame_on(),
                 "texts": [[t.get_text(), list(map(float, t.get_position())), t.get_fontsize(), t.get_ha(), t.get_va()]
                           for t in ax.texts]}
        images = ax.get_images()
        if images:
            im = images[0]
            arrays[f"panel{k}"] = np.asarray(im.get_array())
            panel.update(array=f"panel{k}", cmap=im.get_cmap().name, clim=[float(v) for v in im.get_clim()],
                         interpolation=im.get_interpolation())
        meta["panels"].append(panel)
    return meta, arrays


def redraw_grid(path: Path) -> plt.Figure:
    """The image-grid figure whose data :func:`save_figure` kept in ``path`` (a ``.grid.npz``)."""
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        arrays = {k: z[k] for k in z.files if k not in ("meta", "digest", "formats")}
    nrows, ncols = meta["panels"][0]["nrows"], meta["panels"][0]["ncols"]
    fig, axes = plt.subplots(nrows, ncols, figsize=meta["size"], squeeze=False)
    used = set()
    for p in meta["panels"]:
        ax = axes[p["row"], p["col"]]
        used.add((p["row"], p["col"]))
        if "array" in p:
            a = arrays[p["array"]]
            ax.imshow(a, cmap=p["cmap"] if a.ndim == 2 else None, vmin=p["clim"][0], vmax=p["clim"][1],
                      interpolation=p["interpolation"])
        ax.set_title(p["title"], fontsize=p["title_size"])
        ax.set_ylabel(p["ylabel"], fontsize=p["ylabel_size"])
        for text, (x, y), size, ha, va in p["texts"]:
            ax.text(x, y, text, fontsize=size, ha=ha, va=va, transform=ax.transAxes)
        off_axes(ax)
        ax.set_frame_on(p["frame"])
    for r in range(nrows):
        for c in range(ncols):
            if (r, c) not in used:
                axes[r, c].remove()
    if meta["suptitle"]:
        fig.suptitle(meta["suptitle"], fontsize=meta["suptitle_size"])
    fig.tight_layout()
    return fig


DPI = 110


def _grid_digest(meta: dict, arrays: dict[str, np.ndarray]) -> str:
    """A hash of everything an image-grid figure is drawn from, and of how it is rendered."""
    import matplotlib
    import xxhash

    h = xxhash.xxh3_128(json.dumps(meta, sort_keys=True).encode())
    h.update(f"{matplotlib.__version__}|{DPI}|{json.dumps(STYLE, sort_keys=True)}".encode())
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _saved_grid(target: Path) -> tuple[str | None, set[str]]:
    """The digest of a saved grid's data and the file formats drawn from it ((None, {}) when unreadable)."""
    try:
        with np.load(target) as z:
            digest = str(z["digest"]) if "digest" in z.files else None
            formats = set(json.loads(str(z["formats"]))) if "formats" in z.files else set()
            return digest, formats
    except (OSError, ValueError, KeyError):
        return None, set()


def drawn(path: Path, formats: tuple[str, ...]) -> bool:
    """Whether an image-grid figure's files in every one of ``formats`` exist and were drawn from the panel
    data saved beside them (:func:`grid_path`): then drawing it again from that data would change nothing."""
    path = Path(path)
    digest, done = _saved_grid(grid_path(path))
    return digest is not None and set(formats) <= done and all(path.with_suffix(e).exists() for e in formats)


def save_figure(fig: plt.Figure, path: Path, formats: tuple[str, ...] = (".png",)) -> None:
    """Write ``fig`` (PNG unless ``formats`` says more; folders made as needed) and, for a figure of
    image panels, the data it was drawn from (:func:`grid_path`).

    An image-grid figure whose data and rendering settings hash as the saved ones, with every file
    already there, is not rendered again (a warm rerun redraws nothing that would come out the same)."""
    with timing.phase("figures"):
        _save_figure(fig, Path(path), formats)


def _save_figure(fig: plt.Figure, path: Path, formats: tuple[str, ...]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = _is_image_grid(fig)
    if grid:
        meta, arrays = grid_data(fig)
        digest, target = _grid_digest(meta, arrays), grid_path(path)
        saved, done = _saved_grid(target)
        if saved == digest and set(formats) <= done and all(path.with_suffix(ext).exists() for ext in formats):
            return
        # the files drawn from these data: those drawn before (same digest) and these; written after them
        done = sorted((done if saved == digest else set()) | set(formats))
    for ext in formats:
        stable = {"metadata": {"CreationDate": None}} if ext == ".pdf" else {}  # the same figure, the same bytes
        fig.savefig(path.with_suffix(ext), dpi=DPI, bbox_inches="tight", **stable)
    if grid:
        target.parent.mkdir(parents=True, exist_ok=True)
        with cache.atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, meta=np.array(json.dumps(meta)), digest=np.array(digest),
                                    formats=np.array(json.dumps(done)), **arrays)


# ---------------------------------------------------------------- products (posenc_utils.primitives.products)

FIG3 = declare("fig3_samples_and_targets", "01", "figure", role="Fig 3", made_by=fig3_samples_and_targets, grid=True)
