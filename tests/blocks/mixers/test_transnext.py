"""blockzoo.blocks.mixers.transnext (and ConvGLU in blocks.common.mlp): aggregated attention against hand-computed
cases (a whole-map window without pooled tokens is cosine attention over all tokens; the pooled part alone on a 1x1
pool), a per-pixel reference, the border mask and length scale, the bias resampling, parameter counts by hand;
ConvGLU's count and gating, and its use as the MetaFormer skeleton's ``mlp="convglu"``."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import ConfigError, create_block, create_model
from blockzoo.blocks.common.mlp import ConvGLU
from blockzoo.blocks.mixers.transnext import (
    AggregatedAttention,
    LengthScaledAttention,
    _resample_queries,
    adaptive_avg_pool,
    local_window_mask,
    relative_position_cpb,
)
from blockzoo.registry import IncompatibleBlockError
from helpers import meta_params, n_params


def _randomize(m: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return m.eval()


def _zero_extras(a: AggregatedAttention) -> None:
    """Query embedding, local relative bias and learnable tokens off: plain cosine attention logits."""
    with torch.no_grad():
        for p in (a.query_embedding, a.relative_pos_bias_local, a.learnable_tokens, a.learnable_bias):
            p.zero_()


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """(N, C) -> (heads, N, d)."""
    return t.reshape(t.shape[0], heads, -1).transpose(0, 1)


def test_whole_map_window_without_pool_is_full_attention():
    """A 5x5 window on a 3x3 map reaches every token from every query, and pool_size 0 leaves the coarse tokens out:
    with the query embedding, local bias and learnable tokens off, the output is
    ``proj(softmax(softplus(t) log(9) q^.k^) v)`` over all 9 tokens (cosine attention, by hand)."""
    c, heads = 8, 2
    a = _randomize(AggregatedAttention(c, heads, (3, 3), (0, 0), window_size=5))
    _zero_extras(a)
    x = torch.randn(1, 3, 3, c)
    t = x.reshape(9, c)
    q = F.normalize(_heads(a.q(t), heads), dim=-1)
    k, v = a.kv(t).chunk(2, dim=-1)
    k, v = F.normalize(_heads(k, heads), dim=-1), _heads(v, heads)
    scale = F.softplus(a.temperature) * math.log(9)
    ref = a.proj(((scale * q @ k.transpose(1, 2)).softmax(-1) @ v).transpose(0, 1).reshape(9, c))
    torch.testing.assert_close(a(x).reshape(9, c), ref, rtol=1e-5, atol=1e-6)


def test_pooled_part_alone_on_a_1x1_pool():
    """With the window logits at -inf and the learnable tokens off, a 1x1 pool grid takes all the weight: every
    query's output is ``proj(W_v LN(mean(GELU(sr(x)))))``, the same at every position."""
    c = 8
    a = _randomize(AggregatedAttention(c, 2, (4, 5), (1, 1)))
    with torch.no_grad():
        a.relative_pos_bias_local.fill_(float("-inf"))
        a.learnable_tokens.zero_()
        a.learnable_bias.zero_()
    x = torch.randn(2, 4, 5, c)
    pooled = F.layer_norm(F.gelu(a.sr(x.permute(0, 3, 1, 2))).mean((2, 3)), (c,), a.norm.weight, a.norm.bias)
    ref = a.proj(a.kv(pooled)[:, c:])                                            # (B, C)
    y = a(x)
    torch.testing.assert_close(y, ref[:, None, None, :].expand_as(y), rtol=1e-5, atol=1e-6)


def _reference(a: AggregatedAttention, x: torch.Tensor) -> torch.Tensor:
    """A per-pixel loop: each query's logits over its window positions inside the map (cosine, length-scaled, with
    the query embedding and the per-offset bias) and the pooled tokens (with the MLP bias), one softmax, then the
    learnable-token affinities added to the window weights."""
    _, hh, ww, c = x.shape
    heads, r = a.num_heads, a.window_size // 2
    q = F.normalize(_heads(a.q(x[0].reshape(-1, c)), heads), dim=-1)             # (h, N, d)
    k, v = a.kv(x[0].reshape(-1, c)).chunk(2, dim=-1)
    k, v = F.normalize(_heads(k, heads), dim=-1), _heads(v, heads)
    pooled = a.norm(F.adaptive_avg_pool2d(a.act(a.sr(x.permute(0, 3, 1, 2))), a.pool_size).flatten(2)[0].t())
    kp, vp = a.kv(pooled).chunk(2, dim=-1)
    kp, vp = F.normalize(_heads(kp, heads), dim=-1), _heads(vp, heads)
    bias = a.pool_bias((hh, ww))                                                  # (h, N, P)
    out = torch.zeros(heads, hh * ww, c // heads)
    for i in range(hh):
        for j in range(ww):
            n = i * ww + j
            offs = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)
                    if 0 <= i + dy < hh and 0 <= j + dx < ww]
            idx = [(i + dy) * ww + j + dx for dy, dx in offs]
            pos = [(dy + r) * a.window_size + dx + r for dy, dx in offs]
            qs = (q[:, n] + a.query_embedding[:, 0]) * F.softplus(a.temperature[:, 0]) * math.log(len(offs) + 4)
            logits = torch.cat([(qs[:, None] * k[:, idx]).sum(-1) + a.relative_pos_bias_local[:, pos],
                                (qs[:, None] * kp).sum(-1) + bias[:, n]], dim=-1).softmax(-1)
            w_local = logits[:, :len(offs)] + (q[:, n, :, None] * a.learnable_tokens[:, :, pos]).sum(1) \
                + a.learnable_bias[:, 0, pos]
            out[:, n] = (w_local[:, :, None] * v[:, idx]).sum(1) + (logits[:, len(offs):, None] * vp).sum(1)
    return a.proj(out.transpose(0, 1).reshape(hh, ww, c))


def test_matches_a_per_pixel_reference():
    a = _randomize(AggregatedAttention(8, 2, (4, 5), (2, 2)))
    x = torch.randn(1, 4, 5, 8)
    with torch.no_grad():
        torch.testing.assert_close(a(x)[0], _reference(a, x), rtol=1e-5, atol=1e-5)


def test_border_mask_and_length_scale():
    """k = 3 on a 3x4 map: 4 window positions inside at a corner, 6 on an edge, 9 inside; the others are masked.
    A 1x1 map (one valid position, the query itself) stays finite."""
    n, mask = local_window_mask(torch.zeros(1, 3, 4, 1), 3)
    counts = n[:, 0].reshape(3, 4)
    assert counts.tolist() == [[4, 6, 6, 4], [6, 9, 9, 6], [4, 6, 6, 4]]
    assert torch.equal(mask.sum(1).reshape(3, 4), 9 - counts.long())
    assert not mask[5].any() and mask[0].tolist() == [True] * 4 + [False, False, True, False, False]
    a = _randomize(AggregatedAttention(8, 2, (1, 1), (1, 1)))
    assert torch.isfinite(a(torch.randn(2, 1, 1, 8))).all()


def test_adaptive_avg_pool_is_torchs():
    """The cumulative-sum pooling averages the cells of ``F.adaptive_avg_pool2d``, also for grids that do not divide
    the map (overlapping cells) and grids larger than the map."""
    x = torch.randn(2, 3, 7, 10)
    for size in ((3, 4), (7, 10), (1, 1), (2, 3), (9, 12)):
        torch.testing.assert_close(adaptive_avg_pool(x, size), F.adaptive_avg_pool2d(x, size), rtol=1e-5, atol=1e-6)


def test_position_coordinates_and_resampling():
    """The bias MLP's coordinates are log-spaced, 8 (q - pooled position) / (size - 1): a 4-pixel axis pooled to 2
    cells (mean positions 0.5, 2.5) gives offsets in {-2.5, -1.5, -0.5, 0.5, 1.5, 2.5} * 8/3; resampling the biases
    to the built grid is exact, to another grid it keeps the shape."""
    index, table = relative_position_cpb((4, 4), (2, 2))
    t = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]) * 8 / 3
    expect = torch.sign(t) * torch.log2(t.abs() + 1) / 3
    assert table.shape == (36, 2) and index.shape == (16 * 4,)
    torch.testing.assert_close(table[:, 0].unique(), expect)
    bias = torch.randn(2, 12, 5)
    assert torch.equal(_resample_queries(bias, (3, 4), (3, 4)), bias)
    assert _resample_queries(bias, (3, 4), (5, 2)).shape == (2, 10, 5)
    full = _randomize(LengthScaledAttention(8, 2, (3, 4)))
    assert full.position_bias((3, 4)).shape == (2, 12, 12) and full.position_bias((2, 5)).shape == (2, 10, 10)


def test_param_counts_by_hand():
    """q, kv, proj, sr (C^2 + C each, kv twice), the pooled LayerNorm, the bias MLP (2 -> 512 -> h), temperature,
    query embedding, local bias (h k^2), learnable tokens (h d k^2) and bias (h k^2); the full attention: qkv, proj,
    bias MLP, temperature, query embedding."""
    c, h, k = 48, 2, 3
    d = c // h
    cpb = 2 * 512 + 512 + 512 * h + h
    agg = 5 * (c * c + c) + 2 * c + cpb + h + h * d + h * k * k + h * d * k * k + h * k * k
    assert n_params(AggregatedAttention(c, h, (8, 8), (2, 2))) == agg
    assert n_params(AggregatedAttention(c, h, (8, 8), (0, 0))) == agg - (c * c + c) - 2 * c - cpb
    assert n_params(LengthScaledAttention(c, h, (4, 4))) == 4 * (c * c + c) + cpb + h + h * d


def test_mixer_options_and_refusals():
    """The mixer pools to 7x7 clipped to the map, or map // sr_ratio; an even window, a missing resolution and heads
    that do not divide the host's width are refused (the last when the host is built)."""
    m = create_block("aggregated_attn", 64, input_resolution=(14, 5))
    assert m.attn.pool_size == (7, 5) and m.attn.num_heads == 2
    assert create_block("aggregated_attn", 32, input_resolution=(16, 12), sr_ratio=8).attn.pool_size == (2, 1)
    with pytest.raises(ConfigError, match="window_size"):
        create_block("aggregated_attn", 32, input_resolution=(8, 8), window_size=4)
    with pytest.raises(ConfigError, match="input_resolution"):
        create_block("aggregated_attn", 32)
    with pytest.raises(IncompatibleBlockError, match="heads"):
        create_model("convnext_atto", mixer="aggregated_attn(num_heads=3)", img_size=64)


# ------------------------------------------------------------------------------------------------------ ConvGLU
def test_convglu_param_count():
    """h = int(2/3 hidden): fc1 (d + 1) 2h, the 3x3 depthwise conv with bias 10h, fc2 (h + 1) d -- about the MLP
    it replaces; both layouts alike."""
    d, hidden = 48, 384
    h = int(2 * hidden / 3)
    for layout in ("linear", "conv"):
        assert n_params(ConvGLU(d, hidden, nn.GELU, layout=layout)) == (d + 1) * 2 * h + 10 * h + (h + 1) * d
    assert h == 256


def test_convglu_gating():
    """``fc2(act(dwconv(gate)) * value)`` with the first half of fc1 as the gate; a zero gate (depthwise conv and
    bias 0) gives a zero output whatever the input; NCHW, NHWC and the conv layout agree."""
    g = _randomize(ConvGLU(6, 9, nn.GELU))
    x = torch.randn(2, 6, 5, 4)
    gate, value = g.fc1(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).chunk(2, dim=1)
    hand = F.gelu(F.conv2d(gate, g.dwconv.weight, g.dwconv.bias, padding=1, groups=6)) * value
    ref = g.fc2(hand.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(g(x), ref)
    torch.testing.assert_close(g.forward_nhwc(x.permute(0, 2, 3, 1)), ref.permute(0, 2, 3, 1))
    conv = ConvGLU(6, 9, nn.GELU, layout="conv").eval()
    conv.load_state_dict({k: v.reshape(v.shape + (1, 1)) if k.startswith("fc") and k.endswith("weight") else v
                          for k, v in g.state_dict().items()})
    torch.testing.assert_close(conv(x), ref, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        g.dwconv.weight.zero_()
        g.dwconv.bias.zero_()
        g.fc2.bias.zero_()
    assert torch.equal(g(x), torch.zeros_like(x))


def test_convglu_in_the_metaformer_skeleton():
    """``mlp="convglu"`` swaps every block's MLP (the counts differ by ConvGLU - MLP per block), runs, and keeps the
    default unchanged; unknown names and family blocks without the option are refused."""
    base = create_model("convnext_atto_small", num_classes=10)
    glu = create_model("convnext_atto_small", num_classes=10, mlp="convglu")
    blocks = [b for s in glu.stages for b in s.blocks]
    assert all(isinstance(b.mlp, ConvGLU) for b in blocks)

    def diff(c: int) -> int:
        h = int(2 * 4 * c / 3)
        return (c + 1) * 2 * h + 10 * h + (h + 1) * c - ((c + 1) * 4 * c + (4 * c + 1) * c)
    assert n_params(glu) - n_params(base) == sum(d * diff(c) for d, c in zip((2, 2, 6, 2), (40, 80, 160, 320)))
    assert glu(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert meta_params("poolformer_s12", mlp="convglu") != meta_params("poolformer_s12")
    with pytest.raises(ConfigError, match="mlp"):
        create_model("convnext_atto_small", mlp="glu")
    with pytest.raises(ConfigError, match="mlp option"):
        create_model("unireplknet_a", mlp="convglu")
