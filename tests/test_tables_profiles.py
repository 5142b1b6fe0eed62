"""Profiles, encoder-spec parsing, the paper's published numbers, table writing, deviations."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from posenc_utils.models import profiles
from posenc_utils.engine import tables
from posenc_utils.primitives.products import Product
from posenc_utils.models.profiles import EncoderSpec, ImageSetSpec, ReadoutSpec, deviations, get_profile

COLUMNS = ["encoder", "arch", "weights", "padding", "pattern", "test_set", "spc", "mae", "spc_undefined", "n_images"]


# ---------------------------------------------------------------- profiles


def test_profiles():
    quick, offline, paper = (get_profile(n) for n in ("quick", "offline", "paper"))
    assert (quick.name, offline.name, paper.name) == ("quick", "offline", "paper")
    assert quick.image_size == 64 and offline.image_size == paper.image_size == 224
    assert quick.readout.epochs == 2 and offline.readout.epochs == paper.readout.epochs == 15
    assert paper.readout.batch_size == 32 and paper.readout.lr == 0.1 and paper.readout.feature_size == 28
    assert offline.train_set.kind == "dead_leaves" and offline.train_set.n == 500
    assert paper.train_set == ImageSetSpec("DUTS-TR", "folder", n=None, dataset="DUTS-TR")
    assert [t.name for t in paper.test_sets] == ["PASCAL-S", "black", "white", "noise"]
    assert [t.name for t in offline.test_sets] == ["photos", "black", "white", "noise"]
    assert {(e.name, e.weights) for e in paper.encoders} == {
        ("posenet", "none"), ("vgg16", "imagenet"), ("resnet152", "imagenet")}
    # as the authors' released code: [0, 1] images, ResNet152 at layer1..4
    assert all(e.input == "unit" for e in paper.encoders if e.weights == "imagenet")
    assert next(e for e in paper.encoders if e.name == "resnet152").taps == ("layer1", "layer2", "layer3", "layer4")
    assert EncoderSpec("vgg16", "hed") in offline.encoders
    assert paper.feature_scaling == "none" and offline.feature_scaling == "tap"
    assert profiles.PROFILES == ("quick", "offline", "paper")


def test_unknown_profile():
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        get_profile("fast")


def test_with_overrides():
    base = get_profile("offline")
    p = get_profile("offline", image_size=32, readout={"epochs": 1, "batch_size": 4}, seed=7)
    assert p.image_size == 32 and p.seed == 7
    assert p.readout.epochs == 1 and p.readout.batch_size == 4
    assert p.readout.lr == base.readout.lr and p.readout.n_layers == base.readout.n_layers  # others kept
    assert base.image_size == 224 and base.readout.epochs == 15, "the original is not modified"
    q = base.with_overrides(readout=ReadoutSpec(n_layers=2))
    assert q.readout == ReadoutSpec(n_layers=2)
    assert base.with_overrides() == base
    with pytest.raises(TypeError):
        base.with_overrides(readout={"no_such_field": 1})
    with pytest.raises(TypeError):
        base.with_overrides(no_such_field=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.image_size = 1


def test_readout_label():
    assert ReadoutSpec().label == "1 layer, 3x3, pad 0"
    assert ReadoutSpec(n_layers=2, kernel=7, padding=3).label == "2 layers, 7x7, pad 3"


@pytest.mark.parametrize("text, expected", [
    ("tv:resnet50:random", EncoderSpec("tv:resnet50", "random", "zeros")),
    ("tv:resnet50", EncoderSpec("tv:resnet50")),
    ("tv:vgg11:imagenet:reflect", EncoderSpec("tv:vgg11", "imagenet", "reflect")),
    ("vgg16:hed", EncoderSpec("vgg16", "hed", "zeros")),
    ("vgg16:random:none", EncoderSpec("vgg16", "random", "none")),
    ("resnet152", EncoderSpec("resnet152", "random", "zeros")),
])
def test_parse(text, expected):
    assert EncoderSpec.parse(text) == expected


@pytest.mark.parametrize("text", ["tv", "tv:", "tv::random", "vgg16:random:none:extra", "tv:resnet50:a:b:c"])
def test_parse_errors(text):
    with pytest.raises(ValueError):
        EncoderSpec.parse(text)


def test_labels():
    assert EncoderSpec("posenet", "none").label == "PosENet"
    assert EncoderSpec("vgg16", "imagenet").label == "VGG16 (ImageNet)"
    assert EncoderSpec("vgg16", "random", "none").label == "VGG16 (random init, padding none)"
    assert EncoderSpec("tv:resnet50", "random").label == "resnet50 (random init)"
    assert EncoderSpec("efficientnet_lite0", "imagenet").label == "EfficientNet-Lite0 (ImageNet)"


# ---------------------------------------------------------------- the paper's numbers


def test_paper_numbers():
    t1 = tables.paper_numbers("table1")
    assert len(t1) == 60
    assert set(t1["model"]) == {"PosENet", "VGG16", "ResNet152"}
    assert set(t1["test_set"]) == {"PASCAL-S", "black", "white", "noise"}
    assert set(t1["pattern"]) == {"H", "V", "G", "HS", "VS"}
    assert not t1.duplicated(["pattern", "model", "test_set"]).any()
    row = t1[(t1.model == "VGG16") & (t1.pattern == "H") & (t1.test_set == "PASCAL-S")]
    assert row.spc.item() == pytest.approx(0.742)
    with pytest.raises(ValueError, match="no published numbers"):
        tables.paper_numbers("table99")


def _ours(rows):
    defaults = dict(weights="random", padding="zeros", mae=0.1, spc_undefined=0, n_images=8)
    df = pd.DataFrame([defaults | r for r in rows])
    df["encoder"] = [EncoderSpec(a, w, p).label for a, w, p in zip(df.arch, df.weights, df.padding)]
    return df[COLUMNS]


def test_with_paper():
    ours = _ours([
        dict(arch="vgg16", weights="hed", pattern="H", test_set="photos", spc=0.5),
        dict(arch="tv:resnet18", pattern="H", test_set="photos", spc=0.4),
        dict(arch="posenet", weights="none", pattern="V", test_set="black", spc=0.0, spc_undefined=8),
        dict(arch="efficientnet_lite0", weights="imagenet", pattern="G", test_set="noise", spc=0.3),
        dict(arch="vgg16", pattern="H", test_set="dead_leaves", spc=0.9),
    ])
    out = tables.with_paper(ours, get_profile("offline"))
    assert len(out) == len(ours)
    assert list(out["arch"]) == list(ours["arch"]), "row order is kept"
    assert set(COLUMNS) <= set(out.columns) and {"paper_spc", "paper_mae", "compared_with"} <= set(out.columns)
    assert out.loc[0, "paper_spc"] == pytest.approx(0.742)
    assert out.loc[0, "paper_mae"] == pytest.approx(0.149)
    assert out.loc[0, "compared_with"] == "VGG16 (ImageNet) on PASCAL-S"
    assert np.isnan(out.loc[1, "paper_spc"]) and out.loc[1, "compared_with"] == ""
    paper = tables.paper_numbers("table1")
    pick = lambda m, p, t: paper[(paper.model == m) & (paper.pattern == p) & (paper.test_set == t)].spc.item()
    assert out.loc[2, "paper_spc"] == pytest.approx(pick("PosENet", "V", "black"))
    assert out.loc[3, "paper_spc"] == pytest.approx(pick("ResNet152", "G", "noise"))  # Lite0 stands in
    assert "ResNet152" in out.loc[3, "compared_with"]
    assert np.isnan(out.loc[4, "paper_spc"]), "no paper test set called dead_leaves"


def test_spc_overview():
    ours = _ours([
        dict(arch="vgg16", pattern="H", test_set="photos", spc=0.5),
        dict(arch="vgg16", pattern="H", test_set="black", spc=0.0, spc_undefined=1),
    ])
    wide = tables.spc_overview(tables.with_paper(ours, get_profile("offline")))
    assert list(wide.columns) == ["encoder", "pattern", "photos", "black"]
    assert wide.loc[0, "photos"] == "0.50 (0.74)"
    assert wide.loc[0, "black"].startswith("0.00 (0.75)") and "1 undef." in wide.loc[0, "black"]


def test_write_table(tmp_path):
    df = pd.DataFrame({"encoder": ["VGG16 (HED)", "PosENet"], "n_images": [60, 1], "b": [0.123456, np.nan]})
    path = tables.write_table(df, tmp_path / "out", Product("t1", "02", "table"), caption="Table 1: a caption")
    assert path == tmp_path / "out" / "t1.csv"
    back = pd.read_csv(path)
    assert back["b"][0] == pytest.approx(0.123456) and np.isnan(back["b"][1])
    md = (tmp_path / "out" / "t1.md").read_text()
    assert md.startswith("Table 1: a caption\n\n")
    assert "0.123 " in md and "0.123456" not in md, "the markdown is rounded"
    assert "| VGG16 (HED)" in md and "|         60 |" in md, "text and counts are written as they are"
    assert len(md.strip().splitlines()) == 6  # caption, blank line, header, rule, 2 rows
    tables.write_table(df, tmp_path / "out", Product("t2", "02", "table"))
    assert (tmp_path / "out" / "t2.md").read_text().startswith("|")


# ---------------------------------------------------------------- deviations


def test_deviations():
    offline = deviations(get_profile("offline"))
    paper = deviations(get_profile("paper"))
    text = " ".join(offline)
    assert "dead-leaves" in text and "HED" in text and "EfficientNet-Lite0" in text
    assert "pooled standard deviation" in text
    assert len(paper) < len(offline)
    paper_text = " ".join(paper)
    assert "dead-leaves" not in paper_text and "HED" not in paper_text and "pooled standard deviation" not in paper_text
    assert any("five stages" in d for d in offline)  # offline's ResNet tap choice differs from the authors' code
    # the paper profile follows the authors' code and lists those choices
    assert any("layer1..4" in d and "authors' released code" in d for d in paper)
    # notebook 05: scenes and a narrow network offline; the paper profile keeps VGG16's width and datasets
    assert any("generated scenes" in d for d in offline) and any("1/8 of VGG16's width" in d for d in offline)
    assert not any("generated scenes" in d or "VGG16's width" in d for d in paper)
    assert any("no invented border" in d for d in paper), "the choices the paper leaves open are listed in every profile"
    assert any("[0, 1]" in d and "authors' released code" in d for d in paper)
    assert not any("five stages" in d or "mean/std input normalization" in d for d in paper)
    five = get_profile("paper", encoders=(EncoderSpec("resnet152", "imagenet", taps=profiles.RESNET152_FIVE_STAGES),))
    assert any("five stages" in d for d in deviations(five))
    normalized = get_profile("paper", encoders=(EncoderSpec("vgg16", "imagenet", input="imagenet"),))
    assert any("mean/std input normalization" in d for d in deviations(normalized))
    quick = " ".join(deviations(get_profile("quick")))
    assert "64x64" in quick and "2 epochs, batch 8" in quick
    assert "64x64" not in text


def test_one_source_for_the_natural_test_set():
    """Every table, figure and claim takes the natural test set from the profile: no test-set name is written
    anywhere else in the package (the dataset registry, the profiles and the specs aside) or in the notebooks."""
    import re

    from posenc_utils.primitives import paths

    assert get_profile("quick").natural_test_set == get_profile("offline").natural_test_set == "photos"
    assert get_profile("paper").natural_test_set == "PASCAL-S"
    literal = re.compile(r"""(?<![\w-])["'](photos|PASCAL-S)["']""")
    # the profiles, the specs (DownstreamSpec's defaults: the paper's Table 5 sets), the dataset registry, the photos' maker,
    # the datasets' stand-ins (a dataset's folders, by its registry name)
    allowed = {"profiles.py", "specs.py", "datasets.py", "images.py", "standin.py"}
    for path in sorted((paths.PROJ_ROOT / "posenc_utils").rglob("*.py")):
        if path.name in allowed:
            continue
        assert not literal.search(path.read_text()), f"{path.name} names a test set: use Profile.natural_test_set"
    for nb in sorted(paths.NOTEBOOKS_DIR.glob("*.ipynb")):
        assert not re.search(r'\\"(photos|PASCAL-S)\\"', nb.read_text()), nb.name
