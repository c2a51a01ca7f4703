"""blockzoo.models.convit: exact parameter counts (by hand too), MACs by hand and at 224 px vs the paper, the class
token after the GPSA blocks, GPSA heads local at init, other input sizes, the small-image variant trains."""
from __future__ import annotations

import pytest
import torch

from blockzoo import ConfigError, create_model
from blockzoo.analysis.locality import model_nonlocality
from blockzoo.blocks.common.transformer import Attention
from blockzoo.blocks.mixers.gpsa import GPSA
from blockzoo.registry import get_model_spec
from helpers import check_param_count, fit_losses, macs, meta_params

# name -> (exact count: official code / timm, paper Table 1 (whole millions), tolerance vs that rounding)
PARAMS = {
    "convit_tiny": (5_710_512, 6e6, 0.05),
    "convit_small": (27_777_322, 27e6, 0.03),
    "convit_base": (86_540_040, 86e6, 0.01),
}
# name -> (width, heads, the paper's "FLOPs")
CONFIGS = {"convit_tiny": (192, 4, 1.0e9), "convit_small": (432, 9, 5.4e9), "convit_base": (768, 16, 17e9)}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_param_counts(name):
    check_param_count(name, *PARAMS[name])


def _params_by_hand(c: int, heads: int, patch: int, tokens: int, classes: int, gpsa: int = 10, depth: int = 12):
    embed = 3 * patch * patch * c + c + c + tokens * c                 # patch conv, class token, pos_embed (patches)
    mlp_norms = 8 * c * c + 5 * c + 4 * c                              # fc1, fc2 (+ biases), norm1, norm2
    gpsa_attn = 4 * c * c + c + 4 * heads + heads                      # qk, v, proj (+ bias), pos_proj, gate
    mhsa_attn = 4 * c * c + c                                          # qkv (no bias), proj (+ bias)
    return (embed + gpsa * (gpsa_attn + mlp_norms) + (depth - gpsa) * (mhsa_attn + mlp_norms) + 2 * c
            + c * classes + classes)


def test_param_count_by_hand():
    for name, (c, heads, _) in CONFIGS.items():
        assert meta_params(name) == _params_by_hand(c, heads, 16, 196, 1000) == PARAMS[name][0]
    assert meta_params("convit_tiny_patch4_32") == _params_by_hand(192, 4, 4, 64, 10)


def _attention_products(c: int, tokens: int, gpsa: int = 10, depth: int = 12) -> int:
    """q k^T and A v of every block: 2 N^2 C (the class token makes N + 1 after the GPSA blocks)."""
    return gpsa * 2 * tokens ** 2 * c + (depth - gpsa) * 2 * (tokens + 1) ** 2 * c


def _macs_by_hand(c: int, heads: int, patch: int, tokens: int, classes: int) -> int:
    linear = 12 * c * c                                                # qk/qkv, v, proj, fc1, fc2 per token
    gpsa = tokens * linear + 3 * tokens ** 2 * heads                   # + pos_proj on the N x N relative positions
    mhsa = (tokens + 1) * linear
    return (tokens * 3 * patch * patch * c + 10 * gpsa + 2 * mhsa + _attention_products(c, tokens)
            + c * classes)


def test_macs_by_hand_small_variant():
    m = create_model("convit_tiny_patch4_32")
    assert macs(m, (3, 32, 32)) == _macs_by_hand(192, 4, 4, 64, 10)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_paper_flops_are_linear_macs(name):
    """Our MACs at 224 (count_macs) equal the formula and the registry; the paper's Table 1 "FLOPs" are the MACs
    without the attention products q k^T and A v: within 3% for S and B (1.2% and 1.0%), and ConViT-Ti's one-digit
    "1G" is 1.08 G rounded. With them: 1.25 G for Ti, timm's 1.26 GMACs."""
    c, heads, paper = CONFIGS[name]
    spec = get_model_spec(name)
    ours = macs(create_model(name), (3, 224, 224))
    assert ours == _macs_by_hand(c, heads, 16, 196, 1000) == spec.reference["macs_224"]
    assert spec.paper_macs == paper
    linear = ours - _attention_products(c, 196)
    if name == "convit_tiny":
        assert round(linear / 1e9) == 1 and abs(ours - 1.26e9) <= 0.01 * 1.26e9
    else:
        assert abs(linear - paper) <= 0.03 * paper, (name, linear)


def _block_inputs(m, x):
    seen = []
    hooks = [b.register_forward_pre_hook(lambda _m, a: seen.append(a[0])) for b in m.blocks]
    with torch.no_grad():
        m(x)
    for h in hooks:
        h.remove()
    return seen


def test_class_token_joins_after_the_gpsa_blocks():
    m = create_model("convit_tiny", num_classes=3, img_size=64).eval()
    assert all(isinstance(b.attn, GPSA) for b in m.blocks[:10])
    assert all(isinstance(b.attn, Attention) and b.attn.qkv.bias is None for b in m.blocks[10:])
    assert m.pos_embed.shape == (1, 16, 192)                           # 4 x 4 patches, no class-token entry
    x = torch.randn(2, 3, 64, 64)
    seen = _block_inputs(m, x)
    assert [tuple(t.shape) for t in seen] == [(2, 4, 4, 192)] * 10 + [(2, 17, 192)] * 2
    torch.testing.assert_close(seen[10][:, 0], m.cls_token[0].expand(2, -1))   # the class token, no position term
    # the GPSA blocks' outputs are the feature maps, on the patch grid
    with torch.no_grad():
        maps = m.forward_intermediates(x, intermediates_only=True)
    assert len(maps) == 12 and all(t.shape == (2, 192, 4, 4) for t in maps)
    torch.testing.assert_close(maps[9], seen[10][:, 1:].transpose(1, 2).unflatten(-1, (4, 4)))


def test_gpsa_layers_start_local():
    """The paper's locality analysis: the local init makes the GPSA heads local (every GPSA head is below every
    plain self-attention head at initialization, whose content attention is nearly uniform)."""
    torch.manual_seed(0)
    m = create_model("convit_tiny_patch4_32")
    d = model_nonlocality(m, torch.randn(4, 3, 32, 32))
    gpsa, mhsa = torch.cat(d[:10]), torch.cat(d[10:])
    assert len(d) == 12 and gpsa.numel() == 40 and mhsa.numel() == 8
    assert gpsa.max() < mhsa.min()


def test_other_input_sizes():
    """Built for 224, runs at another (non-square) size: the position embedding is resampled to the patch grid and
    GPSA takes the real grid."""
    m = create_model("convit_tiny", num_classes=4).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 80, 48)).shape == (1, 4)
    assert create_model("convit_tiny_patch4_32")(torch.randn(2, 3, 28, 28)).shape == (2, 10)


def test_small_variant_trains():
    torch.manual_seed(0)
    m = create_model("convit_tiny_patch4_32", in_chans=1)                # Fashion-MNIST-sized: 7x7 patches
    x, y = torch.randn(4, 1, 28, 28), torch.arange(4)
    losses = fit_losses(m, x, y, steps=6, lr=1e-3)
    assert losses[-1] < 0.5 * losses[0]


def test_bad_options():
    for bad in (0, 12, 13):
        with pytest.raises(ConfigError, match="local_up_to_layer"):
            create_model("convit_tiny_patch4_32", local_up_to_layer=bad)
    with pytest.raises(ConfigError, match="locality_strength"):
        create_model("convit_tiny_patch4_32", locality_strength=0.0)
