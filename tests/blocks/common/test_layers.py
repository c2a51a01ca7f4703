"""blockzoo.blocks.common.layers: the `none` block is the identity."""
import torch

from blockzoo import create_block
from helpers import nparams


def test_none_is_identity():
    m = create_block("none", 8)
    x = torch.randn(2, 8, 3, 5)
    assert nparams(m) == 0 and torch.equal(m(x), x)
