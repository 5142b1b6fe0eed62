"""The paper's ten claims (PAPER.md section 4) as rules, each decided on the study's per-image numbers.

A rule is data (:class:`Rule`): the paper's words, the rule's text, its scope (which rows decide it)
and a function that measures its parts. A part is one effect with a 95% interval (:class:`Effect`)
and a threshold; it **holds** when the interval lies on the claimed side of the threshold, is
**contradicted** when it lies on the other side, and is **not decided** otherwise (the reason
says why: noise, training budget, stand-in, stand-in readout, not testable). A claim holds when
all its parts hold, is contradicted when one part is, and is otherwise not decided for the first
undecided part's reason. A verdict decided at the study's training budget that changes at a larger
budget (see :func:`decide`) becomes "not decided (training budget)".

Scope: a claim about the paper's (pretrained) encoders is decided on the profile's pretrained
encoders, labelled as stand-ins where they are; random-init rows are measured the same way and
reported on their own line ("architecture and padding alone"), never deciding. A part that compares
two named architectures (ResNet152 > VGG16) is not decided by stand-ins.

Intervals are paired: both sides are measured on the same test images (and readout seeds), the
difference is taken per image, and the interval covers both the spread over readout seeds (a
t-interval of the per-seed means) and over test images (a bootstrap resampling source photographs):
the wider of the two on each side. The paper's published numbers carry no interval; the
calibration (:func:`paper_frames`) decides them on their point values.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..primitives import paths, products
from ..engine.evidence import (CONTRADICTED, HOLDS, NOT_DECIDED, NOT_REPRODUCED, OUTCOMES, Effect, Part, combine, effect,
                       judge, order_effect, pattern_cells, ratio_effect, select, slope_effect, with_study_uncertainty)
from ..models.profiles import EncoderSpec, get_profile
from ..engine.tables import PAPER_MODEL, paper_numbers

TASK_WEIGHTS = ("sod", "seg", "paper-sod", "paper-seg")
NULL_BAND = 0.1  # claim 1's band around 0: what a readout of no position shows


# ---------------------------------------------------------------- scope


def is_pretrained(weights: str) -> bool:
    """As :attr:`EncoderSpec.pretrained`, from a table's ``weights`` column."""
    return EncoderSpec.pretrained_weights(weights)


def is_paper_encoder(arch: str, weights: str) -> bool:
    """Whether a row runs the paper's own encoder (ImageNet VGG16 or ResNet152), not a stand-in."""
    return arch in ("vgg16", "resnet152") and weights == "imagenet"


def _encoders(df: pd.DataFrame, **where) -> pd.DataFrame:
    """One row per encoder of ``df`` (encoder, arch, weights), in order of appearance."""
    return select(df, **where).drop_duplicates("encoder")[["encoder", "arch", "weights"]]


def _per_encoder(df: pd.DataFrame, natural: str, keep) -> list[tuple]:
    """(encoder row, its rows on the natural test images) for each encoder of ``df`` that ``keep`` accepts."""
    nat = df[df.test_set == natural]
    return [(e, nat[nat.encoder == e.encoder]) for e in _encoders(nat).itertuples() if keep(e)]


def _is_encoder(e) -> bool:
    """A row of an encoder (neither PosENet nor a weightless input)."""
    return e.arch != "posenet" and e.weights != "none"


def _row(enc) -> str:
    """The paper's row an encoder is compared with (its model: VGG16, ResNet152, PosENet)."""
    return PAPER_MODEL.get(enc.arch, enc.arch)


def _task(enc) -> str:
    """The dense task an encoder was trained for (``sod``, ``seg``), from its weights."""
    return enc.weights.split(":")[0].removeprefix("paper-")


def _line(enc) -> str:
    return enc.encoder + ("" if is_paper_encoder(enc.arch, enc.weights) or enc.arch == "posenet" else " [stand-in]"
                          if is_pretrained(enc.weights) else "")


# ---------------------------------------------------------------- the rules


@dataclass(frozen=True)
class Rule:
    """One claim of the paper and how the study decides it."""

    number: int
    paper: str  # the paper's words (PAPER.md section 4)
    rule: str  # the rule, in words
    scope: str  # which rows decide it
    notebook: str
    tables: tuple[str, ...]  # the frames its parts are measured on
    parts: Callable[..., list[Part]]  # (frames, natural test set, points) -> judged parts


@dataclass
class Claim:
    """A rule decided on one set of numbers: the verdict, its reason, the deciding evidence."""

    number: int
    paper: str
    rule: str
    scope: str
    notebook: str
    verdict: str
    reason: str
    parts: list[Part] = field(default_factory=list)
    budget: str = ""  # the verdict at the larger training budget, where it was checked
    budget_parts: list[Part] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        """The verdict with its reason, as the report prints it."""
        return self.verdict + (f" ({self.reason})" if self.reason else "")

    @property
    def deciding(self) -> Part | None:
        """The part that decides the verdict: the first contradicted or undecided deciding part, else the
        holding part closest to its threshold."""
        parts = [p for p in self.parts if p.decides]
        if not parts:
            return None
        for want in (CONTRADICTED, NOT_REPRODUCED, NOT_DECIDED):
            hit = [p for p in parts if p.outcome == want]
            if hit:
                return hit[0]
        return min(parts, key=lambda p: abs(_margin(p)))

    @property
    def evidence(self) -> str:
        p = self.deciding
        return p.text() if p is not None else "no numbers"

    def statement(self) -> str:
        lines = [f"**Verdict: {self.outcome}.**"]
        lines += [f"- {p.text()}" for p in self.parts if p.decides]
        beyond = [p for p in self.parts if not p.decides]
        if beyond:
            lines += ["", "Reported beside the rule, deciding nothing (random-init encoders: architecture and padding "
                          "alone; encoders outside the rule's scope):"]
            lines += [f"- {p.text()}" for p in beyond]
        if self.budget:
            lines += ["", f"At the larger training budget the rule gives: **{self.budget}**."]
            lines += [f"- {p.text()}" for p in self.budget_parts if p.decides]
        return "\n".join(lines)


def _margin(p: Part) -> float:
    e = p.effect
    edge = e.low if p.side == "above" else e.high if p.side == "below" else max(abs(e.low), abs(e.high))
    edge = e.value if not np.isfinite(edge) else edge
    return edge - p.threshold if p.side == "above" else p.threshold - edge if p.side == "below" else p.threshold - edge


ALL = ("H", "V", "G", "HS", "VS")
HVG, STRIPES, T2, T3 = ("H", "V", "G"), ("HS", "VS"), ("H", "G", "HS"), ("H", "G")
SYNTHETIC = ("black", "white", "noise")


def _parts_1(f, natural, points):
    t1 = f["table1"]
    out = []
    for test in dict.fromkeys(t1.test_set):
        e = effect(t1, f"PosENet, mean SPC over 5 patterns on {test}", dict(arch="posenet", test_set=test))
        out.append(judge(Part(f"PosENet finds no position on {test}", e, "within", NULL_BAND, row="PosENet"), points))
    return out


def _pretrained_paper_row(t1, row: str, natural: str) -> list:
    return [e for e in _encoders(t1, test_set=natural).itertuples()
            if is_pretrained(e.weights) and PAPER_MODEL.get(e.arch) == row]


def _parts_2(f, natural, points):
    t1 = f["table1"]
    nat = t1[t1.test_set == natural]
    res, vgg = _pretrained_paper_row(nat, "ResNet152", natural), _pretrained_paper_row(nat, "VGG16", natural)
    out = []
    for r in res:
        for v in vgg:
            e = effect(nat, f"{_line(r)} - {_line(v)}", dict(encoder=r.encoder), dict(encoder=v.encoder))
            stand_in = not (is_paper_encoder(r.arch, r.weights) and is_paper_encoder(v.arch, v.weights))
            out.append(judge(Part("ResNet152 > VGG16", e, "above", 0.0, blocked="stand-in" if stand_in else "",
                                  row="ResNet152"), points))
    for enc in filter(_is_encoder, _encoders(nat).itertuples()):
        e = effect(nat, f"{_line(enc)} - PosENet", dict(encoder=enc.encoder), dict(arch="posenet"))
        out.append(judge(Part("pretrained >> PosENet", e, "above", 0.3, decides=is_pretrained(enc.weights),
                              row=_row(enc)), points))
    return out


def _parts_3(f, natural, points):
    t1 = f["table1"]
    out = []
    for enc in filter(_is_encoder, _encoders(t1).itertuples()):
        for test in SYNTHETIC:
            e = effect(t1, f"{_line(enc)} on {test}, mean SPC over H, V, G", dict(encoder=enc.encoder, test_set=test),
                       patterns=HVG)
            if np.isfinite(e.value):
                out.append(judge(Part(f"position on {test}", e, "above", NULL_BAND, decides=is_pretrained(enc.weights),
                                      row=_row(enc)), points))
    return out


def _parts_4(f, natural, points):
    out = []
    for enc, d in _per_encoder(f["table1"], natural, _is_encoder):
        e = effect(d, f"{_line(enc)}: H/V/G - HS/VS", dict(encoder=enc.encoder), dict(encoder=enc.encoder),
                   patterns=HVG, b_patterns=STRIPES)
        out.append(judge(Part("stripes harder", e, "above", 0.0, decides=is_pretrained(enc.weights), row=_row(enc)),
                         points))
    return out


def _parts_5(f, natural, points):
    out = []
    for enc, d in _per_encoder(f["table2"], natural, lambda e: e.arch == "vgg16"):
        layers = d[d.table == "table2a"].drop_duplicates("setting").sort_values("layers")
        kernels = d[d.table == "table2b"].drop_duplicates("setting").sort_values("kernel")
        decides = is_pretrained(enc.weights)
        if layers.layers.nunique() > 1:
            deep, shallow = _widest(layers[layers.layers == layers.layers.max()]), layers.iloc[0]
            narrowed = pd.notna(deep.get("width"))
            label = " (the widest stacked readout measured; the paper's is C -> C)" if narrowed else ""
            e = effect(d, f"{_line(enc)}: {deep.setting} - {shallow.setting}{label}",
                       dict(setting=deep.setting, table="table2a"), dict(setting=shallow.setting, table="table2a"),
                       patterns=T2)
            out.append(judge(Part("more layers recover more", e, "above", 0.0, decides=decides, row=_row(enc)), points))
        if len(kernels) > 1:
            big, small = kernels.iloc[-1], kernels.iloc[0]
            e = effect(d, f"{_line(enc)}: {big.setting} - {small.setting}", dict(setting=big.setting, table="table2b"),
                       dict(setting=small.setting, table="table2b"), patterns=T2)
            out.append(judge(Part("larger kernels recover more", e, "above", 0.0, decides=decides, row=_row(enc)),
                             points))
    return out


def _widest(rows: pd.DataFrame) -> pd.Series:
    """The row of the widest stacked readout: C -> C (no width) where there is one, else the largest width."""
    full = rows[rows.width.isna()] if "width" in rows else rows
    return full.iloc[0] if len(full) else rows.loc[rows.width.idxmax()]


def _parts_6(f, natural, points):
    out = []
    for enc, d in _per_encoder(f["table3"], natural, _is_encoder):
        stages = sorted(int(s) for s in d[~d.all_stages.astype(bool)].stage.unique())
        if len(stages) < 2:
            continue
        first, last, decides = stages[0], stages[-1], is_pretrained(enc.weights) and enc.arch == "vgg16"
        sel = {s: dict(stage=s, all_stages=False) for s in stages}
        e = order_effect(d, f"{_line(enc)}: rank correlation of stage f1..f{last} with SPC", sel, patterns=T3)
        out.append(judge(Part("every deeper stage holds more (f1 < ... < f5)", e, "reaches", 1.0, decides=decides,
                              row=_row(enc)), points))
        if enc.arch != "vgg16":
            continue  # the order of the stages is reported for every encoder; the rest of the rule is Table 3's VGG16
        e = effect(d, f"{_line(enc)}: f{last} - f{first}", sel[last], sel[first], patterns=T3)
        out.append(judge(Part("the deepest stage holds more than the shallowest", e, "above", 0.0, decides=decides,
                              row=_row(enc)), points))
        e = slope_effect(d, f"{_line(enc)}: SPC per stage (slope)", sel, patterns=T3)
        out.append(judge(Part("SPC rises with depth", e, "above", 0.0, decides=decides, row=_row(enc)), points))
        best = max(stages, key=lambda s: float(pattern_cells(select(d, **sel[s]), T3).mean()))
        e = effect(d, f"{_line(enc)}: all stages - f{best} (the best stage)", dict(all_stages=True), sel[best],
                   patterns=T3)
        # all stages hold a superset of any stage's features: falling short is the readout's, not less information
        out.append(judge(Part("all stages together best", e, "above", 0.0, decides=decides,
                              cannot_contradict="training budget", row=_row(enc)), points))
    return out


def _parts_7(f, natural, points):
    t4 = f["table4"]
    nat = t4[t4.test_set == natural]
    out = []
    if (nat.arch == "posenet").any():
        for pad in (1, 2):
            e = effect(nat, f"PosENet: PEM padding {pad} - padding 0", dict(arch="posenet", setting=f"PEM padding {pad}"),
                       dict(arch="posenet", setting="PEM padding 0"), patterns=T2)
            out.append(judge(Part(f"PEM padding {pad} creates position", e, "above", 0.0, row="PosENet"), points))
    for enc in _encoders(nat, arch="vgg16").itertuples():
        e = ratio_effect(nat, f"{_line(enc)}: SPC without padding / with", dict(encoder=enc.encoder, setting="without padding"),
                         dict(encoder=enc.encoder, setting="with padding"), T2)
        out.append(judge(Part("removing padding removes much (kept share)", e, "below", 0.7,
                              decides=is_pretrained(enc.weights), row=_row(enc)), points))
    return out


def _parts_8(f, natural, points):
    o = f["objects"]  # decide() has checked that the frame is there
    out = []
    for enc in filter(_is_encoder, o.drop_duplicates("encoder").itertuples()):
        e = effect(o, f"{_line(enc)}: error on the object / at its pixels without it, minus PosENet's",
                   dict(encoder=enc.encoder), dict(arch="posenet"), patterns=None, column="ratio")
        out.append(judge(Part("errors concentrate on content (above the measure's floor)", e, "above", 0.0,
                              decides=is_pretrained(enc.weights), row=_row(enc)), points))
    return out


def _parts_9(f, natural, points):
    out = []
    signature = f.get("signature")
    for r in ([] if signature is None else signature.itertuples()):  # reported beside the rule: not the paper's claim
        e = Effect(f"SOD {r.metric}: gain on centre-biased scenes - gain on scenes placed anywhere", float(r.signature),
                   float(r.ci_low), float(r.ci_high))
        out.append(judge(Part("padding's gain follows the centre bias (a position effect)", e, "above", 0.0,
                              decides=False), points))
    for r in f["gain"].itertuples():
        sign = 1.0 if r.higher_is_better else -1.0
        lo, hi = sorted((r.ci_low * sign, r.ci_high * sign))
        e = Effect(f"{r.task.upper()} {r.test_set}, {r.metric} (zero padding - none" + ("" if sign > 0 else ", sign flipped")
                   + ")", float(r.gain * sign), lo, hi)
        out.append(judge(Part("padding helps", e, "above", 0.0, row=f"{r.task}: {r.metric}"), points))
    return out


def _parts_10(f, natural, points):
    t6 = f["table6"]
    nat = t6[t6.test_set == natural]
    encs = _encoders(nat)
    trained = [e for e in encs.itertuples() if e.weights.split(":")[0] in TASK_WEIGHTS]
    imagenet = [e for e in encs.itertuples() if e.arch == "vgg16" and e.weights == "imagenet"]
    starts = [e for e in encs.itertuples() if e.weights == "random" and e.arch.startswith("vgg16bn_w")]
    out = []
    for t in trained:
        for r in imagenet:  # the paper's comparison: a dense-task encoder against the ImageNet classifier
            e = effect(nat, f"{t.encoder} - {r.encoder}", dict(encoder=t.encoder), dict(encoder=r.encoder), patterns=T2)
            out.append(judge(Part("trained for a dense task holds more than ImageNet VGG16", e, "above", 0.0,
                                  row=_task(t)), points))
        for r in starts:  # what the training added; not the paper's reference, so it decides only where that is missing
            e = effect(nat, f"{t.encoder} - {r.encoder}", dict(encoder=t.encoder), dict(encoder=r.encoder), patterns=T2)
            out.append(judge(Part("trained for a dense task holds more than at its start", e, "above", 0.0,
                                  decides=not imagenet, blocked="" if imagenet else "stand-in", row=_task(t)), points))
    return out


RULES: dict[int, Rule] = {r.number: r for r in (
    Rule(1, "PosENet alone (no padding, no encoder) recovers no position: SPC ~ 0 everywhere.",
         f"On every test set, PosENet's mean SPC over the five patterns lies within +-{NULL_BAND} of 0 (interval included); "
         f"contradicted where a whole interval lies outside that band.",
         "PosENet, every test set", "02", ("table1",), _parts_1),
    Rule(2, "Frozen pretrained encoders recover a lot: ResNet152 > VGG16 >> PosENet.",
         "On the natural test images, mean SPC over the five patterns: (a) the paper's ResNet152 row minus its VGG16 row "
         "is above 0; (b) each pretrained encoder is at least 0.3 (three times claim 1's band) above PosENet. Paired "
         "over images and seeds. Part (a) names two architectures: stand-ins leave it undecided.",
         "pretrained encoders; (a) only the paper's own ResNet152 and VGG16", "02", ("table1",), _parts_2),
    Rule(3, "Position is recoverable even from inputs with no content (black, white, noise).",
         f"Every pretrained encoder's mean SPC over H, V and G on each of the black, white and noise images is above "
         f"{NULL_BAND} (claim 1's band: what no position gives); contradicted where an interval lies below it.",
         "pretrained encoders", "02", ("table1",), _parts_3),
    Rule(4, "Stripes (HS, VS) are harder than H, V, G.",
         "For every pretrained encoder, on the natural test images, the mean SPC over H, V, G minus the mean over HS, VS "
         "(same images and seeds) is above 0.",
         "pretrained encoders", "02", ("table1",), _parts_4),
    Rule(5, "More readout capacity (layers, kernel size) recovers more.",
         "For every pretrained VGG16, on the natural test images and the paper's patterns (H, G, HS): the deepest "
         "readout minus 1 layer, and the largest kernel minus 1x1, are above 0 (paired over images and readout "
         "seeds). The depth part is decided at the widest stacked readout measured (C -> C, the paper's, where it "
         "was; else the widest of the width sweep, named in the deciding number).",
         "pretrained VGG16 (the paper's Table 2)", "04", ("table2",), _parts_5),
    Rule(6, "Deeper stages hold more position than shallower ones (f5 > ... > f1); all together best.",
         "For every pretrained VGG16, on the natural test images and the paper's patterns (H, G): the stages are in the "
         "order of their depth (the rank correlation of the stage index with the stage's mean SPC is 1 over its whole "
         "interval, a bootstrap over test images; contradicted where the whole interval is below 1), the deepest stage "
         "minus the shallowest is above 0, the slope of SPC on the stage index is above 0, and all stages together minus "
         "the best single stage is above 0. All stages hold a superset of any stage's features, so the last part cannot "
         "be contradicted: a shortfall is the readout's (not decided: training budget). The order of the stages is "
         "reported for every other encoder of Table 3, deciding nothing.",
         "pretrained VGG16 (the paper's Table 3)", "04", ("table3",), _parts_6),
    Rule(7, "Zero padding is a source: padding in PosENet creates position information; removing padding from VGG16 "
            "removes much of it.",
         "On the natural test images and the paper's patterns (H, G, HS): (a) PosENet with PEM zero padding 1 and 2 each "
         "minus padding 0 is above 0 (paired); (b) for every pretrained VGG16, SPC without padding over SPC with padding "
         "is below 0.7 (it keeps less than 70%; the paper: 38%).",
         "PosENet; pretrained VGG16 (the paper's Table 4)", "03", ("table4",), _parts_7),
    Rule(8, "Readout errors concentrate on semantic content (Fig 7).",
         "On generated scenes of an object on a textured background, whose content is known exactly: for every "
         "pretrained encoder, the H/V/G error of Table 1's readouts on the object's pixels divided by their error at "
         "the same pixels of the same background without the object, minus PosENet's ratio on the same scenes (the "
         "measure's floor: a readout that finds no position), is above 0 (paired over scenes and readout seeds).",
         "pretrained encoders (the Table 1 readouts)", "04", ("objects",), _parts_8),
    Rule(9, "Padding helps downstream tasks that need position (Table 5).",
         "On every test set and metric of Table 5, the network with zero padding beats the same network trained without "
         "padding (higher F-measure and mIoU, lower MAE; mean over the networks' training seeds, paired: the wider, on "
         "each side, of a bootstrap over test images and a t-interval over the seeds). Without padding the network sees "
         "the scene around the image, not an invented border. Reported beside it, deciding nothing: the position "
         "signature, padding's SOD gain on centre-biased scenes minus its gain on scenes with the object placed "
         "anywhere (a gain that comes from reading position should be the larger where the centre prior holds).",
         "the downstream networks (notebook 05)", "05", ("gain",), _parts_9),
    Rule(10, "Encoders trained for dense tasks (SOD, segmentation) encode more position (Table 6).",
         "Each SOD- and segmentation-trained encoder minus ImageNet VGG16 (the paper's comparison) is above 0: mean SPC "
         "over H, G, HS on the natural test images at the image size the networks were trained at (paired). Where the "
         "profile has no ImageNet VGG16, the trained encoders are compared with the same network at the weights their "
         "training started from: what training added, not the paper's comparison, so it leaves the claim undecided "
         "(stand-in) whatever it shows.",
         "the task-trained encoders and their references, at their training image size", "05", ("table6",), _parts_10),
)}
CLAIM_NUMBERS = tuple(RULES)


def paper_effects(number: int) -> dict[tuple[str, str], float]:
    """Claim ``number``'s parts measured on the paper's own published numbers, by (part, paper row): the effect
    sizes an interval of ours is held against ("not reproduced"); the mean where the paper has several cells of
    one part (claim 9's test sets)."""
    frames = paper_frames()
    if any(frames.get(t) is None for t in RULES[number].tables):
        return {}
    values: dict[tuple[str, str], list[float]] = {}
    for p in RULES[number].parts(frames, get_profile("paper").natural_test_set, True):
        if np.isfinite(p.effect.value):
            values.setdefault(p.paper_key, []).append(p.effect.value)
    return {k: float(np.mean(v)) for k, v in values.items()}


def _against_paper(parts: list[Part], paper: dict, points: bool) -> list[Part]:
    """``parts`` judged again with the paper's own effect of each (``paper``: :func:`paper_effects`)."""
    return [judge(replace(p, paper=paper.get(p.paper_key, float("nan"))), points) for p in parts]


def decide(number: int, frames: dict[str, pd.DataFrame], natural: str, budget: dict[str, pd.DataFrame] | None = None,
           points: bool = False, against_paper: bool = True) -> Claim:
    """Claim ``number`` decided on ``frames`` (natural test set ``natural``), each part held against the paper's own
    effect (``against_paper``; off where ``frames`` are the paper's). Where ``budget`` gives the same frames at a
    larger training budget, a verdict that holds, contradicts or does not reproduce and changes there becomes
    "not decided (training budget)"."""
    rule = RULES[number]
    if any(frames.get(t) is None or frames[t].empty for t in rule.tables):
        return Claim(number, rule.paper, rule.rule, rule.scope, rule.notebook, NOT_DECIDED, "not testable")
    paper = paper_effects(number) if against_paper else {}
    parts = _against_paper(rule.parts(frames, natural, points), paper, points)
    verdict, reason = combine(parts)
    claim = Claim(number, rule.paper, rule.rule, rule.scope, rule.notebook, verdict, reason, parts)
    if budget is not None and all(budget.get(t) is not None and not budget[t].empty for t in rule.tables):
        study = {p.key: p for p in parts}
        b_parts = _against_paper([with_study_uncertainty(p, study.get(p.key)) for p in rule.parts(budget, natural, points)],
                                 paper, points)
        b_verdict, b_reason = combine(b_parts)
        claim.budget = b_verdict + (f" ({b_reason})" if b_reason else "")
        claim.budget_parts = b_parts
        if verdict in (HOLDS, CONTRADICTED, NOT_REPRODUCED) and b_verdict != verdict:
            claim.verdict, claim.reason = NOT_DECIDED, "training budget"
    return claim


def claims_frame(claims: list[Claim]) -> pd.DataFrame:
    """One row per claim: verdict, reason, the deciding number with its interval, scope, budget check."""
    rows = []
    for c in claims:
        p = c.deciding
        rows.append(dict(claim=c.number, paper=c.paper, verdict=c.verdict, reason=c.reason, outcome=c.outcome,
                         deciding=p.effect.what if p else "", value=p.effect.value if p else np.nan,
                         ci_low=p.effect.low if p else np.nan, ci_high=p.effect.high if p else np.nan,
                         threshold=p.rule_text if p else "",
                         scope=c.scope, budget=c.budget or "not checked", notebook=c.notebook))
    return pd.DataFrame(rows)


def claims_markdown(claims: list[Claim], title: str, preamble: str = "") -> str:
    """A verdict table, then each claim's rule, scope, parts and budget check."""
    table = claims_frame(claims)
    show = table.assign(evidence=[c.evidence for c in claims])[["claim", "paper", "outcome", "evidence", "budget"]]
    lines = [f"# {title}", ""] + ([preamble, ""] if preamble else []) + [show.to_markdown(index=False), ""]
    for c in claims:
        lines += [f"## Claim {c.number}: {c.outcome}", "", f"*Paper:* {c.paper}", "", f"**Rule.** {c.rule}", "",
                  f"**Scope.** {c.scope}.", "", c.statement(), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- the paper's own numbers as if they were ours


def paper_frames() -> dict[str, pd.DataFrame]:
    """The paper's published tables in the schema the rules read (one image, one seed per cell, no
    interval), to calibrate the rules: a fair rule does not contradict the paper on its own numbers."""
    def frame(name: str, **extra) -> pd.DataFrame:
        p = paper_numbers(name)
        arch = p.model.map({"PosENet": "posenet", "VGG16": "vgg16", "ResNet152": "resnet152"}).fillna("vgg16")
        weights = p.model.map({"PosENet": "none", "VGG16-SOD": "paper-sod", "VGG16-SS": "paper-seg"}).fillna("imagenet")
        return p.assign(encoder=p.model, arch=arch, weights=weights, seed=0, image=0, source=0, **extra)

    t2 = pd.concat([frame("table2a", table="table2a"), frame("table2b", table="table2b")], ignore_index=True)
    t2["layers"] = t2.setting.str.extract(r"(\d) layer").astype(int)
    t2["kernel"] = t2.setting.str.extract(r"(\d)x\d").astype(int)
    t2["width"] = np.nan
    t3 = frame("table3")
    t3["all_stages"] = t3.setting.str.contains("-")
    t3["stage"] = np.where(t3.all_stages, 6, t3.setting.str.extract(r"f(\d)$")[0].fillna(6).astype(int))
    t4 = frame("table4")
    t4["setting"] = t4.setting.str.replace(r"^padding (\d)$", r"PEM padding \1", regex=True)
    t5 = pd.read_csv(paths.PAPER_TABLE5_CSV)
    wide = t5.pivot_table(index=["task", "test_set", "metric"], columns="model", values="value").reset_index()
    percent = np.where(wide.metric.str.endswith("%"), 100.0, 1.0)  # mIoU in % there, a fraction here
    gain = pd.DataFrame(dict(task=np.where(wide.task.str.startswith("salient"), "sod", "seg"), test_set=wide.test_set,
                             metric=wide.metric.replace({"F-measure": "F-measure (adaptive)", "mIoU %": "mIoU"}),
                             gain=(wide["VGG16 with padding"] - wide["VGG16 without padding"]) / percent,
                             higher_is_better=wide.metric != "MAE"))
    gain = gain.assign(ci_low=np.nan, ci_high=np.nan)
    return {"table1": frame("table1"), "table2": t2, "table3": t3, "table4": t4, "table6": frame("table6"), "gain": gain}


def paper_claims() -> list[Claim]:
    """Every rule applied to the paper's own published numbers (point values decide)."""
    return [decide(k, paper_frames(), get_profile("paper").natural_test_set, points=True) for k in CLAIM_NUMBERS]


# ---------------------------------------------------------------- where the evidence is saved


def frame_path(out: Path, key: str, budget: bool = False) -> Path:
    """Where the frame the rules read under ``key`` (or its larger-budget twin) is saved in ``out``: the per-image
    results of the product declared with that ``frame`` (:mod:`posenc_utils.primitives.products`), or the product itself where
    it is a summary (claim 9's paired gains and their position signature)."""
    return _frame_file(products.by_frame(key), out, budget)


def _frame_file(p: products.Product, out: Path, budget: bool = False) -> Path:
    return p.per_image_path(out, budget) if p.per_image else p.csv(out)


RULE_FRAMES = {"signature"}  # read beside a rule's own tables (claim 9's position signature)


def load_frames(out: Path, budget: bool = False) -> dict[str, pd.DataFrame]:
    """Every saved frame of ``out`` the rules read (the larger-budget ones with ``budget``)."""
    declared = products.frames()
    unknown = ({t for r in RULES.values() for t in r.tables} | RULE_FRAMES) - {p.frame for p in declared}
    if unknown:
        raise LookupError(f"the claims read {', '.join(sorted(unknown))}, which no product declares: import the study "
                          f"modules first (posenc_utils.reporting.figures imports them all)")
    paths = {p.frame: _frame_file(p, out, budget) for p in declared if not (budget and p.budget is None)}
    return {k: pd.read_csv(path) for k, path in paths.items() if path.exists()}


def _keyed(frames: dict | None) -> dict[str, pd.DataFrame] | None:
    """Frames keyed by the claims' frame names, given by name or by the product that holds them."""
    return None if frames is None else {(k.frame if isinstance(k, products.Product) else k): v for k, v in frames.items()}


def check(numbers, frames: dict[str, pd.DataFrame], natural: str,
          budget: dict[str, pd.DataFrame] | None = None) -> list[Claim]:
    """Claims ``numbers`` decided on ``frames``, each checked against ``budget`` where it has its tables (both keyed
    by frame name or by the product declared with it: ``{experiments.TABLE1: t1.per_image}``)."""
    return [decide(k, _keyed(frames), natural, _keyed(budget)) for k in numbers]


def check_saved(out: Path, natural: str) -> list[Claim]:
    """All ten claims from the frames saved in ``out`` (notebook 06: no encoder, no training)."""
    return check(CLAIM_NUMBERS, load_frames(out), natural, load_frames(out, budget=True))


def write_report(claims: list[Claim], path: Path, title: str, preamble: str = "") -> pd.DataFrame:
    """Write the claims' Markdown report to ``path``; return the verdict table (for the notebook to show)."""
    Path(path).write_text(claims_markdown(claims, title, preamble))
    return verdict_table(claims)


def verdict_table(claims: list[Claim]) -> pd.DataFrame:
    """Claim, verdict (with its reason), the number that decides it with its interval, the budget check."""
    return pd.DataFrame([dict(claim=c.number, verdict=c.outcome, deciding=c.evidence, larger_budget=c.budget or "not checked")
                         for c in claims])
