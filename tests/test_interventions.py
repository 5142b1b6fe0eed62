"""The position interventions beyond keep/zero/shuffle (posenc_utils.primitives.positions) on small random-init
transformers: each changes what it should, in the expected direction, and nothing where it should not."""
from __future__ import annotations

import pytest
import torch

from posenc_utils.models.encoders import build_encoder
from posenc_utils.models.networks import FeatureNet
from posenc_utils.primitives.positions import (POSITION_MODES, SHIFT_TOKENS, PositionNotSupportedError, TokenPermuted,
                                               rotary_modules, set_position)
from posenc_utils.primitives.specs import EncoderSpec

timm = pytest.importorskip("timm")
SIZE = 64  # a 4 x 4 grid of 16 px patches


def small(name: str, **kw) -> FeatureNet:
    """A small random-init timm transformer tapped at its blocks, as the study taps it (NCHW maps)."""
    torch.manual_seed(0)
    net = timm.create_model(name, pretrained=False, img_size=SIZE, features_only=True, out_indices=(0, 1), depth=2,
                            embed_dim=32, num_heads=2, **kw)
    return FeatureNet(net.eval())


def run(net, x):
    with torch.no_grad():
        return [o.clone() for o in net(x)]


def close(a, b, tol=1e-4) -> bool:
    return all(torch.allclose(p, q, atol=tol * max(1.0, float(q.abs().max()))) for p, q in zip(a, b))


def positional_share(outs: list[torch.Tensor]) -> float:
    """Mean over channels of the variance over locations of the mean over images, over the total variance."""
    o = outs[-1].double()
    mu, m = o.mean(0), o.mean((0, 2, 3))
    p = ((mu - m[:, None, None]) ** 2).mean((1, 2))
    t = ((o - m[None, :, None, None]) ** 2).mean((0, 2, 3))
    return float((p / t).mean())


def sharpen(net: torch.nn.Module, factor: float = 10.0) -> None:
    """Make attention count: timm's rotary ViTs start their residual branches at a layer scale of 1e-5 (set to 1)
    and a random-init attention is nearly uniform (the query/key projections scaled up), so otherwise a rotation of
    queries and keys would change nothing."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.rsplit(".", 1)[-1] in ("gamma_1", "gamma_2"):
                p.fill_(1.0)
            elif "qkv.weight" in name or name.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(factor)


def test_modes_are_one_list():
    assert POSITION_MODES == ("kept", "zeroed", "shuffled", "shifted", "rotary_off", "permuted")


def test_permutation_control_no_effect_without_position_and_an_effect_with_it():
    x = torch.rand(2, 3, SIZE, SIZE)
    with_embedding = small("vit_tiny_patch16_224")
    with torch.no_grad():
        with_embedding.net.model.pos_embed.mul_(50)  # a random-init embedding is tiny (std 0.02): make it count
    base = run(with_embedding, x)
    permuted = run(TokenPermuted(with_embedding, (16, 16), seed=0), x)
    assert not close(permuted, base, 1e-2)  # the embedding ties features to the token index
    without = set_position(small("vit_tiny_patch16_224"), "zeroed")  # no positional code at all
    assert close(run(TokenPermuted(without, (16, 16), seed=0), x), run(without, x))  # same features, un-permuted


def test_shift_moves_the_embedding_by_k_tokens():
    """On a constant image every patch token has the same content, so each token's features are its embedding's:
    shifted by k tokens, token i shows what token i - k showed."""
    net = small("vit_tiny_patch16_224")
    with torch.no_grad():
        net.net.model.pos_embed.mul_(50)
    x = torch.full((1, 3, SIZE, SIZE), 0.5)
    kept = run(net, x)
    net2 = small("vit_tiny_patch16_224")  # the same seed: the same weights
    with torch.no_grad():
        net2.net.model.pos_embed.mul_(50)
    shifted = run(set_position(net2, "shifted"), x)
    for k, s in zip(kept, shifted):
        flat_k, flat_s = k.flatten(2), s.flatten(2)
        assert torch.allclose(flat_s, torch.roll(flat_k, SHIFT_TOKENS, dims=2), atol=1e-4)
        assert not torch.allclose(flat_s, flat_k, atol=1e-3)


def test_zeroing_the_embedding_removes_position_from_the_features():
    x = torch.rand(16, 3, SIZE, SIZE)
    net = small("vit_tiny_patch16_224")
    with torch.no_grad():
        net.net.model.pos_embed.mul_(50)
    kept = positional_share(run(net, x))
    zeroed = positional_share(run(set_position(net, "zeroed"), x))
    assert kept > 0.3 and zeroed < 0.2 and zeroed < kept / 2  # 16 images: 1/16 of the variance is left by chance


def test_rotary_off_removes_what_the_rotation_ties_to_the_token_index():
    x = torch.rand(2, 3, SIZE, SIZE)
    net = small("vit_small_patch16_rope_224")  # rotary only: no absolute embedding
    assert rotary_modules(net)
    sharpen(net)
    rotated = run(net, x)
    assert not close(run(TokenPermuted(net, (16, 16), seed=0), x), rotated, 1e-2)  # the rotation follows the index
    off = set_position(net, "rotary_off")
    assert not rotary_modules(off)
    plain = run(off, x)
    assert not close(plain, rotated, 1e-2)  # switching it off changes the features
    assert close(run(TokenPermuted(off, (16, 16), seed=0), x), plain)  # and nothing is tied to the index any more


@pytest.mark.parametrize("mode", POSITION_MODES[1:])
def test_a_cnn_refuses_every_mode_with_its_reason(mode):
    with pytest.raises(PositionNotSupportedError) as err:
        build_encoder(EncoderSpec("vgg16", "random", position=mode), 0, 32)
    assert "convolutional" in err.value.reason or "rotary" in err.value.reason or "absolute" in err.value.reason


def test_refusals_name_the_missing_part():
    rope = small("vit_small_patch16_rope_224")
    with pytest.raises(PositionNotSupportedError, match="rotary"):
        set_position(rope, "zeroed")
    with pytest.raises(PositionNotSupportedError, match="no rotary"):
        set_position(small("vit_tiny_patch16_224"), "rotary_off")
    torch.manual_seed(0)
    swin = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=SIZE, features_only=True,
                             embed_dim=16, depths=(1, 1), num_heads=(1, 1), window_size=4, out_indices=(0, 1))
    with pytest.raises(PositionNotSupportedError, match="offsets"):
        set_position(FeatureNet(swin, True), "shifted")
    with pytest.raises(PositionNotSupportedError, match="hierarchical"):
        run(set_position(FeatureNet(swin, True), "permuted"), torch.rand(1, 3, SIZE, SIZE))
