"""blockzoo.blocks.mixers.ffnified: FFNified attention and RepDWConv (S040): hand-computed outputs, the official
kernel rule, re-parameterisation."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from blockzoo import create_block
from blockzoo.blocks.mixers.ffnified import FFNifiedAttention, RepDWConv
from helpers import n_params, randomize_bn


# ==================================================================================================== FFNified
def _conv2d_same(x: list[list[float]], k: list[list[float]], bias: float) -> list[list[float]]:
    """Plain-Python zero-padded 'same' 2-D cross-correlation (odd kernel)."""
    h, w, r = len(x), len(x[0]), len(k) // 2
    out = [[bias] * w for _ in range(h)]
    for i in range(h):
        for j in range(w):
            for a in range(-r, r + 1):
                for b in range(-r, r + 1):
                    if 0 <= i + a < h and 0 <= j + b < w:
                        out[i][j] += k[a + r][b + r] * x[i + a][j + b]
    return out


def test_ffnified_hand_computed():
    """y = DW2(GELU(DW1(BN(Wq x)))) with hand-set weights on a 2-channel 3x4 map, computed in plain Python."""
    m = FFNifiedAttention(2, kernel_size=3).eval()
    assert isinstance(m.qk, nn.Conv2d) and m.qk.groups == 2 and m.qk.bias is not None   # 3x3: plain dw conv + bias
    wq = [[1.0, -0.5], [0.25, 2.0]]
    bn = dict(mean=[0.5, -1.0], var=[4.0, 0.25], gamma=[1.5, 0.5], beta=[0.1, -0.2])
    k1 = [[[0.0, 1.0, 0.0], [1.0, -2.0, 0.5], [0.0, 0.25, 0.0]], [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]]]
    k2 = [[[1.0, 0.0, -1.0], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]], [[0.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, -1.0]]]
    b1, b2 = [0.3, -0.1], [-0.2, 0.05]
    with torch.no_grad():
        m.q.c.weight.copy_(torch.tensor(wq)[:, :, None, None])
        m.q.bn.eps = 0.0
        m.q.bn.running_mean.copy_(torch.tensor(bn["mean"])), m.q.bn.running_var.copy_(torch.tensor(bn["var"]))
        m.q.bn.weight.copy_(torch.tensor(bn["gamma"])), m.q.bn.bias.copy_(torch.tensor(bn["beta"]))
        m.qk.weight.copy_(torch.tensor(k1)[:, None]), m.qk.bias.copy_(torch.tensor(b1))
        m.av.weight.copy_(torch.tensor(k2)[:, None]), m.av.bias.copy_(torch.tensor(b2))
    x = [[[0.5, -1.0, 2.0, 0.0], [1.5, 0.25, -0.75, 1.0], [-2.0, 0.5, 1.0, -0.5]],
         [[1.0, 0.0, -1.0, 2.0], [0.5, -0.5, 0.25, 0.75], [0.0, 1.5, -1.25, 0.5]]]
    gelu = lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))  # noqa: E731
    expected = []
    for c in range(2):
        q = [[(wq[c][0] * x[0][i][j] + wq[c][1] * x[1][i][j] - bn["mean"][c]) / math.sqrt(bn["var"][c])
              * bn["gamma"][c] + bn["beta"][c] for j in range(4)] for i in range(3)]
        a = [[gelu(v) for v in row] for row in _conv2d_same(q, k1[c], b1[c])]
        expected.append(_conv2d_same(a, k2[c], b2[c]))
    y = m(torch.tensor(x)[None])
    torch.testing.assert_close(y, torch.tensor(expected)[None], rtol=1e-5, atol=1e-6)
    # GELU (not softmax): the "attention" is not normalised over positions
    assert m.act.__class__ is nn.GELU


def test_ffnified_official_kernel_rule():
    m7 = create_block("ffnified", 16)
    assert isinstance(m7.qk, RepDWConv) and isinstance(m7.av, RepDWConv)
    assert m7.qk.conv.c.kernel_size == (7, 7) and m7.qk.conv1.c.kernel_size == (3, 3) and m7.qk.conv.c.groups == 16
    assert n_params(m7) == (16 * 16 + 32) + 2 * (16 * 49 + 32 + 16 * 9 + 32)
    m3 = create_block("ffnified(kernel_size=3)", 16)
    assert n_params(m3) == (16 * 16 + 32) + 2 * (16 * 9 + 16)
    assert isinstance(create_block("ffnified(kernel_size=5)", 8).qk, nn.Conv2d)
    assert isinstance(create_block("ffnified(kernel_size=5, rep=True)", 8).qk, RepDWConv)
    assert isinstance(create_block("ffnified(kernel_size=7, rep=False)", 8).qk, nn.Conv2d)
    m = create_block("ffnified(kernel_size=3, kernel_size_v=7)", 8)
    assert m.kernel_sizes == (3, 7) and isinstance(m.av, RepDWConv)
    with pytest.raises(ValueError, match="odd"):
        create_block("ffnified(kernel_size=4)", 8)


def test_ffnified_reparameterize():
    torch.manual_seed(0)
    m = create_block("ffnified", 16)
    randomize_bn(m)
    m.eval()
    x = torch.randn(2, 16, 9, 7)
    y = m(x)
    n_train = n_params(m)
    m.reparameterize()
    assert isinstance(m.q, nn.Conv2d) and isinstance(m.qk, nn.Conv2d) and m.qk.kernel_size == (7, 7)
    torch.testing.assert_close(m(x), y, rtol=1e-5, atol=1e-5)
    assert n_train - n_params(m) == 16 + 2 * (16 * 9 + 3 * 16)     # q: BN 2C -> bias C; rep: 3x3 + 2 BNs -> bias
    # stride-2, channel-doubling depthwise re-param conv (FFNet's downsampling)
    r = RepDWConv(8, 16, 7, stride=2)
    randomize_bn(r, 1)
    r.eval()
    x = torch.randn(1, 8, 9, 6)
    torch.testing.assert_close(r.fuse()(x), r(x), rtol=1e-5, atol=1e-5)
