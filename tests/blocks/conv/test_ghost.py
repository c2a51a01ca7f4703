"""blockzoo.blocks.conv.ghost: the Ghost module (GhostNet, Han et al., CVPR 2020, arXiv:1911.11907; S098) -- its output
channels, the cost ratios of eq. 4-5, the depthwise structure of the ghost maps, the ``ghost`` conv unit in ResNet-20
--, the Ghost bottleneck and GhostNetV2's DFC-gated Ghost module (S042)."""
from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import create_block, create_model
from blockzoo.blocks.attention.se import se_value_divisible
from blockzoo.blocks.conv.ghost import GhostBottleneck, GhostModule, GhostModuleV2, intrinsic_channels
from blockzoo.errors import ConfigError, IncompatibleBlockError, InputShapeError
from blockzoo.models.common.resnet import BasicBlock
from helpers import bn_ref, count_macs, n_params, randomize_bn


def _eval(m: nn.Module, seed: int = 0) -> nn.Module:
    randomize_bn(m, seed)
    return m.eval()


@pytest.mark.parametrize("n,s,m", [(7, 3, 3), (5, 2, 3), (12, 2, 6), (9, 4, 3)])
def test_output_channels_not_divisible(n, s, m):
    """m = ceil(n/s) intrinsic maps, m(s-1) ghosts, concatenated and cut to n: the kept channels are the intrinsic
    maps, then the first n - m ghosts."""
    g = _eval(GhostModule(4, n, ratio=s))
    assert intrinsic_channels(n, s) == m
    assert g.primary_conv.conv.out_channels == m and g.cheap_operation.conv.out_channels == m * (s - 1)
    x = torch.randn(2, 4, 5, 6)
    with torch.no_grad():
        y, intrinsic = g(x), g.primary_conv(x)
        ghosts = g.cheap_operation(intrinsic)
    assert y.shape == (2, n, 5, 6)
    torch.testing.assert_close(y[:, :m], intrinsic)
    torch.testing.assert_close(y[:, m:], ghosts[:, :n - m])
    unit = create_block("ghost", 6, out_channels=7, stride=2)   # the conv-slot unit: 3x3 primary conv with the stride
    assert unit(torch.randn(1, 6, 9, 8)).shape == (1, 7, 5, 4)


def test_cost_formula_eq4_eq5():
    """Eq. 4-5: against a plain k x k conv (c -> n) the Ghost module saves r = s c k^2 / (c k^2 + (s-1) d^2) in
    parameters and MACs -- exactly s c / (c + s - 1) ~ s for d = k (for s dividing n; else the m = ceil(n/s)
    intrinsic maps and all their ghosts are computed, the cut ones too)."""
    c, n, h = 64, 64, 8
    for k, s, d in ((3, 2, 3), (3, 4, 3), (1, 2, 3), (3, 3, 5)):
        g = GhostModule(c, n, kernel_size=k, ratio=s, dw_size=d)
        m = math.ceil(n / s)
        weights = m * c * k * k + m * (s - 1) * d * d
        bn = 2 * m + 2 * m * (s - 1)
        assert n_params(g) == weights + bn
        plain = n * c * k * k
        ratio = n * c * k * k / (m * (c * k * k + (s - 1) * d * d))   # all m s channels computed, n kept
        assert plain / weights == pytest.approx(ratio, rel=1e-12)
        assert count_macs(g, (c, h, h)) == weights * h * h                    # eq. 4: the same ratio in MACs
        assert count_macs(nn.Conv2d(c, n, k, padding=k // 2), (c, h, h)) / count_macs(g, (c, h, h)) == \
            pytest.approx(ratio, rel=1e-12)
        if n % s == 0:   # the paper's form
            assert ratio == pytest.approx(s * c * k * k / (c * k * k + (s - 1) * d * d), rel=1e-12)
        if n % s == 0 and d == k:
            assert ratio == pytest.approx(s * c / (c + s - 1), rel=1e-12)
    # the hand case: c = n = 64, k = d = 3, s = 2: 18,432 + 288 conv weights instead of 36,864 (1.97x)
    g = GhostModule(64, 64, kernel_size=3)
    assert n_params(g) == 18_432 + 288 + 4 * 32
    assert 36_864 / (18_432 + 288) == pytest.approx(128 / 65)


def test_ghost_maps_depend_on_their_intrinsic_map_only():
    """The cheap op is depthwise: ghost channel j is a function of intrinsic channel j // (s-1) alone. Zeroing one
    intrinsic map (its primary conv weights, BN mean and bias) zeroes exactly its s-1 ghost maps before the cheap op's
    norm (after it they are the norm's bias); perturbing one intrinsic map's weights changes only it and its ghosts."""
    s, n, cin = 3, 12, 5
    g = _eval(GhostModule(cin, n, kernel_size=3, ratio=s, act="none"))
    m = intrinsic_channels(n, s)
    x = torch.randn(2, cin, 6, 7)
    i = 2
    ghosts_of_i = list(range(i * (s - 1), (i + 1) * (s - 1)))
    with torch.no_grad():
        g.primary_conv.conv.weight[i] = 0
        g.primary_conv.norm.running_mean[i] = 0
        g.primary_conv.norm.bias[i] = 0
        intrinsic = g.primary_conv(x)
        assert torch.all(intrinsic[:, i] == 0) and torch.all(intrinsic[:, [c for c in range(m) if c != i]] != 0)
        pre_norm = g.cheap_operation.conv(intrinsic)
        zero = [c for c in range(m * (s - 1)) if torch.all(pre_norm[:, c] == 0)]
        assert zero == ghosts_of_i
        bn = g.cheap_operation.norm
        y = g(x)
        for c in ghosts_of_i:   # after the norm: its bias term only, constant over the map
            torch.testing.assert_close(y[:, m + c], bn_ref(torch.zeros_like(pre_norm), bn)[:, c])
        # perturb intrinsic channel j: the outputs that change are channel j and its ghosts, nothing else
        j = 1
        g.primary_conv.conv.weight[j] += 0.5
        changed = [c for c in range(n) if not torch.allclose(g(x)[:, c], y[:, c])]
    assert changed == [j] + [m + c for c in range(j * (s - 1), (j + 1) * (s - 1))]


def _conv1_weights(model: nn.Module) -> int:
    return sum(p.numel() for blk in model.modules() if isinstance(blk, BasicBlock)
               for name, p in blk.conv1.named_parameters() if name.endswith("conv.weight"))


def test_resnet20_ghost_halves_conv_params():
    """ResNet-20's conv slot (the first 3x3 unit of each of its 9 basic blocks) with Ghost modules (s = 2, d = 3,
    3x3 primary conv with the block's stride): those convolutions' weights fall to about half, by the formula."""
    base, ghost = create_model("resnet20"), create_model("resnet20", conv="ghost")
    blocks = [(16, 16)] * 3 + [(16, 32), (32, 32), (32, 32), (32, 64), (64, 64), (64, 64)]   # (in, planes)
    plain = sum(cin * c * 9 for cin, c in blocks)
    hand = sum(cin * (c // 2) * 9 + (c // 2) * 9 for cin, c in blocks)
    assert _conv1_weights(base) == plain == 122_112
    assert _conv1_weights(ghost) == hand
    assert 0.5 < hand / plain < 0.52                          # "roughly halves" (the cheap op adds 1-3 %)
    assert n_params(base) - n_params(ghost) == plain - hand   # the norms keep their count (2 x 2 x c/2 = 2c)
    unit = ghost.layers[1][0].conv1
    assert isinstance(unit, GhostModule) and unit.primary_conv.conv.stride == (2, 2)
    assert unit.primary_conv.conv.kernel_size == (3, 3) and unit.cheap_operation.conv.groups == 16
    assert ghost(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_bad_options():
    with pytest.raises(ConfigError, match="ratio"):
        create_block("ghost", 8, ratio=1)
    with pytest.raises(ConfigError, match="dw_size"):
        create_block("ghost", 8, dw_size=2)
    with pytest.raises(ConfigError, match="kernel_size"):
        create_block("ghost", 8, kernel_size=4)
    with pytest.raises(IncompatibleBlockError, match="groups"):
        create_block("ghost", 8, out_channels=6, groups=2)       # 3 intrinsic channels in 2 groups
    grouped = create_block("ghost", 64, out_channels=64, groups=32)   # ResNeXt-style host: 32 intrinsic maps
    assert grouped.primary_conv.conv.groups == 32


def test_ghost_module_v2_gates_with_dfc_of_its_input():
    """GhostNetV2: output = GhostModule(x) * nearest_up(sigmoid(BN(5x1 dw(BN(1x5 dw(BN(1x1 conv C_in -> C_out
    (avgpool2(x))))))))), the gate computed from the module input (odd, non-square size)."""
    v2 = _eval(GhostModuleV2(6, 10))
    assert v2.dfc.conv.in_channels == 6 and v2.dfc.conv.out_channels == 10
    assert n_params(v2.dfc) == 6 * 10 + 2 * 5 * 10 + 6 * 10   # 1x1 C_in -> C_out, 1x5 and 5x1 depthwise, three BNs
    x = torch.randn(2, 6, 7, 9)
    d = v2.dfc
    with torch.no_grad():
        a = bn_ref(d.conv(F.avg_pool2d(x, 2)), d.bn)
        a = bn_ref(d.conv_v(bn_ref(d.conv_h(a), d.bn_h)), d.bn_v)
        rows, cols = torch.arange(7) * 3 // 7, torch.arange(9) * 4 // 9   # nearest: source = floor(dst * in / out)
        gate = torch.sigmoid(a)[:, :, rows][:, :, :, cols]
        torch.testing.assert_close(v2(x), GhostModule.forward(v2, x) * gate)
    with pytest.raises(InputShapeError, match="at least 2"):
        v2(torch.randn(1, 6, 1, 5))


def test_se_rounding():
    """GhostNet's SE: hidden = make_divisible(C / 4, 4) (official _make_divisible(C * 0.25, 4)): 72 -> 20,
    120 -> 32, 480 -> 120, 672 -> 168, 960 -> 240; an explicit hidden and other blocks are kept."""
    value = "se(reduction=4, gate=hsigmoid)"
    ghost_se = functools.partial(se_value_divisible, divisor=4)   # as the Ghost bottleneck builds its SE
    assert [ghost_se(value, c)[1]["hidden"] for c in (72, 120, 480, 672, 960)] == [20, 32, 120, 168, 240]
    assert ghost_se("se(hidden=7)", 72) == "se(hidden=7)" and ghost_se("eca", 72) == "eca"
    b = GhostBottleneck(40, 120, 40, 5, attn=value)
    assert b.attn.hidden == 32 and b.attn.gate == "hsigmoid"


def test_bottleneck_shortcut_and_no_final_activation():
    """Stride 1, same width: identity shortcut and no activation after the addition (a zero branch returns x, its
    negative values too); stride 2: depthwise k x k conv (stride 2) -> BN in the branch and a depthwise k x k
    (stride 2) -> BN -> 1x1 -> BN shortcut, by parameter count."""
    b = _eval(GhostBottleneck(16, 48, 16, 3, 1))
    assert isinstance(b.shortcut, nn.Identity) and isinstance(b.conv_dw, nn.Identity)
    with torch.no_grad():
        b.ghost2.primary_conv.norm.weight.zero_(), b.ghost2.primary_conv.norm.bias.zero_()
        b.ghost2.cheap_operation.norm.weight.zero_(), b.ghost2.cheap_operation.norm.bias.zero_()
        x = torch.randn(2, 16, 6, 6)
        assert torch.equal(b(x), x) and (x < 0).any()
    cin, mid, cout, k = 16, 48, 24, 3
    s2 = GhostBottleneck(cin, mid, cout, k, 2)
    ghost1 = cin * (mid // 2) + (mid // 2) * 9 + 2 * mid          # 1x1 primary + 3x3 cheap, BN over all mid maps
    dw = mid * k * k + 2 * mid
    ghost2 = mid * (cout // 2) + (cout // 2) * 9 + 2 * cout
    shortcut = cin * k * k + 2 * cin + cin * cout + 2 * cout
    assert n_params(s2) == ghost1 + dw + ghost2 + shortcut
    assert s2.conv_dw.conv.stride == (2, 2) and s2.shortcut[0].stride == (2, 2) and s2.shortcut[0].groups == cin
    assert s2(torch.randn(2, cin, 8, 7)).shape == (2, cout, 4, 4)
    with pytest.raises(ConfigError, match="stride"):
        GhostBottleneck(16, 48, 16, 3, 3)
