"""Where the study computes: the GPU when there is one, else the CPU; ``POSENC_DEVICE=cpu|cuda`` decides.

Feature extraction, readout training and evaluation, and notebook 05's networks all ask
:func:`device`, so one setting moves the whole run.
"""
from __future__ import annotations

import os

import torch

CHOICES = ("cpu", "cuda")


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


def describe() -> str:
    """One line for a run's plan: the device and why."""
    dev = device()
    how = "POSENC_DEVICE" if os.environ.get("POSENC_DEVICE") else "default"
    if dev == "cuda":
        return f"GPU: {torch.cuda.get_device_name(0)} ({how})"
    found = "no CUDA GPU found" if not torch.cuda.is_available() else "a GPU is present but not used"
    return f"CPU, {torch.get_num_threads()} threads ({found}; {how})"
