"""blockzoo.blocks.mixers.inception_dw: InceptionNeXt's channel split and kernels."""
from __future__ import annotations

import pytest
import torch

from blockzoo.blocks.mixers.inception_dw import InceptionDWConv2d
from blockzoo.registry import IncompatibleBlockError, create_block
from helpers import n_params


def test_inception_dw_split_and_kernels():
    m = create_block("inception_dw", 64)
    assert isinstance(m, InceptionDWConv2d)
    assert m.split_indexes == (40, 8, 8, 8)                       # gc = int(64 / 8) = 8
    assert m.dwconv_hw.kernel_size == (3, 3) and m.dwconv_w.kernel_size == (1, 11)
    assert m.dwconv_h.kernel_size == (11, 1)
    for c in (m.dwconv_hw, m.dwconv_w, m.dwconv_h):
        assert c.groups == 8 and c.in_channels == c.out_channels == 8 and c.bias is not None
    assert n_params(m) == 8 * (9 + 1) + 2 * 8 * (11 + 1)
    atto = create_block("inception_dw(band_kernel_size=9, branch_ratio=0.25)", 40)
    assert atto.split_indexes == (10, 10, 10, 10) and atto.dwconv_w.kernel_size == (1, 9)
    assert create_block("inception_dw", 100).split_indexes == (64, 12, 12, 12)  # int(12.5) = 12
    # hand check with all-ones weights, zero biases, an all-ones input: at the centre the branches sum their windows
    with torch.no_grad():
        for c in (m.dwconv_hw, m.dwconv_w, m.dwconv_h):
            c.weight.fill_(1.0)
            c.bias.zero_()
    y = m(torch.ones(1, 64, 16, 16))
    centre = y[0, :, 8, 8]
    assert torch.equal(centre[:40], torch.ones(40))               # identity branch
    assert torch.equal(centre[40:48], torch.full((8,), 9.0))      # 3x3
    assert torch.equal(centre[48:56], torch.full((8,), 11.0))     # 1x11 (along W)
    assert torch.equal(centre[56:], torch.full((8,), 11.0))       # 11x1 (along H)
    assert y[0, 48, 8, 0].item() == 6.0 and y[0, 48, 0, 8].item() == 11.0   # the 1x11 band is horizontal
    assert y[0, 56, 0, 8].item() == 6.0 and y[0, 56, 8, 0].item() == 11.0   # the 11x1 band is vertical
    with pytest.raises(IncompatibleBlockError, match="channels"):
        create_block("inception_dw", 4)
