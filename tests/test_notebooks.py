"""The notebooks' output policy: committed without outputs, one literal-only 'parameters' cell."""
from __future__ import annotations

import ast
import json
import re

import pytest

from posenc_utils.primitives import paths, timing
from posenc_utils.runners import pipeline

NOTEBOOKS = sorted(paths.NOTEBOOKS_DIR.glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(nb):
    doc = json.loads(nb.read_text())
    code = [c for c in doc["cells"] if c["cell_type"] == "code"]
    assert code, "a notebook with no code"
    for i, cell in enumerate(code):
        assert cell.get("outputs", []) == [], f"{nb.name}: code cell {i} has outputs"
        assert cell.get("execution_count") is None, f"{nb.name}: code cell {i} has an execution count"


def _parameters_cells(doc):
    return [c for c in doc["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_one_parameters_cell_with_literals(nb):
    import papermill

    doc = json.loads(nb.read_text())
    cells = _parameters_cells(doc)
    assert len(cells) == 1, f"{nb.name}: {len(cells)} cells tagged 'parameters'"
    assert cells[0]["cell_type"] == "code"
    declared = papermill.inspect_notebook(str(nb))
    assert {"profile", "output_dir"} <= set(declared)
    src = cells[0]["source"]
    tree = ast.parse("".join(src) if isinstance(src, list) else src)
    names = []
    for stmt in tree.body:
        assert isinstance(stmt, (ast.Assign, ast.AnnAssign)), \
            f"{nb.name}: the parameters cell may only assign values, found {type(stmt).__name__}"
        assert stmt.value is not None, f"{nb.name}: a parameter without a value"
        value = ast.literal_eval(stmt.value)  # raises for anything but a literal
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        assert all(isinstance(t, ast.Name) for t in targets)
        names += [t.id for t in targets]
        if names[-1] == "profile":
            assert value in ("quick", "offline", "paper")
    assert set(names) == set(declared)


def test_pipeline_notebooks_in_numeric_order():
    nbs = pipeline.notebooks()
    assert nbs, "no notebooks found"
    numbers = [int(re.match(r"(\d\d)_", p.name).group(1)) for p in nbs]
    last = int(pipeline.LAST)  # the figures notebook gathers the others' products: last
    assert numbers[-1] == last and numbers[:-1] == sorted(numbers[:-1]) and len(set(numbers)) == len(numbers)
    assert set(nbs) == {p for p in NOTEBOOKS if re.match(r"\d\d_", p.name)}
    assert [p.name for p in nbs][:2] == ["01_data_preparation.ipynb", "02_train_readouts.ipynb"]


def test_pipeline_parameters_check(tmp_path):
    nb = pipeline.notebooks()[0]
    assert pipeline._parameters(nb, "quick", "out") == {"profile": "quick", "output_dir": "out"}
    doc = json.loads(nb.read_text())
    for cell in _parameters_cells(doc):
        cell["source"] = "profile = 'quick'\n"
    bad = tmp_path / "00_bad.ipynb"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="output_dir"):
        pipeline._parameters(bad, "quick", "")
    with pytest.raises(ValueError, match="unknown profile"):
        pipeline.run("fastest")


def test_pipeline_records_cold_and_warm_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("POSENC_CACHE_DIR", str(tmp_path / "cache"))
    assert not pipeline.cache_entries()
    (tmp_path / "cache" / "features").mkdir(parents=True)
    (tmp_path / "cache" / "features" / "x.json").write_text("{}")
    assert pipeline.cache_entries() == {"features/x.json"}
    path = timing.TIMES.path(tmp_path)
    path.write_text(json.dumps({"profile": "offline", "total_s": 600.0, "cpus": 2}))  # the earlier layout
    rec = pipeline.record_times(path, "offline", "warm", {"total_s": 40.0})
    assert rec == {"profile": "offline", "cold": {"total_s": 600.0, "cpus": 2}, "warm": {"total_s": 40.0}}
    rec = pipeline.record_times(path, "offline", "cold", {"total_s": 550.0})
    assert rec["cold"] == {"total_s": 550.0} and rec["warm"] == {"total_s": 40.0}
    assert json.loads(path.read_text()) == rec


def test_run_state():
    assert pipeline.run_state(set(), {"features/a.json"}) == "cold"
    assert pipeline.run_state({"features/a.json"}, {"features/a.json"}) == "warm"
    assert pipeline.run_state({"features/a.json"}, {"features/a.json", "readouts/b.json"}) == "partial"
