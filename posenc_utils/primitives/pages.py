"""The executed study as web pages: every executed notebook rendered to HTML (figures embedded) and an
index listing them in order with their headline result and time, for a reader without Jupyter.

Rendered by the pipeline after a run, into the folder of the executed notebooks
(``build/<profile>/index.html``).
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path

import pandas as pd

from .products import Product


def title(nb: dict) -> str:
    """The notebook's title: its first Markdown heading, without the '#'."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ""


def headline(number: str, verdicts: pd.DataFrame | None) -> str:
    """What a notebook concludes, from the claims report: the verdicts of the claims it decides (all ten, counted,
    for notebook 06); empty where it decides none."""
    if verdicts is None or verdicts.empty:
        return ""
    if number == "06":
        counts = verdicts.verdict.value_counts()
        return "; ".join(f"{counts.get(v, 0)} {v}" for v in ("holds", "not reproduced", "not decided", "contradicted")) \
            + f" (of {len(verdicts)} claims)"
    mine = verdicts[verdicts.notebook.astype(str).str.zfill(2) == number]
    return "; ".join(f"claim {r.claim}: {r.outcome}" for r in mine.itertuples())


def render(executed: list[Path], results: Path, times: dict[str, float], claims: Product) -> Path:
    """HTML of every executed notebook beside it and ``index.html`` in their folder; returns the index. ``claims``: the
    claims' report among the products (its table gives each notebook's headline)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()
    claims_csv = claims.csv(results)
    verdicts = pd.read_csv(claims_csv) if claims_csv.exists() else None
    rows = []
    for path in executed:
        nb = json.loads(Path(path).read_text())
        body, _ = exporter.from_filename(str(path))
        page = Path(path).with_suffix(".html")
        page.write_text(body)
        number = path.name[:2]
        seconds = times.get(path.name)
        rows.append((page.name, number, title(nb), headline(number, verdicts),
                     f"{seconds:.0f} s" if seconds is not None else "earlier run"))
    folder = Path(executed[0]).parent
    figures = os.path.relpath(results, folder)
    items = "\n".join(
        f"<tr><td>{html.escape(n)}</td><td><a href=\"{html.escape(page)}\">{html.escape(t)}</a></td>"
        f"<td>{html.escape(h)}</td><td>{html.escape(s)}</td></tr>" for page, n, t, h, s in rows)
    index = folder / "index.html"
    index.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>posenc: the executed study</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}}
table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #ccc;padding:.4em .8em;text-align:left;vertical-align:top}}</style>
</head><body>
<h1>How much position information do CNNs encode? The executed study</h1>
<p>The notebooks of this run in order, with their figures and tables. Every table and figure is also a file in
<a href="{html.escape(figures)}/">{html.escape(figures)}</a>; <code>{html.escape(claims.file(".md"))}</code> there gives every verdict with its reason.</p>
<table><tr><th></th><th>notebook</th><th>headline</th><th>time</th></tr>
{items}
</table></body></html>
""")
    return index
