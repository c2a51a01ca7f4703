"""blockzoo.models.ibnnet: IBN-Net ResNets (Pan et al., ECCV 2018, arXiv:1807.09441; S052): the official parameter
counts, "no extra computational cost", the user norm replacing the IBN default, the small variants."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from blockzoo import create_model
from blockzoo.blocks.norm.ibn import IBN, InstanceNorm2d
from blockzoo.models.ibnnet import RESNET50_MACS_224
from blockzoo.registry import get_model_spec
from helpers import check_macs_224, check_param_count, count_macs, fit_losses, meta_model, meta_params, n_params

# the official ibnnet/resnet_ibn.py models (counted once with that code): IBN-a = the plain ResNet, IBN-b = + 2 x the
# channels of its three IN layers (64 in the stem replaces a BN's; 256 + 512 or 64 + 128 after the additions)
OFFICIAL = {
    "resnet18_ibn_a": 11_689_512, "resnet34_ibn_a": 21_797_672, "resnet50_ibn_a": 25_557_032,
    "resnet101_ibn_a": 44_549_160, "resnet18_ibn_b": 11_689_896, "resnet34_ibn_b": 21_798_056,
    "resnet50_ibn_b": 25_558_568, "resnet101_ibn_b": 44_550_696,
}


def test_param_counts():
    for name, exact in OFFICIAL.items():
        check_param_count(name, exact, exact, 0.0)
        base = name.split("_")[0]
        extra = 0 if name.endswith("_a") else 2 * ((256 + 512) if base in ("resnet50", "resnet101") else (64 + 128))
        assert exact == meta_params(base) + extra


def test_resnet50_ibn_a_no_extra_cost():
    """The paper's "without increasing computational cost": ResNet-50's parameters and MACs (any input size)."""
    assert meta_params("resnet50_ibn_a") == meta_params("resnet50") == 25_557_032
    a, base = create_model("resnet50_ibn_a"), create_model("resnet50")
    assert count_macs(a, (3, 64, 64)) == count_macs(base, (3, 64, 64)) > 0
    assert sum(isinstance(m, IBN) for m in a.modules()) == 3 + 4 + 6


def test_resnet50_ibn_b_cost():
    b, base = create_model("resnet50_ibn_b"), create_model("resnet50")
    assert n_params(b) - n_params(base) == 2 * (256 + 512)
    assert count_macs(b, (3, 64, 64)) == count_macs(base, (3, 64, 64))
    assert sum(isinstance(m, InstanceNorm2d) for m in b.modules()) == 3


@pytest.mark.slow
def test_macs_224():
    for name in ("resnet50_ibn_a", "resnet50_ibn_b"):
        assert check_macs_224(name, None) == RESNET50_MACS_224
    assert count_macs(create_model("resnet50"), (3, 224, 224)) == RESNET50_MACS_224


def test_user_norm_replaces_the_ibn_default():
    plain, ref = meta_model("resnet50_ibn_a", norm="bn"), meta_model("resnet50")
    assert not any(isinstance(m, (IBN, InstanceNorm2d)) for m in plain.modules())
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert get_model_spec("resnet50_ibn_a").slots["norm"] == "ibn_a"
    assert get_model_spec("resnet50_ibn_b").slots["norm"] == "ibn_b"


def test_official_init_no_zero_last_bn():
    m = create_model("resnet18_ibn_a")
    assert all(torch.equal(b.bn2.weight, torch.ones_like(b.bn2.weight)) for s in m.layers for b in s)
    ibn = m.layers[0][0].conv1.norm
    assert torch.equal(ibn.IN.weight, torch.ones(32)) and torch.equal(ibn.IN.bias, torch.zeros(32))


def test_small_variants():
    assert meta_params("resnet20_ibn_a", num_classes=10) == meta_params("resnet20", num_classes=10) == 269_722
    assert meta_params("resnet20_ibn_b", num_classes=10) == 269_722 + 2 * (16 + 32)
    for name in ("resnet20_ibn_a", "resnet20_ibn_b"):
        assert get_model_spec(name).reference["params_3ch_10cls"] == meta_params(name, num_classes=10)
    torch.manual_seed(0)
    m = create_model("resnet20_ibn_a", num_classes=4, in_chans=1)
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8) % 4
    losses = fit_losses(m, x, y, steps=6, lr=3e-3)
    assert losses[-1] < 0.7 * losses[0]
    assert isinstance(m.layers[1][2].conv1.norm, IBN) and isinstance(m.layers[2][0].conv1.norm, nn.BatchNorm2d)
