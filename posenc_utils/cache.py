"""On-disk cache primitives: content keys, atomic writes, and a free-space check.

A cache entry is a data file plus a JSON sidecar written *after* it, both via a temporary
file and ``os.replace``. An entry counts only when its sidecar exists and agrees with the
data, so a run killed mid-write leaves at most a stray temporary file, never a half entry.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def make_key(spec: dict[str, Any]) -> str:
    """A short stable hash of everything that determines a result."""
    blob = json.dumps(spec, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; move it into place only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o644)  # mkstemp makes files private; cache entries are ordinary files
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str))


def read_json(path: Path) -> dict | None:
    """Read a JSON object, or None when the file is missing, unreadable or not an object
    (a broken sidecar is a cache miss, never a crash)."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def ensure_free_space(folder: Path, nbytes: int, what: str) -> None:
    """Fail before writing when ``folder`` lacks room for ``nbytes`` (plus 5% margin)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < nbytes * 1.05:
        raise OSError(
            f"not enough disk space for {what}: needs {nbytes / 1e9:.2f} GB in {folder}, "
            f"{free / 1e9:.2f} GB free. Free space there or set POSENC_CACHE_DIR to a larger disk."
        )


def open_array_entry(data_path: Path, meta_path: Path, expect: dict[str, Any]) -> np.ndarray | None:
    """Memory-map a cached array when its sidecar matches ``expect``; None on any mismatch."""
    meta = read_json(meta_path)
    if meta is None or any(meta.get(k) != v for k, v in expect.items()) or not Path(data_path).exists():
        return None
    try:
        arr = np.load(data_path, mmap_mode="r")
    except (ValueError, OSError):
        return None
    return arr if list(arr.shape) == meta.get("shape") else None


def write_array_entry(data_path: Path, meta_path: Path, shape: tuple[int, ...], dtype: str,
                      meta: dict[str, Any], fill) -> np.ndarray:
    """Create an array entry of ``shape`` by calling ``fill(memmap)``, atomically, then its sidecar.

    ``fill`` may return a smaller count ``k`` to keep only the first ``k`` rows (for image
    folders with unreadable files). Returns the finished array, memory-mapped read-only.
    """
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    ensure_free_space(Path(data_path).parent, nbytes, f"cache entry {Path(data_path).name}")
    meta_path.unlink(missing_ok=True)  # the entry is invalid until the new sidecar lands
    for stale in Path(data_path).parent.glob(f".{Path(data_path).name}.*.tmp"):
        stale.unlink(missing_ok=True)  # left by a run killed while writing this same entry
    with atomic_path(data_path) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        kept = fill(arr)
        arr.flush()
        del arr
        if kept is not None and kept != shape[0]:
            trimmed = tmp.with_name(tmp.name + ".trim.npy")
            try:
                full = np.load(tmp, mmap_mode="r")
                np.save(trimmed, full[:kept])
                del full
                os.replace(trimmed, tmp)
            finally:
                trimmed.unlink(missing_ok=True)
            shape = (kept,) + tuple(shape[1:])
    write_json(meta_path, {**meta, "shape": list(shape), "dtype": dtype})
    return np.load(data_path, mmap_mode="r")
