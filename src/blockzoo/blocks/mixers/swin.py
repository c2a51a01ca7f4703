"""Swin Transformer's shifted-window attention: window partition, cyclic shift with its attention mask, relative
position bias, the Swin block and patch merging; the ``window_attn`` mixer.

Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows", ICCV 2021, arXiv:2103.14030
[S085]; official code microsoft/Swin-Transformer (``models/swin_transformer.py``); timm's port
(``timm/models/swin_transformer.py``) uses the same module names, which blockzoo keeps (``attn.qkv``,
``attn.relative_position_bias_table``, ``attn.proj``, ``norm1``, ``mlp.fc1`` ...), so timm's weights load 1:1.

- Window attention (W-MSA, paper Sec. 3.2): the map is cut into non-overlapping ``M x M`` windows and multi-head
  self-attention runs inside each window, ``softmax(Q K^T / sqrt(d) + B) V``, with a relative position bias ``B``
  read from a learnable ``(2M-1)^2 x heads`` table (Eq. 4; trunc-normal(0.02) init, official). Its cost is linear in
  the number of tokens (Eq. 2): ``4 h w C^2 + 2 M^2 h w C`` multiply-adds, exactly what
  ``blockzoo.profile.count_macs`` counts for it.
- Shifted windows (SW-MSA): every second block rolls the map by ``(-M/2, -M/2)`` before partitioning (the paper's
  "cyclic shift", Fig. 4) and back afterwards; tokens that the roll brought together from opposite borders must not
  attend to each other, so a mask adds ``-inf`` to their logits (the official code adds ``-100``: the same outputs in
  float32, where ``exp(-100)`` is a subnormal number far below the other weights' precision, but subnormals are slow
  on CPUs -- with ``-100`` a Swin-T forward at 128 px took 6x longer, in the Linears after the attention; every query
  always sees itself, so no row is fully masked).
- A feature map not larger than the window (official rule; the official code tests ``min(H, W)``, blockzoo each
  axis as timm does, the same for square maps): the window shrinks to the map and the shift is 0 (the last Swin-T
  stage at 224 px: a 7x7 map, one window, no shift). This is decided when the block is built, from the feature size
  the backbone knows (``input_resolution``).
- Other input sizes than the built one (not covered by the paper or the official classification code): the map is
  zero-padded to a multiple of the window after the shift, as timm's newer port does; unlike timm (and the official
  detection code), which let the padded zeros be attended, blockzoo masks the padding out as keys, so a real token
  only ever attends to the real tokens of its window. At the paper settings (224 px, window 7) nothing is padded
  and the function is the official one.
- Patch merging (Sec. 3.1): the 2x2 neighbours are concatenated (official order ``x[0::2, 0::2]``,
  ``x[1::2, 0::2]``, ``x[0::2, 1::2]``, ``x[1::2, 1::2]``), layer-normed and linearly reduced 4C -> 2C without bias;
  an odd map is zero-padded first (timm).

The ``window_attn`` mixer (``create_model("convnext_tiny", mixer="window_attn")``) is the window attention alone
(no norm, no MLP: the host block has them), NCHW -> NCHW. It declares ``Requires(fixed_resolution=True)`` so the
host tells it its feature size and it applies the official rule above; standalone (no ``input_resolution``) it
keeps its window and pads. ``num_heads`` defaults to ``max(1, C // head_dim)`` with ``head_dim=32`` (timm's
MetaFormer attention). Swin's alternation of plain and shifted windows in a host skeleton is a per-block value:
``mixer=PerBlock(lambda s, b: f"window_attn(shift_size={3 if b % 2 else 0})")``.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.blocks.common.drop import make_drop_path
from blockzoo.blocks.common.mlp import Mlp
from blockzoo.checks import check_int
from blockzoo.errors import ConfigError
from blockzoo.papers import SWIN
from blockzoo.registry import Claim, Requires, register_block

__all__ = ["MASK_VALUE", "resolve_heads", "fit_window", "window_partition", "window_reverse",
           "relative_position_index", "window_mask", "shifted_window_attention", "WindowAttention", "SwinBlock",
           "PatchMerging", "WindowAttention2d", "window_attn"]

MASK_VALUE = float("-inf")   # the additive mask for token pairs that must not attend to each other (official: -100)
_T = "tests/blocks/mixers/test_swin.py::"
_TM = "tests/models/test_swin.py::"
Size = tuple[int, int]


def _pair(v: int | Size) -> Size:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def resolve_heads(channels: int, num_heads: int | None, head_dim: int | None, owner: str) -> tuple[int, int]:
    """``(num_heads, head_dim)``: given heads split ``channels`` evenly (``head_dim`` may override the width);
    without ``num_heads``, ``max(1, channels // head_dim)`` heads of ``head_dim`` (32) channels each."""
    if num_heads is None:
        head_dim = check_int(32 if head_dim is None else head_dim, "head_dim", min_value=1, owner=owner)
        return max(1, channels // head_dim), head_dim
    num_heads = check_int(num_heads, "num_heads", min_value=1, owner=owner)
    if head_dim is None:
        if channels % num_heads:
            raise ConfigError(f"{owner}: {channels} channels do not split into num_heads={num_heads} heads; use a "
                              f"num_heads that divides {channels} or give head_dim")
        return num_heads, channels // num_heads
    return num_heads, check_int(head_dim, "head_dim", min_value=1, owner=owner)


def fit_window(window: int | Size, shift: int | Size, resolution: Size | None, owner: str) -> tuple[Size, Size]:
    """The window and shift a block uses on a ``resolution`` map (official rule, per axis: a map not larger than the
    window gets one window of its own size and no shift); ``resolution=None`` keeps them."""
    window, shift = _pair(window), _pair(shift)
    for w, s in zip(window, shift):
        check_int(w, "window_size", min_value=1, owner=owner)
        check_int(s, "shift_size", min_value=0, owner=owner)
        if s >= w:
            raise ConfigError(f"{owner}: shift_size {s} must be smaller than the window {w} (Swin shifts by "
                              f"window // 2)")
    if resolution is None:
        return window, shift
    fitted = tuple(min(r, w) for r, w in zip(resolution, window))
    shifted = tuple(0 if r <= w else s for r, w, s in zip(resolution, window, shift))
    return fitted, shifted  # type: ignore[return-value]


def window_partition(x: torch.Tensor, window: Size) -> torch.Tensor:
    """``(B, H, W, C)`` (H, W multiples of the window) -> ``(B, nW, wh * ww, C)``, windows in row-major order."""
    wh, ww = window
    b, nh, nw, c = x.shape[0], x.shape[1] // wh, x.shape[2] // ww, x.shape[3]
    x = x.reshape(b, nh, wh, nw, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, nh * nw, wh * ww, c)


def window_reverse(windows: torch.Tensor, window: Size, nh: int, nw: int) -> torch.Tensor:
    """The inverse of :func:`window_partition` for ``nh x nw`` windows: ``(B, nW, wh * ww, C)`` ->
    ``(B, nh * wh, nw * ww, C)``."""
    wh, ww = window
    b, c = windows.shape[0], windows.shape[3]
    x = windows.reshape(b, nh, nw, wh, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, nh * wh, nw * ww, c)


def relative_position_index(window: Size, device=None) -> torch.Tensor:
    """``(N, N)`` index into the ``(2wh-1)(2ww-1)`` bias table for every query/key pair of a window (N = wh * ww):
    ``(dy + wh - 1) * (2ww - 1) + (dx + ww - 1)`` with ``(dy, dx)`` = query position - key position (official)."""
    wh, ww = window
    ys, xs = torch.meshgrid(torch.arange(wh, device=device), torch.arange(ww, device=device), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy, dx = ys[:, None] - ys[None, :], xs[:, None] - xs[None, :]
    return (dy + wh - 1) * (2 * ww - 1) + (dx + ww - 1)


def window_mask(h, w, window: Size, shift: Size, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(nW, N, N)`` additive mask (0 or :data:`MASK_VALUE`) for the windows of an ``h x w`` map rolled by
    ``-shift`` and zero-padded to a multiple of the window: along each axis a position is original (0), wrapped
    around by the roll (1) or padding (2); two tokens may attend to each other only with the same label on both
    axes. Built with tensor ops on the (possibly symbolic) sizes, so it traces for any input size."""
    labels = []
    for n, win, s in ((h, window[0], shift[0]), (w, window[1], shift[1])):
        pos = torch.arange((n + win - 1) // win * win, device=device)
        labels.append((pos >= n - s).long() + (pos >= n).long())   # s = 0: nothing wraps (label 0 or 2)
    lab = (labels[0][:, None] * 3 + labels[1][None, :])[None, :, :, None]
    lab = window_partition(lab, window)[0, :, :, 0]                   # (nW, N)
    return torch.where(lab[:, :, None] != lab[:, None, :], MASK_VALUE, 0.0).to(dtype)


def shifted_window_attention(x: torch.Tensor, attn: nn.Module, window: Size, shift: Size) -> torch.Tensor:
    """(S)W-MSA on an NHWC map: roll by ``-shift``, pad to the window, partition, ``attn(windows, mask)``, merge,
    crop, roll back. ``attn`` maps ``(B, nW, N, C)`` windows and an ``(nW, N, N)`` additive mask to windows."""
    h, w = x.shape[1], x.shape[2]
    nh, nw = (h + window[0] - 1) // window[0], (w + window[1] - 1) // window[1]     # windows per axis (ceil)
    shifted = any(shift)
    if shifted:
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    pad = (0, 0, 0, nw * window[1] - w, 0, nh * window[0] - h)
    mask = window_mask(h, w, window, shift, x.device, x.dtype)
    y = window_reverse(attn(window_partition(F.pad(x, pad), window), mask), window, nh, nw)
    y = F.pad(y, tuple(-p for p in pad))            # crop (a copy, not a view: keeps torch.export's shapes simple)
    return torch.roll(y, shifts=shift, dims=(1, 2)) if shifted else y


class WindowAttention(nn.Module):
    """W-MSA inside each window with a learnable relative position bias (timm/official names and layout):
    ``(B, nW, N, C)`` windows + ``(nW, N, N)`` mask -> ``(B, nW, N, C)``."""

    def __init__(self, dim: int, num_heads: int, window_size: Size, head_dim: int | None = None,
                 qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.window_size, self.num_heads = _pair(window_size), num_heads
        self.head_dim = head_dim or dim // num_heads
        wh, ww = self.window_size
        attn_dim = self.head_dim * num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * wh - 1) * (2 * ww - 1), num_heads))
        self.register_buffer("relative_position_index", relative_position_index(self.window_size), persistent=False)
        self.qkv = nn.Linear(dim, 3 * attn_dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(attn_dim, dim)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop > 0 else nn.Identity()
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias(self) -> torch.Tensor:
        """``(heads, N, N)``: the table read at every query/key offset of the window."""
        n = self.window_size[0] * self.window_size[1]
        return self.relative_position_bias_table[self.relative_position_index.flatten()].view(n, n, -1).permute(
            2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x).reshape(x.shape[0], x.shape[1], x.shape[2], 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)                     # (B, nW, heads, N, d) each
        bias = (self.position_bias()[None] + mask[:, None]).to(q.dtype)       # (nW, heads, N, N)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                           dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(y.transpose(2, 3).flatten(3)))


class SwinBlock(nn.Module):
    """Swin Transformer block on NHWC maps (paper Eq. 3): ``x + DP((S)W-MSA(LN(x)))``, then ``x + DP(MLP(LN(x)))``
    (pre-norm; ``shift_size`` 0 for W-MSA, ``window // 2`` for SW-MSA)."""

    def __init__(self, dim: int, num_heads: int, *, window_size: int | Size = 7, shift_size: int | Size = 0,
                 input_resolution: Size | None = None, head_dim: int | None = None, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_path: float = 0.0, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 act_layer: Callable[[], nn.Module] = nn.GELU, norm_eps: float = 1e-5):
        super().__init__()
        self.window_size, self.shift_size = fit_window(window_size, shift_size, input_resolution, "SwinBlock")
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = WindowAttention(dim, num_heads, self.window_size, head_dim, qkv_bias, attn_drop, proj_drop)
        self.drop_path1 = make_drop_path(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer, drop=proj_drop)
        self.drop_path2 = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(shifted_window_attention(self.norm1(x), self.attn, self.window_size,
                                                         self.shift_size))
        return x + self.drop_path2(self.mlp.forward_nhwc(self.norm2(x)))


class PatchMerging(nn.Module):
    """Swin's downsampling on NHWC maps: concatenate each 2x2 neighbourhood (4C), ``LayerNorm(4C)``, ``Linear(4C,
    out, bias=False)``; ``norm_first=False`` is Swin V2's order (reduce, then ``LayerNorm(out)``)."""

    def __init__(self, dim: int, out_dim: int | None = None, norm_first: bool = True, norm_eps: float = 1e-5):
        super().__init__()
        out_dim = out_dim or 2 * dim
        self.norm_first = norm_first
        self.norm = nn.LayerNorm(4 * dim if norm_first else out_dim, eps=norm_eps)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    @staticmethod
    def out_size(size: Size | None) -> Size | None:
        return None if size is None else ((size[0] + 1) // 2, (size[1] + 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h2, w2, c = (x.shape[1] + 1) // 2, (x.shape[2] + 1) // 2, x.shape[3]
        x = F.pad(x, (0, 0, 0, 2 * w2 - x.shape[2], 0, 2 * h2 - x.shape[1]))
        # (B, H/2, 2, W/2, 2, C) -> (B, H/2, W/2, [dx, dy, C]): the official x0, x1, x2, x3 order
        x = x.reshape(x.shape[0], h2, 2, w2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(x.shape[0], h2, w2, 4 * c)
        return self.reduction(self.norm(x)) if self.norm_first else self.norm(self.reduction(x))


class WindowAttention2d(nn.Module):
    """A window-attention module (``attn``: V1 or V2) as an NCHW -> NCHW token mixer, with its window and shift."""

    def __init__(self, attn: nn.Module, window_size: Size, shift_size: Size):
        super().__init__()
        self.attn, self.window_size, self.shift_size = attn, window_size, shift_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = shifted_window_attention(x.permute(0, 2, 3, 1), self.attn, self.window_size, self.shift_size)
        return y.permute(0, 3, 1, 2)


@register_block(
    "window_attn", slot="mixer", paper=SWIN, family="swin", requires=Requires(fixed_resolution=True),
    summary="Swin window attention with relative position bias (W-MSA; shift_size > 0: SW-MSA with the shift mask)",
    claims=(Claim("window partition and reverse are inverse", _T + "test_window_partition_and_reverse_round_trip"),
            Claim("a Swin block with shift 0 is plain attention with the relative bias in each window on its own",
                  _T + "test_shift_zero_equals_independent_windows"),
            Claim("the shift mask blocks attention between tokens the cyclic shift brought together",
                  _T + "test_shift_mask_blocks_wrapped_regions"),
            Claim("linear cost in image size: a Swin stage's attention MACs double when the area doubles",
                  _TM + "test_stage_cost_is_linear_in_area"),),
    notes="Needs the feature size (window shrinks to a smaller map, official); pads other sizes and masks the padding.",
)
def window_attn(channels: int, window_size: int = 7, shift_size: int = 0, num_heads: int | None = None,
                head_dim: int | None = None, qkv_bias: bool = True, attn_drop: float = 0.0,
                input_resolution: Size | None = None) -> nn.Module:
    heads, hd = resolve_heads(channels, num_heads, head_dim, "window_attn")
    window, shift = fit_window(window_size, shift_size, input_resolution, "window_attn")
    return WindowAttention2d(WindowAttention(channels, heads, window, hd, qkv_bias, attn_drop), window, shift)
