"""The GPU path against the CPU's on the same inputs (runs only where torch finds a CUDA GPU).

Stated tolerance: features within 1% of each tap's largest value (cuDNN may use TF32 and other algorithms than the
CPU's), and each head's mean SPC on the test images within 0.02 after the same readout training (the same seed,
batches and steps; the arithmetic's round-off is what differs).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from posenc_utils.engine import images, readout
from posenc_utils.engine.features import extract_features
from posenc_utils.models.profiles import EncoderSpec, ImageSetSpec
from posenc_utils.primitives.specs import ReadoutSpec

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA GPU here: the GPU path's agreement with the CPU's is checked where one is")


@pytest.mark.parametrize("storage", ["store", "memory", "recompute"])
@pytest.mark.parametrize("spec", [EncoderSpec("vgg16", "random"), EncoderSpec("resnet152", "random")],
                         ids=["vgg16", "resnet152"])
def test_the_gpu_and_the_cpu_agree(tmp_path, monkeypatch, spec, storage):
    size, out = 64, {}
    for dev in ("cpu", "cuda"):
        monkeypatch.setenv("POSENC_CACHE_DIR", str(tmp_path / dev))  # the features' key does not name the device
        train = images.build_image_set(ImageSetSpec("dead_leaves", "dead_leaves", n=16), size)
        test = images.build_image_set(ImageSetSpec("dead_leaves", "dead_leaves", n=6, seed=7), size)
        fs = extract_features(spec, train, device=dev, storage=storage if dev == "cuda" else "store")
        ft = extract_features(spec, test, device=dev, storage=storage if dev == "cuda" else "store")
        r = readout.train_readout(fs, ("H", "G"), ReadoutSpec(epochs=2, batch_size=4), size, device=dev,
                                  scaling="tap", use_cache=False)
        df, _ = readout.evaluate(r, ft, size, device=dev, use_cache=False)
        out[dev] = (fs.read(slice(None)).cpu().numpy(), df.groupby("pattern").spc.mean())
    (x_cpu, spc_cpu), (x_gpu, spc_gpu) = out["cpu"], out["cuda"]
    for name, sl in fs.tap_slices().items():
        peak = np.abs(x_cpu[:, sl]).max()
        assert np.abs(x_gpu[:, sl] - x_cpu[:, sl]).max() <= 0.01 * peak, name
    assert (spc_gpu - spc_cpu).abs().max() <= 0.02, (spc_cpu, spc_gpu)
