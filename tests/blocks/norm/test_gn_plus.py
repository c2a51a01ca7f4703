"""Improved GroupNorm (S100, as read from the abstract): GN -> batch standardisation -> affine."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from blockzoo import create_block
from blockzoo.errors import ConfigError


def _gn_by_hand(x: torch.Tensor, groups: int, eps: float) -> torch.Tensor:
    n, c, h, w = x.shape
    out = torch.empty_like(x)
    size = c // groups
    for i in range(n):
        for g in range(groups):
            part = x[i, g * size:(g + 1) * size]
            out[i, g * size:(g + 1) * size] = (part - part.mean()) / torch.sqrt(part.var(unbiased=False) + eps)
    return out


def test_hand_computed():
    x = torch.tensor([[[[1.0, 2.0]], [[3.0, 6.0]], [[0.0, 4.0]], [[2.0, 2.0]]],
                      [[[0.0, 0.0]], [[1.0, 3.0]], [[5.0, 1.0]], [[1.0, 1.0]]]])   # (2, 4, 1, 2)
    m = create_block("gn_plus", 4, groups=2)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([1.0, 2.0, 0.5, 1.0]))
        m.bias.copy_(torch.tensor([0.0, 1.0, 0.0, -1.0]))
    gn = _gn_by_hand(x, 2, 1e-5)
    # sample 0, group 0 = [1, 2, 3, 6]: mean 3, var 3.5
    assert torch.allclose(gn[0, 0, 0], torch.tensor([-2.0, -1.0]) / (3.5 + 1e-5) ** 0.5)
    mu = gn.mean(dim=(0, 2, 3), keepdim=True)
    var = gn.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    want = (gn - mu) / torch.sqrt(var + 1e-5) * m.weight.view(1, -1, 1, 1) + m.bias.view(1, -1, 1, 1)
    assert torch.allclose(m(x), want, atol=1e-5)


def test_eval_uses_running_statistics():
    torch.manual_seed(0)
    m = create_block("gn_plus", 8, groups=4, momentum=0.5)
    for _ in range(3):
        m(torch.randn(6, 8, 4, 4) * 2 + 1)
    rm, rv = m.batch.running_mean.clone(), m.batch.running_var.clone()
    assert not torch.allclose(rm, torch.zeros(8)) and not torch.allclose(rv, torch.ones(8))
    m.eval()
    x = torch.randn(3, 8, 4, 4)
    gn = F.group_norm(x, 4, eps=1e-5)
    want = (gn - rm.view(1, -1, 1, 1)) / torch.sqrt(rv.view(1, -1, 1, 1) + 1e-5)
    assert torch.allclose(m(x), want, atol=1e-5)
    assert torch.allclose(m(x[:1]), m(x)[:1], atol=1e-6)   # no batch dependence in eval mode
    assert torch.equal(m.batch.running_mean, rm)


def test_batch1_groups_c_is_in():
    torch.manual_seed(1)
    m = create_block("gn_plus", 6, groups=6)
    x = torch.randn(1, 6, 5, 5) * 3 + 2
    assert torch.allclose(m(x), F.instance_norm(x, eps=1e-5), atol=1e-4)


def test_groups_follow_gn():
    assert create_block("gn_plus", 48).groups == 24   # as gn: the largest divisor of C not above 32
    with pytest.raises(ConfigError):
        create_block("gn_plus", 8, groups=0)
