"""The run's record beside its products (:data:`MANIFEST`): what produced them (commit, versions, profile and the
fields a run changed, seeds, notebook times, machine) and which files they are. Written by the runner after every
run (:mod:`posenc_utils.runners.pipeline`), read by notebook 06's summary and the HTML study."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from ..primitives import devices, paths
from ..primitives.products import RESULTS, declare
from ..models.profiles import Profile
from ..primitives.timing import TIMES

PACKAGES = ("torch", "torchvision", "numpy", "pandas", "scipy", "matplotlib", "seaborn", "papermill", "nbval",
            "scikit-image", "posenc")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=paths.PROJ_ROOT, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def manifest(out: Path, profile: Profile, overrides: dict | None = None) -> dict:
    """What produced the results in ``out``: commit, versions, profile (and any fields a run changed in it),
    seeds, notebook times, machine."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    times = {}
    timing = TIMES.path(out)
    if timing.exists():
        times = {k: v.get("notebooks_s") for k, v in json.loads(timing.read_text()).items() if isinstance(v, dict)}
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)
    except (ValueError, OSError, AttributeError):
        mem_gb = None
    return {
        "profile": profile.name, "description": profile.description, **({"overrides": overrides} if overrides else {}),
        "seeds": list(profile.seed_values),
        "git_commit": _git("rev-parse", "HEAD"), "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".",
                                                      f":(exclude)figures/*/{MANIFEST.file()}")),
        "python": sys.version.split()[0], "packages": versions, "notebook_times_s": times,
        "machine": {"platform": platform.platform(), "cpu": devices.cpu_model(), "cpus": os.cpu_count(),
                    "memory_gb": mem_gb},
        "results": sorted(p.name for p in Path(out).iterdir() if p.suffix in (".csv", ".md", ".json"))
        + sorted(f"{RESULTS}/{p.name}" for p in (Path(out) / RESULTS).glob("*")),
    }


def write_manifest(out: Path, profile: Profile, overrides: dict | None = None) -> Path:
    """Write :func:`manifest` to ``out`` as :data:`MANIFEST`."""
    path = MANIFEST.path(out)
    data = manifest(out, profile, overrides)
    data["results"] = [r for r in data["results"] if r != path.name]
    path.write_text(json.dumps(data, indent=1))
    return path


MANIFEST = declare("manifest", "06", "json", made_by=write_manifest)
