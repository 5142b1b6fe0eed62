"""Shared fixtures: every test runs against its own empty cache, data root and torch home.

No test may read or write the study's real cache (data/cache), the real datasets
(data/raw) or the user's torch hub folder, and no test may try to download anything.
"""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Point every writable/readable location of the study at per-test temporary folders."""
    monkeypatch.setenv("POSENC_CACHE_DIR", str(tmp_path / "posenc-cache"))
    monkeypatch.setenv("POSENC_DATA_ROOT", str(tmp_path / "posenc-raw"))  # empty: no datasets
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # empty: no pretrained files
    monkeypatch.setenv("POSENC_OFFLINE", "1")  # never try a download from a test
    monkeypatch.setenv("CI", "1")  # no progress bars
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return tmp_path



def _return_memory() -> None:
    """Release the networks the package keeps for reuse and give freed heap back to the system (glibc keeps it
    otherwise), so the suite's peak resident memory is the largest test's, not the sum of a module's."""
    import ctypes
    import gc

    from posenc_utils.engine import features

    features.release_networks()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


@pytest.fixture(autouse=True)
def released_networks():
    """After each test: :func:`_return_memory` (the test suite peaked at 5 GB without it)."""
    yield
    _return_memory()
