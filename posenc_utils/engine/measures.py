"""The measures of position information, declared once: every table's columns, their intervals and
the paper's numbers beside ours follow from :data:`MEASURES`.

A measure is one function and one :class:`Measure` entry:

* a **probe** measure (``needs_probe=True``) scores a trained readout's predictions against the
  target, one value per image (``function(predictions, target) -> (N,)``): SPC and MAE, the paper's.
  The readout's evaluation stores every probe measure per image; the tables average them over images
  and readout seeds (:func:`summarize`, :func:`seed_summary`).
* a **feature** measure (``needs_probe=False``) reads the cached encoder features directly, no
  readout involved (``function(features, channels, groups) -> (value, low, high)``, the channels the
  row's readout sees, the image groups its interval resamples): :func:`position_variance`. It is
  defined on a set of images, so a table gives it per row's test set and on the readout's training
  images (:func:`feature_table`), beside the probe measures.

Column names: a measure's value is its ``name``; a probe measure with ``interval=SEEDS_AND_IMAGES``
adds ``<name>_sd_seeds``, ``<name>_ci_low/high`` (t over seeds) and ``<name>_boot_low/high`` (bootstrap
over test images); ``undefined_as_zero`` adds ``<name>_undefined``; a measure the paper reports
(``paper_column``) adds ``paper_<name>``; a feature measure adds ``<name>_low/high`` and the same three
on the training images, ``<name>_train``, ``<name>_train_low/high``, after every other column (not for a measure
trained on the training images, ``needs_train``: scored on them it would measure its own fit, not the features).
A measure trained on the readout's training features gets them as ``train=``: :func:`rowcol_accuracy`, row/column
classification (:mod:`posenc_utils.engine.rowcol`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from scipy import stats

from ..primitives import cache, paths, timing
from .features import FeatureSet, open_rows
from .rowcol import BINS, TABLE_BINS, rowcol_accuracy
from ..primitives.metrics import (GROUPS, cluster_bootstrap_ci, image_groups, jackknife_interval, mae,  # noqa: F401
                                 spc, t_interval)
from ..primitives.targets import constant_baseline

SEEDS_AND_IMAGES = "t interval over readout seeds; bootstrap over test images (resampling source photographs)"
NO_INTERVAL = "none"
IMAGE_GROUPS = "jackknife over groups of images (whole source photographs), t quantile"


@dataclass(frozen=True)
class Measure:
    """One measure of position information (see the module's docstring for the columns it adds)."""

    name: str  # its column in every table
    description: str  # one line
    higher_is_better: bool
    needs_probe: bool  # True: function(predictions, target) -> per image; False: function(features, channels, groups)
    function: Callable
    interval: str  # how its interval is formed: SEEDS_AND_IMAGES, NO_INTERVAL or IMAGE_GROUPS
    paper_column: str | None = None  # its column in the paper's tables (paper_tables.csv); None: not reported by the paper
    undefined_as_zero: bool = False  # an undefined (NaN) per-image value is averaged as 0 and counted
    needs_train: bool = False  # a feature measure trained on the readout's training features (``train=`` them)
    tables: tuple[str, ...] | None = None  # a feature measure given only beside these tables (None: every table)


# ---------------------------------------------------------------- the share of feature variance explained by position

BLOCK_VALUES = 2**23  # feature values converted to float32 per step of the pass (32 MB)
VARIANCE_VERSION = 2  # 2: float32 steps into float64 accumulators (1: float64 throughout)


def variance_components(features: FeatureSet, groups: np.ndarray) -> dict[str, np.ndarray]:
    """Per channel c, the positional variance ``P[c] = mean_yx (mu[c,y,x] - m[c])^2`` (``mu``: the mean
    over images at each location, ``m``: the mean over images and locations) and the total variance
    ``T[c] = mean_iyx (F - m[c])^2``, on all images (row 0) and with each group of images left out
    (row g + 1): ``P`` and ``T`` of shape (1 + groups, C), and ``n`` the images each row counts.

    One pass over the cached features, a few images at a time (converted to float32 in one reused
    buffer; their sums then go to float64 accumulators): the sum at each location per group (groups x 784 x C: 92 MB for VGG16's 1472 channels, 245 MB for ResNet152's
    3904, with 10 groups; a bootstrap's replicates would each need as much, hence the jackknife) and
    the sum of squares per channel and group. Values are taken relative to the first image's value at
    the first location (the shift changes no variance, keeps the moments from cancelling, and leaves a
    constant channel exactly 0). The float16 storage scale of a tap multiplies P and T alike and is
    not applied. Cached by the features' key and the groups."""
    groups = np.asarray(groups, dtype=np.int64)[:features.n]
    key = cache.make_key({"measure": "position_variance", "features": features.key, "groups": groups.tolist(),
                          "version": VARIANCE_VERSION})
    folder = paths.cache_dir() / "measures"
    data_path, meta_path = folder / f"position_variance-{key}.npz", folder / f"position_variance-{key}.json"

    def cached() -> dict[str, np.ndarray] | None:
        if cache.read_file_entry(data_path, meta_path, key) is None:
            return None
        with np.load(data_path) as z:
            return {name: z[name] for name in ("P", "T", "n")}

    def compute() -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        out = _stream_components(features, groups)
        timing.add("position_variance", time.perf_counter() - t0)

        def write(tmp) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a path
                np.savez(f, **out)

        cache.write_file_entry(data_path, meta_path, {"key": key, "features": features.key}, write)
        return out

    return cache.computed_once(data_path, cached, compute)


def _chunks(groups: np.ndarray, per: int) -> list[tuple[int, int, int]]:
    """(first image, stop, group) runs of consecutive images of one group, at most ``per`` images each."""
    out, start = [], 0
    for i in range(1, len(groups) + 1):
        if i == len(groups) or groups[i] != groups[start] or i - start == per:
            out.append((start, i, int(groups[start])))
            start = i
    return out


def _stream_components(features: FeatureSet, groups: np.ndarray) -> dict[str, np.ndarray]:
    n, side2, c = features.n, features.size**2, features.n_channels
    k = int(groups.max()) + 1
    sums = torch.zeros(k, side2, c, dtype=torch.float64)
    squares = torch.zeros(k, c, dtype=torch.float64)
    counts = np.bincount(groups, minlength=k)
    chunks = _chunks(groups, max(1, BLOCK_VALUES // (side2 * c)))
    buf = torch.empty(max(b - a for a, b, _ in chunks), side2, c)  # float32, reused: no allocation per step
    fmap = open_rows(features)
    try:
        ref = fmap.block(0, 1)[0, 0].float().cpu()
        for j, (i0, i1, g) in enumerate(chunks):
            if j + 1 < len(chunks):
                fmap.prefetch(np.arange(*chunks[j + 1][:2]))
            x = buf[:i1 - i0]
            x.copy_(fmap.block(i0, i1)).sub_(ref)  # float16 -> float32, relative to the reference value
            sums[g] += x.sum(0)  # float32 over the few images of one step, float64 across steps
            squares[g] += torch.linalg.vector_norm(x, dim=1).double().square().sum(0)
            fmap.release(np.arange(i0, i1))
    finally:
        fmap.close()
    total_s, total_q = sums.sum(0), squares.sum(0)
    rows_p, rows_t, rows_n = [], [], []
    for left_out in [None, *range(k)]:
        m_images = n if left_out is None else n - int(counts[left_out])
        rows_n.append(m_images)
        if m_images == 0:
            rows_p.append(torch.full((c,), float("nan"), dtype=torch.float64))
            rows_t.append(torch.full((c,), float("nan"), dtype=torch.float64))
            continue
        # the mean over images at each location (side2, C), in place of one buffer
        mu = total_s.clone() if left_out is None else torch.sub(total_s, sums[left_out])
        mu /= m_images
        q = total_q if left_out is None else total_q - squares[left_out]
        m = mu.mean(0)
        rows_p.append(torch.var(mu, dim=0, correction=0))
        rows_t.append((q / (m_images * side2) - m * m).clamp_min(0))
        del mu
    return {"P": torch.stack(rows_p).numpy(), "T": torch.stack(rows_t).numpy(), "n": np.array(rows_n)}


def variance_share(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Mean over channels of ``P / T`` along the last axis, over the channels that vary (``T > 0``; a
    constant channel has no variance to share and is left out); NaN where no channel varies."""
    p, t = np.atleast_2d(p), np.atleast_2d(t)
    varies = t > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(varies, np.clip(p / np.where(varies, t, 1), 0, 1), 0.0)
        return ratio.sum(-1) / varies.sum(-1)


def position_variance(features: FeatureSet, channels: np.ndarray | None = None, groups: np.ndarray | None = None,
                      level: float = 0.95) -> tuple[float, float, float]:
    """The share of feature variance explained by position, and its ``level`` jackknife interval over
    groups of images (:func:`image_groups`; contiguous blocks by default).

    For each channel at each location, the variance over locations of the mean over images, divided by
    the channel's total variance (:func:`variance_components`), averaged over the channels that vary
    (of ``channels``: all by default). In [0, 1]: 1 when every image is the same (all variance is then
    positional), about 1/N for N images of features that carry no position (the mean over N images
    keeps 1/N of their variance). NaN on fewer than two images: the measure is one of a set."""
    if features.n < 2:
        return float("nan"), float("nan"), float("nan")
    groups = image_groups(features.n) if groups is None else np.asarray(groups)
    comp = variance_components(features, groups)
    p, t = comp["P"], comp["T"]
    if channels is not None:
        p, t = p[:, channels], t[:, channels]
    shares = variance_share(p, t)
    lo, hi = jackknife_interval(shares[0], shares[1:], level)
    return float(shares[0]), lo, hi


# ---------------------------------------------------------------- the registry

MEASURES: tuple[Measure, ...] = (
    Measure("spc", "Spearman rank correlation of the readout's prediction with the target map, per image",
            True, True, spc, SEEDS_AND_IMAGES, paper_column="spc", undefined_as_zero=True),
    Measure("mae", "mean absolute difference of the readout's prediction from the target map, per image",
            False, True, mae, NO_INTERVAL, paper_column="mae"),
    Measure("position_variance", "share of the features' variance explained by position (no readout), on a set of images",
            True, False, position_variance, IMAGE_GROUPS),
    Measure("rowcol", f"accuracy of a linear classifier of each location's row and column bin ({TABLE_BINS} per axis; "
            f"{', '.join(map(str, BINS))} in the card) from the features at the tap's own resolution, trained on the "
            f"training images (chance {1 / TABLE_BINS:.2f})",
            True, False, rowcol_accuracy, IMAGE_GROUPS, needs_train=True, tables=("table1", "table3")),
)


def probe_measures() -> tuple[Measure, ...]:
    return tuple(m for m in MEASURES if m.needs_probe)


def feature_measures(table: str | None = None) -> tuple[Measure, ...]:
    """The feature measures (those given beside ``table``: a measure trained on the features is paid for only where it
    is read)."""
    return tuple(m for m in MEASURES if not m.needs_probe and (table is None or m.tables is None or table in m.tables))


def overview() -> pd.DataFrame:
    """The registry as a table: each measure, what it reads, how its interval is formed, and whether the
    paper reports it (the comparison with the paper covers only those it does)."""
    return pd.DataFrame([dict(measure=m.name, description=m.description, higher_is_better=m.higher_is_better,
                              reads="a trained readout's predictions" if m.needs_probe else "the cached features",
                              interval=m.interval,
                              paper=f"reported (paper_{m.name})" if m.paper_column else "not reported by the paper")
                         for m in MEASURES])


def summary_columns() -> list[str]:
    """The probe measures' values, their undefined counts and ``n_images``: e.g. spc, mae, spc_undefined, n_images."""
    probe = probe_measures()
    return [m.name for m in probe] + [f"{m.name}_undefined" for m in probe if m.undefined_as_zero] + ["n_images"]


def interval_columns(m: Measure) -> list[str]:
    """The interval columns of one measure."""
    if m.interval == SEEDS_AND_IMAGES:
        return [f"{m.name}_sd_seeds", f"{m.name}_ci_low", f"{m.name}_ci_high", f"{m.name}_boot_low", f"{m.name}_boot_high"]
    if m.interval == IMAGE_GROUPS:
        return [f"{m.name}_low", f"{m.name}_high"]
    return []


def seed_columns() -> list[str]:
    """``n_seeds`` and the probe measures' intervals (:func:`seed_summary`)."""
    return ["n_seeds"] + [c for m in probe_measures() for c in interval_columns(m)]


def paper_columns() -> list[str]:
    """The paper's value of every measure it reports, beside ours (:func:`tables.with_paper`)."""
    return [f"paper_{m.name}" for m in MEASURES if m.paper_column]


def _on_set_columns(m: Measure, suffix: str) -> list[str]:
    """A feature measure's value and interval columns on one set of images ("": the row's test set, "_train")."""
    return [f"{m.name}{suffix}"] + [c.replace(m.name, f"{m.name}{suffix}", 1) for c in interval_columns(m)]


def feature_columns(table: str | None = None) -> list[str]:
    """Every feature measure (of ``table``) on the row's test set and on the readout's training images, with intervals."""
    return [c for m in feature_measures(table) for suffix in _sets(m) for c in _on_set_columns(m, suffix)]


def _sets(m: Measure) -> tuple[str, ...]:
    """The image sets a feature measure is given on: the row's test set, and the training images unless it is
    trained on them (its fit there is not a measure of the features)."""
    return ("",) if m.needs_train else ("", "_train")


# Every readout row's baseline (:func:`baseline_summary`): what a readout that found no position would show.
BASELINE_COLUMNS = ["train_loss", "const_loss", "const_mae", "constant_share", "readout_failed"]


def table_columns(keys, middle=(), seeds: bool = True, paper: bool = True, after=(), features: bool = True,
                  table: str | None = None) -> list[str]:
    """A table's columns in the order every table keeps: ``keys``, the probe measures (:func:`summary_columns`),
    ``middle``, the seeds and intervals, the readout's baseline (:data:`BASELINE_COLUMNS`), the paper's values and
    which paper row they are, ``after``, and last the feature measures of ``table`` (so a measure added later appends
    columns)."""
    return [*keys, *summary_columns(), *middle, *(seed_columns() if seeds else ()), *BASELINE_COLUMNS,
            *((*paper_columns(), "compared_with") if paper else ()), *after, *(feature_columns(table) if features else ())]


def baseline_summary(per_image: pd.DataFrame, by: list[str], image_size: int) -> pd.DataFrame:
    """Per group of ``per_image`` (one pattern each; ``seed``, ``train_loss`` and ``readout_failed`` columns, as
    :func:`posenc_utils.studies.experiments.per_image_frame` gives them): the readout's final training loss (mean over its
    seeds), the squared and absolute error of the best constant prediction of the pattern (:func:`targets.constant_baseline`;
    the squared error is what the readout's bias alone reaches), the share of test images with a constant
    prediction (undefined SPC, over images and seeds), and how many of its seeds failed to train."""
    rows = []
    for keys, g in per_image.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        loss, err = constant_baseline(str(g.pattern.iloc[0]), image_size)
        seeds = g.groupby(g["seed"] if "seed" in g else np.zeros(len(g), int))
        rows.append(dict(zip(by, keys), train_loss=float(seeds.train_loss.first().mean()), const_loss=loss,
                         const_mae=err, constant_share=float(g.spc.isna().mean()),
                         readout_failed=int(seeds.readout_failed.first().astype(bool).sum())))
    return pd.DataFrame(rows, columns=[*by, *BASELINE_COLUMNS])


# ---------------------------------------------------------------- summaries of the probe measures


def summarize(per_image: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Average every probe measure per image within groups; an undefined value of a measure with
    ``undefined_as_zero`` (SPC of a constant prediction) is averaged as 0 and counted."""
    probe = probe_measures()
    aggs = {m.name: (m.name, (lambda s: float(s.fillna(0.0).mean())) if m.undefined_as_zero else "mean") for m in probe}
    aggs.update({f"{m.name}_undefined": (m.name, lambda s: int(s.isna().sum())) for m in probe if m.undefined_as_zero})
    aggs["n_images"] = (probe[0].name, "size")
    return per_image.groupby(by, sort=False).agg(**aggs).reset_index()


def seed_summary(per_image: pd.DataFrame, by: list[str], sources: dict | None = None, level: float = 0.95,
                 n_boot: int = 1000) -> pd.DataFrame:
    """:func:`summarize` over readout seeds (``per_image`` has ``seed`` and ``image`` columns). A measure with
    ``interval=SEEDS_AND_IMAGES``: the mean over seeds of each seed's mean, the seeds' standard deviation and
    ``level`` t-interval, and a bootstrap interval over test images of the seed-averaged value, resampling
    whole source photographs where ``sources`` gives them (test set name -> source id of each image); any
    other probe measure: its mean over seeds and images."""
    probe = probe_measures()
    rows = []
    for keys, g in per_image.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        cell = dict(zip(by, keys))
        row, intervals = dict(cell), {}
        for m in probe:
            if m.interval != SEEDS_AND_IMAGES:
                row[m.name] = float(g[m.name].mean())
                continue
            values = g[m.name].fillna(0.0) if m.undefined_as_zero else g[m.name]
            per_seed = values.groupby(g.seed).mean()
            lo, hi = t_interval(per_seed.values, level)
            per_img = values.groupby(g.image).mean()
            groups = (sources or {}).get(cell.get("test_set"))
            groups = None if groups is None else np.asarray(groups)[per_img.index.values]
            blo, bhi = (cluster_bootstrap_ci(per_img.values, groups, n_boot=n_boot, level=level)
                        if len(per_img) > 1 else (float("nan"), float("nan")))
            row[m.name] = float(per_seed.mean())
            sd = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else float("nan")
            intervals.update(zip(interval_columns(m), (sd, lo, hi, blo, bhi)))
        for m in probe:
            if m.undefined_as_zero:
                row[f"{m.name}_undefined"] = int(g[m.name].isna().groupby(g.seed).sum().max())
        row.update(n_images=int(g.image.nunique()), n_seeds=int(g.seed.nunique()), **intervals)
        rows.append(row)
    return pd.DataFrame(rows)


def evaluate_probe(pred: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """Every probe measure of predictions (N, H, W) against one target map: name -> (N,) values."""
    return {m.name: m.function(pred, target) for m in probe_measures()}


# ---------------------------------------------------------------- the feature measures beside a table's rows


def feature_table(train: FeatureSet, tests: dict[str, FeatureSet], channels: np.ndarray | None = None,
                  sources: dict | None = None, table: str | None = None) -> pd.DataFrame:
    """One row per test set (``test_set`` and :func:`feature_columns`): every feature measure on that test
    set's features and on the training set's, over ``channels`` (the readout's; all by default), with
    intervals over groups of images (whole source photographs where ``sources`` gives them: test set name
    -> source id of each image); only those given beside ``table`` (:func:`feature_measures`). Cached per feature
    file, so a table's rows reuse one pass each."""
    def measure(m: Measure, feats: FeatureSet, groups: np.ndarray):
        return m.function(feats, channels, groups, **({"train": train} if m.needs_train else {}))

    chosen = feature_measures(table)
    on_train = {m.name: measure(m, train, image_groups(train.n)) for m in chosen if not m.needs_train}
    rows = []
    for name, feats in tests.items():
        groups = image_groups(feats.n, (sources or {}).get(name))
        row = {"test_set": name}
        for m in chosen:
            for suffix in _sets(m):
                values = measure(m, feats, groups) if suffix == "" else on_train[m.name]
                row.update(zip(_on_set_columns(m, suffix), values))
        rows.append(row)
    return pd.DataFrame(rows, columns=["test_set", *feature_columns(table)])


def beside_spc(table: pd.DataFrame, by: list[str], test_set: str) -> pd.DataFrame:
    """One row per ``by`` (e.g. encoder, or encoder and setting) on ``test_set``: the mean SPC over patterns
    beside every feature measure's columns (one value per row: they do not depend on the pattern)."""
    d = table[table.test_set == test_set]
    cols = [c for c in feature_columns() if c in d]
    return d.groupby(by, sort=False).agg(spc=("spc", "mean"), **{c: (c, "first") for c in cols}).reset_index()


def rank_agreement(table: pd.DataFrame, by: list[str], test_set: str, measure: str = "position_variance") -> float:
    """Spearman correlation, over the rows ``by`` on ``test_set`` (:func:`beside_spc`), of the mean SPC over
    patterns with the feature measure ``measure``: do the two rank the rows alike? NaN below three rows."""
    d = beside_spc(table, by, test_set)[["spc", measure]].dropna()
    if len(d) < 3 or d[measure].nunique() < 2 or d.spc.nunique() < 2:
        return float("nan")
    return float(stats.spearmanr(d.spc, d[measure]).statistic)
