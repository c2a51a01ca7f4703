"""Swin Transformer V2's window attention: scaled cosine attention with a learnable clamped logit scale, the
log-spaced continuous position bias (CPB), the residual-post-norm block; the ``window_attn_v2`` mixer.

Liu et al., "Swin Transformer V2: Scaling Up Capacity and Resolution", CVPR 2022, arXiv:2111.09883 [S078]; official
code microsoft/Swin-Transformer (``models/swin_transformer_v2.py``); timm's port (``swin_transformer_v2.py``) keeps
its module names (``attn.logit_scale``, ``attn.cpb_mlp.{0,2}``, ``attn.q_bias``/``v_bias``, ``attn.qkv``), as does
blockzoo. Windows, shift, mask, padding and patch merging are Swin V1's (:mod:`blockzoo.blocks.mixers.swin`).

- Scaled cosine attention (Eq. 2): ``Sim(q, k) = cos(q, k) / tau + B``, ``tau`` learnable per head and layer and
  kept above 0.01; official form: logits ``cos(q, k) * exp(min(s, log 100))`` with ``s`` initialised to ``log 10``
  (so ``1 / tau`` starts at 10). Computed as SDPA on the unit-normalised q (times the scale) and k with ``scale=1``.
  Biases: a learnable q and v bias, k none (official ``q_bias``/``v_bias``; ``qkv`` Linear without bias).
- Continuous position bias (Eq. 3-4): ``B = G(dx^, dy^)``, ``G`` a 2-layer MLP (hidden 512, ReLU; official) on
  log-spaced coordinates ``sign(d) log(1 + |d|)`` of the linear-scaled offsets. Official scaling: offsets divided by
  ``pretrained_window - 1`` (the window itself when 0), times 8, then ``log2(1 + |d|) / log2(8)`` (a constant
  factor on the paper's natural log, absorbed by the MLP's first layer). Because ``G`` has no window-sized
  parameters, a model built for one window runs at another with the same weights; ``pretrained_window_size`` keeps
  the coordinates of the window it was trained with, so the bias at a shared offset is unchanged.
- The official code also bounds the bias, ``16 * sigmoid(G(.))``, which the paper does not state: ``cpb_bound=16``
  gives it (the registered V2 models use it: the official configurations, whose weights timm publishes);
  ``cpb_bound=None`` (the default of the attention, the block and the mixer) is the paper's unbounded ``G``.
- Residual post-norm (Sec. 3.1): ``x + LN(attn(x))``, ``x + LN(MLP(x))``; the official init zeroes both norms'
  weight and bias, so each block starts as the identity.

``window_attn_v2`` is the attention alone as an NCHW mixer, with ``window_attn``'s conventions (feature size from the
host, heads ``max(1, C // 32)``); its host block supplies the norms.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.blocks.common.drop import make_drop_path
from blockzoo.blocks.common.mlp import Mlp
from blockzoo.blocks.mixers.swin import (
    Size,
    WindowAttention2d,
    fit_window,
    relative_position_index,
    resolve_heads,
    shifted_window_attention,
)
from blockzoo.checks import check_int, check_positive
from blockzoo.papers import SWINV2
from blockzoo.registry import Claim, Requires, register_block

__all__ = ["log_spaced_coords", "WindowAttentionV2", "SwinV2Block", "window_attn_v2"]

_T = "tests/blocks/mixers/test_swinv2.py::"
_LOGIT_MAX = math.log(1.0 / 0.01)   # tau >= 0.01


def log_spaced_coords(window: Size, pretrained_window: Size = (0, 0), device=None) -> torch.Tensor:
    """``((2wh-1)(2ww-1), 2)`` log-spaced relative coordinates (dy, dx) of a window, in the bias table's order:
    offsets scaled to [-8, 8] by ``pretrained_window - 1`` (or ``window - 1``), then ``sign * log2(1 + |d|) / 3``."""
    axes = []
    for w, p in zip(window, pretrained_window):
        d = torch.arange(-(w - 1), w, device=device, dtype=torch.float32)
        axes.append(d / max((p if p > 0 else w) - 1, 1) * 8)
    t = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 2)
    return torch.sign(t) * torch.log2(t.abs() + 1.0) / math.log2(8)


class WindowAttentionV2(nn.Module):
    """Scaled cosine window attention with the log-spaced continuous position bias (official/timm names):
    ``(B, nW, N, C)`` windows + ``(nW, N, N)`` mask -> ``(B, nW, N, C)``."""

    def __init__(self, dim: int, num_heads: int, window_size: Size, head_dim: int | None = None,
                 qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 pretrained_window_size: int | Size = 0, cpb_hidden: int = 512, cpb_bound: float | None = None):
        super().__init__()
        self.window_size, self.num_heads = tuple(window_size), num_heads
        self.head_dim = head_dim or dim // num_heads
        pws = (pretrained_window_size,) * 2 if isinstance(pretrained_window_size, int) else pretrained_window_size
        self.pretrained_window_size = tuple(check_int(p, "pretrained_window_size", min_value=0,
                                                      owner="WindowAttentionV2") for p in pws)
        self.cpb_bound = None if cpb_bound is None else check_positive(cpb_bound, "cpb_bound",
                                                                      owner="WindowAttentionV2")
        attn_dim = self.head_dim * num_heads
        self.logit_scale = nn.Parameter(torch.full((num_heads, 1, 1), math.log(10.0)))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, cpb_hidden), nn.ReLU(inplace=True),
                                     nn.Linear(cpb_hidden, num_heads, bias=False))
        self.qkv = nn.Linear(dim, 3 * attn_dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(attn_dim)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(attn_dim)) if qkv_bias else None
        self.attn_drop = attn_drop
        self.proj = nn.Linear(attn_dim, dim)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop > 0 else nn.Identity()
        self.register_buffer("relative_coords_table", log_spaced_coords(self.window_size,
                                                                        self.pretrained_window_size),
                             persistent=False)
        self.register_buffer("relative_position_index", relative_position_index(self.window_size), persistent=False)

    def init_weights(self) -> None:
        nn.init.constant_(self.logit_scale, math.log(10.0))
        if self.q_bias is not None:
            nn.init.zeros_(self.q_bias)
            nn.init.zeros_(self.v_bias)

    def position_bias(self) -> torch.Tensor:
        """``(heads, N, N)``: the CPB MLP on the table's coordinates, read at every query/key offset."""
        n = self.window_size[0] * self.window_size[1]
        table = self.cpb_mlp(self.relative_coords_table)
        bias = table[self.relative_position_index.flatten()].view(n, n, -1).permute(2, 0, 1)
        return bias if self.cpb_bound is None else self.cpb_bound * torch.sigmoid(bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias)
        qkv = qkv.reshape(x.shape[0], x.shape[1], x.shape[2], 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)
        scale = torch.clamp(self.logit_scale, max=_LOGIT_MAX).exp()
        q, k = F.normalize(q, dim=-1) * scale, F.normalize(k, dim=-1)
        attn_mask = (self.position_bias()[None] + mask[:, None]).to(q.dtype)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=1.0,
                                           dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(y.transpose(2, 3).flatten(3)))


class SwinV2Block(nn.Module):
    """Swin V2 block on NHWC maps (residual post-norm): ``x + DP(LN((S)W-MSA(x)))``, ``x + DP(LN(MLP(x)))``."""

    def __init__(self, dim: int, num_heads: int, *, window_size: int | Size = 8, shift_size: int | Size = 0,
                 input_resolution: Size | None = None, head_dim: int | None = None, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_path: float = 0.0, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 act_layer: Callable[[], nn.Module] = nn.GELU, norm_eps: float = 1e-5,
                 pretrained_window_size: int | Size = 0, cpb_bound: float | None = None):
        super().__init__()
        self.window_size, self.shift_size = fit_window(window_size, shift_size, input_resolution, "SwinV2Block")
        self.attn = WindowAttentionV2(dim, num_heads, self.window_size, head_dim, qkv_bias, attn_drop, proj_drop,
                                      pretrained_window_size, cpb_bound=cpb_bound)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.drop_path1 = make_drop_path(drop_path)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer, drop=proj_drop)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.drop_path2 = make_drop_path(drop_path)

    def init_weights(self) -> None:
        for norm in (self.norm1, self.norm2):
            nn.init.zeros_(norm.weight)
            nn.init.zeros_(norm.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = shifted_window_attention(x, self.attn, self.window_size, self.shift_size)
        x = x + self.drop_path1(self.norm1(y))
        return x + self.drop_path2(self.norm2(self.mlp.forward_nhwc(x)))


@register_block(
    "window_attn_v2", slot="mixer", paper=SWINV2, family="swinv2", requires=Requires(fixed_resolution=True),
    summary="Swin V2 window attention: scaled cosine attention (clamped learnable logit scale) + log-spaced "
            "continuous position bias",
    claims=(Claim("cosine attention is invariant to scaling q and k", _T + "test_cosine_attention_scale_invariant"),
            Claim("the continuous position bias runs at another window size than built for, with the same weights",
                  _T + "test_cpb_runs_at_another_window_size"),),
    notes="Needs the feature size (window shrinks to a smaller map, official); pads other sizes and masks the padding.",
)
def window_attn_v2(channels: int, window_size: int = 8, shift_size: int = 0, num_heads: int | None = None,
                   head_dim: int | None = None, qkv_bias: bool = True, attn_drop: float = 0.0,
                   pretrained_window_size: int = 0, cpb_bound: float | None = None,
                   input_resolution: Size | None = None) -> nn.Module:
    heads, hd = resolve_heads(channels, num_heads, head_dim, "window_attn_v2")
    window, shift = fit_window(window_size, shift_size, input_resolution, "window_attn_v2")
    attn = WindowAttentionV2(channels, heads, window, hd, qkv_bias, attn_drop,
                             pretrained_window_size=pretrained_window_size, cpb_bound=cpb_bound)
    return WindowAttention2d(attn, window, shift)
