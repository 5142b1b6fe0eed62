"""A transformer's positional parameters, and the transformer's analogue of the padding ablation: the
positional embedding kept, zeroed or shuffled at inference, weights otherwise untouched.

A Vision Transformer (ViT, DeiT) adds a learned **absolute** embedding to each patch token
(``pos_embed``); a Swin Transformer adds a learned **relative** bias to each attention score, one
per offset between two tokens of a window (``relative_position_bias_table``). Neither pads: its
patch embedding is a convolution whose stride is its kernel, so zero padding cannot be where a
transformer's position comes from, and the padding modes of :mod:`posenc_utils.primitives.borders` do not
apply. What does apply is to take the positional parameters away:

* ``kept``: as trained (or as initialized);
* ``zeroed``: every positional parameter set to zero (an absolute embedding then tells the tokens
  nothing; a relative bias gives every offset the same score);
* ``shuffled``: the same values given to other positions (the patch positions of an absolute
  embedding permuted, the offsets of a relative bias table permuted), with a fixed seed: the
  embedding keeps its statistics and loses its layout;
* ``shifted``: an absolute embedding re-indexed by :data:`SHIFT_TOKENS` patch tokens (token i is given
  the embedding of token i - k, in raster order, wrapping round): its layout kept, moved; a relative
  bias is indexed by offsets, which a shift leaves as they are (n/a);
* ``rotary_off``: a rotary embedding (timm's EVA-02 and ``*_rope_*`` ViTs: queries and keys rotated by
  their token's position in every attention layer) switched off, every other part kept;
* ``permuted``: the token-permutation control. The image's patches are permuted (a fixed seed) before
  the network and each tap's map un-permuted after it, so a feature that follows the content stays where
  it was and what changes is tied to the token index alone. Class and register tokens are not patches
  and are left as they are. A network without any positional code gives the same features, un-permuted,
  as without the permutation; one with an absolute embedding does not. It needs every tap at the patch
  grid (a plain ViT); a hierarchical transformer merges neighbouring patches, so its coarser stages have
  no un-permutation (n/a), nor does a CNN, which has no patches.

The one list of modes is :data:`POSITION_MODES`.
"""
from __future__ import annotations

import torch
import torch.nn as nn

POSITION_MODES = ("kept", "zeroed", "shuffled", "shifted", "rotary_off", "permuted")
SHIFT_TOKENS = 1  # ``shifted``: patch tokens the absolute embedding is moved by
ABSOLUTE = ("pos_embed", "absolute_pos_embed")  # (1, prefix tokens + grid, dim) or (1, grid..., dim)
RELATIVE = ("relative_position_bias_table",)  # (offsets, heads)


class PositionNotSupportedError(ValueError):
    """A position mode for a network with no positional parameters (a CNN: its position comes from padding).

    ``reason`` is the short why, for a table cell; the message also says what to do instead."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message.split(": ", 1)[-1].split(". ")[0]


def check_position_mode(mode: str) -> None:
    if mode not in POSITION_MODES:
        raise ValueError(f"unknown position mode {mode!r}: choose one of {', '.join(POSITION_MODES)}")


def positional_parameters(net: nn.Module) -> dict[str, tuple[str, nn.Parameter]]:
    """The positional parameters of ``net``: name -> (kind, parameter), kind ``absolute`` or ``relative``."""
    out = {}
    for name, p in net.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ABSOLUTE:
            out[name] = ("absolute", p)
        elif leaf in RELATIVE:
            out[name] = ("relative", p)
    return out


def kinds(net: nn.Module) -> tuple[str, ...]:
    """Which kinds of positional parameters ``net`` has (``absolute``, ``relative``), in that order."""
    found = {kind for kind, _ in positional_parameters(net).values()}
    return tuple(k for k in ("absolute", "relative") if k in found)


def _grid_rows(net: nn.Module, p: torch.Tensor) -> slice:
    """The rows of an absolute embedding (1, tokens, dim) that belong to patch positions: the last
    ``prod(grid)`` of them (a class or register token's embedding, first, has no position)."""
    grid = getattr(getattr(net, "patch_embed", None), "grid_size", None)
    if grid is None:
        for m in net.modules():
            grid = getattr(getattr(m, "patch_embed", None), "grid_size", None)
            if grid is not None:
                break
    n = p.shape[1] if grid is None else int(torch.tensor(grid).prod())
    return slice(p.shape[1] - n, p.shape[1])


def rotary_modules(net: nn.Module) -> list[tuple[nn.Module, str]]:
    """(parent, attribute) of every rotary position embedding in ``net``: a module named ``rope`` (timm's EVA
    family and its ``*_rope_*`` ViTs compute the rotation there and skip it when it is None)."""
    return [(parent, "rope") for parent in net.modules() if isinstance(getattr(parent, "rope", None), nn.Module)]


def patch_size(net: nn.Module) -> tuple[int, int] | None:
    """The patch size of a transformer's or an MLP-Mixer's patch embedding (timm's ``patch_embed.patch_size``, or a
    Mixer's ``stem``); None: no patches."""
    for m in net.modules():
        for part in ("patch_embed", "stem"):
            size = getattr(getattr(m, part, None), "patch_size", None)
            if size is not None:
                return tuple(size) if not isinstance(size, int) else (size, size)
    return None


def _refuse(mode: str, reason: str, instead: str) -> PositionNotSupportedError:
    return PositionNotSupportedError(f"position {mode!r} does not apply: {reason}. {instead}", reason=reason)


def refusal(net: nn.Module, mode: str) -> PositionNotSupportedError | None:
    """Why position ``mode`` cannot apply to ``net`` (the error :func:`set_position` raises), or None where it can;
    ``net`` is left as it is (checked before a copy of the network is made for the mode)."""
    check_position_mode(mode)
    if mode == "kept":
        return None
    if mode == "permuted":
        if getattr(net, "resized_to", None):
            return _refuse(mode, f"the network is probed at its own size ({net.resized_to} px, its input resized), so "
                           "permuting the image's patches does not permute its tokens",
                           "Use a model of the family that can be made for the profile's image size.")
        if patch_size(net) is None:
            return _refuse(mode, "no patch tokens: a convolutional network",
                           "Its position comes from padding: use the padding modes instead.")
        return None
    if mode == "rotary_off":
        return None if rotary_modules(net) else _refuse(mode, "no rotary position embedding",
                                                         "Use zeroed or shuffled for a learned embedding.")
    every = positional_parameters(net)
    params = {k: v for k, v in every.items() if v[0] == "absolute"} if mode == "shifted" else every
    if mode == "shifted" and not params:
        return _refuse(mode, "no absolute positional embedding" + (
            " (a relative bias is indexed by offsets, which a shift leaves unchanged)" if every else ""),
            "Use zeroed or shuffled instead.")
    if not params and patch_size(net) is None:
        return PositionNotSupportedError(
            f"position {mode!r} needs a positional embedding or a relative position bias, and this network has "
            "neither: a convolutional network's position comes from its padding (use the padding modes instead).",
            reason="no positional embedding: a convolutional network")
    if not params:
        return _refuse(mode, "no learned positional embedding" + (": its position is rotary (see rotary_off)"
                                                                   if rotary_modules(net) else ""),
                       "Use permuted to see what is tied to the token index.")
    return None


def set_position(net: nn.Module, mode: str, seed: int = 0) -> nn.Module:
    """Apply position ``mode`` to ``net`` (see the module docstring): the embedding modes change its parameters in
    place and return ``net``; ``rotary_off`` removes its rotary embeddings; ``permuted`` returns ``net`` wrapped in
    :class:`TokenPermuted`. Raises :class:`PositionNotSupportedError`, with the reason, for a mode ``net`` has no part
    for (:func:`refusal`)."""
    refused = refusal(net, mode)
    if refused is not None:
        raise refused
    if mode == "kept":
        return net
    if mode == "permuted":
        return TokenPermuted(net, patch_size(net), seed)
    if mode == "rotary_off":
        for parent, name in rotary_modules(net):
            setattr(parent, name, None)
        return net
    params = positional_parameters(net)
    if mode == "shifted":
        params = {k: v for k, v in params.items() if v[0] == "absolute"}
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, (kind, p) in params.items():
            if mode == "zeroed":
                p.zero_()
            elif kind == "relative":
                p.copy_(p[torch.randperm(p.shape[0], generator=gen)])
            elif p.dim() == 3:  # (1, tokens, dim): the patch positions, after any class or register tokens
                rows = _grid_rows(net, p)
                grid = p[:, rows].clone()
                order = (torch.randperm(grid.shape[1], generator=gen) if mode == "shuffled"
                         else torch.roll(torch.arange(grid.shape[1]), SHIFT_TOKENS))
                p[:, rows] = grid[:, order]
            else:  # (1, H, W, dim), timm's layout of a grid embedding: its cells in raster order
                flat = p.reshape(1, -1, p.shape[-1]).clone()
                order = (torch.randperm(flat.shape[1], generator=gen) if mode == "shuffled"
                         else torch.roll(torch.arange(flat.shape[1]), SHIFT_TOKENS))
                p.copy_(flat[:, order].view_as(p))
    return net


class TokenPermuted(nn.Module):
    """``net`` run on images whose ``patch`` x ``patch`` patches are permuted (one fixed permutation per grid, from
    ``seed``), each tap's map un-permuted after it (taps must be at the patch grid: else
    :class:`PositionNotSupportedError`). ``net`` returns a list of (B, C, h, w) maps."""

    def __init__(self, net: nn.Module, patch: tuple[int, int], seed: int = 0):
        super().__init__()
        self.net, self.patch, self.seed = net, patch, seed

    def order(self, gh: int, gw: int) -> torch.Tensor:
        """The permutation of a gh x gw grid of patches: new token j holds old token ``order[j]``."""
        return torch.randperm(gh * gw, generator=torch.Generator().manual_seed(self.seed))

    def forward(self, x):
        b, c, h, w = x.shape
        ph, pw = self.patch
        if h % ph or w % pw:
            raise _refuse("permuted", f"the image ({h}x{w}) is not a whole number of {ph}x{pw} patches",
                          "Use an image size the patch size divides.")
        gh, gw = h // ph, w // pw
        order = self.order(gh, gw).to(x.device)
        patches = x.reshape(b, c, gh, ph, gw, pw).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c, ph, pw)
        shuffled = patches[:, order].reshape(b, gh, gw, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
        outs = self.net(shuffled.contiguous(memory_format=torch.channels_last))
        back = torch.argsort(order)  # token i of the original image sits at place back[i] of the permuted one
        undone = []
        for o in outs:
            if tuple(o.shape[-2:]) != (gh, gw):
                raise _refuse("permuted", f"a tap at {tuple(o.shape[-2:])} is not at the patch grid ({gh}, {gw}): "
                              "a hierarchical transformer merges patches", "Tap the blocks at the patch grid.")
            flat = o.reshape(*o.shape[:2], gh * gw)[..., back]
            undone.append(flat.reshape(o.shape).contiguous(memory_format=torch.channels_last))
        return undone

    def copy(self) -> "TokenPermuted":
        return TokenPermuted(self.net.copy(), self.patch, self.seed)
