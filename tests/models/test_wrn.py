"""blockzoo.models.wrn: exact parameter counts and the pre-activated shortcut input."""
import pytest
import torch

from blockzoo import create_model
from helpers import nparams

EXACT = [  # (model, kwargs, params) at 3 input channels, 10 classes
    ("wrn_28_10", {}, 36_479_194), ("wrn_16_8", {}, 10_961_370), ("wrn_40_4", {}, 8_949_210),
]


@pytest.mark.parametrize("name,kw,expected", EXACT, ids=[f"{n}{'-' + str(k) if k else ''}" for n, k, _ in EXACT])
def test_param_counts(name, kw, expected):
    assert nparams(create_model(name, in_chans=3, **kw)) == expected


def test_wrn_shortcut_uses_preactivated_input():
    m = create_model("wrn_16_1", in_chans=1, img_size=28).eval()
    blk = m.groups[1][0]   # 16 -> 32 channels, stride 2: has a 1x1 projection
    assert blk.proj is not None and blk.proj.stride == (2, 2)
    x = torch.randn(2, 16, 8, 8)
    o1 = blk.act0(blk.bn0(x))
    expected = blk.conv1(blk.act1(blk.bn1(blk.conv0(o1)))) + blk.proj(o1)
    assert torch.allclose(blk(x), expected, atol=1e-6)
