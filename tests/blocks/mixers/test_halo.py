"""Halo attention (blockzoo.blocks.mixers.halo): global attention as the whole-map limit, a hand-computed 4x4 case,
stride, maps that are not a multiple of the block size, the exact MAC count, option errors, the conv-slot unit."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from blockzoo import create_block, create_model
from blockzoo.blocks.mixers.halo import HaloAttention
from blockzoo.errors import ConfigError, IncompatibleBlockError
from helpers import count_macs, n_params


def _random_tables(m: HaloAttention) -> HaloAttention:
    with torch.no_grad():
        m.pos_embed.height_rel.normal_()
        m.pos_embed.width_rel.normal_()
    return m.eval()


def _global_attention(m: HaloAttention, x: torch.Tensor) -> torch.Tensor:
    """Plain global multi-head attention over all H*W pixels with m's projections, and the relative logits
    q . r_h[dy] + q . r_w[dx] read from m's tables at the rows that halo attention uses for the same offsets
    (row = offset + h + w - 1, w = b + 2h)."""
    n, _, hh, ww = x.shape
    heads, dk, dv = m.num_heads, m.dim_head_qk, m.dim_head_v
    q = m.q(x).reshape(n, heads, dk, hh * ww).transpose(-1, -2)                       # (N, heads, HW, dk)
    kv = m.kv(x).reshape(n, heads, dk + dv, hh * ww).transpose(-1, -2)
    k, v = kv[..., :dk], kv[..., dk:]
    ys, xs = torch.meshgrid(torch.arange(hh), torch.arange(ww), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    shift = m.halo_size + m.win_size - 1
    r_h = m.pos_embed.height_rel[ys[None, :] - ys[:, None] + shift]                   # (HW query, HW key, dk)
    r_w = m.pos_embed.width_rel[xs[None, :] - xs[:, None] + shift]
    logits = q @ k.transpose(-1, -2) * dk ** -0.5 + torch.einsum("nhid,ijd->nhij", q, r_h + r_w)
    out = logits.softmax(-1) @ v                                                       # (N, heads, HW, dv)
    return out.transpose(-1, -2).reshape(n, heads * dv, hh, ww)


@pytest.mark.parametrize("block,halo,mask", [(4, 0, False), (4, 2, True), (2, 2, True)])
def test_whole_map_halo_is_global_attention(block, halo, mask):
    """One block over the whole 4x4 map (no halo), or a halo that reaches every pixel from every block with the
    zero padding masked, is exactly global attention with the same projections and relative embeddings."""
    torch.manual_seed(0)
    m = _random_tables(HaloAttention(8, num_heads=2, block_size=block, halo_size=halo, mask_padding=mask))
    x = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _global_attention(m, x), rtol=1e-5, atol=1e-5)


def test_unmasked_padding_takes_part_in_the_softmax():
    """Without the mask (the paper, timm) the zero keys of the halo outside the map get softmax weight: the same
    layer no longer equals global attention."""
    torch.manual_seed(0)
    m = _random_tables(HaloAttention(8, num_heads=2, block_size=2, halo_size=2))
    x = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        assert (m(x) - _global_attention(m, x)).abs().max() > 1e-2


def _unit_layer(mask: bool = False) -> HaloAttention:
    """1 head, 1 channel: q = x, k = 0, v = x (uniform content logits), relative tables zero."""
    m = HaloAttention(1, num_heads=1, block_size=2, halo_size=1, mask_padding=mask).eval()
    with torch.no_grad():
        m.q.weight.fill_(1.0)
        m.kv.weight.copy_(torch.tensor([0.0, 1.0]).view(2, 1, 1, 1))
        m.pos_embed.height_rel.zero_()
        m.pos_embed.width_rel.zero_()
    return m


def test_hand_computed_4x4_block2_halo1():
    """The paper's Figure 1 setting (4x4 map, b = 2, h = 1): each 2x2 block of queries attends to its 4x4 window.
    With zero content and position logits every query of a block averages its window (16 positions, the zero
    padding included; 9 real pixels for a corner block when the padding is masked). A large relative logit at
    offset (dy, dx) = (0, -1) makes every query copy its left neighbour (zero at the left border)."""
    x = torch.arange(1.0, 17.0).view(1, 1, 4, 4)
    windows = {(0, 0): x[0, 0, 0:3, 0:3], (0, 1): x[0, 0, 0:3, 1:4], (1, 0): x[0, 0, 1:4, 0:3],
               (1, 1): x[0, 0, 1:4, 1:4]}
    want = torch.zeros(4, 4)
    want_masked = torch.zeros(4, 4)
    for (by, bx), win in windows.items():
        want[2 * by:2 * by + 2, 2 * bx:2 * bx + 2] = win.sum() / 16
        want_masked[2 * by:2 * by + 2, 2 * bx:2 * bx + 2] = win.mean()
    with torch.no_grad():
        torch.testing.assert_close(_unit_layer()(x)[0, 0], want)
        torch.testing.assert_close(_unit_layer(mask=True)(x)[0, 0], want_masked)
        m = _unit_layer()
        # window w = 4: the row of offset d is d + h + w - 1 = d + 4
        m.pos_embed.height_rel[0 + 4] = 100.0
        m.pos_embed.width_rel[-1 + 4] = 100.0
        left = F.pad(x, (1, 0))[..., :, :4]
        torch.testing.assert_close(m(x), left, rtol=0, atol=1e-4)


def test_stride():
    """Stride s: ceil(H/s) x ceil(W/s) outputs; with zero relative tables they are the stride-1 outputs at every
    s-th pixel (the queries are the 1x1 projection there; the keys and values are not subsampled)."""
    torch.manual_seed(0)
    m1 = HaloAttention(16, 24, num_heads=4, block_size=4, halo_size=1).eval()
    m2 = HaloAttention(16, 24, stride=2, num_heads=4, block_size=4, halo_size=1).eval()
    m2.load_state_dict({k: v for k, v in m1.state_dict().items() if "pos_embed" not in k}, strict=False)
    for m in (m1, m2):
        with torch.no_grad():
            m.pos_embed.height_rel.zero_()
            m.pos_embed.width_rel.zero_()
    with torch.no_grad():
        for size, out in (((8, 8), (4, 4)), ((12, 10), (6, 5)), ((7, 5), (4, 3))):
            x = torch.randn(2, 16, *size)
            y = m2(x)
            assert y.shape == (2, 24, *out)
            torch.testing.assert_close(y, m1(x)[:, :, ::2, ::2])
    assert m2.pos_embed.height_rel.shape == (2 * (4 + 2) - 1, 4)     # 2(b + 2h) - 1 rows of d_k


def test_map_not_a_multiple_of_the_block_is_zero_padded():
    """A 12x10 map gives the top-left 12x10 of the zero-padded 16x16 map's output: the padding at the bottom/right
    is the same zero keys as the halo (so any map size works, and a multiple of b is unchanged)."""
    torch.manual_seed(0)
    m = _random_tables(HaloAttention(8, num_heads=2, block_size=8, halo_size=3))
    x = torch.randn(2, 8, 12, 10)
    with torch.no_grad():
        torch.testing.assert_close(m(x), m(F.pad(x, (0, 6, 0, 4)))[..., :12, :10])


def test_macs_counted_exactly():
    """count_macs of one layer (C=32, 2 heads, b=4, h=1, 8x8 map: 4 blocks of 16 queries, windows of 36): the two
    projections, the two relative-logit products (q @ table^T) and the attention (q.k and the weighted values)."""
    c, heads, b, h, hw = 32, 2, 4, 1, 64
    win, d = b + 2 * h, c // heads
    blocks, rows = hw // (b * b), 2 * win - 1
    proj = hw * c * c + hw * c * 2 * c
    rel = 2 * heads * hw * d * rows
    attn = 2 * heads * blocks * (b * b) * (win * win) * d
    m = create_block("halo_attn", c, block_size=b, halo_size=h, num_heads=heads)
    assert count_macs(m, (c, 8, 8)) == proj + rel + attn


def test_parameters_and_defaults():
    m = create_block("halo_attn", 64)
    assert m.num_heads == 2 and m.dim_head_qk == 32                       # channels // 32 heads (timm MetaFormer)
    assert create_block("halo_attn", 104).num_heads == 2                  # 104 // 32 = 3 does not divide 104
    rows = 2 * (8 + 6) - 1
    assert n_params(m) == 64 * 64 + 64 * 128 + 2 * rows * 32              # q, kv (no bias), two relative tables


def test_bad_options():
    with pytest.raises(ConfigError, match="divide block_size"):
        HaloAttention(16, stride=3, num_heads=2, block_size=8)
    with pytest.raises(ConfigError, match="at most"):
        create_block("halo_attn", 32, block_size=10_000)
    with pytest.raises(ConfigError):
        create_block("halo_attn", 32, halo_size=-1)
    with pytest.raises(IncompatibleBlockError, match="num_heads"):
        create_block("halo_attn", 32, num_heads=3)


def test_conv_unit_in_a_resnet_bottleneck():
    """conv='halo' puts halo attention -> BN -> ReLU where the bottleneck has its 3x3 conv (strided in the first
    block of a stage); stage maps that are not multiples of the block size are padded."""
    unit = create_block("halo", 32, out_channels=48, stride=2)
    assert unit(torch.randn(2, 32, 12, 10)).shape == (2, 48, 6, 5)
    m = create_model("resnet50", conv="halo", num_classes=10, img_size=64).eval()
    assert type(m.layers[3][0].conv2.attn).__name__ == "HaloAttention"
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 48)).shape == (1, 10)
