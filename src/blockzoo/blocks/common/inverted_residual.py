"""The inverted residual with linear bottleneck (Sandler et al., "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", CVPR 2018): MobileNetV2's block, also the "MV2" unit of MobileViT-style networks (AFFNet)."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from blockzoo.blocks.common.drop import make_drop_path
from blockzoo.blocks.common.layers import ConvNormAct, out_size
from blockzoo.checks import check_choice
from blockzoo.registry import build_slot

__all__ = ["InvertedResidual", "ATTN_POSITIONS", "MBV2_SETTINGS"]

ATTN_POSITIONS = ("after_dw", "after_proj")

# MobileNetV2's body, (t, c, n, s): expansion, output channels, repeats, stride of the first block (paper Table 2);
# shared by the MobileNetV2 family and the networks built on its layout (MGIC)
MBV2_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand -> norm -> act] -> 3x3 depthwise -> norm -> act -> 1x1 linear project -> norm,
    plus the identity when ``stride == 1`` and ``in_channels == out_channels``.

    ``attn`` is inserted at ``attn_position``: ``"after_dw"`` (on the ``hidden`` = t * C_in channels, between the
    depthwise act and the projection) or ``"after_proj"`` (on C_out channels, after the projection norm, before the
    residual add). Submodules are registered in execution order. ``drop_path``: stochastic depth on the residual
    branch (blocks with the identity only).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: float, *, attn: Any = "none",
                 attn_position: str = "after_dw", norm: Any = "bn", act: Any = "relu6", ctx=None,
                 feat_size: tuple[int, int] | None = None, drop_path: float = 0.0):
        super().__init__()
        check_choice(stride, "stride", (1, 2), owner="InvertedResidual")
        check_choice(attn_position, "attn_position", ATTN_POSITIONS, owner="InvertedResidual")
        ctx = ctx or (lambda s, f: None)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.hidden = int(round(in_channels * expand_ratio))
        self.use_res = stride == 1 and in_channels == out_channels
        self.attn_position = attn_position
        feat_out = out_size(feat_size, stride)
        if expand_ratio != 1:
            self.conv_pw = ConvNormAct(in_channels, self.hidden, 1, norm=norm, act=act)
        else:
            self.conv_pw = nn.Identity()
        self.conv_dw = ConvNormAct(self.hidden, self.hidden, 3, stride, groups=self.hidden, norm=norm, act=act)
        if attn_position == "after_dw":
            self.attn = build_slot("attn", attn, self.hidden, ctx("attn", feat_out))
        self.conv_pwl = ConvNormAct(self.hidden, out_channels, 1, norm=norm, act=None)  # linear bottleneck
        if attn_position == "after_proj":
            self.attn = build_slot("attn", attn, out_channels, ctx("attn", feat_out))
        self.drop_path = make_drop_path(drop_path if self.use_res else 0.0)

    def zero_init_last(self) -> None:
        w = getattr(self.conv_pwl.norm, "weight", None)
        if self.use_res and w is not None:
            nn.init.zeros_(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_dw(self.conv_pw(x))
        if self.attn_position == "after_dw":
            y = self.conv_pwl(self.attn(y))
        else:
            y = self.attn(self.conv_pwl(y))
        return x + self.drop_path(y) if self.use_res else y
