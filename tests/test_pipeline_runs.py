"""The pipeline end to end: the paper profile through every notebook on stand-in data, and two runs sharing one cache.

These run papermill kernels, so they are the slowest tests (about three minutes together on 2 cores).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pandas as pd

from posenc_utils.primitives import devices, paths, products, timing
from posenc_utils.studies import downstream, experiments, layer_analysis
from posenc_utils.reporting import figures
from posenc_utils.runners import pipeline
from posenc_utils.runners import manifest as posenc_manifest
from standin_data import make_downstream_datasets, make_probe_datasets, write_imagenet_weights

# The paper profile shrunk only in size (what a CI machine affords), keeping the relations between its sizes that
# the paper's settings have, so what breaks at those settings breaks here first: the downstream networks at the
# probe's image size, Table 4 at a size an unpadded VGG16 runs at, and Tables 2 and 3's stacked readouts C -> C
# (the paper's width; on 4 training images, as a CI machine affords: ~1 min on 2 cores).
PAPER_AT_CI_SIZE = {
    "image_size": 64, "table4_image_size": 196, "seeds": 2, "readout": {"epochs": 2}, "capacity_train_n": 4,
    "ablation_train_n": 8, "ablation_test_n": 4, "curve_train_n": 8, "curve_max_steps": 64,
    "downstream": {"width": 8, "image_size": 64, "epochs": 1},
}


def test_the_shrunk_paper_profile_keeps_the_paper_profiles_size_relations():
    from posenc_utils.models.encoders import smallest_image_size
    from posenc_utils.models.profiles import EncoderSpec, get_profile
    paper, shrunk = get_profile("paper"), get_profile("paper", **PAPER_AT_CI_SIZE)
    for p in (paper, shrunk):
        assert p.downstream.image_size == p.image_size
        assert (p.table4_image_size or p.image_size) >= smallest_image_size(EncoderSpec("vgg16", "random", padding="none"))
        assert p.readout_width is None and p.width_sweep == (None,), "the stacked readouts are C -> C"
    assert shrunk.capacity_train_n and shrunk.capacity_train_n <= 4


def test_the_paper_profile_runs_every_notebook(tmp_path, monkeypatch, capsys):
    root = make_downstream_datasets(tmp_path / "raw", n_sod_train=12, n_sod_test=5, n_voc_train=12, n_voc_val=4)
    make_probe_datasets(root, n_train=16, n_test=0)  # PASCAL-S/Imgs: notebook 05's five images with masks
    monkeypatch.setenv("POSENC_DATA_ROOT", str(root))
    write_imagenet_weights(tmp_path / "torch")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("POSENC_DEVICE", "cpu")
    out_root = tmp_path / "results"
    done = pipeline.run("paper", str(out_root), overrides=PAPER_AT_CI_SIZE)

    assert [p.name for p in done] == [nb.name for nb in pipeline.notebooks()]
    for nb in done:  # every notebook ran to its end, into the run's own folder
        cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
        assert nb.parent == out_root / "build" / "paper" and all(c.get("execution_count") for c in cells), nb.name
    for nb in done:
        check_reads_like_a_paper(nb)
    index = (out_root / "build" / "paper" / "index.html").read_text()
    assert all(f'href="{nb.stem}.html"' in index for nb in done) and "claim 1:" in index
    assert all(nb.with_suffix(".html").stat().st_size > 10_000 for nb in done)
    plan = capsys.readouterr().out
    assert "DUTS-TR 16 (training); PASCAL-S 5" in plan and "device: CPU" in plan and "feature storage: about" in plan

    out = out_root / "paper"
    manifest = json.loads(posenc_manifest.MANIFEST.path(out).read_text())
    assert manifest["overrides"] == PAPER_AT_CI_SIZE and manifest["seeds"] == [0, 1]
    assert [f for nb in done for f in products.missing(out, nb.name[:2])] == [], "every declared product is written"
    written = [str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()]
    assert [f for f in written if products.owner(f) is None] == [], "every file written is a declared product's"
    cold = json.loads(timing.TIMES.path(out).read_text())["cold"]
    assert cold["cpu"] == devices.cpu_model() and cold["cpus"] >= 1, "a run's times name the machine that made them"
    t1 = pd.read_csv(experiments.TABLE1.csv(out))
    assert set(t1.test_set) == {"PASCAL-S", "black", "white", "noise"}
    assert set(t1.encoder) == {"PosENet", "VGG16 (ImageNet, [0,1] input)", "ResNet152 (ImageNet, taps layer1-4, [0,1] input)"}
    assert (t1.n_seeds == 2).all() and (t1[t1.test_set == "PASCAL-S"].n_images == 5).all()
    compared = pd.read_csv(figures.PAPER_VS_OURS.csv(out))
    probe = compared.table.isin(["Table 1", "Table 2a", "Table 2b", "Table 3", "Table 4"])
    assert probe.any() and not compared[probe].stand_in.any(), "the paper profile probes the paper's own encoders"
    assert compared[compared.table == "Table 5"].stand_in.all(), "a network at 1/8 of VGG16's width is labelled a stand-in"
    verdicts = pd.read_csv(figures.CLAIMS.csv(out))
    assert sorted(verdicts.claim) == list(range(1, 11))
    t2a = pd.read_csv(layer_analysis.TABLE2A.csv(out))
    assert {"2 layers, 3x3", "3 layers, 3x3"} <= set(t2a.setting), "the paper's C -> C stacked readouts ran"
    t5 = pd.read_csv(downstream.TABLE5.csv(out))
    assert {"ECSSD", "PASCAL-S", "DUT-OMRON", "VOC2012 val"} <= set(t5.test_set)


def check_reads_like_a_paper(nb_path):
    """An executed notebook shows each figure it draws, at most 3 lines of progress per cell, and its
    deviations once (as a list)."""
    cells = [c for c in json.loads(nb_path.read_text())["cells"] if c["cell_type"] == "code"]
    deviation_lists = 0
    for c in cells:
        source = "".join(c["source"])
        kinds = [k for o in c.get("outputs", []) for k in o.get("data", {})]
        text = "".join("".join(o.get("text", "")) for o in c.get("outputs", []) if o["output_type"] == "stream")
        if re.search(r"^fig = ", source, re.M):  # a cell that draws a figure
            assert "image/png" in kinds, f"{nb_path.name}: the figure of this cell is not shown:\n{source[:300]}"
        progress = [line for line in text.splitlines() if "peak memory" in line]
        assert len(progress) <= 3, f"{nb_path.name}: {len(progress)} progress lines in one cell"
        deviation_lists += "deviations(cfg" in source and "markdown_list" in source
    if not nb_path.name.startswith("06"):
        assert deviation_lists == 1, f"{nb_path.name}: the deviations are listed {deviation_lists} times"


QUICK_RUN = "import sys; from posenc_utils.runners import pipeline; pipeline.run('quick', sys.argv[1], only=['01', '02'])"


def test_two_runs_on_one_empty_cache_end_with_the_same_tables(tmp_path):
    """Two quick runs of notebooks 01-02 started together on one empty cache (two jobs of a sweep, or JupyterLab
    beside a batch run): both finish, and their tables are byte-identical."""
    env = {**os.environ, "POSENC_CACHE_DIR": str(tmp_path / "cache")}
    runs = [subprocess.Popen([sys.executable, "-c", QUICK_RUN, str(tmp_path / f"run{i}")], env=env, cwd=paths.PROJ_ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in (0, 1)]
    logs = [r.communicate(timeout=900)[0] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], "\n\n".join(log[-3000:] for log in logs)
    assert not [log for log in logs if "without encryption" in log]  # kernels over local sockets: no TCP warning
    for nb in (tmp_path / "run0" / "build" / "quick").glob("*.ipynb"):  # the quick profile's figures are shown too
        check_reads_like_a_paper(nb)
    index = (tmp_path / "run0" / "build" / "quick" / "index.html").read_text()
    assert index.count("<tr><td>0") == 2 and 'href="02_train_readouts.html"' in index  # the notebooks this run executed
    first, second = (tmp_path / "run0" / "quick"), (tmp_path / "run1" / "quick")
    tables = sorted(p.relative_to(first) for p in first.rglob("*.csv"))
    assert any(p.name == experiments.TABLE1.file(".csv") for p in tables)
    for rel in tables:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_kernels_started_at_once_each_have_their_own_sockets(tmp_path):
    """Notebooks run side by side (a warm rerun) start their kernels at once in one folder: over local sockets, each
    kernel needs socket files of its own (jupyter_client's default name is shared, and kernels sharing it read each
    other's messages and never answer)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import time\ntime.sleep(1)\nprint(6 * 7)")]
    nbformat.write(nb, tmp_path / "a.ipynb")
    jobs = [(str(tmp_path / "a.ipynb"), str(tmp_path / f"run{i}.ipynb"), {}, str(tmp_path), 120,
             str(tmp_path / f"phases{i}.json")) for i in range(3)]
    with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("fork")) as pool:
        list(pool.map(pipeline.execute_notebook, *zip(*jobs)))
    for i in range(3):
        assert nbformat.read(tmp_path / f"run{i}.ipynb", 4).cells[0].outputs[0]["text"] == "42\n"
    assert not [p for p in tmp_path.iterdir() if "ipc" in p.name]  # no socket file left in the notebooks' folder
