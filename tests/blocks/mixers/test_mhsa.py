"""The ``mhsa`` mixer: the ViT attention over the pixels of a feature map."""
from __future__ import annotations

import pytest
import torch

from blockzoo import ConfigError, create_block, create_model


def test_mhsa_matches_hand_computed():
    torch.manual_seed(0)
    m = create_block("mhsa", 8, num_heads=2).eval()
    a = m.attn
    x = torch.randn(1, 8, 2, 3)
    t = x.flatten(2).transpose(1, 2)                                      # (1, 6, 8): pixels in row-major order
    q, k, v = (t @ a.qkv.weight.T + a.qkv.bias).chunk(3, -1)
    heads = []
    for s in (slice(0, 4), slice(4, 8)):
        w = (q[..., s] @ k[..., s].transpose(1, 2) / 2.0).softmax(-1)     # sqrt(head_dim = 4) = 2
        heads.append(w @ v[..., s])
    y = torch.cat(heads, -1) @ a.proj.weight.T + a.proj.bias
    torch.testing.assert_close(m(x), y.transpose(1, 2).reshape(1, 8, 2, 3), rtol=1e-5, atol=1e-6)


def test_default_heads():
    assert create_block("mhsa", 96).attn.num_heads == 3
    small = create_block("mhsa", 16).attn                                 # at least one head of 32 channels
    assert small.num_heads == 1 and small.qkv.out_features == 96
    assert create_block("mhsa", 64, num_heads=8).attn.head_dim == 8
    with pytest.raises(ConfigError):
        create_block("mhsa", 64, num_heads=0)


def test_permutation_equivariant():
    torch.manual_seed(0)
    m = create_block("mhsa", 32).eval()
    x = torch.randn(2, 32, 4, 4)
    perm = torch.randperm(16)
    y = m(x).flatten(2)[..., perm]
    torch.testing.assert_close(m(x.flatten(2)[..., perm].view(2, 32, 4, 4)).flatten(2), y, rtol=1e-5, atol=1e-6)


def test_mhsa_in_a_metaformer():
    with torch.device("meta"):
        m = create_model("poolformer_s12", mixer="mhsa")
    assert m.stages[0].blocks[0].mixer.attn.num_heads == 64 // 32
