"""The paper profile end to end on tiny stand-in datasets, and its clear errors when data or weights are missing."""
from __future__ import annotations

import pytest

from posenc_utils.studies import experiments
from posenc_utils.engine import plots
from posenc_utils.models.profiles import EncoderSpec, get_profile
from standin_data import make_probe_datasets as make_datasets

PATTERNS = ("H", "V", "G", "HS", "VS")
TEST_SETS = ("PASCAL-S", "black", "white", "noise")
ENCODERS = (EncoderSpec("posenet", "none"), EncoderSpec("vgg16", "random"))


def tiny_paper_profile(**extra):
    return get_profile("paper", image_size=32, readout={"epochs": 1, "batch_size": 4}, **extra)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_datasets(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="module")
def table1_run(data_root, tmp_path_factory):
    """experiments.table1 for the paper profile on the stand-in data (computed once for the module)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POSENC_DATA_ROOT", str(data_root))
        mp.setenv("POSENC_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        mp.setenv("CI", "1")
        profile = tiny_paper_profile(encoders=ENCODERS)
        t1 = experiments.table1(profile)
        train, tests = experiments.image_sets(profile)
    return profile, t1, train, tests


def test_table1_shape(table1_run):
    profile, t1, train, tests = table1_run
    table, results = t1.table, t1.runs
    assert list(table.columns) == ["encoder", "arch", "weights", "padding", "pattern", "test_set", "spc", "mae",
                                   "spc_undefined", "n_images", "n_seeds", "spc_sd_seeds", "spc_ci_low", "spc_ci_high",
                                   "spc_boot_low", "spc_boot_high", "train_loss", "const_loss", "const_mae",
                                   "constant_share", "readout_failed", "position_variance", "position_variance_low",
                                   "position_variance_high", "position_variance_train", "position_variance_train_low",
                                   "position_variance_train_high", "rowcol", "rowcol_low", "rowcol_high"]
    assert profile.seeds == 3, "the paper profile reports 3 seeds"
    decides = table.arch == "posenet"  # this tiny run's VGG16 is random-init: one seed (it decides no claim)
    assert (table[decides].n_seeds == 3).all() and (table[~decides].n_seeds == profile.random_init_seeds).all()
    ok = table.spc_ci_low.notna()
    assert ok.any() and (table.spc_ci_low[ok] <= table.spc[ok] + 1e-9).all() and (table.spc[ok] <= table.spc_ci_high[ok] + 1e-9).all()
    assert len(table) == 2 * 5 * 4
    assert set(table.test_set) == set(TEST_SETS)
    assert set(table.pattern) == set(PATTERNS)
    assert set(table.encoder) == {"PosENet", "VGG16 (random init)"} == set(results)
    assert not table.duplicated(["encoder", "pattern", "test_set"]).any()
    n = table.set_index(["encoder", "pattern", "test_set"])["n_images"]
    assert (n.xs("PASCAL-S", level="test_set") == 3).all()
    assert (n.drop("PASCAL-S", level="test_set") == 1).all()
    assert table.spc.between(-1, 1).all() and table.mae.between(0, 1).all()
    assert (table.spc_undefined <= table.n_images).all()


def test_table1_returns_its_per_image_metrics(table1_run):
    """The per-image metrics come back beside the table (not in its ``attrs``): every seed's, every image."""
    profile, t1, train, tests = table1_run
    assert t1.table.attrs == {} and t1.per_image.attrs == {}
    assert list(t1.per_image.columns) == ["encoder", "arch", "weights", "padding", "seed", "test_set", "image", "source",
                                          "pattern", "spc", "mae", "train_loss", "readout_failed"]
    seeds = t1.per_image.groupby("encoder").seed.nunique()
    assert seeds["PosENet"] == 3 and seeds["VGG16 (random init)"] == profile.random_init_seeds
    assert len(t1.per_image) == (3 + profile.random_init_seeds) * 5 * (3 + 1 + 1 + 1)
    assert set(t1.runs) == set(t1.table.encoder)


def test_table1_image_sets(table1_run):
    profile, t1, train, tests = table1_run
    assert train.name == "DUTS-TR" and train.n == 6 and train.size == 32
    assert [t.name for t in tests] == list(TEST_SETS)
    assert [t.n for t in tests] == [3, 1, 1, 1]


def test_posenet_on_constant_images_is_undefined(table1_run):
    # PosENet sees the image itself; on an all-black or all-white image its 3x3 convolution
    # gives a constant map: no ranking, so SPC is undefined (reported as 0 and counted)
    table = table1_run[1].table
    pos = table[(table.encoder == "PosENet") & table.test_set.isin(["black", "white"])]
    assert len(pos) == 10
    assert (pos.spc_undefined == 1).all() and (pos.spc == 0).all()


def test_table1_probe_results(table1_run):
    profile, t1, train, tests = table1_run
    table, results = t1.table, t1.runs
    r = results["VGG16 (random init)"]
    assert r.readout.patterns == PATTERNS
    assert set(r.predictions) == set(TEST_SETS)
    assert r.predictions["PASCAL-S"].shape == (3, 5, 26, 26)
    assert len(r.per_image) == (3 + 1 + 1 + 1) * 5
    assert r.readout.model.body[0].in_channels == 1472
    summary = r.summary()
    assert set(summary.encoder) == {"VGG16 (random init)"} and len(summary) == 20


def test_figures(table1_run, tmp_path):
    profile, t1, train, tests = table1_run
    table, results = t1.table, t1.runs
    f3 = plots.fig3_samples_and_targets(train, tests, tmp_path / "fig3.png")
    f4 = plots.fig4_qualitative(results, tests[0], 1, tmp_path / "figs" / "fig4.png")
    for path in (tmp_path / "fig3.png", tmp_path / "figs" / "fig4.png"):
        assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f4.axes[0].get_title() == "input"
    assert len(f4.axes) == 5 * (2 + len(results))
    assert len(f3.axes) == 2 * max(3 + 3 + 1 + 1 + 1, 5)
    import matplotlib.pyplot as plt

    plt.close("all")


def test_paper_encoders_without_weights_name_the_file(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("POSENC_DATA_ROOT", str(data_root))
    monkeypatch.setenv("POSENC_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch"))
    profile = tiny_paper_profile()
    assert EncoderSpec("vgg16", "imagenet", input="unit") in profile.encoders
    with pytest.raises(FileNotFoundError) as e:
        experiments.table1(profile)
    msg = str(e.value)
    assert "vgg16-397923af.pth" in msg
    assert str(tmp_path / "empty-torch" / "hub" / "checkpoints") in msg


def test_paper_profile_without_data(tmp_path, monkeypatch):
    monkeypatch.setenv("POSENC_DATA_ROOT", str(tmp_path / "no-data"))
    with pytest.raises(FileNotFoundError) as e:
        experiments.image_sets(get_profile("paper"))
    msg = str(e.value)
    assert "DUTS-TR" in msg and "DUTS-TR-Image" in msg
    assert "http://saliencydetection.net/duts/" in msg


def test_paper_profile_without_pascal(tmp_path, monkeypatch):
    root = tmp_path / "raw"
    make_datasets(root)
    import shutil

    shutil.rmtree(root / "PASCAL-S")
    monkeypatch.setenv("POSENC_DATA_ROOT", str(root))
    with pytest.raises(FileNotFoundError, match="PASCAL-S") as e:
        experiments.image_sets(tiny_paper_profile())
    assert "cbs.ic.gatech.edu/salobj" in str(e.value)


def test_parse_encoders():
    assert experiments.parse_encoders(["tv:resnet50:random", "vgg16:random:none"]) == (
        EncoderSpec("tv:resnet50", "random"), EncoderSpec("vgg16", "random", "none"))


def test_missing_inputs_lists_everything_before_a_run(capsys):
    from posenc_utils.runners import pipeline
    from posenc_utils.runners.plan import missing_inputs

    missing = missing_inputs(get_profile("paper"), downstream=False)
    text = "\n".join(missing)
    assert len(missing) == 4, missing  # two dataset folders, two weight files
    assert "DUTS-TR-Image" in text and "PASCAL-S" in text
    assert "vgg16-397923af.pth" in text and "resnet152-394f9c45.pth" in text  # the original V1 weights
    everything = missing_inputs(get_profile("paper"))
    assert len(everything) == 4 + 6, everything  # and notebook 05's: MSRA-B, ECSSD, PASCAL-S, DUT-OMRON, VOC x2
    assert any("MSRA-B" in m for m in everything) and any("VOCdevkit" in m for m in everything)
    assert missing_inputs(get_profile("quick")) == []
    assert pipeline.main(["run", "--profile", "paper"]) == 2
    err = capsys.readouterr().err
    assert "cannot run" in err and "--only 01 02 03 04" in err


def test_notebooks_03_04_in_the_paper_profile(data_root, tmp_path, monkeypatch):
    """Table 4 and Tables 2/3 run in the paper profile on the stand-in data, with the paper's settings
    (C -> C stacked readouts, all training images) and its published values beside ours."""
    from posenc_utils.studies import claims, layer_analysis, padding_ablation

    monkeypatch.setenv("POSENC_DATA_ROOT", str(data_root))
    monkeypatch.setenv("POSENC_CACHE_DIR", str(tmp_path / "cache"))
    vgg = EncoderSpec("vgg16", "random")
    profile = tiny_paper_profile(encoders=(EncoderSpec("posenet", "none"), vgg), table4_image_size=196)
    t4_result = padding_ablation.table4(profile)
    t4 = t4_result.table
    assert t4.attrs == {} and len(t4_result.runs) == 5
    assert len(t4) == (3 + 2) * 5 * 4 and set(t4.setting) == {"PEM padding 0", "PEM padding 1", "PEM padding 2",
                                                             "with padding", "without padding"}
    published = t4[(t4.test_set == "PASCAL-S") & t4.pattern.isin(["H", "G", "HS"])]
    assert published.paper_spc.notna().all() and t4[t4.test_set != "PASCAL-S"].paper_spc.isna().all()
    claim7 = claims.decide(7, {"table4": t4_result.per_image}, "PASCAL-S")
    assert claim7.verdict in (claims.HOLDS, claims.CONTRADICTED, claims.NOT_DECIDED) and claim7.parts

    settings = layer_analysis.capacity_settings(profile)
    assert all(r[3].width is None for r in settings)  # the paper's C -> C
    capacity = layer_analysis.readout_capacity(profile.with_overrides(encoders=(EncoderSpec("posenet", "none"),)))
    t2a, t2b = capacity.table, capacity.more["table2b"]
    assert len(t2a) == len(t2b) == 3 * len(layer_analysis.TABLE2_PATTERNS) * 4
    assert t2a[(t2a.test_set == "PASCAL-S") & t2a.pattern.isin(["H", "G", "HS"])].paper_spc.notna().all()
    t3 = layer_analysis.per_stage(profile).table
    assert set(t3.setting) == {f"features f{i}" for i in range(1, 6)} | {"features f1-f5"}
    assert t3[(t3.test_set == "PASCAL-S") & t3.pattern.isin(["H", "G"])].paper_spc.notna().all()
