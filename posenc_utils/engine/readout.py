"""The position encoding module (PEM) and its training on cached features.

One PEM holds an independent head per target pattern, so the five patterns of the paper are
trained in one pass over the features. Heads share no parameter: the first layer's output
channels are partitioned by head, later layers are grouped convolutions (one group per head),
BatchNorm is per channel, and the loss is the *sum* of per-head MSEs, so each head's gradient
is that of its own loss. Each head is initialized from its own seed, derived from the run
seed and its pattern, so a multi-head run equals separate single-pattern runs (a test proves it).

Two engines compute the same function: ``reference``, the PEM as written in PAPER.md section 1
(standardize the features, convolve, upsample to the image size, mean squared error), and
``fast`` (the default), the exact rewrites of :mod:`posenc_utils.engine.fast_readout`, whose time is the
first layer's arithmetic. Tests check outputs, losses and gradients of the two against each
other for every kernel size and padding the study uses.
"""
from __future__ import annotations

import contextlib
import functools
import time
from pathlib import Path
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..primitives import cache, devices, paths, timing
from .fast_readout import FeatureStream, UpsampledMSE, channel_ranges, shift_sum, stored_product, stored_products, upsample
from .features import FeatureSet
from .measures import evaluate_probe, probe_measures
from ..primitives.progress import progress
from ..primitives.specs import ReadoutSpec
from ..primitives.targets import constant_baseline, target_stack

READOUT_VERSION = 2  # 2: fast engine (same function, other round-off)
ENGINES = ("fast", "reference")
# How the features are scaled before the PEM (an affine map per channel, folded into its first layer, so no
# scaling changes what a readout can express, only how SGD conditions it): "none" (raw, as the authors' code),
# "channel" (each channel to zero mean and unit variance on the training images) or "tap" (each channel centred,
# and every channel of a tap divided by the tap's pooled standard deviation). Per-channel scaling lifts a
# channel that barely varies on the training images to unit variance: on test images from elsewhere it then
# reaches thousands of standard deviations and saturates the sigmoid (VGG16 (HED) without padding predicted a
# constant on a quarter of the test photos); per-tap scaling keeps the channels' relative sizes within a tap, as
# the raw features have them, and still brings every tap to unit scale (random-init ResNet152's reach 1e8).
SCALINGS = ("none", "channel", "tap")
# A head has failed to train when its last epoch's mean training loss (the MSE it optimizes) is more than this
# share above the squared error of the best constant prediction, which its bias alone reaches: it did not find
# even that. A head with nothing to find ends near the constant (PosENet without padding: 0.999-1.008 of it; VGG16
# (HED) without padding: up to 1.04), so a tolerance keeps "found nothing" apart from "failed".
FAILED_TOLERANCE = 0.10
FAST_MAX_BYTES = 2**29  # a first-layer product larger than this per batch uses the convolution instead


def head_seed(seed: int, pattern: str) -> int:
    """The initialization seed of one pattern's head (independent of which other heads exist)."""
    return int(cache.make_key({"seed": seed, "pattern": pattern}), 16) % (2**31)


# ---------------------------------------------------------------- the first layer as a matrix product


class PEM(nn.Module):
    """Stack of k x k convolutions predicting one map per head (PAPER.md section 1).

    Non-final layers: Conv(C -> C, k, pad p) -> BatchNorm -> ReLU (C -> ``width`` -> ``width`` ... when
    ``width`` is set: a narrower readout where C -> C cannot be afforded); final layer:
    Conv(C -> 1, k, pad p) -> BatchNorm -> Sigmoid; Xavier-uniform weights, zero bias.
    ``in_mean`` / ``in_std`` scale the input channels (identity unless set; see :data:`SCALINGS`). Where the
    PEM pads (``padding`` > 0), it pads the features it reads with their value **zero** and scales after
    padding, so the border stays what padding means (a zero feature) whatever the conditioning: the scaling
    is then an affine reparametrization of the first layer, borders included (a test proves it for every
    padding the study uses). Padding the scaled features with zero instead would pad the raw ones with their
    training-set mean.
    ``forward`` takes features in the encoder's scale (the reference form); ``forward_stored``
    takes the cached float16 features and computes the same function by the fast engine.
    """

    def __init__(self, in_channels: int, head_seeds: list[int], n_layers: int = 1, kernel: int = 3, padding: int = 0,
                 width: int | None = None):
        super().__init__()
        heads = len(head_seeds)
        self.kernel, self.padding = kernel, padding
        self.register_buffer("in_mean", torch.zeros(1, in_channels, 1, 1))
        self.register_buffer("in_std", torch.ones(1, in_channels, 1, 1))
        layers: list[nn.Module] = []
        c_in, groups = in_channels, 1
        for i in range(n_layers):
            last = i == n_layers - 1
            c_out = heads * (1 if last else (width or in_channels))
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
        """Reference form: features (B, C, H, W) in the encoder's scale -> (B, heads, h, w): zero-pad
        the features, standardize, convolve (no further padding), then the rest of the stack."""
        conv, p = self.body[0], self.padding
        x = F.pad(x, (p, p, p, p)) if p else x
        first = F.conv2d((x - self.in_mean) / self.in_std, conv.weight, conv.bias)
        return self.body[1:](first.contiguous())  # BatchNorm of a few channels: 4x faster on NCHW than channels-last

    def first_layer_matrix(self, storage_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The first convolution as a (C, k*k*O) matrix acting on *stored* features, and an offset.

        Stored features are ``x / scale``; the PEM sees ``(x - mean) / std``. Both affine maps
        fold into the weights: ``W' = W * scale / std`` and ``offset = (mean / std) @ W`` (one per
        tap and output), so ``stored @ W' - offset`` equals ``standardized @ W`` exactly (up to
        round-off). A padded position holds the standardized zero, ``-mean / std``, so it too
        contributes ``-offset`` to its tap: every output subtracts every tap's offset.
        """
        conv = self.body[0]
        o, c, k, _ = conv.weight.shape
        wm = conv.weight.permute(1, 2, 3, 0).reshape(c, k * k * o)  # column = (kh*k + kw)*O + o
        inv_std = 1.0 / self.in_std.view(c)
        offset = (self.in_mean.view(c) * inv_std) @ wm
        return wm * (storage_scale.to(wm) * inv_std)[:, None], offset

    def forward_stored(self, x, ranges: tuple[tuple[int, int], ...], storage_scale: torch.Tensor,
                       side: int) -> torch.Tensor:
        """Fast form: a stored batch (an ``engine.StoredBatch`` or a (B, side*side, C_total) tensor;
        channels ``ranges`` selected) -> (B, heads, h, w), by :mod:`posenc_utils.engine.fast_readout`."""
        w, offset = self.first_layer_matrix(storage_scale)
        return self.from_product(stored_product(w, x, ranges), offset, len(x), side)

    def from_product(self, y: torch.Tensor, offset: torch.Tensor, batch: int, side: int) -> torch.Tensor:
        """The rest of the fast form: the first layer's product ``y`` (B*side*side, k*k*O) with its
        offset (:meth:`first_layer_matrix`) -> (B, heads, h, w)."""
        conv = self.body[0]
        k, o = self.kernel, conv.out_channels
        # every output sums every tap, padded ones included (they hold the standardized zero): the
        # offset is one constant per output channel, and the padded product is zero
        bias = conv.bias - offset.view(k * k, o).sum(0)
        y = y.reshape(batch, side, side, k * k, o)
        out = shift_sum(y, k, self.padding) + bias.view(1, -1, 1, 1)
        return self.body[1:](out)


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
    trained_with: tuple[str, ...] = ()  # the keys of the readouts trained in the same passes over the features

    def final_losses(self) -> dict[str, float]:
        """Each head's mean training loss (MSE) over its last epoch."""
        return dict(zip(self.patterns, self.history[-1])) if self.history else {}

    def failed_heads(self, image_size: int) -> dict[str, bool]:
        """Whether each head failed to train (:data:`FAILED_TOLERANCE`): its last epoch's training loss above the
        best constant's squared error at ``image_size`` by more than the tolerance."""
        return {p: training_failed(loss, p, image_size) for p, loss in self.final_losses().items()}


def training_failed(loss: float, pattern: str, image_size: int) -> bool:
    """A final training loss that does not reach the best constant prediction's (within :data:`FAILED_TOLERANCE`),
    or is not a number."""
    return not loss <= constant_baseline(pattern, image_size)[0] * (1 + FAILED_TOLERANCE)


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


def _uses_product(model: PEM, n_stored: int, batch: int, side: int) -> bool:
    """Whether the fast engine computes the first layer as its matrix product: where the product fits
    (``FAST_MAX_BYTES``) and pays. On features stored narrower than the product's k*k*O columns (PosENet's
    3 channels against 45) the product holds more numbers than the features it is made of, and the
    convolution of the gathered batch is faster (PosENet, PEM padding 1: 4.8 against 7.0 ms per SGD step)."""
    return _fast_fits(model, batch, side) and n_stored > model.kernel**2 * model.body[0].out_channels


def _predict(model: PEM, stream: FeatureStream, x, engine: str) -> torch.Tensor:
    """The PEM's low-resolution output for a stored batch, by either engine."""
    if engine == "fast" and _uses_product(model, stream.features.n_channels, len(x), stream.features.size):
        return model.forward_stored(x, stream.ranges, stream.scale, stream.features.size)
    return model(stream.reference_batch(x).contiguous(memory_format=torch.channels_last))


def _first_layer_gflop(model: PEM, n_images: int, side: int) -> float:
    """Arithmetic of the first layer's matrix product over ``n_images``, forward + weight gradient."""
    conv = model.body[0]
    return 2 * 2 * n_images * side * side * conv.in_channels * model.kernel**2 * conv.out_channels / 1e9


@dataclass(frozen=True)
class ReadoutJob:
    """One readout to train: what :func:`train_readout` takes, and so what its cache entry is keyed by."""

    features: FeatureSet
    patterns: tuple[str, ...]
    spec: ReadoutSpec
    image_size: int
    seed: int = 0
    taps: tuple[str, ...] | None = None
    scaling: str = "none"  # one of SCALINGS
    engine: str = "fast"

    def __post_init__(self) -> None:
        if self.scaling not in SCALINGS:
            raise ValueError(f"unknown feature scaling {self.scaling!r}: choose one of {', '.join(SCALINGS)}")
        if self.engine not in ENGINES:
            raise ValueError(f"unknown readout engine {self.engine!r}: choose one of {', '.join(ENGINES)}")

    def channels(self) -> np.ndarray | None:
        return channel_index(self.features, self.taps)

    def key(self) -> str:
        """Everything that decides the trained weights (how it was trained, alone or with others, does not)."""
        return cache.make_key({
            "features": self.features.key, "patterns": tuple(self.patterns), "spec": cache.key_fields(self.spec),
            "image_size": self.image_size, "seed": self.seed, "taps": self.taps, "scaling": self.scaling,
            "version": READOUT_VERSION, **({"engine": self.engine} if self.engine != "fast" else {}),
            # a padded PEM on scaled features pads them with their zero (before: with their mean)
            **({"pads_with": "feature zero"} if self.scaling != "none" and self.spec.padding else {}),
        })

    def paths(self) -> tuple[Path, Path]:
        folder = paths.cache_dir() / "readouts"
        key = self.key()
        return folder / f"{key}.pt", folder / f"{key}.json"

    def new_model(self) -> PEM:
        """The PEM at its initial weights (each head from its own seed)."""
        chans = self.channels()
        in_ch = self.features.n_channels if chans is None else len(chans)
        s = self.spec
        return PEM(in_ch, [head_seed(self.seed, p) for p in self.patterns], s.n_layers, s.kernel, s.padding, s.width)

    def narrow(self, model: PEM) -> bool:
        """Features stored narrower than the first layer's product (PosENet's 3 channels): a readout whose steps
        are all overhead. It trains on one thread (as fast as on two, for steps this small), so two of them train
        side by side (:func:`train_readouts`) and a readout is the same bits either way."""
        return self.engine == "fast" and self.features.n_channels <= model.kernel**2 * model.body[0].out_channels

    def passes(self, model: PEM) -> tuple | None:
        """What the readouts trained in one pass over their features have in common: the features, the seed and
        the batch size (so the same batches in the same order); None for one trained alone (the reference
        engine, or a first layer computed as a convolution)."""
        side = self.features.size
        if self.engine != "fast" or not _uses_product(model, self.features.n_channels, self.spec.batch_size, side):
            return None
        return self.features.key, str(self.features.path), self.seed, self.spec.batch_size


def train_readout(features: FeatureSet, patterns: tuple[str, ...], spec: ReadoutSpec, image_size: int,
                  seed: int = 0, taps: tuple[str, ...] | None = None, scaling: str = "none",
                  device: str | None = None, use_cache: bool = True, engine: str = "fast") -> Readout:
    """Train one PEM head per pattern on ``features`` (cached on disk by everything that decides it)."""
    job = ReadoutJob(features, tuple(patterns), spec, image_size, seed, taps, scaling, engine)
    return train_readouts([job], device, use_cache)[0]


def train_readouts(jobs: list[ReadoutJob], device: str | None = None, use_cache: bool = True) -> list[Readout]:
    """Every job's readout, in order: from the cache where it is there; the others trained, those that share
    features, seed and batch size (:meth:`ReadoutJob.passes`) in one pass over the features, each block of
    features converted once for all of them (:func:`fast_readout.stored_products`). Trained together or alone, a
    readout is the same bits (a test proves it); each is written to the cache on its own, under its own lock
    (taken in a fixed order, so two runs wanting overlapping sets wait for each other, never deadlock)."""
    unique = list({job.key(): job for job in jobs}.values())
    found: dict[str, Readout | None] = {j.key(): (_cached(j) if use_cache else None) for j in unique}
    groups: dict = {}
    for job in (j for j in unique if found[j.key()] is None):
        groups.setdefault(job.passes(job.new_model()) or ("alone", job.key()), []).append(job)

    def train(members: list[ReadoutJob], book: bool = True) -> None:
        with contextlib.ExitStack() as locks:
            for job in sorted(members, key=lambda j: j.key()):
                locks.enter_context(cache.entry_lock(job.paths()[0]))
            if use_cache:  # another run may have trained some of them while this one waited for their locks
                found.update({j.key(): _cached(j) for j in members})
            left = [j for j in members if found[j.key()] is None]
            for job, trained in zip(left, _fit_and_store(left, device, book)):
                found[job.key()] = trained

    narrow = [m for m in groups.values() if len(m) == 1 and m[0].narrow(m[0].new_model())]
    for members in groups.values():
        if not any(members is m for m in narrow):
            train(members)
    if narrow:
        t0 = time.perf_counter()
        devices.side_by_side([functools.partial(train, m, False) for m in narrow])
        timing.add("readout_training", time.perf_counter() - t0)  # once: they ran side by side
    return [found[j.key()] for j in jobs]


def _cached(job: ReadoutJob) -> Readout | None:
    weights_path, meta_path = job.paths()
    meta = cache.read_file_entry(weights_path, meta_path, job.key())
    if meta is None:
        return None
    model = job.new_model()
    model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    return Readout(model.eval(), tuple(job.patterns), job.channels(), meta["history"], job.key(), meta["train_seconds"],
                   job.engine, meta.get("epoch_seconds", []), meta.get("gflop", 0.0), tuple(meta.get("trained_with", ())))


def pooled_by_tap(std: torch.Tensor, features: FeatureSet, chans: np.ndarray | None) -> torch.Tensor:
    """Per-channel standard deviations (1, C, 1, 1) of the channels ``chans`` replaced, within each tap, by the
    tap's pooled one: the root mean square over the tap's channels (its channels' mean variance)."""
    sel = np.arange(features.n_channels) if chans is None else np.asarray(chans)
    flat = std.reshape(-1).double()
    out = flat.clone()
    for part in features.tap_slices().values():
        inside = torch.from_numpy((sel >= part.start) & (sel < part.stop))
        if inside.any():
            out[inside] = flat[inside].square().mean().sqrt()
    return out.clamp_min(1e-6).float().view(std.shape)


def _union(chans: list[np.ndarray | None]) -> np.ndarray | None:
    """The channels any of the readouts reads (None: all)."""
    if any(c is None for c in chans):
        return None
    return np.unique(np.concatenate(chans))


def _fit_and_store(jobs: list[ReadoutJob], device: str | None, book: bool = True) -> list[Readout]:
    """Train ``jobs`` (one feature set, one seed and batch size) in one pass and write each to the cache
    (holding their locks). Each is booked its share of the time by its first layer's arithmetic; ``book``:
    add the time to the phase readout_training (False where the caller books it)."""
    if not jobs:
        return []
    dev = device or devices.device()
    features, t0 = jobs[0].features, time.perf_counter()
    models, chans = [j.new_model() for j in jobs], [j.channels() for j in jobs]
    stream = FeatureStream(features, _union(chans), dev)
    try:
        stats: dict = {}
        for job, model, c in zip(jobs, models, chans):
            if job.scaling != "none":  # over the readout's own channels (as alone: the same numbers)
                which = None if c is None else tuple(c)
                if which not in stats:
                    own = FeatureStream(features, c, dev)
                    try:
                        stats[which] = own.channel_stats()
                    finally:
                        own.close()
                mean, std = stats[which]
                model.in_mean, model.in_std = mean, (pooled_by_tap(std, features, c) if job.scaling == "tap" else std)
        histories, epoch_seconds = _fit(jobs, [m.to(dev, memory_format=torch.channels_last) for m in models],
                                        chans, stream)
    finally:
        stream.close()
    seconds = time.perf_counter() - t0
    if book:
        timing.add("readout_training", seconds)
    per_epoch = [_first_layer_gflop(m, features.n, features.size) for m in models]
    total = sum(j.spec.epochs * g for j, g in zip(jobs, per_epoch)) or 1.0
    out = []
    for i, (job, model) in enumerate(zip(jobs, models)):
        model.cpu().eval()
        key, gflop = job.key(), job.spec.epochs * per_epoch[i]
        share = gflop / total if total else 1 / len(jobs)
        own_epochs = [round(s * per_epoch[i] / (sum(g for j, g in zip(jobs, per_epoch) if e < j.spec.epochs) or 1.0), 3)
                      for e, s in enumerate(epoch_seconds[:job.spec.epochs])]
        others = tuple(j.key() for j in jobs if j is not job)
        weights_path, meta_path = job.paths()
        cache.write_file_entry(weights_path, meta_path, {
            "key": key, "history": histories[i], "train_seconds": seconds * share, "epoch_seconds": own_epochs,
            "gflop": gflop, "engine": job.engine, "encoder": features.encoder.__dict__, "patterns": job.patterns,
            "trained_with": others,
        }, lambda tmp, m=model: torch.save(m.state_dict(), tmp))
        out.append(Readout(model, tuple(job.patterns), chans[i], histories[i], key, seconds * share, job.engine,
                           own_epochs, gflop, others))
    return out


def _fit(jobs: list[ReadoutJob], models: list[PEM], chans: list[np.ndarray | None],
         stream: FeatureStream) -> tuple[list[list[list[float]]], list[float]]:
    """SGD on each readout's summed per-head losses (PAPER.md section 3), all readouts on the same batches:
    per readout its per-epoch mean losses, and the seconds of each epoch."""
    features, device = stream.features, stream.device
    n, side, label = features.n, features.size, features.encoder.label
    ranges = [channel_ranges(c, features.n_channels) for c in chans]
    all_scales = torch.from_numpy(features.channel_scales()).to(device)
    scales = [all_scales if c is None else all_scales[torch.from_numpy(c)] for c in chans]
    product = [j.engine == "fast" and _uses_product(m, features.n_channels, j.spec.batch_size, side)
               for j, m in zip(jobs, models)]
    if len(jobs) > 1 and not all(product):
        raise ValueError("readouts trained together all compute their first layer as the engine's product")
    losses, targets, opts, scheds = [], [], [], []
    for job, model in zip(jobs, models):
        model.train()
        losses.append(UpsampledMSE(target_stack(job.patterns, job.image_size), model.out_size(side)).to(device))
        targets.append(torch.from_numpy(target_stack(job.patterns, job.image_size)).unsqueeze(0).to(device))
        s = job.spec
        opts.append(torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay,
                                    foreach=True))  # one step for all its tensors: the same numbers, fewer calls
        scheds.append(torch.optim.lr_scheduler.StepLR(opts[-1], step_size=s.lr_step, gamma=s.lr_gamma))
    gen = torch.Generator().manual_seed(jobs[0].seed)
    batch = jobs[0].spec.batch_size
    histories: list[list[list[float]]] = [[] for _ in jobs]
    epoch_seconds = []
    what = label if len(jobs) == 1 else f"{len(jobs)} readouts"
    for epoch in progress(range(max(j.spec.epochs for j in jobs)), f"readout on {what}", unit="epochs"):
        t_epoch = time.perf_counter()
        order = torch.randperm(n, generator=gen).numpy()
        index_lists = [np.sort(order[s:s + batch]) for s in range(0, n, batch)]
        active = [i for i, j in enumerate(jobs) if epoch < j.spec.epochs]
        totals = {i: torch.zeros(len(jobs[i].patterns), dtype=torch.float64) for i in active}
        seen = 0
        for idx, x in stream.batches(index_lists):
            if product[active[0]]:
                mats = [models[i].first_layer_matrix(scales[i]) for i in active]
                ys = stored_products([w for w, _ in mats], x, stream.ranges, [ranges[i] for i in active])
                preds = [models[i].from_product(y, off, len(idx), side) for i, y, (_, off) in zip(active, ys, mats)]
            else:
                preds = [_predict(models[i], stream, x, jobs[i].engine) for i in active]
            per_head, loss = {}, 0.0
            for i, pred in zip(active, preds):
                if jobs[i].engine == "fast":
                    per_head[i] = losses[i](pred)
                else:
                    per_head[i] = ((upsample(pred, jobs[i].image_size) - targets[i]) ** 2).mean(dim=(0, 2, 3))
                loss = loss + per_head[i].sum()
            for i in active:
                opts[i].zero_grad(set_to_none=True)
            loss.backward()
            for i in active:
                opts[i].step()
                totals[i] += per_head[i].detach().double().cpu() * len(idx)
            seen += len(idx)
        for i in active:
            scheds[i].step()
            histories[i].append((totals[i] / seen).tolist())
            if not np.isfinite(histories[i][-1]).all():
                raise FloatingPointError(f"readout training on {label} diverged (loss {histories[i][-1]})")
        epoch_seconds.append(round(time.perf_counter() - t_epoch, 3))
    return histories, epoch_seconds


EVALUATION_VERSION = 1


@torch.no_grad()
def evaluate(readout: Readout, features: FeatureSet, image_size: int, batch_size: int = 16,
             device: str | None = None, use_cache: bool = True) -> tuple[pd.DataFrame, np.ndarray]:
    """Per-image probe measures (:func:`measures.probe_measures`: SPC, MAE) of every head on ``features``,
    and the low-resolution predictions.

    Returns a DataFrame (image, pattern, one column per probe measure) and an array (N, patterns, h, w)
    of the PEM's raw outputs (before upsampling), small enough to keep for figures. Cached by the
    readout's and the features' keys, so a rerun of a notebook computes no metric again; an entry that
    lacks a probe measure registered after it was written is computed again.
    """
    key = cache.make_key({"readout": readout.key, "features": features.key, "image_size": image_size,
                          "batch_size": batch_size, "version": EVALUATION_VERSION})
    folder = paths.cache_dir() / "evaluations"
    data_path, meta_path = folder / f"{key}.npz", folder / f"{key}.json"
    use_cache = use_cache and bool(readout.key)

    def cached() -> tuple[pd.DataFrame, np.ndarray] | None:
        if cache.read_file_entry(data_path, meta_path, key) is None:
            return None
        names = [m.name for m in probe_measures()]
        with np.load(data_path) as z:
            if any(name not in z for name in names):
                return None
            df = pd.DataFrame({"image": z["image"], "pattern": z["pattern"].astype(str), **{n: z[n] for n in names}})
            return df, z["lowres"]

    def compute() -> tuple[pd.DataFrame, np.ndarray]:
        with timing.phase("evaluation"):
            df, lowres = _evaluate(readout, features, image_size, batch_size, device or devices.device())
        if use_cache:
            def write(tmp: Path) -> None:
                with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a path
                    np.savez(f, image=df.image.to_numpy(), pattern=df.pattern.to_numpy(dtype=str),
                             **{m.name: df[m.name].to_numpy() for m in probe_measures()}, lowres=lowres)

            cache.write_file_entry(data_path, meta_path, {"key": key, "readout": readout.key,
                                                          "features": features.key}, write)
        return df, lowres

    return cache.computed_once(data_path, cached, compute) if use_cache else compute()


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
                values = evaluate_probe(pred[:, h], targets[h])
                rows += [{"image": int(i), "pattern": p, **{name: float(v[j]) for name, v in values.items()}}
                         for j, i in enumerate(idx)]
    finally:
        stream.close()
    model.cpu()
    return pd.DataFrame(rows), np.concatenate(lowres)

