"""Image sets: synthetic test images, shipped photographs, generated training images, folders.

Every set is materialized once as an (N, S, S, 3) uint8 array in the cache, keyed by how it
was made, and memory-mapped from there; a large folder (DUTS-TR) streams to disk image by
image and never sits whole in memory. Training and test images come from disjoint sources:
training sets are generated (dead leaves) or a training folder, test photos are crops of
photographs shipped inside installed packages.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
from PIL import Image
from scipy.ndimage import gaussian_filter

from ..primitives import cache, paths, timing
from ..primitives.datasets import IMAGE_EXTENSIONS, image_folder, list_images
from ..primitives.progress import progress
from ..primitives.scenes import SCENE_VERSION, object_scene
from ..primitives.specs import ImageSetSpec

GENERATOR_VERSION = 1  # bump when a generator changes its output, to invalidate cached sets

# Photographs that ship inside wheels the study installs: (package, path inside it).
SHIPPED_PHOTOS = (
    ("skimage", "data/astronaut.png"), ("skimage", "data/chelsea.png"), ("skimage", "data/coffee.png"),
    ("skimage", "data/rocket.jpg"), ("skimage", "data/motorcycle_left.png"),
    ("skimage", "data/motorcycle_right.png"), ("skimage", "data/hubble_deep_field.jpg"),
    ("skimage", "data/camera.png"), ("skimage", "data/coins.png"), ("skimage", "data/moon.png"),
    ("skimage", "data/clock_motion.png"), ("skimage", "data/page.png"), ("skimage", "data/text.png"),
    ("skimage", "data/brick.png"), ("skimage", "data/grass.png"), ("skimage", "data/gravel.png"),
    ("sklearn", "datasets/images/china.jpg"), ("sklearn", "datasets/images/flower.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)

@dataclass(frozen=True)
class ImageSet:
    """A materialized set of images: (N, S, S, 3) uint8, memory-mapped from the cache."""

    name: str
    key: str
    path: Path
    n: int
    size: int
    description: str

    def load(self) -> np.ndarray:
        return np.load(self.path, mmap_mode="r")

    def head(self, n: int) -> "ImageSet":
        """The first ``n`` images, as a set of its own (its own cache keys for features computed on it)."""
        if n >= self.n:
            return self
        return dataclasses.replace(self, n=n, key=f"{self.key}-head{n}", description=f"{self.description}, first {n}")

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Images ``start:stop`` read from the file (not through a memory map: streaming a large
        set image by image never holds it in this process's memory)."""
        shape, dtype, offset = cache.npy_layout(self.path)
        stop = min(stop, self.n)
        per = int(np.prod(shape[1:]))
        flat = np.fromfile(self.path, dtype, count=(stop - start) * per, offset=offset + start * per * dtype.itemsize)
        return flat.reshape(stop - start, *shape[1:])

    def as_float(self, idx=slice(None)) -> np.ndarray:
        """Images ``idx`` as float32 in [0, 1], shape (n, S, S, 3)."""
        return self.load()[idx].astype(np.float32) / 255.0


# ---------------------------------------------------------------- generators


def synthetic_image(kind: str, size: int, seed: int = 0) -> np.ndarray:
    """The paper's content-free test images: all black, all white, or Gaussian noise."""
    if kind == "black":
        return np.zeros((size, size, 3), np.uint8)
    if kind == "white":
        return np.full((size, size, 3), 255, np.uint8)
    if kind == "noise":
        rng = np.random.default_rng(seed)
        return (np.clip(0.5 + 0.25 * rng.standard_normal((size, size, 3)), 0, 1) * 255).round().astype(np.uint8)
    raise ValueError(f"unknown synthetic image {kind!r}: choose black, white or noise")


def dead_leaves_image(size: int, rng: np.random.Generator) -> np.ndarray:
    """One dead-leaves image: occluding shapes with power-law sizes, textures and blur.

    The dead-leaves model reproduces natural-image statistics (scale invariance,
    occlusion edges); textured leaves and a random blur keep it from looking like flat discs.
    All random draws come from ``rng`` in a fixed order: a seeded sequence of images is the
    same on every run (and the same as ``GENERATOR_VERSION`` 1 made, drawn in the same order).
    """
    img = np.empty((size, size, 3), np.float32)
    img[:] = rng.uniform(0.1, 0.9, 3)
    rmin, rmax = 0.02 * size, 0.5 * size
    n_leaves = int(rng.integers(300, 700))
    u = rng.random(n_leaves)
    radii = (rmin**-2 - u * (rmin**-2 - rmax**-2)) ** -0.5  # density ~ r^-3
    for r in radii:
        cy, cx = rng.uniform(-0.1, 1.1, 2) * size
        y0, y1 = int(max(cy - r, 0)), int(min(cy + r + 1, size))
        x0, x1 = int(max(cx - r, 0)), int(min(cx + r + 1, size))
        if y0 >= y1 or x0 >= x1:
            continue
        theta = rng.uniform(0, np.pi)
        b = r * rng.uniform(0.4, 1.0)
        ellipse = rng.random() < 0.7
        colour = np.clip(rng.normal(0.5, 0.22, 3), 0, 1).astype(np.float32)
        grating = (rng.uniform(0.05, 0.4), rng.uniform(0, 2 * np.pi)) if rng.random() < 0.5 else None
        ramp = rng.random() < 0.5
        _paint_leaf(img[y0:y1, x0:x1], cy - y0, cx - x0, r, b, theta, ellipse, colour, grating, ramp)
    sigma = rng.uniform(0.0, 1.5)
    noise = rng.normal(0, rng.uniform(0.0, 0.03), img.shape).astype(np.float32)
    if sigma > 0.2:
        img = gaussian_filter(img, sigma=(sigma, sigma, 0))
    img += noise
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def _paint_leaf(region: np.ndarray, cy: float, cx: float, a: float, b: float, theta: float, ellipse: bool,
                colour: np.ndarray, grating: tuple[float, float] | None, ramp: bool) -> None:
    """Paint one leaf (an ellipse or a rectangle, optionally textured) over ``region``, in place."""
    # offsets from the centre as a column and a row: broadcasting gives, element by element,
    # the same float64 values as full coordinate grids, at a fraction of the work
    dy = (np.arange(region.shape[0], dtype=np.float32) - np.float64(cy))[:, None]
    dx = (np.arange(region.shape[1], dtype=np.float32) - np.float64(cx))[None, :]
    c, s = np.cos(theta), np.sin(theta)
    u_, v_ = dx * c + dy * s, -dx * s + dy * c
    if ellipse:
        mask = (u_ / a) ** 2 + (v_ / b) ** 2 <= 1
    else:
        mask = (np.abs(u_) <= a * 0.8) & (np.abs(v_) <= b * 0.8)
    shade = np.ones(int(mask.sum()))  # the shading, computed only where the leaf is
    if grating is not None:
        freq, phase = grating
        shade = shade + 0.25 * np.sin(freq * u_[mask] + phase)
    if ramp:
        shade = shade + 0.3 * (v_[mask] / max(b, 1.0))
    region[mask] = colour[None, :] * shade[:, None]


def shipped_photo_paths() -> list[Path]:
    """The photographs inside installed wheels (scikit-image, scikit-learn, matplotlib)."""
    found = []
    for package, rel in SHIPPED_PHOTOS:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        p = Path(spec.submodule_search_locations[0]) / rel
        if p.exists():
            found.append(p)
    if not found:
        raise FileNotFoundError(
            "no shipped photographs found: install scikit-image, scikit-learn and matplotlib "
            "(the set-up command of the README does)"
        )
    return found


def read_rgb(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB (grayscale, RGBA and palette images are converted)."""
    with Image.open(path) as im:
        if im.mode.startswith("I"):  # 16/32-bit grey: rescale to 8 bits (PIL's convert would clip)
            a = np.asarray(im).astype(np.float64)
            top = 65535.0 if im.mode.startswith("I;16") or 255 < a.max() <= 65535 else max(a.max(), 255.0)
            return np.repeat((np.clip(a / top, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=2)
        if im.mode in ("RGBA", "LA", "P"):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(bg, im)
        return np.asarray(im.convert("RGB"))


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size`` x ``size`` (bilinear, aspect not kept, as the paper resized to 224x224)."""
    if img.shape[:2] == (size, size):
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))


def photo_sources(n: int, seed: int) -> np.ndarray:
    """Which shipped photograph each of the ``n`` crops of :func:`photo_crops` comes from (an index):
    crops of one photograph are not independent, so intervals resample photographs, not crops."""
    order = np.random.default_rng(seed).permutation(len(shipped_photo_paths()))  # photo_crops' first draw
    return order[np.arange(n) % len(order)]


def photo_crops(n: int, size: int, seed: int) -> Iterator[np.ndarray]:
    """``n`` random square crops (35-100% of the short side, random flips) of the shipped photos."""
    rng = np.random.default_rng(seed)
    photos = [read_rgb(p) for p in shipped_photo_paths()]
    order = rng.permutation(len(photos))
    for i in range(n):
        img = photos[order[i % len(photos)]]
        h, w = img.shape[:2]
        side = int(rng.uniform(0.35, 1.0) * min(h, w))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = img[y : y + side, x : x + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        yield resize(np.ascontiguousarray(crop), size)


# ---------------------------------------------------------------- folders (paper profile)


def folder_images(folder: Path, size: int, n: int | None = None) -> tuple[int, Callable[[np.ndarray], int]]:
    """Capacity and a ``fill`` function that streams a folder's images into an array.

    Unreadable files are skipped; one warning at the end counts them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = list_images(folder)[: n or None]
    if not files:
        raise FileNotFoundError(f"image folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")

    def fill(out: np.ndarray) -> int:
        k, bad = 0, []
        for f in progress(files, f"reading {folder.name}", unit="images"):
            try:
                out[k] = resize(read_rgb(f), size)
                k += 1
            except Exception as err:  # PIL raises many types for broken files
                bad.append(f"{f.name} ({type(err).__name__})")
        if bad:
            warnings.warn(f"skipped {len(bad)} unreadable of {len(files)} files in {folder}: {', '.join(bad[:5])}"
                          + (" ..." if len(bad) > 5 else ""), stacklevel=2)
        if k == 0:
            raise ValueError(f"none of the {len(files)} files in {folder} could be read as an image")
        return k

    return len(files), fill


# ---------------------------------------------------------------- building sets


def _source(spec: ImageSetSpec, size: int) -> tuple[int, Callable[[np.ndarray], int | None], dict]:
    """(capacity, fill function, key material) for an image-set spec."""
    if spec.kind in ("black", "white", "noise"):
        n = spec.n or 1

        def fill(out):
            for i in range(n):
                out[i] = synthetic_image(spec.kind, size, spec.seed + i)

        return n, fill, {}
    if spec.kind == "dead_leaves":
        def fill(out):
            rng = np.random.default_rng(spec.seed)
            for i in progress(range(spec.n), f"{spec.n} dead-leaves images", unit="images"):
                out[i] = dead_leaves_image(size, rng)

        return spec.n, fill, {}
    if spec.kind == "photo_crops":
        def fill(out):
            for i, img in enumerate(photo_crops(spec.n, size, spec.seed)):
                out[i] = img

        return spec.n, fill, {"photos": [p.name for p in shipped_photo_paths()]}
    if spec.kind in OBJECT_KINDS:
        def fill(out):
            for i, scene in enumerate(object_scenes(spec.n, size, spec.seed)):
                out[i] = scene[OBJECT_KINDS.index(spec.kind)]

        return spec.n, fill, {"scenes": SCENE_VERSION}
    if spec.kind == "folder":
        folder = image_folder(spec.dataset)
        n, fill = folder_images(folder, size, spec.n)
        files = list_images(folder)[:n]
        fingerprint = cache.make_key([(f.name, f.stat().st_size, int(f.stat().st_mtime)) for f in files])
        return n, fill, {"folder": str(folder), "files": fingerprint}
    raise ValueError(f"unknown image-set kind {spec.kind!r}")


# Test images whose content is known exactly: an object on a textured background, and the same background
# without it (claim 8: the readout's error on the object against its error at the same pixels without it).
OBJECT_KINDS = ("objects", "object_backgrounds")


def object_scenes(n: int, size: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``n`` seeded (scene, background, mask) triples (:func:`posenc_utils.primitives.scenes.object_scene`), the object placed
    anywhere it fits: its pixels are not tied to a place in the image."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield object_scene(rng, size, centre_sd=None)


def object_masks(spec: ImageSetSpec, size: int) -> np.ndarray:
    """The objects' masks (N, size, size) bool of an ``objects`` or ``object_backgrounds`` set (made again: the
    scenes are seeded)."""
    if spec.kind not in OBJECT_KINDS:
        raise ValueError(f"{spec.name} ({spec.kind}) has no object masks: only {', '.join(OBJECT_KINDS)} sets do")
    return np.stack([m.astype(bool) for *_, m in object_scenes(spec.n, size, spec.seed)])


def image_count(spec: ImageSetSpec) -> int:
    """How many images ``spec`` holds (a folder's count from its listing; nothing is read)."""
    return _source(spec, 16)[0]


def build_image_set(spec: ImageSetSpec, size: int) -> ImageSet:
    """Materialize (or reuse from the cache) the images of ``spec`` at ``size`` x ``size``."""
    if size < 16:
        raise ValueError(f"image size {size} is too small: the encoders need at least 16 px")
    n, fill, extra = _source(spec, size)
    key_spec = {"spec": cache.key_fields(spec), "size": size, "version": GENERATOR_VERSION, **extra}
    key = cache.make_key(key_spec)
    folder = paths.cache_dir() / "images"
    data, meta = folder / f"{spec.name}-{size}-{key}.npy", folder / f"{spec.name}-{size}-{key}.json"
    def timed_fill(out):
        with timing.phase("image_sets"):
            return fill(out)

    arr = cache.computed_once(
        data, lambda: cache.open_array_entry(data, meta, {"key": key}),
        lambda: cache.write_array_entry(data, meta, (n, size, size, 3), "uint8", {"key": key, **key_spec}, timed_fill))
    desc = {
        "dead_leaves": "generated dead-leaves images", "photo_crops": "crops of shipped photographs",
        "objects": "an object on a textured background", "object_backgrounds": "the same backgrounds without the object",
        "folder": f"{spec.dataset} images", "black": "all-black image", "white": "all-white image",
        "noise": "Gaussian noise image",
    }[spec.kind]
    return ImageSet(spec.name, key, data, int(arr.shape[0]), size, desc)


def describe(train: ImageSet, tests: list[ImageSet]) -> pd.DataFrame:
    """One row per image set: its role, name, size, count and where the images come from."""
    rows = [dict(role="train", name=train.name, images=train.n, size=train.size, source=train.description)]
    rows += [dict(role="test", name=t.name, images=t.n, size=t.size, source=t.description) for t in tests]
    return pd.DataFrame(rows)
