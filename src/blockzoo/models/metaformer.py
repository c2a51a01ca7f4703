"""The shared 4-stage skeleton of MetaFormer-style backbones (ConvNeXt, InceptionNeXt, PoolFormer, HorNet, ...).

Every "modern ConvNet" / MetaFormer family in blockzoo is *a configuration of* :class:`MetaFormer` *plus a block
class*, not a copy of the macro: Yu et al., "MetaFormer Is Actually What You Need for Vision" (CVPR 2022,
arXiv:2111.11418) and "InceptionNeXt" (CVPR 2024, arXiv:2303.16900 [S014]) for the MetaFormer / MetaNeXt block
abstraction; Liu et al., "A ConvNet for the 2020s" (CVPR 2022, arXiv:2201.03545 [S057]) for the macro design
(patchify stem, separate downsampling layers, stage ratio, layer scale, stochastic depth).

Macro
-----
``stem -> stages[0] -> ... -> stages[S-1] -> [norm_pre] -> head slot (pooling) -> [head_pre] -> dropout -> fc``

- ``stages[i] = MetaFormerStage(downsample, blocks)``; ``stages[0].downsample`` is the identity (the stem already
  embeds to ``dims[0]``), ``stages[i>0].downsample`` maps ``dims[i-1] -> dims[i]`` at stride 2.
- ``depths``/``dims``: blocks and width per stage (any number of stages; 4 for every paper model).
- Stochastic depth: ``drop_path_rate`` is spread **linearly over all blocks** of the network,
  ``torch.linspace(0, drop_path_rate, sum(depths))`` (block ``k`` in network order gets the ``k``-th value, the first
  block 0, the last ``drop_path_rate``); kept in ``model.drop_path_rates``. :class:`DropPath` drops whole samples
  (mask of shape ``(N, 1, 1, 1)``) and rescales the kept ones by ``1 / keep_prob`` (timm / ConvNeXt convention).
- Layer scale: :class:`LayerScale` multiplies each residual branch by a learnable per-channel ``gamma`` initialised
  to ``ls_init_value`` (ConvNeXt/InceptionNeXt 1e-6, PoolFormer 1e-5, ``None`` = no layer scale).

Blocks (``block=`` name or class; per stage with a sequence)
------------------------------------------------------------
- ``"metaformer"`` -> :class:`MetaFormerBlock`: ``x + DP(LS(attn(mixer(norm1(x)))))`` then
  ``x + DP(LS(mlp(norm2(x))))`` (pre-norm; PoolFormer, HorNet, ...).
- ``"metanext"`` -> :class:`MetaNeXtBlock`: ``x + DP(LS(mlp(norm(attn(mixer(x))))))`` (one residual; InceptionNeXt with
  BatchNorm). **The ConvNeXt block is a MetaNeXt block with ``mixer="dwconv"`` and ``norm="ln2d"``.**
- A family adds its own block as any ``nn.Module`` class with this constructor (all keyword arguments are passed)::

      Block(dim, *, mixer: nn.Module, attn: nn.Module, norm_layer: Callable[[int], nn.Module],
            act_layer: Callable[[], nn.Module], mlp_ratio: float, ls_init_value: float | None, drop_path: float,
            mlp_layout: str, feat_size: tuple[int, int] | None, ctx: Callable[[str], SlotContext], **block_kwargs)

  ``mixer``/``attn`` arrive already built (through ``build_slot`` with the position and the feature size, so the
  ``Requires`` checks have run); ``norm_layer(C)``/``act_layer()`` build the model's ``norm``/``act`` slots;
  ``ctx("name")`` gives the :class:`SlotContext` for any extra slot the block builds itself (call it in
  ``__init__``; do not keep it, it refers to the model); ``block_kwargs`` come from the model's ``block_kwargs=``
  dict. NCHW in, NCHW out, same width. Blocks are reached as ``model.stages[i].blocks[j]`` (positions in error
  messages read ``stages.i.blocks.j.mixer``).

Slots
-----
``mixer`` (token mixer, NCHW -> NCHW same C; default per family), ``norm`` (used in the stem, the downsampling layers,
the blocks and the head norm), ``act`` (MLP activation; the MLP head's too), ``attn`` (optional recalibration after
the mixer, default ``"none"``), ``head`` (global pooling; default ``"avg"``).

Per-stage / per-block mixers
----------------------------
- ``mixer_kwargs_per_stage``: a sequence of dicts (one per stage) *or* a callable ``(stage_idx, block_idx) -> dict``;
  merged into the mixer's keyword arguments (e.g. HorNet's gnConv ``order`` 2, 3, 4, 5 per stage, UniRepLKNet's
  kernel sizes). Keywords written by the user (``mixer="gnconv(order=3)"``) win over them. With
  ``mixer_kwargs_for="gnconv"`` they are applied only while the mixer *is* gnconv, so swapping in another mixer
  (``mixer="dwconv"``) does not hand it foreign keywords; ``None`` applies them to any mixer.
- ``mixer_per_block``: a callable ``(stage_idx, block_idx, mixer) -> slot value`` that picks the mixer of each
  block from the model-level ``mixer`` value (e.g. attention in the last stages: ``lambda s, b, m: m if s < 2 else
  "attention"``). Applied before ``mixer_kwargs_per_stage``.

Stems and downsampling
----------------------
``stem=`` and ``downsample=`` pick a geometry; ``stem_kwargs`` / ``downsample_kwargs`` override any of
``kernel_size``, ``stride``, ``padding``, ``norm_pos`` ("pre" | "post" | None) and ``bias``; ``patch_size=p`` sets
the stem to k = s = p. Norms are the model's ``norm`` slot.

=========== ============================================== ===========================================
``stem=``   layers                                         used by
=========== ============================================== ===========================================
patch       conv k=4 s=4 (bias) -> norm                    ConvNeXt, InceptionNeXt, HorNet
overlap     conv k=7 s=4 p=2 (bias), no norm               PoolFormer
small       conv k=3 s=1 p=1 (bias) -> norm                28-32 px inputs (any family)
=========== ============================================== ===========================================

=============== ========================================== ===========================================
``downsample=`` layers (stages 1..S-1)                     used by
=============== ========================================== ===========================================
patch           norm -> conv k=2 s=2 (bias)                ConvNeXt, InceptionNeXt, HorNet
overlap         conv k=3 s=2 p=1 (bias), no norm           PoolFormer
=============== ========================================== ===========================================

A callable ``stem(in_chans, dim, norm_layer, act_layer) -> nn.Module`` / ``downsample(in_dim, out_dim, norm_layer,
act_layer, stage_idx) -> nn.Module`` is accepted too; if the returned module has an ``out_size(size)`` method it is
used to track the feature size, otherwise the size becomes unknown (size checks are then skipped).

**Small images** (Fashion-MNIST 28 px, CIFAR 32 px): ``stem="small"`` keeps full resolution in stage 0 and the
2x2/2 downsampling halves it three times (odd sizes floor; PoolFormer's 3x3/2 p1 downsampling rounds up: 7 -> 4):

=========== ================================ =====================================
input       ``stem="small"`` (3x3/1)          ``stem="patch", patch_size=2`` (2x2/2)
=========== ================================ =====================================
32 x 32     32, 16, 8, 4                     16, 8, 4, 2
28 x 28     28, 14, 7, 3                     14, 7, 3, 1
224 x 224   (``stem="patch"``, 4x4/4): 56, 28, 14, 7
=========== ================================ =====================================

The stage-0 cost at 32 px with the 3x3/1 stem is about (32/56)^2 = 1/3 of the ImageNet stage-0 cost. Feature sizes
are kept in ``model.feature_sizes``; registered variants assume ``img_size=224`` (``32`` with ``stem="small"``)
unless given, so every slot is checked against a known size at build time.

Heads
-----
``head_norm="post"``: pool -> norm (the model's ``norm`` slot applied to the ``(N, F, 1, 1)`` pooled map) -> fc
(ConvNeXt: GAP -> LayerNorm -> fc); ``"pre"``: norm on the NCHW features, then pool (PoolFormer).
``head_hidden_ratio=r``: InceptionNeXt's ``MlpHead``: pool -> Linear(F, rC) -> act -> LayerNorm(rC, eps 1e-6) ->
dropout -> Linear(rC, classes) (r = 3; C = the last stage's width, F = the pooling head's output size: F = C for
GAP, F = C(C+1)/2 for a second-order head such as ``gcp``; the hidden size stays rC). ``pre_logits=True`` returns
the vector fed to the last Linear (``model.head_hidden_size`` features).

MLP layout and CPU speed
------------------------
``mlp_layout="linear"`` (default) runs the MLP as ``nn.Linear`` on an NHWC view; ``"conv"`` uses 1x1 convs on NCHW
(same parameter count; the weights have shape ``(out, in)`` vs ``(out, in, 1, 1)``). The block boundary is always
NCHW. Measured on this project's shared 2-core CPU (torch 2.13, 1 thread, forward + backward, batch 32, 32 px,
``stem="small"``, 10 classes; minimum of 11 interleaved runs, see ``_bench_mlp_layout``): ``convnext_atto`` linear
695 ms vs conv 664 ms; ``inception_next_atto`` linear 662 ms vs conv 733 ms -- equal within the noise of the shared
machine (medians move by 10-20% between runs). Linear is the default because it is the official ConvNeXt-T/S layout
and is as fast; ``"conv"`` reproduces timm's ``conv_mlp=True`` / InceptionNeXt's ``ConvMlp`` layout exactly.

Init
----
``init="trunc_normal"`` (ConvNeXt / InceptionNeXt / PoolFormer official): conv and linear weights
``trunc_normal(std=0.02)``, zero biases, norms 1/0, layer scale = ``ls_init_value``; then every submodule's own
``init_weights()`` runs (so paper-specific mixer inits survive), and the classifier is scaled by
``head_init_scale``. ``init="kaiming"`` uses :func:`blockzoo.models.base.init_weights` instead.

Adding a mixer or a family (for the helpers building on this skeleton)
----------------------------------------------------------------------
A **mixer** is a ``mixer``-slot block: ``@register_block("gnconv", slot="mixer", paper=..., requires=Requires(...))``
on ``fn(channels, **kw) -> nn.Module`` mapping NCHW -> NCHW with the same C. It then works in every model here:
``create_model("convnext_atto", mixer="gnconv")``. State limits in ``Requires`` (``min_size``, ``min_channels``,
``fixed_resolution`` -> the block receives ``input_resolution=(H, W)`` of its stage); the skeleton builds each mixer
with ``build_slot("mixer", value, C, SlotContext(model, "stages.i.blocks.j.mixer", (H, W)))``, so an incompatible
mixer fails when the model is built, naming the position and the feature size. A **family** is a config dict plus
``register_model(...)(metaformer_entry(name, config))``, e.g. (sketch)::

    HORNET = dict(block="metaformer", ls_init_value=1e-6, stem="patch", downsample="patch", head_norm="post",
                  mixer_kwargs_per_stage=[{"order": o} for o in (2, 3, 4, 5)], mixer_kwargs_for="gnconv")
    register_model("hornet_tiny_7x7", family="hornet", paper=papers.HORNET,
                   slots={"mixer": "gnconv", "norm": "ln2d", "act": "gelu", "attn": "none", "head": "avg"}, ...)(
        metaformer_entry("hornet_tiny_7x7", dict(HORNET, depths=(2, 3, 18, 2), dims=(64, 128, 256, 512))))

A family whose block differs (UniRepLKNet's SE + GRN block, LSNet's alternating blocks) passes its own block class
(``block=MyBlock`` or one per stage) with the constructor above, and ``mixer_per_block`` for per-block choices.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.blocks.common.layers import LayerNorm2d, make_act, make_norm
from blockzoo.models.base import Backbone, check_stage_size, init_weights, out_size, to_size
from blockzoo.registry import SlotContext, build_slot, parse_slot_value

__all__ = [
    "DropPath", "LayerScale", "Mlp", "MetaFormerBlock", "MetaNeXtBlock", "MetaFormerStage", "ConvEmbed", "PooledNorm",
    "MlpHead", "MetaFormer", "BLOCKS", "STEMS", "DOWNSAMPLES", "SMALL_IMG_SIZE", "metaformer_entry",
    "drop_path_schedule",
]

SMALL_IMG_SIZE = 32      # img_size assumed by registered variants when stem="small" and no img_size is given

# Measured with ``_bench_mlp_layout`` (see the module docstring): ms per forward+backward, min of 11 runs.
_MLP_LAYOUT_TIMING = {"convnext_atto": {"linear": 695, "conv": 664},
                      "inception_next_atto": {"linear": 662, "conv": 733}}


# ------------------------------------------------------------------------------------------------ basic layers
def drop_path_schedule(depths: Sequence[int], drop_path_rate: float) -> list[float]:
    """Per-block stochastic-depth rates, linear over all blocks: ``linspace(0, rate, sum(depths))``."""
    n = sum(depths)
    if n == 1:
        return [0.0]
    return [drop_path_rate * k / (n - 1) for k in range(n)]


class DropPath(nn.Module):
    """Stochastic depth: zero the whole residual branch of a sample with probability ``drop_prob`` (training only);
    kept samples are scaled by ``1 / (1 - drop_prob)`` so the expectation is unchanged."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob, self.scale_by_keep = float(drop_prob), scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        if self.scale_by_keep:
            mask.div_(keep)
        return x * mask

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.4f}"


class LayerScale(nn.Module):
    """Per-channel learnable scale ``gamma`` (shape ``(C,)``, initialised to ``init_value``) on an NCHW tensor."""

    def __init__(self, dim: int, init_value: float = 1e-6):
        super().__init__()
        self.init_value = float(init_value)
        self.gamma = nn.Parameter(torch.full((dim,), self.init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1)

    def init_weights(self) -> None:
        nn.init.constant_(self.gamma, self.init_value)

    def extra_repr(self) -> str:
        return f"dim={self.gamma.numel()}, init_value={self.init_value:g}"


def _layer_scale(dim: int, init_value: float | None) -> nn.Module:
    return nn.Identity() if init_value is None else LayerScale(dim, init_value)


class Mlp(nn.Module):
    """Channel MLP ``fc1 -> act -> drop -> fc2 -> drop`` on an NCHW tensor.

    ``layout="linear"``: ``nn.Linear`` layers on an NHWC view (default, faster on CPU); ``"conv"``: 1x1 convs.
    """

    def __init__(self, dim: int, hidden: int, act_layer: Callable[[], nn.Module], out_dim: int | None = None,
                 bias: bool = True, drop: float = 0.0, layout: str = "linear"):
        super().__init__()
        out_dim = out_dim or dim
        if layout == "linear":
            self.fc1, self.fc2 = nn.Linear(dim, hidden, bias=bias), nn.Linear(hidden, out_dim, bias=bias)
        elif layout == "conv":
            self.fc1, self.fc2 = nn.Conv2d(dim, hidden, 1, bias=bias), nn.Conv2d(hidden, out_dim, 1, bias=bias)
        else:
            raise ValueError(f"mlp_layout must be 'linear' (nn.Linear on NHWC) or 'conv' (1x1 convs), got {layout!r}")
        self.layout = layout
        self.act = act_layer()
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def forward_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP on an NHWC tensor (``layout="linear"`` only)."""
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "linear":
            return self.forward_nhwc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


# ------------------------------------------------------------------------------------------------------ blocks
class MetaFormerBlock(nn.Module):
    """Pre-norm MetaFormer block: ``x + DP(LS1(attn(mixer(norm1(x)))))``, then ``x + DP(LS2(mlp(norm2(x))))``."""

    def __init__(self, dim: int, *, mixer: nn.Module, attn: nn.Module | None = None,
                 norm_layer: Callable[[int], nn.Module], act_layer: Callable[[], nn.Module], mlp_ratio: float = 4.0,
                 ls_init_value: float | None = 1e-5, drop_path: float = 0.0, mlp_layout: str = "linear",
                 mlp_drop: float = 0.0, mlp_bias: bool = True, feat_size=None, ctx=None):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.mixer = mixer
        self.attn = attn if attn is not None else nn.Identity()
        self.ls1 = _layer_scale(dim, ls_init_value)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(mlp_ratio * dim), act_layer, bias=mlp_bias, drop=mlp_drop, layout=mlp_layout)
        self.ls2 = _layer_scale(dim, ls_init_value)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.mixer(self.norm1(x)))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class MetaNeXtBlock(nn.Module):
    """MetaNeXt block (InceptionNeXt; ConvNeXt with ``ln2d``): ``x + DP(LS(mlp(norm(attn(mixer(x))))))``.

    With a LayerNorm2d norm and ``mlp_layout="linear"`` the norm and the MLP run on one NHWC view (no extra permutes);
    the result is identical to the NCHW path.
    """

    def __init__(self, dim: int, *, mixer: nn.Module, attn: nn.Module | None = None,
                 norm_layer: Callable[[int], nn.Module], act_layer: Callable[[], nn.Module], mlp_ratio: float = 4.0,
                 ls_init_value: float | None = 1e-6, drop_path: float = 0.0, mlp_layout: str = "linear",
                 mlp_drop: float = 0.0, mlp_bias: bool = True, feat_size=None, ctx=None):
        super().__init__()
        self.mixer = mixer
        self.attn = attn if attn is not None else nn.Identity()
        self.norm = norm_layer(dim)
        self.mlp = Mlp(dim, int(mlp_ratio * dim), act_layer, bias=mlp_bias, drop=mlp_drop, layout=mlp_layout)
        self.ls = _layer_scale(dim, ls_init_value)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self._fused_ln = type(self.norm) is LayerNorm2d and mlp_layout == "linear"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attn(self.mixer(x))
        if self._fused_ln:
            n = self.norm
            y = y.permute(0, 2, 3, 1)
            y = self.mlp.forward_nhwc(F.layer_norm(y, n.normalized_shape, n.weight, n.bias, n.eps)).permute(0, 3, 1, 2)
        else:
            y = self.mlp(self.norm(y))
        return x + self.drop_path(self.ls(y))


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
        if norm_pos not in (None, "pre", "post"):
            raise ValueError(f"norm_pos must be 'pre', 'post' or None, got {norm_pos!r}")
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


def _embed(kind: Any, table: dict[str, dict[str, Any]], overrides: dict[str, Any] | None, what: str,
           in_chs: int, out_chs: int, norm_layer, act_layer, *extra) -> nn.Module:
    if callable(kind) and not isinstance(kind, str):
        return kind(in_chs, out_chs, norm_layer, act_layer, *extra)
    if kind not in table:
        raise ValueError(f"unknown {what} {kind!r}; choose one of {', '.join(table)} or pass a callable")
    cfg = {**table[kind], **(overrides or {})}
    unknown = set(cfg) - {"kernel_size", "stride", "padding", "norm_pos", "bias"}
    if unknown:
        raise ValueError(f"unknown {what}_kwargs {sorted(unknown)}; allowed: kernel_size, stride, padding, norm_pos, "
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


# ------------------------------------------------------------------------------------------------------ backbone
def _per_stage(value: Any, n: int, name: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} has {len(value)} entries but the model has {n} stages")
        return list(value)
    return [value] * n


class MetaFormer(Backbone):
    """Hierarchical MetaFormer / MetaNeXt backbone; see the module docstring for every option."""

    def __init__(
        self,
        depths: Sequence[int],
        dims: Sequence[int],
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        model_name: str = "metaformer",
        block: Any = "metanext",
        block_kwargs: dict[str, Any] | None = None,
        mixer: Any = "dwconv",
        norm: Any = "ln2d",
        act: Any = "gelu",
        attn: Any = "none",
        head: Any = "avg",
        mixer_kwargs_per_stage: Sequence[dict[str, Any]] | Callable[[int, int], dict[str, Any]] | None = None,
        mixer_kwargs_for: str | None = None,
        mixer_per_block: Callable[[int, int, Any], Any] | None = None,
        mlp_ratios: float | Sequence[float] = 4.0,
        mlp_layout: str = "linear",
        ls_init_value: float | None = 1e-6,
        drop_path_rate: float = 0.0,
        drop_rate: float = 0.0,
        stem: Any = "patch",
        stem_kwargs: dict[str, Any] | None = None,
        patch_size: int | None = None,
        downsample: Any = "patch",
        downsample_kwargs: dict[str, Any] | None = None,
        img_size: int | tuple[int, int] | None = None,
        head_norm: str | None = None,
        head_hidden_ratio: float | None = None,
        init: str = "trunc_normal",
        head_init_scale: float = 1.0,
    ):
        super().__init__()
        depths, dims = list(depths), list(dims)
        if len(depths) != len(dims) or not depths:
            raise ValueError(f"depths {depths} and dims {dims} must be non-empty and of the same length")
        n_stages = len(depths)
        if head_norm not in (None, "pre", "post"):
            raise ValueError(f"head_norm must be None, 'pre' (norm before pooling) or 'post' (after pooling), "
                             f"got {head_norm!r}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.model_name, self.in_chans = model_name, in_chans
        self.depths, self.dims = tuple(depths), tuple(dims)
        if isinstance(mixer_kwargs_per_stage, (list, tuple)) and len(mixer_kwargs_per_stage) != n_stages:
            raise ValueError(f"mixer_kwargs_per_stage has {len(mixer_kwargs_per_stage)} entries but the model has "
                             f"{n_stages} stages")

        # picklable factories (no closures are kept on the module, so torch.save(model) / deepcopy work)
        norm_layer: Callable[[int], nn.Module] = partial(make_norm, norm)
        act_layer: Callable[[], nn.Module] = partial(make_act, act)

        blocks_cls = [BLOCKS[b] if isinstance(b, str) and b in BLOCKS else b
                      for b in _per_stage(block, n_stages, "block")]
        for b in blocks_cls:
            if isinstance(b, str):
                raise ValueError(f"unknown block {b!r}; choose one of {', '.join(BLOCKS)} or pass a block class")
        ratios = _per_stage(mlp_ratios, n_stages, "mlp_ratios")

        # stem
        feat = to_size(img_size)
        st_kw = dict(stem_kwargs or {})
        if patch_size is not None:
            st_kw.update(kernel_size=patch_size, stride=patch_size, padding=0)
        self.stem = _embed(stem, STEMS, st_kw, "stem", in_chans, dims[0], norm_layer, act_layer)
        feat = self._track(self.stem, feat)

        # stages
        self.drop_path_rates = drop_path_schedule(depths, drop_path_rate)
        stages, feature_sizes, k = [], [], 0
        for i in range(n_stages):
            if i == 0:
                ds: nn.Module = nn.Identity()
            else:
                ds = _embed(downsample, DOWNSAMPLES, downsample_kwargs, "downsample", dims[i - 1], dims[i],
                            norm_layer, act_layer, i)
                feat = self._track(ds, feat)
            check_stage_size(model_name, i, feat)
            blocks = []
            for j in range(depths[i]):
                pos = f"stages.{i}.blocks.{j}"
                value = _mixer_value(mixer, i, j, mixer_per_block, mixer_kwargs_per_stage, mixer_kwargs_for)
                mixer_mod = build_slot("mixer", value, dims[i], self.ctx(f"{pos}.mixer", feat))
                attn_mod = build_slot("attn", attn, dims[i], self.ctx(f"{pos}.attn", feat))
                blocks.append(blocks_cls[i](
                    dims[i], mixer=mixer_mod, attn=attn_mod, norm_layer=norm_layer, act_layer=act_layer,
                    mlp_ratio=ratios[i], ls_init_value=ls_init_value, drop_path=self.drop_path_rates[k],
                    mlp_layout=mlp_layout, feat_size=feat,
                    ctx=lambda s, p=pos, f=feat: self.ctx(f"{p}.{s}", f), **(block_kwargs or {})))
                k += 1
            stages.append(MetaFormerStage(ds, blocks))
            feature_sizes.append(feat)
        self.stages = nn.Sequential(*stages)
        self.feature_sizes: list[tuple[int, int] | None] = feature_sizes

        # head: [norm_pre] -> pooling slot -> [head_pre] -> dropout -> fc
        self.norm_pre = norm_layer(dims[-1]) if head_norm == "pre" else nn.Identity()
        self._head_norm, self._head_hidden_ratio, self._act_layer, self._norm_layer = (
            head_norm, head_hidden_ratio, act_layer, norm_layer)
        self.init_head(dims[-1], num_classes, head, drop_rate, feat_size=feat)
        self._build_head_pre()
        self.fc = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

        if init == "trunc_normal":
            self._init_trunc_normal(head_init_scale)
        elif init == "kaiming":
            init_weights(self)
        else:
            raise ValueError(f"init must be 'trunc_normal' or 'kaiming', got {init!r}")

    # ---------------------------------------------------------------------------------------------- helpers
    @staticmethod
    def _track(module: nn.Module, feat: tuple[int, int] | None) -> tuple[int, int] | None:
        fn = getattr(module, "out_size", None)
        return fn(feat) if callable(fn) and feat is not None else None

    def _build_head_pre(self) -> None:
        pooled = getattr(self.head, "out_features", self.num_features)
        if self._head_hidden_ratio:
            # hidden = r * C (the backbone width), also when the pooling head outputs F != C features (e.g. gcp)
            hidden = int(self._head_hidden_ratio * self.num_features)
            self.head_pre: nn.Module = MlpHead(pooled, hidden, self._act_layer)
        elif self._head_norm == "post":
            self.head_pre = PooledNorm(self._norm_layer(pooled))
        else:
            self.head_pre = nn.Identity()
        self.head_hidden_size = getattr(self.head_pre, "out_features", pooled)
        self._pooled_features = pooled

    def _init_trunc_normal(self, head_init_scale: float) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for m in self.modules():
            if m is not self and callable(getattr(m, "init_weights", None)):
                m.init_weights()
        if head_init_scale != 1.0 and isinstance(self.fc, nn.Linear):
            with torch.no_grad():
                self.fc.weight.mul_(head_init_scale)
                self.fc.bias.mul_(head_init_scale)

    # ---------------------------------------------------------------------------------------------- forward
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_pre(self.stages(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.head_pre(self.head(x)))
        return x if pre_logits else self.fc(x)

    def reset_classifier(self, num_classes: int, head=None) -> None:
        """New classifier for ``num_classes``; the head norm / MLP-head body are kept (timm behaviour) unless a new
        pooling ``head`` changes the pooled feature size, in which case they are rebuilt too."""
        if head is not None:
            self.head = build_slot("head", head, self.num_features, SlotContext(self.model_name, "head"))
            if getattr(self.head, "out_features", self.num_features) != self._pooled_features:
                self._build_head_pre()
                for mm in self.head_pre.modules():
                    if isinstance(mm, nn.Linear):
                        nn.init.trunc_normal_(mm.weight, std=0.02)
                        nn.init.zeros_(mm.bias)
        self.num_classes = num_classes
        self.fc = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()
        if isinstance(self.fc, nn.Linear):
            nn.init.trunc_normal_(self.fc.weight, std=0.02)
            nn.init.zeros_(self.fc.bias)


def _mixer_value(mixer: Any, i: int, j: int, per_block: Callable[[int, int, Any], Any] | None,
                 per_stage: Sequence[dict[str, Any]] | Callable[[int, int], dict[str, Any]] | None,
                 only_for: str | None) -> Any:
    """The mixer slot value of block ``j`` of stage ``i`` (see "Per-stage / per-block mixers")."""
    value = per_block(i, j, mixer) if per_block is not None else mixer
    if per_stage is None:
        return value
    name, kw = parse_slot_value(value)
    if not isinstance(name, str) or (only_for is not None and name != only_for):
        return value
    stage_kw = per_stage(i, j) if callable(per_stage) else per_stage[i]
    return name, {**stage_kw, **kw}


# --------------------------------------------------------------------------------------------- registration aid
def metaformer_entry(name: str, config: dict[str, Any], *, default_img_size: int = 224,
                     doc: str = "") -> Callable[..., MetaFormer]:
    """The constructor ``fn(*, num_classes, in_chans, **kw)`` of a registered variant: ``config`` (depths, dims,
    block, ...) updated with the user's keyword arguments (slots included). ``img_size`` defaults to
    ``default_img_size`` (``SMALL_IMG_SIZE`` with ``stem="small"``) so slot checks run against a known size."""

    def fn(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> MetaFormer:
        cfg = {**config, **kw}
        if cfg.get("img_size") is None:
            cfg["img_size"] = SMALL_IMG_SIZE if cfg.get("stem") == "small" else default_img_size
        return MetaFormer(num_classes=num_classes, in_chans=in_chans, model_name=name, **cfg)

    fn.__name__ = name
    fn.__doc__ = doc or f"{name}: MetaFormer skeleton with {config}"
    return fn


def _bench_mlp_layout(name: str = "convnext_atto", batch: int = 32, img: int = 32,
                      reps: int = 11) -> dict[str, float]:  # pragma: no cover - a measurement, not a test
    """Minimum forward+backward time (ms) of ``name`` (stem='small') with each MLP layout, runs interleaved."""
    import time

    from blockzoo.registry import create_model
    models = {}
    for layout in ("linear", "conv"):
        torch.manual_seed(0)
        models[layout] = create_model(name, num_classes=10, stem="small", img_size=img, mlp_layout=layout)
    x = torch.randn(batch, 3, img, img)
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(reps + 1):
        for layout, model in models.items():
            t = time.perf_counter()
            model(x).sum().backward()
            times[layout].append(time.perf_counter() - t)
    return {k: 1e3 * min(v[1:]) for k, v in times.items()}

