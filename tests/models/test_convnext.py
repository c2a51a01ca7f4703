"""blockzoo.models.convnext: exact parameter counts, counts and MACs by hand, MACs at 224 px."""
from __future__ import annotations

import pytest

from blockzoo.registry import create_model
from helpers import check_macs_224, check_param_count, macs, meta_params

# name -> (exact count of our build, paper/timm count, relative tolerance vs the paper's rounding)
PARAMS = {
    "convnext_atto": (3_695_520, 3.70e6, 0.005),
    "convnext_femto": (5_217_784, 5.22e6, 0.005),
    "convnext_pico": (9_045_672, 9.05e6, 0.005),
    "convnext_nano": (15_593_560, 15.59e6, 0.005),
    "convnext_tiny": (28_589_128, 28_589_128, 0.0),
    "convnext_small": (50_223_688, 50.22e6, 0.005),
}


def _convnext_macs_by_hand(dims, depths, img, stem_k, stem_s, classes, in_chans=3):
    h = (img - stem_k) // stem_s + 1 if stem_k == stem_s else img // stem_s
    total = h * h * in_chans * dims[0] * stem_k * stem_k
    for i, (c, d) in enumerate(zip(dims, depths)):
        if i > 0:
            h //= 2
            total += h * h * dims[i - 1] * c * 4
        total += d * h * h * (49 * c + 8 * c * c)
    return total + dims[-1] * classes


MAC_PAPER = {"convnext_atto": 0.55e9, "convnext_femto": 0.79e9, "convnext_pico": 1.37e9, "convnext_nano": 2.46e9,
             "convnext_tiny": 4.47e9, "convnext_small": 8.71e9}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_param_counts(name):
    check_param_count(name, *PARAMS[name])


def test_param_count_by_hand_convnext_atto_and_pf():
    # stem + 3 downsamples + blocks + head norm + fc, each term written out
    dims, depths = (40, 80, 160, 320), (2, 2, 6, 2)
    total = 3 * 40 * 16 + 40 + 2 * 40
    for i in range(1, 4):
        total += 2 * dims[i - 1] + dims[i - 1] * dims[i] * 4 + dims[i]
    block = [50 * c + 2 * c + (c * 4 * c + 4 * c) + (4 * c * c + c) + c for c in dims]
    total += sum(d * b for d, b in zip(depths, block))
    total += 2 * 320 + 320 * 1000 + 1000
    assert total == meta_params("convnext_atto")
    # max-pool instead of the 7x7 depthwise conv: exactly 50 C per block fewer
    assert meta_params("convnext_atto") - meta_params("pf_convnext_atto") == sum(d * 50 * c for d, c in
                                                                                   zip(depths, dims))
    # InceptionNeXt's MLP head: Linear(C, 3C) + LayerNorm(3C) + Linear(3C, classes)
    c = 768
    head = c * 3 * c + 3 * c + 2 * 3 * c + 3 * c * 1000 + 1000
    assert meta_params("inception_next_tiny") - meta_params("inception_next_tiny", num_classes=0) == 3 * c * 1000 + 1000
    assert meta_params("inception_next_tiny", head_hidden_ratio=None) == (
        meta_params("inception_next_tiny") - head + c * 1000 + 1000)


def test_macs_by_hand_small_and_224_atto():
    m = create_model("convnext_atto", stem="small", img_size=32, num_classes=10)
    assert macs(m, (3, 32, 32)) == _convnext_macs_by_hand((40, 80, 160, 320), (2, 2, 6, 2), 32, 3, 1, 10)
    m = create_model("convnext_atto", img_size=None)
    ours = macs(m, (3, 224, 224))
    assert ours == _convnext_macs_by_hand((40, 80, 160, 320), (2, 2, 6, 2), 224, 4, 4, 1000)
    assert abs(ours - 0.55e9) <= 0.03 * 0.55e9


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MAC_PAPER))
def test_macs_tiny_224(name):
    """MACs at 224 px (count_macs: convs + linears) equal the recorded count and are within 3% of the paper."""
    check_macs_224(name, MAC_PAPER[name])


@pytest.mark.slow
def test_convnext_tiny_macs_close_to_resnet50():
    """S057/S014 claim: ConvNeXt-T has FLOPs (MACs) similar to ResNet-50 (4.5 G vs 4.1 G in the papers)."""
    from blockzoo import create_model
    from blockzoo.profile import count_macs
    cx = count_macs(create_model("convnext_tiny"), (3, 224, 224)).macs
    r50 = count_macs(create_model("resnet50"), (3, 224, 224)).macs
    assert 1.0 < cx / r50 < 1.15
