"""Notebook 04: where position information lives and how much of it a readout can take out.

* :func:`readout_capacity`: the paper's Table 2: (a) 1, 2 and 3 stacked 3x3 layers and (b) one
  1x1, 3x3 or 7x7 layer, for PosENet and each pretrained VGG16 of the profile on the paper's patterns
  (H, G, HS); Fig 5 is drawn from it.
* :func:`per_stage`: Table 3 for every encoder: the readout on one stage at a time (f1 .. f5) and on
  all five, by channel selection from the cached all-stage features (never extracted again).
* :func:`error_maps`, :func:`content_error`: Fig 7 and claim 8 made quantitative: is the readout's
  error larger on image content (strong gradients) than elsewhere?
* :func:`positive_control`: the same readouts on explicit coordinate channels (CoordConv): what each
  readout can express at all.
* :func:`capacity_per_image`, :func:`stage_per_image`: the per-image metrics behind Tables 2 and 3,
  which claims 5 and 6 are decided on (:mod:`posenc_utils.studies.claims`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import ndimage

from . import budget
from ..engine import tables
from ..engine.evidence import effect
from .experiments import (Probe, ProbeResult, Result, head_of, image_sets, per_image_frame, probe,
                          seeded_summary, test_sources, train_probes, view_features, with_feature_measures)
from ..models.families import family_of
from ..engine.images import OBJECT_KINDS, ImageSet, build_image_set, object_masks
from ..engine.measures import BASELINE_COLUMNS, probe_measures, table_columns
from ..primitives.metrics import cluster_bootstrap_ci
from ..engine.plots import fig4_qualitative, mark_failed, off_axes, save_figure
from ..primitives.products import declare
from ..models.profiles import EncoderSpec, ImageSetSpec, Profile, ReadoutSpec
from ..primitives.targets import PATTERNS, target_map

DEPTHS = (1, 2, 3)
KERNELS = (1, 3, 7)
TABLE2_PATTERNS = ("H", "G", "HS")  # the paper's Table 2
KEYS = ["encoder", "arch", "weights", "setting", "pattern", "test_set"]  # then the measures' columns


def capacity_sets(profile: Profile) -> tuple[ImageSet, list[ImageSet], dict]:
    """Training set of Tables 2 and 3 (the first ``capacity_train_n`` images) and the test sets, with
    the view of Table 1's cached features for that head."""
    train, tests = image_sets(profile)
    head, views = head_of(train, profile.capacity_train_n)
    return head, tests, views


def capacity_settings(profile: Profile, depths=DEPTHS, kernels=KERNELS, widths=None) -> list[tuple[str, str, str, ReadoutSpec]]:
    """(table, our setting, the paper's setting name, readout) of Table 2a and 2b; ``widths``: Table 2a's stacked
    readouts at each of these widths per head (None in it: C -> C) instead of the profile's ``readout_width``."""
    base = profile.readout
    out = []
    for d in depths:
        for w in ((profile.readout_width,) if widths is None else tuple(widths)) if d > 1 else (None,):
            out.append(("table2a", f"{d} layer{'s' if d > 1 else ''}, 3x3" + (f", width {w}" if w else ""),
                        f"{d} layer(s), 3x3", dataclasses.replace(base, n_layers=d, kernel=3, width=w)))
    out += [("table2b", f"1 layer, {k}x{k}", f"1 layer, {k}x{k}", dataclasses.replace(base, kernel=k))
            for k in kernels]
    return out


def _capacity_encoders(profile: Profile, posenet: bool = True) -> list[EncoderSpec]:
    """PosENet (``posenet``) and the profile's pretrained VGG16s: the paper's Table 2 rows (random-init rows decide no
    claim)."""
    vggs = [e for e in profile.encoders if e.name == "vgg16" and e.pretrained]
    return ([EncoderSpec("posenet", "none")] if posenet else []) + vggs


def capacity_probes(profile: Profile, depths=DEPTHS, kernels=KERNELS, widths=None, posenet: bool = True) -> list[Probe]:
    """The probes of :func:`readout_capacity`: each encoder with each readout of the settings (once: 1 layer 3x3
    is in both tables, and is Table 1's, on five patterns), for each of the encoder's readout seeds."""
    train, tests, views = capacity_sets(profile)
    source, out = view_features(views), []
    for spec in _capacity_encoders(profile, posenet):
        for readout in dict.fromkeys(r for *_, r in capacity_settings(profile, depths, kernels, widths)):
            patterns = PATTERNS if readout == profile.readout else TABLE2_PATTERNS
            out += [(profile, dict(spec=spec, patterns=patterns, readout=readout, sets=(train, tests), features=source,
                                   seed=s)) for s in profile.seeds_for(spec)]
    return out


Runs = dict[str, dict[str, list[ProbeResult]]]  # encoder label -> setting -> the probe of each readout seed


def readout_capacity(profile: Profile, depths=DEPTHS, kernels=KERNELS, widths=None, posenet: bool = True) -> Result:
    """Table 2a (depth; ``more["table2b"]``: 2b, kernel size) for PosENet and every pretrained VGG16 of the profile, on the
    paper's patterns (H, G, HS), every test set, the paper's values beside ours (averaged over the encoder's
    readout seeds, with intervals over seeds and over test images); every seed's per-image metrics
    (:func:`capacity_per_image`: what claim 5 reads); and the probe results per encoder, setting and seed. The 1-layer 3x3 readout is Table 1's (five patterns, cached). ``widths``: the stacked readouts at each of
    these widths per head (None: C -> C) instead of the profile's ``readout_width`` (the width sweep); ``posenet``:
    PosENet's rows too."""
    probes = capacity_probes(profile, depths, kernels, widths, posenet)
    train_probes(probes)
    done: dict = {}
    for p, kw in probes:
        done.setdefault((kw["spec"], kw["readout"]), []).append(probe(p, **kw))
    photos = test_sources(profile, capacity_sets(profile)[1])
    frames, results = {"table2a": [], "table2b": []}, {}
    for spec in _capacity_encoders(profile, posenet):
        results[spec.label] = {}
        for table, setting, paper_setting, readout in capacity_settings(profile, depths, kernels, widths):
            seeded = done[(spec, readout)]
            results[spec.label].setdefault(setting, seeded)
            summary = seeded_summary(seeded, photos)
            frames[table].append(summary[summary.pattern.isin(TABLE2_PATTERNS)].assign(setting=setting,
                                                                                       paper_setting=paper_setting))
    out = []
    for table in ("table2a", "table2b"):
        df = tables.with_paper(pd.concat(frames[table], ignore_index=True), profile, table) if frames[table] else \
            pd.DataFrame(columns=table_columns(KEYS, features=False))
        out.append(df[table_columns(KEYS, features=False)])
    return Result(out[0], capacity_per_image(profile, results, depths, kernels, widths), results, {"table2b": out[1]})


def first_seeds(runs: dict[str, list[ProbeResult]]) -> dict[str, ProbeResult]:
    """Each setting's first readout seed (what the qualitative figures show)."""
    return {setting: seeded[0] for setting, seeded in runs.items()}


def capacity_per_image(profile: Profile, results: Runs, depths=DEPTHS, kernels=KERNELS, widths=None) -> pd.DataFrame:
    """The per-image metrics behind Tables 2a and 2b (the paper's patterns), every seed's, with each row's readout:
    table, setting, layers, kernel, width (NaN: C -> C or a single layer)."""
    photos = test_sources(profile, image_sets(profile)[1])
    frames = []
    for by_setting in results.values():
        for table, setting, _paper, readout in capacity_settings(profile, depths, kernels, widths):
            f = per_image_frame(by_setting[setting], photos)
            frames.append(f[f.pattern.isin(TABLE2_PATTERNS)].assign(
                table=table, setting=setting, layers=readout.n_layers, kernel=readout.kernel,
                width=float(readout.width) if readout.width and readout.n_layers > 1 else float("nan")))
    return pd.concat(frames, ignore_index=True)


def with_sweep(per_image: pd.DataFrame, sweep: pd.DataFrame | None) -> pd.DataFrame:
    """Table 2's per-image results with the width sweep's (:mod:`posenc_utils.studies.extended`; the readouts both hold,
    1 layer and the profile's own width, once): what claim 5 is decided on."""
    if sweep is None or sweep.empty:
        return per_image
    keys = ["encoder", "table", "setting", "seed", "test_set", "image", "pattern"]
    return pd.concat([per_image, sweep], ignore_index=True).drop_duplicates(keys, ignore_index=True)


def plot_width_sweep(sweep: pd.DataFrame, path: Path, test_set: str | None = None) -> plt.Figure:
    """Mean SPC over the paper's patterns against the stacked readout's width per head, one line per depth, one
    panel per encoder, with 95% intervals (the wider of those over seeds and over test images, averaged over the
    patterns); the 1-layer readout as a dashed level; a readout that failed to train marked with a cross."""
    test_set = test_set or sweep.test_set.iloc[0]
    d = sweep[(sweep.test_set == test_set) & sweep.pattern.isin(TABLE2_PATTERNS)].copy()
    d["width"] = d.setting.str.extract(r"width (\d+)")[0].astype(float)
    d["layers"] = d.setting.str.extract(r"^(\d) layer")[0].astype(int)
    d["low"] = d[["spc_ci_low", "spc_boot_low"]].min(axis=1)
    d["high"] = d[["spc_ci_high", "spc_boot_high"]].max(axis=1)
    encoders = list(dict.fromkeys(d.encoder))
    fig, axes = plt.subplots(1, len(encoders), figsize=(4.2 * len(encoders), 3.3), squeeze=False, sharey=True)
    for ax, enc in zip(axes[0], encoders):
        e = d[d.encoder == enc].groupby(["layers", "width"], dropna=False).agg(
            spc=("spc", "mean"), low=("low", "mean"), high=("high", "mean"), failed=("readout_failed", "max")).reset_index()
        one = e[e.layers == 1]
        if len(one):
            ax.axhline(one.spc.iloc[0], color="grey", ls="--", lw=1, label="1 layer")
        for layers, g in e[e.layers > 1].groupby("layers"):
            g = g.sort_values("width")
            ax.errorbar(g.width, g.spc, yerr=[g.spc - g.low, g.high - g.spc], marker="o", capsize=3,
                        label=f"{layers} layers")
            bad = g[g.failed > 0]
            mark_failed(ax, bad.width, bad.spc)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(e.width.dropna().unique()), [f"{w:.0f}" for w in sorted(e.width.dropna().unique())])
        ax.set_title(enc, fontsize=9)
        ax.set_xlabel("channels per pattern in the stacked layers")
    axes[0, 0].set_ylabel(f"SPC on {test_set}, mean of {', '.join(TABLE2_PATTERNS)}")
    axes[0, -1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle("Claim 5: stacked readouts of growing width (95% intervals over readout seeds and test images)",
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def _stages(profile: Profile, encoders: tuple[EncoderSpec, ...] | None) -> list[tuple[EncoderSpec, str, tuple | None, str, int, dict]]:
    """Table 3's rows: (encoder, setting, taps, tap, stage, the probe's keyword arguments but the seed) for each
    stage of each encoder with a network, and all stages."""
    train, tests, views = capacity_sets(profile)
    source, out = view_features(views), []
    for spec in (e for e in (profile.encoders if encoders is None else encoders) if family_of(e.name).network):
        taps = source(profile, spec, train).tap_names
        stages = [(f"features f{i + 1}", (t,), t, i + 1) for i, t in enumerate(taps)]
        stages.append((f"features f1-f{len(taps)}", None, "all", len(taps) + 1))
        out += [(spec, setting, sel, tap, stage, dict(spec=spec, taps=sel, sets=(train, tests), features=source))
                for setting, sel, tap, stage in stages]
    return out


def stage_probes(profile: Profile, encoders: tuple[EncoderSpec, ...] | None = None) -> list[Probe]:
    """The probes of :func:`per_stage`: each stage with each of its encoder's readout seeds."""
    return [(profile, dict(kw, seed=s)) for *_, kw in _stages(profile, encoders) for s in profile.seeds_for(kw["spec"])]


def per_stage(profile: Profile, encoders: tuple[EncoderSpec, ...] | None = None) -> Result:
    """Table 3 for every encoder (PosENet has no stages; ``encoders``: the profile's by default): the readout
    on stage f1 .. f5 alone and on all five, by selecting the stage's channels from the cached features,
    with the feature measures (:mod:`posenc_utils.engine.measures`) over the same channels, averaged over the encoder's
    readout seeds (:meth:`Profile.seeds_for`); every seed's per-image metrics (:func:`stage_per_image`: what claim 6
    reads); and every seed's probe of each row. The readout on all five is Table 1's (cached)."""
    photos = test_sources(profile, capacity_sets(profile)[1])
    frames, results = [], {}
    train_probes(stage_probes(profile, encoders))
    for spec, setting, sel, tap, stage, kw in _stages(profile, encoders):
        seeded = [probe(profile, seed=s, **kw) for s in profile.seeds_for(spec)]
        results[f"{spec.label}, {setting}"] = seeded
        frames.append(with_feature_measures(seeded_summary(seeded, photos), seeded[0], photos, "table3").assign(
            setting=setting, paper_setting=setting, tap=tap, stage=stage, all_stages=sel is None))
    df = tables.with_paper(pd.concat(frames, ignore_index=True), profile, "table3")
    table = df[table_columns(KEYS, middle=["tap", "stage", "all_stages"], table="table3")]
    return Result(table, stage_per_image(profile, table, results), results)


def stage_per_image(profile: Profile, table3: pd.DataFrame, results: dict[str, list[ProbeResult]]) -> pd.DataFrame:
    """The per-image metrics behind Table 3 (every seed's), with each row's setting, stage and whether it is all
    stages."""
    photos = test_sources(profile, image_sets(profile)[1])
    rows = table3.drop_duplicates(["encoder", "setting"])
    return pd.concat([per_image_frame(results[f"{r.encoder}, {r.setting}"], photos).assign(
        setting=r.setting, stage=r.stage, all_stages=r.all_stages) for r in rows.itertuples()], ignore_index=True)


def budget_settings(profile: Profile) -> tuple[tuple[int, ...], tuple[int, ...], tuple[EncoderSpec, ...]]:
    """What the training-budget check of claims 5 and 6 trains again (``budget.larger_budget``): 1 layer and the
    deepest readout of Table 2 (at the profile's width; the width sweep checks its widest itself), the smallest and
    largest kernel, and Table 3 of the profile's pretrained VGG16s."""
    depths = (DEPTHS[0], DEPTHS[-1])
    vggs = tuple(e for e in budget.larger_budget(profile).encoders if e.name == "vgg16")
    return depths, (KERNELS[0], KERNELS[-1]), vggs


def notebook_probes(profile: Profile) -> list[Probe]:
    """Every probe of notebook 04 that trains a readout: Tables 2 and 3, the positive control, the budget curve and
    the budget check of Tables 2 and 3. Trained at once (``experiments.train_probes``), the readouts of one
    feature set share their passes over it, the budget check's included, and PosENet's train side by side."""
    larger = budget.larger_budget(profile)
    depths, kernels, vggs = budget_settings(profile)
    return (capacity_probes(profile) + stage_probes(profile) + capacity_probes(larger, depths, kernels)
            + stage_probes(larger, vggs) + control_probes(profile) + budget.curve_probes(profile))


def plot_stage_trend(table: pd.DataFrame, path: Path, test_set: str | None = None) -> plt.Figure:
    """SPC (mean over patterns) against the stage, one line per encoder; "all" at the right. ``test_set``:
    by default the table's first, the profile's natural test images."""
    import seaborn as sns

    test_set = test_set or table.test_set.iloc[0]
    d = table[table.test_set == test_set]
    df = d.assign(failed=d.get("readout_failed", 0)).groupby(["encoder", "stage", "all_stages"], sort=False).agg(
        spc=("spc", "mean"), failed=("failed", "max")).reset_index()
    last = int(df[~df.all_stages].stage.max())
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    palette = dict(zip(df.encoder.unique(), sns.color_palette(n_colors=df.encoder.nunique())))
    sns.lineplot(df[~df.all_stages], x="stage", y="spc", hue="encoder", marker="o", ax=ax, palette=palette)
    for _, row in df[df.all_stages].iterrows():
        ax.scatter([last + 1], [row.spc], marker="*", s=120, color=palette[row.encoder])
    bad = df[df.failed > 0]
    mark_failed(ax, np.where(bad.all_stages, last + 1, bad.stage), bad.spc)
    ax.set_xticks(range(1, last + 2), [f"f{i}" for i in range(1, last + 1)] + [f"f1-f{last}"])
    ax.set_xlabel("stage the readout sees")
    ax.set_ylabel(f"SPC on {test_set}, mean of 5 patterns")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Position information by depth (stars: all five stages)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


# ---------------------------------------------------------------- the positive control


def control_probes(profile: Profile) -> list[Probe]:
    """The probes of :func:`positive_control`, one per Table 2 setting."""
    train, tests, _ = capacity_sets(profile)
    return [(profile, dict(spec=EncoderSpec("coords", "none"), readout=readout, sets=(train, [tests[0].head(1)])))
            for *_, readout in capacity_settings(profile)]


def positive_control(profile: Profile) -> Result:
    """Every Table 2 readout trained on coordinate channels (x, y) instead of features: what it can
    express at all. The input is the same for every image, so one test image says everything."""
    probes = control_probes(profile)
    train_probes(probes)
    frames = []
    for (table, setting, _paper, _readout), (p, kw) in zip(capacity_settings(profile), probes):
        res = probe(p, **kw)
        frames.append(res.summary().assign(setting=setting, table=table))
    return Result(pd.concat(frames, ignore_index=True)[["encoder", "table", "setting", "pattern", "test_set",
                                                        *(m.name for m in probe_measures()), *BASELINE_COLUMNS]])


# ---------------------------------------------------------------- Fig 7: where the readout fails


def error_maps(result: ProbeResult, test_set: ImageSet, patterns=("H", "V", "G")) -> np.ndarray:
    """Per-pixel mean |target - prediction| over ``patterns`` at the image size, (N, S, S)."""
    size = test_set.size
    return np.mean([np.abs(result.upsampled(test_set.name, p, size) - target_map(p, size)[None]) for p in patterns],
                   axis=0)


def content_maps(images: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Gradient magnitude of each image (grey, Gaussian-smoothed Sobel), scaled to [0, 1] per image:
    where the image has content (edges, texture, objects) as opposed to flat regions."""
    grey = images.astype(np.float64).mean(axis=-1) / 255.0
    out = np.empty_like(grey)
    for i, g in enumerate(grey):
        g = ndimage.gaussian_filter(g, sigma)
        mag = np.hypot(ndimage.sobel(g, 0), ndimage.sobel(g, 1))
        out[i] = mag / mag.max() if mag.max() > 0 else mag
    return out


def content_error(errors: np.ndarray, content: np.ndarray, quantile: float = 0.75) -> np.ndarray:
    """Per image: mean error on content pixels (the top ``1 - quantile`` of the content map) divided
    by the mean error on the other pixels. 1 means no preference; > 1, errors concentrate on content."""
    ratios = np.empty(len(errors))
    for i, (e, c) in enumerate(zip(errors, content)):
        mask = c >= np.quantile(c, quantile)
        ratios[i] = e[mask].mean() / e[~mask].mean() if mask.any() and (~mask).any() else np.nan
    return ratios


def content_error_table(results: dict[str, ProbeResult], photos: ImageSet, sources: np.ndarray | None = None,
                        level: float = 0.95) -> Result:
    """Claim 8 per encoder: the mean content/elsewhere error ratio over test photos with a bootstrap
    interval that resamples source photographs (``table``); and the per-image ratios (``per_image``)."""
    content = content_maps(photos.rows(0, photos.n))
    per_image, rows = [], []
    for label, res in results.items():
        ratios = content_error(error_maps(res, photos), content)
        groups = sources if sources is not None else np.arange(len(ratios))
        lo, hi = cluster_bootstrap_ci(ratios, groups, np.nanmean, level=level)
        rows.append(dict(encoder=label, ratio=float(np.nanmean(ratios)), ci_low=lo, ci_high=hi, n_images=len(ratios),
                         n_sources=len(np.unique(groups))))
        per_image.append(pd.DataFrame(dict(encoder=label, arch=res.encoder.name, weights=res.encoder.weights,
                                           image=np.arange(len(ratios)), source=groups, ratio=ratios)))
    return Result(pd.DataFrame(rows), pd.concat(per_image, ignore_index=True), results)


# ---------------------------------------------------------------- claim 8 on content that is content

OBJECT_SEED = 3  # the scenes' seed (the training images are dead leaves; the photos crops of shipped photographs)


def object_sets(profile: Profile) -> tuple[ImageSet, ImageSet, np.ndarray]:
    """The object scenes, the same backgrounds without the object (``profile.object_scenes`` each, at the profile's
    image size) and the objects' masks."""
    specs = [ImageSetSpec(name, kind, n=profile.object_scenes, seed=OBJECT_SEED)
             for name, kind in zip(("objects", "backgrounds"), OBJECT_KINDS)]
    return (*(build_image_set(s, profile.image_size) for s in specs), object_masks(specs[0], profile.image_size))


def object_probes(profile: Profile) -> list[Probe]:
    """The probes of :func:`object_error`: Table 1's readouts (every encoder, each readout seed) on the two sets."""
    train = image_sets(profile)[0]
    objects, backgrounds, _ = object_sets(profile)
    return [(profile, dict(spec=spec, seed=s, sets=(train, [objects, backgrounds])))
            for spec in profile.encoders for s in profile.seeds_for(spec)]


def object_error(profile: Profile) -> Result:
    """Claim 8 on content that is content: per encoder, the readout's error (mean |target - prediction| of the H, V
    and G heads, Table 1's readouts) on an object's pixels divided by its error at the same pixels of the same
    background without the object, per image and readout seed (``per_image``: ratio, and whether a head failed to
    train); the table gives each encoder's mean ratio with its interval (the wider of a t-interval over seeds and a
    bootstrap over scenes) and PosENet's, the measure's floor: a readout that finds no position, whose error the
    object changes only through its pixel values."""
    objects, backgrounds, masks = object_sets(profile)
    frames = []
    for p, kw in object_probes(profile):
        res = probe(p, **kw)
        on, off = error_maps(res, objects), error_maps(res, backgrounds)
        ratio = np.array([a[m].mean() / b[m].mean() for a, b, m in zip(on, off, masks)])
        failed = any(res.readout.failed_heads(profile.image_size)[q] for q in ("H", "V", "G"))
        spec = kw["spec"]
        frames.append(pd.DataFrame(dict(encoder=spec.label, arch=spec.name, weights=spec.weights, seed=kw["seed"],
                                        image=np.arange(len(ratio)), source=np.arange(len(ratio)), ratio=ratio,
                                        object_share=masks.mean(axis=(1, 2)), readout_failed=failed)))
    per_image = pd.concat(frames, ignore_index=True)
    rows = []
    for enc, d in per_image.groupby("encoder", sort=False):
        e = effect(d, enc, {}, patterns=None, column="ratio")
        floor = effect(per_image, f"{enc} - PosENet", dict(encoder=enc), dict(arch="posenet"), patterns=None,
                       column="ratio") if d.arch.iloc[0] != "posenet" else None
        rows.append(dict(encoder=enc, ratio=e.value, ci_low=e.low, ci_high=e.high,
                         minus_posenet=floor.value if floor else np.nan, minus_posenet_low=floor.low if floor else np.nan,
                         minus_posenet_high=floor.high if floor else np.nan, n_images=e.n_images, n_seeds=e.n_seeds,
                         readout_failed=int(d.groupby("seed").readout_failed.first().sum())))
    return Result(pd.DataFrame(rows), per_image, {})


def fig_object_error(profile: Profile, path: Path, indices=(0, 1, 2)) -> plt.Figure:
    """Sample scenes with and without their object, the object's mask, and each encoder's error map (first readout
    seed, H, V, G) on both."""
    objects, backgrounds, masks = object_sets(profile)
    train = image_sets(profile)[0]
    runs = {s.label: probe(profile, s, sets=(train, [objects, backgrounds])) for s in profile.encoders}
    cols = 3 + 2 * len(runs)
    fig, axes = plt.subplots(len(indices), cols, figsize=(1.45 * cols, 1.6 * len(indices)), squeeze=False)
    errs = {label: (error_maps(r, objects), error_maps(r, backgrounds)) for label, r in runs.items()}
    for row, i in enumerate(indices):
        panels = [(objects.rows(i, i + 1)[0], None), (backgrounds.rows(i, i + 1)[0], None), (masks[i], "gray")]
        for on, off in errs.values():
            panels += [(on[i], "jet"), (off[i], "jet")]
        for ax, (im, cmap) in zip(axes[row], panels):
            ax.imshow(im, cmap=cmap, vmin=0 if cmap else None, vmax=1 if cmap else None)
            off_axes(ax)
    titles = ["scene", "without the object", "object"] + [f"{label}\n{w}" for label in errs for w in ("with", "without")]
    for ax, title in zip(axes[0], titles):
        ax.set_title(title.replace(" (", "\n("), fontsize=6)
    fig.suptitle("Claim 8: readout error |target - prediction| (H, V, G) with and without the object (blue 0, red 1)",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def fig7_error_maps(results: dict[str, ProbeResult], photos: ImageSet, path: Path, indices=(0, 1, 2)) -> plt.Figure:
    """Fig 7: for sample photos, the image, its content map and each encoder's error map (H, V, G)."""
    imgs = photos.rows(0, photos.n)
    content = content_maps(imgs)
    errs = {label: error_maps(res, photos) for label, res in results.items()}
    cols = 2 + len(errs)
    fig, axes = plt.subplots(len(indices), cols, figsize=(1.7 * cols, 1.8 * len(indices)), squeeze=False)
    for r, i in enumerate(indices):
        axes[r, 0].imshow(imgs[i])
        axes[r, 1].imshow(content[i], cmap="gray")
        for c, (label, e) in enumerate(errs.items()):
            axes[r, 2 + c].imshow(e[i], cmap="jet", vmin=0, vmax=1)
        for ax in axes[r]:
            off_axes(ax)
    for c, title in enumerate(["photo", "content (gradient)"] + list(errs)):
        axes[0, c].set_title(title.replace(" (", "\n("), fontsize=7)
    fig.suptitle("Fig 7: readout error |target - prediction|, mean of H, V, G (blue 0, red 1)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


# ---------------------------------------------------------------- products (posenc_utils.primitives.products)

TABLE2A = declare("table2a_readout_depth", "04", "table", role="Table 2a", made_by=readout_capacity, readme="layers")
TABLE2B = declare("table2b_kernel_size", "04", "table", role="Table 2b", made_by=readout_capacity, readme="layers")
TABLE2 = declare("table2_readout_capacity", "04", "frame", role="Tables 2a and 2b", made_by=readout_capacity,
                 claims=(5,), frame="table2", budget="frame")
FIG5 = declare("fig5_readout_capacity", "04", "figure", role="Fig 5", made_by=fig4_qualitative, grid=True,
               readme="layers")
CONTROL = declare("positive_control", "04", "table", made_by=positive_control, readme="layers")
TABLE3 = declare("table3_per_stage", "04", "table", role="Table 3", made_by=per_stage, claims=(6,), frame="table3",
                 per_image=True, budget="frame", readme="layers")
FIG_STAGES = declare("fig_stage_trend", "04", "figure", made_by=plot_stage_trend, drawn_from=TABLE3,
                     draw=plot_stage_trend, readme="layers")
FIG7 = declare("fig7_error_maps", "04", "figure", role="Fig 7", made_by=fig7_error_maps, grid=True, readme="layers")
CONTENT = declare("content_error", "04", "table", role="Fig 7", made_by=content_error_table, per_image=True,
                  readme="layers")
OBJECTS = declare("object_error", "04", "table", made_by=object_error, claims=(8,), frame="objects", per_image=True,
                  budget="frame", readme="layers")
FIG_OBJECTS = declare("fig_object_error", "04", "figure", made_by=fig_object_error, grid=True, readme="layers")
CLAIMS_5_6_8 = declare("claims_5_6_8", "04", "markdown", claims=(5, 6, 8), readme="layers")
