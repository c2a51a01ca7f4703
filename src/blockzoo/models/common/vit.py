"""The Vision Transformer skeleton (registers nothing): patch embedding -> [class / distillation tokens] + learned
position embedding -> pre-norm transformer blocks -> LayerNorm -> token pooling -> classifier.

Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021, arXiv:2010.11929 [VIT] (eq. 1-4); Touvron et al.,
"Training data-efficient image transformers & distillation through attention", ICML 2021, arXiv:2012.12877 [DEIT]
(distillation token, bicubic position-embedding interpolation, init). Module and parameter names are timm's
(``patch_embed.proj``, ``cls_token``, ``dist_token``, ``pos_embed``, ``blocks.N.*``, ``norm``, ``head_dist``; timm's
classifier ``head`` is blockzoo's ``fc``), so a timm state dict maps 1:1 (``blockzoo.weights.timm_map``).

Tokens and the Backbone conventions
-----------------------------------
``forward_features`` returns the tokens ``(B, N, C)`` after the final norm (timm); ``forward_head`` pools them
(``global_pool="token"``: the class token; ``"avg"`` / ``"max"``: over the patch tokens, after the final norm -- timm's
``avg`` moves the norm after the pooling, ``fc_norm``) and classifies. The feature maps (``feature_info``,
``forward_intermediates``, ``features_only``) are the patch tokens after each block, reshaped to NCHW on the patch
grid (reduction = the patch size), as timm's ``forward_intermediates``. Any input size whose sides are at least one
patch works: the position embedding is resampled bicubically to the input's patch grid in every forward (DeiT; at the
built size that is the identity, exactly), so a model built for 224 px runs at 384, and ``load_state_dict`` resamples
a position embedding saved for another square grid the same way
(:func:`~blockzoo.blocks.common.transformer.resample_pos_embed`; timm resamples with antialiasing, which differs).

DeiT's distilled model (``distilled=True``): a second prefix token and classifier ``head_dist``; in eval mode (and
in training, by default, as timm's ``distilled_training=False``) the output is the mean of the two heads' logits;
:meth:`VisionTransformer.set_distilled_training` makes a training-mode forward return ``(cls_logits, dist_logits)``
for a distillation loss, as timm's.

Hooks for the other attention families (ConViT, DeepViT ...)
-------------------------------------------------------------
- ``attn_layer(block_index, dim, num_heads) -> nn.Module | None``: the token-attention module of block
  ``block_index`` (``None``: the default :class:`~blockzoo.blocks.common.transformer.Attention`). The module maps
  ``(B, N, C) -> (B, N, C)`` and should implement ``attn_map(x)`` (see :mod:`blockzoo.blocks.common.transformer`).
- ``cls_token_at``: the index of the block before which the class (and distillation) token is concatenated (0: at the
  input, ViT; ConViT: after its local GPSA layers). The blocks before it see only the patch tokens.
- ``no_embed_class`` (timm's name): the position embedding covers only the patch tokens (required when
  ``cls_token_at > 0``, as in ConViT).
- ``init_values``: layer scale in every block (``None``: none, as ViT/DeiT).
- ``connection``: ``None`` or ``"residual"`` (the plain residual sums; no merge modules are built, so the registered
  variants' default ``connection="residual"`` slot is the model without the option) or a ``connection`` slot value
  for every sub-layer's merge, e.g. ``"hyper_connection(n=4)"`` (Zhu et al., ICLR 2025: the paper's ViT experiments;
  the ``n`` streams run from the first block to the last, whose output is their sum, then the final norm; a class
  token inserted after block 0, as ConViT's, joins every stream).
- :meth:`VisionTransformer.init_weights`: trunc-normal(0.02) Linears with zero bias, position embedding and tokens
  (DeiT's official init; timm's ViT draws the class token with std 1e-6), unit/zero LayerNorms, the patch conv as
  PyTorch initialises it (as timm); then every submodule's own ``init_weights()`` (a GPSA's locality init).
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from blockzoo.blocks.common.drop import drop_path_schedule
from blockzoo.blocks.common.transformer import (
    PatchEmbed,
    TransformerBlock,
    init_transformer_weights,
    resample_pos_embed,
)
from blockzoo.blocks.connection.hyper import combine_streams, stream_trunk
from blockzoo.checks import check_choice, check_int, tracing
from blockzoo.errors import ConfigError
from blockzoo.models.base import Backbone, to_size
from blockzoo.registry import parse_slot_value

__all__ = ["VisionTransformer", "vit_entry", "POOLS"]

POOLS = ("token", "avg", "max")
AttnLayer = Callable[[int, int, int], "nn.Module | None"]


class VisionTransformer(Backbone):
    """ViT / DeiT (see the module docstring for the options and hooks)."""

    _feature_path = ("patch_embed", "_pos_embed", "blocks.*")
    _final_path = ("norm",)
    _final_is_norm = True

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, img_size: int | tuple[int, int] = 224,
                 patch_size: int = 16, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, class_token: bool = True, distilled: bool = False,
                 global_pool: str = "token", init_values: float | None = None, no_embed_class: bool = False,
                 cls_token_at: int = 0, drop_rate: float = 0.0, pos_drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, proj_drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 act: Any = "gelu", attn_layer: AttnLayer | None = None, connection: Any = None,
                 model_name: str = "vit"):
        super().__init__()
        self.model_name = model_name
        owner = model_name
        if connection is not None and parse_slot_value(connection) == ("residual", {}):
            connection = None   # the plain sums the blocks compute without merge modules
        check_int(depth, "depth", min_value=1, owner=owner)
        check_int(cls_token_at, "cls_token_at", min_value=0, owner=owner)
        check_choice(global_pool, "global_pool", POOLS, owner=owner)
        if distilled and not class_token:
            raise ConfigError(f"{owner}: distilled=True adds DeiT's distillation token next to the class token; keep "
                              f"class_token=True")
        if cls_token_at and not class_token or cls_token_at >= depth:
            raise ConfigError(f"{owner}: cls_token_at={cls_token_at} must be a block index below depth={depth} (and "
                              f"needs class_token=True)")
        if cls_token_at and not no_embed_class:
            raise ConfigError(f"{owner}: a class token inserted after block 0 (cls_token_at={cls_token_at}) gets no "
                              f"position embedding; set no_embed_class=True")
        self.num_classes, self.in_chans, self.num_stages = num_classes, in_chans, 1
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.num_prefix_tokens = int(class_token) + int(distilled)
        self.global_pool, self.distilled, self.distilled_training = global_pool, distilled, False
        self.no_embed_class, self.cls_token_at = no_embed_class, cls_token_at

        size = to_size(img_size)
        self.patch_embed = PatchEmbed(size, patch_size, in_chans, embed_dim, flatten=False)
        feat = self.track(size, patch_size, patch_size, 0)
        self.begin_stage(0, "blocks", feat)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if distilled else None
        self._check_pool(global_pool)
        n_pos = self.patch_embed.num_patches + (0 if no_embed_class else self.num_prefix_tokens)
        self.pos_embed = nn.Parameter(torch.zeros(1, n_pos, embed_dim))
        self.pos_drop = nn.Dropout(pos_drop_rate)

        dpr = drop_path_schedule([depth], drop_path_rate)
        blocks = []
        for i in range(depth):
            attn = attn_layer(i, embed_dim, num_heads) if attn_layer is not None else None
            blocks.append(TransformerBlock(embed_dim, num_heads, mlp_ratio, qkv_bias, attn=attn,
                                           init_values=init_values, drop_path=dpr[i], act=act,
                                           proj_drop=proj_drop_rate, attn_drop=attn_drop_rate,
                                           connection=connection, ctx=self.block_ctx(f"blocks.{i}")))
            self.add_feature(f"blocks.{i}", embed_dim)
        self.blocks = nn.Sequential(*blocks)
        self.streams = 0 if connection is None else stream_trunk(
            [b.merges for b in blocks], [m for b in blocks for m in b.merges], model_name)
        self.stream_reduce = blocks[-1].merges[-1].reduce_mode if self.streams else None
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_drop = nn.Dropout(drop_rate)
        self._make_heads(num_classes)
        self.init_weights()

    # ------------------------------------------------------------------------------------------------ tokens
    def _prefix(self, x: torch.Tensor) -> torch.Tensor:
        """The class (and distillation) token prepended to tokens ``x``."""
        tokens = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.dist_token) if t is not None]
        return torch.cat([*tokens, x], dim=1)

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch grid ``(B, h, w, C)`` -> tokens with the position embedding (resampled to ``h x w``) and, with
        ``cls_token_at=0``, the prefix tokens."""
        grid = (x.shape[1], x.shape[2])
        x = x.flatten(1, 2)
        lead = 0 if self.no_embed_class else self.num_prefix_tokens
        if not tracing() and grid == tuple(self.patch_embed.grid_size):
            pos = self.pos_embed   # eager at the built size: the resampling is the identity, skip its cost
        else:                      # another size, or a traced graph (which must work at every size)
            pos = resample_pos_embed(self.pos_embed, grid, self.patch_embed.grid_size, lead)
        if self.no_embed_class:
            x = x + pos
            if self.cls_token_at == 0 and self.num_prefix_tokens:
                x = self._prefix(x)
        elif self.num_prefix_tokens:
            x = self._prefix(x) + pos
        else:
            x = x + pos
        return self.pos_drop(x)

    def _units(self) -> list[tuple[str, nn.Module]]:
        """The forward path, with the class-token insertion before block ``cls_token_at`` when it is not 0."""
        units = super()._units()
        if self.cls_token_at:
            at = [name for name, _ in units].index(f"blocks.{self.cls_token_at}")
            units.insert(at, ("_prefix", self._prefix))
        return units

    def _feature_map(self, x: torch.Tensor, inp: torch.Tensor) -> torch.Tensor:
        """The patch tokens of a block's output on the patch grid of input ``inp``: ``(B, C, H/p, W/p)``."""
        p = self.patch_embed.patch_size
        h, w = inp.shape[-2] // p, inp.shape[-1] // p
        if self.streams:   # the streams combined (hyper-connections)
            x = combine_streams(x.unflatten(0, (-1, inp.shape[0])), self.stream_reduce)
        return x[:, -(h * w):].transpose(1, 2).unflatten(-1, (h, w))

    # -------------------------------------------------------------------------------------------------- head
    def _check_pool(self, pool: str) -> None:
        check_choice(pool, "global_pool", POOLS, owner=self.model_name)
        if pool == "token" and self.cls_token is None:
            raise ConfigError(f"{self.model_name}: global_pool='token' needs the class token; use 'avg' or 'max'")
        if self.distilled and pool != "token":
            raise ConfigError(f"{self.model_name}: the distilled model classifies its class and distillation tokens; "
                              f"global_pool must be 'token'")

    def _make_heads(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        if self.distilled:
            self.head_dist = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def set_distilled_training(self, enable: bool = True) -> None:
        """Training-mode forward returns ``(cls_logits, dist_logits)`` (DeiT's hard/soft distillation; timm's)."""
        if not self.distilled:
            raise ConfigError(f"{self.model_name} has no distillation token; build it with distilled=True")
        self.distilled_training = bool(enable)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> Any:
        if self.distilled:
            x, x_dist = self.head_drop(x[:, 0]), self.head_drop(x[:, 1])
            if pre_logits:
                return (x + x_dist) / 2
            x, x_dist = self.fc(x), self.head_dist(x_dist)
            if self.distilled_training and self.training:
                return x, x_dist
            return (x + x_dist) / 2
        if self.global_pool == "token":
            x = x[:, 0]
        else:
            x = x[:, self.num_prefix_tokens:]
            x = x.mean(dim=1) if self.global_pool == "avg" else x.amax(dim=1)
        x = self.head_drop(x)
        return x if pre_logits else self.fc(x)

    def _reset_classifier(self, num_classes: int, head: Any) -> None:
        if head is not None:
            self._check_pool(head)
            self.global_pool = head
        self.num_classes = num_classes
        self._make_heads(num_classes)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """A position embedding for another (square) patch grid is resampled to this model's (DeiT's fine-tuning at
        384 px from 224 px weights, bicubic), so ``load_state_dict`` takes it."""
        key = prefix + "pos_embed"
        pe = state_dict.get(key)
        if isinstance(pe, torch.Tensor) and pe.ndim == 3 and pe.shape != self.pos_embed.shape:
            lead = 0 if self.no_embed_class else self.num_prefix_tokens
            side = math.isqrt(pe.shape[1] - lead)
            if side * side == pe.shape[1] - lead and pe.shape[-1] == self.embed_dim:
                state_dict[key] = resample_pos_embed(pe, self.patch_embed.grid_size, (side, side), lead)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---------------------------------------------------------------------------------------- timm's hooks
    def no_weight_decay(self) -> set[str]:
        return {n for n in ("pos_embed", "cls_token", "dist_token") if getattr(self, n) is not None}

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's ViT groups: the embeddings and tokens, one group per block, the final norm last."""
        return dict(stem=r"^(?:cls_token|dist_token|pos_embed|patch_embed)", blocks=[(r"^blocks\.(\d+)", None),
                                                                                    (r"^norm", (99999,))])

    def init_weights(self) -> None:
        init_transformer_weights(self, (self.pos_embed, self.cls_token, self.dist_token))


def vit_entry(name: str, config: dict[str, Any], *, default_img_size: int = 224, default_num_classes: int = 1000,
              doc: str = "", cls: type[VisionTransformer] = VisionTransformer) -> Callable[..., VisionTransformer]:
    """The constructor ``fn(*, num_classes, in_chans, img_size, **kw)`` of a registered variant: ``config``
    (embed_dim, depth, ...) updated with the user's keyword arguments; its signature lists ``config`` as the option
    defaults (``blockzoo info``)."""

    def fn(*, num_classes: int = default_num_classes, in_chans: int = 3, img_size: Any = None,
           **kw: Any) -> VisionTransformer:
        return cls(num_classes=num_classes, in_chans=in_chans, model_name=name,
                   img_size=default_img_size if img_size is None else img_size, **{**config, **kw})

    kw_only = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("num_classes", kw_only, default=default_num_classes, annotation=int),
              inspect.Parameter("in_chans", kw_only, default=3, annotation=int),
              inspect.Parameter("img_size", kw_only, default=default_img_size)]
    options: dict[str, inspect.Parameter] = {}   # the skeleton's (and a subclass's) options, the variant's defaults
    for klass in reversed(cls.__mro__[:cls.__mro__.index(VisionTransformer) + 1]):
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.kind is kw_only and p.name not in ("num_classes", "in_chans", "img_size", "model_name"):
                options[p.name] = p.replace(default=config.get(p.name, p.default))
    for k, v in config.items():
        options.setdefault(k, inspect.Parameter(k, kw_only, default=v))
    params += list(options.values())
    fn.__name__ = name
    fn.__doc__ = doc or f"{name}: Vision Transformer with {config}"
    fn.__signature__ = inspect.Signature(params, return_annotation=cls)  # type: ignore[attr-defined]
    return fn
