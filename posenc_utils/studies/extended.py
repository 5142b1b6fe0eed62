"""Readouts too long for the main job: claim 5's width sweep and the budget curve to the paper's 4,950 SGD steps.

* the width sweep: Table 2a's stacked readouts (2 and 3 layers) at each width of ``profile.width_sweep`` per head,
  for every pretrained VGG16 (claim 5's encoders; PosENet's stacked readouts, on 3 channels, find no position and
  train slowly, on one thread each: they stay in Table 2a at its own width), with the encoder's readout seeds;
  claim 5's depth part is decided at the widest (:mod:`posenc_utils.studies.claims`), and checked at the larger training
  budget there.
* the budget curve's pretrained VGG16 trained four times as long and up to ``profile.curve_max_steps`` steps
  (:func:`posenc_utils.studies.budget.long_points`).

Where a profile runs them in the main job (``extended_in_main``: the quick profile) notebook 04 calls
:func:`compute`; otherwise ``make extended`` (``python -m posenc_utils.extended``) does, writes the results beside
the study's (the width sweep's table, its per-image results and larger-budget twin, the long points of the curve:
the products declared at the end of this module) with a record of every readout it trained (:data:`RECORD`: their
cache keys, the time, the machine), and
notebook 04 reads them (:func:`load`) only where this code, on the same cached features, would train exactly
those readouts: results from another readout procedure are not mixed into the study's.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import budget, layer_analysis
from ..primitives import devices
from ..engine import tables
from .experiments import Result, probe_job
from ..primitives.products import declare
from ..engine.readout import train_readouts
from ..models.profiles import Profile, command_profile, deviations

DEPTHS = (1, 2, 3)  # 1 layer: Table 1's readout, the depth part's reference


def _budget_settings(profile: Profile) -> tuple[Profile, tuple[int, ...], tuple]:
    """The budget check of the sweep: 1 and 3 layers at the widest width, readouts trained longer."""
    widths = profile.width_sweep
    widest = (None,) if None in widths else (max(widths),)
    return budget.larger_budget(profile), (DEPTHS[0], DEPTHS[-1]), widest


def probes(profile: Profile) -> list:
    """Every probe :func:`compute` trains: the sweep, its budget check, the long curve points."""
    larger, depths, widest = _budget_settings(profile)
    return (layer_analysis.capacity_probes(profile, DEPTHS, (), profile.width_sweep, posenet=False)
            + layer_analysis.capacity_probes(larger, depths, (), widest, posenet=False)
            + [(profile, kw) for *_, kw in budget.long_points(profile)])


def readout_keys(profile: Profile) -> list[str]:
    """The cache keys of every readout :func:`compute` trains (features are read from the cache, or extracted)."""
    return sorted({probe_job(p, **kw).key() for p, kw in probes(profile)})


def compute(profile: Profile) -> Result:
    """Train (or read from the cache) every extended readout and measure it: the width sweep (the table and every
    seed's per-image results), and in ``more``: its depth part at the larger training budget (``budget_per_image``),
    the long points of the budget curve (``curve``), what each of the sweep's readouts cost to train (``costs``: per
    encoder and setting, the seconds and GFLOP of one readout seed); ``seconds``: training every readout."""
    readouts = train_readouts([probe_job(p, **kw) for p, kw in probes(profile)])  # a pass over the features per seed
    sweep = layer_analysis.readout_capacity(profile, DEPTHS, (), profile.width_sweep, posenet=False)
    larger, depths, widest = _budget_settings(profile)
    longer = layer_analysis.readout_capacity(larger, depths, (), widest, posenet=False)
    curve = budget.budget_curve(profile, budget.long_points(profile)).table.assign(extended=True)
    costs = pd.DataFrame([dict(encoder=enc, setting=setting, train_seconds=float(np.mean([r.readout.train_seconds
                                                                                           for r in seeded])),
                               gflop=float(np.mean([r.readout.gflop for r in seeded])), seeds=len(seeded))
                          for enc, by in sweep.runs.items() for setting, seeded in by.items()])
    return Result(sweep.table, sweep.per_image, more=dict(budget_per_image=longer.per_image, curve=curve, costs=costs),
                  seconds=sum(r.train_seconds for r in readouts))


def write(profile: Profile, out: Path, result: Result, seconds: float) -> Path:
    """The results beside the study's, and the record that says which readouts made them."""
    caption = (f"Table 2a, the width sweep ({profile.name} profile; `make extended`). Deviations from the paper: "
               + "; ".join(deviations(profile, "04")) + ".")
    result.save(out, SWEEP, caption)
    tables.write_frame(result.more["budget_per_image"], out, SWEEP, budget=True)
    tables.write_csv(result.more["curve"], CURVE_LONG.csv(out))
    if result.more.get("costs") is not None:
        tables.write_csv(result.more["costs"], COSTS.csv(out))
    path, keys = RECORD.path(out), readout_keys(profile)
    before = json.loads(path.read_text()) if path.exists() else {}
    if before.get("readouts") == keys and before.get("seconds", 0) > seconds:  # made before: keep what making took
        seconds, cpu, cpus, date = before["seconds"], before.get("cpu", ""), before.get("cpus"), before.get("date")
    else:
        cpu, cpus, date = devices.cpu_model(), os.cpu_count(), time.strftime("%Y-%m-%d")
    # seconds: this run's wall time; train_seconds: the training of every readout it needs, as their cache entries
    # booked it when they were made (the same whether this run trained them or read them back)
    record = dict(profile=profile.name, widths=list(profile.width_sweep), readouts=keys, seconds=round(seconds, 1),
                  train_seconds=round(result.seconds, 1), cpu=cpu, cpus=cpus, date=date)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def load(profile: Profile, out: Path) -> tuple[Result | None, str]:
    """The results of ``make extended`` in ``out`` where they are current (the record names exactly the readouts
    this code would train on the cached features), and why not where they are not."""
    path = RECORD.path(out)
    if not path.exists():
        return None, f"no {path.name} in {out}: run `make extended` (PROFILE={profile.name})"
    record = json.loads(path.read_text())
    if record.get("profile") != profile.name or record.get("readouts") != readout_keys(profile):
        return None, (f"{path} records other readouts than this code trains (another procedure, profile or data): "
                      f"run `make extended` again")
    costs = pd.read_csv(COSTS.csv(out)) if COSTS.csv(out).exists() else None
    more = dict(budget_per_image=pd.read_csv(SWEEP.per_image_path(out, budget=True)), curve=pd.read_csv(CURVE_LONG.csv(out)),
                costs=costs)
    return Result(pd.read_csv(SWEEP.csv(out)), pd.read_csv(SWEEP.per_image_path(out)), more=more), ""


def results(profile: Profile, out: Path) -> tuple[Result | None, str]:
    """What notebook 04 shows and claim 5 reads: computed here where the profile runs the extended readouts in the
    main job, else :func:`load`'s (None, with the reason, where they are missing or not current)."""
    if not profile.width_sweep:
        return None, f"the {profile.name} profile has no width sweep (Profile.width_sweep)"
    if profile.extended_in_main:
        t0 = time.perf_counter()
        result = compute(profile)
        write(profile, out, result, time.perf_counter() - t0)
        return result, ""
    return load(profile, out)


def main(argv: list[str] | None = None) -> int:
    profile, out = command_profile("python -m posenc_utils.extended", __doc__.split("\n\n")[0], argv)
    t0 = time.perf_counter()
    print(f"extended readouts ({profile.name}): width sweep {profile.width_sweep}, {len(readout_keys(profile))} "
          f"readouts; the budget curve to {profile.curve_max_steps} steps", flush=True)
    result = compute(profile)
    path = write(profile, out, result, time.perf_counter() - t0)
    print(f"wrote {path} and the results beside it in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())


# ---------------------------------------------------------------- products (posenc_utils.primitives.products)
# Written by `make extended` (by notebook 04 where the profile runs them in the main job), read by notebook 04.

SWEEP = declare("table2a_width_sweep", "04", "table", role="Table 2a", made_by=compute, claims=(5,), per_image=True,
                budget="frame", readme="layers", optional=True)
FIG_SWEEP = declare("fig_width_sweep", "04", "figure", made_by=layer_analysis.plot_width_sweep, drawn_from=SWEEP,
                    draw=layer_analysis.plot_width_sweep, readme="layers", optional=True)
COSTS = declare("table2a_width_sweep_costs", "04", "csv", made_by=compute, optional=True)  # seconds and GFLOP of one
# readout seed per encoder and setting
CURVE_LONG = declare("budget_curve_long", "04", "csv", made_by=compute, optional=True)
RECORD = declare("extended", "04", "json", made_by=write, optional=True)
