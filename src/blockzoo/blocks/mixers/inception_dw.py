"""InceptionNeXt's Inception depthwise convolution as a token mixer (``mixer`` slot; NCHW -> NCHW, same C).

Yu et al., "InceptionNeXt: When Inception Meets ConvNeXt", CVPR 2024, arXiv:2303.16900 [S014]; official code
sail-sg/inceptionnext (``InceptionDWConv2d``). ``gc = int(C * branch_ratio)``; the channels are split
``(C - 3 gc, gc, gc, gc)`` into identity, a square k_s x k_s depthwise conv, a 1 x k_b and a k_b x 1 depthwise band
conv (all biased, "same" padding, so both kernel sizes must be odd), then concatenated. Paper defaults: square kernel
3, band kernel 11, branch ratio 1/8; InceptionNeXt-atto uses k_b = 9 and ratio 1/4 (official ``inceptionnext_atto``).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.checks import check_int, check_odd, check_positive
from blockzoo.registry import Claim, IncompatibleBlockError, Requires, register_block

__all__ = ["InceptionDWConv2d", "inception_dw"]


class InceptionDWConv2d(nn.Module):
    """Inception depthwise conv: split C into (C - 3gc, gc, gc, gc) -> identity / kxk dw / 1xk dw / kx1 dw -> concat."""

    def __init__(self, channels: int, square_kernel_size: int = 3, band_kernel_size: int = 11,
                 branch_ratio: float = 0.125):
        super().__init__()
        check_int(channels, "channels", min_value=1, owner="inception_dw")
        sk = check_odd(square_kernel_size, "square_kernel_size", owner="inception_dw")
        bk = check_odd(band_kernel_size, "band_kernel_size", owner="inception_dw")
        gc = int(channels * check_positive(branch_ratio, "branch_ratio", owner="inception_dw"))
        if gc < 1 or channels - 3 * gc < 0:
            raise IncompatibleBlockError(
                f"inception_dw with branch_ratio={branch_ratio} needs int(C * branch_ratio) >= 1 and 3 * gc <= C; "
                f"C={channels} gives gc={gc}. Use at least {int(1 / branch_ratio + 0.999)} channels or a "
                f"branch_ratio <= 1/3.")
        self.dwconv_hw = nn.Conv2d(gc, gc, sk, padding=sk // 2, groups=gc)
        self.dwconv_w = nn.Conv2d(gc, gc, (1, bk), padding=(0, bk // 2), groups=gc)
        self.dwconv_h = nn.Conv2d(gc, gc, (bk, 1), padding=(bk // 2, 0), groups=gc)
        self.split_indexes = (channels - 3 * gc, gc, gc, gc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_id, x_hw, x_w, x_h = torch.split(x, self.split_indexes, dim=1)
        return torch.cat((x_id, self.dwconv_hw(x_hw), self.dwconv_w(x_w), self.dwconv_h(x_h)), dim=1)


@register_block(
    "inception_dw", slot="mixer", paper=papers.INCEPTIONNEXT, family="inceptionnext",
    summary="Inception depthwise conv: identity | 3x3 dw | 1x11 dw | 11x1 dw on a (C-3gc, gc, gc, gc) split",
    requires=Requires(min_channels=8),
    claims=(Claim("split (C - 3gc, gc, gc, gc) with gc = int(C/8); branches 3x3, 1x11, 11x1 depthwise with bias",
                  "tests/blocks/mixers/test_inception_dw.py::test_inception_dw_split_and_kernels"),
            Claim("InceptionNeXt-T has 28.06M parameters and 4.19 GMACs at 224",
                  "tests/models/test_inceptionnext.py::test_param_counts"),),
    notes="Needs int(C * branch_ratio) >= 1 and odd kernel sizes.",
)
def inception_dw(channels: int, square_kernel_size: int = 3, band_kernel_size: int = 11,
                 branch_ratio: float = 0.125) -> nn.Module:
    return InceptionDWConv2d(channels, square_kernel_size, band_kernel_size, branch_ratio)
