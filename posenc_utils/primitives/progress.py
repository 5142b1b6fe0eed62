"""Progress of long loops: a live bar for a person, one line for a batch run, nothing in CI.

``POSENC_PROGRESS`` picks the mode (``bar`` | ``lines`` | ``off``). By default: ``off`` when ``CI``
or ``POSENC_NO_PROGRESS`` is set; otherwise ``bar``, a tqdm bar (one live widget in JupyterLab,
with ipywidgets installed; a text bar in a terminal). The papermill pipeline sets ``lines``: in a
notebook kernel, each cell that ran long loops then ends with a single line (how many loops, the
longest, the cell's time in them and the process's peak memory), so an executed notebook reads like
the notebook instead of holding dozens of progress lines; outside a kernel each loop prints its line.
"""
from __future__ import annotations

import functools
import os
import resource
import time
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

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


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # GB (Linux reports kB)


# The loops of the notebook cell running now: (description, count, unit, seconds), summed when it ends.
_CELL: list[tuple[str, int, str, float]] = []


@functools.cache
def _cell_hook() -> bool:
    """Print the cell's one summary line when it ends (registered once, in an IPython kernel); False outside one."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None:
        shell.events.register("post_run_cell", lambda _result: print_cell_line())
    return shell is not None


def cell_line(loops: list[tuple[str, int, str, float]], peak_gb: float) -> str:
    """One line for a cell's loops: how many, the longest, the time in all of them, the peak memory."""
    total = sum(s for *_, s in loops)
    desc, count, unit, seconds = max(loops, key=lambda loop: loop[3])
    more = f"{len(loops)} loops, {total:.1f} s in all; longest: " if len(loops) > 1 else ""
    return f"[progress] {more}{desc}: {count} {unit} in {seconds:.1f} s; peak memory {peak_gb:.1f} GB"


def print_cell_line() -> None:
    if _CELL:
        print(cell_line(_CELL, _peak_gb()), flush=True)
        _CELL.clear()


def _lines(it: Iterable[T], desc: str, unit: str) -> Iterator[T]:
    t0, count = time.perf_counter(), 0
    for item in it:
        yield item
        count += 1
    seconds = time.perf_counter() - t0
    if count > 1:
        if _cell_hook():
            _CELL.append((desc, count, unit, seconds))
        else:
            print(f"{desc}: {count} {unit} in {seconds:.1f} s ({seconds / count:.2f} s each; peak memory so far "
                  f"{_peak_gb():.1f} GB)", flush=True)


def progress(it: Iterable[T], desc: str, total: int | None = None, unit: str = "steps") -> Iterable[T]:
    """Wrap ``it`` in the process's progress display (a bar, a closing line, or nothing)."""
    chosen = mode()
    if chosen == "off":
        return it
    if chosen == "lines":
        return _lines(it, desc, unit)
    return tqdm(it, desc=desc, total=total, leave=False, unit=f" {unit}")
