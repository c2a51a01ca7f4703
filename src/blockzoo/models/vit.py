"""ViT and DeiT variants on the :class:`~blockzoo.models.common.vit.VisionTransformer` skeleton.

Dosovitskiy et al., ICLR 2021, arXiv:2010.11929 [VIT] (ViT-B/16: width 768, depth 12, 12 heads, MLP 3072, patch 16);
Touvron et al., ICML 2021, arXiv:2012.12877 [DEIT] (Table 1: DeiT-Ti 192/3 heads, DeiT-S 384/6 heads, DeiT-B = ViT-B;
the distilled models add a distillation token and head). DeiT changes only the training (and the distillation token),
so ``deit_tiny/small/base_patch16_224`` and ``vit_tiny/small/base_patch16_224`` are the same architecture, registered
under both papers' names as timm does (the ViT paper has no Ti/S; timm's ``vit_tiny`` / ``vit_small`` are DeiT's
configurations). ``vit_tiny_patch4_32`` is DeiT-Ti with 4x4 patches for 28-32 px images (an 8x8 grid at 32 px, 7x7
at 28; not a paper model).

Slots: ``act`` (the MLP activation, ``gelu``) and ``connection`` (each sub-layer's merge; ``"residual"``: the plain
sums; ``create_model("vit_tiny_patch4_32", connection="hyper_connection(n=4, dynamic=True)")``: hyper-connections,
Zhu et al., ICLR 2025 [S001], one per attention / MLP sub-layer as in the paper's ViT experiments). The attention
is chosen per block with ``attn_layer`` (see the skeleton). MACs with ``blockzoo.profile.count_macs`` (linears, the
patch conv and the attention products); the DeiT paper's "FLOPs" are MACs (17.6 G for DeiT-B).
"""
from __future__ import annotations

from blockzoo import papers
from blockzoo.models.common.vit import vit_entry
from blockzoo.registry import Claim, register_model

SLOTS = {"act": "gelu", "connection": "residual"}
_T = "tests/models/test_vit.py::"
TINY = dict(patch_size=16, embed_dim=192, depth=12, num_heads=3)
SMALL = dict(patch_size=16, embed_dim=384, depth=12, num_heads=6)
BASE = dict(patch_size=16, embed_dim=768, depth=12, num_heads=12)


def _claims(params: int, paper_params: int, macs: float) -> tuple[Claim, ...]:
    test = "test_macs_224_tiny" if macs < 2e9 else "test_macs_224"
    return (Claim(f"{params:,} parameters (paper: {paper_params / 1e6:.0f}M)", _T + "test_param_counts"),
            Claim(f"{macs / 1e9:.1f} GMACs at 224 (DeiT Table 1; its FLOPs are MACs)", _T + test))


register_model(
    "vit_tiny_patch16_224", family="vit", slots=SLOTS, paper=papers.DEIT, paper_params=5_000_000, paper_macs=1.3e9,
    reference={"params_1000cls": 5_717_416, "macs_224": 1_253_683_200},
    summary="ViT-Ti/16 (DeiT-Ti's configuration): width 192, depth 12, 3 heads",
    claims=_claims(5_717_416, 5_000_000, 1.3e9) + (
        Claim("global attention: the cost grows faster than the number of pixels, towards quadratic once attention "
              "dominates (MACs exponent 1.00 at 64-128 px rising to 1.39 at 384-512 px)",
              "benchmarks/results/attention_scaling.md", status="measured"),),
)(vit_entry("vit_tiny_patch16_224", TINY))

register_model(
    "deit_tiny_patch16_224", family="vit", slots=SLOTS, paper=papers.DEIT, paper_params=5_000_000, paper_macs=1.3e9,
    reference={"params_1000cls": 5_717_416, "macs_224": 1_253_683_200},
    summary="DeiT-Ti: width 192, depth 12, 3 heads, patch 16",
    claims=_claims(5_717_416, 5_000_000, 1.3e9),
)(vit_entry("deit_tiny_patch16_224", TINY))

register_model(
    "vit_small_patch16_224", family="vit", slots=SLOTS, paper=papers.DEIT, paper_params=22_000_000, paper_macs=4.6e9,
    reference={"params_1000cls": 22_050_664, "macs_224": 4_598_882_304},
    summary="ViT-S/16 (DeiT-S's configuration): width 384, depth 12, 6 heads",
    claims=_claims(22_050_664, 22_000_000, 4.6e9),
)(vit_entry("vit_small_patch16_224", SMALL))

register_model(
    "deit_small_patch16_224", family="vit", slots=SLOTS, paper=papers.DEIT, paper_params=22_000_000, paper_macs=4.6e9,
    reference={"params_1000cls": 22_050_664, "macs_224": 4_598_882_304},
    summary="DeiT-S: width 384, depth 12, 6 heads, patch 16",
    claims=_claims(22_050_664, 22_000_000, 4.6e9),
)(vit_entry("deit_small_patch16_224", SMALL))

register_model(
    "vit_base_patch16_224", family="vit", slots=SLOTS, paper=papers.VIT, paper_params=86_000_000, paper_macs=17.6e9,
    reference={"params_1000cls": 86_567_656, "macs_224": 17_563_828_224},
    summary="ViT-B/16: width 768, depth 12, 12 heads, patch 16",
    claims=_claims(86_567_656, 86_000_000, 17.6e9),
)(vit_entry("vit_base_patch16_224", BASE))

register_model(
    "deit_base_patch16_224", family="vit", slots=SLOTS, paper=papers.DEIT, paper_params=86_000_000, paper_macs=17.6e9,
    reference={"params_1000cls": 86_567_656, "macs_224": 17_563_828_224},
    summary="DeiT-B (= ViT-B/16): width 768, depth 12, 12 heads",
    claims=_claims(86_567_656, 86_000_000, 17.6e9),
)(vit_entry("deit_base_patch16_224", BASE))

register_model(
    "deit_tiny_distilled_patch16_224", family="vit", slots=SLOTS, paper=papers.DEIT, paper_params=6_000_000,
    paper_macs=1.3e9, reference={"params_1000cls": 5_910_800, "macs_224": 1_261_003_776},
    summary="DeiT-Ti with the distillation token and head (DeiT-Ti, distilled)",
    claims=(Claim("5,910,800 parameters (paper: 6M)", _T + "test_param_counts"),
            Claim("1.3 GMACs at 224 (DeiT Table 1)", _T + "test_macs_224_tiny"),
            Claim("eval output = mean of the class and distillation heads", _T + "test_distilled_head")),
)(vit_entry("deit_tiny_distilled_patch16_224", dict(TINY, distilled=True)))

register_model(
    "vit_tiny_patch4_32", family="vit", slots=SLOTS, paper=papers.DEIT, input_size=(3, 32, 32), num_classes=10,
    summary="DeiT-Ti with 4x4 patches for 28-32 px images (8x8 tokens at 32 px; not a paper model)",
    claims=(Claim("the position embedding is resampled to another input size (identity at the built size)",
                  _T + "test_pos_embed_resampling"),),
)(vit_entry("vit_tiny_patch4_32", dict(TINY, patch_size=4), default_img_size=32, default_num_classes=10))
