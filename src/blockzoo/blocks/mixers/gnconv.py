"""Recursive gated convolution (gnConv) and HorNet's global-local filter, as ``mixer``-slot blocks.

Rao et al., "HorNet: Efficient High-Order Spatial Interactions with Recursive Gated Convolutions", NeurIPS 2022,
arXiv:2207.14284 [S013]; official code https://github.com/raoyongming/HorNet (``hornet.py``: ``gnconv``,
``GlobalLocalFilter``). The backbones are in :mod:`blockzoo.models.hornet`.

gnConv of order n on C channels (NCHW -> NCHW, same C), exactly as the official ``gnconv``:

- widths ``dims = [C // 2**i for i in range(n)]`` reversed, i.e. ``C_k = C // 2**(n-1-k)`` (C = 64, n = 3 ->
  ``[16, 32, 64]``);
- ``proj_in``: 1x1 conv C -> 2C (bias), split into ``p0`` (``dims[0]`` channels) and ``q`` (``sum(dims)`` channels).
  ``dims[0] + sum(dims) = 2C`` only when ``2**(n-1)`` divides C (true in every HorNet layer; the official code fails
  otherwise); for other widths (e.g. C = 40, n = 5: dims ``[2, 5, 10, 20, 40]``) ``proj_in`` outputs
  ``dims[0] + sum(dims)`` channels, so gnConv fits any width ``C >= 2**(n-1)``;
- the spatial filter on ``q``: a depthwise 7x7 conv with bias (``filter="7x7"``) or the global-local filter
  (``filter="gf"``), then multiplied by ``scale`` (the official ``s``; 1/3 in every released HorNet);
- split the filtered ``q`` into ``q_0 .. q_{n-1}`` (``dims``); recursion ``p_1 = p0 * q_0``,
  ``p_{k+1} = pws[k-1](p_k) * q_k`` with 1x1 convs ``pws[k]: dims[k] -> dims[k+1]`` (bias);
- ``proj_out``: 1x1 conv C -> C (bias) on ``p_n``.

Order 1 (no ``pws``) is the plain gated convolution ``proj_out(p0 * dw(q0))`` of the paper's §3.1.

Cost (MACs per pixel, 7x7): ``2C^2 + 49 sum(dims) + sum_k dims[k] dims[k+1] + C^2``; since ``sum(dims) < 2C`` and
``sum_k dims[k] dims[k+1] < 2C^2/3`` this stays below ``C(2K^2 + 11C/3)`` (the paper's bound ``HWC(2K^2 + 11/3 C +
2)`` counts the two elementwise products too) -- higher orders add little. Measured with
``blockzoo.profile.count_macs`` at C = 64, 56 x 56
(``tests/blocks/mixers/test_gnconv.py::test_higher_orders_add_little_cost``):

===== ============= =================== ============
order dims          MACs                vs order 2
===== ============= =================== ============
1     [64]          48,369,664          0.810
2     [32, 64]      59,709,440          1.000
3     [16, .., 64]  63,773,696          1.068
4     [8, .., 64]   65,404,416          1.095
5     [4, .., 64]   66,119,424          1.107
===== ============= =================== ============

As n grows the cost tends to ``HW(2C^2 + 49 * 2C + 2C^2/3 + C^2)`` = 1.118x order 2 at C = 64, so no order costs more
than 12% over order 2 there: the 1x1 ``proj_in`` / ``proj_out`` (3C^2 per pixel, 58% of order 5) dominate.

Global-local filter (``filter="gf"``; official ``GlobalLocalFilter(dim, h, w)``, applied to the ``sum(dims)``
channels of ``q``): channels-first LayerNorm (eps 1e-6) -> split into halves -> first half: 3x3 depthwise conv
*without* bias; second half: ``irfft2(rfft2(x) * W)`` (``norm="ortho"``, computed in float32) with a learnable complex
weight ``W`` of shape ``(C/2, h, w)`` (stored as ``(C/2, h, w, 2)`` real/imaginary, trunc-normal std 0.02) ->
the halves are **interleaved** channel by channel (``[local_0, global_0, local_1, global_1, ...]``, the official
``cat(unsqueeze(2)).reshape``) -> channels-first LayerNorm (eps 1e-6). ``(h, w)`` is the half spectrum of the
feature map the filter is made for: ``(H, W // 2 + 1)`` (official: 14 x 8 for the 14 x 14 stage-3 map and 7 x 4 for
the 7 x 7 stage-4 map at 224 px; 24 x 13 and 12 x 7 for the 384-px models). When the input's half spectrum differs
(other resolutions, non-square inputs) the weight is resized to it with bilinear interpolation, ``align_corners=True``,
real and imaginary parts as two images (the official behaviour). ``sum(dims)`` must be even (the official code
would fail on an odd count too).

Deviations / options: the official ``gnconv`` class defaults to ``s = 1.0`` and every HorNet variant passes
``s = 1/3``; here ``scale`` defaults to 1/3 (``scale=1.0`` gives the class default). ``order`` defaults to 5 (the
official class default); HorNet uses 2, 3, 4, 5 per stage. The official constructor ``print``s its configuration;
this one does not. No paper-specific init: inside a backbone the convs get the backbone's init (HorNet: trunc-normal
0.02, zero bias); the complex weight is re-drawn by ``GlobalLocalFilter.init_weights`` (trunc-normal std 0.02).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import papers
from blockzoo.blocks.common.layers import LayerNorm2d
from blockzoo.blocks.common.spectral import spectral_filter
from blockzoo.checks import check_choice, check_int
from blockzoo.registry import Claim, IncompatibleBlockError, Requires, register_block

__all__ = ["GnConv", "GlobalLocalFilter", "gnconv_dims", "FILTERS"]

FILTERS = ("7x7", "gf")
_T = "tests/blocks/mixers/test_gnconv.py::"
_T_HORNET = "tests/models/test_hornet.py::"


def gnconv_dims(channels: int, order: int) -> list[int]:
    """The widths ``[C // 2**(order-1), ..., C // 2, C]`` of the recursion (official ``dims``, reversed)."""
    check_int(channels, "channels", min_value=1, owner="gnconv")
    check_int(order, "order (HorNet uses 2, 3, 4, 5)", min_value=1, owner="gnconv")
    if channels // 2 ** (order - 1) < 1:
        raise IncompatibleBlockError(
            f"gnconv of order {order} needs at least {2 ** (order - 1)} channels (the first width is "
            f"C // 2**(order-1)), got {channels}; use a lower order or more channels")
    return [channels // 2 ** i for i in range(order)][::-1]


class GlobalLocalFilter(nn.Module):
    """HorNet's global-local filter: LN -> (3x3 depthwise | learnable rFFT-domain filter) interleaved -> LN (the
    global half through :func:`~blockzoo.blocks.common.spectral.spectral_filter`: real arithmetic in ONNX export)."""

    def __init__(self, channels: int, h: int = 14, w: int = 8, eps: float = 1e-6):
        super().__init__()
        if channels % 2:
            raise IncompatibleBlockError(
                f"the gnconv global-local filter splits its {channels} channels into two equal halves and needs an "
                f"even count; choose a width divisible by 2**order or filter='7x7'")
        check_int(h, "h", min_value=1, owner="gnconv global filter")
        check_int(w, "w", min_value=1, owner="gnconv global filter")
        half = channels // 2
        self.dw = nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False)
        self.complex_weight = nn.Parameter(torch.empty(half, h, w, 2))
        self.pre_norm = LayerNorm2d(channels, eps=eps)
        self.post_norm = LayerNorm2d(channels, eps=eps)
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.trunc_normal_(self.complex_weight, std=0.02)

    @property
    def filter_size(self) -> tuple[int, int]:
        return int(self.complex_weight.shape[1]), int(self.complex_weight.shape[2])

    def spectral_weight_parts(self, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Real and imaginary parts (C/2, *size) of the filter for a half spectrum of ``size``: the stored weight
        resized bilinearly (``align_corners=True``) as in the official code; at the stored size that resize is the
        identity, so the weight is used as is (no branch on the size: the module traces and exports)."""
        weight = F.interpolate(self.complex_weight.permute(3, 0, 1, 2), size=size, mode="bilinear",
                               align_corners=True).float()
        return weight[0], weight[1]

    def spectral_weight(self, size: tuple[int, int]) -> torch.Tensor:
        """The complex filter ``(C/2, *size)`` for a half spectrum of ``size`` (:meth:`spectral_weight_parts`)."""
        return torch.complex(*self.spectral_weight_parts(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre_norm(x)
        x1, x2 = x.chunk(2, dim=1)
        x1 = self.dw(x1)
        b, c, h, w = x2.shape
        x2 = spectral_filter(x2.float(), lambda re, im: self.spectral_weight_parts(re.shape[-2:])).to(x1.dtype)
        x = torch.stack((x1, x2), dim=2).reshape(b, 2 * c, h, w)     # interleave: local_0, global_0, local_1, ...
        return self.post_norm(x)

    def extra_repr(self) -> str:
        return f"filter_size={self.filter_size}"


class GnConv(nn.Module):
    """Recursive gated convolution of order ``order`` (see the module docstring for the exact computation)."""

    def __init__(self, channels: int, order: int = 5, scale: float = 1.0 / 3.0, filter: str = "7x7",
                 h: int = 14, w: int = 8):
        super().__init__()
        check_choice(filter, "filter ('7x7': depthwise 7x7 conv, 'gf': global-local filter)", FILTERS, owner="gnconv")
        self.order, self.scale, self.filter = order, float(scale), filter
        self.dims = gnconv_dims(channels, order)
        total = sum(self.dims)
        # 2C channels whenever 2**(order-1) divides C (every HorNet layer); dims[0] + sum(dims) in general
        self.proj_in = nn.Conv2d(channels, self.dims[0] + total, 1)
        if filter == "7x7":
            self.dwconv: nn.Module = nn.Conv2d(total, total, 7, padding=3, groups=total, bias=True)
        else:
            self.dwconv = GlobalLocalFilter(total, h=h, w=w)
        self.pws = nn.ModuleList(nn.Conv2d(self.dims[i], self.dims[i + 1], 1) for i in range(order - 1))
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, q = torch.split(self.proj_in(x), (self.dims[0], sum(self.dims)), dim=1)
        qs = torch.split(self.dwconv(q) * self.scale, self.dims, dim=1)
        p = p * qs[0]
        for k, pw in enumerate(self.pws, 1):  # index qs (not zip over it): torch.fx traces the split as one value
            p = pw(p) * qs[k]
        return self.proj_out(p)

    def extra_repr(self) -> str:
        return f"order={self.order}, dims={self.dims}, scale={self.scale:.4f}, filter={self.filter!r}"


@register_block(
    "gnconv", slot="mixer", paper=papers.HORNET, family="hornet",
    summary="HorNet recursive gated convolution g^nConv: 1x1 -> 7x7 dw (or global filter) -> gated recursion -> 1x1",
    requires=Requires(),
    claims=(
        Claim("widths C // 2**(n-1-k), k = 0..n-1 (C = 64, n = 3: [16, 32, 64]); p_{k+1} = pws_k(p_k) * q_k",
              _T + "test_channel_split_sizes"),
        Claim("order-1 and order-2 outputs equal a hand computation with hand-set weights",
              _T + "test_order1_and_order2_by_hand"),
        Claim("higher orders add little cost: MACs at C = 64, 56x56 for orders 1..5 = 48.37M, 59.71M, 63.77M, "
              "65.40M, 66.12M; order 5 / order 2 = 1.107 (any order < 1.12x order 2)",
              _T + "test_higher_orders_add_little_cost"),
        Claim("global filter: weight sized (h, w) = (H, W//2+1) is used as is, other sizes (non-square inputs) are "
              "resized bilinearly (align_corners=True) as in the official code", _T + "test_gf_filter_size_handling"),
        Claim("HorNet-T 7x7 / GF: 22,409,512 / 22,991,848 parameters (paper 22M / 23M), the official code's exact "
              "counts", _T_HORNET + "test_param_counts"),
    ),
    notes="HorNet uses order 2, 3, 4, 5 per stage; scale 1/3 (the official class default is 1.0); filter '7x7' | "
          "'gf'; h, w: the global filter's size, the half spectrum (H, W//2+1) of its feature map. Order n needs "
          "C >= 2**(n-1); filter='gf' needs an even sum of widths.",
    usage='blk = create_block("gnconv", 64, order=3)   # NCHW in -> NCHW out\n'
          'blk = create_block("gnconv(order=4, filter=\'gf\', h=14, w=8)", 256)   # global-local filter, 14x14 maps\n'
          'model = create_model("convnext_atto", mixer="gnconv", img_size=32, stem="small")\n'
          'model = create_model("hornet_tiny_gf")',
)
def gnconv(channels: int, order: int = 5, scale: float = 1.0 / 3.0, filter: str = "7x7", h: int = 14,
           w: int = 8) -> nn.Module:
    return GnConv(channels, order=order, scale=scale, filter=filter, h=h, w=w)
