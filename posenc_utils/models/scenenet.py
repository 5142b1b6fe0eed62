"""The network of notebook 05 (SceneNet): VGG16-BN's layout at a chosen width (and, optionally, its first blocks
only) with an HED-style decoder, trained with zero padding or with every padding removed, and the cached checkpoints
of its trained weights.

Without padding no layer pads and the network sees no value it did not get: its input is the image with the scene
around it (:func:`frame_inputs`: ``margin`` pixels of the same scene on each side, real content, not a mirror), and its
valid convolutions give an output for exactly the image. With zero padding it sees the image alone and pads.

Below both the encoders (a trained SceneNet is a probe encoder, ``vgg16bn_w<width>[_b<blocks>]``) and the downstream
experiments (which train it); it knows nothing of either.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..primitives import cache, paths

TASKS = ("sod", "seg")  # salient object detection, semantic segmentation
PADDINGS = ("zeros", "none")  # with zero padding / every padding removed
VGG16_BLOCKS = (2, 2, 3, 3, 3)  # 3x3 convolutions per block
VGG16_WIDTHS = (1, 2, 4, 8, 8)  # channels per block, in units of the first block's
TAP_NAMES = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
SCENE_MEAN, SCENE_STD = 0.45, 0.25


def scene_normalize(x: torch.Tensor) -> torch.Tensor:
    """The network's input convention: RGB in [0, 1] mapped to about zero mean, unit spread."""
    return (x - SCENE_MEAN) / SCENE_STD


def frame_inputs(images: np.ndarray, margin: int, padding: str, crop_left: int = 0) -> np.ndarray:
    """What a network sees of images made with ``margin`` pixels of scene around each (N, S + 2m, S + 2m, 3): with
    zero padding the image itself (the central S x S), without padding all of it; either without the image's
    ``crop_left`` leftmost columns (its output then covers the image's columns from ``crop_left`` on)."""
    if padding == "zeros":
        side = images.shape[1] - 2 * margin
        return images[:, margin:margin + side, margin + crop_left:margin + side]
    return images[:, :, crop_left:]


def resample_to_image(y: torch.Tensor, offset: float, stride: float, margin: int, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly sample a map (B, C, h, w) whose cell j sits at input position ``offset + stride * j``
    at every pixel of the image (which starts ``margin`` pixels into the input): (B, C, H, W).
    Positions outside the map take its nearest edge value. With ``margin=0`` and
    ``offset=(stride-1)/2`` this is ordinary bilinear upsampling (``align_corners=False``)."""
    (h, w), grids = size, []
    for n_out, n_in in ((h, y.shape[-2]), (w, y.shape[-1])):
        pos = (torch.arange(n_out, dtype=y.dtype) + margin - offset) / stride  # image pixel -> cell of the map
        grids.append(2 * pos / max(n_in - 1, 1) - 1)
    grid = torch.stack(torch.meshgrid(*grids, indexing="ij")[::-1], -1).to(y.device)
    return F.grid_sample(y, grid[None].expand(len(y), h, w, 2), mode="bilinear", padding_mode="border",
                         align_corners=True)


class SceneNet(nn.Module):
    """VGG16-BN's layout at ``width`` channels (VGG16: 64), its first ``blocks`` blocks, with an HED-style decoder:
    a 1x1 side output per block, resampled to the image, fused by a 1x1 convolution into ``n_out`` maps.

    ``padding="zeros"``: every 3x3 convolution pads by one zero (VGG16 as built); the input is the image.
    ``"none"``: no layer pads; the input is the image with :meth:`margin` pixels of its scene on each side (the
    distance from the input's corner to the centre of the deepest block's first output), so the valid
    convolutions' output covers the image. Each side output is resampled at the exact image positions its grid
    stands for (:meth:`geometry`), so both variants predict the same pixels from aligned maps."""

    def __init__(self, width: int, n_out: int, padding: str = "zeros", seed: int = 0, blocks: int = 5):
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding {padding!r}: the downstream network is trained with one of {PADDINGS}")
        if not 1 <= blocks <= len(VGG16_BLOCKS):
            raise ValueError(f"blocks={blocks}: VGG16 has 1 to {len(VGG16_BLOCKS)} blocks")
        self.width, self.n_out, self.padding, self.blocks = width, n_out, padding, blocks
        g = torch.Generator().manual_seed(seed)
        layers: list[nn.Module] = []
        c, self.taps = 3, []
        for b, n in enumerate(VGG16_BLOCKS[:blocks]):
            if b:
                layers.append(nn.MaxPool2d(2))
            for _ in range(n):
                conv = nn.Conv2d(c, width * VGG16_WIDTHS[b], 3, padding=1 if padding == "zeros" else 0)
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu", generator=g)  # torchvision's VGG init
                nn.init.zeros_(conv.bias)
                c = conv.out_channels
                layers += [conv, nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            self.taps.append(str(len(layers) - 1))
        self.features = nn.Sequential(*layers)
        self.side = nn.ModuleList(nn.Conv2d(width * m, n_out, 1) for m in VGG16_WIDTHS[:blocks])
        self.fuse = nn.Conv2d(blocks * n_out, n_out, 1)
        for m in (*self.side, self.fuse):
            nn.init.xavier_uniform_(m.weight, generator=g)
            nn.init.zeros_(m.bias)

    def geometry(self) -> list[tuple[float, float]]:
        """(offset, stride) of each tap: its output j sits at input position ``offset + stride * j``."""
        a, s, out = 0.0, 1.0, {}
        for i, m in enumerate(self.features):
            if isinstance(m, nn.Conv2d) and m.padding[0] == 0:
                a += s * (m.kernel_size[0] - 1) / 2
            elif isinstance(m, nn.MaxPool2d):
                a, s = a + s * 0.5, s * 2
            out[str(i)] = (a, s)
        return [out[t] for t in self.taps]

    def margin(self) -> int:
        """Pixels of scene the input holds around the image on each side without padding (0 with padding)."""
        return 0 if self.padding == "zeros" else int(math.ceil(self.geometry()[-1][0]))

    def forward(self, images01: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_out, H, W) of the image for RGB inputs in [0, 1] (B, 3, H + 2m, W + 2m) (m: :meth:`margin`;
        0 with padding); H and W need not be equal."""
        m = self.margin()
        h, w = images01.shape[-2] - 2 * m, images01.shape[-1] - 2 * m
        x = scene_normalize(images01).contiguous(memory_format=torch.channels_last)
        feats, taps = [], set(self.taps)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if str(i) in taps:
                feats.append(x)
        sides = [resample_to_image(side(f), a, s, m, (h, w)) for f, side, (a, s) in zip(feats, self.side, self.geometry())]
        return self.fuse(torch.cat(sides, 1))


def encoder_taps(net: SceneNet) -> tuple[str, ...]:
    """Module names (in ``net.features``) of the five block outputs, VGG16's relu1_2 .. relu5_3."""
    return tuple(net.taps)


# ---------------------------------------------------------------- checkpoints


def checkpoint_paths(key: str) -> tuple[Path, Path]:
    """(weights file, sidecar) of the cached network trained under ``key`` (written by notebook 05)."""
    folder = paths.cache_dir() / "downstream"
    return folder / f"model-{key}.pt", folder / f"model-{key}.json"


def load_checkpoint(key: str) -> tuple[dict, dict] | None:
    """(meta, state_dict) of a cached trained network, or None when absent or damaged."""
    data_path, meta_path = checkpoint_paths(key)
    meta = cache.read_file_entry(data_path, meta_path, key)
    if meta is None:
        return None
    return meta, torch.load(data_path, map_location="cpu", weights_only=True)
