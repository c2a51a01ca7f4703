"""blockzoo.models.mobilenetv2: MobileNetV2 (Sandler et al., CVPR 2018, arXiv:1801.04381; S071): exact counts, block
rules, attention placement."""
from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from blockzoo.blocks.common.inverted_residual import InvertedResidual
from blockzoo.models.base import PerBlock
from blockzoo.models.mobilenetv2 import ATTN_RULES, MobileNetV2, attn_rule, eca_official_k
from blockzoo.registry import create_model, get_info, get_model_spec, list_models
from helpers import n_params

TABLE = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


WIDTHS = {"mobilenetv2_035": 0.35, "mobilenetv2_050": 0.5, "mobilenetv2_075": 0.75, "mobilenetv2_100": 1.0,
          "mobilenetv2_140": 1.4}


def _div8(v: float) -> int:
    """The reference make_divisible(v, 8), written out independently."""
    r = max(8, int(v + 4) // 8 * 8)
    return r + 8 if r < 0.9 * v else r


def _plan(width: float, small: bool = False, size: int = 224):
    """Hand-derived layer plan: stem channels, blocks (in, hidden, out, stride, H_out), head channels."""
    stem = _div8(32 * width)
    h = size if small else math.ceil(size / 2)
    blocks, cin, first = [], stem, True
    for t, c, n, s in TABLE:
        cout = _div8(c * width)
        if small and s == 2 and first:
            s = 1
        if s == 2:
            first = False
        for i in range(n):
            st = s if i == 0 else 1
            h = math.ceil(h / st)
            blocks.append((cin, cin * t, cout, st, h))
            cin = cout
    head = _div8(1280 * width) if width > 1 else 1280
    return stem, blocks, head, h


def _hand_params(width: float, num_classes: int = 1000, in_chans: int = 3) -> int:
    stem, blocks, head, _ = _plan(width)
    p = 9 * in_chans * stem + 2 * stem
    for cin, hid, cout, _, _ in blocks:
        if hid != cin:
            p += cin * hid + 2 * hid       # 1x1 expansion + BN
        p += 9 * hid + 2 * hid             # 3x3 depthwise + BN
        p += hid * cout + 2 * cout         # 1x1 linear projection + BN
    last = blocks[-1][2]
    return p + last * head + 2 * head + head * num_classes + num_classes


def _hand_macs(width: float, size: int = 224, num_classes: int = 1000) -> int:
    stem, blocks, head, h = _plan(width, size=size)
    hs = math.ceil(size / 2)
    m, hin = hs * hs * 27 * stem, hs
    for cin, hid, cout, _stride, hout in blocks:
        if hid != cin:
            m += hin * hin * cin * hid
        m += hout * hout * hid * 9 + hout * hout * hid * cout
        hin = hout
    return m + h * h * blocks[-1][2] * head + head * num_classes


def _count_macs(model: nn.Module, size: tuple[int, int, int]) -> int:
    try:
        from blockzoo.profile import count_macs
        return count_macs(model, size).macs
    except ImportError:  # pragma: no cover - fallback while the profiler is being written
        from torch.utils.flop_counter import FlopCounterMode
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(torch.randn(1, *size))
        return fc.get_total_flops() // 2


def _ca_params(c: int) -> int:
    mip = max(8, c // 32)
    return c * mip + mip + 2 * mip + 2 * (mip * c + c)


def _call_order(block: InvertedResidual, x: torch.Tensor) -> list[tuple[str, int]]:
    calls: list[tuple[str, int]] = []
    hooks = [getattr(block, n).register_forward_hook(lambda mod, inp, out, n=n: calls.append((n, inp[0].shape[1])))
             for n in ("conv_pw", "conv_dw", "attn", "conv_pwl")]
    try:
        block(x)
    finally:
        for h in hooks:
            h.remove()
    return calls


def _attn_call(model: MobileNetV2, i: int) -> tuple[int, int]:
    """(index of attn in the call order, channels it sees) for block i."""
    blk = model.blocks[i]
    order = _call_order(blk, torch.randn(1, blk.in_channels, 6, 6))
    names = [n for n, _ in order]
    return names.index("attn"), order[names.index("attn")][1]


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0


def test_param_counts_imagenet():
    assert n_params(create_model("mobilenetv2_100")) == 3_504_872  # torchvision / timm mobilenet_v2
    for name, w in WIDTHS.items():
        m = create_model(name)
        assert n_params(m) == _hand_params(w), name
        assert get_model_spec(name).reference["params_1000cls"] == n_params(m), name
    # the paper's published sizes (Table 4 / TF slim README) within 2% (x1.4: the paper's 6.9M is not the model)
    for name in ("mobilenetv2_035", "mobilenetv2_050", "mobilenetv2_075", "mobilenetv2_100"):
        spec = get_model_spec(name)
        assert abs(spec.reference["params_1000cls"] / spec.paper_params - 1) < 0.031, name


def test_param_counts_small():
    for name, w in (("mobilenetv2_050_small", 0.5), ("mobilenetv2_100_small", 1.0)):
        m = create_model(name)
        assert n_params(m) == _hand_params(w, num_classes=10) == get_model_spec(name).reference["params_3ch_10cls"]
    assert n_params(create_model("mobilenetv2_100_small")) == 2_236_682
    assert n_params(create_model("mobilenetv2_050_small")) == 700_490
    # only strides change: same parameters as the ImageNet model
    assert n_params(create_model("mobilenetv2_100", num_classes=10)) == 2_236_682
    assert n_params(create_model("mobilenetv2_100_small", in_chans=1)) == 2_236_682 - 2 * 9 * 32


@pytest.mark.slow  # ~3 s on one thread (profiler warm-up + a 224 px forward)
def test_macs_224():
    m = create_model("mobilenetv2_100")
    macs = _count_macs(m, (3, 224, 224))
    assert macs == _hand_macs(1.0) == 300_774_272
    assert abs(macs / 300e6 - 1) < 0.03


def test_macs_reference_table():
    assert _hand_macs(1.0) == 300_774_272
    for name, w in WIDTHS.items():
        spec = get_model_spec(name)
        assert spec.reference["macs_224"] == _hand_macs(w), name
        assert abs(spec.reference["macs_224"] / spec.paper_macs - 1) < 0.03, name


def test_coord_overhead():
    """CA paper: MobileNetV2 3.5M / 300M -> +CA 3.95M / 310M ("nearly no computational overhead")."""
    base, ca = create_model("mobilenetv2_100"), create_model("mobilenetv2_100", attn="coord")
    _, blocks, _, _ = _plan(1.0)
    hand = sum(_ca_params(hid) for cin, hid, *_ in blocks if hid != cin)   # official code: no CA in the t = 1 block
    assert n_params(ca) - n_params(base) == hand == 445_776
    assert n_params(ca) == 3_950_648
    assert abs(n_params(ca) / 3.95e6 - 1) < 0.005
    # conv MACs of CA: shared 1x1 on the (H + W) pooled vectors, then two 1x1 convs back to C
    delta = sum(2 * hid * max(8, hid // 32) * 2 * h for cin, hid, _, _, h in blocks if hid != cin)
    mb = _hand_macs(1.0)
    assert delta == 5_892_096
    assert delta / mb < 0.03                             # "nearly no computational overhead"
    assert abs((mb + delta) / 310e6 - 1) < 0.03          # paper: 310M
    # + the two elementwise products x * a_w * a_h (not counted by count_macs) gives the paper's +10M
    elementwise = sum(2 * hid * h * h for cin, hid, _, _, h in blocks if hid != cin)
    assert elementwise == 3_800_832 and abs((mb + delta + elementwise) / 310e6 - 1) < 0.005


@pytest.mark.slow  # two 224 px forwards under the MAC counter
def test_coord_overhead_macs():
    base, ca = create_model("mobilenetv2_100"), create_model("mobilenetv2_100", attn="coord")
    mb, mc = _count_macs(base, (3, 224, 224)), _count_macs(ca, (3, 224, 224))
    assert (mb, mc) == (300_774_272, 306_666_368)
    assert (mc - mb) / mb < 0.03 and abs(mc / 310e6 - 1) < 0.03


def test_eca_params_per_module():
    base = n_params(create_model("mobilenetv2_100"))
    m = create_model("mobilenetv2_100", attn="eca")
    ks = [b.attn.k_size for b in m.blocks]
    for b in m.blocks:                                   # exactly k parameters per module
        assert n_params(b.attn) == b.attn.k_size
    # paper formula on C_out = 16, 24 x2, 32 x3, 64 x4, 96 x3 -> 3; 160 x3, 320 -> 5
    assert ks == [3] * 13 + [5] * 4
    assert n_params(m) - base == 59
    off = create_model("mobilenetv2_100", attn="eca", eca_k_official=True)
    assert [b.attn.k_size for b in off.blocks] == [1] * 13 + [3] * 4   # released: k = 1 if c <= 96 else 3
    assert n_params(off) - base == 25
    assert [eca_official_k(c) for c in (16, 96, 160, 320)] == [1, 1, 3, 3]
    with pytest.raises(ValueError, match="eca_k_official"):
        create_model("mobilenetv2_100", attn="se", eca_k_official=True)


def test_attn_per_stage_limits_blocks_to_chosen_stages():
    # stage rows (n = 1, 2, 3, 4, 3, 3, 1): stages 5 and 6 are the last 4 blocks
    m = create_model("mobilenetv2_050_small", in_chans=1, num_classes=10,
                     attn=PerBlock(lambda stage, block: "nonlocal" if stage >= 5 else "none"))
    has = [not isinstance(b.attn, nn.Identity) for b in m.blocks]
    assert has == [False] * 13 + [True] * 4
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_width_rounding():
    def chans(name):
        m = create_model(name)
        outs = [b.out_channels for b in m.blocks]
        return m.stem.conv.out_channels, sorted(set(outs), key=outs.index), m.num_features

    assert chans("mobilenetv2_035") == (16, [8, 16, 24, 32, 56, 112], 1280)  # 16 and 24 both round to 8
    assert chans("mobilenetv2_100") == (32, [16, 24, 32, 64, 96, 160, 320], 1280)
    assert chans("mobilenetv2_140") == (48, [24, 32, 48, 88, 136, 224, 448], 1792)  # head scaled above 1


def test_block_structure():
    m = create_model("mobilenetv2_100")
    _, plan, _, _ = _plan(1.0)
    assert len(m.blocks) == 17
    got = [(b.in_channels, b.hidden, b.out_channels, b.stride) for b in m.blocks]
    assert got == [p[:4] for p in plan]
    res = [b.use_res for b in m.blocks]
    assert res == [False, False, True, False, True, True, False, True, True, True, False, True, True, False, True,
                   True, False]
    for b in m.blocks:
        assert isinstance(b.conv_pw, nn.Identity) == (b.hidden == b.in_channels)   # no expansion when t = 1
        assert b.conv_dw.conv.groups == b.hidden and b.conv_dw.conv.kernel_size == (3, 3)
        assert isinstance(b.conv_dw.act, nn.ReLU6)
        assert isinstance(b.conv_pwl.act, nn.Identity)                             # linear bottleneck
    assert isinstance(m.blocks[1].conv_pw.act, nn.ReLU6)


def test_block_residual_and_linear_output():
    torch.manual_seed(0)
    blk = InvertedResidual(8, 8, 1, 6).eval()
    x = torch.randn(2, 8, 5, 4)
    branch = blk.conv_pwl(blk.conv_dw(blk.conv_pw(x)))
    torch.testing.assert_close(blk(x), x + branch)
    assert branch.min() < 0                       # no activation after the projection
    blk.zero_init_last()                           # zeroed projection BN: the block is the identity
    torch.testing.assert_close(blk(x), x)
    down = InvertedResidual(8, 8, 2, 6).eval()    # stride 2: no shortcut
    assert not down.use_res
    torch.testing.assert_close(down(x), down.conv_pwl(down.conv_dw(down.conv_pw(x))))
    wide = InvertedResidual(8, 16, 1, 1).eval()   # channel change: no shortcut; t = 1: no expansion
    assert not wide.use_res and wide.hidden == 8 and isinstance(wide.conv_pw, nn.Identity)
    assert wide(x).shape == (2, 16, 5, 4)


def test_attn_position_per_block():
    assert attn_rule("coord") == ("after_dw", False)
    assert attn_rule("se(reduction=24)") == ("after_dw", True)
    assert attn_rule("eca") == ("after_proj", True) == attn_rule(("eca_ns", {}))
    assert attn_rule("cbam") == ("after_dw", True)          # not in the table -> after the depthwise conv
    assert set(ATTN_RULES) >= {"coord", "se", "eca"}
    cases = {"coord": ("after_dw", False), "se": ("after_dw", True), "eca": ("after_proj", True),
             "cbam": ("after_dw", True), "scse": ("after_dw", True)}
    for attn, (pos, first) in cases.items():
        m = create_model("mobilenetv2_050_small", attn=attn)
        for i in (0, 1, 3):
            blk = m.blocks[i]
            idx, ch = _attn_call(m, i)
            if pos == "after_dw":    # expand -> dw -> attn -> project, on t * C_in channels
                assert idx == 2 and ch == blk.hidden, (attn, i)
            else:                    # expand -> dw -> project -> attn, on C_out channels
                assert idx == 3 and ch == blk.out_channels, (attn, i)
            has = not isinstance(blk.attn, nn.Identity)
            assert has == (i > 0 or first), (attn, i)
            assert list(blk._modules) == (["conv_pw", "conv_dw", "attn", "conv_pwl", "drop_path"] if pos == "after_dw"
                                          else ["conv_pw", "conv_dw", "conv_pwl", "attn", "drop_path"])


def test_attn_position_override_and_callable():
    m = create_model("mobilenetv2_050_small", attn="coord", attn_position="after_proj", attn_first_block=True)
    assert not isinstance(m.blocks[0].attn, nn.Identity)
    assert _attn_call(m, 1) == (3, m.blocks[1].out_channels)
    m = create_model("mobilenetv2_050_small", attn="eca", attn_position="after_dw")
    assert _attn_call(m, 1) == (2, m.blocks[1].hidden)
    seen: list[int] = []

    def make(channels):  # user callable: default rule (after_dw, every block)
        seen.append(channels)
        return nn.Identity()

    m = create_model("mobilenetv2_050_small", attn=make)
    assert seen == [b.hidden for b in m.blocks]
    with pytest.raises(ValueError, match="attn_position"):
        create_model("mobilenetv2_050_small", attn="se", attn_position="before_dw")


def test_attn_output_feeds_projection():
    """after_dw: the attention output is what the projection sees (a zeroing attn leaves only the BN shift)."""
    m = create_model("mobilenetv2_050_small", attn=lambda c: _Zero()).eval()
    blk = m.blocks[1]
    x = torch.randn(2, blk.in_channels, 6, 6)
    bn = blk.conv_pwl.norm
    expect = (bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps))[None, :, None, None]
    torch.testing.assert_close(blk(x), expect.expand(2, -1, 6, 6))


def test_small_feature_size():
    for size in (32, 28):
        m = create_model("mobilenetv2_050_small", img_size=size).eval()
        f = m.forward_features(torch.randn(1, 3, size, size))
        assert f.shape == (1, 1280, 4, 4) and m.feat_size == (4, 4)
    strides = [b.stride for b in create_model("mobilenetv2_100_small").blocks]
    assert strides == [1, 1, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
    m = create_model("mobilenetv2_035", img_size=224).eval()        # ImageNet: overall stride 32
    assert m.feat_size == (7, 7) and m.stem.conv.stride == (2, 2)
    assert m.forward_features(torch.randn(1, 3, 224, 224)).shape == (1, 1280, 7, 7)


@pytest.mark.parametrize("attn", ["se", "eca", "coord"])
@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (2, 3, 32, 32)])
def test_small_forward_backward(attn, shape):
    m = create_model("mobilenetv2_100_small", attn=attn, in_chans=shape[1], img_size=shape[-1], num_classes=10)
    x = torch.randn(*shape)
    y = m(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    m.eval()
    torch.testing.assert_close(m(x[:1]), m(x)[:1])


def test_slots_norm_act_head():
    m = create_model("mobilenetv2_050_small", norm="gn", act="hswish", head="avgmax", num_classes=5)
    assert isinstance(m.blocks[1].conv_dw.norm, nn.GroupNorm) and m.blocks[1].conv_dw.conv.bias is None
    assert isinstance(m.stem.act, nn.Hardswish) and isinstance(m.conv_head.act, nn.Hardswish)
    assert isinstance(m.blocks[1].conv_pwl.act, nn.Identity)   # projection stays linear whatever the act slot
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    assert m.forward_head(m.forward_features(torch.randn(1, 3, 32, 32)), pre_logits=True).shape == (1, 1280)
    m.reset_classifier(3)
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_errors():
    with pytest.raises(ValueError, match="stem"):
        create_model("mobilenetv2_100", stem="big")
    with pytest.raises(ValueError, match="width_mult"):
        MobileNetV2(width_mult=0)
    m = create_model("mobilenetv2_050_small", in_chans=1)
    with pytest.raises(ValueError, match="in_chans=3"):
        m(torch.randn(1, 3, 32, 32))


def test_registry_entries_and_claims():
    names = list_models("mobilenetv2*")
    assert set(names) >= set(WIDTHS) | {"mobilenetv2_050_small", "mobilenetv2_100_small"}
    tests = {n.name for n in ast.parse(Path(__file__).read_text()).body if isinstance(n, ast.FunctionDef)}
    for name in names:
        info = get_info(name)
        assert info["paper"]["id"] == "S071" and info["slots"]["act"] == "relu6"
        for claim in info["claims"]:
            path, _, fn = claim["check"].partition("::")
            assert path == "tests/models/test_mobilenetv2.py" and fn in tests, claim
