"""Encoder features, computed once per (encoder, weights, padding, image set, size) and cached.

Each tap is bilinearly resized to the readout's input size (28 x 28) and all taps are
concatenated along channels, as the PEM sees them. The result is stored as one channels-last
(N, 28, 28, C) array (float16 by default): one image's features are one contiguous block, the
layout the readout's matrix products read directly. Readers fetch whole images with positioned
reads (:class:`FeatureReader`), never through a memory map, so a feature file larger than RAM
streams from disk and never counts toward the process's resident memory. float16
cannot hold the activations of a deep random-init residual network (1e8 in ResNet152), so
each tap is stored divided by a power of two chosen from the first batch; :meth:`FeatureSet.read`
undoes it exactly.
"""
from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import cache, paths, timing
from .encoders import build_encoder, resize_taps
from .images import ImageSet
from .profiles import EncoderSpec
from .progress import progress

FEATURES_VERSION = 2  # 2: channels-last layout on disk
FLOAT16_HEADROOM = 2.0**10  # scale so the first batch's largest value is 1/1024 of float16's max



@dataclass(frozen=True)
class FeatureSet:
    """Cached readout inputs for one encoder on one image set."""

    encoder: EncoderSpec
    image_set: str
    key: str
    path: Path
    n: int
    tap_names: tuple[str, ...]
    channels: tuple[int, ...]
    tap_scales: tuple[float, ...]
    size: int

    @property
    def n_channels(self) -> int:
        return sum(self.channels)

    def tap_slices(self) -> dict[str, slice]:
        """Channel range of each tap in the concatenated array."""
        out, start = {}, 0
        for name, c in zip(self.tap_names, self.channels):
            out[name] = slice(start, start + c)
            start += c
        return out

    def channel_scales(self) -> np.ndarray:
        """Per-channel factor that undoes the float16 storage scaling, shape (C,)."""
        return np.concatenate([np.full(c, s, np.float32) for c, s in zip(self.channels, self.tap_scales)])

    def read(self, idx) -> torch.Tensor:
        """Features of images ``idx`` as a float32 (N, C, size, size) tensor in channels-last memory
        layout, in the encoder's own scale. Indices are read in sorted order (sequential on disk)."""
        idx = np.sort(np.atleast_1d(np.arange(self.n)[idx]))
        with FeatureReader(self) as reader:
            raw = reader.read(idx)
        x = torch.from_numpy(raw).float().view(len(idx), self.size, self.size, self.n_channels)
        scales = self.channel_scales()
        if (scales != 1).any():
            x *= torch.from_numpy(scales)
        return x.permute(0, 3, 1, 2)


class FeatureReader:
    """Whole images' stored features by positioned reads (``os.preadv``), as (k, size*size, C) arrays.

    Reading through the page cache instead of a memory map keeps a streamed file out of the
    process's resident memory; consecutive indices are fetched with one read.
    """

    _fd = None

    def __init__(self, features: FeatureSet):
        shape, dtype, self.offset = cache.npy_layout(features.path)
        self.row_shape = (features.size * features.size, features.n_channels)
        if tuple(shape) != (features.n, features.size, features.size, features.n_channels):
            raise ValueError(f"{features.path} holds an array of shape {shape}, not the features described "
                             f"by its sidecar; delete it to recompute")
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape)) * self.dtype.itemsize
        self.n = features.n
        self._fd = os.open(features.path, os.O_RDONLY)

    def read(self, idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``idx`` (sorted, in range) into ``out`` (allocated when None); returns the filled rows."""
        idx = np.asarray(idx)
        if out is None:
            out = np.empty((len(idx), *self.row_shape), self.dtype)
        if len(out) < len(idx) or out.shape[1:] != self.row_shape or out.dtype != self.dtype:
            raise ValueError(f"buffer {out.shape} {out.dtype} cannot hold {len(idx)} rows of {self.row_shape} {self.dtype}")
        out = out[:len(idx)]
        runs = np.split(np.arange(len(idx)), np.flatnonzero(np.diff(idx) != 1) + 1)
        for run in runs:
            view = memoryview(out[run[0]:run[-1] + 1]).cast("B")
            pos = self.offset + int(idx[run[0]]) * self.row_bytes
            while view:
                n = os.preadv(self._fd, [view], pos)
                if n == 0:
                    raise EOFError(f"feature file ended early at byte {pos}; delete it to recompute")
                view, pos = view[n:], pos + n
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FeatureReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        self.close()


def feature_key(spec: EncoderSpec, seed: int, image_set: ImageSet, size: int, dtype: str) -> str:
    """Everything that determines a feature array. The seed matters only for random weights."""
    return cache.make_key({
        "encoder": spec.__dict__, "seed": seed if spec.weights == "random" else None,
        "images": image_set.key, "feature_size": size, "dtype": dtype, "version": FEATURES_VERSION,
    })


# Images per forward pass on a CPU, by architecture: the fastest per image of 1, 2, 4, 8 and 16
# measured on 2 cores (``make bench`` reports the best batch size of the machine it runs on).
# A fixed table, not a choice made by timing at run time, so reruns stay bit-identical.
CPU_BATCH_SIZES = {"vgg16": 2, "resnet152": 8, "efficientnet_lite0": 4}


def default_batch_size(spec: EncoderSpec, device: str) -> int:
    """Images per encoder forward pass: the measured table on a CPU, 32 on a GPU."""
    return 32 if device.startswith("cuda") else CPU_BATCH_SIZES.get(spec.name, 8)


def extract_features(spec: EncoderSpec, image_set: ImageSet, size: int = 28, seed: int = 0,
                     batch_size: int | None = None, dtype: str = "float16", device: str | None = None) -> FeatureSet:
    """The features of ``image_set`` under encoder ``spec``, from the cache or computed now.

    The encoder is built only on a cache miss, so a warm rerun never touches the network.
    """
    key = feature_key(spec, seed, image_set, size, dtype)
    folder = paths.cache_dir() / "features"
    stem = f"{spec.name.replace(':', '-')}-{spec.weights}-{spec.padding}-{image_set.name}-{key}"
    data, meta_path = folder / f"{stem}.npy", folder / f"{stem}.json"
    arr = cache.open_array_entry(data, meta_path, {"key": key})
    if arr is None:
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        batch_size = batch_size or default_batch_size(spec, device)
        enc = _encoder(spec, seed, image_set.size, device)
        images = image_set.load()
        n, channels = len(images), enc.channels
        scales: list[float] = []

        def fill(out: cache.RowWriter) -> None:
            # the file write of batch k overlaps the forward pass of batch k + 1
            with ThreadPoolExecutor(max_workers=1) as writer:
                pending = None
                for start in progress(range(0, n, batch_size), f"{spec.label} on {n} {image_set.name} images",
                                      total=math.ceil(n / batch_size), unit="batches"):
                    t1 = time.perf_counter()
                    batch = np.asarray(images[start:start + batch_size], np.float32) / 255.0
                    x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(device)  # NHWC memory: channels-last
                    outs = enc(x)
                    if device.startswith("cuda"):
                        torch.cuda.synchronize()
                    t2 = time.perf_counter()
                    if not scales:
                        scales.extend(_tap_scale(o, dtype) for o in outs)
                    _check_range(outs, scales, dtype, f"{spec.label} features on {image_set.name}")
                    feats = resize_taps(outs, size, tuple(scales), getattr(torch, dtype)).permute(0, 2, 3, 1)
                    rows = feats.cpu().numpy()  # (B, size, size, C), contiguous
                    if pending is not None:
                        pending.result()
                    pending = writer.submit(out.__setitem__, slice(start, start + len(rows)), rows)
                    _record(spec, forward=t2 - t1, store=time.perf_counter() - t2, images=len(rows))
                if pending is not None:
                    t2 = time.perf_counter()
                    pending.result()
                    _record(spec, store=time.perf_counter() - t2)

        meta = {"key": key, "encoder": spec.__dict__, "image_set": image_set.name, "taps": list(enc.tap_names),
                "channels": list(channels), "input_convention": enc.input_convention,
                "tap_scales": scales}  # filled by the first batch, before the sidecar is written
        arr = cache.write_array_entry(data, meta_path, (n, size, size, sum(channels)), dtype, meta, fill)
    meta = cache.read_json(meta_path)
    return FeatureSet(spec, image_set.name, key, data, int(arr.shape[0]), tuple(meta["taps"]),
                      tuple(meta["channels"]), tuple(meta["tap_scales"]), size)


_LAST_ENCODER: dict = {}


def _encoder(spec: EncoderSpec, seed: int, size: int, device: str):
    """Build the encoder, reusing the last one built (an encoder runs over several image sets in a row)."""
    memo_key = (spec, seed, size, device)
    if memo_key not in _LAST_ENCODER:
        _LAST_ENCODER.clear()
        t0 = time.perf_counter()
        _LAST_ENCODER[memo_key] = build_encoder(spec, seed, size).to(device)
        _record(spec, build=time.perf_counter() - t0)
    return _LAST_ENCODER[memo_key]


def _record(spec: EncoderSpec, forward: float = 0.0, store: float = 0.0, build: float = 0.0, images: int = 0) -> None:
    """Book extraction time per phase and per encoder (the benchmark's encoder overhead ratio)."""
    for name, seconds in (("encoder_forward", forward), ("resize_and_store", store), ("encoder_build", build)):
        timing.add(name, seconds)
        timing.EXTRACTIONS[spec.label][name] += seconds
    timing.EXTRACTIONS[spec.label]["images"] += images


def _check_range(outs: list[torch.Tensor], scales: list[float], dtype: str, what: str) -> None:
    """Refuse taps that would overflow ``dtype`` once divided by their scale (or hold NaN).

    Checked on the taps before resizing: bilinear resizing never leaves their range."""
    if dtype != "float16":
        return
    limit = float(np.finfo(np.float16).max)
    for o, s in zip(outs, scales):
        lo, hi = torch.aminmax(_flat(o))
        if not max(-float(lo), float(hi)) / s <= limit:
            raise FloatingPointError(f"{what} overflow {dtype} (or are not finite); rerun with "
                                     f"feature_dtype='float32' in the profile")


def _flat(t: torch.Tensor) -> torch.Tensor:
    """All values of ``t`` as a 1-D view in memory order (reductions over a channels-last tensor
    seen as NCHW run an order of magnitude slower)."""
    if t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return t.permute(0, 2, 3, 1).reshape(-1)
    return t.reshape(-1)


def _tap_scale(t: torch.Tensor, dtype: str) -> float:
    """A power of two that brings ``t`` well inside ``dtype``'s range (1.0 for float32)."""
    if dtype != "float16":
        return 1.0
    lo, hi = torch.aminmax(_flat(t))
    peak = max(-float(lo), float(hi))
    limit = float(np.finfo(np.float16).max) / FLOAT16_HEADROOM
    return 2.0 ** math.ceil(math.log2(peak / limit)) if peak > limit else 1.0
