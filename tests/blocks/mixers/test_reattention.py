"""DeepViT's re-attention: identity mixing = plain attention; the official Conv2d + BatchNorm layout; options."""
from __future__ import annotations

import pytest
import torch

from blockzoo import ConfigError, create_block
from blockzoo.blocks.common.transformer import Attention
from blockzoo.blocks.mixers.reattention import ReAttention


def test_identity_reattention_is_attention():
    torch.manual_seed(0)
    ra = ReAttention(16, 4, norm="none").eval()
    with torch.no_grad():
        ra.reatten_matrix.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
        ra.reatten_matrix.bias.zero_()
    plain = Attention(16, 4).eval()
    plain.load_state_dict({k: v for k, v in ra.state_dict().items() if k.startswith(("qkv", "proj"))})
    x = torch.randn(2, 7, 16)
    torch.testing.assert_close(ra(x), plain(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ra.attn_map(x), plain.attn_map(x))
    # an identity BatchNorm (fresh running stats, eval) changes the maps only by 1/sqrt(1 + eps)
    bn = ReAttention(16, 4).eval()
    bn.load_state_dict({**ra.state_dict(), **{k: v for k, v in bn.state_dict().items() if "var_norm" in k}})
    torch.testing.assert_close(bn.attn_map(x), plain.attn_map(x) / (1 + 1e-5) ** 0.5)


def test_reattention_mixes_heads():
    torch.manual_seed(0)
    ra = ReAttention(8, 2, norm="none").eval()
    with torch.no_grad():
        ra.reatten_matrix.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]).view(2, 2, 1, 1))  # swap the heads
        ra.reatten_matrix.bias.zero_()
    x = torch.randn(1, 5, 8)
    plain = Attention.attn_map(ra, x)
    torch.testing.assert_close(ra.attn_map(x), plain.flip(1))


def test_reattention_extra_parameters():
    h, c = 12, 384
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    extra = count(ReAttention(c, h)) - count(Attention(c, h))
    assert extra == h * h + h + 2 * h                                      # Conv2d(H, H, 1) with bias + BatchNorm2d(H)
    assert isinstance(ReAttention(c, h, norm="ln").var_norm, torch.nn.LayerNorm)
    with pytest.raises(ConfigError, match="norm"):
        ReAttention(c, h, norm="gn")


def test_transform_scale_and_mixer():
    ra = ReAttention(32, 4, transform_scale=True)
    assert ra.reatten_scale == pytest.approx(8 ** -0.5)
    m = create_block("reattn", 64)
    assert isinstance(m.attn, ReAttention) and m.attn.num_heads == 2
    assert m(torch.randn(2, 64, 3, 5)).shape == (2, 64, 3, 5)
