"""Hand-computed checks for the foundation's attention blocks (SE, ECA, CA, cSE/sSE/scSE, none)."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import create_block
from blockzoo.blocks.attention.eca import eca_kernel_size


def nparams(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_none_is_identity():
    m = create_block("none", 8)
    x = torch.randn(2, 8, 3, 5)
    assert nparams(m) == 0 and torch.equal(m(x), x)


def test_se_hidden_and_values():
    m = create_block("se", 64)
    assert m.hidden == 4 and m.fc1.out_features == 4  # C // 16, no make_divisible rounding
    assert nparams(m) == 64 * 4 + 4 + 4 * 64 + 64
    # tiny hand-computed case: C = 2, hidden = 1
    m = create_block("se", 2, reduction=2)
    with torch.no_grad():
        m.fc1.weight.copy_(torch.tensor([[1.0, -1.0]]))
        m.fc1.bias.fill_(0.5)
        m.fc2.weight.copy_(torch.tensor([[2.0], [-1.0]]))
        m.fc2.bias.copy_(torch.tensor([0.0, 1.0]))
    x = torch.tensor([[[[1.0, 3.0]], [[0.0, 2.0]]]])   # (1, 2, 1, 2): channel means 2 and 1
    h = max(0.0, 1 * 2 - 1 * 1 + 0.5)                  # ReLU(1.5) = 1.5
    s = torch.sigmoid(torch.tensor([2 * h, -h + 1.0]))
    expected = x * s[None, :, None, None]
    assert torch.allclose(m(x), expected)


@pytest.mark.parametrize("c,k", [(64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7)])
def test_eca_kernel_table(c, k):
    assert eca_kernel_size(c) == k
    m = create_block("eca", c)
    assert m.k_size == k and nparams(m) == k < 9
    assert m.conv.bias is None


def test_eca_values_and_override():
    m = create_block("eca", 4, k_size=3)
    with torch.no_grad():
        m.conv.weight.copy_(torch.tensor([[[1.0, 2.0, 3.0]]]))
    x = torch.arange(4.0).view(1, 4, 1, 1).expand(1, 4, 2, 2).contiguous()  # channel means 0, 1, 2, 3
    y = torch.tensor([0.0, 1.0, 2.0, 3.0])
    yp = F.pad(y, (1, 1))
    conv = torch.stack([yp[i] * 1 + yp[i + 1] * 2 + yp[i + 2] * 3 for i in range(4)])  # zero-padded 1-D conv
    expected = x * torch.sigmoid(conv)[None, :, None, None]
    assert torch.allclose(m(x), expected)
    assert eca_kernel_size(4) == 1 and create_block("eca", 4).k_size == 1  # formula, no clamp to 3
    with pytest.raises(ValueError, match="odd"):
        create_block("eca", 8, k_size=4)


def test_eca_ns():
    m = create_block("eca_ns", 64)
    assert nparams(m) == 64 * 3
    # with every channel's kernel equal to the shared one, ECA-NS == ECA
    e = create_block("eca", 64)
    with torch.no_grad():
        m.weight.copy_(e.conv.weight.view(1, 3).expand(64, 3))
    x = torch.randn(2, 64, 3, 4)
    assert torch.allclose(m(x), e(x), atol=1e-6)


def test_coord_mip_and_values():
    assert create_block("coord", 64).mip == 8          # max(8, 64 // 32)
    assert create_block("coord", 512).mip == 16
    m = create_block("coord", 2, min_mip=1, reduction=2).eval()
    assert m.mip == 1
    with torch.no_grad():
        m.conv1.weight.copy_(torch.tensor([[[[1.0]], [[1.0]]]]))
        m.conv1.bias.zero_()
        m.bn1.running_mean.zero_(), m.bn1.running_var.fill_(1 - 1e-5)  # BN (eval) = identity
        m.conv_h.weight.copy_(torch.tensor([[[[1.0]]], [[[0.0]]]]))
        m.conv_h.bias.zero_()
        m.conv_w.weight.copy_(torch.tensor([[[[0.0]]], [[[-1.0]]]]))
        m.conv_w.bias.zero_()
    x = torch.tensor([[[[1.0, 2.0, 0.0], [3.0, 4.0, 2.0]],
                       [[0.0, 1.0, 1.0], [1.0, 0.0, 2.0]]]])                    # (1, 2, H=2, W=3)
    hsw = lambda t: t * torch.clamp(t + 3, 0, 6) / 6
    z_h = hsw(x.mean(3).sum(1))           # (1, H): conv1 sums the channels of the W-pooled map
    z_w = hsw(x.mean(2).sum(1))           # (1, W)
    a_h = torch.stack([torch.sigmoid(z_h), torch.sigmoid(0 * z_h)], 1)[..., None]   # (1, C, H, 1)
    a_w = torch.stack([torch.sigmoid(0 * z_w), torch.sigmoid(-z_w)], 1)[:, :, None]  # (1, C, 1, W)
    assert torch.allclose(m(x), x * a_h * a_w, atol=1e-6)


def test_sse_scse():
    s = create_block("sse", 16)
    assert nparams(s) == 16 + 1                         # ONE output map
    assert s.conv.out_channels == 1
    x = torch.randn(2, 16, 5, 3)
    q = torch.sigmoid(F.conv2d(x, s.conv.weight, s.conv.bias))
    assert torch.allclose(s(x), x * q)
    c = create_block("cse", 16)
    assert c.hidden == 8                                # r = 2
    m = create_block("scse", 16)
    assert torch.allclose(m(x), m.cse(x) + m.sse(x))   # addition, as in the MICCAI paper
    mm = create_block("scse", 16, combine="max")
    assert torch.allclose(mm(x), torch.maximum(mm.cse(x), mm.sse(x)))
