"""Swin Transformer V2 (Liu et al., CVPR 2022, arXiv:2111.09883 [S078]) on the Swin skeleton
(:mod:`blockzoo.models.common.swin`, ``version="v2"``; blocks in :mod:`blockzoo.blocks.mixers.swinv2`).

SwinV2-T/S at 256 px with window 8 or 16 (the official release's ImageNet-1K configurations, timm's names): C = 96,
depths (2, 2, 6, 2) / (2, 2, 18, 2), heads (3, 6, 12, 24), patch 4; residual post-norm, scaled cosine attention and
the log-spaced continuous position bias with the official ``16 * sigmoid`` bound (``cpb_bound=16``; ``None`` is the
paper's unbounded form). Their architecture is timm's exactly (``blockzoo.weights.TIMM_MODELS``;
``tests/weights/timm_layouts/swinv2_tiny_window8_256.json``). The CPB has no window-sized parameters, so the
window-8 weights load into the window-16 model as they are; ``pretrained_window_sizes=8`` then keeps the bias of
every offset the window-8 model knew (the official fine-tuning setting, e.g. ``swinv2_base_window12to16``).

Paper figures (official README / paper appendix): SwinV2-T w8 28M / 5.9G, w16 28M / 6.6G, SwinV2-S w8 50M / 11.5G
("FLOPs" = MACs). ``reference`` holds our exact counts (parameters = the official/timm definition; MACs with
``blockzoo.profile.count_macs``: convs, linears (the CPB MLPs included) and the attention products).

``swinv2_nano_patch2_window4_32``: the same CIFAR-scale configuration as ``swin_nano_patch2_window4_32`` with V2
blocks (not a paper model).
"""
from __future__ import annotations

from blockzoo import papers
from blockzoo.models.common.swin import swin_entry
from blockzoo.registry import Claim, register_model

SLOTS = {"act": "gelu", "head": "avg"}
_T = "tests/models/test_swinv2.py::"
_W = "tests/weights/test_timm_map.py::test_a_timm_state_dict_gives_timms_outputs"


def _swinv2(name: str, depths: tuple[int, ...], window: int, embed_dim: int = 96,
            heads: tuple[int, ...] = (3, 6, 12, 24), **kw):
    dims = tuple(embed_dim * 2 ** i for i in range(len(depths)))
    return swin_entry(name, dict(depths=depths, dims=dims, num_heads=heads, version="v2", window_size=window,
                                 img_size=kw.pop("img_size", 256), cpb_bound=16.0, **kw),
                      doc=f"Swin Transformer V2 ({name}): depths {depths}, dims {dims}, heads {heads}, window {window}")


# test_size: the registry-wide tests' input side. torch.export specialises a window count of 1, so the export test's
# example size (test_size) and its larger sizes must have one window in the same stages: 72 px for windows 8 / 16
# (at 64 px the 8x8 stage-2 map is one window, at 96 px two), 40 px for the nano models (window 4, patch 2).
register_model(
    "swinv2_tiny_window8_256", family="swinv2", slots=SLOTS, paper=papers.SWINV2, input_size=(3, 256, 256),
    test_size=72, paper_params=28_347_154, paper_macs=5.9e9,
    reference={"params_1000cls": 28_347_154, "macs_256": 5_939_690_496},
    summary="SwinV2-T: C 96, depths (2, 2, 6, 2), heads (3, 6, 12, 24), window 8, 256 px (cosine attention, log-CPB, "
            "res-post-norm)",
    claims=(Claim("28,347,154 parameters (official / timm)", _T + "test_param_counts"),
            Claim("5.9 GMACs at 256 (official)", _T + "test_macs_256"),
            Claim("the same function as timm's swinv2_tiny_window8_256 for the same weights", _W),
            Claim("the window-8 weights run in the window-16 model (continuous position bias)",
                  _T + "test_window8_weights_run_at_window16")),
)(_swinv2("swinv2_tiny_window8_256", (2, 2, 6, 2), 8))

register_model(
    "swinv2_tiny_window16_256", family="swinv2", slots=SLOTS, paper=papers.SWINV2, input_size=(3, 256, 256),
    test_size=72, paper_params=28_347_154, paper_macs=6.6e9,
    reference={"params_1000cls": 28_347_154, "macs_256": 6_660_619_264},
    summary="SwinV2-T: C 96, depths (2, 2, 6, 2), heads (3, 6, 12, 24), window 16, 256 px",
    claims=(Claim("28,347,154 parameters (official / timm)", _T + "test_param_counts"),
            Claim("6.6 GMACs at 256 (official)", _T + "test_macs_256")),
)(_swinv2("swinv2_tiny_window16_256", (2, 2, 6, 2), 16))

register_model(
    "swinv2_small_window8_256", family="swinv2", slots=SLOTS, paper=papers.SWINV2, input_size=(3, 256, 256),
    test_size=72, paper_params=49_728_418, paper_macs=11.5e9,
    reference={"params_1000cls": 49_728_418, "macs_256": 11_545_857_024},
    summary="SwinV2-S: C 96, depths (2, 2, 18, 2), heads (3, 6, 12, 24), window 8, 256 px",
    claims=(Claim("49,728,418 parameters (official / timm)", _T + "test_param_counts"),
            Claim("11.5 GMACs at 256 (official)", _T + "test_macs_256")),
)(_swinv2("swinv2_small_window8_256", (2, 2, 18, 2), 8))

register_model(
    "swinv2_nano_patch2_window4_32", family="swinv2", slots=SLOTS, paper=papers.SWINV2,
    input_size=(3, 32, 32), num_classes=10, test_size=40,
    summary="Swin V2 at CIFAR scale (not a paper model): C 32, depths (2, 2, 2, 2), heads (1, 2, 4, 8), window 4, "
            "patch 2, for 28-32 px inputs",
    claims=(Claim("trains on 28-32 px inputs", _T + "test_nano_trains_on_small_images"),),
)(_swinv2("swinv2_nano_patch2_window4_32", (2, 2, 2, 2), 4, embed_dim=32, heads=(1, 2, 4, 8), patch_size=2,
          img_size=32))
