"""Gated positional self-attention (GPSA), ConViT's token mixer, as a grid token module and as a ``mixer`` block.

d'Ascoli et al., "ConViT: Improving Vision Transformers with Soft Convolutional Inductive Biases", ICML 2021,
arXiv:2103.10697 [S021]; official code facebookresearch/convit (``convit.py``: ``GPSA``); timm's ``convit.py`` is the
same module (the names here are timm's: ``qk``, ``v``, ``proj``, ``pos_proj``, ``gating_param``, so state dicts map
1:1). The backbones are in :mod:`blockzoo.models.convit`, the paper's non-locality measure in
:mod:`blockzoo.analysis.locality`.

Per head ``h`` (the paper's GPSA; official ``get_attention``)::

    A_h = normalize[(1 - sigmoid(lambda_h)) softmax(Q_h K_h^T / sqrt(d)) + sigmoid(lambda_h) softmax(v_pos_h . r)]

``Q, K`` come from one Linear ``qk`` (C -> 2C) and the values from a separate ``v`` (C -> C), as in the official code;
``r_ij = (dx, dy, dx^2 + dy^2)`` are the relative positions of key ``j`` to query ``i`` on the token grid (``dx``
columns, ``dy`` rows: key minus query; the paper writes ``(||delta||^2, delta_1, delta_2)``, the order here is the
official one so that ``pos_proj`` weights load as they are), mapped to one score per head by
``pos_proj = Linear(3, heads)`` (with a bias, which the softmax cancels); ``lambda`` is
``gating_param``, one per head, initialised to 1 (``sigmoid(1) = 0.73``: at init the positional part dominates).
``normalize`` divides each row by its sum (already 1; kept as in the paper and the official code). The output is
``proj(A V)``; attention dropout acts on ``A``.

Local init (the paper's convolutional initialisation; official ``local_init``; :meth:`GPSA.init_weights`): ``v`` = the
identity; head ``p = a + k * b`` of the first ``k^2`` heads (``k = floor(sqrt(heads))``) gets the offset
``Delta = (dx, dy) = (b - c, a - c)``, ``c = (k - 1) / 2``, through ``pos_proj`` weights
``alpha * (2 Delta_x, 2 Delta_y, -1)``, so its positional score is ``-alpha |r - Delta|^2 + const``: a Gaussian-like
kernel centred on the offset, sharper for a larger locality strength ``alpha`` (``locality_strength``, 1 in every
ConViT). With 9 heads the offsets are the 3x3 neighbourhood of a convolution; with 4 heads (ConViT-Ti) they are the
four half-integer offsets ``(+-0.5, +-0.5)``, each head spreading its weight equally over a 2x2 block. Heads beyond
``k^2`` (a non-square head count, e.g. 2 heads in a mixer slot) keep the generic init, as in the official code
(``pos_proj`` rows ``trunc_normal(0.02) * alpha``: almost uniform positional attention). The rest is the official
module init: ``qk``, ``proj`` ``trunc_normal(std=0.02)``, zero biases. :meth:`GPSA.init_weights` applies all of it
(it also runs when the module is built), so GPSA keeps the paper's init in any backbone; ``local_init=False`` keeps
``v`` and ``pos_proj`` at the generic init (the paper's ablation without local init).

Token grid (blockzoo's choice; the official code assumes a square grid, ``int(sqrt(N))``): :class:`GPSA` takes the
patch tokens as an NHWC grid ``(B, H, W, C)`` and returns the same shape, so the relative positions are those of the
real ``H x W`` grid at every call -- any size, square or not, traceable (no shape-dependent branch). On a square grid
they equal the official ``rel_indices`` exactly. In a ConViT the GPSA blocks see only patch tokens (the class token
joins after them); the ``gpsa`` mixer hands its NCHW input over as that grid.

``gpsa`` mixer: ``num_heads`` defaults to ``max(1, C // head_dim)`` with ``head_dim = 32`` (timm's MetaFormer
attention), lowered to the largest count that divides C where that one does not (104 channels: 3 -> 2 heads; the
identity init of ``v`` needs C -> C, so the heads split C exactly); a given ``num_heads`` that does not divide C is
refused when the model is built. No ``qkv`` bias, as in ConViT.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.common.mlp import to_nhwc
from blockzoo.blocks.common.transformer import heads_for
from blockzoo.checks import check_int, check_positive
from blockzoo.errors import ConfigError, IncompatibleBlockError
from blockzoo.registry import Claim, register_block

__all__ = ["GPSA", "GridMixer2d", "relative_indices", "local_offsets", "gpsa"]

_T = "tests/blocks/mixers/test_gpsa.py::"


def relative_indices(height, width, device=None, dtype=None) -> torch.Tensor:
    """``(N, N, 3)`` relative positions ``(dx, dy, dx^2 + dy^2)`` of key ``j`` to query ``i`` (key minus query;
    ``dx`` along the columns, ``dy`` along the rows) for the ``N = H * W`` tokens of an ``H x W`` grid in row-major
    order (the official ``rel_indices`` for ``H = W``). ``height``/``width`` may be symbolic (tracing)."""
    rows, cols = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                                torch.arange(width, device=device, dtype=dtype), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    dx, dy = cols[None, :] - cols[:, None], rows[None, :] - rows[:, None]
    return torch.stack((dx, dy, dx * dx + dy * dy), dim=-1)


def local_offsets(num_heads: int) -> list[tuple[float, float]]:
    """The offsets ``(dx, dy)`` the local init gives the first ``k^2`` heads, ``k = floor(sqrt(num_heads))``: head
    ``a + k * b`` -> ``(b - c, a - c)``, ``c = (k - 1) / 2`` (official ``local_init``)."""
    k = math.isqrt(num_heads)
    c = (k - 1) / 2
    return [(p // k - c, p % k - c) for p in range(k * k)]


class GPSA(nn.Module):
    """Gated positional self-attention on a token grid ``(B, H, W, C) -> (B, H, W, C)`` (see the module docstring).

    :meth:`attn_map` gives the gated attention weights ``(B, heads, H*W, H*W)`` the forward multiplies the values
    with (before attention dropout), the contract of the token-attention modules of
    :mod:`blockzoo.blocks.common.transformer`; :meth:`content_map` / :meth:`position_map` give its two parts and
    :meth:`gate` the per-head weight ``sigmoid(lambda)`` of the positional part.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, locality_strength: float = 1.0, local_init: bool = True):
        super().__init__()
        check_int(dim, "dim", min_value=1, owner="GPSA")
        check_int(num_heads, "num_heads", min_value=1, owner="GPSA")
        if dim % num_heads:
            raise ConfigError(f"GPSA: dim={dim} is not divisible by num_heads={num_heads}; choose num_heads dividing "
                              f"the width")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.locality_strength = check_positive(locality_strength, "locality_strength", owner="GPSA")
        self.local_init = bool(local_init)
        self.qk = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.pos_proj = nn.Linear(3, num_heads)
        self.proj_drop = nn.Dropout(proj_drop)
        self.gating_param = nn.Parameter(torch.ones(num_heads))
        self.init_weights()

    # --------------------------------------------------------------------------------------------------- init
    def init_weights(self) -> None:
        """The official GPSA init: trunc-normal(0.02) Linear weights, zero biases, gate 1, then the local init."""
        for m in (self.qk, self.v, self.proj, self.pos_proj):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        nn.init.ones_(self.gating_param)
        if not self.local_init:
            return
        with torch.no_grad():
            self.v.weight.copy_(torch.eye(self.v.weight.shape[0]))
            for p, (dx, dy) in enumerate(local_offsets(self.num_heads)):
                self.pos_proj.weight[p] = torch.tensor([2 * dx, 2 * dy, -1.0])
            self.pos_proj.weight.mul_(self.locality_strength)

    # ------------------------------------------------------------------------------------------- attention
    def gate(self) -> torch.Tensor:
        """``sigmoid(lambda)`` per head: the weight of the positional attention."""
        return torch.sigmoid(self.gating_param)

    def content_map(self, tokens: torch.Tensor) -> torch.Tensor:
        """``softmax(q k^T / sqrt(d))`` of tokens ``(B, N, C)``: ``(B, heads, N, N)``."""
        q, k = self.qk(tokens).unflatten(-1, (2, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4).unbind(0)
        return (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)

    def position_map(self, height, width, like: torch.Tensor) -> torch.Tensor:
        """``softmax(pos_proj(r))`` on an ``H x W`` grid: ``(heads, N, N)`` (device and dtype of ``like``)."""
        rel = relative_indices(height, width, device=like.device, dtype=like.dtype)
        return self.pos_proj(rel).permute(2, 0, 1).softmax(dim=-1)

    def attn_map(self, x: torch.Tensor) -> torch.Tensor:
        """The gated attention weights of the grid ``x`` ``(B, H, W, C)``: ``(B, heads, H*W, H*W)``."""
        g = self.gate().view(-1, 1, 1)
        attn = (1 - g) * self.content_map(x.flatten(1, 2)) + g * self.position_map(x.shape[1], x.shape[2], x)
        return attn / attn.sum(dim=-1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.attn_drop(self.attn_map(x))
        v = self.v(x.flatten(1, 2)).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
        out = self.proj_drop(self.proj((attn @ v).transpose(1, 2).flatten(2)))
        return out.reshape_as(x)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, locality_strength={self.locality_strength:g}, local_init={self.local_init}"


class GridMixer2d(nn.Module):
    """A grid token module ``(B, H, W, C) -> (B, H, W, C)`` as a ``mixer`` block: NCHW -> NHWC -> ``attn`` -> NCHW."""

    def __init__(self, attn: nn.Module):
        super().__init__()
        self.attn = attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(to_nhwc(x)).permute(0, 3, 1, 2)


@register_block(
    "gpsa", slot="mixer", paper=papers.CONVIT, family="convit",
    summary="ConViT gated positional self-attention: per-head gate between content and convolution-like positional "
            "attention",
    claims=(
        Claim("at the local init each head's positional attention peaks at its offset of a sqrt(heads) x sqrt(heads) "
              "grid, and with the gate at its init (sigmoid(1) = 0.73) the positional part dominates (hand-computed "
              "on a 5x5 grid)", _T + "test_local_init_attends_like_its_kernel"),
        Claim("with the gate closed (lambda -> -inf) GPSA is plain softmax attention with the same q, k, v",
              _T + "test_closed_gate_is_plain_attention"),
        Claim("with the gate open (lambda -> +inf), v = I and proj = I, a 9-head GPSA at strong locality is a 3x3 "
              "convolution-like shift per head", _T + "test_open_gate_strong_locality_is_a_shift"),
        Claim("relative positions (dx, dy, dx^2 + dy^2) of the real H x W grid: equal to the official square-grid "
              "indices, and correct on non-square grids", _T + "test_relative_indices"),
    ),
    notes="num_heads defaults to max(1, C // head_dim), head_dim 32 (lowered to the largest divisor of C); a given "
          "num_heads must divide C. No qkv bias (ConViT). "
          "locality_strength: the paper's alpha (1); local_init=False: the generic init (ablation).",
    usage='blk = create_block("gpsa", 64)   # NCHW in -> NCHW out, 2 heads\n'
          'model = create_model("poolformer_s12", mixer="gpsa")',
)
def gpsa(channels: int, num_heads: int | None = None, head_dim: int = 32, qkv_bias: bool = False,
         locality_strength: float = 1.0, local_init: bool = True, attn_drop: float = 0.0,
         proj_drop: float = 0.0) -> nn.Module:
    heads = heads_for(channels, num_heads, head_dim, "gpsa")
    if num_heads is None:              # the default count need not divide C: the largest one up to it that does
        heads = max(d for d in range(1, heads + 1) if channels % d == 0)
    elif channels % heads:
        raise IncompatibleBlockError(f"gpsa with {heads} heads cannot split {channels} channels into equal heads; "
                                     f"give num_heads= dividing {channels}")
    return GridMixer2d(GPSA(channels, heads, qkv_bias, attn_drop, proj_drop, locality_strength, local_init))
