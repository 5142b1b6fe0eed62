"""The readout's fast engine: exact rewrites of the PEM's first layer and loss, and feeding it.

Three rewrites make a readout's time its first layer's arithmetic (``readout.PEM.forward_stored``
puts them together; the tests check each against the plain form):

* the first convolution is **one matrix product** of the stored float16 features, converted a
  few images at a time into a small buffer that stays in cache, with a (C, k*k*O) weight matrix;
  a shifted sum of the product's k*k column blocks gives the convolution (zero padding included);
* the per-channel standardization and the float16 storage scale are an affine map **folded into
  that matrix** (``PEM.first_layer_matrix``), so no feature value is touched per batch;
* bilinear **upsampling is linear and separable** (``up(P) = A P A^T``), so the MSE of the
  upsampled map against a fixed target is a quadratic form evaluated at the PEM's resolution
  with small precomputed matrices (:class:`UpsampledMSE`).

Features are used in place from the mapped cache file (:class:`FeatureStream`): no batch is
copied, and resident memory does not grow with the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .features import FeatureSet, open_rows

BLOCK_FLOATS = 3 * 2**19  # float32 values converted per matrix product (~6 MB): stays in cache


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
    where it is stored into a small reused buffer that stays in cache for the matrix products that
    follow (block sizes measured with ``make bench``). On a GPU: the whole batch in one block.

    How many images a block holds follows from the stored width alone, not from the channels selected,
    so a readout of some channels sees the same rows in each block whether its channels are converted
    alone or with others' (:func:`stored_products`): its products, and so its weights, are the same bits."""
    src = batch.source
    b, (p, c_total) = len(batch), src.shape[1:]
    c = sum(e - a for a, e in ranges)
    if src.is_cuda:
        per, width = b, c
    else:
        # whole images (several when small); channels are split only when one image is very wide
        width = c if p * c <= 4 * BLOCK_FLOATS else -(-c // -(-p * c // BLOCK_FLOATS))  # equal chunks
        per = max(1, BLOCK_FLOATS // (p * (c_total if p * c_total <= 4 * BLOCK_FLOATS else width)))
    if src.dtype == torch.float32 and ranges == ((0, c_total),) and per >= b:
        yield slice(0, b * p), slice(0, c), batch.gather().reshape(b * p, c_total)
        return
    chunks = _column_chunks(ranges, width)
    buf = torch.empty(min(per, b) * p * width, device=src.device)
    for i0 in range(0, b, per):
        i1 = min(b, i0 + per)
        rows = slice(i0 * p, i1 * p)
        for c0, c1, parts in chunks:
            out = buf[:(i1 - i0) * p * (c1 - c0)].view(i1 - i0, p, c1 - c0)
            for j in range(i0, i1):  # only the selected channels are read (never whole rows of a wide array)
                image = src[int(batch.idx[j])]
                for a, e, o in parts:
                    out[j - i0, :, o:o + e - a].copy_(image[:, a:e])
            yield rows, slice(c0, c1), out.view((i1 - i0) * p, c1 - c0)


def _padded_columns(n: int) -> int:
    """Columns a product is computed with: a multiple of 16 (MKL's AVX2 kernels run ~1.5x faster on
    45 columns padded to 48 than on 45; measured with ``make bench``)."""
    return -(-n // 16) * 16


def column_pieces(union: tuple[tuple[int, int], ...], ranges: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int, int], ...]:
    """Where the stored channels ``ranges`` (each within ``union``) sit among the channels ``union`` selects:
    (first, last) column of the union's blocks and the first row of the product's weight matrix, per
    contiguous piece (pieces contiguous in both merged: a selection equal to the union is one piece)."""
    out: list[list[int]] = []
    pos = 0
    for a, e in union:
        for row, (b, f) in zip(np.cumsum([0] + [f - b for b, f in ranges]), ranges):
            lo, hi = max(a, b), min(e, f)
            if lo < hi:
                u0, r0 = pos + lo - a, int(row) + lo - b
                if out and out[-1][1] == u0 and out[-1][2] + (out[-1][1] - out[-1][0]) == r0:
                    out[-1][1] = u0 + hi - lo
                else:
                    out.append([u0, u0 + hi - lo, r0])
        pos += e - a
    if sum(u1 - u0 for u0, u1, _ in out) != sum(f - b for b, f in ranges):
        raise ValueError(f"channels {ranges} are not all among {union}")
    return tuple(tuple(piece) for piece in out)


def _operand(block: torch.Tensor, cols: slice, pieces, scratch: list) -> tuple[torch.Tensor, slice] | None:
    """One product's part of a block: its channels among the block's columns ``cols`` as one (rows, c) matrix,
    and the rows of its weight matrix they meet; None where it has none there. A product whose channels lie
    apart in the block gets them side by side in a scratch buffer (``scratch``: kept for the next block), so
    it is one matrix product over all of them, as it is when its channels are converted alone."""
    parts = []
    for u0, u1, r0 in pieces:
        a, e = max(u0, cols.start), min(u1, cols.stop)
        if a < e:
            parts.append((slice(a - cols.start, e - cols.start), slice(r0 + a - u0, r0 + e - u0)))
    if not parts:
        return None
    rows = slice(parts[0][1].start, parts[-1][1].stop)
    if len(parts) == 1:
        return block[:, parts[0][0]], rows
    need = block.shape[0] * (rows.stop - rows.start)
    if not scratch or scratch[0].numel() < need:
        scratch[:] = [block.new_empty(need)]
    out = scratch[0][:need].view(block.shape[0], rows.stop - rows.start)
    at = 0
    for bc, wr in parts:
        out[:, at:at + wr.stop - wr.start].copy_(block[:, bc])
        at += wr.stop - wr.start
    return out, rows


class _StoredProducts(torch.autograd.Function):
    """``Y_j = X[:, S_j] @ W_j`` for stored features ``X`` (no gradient) and weight matrices ``W_j``
    (gradients), each over its own channels ``S_j`` of the ones ``ranges`` selects: every block of ``X``
    is converted once for all the products (the readouts trained together on one feature set)."""

    @staticmethod
    def forward(ctx, x, ranges, pieces, *ws):
        x = as_batch(x)
        ctx.batch, ctx.ranges, ctx.pieces, ctx.widths = x, ranges, pieces, [w.shape[1] for w in ws]
        ws = [F.pad(w, (0, _padded_columns(n) - n)) for w, n in zip(ws, ctx.widths)]
        n_rows = len(x) * x.source.shape[1]
        ys = [torch.empty(n_rows, w.shape[1], device=w.device) for w in ws]
        started: set[int] = set()  # the products that have a first part in the current rows
        scratch: list = []
        for rows, cols, block in _float_blocks(x, ranges):
            if cols.start == 0:
                started.clear()
            for j, (y, w) in enumerate(zip(ys, ws)):
                part = _operand(block, cols, pieces[j], scratch)
                if part is None:
                    continue
                if j in started:  # a later chunk of channels of the same rows
                    y[rows].addmm_(part[0], w[part[1]])
                else:
                    torch.mm(part[0], w[part[1]], out=y[rows])
                    started.add(j)
        return tuple(y[:, :n] for y, n in zip(ys, ctx.widths))

    @staticmethod
    def backward(ctx, *gys):
        gys = [F.pad(gy, (0, _padded_columns(n) - n)).contiguous() for gy, n in zip(gys, ctx.widths)]
        gws = [torch.zeros(sum(u1 - u0 for u0, u1, _ in p), gy.shape[1], device=gy.device)
               for p, gy in zip(ctx.pieces, gys)]
        scratch: list = []
        for rows, cols, block in _float_blocks(ctx.batch, ctx.ranges):
            for gw, gy, pieces in zip(gws, gys, ctx.pieces):
                part = _operand(block, cols, pieces, scratch)
                if part is not None:
                    gw[part[1]].addmm_(part[0].t(), gy[rows])
        return (None, None, None, *(gw[:, :n] for gw, n in zip(gws, ctx.widths)))


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
        self.map = open_rows(features)
        self.ranges = channel_ranges(chans, features.n_channels)
        scales = features.channel_scales()
        self.scale = torch.from_numpy(scales if chans is None else scales[chans]).to(self.device)
        self.n_channels = sum(e - a for a, e in self.ranges)

    def batches(self, index_lists: list[np.ndarray]) -> Iterator[tuple[np.ndarray, StoredBatch]]:
        """Yield (indices, batch) for each index list; a CPU batch is valid until the next is requested."""
        for k, idx in enumerate(index_lists):
            if k + 1 < len(index_lists):
                self.map.prefetch(index_lists[k + 1])
            batch = StoredBatch(*self.map.stored(idx))
            if batch.source.device.type == self.device.type:
                yield idx, batch
            else:
                yield idx, as_batch(batch.gather(self.device))
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


def stored_product(w: torch.Tensor, x, ranges: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """``X @ w`` for a stored batch ``x`` (its channels ``ranges``), differentiable in ``w``."""
    return stored_products([w], x, ranges, [ranges])[0]


def stored_products(ws: list[torch.Tensor], x, union: tuple[tuple[int, int], ...],
                    ranges: list[tuple[tuple[int, int], ...]]) -> tuple[torch.Tensor, ...]:
    """``X[:, ranges_j] @ ws[j]`` for each j, from one pass over the stored batch ``x`` that converts the channels
    ``union`` (which holds every ``ranges_j``); differentiable in each weight matrix. Each product is the one it
    would be alone, to the bit: the same rows of the same numbers times the same matrix (put side by side in one
    wider product, they would differ by round-off, and measured they are no faster: 296 against 301 s)."""
    return _StoredProducts.apply(x, union, tuple(column_pieces(union, r) for r in ranges), *ws)
