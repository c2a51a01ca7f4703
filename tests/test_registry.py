"""Registry behaviour: names, wildcards, slot parsing, clear errors, compatibility checks."""
import pytest

import blockzoo
from blockzoo import create_block, create_model, get_info, list_blocks, list_models
from blockzoo.registry import SLOTS, IncompatibleBlockError, UnknownNameError, get_block_spec, parse_slot_value


def test_lists_and_wildcards():
    assert {"se", "eca", "coord", "cse", "sse", "scse", "none"} <= set(list_blocks(slot="attn"))
    assert set(list_blocks(slot="norm")) >= {"bn", "gn", "ln2d"}
    assert set(list_blocks(slot="act")) >= {"relu", "relu6", "gelu", "silu", "hswish", "elu"}
    assert list_blocks(pattern="*se") == sorted(n for n in list_blocks() if n.endswith("se"))
    assert {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110"} <= set(list_models("resnet*"))
    assert "seresnet50" in list_models("se*") and "ecaresnet50" in list_models("*eca*")
    assert all(n.startswith("wrn") for n in list_models("wrn*"))


def test_unknown_names_suggest_close_matches():
    with pytest.raises(UnknownNameError, match="Did you mean: eca"):
        create_block("ecaa", 64)
    with pytest.raises(UnknownNameError, match="resnet20"):
        create_model("resnet2O")
    with pytest.raises(UnknownNameError, match="is a model"):
        create_block("resnet20", 8)
    with pytest.raises(UnknownNameError):
        get_info("nope")


def test_slot_value_parsing():
    assert parse_slot_value("eca") == ("eca", {})
    assert parse_slot_value("se(reduction=8, gate='hsigmoid')") == ("se", {"reduction": 8, "gate": "hsigmoid"})
    assert parse_slot_value("se(gate=hsigmoid)") == ("se", {"gate": "hsigmoid"})
    assert parse_slot_value(("se", {"reduction": 4})) == ("se", {"reduction": 4})
    assert parse_slot_value(None) == ("none", {})
    with pytest.raises(blockzoo.BlockzooError):
        parse_slot_value("se(reduction=8")


def test_slot_swaps_by_name_and_with_kwargs():
    m = create_model("resnet20", attn="se(reduction=4)", act="elu", norm="gn")
    blk = m.layers[0][0]
    assert blk.attn.hidden == 4 and type(blk.act).__name__ == "ELU"
    assert type(blk.bn2).__name__ == "GroupNorm"


def test_incompatible_swaps_fail_at_build_time():
    with pytest.raises(IncompatibleBlockError, match="'norm' block"):
        create_model("resnet20", attn="bn")
    with pytest.raises(IncompatibleBlockError, match="no 'mixer' slot"):
        create_model("resnet20", mixer="dwconv")
    with pytest.raises(UnknownNameError, match="attn"):
        create_model("resnet20", attn="sqeeze")


def test_min_size_check():
    import torch.nn as nn

    from blockzoo.registry import _BLOCKS, Requires, SlotContext, build_slot, register_block

    register_block("_test_big", slot="attn", requires=Requires(min_size=16), summary="test only")(
        lambda c: nn.Identity())
    try:
        with pytest.raises(IncompatibleBlockError, match="at least 16x16.*8x8"):
            build_slot("attn", "_test_big", 8, SlotContext("m", "layer3.0.attn", (8, 8)))
        with pytest.raises(IncompatibleBlockError, match="at least 16x16"):
            create_model("resnet20", attn="_test_big", img_size=28)   # stage 3 is 7x7
    finally:
        del _BLOCKS["_test_big"]


def test_every_entry_has_metadata():
    for name in list_blocks():
        spec = get_block_spec(name)
        assert spec.slot in SLOTS and spec.summary, name
    for name in list_models():
        info = get_info(name)
        assert info["summary"] and info["family"], name
        assert info["paper"] is not None, f"{name} must cite its paper"
    for name in list_blocks(slot="attn"):
        if name not in ("none",):
            assert get_info(name)["paper"] is not None, f"{name} must cite its paper"


def test_info_is_json():
    import json
    json.dumps(get_info("eca")), json.dumps(get_info("resnet20"))
    assert get_info("eca")["paper"]["id"] == "S003"


def test_docs_catalog_lists_every_entry():
    """docs/catalog.md is generated (`blockzoo docs`); it must list every registered block and model."""
    from pathlib import Path
    text = (Path(__file__).parent.parent / "docs" / "catalog.md").read_text()
    missing = [n for n in list_blocks() + list_models() if f"`{n}`" not in text]
    assert not missing, f"docs/catalog.md is stale (run `blockzoo docs`); missing: {missing}"


def test_list_models_like_timm_lists_of_patterns_excludes_and_any_case():
    from blockzoo import ConfigError
    assert list_models(["resnet5*", "WRN_16_1"], exclude_filters="*_ibn_*") == ["resnet50", "resnet56", "wrn_16_1"]
    assert list_models("*resnet50*", exclude_filters=["pf_*", "se*", "halo*", "*ibn*", "g_ghost*"]) == \
        ["ecaresnet50", "resnet50"]
    assert list_models("SERESNET50") == ["seresnet50"] and list_models([]) == list_models()
    assert list_blocks(pattern=["ECA*", "se"], exclude_filters="*_ns") == ["eca", "se"]
    with pytest.raises(ConfigError, match="pattern must be a string"):
        list_models(["*resnet*", 3])
