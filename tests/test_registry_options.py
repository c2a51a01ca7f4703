"""Options from the constructors' signatures, argument checks of create_model / create_block, the inline option
parser, and the forward-time input checks of blocks built on their own."""
from __future__ import annotations

import json

import pytest
import torch

from blockzoo import create_block, create_model, get_info, list_blocks
from blockzoo.errors import ConfigError, IncompatibleBlockError, InputShapeError
from blockzoo.registry import block_options, get_block_spec, model_options, parse_slot_value


# --------------------------------------------------------------------------------------------- options listing
def test_block_options_come_from_the_signature():
    assert block_options("se") == {"reduction": 16, "hidden": None, "gate": "sigmoid", "act": "relu"}
    assert block_options("eca") == {"k_size": None, "gamma": 2, "b": 1}
    assert block_options("relu") == {"inplace": False}
    sk = block_options("sk")   # the conv contract plus the unit's own options, no **kwargs
    assert {"out_channels", "stride", "groups", "norm", "act", "branches", "reduction", "min_dim"} <= set(sk)
    assert block_options("gcp")["eps"] == 1e-12


def test_model_options_follow_kwargs_into_the_backbone_class():
    opts = model_options("resnet20")
    assert opts["shortcut"] == "A" and opts["num_classes"] == 10          # the entry's own defaults
    assert {"img_size", "drop_rate", "zero_init_last", "last_stride"} <= set(opts)   # ResNet's keyword options
    assert opts["attn"] == "none" and opts["conv"] == "conv3x3"           # slot defaults as registered
    assert model_options("seresnet50")["attn"] == "se"
    assert "model_name" not in opts                                      # set by create_model itself


def test_info_lists_options_and_notes_no_longer_repeat_them():
    info = get_info("se")
    assert info["options"] == {"reduction": 16, "hidden": None, "gate": "sigmoid", "act": "relu"}
    assert get_info("resnet20")["options"]["shortcut"] == "A"
    json.dumps(get_info("sk")), json.dumps(get_info("spartan", kind="model"))
    hand_kept = [n for n in list_blocks() if get_block_spec(n).notes.lstrip().startswith("Options:")]
    assert not hand_kept, f"options are read from the signature; drop the hand-kept 'Options:' notes of {hand_kept}"


# ------------------------------------------------------------------------------------------ create_model checks
@pytest.mark.parametrize("kwargs, match", [
    ({"num_classes": -1}, "num_classes must be an integer >= 0"),
    ({"num_classes": 2.5}, "num_classes must be an integer"),
    ({"num_classes": True}, "num_classes must be an integer"),
    ({"in_chans": 0}, "in_chans must be an integer >= 1"),
    ({"in_chans": 3.0}, "in_chans must be an integer"),
    ({"img_size": 0}, "img_size must be a positive integer or a pair"),
    ({"img_size": (32,)}, "img_size must be a positive integer or a pair"),
    ({"img_size": "x"}, "img_size must be"),
    ({"drop_rate": 1.0}, r"drop_rate is a probability and must be in \[0, 1\)"),
    ({"drop_rate": float("nan")}, "drop_rate must be a finite number"),
    ({"zero_init_last": "yes"}, "option zero_init_last must be True or False"),
    ({"shortcutt": "B"}, "has no option 'shortcutt' \\(did you mean 'shortcut'\\?\\); its options are: .*img_size"),
    ({"stem_width": 8}, "fixes 'stem_width' itself"),
])
def test_create_model_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        create_model("resnet20", **kwargs)


def test_create_model_accepts_the_edge_values():
    m = create_model("resnet20", num_classes=0, in_chans=1, img_size=(28, 24), drop_rate=0.0)
    assert m(torch.randn(1, 1, 28, 24)).shape == (1, 64)                  # num_classes=0: features, by request


# ------------------------------------------------------------------------------------------ create_block checks
@pytest.mark.parametrize("name, channels, kwargs, match", [
    ("se", 64, {"reduction": 0}, "reduction must be a finite number > 0"),
    ("se", 64, {"reduction": 2.5}, "option reduction must be an integer"),
    ("se", 64, {"gate": "tanh"}, "gate must be one of 'sigmoid', 'hsigmoid'"),
    ("se", 64, {"hidden": 0}, "hidden must be an integer >= 1"),
    ("se", 64, {"reductoin": 4}, "has no option 'reductoin' \\(did you mean 'reduction'\\?\\)"),
    ("se", 0, {}, "channels must be an integer >= 1"),
    ("se", True, {}, "channels must be an integer"),
    ("se", 64.0, {}, "channels must be an integer"),
    ("eca", 64, {"gamma": 0}, "gamma must be non-zero"),
    ("eca_ns", 64, {"k_size": 4}, "k_size must be odd"),
    ("eca", 64, {"k_size": 0}, "k_size must be an integer >= 1"),
    ("coord", 64, {"reduction": -1}, "reduction must be a finite number > 0"),
    ("cbam", 64, {"kernel_size": 6}, "kernel_size must be odd"),
    ("cbam", 64, {"variant": "x"}, "variant must be one of"),
    ("dfc", 64, {"kernel_size": 4}, "kernel_size must be odd"),
    ("scse", 64, {"combine": "mul"}, "combine must be one of"),
    ("sfnl", 64, {"heads": 3}, "heads must divide the inner channels"),
    ("sfnl", 64, {"order": "x"}, "order must be one of"),
    ("nonlocal", 64, {"inner_channels": 0}, "inner_channels must be an integer >= 1"),
    ("inception_dw", 64, {"band_kernel_size": 10}, "band_kernel_size must be odd"),
    ("inception_dw", 64, {"square_kernel_size": 4}, "square_kernel_size must be odd"),
    ("inception_dw", 64, {"branch_ratio": 0}, "branch_ratio must be a finite number > 0"),
    ("dwconv", 64, {"kernel_size": 6}, "kernel_size must be odd"),
    ("pool", 64, {"kernel_size": 2}, "kernel_size must be odd"),
    ("maxpool", 64, {"kernel_size": 4}, "kernel_size must be odd"),
    ("gnconv", 64, {"filter": "5x5"}, "filter .* must be one of"),
    ("gnconv", 64, {"order": 0}, "order .* must be an integer >= 1"),
    ("ls_conv", 64, {"sks": 2}, "sks must be odd"),
    ("aff", 64, {"hidden_ratio": -1}, "hidden_ratio must be a finite number > 0"),
    ("aff", 64, {"sparsity_threshold": -0.1}, "sparsity_threshold must be a finite number >= 0"),
    ("dilated_reparam", 64, {"kernel_size": 8}, "odd kernel_size >= 3"),
    ("dilated_reparam", 64, {"bn_eps": 0}, "bn_eps must be a finite number > 0"),
    ("ffnified", 64, {"kernel_size": 4}, "kernel_size must be odd"),
    ("spartan_cmixer", 64, {"expand_ratio": 1.5}, "integer expand_ratio"),
    ("sk", 64, {"branches": 0}, "branches must be an integer >= 1"),
    ("sk", 64, {"groups": 3}, "must be divisible by groups"),
    ("sk", 64, {"stride": 0}, "stride must be an integer >= 1"),
    ("gcp", 64, {"reduce_dim": 0}, "reduce_dim .* must be an integer >= 1"),
    ("gcp", 64, {"iterations": 0}, "iterations must be an integer >= 1"),
    # generic options checked centrally, for blocks registered anywhere (norms, activations, conv units)
    ("ln2d", 64, {"eps": -1}, "eps must be a finite number > 0"),
    ("bn", 64, {"eps": 0}, "eps must be a finite number > 0"),
    ("gn", 64, {"groups": 0}, "groups must be an integer >= 1"),
    ("conv3x3", 64, {"stride": 0}, "stride must be an integer >= 1"),
    ("bn", 64, {"zero_init": "x"}, "zero_init must be True or False"),
])
def test_block_options_are_checked_when_built(name, channels, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        create_block(name, channels, **kwargs)


def test_unknown_option_of_an_activation():
    with pytest.raises(ConfigError, match="has no option 'alpha'"):
        create_block("relu", alpha=1.0)   # the act constructors take **kw, so this comes from the class


def test_paper_defaults_still_build():
    assert create_block("eca", 64).k_size == 3 and create_block("se", 64).hidden == 4
    assert create_block("eca_ns", 256, k_size=5).k_size == 5
    assert create_block("inception_dw", 64, band_kernel_size=9, branch_ratio=0.25).split_indexes == (16, 16, 16, 16)


# ----------------------------------------------------------------------------------------- inline option parser
@pytest.mark.parametrize("value, match", [
    ("se(reduction=8)(gate=hsigmoid)", "chained calls are not accepted"),
    ("se(8)", "positional arguments are not accepted"),
    ("se(reduction=8, reduction=4)", "option 'reduction' is given twice"),
    ("eca(k_size=int(3))", "an option value cannot be a call"),
    ("eca(k_size=3+1)", "is not a literal"),
    ("se(**opts)", r"\*\* is not accepted"),
    ("se(reduction=8", "cannot parse slot value"),
    ("(reduction=8)", "cannot parse slot value"),
    ("se)", "cannot parse slot value"),
    (3, "slot value must be a block name"),
])
def test_parser_rejects_ambiguous_values(value, match):
    with pytest.raises(ConfigError, match=match):
        parse_slot_value(value)


def test_parser_still_accepts_names_literals_and_bare_words():
    assert parse_slot_value("se(reduction=8, gate=hsigmoid)") == ("se", {"reduction": 8, "gate": "hsigmoid"})
    assert parse_slot_value("nonlocal(reduction=-1)") == ("nonlocal", {"reduction": -1})
    assert parse_slot_value("gnconv(order=3, filter='gf', h=(14))") == ("gnconv", {"order": 3, "filter": "gf",
                                                                                   "h": 14})
    assert parse_slot_value(" eca ") == ("eca", {})
    with pytest.raises(ConfigError, match="chained"):
        create_model("resnet20", attn="se(reduction=8)(gate=hsigmoid)")


# ----------------------------------------------------------------------------------------- forward input checks
def test_standalone_blocks_check_their_input():
    se = create_block("se", 64)
    with pytest.raises(InputShapeError, match="block 'se' was built for 64 channels but got 32"):
        se(torch.randn(2, 32, 4, 4))
    with pytest.raises(InputShapeError, match="expects an NCHW batch"):
        se(torch.randn(64, 4, 4))
    with pytest.raises(InputShapeError, match="floating-point"):
        create_block("dwconv", 8)(torch.ones(1, 8, 4, 4, dtype=torch.int64))
    with pytest.raises(InputShapeError, match="floating-point"):
        create_block("gelu")(torch.ones(3, dtype=torch.int64))
    assert create_block("gelu")(torch.randn(3)).shape == (3,)          # activations take any rank
    with pytest.raises(InputShapeError, match="at least 2x2"):
        create_block("dfc", 8)(torch.randn(1, 8, 1, 5))
    assert create_block("dfc", 8, downsample=False)(torch.randn(1, 8, 1, 5)).shape == (1, 8, 1, 5)


def test_input_checks_keep_blocks_traceable():
    from torch.fx import symbolic_trace

    blk = create_block("se", 16).eval()
    traced = symbolic_trace(blk)
    x = torch.randn(2, 16, 5, 5)
    assert torch.allclose(traced(x), blk(x))


def test_blocks_inside_models_get_no_hook():
    m = create_model("resnet20", attn="se")
    assert not m.layers[0][0].attn._forward_pre_hooks           # the model checks its input once
    with pytest.raises(IncompatibleBlockError):
        create_model("resnet20", attn="bn")


def test_per_stage_slot_values_are_checked_entry_by_entry():
    m = create_model("resnet20", attn=["se", "eca", "none"])
    assert type(m.layers[0][0].attn).__name__ == "SqueezeExcite" and type(m.layers[1][0].attn).__name__ == "ECA"
    assert create_model("resnet20", attn="[none, se(reduction=4), eca]").layers[1][0].attn.hidden == 8
    with pytest.raises(IncompatibleBlockError, match="'bn' is a 'norm' block"):
        create_model("resnet20", attn=["se", "bn", "none"])
    with pytest.raises(ConfigError, match="chained"):
        create_model("resnet20", attn=["se(reduction=8)(gate=hsigmoid)", "none", "none"])
    assert get_info("hornet_atto")["slots"]["mixer"].startswith("[gnconv(order=2)")


def test_model_options_are_the_variants_and_fixed_ones_are_listed_apart():
    """A variant's listed options carry its own defaults; what it sets itself (depths, widths, stem) is listed as
    fixed, and passing it is refused with a ConfigError."""
    from blockzoo.registry import model_fixed_options, model_options

    fixed, opts = model_fixed_options("resnet20"), model_options("resnet20")
    assert fixed["stem"] == "cifar" and fixed["stem_width"] == 16 and tuple(fixed["widths"]) == (16, 32, 64)
    assert not set(fixed) & set(opts) and opts["shortcut"] == "A" and opts["img_size"] == 32
    assert model_fixed_options("mobilenetv2_050_small") == {"width_mult": 0.5}
    assert model_options("mobilenetv2_050_small")["stem"] == "small"
    assert model_options("resnet50")["stem"] == "imagenet" and model_fixed_options("resnet50")["shortcut"] == "B"
    with pytest.raises(ConfigError, match="fixes 'stem_width' itself"):
        create_model("resnet20", stem_width=32)
    create_model("resnet20", img_size=28, drop_rate=0.1)   # a variant default, not fixed: it can be changed
