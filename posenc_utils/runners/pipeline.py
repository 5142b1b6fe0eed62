"""Run the study's notebooks in order with papermill (``python -m posenc_utils.pipeline``).

``run``: execute every notebook for one profile; executed copies go to ``build/<profile>/``,
never over the sources. Before the first notebook it prints the run's plan (images, encoders,
readouts, feature storage, device). ``--set field=value`` changes a profile field for this
run (e.g. ``--set image_size=64 --set readout.epochs=2``); the profiles themselves stay as
they are. ``prepare``: write parameterized, unexecuted copies (for nbval, which cannot inject
parameters itself).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import resource
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from ..primitives import cache, devices, paths, timing
from ..reporting.figures import CLAIMS
from ..primitives.pages import render
from .plan import make_plan, missing_inputs
from ..models.profiles import PROFILES, Profile, get_profile
from .manifest import write_manifest


LAST = "06"  # the figures notebook gathers every other notebook's products: it runs last


def notebooks() -> list[Path]:
    """The study's notebooks in pipeline order (``NN_name.ipynb``, by number, notebook :data:`LAST` last)."""
    return sorted(paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"), key=lambda p: (p.name[:2] == LAST, p.name))


def parse_overrides(items: list[str] | None) -> dict:
    """Profile overrides from ``field=value`` strings: the value is JSON when it parses (``64``, ``null``,
    ``[1, 2]``), else a string; ``readout.epochs=2`` sets a field of a nested spec (readout, downstream)."""
    out: dict = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--set {item!r}: write field=value, e.g. image_size=64 or readout.epochs=2")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        outer, _, inner = name.partition(".")
        if inner:
            out.setdefault(outer, {})[inner] = value
        else:
            out[outer] = value
    try:
        get_profile("quick", **out)  # an unknown field fails here, before any notebook runs
    except TypeError as err:
        fields = ", ".join(f.name for f in dataclasses.fields(Profile) if f.name not in ("name", "description"))
        raise ValueError(f"--set {' '.join(items)}: {err}; a profile's fields are {fields} (and readout.<field>, "
                         f"downstream.<field>)") from None
    return out


def _parameters(nb: Path, profile: str, output_dir: str, overrides: dict | None = None) -> dict:
    """The parameters to inject, checked against the notebook's parameters cell."""
    import papermill

    declared = papermill.inspect_notebook(str(nb))
    wanted = {"profile": profile, "output_dir": output_dir, **({"overrides": overrides} if overrides else {})}
    unknown = [k for k in wanted if k not in declared]
    if unknown:
        raise ValueError(f"{nb.name} declares no parameter(s) {unknown} in its 'parameters' cell")
    return wanted


def selected_notebooks(only: list[str] | None) -> list[Path]:
    """The notebooks to run: all, or those whose name contains one of ``only``."""
    return [nb for nb in notebooks() if not only or any(o in nb.name for o in only)]


def _needs_downstream(selected: list[Path]) -> bool:
    """Whether notebook 05 (and so its datasets) is among ``selected``."""
    return any("downstream" in nb.name for nb in selected)


class CannotRunError(RuntimeError):
    """The run's plan found something short (disk, memory, a size): said before anything starts."""


def show_plan(profile: str, only: list[str] | None = None, overrides: dict | None = None) -> int:
    """Print the run's plan and what would stop it, starting nothing; 0 when it can run, 2 when not."""
    cfg = get_profile(profile, **(overrides or {}))
    downstream = _needs_downstream(selected_notebooks(only))
    missing = missing_inputs(cfg, downstream=downstream)
    try:
        plan = make_plan(cfg, downstream)
    except FileNotFoundError:  # the plan counts the images it would read: without them there is nothing to plan
        plan = None
    if plan is not None:
        print("\n".join(plan.lines))
    for m in missing:
        print(f"cannot run, missing: {m}")
    for problem in plan.problems if plan is not None else []:
        print(f"cannot run: {problem}")
    return 2 if missing or plan is None or plan.problems else 0


def run(profile: str, output_dir: str = "", only: list[str] | None = None, timeout: int = 6 * 3600,
        overrides: dict | None = None) -> list[Path]:
    """Execute the notebooks (all, or those whose name contains one of ``only``) for ``profile`` (with its
    fields changed by ``overrides``, as :meth:`Profile.with_overrides` takes them)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    cfg = get_profile(profile, **(overrides or {}))
    selected = selected_notebooks(only)
    downstream = _needs_downstream(selected)
    missing = missing_inputs(cfg, downstream=downstream)
    if missing:
        hint = "" if only else ("\n(notebooks 01-04 need only the probe's data: run them with --only 01 02 03 04; "
                                "notebook 05 needs the downstream datasets)")
        raise FileNotFoundError(f"the {profile} profile cannot run; missing:\n- " + "\n- ".join(missing) + hint)
    plan = make_plan(cfg, downstream)
    print("\n".join(f"[{profile}] {line}" for line in plan.lines), flush=True)
    if plan.problems:
        raise CannotRunError(f"the {profile} profile cannot run as set on this machine (nothing was started):\n- "
                             + "\n- ".join(plan.problems))
    if overrides:
        print(f"[{profile}] profile fields changed for this run: {json.dumps(overrides)}", flush=True)
    dest = paths.executed_dir(profile, output_dir or None)
    dest.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("POSENC_PROGRESS", "lines")  # the kernels inherit it: a line per cell, no bars
    entries_before = cache_entries()
    made_before = notebook_entries(profile)
    warm = [nb for nb in selected if predicted_warm(nb.name, made_before, entries_before)]
    side_by_side = warm if len(warm) == len(selected) and len(selected) > 2 else []
    done, times, peaks, phases, cpu, made, t_all = [], {}, {}, {}, {}, {}, time.perf_counter()

    def finished(nb: Path, result: dict, entries_made: set[str]) -> None:
        times[nb.name], peaks[nb.name] = result["seconds"], result["peak_rss_gb"]
        phases[nb.name], cpu[nb.name] = result["phases"], result["cpu"]
        made[nb.name] = sorted(entries_made)
        print(f"[{profile}] {nb.name} done in {times[nb.name]:.0f} s ({phase_line(phases[nb.name])}; "
              f"{cpu_line(cpu[nb.name])})", flush=True)
        done.append(dest / nb.name)

    def run_here(nb: Path) -> None:
        entries = cache_entries()
        finished(nb, execute_notebook(*jobs[nb]), cache_entries() - entries)

    jobs = {nb: (str(nb), str(dest / nb.name), _parameters(nb, profile, output_dir, overrides), str(nb.parent),
                 timeout, str(dest / f"{nb.stem}.phases.json")) for nb in selected}
    if side_by_side:  # every notebook's results are cached: they only load and draw, two at a time
        first, last = [nb for nb in selected if not nb.name.startswith(LAST)], [nb for nb in selected
                                                                                  if nb.name.startswith(LAST)]
        print(f"[{profile}] every notebook's results are cached: {len(first)} run side by side, "
              f"{WARM_SIDE_BY_SIDE} at a time{', then ' + last[0].name if last else ''}", flush=True)
        before = cache_entries()
        # forked workers start at once (this process has imported everything) and only launch kernels
        with ProcessPoolExecutor(WARM_SIDE_BY_SIDE, mp_context=multiprocessing.get_context("fork")) as pool:
            running = {pool.submit(execute_notebook, *jobs[nb]): nb for nb in first}
            for future in as_completed(running):
                finished(running[future], future.result(), cache_entries() - before)
        for nb in last:
            run_here(nb)
    else:
        for nb in selected:
            print(f"[{profile}] {nb.name} ...", flush=True)
            run_here(nb)
    record_notebook_entries(profile, made)
    done.sort(key=lambda p: (p.name[:2] == LAST, p.name))
    t_pages = time.perf_counter()
    executed = [dest / nb.name for nb in notebooks() if (dest / nb.name).exists()]  # with --only: the others' last run
    index = render(executed, paths.output_dir(profile, output_dir or None), times, CLAIMS)
    print(f"[{profile}] the executed notebooks as pages: {index} ({time.perf_counter() - t_pages:.0f} s)", flush=True)
    if not only:  # a full run: record how long the main job took and its peak memory, for the README
        # the kernels are this process's children: their peak resident memory, as /usr/bin/time -v reports it
        kernels = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6
        run_record = {"notebooks_s": times, "phases_s": phases, "cpu_s": cpu, "peak_rss_gb_so_far": peaks,
                      "total_s": round(command_seconds(), 1), "notebooks_total_s": round(time.perf_counter() - t_all, 1),
                      "peak_rss_gb": round(max(kernels, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6), 2),
                      "cpus": os.cpu_count(), "cpu": devices.cpu_model(), "date": time.strftime("%Y-%m-%d")}
        state = run_state(entries_before, cache_entries())
        out = paths.output_dir(profile, output_dir or None)
        record_times(timing.TIMES.path(out), profile, state, run_record)
        write_manifest(out, cfg, overrides)  # with this run's times
    return done


WARM_SIDE_BY_SIDE = 2  # notebooks run at once when every one of them will only load cached results and draw


def execute_notebook(source: str, executed: str, parameters: dict, cwd: str, timeout: int, phases_file: str) -> dict:
    """Run one notebook with papermill, its kernel a child of this process (the pipeline's, or a worker's when
    notebooks run side by side): its seconds, phases, CPU and the kernel's peak resident memory."""
    import papermill

    Path(phases_file).unlink(missing_ok=True)
    t0, cpu_before = time.perf_counter(), (machine_cpu_seconds(), kernels_cpu_seconds())
    with paths.environ(timing.PHASES_FILE, phases_file):  # the kernel books its phases there (timing.kernel_clock)
        papermill.execute_notebook(source, executed, parameters=parameters, kernel_name="python3", cwd=cwd,
                                   execution_timeout=timeout, progress_bar=False,
                                   kernel_manager_class=ipc_kernel_manager())
    seconds = round(time.perf_counter() - t0, 1)
    return {"seconds": seconds, "phases": notebook_phases(timing.read_phases(phases_file), seconds),
            "cpu": cpu_share(cpu_before, (machine_cpu_seconds(), kernels_cpu_seconds()), seconds),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6, 2)}


def ipc_kernel_manager() -> type:
    """A kernel manager whose kernels talk over local sockets (files under Jupyter's private runtime folder) instead
    of TCP: no port listens, and ipykernel has no cause to warn, in every notebook's log, that its TCP traffic is
    unencrypted. Each kernel's sockets get a name of their own: jupyter_client's default (``kernel-ipc-<n>`` in the
    working folder) is shared by kernels started at once, which then read each other's messages."""
    from jupyter_client import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(transport="ipc", **kwargs)
            runtime = Path(jupyter_runtime_dir())
            runtime.mkdir(parents=True, exist_ok=True)
            self.ip = str(runtime / f"kernel-{uuid.uuid4().hex}-ipc")

    return IPCKernelManager


def _entries_file(profile: str) -> Path:
    return paths.cache_dir() / "runs" / f"{profile}-notebook-entries.json"


def notebook_entries(profile: str) -> dict[str, list[str]]:
    """The cache entries each notebook of ``profile`` made the last time it made any (kept in the cache)."""
    return cache.read_json(_entries_file(profile)) or {}


def record_notebook_entries(profile: str, made: dict[str, list[str]]) -> None:
    """Remember the entries each notebook made in this run (a notebook that made none keeps the record of the run
    that did; one run for the first time is recorded even with none: it needs none)."""
    record = notebook_entries(profile)
    record.update({nb: e for nb, e in made.items() if e or nb not in record})
    cache.write_json(_entries_file(profile), record)


def predicted_warm(notebook: str, made: dict[str, list[str]], present: set[str]) -> bool:
    """Whether ``notebook`` will compute nothing: every entry it made the last time is in the cache (a notebook
    never run, or whose entries were deleted, is not). Notebooks predicted warm run side by side; a wrong guess
    costs time, never a result (the cache's locks make one run compute an entry while the other waits)."""
    return notebook in made and set(made[notebook]) <= present


def notebook_phases(record: dict, wall_s: float) -> dict[str, float]:
    """A notebook's seconds per phase (largest first), and ``other``: its wall time outside every named phase
    (the kernel's start, imports, tables, figures, bootstraps)."""
    out = {k: round(v, 1) for k, v in record.get("phases_s", {}).items()}
    out["other"] = round(wall_s - sum(record.get("phases_s", {}).values()), 1)
    return out


def phase_line(phases: dict[str, float], top: int = 4) -> str:
    """The largest phases of a notebook, for its 'done' line."""
    named = [f"{k} {v:.0f} s" for k, v in list(phases.items())[:top] if k != "other"]
    return ", ".join(named + [f"other {phases.get('other', 0):.0f} s"])


_IMPORTED = time.perf_counter()


def command_seconds() -> float:
    """Seconds since this process started (Linux: from /proc, so Python's start and the imports count, as a user's
    stopwatch would), else since this module was imported."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


def machine_cpu_seconds() -> float | None:
    """CPU seconds every process of the machine has used since boot (Linux /proc/stat: user, nice, system, irq,
    softirq and steal, which another virtual machine took), or None where there is no /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def kernels_cpu_seconds() -> float:
    """CPU seconds of the notebook kernels that have ended (this process's children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_share(before: tuple, after: tuple, wall_s: float) -> dict[str, float]:
    """A notebook's CPU: its kernel's seconds, the seconds every other process took meanwhile (another job on
    the same cores slows a run down most where its steps are small: notebook 05's networks), and the cores the
    kernel kept busy on average."""
    kernel = round(after[1] - before[1], 1)
    out = {"kernel_cpu_s": kernel, "cores_busy": round(kernel / wall_s, 2) if wall_s else 0.0}
    if before[0] is not None and after[0] is not None:
        out["others_cpu_s"] = round(max(0.0, after[0] - before[0] - kernel), 1)
    return out


def cpu_line(cpu: dict[str, float]) -> str:
    others = f", other processes {cpu['others_cpu_s']:.0f} CPU s" if "others_cpu_s" in cpu else ""
    return f"{cpu['cores_busy']:.1f} cores busy{others}"


def cache_entries() -> set[str]:
    """The cache's entries (image sets, feature arrays, readouts, evaluations), by their sidecar names."""
    root = paths.cache_dir()
    return {f"{sub}/{p.name}" for sub in ("images", "features", "readouts", "evaluations", "downstream")
            for p in (root / sub).glob("*.json")}


def run_state(before: set[str], after: set[str]) -> str:
    """"cold": the run started from an empty cache; "warm": it computed nothing new (every entry
    was cached); "partial": anything between (not a number the README reports)."""
    if not before:
        return "cold"
    return "warm" if after <= before else "partial"


def record_times(path: Path, profile: str, cache_state: str, run_record: dict) -> dict:
    """Keep the latest run of each kind (see :func:`run_state`) in ``path``."""
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        record = {}
    if "cold" not in record and "total_s" in record:  # the earlier single-run layout was a cold run
        record = {"cold": {k: v for k, v in record.items() if k != "profile"}}
    record = {"profile": profile, **{k: v for k, v in record.items() if k in ("cold", "warm", "partial")}, cache_state: run_record}
    path.write_text(json.dumps(record, indent=1))
    return record


def prepare(profile: str, dest: Path) -> list[Path]:
    """Write unexecuted copies of every notebook with ``profile`` injected (for nbval)."""
    import papermill

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for nb in notebooks():
        papermill.execute_notebook(str(nb), str(dest / nb.name), parameters=_parameters(nb, profile, ""),
                                   prepare_only=True, kernel_name="python3")
        out.append(dest / nb.name)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m posenc_utils.pipeline", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute every notebook for a profile")
    r.add_argument("--profile", default="offline", choices=PROFILES)
    r.add_argument("--output-dir", default="", help="root for tables and figures (default: figures/)")
    r.add_argument("--only", nargs="*", help="run only notebooks whose name contains one of these")
    r.add_argument("--set", action="append", metavar="FIELD=VALUE", dest="overrides",
                   help="change a profile field for this run, e.g. image_size=64 or readout.epochs=2 (repeatable)")
    pl = sub.add_parser("plan", help="print a run's plan (images, features and where they live, disk, memory, "
                                     "rough time) and what would stop it, starting nothing")
    pl.add_argument("--profile", default="offline", choices=PROFILES)
    pl.add_argument("--only", nargs="*", help="plan only notebooks whose name contains one of these")
    pl.add_argument("--set", action="append", metavar="FIELD=VALUE", dest="overrides")
    p = sub.add_parser("prepare", help="write parameterized copies for nbval")
    p.add_argument("--profile", default="quick", choices=PROFILES)
    p.add_argument("--dest", type=Path, default=paths.BUILD_DIR / "nbval")
    args = ap.parse_args(argv)
    if args.cmd in ("run", "plan"):
        try:
            overrides = parse_overrides(args.overrides)
        except ValueError as err:
            print(err, file=sys.stderr)
            return 2
        if args.cmd == "plan":
            return show_plan(args.profile, args.only, overrides)
        try:
            run(args.profile, args.output_dir, args.only, overrides=overrides)
        except (FileNotFoundError, CannotRunError) as err:
            print(err, file=sys.stderr)
            return 2
        print(f"all notebooks done in {command_seconds():.0f} s (since the command started)")
    else:
        for path in prepare(args.profile, args.dest):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
