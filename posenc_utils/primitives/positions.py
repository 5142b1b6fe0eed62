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
  embedding keeps its statistics and loses its layout.

The one list of modes is :data:`POSITION_MODES`.
"""
from __future__ import annotations

import torch
import torch.nn as nn

POSITION_MODES = ("kept", "zeroed", "shuffled")
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


def set_position(net: nn.Module, mode: str, seed: int = 0) -> nn.Module:
    """Keep, zero or shuffle every positional parameter of ``net`` in place (see the module docstring).

    Raises :class:`PositionNotSupportedError` for a mode other than ``kept`` on a network without any."""
    check_position_mode(mode)
    params = positional_parameters(net)
    if mode == "kept":
        return net
    if not params:
        raise PositionNotSupportedError(
            f"position {mode!r} needs a positional embedding or a relative position bias, and this network has "
            "neither: a convolutional network's position comes from its padding (use the padding modes instead).",
            reason="no positional embedding: a convolutional network")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, (kind, p) in params.items():
            if mode == "zeroed":
                p.zero_()
            elif kind == "relative":
                p.copy_(p[torch.randperm(p.shape[0], generator=gen)])
            elif p.dim() == 3:  # (1, tokens, dim): permute the patch positions
                rows = _grid_rows(net, p)
                grid = p[:, rows].clone()
                p[:, rows] = grid[:, torch.randperm(grid.shape[1], generator=gen)]
            else:  # (1, H, W, dim), timm's layout of a grid embedding: permute the grid's cells
                flat = p.reshape(1, -1, p.shape[-1]).clone()
                p.copy_(flat[:, torch.randperm(flat.shape[1], generator=gen)].view_as(p))
    return net
