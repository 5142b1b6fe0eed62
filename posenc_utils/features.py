"""Encoder features, computed once per (encoder, weights, padding, image set, size) and cached.

Each tap is bilinearly resized to the readout's input size (28 x 28) and all taps are
concatenated along channels, as the PEM sees them. The result is stored as one channels-last
(N, 28, 28, C) array (float16 by default) and memory-mapped, so a large image set streams from
disk; channels-last is the layout CPU convolutions with thousands of channels run fastest on,
so a batch becomes a tensor without any transposing copy. float16
cannot hold the activations of a deep random-init residual network (1e8 in ResNet152), so
each tap is stored divided by a power of two chosen from the first batch; :meth:`FeatureSet.read`
undoes it exactly.
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import cache, paths
from .encoders import build_encoder, resize_taps
from .images import ImageSet
from .profiles import EncoderSpec
from .progress import progress

FEATURES_VERSION = 2  # 2: channels-last layout on disk
FLOAT16_HEADROOM = 2.0**10  # scale so the first batch's largest value is 1/1024 of float16's max

# Seconds spent in each phase of feature extraction (read by the benchmark command).
TIMINGS: dict[str, float] = defaultdict(float)


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
        arr = np.load(self.path, mmap_mode="r")
        idx = np.sort(np.atleast_1d(np.arange(self.n)[idx]))
        x = torch.from_numpy(np.ascontiguousarray(arr[idx])).float()
        scales = self.channel_scales()
        if (scales != 1).any():
            x *= torch.from_numpy(scales)
        return x.permute(0, 3, 1, 2)


def feature_key(spec: EncoderSpec, seed: int, image_set: ImageSet, size: int, dtype: str) -> str:
    """Everything that determines a feature array. The seed matters only for random weights."""
    return cache.make_key({
        "encoder": spec.__dict__, "seed": seed if spec.weights == "random" else None,
        "images": image_set.key, "feature_size": size, "dtype": dtype, "version": FEATURES_VERSION,
    })


def extract_features(spec: EncoderSpec, image_set: ImageSet, size: int = 28, seed: int = 0,
                     batch_size: int = 8, dtype: str = "float16", device: str | None = None) -> FeatureSet:
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
        enc = _encoder(spec, seed, image_set.size, device)
        images = image_set.load()
        n, channels = len(images), enc.channels
        scales: list[float] = []

        def fill(out: np.ndarray) -> None:
            for start in progress(range(0, n, batch_size), f"{spec.label} on {image_set.name}",
                                  total=math.ceil(n / batch_size)):
                t1 = time.perf_counter()
                x = torch.from_numpy(np.asarray(images[start:start + batch_size], np.float32) / 255.0)
                x = x.permute(0, 3, 1, 2).to(device)
                outs = enc(x)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                t2 = time.perf_counter()
                TIMINGS["encoder_forward"] += t2 - t1
                if not scales:
                    scales.extend(_tap_scale(o, dtype) for o in outs)
                feats = resize_taps([o / s for o, s in zip(outs, scales)], size).cpu().numpy()
                if not np.isfinite(feats.astype(dtype)).all():
                    raise FloatingPointError(
                        f"{spec.label} features on {image_set.name} overflow {dtype}; rerun with "
                        f"feature_dtype='float32' in the profile"
                    )
                out[start:start + len(feats)] = feats.transpose(0, 2, 3, 1)
                TIMINGS["resize_and_store"] += time.perf_counter() - t2

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
        TIMINGS["encoder_build"] += time.perf_counter() - t0
    return _LAST_ENCODER[memo_key]


def _tap_scale(t: torch.Tensor, dtype: str) -> float:
    """A power of two that brings ``t`` well inside ``dtype``'s range (1.0 for float32)."""
    if dtype != "float16":
        return 1.0
    peak = float(t.abs().max())
    limit = float(np.finfo(np.float16).max) / FLOAT16_HEADROOM
    return 2.0 ** math.ceil(math.log2(peak / limit)) if peak > limit else 1.0
