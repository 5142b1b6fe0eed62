"""The measure registry: the columns it gives every table, the probe summaries, and the share of feature
variance explained by position (streamed against a direct computation, its bounds, its interval, its cache)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from posenc_utils.engine import measures
from posenc_utils.primitives import metrics, paths, timing
from posenc_utils.primitives.metrics import cluster_bootstrap_ci, t_interval
from posenc_utils.engine.features import FeatureSet
from posenc_utils.engine.measures import (feature_columns, feature_table, position_variance, seed_columns, summary_columns,
                                   table_columns, variance_components)
from posenc_utils.models.profiles import EncoderSpec


def feature_set(tmp_path, values: np.ndarray, taps=(("a", None),), name: str = "f") -> FeatureSet:
    """A FeatureSet over ``values`` (N, C, S, S), stored as the cache stores features: float16, channels-last."""
    n, c, s, _ = values.shape
    path = tmp_path / f"{name}.npy"
    np.save(path, np.ascontiguousarray(values.transpose(0, 2, 3, 1)).astype(np.float16))
    channels = tuple(k or c for _, k in taps)
    return FeatureSet(EncoderSpec("vgg16", "random"), "test", f"key-{name}", path, n, tuple(t for t, _ in taps),
                      channels, tuple(1.0 for _ in taps), s)


def direct_share(f: np.ndarray) -> float:
    """The definition, written out: f (N, C, S, S)."""
    f = f.astype(np.float64)
    mu = f.mean(0)  # (C, S, S)
    m = f.mean((0, 2, 3))
    p = ((mu - m[:, None, None]) ** 2).mean((1, 2))
    t = ((f - m[None, :, None, None]) ** 2).mean((0, 2, 3))
    keep = t > 0
    return float((p[keep] / t[keep]).mean())


def test_streamed_share_equals_the_definition(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(13, 6, 5, 5)) + 3 * rng.normal(size=(1, 6, 5, 5)) + 10  # position plus noise, an offset
    f = f.astype(np.float16).astype(np.float64)  # what the file holds
    monkeypatch.setattr(measures, "BLOCK_VALUES", 2 * 25 * 6)  # two images per step: several steps
    fs = feature_set(tmp_path, f)
    share, lo, hi = position_variance(fs)
    assert share == pytest.approx(direct_share(f), rel=1e-6)
    # the leave-one-group-out rows are the definition on the images left in
    groups = measures.image_groups(13)
    comp = variance_components(fs, groups)
    for g in range(groups.max() + 1):
        kept = f[groups != g]
        assert measures.variance_share(comp["P"][g + 1], comp["T"][g + 1])[0] == pytest.approx(direct_share(kept), rel=1e-6)
    assert lo <= share <= hi and 0 <= lo and hi <= 1
    # a channel selection is the share over those channels
    sel = np.array([1, 4])
    assert position_variance(fs, sel)[0] == pytest.approx(direct_share(f[:, sel]), rel=1e-6)


def test_bounds_and_constant_channels(tmp_path):
    rng = np.random.default_rng(1)
    pattern = rng.normal(size=(1, 4, 6, 6))
    same = np.repeat(pattern, 5, axis=0)  # the same content on every image: all variance is positional
    assert position_variance(feature_set(tmp_path, same, name="same"))[0] == pytest.approx(1.0)
    noise = rng.normal(size=(400, 3, 6, 6)).astype(np.float16).astype(np.float64)  # i.i.d. over images and locations: no position, share ~ 1/N
    share, lo, hi = position_variance(feature_set(tmp_path, noise, name="noise"))
    assert share < 0.01 and lo <= share <= hi
    # a constant channel is left out of the average; all constant: undefined
    with_constant = np.concatenate([noise[:50], np.full((50, 1, 6, 6), 2.0)], axis=1)
    assert position_variance(feature_set(tmp_path, with_constant, name="c"))[0] == pytest.approx(
        direct_share(noise[:50]), rel=1e-6)
    assert np.isnan(position_variance(feature_set(tmp_path, np.full((4, 2, 3, 3), 1.5), name="k"))[0])
    # one image: the measure is one of a set of images
    assert np.isnan(position_variance(feature_set(tmp_path, noise[:1], name="one"))[0])


def test_groups_keep_source_photographs_together():
    g = measures.image_groups(7, np.array([5, 5, 2, 9, 2, 5, 9]), k=2)
    assert len(set(g[[0, 1, 5]])) == 1 and len(set(g[[2, 4]])) == 1 and len(set(g)) == 2
    assert list(measures.image_groups(6, k=3)) == [0, 0, 1, 1, 2, 2]


def test_cached_after_one_pass(tmp_path):
    fs = feature_set(tmp_path, np.random.default_rng(2).normal(size=(6, 2, 4, 4)))
    with timing.record() as clock:
        first = position_variance(fs)
        seconds = clock.seconds["position_variance"]
        assert position_variance(fs) == first and clock.seconds["position_variance"] == seconds  # read, not recomputed
    assert seconds > 0


def test_feature_table_rows(tmp_path):
    rng = np.random.default_rng(3)
    train = feature_set(tmp_path, rng.normal(size=(8, 3, 4, 4)), name="train")
    tests = {"photos": feature_set(tmp_path, rng.normal(size=(6, 3, 4, 4)), name="photos"),
             "black": feature_set(tmp_path, np.zeros((1, 3, 4, 4)), name="black")}
    df = feature_table(train, tests, sources={"photos": np.array([0, 0, 1, 1, 2, 2])})
    assert list(df.columns) == ["test_set", *feature_columns()]
    assert df.position_variance_train.nunique() == 1 and df.position_variance.isna().tolist() == [False, True]
    assert (df.position_variance_low <= df.position_variance).iloc[0]
    assert df.rowcol.notna().all() and "rowcol_train" not in df  # defined on one image: it is trained elsewhere
    assert list(feature_table(train, tests, table="table4").columns) == ["test_set", *feature_columns("table4")]


def test_registry_columns_are_the_tables_columns():
    assert summary_columns() == ["spc", "mae", "spc_undefined", "n_images"]
    assert seed_columns() == ["n_seeds", "spc_sd_seeds", "spc_ci_low", "spc_ci_high", "spc_boot_low", "spc_boot_high"]
    variance = ["position_variance", "position_variance_low", "position_variance_high",
                "position_variance_train", "position_variance_train_low", "position_variance_train_high"]
    rowcol = ["rowcol", "rowcol_low", "rowcol_high"]  # trained on the training images: not scored on them
    assert feature_columns() == feature_columns("table1") == feature_columns("table3") == variance + rowcol
    assert feature_columns("table4") == feature_columns("modes") == variance  # a trained measure only where it is read
    cols = table_columns(["encoder", "pattern", "test_set"], middle=["tap"])
    assert cols == ["encoder", "pattern", "test_set", "spc", "mae", "spc_undefined", "n_images", "tap", *seed_columns(),
                    "train_loss", "const_loss", "const_mae", "constant_share", "readout_failed",
                    "paper_spc", "paper_mae", "compared_with", *feature_columns()]
    assert [m.name for m in measures.probe_measures()] == ["spc", "mae"]
    assert measures.MEASURES[0].function is metrics.spc and measures.MEASURES[1].function is metrics.mae


def _per_image(rng, seeds=(0, 1, 2)):
    rows = []
    for s in seeds:
        for t in ("photos", "black"):
            for p in ("H", "G"):
                for i in range(5):
                    v = np.nan if (t == "black" and i < 2 + s % 2) else rng.uniform(-1, 1)
                    rows.append(dict(seed=s, test_set=t, pattern=p, image=i, spc=v, mae=rng.uniform(0, 1)))
    return pd.DataFrame(rows)


def test_summaries_equal_the_former_spc_mae_code():
    """The registry's summaries give what the hand-written SPC/MAE code gave, to the last bit."""
    df = _per_image(np.random.default_rng(4))
    sources = {"photos": np.array([0, 0, 1, 2, 2])}
    old = former_seed_summary(df, ["test_set", "pattern"], sources)
    pd.testing.assert_frame_equal(measures.seed_summary(df, ["test_set", "pattern"], sources), old, check_exact=True)
    one = df[df.seed == 0].drop(columns="seed")
    pd.testing.assert_frame_equal(measures.summarize(one, ["test_set", "pattern"]),
                                  former_summarize(one, ["test_set", "pattern"]), check_exact=True)


def test_beside_spc_and_rank_agreement():
    rows = [dict(encoder=e, pattern=p, test_set=t, spc=s + (0.01 if p == "H" else 0), position_variance=v)
            for e, s, v in (("a", 0.1, 0.2), ("b", 0.5, 0.3), ("c", 0.9, 0.6), ("d", 0.7, 0.1))
            for p in ("H", "G") for t in ("photos", "black")]
    df = pd.DataFrame(rows)
    side = measures.beside_spc(df, ["encoder"], "photos")
    assert list(side.columns) == ["encoder", "spc", "position_variance"] and len(side) == 4
    assert side.spc.tolist() == pytest.approx([0.105, 0.505, 0.905, 0.705])
    assert measures.rank_agreement(df, ["encoder"], "photos") == pytest.approx(0.4)
    assert np.isnan(measures.rank_agreement(df[df.encoder.isin(["a", "b"])], ["encoder"], "photos"))


def test_readme_worked_example_is_the_registry_entry():
    """The README's 'A new measure of position' quotes the position-variance entry as it stands in measures.py."""
    section = (paths.PROJ_ROOT / "README.md").read_text().split("### A new measure of position", 1)[1]
    quoted = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'Measure("position_variance"' in quoted and quoted in (paths.PROJ_ROOT / "posenc_utils" / "engine" / "measures.py").read_text()
    assert measures.feature_measures()[0].name == "position_variance" and measures.feature_measures()[0].paper_column is None
    table = measures.overview().set_index("measure")
    assert table.loc["position_variance", "paper"] == "not reported by the paper"
    assert table.loc["spc", "paper"] == "reported (paper_spc)" and list(table.index) == [m.name for m in measures.MEASURES]


# the hand-written SPC/MAE summaries the registry replaced (metrics.py before the registry), kept as the reference

def former_summarize(per_image: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Average per-image ``spc``/``mae`` within groups, reporting undefined SPC as 0 and counting it."""
    g = per_image.groupby(by, sort=False)
    out = g.agg(
        spc=("spc", lambda s: float(s.fillna(0.0).mean())),
        mae=("mae", "mean"),
        spc_undefined=("spc", lambda s: int(s.isna().sum())),
        n_images=("spc", "size"),
    )
    return out.reset_index()


def former_seed_summary(per_image: pd.DataFrame, by: list[str], sources: dict | None = None, level: float = 0.95,
                 n_boot: int = 1000) -> pd.DataFrame:
    """former_summarize over readout seeds: the mean SPC/MAE over seeds (undefined SPC as 0), the
    seeds' standard deviation and ``level`` t-interval, and a bootstrap interval over test images of
    the seed-averaged SPC, resampling whole source photographs where ``sources`` gives them
    (test set name -> source id of each image). ``per_image`` has ``seed`` and ``image`` columns."""
    rows = []
    for keys, g in per_image.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        cell = dict(zip(by, keys))
        g = g.assign(spc0=g.spc.fillna(0.0))
        per_seed = g.groupby("seed").spc0.mean()
        lo, hi = t_interval(per_seed.values, level)
        per_img = g.groupby("image").spc0.mean()
        groups = (sources or {}).get(cell.get("test_set"))
        groups = None if groups is None else np.asarray(groups)[per_img.index.values]
        blo, bhi = (cluster_bootstrap_ci(per_img.values, groups, n_boot=n_boot, level=level)
                    if len(per_img) > 1 else (float("nan"), float("nan")))
        rows.append(dict(cell, spc=float(per_seed.mean()), mae=float(g.mae.mean()),
                         spc_undefined=int(g.spc.isna().groupby(g.seed).sum().max()), n_images=int(g.image.nunique()),
                         n_seeds=len(per_seed), spc_sd_seeds=float(per_seed.std(ddof=1)) if len(per_seed) > 1 else float("nan"),
                         spc_ci_low=lo, spc_ci_high=hi, spc_boot_low=blo, spc_boot_high=bhi))
    return pd.DataFrame(rows)


def test_baseline_summary_gives_each_row_its_constant_and_its_failures():
    """Every readout row's baseline: the best constant prediction's squared error (the map's variance) and absolute
    error (at its median), the share of images whose prediction is constant, and the seeds that failed to train."""
    from posenc_utils.primitives.targets import constant_baseline, target_map

    t = target_map("G", 32).astype(np.float64)
    assert constant_baseline("G", 32) == pytest.approx((t.var(), np.abs(t - np.median(t)).mean()))
    h = constant_baseline("H", 224)
    assert h[0] == pytest.approx(1 / 12, rel=0.01) and h[1] == pytest.approx(0.25, rel=0.01)  # uniform on [0, 1]
    df = pd.DataFrame(dict(test_set="photos", pattern=["G"] * 4 + ["H"] * 4, seed=[0, 0, 1, 1] * 2, image=[0, 1] * 4,
                           spc=[0.5, np.nan, 0.4, 0.3, np.nan, np.nan, 0.1, 0.2],
                           train_loss=[0.01, 0.01, 0.02, 0.02, 0.2, 0.2, 0.05, 0.05],
                           readout_failed=[False] * 4 + [True, True, False, False]))
    out = measures.baseline_summary(df, ["test_set", "pattern"], 32).set_index("pattern")
    assert list(out.columns) == ["test_set", *measures.BASELINE_COLUMNS]
    assert out.loc["G", "train_loss"] == pytest.approx(0.015) and out.loc["H", "readout_failed"] == 1
    assert out.loc["G", "constant_share"] == 0.25 and out.loc["H", "constant_share"] == 0.5
    assert out.loc["G", "const_loss"] == pytest.approx(constant_baseline("G", 32)[0])


def test_a_head_fails_when_its_training_loss_does_not_reach_the_constant():
    """The tolerance keeps "found nothing" (ending at the constant's loss) apart from "failed" (above it)."""
    from posenc_utils.engine.readout import FAILED_TOLERANCE, training_failed
    from posenc_utils.primitives.targets import constant_baseline

    c = constant_baseline("HS", 64)[0]
    assert not training_failed(0.5 * c, "HS", 64) and not training_failed(1.04 * c, "HS", 64)
    assert training_failed(c * (1 + FAILED_TOLERANCE) * 1.01, "HS", 64) and training_failed(float("nan"), "HS", 64)
