"""The attention module of Residual Attention Networks (Wang et al., "Residual Attention Network for Image
Classification", CVPR 2017, arXiv:1704.06904; inventory S105), following the authors' Caffe prototxts
(fwang91/residual-attention-network, ``imagenet_model/Attention-56-deploy.prototxt``) where the paper leaves details
open. The networks built from it are :mod:`blockzoo.models.resattnet`.

Attention module (hyper-parameters p, t, r; the paper uses p = 1, t = 2, r = 1)::

    x  = p pre-processing residual units (input)
    T  = t trunk residual units (x)
    M  = soft-mask branch (x)                    in (0, 1), same shape as T
    H  = p post-processing residual units ((1 + M) * T)     # attention residual learning

Residual units are pre-activation bottlenecks (He et al., "Identity Mappings in Deep Residual Networks"): ``x + conv1x1
(act(norm(conv3x3(act(norm(conv1x1(act(norm(x)))))))))`` with bottleneck width C_out / 4; when the width or stride
changes the shortcut is a 1x1 conv (stride s) of the *pre-activated* input, as in the prototxt.

Soft-mask branch with ``downsamples = n`` (bottom-up top-down, an hourglass):
bottom-up: n times [3x3/2 max-pool -> r units], keeping the output d_i of each level; the lowest level gets r more
units (2r in all, as in the prototxt); top-down: for the levels i = n-1 .. 1, bilinearly interpolate to the *exact* size
of d_i, add a skip-connection residual unit applied to d_i, then r units; finally interpolate to the trunk's size and
apply ``norm-act-conv1x1-norm-act-conv1x1-sigmoid``. So a module with n down-samplings has n - 1 skip connections
(the prototxt: stage 1 pools 3 times (56 -> 28 -> 14 -> 7) with skips at 28 and 14; stage 2 pools twice with a skip
at 14; stage 3 pools once, no skip). Details from the prototxt: max-pool 3x3 stride 2 (we pad 1, which gives the same
56/28/14/7 sizes as Caffe's ceil-mode pooling and works on any size); interpolation with Caffe's ``Interp`` layer,
i.e. ``align_corners=True`` (option ``align_corners``); both mask 1x1 convs have no bias (option ``mask_bias``).
Interpolating to the exact skip/trunk size makes the module work on any input size, odd and non-square included.

The module is also registered as a block, ``resattn`` (``attn`` slot): by default with p = t = 0, i.e. the soft-mask
branch applied as attention residual learning to the host's features, ``(1 + M(x)) * x`` (the host's residual branch
plays the trunk); ``p=1, t=2`` gives the paper's full module.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import papers
from blockzoo.blocks.common.drop import make_drop_path
from blockzoo.blocks.common.layers import make_act, make_norm
from blockzoo.checks import check_choice, check_int
from blockzoo.errors import ConfigError
from blockzoo.registry import Claim, Requires, SlotContext, build_slot, register_block

__all__ = ["PreActBottleneck", "SoftMaskBranch", "ResidualAttentionModule", "GATES", "CtxFn"]

GATES = {"sigmoid": torch.sigmoid, "tanh": torch.tanh}
CtxFn = Callable[[str], SlotContext]


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck residual unit; ``attn`` acts on the branch before the addition, then ``drop_path``
    (stochastic depth on the branch)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, norm="bn", act="relu", attn="none",
                 ctx: SlotContext | None = None, drop_path: float = 0.0):
        super().__init__()
        mid = out_channels // 4
        if mid < 1:
            raise ConfigError(f"a bottleneck unit needs at least 4 output channels (width C/4), got {out_channels}")
        self.norm1, self.act1 = make_norm(norm, in_channels), make_act(act)
        self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.norm2, self.act2 = make_norm(norm, mid), make_act(act)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False)
        self.norm3, self.act3 = make_norm(norm, mid), make_act(act)
        self.conv3 = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.attn = build_slot("attn", attn, out_channels, ctx)
        self.shortcut = (nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
                         if stride != 1 or in_channels != out_channels else None)
        self.drop_path = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act1(self.norm1(x))
        out = self.conv1(pre)
        out = self.conv2(self.act2(self.norm2(out)))
        out = self.conv3(self.act3(self.norm3(out)))
        return (x if self.shortcut is None else self.shortcut(pre)) + self.drop_path(self.attn(out))


def _units(n: int, channels: int, norm, act, attn="none", ctx_fn: CtxFn | None = None, name: str = "") -> nn.Module:
    return nn.Sequential(*[PreActBottleneck(channels, channels, norm=norm, act=act, attn=attn,
                                            ctx=ctx_fn(f"{name}.{i}.attn") if ctx_fn else None) for i in range(n)])


class SoftMaskBranch(nn.Module):
    """Bottom-up top-down soft mask: ``downsamples`` max-pool levels, ``downsamples - 1`` skip connections, bilinear
    interpolation to the exact size of each skip (and finally of the input), two 1x1 convs and a sigmoid."""

    def __init__(self, channels: int, downsamples: int = 1, r: int = 1, *, norm="bn", act="relu", bias: bool = False,
                 align_corners: bool = True, gate: str = "sigmoid"):
        super().__init__()
        check_choice(gate, "gate", GATES, owner="resattn")
        check_int(downsamples, "downsamples", min_value=1, owner="resattn")
        check_int(r, "r", min_value=1, owner="resattn")
        self.downsamples, self.align_corners, self.gate = downsamples, align_corners, gate
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.down = nn.ModuleList([_units(r, channels, norm, act) for _ in range(downsamples)])
        self.skips = nn.ModuleList([_units(1, channels, norm, act) for _ in range(downsamples - 1)])
        self.up = nn.ModuleList([_units(r, channels, norm, act) for _ in range(downsamples)])  # up[-1]: lowest level
        self.out = nn.Sequential(
            make_norm(norm, channels), make_act(act), nn.Conv2d(channels, channels, 1, bias=False),
            make_norm(norm, channels), make_act(act), nn.Conv2d(channels, channels, 1, bias=bias))

    @property
    def last_conv(self) -> nn.Conv2d:
        return self.out[-1]

    def _resize(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``x`` bilinearly resized to ``like``'s size: the identity where the sizes already agree, so no branch on
        the shapes is needed (the module traces and exports with dynamic sizes)."""
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=self.align_corners)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats, y = [], x
        for down in self.down:                       # bottom-up
            y = down(self.pool(y))
            feats.append(y)
        y = self.up[-1](y)                           # the r extra units at the lowest resolution
        for i in range(self.downsamples - 2, -1, -1):  # top-down with skip connections
            y = self.up[i](self._resize(y, feats[i]) + self.skips[i](feats[i]))
        return GATES[self.gate](self.out(self._resize(y, x)))


class ResidualAttentionModule(nn.Module):
    """Attention module: ``post((1 + M(x')) * trunk(x'))`` with ``x' = pre(x)`` (attention residual learning).

    ``p`` pre-/post-processing units, ``t`` trunk units, ``r`` units between poolings, ``downsamples`` pooling levels
    of the mask. ``p = t = 0`` gives the plain plug-in form ``(1 + M(x)) * x``. ``zero_init_mask`` zeroes the mask's
    last conv so that the module starts as ``1.5 * T(x)`` (M = sigmoid(0) = 0.5 everywhere).
    """

    def __init__(self, channels: int, downsamples: int = 1, *, p: int = 1, t: int = 2, r: int = 1, norm="bn",
                 act="relu", attn="none", mask_bias: bool = False, zero_init_mask: bool = False,
                 align_corners: bool = True, gate: str = "sigmoid", ctx_fn: CtxFn | None = None):
        super().__init__()
        check_int(p, "p", min_value=0, owner="resattn")
        check_int(t, "t", min_value=0, owner="resattn")
        self.zero_init_mask = zero_init_mask
        self.pre = _units(p, channels, norm, act, attn, ctx_fn, "pre")
        self.trunk = _units(t, channels, norm, act, attn, ctx_fn, "trunk")
        self.mask = SoftMaskBranch(channels, downsamples, r, norm=norm, act=act, bias=mask_bias,
                                   align_corners=align_corners, gate=gate)
        self.post = _units(p, channels, norm, act, attn, ctx_fn, "post")
        if zero_init_mask:
            self.init_weights()

    def init_weights(self) -> None:
        if self.zero_init_mask:
            nn.init.zeros_(self.mask.last_conv.weight)
            if self.mask.last_conv.bias is not None:
                nn.init.zeros_(self.mask.last_conv.bias)

    def soft_mask(self, x: torch.Tensor) -> torch.Tensor:
        """The mask M (values in (0, 1), the trunk's shape) for the module input ``x``."""
        return self.mask(self.pre(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        trunk = self.trunk(x)
        return self.post((1 + self.mask(x)) * trunk)


@register_block(
    "resattn", slot="attn", paper=papers.RESATTNET, family="resattnet",
    summary="Residual attention: hourglass soft mask M (max-pool down, bilinear up, skips, sigmoid), (1 + M(x)) * x",
    requires=Requires(min_channels=4),
    claims=(Claim("attention residual learning: with the mask's last conv zeroed, M = 0.5 and H = 1.5 * T(x)",
                  "tests/blocks/attention/test_residual_attention.py::test_zero_mask_gives_one_and_a_half_trunk"),
            Claim("soft mask values lie in (0, 1) and have the trunk's shape, on odd and non-square inputs too",
                  "tests/blocks/attention/test_residual_attention.py::test_mask_range_and_odd_sizes")),
    notes="downsamples: max-pool levels of the mask (skips at all but the lowest); p=1, t=2 (pre/post and trunk "
          "units) is the paper's full module; gate='tanh' is the official Attention-92 prototxt's; mask_bias=False and "
          "align_corners=True (Caffe Interp) follow the prototxts. Needs C >= 4 (bottleneck width C/4).",
)
def resattn(channels: int, downsamples: int = 2, p: int = 0, t: int = 0, r: int = 1, norm="bn", act="relu",
            gate: str = "sigmoid", mask_bias: bool = False, zero_init_mask: bool = False,
            align_corners: bool = True) -> nn.Module:
    return ResidualAttentionModule(channels, downsamples, p=p, t=t, r=r, norm=norm, act=act, gate=gate,
                                   mask_bias=mask_bias, zero_init_mask=zero_init_mask, align_corners=align_corners)
