"""Shared layers and the ``norm`` / ``act`` / ``head`` / ``connection`` slot factories.

Norms: ``bn`` (BatchNorm, Ioffe & Szegedy 2015), ``gn`` (GroupNorm, Wu & He 2018: G=32 groups, or the largest divisor
of C not above 32 when C is not a multiple of 32), ``ln2d`` (LayerNorm over the channels of an NCHW tensor, as in
ConvNeXt), ``none``. Activations: relu, relu6, gelu, silu, hswish (MobileNetV3), elu (S109).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import papers
from blockzoo.registry import Claim, Requires, SlotContext, build_slot, register_block


def out_size(size: tuple[int, int] | None, stride: int, kernel: int = 3, padding: int | None = None,
             dilation: int = 1) -> tuple[int, int] | None:
    """Spatial size after a conv/pool with the given geometry (None stays None; default padding: "same" at stride 1)."""
    if size is None:
        return None
    padding = (dilation * (kernel - 1)) // 2 if padding is None else padding
    return tuple((s + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1 for s in size)  # type: ignore


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round ``v`` to a multiple of ``divisor`` (MobileNet convention: never go below ``round_limit`` of ``v``)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of an NCHW tensor (ConvNeXt's channels_first LayerNorm)."""

    def __init__(self, num_channels: int, eps: float = 1e-6, affine: bool = True):
        super().__init__(num_channels, eps=eps, elementwise_affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def gn_groups(channels: int, groups: int = 32) -> int:
    """GroupNorm group count: ``groups`` if it divides C, else the largest divisor of C not above ``groups``."""
    for g in range(min(groups, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


# ------------------------------------------------------------------------------------------------------ norm slot
@register_block("bn", slot="norm", paper=papers.BATCHNORM, summary="BatchNorm2d over NCHW", family="norm")
def _bn(channels: int, eps: float = 1e-5, momentum: float = 0.1, zero_init: bool = False) -> nn.Module:
    m = nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
    if zero_init:
        nn.init.zeros_(m.weight)
    return m


@register_block("gn", slot="norm", paper=papers.GROUPNORM, family="norm",
                summary="GroupNorm with G=32 (or the largest divisor of C below 32)")
def _gn(channels: int, groups: int = 32, eps: float = 1e-5, zero_init: bool = False) -> nn.Module:
    m = nn.GroupNorm(gn_groups(channels, groups), channels, eps=eps)
    if zero_init:
        nn.init.zeros_(m.weight)
    return m


@register_block("ln2d", slot="norm", paper=papers.LAYERNORM, family="norm",
                summary="LayerNorm over the channels of an NCHW tensor (ConvNeXt style)")
def _ln2d(channels: int, eps: float = 1e-6, zero_init: bool = False) -> nn.Module:
    m = LayerNorm2d(channels, eps=eps)
    if zero_init:
        nn.init.zeros_(m.weight)
    return m


# ------------------------------------------------------------------------------------------------------- act slot
class HSwish(nn.Hardswish):
    """h-swish (MobileNetV3): x * ReLU6(x + 3) / 6."""


_ACTS = {
    "relu": (nn.ReLU, None, "ReLU"),
    "relu6": (nn.ReLU6, None, "ReLU6 = min(max(x, 0), 6) (MobileNet)"),
    "gelu": (nn.GELU, papers.GELU, "GELU (exact erf form)"),
    "silu": (nn.SiLU, papers.SILU, "SiLU / Swish-1: x * sigmoid(x)"),
    "hswish": (HSwish, papers.MOBILENETV3, "h-swish: x * ReLU6(x + 3) / 6"),
    "elu": (nn.ELU, papers.ELU, "ELU: x if x > 0 else alpha * (exp(x) - 1), alpha = 1"),
}


def _make_act_ctor(cls):
    def ctor(inplace: bool = False, **kw) -> nn.Module:
        if cls in (nn.ReLU, nn.ReLU6, nn.ELU, nn.SiLU, HSwish):
            kw["inplace"] = inplace
        return cls(**kw)
    ctor.__doc__ = cls.__doc__
    return ctor


for _name, (_cls, _paper, _summary) in _ACTS.items():
    register_block(_name, slot="act", paper=_paper, summary=_summary, family="act",
                   usage=f'act = create_block("{_name}")\nmodel = create_model("resnet20", act="{_name}")')(
        _make_act_ctor(_cls))


def make_act(act, inplace: bool = False) -> nn.Module:
    """Build an activation from a slot value (name, ``name(kw=...)``, or callable). ``inplace``: where the
    activation has an in-place form (ReLU, ReLU6, SiLU, Hardswish, ELU), compute it in place -- only for an input
    that nothing else reads afterwards (a norm's or a residual sum's output; autograd refuses any other use)."""
    m = build_slot("act", act, None)
    if inplace and isinstance(getattr(m, "inplace", None), bool):
        m.inplace = True
    return m


def make_norm(norm, channels: int, **kw) -> nn.Module:
    """Build a normalisation layer from a slot value."""
    return build_slot("norm", norm, channels, **kw)


# ------------------------------------------------------------------------------------------------------ attn none
@register_block("none", slot="attn", family="identity", summary="Identity: no attention (the baseline variant)",
                claims=(Claim("adds no parameters and no computation",
                              "tests/blocks/common/test_layers.py::test_none_is_identity"),))
def _none(channels: int | None = None, **_: object) -> nn.Module:
    return nn.Identity()


# ---------------------------------------------------------------------------------------------------- conv slot
class ConvNormAct(nn.Sequential):
    """k x k conv (no bias unless there is no norm) -> norm -> act; the default unit of the ``conv`` slot.

    ``kernel_size`` may be ``(kh, kw)`` (factorised 1 x n / n x 1 convs); ``padding`` defaults to "same" for stride 1
    (``dilation * (k - 1) // 2`` per axis), ``0`` gives an unpadded ("valid") conv. ``inplace``: the activation in
    place (its input is always the fresh conv / norm output)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int] = 3, stride: int = 1,
                 groups: int = 1, dilation: int = 1, norm="bn", act="relu", bias: bool | None = None,
                 padding: int | tuple[int, int] | None = None, inplace: bool = False):
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        pad = tuple(dilation * (k - 1) // 2 for k in ks) if padding is None else padding
        use_bias = (norm in (None, "none")) if bias is None else bias
        super().__init__()
        self.out_channels = out_channels
        self.conv = nn.Conv2d(in_channels, out_channels, ks, stride, pad, dilation=dilation, groups=groups,
                              bias=use_bias)
        self.norm = make_norm(norm, out_channels) if norm not in (None, "none") else nn.Identity()
        self.act = make_act(act, inplace=inplace) if act not in (None, "none") else nn.Identity()


@register_block("conv3x3", slot="conv", family="conv", requires=Requires(keeps_channels=False, stride=True),
                paper=papers.RESNET, summary="Plain 3x3 conv -> norm -> act (the default conv unit)")
def _conv3x3(channels: int, out_channels: int | None = None, stride: int = 1, groups: int = 1, norm="bn",
             act="relu") -> nn.Module:
    return ConvNormAct(channels, out_channels or channels, 3, stride, groups=groups, norm=norm, act=act)


# ---------------------------------------------------------------------------------------------------- head slot
class PoolHead(nn.Module):
    """Global pooling to (N, C): ``avg`` (GAP), ``max`` (global max pool) or ``avgmax`` (mean of both)."""

    def __init__(self, channels: int, pool: str = "avg"):
        super().__init__()
        self.pool, self.out_features = pool, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool == "avg":
            return x.mean((2, 3))
        if self.pool == "max":
            return x.amax((2, 3))
        return 0.5 * (x.mean((2, 3)) + x.amax((2, 3)))


for _pool, _desc in (("avg", "global average pooling (GAP)"), ("max", "global max pooling"),
                     ("avgmax", "mean of global average and max pooling")):
    register_block(_pool, slot="head", family="pool", summary=_desc, requires=Requires(keeps_channels=False))(
        (lambda p: (lambda channels, **kw: PoolHead(channels, p, **kw)))(_pool))


# -------------------------------------------------------------------------------------------- connection slot
class Residual(nn.Module):
    """Plain residual merge: ``shortcut + branch`` (He et al.)."""

    def forward(self, shortcut: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return shortcut + branch


@register_block("residual", slot="connection", family="connection", paper=papers.RESNET,
                summary="identity shortcut + branch (the standard residual connection)")
def _residual(channels: int | None = None, **_: object) -> nn.Module:
    return Residual()


class SubLayerMerges(nn.ModuleList):
    """The ``connection`` slot of a block with several residual sub-layers (a pre-norm transformer's attention and
    MLP): one merge per sub-layer, built with ``SlotContext(streams=True)`` at ``<ctx>.connection<i>``;
    ``forward(x, branches)`` merges ``branch_i`` of each sub-layer in turn. With a stream connection
    (hyper-connections) each sub-layer reads its input through the width connection and writes back through the depth
    connection; the skeleton marks the trunk's first / last block's merges (``expands`` / ``reduces``, see
    :func:`blockzoo.blocks.connection.hyper.stream_trunk`). ``channels_last``: the streams are tokens ``(B, N, C)``."""

    def __init__(self, connection: object, dim: int, ctx=None, count: int = 2, channels_last: bool = False):
        where = ctx or (lambda pos: SlotContext(position=pos))
        super().__init__(build_slot("connection", connection, dim,
                                    dataclasses.replace(where(f"connection{i + 1}"), streams=True))
                         for i in range(count))
        self.streams = getattr(self[0], "streams", 0)
        self.expands = self.reduces = False
        for merge in self:
            if channels_last and getattr(merge, "streams", 0):
                merge.set_channels_last()

    def forward(self, x: torch.Tensor, branches) -> torch.Tensor:
        if not self.streams:
            for merge, branch in zip(self, branches):
                x = merge(x, branch(x))
            return x
        h = self[0].expand(x) if self.expands else x
        for merge, branch in zip(self, branches):
            inp, mixed, beta = merge.width(h)
            h = merge.depth(mixed, branch(inp), beta)
        return self[-1].reduce(h) if self.reduces else h


__all__ = ["out_size", "make_divisible", "LayerNorm2d", "gn_groups", "make_act", "make_norm", "ConvNormAct", "PoolHead",
           "Residual", "SubLayerMerges", "HSwish", "SlotContext"]
