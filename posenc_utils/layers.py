"""Notebook 04: where position information lives and how much of it a readout can take out.

* :func:`readout_capacity`: the paper's Table 2: (a) 1, 2 and 3 stacked 3x3 layers and (b) one
  1x1, 3x3 or 7x7 layer, for PosENet and each VGG16 of the profile; Fig 5 is drawn from it.
* :func:`per_stage`: Table 3 for every encoder: the readout on one stage at a time (f1 .. f5) and on
  all five, by channel selection from the cached all-stage features (never extracted again).
* :func:`error_maps`, :func:`content_error`: Fig 7 and claim 8 made quantitative: is the readout's
  error larger on image content (strong gradients) than elsewhere?
* :func:`positive_control`: the same readouts on explicit coordinate channels (CoordConv): what each
  readout can express at all.
* :func:`claim5`, :func:`claim6`, :func:`claim8`: the paper's claims, by rules fixed beforehand.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import ndimage

from . import tables
from .experiments import SEED_COLUMNS, ProbeResult, head_of, image_sets, probe, seeded_summary, test_sources, view_features
from .images import ImageSet, photo_sources
from .metrics import cluster_bootstrap_ci
from .plots import off_axes, save_figure
from .profiles import EncoderSpec, Profile, ReadoutSpec
from .targets import target_map

DEPTHS = (1, 2, 3)
KERNELS = (1, 3, 7)
COLUMNS = ["encoder", "arch", "weights", "setting", "pattern", "test_set", "spc", "mae", "spc_undefined", "n_images"]


def capacity_sets(profile: Profile) -> tuple[ImageSet, list[ImageSet], dict]:
    """Training set of Tables 2 and 3 (the first ``capacity_train_n`` images) and the test sets, with
    the view of Table 1's cached features for that head."""
    train, tests = image_sets(profile)
    head, views = head_of(train, profile.capacity_train_n)
    return head, tests, views


def capacity_settings(profile: Profile) -> list[tuple[str, str, str, ReadoutSpec]]:
    """(table, our setting, the paper's setting name, readout) of Table 2a and 2b."""
    base = profile.readout
    out = [("table2a", f"{d} layer{'s' if d > 1 else ''}, 3x3" + (f", width {profile.readout_width}"
                                                                  if d > 1 and profile.readout_width else ""),
            f"{d} layer(s), 3x3",
            dataclasses.replace(base, n_layers=d, kernel=3, width=profile.readout_width if d > 1 else None))
           for d in DEPTHS]
    out += [("table2b", f"1 layer, {k}x{k}", f"1 layer, {k}x{k}", dataclasses.replace(base, kernel=k))
            for k in KERNELS]
    return out


def _capacity_encoders(profile: Profile) -> list[EncoderSpec]:
    return [EncoderSpec("posenet", "none")] + [e for e in profile.encoders if e.name == "vgg16"]


def readout_capacity(profile: Profile) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, ProbeResult]]]:
    """Table 2a (depth) and 2b (kernel size) for PosENet and every VGG16 of the profile, all five
    patterns, every test set, the paper's values beside ours (one readout seed; 95% intervals over test
    images); and the probe results per encoder and setting."""
    train, tests, views = capacity_sets(profile)
    source, photos = view_features(views), test_sources(profile, tests)
    frames, results = {"table2a": [], "table2b": []}, {}
    for spec in _capacity_encoders(profile):
        results[spec.label], done = {}, {}
        for table, setting, paper_setting, readout in capacity_settings(profile):
            if readout not in done:  # 1 layer 3x3 is in both tables: trained and evaluated once
                done[readout] = probe(profile, spec, readout=readout, sets=(train, tests), features=source)
            res = done[readout]
            results[spec.label].setdefault(setting, res)
            frames[table].append(seeded_summary([res], photos).assign(setting=setting, paper_setting=paper_setting))
    out = []
    for table in ("table2a", "table2b"):
        df = tables.with_paper(pd.concat(frames[table], ignore_index=True), profile, table)
        out.append(df[COLUMNS + SEED_COLUMNS + ["paper_spc", "paper_mae", "compared_with"]])
    return out[0], out[1], results


def per_stage(profile: Profile) -> tuple[pd.DataFrame, dict[str, ProbeResult]]:
    """Table 3 for every encoder (PosENet has no stages): the readout on stage f1 .. f5 alone and on
    all five, by selecting the stage's channels from the cached features."""
    train, tests, views = capacity_sets(profile)
    source, photos = view_features(views), test_sources(profile, tests)
    frames, results = [], {}
    for spec in (e for e in profile.encoders if e.name != "posenet"):
        taps = source(profile, spec, train).tap_names
        stages = [(f"features f{i + 1}", (t,), t, i + 1) for i, t in enumerate(taps)]
        stages.append((f"features f1-f{len(taps)}", None, "all", len(taps) + 1))
        for setting, sel, tap, stage in stages:
            res = probe(profile, spec, taps=sel, sets=(train, tests), features=source)
            results[f"{spec.label}, {setting}"] = res
            frames.append(seeded_summary([res], photos).assign(setting=setting, paper_setting=setting, tap=tap,
                                                               stage=stage, all_stages=sel is None))
    df = tables.with_paper(pd.concat(frames, ignore_index=True), profile, "table3")
    return df[COLUMNS + ["tap", "stage", "all_stages"] + SEED_COLUMNS + ["paper_spc", "paper_mae", "compared_with"]], results


def plot_stage_trend(table: pd.DataFrame, path: Path, test_set: str = "photos") -> plt.Figure:
    """SPC (mean over patterns) against the stage, one line per encoder; "all" at the right."""
    import seaborn as sns

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


def positive_control(profile: Profile) -> pd.DataFrame:
    """Every Table 2 readout trained on coordinate channels (x, y) instead of features: what it can
    express at all. The input is the same for every image, so one test image says everything."""
    train, tests, _ = capacity_sets(profile)
    spec = EncoderSpec("coords", "none")
    frames = []
    for table, setting, _paper, readout in capacity_settings(profile):
        res = probe(profile, spec, readout=readout, sets=(train, [tests[0].head(1)]))
        frames.append(res.summary().assign(setting=setting, table=table))
    return pd.concat(frames, ignore_index=True)[["encoder", "table", "setting", "pattern", "test_set", "spc", "mae"]]


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
                        level: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Claim 8 per encoder: the mean content/elsewhere error ratio over test photos with a bootstrap
    interval that resamples source photographs; and the per-image ratios."""
    content = content_maps(photos.rows(0, photos.n))
    per_image, rows = [], []
    for label, res in results.items():
        ratios = content_error(error_maps(res, photos), content)
        groups = sources if sources is not None else np.arange(len(ratios))
        lo, hi = cluster_bootstrap_ci(ratios, groups, np.nanmean, level=level)
        rows.append(dict(encoder=label, ratio=float(np.nanmean(ratios)), ci_low=lo, ci_high=hi, n_images=len(ratios),
                         n_sources=len(np.unique(groups))))
        per_image.append(pd.DataFrame(dict(encoder=label, image=np.arange(len(ratios)), source=groups, ratio=ratios)))
    return pd.DataFrame(rows), pd.concat(per_image, ignore_index=True)


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


# ---------------------------------------------------------------- claims 5, 6 and 8


CLAIM5_RULE = (
    "Claim 5 (more readout capacity recovers more) holds when, for every VGG16 of the profile, on photos and "
    "averaged over the paper's patterns (H, G, HS): 3 stacked layers reach at least 0.05 more SPC than 1 layer and "
    "no extra layer loses more than 0.02; and likewise a 7x7 kernel at least 0.05 more than 1x1, with 3x3 in between "
    "(within 0.02)."
)
CLAIM6_RULE = (
    "Claim 6 (deeper stages hold more position; all together best) holds when, for every encoder with stages, on "
    "photos and averaged over the paper's patterns (H, G): f5 reaches at least 0.1 more SPC than f1, the SPC of the "
    "stages rises with depth (Spearman correlation of SPC with stage index at least 0.7), and all five stages "
    "together are within 0.02 of the best single stage or above it."
)
CLAIM8_RULE = (
    "Claim 8 (readout errors concentrate on semantic content) holds when, for every encoder other than PosENet, the "
    "mean ratio of the H/V/G error on content pixels (top quarter of gradient magnitude) to the error elsewhere is "
    "above 1 with its whole 95% bootstrap interval (resampling source photographs)."
)


def _mean_spc(df: pd.DataFrame, patterns, test_set="photos") -> pd.Series:
    d = df[(df.test_set == test_set) & df.pattern.isin(patterns)]
    return d.groupby(["encoder", "setting"], sort=False).spc.mean()


def _rises(values: list[float], slack: float = 0.02, gain: float = 0.05) -> bool:
    return all(b >= a - slack for a, b in zip(values, values[1:])) and values[-1] >= values[0] + gain


def claim5(table2a: pd.DataFrame, table2b: pd.DataFrame, patterns=("H", "G", "HS"), test_set: str = "photos") -> dict:
    """Decide claim 5 from Tables 2a/2b by :data:`CLAIM5_RULE` (``test_set``: the natural images)."""
    a, b = _mean_spc(table2a, patterns, test_set), _mean_spc(table2b, patterns, test_set)
    vggs = [e for e in a.index.get_level_values(0).unique() if e != "PosENet"]
    parts, texts = [], []
    for e in vggs:
        depth = a.xs(e, level="encoder").tolist()
        kernel = b.xs(e, level="encoder").tolist()
        ok = _rises(depth) and _rises(kernel)
        parts.append(ok)
        texts.append(f"{e}: 1/2/3 layers {'/'.join(f'{v:.2f}' for v in depth)}, 1x1/3x3/7x7 "
                     f"{'/'.join(f'{v:.2f}' for v in kernel)} ({'rises' if ok else 'does not rise as the rule asks'}).")
    verdict = "holds" if vggs and all(parts) else "does not hold"
    return {"rule": CLAIM5_RULE, "verdict": verdict,
            "statement": f"Claim 5 {verdict} (mean SPC on photos over {', '.join(patterns)}). " + " ".join(texts)}


def claim6(table3: pd.DataFrame, patterns=("H", "G"), test_set: str = "photos") -> dict:
    """Decide claim 6 from Table 3 by :data:`CLAIM6_RULE` (``test_set``: the natural images)."""
    from scipy.stats import spearmanr

    d = table3[(table3.test_set == test_set) & table3.pattern.isin(patterns)]
    m = d.groupby(["encoder", "all_stages", "stage"], sort=False).spc.mean()
    parts, texts = [], []
    for e in m.index.get_level_values(0).unique():
        s = m.xs(e, level="encoder")
        stages, all_five = s.xs(False, level="all_stages").sort_index(), float(s.xs(True, level="all_stages").iloc[0])
        trend = float(spearmanr(stages.index, stages.values).statistic)
        ok = stages.iloc[-1] >= stages.iloc[0] + 0.1 and trend >= 0.7 and all_five >= stages.max() - 0.02
        parts.append(bool(ok))
        texts.append(f"{e}: f1..f5 {'/'.join(f'{v:.2f}' for v in stages)}, all {all_five:.2f}, trend {trend:.2f} "
                     f"({'as claimed' if ok else 'not as claimed'}).")
    verdict = "holds" if parts and all(parts) else "does not hold"
    return {"rule": CLAIM6_RULE, "verdict": verdict,
            "statement": f"Claim 6 {verdict} (mean SPC on photos over {', '.join(patterns)}). " + " ".join(texts)}


def claim8(content: pd.DataFrame) -> dict:
    """Decide claim 8 from :func:`content_error_table` by :data:`CLAIM8_RULE`."""
    rows = content[content.encoder != "PosENet"]
    ok = bool(len(rows)) and bool((rows.ci_low > 1).all())
    verdict = "holds" if ok else "does not hold"
    texts = [f"{r.encoder}: {r.ratio:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]." for r in rows.itertuples()]
    return {"rule": CLAIM8_RULE, "verdict": verdict,
            "statement": f"Claim 8 {verdict} (error on content / elsewhere, 95% interval). " + " ".join(texts)}
