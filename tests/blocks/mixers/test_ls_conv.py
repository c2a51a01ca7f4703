"""blockzoo.blocks.mixers.ls_conv: SKA vs a naive loop, interleaved kernel sharing, gradients, LKP / LSConv (S006)."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn as nn

from blockzoo import create_block
from blockzoo.blocks.mixers.ls_conv import LKP, LSConv, ska, ska_unfold
from blockzoo.registry import IncompatibleBlockError
from helpers import _randomize_bn


def naive_ska(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The official Triton kernel's formula, one output element at a time."""
    n, c, h, wd = x.shape
    wc, k = w.shape[1], math.isqrt(w.shape[2])
    p = (k - 1) // 2
    xs, ws = x.tolist(), w.tolist()
    out = torch.zeros(n, c, h, wd, dtype=torch.float64)
    for ni, ci, hi, wi in itertools.product(range(n), range(c), range(h), range(wd)):
        s = 0.0
        for kh, kw in itertools.product(range(k), range(k)):
            hh, ww = hi + kh - p, wi + kw - p
            if 0 <= hh < h and 0 <= ww < wd:
                s += xs[ni][ci][hh][ww] * ws[ni][ci % wc][kh * k + kw][hi][wi]
        out[ni, ci, hi, wi] = s
    return out


@pytest.mark.parametrize("c,wc,ks", [(6, 2, 3), (4, 4, 3), (5, 2, 3), (3, 1, 5)])
def test_ska_matches_naive_loop(c, wc, ks):
    x = torch.randn(2, c, 4, 5, dtype=torch.float64)
    w = torch.randn(2, wc, ks * ks, 4, 5, dtype=torch.float64)
    ref = naive_ska(x, w)
    torch.testing.assert_close(ska(x, w), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ska_unfold(x, w), ref, rtol=1e-12, atol=1e-12)


def test_ska_interleaved_sharing():
    """C = 4, wc = 2: kernel 0 is the identity (centre tap 1), kernel 1 is zero. Interleaved sharing (c % wc) keeps
    channels 0 and 2 and zeroes 1 and 3; contiguous sharing (c // (C / wc)) would keep 0 and 1 instead."""
    x = torch.randn(1, 4, 3, 3)
    w = torch.zeros(1, 2, 9, 3, 3)
    w[:, 0, 4] = 1.0
    out = ska(x, w)
    assert torch.equal(out[:, 0], x[:, 0]) and torch.equal(out[:, 2], x[:, 2])
    assert torch.equal(out[:, 1], torch.zeros_like(x[:, 1])) and torch.equal(out[:, 3], torch.zeros_like(x[:, 3]))
    contiguous = torch.stack([x[:, 0], x[:, 1], torch.zeros_like(x[:, 2]), torch.zeros_like(x[:, 3])], 1)
    assert not torch.allclose(out, contiguous)
    # a shifted kernel: tap (kh, kw) = (0, 0) reads x[h - 1, w - 1] (zero padding at the border)
    w = torch.zeros(1, 1, 9, 3, 3)
    w[:, 0, 0] = 1.0
    out = ska(x, w)
    assert torch.equal(out[..., 1:, 1:], x[..., :-1, :-1])
    assert torch.equal(out[..., 0, :], torch.zeros(1, 4, 3)) and torch.equal(out[..., :, 0], torch.zeros(1, 4, 3))


@pytest.mark.parametrize("c,wc", [(6, 2), (5, 2)])
def test_ska_gradcheck(c, wc):
    x = torch.randn(2, c, 3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, wc, 9, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ska, (x, w))
    # only one input needing a gradient
    w2 = w.detach()
    assert torch.autograd.gradcheck(lambda a: ska(a, w2), (x,))


def test_ska_mixed_dtype_and_errors():
    x = torch.randn(1, 4, 3, 3, dtype=torch.bfloat16)
    w = torch.randn(1, 2, 9, 3, 3)
    assert ska(x, w).dtype == torch.float32
    with pytest.raises(ValueError, match="k\\*k"):
        ska(torch.randn(1, 4, 3, 3), torch.randn(1, 2, 8, 3, 3))
    with pytest.raises(ValueError, match="spatial size"):
        ska(torch.randn(1, 4, 3, 3), torch.randn(1, 2, 9, 3, 4))
    with pytest.raises(ValueError, match="N, C, H, W"):
        ska(torch.randn(4, 3, 3), torch.randn(1, 2, 9, 3, 3))


def test_lkp_shape_and_groupnorm():
    lkp = LKP(32).eval()
    w = lkp(torch.randn(2, 32, 6, 5))
    assert w.shape == (2, 4, 9, 6, 5)          # (N, C / groups, sks^2, H, W)
    # GroupNorm with one group per dynamic kernel (its 9 taps over all positions), affine 1 / 0 at init
    flat = w.reshape(2, 4, -1)
    torch.testing.assert_close(flat.mean(-1), torch.zeros(2, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.var(-1, unbiased=False), torch.ones(2, 4), atol=1e-3, rtol=0)
    # parameters: cv1 32*16 + BN 32, cv2 16*49 + 32, cv3 16*16 + 32, cv4 16*36 + 36, GroupNorm 2*36
    assert sum(p.numel() for p in lkp.parameters()) == 544 + 816 + 288 + 612 + 72
    assert sum(p.numel() for p in LSConv(32).parameters()) == 2332 + 64
    assert [m.kernel_size for m in (lkp.cv1.c, lkp.cv2.c, lkp.cv3.c, lkp.cv4)] == [(1, 1), (7, 7), (1, 1), (1, 1)]
    assert lkp.cv2.c.groups == 16 and lkp.norm.num_groups == 4


def test_lsconv_residual():
    m = LSConv(16).eval()
    x = torch.randn(2, 16, 5, 4)
    with torch.no_grad():
        expected = m.bn(ska(x, m.lkp(x))) + x
        torch.testing.assert_close(m(x), expected)
        nn.init.zeros_(m.bn.weight)
        nn.init.zeros_(m.bn.bias)
        assert torch.equal(m(x), x)              # the mixer's output contains x itself
    assert m.includes_residual
    branch = create_block("ls_conv", 16, residual=False)
    assert not branch.includes_residual
    branch.load_state_dict(LSConv(16).state_dict())
    full = LSConv(16)
    full.load_state_dict(branch.state_dict())
    branch.eval(), full.eval()
    with torch.no_grad():
        torch.testing.assert_close(full(x), branch(x) + x)


def test_lkp_reparameterize():
    m = LSConv(16)
    _randomize_bn(m)
    m.eval()
    x = torch.randn(2, 16, 5, 4)
    with torch.no_grad():
        y0 = m(x)
        m.lkp.reparameterize()
        m.lkp.reparameterize()                   # idempotent
        assert all(type(getattr(m.lkp, n)) is nn.Conv2d for n in ("cv1", "cv2", "cv3"))
        torch.testing.assert_close(m(x), y0, rtol=1e-5, atol=1e-5)


def test_lsconv_channel_check():
    with pytest.raises(IncompatibleBlockError, match="divisible by groups=8"):
        create_block("ls_conv", 36)
    assert create_block("ls_conv", 36, groups=4)(torch.randn(1, 36, 4, 4)).shape == (1, 36, 4, 4)


def test_lsconv_traces_and_exports(tmp_path):
    """torch.fx keeps ska as one call (its size checks and in-place accumulation are not traced) and gives eager's
    numbers; ONNX export runs the same forward without the autograd.Function and matches in onnxruntime."""
    m = LSConv(16).eval()
    _randomize_bn(m)
    x = torch.randn(2, 16, 7, 5)
    gm = torch.fx.symbolic_trace(m)
    assert [n.target for n in gm.graph.nodes if n.op == "call_function"].count(ska) == 1
    assert torch.equal(gm(x), m(x))
    pytest.importorskip("onnxruntime")
    from blockzoo.deploy import export_model
    res = export_model(m, tmp_path / "ls_conv.onnx", example=x)
    assert res["ok"], res
