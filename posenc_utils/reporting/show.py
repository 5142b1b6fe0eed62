"""How results appear in a notebook: tables without an index or a negative zero, claims and lists as
Markdown, a grid of figure thumbnails, the manifest's essentials.

Only presentation: every function takes what an experiment returned or a notebook saved, and
returns an object Jupyter renders (a Styler, Markdown or a figure); nothing here computes a result.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown

from ..studies.claims import Claim, verdict_table
from ..primitives.products import declared


def number(v, precision: int = 3) -> str:
    """``v`` with ``precision`` decimals, never "-0.000"; other values as they are (empty for NaN)."""
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return "" if math.isnan(v) else str(v)
        text = f"{v:.{precision}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text
    return str(v)


def table(df: pd.DataFrame, precision: int = 3):
    """``df`` as a notebook shows it: no integer index, floats at ``precision`` without a negative zero."""
    df = df.reset_index() if not isinstance(df.index, pd.RangeIndex) else df
    return df.style.hide(axis="index").format(lambda v: number(v, precision))


def markdown_list(title: str, items: list[str]) -> Markdown:
    """A heading line and a bullet list (e.g. the deviations that touch a notebook's tables)."""
    return Markdown(f"**{title}**\n\n" + "\n".join(f"- {item}" for item in items) if items else f"**{title}**: none.")


def claims(found: list[Claim]) -> Markdown:
    """The claims as a Markdown table: claim, verdict (with its reason), the deciding number, the budget check."""
    rows = verdict_table(found)
    lines = ["| claim | verdict | deciding number | readouts trained longer |", "|--:|:--|:--|:--|"]
    lines += [f"| {r.claim} | {r.verdict} | {r.deciding} | {r.larger_budget} |" for r in rows.itertuples()]
    return Markdown("\n".join(lines))


def products_table(notebook: str) -> Markdown:
    """What a notebook writes: its declared products (:mod:`posenc_utils.primitives.products`), each with its files, its role in the
    paper, the function that makes it and the claims decided on it."""
    lines = ["| files | in the paper | made by | claims |", "|:--|:--|:--|:--|"]
    for p in declared(notebook):
        made = f"`{p.made_by.__module__.removeprefix('posenc_utils.')}.{p.made_by.__name__}`" if p.made_by else ""
        extra = " (`make extended`)" if p.optional else ""
        lines.append(f"| {', '.join(f'`{f}`' for f in p.files())}{extra} | {p.role} | {made} | "
                     f"{', '.join(map(str, p.claims))} |")
    return Markdown("\n".join(lines))


def thumbnails(paths: list[Path], columns: int = 4, width: float = 3.2) -> plt.Figure:
    """A grid of saved figures (PNG files), each titled by its name: what a folder of figures holds, at a glance."""
    paths = [Path(p) for p in paths]
    rows = max(1, math.ceil(len(paths) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, width * 0.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, path in zip(axes.flat, paths):
        image = plt.imread(path)
        step = max(1, max(image.shape[:2]) // 480)  # a thumbnail: enough pixels to recognize the figure
        ax.imshow(image[::step, ::step])
        ax.set_title(path.stem, fontsize=8)
    fig.tight_layout()
    return fig


def manifest_table(manifest: dict) -> pd.DataFrame:
    """What matters in a manifest: commit, versions, seeds, the last cold and warm run's times, machine."""
    packages = manifest.get("packages", {})
    rows = [("commit", f"{manifest.get('git_commit') or 'unknown'}" + (" (uncommitted changes)" if manifest.get("git_dirty") else "")),
            ("profile", manifest.get("profile", "")), ("seeds", ", ".join(map(str, manifest.get("seeds", []))))]
    if manifest.get("overrides"):
        rows.append(("changed for this run", str(manifest["overrides"])))
    rows += [("python", manifest.get("python", ""))]
    rows += [(name, version or "not installed") for name, version in packages.items() if name in ("torch", "torchvision", "numpy", "pandas")]
    for kind, times in (manifest.get("notebook_times_s") or {}).items():
        if times:
            rows.append((f"{kind} run", f"{sum(times.values()) / 60:.1f} min (" + ", ".join(f"{k[:2]}: {v:.0f} s" for k, v in times.items()) + ")"))
    machine = manifest.get("machine", {})
    rows.append(("machine", f"{machine.get('cpu', '')}, {machine.get('cpus', '')} CPUs, {machine.get('memory_gb', '')} GB"))
    rows.append(("results", f"{len(manifest.get('results', []))} files"))
    return pd.DataFrame(rows, columns=["what", "value"])
