"""The shared 4-stage skeleton of MetaFormer-style backbones (ConvNeXt, InceptionNeXt, PoolFormer, HorNet, ...).

A skeleton module, not a family: it registers nothing; family files import :class:`MetaFormer`,
:func:`metaformer_entry` and the shared configurations from here, and the reusable layers (blocks, stages, stems,
heads) from :mod:`blockzoo.blocks.common.metaformer`.

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
  block 0, the last ``drop_path_rate``); kept in ``model.drop_path_rates``.
  :class:`~blockzoo.blocks.common.drop.DropPath` drops whole samples (mask of shape ``(N, 1, 1, 1)``) and rescales
  the kept ones by ``1 / keep_prob`` (timm / ConvNeXt convention).
- Layer scale: :class:`~blockzoo.blocks.common.layer_scale.LayerScale` multiplies each residual branch by a
  learnable per-channel ``gamma`` initialised to ``ls_init_value`` (ConvNeXt/InceptionNeXt 1e-6, PoolFormer 1e-5,
  ``None`` = no layer scale).

Blocks (``block=`` name or class; per stage with a sequence)
------------------------------------------------------------
- ``"metaformer"`` -> :class:`~blockzoo.blocks.common.metaformer.MetaFormerBlock`:
  ``x + DP(LS(attn(mixer(norm1(x)))))`` then ``x + DP(LS(mlp(norm2(x))))`` (pre-norm; PoolFormer, HorNet, ...).
- ``"metanext"`` -> :class:`~blockzoo.blocks.common.metaformer.MetaNeXtBlock`:
  ``x + DP(LS(mlp(norm(attn(mixer(x))))))`` (one residual; InceptionNeXt with BatchNorm). **The ConvNeXt block is a
  MetaNeXt block with ``mixer="dwconv"`` and ``norm="ln2d"``.**
- A family adds its own block as any ``nn.Module`` class with this constructor (all keyword arguments are passed)::

      Block(dim, *, mixer: nn.Module, attn: nn.Module, norm_layer: Callable[[int], nn.Module],
            act_layer: Callable[[], nn.Module], mlp_ratio: float, ls_init_value: float | None, drop_path: float,
            mlp_layout: str, feat_size: tuple[int, int] | None, ctx: Callable[..., SlotContext], **block_kwargs)

  ``mixer``/``attn`` arrive already built (through ``build_slot`` with the position and the feature size, so the
  ``Requires`` checks have run); ``norm_layer(C)``/``act_layer()`` build the model's ``norm``/``act`` slots;
  ``ctx("name")`` (or ``ctx("name", feat_size)``: the one block ``ctx`` of every backbone,
  :meth:`~blockzoo.models.base.Backbone.block_ctx`) gives the :class:`SlotContext` for any extra slot the block builds
  itself (call it in ``__init__``; do not keep it, it refers to the model); ``block_kwargs`` come from the model's
  ``block_kwargs=`` dict. NCHW in, NCHW out, same width. Blocks are reached as ``model.stages[i].blocks[j]``
  (positions in error messages read ``stages.i.blocks.j.mixer``).

Slots
-----
``mixer`` (token mixer, NCHW -> NCHW same C; default per family), ``norm`` (used in the stem, the downsampling layers,
the blocks and the head norm), ``act`` (MLP activation; the MLP head's too), ``attn`` (optional recalibration after
the mixer, default ``"none"``), ``head`` (global pooling; default ``"avg"``), ``connection`` (how each sub-layer's
branch is merged with its input; unset or ``"residual"``: the blocks' plain sums, see below).

Connections and residual streams
--------------------------------
``connection=`` (one value, per stage or :class:`~blockzoo.models.base.PerBlock`) goes to every block whose class
takes a ``connection`` option (:class:`~blockzoo.blocks.common.metaformer.MetaFormerBlock`: one merge for the token-
mixer branch and one for the MLP branch, each branch with its layer scale and drop path before the merge, as in the
ViT skeleton; :class:`~blockzoo.blocks.common.metaformer.MetaNeXtBlock` (ConvNeXt, InceptionNeXt): one merge for its
single residual branch); other block classes (a family's own block: UniRepLKNet, SpaRTAN, ...) are refused at build
time with an ``IncompatibleBlockError`` naming the families that carry it. Unset or ``"residual"`` builds no merge
modules at all (the same modules, state-dict keys and outputs as without the option). A stream connection
(hyper-connections, Zhu et al., ICLR 2025, arXiv:2409.19606 [S001]: ``connection="hyper_connection(n=4,
dynamic=True)"``) carries its ``n`` streams (folded into the batch) through the whole trunk, as the ViT and ResNet
skeletons do: the first block of
stage 0 copies the stem's output into the streams, every sub-layer reads its input through its width connection and
writes back through its depth connection, the last block sums the streams (then ``norm_pre`` / the head, whose norm
removes the factor ``n`` of the initialised sum as the paper's final norm does). **Downsampling**: the layer between
two stages is applied to every stream (shared weights), as the ResNet skeleton applies a unit's projection shortcut
to every mixed stream, so the streams change width and resolution together and the next stage's connections are
built at the new width; the paper (Pre-Norm transformers, constant width) does not cover it. The stage feature maps
(``forward_intermediates``, ``features_only``) are the sums of their streams (the reduce mode's mean with
``reduce="mean"``).

Per-stage / per-block mixers
----------------------------
``mixer`` and ``attn`` take one value per stage (``mixer=["dwconv", "dwconv", "gnconv", "gnconv"]``) or a
:class:`~blockzoo.models.base.PerBlock` function ``(stage_idx, block_idx) -> slot value``, the convention of every
blockzoo backbone (:mod:`blockzoo.models.base`). Families whose paper configuration differs per stage register it as
the slot's default (HorNet: ``mixer=["gnconv(order=2)", ..., "gnconv(order=5)"]``), so ``mixer="dwconv"`` replaces
it as a whole.

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

MLP kind, layout and CPU speed
------------------------------
``mlp="mlp"`` (default) is the two-layer channel MLP; ``mlp="convglu"`` replaces it in every block by TransNeXt's
Convolutional GLU (Shi, CVPR 2024, arXiv:2311.17132 [S025]; :class:`~blockzoo.blocks.common.mlp.ConvGLU`: a GLU
whose gate passes a 3x3 depthwise conv, ``int(2/3 * mlp_ratio * C)`` hidden channels, so about the MLP's
parameters), e.g. ``create_model("poolformer_s12", mlp="convglu")``. A family block of its own takes it only if its
constructor has an ``mlp`` option (a ``ConfigError`` says so otherwise).

``mlp_layout="linear"`` (default) runs the MLP as ``nn.Linear`` on an NHWC view; ``"conv"`` uses 1x1 convs on NCHW
(same parameter count; the weights have shape ``(out, in)`` vs ``(out, in, 1, 1)``). The block boundary is always
NCHW. Measured on this project's shared 2-core CPU (torch 2.13, 1 thread, forward + backward, batch 32, 32 px,
``stem="small"``, 10 classes; minimum of 11 interleaved runs, ``benchmarks/mlp_layout.py``): ``convnext_atto`` linear
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

    HORNET = dict(block="metaformer", ls_init_value=1e-6, stem="patch", downsample="patch", head_norm="post")
    register_model("hornet_tiny_7x7", family="hornet", paper=papers.HORNET,
                   slots={"mixer": [f"gnconv(order={o})" for o in (2, 3, 4, 5)], "norm": "ln2d", "act": "gelu",
                          "attn": "none", "head": "avg"}, ...)(
        metaformer_entry("hornet_tiny_7x7", dict(HORNET, depths=(2, 3, 18, 2), dims=(64, 128, 256, 512))))

A family whose block differs (UniRepLKNet's SE + GRN block, LSNet's alternating blocks) passes its own block class
(``block=MyBlock`` or one per stage) with the constructor above, and a per-block default for per-block choices.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn as nn

from blockzoo.blocks.common.drop import drop_path_schedule
from blockzoo.blocks.common.init import init_normal
from blockzoo.blocks.common.layers import make_act, make_norm
from blockzoo.blocks.common.metaformer import (
    BLOCKS,
    DOWNSAMPLES,
    STEMS,
    MetaFormerStage,
    MlpHead,
    PooledNorm,
    make_embed,
)
from blockzoo.blocks.common.mlp import MLPS
from blockzoo.blocks.connection.hyper import combine_streams, stream_trunk
from blockzoo.checks import check_choice, check_positive
from blockzoo.errors import ConfigError, IncompatibleBlockError
from blockzoo.models.base import Backbone, init_weights, parse_once, per_stage, to_size
from blockzoo.registry import build_slot, get_model_spec, list_models, parse_slot_value

__all__ = ["MetaFormer", "SMALL_IMG_SIZE", "CONVNEXT_MACRO", "metaformer_entry"]

SMALL_IMG_SIZE = 32      # img_size assumed by registered variants when stem="small" and no img_size is given

# ConvNeXt's macro design as a skeleton configuration (MetaNeXt blocks, 4x4 patch stem, 2x2 norm+conv downsampling,
# head LayerNorm after pooling): the ConvNeXt family and its variants in other families (pfnet) add depths/dims.
CONVNEXT_MACRO: dict[str, Any] = dict(block="metanext", mlp_ratios=4.0, ls_init_value=1e-6, stem="patch",
                                      downsample="patch", head_norm="post")

# ------------------------------------------------------------------------------------------------------ backbone
def _mlp_option(mlp: Any, blocks: list[Any], owner: str) -> dict[str, Any]:
    """The ``mlp=`` keyword the blocks get: none for the default MLP (so a family block without the option still
    builds), else ``{"mlp": mlp}`` after checking the name and that every block class takes it."""
    check_choice(mlp, "mlp", MLPS, owner=owner)
    if mlp == "mlp":
        return {}
    for b in blocks:
        params = inspect.signature(b).parameters
        if "mlp" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            raise ConfigError(f"{owner}: mlp={mlp!r} needs blocks with an mlp option, but the "
                              f"{getattr(b, '__name__', b)} block has its own channel MLP; use mlp='mlp' or a "
                              f"metaformer / metanext block")
    return {"mlp": mlp}


def _takes_connection(block: Any) -> bool:
    """Whether a block class (or factory) has a ``connection`` option (a ``**kw`` catch-all does not count: the value
    could be ignored)."""
    block = BLOCKS.get(block, block) if isinstance(block, str) else block
    return callable(block) and "connection" in inspect.signature(block).parameters


def _connection_families() -> list[str]:
    """The registered families on this skeleton whose blocks (the variant's ``block`` option) all take a
    ``connection``."""
    families = set()
    for name in list_models():
        spec = get_model_spec(name)
        sig = inspect.signature(spec.fn)
        block = sig.parameters.get("block")
        if sig.return_annotation is MetaFormer and block is not None:
            blocks = block.default if isinstance(block.default, (list, tuple)) else [block.default]
            if all(_takes_connection(b) for b in blocks):
                families.add(spec.family)
    return sorted(families)


def _connection_option(value: Any, block: Any, owner: str) -> dict[str, Any]:
    """The ``connection=`` keyword a block gets: none for the plain residual sums (unset or ``"residual"``: the
    blocks build no merge modules), else ``{"connection": value}`` for a block class that takes it."""
    if value is None or parse_slot_value(value) == ("residual", {}):
        return {}
    if not _takes_connection(block):
        name = getattr(getattr(block, "func", block), "__name__", block)   # a class or a functools.partial of one
        raise IncompatibleBlockError(
            f"{owner}: connection={value!r} needs blocks that merge their sub-layers through the connection slot, but "
            f"the {name} block keeps its own residual sums; use a family whose blocks "
            f"carry it ({', '.join(_connection_families())}; block='metaformer') or leave connection unset")
    return {"connection": value}


class MetaFormer(Backbone):
    """Hierarchical MetaFormer / MetaNeXt backbone; see the module docstring for every option."""

    _final_path, _final_is_norm = ("norm_pre",), True

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
        connection: Any = None,
        mlp_ratios: float | Sequence[float] = 4.0,
        mlp_layout: str = "linear",
        mlp: str = "mlp",
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
            raise ConfigError(f"depths {depths} and dims {dims} must be non-empty and of the same length")
        n_stages = len(depths)
        if head_norm not in (None, "pre", "post"):
            raise ConfigError(f"head_norm must be None, 'pre' (norm before pooling) or 'post' (after pooling), "
                              f"got {head_norm!r}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ConfigError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.model_name, self.in_chans = model_name, in_chans
        self.depths, self.dims, self.num_stages = tuple(depths), tuple(dims), n_stages

        # picklable factories (no closures are kept on the module, so torch.save(model) / deepcopy work)
        norm_layer: Callable[[int], nn.Module] = partial(make_norm, parse_once(norm))
        act_layer: Callable[[], nn.Module] = partial(make_act, parse_once(act))

        blocks_cls = [BLOCKS[b] if isinstance(b, str) and b in BLOCKS else b
                      for b in per_stage(block, n_stages, "block")]
        for b in blocks_cls:
            if not callable(b):
                raise ConfigError(f"unknown block {b!r}; choose one of {', '.join(BLOCKS)} or pass a block class")
        mlp_kw = _mlp_option(mlp, blocks_cls, model_name)
        ratios = [check_positive(r, "mlp_ratios", owner="MetaFormer")
                  for r in per_stage(mlp_ratios, n_stages, "mlp_ratios")]

        # stem
        feat = to_size(img_size)
        st_kw = dict(stem_kwargs or {})
        if patch_size is not None:
            st_kw.update(kernel_size=patch_size, stride=patch_size, padding=0)
        self.stem = make_embed(stem, STEMS, st_kw, "stem", in_chans, dims[0], norm_layer, act_layer)
        feat = self.track_module(self.stem, feat)

        # stages
        self.drop_path_rates = drop_path_schedule(depths, drop_path_rate)
        stages, feature_sizes, every_block, k = [], [], [], 0
        for i in range(n_stages):
            if i == 0:
                ds: nn.Module = nn.Identity()
            else:
                ds = make_embed(downsample, DOWNSAMPLES, downsample_kwargs, "downsample", dims[i - 1], dims[i],
                                norm_layer, act_layer, i)
                feat = self.track_module(ds, feat)
            self.begin_stage(i, f"stages.{i}", feat)
            blocks = []
            for j in range(depths[i]):
                pos = f"stages.{i}.blocks.{j}"
                mixer_mod = build_slot("mixer", self.slot_value("mixer", mixer, i, j), dims[i],
                                       self.ctx(f"{pos}.mixer", feat))
                attn_mod = build_slot("attn", self.slot_value("attn", attn, i, j), dims[i],
                                      self.ctx(f"{pos}.attn", feat))
                conn_kw = _connection_option(self.slot_value("connection", connection, i, j), blocks_cls[i],
                                             model_name)
                blocks.append(blocks_cls[i](
                    dims[i], mixer=mixer_mod, attn=attn_mod, norm_layer=norm_layer, act_layer=act_layer,
                    mlp_ratio=ratios[i], ls_init_value=ls_init_value, drop_path=self.drop_path_rates[k],
                    mlp_layout=mlp_layout, feat_size=feat,
                    ctx=self.block_ctx(pos, feat), **mlp_kw, **conn_kw, **(block_kwargs or {})))
                k += 1
            stages.append(MetaFormerStage(ds, blocks))
            every_block += blocks
            feature_sizes.append(feat)
            self.add_feature(f"stages.{i}", dims[i])
        self.stages = nn.Sequential(*stages)
        self.feature_sizes: list[tuple[int, int] | None] = feature_sizes
        # residual streams (hyper-connections) from the first block to the last, across the downsampling layers; a
        # block without merges counts as one plain stream, so a trunk mixing it with stream connections is refused
        units = [getattr(b, "merges", None) for b in every_block]
        merges = [m for u, b in zip(units, every_block) for m in (u if u is not None else [b])]
        self.streams = stream_trunk(units, merges, model_name) if merges else 0   # (a block-less probe: none)
        self.stream_reduce = units[-1][-1].reduce_mode if self.streams else None

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
            raise ConfigError(f"init must be 'trunc_normal' or 'kaiming', got {init!r}")

    # ---------------------------------------------------------------------------------------------- helpers
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
        init_normal(self, 0.02)
        if head_init_scale != 1.0 and isinstance(self.fc, nn.Linear):
            with torch.no_grad():
                self.fc.weight.mul_(head_init_scale)
                self.fc.bias.mul_(head_init_scale)

    # ---------------------------------------------------------------------------------------------- forward
    def _feature_map(self, x: torch.Tensor, inp: torch.Tensor) -> torch.Tensor:
        """A stage's feature map combines its streams in a hyper-connected trunk (the last stage's holds one)."""
        return combine_streams(x.unflatten(0, (-1, inp.shape[0])), self.stream_reduce) if self.streams else x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.head_pre(self.head(x)))
        return x if pre_logits else self.fc(x)

    def _reset_classifier(self, num_classes: int, head: Any) -> None:
        """New classifier for ``num_classes``; the head norm / MLP-head body are kept (timm behaviour) unless a new
        pooling ``head`` changes the pooled feature size, in which case they are rebuilt too."""
        if head is not None:
            self.set_head(head)
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


# --------------------------------------------------------------------------------------------- registration aid
def metaformer_entry(name: str, config: dict[str, Any], *, default_img_size: int = 224, default_num_classes: int = 1000,
                     doc: str = "") -> Callable[..., MetaFormer]:
    """The constructor ``fn(*, num_classes, in_chans, **kw)`` of a registered variant: ``config`` (depths, dims,
    block, ...) updated with the user's keyword arguments (slots included). ``img_size`` defaults to
    ``default_img_size`` (``SMALL_IMG_SIZE`` with ``stem="small"``) so slot checks run against a known size. The
    function's signature lists ``config`` as its option defaults (``blockzoo info`` shows them)."""

    def fn(*, num_classes: int = default_num_classes, in_chans: int = 3, **kw: Any) -> MetaFormer:
        cfg = {**config, **kw}
        if cfg.get("img_size") is None:
            cfg["img_size"] = SMALL_IMG_SIZE if cfg.get("stem") == "small" else default_img_size
        return MetaFormer(num_classes=num_classes, in_chans=in_chans, model_name=name, **cfg)

    fn.__name__ = name
    fn.__doc__ = doc or f"{name}: MetaFormer skeleton with {config}"
    fn.__signature__ = _entry_signature(config, default_num_classes)  # type: ignore[attr-defined]
    return fn


def _entry_signature(config: dict[str, Any], num_classes: int) -> inspect.Signature:
    """``fn(*, num_classes=1000, in_chans=3, <config key>=<the variant's value>, ..., **kw) -> MetaFormer``: so the
    registry's option listing (``blockzoo info``) shows the variant's own defaults (depths, dims, head_norm, ...),
    not the skeleton's."""
    kw_only = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("num_classes", kw_only, default=num_classes, annotation=int),
              inspect.Parameter("in_chans", kw_only, default=3, annotation=int)]
    params += [inspect.Parameter(k, kw_only, default=v) for k, v in config.items()]
    params.append(inspect.Parameter("kw", inspect.Parameter.VAR_KEYWORD, annotation=Any))
    return inspect.Signature(params, return_annotation=MetaFormer)
