"""Notebook 06: the study's front page, from saved results alone (no encoder, no training).

* :func:`redraw_figures`: every figure of notebooks 01-05 again, as PNG and PDF: the image figures
  (Figs 1, 3-7) from the panel data :func:`posenc_utils.engine.plots.save_figure` kept beside them, the
  others from their CSV tables.
* :func:`paper_vs_ours`, :func:`plot_paper_vs_ours`: our value against the paper's for every cell the
  paper published (Tables 1-6), with intervals where the study has them.
* :func:`all_claims`, :func:`claims_report`: the paper's ten claims (PAPER.md section 4), each decided by
  its rule (:mod:`posenc_utils.studies.claims`), recomputed here from the saved per-image results.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

# every module that declares products (posenc_utils.primitives.products): once this one is imported, the registry holds every
# product of the study but the runner's own records (manifest, pipeline, bench)
from ..studies import budget, claims, downstream, experiments, extended, layer_analysis, padding_ablation, since
from ..primitives import products  # noqa: F401
from ..engine.plots import FIG3, FORMATS, drawn, mark_failed, redraw_grid, save_figure
from ..primitives.products import GRID_SUFFIX, RESULTS, Product, declare
from ..models.profiles import Profile


class ResultsMissingError(FileNotFoundError):
    """A saved result notebook 06 needs is not there: the notebook that makes it has not run."""


def _read(out: Path, product: Product) -> pd.DataFrame:
    path = product.csv(out)
    if not path.exists():
        raise ResultsMissingError(f"{path} is missing: run notebook {product.notebook} for this profile first "
                                  f"(`make reproduce` runs every notebook)")
    return pd.read_csv(path)


# ---------------------------------------------------------------- figures


def table_figures(out: Path) -> dict[Product, Callable[[Path], plt.Figure]]:
    """The figures drawn from tables (declared with ``drawn_from``, :mod:`posenc_utils.primitives.products`): each -> a function
    drawing it to a path (an optional figure whose table is not there is left out)."""
    return {p: (lambda path, p=p: p.draw(_read(out, p.drawn_from), path)) for p in products.declared()
            if p.drawn_from is not None and not (p.optional and not p.drawn_from.csv(out).exists())}


def _current(out: Path, figure: Product) -> bool:
    """Whether both files of a table figure are newer than its CSV (which is rewritten only when it changes)."""
    csv = figure.drawn_from.csv(out)
    files = [figure.path(out, ext) for ext in FORMATS]
    return csv.exists() and all(f.exists() and f.stat().st_mtime_ns >= csv.stat().st_mtime_ns for f in files)


def redraw_figures(out: Path) -> pd.DataFrame:
    """Draw every saved figure again into ``out`` as PNG and PDF; one row per figure (name, source)."""
    out = Path(out)
    grids = sorted((out / RESULTS).glob(f"*{GRID_SUFFIX}"))
    if not grids:
        raise ResultsMissingError(f"no saved figure data in {out / RESULTS}: run notebooks 01-05 for this profile "
                                  f"first (`make reproduce`)")
    rows = []
    for g in grids:
        name = g.name.removesuffix(GRID_SUFFIX)
        rows.append(dict(figure=name, drawn_from=f"{RESULTS}/{g.name}"))
        if drawn(out / f"{name}.png", FORMATS):
            continue
        fig = redraw_grid(g)
        save_figure(fig, out / f"{name}.png", FORMATS)
        plt.close(fig)
    for figure, draw in table_figures(out).items():
        rows.append(dict(figure=figure.name, drawn_from=figure.drawn_from.file(".csv")))
        if _current(out, figure):
            continue
        fig = draw(figure.png(out))  # writes the PNG
        save_figure(fig, figure.png(out), tuple(f for f in FORMATS if f != ".png"))
        plt.close(fig)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- paper against ours


def _interval(df: pd.DataFrame, side: str) -> pd.Series:
    """A table's 95% interval: over readout seeds where it has several, else over test images."""
    seeds = df.get(f"spc_ci_{side}", pd.Series(np.nan, index=df.index))
    return seeds.fillna(df.get(f"spc_boot_{side}", pd.Series(np.nan, index=df.index)))


def paper_vs_ours(out: Path) -> pd.DataFrame:
    """Every cell of Tables 1-6 that has a paper value: table, what the cell is, ours, the paper's, and
    our 95% interval where the study has one (over readout seeds where there are several, else over test images)."""
    frames = []
    spc_tables = (experiments.TABLE1, layer_analysis.TABLE2A, layer_analysis.TABLE2B, layer_analysis.TABLE3,
                  padding_ablation.TABLE4, downstream.TABLE6)
    for product in spc_tables:
        table, df = product.role, _read(out, product).dropna(subset=["paper_spc"])
        setting = df["setting"] if "setting" in df else ""
        frames.append(pd.DataFrame(dict(
            table=table, metric="SPC", cell=df.encoder + " | " + setting + " | " + df.pattern + " | " + df.test_set,
            ours=df.spc.fillna(0.0), paper=df.paper_spc, ci_low=_interval(df, "low"), ci_high=_interval(df, "high"),
            compared_with=df.compared_with, readout_failed=df.get("readout_failed", pd.Series(0, index=df.index)).gt(0),
            stand_in=[not (a == "posenet" or claims.is_paper_encoder(a, w)) for a, w in zip(df.arch, df.weights)])))
    t5 = _read(out, downstream.TABLE5).dropna(subset=["paper"])
    frames.append(pd.DataFrame(dict(
        table="Table 5", metric=t5.metric, cell=t5.task + " | " + t5.padding + " | " + t5.test_set + " | " + t5.metric,
        ours=t5.value, paper=t5.paper, ci_low=t5.ci_low, ci_high=t5.ci_high, compared_with=t5.paper_test_set,
        readout_failed=False,
        stand_in=(t5.network != "VGG16-BN") | (t5.paper_test_set.str.replace("PASCAL VOC 2012 val", "VOC2012 val")
                                               != t5.test_set))))
    return pd.concat(frames, ignore_index=True)


def plot_paper_vs_ours(cells: pd.DataFrame, path: Path) -> plt.Figure:
    """Our value against the paper's for every published cell, coloured by table, the diagonal drawn;
    error bars where the study has an interval. SPC and the Table 5 metrics share the [0, 1] axes."""
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    tables = list(dict.fromkeys(cells.table))
    colours = dict(zip(tables, sns.color_palette("tab10", len(tables))))
    lo = min(-0.2, float(np.nanmin(cells[["ours", "paper"]].values)) - 0.05)
    ax.plot([lo, 1.02], [lo, 1.02], color="grey", lw=1, ls="--", zorder=0, label="ours = paper")
    for table in tables:
        d = cells[cells.table == table]
        has = d.ci_low.notna()
        err = np.vstack([(d.ours - d.ci_low)[has], (d.ci_high - d.ours)[has]])
        if has.any():
            ax.errorbar(d.paper[has], d.ours[has], yerr=np.clip(err, 0, None), fmt="none", ecolor=colours[table],
                        alpha=0.5, lw=1)
        own, stand = d[~d.stand_in.astype(bool)], d[d.stand_in.astype(bool)]
        label = f"{table} ({len(d)})"
        if len(own):
            ax.scatter(own.paper, own.ours, s=16, color=colours[table], label=label, alpha=0.8)
        if len(stand):
            ax.scatter(stand.paper, stand.ours, s=16, facecolors="none", edgecolors=colours[table], alpha=0.8, lw=0.9,
                       label=None if len(own) else label)
    bad = cells[cells.readout_failed.astype(bool)] if "readout_failed" in cells else cells.iloc[:0]
    mark_failed(ax, bad.paper, bad.ours)
    ax.set_xlim(lo, 1.02)
    ax.set_ylim(lo, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("paper")
    ax.set_ylabel("ours")
    ax.set_title("Every published cell: ours against the paper's\n(SPC; Table 5: F-measure, MAE, mIoU; "
                 "hollow: a stand-in for the paper's encoder)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    sns.despine(fig)
    fig.tight_layout()
    save_figure(fig, path, FORMATS)
    return fig


# ---------------------------------------------------------------- the ten claims


def all_claims(out: Path, profile: Profile) -> list[claims.Claim]:
    """The ten claims, each decided by its rule (:mod:`posenc_utils.studies.claims`) on the per-image frames saved
    in ``out``, and checked against the larger training budget's frames saved beside them."""
    for key in (experiments.TABLE1.frame, padding_ablation.TABLE4.frame):
        if not claims.frame_path(out, key).exists():
            raise ResultsMissingError(f"{claims.frame_path(out, key)} is missing: run notebooks 02-05 for this profile "
                                      f"first (`make reproduce` runs every notebook)")
    return claims.check_saved(out, profile.natural_test_set)


def seeds_note(profile: Profile) -> str:
    """Which numbers rest on several seeds and which on one (the time budget decides; see the README)."""
    n = profile.seeds
    budget = (f" Every claim decided from trained readouts is decided again with readouts trained {profile.budget_factor:g} "
              f"times as long (one seed, the claim-deciding rows only); a verdict that changes there is \"not decided "
              f"(training budget)\".")
    if n == 1:
        return f"Seeds: every number comes from one readout seed ({profile.seed})." + budget
    ds = profile.downstream
    return (f"Seeds: the rows of PosENet and the pretrained encoders average {n} readout seeds "
            f"({', '.join(map(str, profile.seed_values))}) in Tables 1-4, the padding modes, the canvas, the width sweep and "
            f"the object ratio (claims 1-8); their intervals cover the spread over seeds and over test images (resampling "
            f"source photographs). Random-init rows, which decide no claim, take {profile.random_init_seeds} readout "
            f"seed(s) and keep one set of encoder weights (seed {profile.seed}): a new encoder seed is a new feature "
            f"extraction. Claim 9 is decided over {ds.seeds} training seeds of the downstream networks; Table 6 (claim 10) "
            f"uses one readout seed ({profile.seed}), its intervals over test images only." + budget)


def claims_report(found: list[claims.Claim], profile: Profile, path: Path) -> pd.DataFrame:
    """The claims' report at ``path`` (Markdown: the verdict table, then each claim's rule, scope, numbers and budget
    check) and its table beside it (CSV); the verdict table."""
    preamble = ("Each claim is decided four ways: **holds** (the interval lies on the claimed side of the rule's "
                "threshold), **contradicted** (it lies on the other side), **not reproduced** (it excludes the effect "
                "the paper's own cells give, without showing the opposite), **not decided** (with the reason: noise, "
                "training budget, stand-in, readout failed, not testable). Intervals are paired 95% intervals over "
                "readout seeds and test images. Claims about the paper's encoders are decided on the profile's "
                "pretrained encoders (marked [stand-in] where they are not the paper's own); random-init rows are "
                "reported beside them and decide nothing. The same rules applied to the paper's own published numbers "
                "are in the last section.\n\n" + seeds_note(profile))
    table = claims.write_report(found, path, f"The paper's ten claims, checked ({profile.name} profile)", preamble)
    paper = claims.paper_claims()
    calibration = claims.verdict_table(paper)[["claim", "verdict", "deciding"]]
    with open(path, "a") as f:
        f.write("\n## The rules on the paper's own numbers\n\nEvery rule applied to the paper's published tables as if "
                "they were ours (point values decide: the paper gives no intervals). A fair rule does not contradict the "
                "paper on its own numbers.\n\n" + calibration.to_markdown(index=False) + "\n")
    claims.claims_frame(found).to_csv(Path(path).with_suffix(".csv"), index=False)
    return table


# ---------------------------------------------------------------- products (posenc_utils.primitives.products)

PAPER_VS_OURS = declare("paper_vs_ours", "06", "csv", made_by=paper_vs_ours, readme="headline")
FIG_PAPER_VS_OURS = declare("fig_paper_vs_ours", "06", "figure", made_by=plot_paper_vs_ours, readme="headline")
CLAIMS = declare("claims", "06", "report", claims=tuple(range(1, 11)), made_by=claims_report, readme="headline")
