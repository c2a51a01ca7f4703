"""ConvNeXt's depthwise convolution as a token mixer (``mixer`` slot; NCHW -> NCHW, same C).

Liu et al., "A ConvNet for the 2020s", CVPR 2022, arXiv:2201.03545 [S057]: a depthwise k x k convolution (k = 7,
with bias, "same" padding) is the spatial mixer of every ConvNeXt block (the MetaNeXt block of
:mod:`blockzoo.models.metaformer`). The kernel size must be odd so that the padding keeps the spatial size.
"""
from __future__ import annotations

import torch.nn as nn

from blockzoo import papers
from blockzoo.checks import check_int, check_odd
from blockzoo.registry import Claim, register_block

__all__ = ["DWConv", "dwconv"]


class DWConv(nn.Conv2d):
    """Depthwise k x k convolution with "same" padding (ConvNeXt's ``dwconv``)."""

    def __init__(self, channels: int, kernel_size: int = 7, bias: bool = True, dilation: int = 1):
        check_int(channels, "channels", min_value=1, owner="dwconv")
        check_odd(kernel_size, "kernel_size", owner="dwconv")
        check_int(dilation, "dilation", min_value=1, owner="dwconv")
        super().__init__(channels, channels, kernel_size, 1, dilation * (kernel_size - 1) // 2, dilation=dilation,
                         groups=channels, bias=bias)


@register_block(
    "dwconv", slot="mixer", paper=papers.CONVNEXT, family="convnext",
    summary="ConvNeXt depthwise 7x7 conv (with bias) as the token mixer",
    claims=(Claim("depthwise (groups = C) 7x7 kernel with bias: 50*C parameters",
                  "tests/blocks/mixers/test_dwconv.py::test_dwconv_is_depthwise_7x7"),
            Claim("ConvNeXt-T has 28,589,128 parameters", "tests/models/test_convnext.py::test_param_counts"),),
)
def dwconv(channels: int, kernel_size: int = 7, bias: bool = True, dilation: int = 1) -> nn.Module:
    return DWConv(channels, kernel_size, bias, dilation)
