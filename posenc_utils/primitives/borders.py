"""How a convolution's border is handled: the padding modes the study compares (zero padding as built, none,
reflect, replicate, circular) and the canvas an image may sit on instead (``canvas:<value>``), switched on
any network without touching its weights.

The one list of padding modes is :data:`PADDING_MODES`, in the order the tables show them; an encoder
family says whether a mode applies to it (:class:`PaddingNotSupportedError` when not).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

PADDING_MODES = ("zeros", "reflect", "replicate", "circular", "none")


class PaddingNotSupportedError(ValueError):
    """A padding mode that makes no sense for an architecture (e.g. 'none' with residual adds).

    ``reason`` is the short why, for a table cell; the message also says what to do instead.
    """

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message.split(": ", 1)[-1].split(". ")[0]


class ImageTooSmallError(PaddingNotSupportedError):
    """The images are too small for the network with this padding (e.g. VGG16 without padding below 196 px)."""


def canvas_value(mode: str) -> float | str | None:
    """The canvas of a ``canvas:<value>`` padding mode (a number in image units, or "mean"); None otherwise."""
    if not mode.startswith("canvas:"):
        return None
    value = mode.split(":", 1)[1]
    if value == "mean":
        return value
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"padding {mode!r}: write canvas:<number in [0, 1]> or canvas:mean") from None


def check_padding_mode(mode: str) -> None:
    if mode not in PADDING_MODES and canvas_value(mode) is None:
        raise ValueError(f"unknown padding mode {mode!r}: choose one of {', '.join(PADDING_MODES)}, "
                         f"or canvas:<value> / canvas:mean (the input image padded with that value)")


class CanvasPad(nn.Module):
    """Pads an encoder's input with a canvas instead of zeros: the value ``value`` in image units
    ([0, 1]; "mean": each image's own mean colour), mapped through the encoder's preprocessing.

    The first convolution sees the preprocessed image, and every encoder's preprocessing is a
    per-pixel affine map, so padding the preprocessed input with ``preprocess(value)`` is padding
    the image with ``value``. Interior values are left bit for bit as they were.
    """

    def __init__(self, padding: tuple[int, int, int, int], value: float | str, preprocess: Callable):
        super().__init__()
        self.padding, self.value = tuple(padding), value
        if value != "mean":
            self.register_buffer("fill", preprocess(torch.full((1, 3, 1, 1), float(value))).detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fill = x.mean(dim=(2, 3), keepdim=True) if self.value == "mean" else self.fill
        border = F.pad(torch.zeros_like(x[:1, :1]), self.padding, value=1.0)
        return F.pad(x, self.padding) + border * fill


def apply_canvas(net: nn.Module, value: float | str, preprocess: Callable) -> nn.Module:
    """Make the first convolution of ``net`` pad its input (the preprocessed image) with a canvas.

    Deeper convolutions keep their zero padding: the canvas is what the image sits on."""
    first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise PaddingNotSupportedError("a canvas needs a convolution that sees the image; this encoder has none")
    static = getattr(first, "static_padding", None)  # TensorFlow-style "SAME" stems pad in a submodule
    if isinstance(static, nn.ZeroPad2d):
        first.static_padding = CanvasPad(static.padding, value, preprocess)
        return net
    ph, pw = first.padding if isinstance(first.padding, tuple) else (first.padding, first.padding)
    if not (ph or pw):
        raise PaddingNotSupportedError("a canvas is what the first convolution pads with, and this encoder's first "
                                       "convolution does not pad (a transformer's patch embedding)",
                                       reason="its first convolution does not pad")
    first.padding = (0, 0)
    for parent in net.modules():
        for name, child in parent.named_children():
            if child is first:
                setattr(parent, name, nn.Sequential(CanvasPad((pw, pw, ph, ph), value, preprocess), first))
                return net
    raise RuntimeError("could not find the first convolution's parent module")


def _pads(m: nn.Module) -> bool:
    if isinstance(m, nn.ZeroPad2d):
        return True
    if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
        p = m.padding if isinstance(m.padding, tuple) else (m.padding,)
        return isinstance(p[0], int) and any(v > 0 for v in p)
    return False


def set_padding(net: nn.Module, mode: str) -> nn.Module:
    """Switch every convolution's border handling to ``mode``, keeping all weights.

    ``none`` removes the padding (each 3x3 convolution then shrinks its map by 2 pixels);
    ``reflect`` / ``replicate`` / ``circular`` keep the amount and change what is padded.
    Explicit ``ZeroPad2d`` layers (TensorFlow-style "SAME" padding) are switched likewise. A network in
    which no layer pads (a Vision Transformer) is refused: every mode would give its features as built.
    """
    check_padding_mode(mode)
    if mode == "zeros" or canvas_value(mode) is not None:  # a canvas is applied once preprocessing is known
        return net
    if not any(_pads(m) for m in net.modules()):
        raise PaddingNotSupportedError(
            f"padding {mode!r} changes nothing in this network: none of its layers pads (a transformer's patch "
            "embedding moves by its own size). Its position comes from its positional embedding: see the "
            "position modes (posenc_utils.primitives.positions).", reason="no layer pads")
    pad_layers = {"reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d, "circular": nn.CircularPad2d}
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ZeroPad2d):
                setattr(parent, name, nn.Identity() if mode == "none" else pad_layers[mode](child.padding))
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            if mode == "none":
                m.padding = (0, 0)
            elif any(p > 0 for p in (m.padding if isinstance(m.padding, tuple) else (m.padding,))):
                m.padding_mode = mode
        elif isinstance(m, nn.MaxPool2d) and mode == "none":
            m.padding = 0
    return net


# ---------------------------------------------------------------- which padding each layer reads


@dataclass(frozen=True)
class PaddingRead:
    """Which of its padding a strided or padded layer's windows read at one input size, per side. A 3x3, stride-2,
    padding-1 layer at an even size reads its top and left padding but never its bottom and right padding; at an odd
    size it reads all four: the padding, and so the position signal it writes, is one-sided at even sizes."""

    layer: str
    kind: str  # "conv", "max_pool" or "avg_pool"
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]  # top, bottom, left, right (a "same" convolution may pad unevenly)
    input_size: tuple[int, int]
    top: bool
    bottom: bool
    left: bool
    right: bool

    @property
    def one_sided(self) -> bool:
        """Padding read on one side of an axis and not the other."""
        return self.top != self.bottom or self.left != self.right


def _windows(n: int, k: int, s: int, before: int, after: int, d: int, ceil: bool) -> int:
    """How many windows a layer slides along an axis of ``n`` pixels padded by ``before`` and ``after`` (PyTorch's
    output size)."""
    span = d * (k - 1) + 1
    out = (n + before + after - span + ((s - 1) if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= n + before:  # PyTorch: the last window must start inside the image or the padding before
        out -= 1
    return out


def _reads(n: int, k: int, s: int, before: int, after: int, d: int, ceil: bool) -> tuple[bool, bool]:
    """(reads the padding before, reads the padding after) along one axis of ``n`` pixels: the first window starts
    at -before; the last covers up to (windows - 1) * s - before + d * (k - 1), past the image's last pixel or not."""
    last = (_windows(n, k, s, before, after, d, ceil) - 1) * s - before + d * (k - 1)
    return before > 0, last > n - 1


PAD_MODULES = (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d)
DYNAMIC_SAME = ("Conv2dSame", "Conv2dDynamicSamePadding")  # timm's and efficientnet_pytorch's: "same" padding at run time


def _pair(v) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _layer_padding(m: nn.Module, size: tuple[int, int], kernel, stride, dilation) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) padding a layer applies to an input of ``size``: its own, a padding module it holds
    (efficientnet_pytorch's static "same" padding), or "same" padding computed at run time (timm's)."""
    inner = [c for c in m.children() if isinstance(c, PAD_MODULES)]
    if inner:
        left, right, top, bottom = inner[0].padding
        return top, bottom, left, right
    if type(m).__name__ in DYNAMIC_SAME or (isinstance(m, nn.Conv2d) and m.padding == "same"):
        pads = []
        for n, k, s, d in zip(size, kernel, stride, dilation):
            total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
            pads += [total // 2, total - total // 2]
        return tuple(pads)
    if isinstance(m, nn.Conv2d) and m.padding == "valid":
        return 0, 0, 0, 0
    ph, pw = _pair(m.padding)
    return ph, ph, pw, pw


def padding_reads(net: nn.Module, image_size: int) -> list[PaddingRead]:
    """Every convolution and pooling layer of ``net`` that pads or strides, with which padding it reads on a
    ``image_size`` x ``image_size`` input (one forward pass of zeros records each layer's input size; on PyTorch's
    meta device when the network is there). Counted per layer from its own kernel, stride, padding (its own, a
    padding module it holds, or "same" padding at run time) and dilation; a padding module standing apart from
    the layer that reads it (``nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(...))``) is not paired with it."""
    sizes: dict[str, tuple[int, int]] = {}

    def record(name: str):
        def hook(_module, args) -> None:  # a pre-hook that returns something replaces the layer's input
            sizes.setdefault(name, tuple(int(v) for v in args[0].shape[-2:]))
        return hook

    handles = [m.register_forward_pre_hook(record(name)) for name, m in net.named_modules()
               if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))]
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        for h in handles:
            h.remove()
    out = []
    for name, m in net.named_modules():
        if name not in sizes:
            continue
        kernel, stride = _pair(m.kernel_size), _pair(m.stride or m.kernel_size)
        dilation = _pair(getattr(m, "dilation", 1))
        padding = _layer_padding(m, sizes[name], kernel, stride, dilation)
        if max(stride) == 1 and max(padding) == 0:
            continue
        ceil = bool(getattr(m, "ceil_mode", False))
        (top, bottom), (left, right) = (_reads(n, k, s, b, a, d, ceil) for n, k, s, b, a, d in
                                        zip(sizes[name], kernel, stride, padding[::2], padding[1::2], dilation))
        kind = "conv" if isinstance(m, nn.Conv2d) else "max_pool" if isinstance(m, nn.MaxPool2d) else "avg_pool"
        out.append(PaddingRead(name, kind, kernel, stride, padding, sizes[name], top, bottom, left, right))
    return out
