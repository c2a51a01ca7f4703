"""UniRepLKNet's Dilated Reparam Block: a large depthwise kernel trained with parallel dilated small kernels.

Ding et al., "UniRepLKNet: A Universal Perception Large-Kernel ConvNet for Audio, Video, Point Cloud, Time-Series and
Image Recognition", CVPR 2024, arXiv:2311.15599 [S084] (journal extension "Scaling Up Your Kernels" [S016]); official
code: AILab-CVC/UniRepLKNet ``unireplknet.py`` (``DilatedReparamBlock``, ``merge_dilated_into_large_kernel``).

Training structure (NCHW -> NCHW, same C)::

    y = BN_0(DW_KxK(x)) + sum_i BN_i(DW_{k_i x k_i, dilation r_i}(x))

All convs are depthwise, bias-free, stride 1, "same" padding (``K // 2``, ``r_i (k_i - 1) / 2``); every branch has its
own BatchNorm; the branches are summed (no activation). Official kernel/dilation tables (``kernel_size`` -> ``k_i`` /
``r_i``; "we did not tune them carefully"):

=== ================= =================
K   k_i               r_i
=== ================= =================
17  5, 9, 3, 3, 3     1, 2, 4, 5, 7
15  5, 7, 3, 3, 3     1, 2, 3, 5, 7
13  5, 7, 3, 3, 3     1, 2, 3, 4, 5
11  5, 5, 3, 3, 3     1, 2, 3, 4, 5
9   5, 5, 3, 3        1, 2, 3, 4
7   5, 3, 3           1, 2, 3
5   3, 3              1, 2
3   (none)            plain 3x3 depthwise conv + BN (blockzoo extension; the official block raises below 5)
=== ================= =================

Custom tables: ``kernel_sizes=`` and ``dilations=`` (every ``r (k - 1) + 1 <= K``).

Re-parameterisation (:meth:`DilatedReparamBlock.reparameterize`, also run by
:func:`blockzoo.deploy.reparam.reparameterize`): each BN is folded into its conv; a dilated ``k x k`` kernel with
rate ``r`` equals a dense ``(r (k - 1) + 1)``-sized kernel with ``r - 1`` zeros inserted between taps
(:func:`dilated_to_dense`; the official code builds it with ``conv_transpose2d`` of the kernel with a 1x1 identity
kernel at stride ``r``, which is the same zero insertion); it is zero-padded to ``K x K`` around the centre and
added to the large kernel, and the folded biases are summed. The block then holds ONE ``K x K`` depthwise conv
with bias (``lk_origin``) and runs only that conv. Eval outputs before/after agree to float32 rounding.

In a UniRepLKNet block the mixer is followed by the block's own BatchNorm, which the block folds into the merged
conv too (see ``blockzoo.models.unireplknet``). Parameter names follow the official code (``lk_origin``,
``origin_bn``, ``dil_conv_k{k}_{r}``, ``dil_bn_k{k}_{r}``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import papers
from blockzoo.checks import check_int, check_positive
from blockzoo.deploy.reparam import bn_scale_shift
from blockzoo.errors import ConfigError
from blockzoo.registry import Claim, register_block

__all__ = ["KERNEL_TABLE", "DilatedReparamBlock", "dilated_to_dense", "merge_dilated_into_large_kernel"]

_T = "tests/blocks/mixers/test_dilated_reparam.py::"

# kernel_size -> (branch kernel sizes, branch dilations); official DilatedReparamBlock defaults (3: no branches)
KERNEL_TABLE: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    17: ((5, 9, 3, 3, 3), (1, 2, 4, 5, 7)),
    15: ((5, 7, 3, 3, 3), (1, 2, 3, 5, 7)),
    13: ((5, 7, 3, 3, 3), (1, 2, 3, 4, 5)),
    11: ((5, 5, 3, 3, 3), (1, 2, 3, 4, 5)),
    9: ((5, 5, 3, 3), (1, 2, 3, 4)),
    7: ((5, 3, 3), (1, 2, 3)),
    5: ((3, 3), (1, 2)),
    3: ((), ()),
}


def dilated_to_dense(kernel: torch.Tensor, dilation: int) -> torch.Tensor:
    """The dense kernel equal to ``kernel`` (``(..., k, k)``) applied with ``dilation`` r: size ``r (k - 1) + 1``,
    taps at multiples of ``r``, zeros between them."""
    if dilation < 1:
        raise ConfigError(f"dilation must be >= 1, got {dilation}")
    if dilation == 1:
        return kernel
    kh, kw = kernel.shape[-2:]
    dense = kernel.new_zeros(*kernel.shape[:-2], dilation * (kh - 1) + 1, dilation * (kw - 1) + 1)
    dense[..., ::dilation, ::dilation] = kernel
    return dense


def merge_dilated_into_large_kernel(large: torch.Tensor, small: torch.Tensor, dilation: int) -> torch.Tensor:
    """``large + pad(dense(small, dilation))``, the dense kernel centred in the large one (odd sizes)."""
    dense = dilated_to_dense(small, dilation)
    big, eq = large.shape[-1], dense.shape[-1]
    if eq > big or (big - eq) % 2:
        raise ConfigError(f"a {small.shape[-1]}x{small.shape[-1]} kernel at dilation {dilation} spans {eq}x{eq}, "
                         f"which does not fit centred in the {big}x{big} kernel")
    p = (big - eq) // 2
    return large + F.pad(dense, [p, p, p, p])


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 ``(weight, bias)`` of ``bn(conv(x))`` (eval mode)."""
    scale, shift = bn_scale_shift(bn)
    w = conv.weight.detach().double() * scale.view(-1, 1, 1, 1)
    b = shift if conv.bias is None else conv.bias.detach().double() * scale + shift
    return w, b


class DilatedReparamBlock(nn.Module):
    """Large depthwise conv + BN plus parallel dilated small depthwise conv + BN branches, summed.

    ``reparameterize()`` merges everything into one ``kernel_size`` depthwise conv with bias (``lk_origin``); the
    block then runs only that conv (``deployed`` is True).
    """

    def __init__(self, channels: int, kernel_size: int = 13, kernel_sizes: Sequence[int] | None = None,
                 dilations: Sequence[int] | None = None, bn_eps: float = 1e-5):
        super().__init__()
        check_int(channels, "channels", min_value=1, owner="dilated_reparam")
        check_positive(bn_eps, "bn_eps", owner="dilated_reparam")
        if check_int(kernel_size, "kernel_size", owner="dilated_reparam") < 3 or kernel_size % 2 != 1:
            raise ConfigError(f"dilated_reparam needs an odd kernel_size >= 3, got {kernel_size}")
        if (kernel_sizes is None) != (dilations is None):
            raise ConfigError("pass both kernel_sizes= and dilations= (a custom branch table) or neither")
        if kernel_sizes is None:
            if kernel_size not in KERNEL_TABLE:
                raise ConfigError(f"no default branch table for kernel_size={kernel_size}; the official tables cover "
                                 f"{sorted(KERNEL_TABLE)}. Pass kernel_sizes=(...) and dilations=(...) for others.")
            kernel_sizes, dilations = KERNEL_TABLE[kernel_size]
        kernel_sizes = tuple(check_int(k, "kernel_sizes[i]", owner="dilated_reparam") for k in kernel_sizes)
        dilations = tuple(check_int(r, "dilations[i]", owner="dilated_reparam") for r in dilations)
        if len(kernel_sizes) != len(dilations):
            raise ConfigError(f"kernel_sizes {kernel_sizes} and dilations {dilations} differ in length")
        for k, r in zip(kernel_sizes, dilations):
            if k < 1 or k % 2 != 1 or r < 1 or r * (k - 1) + 1 > kernel_size:
                raise ConfigError(f"branch k={k}, dilation={r}: needs an odd k, r >= 1 and r (k - 1) + 1 <= "
                                 f"kernel_size={kernel_size}")
        if len(set(zip(kernel_sizes, dilations))) != len(kernel_sizes):
            raise ConfigError(f"duplicate (kernel, dilation) branches in {list(zip(kernel_sizes, dilations))}")
        self.channels, self.kernel_size = channels, kernel_size
        self.kernel_sizes, self.dilates = kernel_sizes, dilations
        self.deployed = False
        self.lk_origin = nn.Conv2d(channels, channels, kernel_size, 1, kernel_size // 2, groups=channels, bias=False)
        self.origin_bn = nn.BatchNorm2d(channels, eps=bn_eps)
        for k, r in self.branches:
            setattr(self, f"dil_conv_k{k}_{r}", nn.Conv2d(channels, channels, k, 1, r * (k - 1) // 2, dilation=r,
                                                          groups=channels, bias=False))
            setattr(self, f"dil_bn_k{k}_{r}", nn.BatchNorm2d(channels, eps=bn_eps))

    @property
    def branches(self) -> list[tuple[int, int]]:
        """``(kernel, dilation)`` of the parallel branches (empty once deployed)."""
        return [] if self.deployed else list(zip(self.kernel_sizes, self.dilates))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deployed:
            return self.lk_origin(x)
        out = self.origin_bn(self.lk_origin(x))
        for k, r in self.branches:
            out = out + getattr(self, f"dil_bn_k{k}_{r}")(getattr(self, f"dil_conv_k{k}_{r}")(x))
        return out

    def equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight (C, 1, K, K), bias (C,))`` of the single conv equal to this block in eval mode (float64)."""
        if self.deployed:
            w, b = self.lk_origin.weight.detach().double(), self.lk_origin.bias
            return w, (b.detach().double() if b is not None else w.new_zeros(self.channels))
        w, b = _fold(self.lk_origin, self.origin_bn)
        for k, r in self.branches:
            wb, bb = _fold(getattr(self, f"dil_conv_k{k}_{r}"), getattr(self, f"dil_bn_k{k}_{r}"))
            w, b = merge_dilated_into_large_kernel(w, wb, r), b + bb
        return w, b

    def reparameterize(self) -> None:
        """Merge all branches and BNs into ``lk_origin`` (K x K depthwise conv with bias); idempotent."""
        if self.deployed:
            return
        w, b = self.equivalent_kernel_bias()
        ref = self.lk_origin.weight
        conv = nn.Conv2d(self.channels, self.channels, self.kernel_size, 1, self.kernel_size // 2,
                         groups=self.channels, bias=True, device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            conv.weight.copy_(w.to(ref.dtype))
            conv.bias.copy_(b.to(ref.dtype))
        conv.train(self.training)
        for k, r in self.branches:
            delattr(self, f"dil_conv_k{k}_{r}")
            delattr(self, f"dil_bn_k{k}_{r}")
        del self.origin_bn
        self.lk_origin = conv
        self.deployed = True

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, kernel_size={self.kernel_size}, kernel_sizes={self.kernel_sizes}, "
                f"dilations={self.dilates}, deployed={self.deployed}")


@register_block(
    "dilated_reparam", slot="mixer", paper=papers.UNIREPLKNET, family="unireplknet",
    summary="UniRepLKNet Dilated Reparam Block: KxK depthwise conv + BN plus dilated small dw conv + BN branches, "
            "mergeable into one KxK conv",
    claims=(
        Claim("after reparameterize() the block is ONE KxK depthwise conv with bias and gives the same eval output "
              "(max abs diff < 1e-5 in float32, random BN statistics, non-square input, K = 3..17)",
              _T + "test_drb_reparam_equivalence"),
        Claim("branch tables of the official code: 13 -> k (5,7,3,3,3) r (1,2,3,4,5), 17 -> k (5,9,3,3,3) "
              "r (1,2,4,5,7), ...; parameters (K^2 + sum k_i^2) C + 2 C (1 + #branches)",
              _T + "test_drb_tables_and_params"),
        Claim("a k x k kernel at dilation r equals the dense r(k-1)+1 kernel with zeros inserted (the official "
              "conv_transpose2d construction)", _T + "test_dilated_to_dense"),
    ),
    notes="Default branch tables for kernel_size 3, 5, 7, 9, 11, 13, 15, 17; kernel_sizes + dilations give a custom "
          "table. Call reparameterize() (or blockzoo.deploy.reparameterize(model)) after training for the "
          "single-conv deploy form.",
)
def dilated_reparam(channels: int, kernel_size: int = 13, kernel_sizes: Sequence[int] | None = None,
                    dilations: Sequence[int] | None = None, bn_eps: float = 1e-5) -> nn.Module:
    return DilatedReparamBlock(channels, kernel_size, kernel_sizes, dilations, bn_eps)
