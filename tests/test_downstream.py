"""Notebook 05's scene generators and metrics, against hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from posenc_utils import downstream as ds


def test_sod_scenes_are_seeded_and_centre_biased():
    a = ds.sod_scene(np.random.default_rng(3), 48)
    b = ds.sod_scene(np.random.default_rng(3), 48)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0].shape == (48, 48, 3) and a[0].dtype == np.uint8 and set(np.unique(a[1])) <= {0, 1}
    rng = np.random.default_rng(0)
    masks = np.stack([ds.sod_scene(rng, 48)[1] for _ in range(200)]).astype(float)
    density = masks.mean(axis=0)
    assert density[20:28, 20:28].mean() > 3 * density[:6, :6].mean(), "objects sit near the centre"
    assert 0.04 < masks.mean() < 0.4
    assert density[:4].mean() > 0 and density[:, -4:].mean() > 0, "but not always: position alone does not solve it"


def test_seg_scenes_have_a_vertical_layout():
    rng = np.random.default_rng(0)
    labels = np.stack([ds.seg_scene(rng, 48)[1] for _ in range(100)])
    top, bottom = labels[:, :8], labels[:, -8:]
    assert (top == 0).mean() > 0.9 and (bottom == 0).mean() < 0.05, "sky above, ground below"
    assert (labels == 2).any(axis=(1, 2)).all(), "every scene has an object"
    assert set(np.unique(labels)) == {0, 1, 2}


def test_mae():
    s = np.array([[[0.0, 1.0], [0.5, 0.5]]])
    m = np.array([[[0, 1], [1, 0]]])
    np.testing.assert_allclose(ds.mean_absolute_error(s, m), [0.25])


def test_f_measure_by_hand():
    # 5 pixels, saliency mean 0.36 -> adaptive threshold 0.72: predicted {0, 1}; ground truth {0, 2}
    s = np.array([[0.9, 0.8, 0.1, 0.0, 0.0]])
    m = np.array([[1, 0, 1, 0, 0]])
    p, r = 1 / 2, 1 / 2
    expected = 1.3 * p * r / (0.3 * p + r)
    np.testing.assert_allclose(ds.f_measure(s, m), [expected])
    # as the SOD benchmarks' code (PySODMetrics): ">= threshold", so an all-zero map marks every pixel
    assert ds.f_measure(np.array([[0.0, 0.0]]), np.array([[1, 0]]))[0] == pytest.approx(1.3 * 0.5 / (0.3 * 0.5 + 1))
    assert ds.f_measure(np.array([[0.2, 0.0]]), np.array([[0, 1]]))[0] == 0.0
    assert ds.max_f_measure(m.astype(float), m) == pytest.approx(1.0)


def test_mean_iou_by_hand():
    labels = np.array([[0, 0, 1, 1, 2]])
    pred = np.array([[0, 1, 1, 1, 2]])
    miou, per = ds.mean_iou(pred, labels, 4)
    np.testing.assert_allclose(per[:3], [1 / 2, 2 / 3, 1.0])
    assert np.isnan(per[3]) and miou == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
