"""LSNet (S006): SKA vs a naive loop, interleaved kernel sharing, LKP / LSConv, the LSNet backbones' structure and
exact parameter counts, reparameterisation, the small variant, MACs at 224 (slow)."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn as nn

from blockzoo import create_block, create_model
from blockzoo.blocks.mixers.ls_conv import LKP, LSConv, ska, ska_unfold
from blockzoo.deploy import reparameterize
from blockzoo.models.lsnet import (
    _DEPLOY_PARAMS,
    _MACS,
    _PARAMS,
    CONFIGS,
    LSNetAttention,
    LSNetBlock,
    RepVGGDW,
    _se_value,
)
from blockzoo.registry import IncompatibleBlockError, get_model_spec


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


def _randomize_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters (so folding tests are not vacuous)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(0.1 * torch.randn(c, generator=g))


# --------------------------------------------------------------------------------------------------------- SKA
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


# ------------------------------------------------------------------------------------------------ LKP / LSConv
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


# ------------------------------------------------------------------------------------------------- backbones
def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_param_counts(name):
    m = create_model(name)
    n = _n_params(m)
    assert n == _PARAMS[name] == get_model_spec(name).reference["params_1000cls"]
    assert abs(n / CONFIGS[name][2] - 1) <= 0.005       # paper table (one decimal), within 0.5%


@pytest.mark.parametrize("name", list(CONFIGS))
def test_deploy_param_counts(name):
    m = reparameterize(create_model(name))
    assert _n_params(m) == _DEPLOY_PARAMS[name]
    assert abs(_n_params(m) / CONFIGS[name][2] - 1) <= 0.005
    assert not any(isinstance(x, nn.BatchNorm1d) for x in m.modules())
    # only LS conv's BN (after SKA, not foldable) remains
    assert sum(isinstance(x, nn.BatchNorm2d) for x in m.modules()) == sum(isinstance(x, LSConv) for x in m.modules())


def test_reparameterize_keeps_function():
    torch.manual_seed(0)
    m = create_model("lsnet_t_small", num_classes=5, in_chans=1, img_size=28)
    _randomize_bn(m)
    for blk in m.modules():
        if isinstance(blk, LSNetAttention):
            nn.init.normal_(blk.attention_biases, std=0.5)
    m.eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        y0 = m(x)
        y1 = reparameterize(m)(x)
    torch.testing.assert_close(y1, y0, rtol=1e-4, atol=1e-5)
    rep = RepVGGDW(8)
    _randomize_bn(rep)
    rep.eval()
    xx = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(rep.fuse()(xx), rep(xx), rtol=1e-5, atol=1e-5)


def test_block_layout_lsnet_s():
    m = create_model("lsnet_s")
    assert [len(s.blocks) for s in m.stages] == [1, 2, 8, 10]
    assert m.feature_sizes == [(28, 28), (14, 14), (7, 7), (4, 4)]
    for i, stage in enumerate(m.stages):
        for j, blk in enumerate(stage.blocks):
            assert isinstance(blk, LSNetBlock)
            c = m.dims[i]
            assert blk.ffn.pw1.c.out_channels == 2 * c and blk.ffn.pw2.bn.weight.abs().sum() == 0
            if j % 2 == 0:
                assert isinstance(blk.mixer, RepVGGDW) and blk.se.hidden == c // 4
            elif i == 3:
                a = blk.mixer
                assert isinstance(a, LSNetAttention) and isinstance(blk.se, nn.Identity) and blk.mixer_residual
                assert (a.num_heads, a.key_dim, a.d) == (4, 16, c // 4)
                assert a.attention_biases.shape == (4, 16)
            else:
                assert isinstance(blk.mixer, LSConv) and not blk.mixer_residual
    ds = m.stages[2].downsample
    assert (ds[0].c.groups, ds[0].c.stride, ds[1].c.in_channels, ds[1].c.out_channels) == (192, (2, 2), 192, 320)
    assert [m.stem[k].c.out_channels for k in (0, 2, 4)] == [24, 48, 96]


def test_se_rounding_like_timm():
    assert _se_value("se(reduction=4)", 48) == ("se", {"reduction": 4, "hidden": 16})   # timm: make_divisible(12, 8)
    assert _se_value("se(reduction=4)", 384) == ("se", {"reduction": 4, "hidden": 96})
    assert _se_value("eca", 48) == "eca"


def test_mixer_slot_and_residual_rule():
    m = create_model("lsnet_t_small", mixer="dwconv", num_classes=3)
    blk = m.stages[1].blocks[1]
    assert type(blk.mixer).__name__ == "DWConv" and blk.mixer_residual
    blk.eval()
    x = torch.randn(1, 128, 4, 4)
    with torch.no_grad():
        y = x + blk.mixer(x)
        torch.testing.assert_close(blk(x), y + blk.ffn(y))
    m = create_model("lsnet_t_small", mixer="none", num_classes=3)
    blk = m.stages[1].blocks[1].eval()
    with torch.no_grad():
        torch.testing.assert_close(blk(x), x + blk.ffn(x))
    # attention_stages=() puts the mixer slot into stage 3 as well
    m = create_model("lsnet_t_small", attention_stages=())
    assert not any(isinstance(b, LSNetAttention) for b in m.modules())


def test_attention_bias_index_official_order():
    r = 4
    points = list(itertools.product(range(r), range(r)))
    offsets: dict[tuple[int, int], int] = {}
    idxs = []
    for p1 in points:
        for p2 in points:
            off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            offsets.setdefault(off, len(offsets))
            idxs.append(offsets[off])
    a = LSNetAttention(32, key_dim=4, num_heads=2, attn_ratio=2, resolution=r)
    assert torch.equal(a.attention_bias_idxs, torch.tensor(idxs).view(r * r, r * r))
    # a smaller (non-square) map reuses the same offsets -> table entries
    small = a._bias_idxs(2, 3)
    pts = list(itertools.product(range(2), range(3)))
    assert small.tolist() == [[offsets[(abs(p[0] - q[0]), abs(p[1] - q[1]))] for q in pts] for p in pts]
    assert a(torch.randn(1, 32, 2, 3)).shape == (1, 32, 2, 3)
    with pytest.raises(ValueError, match="img_size"):
        a(torch.randn(1, 32, 5, 4))


def test_attention_matches_formula():
    torch.manual_seed(0)
    a = LSNetAttention(8, key_dim=2, num_heads=2, attn_ratio=2, resolution=3).eval()
    _randomize_bn(a)
    nn.init.normal_(a.attention_biases)
    x = torch.randn(1, 8, 3, 3)
    with torch.no_grad():
        q, k, v = a.qkv(x).split([4, 4, 8], 1)
        q = a.dw(q)
        out = []
        for h in range(2):
            qh, kh = q[0, 2 * h:2 * h + 2].flatten(1), k[0, 2 * h:2 * h + 2].flatten(1)
            vh = v[0, 4 * h:4 * h + 4].flatten(1)
            logits = qh.T @ kh / math.sqrt(2) + a.attention_biases[h][a.attention_bias_idxs]
            out.append(vh @ logits.softmax(-1).T)                     # (d_v, N)
        ref = a.proj(torch.cat(out).view(1, 8, 3, 3))
        torch.testing.assert_close(a(x), ref)


def test_input_larger_than_img_size_is_refused():
    m = create_model("lsnet_t_small").eval()         # built for 32 px: stage 3 is 4x4
    with pytest.raises(ValueError, match="img_size"):
        m(torch.randn(1, 3, 64, 64))


def test_small_variant():
    spec = get_model_spec("lsnet_t_small")
    assert _n_params(create_model("lsnet_t_small")) == spec.reference["params_3ch_10cls"] == 11_028_682
    m = create_model("lsnet_t_small", in_chans=1, img_size=28)
    assert _n_params(m) == spec.reference["params_1ch_10cls"]
    assert m.feature_sizes == [(28, 28), (14, 14), (7, 7), (4, 4)]    # = lsnet_t's sizes at 224 px
    m.train()
    x = torch.randn(2, 1, 28, 28)
    y = m(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    y.square().sum().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_drop_path_and_options():
    m = create_model("lsnet_t_small", drop_path_rate=0.1, init="kaiming", num_classes=4)
    assert m.drop_path_rates[0] == 0.0 and m.drop_path_rates[-1] == pytest.approx(0.1)
    # kaiming init keeps the zero-initialised output BNs of the FFNs
    assert all(b.ffn.pw2.bn.weight.abs().sum() == 0 for s in m.stages for b in s.blocks)
    with pytest.raises(ValueError, match="stem"):
        create_model("lsnet_t", stem="patch")
    m.reset_classifier(7, head="avgmax")
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 7)


# ------------------------------------------------------------------------------------------------------- MACs
def _fvcore_norm_macs(model: nn.Module, size: int) -> int:
    """What fvcore's default handles add for norms in eval mode: BatchNorm 2, GroupNorm 5 per element."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        total += inp[0].numel() * (5 if isinstance(mod, nn.GroupNorm) else 2)

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm))]
    with torch.no_grad():
        model(torch.randn(1, 3, size, size))
    for h in hs:
        h.remove()
    return total


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS))
def test_macs_224(name):
    from blockzoo.profile import count_macs
    m = create_model(name).eval()
    macs = count_macs(m, (3, 224, 224)).macs
    assert macs == _MACS[name]
    fvcore = macs + _fvcore_norm_macs(m, 224)
    assert round(fvcore / 1e9, 1) == CONFIGS[name][3] / 1e9       # the paper's one-decimal FLOPs
