"""The downstream tasks' metrics, as the SOD and segmentation literature defines them: the F-measure
(beta^2 = 0.3, adaptive threshold: twice the mean saliency, as Achanta et al. 2009 and the SOD
benchmarks) and its maximum over thresholds, the mean absolute error, and the mean IoU over a test
set's confusion matrix (PASCAL VOC's definition)."""
from __future__ import annotations

import numpy as np

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
    over images at each of the thresholds ``k / steps``, k = 1 .. steps - 1, as the SOD benchmarks).

    Per image, a histogram of the saliency of object and background pixels gives the true and false
    positives at every threshold at once (``>=``, as :func:`f_measure`)."""
    s = np.asarray(saliency, np.float64).reshape(len(saliency), -1)
    gt = np.asarray(masks).reshape(len(masks), -1).astype(bool)
    # a pixel counts at threshold k/steps (k >= 1) when at least k thresholds are <= its value
    bins = np.searchsorted(np.linspace(0, 1, steps, endpoint=False)[1:], s, side="right")
    precision, recall = [], []
    for b, g in zip(bins, gt):
        fg = np.bincount(b[g], minlength=steps)[::-1].cumsum()[::-1][1:]  # object pixels at or above each threshold
        al = np.bincount(b, minlength=steps)[::-1].cumsum()[::-1][1:]
        precision.append(np.where(al > 0, fg / np.maximum(al, 1), 0.0))
        recall.append(fg / g.sum() if g.any() else np.zeros(steps - 1))
    pm, rm = np.mean(precision, axis=0), np.mean(recall, axis=0)
    f = np.where(pm + rm > 0, (1 + beta2) * pm * rm / np.maximum(beta2 * pm + rm, 1e-12), 0.0)
    return float(f.max())


def confusion(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts, rows the true class; labels outside the classes (VOC's 255,
    "void") are ignored, as in PASCAL VOC's evaluation."""
    p, t = np.asarray(pred).ravel().astype(np.int64), np.asarray(labels).ravel().astype(np.int64)
    keep = (t >= 0) & (t < n_classes)
    return np.bincount(t[keep] * n_classes + p[keep], minlength=n_classes**2).reshape(n_classes, n_classes)


def iou_from_confusion(conf: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean IoU and per-class IoU (NaN for a class neither present nor predicted) of a confusion matrix."""
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    return float(np.nanmean(iou)), iou


def mean_iou(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[float, np.ndarray]:
    """Mean intersection over union over the classes, from the confusion matrix of the whole set
    (PASCAL VOC's definition); returns the mean and the per-class IoU (NaN for a class never seen)."""
    return iou_from_confusion(confusion(pred, labels, n_classes))
