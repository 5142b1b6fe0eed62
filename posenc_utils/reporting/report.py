"""Refresh the README's generated sections from the study's own products.

``python -m posenc_utils.report`` rewrites the text between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` for ``headline`` (Table 1 SPC, ours beside the paper's, and what the main
job cost), ``padding``, ``layers`` and ``downstream`` (notebooks 03, 04 and 05), ``deviations``, ``benchmark`` (``make bench``'s
report), ``card`` (the sample report card of ``make probe``), ``atlas`` (``make atlas``'s atlas) and ``changes`` (how the verdicts changed in the referee's
second reading), from ``figures/offline/`` and ``figures/probe/offline/``.
Nothing in those sections is typed by hand but what changed in each claim's rule (:data:`CHANGED`, words, no number).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd

from ..studies import atlas, budget, claims, extended
from . import findings
from ..primitives import paths, products
from ..studies import downstream as ds
from ..studies import layer_analysis as la
from ..studies import padding_ablation as pa
from .bench import BENCHMARK
from ..primitives.borders import PADDING_MODES
from ..studies.experiments import TABLE1
from .figures import CLAIMS, FIG_PAPER_VS_OURS, PAPER_VS_OURS
from ..studies.padding_ablation import setting_means
from ..primitives.products import Product
from ..primitives.timing import TIMES
from ..models.profiles import deviations, get_profile
from ..engine.tables import interval_cells, spc_means, spc_overview

README = paths.PROJ_ROOT / "README.md"


def _f(product: Product, suffix: str | None = None) -> str:
    """A product's file name as the README quotes it."""
    return f"`{product.file(suffix)}`"


def headline(profile: str = "offline") -> str:
    """Markdown: the ten claims and the paper-vs-ours figure (notebook 06), the Table 1 SPC overview and the
    main job's run time, read from the profile's outputs."""
    out = paths.FIGURES_DIR / profile
    table = pd.read_csv(TABLE1.csv(out))
    md = spc_overview(table).to_markdown(index=False)
    lines = []
    claims_csv = CLAIMS.csv(out)
    if claims_csv.exists():
        lines += [f"**The paper's ten claims**, each decided by a written rule four ways: *holds*, *contradicted* (the "
                  f"opposite shown beyond the uncertainty of our numbers: readout seeds, test images, training budget), "
                  f"*not reproduced* (our interval excludes the effect the paper's own cells give, without showing the "
                  f"opposite) or *not decided* (with the reason). The deciding number is a paired 95% interval; a readout "
                  f"that failed to train decides nothing; claims about the paper's encoders are decided on pretrained "
                  f"encoders only (stand-ins where marked), and every verdict from trained readouts (all but claim 9) is "
                  f"checked again with readouts trained {get_profile(profile).budget_factor:g} times as long. The same "
                  f"rules give \"holds\" on the paper's own published numbers (claim 8: no number published); a test checks "
                  f"it ([{_f(CLAIMS)}](figures/{profile}/{CLAIMS.file()}), made by notebook 06 from the saved results):", "",
                  claims_overview(pd.read_csv(claims_csv, dtype={"notebook": str})).to_markdown(index=False)]
        found = _claims(out, profile)
        if found:
            natural = get_profile(profile).natural_test_set
            lines += ["", findings.verdict_summary(found), "", findings.random_init_finding(out, natural)]
    if FIG_PAPER_VS_OURS.png(out).exists():
        lines += ["", f"Every number the paper published against ours ({_f(PAPER_VS_OURS)}; error bars: 95% intervals "
                  f"over readout seeds where there are several, else over test images):", "",
                  f"![ours against the paper](figures/{profile}/{FIG_PAPER_VS_OURS.file('.png')})", ""]
    lines += [f"Table 1, `{profile}` profile: SPC ours, the mean over readout seeds (paper's in parentheses; "
              f"`[k undef.]`: k images with a constant prediction, counted as 0; `[readout failed]`: a readout seed "
              f"behind the cell did not reach the best constant's training loss). Source: "
              f"`figures/{profile}/{TABLE1.file('.csv')}`, with the intervals and each row's baseline.", "", md]
    shown = [p.file({"figure": ".png", "table": ".md"}.get(p.kind)) for p in sorted(products.declared(), key=lambda p: p.notebook)
             if p.readme and p not in (TABLE1, CLAIMS, PAPER_VS_OURS, FIG_PAPER_VS_OURS)]  # those shown above
    more = [(name, f"figures/{profile}/{name}") for name in shown if (out / name).exists()]
    if more:
        lines += ["", "More products of the main job (notebooks 03 to 05, summarized in the sections below): "
                  + ", ".join(f"[`{name}`]({link})" for name, link in more) + "."]
    times = TIMES.path(out)
    if times.exists():
        t = json.loads(times.read_text())
        if "cold" in t:
            cold = t["cold"]
            lines += ["", f"The main job (`make reproduce`, every notebook) took {cold['total_s'] / 60:.1f} min from an "
                          f"empty cache on {cold['cpus']} CPU cores{_model(cold)}, peak memory {cold['peak_rss_gb']:.1f} GB "
                          f"({cold['date']}). Per notebook: "
                          + ", ".join(f"{k.split('_')[0]} {v / 60:.1f} min" for k, v in cold["notebooks_s"].items())
                          + "."]
        if "warm" in t:
            lines[-1] += (f" A rerun reusing the cache took {t['warm']['total_s']:.0f} s "
                          f"({t['warm']['date']}).")
        lines[-1] += " Where the time goes: see Benchmark below."
    return "\n".join(lines)


def _model(record: dict) -> str:
    """`` (the CPU's model)`` where a run recorded it (runs before it was recorded did not)."""
    return f" ({record['cpu']})" if record.get("cpu") else ""


def claims_overview(c: pd.DataFrame) -> pd.DataFrame:
    """One row per claim of the claims' table: the paper's words, the verdict with its reason, the number that
    decides it with its 95% interval, and the verdict at the larger training budget."""
    def number(r) -> str:
        if pd.isna(r.value):
            return ""
        ci = f" [{r.ci_low:.2f}, {r.ci_high:.2f}]" if pd.notna(r.ci_low) else ""
        return f"{r.deciding}: {_signed(r.value)}{ci} (rule: {r.threshold})"

    return pd.DataFrame(dict(claim=c.claim, paper=c.paper, verdict=c.outcome, deciding_number=c.apply(number, axis=1),
                             larger_budget=c.budget, notebook=c.notebook))


def _signed(v: float) -> str:
    return f"{0.0 if abs(v) < 0.005 else v:.2f}"


def _findings(numbers: tuple[int, ...], out: Path, *tables: tuple[str, pd.DataFrame, bool], text: str = "") -> str:
    """Markdown: the verdicts of claims ``numbers`` (from the claims' table), then each (caption, table, show the
    index) in turn, then ``text`` (what it shows: :mod:`posenc_utils.reporting.findings`, generated from the numbers)."""
    path = CLAIMS.csv(out)
    lines = []
    if path.exists():
        c = claims_overview(pd.read_csv(path, dtype={"notebook": str}))
        lines += [c[c.claim.isin(numbers)].drop(columns=["notebook"]).to_markdown(index=False)]
    for caption, table, index in tables:
        lines += ["", caption, "", table.to_markdown(index=index, floatfmt=".2f")]
    if text:
        lines += ["", f"What it shows (generated from the numbers; an order is stated only where the paired 95% "
                      f"interval excludes 0):", "", text]
    return "\n".join(lines)


def _claims(out: Path, profile: str) -> list:
    """The ten claims decided again from the saved results (as notebook 06 does), for the findings' numbers."""
    return claims.check_saved(out, get_profile(profile).natural_test_set) if claims.frame_path(out, TABLE1.frame).exists() \
        else []


def padding_section(profile: str = "offline") -> str:
    """Markdown: notebook 03's findings (claim 7, Table 4, padding modes, canvas, border regions),
    read from the profile's products."""
    out = paths.FIGURES_DIR / profile
    if not pa.TABLE4.csv(out).exists():
        return "Not run yet: `make reproduce` runs notebook 03."
    t4 = pd.read_csv(pa.TABLE4.csv(out))
    natural = get_profile(profile).natural_test_set
    modes = setting_means(pd.read_csv(pa.MODES.per_image_path(out)), natural)
    canvas_pi = pd.read_csv(pa.CANVAS.per_image_path(out))
    canvas = pd.concat([setting_means(canvas_pi, t).assign(test_set=t) for t in dict.fromkeys(canvas_pi.test_set)])
    mode_cells = interval_cells(modes, "encoder", "setting")
    return _findings(
        (7,), out,
        (f"Table 4 (`figures/{profile}/{pa.TABLE4.file('.md')}`; Fig 6: {_f(pa.FIG6, '.png')}), mean SPC over the "
         f"five patterns (`[k/n undef.]`: cells predicted as a constant, counted as 0):",
         spc_means(t4, ["encoder", "setting"]), True),
        (f"Padding modes, mean SPC over the five patterns on {natural} with 95% intervals over readout seeds and test "
         f"images (empty: the mode does not apply, reason in {_f(pa.MODES, '.csv')}; figure: {_f(pa.FIG_MODES, '.png')}; "
         f"each mode against zero padding, paired: {_f(pa.CONTRASTS, '.md')}):",
         mode_cells.reindex(columns=[m for m in PADDING_MODES if m in mode_cells.columns]), True),
        (f"The canvas the image is padded with, mean SPC over the patterns with 95% intervals ({_f(pa.CANVAS, '.csv')}, "
         f"{_f(pa.FIG_CANVAS, '.png')}):", interval_cells(canvas, ["encoder", "setting"], "test_set"), True),
        (f"SPC of the H, V, G readouts on the border band versus the centre of the test photos, their difference with "
         f"its paired 95% interval ({_f(pa.BORDER_REGIONS, '.csv')}; error against the distance to the border: "
         f"{_f(pa.FIG_BORDER_DISTANCE, '.png')}, {_f(pa.BORDER_DISTANCE)}):", pd.read_csv(pa.BORDER_REGIONS.csv(out)),
         False),
        text=findings.padding_findings(out, natural, _claims(out, profile)),
    )


def layers_section(profile: str = "offline") -> str:
    """Markdown: notebook 04's findings (claims 5, 6, 8; Tables 2 and 3; content error; the positive control)."""
    out = paths.FIGURES_DIR / profile
    if not la.TABLE2A.csv(out).exists():
        return "Not run yet: `make reproduce` runs notebook 04."

    natural = get_profile(profile).natural_test_set

    def photos_mean(product: Product, patterns) -> pd.DataFrame:
        df = pd.read_csv(product.csv(out))
        return spc_means(df[df.test_set == natural], "setting", "encoder", patterns)

    t3 = pd.read_csv(la.TABLE3.csv(out))
    control = pd.read_csv(la.CONTROL.csv(out))
    record = json.loads(extended.RECORD.path(out).read_text()) if extended.RECORD.path(out).exists() else {}
    seconds = record.get("train_seconds") or record.get("seconds")
    took = (f"; `make extended` trains its readouts in {seconds / 60:.0f} min on {record.get('cpus', '?')} CPU cores"
            f"{_model(record)} ({record.get('date', '')}; {_f(extended.COSTS)}: each readout's)"
            if seconds else "")
    sweep = [(f"Claim 5's width sweep ({_f(extended.SWEEP, '.md')}, {_f(extended.FIG_SWEEP, '.png')}{took}), mean SPC "
              f"on {natural} over H, G, HS:", photos_mean(extended.SWEEP, ("H", "G", "HS")), True)] \
        if extended.SWEEP.csv(out).exists() else []
    return _findings(
        (5, 6, 8), out,
        (f"Table 2 ({_f(la.TABLE2A, '.md')}, {_f(la.TABLE2B, '.md')}; Fig 5: {_f(la.FIG5, '.png')}), mean "
         f"SPC on {natural} over H, G, HS (`[k/n undef.]`: cells predicted as a constant):",
         pd.concat([photos_mean(la.TABLE2A, ("H", "G", "HS")), photos_mean(la.TABLE2B, ("H", "G", "HS"))]), True),
        *sweep,
        (f"The positive control, the same readouts on the pixel coordinates ({_f(la.CONTROL, '.md')}), SPC:",
         control.pivot_table(index="setting", columns="pattern", values="spc", sort=False), True),
        (f"Table 3 ({_f(la.TABLE3, '.md')}, {_f(la.FIG_STAGES, '.png')}), mean SPC on {natural} over the five patterns:",
         spc_means(t3[t3.test_set == natural], "setting", "encoder"), True),
        (f"Claim 8 ({_f(la.OBJECTS, '.md')}, {_f(la.FIG_OBJECTS, '.png')}): the error on an object over the error at "
         "the same pixels without it, each encoder minus PosENet's (the measure's floor), with 95% intervals over scenes "
         "and readout seeds:", pd.read_csv(la.OBJECTS.csv(out)), False),
        (f"Fig 7 ({_f(la.FIG7, '.png')}): error where the photo's gradient is strong over the error elsewhere, "
         "descriptive (gradient is not content; PosENet's ratio shows the measure's own bias), with 95% intervals "
         f"resampling source photographs ({_f(la.CONTENT, '.md')}):", pd.read_csv(la.CONTENT.csv(out)), False),
        (f"The training budget ({_f(budget.FIG_CURVE, '.png')}, {_f(budget.CURVE)}): mean SPC over H, G, HS on the "
         "natural test images against SGD steps (columns), per readout and number of training images:",
         pd.read_csv(budget.CURVE.csv(out)).pivot_table(index=["readout", "train_images"], columns="steps",
                                                           values="spc", sort=False), True),
        text=findings.layers_findings(out, natural, _claims(out, profile)),
    )


def downstream_section(profile: str = "offline") -> str:
    """Markdown: notebook 05's findings (claims 9 and 10; Tables 5 and 6; the crop shift of Fig 1)."""
    out = paths.FIGURES_DIR / profile
    if not ds.TABLE5.csv(out).exists():
        return "Not run yet: `make reproduce` runs notebook 05."
    t5 = pd.read_csv(ds.TABLE5.csv(out))
    t6 = pd.read_csv(ds.TABLE6.csv(out))
    t6n = pd.read_csv(ds.TABLE6_TRAINED.csv(out))
    shift = pd.read_csv(ds.SHIFT.csv(out))
    signature = ds.SIGNATURE.csv(out)
    signature = [(f"The position signature ({_f(ds.SIGNATURE)}): padding's SOD gain on centre-biased scenes minus "
                  "its gain on scenes placed anywhere (MAE's sign flipped), over the training seeds:",
                  pd.read_csv(signature), False)] if signature.exists() and len(pd.read_csv(signature)) else []
    return _findings(
        (9, 10), out,
        (f"Table 5 ({_f(ds.TABLE5, '.md')}; training losses: {_f(ds.FIG_LOSSES, '.png')}), ours with the paper's value "
         "(on the real datasets the scenes stand in for) beside it:",
         t5.pivot_table(index=["task", "test_set", "metric"], columns="padding", values="value", sort=False)
         .join(t5.pivot_table(index=["task", "test_set", "metric"], columns="padding", values="paper", sort=False)
               .add_prefix("paper, ")).reset_index(), False),
        *signature,
        (f"Table 6 ({_f(ds.TABLE6, '.md')}), mean SPC over H, G and HS:",
         spc_means(t6, "encoder", "test_set", ("H", "G", "HS")), True),
        (f"Table 6 at the size the networks were trained at ({_f(ds.TABLE6_TRAINED, '.md')}; claim 10 is decided here), mean "
         "SPC over H, G and HS:", spc_means(t6n, "encoder", "test_set", ("H", "G", "HS")), True),
        (f"Fig 1 ({_f(ds.FIG1, '.png')}): mean |change| of the saliency prediction when the image loses its left "
         f"columns, over the test scenes ({_f(ds.SHIFT)}):",
         shift.groupby(["padding", "shift"], sort=False).mean_abs_change.describe()[["mean", "std", "min", "max"]]
         .reset_index(), False),
        text=findings.downstream_findings(out, _claims(out, profile)),
    )


def benchmark(profile: str = "offline") -> str:
    """Markdown: the benchmark's headline and a row per encoder, from :data:`posenc_utils.reporting.bench.BENCHMARK`."""
    path = BENCHMARK.path(paths.FIGURES_DIR / profile)
    if not path.exists():
        return "No benchmark yet: run `make bench`."
    b = json.loads(path.read_text())
    if "floor_s" not in b:  # a report from before the readout floor was counted: the encoder floor alone
        b.update(floor_s=b["encoder_floor_s"], readout_floor_s=0.0, wall_over_encoder_floor=b["wall_over_floor"])
    phases = ", ".join(f"{k.replace('_', ' ')} {v:.0f} s" for k, v in b["phases_s"].items())
    lines = [
        f"`make bench` ({b['date']}, {b['device']}{_model(b)}, {b['torch_threads']} threads; cold cache; Table 1 of the "
        f"`{b['profile']}` profile, {b['images_per_encoder']} images per encoder): **{b['wall_s'] / 60:.1f} min wall, "
        f"{b['wall_over_floor']:.2f}x its floor** ({b['floor_s'] / 60:.1f} min: the best bare forward pass of each "
        f"encoder, measured in the same run, times the images it must see, {b['encoder_floor_s'] / 60:.1f} min, plus "
        f"every readout's first-layer arithmetic at the measured matrix-product rate, {b['readout_floor_s'] / 60:.1f} "
        f"min; {b['wall_over_encoder_floor']:.2f}x the encoder floor alone); peak resident memory "
        f"{b['peak_rss_gb']:.2f} GB. Phases: {phases}. Dense matrix product on this machine: "
        f"{b['dense_matmul_gflops']:.0f} GFLOP/s.", "",
        "| encoder | readout s/epoch | readout GFLOP/s | readout training s (floor s) | extraction s/image | "
        "bare forward s/image (batch) | extraction / bare | encoder GFLOP/s |",
        "|:--|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for label, e in b["encoders"].items():
        if "floor_s" in e:
            enc = (f"{e['extraction_s_per_image']:.3f} | {e['floor_s_per_image']:.3f} ({e['floor_batch_size']}) | "
                   f"{e['encoder_overhead_ratio']:.2f} | {e['encoder_gflops_at_floor']:.0f}")
        else:
            enc = "- | - | - | -"
        train = f"{e['readout_train_s']:.0f} ({e['readout_floor_s']:.0f})" if "readout_floor_s" in e else "-"
        lines.append(f"| {label} | {e['readout_s_per_epoch']:.2f} | {e['readout_gflops']:.0f} | {train} | {enc} |")
    lines += ["", f"Source: `figures/{profile}/{BENCHMARK.file()}` (regenerated by `make bench`)."]
    return "\n".join(lines)


SAMPLE_CARDS = ("timm-vit_tiny_patch16_224-random",)  # the cards of figures/probe/offline/ the README shows


def card_section(profile: str = "offline") -> str:
    """Markdown: the README's sample report cards (``make probe``'s), their sentences, Table 1 and figure."""
    lines = []
    for name in SAMPLE_CARDS:
        folder = paths.FIGURES_DIR / "probe" / profile / name
        if not (folder / "card.md").exists():
            lines.append(f"No sample card yet: `make probe MODEL=timm:{name.split('-')[1]} PROFILE={profile}` makes it.")
            continue
        text = (folder / "card.md").read_text()
        title = text.splitlines()[0].removeprefix("# ")
        bullets = [line for line in text.splitlines() if line.startswith("- ")][:7]
        table1 = text.split("## Table 1", 1)[1].split("\n## ", 1)[0].split("\n\n", 2)[-1].strip()
        rel = f"figures/probe/{profile}/{name}"
        lines += [f"A sample card ({title}, `{profile}` profile): [`card.md`]({rel}/card.md), "
                  f"[`card.html`]({rel}/card.html).", "", *bullets, "", f"![the sample card's figure]({rel}/card.png)",
                  "", table1, ""]
    return "\n".join(lines).rstrip()


def atlas_section(profile: str = "offline") -> str:
    """Markdown: the atlas (``make atlas``): what made it, its figure, the sentence per family, its table."""
    out = paths.FIGURES_DIR / profile
    if not atlas.RECORD.path(out).exists() or not atlas.TABLE.csv(out).exists():
        return f"No atlas yet: `make atlas PROFILE={profile}` makes it."
    record = json.loads(atlas.RECORD.path(out).read_text())
    table = pd.read_csv(atlas.TABLE.csv(out), keep_default_na=False, na_values=[""])
    ok = table[table.status == "ok"]
    per = record.get("per_model", {})
    slowest = max(per.items(), key=lambda kv: kv[1].get("seconds") or 0)[0] if per else ""
    rel = f"figures/{profile}"
    html_page, md_page = atlas.PAGE.file(".html"), atlas.PAGE.file(".md")
    lines = [f"The {profile} atlas: {len(ok)} of {len(table)} models probed in {record['wall_seconds'] / 60:.1f} min "
             f"({record['executor']} executor) on {record['cpus']} CPU cores ({record['cpu']}), {record['date']}; the "
             f"largest job's peak memory {record['peak_mb'] / 1024:.1f} GB; per model "
             f"{min((v.get('seconds') or 0) for v in per.values()):.0f} to {per[slowest]['seconds']:.0f} s "
             f"({slowest}). {record['setting']} The page: [`{html_page}`]({rel}/{html_page}) "
             f"([`{md_page}`]({rel}/{md_page})), each model's card linked from it.", "",
             f"![the atlas]({rel}/{atlas.FIGURE.file('.png')})", ""]
    lines += [f"- {s}" for s in atlas.family_sentences(table)]
    fails = atlas.failures(table)
    if len(fails):
        lines += ["", "Not probed: " + "; ".join(f"{r.model} ({r.error.split('. ')[0]})" for r in fails.itertuples())
                  + "."]
    view = atlas.view(table)
    keep = [c for c in view.columns if c in ("model", "kind", "params (M)", "spc", "share", "rowcol")
            or c in ("SPC change, circular", "SPC change, zeroed", "SPC change, permuted")]
    lines += ["", view[keep].to_markdown(index=False)]
    return "\n".join(lines)


BEFORE = paths.PROJ_ROOT / "data" / "reference" / "claims_before_referee.csv"  # the verdicts published before it
# What the referee's second reading changed in each claim's rule or evidence (besides every readout's feature
# scaling, per tap instead of per channel, which touches every claim decided on readouts: all but claim 9).
CHANGED = {
    1: "readouts scaled per tap", 2: "readouts scaled per tap", 3: "readouts scaled per tap",
    4: "readouts scaled per tap",
    5: "readouts scaled per tap; 3 readout seeds (was 1); the depth part decided at the widest readout of a width "
       "sweep (was: width 4, left undecided as a stand-in readout); 'not reproduced' where the interval excludes the "
       "paper's effect (the kernel part, whose interval excluded the paper's effect, was filed as noise)",
    6: "readouts scaled per tap; 3 readout seeds (was 1); the paper's order of the stages (f5 > ... > f1) a part of "
       "its own",
    7: "readouts scaled per tap, which trains the no-padding arm (per-channel scaling saturated it: a constant "
       "prediction on a quarter of the photos, MAE worse than a constant's); a readout that failed decides nothing",
    8: "decided on scenes with exact object masks against the same pixels without the object, minus PosENet's ratio "
       "(was: image gradient against the rest of the photo, a measure on which PosENet, which finds no position, "
       "scored below 1)",
    9: "the network without padding sees the scene around the image (was: a mirror-extended input, reflect padding "
       "at the input), VGG16's first 4 blocks for both arms; the position signature reported beside it",
    10: "readouts scaled per tap; the networks trained as in claim 9",
}


def verdict_changes(profile: str = "offline") -> str:
    """Markdown: each claim's verdict before the referee's second reading (:data:`BEFORE`) and now, its deciding number
    then and now, and what changed in its rule or its evidence (:data:`CHANGED`)."""
    now_path = CLAIMS.csv(paths.FIGURES_DIR / profile)
    if not (BEFORE.exists() and now_path.exists()):
        return "Not run yet: `make reproduce` decides the claims."
    before = claims_overview(pd.read_csv(BEFORE, dtype={"notebook": str})).set_index("claim")
    now = claims_overview(pd.read_csv(now_path, dtype={"notebook": str})).set_index("claim")
    rows = [dict(claim=k, before=before.verdict.get(k, ""), now=now.verdict[k],
                 changed="yes" if before.verdict.get(k, "") != now.verdict[k] else "no",
                 deciding_before=before.deciding_number.get(k, ""), deciding_now=now.deciding_number[k],
                 what_changed=CHANGED.get(k, "")) for k in now.index]
    table = pd.DataFrame(rows)
    n = int((table.changed == "yes").sum())
    return "\n".join([f"The verdicts the study published before this reading (`data/reference/claims_before_referee.csv`) "
                      f"and now, with what changed in each rule or its evidence: {n} of {len(table)} verdicts changed.",
                      "", table.to_markdown(index=False)])


def deviations_markdown() -> str:
    """Every profile's deviations: offline and paper in full, quick as what it adds to offline."""
    offline, paper = deviations(get_profile("offline")), deviations(get_profile("paper"))
    quick = [d for d in deviations(get_profile("quick")) if d not in offline]
    lines = ["**offline** (the main job):", *(f"- {d}" for d in offline), "",
             "**paper**:", *(f"- {d}" for d in paper), "",
             "**quick**: as offline, and:", *(f"- {d}" for d in quick)]
    return "\n".join(lines)


def replace_section(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:start -->\n)(?:.*?\n)?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"README.md has no <!-- {name}:start --> ... <!-- {name}:end --> markers")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def main() -> int:
    text = README.read_text()
    text = replace_section(text, "headline", headline("offline"))
    text = replace_section(text, "padding", padding_section("offline"))
    text = replace_section(text, "layers", layers_section("offline"))
    text = replace_section(text, "downstream", downstream_section("offline"))
    text = replace_section(text, "deviations", deviations_markdown())
    text = replace_section(text, "changes", verdict_changes("offline"))
    text = replace_section(text, "benchmark", benchmark("offline"))
    text = replace_section(text, "card", card_section("offline"))
    text = replace_section(text, "atlas", atlas_section("offline"))
    README.write_text(text)
    print(f"updated {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
