"""FFNified attention: MetaMixer's convolutional query-key-value token mixer (FFNet).

Yun, Lee, Ro, "MetaMixer Is All You Need" (arXiv:2406.02021 [S040]; later versions titled "FFNet: MetaMixer-based
Efficient Convolutional Mixer Design"); official code: ysj9909/FFNet ``models/ffnet.py`` (``Token_Mixer``,
``RepVGGDW``, ``Conv2d_BN``).

MetaMixer keeps self-attention's query-key-value *framework* and leaves its sub-operations open. *FFNification*
turns self-attention into an FFN-like operator: the query is a 1x1 projection of the input, the query-key
interaction is a large-kernel depthwise convolution (the keys are the kernel weights), GELU replaces softmax as
the "attention" nonlinearity, and the attention-value interaction is a second large-kernel depthwise convolution
(the values are its weights). ``ffnified`` (NCHW -> NCHW, same C)::

    q = BN(Conv1x1(x))                  # query projection (no bias; official ``fc = Conv2d_BN(dim, dim)``)
    a = GELU(DW_k1(q))                  # query-key interaction -> "attention" (GELU instead of softmax)
    y = DW_k2(a)                        # attention-value interaction

Depthwise convs (official rule, ``rep=None``): a 7x7 kernel is a *re-parameterisable* ``RepVGGDW``: 7x7 dw conv
-> BN plus a parallel 3x3 dw conv -> BN (summed; no bias), which :meth:`FFNifiedAttention.reparameterize` folds
into one 7x7 conv with bias (BN folded, the 3x3 kernel zero-padded into the centre); any other size is a plain
depthwise conv *with bias and no BN* (official ``nn.Conv2d(dim, dim, ks, 1, ks // 2, groups=dim)``). FFNet uses
k1 = k2 = 3 in stages 1-2 and 7 in stages 3-4. ``rep=True`` uses the 3x3 branch for any k > 3, ``rep=False``
never. The block around the mixer (residual, layer scale, drop path, optional SE after the residual; no pre-norm)
is FFNet's, in :mod:`blockzoo.models.ffnet`.

Defaults of the registered mixer (choice): k1 = k2 = 7 (the large-kernel setting of FFNet's stages 3-4, with the
re-param branch). Init: the backbone's (FFNet: trunc-normal 0.02 convs, zero biases, BN 1/0).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.blocks.common.conv_bn import ConvBN
from blockzoo.blocks.common.layers import make_act
from blockzoo.checks import check_int, check_odd
from blockzoo.errors import ConfigError
from blockzoo.papers import FFNET
from blockzoo.registry import Claim, Requires, register_block

_T = "tests/blocks/mixers/test_ffnified.py::"
_T_FFNET = "tests/models/test_ffnet.py::"

__all__ = ["FFNET", "ConvBN", "RepDWConv", "FFNifiedAttention", "dw_conv"]


class RepDWConv(nn.Module):
    """Re-parameterisable large-kernel depthwise conv (official ``RepVGGDW``): ``ConvBN(k x k) + ConvBN(s x s)``,
    both depthwise (``groups = in_channels``; ``out_channels`` a multiple of it), same stride, "same" padding.

    FFNet uses k = 7, s = 3 (``ks // 2``), also with stride 2 and ``out = 2 * in`` in its downsampling layers.
    :meth:`fuse` returns the equivalent single k x k conv with bias (eval mode).
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, kernel_size: int = 7, stride: int = 1,
                 small_kernel: int = 3):
        super().__init__()
        out_channels = out_channels or in_channels
        check_odd(kernel_size, "kernel_size", owner="RepDWConv")
        if check_odd(small_kernel, "small_kernel", owner="RepDWConv") >= kernel_size:
            raise ConfigError(f"RepDWConv needs small_kernel < kernel_size, got {small_kernel} and {kernel_size}")
        if out_channels % check_int(in_channels, "in_channels", min_value=1, owner="RepDWConv") != 0:
            raise ConfigError(f"RepDWConv: out_channels ({out_channels}) must be a multiple of in_channels "
                              f"({in_channels}) (a depthwise conv)")
        self.kernel_size, self.small_kernel = kernel_size, small_kernel
        self.conv = ConvBN(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=in_channels)
        self.conv1 = ConvBN(in_channels, out_channels, small_kernel, stride, small_kernel // 2, groups=in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.conv1(x)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        big, small = self.conv.fuse(), self.conv1.fuse()
        p = (self.kernel_size - self.small_kernel) // 2
        big.weight.add_(F.pad(small.weight, [p, p, p, p]))
        big.bias.add_(small.bias)
        return big


def dw_conv(channels: int, kernel_size: int, rep: bool | None = None) -> nn.Module:
    """FFNet's depthwise conv of the token mixer: :class:`RepDWConv` (k x k BN + 3x3 BN) when ``rep`` (official
    ``rep=None``: iff k == 7), else a plain depthwise conv with bias and no norm."""
    check_int(channels, "channels", min_value=1, owner="ffnified")
    check_odd(kernel_size, "kernel_size", owner="ffnified")
    use_rep = (kernel_size == 7) if rep is None else (rep and kernel_size > 3)
    if use_rep:
        return RepDWConv(channels, channels, kernel_size)
    return nn.Conv2d(channels, channels, kernel_size, 1, kernel_size // 2, groups=channels, bias=True)


class FFNifiedAttention(nn.Module):
    """FFNified attention: ``DW_k2(GELU(DW_k1(BN(Conv1x1(x)))))`` (query projection -> query-key large-kernel dw conv
    -> GELU -> attention-value large-kernel dw conv).

    Args:
        channels: C.
        kernel_size: k1, the query-key depthwise kernel (registered default 7).
        kernel_size_v: k2, the attention-value depthwise kernel (default: ``kernel_size``).
        act: the nonlinearity replacing softmax (``gelu``; the official ``use_gelu=False`` gives ``relu``).
        rep: re-parameterisable 3x3 branches (``None``: official rule, only for 7x7 kernels).
    """

    def __init__(self, channels: int, kernel_size: int = 7, kernel_size_v: int | None = None, act: Any = "gelu",
                 rep: bool | None = None):
        super().__init__()
        k2 = kernel_size if kernel_size_v is None else kernel_size_v
        self.kernel_sizes = (kernel_size, k2)
        self.q = ConvBN(channels, channels, 1)
        self.qk = dw_conv(channels, kernel_size, rep)
        self.act = make_act(act)
        self.av = dw_conv(channels, k2, rep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.av(self.act(self.qk(self.q(x))))

    @torch.no_grad()
    def reparameterize(self) -> FFNifiedAttention:
        """Fold every BN and re-param branch into plain convs (deploy form; call in eval mode). Returns ``self``."""
        if isinstance(self.q, ConvBN):  # idempotent: already-fused parts are plain convs
            self.q = self.q.fuse()
        for name in ("qk", "av"):
            mod = getattr(self, name)
            if isinstance(mod, RepDWConv):
                setattr(self, name, mod.fuse())
        return self


@register_block(
    "ffnified", slot="mixer", paper=FFNET, family="ffnet",
    summary="FFNified attention: 1x1 query (BN) -> large-kernel dw conv (query-key) -> GELU -> large-kernel dw conv "
            "(attention-value)",
    requires=Requires(),
    claims=(
        Claim("query-key and attention-value interactions are depthwise convs, GELU instead of softmax; output = "
              "DW2(GELU(DW1(BN(W_q x)))) (hand-computed tiny case)", _T + "test_ffnified_hand_computed"),
        Claim("the 7x7 + 3x3 re-param branches fold into one 7x7 conv (deploy form equals training form in eval)",
              _T + "test_ffnified_reparameterize"),
        Claim("FFNet-1/2/3: 13.7M / 26.9M / 48.3M params and 2.9G / 6.0G / 10.1G FLOPs at 256 px",
              _T_FFNET + "test_ffnet_param_counts"),
    ),
    notes="kernel_size: the query-key dw kernel; kernel_size_v (default: kernel_size): the attention-value dw kernel "
          "(both odd); rep=None: official rule, 7x7 kernels get a parallel 3x3 BN branch.",
)
def ffnified(channels: int, kernel_size: int = 7, kernel_size_v: int | None = None, act: Any = "gelu",
             rep: bool | None = None) -> nn.Module:
    return FFNifiedAttention(channels, kernel_size, kernel_size_v, act, rep)
