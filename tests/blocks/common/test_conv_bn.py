"""blockzoo.blocks.common.conv_bn.ConvBN: the one conv -> BatchNorm unit with a fuse() deploy hook."""
from __future__ import annotations

import torch
import torch.nn as nn

from blockzoo.blocks.common.conv_bn import ConvBN


def test_conv_bn_init_keys_and_size():
    m = ConvBN(4, 6, 3, stride=2, padding=1, groups=2, bn_weight_init=0.0)
    assert [k for k, _ in m.named_children()] == ["c", "bn"]          # official Conv2d_BN keys
    assert m.c.bias is None and torch.equal(m.bn.weight, torch.zeros(6))
    nn.init.ones_(m.bn.weight)
    m.init_weights()                                                   # re-applied after a backbone's generic init
    assert torch.equal(m.bn.weight, torch.zeros(6))
    assert m.out_size((9, 8)) == (5, 4) and m.out_size(None) is None
    assert m(torch.randn(1, 4, 9, 8)).shape == (1, 6, 5, 4)


def test_conv_bn_fuse_float64_exact():
    torch.manual_seed(0)
    m = ConvBN(3, 5, 3, padding=1).double()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-1, 1), m.bn.running_var.uniform_(0.5, 2)
        m.bn.weight.uniform_(0.5, 1.5), m.bn.bias.uniform_(-1, 1)
    m.eval()
    fused = m.fuse()
    assert isinstance(fused, nn.Conv2d) and fused.weight.dtype == torch.float64 and fused.bias is not None
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), m(x), rtol=1e-12, atol=1e-12)
