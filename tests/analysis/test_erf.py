"""The effective receptive field: footprints of hand-built conv stacks, the area ratios, layer names."""
import pytest
import torch
import torch.nn as nn

from blockzoo.analysis import erf
from blockzoo.analysis.erf import erf_areas, plot_erf
from blockzoo.errors import ConfigError


def _support(emap: torch.Tensor) -> tuple[int, int, int, int]:
    """(row start, row stop, col start, col stop) of the non-zero part of a map."""
    rows = torch.nonzero(emap.sum(1) > 0).flatten()
    cols = torch.nonzero(emap.sum(0) > 0).flatten()
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_single_conv_erf_is_its_kxk_footprint(k):
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, k, padding=k // 2)
    res = erf(conv, torch.randn(3, 2, 15, 15), layer="")
    c = 15 // 2
    assert _support(res.map) == (c - k // 2, c + k // 2 + 1, c - k // 2, c + k // 2 + 1)
    assert (res.map[c - k // 2:c + k // 2 + 1, c - k // 2:c + k // 2 + 1] > 0).all()   # every tap contributes
    # the whole contribution lies in the k x k square: the 99% square is at most k wide
    assert res.areas[0.99]["side"] <= k
    assert erf_areas(res.map, (1.0,))[1.0] == {"side": k, "ratio": k * k / 225}


def test_two_stacked_3x3_convs_give_5x5():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))
    res = erf(net, torch.randn(2, 1, 13, 13), layer="1")
    assert _support(res.map) == (4, 9, 4, 9)
    assert erf_areas(res.map, (1.0,), log_scale=False)[1.0]["side"] == 5
    first = erf(net, torch.randn(2, 1, 13, 13), layer="0")
    assert _support(first.map) == (5, 8, 5, 8)


def test_erf_map_is_the_hand_computed_gradient():
    """One 3x3 conv, one output channel: the gradient of the centre output w.r.t. the input is the kernel itself."""
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    w = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0], [2.0, 1.0, -0.25]])
    conv.weight.data.copy_(w.view(1, 1, 3, 3))
    res = erf(conv, torch.randn(4, 1, 5, 5), layer="")
    expected = torch.zeros(5, 5)
    expected[1:4, 1:4] = 4 * w.abs()                          # |grad| summed over the 4 images
    torch.testing.assert_close(res.map, expected)
    official = erf(conv, torch.ones(1, 1, 5, 5), layer="", official=True)   # ReLU'd gradient: positive taps only
    pos = torch.zeros(5, 5)
    pos[1:4, 1:4] = w.clamp_min(0)
    centre_out = float((w * torch.ones(3, 3)).sum())
    torch.testing.assert_close(official.map, pos if centre_out > 0 else torch.zeros(5, 5))


def test_area_ratios_hand_computed():
    emap = torch.zeros(5, 5)
    emap[2, 2] = 6.0
    emap[1:4, 1:4] += 1.0     # centre 7, ring of eight 1s: total 15
    emap[0, 0] = 1.0          # total 16
    areas = erf_areas(emap, (0.4, 0.5, 0.99), log_scale=False)
    assert areas[0.4] == {"side": 1, "ratio": 1 / 25}       # 7/16 = 0.4375
    assert areas[0.5] == {"side": 3, "ratio": 9 / 25}       # 15/16
    assert areas[0.99] == {"side": 5, "ratio": 1.0}
    with pytest.raises(ConfigError):
        erf_areas(emap, (0.0,))


def test_wrong_layer_lists_the_feature_maps(tmp_path):
    from blockzoo import create_model
    model = create_model("resnet20", num_classes=10, in_chans=1)
    with pytest.raises(ConfigError, match=r"stem\.2, layers\.0, layers\.1, layers\.2"):
        erf(model, torch.randn(1, 1, 28, 28), layer="nope")
    res = erf(model, torch.randn(2, 1, 28, 28), layer=1)   # a feature_info index
    assert res.layer == model.feature_info[1]["module"]
    assert erf(model, torch.randn(1, 1, 28, 28)).layer == model.feature_info[-1]["module"]
    path = plot_erf([("resnet20", res)], tmp_path / "erf.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_non_feature_map_layer_is_refused():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 9, 3))
    with pytest.raises(ConfigError, match="NCHW"):
        erf(net, torch.randn(1, 1, 5, 5), layer="2")
