"""Position in networks since the paper (notebook 07, beyond the paper): the measures and interventions that work on
vision transformers and diffusion U-Nets has used since 2020, on the study's encoders and on a ViT, a Swin
Transformer, a ConvNeXt and a rotary-embedding EVA-02 (``Profile.since_models``).

* **Row/column classification** (:mod:`posenc_utils.engine.rowcol`) per tap at 4, 8 and 16 bins per axis, and beside
  the readout's SPC and the variance share in each network's Table 1 (:func:`measure_table`, :func:`agreement`);
* **the interventions**: the positional embedding kept / zeroed / shuffled / shifted, the rotary embedding switched
  off, the token-permutation control (:mod:`posenc_utils.primitives.positions`), each a probe of its own with paired
  intervals against "kept" (:func:`interventions`);
* **the constant-input artifact** (:func:`constant_artifact`): each tap's response to an all-zero input (the
  network's input, after its preprocessing, all zero: what its zero padding holds) and to a mid-grey image, with
  no content at all, and its size: the spatial variance of that response relative to the features' variance on
  the photos (with one image the share of its own variance would be 1 by definition);
* **the input-size sweep** (:func:`size_sweep`) for a CNN: the readout at the image size and at sizes where its
  stride-2 layers read their padding on one side only, or on both (:func:`one_sided_layers`, counted per layer
  from the padding each layer reads: :func:`posenc_utils.models.encoders.padding_reads_at`); n/a for a network
  whose patch grid fixes its input size.

:func:`compute` runs them all; where the profile does not run them in the main job (``since_in_main``), ``make
since`` (``python -m posenc_utils.since``) writes the results with a record and notebook 07 reads them (:func:`load`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from scipy import stats

from . import padding_ablation
from .experiments import (Result, features_for, image_sets, per_image_frame, probe_seeds, seeded_summary, table1,
                          test_sources, view_features, with_feature_measures)
from ..engine import rowcol
from ..engine.measures import image_groups, table_columns, variance_components
from ..engine.plots import off_axes, save_figure
from ..models.encoders import build_encoder, padding_reads_at, patch_grid, resize_taps
from ..models.families import family_of, timm_input_size
from ..models.profiles import Profile, command_profile, deviations
from ..primitives import devices
from ..primitives.borders import ImageTooSmallError, PaddingNotSupportedError
from ..primitives.positions import POSITION_MODES
from ..primitives.products import declare
from ..primitives.specs import EncoderSpec

CONSTANT_INPUTS = ("zero", "grey")  # the network's input all zero (after its preprocessing); a mid-grey image
GREY = 0.5
MAP_FLOOR = 0.05  # the artifact figure's colour scale spans at least +-0.05 of the photos' standard deviation
PUBLISHED = ("No published number exists for these comparisons: the studies that use these measures (Loos & "
             "Linhardt 2025; \"Geometry without Position?\" 2026) report pretrained networks on other data and "
             "protocols, and the networks here are random-init (no pretrained transformer can be had offline).")


def models(profile: Profile) -> tuple[EncoderSpec, ...]:
    """The study's encoders, then ``since_models`` (each once)."""
    return tuple(dict.fromkeys(profile.encoders + profile.since_models))


def since_profile(profile: Profile) -> Profile:
    """The profile with notebook 07's networks as its encoders."""
    return profile.with_overrides(encoders=models(profile))


def is_network(spec: EncoderSpec) -> bool:
    return family_of(spec.name).network


# ---------------------------------------------------------------- row/column classification and the measures


def rowcol_table(profile: Profile, specs: tuple[EncoderSpec, ...] | None = None) -> pd.DataFrame:
    """Per network and tap (and all taps together), at every bin count its grid allows: row, column and mean
    accuracy and bin error on the natural test images, with jackknife 95% intervals over groups of images (whole
    source photographs), the classifier trained on the training images (``specs``: these networks only)."""
    train, tests = image_sets(profile)
    natural = tests[0]
    groups = image_groups(natural.n, test_sources(profile, [natural]).get(natural.name))
    frames = []
    for spec in specs or models(profile):
        ftrain, ftest = features_for(profile, spec, train), features_for(profile, spec, natural)
        grids = rowcol.tap_grids(ftrain)
        taps = [(name, np.arange(s.start, s.stop), grid)
                for (name, s), grid in zip(ftrain.tap_slices().items(), grids)]
        if len(taps) > 1:
            taps.append(("all taps", None, rowcol.row_grid(ftrain, None)))
        for name, chans, grid in taps:
            s = rowcol.rowcol_summary(ftest, ftrain, chans, groups)
            frames.append(s.assign(encoder=spec.label, tap=name))
    out = pd.concat(frames, ignore_index=True)
    return out[["encoder", "tap", *rowcol.SUMMARY_COLUMNS]]


def measure_table(profile: Profile) -> Result:
    """Table 1 of every network of notebook 07 (the study's encoders' rows are Table 1's own, from the cache): the
    readout's SPC beside the variance share and the row/column accuracy."""
    return table1(since_profile(profile))


MEASURE_PAIRS = (("spc", "position_variance"), ("spc", "rowcol"), ("position_variance", "rowcol"))


def agreement(table: pd.DataFrame, test_set: str) -> pd.DataFrame:
    """Spearman rank correlation over the networks (mean SPC over patterns, the two feature measures), per pair
    of measures, on ``test_set``; NaN below three networks."""
    d = table[table.test_set == test_set].groupby("encoder", sort=False).agg(
        spc=("spc", "mean"), position_variance=("position_variance", "first"), rowcol=("rowcol", "first")).dropna()
    rows = []
    for a, b in MEASURE_PAIRS:
        ok = len(d) >= 3 and d[a].nunique() > 1 and d[b].nunique() > 1
        rows.append(dict(first=a, second=b, networks=len(d),
                         spearman=float(stats.spearmanr(d[a], d[b]).statistic) if ok else float("nan")))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- the interventions


def intervention_models(profile: Profile) -> tuple[EncoderSpec, ...]:
    """The networks with a positional code of their own (a patch grid): the interventions' subjects."""
    return tuple(s for s in models(profile) if patch_grid(s, profile.image_size) is not None)


def interventions(profile: Profile) -> Result:
    """Every position mode (:data:`POSITION_MODES`) of every transformer among notebook 07's networks, probed on the
    ablation sets with its readout seeds; "n/a" with the reason where a network has no such part (the probe card's
    table, :func:`padding_ablation.position_modes`)."""
    return padding_ablation.position_modes(profile.with_overrides(encoders=intervention_models(profile)))


# ---------------------------------------------------------------- the constant-input artifact


def constant_responses(spec: EncoderSpec, profile: Profile) -> dict[str, list[torch.Tensor]]:
    """Each tap's response (C, h, w) to each of :data:`CONSTANT_INPUTS`, at the tap's own resolution."""
    size = profile.image_size
    enc = build_encoder(spec, profile.seed, size)
    with torch.inference_mode():
        zero = enc.module(torch.zeros(1, 3, size, size).contiguous(memory_format=torch.channels_last))
        grey = enc(torch.full((1, 3, size, size), GREY))
    return {"zero": [o[0].float() for o in zero], "grey": [o[0].float() for o in grey]}


@dataclass
class Artifact:
    """The constant-input artifact of the networks: its size per tap and its maps (standardized by the photos'
    feature standard deviation, mean over channels), per (network, input)."""

    table: pd.DataFrame
    maps: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict)
    taps: dict[str, tuple[str, ...]] = field(default_factory=dict)


def constant_artifact(profile: Profile, specs: tuple[EncoderSpec, ...] | None = None) -> Artifact:
    """Per network, input and tap (and all taps): the spatial variance of the response to a constant input, per
    channel, relative to the features' total variance on the natural test images (both as the readout reads them:
    resized to the feature grid, in stored units), averaged over the channels that vary on the photos (``specs``:
    these networks only)."""
    _, tests = image_sets(profile)
    natural = tests[0]
    rows, maps, taps = [], {}, {}
    for spec in specs or models(profile):
        feats = features_for(profile, spec, natural)
        total = variance_components(feats, image_groups(feats.n))["T"][0]  # per channel, stored units
        responses = constant_responses(spec, profile)
        taps[spec.label] = feats.tap_names
        for kind, outs in responses.items():
            stored = resize_taps([o[None] for o in outs], feats.size,
                                 tuple(feats.tap_scales))[0].reshape(feats.n_channels, -1).double().numpy()
            spatial = stored.var(1)
            varies = total > 0
            shares = np.where(varies, spatial / np.where(varies, total, 1), np.nan)
            for (name, s) in list(feats.tap_slices().items()) + [("all taps", slice(0, feats.n_channels))]:
                rows.append(dict(encoder=spec.label, input=kind, tap=name, artifact=float(np.nanmean(shares[s])),
                                 channels=int(varies[s].sum())))
            standard = []
            for o, (name, s), scale in zip(outs, feats.tap_slices().items(), feats.tap_scales):
                sd = np.sqrt(np.where(varies[s], total[s], np.nan)) * scale  # the photos' sd, real units
                r = o.double().numpy()
                z = (r - r.mean((1, 2), keepdims=True)) / sd[:, None, None]
                standard.append(np.nanmean(z, 0) if np.isfinite(z).any() else np.zeros(r.shape[1:]))
            maps[(spec.label, kind)] = standard
    return Artifact(pd.DataFrame(rows), maps, taps)


def plot_artifact(artifact: Artifact, path: Path) -> plt.Figure:
    """Each network (a row) and its taps' mean response maps to each constant input (columns: the taps for the
    all-zero input, then for the mid-grey image), in standard deviations of its features on the photos, centred per
    channel: what is left is the position pattern that padding or an embedding writes. Title: the tap and its size."""
    nets = list(dict.fromkeys(e for e, _ in artifact.maps))
    kinds = list(dict.fromkeys(k for _, k in artifact.maps))
    width = max(len(artifact.taps[e]) for e in nets)
    sizes = artifact.table.set_index(["encoder", "input", "tap"]).artifact
    fig, axes = plt.subplots(len(nets), width * len(kinds), figsize=(1.25 * width * len(kinds) + 1.8,
                                                                    1.3 * len(nets) + 0.6), squeeze=False)
    for r, enc in enumerate(nets):
        for k, kind in enumerate(kinds):
            for c in range(width):
                ax = axes[r, k * width + c]
                off_axes(ax)
                maps = artifact.maps.get((enc, kind), [])
                if c >= len(maps):
                    continue
                lim = float(np.nanmax(np.abs(maps[c]))) if np.isfinite(maps[c]).any() else 0.0
                lim = max(lim, MAP_FLOOR)  # a map of round-off is drawn flat, not stretched into a pattern
                ax.imshow(maps[c], cmap="RdBu_r", vmin=-lim, vmax=lim)
                tap = artifact.taps[enc][c]
                ax.set_title(f"{kind}: {tap[-14:]}\n{sizes[(enc, kind, tap)]:.2g}", fontsize=5)
        axes[r, 0].text(-0.08, 0.5, enc.replace(" (", "\n("), ha="right", va="center", fontsize=6,
                        transform=axes[r, 0].transAxes)
    fig.suptitle("Response to an all-zero input (left) and a mid-grey image (right), mean over channels in the photos' "
                 "standard deviations; title: the tap and the response's spatial variance over the photos' variance",
                 fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


# ---------------------------------------------------------------- the input-size sweep


def sweep_sizes(profile: Profile) -> tuple[int, ...]:
    return tuple(profile.image_size + d for d in profile.size_sweep_offsets)


def one_sided_layers(spec: EncoderSpec, size: int) -> list[str]:
    """The layers of ``spec`` that read their padding on one side of an axis only at ``size`` px."""
    return [r.layer for r in padding_reads_at(spec, size) if r.one_sided]


def size_sweep(profile: Profile, specs: tuple[EncoderSpec, ...] | None = None) -> Result:
    """Every CNN among notebook 07's networks at each of :func:`sweep_sizes`, probed on the ablation sets (training
    images and natural test images at that size) with its readout seeds, the feature measures beside it, and how many
    of its layers read their padding on one side only; "n/a" with the reason for a network whose patch grid fixes its
    size (or that has no network). ``per_image``: setting = "<size> px", for paired contrasts with the first size
    (``specs``: these networks only)."""
    frames, per_image, runs = [], [], {}
    natural = profile.natural_test_set
    for spec in specs or models(profile):
        for size in sweep_sizes(profile):
            cfg = profile.with_overrides(image_size=size, test_sets=profile.test_sets[:1])
            setting = f"{size} px"
            base = dict(encoder=spec.label, setting=setting, image_size=size, test_set=natural)
            patch = patch_grid(spec, size)
            own = timm_input_size(spec, size)
            if not is_network(spec) or patch is not None or own:
                why = ("no network: nothing is padded" if not is_network(spec) else
                       f"a {patch[0]} px patch grid fixes its input size (it is built for {profile.image_size} px)"
                       if patch is not None else f"it runs at its own size ({own} px): its input is resized to it")
                frames.append(pd.DataFrame([dict(base, status="n/a", reason=why)]))
                continue
            one = one_sided_layers(spec, size)
            train, tests, views = padding_ablation.ablation_sets(cfg)
            # at the profile's own size the heads view Table 1's cached features; at another size a view would
            # extract the whole set to read its head, so the heads' own features are extracted instead
            source = view_features(views) if size == profile.image_size else None
            try:
                seeded = probe_seeds(cfg, spec, sets=(train, tests), features=source)
            except (ImageTooSmallError, PaddingNotSupportedError) as err:
                frames.append(pd.DataFrame([dict(base, status="n/a", reason=err.reason)]))
                continue
            runs[f"{spec.label}, {setting}"] = seeded
            sources = test_sources(cfg, tests)
            summary = with_feature_measures(seeded_summary(seeded, sources), seeded[0], sources, "table1")
            mean = summary.mean(numeric_only=True)
            frames.append(pd.DataFrame([dict(base, status="ok", reason="", one_sided=len(one),
                                             one_sided_layers=", ".join(one), spc=float(summary.spc.mean()),
                                             position_variance=float(mean.get("position_variance", np.nan)),
                                             rowcol=float(mean.get("rowcol", np.nan)))]))
            per_image.append(per_image_frame(seeded, sources).assign(encoder=spec.label, setting=setting))
    table = pd.concat(frames, ignore_index=True)
    cols = ["encoder", "setting", "image_size", "test_set", "status", "one_sided", "one_sided_layers", "spc",
            "position_variance", "rowcol", "reason"]
    per_image = pd.concat(per_image, ignore_index=True) if per_image else pd.DataFrame()
    if len(per_image):  # the mean SPC over the patterns with its interval, per size
        means = padding_ablation.setting_means(per_image, natural)[["encoder", "setting", "ci_low", "ci_high"]]
        table = table.merge(means, on=["encoder", "setting"], how="left")
    return Result(table.reindex(columns=cols[:8] + ["ci_low", "ci_high"] + cols[8:]), per_image, runs)


def sweep_contrasts(sweep: Result, profile: Profile) -> pd.DataFrame:
    """The mean SPC at the image size minus each other size, paired over images and seeds, per CNN."""
    if sweep.per_image is None or not len(sweep.per_image):
        return pd.DataFrame()
    return padding_ablation.mode_contrasts(sweep.per_image, profile.natural_test_set, f"{profile.image_size} px")


# ---------------------------------------------------------------- the sentences


def _ci(v: float, lo: float, hi: float) -> str:
    return f"{v:.2f} [{lo:.2f}, {hi:.2f}]"


def rowcol_sentences(table: pd.DataFrame) -> list[str]:
    """Per network, its all-taps (or only) row at 4 bins: the accuracy against chance, and whether the interval
    clears chance."""
    out = []
    for enc, d in table[(table.axis == "mean") & (table.bins == rowcol.TABLE_BINS)].groupby("encoder", sort=False):
        row = d[d.tap == "all taps"].iloc[0] if (d.tap == "all taps").any() else d.iloc[0]
        verdict = ("above chance" if row.accuracy_low > row.chance else
                   "not distinguishable from chance" if row.accuracy_high >= row.chance else "below chance")
        out.append(f"{enc}: row/column accuracy {_ci(row.accuracy, row.accuracy_low, row.accuracy_high)} at "
                   f"{rowcol.TABLE_BINS} bins on its {int(row.grid)} x {int(row.grid)} grid (chance "
                   f"{row.chance:.2f}): {verdict}.")
    return out


def agreement_sentence(agree: pd.DataFrame) -> str:
    parts = [f"{r.first} and {r.second}: {r.spearman:.2f}" for r in agree.itertuples() if np.isfinite(r.spearman)]
    if not parts:
        return "Too few networks to compare the measures' orders (three at the least are needed)."
    return (f"Spearman rank correlations over the {int(agree.networks.iloc[0])} networks (one value per network, "
            f"no interval: a description of these networks, not a test): " + "; ".join(parts) + ".")


def artifact_sentences(artifact: Artifact) -> list[str]:
    d = artifact.table[artifact.table.tap == "all taps"]
    out = []
    for kind, g in d.groupby("input", sort=False):
        parts = ", ".join(f"{r.encoder} {r.artifact:.3g}" for r in g.itertuples())
        out.append(f"With {'an all-zero input' if kind == 'zero' else 'a mid-grey image'}, the spatial variance of "
                   f"the response over the features' variance on the photos, mean over channels: {parts}.")
    return out


def sweep_sentences(sweep: Result, contrasts: pd.DataFrame, profile: Profile) -> list[str]:
    t = sweep.table
    out = []
    for enc, d in t[t.status == "ok"].groupby("encoder", sort=False):
        sides = ", ".join(f"{r.setting}: {int(r.one_sided)}" for r in d.itertuples())
        out.append(f"{enc}, layers that read their padding on one side only per size: {sides}.")
    if len(contrasts):
        out.append(padding_ablation.contrast_sentence(contrasts, profile.natural_test_set, noun="size"))
    refused = t[t.status == "n/a"].groupby("encoder", sort=False).reason.first()
    if len(refused):
        out.append("Not swept: " + "; ".join(f"{e} ({r})" for e, r in refused.items()) + ".")
    return out


# ---------------------------------------------------------------- all of it, written or read back


@dataclass
class Since:
    """Notebook 07's results."""

    rowcol: pd.DataFrame
    measures: Result
    agreement: pd.DataFrame
    modes: Result
    mode_contrasts: pd.DataFrame
    artifact: Artifact
    sweep: Result
    sweep_contrasts: pd.DataFrame


def compute(profile: Profile) -> Since:
    measures = measure_table(profile)
    modes = interventions(profile)
    sweep = size_sweep(profile)
    natural = profile.natural_test_set
    contrasts = (padding_ablation.mode_contrasts(modes.per_image, natural, POSITION_MODES[0])
                 if modes.per_image is not None and len(modes.per_image) else pd.DataFrame())
    return Since(rowcol_table(profile), measures, agreement(measures.table, natural), modes, contrasts,
                 constant_artifact(profile), sweep, sweep_contrasts(sweep, profile))


def write(profile: Profile, out: Path, since: Since, seconds: float) -> Path:
    """Every table and figure of notebook 07, and the record of what made them."""
    out.mkdir(parents=True, exist_ok=True)
    note = "Beyond the paper (notebook 07). Deviations from the paper: " + "; ".join(deviations(profile, "07")) + "."
    Result(since.rowcol).save(out, ROWCOL, f"Row/column classification per tap. {note}")
    since.measures.save(out, MEASURES, f"Table 1 of notebook 07's networks with every measure. {note}")
    Result(since.agreement).save(out, AGREEMENT)
    since.modes.save(out, MODES, f"The position interventions on the transformers. {note}")
    Result(since.mode_contrasts).save(out, MODE_CONTRASTS)
    Result(since.artifact.table).save(out, ARTIFACT, f"The constant-input artifact. {note}")
    plt.close(plot_artifact(since.artifact, FIG_ARTIFACT.png(out)))
    since.sweep.save(out, SWEEP, f"The input-size sweep. {note}")
    Result(since.sweep_contrasts).save(out, SWEEP_CONTRASTS)
    record = dict(profile=profile.name, models=[s.label for s in models(profile)], sizes=list(sweep_sizes(profile)),
                  seconds=round(seconds, 1), cpu=devices.cpu_model(), cpus=os.cpu_count(), date=time.strftime("%Y-%m-%d"))
    path = RECORD.path(out)
    before = json.loads(path.read_text()) if path.exists() else {}
    same = all(before.get(k) == record[k] for k in ("profile", "models", "sizes"))
    if same and before.get("seconds", 0) > seconds:  # made before, read back now: keep what making them took
        record.update({k: before[k] for k in ("seconds", "cpu", "cpus", "date") if k in before})
    path.write_text(json.dumps(record, indent=1) + "\n")
    return RECORD.path(out)


def load(profile: Profile, out: Path) -> tuple[Since | None, str]:
    """The results ``make since`` wrote in ``out``, where they are of this profile and these networks."""
    path = RECORD.path(out)
    if not path.exists():
        return None, f"no {path.name} in {out}: run `make since` (PROFILE={profile.name})"
    record = json.loads(path.read_text())
    if record.get("profile") != profile.name or record.get("models") != [s.label for s in models(profile)] \
            or record.get("sizes") != list(sweep_sizes(profile)):
        return None, f"{path} records another profile, other networks or sizes: run `make since` again"

    def read(product, frame: bool = False) -> pd.DataFrame:
        p = product.per_image_path(out) if frame else product.csv(out)
        # "n/a" is a status here, not a missing value: only empty cells are
        return pd.read_csv(p, keep_default_na=False, na_values=[""]) if p.exists() and p.stat().st_size > 1 \
            else pd.DataFrame()

    artifact = Artifact(read(ARTIFACT))
    return Since(read(ROWCOL), Result(read(MEASURES)), read(AGREEMENT), Result(read(MODES), read(MODES, True)),
                 read(MODE_CONTRASTS), artifact, Result(read(SWEEP), read(SWEEP, True)), read(SWEEP_CONTRASTS)), ""


def results(profile: Profile, out: Path) -> tuple[Since, str]:
    """What notebook 07 shows: where the profile does not run it in the main job, what ``make since`` wrote
    (:func:`load`) where it is there and current; else computed now and written (with the reason it was computed)."""
    why = "computed here: the profile runs notebook 07 in the main job"
    if not profile.since_in_main:
        found, why = load(profile, out)
        if found is not None:
            return found, f"read from {RECORD.path(out)} (written by `make since`)"
        why = f"computed here, which takes a while: {why}"
    t0 = time.perf_counter()
    since = compute(profile)
    write(profile, out, since, time.perf_counter() - t0)
    return since, why


def main(argv: list[str] | None = None) -> int:
    profile, out = command_profile("python -m posenc_utils.since", __doc__.split("\n\n")[0], argv)
    t0 = time.perf_counter()
    print(f"notebook 07's results ({profile.name}): {len(models(profile))} networks, sizes {sweep_sizes(profile)}",
          flush=True)
    since = compute(profile)
    path = write(profile, out, since, time.perf_counter() - t0)
    print(f"wrote {path} and the results beside it in {time.perf_counter() - t0:.0f} s")
    return 0


# ---------------------------------------------------------------- products (posenc_utils.primitives.products)

ROWCOL = declare("since_rowcol", "07", "csv", made_by=rowcol_table)
MEASURES = declare("since_measures", "07", "table", made_by=measure_table, per_image=True)
AGREEMENT = declare("since_agreement", "07", "csv", made_by=agreement)
MODES = declare("since_interventions", "07", "table", made_by=interventions, per_image=True)
MODE_CONTRASTS = declare("since_intervention_contrasts", "07", "csv", made_by=compute)
ARTIFACT = declare("since_constant_artifact", "07", "csv", made_by=constant_artifact)
FIG_ARTIFACT = declare("fig_since_constant_artifact", "07", "figure", made_by=plot_artifact, grid=True)
SWEEP = declare("since_size_sweep", "07", "table", made_by=size_sweep, per_image=True)
SWEEP_CONTRASTS = declare("since_size_contrasts", "07", "csv", made_by=sweep_contrasts)
RECORD = declare("since_record", "07", "json", made_by=write)


# ---------------------------------------------------------------- what notebook 07 and the card show


def rowcol_view(table: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy of rows and columns, 'value [95% interval]', per network and tap (rows) and bins (columns)."""
    d = table[table.axis == "mean"].copy()
    d["cell"] = [f"{r.accuracy:.2f} [{r.accuracy_low:.2f}, {r.accuracy_high:.2f}]" for r in d.itertuples()]
    wide = d.pivot_table(index=["encoder", "tap"], columns="bins", values="cell", aggfunc="first", sort=False)
    wide.columns = [f"{b} bins (chance {1 / b:.3f})" for b in wide.columns]
    grids = d.groupby(["encoder", "tap"], sort=False).grid.first()
    return wide.assign(grid=grids).reset_index()


def modes_view(modes: Result, natural: str) -> pd.DataFrame:
    """Per network and mode: the mean SPC over patterns on ``natural`` with its 95% interval, or n/a and why."""
    t = modes.table[modes.table.test_set == natural].groupby(["encoder", "setting"], sort=False).agg(
        status=("status", "first"), reason=("reason", "first"), position_variance=("position_variance", "first"))
    means = (padding_ablation.setting_means(modes.per_image, natural)
             if modes.per_image is not None and len(modes.per_image) else pd.DataFrame(columns=["encoder", "setting"]))
    out = t.reset_index().merge(means[[c for c in ("encoder", "setting", "spc", "ci_low", "ci_high") if c in means]],
                                on=["encoder", "setting"], how="left")
    return out.reindex(columns=["encoder", "setting", "status", "spc", "ci_low", "ci_high", "position_variance",
                                "reason"])


def sweep_view(sweep: Result) -> pd.DataFrame:
    return sweep.table.drop(columns=["test_set"], errors="ignore")
