"""The paper profile at scale: the generated stand-ins for its datasets, and the scale benchmark's path on a few
hundred images (the benchmark itself, at 10,553, is `make bench-scale` and its committed record)."""
from __future__ import annotations

import json

import pytest

from posenc_utils.primitives import standin
from posenc_utils.reporting import bench
from posenc_utils.runners.plan import missing_inputs
from posenc_utils.models.profiles import get_profile


def test_the_standins_fill_every_folder_of_the_paper_profile(tmp_path, monkeypatch):
    root = standin.make_paper_layouts(tmp_path / "raw", duts_tr=5, pascal_s=3, sod_train=3, sod_test=2, voc_train=3,
                                      voc_val=2, downstream_size=40)
    monkeypatch.setenv("POSENC_DATA_ROOT", str(root))
    paper = get_profile("paper")
    assert missing_inputs(paper.with_overrides(encoders=paper.encoders[:1])) == []
    jpgs = sorted((root / "DUTS-TR" / "DUTS-TR-Image").glob("*.jpg"))
    assert len(jpgs) == 5 and len(list((root / "PASCAL-S" / "Imgs").glob("*.jpg"))) == 3
    assert len(list((root / "PASCAL-S" / "Masks").glob("*.png"))) == 3
    from PIL import Image
    sizes = {Image.open(f).size for f in jpgs}
    assert all(max(s) == 400 and 300 <= min(s) <= 400 for s in sizes), "the releases' usual sizes"


def test_the_scale_benchmark_on_a_few_hundred_images(tmp_path, monkeypatch):
    """Each point from a cold cache in its own process; its disk is the plan's arithmetic; its memory is bounded."""
    root = standin.make_paper_layouts(tmp_path / "raw", duts_tr=200, pascal_s=20, sod_train=2, sod_test=1,
                                      voc_train=2, voc_val=1, downstream_size=40)
    monkeypatch.setenv("POSENC_CACHE_DIR", str(tmp_path / "unused"))  # each point uses its own temporary cache
    record = bench.scale(sizes=(100, 200), root=str(root), output_dir=str(tmp_path / "out"))
    assert json.loads(bench.SCALE.path(tmp_path / "out" / "offline").read_text()) == record
    assert [p["training_images"] for p in record["points"]] == [100, 200]
    assert all(p["images_per_encoder"] == n + 20 + 3 for p, n in zip(record["points"], (100, 200)))
    # the stored features are what the plan computes (the cache holds them and nothing larger)
    assert record["features_over_plan"] == [pytest.approx(1.0, abs=0.01)] * 2
    assert record["max_peak_rss_gb"] < 4
    assert record["points"][1]["wall_s"] > record["points"][0]["wall_s"] * 0.8


def test_the_readme_states_the_committed_scale_record():
    """The README's sentence on the scale benchmark gives the committed record's numbers, not typed ones."""
    import re

    from posenc_utils.primitives import paths
    record = json.loads(bench.SCALE.path(paths.FIGURES_DIR / "offline").read_text())
    readme = re.sub(r"\s+", " ", (paths.PROJ_ROOT / "README.md").read_text())
    points = record["points"]
    said = (f"{record['cpu']}, {record['torch_threads']} threads: "
            + ", ".join(f"{p['training_images']:,} images in {p['wall_s']:.0f} s" for p in points)
            + "; each added image " + " then ".join(f"{x:.4f} s" for x in record["seconds_per_added_image"])
            + f"; peak resident memory up to {record['max_peak_rss_gb']:.2f} GB; the features on disk "
            + " and ".join(f"{x:.2f}" for x in record["features_over_plan"]) + " times the plan's bytes; readout training "
            + " and ".join(f"{p['phases_s']['readout_training']:.1f}" for p in points) + " s)")
    assert said in readme, said
