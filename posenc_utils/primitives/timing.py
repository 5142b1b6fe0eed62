"""Phase clocks: where the time of a run goes, accumulated per phase (read by the benchmark).

Phases are disjoint stretches of code (encoder forward passes, resizing and storing features,
checksums, readout training, evaluation, ...), so their sum never exceeds the wall time and
the rest is overhead outside any named phase.

Time is booked on the :class:`Clock` of the innermost :func:`record` block the code runs in, and
dropped where none is open: nothing accumulates in the module, so there is nothing to reset. A run
that wants its phases opens a block and reads its own clock::

    with timing.record() as clock:
        experiments.table1(profile)
    clock.seconds["readout_training"]

The block is a context variable (set on entering, restored on leaving): a thread started inside it
books its phases only where it runs in a copy of the context (``contextvars.copy_context().run``).

A notebook kernel that the pipeline runs has one more clock, for the whole kernel: where
``POSENC_PHASES_FILE`` names a file, every phase is booked on it as well, and the kernel writes it to
that file after each cell (:func:`kernel_clock`), so the run's record (:data:`TIMES`) can say where each
notebook's time went, even for a run killed half way.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import sys
import threading
import time
from collections import defaultdict
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator

from .products import declare


def _per_encoder() -> defaultdict[str, defaultdict[str, float]]:
    return defaultdict(lambda: defaultdict(float))


@dataclass
class Clock:
    """Seconds per phase; per encoder label, the seconds of each extraction phase and the images extracted."""

    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    extractions: defaultdict[str, defaultdict[str, float]] = field(default_factory=_per_encoder)


_CLOCK: ContextVar[Clock | None] = ContextVar("posenc_timing_clock", default=None)
PHASES_FILE = "POSENC_PHASES_FILE"  # set by the pipeline for each notebook's kernel: where its phases go


@contextlib.contextmanager
def record() -> Iterator[Clock]:
    """A fresh clock that every phase inside the block books its time on (the enclosing block's clock,
    if any, gets none of it and is the one in use again after the block)."""
    clock = Clock()
    token = _CLOCK.set(clock)
    try:
        yield clock
    finally:
        _CLOCK.reset(token)


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Add the time spent in the block to phase ``name``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        add(name, time.perf_counter() - t0)


def _clocks() -> list[Clock]:
    """The clocks a phase books on now: the innermost open block's, and the kernel's (when there is one)."""
    return [c for c in (_CLOCK.get(), kernel_clock()) if c is not None]


_LOCK = threading.Lock()  # threads (readouts trained side by side) may book on one clock


def add(name: str, seconds: float, encoder: str | None = None) -> None:
    """Add ``seconds`` to phase ``name`` (and to that phase of ``encoder``'s extraction, when given)."""
    with _LOCK:
        for clock in _clocks():
            clock.seconds[name] += seconds
            if encoder is not None:
                clock.extractions[encoder][name] += seconds


def count_images(encoder: str, n: int) -> None:
    """Count ``n`` images extracted by ``encoder`` (the benchmark's seconds per image)."""
    with _LOCK:
        for clock in _clocks():
            clock.extractions[encoder]["images"] += n


@functools.cache
def kernel_clock() -> Clock | None:
    """The clock of this whole process where ``POSENC_PHASES_FILE`` is set (a notebook kernel of the pipeline),
    else None. In an IPython kernel it is written to that file after every cell; elsewhere when the process exits."""
    path = os.environ.get(PHASES_FILE)
    if not path:
        return None
    clock = Clock()
    try:
        from IPython import get_ipython  # optional: a kernel writes after each cell

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None:
        shell.events.register("post_run_cell", lambda _result: write_phases(clock, path))
        atexit.register(_exit_now)
    else:
        atexit.register(write_phases, clock, path)
    return clock


def _exit_now() -> None:
    """End a pipeline kernel without Python's teardown, which the pipeline waits for (about a second with torch
    loaded): its phases are written after every cell, its files closed, and the executed notebook is papermill's."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def as_dict(clock: Clock) -> dict:
    """A clock as JSON: seconds per phase (largest first) and, per encoder, its extraction phases and images."""
    return {"phases_s": {k: round(v, 2) for k, v in sorted(clock.seconds.items(), key=lambda kv: -kv[1])},
            "extractions": {enc: {k: round(v, 2) for k, v in ph.items()} for enc, ph in clock.extractions.items()}}


def write_phases(clock: Clock, path: str | os.PathLike) -> None:
    """Write ``clock`` to ``path`` as JSON (through a temporary file: a reader never sees half of it)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(as_dict(clock), f, indent=1)
    os.replace(tmp, path)


if os.environ.get(PHASES_FILE) and "ipykernel" in sys.modules:  # a kernel of the pipeline: its clock (and its
    kernel_clock()  # quick exit) from its first import; another process inheriting the setting starts one only if it books


def read_phases(path: str | os.PathLike) -> dict:
    """What :func:`write_phases` wrote, or an empty record where nothing was (a notebook that timed no phase)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return {"phases_s": {}, "extractions": {}}


# The pipeline's record of each run's time by notebook and phase, beside the products (posenc_utils.runners.pipeline writes it).
TIMES = declare("pipeline_times", "", "json")
