"""timm's model conventions on every registered model (never a hand-kept list): feature_info / forward_intermediates /
features_only, prune_intermediate_layers, drop_path_rate, set_grad_checkpointing, group_matcher, no_weight_decay,
pretrained_cfg."""
from __future__ import annotations

import re

import pytest
import torch

from blockzoo import ConfigError, create_model, list_models
from blockzoo.blocks.common.drop import DropPath
from blockzoo.models.features import FeatureInfo, FeatureListNet
from blockzoo.registry import get_model_spec, model_options
from helpers import family_representatives, model_marks, small_model

ALL = [pytest.param(n, marks=model_marks(n)) for n in list_models()]
FAMILIES = sorted(family_representatives().values())


def _feature_input(m, name: str, batch: int = 2) -> torch.Tensor:
    """An input whose side is a multiple of the largest reduction (so each map's size is side / reduction)."""
    red = max(f["reduction"] for f in m.feature_info)
    s = max(get_model_spec(name).small_size, m.min_input_size())
    s = -(-s // red) * red
    return torch.randn(batch, m.in_chans, s, s)


@pytest.mark.parametrize("name", ALL)
def test_feature_info_and_forward_intermediates(name):
    """Every model declares its feature maps; forward_intermediates returns them with the declared channels and
    reductions, and its final output is forward_features'."""
    m, _ = small_model(name)
    m.eval()
    info = m.feature_info
    assert info and all(set(f) == {"num_chs", "reduction", "module"} for f in info)
    reds = [f["reduction"] for f in info]
    assert reds == sorted(reds) and reds[0] >= 1, f"{name}: reductions must not decrease: {reds}"
    assert info[-1]["num_chs"] == m.num_features or m._final_path, name   # else the last map is the features
    x = _feature_input(m, name)
    with torch.no_grad():
        final, maps = m.forward_intermediates(x)
        assert torch.equal(final, m.forward_features(x))
    assert len(maps) == len(info)
    s = x.shape[-1]
    for f, t in zip(info, maps):
        assert t.shape[:2] == (2, f["num_chs"]), (name, f, tuple(t.shape))
        # the nominal reduction; an unpadded conv (SpeedNet's whitening) may lose a pixel per level, the unpadded
        # 3x3 convs and pools of the Inception-v4 family (as released; timm reports the same nominal reductions) up
        # to 4 pixels of a map
        slack = 4 if name.startswith(("inception_v4", "inception_resnet")) else 1
        assert s // f["reduction"] - slack <= t.shape[-1] <= -(-s // f["reduction"]), (name, f, tuple(t.shape))


@pytest.mark.parametrize("name", FAMILIES)
def test_forward_intermediates_options(name):
    """indices (int = last n, negative, list), stop_early, intermediates_only, NHWC, norm; bad values refused."""
    m, _ = small_model(name)
    m.eval()
    x = _feature_input(m, name)
    n = len(m.feature_info)
    with torch.no_grad():
        _, every = m.forward_intermediates(x)
        last2 = m.forward_intermediates(x, indices=2, intermediates_only=True)
        assert [t.shape for t in last2] == [t.shape for t in every[-2:]]
        assert all(torch.equal(a, b) for a, b in zip(last2, every[-2:]))
        first = m.forward_intermediates(x, indices=[0, -1], intermediates_only=True)
        assert torch.equal(first[0], every[0]) and torch.equal(first[1], every[-1])
        early, maps = m.forward_intermediates(x, indices=[0], stop_early=True)
        assert torch.equal(m._feature_map(early, x), every[0]) and len(maps) == 1   # a unit's raw output (tokens)
        nhwc = m.forward_intermediates(x, indices=[n - 1], output_fmt="NHWC", intermediates_only=True)[0]
        assert torch.equal(nhwc, every[-1].permute(0, 2, 3, 1))
        normed = m.forward_intermediates(x, indices=[n - 1], norm=True, intermediates_only=True)[0]
        expect = m._feature_map(m.forward_features(x), x) if m._final_is_norm else every[-1]
        assert torch.equal(normed, expect)
    for bad in ([n], [-n - 1], 0, n + 1, ["0"]):
        with pytest.raises(ConfigError, match="feature|indices"):
            m.forward_intermediates(x, indices=bad)
    with pytest.raises(ConfigError, match="output_fmt"):
        m.forward_intermediates(x, output_fmt="NWHC")


@pytest.mark.parametrize("name", FAMILIES)
def test_features_only(name):
    """create_model(features_only=True, out_indices=...) returns the maps at out_indices, a timm FeatureInfo, and
    keeps no head or later stage (state_dict of the pruned backbone)."""
    spec = get_model_spec(name)
    ref, _ = small_model(name)
    kw = dict(img_size=spec.small_size) if "img_size" in model_options(name) else {}
    n = len(ref.feature_info)
    idx = (0, n - 1) if n > 2 else (n - 1,)
    fm = create_model(name, num_classes=7, in_chans=1, features_only=True, out_indices=idx, **kw)
    assert isinstance(fm, FeatureListNet) and isinstance(fm.feature_info, FeatureInfo)
    assert fm.feature_info.channels() == [ref.feature_info[i]["num_chs"] for i in idx]
    assert fm.feature_info.reduction() == [ref.feature_info[i]["reduction"] for i in idx]
    assert fm.feature_info.module_name(0) == ref.feature_info[idx[0]]["module"]
    fm.load_state_dict({f"model.{k}": v for k, v in ref.state_dict().items() if f"model.{k}" in fm.state_dict()})
    ref.eval(), fm.eval()
    x = _feature_input(ref, name)
    with torch.no_grad():
        maps = fm(x)
        want = ref.forward_intermediates(x, indices=list(idx), intermediates_only=True)
    assert len(maps) == len(idx) and all(torch.equal(a, b) for a, b in zip(maps, want))
    keys = fm.state_dict().keys()
    assert not any(k.startswith("model.fc.") for k in keys), "the classifier must be pruned"
    assert len(keys) < len(ref.state_dict()), "nothing was pruned"
    all_fm = create_model(name, num_classes=7, in_chans=1, features_only=True, **kw)
    assert len(all_fm.feature_info) == n
    with pytest.raises(ConfigError, match="features_only"):
        create_model(name, out_indices=(0,))


PLAIN_NETWORKS = ("speednet", "simplenet", "inception_v4")   # no residual branch to drop


@pytest.mark.parametrize("name", [n for n in list_models() if not n.startswith(PLAIN_NETWORKS)])
def test_drop_path_rate_on_every_residual_model(name):
    """Every model with residual blocks takes drop_path_rate (not the plain SpeedNet, SimpleNet, Inception-v4); a rate
    > 0 puts DropPath modules in, rising linearly up to the rate (at the last block; MobileNetV2's last block has no
    identity, so it stops before); 0 puts none and the parameters are the same."""
    assert "drop_path_rate" in model_options(name)
    with torch.device("meta"):
        m0 = create_model(name, num_classes=10)
        m = create_model(name, num_classes=10, drop_path_rate=0.2)
    probs = [d.drop_prob for d in m.modules() if isinstance(d, DropPath)]
    assert probs and 0.15 < max(probs) <= 0.2 + 1e-9 and not any(isinstance(d, DropPath) for d in m0.modules())
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in m0.parameters())
    assert list(m.state_dict()) == list(m0.state_dict())


@pytest.mark.parametrize("name", FAMILIES)
def test_grad_checkpointing_same_output_and_grads(name):
    m, x = small_model(name)
    m.eval()      # dropout / drop-path / BN batch statistics off, so both passes compute the same function
    x = _feature_input(m, name)
    y = m(x)
    y.square().sum().backward()
    g = {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}
    m.zero_grad(set_to_none=True)
    m.set_grad_checkpointing()
    assert m.grad_checkpointing
    y2 = m(x)
    y2.square().sum().backward()
    assert torch.allclose(y, y2)
    for k, p in m.named_parameters():
        if k in g:
            assert torch.allclose(p.grad, g[k], atol=1e-6, rtol=1e-4), k
    m.set_grad_checkpointing(False)
    assert not m.grad_checkpointing


@pytest.mark.parametrize("name", FAMILIES)
def test_group_matcher_covers_every_body_parameter(name):
    """Every parameter is in the stem, a stage/block group or the head (timm's layer-decay groups): none is lost,
    and the fine groups number at least the coarse ones."""
    with torch.device("meta"):
        m = create_model(name, num_classes=10)
    head = {"head", "head_drop", "fc", "head_pre", "head_norm"}
    for coarse in (True, False):
        gm = m.group_matcher(coarse=coarse)
        pats = [gm["stem"]] + [p for p, _ in gm["blocks"]]
        lost = [k for k, _ in m.named_parameters() if k.split(".")[0] not in head
                and not any(re.match(p, k) for p in pats)]
        assert not lost, f"{name}: parameters in no group: {lost[:5]}"
    def n_groups(coarse):
        gm = m.group_matcher(coarse=coarse)
        ids = set()
        for k, _ in m.named_parameters():
            for p, _ in gm["blocks"]:
                hit = re.match(p, k)
                if hit:
                    ids.add((p, hit.groups()))
                    break
        return len(ids)
    assert n_groups(False) >= n_groups(True) >= 2


@pytest.mark.parametrize("name", list_models())
def test_pretrained_cfg(name):
    """timm's pretrained_cfg / default_cfg: architecture, input size, classes, paper; ImageNet mean/std only for the
    ImageNet models (the small-input models are normalized by their dataset's statistics); settable."""
    spec = get_model_spec(name)
    with torch.device("meta"):
        m = create_model(name)
    cfg = m.pretrained_cfg
    assert cfg is m.default_cfg
    assert cfg["architecture"] == name and cfg["input_size"] == spec.input_size
    assert cfg["num_classes"] == spec.num_classes and cfg["classifier"] == "fc"
    assert m.get_submodule(cfg["first_conv"]).in_channels == spec.input_size[0]
    if spec.paper:
        assert spec.paper.title in cfg["paper"]
    assert ("mean" in cfg) == (spec.num_classes == 1000 and spec.input_size[1] >= 128)
    from blockzoo.weights import TIMM_MODELS
    timm = TIMM_MODELS.get(name)
    assert cfg.get("timm_model") == (timm.name if timm else None)
    assert cfg.get("hf_hub_id") == (timm.hub_id if timm else None)
    m.pretrained_cfg = {**cfg, "crop_pct": 0.9}
    assert m.pretrained_cfg["crop_pct"] == 0.9


def test_no_weight_decay_is_a_set_of_parameter_names():
    for name in FAMILIES:
        with torch.device("meta"):
            m = create_model(name)
        names = dict(m.named_parameters())
        assert isinstance(m.no_weight_decay(), set) and all(k in names for k in m.no_weight_decay())
