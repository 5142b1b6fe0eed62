"""The position encoding module (PEM) and its training on cached features.

One PEM holds an independent head per target pattern, so the five patterns of the paper are
trained in one pass over the features. Heads share no parameter: the first layer's output
channels are partitioned by head, later layers are grouped convolutions (one group per head),
BatchNorm is per channel, and the loss is the *sum* of per-head MSEs, so each head's gradient
is that of its own loss. Each head is initialized from its own seed, derived from the run
seed and its pattern, so a multi-head run equals separate single-pattern runs (a test proves it).

Two engines compute the same function: ``reference``, the PEM as written in PAPER.md section 1
(standardize the features, convolve, upsample to the image size, mean squared error), and
``fast`` (the default), the exact rewrites of :mod:`posenc_utils.engine`, whose time is the
first layer's arithmetic. Tests check outputs, losses and gradients of the two against each
other for every kernel size and padding the study uses.
"""
from __future__ import annotations

import time
from pathlib import Path
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import cache, devices, paths, timing
from .engine import FeatureStream, UpsampledMSE, shift_sum, stored_product, upsample
from .features import FeatureSet
from .measures import evaluate_probe, probe_measures
from .profiles import ReadoutSpec
from .progress import progress
from .targets import target_stack

READOUT_VERSION = 2  # 2: fast engine (same function, other round-off)
ENGINES = ("fast", "reference")
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
    ``in_mean`` / ``in_std`` standardize the input channels (identity unless set). Where the PEM
    pads (``padding`` > 0), it pads the features it reads with their value **zero** and standardizes
    after padding, so the border stays what padding means (a zero feature) whatever the
    conditioning: standardization is then an affine reparametrization of the first layer, borders
    included (a test proves it for every padding the study uses). Padding the standardized features
    with zero instead would pad the raw ones with their training-set mean.
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
        return self.body[1:](first)

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
        channels ``ranges`` selected) -> (B, heads, h, w), by :mod:`posenc_utils.engine`."""
        conv = self.body[0]
        k, o = self.kernel, conv.out_channels
        w, offset = self.first_layer_matrix(storage_scale)
        y = stored_product(w, x, ranges)
        # every output sums every tap, padded ones included (they hold the standardized zero): the
        # offset is one constant per output channel, and the padded product is zero
        bias = conv.bias - offset.view(k * k, o).sum(0)
        y = y.reshape(len(x), side, side, k * k, o)
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
        "features": features.key, "patterns": patterns, "spec": cache.key_fields(spec), "image_size": image_size,
        "seed": seed, "taps": taps, "standardize": standardize, "version": READOUT_VERSION,
        **({"engine": engine} if engine != "fast" else {}),
        # a padded PEM on standardized features pads them with their zero (before: with their mean)
        **({"pads_with": "feature zero"} if standardize and spec.padding else {}),
    })
    in_ch = features.n_channels if chans is None else len(chans)
    model = PEM(in_ch, [head_seed(seed, p) for p in patterns], spec.n_layers, spec.kernel, spec.padding, spec.width)
    folder = paths.cache_dir() / "readouts"
    weights_path, meta_path = folder / f"{key}.pt", folder / f"{key}.json"

    def cached() -> Readout | None:
        meta = cache.read_file_entry(weights_path, meta_path, key)
        if meta is None:
            return None
        model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        return Readout(model.eval(), patterns, chans, meta["history"], key, meta["train_seconds"], engine,
                       meta.get("epoch_seconds", []), meta.get("gflop", 0.0))

    def fit() -> Readout:  # holding the entry's lock
        dev = device or devices.device()
        t0 = time.perf_counter()
        stream = FeatureStream(features, chans, dev)
        try:
            if standardize:
                model.in_mean, model.in_std = stream.channel_stats()
            history, epoch_seconds = _fit(model.to(dev, memory_format=torch.channels_last), stream, patterns,
                                          spec, image_size, seed, engine)
        finally:
            stream.close()
        model.cpu().eval()
        seconds = time.perf_counter() - t0
        timing.add("readout_training", seconds)
        gflop = spec.epochs * _first_layer_gflop(model, features.n, features.size)
        cache.write_file_entry(weights_path, meta_path, {
            "key": key, "history": history, "train_seconds": seconds, "epoch_seconds": epoch_seconds, "gflop": gflop,
            "engine": engine, "encoder": features.encoder.__dict__, "patterns": patterns,
        }, lambda tmp: torch.save(model.state_dict(), tmp))
        return Readout(model, patterns, chans, history, key, seconds, engine, epoch_seconds, gflop)

    if not use_cache:
        with cache.entry_lock(weights_path):
            return fit()
    return cache.computed_once(weights_path, cached, fit)


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

