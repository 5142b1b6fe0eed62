"""The run's plan (what a run will do, said before it starts), the device setting and ``--set`` overrides."""
from __future__ import annotations

import pytest
import torch

from posenc_utils.primitives import devices
from posenc_utils.models import encoders
from posenc_utils.runners import pipeline
from posenc_utils.runners.plan import feature_bytes, run_plan
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
    assert "feature storage: about" in lines[-1] and "enough" in lines[-1]
    # the ablations: 4 encoders x (5 modes + 3 canvases) on 16 training + 4 + 3 x 1 test images at 196 px
    n = 16 + 4 + 3
    ablation = sum(8 * feature_bytes(quick, sum(encoders.tap_channels(e, 196)), n)
                   for e in quick.encoders if e.name != "posenet")
    assert f"up to {ablation / 1e9:.1f} GB" in lines[-1] and f"on {n} images" in lines[-1]


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
