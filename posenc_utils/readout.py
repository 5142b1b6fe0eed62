"""The position encoding module (PEM) and its training on cached features.

One PEM holds an independent head per target pattern, so the five patterns of the paper are
trained in one pass over the features. Heads share no parameter: the first layer's output
channels are partitioned by head, later layers are grouped convolutions (one group per head),
BatchNorm is per channel, and the loss is the *sum* of per-head MSEs, so each head's gradient
is that of its own loss. Each head is initialized from its own seed, derived from the run
seed and its pattern, so a multi-head run equals separate single-pattern runs (a test proves it).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import cache, paths
from .features import FeatureSet
from .metrics import mae, spc
from .profiles import ReadoutSpec
from .progress import progress
from .targets import target_stack

READOUT_VERSION = 1


def head_seed(seed: int, pattern: str) -> int:
    """The initialization seed of one pattern's head (independent of which other heads exist)."""
    return int(cache.make_key({"seed": seed, "pattern": pattern}), 16) % (2**31)


class PEM(nn.Module):
    """Stack of k x k convolutions predicting one map per head (PAPER.md section 1).

    Non-final layers: Conv(C -> C, k, pad p) -> BatchNorm -> ReLU; final layer:
    Conv(C -> 1, k, pad p) -> BatchNorm -> Sigmoid; Xavier-uniform weights, zero bias.
    ``in_mean`` / ``in_std`` standardize the input channels (identity unless set).
    """

    def __init__(self, in_channels: int, head_seeds: list[int], n_layers: int = 1, kernel: int = 3, padding: int = 0):
        super().__init__()
        heads = len(head_seeds)
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.in_mean) / self.in_std)


@dataclass
class Readout:
    """A trained PEM with what it was trained on."""

    model: PEM
    patterns: tuple[str, ...]
    channel_index: np.ndarray | None
    history: list[list[float]] = field(default_factory=list)  # per epoch, per pattern: mean loss
    key: str = ""
    train_seconds: float = 0.0


def channel_index(features: FeatureSet, taps: tuple[str, ...] | None) -> np.ndarray | None:
    """Indices of the channels of ``taps`` (None: all channels)."""
    if taps is None:
        return None
    slices = features.tap_slices()
    unknown = [t for t in taps if t not in slices]
    if unknown:
        raise ValueError(f"unknown tap(s) {unknown} for {features.encoder.label}; available: {list(slices)}")
    return np.concatenate([np.arange(slices[t].start, slices[t].stop) for t in taps])


def ram_budget_bytes() -> int:
    """How much float32 feature data may be held in memory (``POSENC_RAM_BUDGET_GB``, default 35% of RAM)."""
    if "POSENC_RAM_BUDGET_GB" in os.environ:
        return int(float(os.environ["POSENC_RAM_BUDGET_GB"]) * 1e9)
    return int(0.35 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


class FeatureBatches:
    """Batches of readout inputs as float32 channels-last tensors, on ``device``.

    When the whole (channel-selected) array fits :func:`ram_budget_bytes` it is read and
    converted from float16 once, so epochs cost only compute; otherwise each batch streams
    from the memory-mapped file.
    """

    def __init__(self, features: FeatureSet, chans: np.ndarray | None, device):
        self.features, self.device = features, device
        self.chans = None if chans is None else torch.from_numpy(chans)
        c = features.n_channels if chans is None else len(chans)
        self.in_ram = None
        if features.n * c * features.size**2 * 4 <= ram_budget_bytes():
            size = features.size  # filled chunk by chunk: no second full-size copy at any time
            self.in_ram = torch.empty((features.n, c, size, size)).contiguous(memory_format=torch.channels_last)
            for s in range(0, features.n, 64):
                idx = np.arange(s, min(s + 64, features.n))
                self.in_ram[s:s + len(idx)] = self._read(idx)

    def _read(self, idx: np.ndarray) -> torch.Tensor:
        x = self.features.read(idx)
        return x if self.chans is None else x[:, self.chans]

    def __call__(self, idx: np.ndarray) -> torch.Tensor:
        idx = np.sort(idx)
        x = self._read(idx) if self.in_ram is None else self.in_ram[torch.from_numpy(idx)]
        return x.contiguous(memory_format=torch.channels_last).to(self.device)


def _channel_stats(batches: FeatureBatches, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std over all training images and pixels (float64 accumulation)."""
    n = batches.features.n
    s = s2 = 0.0
    for start in range(0, n, batch):
        x = batches(np.arange(start, min(start + batch, n))).cpu().permute(0, 2, 3, 1)
        x = x.reshape(-1, x.shape[-1]).double()
        s, s2 = s + x.sum(0), s2 + (x * x).sum(0)
    count = n * batches.features.size**2
    mean = s / count
    std = (s2 / count - mean**2).clamp_min(0).sqrt().clamp_min(1e-6)
    return mean.float().view(1, -1, 1, 1), std.float().view(1, -1, 1, 1)


def upsample(pred: torch.Tensor, size: int) -> torch.Tensor:
    """PEM output to the image size (bilinear, align_corners=False, as the authors)."""
    return F.interpolate(pred, size=(size, size), mode="bilinear", align_corners=False)


def train_readout(features: FeatureSet, patterns: tuple[str, ...], spec: ReadoutSpec, image_size: int,
                  seed: int = 0, taps: tuple[str, ...] | None = None, standardize: bool = False,
                  device: str | None = None, use_cache: bool = True) -> Readout:
    """Train one PEM head per pattern on ``features`` (cached on disk by everything that decides it)."""
    patterns = tuple(patterns)
    chans = channel_index(features, taps)
    key = cache.make_key({
        "features": features.key, "patterns": patterns, "spec": spec.__dict__, "image_size": image_size,
        "seed": seed, "taps": taps, "standardize": standardize, "version": READOUT_VERSION,
    })
    in_ch = features.n_channels if chans is None else len(chans)
    model = PEM(in_ch, [head_seed(seed, p) for p in patterns], spec.n_layers, spec.kernel, spec.padding)
    folder = paths.cache_dir() / "readouts"
    weights_path, meta_path = folder / f"{key}.pt", folder / f"{key}.json"
    meta = cache.read_json(meta_path) if use_cache else None
    if meta is not None and meta.get("key") == key and weights_path.exists():
        model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        return Readout(model.eval(), patterns, chans, meta["history"], key, meta["train_seconds"])

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    batches = FeatureBatches(features, chans, device)
    if standardize:
        model.in_mean, model.in_std = _channel_stats(batches)
    model.to(device, memory_format=torch.channels_last).train()
    target = torch.from_numpy(target_stack(patterns, image_size)).unsqueeze(0).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=spec.lr_step, gamma=spec.lr_gamma)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for _epoch in progress(range(spec.epochs), f"readout on {features.encoder.label}"):
        order = torch.randperm(features.n, generator=gen).numpy()
        total, seen = torch.zeros(len(patterns), dtype=torch.float64), 0
        for start in range(0, features.n, spec.batch_size):
            idx = order[start:start + spec.batch_size]
            x = batches(idx)
            pred = upsample(model(x), image_size)
            per_head = ((pred - target) ** 2).mean(dim=(0, 2, 3))
            opt.zero_grad(set_to_none=True)
            per_head.sum().backward()
            opt.step()
            total += per_head.detach().double().cpu() * len(idx)
            seen += len(idx)
        sched.step()
        history.append((total / seen).tolist())
        if not np.isfinite(history[-1]).all():
            raise FloatingPointError(f"readout training on {features.encoder.label} diverged (loss {history[-1]})")
    model.cpu().eval()
    seconds = time.perf_counter() - t0
    with cache.atomic_path(weights_path) as tmp:
        torch.save(model.state_dict(), tmp)
    cache.write_json(meta_path, {"key": key, "history": history, "train_seconds": seconds,
                                 "encoder": features.encoder.__dict__, "patterns": patterns})
    return Readout(model, patterns, chans, history, key, seconds)


@torch.no_grad()
def evaluate(readout: Readout, features: FeatureSet, image_size: int, batch_size: int = 16,
             device: str | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Per-image SPC and MAE of every head on ``features``, and the low-resolution predictions.

    Returns a DataFrame (image, pattern, spc, mae) and an array (N, patterns, h, w) of the PEM's
    raw outputs (before upsampling), small enough to keep for figures.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = readout.model.to(device, memory_format=torch.channels_last).eval()
    batches = FeatureBatches(features, readout.channel_index, device)
    targets = target_stack(readout.patterns, image_size)
    rows, lowres = [], []
    for start in range(0, features.n, batch_size):
        idx = np.arange(start, min(start + batch_size, features.n))
        out = model(batches(idx))
        lowres.append(out.cpu().numpy().astype(np.float16))
        pred = upsample(out, image_size).cpu().numpy()
        for h, p in enumerate(readout.patterns):
            s, m = spc(pred[:, h], targets[h]), mae(pred[:, h], targets[h])
            rows += [{"image": int(i), "pattern": p, "spc": float(a), "mae": float(b)} for i, a, b in zip(idx, s, m)]
    model.cpu()
    return pd.DataFrame(rows), np.concatenate(lowres)
