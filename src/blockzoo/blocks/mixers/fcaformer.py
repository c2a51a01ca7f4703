"""Forward cross attention (Zhang, Hu & Wang, "FcaFormer: Forward Cross Attention in Hybrid Vision Transformer",
ICCV 2023, arXiv:2211.07198 [S044]; official code hkzhang-git/FcaFormer, ``image_classification/models/fcaformer.py``).

An FcaFormer stage is a sequence of pre-norm transformer blocks on one token grid (H x W) in which every block after
the first also attends to *cross tokens*: the tokens the earlier blocks of the same stage produced, merged and
calibrated (paper Fig. 1):

* **TME** (token merge and enhancement): after its attention residual, block ``i`` merges its tokens spatially with
  a long-stride large-kernel depthwise conv (7x7, stride 4, padding 3, no bias: ``ceil(H/4) * ceil(W/4)`` cross
  tokens, :class:`TokenMerge`) and enhances the tokens it passes on with a small-kernel depthwise conv (3x3 + BN,
  ``local_conv``) before the FFN. The last block of a stage produces no cross tokens.
* **LSFs** (learnable scale factors, ``alpha``): block ``i`` receives the cross tokens of blocks ``0..i-1`` (at most
  ``max_cross_blocks`` of the latest, official ``cab_max_d = 12``) concatenated, multiplies them by its learnable
  factors -- one per cross token, initialised to 1 (official ``s_scale_factors``; the paper's figure shows the
  factors without fixing their shape) -- and normalises them with its own LayerNorm (``cross_norm``).
* **Cross MHA**: queries from the block's own tokens only, keys / values from ``[tokens; cross tokens]`` through
  the same ``qkv`` projection (the output keeps ``N`` tokens), softmax over both. Attention biases as the official
  code: a LeViT-style table per head over the absolute (dy, dx) offsets of the grid for the self part and one
  learned bias per head and cross token (``cross_bias``) for the cross part.

Block layout (official): ``x = x + DP(LS1(cross_mha(norm1(x), cross)))``; ``cross_out = merge(x)``;
``x = local_conv(x)`` (no residual); ``x = x + DP(LS2(mlp(mlp_norm(norm2(x)))))``; LayerNorms eps 1e-5, layer scale
1e-6. ``mlp_norm`` is the LayerNorm the official ``Mlp`` applies to its input, right after ``norm2``
(``mlp_norm=False`` drops it; the default keeps the official parameter count).

Differences from the official code (same function at the size a block is built for): the cross tokens' keys and
values are computed with the key/value rows of ``qkv`` only (the official code projects their unused queries too:
fewer MACs here, same output); the official blocks only run on the grid they are built for, ours take any grid:
the offset table and the per-token LSFs / cross biases are read at clamped indices (a smaller grid uses the offsets
and positions it has, a larger one repeats the last row / column; at the build size they are the stored tables),
with no branch on the input size (traceable and exportable with dynamic sizes).

Zero scale factors do **not** turn the block into the plain one: LayerNorm of a zero token is its bias, whose
keys still take softmax mass. What holds, and is tested: with zero factors the output no longer depends on the
earlier blocks (any cross tokens give the same output), and with zero factors, zero norm bias and no qkv bias the
cross tokens are zero keys / values, so the output is the plain attention scaled by ``Z / (Z + M)`` (``Z`` the
softmax normaliser of the self logits, ``M`` the number of cross tokens); and with the cross biases at -inf (the
cross tokens masked) the block equals the plain block with the same weights (``tests/blocks/mixers/test_fcaformer.py``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from blockzoo.blocks.common.drop import make_drop_path
from blockzoo.blocks.common.layers import ConvNormAct
from blockzoo.blocks.common.transformer import Attention, TokenLayerScale, TokenMlp
from blockzoo.checks import check_int

__all__ = ["TokenMerge", "ForwardCrossAttention", "FcaBlock", "FcaStage", "cross_grid", "cross_token_count"]


def cross_grid(resolution: tuple[int, int], stride: int = 4) -> tuple[int, int]:
    """The grid of cross tokens one block's TME produces from an ``H x W`` grid: ``(ceil(H / s), ceil(W / s))``
    (``(H - 1) // s + 1``: also for symbolic sizes)."""
    return (resolution[0] - 1) // stride + 1, (resolution[1] - 1) // stride + 1


def cross_token_count(resolution: tuple[int, int], stride: int = 4) -> int:
    """Cross tokens one block's TME produces on an ``H x W`` grid: ``ceil(H / s) * ceil(W / s)``."""
    h, w = cross_grid(resolution, stride)
    return h * w


class TokenMerge(nn.Conv2d):
    """TME's merge: depthwise 7x7 conv, stride 4, padding 3, no bias (NCHW -> NCHW, ``ceil(H/4) x ceil(W/4)``)."""

    def __init__(self, dim: int, kernel_size: int = 7, stride: int = 4):
        super().__init__(dim, dim, kernel_size, stride, kernel_size // 2, groups=dim, bias=False)


class ForwardCrossAttention(Attention):
    """Multi-head attention of ``N`` tokens over themselves and the cross tokens of ``cross_blocks`` earlier blocks
    (see the module docstring), for the ``resolution`` grid it is built for (any other grid works, see the module
    docstring).

    ``forward(x, cross, size, cross_size)``: ``x`` the block's normalised tokens ``(B, N, C)`` of an
    ``size = (H, W)`` grid (default: the build grid), ``cross`` the raw cross tokens ``(B, M, C)`` of
    ``cross_blocks`` merged ``cross_size`` grids (default ``(ceil(H/4), ceil(W/4))``; the stage passes the merged
    maps' own size) or ``None`` when ``cross_blocks == 0``.
    """

    def __init__(self, dim: int, num_heads: int, resolution: tuple[int, int], cross_blocks: int = 0,
                 qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__(dim, num_heads, qkv_bias, attn_drop, proj_drop)
        check_int(cross_blocks, "cross_blocks", min_value=0, owner="ForwardCrossAttention")
        self.resolution = tuple(resolution)
        # one bias per head and absolute offset (|dy|, |dx|), row-major: the official LeViT-style table
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, self.resolution[0] * self.resolution[1]))
        self.cross_blocks = cross_blocks
        self.cross_grid = cross_grid(self.resolution)
        self.num_cross = cross_blocks * self.cross_grid[0] * self.cross_grid[1]
        if cross_blocks:
            self.cross_scale = nn.Parameter(torch.ones(1, self.num_cross, 1))          # the LSFs
            self.cross_norm = nn.LayerNorm(dim)
            self.cross_bias = nn.Parameter(torch.zeros(1, num_heads, 1, self.num_cross))

    def init_weights(self) -> None:
        """Official init: zero attention biases, LSFs 1."""
        nn.init.zeros_(self.attention_biases)
        if self.cross_blocks:
            nn.init.ones_(self.cross_scale)
            nn.init.zeros_(self.cross_bias)

    def self_bias(self, size: tuple[int, int]) -> torch.Tensor:
        """``(heads, N, N)``: the offset table at ``|dy|, |dx|`` of every token pair of an ``H x W`` grid (offsets
        beyond the built grid read its last row / column)."""
        h, w = size
        hb, wb = self.resolution
        t = torch.arange(h * w, device=self.attention_biases.device)
        dy = (t[:, None] // w - t[None] // w).abs().clamp(max=hb - 1)
        dx = (t[:, None] % w - t[None] % w).abs().clamp(max=wb - 1)
        return self.attention_biases[:, dy * wb + dx]

    def lsf(self, cross_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The scale factors ``(1, M, 1)`` and cross biases ``(1, heads, 1, M)`` for cross tokens on
        ``cross_size`` grids: each earlier block's stored ``gh x gw`` grid read at the clamped positions."""
        h, w = cross_size
        gh, gw = self.cross_grid
        dev = self.cross_scale.device
        pos = (torch.arange(h, device=dev).clamp(max=gh - 1)[:, None] * gw
               + torch.arange(w, device=dev).clamp(max=gw - 1)[None]).flatten()
        idx = (torch.arange(self.cross_blocks, device=dev)[:, None] * (gh * gw) + pos[None]).flatten()
        return self.cross_scale[:, idx], self.cross_bias[..., idx]

    def _logits(self, x: torch.Tensor, cross: torch.Tensor | None, size: tuple[int, int] | None,
                cross_size: tuple[int, int] | None):
        size = size or self.resolution
        q, k, v = self.qkv_heads(x)
        q = q * self.scale
        logits = q @ k.transpose(-2, -1) + self.self_bias(size)
        if not self.cross_blocks:
            return logits, v
        scale, bias = self.lsf(cross_size or cross_grid(size))
        s = self.cross_norm(cross * scale)
        inner = self.num_heads * self.head_dim
        b = self.qkv.bias[inner:] if self.qkv.bias is not None else None
        ks, vs = nn.functional.linear(s, self.qkv.weight[inner:], b).unflatten(
            -1, (2, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4).unbind(0)
        return torch.cat([logits, q @ ks.transpose(-2, -1) + bias], dim=-1), torch.cat([v, vs], dim=-2)

    def attn_map(self, x: torch.Tensor, cross: torch.Tensor | None = None, size: tuple[int, int] | None = None,
                 cross_size: tuple[int, int] | None = None) -> torch.Tensor:
        """The softmax weights ``(B, heads, N, N + M)`` (self part first)."""
        return self._logits(x, cross, size, cross_size)[0].softmax(dim=-1)

    def forward(self, x: torch.Tensor, cross: torch.Tensor | None = None, size: tuple[int, int] | None = None,
                cross_size: tuple[int, int] | None = None) -> torch.Tensor:
        logits, v = self._logits(x, cross, size, cross_size)
        return self.out(self.attn_drop(logits.softmax(dim=-1)) @ v)


class FcaBlock(nn.Module):
    """One FcaFormer block (module docstring): ``forward(x, cross) -> (x, merged)`` on tokens ``(B, N, C)`` of
    the ``resolution`` grid; ``merged`` is the TME map ``(B, C, ceil(H/4), ceil(W/4))`` whose pixels are the
    block's cross tokens, ``None`` when ``merge=False`` (the last block of a stage).

    ``cross_blocks``: the earlier blocks whose cross tokens it receives (0 for the first block of a stage).
    ``forward(x, cross, size, cross_size)``: the grid sizes as :class:`ForwardCrossAttention`.
    """

    def __init__(self, dim: int, num_heads: int, resolution: tuple[int, int], cross_blocks: int = 0,
                 merge: bool = True,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, ls_init_value: float = 1e-6, drop_path: float = 0.0,
                 act_layer: Any = nn.GELU, mlp_norm: bool = True, proj_drop: float = 0.0, attn_drop: float = 0.0):
        super().__init__()
        self.resolution = tuple(resolution)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ForwardCrossAttention(dim, num_heads, self.resolution, cross_blocks, qkv_bias, attn_drop,
                                          proj_drop)
        self.ls1 = TokenLayerScale(dim, ls_init_value)
        self.drop_path1 = make_drop_path(drop_path)
        self.merge = TokenMerge(dim) if merge else None
        self.local_conv = ConvNormAct(dim, dim, 3, groups=dim, norm="bn", act=None)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp_norm = nn.LayerNorm(dim) if mlp_norm else nn.Identity()
        self.mlp = TokenMlp(dim, int(dim * mlp_ratio), act_layer, drop=proj_drop)
        self.ls2 = TokenLayerScale(dim, ls_init_value)
        self.drop_path2 = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor, cross: torch.Tensor | None = None,
                size: tuple[int, int] | None = None,
                cross_size: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        size = size or self.resolution
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), cross, size, cross_size)))
        grid = x.transpose(1, 2).unflatten(2, size)
        merged = self.merge(grid) if self.merge is not None else None
        x = self.local_conv(grid).flatten(2).transpose(1, 2)
        return x + self.drop_path2(self.ls2(self.mlp(self.mlp_norm(self.norm2(x))))), merged


class FcaStage(nn.Module):
    """``downsample`` (NCHW) -> tokens -> FcaFormer blocks with forward cross attention -> NCHW. Block ``i`` gets
    the cross tokens of blocks ``max(0, i - max_cross_blocks) .. i - 1`` concatenated in block order."""

    def __init__(self, downsample: nn.Module, blocks: Sequence[FcaBlock], max_cross_blocks: int = 12):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)
        self.max_cross_blocks = check_int(max_cross_blocks, "max_cross_blocks", min_value=1, owner="FcaStage")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        size = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)
        crosses: list[torch.Tensor] = []
        cross_size = None
        for block in self.blocks:
            cross = torch.cat(crosses[-self.max_cross_blocks:], dim=1) if crosses else None
            x, merged = block(x, cross, size, cross_size)
            if merged is not None:
                cross_size = (merged.shape[-2], merged.shape[-1])
                crosses.append(merged.flatten(2).transpose(1, 2))
        return x.transpose(1, 2).unflatten(2, size)
