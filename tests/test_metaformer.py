"""MetaFormer skeleton, basic mixers (dwconv, inception_dw, pooling, identity), ConvNeXt, InceptionNeXt, PfLayer nets.

Hand-computed outputs on tiny tensors, exact parameter counts at paper settings, MACs against closed-form counts,
the stochastic-depth schedule, layer-scale init, slot swapping and build-time compatibility errors.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import registry
from blockzoo.blocks.common.drop import DropPath, drop_path_schedule
from blockzoo.blocks.common.layer_scale import LayerScale
from blockzoo.blocks.common.metaformer import MetaFormerBlock, MetaNeXtBlock
from blockzoo.blocks.mixers.dwconv import DWConv
from blockzoo.blocks.mixers.inception_dw import InceptionDWConv2d
from blockzoo.models.base import PerBlock
from blockzoo.models.metaformer import MetaFormer
from blockzoo.registry import BlockSpec, IncompatibleBlockError, Requires, create_block, create_model, get_model_spec


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def meta_params(name: str, **kw) -> int:
    with torch.device("meta"):
        return n_params(create_model(name, **kw))


def macs(model: nn.Module, size) -> int:
    try:
        from blockzoo.profile import count_macs  # type: ignore[attr-defined]
    except ImportError:
        try:
            from blockzoo.profile.counting import count_macs
        except ImportError:                                        # fall back to torch's counter (FLOPs = 2 MACs)
            from torch.utils.flop_counter import FlopCounterMode
            mode = FlopCounterMode(display=False)
            with mode, torch.no_grad():
                model.eval()(torch.randn(1, *size))
            return mode.get_total_flops() // 2
    return count_macs(model, size).macs


# ------------------------------------------------------------------------------------------------------ mixers
def test_dwconv_is_depthwise_7x7():
    m = create_block("dwconv", 32)
    assert isinstance(m, DWConv) and m.groups == 32 and m.kernel_size == (7, 7) and m.padding == (3, 3)
    assert m.weight.shape == (32, 1, 7, 7) and m.bias is not None
    assert n_params(m) == 50 * 32
    # hand check: a kernel that is 1 at offset (+1 row, -2 cols) from the centre shifts the map; bias is added
    with torch.no_grad():
        m.weight.zero_()
        m.weight[:, 0, 3 + 1, 3 - 2] = 1.0
        m.bias.fill_(0.5)
    x = torch.randn(1, 32, 9, 8)
    y = m(x)
    exp = torch.zeros_like(x)
    exp[:, :, :-1, 2:] = x[:, :, 1:, :-2]  # y[i, j] = x[i + 1, j - 2]
    torch.testing.assert_close(y, exp + 0.5)
    assert create_block("dwconv(kernel_size=3)", 8).kernel_size == (3, 3)
    with pytest.raises(ValueError, match="odd"):
        create_block("dwconv", 8, kernel_size=4)


def test_inception_dw_split_and_kernels():
    m = create_block("inception_dw", 64)
    assert isinstance(m, InceptionDWConv2d)
    assert m.split_indexes == (40, 8, 8, 8)                       # gc = int(64 / 8) = 8
    assert m.dwconv_hw.kernel_size == (3, 3) and m.dwconv_w.kernel_size == (1, 11)
    assert m.dwconv_h.kernel_size == (11, 1)
    for c in (m.dwconv_hw, m.dwconv_w, m.dwconv_h):
        assert c.groups == 8 and c.in_channels == c.out_channels == 8 and c.bias is not None
    assert n_params(m) == 8 * (9 + 1) + 2 * 8 * (11 + 1)
    atto = create_block("inception_dw(band_kernel_size=9, branch_ratio=0.25)", 40)
    assert atto.split_indexes == (10, 10, 10, 10) and atto.dwconv_w.kernel_size == (1, 9)
    assert create_block("inception_dw", 100).split_indexes == (64, 12, 12, 12)  # int(12.5) = 12
    # hand check with all-ones weights, zero biases, an all-ones input: at the centre the branches sum their windows
    with torch.no_grad():
        for c in (m.dwconv_hw, m.dwconv_w, m.dwconv_h):
            c.weight.fill_(1.0)
            c.bias.zero_()
    y = m(torch.ones(1, 64, 16, 16))
    centre = y[0, :, 8, 8]
    assert torch.equal(centre[:40], torch.ones(40))               # identity branch
    assert torch.equal(centre[40:48], torch.full((8,), 9.0))      # 3x3
    assert torch.equal(centre[48:56], torch.full((8,), 11.0))     # 1x11 (along W)
    assert torch.equal(centre[56:], torch.full((8,), 11.0))       # 11x1 (along H)
    assert y[0, 48, 8, 0].item() == 6.0 and y[0, 48, 0, 8].item() == 11.0   # the 1x11 band is horizontal
    assert y[0, 56, 0, 8].item() == 6.0 and y[0, 56, 8, 0].item() == 11.0   # the 11x1 band is vertical
    with pytest.raises(IncompatibleBlockError, match="channels"):
        create_block("inception_dw", 4)


def test_pool_mixers_parameter_free():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    for name in ("maxpool", "avgpool", "pool", "identity"):
        assert n_params(create_block(name, 32)) == 0
    mx, av, pl = create_block("maxpool", 1), create_block("avgpool", 1), create_block("pool", 1)
    assert mx(x)[0, 0, 0, 0].item() == 5.0                         # max of [[0, 1], [4, 5]]
    assert mx(x)[0, 0, 1, 1].item() == 10.0
    assert av(x)[0, 0, 0, 0].item() == pytest.approx((0 + 1 + 4 + 5) / 4)   # padding excluded from the mean
    assert av(x)[0, 0, 1, 1].item() == pytest.approx((0 + 1 + 2 + 4 + 5 + 6 + 8 + 9 + 10) / 9)
    torch.testing.assert_close(pl(x), av(x) - x)                   # PoolFormer: avgpool(x) - x
    assert torch.equal(create_block("identity", 1)(x), x)
    assert av(x).shape == mx(x).shape == x.shape


# ------------------------------------------------------------------------------------------------ layers
def test_drop_path_and_layer_scale():
    dp = DropPath(0.5).train()
    torch.manual_seed(0)
    x = torch.ones(64, 3, 2, 2)
    y = dp(x)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}         # dropped, or kept and scaled by 1 / 0.5
    assert torch.all(per_sample.min(1).values == per_sample.max(1).values)   # whole samples
    assert 0 < (per_sample[:, 0] == 0).sum() < 64
    assert torch.equal(dp.eval()(x), x)
    ls = LayerScale(3, 1e-6)
    assert torch.equal(ls.gamma, torch.full((3,), 1e-6))
    with torch.no_grad():
        ls.gamma.copy_(torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(ls(torch.ones(1, 3, 1, 1)).flatten(), torch.tensor([1.0, 2.0, 3.0]))


def test_drop_path_schedule_linear_over_blocks():
    assert drop_path_schedule((2, 2), 0.3) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    m = create_model("convnext_tiny", drop_path_rate=0.17, img_size=None, num_classes=0)
    probs = [blk.drop_path.drop_prob if isinstance(blk.drop_path, DropPath) else 0.0
             for st in m.stages for blk in st.blocks]
    assert len(probs) == 18
    assert probs == pytest.approx([0.17 * k / 17 for k in range(18)])
    assert probs == pytest.approx(torch.linspace(0, 0.17, 18).tolist())
    assert m.drop_path_rates == pytest.approx(probs)
    pf = create_model("poolformer_s12", drop_path_rate=0.1, img_size=None)
    assert pf.stages[3].blocks[1].drop_path1.drop_prob == pytest.approx(0.1)
    assert isinstance(pf.stages[0].blocks[0].drop_path1, nn.Identity)   # first block: rate 0


def test_layer_scale_init_per_family():
    for name, value in (("convnext_atto", 1e-6), ("inception_next_atto", 1e-6), ("poolformer_s12", 1e-5)):
        m = create_model(name)
        gammas = [mod.gamma for mod in m.modules() if isinstance(mod, LayerScale)]
        per_block = 2 if name.startswith("poolformer") else 1
        assert len(gammas) == per_block * sum(m.depths)
        assert all(torch.equal(g, torch.full_like(g, value)) for g in gammas)
    m = create_model("convnext_atto", ls_init_value=None)
    assert not any(isinstance(mod, LayerScale) for mod in m.modules())
    assert n_params(m) == get_model_spec("convnext_atto").reference["params_1000cls"] - sum(m.dims[i] * m.depths[i]
                                                                                              for i in range(4))


def test_metanext_block_formula_and_fused_ln_path():
    torch.manual_seed(0)
    blk = create_model("convnext_atto", img_size=None).stages[1].blocks[0]
    assert isinstance(blk, MetaNeXtBlock) and blk._fused_ln
    with torch.no_grad():
        blk.ls.gamma.uniform_(0.5, 1.5)
    x = torch.randn(2, 80, 5, 6)
    # reference: x + gamma * fc2(gelu(fc1(LN_c(dwconv(x))))) computed with plain ops
    y = F.conv2d(x, blk.mixer.weight, blk.mixer.bias, padding=3, groups=80).permute(0, 2, 3, 1)
    y = F.layer_norm(y, (80,), blk.norm.weight, blk.norm.bias, 1e-6)
    y = F.linear(F.gelu(F.linear(y, blk.mlp.fc1.weight, blk.mlp.fc1.bias)), blk.mlp.fc2.weight, blk.mlp.fc2.bias)
    exp = x + (y * blk.ls.gamma).permute(0, 3, 1, 2)
    torch.testing.assert_close(blk(x), exp)
    blk._fused_ln = False
    torch.testing.assert_close(blk(x), exp)


def test_metaformer_block_formula():
    torch.manual_seed(0)
    blk = create_model("poolformer_s12", img_size=None).stages[0].blocks[0]
    assert isinstance(blk, MetaFormerBlock)
    with torch.no_grad():
        blk.ls1.gamma.fill_(0.5)
        blk.ls2.gamma.fill_(2.0)
    x = torch.randn(2, 64, 6, 5)
    n1 = F.group_norm(x, 1, blk.norm1.weight, blk.norm1.bias, 1e-5)
    h = x + 0.5 * (F.avg_pool2d(n1, 3, 1, 1, count_include_pad=False) - n1)
    n2 = F.group_norm(h, 1, blk.norm2.weight, blk.norm2.bias, 1e-5).permute(0, 2, 3, 1)
    mlp = F.linear(F.gelu(F.linear(n2, blk.mlp.fc1.weight, blk.mlp.fc1.bias)), blk.mlp.fc2.weight, blk.mlp.fc2.bias)
    torch.testing.assert_close(blk(x), h + 2.0 * mlp.permute(0, 3, 1, 2))


def test_mlp_layouts_have_same_params_and_function():
    a = create_model("convnext_atto", mlp_layout="linear", num_classes=10, stem="small")
    b = create_model("convnext_atto", mlp_layout="conv", num_classes=10, stem="small")
    assert n_params(a) == n_params(b)
    sd = {k: (v.reshape(b.state_dict()[k].shape)) for k, v in a.state_dict().items()}
    b.load_state_dict(sd)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(a.eval()(x), b.eval()(x), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------- param counts
# name -> (exact count of our build, paper/timm count, relative tolerance vs the paper's rounding)
PARAMS = {
    "convnext_atto": (3_695_520, 3.70e6, 0.005),
    "convnext_femto": (5_217_784, 5.22e6, 0.005),
    "convnext_pico": (9_045_672, 9.05e6, 0.005),
    "convnext_nano": (15_593_560, 15.59e6, 0.005),
    "convnext_tiny": (28_589_128, 28_589_128, 0.0),
    "convnext_small": (50_223_688, 50.22e6, 0.005),
    "inception_next_atto": (4_156_520, 4.2e6, 0.012),      # README "4.2M": one decimal, so +-0.05M
    "inception_next_tiny": (28_055_680, 28.06e6, 0.005),
    "inception_next_small": (49_374_016, 49.37e6, 0.005),
    "poolformer_s12": (11_915_176, 11.92e6, 0.005),
    "pf_resnet50_max": (14_232_232, 14.2e6, 0.005),
    "pf_resnet50_hybrid": (17_330_600, 17.3e6, 0.005),
    "pf_convnext_atto": (3_603_520, None, None),
    "pf_convnext_tiny": (28_257_928, None, None),
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_param_counts(name):
    exact, paper, tol = PARAMS[name]
    ours = meta_params(name)
    assert ours == exact == get_model_spec(name).reference["params_1000cls"]
    if paper is not None:
        assert abs(ours - paper) <= tol * paper


def test_param_count_by_hand_convnext_atto_and_pf():
    # stem + 3 downsamples + blocks + head norm + fc, each term written out
    dims, depths = (40, 80, 160, 320), (2, 2, 6, 2)
    total = 3 * 40 * 16 + 40 + 2 * 40
    for i in range(1, 4):
        total += 2 * dims[i - 1] + dims[i - 1] * dims[i] * 4 + dims[i]
    block = [50 * c + 2 * c + (c * 4 * c + 4 * c) + (4 * c * c + c) + c for c in dims]
    total += sum(d * b for d, b in zip(depths, block))
    total += 2 * 320 + 320 * 1000 + 1000
    assert total == meta_params("convnext_atto")
    # max-pool instead of the 7x7 depthwise conv: exactly 50 C per block fewer
    assert meta_params("convnext_atto") - meta_params("pf_convnext_atto") == sum(d * 50 * c for d, c in
                                                                                   zip(depths, dims))
    # InceptionNeXt's MLP head: Linear(C, 3C) + LayerNorm(3C) + Linear(3C, classes)
    c = 768
    head = c * 3 * c + 3 * c + 2 * 3 * c + 3 * c * 1000 + 1000
    assert meta_params("inception_next_tiny") - meta_params("inception_next_tiny", num_classes=0) == 3 * c * 1000 + 1000
    assert meta_params("inception_next_tiny", head_hidden_ratio=None) == (
        meta_params("inception_next_tiny") - head + c * 1000 + 1000)


def test_pf_resnet_params():
    r50 = meta_params("resnet50")
    convs3x3 = 3 * 64 * 64 * 9 + 4 * 128 * 128 * 9 + 6 * 256 * 256 * 9 + 3 * 512 * 512 * 9
    bns = 2 * (3 * 64 + 4 * 128 + 6 * 256 + 3 * 512)
    assert meta_params("pf_resnet50_max") == r50 - convs3x3 - bns == 14_232_232
    strided = 128 * 128 * 9 + 256 * 256 * 9 + 512 * 512 * 9 + 2 * (128 + 256 + 512)
    assert meta_params("pf_resnet50_hybrid") == 14_232_232 + strided
    m = create_model("pf_resnet50_hybrid", stem="small", img_size=28, in_chans=1, num_classes=10)
    units = [blk.conv2 for layer in m.layers for blk in layer]
    assert [type(u).__name__ for u in units].count("EffConvUnit") == 3
    assert sum(isinstance(u, nn.MaxPool2d) for u in units) == 13
    x = torch.randn(2, 1, 28, 28)                                  # 28 -> 28, 14, 7, 4: odd sizes keep shortcuts
    assert m(x).shape == (2, 10)


def test_pf_conv_units_reject_width_change():
    with pytest.raises(IncompatibleBlockError, match="keeps the channel count"):
        create_model("resnet18", conv="pf_maxpool")
    with pytest.raises(IncompatibleBlockError, match="keeps the channel count"):
        create_block("pf_hybrid", 16, out_channels=32, stride=2)


def _convnext_macs_by_hand(dims, depths, img, stem_k, stem_s, classes, in_chans=3):
    h = (img - stem_k) // stem_s + 1 if stem_k == stem_s else img // stem_s
    total = h * h * in_chans * dims[0] * stem_k * stem_k
    for i, (c, d) in enumerate(zip(dims, depths)):
        if i > 0:
            h //= 2
            total += h * h * dims[i - 1] * c * 4
        total += d * h * h * (49 * c + 8 * c * c)
    return total + dims[-1] * classes


def test_macs_by_hand_small_and_224_atto():
    m = create_model("convnext_atto", stem="small", img_size=32, num_classes=10)
    assert macs(m, (3, 32, 32)) == _convnext_macs_by_hand((40, 80, 160, 320), (2, 2, 6, 2), 32, 3, 1, 10)
    m = create_model("convnext_atto", img_size=None)
    ours = macs(m, (3, 224, 224))
    assert ours == _convnext_macs_by_hand((40, 80, 160, 320), (2, 2, 6, 2), 224, 4, 4, 1000)
    assert abs(ours - 0.55e9) <= 0.03 * 0.55e9


MAC_PAPER = {"convnext_atto": 0.55e9, "convnext_femto": 0.79e9, "convnext_pico": 1.37e9, "convnext_nano": 2.46e9,
             "convnext_tiny": 4.47e9, "convnext_small": 8.71e9, "inception_next_atto": 0.51e9,
             "inception_next_tiny": 4.19e9, "inception_next_small": 8.36e9, "poolformer_s12": 1.82e9,
             "pf_resnet50_max": 2.2e9, "pf_resnet50_hybrid": 2.6e9, "pf_convnext_atto": None, "pf_convnext_tiny": None}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MAC_PAPER))
def test_macs_tiny_224(name):
    """MACs at 224 px (count_macs: convs + linears) equal the recorded count and are within 3% of the paper."""
    ours = macs(create_model(name), (3, 224, 224))
    spec = get_model_spec(name)
    assert ours == spec.reference["macs_224"]
    paper = MAC_PAPER[name]
    assert spec.paper_macs == paper
    if paper is not None:
        assert abs(ours - paper) <= 0.03 * paper, (name, ours)


# -------------------------------------------------------------------------------------------- slots / swaps
def test_swap_mixer_small_stem():
    m = create_model("convnext_atto", mixer="inception_dw", img_size=32, stem="small", num_classes=10)
    assert m.feature_sizes == [(32, 32), (16, 16), (8, 8), (4, 4)]
    mixers = [blk.mixer for st in m.stages for blk in st.blocks]
    assert all(isinstance(x, InceptionDWConv2d) for x in mixers)
    assert mixers[0].split_indexes == (25, 5, 5, 5)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(IncompatibleBlockError, match="mixer"):
        create_model("convnext_atto", mixer="se")
    with pytest.raises(IncompatibleBlockError, match="mixer"):
        create_model("inception_next_atto", attn="dwconv")
    m = create_model("inception_next_atto", mixer="maxpool", attn="se", norm="gn", act="silu", head="max")
    assert isinstance(m.stages[2].blocks[0].mixer, nn.MaxPool2d) and isinstance(m.stages[2].blocks[0].norm,
                                                                                 nn.GroupNorm)


def test_small_stem_forward_backward_28px():
    for name in ("convnext_atto", "inception_next_atto", "poolformer_s12", "pf_convnext_atto"):
        m = create_model(name, stem="small", img_size=28, in_chans=1, num_classes=10)
        last = (4, 4) if name.startswith("poolformer") else (3, 3)   # 3x3/2 p1 vs 2x2/2 downsampling of 7x7
        assert m.feature_sizes == [(28, 28), (14, 14), (7, 7), last]
        x = torch.randn(2, 1, 28, 28)
        y = m(x)
        assert y.shape == (2, 10)
        y.sum().backward()
        assert all(p.grad is not None for p in m.parameters())
    m = create_model("convnext_atto", stem="patch", patch_size=2, img_size=32, num_classes=10)
    assert m.feature_sizes == [(16, 16), (8, 8), (4, 4), (2, 2)]


def test_requires_checked_against_feature_size(monkeypatch):
    seen = []

    def needs8(channels, input_resolution=None):
        seen.append(input_resolution)
        return nn.Identity()

    monkeypatch.setitem(registry._BLOCKS, "_needs8", BlockSpec(
        "_needs8", "mixer", needs8, None, "test", "test", requires=Requires(min_size=8, fixed_resolution=True)))
    with pytest.raises(IncompatibleBlockError, match=r"at least 8x8.*stages\.3\.blocks\.0\.mixer.*4x4"):
        create_model("convnext_atto", mixer="_needs8", stem="small", img_size=32)
    seen.clear()
    create_model("convnext_atto", mixer="_needs8", stem="small", img_size=64)
    assert seen == [(64, 64)] * 2 + [(32, 32)] * 2 + [(16, 16)] * 6 + [(8, 8)] * 2


def test_mixer_per_block():
    """Per-stage / per-block mixers use the one backbone convention (models.base.PerBlock; lists in test_base)."""
    m = create_model("convnext_atto", mixer=PerBlock(lambda s, b: f"dwconv(kernel_size={(3, 5, 7, 9)[s]})"))
    assert [st.blocks[0].mixer.kernel_size[0] for st in m.stages] == [3, 5, 7, 9]
    m = create_model("convnext_atto", mixer=PerBlock(lambda s, b: ("dwconv", {"kernel_size": 3 + 2 * b})))
    assert [blk.mixer.kernel_size[0] for blk in m.stages[2].blocks] == [3, 5, 7, 9, 11, 13]
    m = create_model("convnext_atto", mixer=PerBlock(lambda s, b: "dwconv" if s < 2 else "pool"))
    assert isinstance(m.stages[1].blocks[1].mixer, DWConv) and type(m.stages[3].blocks[0].mixer).__name__ == "Pool"
    m = create_model("convnext_atto", attn=PerBlock(lambda s, b: "se" if s == 3 else "none"))
    assert type(m.stages[3].blocks[0].attn).__name__ != "Identity" and isinstance(m.stages[2].blocks[0].attn,
                                                                                  nn.Identity)


def test_heads_pre_logits_and_reset():
    m = create_model("inception_next_atto", num_classes=7, stem="small", img_size=32)
    x = torch.randn(2, 3, 32, 32)
    assert m.forward_head(m.forward_features(x), pre_logits=True).shape == (2, 960)   # 3 x 320
    assert m.head_pre.norm.eps == 1e-6
    m.reset_classifier(3)
    assert m(x).shape == (2, 3)
    m.reset_classifier(5, head="avgmax")
    assert m(x).shape == (2, 5)
    c = create_model("convnext_atto", num_classes=0)
    assert c.fc.__class__ is nn.Identity and c(torch.randn(1, 3, 64, 64)).shape == (1, 320)
    assert c.head_pre.norm.__class__.__name__ == "LayerNorm2d"     # ConvNeXt: GAP -> LayerNorm -> fc
    p = create_model("poolformer_s12")
    assert isinstance(p.norm_pre, nn.GroupNorm) and p.norm_pre.num_groups == 1 and isinstance(p.head_pre, nn.Identity)


def test_custom_block_and_metaformer_direct():
    class Tiny(nn.Module):
        def __init__(self, dim, *, mixer, attn, norm_layer, act_layer, mlp_ratio, ls_init_value, drop_path,
                     mlp_layout, feat_size, ctx, scale=1.0):
            super().__init__()
            self.mixer, self.scale, self.feat_size, self.where = mixer, scale, feat_size, ctx("x").position

        def forward(self, x):
            return x + self.scale * self.mixer(x)

    m = MetaFormer((1, 1), (8, 16), block=Tiny, block_kwargs={"scale": 0.0}, mixer="maxpool", stem="small",
                   img_size=10, num_classes=2, norm="bn")
    assert m.stages[1].blocks[0].feat_size == (5, 5) and m.stages[1].blocks[0].where == "stages.1.blocks.0.x"
    assert m(torch.randn(2, 3, 10, 10)).shape == (2, 2)
    with pytest.raises(ValueError, match="unknown block"):
        MetaFormer((1,), (8,), block="nope")
    with pytest.raises(ValueError, match="too small"):
        create_model("convnext_atto", img_size=16)


def test_model_pickles_and_reset_keeps_head_body():
    import io
    m = create_model("inception_next_atto", num_classes=4, stem="small", img_size=32,
                     mixer=PerBlock(lambda s, b: "inception_dw"))
    buf = io.BytesIO()
    torch.save(m, buf)                                             # no closures kept on the module
    w = m.head_pre.fc1.weight.clone()
    m.reset_classifier(9)
    assert torch.equal(m.head_pre.fc1.weight, w) and m.fc.out_features == 9


@pytest.mark.slow
def test_convnext_tiny_macs_close_to_resnet50():
    """S057/S014 claim: ConvNeXt-T has FLOPs (MACs) similar to ResNet-50 (4.5 G vs 4.1 G in the papers)."""
    from blockzoo import create_model
    from blockzoo.profile import count_macs
    cx = count_macs(create_model("convnext_tiny"), (3, 224, 224)).macs
    r50 = count_macs(create_model("resnet50"), (3, 224, 224)).macs
    assert 1.0 < cx / r50 < 1.15


def test_variant_options_show_the_variants_defaults():
    """The registry lists a MetaFormer variant's own configuration as its option defaults, not the skeleton's."""
    opts = registry.model_options("poolformer_s12")
    assert opts["ls_init_value"] == 1e-5 and opts["head_norm"] == "pre" and opts["stem"] == "overlap"
    assert tuple(opts["depths"]) == (2, 2, 6, 2) and tuple(opts["dims"]) == (64, 128, 320, 512)
    assert registry.model_options("convnext_atto")["head_norm"] == "post"
    assert create_model("convnext_atto", dims=(8, 16, 24, 32), num_classes=3).num_features == 32
