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
"""
from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator


def _per_encoder() -> defaultdict[str, defaultdict[str, float]]:
    return defaultdict(lambda: defaultdict(float))


@dataclass
class Clock:
    """Seconds per phase; per encoder label, the seconds of each extraction phase and the images extracted."""

    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    extractions: defaultdict[str, defaultdict[str, float]] = field(default_factory=_per_encoder)


_CLOCK: ContextVar[Clock | None] = ContextVar("posenc_timing_clock", default=None)


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


def add(name: str, seconds: float, encoder: str | None = None) -> None:
    """Add ``seconds`` to phase ``name`` (and to that phase of ``encoder``'s extraction, when given)."""
    clock = _CLOCK.get()
    if clock is not None:
        clock.seconds[name] += seconds
        if encoder is not None:
            clock.extractions[encoder][name] += seconds


def count_images(encoder: str, n: int) -> None:
    """Count ``n`` images extracted by ``encoder`` (the benchmark's seconds per image)."""
    clock = _CLOCK.get()
    if clock is not None:
        clock.extractions[encoder]["images"] += n
