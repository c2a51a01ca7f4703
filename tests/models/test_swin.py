"""blockzoo.models.swin: exact parameter counts, MACs by hand and at 224 px, the official window rule per stage,
linear cost in the image area, feature maps, the CIFAR-scale variant trains."""
from __future__ import annotations

import pytest
import torch

from blockzoo import create_model
from blockzoo.blocks.mixers.swin import SwinBlock
from blockzoo.models.common.swin import SwinStage
from helpers import check_macs_224, check_param_count, count_macs, fit_losses, meta_model, meta_params

PARAMS = {   # name -> (exact count of our build = the official / timm definition, paper figure, tolerance)
    "swin_tiny_patch4_window7_224": (28_288_354, 28e6, 0.02),
    "swin_small_patch4_window7_224": (49_606_258, 50e6, 0.02),
    "swin_base_patch4_window7_224": (87_768_224, 88e6, 0.02),
}
MAC_PAPER = {"swin_tiny_patch4_window7_224": 4.5e9, "swin_small_patch4_window7_224": 8.7e9,
             "swin_base_patch4_window7_224": 15.4e9}


def swin_macs_by_hand(dims, depths, heads, windows, maps, patch, classes, in_chans=3, v2=False):
    """count_macs' convention written out: patch conv, merging Linear(4C_in, C), per block qkv + proj + MLP (8 C^2
    per token) + attention (Q K^T and A V: N = window area keys per token, 2C), V2's CPB MLP per block."""
    total = maps[0] ** 2 * in_chans * dims[0] * patch * patch
    for i, (c, d, h, w, m) in enumerate(zip(dims, depths, heads, windows, maps)):
        t = m * m
        if i:
            total += t * 4 * dims[i - 1] * c
        block = t * (3 * c * c + c * c + 8 * c * c) + t * w * w * 2 * c
        if v2:
            block += (2 * w - 1) ** 2 * (2 * 512 + 512 * h)
        total += d * block
    return total + dims[-1] * classes


NANO = dict(dims=(32, 64, 128, 256), depths=(2, 2, 2, 2), heads=(1, 2, 4, 8), windows=(4, 4, 4, 2),
            maps=(16, 8, 4, 2), patch=2, classes=10)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_param_counts(name):
    check_param_count(name, *PARAMS[name])


def test_param_count_by_hand_nano():
    """stem conv + LN, per block 2 LN + qkv + proj + bias table + MLP, merging LN(4C) + Linear, final LN, fc; the
    last stage's 2x2 map shrinks its window (and so its bias table) to 2x2."""
    dims, heads, windows = NANO["dims"], NANO["heads"], NANO["windows"]
    total = 3 * 32 * 4 + 32 + 2 * 32
    for i, (c, h, w) in enumerate(zip(dims, heads, windows)):
        if i:
            total += 2 * 4 * dims[i - 1] + 4 * dims[i - 1] * c
        total += 2 * (4 * c + 3 * c * c + 3 * c + c * c + c + (2 * w - 1) ** 2 * h + 8 * c * c + 5 * c)
    total += 2 * 256 + 256 * 10 + 10
    assert meta_params("swin_nano_patch2_window4_32") == total


def test_macs_by_hand_nano():
    assert count_macs(create_model("swin_nano_patch2_window4_32"), (3, 32, 32)) == swin_macs_by_hand(**NANO)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MAC_PAPER))
def test_macs_224(name):
    """MACs at 224 px equal the recorded count, the hand formula, and are within 3% of the paper's Table 1."""
    ours = check_macs_224(name, MAC_PAPER[name])
    if name == "swin_tiny_patch4_window7_224":
        assert ours == swin_macs_by_hand((96, 192, 384, 768), (2, 2, 6, 2), (3, 6, 12, 24), (7, 7, 7, 7),
                                         (56, 28, 14, 7), 4, 1000)


def test_official_window_rule_per_stage():
    """Swin-T at 224: windows 7 in every stage, W-MSA / SW-MSA (shift 3) alternating, except the last stage whose
    7x7 map is one window (no shift); at 112 px the last map is 4x4, so its window shrinks to 4."""
    m = meta_model("swin_tiny_patch4_window7_224")
    got = [[(b.window_size[0], b.shift_size[0]) for b in s.blocks] for s in m.stages]
    assert got == [[(7, 0), (7, 3)], [(7, 0), (7, 3)], [(7, 0), (7, 3)] * 3, [(7, 0), (7, 0)]]
    m = meta_model("swin_tiny_patch4_window7_224", img_size=112)
    assert [(b.window_size[0], b.shift_size[0]) for b in m.stages[3].blocks] == [(4, 0), (4, 0)]
    assert [f["reduction"] for f in m.feature_info] == [4, 8, 16, 32]
    assert {k.split(".")[-1] for k in m.no_weight_decay()} == {"relative_position_bias_table"}


def _stage(window: int) -> SwinStage:
    return SwinStage(torch.nn.Identity(), [SwinBlock(32, 1, window_size=window, shift_size=0),
                                           SwinBlock(32, 1, window_size=window, shift_size=window // 2)]).eval()


def test_stage_cost_is_linear_in_area():
    """The paper's Eq. 2: window attention costs 4hwC^2 + 2M^2hwC, linear in the number of tokens hw -- doubling the
    area doubles a Swin stage's MACs exactly; global attention (one window over the whole map) grows faster."""
    stage = _stage(4)
    a, b, c = (count_macs(stage, (32, h, w)) for h, w in ((8, 8), (8, 16), (16, 16)))
    assert b == 2 * a and c == 4 * a
    glob = count_macs(_stage(16), (32, 16, 16)) / count_macs(_stage(8), (32, 8, 8))
    assert glob > 4.5


def test_nano_trains_on_small_images():
    """The CIFAR-scale variant runs on 28 px (maps 14/7/4/2, padded to the window and masked) and a few AdamW steps
    on a fixed batch of 28 px images reduce the loss."""
    torch.manual_seed(0)
    m = create_model("swin_nano_patch2_window4_32", in_chans=1, num_classes=10)
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8)
    losses = fit_losses(m, x, y, steps=6, lr=2e-3)
    assert losses[-1] < 0.5 * losses[0]
