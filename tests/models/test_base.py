"""The backbone conventions of blockzoo.models.base: per-stage / per-block slot values, forward-time input checks,
the timm-like model contract (forward_features / forward_head / reset_classifier) and the registered reference
counts."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from blockzoo import create_model, list_models
from blockzoo.errors import ConfigError, InputShapeError
from blockzoo.models.base import PerBlock, parse_once, per_stage_values
from blockzoo.registry import get_model_spec
from blockzoo.registry import parse_slot_value as _parse
from helpers import n_params, nparams


def _smallest_of_each_family() -> list[str]:
    """The registered model with the fewest reference parameters of every backbone family."""
    best: dict[str, tuple[float, str]] = {}
    for name in list_models():
        spec = get_model_spec(name)
        size = min((v for k, v in spec.reference.items() if k.startswith("params")), default=float("inf"))
        best[spec.family] = min(best.get(spec.family, (float("inf"), name)), (size, name))
    return sorted(name for _, name in best.values())


FAMILIES = _smallest_of_each_family()


def build(name: str, **kw):
    """The registered constructor with the registry's slot defaults (create_model's up-front slot-name check does not
    take per-stage lists yet)."""
    spec = get_model_spec(name)
    return spec.fn(**{**spec.slots, **kw})


def _is(module: nn.Module, cls_name: str) -> bool:
    return type(module).__name__ == cls_name


# ------------------------------------------------------------------------------------------- per-stage values
def test_per_stage_list_and_string_form():
    m = build("resnet20", attn=["none", "se", "se(reduction=8)"])
    assert [_is(stage[0].attn, "Identity") for stage in m.layers] == [True, False, False]
    assert m.layers[1][0].attn.fc1.out_features == 32 // 16 and m.layers[2][0].attn.fc1.out_features == 64 // 8
    s = build("resnet20", attn="[none, se, 'se(reduction=8)']")              # the command-line form
    assert [type(st[0].attn) for st in s.layers] == [type(st[0].attn) for st in m.layers]
    assert n_params(s) == n_params(m)
    assert per_stage_values("[none, eca(k_size=3), 'se', nonlocal]") == ["none", "eca(k_size=3)", "se", "nonlocal"]
    assert per_stage_values("eca") is None and per_stage_values(("se", {"reduction": 4})) is None


def test_per_stage_errors_are_clear():
    with pytest.raises(ConfigError, match="lists 2 values but the model has 3 stages"):
        build("resnet20", attn=["se", "se"])
    with pytest.raises(ConfigError, match="per-stage or per-block value"):
        build("resnet20", attn=[["se"], "se", "se"])
    with pytest.raises(ConfigError, match="cannot parse the per-stage slot value"):
        build("resnet20", attn="[none, se")
    with pytest.raises(ConfigError, match="PerBlock needs a function"):
        PerBlock("se")


def test_per_block_function():
    m = create_model("resnet20", attn=PerBlock(lambda stage, block: "se" if (stage, block) == (2, 1) else "none"))
    assert [[not _is(b.attn, "Identity") for b in st] for st in m.layers] == [[False] * 3, [False] * 3,
                                                                             [False, True, False]]


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2_050_small", "convnext_atto", "lsnet_t_small",
                                  "affnet_et_small", "speednet", "wrn_16_1", "resattnet56_cifar"])
def test_every_family_takes_per_stage_values(name):
    """One value per stage equal in every stage builds the same model as the single value."""
    slot = "mixer" if "mixer" in get_model_spec(name).slots else "attn"
    value = {"mixer": "dwconv", "attn": "eca"}[slot]
    with torch.device("meta"):
        single = build(name, **{slot: value})
        per_stage = build(name, **{slot: [value] * single.num_stages})
        mixed = build(name, **{slot: [value] + ["none"] * (single.num_stages - 1)})
    assert n_params(per_stage) == n_params(single)
    assert n_params(mixed) < n_params(single) or slot == "mixer" and name == "affnet_et_small"  # no mixer in stage 0


def test_paper_per_stage_defaults_are_replaced_by_a_user_value():
    hornet = create_model("hornet_atto")
    assert [st.blocks[0].mixer.order for st in hornet.stages] == [2, 3, 4, 5]       # the registered default
    swapped = create_model("hornet_atto", mixer="dwconv")
    assert all(_is(b.mixer, "DWConv") for st in swapped.stages for b in st.blocks)
    fixed = create_model("hornet_atto", mixer="gnconv(order=3)")
    assert {b.mixer.order for st in fixed.stages for b in st.blocks} == {3}
    ffnet = create_model("ffnet_nano", mixer="dwconv")
    assert all(_is(b.mixer, "DWConv") for st in ffnet.stages for b in st.blocks)


def test_family_rules_apply_to_per_stage_values():
    """SpaRTAN's spartan entries take their stage's grouping; HorNet's global filters are sized to their stage."""
    m = build("spartan_small", mixer=["spartan", "spartan", "spartan", "dwconv"])
    assert [st.blocks[0].mixer.grouped for st in m.stages[:3]] == [False, False, True]
    assert _is(m.stages[3].blocks[0].mixer, "DWConv")
    h = build("hornet_atto", mixer=["gnconv(order=2)", "gnconv(order=3)", "gnconv(order=4, filter=gf)", "dwconv"])
    assert h.stages[2].blocks[0].mixer.dwconv.filter_size == (8, 5)               # 8x8 maps at 32 px: (8, 8 // 2 + 1)


def test_norm_and_act_are_parsed_once_per_model(monkeypatch):
    assert parse_once("gn(groups=1, eps=1e-06)") == ("gn", {"groups": 1, "eps": 1e-06})
    assert parse_once("bn") == "bn" and parse_once(None) is None
    import blockzoo.models.base as base
    import blockzoo.registry as registry
    calls = []

    def counting(value):
        calls.append(value)
        return _parse(value)

    monkeypatch.setattr(base, "parse_slot_value", counting)
    monkeypatch.setattr(registry, "parse_slot_value", counting)      # build_slot's, in every block
    m = build("resnet20", norm="gn(groups=4)", act="elu(alpha=0.5)")
    assert isinstance(m.layers[2][2].bn2, nn.GroupNorm) and m.layers[2][2].bn2.num_groups == 4
    assert calls.count("gn(groups=4)") == 1 and calls.count("elu(alpha=0.5)") == 1   # not once per block


# -------------------------------------------------------------------------------------------- input checks
@pytest.mark.parametrize("name", FAMILIES)
def test_smallest_input_runs_and_one_pixel_less_is_a_clear_error(name):
    m = create_model(name, num_classes=3).eval()
    n = m.min_input_size()
    with torch.no_grad():
        assert m(torch.randn(2, m.in_chans, n, n)).shape == (2, 3)
        assert m(torch.randn(2, m.in_chans, n, n + 5)).shape == (2, 3)               # non-square
        with pytest.raises(InputShapeError, match=f"at least {n}x{n}"):
            m(torch.randn(2, m.in_chans, n - 1, n))


def test_too_small_input_names_the_stage():
    m = create_model("convnext_atto", num_classes=3)
    with pytest.raises(InputShapeError, match=r"the input 31x40 is too small: stage 4 \(stages.3\) would see 0x1 "
                                              r"features; use an input of at least 32x32"):
        m(torch.randn(1, 3, 31, 40))
    with pytest.raises(ConfigError, match=r"img_size is too small: stage 4 \(stages.3\) would see 0x0 features; use a "
                                          r"larger img_size \(this stage needs at least 32x32\)"):
        create_model("convnext_atto", img_size=16)


def test_block_and_head_minimum_sizes_count():
    dfc = create_model("resnet20", attn="dfc", img_size=None)     # dfc needs 2x2 maps: the last stage needs 5 px
    assert dfc.min_input_size() == 5
    with pytest.raises(InputShapeError, match=r"stage 3 \(layer3\) would see 1x1 features but its blocks need at "
                                              r"least 2x2; use an input of at least 5x5"):
        dfc(torch.randn(2, 3, 4, 4))
    gcp = create_model("resnet20", head="gcp", img_size=None)
    with pytest.raises(InputShapeError, match="the head would see 1x1 features but its blocks need at least 2x2"):
        gcp(torch.randn(2, 3, 4, 4))
    gcp.reset_classifier(5, head="avg")                            # a new head: its own minimum
    assert gcp(torch.randn(2, 3, 4, 4)).shape == (2, 5)
    c = create_model("convnext_atto", num_classes=3).eval()            # a family with its own reset_classifier
    c.reset_classifier(4, head="gcp")
    assert c.min_input_size() == 64                                # the last stage must be 2x2 for gcp
    with pytest.raises(InputShapeError, match="the head would see 1x1 features"):
        c(torch.randn(2, 3, 32, 32))


def test_rank_channels_and_dtype_checks():
    m = create_model("resnet20", in_chans=1)
    with pytest.raises(InputShapeError, match="in_chans=1 but got 3 channels.*in_chans=3"):
        m(torch.randn(2, 3, 28, 28))
    with pytest.raises(InputShapeError, match="unsqueeze"):
        m(torch.randn(1, 28, 28))
    with pytest.raises(InputShapeError, match="floating-point"):
        m(torch.zeros(2, 1, 28, 28, dtype=torch.int64))


def test_checks_are_skipped_while_tracing():
    m = create_model("convnext_atto", num_classes=3).eval()
    gm = torch.fx.symbolic_trace(m)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(gm(x), m(x))


# ------------------------------------------------------------------------------------------------ fidelity
def test_resnet_last_stride_for_the_gcp_head():
    """iSQRT-COV's ResNet-50 keeps the last stage at stride 1 (14x14 covariance inputs at 224 px): same parameters."""
    with torch.device("meta"):
        assert n_params(create_model("resnet50", head="gcp", last_stride=1)) == n_params(
            create_model("resnet50", head="gcp"))
    m = create_model("resnet50", head="gcp", last_stride=1, num_classes=10).eval()
    with torch.no_grad():
        assert m.forward_features(torch.randn(1, 3, 64, 64)).shape[-2:] == (4, 4)      # 2x2 with stride 2
        assert m(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    with pytest.raises(ConfigError, match="last_stride must be 1 or 2"):
        create_model("resnet50", last_stride=3)


def test_registered_reference_counts():
    """Every exact count a model spec records in `reference` is the count we build."""
    checked = 0
    for name in list_models():
        ref = get_model_spec(name).reference
        if "params_3ch_10cls" in ref and ref["params_3ch_10cls"] and nparams(create_model(name)) < 3e7:
            assert nparams(create_model(name, num_classes=10, in_chans=3)) == ref["params_3ch_10cls"], name
            checked += 1
    assert checked >= 5


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


def test_wrong_input_gives_clear_error():
    m = create_model("resnet20", in_chans=1)
    with pytest.raises(ValueError, match="in_chans=3"):
        m(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="unsqueeze"):
        m(torch.randn(1, 28, 28))
