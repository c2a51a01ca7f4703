"""SpaRTAN (S024): SMixer, wave-based CMixer, the block, and the backbone at the official configuration.

Hand-computed tiny cases (the ``x + gamma (x - GAP x)`` step, the argmax gather, the complex channel-pair multiply
against real arithmetic), functional re-computations of whole modules from their weights, the grouping flip per
stage, exact parameter counts against a closed-form count of the official modules, MACs (slow), the small-input
variant and bf16 autocast (the complex multiply must stay in float32).
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.blocks.common.layer_scale import LayerScale
from blockzoo.blocks.mixers.spartan import CMixer, PairComplexMul, SMixer, official_init
from blockzoo.models.spartan import (
    OFFICIAL_DROP_PATH_RATE,
    SPARTAN_CONFIG,
    SpaRTANBlock,
    SpaRTANDownsample,
    SpaRTANStem,
    spartan_entry,
)
from blockzoo.registry import IncompatibleBlockError, create_block, create_model, get_model_spec


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ------------------------------------------------------------------------ closed-form counts of the official code
def official_smixer_params(c: int, grouped: bool) -> int:
    h = c // 2
    g = h if grouped else 1
    convs = 3 * 9 * h * h // g + 2 * (2 * h)                 # h_conv, l_conv[0], l_conv[1] (no bias) + two BNs
    se = 2 * (h * (h // 4) + h // 4 + (h // 4) * h + h)      # SELayer(h, h // 4) x 2
    return (c * h + h) + h + convs + se + (c * c + c)        # proj_in, gamma, ..., proj_out


def official_cmixer_params(c: int, r: int, grouped: bool) -> int:
    n = r * c
    g = c if grouped else n
    se = n * (c // 4) + c // 4 + (c // 4) * n + n            # SELayer(n, c // 4)
    return 2 * (c * n + n) + n + (9 * n * n // g + 2 * n) + se + (n * c + c)   # theta, proj, complex, conv, ...


def official_spartan_params(num_classes: int = 1000, in_chans: int = 3) -> int:
    dims, depths, ratios = (32, 64, 128, 256), (3, 3, 12, 2), (4, 4, 2, 2)
    total = in_chans * 16 * 9 + 2 * 16 + 16 * 32 * 9 + 2 * 32                 # stem
    for i, (c, d, r) in enumerate(zip(dims, depths, ratios)):
        if i:
            total += dims[i - 1] * c * 4 + 2 * c                              # 2x2 conv + BN
        block = 2 * 2 * c + 2 * c + official_smixer_params(c, i >= 2) + official_cmixer_params(c, r, i >= 2)
        total += d * block                                                    # 2 norms, 2 layer scales, mixers
    return total + 256 * num_classes + num_classes


# ------------------------------------------------------------------------------------------------------ SMixer
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


# ------------------------------------------------------------------------------------------------------ CMixer
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


def _pair_ref(x: torch.Tensor, wt: torch.Tensor) -> torch.Tensor:
    """Real arithmetic: (a + ib)(p + iq) = (ap - bq) + i(aq + bp) on channel pairs (2k, 2k+1)."""
    a, b = x[:, 0::2], x[:, 1::2]
    p, q = wt[:, 0].view(1, -1, 1, 1), wt[:, 1].view(1, -1, 1, 1)
    out = torch.empty_like(x)
    out[:, 0::2] = a * p - b * q
    out[:, 1::2] = a * q + b * p
    return out


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


# ------------------------------------------------------------------------------------------------------- block
def test_block_order():
    """x + ls1 * mixer(gn1(x)), then + ls2 * cmixer(gn2(.)); GroupNorm(1) normalises over (C, H, W)."""
    torch.manual_seed(7)
    c = 8
    gn = lambda ch: nn.GroupNorm(1, ch, eps=1e-6)  # noqa: E731
    blk = SpaRTANBlock(c, mixer=nn.Tanh(), norm_layer=gn, act_layer=nn.GELU, mlp_ratio=2, ls_init_value=0.5)
    blk.eval()
    with torch.no_grad():
        blk.norm1.weight.uniform_(0.5, 1.5)
        blk.norm2.bias.uniform_(-1, 1)
        blk.ls2.gamma.uniform_(-1, 1)
    x = torch.randn(2, c, 4, 3)

    def gn_ref(norm, t):
        mu = t.mean((1, 2, 3), keepdim=True)
        var = t.var((1, 2, 3), unbiased=False, keepdim=True)
        return (t - mu) / torch.sqrt(var + 1e-6) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)

    y1 = x + 0.5 * torch.tanh(gn_ref(blk.norm1, x))
    y2 = y1 + blk.ls2.gamma.view(1, -1, 1, 1) * blk.cmixer(gn_ref(blk.norm2, y1))
    torch.testing.assert_close(blk(x), y2, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------- backbone
def test_grouping_flip_per_stage():
    m = create_model("spartan")
    m1 = create_model("spartan", dense_stages=1)
    assert [len(s.blocks) for s in m.stages] == [3, 3, 12, 2]
    for i, stage in enumerate(m.stages):
        c = (32, 64, 128, 256)[i]
        for blk in stage.blocks:
            assert isinstance(blk, SpaRTANBlock) and isinstance(blk.mixer, SMixer)
            sm, cm = blk.mixer, blk.cmixer
            assert sm.grouped == cm.grouped == (i >= 2)
            assert sm.h_conv.conv.groups == sm.l_conv[1].conv.groups == (c // 2 if i >= 2 else 1)
            assert cm.expand_ratio == (4, 4, 2, 2)[i]
            assert cm.conv.conv.groups == (c if i >= 2 else cm.expand_ratio * c)
            assert isinstance(blk.norm1, nn.GroupNorm) and blk.norm1.num_groups == 1 and blk.norm1.eps == 1e-6
            assert isinstance(blk.ls1, LayerScale) and blk.ls1.init_value == 1e-5
    assert [s.blocks[0].mixer.grouped for s in m1.stages] == [False, True, True, True]
    assert [s.blocks[0].cmixer.grouped for s in m1.stages] == [False, True, True, True]
    # swapping the mixer keeps the per-stage kwargs away from it
    mm = create_model("spartan", mixer="dwconv")
    assert mm.stages[3].blocks[0].cmixer.grouped and mm.stages[3].blocks[0].mixer.groups == 256


def test_stem_and_downsample():
    m = create_model("spartan")
    s = create_model("spartan_small")
    assert isinstance(m.stem, SpaRTANStem) and m.stem[0].stride == (2, 2) and m.stem[3].stride == (2, 2)
    assert [m.stem[k].out_channels for k in (0, 3)] == [16, 32] and m.stem[0].bias is None
    assert isinstance(m.stem[2], nn.GELU) and isinstance(m.stem[5], nn.GELU) and m.stem[1].eps == 1e-6
    assert s.stem[0].stride == (1, 1) and s.stem[3].stride == (1, 1)
    for i in (1, 2, 3):
        ds = m.stages[i].downsample
        assert isinstance(ds, SpaRTANDownsample) and ds[0].kernel_size == (2, 2) and ds[0].stride == (2, 2)
        assert ds[0].bias is None and isinstance(ds[2], nn.SiLU) and ds[1].eps == 1e-6
    assert isinstance(m.stages[0].downsample, nn.Identity)
    assert m.feature_sizes == [(64, 64), (32, 32), (16, 16), (8, 8)]        # 256 px, the official resolution
    assert isinstance(m.head_pre, nn.Identity) and m.fc.in_features == 256


def test_param_count_official():
    m = create_model("spartan")
    s = create_model("spartan_small")
    assert n_params(m) == official_spartan_params() == 3_820_296 == get_model_spec("spartan").reference[
        "params_1000cls"]
    assert abs(n_params(m) - 3.8e6) < 0.05e6                 # paper: "3.8M" (one decimal); +0.53%
    assert n_params(s) == official_spartan_params(10) == get_model_spec("spartan_small").reference["params_3ch_10cls"]
    # the per-stage grouping matters: all-dense would be much larger
    dense = create_model("spartan", dense_stages=4)
    assert n_params(dense) > 5e6


def test_official_drop_path_schedule():
    m = create_model("spartan", drop_path_rate=OFFICIAL_DROP_PATH_RATE)
    torch.testing.assert_close(torch.tensor(m.drop_path_rates), torch.tensor([0.1 * k / 20 for k in range(20)]),
                               rtol=0, atol=1e-12)


def test_init_values():
    torch.manual_seed(8)
    m = create_model("spartan_small", num_classes=10)
    blk = m.stages[2].blocks[0]
    assert torch.all(blk.mixer.gamma == 1e-5) and torch.all(blk.ls2.gamma == 1e-5)
    w = blk.cmixer.theta.weight                             # 128 -> 256 1x1: std sqrt(2 / 256)
    assert abs(w.std().item() / math.sqrt(2 / 256) - 1) < 0.05
    assert abs(m.fc.weight.std().item() / 0.02 - 1) < 0.1 and torch.all(m.fc.bias == 0)
    assert abs(m.stem[0].weight.std().item() / math.sqrt(2 / (9 * 16)) - 1) < 0.2


def test_small_forward_backward():
    torch.manual_seed(9)
    m = create_model("spartan_small", in_chans=1, img_size=28)
    assert m.feature_sizes == [(28, 28), (14, 14), (7, 7), (3, 3)]
    x = torch.randn(2, 1, 28, 28)
    m.train()
    y = m(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    y.sum().backward()
    assert [n for n, p in m.named_parameters() if p.grad is None] == []
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_bf16_autocast_model():
    torch.manual_seed(10)
    m = create_model("spartan_small", in_chans=1, img_size=28).eval()
    dtypes = []
    for mod in m.modules():
        if isinstance(mod, PairComplexMul):
            mod.register_forward_hook(lambda mod, inp, out: dtypes.append(inp[0].dtype))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        ref = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yb = m(x)
    assert len(dtypes) == 40 and set(dtypes[20:]) == {torch.bfloat16}
    assert torch.isfinite(yb.float()).all()
    # bf16 autocast stays close to fp32 (logits are small at init; compare relative to their scale)
    assert (yb.float() - ref).abs().max() <= 0.1 * ref.abs().max() + 1e-3
    # a model converted to bf16 (no autocast) also runs: the wave step casts back to the input dtype
    with torch.no_grad():
        assert m.bfloat16()(x.bfloat16()).dtype == torch.bfloat16


def test_entry_options():
    m = spartan_entry("x", SPARTAN_CONFIG)(num_classes=5, stem="small", act="silu")
    assert m.feature_sizes[0] == (32, 32) and m.fc.out_features == 5
    blk = m.stages[0].blocks[0]
    assert isinstance(blk.mixer.h_conv.act, nn.SiLU) and isinstance(blk.cmixer.theta_act, nn.SiLU)
    assert isinstance(m.stem[2], nn.SiLU)
    with pytest.raises(ValueError, match="dense_stages"):
        create_model("spartan", dense_stages=5)


@pytest.mark.slow
def test_macs():
    from blockzoo.profile.counting import count_macs
    m = create_model("spartan")
    ref = get_model_spec("spartan").reference
    macs = {s: count_macs(m, (3, s, s)).macs for s in (224, 256)}
    assert macs[224] == ref["macs_224"] == 799_589_888
    assert macs[256] == ref["macs_256"] == 1_044_147_968
    assert round(macs[256] / 1e9, 1) == 1.0                    # paper: "approximately 1.0 GFLOPs"
