"""Progress of long loops: a live bar for a person, one line for a batch run, nothing in CI.

``POSENC_PROGRESS`` picks the mode (``bar`` | ``lines`` | ``off``). By default: ``off`` when ``CI``
or ``POSENC_NO_PROGRESS`` is set; otherwise ``bar``, a tqdm bar (one live widget in JupyterLab,
with ipywidgets installed; a text bar in a terminal). The papermill pipeline sets ``lines``: each
loop then prints a single line when it ends (what it did, how long it took, the process's peak
memory so far), so an executed
notebook reads like the notebook instead of holding hundreds of bar updates.
"""
from __future__ import annotations

import os
import resource
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
MODES = ("bar", "lines", "off")


def mode() -> str:
    """The progress mode of this process (see the module docstring)."""
    chosen = os.environ.get("POSENC_PROGRESS", "")
    if chosen:
        if chosen not in MODES:
            raise ValueError(f"POSENC_PROGRESS={chosen!r}: choose one of {', '.join(MODES)}")
        return chosen
    return "off" if os.environ.get("CI") or os.environ.get("POSENC_NO_PROGRESS") else "bar"


def _lines(it: Iterable[T], desc: str, unit: str) -> Iterator[T]:
    t0, count = time.perf_counter(), 0
    for item in it:
        yield item
        count += 1
    seconds = time.perf_counter() - t0
    if count > 1:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # GB (Linux reports kB)
        print(f"{desc}: {count} {unit} in {seconds:.1f} s ({seconds / count:.2f} s each; peak memory so far "
              f"{peak:.1f} GB)", flush=True)


def progress(it: Iterable[T], desc: str, total: int | None = None, unit: str = "steps") -> Iterable[T]:
    """Wrap ``it`` in the process's progress display (a bar, a closing line, or nothing)."""
    chosen = mode()
    if chosen == "off":
        return it
    if chosen == "lines":
        return _lines(it, desc, unit)
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total, leave=False, unit=f" {unit}")
