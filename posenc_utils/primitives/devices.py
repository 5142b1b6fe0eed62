"""Where the study computes: the GPU when there is one, else the CPU; ``POSENC_DEVICE=cpu|cuda`` decides;
and how the CPU computes: denormal numbers flushed to zero on every thread.

Feature extraction, readout training and evaluation, and notebook 05's networks all ask
:func:`device`, so one setting moves the whole run.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import platform
import traceback
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator, TypeVar

import torch

CHOICES = ("cpu", "cuda")
T = TypeVar("T")
SIDE_BY_SIDE = 2  # tasks of small operations run at once, one thread each (one per core of a 2-core machine)


def device() -> str:
    """``"cuda"`` or ``"cpu"``: ``POSENC_DEVICE`` when set, else the GPU when torch finds one."""
    wanted = os.environ.get("POSENC_DEVICE", "").strip().lower()
    if wanted and wanted not in CHOICES:
        raise ValueError(f"POSENC_DEVICE={wanted!r}: set it to one of {', '.join(CHOICES)} (or unset it to use "
                         f"the GPU when there is one)")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("POSENC_DEVICE=cuda, but torch finds no CUDA GPU here (torch "
                           f"{torch.__version__}, CUDA build {torch.version.cuda}); unset it or set POSENC_DEVICE=cpu")
    if wanted:
        return wanted
    return "cuda" if torch.cuda.is_available() else "cpu"


def flush_denormals() -> None:
    """Treat float values below the normal range (float32: ~1.2e-38) as zero, on every thread torch computes with.

    x86 arithmetic on such (denormal) values can be many times slower (HED's VGG16 ran at 0.36 s/image with
    them and 0.24 without on an Intel Xeon), and they are zero in float16 storage anyway. The flag is a
    per-thread CPU setting: ``torch.set_flush_denormal`` sets it on the calling thread only, and the
    threads of torch's pool copy it from the thread that starts them (measured: set after the pool had
    started, it reached one of two threads, i.e. half of every parallel operation). So it is set once, when
    the package is imported, before the study runs any torch operation (``posenc_utils/__init__.py``), and
    never switched off; :func:`denormals_flushed` says whether it reached every thread."""
    torch.set_flush_denormal(True)


def denormals_flushed() -> bool:
    """Whether every thread of torch's pool flushes denormals (a parallel multiply of denormal numbers comes
    out all zero); False where the pool started before :func:`flush_denormals` (torch used before the import)."""
    tiny = torch.full((2**20,), 1e-39)
    return bool(torch.count_nonzero(tiny * 1.0) == 0)


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Compute with ``n`` of torch's threads for the block (process-wide), then as many as before."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def side_by_side(tasks: list[Callable[[], T]], at_once: int = SIDE_BY_SIDE) -> list[T]:
    """Run the callables ``tasks``, ``at_once`` at a time, each on one of torch's threads (set process-wide for the
    block), in copies of the caller's context (their phases book on its clock); their results, in order.

    For work made of small operations (PosENet's readouts, notebook 05's small networks): a second thread buys
    such an operation little (measured, notebook 05's zero-padded network: 0.81 s an epoch on two threads, 0.79 on
    one), while two threads that meet after every operation stall whenever another process holds one core: the
    waiting thread spins through its time slice (measured: 4.8 s an epoch on two threads beside one busy process,
    0.79 on one). One thread each, two at a time, is faster alone and slowed by a busy core only by its share. A
    task's numbers are those of one thread, whether it runs alone or beside another.

    A task that fails with :class:`SystemError` (the interpreter's or an extension's internal error, never raised by
    this package; seen once, in CI, as a narrow readout's training began, and not in 10 cold runs since) runs once
    more, alone on the calling thread, with a warning that shows the error in full. A rerun is safe: every
    task here writes its results to the cache under the entry's lock, atomically. Any other error is raised."""
    with threads(1):
        with ThreadPoolExecutor(max(1, at_once)) as pool:  # leaving the block waits for every task
            futures = [pool.submit(contextvars.copy_context().run, task) for task in tasks]
        return [_result_or_rerun(f, task) for f, task in zip(futures, tasks)]


def _result_or_rerun(done: Future, task: Callable[[], T]) -> T:
    """The finished task's result; if it failed with SystemError, the result of running it again here, warned."""
    error = done.exception()
    if not isinstance(error, SystemError):
        return done.result()
    warnings.warn("a task run side by side failed with an internal error of the interpreter or an extension; "
                  "running it again alone. The error:\n" + "".join(traceback.format_exception(error)),
                  RuntimeWarning, stacklevel=3)
    return task()


def cpu_model() -> str:
    """The CPU's model name (machines here differ ~1.7x in speed at the same core count), for a run's records."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_free_memory(dev: str) -> int | None:
    """Free bytes in the GPU's memory (None on a CPU, whose memory is the host's)."""
    if not dev.startswith("cuda"):
        return None
    return int(torch.cuda.mem_get_info()[0])


def host_memory() -> tuple[int, int]:
    """(total, available) bytes of the host's memory, from /proc/meminfo (available: what can be had without
    swapping, the page cache included); (0, 0) where it cannot be read."""
    found = {}
    try:
        for line in open("/proc/meminfo", encoding="utf-8"):
            name, value = line.split(":", 1)
            found[name] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        return 0, 0
    return found.get("MemTotal", 0), found.get("MemAvailable", 0)


def describe() -> str:
    """One line for a run's plan: the device and why."""
    dev = device()
    how = "POSENC_DEVICE" if os.environ.get("POSENC_DEVICE") else "default"
    if dev == "cuda":
        return f"GPU: {torch.cuda.get_device_name(0)} ({how})"
    found = "no CUDA GPU found" if not torch.cuda.is_available() else "a GPU is present but not used"
    flushed = ("denormals flushed on every thread" if denormals_flushed() else
               "denormals flushed on the main thread only: torch ran before posenc_utils was imported, "
               "which is slower on Intel CPUs")
    return f"CPU, {torch.get_num_threads()} threads, {flushed} ({found}; {how})"
