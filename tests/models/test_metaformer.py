"""blockzoo.models.metaformer: the MetaFormer skeleton: mixer swaps, small stems, input checks, heads, custom blocks."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from blockzoo import registry
from blockzoo.blocks.mixers.dwconv import DWConv
from blockzoo.blocks.mixers.inception_dw import InceptionDWConv2d
from blockzoo.models.base import PerBlock
from blockzoo.models.metaformer import MetaFormer
from blockzoo.registry import BlockSpec, IncompatibleBlockError, Requires, create_model


def test_swap_mixer_small_stem():
    m = create_model("convnext_atto", mixer="inception_dw", img_size=32, stem="small", num_classes=10)
    assert m.feature_sizes == [(32, 32), (16, 16), (8, 8), (4, 4)]
    mixers = [blk.mixer for st in m.stages for blk in st.blocks]
    assert all(isinstance(x, InceptionDWConv2d) for x in mixers)
    assert mixers[0].split_indexes == (25, 5, 5, 5)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(IncompatibleBlockError, match="mixer"):
        create_model("convnext_atto", mixer="se")
    with pytest.raises(IncompatibleBlockError, match="mixer"):
        create_model("inception_next_atto", attn="dwconv")
    m = create_model("inception_next_atto", mixer="maxpool", attn="se", norm="gn", act="silu", head="max")
    assert isinstance(m.stages[2].blocks[0].mixer, nn.MaxPool2d) and isinstance(m.stages[2].blocks[0].norm,
                                                                                 nn.GroupNorm)


def test_small_stem_forward_backward_28px():
    for name in ("convnext_atto", "inception_next_atto", "poolformer_s12", "pf_convnext_atto"):
        m = create_model(name, stem="small", img_size=28, in_chans=1, num_classes=10)
        last = (4, 4) if name.startswith("poolformer") else (3, 3)   # 3x3/2 p1 vs 2x2/2 downsampling of 7x7
        assert m.feature_sizes == [(28, 28), (14, 14), (7, 7), last]
        x = torch.randn(2, 1, 28, 28)
        y = m(x)
        assert y.shape == (2, 10)
        y.sum().backward()
        assert all(p.grad is not None for p in m.parameters())
    m = create_model("convnext_atto", stem="patch", patch_size=2, img_size=32, num_classes=10)
    assert m.feature_sizes == [(16, 16), (8, 8), (4, 4), (2, 2)]


def test_requires_checked_against_feature_size(monkeypatch):
    seen = []

    def needs8(channels, input_resolution=None):
        seen.append(input_resolution)
        return nn.Identity()

    monkeypatch.setitem(registry._BLOCKS, "_needs8", BlockSpec(
        "_needs8", "mixer", needs8, None, "test", "test", requires=Requires(min_size=8, fixed_resolution=True)))
    with pytest.raises(IncompatibleBlockError, match=r"at least 8x8.*stages\.3\.blocks\.0\.mixer.*4x4"):
        create_model("convnext_atto", mixer="_needs8", stem="small", img_size=32)
    seen.clear()
    create_model("convnext_atto", mixer="_needs8", stem="small", img_size=64)
    assert seen == [(64, 64)] * 2 + [(32, 32)] * 2 + [(16, 16)] * 6 + [(8, 8)] * 2


def test_mixer_per_block():
    """Per-stage / per-block mixers use the one backbone convention (models.base.PerBlock; lists in test_base)."""
    m = create_model("convnext_atto", mixer=PerBlock(lambda s, b: f"dwconv(kernel_size={(3, 5, 7, 9)[s]})"))
    assert [st.blocks[0].mixer.kernel_size[0] for st in m.stages] == [3, 5, 7, 9]
    m = create_model("convnext_atto", mixer=PerBlock(lambda s, b: ("dwconv", {"kernel_size": 3 + 2 * b})))
    assert [blk.mixer.kernel_size[0] for blk in m.stages[2].blocks] == [3, 5, 7, 9, 11, 13]
    m = create_model("convnext_atto", mixer=PerBlock(lambda s, b: "dwconv" if s < 2 else "pool"))
    assert isinstance(m.stages[1].blocks[1].mixer, DWConv) and type(m.stages[3].blocks[0].mixer).__name__ == "Pool"
    m = create_model("convnext_atto", attn=PerBlock(lambda s, b: "se" if s == 3 else "none"))
    assert type(m.stages[3].blocks[0].attn).__name__ != "Identity" and isinstance(m.stages[2].blocks[0].attn,
                                                                                  nn.Identity)


def test_heads_pre_logits_and_reset():
    m = create_model("inception_next_atto", num_classes=7, stem="small", img_size=32)
    x = torch.randn(2, 3, 32, 32)
    assert m.forward_head(m.forward_features(x), pre_logits=True).shape == (2, 960)   # 3 x 320
    assert m.head_pre.norm.eps == 1e-6
    m.reset_classifier(3)
    assert m(x).shape == (2, 3)
    m.reset_classifier(5, head="avgmax")
    assert m(x).shape == (2, 5)
    c = create_model("convnext_atto", num_classes=0)
    assert c.fc.__class__ is nn.Identity and c(torch.randn(1, 3, 64, 64)).shape == (1, 320)
    assert c.head_pre.norm.__class__.__name__ == "LayerNorm2d"     # ConvNeXt: GAP -> LayerNorm -> fc
    p = create_model("poolformer_s12")
    assert isinstance(p.norm_pre, nn.GroupNorm) and p.norm_pre.num_groups == 1 and isinstance(p.head_pre, nn.Identity)


def test_custom_block_and_metaformer_direct():
    class Tiny(nn.Module):
        def __init__(self, dim, *, mixer, attn, norm_layer, act_layer, mlp_ratio, ls_init_value, drop_path,
                     mlp_layout, feat_size, ctx, scale=1.0):
            super().__init__()
            self.mixer, self.scale, self.feat_size, self.where = mixer, scale, feat_size, ctx("x").position

        def forward(self, x):
            return x + self.scale * self.mixer(x)

    m = MetaFormer((1, 1), (8, 16), block=Tiny, block_kwargs={"scale": 0.0}, mixer="maxpool", stem="small",
                   img_size=10, num_classes=2, norm="bn")
    assert m.stages[1].blocks[0].feat_size == (5, 5) and m.stages[1].blocks[0].where == "stages.1.blocks.0.x"
    assert m(torch.randn(2, 3, 10, 10)).shape == (2, 2)
    with pytest.raises(ValueError, match="unknown block"):
        MetaFormer((1,), (8,), block="nope")
    with pytest.raises(ValueError, match="too small"):
        create_model("convnext_atto", img_size=16)


def test_model_pickles_and_reset_keeps_head_body():
    import io
    m = create_model("inception_next_atto", num_classes=4, stem="small", img_size=32,
                     mixer=PerBlock(lambda s, b: "inception_dw"))
    buf = io.BytesIO()
    torch.save(m, buf)                                             # no closures kept on the module
    w = m.head_pre.fc1.weight.clone()
    m.reset_classifier(9)
    assert torch.equal(m.head_pre.fc1.weight, w) and m.fc.out_features == 9


def test_variant_options_show_the_variants_defaults():
    """The registry lists a MetaFormer variant's own configuration as its option defaults, not the skeleton's."""
    opts = registry.model_options("poolformer_s12")
    assert opts["ls_init_value"] == 1e-5 and opts["head_norm"] == "pre" and opts["stem"] == "overlap"
    assert tuple(opts["depths"]) == (2, 2, 6, 2) and tuple(opts["dims"]) == (64, 128, 320, 512)
    assert registry.model_options("convnext_atto")["head_norm"] == "post"
    assert create_model("convnext_atto", dims=(8, 16, 24, 32), num_classes=3).num_features == 32
