"""blockzoo.blocks.attention.scse: cSE / sSE / scSE parameter counts and values."""
import torch
import torch.nn.functional as F

from blockzoo import create_block
from helpers import nparams


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
