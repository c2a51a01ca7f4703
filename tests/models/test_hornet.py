"""blockzoo.models.hornet: the HorNet backbones: GF filter sizes, exact parameter counts, block layout, variants,
MACs."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.blocks.common.layer_scale import LayerScale
from blockzoo.blocks.common.metaformer import MetaFormerBlock
from blockzoo.blocks.mixers.gnconv import GlobalLocalFilter, GnConv
from blockzoo.models import hornet as hornet_mod
from blockzoo.registry import create_model, get_model_spec
from helpers import count_macs, meta_params, n_params


def official_hornet_params(depths, base_dim, gf=None, num_classes=1000, in_chans=3) -> int:
    """Parameter count of the official ``HorNet(depths, base_dim, gnconv=[partial(gnconv, order=2..5, s=1/3,
    [gflayer=GlobalLocalFilter, h, w])])``, layer by layer from ``hornet.py`` (``gf``: stage -> (h, w))."""
    gf = gf or {}
    dims = [base_dim * 2 ** i for i in range(4)]
    n = in_chans * 16 * dims[0] + dims[0] + 2 * dims[0]                 # stem conv 4x4 + LayerNorm
    for i in range(1, 4):                                               # LayerNorm + conv 2x2
        n += 2 * dims[i - 1] + dims[i - 1] * 4 * dims[i] + dims[i]
    for i, (c, depth) in enumerate(zip(dims, depths)):
        order = i + 2
        ds = [c // 2 ** k for k in range(order)][::-1]
        s = sum(ds)
        g = c * 2 * c + 2 * c + c * c + c                              # proj_in, proj_out
        g += sum(a * b + b for a, b in zip(ds, ds[1:]))                 # pws
        if i in gf:
            h, w = gf[i]
            g += (s // 2) * 9 + (s // 2) * h * w * 2 + 2 * (2 * s)      # dw 3x3 (no bias), complex weight, 2 LN
        else:
            g += s * 49 + s                                             # dw 7x7 with bias
        # LN, gnconv, gamma1, LN, MLP (4x), gamma2
        block = 2 * c + g + c + 2 * c + (c * 4 * c + 4 * c) + (4 * c * c + c) + c
        n += depth * block
    return n + 2 * dims[3] + dims[3] * num_classes + num_classes        # head LayerNorm + Linear


def test_hornet_gf_sizes_follow_the_official_convention():
    def gf_sizes(m):
        return [blk.mixer.dwconv.filter_size if isinstance(blk.mixer.dwconv, GlobalLocalFilter) else None
                for blk in (st.blocks[0] for st in m.stages)]

    with torch.device("meta"):
        assert gf_sizes(create_model("hornet_tiny_gf")) == [None, None, (14, 8), (7, 4)]              # official 224
        assert gf_sizes(create_model("hornet_tiny_gf", img_size=384)) == [None, None, (24, 13), (12, 7)]  # img384
        assert gf_sizes(create_model("hornet_tiny_gf", img_size=(224, 160))) == [None, None, (14, 6), (7, 3)]
        assert gf_sizes(create_model("hornet_tiny_gf", img_size=32, stem="small")) == [None, None, (8, 5), (4, 3)]
        fixed = create_model("hornet_tiny_gf", img_size=64, gf_size=((14, 8), (7, 4)))
        assert gf_sizes(fixed) == [None, None, (14, 8), (7, 4)]
        assert n_params(fixed) == hornet_mod._PARAMS["hornet_tiny_gf"]
        # swapping the mixer drops the gnconv-only keywords (order, filter, h, w)
        assert isinstance(create_model("hornet_tiny_gf", mixer="dwconv").stages[3].blocks[0].mixer, nn.Conv2d)
    with pytest.raises(ValueError, match="gf_size"):
        create_model("hornet_tiny_gf", gf_size=((14, 8),))
    with pytest.raises(ValueError, match="gf_size"):
        create_model("hornet_tiny_7x7", gf_size=((14, 8), (7, 4)))


def test_param_counts():
    t7 = official_hornet_params((2, 3, 18, 2), 64)
    tgf = official_hornet_params((2, 3, 18, 2), 64, gf={2: (14, 8), 3: (7, 4)})
    assert (t7, tgf) == (22_409_512, 22_991_848)
    assert meta_params("hornet_tiny_7x7") == t7 == hornet_mod._PARAMS["hornet_tiny_7x7"]
    assert meta_params("hornet_tiny_gf") == tgf == hornet_mod._PARAMS["hornet_tiny_gf"]
    # paper / README: 22M, 23M (rounded); mmpretrain's converted checkpoints: 22.41M, 22.99M
    assert round(t7 / 1e6) == 22 and round(tgf / 1e6) == 23
    assert abs(t7 / 22.41e6 - 1) < 5e-4 and abs(tgf / 22.99e6 - 1) < 5e-4
    assert get_model_spec("hornet_tiny_7x7").reference["params_1000cls"] == t7
    # the 384-px official variant sizes its filters 24x13 / 12x7 (hornet_*_gf_img384)
    assert meta_params("hornet_tiny_gf", img_size=384) == official_hornet_params(
        (2, 3, 18, 2), 64, gf={2: (24, 13), 3: (12, 7)})
    # the small (non-paper) variant: ConvNeXt-atto widths, orders 2-5, 10 classes
    assert meta_params("hornet_atto") == hornet_mod._PARAMS["hornet_atto"] == 4_840_730


def test_hornet_block_layout():
    with torch.device("meta"):
        m = create_model("hornet_tiny_7x7")
    assert [len(s.blocks) for s in m.stages] == [2, 3, 18, 2] and m.dims == (64, 128, 256, 512)
    assert [s.blocks[0].mixer.order for s in m.stages] == [2, 3, 4, 5]
    assert all(blk.mixer.scale == pytest.approx(1 / 3) and blk.mixer.filter == "7x7"
               for s in m.stages for blk in s.blocks)
    blk = m.stages[2].blocks[5]
    assert isinstance(blk, MetaFormerBlock)
    assert isinstance(blk.ls1, LayerScale) and isinstance(blk.ls2, LayerScale) and blk.ls1.init_value == 1e-6
    assert blk.norm1.eps == blk.norm2.eps == 1e-6
    assert blk.mlp.fc1.out_features == 4 * 256 and isinstance(blk.mlp.act, nn.GELU)
    stem = m.stem[0]
    assert stem.kernel_size == (4, 4) and stem.stride == (4, 4)
    assert isinstance(m.head_pre.norm, nn.LayerNorm)                    # GAP -> LayerNorm -> FC
    # user keywords win over the per-stage orders
    with torch.device("meta"):
        m3 = create_model("hornet_tiny_7x7", mixer="gnconv(order=3)")
    assert {blk.mixer.order for s in m3.stages for blk in s.blocks} == {3}

    # the block computes x + g1 * gnconv(LN(x)), then x + g2 * MLP(LN(x)) (official Block)
    torch.manual_seed(0)
    m = create_model("hornet_atto", num_classes=10)
    blk = m.stages[1].blocks[0]
    with torch.no_grad():
        blk.ls1.gamma.uniform_(0.5, 1.5)
        blk.ls2.gamma.uniform_(0.5, 1.5)
    x = torch.randn(2, 80, 6, 5)

    def ln(t, norm):
        return F.layer_norm(t.permute(0, 2, 3, 1), (80,), norm.weight, norm.bias, 1e-6).permute(0, 3, 1, 2)

    y = x + blk.ls1.gamma.view(1, -1, 1, 1) * blk.mixer(ln(x, blk.norm1))
    h = ln(y, blk.norm2).permute(0, 2, 3, 1)
    z = y + (blk.ls2.gamma * blk.mlp.fc2(F.gelu(blk.mlp.fc1(h)))).permute(0, 3, 1, 2)
    torch.testing.assert_close(blk(x), z)


def test_small_variant_and_convnext_with_gnconv():
    m = create_model("hornet_atto")
    assert m.feature_sizes == [(32, 32), (16, 16), (8, 8), (4, 4)] and m.num_classes == 10
    assert [s.blocks[0].mixer.dims for s in m.stages][0] == [20, 40]
    x = torch.randn(2, 3, 32, 32)
    assert m(x).shape == (2, 10)
    # ConvNeXt with gnConv by one word (MetaNeXt block, default order 5 in every stage)
    c = create_model("convnext_atto", mixer="gnconv", img_size=32, stem="small", num_classes=10)
    mixers = [blk.mixer for s in c.stages for blk in s.blocks]
    assert all(isinstance(mx, GnConv) and mx.order == 5 for mx in mixers)
    assert mixers[0].dims == [2, 5, 10, 20, 40]
    y = c(x)
    assert y.shape == (2, 10)
    y.sum().backward()
    assert all(p.grad is not None for p in c.parameters())


@pytest.mark.slow
def test_macs_224():
    for name, paper in (("hornet_tiny_7x7", 4.0e9), ("hornet_tiny_gf", 3.9e9)):
        m = create_model(name)
        macs = count_macs(m, (3, 224, 224))
        assert macs == hornet_mod._MACS[name]
        assert abs(macs / paper - 1) < 0.03
    assert count_macs(create_model("hornet_atto"), (3, 32, 32)) == hornet_mod._MACS["hornet_atto"]
