"""PoolFormer's pooling token mixer and the identity mixer (``mixer`` slot; NCHW -> NCHW, same C).

Yu et al., "MetaFormer Is Actually What You Need for Vision", CVPR 2022, arXiv:2111.11418; official code
sail-sg/poolformer (``Pooling``).

- ``pool`` -- ``AvgPool3x3(x) - x`` (stride 1, padding 1, ``count_include_pad=False``). The ``- x`` cancels the
  block's residual so the branch contributes only the *neighbourhood* information. Use ``pool`` inside MetaFormer
  blocks (norm -> mixer -> residual); use ``avgpool`` (:mod:`blockzoo.blocks.mixers.pflayer`) when the mixer
  *replaces* a conv (MetaNeXt / ConvNeXt blocks).
- ``identity`` -- no token mixing at all (the paper's "identity mapping" ablation; MetaFormer's IdentityFormer).
  ``mixer="none"`` gives the same.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.checks import check_odd
from blockzoo.papers import POOLFORMER
from blockzoo.registry import Claim, register_block

__all__ = ["Pool", "pool", "identity"]

_T = "tests/blocks/mixers/test_poolformer.py::"
_T_PFNET = "tests/models/test_pfnet.py::"


class Pool(nn.Module):
    """PoolFormer token mixer: ``AvgPool(x) - x`` (3x3, stride 1, padding excluded from the mean)."""

    def __init__(self, kernel_size: int = 3):
        super().__init__()
        self.kernel_size = check_odd(kernel_size, "kernel_size", owner="pool")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        return F.avg_pool2d(x, k, 1, k // 2, count_include_pad=False) - x


@register_block(
    "pool", slot="mixer", paper=POOLFORMER, family="poolformer",
    summary="PoolFormer token mixer: AvgPool3x3(x) - x (for pre-norm MetaFormer blocks)",
    claims=(Claim("pool(x) = avgpool3x3(x) - x, no parameters", _T + "test_pool_mixers_parameter_free"),
            Claim("PoolFormer-S12 has 11.92M parameters and 1.82 GMACs at 224", _T_PFNET + "test_param_counts"),),
    notes="count_include_pad=False as in the official code.",
)
def pool(channels: int | None = None, kernel_size: int = 3) -> nn.Module:
    return Pool(kernel_size)


@register_block(
    "identity", slot="mixer", paper=POOLFORMER, family="identity",
    summary="No token mixing (identity mapping; the PoolFormer paper's ablation / IdentityFormer)",
    claims=(Claim("no parameters, output = input", _T + "test_pool_mixers_parameter_free"),),
)
def identity(channels: int | None = None) -> nn.Module:
    return nn.Identity()
