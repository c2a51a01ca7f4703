"""Ghost module and Ghost bottleneck: Han, Wang, Tian, Guo, Xu & Xu, "GhostNet: More Features from Cheap
Operations", CVPR 2020, arXiv:1911.11907 (inventory S098; official code huawei-noah/Efficient-AI-Backbones,
``ghostnet_pytorch/ghostnet.py``). The GhostNetV2 bottleneck (Tang et al., NeurIPS 2022, arXiv:2211.12905, S042)
is the same bottleneck whose first Ghost module is gated by DFC attention; it lives here because it is a two-line
extension of the Ghost module and reuses the ``dfc`` block (``blocks/attention/dfc.py``).

Ghost module (paper Sec. 3.1, Fig. 2b)
--------------------------------------
A primary ``k x k`` convolution (with the unit's stride) -> norm -> act makes ``m = ceil(n / s)`` *intrinsic* maps;
a cheap depthwise ``d x d`` convolution (``groups = m``, ``s - 1`` outputs per intrinsic map) -> norm -> act makes
the ``m (s - 1)`` *ghost* maps; the output is ``[intrinsic, ghost]`` concatenated and cut to the first ``n`` channels
(when ``s`` does not divide ``n``). Paper defaults ``s = 2``, ``d = 3``. The cost ratios of eq. 4-5 against a plain
``k x k`` conv with ``c`` input channels are ``r_s = r_c = s c k^2 / (c k^2 + (s - 1) d^2)`` (exactly ``s c / (c + s
- 1) ~ s`` for ``d = k``), counted for every channel computed, the cut ones included (as the official code computes
them).

As the ``conv`` slot block ``ghost`` it replaces a ``k x k`` conv -> norm -> act unit, as the paper's Ghost-VGG-16 /
Ghost-ResNet-56 on CIFAR-10 replace every convolution (eq. 3: the primary conv keeps the ordinary conv's filter
size, stride and padding): the primary conv takes the replaced conv's kernel (``kernel_size=3``), stride and
groups; ``act`` follows both the primary and the cheap op (official ``relu=True``); ``act="none"`` gives the linear
module of the bottleneck's second Ghost module. Inside GhostNet the modules are 1x1 (``GhostModule`` default
``kernel_size=1``, as the official code).

Ghost bottleneck (paper Fig. 3, official ``GhostBottleneck``)
--------------------------------------------------------------
Ghost module (expansion to the hidden width, act) -> [depthwise ``k x k`` conv, stride 2 -> norm, no act: stride-2
blocks only] -> [SE: the ``attn`` value, on the hidden width] -> Ghost module (projection, no act) + shortcut. The
shortcut is the identity when the shape is kept, otherwise (official code) depthwise ``k x k`` conv with the block's
stride -> norm -> 1x1 conv -> norm. No activation after the addition. The paper's SE (official ``SqueezeExcite``) is
blockzoo's ``se`` with ``reduction=4``, ``gate="hsigmoid"`` (official ``hard_sigmoid = relu6(x + 3) / 6``) and the
hidden width rounded with ``make_divisible(C / reduction, 4)``: :func:`blockzoo.blocks.attention.se.se_value_divisible`
applies that rounding to any ``se`` value without an explicit ``hidden``.

C-GhostNet (the CPU-oriented network of the IJCV extension, Han et al. 2022, arXiv:2201.03297, S099) is GhostNet v1
built from C-Ghost bottlenecks, which are exactly these Ghost bottlenecks: nothing separate is registered for it.

GhostNetV2 (S042, paper Fig. 4b; official ``ghostnetv2_torch.py``)
-----------------------------------------------------------------
:class:`GhostModuleV2` multiplies the Ghost module's output by the DFC attention gate computed from the *module
input* (2x average pooling -> 1x1 conv C_in -> C_out + BN -> 1x5 and 5x1 depthwise convs + BN -> sigmoid -> nearest
up-sampling to the output size). The gate is the ``dfc`` block's :meth:`DFCAttention.gate` with its first 1x1 conv
mapping the module's input channels to its output channels (``DFCAttention(in_channels=...)``). The V2 module is
the bottleneck's first (1x1, stride 1) Ghost module.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.attention.dfc import DFCAttention
from blockzoo.blocks.attention.se import se_value_divisible
from blockzoo.blocks.common.drop import make_drop_path
from blockzoo.blocks.common.layers import ConvNormAct, make_norm, out_size
from blockzoo.checks import check_choice, check_counts, check_int, check_odd
from blockzoo.registry import Claim, IncompatibleBlockError, Requires, build_slot, register_block

__all__ = ["GhostModule", "GhostModuleV2", "GhostBottleneck", "intrinsic_channels"]


def intrinsic_channels(out_channels: int, ratio: int = 2) -> int:
    """``m = ceil(n / s)``: the intrinsic maps the primary conv makes for ``n`` output channels."""
    return math.ceil(out_channels / ratio)


class GhostModule(nn.Module):
    """Ghost module: primary ``k x k`` conv -> norm -> act (``m = ceil(n/s)`` intrinsic maps), cheap ``d x d``
    depthwise conv -> norm -> act (``m (s-1)`` ghost maps), concatenated and cut to ``n = out_channels``.

    Args:
        in_channels, out_channels: ``c`` and ``n``.
        kernel_size: ``k`` of the primary conv (official GhostNet: 1; as a ``conv``-slot unit: 3).
        stride, groups: of the primary conv (the cheap op is stride 1).
        norm, act: after both convs (slot values; ``act="none"``: the linear module).
        ratio: ``s`` (>= 2); dw_size: ``d`` (odd).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
                 norm: Any = "bn", act: Any = "relu", *, ratio: int = 2, dw_size: int = 3):
        super().__init__()
        check_counts("ghost", in_channels=in_channels, out_channels=out_channels, stride=stride, groups=groups)
        check_int(ratio, "ratio", min_value=2, owner="ghost")
        check_odd(kernel_size, "kernel_size", owner="ghost")
        check_odd(dw_size, "dw_size", owner="ghost")
        init = intrinsic_channels(out_channels, ratio)
        if in_channels % groups or init % groups:
            raise IncompatibleBlockError(
                f"ghost: groups={groups} must divide the input channels ({in_channels}) and the intrinsic channels "
                f"ceil({out_channels}/{ratio}) = {init}; use groups=1 or widths divisible by the groups")
        self.in_channels, self.out_channels, self.ratio = in_channels, out_channels, ratio
        # activations in place on the fresh conv / norm output (as timm's GhostModule)
        self.primary_conv = ConvNormAct(in_channels, init, kernel_size, stride, groups=groups, norm=norm, act=act,
                                        inplace=True)
        self.cheap_operation = ConvNormAct(init, init * (ratio - 1), dw_size, 1, groups=init, norm=norm, act=act,
                                           inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary_conv(x)
        return torch.cat([y, self.cheap_operation(y)], dim=1)[:, :self.out_channels]


class GhostModuleV2(GhostModule):
    """GhostNetV2's Ghost module (1x1 primary conv, stride 1): the Ghost module's output times the DFC attention gate
    of its input (needs inputs of at least 2x2: the gate runs at half resolution)."""

    def __init__(self, in_channels: int, out_channels: int, norm: Any = "bn", act: Any = "relu", *, ratio: int = 2,
                 dw_size: int = 3, dfc_kernel: int = 5):
        super().__init__(in_channels, out_channels, 1, 1, 1, norm, act, ratio=ratio, dw_size=dw_size)
        self.dfc = DFCAttention(out_channels, dfc_kernel, in_channels=in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.dfc.gate(x)


class GhostBottleneck(nn.Module):
    """Ghost bottleneck (GhostNet) / GhostNetV2 bottleneck (``dfc=True``): see the module docstring.

    Args:
        in_channels, mid_channels, out_channels: input, hidden (the table's ``#exp``) and output widths.
        kernel_size: of the depthwise conv (stride-2 blocks) and of the shortcut's depthwise conv.
        stride: 1 or 2.
        attn: the SE position's slot value (``"none"``: no SE); an ``se`` value gets GhostNet's rounding.
        norm, act: slot values of the Ghost modules, depthwise conv and shortcut (act only in the first module).
        dfc: the first Ghost module is a :class:`GhostModuleV2` (GhostNetV2).
        ctx, feat_size: the backbone's slot context and the block's input size (for the attn slot's checks).
        drop_path: stochastic depth on the branch (identity-shortcut blocks only, as in timm's mobile blocks).
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 *, attn: Any = "none", norm: Any = "bn", act: Any = "relu", dfc: bool = False, ctx=None,
                 feat_size: tuple[int, int] | None = None, drop_path: float = 0.0):
        super().__init__()
        check_choice(stride, "stride", (1, 2), owner="GhostBottleneck")
        ctx = ctx or (lambda position, feat=None: None)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.ghost1 = (GhostModuleV2(in_channels, mid_channels, norm, act) if dfc
                       else GhostModule(in_channels, mid_channels, norm=norm, act=act))
        self.conv_dw = (ConvNormAct(mid_channels, mid_channels, kernel_size, stride, groups=mid_channels, norm=norm,
                                    act=None) if stride > 1 else nn.Identity())
        feat_out = out_size(feat_size, stride, kernel_size)
        self.attn = build_slot("attn", se_value_divisible(attn, mid_channels, 4), mid_channels, ctx("attn", feat_out))
        self.ghost2 = GhostModule(mid_channels, out_channels, norm=norm, act=None)
        self.has_skip = stride == 1 and in_channels == out_channels
        if self.has_skip:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, kernel_size, stride, kernel_size // 2, groups=in_channels,
                          bias=False),
                make_norm(norm, in_channels),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                make_norm(norm, out_channels))
        self.drop_path = make_drop_path(drop_path if self.has_skip else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ghost2(self.attn(self.conv_dw(self.ghost1(x))))
        return self.shortcut(x) + self.drop_path(y)


@register_block(
    "ghost", slot="conv", paper=papers.GHOSTNET, family="ghost",
    summary="Ghost module: k x k conv makes ceil(n/s) intrinsic maps, a cheap d x d depthwise conv the ghost maps "
            "(s = 2, d = 3), concatenated",
    requires=Requires(keeps_channels=False, stride=True),
    claims=(
        Claim("n output channels from ceil(n/s) intrinsic maps and their depthwise ghosts (the cut when s does not "
              "divide n)", "tests/blocks/conv/test_ghost.py::test_output_channels_not_divisible"),
        Claim("parameters and MACs by eq. 4-5: compression and speed-up ratio s c k^2 / (c k^2 + (s-1) d^2) ~ s "
              "against the plain k x k conv", "tests/blocks/conv/test_ghost.py::test_cost_formula_eq4_eq5"),
        Claim("each ghost map is a depthwise function of its own intrinsic map",
              "tests/blocks/conv/test_ghost.py::test_ghost_maps_depend_on_their_intrinsic_map_only"),
        Claim("in ResNet-20 (conv slot = the first 3x3 unit of every block) it halves those convolutions' "
              "parameters", "tests/blocks/conv/test_ghost.py::test_resnet20_ghost_halves_conv_params"),
    ),
    notes="kernel_size = the primary conv's k (3: the replaced 3x3 conv); ratio = s; dw_size = d; groups must divide "
          "the input and the intrinsic channels. act follows both convs (act='none': linear module).",
)
def ghost(in_channels: int, out_channels: int | None = None, stride: int = 1, groups: int = 1, norm="bn",
          act="relu", kernel_size: int = 3, ratio: int = 2, dw_size: int = 3) -> nn.Module:
    return GhostModule(in_channels, out_channels or in_channels, kernel_size, stride, groups, norm, act, ratio=ratio,
                       dw_size=dw_size)
