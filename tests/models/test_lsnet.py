"""blockzoo.models.lsnet: the LSNet backbones (S006): exact and deploy counts, re-parameterisation, structure,
attention, MACs."""
from __future__ import annotations

import functools
import itertools
import math

import pytest
import torch
import torch.nn as nn

from blockzoo import create_model
from blockzoo.blocks.attention.se import se_value_divisible
from blockzoo.blocks.mixers.ls_conv import LSConv
from blockzoo.deploy import reparameterize
from blockzoo.models.lsnet import (
    _DEPLOY_PARAMS,
    _MACS,
    _PARAMS,
    CONFIGS,
    LSNetAttention,
    LSNetBlock,
    RepVGGDW,
)
from blockzoo.registry import get_model_spec
from helpers import _randomize_bn


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


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
    lsnet_se = functools.partial(se_value_divisible, divisor=8, round_limit=0.0)   # as LSNet builds its SE
    assert lsnet_se("se(reduction=4)", 48) == ("se", {"reduction": 4, "hidden": 16})   # timm: make_divisible(12, 8)
    assert lsnet_se("se(reduction=4)", 384) == ("se", {"reduction": 4, "hidden": 96})
    assert lsnet_se("eca", 48) == "eca"


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


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS))
def test_macs_224(name):
    from blockzoo.profile import count_macs
    m = create_model(name).eval()
    macs = count_macs(m, (3, 224, 224)).macs
    assert macs == _MACS[name]
    fvcore = macs + _fvcore_norm_macs(m, 224)
    assert round(fvcore / 1e9, 1) == CONFIGS[name][3] / 1e9       # the paper's one-decimal FLOPs
