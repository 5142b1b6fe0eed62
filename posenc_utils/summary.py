"""Notebook 06: the study's front page, from saved results alone (no encoder, no training).

* :func:`redraw_figures`: every figure of notebooks 01-05 again, as PNG and PDF: the image figures
  (Figs 1, 3-7) from the panel data :func:`posenc_utils.plots.save_figure` kept beside them, the
  others from their CSV tables.
* :func:`paper_vs_ours`, :func:`plot_paper_vs_ours`: our value against the paper's for every cell the
  paper published (Tables 1-6), with intervals where the study has them.
* :func:`all_claims`, :func:`claims_markdown`: the paper's ten claims (PAPER.md section 4), each decided
  by the rule its notebook wrote down, recomputed here from the saved tables.
* :func:`write_manifest`: what produced the results (commit, versions, profile, seeds, times, machine).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import paths
from .plots import FORMATS, RESULTS, redraw_grid, save_figure
from .profiles import Profile

# The paper's claims in its own words (PAPER.md section 4).
CLAIMS = {
    1: "PosENet alone (no padding, no encoder) recovers no position: SPC ~ 0 everywhere.",
    2: "Frozen pretrained encoders recover a lot: ResNet152 > VGG16 >> PosENet.",
    3: "Position is recoverable even from inputs with no content (black, white, noise).",
    4: "Stripes (HS, VS) are harder than H, V, G.",
    5: "More readout capacity (layers, kernel size) recovers more.",
    6: "Deeper stages hold more position than shallower ones (f5 > ... > f1); all together best.",
    7: "Zero padding is a source: padding in PosENet creates position information; removing padding from VGG16 "
       "removes much of it.",
    8: "Readout errors concentrate on semantic content (Fig 7).",
    9: "Padding helps downstream tasks that need position (Table 5).",
    10: "Encoders trained for dense tasks (SOD, segmentation) encode more position (Table 6).",
}
NOTEBOOK_OF_CLAIM = {1: "02", 2: "02", 3: "02", 4: "02", 5: "04", 6: "04", 7: "03", 8: "04", 9: "05", 10: "05"}


class ResultsMissingError(FileNotFoundError):
    """A saved result notebook 06 needs is not there: the notebook that makes it has not run."""


def _read(out: Path, name: str, notebook: str) -> pd.DataFrame:
    path = Path(out) / name
    if not path.exists():
        raise ResultsMissingError(f"{path} is missing: run notebook {notebook} for this profile first "
                                  f"(`make reproduce` runs every notebook)")
    return pd.read_csv(path)


# ---------------------------------------------------------------- figures


TABLE_FIGURES = {  # figure -> (the CSV it is drawn from, the notebook that writes both)
    "fig_padding_modes": ("padding_modes.csv", "03"), "fig_canvas": ("canvas.csv", "03"),
    "fig_border_distance": ("border_distance.csv", "03"), "fig_stage_trend": ("table3_per_stage.csv", "04"),
    "fig_downstream_loss": ("downstream_losses.csv", "05"),
}


def table_figures(out: Path) -> dict[str, callable]:
    """The figures drawn from CSV tables: file name -> a function drawing it to a path."""
    from . import downstream, layers, padding

    draw = {"fig_padding_modes": padding.plot_padding_modes, "fig_canvas": padding.plot_canvas,
            "fig_border_distance": padding.plot_border_distance, "fig_stage_trend": layers.plot_stage_trend,
            "fig_downstream_loss": downstream.plot_loss_curves}
    return {name: (lambda p, n=name: draw[n](_read(out, *TABLE_FIGURES[n]), p)) for name in TABLE_FIGURES}


def _current(out: Path, name: str) -> bool:
    """Whether both files of a table figure are newer than its CSV (which is rewritten only when it changes)."""
    csv = out / TABLE_FIGURES[name][0]
    files = [out / f"{name}{ext}" for ext in FORMATS]
    return csv.exists() and all(f.exists() and f.stat().st_mtime_ns >= csv.stat().st_mtime_ns for f in files)


def redraw_figures(out: Path) -> pd.DataFrame:
    """Draw every saved figure again into ``out`` as PNG and PDF; one row per figure (name, source)."""
    out = Path(out)
    grids = sorted((out / RESULTS).glob("*.grid.npz"))
    if not grids:
        raise ResultsMissingError(f"no saved figure data in {out / RESULTS}: run notebooks 01-05 for this profile "
                                  f"first (`make reproduce`)")
    rows = []
    for g in grids:
        name = g.name.removesuffix(".grid.npz")
        fig = redraw_grid(g)
        save_figure(fig, out / f"{name}.png", FORMATS)
        plt.close(fig)
        rows.append(dict(figure=name, drawn_from=f"{RESULTS}/{g.name}"))
    for name, draw in table_figures(out).items():
        rows.append(dict(figure=name, drawn_from=f"{TABLE_FIGURES[name][0]}"))
        if _current(out, name):
            continue
        fig = draw(out / f"{name}.png")  # writes the PNG
        save_figure(fig, out / f"{name}.png", tuple(f for f in FORMATS if f != ".png"))
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
    spc_tables = (("Table 1", "table1_position_info.csv", "02"), ("Table 2a", "table2a_readout_depth.csv", "04"),
                  ("Table 2b", "table2b_kernel_size.csv", "04"), ("Table 3", "table3_per_stage.csv", "04"),
                  ("Table 4", "table4_padding.csv", "03"), ("Table 6", "table6_task_encoders.csv", "05"))
    for table, name, nb in spc_tables:
        df = _read(out, name, nb).dropna(subset=["paper_spc"])
        setting = df["setting"] if "setting" in df else ""
        frames.append(pd.DataFrame(dict(
            table=table, metric="SPC", cell=df.encoder + " | " + setting + " | " + df.pattern + " | " + df.test_set,
            ours=df.spc.fillna(0.0), paper=df.paper_spc, ci_low=_interval(df, "low"), ci_high=_interval(df, "high"),
            compared_with=df.compared_with)))
    t5 = _read(out, "table5_downstream.csv", "05").dropna(subset=["paper"])
    frames.append(pd.DataFrame(dict(
        table="Table 5", metric=t5.metric, cell=t5.task + " | " + t5.padding + " | " + t5.test_set + " | " + t5.metric,
        ours=t5.value, paper=t5.paper, ci_low=t5.ci_low, ci_high=t5.ci_high, compared_with=t5.paper_test_set)))
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
        ax.scatter(d.paper, d.ours, s=16, color=colours[table], label=f"{table} ({len(d)})", alpha=0.8)
    ax.set_xlim(lo, 1.02)
    ax.set_ylim(lo, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("paper")
    ax.set_ylabel("ours")
    ax.set_title("Every published cell: ours against the paper's\n(SPC; Table 5: F-measure, MAE, mIoU)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    sns.despine(fig)
    fig.tight_layout()
    save_figure(fig, path, FORMATS)
    return fig


# ---------------------------------------------------------------- the ten claims


def all_claims(out: Path, profile: Profile) -> list[dict]:
    """The ten claims, each decided by its notebook's rule on the saved tables of ``out``."""
    from . import downstream, experiments, layers, padding

    natural = profile.test_sets[0].name
    claims = experiments.claims_1_4(_read(out, "table1_position_info.csv", "02"), natural)
    more = {
        5: lambda: layers.claim5(_read(out, "table2a_readout_depth.csv", "04"), _read(out, "table2b_kernel_size.csv", "04"),
                                 test_set=natural),
        6: lambda: layers.claim6(_read(out, "table3_per_stage.csv", "04"), test_set=natural),
        7: lambda: padding.claim7(_read(out, "table4_padding.csv", "03"), test_set=natural),
        8: lambda: layers.claim8(_read(out, "content_error.csv", "04")),
        9: lambda: downstream.claim9(_read(out, "padding_gain.csv", "05")),
        10: lambda: downstream.claim10(_read(out, "table6_task_encoders.csv", "05"), natural),
    }
    for k, decide in more.items():
        c = decide()
        claims.append({"claim": k, "rule": c["rule"], "verdict": c["verdict"], "statement": c["statement"]})
    for c in claims:
        c["paper"] = CLAIMS[c["claim"]]
        c["notebook"] = NOTEBOOK_OF_CLAIM[c["claim"]]
    return sorted(claims, key=lambda c: c["claim"])


def claims_table(claims: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([dict(claim=c["claim"], paper=c["paper"], verdict=c["verdict"], notebook=c["notebook"])
                         for c in claims])


def seeds_note(profile: Profile) -> str:
    """Which numbers rest on several seeds and which on one (the time budget decides; see the README)."""
    n = profile.seeds
    if n == 1:
        return f"Seeds: every number comes from one readout seed ({profile.seed})."
    return (f"Seeds: Tables 1 and 4 (claims 1-4 and 7) average {n} readout seeds ({', '.join(map(str, profile.seed_values))}) "
            f"and give 95% intervals over them and over test images (resampling source photographs). Random-init "
            f"encoders keep one set of weights (seed {profile.seed}): a new encoder seed is a new feature extraction, "
            f"about 2.5 minutes per encoder offline. Tables 2, 3, 5 and 6 and the content ratio (claims 5, 6, 8, 9, 10) "
            f"use one seed ({profile.seed}); their 95% intervals are over test images only.")


def claims_markdown(claims: list[dict], profile: Profile, seeds_note: str) -> str:
    """The claims report: a verdict table, then each claim's rule and numbers."""
    lines = [f"# The paper's ten claims, checked ({profile.name} profile)", "",
             "Each rule was written from the paper's wording before the numbers were looked at, and no threshold "
             "was moved afterwards. The numbers come from the saved tables of this profile.", "", seeds_note, "",
             claims_table(claims).to_markdown(index=False), ""]
    for c in claims:
        lines += [f"## Claim {c['claim']}: {c['verdict']}", "", f"*Paper:* {c['paper']}", "", f"**Rule.** {c['rule']}",
                  "", c["statement"], ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- manifest


PACKAGES = ("torch", "torchvision", "numpy", "pandas", "scipy", "matplotlib", "seaborn", "papermill", "nbval",
            "scikit-image", "posenc")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=paths.PROJ_ROOT, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def manifest(out: Path, profile: Profile) -> dict:
    """What produced the results in ``out``: commit, versions, profile, seeds, notebook times, machine."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    times = {}
    timing = Path(out) / "pipeline_times.json"
    if timing.exists():
        times = {k: v.get("notebooks_s") for k, v in json.loads(timing.read_text()).items() if isinstance(v, dict)}
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)
    except (ValueError, OSError, AttributeError):
        mem_gb = None
    return {
        "profile": profile.name, "description": profile.description, "seeds": list(profile.seed_values),
        "git_commit": _git("rev-parse", "HEAD"), "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".",
                                                      ":(exclude)figures/*/manifest.json")),
        "python": sys.version.split()[0], "packages": versions, "notebook_times_s": times,
        "machine": {"platform": platform.platform(), "cpu": _cpu_model(), "cpus": os.cpu_count(), "memory_gb": mem_gb},
        "results": sorted(p.name for p in Path(out).iterdir() if p.suffix in (".csv", ".md", ".json"))
        + sorted(f"{RESULTS}/{p.name}" for p in (Path(out) / RESULTS).glob("*")),
    }


def write_manifest(out: Path, profile: Profile) -> Path:
    path = Path(out) / "manifest.json"
    data = manifest(out, profile)
    data["results"] = [r for r in data["results"] if r != "manifest.json"]
    path.write_text(json.dumps(data, indent=1))
    return path
