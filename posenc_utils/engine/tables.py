"""The paper's published numbers beside ours, and writing tables as CSV and Markdown."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..primitives import paths
from ..models.families import FAMILIES
from .measures import MEASURES, feature_columns
from ..primitives.products import Product
from ..models.profiles import Profile

# Which paper row each of our architectures is compared with, and that row's weights, as each family
# declares it (EfficientNet-Lite0 stands in for the paper's ResNet152: both residual ImageNet networks).
PAPER_MODEL = {f.name: f.paper_model for f in FAMILIES.values() if f.paper_model}
PAPER_WEIGHTS = {name: "none" if model == "PosENet" else "ImageNet" for name, model in PAPER_MODEL.items()}


def paper_numbers(table: str) -> pd.DataFrame:
    """The paper's published rows of one table (``table1`` .. ``table6``)."""
    df = pd.read_csv(paths.PAPER_TABLES_CSV)
    out = df[df["table"] == table]
    if out.empty:
        raise ValueError(f"no published numbers for {table!r}; known: {sorted(df['table'].unique())}")
    return out.reset_index(drop=True)


def with_paper(ours: pd.DataFrame, profile: Profile, table: str = "table1") -> pd.DataFrame:
    """``ours`` plus the paper's value of every measure it reports (:func:`measures.paper_columns`: SPC, MAE)
    for the matching row, and which paper row that is; the feature measures, which the paper does not
    report, stay the last columns.

    Rows match on pattern, model (our architecture's paper counterpart, or ``ours``' own ``paper_model``
    column where it has one, e.g. Table 6's "VGG16-SOD") and test set, and on the paper's ``setting`` too
    where ``ours`` has a ``paper_setting`` column (e.g. Table 4's "padding 1")."""
    reported = {m.paper_column: f"paper_{m.name}" for m in MEASURES if m.paper_column}
    paper = paper_numbers(table).rename(columns={"model": "paper_model", "test_set": "paper_test_set",
                                                 "setting": "paper_setting", **reported})
    test_names = dict(profile.paper_test_names)
    own = "paper_model" in ours
    df = ours.assign(
        paper_model=ours["paper_model"] if own else ours["arch"].map(PAPER_MODEL),
        paper_test_set=ours["test_set"].map(test_names),
    )
    on = ["pattern", "paper_model", "paper_test_set"] + (["paper_setting"] if "paper_setting" in ours else [])
    df = df.merge(paper[on + list(reported.values())], on=on, how="left")
    has = df[list(reported.values())].notna().any(axis=1)
    df["compared_with"] = ""
    setting = (", " + df.loc[has, "paper_setting"]) if "paper_setting" in ours else ""
    weights = "" if own else " (" + df.loc[has, "arch"].map(PAPER_WEIGHTS) + setting + ")"
    df.loc[has, "compared_with"] = df.loc[has, "paper_model"] + weights + " on " + df.loc[has, "paper_test_set"]
    df = df.drop(columns=["paper_model", "paper_test_set"])
    last = [c for c in feature_columns() if c in df]
    return df[[c for c in df if c not in last] + last]


def _failed_mark(failed) -> str:
    """`` [readout failed]`` where some readout seed behind a cell failed to train (``readout_failed`` > 0)."""
    return " [readout failed]" if pd.notna(failed) and failed else ""


def spc_overview(df: pd.DataFrame, index: tuple[str, ...] = ("encoder", "pattern")) -> pd.DataFrame:
    """A wide view: one row per ``index`` (encoder x pattern), one 'SPC ours (paper)' column per test set, with the
    images whose prediction was constant (undefined SPC, counted as 0) and a readout that failed to train marked."""
    def cell(r):
        paper = "" if pd.isna(r.get("paper_spc")) else f" ({r['paper_spc']:.2f})"
        undefined = f" [{int(r['spc_undefined'])} undef.]" if r["spc_undefined"] else ""
        return f"{r['spc']:.2f}{paper}{undefined}{_failed_mark(r.get('readout_failed'))}"

    wide = df.assign(cell=df.apply(cell, axis=1)).pivot_table(
        index=list(index), columns="test_set", values="cell", aggfunc="first", sort=False)
    wide.columns.name = None
    return wide.reset_index()


def spc_means(df: pd.DataFrame, index, columns="test_set", patterns=None) -> pd.DataFrame:
    """Mean SPC over the patterns (``patterns``: all of ``df``'s) of each ``index`` x ``columns`` cell, as text: the
    value, how many of its (image, pattern) cells had a constant prediction (undefined SPC, counted as 0: ``[k/n
    undef.]``) and ``[readout failed]`` where a readout seed behind it failed to train; empty where the cell has no
    measured row (a mode that does not apply)."""
    d = df if patterns is None else df[df.pattern.isin(patterns)]
    d = d[d.spc.notna()]
    index, columns = [index] if isinstance(index, str) else list(index), [columns] if isinstance(columns, str) else list(columns)
    g = d.groupby(index + columns, sort=False).agg(
        spc=("spc", "mean"), undefined=("spc_undefined", "sum"), cells=("n_images", "sum"),
        failed=("readout_failed", "max") if "readout_failed" in d else ("spc", lambda s: 0))

    def cell(r) -> str:
        undefined = f" [{int(r.undefined)}/{int(r.cells)} undef.]" if r.undefined else ""
        return f"{_two(r.spc)}{undefined}{_failed_mark(r.failed)}"

    wide = g.assign(cell=g.apply(cell, axis=1)).cell.unstack(columns, sort=False) if len(g) else pd.DataFrame()
    wide.columns = wide.columns if len(columns) > 1 else list(wide.columns)
    return wide.fillna("")


def interval_cells(df: pd.DataFrame, index, columns) -> pd.DataFrame:
    """A wide view of a long table with ``spc``, ``ci_low``, ``ci_high`` (and, where present, ``undefined`` of
    ``cells`` and ``readout_failed``): one '0.53 [0.48, 0.57]' cell per ``index`` x ``columns``, the undefined
    (constant-prediction) cells and a failed readout marked, as :func:`spc_means` does."""
    def cell(r) -> str:
        ci = f" [{_two(r.ci_low)}, {_two(r.ci_high)}]" if pd.notna(r.ci_low) else ""
        undefined = f" [{int(r.undefined)}/{int(r.cells)} undef.]" if r.get("undefined", 0) else ""
        return f"{_two(r.spc)}{ci}{undefined}{_failed_mark(r.get('readout_failed'))}"

    wide = df.assign(cell=df.apply(cell, axis=1)).pivot_table(index=index, columns=columns, values="cell",
                                                               aggfunc="first", sort=False)
    wide.columns.name = None
    return wide.fillna("")


def _two(v: float) -> str:
    """Two decimals, never a negative zero."""
    return f"{0.0 if abs(v) < 0.005 else v:.2f}"


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """Write ``df`` as CSV, leaving the file (and its time stamp) alone when it already holds exactly
    that: a figure drawn from the file then knows it is current (notebook 06 redraws only what changed)."""
    path = Path(path)
    text = df.to_csv(index=False)
    if not (path.exists() and path.read_text() == text):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def write_table(df: pd.DataFrame, out_dir: Path, product: Product, caption: str = "",
                per_image: pd.DataFrame | None = None) -> Path:
    """Write ``product``'s CSV (full precision) and Markdown (rounded, with a caption), and the per-image
    metrics behind it, where given, as its per-image file (:meth:`Product.per_image_path`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(df, product.csv(out_dir))
    if per_image is not None:
        write_csv(per_image, product.per_image_path(out_dir))
    md = df.to_markdown(index=False, floatfmt=".3f")
    product.md(out_dir).write_text((f"{caption}\n\n" if caption else "") + md + "\n")
    return product.csv(out_dir)


def write_frame(frame: pd.DataFrame, out_dir: Path, product: Product, budget: bool = False) -> Path:
    """Write the per-image results behind ``product`` (its larger-budget twin's with ``budget``): what the claims'
    rules read (:func:`posenc_utils.studies.claims.load_frames`)."""
    return write_csv(frame, product.per_image_path(out_dir, budget))
