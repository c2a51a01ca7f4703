"""Adaptive Frequency Filtering (AFF) token mixer.

Huang, Zhang, Lan, Zha, Lu, Guo, "Adaptive Frequency Filters As Efficient Global Token Mixers", ICCV 2023,
arXiv:2307.14008 [S055]; official code: microsoft/TokenMixers, ``Adaptive Frequency Filters/affnet/modules/
aff_block.py`` (class ``AFNO2D_channelfirst``, used as ``Block.filter``).

Operation (``aff``, NCHW -> NCHW, same C)
-----------------------------------------
::

    X = rfft2(x, norm="ortho")                                   # (N, C, H, W//2+1), complex
    M = softshrink(L2(act(L1(X))), 0.01)                         # semantic-adaptive frequency mask, from X itself
    y = x + irfft2(X * M, s=(H, W), norm="ortho")                # "+ x": the official filter's inner skip

``L1``/``L2`` are *grouped complex 1x1 convolutions* on the spectrum (block-diagonal linear layers): the C
channels are split into ``num_groups`` = 8 groups (block-diagonal weights, as in AFNO), each a complex matrix
``W = W_r + i W_i`` (stored as real tensors ``w1[0]``, ``w1[1]``; a complex product is four real matmuls) plus a
complex bias. ``act`` is applied to the real and the imaginary part separately. ``softshrink`` (lambda 0.01) zeroes
small mask entries (AFNO's sparsity; official ``sparsity_threshold``). The elementwise product with a mask in the
2-D DFT domain *is* a circular convolution in the spatial domain with the kernel ``irfft2(M)`` as large as the
feature map (convolution theorem): with ``norm="ortho"`` on both transforms,
``irfft2(rfft2(x) * M) = x (*) irfft2(M, norm="backward")`` where ``(*)`` is the 2-D circular convolution
(:func:`frequency_filter`; tested against a direct circular convolution on non-square inputs). Because ``M`` is
computed from ``X``, the kernel is input-dependent: a dynamic depthwise global convolution.

Official details kept (and where we had to choose)
-------------------------------------------------
- FFTs run in float32 with autocast disabled (official ``@autocast(enabled=False)`` + ``x.float()``); the result is
  cast back to the input dtype, so bf16 autocast works. In an ONNX export (no complex type) the same transforms and
  mask run in real arithmetic (:func:`blockzoo.blocks.common.spectral.spectral_filter`).
- Mask weights and biases are initialised ``0.02 * randn`` (official ``scale = 0.02``); :meth:`AFFMixer.init_weights`
  re-applies it after a backbone's generic init.
- ``hidden_ratio`` (official ``hidden_size_factor`` = 1): width of the mask MLP per group.
- Inner skip ``y = x + filter(x)``: the official module returns ``x + bias`` with ``bias = x``; option
  ``skip=False`` gives the bare filter.
- **Mask activation (choice).** The official module takes the network-wide activation (``model.activation.name``;
  its default in that module is ``relu``; MobileViT-family configs set ``swish``, and AFFNet's own configs are not
  in the repository). On its own the block defaults to ``mask_act="relu"`` (the module's own default, and AFNO's
  choice); inside AFFNet the mask takes the model's ``act`` (SiLU by default), as the official code ties both to
  one activation. Any ``act`` slot value is accepted.
- ``num_groups`` must divide C (8 by default): ``Requires(min_channels=8)``; other widths raise
  ``IncompatibleBlockError`` naming the fix (``aff(num_groups=...)``).

MACs (``blockzoo.profile.count_macs``, FFT convention ``blockzoo.profile.counting.FFT_CONVENTION``): ``rfft2``
N*C*H*W*ceil(log2(H*W)), ``irfft2`` N*C*H*W'*ceil(log2(H*W')) with W' = W//2+1, and the mask generator's 8 real
matmuls (two complex layers of four real products each) 8*N*C*(C/G)*r*H*W' (= N*C^2*H*W' at G = 8, r = 1).
Parameters: ``4*C*(C/G)*r + 2*C*r + 2*C`` (r = hidden_ratio); C^2/2 + 4C at the defaults.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.blocks.common.layers import make_act
from blockzoo.blocks.common.spectral import autocast_off, spectral_filter
from blockzoo.checks import check_input, check_int, check_positive
from blockzoo.errors import ConfigError, InputShapeError
from blockzoo.papers import AFFNET
from blockzoo.registry import Claim, IncompatibleBlockError, Requires, register_block

_T = "tests/blocks/mixers/test_aff.py::"
_T_AFFNET = "tests/models/test_affnet.py::"

__all__ = ["AFFNET", "AFFMixer", "frequency_filter", "aff_params"]


def frequency_filter(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``irfft2(rfft2(x, norm="ortho") * mask, s=(H, W), norm="ortho")`` over the last two dims.

    ``mask`` has the half-spectrum shape ``(..., H, W//2+1)`` (broadcast against ``x``'s leading dims). Equals the 2-D
    circular convolution of ``x`` with the spatial kernel ``irfft2(mask, s=(H, W))`` (``norm="backward"``), for any
    complex mask (the imaginary parts that a real signal cannot carry are dropped identically on both sides).
    """
    h, w = x.shape[-2:]
    if mask.shape[-2:] != (h, w // 2 + 1):
        raise InputShapeError(f"mask must have the half-spectrum shape (..., {h}, {w // 2 + 1}) for a {h}x{w} "
                              f"input, got {tuple(mask.shape)}")
    xf = torch.fft.rfft2(x, dim=(-2, -1), norm="ortho")
    return torch.fft.irfft2(xf * mask, s=(h, w), dim=(-2, -1), norm="ortho")


def aff_params(channels: int, num_groups: int = 8, hidden_ratio: float = 1) -> int:
    """Parameter count of :class:`AFFMixer`: ``4*C*(C/G)*r + 2*C*r + 2*C`` (r = hidden_ratio)."""
    cg = channels // num_groups
    hid = int(cg * hidden_ratio)
    return 2 * num_groups * cg * hid * 2 + 2 * num_groups * hid + 2 * num_groups * cg


class AFFMixer(nn.Module):
    """AFF token mixer: FFT -> input-generated (semantic-adaptive) frequency mask -> product -> inverse FFT (+ x).

    Args:
        channels: C (divisible by ``num_groups``).
        num_groups: groups of the block-diagonal complex 1x1 convs that generate the mask (official 8).
        hidden_ratio: hidden width of the mask MLP per group, relative to C / num_groups (official 1).
        sparsity_threshold: softshrink lambda on the mask (official 0.01; 0 disables it).
        mask_act: activation between the two complex layers, applied to real and imaginary parts (default relu).
        skip: add the input (official inner skip ``x + filter(x)``).
        init_scale: std of the normal init of the mask weights and biases (official 0.02).
    """

    def __init__(self, channels: int, num_groups: int = 8, hidden_ratio: float = 1, sparsity_threshold: float = 0.01,
                 mask_act: Any = "relu", skip: bool = True, init_scale: float = 0.02):
        super().__init__()
        check_int(channels, "channels", min_value=1, owner="aff")
        if check_int(num_groups, "num_groups", min_value=1, owner="aff") and channels % num_groups != 0:
            raise IncompatibleBlockError(
                f"aff splits the channels into num_groups={num_groups} groups, but C={channels} is not divisible by "
                f"it; use a width divisible by {num_groups} or pass aff(num_groups=G) with G dividing {channels}")
        cg = channels // num_groups
        hid = int(cg * check_positive(hidden_ratio, "hidden_ratio", owner="aff"))
        if hid < 1:
            raise ConfigError(f"aff: hidden_ratio={hidden_ratio} leaves no hidden units (C/G = {cg}); use "
                              f"hidden_ratio >= {1 / cg:g}")
        check_positive(sparsity_threshold, "sparsity_threshold", allow_zero=True, owner="aff")
        check_positive(init_scale, "init_scale", allow_zero=True, owner="aff")
        self.channels, self.num_groups, self.group_size, self.hidden = channels, num_groups, cg, hid
        self.sparsity_threshold, self.skip, self.init_scale = float(sparsity_threshold), skip, float(init_scale)
        # [0] = real part, [1] = imaginary part of the complex weights / biases
        self.w1 = nn.Parameter(torch.empty(2, num_groups, cg, hid))
        self.b1 = nn.Parameter(torch.empty(2, num_groups, hid))
        self.w2 = nn.Parameter(torch.empty(2, num_groups, hid, cg))
        self.b2 = nn.Parameter(torch.empty(2, num_groups, cg))
        self.act_r = make_act(mask_act)
        self.act_i = make_act(mask_act)
        self.init_weights()

    def init_weights(self) -> None:
        for p in (self.w1, self.b1, self.w2, self.b2):
            nn.init.normal_(p, 0.0, self.init_scale)

    @staticmethod
    def _complex_group_linear(re: torch.Tensor, im: torch.Tensor, w: torch.Tensor, b: torch.Tensor
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(re + i im) @ (w[0] + i w[1]) + (b[0] + i b[1]) per group; re/im: (N, G, Cin, H, W')."""
        w, b = w.float(), b.float()
        out_r = (torch.einsum("bgihw,gio->bgohw", re, w[0]) - torch.einsum("bgihw,gio->bgohw", im, w[1])
                 + b[0][None, :, :, None, None])
        out_i = (torch.einsum("bgihw,gio->bgohw", im, w[0]) + torch.einsum("bgihw,gio->bgohw", re, w[1])
                 + b[1][None, :, :, None, None])
        return out_r, out_i

    def mask_parts(self, re: torch.Tensor, im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Real and imaginary parts of the frequency mask ``M`` generated from the spectrum ``re + i im``
        (N, C, H, W'), in real arithmetic."""
        n, c, h, wf = re.shape
        g, cg = self.num_groups, self.group_size
        r1, i1 = self._complex_group_linear(re.reshape(n, g, cg, h, wf), im.reshape(n, g, cg, h, wf), self.w1, self.b1)
        r1, i1 = self.act_r(r1), self.act_i(i1)
        r2, i2 = self._complex_group_linear(r1, i1, self.w2, self.b2)
        if self.sparsity_threshold > 0:
            r2, i2 = F.softshrink(r2, self.sparsity_threshold), F.softshrink(i2, self.sparsity_threshold)
        return r2.reshape(n, c, h, wf), i2.reshape(n, c, h, wf)

    def mask(self, xf: torch.Tensor) -> torch.Tensor:
        """The frequency mask ``M`` (complex, same shape as ``xf``) generated from the spectrum ``xf`` (N, C, H, W')."""
        return torch.complex(*self.mask_parts(xf.real, xf.imag))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, "aff", channels=self.channels)
        with autocast_off(x):
            y = spectral_filter(x.float(), self.mask_parts).to(x.dtype)   # real arithmetic in ONNX export
        return x + y if self.skip else y

    def spatial_kernel(self, x: torch.Tensor) -> torch.Tensor:
        """The input-dependent global depthwise kernel ``irfft2(M(x))`` (N, C, H, W) that the filter applies to ``x``
        by circular convolution (``norm="backward"`` scaling, see :func:`frequency_filter`)."""
        h, w = x.shape[-2:]
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = torch.fft.rfft2(x.float(), dim=(2, 3), norm="ortho")
            return torch.fft.irfft2(self.mask(xf), s=(h, w), dim=(2, 3))

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, num_groups={self.num_groups}, hidden={self.hidden}, "
                f"sparsity_threshold={self.sparsity_threshold:g}, skip={self.skip}")


@register_block(
    "aff", slot="mixer", paper=AFFNET, family="affnet",
    summary="Adaptive Frequency Filtering: rfft2 -> input-generated grouped complex mask -> product -> irfft2 (+ x)",
    requires=Requires(min_channels=8),
    claims=(
        Claim("elementwise multiplication in the 2-D FFT domain equals a circular global convolution with the kernel "
              "irfft2(mask), as large as the feature map (non-square inputs)",
              _T + "test_fft_product_is_circular_conv"),
        Claim("the AFF mixer is a dynamic depthwise global convolution: x + circular_conv(x, irfft2(M(x))) with a "
              "kernel that depends on the input", _T + "test_aff_is_dynamic_global_conv"),
        Claim("mask generator: two grouped (8 groups) complex 1x1 layers: C^2/2 + 4C parameters",
              _T + "test_aff_params_and_groups"),
        Claim("AFFNet (5.5M params, 1.5G FLOPs at 256 px), AFFNet-T (2.6M, 0.8G), AFFNet-ET (1.4M, 0.4G)",
              _T_AFFNET + "test_affnet_param_counts"),
    ),
    notes="num_groups must divide C; skip=True: x + filter(x); mask_act: any act slot value. FFTs in float32 with "
          "autocast off.",
)
def aff(channels: int, num_groups: int = 8, hidden_ratio: float = 1, sparsity_threshold: float = 0.01,
        mask_act: Any = "relu", skip: bool = True, init_scale: float = 0.02) -> nn.Module:
    return AFFMixer(channels, num_groups, hidden_ratio, sparsity_threshold, mask_act, skip, init_scale)
