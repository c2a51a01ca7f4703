"""The shared transformer pieces: attention written out by hand, the pre-norm block, patch embedding order,
position-embedding resampling and the mixer-slot adaptor."""
from __future__ import annotations

import pytest
import torch

from blockzoo import ConfigError
from blockzoo.blocks.common.transformer import (
    Attention,
    PatchEmbed,
    TokenMixer2d,
    TransformerBlock,
    resample_pos_embed,
    token_norm,
)


def _attention_by_hand(a: Attention, x: torch.Tensor) -> torch.Tensor:
    b, n, c = x.shape
    h, d = a.num_heads, a.head_dim
    q, k, v = (x @ a.qkv.weight.T + a.qkv.bias).split(h * d, dim=-1)
    out = []
    for i in range(h):
        s = slice(i * d, (i + 1) * d)
        w = torch.exp(q[..., s] @ k[..., s].transpose(1, 2) / d ** 0.5)
        out.append((w / w.sum(-1, keepdim=True)) @ v[..., s])
    return torch.cat(out, -1) @ a.proj.weight.T + a.proj.bias


def test_attention_matches_hand_computed_and_its_map():
    torch.manual_seed(0)
    a = Attention(12, num_heads=3).eval()
    x = torch.randn(2, 5, 12)
    torch.testing.assert_close(a(x), _attention_by_hand(a, x), rtol=1e-5, atol=1e-6)
    m = a.attn_map(x)
    assert m.shape == (2, 3, 5, 5)
    torch.testing.assert_close(m.sum(-1), torch.ones(2, 3, 5))
    _, _, v = a.qkv_heads(x)
    torch.testing.assert_close(a.out(m @ v), a(x), rtol=1e-5, atol=1e-6)


def test_attention_head_dim_and_bad_heads():
    a = Attention(16, num_heads=1, head_dim=32)
    assert a.qkv.weight.shape == (96, 16) and a.proj.weight.shape == (16, 32)
    with pytest.raises(ConfigError, match="divisible"):
        Attention(10, num_heads=3)
    with pytest.raises(ConfigError, match="num_heads"):
        Attention(12, num_heads=0)


def test_transformer_block_is_prenorm_with_timm_names():
    torch.manual_seed(0)
    blk = TransformerBlock(12, 3, mlp_ratio=2.0, init_values=0.5).eval()
    keys = {k.rsplit(".", 1)[0] for k in blk.state_dict()}
    assert keys == {"norm1", "attn.qkv", "attn.proj", "ls1", "norm2", "mlp.fc1", "mlp.fc2", "ls2"}
    x = torch.randn(2, 4, 12)
    y = x + 0.5 * blk.attn(blk.norm1(x))
    y = y + 0.5 * blk.mlp.fc2(torch.nn.functional.gelu(blk.mlp.fc1(blk.norm2(y))))
    torch.testing.assert_close(blk(x), y)
    assert TransformerBlock(12, 3).ls1.__class__.__name__ == "Identity"   # ViT / DeiT: no layer scale
    with pytest.raises(ConfigError, match="transformer norm"):
        token_norm("bn", 8)


def test_transformer_block_takes_a_built_attention():
    attn = Attention(8, 2)
    assert TransformerBlock(8, 2, attn=attn).attn is attn


def test_patch_embed_tokens_are_row_major_patches():
    pe = PatchEmbed(4, 2, 1, 1)
    with torch.no_grad():
        pe.proj.weight.fill_(1.0)
        pe.proj.bias.zero_()
    x = torch.arange(16.0).view(1, 1, 4, 4)
    tokens = pe(x)
    assert tokens.shape == (1, 4, 1) and pe.grid_size == (2, 2) and pe.num_patches == 4
    assert tokens.flatten().tolist() == [0 + 1 + 4 + 5, 2 + 3 + 6 + 7, 8 + 9 + 12 + 13, 10 + 11 + 14 + 15]
    with pytest.raises(ConfigError, match="smaller than patch_size"):
        PatchEmbed(3, 4)


def test_resample_pos_embed():
    torch.manual_seed(0)
    pe = torch.randn(1, 1 + 12, 5)
    assert torch.equal(resample_pos_embed(pe, (3, 4), (3, 4), antialias=False), pe)    # identity at the same size
    const = torch.cat([torch.randn(1, 1, 5), torch.ones(1, 12, 5) * 2.5], 1)
    out = resample_pos_embed(const, (6, 2), (3, 4))
    assert out.shape == (1, 13, 5) and torch.equal(out[:, :1], const[:, :1])   # the class token's is kept
    torch.testing.assert_close(out[:, 1:], torch.full((1, 12, 5), 2.5))          # a constant grid stays constant


def test_token_mixer2d_is_attention_over_pixels():
    torch.manual_seed(0)
    a = Attention(8, 2).eval()
    x = torch.randn(2, 8, 3, 5)
    y = TokenMixer2d(a)(x)
    want = a(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(2, 8, 3, 5)
    assert torch.equal(y, want)
