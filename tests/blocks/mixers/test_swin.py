"""blockzoo.blocks.mixers.swin: window partition/reverse, relative position index, the shift mask, (S)W-MSA against
hand computations with plain loops, the official window rule, patch merging, the window_attn mixer."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from blockzoo import ConfigError, IncompatibleBlockError, create_block, create_model
from blockzoo.blocks.mixers.swin import (
    MASK_VALUE,
    PatchMerging,
    SwinBlock,
    WindowAttention,
    fit_window,
    relative_position_index,
    shifted_window_attention,
    window_mask,
    window_partition,
    window_reverse,
)
from blockzoo.registry import SlotContext, build_slot
from helpers import count_macs


def _randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return module.eval()


def _reference(x, attn: WindowAttention, window, shift, masked: bool = True):
    """(S)W-MSA written out token by token on an NHWC map (B = 1), in the original frame: token p sits at
    (p - shift) mod size after the cyclic shift, its window is that position // window (on the map padded to a
    multiple of the window), and with ``masked`` it attends only to the tokens of its window whose two coordinates
    were not separated by the roll's wrap-around."""
    _, h, w, c = x.shape
    heads, d = attn.num_heads, attn.head_dim
    qkv = attn.qkv(x[0]).reshape(h, w, 3, heads, d)
    table = attn.relative_position_bias_table
    wh, ww = window

    def rolled(i, j):
        return (i - shift[0]) % h, (j - shift[1]) % w

    def region(i, j):
        ri, rj = rolled(i, j)
        return ri >= h - shift[0], rj >= w - shift[1]

    out = torch.zeros(h, w, heads * d)
    for i in range(h):
        for j in range(w):
            ri, rj = rolled(i, j)
            keys = [(a, b) for a in range(h) for b in range(w)
                    if rolled(a, b)[0] // wh == ri // wh and rolled(a, b)[1] // ww == rj // ww
                    and (not masked or region(a, b) == region(i, j))]
            for hd in range(heads):
                q = qkv[i, j, 0, hd]
                logits = []
                for a, b in keys:
                    ra, rb = rolled(a, b)
                    dy, dx = ri % wh - ra % wh, rj % ww - rb % ww
                    bias = table[(dy + wh - 1) * (2 * ww - 1) + (dx + ww - 1), hd]
                    logits.append(q @ qkv[a, b, 1, hd] / math.sqrt(d) + bias)
                p = torch.softmax(torch.stack(logits), 0)
                out[i, j, hd * d:(hd + 1) * d] = sum(pk * qkv[a, b, 2, hd] for pk, (a, b) in zip(p, keys))
    return attn.proj(out)[None]


def test_window_partition_and_reverse_round_trip():
    x = torch.randn(2, 8, 9, 5)
    win = window_partition(x, (4, 3))
    assert win.shape == (2, 6, 12, 5)
    # window (row 1, col 2) of sample 1 holds rows 4..7, cols 6..8 in row-major order
    assert torch.equal(win[1, 1 * 3 + 2], x[1, 4:8, 6:9].reshape(12, 5))
    assert torch.equal(window_reverse(win, (4, 3), 2, 3), x)


def test_relative_position_index_by_hand():
    # window 2x2, tokens (0,0), (0,1), (1,0), (1,1); index = (dy + 1) * 3 + (dx + 1), (dy, dx) = query - key
    want = torch.tensor([[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]])
    assert torch.equal(relative_position_index((2, 2)), want)
    assert relative_position_index((7, 7)).max() == 13 * 13 - 1


def test_shift_mask_by_hand():
    """4x4 map, window 2, shift 1: after the roll, row 3 and column 3 hold the wrapped-around tokens."""
    m = window_mask(4, 4, (2, 2), (1, 1))
    assert m.shape == (4, 4, 4)
    assert torch.equal(m[0], torch.zeros(4, 4))                        # rows 0-1, cols 0-1: nothing wrapped
    def masked(apart):
        return torch.where(torch.tensor(apart, dtype=torch.bool), MASK_VALUE, 0.0)
    split = masked([[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0]])
    assert torch.equal(m[1], split)                                    # cols 2 | 3 (wrapped) apart
    assert torch.equal(m[3], masked(~torch.eye(4, dtype=torch.bool)))  # four regions: each token alone
    assert torch.equal(window_mask(4, 4, (2, 2), (0, 0)), torch.zeros(4, 4, 4))   # no shift, no padding


def test_shift_mask_blocks_wrapped_regions():
    """SW-MSA equals the token-by-token reference that only attends within the un-wrapped regions, and differs from
    the unmasked one (the mask matters in this case)."""
    torch.manual_seed(0)
    attn = _randomize(WindowAttention(8, 2, (2, 2)))
    x = torch.randn(1, 4, 6, 8)
    with torch.no_grad():
        y = shifted_window_attention(x, attn, (2, 2), (1, 1))
        ref = _reference(x, attn, (2, 2), (1, 1))
        unmasked = _reference(x, attn, (2, 2), (1, 1), masked=False)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    assert (y - unmasked).abs().max() > 1e-2


def test_padding_is_masked_out():
    """A 5x3 map with window 2 is padded to 6x4; the real tokens attend only to the real tokens of their window."""
    torch.manual_seed(1)
    attn = _randomize(WindowAttention(4, 1, (2, 2)))
    x = torch.randn(1, 5, 3, 4)
    with torch.no_grad():
        for shift in ((0, 0), (1, 1)):
            torch.testing.assert_close(shifted_window_attention(x, attn, (2, 2), shift),
                                       _reference(x, attn, (2, 2), shift), rtol=1e-5, atol=1e-5)


def test_shift_zero_equals_independent_windows():
    """A Swin block with shift 0 = norm, then plain softmax attention with the relative bias in each window on its
    own, then the MLP branch (the paper's Eq. 3 with W-MSA)."""
    torch.manual_seed(2)
    blk = _randomize(SwinBlock(8, 2, window_size=4, shift_size=0))
    x = torch.randn(1, 8, 8, 8)
    a = blk.attn
    bias = a.relative_position_bias_table[relative_position_index((4, 4)).flatten()].view(16, 16, 2).permute(2, 0, 1)
    with torch.no_grad():
        n = blk.norm1(x)
        mixed = torch.zeros_like(x)
        for r in (0, 4):
            for c in (0, 4):
                t = n[0, r:r + 4, c:c + 4].reshape(16, 8)
                q, k, v = a.qkv(t).reshape(16, 3, 2, 4).permute(1, 2, 0, 3)       # (heads, 16, 4) each
                p = torch.softmax(q @ k.transpose(1, 2) / 2.0 + bias, -1)
                mixed[0, r:r + 4, c:c + 4] = a.proj((p @ v).transpose(0, 1).reshape(16, 8)).reshape(4, 4, 8)
        y = x + mixed
        want = y + blk.mlp.fc2(F.gelu(blk.mlp.fc1(blk.norm2(y))))
        torch.testing.assert_close(blk(x), want, rtol=1e-5, atol=1e-5)


def test_window_rule_of_the_official_code():
    assert fit_window(7, 3, (56, 56), "t") == ((7, 7), (3, 3))
    assert fit_window(7, 3, (7, 7), "t") == ((7, 7), (0, 0))            # Swin-T's last stage at 224
    assert fit_window(7, 3, (5, 12), "t") == ((5, 7), (0, 3))           # per axis
    assert fit_window(7, 3, None, "t") == ((7, 7), (3, 3))
    for bad in (dict(window=7, shift=7), dict(window=0, shift=0), dict(window=4, shift=-1)):
        with pytest.raises(ConfigError):
            fit_window(bad["window"], bad["shift"], None, "t")


def test_patch_merging_order_and_odd_maps():
    """The official concat order x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]; an odd map is
    zero-padded (ceil(H / 2))."""
    pm = PatchMerging(3, 5)
    with torch.no_grad():
        pm.norm.weight.fill_(1), pm.norm.bias.zero_()
    x = torch.randn(2, 4, 6, 3)
    cat = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
    torch.testing.assert_close(pm(x), pm.reduction(F.layer_norm(cat, (12,), eps=1e-5)))
    assert pm(torch.randn(1, 5, 7, 3)).shape == (1, 3, 4, 5) and pm.out_size((5, 7)) == (3, 4)


def test_window_attn_mixer_standalone_and_heads():
    m = create_block("window_attn", 32)
    assert m.attn.num_heads == 1 and m.window_size == (7, 7)
    assert m(torch.randn(2, 32, 12, 10)).shape == (2, 32, 12, 10)      # padded to 14x14, masked, cropped
    assert create_block("window_attn", 96).attn.num_heads == 3         # C // 32
    assert create_block("window_attn", 96, num_heads=4).attn.head_dim == 24
    small = create_block("window_attn", 32, window_size=7, shift_size=3, input_resolution=(5, 12))
    assert small.window_size == (5, 7) and small.shift_size == (0, 3)
    for bad in (dict(shift_size=7), dict(window_size=0), dict(num_heads=5), dict(num_heads=0)):
        with pytest.raises(ConfigError):
            create_block("window_attn", 32, **bad)


def test_window_attn_in_metaformer_skeletons():
    """The mixer gets each stage's feature size: ConvNeXt-atto at 64 px has 16/8/4/2 maps, so windows 7, 7, 4, 2 and
    the shift only where the map is larger than the window; PoolFormer takes it too."""
    m = create_model("convnext_atto", mixer="window_attn(shift_size=3)", img_size=64, num_classes=5)
    got = [(s.blocks[0].mixer.window_size, s.blocks[0].mixer.shift_size) for s in m.stages]
    assert got == [((7, 7), (3, 3)), ((7, 7), (3, 3)), ((4, 4), (0, 0)), ((2, 2), (0, 0))]
    assert m(torch.randn(1, 3, 64, 48)).shape == (1, 5)
    p = create_model("poolformer_s12", mixer="window_attn", img_size=64, num_classes=5)
    assert p(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    with pytest.raises(IncompatibleBlockError, match="img_size"):      # a host that does not know its map size
        build_slot("mixer", "window_attn", 32, SlotContext("host", "stages.0.blocks.0.mixer", None))


def test_window_attention_macs_by_hand():
    """count_macs of one W-MSA on an 8x8 map, C 32, one head, window 4: qkv + proj + (Q K^T + A V) per window."""
    m = create_block("window_attn", 32, window_size=4).eval()
    assert count_macs(m, (32, 8, 8)) == 64 * 32 * 96 + 64 * 32 * 32 + 4 * 16 * 16 * (32 + 32)
