"""``make atlas`` / ``python -m posenc_utils.atlas``: the position atlas, one report card per model, one job per model.

``python -m posenc_utils.atlas [--models FILE] [--profile offline] [--executor local|slurm|inline] [--jobs N]``
probes every model of a list (the default list, ``posenc_utils/studies/atlas_models.csv``, or a file of one's own:
a model per line, optionally ``,family,kind``) with the probe's card (:mod:`posenc_utils.runners.probe`), and writes
the atlas (:mod:`posenc_utils.studies.atlas`): a table (CSV, Markdown), a figure, and an HTML page that links each
model's card, in ``figures/<profile>/`` (cards and rows under ``figures/<profile>/atlas/``).

* **Cached and resumable.** A job writes its model's row (``atlas/rows/<model>.json``) when it ends, on the shared
  filesystem; a rerun reads back every row that is there and current, and submits only the rest. A model that fails
  is a row with its error (a refusal naming the model, the reason and what to do), and the others go on; a rerun
  tries it again. Every card's features and readouts sit in the content-keyed cache (``POSENC_CACHE_DIR``), which
  every job shares.
* **Where the jobs run.** ``inline``: in this process, one after the other. ``local`` (the default): submitit's local
  executor, each job a process of its own (the same pickled job a cluster runs), ``--jobs`` side by side, each on
  the cores divided among them. ``slurm``: one SLURM job per model through submitit (``--partition``, ``--gpus``,
  ``--time``, ``--mem``, ``--cpus``), the table gathered when they end.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import submitit
import torch

from ..engine import tables
from ..models.encoders import parameters, shape_only
from ..models.families import family_of, timm_input_size
from ..models.profiles import PROFILES, QUICK_ATLAS, Profile, deviations, get_profile
from ..primitives import cache, devices, paths
from ..primitives.specs import EncoderSpec
from ..studies import atlas
from ..studies.atlas import Entry
from . import probe
from .plan import missing_inputs

ATLAS_VERSION = 1  # a row written by another version of this code is made again
SMALL_ATLAS = QUICK_ATLAS  # what notebook 08 makes where `make atlas` has not run: a CNN, a ViT, an MLP-Mixer
EXECUTORS = ("local", "slurm", "inline")


@dataclass(frozen=True)
class Slurm:
    """What each SLURM job asks for (submitit's ``slurm_*`` parameters)."""

    partition: str | None = None
    gpus: int = 0
    time_min: int = 60
    mem_gb: float = 8
    cpus: int = 2


def folder(profile: str, output_dir: str | Path | None = None) -> Path:
    """``figures/<profile>/atlas/``: the cards, the rows and the jobs' logs."""
    return paths.output_dir(profile, output_dir) / "atlas"


def models(profile: Profile, path: str | Path | None = None) -> list[Entry]:
    """The atlas's models: the file's, or the profile's (``atlas_models``, described by the default list where it has
    them), or the default list; and where pretrained weights of a listed network are on this machine (a timm cache,
    torchvision's files), the same network pretrained too."""
    if path:
        return atlas.read_models(path)
    listed = atlas.read_models()
    if profile.atlas_models:
        known = {e.model: e for e in listed}
        return [known.get(m, Entry(m, m, "unknown")) for m in profile.atlas_models]
    extra = []
    for e in listed:
        spec = e.spec
        fam = family_of(spec.name)
        if spec.weights == "random" and fam.takes("imagenet") and not any(x.spec.name == spec.name and x.spec.weights
                                                                           == "imagenet" for x in listed):
            weights = fam.weights_file(dataclasses.replace(spec, weights="imagenet"))
            if weights is not None and weights.exists():
                extra.append(Entry(f"{spec.name}:imagenet", e.family, e.kind))
    return listed + extra


def key(entry: Entry, profile: Profile) -> dict:
    """What a row is made of: a row whose key differs is made again."""
    p = atlas.atlas_profile(profile)
    return dict(version=ATLAS_VERSION, model=entry.model, profile=p.name, image_size=p.image_size,
                train_n=p.train_set.n, epochs=p.readout.epochs, ablation_train_n=p.ablation_train_n)


def row_path(entry: Entry, profile: str, output_dir: str | Path | None = None) -> Path:
    return folder(profile, output_dir) / "rows" / f"{probe.slug(entry.spec)}.json"


def card_folder(entry: Entry, profile: str, output_dir: str | Path | None = None) -> Path:
    return folder(profile, output_dir) / "cards" / probe.slug(entry.spec)


def read_row(entry: Entry, profile: Profile, output_dir: str | Path | None = None) -> dict | None:
    """The row a job wrote for ``entry``, where it is there, readable, current and not a failure; else None."""
    path = row_path(entry, profile.name, output_dir)
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError):  # not there, or damaged: made again
        return None
    return row if row.get("key") == key(entry, profile) and row.get("status") == "ok" else None


def _size(entry: Entry, profile: Profile) -> dict:
    """The model's parameters (millions) and GFLOP per image at the size it is fed (a shape-only build)."""
    spec, size = entry.spec, profile.image_size
    channels, gflops = shape_only(spec, size)
    return dict(params_m=parameters(spec, size) / 1e6, gflops=gflops, input_size=timm_input_size(spec, size) or size,
                taps=len(channels))


def _write_row(path: Path, row: dict) -> None:
    with cache.atomic_path(path) as tmp:  # whole or not at all: a killed job leaves no half row
        tmp.write_text(json.dumps(row, indent=1, default=float) + "\n")


def job(model: str, family: str, kind: str, profile_name: str, output_dir: str | None = None,
        threads: int | None = None) -> dict:
    """One model's card and row (what a SLURM or local job runs; plain arguments, so it pickles): the card written
    in ``atlas/cards/<model>/``, the row in ``atlas/rows/<model>.json``, returned. Never raises for the model: a
    model that cannot be probed is a row with ``status`` "failed" and the refusal."""
    matplotlib.use("Agg")  # progress as the caller set it: lines in a job's log (the command sets it), bars inline
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    entry, profile = Entry(model, family, kind), get_profile(profile_name)
    cfg = atlas.atlas_profile(profile)
    row = dict(model=model, label=model, family=family, kind=kind)
    try:
        spec = probe.model_spec(model)
        row["label"] = spec.label
        missing = missing_inputs(probe.card_profile(cfg, spec), downstream=False)
        if missing:
            raise FileNotFoundError(f"the {profile_name} profile is missing: " + "; ".join(missing))
        card = probe.make_card(spec, cfg, output_dir)
        probe.write_card(card, card_folder(entry, profile_name, output_dir))
        row.update(atlas.card_row(card, entry))
        row.update(_size(entry, cfg))
    except Exception as err:  # noqa: BLE001 - a model that fails is listed with its error; the others go on
        row.update(status="failed", error=probe.refusal(model, err))
    row.update(key=key(entry, profile), seconds=round(time.perf_counter() - t0, 1),
               peak_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
               threads=_threads(),
               cpu=devices.cpu_model(), host=socket.gethostname(), pid=os.getpid(), slurm_job=os.environ.get("SLURM_JOB_ID", ""))
    _write_row(row_path(entry, profile_name, output_dir), row)
    return row


def _threads() -> int:
    return torch.get_num_threads()


def _failed(entry: Entry, profile: Profile, error: str) -> dict:
    return dict(model=entry.model, label=entry.model, family=entry.family, kind=entry.kind, status="failed",
                error=error, key=key(entry, profile))


def _submitit(executor: str, logs: Path, slurm: Slurm, threads: int):
    if executor == "local":
        ex = submitit.LocalExecutor(folder=str(logs))
        ex.update_parameters(timeout_min=slurm.time_min)
        return ex
    ex = submitit.AutoExecutor(folder=str(logs), cluster="slurm")
    params = dict(timeout_min=slurm.time_min, mem_gb=slurm.mem_gb, cpus_per_task=max(slurm.cpus, threads),
                  name="posenc-atlas")
    if slurm.partition:
        params["slurm_partition"] = slurm.partition
    if slurm.gpus:
        params["gpus_per_node"] = slurm.gpus
    ex.update_parameters(**params)
    return ex


def _collect(j, entry: Entry, profile: Profile) -> dict:
    """A finished job's row; a job that died (killed, out of time or memory) is a failed row with submitit's reason."""
    try:
        return j.result()
    except Exception as err:  # noqa: BLE001 - the job itself failed: listed, the others go on
        first = str(err).strip().splitlines()
        return _failed(entry, profile, f"the job of {entry.model} ended without a row ({type(err).__name__}: "
                                       f"{first[0] if first else ''}); its log is in {getattr(j, 'paths', None) and j.paths.stderr}")


def side_by_side(executor: str, n: int, jobs: int | None = None, slurm: Slurm = Slurm()) -> tuple[int, int]:
    """(jobs at once, torch threads per job): SLURM runs every job as the cluster allows, each on its ``--cpus``;
    locally ``jobs`` at once (default: a job per two cores), the cores shared among them; inline one, on every core."""
    cpus = os.cpu_count() or 1
    if executor == "slurm":
        return max(1, n), slurm.cpus
    at_once = 1 if executor == "inline" else max(1, jobs or cpus // 2)
    return at_once, max(1, cpus // at_once)


def run(entries: list[Entry], profile: Profile, output_dir: str | Path | None = None, executor: str = "local",
        jobs: int | None = None, slurm: Slurm = Slurm(), log: Callable[[str], None] = print, poll: float = 2.0
        ) -> pd.DataFrame:
    """Every entry's row: read back where current (:func:`read_row`), else made by a job on ``executor``; returns
    the table (failed models included, with their error)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    rows = {e.model: read_row(e, profile, output_dir) for e in entries}
    todo = [e for e in entries if rows[e.model] is None]
    log(f"atlas ({profile.name}): {len(entries)} models, {len(entries) - len(todo)} read back, {len(todo)} to make "
        f"({executor})")
    at_once, threads = side_by_side(executor, len(todo), jobs, slurm)
    out = str(output_dir) if output_dir else None
    if executor == "inline":
        for e in todo:
            rows[e.model] = job(e.model, e.family, e.kind, profile.name, out, None)
            log(_said(rows[e.model]))
    elif todo:
        ex = _submitit(executor, folder(profile.name, output_dir) / "logs" / executor, slurm, threads)
        pending, running = list(todo), {}
        while pending or running:
            while pending and len(running) < at_once:
                e = pending.pop(0)
                running[e.model] = (e, ex.submit(job, e.model, e.family, e.kind, profile.name, out, threads))
            time.sleep(poll)
            for model, (e, j) in list(running.items()):
                if j.done():
                    rows[model] = _collect(j, e, profile)
                    if rows[model].get("status") != "ok":
                        _write_row(row_path(e, profile.name, output_dir), rows[model])
                    log(_said(rows[model]))
                    del running[model]
    table = pd.DataFrame([rows[e.model] for e in entries])
    table.attrs["made"] = len(todo)  # how many rows this run made (the others were read back)
    return table


def _said(row: dict) -> str:
    if row.get("status") == "ok":
        return f"  {row['label']}: SPC {row['spc']:.2f}, {row.get('seconds', 0):.0f} s, {row.get('peak_mb', 0)} MB"
    return f"  {row['model']}: failed: {row.get('error', '')[:300]}"


# ---------------------------------------------------------------- the atlas's files


def write(table: pd.DataFrame, profile: Profile, output_dir: str | Path | None, record: dict) -> dict[str, Path]:
    """The atlas's table, figure, page and record in ``figures/<profile>/``."""
    out = paths.output_dir(profile.name, output_dir)
    files = {"table": tables.write_csv(table.drop(columns=["key"], errors="ignore"), atlas.TABLE.csv(out))}
    files["figure"] = atlas.FIGURE.png(out)
    ok = table[table.status == "ok"]
    if len(ok):
        fig = atlas.plot_atlas(table, files["figure"])
        plt.close(fig)
    note = page_note(profile, record)
    sentences = atlas.family_sentences(table)
    cards = {e: card_folder(Entry(e, "", ""), profile.name, output_dir) / "card.html" for e in ok.model}
    files["markdown"] = atlas.PAGE.md(out)
    files["markdown"].write_text(atlas.to_markdown(table, note, sentences))
    files["html"] = atlas.PAGE.path(out, ".html")
    files["html"].write_text(atlas.to_html(table, files["figure"], out, cards, note, sentences))
    files["record"] = atlas.RECORD.path(out)
    files["record"].write_text(json.dumps(record, indent=1, default=float) + "\n")
    return files


def page_note(profile: Profile, record: dict) -> str:
    cfg = atlas.atlas_profile(profile)
    parts = [f"Profile {profile.name}: {len(record.get('models', []))} models, random init unless their weights are "
             f"named, each probed with the study's card on {cfg.image_size} px images, SPC and the share of variance on "
             f"{profile.natural_test_set} with 95% intervals over readout seeds and test images; changes are an "
             f"intervention minus the network as built, paired over images, in the card's smaller ablation setting.",
             atlas.setting_note(profile)]
    devs = deviations(profile, "08")
    if devs:
        parts.append("Deviations from the paper: " + "; ".join(devs) + ".")
    return " ".join(p for p in parts if p)


def make(profile: Profile, output_dir: str | Path | None = None, models_file: str | None = None,
         executor: str = "local", jobs: int | None = None, slurm: Slurm = Slurm(), log=print) -> tuple[pd.DataFrame, dict]:
    """Run (or read back) every model's job, then write the atlas; returns the table and the record."""
    entries = models(profile, models_file)
    cfg = atlas.atlas_profile(profile)
    missing = missing_inputs(probe.card_profile(cfg, EncoderSpec("posenet", "none")), downstream=False)
    if missing:  # the image sets every card needs: refused once, before a job is submitted
        raise ValueError(f"the {profile.name} profile cannot make the atlas; missing:\n- " + "\n- ".join(missing))
    t0 = time.perf_counter()
    table = run(entries, profile, output_dir, executor, jobs, slurm, log)
    wall = time.perf_counter() - t0
    made = table.attrs.get("made", 0)  # rows this run made; the rest were read back
    record = _record(table, profile, entries, executor, wall, models_file, output_dir, made)
    record["jobs_at_once"], record["threads_per_job"] = side_by_side(executor, len(entries), jobs, slurm)
    write(table, profile, output_dir, record)
    return table, record


def _record(table: pd.DataFrame, profile: Profile, entries: list[Entry], executor: str, wall: float,
            models_file: str | None, output_dir, made: int) -> dict:
    """What made the atlas: its models and setting, and the time and peak memory of each model's job (as the job
    booked it, whether this run made it or read it back); the wall time of every run that made some of its rows."""
    per = {r.model: dict(seconds=r.seconds if "seconds" in table else None, peak_mb=getattr(r, "peak_mb", None),
                         status=r.status, cpu=getattr(r, "cpu", None)) for r in table.itertuples()}
    record = dict(runs=1, profile=profile.name, models=[e.model for e in entries], models_file=str(models_file or "default"),
                  setting=atlas.setting_note(profile) or "the full card", executor=executor, wall_seconds=round(wall, 1),
                  card_seconds=round(float(np.nansum([v["seconds"] or 0 for v in per.values()])), 1),
                  peak_mb=max((v["peak_mb"] or 0 for v in per.values()), default=0),
                  failed=[m for m, v in per.items() if v["status"] != "ok"], per_model=per,
                  cpu=devices.cpu_model(), cpus=os.cpu_count(), date=time.strftime("%Y-%m-%d"))
    path = atlas.RECORD.path(paths.output_dir(profile.name, output_dir))
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError):
        before = {}
    if before.get("models") == record["models"] and made < len(entries):
        # a run that resumed an earlier one: what making the atlas took is the earlier run's time and this one's
        # (nothing made now: the earlier record stands)
        record["wall_seconds"] = round(before.get("wall_seconds", 0) + (wall if made else 0), 1)
        record["runs"] = before.get("runs", 1) + (1 if made else 0)
        if not made:
            record["date"] = before.get("date", record["date"])
    return record


def load(profile: Profile, output_dir: str | Path | None = None) -> tuple[pd.DataFrame | None, dict, str]:
    """The atlas ``make atlas`` wrote, where it is of this profile, its models and setting."""
    out = paths.output_dir(profile.name, output_dir)
    path = atlas.RECORD.path(out)
    if not path.exists() or not atlas.TABLE.csv(out).exists():
        return None, {}, f"no {path.name} in {out}: run `make atlas` (PROFILE={profile.name})"
    record = json.loads(path.read_text())
    wanted = [e.model for e in models(profile)]
    if record.get("models") != wanted or record.get("setting") != (atlas.setting_note(profile) or "the full card"):
        return None, record, f"{path} records other models or another card setting: run `make atlas` again"
    return pd.read_csv(atlas.TABLE.csv(out), keep_default_na=False, na_values=[""]), record, ""


def results(profile: Profile, output_dir: str | Path | None = None, log=print) -> tuple[pd.DataFrame, dict, str]:
    """What notebook 08 shows: in the main job (``atlas_in_main``) made now (inline); else what ``make atlas`` wrote
    where it is current, or made now (inline, which takes long) with the reason."""
    why = "made here: the profile runs the atlas in the main job"
    if not profile.atlas_in_main:
        table, record, why = load(profile, output_dir)
        if table is not None:
            return table, record, f"read from {atlas.RECORD.path(paths.output_dir(profile.name, output_dir))} (written by `make atlas`)"
        if not profile.atlas_models:  # the whole list is `make atlas`'s: the notebook makes a small atlas meanwhile
            profile = profile.with_overrides(atlas_models=SMALL_ATLAS)
            why = (f"{why}; made here for {len(SMALL_ATLAS)} models only ({', '.join(SMALL_ATLAS)}): `make atlas "
                   f"PROFILE={profile.name}` makes the whole list, which this notebook then reads")
    table, record = make(profile, output_dir, executor="inline", log=log)
    return table, record, why


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m posenc_utils.atlas", description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=None, help="a file of models (default: posenc_utils/studies/atlas_models.csv)")
    ap.add_argument("--profile", default="offline", choices=PROFILES)
    ap.add_argument("--output-dir", default="", help="root for the atlas (default: figures/)")
    ap.add_argument("--executor", default="local", choices=EXECUTORS,
                    help="local: submitit's local processes (default); slurm: one SLURM job per model; inline: here")
    ap.add_argument("--jobs", type=int, default=None, help="local jobs side by side (default: cores / 2)")
    ap.add_argument("--partition", default=None, help="SLURM partition")
    ap.add_argument("--gpus", type=int, default=0, help="GPUs per SLURM job")
    ap.add_argument("--time", type=int, default=60, help="minutes per job")
    ap.add_argument("--mem", type=float, default=8, help="GB of memory per SLURM job")
    ap.add_argument("--cpus", type=int, default=2, help="cores per SLURM job")
    args = ap.parse_args(argv)
    os.environ.setdefault("POSENC_PROGRESS", "lines")
    try:
        profile = get_profile(args.profile)
        slurm = Slurm(args.partition, args.gpus, args.time, args.mem, args.cpus)
        table, record = make(profile, args.output_dir or None, args.models, args.executor, args.jobs, slurm)
    except (atlas.AtlasListError, ValueError, RuntimeError) as err:
        print(f"atlas: {err}", file=sys.stderr)
        return 2
    out = paths.output_dir(profile.name, args.output_dir or None)
    for s in atlas.family_sentences(table):
        print(f"[atlas] {s}")
    print(f"[atlas] {int((table.status == 'ok').sum())} of {len(table)} models probed in {record['wall_seconds']:.0f} s; "
          f"failed: {', '.join(record['failed']) or 'none'}; the atlas: {atlas.PAGE.path(out, '.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
