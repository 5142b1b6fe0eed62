"""Evidence for a verdict: an effect with its interval, a part (an effect against a threshold), and how
a part and a claim are judged.

An effect is measured on per-image frames (a row per readout seed x test image); its interval is
paired and covers both the spread over readout seeds (a t-interval of the per-seed means) and over
test images (a bootstrap resampling source photographs): the wider of the two on each side. A part
**holds** when the interval lies on the claimed side of its threshold, is **contradicted** when it
lies on the other side, and is **not decided** otherwise, with the reason. :mod:`posenc_utils.claims`
builds the paper's ten claims from these.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .metrics import cluster_bootstrap_ci, t_interval

HOLDS, CONTRADICTED, NOT_DECIDED = "holds", "contradicted", "not decided"


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

    @property
    def has_interval(self) -> bool:
        return bool(np.isfinite(self.low) and np.isfinite(self.high))

    def text(self) -> str:
        ci = f" [{_num(self.low)}, {_num(self.high)}]" if self.has_interval else " (no interval)"
        return f"{self.what}: {_num(self.value)}{ci}"


def _num(v: float) -> str:
    """Two decimals, signed, never a negative zero."""
    v = 0.0 if abs(v) < 0.005 else v
    return f"{v:+.2f}"


@dataclass(frozen=True)
class Part:
    """One part of a rule: an effect against a threshold, and its outcome."""

    name: str
    effect: Effect
    side: str  # "above": the claim says effect > threshold; "below": < threshold; "within": |effect| < threshold
    threshold: float
    outcome: str = NOT_DECIDED
    reason: str = ""
    decides: bool = True  # False: reported beside the claim (random-init rows), never deciding it
    blocked: str = ""  # a reason that leaves the part undecided whatever the numbers (e.g. "stand-in")
    cannot_contradict: str = ""  # the reason given instead of "contradicted" where the opposite cannot refute

    @property
    def key(self) -> tuple[str, str]:
        return self.name, self.effect.what

    def text(self) -> str:
        out = f"{self.outcome}" + (f" ({self.reason})" if self.reason else "")
        return f"{self.name} ({self.rule_text}): {self.effect.text()}: {out}"

    @property
    def rule_text(self) -> str:
        """The threshold as the claim states it ("> 0", "< 0.7", "within +-0.1"; no "|": tables are Markdown)."""
        return {"above": "> ", "below": "< ", "within": "within +-"}[self.side] + f"{self.threshold:g}"


def judge(part: Part, points: bool = False) -> Part:
    """The outcome of ``part`` from its interval (``points``: its point value where it has no interval,
    as for the paper's published numbers)."""
    e, t = part.effect, part.threshold
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
    else:
        yes, no = (-t < lo) and (hi < t), (lo > t) or (hi < -t)
    if part.blocked:
        return replace(part, outcome=NOT_DECIDED, reason=part.blocked)
    if yes:
        return replace(part, outcome=HOLDS, reason="")
    if no:
        return replace(part, outcome=NOT_DECIDED, reason=part.cannot_contradict) if part.cannot_contradict \
            else replace(part, outcome=CONTRADICTED, reason="")
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
    """(verdict, reason) of a claim from its deciding parts."""
    deciding = [p for p in parts if p.decides]
    if not deciding:
        return NOT_DECIDED, "not testable"
    if any(p.outcome == CONTRADICTED for p in deciding):
        return CONTRADICTED, ""
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


def pattern_cells(df: pd.DataFrame, patterns) -> pd.Series:
    """Mean SPC over ``patterns`` per (seed, image) (undefined SPC counted as 0, as the paper)."""
    d = df[df.pattern.isin(patterns)]
    return d.assign(spc=d.spc.fillna(0.0)).groupby(["seed", "image"]).spc.mean()


def _interval(per_seed_image: pd.Series, sources: pd.Series, level: float = 0.95) -> tuple[float, float, int, int]:
    """The wider on each side of the t-interval over seeds and the bootstrap over images (source photographs)."""
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
           b_patterns=None) -> Effect:
    """Mean SPC over ``patterns`` of rows ``a`` (minus that of rows ``b`` on the same images and seeds,
    over ``b_patterns``, default ``patterns``), with its paired 95% interval."""
    rows_a = select(df, **a)
    x = pattern_cells(rows_a, patterns)
    if b is not None:
        y = pattern_cells(select(df, **b), b_patterns or patterns)
        x, y = x.align(y, join="inner")
        x = x - y
    if x.empty:
        return Effect(what, float("nan"))
    lo, hi, n_img, n_seed = _interval(x, image_sources(rows_a))
    return Effect(what, float(x.mean()), lo, hi, n_img, n_seed)


def ratio_effect(df: pd.DataFrame, what: str, num: dict, den: dict, patterns) -> Effect:
    """Mean SPC of rows ``num`` over that of rows ``den`` (same images and seeds), with a 95% interval:
    over seeds (t-interval of per-seed ratios) and images (bootstrap of the ratio of means)."""
    x, y = pattern_cells(select(df, **num), patterns).align(pattern_cells(select(df, **den), patterns), join="inner")
    if x.empty or y.mean() <= 0:
        return Effect(what, float("nan"))
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
    return Effect(what, float(x.mean() / y.mean()), lo, hi, len(xi), len(per_seed))


def slope_effect(df: pd.DataFrame, what: str, by_stage: dict[int, dict], patterns) -> Effect:
    """Least-squares slope of mean SPC on the stage index (per image and seed, then averaged), with a
    paired 95% interval: does SPC rise with depth?"""
    stages = sorted(by_stage)
    cols = [pattern_cells(select(df, **by_stage[s]), patterns).rename(s) for s in stages]
    wide = pd.concat(cols, axis=1, join="inner")
    if wide.empty:
        return Effect(what, float("nan"))
    x = np.asarray(stages, float) - np.mean(stages)
    slope = pd.Series(wide.to_numpy() @ x / (x @ x), index=wide.index)
    lo, hi, n_img, n_seed = _interval(slope, image_sources(select(df, **by_stage[stages[0]])))
    return Effect(what, float(slope.mean()), lo, hi, n_img, n_seed)
