"""Multi-head self-attention as a token mixer (``mixer`` slot; NCHW -> NCHW, same C, any spatial size).

Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021, arXiv:2010.11929 [VIT]: the ViT attention
(:class:`blockzoo.blocks.common.transformer.Attention`) over the H*W pixels of a feature map
(:class:`~blockzoo.blocks.common.transformer.TokenMixer2d`), without a position embedding: inside a MetaFormer /
MetaNeXt skeleton the convolutional stem, downsampling layers and neighbouring mixers carry the position (MetaFormer's
CAFormer uses it this way). The number of heads defaults to ``channels // head_dim`` with ``head_dim=32`` (at least
one head; the inner width is ``heads * head_dim``), as timm's MetaFormer ``Attention``; ``qkv_bias=True`` as ViT
(CAFormer: False). Its cost is quadratic in H*W.
"""
from __future__ import annotations

import torch.nn as nn

from blockzoo.blocks.common.transformer import Attention, TokenMixer2d, heads_for
from blockzoo.papers import VIT
from blockzoo.registry import Claim, register_block

__all__ = ["mhsa"]

_T = "tests/blocks/mixers/test_mhsa.py::"


@register_block(
    "mhsa", slot="mixer", paper=VIT, family="vit",
    summary="Multi-head self-attention over the pixels of the feature map (ViT attention, no position embedding)",
    claims=(Claim("softmax(q k^T / sqrt(d)) v per head, written out by hand", _T + "test_mhsa_matches_hand_computed"),
            Claim("heads = channels // 32 by default (timm's MetaFormer attention)", _T + "test_default_heads"),
            Claim("permuting the pixels permutes the output (no position information)",
                  _T + "test_permutation_equivariant")),
)
def mhsa(channels: int, num_heads: int | None = None, head_dim: int = 32, qkv_bias: bool = True,
         attn_drop: float = 0.0, proj_drop: float = 0.0) -> nn.Module:
    heads = heads_for(channels, num_heads, head_dim, "mhsa")
    return TokenMixer2d(Attention(channels, heads, qkv_bias, attn_drop, proj_drop,
                                  head_dim=head_dim if num_heads is None else None))
