"""The reusable pieces of the MetaFormer / MetaNeXt skeleton: blocks, stages, stems and downsampling layers, heads.

Yu et al., "MetaFormer Is Actually What You Need for Vision" (CVPR 2022, arXiv:2111.11418) and "InceptionNeXt"
(CVPR 2024, arXiv:2303.16900 [S014]) for the block abstraction; Liu et al., "A ConvNet for the 2020s" (CVPR 2022,
arXiv:2201.03545 [S057]) for the stem / downsampling / head design. The backbone that assembles them (stage loop,
stochastic-depth schedule, slot checks, init) is :class:`blockzoo.models.metaformer.MetaFormer`; its module docstring
documents every option and the constructor every block class here (and a family's own block) follows.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.blocks.common.drop import make_drop_path
from blockzoo.blocks.common.layer_scale import layer_scale
from blockzoo.blocks.common.layers import LayerNorm2d, SubLayerMerges, out_size
from blockzoo.blocks.common.mlp import make_mlp
from blockzoo.checks import check_choice
from blockzoo.errors import ConfigError

__all__ = ["MetaFormerBlock", "MetaNeXtBlock", "BLOCKS", "MetaFormerStage", "ConvEmbed", "STEMS", "DOWNSAMPLES",
           "make_embed", "PooledNorm", "MlpHead"]


# ------------------------------------------------------------------------------------------------------ blocks
class MetaFormerBlock(nn.Module):
    """Pre-norm MetaFormer block: ``x + DP(LS1(attn(mixer(norm1(x)))))``, then ``x + DP(LS2(mlp(norm2(x))))``
    (``mlp``: ``"mlp"`` or TransNeXt's ``"convglu"``, :func:`~blockzoo.blocks.common.mlp.make_mlp`).
    ``connection``: ``None`` keeps the plain sums; a ``connection`` slot value builds one merge per sub-layer
    (:class:`~blockzoo.blocks.common.layers.SubLayerMerges`, at ``<ctx>.connection1/2``), e.g. hyper-connections,
    whose streams the backbone sets up with :func:`blockzoo.blocks.connection.hyper.stream_trunk`."""

    def __init__(self, dim: int, *, mixer: nn.Module, attn: nn.Module | None = None,
                 norm_layer: Callable[[int], nn.Module], act_layer: Callable[[], nn.Module], mlp_ratio: float = 4.0,
                 ls_init_value: float | None = 1e-5, drop_path: float = 0.0, mlp_layout: str = "linear",
                 mlp_drop: float = 0.0, mlp_bias: bool = True, mlp: str = "mlp", feat_size=None, ctx=None,
                 connection: Any = None):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.mixer = mixer
        self.attn = attn if attn is not None else nn.Identity()
        self.ls1 = layer_scale(dim, ls_init_value)
        self.drop_path1 = make_drop_path(drop_path)
        self.norm2 = norm_layer(dim)
        self.mlp = make_mlp(mlp, dim, int(mlp_ratio * dim), act_layer, bias=mlp_bias, drop=mlp_drop, layout=mlp_layout)
        self.ls2 = layer_scale(dim, ls_init_value)
        self.drop_path2 = make_drop_path(drop_path)
        self.merges = None if connection is None else SubLayerMerges(
            connection, dim, None if ctx is None else (lambda pos: ctx(pos, feat_size)))

    def _mixer_branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path1(self.ls1(self.attn(self.mixer(self.norm1(x)))))

    def _mlp_branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path2(self.ls2(self.mlp(self.norm2(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merges is None:
            x = x + self._mixer_branch(x)
            return x + self._mlp_branch(x)
        return self.merges(x, (self._mixer_branch, self._mlp_branch))


class MetaNeXtBlock(nn.Module):
    """MetaNeXt block (InceptionNeXt; ConvNeXt with ``ln2d``): ``x + DP(LS(mlp(norm(attn(mixer(x))))))``.

    With a LayerNorm2d norm and ``mlp_layout="linear"`` the norm and the MLP run on one NHWC view (no extra permutes);
    the result is identical to the NCHW path. ``mlp`` as :class:`MetaFormerBlock`; ``connection`` as
    :class:`MetaFormerBlock`'s, with one merge (``<ctx>.connection1``: the block has one residual sub-layer).
    """

    def __init__(self, dim: int, *, mixer: nn.Module, attn: nn.Module | None = None,
                 norm_layer: Callable[[int], nn.Module], act_layer: Callable[[], nn.Module], mlp_ratio: float = 4.0,
                 ls_init_value: float | None = 1e-6, drop_path: float = 0.0, mlp_layout: str = "linear",
                 mlp_drop: float = 0.0, mlp_bias: bool = True, mlp: str = "mlp", feat_size=None, ctx=None,
                 connection: Any = None):
        super().__init__()
        self.mixer = mixer
        self.attn = attn if attn is not None else nn.Identity()
        self.norm = norm_layer(dim)
        self.mlp = make_mlp(mlp, dim, int(mlp_ratio * dim), act_layer, bias=mlp_bias, drop=mlp_drop, layout=mlp_layout)
        self.ls = layer_scale(dim, ls_init_value)
        self.drop_path = make_drop_path(drop_path)
        self._fused_ln = type(self.norm) is LayerNorm2d and mlp_layout == "linear"
        self.merges = None if connection is None else SubLayerMerges(
            connection, dim, None if ctx is None else (lambda pos: ctx(pos, feat_size)), count=1)

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attn(self.mixer(x))
        if self._fused_ln:
            n = self.norm
            y = y.permute(0, 2, 3, 1)
            y = self.mlp.forward_nhwc(F.layer_norm(y, n.normalized_shape, n.weight, n.bias, n.eps)).permute(0, 3, 1, 2)
        else:
            y = self.mlp(self.norm(y))
        return self.drop_path(self.ls(y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merges is None:
            return x + self._branch(x)
        return self.merges(x, (self._branch,))


BLOCKS: dict[str, type[nn.Module]] = {"metaformer": MetaFormerBlock, "metanext": MetaNeXtBlock}


class MetaFormerStage(nn.Module):
    """``downsample`` (identity in stage 0) followed by the stage's blocks."""

    def __init__(self, downsample: nn.Module, blocks: Sequence[nn.Module]):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


# ------------------------------------------------------------------------------------------ stems/downsampling
STEMS: dict[str, dict[str, Any]] = {
    "patch": dict(kernel_size=4, stride=4, padding=0, norm_pos="post", bias=True),    # ConvNeXt, InceptionNeXt
    "overlap": dict(kernel_size=7, stride=4, padding=2, norm_pos=None, bias=True),    # PoolFormer
    "small": dict(kernel_size=3, stride=1, padding=1, norm_pos="post", bias=True),    # 28-32 px inputs
}
DOWNSAMPLES: dict[str, dict[str, Any]] = {
    "patch": dict(kernel_size=2, stride=2, padding=0, norm_pos="pre", bias=True),     # ConvNeXt, InceptionNeXt
    "overlap": dict(kernel_size=3, stride=2, padding=1, norm_pos=None, bias=True),    # PoolFormer
}


class ConvEmbed(nn.Sequential):
    """``[norm] -> conv(k, s, p) -> [norm]``: the stem and the downsampling layers (children ``0``, ``1``)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, padding: int = 0,
                 norm_pos: str | None = None, norm_layer: Callable[[int], nn.Module] | None = None, bias: bool = True):
        check_choice(norm_pos, "norm_pos", (None, "pre", "post"), owner="ConvEmbed")
        conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, bias=bias)
        layers: list[nn.Module] = [conv]
        if norm_pos == "pre":
            layers.insert(0, norm_layer(in_chs))
        elif norm_pos == "post":
            layers.append(norm_layer(out_chs))
        super().__init__(*layers)
        self.geometry = (kernel_size, stride, padding)

    def out_size(self, size: tuple[int, int] | None) -> tuple[int, int] | None:
        k, s, p = self.geometry
        return out_size(size, s, k, p)


def make_embed(kind: Any, table: dict[str, dict[str, Any]], overrides: dict[str, Any] | None, what: str,
               in_chs: int, out_chs: int, norm_layer, act_layer, *extra) -> nn.Module:
    """A stem / downsampling layer: ``kind`` is a name in ``table`` (geometry overridden by ``overrides``) or a
    callable ``kind(in_chs, out_chs, norm_layer, act_layer, *extra)``."""
    if callable(kind) and not isinstance(kind, str):
        return kind(in_chs, out_chs, norm_layer, act_layer, *extra)
    if kind not in table:
        raise ConfigError(f"unknown {what} {kind!r}; choose one of {', '.join(table)} or pass a callable")
    cfg = {**table[kind], **(overrides or {})}
    unknown = set(cfg) - {"kernel_size", "stride", "padding", "norm_pos", "bias"}
    if unknown:
        raise ConfigError(f"unknown {what}_kwargs {sorted(unknown)}; allowed: kernel_size, stride, padding, norm_pos, "
                         f"bias")
    return ConvEmbed(in_chs, out_chs, norm_layer=norm_layer, **cfg)


# --------------------------------------------------------------------------------------------------------- heads
class PooledNorm(nn.Module):
    """Apply an NCHW norm to a pooled ``(N, F)`` vector (as ``(N, F, 1, 1)``): ConvNeXt's head LayerNorm."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x[:, :, None, None]).flatten(1)


class MlpHead(nn.Module):
    """InceptionNeXt's MLP head body: ``Linear(F, hidden) -> act -> LayerNorm(hidden, eps=1e-6)`` (the classifier
    ``Linear(hidden, classes)`` is the backbone's ``fc``)."""

    def __init__(self, in_features: int, hidden: int, act_layer: Callable[[], nn.Module], eps: float = 1e-6):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = act_layer()
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.out_features = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.fc1(x)))
