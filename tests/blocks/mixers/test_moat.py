"""blockzoo.blocks.mixers.moat: MOAT's attention (global / non-shifted window MHSA with a resizable relative position
bias) and the MOAT block (Yang et al., ICLR 2023, arXiv:2210.01820; S053): hand-computed attention, window
independence, the block's structure and parameter count by hand, downsampling and the pooled shortcut."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from blockzoo import ConfigError, create_block
from blockzoo.blocks.mixers.moat import STANDALONE_WINDOW, MBConv, MOATBlock
from helpers import n_params


def _global_attention(attn, x: torch.Tensor, position: int) -> torch.Tensor:
    """Reference global attention over an NCHW map, written out: q/k/v from the module's ``qkv`` weights, logits
    ``q.k / sqrt(d) + B[h, (yq - yk) + P - 1, (xq - xk) + P - 1]`` read entry by entry from the bias table of a
    ``P x P`` position size (no resizing: the map is P x P), softmax, values, ``proj``."""
    b, c, h, w = x.shape
    heads, d = attn.num_heads, attn.head_dim
    t = x.flatten(2).transpose(1, 2)                                     # (B, N, C)
    q, k, v = (t @ attn.qkv.weight.T + attn.qkv.bias).view(b, h * w, 3, heads, d).permute(2, 0, 3, 1, 4)
    logits = q @ k.transpose(-2, -1) / d ** 0.5                          # (B, heads, N, N)
    table = attn.relative_position_bias_table                            # ((2P-1)^2, heads)
    bias = torch.zeros(heads, h * w, h * w)
    for i in range(h * w):
        for j in range(h * w):
            dy, dx = i // w - j // w, i % w - j % w
            bias[:, i, j] = table[(dy + position - 1) * (2 * position - 1) + dx + position - 1]
    o = (logits + bias).softmax(-1) @ v                                  # (B, heads, N, d)
    o = o.transpose(1, 2).reshape(b, h * w, heads * d) @ attn.proj.weight.T + attn.proj.bias
    return o.transpose(1, 2).reshape(b, c, h, w)


def test_window_covering_map_equals_global_attention():
    """A window as large as the map is global attention with the relative bias (hand-computed); the global form
    (``window_size=None``, built for the map) and an explicit window of the map's size compute the same."""
    torch.manual_seed(0)
    x = torch.randn(2, 64, 6, 6)
    glob = create_block("moat_attn", 64, input_resolution=(6, 6)).eval()
    win = create_block("moat_attn", 64, window_size=6).eval()
    win.load_state_dict(glob.state_dict())
    assert glob.attn.num_heads == 2 and glob.attn.head_dim == 32          # head_dim 32 (official head_size)
    with torch.no_grad():
        ref = _global_attention(glob.attn, x, 6)
        torch.testing.assert_close(glob(x), ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(win(x), ref, rtol=1e-5, atol=1e-5)


def test_windows_are_independent_global_attentions():
    """Non-shifted window attention (the paper's large-input form) = global attention on each window on its own,
    with the same weights: no shift, no interaction across windows."""
    torch.manual_seed(1)
    x = torch.randn(1, 32, 8, 12)
    win = create_block("moat_attn", 32, window_size=4).eval()
    glob = create_block("moat_attn", 32, input_resolution=(4, 4)).eval()
    glob.load_state_dict(win.state_dict())
    with torch.no_grad():
        y = win(x)
        for r in range(0, 8, 4):
            for c in range(0, 12, 4):
                torch.testing.assert_close(y[..., r:r + 4, c:c + 4], glob(x[..., r:r + 4, c:c + 4]),
                                           rtol=1e-5, atol=1e-5)


def test_position_table_is_resized_to_the_window():
    """The table is sized by ``position_size`` (P = 7: 13 x 13 per head) whatever the window, and resized bilinearly
    to the window (official ``tf.image.resize``): a constant table stays constant and the zero offset keeps its
    entry exactly (half-pixel centres map the centre to the centre); at P = window nothing is resized."""
    small = create_block("moat_attn", 64, position_size=7, input_resolution=(4, 4))
    large = create_block("moat_attn", 64, position_size=7, input_resolution=(7, 7))
    assert small.attn.relative_position_bias_table.shape == (13 * 13, 2)
    assert n_params(small) == n_params(large)
    table = small.attn.relative_position_bias_table
    with torch.no_grad():
        table.normal_()
        grid = small.attn.bias_grid()
        assert grid.shape == (2, 7, 7)                                   # (2h-1) x (2w-1) for the 4x4 window
        torch.testing.assert_close(grid[:, 3, 3], table[6 * 13 + 6])     # offset (0, 0)
        bias = small.attn.position_bias()
        assert bias.shape == (2, 16, 16)
        torch.testing.assert_close(torch.diagonal(bias, dim1=1, dim2=2), table[6 * 13 + 6][:, None].expand(2, 16))
        table.fill_(0.25)
        assert torch.allclose(small.attn.position_bias(), torch.tensor(0.25))
        large.attn.relative_position_bias_table.normal_()
        g = large.attn.bias_grid()
        assert torch.equal(g, large.attn.relative_position_bias_table.t().reshape(2, 13, 13))


def test_no_relative_position_embedding():
    """``rel_pos=False`` (the official "no_pe" models): no table, plain softmax attention."""
    torch.manual_seed(2)
    x = torch.randn(1, 32, 5, 5)
    with_pe = create_block("moat_attn", 32, input_resolution=(5, 5)).eval()
    no_pe = create_block("moat_attn", 32, rel_pos=False, input_resolution=(5, 5)).eval()
    assert n_params(with_pe) - n_params(no_pe) == 9 * 9 * 1
    no_pe.load_state_dict({k: v for k, v in with_pe.state_dict().items() if "relative_position" not in k})
    with torch.no_grad():
        with_pe.attn.relative_position_bias_table.zero_()
        torch.testing.assert_close(no_pe(x), with_pe(x))


def test_standalone_global_attention_uses_a_fixed_window():
    """Without a feature size a global ``moat_attn`` cannot size itself: 7x7 windows, other sizes padded."""
    m = create_block("moat_attn", 32)
    assert m.window_size == (STANDALONE_WINDOW, STANDALONE_WINDOW)
    assert m(torch.randn(1, 32, 9, 5)).shape == (1, 32, 9, 5)


def test_moat_block_structure_and_params_by_hand():
    """MOAT block = MBConv (pre-norm BN, 1x1 expand to 4 x C_out, BN, GELU, 3x3 depthwise, BN, GELU, 1x1 shrink
    with bias; pooled + 1x1 shortcut) then LayerNorm -> attention, and no MLP: parameters counted by hand."""
    cin, cout, hid = 16, 32, 128
    blk = MOATBlock(cin, cout, stride=2, feat_size=(8, 8))
    mb = (cin * cout + cout                # shortcut 1x1 conv with bias
          + 2 * cin                        # pre-norm BN
          + cin * hid + 2 * hid            # 1x1 expansion (no bias) + BN
          + 9 * hid + 2 * hid              # 3x3 depthwise (no bias) + BN
          + hid * cout + cout)             # 1x1 shrink with bias
    att = (2 * cout                        # LayerNorm
           + cout * 3 * cout + 3 * cout    # q, k, v (biases)
           + cout * cout + cout            # output projection
           + 7 * 7 * 1)                    # relative table: 4x4 window (8 / 2), 1 head of 32
    assert n_params(blk.mbconv) == mb and n_params(blk) == mb + att
    linears = [n for n, m in blk.named_modules() if isinstance(m, nn.Linear)]
    assert linears == ["mixer.attn.qkv", "mixer.attn.proj"]                  # no MLP
    assert isinstance(blk.mbconv.attn, nn.Identity)                          # no SE in MOAT blocks
    assert blk.mixer.window_size == (4, 4)                                   # global on the downsampled map
    torch.manual_seed(3)
    x = torch.randn(2, cin, 8, 8)
    blk.eval()
    with torch.no_grad():
        y = blk.mbconv(x)                                                    # MBConv first, then attention
        torch.testing.assert_close(blk(x), y + blk.mixer(blk.norm(y)))


def test_mbconv_downsampling_and_pooled_shortcut():
    """Downsampling is the depthwise conv's stride (ceil(H/2)); the shortcut is 2x2 average pooling (padding
    excluded at an odd border, as TensorFlow's 'same' pooling) then a 1x1 conv; with a zero residual branch the block
    is its shortcut."""
    torch.manual_seed(4)
    m = MBConv(8, 12, stride=2).eval()
    assert m.conv_dw.conv.stride == (2, 2) and m.conv_dw.conv.groups == 48 and m.conv_pw.conv.stride == (1, 1)
    assert m.conv_pw.conv.bias is None and m.conv_dw.conv.bias is None and m.conv_pwl.bias is not None
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        nn.init.zeros_(m.conv_pwl.weight)
        nn.init.zeros_(m.conv_pwl.bias)
        y = m(x)
        assert y.shape == (2, 12, 3, 4)
        pooled = torch.zeros(2, 8, 3, 4)
        for i in range(3):
            for j in range(4):
                pooled[:, :, i, j] = x[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean((2, 3))
        torch.testing.assert_close(y, m.shortcut.conv(pooled))
    same = MBConv(12, 12, stride=1)
    assert isinstance(same.shortcut.pool, nn.Identity) and isinstance(same.shortcut.conv, nn.Identity)
    assert MBConv(12, 12, stride=2).shortcut.conv.__class__ is nn.Identity   # pooling only: same width
    three = MBConv(8, 8, stride=2, pool_size=3)
    assert three(torch.randn(1, 8, 6, 6)).shape == (1, 8, 3, 3)


def test_mbconv_attn_slot_on_expanded_features():
    """The ``attn`` slot sits on the 4 x C_out expanded features: SE with r = 16 has C_out / 4 hidden units, the
    official ``se_ratio`` 0.25 of the output width."""
    m = MBConv(32, 64, attn="se")
    assert m.attn.fc1.in_features == 256 and m.attn.hidden == 64 // 4


def test_bad_options():
    with pytest.raises(ConfigError):
        MBConv(8, 8, pool_size=4)
    with pytest.raises(ConfigError):
        MBConv(8, 8, stride=3)
    with pytest.raises(ConfigError):
        create_block("moat_attn", 64, position_size=0)
    with pytest.raises(ConfigError):
        create_block("moat_attn", 64, window_size=0)
