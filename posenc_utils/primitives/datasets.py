"""Every dataset folder the study reads, declared once, and the readers of their layouts.

The paper profile reads the paper's datasets from ``data/raw`` (or ``POSENC_DATA_ROOT``): DUTS-TR and PASCAL-S for
the probe (images only), MSRA-B, ECSSD, PASCAL-S and DUT-OMRON for salient object detection (images with masks) and
PASCAL VOC 2012 for segmentation (notebook 05). One :class:`Dataset` entry each says where it may lie, the layout a
user should unpack it to and where to get it: the message of a missing folder is written from that entry.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import paths

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Dataset:
    """One dataset: the folders under the data root it may be unpacked to (the first is the one to use), the
    sub-folders that may hold its images (and its masks, for salient object detection), in the order they are
    tried, the layout to name when it is missing, and where it comes from."""

    name: str
    folders: tuple[str, ...]
    layout: str
    source: str
    image_dirs: tuple[str, ...] = (".",)
    mask_dirs: tuple[str, ...] = ()  # SOD: where the masks may be ("." : beside the images, as .png)


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("DUTS-TR", ("DUTS-TR",), image_dirs=("DUTS-TR-Image",),
            layout="DUTS-TR/DUTS-TR-Image/*.jpg (masks in DUTS-TR/DUTS-TR-Mask are not needed)",
            source="http://saliencydetection.net/duts/ (DUTS-TR.zip, 10,553 images)"),
    Dataset("PASCAL-S", ("PASCAL-S",),
            image_dirs=("Imgs", "images", "Images", "imgs", "image", "datasets/imgs/pascal", "."),
            mask_dirs=("Masks", "masks", "GT", "datasets/masks/pascal", "."),
            layout="PASCAL-S/Imgs/*.jpg and PASCAL-S/Masks/*.png (or the release's datasets/imgs/pascal and "
                   "datasets/masks/pascal, or the images directly in PASCAL-S/; the probe needs no masks)",
            source="https://cbs.ic.gatech.edu/salobj/ (PASCAL-S, 850 images with masks)"),
    Dataset("MSRA-B", ("MSRA-B",), image_dirs=("imgs", "images", "Imgs", "."), mask_dirs=("gt", "masks", "GT", "."),
            layout="MSRA-B/*.jpg with the masks MSRA-B/*.png beside them (or MSRA-B/images/ and MSRA-B/masks/)",
            source="https://mmcheng.net/msra10k/ (MSRA-B, 5,000 images with masks)"),
    Dataset("ECSSD", ("ECSSD",), image_dirs=("images", "Imgs", "."),
            mask_dirs=("ground_truth_mask", "masks", "GT", "."),
            layout="ECSSD/images/*.jpg and ECSSD/ground_truth_mask/*.png",
            source="https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/dataset.html (ECSSD, 1,000 images)"),
    Dataset("DUT-OMRON", ("DUT-OMRON",), image_dirs=("DUT-OMRON-image", "images", "."),
            mask_dirs=("pixelwiseGT-new-PNG", "masks", "GT", "."),
            layout="DUT-OMRON/DUT-OMRON-image/*.jpg and DUT-OMRON/pixelwiseGT-new-PNG/*.png",
            source="http://saliencydetection.net/dut-omron/ (DUT-OMRON, 5,168 images)"),
    Dataset("VOC2012", ("VOCdevkit/VOC2012", "VOC2012"),
            layout="VOCdevkit/VOC2012/ with JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/{train,val}.txt",
            source="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ (VOCtrainval_11-May-2012.tar)"),
)}


def dataset(name: str) -> Dataset:
    """The entry of ``name``, or a ValueError listing the known ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: known are {', '.join(DATASETS)}")
    return DATASETS[name]


def missing(what: str, ds: Dataset, root: Path) -> FileNotFoundError:
    """The error for a dataset that is not where it should be: what, where, the layout, the source, the fix."""
    return FileNotFoundError(
        f"{what} not found under {root / ds.folders[0]}. Expected layout: {root}/{ds.layout}. Download it from "
        f"{ds.source}, unpack it there, or set POSENC_DATA_ROOT to the folder that holds {ds.folders[0]}/.")


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def image_folder(name: str, root: Path | None = None) -> Path:
    """The folder holding a dataset's images (the first of its image folders that holds any), or a clear error."""
    ds = dataset(name)
    root = Path(root or paths.raw_data_root())
    for folder in ds.folders:
        for sub in ds.image_dirs:
            d = root / folder / sub
            if d.is_dir() and list_images(d):
                return d
    raise missing(f"{name} images", ds, root)


def sod_pairs(name: str) -> list[tuple[Path, Path]]:
    """(image, mask) file pairs of a salient-object dataset, matched by file name stem; a clear error when the
    folder or its masks are missing."""
    ds = dataset(name)
    if not ds.mask_dirs:
        raise ValueError(f"{name} has no masks: salient object detection reads "
                         f"{', '.join(d.name for d in DATASETS.values() if d.mask_dirs)}")
    root = paths.raw_data_root()
    for folder in ds.folders:
        base = root / folder
        for idir in ds.image_dirs:
            for mdir in ds.mask_dirs:
                di, dm = base / idir, base / mdir
                if not (di.is_dir() and dm.is_dir()):
                    continue
                same = di.resolve() == dm.resolve()  # images .jpg and masks .png side by side
                images = [p for p in list_images(di) if not (same and p.suffix.lower() == ".png")]
                masks = {p.stem: p for p in list_images(dm) if not same or p.suffix.lower() == ".png"}
                pairs = [(p, masks[p.stem]) for p in images if p.stem in masks]
                if pairs:
                    return pairs
    raise missing(f"{name} images with their masks", ds, root)


def voc_pairs(split: str) -> list[tuple[Path, Path]]:
    """(image, class-index PNG) pairs of PASCAL VOC 2012's segmentation ``split`` (train | val)."""
    ds, root = DATASETS["VOC2012"], paths.raw_data_root()
    for folder in ds.folders:
        base = root / folder
        ids = base / "ImageSets" / "Segmentation" / f"{split}.txt"
        if ids.is_file() and (base / "JPEGImages").is_dir() and (base / "SegmentationClass").is_dir():
            pairs = [(base / "JPEGImages" / f"{i}.jpg", base / "SegmentationClass" / f"{i}.png")
                     for i in ids.read_text().split()]
            present = [(a, b) for a, b in pairs if a.exists() and b.exists()]
            if present:
                return present
    raise missing(f"PASCAL VOC 2012 ({split} split)", ds, root)
