"""ConViT (d'Ascoli et al., "ConViT: Improving Vision Transformers with Soft Convolutional Inductive Biases", ICML
2021, arXiv:2103.10697 [S021]) on the :class:`~blockzoo.models.common.vit.VisionTransformer` skeleton.

A DeiT whose first ``local_up_to_layer`` blocks (10 of 12) use gated positional self-attention
(:class:`~blockzoo.blocks.mixers.gpsa.GPSA`, locality strength 1, local init) and the rest plain multi-head
self-attention; the class token is concatenated only before the first plain block, so the GPSA blocks see the patch
tokens alone and the learned position embedding covers only the patches (as in the paper and the official
``VisionTransformer`` of facebookresearch/convit; timm's ``ConVit`` is the same). Widths are 48 per head (paper
Table 1): Ti 4 heads x 48 = 192, S 9 x 48 = 432, B 16 x 48 = 768; depth 12, MLP ratio 4, no qkv bias, LayerNorm eps
1e-6, class-token head.

Token grid: the GPSA blocks run on the patch tokens as an NHWC grid ``(B, H/p, W/p, C)`` (LayerNorm, MLP and residual
act on the last dim, so the transformer block is the ViT one), which gives GPSA the real grid at any input size
(the position embedding is resampled as in the ViT skeleton); the class token joins when the grid is flattened before
block ``local_up_to_layer``. The official code needs a square grid; on one the two are the same function (checked
against timm through ``tests/weights/timm_layouts/convit_tiny.json``).

Slots: ``act`` and ``connection`` (the skeleton's sub-layer merges; ``"residual"``: the plain sums; with
hyper-connections, Zhu et al. [S001], the GPSA blocks' grids carry the streams too and the class token joins every
stream before block ``local_up_to_layer``).

Init: the ViT skeleton's (trunc-normal 0.02 Linears, position embedding and class token; PyTorch's patch conv), then
each GPSA's own (``v`` = identity, convolution-like ``pos_proj``, gate 1), as the official code.

MACs (``blockzoo.profile.count_macs``: the linears, the patch conv and the attention products ``q k^T`` and ``A v``,
plus GPSA's ``pos_proj`` on the ``N x N`` relative positions): 1.25 / 5.75 / 17.5 G for Ti / S / B at 224 (timm's
results CSV: convit_tiny 1.26 GMACs; timm's model gives the same count). The paper's Table 1 gives 1 / 5.4 / 17 G
"FLOPs", below our full counts by 20% / 6% / 3%: they match the MACs of the linear layers without the attention
products ``q k^T`` and ``A v`` (ours 1.08 / 5.35 / 16.8 G: within 1.2% for S and B; Ti's figure has one significant
digit), which ``tests/models/test_convit.py::test_paper_flops_are_linear_macs`` checks.

``convit_tiny_patch4_32`` is ConViT-Ti with 4x4 patches for 28-32 px images (an 8x8 grid at 32 px, 7x7 at 28; not a
paper model).
"""
from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.mixers.gpsa import GPSA
from blockzoo.checks import check_int
from blockzoo.errors import ConfigError
from blockzoo.models.common.vit import VisionTransformer, vit_entry
from blockzoo.registry import Claim, register_model

__all__ = ["ConViT"]

SLOTS = {"act": "gelu", "connection": "residual"}
_T = "tests/models/test_convit.py::"
_T_LOC = "tests/analysis/test_locality.py::"


class ConViT(VisionTransformer):
    """ConViT: GPSA in blocks ``0 .. local_up_to_layer - 1`` on the patch grid, then the class token and plain
    self-attention blocks (see the module docstring). Other options are the ViT skeleton's, except the prefix
    tokens (one class token, inserted before block ``local_up_to_layer``, no distillation token)."""

    def __init__(self, *, local_up_to_layer: int = 10, locality_strength: float = 1.0, local_init: bool = True,
                 depth: int = 12, qkv_bias: bool = False, attn_drop_rate: float = 0.0, proj_drop_rate: float = 0.0,
                 model_name: str = "convit", **kw: Any):
        check_int(local_up_to_layer, "local_up_to_layer", min_value=1, owner=model_name)
        if local_up_to_layer >= depth:
            raise ConfigError(f"{model_name}: local_up_to_layer={local_up_to_layer} GPSA blocks leave no block for the "
                              f"class token (depth={depth}); use local_up_to_layer < depth")

        def attn_layer(index: int, dim: int, num_heads: int) -> nn.Module | None:
            if index >= local_up_to_layer:
                return None                   # the skeleton's multi-head self-attention
            return GPSA(dim, num_heads, qkv_bias, attn_drop_rate, proj_drop_rate, locality_strength, local_init)

        super().__init__(depth=depth, qkv_bias=qkv_bias, attn_drop_rate=attn_drop_rate,
                         proj_drop_rate=proj_drop_rate, cls_token_at=local_up_to_layer, no_embed_class=True,
                         attn_layer=attn_layer, model_name=model_name, **kw)
        self.local_up_to_layer = local_up_to_layer

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch grid ``(B, h, w, C)`` + the (resampled) position embedding, kept as the grid for the GPSA blocks."""
        return super()._pos_embed(x).reshape_as(x)     # (unflatten would fix the batch size in an ONNX export)

    def _prefix(self, x: torch.Tensor) -> torch.Tensor:
        """The patch grid flattened to tokens, with the class token in front."""
        return super()._prefix(x.flatten(1, 2))

    def _feature_map(self, x: torch.Tensor, inp: torch.Tensor) -> torch.Tensor:
        # a GPSA block's output is the (B, h, w, C) grid, a later block's the tokens (B, 1 + h*w, C)
        return super()._feature_map(x.flatten(1, -2), inp)


#: skeleton options ConViT sets itself (one class token, inserted after the GPSA blocks, without position embedding)
_FIXED = ("cls_token_at", "no_embed_class", "attn_layer", "class_token", "distilled")


def _entry(name: str, config: dict[str, Any], **kw: Any):
    """The ViT skeleton's entry for :class:`ConViT`, without the options ConViT fixes (so the registry refuses them)."""
    fn = vit_entry(name, config, cls=ConViT, **kw)
    sig = inspect.signature(fn)
    fn.__signature__ = sig.replace(parameters=[p for p in sig.parameters.values() if p.name not in _FIXED])
    return fn


def _claims(params: int, paper_params: str, linear: float, paper: float) -> tuple[Claim, ...]:
    return (Claim(f"{params:,} parameters (paper Table 1: {paper_params}; timm's and the official code's count)",
                  _T + "test_param_counts"),
            Claim(f"the paper's {paper:g} GFLOPs are MACs of the linear layers without the attention products "
                  f"(ours {linear:.2f} G)", _T + "test_paper_flops_are_linear_macs"))


_COMMON = dict(patch_size=16, depth=12, local_up_to_layer=10, locality_strength=1.0)
TINY = dict(_COMMON, embed_dim=192, num_heads=4)
SMALL = dict(_COMMON, embed_dim=432, num_heads=9)
BASE = dict(_COMMON, embed_dim=768, num_heads=16)
_SHARED_CLAIMS = (
    Claim("the class token joins after the 10 GPSA blocks, which see only the patch tokens; the position embedding "
          "covers the patches only", _T + "test_class_token_joins_after_the_gpsa_blocks"),
    Claim("at initialization the GPSA heads are local and the plain self-attention heads are not: non-locality of "
          "every GPSA head below every self-attention head", _T + "test_gpsa_layers_start_local"),
    Claim("non-locality: 0 for a head attending to itself, the mean patch distance for a uniform head",
          _T_LOC + "test_self_attention_is_local_and_uniform_is_the_mean_distance"),
)

# paper_params / paper_macs: the paper's Table 1 (rounded; its "FLOPs" are linear-layer MACs, see the docstring);
# reference: exact counts of our builds (1000 classes, 3 channels; MACs at 224 px with count_macs)
register_model(
    "convit_tiny", family="convit", slots=SLOTS, paper=papers.CONVIT, paper_params=6_000_000, paper_macs=1.0e9,
    reference={"params_1000cls": 5_710_512, "macs_224": 1_252_360_320},
    summary="ConViT-Ti: width 192 (4 heads x 48), 10 GPSA + 2 self-attention blocks, patch 16",
    claims=_claims(5_710_512, "6M", 1.08, 1.0) + _SHARED_CLAIMS,
)(_entry("convit_tiny", TINY))

register_model(
    "convit_small", family="convit", slots=SLOTS, paper=papers.CONVIT, paper_params=27_000_000, paper_macs=5.4e9,
    reference={"params_1000cls": 27_777_322, "macs_224": 5_746_563_360},
    summary="ConViT-S: width 432 (9 heads x 48), 10 GPSA + 2 self-attention blocks, patch 16",
    claims=_claims(27_777_322, "27M", 5.35, 5.4),
)(_entry("convit_small", SMALL))

register_model(
    "convit_base", family="convit", slots=SLOTS, paper=papers.CONVIT, paper_params=86_000_000, paper_macs=17e9,
    reference={"params_1000cls": 86_540_040, "macs_224": 17_505_452_544},
    summary="ConViT-B: width 768 (16 heads x 48), 10 GPSA + 2 self-attention blocks, patch 16",
    claims=_claims(86_540_040, "86M", 16.8, 17),
)(_entry("convit_base", BASE))

register_model(
    "convit_tiny_patch4_32", family="convit", slots=SLOTS, paper=papers.CONVIT, input_size=(3, 32, 32),
    num_classes=10,
    summary="ConViT-Ti with 4x4 patches for 28-32 px images (8x8 tokens at 32 px; not a paper model)",
    claims=(Claim("trains on 28 px (Fashion-MNIST-sized) inputs: six AdamW steps halve the loss on a batch",
                  _T + "test_small_variant_trains"),),
)(_entry("convit_tiny_patch4_32", dict(TINY, patch_size=4), default_img_size=32, default_num_classes=10))
