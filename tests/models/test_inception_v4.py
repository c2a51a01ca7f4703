"""blockzoo.models.inception_v4: Inception-v4, Inception-ResNet-v1 and -v2 (Szegedy et al., AAAI 2017,
arXiv:1602.07261; S017): exact counts, the layer plans of the paper's figures / the released models, residual scaling,
the small-input variants and the option checks. (Same function as timm's models: tests/weights/, layouts
inception_v4 and inception_resnet_v2.)"""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn as nn

from blockzoo import ConfigError, InputShapeError, create_model
from blockzoo.blocks.common.drop import DropPath
from blockzoo.blocks.common.layers import Residual
from blockzoo.blocks.connection.residual_scaling import ScaledResidual
from blockzoo.models.inception_v4 import ConvBuilder, InceptionResidual, Mixed
from blockzoo.registry import SlotContext, get_model_spec
from helpers import count_macs, fit_losses, meta_model, n_params

IMAGENET = ("inception_v4", "inception_resnet_v1", "inception_resnet_v2")
SMALL = ("inception_v4_small", "inception_resnet_v1_small", "inception_resnet_v2_small")
# timm 1.0's counts for its inception_v4 / inception_resnet_v2 (the released TF-slim models), MACs at 299 px
TIMM = {"inception_v4": (42_679_816, 12.28e9), "inception_resnet_v2": (55_843_464, 13.18e9)}
INCEPTION_V3_MACS = 5.73e9   # timm's inception_v3 at 299 px: the paper pairs Inception-ResNet-v1 with it


@functools.cache
def _meta(name: str) -> nn.Module:
    """The registered model on the meta device, built once per session (read-only: tests must not change it)."""
    return meta_model(name)


def _ctx(position: str, feat=None) -> SlotContext:
    return SlotContext("test", position, feat)


def _conv_params(cin: int, cout: int, k: int | tuple[int, int] = 1) -> int:
    kh, kw = (k, k) if isinstance(k, int) else k
    return cin * cout * kh * kw + 2 * cout   # conv without bias + BN (weight, bias)


def _ir_v1_hand_params(num_classes: int = 1000) -> int:
    """Inception-ResNet-v1 counted from the paper's Figures 10-15, written out independently of the model code."""
    c = _conv_params
    stem = c(3, 32, 3) + c(32, 32, 3) + c(32, 64, 3) + c(64, 80) + c(80, 192, 3) + c(192, 256, 3)
    block_a = c(256, 32) + c(256, 32) + c(32, 32, 3) + c(256, 32) + 2 * c(32, 32, 3) + (96 * 256 + 256)
    red_a = c(256, 384, 3) + c(256, 192) + c(192, 192, 3) + c(192, 256, 3)                     # k, l, m, n
    block_b = c(896, 128) + c(896, 128) + c(128, 128, (1, 7)) + c(128, 128, (7, 1)) + (256 * 896 + 896)
    red_b = c(896, 256) + c(256, 384, 3) + c(896, 256) + c(256, 256, 3) + c(896, 256) + 2 * c(256, 256, 3)
    block_c = c(1792, 192) + c(1792, 192) + c(192, 192, (1, 3)) + c(192, 192, (3, 1)) + (384 * 1792 + 1792)
    return stem + 5 * block_a + red_a + 10 * block_b + red_b + 5 * block_c + 1792 * num_classes + num_classes


def test_param_counts_imagenet():
    for name in IMAGENET:
        assert n_params(_meta(name)) == get_model_spec(name).reference["params_1000cls"], name
    assert get_model_spec("inception_v4").reference["params_1000cls"] == TIMM["inception_v4"][0]
    assert get_model_spec("inception_resnet_v2").reference["params_1000cls"] == TIMM["inception_resnet_v2"][0]
    assert get_model_spec("inception_resnet_v1").reference["params_1000cls"] == _ir_v1_hand_params()


def test_param_counts_small():
    for name in SMALL:
        with torch.device("meta"):
            m = create_model(name)
        assert n_params(m) == get_model_spec(name).reference["params_3ch_10cls"], name
        assert n_params(m) < 2e6


@pytest.mark.slow
@pytest.mark.parametrize("name", IMAGENET)
def test_macs_299(name):
    """MACs at 299 px (count_macs: convs + linears) equal the registered count, and are within 3% of timm's."""
    ours = count_macs(create_model(name).eval(), (3, 299, 299))
    assert ours == get_model_spec(name).reference["macs_299"]
    if name in TIMM:
        assert abs(ours - TIMM[name][1]) <= 0.03 * TIMM[name][1], ours


def test_costs_match_the_papers_pairing():
    """The paper pairs Inception-ResNet-v1 with Inception-v3 and -v2 with Inception-v4 by compute: within 10%."""
    macs = {n: get_model_spec(n).reference["macs_299"] for n in IMAGENET}
    assert abs(macs["inception_resnet_v1"] / INCEPTION_V3_MACS - 1) < 0.10
    assert abs(macs["inception_resnet_v2"] / macs["inception_v4"] - 1) < 0.10


def _channels(name: str) -> list[int]:
    return [f["num_chs"] for f in _meta(name).feature_info]


@pytest.mark.slow
@pytest.mark.parametrize("name,sizes", [("inception_v4", [147, 73, 35, 17, 8]),
                                        ("inception_resnet_v1", [147, 71, 35, 17, 8]),
                                        ("inception_resnet_v2", [147, 71, 35, 17, 8])])
def test_feature_map_sizes_at_299(name, sizes):
    """The spatial plan of the figures ("V" convs unpadded): 299 px ends at 8x8 (meta-device forward)."""
    maps = _meta(name).forward_intermediates(torch.empty(1, 3, 299, 299, device="meta"), intermediates_only=True)
    assert [(t.shape[1], t.shape[2], t.shape[3]) for t in maps] == [(c, s, s) for c, s in zip(_channels(name), sizes)]


def test_v4_layer_plan():
    """Paper Figures 3-9: 64 and 160 channels in the stem, then 35x35x384, 17x17x1024, 8x8x1536 (reductions 2 ...
    32)."""
    assert _channels("inception_v4") == [64, 160, 384, 1024, 1536]
    m = _meta("inception_v4")
    assert [f["reduction"] for f in m.feature_info] == [2, 4, 8, 16, 32]
    assert m.stem.mixed_5a.out_channels == 384                      # the stem's output, Figure 3
    assert m.stages[1].reduction.out_channels == 1024               # Reduction-A, (k, l, m, n) = (192, 224, 256, 384)
    assert m.stages[2].reduction.out_channels == 1536               # Reduction-B, Figure 8
    assert [len(s.blocks) for s in m.stages] == [4, 7, 3]


def test_inception_resnet_layer_plans():
    """v1: the paper's Figures 10-15 (35x35x256, 17x17x896, 8x8x1792); v2: the released model (320, 1088, 2080 ->
    1536 after the 1x1 conv)."""
    assert _channels("inception_resnet_v1") == [64, 192, 256, 896, 1792]
    assert _channels("inception_resnet_v2") == [64, 192, 320, 1088, 1536]
    v1, v2 = _meta("inception_resnet_v1"), _meta("inception_resnet_v2")
    assert [len(s.blocks) for s in v1.stages] == [5, 10, 5]
    assert [len(s.blocks) for s in v2.stages] == [10, 20, 9]        # + the final block
    assert v2.stages[2].reduction.out_channels == 2080 and v2.stages[2].final.proj.out_channels == 2080
    assert v1.num_features == 1792 and v2.num_features == 1536


def test_residual_scales_follow_the_release():
    m = _meta("inception_resnet_v2")
    for stage, scale in zip(m.stages, (0.17, 0.1, 0.2)):
        assert all(isinstance(b.merge, ScaledResidual) for b in stage.blocks)
        assert {b.merge.scale for b in stage.blocks} == {scale}
        assert all(isinstance(b.act, nn.ReLU) for b in stage.blocks)
    final = m.stages[2].final
    assert isinstance(final.merge, Residual) and isinstance(final.act, nn.Identity)   # TF-slim activation_fn=None
    m = meta_model("inception_resnet_v2_small", connection="scaled_residual(scale=0.3)")
    assert {b.merge.scale for s in m.stages for b in s.blocks} == {0.3}
    assert isinstance(m.stages[2].final.merge, Residual)


def _block(connection, seed: int = 0) -> InceptionResidual:
    torch.manual_seed(seed)
    b = ConvBuilder("bn", "relu")
    block = InceptionResidual(b.mixed(8, (((8, 1),), ((8, 1), (8, 3)))), 8, connection=connection, act="relu",
                              ctx=lambda pos: _ctx(pos))
    return block.eval()


def test_residual_block_hand_computed():
    """With the projection's weights zero and its bias b: out = relu(x + scale * b)."""
    block = _block("scaled_residual(scale=0.17)")
    with torch.no_grad():
        block.proj.weight.zero_()
        block.proj.bias.copy_(torch.arange(8.0) - 4)
        x = torch.randn(2, 8, 5, 5)
        want = torch.relu(x + 0.17 * (torch.arange(8.0) - 4).view(1, 8, 1, 1))
        assert torch.allclose(block(x), want)
    assert block.proj.in_channels == 16 and block.proj.bias is not None   # linear 1x1 over the concat, no norm


def test_scale_one_equals_unscaled_block():
    """An Inception-ResNet block (and a whole network) with residual scale 1 computes what the plain sum does."""
    plain, scaled = _block("residual"), _block("scaled_residual(scale=1.0)", seed=1)
    scaled.load_state_dict(plain.state_dict())
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        assert torch.equal(scaled(x), plain(x))
    torch.manual_seed(0)
    ref = create_model("inception_resnet_v2_small", connection="residual").eval()
    one = create_model("inception_resnet_v2_small", connection="scaled_residual(scale=1.0)").eval()
    released = create_model("inception_resnet_v2_small").eval()
    one.load_state_dict(ref.state_dict())
    released.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(one(x), ref(x))
        assert not torch.allclose(released(x), ref(x))   # the default scales do change the function


def test_mixed_concatenates_in_order_and_avg_pool_ignores_padding():
    b = ConvBuilder("none", "none")
    m = b.mixed(2, (((8, 1),),), avg=8)
    assert isinstance(m, Mixed) and m.out_channels == 16
    with torch.no_grad():
        for conv in (m.branch0.conv, m.branch1[1].conv):
            conv.weight.fill_(1.0)
            conv.bias.zero_()
        x = torch.ones(1, 2, 4, 4)
        y = m(x)
    assert y.shape == (1, m.out_channels, 4, 4)
    # both branches sum the 2 input channels; the average of ones is one at the borders too (padding not counted)
    assert torch.equal(y, torch.full_like(y, 2.0))
    pooled = b.mixed(2, (((8, 3, 2, True),),), max_pool=True)
    assert pooled.out_channels == 8 + 2 and pooled(torch.randn(1, 2, 9, 9)).shape == (1, 10, 4, 4)


def test_min_input_size():
    for name in IMAGENET:
        m = _meta(name)
        assert m.min_input_size() == 75
        with pytest.raises(InputShapeError, match="at least 75x75"):
            m(torch.empty(1, 3, 74, 74, device="meta"))


def test_small_feature_size():
    for name in SMALL:
        m = create_model(name).eval()
        red = [f["reduction"] for f in m.feature_info]
        assert red == [1, 2, 4, 8, 16], name
        with torch.no_grad():
            for side in (32, 28):
                assert m.forward_features(torch.randn(1, 3, side, side)).shape[-2:] == (2, 2), (name, side)


def test_small_variant_trains():
    torch.manual_seed(0)
    m = create_model("inception_resnet_v2_small", num_classes=4)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
    losses = fit_losses(m, x, y, steps=6, lr=3e-3)
    assert losses[-1] < losses[0]


def test_drop_path_on_the_residual_branches_only():
    with torch.device("meta"):
        m = create_model("inception_resnet_v2_small", drop_path_rate=0.2)
    blocks = [mod for mod in m.modules() if isinstance(mod, InceptionResidual)]
    probs = [getattr(b.drop_path, "drop_prob", 0.0) for b in blocks]   # rate 0: nn.Identity
    assert len(blocks) == 8 and probs[0] == 0.0 and probs == sorted(probs) and abs(probs[-1] - 0.2) < 1e-9
    assert sum(isinstance(mod, DropPath) for mod in m.modules()) == 7
    with pytest.raises(ConfigError, match="drop_path_rate"):
        create_model("inception_v4_small", drop_path_rate=0.1)   # no residual branches


def test_pretrained_cfg_uses_the_inception_normalisation():
    cfg = _meta("inception_v4").pretrained_cfg
    assert cfg["mean"] == cfg["std"] == (0.5, 0.5, 0.5) and cfg["input_size"] == (3, 299, 299)
    assert "mean" not in meta_model("inception_v4_small").pretrained_cfg


@pytest.mark.parametrize("kw", [dict(stem="cifar"), dict(padding="reflect"), dict(width_mult=0.0),
                                dict(depths=(1, 2)), dict(depths=(1, 0, 1)), dict(depths=(1, 2.0, 1)),
                                dict(connection="[residual, residual]")])
def test_bad_options_raise_config_error(kw):
    with pytest.raises(ConfigError):
        create_model("inception_resnet_v2", **kw)


def test_the_released_final_block_needs_its_own_c_block():
    from blockzoo.models.inception_v4 import InceptionResNet
    with pytest.raises(ConfigError, match="last Inception-ResNet-C"):
        InceptionResNet(version="v2", depths=(1, 1, 1))
    with pytest.raises(ConfigError, match="version"):
        InceptionResNet(version="v3")
