"""timm encoders through the registry: one Family entry (families.py), timm's own feature extraction."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from posenc_utils.reporting import bench
from posenc_utils.models import encoders, networks
from posenc_utils.studies import experiments
from posenc_utils.runners import plan
from posenc_utils.models.encoders import build_encoder
from posenc_utils.models.families import family_of
from posenc_utils.models.profiles import EncoderSpec, get_profile

timm = pytest.importorskip("timm")

# two families of network: a residual CNN and a ConvNeXt (7x7 depthwise convolutions, LayerNorm)
TWO_FAMILIES = ("timm:resnet18", "timm:convnext_atto")


@pytest.mark.parametrize("name", TWO_FAMILIES)
def test_timm_taps_are_timms_feature_stages(name):
    model = name.removeprefix("timm:")
    info = timm.create_model(model, pretrained=False, features_only=True).feature_info
    enc = build_encoder(EncoderSpec(name, "random"), seed=0, image_size=64)
    assert enc.tap_names == tuple(info.module_name())
    assert enc.channels == tuple(info.channels()) == encoders.tap_channels(EncoderSpec(name), 64)
    outs = enc(torch.rand(2, 3, 64, 64))
    assert [o.shape[-1] for o in outs] == [64 // r for r in info.reduction()]
    assert enc.label == f"timm {model} (random init)" and "[0, 1]" in enc.input_convention
    assert family_of(name).paper_model is None  # compared with no paper row


def test_timm_weights_are_seeded_and_padding_switches():
    a = build_encoder(EncoderSpec("timm:resnet18"), seed=0, image_size=64)
    b = build_encoder(EncoderSpec("timm:resnet18"), seed=1, image_size=64)
    x = torch.rand(1, 3, 64, 64)
    assert not torch.equal(a(x)[-1], b(x)[-1])
    assert torch.equal(a(x)[-1], build_encoder(EncoderSpec("timm:resnet18"), seed=0, image_size=64)(x)[-1])
    reflect = build_encoder(EncoderSpec("timm:resnet18", "random", "reflect"), seed=0, image_size=64)
    convs = [m for m in reflect.module.modules() if isinstance(m, torch.nn.Conv2d) and m.padding != (0, 0)]
    assert convs and all(m.padding_mode == "reflect" for m in convs)
    assert not torch.equal(a(x)[0], reflect(x)[0])
    with pytest.raises(encoders.PaddingNotSupportedError, match="forward pass fails"):
        build_encoder(EncoderSpec("timm:resnet18", "random", "none"), image_size=64)


def test_timm_pretrained_weights_from_a_local_file(tmp_path):
    """'imagenet' reads the model's state dict from <torch hub>/checkpoints/timm/ and feeds the images with
    the weights' own mean/std; offline without the file, the error names the file and folder."""
    spec = EncoderSpec("timm:resnet18", "imagenet")
    with pytest.raises(networks.WeightsNotFoundError, match=r"resnet18\.safetensors.*checkpoints/timm"):
        build_encoder(spec, image_size=64)
    assert any("resnet18" in m for m in plan.missing_inputs(get_profile("quick", encoders=(spec,)), downstream=False))
    saved = timm.create_model("resnet18", pretrained=False)
    with torch.no_grad():
        saved.conv1.weight.mul_(-3.0)  # weights no seed would give
    path = networks.timm_weights_file("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(saved.state_dict(), path.with_suffix(".pth"))
    enc = build_encoder(spec, image_size=64)
    assert torch.equal(enc.module.net.conv1.weight, saved.conv1.weight)
    mean = timm.get_pretrained_cfg("resnet18").mean
    assert str(tuple(mean)) in enc.input_convention
    x = torch.rand(1, 3, 8, 8)
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(timm.get_pretrained_cfg("resnet18").std).view(1, 3, 1, 1)
    assert torch.allclose(enc.preprocess(x), expected)
    assert not plan.missing_inputs(get_profile("quick", encoders=(spec,)), downstream=False)


def test_timm_selected_taps_and_errors():
    enc = build_encoder(EncoderSpec("timm:resnet18", taps=("layer2", "layer4")), image_size=64)
    assert enc.tap_names == ("layer2", "layer4") and enc.channels == (128, 512)
    with pytest.raises(ValueError, match="not among its feature stages"):
        build_encoder(EncoderSpec("timm:resnet18", taps=("fc",)), image_size=64)
    with pytest.raises(ValueError, match="unknown timm model"):
        build_encoder(EncoderSpec("timm:no_such_net"), image_size=64)
    assert EncoderSpec.parse("timm:convnext_atto:random:reflect") == EncoderSpec("timm:convnext_atto", "random", "reflect")


def test_the_benchmark_times_timms_network():
    net = bench.bare_network(EncoderSpec("timm:convnext_atto"), 64)
    assert len(net(torch.zeros(1, 3, 64, 64))) == 4


def test_quick_profile_probes_two_timm_families():
    """Table 1 of the quick profile with two timm encoders of different families: every pattern and test
    set gets an SPC and the feature measures, as any other encoder."""
    specs = tuple(EncoderSpec(n) for n in TWO_FAMILIES)
    prof = get_profile("quick", encoders=specs, seeds=1)
    result = experiments.table1(prof)
    t = result.table
    assert set(t.encoder) == {s.label for s in specs}
    assert len(t) == len(specs) * t.pattern.nunique() * t.test_set.nunique()
    assert np.isfinite(t.spc).all() and (t.spc.abs() <= 1).all()
    assert set(result.per_image.encoder) == set(t.encoder)
    assert t.position_variance_train.between(0, 1).all()  # the feature measure, on the training images


def test_features_are_keyed_by_the_content_of_a_placed_weights_file(tmp_path):
    """A timm weights file's name does not pin its content: replacing it gives other cached features."""
    from posenc_utils.engine import features, images
    from posenc_utils.models.profiles import ImageSetSpec

    spec = EncoderSpec("timm:resnet18", "imagenet")
    imgs = images.build_image_set(ImageSetSpec("noise", "noise", n=2), 32)
    path = networks.timm_weights_file("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(timm.create_model("resnet18").state_dict(), path)
    first = features.feature_key(spec, 0, imgs, 28, "float16")
    torch.save(timm.create_model("resnet18").state_dict() | {"conv1.weight": torch.ones(64, 3, 7, 7)}, path)
    assert features.feature_key(spec, 0, imgs, 28, "float16") != first
    random_key = features.feature_key(EncoderSpec("timm:resnet18"), 0, imgs, 28, "float16")
    assert random_key == features.feature_key(EncoderSpec("timm:resnet18"), 0, imgs, 28, "float16")


def test_timm_same_padding_layers_refuse_other_modes():
    """tf_* models pad inside Conv2dSame's forward pass: another mode would silently stay zero padding."""
    name = "timm:tf_mobilenetv3_small_minimal_100"
    assert build_encoder(EncoderSpec(name), image_size=64).channels
    for mode in ("reflect", "none", "canvas:1"):
        with pytest.raises(encoders.PaddingNotSupportedError, match="Conv2dSame"):
            build_encoder(EncoderSpec(name, "random", mode), image_size=64)
