"""blockzoo.models.spartan: the SpaRTAN block and backbone at the official configuration (S024)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from blockzoo.blocks.common.layer_scale import LayerScale
from blockzoo.blocks.mixers.spartan import PairComplexMul, SMixer
from blockzoo.models.spartan import (
    OFFICIAL_DROP_PATH_RATE,
    SPARTAN_CONFIG,
    SpaRTANBlock,
    SpaRTANDownsample,
    SpaRTANStem,
    spartan_entry,
)
from blockzoo.registry import create_model, get_model_spec
from helpers import n_params, official_cmixer_params, official_smixer_params


def official_spartan_params(num_classes: int = 1000, in_chans: int = 3) -> int:
    dims, depths, ratios = (32, 64, 128, 256), (3, 3, 12, 2), (4, 4, 2, 2)
    total = in_chans * 16 * 9 + 2 * 16 + 16 * 32 * 9 + 2 * 32                 # stem
    for i, (c, d, r) in enumerate(zip(dims, depths, ratios)):
        if i:
            total += dims[i - 1] * c * 4 + 2 * c                              # 2x2 conv + BN
        block = 2 * 2 * c + 2 * c + official_smixer_params(c, i >= 2) + official_cmixer_params(c, r, i >= 2)
        total += d * block                                                    # 2 norms, 2 layer scales, mixers
    return total + 256 * num_classes + num_classes


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
