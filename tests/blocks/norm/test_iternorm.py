"""IterNorm (Huang et al., CVPR 2019): whitening, the Newton steps by hand, BN equivalence at group size 1, eval mode
with the running matrix, exact gradients, groups with a remainder, bad options, traceability."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from blockzoo import create_block, create_model
from blockzoo.blocks.norm.iternorm import IterNorm, newton_whitening
from blockzoo.errors import ConfigError


def _channel_cov(y: torch.Tensor) -> torch.Tensor:
    z = y.transpose(0, 1).reshape(y.shape[1], -1)
    z = z - z.mean(1, keepdim=True)
    return z @ z.T / z.shape[1]


def _correlated(n: int, c: int, hw: int = 3, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """Correlated, off-centre channels whose covariance has eigenvalues in about [0.6, 2.3] (condition < 4)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(c, c, generator=g, dtype=torch.float64))
    mix = q @ torch.diag(torch.linspace(0.8, 1.5, c, dtype=torch.float64)) @ q.T
    x = torch.randn(n, hw, hw, c, generator=g, dtype=torch.float64) @ mix + 2.0
    return x.permute(0, 3, 1, 2).contiguous().to(dtype)


def test_output_covariance_identity():
    x = _correlated(64, 4, dtype=torch.float64)
    assert (_channel_cov(x) - torch.eye(4)).abs().max() > 0.3          # the input is far from white
    m = IterNorm(4, group_size=4, T=20, affine=False).double().train()
    y = m(x)
    assert torch.allclose(_channel_cov(y), torch.eye(4, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(y.mean((0, 2, 3)), torch.zeros(4, dtype=torch.float64), atol=1e-8)
    # the whitening matrix is Sigma^{-1/2} (ZCA): compare with the eigen-decomposition
    z = x.transpose(0, 1).reshape(4, -1)
    evals, evecs = torch.linalg.eigh(_channel_cov(x) + 1e-5 * torch.eye(4, dtype=torch.float64))
    zca = evecs @ torch.diag(evals.rsqrt()) @ evecs.T
    assert torch.allclose(y.transpose(0, 1).reshape(4, -1), zca @ (z - z.mean(1, keepdim=True)), atol=1e-4)


def test_finite_T_whitens_progressively():
    """The paper's point: with few iterations the output is only partly whitened, closer to I as T grows."""
    x = _correlated(64, 4)
    err = [(_channel_cov(IterNorm(4, group_size=4, T=t, affine=False)(x)) - torch.eye(4)).norm().item()
           for t in (1, 3, 10)]
    assert err[0] > err[1] > err[2]


def test_newton_steps_by_hand():
    # two centred channels with variances 3 and 1, uncorrelated: Sigma = diag(3, 1), tr = 4, Sigma_N = diag(.75, .25)
    r3 = math.sqrt(3)
    xc = torch.tensor([[[r3, r3, -r3, -r3], [1.0, -1.0, 1.0, -1.0]]], dtype=torch.float64)
    # P_1 = (3 I - Sigma_N) / 2 = diag(1.125, 1.375); W = P_1 / sqrt(4)
    w1 = newton_whitening(xc, T=1, eps=0.0)
    assert torch.allclose(w1, torch.diag(torch.tensor([0.5625, 0.6875], dtype=torch.float64)))
    # P_2 = 1.5 P_1 - 0.5 P_1^3 Sigma_N = diag(1.5*1.125 - .5*1.125^3*.75, 1.5*1.375 - .5*1.375^3*.25)
    w2 = newton_whitening(xc, T=2, eps=0.0)
    assert torch.allclose(w2, torch.diag(torch.tensor([1.153564453125, 1.737548828125], dtype=torch.float64) / 2))
    # the limit is Sigma^{-1/2} = diag(1/sqrt(3), 1)
    assert torch.allclose(newton_whitening(xc, T=30, eps=0.0),
                          torch.diag(torch.tensor([1 / math.sqrt(3), 1.0], dtype=torch.float64)))


def test_group_size_one_is_batchnorm():
    x = _correlated(8, 6, hw=5)
    m = IterNorm(6, group_size=1, affine=False).train()
    bn = nn.BatchNorm2d(6, affine=False).train()
    assert torch.allclose(m(x), bn(x), atol=1e-5)
    assert torch.allclose(m.running_mean, bn.running_mean, atol=1e-6)
    # the running whitening matrix of a 1-channel group is a running 1 / sqrt(var + eps)
    var = x.var((0, 2, 3), unbiased=False)
    assert torch.allclose(m.running_wm.view(6), 0.9 + 0.1 * (var + 1e-5).rsqrt(), atol=1e-5)


def test_eval_uses_running_matrix():
    x, other = _correlated(32, 4), _correlated(32, 4, seed=1)
    m = IterNorm(4, group_size=2, momentum=1.0, affine=False).train()
    y_train = m(x)
    mean = x.mean((0, 2, 3))
    wm = newton_whitening((x.transpose(0, 1).reshape(2, 2, -1) - mean.view(2, 2, 1)), 5, 1e-5)
    assert torch.allclose(m.running_mean, mean, atol=1e-6) and torch.allclose(m.running_wm, wm, atol=1e-6)
    m.eval()
    assert torch.allclose(m(x), y_train, atol=1e-5)                  # momentum 1: the running stats are this batch's
    z = other.transpose(0, 1).reshape(2, 2, -1) - mean.view(2, 2, 1)
    expect = (wm @ z).reshape(4, 32, 3, 3).transpose(0, 1)
    assert torch.allclose(m(other), expect, atol=1e-5)                # not other's own statistics
    before = m.running_wm.clone()
    m(other)
    assert torch.equal(m.running_wm, before)                          # eval does not update


def test_running_stats_momentum():
    x = _correlated(16, 4)
    m = IterNorm(4, group_size=4, momentum=0.1, affine=False).train()
    m(x)
    assert torch.allclose(m.running_mean, 0.1 * x.mean((0, 2, 3)), atol=1e-6)


def test_gradcheck():
    m = IterNorm(4, group_size=2, T=3).double().train()
    x = torch.randn(2, 4, 2, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: m(t), (x,))


def test_remainder_group():
    """C = 10 with group size 4: groups of 4, 4 and a remainder group of 2 (official FlexGroup variant)."""
    m = IterNorm(10, group_size=4, T=20, affine=False).double()
    assert [(g, d) for g, d, _ in m.parts] == [(2, 4), (1, 2)]
    assert m.running_wm.shape == (2, 4, 4) and m.running_wm_rest.shape == (1, 2, 2)
    x = _correlated(32, 10, dtype=torch.float64)
    y = m(x)
    cov = _channel_cov(y)
    for sl in (slice(0, 4), slice(4, 8), slice(8, 10)):
        assert torch.allclose(cov[sl, sl], torch.eye(sl.stop - sl.start, dtype=torch.float64), atol=1e-4)
    assert cov[0, 5].abs() > 1e-2                                     # groups are whitened independently
    alone = IterNorm(2, group_size=2, T=20, affine=False).double()
    assert torch.allclose(y[:, 8:], alone(x[:, 8:].contiguous()), atol=1e-8)


def test_small_layer_is_one_group():
    m = IterNorm(16)                                                  # group size 64 > C: one group of 16
    assert m.group_size == 16 and m.running_wm.shape == (1, 16, 16)


def test_affine_defaults_and_grad():
    m = create_block("iternorm", 8, group_size=4)
    assert torch.equal(m.weight, torch.ones(8)) and torch.equal(m.bias, torch.zeros(8))
    x = torch.randn(4, 8, 3, 3, requires_grad=True)
    (m(x) * torch.randn(4, 8, 3, 3)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and m.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kw", [{"group_size": 0}, {"T": 0}, {"momentum": 0.0}, {"momentum": 1.5}, {"eps": 0.0}])
def test_bad_options(kw):
    with pytest.raises(ConfigError):
        create_block("iternorm", 8, **kw)


@pytest.mark.parametrize("train", [True, False])
def test_fx_traceable(train):
    m = IterNorm(10, group_size=4).train(train)
    x = torch.randn(4, 10, 3, 3)
    ref = IterNorm(10, group_size=4).train(train)(x)
    traced = torch.fx.symbolic_trace(m)
    assert torch.allclose(traced(x), ref, atol=1e-6)


def test_in_resnet():
    m = create_model("resnet20", num_classes=3, in_chans=1, norm="iternorm(group_size=8)")
    y = m(torch.randn(4, 1, 16, 16))
    assert y.shape == (4, 3)
    assert sum(isinstance(mod, IterNorm) for mod in m.modules()) > 10


def test_too_many_iterations_are_refused():
    with pytest.raises(ConfigError, match="T = 1000 Newton iterations is more than 100"):
        IterNorm(4, T=1000)
