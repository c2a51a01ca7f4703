"""blockzoo.blocks.mixers.fcaformer: forward cross attention, TME and LSFs (FcaFormer, ICCV 2023,
arXiv:2211.07198; S044) -- hand-computed small cases and the paper's invariants."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from blockzoo.blocks.mixers.fcaformer import FcaBlock, FcaStage, ForwardCrossAttention, TokenMerge, cross_token_count

RES = (4, 4)                      # a 4x4 token grid: one block's TME gives 1x1 = 1 cross token
DIM, HEADS = 8, 2


def _randomise(m: nn.Module) -> nn.Module:
    """Random weights everywhere (also the zero-initialised biases and the LSFs), BN running stats too."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        for b in m.modules():
            if isinstance(b, nn.BatchNorm2d):
                b.running_mean.normal_(0, 0.1)
                b.running_var.uniform_(0.5, 1.5)
    return m.eval()


def _pair(num_cross: int):
    """A block receiving ``num_cross`` cross tokens and its plain twin (no cross tokens) with the shared weights."""
    cross = _randomise(FcaBlock(DIM, HEADS, RES, cross_blocks=num_cross))
    plain = FcaBlock(DIM, HEADS, RES, cross_blocks=0).eval()
    missing, unexpected = plain.load_state_dict(cross.state_dict(), strict=False)
    assert not missing and all(k.startswith("attn.cross_") for k in unexpected)
    return cross, plain


def test_tme_token_count():
    """TME's merge (7x7 depthwise, stride 4, padding 3) leaves ceil(H/4) * ceil(W/4) tokens: 14x14 -> 16 (the
    224-px stage 3), 7x7 -> 4 (stage 4), 8x8 -> 4, 13x5 -> 4x2 = 8."""
    for (h, w), n in (((14, 14), 16), ((7, 7), 4), ((8, 8), 4), ((13, 5), 8), ((4, 4), 1)):
        y = TokenMerge(3)(torch.randn(1, 3, h, w))
        assert y.shape[-2] * y.shape[-1] == n == cross_token_count((h, w))
    m = TokenMerge(5)
    assert m.groups == 5 and m.bias is None and m.weight.shape == (5, 1, 7, 7)


def test_tme_merge_hand_computed():
    """All-ones 8x8 input and kernel: each output sums the taps inside the image. Output (0, 0) covers rows/cols
    -3..3 (4 valid each: 16), (0, 1) cols 1..7 (7 valid: 4 * 7 = 28), (1, 1) 7 x 7 = 49."""
    m = TokenMerge(1)
    with torch.no_grad():
        m.weight.fill_(1.0)
        y = m(torch.ones(1, 1, 8, 8))
    assert y[0, 0].tolist() == [[16.0, 28.0], [28.0, 49.0]]


def test_attention_bias_table():
    """The self-attention bias of tokens i, j is the table entry of their absolute offset (|dy|, |dx|), row-major
    (the official LeViT-style table): on a 4x4 grid, tokens 0 = (0, 0) and 5 = (1, 1) -> entry 5; 3 = (0, 3) and
    12 = (3, 0) -> entry 15; the diagonal -> entry 0."""
    a = ForwardCrossAttention(DIM, HEADS, RES)
    assert a.attention_biases.shape == (HEADS, 16)
    with torch.no_grad():
        a.attention_biases.copy_(torch.arange(32.0).view(HEADS, 16))
        b = a.self_bias(RES)
    assert b.shape == (HEADS, 16, 16) and torch.equal(b, b.transpose(1, 2))
    assert b[0, 0, 5] == 5 and b[0, 3, 12] == 15 and b[1, 3, 12] == 31 and (b[0].diag() == 0).all()


def test_other_grid_reads_clamped_tables():
    """Built for 8x8 (2x2 cross tokens per block), run on 12x12 (3x3): the tables are read at clamped indices
    (constant LSFs stay constant), the output keeps the grid; at the build size the stored tables are used
    unchanged; a smaller grid reads its own offsets (2x2 grid of a 4x4 table: tokens 0 and 3 -> offset (1, 1) ->
    entry 5)."""
    a = _randomise(ForwardCrossAttention(DIM, HEADS, (8, 8), cross_blocks=2))
    with torch.no_grad():
        scale, bias = a.lsf((2, 2))
        assert torch.equal(scale, a.cross_scale) and torch.equal(bias, a.cross_bias)
        a.cross_scale.fill_(0.5)
        scale, bias = a.lsf((3, 3))
        assert scale.shape == (1, 18, 1) and torch.allclose(scale, torch.full_like(scale, 0.5))
        assert bias.shape == (1, HEADS, 1, 18) and a.self_bias((12, 12)).shape == (HEADS, 144, 144)
        assert a(torch.randn(2, 144, DIM), torch.randn(2, 18, DIM), (12, 12)).shape == (2, 144, DIM)
        b = ForwardCrossAttention(DIM, HEADS, RES)
        b.attention_biases.copy_(torch.arange(32.0).view(HEADS, 16))
        assert b.self_bias((2, 2))[0, 0, 3] == 5 and b.self_bias((2, 2))[1, 3, 0] == 21


def test_lsf_and_cross_parameters():
    """One learnable scale factor per cross token (initialised to 1), a LayerNorm for the cross tokens and one
    bias per head and cross token; a block without cross tokens has none of them."""
    a = ForwardCrossAttention(DIM, HEADS, RES, cross_blocks=3)
    a.init_weights()
    assert a.cross_scale.shape == (1, 3, 1) and torch.equal(a.cross_scale, torch.ones(1, 3, 1))
    assert a.cross_bias.shape == (1, HEADS, 1, 3) and a.cross_norm.normalized_shape == (DIM,)
    plain = ForwardCrossAttention(DIM, HEADS, RES)
    assert not hasattr(plain, "cross_scale") and not hasattr(plain, "cross_norm")


def test_attn_map_rows_cover_self_and_cross_tokens():
    a = _randomise(ForwardCrossAttention(DIM, HEADS, RES, cross_blocks=3))
    w = a.attn_map(torch.randn(2, 16, DIM), torch.randn(2, 3, DIM))
    assert w.shape == (2, HEADS, 16, 19)
    assert torch.allclose(w.sum(-1), torch.ones(2, HEADS, 16))


def test_masked_cross_tokens_equal_the_plain_block():
    """With the cross biases at -1e9 the cross tokens get no softmax mass: the block equals its plain twin (same
    weights, no cross tokens) exactly, whatever the cross tokens are."""
    cross, plain = _pair(3)
    with torch.no_grad():
        cross.attn.cross_bias.fill_(-1e9)
        x, s = torch.randn(2, 16, DIM), torch.randn(2, 3, DIM)
        y, out = cross(x, s)
        y0, out0 = plain(x)
    assert torch.allclose(y, y0, atol=1e-6) and torch.allclose(out, out0, atol=1e-6)


def test_zero_scale_factors_erase_the_earlier_blocks():
    """alpha = 0: the cross tokens' content is gone, so the output is the same for any earlier-block tokens (but not
    the plain block's: LayerNorm(0) = its bias, whose keys still take softmax mass; see the module docstring)."""
    cross, plain = _pair(3)
    with torch.no_grad():
        cross.attn.cross_scale.zero_()
        x = torch.randn(2, 16, DIM)
        y1, _ = cross(x, torch.randn(2, 3, DIM))
        y2, _ = cross(x, 100 * torch.randn(2, 3, DIM))
        y0, _ = plain(x)
    assert torch.allclose(y1, y2, atol=1e-6)
    assert not torch.allclose(y1, y0, atol=1e-3)


def test_zero_scale_factors_hand_formula():
    """alpha = 0, zero cross-norm bias, no qkv bias, zero cross biases: the M cross tokens are zero keys and values
    with logit 0, so each head's output is the plain attention times Z / (Z + M), Z = sum_j exp(logit_j)."""
    m = 3
    a = _randomise(ForwardCrossAttention(DIM, HEADS, RES, cross_blocks=m, qkv_bias=False))
    with torch.no_grad():
        a.cross_scale.zero_()
        a.cross_norm.bias.zero_()
        a.cross_bias.zero_()
        x = torch.randn(2, 16, DIM)
        q, k, v = a.qkv_heads(x)
        logits = (q * a.scale) @ k.transpose(-2, -1) + a.self_bias(RES)
        z = logits.exp().sum(-1, keepdim=True)
        expected = a.out((logits.softmax(-1) @ v) * z / (z + m))
        got = a(x, torch.randn(2, m, DIM))
    assert torch.allclose(got, expected, atol=1e-5)


def _record(stage: FcaStage):
    """The cross tokens each block receives and the merged tokens each block produces."""
    received, produced = [], []
    for blk in stage.blocks:
        blk.register_forward_pre_hook(lambda mod, args: received.append(args[1] if len(args) > 1 else None))
        if blk.merge is not None:
            blk.merge.register_forward_hook(lambda mod, args, out: produced.append(out.flatten(2).transpose(1, 2)))
    return received, produced


@pytest.mark.parametrize("max_cross", [12, 1])
def test_cross_tokens_come_only_from_earlier_blocks(max_cross):
    """Block i receives exactly the TME outputs of blocks i - max_cross .. i - 1 of its stage, in order; the first
    receives none; the last produces none (4 blocks on a 4x4 grid: 1 cross token per block)."""
    n = 4
    blocks = [FcaBlock(DIM, HEADS, RES, cross_blocks=min(i, max_cross), merge=i < n - 1) for i in range(n)]
    stage = _randomise(FcaStage(nn.Identity(), blocks, max_cross_blocks=max_cross))
    received, produced = _record(stage)
    with torch.no_grad():
        stage(torch.randn(2, DIM, *RES))
    assert received[0] is None and len(produced) == n - 1 and stage.blocks[-1].merge is None
    for i in range(1, n):
        assert torch.equal(received[i], torch.cat(produced[max(0, i - max_cross):i], dim=1))


def test_later_blocks_do_not_feed_earlier_ones():
    """Dependency check by gradients: block 1's cross input depends on block 0's TME weights only, never on
    block 2's (a forward connection)."""
    blocks = [FcaBlock(DIM, HEADS, RES, cross_blocks=i, merge=i < 2) for i in range(3)]
    stage = _randomise(FcaStage(nn.Identity(), blocks)).train()
    received, _ = _record(stage)
    stage(torch.randn(2, DIM, *RES))
    g0, g1 = torch.autograd.grad(received[1].sum(), [stage.blocks[0].merge.weight, stage.blocks[1].merge.weight],
                                 allow_unused=True)
    assert g0 is not None and g0.abs().sum() > 0 and g1 is None


def test_stage_shapes_and_traceable():
    blocks = [FcaBlock(DIM, HEADS, (7, 7), cross_blocks=i, merge=i < 2) for i in range(3)]
    stage = _randomise(FcaStage(nn.Identity(), blocks))
    x = torch.randn(2, DIM, 7, 7)
    gm = torch.fx.symbolic_trace(stage)
    with torch.no_grad():
        assert torch.allclose(gm(x), stage(x)) and stage(x).shape == x.shape
