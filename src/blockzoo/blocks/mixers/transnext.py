"""TransNeXt's token mixers: aggregated attention (fine sliding-window tokens + coarse pooled tokens, one softmax), the
length-scaled cosine attention of the last stage, and the TransNeXt block; the ``aggregated_attn`` mixer.

Shi, "TransNeXt: Robust Foveal Visual Perception for Vision Transformers", CVPR 2024, arXiv:2311.17132 [S025]
(method: pixel-focused and aggregated attention, length-scaled cosine attention, the log-spaced position-bias
MLP). Official code DaiShiResearch/TransNeXt: ``classification/attention_native.py`` (the plain-PyTorch path; the
``swattention`` CUDA extension computes the same function faster) and ``classification/transnext.py``. Module and
parameter names are the official ones (``q``, ``kv``, ``sr``, ``norm``, ``cpb_fc1``, ``cpb_fc2``, ``temperature``,
``query_embedding``, ``relative_pos_bias_local``, ``learnable_tokens``, ``learnable_bias``, ``proj``; ``qkv`` in the
full attention), so an official state dict maps 1:1 (``blockzoo.models.transnext.from_official_state_dict``). The
Convolutional GLU channel mixer is :class:`blockzoo.blocks.common.mlp.ConvGLU` (the MetaFormer skeleton builds it too).

Aggregated attention (:class:`AggregatedAttention`; NHWC ``(B, H, W, C)`` in and out), per head of width ``d``:

- queries ``q = normalize(W_q x)``; keys and values ``W_kv`` (one Linear for both, shared by both token sets);
- fine tokens: the ``k x k`` sliding window around each query at full resolution (``F.unfold`` with zero padding,
  ``k = window_size``, 3 in the released models); keys L2-normalised; window positions outside the map are masked
  with ``-inf`` (official ``padding_mask``), plus a learnable relative bias per window offset
  (``relative_pos_bias_local``, ``heads x k^2``, trunc-normal std 0.0004);
- coarse tokens: ``LayerNorm(AvgPool(GELU(Conv1x1(x))))`` -- the official order: 1x1 conv ``sr``, GELU, adaptive
  average pooling to the pool grid, LayerNorm -- then ``W_kv``; their bias comes from a small MLP
  (``cpb_fc1`` 2 -> 512, ReLU, ``cpb_fc2`` 512 -> heads) over log-spaced relative coordinates
  ``sign(t) log2(1 + |t|) / log2(8)``, ``t = 8 (query - pooled position) / (pretrain size - 1)``, where a pooled
  position is the mean of the pixel coordinates it averages (official ``get_relative_position_cpb``);
- length-scaled cosine attention with the learnable query embedding (QLV): the logits of both sets are
  ``(q + query_embedding) * softplus(temperature) * log(n_local + n_pool) . k`` plus the biases, with
  ``n_local`` the number of window positions inside the map for that query (9 inside, 4 in a corner for k = 3) and
  ``softplus(temperature)`` initialised to 1/0.24; **one softmax** over the ``n_local + n_pool`` logits;
- learnable tokens (LKV): the window weights get ``q . learnable_tokens + learnable_bias`` (a query-dependent,
  key-independent affinity per window position; tokens trunc-normal 0.02, bias 0) added *after* the softmax, before
  they multiply the window values; the pooled weights multiply the pooled values; the sum goes through ``proj``.

Pool grid: ``H // sr_ratio x W // sr_ratio`` of the resolution the block is built for (official; at least 1, where
the official code would build an empty grid), or a fixed ``pool_size`` (official ``fixed_pool_size``; blockzoo clips
it to the map). ``pool_size=0`` leaves the coarse tokens out (the sliding-window attention alone, an ablation).

The last stage (``sr_ratio = 1`` in the official model) uses :class:`LengthScaledAttention`: full multi-head
attention with the same length-scaled cosine logits, query embedding and bias MLP over all token pairs (no pooling,
no learnable tokens).

Input sizes. The official classification code works only at the resolution it was built for (its masks, length
scales and bias tables are buffers of that size). Here the masks and length scales are computed from the input at
every forward (identical at the built size), and the bias tables, computed at the built size, are resampled
bilinearly (``align_corners=False``) to the input's query grid (and, in the full attention, key grid) as the
official detection code does (``transnext_native.py`` with ``is_extrapolation=False``); at the built size the
resampling is exact, so the function is the official one. Unlike the detection code, the pooled grid stays the
built one at every input size (the classification code's fixed ``AdaptiveAvgPool2d``; computed from cumulative sums,
:func:`adaptive_avg_pool`, so that it exports to ONNX at any size), so the cost stays linear in the number of
pixels. A map axis of one pixel (official: a division by ``size - 1 = 0``, NaN biases) normalises its
coordinates by 1. No branch depends on the input size, so the modules trace (torch.fx) and export (torch.export with
dynamic sizes, ONNX).

The ``aggregated_attn`` mixer (``create_model("convnext_atto", mixer="aggregated_attn")``) is the aggregated
attention alone (the host block has the norms and the MLP), NCHW -> NCHW. It declares
``Requires(fixed_resolution=True)``: the host gives it its feature size (the resolution of the bias table and of the
pool grid). Heads: ``num_heads``, else ``max(1, C // head_dim)`` with ``head_dim=32`` (the convention of the other
attention mixers; TransNeXt's own models use 24-channel heads); a width the heads do not divide is refused when the
host is built. Pool grid: ``pool_size=7`` by default (the 7x7 grid every aggregated stage of the released 224-px
models pools to), clipped to the map; ``sr_ratio``, when given, replaces it by the official ``map // sr_ratio``.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.blocks.common.drop import make_drop_path
from blockzoo.blocks.common.mlp import ConvGLU
from blockzoo.blocks.common.transformer import heads_for
from blockzoo.checks import check_int, check_odd
from blockzoo.errors import ConfigError, IncompatibleBlockError
from blockzoo.papers import TRANSNEXT
from blockzoo.registry import Claim, Requires, register_block

__all__ = ["relative_position_cpb", "local_window_mask", "adaptive_avg_pool", "AggregatedAttention",
           "LengthScaledAttention", "TransNeXtBlock", "AggregatedAttention2d", "pool_grid", "aggregated_attn"]

Size = tuple[int, int]
CPB_HIDDEN = 512                 # the bias MLP's hidden width (official)
_T = "tests/blocks/mixers/test_transnext.py::"


def _pair(v: int | Size) -> Size:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def relative_position_cpb(query_size: Size, key_size: Size, pretrain_size: Size | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(index, table)`` of the position-bias MLP (official ``get_relative_position_cpb``): ``table`` holds the
    distinct log-spaced relative coordinates ``(T, 2)`` between the ``query_size`` pixel grid and the ``key_size``
    grid of average-pooled positions, ``index`` (``Nq * Nk``, query-major) the row of each pair. Computed on the CPU
    (``torch.unique``), also when the model is built on another device, once per geometry (the blocks of a stage
    share it; each gets its own copy)."""
    index, table = _cpb_tables(tuple(query_size), tuple(key_size), _pair(pretrain_size or query_size))
    return index.clone(), table.clone()


@functools.lru_cache(maxsize=16)
@torch.no_grad()
def _cpb_tables(query_size: Size, key_size: Size, pre: Size) -> tuple[torch.Tensor, torch.Tensor]:
    axes = []
    for n, m, p in zip(query_size, key_size, pre):
        q = torch.arange(n, dtype=torch.float32, device="cpu")
        k = F.adaptive_avg_pool1d(q[None], m)[0]                       # the mean coordinate of each pooled cell
        axes.append((q, k, max(p - 1, 1)))
    (qh, kh, ph), (qw, kw, pw) = axes
    qh, qw = (t.flatten() for t in torch.meshgrid(qh, qw, indexing="ij"))
    kh, kw = (t.flatten() for t in torch.meshgrid(kh, kw, indexing="ij"))
    rel = torch.stack([(qh[:, None] - kh[None, :]) / ph * 8, (qw[:, None] - kw[None, :]) / pw * 8], dim=-1)
    table, index = torch.unique(rel.view(-1, 2), return_inverse=True, dim=0)
    table = torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)
    return index, table


def local_window_mask(x: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For an NHWC map ``x``: the number of window positions inside the map per query ``(N, 1)`` and the mask of
    those outside ``(N, k^2)`` (True = padding), from ``F.unfold`` of ones as the official ``get_seqlen_and_mask``;
    computed from the (possibly symbolic) size, so it traces."""
    ones = F.unfold(x.new_ones(1, 1, x.shape[1], x.shape[2]), window, padding=window // 2)[0]   # (k^2, N)
    return ones.sum(0)[:, None], ones.t() == 0


def adaptive_avg_pool(x: torch.Tensor, size: Size) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, size)`` of an NCHW map (the same cells, ``floor(i n / m) .. ceil((i + 1) n / m)``
    per axis) from cumulative sums in float32: the ONNX exporter takes adaptive pooling only when the grid divides
    the map, and this form exports and traces at any (symbolic) size."""
    dtype = x.dtype
    x = x.float()
    for dim, m in ((2, size[0]), (3, size[1])):
        n = x.shape[dim]
        pos, i = torch.arange(n, device=x.device), torch.arange(m, device=x.device)[:, None]
        # floor(i n / m) and ceil((i + 1) n / m) counted without a division (no op the MAC counter cannot place)
        start, end = ((pos + 1) * m <= i * n).sum(1), (pos * m < (i + 1) * n).sum(1)
        total = F.pad(x.cumsum(dim), (0, 0, 1, 0) if dim == 2 else (1, 0))
        count = (end - start).to(x.dtype)
        x = (total.index_select(dim, end) - total.index_select(dim, start)) / (count[:, None] if dim == 2 else count)
    return x.to(dtype)


def _resample_queries(bias: torch.Tensor, built: Size, size) -> torch.Tensor:
    """``(heads, Nb, K)`` biases of the ``built`` query grid -> ``(heads, H * W, K)`` for a ``size = (H, W)`` grid:
    bilinear (``align_corners=False``; the identity at the built size), as the official detection code."""
    heads, _, k = bias.shape
    grid = bias.transpose(1, 2).reshape(heads, k, built[0], built[1])
    return F.interpolate(grid, size=size, mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)


class _PositionBiasMLP(nn.Module):
    """The shared pieces of both attentions: heads, temperature, query embedding, the bias MLP and its tables."""

    def __init__(self, dim: int, num_heads: int, input_resolution: Size, key_grid: Size | None,
                 pretrain_resolution: Size | None):
        super().__init__()
        owner = type(self).__name__
        check_int(num_heads, "num_heads", min_value=1, owner=owner)
        if dim % num_heads:
            raise IncompatibleBlockError(f"{owner}: {dim} channels do not split into {num_heads} heads; choose "
                                         f"num_heads (or head_dim) dividing the width")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.input_resolution = _pair(input_resolution)
        for r in self.input_resolution:
            check_int(r, "input_resolution", min_value=1, owner=owner)
        # softplus(temperature) = 1 / 0.24 at init (official)
        self.temperature = nn.Parameter(torch.full((num_heads, 1, 1), math.log(math.expm1(1 / 0.24))))
        self.query_embedding = nn.Parameter(torch.zeros(num_heads, 1, self.head_dim))
        if key_grid is not None:
            self.cpb_fc1 = nn.Linear(2, CPB_HIDDEN)
            self.cpb_act = nn.ReLU(inplace=True)
            self.cpb_fc2 = nn.Linear(CPB_HIDDEN, num_heads)
            index, table = relative_position_cpb(self.input_resolution, key_grid, pretrain_resolution)
            self.register_buffer("relative_pos_index", index, persistent=False)
            self.register_buffer("relative_coords_table", table, persistent=False)

    def init_weights(self) -> None:
        nn.init.trunc_normal_(self.query_embedding, std=0.02)

    def table_bias(self) -> torch.Tensor:
        """``(heads, Nq * Nk)``: the bias MLP evaluated on the coordinate table, read for every pair."""
        t = self.cpb_fc2(self.cpb_act(self.cpb_fc1(self.relative_coords_table)))
        return t.transpose(0, 1)[:, self.relative_pos_index]

    def length_scale(self, n: torch.Tensor) -> torch.Tensor:
        """``softplus(temperature) * log(n)``: the length-scaled logit factor for ``n`` keys per query."""
        return F.softplus(self.temperature) * torch.log(n)


class AggregatedAttention(_PositionBiasMLP):
    """TransNeXt's aggregated attention on NHWC maps (see the module docstring); ``pool_size`` ``(ph, pw)``, ``(0,
    0)`` for none; built for ``input_resolution``."""

    def __init__(self, dim: int, num_heads: int, input_resolution: Size, pool_size: Size, window_size: int = 3,
                 qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 pretrain_resolution: Size | None = None):
        pool_size = _pair(pool_size)
        super().__init__(dim, num_heads, input_resolution, pool_size if min(pool_size) > 0 else None,
                         pretrain_resolution)
        self.pool_size, self.pool_len = pool_size, pool_size[0] * pool_size[1]
        self.window_size = check_odd(window_size, "window_size", owner="AggregatedAttention")
        self.local_len = window_size ** 2
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop > 0 else nn.Identity()
        if self.pool_len:
            self.sr = nn.Conv2d(dim, dim, 1)
            self.norm = nn.LayerNorm(dim)
            self.act = nn.GELU()
        h, d, n = num_heads, self.head_dim, self.local_len
        self.relative_pos_bias_local = nn.Parameter(torch.zeros(h, n))
        self.learnable_tokens = nn.Parameter(torch.zeros(h, d, n))
        self.learnable_bias = nn.Parameter(torch.zeros(h, 1, n))
        self.init_weights()

    def init_weights(self) -> None:
        super().init_weights()
        nn.init.trunc_normal_(self.relative_pos_bias_local, std=0.0004)
        nn.init.trunc_normal_(self.learnable_tokens, std=0.02)
        nn.init.zeros_(self.learnable_bias)

    def pool_bias(self, size) -> torch.Tensor:
        """``(heads, H * W, n_pool)``: the pooled tokens' position bias for an ``H x W`` query grid."""
        bias = self.table_bias().view(self.num_heads, -1, self.pool_len)
        return _resample_queries(bias, self.input_resolution, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, hh, ww, c = x.shape
        heads, d, k = self.num_heads, self.head_dim, self.window_size
        q_norm = F.normalize(self.q(x).reshape(b, -1, heads, d).transpose(1, 2), dim=-1)     # (B, h, N, d)
        n_local, padding = local_window_mask(x, k)
        q_scaled = (q_norm + self.query_embedding) * self.length_scale(n_local + self.pool_len)
        key, value = self.kv(x).chunk(2, dim=-1)
        key = F.normalize(key.reshape(b, hh, ww, heads, d), dim=-1).reshape(b, hh, ww, c)
        kv_local = torch.cat([key, value], dim=-1).permute(0, 3, 1, 2)
        k_local, v_local = F.unfold(kv_local, k, padding=k // 2).reshape(
            b, 2 * heads, d, self.local_len, -1).permute(0, 1, 4, 2, 3).chunk(2, dim=1)       # (B, h, N, d, k^2)
        attn = ((q_scaled.unsqueeze(-2) @ k_local).squeeze(-2) + self.relative_pos_bias_local.unsqueeze(1)
                ).masked_fill(padding, float("-inf"))
        if self.pool_len:
            pooled = adaptive_avg_pool(self.act(self.sr(x.permute(0, 3, 1, 2))), self.pool_size)
            pooled = self.norm(pooled.flatten(2).transpose(1, 2))                              # (B, P, C)
            k_pool, v_pool = self.kv(pooled).reshape(b, self.pool_len, 2 * heads, d).transpose(1, 2).chunk(2, dim=1)
            attn_pool = q_scaled @ F.normalize(k_pool, dim=-1).transpose(-2, -1) + self.pool_bias(x.shape[1:3])
            attn = self.attn_drop(torch.cat([attn, attn_pool], dim=-1).softmax(dim=-1))
            attn, attn_pool = attn.split([self.local_len, self.pool_len], dim=-1)
        else:
            attn = self.attn_drop(attn.softmax(dim=-1))
        weights = q_norm @ self.learnable_tokens + self.learnable_bias + attn
        out = (weights.unsqueeze(-2) @ v_local.transpose(-2, -1)).squeeze(-2)                  # (B, h, N, d)
        if self.pool_len:
            out = out + attn_pool @ v_pool
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, hh, ww, c)))


class LengthScaledAttention(_PositionBiasMLP):
    """Full multi-head attention of TransNeXt's last stage on NHWC maps: length-scaled cosine logits with the query
    embedding and the bias MLP over every token pair (official ``Attention``)."""

    def __init__(self, dim: int, num_heads: int, input_resolution: Size, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, pretrain_resolution: Size | None = None):
        super().__init__(dim, num_heads, input_resolution, _pair(input_resolution), pretrain_resolution)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop > 0 else nn.Identity()
        self.init_weights()

    def position_bias(self, size) -> torch.Tensor:
        """``(heads, N, N)`` for an ``H x W`` map: the table resampled along the query and the key grid."""
        built = self.input_resolution
        bias = self.table_bias().view(self.num_heads, built[0] * built[1], -1)
        bias = _resample_queries(bias, built, size).transpose(1, 2)       # (heads, Nb keys, N queries)
        return _resample_queries(bias, built, size).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, hh, ww, c = x.shape
        q, k, v = self.qkv(x).reshape(b, -1, 3 * self.num_heads, self.head_dim).transpose(1, 2).chunk(3, dim=1)
        n = torch.scalar_tensor(hh * ww, dtype=torch.float32, device=x.device)
        attn = ((F.normalize(q, dim=-1) + self.query_embedding) * self.length_scale(n)
                ) @ F.normalize(k, dim=-1).transpose(-2, -1) + self.position_bias(x.shape[1:3])
        out = self.attn_drop(attn.softmax(dim=-1)) @ v
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, hh, ww, c)))


class TransNeXtBlock(nn.Module):
    """TransNeXt block on NHWC maps: ``x + DP(attn(LN(x)))``, ``x + DP(ConvGLU(LN(x)))`` (pre-norm; ``attn`` built by
    the caller; ConvGLU hidden width ``int(2/3 * mlp_ratio * dim)``, official)."""

    def __init__(self, dim: int, attn: nn.Module, mlp_ratio: float = 4.0, drop: float = 0.0, drop_path: float = 0.0,
                 act_layer: Callable[[], nn.Module] = nn.GELU, norm_eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = ConvGLU(dim, int(dim * mlp_ratio), act_layer, drop=drop)
        self.drop_path = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp.forward_nhwc(self.norm2(x)))


class AggregatedAttention2d(nn.Module):
    """An NHWC attention module as an NCHW -> NCHW token mixer."""

    def __init__(self, attn: nn.Module):
        super().__init__()
        self.attn = attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def pool_grid(resolution: Size, sr_ratio: int | None, pool_size: int, owner: str) -> Size:
    """The pooled grid on a ``resolution`` map: ``resolution // sr_ratio`` per axis (at least 1; official) when
    ``sr_ratio`` is given, else the fixed ``pool_size`` clipped to the map (0: no pooled tokens)."""
    if sr_ratio is not None:
        check_int(sr_ratio, "sr_ratio", min_value=1, owner=owner)
        return max(1, resolution[0] // sr_ratio), max(1, resolution[1] // sr_ratio)
    check_int(pool_size, "pool_size", min_value=0, owner=owner)
    return min(pool_size, resolution[0]), min(pool_size, resolution[1])


@register_block(
    "aggregated_attn", slot="mixer", paper=TRANSNEXT, family="transnext", requires=Requires(fixed_resolution=True),
    summary="TransNeXt aggregated attention: each query attends to its 3x3 window at full resolution and to pooled "
            "tokens in one softmax (length-scaled cosine logits, query embedding, learnable tokens, MLP bias)",
    claims=(Claim("a window covering the map and no pooled tokens is plain cosine attention over all tokens (with the "
                  "bias terms off)", _T + "test_whole_map_window_without_pool_is_full_attention"),
            Claim("with the window logits off, a 1x1 pooled map gives every query the pooled token's value",
                  _T + "test_pooled_part_alone_on_a_1x1_pool"),
            Claim("window positions outside the map get no weight and the length scale counts only those inside",
                  _T + "test_border_mask_and_length_scale"),
            Claim("the same function as a per-pixel loop over each query's window and the pooled tokens",
                  _T + "test_matches_a_per_pixel_reference"),
            Claim("the same outputs as the official plain-PyTorch model for the same weights (max |diff| 2e-6)",
                  "tests/models/test_transnext.py::test_same_function_as_the_official_model")),
    notes="Needs the feature size (bias table and pool grid); other sizes resample the bias bilinearly.",
    usage='blk = create_block("aggregated_attn", 64, input_resolution=(14, 14))   # NCHW in -> NCHW out\n'
          'model = create_model("convnext_atto", img_size=32, stem="small", mixer="aggregated_attn")',
)
def aggregated_attn(channels: int, num_heads: int | None = None, head_dim: int = 32, window_size: int = 3,
                    pool_size: int = 7, sr_ratio: int | None = None, qkv_bias: bool = True,
                    attn_drop: float = 0.0, input_resolution: Size | None = None) -> nn.Module:
    owner = "aggregated_attn"
    if input_resolution is None:
        raise ConfigError(f"{owner} needs input_resolution=(H, W), the feature size its bias table and pool grid are "
                          f"built for (a host model passes it)")
    res = _pair(input_resolution)
    heads = heads_for(channels, num_heads, head_dim, owner)
    grid = pool_grid(res, sr_ratio, pool_size, owner)
    return AggregatedAttention2d(AggregatedAttention(channels, heads, res, grid, window_size, qkv_bias, attn_drop))
