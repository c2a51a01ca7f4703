"""Batch-whitening convolutional unit: Cho, Cho, Kim & Kim, "Improving Generalization of Batch Whitening by
Convolutional Unit Optimization", ICCV 2021, arXiv:2108.10629 (inventory S090; official PyTorch code
https://github.com/YooshinCho/pytorch_ConvUnitOptimization, ``models/resnet.py``, ``unit_type='ours'``).

The usual unit, inherited from BatchNorm, is conv -> norm -> act; but the theory of batch whitening assumes that the
*input* of a linear layer is whitened. The paper's unit therefore moves the whitening in front of the convolution:

    whitening (IterNorm over the unit's input channels) -> k x k conv -> activation

with no norm after the conv. :class:`BWConv` is that unit for the ``conv`` slot, built on
:class:`blockzoo.blocks.norm.iternorm.IterNorm` (the paper uses IterNorm off the shelf: group size and iterations T
are IterNorm's; defaults here are IterNorm's paper values, group size 64 and T = 5).

Facts taken from the official code (the paper's full text could not be read here; its abstract fixes the order,
whitening -> conv, and the use of off-the-shelf IterNorm): the whitening layer has ``in_channels`` channels and keeps
IterNorm's affine transform (the official IterNorm default, ``affine=True``); the conv has no bias unless asked
(the official ``--bias`` flag is off by default); the activation (ReLU) directly follows the conv. In the official
networks every conv is preceded by a whitening layer -- also the second conv of a basic block (whitening -> conv,
before the residual addition), the 1x1 projection shortcut, and a final whitening before global pooling instead of a
norm after the stem. In blockzoo's ResNet skeleton the ``conv`` slot is only the first 3x3 unit of each block, so
``conv="bw_conv"`` applies the paper's unit there and leaves the block's other norms as the ``norm`` slot sets them;
the claim run ``benchmarks/claims/whitening_large_lr.py`` builds the official all-units network from these blocks.

``norm``: accepted for the ``conv``-slot contract and not used -- the unit's normalisation is its whitening, placed
before the conv (the paper's unit has no norm after the conv).
"""
from __future__ import annotations

import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.common.layers import ConvNormAct
from blockzoo.blocks.norm.iternorm import IterNorm
from blockzoo.checks import check_counts, check_groups, check_odd
from blockzoo.registry import Claim, Requires, register_block

__all__ = ["BWConv"]

_TEST = "tests/blocks/conv/test_bw_conv.py"


class BWConv(nn.Sequential):
    """IterNorm whitening of the input -> k x k conv -> act (``whiten``, then ``unit.conv`` / ``unit.act``).

    Args:
        in_channels, out_channels, stride, groups: the conv's (``out_channels`` defaults to ``in_channels``).
        norm: unused (module docstring). act: the activation after the conv (paper: ReLU).
        kernel_size: odd k of the conv (3 in the paper's networks).
        group_size, T, momentum, affine: the whitening's IterNorm options (channels per group, Newton iterations).
        bias: give the conv a bias (official flag ``--bias``, off by default).
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, stride: int = 1, groups: int = 1,
                 norm="bn", act="relu", *, kernel_size: int = 3, group_size: int = 64, T: int = 5,
                 momentum: float = 0.1, affine: bool = True, bias: bool = False):
        out_channels = out_channels or in_channels
        check_counts("bw_conv", in_channels=in_channels, out_channels=out_channels, stride=stride, groups=groups)
        check_odd(kernel_size, "kernel_size", owner="bw_conv")
        check_groups(in_channels, out_channels, groups, owner="bw_conv")
        super().__init__()
        self.out_channels = out_channels
        self.whiten = IterNorm(in_channels, group_size=group_size, T=T, momentum=momentum, affine=affine)
        self.unit = ConvNormAct(in_channels, out_channels, kernel_size, stride, groups=groups, norm="none", act=act,
                                bias=bias)


@register_block(
    "bw_conv", slot="conv", paper=papers.BW_CONV_UNIT, family="bw_conv",
    summary="Batch-whitening conv unit: IterNorm whitening of the input -> conv -> act (no norm after the conv)",
    requires=Requires(keeps_channels=False, stride=True),
    claims=(
        Claim("order whitening -> conv -> act: the conv sees whitened input (hand-checked 1x1 case)",
              f"{_TEST}::test_whitening_before_conv_by_hand"),
        Claim("the whitening has the unit's input channels; no norm after the conv", f"{_TEST}::test_structure"),
        Claim("better stability than conv -> IterNorm -> act with a large learning rate (CIFAR in the paper)",
              status="measured", check="benchmarks/claims/whitening_large_lr.py"),
    ),
    notes="group_size / T are the whitening IterNorm's (paper defaults 64 / 5); the host's norm is not used (the "
          "unit's normalisation is the whitening before the conv). In the ResNet skeleton only the first 3x3 unit "
          "of each block is the conv slot.",
)
def bw_conv(in_channels: int, out_channels: int | None = None, stride: int = 1, groups: int = 1, norm="bn",
            act="relu", kernel_size: int = 3, group_size: int = 64, T: int = 5, momentum: float = 0.1,
            affine: bool = True, bias: bool = False) -> nn.Module:
    return BWConv(in_channels, out_channels, stride, groups, norm, act, kernel_size=kernel_size,
                  group_size=group_size, T=T, momentum=momentum, affine=affine, bias=bias)
