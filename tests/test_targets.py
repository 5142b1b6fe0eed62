"""The five target maps against the formulas of PAPER.md section 2."""
from __future__ import annotations

import numpy as np
import pytest

from posenc_utils.primitives import targets
from posenc_utils.primitives.targets import PATTERNS, target_map, target_stack

SIZES = (224, 7)


def _minmax(a):
    a = np.asarray(a, np.float64)
    return (a - a.min()) / (a.max() - a.min())


def reference(pattern: str, size: int) -> np.ndarray:
    """The formulas of PAPER.md section 2, written independently of the package."""
    s = float(size)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)  # y = row, x = column
    if pattern == "H":
        return x / (s - 1)
    if pattern == "V":
        return y / (s - 1)
    if pattern == "G":
        c = sigma = s / 2
        return _minmax(np.exp(-((x - c) ** 2 + (y - c) ** 2) / (2 * sigma**2)))
    if pattern == "HS":
        return _minmax(0.5 * (1 + np.cos(2 * np.pi * 2.5 * (y + 0.5) / s)))
    if pattern == "VS":
        return _minmax(0.5 * (1 + np.cos(2 * np.pi * 2.5 * (x + 0.5) / s)))
    raise AssertionError(pattern)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_dtype_shape_range_and_formula(pattern, size):
    m = target_map(pattern, size)
    assert m.dtype == np.float32
    assert m.shape == (size, size)
    assert m.min() == 0.0
    assert m.max() == 1.0
    np.testing.assert_allclose(m, reference(pattern, size), atol=1e-6)


@pytest.mark.parametrize("size", SIZES)
def test_horizontal_gradient(size):
    m = target_map("H", size)
    assert np.all(m[:, 0] == 0.0), "H is 0 at the left column"
    assert np.all(m[:, -1] == 1.0), "H is 1 at the right column"
    assert np.all(m == m[0:1, :]), "H is constant along each column"
    assert np.all(np.diff(m[0]) > 0), "H increases from left to right"
    np.testing.assert_allclose(m[0], np.arange(size) / (size - 1), atol=1e-7)


@pytest.mark.parametrize("size", SIZES)
def test_vertical_gradient_is_transpose_of_horizontal(size):
    v = target_map("V", size)
    assert np.array_equal(v, target_map("H", size).T)
    assert np.all(v[0] == 0.0) and np.all(v[-1] == 1.0), "V: 0 at the top row, 1 at the bottom"


@pytest.mark.parametrize("size", SIZES)
def test_gaussian_peak_and_symmetry(size):
    g = target_map("G", size)
    c = size // 2
    assert g[c, c] == 1.0, "G peaks at pixel (S/2, S/2) (c = S/2)"
    assert np.unravel_index(np.argmax(g), g.shape) == (c, c)
    assert g[0, 0] == 0.0, "the corner farthest from c = S/2 is the minimum"
    assert np.allclose(g, g.T), "isotropic: symmetric in x and y"
    # sigma = S/2: one sigma from the centre along a row (x = c - S/2 = 0), before min-max.
    raw = np.exp(-((np.arange(size) - size / 2) ** 2) / (2 * (size / 2) ** 2))
    assert raw[0] == pytest.approx(np.exp(-0.5))


def test_gaussian_exact_values_224():
    g = target_map("G", 224).astype(np.float64)
    gmin = np.exp(-(112.0**2 * 2) / (2 * 112.0**2))  # at (0, 0): exp(-1)
    val = lambda y, x: (np.exp(-((x - 112) ** 2 + (y - 112) ** 2) / (2 * 112.0**2)) - gmin) / (1 - gmin)
    for y, x in [(112, 112), (0, 112), (112, 0), (223, 223), (0, 223), (50, 170)]:
        assert g[y, x] == pytest.approx(val(y, x), abs=1e-6), (y, x)


@pytest.mark.parametrize("size", SIZES)
def test_horizontal_stripes(size):
    hs = target_map("HS", size)
    assert np.all(hs == hs[:, 0:1]), "HS is constant along each row"
    # bright at the top (phase ~0 of the cosine); at 7 px the half-pixel offset already
    # moves the top row off the crest, so only "above the mid level" holds at every size
    assert hs[0, 0] > 0.5, "HS is bright at the top row"
    np.testing.assert_allclose(hs, reference("HS", size), atol=1e-6)


def test_horizontal_stripes_have_two_and_a_half_periods():
    col = target_map("HS", 224)[:, 0].astype(np.float64)
    # 2.5 periods of a cosine starting bright: 5 crossings of the mid level, bright at the
    # top, dark at the bottom, and 3 bright bands (phases 0, 2pi, 4pi).
    crossings = np.sum(np.diff(np.sign(col - 0.5)) != 0)
    assert crossings == 5
    assert col[0] > 0.99 and col[-1] < 0.01
    peaks = [i for i in range(1, 223) if col[i] >= col[i - 1] and col[i] >= col[i + 1]]
    assert len(peaks) == 2  # interior maxima near y = 2S/5 and 4S/5; the third is at y = 0
    assert peaks == pytest.approx([224 * 2 / 5 - 0.5, 224 * 4 / 5 - 0.5], abs=1)


@pytest.mark.parametrize("size", SIZES)
def test_vertical_stripes_are_transposed_horizontal_stripes(size):
    assert np.array_equal(target_map("VS", size), target_map("HS", size).T)


def test_target_stack():
    st = target_stack(("G", "H"), 16)
    assert st.shape == (2, 16, 16) and st.dtype == np.float32
    assert np.array_equal(st[1], target_map("H", 16))


def test_unknown_pattern():
    with pytest.raises(ValueError, match="unknown pattern"):
        target_map("D", 16)


@pytest.mark.parametrize("size", [1, 0, -3])
def test_too_small(size):
    with pytest.raises(ValueError, match="size"):
        target_map("H", size)


def test_patterns_and_names():
    assert targets.PATTERNS == ("H", "V", "G", "HS", "VS")
    assert set(targets.PATTERN_NAMES) == set(targets.PATTERNS)
