"""Every path the study uses, in one place.

Notebooks and modules never build a path by hand: they ask this module. Two environment
variables move the writable folders (useful for tests and benchmarks):
``POSENC_CACHE_DIR`` (computed image sets, features, readouts) and ``POSENC_DATA_ROOT``
(where the paper profile looks for DUTS-TR and PASCAL-S).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

PROJ_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = PROJ_ROOT / "data"
REFERENCE_DIR = DATA_DIR / "reference"  # committed facts: the paper's published numbers
FIGURES_DIR = PROJ_ROOT / "figures"  # the study's products: tables and figures, per profile
NOTEBOOKS_DIR = PROJ_ROOT / "notebooks"
BUILD_DIR = PROJ_ROOT / "build"  # executed notebooks (never written over the sources)

PAPER_TABLES_CSV = REFERENCE_DIR / "paper_tables.csv"
PAPER_TABLE5_CSV = REFERENCE_DIR / "paper_table5.csv"


def cache_dir() -> Path:
    """Root of the on-disk cache (image sets, encoder features, trained readouts)."""
    return Path(os.environ.get("POSENC_CACHE_DIR", DATA_DIR / "cache"))


def raw_data_root() -> Path:
    """Where the paper profile expects the downloaded datasets (DUTS-TR, PASCAL-S)."""
    return Path(os.environ.get("POSENC_DATA_ROOT", DATA_DIR / "raw"))


def executed_dir(profile: str, root: str | os.PathLike | None = None) -> Path:
    """Folder for one profile's executed notebooks: ``build/<profile>``, or ``<root>/build/<profile>`` for a run
    whose outputs go to ``root`` (two runs into two folders never write over each other's notebooks)."""
    return (Path(root) / "build" if root else BUILD_DIR) / profile


def output_dir(profile: str, root: str | os.PathLike | None = None) -> Path:
    """Folder for one profile's tables and figures (``figures/<profile>`` unless ``root`` is given)."""
    base = Path(root) if root else FIGURES_DIR
    out = base / profile
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextlib.contextmanager
def environ(name: str, value: str | os.PathLike | None) -> Iterator[None]:
    """Set the environment variable ``name`` to ``value`` for the block (a process started inside inherits
    it), then put back what it was; ``value`` None leaves it as it is."""
    if value is None:
        yield
        return
    before = os.environ.get(name)
    os.environ[name] = str(value)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before
