"""blockzoo.models.sknet: SKNet-50/101 and SK-ResNet-20 (S097): exact parameter counts and MACs."""
from __future__ import annotations

import pytest
import torch

from blockzoo import create_model
from blockzoo.blocks.conv.sk import SelectiveKernel
from blockzoo.models.sknet import SKNET50_PARAMS, SKNET101_PARAMS, SKRESNET20_PARAMS
from helpers import nparams


def test_sknet50_params():
    with torch.device("meta"):
        m = create_model("sknet50")
    assert nparams(m) == SKNET50_PARAMS == 27_479_784
    assert abs(SKNET50_PARAMS / 27.5e6 - 1) < 0.01
    # ResNeXt-50 32x4d body: SK widths 128/256/512/1024, G = 32, d = max(C/16, 32), stride in the first SK of stages 2-4
    units = [mod for mod in m.modules() if isinstance(mod, SelectiveKernel)]
    assert len(units) == 16
    firsts = [units[0], units[3], units[7], units[13]]
    assert [u.out_channels for u in firsts] == [128, 256, 512, 1024]
    assert [u.hidden for u in firsts] == [32, 32, 32, 64]
    assert [u.branches[1].conv.stride[0] for u in firsts] == [1, 2, 2, 2]
    assert all(u.branches[0].conv.groups == 32 for u in units)
    # = ResNeXt-50 32x4d + the SK additions
    with torch.device("meta"):
        rx = create_model("sknet50", conv="conv3x3")
    assert nparams(rx) == 25_028_904


def test_sknet101_params():
    with torch.device("meta"):
        m = create_model("sknet101")
    assert nparams(m) == SKNET101_PARAMS
    assert abs(SKNET101_PARAMS / 48.9e6 - 1) < 0.01


@pytest.mark.slow
def test_sknet50_macs():
    from blockzoo.profile.counting import count_macs
    with torch.device("meta"):
        m = create_model("sknet50")
        macs = count_macs(m, (3, 224, 224)).macs
    assert macs == 4_462_710_784
    assert abs(macs / 4.47e9 - 1) < 0.03


def test_skresnet20():
    m = create_model("skresnet20")
    extra = 0   # SK additions over resnet20: second branch conv + BN, fuse FC + BN, select FCs (d = 32)
    for cin, cout in [(16, 16)] * 3 + [(16, 32), (32, 32), (32, 32), (32, 64), (64, 64), (64, 64)]:
        extra += cout * cin * 9 + 2 * cout + cout * 32 + 2 * 32 + 32 * 2 * cout
    assert nparams(m) == SKRESNET20_PARAMS == nparams(create_model("resnet20")) + extra
    small = create_model("skresnet20", in_chans=1, num_classes=7, img_size=28)
    assert small(torch.randn(2, 1, 28, 28)).shape == (2, 7)
