"""Evidence for a verdict: an effect with its interval, a part (an effect against a threshold), and how
a part and a claim are judged.

An effect is measured on per-image frames (a row per readout seed x test image); its interval is
paired and covers both the spread over readout seeds (a t-interval of the per-seed means) and over
test images (a bootstrap resampling source photographs): the wider of the two on each side. A part
**holds** when the interval lies on the claimed side of its threshold, is **contradicted** when it
lies on the other side, is **not reproduced** when it excludes the paper's own effect size (from the paper's
published cells) without showing the opposite, and is **not decided** otherwise, with the reason.
:mod:`posenc_utils.studies.claims` builds the paper's ten claims from these.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

from ..primitives.metrics import cluster_bootstrap_ci, t_interval

HOLDS, CONTRADICTED, NOT_REPRODUCED, NOT_DECIDED = "holds", "contradicted", "not reproduced", "not decided"
OUTCOMES = (HOLDS, CONTRADICTED, NOT_REPRODUCED, NOT_DECIDED)
READOUT_FAILED = "readout failed"  # the reason of a part measured on a readout that did not train


# ---------------------------------------------------------------- effects and parts


@dataclass(frozen=True)
class Effect:
    """One measured number with its 95% interval (NaN where the data give none)."""

    what: str
    value: float
    low: float = float("nan")
    high: float = float("nan")
    n_images: int = 1
    n_seeds: int = 1
    failed: bool = False  # measured on a readout that failed to train: it decides nothing

    @property
    def has_interval(self) -> bool:
        return bool(np.isfinite(self.low) and np.isfinite(self.high))

    def text(self) -> str:
        ci = f" [{_num(self.low)}, {_num(self.high)}]" if self.has_interval else " (no interval)"
        return f"{self.what}: {_num(self.value)}{ci}" + (" [readout failed]" if self.failed else "")


def _num(v: float) -> str:
    """Two decimals, signed, never a negative zero."""
    v = 0.0 if abs(v) < 0.005 else v
    return f"{v:+.2f}"


@dataclass(frozen=True)
class Part:
    """One part of a rule: an effect against a threshold, and its outcome."""

    name: str
    effect: Effect
    # "above": the claim says effect > threshold; "below": < threshold; "within": |effect| < threshold; "reaches":
    # effect = threshold, its largest value (a rank correlation of 1): holds when the whole interval is there,
    # contradicted when the whole interval is below it
    side: str
    threshold: float
    outcome: str = NOT_DECIDED
    reason: str = ""
    decides: bool = True  # False: reported beside the claim (random-init rows), never deciding it
    blocked: str = ""  # a reason that leaves the part undecided whatever the numbers (e.g. "stand-in")
    cannot_contradict: str = ""  # the reason given instead of "contradicted" where the opposite cannot refute
    row: str = ""  # the paper's row (model, or task) the part stands for: it finds the paper's own effect
    paper: float = float("nan")  # the same effect on the paper's published numbers (NaN: the paper gives none)

    @property
    def key(self) -> tuple[str, str]:
        return self.name, self.effect.what

    @property
    def paper_key(self) -> tuple[str, str]:
        """What the same part is called on the paper's own numbers."""
        return self.name, self.row

    def text(self) -> str:
        out = f"{self.outcome}" + (f" ({self.reason})" if self.reason else "")
        paper = f" (paper: {_num(self.paper)})" if np.isfinite(self.paper) else ""
        return f"{self.name} ({self.rule_text}): {self.effect.text()}{paper}: {out}"

    @property
    def rule_text(self) -> str:
        """The threshold as the claim states it ("> 0", "< 0.7", "within +-0.1"; no "|": tables are Markdown)."""
        return {"above": "> ", "below": "< ", "within": "within +-", "reaches": "= "}[self.side] + f"{self.threshold:g}"


def judge(part: Part, points: bool = False) -> Part:
    """The outcome of ``part`` from its interval (``points``: its point value where it has no interval,
    as for the paper's published numbers), in this order: a readout that failed to train, or no interval, decides
    nothing; a blocked part (a stand-in comparison) stays not decided; the interval on the claimed side of the
    threshold holds, on the other side contradicts; an interval that excludes the paper's own effect (``paper``,
    on the claimed side) without showing the opposite is "not reproduced"; anything else is noise."""
    e, t = part.effect, part.threshold
    if e.failed:
        return replace(part, outcome=NOT_DECIDED, reason=READOUT_FAILED)
    if e.has_interval:
        lo, hi = e.low, e.high
    elif points and np.isfinite(e.value):
        lo = hi = e.value
    else:
        return replace(part, outcome=NOT_DECIDED, reason=part.blocked or "noise: no interval")
    if part.side == "above":
        yes, no = lo > t, hi < t
    elif part.side == "below":
        yes, no = hi < t, lo > t
    elif part.side == "reaches":
        yes, no = lo >= t - 1e-9, hi < t - 1e-9
    else:
        yes, no = (-t < lo) and (hi < t), (lo > t) or (hi < -t)
    if part.blocked:
        return replace(part, outcome=NOT_DECIDED, reason=part.blocked)
    if yes:
        return replace(part, outcome=HOLDS, reason="")
    if no:
        return replace(part, outcome=NOT_DECIDED, reason=part.cannot_contradict) if part.cannot_contradict \
            else replace(part, outcome=CONTRADICTED, reason="")
    p = part.paper
    if np.isfinite(p) and ((part.side == "above" and t < p and hi < p) or (part.side == "below" and p < t and p < lo)):
        return replace(part, outcome=NOT_REPRODUCED, reason=f"the interval excludes the paper's {_num(p)}")
    return replace(part, outcome=NOT_DECIDED, reason="noise")


def with_study_uncertainty(part: Part, study: Part | None) -> Part:
    """A larger-budget part whose interval is at least as wide, on each side, as the same part at the study's
    budget: the budget run has one readout seed, and more training moves the number, not the noise."""
    if study is None or not study.effect.has_interval:
        return part
    e, s = part.effect, study.effect
    below = max(s.value - s.low, e.value - e.low if e.has_interval else 0.0)
    above = max(s.high - s.value, e.high - e.value if e.has_interval else 0.0)
    return replace(part, effect=replace(e, low=e.value - below, high=e.value + above))


def combine(parts: list[Part]) -> tuple[str, str]:
    """(verdict, reason) of a claim from its deciding parts: contradicted where one part is; else not reproduced
    where one part is (with its reason); else holds where all hold; else not decided, for the first undecided
    part's reason."""
    deciding = [p for p in parts if p.decides]
    if not deciding:
        return NOT_DECIDED, "not testable"
    if any(p.outcome == CONTRADICTED for p in deciding):
        return CONTRADICTED, ""
    missed = [p for p in deciding if p.outcome == NOT_REPRODUCED]
    if missed:
        return NOT_REPRODUCED, missed[0].reason
    if all(p.outcome == HOLDS for p in deciding):
        return HOLDS, ""
    first = next(p for p in deciding if p.outcome != HOLDS)
    return NOT_DECIDED, first.reason.split(":")[0]


# ---------------------------------------------------------------- paired effects from per-image frames


def select(df: pd.DataFrame, **where) -> pd.DataFrame:
    m = np.ones(len(df), bool)
    for k, v in where.items():
        m &= (df[k].isin(v) if isinstance(v, (list, tuple)) else df[k] == v).to_numpy()
    return df[m]


def failed(df: pd.DataFrame, patterns=None) -> bool:
    """Whether any readout head behind rows ``df`` (of ``patterns``: all by default) failed to train (its
    ``readout_failed`` column; frames saved before it existed have none)."""
    if "readout_failed" not in df:
        return False
    d = df if patterns is None or "pattern" not in df else df[df.pattern.isin(patterns)]
    return bool(d.readout_failed.fillna(False).astype(bool).any())


def pattern_cells(df: pd.DataFrame, patterns, column: str = "spc") -> pd.Series:
    """Mean ``column`` (SPC) over ``patterns`` per (seed, image) (undefined SPC counted as 0, as the paper);
    ``patterns`` None: a frame without patterns (one value per seed and image, e.g. claim 8's error ratio)."""
    d = df if patterns is None else df[df.pattern.isin(patterns)]
    values = d[column].fillna(0.0) if column == "spc" else d[column]
    return values.groupby([d.seed, d.image]).mean()


def paired_interval(per_seed_image: pd.Series, sources: pd.Series, level: float = 0.95) -> tuple[float, float, int, int]:
    """(low, high, images, seeds) of the mean of a paired difference per (seed, image): the wider on each side of the
    t-interval over seeds and the bootstrap over images (resampling ``sources``: image -> source photograph)."""
    per_seed = per_seed_image.groupby(level="seed").mean()
    per_image = per_seed_image.groupby(level="image").mean()
    lows, highs = [], []
    if len(per_seed) > 1:
        lo, hi = t_interval(per_seed.to_numpy(), level)
        lows.append(lo), highs.append(hi)
    if len(per_image) > 1:
        groups = sources.reindex(per_image.index).to_numpy()
        lo, hi = cluster_bootstrap_ci(per_image.to_numpy(), groups, level=level)
        lows.append(lo), highs.append(hi)
    if not lows:
        return float("nan"), float("nan"), len(per_image), len(per_seed)
    return min(lows), max(highs), len(per_image), len(per_seed)


def image_sources(df: pd.DataFrame) -> pd.Series:
    if "source" in df and df.source.notna().all():
        return df.groupby("image").source.first()
    return pd.Series(df.image.unique(), index=df.image.unique())


def effect(df: pd.DataFrame, what: str, a: dict, b: dict | None = None, patterns=("H", "V", "G", "HS", "VS"),
           b_patterns=None, column: str = "spc") -> Effect:
    """Mean SPC (``column``) over ``patterns`` of rows ``a`` (minus that of rows ``b`` on the same images and seeds,
    over ``b_patterns``, default ``patterns``), with its paired 95% interval."""
    rows_a = select(df, **a)
    x, bad = pattern_cells(rows_a, patterns, column), failed(rows_a, patterns)
    if b is not None:
        rows_b = select(df, **b)
        y, bad = pattern_cells(rows_b, b_patterns or patterns, column), bad or failed(rows_b, b_patterns or patterns)
        x, y = x.align(y, join="inner")
        x = x - y
    if x.empty:
        return Effect(what, float("nan"), failed=bad)
    lo, hi, n_img, n_seed = paired_interval(x, image_sources(rows_a))
    return Effect(what, float(x.mean()), lo, hi, n_img, n_seed, failed=bad)


def ratio_effect(df: pd.DataFrame, what: str, num: dict, den: dict, patterns) -> Effect:
    """Mean SPC of rows ``num`` over that of rows ``den`` (same images and seeds), with a 95% interval:
    over seeds (t-interval of per-seed ratios) and images (bootstrap of the ratio of means)."""
    rows_n, rows_d = select(df, **num), select(df, **den)
    bad = failed(rows_n, patterns) or failed(rows_d, patterns)
    x, y = pattern_cells(rows_n, patterns).align(pattern_cells(rows_d, patterns), join="inner")
    if x.empty or y.mean() <= 0:
        return Effect(what, float("nan"), failed=bad)
    lows, highs = [], []
    per_seed = x.groupby(level="seed").mean() / y.groupby(level="seed").mean()
    if len(per_seed) > 1:
        lo, hi = t_interval(per_seed.to_numpy())
        lows.append(lo), highs.append(hi)
    xi, yi = x.groupby(level="image").mean(), y.groupby(level="image").mean()
    if len(xi) > 1:
        groups = image_sources(select(df, **den)).reindex(xi.index).to_numpy()
        lo, hi = cluster_bootstrap_ci(np.c_[xi.to_numpy(), yi.to_numpy()], groups,
                                      stat=lambda v: v[:, 0].mean() / v[:, 1].mean() if v[:, 1].mean() > 0 else np.nan)
        lows.append(lo), highs.append(hi)
    lo, hi = (min(lows), max(highs)) if lows else (float("nan"), float("nan"))
    return Effect(what, float(x.mean() / y.mean()), lo, hi, len(xi), len(per_seed), failed=bad)


def _by_stage(df: pd.DataFrame, by_stage: dict[int, dict], patterns) -> tuple[list[int], pd.DataFrame, pd.Series, bool]:
    """(stages, mean SPC per (seed, image) x stage, each image's source photograph, whether a readout failed)."""
    stages = sorted(by_stage)
    rows = {s: select(df, **by_stage[s]) for s in stages}
    wide = pd.concat([pattern_cells(rows[s], patterns).rename(s) for s in stages], axis=1, join="inner")
    return stages, wide, image_sources(rows[stages[0]]), any(failed(r, patterns) for r in rows.values())


def slope_effect(df: pd.DataFrame, what: str, by_stage: dict[int, dict], patterns) -> Effect:
    """Least-squares slope of mean SPC on the stage index (per image and seed, then averaged), with a
    paired 95% interval: does SPC rise with depth?"""
    stages, wide, sources, bad = _by_stage(df, by_stage, patterns)
    if wide.empty:
        return Effect(what, float("nan"), failed=bad)
    x = np.asarray(stages, float) - np.mean(stages)
    slope = pd.Series(wide.to_numpy() @ x / (x @ x), index=wide.index)
    lo, hi, n_img, n_seed = paired_interval(slope, sources)
    return Effect(what, float(slope.mean()), lo, hi, n_img, n_seed, failed=bad)


def spearman_with_index(means: np.ndarray) -> float:
    """Spearman correlation of the positions 1..S with the values ``means`` (S,): 1 when they rise strictly."""
    if len(means) < 2 or np.ptp(means) == 0:
        return float("nan")
    return float(stats.spearmanr(np.arange(len(means)), means).statistic)


def order_effect(df: pd.DataFrame, what: str, by_stage: dict[int, dict], patterns, level: float = 0.95) -> Effect:
    """Spearman rank correlation of the stage index with the mean SPC over ``patterns`` at each stage (over test
    images and seeds): 1 when every deeper stage holds more than the one before it. Its interval is the wider, on
    each side, of a t-interval over the readout seeds' correlations and a bootstrap over test images that resamples
    source photographs (the statistic is of the stages' means, so each replicate ranks the stages again)."""
    _, wide, sources, bad = _by_stage(df, by_stage, patterns)
    if wide.empty:
        return Effect(what, float("nan"), failed=bad)
    per_image = wide.groupby(level="image").mean()
    per_seed = [spearman_with_index(g.to_numpy().mean(0)) for _, g in wide.groupby(level="seed")]
    lows, highs = [], []
    if len(per_seed) > 1:
        lo, hi = t_interval(np.asarray(per_seed), level)
        lows.append(lo), highs.append(hi)
    if len(per_image) > 1:
        groups = sources.reindex(per_image.index).to_numpy()
        lo, hi = cluster_bootstrap_ci(per_image.to_numpy(), groups, lambda v: spearman_with_index(v.mean(0)),
                                      n_boot=1000, level=level)
        lows.append(lo), highs.append(hi)
    lo, hi = (max(-1.0, min(lows)), min(1.0, max(highs))) if lows else (float("nan"), float("nan"))  # a correlation
    return Effect(what, spearman_with_index(per_image.to_numpy().mean(0)), lo, hi, len(per_image), len(per_seed),
                  failed=bad)
