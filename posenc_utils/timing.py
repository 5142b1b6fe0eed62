"""Phase clocks: where the time of a run goes, accumulated per phase (read by the benchmark).

Phases are disjoint stretches of code (encoder forward passes, resizing and storing features,
checksums, readout training, evaluation, ...), so their sum never exceeds the wall time and
the rest is overhead outside any named phase.
"""
from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from typing import Iterator

SECONDS: dict[str, float] = defaultdict(float)
# Per encoder label: images extracted and the seconds of each extraction phase.
EXTRACTIONS: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Add the time spent in the block to phase ``name``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        SECONDS[name] += time.perf_counter() - t0


def add(name: str, seconds: float) -> None:
    SECONDS[name] += seconds


def reset() -> None:
    SECONDS.clear()
    EXTRACTIONS.clear()
