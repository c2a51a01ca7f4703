"""blockzoo.models.mgic: MGIC ResNets and MGIC-MobileNetV2 (S106): exact parameter counts (one by hand), linear growth
with the width, the MGIC block structure, small-input variants that train, MACs, bad options."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from blockzoo import ConfigError, create_model
from blockzoo.blocks.conv.mgic import MGICConv, MGICLevel
from blockzoo.models.common.resnet import BasicBlock, ResNet
from blockzoo.models.mgic import MGICBasicLevel, MGICInvertedResidualLevel, MGICResNet
from blockzoo.registry import get_model_spec
from helpers import count_macs, meta_params, n_params


def _basic(c: int, groups: int) -> int:
    """Two grouped 3x3 convs (no bias) + two BNs."""
    return 2 * (c * (c // groups) * 9 + 2 * c)


def _cycle(c: int, g: int = 16) -> int:
    """Basic-block V-cycle on c channels: per fine level R and P (c g / 2 each), the prolongation BN and the grouped
    basic block; a dense basic block on the coarsest (<= g channels)."""
    if c <= g:
        return _basic(c, 1)
    return c * g + 2 * c + _basic(c, c // g) + _cycle(c // 2, g)


def _mgic_resnet_cifar(n: int, classes: int = 10) -> int:
    """MGIC-ResNet-(6n+2), widths 16/32/64: stem conv + BN, n MGIC blocks per stage, connectors 16->32 (16 groups) and
    32->64 (32 groups), each a 3x3 conv with one input channel per group + BN; FC."""
    stem = 3 * 16 * 9 + 32
    connectors = (32 * 9 + 64) + (64 * 9 + 128)
    return stem + n * (_cycle(16) + _cycle(32) + _cycle(64)) + connectors + 64 * classes + classes


def test_resnet_param_counts():
    assert _cycle(64) == 512 + 512 + 128 + 18688 + _cycle(32) and _cycle(32) == 256 + 256 + 64 + 9344 + 4672
    for name, n, dense in (("mgic_resnet20", 3, "resnet20"), ("mgic_resnet56", 9, "resnet56")):
        ours = n_params(create_model(name))
        assert ours == _mgic_resnet_cifar(n) == get_model_spec(name).reference["params_3ch_10cls"]
        assert ours < 0.62 * n_params(create_model(dense))   # resnet20: 269,722; resnet56: 853,018
    assert n_params(create_model("mgic_resnet20")) == 163_258


def test_mgic_resnet_linear_in_width():
    """Widths (w, 2w, 4w): the MGIC ResNet-20's parameters are affine in w (increments double when w doubles), the
    ResNet-20's grow about 4x per doubling."""
    ws = (16, 32, 64, 128)
    with torch.device("meta"):
        mg = [n_params(MGICResNet((3, 3, 3), (w, 2 * w, 4 * w))) for w in ws]
        dense = [n_params(ResNet(BasicBlock, (3, 3, 3), (w, 2 * w, 4 * w), num_classes=10, stem="cifar",
                                 stem_width=w, shortcut="A")) for w in ws]
    for i in range(len(ws) - 2):
        assert mg[i + 2] - mg[i + 1] == 2 * (mg[i + 1] - mg[i])
        assert (dense[i + 2] - dense[i + 1]) / (dense[i + 1] - dense[i]) > 3.9


def test_mgic_resnet_block_structure():
    m = create_model("mgic_resnet20")
    first = m.stages[1][0]
    assert isinstance(first, MGICConv) and first.levels == [32, 16]
    conn = first.connector.conv
    assert conn.stride == (2, 2) and conn.groups == 16 and conn.kernel_size == (3, 3)
    last = m.stages[2][2]
    assert isinstance(last.connector, nn.Identity) and last.levels == [64, 32, 16]
    level, groups = last.cycle, []
    while isinstance(level, MGICLevel):
        assert isinstance(level.block, MGICBasicLevel)
        groups.append(level.block.conv1.conv.groups)
        level = level.coarse
    assert groups == [4, 2] and isinstance(level, MGICBasicLevel) and level.conv1.conv.groups == 1
    assert all(isinstance(b.cycle, MGICBasicLevel) for b in m.stages[0])   # 16 channels: one fully coupled level


def test_inverted_residual_level():
    """32 channels, 2 groups, t = 6: 1x1 32 -> 192 (2 groups) + BN, depthwise 3x3 + BN, 1x1 192 -> 32 (2 groups) + BN,
    and the identity: zeroing the projection BN makes the block the identity."""
    lvl = MGICInvertedResidualLevel(32, 2, 6).eval()
    assert n_params(lvl) == (192 * 16 + 384) + (192 * 9 + 384) + (32 * 96 + 64)
    assert lvl.conv_pw.conv.groups == 2 and lvl.conv_dw.conv.groups == 192 and lvl.conv_pwl.conv.groups == 2
    nn.init.zeros_(lvl.conv_pwl.norm.weight)
    x = torch.randn(1, 32, 5, 5)
    assert torch.equal(lvl(x), x)
    assert isinstance(MGICInvertedResidualLevel(16, 1, 1).conv_pw, nn.Identity)


def test_mobilenet_param_counts():
    ours = meta_params("mgic_mobilenetv2_100")
    assert ours == 2_506_968 == get_model_spec("mgic_mobilenetv2_100").reference["params_1000cls"]
    assert ours < 0.72 * meta_params("mobilenetv2_100")   # 3,504,872
    small = n_params(create_model("mgic_mobilenetv2_100_small"))
    assert small == 1_238_778 == get_model_spec("mgic_mobilenetv2_100_small").reference["params_3ch_10cls"]
    assert small < n_params(create_model("mobilenetv2_100_small"))


@pytest.mark.slow  # a 224 px forward under the MAC counter
def test_mobilenet_macs_224():
    macs = count_macs(create_model("mgic_mobilenetv2_100"), (3, 224, 224))
    assert macs == get_model_spec("mgic_mobilenetv2_100").reference["macs_224"] == 194_546_976
    assert macs < 0.65 * count_macs(create_model("mobilenetv2_100"), (3, 224, 224))   # 300,774,272


def test_small_macs_32():
    for name in ("mgic_resnet20", "mgic_resnet56", "mgic_mobilenetv2_100_small"):
        assert count_macs(create_model(name), (3, 32, 32)) == get_model_spec(name).reference["macs_32"]


@pytest.mark.parametrize("name", ["mgic_resnet20", "mgic_mobilenetv2_100_small"])
def test_small_variants_train_a_step(name):
    torch.manual_seed(0)
    m = create_model(name, in_chans=1, img_size=28)
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    losses = []
    for _ in range(3):
        loss = nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


def test_small_feature_sizes():
    m = create_model("mgic_mobilenetv2_100_small").eval()
    r = create_model("mgic_resnet20").eval()
    with torch.no_grad():
        assert m.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 1280, 4, 4)
        assert r.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 64, 8, 8)
    assert [f["reduction"] for f in r.feature_info] == [1, 1, 2, 4]
    assert [f["reduction"] for f in m.feature_info] == [1, 2, 4, 8]


def test_bad_options():
    with pytest.raises(ConfigError, match="group_size must be even"):
        create_model("mgic_resnet20", group_size=3)
    with pytest.raises(ConfigError, match="stem"):
        create_model("mgic_mobilenetv2_100", stem="cifar10")
    with pytest.raises(ConfigError, match="one entry per stage"):
        MGICResNet((3, 3), (16, 32, 64))
