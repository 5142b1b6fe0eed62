"""The five ground-truth position maps of the paper (PAPER.md section 2).

Every map is the same for every image, depends only on the side ``S``, is float32 and is
min-max normalized to [0, 1]. x is the column, y the row.
"""
from __future__ import annotations

import functools

import numpy as np

PATTERNS = ("H", "V", "G", "HS", "VS")
PATTERN_NAMES = {
    "H": "horizontal gradient",
    "V": "vertical gradient",
    "G": "Gaussian",
    "HS": "horizontal stripes",
    "VS": "vertical stripes",
}
STRIPE_PERIODS = 2.5


def _minmax(a: np.ndarray) -> np.ndarray:
    a = a - a.min()
    return (a / a.max()).astype(np.float32)


def target_map(pattern: str, size: int) -> np.ndarray:
    """One ``size`` x ``size`` target map for ``pattern`` (one of ``PATTERNS``)."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}: choose one of {', '.join(PATTERNS)}")
    if size < 2:
        raise ValueError(f"a target map needs size >= 2, got {size}")
    s = float(size)
    idx = np.arange(size, dtype=np.float64)
    y, x = np.meshgrid(idx, idx, indexing="ij")
    if pattern == "H":
        m = x / (s - 1)
    elif pattern == "V":
        m = y / (s - 1)
    elif pattern == "G":
        c, sigma = s / 2, s / 2
        m = np.exp(-((x - c) ** 2 + (y - c) ** 2) / (2 * sigma**2))
    elif pattern == "HS":
        m = 0.5 * (1 + np.cos(2 * np.pi * STRIPE_PERIODS * (y + 0.5) / s))
    else:  # VS
        m = 0.5 * (1 + np.cos(2 * np.pi * STRIPE_PERIODS * (x + 0.5) / s))
    return _minmax(m)


def target_stack(patterns: tuple[str, ...] | list[str], size: int) -> np.ndarray:
    """The maps for several patterns stacked as (len(patterns), size, size)."""
    return np.stack([target_map(p, size) for p in patterns])


@functools.lru_cache(maxsize=None)
def constant_baseline(pattern: str, size: int) -> tuple[float, float]:
    """(squared error, absolute error) of the best constant prediction of ``pattern``'s map at ``size``: the map's
    mean for the squared error (its variance: what a readout's bias alone reaches, with every weight at zero) and
    its median for the absolute error. The target is the same for every image, so these are per pixel and image."""
    t = target_map(pattern, size).astype(np.float64)
    return float(t.var()), float(np.abs(t - np.median(t)).mean())
