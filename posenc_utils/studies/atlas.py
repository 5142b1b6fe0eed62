"""The position atlas (notebook 08, beyond the paper): every family of vision network probed the same way, one row each.

A row is one model's report card (:mod:`posenc_utils.runners.probe`) read down to numbers: its family and kind, its
parameters and GFLOP, and for each measure of the card (the readout's SPC, the share of feature variance explained by
position, row/column classification) the value with its 95% interval, and the change of SPC and of the share under
each intervention of the card that applies (the padding modes; the positional code zeroed, shuffled, shifted, the
rotary embedding off, the tokens permuted), n/a with the reason where it does not apply.

This module is the study: the list of models (:func:`read_models`, the default in ``atlas_models.csv``), a row from a
card (:func:`card_row`), the table's views, the figure, the sentence per family and the pages. Making the cards, one
job per model on this machine or on SLURM, is :mod:`posenc_utils.runners.atlas`.
"""
from __future__ import annotations

import base64
import csv
import dataclasses
import html
import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import padding_ablation
from ..engine.plots import save_figure, spread_labels
from ..models.profiles import Profile
from ..primitives.borders import PADDING_MODES
from ..primitives.positions import POSITION_MODES
from ..primitives.products import declare
from ..primitives.specs import EncoderSpec

DEFAULT_MODELS = Path(__file__).with_name("atlas_models.csv")
KINDS = ("control", "convolutional", "MLP", "transformer", "hybrid")
MARKERS = dict(zip(KINDS, ("X", "o", "s", "^", "D")))
INTERVENTIONS = tuple(("padding", m) for m in PADDING_MODES[1:]) + tuple(("position", m) for m in POSITION_MODES[1:])
MEASURES = (("spc", "mean SPC over the patterns"), ("share", "share of feature variance explained by position"),
            ("rowcol", "row/column accuracy (4 bins)"))


class AtlasListError(ValueError):
    """A list of models the atlas cannot read, with the line and what it expected."""


@dataclass(frozen=True)
class Entry:
    """One model of the atlas: as the probe takes it (``name[:weights[:padding]]``), its family and kind."""

    model: str
    family: str
    kind: str

    @property
    def spec(self) -> EncoderSpec:
        return EncoderSpec.parse(self.model)


def read_models(path: str | Path | None = None) -> list[Entry]:
    """The models of a list: a CSV with columns ``model,family,kind`` (the default, ``atlas_models.csv``), or a text
    file with a model per line (``#`` comments; family and kind after it, separated by commas, optional). A model
    without a family is its own; a kind not among :data:`KINDS` is refused with the line."""
    path = Path(path) if path else DEFAULT_MODELS
    if not path.is_file():
        raise AtlasListError(f"no list of models at {path}: give a file with one model per line (e.g. timm:resnet50, "
                             f"optionally ',family,kind'), or leave --models out for the default list ({DEFAULT_MODELS})")
    entries, seen = [], set()
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for number, row in enumerate(csv.reader(lines), 1):
        row = [c.strip() for c in row]
        if number == 1 and row[0] == "model":
            continue
        model, family, kind = (row + ["", ""])[:3]
        kind = kind or "unknown"
        if kind not in KINDS + ("unknown",):
            raise AtlasListError(f"{path}, line {number}: kind {kind!r} is not one of {', '.join(KINDS)} (or leave it out)")
        try:
            EncoderSpec.parse(model)
        except ValueError as e:
            raise AtlasListError(f"{path}, line {number}: {model!r} is not a model the probe can build: {e}") from e
        if model in seen:
            raise AtlasListError(f"{path}, line {number}: {model!r} is listed twice")
        seen.add(model)
        entries.append(Entry(model, family or model, kind))
    if not entries:
        raise AtlasListError(f"{path} lists no model")
    return entries


def atlas_profile(profile: Profile) -> Profile:
    """The profile the atlas's cards are made in: the profile's, with its lighter card setting where it has one
    (``atlas_train_n``: the readouts trained on the first n training images)."""
    if not profile.atlas_train_n:
        return profile
    return profile.with_overrides(train_set=dataclasses.replace(profile.train_set, n=profile.atlas_train_n),
                                  description=f"{profile.description}; the atlas's lighter card: readouts trained on "
                                              f"the first {profile.atlas_train_n} training images")


def setting_note(profile: Profile) -> str:
    """The atlas's card setting, said where its numbers are shown ('' where it is the full card)."""
    if not profile.atlas_train_n:
        return ""
    return (f"Atlas cards are lighter than `make probe`'s: readouts trained on {profile.atlas_train_n} of the "
            f"{profile.train_set.n} training images (to fit the list in an hour on 2 cores); the full card of a model is "
            f"`make probe MODEL=<model> PROFILE={profile.name}`.")


# ---------------------------------------------------------------- a row from a card


def _interval(per_image: pd.DataFrame, natural: str) -> tuple[float, float, float]:
    """Mean SPC over the patterns on ``natural`` with its 95% interval over readout seeds and test images."""
    if per_image is None or not len(per_image):
        return (np.nan,) * 3
    m = padding_ablation.setting_means(per_image.assign(setting="table1"), natural)
    return (float(m.spc.iloc[0]), float(m.ci_low.iloc[0]), float(m.ci_high.iloc[0])) if len(m) else (np.nan,) * 3


def _first(table: pd.DataFrame, natural: str, column: str) -> float:
    rows = table[table.test_set == natural] if len(table) else table
    return float(rows[column].iloc[0]) if len(rows) and column in rows and pd.notna(rows[column].iloc[0]) else np.nan


def _changes(table: pd.DataFrame, per_image: pd.DataFrame, natural: str, reference: str, modes) -> dict:
    """Per mode: the change of SPC (mode minus ``reference``) with its paired 95% interval, and of the share of
    variance; 'n/a' and the reason where the mode does not apply."""
    out: dict = {}
    contrasts = (padding_ablation.mode_contrasts(per_image, natural, reference).set_index("mode")
                 if per_image is not None and len(per_image) else pd.DataFrame())
    rows = table[table.test_set == natural].groupby("setting", sort=False).agg(
        status=("status", "first"), reason=("reason", "first"), share=("position_variance", "first")) \
        if len(table) else pd.DataFrame()
    for mode in modes:
        key = f"d_spc_{mode}"
        if mode not in rows.index or rows.status[mode] != "ok" or mode not in contrasts.index:
            reason = rows.reason[mode] if mode in rows.index and isinstance(rows.reason[mode], str) else "not run"
            out.update({key: np.nan, f"{key}_low": np.nan, f"{key}_high": np.nan, f"d_share_{mode}": np.nan,
                        f"{mode}_status": f"n/a ({reason})"})
            continue
        c = contrasts.loc[mode]
        out.update({key: -float(c.difference), f"{key}_low": -float(c.ci_high), f"{key}_high": -float(c.ci_low),
                    f"d_share_{mode}": float(rows.share[mode] - rows.share.get(reference, np.nan)),
                    f"{mode}_status": "ok"})
    return out


def card_row(card, entry: Entry) -> dict:
    """The atlas's row of a model's card (:class:`posenc_utils.runners.probe.Card`): its measures with intervals on
    the natural test images and their changes under each intervention."""
    natural = card.profile.natural_test_set
    spc, lo, hi = _interval(card.table1_per_image, natural)
    row = dict(model=entry.model, label=card.spec.label, family=entry.family, kind=entry.kind, status="ok", error="",
               spc=spc, spc_low=lo, spc_high=hi,
               share=_first(card.table1, natural, "position_variance"),
               share_low=_first(card.table1, natural, "position_variance_low"),
               share_high=_first(card.table1, natural, "position_variance_high"),
               rowcol=_first(card.table1, natural, "rowcol"), rowcol_low=_first(card.table1, natural, "rowcol_low"),
               rowcol_high=_first(card.table1, natural, "rowcol_high"))
    row.update(_changes(card.padding, card.padding_per_image, natural, PADDING_MODES[0], PADDING_MODES[1:]))
    row.update(_changes(card.position, card.position_per_image, natural, POSITION_MODES[0], POSITION_MODES[1:]))
    return row


# ---------------------------------------------------------------- views, sentences, figure, pages


def _cell(v, lo, hi, signed: bool = False) -> str:
    if not np.isfinite(v):
        return "n/a"
    f = "+.2f" if signed else ".2f"
    return f"{v:{f}} [{lo:{f}}, {hi:{f}}]" if np.isfinite(lo) and np.isfinite(hi) else f"{v:{f}}"


def view(table: pd.DataFrame) -> pd.DataFrame:
    """One line per model: family, kind, size, each measure 'value [95% interval]' and the change of SPC under each
    intervention that applies to some model of the table (n/a where it does not apply to this one)."""
    ok = table[table.status == "ok"]
    modes = [m for _, m in INTERVENTIONS if f"{m}_status" in ok and (ok[f"{m}_status"] == "ok").any()]
    rows = []
    for r in ok.itertuples():
        d = r._asdict()
        line = {"model": r.label, "family": r.family, "kind": r.kind, "params (M)": f"{r.params_m:.1f}",
                "px fed": int(r.input_size)}
        for m, name in MEASURES:
            line[m] = _cell(d[m], d[f"{m}_low"], d[f"{m}_high"])
        for m in modes:
            line[f"SPC change, {m}"] = _cell(d[f"d_spc_{m}"], d[f"d_spc_{m}_low"], d[f"d_spc_{m}_high"], signed=True)
        rows.append(line)
    return pd.DataFrame(rows)


def failures(table: pd.DataFrame) -> pd.DataFrame:
    """The models that could not be probed, with their error."""
    return table.loc[table.status != "ok", ["model", "family", "error"]].reset_index(drop=True)


def _beats_constant(r) -> bool:
    """Whether the readout found position: the lower end of the SPC interval above 0 (a constant prediction's SPC
    is 0, undefined ones counted as 0)."""
    return np.isfinite(r.spc_low) and r.spc_low > 0


def _moved(r, mode: str) -> str | None:
    """'lowers'/'raises' where the mode's change of SPC has an interval that excludes 0, else None."""
    lo, hi = getattr(r, f"d_spc_{mode}_low", np.nan), getattr(r, f"d_spc_{mode}_high", np.nan)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    return "lowers" if hi < 0 else "raises" if lo > 0 else None


def family_sentences(table: pd.DataFrame) -> list[str]:
    """One sentence per family, generated from its rows: whether its readout finds position (interval of SPC above
    a constant prediction's 0) and which interventions move SPC beyond their interval, i.e. where its position
    comes from as far as these interventions can tell."""
    out = []
    ok = table[table.status == "ok"]
    for family, d in ok.groupby("family", sort=False):
        parts = []
        for r in d.itertuples():
            head = f"{r.label}: SPC {_cell(r.spc, r.spc_low, r.spc_high)}"
            if not _beats_constant(r):
                parts.append(f"{head}, not distinguishable from a constant prediction, so the interventions decide "
                             f"nothing for it")
                continue
            moved = [(m, _moved(r, m)) for _, m in INTERVENTIONS]
            said = [f"{m} {how} it ({_cell(getattr(r, f'd_spc_{m}'), getattr(r, f'd_spc_{m}_low'), getattr(r, f'd_spc_{m}_high'), True)})"
                    for m, how in moved if how]
            applied = [m for _, m in INTERVENTIONS if getattr(r, f"{m}_status", "") == "ok"]
            if said:
                parts.append(f"{head}; " + ", ".join(said))
            elif applied:
                parts.append(f"{head}; no intervention that applies ({', '.join(applied)}) moves it beyond its "
                             f"interval, so its source is not traced here")
            else:
                parts.append(f"{head}; no intervention applies to it")
        out.append(f"{family}: " + "; ".join(parts) + ".")
    return out


def short_name(model: str) -> str:
    """A model's name in a figure: without its library prefix and random weights (``timm:vit_tiny_patch16_224``
    -> ``vit_tiny_patch16_224``; ``vgg16:hed`` stays)."""
    name = model.split(":", 1)[1] if model.startswith(("tv:", "timm:")) else model
    return name.removesuffix(":random").removesuffix(":none")


def plot_atlas(table: pd.DataFrame, path: Path, x: str = "share", y: str = "spc") -> plt.Figure:
    """Every model placed by two measures (default: the share of variance explained by position against the
    readout's SPC), with 95% intervals, its kind marked by the marker and colour, its family by its label."""
    ok = table[table.status == "ok"]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    labels = []
    names = dict(MEASURES)
    for i, kind in enumerate(k for k in KINDS + ("unknown",) if (ok.kind == k).any()):
        d = ok[ok.kind == kind]
        ax.errorbar(d[x], d[y], xerr=[d[x] - d[f"{x}_low"], d[f"{x}_high"] - d[x]],
                    yerr=[d[y] - d[f"{y}_low"], d[f"{y}_high"] - d[y]], fmt=MARKERS.get(kind, "P"), color=f"C{i}",
                    ms=6, lw=0.8, capsize=2, label=kind)
        for r in d.itertuples():
            name = r.family if (ok.family == r.family).sum() == 1 else f"{r.family} ({short_name(r.model)})"
            labels.append(ax.annotate(name, (getattr(r, x), getattr(r, y)),
                                      fontsize=6, xytext=(3, 3), textcoords="offset points", color=f"C{i}"))
    ax.set_xlabel(names.get(x, x))
    ax.set_ylabel(names.get(y, y))
    ax.axhline(0, color="0.8", lw=0.8, zorder=0)
    ax.legend(fontsize=8, title="kind", title_fontsize=8)
    ax.set_title("The position atlas: each model by two measures (95% intervals)", fontsize=10)
    fig.tight_layout()
    spread_labels(fig, labels)
    save_figure(fig, path)
    return fig


def to_html(table: pd.DataFrame, figure_png: Path, out: Path, cards: dict[str, Path], note: str,
            sentences: list[str]) -> str:
    """The atlas as one HTML page: the figure, a sentence per family, the table with a link to each model's card,
    and the models that failed with their error."""
    v = view(table)
    links = {r.label: cards[r.model] for r in table[table.status == "ok"].itertuples() if r.model in cards}
    v["card"] = [f'<a href="{html.escape(str(links[m].relative_to(out)))}">card</a>' if m in links else ""
                 for m in v["model"]]
    image = base64.b64encode(figure_png.read_bytes()).decode() if figure_png.exists() else ""
    fails = failures(table)
    body = ["<h1>The position atlas</h1>", f"<p>{html.escape(note)}</p>",
            f'<img alt="each model by two measures" style="max-width:100%" src="data:image/png;base64,{image}">',
            "<h2>Where each family's position comes from</h2>",
            "<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in sentences) + "</ul>",
            "<h2>The table</h2>", v.to_html(index=False, escape=False, border=0, na_rep="")]
    if len(fails):
        body += ["<h2>Models that could not be probed</h2>", fails.to_html(index=False, border=0)]
    style = ("body{font-family:sans-serif;max-width:90em;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;font-size:80%}td,th{padding:2px 6px;border-bottom:1px solid #ddd}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>The position atlas</title><style>{style}</style>"
            f"</head><body>{''.join(body)}</body></html>\n")


def to_markdown(table: pd.DataFrame, note: str, sentences: list[str]) -> str:
    buf = io.StringIO()
    buf.write(f"# The position atlas\n\n{note}\n\n![each model by two measures]({FIGURE.file('.png')})\n\n")
    buf.write("## Where each family's position comes from\n\n" + "".join(f"- {s}\n" for s in sentences) + "\n")
    buf.write(view(table).to_markdown(index=False) + "\n")
    fails = failures(table)
    if len(fails):
        buf.write("\n## Models that could not be probed\n\n" + fails.to_markdown(index=False) + "\n")
    return buf.getvalue()


# ---------------------------------------------------------------- products (posenc_utils.primitives.products)

TABLE = declare("atlas", "08", "csv", made_by=card_row)
FIGURE = declare("fig_atlas", "08", "figure", made_by=plot_atlas)
PAGE = declare("atlas_page", "08", "page", made_by=to_html)
CARDS = declare("atlas_cards", "08", "folder", made_by=card_row, folder="atlas")  # each model's card and row
RECORD = declare("atlas_record", "08", "json", made_by=card_row)
