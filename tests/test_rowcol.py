"""Row/column classification (posenc_utils.engine.rowcol): the tap's own grid recovered from the stored features,
the closed-form discriminant against a direct computation, chance without position, and the grid and bin rules."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from posenc_utils.engine import rowcol
from posenc_utils.models.encoders import resize_taps
from test_measures import feature_set


@pytest.mark.parametrize("own", [4, 7, 14, 28])
def test_the_tap_is_recovered_from_the_stored_map(own):
    tap = torch.randn(2, 5, own, own)
    stored = resize_taps([tap], 28)  # as the features are stored (before float16)
    u = torch.from_numpy(rowcol.unresize_matrix(own, 28)).float()
    back = torch.einsum("gh,bchw,kw->bcgk", u, stored, u)
    assert torch.allclose(back, tap, atol=1e-4)


def test_resize_matrix_is_pytorchs_resize():
    x = torch.randn(1, 3, 7, 7)
    r = torch.from_numpy(rowcol.resize_matrix(7, 28)).float()
    assert torch.allclose(torch.einsum("gh,bchw,kw->bcgk", r, x, r), resize_taps([x], 28), atol=1e-5)


def _coded(n: int, seed: int, own: int = 7, strength: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, 3, own, own) that code the row and column plus noise, and their upsampled stored maps."""
    yy, xx = np.meshgrid(np.arange(own), np.arange(own), indexing="ij")
    code = strength * np.stack([yy, xx, yy * xx / own]).astype(np.float64)
    f = code[None] + 1.5 * np.random.default_rng(seed).normal(size=(n, 3, own, own)) + 5
    up = resize_taps([torch.from_numpy(f).float()], 28).numpy()
    return f, up


def _direct_lda(xtr, ytr, xte, k):
    mu = np.stack([xtr[ytr == c].mean(0) for c in range(k)])
    count = np.bincount(ytr, minlength=k)
    var = sum(((xtr[ytr == c] - mu[c]) ** 2).sum(0) for c in range(k)) / (len(ytr) - k)
    return (xte @ (mu / var).T - 0.5 * (mu**2 / var).sum(1) + np.log(count / count.sum())).argmax(1)


def test_discriminant_equals_the_direct_computation_on_the_own_grid(tmp_path, monkeypatch):
    f_tr, up_tr = _coded(30, 1)
    f_te, up_te = _coded(20, 2)
    train, test = feature_set(tmp_path, up_tr, name="tr"), feature_set(tmp_path, up_te, name="te")
    monkeypatch.setattr(rowcol, "tap_grids", lambda fs: (7,))  # the tap's own grid: 7 x 7
    summary = rowcol.rowcol_summary(test, train).set_index(["axis", "bins"])
    assert set(summary.index.get_level_values("bins")) == {4}  # 8 and 16 bins: more than 7 positions
    xtr, xte = (f.transpose(0, 2, 3, 1).reshape(-1, 3) for f in (f_tr, f_te))
    for axis, labels in rowcol.axis_labels(7, 4).items():
        direct = (_direct_lda(xtr, np.tile(labels, 30), xte, 4) == np.tile(labels, 20)).mean()
        assert summary.accuracy[(axis, 4)] == pytest.approx(direct, abs=0.01)  # float16 storage moves a tie or two
    mean = summary.loc[("mean", 4)]
    assert mean.accuracy_low > 0.25 + 0.1 and mean.accuracy_low <= mean.accuracy <= mean.accuracy_high
    assert rowcol.rowcol_accuracy(test, train=train)[0] == pytest.approx(mean.accuracy)


def test_no_position_is_chance(tmp_path, monkeypatch):
    _, up_tr = _coded(30, 3, strength=0.0)
    _, up_te = _coded(30, 4, strength=0.0)
    monkeypatch.setattr(rowcol, "tap_grids", lambda fs: (7,))
    acc, lo, hi = rowcol.rowcol_accuracy(feature_set(tmp_path, up_te, name="te0"),
                                         train=feature_set(tmp_path, up_tr, name="tr0"))
    assert lo <= 0.25 + 0.02 and acc < 0.32


def test_grids_and_bins(tmp_path, monkeypatch):
    fs = feature_set(tmp_path, np.zeros((2, 5, 28, 28)), taps=(("fine", 3), ("coarse", 2)), name="g")
    monkeypatch.setattr(rowcol, "tap_grids", lambda f: (28, 7))
    assert rowcol.row_grid(fs, None) == 7 and rowcol.row_grid(fs, np.array([0, 1])) == 28
    assert rowcol.row_grid(fs, np.array([3])) == 7
    assert list(rowcol.bin_labels(7, 4)) == [0, 0, 1, 1, 2, 2, 3]
    labels = rowcol.axis_labels(4, 4)
    assert list(labels["row"][:5]) == [0, 0, 0, 0, 1] and list(labels["column"][:5]) == [0, 1, 2, 3, 0]
    assert np.allclose(rowcol.area_matrix(28, 7).sum(1), 1) and rowcol.area_matrix(28, 7)[0, :4].tolist() == [0.25] * 4


def test_own_grids_of_a_real_encoder():
    from posenc_utils.engine.features import FeatureSet
    from posenc_utils.primitives.specs import EncoderSpec

    fs = FeatureSet(EncoderSpec("resnet152", "random"), "x", "k", None, 1, ("a", "b", "c", "d", "e"),
                    (64, 256, 512, 1024, 2048), (1.0,) * 5, 28, image_size=224)
    assert rowcol.tap_grids(fs) == (28, 28, 28, 14, 7)  # 112, 56 and 28 px read at the stored 28
