"""SPC (Spearman's rank correlation per image) and MAE, vectorized over images, and the intervals
the tables use (a bootstrap resampling groups of images, a t interval over seeds).

A constant prediction has no ranking, so its SPC is undefined (NaN). The paper printed such
cases as 0; :func:`measures.summarize` does the same *and* counts them, so a 0 that means
"undefined" is never mistaken for a measured 0. Which measures the tables report, and how they are
summarized, is declared in :mod:`posenc_utils.engine.measures`.
"""
from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from scipy import stats

from . import timing


def _flatten(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predictions as (N, P) and the target as (1, P) (shared) or (N, P) (one per image)."""
    p = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1)
    t = np.asarray(target, dtype=np.float64)
    t = t.reshape(1, -1) if t.size == p.shape[1] else t.reshape(len(t), -1)
    if t.shape[1] != p.shape[1] or len(t) not in (1, len(p)):
        raise ValueError(f"predictions {np.shape(pred)} and target {np.shape(target)} do not match")
    return p, t


CONSTANT_RANGE = 1e-6  # a prediction whose values span less than this is constant


PARALLEL_RANKS_MIN = 2**16  # values in an array worth splitting across threads (below, a thread costs more than it saves)


@functools.lru_cache(maxsize=None)
def _rank_pool(threads: int) -> ThreadPoolExecutor:
    """One pool of ``threads`` ranking threads per process, kept between calls."""
    return ThreadPoolExecutor(threads, thread_name_prefix="ranks")


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks (1-based, ties get their average rank) along the last axis of a 2-D array, as
    ``scipy.stats.rankdata(x, axis=1, method="average")``: :func:`rows_average_ranks` on the rows split across the
    threads torch may use (NumPy's sort releases the GIL; rows are ranked independently, so the result is the same
    to the bit). Measured on 2 cores: 16 upsampled 224 x 224 predictions, 65 ms on one thread, 30 ms on two."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    threads = min(len(x), torch.get_num_threads())
    if threads < 2 or x.size < PARALLEL_RANKS_MIN:
        return rows_average_ranks(x)
    return np.concatenate(list(_rank_pool(threads).map(rows_average_ranks, np.array_split(x, threads))))


def rows_average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks (1-based, ties get their average rank) along the last axis of a 2-D array, as
    ``scipy.stats.rankdata(x, axis=1, method="average")`` (a test checks it), but faster: NumPy's vectorized
    sort (2x torch's here; ties may come in any order, which changes no average), each run of equal values
    given the mean of its first and last position for every row at once, and torch's scatter to put the
    ranks back in place (faster than NumPy's ``put_along_axis``). Measured: a readout's evaluation on 60
    photos, 1.00 s with torch's sort and scans, 0.65 s so."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    n, p = x.shape
    order = np.argsort(x, axis=1)
    v = np.take_along_axis(x, order, axis=1)
    starts = np.ones((n, p), dtype=bool)
    starts[:, 1:] = v[:, 1:] != v[:, :-1]  # every row starts a run at position 0: no run spans two rows
    first = np.nonzero(starts)[1]  # position of each run's first value in its row, runs in order
    last = np.append(first[1:], 0)  # ... the next run's first; 0 where that run starts a new row
    last[last == 0] = p
    last -= 1
    ranks = np.repeat((first + last) / 2 + 1, last - first + 1).reshape(n, p)  # of the sorted values
    return torch.empty(n, p, dtype=torch.float64).scatter_(1, torch.from_numpy(order), torch.from_numpy(ranks)).numpy()


def spc(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Spearman correlation of each prediction with the target over all pixels.

    ``pred``: (N, H, W) or (N, P); ``target``: (H, W) / (P,) shared, or one per image.
    Returns (N,) float64 with NaN where a prediction (or target) is constant. "Constant"
    allows float32 round-off (range below ``CONSTANT_RANGE``): a convolution of a constant
    input can differ in the last bit between positions, and ranking that noise would report
    a meaningless correlation instead of "undefined".
    """
    p, t = _flatten(pred, target)
    constant = (np.ptp(p, axis=1) < CONSTANT_RANGE) | (np.ptp(t, axis=1) < CONSTANT_RANGE)
    rp = average_ranks(p)
    rt = average_ranks(t)
    rp -= rp.mean(axis=1, keepdims=True)
    rt -= rt.mean(axis=1, keepdims=True)
    num = (rp * rt).sum(axis=1)
    den = np.sqrt((rp**2).sum(axis=1) * (rt**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    r[(den == 0) | constant] = np.nan
    return r


def mae(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean absolute pixel difference of each prediction from the target, shape (N,)."""
    p, t = _flatten(pred, target)
    return np.abs(p - t).mean(axis=1)


def cluster_bootstrap_ci(values: np.ndarray, groups: np.ndarray | None = None, stat=np.mean, n_boot: int = 2000,
                         level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(values)``, resampling whole groups (e.g. the source
    photograph of each crop: crops of one photograph are not independent). Without ``groups``
    every value is its own group (the ordinary bootstrap)."""
    with timing.phase("intervals"):
        return _cluster_bootstrap_ci(values, groups, stat, n_boot, level, seed)


def _cluster_bootstrap_ci(values, groups, stat, n_boot: int, level: float, seed: int) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    groups = np.arange(len(values)) if groups is None else np.asarray(groups)
    ids = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in ids]
    rng = np.random.default_rng(seed)
    if (stat is np.mean or stat is np.nanmean) and values.ndim == 1:
        # the mean of a resample is (sum of its groups' sums) / (sum of their counts): all resamples at once
        ok = ~np.isnan(values) if stat is np.nanmean else np.ones(len(values), bool)
        sums = np.array([values[m][ok[m]].sum() for m in members])
        counts = np.array([ok[m].sum() for m in members], dtype=np.float64)
        pick = rng.integers(0, len(ids), (n_boot, len(ids)))
        with np.errstate(invalid="ignore", divide="ignore"):
            stats = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    else:
        stats = np.empty(n_boot)
        for b in range(n_boot):
            pick = rng.integers(0, len(ids), len(ids))
            stats[b] = stat(values[np.concatenate([members[i] for i in pick])])
    tail = (1 - level) / 2
    return float(np.quantile(stats, tail)), float(np.quantile(stats, 1 - tail))


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of ``values`` (e.g. one value per seed); NaN below two values."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


# ---------------------------------------------------------------- jackknife intervals over groups of images

GROUPS = 10  # jackknife groups of images (fewer where a set has fewer images or source photographs)


def image_groups(n: int, sources: np.ndarray | None = None, k: int = GROUPS) -> np.ndarray:
    """The jackknife group of each of ``n`` images: ``k`` contiguous blocks of images, or, where
    ``sources`` gives each image's source photograph, whole photographs dealt round-robin into ``k``
    groups (crops of one photograph are not independent, so they are left out together)."""
    if sources is None:
        return (np.arange(n) * min(k, n) // max(n, 1)).astype(np.int64)
    _, source = np.unique(np.asarray(sources)[:n], return_inverse=True)
    return (source % k).astype(np.int64)


def jackknife_interval(full: float, left_out: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """``full`` +- t quantile x the jackknife standard error of the leave-one-group-out values, in [0, 1]."""
    v = np.asarray(left_out, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 2 or not np.isfinite(full):
        return float("nan"), float("nan")
    se = np.sqrt((len(v) - 1) / len(v) * ((v - v.mean()) ** 2).sum())
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * se
    return float(max(0.0, full - half)), float(min(1.0, full + half))
