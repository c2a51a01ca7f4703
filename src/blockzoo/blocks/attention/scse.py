"""Spatial and channel squeeze & excitation (Roy, Navab & Wachinger, "Concurrent Spatial and Channel 'Squeeze &
Excitation' in Fully Convolutional Networks", MICCAI 2018, arXiv:1803.02579; inventory S061).

- cSE (spatial squeeze, channel excitation): GAP -> FC(C, C/r) -> ReLU -> FC(C/r, C) -> sigmoid -> rescale channels;
  the paper (and the authors' ``squeeze_and_excitation`` package) use r = 2 with biased FC layers.
- sSE (channel squeeze, spatial excitation): a 1x1 conv from C channels to ONE map -> sigmoid -> rescale every
  position (C + 1 parameters; other collections wrongly use a C -> C conv).
- scSE: both recalibrations concurrently, combined by element-wise addition ``cSE(x) + sSE(x)`` as in the MICCAI
  paper; ``combine='max'`` gives the max-out aggregation of the authors' later code.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.attention.se import SqueezeExcite
from blockzoo.checks import check_choice
from blockzoo.registry import Claim, register_block


class SpatialSE(nn.Module):
    """sSE: q = sigmoid(conv1x1(x) -> 1 map); out = x * q."""

    def __init__(self, channels: int, bias: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))


class SCSE(nn.Module):
    def __init__(self, channels: int, reduction: int = 2, combine: str = "add"):
        super().__init__()
        check_choice(combine, "combine", ("add", "max"), owner="scse")
        self.cse = SqueezeExcite(channels, reduction=reduction)
        self.sse = SpatialSE(channels)
        self.combine = combine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, s = self.cse(x), self.sse(x)
        return c + s if self.combine == "add" else torch.maximum(c, s)


_CLAIM = Claim("raises model complexity by about 1.5% in a U-Net-type F-CNN", None, status="not checked")


@register_block("cse", slot="attn", paper=papers.SCSE, family="scse", claims=(_CLAIM,),
                summary="cSE: GAP -> FC(C, C/2) -> ReLU -> FC -> sigmoid -> channel rescale")
def cse(channels: int, reduction: int = 2) -> nn.Module:
    return SqueezeExcite(channels, reduction=reduction)


@register_block("sse", slot="attn", paper=papers.SCSE, family="scse",
                claims=(Claim("a 1x1 conv to ONE map: C + 1 parameters",
                              "tests/blocks/attention/test_scse.py::test_sse_scse"),),
                summary="sSE: 1x1 conv C -> 1 map -> sigmoid -> spatial rescale")
def sse(channels: int) -> nn.Module:
    return SpatialSE(channels)


@register_block("scse", slot="attn", paper=papers.SCSE, family="scse", claims=(_CLAIM,),
                summary="scSE: cSE(x) + sSE(x) (concurrent channel and spatial recalibration)",
                notes="combine='add' (paper) | 'max' (the authors' later code).")
def scse(channels: int, reduction: int = 2, combine: str = "add") -> nn.Module:
    return SCSE(channels, reduction=reduction, combine=combine)
