"""blockzoo.blocks.mixers.dwconv: the ConvNeXt mixer is a depthwise 7x7 conv."""
from __future__ import annotations

import pytest
import torch

from blockzoo.blocks.mixers.dwconv import DWConv
from blockzoo.registry import create_block
from helpers import n_params


def test_dwconv_is_depthwise_7x7():
    m = create_block("dwconv", 32)
    assert isinstance(m, DWConv) and m.groups == 32 and m.kernel_size == (7, 7) and m.padding == (3, 3)
    assert m.weight.shape == (32, 1, 7, 7) and m.bias is not None
    assert n_params(m) == 50 * 32
    # hand check: a kernel that is 1 at offset (+1 row, -2 cols) from the centre shifts the map; bias is added
    with torch.no_grad():
        m.weight.zero_()
        m.weight[:, 0, 3 + 1, 3 - 2] = 1.0
        m.bias.fill_(0.5)
    x = torch.randn(1, 32, 9, 8)
    y = m(x)
    exp = torch.zeros_like(x)
    exp[:, :, :-1, 2:] = x[:, :, 1:, :-2]  # y[i, j] = x[i + 1, j - 2]
    torch.testing.assert_close(y, exp + 0.5)
    assert create_block("dwconv(kernel_size=3)", 8).kernel_size == (3, 3)
    with pytest.raises(ValueError, match="odd"):
        create_block("dwconv", 8, kernel_size=4)
