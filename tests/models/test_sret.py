"""blockzoo.models.sret: exact parameter counts (= the official definition's), MACs by hand and at 224 px, the
slicing's saving, the layout (stem, position embedding, pooling, recursion), the official init, the small variant."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from blockzoo import ConfigError, create_model
from blockzoo.blocks.mixers.sret import SReTBlock
from blockzoo.models.sret import CONFIGS
from blockzoo.registry import get_model_spec
from helpers import check_macs_224, check_param_count, count_macs, fit_losses, meta_model, meta_params, n_params

# name -> (exact count = the official SReT.py model built with torch, paper/README count, tolerance of its rounding)
PARAMS = {
    "sret_t": (4_755_979, 4.8e6, 0.01),
    "sret_lt": (4_988_024, 5.0e6, 0.01),
    "sret_s": (20_899_692, 20.9e6, 0.001),
    "sret_t_wo_slice": (4_755_979, 4.8e6, 0.01),
    "sret_s_wo_slice": (20_899_692, 20.9e6, 0.001),
}
GROUPS = ((8, 2), (4, 1), (1,))
SLICED = {n: GROUPS if CONFIGS[n][4] else ((1,),) * 3 for n in CONFIGS}


def sret_params_by_hand(dims, mlp, nll, in_chans=3, classes=1000, img=224, strides=(2, 2, 2)) -> int:
    """Stem (3 conv+BN) + position embedding + per stage: depthwise pooling, recursive blocks (one shared block of
    4 LRC scalars + one NLL per loop) + head LayerNorm + classifier."""
    c0 = dims[0]
    stem = sum(ci * co * 9 + co + 2 * co for ci, co in ((in_chans, c0 // 2), (c0 // 2, c0), (c0, c0)))
    h = img
    for s in strides:
        h = (h - 1) // s + 1
    total = stem + h * h * c0
    for i, (c, r) in enumerate(zip(dims, (2, 5, 3))):
        if i:
            total += c * 9 + c                                     # 3x3 depthwise conv, multiplier 2, bias
        hid, nh = int(c * mlp), int(c * nll)
        block = 2 * 2 * c + (3 * c * c + 3 * c) + (c * c + c) + (c * hid + hid) + (hid * c + c) + 4
        proj = 2 * c + (c * nh + nh) + (nh * c + c) + 2
        total += r * (block + 2 * proj)
    return total + 2 * dims[-1] + dims[-1] * classes + classes


def sret_macs_by_hand(dims, mlp, nll, groups, img=224, strides=(2, 2, 2), in_chans=3, classes=1000) -> int:
    """Convs + Linears + the attention products (2 N^2 C / G per loop), as count_macs counts them."""
    chans, h, total = (in_chans, dims[0] // 2, dims[0], dims[0]), img, 0
    for i, s in enumerate(strides):
        h = (h - 1) // s + 1
        total += h * h * chans[i + 1] * chans[i] * 9
    for i, (c, r, g) in enumerate(zip(dims, (2, 5, 3), groups)):
        if i:
            h = (h - 1) // 2 + 1
            total += h * h * c * 9
        n = h * h
        for loop in range(2):
            slices = g[min(loop, len(g) - 1)]
            per = -(-n // slices)
            attn = 2 * slices * per * per * c                      # padded slices: G * ceil(N / G)^2 pairs
            total += r * (4 * n * c * c + attn + 2 * n * c * int(c * mlp) + 2 * n * c * int(c * nll))
    return total + dims[-1] * classes


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_param_counts(name):
    check_param_count(name, *PARAMS[name])
    dims, mlp, nll = CONFIGS[name][:3]
    assert meta_params(name) == sret_params_by_hand(dims, mlp, nll)


def test_macs_by_hand_small():
    m = create_model("sret_t_small")
    assert count_macs(m, (1, 28, 28)) == sret_macs_by_hand((64, 128, 256), 3.6, 1.0, GROUPS, img=28, strides=(2, 1, 1),
                                                           in_chans=1, classes=10)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PARAMS))
def test_macs_224(name):
    """MACs at 224 px equal the hand count and the registered one, within 3% of the paper (README FLOPs)."""
    dims, mlp, nll, _, _, _, paper = CONFIGS[name]
    assert check_macs_224(name, paper) == sret_macs_by_hand(dims, mlp, nll, SLICED[name])


@pytest.mark.slow
def test_slicing_saves_10_to_30_percent():
    """Paper abstract: sliced group self-attention reduces the cost by 10-30% (README: SReT-T 1.4 -> 1.1 G, SReT-S
    4.7 -> 4.2 G). Measured with count_macs at 224 px: the whole model and its attention products alone."""
    from blockzoo.profile import count_macs as macs_report
    for sliced, full, lo, hi in (("sret_t", "sret_t_wo_slice", 0.18, 0.19), ("sret_s", "sret_s_wo_slice", 0.10, 0.11)):
        a, b = (macs_report(create_model(n), (3, 224, 224)) for n in (sliced, full))
        saving = 1 - a.macs / b.macs
        assert 0.10 <= saving <= 0.30 and lo < saving < hi, (sliced, saving)
        attn = [sum(v for k, v in r.macs_by_op.items() if "scaled_dot_product" in k or "bmm" in k) for r in (a, b)]
        assert 0 < attn[0] < 0.5 * attn[1]      # the attention products alone: more than halved
        assert b.macs - a.macs == attn[1] - attn[0]   # nothing else changes


def test_layout_and_feature_sizes():
    m = meta_model("sret_t")
    assert [f["reduction"] for f in m.feature_info] == [8, 16, 32]
    assert [f["num_chs"] for f in m.feature_info] == [64, 128, 256]
    assert [len(s.blocks) for s in m.stages] == [2, 5, 3]
    blk = m.stages[0].blocks[0]
    assert isinstance(blk, SReTBlock) and blk.loops == 2 and len(blk.nlls) == 2
    assert blk.block.mixer.attn.groups == (8, 2) and m.stages[2].blocks[0].block.mixer.attn.groups == (1,)
    assert blk.block.mlp.fc1.out_features == 230 and blk.nlls[0].mlp.fc1.out_features == 64     # 3.6 x 64, 1 x 64
    ds = m.stages[1].downsample
    assert (ds.in_channels, ds.out_channels, ds.groups, ds.kernel_size, ds.stride) == (64, 128, 64, (3, 3), (2, 2))
    assert tuple(m.stem.pos_embed.shape) == (1, 28 * 28, 64)
    s = meta_model("sret_s")
    blk = s.stages[1].blocks[0]
    assert blk.block.mixer.attn.num_heads == 6 and blk.nlls[0].mlp.fc1.out_features == 504      # NLL ratio 2
    small = create_model("sret_t_small")
    assert small.feature_sizes == [(14, 14), (7, 7), (4, 4)] and small.in_chans == 1
    assert n_params(small) == get_model_spec("sret_t_small").reference["params_1ch_10cls"] == 4_463_341
    assert small.no_weight_decay() == {"stem.pos_embed"}


def test_position_embedding_resampled_to_the_input():
    """The embedding is added on the built grid as it is and resampled bicubically for another input size."""
    m = create_model("sret_t_small", num_classes=3).eval()
    stem = m.stem
    with torch.no_grad():
        stem.pos_embed.normal_()
        x = torch.randn(2, 1, 28, 28)
        want = stem.convs(x) + stem.pos_embed.transpose(1, 2).reshape(1, 64, 14, 14)
        assert torch.allclose(stem(x), want, atol=1e-6)
        assert stem(torch.randn(1, 1, 32, 24)).shape == (1, 64, 16, 12)
        assert m(torch.randn(1, 1, 32, 32)).shape == (1, 3)


def test_official_init():
    """PyTorch's default init for convs and Linears (official: only the LayerNorms are set), LRC scalars 1,
    trunc-normal(0.02) position embedding."""
    torch.manual_seed(0)
    m = create_model("sret_t")
    for name, mod in m.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            fan_in = mod.weight[0].numel()
            assert mod.weight.abs().max() <= fan_in ** -0.5 + 1e-7, name     # kaiming_uniform(a=sqrt(5)) bound
    assert all(torch.equal(p, torch.ones_like(p)) for n, p in m.named_parameters() if n.endswith("lrc"))
    assert abs(m.stem.pos_embed.std().item() - 0.02) < 0.002


def test_mixers_and_options():
    m = create_model("sret_t_small", mixer="pool", num_classes=4)      # any mixer replaces the sliced attention
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 4)
    loops3 = create_model("sret_t_small", block_kwargs={"loops": 3, "nll_ratio": 1.0})
    base = create_model("sret_t_small")
    one_nll_each = sum(n_params(b.nlls[0]) for s in base.stages for b in s.blocks)      # a third loop: a third NLL
    assert n_params(loops3) - n_params(base) == one_nll_each
    with pytest.raises(ConfigError):
        create_model("sret_t", dims=(64, 96, 256))     # depthwise pooling needs a multiple of the input width
    with pytest.raises(ConfigError):
        create_model("sret_t", img_size=None)


@pytest.mark.slow
def test_small_variant_trains():
    """sret_t_small on 28 px: a few AdamW steps fit a fixed batch of 4 (the loss falls below half its start)."""
    torch.manual_seed(0)
    m = create_model("sret_t_small")
    x, y = torch.randn(4, 1, 28, 28), torch.arange(4)
    losses = fit_losses(m, x, y, steps=10, lr=1e-3)
    assert min(losses[-3:]) < 0.5 * losses[0], losses
