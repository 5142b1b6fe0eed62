"""The position encoding module (PEM) and its training on cached features.

One PEM holds an independent head per target pattern, so the five patterns of the paper are
trained in one pass over the features. Heads share no parameter: the first layer's output
channels are partitioned by head, later layers are grouped convolutions (one group per head),
BatchNorm is per channel, and the loss is the *sum* of per-head MSEs, so each head's gradient
is that of its own loss. Each head is initialized from its own seed, derived from the run
seed and its pattern, so a multi-head run equals separate single-pattern runs (a test proves it).

Two engines compute the same function:

* ``reference``: the PEM as written in PAPER.md section 1: standardize the features, convolve,
  upsample the output to the image size, mean squared error against the target.
* ``fast`` (the default): exact rewrites whose time is the first layer's arithmetic.
  (1) The first convolution is one matrix product of the stored float16 features, converted a
  few images at a time in cache, with a (C, k*k*O) weight matrix; a shifted sum of the product's
  k*k column blocks gives the convolution (zero padding included). (2) The per-channel
  standardization and the float16 storage scale are an affine map folded into that matrix and
  an offset, so no feature value is touched per batch. (3) Bilinear upsampling is linear and
  separable (``up(P) = A P A^T``), so the MSE of the upsampled map against a fixed target is a
  quadratic form evaluated at the PEM's resolution with small precomputed matrices.
  Tests check outputs, losses and gradients against the reference for every kernel size and
  padding the study uses.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import cache, paths, timing
from .encoders import flush_denormals
from .features import FeatureMap, FeatureSet
from .metrics import mae, spc
from .profiles import ReadoutSpec
from .progress import progress
from .targets import target_stack

READOUT_VERSION = 2  # 2: fast engine (same function, other round-off)
ENGINES = ("fast", "reference")
BLOCK_FLOATS = 3 * 2**19  # float32 values converted per matrix product (~6 MB): stays in cache
FAST_MAX_BYTES = 2**29  # a first-layer product larger than this per batch uses the convolution instead


def head_seed(seed: int, pattern: str) -> int:
    """The initialization seed of one pattern's head (independent of which other heads exist)."""
    return int(cache.make_key({"seed": seed, "pattern": pattern}), 16) % (2**31)


# ---------------------------------------------------------------- the first layer as a matrix product


def channel_ranges(chans: np.ndarray | None, n_channels: int) -> tuple[tuple[int, int], ...]:
    """Selected channels as contiguous (start, stop) ranges (taps are contiguous channel blocks)."""
    if chans is None:
        return ((0, n_channels),)
    chans = np.asarray(chans)
    cuts = np.flatnonzero(np.diff(chans) != 1) + 1
    return tuple((int(r[0]), int(r[-1]) + 1) for r in np.split(chans, cuts))


def _column_chunks(ranges: tuple[tuple[int, int], ...], width: int) -> list[tuple[int, int, list]]:
    """Split the selected channels into chunks of at most ``width``: (first, last) in selected
    channels and the (stored start, stored stop, selected start) pieces that fill each chunk."""
    pieces, pos = [], 0
    for a, e in ranges:
        pieces.append((a, e, pos))
        pos += e - a
    chunks = []
    for c0 in range(0, pos, width):
        c1 = min(pos, c0 + width)
        parts = [(a + max(c0, o) - o, a + min(c1, o + e - a) - o, max(c0, o) - c0)
                 for a, e, o in pieces if o < c1 and o + e - a > c0]
        chunks.append((c0, c1, parts))
    return chunks


@dataclass
class StoredBatch:
    """Images ``idx`` of a stored feature array ``source`` (N, side*side, C_total): a batch that is
    never copied as a whole on a CPU (each image is converted from where it lies)."""

    source: torch.Tensor
    idx: np.ndarray

    def __len__(self) -> int:
        return len(self.idx)

    def gather(self, device=None) -> torch.Tensor:
        """A copy of the batch's rows, (B, side*side, C_total), on ``device``."""
        rows = self.source if len(self.idx) == len(self.source) and (self.idx == np.arange(len(self.idx))).all() \
            else self.source[torch.from_numpy(np.asarray(self.idx))]
        return rows.to(device) if device is not None else rows


def as_batch(x) -> StoredBatch:
    """A (B, P, C) tensor of stored features as a batch of all its images."""
    return x if isinstance(x, StoredBatch) else StoredBatch(x, np.arange(len(x)))


def _float_blocks(batch: StoredBatch, ranges: tuple[tuple[int, int], ...]):
    """(rows, columns, float32 block) over a stored batch: one image at a time (a few when they
    are small; part of the channels when one is very wide), converted from float16 straight from
    where it is stored into a small reused buffer that stays in cache for the matrix product that
    follows (block sizes measured with ``make bench``). On a GPU: the whole batch in one block."""
    src = batch.source
    b, (p, c_total) = len(batch), src.shape[1:]
    c = sum(e - a for a, e in ranges)
    if src.is_cuda:
        per, width = b, c
    else:
        # whole images (several when small); channels are split only when one image is very wide
        width = c if p * c <= 4 * BLOCK_FLOATS else -(-c // -(-p * c // BLOCK_FLOATS))  # equal chunks
        per = max(1, BLOCK_FLOATS // (p * width))
    if src.dtype == torch.float32 and ranges == ((0, c_total),) and per >= b:
        yield slice(0, b * p), slice(0, c), batch.gather().reshape(b * p, c_total)
        return
    chunks = _column_chunks(ranges, width)
    buf = torch.empty(min(per, b) * p * width, device=src.device)
    for i0 in range(0, b, per):
        i1 = min(b, i0 + per)
        images = src[int(batch.idx[i0])].unsqueeze(0) if i1 - i0 == 1 \
            else src[torch.from_numpy(np.asarray(batch.idx[i0:i1])).to(src.device)]
        rows = slice(i0 * p, i1 * p)
        for c0, c1, parts in chunks:
            out = buf[:(i1 - i0) * p * (c1 - c0)].view((i1 - i0) * p, c1 - c0)
            for a, e, o in parts:
                out[:, o:o + e - a].copy_(images[:, :, a:e].reshape(-1, e - a))
            yield rows, slice(c0, c1), out


def _padded_columns(n: int) -> int:
    """Columns a product is computed with: a multiple of 16 (MKL's AVX2 kernels run ~1.5x faster on
    45 columns padded to 48 than on 45; measured with ``make bench``)."""
    return -(-n // 16) * 16


class _StoredProduct(torch.autograd.Function):
    """``Y = X @ W`` for stored features ``X`` (no gradient) and a weight matrix ``W`` (gradient)."""

    @staticmethod
    def forward(ctx, w, x, ranges):
        x = as_batch(x)
        ctx.batch, ctx.ranges = x, ranges
        n = w.shape[1]
        w = F.pad(w, (0, _padded_columns(n) - n))
        y = torch.empty(len(x) * x.source.shape[1], w.shape[1], device=w.device)
        for rows, cols, block in _float_blocks(x, ranges):
            if cols.start == 0:
                torch.mm(block, w[cols], out=y[rows])
            else:  # a later chunk of channels of the same rows
                y[rows].addmm_(block, w[cols])
        return y[:, :n]

    @staticmethod
    def backward(ctx, gy):
        n = gy.shape[1]
        gy = F.pad(gy, (0, _padded_columns(n) - n)).contiguous()
        gw = torch.zeros(sum(e - a for a, e in ctx.ranges), gy.shape[1], device=gy.device)
        for rows, cols, block in _float_blocks(ctx.batch, ctx.ranges):
            gw[cols].addmm_(block.t(), gy[rows])
        return gw[:, :n], None, None


class _ShiftSum(torch.autograd.Function):
    """Sum of the k*k shifted tap blocks of ``y`` (B, H, W, k*k, O) -> (B, h, w, O); its gradient
    writes each shifted window once into one zero tensor (autograd's slice backward would
    allocate a full-size zero tensor per tap)."""

    @staticmethod
    def forward(ctx, y, kernel):
        ctx.kernel, ctx.shape = kernel, y.shape
        h, w = y.shape[1] - kernel + 1, y.shape[2] - kernel + 1
        out = y[:, 0:h, 0:w, 0].clone()
        for t in range(1, kernel * kernel):
            kh, kw = divmod(t, kernel)
            out += y[:, kh:kh + h, kw:kw + w, t]
        return out

    @staticmethod
    def backward(ctx, gout):
        k = ctx.kernel
        gy = gout.new_zeros(ctx.shape)
        h, w = gout.shape[1], gout.shape[2]
        for t in range(k * k):
            kh, kw = divmod(t, k)
            gy[:, kh:kh + h, kw:kw + w, t] = gout
        return gy, None


def shift_sum(y: torch.Tensor, kernel: int, padding: int) -> torch.Tensor:
    """A convolution from its per-tap products: ``y`` (B, H, W, k*k, O) -> (B, O, H', W').

    Output (i, j) sums ``y[i + kh, j + kw, kh*k + kw]`` over the taps; zero padding of the input
    is zero padding of ``y``, since a padded position contributes nothing to any tap.
    """
    if padding:
        y = F.pad(y, (0, 0, 0, 0, padding, padding, padding, padding))
    return _ShiftSum.apply(y, kernel).permute(0, 3, 1, 2).contiguous()  # BatchNorm runs 2x faster on NCHW


# ---------------------------------------------------------------- the module


class PEM(nn.Module):
    """Stack of k x k convolutions predicting one map per head (PAPER.md section 1).

    Non-final layers: Conv(C -> C, k, pad p) -> BatchNorm -> ReLU; final layer:
    Conv(C -> 1, k, pad p) -> BatchNorm -> Sigmoid; Xavier-uniform weights, zero bias.
    ``in_mean`` / ``in_std`` standardize the input channels (identity unless set).
    ``forward`` takes features in the encoder's scale (the reference form); ``forward_stored``
    takes the cached float16 features and computes the same function by the fast engine.
    """

    def __init__(self, in_channels: int, head_seeds: list[int], n_layers: int = 1, kernel: int = 3, padding: int = 0):
        super().__init__()
        heads = len(head_seeds)
        self.kernel, self.padding = kernel, padding
        self.register_buffer("in_mean", torch.zeros(1, in_channels, 1, 1))
        self.register_buffer("in_std", torch.ones(1, in_channels, 1, 1))
        layers: list[nn.Module] = []
        c_in, groups = in_channels, 1
        for i in range(n_layers):
            last = i == n_layers - 1
            c_out = heads * (1 if last else in_channels)
            conv = nn.Conv2d(c_in, c_out, kernel, padding=padding, groups=groups)
            self._init_per_head(conv, head_seeds, layer=i)
            layers += [conv, nn.BatchNorm2d(c_out), nn.Sigmoid() if last else nn.ReLU(inplace=True)]
            c_in, groups = c_out, heads
        self.body = nn.Sequential(*layers)

    @staticmethod
    def _init_per_head(conv: nn.Conv2d, head_seeds: list[int], layer: int) -> None:
        per_head = conv.out_channels // len(head_seeds)
        with torch.no_grad():
            for h, s in enumerate(head_seeds):
                g = torch.Generator().manual_seed(s + 7919 * layer)
                nn.init.xavier_uniform_(conv.weight[h * per_head:(h + 1) * per_head], generator=g)
            conv.bias.zero_()

    def out_size(self, in_size: int) -> int:
        """Side of the output map for a ``in_size`` x ``in_size`` input."""
        layers = sum(isinstance(m, nn.Conv2d) for m in self.body)
        return in_size + layers * (2 * self.padding - self.kernel + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reference form: features (B, C, H, W) in the encoder's scale -> (B, heads, h, w)."""
        return self.body((x - self.in_mean) / self.in_std)

    def first_layer_matrix(self, storage_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The first convolution as a (C, k*k*O) matrix acting on *stored* features, and an offset.

        Stored features are ``x / scale``; the PEM sees ``(x - mean) / std``. Both affine maps
        fold into the weights: ``W' = W * scale / std`` and ``offset = (mean / std) @ W``, so
        ``stored @ W' - offset`` equals ``standardized @ W`` exactly (up to round-off).
        """
        conv = self.body[0]
        o, c, k, _ = conv.weight.shape
        wm = conv.weight.permute(1, 2, 3, 0).reshape(c, k * k * o)  # column = (kh*k + kw)*O + o
        inv_std = 1.0 / self.in_std.view(c)
        offset = (self.in_mean.view(c) * inv_std) @ wm
        return wm * (storage_scale.to(wm) * inv_std)[:, None], offset

    def forward_stored(self, x, ranges: tuple[tuple[int, int], ...], storage_scale: torch.Tensor,
                       side: int) -> torch.Tensor:
        """Fast form: a stored batch (a :class:`StoredBatch` or a (B, side*side, C_total) tensor;
        channels ``ranges`` selected) -> (B, heads, h, w)."""
        conv = self.body[0]
        k, o = self.kernel, conv.out_channels
        w, offset = self.first_layer_matrix(storage_scale)
        y = _StoredProduct.apply(w, x, ranges)
        bias = conv.bias
        if self.padding:  # subtract before padding: a padded position contributes nothing to any tap
            y = y - offset
        else:  # every output sums every tap: the offset is one constant per output channel
            bias = bias - offset.view(k * k, o).sum(0)
        y = y.reshape(len(x), side, side, k * k, o)
        out = shift_sum(y, k, self.padding) + bias.view(1, -1, 1, 1)
        return self.body[1:](out)


def bilinear_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) float64 matrix of 1-D linear interpolation as ``F.interpolate`` does it
    (align_corners=False); 2-D bilinear upsampling of P is ``A @ P @ A.T``."""
    eye = torch.eye(n_in, dtype=torch.float64).view(n_in, 1, 1, n_in)
    return F.interpolate(eye, size=(1, n_out), mode="bilinear", align_corners=False).view(n_in, n_out).t()


class UpsampledMSE:
    """Per-head mean squared error of upsampled predictions against fixed target maps, evaluated
    at the prediction's own resolution.

    With ``U = A P A^T``: ``|U - T|^2 = <P, M P M> - 2 <P, A^T T A> + |T|^2`` where ``M = A^T A``;
    M (h x h), ``A^T T A`` (one h x h per pattern) and ``|T|^2`` are precomputed, in float64.
    """

    def __init__(self, targets: np.ndarray, low: int):
        t = torch.from_numpy(np.asarray(targets, np.float64))  # (heads, S, S)
        a = bilinear_matrix(low, t.shape[-1])
        self.m = a.t() @ a
        self.t_low = a.t() @ t @ a
        self.t_sq = (t * t).sum((1, 2))
        self.pixels = t.shape[-1] * t.shape[-2]

    def to(self, device) -> "UpsampledMSE":
        self.m, self.t_low, self.t_sq = self.m.to(device), self.t_low.to(device), self.t_sq.to(device)
        return self

    def __call__(self, pred: torch.Tensor) -> torch.Tensor:
        """(B, heads, h, h) predictions -> (heads,) mean over images and pixels."""
        p = pred.double()
        quad = (p * (self.m @ p @ self.m)).sum((2, 3))
        lin = (p * self.t_low).sum((2, 3))
        return ((quad - 2 * lin + self.t_sq) / self.pixels).mean(0).float()


def upsample(pred: torch.Tensor, size: int) -> torch.Tensor:
    """PEM output to the image size (bilinear, align_corners=False, as the authors)."""
    return F.interpolate(pred, size=(size, size), mode="bilinear", align_corners=False)


# ---------------------------------------------------------------- feeding features


class FeatureStream:
    """Batches of stored features for a readout, used in place from the mapped feature file.

    The next batch's rows are read ahead by the kernel (asynchronously) while this one computes,
    and a batch's pages leave the process's memory once it is done: resident memory stays at a
    batch or two, whatever the size of the feature file.
    """

    def __init__(self, features: FeatureSet, chans: np.ndarray | None, device):
        self.features, self.device = features, torch.device(device)
        self.map = FeatureMap(features)
        self.ranges = channel_ranges(chans, features.n_channels)
        scales = features.channel_scales()
        self.scale = torch.from_numpy(scales if chans is None else scales[chans]).to(self.device)
        self.n_channels = sum(e - a for a, e in self.ranges)

    def batches(self, index_lists: list[np.ndarray]) -> Iterator[tuple[np.ndarray, StoredBatch]]:
        """Yield (indices, batch) for each index list; a CPU batch is valid until the next is requested."""
        for k, idx in enumerate(index_lists):
            if k + 1 < len(index_lists):
                self.map.prefetch(index_lists[k + 1])
            if self.device.type == "cpu":
                yield idx, StoredBatch(self.map.tensor, idx)
            else:
                yield idx, as_batch(StoredBatch(self.map.tensor, idx).gather(self.device))
            self.map.release(idx)

    def reference_batch(self, x) -> torch.Tensor:
        """A stored batch as the reference engine sees it: float32 (B, C, side, side) in the encoder's scale."""
        side = self.features.size
        rows = as_batch(x).gather(self.device)
        parts = [rows[:, :, a:e] for a, e in self.ranges]
        full = (torch.cat(parts, 2) if len(parts) > 1 else parts[0]).float() * self.scale
        return full.view(len(rows), side, side, -1).permute(0, 3, 1, 2)

    def channel_stats(self, batch: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of the selected channels over all images and pixels.

        Squares of float16 values are exact in float32; sums run in float32 within a block of a few
        images and in float64 across blocks, then the power-of-two storage scale is applied.
        """
        n = self.features.n
        s = torch.zeros(self.n_channels, dtype=torch.float64, device=self.device)
        s2 = torch.zeros_like(s)
        chunks = [np.arange(i, min(i + batch, n)) for i in range(0, n, batch)]
        for _idx, x in self.batches(chunks):
            for _rows, cols, block in _float_blocks(x, self.ranges):  # float32 within a block, float64 across
                s[cols] += block.sum(0).double()
                s2[cols] += (block * block).sum(0).double()
        count = n * self.features.size**2
        scale = self.scale.double()
        mean = s / count * scale
        var = s2 / count * scale**2 - mean**2
        std = var.clamp_min(0).sqrt().clamp_min(1e-6)
        return mean.float().view(1, -1, 1, 1), std.float().view(1, -1, 1, 1)

    def close(self) -> None:
        self.map.close()


# ---------------------------------------------------------------- training and evaluation


@dataclass
class Readout:
    """A trained PEM with what it was trained on."""

    model: PEM
    patterns: tuple[str, ...]
    channel_index: np.ndarray | None
    history: list[list[float]] = field(default_factory=list)  # per epoch, per pattern: mean loss
    key: str = ""
    train_seconds: float = 0.0
    engine: str = "fast"
    epoch_seconds: list[float] = field(default_factory=list)
    gflop: float = 0.0  # first-layer matrix-product arithmetic of the whole training (forward + gradient)


def channel_index(features: FeatureSet, taps: tuple[str, ...] | None) -> np.ndarray | None:
    """Indices of the channels of ``taps`` (None: all channels)."""
    if taps is None:
        return None
    slices = features.tap_slices()
    unknown = [t for t in taps if t not in slices]
    if unknown:
        raise ValueError(f"unknown tap(s) {unknown} for {features.encoder.label}; available: {list(slices)}")
    return np.concatenate([np.arange(slices[t].start, slices[t].stop) for t in taps])


def _fast_fits(model: PEM, batch: int, side: int) -> bool:
    """Whether the first layer's per-tap product for one batch is small enough for the fast engine."""
    conv = model.body[0]
    return batch * side * side * model.kernel**2 * conv.out_channels * 4 <= FAST_MAX_BYTES


def _predict(model: PEM, stream: FeatureStream, x: torch.Tensor, engine: str) -> torch.Tensor:
    """The PEM's low-resolution output for a stored batch, by either engine."""
    if engine == "fast" and _fast_fits(model, len(x), stream.features.size):
        return model.forward_stored(x, stream.ranges, stream.scale, stream.features.size)
    return model(stream.reference_batch(x).contiguous(memory_format=torch.channels_last))


def _first_layer_gflop(model: PEM, n_images: int, side: int) -> float:
    """Arithmetic of the first layer's matrix product over ``n_images``, forward + weight gradient."""
    conv = model.body[0]
    return 2 * 2 * n_images * side * side * conv.in_channels * model.kernel**2 * conv.out_channels / 1e9


def _fit(model: PEM, stream: FeatureStream, patterns: tuple[str, ...], spec: ReadoutSpec, image_size: int,
         seed: int, engine: str) -> tuple[list[list[float]], list[float]]:
    """SGD on the summed per-head losses (PAPER.md section 3); per-epoch mean losses and seconds."""
    label, n, device = stream.features.encoder.label, stream.features.n, stream.device
    model.train()
    loss_fn = UpsampledMSE(target_stack(patterns, image_size), model.out_size(stream.features.size)).to(device)
    target = torch.from_numpy(target_stack(patterns, image_size)).unsqueeze(0).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=spec.lr_step, gamma=spec.lr_gamma)
    gen = torch.Generator().manual_seed(seed)
    history, epoch_seconds = [], []
    for _epoch in progress(range(spec.epochs), f"readout on {label}", unit="epochs"):
        t_epoch = time.perf_counter()
        order = torch.randperm(n, generator=gen).numpy()
        index_lists = [np.sort(order[s:s + spec.batch_size]) for s in range(0, n, spec.batch_size)]
        total, seen = torch.zeros(len(patterns), dtype=torch.float64), 0
        for idx, x in stream.batches(index_lists):
            pred = _predict(model, stream, x, engine)
            if engine == "fast":
                per_head = loss_fn(pred)
            else:
                per_head = ((upsample(pred, image_size) - target) ** 2).mean(dim=(0, 2, 3))
            opt.zero_grad(set_to_none=True)
            per_head.sum().backward()
            opt.step()
            total += per_head.detach().double().cpu() * len(idx)
            seen += len(idx)
        sched.step()
        history.append((total / seen).tolist())
        epoch_seconds.append(round(time.perf_counter() - t_epoch, 3))
        if not np.isfinite(history[-1]).all():
            raise FloatingPointError(f"readout training on {label} diverged (loss {history[-1]})")
    return history, epoch_seconds


def train_readout(features: FeatureSet, patterns: tuple[str, ...], spec: ReadoutSpec, image_size: int,
                  seed: int = 0, taps: tuple[str, ...] | None = None, standardize: bool = False,
                  device: str | None = None, use_cache: bool = True, engine: str = "fast") -> Readout:
    """Train one PEM head per pattern on ``features`` (cached on disk by everything that decides it)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown readout engine {engine!r}: choose one of {', '.join(ENGINES)}")
    patterns = tuple(patterns)
    chans = channel_index(features, taps)
    key = cache.make_key({
        "features": features.key, "patterns": patterns, "spec": spec.__dict__, "image_size": image_size,
        "seed": seed, "taps": taps, "standardize": standardize, "version": READOUT_VERSION,
        **({"engine": engine} if engine != "fast" else {}),
    })
    in_ch = features.n_channels if chans is None else len(chans)
    model = PEM(in_ch, [head_seed(seed, p) for p in patterns], spec.n_layers, spec.kernel, spec.padding)
    folder = paths.cache_dir() / "readouts"
    weights_path, meta_path = folder / f"{key}.pt", folder / f"{key}.json"
    meta = cache.read_json(meta_path) if use_cache else None
    if (meta is not None and meta.get("key") == key and weights_path.exists()
            and cache.verify_file(weights_path, meta_path, meta)):
        model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        return Readout(model.eval(), patterns, chans, meta["history"], key, meta["train_seconds"], engine,
                       meta.get("epoch_seconds", []), meta.get("gflop", 0.0))

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    stream = FeatureStream(features, chans, device)
    try:
        with flush_denormals():
            if standardize:
                model.in_mean, model.in_std = stream.channel_stats()
            history, epoch_seconds = _fit(model.to(device, memory_format=torch.channels_last), stream, patterns,
                                          spec, image_size, seed, engine)
    finally:
        stream.close()
    model.cpu().eval()
    seconds = time.perf_counter() - t0
    timing.add("readout_training", seconds)
    gflop = spec.epochs * _first_layer_gflop(model, features.n, features.size)
    with cache.atomic_path(weights_path) as tmp:
        torch.save(model.state_dict(), tmp)
        checksum = cache.file_checksum(tmp)
    cache.write_json(meta_path, {"key": key, "history": history, "train_seconds": seconds, "checksum": checksum,
                                 "epoch_seconds": epoch_seconds, "gflop": gflop, "engine": engine,
                                 "encoder": features.encoder.__dict__, "patterns": patterns})
    return Readout(model, patterns, chans, history, key, seconds, engine, epoch_seconds, gflop)


@torch.no_grad()
def evaluate(readout: Readout, features: FeatureSet, image_size: int, batch_size: int = 16,
             device: str | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Per-image SPC and MAE of every head on ``features``, and the low-resolution predictions.

    Returns a DataFrame (image, pattern, spc, mae) and an array (N, patterns, h, w) of the PEM's
    raw outputs (before upsampling), small enough to keep for figures.
    """
    with timing.phase("evaluation"), flush_denormals():
        return _evaluate(readout, features, image_size, batch_size,
                         device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _evaluate(readout: Readout, features: FeatureSet, image_size: int, batch_size: int,
              device: str) -> tuple[pd.DataFrame, np.ndarray]:
    model = readout.model.to(device, memory_format=torch.channels_last).eval()
    stream = FeatureStream(features, readout.channel_index, device)
    targets = target_stack(readout.patterns, image_size)
    rows, lowres = [], []
    chunks = [np.arange(s, min(s + batch_size, features.n)) for s in range(0, features.n, batch_size)]
    try:
        for idx, x in stream.batches(chunks):
            out = _predict(model, stream, x, readout.engine)
            lowres.append(out.cpu().numpy().astype(np.float16))
            pred = upsample(out, image_size).cpu().numpy()
            for h, p in enumerate(readout.patterns):
                s, m = spc(pred[:, h], targets[h]), mae(pred[:, h], targets[h])
                rows += [{"image": int(i), "pattern": p, "spc": float(a), "mae": float(b)} for i, a, b in zip(idx, s, m)]
    finally:
        stream.close()
    model.cpu()
    return pd.DataFrame(rows), np.concatenate(lowres)

