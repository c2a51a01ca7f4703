"""The MOAT block and its attention: Yang et al., "MOAT: Alternating Mobile Convolution and Attention Brings Strong
Vision Models", ICLR 2023, arXiv:2210.01820 [S053]; official TensorFlow code google-research/deeplab2
(``model/layers/moat_blocks.py``, ``model/layers/moat_attention.py``, ``model/pixel_encoder/moat.py``).

The MOAT block (paper Sec. 3, Fig. 2) starts from a pre-norm transformer block, replaces its MLP by a mobile
convolution (MBConv, an inverted residual) and moves it *before* the self-attention::

    x = shortcut(x) + MBConv(x)          # pre-norm BN -> 1x1 expand -> BN -> act -> 3x3 dw (stride) -> BN -> act
                                         #   -> [attn slot] -> 1x1 shrink (with bias)
    x = x + Attention(LayerNorm(x))      # no MLP afterwards

Facts from the official code (the paper leaves them open):

- :class:`MBConv`: the expansion is ``expansion * out_channels`` (4x the *output* width); the 1x1 expansion and the
  depthwise conv have no bias, the 1x1 shrink conv has one and no norm after it (the next block's pre-norm
  normalises); downsampling is the depthwise conv's stride, and the shortcut is then average pooling
  (``pool_size`` 2, stride 2: the official classification setting; 3 for dense prediction) followed by a 1x1 conv
  with bias where the width changes. The MBConv-only blocks of the first two stages carry squeeze-and-excitation on
  the expanded features (``se_ratio`` 0.25 of the *output* width = ``C_hidden / 16`` at expansion 4, i.e. blockzoo's
  ``se`` with its default r = 16, exactly); MOAT blocks have none. The official SE uses SiLU between its FCs,
  blockzoo's ``se`` the SENet paper's ReLU (same parameters and MACs). Activation GELU, BatchNorm.
- :class:`MOATAttention`: multi-head attention with ``head_dim`` 32 (``num_heads = C // 32``), separate q/k/v/o
  projections with biases (stored as one ``qkv`` Linear and ``proj``, as Swin/timm: the same parameters) and a
  2-D multi-head relative position bias (``'2d_multi_head'``): a learnable ``(2P-1) x (2P-1)`` table per head for a
  ``P x P`` *position-embedding size* (14 at stride 16, 7 at stride 32), resized bilinearly to
  ``(2h-1) x (2w-1)`` when the attended window is ``h x w`` != ``P x P`` (``tf.image.resize``, half-pixel centres:
  ``F.interpolate(..., "bilinear", align_corners=False)``), so the parameter count does not depend on the input size.
  At the paper's 224 px setting the windows are the 14x14 / 7x7 maps: no resizing. The table is stored in Swin's
  layout (``relative_position_bias_table``, ``((2P-1)^2, heads)``, offset query - key); the official one is
  ``(heads, 2P-1, 2P-1)`` indexed by key - query, a flip of the same table. Init (official): normal(0.02).
- Global attention (the paper's classification setting) attends over the whole feature map; for large inputs the
  paper switches to non-shifted window attention (``window_size``): the MBConv exchanges information across windows,
  so no shift is needed. Both run through Swin's window partition (:func:`~blockzoo.blocks.mixers.swin.
  shifted_window_attention` with shift 0); global attention is the window equal to the feature map the block is
  built for (``input_resolution``). Another input size than the built one is cut into windows of that size, padded
  and masked as in :mod:`~blockzoo.blocks.mixers.swin` (the official code builds the model for one input shape).
  Standalone, without ``input_resolution``, a global ``moat_attn`` cannot know its map and uses 7x7 windows.
- ``rel_pos=False`` drops the bias (the official "no_pe" checkpoints).
- Padding: PyTorch's symmetric ``padding=1`` for the strided 3x3 convs; TensorFlow's ``'same'`` puts the extra row
  and column at the bottom/right (same output sizes and parameters, a half-pixel shift of the sampling grid).

Registered: the ``moat_attn`` mixer (the attention alone, NCHW -> NCHW, no norm: a host block brings its own).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.blocks.common.drop import make_drop_path
from blockzoo.blocks.common.layers import ConvNormAct, LayerNorm2d, make_norm, out_size
from blockzoo.blocks.mixers.swin import (
    WindowAttention,
    WindowAttention2d,
    fit_window,
    relative_position_index,
    resolve_heads,
)
from blockzoo.checks import check_choice, check_int
from blockzoo.papers import MOAT
from blockzoo.registry import Claim, Requires, SlotContext, build_slot, register_block

__all__ = ["MOATAttention", "MBConv", "PooledShortcut", "MOATBlock", "moat_attn", "STANDALONE_WINDOW"]

Size = tuple[int, int]
STANDALONE_WINDOW = 7   # the window of a global moat_attn built without input_resolution
_T = "tests/blocks/mixers/test_moat.py::"


def _pair(v: int | Size) -> Size:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class MOATAttention(WindowAttention):
    """Multi-head attention inside ``window_size`` windows ``(B, nW, N, C)`` with MOAT's relative position bias:
    a table for a ``position_size`` window (default: the window itself), resized bilinearly to the window
    (see the module docstring); ``rel_pos=False``: no bias (and no table)."""

    def __init__(self, dim: int, num_heads: int, window_size: int | Size, position_size: int | Size | None = None,
                 head_dim: int | None = None, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 rel_pos: bool = True):
        window = _pair(window_size)
        position = window if position_size is None else _pair(position_size)
        for p in position:
            check_int(p, "position_size", min_value=1, owner="moat_attn")
        super().__init__(dim, num_heads, position, head_dim, qkv_bias, attn_drop, proj_drop)
        self.position_size, self.window_size = position, window
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        if not rel_pos:
            self.relative_position_bias_table = None

    def init_weights(self) -> None:
        if self.relative_position_bias_table is not None:
            nn.init.normal_(self.relative_position_bias_table, std=0.02)    # official: normal(0.02)

    def bias_grid(self) -> torch.Tensor:
        """The table as ``(heads, 2h-1, 2w-1)`` for the window ``h x w`` (resized from the position size)."""
        (ph, pw), (wh, ww) = self.position_size, self.window_size
        grid = self.relative_position_bias_table.t().reshape(self.num_heads, 2 * ph - 1, 2 * pw - 1)
        if (ph, pw) != (wh, ww):
            grid = F.interpolate(grid[None], size=(2 * wh - 1, 2 * ww - 1), mode="bilinear", align_corners=False)[0]
        return grid

    def position_bias(self) -> torch.Tensor:
        """``(heads, N, N)`` bias of every query/key pair of a window (``(1, N, N)`` zeros with ``rel_pos=False``)."""
        n = self.window_size[0] * self.window_size[1]
        if self.relative_position_bias_table is None:
            return self.qkv.weight.new_zeros(1, n, n)
        return self.bias_grid().flatten(1)[:, self.relative_position_index.flatten()].view(-1, n, n)


@register_block(
    "moat_attn", slot="mixer", paper=MOAT, family="moat", requires=Requires(fixed_resolution=True),
    summary="MOAT's attention: global (window = the feature map) or non-shifted window MHSA with a resizable 2-D "
            "relative position bias, head_dim 32",
    claims=(Claim("a window covering the whole map equals global attention with the relative bias",
                  _T + "test_window_covering_map_equals_global_attention"),
            Claim("non-shifted window attention = global attention on each window on its own",
                  _T + "test_windows_are_independent_global_attentions"),
            Claim("the position-embedding table has a fixed size, resized to the window",
                  _T + "test_position_table_is_resized_to_the_window")),
    notes="Global attention needs the feature size (a backbone passes it); standalone it uses 7x7 windows.",
)
def moat_attn(channels: int, window_size: int | None = None, position_size: int | None = None, rel_pos: bool = True,
              num_heads: int | None = None, head_dim: int | None = None, qkv_bias: bool = True,
              attn_drop: float = 0.0, input_resolution: Size | None = None) -> nn.Module:
    heads, hd = resolve_heads(channels, num_heads, head_dim, "moat_attn")
    if window_size is None:
        window = STANDALONE_WINDOW if input_resolution is None else input_resolution
    else:
        window = check_int(window_size, "window_size", min_value=1, owner="moat_attn")
    window, shift = fit_window(window, 0, input_resolution, "moat_attn")
    attn = MOATAttention(channels, heads, window, position_size, hd, qkv_bias, attn_drop, rel_pos=rel_pos)
    return WindowAttention2d(attn, window, shift)


def _standalone_ctx(position: str, feat_size: Size | None) -> SlotContext:
    """The slot context of a block built outside a backbone (its slots still see the feature size)."""
    return SlotContext(model="MOATBlock", position=position, feat_size=feat_size)


class PooledShortcut(nn.Sequential):
    """The MBConv shortcut: average pooling (``pool_size``, the block's stride; padding excluded from the mean)
    where the block downsamples, then a 1x1 conv with bias where the width changes (else identities)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, pool_size: int = 2):
        check_choice(pool_size, "pool_size", (2, 3), owner="MBConv")
        odd = pool_size % 2    # 3: padding 1 on each side; 2: the last window may overhang (ceil), both -> ceil(H/s)
        pool = (nn.AvgPool2d(pool_size, stride, padding=pool_size // 2 if odd else 0, ceil_mode=not odd,
                             count_include_pad=False) if stride > 1 else nn.Identity())
        conv = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        super().__init__()
        self.pool, self.conv = pool, conv


class MBConv(nn.Module):
    """MOAT's mobile convolution (official ``MBConvBlock``): ``shortcut(x) + shrink(attn(dw(expand(pre_norm(x)))))``
    with ``hidden = expansion * out_channels`` (see the module docstring). ``attn`` (a slot value) sits on the
    expanded features after the depthwise conv's activation (SE in the paper's MBConv blocks)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expansion: float = 4.0, *,
                 attn: Any = "none", norm: Any = "bn", act: Any = "gelu", pool_size: int = 2, ctx=None,
                 feat_size: Size | None = None, drop_path: float = 0.0):
        super().__init__()
        check_choice(stride, "stride", (1, 2), owner="MBConv")
        ctx = ctx or _standalone_ctx
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.hidden = int(round(out_channels * expansion))
        self.shortcut = PooledShortcut(in_channels, out_channels, stride, pool_size)
        self.pre_norm = make_norm(norm, in_channels)
        self.conv_pw = ConvNormAct(in_channels, self.hidden, 1, norm=norm, act=act, bias=False)
        self.conv_dw = ConvNormAct(self.hidden, self.hidden, 3, stride, groups=self.hidden, norm=norm, act=act,
                                   bias=False)
        self.attn = build_slot("attn", attn, self.hidden, ctx("attn", out_size(feat_size, stride)))
        self.conv_pwl = nn.Conv2d(self.hidden, out_channels, 1)
        self.drop_path = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_pwl(self.attn(self.conv_dw(self.conv_pw(self.pre_norm(x)))))
        return self.shortcut(x) + self.drop_path(y)


class MOATBlock(nn.Module):
    """The MOAT block: :class:`MBConv` (``attn`` inside it, none in the paper), then
    ``x + DP(mixer(LayerNorm(x)))`` (LayerNorm over the channels, eps 1e-5; ``mixer`` a slot value, default
    ``moat_attn``, built for the block's output size). Both residual branches share the drop-path rate (official)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expansion: float = 4.0, *,
                 mixer: Any = "moat_attn", attn: Any = "none", norm: Any = "bn", act: Any = "gelu",
                 pool_size: int = 2, ln_eps: float = 1e-5, ctx=None, feat_size: Size | None = None,
                 drop_path: float = 0.0):
        super().__init__()
        ctx = ctx or _standalone_ctx
        self.mbconv = MBConv(in_channels, out_channels, stride, expansion, attn=attn, norm=norm, act=act,
                             pool_size=pool_size, ctx=ctx, feat_size=feat_size, drop_path=drop_path)
        self.norm = LayerNorm2d(out_channels, eps=ln_eps)
        self.mixer = build_slot("mixer", mixer, out_channels, ctx("mixer", out_size(feat_size, stride)))
        self.drop_path = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mbconv(x)
        return x + self.drop_path(self.mixer(self.norm(x)))
