"""blockzoo.blocks.mixers.swinv2: log-spaced coordinates by hand, scaled cosine attention written out (and its
invariance to scaling q and k, the clamp of the logit scale), the continuous position bias at another window size,
the residual-post-norm block, the window_attn_v2 mixer."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from blockzoo import ConfigError, create_block, create_model
from blockzoo.blocks.mixers.swin import relative_position_index, shifted_window_attention, window_mask
from blockzoo.blocks.mixers.swinv2 import SwinV2Block, WindowAttentionV2, log_spaced_coords


def _random(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return module.eval()


def test_log_spaced_coords_by_hand():
    """Window 2: offsets -1, 0, 1 scaled by 8 / (2 - 1) -> +-8 -> sign * log2(9) / 3; rows (dy, dx) row-major."""
    t = log_spaced_coords((2, 2))
    c = math.log2(9) / 3
    want = torch.tensor([[-c, -c], [-c, 0], [-c, c], [0, -c], [0, 0], [0, c], [c, -c], [c, 0], [c, c]])
    torch.testing.assert_close(t, want)
    # a window of 4 built after a window of 2 (pretrained_window_size=2): offset 3 -> 3 * 8 = 24 -> log2(25) / 3
    t4 = log_spaced_coords((4, 4), (2, 2))
    assert t4.shape == (49, 2) and math.isclose(t4.max().item(), math.log2(25) / 3, rel_tol=1e-6)


def _cosine_reference(a: WindowAttentionV2, x: torch.Tensor) -> torch.Tensor:
    """One window, no mask: softmax(cos(q, k) * exp(min(s, log 100)) + 16 sigmoid(CPB)) V, written out."""
    n, c = x.shape
    h, d = a.num_heads, a.head_dim
    w = a.qkv.weight
    q = (x @ w[:c].T + a.q_bias).view(n, h, d).transpose(0, 1)
    k = (x @ w[c:2 * c].T).view(n, h, d).transpose(0, 1)
    v = (x @ w[2 * c:].T + a.v_bias).view(n, h, d).transpose(0, 1)
    cos = (q / q.norm(dim=-1, keepdim=True)) @ (k / k.norm(dim=-1, keepdim=True)).transpose(1, 2)
    table = a.cpb_mlp[2](torch.relu(a.cpb_mlp[0](log_spaced_coords(a.window_size))))
    bias = table[relative_position_index(a.window_size).flatten()].view(n, n, h).permute(2, 0, 1)
    scale = torch.clamp(a.logit_scale, max=math.log(100)).exp()
    p = torch.softmax(cos * scale + 16 * torch.sigmoid(bias), -1)
    return a.proj((p @ v).transpose(0, 1).reshape(n, c))


def test_scaled_cosine_attention_by_hand():
    a = _random(WindowAttentionV2(8, 2, (2, 3), cpb_bound=16.0))
    x = torch.randn(1, 1, 6, 8)
    with torch.no_grad():
        torch.testing.assert_close(a(x, torch.zeros(1, 6, 6))[0, 0], _cosine_reference(a, x[0, 0]),
                                   rtol=1e-5, atol=1e-5)


def test_cosine_attention_scale_invariant():
    """Scaling the query and key projections (weights and the q bias) by positive factors leaves the output
    unchanged; the logit scale is clamped at log(100), so tau never drops below 0.01."""
    a = _random(WindowAttentionV2(8, 2, (2, 2), cpb_bound=16.0))
    x = torch.randn(2, 3, 4, 8)
    mask = torch.zeros(3, 4, 4)
    with torch.no_grad():
        y = a(x, mask)
        a.qkv.weight[:8] *= 7.0
        a.q_bias *= 7.0
        a.qkv.weight[8:16] *= 0.05
        torch.testing.assert_close(a(x, mask), y, rtol=1e-5, atol=1e-5)
        a.logit_scale.fill_(math.log(100))
        clamped = a(x, mask)
        a.logit_scale.fill_(20.0)
        torch.testing.assert_close(a(x, mask), clamped)


def test_cpb_runs_at_another_window_size():
    """The CPB has no window-sized parameters: a window-4 attention's weights load strictly into a window-8 one;
    with pretrained_window_size=4 the bias at every offset both know is unchanged, and the window-8 one runs."""
    small = _random(WindowAttentionV2(8, 2, (4, 4), cpb_bound=16.0))
    big = WindowAttentionV2(8, 2, (8, 8), pretrained_window_size=4, cpb_bound=16.0).eval()
    big.load_state_dict(small.state_dict())
    with torch.no_grad():
        b4, b8 = small.position_bias(), big.position_bias()
        # query (0, 0) against keys (dy, dx) in 0..3: in the 4-window token 4*dy + dx, in the 8-window 8*dy + dx
        for dy in range(4):
            for dx in range(4):
                torch.testing.assert_close(b8[:, 0, 8 * dy + dx], b4[:, 0, 4 * dy + dx])
        y = shifted_window_attention(torch.randn(1, 16, 16, 8), big, (8, 8), (4, 4))
    assert y.shape == (1, 16, 16, 8) and torch.isfinite(y).all()
    # without pretrained_window_size the coordinates are rescaled to the new window: other biases
    plain = WindowAttentionV2(8, 2, (8, 8), cpb_bound=16.0)
    plain.load_state_dict(small.state_dict())
    with torch.no_grad():
        assert not torch.allclose(plain.position_bias()[:, 0, 1], b4[:, 0, 1])


def test_unbounded_bias_is_the_paper_form():
    a = _random(WindowAttentionV2(8, 2, (2, 2)))            # cpb_bound=None: B = G(coords), no 16 * sigmoid
    with torch.no_grad():
        raw = a.cpb_mlp(a.relative_coords_table)[relative_position_index((2, 2)).flatten()].view(4, 4, 2)
        torch.testing.assert_close(a.position_bias(), raw.permute(2, 0, 1))
    with pytest.raises(ConfigError):
        WindowAttentionV2(8, 2, (2, 2), cpb_bound=0.0)


def test_res_post_norm_block():
    """x + LN(attn(x)), then x + LN(MLP(x)); with the official init (both norms zero) the block is the identity."""
    blk = SwinV2Block(8, 2, window_size=4, shift_size=2)
    blk.init_weights()
    x = torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        assert torch.equal(blk(x), x)
        _random(blk, 3)
        a = shifted_window_attention(x, blk.attn, (4, 4), (2, 2))
        y = x + blk.norm1(a)
        want = y + blk.norm2(blk.mlp.fc2(F.gelu(blk.mlp.fc1(y))))
        torch.testing.assert_close(blk(x), want)
        # the shifted block uses the shift mask of swin V1
        assert (window_mask(8, 8, (4, 4), (2, 2)) != 0).any()


def test_window_attn_v2_mixer():
    m = create_block("window_attn_v2", 32)
    assert m.window_size == (8, 8) and m.attn.num_heads == 1 and m.attn.cpb_bound is None
    assert m(torch.randn(2, 32, 12, 10)).shape == (2, 32, 12, 10)
    net = create_model("convnext_atto", mixer="window_attn_v2(window_size=4, shift_size=2)", img_size=32,
                       num_classes=3)
    assert [s.blocks[0].mixer.window_size for s in net.stages] == [(4, 4), (4, 4), (2, 2), (1, 1)]
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    for bad in (dict(pretrained_window_size=-1), dict(shift_size=8), dict(num_heads=3)):
        with pytest.raises(ConfigError):
            create_block("window_attn_v2", 32, **bad)
