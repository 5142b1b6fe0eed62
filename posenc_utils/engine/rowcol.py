"""Row/column classification: the measure of position that studies of ViTs and diffusion U-Nets use since the paper
(Loos & Linhardt 2025; "Geometry without Position?" 2026): a linear classifier reads the features at each location
and predicts which of B bins of rows, and which of B bins of columns, the location is in; its accuracy on held-out
images is the score (chance 1/B), its mean absolute error in bins says how far off it is.

* **At each tap's own resolution**, not the 28 x 28 map the readout reads: a tap coarser than 28 (VGG16's 14 x 14,
  ResNet152's 7 x 7 at 224 px) was bilinearly upsampled into the stored features, which is a linear map of full
  column rank, so the tap's own map is recovered exactly (:func:`unresize_matrix`, up to float16 rounding); its
  interpolation pattern, which itself varies with the position, is never read. A tap finer than 28 is read as
  stored (its 28 x 28 resample: the stored features hold nothing finer). Several taps together are read at the
  coarsest one's grid (each finer tap averaged onto it: :func:`area_matrix`).
* **The classifier** is a linear discriminant with a shared diagonal covariance (per channel, the class means and
  the pooled within-class variance; log prior of each bin): closed form, from one pass over the training features,
  deterministic; the studies cited train logistic-regression probes by gradient descent (a deviation: labelled).
* :data:`BINS` bins per axis where the grid has at least that many positions (else undefined); the tables' column
  (the registered measure, :func:`rowcol_accuracy`) is the accuracy at :data:`TABLE_BINS` bins, averaged over rows
  and columns, with a jackknife 95% interval over groups of test images (the classifier is fixed by the training
  images); :func:`rowcol_frame` gives every bin count, axis, accuracy and bin error.
"""
from __future__ import annotations

import functools
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..models.encoders import tap_sizes
from ..primitives import cache, paths, timing
from ..primitives.metrics import image_groups, jackknife_interval
from .features import FeatureSet, open_rows

BINS = (4, 8, 16)  # bins per axis
TABLE_BINS = 4  # the tables' column: defined on every grid of 4 x 4 or more (ResNet152's 7 x 7 last tap included)
ROWCOL_VERSION = 1
STEP_VALUES = 2**23  # stored values converted to float32 per step of a pass


# ---------------------------------------------------------------- the grids


@functools.lru_cache(maxsize=64)
def resize_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src): the 1-D bilinear resize with align_corners=True that :func:`~posenc_utils.models.encoders.resize_taps`
    applies along each axis (PyTorch's own interpolation of the identity)."""
    eye = torch.eye(src, dtype=torch.float64).reshape(src, 1, src)
    return F.interpolate(eye, size=dst, mode="linear", align_corners=True)[:, 0].T.numpy().copy()


@functools.lru_cache(maxsize=64)
def unresize_matrix(own: int, stored: int) -> np.ndarray:
    """(min(own, stored), stored): back from the stored map to the tap's own grid, the exact inverse of an upsampling
    (the pseudo-inverse of a full-rank :func:`resize_matrix`); the identity where the tap was stored at or above its
    own resolution (nothing finer is stored)."""
    if own >= stored:
        return np.eye(stored)
    return np.linalg.pinv(resize_matrix(own, stored))


@functools.lru_cache(maxsize=64)
def area_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src): average pooling of ``src`` positions onto ``dst`` (PyTorch's adaptive average pooling)."""
    eye = torch.eye(src, dtype=torch.float64).reshape(src, 1, src)
    return F.adaptive_avg_pool1d(eye, dst)[:, 0].T.numpy().copy()


def tap_grids(features: FeatureSet) -> tuple[int, ...]:
    """The side of each tap's own grid as the measure reads it: its own resolution, at most the stored size (the
    stored size for every tap where the image size is not known)."""
    if not features.image_size:
        return tuple(features.size for _ in features.tap_names)
    sides = tap_sizes(features.encoder, features.image_size)
    return tuple(min(min(hw), features.size) for hw in sides)


def taps_of(features: FeatureSet, channels: np.ndarray | None) -> list[int]:
    """The taps (indices) that ``channels`` of the concatenated features fall in (all: every tap)."""
    if channels is None:
        return list(range(len(features.tap_names)))
    chans = np.asarray(channels)
    return [i for i, s in enumerate(features.tap_slices().values()) if ((chans >= s.start) & (chans < s.stop)).any()]


def row_grid(features: FeatureSet, channels: np.ndarray | None) -> int:
    """The grid a row's channels are read at: the coarsest of their taps' own grids."""
    grids = tap_grids(features)
    return min(grids[i] for i in taps_of(features, channels))


def grid_matrices(features: FeatureSet, grid: int) -> list[np.ndarray | None]:
    """Per tap, the (grid, stored) map from the stored features onto ``grid`` along each axis: back to the tap's own
    grid, then averaged onto ``grid``; None for a tap coarser than ``grid``."""
    out = []
    for own in tap_grids(features):
        out.append(None if own < grid else area_matrix(own, grid) @ unresize_matrix(own, features.size)
                   if own != grid else unresize_matrix(own, features.size))
    return out


def _on_grid(x: torch.Tensor, mats: list, slices: list[slice]) -> torch.Tensor:
    """Stored rows (b, S, S, C) -> (b, g, g, C') float32 on the grid, for the taps whose channel ranges in ``x`` are
    ``slices`` (C' their channels, in order; only they are converted), each by its matrix (two matrix products: rows,
    then columns)."""
    b, size = x.shape[0], x.shape[1]
    g = mats[0].shape[0]
    out = []
    for m, s in zip(mats, slices):
        t = x[..., s].float()
        c = t.shape[-1]
        if m.shape == (size, size) and np.array_equal(m, np.eye(size)):
            out.append(t)
            continue
        mt = torch.from_numpy(m).float()
        t = torch.matmul(mt, t.reshape(b, size, size * c))  # (b, g, S*C): along the rows
        t = t.reshape(b, g, size, c).transpose(1, 2).reshape(b, size, g * c)
        t = torch.matmul(mt, t).reshape(b, g, g, c).transpose(1, 2)  # along the columns, back to (b, y, x, C)
        out.append(t)
    return out[0] if len(out) == 1 else torch.cat(out, -1)


def _selection(features: FeatureSet, grid: int, channels: np.ndarray | None):
    """The taps a pass transforms (their matrices and channel ranges: only those ``channels`` touch, all by default)
    and the positions of ``channels`` among the transformed channels (None: all of them)."""
    mats, slices = grid_matrices(features, grid), list(features.tap_slices().values())
    used = [i for i in (taps_of(features, channels)) if mats[i] is not None]
    kept = [slices[i] for i in used]
    if channels is None:
        return [mats[i] for i in used], kept, None
    offsets, start = {}, 0
    for s in kept:
        offsets[s.start] = start
        start += s.stop - s.start
    chans = np.asarray(channels, dtype=np.int64)
    local = np.empty(len(chans), dtype=np.int64)
    for s in kept:
        inside = (chans >= s.start) & (chans < s.stop)
        local[inside] = chans[inside] - s.start + offsets[s.start]
    return [mats[i] for i in used], kept, torch.from_numpy(local)


def _passes(features: FeatureSet, grid: int, channels: np.ndarray | None = None):
    """(first image, rows (b, g*g, C) float32 on the grid) over the whole set, a few images at a time: the
    ``channels`` given (all by default; a channel of a tap coarser than the grid is 0)."""
    mats, slices, local = _selection(features, grid, channels)
    full = channels is None and len(slices) < len(features.tap_names)
    per = max(1, STEP_VALUES // (features.size**2 * features.n_channels))
    fmap = open_rows(features)
    try:
        for i0 in range(0, features.n, per):
            i1 = min(features.n, i0 + per)
            if i1 < features.n:
                fmap.prefetch(np.arange(i1, min(features.n, i1 + per)))
            x = fmap.block(i0, i1).cpu().reshape(i1 - i0, features.size, features.size, -1)
            y = _on_grid(x, mats, slices).reshape(i1 - i0, grid * grid, -1)
            if full:  # every channel asked for, some taps coarser than the grid: zeros in their place
                whole = y.new_zeros(i1 - i0, grid * grid, features.n_channels)
                start = 0
                for s in slices:
                    whole[..., s] = y[..., start:start + s.stop - s.start]
                    start += s.stop - s.start
                y = whole
            yield i0, (y if local is None else y[..., local])
            fmap.release(np.arange(i0, i1))
    finally:
        fmap.close()


# ---------------------------------------------------------------- training: moments, then the discriminant


def grid_moments(train: FeatureSet, grid: int, channels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Over the training images, per location of ``grid`` and channel of ``channels`` (all by default): the sum and
    the sum of squares (float64), relative to the first image's values at the first location (``ref``: the shift
    changes no variance); ``n`` images. One pass over those channels, cached by the features' key, grid and channels."""
    chans = None if channels is None else np.asarray(channels, dtype=np.int64)
    key = cache.make_key({"measure": "rowcol_moments", "features": train.key, "grid": grid, "version": ROWCOL_VERSION,
                          "channels": None if chans is None else chans.tolist()})
    folder = paths.cache_dir() / "measures"
    data_path, meta_path = folder / f"rowcol_moments-{key}.npz", folder / f"rowcol_moments-{key}.json"

    def cached():
        if cache.read_file_entry(data_path, meta_path, key) is None:
            return None
        with np.load(data_path) as z:
            return {name: z[name] for name in ("sums", "squares", "n", "ref")}

    def compute():
        t0 = time.perf_counter()
        width = train.n_channels if chans is None else len(chans)
        sums = torch.zeros(grid * grid, width, dtype=torch.float64)
        squares = torch.zeros_like(sums)
        ref = None
        for _, y in _passes(train, grid, chans):
            ref = y[0, 0].clone() if ref is None else ref
            y = y - ref
            sums += y.sum(0).double()
            squares += y.square_().sum(0).double()
        out = {"sums": sums.numpy(), "squares": squares.numpy(), "n": np.array(train.n),
               "ref": (ref if ref is not None else torch.zeros(width)).double().numpy()}
        timing.add("rowcol", time.perf_counter() - t0)

        def write(tmp) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **out)

        cache.write_file_entry(data_path, meta_path, {"key": key, "features": train.key}, write)
        return out

    return cache.computed_once(data_path, cached, compute)


def bin_labels(grid: int, bins: int) -> np.ndarray:
    """The bin (0 .. bins-1) of each of ``grid`` positions along an axis: floor(position x bins / grid)."""
    return np.arange(grid) * bins // grid


def axis_labels(grid: int, bins: int) -> dict[str, np.ndarray]:
    """Per axis, the bin of each location of the grid in raster order: rows (y) and columns (x)."""
    lab = bin_labels(grid, bins)
    return {"row": np.repeat(lab, grid), "column": np.tile(lab, grid)}


def discriminant(moments: dict[str, np.ndarray], grid: int) -> tuple[np.ndarray, np.ndarray, list[tuple[str, int, slice]]]:
    """The linear discriminant of every axis and bin count the grid allows, as one (C, K) weight matrix and (K,)
    bias over all their classes, and (axis, bins, columns of K) for each: class means and pooled within-class
    variance per channel (a channel with none is left out), log prior of each bin."""
    sums, squares, n, ref = moments["sums"], moments["squares"], float(moments["n"]), moments["ref"]
    locations = grid * grid
    grand = sums.sum(0) / (n * locations)  # of the values relative to ``ref``
    weights, biases, blocks, start = [], [], [], 0
    for bins in BINS:
        if bins > grid:
            continue
        for axis, labels in axis_labels(grid, bins).items():
            count = np.bincount(labels, minlength=bins).astype(np.float64) * n  # values per class and channel
            class_sums = np.stack([sums[labels == k].sum(0) for k in range(bins)])  # (bins, C)
            means = class_sums / count[:, None]
            within = (squares.sum(0) - (class_sums**2 / count[:, None]).sum(0)) / max(n * locations - bins, 1.0)
            keep = within > 1e-12 * np.maximum(squares.sum(0) / (n * locations), 1e-30)
            inv = np.where(keep, 1.0 / np.where(keep, within, 1.0), 0.0)
            centred = means - grand
            weights.append((centred * inv).T)  # (C, bins)
            biases.append(-0.5 * (centred**2 * inv).sum(1) + np.log(count / count.sum()))
            blocks.append((axis, bins, slice(start, start + bins)))
            start += bins
    if not blocks:
        return np.zeros((len(grand), 0)), np.zeros(0), []
    w, b = np.concatenate(weights, 1), np.concatenate(biases)
    return w, b - (grand + ref) @ w, blocks  # (y - mean).w + b as one affine map of the stored y


# ---------------------------------------------------------------- scoring


def rowcol_frame(features: FeatureSet, train: FeatureSet, channels: np.ndarray | None = None) -> pd.DataFrame:
    """Per image of ``features``, axis (row, column) and bin count: the accuracy of the discriminant trained on
    ``train`` (over the grid's locations) and its mean absolute error in bins, with ``grid`` and the chance
    accuracy; empty where the grid has fewer positions than the fewest bins. Cached."""
    grid = row_grid(train, channels)
    chans = None if channels is None else np.asarray(channels, dtype=np.int64)
    key = cache.make_key({"measure": "rowcol", "features": features.key, "train": train.key, "grid": grid,
                          "channels": None if chans is None else chans.tolist(), "version": ROWCOL_VERSION})
    path = paths.cache_dir() / "measures" / f"rowcol-{key}.csv"
    meta = path.with_suffix(".json")

    def cached():
        if cache.read_file_entry(path, meta, key) is None:
            return None
        return pd.read_csv(path)

    def compute():
        t0 = time.perf_counter()
        w, b, blocks = discriminant(grid_moments(train, grid, chans), grid)
        wt, bt = torch.from_numpy(w).float(), torch.from_numpy(b).float()
        truth = {(axis, bins): torch.from_numpy(axis_labels(grid, bins)[axis]) for axis, bins, _ in blocks}
        rows = []
        if blocks:
            for i0, y in _passes(features, grid, chans):
                scores = y @ wt + bt  # (b, g*g, K)
                for axis, bins, cols in blocks:
                    pred = scores[..., cols].argmax(-1)
                    miss = (pred - truth[(axis, bins)]).abs().float()
                    acc, err = (miss == 0).float().mean(1), miss.mean(1)
                    rows += [dict(image=i0 + j, axis=axis, bins=bins, accuracy=float(acc[j]), bin_error=float(err[j]))
                             for j in range(len(acc))]
        out = pd.DataFrame(rows, columns=["image", "axis", "bins", "accuracy", "bin_error"]).assign(
            grid=grid, chance=lambda d: 1.0 / d.bins)
        timing.add("rowcol", time.perf_counter() - t0)
        cache.write_file_entry(path, meta, {"key": key}, lambda tmp: out.to_csv(tmp, index=False))
        return out

    return cache.computed_once(path, cached, compute)


def _jackknife(per_image: np.ndarray, groups: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    full = float(per_image.mean())
    left = [per_image[groups != g].mean() for g in np.unique(groups) if (groups != g).any()]
    lo, hi = jackknife_interval(full, np.array(left), level)
    return full, lo, hi


def rowcol_summary(features: FeatureSet, train: FeatureSet, channels: np.ndarray | None = None,
                   groups: np.ndarray | None = None, level: float = 0.95) -> pd.DataFrame:
    """Per axis (row, column and their mean) and bin count: accuracy and bin error over the images of ``features``
    with jackknife ``level`` intervals over ``groups`` of images (:func:`~posenc_utils.primitives.metrics.image_groups`), chance and grid."""
    frame = rowcol_frame(features, train, channels)
    groups = image_groups(features.n) if groups is None else np.asarray(groups)[:features.n]
    both = frame.groupby(["image", "bins"], as_index=False)[["accuracy", "bin_error"]].mean().assign(axis="mean")
    rows = []
    for (axis, bins), d in pd.concat([frame, both]).groupby(["axis", "bins"], sort=False):
        d = d.sort_values("image")
        g = groups[d.image.to_numpy()]
        acc, err = _jackknife(d.accuracy.to_numpy(), g, level), _jackknife(d.bin_error.to_numpy(), g, level)
        rows.append(dict(axis=axis, bins=int(bins), accuracy=acc[0], accuracy_low=acc[1], accuracy_high=acc[2],
                         bin_error=err[0], bin_error_low=err[1], bin_error_high=err[2], chance=1.0 / bins,
                         grid=int(frame.grid.iloc[0]), n_images=int(d.image.nunique())))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


SUMMARY_COLUMNS = ["axis", "bins", "accuracy", "accuracy_low", "accuracy_high", "bin_error", "bin_error_low",
                   "bin_error_high", "chance", "grid", "n_images"]


def rowcol_accuracy(features: FeatureSet, channels: np.ndarray | None = None, groups: np.ndarray | None = None,
                    train: FeatureSet | None = None, level: float = 0.95) -> tuple[float, float, float]:
    """The registered measure: the accuracy at :data:`TABLE_BINS` bins per axis, mean of rows and columns, of the
    discriminant trained on ``train`` (``features`` themselves when not given), over the images of ``features``,
    with its jackknife interval; NaN where the grid has fewer than :data:`TABLE_BINS` positions or no images."""
    if features.n < 1:
        return float("nan"), float("nan"), float("nan")
    s = rowcol_summary(features, train if train is not None else features, channels, groups, level)
    s = s[(s.axis == "mean") & (s.bins == TABLE_BINS)]
    if s.empty:
        return float("nan"), float("nan"), float("nan")
    return float(s.accuracy.iloc[0]), float(s.accuracy_low.iloc[0]), float(s.accuracy_high.iloc[0])
