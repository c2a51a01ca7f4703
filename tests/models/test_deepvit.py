"""DeepViT: the paper's parameter counts and the re-attention split."""
from __future__ import annotations

import pytest
import torch

from blockzoo import ConfigError, create_model
from blockzoo.blocks.common.transformer import Attention
from blockzoo.blocks.mixers.reattention import ReAttention
from helpers import check_param_count, macs, meta_model, meta_params


@pytest.mark.parametrize("name,exact,paper", [("deepvit_16b", 24_426_664, 24.5e6), ("deepvit_24b", 36_261_448, 36.3e6),
                                              ("deepvit_32b", 48_096_232, 48.1e6)])
def test_param_counts(name, exact, paper):
    check_param_count(name, exact, paper, tol=0.005)
    depth = int(name[-3:-1])
    # the paper's ViT baseline of the same depth: H*H + H + 2H fewer parameters per block (24.5M / 36.3M / 48.1M too)
    assert meta_params(name, reattn_from=depth) == exact - depth * (12 * 12 + 12 + 24)


def test_reattn_from():
    m = meta_model("deepvit_tiny_patch4_32", reattn_from=11)
    kinds = [type(b.attn) for b in m.blocks]
    assert kinds == [Attention] * 11 + [ReAttention] * 5                   # official deepvit_S's split
    assert all(type(b.attn) is ReAttention for b in meta_model("deepvit_16b").blocks)
    assert isinstance(meta_model("deepvit_16b", reattn_norm="ln").blocks[0].attn.var_norm, torch.nn.LayerNorm)
    with pytest.raises(ConfigError):
        create_model("deepvit_tiny_patch4_32", reattn_norm="gn")


def test_reattention_cost_is_negligible():
    """Re-attention adds the head mixing, H^2 N^2 MACs per layer (count_macs counts the explicit attention products
    as it counts SDPA): 1.7% of DeepViT-16 at 224 px (N = 197, H = 12), 0.6% of the 16-block tiny model at 32 px."""
    full = macs(create_model("deepvit_tiny_patch4_32"), (3, 32, 32))
    plain = macs(create_model("deepvit_tiny_patch4_32", reattn_from=16), (3, 32, 32))
    assert full - plain == 16 * 6 * 6 * 65 * 65 and (full - plain) / plain < 0.01
    n, d, h = 197, 384, 12
    layer = n * (d * 3 * d + d * d + 2 * d * 3 * d) + 2 * n * n * d   # qkv, proj, MLP (ratio 3), q k^T and attn v
    assert 0.015 < h * h * n * n / layer < 0.02
