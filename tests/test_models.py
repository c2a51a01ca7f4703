"""Backbone fidelity: exact parameter counts at paper settings and the timm-like model contract."""
import pytest
import torch

from blockzoo import create_model, list_models
from blockzoo.models.base import PerBlock
from blockzoo.registry import get_model_spec

EXACT = [  # (model, kwargs, params) at 3 input channels; 10 classes for CIFAR models, 1000 for ImageNet ones
    ("resnet20", {}, 269_722), ("resnet56", {}, 853_018), ("resnet110", {}, 1_727_962),
    ("resnet20", {"shortcut": "B"}, 272_474),
    ("resnet18", {}, 11_689_512), ("resnet50", {}, 25_557_032),
    ("seresnet50", {}, 28_088_024), ("ecaresnet50", {}, 25_557_118),
    ("wrn_28_10", {}, 36_479_194), ("wrn_16_8", {}, 10_961_370), ("wrn_40_4", {}, 8_949_210),
]


def nparams(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name,kw,expected", EXACT, ids=[f"{n}{'-' + str(k) if k else ''}" for n, k, _ in EXACT])
def test_param_counts(name, kw, expected):
    assert nparams(create_model(name, in_chans=3, **kw)) == expected


def test_registered_reference_counts():
    """Every exact count a model spec records in `reference` is the count we build."""
    checked = 0
    for name in list_models():
        ref = get_model_spec(name).reference
        if "params_3ch_10cls" in ref and ref["params_3ch_10cls"] and nparams(create_model(name)) < 3e7:
            assert nparams(create_model(name, num_classes=10, in_chans=3)) == ref["params_3ch_10cls"], name
            checked += 1
    assert checked >= 5


def test_option_a_shortcut_is_parameter_free_and_pads():
    m = create_model("resnet20", in_chans=1)
    sc = m.layers[1][0].shortcut
    x = torch.randn(2, 16, 8, 6)
    y = sc(x)
    assert y.shape == (2, 32, 4, 3) and nparams(sc) == 0
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2]) and y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_contract_forward_features_head_reset():
    m = create_model("resnet20", num_classes=7, in_chans=1).eval()
    x = torch.randn(3, 1, 28, 28)
    f = m.forward_features(x)
    assert f.shape == (3, m.num_features, 7, 7) and m.num_features == 64
    assert m.forward_head(f, pre_logits=True).shape == (3, 64)
    assert torch.allclose(m.forward_head(f), m(x))
    m.reset_classifier(5)
    assert m(x).shape == (3, 5) and m.get_classifier().out_features == 5
    m.reset_classifier(0)
    assert m(x).shape == (3, 64)


def test_wrn_shortcut_uses_preactivated_input():
    m = create_model("wrn_16_1", in_chans=1, img_size=28).eval()
    blk = m.groups[1][0]   # 16 -> 32 channels, stride 2: has a 1x1 projection
    assert blk.proj is not None and blk.proj.stride == (2, 2)
    x = torch.randn(2, 16, 8, 8)
    o1 = blk.act0(blk.bn0(x))
    expected = blk.conv1(blk.act1(blk.bn1(blk.conv0(o1)))) + blk.proj(o1)
    assert torch.allclose(blk(x), expected, atol=1e-6)


def test_attention_goes_on_the_residual_branch_before_addition():
    m = create_model("resnet20", in_chans=1, attn="se").eval()
    blk = m.layers[0][0]
    seen = {}
    blk.attn.register_forward_hook(lambda mod, i, o: seen.setdefault("out", o))
    x = torch.randn(2, 16, 8, 8)
    y = blk(x)
    assert torch.allclose(y, torch.relu(x + seen["out"]), atol=1e-6)


def test_wrong_input_gives_clear_error():
    m = create_model("resnet20", in_chans=1)
    with pytest.raises(ValueError, match="in_chans=3"):
        m(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="unsqueeze"):
        m(torch.randn(1, 28, 28))


@pytest.mark.slow
def test_resnet50_macs():
    from blockzoo.profile import count_macs
    macs = count_macs(create_model("resnet50"), (3, 224, 224)).macs
    assert 4.08e9 <= macs <= 4.13e9


def test_eca_official_per_stage_kernels():
    """The released ECA-Net50 checkpoint ('k3557') uses hand-picked per-stage kernels instead of the paper formula."""
    ks = (3, 5, 5, 7)
    m = create_model("ecaresnet50", attn=PerBlock(lambda stage, block: f"eca(k_size={ks[stage]})"))
    got = [blk.attn.k_size for stage in m.layers for blk in stage]
    assert got == [3] * 3 + [5] * 4 + [5] * 6 + [7] * 3
    assert nparams(m) == 25_557_032 + 3 * 3 + 4 * 5 + 6 * 5 + 3 * 7
    formula = [blk.attn.k_size for stage in create_model("ecaresnet50").layers for blk in stage]
    assert formula == [5] * 3 + [5] * 4 + [5] * 6 + [7] * 3   # paper formula on 256/512/1024/2048 channels
