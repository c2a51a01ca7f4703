"""blockzoo.blocks.mixers.spartan: SpaRTAN's SMixer, wave-based CMixer and the complex pair multiply (S024)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.blocks.mixers.spartan import CMixer, PairComplexMul, SMixer, official_init
from blockzoo.registry import IncompatibleBlockError, create_block
from helpers import n_params, official_cmixer_params, official_smixer_params


def _se_ref(se: nn.Module, x: torch.Tensor) -> torch.Tensor:
    s = F.relu(F.linear(x.mean((2, 3)), se.fc1.weight, se.fc1.bias))
    return x * torch.sigmoid(F.linear(s, se.fc2.weight, se.fc2.bias))[:, :, None, None]


def _bn_ref(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, 1e-6)


def _randomise(m: nn.Module) -> None:
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
        if hasattr(m, "gamma"):
            m.gamma.uniform_(-1, 1)


def _pair_ref(x: torch.Tensor, wt: torch.Tensor) -> torch.Tensor:
    """Real arithmetic: (a + ib)(p + iq) = (ap - bq) + i(aq + bp) on channel pairs (2k, 2k+1)."""
    a, b = x[:, 0::2], x[:, 1::2]
    p, q = wt[:, 0].view(1, -1, 1, 1), wt[:, 1].view(1, -1, 1, 1)
    out = torch.empty_like(x)
    out[:, 0::2] = a * p - b * q
    out[:, 1::2] = a * q + b * p
    return out


def test_smixer_gap_step():
    torch.manual_seed(0)
    m = create_block("spartan", 8).eval()
    assert m.gamma.shape == (1, 4, 1, 1) and torch.all(m.gamma == 1e-5)
    with torch.no_grad():                        # proj_in picks channels 0..3, gamma = (0.5, 1, 2, -1)
        m.proj_in.weight.zero_()
        m.proj_in.bias.zero_()
        for k in range(4):
            m.proj_in.weight[k, k] = 1.0
        m.gamma.copy_(torch.tensor([0.5, 1.0, 2.0, -1.0]).view(1, 4, 1, 1))
    seen = {}
    m.h_conv.register_forward_pre_hook(lambda mod, inp: seen.setdefault("h", inp[0].clone()))
    m.l_conv.register_forward_pre_hook(lambda mod, inp: seen.setdefault("l", inp[0].clone()))
    x = torch.zeros(1, 8, 1, 2)
    x[0, 0, 0] = torch.tensor([1.0, 3.0])       # mean 2
    x[0, 1, 0] = torch.tensor([4.0, 4.0])       # mean 4
    x[0, 2, 0] = torch.tensor([-1.0, 1.0])      # mean 0
    x[0, 3, 0] = torch.tensor([0.0, 6.0])       # mean 3
    m(x)
    # x + g (x - mean): ch0: 1 + .5(-1) = .5, 3 + .5(1) = 3.5; ch1: 4, 4; ch2: -1 + 2(-1) = -3, 1 + 2 = 3;
    # ch3: 0 - (0 - 3) = 3, 6 - (6 - 3) = 3
    exp = torch.tensor([[0.5, 3.5], [4.0, 4.0], [-3.0, 3.0], [3.0, 3.0]]).view(1, 4, 1, 2)
    torch.testing.assert_close(seen["h"], exp)
    torch.testing.assert_close(seen["l"], exp)


@pytest.mark.parametrize("grouped", [False, True])
def test_smixer_structure_and_params(grouped):
    c, h = 32, 16
    m = create_block("spartan", c, grouped=grouped).eval()
    g = h if grouped else 1
    convs = [m.h_conv.conv, m.l_conv[0].conv, m.l_conv[1].conv]
    assert [cv.dilation for cv in convs] == [(1, 1), (2, 2), (2, 2)]
    assert [cv.padding for cv in convs] == [(1, 1), (2, 2), (2, 2)]
    assert all(cv.groups == g and cv.bias is None and cv.kernel_size == (3, 3) for cv in convs)
    assert isinstance(m.l_conv[0].norm, nn.Identity) and isinstance(m.l_conv[0].act, nn.Identity)
    for u in (m.h_conv, m.l_conv[1]):
        assert isinstance(u.norm, nn.BatchNorm2d) and u.norm.eps == 1e-6 and isinstance(u.act, nn.GELU)
    assert m.h_attn.hidden == m.l_attn.hidden == c // 8
    assert n_params(m) == official_smixer_params(c, grouped)
    # functional re-computation with the module's own weights (layer order, concat order h | l)
    torch.manual_seed(1)
    _randomise(m)
    x = torch.randn(2, c, 7, 5)
    z = F.conv2d(x, m.proj_in.weight, m.proj_in.bias)
    z = z + m.gamma * (z - z.mean((2, 3), keepdim=True))
    hh = F.gelu(_bn_ref(m.h_conv.norm, F.conv2d(z, m.h_conv.conv.weight, padding=1, groups=g)))
    ll = F.conv2d(z, m.l_conv[0].conv.weight, padding=2, dilation=2, groups=g)
    ll = F.gelu(_bn_ref(m.l_conv[1].norm, F.conv2d(ll, m.l_conv[1].conv.weight, padding=2, dilation=2, groups=g)))
    y = F.conv2d(torch.cat([_se_ref(m.h_attn, hh), _se_ref(m.l_attn, ll)], 1), m.proj_out.weight, m.proj_out.bias)
    torch.testing.assert_close(m(x), y, rtol=1e-5, atol=1e-5)


def test_smixer_limits():
    for c in (6, 7, 9):
        with pytest.raises(IncompatibleBlockError, match="8"):
            create_block("spartan", c)
    with pytest.raises(IncompatibleBlockError, match="even channel count >= 8"):
        SMixer(10 - 1)
    assert create_block("spartan", 12)(torch.randn(1, 12, 3, 3)).shape == (1, 12, 3, 3)


def test_cmixer_argmax_gather():
    # C = 4, r = 2: proj repeats the input twice, theta = 2x (first copy) and 3x (second copy), act = ReLU
    m = CMixer(4, expand_ratio=2, act="relu")
    with torch.no_grad():
        for conv, scales in ((m.proj, (1.0, 1.0)), (m.theta, (2.0, 3.0))):
            conv.weight.zero_()
            conv.bias.zero_()
            for k in range(8):
                conv.weight[k, k % 4] = scales[k // 4]
    x = torch.tensor([1.0, 3.0, 2.0, 0.0]).view(1, 4, 1, 1)            # argmax = channel 1
    # w = [1,3,2,0, 1,3,2,0], theta = [2,6,4,0, 3,9,6,0]; w*theta = [2,18,8,0, 3,27,12,0]; w[1]*theta[1] = 18
    exp = torch.tensor([20.0, 36.0, 26.0, 18.0, 21.0, 45.0, 30.0, 18.0]).view(1, 8, 1, 1)
    torch.testing.assert_close(m.aggregate(x), exp)
    # random weights, GELU: per-pixel loop with python indexing
    torch.manual_seed(2)
    m = CMixer(8, expand_ratio=3)
    x = torch.randn(2, 8, 3, 4)
    w = F.conv2d(x, m.proj.weight, m.proj.bias)
    t = F.gelu(F.conv2d(x, m.theta.weight, m.theta.bias))
    exp = torch.empty_like(w)
    for b in range(2):
        for i in range(3):
            for j in range(4):
                k = int(torch.argmax(x[b, :, i, j]))
                assert k < 8
                exp[b, :, i, j] = w[b, :, i, j] * t[b, :, i, j] + w[b, k, i, j] * t[b, k, i, j]
    torch.testing.assert_close(m.aggregate(x), exp)


def test_complex_pair_multiply():
    m = PairComplexMul(2)
    assert m.weight.shape == (2, 2)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 1.0]]))
    x = torch.tensor([1.0, 2.0, 5.0, -7.0]).view(1, 4, 1, 1)
    # (1 + 2i)(3 + 4i) = -5 + 10i; (5 - 7i) * i = 7 + 5i
    torch.testing.assert_close(m(x), torch.tensor([-5.0, 10.0, 7.0, 5.0]).view(1, 4, 1, 1))
    torch.manual_seed(3)
    m = PairComplexMul(6)
    x = torch.randn(2, 12, 3, 5, requires_grad=True)
    y = m(x)
    torch.testing.assert_close(y, _pair_ref(x, m.weight))
    g = torch.randn_like(y)
    (y * g).sum().backward()
    wt = m.weight.detach().clone().requires_grad_()
    xr = x.detach().clone().requires_grad_()
    (_pair_ref(xr, wt) * g).sum().backward()
    torch.testing.assert_close(m.weight.grad, wt.grad)
    torch.testing.assert_close(x.grad, xr.grad)


def test_complex_multiply_runs_in_fp32_under_bf16_autocast():
    torch.manual_seed(4)
    m = PairComplexMul(64)
    x = torch.randn(2, 128, 6, 5).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert y.dtype == torch.bfloat16
    exp = _pair_ref(x.float(), m.weight.detach()).bfloat16()              # fp32 arithmetic, one final rounding
    assert torch.equal(y, exp)
    low = _pair_ref(x, m.weight.detach().bfloat16())                      # what bf16 arithmetic would give
    assert not torch.equal(low, exp)                                       # (so the check above has power)
    # inside a CMixer under autocast: the wave module sees bf16 and computes in fp32
    cm = CMixer(16, expand_ratio=4).eval()
    seen = {}
    cm.wave.register_forward_hook(lambda mod, inp, out: seen.update(inp=inp[0].detach(), out=out.detach()))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        cm(torch.randn(2, 16, 5, 4))
    assert seen["inp"].dtype == torch.bfloat16
    assert torch.equal(seen["out"], _pair_ref(seen["inp"].float(), cm.wave.weight.detach()).to(seen["out"].dtype))


@pytest.mark.parametrize("grouped,r", [(False, 4), (True, 2)])
def test_cmixer_structure_and_params(grouped, r):
    c = 16
    m = create_block("spartan_cmixer", c, expand_ratio=r, grouped=grouped).eval()
    n = r * c
    assert m.theta.out_channels == m.proj.out_channels == n and m.proj_out.out_channels == c
    assert m.conv.conv.groups == (c if grouped else n) and m.conv.conv.bias is None
    assert m.conv.norm.eps == 1e-6 and m.attn.hidden == c // 4 and m.wave.weight.shape == (n // 2, 2)
    assert n_params(m) == official_cmixer_params(c, r, grouped)
    torch.manual_seed(5)
    _randomise(m)
    x = torch.randn(2, c, 5, 6)
    feat = _pair_ref(m.aggregate(x), m.wave.weight)
    z = F.gelu(_bn_ref(m.conv.norm, F.conv2d(feat, m.conv.conv.weight, padding=1, groups=m.conv.conv.groups)))
    y = F.conv2d(_se_ref(m.attn, z), m.proj_out.weight, m.proj_out.bias)
    torch.testing.assert_close(m(x), y, rtol=1e-5, atol=1e-5)


def test_cmixer_limits():
    with pytest.raises(ValueError, match="integer expand_ratio"):
        CMixer(16, expand_ratio=1.5)
    with pytest.raises(IncompatibleBlockError, match="even"):
        CMixer(5, expand_ratio=1)


def test_official_init():
    torch.manual_seed(6)
    m = SMixer(256, grouped=False)
    official_init(m)
    w = m.h_conv.conv.weight                         # 128 -> 128, 3x3, groups 1: fan_out = 9 * 128
    assert abs(w.std().item() / math.sqrt(2 / (9 * 128)) - 1) < 0.05
    m = SMixer(256, grouped=True)
    official_init(m)
    w = m.h_conv.conv.weight                         # groups 128: fan_out = 9 * 128 / 128 = 9
    assert abs(w.std().item() / math.sqrt(2 / 9) - 1) < 0.1
    assert torch.all(m.proj_in.bias == 0) and torch.all(m.h_conv.norm.weight == 1)


def test_real_form_of_the_pair_multiply_and_onnx_export(tmp_path):
    """The real-arithmetic form (what ONNX export runs: ONNX has no complex type) equals the complex product, and the
    exported CMixer runs in onnxruntime with eager's numbers."""
    m = PairComplexMul(6)
    x = torch.randn(2, 12, 5, 3)
    torch.testing.assert_close(m.real_product(x), m(x), rtol=1e-6, atol=1e-6)
    pytest.importorskip("onnxruntime")
    from blockzoo.deploy import export_model
    res = export_model(CMixer(8).eval(), tmp_path / "cmixer.onnx", example=torch.randn(2, 8, 6, 5))
    assert res["ok"], res


def test_cmixer_fx_trace():
    m = CMixer(8).eval()
    x = torch.randn(2, 8, 6, 5)
    assert torch.equal(torch.fx.symbolic_trace(m)(x), m(x))
