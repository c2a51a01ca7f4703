"""Invariance-imposing transform (Ye et al., S095; a reconstruction from the abstract): per-sample scale
invariance, GL(n) invariance of the batch whitening up to a rotation, decorrelated output, cost vs a 3x3 conv."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from blockzoo import create_block
from blockzoo.blocks.norm.invariance import InvarianceTransform, local_scale
from blockzoo.errors import ConfigError
from blockzoo.profile import count_macs


def test_local_scale_by_hand():
    # one sample, 2 channels, 1 x 3 map; k = 3: the window at the border holds 2 positions (padding not counted)
    x = torch.tensor([[[[1.0, 2.0, 3.0]], [[1.0, 0.0, 1.0]]]])
    energy = torch.tensor([1.0, 2.0, 5.0])                            # mean over channels of x^2 per position
    expect = torch.stack([energy[:2].mean(), energy.mean(), energy[1:].mean()]).sqrt()
    assert torch.allclose(local_scale(x, 3, 0.0).view(3), expect)


def test_per_sample_scale_invariance():
    m = InvarianceTransform(8, group_size=4, eps=1e-9).double().train()   # exact up to eps
    x = torch.randn(6, 8, 5, 5, dtype=torch.float64)
    a = torch.tensor([0.3, 1.0, 2.0, 5.0, 10.0, 0.7], dtype=torch.float64).view(6, 1, 1, 1)
    assert torch.allclose(m(x), m(x * a), atol=1e-7)
    m.eval()
    assert torch.allclose(m(x), m(x * a), atol=1e-7)
    plain = nn.BatchNorm2d(8).train()                                 # BN is not: the batch statistics change
    assert not torch.allclose(plain(x.float()), plain((x * a).float()), atol=1e-2)


def test_gl_n_invariance_up_to_rotation():
    """Whitened A x equals Q (whitened x) with Q orthogonal: the basis change is removed up to a rotation."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, 3, 3, generator=g, dtype=torch.float64)
    q1, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    # a well-conditioned A (singular values 0.8 .. 1.25): IterNorm's Newton iteration is only stable for a
    # covariance condition number below about 2.4 (module docstring of blocks/norm/iternorm.py)
    a = q1 @ torch.diag(torch.tensor([0.8, 0.95, 1.1, 1.25], dtype=torch.float64)) @ q2
    ax = torch.einsum("ij,njhw->nihw", a, x)
    w = InvarianceTransform(4, group_size=4, T=20).double().train().whitening
    y1 = w.whiten(x).transpose(0, 1).reshape(4, -1)
    y2 = w.whiten(ax).transpose(0, 1).reshape(4, -1)
    q = y2 @ torch.linalg.pinv(y1)
    assert torch.allclose(q @ q.T, torch.eye(4, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(q @ y1, y2, atol=1e-4)
    assert not torch.allclose(q, torch.eye(4, dtype=torch.float64), atol=1e-2)  # a real rotation, not the identity


def test_output_decorrelated_within_groups():
    m = InvarianceTransform(8, group_size=4, T=10, sample_stride=1).double().train()
    x = torch.randn(32, 8, 4, 4, dtype=torch.float64) @ torch.eye(4, dtype=torch.float64).add(0.3)
    y = m(x).transpose(0, 1).reshape(8, -1)
    cov = torch.cov(y, correction=0)
    for sl in (slice(0, 4), slice(4, 8)):
        assert torch.allclose(cov[sl, sl], torch.eye(4, dtype=torch.float64), atol=1e-2)


def test_statistics_from_subsampled_pixels():
    m = InvarianceTransform(4, group_size=4, sample_stride=2, momentum=1.0).train()
    x = torch.randn(8, 4, 6, 6)
    m(x)
    xs = x / local_scale(x, 3, 1e-5)
    assert torch.allclose(m.whitening.running_mean, xs[:, :, ::2, ::2].mean((0, 2, 3)), atol=1e-6)


@pytest.mark.slow   # the first FlopCounterMode dispatch of a process imports torch._dynamo (1-3 s)
def test_cost_vs_conv():
    """Paper: the transform costs ~5% of the underlying conv. Here, against a 3x3 conv 64 -> 64 on 16 x 16 maps
    (MACs of matmuls and convs; elementwise ops, pooling and reductions are not counted, blockzoo's convention):
    eval (count_macs) 2.8%, training (FlopCounterMode, batch 32: covariance on every 2nd pixel + Newton) 3.6%."""
    c, hw, batch = 64, 16, 32
    m = create_block("invariance", c)
    conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
    conv_macs = count_macs(conv, (c, hw, hw)).macs
    eval_ratio = count_macs(m, (c, hw, hw)).macs / conv_macs
    assert eval_ratio == pytest.approx(16 * c * hw * hw / conv_macs)          # the running whitening matmul only
    m.train()
    with FlopCounterMode(display=False) as fc:
        m(torch.randn(batch, c, hw, hw))
    train_ratio = fc.get_total_flops() / 2 / batch / conv_macs
    assert eval_ratio < train_ratio < 0.05
    assert train_ratio == pytest.approx(0.036, abs=0.002)


@pytest.mark.parametrize("kw", [{"kernel_size": 2}, {"sample_stride": 0}, {"group_size": 0}, {"T": 0},
                                {"momentum": 2.0}])
def test_bad_options(kw):
    with pytest.raises(ConfigError):
        create_block("invariance", 8, **kw)
