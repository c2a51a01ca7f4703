"""Swin Transformer (Liu et al., ICCV 2021, arXiv:2103.14030 [S085]) on the Swin skeleton
(:mod:`blockzoo.models.common.swin`; blocks in :mod:`blockzoo.blocks.mixers.swin`).

Swin-T/S/B at the paper's settings (Table 1 / Sec. 3.3: C = 96/96/128, depths (2, 2, 6, 2) / (2, 2, 18, 2), heads
C/32 per stage, window 7, patch 4, MLP ratio 4, 224 px) under timm's names; their architecture is timm's exactly
(``blockzoo.weights.TIMM_MODELS``; ``tests/weights/timm_layouts/swin_tiny_patch4_window7_224.json`` checks the same
outputs for the same weights). Paper figures: 28M / 4.5G, 50M / 8.7G, 88M / 15.4G (Table 1, "FLOPs" = MACs);
``reference`` holds our exact counts (parameters = the official/timm definition; MACs with
``blockzoo.profile.count_macs``: convs, linears and the attention products, which the paper's fvcore count also
includes; it further counts the LayerNorms and the bias additions, which ours leave out).

``swin_nano_patch2_window4_32`` is not a paper model: Swin-T's design at CIFAR scale (patch 2, window 4, C = 32,
one head of 32 channels per 32 channels, two blocks per stage), so 32 px images give 16/8/4/2 feature maps (28 px:
14/7/4/2, padded to the window and masked).
"""
from __future__ import annotations

from blockzoo import papers
from blockzoo.models.common.swin import swin_entry
from blockzoo.registry import Claim, register_model

SLOTS = {"act": "gelu", "head": "avg"}
_T = "tests/models/test_swin.py::"
_W = "tests/weights/test_timm_map.py::test_a_timm_state_dict_gives_timms_outputs"


def _swin(name: str, embed_dim: int, depths: tuple[int, ...], heads: tuple[int, ...], **kw):
    dims = tuple(embed_dim * 2 ** i for i in range(len(depths)))
    return swin_entry(name, dict(depths=depths, dims=dims, num_heads=heads, version="v1", **kw),
                      doc=f"Swin Transformer ({name}): depths {depths}, dims {dims}, heads {heads}")


register_model(
    "swin_tiny_patch4_window7_224", family="swin", slots=SLOTS, paper=papers.SWIN, paper_params=28_288_354,
    paper_macs=4.5e9, reference={"params_1000cls": 28_288_354, "macs_224": 4_490_566_656},
    summary="Swin-T: C 96, depths (2, 2, 6, 2), heads (3, 6, 12, 24), window 7, patch 4 (shifted windows)",
    claims=(Claim("28,288,354 parameters (official / timm)", _T + "test_param_counts"),
            Claim("4.5 GMACs at 224 (paper Table 1)", _T + "test_macs_224"),
            Claim("the same function as timm's swin_tiny_patch4_window7_224 for the same weights", _W),
            Claim("linear cost in image size: a stage's attention MACs double when its area doubles",
                  _T + "test_stage_cost_is_linear_in_area"),
            Claim("linear in the number of pixels from 224 to 512 px (MACs exponent 1.07, 1.01), where ViT's rises "
                  "towards quadratic", "benchmarks/results/attention_scaling.md", status="measured")),
)(_swin("swin_tiny_patch4_window7_224", 96, (2, 2, 6, 2), (3, 6, 12, 24)))

register_model(
    "swin_small_patch4_window7_224", family="swin", slots=SLOTS, paper=papers.SWIN, paper_params=49_606_258,
    paper_macs=8.7e9, reference={"params_1000cls": 49_606_258, "macs_224": 8_740_875_264},
    summary="Swin-S: C 96, depths (2, 2, 18, 2), heads (3, 6, 12, 24), window 7, patch 4",
    claims=(Claim("49,606,258 parameters (official / timm)", _T + "test_param_counts"),
            Claim("8.7 GMACs at 224 (paper Table 1)", _T + "test_macs_224")),
)(_swin("swin_small_patch4_window7_224", 96, (2, 2, 18, 2), (3, 6, 12, 24)))

register_model(
    "swin_base_patch4_window7_224", family="swin", slots=SLOTS, paper=papers.SWIN, paper_params=87_768_224,
    paper_macs=15.4e9, reference={"params_1000cls": 87_768_224, "macs_224": 15_430_946_816},
    summary="Swin-B: C 128, depths (2, 2, 18, 2), heads (4, 8, 16, 32), window 7, patch 4",
    claims=(Claim("87,768,224 parameters (official / timm)", _T + "test_param_counts"),
            Claim("15.4 GMACs at 224 (paper Table 1)", _T + "test_macs_224")),
)(_swin("swin_base_patch4_window7_224", 128, (2, 2, 18, 2), (4, 8, 16, 32)))

register_model(
    "swin_nano_patch2_window4_32", family="swin", slots=SLOTS, paper=papers.SWIN,
    input_size=(3, 32, 32), num_classes=10, test_size=40,   # 40: see the test_size note in models/swinv2.py
    summary="Swin at CIFAR scale (not a paper model): C 32, depths (2, 2, 2, 2), heads (1, 2, 4, 8), window 4, "
            "patch 2, for 28-32 px inputs",
    claims=(Claim("trains on 28-32 px inputs", _T + "test_nano_trains_on_small_images"),),
)(_swin("swin_nano_patch2_window4_32", 32, (2, 2, 2, 2), (1, 2, 4, 8), window_size=4, patch_size=2, img_size=32))
