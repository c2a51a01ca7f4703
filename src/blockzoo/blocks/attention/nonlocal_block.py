"""Non-local blocks: the embedded-Gaussian non-local block and its softmax-free variant.

**Non-local block** (Wang et al., "Non-local Neural Networks", CVPR 2018, arXiv:1711.07971; a baseline, not in the
inventory), embedded-Gaussian version (paper Fig. 2)::

    theta, phi, g = 1x1 convs C -> C' (C' = C / 2)
    f_ij = exp(theta_i . phi_j) / sum_j exp(theta_i . phi_j)         # softmax over the positions j
    y_i  = sum_j f_ij g_j
    z    = BN(W_z y) + x                                             # W_z: 1x1 conv C' -> C; BN gamma initialised to 0

The residual ``+ x`` is part of the paper's definition of the block (eq. 6), and BN's scale is zero-initialised so
that the whole block starts as an identity mapping when inserted into a pre-trained or freshly initialised net;
``init_weights()`` re-applies that after a backbone's generic init. The paper writes the embeddings as
``W x`` (no bias) and uses no scaling inside the softmax; the official Caffe2 code (facebookresearch/
video-nonlocal-net, ``lib/models/nonlocal_helper.py``) adds biases to the four convs and scales the logits by
``C'^-1/2`` (``USE_SCALE``): both are options (``bias=True``, ``scale=True``). ``subsample=True`` is the paper's
cost-reduction trick: a 2x2 max-pool (stride 2) after ``phi`` and ``g`` (``ceil_mode``, so odd sizes and 1x1 maps
work). The softmax attention runs through ``F.scaled_dot_product_attention``.

**Softmax-free non-local block** (Cho et al., "Rethinking Efficacy of Softmax for Lightweight Non-Local Neural
Networks", ICIP 2022, arXiv:2207.13423; inventory S092). The softmax over the N = H * W positions is replaced by a
scaling factor, which keeps the magnitude information of the keys that softmax washes out, and makes multi-head
attention free. The factor used here is the one in the authors' official code (YooshinCho/pytorch_RethinkingSFM,
``models/nlblock.py``, ``attention`` with ``act='none'``): ``attention = theta^T phi / sqrt(N)``, i.e.::

    y_i = (1 / sqrt(N)) * sum_j (theta_i . phi_j) g_j ;   z = BN(W_z y) + x   (BN gamma and beta initialised to 0)

(the paper's full text was not available to us; the formula is taken from that code, written by the paper's first
author. ``scale="n"`` gives 1/N, the "dot-product" normalisation of Wang et al.; ``scale="sqrt_nd"`` gives
``1/sqrt(N * d)``, the factor of the official code's alternative ``attention_T`` path, d = channels per head.)
As in the official code the four 1x1 convs have no bias. Heads split the inner channels C' = C / reduction into
``heads`` contiguous groups of d = C' / heads (the official ``view(B, heads, d, H, W)``), so the parameters do not
depend on ``heads`` and the MACs do not grow with it. Without softmax the product is associative:
``order="qk"`` materialises the N x N map per head, ``order="kv"`` computes ``(g phi^T) theta`` through a d x d
matrix (linear in N), ``order="auto"`` (default) picks ``kv`` whenever d < N; all orders give the same result up to
rounding. Not implemented from the official code: its optional fixed-size sinusoidal positional encoding
(``pos_enc='add_init'``, tied to one input resolution) and its analysis-only ``normtype`` variants; its default for
multi-head is C / heads channels per head, i.e. ``reduction=1`` here; it initialises the convs with N(0, 0.01).

Memory: both blocks are global (every position attends to every position). The non-local block costs
O(N^2 * C') compute and, on the plain math path, an N x N attention map per image (fused SDPA kernels may avoid
storing it); the softmax-free block with ``order="qk"`` stores ``heads`` N x N maps per image.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import papers
from blockzoo.checks import check_choice, check_int
from blockzoo.errors import ConfigError
from blockzoo.registry import Claim, Requires, register_block

SCALES = ("sqrt_n", "n", "sqrt_nd")
ORDERS = ("auto", "qk", "kv")


def _inner(channels: int, reduction: int, inner_channels: int | None, owner: str) -> int:
    check_int(channels, "channels", min_value=1, owner=owner)
    if inner_channels is not None:
        return check_int(inner_channels, "inner_channels", min_value=1, owner=owner)
    return max(1, channels // check_int(reduction, "reduction", min_value=1, owner=owner))


class NonLocal2d(nn.Module):
    """Embedded-Gaussian non-local block with the residual and a zero-initialised output BN (identity at init)."""

    def __init__(self, channels: int, reduction: int = 2, inner_channels: int | None = None, subsample: bool = False,
                 scale: bool = False, bias: bool = False):
        super().__init__()
        self.inner = _inner(channels, reduction, inner_channels, "nonlocal")
        self.theta = nn.Conv2d(channels, self.inner, 1, bias=bias)
        self.phi = nn.Conv2d(channels, self.inner, 1, bias=bias)
        self.g = nn.Conv2d(channels, self.inner, 1, bias=bias)
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True) if subsample else None
        self.w_z = nn.Conv2d(self.inner, channels, 1, bias=bias)
        self.bn = nn.BatchNorm2d(channels)
        self.scale = self.inner ** -0.5 if scale else 1.0
        self.init_weights()

    def init_weights(self) -> None:
        """Zero the output BN's scale (and shift) so the block is an identity mapping (as in the paper)."""
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        q = self.theta(x).flatten(2).transpose(1, 2)                    # (n, N, C')
        k, v = self.phi(x), self.g(x)
        if self.pool is not None:
            k, v = self.pool(k), self.pool(v)
        k, v = k.flatten(2).transpose(1, 2), v.flatten(2).transpose(1, 2)  # (n, N_kv, C')
        y = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # softmax_j(theta_i . phi_j) g_j
        y = y.transpose(1, 2).reshape(n, self.inner, h, w)
        return x + self.bn(self.w_z(y))


class SoftmaxFreeNonLocal2d(nn.Module):
    """Non-local block with the softmax replaced by a scaling factor (1/sqrt(N) by default); single- or multi-head."""

    def __init__(self, channels: int, heads: int = 1, reduction: int = 2, inner_channels: int | None = None,
                 scale: str = "sqrt_n", order: str = "auto"):
        super().__init__()
        self.inner = _inner(channels, reduction, inner_channels, "sfnl")
        if self.inner % check_int(heads, "heads", min_value=1, owner="sfnl"):
            raise ConfigError(f"sfnl: heads must divide the inner channels: {self.inner} inner channels "
                              f"(channels // reduction) cannot be split into {heads} heads; pick heads dividing "
                              f"{self.inner} or set inner_channels=")
        check_choice(scale, "scale", SCALES, owner="sfnl")
        check_choice(order, "order", ORDERS, owner="sfnl")
        self.heads, self.head_dim, self.scale_mode, self.order = heads, self.inner // heads, scale, order
        self.theta = nn.Conv2d(channels, self.inner, 1, bias=False)
        self.phi = nn.Conv2d(channels, self.inner, 1, bias=False)
        self.g = nn.Conv2d(channels, self.inner, 1, bias=False)
        self.w_z = nn.Conv2d(self.inner, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.init_weights()

    def init_weights(self) -> None:
        """Zero the output BN's scale and shift (official ``reset``): the block starts as an identity mapping."""
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def scale_factor(self, num_positions: int) -> float:
        if self.scale_mode == "sqrt_n":
            return num_positions ** -0.5
        if self.scale_mode == "n":
            return 1.0 / num_positions
        return (num_positions * self.head_dim) ** -0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        length, d = h * w, self.head_dim
        q = self.theta(x).reshape(n * self.heads, d, length)          # head-major channel groups
        k = self.phi(x).reshape(n * self.heads, d, length)
        v = self.g(x).reshape(n * self.heads, d, length)
        s = self.scale_factor(length)
        order = self.order if self.order != "auto" else ("kv" if d < length else "qk")
        if order == "qk":
            attn = torch.bmm(q.transpose(1, 2), k) * s                  # (nh, N, N): theta_i . phi_j / sqrt(N)
            y = torch.bmm(v, attn.transpose(1, 2))                      # y_i = sum_j attn_ij g_j
        else:
            ctx = torch.bmm(v, k.transpose(1, 2)) * s                   # (nh, d, d): sum_j g_j phi_j^T / sqrt(N)
            y = torch.bmm(ctx, q)                                       # same y, linear in N
        y = y.reshape(n, self.inner, h, w)
        return x + self.bn(self.w_z(y))


_NL_MEMORY = ("Memory/compute are quadratic in the number of positions N = H*W: O(N^2 * C') MACs and an N x N "
              "attention map per image on the math path; use it on small feature maps (late stages) or subsample=True.")


@register_block(
    "nonlocal", slot="attn", paper=papers.NONLOCAL, family="nonlocal",
    summary="Non-local block (embedded Gaussian): softmax(theta^T phi) g -> W_z -> BN(gamma=0) + x; identity at init",
    claims=(
        Claim("embedded Gaussian: y_i = sum_j softmax_j(theta_i . phi_j) g_j with C' = C/2, z = BN(W_z y) + x",
              "tests/blocks/attention/test_nonlocal_block.py::test_nonlocal_hand_computed"),
        Claim("zero-initialised BN gamma makes an inserted block an identity mapping, also after a backbone's init",
              "tests/blocks/attention/test_nonlocal_block.py::test_nonlocal_identity_in_resnet20"),
        Claim("works on any H x W; cost 4*C*C'*N + 2*C'*N^2 MACs (quadratic in N = H*W)",
              "tests/blocks/attention/test_nonlocal_block.py::test_nonlocal_params_and_macs"),
        Claim("subsampling (2x2 max-pool after phi and g) reduces the pairwise cost by 4x",
              "tests/blocks/attention/test_nonlocal_block.py::test_nonlocal_subsample"),
    ),
    requires=Requires(min_size=1),
    notes="C' = C // reduction (or inner_channels); subsample=True: 2x2 max-pool after phi, g; scale=True: the "
          "official code's C'^-1/2 logit scale; bias=True: the official code's biases. Residual inside "
          "(z = W_z y + x). " + _NL_MEMORY,
)
def nonlocal_block(channels: int, reduction: int = 2, inner_channels: int | None = None, subsample: bool = False,
                   scale: bool = False, bias: bool = False) -> nn.Module:
    return NonLocal2d(channels, reduction=reduction, inner_channels=inner_channels, subsample=subsample, scale=scale,
                      bias=bias)


@register_block(
    "sfnl", slot="attn", paper=papers.SOFTMAX_FREE_NL, family="nonlocal",
    summary="Softmax-free non-local block: (theta^T phi / sqrt(N)) g -> W_z -> BN(0) + x; multi-head at no extra cost",
    claims=(
        Claim("softmax replaced by the scaling factor 1/sqrt(N), N = H*W (official code; scale='n' gives 1/N)",
              "tests/blocks/attention/test_nonlocal_block.py::test_sfnl_hand_computed"),
        Claim("multi-head attention at no additional cost: heads split C', so parameters are identical and MACs are "
              "equal (N x N order) or lower (associative order)",
              "tests/blocks/attention/test_nonlocal_block.py::test_sfnl_multihead_cost"),
        Claim("zero-initialised output BN: identity mapping at init, also after a backbone's init",
              "tests/blocks/attention/test_nonlocal_block.py::test_sfnl_identity_in_resnet20"),
        Claim("improves CIFAR-10, CIFAR-100 and Tiny-ImageNet accuracy over the softmax non-local block",
              status="not checked"),
    ),
    requires=Requires(min_size=1),
    notes="heads must divide C' = C // reduction (the official multi-head default is reduction=1); "
          "scale='sqrt_n' (official) | 'n' | 'sqrt_nd'; order='auto' | 'qk' | 'kv'. Residual inside. Memory: "
          "order='qk' stores heads x N x N maps per image (quadratic in N = H*W); 'auto' (default) switches to "
          "the associative (g phi^T) theta order, O(heads * d^2), whenever d < N.",
)
def sfnl(channels: int, heads: int = 1, reduction: int = 2, inner_channels: int | None = None, scale: str = "sqrt_n",
         order: str = "auto") -> nn.Module:
    return SoftmaxFreeNonLocal2d(channels, heads=heads, reduction=reduction, inner_channels=inner_channels, scale=scale,
                                 order=order)
