"""blockzoo.blocks.mixers.gpsa: ConViT's gated positional self-attention -- relative positions, the local init
(hand-computed attention on small grids), the two limits of the gate, non-square grids, the mixer slot, costs."""
from __future__ import annotations

import math

import pytest
import torch

from blockzoo import ConfigError, IncompatibleBlockError, create_block, create_model
from blockzoo.blocks.common.transformer import Attention
from blockzoo.blocks.mixers.gpsa import GPSA, local_offsets, relative_indices
from helpers import macs, meta_params, n_params

SIG1 = 1 / (1 + math.exp(-1))   # sigmoid of the gate's init value 1


def _official_rel_indices(s: int) -> torch.Tensor:
    """The official square-grid ``get_rel_indices`` written out: (dx, dy, d^2), key minus query."""
    ind = torch.arange(s).view(1, -1) - torch.arange(s).view(-1, 1)
    indx = ind.repeat(s, s)
    indy = ind.repeat_interleave(s, dim=0).repeat_interleave(s, dim=1)
    return torch.stack((indx, indy, indx ** 2 + indy ** 2), dim=-1).float()


def test_relative_indices():
    for s in (1, 2, 5):
        assert torch.equal(relative_indices(s, s), _official_rel_indices(s))
    r = relative_indices(2, 3)                                   # tokens (row, col) in row-major order
    assert r.shape == (6, 6, 3)
    assert r[0, 5].tolist() == [2, 1, 5]                         # (0, 0) -> (1, 2): two columns right, one row down
    assert r[4, 0].tolist() == [-1, -1, 2]                       # (1, 1) -> (0, 0)
    assert r[2, 3].tolist() == [-2, 1, 5]                        # (0, 2) -> (1, 0)
    assert torch.equal(r[..., :2], -r.transpose(0, 1)[..., :2])  # antisymmetric offsets


def test_local_offsets():
    nine = local_offsets(9)
    assert sorted(nine) == [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
    assert nine[0] == (-1, -1) and nine[1] == (-1, 0) and nine[3] == (0, -1)   # head a + 3b -> (b - 1, a - 1)
    assert sorted(local_offsets(4)) == [(-0.5, -0.5), (-0.5, 0.5), (0.5, -0.5), (0.5, 0.5)]
    assert local_offsets(16)[5] == (-0.5, -0.5) and len(local_offsets(16)) == 16
    assert len(local_offsets(2)) == 1 and len(local_offsets(10)) == 9           # the first k^2 heads only


def test_local_init_weights():
    m = GPSA(18, 9, locality_strength=2.0)
    assert torch.equal(m.v.weight, torch.eye(18)) and torch.equal(m.gating_param, torch.ones(9))
    assert torch.equal(m.pos_proj.weight[0], torch.tensor([-4.0, -4.0, -2.0]))   # 2 * (2 dx, 2 dy, -1), offset (-1, -1)
    assert torch.equal(m.pos_proj.weight[4], torch.tensor([0.0, 0.0, -2.0]))     # the centre head
    assert not m.pos_proj.bias.any() and not m.proj.bias.any()
    assert m.qk.bias is None and m.v.bias is None
    plain = GPSA(18, 9, local_init=False)
    assert not torch.equal(plain.v.weight, torch.eye(18)) and plain.pos_proj.weight.abs().max() < 0.05


def test_local_init_attends_like_its_kernel():
    """The paper's local init: each head attends around its offset; with the gate at sigmoid(1) = 0.73 the
    positional part dominates. Hand-computed on a 5x5 grid, zero input (uniform content attention, 1/25)."""
    m = GPSA(18, 9)
    centre = 12                                                   # (2, 2) of the 5 x 5 grid
    pos = m.position_map(5, 5, torch.zeros(1))
    for h, (dx, dy) in enumerate(local_offsets(9)):
        assert pos[h, centre].argmax().item() == (2 + dy) * 5 + (2 + dx)
    # the centre head: softmax(-|delta|^2) over the 5 x 5 neighbourhood of the centre query
    z = sum(math.exp(-d * d) for d in range(-2, 3)) ** 2          # = 3.14137 (a theta function)
    assert pos[4, centre, centre].item() == pytest.approx(1 / z, rel=1e-6)
    assert pos[4, centre, centre + 1].item() == pytest.approx(math.exp(-1) / z, rel=1e-6)
    assert pos[4, centre, 0].item() == pytest.approx(math.exp(-8) / z, rel=1e-5)
    a = m.attn_map(torch.zeros(1, 5, 5, 18))[0]
    assert a[4, centre, centre].item() == pytest.approx(SIG1 / z + (1 - SIG1) / 25, rel=1e-6)   # 0.2435
    assert a[4, centre, 0].item() == pytest.approx(SIG1 * math.exp(-8) / z + (1 - SIG1) / 25, rel=1e-6)
    torch.testing.assert_close(a.sum(-1), torch.ones(9, 25))
    assert m.gate().min().item() == pytest.approx(SIG1) and SIG1 > 0.5
    # a corner query of the (-1, -1) head: its offset is off the grid, the nearest key (itself) wins
    assert pos[0, 0].argmax().item() == 0
    # with random tokens the content part is nearly uniform at init: every head still peaks at its offset
    a = m.attn_map(torch.randn(2, 5, 5, 18))
    for h, (dx, dy) in enumerate(local_offsets(9)):
        assert (a[:, h, centre].argmax(-1) == (2 + dy) * 5 + (2 + dx)).all()
    # a larger locality strength alpha sharpens the kernel: softmax(-2 |delta|^2)
    sharp = GPSA(18, 9, locality_strength=2.0).position_map(5, 5, torch.zeros(1))
    z2 = sum(math.exp(-2 * d * d) for d in range(-2, 3)) ** 2
    assert sharp[4, centre, centre].item() == pytest.approx(1 / z2, rel=1e-6) and 1 / z2 > 1 / z


def test_four_heads_spread_over_a_2x2_block():
    """ConViT-Ti's 4 heads have half-integer offsets: each spreads its positional weight equally over 2x2 keys."""
    pos = GPSA(8, 4).position_map(4, 4, torch.zeros(1))
    q = 5                                                         # (1, 1)
    for h, (dx, dy) in enumerate(local_offsets(4)):
        block = [(1 + r) * 4 + (1 + c) for r in (0, int(2 * dy)) for c in (0, int(2 * dx))]
        w = pos[h, q, block]
        torch.testing.assert_close(w, w[:1].expand(4))
        assert pos[h, q].topk(4).indices.sort().values.tolist() == sorted(block)


def _with_gate(m: GPSA, value: float) -> GPSA:
    with torch.no_grad():
        m.gating_param.fill_(value)
    return m


def test_closed_gate_is_plain_attention():
    """sigmoid(lambda) = 0: GPSA = multi-head softmax attention with the same q, k, v (ViT's Attention with
    ``qkv = [qk; v]``)."""
    torch.manual_seed(0)
    m = GPSA(16, 4, qkv_bias=True)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    _with_gate(m, -1e4)
    ref = Attention(16, 4, qkv_bias=True)
    with torch.no_grad():
        ref.qkv.weight.copy_(torch.cat([m.qk.weight, m.v.weight]))
        ref.qkv.bias.copy_(torch.cat([m.qk.bias, m.v.bias]))
        ref.proj.load_state_dict(m.proj.state_dict())
    x = torch.randn(2, 3, 4, 16)
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref(x.flatten(1, 2)).unflatten(1, (3, 4)))
        torch.testing.assert_close(m.attn_map(x), ref.attn_map(x.flatten(1, 2)))


def test_open_gate_strong_locality_is_a_shift():
    """sigmoid(lambda) = 1, v = I, proj = I, alpha = 40: head h copies its channels from the token at its offset (the
    3x3 convolution-like kernel in the limit the paper describes), on the interior of the grid."""
    m = _with_gate(GPSA(9, 9, locality_strength=40.0), 1e4)
    with torch.no_grad():
        m.proj.weight.copy_(torch.eye(9))
    x = torch.randn(2, 6, 7, 9)
    with torch.no_grad():
        y = m(x)
    for h, (dx, dy) in enumerate(local_offsets(9)):
        dx, dy = int(dx), int(dy)
        torch.testing.assert_close(y[:, 1:-1, 1:-1, h], x[:, 1 + dy:5 + dy, 1 + dx:6 + dx, h])


def test_non_square_grid_is_the_transposed_problem():
    """On H x W != W x H the relative positions are those of the real grid: transposing the input and swapping the
    dx / dy weights of pos_proj transposes the output."""
    torch.manual_seed(0)
    m = _with_gate(GPSA(12, 4), 0.3)
    t = GPSA(12, 4)
    t.load_state_dict(m.state_dict())
    with torch.no_grad():
        t.pos_proj.weight.copy_(m.pos_proj.weight[:, [1, 0, 2]])
    x = torch.randn(2, 5, 3, 12)
    with torch.no_grad():
        torch.testing.assert_close(t(x.transpose(1, 2)), m(x).transpose(1, 2))


def test_mixer_any_size_and_heads():
    blk = create_block("gpsa", 32)
    x = torch.randn(2, 32, 12, 10)
    assert blk(x).shape == x.shape
    assert blk.attn.num_heads == 1 and create_block("gpsa", 64).attn.num_heads == 2
    assert create_block("gpsa", 64, num_heads=8).attn.num_heads == 8
    assert create_block("gpsa", 16).attn.num_heads == 1                   # fewer channels than head_dim: one head
    assert create_block("gpsa", 104).attn.num_heads == 2                  # 104 // 32 = 3 does not divide 104
    assert n_params(blk) == 4 * 32 * 32 + 32 + 5 * 1                      # qk, v, proj (+ bias), pos_proj, gate


def test_mixer_in_poolformer():
    """The issue's example: PoolFormer-S12 with GPSA mixers (2, 4, 10, 16 heads on 64, 128, 320, 512 channels)."""
    m = create_model("poolformer_s12", mixer="gpsa", num_classes=5, img_size=64)
    heads = [s.blocks[0].mixer.attn.num_heads for s in m.stages]
    assert heads == [2, 4, 10, 16]
    y = m(torch.randn(2, 3, 64, 64))
    assert y.shape == (2, 5) and torch.isfinite(y).all()
    # at the paper setting (224 px): GPSA adds 4 C^2 + C + 5 heads parameters per block to the parameter-free pooling
    extra = sum(d * (4 * c * c + c + 5 * h) for d, c, h in zip((2, 2, 6, 2), (64, 128, 320, 512), heads))
    assert meta_params("poolformer_s12", mixer="gpsa") - meta_params("poolformer_s12") == extra


def test_bad_options():
    with pytest.raises(ConfigError, match="locality_strength"):
        GPSA(16, 4, locality_strength=0.0)
    with pytest.raises(ConfigError, match="divisible"):
        GPSA(18, 4)
    with pytest.raises(ConfigError):
        create_block("gpsa", 32, num_heads=0)
    with pytest.raises(IncompatibleBlockError, match="equal heads"):
        create_block("gpsa", 32, num_heads=3)
    with pytest.raises(IncompatibleBlockError, match="stages.0"):
        create_model("poolformer_s12", mixer="gpsa(num_heads=3)", img_size=64)


def test_macs_by_hand():
    """count_macs: qk, v, proj (4 C^2 per token), q k^T and A v (2 N^2 C), pos_proj on the N x N relative
    positions (3 N^2 heads)."""
    c, h, w, heads = 32, 6, 5, 2
    n = h * w
    want = n * 4 * c * c + 2 * n * n * c + 3 * n * n * heads
    assert macs(create_block("gpsa", c, num_heads=heads), (c, h, w)) == want


def test_traces_and_exports_at_other_sizes():
    blk = create_block("gpsa", 32).eval()
    gm = torch.fx.symbolic_trace(blk)
    dim = torch.export.Dim.DYNAMIC
    ep = torch.export.export(blk, (torch.randn(2, 32, 6, 6),), dynamic_shapes=({0: dim, 2: dim, 3: dim},)).module()
    with torch.no_grad():
        for shape in ((2, 32, 6, 6), (1, 32, 7, 4)):
            x = torch.randn(shape)
            torch.testing.assert_close(gm(x), blk(x))
            torch.testing.assert_close(ep(x), blk(x))
