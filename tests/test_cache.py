"""Cache keys, atomic array entries, failure safety, trimming and the free-space check."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from posenc_utils.primitives import cache, paths


def leftovers(folder):
    return [n for n in os.listdir(folder) if ".tmp" in n or n.endswith(".trim.npy")]


def fill_with(values):
    def fill(out):
        out[:] = values

    return fill


def test_make_key_stable_and_sensitive():
    spec = {"a": 1, "b": [1, 2], "c": {"x": "y"}}
    k = cache.make_key(spec)
    assert isinstance(k, str) and len(k) == 16
    assert k == cache.make_key({"c": {"x": "y"}, "b": [1, 2], "a": 1})  # key order does not matter
    assert set(k) <= set("0123456789abcdef")
    assert k != cache.make_key({**spec, "a": 2})
    assert k != cache.make_key({**spec, "b": [2, 1]})
    assert k != cache.make_key({**spec, "d": None})
    assert cache.make_key({"p": paths.DATA_DIR}) == cache.make_key({"p": str(paths.DATA_DIR)})


def test_make_key_is_stable_across_processes():
    # a fixed input has a fixed key (sha256 of sorted JSON), not a per-process hash
    import hashlib

    spec = {"size": 32, "name": "x"}
    blob = json.dumps(spec, sort_keys=True).encode()
    assert cache.make_key(spec) == hashlib.sha256(blob).hexdigest()[:16]


def test_round_trip(tmp_path):
    data, meta = tmp_path / "e.npy", tmp_path / "e.json"
    values = np.arange(24, dtype=np.float32).reshape(4, 6)
    arr = cache.write_array_entry(data, meta, (4, 6), "float32", {"key": "k1", "note": "x"}, fill_with(values))
    assert np.array_equal(arr, values)
    got = cache.open_array_entry(data, meta, {"key": "k1"})
    assert got is not None and np.array_equal(got, values)
    assert isinstance(got, np.memmap)
    side = json.loads(meta.read_text())
    assert side["shape"] == [4, 6] and side["dtype"] == "float32" and side["note"] == "x"
    assert cache.open_array_entry(data, meta, {"key": "other"}) is None
    assert leftovers(tmp_path) == []


def test_failing_fill_leaves_no_entry(tmp_path):
    good_data, good_meta = tmp_path / "good.npy", tmp_path / "good.json"
    cache.write_array_entry(good_data, good_meta, (2, 3), "uint8", {"key": "g"}, fill_with(7))
    good_bytes = good_data.read_bytes()

    data, meta = tmp_path / "bad.npy", tmp_path / "bad.json"

    def fill(out):
        out[0] = 1
        raise RuntimeError("killed midway")

    with pytest.raises(RuntimeError, match="killed midway"):
        cache.write_array_entry(data, meta, (5, 3), "uint8", {"key": "b"}, fill)
    assert cache.open_array_entry(data, meta, {"key": "b"}) is None
    assert not data.exists() and not meta.exists()
    assert leftovers(tmp_path) == []
    # the earlier entry at another key is untouched
    assert good_data.read_bytes() == good_bytes
    assert np.array_equal(cache.open_array_entry(good_data, good_meta, {"key": "g"}), np.full((2, 3), 7))


def test_rewrite_failure_invalidates_old_entry_at_same_key(tmp_path):
    data, meta = tmp_path / "e.npy", tmp_path / "e.json"
    cache.write_array_entry(data, meta, (2,), "float32", {"key": "k"}, fill_with(1.0))

    def fill(out):
        raise KeyboardInterrupt  # even a Ctrl-C must not leave a half entry

    with pytest.raises(KeyboardInterrupt):
        cache.write_array_entry(data, meta, (2,), "float32", {"key": "k"}, fill)
    assert cache.open_array_entry(data, meta, {"key": "k"}) is None
    assert leftovers(tmp_path) == []


def test_stale_temp_files_of_the_same_entry_are_cleaned(tmp_path):
    data, meta = tmp_path / "e.npy", tmp_path / "e.json"
    stale = tmp_path / ".e.npy.abc123.tmp"  # what a run killed while writing e.npy leaves behind
    stale.write_bytes(b"half written")
    trim = tmp_path / ".e.npy.abc123.tmp.trim.npy"
    trim.write_bytes(b"half trimmed")
    other = tmp_path / ".f.npy.xyz789.tmp"  # another entry's temp file (perhaps being written now)
    other.write_bytes(b"someone else's")
    cache.computed_once(data, lambda: cache.open_array_entry(data, meta, {"key": "k"}),
                        lambda: cache.write_array_entry(data, meta, (2,), "float32", {"key": "k"}, fill_with(3.0)))
    assert not stale.exists() and not trim.exists()
    assert other.exists(), "only the stale files of the entry being written are removed"
    assert np.array_equal(cache.open_array_entry(data, meta, {"key": "k"}), [3.0, 3.0])


HOLDER = """
import sys, time
from pathlib import Path
from posenc_utils.primitives import cache
data = Path(sys.argv[1])
with cache.entry_lock(data):
    (data.parent / f".{data.name}.mine.tmp").write_bytes(b"being written")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_live_runs_temp_file_is_left_alone_and_a_dead_runs_is_removed(tmp_path):
    import subprocess
    import sys
    import threading

    data = tmp_path / "e.npy"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(data), "60"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        tmp = tmp_path / ".e.npy.mine.tmp"
        got = threading.Event()

        def wait_for_lock():
            with cache.entry_lock(data):
                got.set()

        waiter = threading.Thread(target=wait_for_lock, daemon=True)
        waiter.start()
        assert not got.wait(1.0), "the lock of an entry being written is not handed to a second run"
        assert tmp.exists(), "a temporary file is not removed while the run writing it lives"
        holder.kill()  # SIGKILL: the kernel drops its lock, its temporary file stays behind
        holder.wait()
        assert got.wait(30), "a killed run's lock is released"
        waiter.join()
        assert not tmp.exists(), "the next holder of the lock removes what the dead run left"
    finally:
        holder.kill()


COMPUTER = """
import sys, time
import numpy as np
from pathlib import Path
from posenc_utils.primitives import cache
data, meta, log = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
def compute():
    with open(log, "a") as f:
        f.write("computed\\n")
    time.sleep(1.0)  # long enough for the other run to find the entry missing and wait
    return cache.write_array_entry(data, meta, (3,), "float32", {"key": "k"}, lambda out: out.__setitem__(slice(0, 3), 7.0))
arr = cache.computed_once(data, lambda: cache.open_array_entry(data, meta, {"key": "k"}), compute)
print(list(map(float, arr)))
"""


def test_two_runs_on_one_entry_compute_it_once(tmp_path):
    import subprocess
    import sys

    data, meta, log = tmp_path / "e.npy", tmp_path / "e.json", tmp_path / "log"
    runs = [subprocess.Popen([sys.executable, "-c", COMPUTER, str(data), str(meta), str(log)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [r.communicate(timeout=120) for r in runs]
    assert all(r.returncode == 0 for r in runs), [o[1] for o in outs]
    assert [o[0].strip() for o in outs] == ["[7.0, 7.0, 7.0]"] * 3
    assert log.read_text().splitlines() == ["computed"], "one run computes the entry, the others wait and read it"
    assert leftovers(tmp_path) == []


def test_missing_or_broken_sidecar_is_a_miss(tmp_path):
    data, meta = tmp_path / "e.npy", tmp_path / "e.json"
    cache.write_array_entry(data, meta, (3, 2), "float32", {"key": "k"}, fill_with(2.0))
    assert cache.open_array_entry(data, meta, {"key": "k"}) is not None
    meta.write_text('{"key": "k", "shape": [3,')  # truncated JSON
    assert cache.open_array_entry(data, meta, {"key": "k"}) is None
    meta.write_bytes(b"\x00" * 64)  # zero-filled after a crash
    assert cache.open_array_entry(data, meta, {"key": "k"}) is None
    meta.write_text(json.dumps({"key": "k", "shape": [4, 2], "dtype": "float32"}))  # wrong shape
    assert cache.open_array_entry(data, meta, {"key": "k"}) is None
    meta.unlink()
    assert cache.open_array_entry(data, meta, {"key": "k"}) is None


def test_missing_or_truncated_data_is_a_miss(tmp_path):
    data, meta = tmp_path / "e.npy", tmp_path / "e.json"
    cache.write_array_entry(data, meta, (64, 64), "float32", {"key": "k"}, fill_with(2.0))
    raw = data.read_bytes()
    data.write_bytes(raw[: len(raw) // 2])
    assert cache.open_array_entry(data, meta, {"key": "k"}) is None
    data.write_bytes(b"garbage")
    assert cache.open_array_entry(data, meta, {"key": "k"}) is None
    data.unlink()
    assert cache.open_array_entry(data, meta, {"key": "k"}) is None


def test_binary_junk_sidecar_is_a_miss(tmp_path):
    data, meta = tmp_path / "e.npy", tmp_path / "e.json"
    cache.write_array_entry(data, meta, (3,), "float32", {"key": "k"}, fill_with(1.0))
    meta.write_bytes(b"\xff\xfe\x89PNG junk \xc3\x28")
    assert cache.open_array_entry(data, meta, {"key": "k"}) is None


def test_non_object_json_sidecar_is_a_miss(tmp_path):
    data, meta = tmp_path / "e.npy", tmp_path / "e.json"
    cache.write_array_entry(data, meta, (3,), "float32", {"key": "k"}, fill_with(1.0))
    meta.write_text("[1, 2, 3]")
    assert cache.open_array_entry(data, meta, {"key": "k"}) is None


def test_read_json(tmp_path):
    assert cache.read_json(tmp_path / "absent.json") is None
    cache.write_json(tmp_path / "a" / "x.json", {"b": 1, "a": [1, 2]})
    assert cache.read_json(tmp_path / "a" / "x.json") == {"a": [1, 2], "b": 1}
    assert leftovers(tmp_path / "a") == []


def test_trim_when_fill_returns_fewer(tmp_path):
    data, meta = tmp_path / "e.npy", tmp_path / "e.json"

    def fill(out):
        out[:] = np.arange(5)[:, None]
        return 3

    arr = cache.write_array_entry(data, meta, (5, 2), "int16", {"key": "k"}, fill)
    assert arr.shape == (3, 2)
    assert np.array_equal(arr, np.arange(3)[:, None].repeat(2, 1))
    assert json.loads(meta.read_text())["shape"] == [3, 2]
    assert cache.open_array_entry(data, meta, {"key": "k"}).shape == (3, 2)
    assert np.load(data).shape == (3, 2)  # the file itself was trimmed
    assert leftovers(tmp_path) == []


def test_fill_returning_full_count_keeps_shape(tmp_path):
    data, meta = tmp_path / "e.npy", tmp_path / "e.json"
    arr = cache.write_array_entry(data, meta, (4,), "float32", {"key": "k"}, lambda out: 4)
    assert arr.shape == (4,)


def test_ensure_free_space(tmp_path):
    cache.ensure_free_space(tmp_path / "sub", 1000, "a small thing")  # plenty of room; creates the folder
    assert (tmp_path / "sub").is_dir()
    with pytest.raises(OSError, match="POSENC_CACHE_DIR") as e:
        cache.ensure_free_space(tmp_path, 10**18, "an absurd entry")
    assert "an absurd entry" in str(e.value) and str(tmp_path) in str(e.value)


def test_write_entry_checks_space_first(tmp_path):
    data, meta = tmp_path / "huge.npy", tmp_path / "huge.json"
    called = []
    with pytest.raises(OSError, match="not enough disk space"):
        cache.write_array_entry(data, meta, (10**9, 10**9), "uint8", {"key": "k"}, called.append)
    assert called == [] and os.listdir(tmp_path) == []


def test_atomic_path(tmp_path):
    final = tmp_path / "f.txt"
    with cache.atomic_path(final) as tmp:
        tmp.write_text("hello")
        assert not final.exists()
    assert final.read_text() == "hello"
    with pytest.raises(ValueError):
        with cache.atomic_path(final) as tmp:
            tmp.write_text("half")
            raise ValueError
    assert final.read_text() == "hello"
    assert oct(final.stat().st_mode & 0o777) == oct(0o644)
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------- checksums


def _damage_in_place(path, keep_mtime=False):
    """Overwrite a .npy file's data with zeros: same size, valid header, other content."""
    time.sleep(0.02)  # a later timestamp tick than the write's, also where timestamps are coarse (Linux < 6.13)
    st = os.stat(path)
    offset = cache.npy_layout(path)[2]
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\0" * (st.st_size - offset))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_checksum_recorded_and_verified(tmp_path):
    data, meta = tmp_path / "e.npy", tmp_path / "e.json"
    cache.write_array_entry(data, meta, (8, 16), "float32", {"key": "k"}, fill_with(np.arange(16.0)))
    side = json.loads(meta.read_text())
    assert side["checksum"] == cache.file_checksum(data) and len(side["checksum"]) == 32
    assert cache.open_array_entry(data, meta, {"key": "k"}) is not None


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_damaged_entry_is_a_miss_with_a_warning(tmp_path, keep_mtime):
    """Found in the process that wrote (and so knows) the entry, even where the damage kept its mtime:
    what the memo of checksums holds never hides a change."""
    data, meta = tmp_path / "e.npy", tmp_path / "e.json"
    cache.write_array_entry(data, meta, (8, 16), "float32", {"key": "k"}, fill_with(1.5))
    before = os.stat(data)
    _damage_in_place(data, keep_mtime)
    assert (os.stat(data).st_mtime_ns == before.st_mtime_ns) == keep_mtime
    arr = np.load(data, mmap_mode="r")
    assert arr.shape == (8, 16) and not arr.any(), "the damage keeps a valid header and size"
    with pytest.warns(UserWarning, match=r"e\.npy is damaged"):
        assert cache.open_array_entry(data, meta, {"key": "k"}) is None
    cache.write_array_entry(data, meta, (8, 16), "float32", {"key": "k"}, fill_with(1.5))  # recomputed
    assert np.array_equal(cache.open_array_entry(data, meta, {"key": "k"}), np.full((8, 16), 1.5))


def test_checksum_is_verified_once_per_process(tmp_path, monkeypatch):
    data, meta = tmp_path / "e.npy", tmp_path / "e.json"
    cache.write_array_entry(data, meta, (4,), "float32", {"key": "k"}, fill_with(2.0))
    calls = []
    real = cache.file_checksum
    monkeypatch.setattr(cache, "file_checksum", lambda p: calls.append(p) or real(p))
    assert cache.open_array_entry(data, meta, {"key": "k"}) is not None
    assert calls == [], "the process that wrote the entry knows its checksum"
    time.sleep(0.02)
    os.utime(data)  # as a file this process has not seen: same bytes, another stamp
    for _ in range(3):
        assert cache.open_array_entry(data, meta, {"key": "k"}) is not None
    assert len(calls) == 1
    # a file changed behind the process's back (new mtime) is hashed again
    _damage_in_place(data)
    with pytest.warns(UserWarning, match="damaged"):
        assert cache.open_array_entry(data, meta, {"key": "k"}) is None
    assert len(calls) == 2


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_a_new_process_hashes_only_a_changed_entry(tmp_path, monkeypatch, keep_mtime):
    """The stamp at which an entry's checksum held is kept beside it, so another process (a warm rerun:
    the in-process memo cleared) reads an unchanged entry without hashing it, and still finds damage,
    even damage that kept the file's mtime."""
    data, meta = tmp_path / "e.npy", tmp_path / "e.json"
    cache.write_array_entry(data, meta, (8, 16), "float32", {"key": "k"}, fill_with(3.0))
    calls = []
    real = cache.file_checksum
    monkeypatch.setattr(cache, "file_checksum", lambda p: calls.append(p) or real(p))
    monkeypatch.setattr(cache, "_VERIFIED", {})  # a new process
    for _ in range(2):
        assert cache.open_array_entry(data, meta, {"key": "k"}) is not None
    assert calls == []
    _damage_in_place(data, keep_mtime)
    monkeypatch.setattr(cache, "_VERIFIED", {})
    with pytest.warns(UserWarning, match="damaged"):
        assert cache.open_array_entry(data, meta, {"key": "k"}) is None
    assert len(calls) == 1
    cache.write_array_entry(data, meta, (8, 16), "float32", {"key": "k"}, fill_with(3.0))  # recomputed
    for junk in ("{not json", "[1, 2]"):  # a broken stamp file proves nothing: a hash, no crash
        (tmp_path / ".e.npy.verified").write_text(junk)
        monkeypatch.setattr(cache, "_VERIFIED", {})
        calls.clear()
        assert cache.open_array_entry(data, meta, {"key": "k"}) is not None and len(calls) == 1


def test_legacy_sidecar_without_checksum_gets_one(tmp_path):
    data, meta = tmp_path / "e.npy", tmp_path / "e.json"
    cache.write_array_entry(data, meta, (4,), "float32", {"key": "k"}, fill_with(2.0))
    side = json.loads(meta.read_text())
    del side["checksum"]
    meta.write_text(json.dumps(side))
    assert cache.open_array_entry(data, meta, {"key": "k"}) is not None
    assert json.loads(meta.read_text())["checksum"] == cache.file_checksum(data)


def test_row_writer(tmp_path):
    path = tmp_path / "w.npy"
    w = cache.RowWriter(path, (5, 2, 3), "float16")
    w[0] = np.ones((2, 3))
    w[2:4] = np.full((2, 2, 3), 7.0)
    w[4] = 5
    w.close()
    arr = np.load(path)
    assert arr.shape == (5, 2, 3) and arr.dtype == np.float16
    assert (arr[0] == 1).all() and (arr[1] == 0).all() and (arr[2:4] == 7).all() and (arr[4] == 5).all()
    w = cache.RowWriter(path, (5, 2), "uint8")
    for bad in (slice(0, 6), slice(0, 4, 2), 5):
        with pytest.raises(IndexError):
            w[bad] = 1
    w.close()
    assert cache.npy_layout(path)[:2] == ((5, 2), np.dtype("uint8"))


def test_current_checksum_hashes_once_per_version_of_a_file(tmp_path, monkeypatch):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"a" * 1000)
    calls = []
    real = cache.file_checksum
    monkeypatch.setattr(cache, "file_checksum", lambda p: calls.append(p) or real(p))
    first = cache.current_checksum(path)
    assert cache.current_checksum(path) == first and len(calls) == 1
    path.write_bytes(b"b" * 1000)  # same size, other bytes
    assert cache.current_checksum(path) != first and len(calls) == 2
