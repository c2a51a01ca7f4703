"""The Swin Transformer skeleton shared by Swin (V1) and Swin V2: a skeleton module, it registers nothing
(``models/swin.py`` and ``models/swinv2.py`` register the variants).

Liu et al., "Swin Transformer" (ICCV 2021, arXiv:2103.14030 [S085]) and "Swin Transformer V2" (CVPR 2022,
arXiv:2111.09883 [S078]); the blocks are in :mod:`blockzoo.blocks.mixers.swin` / :mod:`~blockzoo.blocks.mixers.swinv2`.

Macro (paper Fig. 3; timm's module layout, so timm's state dicts map 1:1: ``stem`` = timm ``patch_embed``,
``stages`` = ``layers``, ``fc`` = ``head.fc``)::

    stem (patch_size x patch_size conv -> LayerNorm) -> stages[0..3] -> norm (LayerNorm) -> head slot (avg) -> fc

- ``stages[i]`` = patch merging (identity in stage 0; 2x2 concat -> 4C -> 2C) then ``depths[i]`` blocks that
  alternate W-MSA (even index) and SW-MSA (odd index, shift ``window // 2``). A stage computes in NHWC and returns
  NCHW, so the generic ``Backbone`` feature path (``feature_info``, ``forward_intermediates``, ``features_only``)
  works as for every other family; features are the stage outputs (reductions 4, 8, 16, 32), like timm's.
- ``version="v1"``: pre-norm blocks, merging ``LN(4C) -> Linear``; ``"v2"``: residual-post-norm cosine-attention
  blocks, merging ``Linear -> LN(2C)``, ``pretrained_window_sizes`` and ``cpb_bound`` (see ``swinv2``).
- Window sizes follow the official rule at the feature sizes of ``img_size`` (a map not larger than the window gets
  one window and no shift); the model then runs at other input sizes too (padding, masked), see the block module.
- ``drop_path_rate``: linear over all blocks (official); default 0 (the paper trains T/S/B with 0.2/0.3/0.5).
- Init (official): Linear weights trunc-normal(0.02), zero biases, LayerNorms 1/0, relative-bias tables
  trunc-normal(0.02); V2: logit scale ``log 10`` and the post-norms zeroed; the patch-embedding conv keeps PyTorch's
  default init.

Slots: ``act`` (the MLP activation, GELU) and ``head`` (pooling, ``avg``). The final LayerNorm runs before the pooling
head (timm, official), as ``_final_path``.
"""
from __future__ import annotations

import inspect
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.blocks.common.drop import drop_path_schedule
from blockzoo.blocks.common.layers import LayerNorm2d, make_act, out_size
from blockzoo.blocks.common.transformer import init_transformer_weights
from blockzoo.blocks.mixers.swin import PatchMerging, SwinBlock
from blockzoo.blocks.mixers.swinv2 import SwinV2Block
from blockzoo.checks import check_choice, check_int, check_positive
from blockzoo.errors import ConfigError
from blockzoo.models.base import Backbone, parse_once, per_stage, to_size

__all__ = ["PatchEmbed", "SwinStage", "SwinTransformer", "swin_entry"]


class PatchEmbed(nn.Module):
    """``proj`` (patch_size x patch_size conv, stride patch_size) -> ``norm`` (LayerNorm over channels); NCHW."""

    def __init__(self, in_chans: int, dim: int, patch_size: int, eps: float = 1e-5):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, patch_size, patch_size)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def out_size(self, size: tuple[int, int] | None) -> tuple[int, int] | None:
        return out_size(size, self.patch_size, self.patch_size, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.norm
        y = F.layer_norm(self.proj(x).permute(0, 2, 3, 1), n.normalized_shape, n.weight, n.bias, n.eps)
        return y.permute(0, 3, 1, 2)


class SwinStage(nn.Module):
    """``downsample`` then ``blocks`` on NHWC; NCHW in and out (the units of the backbone's feature path)."""

    def __init__(self, downsample: nn.Module, blocks: Sequence[nn.Module]):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)


class SwinTransformer(Backbone):
    """Swin Transformer (V1 / V2) backbone; see the module docstring for the options."""

    _final_path, _final_is_norm = ("norm",), True

    def __init__(self, depths: Sequence[int], dims: Sequence[int], num_heads: Sequence[int], *,
                 num_classes: int = 1000, in_chans: int = 3, model_name: str = "swin", version: str = "v1",
                 window_size: int | Sequence[int] = 7, patch_size: int = 4, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, img_size: int | tuple[int, int] | None = 224, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, attn_drop_rate: float = 0.0, act: Any = "gelu", head: Any = "avg",
                 pretrained_window_sizes: int | Sequence[int] = 0, cpb_bound: float | None = None):
        super().__init__()
        check_choice(version, "version", ("v1", "v2"), owner=model_name)
        depths = list(depths) if isinstance(depths, (list, tuple)) else depths
        if not isinstance(depths, list) or not depths:
            raise ConfigError(f"{model_name}: depths must list the blocks of each stage, e.g. (2, 2, 6, 2); got "
                              f"{depths!r}")
        n = len(depths)
        dims, heads = per_stage(dims, n, "dims", model_name), per_stage(num_heads, n, "num_heads", model_name)
        for k, values in (("depths", depths), ("dims", dims), ("num_heads", heads)):
            for v in values:
                check_int(v, k, min_value=1, owner=model_name)
        check_positive(mlp_ratio, "mlp_ratio", owner=model_name)
        if not 0.0 <= drop_path_rate < 1.0:
            raise ConfigError(f"{model_name}: drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.model_name, self.in_chans, self.num_stages, self.version = model_name, in_chans, n, version
        windows = [check_int(w, "window_size", min_value=1, owner=model_name)
                   for w in per_stage(window_size, n, "window_size", model_name)]
        pretrained = per_stage(pretrained_window_sizes, n, "pretrained_window_sizes", model_name)
        act_layer = partial(make_act, parse_once(act))

        feat = to_size(img_size)
        self.stem = PatchEmbed(in_chans, dims[0], check_int(patch_size, "patch_size", min_value=1,
                                                            owner=model_name))
        feat = self.track_module(self.stem, feat)
        self.drop_path_rates = drop_path_schedule(depths, drop_path_rate)
        stages, k = [], 0
        for i in range(n):
            ds: nn.Module = nn.Identity()
            if i > 0:
                ds = PatchMerging(dims[i - 1], dims[i], norm_first=version == "v1")
                feat = self.track_module(ds, feat)
            self.begin_stage(i, f"stages.{i}", feat)
            blocks = []
            for j in range(depths[i]):
                kw = dict(window_size=windows[i], shift_size=windows[i] // 2 if j % 2 else 0, input_resolution=feat,
                          mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=self.drop_path_rates[k],
                          attn_drop=attn_drop_rate, act_layer=act_layer)
                if version == "v2":
                    kw.update(pretrained_window_size=pretrained[i], cpb_bound=cpb_bound)
                blocks.append((SwinV2Block if version == "v2" else SwinBlock)(dims[i], heads[i], **kw))
                k += 1
            stages.append(SwinStage(ds, blocks))
            self.add_feature(f"stages.{i}", dims[i])
        self.stages = nn.Sequential(*stages)
        self.norm = LayerNorm2d(dims[-1], eps=1e-5)
        self.init_head(dims[-1], num_classes, head, drop_rate, feat_size=feat)
        init_transformer_weights(self)

    def no_weight_decay(self) -> set[str]:
        """The relative-bias tables (V1), the CPB MLPs and logit scales (V2), as timm."""
        keys = ("relative_position_bias_table", "cpb_mlp", "logit_scale")
        return {k for k, _ in self.named_parameters() if any(s in k for s in keys)}


def swin_entry(name: str, config: dict[str, Any], doc: str):
    """The constructor ``fn(*, num_classes, in_chans, **kw)`` of a registered variant: ``config`` updated with the
    user's options (its signature lists them, so ``blockzoo info`` shows the variant's own defaults)."""
    def fn(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> SwinTransformer:
        return SwinTransformer(num_classes=num_classes, in_chans=in_chans, model_name=name, **{**config, **kw})

    kw_only = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("num_classes", kw_only, default=1000, annotation=int),
              inspect.Parameter("in_chans", kw_only, default=3, annotation=int)]
    params += [inspect.Parameter(k, kw_only, default=v) for k, v in config.items()]
    params.append(inspect.Parameter("kw", inspect.Parameter.VAR_KEYWORD, annotation=Any))
    fn.__name__, fn.__doc__ = name, doc
    fn.__signature__ = inspect.Signature(params, return_annotation=SwinTransformer)  # type: ignore[attr-defined]
    return fn
