"""blockzoo.models.unireplknet: the UniRepLKNet block and backbones [S016/S084]: order, counts, re-parameterisation."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import create_block, create_model
from blockzoo.blocks.mixers.dilated_reparam import (
    DilatedReparamBlock,
)
from blockzoo.blocks.mixers.dwconv import DWConv
from blockzoo.deploy.reparam import reparameterize
from blockzoo.models.unireplknet import GRN, KernelSchedule, UniRepLKNetBlock, UniRepLKNetStem, default_kernel_sizes
from blockzoo.registry import get_model_spec
from helpers import bn_ref, n_params, randomize


def _official_residual(blk: UniRepLKNetBlock, x: torch.Tensor) -> torch.Tensor:
    """Official ``compute_residual`` written with plain torch ops from the block's own weights (eval mode)."""
    d = blk.dwconv
    if isinstance(d, DilatedReparamBlock):
        y = bn_ref(F.conv2d(x, d.lk_origin.weight, padding=d.kernel_size // 2, groups=x.shape[1]), d.origin_bn)
        for k, r in d.branches:
            c = getattr(d, f"dil_conv_k{k}_{r}")
            y = y + bn_ref(F.conv2d(x, c.weight, padding=r * (k - 1) // 2, dilation=r, groups=x.shape[1]),
                           getattr(d, f"dil_bn_k{k}_{r}"))
    else:
        y = F.conv2d(x, d.weight, d.bias, padding=d.padding, groups=x.shape[1])
    y = bn_ref(y, blk.norm)
    s = y.mean((2, 3))                                                         # SE: C -> C/4 -> C
    s = torch.sigmoid(F.linear(F.relu(F.linear(s, blk.se.fc1.weight, blk.se.fc1.bias)), blk.se.fc2.weight,
                               blk.se.fc2.bias))
    y = (y * s[:, :, None, None]).permute(0, 2, 3, 1)
    y = F.gelu(F.linear(y, blk.pwconv1.weight, blk.pwconv1.bias))
    gx = torch.sqrt((y * y).sum((1, 2), keepdim=True))
    y = (blk.grn.gamma * gx / (gx.mean(-1, keepdim=True) + 1e-6) + 1) * y + blk.grn.beta
    y = F.linear(y, blk.pwconv2.weight).permute(0, 3, 1, 2)
    return bn_ref(y, blk.ffn_norm) * blk.ls.gamma.view(1, -1, 1, 1)


def test_grn_hand_computed():
    g = GRN(2)
    with torch.no_grad():
        g.gamma.copy_(torch.tensor([1.0, 2.0]))
        g.beta.copy_(torch.tensor([0.5, -1.0]))
    x = torch.tensor([[[[3.0, 6.0]], [[4.0, 8.0]]]])   # NHWC (1, 2, 1, 2): channel 0 = (3, 4), channel 1 = (6, 8)
    # ||x_c||: 5 and 10; mean 7.5; Nx = 2/3 and 4/3
    n0, n1 = 5 / (7.5 + 1e-6), 10 / (7.5 + 1e-6)
    exp = torch.tensor([[[[(n0 + 1) * 3 + 0.5, (2 * n1 + 1) * 6 - 1]], [[(n0 + 1) * 4 + 0.5, (2 * n1 + 1) * 8 - 1]]]])
    torch.testing.assert_close(g(x), exp)
    g.init_weights()
    torch.testing.assert_close(g(x), x)   # zero-initialised: identity


@pytest.mark.parametrize("mixer", ["dilated_reparam", "dwconv3"])
def test_block_matches_official_order_and_reparam(mixer):
    torch.manual_seed(0)
    C = 16
    mix = create_block("dilated_reparam", C, kernel_size=13) if mixer == "dilated_reparam" else \
        create_block("dwconv", C, kernel_size=3, bias=False)
    blk = UniRepLKNetBlock(C, mixer=mix, attn=create_block("se", C, reduction=4), act_layer=nn.GELU)
    assert blk.se.hidden == C // 4 and blk.pwconv1.out_features == 4 * C and blk.pwconv2.bias is None
    assert isinstance(blk.norm, nn.BatchNorm2d) and isinstance(blk.ffn_norm, nn.BatchNorm2d)
    assert blk.ls.gamma.allclose(torch.full((C,), 1e-6))
    randomize(blk).eval()
    x = torch.randn(2, C, 11, 14)
    with torch.no_grad():
        y0 = blk(x)
        torch.testing.assert_close(y0, x + _official_residual(blk, x), atol=1e-5, rtol=1e-5)
        blk.reparameterize()
        y1 = blk(x)
    assert (y0 - y1).abs().max().item() < 1e-5
    # deploy structure (official deploy=True): no BN, no layer scale, GRN without bias, fc2 with bias
    assert isinstance(blk.norm, nn.Identity) and isinstance(blk.ffn_norm, nn.Identity)
    assert isinstance(blk.ls, nn.Identity) and blk.grn.beta is None and blk.pwconv2.bias is not None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in blk.modules())
    convs = [m for m in blk.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 and convs[0].bias is not None and convs[0].kernel_size == ((13, 13) if mixer ==
                                                                                      "dilated_reparam" else (3, 3))
    blk.reparameterize()   # idempotent
    with torch.no_grad():
        torch.testing.assert_close(blk(x), y1)


def test_block_rejects_conv_layout():
    with pytest.raises(ValueError, match="mlp_layout"):
        UniRepLKNetBlock(8, mixer=nn.Identity(), mlp_layout="conv")


def test_param_counts():
    """Paper README (deploy structure): A 4.4M, T 31M (one decimal / integer), ours exact."""
    for name, train, deploy, paper, half_ulp in (("unireplknet_a", 4_649_060, 4_437_300, 4.4e6, 0.05e6),
                                                 ("unireplknet_t", 31_693_420, 31_037_980, 31e6, 0.5e6)):
        with torch.device("meta"):
            assert n_params(create_model(name)) == train
        m = reparameterize(create_model(name, init="kaiming"))
        assert n_params(m) == deploy
        assert abs(deploy - paper) < half_ulp                # inside the paper's rounding interval
        spec = get_model_spec(name)
        assert spec.paper_params == int(paper)
        assert spec.reference["params_1000cls"] == train and spec.reference["params_1000cls_deploy"] == deploy
    assert abs(31_037_980 / 31e6 - 1) < 0.005


def test_architecture_details():
    with torch.device("meta"):
        a = create_model("unireplknet_a")
        t = create_model("unireplknet_t")
    assert a.feature_sizes == [(56, 56), (28, 28), (14, 14), (7, 7)]
    stem = a.stem
    assert isinstance(stem, UniRepLKNetStem)
    assert [type(m).__name__ for m in stem] == ["Conv2d", "LayerNorm2d", "GELU", "Conv2d", "LayerNorm2d"]
    assert stem[0].out_channels == 20 and stem[0].stride == (2, 2) and stem[3].kernel_size == (3, 3)
    ds = a.stages[1].downsample
    assert ds[0].kernel_size == (3, 3) and ds[0].stride == (2, 2) and ds[0].padding == (1, 1)
    assert type(ds[1]).__name__ == "LayerNorm2d" and ds[1].eps == 1e-6
    assert a.head_pre.norm.eps == 1e-6
    # kernel sizes: official tables (T: stage 2 alternates 13, 3)
    def kernels(m):
        return [[b.dwconv.kernel_size if isinstance(b.dwconv, DilatedReparamBlock) else b.dwconv.kernel_size[0]
                 for b in s.blocks] for s in m.stages]
    assert kernels(a) == [[3, 3], [13, 13], [13] * 6, [13, 13]]
    assert kernels(t) == [[3] * 3, [13] * 3, [13, 3] * 9, [13] * 3]
    for s in t.stages:
        for b in s.blocks:
            if not isinstance(b.dwconv, DilatedReparamBlock):   # 3x3 blocks: plain bias-free dw conv (official)
                assert isinstance(b.dwconv, DWConv) and b.dwconv.bias is None
    assert default_kernel_sizes((1, 2, 1, 1)) == ((3,), (13, 13), (13,), (13,))


def test_init_and_drop_path():
    m = create_model("unireplknet_a_small", drop_path_rate=0.1)
    blk = m.stages[2].blocks[0]
    assert torch.all(blk.grn.gamma == 0) and torch.all(blk.grn.beta == 0)
    assert torch.allclose(blk.ls.gamma, torch.full_like(blk.ls.gamma, 1e-6))
    assert blk.dwconv.lk_origin.weight.std().item() < 0.03          # trunc_normal(0.02)
    assert m.drop_path_rates[0] == 0.0 and math.isclose(m.drop_path_rates[-1], 0.1)
    assert m.stages[-1].blocks[-1].drop_path.drop_prob == pytest.approx(0.1)


def test_model_reparam_equivalence():
    torch.manual_seed(0)
    m = randomize(create_model("unireplknet_a", num_classes=10)).eval()
    x = torch.randn(2, 3, 64, 56)
    with torch.no_grad():
        y0 = m(x)
        assert reparameterize(m, inplace=True) is m
        y1 = m(x)
    assert (y0 - y1).abs().max().item() < 1e-4 * y0.abs().max().item()
    assert not any(isinstance(mm, nn.BatchNorm2d) for mm in m.modules())
    assert all(b.dwconv.deployed for s in m.stages[1:] for b in s.blocks)
    reparameterize(m, inplace=True)   # a second pass changes nothing
    with torch.no_grad():
        torch.testing.assert_close(m(x), y1)


def test_slot_swaps_and_kernel_overrides():
    m = create_model("unireplknet_a_small", mixer="dwconv")
    assert all(isinstance(b.dwconv, DWConv) and b.dwconv.kernel_size == (7, 7) and b.dwconv.bias is not None
               for s in m.stages for b in s.blocks)
    m = create_model("unireplknet_a_small", mixer="dilated_reparam(kernel_size=9)")
    assert all(isinstance(b.dwconv, DilatedReparamBlock) and b.dwconv.kernel_size == 9
               for s in m.stages for b in s.blocks)
    ks = ((5, 5), (7, 7), (9,) * 6, (3, 3))
    m = create_model("unireplknet_a_small", mixer=KernelSchedule(ks))          # the per-block mixer value
    assert [isinstance(b.dwconv, DilatedReparamBlock) for b in m.stages[0].blocks] == [False, False]  # 5 < 7: plain
    assert [b.dwconv.kernel_size for b in m.stages[2].blocks] == [9] * 6
    with pytest.raises(ValueError, match="kernel_sizes must match the depths"):
        create_model("unireplknet_a_small", mixer=KernelSchedule(((3,), (13, 13), (13,) * 6, (13, 13))))
    m = create_model("unireplknet_a_small", attn="none", num_classes=3, in_chans=1)
    assert isinstance(m.stages[0].blocks[0].se, nn.Identity)
    assert m(torch.randn(1, 1, 28, 28)).shape == (1, 3)
    assert KernelSchedule(((3,), (13,)))(0, 0) == ("dwconv", {"kernel_size": 3, "bias": False})
    assert KernelSchedule(((3,), (13,)))(1, 0) == ("dilated_reparam", {"kernel_size": 13})


def test_small_variant():
    with torch.device("meta"):
        assert n_params(create_model("unireplknet_a_small")) == 4_324_550
    m = create_model("unireplknet_a_small")
    assert m.feature_sizes == [(32, 32), (16, 16), (8, 8), (4, 4)] and m.num_classes == 10
    randomize(m).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y0 = m(x)
        y1 = reparameterize(m)(x)
    assert y0.shape == (2, 10) and (y0 - y1).abs().max().item() < 1e-4 * y0.abs().max().item()


@pytest.mark.slow
def test_macs_224():
    from blockzoo.profile import count_macs
    for name, train, deploy, paper, tol in (("unireplknet_a", 674_684_480, 639_843_520, 0.6e9, 0.05e9),
                                            ("unireplknet_t", 5_003_516_800, 4_898_993_920, 4.9e9, 0.03 * 4.9e9)):
        m = create_model(name, init="kaiming")
        assert count_macs(m, (3, 224, 224)).macs == train
        reparameterize(m)
        assert count_macs(m, (3, 224, 224)).macs == deploy
        assert abs(deploy - paper) < tol
