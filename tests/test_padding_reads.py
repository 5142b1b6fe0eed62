"""Which padding each strided or padded layer reads at an input size (issue 32's input-size sweep counts them)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from posenc_utils.primitives.borders import _reads, _windows, padding_reads


@pytest.mark.parametrize("k,s,p,d", [(3, 2, 1, 1), (7, 2, 3, 1), (3, 1, 1, 1), (3, 2, 1, 2), (2, 2, 0, 1),
                                     (5, 3, 2, 1), (1, 2, 0, 1), (3, 2, 0, 1)])
def test_the_arithmetic_is_what_a_convolution_does(k, s, p, d):
    """Against PyTorch itself, along one axis: a k x 1 kernel weighing only its first tap (its last tap) on an
    all-ones image gives 0 in the first (last) window exactly where that tap lands in the zero padding."""
    taps = torch.zeros(2, 1, k, 1)
    taps[0, 0, 0, 0] = 1
    taps[1, 0, k - 1, 0] = 1
    for n in range(max(d * (k - 1) + 1 - 2 * p, 1), 40):
        out = F.conv2d(torch.ones(1, 1, n, 1), taps, stride=(s, 1), padding=(p, 0), dilation=(d, 1))[0, :, :, 0]
        assert out.shape[-1] == _windows(n, k, s, p, p, d, False)
        assert _reads(n, k, s, p, p, d, False) == (bool(out[0, 0] == 0), bool(out[1, -1] == 0)), (n, k, s, p, d)


@pytest.mark.parametrize("k,s,p", [(3, 2, 1), (2, 2, 0), (3, 2, 0), (3, 3, 1)])
@pytest.mark.parametrize("ceil", [False, True])
def test_the_window_count_is_a_pools(k, s, p, ceil):
    """Pooling, ceil mode too (a last window that may hang past the image, read as the far side's padding)."""
    for n in range(max(k - 2 * p, 1), 40):
        out = F.max_pool2d(torch.ones(1, 1, n, 1), (k, 1), (s, 1), (p, 0), ceil_mode=ceil)
        assert out.shape[-2] == _windows(n, k, s, p, p, 1, ceil), (n, k, s, p, ceil)


def test_a_stride_two_layer_pads_one_side_at_even_sizes_and_both_at_odd():
    """The issue's example: 3x3, stride 2, padding 1 at 224 never reads its bottom/right padding; at 225 it does."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.Conv2d(4, 4, 3, 1, 1), nn.MaxPool2d(2))
    even, odd = padding_reads(net, 224), padding_reads(net, 225)
    assert [(r.layer, r.input_size, r.top, r.bottom, r.left, r.right) for r in even] == [
        ("0", (224, 224), True, False, True, False), ("2", (112, 112), True, True, True, True),
        ("3", (112, 112), False, False, False, False)]
    assert even[0].one_sided and not odd[0].one_sided and odd[0].bottom and odd[0].right


def test_a_resnet_on_the_meta_device_at_three_sizes():
    import torchvision

    with torch.device("meta"):
        net = torchvision.models.resnet18().eval()
    one_sided = {size: [r.layer for r in padding_reads(net, size) if r.one_sided] for size in (224, 225, 232)}
    assert one_sided[224] == ["maxpool", "layer2.0.conv1", "layer3.0.conv1", "layer4.0.conv1"]
    assert one_sided[225] == [] and one_sided[232] == ["maxpool", "layer2.0.conv1"]
    # the 1x1 stride-2 shortcuts pad nothing, whatever the size
    assert all(not (r.top or r.bottom) for r in padding_reads(net, 224) if r.layer.endswith("downsample.0"))


def test_same_padding_held_in_a_module_or_made_at_run_time_is_counted():
    """EfficientNet's "same" padding (efficientnet_pytorch: a ZeroPad2d inside the convolution, more at the bottom and
    right; timm: computed at run time) pads unevenly: at 224 px its 3x3 stride-2 layers read the bottom/right only."""
    from posenc_utils.models.encoders import padding_reads_at
    from posenc_utils.models.profiles import EncoderSpec

    reads = padding_reads_at(EncoderSpec("efficientnet_lite0", "random"), 224)
    strided = [r for r in reads if max(r.stride) == 2]
    three = [r for r in strided if r.kernel == (3, 3)]  # at an even size "same" pads 1 pixel: after the image only
    assert three and all(r.one_sided and r.bottom and r.right and not r.top and not r.left for r in three)
    assert three[0].padding == (0, 1, 0, 1)
    five = [r for r in strided if r.kernel == (5, 5) and r.input_size == (14, 14)]  # pads 3: 1 before, 2 after
    assert five and five[0].padding == (1, 2, 1, 2) and not five[0].one_sided
    assert padding_reads_at(EncoderSpec("vgg16", "random"), 225) and not any(
        r.one_sided for r in padding_reads_at(EncoderSpec("vgg16", "random"), 225))
    same = nn.Conv2d(3, 4, 3, 1, padding="same")
    assert padding_reads(nn.Sequential(same), 10)[0].padding == (1, 1, 1, 1)


def test_timms_run_time_same_padding():
    timm_layers = pytest.importorskip("timm.layers")
    (r,) = padding_reads(nn.Sequential(timm_layers.Conv2dSame(3, 4, 3, stride=2)), 224)
    assert r.padding == (0, 1, 0, 1) and r.bottom and not r.top
    (r,) = padding_reads(nn.Sequential(timm_layers.Conv2dSame(3, 4, 3, stride=2)), 225)
    assert r.padding == (1, 1, 1, 1) and not r.one_sided
