"""Notebook 03: where absolute position comes from, and how padding shapes it.

* :func:`table4`: the paper's Table 4 (PAPER.md section 4): PosENet with zero padding 0, 1 and 2
  in its own convolution; each VGG16 of the profile as built and with every padding removed
  (weights kept). Fig 6: :func:`fig6_padding_gaussian`.
* :func:`padding_modes` (beyond the paper; Islam et al., IJCV 2024): zeros, reflect, replicate,
  circular and none for every encoder, "n/a" with the reason where a mode cannot apply.
* :func:`canvas`: the value the image is padded with (its canvas) and the contrast between the
  content at the border and that canvas.
* :func:`border_distance`: readout errors against the distance to the nearest border, and SPC
  on the central region versus the border band.

Every experiment returns tidy DataFrames (Table 4 in a :class:`~posenc_utils.studies.experiments.Result`,
with its per-image metrics and probe results); features come from the cache (a padding variant is a
cache entry of its own, computed once; zero-padded features are Table 1's).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from ..engine import tables
from ..primitives.borders import PADDING_MODES, PaddingNotSupportedError, canvas_value
from ..primitives.positions import POSITION_MODES, PositionNotSupportedError
from ..models.encoders import input_convention
from ..models.families import family_of
from ..engine.evidence import effect, paired_interval
from .experiments import (Probe, ProbeResult, Result, Views, head_of, image_sets, per_image_frame, probe,
                          probe_seeds, seeded_summary, test_sources, train_probes, view_features,
                          with_feature_measures)
from ..engine.images import ImageSet
from ..engine.measures import BASELINE_COLUMNS, probe_measures, table_columns
from ..primitives.metrics import spc
from ..engine.plots import mark_failed, off_axes, save_figure
from ..primitives.products import declare
from ..models.profiles import EncoderSpec, Profile, ReadoutSpec
from ..primitives.targets import PATTERNS, target_map

KEYS = ["encoder", "arch", "weights", "padding", "setting", "pattern", "test_set"]  # then the measures' columns
MODES_TABLE = "modes"  # the padding and position modes' tables: the feature measures given beside them


# ---------------------------------------------------------------- Table 4 and Fig 6


def table4_profile(profile: Profile) -> Profile:
    """The profile Table 4 runs in (its own image size where the profile sets one)."""
    size = profile.table4_image_size
    return profile.with_overrides(image_size=size) if size and size != profile.image_size else profile


def table4_sets(profile: Profile) -> tuple[ImageSet, list[ImageSet]]:
    """Table 4's training set (the first ``table4_train_n`` images) and test sets (all)."""
    train, tests = image_sets(table4_profile(profile))
    return head_of(train, profile.table4_train_n)[0], tests


def _table4_rows(profile: Profile) -> tuple[Profile, list[tuple[EncoderSpec, str, str, ReadoutSpec]], dict]:
    """Table 4's profile, its rows (encoder, setting, the paper's setting, readout) and the probes' common
    keyword arguments (its image sets and the view of Table 1's cached features)."""
    prof = table4_profile(profile)
    runs = [(EncoderSpec("posenet", "none"), f"PEM padding {p}", f"padding {p}",
             dataclasses.replace(prof.readout, padding=p)) for p in (0, 1, 2)]
    for spec in prof.encoders:
        if spec.name == "vgg16":
            runs += [(dataclasses.replace(spec, padding="zeros"), "with padding", "with padding", prof.readout),
                     (dataclasses.replace(spec, padding="none"), "without padding", "without padding", prof.readout)]
    train_full, tests = image_sets(prof)
    train, views = head_of(train_full, profile.table4_train_n)
    return prof, runs, dict(sets=(train, tests), features=view_features(views))


def table4_probes(profile: Profile) -> list[Probe]:
    """The probes of :func:`table4`: each row with each of its readout seeds."""
    prof, runs, common = _table4_rows(profile)
    return [(prof, dict(spec=spec, readout=readout, seed=s, **common)) for spec, _, _, readout in runs
            for s in prof.seeds_for(spec)]


def table4(profile: Profile, also: tuple[Profile, ...] = ()) -> Result:
    """Table 4: PosENet with PEM zero padding 0/1/2; every VGG16 of the profile with and without padding.

    Every row is averaged over the profile's readout seeds, with intervals over seeds and over test
    images. Returns the tidy table (the paper's numbers beside ours where it has them), every seed's
    per-image metrics, and the first seed's probe results keyed by row label ("PosENet, PEM padding 1",
    "VGG16 (HED), without padding", ...). ``also``: profiles whose Table 4 comes next (the budget check),
    trained now with this one's readouts, sharing their passes over the features.
    """
    prof, runs, common = _table4_rows(profile)
    train, tests = common["sets"]
    for spec in dict.fromkeys(spec for spec, *_ in runs):  # each encoder's features in a row: built once
        for image_set in (train, *tests):
            common["features"](prof, spec, image_set)
    train_probes(table4_probes(profile) + [p for other in also for p in table4_probes(other)])
    frames, results = [], {}
    sources, per_image = test_sources(prof, tests), []
    for spec, setting, paper_setting, readout in runs:
        seeded = probe_seeds(prof, spec, readout=readout, **common)
        base = dataclasses.replace(spec, padding="zeros").label
        results[f"{base}, {setting}"] = seeded[0]
        summary = with_feature_measures(seeded_summary(seeded, sources), seeded[0], sources, "table4")
        frames.append(summary.assign(setting=setting, paper_setting=paper_setting, encoder=base))
        per_image.append(per_image_frame(seeded, sources).assign(encoder=base, setting=setting))
    table = tables.with_paper(pd.concat(frames, ignore_index=True), prof, "table4")
    table = table[table_columns(KEYS, table="table4")]
    return Result(table, pd.concat(per_image, ignore_index=True), results)


def fig6_padding_gaussian(results: dict[str, ProbeResult], tests: list[ImageSet], path: Path,
                          pattern: str = "G", photo_index: int = 0) -> plt.Figure:
    """Fig 6: each Table 4 row's prediction of ``pattern`` on a photo and on the black, white and noise images."""
    size = tests[0].size
    cols = [(t, photo_index if t.n > photo_index else 0) for t in tests]
    fig, axes = plt.subplots(len(results) + 1, len(cols) + 1, figsize=(1.6 * (len(cols) + 1), 1.6 * (len(results) + 1)))
    axes[0, 0].imshow(target_map(pattern, size), cmap="gray", vmin=0, vmax=1)
    axes[0, 0].set_title("target", fontsize=8)
    for c, (t, i) in enumerate(cols):
        axes[0, c + 1].imshow(t.rows(i, i + 1)[0])
        axes[0, c + 1].set_title(t.name, fontsize=8)
    for r, (label, res) in enumerate(results.items(), start=1):
        axes[r, 0].text(0.95, 0.5, label.replace(", ", ",\n"), ha="right", va="center", fontsize=7,
                        transform=axes[r, 0].transAxes)
        for c, (t, i) in enumerate(cols):
            axes[r, c + 1].imshow(res.upsampled(t.name, pattern, size, slice(i, i + 1))[0], cmap="gray", vmin=0, vmax=1)
    for ax in axes.ravel():
        off_axes(ax)
    for ax in axes[1:, 0]:
        ax.set_frame_on(False)
    fig.suptitle(f"Fig 6: {pattern} predictions with and without zero padding", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


# ---------------------------------------------------------------- padding modes and the canvas


def ablation_sets(profile: Profile) -> tuple[ImageSet, list[ImageSet], Views]:
    """The image sets of the beyond-the-paper experiments: the first ``ablation_train_n`` training
    images and ``ablation_test_n`` images of each test set; and which larger sets' cached features
    they can view: Table 1's full sets (zero padding) and Table 4's sets (no padding)."""
    train, tests = image_sets(profile)
    t4_train, t4_tests = table4_sets(profile)
    views: Views = {}

    def head(s: ImageSet, n: int | None, unpadded: ImageSet) -> ImageSet:
        h, zeros = head_of(s, n)
        views.update(zeros)
        if unpadded.size == s.size and unpadded.n >= h.n and unpadded.key != h.key:
            views[(h.key, "none")] = (unpadded, h.n)
        return h

    return (head(train, profile.ablation_train_n, t4_train),
            [head(t, profile.ablation_test_n, t4) for t, t4 in zip(tests, t4_tests)], views)


def _not_applicable(spec: EncoderSpec, mode: str, reason: str, tests: list[ImageSet]) -> pd.DataFrame:
    return pd.DataFrame([dict(encoder=spec.label, arch=spec.name, weights=spec.weights, padding=mode, setting=mode,
                              pattern=p, test_set=t.name, **{m.name: np.nan for m in probe_measures()},
                              **{f"{m.name}_undefined": 0 for m in probe_measures() if m.undefined_as_zero},
                              **{c: np.nan for c in BASELINE_COLUMNS} | {"readout_failed": 0},
                              n_images=0, status="n/a", reason=reason)
                         for p in PATTERNS for t in tests])


Seeded = dict[str, list[ProbeResult]]  # "<encoder>, <setting>" -> the probe of each of the encoder's readout seeds


def _modes(profile: Profile, field: str, modes: tuple[str, ...], refused: type[Exception],
           no_network: str) -> Result:
    """Every encoder of ``profile`` with its ``field`` (padding, position) set to each of ``modes``, probed on the
    ablation sets with the encoder's readout seeds, with intervals over seeds and test images and the feature
    measures; a mode the encoder refuses (``refused``) is a row marked "n/a" with the reason. The per-image
    results (``per_image``, ``setting`` = the mode) give paired comparisons of two modes (:func:`mode_contrasts`)."""
    train, tests, views = ablation_sets(profile)
    source, sources = view_features(views), test_sources(profile, tests)
    frames, per_image, results = [], [], {}
    for base in profile.encoders:
        for mode in modes:
            spec = dataclasses.replace(base, **{field: mode})
            if not family_of(base.name).network:
                frames.append(_not_applicable(base, mode, no_network, tests))
                continue
            try:
                seeded = probe_seeds(profile, spec, sets=(train, tests), features=source)
            except refused as err:
                frames.append(_not_applicable(base, mode, err.reason, tests))
                continue
            results[f"{base.label}, {mode}"] = seeded
            summary = with_feature_measures(seeded_summary(seeded, sources), seeded[0], sources, MODES_TABLE)
            frames.append(summary.assign(encoder=base.label, setting=mode, status="ok", reason=""))
            per_image.append(per_image_frame(seeded, sources).assign(encoder=base.label, setting=mode))
    cols = table_columns(KEYS, paper=False, after=["status", "reason"], table=MODES_TABLE)
    per_image = pd.concat(per_image, ignore_index=True) if per_image else pd.DataFrame()
    return Result(pd.concat(frames, ignore_index=True)[cols], per_image, results)


def setting_means(per_image: pd.DataFrame, test_set: str, patterns=PATTERNS) -> pd.DataFrame:
    """Per encoder and setting (a padding mode, a canvas, a positional-embedding mode): the mean SPC over ``patterns``
    on ``test_set`` with its 95% interval over readout seeds and test images, the (image, pattern) cells predicted as
    a constant (undefined SPC, counted as 0), and whether a readout seed behind it failed to train."""
    rows = []
    nat = per_image[(per_image.test_set == test_set) & per_image.pattern.isin(patterns)] if len(per_image) else per_image
    for (enc, setting), d in (nat.groupby(["encoder", "setting"], sort=False) if len(nat) else []):
        e = effect(d, f"{enc}, {setting}", {}, patterns=patterns)
        rows.append(dict(encoder=enc, setting=setting, spc=e.value, ci_low=e.low, ci_high=e.high,
                         undefined=int(d.spc.isna().sum() / max(1, d.seed.nunique())),
                         cells=int(len(d) / max(1, d.seed.nunique())), n_seeds=e.n_seeds, readout_failed=e.failed))
    return pd.DataFrame(rows, columns=["encoder", "setting", "spc", "ci_low", "ci_high", "undefined", "cells", "n_seeds",
                                       "readout_failed"])


def mode_contrasts(per_image: pd.DataFrame, test_set: str, reference: str = "zeros", patterns=PATTERNS) -> pd.DataFrame:
    """Per encoder and mode: the mean SPC over ``patterns`` on ``test_set`` of the ``reference`` mode minus the mode,
    paired over test images and readout seeds, with its 95% interval (the wider of a t-interval over seeds and a
    bootstrap over test images); ``order``: "reference above" or "mode above" where the interval excludes 0, else
    "not distinguishable" (all a sentence may say of the two), or "readout failed"."""
    rows = []
    nat = per_image[per_image.test_set == test_set] if len(per_image) else per_image
    for enc, d in (nat.groupby("encoder", sort=False) if len(nat) else []):
        if reference not in set(d.setting):
            continue
        for mode in dict.fromkeys(d.setting):
            if mode == reference:
                continue
            e = effect(d, f"{enc}: {reference} - {mode}", dict(setting=reference), dict(setting=mode), patterns=patterns)
            order = ("readout failed" if e.failed else "reference above" if e.low > 0 else "mode above" if e.high < 0
                     else "not distinguishable")
            rows.append(dict(encoder=enc, reference=reference, mode=mode, difference=e.value, ci_low=e.low,
                             ci_high=e.high, n_images=e.n_images, n_seeds=e.n_seeds, order=order))
    return pd.DataFrame(rows, columns=["encoder", "reference", "mode", "difference", "ci_low", "ci_high", "n_images",
                                       "n_seeds", "order"])


def _ci(r) -> str:
    return f"{r.difference:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]"


def contrast_sentence(contrasts: pd.DataFrame, test_set: str, noun: str = "mode") -> str:
    """What :func:`mode_contrasts` lets one say, generated from its numbers: for each mode, the encoders in which the
    reference (zero padding) carries more position, those in which it carries less, and those in which the two are
    not distinguishable (the interval of the difference holds 0), each with its difference and interval."""
    if contrasts.empty:
        return f"No padding mode was compared with zero padding on {test_set}."
    ref = contrasts.reference.iloc[0]
    parts = []
    for mode, d in contrasts.groupby("mode", sort=False):
        said = []
        for order, words in (("reference above", f"{ref} above {mode}"), ("mode above", f"{mode} above {ref}"),
                             ("not distinguishable", f"{ref} and {mode} not distinguishable"),
                             ("readout failed", f"{mode}: a readout failed to train")):
            rows = d[d.order == order]
            if len(rows):
                said.append(f"{words} in " + ", ".join(f"{r.encoder} ({_ci(r)})" for r in rows.itertuples()))
        parts.append("; ".join(said))
    later = "".join(f". {p[0].upper()}{p[1:]}" for p in parts[1:])  # each mode's own sentence
    return (f"Mean SPC over the patterns on {test_set}, {ref} minus each {noun} (paired 95% intervals over readout "
            f"seeds and test images): {parts[0]}{later}.")


def padding_modes(profile: Profile) -> Result:
    """SPC and MAE of every encoder under every padding mode (zeros, reflect, replicate, circular,
    none), on the ablation sets with the encoder's readout seeds, and the feature measures
    (:mod:`posenc_utils.engine.measures`) on them; a mode that cannot apply is a row marked "n/a" with the reason (a
    transformer: no layer pads). ``runs``: every seed's probe of each (encoder, mode)."""
    return _modes(profile, "padding", PADDING_MODES, PaddingNotSupportedError,  # ImageTooSmallError included
                  "no encoder, nothing is padded")


def position_modes(profile: Profile) -> Result:
    """The transformer's analogue of :func:`padding_modes` (beyond the paper): every encoder with its positional
    embedding kept, zeroed and shuffled at inference (:mod:`posenc_utils.primitives.positions`), on the ablation sets with the
    encoder's readout seeds; "n/a" with the reason where an encoder has no positional parameters (a CNN: its
    position comes from padding)."""
    found = _modes(profile, "position", POSITION_MODES, PositionNotSupportedError, "no encoder, no positional embedding")
    table, results, per_image = found.table, found.runs, found.per_image
    changed = table[table.setting != POSITION_MODES[0]]
    none = changed.groupby("encoder").status.agg(lambda s: (s == "n/a").all())  # nothing to zero: "kept" means nothing
    for enc in none[none].index:
        at = (table.encoder == enc) & (table.setting == POSITION_MODES[0])
        reason = changed[changed.encoder == enc].reason.iloc[0]
        measures = [c for c in table.columns if c not in KEYS and c not in ("status", "reason")]
        table.loc[at, measures] = np.nan
        table.loc[at, ["status", "reason"]] = ["n/a", reason]
        results = {k: v for k, v in results.items() if not k.startswith(f"{enc}, ")}
        per_image = per_image[per_image.encoder != enc] if len(per_image) else per_image
    return Result(table, per_image, results)


def as_built_canvas(spec: EncoderSpec) -> np.ndarray:
    """The image value (per RGB channel, image units) that an encoder's zero padding stands for:
    its first convolution pads the *preprocessed* image with 0, i.e. the image with preprocess^-1(0)."""
    pre = input_convention(spec)[0]  # known without building the network
    zero, one = pre(torch.zeros(1, 3, 1, 1)).flatten(), pre(torch.ones(1, 3, 1, 1)).flatten()
    return (-zero / (one - zero)).numpy()  # the preprocessing is affine per channel


def border_contrast(image_set: ImageSet, canvas: np.ndarray | str) -> float:
    """Mean |pixel - canvas| over the outermost ring of pixels of every image (image units, RGB mean):
    what a padded convolution sees change at the border."""
    imgs = image_set.rows(0, image_set.n).astype(np.float64) / 255.0
    ring = np.concatenate([imgs[:, 0], imgs[:, -1], imgs[:, 1:-1, 0], imgs[:, 1:-1, -1]], axis=1)  # (N, P, 3)
    fill = imgs.mean(axis=(1, 2), keepdims=True)[:, 0] if isinstance(canvas, str) else np.asarray(canvas)[None, None]
    return float(np.abs(ring - fill).mean())


def canvas(profile: Profile) -> Result:
    """SPC of every encoder when the image sits on a canvas of value v (image units; "mean": each
    image's mean colour) instead of what its zero padding stands for, with the contrast between
    the content at the border and the canvas, per test set (the as-built canvas included); with the encoder's
    readout seeds, intervals over seeds and test images, and every seed's per-image results (``setting``: the
    canvas, as :func:`mode_contrasts` reads them)."""
    train, tests, views = ablation_sets(profile)
    source, sources = view_features(views), test_sources(profile, tests)
    frames, per_image, results = [], [], {}
    for base in (e for e in profile.encoders if family_of(e.name).network):
        built = as_built_canvas(base)
        settings = [("as built", "zeros", built)]
        for v in profile.canvas_values:
            value = canvas_value(f"canvas:{v}")
            fill = value if value == "mean" else np.full(3, value)
            same = value != "mean" and np.allclose(fill, built)  # e.g. black for a random-init encoder: as built
            settings.append((f"canvas {v}", "zeros" if same else f"canvas:{v}", fill))
        for setting, mode, fill in settings:
            seeded = probe_seeds(profile, dataclasses.replace(base, padding=mode), sets=(train, tests), features=source)
            results[f"{base.label}, {setting}"] = seeded
            contrast = {t.name: border_contrast(t, fill) for t in tests}
            canvas_text = "image mean" if isinstance(fill, str) else "/".join(f"{c:.2f}" for c in fill)
            frames.append(seeded_summary(seeded, sources).assign(
                setting=setting, canvas_rgb=canvas_text, encoder=base.label,
                border_contrast=lambda d: d.test_set.map(contrast)))
            per_image.append(per_image_frame(seeded, sources).assign(encoder=base.label, setting=setting))
    cols = table_columns(KEYS, paper=False, after=["canvas_rgb", "border_contrast"], features=False)
    return Result(pd.concat(frames, ignore_index=True)[cols], pd.concat(per_image, ignore_index=True), results)


def canvas_trend(table: pd.DataFrame) -> pd.DataFrame:
    """Per encoder: how SPC follows the input-level contrast (Spearman correlation, over canvases and test
    sets, of the mean SPC over patterns with the border contrast), and SPC on the black image as built
    and on a white canvas."""
    df = table.groupby(["encoder", "setting", "test_set"], sort=False).agg(
        spc=("spc", "mean"), contrast=("border_contrast", "first")).reset_index()
    rows = []
    for enc, d in df.groupby("encoder", sort=False):
        black = d[d.test_set == "black"].set_index("setting").spc
        rows.append(dict(encoder=enc, spc_vs_contrast=float(spearmanr(d.contrast, d.spc).statistic),
                         black_as_built=float(black.get("as built", np.nan)),
                         black_on_white=float(black.get("canvas 1", np.nan))))
    return pd.DataFrame(rows)


def plot_padding_modes(table: pd.DataFrame, path: Path, test_set: str | None = None) -> plt.Figure:
    """A heat map per pattern: SPC on ``test_set`` (by default the table's first, the profile's natural test
    images) by encoder (rows) and padding mode (columns); n/a marked."""
    import seaborn as sns

    test_set = test_set or table.test_set.iloc[0]
    df = table[table.test_set == test_set]
    patterns = list(dict.fromkeys(df.pattern))
    fig, axes = plt.subplots(1, len(patterns), figsize=(2.6 * len(patterns) + 1.5, 0.45 * df.encoder.nunique() + 1.6),
                             sharey=True)
    for k, (ax, p) in enumerate(zip(np.atleast_1d(axes), patterns)):
        cells = df[df.pattern == p]
        grid = cells.pivot_table(index="encoder", columns="padding", values="spc", sort=False,
                                 dropna=False).reindex(columns=list(PADDING_MODES))
        failed = cells.assign(f=cells.get("readout_failed", 0)).pivot_table(
            index="encoder", columns="padding", values="f", sort=False, dropna=False).reindex_like(grid).fillna(0)
        labels = grid.map(lambda v: "n/a" if pd.isna(v) else f"{v:.2f}")
        labels = labels.where(failed.to_numpy() == 0, labels + "\nfailed")
        sns.heatmap(grid, ax=ax, vmin=-0.2, vmax=1, cmap="viridis", annot=labels, fmt="", cbar=k == len(patterns) - 1,
                    annot_kws={"fontsize": 7}, linewidths=0.5, linecolor="white")
        ax.set_facecolor("0.92")  # cells where the mode does not apply
        for (i, j), v in np.ndenumerate(grid.to_numpy()):
            if pd.isna(v):
                ax.text(j + 0.5, i + 0.5, "n/a", ha="center", va="center", fontsize=7, color="0.4")
        ax.set_title(p, fontsize=9)
        ax.set_xlabel("")
        ax.set_ylabel("" if k else "encoder")
        ax.tick_params(labelsize=7)
    fig.suptitle(f"SPC on {test_set} by padding mode (n/a: the mode does not apply)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def plot_canvas(table: pd.DataFrame, path: Path) -> plt.Figure:
    """SPC (mean over patterns) against the border contrast, one panel per encoder, one colour per test set."""
    import seaborn as sns

    df = table.assign(failed=table.get("readout_failed", 0)).groupby(["encoder", "setting", "test_set"], sort=False).agg(
        spc=("spc", "mean"), border_contrast=("border_contrast", "first"), failed=("failed", "max")).reset_index()
    encoders = list(dict.fromkeys(df.encoder))
    fig, axes = plt.subplots(1, len(encoders), figsize=(3.3 * len(encoders), 3.2), sharey=True, squeeze=False)
    for ax, enc in zip(axes[0], encoders):
        d = df[df.encoder == enc]
        sns.scatterplot(d, x="border_contrast", y="spc", hue="test_set", style="setting", ax=ax, s=55,
                        legend=ax is axes[0, -1])
        bad = d[d.failed > 0]
        mark_failed(ax, bad.border_contrast, bad.spc)
        ax.set_title(enc, fontsize=8)
        ax.set_xlabel("|content - canvas| at the border")
        ax.set_ylim(-0.15, 1.02)
    axes[0, 0].set_ylabel("SPC, mean over patterns")
    if axes[0, -1].get_legend() is not None:
        axes[0, -1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle("SPC against the contrast between the image's border and the canvas it is padded with", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


# ---------------------------------------------------------------- distance to the border


def distance_to_border(size: int) -> np.ndarray:
    """Each pixel's distance (in pixels) to the nearest image border: 0 on the outermost ring."""
    i = np.arange(size)
    d = np.minimum(i, size - 1 - i)
    return np.minimum(d[:, None], d[None, :])


def border_distance(results: Seeded, test_set: str, size: int, bin_px: int = 8,
                    band_px: int | None = None, patterns=("H", "V", "G")) -> Result:
    """Per-pixel |target - prediction| of the ``patterns`` readouts against the distance to the nearest
    border, and SPC on the central region versus the border band, for every probe result (every seed's).

    Returns the errors (encoder, padding, seed, image, distance bin (its lower edge, px), mean absolute error
    over the patterns) and, as ``more["regions"]``, SPC per region (encoder, padding, seed, image, pattern, region,
    spc). The border band is
    the outer ``band_px`` pixels (default size/8); the centre is everything at least size/4 from
    the border (the two leave a ring between them out, so neither borrows from the other).
    """
    dist = distance_to_border(size)
    band_px = band_px or size // 8
    bins = (dist // bin_px) * bin_px
    regions = {"border band": dist < band_px, "centre": dist >= size // 4}
    err_rows, spc_rows = [], []
    for res in (r for seeded in results.values() for r in seeded):
        who = dict(encoder=dataclasses.replace(res.encoder, padding="zeros").label, padding=res.encoder.padding,
                   seed=res.seed)
        preds = {p: res.upsampled(test_set, p, size) for p in patterns}
        err = np.mean([np.abs(preds[p] - target_map(p, size)[None]) for p in patterns], axis=0)  # (N, S, S)
        for b in np.unique(bins):
            for i, e in enumerate(err[:, bins == b].mean(axis=1)):
                err_rows.append(dict(who, image=i, distance=int(b), error=float(e)))
        for p in patterns:
            t = target_map(p, size)
            for region, mask in regions.items():
                for i, s in enumerate(spc(preds[p][:, mask], t[mask])):
                    spc_rows.append(dict(who, image=i, pattern=p, region=region, spc=float(s)))
    return Result(pd.DataFrame(err_rows), more={"regions": pd.DataFrame(spc_rows)})


def region_means(regions: pd.DataFrame, sources: np.ndarray | None = None) -> pd.DataFrame:
    """SPC per encoder and padding on the border band and on the centre (mean over images, patterns and seeds,
    undefined counted as 0), side by side, with their difference and its 95% interval (paired per image and seed:
    the wider of a t-interval over seeds and a bootstrap over test images, resampling ``sources``, each image's
    source photograph, where given)."""
    rows = []
    for (enc, pad), d in regions.fillna({"spc": 0.0}).groupby(["encoder", "padding"], sort=False):
        cells = d.pivot_table(index=["seed", "image"], columns="region", values="spc", aggfunc="mean")
        diff = cells["centre"] - cells["border band"]
        images = diff.index.get_level_values("image").unique()
        src = pd.Series(np.asarray(sources)[images] if sources is not None else images, index=images)
        lo, hi, _, n_seeds = paired_interval(diff, src)
        rows.append({"encoder": enc, "padding": pad, "border band": float(cells["border band"].mean()),
                     "centre": float(cells["centre"].mean()), "centre_minus_border": float(diff.mean()),
                     "ci_low": lo, "ci_high": hi, "n_seeds": n_seeds})
    return pd.DataFrame(rows)


BORDER_TITLE = "Readout error against the distance to the border (H, V, G; test photos)"


def plot_border_distance(errors: pd.DataFrame, path: Path, title: str = BORDER_TITLE) -> plt.Figure:
    """Mean absolute error against the distance to the border, one panel per encoder, one line per
    padding mode, with 95% bands over test images (mean +- 1.96 standard errors; seaborn's bootstrap
    band took longer to draw than the rest of the figure)."""
    import seaborn as sns

    grid = sns.relplot(errors, x="distance", y="error", hue="padding", col="encoder", kind="line",
                       errorbar=("se", 1.96), col_wrap=min(4, errors.encoder.nunique()),
                       height=2.6, aspect=1.1, hue_order=[m for m in PADDING_MODES if m in set(errors.padding)])
    grid.set_titles("{col_name}", size=8)
    grid.set_axis_labels("distance to the nearest border (px)", "|target - prediction|")
    grid.figure.suptitle(title, fontsize=10)
    grid.figure.tight_layout()
    sns.move_legend(grid, "upper left", bbox_to_anchor=(1.0, 0.9))
    save_figure(grid.figure, path)
    return grid.figure


# ---------------------------------------------------------------- products (posenc_utils.primitives.products)

TABLE4 = declare("table4_padding", "03", "table", role="Table 4", made_by=table4, claims=(7,), frame="table4",
                 per_image=True, budget="table", readme="padding")
CLAIM7 = declare("claim7", "03", "markdown", claims=(7,), readme="padding")
FIG6 = declare("fig6_padding_gaussian", "03", "figure", role="Fig 6", made_by=fig6_padding_gaussian, grid=True,
               readme="padding")
MODES = declare("padding_modes", "03", "table", made_by=padding_modes, per_image=True, readme="padding")
FIG_MODES = declare("fig_padding_modes", "03", "figure", made_by=plot_padding_modes, drawn_from=MODES,
                    draw=plot_padding_modes, readme="padding")
CONTRASTS = declare("padding_mode_contrasts", "03", "table", made_by=mode_contrasts, readme="padding")
CANVAS = declare("canvas", "03", "table", made_by=canvas, per_image=True, readme="padding")
FIG_CANVAS = declare("fig_canvas", "03", "figure", made_by=plot_canvas, drawn_from=CANVAS, draw=plot_canvas,
                     readme="padding")
BORDER_DISTANCE = declare("border_distance", "03", "csv", made_by=border_distance, readme="padding")
FIG_BORDER_DISTANCE = declare("fig_border_distance", "03", "figure", made_by=plot_border_distance,
                              drawn_from=BORDER_DISTANCE, draw=plot_border_distance, readme="padding")
BORDER_REGIONS = declare("border_regions", "03", "table", made_by=region_means, readme="padding")
