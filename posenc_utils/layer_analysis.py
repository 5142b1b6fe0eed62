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
  which claims 5 and 6 are decided on (:mod:`posenc_utils.claims`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import ndimage

from . import budget, tables
from .experiments import (Probe, ProbeResult, TableResult, head_of, image_sets, per_image_frame, probe,
                          seeded_summary, test_sources, train_probes, view_features, with_feature_measures)
from .families import family_of
from .images import ImageSet
from .measures import BASELINE_COLUMNS, probe_measures, table_columns
from .metrics import cluster_bootstrap_ci
from .plots import off_axes, save_figure
from .profiles import EncoderSpec, Profile, ReadoutSpec
from .targets import PATTERNS, target_map

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


def capacity_settings(profile: Profile, depths=DEPTHS, kernels=KERNELS) -> list[tuple[str, str, str, ReadoutSpec]]:
    """(table, our setting, the paper's setting name, readout) of Table 2a and 2b."""
    base = profile.readout
    out = [("table2a", f"{d} layer{'s' if d > 1 else ''}, 3x3" + (f", width {profile.readout_width}"
                                                                  if d > 1 and profile.readout_width else ""),
            f"{d} layer(s), 3x3",
            dataclasses.replace(base, n_layers=d, kernel=3, width=profile.readout_width if d > 1 else None))
           for d in depths]
    out += [("table2b", f"1 layer, {k}x{k}", f"1 layer, {k}x{k}", dataclasses.replace(base, kernel=k))
            for k in kernels]
    return out


def _capacity_encoders(profile: Profile) -> list[EncoderSpec]:
    """PosENet and the profile's pretrained VGG16s: the paper's Table 2 rows (random-init rows decide no claim)."""
    return [EncoderSpec("posenet", "none")] + [e for e in profile.encoders if e.name == "vgg16" and e.pretrained]


def capacity_probes(profile: Profile, depths=DEPTHS, kernels=KERNELS) -> list[Probe]:
    """The probes of :func:`readout_capacity`: each encoder with each readout of the settings (once: 1 layer 3x3
    is in both tables, and is Table 1's, on five patterns)."""
    train, tests, views = capacity_sets(profile)
    source, out = view_features(views), []
    for spec in _capacity_encoders(profile):
        for readout in dict.fromkeys(r for *_, r in capacity_settings(profile, depths, kernels)):
            patterns = PATTERNS if readout == profile.readout else TABLE2_PATTERNS
            out.append((profile, dict(spec=spec, patterns=patterns, readout=readout, sets=(train, tests), features=source)))
    return out


def readout_capacity(profile: Profile, depths=DEPTHS, kernels=KERNELS
                     ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, ProbeResult]]]:
    """Table 2a (depth) and 2b (kernel size) for PosENet and every pretrained VGG16 of the profile, on the
    paper's patterns (H, G, HS), every test set, the paper's values beside ours (one readout seed; 95%
    intervals over test images); and the probe results per encoder and setting. The 1-layer 3x3 readout
    is Table 1's (five patterns, cached)."""
    probes = capacity_probes(profile, depths, kernels)
    train_probes(probes)
    done = {(kw["spec"], kw["readout"]): probe(p, **kw) for p, kw in probes}
    photos = test_sources(profile, capacity_sets(profile)[1])
    frames, results = {"table2a": [], "table2b": []}, {}
    for spec in _capacity_encoders(profile):
        results[spec.label] = {}
        for table, setting, paper_setting, readout in capacity_settings(profile, depths, kernels):
            res = done[(spec, readout)]
            results[spec.label].setdefault(setting, res)
            summary = seeded_summary([res], photos)
            frames[table].append(summary[summary.pattern.isin(TABLE2_PATTERNS)].assign(setting=setting,
                                                                                       paper_setting=paper_setting))
    out = []
    for table in ("table2a", "table2b"):
        df = tables.with_paper(pd.concat(frames[table], ignore_index=True), profile, table)
        out.append(df[table_columns(KEYS, features=False)])
    return out[0], out[1], results


def capacity_per_image(profile: Profile, results: dict[str, dict[str, ProbeResult]], depths=DEPTHS,
                       kernels=KERNELS) -> pd.DataFrame:
    """The per-image metrics behind Tables 2a and 2b (the paper's patterns), with each row's readout:
    table, setting, layers, kernel, width (NaN: C -> C or a single layer)."""
    photos = test_sources(profile, image_sets(profile)[1])
    frames = []
    for by_setting in results.values():
        for table, setting, _paper, readout in capacity_settings(profile, depths, kernels):
            f = per_image_frame([by_setting[setting]], photos)
            frames.append(f[f.pattern.isin(TABLE2_PATTERNS)].assign(
                table=table, setting=setting, layers=readout.n_layers, kernel=readout.kernel,
                width=float(readout.width) if readout.width and readout.n_layers > 1 else float("nan")))
    return pd.concat(frames, ignore_index=True)


def _stages(profile: Profile, encoders: tuple[EncoderSpec, ...] | None) -> list[tuple[EncoderSpec, str, tuple | None, str, int, dict]]:
    """Table 3's rows: (encoder, setting, taps, tap, stage, the probe's keyword arguments) for each stage of each
    encoder with a network, and all stages."""
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
    """The probes of :func:`per_stage`."""
    return [(profile, kw) for *_, kw in _stages(profile, encoders)]


def per_stage(profile: Profile, encoders: tuple[EncoderSpec, ...] | None = None) -> tuple[pd.DataFrame, dict[str, ProbeResult]]:
    """Table 3 for every encoder (PosENet has no stages; ``encoders``: the profile's by default): the readout
    on stage f1 .. f5 alone and on all five, by selecting the stage's channels from the cached features,
    with the feature measures (:mod:`posenc_utils.measures`) over the same channels. The readout on all
    five is Table 1's (cached)."""
    photos = test_sources(profile, capacity_sets(profile)[1])
    frames, results = [], {}
    train_probes(stage_probes(profile, encoders))
    for spec, setting, sel, tap, stage, kw in _stages(profile, encoders):
        res = probe(profile, **kw)
        results[f"{spec.label}, {setting}"] = res
        frames.append(with_feature_measures(seeded_summary([res], photos), res, photos).assign(
            setting=setting, paper_setting=setting, tap=tap, stage=stage, all_stages=sel is None))
    df = tables.with_paper(pd.concat(frames, ignore_index=True), profile, "table3")
    return df[table_columns(KEYS, middle=["tap", "stage", "all_stages"])], results


def stage_per_image(profile: Profile, table3: pd.DataFrame, results: dict[str, ProbeResult]) -> pd.DataFrame:
    """The per-image metrics behind Table 3, with each row's setting, stage and whether it is all stages."""
    photos = test_sources(profile, image_sets(profile)[1])
    rows = table3.drop_duplicates(["encoder", "setting"])
    return pd.concat([per_image_frame([results[f"{r.encoder}, {r.setting}"]], photos).assign(
        setting=r.setting, stage=r.stage, all_stages=r.all_stages) for r in rows.itertuples()], ignore_index=True)


def budget_settings(profile: Profile) -> tuple[tuple[int, ...], tuple[int, ...], tuple[EncoderSpec, ...]]:
    """What the training-budget check of claims 5 and 6 trains again (``budget.larger_budget``): the Table 2
    depths (the deepest too where the readout is C -> C), the smallest and largest kernel, and Table 3 of
    the profile's pretrained VGG16s."""
    depths = (DEPTHS[0],) if profile.readout_width else (DEPTHS[0], DEPTHS[-1])
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
    df = table[table.test_set == test_set].groupby(["encoder", "stage", "all_stages"], sort=False).spc.mean()
    df = df.reset_index()
    last = int(df[~df.all_stages].stage.max())
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    palette = dict(zip(df.encoder.unique(), sns.color_palette(n_colors=df.encoder.nunique())))
    sns.lineplot(df[~df.all_stages], x="stage", y="spc", hue="encoder", marker="o", ax=ax, palette=palette)
    for _, row in df[df.all_stages].iterrows():
        ax.scatter([last + 1], [row.spc], marker="*", s=120, color=palette[row.encoder])
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


def positive_control(profile: Profile) -> pd.DataFrame:
    """Every Table 2 readout trained on coordinate channels (x, y) instead of features: what it can
    express at all. The input is the same for every image, so one test image says everything."""
    probes = control_probes(profile)
    train_probes(probes)
    frames = []
    for (table, setting, _paper, _readout), (p, kw) in zip(capacity_settings(profile), probes):
        res = probe(p, **kw)
        frames.append(res.summary().assign(setting=setting, table=table))
    return pd.concat(frames, ignore_index=True)[["encoder", "table", "setting", "pattern", "test_set",
                                                 *(m.name for m in probe_measures()), *BASELINE_COLUMNS]]


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
                        level: float = 0.95) -> TableResult:
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
    return TableResult(pd.DataFrame(rows), pd.concat(per_image, ignore_index=True), results)


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
