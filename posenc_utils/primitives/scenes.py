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


def _bytes(a: np.ndarray) -> np.ndarray:
    return (np.clip(a, 0, 1) * 255).round().astype(np.uint8)


def object_scene(rng: np.random.Generator, size: int, centre_sd: float | None = 0.15, margin: int = 0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One object on a textured background: the scene, the same background without the object (RGB uint8 each)
    and the object's exact mask (uint8), all of side ``size + 2 * margin``.

    The image is the central ``size`` x ``size`` frame; the texture goes on ``margin`` pixels beyond it on each
    side (the scene around the frame, for a network that sees no padding). The object is an ellipse (semi-axes
    12-35% of the frame's side: 4-38% of its area), its centre drawn from N(frame centre, (centre_sd * size)^2)
    and kept inside the frame; ``centre_sd=None`` draws it uniformly wherever it fits in the frame (no centre
    bias: a test of what a model learnt)."""
    side = size + 2 * margin
    bg_mean, fg_mean = rng.uniform(0.2, 0.8, 3), rng.uniform(0.2, 0.8, 3)
    background = _texture(rng, (side, side), bg_mean, 0.12)
    ry, rx = rng.uniform(0.12, 0.35, 2) * size
    if centre_sd is None:
        cy, cx = rng.uniform([ry, rx], [size - ry, size - rx])
    else:
        cy, cx = np.clip(rng.normal(0.5, centre_sd, 2) * size, [ry, rx], [size - ry, size - rx])
    yy, xx = np.mgrid[0:side, 0:side] - margin  # frame coordinates
    mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    image = background.copy()
    image[mask] = _texture(rng, (side, side), fg_mean, 0.12)[mask]
    return _bytes(image), _bytes(background), mask.astype(np.uint8)


def sod_scene(rng: np.random.Generator, size: int, centre_sd: float | None = 0.15, margin: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
    """One salient-object scene (:func:`object_scene`): an RGB image and its binary mask, uint8, of side ``size +
    2 * margin`` (the frame and the scene around it)."""
    image, _background, mask = object_scene(rng, size, centre_sd, margin)
    return image, mask


def seg_scene(rng: np.random.Generator, size: int, margin: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One layout scene: an RGB image and its labels in ``SEG_CLASSES`` order, uint8, of side ``size + 2 *
    margin`` (the central ``size`` frame is the image; the scene goes on around it): sky above a wandering
    horizon, ground below, and one object in the frame standing on the ground (its bottom at the horizon or
    below)."""
    side = size + 2 * margin
    yy, xx = np.mgrid[0:side, 0:side] - margin  # frame coordinates
    horizon = size * rng.uniform(0.35, 0.65) + size * 0.08 * np.sin(2 * np.pi * (xx[0] / size * rng.uniform(0.5, 2)
                                                                                 + rng.uniform()))
    labels = np.where(yy < horizon[None, :], 0, 1).astype(np.uint8)
    # colours overlap between classes: sky is bluish-to-grey, ground greenish-to-grey, objects anything
    sky = _texture(rng, (side, side), np.array([0.45, 0.55, 0.75]) + rng.normal(0, 0.12, 3), 0.10)
    ground = _texture(rng, (side, side), np.array([0.45, 0.5, 0.35]) + rng.normal(0, 0.12, 3), 0.12)
    obj = _texture(rng, (side, side), rng.uniform(0.1, 0.9, 3), 0.10)
    w, h = rng.uniform(0.12, 0.3) * size, rng.uniform(0.15, 0.4) * size
    cx = rng.uniform(w / 2, size - w / 2)
    bottom = min(size - 1.0, float(horizon[int(cx) + margin]) + rng.uniform(0, 0.3) * size)
    box = (np.abs(xx - cx) <= w / 2) & (yy <= bottom) & (yy >= bottom - h)
    labels[box] = 2
    image = np.where((labels == 0)[..., None], sky, ground)
    image[box] = obj[box]
    return _bytes(image), labels
