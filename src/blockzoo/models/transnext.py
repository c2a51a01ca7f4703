"""TransNeXt (Shi, "TransNeXt: Robust Foveal Visual Perception for Vision Transformers", CVPR 2024,
arXiv:2311.17132 [S025]): the four-stage backbone of aggregated attention and Convolutional GLU blocks.

The blocks are in :mod:`blockzoo.blocks.mixers.transnext` (aggregated attention, the last stage's length-scaled
attention, the block) and :class:`blockzoo.blocks.common.mlp.ConvGLU`. Architecture: the official definition
(DaiShiResearch/TransNeXt ``classification/transnext.py``)::

    stages[i] = patch_embed (overlapping conv -> LayerNorm) -> depths[i] blocks -> LayerNorm   (NHWC inside, NCHW out)
    stages[0].patch_embed: conv 7x7 / 4 (padding 3); stages[1..3]: conv 3x3 / 2 (padding 1)  (k = 2 * patch - 1 / 3)
    block: x + DP(attn(LN(x))), x + DP(ConvGLU(LN(x)))          head slot (avg) -> fc

    ======== ================== ============== ============== ============ ========
    variant  dims               heads          depths         mlp_ratios   head dim
    ======== ================== ============== ============== ============ ========
    micro    48, 96, 192, 384   2, 4, 8, 16    2, 2, 15, 2    8, 8, 4, 4   24
    tiny     72, 144, 288, 576  3, 6, 12, 24   2, 2, 15, 2    8, 8, 4, 4   24
    small    72, 144, 288, 576  3, 6, 12, 24   5, 5, 22, 5    8, 8, 4, 4   24
    base     96, 192, 384, 768  4, 8, 16, 32   5, 5, 23, 5    8, 8, 4, 4   24
    ======== ================== ============== ============== ============ ========

Every variant: ``sr_ratios`` (8, 4, 2, 1) -- stages 1-3 aggregated attention with a 3x3 window and pooled grids of
``map // sr`` (7x7 at 224 px in all three), stage 4 full length-scaled attention -- ``qkv_bias=True``, block and
stage LayerNorms eps 1e-6 (patch-embedding and pooled-token LayerNorms eps 1e-5), ConvGLU hidden width
``int(2/3 * mlp_ratio * C)``, drop path linear over all blocks.

Module names follow the official code with one rule per stage, so an official checkpoint loads through
:func:`from_official_state_dict`: ``patch_embed{i+1}.`` = ``stages.{i}.patch_embed.``, ``block{i+1}.{j}.`` =
``stages.{i}.blocks.{j}.``, ``norm{i+1}.`` = ``stages.{i}.norm.``, ``mlp.dwconv.dwconv.`` = ``mlp.dwconv.``,
``head.`` = ``fc.``. The features are the stage outputs after their LayerNorm (the official detection backbone's
outputs; reductions 4, 8, 16, 32); the head is average pooling + Linear, the official ``x.mean(1)`` + ``head``.

Options: ``img_size`` sets the resolution the bias tables and pool grids are built for (the official ``img_size``;
the model runs at other sizes too, see the block module), ``pretrain_size`` the size the position coordinates are
normalised by (official; default ``img_size``; both give their per-stage sizes through the patch embeddings' conv
arithmetic, where the official code divides by 4, 8, 16, 32: the same for multiples of 32), ``pool_size`` the
official ``fixed_pool_size`` (one fixed grid in every aggregated stage), ``window_size`` the aggregated stages'
window. Official ``drop_rate`` (dropout inside the attention projections and ConvGLU) is ``proj_drop_rate`` here;
``drop_rate`` is the dropout before the classifier (none in the official code). Init (official ``_init_weights``):
Linear trunc-normal(0.02) with zero bias, conv normal(0, sqrt(2 / fan_out)) with zero bias, LayerNorm 1 / 0; the
attention's own parameters as in the block module.

Slots: ``act`` (ConvGLU's activation, GELU; the pooled-token GELU is part of the attention) and ``head``.

Counts: parameters are the official definition's exactly; MACs with ``blockzoo.profile.count_macs`` (convs, linears,
the attention products and the bias MLP) equal the same counter on the official code, 2.649 G for micro against the
README's 2.7 G. ``transnext_nano_small`` is not a paper model: micro's design at CIFAR scale (patch 2, so 32 px
images give 16/8/4/2 maps with 2x2 pooled grids; 28 px: 14/7/4/2).
"""
from __future__ import annotations

import inspect
import math
import re
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.common.drop import drop_path_schedule
from blockzoo.blocks.common.init import apply_block_inits
from blockzoo.blocks.common.layers import make_act, out_size
from blockzoo.blocks.mixers.transnext import AggregatedAttention, LengthScaledAttention, TransNeXtBlock, pool_grid
from blockzoo.checks import check_int, check_positive
from blockzoo.errors import ConfigError
from blockzoo.models.base import Backbone, parse_once, per_stage, to_size
from blockzoo.registry import Claim, register_model

__all__ = ["OverlapPatchEmbed", "TransNeXtStage", "TransNeXt", "from_official_state_dict"]


class OverlapPatchEmbed(nn.Module):
    """``proj`` (k x k conv, stride s, padding k // 2) -> ``norm`` (LayerNorm over channels, eps 1e-5); NCHW in,
    NHWC out."""

    def __init__(self, in_chans: int, dim: int, kernel: int, stride: int):
        super().__init__()
        self.geometry = (kernel, stride)
        self.proj = nn.Conv2d(in_chans, dim, kernel, stride, kernel // 2)
        self.norm = nn.LayerNorm(dim)

    def out_size(self, size: tuple[int, int] | None) -> tuple[int, int] | None:
        k, s = self.geometry
        return out_size(size, s, k, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class TransNeXtStage(nn.Module):
    """``patch_embed`` -> ``blocks`` -> ``norm`` on NHWC; NCHW in and out (the units of the feature path)."""

    def __init__(self, patch_embed: nn.Module, blocks: Sequence[nn.Module], norm: nn.Module):
        super().__init__()
        self.patch_embed = patch_embed
        self.blocks = nn.Sequential(*blocks)
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(self.patch_embed(x))).permute(0, 3, 1, 2)


class TransNeXt(Backbone):
    """TransNeXt backbone; see the module docstring for the options."""

    _feature_path = ("stages.*",)

    def __init__(self, depths: Sequence[int], dims: Sequence[int], num_heads: Sequence[int],
                 mlp_ratios: float | Sequence[float], *, num_classes: int = 1000, in_chans: int = 3,
                 model_name: str = "transnext", sr_ratios: Sequence[int] = (8, 4, 2, 1), window_size: int = 3,
                 patch_size: int = 4, qkv_bias: bool = True, img_size: int | tuple[int, int] = 224,
                 pretrain_size: int | tuple[int, int] | None = None, pool_size: int | None = None,
                 drop_rate: float = 0.0, proj_drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, act: Any = "gelu", head: Any = "avg"):
        super().__init__()
        depths = list(depths) if isinstance(depths, (list, tuple)) else depths
        if not isinstance(depths, list) or not depths:
            raise ConfigError(f"{model_name}: depths must list the blocks of each stage, e.g. (2, 2, 15, 2); got "
                              f"{depths!r}")
        n = len(depths)
        dims, heads = per_stage(dims, n, "dims", model_name), per_stage(num_heads, n, "num_heads", model_name)
        ratios = [check_positive(r, "mlp_ratios", owner=model_name)
                  for r in per_stage(mlp_ratios, n, "mlp_ratios", model_name)]
        srs = per_stage(sr_ratios, n, "sr_ratios", model_name)
        for k, values in (("depths", depths), ("dims", dims), ("num_heads", heads), ("sr_ratios", srs)):
            for v in values:
                check_int(v, k, min_value=1, owner=model_name)
        for c, h in zip(dims, heads):
            if c % h:
                raise ConfigError(f"{model_name}: a stage width of {c} does not split into {h} heads; give num_heads "
                                  f"dividing dims stage by stage")
        check_int(patch_size, "patch_size", min_value=2, owner=model_name)   # the stem kernel 2p - 1 > stride p
        if pool_size is not None:
            check_int(pool_size, "pool_size", min_value=1, owner=model_name)
        if img_size is None:
            raise ConfigError(f"{model_name}: img_size is required (the resolution its position-bias tables and "
                              f"pool grids are built for), e.g. img_size=224")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ConfigError(f"{model_name}: drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.model_name, self.in_chans, self.num_stages = model_name, in_chans, n
        act_layer = partial(make_act, parse_once(act))

        feat, pre = to_size(img_size), to_size(pretrain_size or img_size)
        self.drop_path_rates = drop_path_schedule(depths, drop_path_rate)
        stages, k = [], 0
        for i in range(n):
            embed = OverlapPatchEmbed(in_chans if i == 0 else dims[i - 1], dims[i],
                                      2 * patch_size - 1 if i == 0 else 3, patch_size if i == 0 else 2)
            feat, pre = self.track_module(embed, feat), embed.out_size(pre)
            self.begin_stage(i, f"stages.{i}", feat)
            blocks = []
            for _ in range(depths[i]):
                kw = dict(qkv_bias=qkv_bias, attn_drop=attn_drop_rate, proj_drop=proj_drop_rate,
                          pretrain_resolution=pre)
                if srs[i] == 1:
                    attn: nn.Module = LengthScaledAttention(dims[i], heads[i], feat, **kw)
                else:
                    grid = pool_grid(feat, None if pool_size else srs[i], pool_size or 0, model_name)
                    attn = AggregatedAttention(dims[i], heads[i], feat, grid, window_size, **kw)
                blocks.append(TransNeXtBlock(dims[i], attn, ratios[i], proj_drop_rate, self.drop_path_rates[k],
                                             act_layer))
                k += 1
            stages.append(TransNeXtStage(embed, blocks, nn.LayerNorm(dims[i], eps=1e-6)))
            self.add_feature(f"stages.{i}", dims[i])
        self.stages = nn.Sequential(*stages)
        self.init_head(dims[-1], num_classes, head, drop_rate, feat_size=feat)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        apply_block_inits(self)

    def _reset_classifier(self, num_classes: int, head: Any) -> None:
        super()._reset_classifier(num_classes, head)
        if isinstance(self.fc, nn.Linear):
            nn.init.trunc_normal_(self.fc.weight, std=0.02)
            nn.init.zeros_(self.fc.bias)

    def no_weight_decay(self) -> set[str]:
        """The official ``no_weight_decay_keywords``: query embeddings, local relative biases, the bias MLPs and the
        temperatures."""
        keys = ("query_embedding", "relative_pos_bias_local", "cpb", "temperature")
        return {k for k, _ in self.named_parameters() if any(s in k for s in keys)}


_OFFICIAL_RULES = ((r"^patch_embed(\d+)\.", lambda m: f"stages.{int(m[1]) - 1}.patch_embed."),
                   (r"^block(\d+)\.", lambda m: f"stages.{int(m[1]) - 1}.blocks."),
                   (r"^norm(\d+)\.", lambda m: f"stages.{int(m[1]) - 1}.norm."),
                   (r"^head\.", lambda m: "fc."),
                   (r"\.mlp\.dwconv\.dwconv\.", lambda m: ".mlp.dwconv."))


def from_official_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official TransNeXt state dict (DaiShiResearch/TransNeXt, e.g. ``transnext_tiny_224_1k.pth``) in
    blockzoo's key layout (the rules in the module docstring): ``model.load_state_dict(from_official_state_dict(sd))``.
    """
    out = {}
    for key, value in state_dict.items():
        for pattern, repl in _OFFICIAL_RULES:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


# ------------------------------------------------------------------------------------------------ registration
SLOTS = {"act": "gelu", "head": "avg"}
_T = "tests/models/test_transnext.py::"
_RELEASED = dict(mlp_ratios=(8, 8, 4, 4), sr_ratios=(8, 4, 2, 1), window_size=3, patch_size=4, qkv_bias=True)


def _entry(name: str, config: dict[str, Any]):
    """The constructor ``fn(*, num_classes, in_chans, **kw)`` of a registered variant; its signature lists the
    variant's own configuration (``blockzoo info``)."""
    def fn(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> TransNeXt:
        return TransNeXt(num_classes=num_classes, in_chans=in_chans, model_name=name, **{**config, **kw})

    kw_only = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("num_classes", kw_only, default=1000, annotation=int),
              inspect.Parameter("in_chans", kw_only, default=3, annotation=int)]
    params += [inspect.Parameter(k, kw_only, default=v) for k, v in config.items()]
    params.append(inspect.Parameter("kw", inspect.Parameter.VAR_KEYWORD, annotation=Any))
    fn.__name__ = name
    fn.__doc__ = f"TransNeXt ({name}): depths {config['depths']}, dims {config['dims']}, heads {config['num_heads']}"
    fn.__signature__ = inspect.Signature(params, return_annotation=TransNeXt)  # type: ignore[attr-defined]
    return fn


def _claims(params: int, paper: str, macs: str) -> tuple[Claim, ...]:
    return (Claim(f"{params:,} parameters (the official definition; README: {paper})", _T + "test_param_counts"),
            Claim(f"{macs} GMACs at 224 (official README)", _T + "test_macs_224"))


register_model(
    "transnext_micro", family="transnext", slots=SLOTS, paper=papers.TRANSNEXT, paper_params=12_800_000,
    paper_macs=2.7e9, reference={"params_1000cls": 12_809_304, "macs_224": 2_648_551_168},
    summary="TransNeXt-Micro: dims (48, 96, 192, 384), depths (2, 2, 15, 2), aggregated attention (3x3 window + 7x7 "
            "pooled tokens) in stages 1-3, full attention in stage 4, ConvGLU",
    claims=_claims(12_809_304, "12.8M", "2.7") + (
        Claim("the same function as the official plain-PyTorch model for the same weights",
              _T + "test_same_function_as_the_official_model"),),
)(_entry("transnext_micro", dict(depths=(2, 2, 15, 2), dims=(48, 96, 192, 384), num_heads=(2, 4, 8, 16),
                                 **_RELEASED)))

register_model(
    "transnext_tiny", family="transnext", slots=SLOTS, paper=papers.TRANSNEXT, paper_params=28_200_000,
    paper_macs=5.7e9, reference={"params_1000cls": 28_258_960, "macs_224": 5_711_069_568},
    summary="TransNeXt-Tiny: dims (72, 144, 288, 576), depths (2, 2, 15, 2), heads of 24 channels",
    claims=_claims(28_258_960, "28.2M", "5.7") + (
        Claim("TransNeXt-Tiny beats ConvNeXt-B with 69% fewer parameters: the parameter part (ours: 68.1% fewer than "
              "ConvNeXt-B's 88,591,464; the paper rounds 28.2M / 89M); the accuracy part (84.0% vs 83.8% ImageNet "
              "top-1) needs ImageNet training and is not checked here", _T + "test_tiny_vs_convnext_base_parameters"),),
)(_entry("transnext_tiny", dict(depths=(2, 2, 15, 2), dims=(72, 144, 288, 576), num_heads=(3, 6, 12, 24),
                                **_RELEASED)))

register_model(
    "transnext_small", family="transnext", slots=SLOTS, paper=papers.TRANSNEXT, paper_params=49_700_000,
    paper_macs=10.3e9, reference={"params_1000cls": 49_741_564, "macs_224": 10_290_562_816},
    summary="TransNeXt-Small: dims (72, 144, 288, 576), depths (5, 5, 22, 5)",
    claims=_claims(49_741_564, "49.7M", "10.3"),
)(_entry("transnext_small", dict(depths=(5, 5, 22, 5), dims=(72, 144, 288, 576), num_heads=(3, 6, 12, 24),
                                 **_RELEASED)))

register_model(
    "transnext_base", family="transnext", slots=SLOTS, paper=papers.TRANSNEXT, paper_params=89_700_000,
    paper_macs=18.4e9, reference={"params_1000cls": 89_721_496, "macs_224": 18_299_881_472},
    summary="TransNeXt-Base: dims (96, 192, 384, 768), depths (5, 5, 23, 5)",
    claims=_claims(89_721_496, "89.7M", "18.4"),
)(_entry("transnext_base", dict(depths=(5, 5, 23, 5), dims=(96, 192, 384, 768), num_heads=(4, 8, 16, 32),
                                **_RELEASED)))

register_model(
    "transnext_nano_small", family="transnext", slots=SLOTS, paper=papers.TRANSNEXT, input_size=(3, 32, 32),
    num_classes=10,
    summary="TransNeXt at CIFAR scale (not a paper model): micro's design with dims (24, 48, 96, 192), depths "
            "(2, 2, 2, 2), patch 2, for 28-32 px inputs",
    claims=(Claim("trains on 28-32 px inputs", _T + "test_nano_small_trains_on_small_images"),),
)(_entry("transnext_nano_small", dict(depths=(2, 2, 2, 2), dims=(24, 48, 96, 192), num_heads=(1, 2, 4, 8),
                                      **{**_RELEASED, "patch_size": 2}, img_size=32)))
