"""blockzoo.blocks.conv.mgic: the multigrid-in-channels unit (S106): levels, parameter formula and linear growth,
a hand-computed cycle, full channel coupling, stride / channel changes, refusals, use in ResNet-20."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from blockzoo import ConfigError, IncompatibleBlockError, create_block, create_model, list_blocks
from blockzoo.blocks.conv.mgic import MGICConv, MGICLevel, mgic_levels
from helpers import meta_model, nparams


def _formula(c: int, g: int) -> int:
    """mgic unit on c = g * 2^k channels, stride 1, BN: per fine level c_l a grouped 3x3 conv (9 c_l g) + BN (2 c_l),
    R and P (c_l g / 2 each) and the prolongation BN (2 c_l); a dense 3x3 conv + BN on the g-channel coarsest level.
    The fine levels sum to 2c - 2g."""
    return (10 * g + 4) * (2 * c - 2 * g) + 9 * g * g + 2 * g


def test_registered():
    assert "mgic" in list_blocks(slot="conv")


@pytest.mark.parametrize("c,g,coarse,levels", [
    (64, 16, None, [64, 32, 16]),
    (16, 16, None, [16]),           # at most g channels: one fully coupled level
    (8, 16, None, [8]),
    (48, 16, None, [48, 24]),       # 24 is not a multiple of 16: the coarsest level
    (64, 16, 8, [64, 32, 16, 8]),   # the official code's extra level (coarse_channels = g // 2)
    (256, 8, None, [256, 128, 64, 32, 16, 8]),
])
def test_mgic_levels(c, g, coarse, levels):
    assert mgic_levels(c, g, coarse) == levels
    u = create_block("mgic", c, group_size=g, coarse_channels=coarse)
    assert u.levels == levels
    level, seen = u.cycle, []
    while isinstance(level, MGICLevel):   # groups c/g on every fine level, 1x1 transfers c <-> c/2
        groups = level.restrict.in_channels // g
        assert level.restrict.groups == level.prolong.groups == level.block.conv.groups == groups
        assert level.restrict.kernel_size == level.prolong.kernel_size == (1, 1)
        seen.append(level.restrict.in_channels)
        level = level.coarse
    assert level.conv.groups == 1 and level.conv.in_channels == levels[-1]   # coarsest: fully coupled
    assert seen == levels[:-1]


@pytest.mark.parametrize("c,g", [(16, 16), (64, 16), (512, 16), (32, 4), (128, 8)])
def test_mgic_param_formula(c, g):
    assert nparams(create_block("mgic", c, group_size=g)) == _formula(c, g)


def test_mgic_params_linear_in_width():
    """Paper's claim: MGIC's parameters grow linearly with the width, a standard conv's quadratically. From c to 2c
    to 4c the MGIC increment doubles exactly (affine in c); the dense 3x3 conv's grows about 4x."""
    widths = (64, 128, 256, 512, 1024)
    mg = [nparams(create_block("mgic", c)) for c in widths]
    dense = [nparams(create_block("conv3x3", c)) for c in widths]
    assert mg == [_formula(c, 16) for c in widths]
    for i in range(len(widths) - 2):
        assert (mg[i + 2] - mg[i + 1]) == 2 * (mg[i + 1] - mg[i])
        assert 3.9 < (dense[i + 2] - dense[i + 1]) / (dense[i + 1] - dense[i]) <= 4
    assert mg[-1] / widths[-1] == pytest.approx(2 * (10 * 16 + 4), rel=0.02)   # ~328 parameters per channel
    ratios = [m / d for m, d in zip(mg, dense)]
    assert all(a > b for a, b in zip(ratios, ratios[1:])) and ratios[-1] < 0.04


def test_mgic_hand_computed_cycle():
    """c = 4, g = 2 (levels 4 -> 2), no norm / act, every 3x3 weight 1, a 1x1 input x = (1, 2, 3, 4) (only the
    centre tap sees data): R averages pairs, x_H = (1.5, 3.5); the dense coarse conv gives y_H = (5, 5); the
    correction P(y_H - x_H) = (3.5, 3.5, 1.5, 1.5) makes z = (4.5, 5.5, 4.5, 5.5); the grouped fine conv sums each
    pair: every output channel is 1 + 2 + 3 + 4 = 10."""
    u = create_block("mgic", 4, group_size=2, norm="none", act="none").eval()
    assert u.levels == [4, 2]
    with torch.no_grad():
        for m in u.modules():
            if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
                m.weight.fill_(1.0)
                m.bias.zero_()
        x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1)
        x_coarse = u.cycle.restrict(x)
        assert x_coarse.flatten().tolist() == [1.5, 3.5]
        assert u.cycle.coarse(x_coarse).flatten().tolist() == [5.0, 5.0]
        assert u(x).flatten().tolist() == [10.0] * 4


def _coupling(module: nn.Module, c: int) -> torch.Tensor:
    """(C_out, C_in) matrix: |d out[k, centre] / d x[j, :, :]| summed over space, for a 1 x c x 5 x 5 input."""
    x = torch.randn(1, c, 5, 5)
    rows = []
    for k in range(c):
        xi = x.clone().requires_grad_()
        module(xi)[0, k, 2, 2].backward()
        rows.append(xi.grad.abs().sum((0, 2, 3)))
    return torch.stack(rows)


def test_mgic_full_coupling_jacobian():
    """Every output channel depends on every input channel (the Jacobian block of each channel pair is non-zero),
    although every fine-level conv is grouped: the grouped 3x3 conv alone couples only the 2 channels of a group."""
    torch.manual_seed(0)
    c = 8
    u = create_block("mgic", c, group_size=2, act="gelu").eval()
    assert u.levels == [8, 4, 2]
    assert (_coupling(u, c) > 0).all()
    fine = u.cycle.block.eval()   # the fine level's grouped conv -> BN -> GELU, 4 groups of 2
    alone = _coupling(fine, c) > 0
    group = torch.arange(c) // 2
    assert torch.equal(alone, group[:, None] == group[None, :])


def test_mgic_stride_and_out_channels():
    u = create_block("mgic", 16, out_channels=32, stride=2, group_size=8)
    assert isinstance(u.connector[0], nn.Conv2d)
    assert u.connector[0].stride == (2, 2) and u.connector[0].groups == 16   # gcd(16, 32): each input -> 2 outputs
    assert u(torch.randn(2, 16, 9, 9)).shape == (2, 32, 5, 5)
    same = create_block("mgic", 24, out_channels=24, stride=2, group_size=8)
    assert same.connector[0].groups == 24   # depthwise strided connector
    assert same(torch.randn(1, 24, 8, 8)).shape == (1, 24, 4, 4)
    assert isinstance(create_block("mgic", 32).connector, nn.Identity)
    down = create_block("mgic", 48, out_channels=32)   # channel reduction: gcd(48, 32) = 16 groups
    assert down.connector[0].groups == 16 and down(torch.randn(1, 48, 6, 6)).shape == (1, 32, 6, 6)


def test_mgic_bad_options():
    with pytest.raises(ConfigError, match="group_size must be even"):
        create_block("mgic", 32, group_size=3)
    with pytest.raises(ConfigError, match="group_size"):
        create_block("mgic", 32, group_size=1)
    with pytest.raises(ConfigError, match="coarse_channels"):
        create_block("mgic", 32, coarse_channels=0)


def test_mgic_refuses_grouped_position():
    with pytest.raises(IncompatibleBlockError, match="groups=4"):
        create_block("mgic", 64, groups=4)
    with pytest.raises(IncompatibleBlockError, match="sknet50.layer1.0.*groups=32"):
        meta_model("sknet50", conv="mgic")   # the ResNeXt bottleneck's 3x3 conv is grouped


def test_resnet20_with_mgic_trains_a_step():
    torch.manual_seed(0)
    m = create_model("resnet20", conv="mgic", num_classes=10)
    units = [u for u in m.modules() if isinstance(u, MGICConv)]
    assert len(units) == 9 and [u.levels for u in units[-3:]] == [[64, 32, 16]] * 3
    r = units[-1].cycle.restrict.weight
    assert torch.all(r == 1 / 16)   # the averaging init survives the backbone's generic init
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    before = [p.detach().clone() for p in m.parameters()]
    loss = nn.functional.cross_entropy(m(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(not torch.equal(a, b) for a, b in zip(before, m.parameters()) if b.grad is not None)
    assert all(p.grad is not None for p in m.parameters())
