"""DeepViT (Zhou et al., "DeepViT: Towards Deeper Vision Transformer", arXiv:2103.11886 [S033, DEEPVIT]): a ViT whose
blocks use re-attention (:class:`blockzoo.blocks.mixers.reattention.ReAttention`) instead of self-attention.

Settings of the official code (zhoudaquan/dvit_repo, ``deepvit_patch16_224_re_attn_{16,24,32}b``; the paper's
DeepViT-16/24/32 of its ViT-vs-DeepViT comparison, 24.5M / 36.3M / 48.1M parameters): patch 16, width 384, 12 heads,
MLP ratio 3, qkv bias, LayerNorm eps 1e-6, re-attention in every block with ``Conv2d(H, H, 1)`` + BatchNorm mixing.
``reattn_from`` (the first block with re-attention; the blocks before it use plain attention) gives the official
``deepvit_S`` / ``deepvit_L`` split (11 + 5, 20 + 12 blocks; those also use T2T's convolutional patch stem and
``scale_adjustment``, not built here) and, at ``reattn_from=depth``, the paper's ViT baseline of the same depth
(``create_model("deepvit_16b", reattn_from=16)``). ``reattn_norm``: ``"bn"`` (official), ``"ln"`` (lucidrains),
``"none"``. ``deepvit_tiny_patch4_32``: 16 blocks of width 192 (6 heads) on 4x4 patches for 28-32 px images, the
small pair of the attention-collapse comparison (not a paper model). Slots: ``act`` and ``connection`` (the ViT
skeleton's sub-layer merges; ``"residual"``: the plain sums, ``"hyper_connection(n=4)"``: Zhu et al. [S001]; with
streams the re-attention's BatchNorm sees every stream's maps in one batch).
"""
from __future__ import annotations

from typing import Any

from blockzoo import papers
from blockzoo.blocks.mixers.reattention import ReAttention
from blockzoo.checks import check_int
from blockzoo.models.common.vit import VisionTransformer, vit_entry
from blockzoo.registry import Claim, register_model

SLOTS = {"act": "gelu", "connection": "residual"}
_T = "tests/models/test_deepvit.py::"
DEEPVIT = dict(patch_size=16, embed_dim=384, num_heads=12, mlp_ratio=3.0, reattn_from=0, reattn_norm="bn")


class DeepViT(VisionTransformer):
    """A :class:`~blockzoo.models.common.vit.VisionTransformer` with re-attention from block ``reattn_from`` on."""

    def __init__(self, *, reattn_from: int = 0, reattn_norm: str = "bn", transform_scale: bool = False,
                 qkv_bias: bool = True, attn_drop_rate: float = 0.0, proj_drop_rate: float = 0.0, **kw: Any):
        check_int(reattn_from, "reattn_from", min_value=0, owner=kw.get("model_name", "deepvit"))

        def attn_layer(i: int, dim: int, heads: int) -> ReAttention | None:
            return ReAttention(dim, heads, qkv_bias, attn_drop_rate, proj_drop_rate, norm=reattn_norm,
                               transform_scale=transform_scale) if i >= reattn_from else None

        super().__init__(qkv_bias=qkv_bias, attn_drop_rate=attn_drop_rate, proj_drop_rate=proj_drop_rate,
                         attn_layer=attn_layer, **kw)


register_model(
    "deepvit_16b", family="deepvit", slots=SLOTS, paper=papers.DEEPVIT, paper_params=24_500_000,
    reference={"params_1000cls": 24_426_664},
    summary="DeepViT-16: 16 re-attention blocks, width 384, 12 heads, MLP ratio 3, patch 16",
    claims=(Claim("24,426,664 parameters (paper: 24.5M)", _T + "test_param_counts"),
            Claim("re-attention costs H^2 N^2 MACs per layer: 1.7% more than the ViT of the same depth (negligible)",
                  _T + "test_reattention_cost_is_negligible")),
)(vit_entry("deepvit_16b", dict(DEEPVIT, depth=16), cls=DeepViT))

register_model(
    "deepvit_24b", family="deepvit", slots=SLOTS, paper=papers.DEEPVIT, paper_params=36_300_000,
    reference={"params_1000cls": 36_261_448},
    summary="DeepViT-24: 24 re-attention blocks, width 384, 12 heads, MLP ratio 3, patch 16",
    claims=(Claim("36,261,448 parameters (paper: 36.3M)", _T + "test_param_counts"),),
)(vit_entry("deepvit_24b", dict(DEEPVIT, depth=24), cls=DeepViT))

register_model(
    "deepvit_32b", family="deepvit", slots=SLOTS, paper=papers.DEEPVIT, paper_params=48_100_000,
    reference={"params_1000cls": 48_096_232},
    summary="DeepViT-32: 32 re-attention blocks, width 384, 12 heads, MLP ratio 3, patch 16",
    claims=(Claim("48,096,232 parameters (paper: 48.1M)", _T + "test_param_counts"),),
)(vit_entry("deepvit_32b", dict(DEEPVIT, depth=32), cls=DeepViT))

register_model(
    "deepvit_tiny_patch4_32", family="deepvit", slots=SLOTS, paper=papers.DEEPVIT, input_size=(3, 32, 32),
    num_classes=10,
    summary="DeepViT with 16 blocks of width 192 (6 heads) on 4x4 patches for 28-32 px images (not a paper model)",
    claims=(Claim("re-attention from block reattn_from on; reattn_from=depth is the plain ViT of the same depth",
                  _T + "test_reattn_from"),
            Claim("attention collapse: adjacent-block map similarity 0.93-0.99 for the 16-block ViT vs -0.26..0.35 "
                  "with re-attention after 4 epochs on 2,000 Fashion-MNIST images; both undertrained and the ViT "
                  "already ~1 at init, so the paper's training-time collapse is not reproduced at this budget",
                  "benchmarks/results/attention_collapse.md", status="measured"),),
)(vit_entry("deepvit_tiny_patch4_32", dict(DEEPVIT, patch_size=4, embed_dim=192, num_heads=6, depth=16),
            default_img_size=32, default_num_classes=10, cls=DeepViT))
