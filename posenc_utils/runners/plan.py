"""What a run will do, said before it starts: images per set, encoders, readouts, feature storage, device.

A paper-scale run takes hours and tens of gigabytes; :func:`run_plan` states both from the
profile alone (image folders are listed, not read; encoders are built shape-only), so a user
sees what is coming, and whether the cache's disk can hold it, before anything is computed.
"""
from __future__ import annotations

import functools
import math
import os
import shutil

import numpy as np

from ..primitives import devices, paths
from ..studies.downstream import missing_datasets
from ..models.encoders import tap_channels
from ..models.families import family_of
from ..primitives.datasets import image_folder
from ..engine.images import image_count
from ..models.networks import checkpoint_file
from ..primitives.borders import PADDING_MODES
from ..models.profiles import Profile


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
    return n_images * profile.readout.feature_size ** 2 * channels * np.dtype(profile.feature_dtype).itemsize


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.0f} MB"


def run_plan(profile: Profile, downstream: bool = True) -> list[str]:
    """The plan's lines: image sets, encoders and their channels, readouts, feature storage, device, disk."""
    n_train = image_count(profile.train_set)
    tests = [(s.name, image_count(s)) for s in profile.test_sets]
    n_all = n_train + sum(n for _, n in tests)
    lines = [f"profile {profile.name}: {profile.description}",
             f"device: {devices.describe()}",
             f"images at {profile.image_size} px: {profile.train_set.name} {n_train} (training); "
             + ", ".join(f"{name} {n}" for name, n in tests) + " (test)"]
    width = functools.cache(lambda spec, size: sum(tap_channels(spec, size)))  # one shape-only build per encoder
    storage = 0
    for spec in profile.encoders:
        size = feature_bytes(profile, width(spec, profile.image_size), n_all)
        storage += size
        seeds = len(profile.seeds_for(spec))
        lines.append(f"encoder {spec.label}: {width(spec, profile.image_size)} channels, "
                     f"features {_gb(size)}; Table 1: {seeds} readout seed{'s' * (seeds > 1)}")
    t4_size = profile.table4_image_size or profile.image_size
    for spec in profile.encoders:
        if spec.name == "vgg16":  # Table 4 probes it without padding (and with, at its own size)
            variants = 1 if t4_size == profile.image_size else 2
            storage += variants * feature_bytes(profile, width(spec, t4_size), n_all)
    # The padding-mode and canvas experiments: every encoder under every mode and canvas, on the ablation sets
    # (at most: a variant that Table 1 or 4 already extracted is viewed, not extracted again).
    n_ablation = min(profile.ablation_train_n or n_train, n_train) + sum(
        min(profile.ablation_test_n or n, n) for _, n in tests)
    ablation = sum((len(PADDING_MODES) + len(profile.canvas_values)) * feature_bytes(profile, width(spec, t4_size), n_ablation)
                   for spec in profile.encoders if family_of(spec.name).network)
    r = profile.readout
    steps = r.epochs * math.ceil(n_train / r.batch_size)
    lines.append(f"readouts: PEM {r.label}, {r.epochs} epochs of batch {r.batch_size} ({steps} SGD steps on "
                 f"{n_train} images); Tables 2-4, the budget check ({profile.budget_factor:g}x epochs) and the padding "
                 f"ablations train more on the same cached features")
    if downstream:
        ds = profile.downstream
        lines.append(f"notebook 05: {ds.label} networks trained from scratch at {ds.image_size} px, {ds.epochs} epoch{'s' * (ds.epochs > 1)}, "
                     f"on {ds.sod_train.name} and {ds.seg_train.name}")
    cache = paths.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache).free
    total = storage + ablation
    verdict = "enough" if free > 1.05 * total else "NOT ENOUGH: free space there or set POSENC_CACHE_DIR"
    lines.append(f"feature storage: about {_gb(storage)} for Tables 1 and 4 and up to {_gb(ablation)} for the padding-mode "
                 f"and canvas experiments on {n_ablation} images (fewer with --set ablation_train_n=...), in {cache} "
                 f"({_gb(free)} free for {_gb(total)}: {verdict})")
    return lines
