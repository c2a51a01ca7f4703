"""Batch-whitening conv unit (Cho et al., ICCV 2021, S090): whitening -> conv -> act, hand-checked."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from blockzoo import create_block, create_model
from blockzoo.blocks.conv.bw_conv import BWConv
from blockzoo.blocks.norm.iternorm import IterNorm
from blockzoo.errors import ConfigError


def test_whitening_before_conv_by_hand():
    # 2 input channels over 4 positions: ch0 = 1 + 2 * [1, 1, -1, -1] (mean 1, var 4), ch1 = [1, -1, 1, -1] - 3
    # (mean -3, var 1), uncorrelated. Whitened (eps 0 up to 1e-5): [1, 1, -1, -1] and [1, -1, 1, -1].
    x = torch.tensor([[3.0, 3.0, -1.0, -1.0], [-2.0, -4.0, -2.0, -4.0]]).T.reshape(4, 2, 1, 1)
    unit = create_block("bw_conv", 2, out_channels=2, kernel_size=1, act="none", T=20, bias=True)
    with torch.no_grad():
        unit.unit.conv.weight.copy_(torch.tensor([[1.0, 1.0], [1.0, -1.0]]).view(2, 2, 1, 1))
        unit.unit.conv.bias.copy_(torch.tensor([0.5, 0.0]))
    y = unit.train()(x).reshape(4, 2)
    # conv of the whitened input: [a + b + 0.5, a - b] per position
    expect = torch.tensor([[2.5, 0.0], [0.5, 2.0], [0.5, -2.0], [-1.5, 0.0]])
    assert torch.allclose(y, expect, atol=1e-4)


def test_order_is_whiten_conv_act():
    unit = BWConv(8, 16, group_size=4).train()
    x = torch.randn(4, 8, 6, 6) * 3 + 1
    ref = IterNorm(8, group_size=4).train()
    ref.load_state_dict(unit.whiten.state_dict())
    expect = torch.relu(unit.unit.conv(ref(x)))
    assert torch.allclose(unit(x), expect, atol=1e-6)
    assert (unit(x) >= 0).all()


def test_structure():
    unit = create_block("bw_conv", 16, out_channels=32, stride=2)
    assert isinstance(unit.whiten, IterNorm) and unit.whiten.channels == 16      # whitening of the unit's input
    assert isinstance(unit.unit.norm, nn.Identity)                               # no norm after the conv
    assert isinstance(unit.unit.act, nn.ReLU) and unit.unit.conv.bias is None    # official: no conv bias by default
    assert unit.unit.conv.stride == (2, 2) and unit.out_channels == 32
    assert unit(torch.randn(2, 16, 8, 8)).shape == (2, 32, 4, 4)
    assert unit.whiten.group_size == 16 and unit.whiten.T == 5                   # IterNorm's paper defaults (64, 5)
    assert create_block("bw_conv", 128).whiten.running_wm.shape == (2, 64, 64)


def test_in_resnet_conv_slot():
    m = create_model("resnet20", num_classes=3, in_chans=1, conv="bw_conv(group_size=8)")
    units = [mod for mod in m.modules() if isinstance(mod, BWConv)]
    assert len(units) == 9                                                       # the first 3x3 unit of each block
    assert m(torch.randn(4, 1, 16, 16)).shape == (4, 3)


@pytest.mark.parametrize("kw", [{"kernel_size": 2}, {"groups": 3}, {"T": 0}, {"group_size": 0}])
def test_bad_options(kw):
    with pytest.raises(ConfigError):
        create_block("bw_conv", 8, out_channels=8, **kw)
