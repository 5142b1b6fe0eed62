"""Generated stand-ins for the paper's datasets, in their release folder layouts: what a paper-profile user puts in
``data/raw``, made from random numbers, so the paper profile's every notebook runs (and is timed) without them.

``python -m posenc_utils.primitives.standin --root DIR`` makes DUTS-TR (10,553 images; the probe reads no masks) and PASCAL-S (850, with masks)
at their usual sizes (about 400 px on the long side, JPEG), and small MSRA-B, ECSSD, DUT-OMRON and VOC2012 folders;
``--duts-tr 1000`` etc. make fewer. The images mean nothing (smooth random colour fields with an elliptic
"object" whose mask is saved); they exercise reading, resizing, storage and time at the real sizes and counts.
The tests make their tiny sets with the same functions.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from . import scenes
from .datasets import dataset

DUTS_TR_N, PASCAL_S_N = 10553, 850  # the releases' counts


def folders(name: str, root: Path) -> tuple[Path, Path | None]:
    """Where dataset ``name`` keeps its images and its masks under ``root``: the first folders its registry entry
    names (:mod:`datasets`: the one place that knows the layouts)."""
    ds = dataset(name)
    base = root / ds.folders[0]
    if name in SIDE_BY_SIDE:
        return base, base
    return base / ds.image_dirs[0], (base / ds.mask_dirs[0]) if ds.mask_dirs else None


SIDE_BY_SIDE = ("MSRA-B",)  # released with each image's mask beside it (the registry's last-tried layout)
USUAL_SIDES = (300, 400)  # most DUTS-TR and PASCAL-S images are 400 px on their long side, 300 or so on the other


def field_image(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random colour field (h, w, 3) uint8 with an ellipse of another colour, and its mask (h, w) 0/1."""
    low = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC)).copy()
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ay, ax = rng.uniform(0.1, 0.3) * h, rng.uniform(0.1, 0.3) * w
    mask = (((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2 <= 1).astype(np.uint8)
    image[mask == 1] = rng.integers(0, 256, 3, dtype=np.uint8)
    return image, mask


def make_folder(images: Path, masks: Path | None, n: int, rng: np.random.Generator,
                sides: tuple[int, int] = USUAL_SIDES) -> None:
    """``n`` JPEG images (and PNG masks in ``masks``) named ``0000.jpg``...; ``sides``: (short, long) side range of
    each image, landscape or portrait at random."""
    images.mkdir(parents=True, exist_ok=True)
    if masks is not None:
        masks.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        short, long = int(rng.integers(sides[0], sides[1] + 1)), sides[1]
        h, w = (short, long) if rng.random() < 0.75 else (long, short)
        image, mask = field_image(rng, h, w)
        Image.fromarray(image).save(images / f"{i:04d}.jpg", quality=90)
        if masks is not None:
            Image.fromarray(mask * 255).save(masks / f"{i:04d}.png")


def make_probe_datasets(root: Path, n_train: int = 6, n_test: int = 3, usual_sizes: bool = False) -> Path:
    """DUTS-TR/DUTS-TR-Image with ``n_train`` images and PASCAL-S/Imgs with ``n_test``: small random-noise images
    (30 to 50 px, what a test affords), or with ``usual_sizes`` colour fields at the releases' usual sizes (PASCAL-S
    with its masks)."""
    root = Path(root)
    rng = np.random.default_rng(0)
    for name, n in (("DUTS-TR", n_train), ("PASCAL-S", n_test)):
        d, masks = folders(name, root)
        if usual_sizes:
            make_folder(d, masks, n, rng)
            continue
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = int(rng.integers(30, 50)), int(rng.integers(30, 50))
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / f"{i:04d}.jpg")
    return root


def make_downstream_datasets(root: Path, size: int = 40, n_sod_train: int = 6, n_sod_test: int = 3,
                             n_voc_train: int = 4, n_voc_val: int = 2) -> Path:
    """MSRA-B (images and masks side by side), ECSSD, PASCAL-S and DUT-OMRON in their release layouts,
    and a VOC2012 devkit with palette label images and train/val lists (generated scenes of side ``size``)."""
    root = Path(root)
    rng = np.random.default_rng(0)

    def save_pair(img_dir, mask_dir, stem, mask_ext=".png"):
        img_dir.mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        image, mask = scenes.sod_scene(rng, size)
        Image.fromarray(image).save(img_dir / f"{stem}.jpg")
        Image.fromarray(mask * 255).save(mask_dir / f"{stem}{mask_ext}")

    for name, n in (("MSRA-B", n_sod_train), ("ECSSD", n_sod_test), ("PASCAL-S", n_sod_test),
                    ("DUT-OMRON", n_sod_test)):
        images, masks = folders(name, root)
        for i in range(n):
            save_pair(images, masks, f"{name.lower()}_{i}")
    voc = folders("VOC2012", root)[0]
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    palette = list(rng.integers(0, 256, 256 * 3).astype(int))
    ids = [f"2008_{i:06d}" for i in range(n_voc_train + n_voc_val)]
    for stem in ids:
        image, labels = scenes.seg_scene(rng, size)
        labels = np.where(labels == 2, 15, labels).astype(np.uint8)  # object -> "person"
        labels[:2] = 255  # void
        Image.fromarray(image).save(voc / "JPEGImages" / f"{stem}.jpg")
        im = Image.fromarray(labels, mode="P")
        im.putpalette(palette)
        im.save(voc / "SegmentationClass" / f"{stem}.png")
    (voc / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids[:n_voc_train]) + "\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids[n_voc_train:]) + "\n")
    return root


def make_paper_layouts(root: Path, duts_tr: int = DUTS_TR_N, pascal_s: int = PASCAL_S_N, sod_train: int = 100,
                       sod_test: int = 20, voc_train: int = 40, voc_val: int = 10, downstream_size: int = 300) -> Path:
    """Every folder the paper profile reads: DUTS-TR and PASCAL-S at the releases' counts and usual sizes (the
    probe's), and MSRA-B, ECSSD, DUT-OMRON and VOC2012 with a few images each (notebook 05's), under ``root``."""
    root = Path(root)
    make_downstream_datasets(root, downstream_size, sod_train, sod_test, voc_train, voc_val)
    for folder in folders("PASCAL-S", root):  # the probe's test set too: made again at its own count and sizes
        for f in folder.glob("*"):
            f.unlink()
    make_probe_datasets(root, duts_tr, pascal_s, usual_sizes=True)
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m posenc_utils.primitives.standin", description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="where to make the folders (e.g. data/standin; then "
                                                  "POSENC_DATA_ROOT=data/standin make paper)")
    ap.add_argument("--duts-tr", type=int, default=DUTS_TR_N)
    ap.add_argument("--pascal-s", type=int, default=PASCAL_S_N)
    ap.add_argument("--sod-train", type=int, default=100)
    ap.add_argument("--sod-test", type=int, default=20)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    make_paper_layouts(Path(args.root), args.duts_tr, args.pascal_s, args.sod_train, args.sod_test)
    print(f"made the paper's folder layouts in {args.root} ({args.duts_tr} DUTS-TR, {args.pascal_s} PASCAL-S images) "
          f"in {time.perf_counter() - t0:.0f} s; run the paper profile on them with POSENC_DATA_ROOT={args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
