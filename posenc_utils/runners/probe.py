"""Probe your own model: the study's probe on one network in one command, written as a report card.

``python -m posenc_utils.probe MODEL [--weights PATH] [--profile quick|offline|paper]`` (``make probe
MODEL=... [WEIGHTS=...] [PROFILE=...]``). MODEL is any encoder the study can build: ``timm:<name>`` (CNNs,
Vision Transformers, Swin), ``tv:<name>`` (torchvision), or one of the study's own; WEIGHTS a checkpoint of
one's own for it (a state dict or a whole saved module; :func:`posenc_utils.models.networks.read_checkpoint`).

It prints the run's plan, shows progress, and writes the card to ``figures/probe/<profile>/<model>/``:

* **Table 1**: the readout's SPC and MAE for the 5 patterns on the 4 test sets, with intervals over readout
  seeds and test images, and the probe-free measure beside it (the share of feature variance explained by
  position, :mod:`posenc_utils.engine.measures`);
* **where it lives**: the same readout on each tap alone and on all (Table 3);
* **where it comes from**: the padding modes where a layer pads, and, for a transformer, the positional
  code kept, zeroed, shuffled, shifted, its rotary embedding off, and the token-permutation control
  (:mod:`posenc_utils.primitives.positions`);
* **the measures since the paper** (:mod:`posenc_utils.studies.since`): row/column classification per tap at 4, 8
  and 16 bins, the constant-input artifact (a figure of each tap's response to an all-zero input and a grey image,
  and its size), and for a CNN the input-size sweep (sizes where stride-2 layers read their padding on one side);
* **beside the study**: the model among the study's encoders of the same profile, by both measures, in one
  figure, and a sentence where the two measures disagree (Lin et al. 2022: a trained probe can find
  position a probe-free measure does not, or the other way round);

as CSV (one file per table), Markdown and one self-contained HTML page. Every number is computed by the same
functions the notebooks use, from the same cache.
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import html
import io
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..studies import experiments, layer_analysis, padding_ablation, since
from ..primitives import paths
from ..engine import tables
from ..engine.measures import beside_spc
from ..models.families import family_of, timm_input_size
from ..models.networks import CheckpointError, WeightsNotFoundError, checkpoint_file
from .plan import missing_inputs, run_plan
from ..engine.plots import save_figure, spread_labels
from ..models.profiles import INPUTS, PROFILES, EncoderSpec, Profile, deviations, get_profile
from ..primitives.targets import PATTERNS

CARD_PATTERNS = PATTERNS
MODE_COLUMNS = ["encoder", "setting", "pattern", "test_set", "spc", "status", "reason", "position_variance"]
ARTIFACT_SECTION, ARTIFACT_FIGURE = "The constant-input artifact", "card_artifact.png"
DISAGREE = 0.5  # the two measures disagree where the model's places among the study's encoders differ by this much


@dataclass
class Card:
    """A model's report card: its tables, the study's encoders beside it, and the sentences that read them."""

    spec: EncoderSpec
    profile: Profile
    table1: pd.DataFrame
    stages: pd.DataFrame
    padding: pd.DataFrame
    position: pd.DataFrame
    study: pd.DataFrame  # the study's Table 1 of the same profile (empty when it has not been run)
    study_source: str
    sentences: list[str] = field(default_factory=list)
    table1_per_image: pd.DataFrame = field(default_factory=pd.DataFrame)  # every seed's per-image results of Table 1
    seconds: float = 0.0
    # every readout seed's per-image results of the padding and positional-embedding modes (their intervals and
    # paired comparisons: posenc_utils.studies.padding_ablation.setting_means, mode_contrasts)
    padding_per_image: pd.DataFrame = field(default_factory=pd.DataFrame)
    position_per_image: pd.DataFrame = field(default_factory=pd.DataFrame)
    # the measures since the paper (posenc_utils.studies.since): row/column classification per tap, the constant-input
    # artifact, the input-size sweep and its paired contrasts with the profile's size
    rowcol: pd.DataFrame = field(default_factory=pd.DataFrame)
    artifact: "since.Artifact | None" = None
    sweep: "experiments.Result | None" = None
    sweep_contrasts: pd.DataFrame = field(default_factory=pd.DataFrame)


def model_spec(model: str, weights: str | None = None, input: str = "auto", taps: tuple[str, ...] | None = None
               ) -> EncoderSpec:
    """The encoder to probe: ``model`` as ``name[:weights[:padding]]``, with ``weights`` a checkpoint file
    (made absolute: the cache is keyed by it and by its checksum)."""
    spec = EncoderSpec.parse(model)
    if weights:
        path = Path(weights).expanduser().resolve()
        if not path.is_file():
            raise CheckpointError(f"WEIGHTS={weights}: no such file ({path}); give the path of a state dict or of a "
                                  f"saved model (torch.save(model.state_dict(), path) or torch.save(model, path))")
        spec = dataclasses.replace(spec, weights=f"file:{path}")
    if input not in INPUTS:
        raise ValueError(f"input {input!r}: choose one of {', '.join(INPUTS)}")
    return dataclasses.replace(spec, input=input, taps=taps)


def card_profile(profile: Profile, spec: EncoderSpec) -> Profile:
    """The profile the card is made in: the study's, with the one encoder."""
    return profile.with_overrides(encoders=(spec,))


def plan_lines(profile: Profile, spec: EncoderSpec) -> list[str]:
    """What the card will do, before it starts (the run plan of :mod:`posenc_utils.runners.plan`, and the card's parts)."""
    cfg = card_profile(profile, spec)
    lines = [line for line in run_plan(cfg, downstream=False) if not line.startswith(("readouts:", "rough time"))]
    r = cfg.readout
    lines.append(f"card: Table 1 ({len(CARD_PATTERNS)} patterns x {len(cfg.test_sets)} test sets, PEM {r.label}, "
                 f"{len(cfg.seeds_for(spec))} readout seed(s)), the readout on each tap (Table 3), the padding modes "
                 f"and the positional code kept / zeroed / shuffled / shifted / rotary off / tokens permuted (on "
                 f"{cfg.ablation_train_n or 'all'} training images), row/column classification per tap, the "
                 f"constant-input artifact, the input-size sweep at {', '.join(map(str, since.sweep_sizes(cfg)))} px, "
                 f"beside the study's encoders")
    return lines


def study_table1(profile: Profile, output_dir: str | None = None) -> tuple[pd.DataFrame, str]:
    """The study's Table 1 in ``profile``, to place the model beside: its saved CSV, or, for the quick profile
    (minutes), computed now. Empty (with the command that makes it) where neither."""
    path = experiments.TABLE1.csv((Path(output_dir) if output_dir else paths.FIGURES_DIR) / profile.name)
    if path.exists():
        return pd.read_csv(path), str(path.relative_to(paths.PROJ_ROOT) if path.is_relative_to(paths.PROJ_ROOT) else path)
    if profile.name == "quick":
        return experiments.table1(profile).table, "computed now (quick profile)"
    return pd.DataFrame(), f"not there: `make {'reproduce' if profile.name == 'offline' else profile.name}` makes it"


def _mean_on(table: pd.DataFrame, test_set: str, column: str) -> pd.Series:
    return table[table.test_set == test_set].groupby("encoder", sort=False)[column].mean()


def _place(value: float, others: pd.Series) -> float:
    """Where ``value`` falls among ``others``: the share of them below it (ties count half), in [0, 1]."""
    others = others.dropna()
    if not len(others) or not np.isfinite(value):
        return float("nan")
    return float(((others < value).sum() + 0.5 * (others == value).sum()) / len(others))


def read_measures(card: Card) -> list[str]:
    """The sentences that read the card: how much position the readout finds, what the probe-free measure
    says, where the model stands among the study's encoders by each, and whether the two agree."""
    natural = card.profile.natural_test_set
    label = card.spec.label
    own = timm_input_size(card.spec, card.profile.image_size)
    resized = ([f"{label} cannot be made for {card.profile.image_size} px images (its windows or attention biases need "
                f"its own grid), so it is probed at its own size: every image is resized to {own} px before it."]
               if own else [])
    spc = float(_mean_on(card.table1, natural, "spc").iloc[0])
    share = _mean_on(card.table1, natural, "position_variance")
    share = float(share.iloc[0]) if len(share) else float("nan")
    out = resized + [f"On {natural}, the readout recovers a mean SPC of {spc:.2f} over the five patterns; position explains "
           f"{share:.1%} of the variance of the features it reads (no readout involved)."]
    if not card.study.empty:
        others = card.study[card.study.encoder != label]
        s_spc, s_share = _mean_on(others, natural, "spc"), _mean_on(others, natural, "position_variance")
        p_spc, p_share = _place(spc, s_spc), _place(share, s_share)
        out.append(f"Among the study's {len(s_spc)} encoders ({card.profile.name} profile) it is above {p_spc:.0%} of "
                   f"them by SPC and above {p_share:.0%} of them by the share of variance.")
        if np.isfinite(p_spc) and np.isfinite(p_share) and abs(p_spc - p_share) >= DISAGREE:
            stronger = "the readout" if p_spc > p_share else "the probe-free measure"
            out.append(f"The two measures disagree (Lin et al. 2022): {stronger} ranks this model much higher. A "
                       f"trained readout can assemble position from features whose variance it explains little of "
                       f"(or fail to use position that is there); read the SPC with that in mind.")
        elif np.isfinite(p_spc) and np.isfinite(p_share):
            out.append("The two measures place it alike among the study's encoders (their places differ by less than "
                       "half of them), so the readout's number is not an artefact of the readout alone.")
    shown = []
    for what, rows, table, per_image, reference in (
            ("Its positional embedding", "embedding", card.position, card.position_per_image, "kept"),
            ("Padding modes", "padding", card.padding, card.padding_per_image, "zeros")):
        parts = _modes_line(table, per_image, natural)
        if parts and (table.status == "ok").any():
            out.append(f"{what}: mean SPC over the patterns with 95% intervals over readout seeds and test images, "
                       f"{parts}.")
            contrasts = padding_ablation.mode_contrasts(per_image, natural, reference)
            if len(contrasts):
                out.append(padding_ablation.contrast_sentence(contrasts, natural))
            shown.append(rows)
    setting = ablation_setting(card.profile)
    if shown and setting:
        out.append(f"The {' and '.join(shown)} rows come from a smaller setting than Table 1's ({setting}): compare "
                   f"them with each other, not with Table 1.")
    if (card.position.status == "ok").sum() > len(card.position) // 2:
        out.append("Shuffling the embedding keeps a code of its own at each position, which a readout trained on the "
                   "shuffled features can learn again (a random embedding shuffled is just another one): what shuffling "
                   "costs is what the readout cannot relearn.")
    return out


def since_sentences(card: Card) -> list[str]:
    """The measures since the paper, read: row/column accuracy against chance, the constant-input artifact's size,
    the input-size sweep (each generated from its numbers)."""
    out = since.rowcol_sentences(card.rowcol) if len(card.rowcol) else []
    if card.artifact is not None:
        out += since.artifact_sentences(card.artifact)
    if card.sweep is not None:
        out += since.sweep_sentences(card.sweep, card.sweep_contrasts, card_profile(card.profile, card.spec))
    return out


def ablation_setting(profile: Profile) -> str:
    """The smaller setting the padding-mode and embedding rows are trained and tested in ('' where it is the full
    one): their SPC compares within their own table, not with Table 1's."""
    train, test = profile.ablation_train_n, profile.ablation_test_n
    if not (train or test):
        return ""
    return (f"readouts trained on {train or 'all the'} training images and tested on {test or 'all the'} "
            f"{profile.natural_test_set}, each mode a new feature extraction")


def _modes_line(table: pd.DataFrame, per_image: pd.DataFrame, natural: str) -> str:
    """'zeros 0.32 [0.28, 0.36], reflect 0.20 [0.15, 0.25]; none n/a (reason)': each mode's mean SPC on the natural
    test images with its interval (:func:`padding_ablation.setting_means`)."""
    rows = table[table.test_set == natural].groupby("setting", sort=False).agg(
        status=("status", "first"), reason=("reason", "first"))
    means = padding_ablation.setting_means(per_image, natural).set_index("setting") if len(per_image) else pd.DataFrame()
    done = ", ".join(f"{k} {means.spc[k]:.2f} [{means.ci_low[k]:.2f}, {means.ci_high[k]:.2f}]"
                     for k, r in rows.iterrows() if r.status == "ok" and k in means.index)
    refused = rows[rows.status != "ok"]
    if len(refused):
        done += "; " + ", ".join(refused.index) + " n/a (" + "; ".join(dict.fromkeys(refused.reason)) + ")"
    return done


def make_card(spec: EncoderSpec, profile: Profile, output_dir: str | None = None) -> Card:
    """Compute every part of the card (cached: a second run reads it all back)."""
    t0 = time.perf_counter()
    cfg = card_profile(profile, spec)
    t1_result = experiments.table1(cfg)
    t1 = t1_result.table
    network = family_of(spec.name).network  # a control (PosENet) has no taps: no stages, no artifact
    stages = layer_analysis.per_stage(cfg, (spec,)).table if network else pd.DataFrame()
    if network:
        padding, position = padding_ablation.padding_modes(cfg), padding_ablation.position_modes(cfg)
    else:  # nothing to pad, no positional code: every mode n/a
        padding = position = experiments.Result(pd.DataFrame(columns=MODE_COLUMNS), pd.DataFrame())
    study, source = study_table1(profile, output_dir)
    sweep = since.size_sweep(cfg, (spec,)) if network else None
    card = Card(spec, profile, t1, stages, padding.table, position.table, study, source,
                table1_per_image=t1_result.per_image if t1_result.per_image is not None else pd.DataFrame(),
                padding_per_image=padding.per_image, position_per_image=position.per_image,
                rowcol=since.rowcol_table(cfg, (spec,)) if network else pd.DataFrame(),
                artifact=since.constant_artifact(cfg, (spec,)) if network else None, sweep=sweep,
                sweep_contrasts=since.sweep_contrasts(sweep, cfg) if network else pd.DataFrame())
    card.sentences = read_measures(card) + since_sentences(card)
    card.seconds = time.perf_counter() - t0
    return card


def slug(spec: EncoderSpec) -> str:
    """The card's folder name: the model, its weights and any non-default setting, as file-name characters."""
    weights = Path(spec.weights.split(":", 1)[1]).stem if spec.weights.startswith("file:") else spec.weights
    parts = [spec.name, weights] + [v for v in (spec.padding, spec.position) if v not in ("zeros", "kept")]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(parts)).strip("-")


# ---------------------------------------------------------------- the card's figure and pages


def plot_card(card: Card, path: Path) -> plt.Figure:
    """The model beside the study's encoders: mean SPC over the patterns per test set (left), and SPC against
    the share of feature variance explained by position on the natural test images (right)."""
    natural, label = card.profile.natural_test_set, card.spec.label
    rows = pd.concat([card.study[card.study.encoder != label], card.table1], ignore_index=True) \
        if not card.study.empty else card.table1
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1.4, 1]})
    tests = list(dict.fromkeys(card.table1.test_set))
    mean = rows.groupby(["encoder", "test_set"], sort=False).spc.mean().unstack()[tests]
    x = np.arange(len(tests))
    names = []
    for enc, values in mean.iterrows():
        mine = enc == label
        left.plot(x, values.to_numpy(), marker="o", lw=2.5 if mine else 1, color="C3" if mine else "0.6",
                  zorder=3 if mine else 2, label=enc if mine else None)
        if not mine:
            names.append(left.annotate(enc, (x[-1], values.iloc[-1]), fontsize=6, color="0.4", xytext=(3, 0),
                                       textcoords="offset points", va="center"))
    left.set_xticks(x, tests)
    left.set_ylabel("SPC, mean of 5 patterns")
    left.set_ylim(-0.1, 1.0)
    left.set_title(f"{label} (red) beside the study's encoders (grey)" if not card.study.empty else label, fontsize=9)
    spc = rows[rows.test_set == natural].groupby("encoder", sort=False).spc.mean()
    share = rows[rows.test_set == natural].groupby("encoder", sort=False).position_variance.mean()
    points = []
    for enc in sorted(spc.index, key=lambda e: e != label):  # the model's own label first: it keeps its place
        mine = enc == label
        right.scatter(share[enc], spc[enc], s=60 if mine else 25, color="C3" if mine else "0.6", zorder=3)
        points.append(right.annotate(enc, (share[enc], spc[enc]), fontsize=6, xytext=(3, 3),
                                     textcoords="offset points", color="C3" if mine else "0.4"))
    right.set_xlabel(f"share of feature variance explained by position ({natural})")
    right.set_ylabel(f"SPC ({natural})")
    right.set_title("the readout against the probe-free measure (Lin et al. 2022)", fontsize=9)
    fig.tight_layout()
    spread_labels(fig, names)
    spread_labels(fig, points)
    save_figure(fig, path)
    return fig


def _overview(card: Card) -> pd.DataFrame:
    """Table 1 as one row per pattern, 'SPC [95% interval]' per test set."""
    def cell(r):
        lo = r.get("spc_ci_low") if pd.notna(r.get("spc_ci_low")) else r.get("spc_boot_low")
        hi = r.get("spc_ci_high") if pd.notna(r.get("spc_ci_high")) else r.get("spc_boot_high")
        interval = f" [{lo:.2f}, {hi:.2f}]" if pd.notna(lo) and pd.notna(hi) else ""
        undefined = f" ({int(r['spc_undefined'])} undef.)" if r.get("spc_undefined") else ""
        return f"{r['spc']:.2f}{interval}{undefined}"

    t = card.table1.assign(cell=card.table1.apply(cell, axis=1))
    wide = t.pivot_table(index="pattern", columns="test_set", values="cell", aggfunc="first", sort=False)
    wide.columns.name = None
    return wide.reset_index()


def _stages_view(card: Card) -> pd.DataFrame | None:
    if card.stages.empty:
        return None
    natural = card.profile.natural_test_set
    return beside_spc(card.stages, ["encoder", "setting"], natural)[["setting", "spc", "position_variance"]]


def _probe_free(card: Card) -> pd.DataFrame:
    """The share of feature variance explained by position on each test set and on the training images."""
    cols = ["position_variance", "position_variance_low", "position_variance_high"]
    rows = card.table1.groupby("test_set", sort=False)[cols].first().reset_index()
    train = card.table1[[c.replace("variance", "variance_train") for c in cols]].iloc[:1]
    train.columns = cols
    return pd.concat([rows, train.assign(test_set=f"training images ({card.profile.train_set.name})")],
                     ignore_index=True)


def _modes_view(table: pd.DataFrame, natural: str) -> pd.DataFrame:
    rows = table[table.test_set == natural]
    out = rows.groupby(["setting", "status", "reason"], sort=False, dropna=False).agg(
        spc=("spc", "mean"), position_variance=("position_variance", "mean")).reset_index()
    return out[["setting", "status", "spc", "position_variance", "reason"]]


def sections(card: Card) -> list[tuple[str, str, pd.DataFrame | None]]:
    """The card's sections: (title, a sentence, table)."""
    natural = card.profile.natural_test_set
    setting = ablation_setting(card.profile)
    smaller = f" A smaller setting than Table 1's ({setting}): compare these rows with each other." if setting else ""
    return [
        ("Table 1: position information, readout and probe-free",
         f"SPC per pattern and test set (mean over readout seeds; 95% interval over seeds where there are several, "
         f"else over test images). Position variance on {natural}: see below.", _overview(card)),
        ("The probe-free measure",
         "The share of the features' variance explained by position (per channel, the variance over locations of the "
         "mean over images, over the total; jackknife 95% interval over groups of images; undefined on one image). "
         "Over n images, features that carry no position still show about 1/n of it (their means at each location "
         "differ by chance): the study's PosENet row is that reference.", _probe_free(card)),
        ("Where it lives: the readout on each tap alone (Table 3)",
         "Mean SPC over the five patterns, and the share of variance explained by position in that tap's channels.",
         _stages_view(card)),
        ("Where it comes from: padding modes", "Every padded layer switched; n/a where no layer pads." + smaller,
         _modes_view(card.padding, natural)),
        ("Where it comes from: the positional code",
         "Kept, zeroed, shuffled or shifted by one token at inference, the rotary embedding switched off, the tokens "
         "permuted before the network and un-permuted after it; n/a with the reason where the network has no such part "
         "(a CNN)." + smaller, _modes_view(card.position, natural)),
        ("Row/column classification",
         f"A linear classifier of each location's row and column bin from the features at the tap's own resolution, "
         f"trained on the training images, accuracy on {natural} (mean of rows and columns; jackknife 95% interval "
         f"over groups of images), where the grid has at least that many positions.",
         since.rowcol_view(card.rowcol) if len(card.rowcol) else None),
        (ARTIFACT_SECTION,
         "The spatial variance of each tap's response to an all-zero input and a mid-grey image (no content at all), "
         "per channel, over the features' variance on the photos, mean over channels (figure below).",
         None if card.artifact is None else card.artifact.table.pivot_table(
             index="tap", columns="input", values="artifact", sort=False).reset_index()),
        ("The input-size sweep",
         "Mean SPC over the patterns at the profile's size and one and eight pixels larger, and how many layers read "
         "their padding on one side only at that size; n/a where a patch grid fixes the size." + smaller,
         None if card.sweep is None else since.sweep_view(card.sweep)),
        ("The study's encoders beside it", f"On {natural}; source: {card.study_source}.",
         None if card.study.empty else beside_spc(card.study, ["encoder"], natural)[
             ["encoder", "spc", "position_variance", "position_variance_low", "position_variance_high"]]),
    ]


def _made(card: Card, command: str) -> str:
    """How long the run that wrote the card took (a rerun reads what is cached: seconds, not the first run's time)."""
    return (f"the run of {command} that wrote it took {card.seconds:.0f} s (parts made by an earlier run are read "
            f"from the cache)")


def to_markdown(card: Card, figure: str) -> str:
    lines = [f"# Report card: {card.spec.label}", "",
             f"Profile `{card.profile.name}` ({card.profile.description}); "
             f"{_made(card, '`python -m posenc_utils.probe`')}.", "", *[f"- {s}" for s in card.sentences], "",
             f"![the model beside the study's encoders]({figure})", ""]
    for title, text, table in sections(card):
        lines += [f"## {title}", "", text, ""]
        if table is not None:
            lines += [table.to_markdown(index=False, floatfmt=".2f"), ""]
        if title == ARTIFACT_SECTION and card.artifact is not None:
            lines += [f"![each tap's response to a constant input]({ARTIFACT_FIGURE})", ""]
    lines += ["## Where this differs from the paper", ""] + [f"- {d}" for d in deviations(card_profile(card.profile, card.spec))]
    return "\n".join(lines) + "\n"


def to_html(card: Card, png: Path) -> str:
    image = base64.b64encode(png.read_bytes()).decode()
    body = [f"<h1>Report card: {html.escape(card.spec.label)}</h1>",
            f"<p>Profile <code>{card.profile.name}</code> ({html.escape(card.profile.description)}); "
            f"{_made(card, '<code>python -m posenc_utils.probe</code>')}.</p>",
            "<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in card.sentences) + "</ul>",
            f'<img alt="the model beside the study\'s encoders" style="max-width:100%" src="data:image/png;base64,{image}">']
    for title, text, table in sections(card):
        body += [f"<h2>{html.escape(title)}</h2>", f"<p>{html.escape(text)}</p>"]
        if table is not None:
            body.append(table.to_html(index=False, float_format=lambda v: f"{v:.2f}", na_rep="", border=0))
        if title == ARTIFACT_SECTION and (png.parent / ARTIFACT_FIGURE).exists():
            art = base64.b64encode((png.parent / ARTIFACT_FIGURE).read_bytes()).decode()
            body.append(f'<img alt="each tap\'s response to a constant input" style="max-width:100%" '
                        f'src="data:image/png;base64,{art}">')
    body += ["<h2>Where this differs from the paper</h2>", "<ul>" + "".join(
        f"<li>{html.escape(d)}</li>" for d in deviations(card_profile(card.profile, card.spec))) + "</ul>"]
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;font-size:90%}td,th{padding:2px 8px;border-bottom:1px solid #ddd}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(card.spec.label)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def write_card(card: Card, out: Path) -> dict[str, Path]:
    """Write the card's CSVs, figure, Markdown and HTML page into ``out``; returns the files by role."""
    out.mkdir(parents=True, exist_ok=True)
    files = {name: tables.write_csv(df, out / f"card_{name}.csv") for name, df in
             (("table1", card.table1), ("stages", card.stages), ("padding", card.padding), ("position", card.position))}
    for name, df in (("rowcol", card.rowcol), ("sizes", card.sweep.table if card.sweep is not None else None),
                     ("artifact", card.artifact.table if card.artifact is not None else None)):
        if df is not None:
            files[name] = tables.write_csv(df, out / f"card_{name}.csv")
    files["figure"] = out / "card.png"
    plt.close(plot_card(card, files["figure"]))
    if card.artifact is not None:
        files["artifact_figure"] = out / ARTIFACT_FIGURE
        plt.close(since.plot_artifact(card.artifact, files["artifact_figure"]))
    files["markdown"] = out / "card.md"
    files["markdown"].write_text(to_markdown(card, "card.png"))
    files["html"] = out / "card.html"
    files["html"].write_text(to_html(card, files["figure"]))
    return files


def refusal(model: str, err: BaseException) -> str:
    """A clear refusal for a model the probe could not run: the model, the reason (the error's type and message)
    and what to do instead."""
    reason = f"{type(err).__name__}: {err}".strip().rstrip(".")
    return (f"{model} could not be probed: {reason}. The probe needs a network that takes (B, 3, H, W) images and "
            f"returns feature maps at its taps (timm's features_only, or torchvision modules named with --taps). Try "
            f"--taps with module names of the network, another image size (--profile), or the family's model made "
            f"for its own input size; rerun with POSENC_TRACEBACK=1 to see where it failed.")


def card_dir(spec: EncoderSpec, profile: str, output_dir: str | None = None) -> Path:
    """``figures/probe/<profile>/<model>/`` (or under ``output_dir``)."""
    return (Path(output_dir) if output_dir else paths.FIGURES_DIR) / "probe" / profile / slug(spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m posenc_utils.probe", description=__doc__.split("\n")[0])
    ap.add_argument("model", help="e.g. timm:resnet50, timm:vit_tiny_patch16_224, tv:resnet18, vgg16:hed "
                                  "(name[:weights[:padding]])")
    ap.add_argument("--weights", default=None, help="a checkpoint of one's own for MODEL (state dict or saved model)")
    ap.add_argument("--profile", default="quick", choices=PROFILES)
    ap.add_argument("--input", default="auto", choices=INPUTS, help="how images in [0, 1] are fed (auto: the weights')")
    ap.add_argument("--taps", nargs="*", default=None, help="module names to tap (default: the family's)")
    ap.add_argument("--output-dir", default="", help="root for the card (default: figures/)")
    args = ap.parse_args(argv)
    matplotlib.use("Agg")
    os.environ.setdefault("POSENC_PROGRESS", "lines")
    try:
        spec = model_spec(args.model, args.weights, args.input, tuple(args.taps) if args.taps else None)
        profile = get_profile(args.profile)
        missing = missing_inputs(card_profile(profile, spec), downstream=False)
        if missing:
            print(f"the {args.profile} profile cannot probe {spec.label}; missing:\n- " + "\n- ".join(missing),
                  file=sys.stderr)
            return 2
        print("\n".join(f"[probe] {line}" for line in plan_lines(profile, spec)), flush=True)
        card = make_card(spec, profile, args.output_dir or None)
    except (CheckpointError, WeightsNotFoundError, ValueError) as err:
        print(f"probe: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - any model given to the probe runs or is refused, never a raw traceback
        if os.environ.get("POSENC_TRACEBACK"):
            raise
        print(f"probe: {refusal(args.model, err)}", file=sys.stderr)
        return 2
    files = write_card(card, card_dir(spec, profile.name, args.output_dir or None))
    print("\n".join(f"[probe] {s}" for s in card.sentences))
    print(f"[probe] card written in {card.seconds:.0f} s: " + ", ".join(str(p) for p in files.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
