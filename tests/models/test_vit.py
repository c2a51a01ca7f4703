"""ViT / DeiT: exact parameter counts, MACs, the distilled head, position-embedding resampling, the token feature
maps and the skeleton's hooks (attn_layer, cls_token_at)."""
from __future__ import annotations

import pytest
import torch

from blockzoo import ConfigError, create_model
from blockzoo.blocks.common.transformer import Attention
from blockzoo.models.common.vit import VisionTransformer
from blockzoo.registry import get_model_spec
from helpers import check_macs_224, check_param_count, macs


@pytest.mark.parametrize("name,exact,paper", [
    ("vit_tiny_patch16_224", 5_717_416, 5e6), ("deit_tiny_patch16_224", 5_717_416, 5e6),
    ("vit_small_patch16_224", 22_050_664, 22e6), ("deit_small_patch16_224", 22_050_664, 22e6),
    ("vit_base_patch16_224", 86_567_656, 86e6), ("deit_base_patch16_224", 86_567_656, 86e6),
    ("deit_tiny_distilled_patch16_224", 5_910_800, 6e6)])
def test_param_counts(name, exact, paper):
    check_param_count(name, exact, paper, tol=0.15)   # the paper rounds to millions


def test_param_count_formula():
    """12 blocks of 12 d^2 + 13 d, patch conv, tokens, position embedding, final norm, head (ViT-Ti)."""
    d, n = 192, 196
    block = 12 * d * d + 13 * d
    assert 12 * block + (768 * d + d) + d + (n + 1) * d + 2 * d + (1000 * d + 1000) == 5_717_416


@pytest.mark.slow
@pytest.mark.parametrize("name,paper", [("deit_small_patch16_224", 4.6e9), ("vit_small_patch16_224", 4.6e9),
                                        ("deit_base_patch16_224", 17.6e9), ("vit_base_patch16_224", 17.6e9)])
def test_macs_224(name, paper):
    check_macs_224(name, paper)


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "deit_tiny_patch16_224", "deit_tiny_distilled_patch16_224"])
def test_macs_224_tiny(name):
    """DeiT-Ti: 1.254 G (distilled: 1.261 G); the paper's 1.3 is timm's 1.26 (which counts the norms too) rounded to
    one decimal, so the check is against the rounding interval rather than 3%."""
    ours = macs(create_model(name), (3, 224, 224))
    assert ours == get_model_spec(name).reference["macs_224"] and get_model_spec(name).paper_macs == 1.3e9
    assert abs(ours - 1.3e9) <= 0.05e9


def test_attention_macs_counted():
    """q k^T and attn v: 2 N^2 d MACs per block on top of the linears (count_macs counts SDPA)."""
    m = create_model("vit_tiny_patch4_32", num_classes=10, depth=1).eval()
    n, d = 65, 192
    linears = n * (d * 3 * d + d * d + 2 * 4 * d * d) + 64 * 48 * d + d * 10
    assert macs(m, (3, 32, 32)) == linears + 2 * n * n * d


def test_distilled_head():
    torch.manual_seed(0)
    m = create_model("deit_tiny_distilled_patch16_224", num_classes=5, img_size=32).eval()
    assert m.pos_embed.shape == (1, 2 * 2 + 2, 192) and m.no_weight_decay() == {"pos_embed", "cls_token",
                                                                                  "dist_token"}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        f = m.forward_features(x)
        y = m(x)
    torch.testing.assert_close(y, (m.fc(f[:, 0]) + m.head_dist(f[:, 1])) / 2)
    m.train()
    assert isinstance(m(x), torch.Tensor)           # timm's default: the mean in training too
    m.set_distilled_training()
    cls, dist = m(x)
    assert cls.shape == dist.shape == (2, 5)
    with pytest.raises(ConfigError):
        create_model("vit_tiny_patch4_32").set_distilled_training()
    with pytest.raises(ConfigError, match="global_pool"):
        m.reset_classifier(3, "avg")


def test_pos_embed_resampling():
    """Built for 32 px, the model runs at 48 x 40 with the bicubically resampled embedding; at 32 the resampling is
    the identity, so the forward equals adding the stored embedding."""
    torch.manual_seed(0)
    m = create_model("vit_tiny_patch4_32", depth=1).eval()
    x = torch.randn(1, 3, 32, 32)
    t = m.patch_embed(x).flatten(1, 2)
    want = torch.cat([m.cls_token, t], 1) + m.pos_embed
    assert torch.equal(m._pos_embed(m.patch_embed(x)), want)
    assert m(torch.randn(1, 3, 48, 40)).shape == (1, 10)
    assert m.forward_features(torch.randn(1, 3, 48, 40)).shape == (1, 1 + 12 * 10, 192)


def test_feature_maps_are_the_patch_grid():
    m = create_model("vit_tiny_patch4_32", depth=2).eval()
    x = torch.randn(2, 3, 32, 24)
    assert [f["reduction"] for f in m.feature_info] == [4, 4] and m.feature_info[0]["module"] == "blocks.0"
    with torch.no_grad():
        final, maps = m.forward_intermediates(x)
        tokens = m.blocks(m._pos_embed(m.patch_embed(x)))
    assert maps[-1].shape == (2, 192, 8, 6)
    assert torch.equal(maps[-1][:, :, 1, 2], tokens[:, 1 + 1 * 6 + 2])    # row-major patch order, class token off
    assert torch.equal(final, m.forward_features(x))


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_global_pool(pool):
    m = create_model("vit_tiny_patch4_32", depth=1, global_pool=pool).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        f = m.forward_features(x)[:, 1:]
        want = f.mean(1) if pool == "avg" else f.amax(1)
        torch.testing.assert_close(m.forward_head(m.forward_features(x), pre_logits=True), want)
    with pytest.raises(ConfigError, match="class token"):
        create_model("vit_tiny_patch4_32", class_token=False)


def test_hooks_attn_layer_and_cls_token_at():
    """The per-block attention factory and a class token inserted later (ConViT's layout): the first blocks see only
    the patch tokens, the position embedding covers only them."""
    made = []

    def attn_layer(i, dim, heads):
        made.append((i, dim, heads))
        return Attention(dim, heads) if i == 0 else None

    m = VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=3, num_heads=2, num_classes=3,
                          attn_layer=attn_layer, cls_token_at=2, no_embed_class=True).eval()
    assert made == [(0, 32, 2), (1, 32, 2), (2, 32, 2)] and m.pos_embed.shape == (1, 16, 32)
    seen = []
    for blk in m.blocks:
        blk.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[1]))
    x = torch.randn(2, 3, 16, 16)
    assert m(x).shape == (2, 3) and seen == [16, 16, 17]
    maps = m.forward_intermediates(x, intermediates_only=True)
    assert [t.shape for t in maps] == [(2, 32, 4, 4)] * 3
    with pytest.raises(ConfigError, match="no_embed_class"):
        VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=3, num_heads=2, cls_token_at=2)
    with pytest.raises(ConfigError, match="cls_token_at"):
        VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=3, num_heads=2, cls_token_at=3,
                          no_embed_class=True)


def test_init_like_deit():
    torch.manual_seed(0)
    m = create_model("vit_tiny_patch16_224")   # trunc_normal_(std=0.02) cut at +-2 (absolute), as timm / DeiT
    w = m.blocks[0].attn.qkv.weight
    assert abs(w.std().item() - 0.02) < 0.002 and not m.fc.bias.any() and not m.blocks[0].mlp.fc1.bias.any()
    assert abs(m.pos_embed.std().item() - 0.02) < 0.002


def test_bad_options():
    for kw in (dict(num_heads=5), dict(global_pool="gem"), dict(depth=0), dict(class_token=False, distilled=True)):
        with pytest.raises(ConfigError):
            create_model("vit_tiny_patch4_32", **kw)


def test_load_at_another_size():
    """Weights of a 32 px model load into one built for 48 px (position embedding resampled as DeiT's 384 px
    fine-tuning); both then compute the same function at 48 px."""
    torch.manual_seed(0)
    small = create_model("vit_tiny_patch4_32", depth=1).eval()
    big = create_model("vit_tiny_patch4_32", depth=1, img_size=48).eval()
    big.load_state_dict(small.state_dict())
    assert big.pos_embed.shape == (1, 1 + 12 * 12, 192) and torch.equal(big.cls_token, small.cls_token)
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(big(x), small(x), rtol=1e-4, atol=1e-5)
