"""How results show in a notebook: no negative zero, no integer index, claims and lists as Markdown, thumbnails."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from posenc_utils.studies import claims
from posenc_utils.reporting import show
from posenc_utils.models.profiles import deviations, get_profile


def test_numbers_never_print_a_negative_zero():
    assert show.number(-0.0001) == "0.000" and show.number(-0.0) == "0.000" and show.number(-0.004, 2) == "0.00"
    assert show.number(-0.5) == "-0.500" and show.number(np.float32(0.25), 2) == "0.25"
    assert show.number(float("nan")) == "" and show.number("VGG16") == "VGG16" and show.number(7) == "7"


def test_tables_hide_the_integer_index_and_keep_a_named_one():
    df = pd.DataFrame({"encoder": ["a", "b"], "spc": [-0.00001, 0.5]})
    html = show.table(df).to_html()
    assert "0.000" in html and "-0.000" not in html and ">0<" not in html and ">1<" not in html
    wide = show.table(df.set_index("encoder")).to_html()
    assert "encoder" in wide and ">a<" in wide  # a meaningful index becomes a column


def test_claims_render_as_a_markdown_table():
    effect = claims.Effect("PosENet on noise", -0.001, -0.04, 0.03)
    found = [claims.decide(1, {}, "photos")]  # no frame: not testable, still a row
    md = show.claims(found).data
    assert md.splitlines()[0].startswith("| claim | verdict |") and md.count("\n") == 2
    assert "| 1 | not decided" in md
    assert effect.text().endswith("[-0.04, +0.03]")


def test_deviations_per_notebook_cover_the_list():
    for name in ("quick", "offline", "paper"):
        cfg = get_profile(name)
        every = deviations(cfg)
        per_notebook = {n: deviations(cfg, n) for n in ("01", "02", "03", "04", "05", "07", "08")}
        assert all(set(d) <= set(every) for d in per_notebook.values())
        assert set().union(*per_notebook.values()) == set(every), "each deviation touches some notebook"
    offline = get_profile("offline")
    assert any("Table 5/6" in d for d in deviations(offline, "05"))
    assert not any("Table 5/6" in d for d in deviations(offline, "02"))
    assert any("Table 4 runs at" in d for d in deviations(get_profile("quick"), "03"))


def test_thumbnails_and_manifest(tmp_path):
    import matplotlib.pyplot as plt

    paths = []
    for i in range(5):
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([0, i])
        paths.append(tmp_path / f"fig{i}.png")
        fig.savefig(paths[-1])
        plt.close(fig)
    grid = show.thumbnails(paths, columns=4)
    assert len(grid.axes) == 8 and [a.get_title() for a in grid.axes[:5]] == [f"fig{i}" for i in range(5)]
    plt.close(grid)
    m = {"git_commit": "abc", "git_dirty": False, "profile": "offline", "seeds": [0, 1, 2], "python": "3.11.7",
         "packages": {"torch": "2.14.1", "torchvision": "0.29.1", "seaborn": "0.13"},
         "notebook_times_s": {"cold": {"01_a.ipynb": 24.0, "02_b.ipynb": 36.0}}, "machine": {"cpu": "x", "cpus": 2},
         "results": ["a.csv", "b.csv"]}
    t = show.manifest_table(m).set_index("what").value
    assert t["commit"] == "abc" and t["seeds"] == "0, 1, 2" and t["torch"] == "2.14.1" and "seaborn" not in t
    assert t["cold run"] == "1.0 min (01: 24 s, 02: 36 s)" and t["results"] == "2 files"


@pytest.mark.parametrize("number", ["02", "06"])
def test_index_headlines(number):
    from posenc_utils.primitives import pages

    verdicts = pd.DataFrame({"claim": [1, 2, 7], "verdict": ["holds", "not decided", "holds"],
                             "outcome": ["holds", "not decided (stand-in)", "holds"], "notebook": [2, 2, 3]})
    line = pages.headline(number, verdicts)
    expected = {"02": "claim 1: holds; claim 2: not decided (stand-in)",
                "06": "2 holds; 0 not reproduced; 1 not decided; 0 contradicted (of 3 claims)"}[number]
    assert line == expected
