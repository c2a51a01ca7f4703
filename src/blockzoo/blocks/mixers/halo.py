"""Halo attention (blocked local self-attention): Vaswani, Ramachandran, Srinivas, Parmar, Hechtman & Shlens,
"Scaling Local Self-Attention for Parameter Efficient Visual Backbones", CVPR 2021, arXiv:2103.12731 [S066].
There is no official code; timm's ``layers/halo_attn.py`` (``HaloAttn``) is the reference implementation read for
the details the paper leaves open, and the module names follow it (``q``, ``kv``, ``pos_embed.height_rel`` /
``width_rel``) so that timm's state dicts map 1:1.

The map is cut into non-overlapping b x b *blocks*; the queries of a block attend to the keys / values of the block
plus a *halo* of h pixels on every side (a (b + 2h) x (b + 2h) window; the paper's Figure 1: a 4x4 map, b = 2, h = 1).
Queries, keys and values are 1x1 projections of the input without bias (``q``; ``kv`` holds each head's keys then
its values); the logits are ``q.k / sqrt(d_k)`` plus relative position logits factorised over height and width:
``q . r_h[ky - qy + w - 1] + q . r_w[kx - qx + w - 1]`` (key (ky, kx) in the w = b + 2h window, query (qy, qx) in
the block: a pixel offset dy is row dy + h + w - 1) with two learned tables of 2w - 1 rows of d_k each (timm's layout,
the paper's factorised relative embeddings of SASA; SASA's concatenation of half-width row/column embeddings is the
special case where each table is zero on the other half of the dimensions). The relative logits are not scaled by
1 / sqrt(d_k) (timm's default). Softmax over the window, weighted sum of the values; the block's outputs are folded
back to the map. There is no output projection (the following 1x1 convolution of the HaloNet block does it).

* **Stride** (the paper's strided self-attentive downsampling, a stand-in for a strided 3x3 conv): the queries are
  the 1x1 projection at stride s (every s-th pixel of each block, ``b % s == 0``), so each block gives
  (b/s) x (b/s) outputs; keys and values keep the full resolution. As in timm, the relative offsets index the
  subsampled query grid (``kx - qx`` with qx in block-query units); the paper does not say.
* **Borders**: the halo reaches outside the map, where keys and values are zero (the projections are applied
  first, then the map is zero-padded: timm). These zero keys take part in the softmax (the paper and timm use no
  mask); ``mask_padding=True`` leaves them out (lucidrains' halonet-pytorch), which makes a halo that covers the
  whole map exactly global attention.
* **Sizes that are not a multiple of b**: the map is zero-padded at the bottom / right to the next multiple and the
  output cropped to ceil(H / s) x ceil(W / s) (timm refuses such maps); the padded pixels are zero keys like the
  halo's, so a map that is a multiple of b is unchanged. Any input size therefore works, in every position.
* ``block_size`` and ``halo_size`` are at most 64 (a 64-pixel block is global attention on a 64x64 map; larger
  values would only materialise huge attention maps).

Not implemented: timm's ``avg_down`` (stride through 2x2 average pooling when ``b % s != 0``), ``qk_ratio`` /
``dim_head`` (the query/key width is the input width, as in every HaloNet) and ``scale_pos_embed``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.blocks.common.layers import make_act, make_norm
from blockzoo.checks import check_int
from blockzoo.errors import ConfigError, IncompatibleBlockError
from blockzoo.papers import HALONET
from blockzoo.registry import Claim, Requires, register_block

__all__ = ["RelPosEmbed", "HaloAttention", "HaloUnit", "halo_attn", "halo"]

_T = "tests/blocks/mixers/test_halo.py::"
_T_MODEL = "tests/models/test_halonet.py::"
MAX_SIZE = 64   # largest block / halo (the first feature map of a 256-px ResNet; keeps the attention maps bounded)


class RelPosEmbed(nn.Module):
    """Relative position logits of a (q x q) query block against a (w x w) key window, factorised over height and
    width: ``logit[qy, qx, ky, kx] = q . height_rel[ky - qy + w - 1] + q . width_rel[kx - qx + w - 1]``."""

    def __init__(self, query_block: int, win_size: int, dim_head: int):
        super().__init__()
        self.query_block, self.win_size = query_block, win_size
        rows = 2 * win_size - 1
        self.height_rel = nn.Parameter(torch.zeros(rows, dim_head))
        self.width_rel = nn.Parameter(torch.zeros(rows, dim_head))
        # gather index into the flattened (query, table row) logits: row kx - qx + w - 1 for query qx, key kx
        offset = torch.arange(win_size)[None, :] - torch.arange(query_block)[:, None] + win_size - 1
        self.register_buffer("index", (torch.arange(query_block)[:, None] * rows + offset).flatten(), persistent=False)

    def _logits_1d(self, q: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """(..., a, q, d) queries -> (..., a, q, w) logits along the last query axis."""
        x = (q @ table.t()).flatten(-2).index_select(-1, self.index)
        return x.unflatten(-1, (self.query_block, self.win_size))

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """(M, q*q, d) queries of M blocks (row-major in the block) -> (M, q*q, w*w) logits."""
        q = q.unflatten(1, (self.query_block, self.query_block))                       # (M, qy, qx, d)
        w = self._logits_1d(q, self.width_rel)                                          # (M, qy, qx, kx)
        h = self._logits_1d(q.transpose(1, 2), self.height_rel).transpose(1, 2)         # (M, qy, qx, ky)
        return (h.unsqueeze(-1) + w.unsqueeze(-2)).flatten(-2).flatten(1, 2)


class HaloAttention(nn.Module):
    """Blocked local self-attention with a halo (see the module docstring).

    Args:
        dim: input channels (also the query/key width: ``num_heads`` heads of ``dim / num_heads``).
        dim_out: value (= output) channels, default ``dim``.
        stride: query subsampling; must divide ``block_size``.
        num_heads: attention heads; must divide ``dim`` and ``dim_out``.
        block_size: b, the side of a query block.
        halo_size: h, the halo around each block (the window is b + 2h).
        qkv_bias: bias in the query and key/value projections (paper, timm: none).
        mask_padding: leave the zero-padded positions outside the map out of the softmax (paper, timm: no).
    """

    def __init__(self, dim: int, dim_out: int | None = None, *, stride: int = 1, num_heads: int = 8,
                 block_size: int = 8, halo_size: int = 3, qkv_bias: bool = False, mask_padding: bool = False,
                 owner: str = "halo_attn"):
        super().__init__()
        dim_out = dim_out or dim
        check_int(block_size, "block_size", min_value=1, owner=owner)
        check_int(halo_size, "halo_size", min_value=0, owner=owner)
        check_int(num_heads, "num_heads", min_value=1, owner=owner)
        check_int(stride, "stride", min_value=1, owner=owner)
        if max(block_size, halo_size) > MAX_SIZE:
            raise ConfigError(f"{owner}: block_size and halo_size must be at most {MAX_SIZE}, got {block_size} and "
                              f"{halo_size}; a {MAX_SIZE}-pixel block already attends over a whole 64x64 map")
        if block_size % stride:
            raise ConfigError(f"{owner}: the stride ({stride}) must divide block_size ({block_size}); use a "
                              f"block_size that is a multiple of the stride")
        if dim % num_heads or dim_out % num_heads:
            raise IncompatibleBlockError(f"{owner}: num_heads={num_heads} must divide the {dim} input and {dim_out} "
                                         f"output channels; pass num_heads= that divides both")
        self.num_heads, self.stride = num_heads, stride
        self.block_size, self.halo_size, self.mask_padding = block_size, halo_size, mask_padding
        self.dim_head_qk, self.dim_head_v = dim // num_heads, dim_out // num_heads
        self.win_size = block_size + 2 * halo_size
        self.scale = self.dim_head_qk ** -0.5
        self.q = nn.Conv2d(dim, dim, 1, bias=qkv_bias)         # applied to every s-th pixel
        self.kv = nn.Conv2d(dim, dim + dim_out, 1, bias=qkv_bias)
        self.pos_embed = RelPosEmbed(block_size // stride, self.win_size, self.dim_head_qk)
        self.init_weights()

    def init_weights(self) -> None:
        """timm's init: projections truncated-normal with std fan_in^-1/2, relative tables with std d_k^-1/2."""
        std = self.q.weight.shape[1] ** -0.5
        for conv in (self.q, self.kv):
            nn.init.trunc_normal_(conv.weight, std=std)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        nn.init.trunc_normal_(self.pos_embed.height_rel, std=self.scale)
        nn.init.trunc_normal_(self.pos_embed.width_rel, std=self.scale)

    def _windows(self, x: torch.Tensor) -> torch.Tensor:
        """The (b + 2h)^2 window around every block of a map padded to a multiple of b: (N, C * win * win, blocks),
        channel-major, the window row-major; zeros outside the map (``F.unfold``: traces and exports to ONNX)."""
        return F.unfold(x, self.win_size, padding=self.halo_size, stride=self.block_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, height, width = x.shape
        b, s, heads, win = self.block_size, self.stride, self.num_heads, self.win_size
        nh, nw, qb = (height + b - 1) // b, (width + b - 1) // b, b // s     # blocks per axis (ceil)
        ph, pw = nh * b - height, nw * b - width               # pad the map to a multiple of the block size
        # the strided 1x1 query projection, as every s-th pixel then a 1x1 conv (reshapes keep export's shapes simple)
        xq = F.pad(x, (0, pw, 0, ph)).reshape(n, c, nh * qb, s, nw * qb, s)[:, :, :, 0, :, 0]
        q = self.q(xq)                                         # (N, heads*dk, nh*qb, nw*qb)
        q = q.reshape(n * heads, self.dim_head_qk, nh, qb, nw, qb).permute(0, 2, 4, 3, 5, 1)
        # (batch, head, block) flattened into one dimension: no broadcasting over the blocks (export-friendly)
        q = q.reshape(n * heads * nh * nw, qb * qb, self.dim_head_qk)
        kv = self._windows(F.pad(self.kv(x), (0, pw, 0, ph)))   # zero keys / values outside the map
        kv = kv.reshape(n * heads, self.dim_head_qk + self.dim_head_v, win * win, nh * nw).permute(0, 3, 2, 1)
        k, v = kv.reshape(n * heads * nh * nw, win * win, -1).split((self.dim_head_qk, self.dim_head_v), dim=-1)
        bias = self.pos_embed(q)                               # (N*heads*blocks, qb*qb, win*win)
        if self.mask_padding:
            inside = self._windows(F.pad(x.new_ones(1, 1, height, width), (0, pw, 0, ph)))   # (1, win*win, blocks)
            inside = inside.transpose(1, 2).expand(n * heads, nh * nw, win * win).reshape(-1, 1, win * win)
            bias = bias.masked_fill(inside == 0, torch.finfo(bias.dtype).min)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        out = out.reshape(n, heads, nh, nw, qb, qb, self.dim_head_v).permute(0, 1, 6, 2, 4, 3, 5)
        out = out.reshape(n, heads * self.dim_head_v, nh * qb, nw * qb)
        # crop to the strided size (H - 1) // s + 1 (a copy through F.pad, like a conv's output size: export-friendly)
        return F.pad(out, (0, (width - 1) // s + 1 - nw * qb, 0, (height - 1) // s + 1 - nh * qb))


class HaloUnit(nn.Sequential):
    """The ``conv``-slot unit: halo attention (``in_channels`` -> ``out_channels``, at ``stride``) -> norm -> act,
    where a ResNet bottleneck has its 3x3 conv -> norm -> act (timm's ``self_attn`` + ``post_attn``)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, norm="bn", act="relu", **kw):
        super().__init__()
        self.attn = HaloAttention(in_channels, out_channels, stride=stride, owner="halo", **kw)
        self.norm = make_norm(norm, out_channels) if norm not in (None, "none") else nn.Identity()
        self.act = make_act(act, inplace=True) if act not in (None, "none") else nn.Identity()


_CLAIMS = (
    Claim("a halo covering the whole map (padding masked), or one block over the whole map, is global attention "
          "with the same weights and relative embeddings", _T + "test_whole_map_halo_is_global_attention"),
    Claim("the queries of each b x b block attend to the block plus a halo of h pixels (hand-computed 4x4 map, "
          "b = 2, h = 1)", _T + "test_hand_computed_4x4_block2_halo1"),
    Claim("strided attention gives ceil(H / s) x ceil(W / s) outputs, one per s-th pixel", _T + "test_stride"),
    Claim("HaloNet-H1 has 8.1M parameters (paper's table; timm's halonet_h1 exactly)", _T_MODEL + "test_param_counts"),
)


@register_block(
    "halo_attn", slot="mixer", paper=HALONET, family="halonet", claims=_CLAIMS,
    summary="Halo attention: each b x b block of queries attends to the block plus an h-pixel halo, relative "
            "position logits",
    notes="num_heads defaults to channels // 32 (timm's MetaFormer head width 32), lowered to a divisor of channels; "
          "any map size (zero-padded to a multiple of "
          "block_size). No output projection.",
)
def halo_attn(channels: int, block_size: int = 8, halo_size: int = 3, num_heads: int | None = None,
              qkv_bias: bool = False, mask_padding: bool = False) -> nn.Module:
    heads = num_heads if num_heads is not None else \
        max(h for h in range(1, max(1, channels // 32) + 1) if channels % h == 0)
    return HaloAttention(channels, channels, num_heads=heads, block_size=block_size, halo_size=halo_size,
                         qkv_bias=qkv_bias, mask_padding=mask_padding)


@register_block(
    "halo", slot="conv", paper=HALONET, family="halonet", claims=_CLAIMS,
    requires=Requires(keeps_channels=False, stride=True),
    summary="Halo attention -> norm -> act as the kxk conv unit (HaloNet's bottleneck; strided = query subsampling)",
    notes="Query/key width = in_channels, value width = out_channels, 8 heads (timm); groups is ignored "
          "(attention has no groups). create_model('resnet50', conv='halo') puts it in every bottleneck.",
)
def halo(channels: int, out_channels: int | None = None, stride: int = 1, groups: int = 1, norm="bn", act="relu",
         block_size: int = 8, halo_size: int = 3, num_heads: int = 8, qkv_bias: bool = False,
         mask_padding: bool = False) -> nn.Module:
    return HaloUnit(channels, out_channels or channels, stride, norm, act, block_size=block_size,
                    halo_size=halo_size, num_heads=num_heads, qkv_bias=qkv_bias, mask_padding=mask_padding)
