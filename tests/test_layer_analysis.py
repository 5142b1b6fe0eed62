"""Notebook 04's experiments: readout width, stage selection, coordinates, content error."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from posenc_utils.studies import layer_analysis
from posenc_utils.models.encoders import build_encoder
from posenc_utils.studies.experiments import ProbeResult
from posenc_utils.engine.images import build_image_set, photo_crops, photo_sources, shipped_photo_paths
from posenc_utils.primitives.metrics import cluster_bootstrap_ci
from posenc_utils.models.profiles import EncoderSpec, ImageSetSpec, ReadoutSpec, get_profile
from posenc_utils.engine.readout import PEM, head_seed
from posenc_utils.primitives.targets import PATTERNS


def test_narrow_stacked_readout_shapes_and_independent_heads():
    m = PEM(10, [head_seed(0, p) for p in ("H", "V", "G")], n_layers=3, kernel=3, width=4)
    convs = [c for c in m.body if isinstance(c, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [12, 12, 3] and [c.groups for c in convs] == [1, 3, 3]
    x = torch.randn(2, 10, 12, 12)
    assert m(x).shape == (2, 3, 6, 6)
    # a head's output depends only on its own parameters: perturb head 1's weights, heads 0 and 2 stay
    m.eval()
    before = m(x).detach()
    with torch.no_grad():
        convs[0].weight[4:8] += 1.0
        convs[1].weight[4:8] += 1.0
    after = m(x).detach()
    assert torch.equal(before[:, [0, 2]], after[:, [0, 2]]) and not torch.equal(before[:, 1], after[:, 1])


def test_readout_width_label_and_default_key():
    assert ReadoutSpec(n_layers=2, width=4).label == "2 layers, 3x3, pad 0, width 4"
    assert ReadoutSpec(width=4).label == "1 layer, 3x3, pad 0"  # one layer has no intermediate width


def test_capacity_settings_name_the_papers_rows():
    cfg = get_profile("offline")
    rows = layer_analysis.capacity_settings(cfg)
    assert [r[2] for r in rows] == ["1 layer(s), 3x3", "2 layer(s), 3x3", "3 layer(s), 3x3",
                                    "1 layer, 1x1", "1 layer, 3x3", "1 layer, 7x7"]
    assert [(r[3].n_layers, r[3].kernel) for r in rows] == [(1, 3), (2, 3), (3, 3), (1, 1), (1, 3), (1, 7)]
    assert rows[1][1].endswith(f"width {cfg.readout_width}") and rows[0][3] == rows[4][3]  # 1x3x3 is Table 1's
    paper = layer_analysis.capacity_settings(get_profile("paper"))
    assert all(r[3].width is None for r in paper), "the paper profile keeps C -> C"


def test_coordinates_encoder():
    enc = build_encoder(EncoderSpec("coords", "none"), 0, 16)
    (out,) = enc(torch.rand(2, 3, 16, 16))
    assert out.shape == (2, 2, 16, 16)
    assert torch.allclose(out[0, 0, 3], torch.linspace(0, 1, 16)) and torch.allclose(out[1, 1, :, 5], torch.linspace(0, 1, 16))
    assert EncoderSpec("coords", "none").label == "coordinates (x, y)"


def test_stage_channel_selection_reads_the_stage_channels():
    from posenc_utils.engine.features import extract_features
    from posenc_utils.engine.readout import channel_index

    images = build_image_set(ImageSetSpec("noise", "noise", n=2, seed=1), 32)
    feats = extract_features(EncoderSpec("vgg16", "random"), images, 8, 0)
    slices = feats.tap_slices()
    idx = channel_index(feats, ("relu2_2",))
    assert list(idx) == list(range(64, 192)) and slices["relu2_2"] == slice(64, 192)
    assert len(channel_index(feats, ("relu1_2", "relu5_3"))) == 64 + 512


def test_content_error_on_a_constructed_case():
    content = np.zeros((2, 8, 8))
    content[:, :2] = 1.0  # the top quarter of rows is "content"
    errors = np.full((2, 8, 8), 0.1)
    errors[0, :2] = 0.3  # image 0: 3x the error on content
    ratios = layer_analysis.content_error(errors, content)
    np.testing.assert_allclose(ratios, [3.0, 1.0])


def test_content_maps_find_edges():
    img = np.zeros((1, 32, 32, 3), np.uint8)
    img[:, :, 16:] = 255
    c = layer_analysis.content_maps(img)
    assert c.shape == (1, 32, 32) and c.max() == 1.0
    assert c[0, :, 15:17].mean() > 0.5 and c[0, :, :8].max() < 0.01


def test_cluster_bootstrap_matches_numpy_and_widens_for_clusters():
    rng = np.random.default_rng(0)
    v = rng.normal(size=200)
    lo, hi = cluster_bootstrap_ci(v, n_boot=4000, seed=1)
    se = v.std(ddof=1) / np.sqrt(len(v))
    assert lo == pytest.approx(v.mean() - 1.96 * se, abs=0.03) and hi == pytest.approx(v.mean() + 1.96 * se, abs=0.03)
    groups = np.repeat(np.arange(10), 20)
    clustered = np.repeat(rng.normal(size=10), 20) + 0.01 * rng.normal(size=200)
    lo_i, hi_i = cluster_bootstrap_ci(clustered, n_boot=2000)
    lo_c, hi_c = cluster_bootstrap_ci(clustered, groups, n_boot=2000)
    assert hi_c - lo_c > 3 * (hi_i - lo_i), "20 crops of one photograph are one observation, not 20"


def test_photo_sources_follow_photo_crops():
    n_photos = len(shipped_photo_paths())
    src = photo_sources(n_photos + 3, seed=0)
    assert sorted(src[:n_photos]) == list(range(n_photos)) and list(src[n_photos:]) == list(src[:3])
    crops = list(photo_crops(n_photos + 1, 16, seed=0))
    assert len(crops) == n_photos + 1  # the same generator: the function only mirrors its order


def test_error_maps_of_a_constant_prediction():
    spec = EncoderSpec("vgg16", "random")
    per_image = pd.DataFrame([dict(test_set="photos", image=0, pattern=p, spc=0.0, mae=0.0) for p in PATTERNS])
    res = ProbeResult(spec, SimpleNamespace(patterns=PATTERNS), per_image,
                      {"photos": np.full((1, 5, 6, 6), 0.5, np.float16)})
    photos = SimpleNamespace(name="photos", size=16)
    err = layer_analysis.error_maps(res, photos)
    from posenc_utils.primitives.targets import target_map

    expected = np.mean([np.abs(target_map(p, 16) - 0.5) for p in "HVG"], axis=0)
    np.testing.assert_allclose(err[0], expected, atol=1e-6)


def test_content_error_table_returns_the_table_and_its_per_image_ratios():
    spec = EncoderSpec("vgg16", "random")
    res = ProbeResult(spec, SimpleNamespace(patterns=PATTERNS), pd.DataFrame(),
                      {"photos": np.full((3, 5, 6, 6), 0.5, np.float16)})
    images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    photos = SimpleNamespace(name="photos", size=16, n=3, rows=lambda a, b: images[a:b])
    out = layer_analysis.content_error_table({spec.label: res}, photos, sources=np.array([0, 0, 1]))
    assert out.table.attrs == {} and out.runs == {spec.label: res}
    assert list(out.table.columns) == ["encoder", "ratio", "ci_low", "ci_high", "n_images", "n_sources"]
    assert out.table.n_images.tolist() == [3] and out.table.n_sources.tolist() == [2]
    assert list(out.per_image.source) == [0, 0, 1] and len(out.per_image) == 3
    assert out.table.ratio.iloc[0] == pytest.approx(np.nanmean(out.per_image.ratio))
