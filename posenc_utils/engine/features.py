"""Encoder features, computed once per (encoder, weights, padding, image set, size) and cached.

Each tap is bilinearly resized to the readout's input size (28 x 28) and all taps are
concatenated along channels, as the PEM sees them. The result is stored as one channels-last
(N, 28, 28, C) array (float16 by default): one image's features are one contiguous block, the
layout the readout's matrix products read directly. Readers use the file's pages in place and
release them after use (:class:`FeatureMap`), so a feature file larger than RAM streams from disk
and the process's resident memory stays at a batch or two. float16
cannot hold the activations of a deep random-init residual network (1e8 in ResNet152), so
each tap is stored divided by a power of two chosen from the first batch; :meth:`FeatureSet.read`
undoes it exactly.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import mmap
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..primitives import cache, devices, paths, timing
from ..models import encoders
from ..models.encoders import build_encoder, resize_taps, weights_stamp
from ..models.families import family_of
from ..models.networks import checkpoint_file
from .images import ImageSet
from ..primitives.progress import progress
from ..primitives.specs import FEATURE_STORAGE, EncoderSpec

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
    storage: str = "store"  # where the rows come from: the file at ``path``, device memory, or the encoder again
    source: "HeldRows | RecomputedRows | None" = dataclasses.field(default=None, compare=False, repr=False)
    image_size: int = 0  # the images' side the encoder saw (its taps' own resolutions follow from it); 0: not known

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

    def head(self, n: int) -> "FeatureSet":
        """The features of the first ``n`` images (a view of the same file, with its own key)."""
        if n >= self.n:
            return self
        return dataclasses.replace(self, n=n, key=f"{self.key}-head{n}")

    def channel_scales(self) -> np.ndarray:
        """Per-channel factor that undoes the float16 storage scaling, shape (C,)."""
        return np.concatenate([np.full(c, s, np.float32) for c, s in zip(self.channels, self.tap_scales)])

    def read(self, idx) -> torch.Tensor:
        """Features of images ``idx`` as a float32 (N, C, size, size) tensor in channels-last memory
        layout, in the encoder's own scale. Indices are read in sorted order (sequential on disk)."""
        idx = np.sort(np.atleast_1d(np.arange(self.n)[idx]))
        with open_rows(self) as rows:
            raw = rows.rows(idx)
        x = torch.from_numpy(raw).float().view(len(idx), self.size, self.size, self.n_channels)
        scales = self.channel_scales()
        if (scales != 1).any():
            x *= torch.from_numpy(scales)
        return x.permute(0, 3, 1, 2)


RELEASE_BYTES = 256 * 2**20  # used feature rows leave the process's memory in drops of this size
# What touching one row may map into the process: the kernel maps a file's pages in folios of up to 2 MiB (large
# folios of the page cache), so a row narrower than that (VGG16-BN/8's 184 channels: 288 KB) brings its neighbours
# in too, and counting only the row's own bytes let resident memory reach ~7x RELEASE_BYTES (measured: +1.8 GB).
MAP_GRAIN = 2 * 2**20


class FeatureMap:
    """The stored features of a :class:`FeatureSet`, mapped and used in place, page by page.

    Rows (one image each, (size*size, C)) are read straight from the page cache: no copy into a
    batch buffer (which costs ~5x the float16 -> float32 conversion the readout does anyway).
    :meth:`prefetch` asks the kernel to read rows ahead asynchronously; :meth:`release` drops rows
    from this process's mapping once used, so the resident memory stays at a batch or two
    whatever the file's size (the data stay in the page cache, which is not this process's).
    """

    def __init__(self, features: FeatureSet):
        shape, dtype, offset = cache.npy_layout(features.path)
        if shape[0] < features.n or tuple(shape[1:]) != (features.size, features.size, features.n_channels):
            raise ValueError(f"{features.path} holds an array of shape {shape}, not the features described "
                             f"by its sidecar; delete it to recompute")
        self.n, self.row_shape = features.n, (features.size * features.size, features.n_channels)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape)) * self.dtype.itemsize
        self.offset = offset
        with open(features.path, "rb") as f:
            # a private (copy-on-write) mapping gives a writable array, so torch takes it without
            # a warning; nothing is ever written, so every page stays shared with the page cache
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        self.array = np.frombuffer(self._mm, self.dtype, count=self.n * int(np.prod(self.row_shape)),
                                   offset=offset).reshape(self.n, *self.row_shape)
        self.tensor = torch.from_numpy(self.array)
        self._released = 0

    def _pages(self, idx) -> list[tuple[int, int]]:
        """Page-aligned (start, length) byte ranges covering rows ``idx``, runs merged."""
        idx = np.unique(np.asarray(idx))
        runs = np.split(idx, np.flatnonzero(np.diff(idx) != 1) + 1) if len(idx) else []
        out = []
        for run in runs:
            start = self.offset + int(run[0]) * self.row_bytes
            stop = self.offset + (int(run[-1]) + 1) * self.row_bytes
            aligned = start - start % mmap.PAGESIZE
            out.append((aligned, stop - aligned))
        return out

    def prefetch(self, idx) -> None:
        """Start reading rows ``idx`` into the page cache in the background (returns at once)."""
        for start, length in self._pages(idx):
            self._mm.madvise(mmap.MADV_WILLNEED, start, length)

    def release(self, idx, now: bool = False) -> None:
        """Let rows ``idx`` leave this process's resident memory (they stay in the page cache).

        Released rows are dropped together once they add up to ``RELEASE_BYTES``: each drop
        interrupts every core running this process (a TLB flush), so one drop per few batches
        costs far less than one per image, and resident memory stays bounded all the same."""
        self._released += len(np.asarray(idx)) * max(self.row_bytes, MAP_GRAIN)
        if now or self._released >= RELEASE_BYTES:
            self._mm.madvise(mmap.MADV_DONTNEED, 0, len(self._mm))
            self._released = 0

    def rows(self, idx) -> np.ndarray:
        """A copy of rows ``idx`` (k, size*size, C), released from the mapping afterwards."""
        out = self.array[np.asarray(idx)]
        self.release(idx, now=True)
        return out

    def stored(self, idx) -> tuple[torch.Tensor, np.ndarray]:
        """Rows ``idx`` as (a tensor holding them, their indices in it): here the whole mapped file, uncopied."""
        return self.tensor, np.asarray(idx)

    def block(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` (k, size*size, C) in place."""
        return self.tensor[start:stop]

    def close(self) -> None:
        """Unmap the file. Its pages leave this process's resident memory even when a view of it is
        still alive somewhere (the mapping then lives on, and a later read faults the pages in again
        from the page cache): without this, every closed but still viewed file stayed resident."""
        self.tensor = self.array = None
        if self._mm is not None:
            self._mm.madvise(mmap.MADV_DONTNEED, 0, len(self._mm))
            try:
                self._mm.close()
            except BufferError:  # a view is still alive somewhere: the mapping goes with it
                pass
            self._mm = None

    def __enter__(self) -> "FeatureMap":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class HeldRows:
    """Every row of a feature set held in one tensor in the device's memory (``storage="memory"``): computed once
    per process in the same batches as a stored file, so the same numbers to the bit, and never written to disk."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor  # (N, size*size, C)

    def rows(self, idx) -> np.ndarray:
        return self.tensor[torch.from_numpy(np.asarray(idx))].cpu().numpy()

    def stored(self, idx) -> tuple[torch.Tensor, np.ndarray]:
        return self.tensor, np.asarray(idx)

    def block(self, start: int, stop: int) -> torch.Tensor:
        return self.tensor[start:stop]

    def prefetch(self, idx) -> None:
        pass

    def release(self, idx, now: bool = False) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "HeldRows":
        return self

    def __exit__(self, *exc) -> None:
        pass


class RecomputedRows(HeldRows):
    """Rows computed again by the encoder each time they are asked for (``storage="recompute"``), as the authors'
    code does: no disk and no memory beyond a batch, at the cost of a forward pass per use. The float16 scaling is
    the stored file's (from the same first batch), so the numbers are the stored ones up to the round-off of a
    convolution run on a different batch (a test bounds it)."""

    def __init__(self, spec: EncoderSpec, image_set: ImageSet, seed: int, size: int, scales: tuple[float, ...],
                 dtype: str, device: str):
        self.spec, self.image_set, self.seed, self.size = spec, image_set, seed, size
        self.scales, self.dtype, self.device = scales, dtype, device
        self.tensor = None

    def rows(self, idx) -> np.ndarray:
        return self.block_of(np.asarray(idx)).cpu().numpy()

    def stored(self, idx) -> tuple[torch.Tensor, np.ndarray]:
        return self.block_of(np.asarray(idx)), np.arange(len(idx))

    def block(self, start: int, stop: int) -> torch.Tensor:
        return self.block_of(np.arange(start, stop))

    def block_of(self, idx: np.ndarray) -> torch.Tensor:
        """Rows ``idx`` (k, size*size, C) in the feature dtype, on the device, computed now."""
        images = np.asarray(self.image_set.load()[idx])
        enc = _encoder(self.spec, self.seed, self.image_set.size, self.device)
        rows = _feature_rows(enc, images, self.size, self.scales, self.dtype, self.device, self.image_set.name)
        return rows.reshape(len(idx), self.size * self.size, -1)


def open_rows(features: "FeatureSet") -> "FeatureMap | HeldRows":
    """The rows of ``features`` wherever they come from: the mapped file, device memory or the encoder."""
    return FeatureMap(features) if features.source is None else features.source


def stored_bytes(n_images: int, size: int, channels: int, dtype: str = "float16") -> int:
    """Bytes of the stored features of ``n_images`` images (every tap at ``size`` x ``size``, ``channels`` in all)."""
    return n_images * size * size * channels * np.dtype(dtype).itemsize


def feature_key(spec: EncoderSpec, seed: int, image_set: ImageSet, size: int, dtype: str) -> str:
    """Everything that determines a feature array. The seed matters only for random weights; a weights
    file whose name does not pin its content (a timm file the user placed) counts by its checksum."""
    fields = {
        "encoder": cache.key_fields(spec), "seed": seed if spec.weights == "random" else None,
        "images": image_set.key, "feature_size": size, "dtype": dtype, "version": FEATURES_VERSION,
    }
    fam = family_of(spec.name)
    weights = fam.weights_file(spec) if fam.key_by_weights_file or checkpoint_file(spec) is not None else None
    if weights is not None:
        fields["weights_file"] = cache.current_checksum(weights) if weights.exists() else "from the hub"
    return cache.make_key(fields)


def default_batch_size(spec: EncoderSpec, device: str) -> int:
    """Images per encoder forward pass: the family's measured number on a CPU (a fixed number, not a
    choice made by timing at run time, so reruns stay bit-identical), 32 on a GPU."""
    return 32 if device.startswith("cuda") else family_of(spec.name).cpu_batch


STORAGE = FEATURE_STORAGE
DISK_MARGIN = 1.05  # a store is written only where the free disk exceeds it by this factor
# Features are held in a GPU's memory only when they take at most this share of what is free: while they are put
# together, the batches and the whole are both there (2x), and the readout's work needs room beside them.
DEVICE_MEMORY_SHARE = 0.5


def check_storage(wanted: str) -> None:
    """Refuse a storage that is not one of :data:`STORAGE`, naming them."""
    if wanted not in STORAGE:
        raise ValueError(f"feature_storage={wanted!r}: choose one of {', '.join(STORAGE)}")


@dataclass(frozen=True)
class StorageChoice:
    """Where an encoder's features live during a run, and why."""

    mode: str  # "store" (a file in the cache), "memory" (held in the device's memory) or "recompute"
    reason: str


def choose_storage(nbytes: int, free_disk: int, device: str, device_free: int | None = None,
                   stored: bool = False, wanted: str = "auto") -> StorageChoice:
    """Store, hold or recompute features of ``nbytes``, by the numbers: a feature file already in the cache is read
    (the cheapest); on a GPU whose free memory holds them twice over they are held there (no disk, no recomputing);
    else they are stored when the disk holds them (reading a row costs far less than a forward pass: VGG16 at 224 px
    is 31 GFLOP per image against 2.3 MB of features); else recomputed each time they are used, as the authors'
    code does. ``wanted`` other than "auto" is obeyed."""
    check_storage(wanted)
    if wanted != "auto":
        return StorageChoice(wanted, "as the profile's feature_storage asks")
    if stored:
        return StorageChoice("store", "already in the cache")
    gb = lambda b: f"{b / 1e9:.1f} GB"  # noqa: E731
    if device.startswith("cuda") and device_free is not None and nbytes <= DEVICE_MEMORY_SHARE * device_free:
        return StorageChoice("memory", f"{gb(nbytes)} fit the GPU's {gb(device_free)} free memory")
    if nbytes * DISK_MARGIN <= free_disk:
        return StorageChoice("store", f"{gb(nbytes)} fit the {gb(free_disk)} free disk")
    return StorageChoice("recompute", f"{gb(nbytes)} do not fit the {gb(free_disk)} free disk"
                         + ("" if not device.startswith("cuda") else f" nor half the GPU's {gb(device_free or 0)}")
                         + ": a forward pass per use instead")


def extract_features(spec: EncoderSpec, image_set: ImageSet, size: int = 28, seed: int = 0,
                     batch_size: int | None = None, dtype: str = "float16", device: str | None = None,
                     storage: str = "store") -> FeatureSet:
    """The features of ``image_set`` under encoder ``spec``, from the cache or computed now.

    ``storage`` (:data:`STORAGE`): "store" writes them to the cache once; "memory" holds them in the device's
    memory for this process; "recompute" runs the encoder again each time rows are read (only the float16
    scaling is cached); "auto" chooses by :func:`choose_storage`. The encoder is built only on a cache miss,
    so a warm rerun of a stored set never touches the network.
    """
    key = feature_key(spec, seed, image_set, size, dtype)
    folder = paths.cache_dir() / "features"
    stem = f"{spec.name.replace(':', '-')}-{spec.weights}-{spec.padding}-{image_set.name}-{key}"
    data, meta_path = folder / f"{stem}.npy", folder / f"{stem}.json"
    dev = device or devices.device()
    step = batch_size or default_batch_size(spec, dev)
    if storage == "auto":
        folder.mkdir(parents=True, exist_ok=True)
        stored = cache.open_array_entry(data, meta_path, {"key": key}) is not None
        nbytes = stored_bytes(image_set.n, size, sum(encoders.tap_channels(spec, image_set.size)), dtype)
        storage = choose_storage(nbytes, shutil.disk_usage(folder).free, dev, devices.device_free_memory(dev),
                                 stored).mode
    else:
        check_storage(storage)
    if storage != "store":
        taps, channels, scales = _scaling(spec, image_set, size, seed, step, dtype, dev, key, folder / f"{stem}.scales")
        if storage == "recompute":
            source: HeldRows = RecomputedRows(spec, image_set, seed, size, scales, dtype, dev)
        else:
            source = _held(spec, image_set, size, seed, step, dtype, dev, key, scales)
        return FeatureSet(spec, image_set.name, key, data, image_set.n, taps, channels, scales, size, storage, source,
                          image_set.size)

    def compute() -> np.ndarray:  # on a miss, holding the entry's lock
        enc = _encoder(spec, seed, image_set.size, dev)
        n, channels = image_set.n, enc.channels
        scales: list[float] = []

        def fill(out: cache.RowWriter) -> None:
            # the file write of batch k overlaps the forward pass of batch k + 1
            with ThreadPoolExecutor(max_workers=1) as writer:
                pending = None
                for start, rows in _batches(enc, image_set, size, scales, dtype, dev, step):
                    t2 = time.perf_counter()
                    rows = rows.cpu().numpy()  # (B, size, size, C), contiguous
                    if pending is not None:
                        pending.result()
                    pending = writer.submit(out.__setitem__, slice(start, start + len(rows)), rows)
                    _record(spec, store=time.perf_counter() - t2)
                if pending is not None:
                    t2 = time.perf_counter()
                    pending.result()
                    _record(spec, store=time.perf_counter() - t2)

        meta = {"key": key, "encoder": spec.__dict__, "image_set": image_set.name, "taps": list(enc.tap_names),
                "channels": list(channels), "input_convention": enc.input_convention,
                "tap_scales": scales}  # filled by the first batch, before the sidecar is written
        return cache.write_array_entry(data, meta_path, (n, size, size, sum(channels)), dtype, meta, fill)

    arr = cache.computed_once(data, lambda: cache.open_array_entry(data, meta_path, {"key": key}), compute)
    meta = cache.read_json(meta_path)
    return FeatureSet(spec, image_set.name, key, data, int(arr.shape[0]), tuple(meta["taps"]),
                      tuple(meta["channels"]), tuple(meta["tap_scales"]), size, image_size=image_set.size)


def _batches(enc, image_set: ImageSet, size: int, scales: list[float], dtype: str, dev: str, step: int):
    """(first index, rows (B, size, size, C) in ``dtype`` on ``dev``) for consecutive batches of ``step`` images,
    the extraction's batches whatever the storage (so stored and held rows are the same bits). ``scales`` is
    filled from the first batch when empty."""
    n = image_set.n
    for start in progress(range(0, n, step), f"{enc.spec.label} on {n} {image_set.name} images",
                          total=math.ceil(n / step), unit="batches"):
        yield start, _feature_rows(enc, image_set.rows(start, start + step), size, scales, dtype, dev, image_set.name)


def _feature_rows(enc, images: np.ndarray, size: int, scales: list[float] | tuple[float, ...], dtype: str,
                  dev: str, set_name: str) -> torch.Tensor:
    """The readout's inputs for uint8 ``images`` (B, S, S, 3): every tap resized to ``size`` and divided by its
    storage scale, concatenated, (B, size, size, C) in ``dtype``. An empty ``scales`` list is filled from this batch."""
    t1 = time.perf_counter()
    x = torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2).to(dev)  # NHWC memory: channels-last
    with torch.no_grad():
        outs = enc(x)
    if dev.startswith("cuda"):
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    if isinstance(scales, list) and not scales:
        scales.extend(_tap_scale(o, dtype) for o in outs)
    _check_range(outs, list(scales), dtype, f"{enc.spec.label} features on {set_name}")
    rows = resize_taps(outs, size, tuple(scales), getattr(torch, dtype)).permute(0, 2, 3, 1)
    _record(enc.spec, forward=t2 - t1, store=time.perf_counter() - t2, images=len(images))
    return rows


def _scaling(spec: EncoderSpec, image_set: ImageSet, size: int, seed: int, step: int, dtype: str, dev: str,
             key: str, stem: Path) -> tuple[tuple[str, ...], tuple[int, ...], tuple[float, ...]]:
    """(taps, channels, storage scales) of features not stored: the scales from the first batch, as a stored
    file's, cached (a few bytes) so every use computes the same numbers."""
    data, meta_path = stem.parent / f"{stem.name}.npy", stem.parent / f"{stem.name}.json"

    def lookup():
        return cache.read_file_entry(data, meta_path, key)

    def compute():
        enc = _encoder(spec, seed, image_set.size, dev)
        scales: list[float] = []
        _feature_rows(enc, image_set.rows(0, step), size, scales, dtype, dev, image_set.name)
        meta = {"key": key, "taps": list(enc.tap_names), "channels": list(enc.channels), "tap_scales": scales}
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to a path
                np.save(f, np.asarray(scales))

        cache.write_file_entry(data, meta_path, meta, write)
        return meta

    meta = cache.computed_once(data, lookup, compute)
    return tuple(meta["taps"]), tuple(meta["channels"]), tuple(meta["tap_scales"])


_HELD: dict[str, tuple[EncoderSpec, HeldRows]] = {}


def _held(spec: EncoderSpec, image_set: ImageSet, size: int, seed: int, step: int, dtype: str, dev: str, key: str,
          scales: tuple[float, ...]) -> HeldRows:
    """The rows held in ``dev``'s memory, computed once per process in the extraction's batches. One encoder's sets
    are kept together (its training and test sets are used together); another encoder's are let go first, so
    the device holds one encoder's features at a time (what the plan sized)."""
    if key not in _HELD:
        for other in [k for k, (s, _) in _HELD.items() if s != spec]:
            del _HELD[other]
        if dev.startswith("cuda"):
            torch.cuda.empty_cache()  # what was let go becomes free memory for the next choice
        enc = _encoder(spec, seed, image_set.size, dev)
        parts = [rows.reshape(len(rows), size * size, -1) for _, rows in
                 _batches(enc, image_set, size, list(scales), dtype, dev, step)]
        _HELD[key] = (spec, HeldRows(torch.cat(parts)))
    return _HELD[key][1]


def _encoder(spec: EncoderSpec, seed: int, size: int, device: str):
    """The encoder of ``spec`` on ``device``, built or reused."""
    return _built(spec, seed, size, device, weights_stamp(spec))


def release_networks() -> None:
    """Forget every network built and kept for reuse in this process (the last encoder here, the zero-padded
    networks its padding variants are copied from), so their memory can go back: a long-lived process that
    probes many encoders (the test suite) does not keep the largest few alive."""
    _built.cache_clear()
    _HELD.clear()
    encoders.release_networks()


@functools.lru_cache(maxsize=1)
def _built(spec: EncoderSpec, seed: int, size: int, device: str, _weights: tuple):
    """The last encoder built (an encoder runs over several image sets in a row), keyed by what its
    weights are read from as well, so a changed weights file is never served from the memo."""
    t0 = time.perf_counter()
    enc = build_encoder(spec, seed, size).to(device)
    _record(spec, build=time.perf_counter() - t0)
    return enc


def _record(spec: EncoderSpec, forward: float = 0.0, store: float = 0.0, build: float = 0.0, images: int = 0) -> None:
    """Book extraction time per phase and per encoder (the benchmark's encoder overhead ratio)."""
    for name, seconds in (("encoder_forward", forward), ("resize_and_store", store), ("encoder_build", build)):
        timing.add(name, seconds, encoder=spec.label)
    timing.count_images(spec.label, images)


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
