"""Progress bars for long loops: tqdm outside CI, silent inside it (stable notebook outputs)."""
from __future__ import annotations

import os
from typing import Iterable, TypeVar

T = TypeVar("T")


def progress(it: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]:
    """Wrap ``it`` in a tqdm bar unless ``CI`` or ``POSENC_NO_PROGRESS`` is set."""
    if os.environ.get("CI") or os.environ.get("POSENC_NO_PROGRESS"):
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total, leave=False)
