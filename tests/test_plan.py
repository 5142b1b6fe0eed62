"""The run's plan (what a run will do, said before it starts), the device setting and ``--set`` overrides."""
from __future__ import annotations

import pytest
import torch

from posenc_utils.primitives import devices
from posenc_utils.models import encoders
from posenc_utils.runners import pipeline
from posenc_utils.runners import plan
from posenc_utils.runners.plan import feature_bytes, run_plan
from standin_data import make_probe_datasets
from posenc_utils.models.profiles import EncoderSpec, get_profile


@pytest.mark.parametrize("spec", [EncoderSpec("vgg16", "random"), EncoderSpec("efficientnet_lite0", "random"),
                                  EncoderSpec("resnet152", "random", taps=("layer1", "layer2")),
                                  EncoderSpec("posenet", "none")], ids=lambda s: s.label)
def test_shape_only_channels_are_the_built_encoders(spec):
    assert encoders.tap_channels(spec, 64) == encoders.build_encoder(spec, 0, 64).channels
    # the shape-only build never lands in the cache of built networks
    again = encoders.build_encoder(spec, 0, 64)
    assert all(p.device.type == "cpu" for p in again.module.parameters())


def test_the_plan_states_images_encoders_storage_and_device():
    quick = get_profile("quick")
    lines = run_plan(quick)
    text = "\n".join(lines)
    assert "dead_leaves 32 (training); photos 8, black 1, white 1, noise 1 (test)" in text
    assert "VGG16 (HED): 1472 channels" in text and "ResNet152 (random init): 3904 channels" in text
    assert "device: CPU" in text or "device: GPU" in text
    assert feature_bytes(quick, 1472, 10) == 10 * 28 * 28 * 1472 * 2  # float16, every tap at 28 x 28
    storage = next(line for line in lines if line.startswith("feature storage: about"))
    assert "enough" in storage
    # the ablations: 4 encoders x (5 modes + 3 canvases) on 16 training + 4 + 3 x 1 test images at 196 px
    n = 16 + 4 + 3
    ablation = sum(8 * feature_bytes(quick, sum(encoders.tap_channels(e, 196)), n)
                   for e in quick.encoders if e.name != "posenet")
    assert f"up to {ablation / 1e9:.1f} GB" in storage and f"on {n} images" in storage
    assert "VGG16 (HED): 1472 channels, features 99 MB, stored (as the profile's feature_storage asks)" in text
    assert lines[-2].startswith("memory: host") and lines[-1].startswith("rough time on this device")
    assert all(f"notebook {nb}" in lines[-1] for nb in ("02", "03", "04", "05"))


def test_the_device_setting(monkeypatch):
    monkeypatch.setenv("POSENC_DEVICE", "cpu")
    assert devices.device() == "cpu" and "POSENC_DEVICE" in devices.describe()
    monkeypatch.setenv("POSENC_DEVICE", "tpu")
    with pytest.raises(ValueError, match="POSENC_DEVICE='tpu'.*cpu, cuda"):
        devices.device()
    monkeypatch.delenv("POSENC_DEVICE")
    assert devices.device() == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        monkeypatch.setenv("POSENC_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="finds no CUDA GPU"):
            devices.device()



def test_side_by_side_runs_each_task_on_one_thread_and_reruns_an_internal_error_once():
    """Results in order, each task on one of torch's threads; a task failing with SystemError runs once more,
    alone, with a warning that shows the error; a second SystemError, or any other error, is raised."""
    calls: dict[str, int] = {}

    def task(name, fail_times=0, error=SystemError):
        def run():
            calls[name] = calls.get(name, 0) + 1
            if calls[name] <= fail_times:
                raise error(f"{name} failed")
            return name, torch.get_num_threads()
        return run

    before = torch.get_num_threads()
    assert devices.side_by_side([task("a"), task("b"), task("c")]) == [("a", 1), ("b", 1), ("c", 1)]
    with pytest.warns(RuntimeWarning, match="(?s)running it again alone.*SystemError: f failed"):
        assert devices.side_by_side([task("a2"), task("f", fail_times=1)]) == [("a2", 1), ("f", 1)]
    assert calls["f"] == 2 and calls["a2"] == 1, "the failed task ran twice, the other once"
    with pytest.warns(RuntimeWarning), pytest.raises(SystemError, match="d failed"):
        devices.side_by_side([task("d", fail_times=2)])
    with pytest.raises(ValueError, match="e failed"):
        devices.side_by_side([task("e", fail_times=1, error=ValueError)])
    assert calls["e"] == 1, "only an internal error is run again"
    assert torch.get_num_threads() == before

def test_overrides_from_the_command_line():
    got = pipeline.parse_overrides(["image_size=64", "readout.epochs=2", "readout.width=null", "seeds=2",
                                    "downstream.width=8"])
    assert got == {"image_size": 64, "readout": {"epochs": 2, "width": None}, "seeds": 2, "downstream": {"width": 8}}
    prof = get_profile("paper", **got)
    assert prof.image_size == 64 and prof.readout.epochs == 2 and prof.readout.lr == 0.1 and prof.downstream.width == 8
    assert get_profile("paper").image_size == 224, "the profile itself keeps the paper's settings"
    with pytest.raises(ValueError, match="field=value"):
        pipeline.parse_overrides(["image_size"])
    with pytest.raises(ValueError, match="no_such_field.*fields are.*image_size"):
        pipeline.parse_overrides(["no_such_field=1"])


def test_readout_and_forward_arithmetic():
    """The plan's time estimate counts arithmetic: a PEM's training step and an encoder's forward pass."""
    # 1 layer 3x3 on 1472 channels, 5 heads, 28 x 28: 1472 x 5 x 9 x 784 multiply-adds, x 2 x 3 (backward)
    assert plan.readout_gflop(1472, 5) == pytest.approx(6 * 1472 * 5 * 9 * 784 / 1e9)
    # the paper's C -> C stacked readout: a 1472 -> 1472 layer first
    assert plan.readout_gflop(1472, 3, layers=2) == pytest.approx(6 * (1472 * 1472 + 1472 * 3) * 9 * 784 / 1e9)
    assert plan.readout_gflop(1472, 3, layers=2, width=4) == pytest.approx(6 * (1472 * 12 + 12 * 3) * 9 * 784 / 1e9)
    assert plan.forward_gflop(EncoderSpec("vgg16", "random"), 224) == pytest.approx(30.7, rel=0.01)  # VGG16's own count


@pytest.fixture
def paper_data(tmp_path, monkeypatch):
    root = make_probe_datasets(tmp_path / "raw", n_train=6, n_test=3)
    monkeypatch.setenv("POSENC_DATA_ROOT", str(root))
    return root


def test_a_run_that_cannot_fit_stops_before_starting(paper_data, monkeypatch):
    """Storing features the disk cannot hold, holding them where memory cannot, or Table 4 below what an unpadded
    VGG16 needs: the plan names each, with the setting that fixes it, and the pipeline starts nothing."""
    monkeypatch.setattr(plan.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 10**5})())
    paper = get_profile("paper", encoders=(EncoderSpec("posenet", "none"), EncoderSpec("vgg16", "random")),
                        image_size=64, table4_image_size=196)
    auto = plan.make_plan(paper, downstream=False, rate=100.0)
    assert paper.feature_storage == "auto" and auto.problems == []
    assert auto.storage["VGG16 (random init)"].mode == "recompute" and "do not fit" in auto.storage["VGG16 (random init)"].reason
    assert any("VGG16 (random init): 1472 channels" in line and "recomputed at each use" in line for line in auto.lines)
    stored = plan.make_plan(paper.with_overrides(feature_storage="store", table4_image_size=100), downstream=False,
                            rate=100.0)
    assert any("need" in p and "POSENC_CACHE_DIR" in p and "feature_storage=auto" in p for p in stored.problems)
    assert any("at least 196 px: --set table4_image_size=196" in p for p in stored.problems)
    assert auto.estimate_s["02"] > plan.make_plan(paper.with_overrides(feature_storage="store"), downstream=False,
                                                  rate=100.0).estimate_s["02"], "recomputing costs forward passes"
    with pytest.raises(RuntimeError, match="(?s)cannot run as set on this machine.*table4_image_size=196"):
        pipeline.run("paper", str(paper_data / "out"), only=["02"],
                     overrides={"encoders": paper.encoders, "image_size": 64, "table4_image_size": 100})
    assert not (paper_data / "out").exists(), "nothing was started"


def test_the_plan_command_starts_nothing_and_says_what_stops_a_run(paper_data, capsys):
    vgg = "--set", "table4_image_size=100"
    assert pipeline.main(["plan", "--profile", "paper", "--only", "01", "02", *vgg]) == 2
    out = capsys.readouterr().out
    assert "DUTS-TR 6 (training); PASCAL-S 3" in out and "rough time on this device" in out
    assert "cannot run: Table 4 probes VGG16" in out and "table4_image_size=196" in out
    assert not (paper_data / "out").exists() and not list(paper_data.parent.glob("**/build"))


def test_the_plan_command_names_missing_data_without_a_traceback(capsys):
    assert pipeline.main(["plan", "--profile", "paper", "--only", "02"]) == 2  # conftest: an empty data root
    out = capsys.readouterr().out
    assert "cannot run, missing: DUTS-TR images not found" in out and "Traceback" not in out
