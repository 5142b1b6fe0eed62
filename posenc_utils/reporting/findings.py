"""The sentences that read the study's numbers, generated from them (the README's "What it shows" paragraphs).

Every sentence here that ranks, orders or sizes two rows says so only where the paired 95% interval of their
difference excludes 0 (:func:`order`), and cites the number it rests on; where the interval holds 0 it says the two
are not distinguishable. Nothing is typed by hand: a rerun that moves a number moves the sentence.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..studies import budget, claims
from ..studies import downstream as ds
from ..studies import layer_analysis as la
from ..studies import padding_ablation as pa
from ..studies.experiments import TABLE1
from ..engine.evidence import Effect, effect
from ..primitives.metrics import cluster_bootstrap_ci
from ..studies.padding_ablation import contrast_sentence, mode_contrasts
from ..primitives.products import Product
from ..primitives.targets import PATTERNS


def num(v: float) -> str:
    """Two decimals, signed, never a negative zero."""
    return f"{0.0 if abs(v) < 0.005 else v:+.2f}"


def ci(e: Effect) -> str:
    """'+0.12 [+0.05, +0.19]' (no interval: the value alone)."""
    return f"{num(e.value)} [{num(e.low)}, {num(e.high)}]" if e.has_interval else num(e.value)


def order(a: str, b: str, e: Effect, more: str = "above", less: str = "below") -> str:
    """'a above b (+0.12 [+0.05, +0.19])' where the interval of ``a - b`` excludes 0 on the positive side, 'a below
    b (...)' on the negative side, else 'a and b not distinguishable (...)'."""
    if e.failed:
        return f"{a} against {b}: a readout failed to train ({ci(e)})"
    if e.has_interval and e.low > 0:
        return f"{a} {more} {b} ({ci(e)})"
    if e.has_interval and e.high < 0:
        return f"{a} {less} {b} ({ci(e)})"
    return f"{a} and {b} not distinguishable ({ci(e)})"


def _saved(out: Path, key: str) -> pd.DataFrame | None:
    path = claims.frame_path(out, key)
    return pd.read_csv(path) if path.exists() else None


def _parts(found: list[claims.Claim], number: int, name: str) -> list:
    return [p for c in found if c.number == number for p in c.parts if name in p.name]


# ---------------------------------------------------------------- the headline


def verdict_summary(found: list[claims.Claim]) -> str:
    """How many claims each outcome has, and which."""
    groups: dict[str, list[str]] = {}
    for c in found:
        groups.setdefault(c.verdict, []).append(f"{c.number}" + (f" ({c.reason})" if c.reason and c.verdict ==
                                                                   claims.NOT_DECIDED else ""))
    words = [f"{len(v)} {k} ({', '.join(v)})" for k, v in groups.items()]
    return f"On this study's numbers, of the paper's {len(found)} claims: " + "; ".join(words) + "."


def random_init_finding(out: Path, natural: str) -> str:
    """Beyond the paper: how much position random-init encoders hold against pretrained ones, by SPC over PosENet's
    and paired encoder by encoder, and by the probe-free share of variance (each with its interval)."""
    t1 = _saved(out, "table1")
    if t1 is None:
        return ""
    nat = t1[t1.test_set == natural]
    encs = nat.drop_duplicates("encoder")[["encoder", "arch", "weights"]]
    encs = encs[encs.arch != "posenet"]
    rand = [r for r in encs.itertuples() if r.weights == "random"]
    pre = [r for r in encs.itertuples() if claims.is_pretrained(r.weights)]
    if not rand or not pre:
        return ""
    over = {r.encoder: effect(nat, r.encoder, dict(encoder=r.encoder), dict(arch="posenet")) for r in encs.itertuples()}
    pairs = [(r.encoder, p.encoder, effect(nat, "", dict(encoder=r.encoder), dict(encoder=p.encoder)))
             for r in rand for p in pre]
    above = all(e.has_interval and e.low > 0 for *_, e in pairs)
    table = pd.read_csv(TABLE1.csv(out))
    share = table[table.test_set == natural].drop_duplicates("encoder").set_index("encoder")
    shares = {e: f"{share.position_variance[e]:.2f} [{share.position_variance_low[e]:.2f}, "
                 f"{share.position_variance_high[e]:.2f}]" for e in over if e in share.index}
    share_apart = all(share.position_variance_low[r.encoder] > share.position_variance_high[p.encoder]
                      for r in rand for p in pre if r.encoder in share.index and p.encoder in share.index)
    lead = ("Random-init encoders hold more position than the pretrained ones" if above else
            "Random-init encoders against the pretrained ones")
    text = (f"Beyond the paper, one of the study's clearest results. {lead}: on {natural}, mean SPC over the five "
            f"patterns above PosENet's, random init " + ", ".join(f"{e} {ci(over[e])}" for e in (r.encoder for r in rand))
            + "; pretrained " + ", ".join(f"{e} {ci(over[e])}" for e in (p.encoder for p in pre)) + ". Paired on the "
            f"same images and readout seed: " + "; ".join(order(a, b, e) for a, b, e in pairs) + ".")
    if shares:
        agree = "orders them the same way" if share_apart and above else "gives"
        text += (f" The probe-free share of feature variance explained by position (no readout) {agree}: random init "
                 + ", ".join(f"{r.encoder} {shares[r.encoder]}" for r in rand if r.encoder in shares) + "; pretrained "
                 + ", ".join(f"{p.encoder} {shares[p.encoder]}" for p in pre if p.encoder in shares) + ".")
    if above and share_apart:
        text += (" Position here comes with the architecture and its padding; the pretrained weights keep less of it in "
                 "their features, by both measures.")
    return text


# ---------------------------------------------------------------- notebook 03


def _health(df: pd.DataFrame, natural: str) -> str:
    """A readout row's health: final training loss over the best constant's, MAE against the constant's, constant
    predictions."""
    d = df[df.test_set == natural]
    return (f"training loss {(d.train_loss / d.const_loss).mean():.2f} of the best constant's, MAE on {natural} "
            f"{d.mae.mean():.2f} against the constant's {d.const_mae.mean():.2f}, a constant prediction on "
            f"{d.constant_share.mean():.0%} of them")


def padding_findings(out: Path, natural: str, found: list[claims.Claim]) -> str:
    """Notebook 03's findings: claim 7's numbers and the health of both arms' readouts, the padding modes against zero
    padding, the canvases against the as-built one, and the border band against the centre."""
    lines = []
    parts = _parts(found, 7, "")
    if parts:
        lines.append("Claim 7's parts: " + "; ".join(f"{p.effect.what}: {ci(p.effect)} ({p.outcome}"
                                                       + (f": {p.reason}" if p.reason else "") + ")" for p in parts) + ".")
    t4 = pd.read_csv(pa.TABLE4.csv(out))
    vgg = t4[t4.arch == "vgg16"]
    if len(vgg):
        lines.append("Both arms' readouts, by the same procedure: " + "; ".join(
            f"{enc}, {setting}: {_health(d, natural)}" for (enc, setting), d in vgg.groupby(["encoder", "setting"], sort=False))
            + ". A readout that reaches the constant's loss and no better has found no position to fit: a result, not "
              "a failure (its rows are marked where a readout failed).")
    contrasts = pa.CONTRASTS.csv(out)
    if contrasts.exists():
        lines.append("Padding modes. " + contrast_sentence(pd.read_csv(contrasts), natural))
    modes = pd.read_csv(pa.MODES.csv(out))
    flat = modes[modes.test_set.isin(["black", "white"]) & modes.padding.isin(["reflect", "replicate", "circular"])
                 & (modes.status == "ok")]
    if len(flat):
        lines.append(f"On the black and white images, reflect, replicate and circular padding gave a constant "
                     f"prediction (undefined SPC) in {int(flat.spc_undefined.gt(0).sum())} of {len(flat)} encoder, "
                     f"pattern and image cells: a constant image padded with its own values gives constant features.")
    canvas = _per_image(out, pa.CANVAS)
    if canvas is not None:
        c = mode_contrasts(canvas, natural, reference="as built")
        lines.append("The canvas (only the first convolution sees it). " + contrast_sentence(c, natural, "canvas"))
    regions = pa.BORDER_REGIONS.csv(out)
    if regions.exists():
        r = pd.read_csv(regions)
        zeros = r[r.padding == "zeros"]
        said = [order(f"{x.encoder}'s centre", "its border band", Effect("", x.centre_minus_border, x.ci_low, x.ci_high))
                for x in zeros.itertuples()]
        lines.append("Near the border or everywhere? With zero padding, SPC of the H, V, G readouts on the central region "
                     "minus the outer band: " + "; ".join(said) + ".")
    return "\n\n".join(lines)


def _per_image(out: Path, product: Product) -> pd.DataFrame | None:
    path = product.per_image_path(out)
    return pd.read_csv(path) if path.exists() else None


# ---------------------------------------------------------------- notebook 04


def layers_findings(out: Path, natural: str, found: list[claims.Claim]) -> str:
    """Notebook 04's findings: the positive control, claim 5 (kernel and depth at the widest readout), the order of the
    stages per encoder (claim 6), claim 8 against its floor, and where the training budget sits."""
    lines = []
    control = la.CONTROL.csv(out)
    if control.exists():
        c = pd.read_csv(control).drop_duplicates(["setting", "pattern"]).pivot_table(
            index="setting", columns="pattern", values="spc", sort=False)
        lines.append("The positive control, the readouts on the pixel coordinates: " + "; ".join(
            f"{s}: " + ", ".join(f"{p} {c.loc[s, p]:.2f}" for p in PATTERNS if p in c.columns) for s in c.index)
            + ". Where the coordinates themselves give a low SPC, the readout cannot draw that pattern, whatever the "
              "encoder holds.")
    for number, name in ((5, "kernels"), (5, "layers")):
        for p in (q for q in _parts(found, number, name) if q.decides):
            lines.append(f"Claim 5, {p.name}: {p.effect.what}: {ci(p.effect)}"
                         + (f", the paper's {num(p.paper)}" if np.isfinite(p.paper) else "") + f" ({p.outcome}"
                         + (f": {p.reason}" if p.reason else "") + ").")
    order_parts = _parts(found, 6, "every deeper stage")
    if order_parts:
        holds = [p for p in order_parts if p.outcome == claims.HOLDS]
        broken = [p for p in order_parts if p.outcome == claims.CONTRADICTED]
        open_ = [p for p in order_parts if p.outcome not in (claims.HOLDS, claims.CONTRADICTED)]
        enc = lambda p: p.effect.what.split(":")[0]  # noqa: E731
        said = []
        if holds:
            said.append("every deeper stage above the one before it over the whole interval in " +
                        ", ".join(f"{enc(p)} ({ci(p.effect)})" for p in holds))
        if broken:
            said.append("the order broken beyond the noise (the whole interval below 1) in " +
                        ", ".join(f"{enc(p)} ({ci(p.effect)})" for p in broken))
        if open_:
            said.append("not decided in " + ", ".join(f"{enc(p)} ({ci(p.effect)}, {p.reason or p.outcome})" for p in open_))
        lines.append("Claim 6's order of the stages (the rank correlation of the stage index with SPC; 1: every deeper "
                     "stage above the one before): " + "; ".join(said) + "." + _reversed_stages(out, natural))
    object_parts = _parts(found, 8, "")
    objects = la.OBJECTS.csv(out)
    if object_parts and objects.exists():
        o = pd.read_csv(objects).set_index("encoder")
        floor = o[o.index == "PosENet"]
        base = (f"PosENet's ratio, the measure's floor, is {floor.ratio.iloc[0]:.2f} [{floor.ci_low.iloc[0]:.2f}, "
                f"{floor.ci_high.iloc[0]:.2f}]. " if len(floor) else "")
        lines.append("Claim 8, on scenes whose content is known: the error on an object over the error at the same pixels "
                     "without it. " + base + "Each encoder minus PosENet: " + "; ".join(
                         order(p.effect.what.split(":")[0], "PosENet", p.effect) for p in object_parts) + ".")
    curve = budget.CURVE.csv(out)
    if curve.exists():
        lines.append(_curve_sentence(pd.read_csv(curve)))
    return "\n\n".join(lines)


def _reversed_stages(out: Path, natural: str) -> str:
    """' Stages below the one before them (paired over images and seeds): ...' for every encoder of Table 3."""
    t3 = _saved(out, "table3")
    if t3 is None:
        return ""
    nat = t3[t3.test_set == natural]
    said = []
    for enc, d in nat.groupby("encoder", sort=False):
        stages = sorted(int(s) for s in d[~d.all_stages.astype(bool)].stage.unique())
        for a, b in zip(stages, stages[1:]):
            e = effect(d, "", dict(stage=b, all_stages=False), dict(stage=a, all_stages=False), patterns=("H", "G"))
            if e.has_interval and e.high < 0:
                said.append(f"{enc} f{b} below f{a} ({ci(e)})")
    return (" Stages below the one before them (H and G, paired over images and seeds): " + "; ".join(said) + "."
            if said else " No stage lies below the one before it beyond the noise (H and G, paired).")


def _curve_sentence(curve: pd.DataFrame) -> str:
    """The budget curve's pretrained VGG16 at each number of SGD steps measured, on each training set."""
    vgg = curve[~curve.readout.str.startswith("PosENet")].drop_duplicates(["train_images", "steps"]).sort_values("steps")
    if vgg.empty:
        return ""
    parts = [f"{n} training images: " + ", ".join(f"{r.spc:.2f} at {r.steps:,} steps" for r in g.itertuples())
             for n, g in vgg.groupby("train_images")]
    return (f"The training budget: {vgg.readout.iloc[0]}'s mean SPC over H, G, HS on the natural test images against "
            f"SGD steps (the study's budget {int(vgg[vgg.study.astype(bool)].steps.min()):,}; the paper's 4,950), "
            + "; ".join(parts) + ".")


# ---------------------------------------------------------------- notebook 05


def downstream_findings(out: Path, found: list[claims.Claim]) -> str:
    """Notebook 05's findings: padding's gains with their intervals, the position signature, the crop shift, and the
    task-trained encoders against their starting weights."""
    lines = []
    gain = ds.GAIN.csv(out)
    if gain.exists():
        g = pd.read_csv(gain)
        lines.append("Zero padding minus no padding, over the training seeds (MAE: lower is better): " + "; ".join(
            f"{r.task.upper()} {r.test_set}, {r.metric} {num(r.gain)} [{num(r.ci_low)}, {num(r.ci_high)}]"
            for r in g.itertuples()) + ".")
    sig = ds.SIGNATURE.csv(out)
    if sig.exists() and len(pd.read_csv(sig)):
        s = pd.read_csv(sig)
        lines.append("The position signature (padding's SOD gain on centre-biased scenes minus its gain on scenes placed "
                     "anywhere; positive favours a position effect): " + "; ".join(
                         order(f"{r.metric} on centre-biased scenes", "on scenes placed anywhere",
                               Effect("", r.signature, r.ci_low, r.ci_high), more="gains more", less="gains less")
                         for r in s.itertuples()) + ".")
    shift = ds.SHIFT.csv(out)
    if shift.exists():
        c = pd.read_csv(shift)
        said = []
        for pad, d in c.groupby("padding", sort=False):
            lo, hi = cluster_bootstrap_ci(d.mean_abs_change.to_numpy())
            said.append(f"{pad} {d.mean_abs_change.mean():.3f} [{lo:.3f}, {hi:.3f}]")
        lines.append(f"Fig 1: the mean |change| of the saliency prediction when the image loses its left "
                     f"{int(c['shift'].iloc[0])} columns, " + ", ".join(said) + " (the network without padding sees the "
                     "same scene around every pixel it predicts, so its change is round-off).")
    for p in (q for q in _parts(found, 10, "") if np.isfinite(q.effect.value)):
        lines.append(f"Claim 10, {p.name}: " + order(p.effect.what.split(" - ")[0], p.effect.what.split(" - ")[1],
                                                       p.effect) + f" ({p.outcome}" + (f": {p.reason}" if p.reason else "")
                     + ").")
    return "\n\n".join(lines)
