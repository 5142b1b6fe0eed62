"""The comparison of two runs' products (posenc_utils.reporting.compare): within tolerance agrees, beyond it differs and
names the cell, a changed verdict is listed, a missing table or a bad folder is said."""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from posenc_utils.reporting import compare
from posenc_utils.reporting.figures import CLAIMS
from posenc_utils.studies.downstream import LOSSES
from posenc_utils.studies.experiments import TABLE1
from posenc_utils.studies.layer_analysis import TABLE2A

T1, T2A, LOSS, VERDICTS = (p.file(".csv") for p in (TABLE1, TABLE2A, LOSSES, CLAIMS))


def _products(root, spc=0.5, stacked=0.7, outcome="holds", seconds=10.0):
    (root / "results").mkdir(parents=True)
    pd.DataFrame({"encoder": ["VGG16", "PosENet"], "pattern": ["H", "H"], "spc": [spc, 0.01],
                  "spc_ci_low": [float("nan"), -0.02]}).to_csv(root / T1, index=False)
    pd.DataFrame({"setting": ["3 layers"], "spc": [stacked]}).to_csv(root / T2A, index=False)
    pd.DataFrame({"task": ["sod"], "epoch": [1], "loss": [0.2], "train_seconds": [seconds]}).to_csv(
        root / LOSS, index=False)
    pd.DataFrame({"image": [0, 1], "spc": [spc, spc]}).to_csv(root / "results" / "table1_per_image.csv", index=False)
    pd.DataFrame({"claim": [1, 5], "outcome": ["holds", outcome], "budget": ["holds", "holds"],
                  "value": [0.1, stacked]}).to_csv(root / VERDICTS, index=False)
    return root


def test_identical_and_round_off_agree_times_aside(tmp_path):
    a = _products(tmp_path / "a")
    b = _products(tmp_path / "b", spc=0.5 + 4e-6, stacked=0.72, seconds=99.0)
    c = compare.compare(a, b)
    assert c.agree, compare.report(c)
    assert compare.main([str(a), str(b)]) == 0
    # on one machine nothing may move: --exact flags the round-off, never the seconds
    assert compare.main([str(a), str(b), "--exact"]) == 1
    exact = tuple(dataclasses.replace(r, atol=0.0) if r.atol != float("inf") else r for r in compare.TOLERANCES)
    assert "(tolerance 0)" in compare.report(compare.compare(a, b, exact))  # the rules held to, not the defaults
    assert compare.main([str(a), str(_products(tmp_path / "c", seconds=1.0)), "--exact"]) == 0


def test_beyond_tolerance_names_the_cell(tmp_path, capsys):
    a, b = _products(tmp_path / "a"), _products(tmp_path / "b", spc=0.5 + 1e-3, stacked=0.75)
    c = compare.compare(a, b)
    assert not c.agree
    by_name = {t.name: t for t in c.tables}
    assert by_name[T1].differs and by_name["results/table1_per_image.csv"].differs
    assert "row 0, spc" in by_name[T1].cells[0]
    assert by_name[T2A].differs  # 0.05 > Table 2's 0.03
    assert not by_name[LOSS].differs
    assert compare.main([str(a), str(b)]) == 1
    assert T1 in capsys.readouterr().out
    # a rule given on the command line comes first
    assert compare.main([str(a), str(b), "--tolerance", "*:spc=0.1", "--tolerance", f"{VERDICTS}:value=0.1"]) == 0


def test_verdicts_missing_tables_and_nan(tmp_path):
    a, b = _products(tmp_path / "a"), _products(tmp_path / "b", outcome="not decided (noise)")
    (b / "extra.csv").write_text("x\n1\n")
    t = pd.read_csv(b / T1)
    t.loc[0, "spc_ci_low"] = 0.3  # NaN in A, a number in B
    t.to_csv(b / T1, index=False)
    c = compare.compare(a, b)
    assert c.verdicts == ["claim 5 (outcome): holds in A, not decided (noise) in B"]
    problems = {t.name: t.problem for t in c.tables}
    assert problems["extra.csv"] == "only in B"
    assert any("spc_ci_low" in cell for t in c.tables for cell in t.cells)
    assert "Verdicts that differ" in compare.report(c)


def test_other_shape_and_bad_input(tmp_path, capsys):
    a, b = _products(tmp_path / "a"), _products(tmp_path / "b")
    pd.DataFrame({"encoder": ["VGG16"], "spc": [0.5]}).to_csv(b / T1, index=False)
    c = compare.compare(a, b)
    assert "columns differ" in {t.name: t for t in c.tables}[T1].problem
    assert compare.main([str(a), str(tmp_path / "nowhere")]) == 2
    assert "not a folder of products" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="FILES:COLUMNS=VALUE"):
        compare.main([str(a), str(b), "--tolerance", "spc"])


def test_every_column_has_a_rule():
    assert compare.tolerance_for("anything.csv", "any column").atol == 1e-5
    assert compare.tolerance_for(T2A, "train_seconds").atol == float("inf")
