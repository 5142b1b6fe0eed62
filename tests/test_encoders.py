"""Encoders: taps, padding modes, weights (random, ImageNet offline, HED) and EfficientNet-Lite0.

Every large network is built once per module (module-scoped fixtures) at a small probe size.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision
from scipy import ndimage

from posenc_utils.primitives import borders
from posenc_utils.models import encoders, networks
from posenc_utils.engine import images
from posenc_utils.models.encoders import build_encoder
from posenc_utils.models.profiles import EncoderSpec

VGG_CHANNELS = (64, 128, 256, 512, 512)


def photo01(name: str, size: int = 224) -> torch.Tensor:
    """A shipped photograph resized to ``size``, float in [0, 1], shape (1, 3, size, size)."""
    path = next(p for p in images.shipped_photo_paths() if p.name == name)
    img = images.resize(images.read_rgb(path), size)
    return torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def vgg_random():
    return build_encoder(EncoderSpec("vgg16", "random"), seed=0, image_size=64)


@pytest.fixture(scope="module")
def resnet_random():
    return build_encoder(EncoderSpec("resnet152", "random"), seed=0, image_size=32)


@pytest.fixture(scope="module")
def vgg_hed():
    return build_encoder(EncoderSpec("vgg16", "hed"), seed=0, image_size=64)


@pytest.fixture(scope="module")
def hed_arrays():
    return networks.hed_weights()


@pytest.fixture(scope="module")
def lite0():
    return networks.efficientnet_lite0_model().eval()


# ---------------------------------------------------------------- VGG16 and padding


def test_vgg16_random_taps(vgg_random):
    enc = vgg_random
    assert enc.channels == VGG_CHANNELS
    assert enc.tap_names == ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
    outs = enc(torch.rand(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, c, s, s) for c, s in zip(VGG_CHANNELS, (64, 32, 16, 8, 4))]
    assert all((o >= 0).all() for o in outs), "taps are after ReLU"
    assert not any(p.requires_grad for p in enc.module.parameters())
    assert not enc.module.training
    assert enc.preprocess is networks.identity  # random weights see [0, 1] RGB, as the authors' code


def test_vgg16_random_is_seeded(vgg_random):
    # (the same seed giving the same weights is checked by the padding tests below)
    other = build_encoder(EncoderSpec("vgg16", "random"), seed=1, image_size=32)
    assert not torch.equal(vgg_random.module.net[0].weight, other.module.net[0].weight)
    x = torch.rand(1, 3, 32, 32)
    assert not torch.allclose(vgg_random(x)[0], other(x)[0])


def test_vgg16_no_padding_shrinks_maps_and_keeps_weights(vgg_random):
    spec = EncoderSpec("vgg16", "random", "none", taps=("3", "8"))  # stop after relu2_2: 64 px is enough
    enc = build_encoder(spec, seed=0, image_size=64)
    outs = enc(torch.rand(1, 3, 64, 64))
    assert outs[0].shape[-1] == 60, "relu1_2: two unpadded 3x3 convs take 4 px"
    assert outs[1].shape[-1] == 26, "relu2_2: (60 / 2) - 4"
    assert enc.tap_names == ("relu1_2", "relu2_2")
    convs = [m for m in enc.module.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13 and all(c.padding == (0, 0) for c in convs)
    ref = vgg_random.module.state_dict()
    got = enc.module.state_dict()
    assert set(got) == set(ref)
    assert all(torch.equal(got[k], ref[k]) for k in ref), "padding 'none' must keep the seeded weights"


def test_vgg16_no_padding_full_depth_at_224():
    enc = build_encoder(EncoderSpec("vgg16", "random", "none"), seed=0, image_size=224)
    sizes = [o.shape[-1] for o in enc(torch.zeros(1, 3, 224, 224))]
    assert sizes == [220, 106, 47, 17, 2]


def test_vgg16_no_padding_too_small_image_gives_clear_error():
    with pytest.raises(ValueError, match=r"64x64 images with padding 'none'.*196 px"):
        build_encoder(EncoderSpec("vgg16", "random", "none"), seed=0, image_size=64)


def test_reflect_padding(vgg_random):
    enc = build_encoder(EncoderSpec("vgg16", "random", "reflect"), seed=0, image_size=32)
    convs = [m for m in enc.module.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13
    assert all(c.padding_mode == "reflect" and c.padding == (1, 1) for c in convs)
    assert all(c.padding_mode == "zeros" for c in vgg_random.module.modules() if isinstance(c, nn.Conv2d))
    sd, ref = enc.module.state_dict(), vgg_random.module.state_dict()
    assert all(torch.equal(sd[k], ref[k]) for k in ref)
    x = torch.rand(1, 3, 32, 32)
    a, b = enc(x), vgg_random(x)
    assert [o.shape for o in a] == [o.shape for o in b]
    assert not torch.allclose(a[0], b[0]), "reflect padding changes the border responses"
    assert torch.allclose(a[0][..., 4:-4, 4:-4], b[0][..., 4:-4, 4:-4]), "but not the interior of relu1_2"


def test_set_padding_small_net():
    net = nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3, padding=1),
                        nn.MaxPool2d(3, 2, padding=1), nn.Conv2d(4, 4, 1))
    borders.set_padding(net, "replicate")
    assert isinstance(net[0], nn.ReplicationPad2d)
    assert net[2].padding_mode == "replicate"
    assert net[4].padding_mode == "zeros"  # a 1x1 conv without padding is left alone
    net2 = nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(3, 2, padding=1))
    borders.set_padding(net2, "none")
    assert isinstance(net2[0], nn.Identity) and net2[1].padding == (0, 0) and net2[2].padding == 0
    assert net2(torch.zeros(1, 3, 10, 10)).shape[-1] == 3  # 10 -> 8 -> (8 - 3) // 2 + 1
    with pytest.raises(ValueError, match="unknown padding"):
        borders.set_padding(net2, "mirror")


# ---------------------------------------------------------------- ResNet152, EfficientNet, torchvision


def test_resnet152_random_taps(resnet_random):
    enc = resnet_random
    assert enc.channels == (64, 256, 512, 1024, 2048)
    assert enc.tap_names == ("stem", "layer1", "layer2", "layer3", "layer4")
    outs = enc(torch.rand(1, 3, 32, 32))
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2, 1]
    assert [o.shape[1] for o in outs] == list(enc.channels)


def test_resnet152_no_padding_is_refused():
    with pytest.raises(encoders.PaddingNotSupportedError, match="residual") as e:
        build_encoder(EncoderSpec("resnet152", "random", "none"))
    assert isinstance(e.value, ValueError)
    assert "additions" in str(e.value)


def test_efficientnet_no_padding_is_refused():
    with pytest.raises(encoders.PaddingNotSupportedError, match="residual"):
        build_encoder(EncoderSpec("efficientnet_lite0", "imagenet", "none"))


def test_efficientnet_lite0_encoder_taps():
    enc = build_encoder(EncoderSpec("efficientnet_lite0", "imagenet"), image_size=64)
    assert len(enc.taps) == 5 and enc.tap_names == tuple(f"stage{i}" for i in range(1, 6))
    outs = enc(torch.rand(1, 3, 64, 64))
    assert [o.shape[-1] for o in outs] == [32, 16, 8, 4, 2]
    assert enc.channels == tuple(o.shape[1] for o in outs)
    assert enc.preprocess is networks.lite_normalize


def test_torchvision_auto_taps():
    enc = build_encoder(EncoderSpec("tv:resnet18", "random"), image_size=64)
    assert len(enc.taps) == 5
    sizes = [o.shape[-1] for o in enc(torch.rand(1, 3, 64, 64))]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 5
    assert sizes == [32, 16, 8, 4, 2]
    assert enc.channels[-1] == 512


def test_torchvision_no_padding_residual_is_refused():
    with pytest.raises(encoders.PaddingNotSupportedError, match="resnet18"):
        build_encoder(EncoderSpec("tv:resnet18", "random", "none"), image_size=64)


@pytest.mark.parametrize("fields, match", [  # the spec refuses most when it is made, the build the rest
    (dict(name="alexnet9"), "unknown encoder"),
    (dict(name="vgg16", weights="bogus"), "weights"),
    (dict(name="vgg16", weights="random", padding="bogus"), "unknown padding"),
    (dict(name="resnet152", weights="hed"), "weights"),
    (dict(name="efficientnet_lite0", weights="hed"), "weights"),
    (dict(name="tv:not_a_model"), "unknown torchvision"),
    (dict(name="tv:resnet18", weights="hed"), "weights"),
    (dict(name="tv:resnet18", weights="random", taps=("nope",)), "unknown tap"),
])
def test_bad_specs(fields, match):
    with pytest.raises(ValueError, match=match):
        build_encoder(EncoderSpec(**fields), image_size=32)


def test_posenet_returns_the_image():
    enc = build_encoder(EncoderSpec("posenet", "none"), image_size=32)
    x = torch.rand(2, 3, 32, 32)
    out = enc(x)
    assert len(out) == 1 and torch.equal(out[0], x)
    assert enc.channels == (3,) and enc.tap_names == ("image",)


def test_resize_taps():
    outs = [torch.rand(2, 4, 16, 16), torch.rand(2, 8, 3, 3)]
    r = encoders.resize_taps(outs, 28)
    assert r.shape == (2, 12, 28, 28)
    # align_corners=True keeps the corner values
    assert torch.allclose(r[:, 4:, 0, 0], outs[1][:, :, 0, 0])
    assert torch.allclose(r[:, :4, -1, -1], outs[0][:, :, -1, -1])


# ---------------------------------------------------------------- ImageNet weights, offline


def _save_random_state_dict(arch: str, seed: int, small_prefix: str | None = None) -> dict:
    """Save a seeded random torchvision state dict where torchvision's ImageNet file would be.

    With ``small_prefix``, tensors outside that prefix are stored as stride-0 views of one
    zero (same shapes and dtypes, a few bytes on disk) to keep the file small.
    """
    torch.manual_seed(seed)
    sd = torchvision.models.get_model(arch, weights=None).state_dict()
    if small_prefix:
        sd = {k: v if k.startswith(small_prefix) or v.dim() == 0 else torch.zeros(1, dtype=v.dtype).expand(v.shape)
              for k, v in sd.items()}
    path, _url = networks.imagenet_weights_file(arch)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return sd


def test_imagenet_weights_file_follows_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    path, url = networks.imagenet_weights_file("vgg16")
    assert path == tmp_path / "th" / "hub" / "checkpoints" / "vgg16-397923af.pth"
    assert url.endswith("/vgg16-397923af.pth")


def test_vgg16_imagenet_loads_the_local_file(tmp_path, monkeypatch, vgg_random):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    sd = _save_random_state_dict("vgg16", seed=1234, small_prefix="features.")
    enc = build_encoder(EncoderSpec("vgg16", "imagenet"), seed=0, image_size=32)
    feats = enc.module.net
    assert torch.equal(feats[0].weight, sd["features.0.weight"])
    assert torch.equal(feats[28].weight, sd["features.28.weight"])
    assert torch.equal(feats[28].bias, sd["features.28.bias"])
    assert not torch.equal(feats[0].weight, vgg_random.module.net[0].weight)  # not the seed-0 init
    # ImageNet normalization in front of the network
    assert enc.preprocess is networks.imagenet_normalize
    assert "ImageNet" in enc.input_convention
    x = torch.rand(1, 3, 8, 8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(enc.preprocess(x), (x - mean) / std)


def test_torchvision_imagenet_loads_the_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    sd = _save_random_state_dict("resnet18", seed=99)
    enc = build_encoder(EncoderSpec("tv:resnet18", "imagenet"), seed=0, image_size=32)
    assert torch.equal(enc.module.net.conv1.weight, sd["conv1.weight"])
    assert torch.equal(enc.module.net.layer4[1].conv2.weight, sd["layer4.1.conv2.weight"])
    assert enc.preprocess is networks.imagenet_normalize


def test_missing_weights_offline_names_the_file(tmp_path, monkeypatch):
    home = tmp_path / "empty-torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("POSENC_OFFLINE", "1")
    with pytest.raises(encoders.WeightsNotFoundError) as e:
        build_encoder(EncoderSpec("vgg16", "imagenet"), image_size=32)
    msg = str(e.value)
    assert "vgg16-397923af.pth" in msg
    assert str(home / "hub" / "checkpoints") in msg
    assert "POSENC_OFFLINE" in msg and "TORCH_HOME" in msg
    assert isinstance(e.value, FileNotFoundError)
    with pytest.raises(encoders.WeightsNotFoundError, match="resnet152-394f9c45.pth"):
        networks.load_imagenet_state_dict("resnet152")


def test_failed_download_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))

    def no_network(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(encoders.WeightsNotFoundError, match="download failed: OSError: network is unreachable"):
        networks.load_imagenet_state_dict("vgg16", allow_download=True)


# ---------------------------------------------------------------- HED


def test_hed_weights_shapes(hed_arrays):
    w = hed_arrays
    vgg_convs = [(64, 3), (64, 64), (128, 64), (128, 128), (256, 128), (256, 256), (256, 256),
                 (512, 256), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
    for i, (o, c) in enumerate(vgg_convs):
        assert w[f"conv{i}.weight"].shape == (o, c, 3, 3), i
        assert w[f"conv{i}.bias"].shape == (o,), i
    for k, c in zip(range(1, 6), VGG_CHANNELS):
        assert w[f"dsn{k}.weight"].shape == (1, c, 1, 1)
        assert w[f"dsn{k}.bias"].shape == (1,)
    assert w["fuse.weight"].shape == (1, 5, 1, 1) and w["fuse.bias"].shape == (1,)
    assert len(w) == 2 * 13 + 2 * 6
    assert all(np.isfinite(v).all() for v in w.values())


def test_load_hed_into_vgg16(hed_arrays):
    torch.manual_seed(0)
    feats = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    convs = [m for m in feats if isinstance(m, nn.Conv2d)]
    before = [c.weight.detach().clone() for c in convs]
    networks.load_hed_into_vgg16(feats)
    assert len(convs) == 13
    for i, conv in enumerate(convs):
        assert torch.equal(conv.weight, torch.from_numpy(hed_arrays[f"conv{i}.weight"])), i
        assert torch.equal(conv.bias, torch.from_numpy(hed_arrays[f"conv{i}.bias"])), i
        assert not torch.equal(conv.weight, before[i]), i
    with pytest.raises(ValueError, match="13"):
        networks.load_hed_into_vgg16(nn.Sequential(nn.Conv2d(3, 64, 3)))


def test_hed_encoder(vgg_hed, hed_arrays):
    assert vgg_hed.preprocess is networks.caffe_bgr
    assert torch.equal(vgg_hed.module.net[0].weight, torch.from_numpy(hed_arrays["conv0.weight"]))
    x = torch.zeros(1, 3, 2, 2)
    x[:, 0] = 1.0  # pure red
    bgr = networks.caffe_bgr(x)
    assert torch.allclose(bgr[0, :, 0, 0], torch.tensor([-104.00699, -116.66877, 255 - 122.67892]))


def _edge_agreement(edge: np.ndarray, img01: torch.Tensor) -> float:
    """Pearson correlation of an edge map with the Sobel gradient magnitude of the (smoothed) grey image."""
    grey = ndimage.gaussian_filter(img01[0].mean(0).numpy().astype(np.float64), 1.0)
    mag = np.hypot(ndimage.sobel(grey, 0), ndimage.sobel(grey, 1))
    return float(np.corrcoef(edge.ravel(), mag.ravel())[0, 1])


def test_hed_detects_edges(vgg_hed, vgg_random):
    # measured (Pearson with smoothed Sobel magnitude): HED 0.71 / 0.72 / 0.50, random-init
    # backbone with the same side outputs -0.16 / -0.28 / 0.14. The assertions leave wide margins.
    hed_r, rnd_r = [], []
    for name in ("astronaut.png", "coffee.png", "chelsea.png"):
        x = photo01(name)
        e_hed = encoders.hed_edge_map(vgg_hed, x)
        e_rnd = encoders.hed_edge_map(vgg_random, x)
        assert e_hed.shape == (1, 224, 224) and 0 <= e_hed.min() and e_hed.max() <= 1
        hed_r.append(_edge_agreement(e_hed[0].numpy(), x))
        rnd_r.append(_edge_agreement(e_rnd[0].numpy(), x))
    for name, h, r in zip(("astronaut", "coffee", "chelsea"), hed_r, rnd_r):
        assert h > 0.35, f"HED edges disagree with image gradients on {name}: r={h:.2f}"
        assert h > 2 * abs(r), f"{name}: HED r={h:.2f} vs random r={r:.2f}"
    assert np.mean(hed_r) - np.mean(rnd_r) > 0.4


def test_hed_edge_map_needs_vgg16():
    enc = build_encoder(EncoderSpec("posenet", "none"), image_size=32)
    with pytest.raises(ValueError, match="vgg16"):
        encoders.hed_edge_map(enc, torch.rand(1, 3, 32, 32))


# ---------------------------------------------------------------- EfficientNet-Lite0 ImageNet weights


@pytest.mark.parametrize("name, classes, min_p", [
    ("chelsea.png", range(281, 286), 0.5),  # tabby / tiger / Persian / Siamese / Egyptian cat (measured 285, p=0.79)
    ("coffee.png", range(967, 968), 0.6),  # espresso (measured p=0.90)
])
def test_efficientnet_lite0_classifies_photos(lite0, name, classes, min_p):
    with torch.no_grad():
        probs = lite0(networks.lite_normalize(photo01(name))).softmax(1)[0]
    top = int(probs.argmax())
    assert top in classes, f"{name}: top-1 class {top}"
    assert float(probs[top]) > min_p


def test_efficientnet_lite0_random_differs(lite0):
    rnd = networks.efficientnet_lite0_model(seed=0, pretrained=False).eval()
    a = dict(lite0.named_parameters())["_conv_stem.weight"]
    b = dict(rnd.named_parameters())["_conv_stem.weight"]
    assert a.shape == b.shape and not torch.equal(a, b)


@pytest.mark.parametrize("weights, input_, expected", [
    ("random", "auto", "identity"), ("random", "imagenet", "imagenet_normalize"),
    ("hed", "auto", "caffe_bgr"), ("hed", "unit", "identity"),
])
def test_input_convention_option(weights, input_, expected):
    enc = build_encoder(EncoderSpec("vgg16", weights, input=input_), image_size=32)
    assert enc.preprocess is getattr(networks, expected)


def test_imagenet_input_option_and_authors_taps(tmp_path, monkeypatch):
    """The paper profile's ResNet152: ImageNet weights fed [0, 1] images, tapped at layer1..4 (3840 ch)."""
    from posenc_utils.models.families import RESNET152_AUTHORS_TAPS

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    _save_random_state_dict("resnet152", seed=5, small_prefix="layer1.")
    spec = EncoderSpec("resnet152", "imagenet", taps=RESNET152_AUTHORS_TAPS, input="unit")
    enc = build_encoder(spec, image_size=32)
    assert enc.preprocess is networks.identity and "[0, 1]" in enc.input_convention
    assert enc.tap_names == RESNET152_AUTHORS_TAPS and sum(enc.channels) == 3840
    assert build_encoder(EncoderSpec("resnet152", "imagenet"), image_size=32).preprocess is networks.imagenet_normalize
    assert spec.label == "ResNet152 (ImageNet, taps layer1-4, [0,1] input)"
    with pytest.raises(ValueError, match="input convention"):
        build_encoder(EncoderSpec("vgg16", "random", input="bgr"), image_size=32)


def test_input_convention_is_known_without_building_the_network():
    """The preprocessing a spec's encoder applies, from ``input_convention`` alone, is what the built encoder applies."""
    from posenc_utils.models.encoders import build_encoder, input_convention
    from posenc_utils.models.profiles import EncoderSpec

    x = torch.rand(2, 3, 8, 8)
    specs = [EncoderSpec("vgg16", "hed"), EncoderSpec("vgg16", "random"), EncoderSpec("efficientnet_lite0", "imagenet"),
             EncoderSpec("vgg16", "hed", input="unit"), EncoderSpec("vgg16bn_w2", "random"),
             EncoderSpec("tv:resnet18", "random", input="imagenet")]
    for spec in specs:
        built = build_encoder(spec, 0, 64)
        pre, text = input_convention(spec)
        assert torch.equal(pre(x), built.preprocess(x)) and text == built.input_convention, spec
