"""Generated scenes for notebook 05 offline, in place of the SOD and segmentation datasets.

They mimic the one statistic of the real datasets that makes position useful, and nothing more:
:func:`sod_scene` puts one object on a textured background, its centre drawn around the image centre
(real SOD datasets are strongly centre-biased), with colours that overlap the background's, so
appearance is informative but not decisive and position alone is not enough either; :func:`seg_scene`
has a vertical layout (sky above a wandering horizon, ground below, one object standing on the ground).
"""
from __future__ import annotations

import numpy as np

SCENE_VERSION = 1  # bump when a scene generator changes its output
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


def sod_scene(rng: np.random.Generator, size: int, centre_sd: float | None = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """One salient-object scene: an RGB image (size, size, 3) uint8 and its binary mask (size, size) uint8.

    The object is an ellipse (semi-axes 12-35% of the side: 4-38% of the area), its centre drawn
    from N(image centre, (centre_sd * size)^2) and kept inside the image; ``centre_sd=None`` draws
    it uniformly wherever the object fits (no centre bias: a test of what a model learnt)."""
    bg_mean, fg_mean = rng.uniform(0.2, 0.8, 3), rng.uniform(0.2, 0.8, 3)
    image = _texture(rng, (size, size), bg_mean, 0.12)
    ry, rx = rng.uniform(0.12, 0.35, 2) * size
    if centre_sd is None:
        cy, cx = rng.uniform([ry, rx], [size - ry, size - rx])
    else:
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
