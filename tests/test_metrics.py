"""SPC and MAE against scipy / numpy, undefined SPC, and the summary table."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from posenc_utils.primitives import metrics
from posenc_utils.engine.measures import summarize
from posenc_utils.primitives.metrics import mae, spc


def scipy_spc(pred, target):
    """scipy's Spearman correlation of each prediction with one shared target."""
    pred = np.asarray(pred).reshape(len(pred), -1)
    return np.array([spearmanr(p, np.ravel(target)).statistic for p in pred])


def test_spc_matches_scipy_shared_target():
    rng = np.random.default_rng(0)
    pred = rng.random((6, 50))
    target = rng.random(50)
    np.testing.assert_allclose(spc(pred, target), scipy_spc(pred, target), atol=1e-12)


def test_spc_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    pred = np.round(rng.random((5, 8, 8)) * 4) / 4  # only 5 distinct values: many ties
    target = np.round(rng.random((8, 8)) * 3)
    got = spc(pred, target)
    assert got.shape == (5,)
    np.testing.assert_allclose(got, scipy_spc(pred, target), atol=1e-12)


def test_spc_matches_scipy_per_image_target():
    rng = np.random.default_rng(2)
    pred = rng.random((4, 6, 6))
    target = np.round(pred + 0.3 * rng.standard_normal((4, 6, 6)), 1)
    ref = np.array([spearmanr(p.ravel(), t.ravel()).statistic for p, t in zip(pred, target)])
    np.testing.assert_allclose(spc(pred, target), ref, atol=1e-12)
    # a per-image target differs from broadcasting the first one
    assert not np.allclose(spc(pred, target), spc(pred, target[0]))


def test_spc_perfect_and_reversed():
    t = np.linspace(0, 1, 30)
    pred = np.stack([t**3, -t, t])
    np.testing.assert_allclose(spc(pred, t), [1.0, -1.0, 1.0])


def test_constant_prediction_is_nan():
    rng = np.random.default_rng(3)
    target = rng.random((7, 7))
    pred = rng.random((3, 7, 7))
    pred[1] = 0.5  # exactly constant
    pred[2] = 0.5 + rng.random((7, 7)) * metrics.CONSTANT_RANGE * 0.5  # float noise below the threshold
    s = spc(pred, target)
    assert np.isfinite(s[0])
    assert np.isnan(s[1]) and np.isnan(s[2])
    # just above the threshold it is a real (ranked) prediction again
    above = 0.5 + np.linspace(0, 10 * metrics.CONSTANT_RANGE, 49).reshape(1, 7, 7)
    assert np.isfinite(spc(above, target)[0])


def test_constant_target_is_nan():
    pred = np.random.default_rng(4).random((2, 10))
    assert np.isnan(spc(pred, np.ones(10))).all()


def test_mae_matches_numpy():
    rng = np.random.default_rng(5)
    pred, target = rng.random((4, 9, 9)), rng.random((9, 9))
    np.testing.assert_allclose(mae(pred, target), np.abs(pred - target).mean(axis=(1, 2)), rtol=1e-12)
    per_image = rng.random((4, 9, 9))
    np.testing.assert_allclose(mae(pred, per_image), np.abs(pred - per_image).mean(axis=(1, 2)), rtol=1e-12)


@pytest.mark.parametrize("fn", [spc, mae])
@pytest.mark.parametrize("target_shape", [(5, 5), (3, 4, 4), (2, 4, 4), (17,)])
def test_mismatched_shapes(fn, target_shape):
    pred = np.random.default_rng(6).random((4, 4, 4))
    with pytest.raises(ValueError, match="do not match"):
        fn(pred, np.zeros(target_shape))


def test_summarize_counts_undefined_as_zero():
    per_image = pd.DataFrame({
        "test_set": ["a"] * 4 + ["b"] * 2,
        "pattern": ["H", "H", "H", "V", "H", "H"],
        "spc": [0.6, np.nan, 0.9, 0.2, np.nan, np.nan],
        "mae": [0.1, 0.2, 0.3, 0.4, 0.5, 0.7],
    })
    out = summarize(per_image, ["test_set", "pattern"]).set_index(["test_set", "pattern"])
    assert len(out) == 3
    assert out.loc[("a", "H"), "spc"] == pytest.approx((0.6 + 0.0 + 0.9) / 3)
    assert out.loc[("a", "H"), "spc_undefined"] == 1
    assert out.loc[("a", "H"), "n_images"] == 3
    assert out.loc[("a", "H"), "mae"] == pytest.approx(0.2)
    assert out.loc[("a", "V"), "spc"] == pytest.approx(0.2)
    assert out.loc[("a", "V"), "spc_undefined"] == 0
    assert out.loc[("b", "H"), "spc"] == 0.0
    assert out.loc[("b", "H"), "spc_undefined"] == 2
    assert out.loc[("b", "H"), "n_images"] == 2
    assert out.loc[("b", "H"), "mae"] == pytest.approx(0.6)


def test_average_ranks_equal_scipy():
    from scipy.stats import rankdata

    from posenc_utils.primitives.metrics import average_ranks

    rng = np.random.default_rng(0)
    x = rng.random((6, 500))
    x[0, :100] = 0.25  # a long tie
    x[1] = np.round(x[1], 1)  # many ties
    x[2] = 1.0  # all equal
    x[3, ::2] = x[3, 1::2]  # pairs
    np.testing.assert_array_equal(average_ranks(x), rankdata(x, axis=1, method="average"))  # tied and untied rows
    for part in (x[:4], x[4:]):  # only rows with ties; only rows without
        np.testing.assert_array_equal(average_ranks(part), rankdata(part, axis=1, method="average"))
    np.testing.assert_array_equal(average_ranks(x[:1, :1]), [[1.0]])


def test_average_ranks_split_across_threads_equal_one_thread(monkeypatch):
    """Rows ranked on several threads give, to the bit, what one thread gives (ties included)."""
    import torch

    from posenc_utils.primitives import metrics

    rng = np.random.default_rng(1)
    x = np.round(rng.random((7, 70_000)), 3)  # above the size worth splitting; many ties; rows not a multiple of 2
    one = metrics.rows_average_ranks(x)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    np.testing.assert_array_equal(metrics.average_ranks(x), one)
    np.testing.assert_array_equal(metrics.average_ranks(x[:2]), one[:2])


def test_t_interval_matches_scipy():
    from scipy import stats

    from posenc_utils.primitives.metrics import t_interval

    v = np.array([0.61, 0.55, 0.70])
    lo, hi = t_interval(v)
    ref = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    assert (lo, hi) == pytest.approx(ref)
    assert np.isnan(t_interval(np.array([0.5]))).all()


def test_seed_summary_over_seeds_and_images():
    from posenc_utils.engine.measures import seed_summary
    from posenc_utils.primitives.metrics import cluster_bootstrap_ci, t_interval

    rng = np.random.default_rng(0)
    rows = []
    for seed in (0, 1, 2):
        for image in range(12):
            spc_value = np.nan if (seed == 1 and image < 2) else 0.5 + 0.1 * seed + rng.normal(0, 0.05)
            rows.append(dict(test_set="photos", pattern="H", seed=seed, image=image, spc=spc_value, mae=0.2))
        rows.append(dict(test_set="black", pattern="H", seed=seed, image=0, spc=0.3 * seed, mae=0.1))
    df = pd.DataFrame(rows)
    sources = {"photos": np.repeat(np.arange(4), 3)}
    out = seed_summary(df, ["test_set", "pattern"], sources).set_index("test_set")
    photos = df[df.test_set == "photos"].fillna({"spc": 0.0})
    per_seed = photos.groupby("seed").spc.mean()
    assert out.loc["photos", "spc"] == pytest.approx(per_seed.mean())
    assert (out.loc["photos", "spc_ci_low"], out.loc["photos", "spc_ci_high"]) == pytest.approx(t_interval(per_seed.values))
    assert out.loc["photos", "spc_undefined"] == 2 and out.loc["photos", "n_seeds"] == 3
    assert out.loc["photos", "n_images"] == 12
    per_image = photos.groupby("image").spc.mean().values
    boot = cluster_bootstrap_ci(per_image, sources["photos"], n_boot=1000)
    assert (out.loc["photos", "spc_boot_low"], out.loc["photos", "spc_boot_high"]) == pytest.approx(boot)
    assert out.loc["black", "spc"] == pytest.approx(0.3) and np.isnan(out.loc["black", "spc_boot_low"])
    assert out.loc["black", "spc_sd_seeds"] == pytest.approx(0.3)


def test_cluster_bootstrap_mean_shortcut_equals_resampling():
    """The vectorized mean (sums of resampled groups) gives the interval of resampling values one by one."""
    rng = np.random.default_rng(3)
    values, groups = rng.random(60), np.repeat(np.arange(19), 4)[:60]
    values[[3, 17]] = np.nan
    for stat in (np.nanmean, np.mean):
        fast = metrics.cluster_bootstrap_ci(values, groups, stat, n_boot=500)
        slow = metrics.cluster_bootstrap_ci(values, groups, lambda x, s=stat: s(x), n_boot=500)
        assert np.allclose(fast, slow, equal_nan=True)
    clean = rng.random(30)
    assert np.allclose(metrics.cluster_bootstrap_ci(clean, None, np.mean, n_boot=300),
                       metrics.cluster_bootstrap_ci(clean, None, lambda x: float(np.mean(x)), n_boot=300))
