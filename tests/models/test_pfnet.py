"""blockzoo.models.pfnet: PoolFormer and the parameter-free nets: exact parameter counts, MACs at 224 px."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from blockzoo.registry import create_model
from helpers import check_macs_224, check_param_count, meta_params

# name -> (exact count of our build, paper/timm count, relative tolerance vs the paper's rounding)
PARAMS = {
    "poolformer_s12": (11_915_176, 11.92e6, 0.005),
    "pf_resnet50_max": (14_232_232, 14.2e6, 0.005),
    "pf_resnet50_hybrid": (17_330_600, 17.3e6, 0.005),
    "pf_convnext_atto": (3_603_520, None, None),
    "pf_convnext_tiny": (28_257_928, None, None),
}


MAC_PAPER = {"poolformer_s12": 1.82e9, "pf_resnet50_max": 2.2e9, "pf_resnet50_hybrid": 2.6e9,
             "pf_convnext_atto": None, "pf_convnext_tiny": None}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_param_counts(name):
    check_param_count(name, *PARAMS[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MAC_PAPER))
def test_macs_tiny_224(name):
    """MACs at 224 px (count_macs: convs + linears) equal the recorded count and are within 3% of the paper."""
    check_macs_224(name, MAC_PAPER[name])


def test_pf_resnet_params():
    r50 = meta_params("resnet50")
    convs3x3 = 3 * 64 * 64 * 9 + 4 * 128 * 128 * 9 + 6 * 256 * 256 * 9 + 3 * 512 * 512 * 9
    bns = 2 * (3 * 64 + 4 * 128 + 6 * 256 + 3 * 512)
    assert meta_params("pf_resnet50_max") == r50 - convs3x3 - bns == 14_232_232
    strided = 128 * 128 * 9 + 256 * 256 * 9 + 512 * 512 * 9 + 2 * (128 + 256 + 512)
    assert meta_params("pf_resnet50_hybrid") == 14_232_232 + strided
    m = create_model("pf_resnet50_hybrid", stem="small", img_size=28, in_chans=1, num_classes=10)
    units = [blk.conv2 for layer in m.layers for blk in layer]
    assert [type(u).__name__ for u in units].count("EffConvUnit") == 3
    assert sum(isinstance(u, nn.MaxPool2d) for u in units) == 13
    x = torch.randn(2, 1, 28, 28)                                  # 28 -> 28, 14, 7, 4: odd sizes keep shortcuts
    assert m(x).shape == (2, 10)
