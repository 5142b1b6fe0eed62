"""Build the frozen encoder of an :class:`EncoderSpec`, at any padding mode, and read its taps.

:func:`build_encoder` is the one way in: it finds the spec's family (:mod:`posenc_utils.models.families`,
one entry per kind of network), refuses a padding or position mode the network cannot take (the
spec checked each of its fields when it was made), builds the network once per process and copies
it for every padding variant, and checks that it runs at the image size. :func:`resize_taps` turns
the tap maps into the readout's features.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ..primitives.borders import (ImageTooSmallError, PaddingNotSupportedError, PaddingRead, apply_canvas, canvas_value,
                                  padding_reads, set_padding)
from ..primitives.cache import file_stamp
from .families import family_of
from .networks import IMAGENET_INPUT, UNIT_INPUT, Encoder, WeightsNotFoundError, hed_weights
from ..primitives.positions import PositionNotSupportedError, patch_size, set_position
from ..primitives.positions import refusal as position_refusal
from ..primitives.specs import EncoderSpec

__all__ = ["Encoder", "WeightsNotFoundError", "ImageTooSmallError", "PaddingNotSupportedError", "build_encoder",
           "hed_edge_map", "input_convention", "resize_taps", "tap_channels", "weights_stamp"]


def input_convention(spec: EncoderSpec) -> tuple[Callable, str]:
    """The preprocessing of ``spec``'s encoder and its description, known without building the network
    (``input="auto"``: the convention the family's weights were trained with)."""
    if spec.input == "auto":
        return family_of(spec.name).own_input(spec)
    return {"unit": UNIT_INPUT, "imagenet": IMAGENET_INPUT}[spec.input]


def weights_stamp(spec: EncoderSpec) -> tuple:
    """What the weights of ``spec`` are read from, as it is now (path and :func:`cache.file_stamp`): part of
    the memo key, so a weights file that appears, changes or moves (another TORCH_HOME, another cache)
    gives a new build, never a stale one."""
    path = family_of(spec.name).weights_file(spec)
    if path is None:
        return ()
    return (str(path), *file_stamp(path)) if path.exists() else (str(path),)


@functools.lru_cache(maxsize=4)
def _network_at_zero_padding(spec: EncoderSpec, seed: int, image_size: int, _stamp: tuple) -> Encoder:
    """The network of ``spec`` with its weights and its own (zero) padding, built once per process:
    every padding variant is a copy (initializing a VGG16 takes ~1.5 s, copying it ~0.05 s)."""
    module, taps, names = family_of(spec.name).build(spec, seed, image_size)
    return Encoder(spec, module, taps, names, *input_convention(spec))


def release_networks() -> None:
    """Forget the zero-padded networks kept for copying (see :func:`features.release_networks`)."""
    _network_at_zero_padding.cache_clear()


def _zero_padded(spec: EncoderSpec, seed: int, image_size: int) -> Encoder:
    fam = family_of(spec.name)
    at_zeros = dataclasses.replace(spec, padding="zeros", position="kept")  # one base for every padding and position
    return _network_at_zero_padding(at_zeros, seed, image_size if fam.size_dependent else 0, weights_stamp(at_zeros))


def _refuse_declared(spec: EncoderSpec) -> None:
    """Refuse padding 'none' where the family declares it cannot apply, before anything is built."""
    fam = family_of(spec.name)
    if spec.padding == "none" and fam.no_padding:
        raise PaddingNotSupportedError(
            f"padding 'none' is not meaningful for {spec.name}: without padding its residual "
            "additions add maps of different sizes. Use vgg16 (or another plain network) for "
            "the no-padding ablation, or a padding mode that keeps sizes (reflect, replicate, circular).",
            reason=fam.no_padding,
        )


def _check_no_padding(enc: Encoder) -> None:
    """Refuse padding 'none' where the network cannot run without it, with the reason."""
    fam = family_of(enc.spec.name)  # a declared refusal came before the build (:func:`_refuse_declared`)
    if fam.try_no_padding:
        try:
            enc(torch.zeros(1, 3, 224, 224))
        except RuntimeError as e:
            raise PaddingNotSupportedError(
                f"padding 'none' does not work for {fam.label(enc.spec.name)}: the forward pass fails "
                f"without padding (typically residual additions of maps of different sizes): {e}",
                reason="the forward pass fails without padding",
            ) from e


def build_encoder(spec: EncoderSpec, seed: int = 0, image_size: int = 224) -> Encoder:
    """Build the frozen encoder for ``spec`` (eval mode, no gradients, on the CPU)."""
    fam = family_of(spec.name)  # the spec checked its name, weights, padding, position and input when it was made
    _refuse_declared(spec)  # without building the network (a warm rerun asks again for every mode that cannot apply)
    if spec.position != "kept" and not fam.network:
        raise PositionNotSupportedError(f"{spec.label} has no network, so no positional embedding to change",
                                        reason="no encoder")
    if not fam.network:
        module, taps, names = fam.build(spec, seed, image_size)
        enc = Encoder(spec, module, taps, names, *fam.own_input(spec))
    else:
        base = _zero_padded(spec, seed, image_size)
        refused = position_refusal(base.module, spec.position)  # before a copy of the network is made for it
        if refused is not None:
            raise refused
        enc = dataclasses.replace(base, spec=spec, module=base.module.copy())
        fam.padding_check(enc.module, spec.padding)
        set_padding(enc.module, spec.padding)  # nothing to do for zeros or a canvas
        if spec.padding == "none":
            _check_no_padding(enc)
        enc.module = set_position(enc.module, spec.position, seed)  # nothing to do for kept; permuted: wrapped
    if canvas_value(spec.padding) is not None:
        if not fam.network:
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
    return shape_only(spec, image_size)[0]


@functools.lru_cache(maxsize=64)
def shape_only(spec: EncoderSpec, image_size: int = 224) -> tuple[tuple[int, ...], float]:
    """(channels of each tap, GFLOP of one image's forward pass) of ``spec`` at ``image_size``, from one shape-only
    build on PyTorch's meta device, its operations counted by torch (what a run's plan sizes and times)."""
    if not family_of(spec.name).network:
        return build_encoder(spec, 0, image_size).channels, 0.0
    module, prepare, device = _shape_only_module(spec, image_size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        outs = module(prepare(torch.zeros(1, 3, image_size, image_size, device=device)))
    return tuple(int(o.shape[1]) for o in outs), counter.get_total_flops() / 1e9


@functools.lru_cache(maxsize=64)
def tap_sizes(spec: EncoderSpec, image_size: int = 224) -> tuple[tuple[int, int], ...]:
    """The (height, width) of each of ``spec``'s tap maps on ``image_size`` px images, before they are resized
    to the readout's size: their own resolution (a shape-only build on PyTorch's meta device)."""
    if not family_of(spec.name).network:
        with torch.no_grad():
            return tuple(tuple(o.shape[-2:]) for o in build_encoder(spec, 0, image_size)(
                torch.zeros(1, 3, image_size, image_size)))
    return tuple((int(o.shape[-2]), int(o.shape[-1])) for o in _shape_run(spec, image_size))


def _shape_only_module(spec: EncoderSpec, image_size: int, padding: bool = False
                       ) -> tuple[torch.nn.Module, Callable, torch.device]:
    """``spec``'s network built on PyTorch's meta device (no weights read or allocated; never cached), in eval mode,
    its input conversion and the device to give it inputs on; ``padding``: with ``spec``'s own padding mode set (else
    zero padding, as built). A network whose initialization has an operation the meta device lacks is built on the
    CPU instead (random weights, still nothing read)."""
    shapes = dataclasses.replace(spec, weights="random", padding="zeros")
    try:
        with torch.device("meta"):
            module, _taps, _names = family_of(spec.name).build(shapes, 0, image_size)
    except NotImplementedError:
        module, _taps, _names = family_of(spec.name).build(shapes, 0, image_size)
    module.eval()
    if padding and spec.padding in ("none", "reflect", "replicate", "circular"):
        set_padding(module, spec.padding)
    device = next(iter(module.parameters()), torch.empty(0, device="meta")).device
    return module, input_convention(shapes)[0], device


def _shape_run(spec: EncoderSpec, image_size: int, padding: bool = False) -> list[torch.Tensor]:
    """The tap maps of a shape-only build on an all-zero ``image_size`` px image."""
    module, prepare, device = _shape_only_module(spec, image_size, padding)
    with torch.no_grad():
        return module(prepare(torch.zeros(1, 3, image_size, image_size, device=device)))


def parameters(spec: EncoderSpec, image_size: int = 224) -> int:
    """The number of parameters of ``spec``'s tapped network (up to its last tap), from a shape-only build."""
    if not family_of(spec.name).network:
        return 0
    return sum(p.numel() for p in _shape_only_module(spec, image_size)[0].parameters())


def patch_grid(spec: EncoderSpec, image_size: int) -> tuple[int, int] | None:
    """The patch size of ``spec``'s patch embedding where it has one (a transformer: its patch grid fixes its input
    size), else None (a CNN, or a control without a network); from a shape-only build."""
    if not family_of(spec.name).network:
        return None
    return patch_size(_shape_only_module(spec, image_size)[0])


def runs_at(spec: EncoderSpec, image_size: int) -> bool:
    """Whether ``spec`` runs on ``image_size`` px images with its own padding (a shape-only build)."""
    if not family_of(spec.name).network:
        return True
    try:
        _shape_run(spec, image_size, padding=True)
    except (RuntimeError, AssertionError):
        return False
    return True


def padding_reads_at(spec: EncoderSpec, image_size: int) -> list[PaddingRead]:
    """Which padding each strided or padded layer of ``spec``'s network reads on ``image_size`` px images
    (:func:`~posenc_utils.primitives.borders.padding_reads` on a shape-only build: nothing is computed). A network
    whose size is fixed by its patch grid, or the controls, have none."""
    if not family_of(spec.name).network:
        return []
    return padding_reads(_shape_only_module(spec, image_size)[0], image_size)


def smallest_image_size(spec: EncoderSpec, upper: int = 1024) -> int:
    """The smallest square input ``spec`` runs on with its own padding (VGG16 without padding: 196 px), found by
    shape-only builds on PyTorch's meta device (what a profile's image sizes are checked against before a run)."""
    if not runs_at(spec, upper):
        raise ImageTooSmallError(f"{spec.label} does not run even on {upper} px images", reason=f"not even at {upper} px")
    lo, hi = 1, upper  # runs_at(hi) holds; find the smallest such size
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if runs_at(spec, mid) else (mid + 1, hi)
    return hi


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
