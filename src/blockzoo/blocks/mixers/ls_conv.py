"""LS (Large-Small) convolution, the token mixer of LSNet: Wang et al., "LSNet: See Large, Focus Small", CVPR 2025,
arXiv:2503.23135 [S006]; official code: github.com/THU-MIG/lsnet (formerly jameslahm/lsnet), ``model/lsnet.py`` and
``model/ska.py``.

"See large" -- **LKP** (large-kernel perception) turns the input into *position-wise dynamic 3x3 kernels*; "focus
small" -- **SKA** (small-kernel aggregation) applies them to the input. Official layout (reproduced exactly):

``LKP(dim, lks=7, sks=3, groups=8)``: 1x1 conv ``dim -> dim/2`` + BN -> ReLU -> ``lks x lks`` depthwise conv + BN ->
1x1 conv + BN -> ReLU -> 1x1 conv (with bias) ``dim/2 -> sks^2 * dim/groups`` -> GroupNorm(``dim/groups`` groups,
i.e. one group per kernel: its ``sks^2`` taps) -> view ``(N, dim/groups, sks^2, H, W)``. All conv-BN pairs are
bias-free convs followed by BatchNorm (``Conv2d_BN``, weight 1 / bias 0 at init;
:class:`blockzoo.blocks.common.conv_bn.ConvBN`).

``SKA(x, w)`` (official Triton kernel, CUDA only)::

    out[n, c, h, w] = sum_{kh, kw} x[n, c, h + kh - p, w + kw - p] * w[n, c % wc, kh * sks + kw, h, w]

zero padding ``p = (sks - 1) // 2``, ``wc = dim / groups``: every ``wc``-th channel shares one dynamic kernel --
channels ``c, c + wc, c + 2 wc, ...`` (**interleaved**, ``c % wc``), not contiguous blocks of ``groups`` channels.
:func:`ska` is a pure-PyTorch CPU/GPU version of that kernel: an ``autograd.Function`` that pads ``x`` once and
accumulates the ``sks^2`` shifted products in place (``addcmul_``) on ``(N, C/wc, wc, H, W)`` views, so neither the
9x-larger ``unfold`` tensor nor a channel-repeated copy of ``w`` is ever built; its backward is written out the same
way (gradients checked with ``torch.autograd.gradcheck`` in tests/blocks/mixers/test_ls_conv.py).
:func:`ska_unfold` is the
``F.unfold`` formulation (the official CPU fallback's semantics), kept as a second reference.

``LKP.reparameterize()`` folds its three BNs into the convs (eval-mode inference form); the BN after SKA cannot be
folded and stays.

``LSConv(dim) = BN(SKA(x, LKP(x))) + x``. **The residual is inside the mixer** (as in the paper and the official
code), so an LS conv placed in the ``mixer`` slot still maps NCHW -> NCHW with the same C, but its output already
contains ``x``. The module says so with the attribute ``includes_residual = True``; LSNet's block
(:mod:`blockzoo.models.lsnet`) reads it and adds no second shortcut, while the MetaFormer / MetaNeXt blocks of other
backbones (which do not look at it) simply wrap it in their own residual. ``residual=False`` drops the inner
shortcut (``includes_residual`` then becomes False).

``lks`` and ``sks`` must be odd; C must be divisible by ``groups``.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.blocks.common.conv_bn import ConvBN
from blockzoo.checks import check_int, check_odd
from blockzoo.errors import InputShapeError
from blockzoo.papers import LSNET
from blockzoo.registry import Claim, IncompatibleBlockError, Requires, register_block

__all__ = ["LSNET", "LKP", "SKA", "LSConv", "ska", "ska_unfold"]

_T = "tests/blocks/mixers/test_ls_conv.py::"


# ----------------------------------------------------------------------------------------------------------- SKA
def _check_ska_args(x: torch.Tensor, w: torch.Tensor) -> int:
    if x.ndim != 4 or w.ndim != 5:
        raise InputShapeError(f"ska expects x of shape (N, C, H, W) and w of shape (N, C_w, k*k, H, W); got x "
                              f"{tuple(x.shape)} and w {tuple(w.shape)}")
    n, _, h, wd = x.shape
    if w.shape[0] != n or tuple(w.shape[3:]) != (h, wd):
        raise InputShapeError(f"ska: w {tuple(w.shape)} must have the batch size and spatial size of x "
                              f"{tuple(x.shape)} (one k x k kernel per position)")
    ks = math.isqrt(w.shape[2])
    if ks * ks != w.shape[2] or ks % 2 == 0:
        raise InputShapeError(f"ska: w.shape[2] = {w.shape[2]} must be k*k for an odd kernel size k (9 for 3x3)")
    return ks


def _grouped(t: torch.Tensor, wc: int) -> tuple[torch.Tensor, int]:
    """View ``t`` (N, C, ...) as (N, G, wc, ...) with channel ``c = g * wc + j``; zero-pads C up to G * wc."""
    c = t.shape[1]
    g = -(-c // wc)
    if g * wc != c:
        t = torch.cat([t, t.new_zeros((t.shape[0], g * wc - c) + tuple(t.shape[2:]))], 1)
    return t.reshape((t.shape[0], g, wc) + tuple(t.shape[2:])), g


def _ska_forward(x: torch.Tensor, w: torch.Tensor, ks: int) -> torch.Tensor:
    """SKA's forward by shifted slices accumulated in place (no unfold buffer, no repeated weights)."""
    n, c, h, wd = x.shape
    wc, p = w.shape[1], ks // 2
    xg, g = _grouped(F.pad(x, (p, p, p, p)), wc)          # (N, G, wc, H + 2p, W + 2p)
    wg = w.unsqueeze(1)                                    # (N, 1, wc, k*k, H, W)
    out = torch.mul(xg[..., :h, :wd], wg[:, :, :, 0])      # (N, G, wc, H, W)
    for t in range(1, ks * ks):
        kh, kw = divmod(t, ks)
        out.addcmul_(xg[..., kh:kh + h, kw:kw + wd], wg[:, :, :, t])
    return out.reshape(n, g * wc, h, wd)[:, :c] if g * wc != c else out.reshape(n, c, h, wd)


class _SKAFunction(torch.autograd.Function):
    """Shifted-slice SKA with a hand-written backward (no unfold buffer, no repeated weights)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, ks: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, w)
        ctx.ks = ks
        return _ska_forward(x, w, ks)

    @staticmethod
    def backward(ctx, go: torch.Tensor):  # type: ignore[override]
        x, w = ctx.saved_tensors
        ks = ctx.ks
        n, c, h, wd = x.shape
        wc, p = w.shape[1], ks // 2
        gog, g = _grouped(go.to(x.dtype), wc)                  # (N, G, wc, H, W)
        wg = w.unsqueeze(1)
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gxp = x.new_zeros((n, g, wc, h + 2 * p, wd + 2 * p))
            for t in range(ks * ks):
                kh, kw = divmod(t, ks)
                gxp[..., kh:kh + h, kw:kw + wd].addcmul_(gog, wg[:, :, :, t])
            gx = gxp[..., p:p + h, p:p + wd].reshape(n, g * wc, h, wd)[:, :c].contiguous()
        if ctx.needs_input_grad[1]:
            xg, _ = _grouped(F.pad(x, (p, p, p, p)), wc)
            gw = w.new_empty((n, ks * ks, wc, h, wd))
            for t in range(ks * ks):
                kh, kw = divmod(t, ks)
                prod = gog * xg[..., kh:kh + h, kw:kw + wd]    # (N, G, wc, H, W)
                gw[:, t] = prod.sum(1) if g > 1 else prod[:, 0]
            gw = gw.transpose(1, 2).contiguous()
        return gx, gw, None


def ska(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Small-kernel aggregation: per-position dynamic k x k kernels ``w`` (N, C_w, k*k, H, W) applied to ``x``
    (N, C, H, W) with zero padding; channel ``c`` uses kernel ``c % C_w`` (the official kernel's interleaved sharing).

    Computed in the promoted dtype of ``x`` and ``w`` (under autocast ``w`` comes out of GroupNorm in float32).
    Supports first derivatives (no double backward).
    """
    ks = _check_ska_args(x, w)
    dtype = torch.promote_types(x.dtype, w.dtype)
    if torch.onnx.is_in_onnx_export():  # the exporter cannot trace into an autograd.Function; no backward there
        return _ska_forward(x.to(dtype), w.to(dtype), ks)
    return _SKAFunction.apply(x.to(dtype), w.to(dtype), ks)


torch.fx.wrap("ska")  # one call in an fx graph: its size checks and in-place accumulation are not symbolically traced


def ska_unfold(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Reference SKA through ``F.unfold`` (builds the (N, C, k*k, H, W) patch tensor and an index-expanded ``w``);
    same result as :func:`ska`, about k*k times the memory. Differentiable to any order."""
    ks = _check_ska_args(x, w)
    n, c, h, wd = x.shape
    patches = F.unfold(x, ks, padding=ks // 2).view(n, c, ks * ks, h, wd)
    idx = torch.arange(c, device=x.device) % w.shape[1]
    return (patches * w[:, idx]).sum(2)


class SKA(nn.Module):
    """Module wrapper of :func:`ska` (no parameters)."""

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return ska(x, w)


# ----------------------------------------------------------------------------------------------------------- LKP
class LKP(nn.Module):
    """Large-kernel perception: NCHW (C = ``dim``) -> dynamic kernels ``(N, dim / groups, sks^2, H, W)``."""

    def __init__(self, dim: int, lks: int = 7, sks: int = 3, groups: int = 8):
        super().__init__()
        check_int(dim, "channels", min_value=1, owner="ls_conv")
        check_odd(lks, "lks", owner="ls_conv")
        check_odd(sks, "sks", owner="ls_conv")
        if dim % check_int(groups, "groups", min_value=1, owner="ls_conv") or dim < 2:
            raise IncompatibleBlockError(
                f"ls_conv needs the channel count ({dim}) to be divisible by groups={groups} (one dynamic kernel per "
                f"{groups} channels); use a width divisible by {groups} or pass groups= (e.g. ls_conv(groups=4))")
        hidden, self.wc = dim // 2, dim // groups
        self.dim, self.lks, self.sks, self.groups = dim, lks, sks, groups
        self.cv1 = ConvBN(dim, hidden)
        self.act = nn.ReLU()
        self.cv2 = ConvBN(hidden, hidden, lks, padding=(lks - 1) // 2, groups=hidden)
        self.cv3 = ConvBN(hidden, hidden)
        self.cv4 = nn.Conv2d(hidden, sks * sks * self.wc, 1)
        self.norm = nn.GroupNorm(self.wc, sks * sks * self.wc)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Inference form, in place: fold the BNs of ``cv1``-``cv3`` into their convs (eval-mode function unchanged;
        idempotent -- the ``reparameterize()`` protocol of ``blockzoo.deploy``)."""
        for name in ("cv1", "cv2", "cv3"):
            m = getattr(self, name)
            if isinstance(m, ConvBN):
                setattr(self, name, m.fuse())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.cv3(self.cv2(self.act(self.cv1(x)))))
        w = self.norm(self.cv4(x))
        n, _, h, wd = w.shape
        return w.view(n, self.wc, self.sks * self.sks, h, wd)


# -------------------------------------------------------------------------------------------------------- LSConv
class LSConv(nn.Module):
    """``BN(SKA(x, LKP(x))) + x`` (the residual is part of the mixer; see the module docstring)."""

    def __init__(self, dim: int, lks: int = 7, sks: int = 3, groups: int = 8, residual: bool = True):
        super().__init__()
        self.lkp = LKP(dim, lks=lks, sks=sks, groups=groups)
        self.ska = SKA()
        self.bn = nn.BatchNorm2d(dim)
        self.residual = residual

    @property
    def includes_residual(self) -> bool:
        """True when the output already contains the input (read by LSNet's block: no second shortcut)."""
        return self.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.ska(x, self.lkp(x)))
        return y + x if self.residual else y

    def extra_repr(self) -> str:
        return f"residual={self.residual}"


@register_block(
    "ls_conv", slot="mixer", paper=LSNET, family="lsnet",
    summary="LSNet's LS conv: large-kernel perception (7x7 dw) makes per-pixel 3x3 kernels, small-kernel aggregation "
            "applies them; BN(SKA(x, LKP(x))) + x (residual inside)",
    claims=(
        Claim("SKA = official Triton kernel: out[n,c,h,w] = sum x[n,c,h+kh-1,w+kw-1] * w[n, c % wc, 3kh+kw, h, w] "
              "(naive loop, float64)", _T + "test_ska_matches_naive_loop"),
        Claim("kernels are shared across channels by c % (C/groups) (interleaved), not by contiguous blocks",
              _T + "test_ska_interleaved_sharing"),
        Claim("LKP gives (N, C/8, 9, H, W) kernels, GroupNorm'ed per kernel", _T + "test_lkp_shape_and_groupnorm"),
        Claim("LSConv(x) = BN(SKA(x, LKP(x))) + x: the residual is inside the mixer", _T + "test_lsconv_residual"),
    ),
    requires=Requires(min_channels=8),
    notes="C % groups == 0; residual=True: the output includes x.",
)
def ls_conv(channels: int, lks: int = 7, sks: int = 3, groups: int = 8, residual: bool = True) -> nn.Module:
    return LSConv(channels, lks=lks, sks=sks, groups=groups, residual=residual)
