"""The training budget: do the verdicts survive more training, and where on the curve does the study sit?

The paper trains every readout for 4,950 SGD steps (10,553 images, batch 32, 15 epochs); the study's
readouts take far fewer. Two checks:

* :func:`larger_budget`: the profile whose readouts train ``budget_factor`` times as long, in the
  paper's schedule shape (the learning-rate drop stays at the same fraction of training: epoch 10 of
  15), on the rows that decide claims (PosENet and the pretrained encoders; random-init rows decide
  nothing) and one readout seed. Each claim notebook runs its claim's tables again in that profile,
  and :func:`posenc_utils.studies.claims.decide` turns a verdict that changes there into "not decided
  (training budget)".
* :func:`budget_curve`: SPC against SGD steps and training images for PosENet with PEM padding 0, 1 and 2
  and the first pretrained VGG16, PosENet up to the paper's 4,950 steps on the small training set
  (:func:`curve_budgets`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter
import pandas as pd

from .experiments import Probe, Result, head_of, image_sets, probe, train_probes, view_features
from ..engine.plots import mark_failed, save_figure
from ..primitives.products import declare
from ..models.profiles import EncoderSpec, Profile, ReadoutSpec

PAPER_STEPS = 4950  # 10,553 images / batch 32 = 330 steps per epoch, 15 epochs
CURVE_PATTERNS = ("H", "G", "HS")  # the paper's Tables 2 and 4


def scaled(spec: ReadoutSpec, factor: float) -> ReadoutSpec:
    """``spec`` trained ``factor`` times as many epochs, the learning-rate drop at the same fraction of training."""
    epochs = max(1, round(spec.epochs * factor))
    return dataclasses.replace(spec, epochs=epochs, lr_step=max(1, round(epochs * spec.lr_step / spec.epochs)))


def steps(n_images: int, spec: ReadoutSpec) -> int:
    """SGD steps of a readout on ``n_images`` (the last batch of an epoch may be short)."""
    return spec.epochs * math.ceil(n_images / spec.batch_size)


def larger_budget(profile: Profile) -> Profile:
    """The claim-deciding rows of ``profile`` (PosENet and pretrained encoders) with readouts trained
    ``budget_factor`` times as long, one readout seed."""
    encoders = tuple(e for e in profile.encoders if e.name == "posenet" or e.pretrained)
    return profile.with_overrides(readout=scaled(profile.readout, profile.budget_factor), seeds=1, encoders=encoders)


def rerun(experiment: Callable[..., Result], profile: Profile, *args, **kwargs) -> Result:
    """The training-budget check of the claims an experiment decides: ``experiment`` again on
    :func:`larger_budget` (the claim-deciding rows, readouts trained ``budget_factor`` times as long, one seed).
    A notebook saves the result as the product's larger-budget twin (``result.save(out, product, budget=True)``)
    and hands its per-image results to the claims beside the first ones."""
    return experiment(larger_budget(profile), *args, **kwargs)


def _reaching(profile: Profile, n_images: int) -> int:
    """The epochs on ``n_images`` that reach ``profile.curve_max_steps`` SGD steps (the paper's 4,950), at least the study's."""
    per_epoch = steps(n_images, dataclasses.replace(profile.readout, epochs=1))
    return max(math.ceil(profile.curve_max_steps / per_epoch), profile.readout.epochs)


def curve_budgets(profile: Profile, n_images: int, encoder: EncoderSpec, small: bool | None = None,
                  long: bool | None = None) -> list[ReadoutSpec]:
    """The readout budgets of the curve on ``n_images``: the study's epochs, then for PosENet four times as many
    and, on the small set (``small``; by default: ``n_images`` is ``curve_train_n``), the epochs that reach
    ``profile.curve_max_steps`` SGD steps (the paper's 4,950); for an encoder ``budget_factor`` times (the verdicts'
    check, cached on the full set) and, with ``long`` (by default where the profile runs its extended readouts in
    the main job), four times and the epochs that reach ``curve_max_steps`` on either set. Measured offline (AMD
    EPYC, 2 cores): PosENet's 4,950 steps take ~25 s per readout (its steps are all overhead); a VGG16 readout's
    4,950 steps ~6 min on either set, hence `make extended`."""
    base = profile.readout
    if encoder.name != "posenet":
        epochs = [base.epochs, round(base.epochs * profile.budget_factor)]
        if profile.extended_in_main if long is None else long:
            epochs += [base.epochs * 4, _reaching(profile, n_images)]
        return [base if e == base.epochs else scaled(base, e / base.epochs) for e in dict.fromkeys(epochs)]
    epochs = [base.epochs, base.epochs * 4]
    if (n_images == profile.curve_train_n) if small is None else small:
        epochs.append(_reaching(profile, n_images))
    return [scaled(base, e / base.epochs) for e in dict.fromkeys(epochs)]


def _curve(profile: Profile, long: bool | None = None) -> list[tuple[str, int, dict]]:
    """The points of the budget curve: (readout label, training images, the probe's keyword arguments); ``long``:
    with the VGG16's long budgets (:func:`curve_budgets`)."""
    train, tests = image_sets(profile)
    vgg = [e for e in profile.encoders if e.name == "vgg16" and e.pretrained][:1]
    small = min(profile.curve_train_n, train.n) if profile.curve_train_n else None
    out = []
    for n in dict.fromkeys(n for n in (small, train.n) if n):
        head, views = head_of(train, n)
        source = view_features(views)
        runs = [(EncoderSpec("posenet", "none"), f"PosENet, PEM padding {p}", p) for p in (0, 1, 2)]
        runs += [(e, e.label, profile.readout.padding) for e in vgg]
        for spec, label, pem_padding in runs:
            for budget in curve_budgets(profile, head.n, spec, small=head.n == small, long=long):
                readout = dataclasses.replace(budget, padding=pem_padding)
                out.append((label, head.n, dict(spec=spec, readout=readout, sets=(head, [tests[0]]), features=source)))
    return out


def curve_probes(profile: Profile, long: bool | None = None) -> list[Probe]:
    """The probes of :func:`budget_curve`."""
    return [(profile, kw) for *_, kw in _curve(profile, long)]


def short_points(profile: Profile) -> list[tuple[str, int, dict]]:
    """The curve's points without the VGG16's long budgets (:func:`long_points`)."""
    return _curve(profile, long=False)


def long_points(profile: Profile) -> list[tuple[str, int, dict]]:
    """The curve's points beyond :func:`short_points`: the VGG16 trained four times as long and up to
    ``curve_max_steps`` (`make extended` offline; notebook 04 where the profile runs them in the main job)."""
    short = {(label, n, kw["readout"]) for label, n, kw in short_points(profile)}
    return [c for c in _curve(profile, long=True) if (c[0], c[1], c[2]["readout"]) not in short]


def budget_curve(profile: Profile, points: list[tuple[str, int, dict]] | None = None) -> Result:
    """Mean SPC over H, G, HS on the natural test images against SGD steps (at ``points``: by default the main
    job's, :func:`long_points` the rest), for PosENet with PEM padding 0, 1, 2 and the profile's first pretrained
    VGG16, on the first ``curve_train_n`` training images (all of them where there are fewer) and on all of them
    (Table 4's and Table 1's sets: their features and readouts are cached); ``readout_failed`` where a head of
    the point's readout failed to train."""
    points = _curve(profile) if points is None else points
    train_probes([(profile, kw) for *_, kw in points])  # PosENet's readouts train side by side
    rows = []
    for label, n, kw in points:
        res, readout, natural = probe(profile, **kw), kw["readout"], kw["sets"][1][0]
        d = res.per_image[res.per_image.pattern.isin(CURVE_PATTERNS)]
        rows.append(dict(readout=label, train_images=n, epochs=readout.epochs, steps=steps(n, readout),
                         spc=float(d.spc.fillna(0.0).mean()), test_set=natural.name,
                         study=readout.epochs == profile.readout.epochs, readout_failed=bool(d.readout_failed.any()),
                         extended=False))
    return Result(pd.DataFrame(rows))


def plot_budget_curve(curve: pd.DataFrame, path: Path) -> plt.Figure:
    """SPC against SGD steps (log scale), one panel per training-set size, one line per readout; the paper's
    4,950 steps and the study's own budget marked."""
    import seaborn as sns

    sizes = sorted(curve.train_images.unique())
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 3.4), sharex=True, sharey=True, squeeze=False)
    for ax, n in zip(axes[0], sizes):
        d = curve[curve.train_images == n]
        sns.lineplot(d, x="steps", y="spc", hue="readout", marker="o", ax=ax, legend=ax is axes[0, -1])
        bad = d[d.readout_failed.astype(bool)] if "readout_failed" in d else d.iloc[:0]
        mark_failed(ax, bad.steps, bad.spc)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: minor labels overlap on a short range
        ax.axvline(PAPER_STEPS, color="grey", ls="--", lw=1)
        ax.text(PAPER_STEPS, ax.get_ylim()[0], " paper", fontsize=7, color="grey", va="bottom")
        study = d[d.study.astype(bool)].steps
        if len(study):
            ax.axvline(study.iloc[0], color="black", ls=":", lw=1)
            ax.text(study.iloc[0], ax.get_ylim()[0], " this study", fontsize=7, va="bottom")
        ax.set_title(f"{n} training images", fontsize=9)
        ax.set_xlabel("SGD steps")
        ax.set_ylabel(f"SPC on {d.test_set.iloc[0]}, mean of H, G, HS")
    if axes[0, -1].get_legend() is not None:
        sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, title=None)
    fig.suptitle("Where the study's training budget sits: SPC against SGD steps", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


# ---------------------------------------------------------------- products (posenc_utils.primitives.products)

CURVE = declare("budget_curve", "04", "csv", made_by=budget_curve, readme="layers")
FIG_CURVE = declare("fig_budget_curve", "04", "figure", made_by=plot_budget_curve, drawn_from=CURVE,
                    draw=plot_budget_curve, readme="layers")
