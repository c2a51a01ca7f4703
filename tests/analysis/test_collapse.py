"""The attention-collapse probe: hand-checkable similarities and the curve on a ViT-like model."""
from __future__ import annotations

import pytest
import torch

from blockzoo import ConfigError, create_model
from blockzoo.analysis.collapse import attention_maps, attention_similarity, map_similarity


def test_map_similarity_by_hand():
    a = torch.eye(3).view(1, 1, 3, 3)
    assert map_similarity(a, a) == pytest.approx(1.0)
    assert map_similarity(a, a.flip(-1)) == pytest.approx(1 / 3)           # one of three columns agrees
    u = torch.full((1, 1, 3, 3), 1 / 3)
    assert map_similarity(a, u) == pytest.approx(3 ** -0.5)                # e_t . 1 / (1 * sqrt 3)


def test_identical_layers_give_similarity_one():
    torch.manual_seed(0)
    m = create_model("vit_tiny_patch4_32", depth=4, img_size=16).eval()
    for blk in m.blocks[1:]:                                               # same attention weights everywhere and
        blk.attn.load_state_dict(m.blocks[0].attn.state_dict())           # no change of the tokens between blocks
        blk.ls1 = blk.ls2 = torch.nn.Identity()
    for blk in m.blocks:
        blk.attn.proj.weight.data.zero_(); blk.attn.proj.bias.data.zero_()  # noqa: E702
        blk.mlp.fc2.weight.data.zero_(); blk.mlp.fc2.bias.data.zero_()      # noqa: E702
    x = torch.randn(2, 3, 16, 16)
    curve = attention_similarity(m, x)
    assert curve.shape == (3,)
    torch.testing.assert_close(curve, torch.ones(3))
    assert attention_similarity(m, x, k=3).shape == (1,)
    assert m.training is False and len(attention_maps(m, x)) == 4


def test_curve_on_deepvit_and_errors():
    torch.manual_seed(0)
    m = create_model("deepvit_tiny_patch4_32", depth=3, img_size=16)
    m.train()
    curve = attention_similarity(m, torch.randn(2, 3, 16, 16), k=2)
    assert curve.shape == (1,) and -1 - 1e-6 <= curve.item() <= 1 + 1e-6 and m.training   # mixed maps may be < 0
    with pytest.raises(ConfigError, match="k=3"):
        attention_similarity(m, torch.randn(1, 3, 16, 16), k=3)
    with pytest.raises(ConfigError, match="attn_map"):
        attention_similarity(create_model("resnet20"), torch.randn(1, 3, 32, 32))
