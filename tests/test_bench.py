"""The benchmark: its floor (bare forward passes), FLOP counts, and a whole report on a tiny profile."""
from __future__ import annotations

import json
import os

import pytest
import torch

from posenc_utils.reporting import bench
from posenc_utils.primitives import devices
from posenc_utils.models.families import RESNET152_AUTHORS_TAPS
from posenc_utils.models.profiles import EncoderSpec, get_profile


@pytest.mark.parametrize("spec, last", [
    (EncoderSpec("vgg16", "random"), "29"),  # relu5_3: the final max-pool is not needed
    (EncoderSpec("vgg16", "random", "none"), "29"),
])
def test_bare_vgg16_stops_at_the_last_tap(spec, last):
    net = bench.bare_network(spec, 224)
    assert isinstance(net[-1], torch.nn.ReLU) and len(net) == int(last) + 1
    pad = {m.padding for m in net if isinstance(m, torch.nn.Conv2d)}
    assert pad == ({(0, 0)} if spec.padding == "none" else {(1, 1)})


def test_bare_networks_of_other_encoders():
    assert bench.bare_network(EncoderSpec("posenet", "none"), 64) is None
    res = bench.bare_network(EncoderSpec("resnet152", "random", taps=RESNET152_AUTHORS_TAPS), 64)
    assert res[-1] is not None and len(res) == 8  # conv1, bn1, relu, maxpool, layer1..4: no pooling, no fc
    out = res.eval()(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 2048, 2, 2)
    lite = bench.bare_network(EncoderSpec("efficientnet_lite0", "imagenet"), 64)
    assert lite.eval()(torch.rand(1, 3, 64, 64)).shape[1] == 320  # the last block, not the 1280-channel head


def test_flops_and_best_forward():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1))
    # 2 * out pixels * out channels * in channels * 9
    assert bench.forward_gflop(net, 32) == pytest.approx(2 * 32 * 32 * 8 * 3 * 9 / 1e9)
    fwd = bench.best_forward(net, 32, batch_sizes=(1, 2), repeats=1)
    assert fwd["batch_size"] in (1, 2) and fwd["s_per_image"] == min(fwd["by_batch_size"].values()) > 0
    assert bench.dense_matmul_gflops(n=256, repeats=1) > 0


def test_report_on_a_tiny_profile(tmp_path):
    profile = get_profile("quick", encoders=(EncoderSpec("posenet", "none"), EncoderSpec("vgg16", "random")),
                          readout={"epochs": 2, "batch_size": 8})
    cache_before = os.environ["POSENC_CACHE_DIR"]
    report = bench.run("quick", str(tmp_path), profile=profile, batch_sizes=(1, 4))
    assert os.environ["POSENC_CACHE_DIR"] == cache_before, "the benchmark's cold cache is gone: the setting is put back"
    saved = json.loads(bench.BENCHMARK.path(tmp_path / "quick").read_text())
    assert saved == json.loads(json.dumps(report))
    assert report["wall_s"] > 0 and report["encoder_floor_s"] > 0 and report["cpu"] == devices.cpu_model()
    assert report["readout_floor_s"] > 0 and report["floor_s"] == pytest.approx(
        report["encoder_floor_s"] + report["readout_floor_s"], abs=0.02)
    assert report["wall_over_floor"] == pytest.approx(report["wall_s"] / report["floor_s"], rel=0.02)
    assert report["wall_over_encoder_floor"] == pytest.approx(report["wall_s"] / report["encoder_floor_s"], rel=0.02)
    # the readout floor is the readouts' counted arithmetic at the measured matrix-product rate
    assert sum(e["readout_floor_s"] for e in report["encoders"].values()) == pytest.approx(
        report["readout_floor_s"], abs=0.05)
    assert report["encoders"]["VGG16 (random init)"]["readout_gflop"] > report["encoders"]["PosENet"]["readout_gflop"] > 0
    vgg = report["encoders"]["VGG16 (random init)"]
    assert vgg["floor_batch_size"] in (1, 4) and vgg["encoder_overhead_ratio"] > 0.5
    n = report["images_per_encoder"]  # both sides are rounded: floor_s to 0.01 s, the time per image to 1e-5 s
    assert vgg["floor_s"] == pytest.approx(vgg["floor_s_per_image"] * n, rel=1e-3, abs=0.005 + 0.5e-5 * n)
    assert "floor_s" not in report["encoders"]["PosENet"]  # no network: no floor
    assert report["encoders"]["PosENet"]["readout_s_per_epoch"] > 0
    phases = report["phases_s"]
    assert {"encoder_forward", "readout_training", "evaluation", "image_sets", "checksum"} <= set(phases)
    assert sum(phases.values()) == pytest.approx(report["wall_s"], abs=0.5)
    assert report["peak_rss_gb"] > 0.1
    text = bench.report_text(report)
    assert "x the floor" in text and "VGG16 (random init)" in text
