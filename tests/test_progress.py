"""Progress display: a bar for people, one line per loop in batch runs, nothing in CI."""
from __future__ import annotations

import pytest

from posenc_utils.primitives import progress as prog


def test_modes(monkeypatch):
    monkeypatch.delenv("POSENC_PROGRESS", raising=False)
    monkeypatch.setenv("CI", "1")
    assert prog.mode() == "off"
    monkeypatch.delenv("CI")
    monkeypatch.delenv("POSENC_NO_PROGRESS", raising=False)
    assert prog.mode() == "bar"
    monkeypatch.setenv("POSENC_PROGRESS", "lines")
    assert prog.mode() == "lines"
    monkeypatch.setenv("POSENC_PROGRESS", "loud")
    with pytest.raises(ValueError, match="POSENC_PROGRESS"):
        prog.mode()


def test_lines_mode_prints_one_line_per_loop(monkeypatch, capsys):
    monkeypatch.setenv("POSENC_PROGRESS", "lines")
    assert list(prog.progress(range(5), "training", unit="epochs")) == list(range(5))
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("training: 5 epochs in ") and "s each" in out[0]
    assert list(prog.progress(range(1), "one image")) == [0]
    assert capsys.readouterr().out == "", "a single step is not worth a line"


def test_off_mode_is_silent(monkeypatch, capsys):
    monkeypatch.setenv("POSENC_PROGRESS", "off")
    it = range(3)
    assert prog.progress(it, "x") is it
    assert capsys.readouterr().out == ""


def test_bar_mode_uses_tqdm(monkeypatch):
    monkeypatch.setenv("POSENC_PROGRESS", "bar")
    bar = prog.progress(range(3), "x", unit="images")
    assert type(bar).__module__.startswith("tqdm")
    assert list(bar) == [0, 1, 2]


def test_a_cells_loops_collapse_to_one_line():
    loops = [("VGG16 on 500 images", 250, "batches", 40.0), ("readout", 15, "epochs", 12.5), ("PosENet", 3, "epochs", 0.4)]
    line = prog.cell_line(loops, 2.345)
    assert line == ("[progress] 3 loops, 52.9 s in all; longest: VGG16 on 500 images: 250 batches in 40.0 s; "
                    "peak memory 2.3 GB")
    assert prog.cell_line(loops[1:2], 1.0) == "[progress] readout: 15 epochs in 12.5 s; peak memory 1.0 GB"
