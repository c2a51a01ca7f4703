"""Hybrid FcaFormer (Zhang, Hu & Wang, "FcaFormer: Forward Cross Attention in Hybrid Vision Transformer", ICCV 2023,
arXiv:2211.07198 [S044]; official code hkzhang-git/FcaFormer, ``image_classification/models/fcaformer.py``) with
``act`` / ``head`` slots. The blocks are in :mod:`blockzoo.blocks.mixers.fcaformer`.

Architecture (paper Fig. 2b, "hybrid FcaFormer": ConvNeXt stages, then FcaFormer stages; details from the code)
--------------------------------------------------------------------------------------------------------------
* stem (stride 4): 3x3 conv s2 -> BN -> GELU -> 3x3 conv s2 -> BN (``C0 / 2`` then ``C0`` channels);
* stages 1-2: ConvNeXt blocks (7x7 depthwise conv with bias -> LayerNorm eps 1e-6 -> MLP 4x GELU -> layer scale
  1e-6 -> residual; :class:`~blockzoo.blocks.common.metaformer.MetaNeXtBlock` with ``dwconv``);
* stages 3-4: FcaFormer blocks (forward cross attention, TME, LSFs; MLP ratio 4, layer scale 1e-6) with
  ``C / 32`` heads of 32 channels;
* downsampling between stages (official ``PatchMerging``, at the start of stages 2-4 here): 1x1 conv -> BN -> GELU ->
  3x3 depthwise conv s2 -> BN -> GELU -> 1x1 conv -> BN;
* head: global average pooling -> LayerNorm (eps 1e-5) -> linear classifier.

========== ============ ====================== =========
model      depths       widths                 heads
========== ============ ====================== =========
L1         2, 2, 6, 2   64, 128, 192, 320      -, -, 6, 10
L2         2, 2, 7, 2   96, 192, 320, 480      -, -, 10, 15
L3         3, 6, 12, 3  96, 192, 320, 512      -, -, 10, 16
L4         3, 6, 12, 3  128, 256, 512, 768     -, -, 16, 24
========== ============ ====================== =========

These are the official definitions (``fcaformer_l1`` ... ``fcaformer_l4``), whose comments and README give 6.2M /
1.4 G, 16.3M / 3.6 G (the paper's headline model, FcaFormer-L2), 27.9M / 6.7 G and 65.6M / 14.5 G at 224 px; the
plain (DeiT-like) FcaFormer-L0 is not in the official code and is not built here. Our parameter counts are the
official definition's (the attention-bias tables are sized for the 224 px grids, 14x14 and 7x7). MACs:
``blockzoo.profile.count_macs`` (convs, linears, attention products) at 224 px.

The attention biases and LSFs are built for the ``img_size`` grids and read at clamped indices for other inputs
(see the block module; the official model takes its build size only); their sizes, hence the parameter count,
follow ``img_size``.

Deviations / options
--------------------
* Init (official): conv / linear weights trunc-normal(0.02), zero biases, LayerNorms (1, 0), BN (1, 0); LSFs 1,
  attention biases 0, layer scales 1e-6.
* ``drop_path_rate``: linear over all blocks (official; its scripts use 0 / 0.1 / 0.2 / 0.4 for L1-L4), default 0.
* ``max_cross_blocks``: official ``cab_max_d`` (12; larger than any stage here, so every earlier block counts).
* ``mlp_norm``: the official second LayerNorm at the MLP input (default on; ``False`` drops it).
* ``stem="small"`` (28-32 px): both stem convs at stride 1, so a 32 px input gives 32, 16, 8, 4 px stages (overall
  stride 8; cross tokens 2x2 per block in stage 3, 1 in stage 4). ``fcaformer_l1_small``: L1, 10 classes, 32 px.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.common.drop import drop_path_schedule
from blockzoo.blocks.common.init import init_normal
from blockzoo.blocks.common.layers import ConvNormAct, LayerNorm2d, make_act, out_size
from blockzoo.blocks.common.metaformer import MetaFormerStage, MetaNeXtBlock
from blockzoo.blocks.mixers.dwconv import DWConv
from blockzoo.blocks.mixers.fcaformer import FcaBlock, FcaStage
from blockzoo.checks import check_choice, check_int, check_positive
from blockzoo.errors import ConfigError
from blockzoo.models.base import Backbone, PooledNormHead, parse_once, to_size
from blockzoo.registry import Claim, register_model

__all__ = ["FcaFormer", "PatchMerging", "FCAFORMER_CONFIGS", "SLOTS"]

SLOTS = {"act": "gelu", "head": "avg"}
HEAD_DIM = 32
_T = "tests/models/test_fcaformer.py::"

# name: (depths, dims, exact params (1000 classes), MACs at 224 px (count_macs), paper params, paper MACs)
FCAFORMER_CONFIGS: dict[str, tuple[tuple[int, ...], tuple[int, ...], int, int, float, float]] = {
    "fcaformer_l1": ((2, 2, 6, 2), (64, 128, 192, 320), 6_187_560, 1_365_040_320, 6.2e6, 1.4e9),
    "fcaformer_l2": ((2, 2, 7, 2), (96, 192, 320, 480), 16_275_870, 3_566_905_760, 16.3e6, 3.6e9),
    "fcaformer_l3": ((3, 6, 12, 3), (96, 192, 320, 512), 27_894_484, 6_539_289_856, 27.9e6, 6.7e9),
    "fcaformer_l4": ((3, 6, 12, 3), (128, 256, 512, 768), 65_638_204, 14_207_888_896, 65.6e6, 14.5e9),
}


class PatchMerging(nn.Sequential):
    """The official downsampling: 1x1 conv-BN -> act -> 3x3 depthwise conv-BN stride 2 -> act -> 1x1 conv-BN."""

    def __init__(self, in_dim: int, out_dim: int, act: Any = "gelu"):
        super().__init__(ConvNormAct(in_dim, out_dim, 1, act=act),
                         ConvNormAct(out_dim, out_dim, 3, 2, out_dim, act=act),
                         ConvNormAct(out_dim, out_dim, 1, act=None))

    def out_size(self, size: tuple[int, int] | None) -> tuple[int, int] | None:
        return out_size(size, 2, 3, 1)


class FcaFormer(PooledNormHead, Backbone):
    """Hybrid FcaFormer backbone (see the module docstring).

    Args:
        depths / dims: blocks and width per stage (the first ``num_conv_stages`` are ConvNeXt stages).
        num_heads: heads of the FcaFormer stages (default ``dim // 32``).
        img_size: the input size (required: the attention biases are built for its grids).
        stem: ``"imagenet"`` (stride 4) or ``"small"`` (stride 1, for 28-32 px).
        max_cross_blocks, mlp_norm: see the module docstring; drop_rate: dropout before the classifier;
        drop_path_rate: stochastic depth, linear over the blocks.
    """

    _feature_path = ("stem", "stages.*")

    def __init__(self, *, depths: tuple[int, ...] = (2, 2, 7, 2), dims: tuple[int, ...] = (96, 192, 320, 480),
                 num_heads: tuple[int, ...] | None = None, num_conv_stages: int = 2, mlp_ratio: float = 4.0,
                 max_cross_blocks: int = 12, mlp_norm: bool = True, stem: str = "imagenet",
                 img_size: int | tuple[int, int] | None = 224, num_classes: int = 1000, in_chans: int = 3,
                 drop_rate: float = 0.0, drop_path_rate: float = 0.0, act: Any = SLOTS["act"],
                 head: Any = SLOTS["head"], model_name: str = "fcaformer"):
        super().__init__()
        check_choice(stem, "stem", ("imagenet", "small"), owner=model_name)
        if len(depths) != len(dims):
            raise ConfigError(f"{model_name}: depths and dims need one entry per stage, got {len(depths)} and "
                              f"{len(dims)}")
        for d in depths:
            check_int(d, "depths", min_value=1, owner=model_name)
        for d in dims:
            check_int(d, "dims", min_value=2, owner=model_name)     # the stem's first conv has dims[0] // 2
        check_positive(mlp_ratio, "mlp_ratio", owner=model_name)
        check_int(num_conv_stages, "num_conv_stages", min_value=0, owner=model_name)
        if num_conv_stages >= len(depths):
            raise ConfigError(f"{model_name}: num_conv_stages={num_conv_stages} leaves no FcaFormer stage of the "
                              f"{len(depths)}; use fewer conv stages")
        heads = list(num_heads) if num_heads is not None else [max(1, d // HEAD_DIM) for d in dims]
        if len(heads) != len(dims):
            raise ConfigError(f"{model_name}: num_heads needs one entry per stage ({len(dims)}), got {len(heads)}")
        for d, h in zip(dims[num_conv_stages:], heads[num_conv_stages:]):
            check_int(h, "num_heads", min_value=1, owner=model_name)
            if d % h:
                raise ConfigError(f"{model_name}: a width of {d} does not split into {h} heads; give num_heads "
                                  f"dividing dims")
        if img_size is None:
            raise ConfigError(f"{model_name}: img_size is required (the attention-bias tables are built for its "
                              f"grids), e.g. img_size=224")
        act = parse_once(act)
        self.model_name, self.in_chans, self.num_stages = model_name, in_chans, len(depths)
        self.img_size = to_size(img_size)
        s = 1 if stem == "small" else 2
        self.stem = nn.Sequential(ConvNormAct(in_chans, dims[0] // 2, 3, s, act=act),
                                  ConvNormAct(dims[0] // 2, dims[0], 3, s, act=None))
        feat = self.track(self.track(self.img_size, s), s)

        dpr = iter(drop_path_schedule(depths, drop_path_rate))
        act_layer = partial(make_act, act)
        stages: list[nn.Module] = []
        for i, (n, dim) in enumerate(zip(depths, dims)):
            down: nn.Module = nn.Identity() if i == 0 else PatchMerging(dims[i - 1], dim, act)
            if i:
                feat = self.track_module(down, feat)
            self.begin_stage(i, f"stages.{i}", feat)
            if i < num_conv_stages:
                blocks = [MetaNeXtBlock(dim, mixer=DWConv(dim), norm_layer=partial(LayerNorm2d, eps=1e-6),
                                        act_layer=act_layer, mlp_ratio=mlp_ratio, ls_init_value=1e-6,
                                        drop_path=next(dpr)) for _ in range(n)]
                stages.append(MetaFormerStage(down, blocks))
            else:
                blocks = [FcaBlock(dim, heads[i], feat, min(b, max_cross_blocks), merge=b < n - 1,
                                   mlp_ratio=mlp_ratio, drop_path=next(dpr), act_layer=act_layer, mlp_norm=mlp_norm)
                          for b in range(n)]
                stages.append(FcaStage(down, blocks, max_cross_blocks))
            self.add_feature(f"stages.{i}", dim)
        self.stages = nn.Sequential(*stages)
        self.init_head(dims[-1], num_classes, head, drop_rate, feat_size=feat)
        self.init_head_norm(1e-5)
        self._init_weights()

    def _init_weights(self) -> None:
        """Official init: conv / linear weights trunc-normal(0.02), zero biases, norms (1, 0); then each block's own
        (LSFs 1, attention biases 0, layer scales 1e-6)."""
        init_normal(self, 0.02)


    def no_weight_decay(self) -> set[str]:
        """The attention biases and the LSFs (per-token scalars, as position tables)."""
        keys = ("attention_biases", "cross_bias", "cross_scale")
        return {k for k, _ in self.named_parameters() if any(s in k for s in keys)}


# ------------------------------------------------------------------------------------------------- registrations
def _entry(name: str, base: str, small: bool = False):
    depths, dims = FCAFORMER_CONFIGS[base][:2]

    if small:
        def fn(*, num_classes: int = 10, in_chans: int = 3, **kw) -> FcaFormer:
            kw.setdefault("img_size", 32)
            return FcaFormer(depths=depths, dims=dims, stem="small", num_classes=num_classes, in_chans=in_chans,
                             model_name=name, **kw)
        fn.__doc__ = f"{base} for 28-32 px inputs (stride-1 stem; stages at 32, 16, 8, 4 px)"
    else:
        def fn(*, num_classes: int = 1000, in_chans: int = 3, **kw) -> FcaFormer:
            return FcaFormer(depths=depths, dims=dims, num_classes=num_classes, in_chans=in_chans, model_name=name,
                             **kw)
        fn.__doc__ = f"{name}: hybrid FcaFormer at the official 224 px setting"
    return fn


# test_size: the registry-wide tests' input side. torch.export specialises a dimension that reaches 1, here the
# cross-token grid ceil(H/4) of the last stage's map, so the export test's example and its larger sizes must keep
# every cross grid above 1x1: a last-stage map of at least 5x5 (136 px; 40 px for the stride-8 small variant).
def _spec(name: str, *extra_claims: Claim) -> dict[str, Any]:
    depths, dims, params, macs, pp, pm = FCAFORMER_CONFIGS[name]
    return dict(
        family="fcaformer", slots=SLOTS, paper=papers.FCAFORMER, input_size=(3, 224, 224), num_classes=1000,
        test_size=136,
        paper_params=int(pp), paper_macs=pm, reference={"params_1000cls": params, "macs_224": macs},
        summary=f"hybrid FcaFormer: 2 ConvNeXt stages, then forward-cross-attention stages; blocks "
                f"{','.join(map(str, depths))}, widths {','.join(map(str, dims))}",
        claims=(Claim(f"{params:,} parameters (1000 classes), the official definition's count "
                      f"(paper/README {pp / 1e6:g}M)", _T + "test_param_counts"),
                Claim(f"about {pm / 1e9:g} G MACs at 224 px (official README)", _T + "test_macs_224"),
                *extra_claims))


register_model("fcaformer_l1", **_spec("fcaformer_l1"))(_entry("fcaformer_l1", "fcaformer_l1"))
register_model("fcaformer_l2", **_spec(
    "fcaformer_l2",
    Claim("FcaFormer-L2 (16.3M) has about half the parameters of ConvNeXt-T / Swin-T (29M) it is compared with "
          "(ours: 0.57x convnext_tiny's and 0.58x swin_tiny's count)", _T + "test_param_saving")))(
    _entry("fcaformer_l2", "fcaformer_l2"))
register_model("fcaformer_l3", **_spec("fcaformer_l3"))(_entry("fcaformer_l3", "fcaformer_l3"))
register_model("fcaformer_l4", **_spec("fcaformer_l4"))(_entry("fcaformer_l4", "fcaformer_l4"))

_SMALL_PARAMS = 5_863_065   # fcaformer_l1_small, 3 channels, 10 classes, 32 px
register_model(
    "fcaformer_l1_small", family="fcaformer", slots=SLOTS, paper=papers.FCAFORMER, input_size=(3, 32, 32),
    num_classes=10, reference={"params_3ch_10cls": _SMALL_PARAMS}, test_size=40,
    summary="FcaFormer-L1 for 28-32 px inputs: stride-1 stem, FcaFormer stages at 8x8 and 4x4",
    claims=(Claim(f"{_SMALL_PARAMS:,} parameters (3 channels, 10 classes)", _T + "test_small_params"),
            Claim("a 32 px input ends at 4x4 (overall stride 8)", _T + "test_small_feature_size")),
    notes="img_size defaults to 32.",
)(_entry("fcaformer_l1_small", "fcaformer_l1", small=True))
