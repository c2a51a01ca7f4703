"""blockzoo.weights.timm_map: state dicts in timm's layout (keys, shapes and outputs taken from timm itself, see
``make_timm_layouts.py``) load strictly into the blockzoo models and give timm's outputs; every tensor lands where
it should; blockzoo weights convert back to exactly timm's layout; mismatches name the first bad timm key."""
from __future__ import annotations

import re

import pytest
import torch

import blockzoo
from blockzoo.errors import CheckpointError, ConfigError
from blockzoo.registry import list_models
from blockzoo.weights import TIMM_MODELS, from_timm_state_dict, timm_counterpart, timm_key_map, to_timm_state_dict


def build(layout: dict) -> torch.nn.Module:
    return blockzoo.create_model(layout["blockzoo_model"]).eval()


def test_a_timm_state_dict_gives_timms_outputs(layout, timm_layout_state, timm_layout_input):
    model = build(layout)
    model.load_state_dict(from_timm_state_dict(model, timm_layout_state(layout)))
    x = timm_layout_input(layout)
    with torch.no_grad():
        out = model.stages(model.stem(x)) if layout["compare"] == "stages" else model(x)
    want = torch.tensor(layout["output"]).reshape(layout["output_shape"])
    assert out.shape == want.shape
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_every_timm_tensor_lands_in_exactly_one_blockzoo_tensor(layout):
    """Tensor i of timm's state dict is filled with the value i (a distinct constant): each blockzoo tensor must hold
    one constant, together they hold every timm tensor once, and the values are reshaped, never permuted."""
    model = build(layout)
    timm = {k: torch.full(shape, float(i)) for i, (k, shape) in enumerate(layout["keys"])}
    state = from_timm_state_dict(model, timm)
    model.load_state_dict(state)
    got = {}
    for k, v in model.state_dict().items():
        values = v.unique()
        assert values.numel() == 1, k
        got[k] = int(values.item())
    assert sorted(got.values()) == list(range(len(layout["keys"])))
    names = [k for k, _ in layout["keys"]]
    assert {k: names[i] for k, i in got.items()} == timm_key_map(model)


# one hand-checked correspondence per kind of rule (read off timm's module structure), beyond the output check above
SPOT_CHECKS = {
    "resnet18": {"stem.1.running_var": "bn1.running_var", "layers.0.0.conv1.conv.weight": "layer1.0.conv1.weight",
                 "layers.0.0.conv1.norm.bias": "layer1.0.bn1.bias", "layers.1.0.shortcut.1.weight":
                 "layer2.0.downsample.1.weight", "layers.3.1.bn2.weight": "layer4.1.bn2.weight"},
    "seresnet50": {"layers.2.5.attn.fc2.weight": "layer3.5.se.fc2.weight", "layers.0.0.conv2.norm.weight":
                   "layer1.0.bn2.weight", "layers.0.0.conv3.weight": "layer1.0.conv3.weight"},
    "ecaresnet18": {"layers.1.1.attn.conv.weight": "layer2.1.se.conv.weight"},
    "sknet50": {"layers.0.0.conv2.branches.1.norm.running_mean": "layer1.0.conv2.paths.1.bn.running_mean",
                "layers.0.0.conv2.fc_norm.weight": "layer1.0.conv2.attn.bn.weight",
                "layers.3.2.bn3.bias": "layer4.2.conv3.bn.bias",
                "layers.1.0.conv1.weight": "layer2.0.conv1.conv.weight"},
    "mobilenetv2_100": {"blocks.0.conv_pwl.conv.weight": "blocks.0.0.conv_pw.weight",
                        "blocks.0.conv_dw.norm.weight": "blocks.0.0.bn1.weight",
                        "blocks.3.conv_pwl.norm.weight": "blocks.2.0.bn3.weight",
                        "blocks.16.conv_dw.conv.weight": "blocks.6.0.conv_dw.weight",
                        "conv_head.norm.running_var": "bn2.running_var", "fc.bias": "classifier.bias"},
    "convnext_atto": {"stages.1.blocks.0.ls.gamma": "stages.1.blocks.0.gamma", "stages.2.blocks.3.mixer.weight":
                      "stages.2.blocks.3.conv_dw.weight", "head_pre.norm.weight": "head.norm.weight"},
    "inception_next_atto": {"stages.0.blocks.1.mixer.dwconv_w.weight": "stages.0.blocks.1.token_mixer.dwconv_w.weight",
                            "head_pre.fc1.weight": "head.fc1.weight", "fc.weight": "head.fc2.weight"},
    "poolformer_s12": {"stages.1.downsample.0.weight": "stages.1.downsample.conv.weight",
                       "stages.3.blocks.1.ls2.gamma": "stages.3.blocks.1.layer_scale2.scale",
                       "norm_pre.weight": "head.norm.weight"},
}


@pytest.mark.parametrize("name", sorted(SPOT_CHECKS))
def test_hand_checked_key_correspondences(name):
    keys = timm_key_map(blockzoo.create_model(name))
    for ours, theirs in SPOT_CHECKS[name].items():
        assert keys[ours] == theirs


def test_blockzoo_weights_convert_to_exactly_timms_layout(layout):
    model = build(layout)
    out = to_timm_state_dict(model)
    assert sorted([k, list(v.shape)] for k, v in out.items()) == sorted(layout["keys"])
    back = from_timm_state_dict(model, out)
    for k, v in model.state_dict().items():
        assert torch.equal(back[k], v), k


def test_linear_weights_become_timms_1x1_convs():
    atto, tiny = blockzoo.create_model("convnext_atto"), blockzoo.create_model("convnext_tiny")
    assert atto.state_dict()["stages.0.blocks.0.mlp.fc1.weight"].shape == (160, 40)
    assert to_timm_state_dict(atto)["stages.0.blocks.0.mlp.fc1.weight"].shape == (160, 40, 1, 1)  # conv_mlp=True
    assert to_timm_state_dict(tiny)["stages.0.blocks.0.mlp.fc1.weight"].shape == (384, 96)       # Linear in timm


@pytest.fixture
def resnet18_timm(timm_layout, timm_layout_state):
    return timm_layout_state(timm_layout("resnet18"))


def test_a_missing_timm_key_is_named_with_its_shape(resnet18_timm):
    state = dict(resnet18_timm)
    del state["layer2.0.conv1.weight"]
    with pytest.raises(CheckpointError, match=re.escape("'layer2.0.conv1.weight' is missing (expected shape "
                                                        "(128, 64, 3, 3))")):
        from_timm_state_dict(blockzoo.create_model("resnet18"), state, source="'x.pth'")


def test_a_mis_shaped_timm_key_is_named_with_both_shapes(resnet18_timm):
    with pytest.raises(CheckpointError, match=re.escape("'fc.weight' has shape (1000, 512), expected (10, 512)")) as e:
        from_timm_state_dict(blockzoo.create_model("resnet18", num_classes=10), resnet18_timm)
    assert "reset_classifier" in str(e.value) and "\n" not in str(e.value)


def test_an_unexpected_timm_key_is_named(resnet18_timm):
    state = {**resnet18_timm, "layer5.0.conv1.weight": torch.zeros(1), "extra": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=re.escape("unexpected timm key 'layer5.0.conv1.weight' (and 1 more)")):
        from_timm_state_dict(blockzoo.create_model("resnet18"), state)


def test_a_missing_batchnorm_counter_keeps_the_models_own(resnet18_timm):
    state = {k: v for k, v in resnet18_timm.items() if not k.endswith("num_batches_tracked")}
    model = blockzoo.create_model("resnet18")
    out = from_timm_state_dict(model, state)
    assert torch.equal(out["stem.1.num_batches_tracked"], model.state_dict()["stem.1.num_batches_tracked"])


def test_a_changed_slot_without_timm_counterpart_is_refused(resnet18_timm):
    model = blockzoo.create_model("resnet18", attn="se")   # timm's resnet18 has no SE: keys it does not have
    with pytest.raises(CheckpointError, match=r"timm key 'layer1\.0\.se\.fc1\.weight' is missing"):
        from_timm_state_dict(model, resnet18_timm)


def test_models_without_timm_counterpart_say_so():
    with pytest.raises(ConfigError, match="'resnet20' has no timm counterpart"):
        to_timm_state_dict(blockzoo.create_model("resnet20"))
    with pytest.raises(ConfigError, match="pass name="):
        timm_key_map(torch.nn.Linear(2, 2))


def test_the_timm_table_names_registered_models_with_timm_names():
    registered = set(list_models())
    assert set(TIMM_MODELS) <= registered
    for name, timm in TIMM_MODELS.items():
        assert timm.hub_id is None or timm.hub_id == f"timm/{timm.name}.{timm.tag}"
        assert timm_counterpart(name) is timm
        if timm.name and name != "sknet50":
            assert timm.name == name  # blockzoo uses timm's names where they exist
    assert "seresnet18" not in TIMM_MODELS   # timm's SE width rounding differs (8 vs the paper's 4 channels)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TIMM_MODELS))
def test_every_listed_model_has_a_complete_one_to_one_map(name):
    model = blockzoo.create_model(name)
    out = to_timm_state_dict(model)
    assert len(out) == len(model.state_dict())
    back = from_timm_state_dict(model, out)
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())
