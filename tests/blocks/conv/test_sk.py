"""blockzoo.blocks.conv.sk: the Selective Kernel unit (S097): parameter formula, softmax across branches, selection."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from blockzoo import create_block, create_model, list_blocks
from blockzoo.blocks.conv.sk import SelectiveKernel, sk_hidden_dim
from helpers import nparams


def _sk_params(cin: int, cout: int, groups: int, d: int, m: int) -> int:
    branch = cout * (cin // groups) * 9 + 2 * cout          # grouped 3x3 conv (no bias) + BN
    return m * branch + cout * d + 2 * d + d * m * cout       # + fuse FC (no bias) + BN + M select FCs (no bias)


def _force_logits(u: SelectiveKernel, per_branch: list[float]) -> None:
    """Make z == 1 (fuse BN outputs its bias 1 -> ReLU) and the select FC give logit ``per_branch[i]`` to branch i."""
    with torch.no_grad():
        u.fc_norm.weight.zero_()
        u.fc_norm.bias.fill_(1.0)
        w = u.fc_select.weight.view(u.num_branches, u.out_channels, u.hidden)
        for i, logit in enumerate(per_branch):
            w[i].fill_(logit / u.hidden)


def test_registered():
    assert "sk" in list_blocks(slot="conv")
    assert "gcp" in list_blocks(slot="head")


@pytest.mark.parametrize("cin,cout,groups,r,L,m,d", [
    (8, 16, 2, 4, 3, 2, 4),       # C/r = 4 wins over L = 3
    (32, 32, 1, 16, 8, 2, 8),     # L = 8 wins over C/r = 2
    (12, 24, 3, 2, 5, 3, 12),     # three branches
    (64, 128, 32, 16, 32, 2, 32),  # SKNet-50 stage-1 unit: d = max(8, 32) = 32
])
def test_sk_param_count_formula(cin, cout, groups, r, L, m, d):
    assert sk_hidden_dim(cout, r, L) == d
    u = create_block("sk", cin, out_channels=cout, groups=groups, reduction=r, min_dim=L, branches=m)
    assert u.hidden == d
    assert nparams(u) == _sk_params(cin, cout, groups, d, m)
    for i, b in enumerate(u.branches):  # branch i: 3x3, dilation = padding = i + 1, grouped
        assert b.conv.kernel_size == (3, 3) and b.conv.dilation == (i + 1, i + 1) and b.conv.padding == (i + 1, i + 1)
        assert b.conv.groups == groups and b.conv.bias is None


def test_sk_softmax_across_branches():
    u = create_block("sk", 8, out_channels=16, branches=3, min_dim=4).eval()
    nn.init.normal_(u.fc_select.weight, std=2.0)      # make the attention clearly non-uniform
    with torch.no_grad():
        u.fc_norm.running_mean.uniform_(-0.5, 0.5)
    seen = []
    u.softmax.register_forward_hook(lambda mod, inp, out: seen.append(out))
    x = torch.randn(2, 8, 7, 6)
    with torch.no_grad():
        u(x)
    a = seen[0]
    assert a.shape == (2, 3, 16, 1, 1)
    torch.testing.assert_close(a.sum(1), torch.ones(2, 16, 1, 1))     # sums to 1 over the branches ...
    assert not torch.allclose(a.sum(2), torch.ones_like(a.sum(2)))    # ... not over the channels
    # the same attention from plain ops: GAP of the summed branches -> FC -> BN -> ReLU -> FC -> softmax over M
    with torch.no_grad():
        s = sum(b(x) for b in u.branches).mean((2, 3))                                   # (N, C)
        bn = u.fc_norm
        z = torch.relu((s @ u.fc_reduce.weight[:, :, 0, 0].T - bn.running_mean) /
                       torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias)      # (N, d)
        logits = (z @ u.fc_select.weight[:, :, 0, 0].T).view(2, 3, 16)
        torch.testing.assert_close(a[..., 0, 0], torch.softmax(logits, dim=1))


def test_sk_selects_branch():
    u = create_block("sk", 6, out_channels=10, min_dim=4).eval()
    x = torch.randn(2, 6, 9, 8)
    with torch.no_grad():
        b0, b1 = u.branches[0](x), u.branches[1](x)
        assert not torch.allclose(b0, b1)
        _force_logits(u, [100.0, 0.0])      # a_0 = 1 / (1 + e^-100) == 1 in float32
        torch.testing.assert_close(u(x), b0, rtol=0, atol=1e-6)
        _force_logits(u, [0.0, 100.0])
        torch.testing.assert_close(u(x), b1, rtol=0, atol=1e-6)
        _force_logits(u, [1.0, 0.0])        # a_0 = e / (1 + e), a_1 = 1 / (1 + e)
        a0 = math.e / (1 + math.e)
        torch.testing.assert_close(u(x), a0 * b0 + (1 - a0) * b1)


def test_sk_dilated_branch_receptive_field():
    """Branch 0 sees a 3x3 neighbourhood, branch 1 (dilation 2) the 3x3 grid of offsets {-2, 0, 2}^2 (5x5 field)."""
    u = create_block("sk", 1, out_channels=1, min_dim=2, act="none").eval()
    for b in u.branches:
        nn.init.ones_(b.conv.weight)
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    with torch.no_grad():
        r0 = u.branches[0](x)[0, 0] != 0
        r1 = u.branches[1](x)[0, 0] != 0
    e0 = torch.zeros(9, 9, dtype=torch.bool)
    e0[3:6, 3:6] = True
    e1 = torch.zeros(9, 9, dtype=torch.bool)
    e1[2:7:2, 2:7:2] = True
    assert torch.equal(r0, e0) and torch.equal(r1, e1)


def test_sk_stride2_and_groups():
    u = create_block("sk", 16, out_channels=32, stride=2, groups=4)
    x = torch.randn(2, 16, 9, 7)
    y = u(x)
    assert y.shape == (2, 32, 5, 4)
    assert all(b.conv.stride == (2, 2) and b(x).shape == y.shape for b in u.branches)  # stride in every branch
    y.sum().backward()
    assert all(p.grad is not None for p in u.parameters())


def test_sk_batch1_training_message_and_bn_free_variant():
    u = create_block("sk", 8, out_channels=8)
    with pytest.raises(ValueError, match="batch size"):
        u(torch.randn(1, 8, 5, 5))
    u.eval()
    assert u(torch.randn(1, 8, 5, 5)).shape == (1, 8, 5, 5)
    v = create_block("sk", 8, out_channels=8, fc_norm="none")
    assert isinstance(v.fc_norm, nn.Identity) and v.fc_reduce.bias is not None
    assert v(torch.randn(1, 8, 5, 5)).shape == (1, 8, 5, 5)


def test_sk_official_fc_init_survives_backbone_init():
    m = create_model("skresnet20")
    for mod in m.modules():
        if isinstance(mod, SelectiveKernel):
            assert mod.fc_reduce.weight.std() < 0.02 and mod.fc_select.weight.std() < 0.02   # Gaussian, std 0.01
            assert mod.branches[0].conv.weight.std() > 0.05                                     # Kaiming elsewhere
