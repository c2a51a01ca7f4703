"""Weight Standardization (Qiao et al. 2019): per-filter standardised conv weights; timm's StdConv2d is the oracle."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from blockzoo import create_block, create_model
from blockzoo.blocks.conv.ws_conv import StdConv2d, standardize_weight
from blockzoo.errors import ConfigError


def test_filters_standardised():
    torch.manual_seed(0)
    w = torch.randn(5, 3, 3, 3) * 4 + 2
    s = standardize_weight(w).reshape(5, -1)
    assert torch.allclose(s.mean(1), torch.zeros(5), atol=1e-6)
    assert torch.allclose(s.var(1, unbiased=False), torch.ones(5), atol=1e-5)
    # hand-computed filter [1, 2, 3, 4] (as a 1x2x2 kernel): mean 2.5, biased var 1.25
    one = standardize_weight(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), eps=0.0)
    assert torch.allclose(one.flatten(), torch.tensor([-1.5, -0.5, 0.5, 1.5]) / 1.25 ** 0.5)
    off = standardize_weight(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), eps=1e-5, official=True)
    std = torch.tensor([1.0, 2.0, 3.0, 4.0]).std()   # unbiased, eps outside the root
    assert torch.allclose(off.flatten(), torch.tensor([-1.5, -0.5, 0.5, 1.5]) / (std + 1e-5))


def test_matches_timm_stdconv2d():
    shim = str(Path(__file__).resolve().parents[3] / "benchmarks" / "timm_shim")
    if shim not in sys.path:
        sys.path.insert(0, shim)
    layers = pytest.importorskip("timm.layers")
    torch.manual_seed(0)
    ref = layers.StdConv2d(8, 12, 3, stride=2, padding=1)
    ours = StdConv2d(8, 12, 3, 2, 1, bias=False)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 8, 9, 7)
    assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_invariant_to_filter_affine():
    torch.manual_seed(0)
    unit = create_block("ws_conv", 4, out_channels=6, norm="none", act="none", eps=1e-12)   # eps -> 0: exact
    x = torch.randn(2, 4, 6, 6)
    y = unit(x)
    with torch.no_grad():
        unit.conv.weight.mul_(torch.rand(6, 1, 1, 1) * 5 + 0.1).add_(torch.randn(6, 1, 1, 1))
    assert torch.allclose(unit(x), y, atol=1e-4)
    w = standardize_weight(unit.conv.weight, eps=1e-12)
    assert torch.allclose(y, F.conv2d(x, w, unit.conv.bias, padding=1), atol=1e-4)


def test_in_resnet_with_gn():
    model = create_model("resnet20", conv="ws_conv", norm="gn")
    convs = [m for m in model.modules() if isinstance(m, StdConv2d)]
    assert len(convs) == 9   # one conv unit per basic block
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_bad_options():
    with pytest.raises(ConfigError):
        create_block("ws_conv", 4, eps=0.0)
