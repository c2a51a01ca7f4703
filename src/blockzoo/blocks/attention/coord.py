"""Coordinate Attention (Hou et al., "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021,
arXiv:2103.02907; inventory S034), as in the official code (Andrew-Qibin/CoordAttention, ``coordatt.py``).

1-D average pooling along W (giving an H x 1 map) and along H (1 x W) -> concatenate along the spatial axis ->
shared 1x1 conv (C -> mip, with bias) -> BN -> h-swish -> split -> two 1x1 convs (mip -> C, with bias) -> sigmoid ->
``out = x * a_h * a_w``, with ``mip = max(8, C // reduction)`` and reduction = 32.
(timm's ``CoordAttn`` differs: ``rd_ratio = 1/16`` times ``se_factor = 2/3``, i.e. C/24, rounded to a multiple of 8
with ``make_divisible``, and its 1x1 convs have no biases.)
"""
from __future__ import annotations

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.checks import check_int
from blockzoo.registry import Claim, register_block


class CoordAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 32, min_mip: int = 8, out_channels: int | None = None):
        super().__init__()
        check_int(channels, "channels", min_value=1, owner="coord")
        check_int(min_mip, "min_mip", min_value=1, owner="coord")
        self.mip = max(min_mip, channels // check_int(reduction, "reduction", min_value=1, owner="coord"))
        out_channels = out_channels or channels
        self.conv1 = nn.Conv2d(channels, self.mip, 1)
        self.bn1 = nn.BatchNorm2d(self.mip)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(self.mip, out_channels, 1)
        self.conv_w = nn.Conv2d(self.mip, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        x_h = x.mean(3, keepdim=True)                        # (N, C, H, 1): pooled along W
        x_w = x.mean(2, keepdim=True).transpose(2, 3)        # (N, C, W, 1): pooled along H
        y = self.act(self.bn1(self.conv1(torch.cat([x_h, x_w], dim=2))))
        y_h, y_w = torch.split(y, [h, w], dim=2)
        a_h = torch.sigmoid(self.conv_h(y_h))                # (N, C, H, 1)
        a_w = torch.sigmoid(self.conv_w(y_w.transpose(2, 3)))  # (N, C, 1, W)
        return x * a_w * a_h


@register_block(
    "coord", slot="attn", paper=papers.COORD, family="coord",
    summary="Coordinate Attention: direction-aware pooling along H and W -> shared 1x1 -> two sigmoid maps",
    claims=(Claim("mip = max(8, C // 32) as in the official code",
                  "tests/blocks/attention/test_coord.py::test_coord_mip_and_values"),
            Claim("nearly no computational overhead in MobileNetV2 (paper: 3.5M/300M -> 3.95M/310M; ours: "
                  "3,504,872/300.8M -> 3,950,648/306.7M MACs)",
                  "tests/models/test_mobilenetv2.py::test_coord_overhead")),
)
def coord(channels: int, reduction: int = 32, min_mip: int = 8) -> nn.Module:
    return CoordAttention(channels, reduction=reduction, min_mip=min_mip)
