"""Tiny stand-ins for what a paper-profile user puts in place: the datasets in their release layouts
(generated images, masks and VOC ids) and torchvision ImageNet weight files in a torch cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from posenc_utils.primitives import scenes


def make_probe_datasets(root: Path, n_train: int = 6, n_test: int = 3) -> Path:
    """DUTS-TR/DUTS-TR-Image with ``n_train`` small random images and PASCAL-S/Imgs with ``n_test``."""
    rng = np.random.default_rng(0)
    for folder, n in (("DUTS-TR/DUTS-TR-Image", n_train), ("PASCAL-S/Imgs", n_test)):
        d = Path(root) / folder
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = int(rng.integers(30, 50)), int(rng.integers(30, 50))
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / f"{i:04d}.jpg")
    return Path(root)


def make_downstream_datasets(root: Path, size: int = 40, n_sod_train: int = 6, n_sod_test: int = 3,
                             n_voc_train: int = 4, n_voc_val: int = 2) -> Path:
    """MSRA-B (images and masks side by side), ECSSD, PASCAL-S and DUT-OMRON in their release layouts,
    and a VOC2012 devkit with palette label images and train/val lists."""
    root = Path(root)
    rng = np.random.default_rng(0)

    def save_pair(img_dir, mask_dir, stem, mask_ext=".png"):
        img_dir.mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        image, mask = scenes.sod_scene(rng, size)
        Image.fromarray(image).save(img_dir / f"{stem}.jpg")
        Image.fromarray(mask * 255).save(mask_dir / f"{stem}{mask_ext}")

    for i in range(n_sod_train):
        save_pair(root / "MSRA-B", root / "MSRA-B", f"{i}")
    for name, imgs, masks in (("ECSSD", "images", "ground_truth_mask"), ("PASCAL-S", "Imgs", "Masks"),
                              ("DUT-OMRON", "DUT-OMRON-image", "pixelwiseGT-new-PNG")):
        for i in range(n_sod_test):
            save_pair(root / name / imgs, root / name / masks, f"{name.lower()}_{i}")
    voc = root / "VOCdevkit" / "VOC2012"
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


def write_imagenet_weights(torch_home: Path, archs: tuple[str, ...] = ("vgg16", "resnet152")) -> list[Path]:
    """torchvision state dicts (seeded random weights) under the file names of the ImageNet weights, in
    ``torch_home/hub/checkpoints``: the files load as a user's downloaded weights do."""
    import torch
    import torchvision

    from posenc_utils.models.networks import imagenet_weights_file

    out = []
    for arch in archs:
        path = imagenet_weights_file(arch)[0]
        path = Path(torch_home) / "hub" / "checkpoints" / path.name
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        torch.save(getattr(torchvision.models, arch)().state_dict(), path)
        out.append(path)
    return out
