"""SpaRTAN's spatial mixer (SMixer) and wave-based channel aggregation (CMixer).

Pay, Baskaran, Loo, Wong & See, "SpaRTAN: Spatial Reinforcement Token-based Aggregation Network for Visual
Recognition", IJCNN 2025, arXiv:2507.10999 [S024]; official code henry-pay/SpaRTAN ``src/model/spartan.py``
(``SMixer``, ``CMixer``, ``SELayer``, ``Block``), the oracle for every detail below.

``spartan`` -- :class:`SMixer`, the multi-order spatial mixer (``mixer`` slot; NCHW -> NCHW, same C)::

    x = proj_in(x)                                  # 1x1 conv C -> C/2 (bias)
    x = x + gamma * (x - GAP(x))                    # gamma: (1, C/2, 1, 1), init 1e-5
    h = SE(act(BN(conv3x3(x))))                     # "high" branch: 3x3, dilation 1, receptive field 3
    l = SE(act(BN(conv3x3_d2(conv3x3_d2(x)))))      # "low" branch: two dilation-2 3x3 convs (the first has no
                                                    # norm/act), receptive field 9
    y = proj_out(cat([h, l]))                       # 1x1 conv C -> C (bias)

The 3x3 convs have no bias; BN has eps 1e-6; SE = GAP -> FC(C/2, C/8) -> ReLU -> FC(C/8, C/2) -> sigmoid (biased; the
official 1x1 convs on the pooled vector are Linear layers here, same parameters). ``grouped=True`` is the official
setting of the later half of the network: the three 3x3 convs use ``groups = C/2``, i.e. they are depthwise over the
C/2 channels of the branch; ``grouped=False`` (first half; the default here) uses dense 3x3 convs.

``spartan_cmixer`` -- :class:`CMixer`, the wave-based channel aggregation (the block's channel mixer; it also fits the
``mixer`` contract, so it is registered in that slot too)::

    theta = act(conv1x1(x))           # C -> rC (bias)
    w     = conv1x1(x)                # C -> rC (bias)
    k     = argmax_c x[:, c]          # per pixel, over the C *input* channels (index into the first C of rC)
    feat  = w * theta + w[:, k] * theta[:, k]
    feat  = wave(feat)                # channel pairs (2i, 2i+1) as complex numbers times one learnable complex
                                      # weight per pair (randn init), computed in float32 with autocast disabled
    y = proj_out(SE(act(BN(conv3x3(feat)))))   # 3x3 groups: rC (depthwise; grouped=False) or C (grouped=True);
                                               # SE hidden C/4; proj_out rC -> C (bias)

The "wave" step is a per-pair complex multiplication, ``(a + ib)(p + iq) = (ap - bq) + i(aq + bp)`` -- a learnable
2-D rotation-and-scale of every channel pair, with no FFT. The official code casts to float32 inside
``torch.amp.autocast("cuda", enabled=False)``; here autocast is disabled for the input's device type (so CPU bf16
autocast also runs it in float32) and the result is cast back to the input dtype (under autocast the next conv
casts to bf16 anyway, so this is numerically the same; it also lets a model converted with ``.bfloat16()`` run,
where the official module would feed float32 into a bf16 conv).

Init (official ``SpaRTAN._init_weights``, applied by each module's ``init_weights()`` so it survives any backbone's
generic init): conv (and SE) weights ``normal(0, sqrt(2 / fan_out))`` with ``fan_out = k*k*out_channels / groups``,
zero biases, BN 1/0, ``gamma = 1e-5``, complex weights ``randn``.

Limits: the SMixer needs an even C >= 8 (C/2 channels per branch, SE hidden C/8; the official code asserts
``C % 8 == 0``); the CMixer needs C >= 4 (SE hidden C/4) and an even rC (channel pairs). Both keep the spatial size.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from blockzoo.blocks.attention.se import SqueezeExcite
from blockzoo.blocks.common.layers import ConvNormAct, make_act
from blockzoo.blocks.common.spectral import autocast_off
from blockzoo.checks import check_input, check_int
from blockzoo.errors import ConfigError
from blockzoo.papers import SPARTAN
from blockzoo.registry import Claim, IncompatibleBlockError, Requires, register_block

BN_EPS = 1e-6            # official ``conv_norm = partial(nn.BatchNorm2d, eps=1e-6)``
CONV_NORM = f"bn(eps={BN_EPS})"
_T = "tests/blocks/mixers/test_spartan.py::"
_T_SPARTAN = "tests/models/test_spartan.py::"

__all__ = ["SPARTAN", "BN_EPS", "SMixer", "CMixer", "PairComplexMul", "official_init", "spartan", "spartan_cmixer"]

ActArg = str | Callable[..., nn.Module]


def official_init(module: nn.Module) -> None:
    """The official ``_init_weights`` on every submodule of ``module``: conv weights ``N(0, 2 / fan_out)`` with
    ``fan_out = k_h * k_w * out_channels / groups`` (1x1 convs on a pooled vector, i.e. the SE Linear layers, use
    ``fan_out = out_features``), zero biases, BatchNorm weight 1 / bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / m.out_features))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) and m.bias is not None:
            nn.init.zeros_(m.bias)


def _conv(cin: int, cout: int, groups: int, act: ActArg, dilation: int = 1, norm: bool = True) -> ConvNormAct:
    """Official ``ConvNormAct``: 3x3 conv (no bias, "same" padding) -> [BN eps 1e-6] -> [act]."""
    return ConvNormAct(cin, cout, 3, 1, groups=groups, dilation=dilation, norm=CONV_NORM if norm else None,
                       act=act if norm else None, bias=False)


# ----------------------------------------------------------------------------------------------------- SMixer
class SMixer(nn.Module):
    """SpaRTAN's multi-order spatial mixer (see the module docstring)."""

    def __init__(self, channels: int, grouped: bool = False, act: ActArg = "gelu", gamma_init: float = 1e-5):
        super().__init__()
        if check_int(channels, "channels", min_value=1, owner="spartan") % 2 or channels < 8:
            raise IncompatibleBlockError(
                f"spartan (SMixer) needs an even channel count >= 8 (two branches of C/2 channels with an SE of "
                f"C/8 hidden units; the official code asserts C % 8 == 0), got C={channels}. Use a width that is a "
                f"multiple of 8.")
        half = channels // 2
        g = half if grouped else 1
        self.grouped, self.gamma_init = grouped, float(gamma_init)
        self.proj_in = nn.Conv2d(channels, half, 1)
        self.gamma = nn.Parameter(torch.full((1, half, 1, 1), self.gamma_init))
        self.h_conv = _conv(half, half, g, act)
        self.l_conv = nn.Sequential(_conv(half, half, g, act, dilation=2, norm=False),
                                    _conv(half, half, g, act, dilation=2))
        self.h_attn = SqueezeExcite(half, hidden=half // 4)
        self.l_attn = SqueezeExcite(half, hidden=half // 4)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj_in(x)
        x = x + self.gamma * (x - x.mean((2, 3), keepdim=True))
        return self.proj_out(torch.cat([self.h_attn(self.h_conv(x)), self.l_attn(self.l_conv(x))], dim=1))

    def init_weights(self) -> None:
        official_init(self)
        nn.init.constant_(self.gamma, self.gamma_init)

    def extra_repr(self) -> str:
        return f"grouped={self.grouped}"


# ----------------------------------------------------------------------------------------------------- CMixer
class PairComplexMul(nn.Module):
    """Multiply channel pairs ``(2i, 2i+1)`` of an NCHW tensor, read as complex numbers ``x[2i] + i x[2i+1]``, by one
    learnable complex weight per pair (``weight[i] = (re, im)``, init ``randn``). Always computed in float32 with
    autocast disabled (``torch.view_as_complex``); the result is returned in the input's dtype. While exporting to
    ONNX (no complex type) the same product runs in real arithmetic, ``(a + ib)(c + id) = (ac - bd) + i(ad + bc)``
    (:meth:`real_product`, equal to float32 rounding; the complex form is faster in eager)."""

    def __init__(self, pairs: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(pairs, 2))

    def real_product(self, x: torch.Tensor) -> torch.Tensor:
        """The pair product of a float32 NCHW ``x`` in real arithmetic."""
        z = x.unflatten(1, (-1, 2))                                 # (N, C/2, 2, H, W): pairs (a, b)
        w = self.weight.float()
        c = w[:, :1, None, None]                                    # (C/2, 1, 1, 1)
        d = (w[:, 1:] * w.new_tensor([-1.0, 1.0]))[:, :, None, None]   # (C/2, 2, 1, 1): (-d, d)
        return (z * c + z.flip(2) * d).flatten(1, 2)                # (ac - bd, bc + ad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, "PairComplexMul", channels=2 * self.weight.shape[0])
        n, c, h, w = x.shape
        with autocast_off(x):
            if torch.onnx.is_in_onnx_export():
                y = self.real_product(x.float())
            else:
                z = x.float().reshape(n, c // 2, 2, h, w).movedim(2, -1).contiguous()
                z = torch.view_as_complex(z) * torch.view_as_complex(self.weight.float())[:, None, None]
                y = torch.view_as_real(z).movedim(-1, 2).reshape(n, c, h, w)
        return y.to(x.dtype)

    def init_weights(self) -> None:
        with torch.no_grad():
            self.weight.normal_()

    def extra_repr(self) -> str:
        return f"pairs={self.weight.shape[0]}"


class CMixer(nn.Module):
    """SpaRTAN's wave-based channel aggregation (see the module docstring)."""

    def __init__(self, channels: int, expand_ratio: float = 4, grouped: bool = False, act: ActArg = "gelu"):
        super().__init__()
        check_int(channels, "channels", min_value=1, owner="spartan_cmixer")
        r = float(expand_ratio)
        if r < 1 or r != int(r):
            raise ConfigError(f"spartan_cmixer needs an integer expand_ratio >= 1 (official: 4, 4, 2, 2 per stage), "
                              f"got {expand_ratio}")
        neck = channels * int(r)
        if channels < 4 or neck % 2:
            raise IncompatibleBlockError(
                f"spartan_cmixer needs C >= 4 (SE hidden C/4) and an even C * expand_ratio (complex channel pairs), "
                f"got C={channels}, expand_ratio={expand_ratio}. Use an even width >= 4.")
        self.expand_ratio, self.grouped = int(r), grouped
        self.theta = nn.Conv2d(channels, neck, 1)
        self.theta_act = make_act(act)
        self.proj = nn.Conv2d(channels, neck, 1)
        self.wave = PairComplexMul(neck // 2)
        self.conv = _conv(neck, neck, channels if grouped else neck, act)
        self.attn = SqueezeExcite(neck, hidden=channels // 4)
        self.proj_out = nn.Conv2d(neck, channels, 1)

    def aggregate(self, x: torch.Tensor) -> torch.Tensor:
        """``w * theta + w[argmax] * theta[argmax]`` (the token aggregation before the wave modulation)."""
        idx = x.argmax(dim=1, keepdim=True)
        theta = self.theta_act(self.theta(x))
        weight = self.proj(x)
        return weight * theta + weight.gather(1, idx) * theta.gather(1, idx)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_out(self.attn(self.conv(self.wave(self.aggregate(x)))))

    def init_weights(self) -> None:
        official_init(self)
        self.wave.init_weights()

    def extra_repr(self) -> str:
        return f"expand_ratio={self.expand_ratio}, grouped={self.grouped}"


# ---------------------------------------------------------------------------------------------------- registry
def _init(m: nn.Module) -> nn.Module:
    m.init_weights()  # the official init also for a stand-alone block
    return m


@register_block(
    "spartan", slot="mixer", paper=SPARTAN, family="spartan",
    summary="SpaRTAN SMixer: 1x1 to C/2, x + g(x - GAP x), 3x3 branch | two dilation-2 3x3 branch, each with SE, "
            "concat, 1x1",
    requires=Requires(min_channels=8),
    claims=(Claim("x + gamma * (x - GAP(x)) after the 1x1 input projection, gamma initialised to 1e-5",
                  _T + "test_smixer_gap_step"),
            Claim("two branches of C/2 channels: 3x3 conv-BN-GELU and two dilation-2 3x3 convs (BN-GELU after the "
                  "second), each followed by SE with C/8 hidden units; dense convs, or groups C/2 when grouped",
                  _T + "test_smixer_structure_and_params"),
            Claim("SpaRTAN (official config, built from these mixers) has 3,820,296 parameters (paper: 3.8M)",
                  _T_SPARTAN + "test_param_count_official")),
    notes="grouped=True: groups C/2, the official setting of the second half of the network. Needs an even C >= 8.",
)
def spartan(channels: int, grouped: bool = False, act: Any = "gelu", gamma_init: float = 1e-5) -> nn.Module:
    return _init(SMixer(channels, grouped=grouped, act=act, gamma_init=gamma_init))


@register_block(
    "spartan_cmixer", slot="mixer", paper=SPARTAN, family="spartan",
    summary="SpaRTAN CMixer: argmax-gathered theta/weight aggregation, complex channel-pair modulation (fp32), "
            "3x3 conv, SE, 1x1",
    requires=Requires(min_channels=4),
    claims=(Claim("theta and weight are gathered at the per-pixel argmax channel of the input: "
                  "feat = w * theta + w[argmax] * theta[argmax]", _T + "test_cmixer_argmax_gather"),
            Claim("channel pairs are multiplied by one learnable complex weight each (no FFT), in float32 under "
                  "autocast", _T + "test_complex_pair_multiply"),
            Claim("3x3 conv depthwise (groups rC) in the first half, groups C in the second; SE hidden C/4",
                  _T + "test_cmixer_structure_and_params")),
    notes="expand_ratio: official 4, 4, 2, 2 per stage. Needs C >= 4 and an even C * expand_ratio.",
)
def spartan_cmixer(channels: int, expand_ratio: float = 4, grouped: bool = False, act: Any = "gelu") -> nn.Module:
    return _init(CMixer(channels, expand_ratio=expand_ratio, grouped=grouped, act=act))
