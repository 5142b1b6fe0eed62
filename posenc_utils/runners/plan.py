"""What a run will do and need, said before it starts: images per set, encoders, where each encoder's features live
(stored, held in device memory or recomputed) and why, disk, host and GPU memory, a rough time per notebook.

A paper-scale run takes hours and tens of gigabytes; :func:`make_plan` states both from the profile and the data it
finds (image folders are listed, not read; encoders are built shape-only and their arithmetic counted), and names
what would stop the run (a store the disk cannot hold, features to hold that memory cannot, an image size an
encoder cannot run at) with the setting that fixes it, before anything is computed. ``make plan`` prints it alone.
"""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from dataclasses import dataclass

import torch

from ..primitives import devices, paths
from ..studies.downstream import missing_datasets, task_image_count
from ..engine.features import DEVICE_MEMORY_SHARE, DISK_MARGIN, StorageChoice, choose_storage, stored_bytes
from ..models.encoders import runs_at, shape_only, smallest_image_size, tap_channels
from ..models.scenenet import PADDINGS
from ..models.families import family_of
from ..primitives.datasets import image_folder
from ..engine.images import image_count
from ..models.networks import checkpoint_file
from ..primitives.borders import PADDING_MODES
from ..models.profiles import EncoderSpec, Profile


def missing_inputs(profile: Profile, downstream: bool = True) -> list[str]:
    """What the profile needs from outside and cannot find: dataset folders and weight files
    (``downstream``: notebook 05's datasets too).

    Checked before a run starts, so a paper-profile run stops at once with the full list
    instead of failing in the middle of a notebook.
    """
    missing = []
    for spec in (profile.train_set, *profile.test_sets):
        if spec.kind == "folder":
            try:
                image_folder(spec.dataset)
            except FileNotFoundError as err:
                missing.append(str(err))
    if downstream:
        missing += missing_datasets(profile.downstream)
    offline = os.environ.get("POSENC_OFFLINE", "0") == "1"
    for enc in profile.encoders:
        fam = family_of(enc.name)
        if checkpoint_file(enc) is not None and not checkpoint_file(enc).is_file():
            missing.append(f"the checkpoint for {enc.name}: {checkpoint_file(enc)} ({fam.where_from(enc)})")
        path = fam.weights_file(enc) if enc.weights == "imagenet" and offline else None
        if path is not None and not path.exists():
            missing.append(f"ImageNet weights for {enc.name}: {path} ({fam.where_from(enc)})")
    return missing


def feature_bytes(profile: Profile, channels: int, n_images: int) -> int:
    """Bytes on disk of the cached features of an encoder with ``channels`` (all taps) on ``n_images`` images
    (every tap at the readout's size, in the profile's feature dtype)."""
    return stored_bytes(n_images, profile.readout.feature_size, channels, profile.feature_dtype)


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.0f} MB"


def _minutes(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


STORAGE_WORDS = {"store": "stored", "memory": "held in memory", "recompute": "recomputed at each use"}

# The share of the device's dense matrix-product rate each phase reaches, measured on the CPU by `make bench`
# (figures/offline/benchmark_table1.json: VGG16's forward at 0.94 of it, the readouts at 0.35): what turns the
# plan's counts of arithmetic into its rough time estimate.
FORWARD_EFFICIENCY, READOUT_EFFICIENCY = 0.9, 0.35


def device_gflops(dev: str, n: int = 1024, repeats: int = 3) -> float:
    """The device's dense float32 matrix-product rate (GFLOP/s, best of ``repeats``; a fraction of a second)."""
    a = torch.rand(n, n, device=dev)
    b = torch.rand(n, n, device=dev)
    best = float("inf")
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        a @ b
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def forward_gflop(spec, image_size: int) -> float:
    """GFLOP of one image's forward pass through ``spec`` (counted on a shape-only build)."""
    return shape_only(spec, image_size)[1]


def readout_gflop(channels: int, heads: int, side: int = 28, layers: int = 1, width: int | None = None,
                  kernel: int = 3) -> float:
    """GFLOP of one image's training step through a PEM (forward and backward: 3x the forward's multiply-adds x 2)
    on ``channels`` inputs with ``heads`` outputs; stacked layers are ``width`` wide per head (None: C -> C)."""
    inner = channels if width is None else width * heads
    widths = [channels] + [inner] * (layers - 1) + [heads]
    macs = sum(a * b for a, b in zip(widths, widths[1:])) * kernel * kernel * side * side
    return 6 * macs / 1e9


@dataclass
class Plan:
    """What a run will do and what it needs, before it starts: its lines, and what stops it (``problems``)."""

    lines: list[str]
    problems: list[str]
    storage: dict[str, StorageChoice]
    estimate_s: dict[str, float]


def make_plan(profile: Profile, downstream: bool = True, rate: float | None = None) -> Plan:
    """The run's plan for the data found: image sets, encoders, each encoder's features (size, and whether they are
    stored, held in the device's memory or recomputed, and why), the disk, host and device memory against what is
    free, a rough time per notebook on this device, and the problems that stop the run before it starts, each
    naming what is short and the setting that fixes it. ``rate``: the device's GFLOP/s (measured when None)."""
    dev = devices.device()
    n_train = image_count(profile.train_set)
    tests = [(s.name, image_count(s)) for s in profile.test_sets]
    n_all = n_train + sum(n for _, n in tests)
    problems: list[str] = []
    lines = [f"profile {profile.name}: {profile.description}",
             f"device: {devices.describe()}",
             f"images at {profile.image_size} px: {profile.train_set.name} {n_train} (training); "
             + ", ".join(f"{name} {n}" for name, n in tests) + " (test)"]
    def width(spec, size: int) -> int:  # all taps' channels (encoders.shape_only builds each encoder once)
        return sum(tap_channels(spec, size))

    cache = paths.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache).free
    device_free = devices.device_free_memory(dev)
    host_total, host_free = devices.host_memory()
    left, storage, choices = free, 0, {}
    for spec in profile.encoders:
        size = feature_bytes(profile, width(spec, profile.image_size), n_all)
        choice = choose_storage(size, left, dev, device_free, wanted=profile.feature_storage)
        if choice.mode == "store":
            left -= size
            storage += size
            if size * DISK_MARGIN > free:
                problems.append(f"{spec.label}'s features need {_gb(size)} of disk, {_gb(free)} are free in {cache}: "
                                f"set POSENC_CACHE_DIR to a larger disk, or --set feature_storage=auto (recompute "
                                f"what does not fit)")
        elif choice.mode == "memory" and size > DEVICE_MEMORY_SHARE * (device_free if device_free is not None
                                                                        else host_free):
            where = "the GPU's" if device_free is not None else "the host's available"
            problems.append(f"{spec.label}'s features ({_gb(size)}) do not fit in half of {where} memory "
                            f"({_gb(device_free if device_free is not None else host_free)}): --set "
                            f"feature_storage=auto")
        choices[spec.label] = choice
        seeds = len(profile.seeds_for(spec))
        lines.append(f"encoder {spec.label}: {width(spec, profile.image_size)} channels, features {_gb(size)}, "
                     f"{STORAGE_WORDS[choice.mode]} ({choice.reason}); Table 1: {seeds} readout seed{'s' * (seeds > 1)}")
    t4_size = profile.table4_image_size or profile.image_size
    for spec in profile.encoders:
        if spec.name == "vgg16":  # Table 4 probes it without padding (and with, at its own size)
            variants = 1 if t4_size == profile.image_size else 2
            storage += variants * feature_bytes(profile, width(spec, t4_size), n_all)
            unpadded = dataclasses.replace(spec, padding="none")
            if not runs_at(unpadded, t4_size):
                need = smallest_image_size(unpadded)
                problems.append(f"Table 4 probes {spec.label} without padding, which needs images of at least "
                                f"{need} px: --set table4_image_size={need} (or larger)")
    # The padding-mode and canvas experiments: every encoder under every mode and canvas, on the ablation sets
    # (at most: a variant that Table 1 or 4 already extracted is viewed, not extracted again).
    n_ablation = min(profile.ablation_train_n or n_train, n_train) + sum(
        min(profile.ablation_test_n or n, n) for _, n in tests)
    networks = [spec for spec in profile.encoders if family_of(spec.name).network]
    variants = len(PADDING_MODES) + len(profile.canvas_values)
    ablation = sum(variants * feature_bytes(profile, width(spec, t4_size), n_ablation) for spec in networks)
    r = profile.readout
    steps = r.epochs * math.ceil(n_train / r.batch_size)
    lines.append(f"readouts: PEM {r.label}, {r.epochs} epochs of batch {r.batch_size} ({steps} SGD steps on "
                 f"{n_train} images); Tables 2-4, the budget check ({profile.budget_factor:g}x epochs) and the padding "
                 f"ablations train more on the same cached features")
    if downstream:
        ds = profile.downstream
        lines.append(f"notebook 05: {ds.label} networks trained from scratch at {ds.image_size} px, {ds.epochs} epoch{'s' * (ds.epochs > 1)}, "
                     f"on {ds.sod_train.name} and {ds.seg_train.name}")
    total = storage + ablation
    verdict = "enough" if free > DISK_MARGIN * total else (
        "NOT ENOUGH: free space there or set POSENC_CACHE_DIR" if profile.feature_storage == "store" else
        "what does not fit is recomputed")
    lines.append(f"feature storage: about {_gb(storage)} for Tables 1 and 4 and up to {_gb(ablation)} for the padding-mode "
                 f"and canvas experiments on {n_ablation} images (fewer with --set ablation_train_n=...), in {cache} "
                 f"({_gb(free)} free for {_gb(total)}: {verdict})")
    held = sum(feature_bytes(profile, width(s, profile.image_size), n_all)
               for s in profile.encoders if choices[s.label].mode == "memory")
    lines.append(f"memory: host {_gb(host_free)} available of {_gb(host_total)} (the study keeps its own to a few GB "
                 f"at any dataset size: features are read from disk a batch at a time)"
                 + (f"; GPU {_gb(device_free)} free, {_gb(held)} of it for held features" if device_free is not None else ""))
    estimate = _estimate(profile, networks, width, n_train, n_all, n_ablation, choices,
                         rate if rate is not None else device_gflops(dev), downstream)
    lines.append("rough time on this device (arithmetic counted, at the measured matrix-product rate): "
                 + ", ".join(f"notebook {nb} {_minutes(s)}" for nb, s in estimate.items())
                 + f"; in all {_minutes(sum(estimate.values()))}")
    return Plan(lines, problems, choices, estimate)


def _estimate(profile: Profile, networks, width, n_train: int, n_all: int, n_ablation: int, choices,
              rate: float, downstream: bool) -> dict[str, float]:
    """Seconds per notebook, from the forward passes and readout steps each makes (the dominant phases; image
    reading, evaluation and bookkeeping are left out), at ``rate`` GFLOP/s times each phase's measured efficiency.
    Recomputed features cost a forward pass per epoch of every readout that reads them."""
    r, size = profile.readout, profile.image_size
    fwd = {s.label: forward_gflop(s, size) for s in networks}
    t4_size = profile.table4_image_size or size
    def epochs_of(spec) -> float:  # every readout seed's epochs, and the budget check's one seed for a claim's rows
        decides = spec.name == "posenet" or spec.pretrained
        return r.epochs * (len(profile.seeds_for(spec)) + (profile.budget_factor if decides else 0))

    f_rate, r_rate = rate * FORWARD_EFFICIENCY, rate * READOUT_EFFICIENCY
    nb02 = 0.0
    for spec in profile.encoders:
        forward = fwd.get(spec.label, 0.0)
        passes = n_all + (epochs_of(spec) * n_train if choices[spec.label].mode == "recompute" else 0)
        nb02 += passes * forward / f_rate + epochs_of(spec) * n_train * readout_gflop(width(spec, size), 5) / r_rate
    n_t4 = min(profile.table4_train_n or n_train, n_train)
    nb03 = sum(len(profile.seeds_for(s)) * r.epochs * n_t4 * readout_gflop(width(s, t4_size), 5) / r_rate
               + n_all * forward_gflop(dataclasses.replace(s, padding="none"), t4_size) / f_rate
               for s in networks if s.name == "vgg16")
    n_abl_train = min(profile.ablation_train_n or n_train, n_train)
    variants = len(PADDING_MODES) + len(profile.canvas_values)
    nb03 += sum(variants * (n_ablation * forward_gflop(s, t4_size) / f_rate
                            + r.epochs * n_abl_train * readout_gflop(width(s, t4_size), 5) / r_rate) for s in networks)
    n_cap = min(profile.capacity_train_n or n_train, n_train)
    widths = profile.width_sweep if profile.extended_in_main and profile.width_sweep else (profile.readout_width,)
    nb04 = sum(len(profile.seeds_for(s)) * r.epochs * n_cap * sum(
        readout_gflop(width(s, size), 3, layers=d, width=w) for d in (2, 3) for w in widths) / r_rate
        for s in profile.encoders if s.name == "posenet" or (s.name == "vgg16" and s.pretrained))
    out = {"02": nb02, "03": nb03, "04": nb04}
    if downstream:
        ds = profile.downstream
        net = forward_gflop(EncoderSpec(ds.encoder_name, "random"), ds.image_size)  # its encoder, the bulk of it
        n_ds = task_image_count(ds.sod_train) + task_image_count(ds.seg_train)
        out["05"] = 3 * net * ds.epochs * n_ds * len(PADDINGS) * ds.seeds / f_rate
    return out


def run_plan(profile: Profile, downstream: bool = True) -> list[str]:
    """The plan's lines (:func:`make_plan`)."""
    return make_plan(profile, downstream).lines
