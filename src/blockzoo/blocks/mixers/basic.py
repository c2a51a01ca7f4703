"""Basic token mixers for the ``mixer`` slot (NCHW -> NCHW, same C) and the parameter-free spatial operators.

Mixers (plug into any MetaFormer / MetaNeXt backbone through ``mixer=``, see ``blockzoo.models.metaformer``):

- ``dwconv`` -- ConvNeXt's depthwise k x k convolution (k = 7, with bias): Liu et al., "A ConvNet for the 2020s",
  CVPR 2022, arXiv:2201.03545 [S057]. Options: ``kernel_size`` (7), ``bias`` (True), ``dilation`` (1).
- ``inception_dw`` -- InceptionNeXt's Inception depthwise convolution: Yu et al., "InceptionNeXt: When Inception Meets
  ConvNeXt", CVPR 2024, arXiv:2303.16900 [S014]. ``gc = int(C * branch_ratio)``; the channels are split
  ``(C - 3 gc, gc, gc, gc)`` into identity, a 3x3 depthwise conv, a 1 x k and a k x 1 depthwise band conv (all biased,
  "same" padding), then concatenated. Paper defaults: square kernel 3, band kernel k = 11, branch ratio 1/8;
  InceptionNeXt-atto uses k = 9 and ratio 1/4 (official ``inceptionnext_atto``).
- ``maxpool`` / ``avgpool`` -- plain parameter-free 3x3 stride-1 pooling (padding 1) used *as the spatial operator*
  in place of a depthwise conv: Han et al., "Learning Features with Parameter-Free Layers", ICLR 2022,
  arXiv:2202.02777 [S008] (official R50-max uses ``nn.MaxPool2d(3, stride, 1)``). ``avgpool`` excludes the zero
  padding from the average (``count_include_pad=False``, like PoolFormer) so borders are not darkened.
- ``pool`` -- PoolFormer's token mixer ``AvgPool3x3(x) - x`` (``count_include_pad=False``): Yu et al., "MetaFormer Is
  Actually What You Need for Vision", CVPR 2022, arXiv:2111.11418. The ``- x`` cancels the block's residual so the
  branch contributes only the *neighbourhood* information. Use ``pool`` inside MetaFormer blocks (norm -> mixer ->
  residual); use ``avgpool`` when the mixer *replaces* a conv (MetaNeXt / ConvNeXt blocks, PfLayer).
- ``identity`` -- no token mixing at all (PoolFormer paper's "identity mapping" ablation; MetaFormer's
  IdentityFormer). ``mixer="none"`` gives the same.

Parameter-free ``conv``-slot units (S008, replace the 3x3 conv -> norm -> act unit of a bottleneck; used by
``pf_resnet50_max`` / ``pf_resnet50_hybrid`` in ``blockzoo.models.pfnet``):

- ``pf_maxpool`` -- ``MaxPool2d(3, stride, 1)`` with no norm and no activation (the official ``MaxBottleneck``).
- ``pf_hybrid`` -- the official ``EffBottleneck`` unit: stride 1 -> ``MaxPool2d(3, 1, 1)``; stride 2 ->
  ``AvgPool2d(2, 2)`` followed by a 3x3 conv -> norm -> act. Deviation: the 2x2 average pool uses ``ceil_mode=True``
  (and ``count_include_pad=False``) so odd feature maps (7x7 at 28 px input) keep the shortcut's size; on even
  sizes (every ImageNet stage) it is identical to the official ``AvgPool2d(2, 2)``.
Both keep the channel count; using them where a conv changes the width raises ``IncompatibleBlockError``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import papers
from blockzoo.blocks.common.layers import ConvNormAct
from blockzoo.registry import Claim, IncompatibleBlockError, Paper, Requires, register_block

PFLAYER = Paper("Learning Features with Parameter-Free Layers", 2022, "ICLR", "2202.02777", id="S008",
                url="https://github.com/naver-ai/PfLayer", authors="Han et al.")
POOLFORMER = Paper("MetaFormer Is Actually What You Need for Vision", 2022, "CVPR", "2111.11418",
                   url="https://github.com/sail-sg/poolformer", authors="Yu et al.")

_T = "tests/test_metaformer.py::"

__all__ = ["PFLAYER", "POOLFORMER", "DWConv", "InceptionDWConv2d", "Pool", "MaxPool", "AvgPool", "EffConvUnit"]


# ------------------------------------------------------------------------------------------------------- dwconv
class DWConv(nn.Conv2d):
    """Depthwise k x k convolution with "same" padding (ConvNeXt's ``dwconv``)."""

    def __init__(self, channels: int, kernel_size: int = 7, bias: bool = True, dilation: int = 1):
        if kernel_size % 2 != 1:
            raise ValueError(f"dwconv needs an odd kernel_size to keep the spatial size, got {kernel_size}")
        super().__init__(channels, channels, kernel_size, 1, dilation * (kernel_size - 1) // 2, dilation=dilation,
                         groups=channels, bias=bias)


@register_block(
    "dwconv", slot="mixer", paper=papers.CONVNEXT, family="convnext",
    summary="ConvNeXt depthwise 7x7 conv (with bias) as the token mixer",
    claims=(Claim("depthwise (groups = C) 7x7 kernel with bias: 50*C parameters", _T + "test_dwconv_is_depthwise_7x7"),
            Claim("ConvNeXt-T has 28,589,128 parameters", _T + "test_param_counts"),),
    notes="Options: kernel_size (7), bias (True), dilation (1).",
)
def dwconv(channels: int, kernel_size: int = 7, bias: bool = True, dilation: int = 1) -> nn.Module:
    return DWConv(channels, kernel_size, bias, dilation)


# ------------------------------------------------------------------------------------------------- inception_dw
class InceptionDWConv2d(nn.Module):
    """Inception depthwise conv: split C into (C - 3gc, gc, gc, gc) -> identity / kxk dw / 1xk dw / kx1 dw -> concat."""

    def __init__(self, channels: int, square_kernel_size: int = 3, band_kernel_size: int = 11,
                 branch_ratio: float = 0.125):
        super().__init__()
        gc = int(channels * branch_ratio)
        if gc < 1 or channels - 3 * gc < 0:
            raise IncompatibleBlockError(
                f"inception_dw with branch_ratio={branch_ratio} needs int(C * branch_ratio) >= 1 and 3 * gc <= C; "
                f"C={channels} gives gc={gc}. Use at least {int(1 / branch_ratio + 0.999)} channels or a larger "
                f"branch_ratio (<= 1/3).")
        sk, bk = square_kernel_size, band_kernel_size
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
                  _T + "test_inception_dw_split_and_kernels"),
            Claim("InceptionNeXt-T has 28.06M parameters and 4.19 GMACs at 224", _T + "test_param_counts"),),
    notes="Options: square_kernel_size (3), band_kernel_size (11), branch_ratio (0.125). Needs int(C*ratio) >= 1.",
)
def inception_dw(channels: int, square_kernel_size: int = 3, band_kernel_size: int = 11,
                 branch_ratio: float = 0.125) -> nn.Module:
    return InceptionDWConv2d(channels, square_kernel_size, band_kernel_size, branch_ratio)


# ----------------------------------------------------------------------------------------------- pooling mixers
class MaxPool(nn.MaxPool2d):
    """k x k stride-1 max pooling with "same" padding (parameter-free spatial operator)."""

    def __init__(self, kernel_size: int = 3):
        if kernel_size % 2 != 1:
            raise ValueError(f"pooling mixers need an odd kernel_size, got {kernel_size}")
        super().__init__(kernel_size, 1, kernel_size // 2)


class AvgPool(nn.AvgPool2d):
    """k x k stride-1 average pooling with "same" padding; padded zeros are excluded from the mean."""

    def __init__(self, kernel_size: int = 3, count_include_pad: bool = False):
        if kernel_size % 2 != 1:
            raise ValueError(f"pooling mixers need an odd kernel_size, got {kernel_size}")
        super().__init__(kernel_size, 1, kernel_size // 2, count_include_pad=count_include_pad)


class Pool(nn.Module):
    """PoolFormer token mixer: ``AvgPool(x) - x`` (3x3, stride 1, padding excluded from the mean)."""

    def __init__(self, kernel_size: int = 3):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"pool needs an odd kernel_size, got {kernel_size}")
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        return F.avg_pool2d(x, k, 1, k // 2, count_include_pad=False) - x


@register_block(
    "maxpool", slot="mixer", paper=PFLAYER, family="parameter_free",
    summary="3x3 stride-1 max pooling as the spatial operator (parameter-free layer)",
    claims=(Claim("no parameters", _T + "test_pool_mixers_parameter_free"),
            Claim("R50-max (max-pool instead of the 3x3 conv) has 14.2M parameters", _T + "test_pf_resnet_params"),),
    notes="Options: kernel_size (3). Stride 1, padding k//2.",
)
def maxpool(channels: int | None = None, kernel_size: int = 3) -> nn.Module:
    return MaxPool(kernel_size)


@register_block(
    "avgpool", slot="mixer", paper=PFLAYER, family="parameter_free",
    summary="3x3 stride-1 average pooling as the spatial operator (parameter-free layer)",
    claims=(Claim("no parameters; borders averaged over valid pixels only", _T + "test_pool_mixers_parameter_free"),),
    notes="Options: kernel_size (3), count_include_pad (False). Plain average, no '- x' (see 'pool').",
)
def avgpool(channels: int | None = None, kernel_size: int = 3, count_include_pad: bool = False) -> nn.Module:
    return AvgPool(kernel_size, count_include_pad)


@register_block(
    "pool", slot="mixer", paper=POOLFORMER, family="poolformer",
    summary="PoolFormer token mixer: AvgPool3x3(x) - x (for pre-norm MetaFormer blocks)",
    claims=(Claim("pool(x) = avgpool3x3(x) - x, no parameters", _T + "test_pool_mixers_parameter_free"),
            Claim("PoolFormer-S12 has 11.92M parameters and 1.82 GMACs at 224", _T + "test_param_counts"),),
    notes="Options: kernel_size (3). count_include_pad=False as in the official code.",
)
def pool(channels: int | None = None, kernel_size: int = 3) -> nn.Module:
    return Pool(kernel_size)


@register_block(
    "identity", slot="mixer", paper=POOLFORMER, family="identity",
    summary="No token mixing (identity mapping; the PoolFormer paper's ablation / IdentityFormer)",
    claims=(Claim("no parameters, output = input", _T + "test_pool_mixers_parameter_free"),),
)
def identity(channels: int | None = None, **_: object) -> nn.Module:
    return nn.Identity()


# ----------------------------------------------------------------------------------- parameter-free conv units
def _check_keeps(name: str, channels: int, out_channels: int | None, groups: int) -> int:
    out = channels if out_channels is None else out_channels
    if out != channels:
        raise IncompatibleBlockError(
            f"{name!r} is parameter-free and keeps the channel count, but this position maps {channels} -> {out} "
            f"channels. Use it where the 3x3 unit keeps the width (e.g. the middle conv of a bottleneck: "
            f"create_model('resnet50', conv='{name}')).")
    return out


@register_block(
    "pf_maxpool", slot="conv", paper=PFLAYER, family="parameter_free",
    requires=Requires(keeps_channels=True, stride=True),
    summary="Parameter-free conv unit: 3x3 max pool (stride 1 or 2), no norm/act (R50-max's MaxBottleneck)",
    claims=(Claim("R50-max has 14.2M parameters and 2.2 GFLOPs (paper: README)", _T + "test_pf_resnet_params"),),
    notes="Options: kernel_size (3). Keeps the channel count (out_channels must equal channels); norm/act ignored.",
)
def pf_maxpool(channels: int, out_channels: int | None = None, stride: int = 1, groups: int = 1, norm="bn",
               act="relu", kernel_size: int = 3) -> nn.Module:
    _check_keeps("pf_maxpool", channels, out_channels, groups)
    return nn.MaxPool2d(kernel_size, stride, kernel_size // 2)


class EffConvUnit(nn.Sequential):
    """Stride-2 unit of the official ``EffBottleneck``: 2x2 average pool (ceil mode) -> 3x3 conv -> norm -> act."""

    def __init__(self, channels: int, out_channels: int, groups: int = 1, norm="bn", act="relu"):
        super().__init__(nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False),
                         ConvNormAct(channels, out_channels, 3, 1, groups=groups, norm=norm, act=act))


@register_block(
    "pf_hybrid", slot="conv", paper=PFLAYER, family="parameter_free",
    requires=Requires(keeps_channels=True, stride=True),
    summary="PfLayer 'eff' unit: 3x3 max pool at stride 1; 2x2 avg pool + 3x3 conv-norm-act at stride 2 (R50-hybrid)",
    claims=(Claim("R50-hybrid has 17.3M parameters and 2.6 GFLOPs (paper: README)", _T + "test_pf_resnet_params"),),
    notes="Options: kernel_size (3) of the max pool. Keeps the channel count.",
)
def pf_hybrid(channels: int, out_channels: int | None = None, stride: int = 1, groups: int = 1, norm="bn",
              act="relu", kernel_size: int = 3) -> nn.Module:
    out = _check_keeps("pf_hybrid", channels, out_channels, groups)
    if stride == 1:
        return nn.MaxPool2d(kernel_size, 1, kernel_size // 2)
    if stride != 2:
        raise IncompatibleBlockError(f"pf_hybrid supports stride 1 or 2, got {stride}")
    return EffConvUnit(channels, out, groups=groups, norm=norm, act=act)
