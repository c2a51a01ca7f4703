"""Weight Standardization: Qiao, Wang, Liu, Shen & Yuille, "Micro-Batch Training with Batch-Channel Normalization
and Weight Standardization", arXiv:1903.10520 (official code https://github.com/joe-siyuan-qiao/WeightStandardization).

Weight Standardization (WS) re-parameterises a convolution: every output filter W_i (its C_in * kh * kw weights) is
standardised before the convolution, W_hat_i = (W_i - mean(W_i)) / sqrt(var(W_i) + eps), with the biased variance
(the paper's sigma = sqrt(1/I sum_j W_ij^2 - mu^2 + eps)). The gradient flows through the standardisation. WS
removes the dependence of the layer's output scale on the weights' scale and is meant to be used with a
batch-independent activation norm, GroupNorm in the paper (``norm="gn"``), for micro-batch training.

Same function as timm's ``StdConv2d`` (BiT): biased variance, eps inside the square root, eps = 1e-6 (timm's value;
the paper gives no number). The official PyTorch code differs slightly: it divides by the *unbiased* standard
deviation plus 1e-5 (eps outside the root); that variant is ``official=True``.

The ``ws_conv`` unit is the conv slot's conv -> norm -> act with a weight-standardised 3x3 conv, so
``create_model("resnet20", conv="ws_conv", norm="gn")`` uses WS in the slot's conv (the ResNet skeleton's other
convs stay plain).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import papers
from blockzoo.blocks.common.layers import ConvNormAct
from blockzoo.checks import check_positive
from blockzoo.registry import Claim, Requires, register_block

__all__ = ["StdConv2d", "standardize_weight"]

_TEST = "tests/blocks/conv/test_ws_conv.py"


def standardize_weight(weight: torch.Tensor, eps: float = 1e-6, official: bool = False) -> torch.Tensor:
    """Each output filter of ``weight`` (O, I, kh, kw) with mean 0 and unit (biased) variance:
    ``(w - mean) / sqrt(var + eps)``; ``official=True``: ``(w - mean) / (unbiased std + eps)`` as the official code."""
    flat = weight.reshape(weight.shape[0], -1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    if official:
        std = centred.std(dim=1, keepdim=True) + eps
    else:
        std = torch.sqrt(centred.pow(2).mean(dim=1, keepdim=True) + eps)
    return (centred / std).reshape_as(weight)


class StdConv2d(nn.Conv2d):
    """nn.Conv2d whose weight is standardised per output filter at every forward (:func:`standardize_weight`)."""

    def __init__(self, *args, eps: float = 1e-6, official: bool = False, **kw):
        check_positive(eps, "eps", owner="ws_conv")
        super().__init__(*args, **kw)
        self.eps, self.official = float(eps), bool(official)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = standardize_weight(self.weight, self.eps, self.official)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, eps={self.eps}, official={self.official}"


@register_block(
    "ws_conv", slot="conv", paper=papers.WEIGHT_STD, family="ws_conv",
    summary="Weight-standardised 3x3 conv (each filter mean 0, variance 1) -> norm -> act; use with norm='gn'",
    requires=Requires(keeps_channels=False, stride=True),
    claims=(
        Claim("each output filter is standardised to mean 0 and variance 1 before the convolution",
              f"{_TEST}::test_filters_standardised"),
        Claim("the same function as timm's StdConv2d (biased variance, eps inside the root)",
              f"{_TEST}::test_matches_timm_stdconv2d"),
        Claim("the output does not depend on the scale or offset of each filter's weights",
              f"{_TEST}::test_invariant_to_filter_affine"),
    ),
    notes="eps = 1e-6 as timm's StdConv2d (the paper gives none); official=True: unbiased std + 1e-5 as the official "
          "code (pass eps=1e-5). The paper pairs WS with GroupNorm (norm='gn').",
    usage='model = create_model("resnet20", conv="ws_conv", norm="gn")',
)
def ws_conv(channels: int, out_channels: int | None = None, stride: int = 1, groups: int = 1, norm="gn",
               act="relu", eps: float = 1e-6, official: bool = False) -> nn.Module:
    unit = ConvNormAct(channels, out_channels or channels, 3, stride, groups=groups, norm=norm, act=act)
    conv = unit.conv
    unit.conv = StdConv2d(conv.in_channels, conv.out_channels, 3, stride, 1, groups=groups, bias=conv.bias is not None,
                          eps=eps, official=official)
    return unit
