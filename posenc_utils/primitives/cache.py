"""On-disk cache primitives: content keys, atomic writes, checksums and a free-space check.

A cache entry is a data file plus a JSON sidecar written *after* it, both via a temporary
file and ``os.replace``. An entry counts only when its sidecar exists and agrees with the
data, so a run killed mid-write leaves at most a stray temporary file, never a half entry.
The sidecar also holds a checksum of the data file (xxh3-128, read in chunks at memory
speed), verified whenever the file is not provably the one it was computed from: a file damaged in
place (same size, valid header, other bytes) is reported by name and recomputed, never used. What
proves it is the file's stamp (size, mtime, ctime, inode: every change of its bytes gives it
another), recorded beside the entry when its checksum last held (``.<name>.verified``), so a process
that reads an unchanged entry (a warm rerun) hashes nothing.

Several runs (processes, or machines on one shared file system) may share a cache: an entry
is computed while holding its lock (:func:`entry_lock`, an advisory ``flock`` on a file
beside it), so one run computes it while the others wait and then read it. A temporary file
is removed only by the run that made it, or by the next holder of the lock, when the run
that made it has provably died (a lock dies with its process).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import xxhash

from . import timing


def make_key(spec: dict[str, Any]) -> str:
    """A short stable hash of everything that determines a result."""
    blob = json.dumps(spec, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def key_fields(spec) -> dict[str, Any]:
    """A dataclass's fields for a cache key: those without a default, and those set to another
    value than their default. A field added later with a default therefore changes no key, and
    no cache entry made before it is lost."""
    out = {}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if default is dataclasses.MISSING or value != default:
            out[f.name] = value
    return out


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


def _temporaries(data_path: Path) -> list[Path]:
    """The temporary files :func:`atomic_path` (and a trim in :func:`write_array_entry`) make for ``data_path``."""
    data_path = Path(data_path)
    return sorted(data_path.parent.glob(f".{data_path.name}.*.tmp*"))


@contextlib.contextmanager
def entry_lock(data_path: Path) -> Iterator[None]:
    """Hold the lock of the cache entry ``data_path`` (an exclusive ``flock`` on ``.<name>.lock`` beside it).

    Every writer of an entry holds its lock, so once this run holds it, any temporary file of that
    entry belongs to a run that died while writing it: those are removed here. The kernel releases
    the lock when its holder exits, killed or not, so a dead run never blocks the others.
    """
    data_path = Path(data_path)
    data_path.parent.mkdir(parents=True, exist_ok=True)
    with open(data_path.with_name(f".{data_path.name}.lock"), "a") as f:
        with timing.phase("lock_wait"):  # another run computing this entry (or nothing: an uncontended lock)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            for stale in _temporaries(data_path):
                stale.unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def computed_once(data_path: Path, lookup: Callable[[], Any], compute: Callable[[], Any]) -> Any:
    """``lookup()`` when the entry is cached; otherwise, holding its lock, ``lookup()`` again (another run
    may have written it while this one waited) and ``compute()`` only if it is still missing.

    ``lookup`` returns None on a miss; ``compute`` writes the entry and returns what ``lookup`` would.
    """
    found = lookup()
    if found is not None:
        return found
    with entry_lock(data_path):
        found = lookup()
        if found is not None:
            return found
        made = compute()
    said_rebuilt(data_path)
    return made


# Entries this process found damaged and has not yet rebuilt (their data paths).
_DAMAGED: set[str] = set()


def say(line: str) -> None:
    """One line on the process's own standard error: in a notebook kernel that is the pipeline's log (a cell's
    output, where a warning goes, stays in the executed notebook)."""
    stream = sys.__stderr__ or sys.stderr
    print(f"[cache] {line}", file=stream, flush=True)


def said_rebuilt(data_path: Path) -> None:
    """Say that an entry found damaged has been written again (nothing when it was not damaged)."""
    if str(data_path) in _DAMAGED:
        _DAMAGED.discard(str(data_path))
        say(f"{data_path} rebuilt")


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


CHUNK_BYTES = 16 * 2**20  # read size for checksums and copies: large enough for full speed, small in RAM

# The checksum of each entry this process hashed or wrote, with the file's stamp at that moment:
# path -> (size, mtime_ns, ctime_ns, inode, checksum). A memo that no content of it can make wrong,
# so no test has to clear it (one may, to count the hashes a new process would make): a hit needs
# the file to have the very stamp it had when hashed, and every change of a file's bytes gives it
# another. A write moves mtime and ctime; setting mtime back (os.utime) moves ctime, which no
# ordinary call sets; os.replace brings another inode. The one gap would be a rewrite within the same
# timestamp tick as the stat that took the stamp, which Linux (6.13 on, ext4/xfs/btrfs/tmpfs)
# closes: once a stat has read a ctime, the next change gets a finer, later one.
_VERIFIED: dict[str, tuple[int, int, int, int, str]] = {}


def file_checksum(path: Path) -> str:
    """xxh3-128 of a file's bytes, read in chunks (never the whole file in memory)."""
    h = xxhash.xxh3_128()
    buf = bytearray(CHUNK_BYTES)
    view = memoryview(buf)
    with timing.phase("checksum"), open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def file_stamp(path: Path) -> tuple[int, int, int, int]:
    """What changes whenever a file's bytes do (see ``_VERIFIED``): size, modification and change times, inode."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def _verified_path(data_path: Path) -> Path:
    return Path(data_path).with_name(f".{Path(data_path).name}.verified")


def _record_verified(data_path: Path, checksum: str) -> None:
    """Remember, for every process, that ``data_path`` had ``checksum`` at its current stamp. Best effort: a
    failed or racing write only costs a later hash (a stamp that no longer matches proves nothing)."""
    stamp = file_stamp(data_path)
    _VERIFIED[str(data_path)] = (*stamp, checksum)
    try:
        write_json(_verified_path(data_path), {"stamp": list(stamp), "checksum": checksum})
    except OSError:
        pass


def _known_checksum(data_path: Path, stamp: tuple[int, int, int, int]) -> str | None:
    """The checksum ``data_path`` is known to have at ``stamp`` (this process's memo, or the stamp file
    beside it), or None."""
    seen = _VERIFIED.get(str(data_path))
    if seen is not None and seen[:4] == stamp:
        return seen[4]
    rec = read_json(_verified_path(data_path))
    if rec is not None and tuple(rec.get("stamp") or ()) == stamp and isinstance(rec.get("checksum"), str):
        _VERIFIED[str(data_path)] = (*stamp, rec["checksum"])
        return rec["checksum"]
    return None


def current_checksum(path: Path) -> str:
    """The checksum of ``path`` as it is now: from the memo while the file has the stamp it was hashed
    at (see ``_VERIFIED``), else hashed again and remembered."""
    stamp = file_stamp(path)
    known = _known_checksum(path, stamp)
    if known is not None:
        return known
    checksum = file_checksum(path)
    _VERIFIED[str(path)] = (*stamp, checksum)
    return checksum


def verify_file(data_path: Path, meta_path: Path, meta: dict[str, Any]) -> bool:
    """Whether ``data_path`` still has the checksum its sidecar recorded: hashed only when the file's stamp is
    not one at which that checksum is known to hold (a new or changed file; then the stamp is recorded).

    A legacy sidecar without a checksum gets one now (trust on first use). On a mismatch the
    warning names the entry, so the caller can recompute it.
    """
    data_path = Path(data_path)
    recorded = meta.get("checksum")
    stamp = file_stamp(data_path)
    if recorded is not None and _known_checksum(data_path, stamp) == recorded:
        return True
    actual = file_checksum(data_path)
    if actual == recorded or recorded is None:
        _record_verified(data_path, actual)
    if recorded is None:
        write_json(meta_path, {**meta, "checksum": actual})
    elif actual != recorded:
        message = (f"cache entry {data_path} is damaged (its content no longer matches the checksum recorded when "
                   f"it was written); it is recomputed")
        warnings.warn(message, stacklevel=3)
        say(message)
        _DAMAGED.add(str(data_path))
        _VERIFIED.pop(str(data_path), None)
        return False
    return True


def read_file_entry(data_path: Path, meta_path: Path, key: str) -> dict[str, Any] | None:
    """The sidecar of a cached file entry when it is for ``key`` and the file still has its checksum; else None."""
    meta = read_json(meta_path)
    if meta is not None and meta.get("key") == key and Path(data_path).exists() and verify_file(data_path, meta_path, meta):
        return meta
    return None


def write_file_entry(data_path: Path, meta_path: Path, meta: dict[str, Any], write: Callable[[Path], None]) -> None:
    """Write a file entry atomically by ``write(temporary path)``, then its sidecar: ``meta`` and the file's checksum.
    Call it holding the entry's lock (:func:`computed_once`)."""
    with atomic_path(data_path) as tmp:
        write(tmp)
        checksum = file_checksum(tmp)
    _record_verified(data_path, checksum)
    write_json(meta_path, {**meta, "checksum": checksum})
    said_rebuilt(data_path)


def open_array_entry(data_path: Path, meta_path: Path, expect: dict[str, Any]) -> np.ndarray | None:
    """Memory-map a cached array when its sidecar matches ``expect`` and its checksum holds;
    None on any mismatch (missing, truncated, damaged or stale entries are all misses)."""
    meta = read_json(meta_path)
    if meta is None or any(meta.get(k) != v for k, v in expect.items()) or not Path(data_path).exists():
        return None
    try:
        arr = np.load(data_path, mmap_mode="r")
    except (ValueError, OSError):
        return None
    if list(arr.shape) != meta.get("shape") or not verify_file(data_path, meta_path, meta):
        return None
    return arr


class RowWriter:
    """Write access to a new ``.npy`` file by rows, with positioned writes instead of a memory map.

    ``out[i] = row`` and ``out[a:b] = rows`` write straight to the file: unlike a writable
    memory map, written pages never count toward the process's resident memory.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: str):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape})
            self.offset = f.tell()
            f.truncate(self.offset + self.shape[0] * self.row_bytes)
        self._fd = os.open(path, os.O_WRONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __setitem__(self, key, value) -> None:
        if isinstance(key, (int, np.integer)):
            start, stop, step = int(key), int(key) + 1, 1
        else:  # explicit bounds: slice.indices would silently clip a slice that runs past the end
            start, stop, step = key.start or 0, self.shape[0] if key.stop is None else key.stop, key.step or 1
        if step != 1 or not 0 <= start < stop <= self.shape[0]:
            raise IndexError(f"rows {key} of an array of {self.shape[0]} rows: write contiguous rows in range")
        rows = np.ascontiguousarray(np.broadcast_to(np.asarray(value, self.dtype), (stop - start,) + self.shape[1:]))
        self.write_bytes(self.offset + start * self.row_bytes, memoryview(rows).cast("B"))

    def write_bytes(self, pos: int, data) -> None:
        data = memoryview(data)
        while data:
            n = os.pwrite(self._fd, data, pos)
            data, pos = data[n:], pos + n

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None


def npy_layout(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, byte offset of the data) of a C-ordered ``.npy`` file, from its header alone."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        if fortran:
            raise ValueError(f"{path} is stored in Fortran order; the cache writes C order only")
        return tuple(shape), np.dtype(dtype), f.tell()


def _copy_rows(src: Path, dst: Path, shape: tuple[int, ...], dtype: str, rows: int) -> None:
    """Write the first ``rows`` rows of the ``.npy`` file ``src`` to a new ``.npy`` file ``dst``, in chunks."""
    writer = RowWriter(dst, (rows,) + tuple(shape[1:]), dtype)
    try:
        remaining = rows * writer.row_bytes
        with open(src, "rb") as f:
            f.seek(npy_layout(src)[2])
            pos = writer.offset
            while remaining:
                chunk = f.read(min(CHUNK_BYTES, remaining))
                writer.write_bytes(pos, chunk)
                pos, remaining = pos + len(chunk), remaining - len(chunk)
    finally:
        writer.close()


def write_array_entry(data_path: Path, meta_path: Path, shape: tuple[int, ...], dtype: str,
                      meta: dict[str, Any], fill) -> np.ndarray:
    """Create an array entry of ``shape`` by calling ``fill(writer)`` (a :class:`RowWriter`),
    atomically, then its sidecar with the file's checksum.

    ``fill`` may return a smaller count ``k`` to keep only the first ``k`` rows (for image
    folders with unreadable files). Returns the finished array, memory-mapped read-only.
    """
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    ensure_free_space(Path(data_path).parent, nbytes, f"cache entry {Path(data_path).name}")
    meta_path.unlink(missing_ok=True)  # the entry is invalid until the new sidecar lands
    with atomic_path(data_path) as tmp:
        writer = RowWriter(tmp, shape, dtype)
        try:
            kept = fill(writer)
        finally:
            writer.close()
        if kept is not None and kept != shape[0]:
            trimmed = tmp.with_name(tmp.name + ".trim.npy")
            try:
                _copy_rows(tmp, trimmed, shape, dtype, kept)
                os.replace(trimmed, tmp)
            finally:
                trimmed.unlink(missing_ok=True)
            shape = (kept,) + tuple(shape[1:])
        checksum = file_checksum(tmp)
    _record_verified(data_path, checksum)
    write_json(meta_path, {**meta, "shape": list(shape), "dtype": dtype, "checksum": checksum})
    return np.load(data_path, mmap_mode="r")
