"""Parameter-free spatial operators: Han et al., "Learning Features with Parameter-Free Layers", ICLR 2022,
arXiv:2202.02777 [S008]; official code naver-ai/PfLayer.

Mixers (``mixer`` slot; NCHW -> NCHW, same C): plain parameter-free k x k stride-1 pooling (padding k // 2, k odd)
used *as the spatial operator* in place of a depthwise conv (official R50-max uses ``nn.MaxPool2d(3, stride, 1)``):

- ``maxpool`` -- max pooling;
- ``avgpool`` -- average pooling that excludes the zero padding from the average (``count_include_pad=False``, like
  PoolFormer) so borders are not darkened; no ``- x`` (compare PoolFormer's ``pool``).

``conv``-slot units (replace the 3x3 conv -> norm -> act unit of a bottleneck; used by ``pf_resnet50_max`` /
``pf_resnet50_hybrid`` in ``blockzoo.models.pfnet``):

- ``pf_maxpool`` -- ``MaxPool2d(3, stride, 1)`` with no norm and no activation (the official ``MaxBottleneck``).
- ``pf_hybrid`` -- the official ``EffBottleneck`` unit: stride 1 -> ``MaxPool2d(3, 1, 1)``; stride 2 ->
  ``AvgPool2d(2, 2)`` followed by a 3x3 conv -> norm -> act. Deviation: the 2x2 average pool uses ``ceil_mode=True``
  (and ``count_include_pad=False``) so odd feature maps (7x7 at 28 px input) keep the shortcut's size; on even
  sizes (every ImageNet stage) it is identical to the official ``AvgPool2d(2, 2)``.

Both units keep the channel count; using them where a conv changes the width raises ``IncompatibleBlockError``.
"""
from __future__ import annotations

import torch.nn as nn

from blockzoo.blocks.common.layers import ConvNormAct
from blockzoo.checks import check_odd
from blockzoo.papers import PFLAYER
from blockzoo.registry import Claim, IncompatibleBlockError, Requires, register_block

__all__ = ["MaxPool", "AvgPool", "EffConvUnit", "maxpool", "avgpool", "pf_maxpool", "pf_hybrid"]

_T = "tests/models/test_pfnet.py::"
_T_POOLFORMER = "tests/blocks/mixers/test_poolformer.py::"


class MaxPool(nn.MaxPool2d):
    """k x k stride-1 max pooling with "same" padding (parameter-free spatial operator)."""

    def __init__(self, kernel_size: int = 3):
        check_odd(kernel_size, "kernel_size", owner="maxpool")
        super().__init__(kernel_size, 1, kernel_size // 2)


class AvgPool(nn.AvgPool2d):
    """k x k stride-1 average pooling with "same" padding; padded zeros are excluded from the mean."""

    def __init__(self, kernel_size: int = 3, count_include_pad: bool = False):
        check_odd(kernel_size, "kernel_size", owner="avgpool")
        super().__init__(kernel_size, 1, kernel_size // 2, count_include_pad=count_include_pad)


@register_block(
    "maxpool", slot="mixer", paper=PFLAYER, family="parameter_free",
    summary="3x3 stride-1 max pooling as the spatial operator (parameter-free layer)",
    claims=(Claim("no parameters", _T_POOLFORMER + "test_pool_mixers_parameter_free"),
            Claim("R50-max (max-pool instead of the 3x3 conv) has 14.2M parameters", _T + "test_pf_resnet_params"),),
    notes="Stride 1, padding k//2 (k odd).",
)
def maxpool(channels: int | None = None, kernel_size: int = 3) -> nn.Module:
    return MaxPool(kernel_size)


@register_block(
    "avgpool", slot="mixer", paper=PFLAYER, family="parameter_free",
    summary="3x3 stride-1 average pooling as the spatial operator (parameter-free layer)",
    claims=(Claim("no parameters; borders averaged over valid pixels only",
                  _T_POOLFORMER + "test_pool_mixers_parameter_free"),),
    notes="Plain average, no '- x' (see 'pool').",
)
def avgpool(channels: int | None = None, kernel_size: int = 3, count_include_pad: bool = False) -> nn.Module:
    return AvgPool(kernel_size, count_include_pad)


def _check_keeps(name: str, channels: int, out_channels: int | None) -> int:
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
    notes="Keeps the channel count (out_channels must equal channels); groups, norm and act are ignored.",
)
def pf_maxpool(channels: int, out_channels: int | None = None, stride: int = 1, groups: int = 1, norm="bn",
               act="relu", kernel_size: int = 3) -> nn.Module:
    _check_keeps("pf_maxpool", channels, out_channels)
    check_odd(kernel_size, "kernel_size", owner="pf_maxpool")
    return nn.MaxPool2d(kernel_size, stride, kernel_size // 2)


class EffConvUnit(nn.Sequential):
    """Stride-2 unit of the official ``EffBottleneck``: 2x2 average pool (ceil mode) -> 3x3 conv -> norm -> act."""

    def __init__(self, channels: int, out_channels: int, groups: int = 1, norm="bn", act="relu"):
        super().__init__(nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False),
                         ConvNormAct(channels, out_channels, 3, 1, groups=groups, norm=norm, act=act))


@register_block(
    "pf_hybrid", slot="conv", paper=PFLAYER, family="parameter_free",
    requires=Requires(keeps_channels=True, stride=True, min_size=2),  # the stride-2 path's 2x2 average pool
    summary="PfLayer 'eff' unit: 3x3 max pool at stride 1; 2x2 avg pool + 3x3 conv-norm-act at stride 2 (R50-hybrid)",
    claims=(Claim("R50-hybrid has 17.3M parameters and 2.6 GFLOPs (paper: README)", _T + "test_pf_resnet_params"),),
    notes="kernel_size is the max pool's (odd). Keeps the channel count; stride 1 or 2.",
)
def pf_hybrid(channels: int, out_channels: int | None = None, stride: int = 1, groups: int = 1, norm="bn",
              act="relu", kernel_size: int = 3) -> nn.Module:
    out = _check_keeps("pf_hybrid", channels, out_channels)
    check_odd(kernel_size, "kernel_size", owner="pf_hybrid")
    if stride == 1:
        return nn.MaxPool2d(kernel_size, 1, kernel_size // 2)
    if stride != 2:
        raise IncompatibleBlockError(f"pf_hybrid supports stride 1 or 2, got {stride}")
    if channels % groups:
        raise IncompatibleBlockError(f"pf_hybrid: groups={groups} must divide the {channels} channels")
    return EffConvUnit(channels, out, groups=groups, norm=norm, act=act)
