"""Notebook 03's experiments: canvases, padding-mode bookkeeping, distance to the border, claim 7."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from posenc_utils.primitives import borders, cache
from posenc_utils.models import encoders
from posenc_utils.studies import padding_ablation
from posenc_utils.models.encoders import build_encoder
from posenc_utils.studies.experiments import ProbeResult
from posenc_utils.engine.images import build_image_set
from posenc_utils.models.profiles import EncoderSpec, ImageSetSpec, get_profile
from posenc_utils.primitives.targets import PATTERNS, target_map

# ---------------------------------------------------------------- the canvas


@pytest.mark.parametrize("mode, value", [("canvas:0.5", 0.5), ("canvas:1", 1.0), ("canvas:mean", "mean"),
                                         ("zeros", None), ("reflect", None)])
def test_canvas_value(mode, value):
    assert borders.canvas_value(mode) == value


def test_bad_canvas_is_named():
    with pytest.raises(ValueError, match="canvas:<number"):
        borders.canvas_value("canvas:grey")
    with pytest.raises(ValueError, match="canvas:<value>"):
        borders.check_padding_mode("mirror")


def _affine(x):  # a per-channel affine preprocessing, like ImageNet normalization
    return (x - torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)) / 0.25


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0, "mean"])
def test_canvas_pads_the_image_with_its_value(value):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    net = nn.Sequential(conv, nn.ReLU())
    ref = nn.Conv2d(3, 4, 3, padding=0)
    ref.load_state_dict(conv.state_dict())
    borders.apply_canvas(net, value, _affine)
    img = torch.rand(2, 3, 8, 8)
    fill = img.mean(dim=(2, 3), keepdim=True) if value == "mean" else torch.full((1, 3, 1, 1), value)
    framed = fill.expand(2, 3, 10, 10).clone()
    framed[..., 1:-1, 1:-1] = img
    expected = torch.relu(ref(_affine(framed)))
    torch.testing.assert_close(net(_affine(img)), expected, rtol=1e-5, atol=1e-5)


def test_canvas_zero_on_random_vgg_is_zero_padding():
    a = build_encoder(EncoderSpec("vgg16", "random"), 0, 32)
    b = build_encoder(EncoderSpec("vgg16", "random", "canvas:0"), 0, 32)
    c = build_encoder(EncoderSpec("vgg16", "random", "canvas:1"), 0, 32)
    x = torch.rand(1, 3, 32, 32)
    assert all(torch.equal(p, q) for p, q in zip(a(x), b(x)))
    out_a, out_c = a(x)[0], c(x)[0]
    assert not torch.equal(out_a[..., 0, :], out_c[..., 0, :]), "a white canvas changes the border"
    torch.testing.assert_close(out_a[..., 2:-2, 2:-2], out_c[..., 2:-2, 2:-2])  # not the interior of relu1_2
    assert sum(p.numel() for p in a.module.parameters()) == sum(p.numel() for p in c.module.parameters())


def test_canvas_refused_for_posenet():
    with pytest.raises(encoders.PaddingNotSupportedError, match="no padding"):
        build_encoder(EncoderSpec("posenet", "none", "canvas:1"), 0, 32)


def test_as_built_canvas():
    np.testing.assert_allclose(padding_ablation.as_built_canvas(EncoderSpec("vgg16", "random")), 0.0, atol=1e-7)


def test_border_contrast():
    black = build_image_set(ImageSetSpec("black", "black"), 32)
    white = build_image_set(ImageSetSpec("white", "white"), 32)
    assert padding_ablation.border_contrast(black, np.zeros(3)) == 0.0
    assert padding_ablation.border_contrast(black, np.ones(3)) == 1.0
    assert padding_ablation.border_contrast(white, np.full(3, 0.25)) == pytest.approx(0.75)
    assert padding_ablation.border_contrast(white, "mean") == 0.0


def test_too_small_images_give_a_short_reason():
    with pytest.raises(encoders.ImageTooSmallError) as err:
        build_encoder(EncoderSpec("vgg16", "random", "none"), 0, 64)
    assert "64 px" in err.value.reason and len(err.value.reason) < 80


# ---------------------------------------------------------------- padding modes


def _fake_result(spec: EncoderSpec, tests, value: float = 0.5, seed: int = 0) -> ProbeResult:
    rows = [dict(test_set=t, image=i, pattern=p, spc=value, mae=0.1, train_loss=0.05, readout_failed=False)
            for t in tests for i in range(2) for p in PATTERNS]
    return ProbeResult(spec, SimpleNamespace(patterns=PATTERNS), pd.DataFrame(rows), seed=seed, image_size=32)


def test_padding_modes_marks_what_cannot_apply(monkeypatch, tmp_path):
    prof = get_profile("quick", image_size=32, ablation_train_n=4, ablation_test_n=2)
    names = [t.name for t in prof.test_sets]

    def probe_seeds(profile, spec, **kw):
        if spec.name == "resnet152" and spec.padding == "none":
            raise encoders.PaddingNotSupportedError("long message: without padding ...", reason="residual adds")
        return [_fake_result(spec, names, seed=s) for s in profile.seeds_for(spec)]

    monkeypatch.setattr(padding_ablation, "probe_seeds", probe_seeds)
    found = padding_ablation.padding_modes(prof)
    table, runs = found.table, found.runs
    assert len(table) == len(prof.encoders) * len(borders.PADDING_MODES) * 5 * len(names)
    assert set(found.per_image.setting) == set(borders.PADDING_MODES) and "seed" in found.per_image
    hed = table[(table.encoder == "VGG16 (HED)") & (table.status == "ok")]
    assert (hed.n_seeds == prof.seeds).all() and hed.const_loss.notna().all() and (hed.readout_failed == 0).all()
    na = table[table.status == "n/a"]
    assert set(na.encoder) == {"PosENet", "ResNet152 (random init)"}
    assert set(na[na.encoder == "ResNet152 (random init)"].padding) == {"none"}
    assert (na[na.encoder != "PosENet"].reason == "residual adds").all() and na.spc.isna().all()
    assert table[table.status == "ok"].spc.eq(0.5).all()
    assert len(runs) == (len(prof.encoders) - 1) * len(borders.PADDING_MODES) - 1
    fig = padding_ablation.plot_padding_modes(table, tmp_path / "modes.png")
    assert (tmp_path / "modes.png").exists() and len(fig.axes) >= 5


# ---------------------------------------------------------------- distance to the border


def test_distance_to_border():
    d = padding_ablation.distance_to_border(5)
    assert d.tolist() == [[0, 0, 0, 0, 0], [0, 1, 1, 1, 0], [0, 1, 2, 1, 0], [0, 1, 1, 1, 0], [0, 0, 0, 0, 0]]
    assert padding_ablation.distance_to_border(224).max() == 111 and (padding_ablation.distance_to_border(224) == 0).sum() == 4 * 223


def test_border_distance_bins_a_known_error():
    size, c = 32, 0.3
    spec = EncoderSpec("vgg16", "random", "reflect")
    res = _fake_result(spec, ["photos"])
    res.predictions = {"photos": np.full((2, 5, 6, 6), c, np.float16)}  # a constant map upsamples to itself
    distance = padding_ablation.border_distance({"x": [res]}, "photos", size, bin_px=4)
    errors, regions = distance.table, distance.more["regions"]
    assert set(errors.encoder) == {"VGG16 (random init)"} and set(errors.padding) == {"reflect"}
    assert sorted(errors.distance.unique()) == [0, 4, 8, 12]
    dist = padding_ablation.distance_to_border(size)
    for b in (0, 4, 8, 12):
        sel = (dist // 4) * 4 == b
        expected = np.mean([np.abs(target_map(p, size)[sel] - np.float16(c)).mean() for p in "HVG"])
        got = errors[errors.distance == b].error
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert regions.spc.isna().all(), "a constant prediction has no rank correlation"
    summary = padding_ablation.region_means(regions)
    assert summary[["border band", "centre", "centre_minus_border"]].eq(0).all().all()


def test_region_means_of_a_constructed_case():
    rng = np.random.default_rng(0)
    regions = pd.DataFrame([dict(encoder="E", padding=m, seed=k, image=i, pattern=p, region=r,
                                 spc=((0.9 if r == "border band" else 0.3) if m == "zeros" else 0.5)
                                 + 0.01 * rng.standard_normal())
                            for m in ("zeros", "none") for k in (0, 1) for i in range(6) for p in "HV"
                            for r in ("border band", "centre")])
    s = padding_ablation.region_means(regions, sources=np.array([0, 0, 1, 1, 2, 2])).set_index("padding")
    assert s.loc["zeros", "border band"] == pytest.approx(0.9, abs=0.01) and s.loc["zeros", "centre"] == pytest.approx(0.3, abs=0.01)
    assert s.loc["zeros", "centre_minus_border"] == pytest.approx(-0.6, abs=0.01)
    assert s.loc["zeros", "ci_high"] < -0.5 and s.loc["none", "ci_low"] < 0 < s.loc["none", "ci_high"]
    assert (s.n_seeds == 2).all()


def test_mode_contrasts_say_only_what_the_intervals_allow():
    """Zeros minus each mode, paired: "reference above" where the interval excludes 0 on the positive side, "mode
    above" on the negative side, "not distinguishable" where it holds 0; the sentence follows them."""
    rng = np.random.default_rng(1)
    means = {"zeros": 0.6, "reflect": 0.2, "replicate": 0.6, "circular": 0.8}
    rows = [dict(encoder="E", setting=m, seed=k, test_set="photos", image=i, source=i, pattern=p,
                 spc=v + 0.02 * rng.standard_normal(), readout_failed=False)
            for m, v in means.items() for k in (0, 1, 2) for i in range(12) for p in PATTERNS]
    c = padding_ablation.mode_contrasts(pd.DataFrame(rows), "photos").set_index("mode")
    assert c.loc["reflect", "order"] == "reference above" and c.loc["circular", "order"] == "mode above"
    assert c.loc["replicate", "order"] == "not distinguishable"
    assert c.loc["reflect", "difference"] == pytest.approx(0.4, abs=0.02)
    text = padding_ablation.contrast_sentence(c.reset_index(), "photos")
    assert "images): zeros above reflect in E (+0.40" in text and ". Circular above zeros in E" in text
    assert ". Zeros and replicate not distinguishable in E" in text


# ---------------------------------------------------------------- cache keys and heads


def test_key_fields_ignore_defaults():
    @dataclasses.dataclass(frozen=True)
    class Old:
        name: str
        n: int = 1

    @dataclasses.dataclass(frozen=True)
    class New:
        name: str
        n: int = 1
        extra: str = "auto"

    assert cache.make_key(cache.key_fields(Old("a", 2))) == cache.make_key(cache.key_fields(New("a", 2)))
    assert cache.make_key(cache.key_fields(New("a", 2, "x"))) != cache.make_key(cache.key_fields(New("a", 2)))
    assert cache.key_fields(New("a")) == {"name": "a"}


def test_image_set_head():
    full = build_image_set(ImageSetSpec("noise", "noise", n=5, seed=1), 16)
    head = full.head(3)
    assert head.n == 3 and head.key != full.key and full.head(9) is full
    np.testing.assert_array_equal(head.rows(0, 10), full.rows(0, 3))


def test_ablation_sets_view_larger_cached_sets():
    prof = get_profile("quick", image_size=32, table4_image_size=None, table4_train_n=8, ablation_train_n=4,
                       ablation_test_n=2)
    train, tests, views = padding_ablation.ablation_sets(prof)
    t4_train, t4_tests = padding_ablation.table4_sets(prof)
    assert train.n == 4 and t4_train.n == 8 and tests[0].n == 2 and t4_tests[0].n == prof.test_sets[0].n
    full_key = train.key.rsplit("-head", 1)[0]
    assert views[(train.key, "zeros")][0].key == full_key  # Table 1's features, with padding
    assert views[(train.key, "none")][0].key == t4_train.key  # Table 4's, without
    assert views[(tests[0].key, "none")][0].key == t4_tests[0].key
    assert (tests[1].key, "zeros") not in views, "a one-image test set is not a head of anything"
    other = padding_ablation.ablation_sets(prof.with_overrides(table4_image_size=64))[2]
    assert not any(p == "none" for _, p in other), "features at another image size are not viewed"


def test_padding_modes_figure_reads_the_tables_natural_test_set(tmp_path):
    """Notebook 06 redraws the figure from its CSV alone: with PASCAL-S first (the paper profile) it draws
    PASCAL-S, not an empty figure for a test set the profile does not have."""
    rows = [dict(encoder="VGG16 (ImageNet)", padding=m, pattern=p, test_set=t, spc=0.5)
            for t in ("PASCAL-S", "black") for m in borders.PADDING_MODES for p in ("H", "G")]
    fig = padding_ablation.plot_padding_modes(pd.DataFrame(rows), tmp_path / "modes.png")
    assert len(fig.axes) >= 2 and "PASCAL-S" in fig._suptitle.get_text() and (tmp_path / "modes.png").exists()
