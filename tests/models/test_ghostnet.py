"""blockzoo.models.ghostnet: GhostNet (Han et al., CVPR 2020, arXiv:1911.11907; S098) and GhostNetV2 (Tang et al.,
NeurIPS 2022, arXiv:2211.12905; S042): exact counts from the paper's table written out independently, MACs, the SE
and DFC positions, the head, the small-input variants and the cost claim against MobileNetV2."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from blockzoo import create_model
from blockzoo.blocks.attention.se import SqueezeExcite
from blockzoo.blocks.conv.ghost import GhostBottleneck, GhostModuleV2
from blockzoo.errors import ConfigError, IncompatibleBlockError, InputShapeError
from blockzoo.models.ghostnet import GhostNet
from blockzoo.registry import get_model_spec
from blockzoo.weights import timm_key_map
from helpers import check_macs_224, check_param_count, count_macs, fit_losses, meta_model, n_params

# paper Table 1: (k, #exp, #out, SE, stride)
TABLE = ((3, 16, 16, 0, 1), (3, 48, 24, 0, 2), (3, 72, 24, 0, 1), (5, 72, 40, 1, 2), (5, 120, 40, 1, 1),
         (3, 240, 80, 0, 2), (3, 200, 80, 0, 1), (3, 184, 80, 0, 1), (3, 184, 80, 0, 1), (3, 480, 112, 1, 1),
         (3, 672, 112, 1, 1), (5, 672, 160, 1, 2), (5, 960, 160, 0, 1), (5, 960, 160, 1, 1), (5, 960, 160, 0, 1),
         (5, 960, 160, 1, 1))
WIDTHS = {"ghostnet_050": ("v1", 0.5), "ghostnet_100": ("v1", 1.0), "ghostnet_130": ("v1", 1.3),
          "ghostnetv2_100": ("v2", 1.0), "ghostnetv2_130": ("v2", 1.3), "ghostnetv2_160": ("v2", 1.6)}
PAPER = {"ghostnet_050": (2.6e6, 42e6), "ghostnet_100": (5.2e6, 141e6), "ghostnet_130": (7.3e6, 226e6),
         "ghostnetv2_100": (6.1e6, 167e6), "ghostnetv2_130": (8.9e6, 269e6), "ghostnetv2_160": (12.3e6, 399e6)}


def _div4(v: float) -> int:
    """make_divisible(v, 4) written out: nearest multiple of 4, never below 90 % of v."""
    r = max(4, int(v + 2) // 4 * 4)
    return r + 4 if r < 0.9 * v else r


def _plan(width: float, size: int = 224, small: bool = False):
    """Per bottleneck: (in, mid, out, k, stride, se hidden or 0, input side, output side); stem, last widths."""
    stem = _div4(16 * width)
    h = size if small else math.ceil(size / 2)
    rows, cin, first = [], stem, True
    for k, exp, c, se, s in TABLE:
        if small and s == 2 and first:
            s, first = 1, False
        mid, out = _div4(exp * width), _div4(c * width)
        hout = math.ceil(h / s)
        rows.append((cin, mid, out, k, s, _div4(mid / 4) if se else 0, h, hout))
        cin, h = out, hout
    return stem, rows, _div4(960 * width), h


def _ghost(cin: int, cout: int, params: bool, hw: int = 1) -> int:
    """1x1 primary conv to cout/2, 3x3 depthwise cheap op to cout/2 (+ 2 BNs)."""
    m = math.ceil(cout / 2)
    return (cin * m + 9 * m) * hw + (4 * m if params else 0)


def _dfc(cin: int, cout: int, params: bool, h: int) -> int:
    """DFC gate: 1x1 conv cin -> cout, 1x5 and 5x1 depthwise (+ 3 BNs), at half the input side (floor)."""
    return cin * cout + 10 * cout + 6 * cout if params else (cin * cout + 10 * cout) * (h // 2) ** 2


def _hand(width: float, version: str, params: bool, num_classes: int = 1000, size: int = 224, small: bool = False,
          dfc_first: int = 2) -> int:
    """Parameters (``params=True``) or MACs at ``size`` of GhostNet(V2), from the table alone."""
    stem, rows, last, h = _plan(width, size, small)
    hs = size if small else math.ceil(size / 2)
    total = 27 * stem * (1 if params else hs * hs) + (2 * stem if params else 0)
    for i, (cin, mid, out, k, s, se, hin, hout) in enumerate(rows):
        a, b = (1, 1) if params else (hin * hin, hout * hout)
        total += _ghost(cin, mid, params, a)
        if version == "v2" and i >= dfc_first:
            total += _dfc(cin, mid, params, hin)
        if s == 2:
            total += mid * k * k * b + (2 * mid if params else 0)
        if se:
            total += 2 * mid * se + (se + mid if params else 0)
        total += _ghost(mid, out, params, b)
        if s == 2 or cin != out:
            total += (cin * k * k + cin * out) * b + (2 * cin + 2 * out if params else 0)
    total += rows[-1][2] * last * (1 if params else h * h) + (2 * last if params else 0)
    return total + last * 1280 + 1280 * num_classes + ((1280 + num_classes) if params else 0)


@pytest.mark.parametrize("name", sorted(WIDTHS))
def test_param_counts(name):
    version, w = WIDTHS[name]
    exact = get_model_spec(name).reference["params_1000cls"]
    assert exact == _hand(w, version, params=True)
    check_param_count(name, exact, PAPER[name][0], tol=0.01)   # the papers' rounded figures within 1 %
    assert {"ghostnet_100": 5_182_508, "ghostnetv2_100": 6_156_908}.get(name, exact) == exact


def test_macs_reference_table():
    for name, (version, w) in WIDTHS.items():
        spec = get_model_spec(name)
        assert spec.reference["macs_224"] == _hand(w, version, params=False), name
        assert spec.paper_macs == PAPER[name][1] and abs(spec.reference["macs_224"] / spec.paper_macs - 1) < 0.01
    m = create_model("ghostnetv2_100", num_classes=10)   # the formula against the counter, at 64 px
    assert count_macs(m, (3, 64, 64)) == _hand(1.0, "v2", params=False, num_classes=10, size=64)


@pytest.mark.slow   # two 224 px forwards under the MAC counter
@pytest.mark.parametrize("name", ["ghostnet_100", "ghostnetv2_100"])
def test_macs_224(name):
    assert check_macs_224(name, PAPER[name][1]) == {"ghostnet_100": 141_150_512, "ghostnetv2_100": 167_048_288}[name]


@pytest.mark.slow   # 224 px forwards of both models under the MAC counter
def test_cost_vs_mobilenetv2():
    """The paper: GhostNet beats MobileNetV3 at a similar cost (MobileNetV3 Large 1.0x 5.4M / 219M vs GhostNet 1.3x
    7.3M / 226M; 0.75x 4.0M / 155M vs GhostNet 1.0x 5.2M / 141M). blockzoo has no MobileNetV3; against MobileNetV2
    1.0x (300M in the paper's Table 7) GhostNet 1.0x costs less than half the MACs, with more parameters."""
    g, mb = create_model("ghostnet_100"), create_model("mobilenetv2_100")
    gm, mm = count_macs(g, (3, 224, 224)), count_macs(mb, (3, 224, 224))
    assert (gm, mm) == (141_150_512, 300_774_272)
    assert gm / mm < 0.47
    assert 1.47 < n_params(g) / n_params(mb) < 1.49
    # most of the extra parameters: the 1280-wide layer after pooling, which costs as many MACs as parameters
    assert n_params(g.head_pre) == 960 * 1280 + 1280 > 0.7 * (n_params(g) - n_params(mb))


def test_se_and_dfc_positions():
    """SE where the table says so (7 of 16 bottlenecks), on the hidden width; attn= replaces it there; attn_blocks=
    'all' everywhere. GhostNetV2: DFC-gated first Ghost module from the third bottleneck on (official code)."""
    m = meta_model("ghostnet_100")
    blocks = [b for b in m.modules() if isinstance(b, GhostBottleneck)]
    assert len(blocks) == 16
    assert [isinstance(b.attn, SqueezeExcite) for b in blocks] == [bool(r[3]) for r in TABLE]
    assert [b.attn.hidden for b in blocks if isinstance(b.attn, SqueezeExcite)] == [20, 32, 120, 168, 168, 240, 240]
    eca = [b.attn for b in meta_model("ghostnet_100", attn="eca").modules() if isinstance(b, GhostBottleneck)]
    assert [not isinstance(a, nn.Identity) for a in eca] == [bool(r[3]) for r in TABLE]
    assert not any(isinstance(a, SqueezeExcite) for a in eca)
    every = meta_model("ghostnet_100", attn_blocks="all")
    assert all(isinstance(b.attn, SqueezeExcite) for b in every.modules() if isinstance(b, GhostBottleneck))
    v2 = meta_model("ghostnetv2_100")
    assert [isinstance(b.ghost1, GhostModuleV2) for b in v2.modules() if isinstance(b, GhostBottleneck)] == \
        [False, False] + [True] * 14


def test_v2_dfc_first_block():
    """DFC in all 16 bottlenecks (the paper's text) adds the first two DFC gates: 2,048 parameters and 5.2M MACs at
    224 px (167.0M -> 172.3M), so the paper's 167M is the official placement."""
    base, every = meta_model("ghostnetv2_100"), meta_model("ghostnetv2_100", dfc_first_block=0)
    assert n_params(every) - n_params(base) == (16 * 16 + 10 * 16 + 6 * 16) + (16 * 48 + 10 * 48 + 6 * 48) == 2_048
    delta = _hand(1.0, "v2", False, dfc_first=0) - _hand(1.0, "v2", False)
    assert delta == (16 * 26 + 48 * 26) * 56 * 56 == 5_218_304
    assert abs(_hand(1.0, "v2", False) / 167e6 - 1) < 0.001 < abs(_hand(1.0, "v2", False, dfc_first=0) / 167e6 - 1)


def test_param_counts_small():
    for name, version in (("ghostnet_100_small", "v1"), ("ghostnetv2_100_small", "v2")):
        exact = get_model_spec(name).reference["params_3ch_10cls"]
        assert n_params(meta_model(name)) == exact == _hand(1.0, version, True, num_classes=10, small=True)
    # only strides change, and the block that loses its stride loses its depthwise conv (48 x 9 + 2 x 48)
    assert n_params(meta_model("ghostnet_100", num_classes=10)) - 528 == 3_913_790


def test_small_feature_size():
    """stem="small": stem and the first stride-2 group at stride 1, overall stride 8: 32 px -> 4x4, 28 px -> 4x4."""
    for name in ("ghostnet_100_small", "ghostnetv2_100_small"):
        m = create_model(name).eval()
        assert [f["reduction"] for f in m.feature_info] == [1, 2, 4, 8]
        with torch.no_grad():
            assert m.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 960, 4, 4)
            assert m.forward_features(torch.randn(1, 3, 28, 28)).shape == (1, 960, 4, 4)


def test_feature_info_and_head():
    """Feature maps: the last group at each resolution; forward_features ends with the 1x1 conv to
    960; the head is pool -> Linear(960, 1280) -> ReLU -> dropout -> FC (pre_logits: the 1280 vector)."""
    m = create_model("ghostnet_100", num_classes=10).eval()
    assert [(f["module"], f["num_chs"], f["reduction"]) for f in m.feature_info] == [
        ("blocks.0", 16, 2), ("blocks.2", 24, 4), ("blocks.4", 40, 8), ("blocks.6", 112, 16), ("blocks.8", 160, 32)]
    assert m.num_features == 960 and m.head_hidden_size == 1280 and m.drop_rate == 0.2
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        f = m.forward_features(x)
        pre = m.forward_head(f, pre_logits=True)
        torch.testing.assert_close(pre, torch.relu(m.head_pre[0](f.mean((2, 3)))))
        torch.testing.assert_close(m(x), m.fc(pre))
        m.reset_classifier(3, "max")
        assert m(x).shape == (2, 3)
        torch.testing.assert_close(m.forward_head(f, pre_logits=True), torch.relu(m.head_pre[0](f.amax((2, 3)))))


def test_timm_keys():
    """Hand-checked correspondences to timm's GhostNet state dict (the layout tests check the outputs)."""
    keys = timm_key_map(meta_model("ghostnetv2_100"))
    assert keys["stem.conv.weight"] == "conv_stem.weight" and keys["stem.norm.bias"] == "bn1.bias"
    assert keys["blocks.3.0.ghost1.primary_conv.norm.weight"] == "blocks.3.0.ghost1.primary_conv.1.weight"
    assert keys["blocks.3.0.ghost1.cheap_operation.conv.weight"] == "blocks.3.0.ghost1.cheap_operation.0.weight"
    assert keys["blocks.3.0.ghost1.dfc.conv_h.weight"] == "blocks.3.0.ghost1.short_conv.2.weight"
    assert keys["blocks.3.0.ghost1.dfc.bn_v.running_var"] == "blocks.3.0.ghost1.short_conv.5.running_var"
    assert keys["blocks.3.0.conv_dw.norm.bias"] == "blocks.3.0.bn_dw.bias"
    assert keys["blocks.3.0.attn.fc2.weight"] == "blocks.3.0.se.conv_expand.weight"
    assert keys["blocks.3.0.shortcut.3.weight"] == "blocks.3.0.shortcut.3.weight"
    assert keys["conv_last.norm.weight"] == "blocks.9.0.bn1.weight"
    assert keys["head_pre.0.weight"] == "conv_head.weight" and keys["fc.bias"] == "classifier.bias"


def test_bad_options_and_sizes():
    with pytest.raises(ConfigError, match="width"):
        GhostNet(width=0)
    with pytest.raises(ConfigError, match="version"):
        GhostNet(version="v3")
    with pytest.raises(ConfigError, match="dfc_first_block"):
        create_model("ghostnetv2_100", dfc_first_block=-1)
    with pytest.raises(ConfigError, match="only applies to GhostNetV2"):
        create_model("ghostnet_100", dfc_first_block=0)
    for bad in ("se(reduction=0)", "se(reduction='x')", "se(reduction=True)"):   # refused by the se block
        with pytest.raises(ConfigError, match="reduction"):
            create_model("ghostnet_050", attn=bad)
    with pytest.raises(ConfigError, match="attn_blocks"):
        create_model("ghostnet_100", attn_blocks="some")
    with pytest.raises(ConfigError, match="stem"):
        create_model("ghostnet_100", stem="cifar10")
    with pytest.raises(IncompatibleBlockError, match="DFC"):     # the last stage sees 1x1 at 32 px
        create_model("ghostnetv2_100", img_size=32)
    m = create_model("ghostnetv2_100", num_classes=10)
    assert m.min_input_size() == 33                              # DFC needs 2x2 at overall stride 32
    with pytest.raises(InputShapeError, match="at least 33x33"):
        m(torch.randn(1, 3, 32, 32))


@pytest.mark.slow   # a few seconds: 6 steps of a 3.9M-parameter model at 32 px
def test_small_variant_trains():
    torch.manual_seed(0)
    m = create_model("ghostnet_100_small", num_classes=4)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
    losses = fit_losses(m, x, y, steps=6, lr=3e-3)
    assert losses[-1] < 0.5 * losses[0]
