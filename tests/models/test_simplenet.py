"""blockzoo.models.simplenet: SimpleNet (Hasanpour et al., arXiv:1608.06037; S020): parameter counts and MACs against
the official PyTorch models and hand formulas, the layer layout, the official quirks as options, a 32 px net that
trains."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from blockzoo import ConfigError, create_model
from blockzoo.blocks.attention.eca import ECA
from blockzoo.blocks.attention.se import SqueezeExcite
from blockzoo.blocks.common.layers import ConvNormAct
from blockzoo.blocks.conv.sk import SelectiveKernel
from blockzoo.models.simplenet import SimpleNet, conv_bias_count
from blockzoo.registry import get_model_spec
from helpers import count_macs, fit_losses, meta_model, meta_params, n_params

# the paper's / official CIFAR table (simplenet_cifar_5m): channels, "1" marks the 1x1 layers, "P" the 2x2 max pools
CIFAR_5M = [64, 128, 128, 128, "P", 128, 128, 256, "P", 256, 256, "P", 512, (2048, 1), (256, 1), "P", 256]
# the official models (counted once with Coderx7/SimpleNet_Pytorch's code: conv biases included; conv + linear MACs)
OFFICIAL = {
    "simplenet_cifar_5m": (5_498_378, 652_151_296), "simplenet_cifar_310k": (312_362, 55_788_160),
    "simplenetv1_small_m1_05": (1_506_792, 340_923_392), "simplenetv1_small_m2_05": (1_506_792, 427_627_520),
    "simplenetv1_small_m1_075": (3_287_272, 758_853_120), "simplenetv1_small_m2_075": (3_287_272, 953_937_408),
    "simplenetv1_5m_m1": (5_752_808, 1_341_761_536), "simplenetv1_5m_m2": (5_752_808, 1_688_578_048),
    "simplenetv1_9m_m1": (9_508_968, 2_774_249_984), "simplenetv1_9m_m2": (9_508_968, 3_554_587_136),
}
PAPER = {"simplenet_cifar_5m": 5.48e6, "simplenet_cifar_310k": 310e3, "simplenetv1_5m_m1": 5.7e6,
         "simplenetv1_9m_m1": 9.5e6, "simplenetv1_small_m1_05": 1.5e6}


def _hand(table, size: int, strides=(), classes: int = 10, in_ch: int = 3, bias: bool = False, pad_1x1: bool = False):
    """(parameters, MACs) of a SimpleNet table by hand: conv (+ bias) + BN per layer, the classifier."""
    p = m = 0
    h, cin, idx = size, in_ch, 0
    for idx, e in enumerate(table):
        if e == "P":
            h //= 2
            continue
        c, k = e if isinstance(e, tuple) else (e, 3)
        if k == 1 and pad_1x1:
            h += 2
        s = 2 if idx in strides else 1
        h = math.ceil(h / s)
        p += k * k * cin * c + 2 * c + (c if bias else 0)
        m += h * h * k * k * cin * c
        cin = c
    return p + cin * classes + classes, m + cin * classes


def test_param_counts():
    official, _ = _hand(CIFAR_5M, 32, bias=True)
    assert official == OFFICIAL["simplenet_cifar_5m"][0] == 5_498_378
    assert meta_params("simplenet_cifar_5m") == _hand(CIFAR_5M, 32)[0] == official - 4_544
    for name, (count, _) in OFFICIAL.items():
        spec = get_model_spec(name)
        ours = meta_params(name)
        key = "params_3ch_10cls" if spec.num_classes == 10 else "params_1000cls"
        assert ours == count - conv_bias_count(name) == spec.reference[key], name
        assert spec.reference["official_params"] == count
    for name, paper in PAPER.items():
        assert abs(meta_params(name) - paper) <= 0.01 * paper, name
    assert abs(meta_params("simplenetv1_small_m1_075") - 3.2e6) <= 0.03 * 3.2e6   # the README's rounded "3.2M"


def test_macs_small():
    """MACs at 32 px: the official count and the hand formula; the 2023 padded 1x1 convs cost more (larger maps)."""
    m = create_model("simplenet_cifar_5m")
    assert count_macs(m, (3, 32, 32)) == _hand(CIFAR_5M, 32)[1] == OFFICIAL["simplenet_cifar_5m"][1]
    padded = create_model("simplenet_cifar_5m", pad_1x1=True)
    assert n_params(padded) == n_params(m)
    assert count_macs(padded, (3, 32, 32)) == _hand(CIFAR_5M, 32, pad_1x1=True)[1] > OFFICIAL["simplenet_cifar_5m"][1]
    assert count_macs(create_model("simplenet_cifar_310k"), (3, 32, 32)) == OFFICIAL["simplenet_cifar_310k"][1]


def test_stride_modes_by_hand():
    """The ImageNet stride modes at 64 px: m1 strides layers 1-3, m2 layers 1, 2 and 4 (hand formula)."""
    table = [64, 128, 128, 128, 128, 128, "P", 256, 256, 256, 512, "P", (2048, 1), (256, 1), 256]
    for name, strides in (("simplenetv1_5m_m1", (0, 1, 2)), ("simplenetv1_5m_m2", (0, 1, 3))):
        p, m = _hand(table, 64, strides, classes=1000)
        assert count_macs(create_model(name), (3, 64, 64)) == m
        assert meta_params(name) == p


@pytest.mark.slow
def test_macs_224():
    for name, (_, macs) in OFFICIAL.items():
        if "cifar" not in name:
            assert count_macs(create_model(name), (3, 224, 224)) == macs == get_model_spec(name).reference["macs_224"]


def test_thirteen_layers():
    """13 convolutions (11 3x3 + two 1x1), each followed by BN (momentum 0.05) and ReLU; 2x2 max pools; no shortcut;
    global max pooling before the classifier."""
    for name in OFFICIAL:
        m = meta_model(name)
        convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
        assert len(convs) == 13 and [c.kernel_size[0] for c in convs].count(1) == 2, name
        bns = [b for b in m.modules() if isinstance(b, nn.BatchNorm2d)]
        assert len(bns) == 13 and all(b.momentum == 0.05 for b in bns)
        pools = [p for p in m.modules() if isinstance(p, nn.MaxPool2d)]
        assert len(pools) == (4 if "cifar" in name else 2) and all(p.kernel_size == 2 == p.stride for p in pools)
    m = create_model("simplenet_cifar_310k").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        f = m.forward_features(x)
        assert f.shape == (2, 64, 2, 2)
        assert torch.allclose(m.forward_head(f), m.fc(f.amax((2, 3))))   # global max pooling


def test_feature_drop_placement():
    """feature_drop: Dropout2d after every conv unit not followed by a pool and after every pool (the official
    table's None / 0.0 entries): 8 + 4 in the CIFAR net; none by default."""
    m = meta_model("simplenet_cifar_5m", feature_drop=0.2)
    kinds = [[type(u).__name__ for u in s] for s in m.stages]
    d, u, p = "Dropout2d", "ConvNormAct", "MaxPool2d"
    assert kinds == [[u, d, u, d, u, d, u], [p, d, u, d, u, d, u], [p, d, u, d, u], [p, d, u, d, u, d, u], [p, d, u]]
    assert all(x.p == 0.2 for x in m.modules() if isinstance(x, nn.Dropout2d))
    assert not any(isinstance(x, nn.Dropout2d) for x in meta_model("simplenet_cifar_5m").modules())


def test_pad_1x1_grows_the_map():
    m = create_model("simplenet_cifar_5m", pad_1x1=True).eval()
    with torch.no_grad():
        _, maps = m.forward_intermediates(torch.randn(1, 3, 32, 32))
    assert [t.shape[-1] for t in maps] == [32, 16, 8, 8, 4]   # the 1x1 layers: 4 -> 6 -> 8
    assert [t.shape[-1] for t in create_model("simplenet_cifar_5m").forward_intermediates(
        torch.randn(1, 3, 32, 32), intermediates_only=True)] == [32, 16, 8, 4, 2]


def test_conv_and_attn_slots():
    m = meta_model("simplenet_cifar_310k", conv="sk")
    assert sum(isinstance(x, SelectiveKernel) for x in m.modules()) == 11   # every 3x3 layer, not the 1x1 ones
    a = meta_model("simplenet_cifar_310k", attn=["se", "none", "none", "none", "eca"])
    assert [type(s[-1]) for s in a.stages] == [SqueezeExcite, ConvNormAct, ConvNormAct, ConvNormAct, ECA]
    assert n_params(a) > meta_params("simplenet_cifar_310k")


def test_official_init():
    m = create_model("simplenet_cifar_310k")
    w = m.stages[1][1].conv.weight
    bound = math.sqrt(2) * math.sqrt(6 / (w.shape[1] * 9 + w.shape[0] * 9))   # xavier-uniform, ReLU gain
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound


@pytest.mark.parametrize("name,kw", [("simplenet_cifar_5m", dict(stride_mode=1)),
                                     ("simplenetv1_5m_m1", dict(stride_mode=5)),
                                     ("simplenetv1_5m_m1", dict(width=0.0)), ("simplenet_cifar_5m", dict(width=-1.0)),
                                     ("simplenet_cifar_5m", dict(feature_drop=1.0)),
                                     ("simplenet_cifar_5m", dict(feature_drop=-0.1))])
def test_bad_options(name, kw):
    with pytest.raises(ConfigError, match="stride_mode|width|feature_drop"):
        create_model(name, **kw)


def test_bad_table():
    with pytest.raises(ConfigError, match="table"):
        SimpleNet(table="cifar_1m")


def test_small_trains():
    """The paper's slim CIFAR net (310K) fits a fixed 32 px batch: the loss falls."""
    torch.manual_seed(0)
    m = create_model("simplenet_cifar_310k", num_classes=4)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
    losses = fit_losses(m, x, y, steps=6, lr=3e-3)
    assert losses[-1] < 0.7 * losses[0]
