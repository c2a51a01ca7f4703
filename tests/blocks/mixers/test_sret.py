"""blockzoo.blocks.mixers.sret: sliced group self-attention (hand-computed slices, padding, permutations, MACs) and
the recursive block (weight sharing, NLLs, learnable residual connections)."""
from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn as nn

from blockzoo import ConfigError, create_block
from blockzoo.blocks.common.layers import make_act, make_norm
from blockzoo.blocks.common.metaformer import MetaFormerBlock
from blockzoo.blocks.common.transformer import Attention
from blockzoo.blocks.mixers.sret import (
    LRCBlock,
    NonLinearProjection,
    Recursive,
    SlicedGroupAttention,
    SlicedMixer2d,
    SReTBlock,
)
from helpers import count_macs, n_params

C, HEADS = 16, 2
NORM, ACT = partial(make_norm, "ln2d"), partial(make_act, "gelu")


def _attention(groups=1, permute="random", seed=0) -> SlicedGroupAttention:
    torch.manual_seed(seed)
    return SlicedGroupAttention(C, HEADS, groups, permute).eval()


def _full(a: SlicedGroupAttention, x: torch.Tensor) -> torch.Tensor:
    """Full multi-head attention with ``a``'s weights, written out: softmax(q k^T / sqrt(d)) v per head."""
    b, n, _ = x.shape
    h, d = a.num_heads, a.head_dim
    q, k, v = a.qkv(x).reshape(b, n, 3, h, d).permute(2, 0, 3, 1, 4)
    w = (q @ k.transpose(-2, -1) / d ** 0.5).softmax(-1)
    return a.proj((w @ v).transpose(1, 2).reshape(b, n, h * d))


def _per_slice(a: SlicedGroupAttention, x: torch.Tensor, slices: list[list[int]]) -> torch.Tensor:
    """Full attention run on each slice of token indices separately, put back in place."""
    out = torch.empty_like(x)
    for s in slices:
        out[:, s] = _full(a, x[:, s])
    return out


def test_one_group_is_full_attention():
    a = _attention(groups=1)
    ref = Attention(C, HEADS).eval()
    ref.load_state_dict(a.state_dict())
    x = torch.randn(2, 13, C)
    with torch.no_grad():
        assert torch.allclose(a(x), _full(a, x), atol=1e-6)
        assert torch.allclose(a(x), ref(x), atol=1e-6)
        assert torch.allclose(a(x, loop=1), ref(x), atol=1e-6)      # one group: nothing to permute


def test_slices_attend_independently():
    """G contiguous slices (paper Fig. 2), uneven slices with masked padding, and the interleaved permutation."""
    x = torch.randn(2, 24, C)
    with torch.no_grad():
        a = _attention(groups=4)
        assert torch.allclose(a(x), _per_slice(a, x, [list(range(i, i + 6)) for i in range(0, 24, 6)]), atol=1e-6)
        # 10 tokens in 4 slices of 3: the last slice holds one real token and two masked padding tokens
        y = x[:, :10]
        assert torch.allclose(a(y), _per_slice(a, y, [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]), atol=1e-6)
        # more slices than tokens: every token attends only to itself
        z = x[:, :3]
        assert torch.allclose(a(z), _per_slice(a, z, [[0], [1], [2]]), atol=1e-6)
        # loop 1 of groups (4, 3), interleaved: slice g = tokens g, g + 3, ...; 10 tokens -> slices of 4 (2 padded)
        b = _attention(groups=(4, 3), permute="stride")
        assert torch.allclose(b(y, loop=1), _per_slice(b, y, [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]), atol=1e-6)
        assert torch.allclose(b(y, loop=0), _per_slice(b, y, [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]), atol=1e-6)
        # permute="none": contiguous slices in every loop
        c = _attention(groups=(4, 3), permute="none")
        assert torch.allclose(c(y, loop=1), _per_slice(c, y, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]), atol=1e-6)


def test_random_permutation_in_training():
    """permute='random': a fresh permutation per training forward (official), put back afterwards; eval mode uses
    the interleaved one (deterministic)."""
    a = _attention(groups=(1, 2))
    x = torch.randn(2, 12, C)
    with torch.no_grad():
        assert torch.equal(a(x, loop=1), a(x, loop=1))
        assert torch.allclose(a(x, loop=1), _per_slice(a, x, [list(range(0, 12, 2)), list(range(1, 12, 2))]),
                              atol=1e-6)
        a.train()
        torch.manual_seed(3)
        y = a(x, loop=1)
        torch.manual_seed(3)
        order = torch.argsort(torch.rand(12)).tolist()          # the permutation the forward drew
        assert torch.allclose(y, _per_slice(a, x, [order[:6], order[6:]]), atol=1e-6)
        assert not torch.allclose(a(x, loop=1), a(x, loop=1))   # another permutation at each call
        assert torch.allclose(a(x, loop=0), _per_slice(a, x, [list(range(12))]), atol=1e-6)   # loop 0: no permutation


def test_mixer_block_is_attention_on_row_major_tokens():
    m = create_block("sliced_attn", 64, groups=2).eval()
    assert isinstance(m, SlicedMixer2d) and m.attn.num_heads == 2 and m.attn.groups == (2,)   # 64 // 32 heads
    x = torch.randn(2, 64, 4, 3)
    with torch.no_grad():
        tokens = x.flatten(2).transpose(1, 2)                 # row-major: slice 0 = the first two rows
        want = torch.cat([_full(m.attn, tokens[:, :6]), _full(m.attn, tokens[:, 6:])], 1)
        assert torch.allclose(m(x), want.transpose(1, 2).reshape_as(x), atol=1e-6)
    s = create_block("sliced_attn", 126, head_dim=42)
    assert (s.attn.num_heads, s.attn.head_dim) == (3, 42)
    t = create_block("sliced_attn", 40, num_heads=4)
    assert (t.attn.num_heads, t.attn.head_dim) == (4, 10)


def test_macs_by_hand():
    """qkv + proj = 4 N C^2; the two attention products 2 N^2 C / G (count_macs counts SDPA exactly)."""
    h, w, c = 16, 8, 32
    n = h * w
    for g in (1, 4, 8):
        m = create_block("sliced_attn", c, groups=g)
        assert count_macs(m, (c, h, w)) == 4 * n * c * c + 2 * n * n * c // g


def test_bad_options():
    for kw in (dict(groups=0), dict(groups=()), dict(groups=(2, 0)), dict(permute="shuffle"), dict(num_heads=3),
               dict(head_dim=0), dict(attn_drop=1.0), dict(proj_drop=-0.1)):
        with pytest.raises(ConfigError):
            create_block("sliced_attn", 32, **kw)
    with pytest.raises(ConfigError):
        Recursive(nn.Identity(), loops=0)


# ------------------------------------------------------------------------------------------------------ recursion
def _lrc_block(mixer: nn.Module | None = None, seed: int = 0) -> LRCBlock:
    torch.manual_seed(seed)
    mixer = mixer if mixer is not None else SlicedMixer2d(SlicedGroupAttention(C, HEADS, (2, 1)))
    return LRCBlock(C, mixer=mixer, norm_layer=NORM, act_layer=ACT, mlp_ratio=2.0, ls_init_value=None).eval()


def _randomize(m: nn.Module, seed: int = 1) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return m


def test_lrc_block_at_init_is_the_plain_block():
    """The learnable residual connections start at 1: the block is then the plain pre-norm block; with other
    coefficients it is a1 x + a2 mixer(norm1(x)), a3 x + a4 mlp(norm2(x))."""
    blk = _lrc_block()
    plain = MetaFormerBlock(C, mixer=blk.mixer, norm_layer=NORM, act_layer=ACT, mlp_ratio=2.0,
                            ls_init_value=None).eval()
    plain.load_state_dict({k: v for k, v in blk.state_dict().items() if k != "lrc"})
    x = torch.randn(2, C, 4, 5)
    with torch.no_grad():
        assert torch.equal(blk.lrc, torch.ones(4))
        assert torch.allclose(blk(x), plain(x), atol=1e-6)
        blk.lrc.copy_(torch.tensor([0.5, 2.0, -1.0, 3.0]))
        y = 0.5 * x + 2.0 * blk.mixer(blk.norm1(x))
        assert torch.allclose(blk(x), -y + 3.0 * blk.mlp(blk.norm2(y)), atol=1e-5)


def test_nll_formula():
    nll = _randomize(NonLinearProjection(C, 2.0, NORM, ACT)).eval()
    assert nll.mlp.fc1.out_features == 2 * C
    x = torch.randn(2, C, 3, 3)
    with torch.no_grad():
        assert torch.allclose(nll(x), nll.lrc[0] * x + nll.lrc[1] * nll.mlp(nll.norm(x)), atol=1e-6)


def test_recursion_shares_parameters():
    """L loops of one block: the block's parameters once, plus one NLL per loop (the paper's only additions); the
    output is the block applied L times (loop index passed on), each time followed by its own NLL."""
    blk = _lrc_block()
    nll = partial(NonLinearProjection, C, 1.0, NORM, ACT)
    counts = {L: n_params(Recursive(blk, L)) for L in (1, 2, 3, 4)}
    assert set(counts.values()) == {n_params(blk)}
    per_nll = n_params(nll())
    assert per_nll == 2 * C + (C * C + C) * 2 + 2
    for L in (1, 2, 3):
        r = _randomize(Recursive(blk, L, nll)).eval()
        assert n_params(r) == n_params(blk) + L * per_nll
        assert r.block is blk
        x = torch.randn(2, C, 4, 4)
        with torch.no_grad():
            y = x
            for loop in range(L):
                y = r.nlls[loop](blk(y, loop))
            assert torch.allclose(r(x), y, atol=1e-6)
    # without the NLL (the paper's naive recursion): the block applied L times
    naive = Recursive(blk, 3).eval()
    x = torch.randn(2, C, 4, 4)
    with torch.no_grad():
        assert torch.allclose(naive(x), blk(blk(blk(x, 0), 1), 2), atol=1e-6)


def test_one_loop_equals_the_unshared_block():
    """SReT's recursive block with one loop is the ordinary (unshared) block -> NLL with the same weights; the second
    loop reuses the very same weights (sliced with the second loop's groups)."""
    torch.manual_seed(0)
    mixer = SlicedMixer2d(SlicedGroupAttention(C, HEADS, (2, 1)))
    one = _randomize(SReTBlock(C, mixer=mixer, norm_layer=NORM, act_layer=ACT, mlp_ratio=2.0, loops=1)).eval()
    unshared = _lrc_block(SlicedMixer2d(SlicedGroupAttention(C, HEADS, (2, 1))), seed=5)
    nll = NonLinearProjection(C, 1.0, NORM, ACT).eval()
    unshared.load_state_dict(one.block.state_dict())
    nll.load_state_dict(one.nlls[0].state_dict())
    x = torch.randn(2, C, 4, 6)
    with torch.no_grad():
        assert torch.allclose(one(x), nll(unshared(x)), atol=1e-6)
    two = SReTBlock(C, mixer=mixer, norm_layer=NORM, act_layer=ACT, mlp_ratio=2.0, loops=2)
    assert n_params(two) == n_params(one) + n_params(nll)
    assert list(two.block.state_dict()) == list(one.block.state_dict())
    plain = SReTBlock(C, mixer=mixer, norm_layer=NORM, act_layer=ACT, mlp_ratio=2.0, loops=3, nll_ratio=None)
    assert n_params(plain) == n_params(one.block)


def test_block_passes_the_loop_only_to_loop_aware_mixers():
    pool = create_block("pool", C)
    blk = _lrc_block(pool)
    x = torch.randn(1, C, 5, 5)
    with torch.no_grad():
        assert torch.equal(blk(x, 0), blk(x, 3))
        sliced = _lrc_block()
        assert not torch.allclose(sliced(x, 0), sliced(x, 1))   # loop 0: 2 slices; loop 1: 1 group
