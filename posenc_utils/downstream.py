"""Notebook 05 (in progress): downstream tasks where position may matter (PAPER.md section 4, Table 5).

Offline there is no salient-object or segmentation dataset, so the scenes are generated. They mimic
the one statistic of the real datasets that makes position useful, and nothing more:

* :func:`sod_scene`: one object on a textured background. Real SOD datasets are strongly centre-biased
  (objects sit near the image centre), so the object's centre is drawn from a Gaussian around the image
  centre. Its colour statistics overlap the background's, so appearance alone is informative but not
  decisive, and position alone is not enough either (the object is not always at the centre).
* :func:`seg_scene`: a vertical layout (sky above, ground below, a horizon near the middle that
  wanders), with class textures whose colours overlap: the layout helps, the appearance decides.

Metrics follow the SOD and segmentation literature: :func:`f_measure` (beta^2 = 0.3, adaptive
threshold: twice the mean saliency, as Achanta et al. 2009 and the SOD benchmarks), :func:`max_f_measure`,
:func:`mean_absolute_error`, and :func:`mean_iou` (over the whole test set's confusion matrix, as
PASCAL VOC).
"""
from __future__ import annotations

import numpy as np

SEG_CLASSES = ("sky", "ground", "object")


def _texture(rng: np.random.Generator, shape: tuple[int, int], mean: np.ndarray, spread: float) -> np.ndarray:
    """A smooth random colour texture (H, W, 3) around ``mean`` (values in [0, 1])."""
    h, w = shape
    coarse = rng.normal(0.0, spread, (max(2, h // 8), max(2, w // 8), 3))
    ys = np.linspace(0, coarse.shape[0] - 1, h)
    xs = np.linspace(0, coarse.shape[1] - 1, w)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, coarse.shape[0] - 1), np.minimum(x0 + 1, coarse.shape[1] - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    smooth = ((1 - fy) * (1 - fx) * coarse[y0][:, x0] + (1 - fy) * fx * coarse[y0][:, x1]
              + fy * (1 - fx) * coarse[y1][:, x0] + fy * fx * coarse[y1][:, x1])
    fine = rng.normal(0.0, spread / 2, (h, w, 3))
    return np.clip(mean + smooth + fine, 0.0, 1.0)


def sod_scene(rng: np.random.Generator, size: int, centre_sd: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """One salient-object scene: an RGB image (size, size, 3) uint8 and its binary mask (size, size) uint8.

    The object is an ellipse (semi-axes 12-35% of the side: 4-38% of the area), its centre drawn
    from N(image centre, (centre_sd * size)^2) and kept inside the image."""
    bg_mean, fg_mean = rng.uniform(0.2, 0.8, 3), rng.uniform(0.2, 0.8, 3)
    image = _texture(rng, (size, size), bg_mean, 0.12)
    ry, rx = rng.uniform(0.12, 0.35, 2) * size
    cy, cx = np.clip(rng.normal(0.5, centre_sd, 2) * size, [ry, rx], [size - ry, size - rx])
    yy, xx = np.mgrid[0:size, 0:size]
    mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    image[mask] = _texture(rng, (size, size), fg_mean, 0.12)[mask]
    return (image * 255).round().astype(np.uint8), mask.astype(np.uint8)


def seg_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One layout scene: an RGB image (size, size, 3) uint8 and its labels (size, size) uint8 in
    ``SEG_CLASSES`` order: sky above a wandering horizon, ground below, and one object standing on
    the ground (its bottom at the horizon or below)."""
    yy, xx = np.mgrid[0:size, 0:size]
    horizon = size * rng.uniform(0.35, 0.65) + size * 0.08 * np.sin(2 * np.pi * (xx[0] / size * rng.uniform(0.5, 2)
                                                                                 + rng.uniform()))
    labels = np.where(yy < horizon[None, :], 0, 1).astype(np.uint8)
    # colours overlap between classes: sky is bluish-to-grey, ground greenish-to-grey, objects anything
    sky = _texture(rng, (size, size), np.array([0.45, 0.55, 0.75]) + rng.normal(0, 0.12, 3), 0.10)
    ground = _texture(rng, (size, size), np.array([0.45, 0.5, 0.35]) + rng.normal(0, 0.12, 3), 0.12)
    obj = _texture(rng, (size, size), rng.uniform(0.1, 0.9, 3), 0.10)
    w, h = rng.uniform(0.12, 0.3) * size, rng.uniform(0.15, 0.4) * size
    cx = rng.uniform(w / 2, size - w / 2)
    bottom = min(size - 1.0, float(horizon[int(cx)]) + rng.uniform(0, 0.3) * size)
    box = (np.abs(xx - cx) <= w / 2) & (yy <= bottom) & (yy >= bottom - h)
    labels[box] = 2
    image = np.where((labels == 0)[..., None], sky, ground)
    image[box] = obj[box]
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), labels


def mean_absolute_error(saliency: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image: mean |saliency - mask| (saliency in [0, 1], masks binary)."""
    s = np.asarray(saliency, np.float64).reshape(len(saliency), -1)
    return np.abs(s - np.asarray(masks, np.float64).reshape(len(masks), -1)).mean(axis=1)


def _f(pred: np.ndarray, gt: np.ndarray, beta2: float) -> float:
    tp = float(np.logical_and(pred, gt).sum())
    if tp == 0:
        return 0.0
    precision, recall = tp / pred.sum(), tp / gt.sum()
    return (1 + beta2) * precision * recall / (beta2 * precision + recall)


def f_measure(saliency: np.ndarray, masks: np.ndarray, beta2: float = 0.3) -> np.ndarray:
    """Per image: F-measure of the map binarized (``>=``) at an adaptive threshold, twice its mean value
    capped at 1, as the SOD benchmarks' code (e.g. PySODMetrics): an all-zero map marks every pixel."""
    out = np.empty(len(saliency))
    for i, (s, m) in enumerate(zip(saliency, masks)):
        out[i] = _f(s >= min(2 * float(np.mean(s)), 1.0), m.astype(bool), beta2)
    return out


def max_f_measure(saliency: np.ndarray, masks: np.ndarray, beta2: float = 0.3, steps: int = 256) -> float:
    """The best F-measure over one threshold shared by the whole set (precision and recall averaged
    over images at each of ``steps`` thresholds, as the SOD benchmarks)."""
    best = 0.0
    for t in np.linspace(0, 1, steps, endpoint=False)[1:]:
        p, r = [], []
        for s, m in zip(saliency, masks):
            pred, gt = s >= t, m.astype(bool)
            tp = float(np.logical_and(pred, gt).sum())
            p.append(tp / pred.sum() if pred.any() else 0.0)
            r.append(tp / gt.sum() if gt.any() else 0.0)
        pm, rm = float(np.mean(p)), float(np.mean(r))
        if pm + rm > 0:
            best = max(best, (1 + beta2) * pm * rm / (beta2 * pm + rm))
    return best


def mean_iou(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[float, np.ndarray]:
    """Mean intersection over union over the classes, from the confusion matrix of the whole set
    (PASCAL VOC's definition); returns the mean and the per-class IoU (NaN for a class never seen)."""
    p, t = np.asarray(pred).ravel().astype(np.int64), np.asarray(labels).ravel().astype(np.int64)
    conf = np.bincount(t * n_classes + p, minlength=n_classes**2).reshape(n_classes, n_classes)
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    return float(np.nanmean(iou)), iou
