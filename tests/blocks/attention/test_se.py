"""blockzoo.blocks.attention.se: SE hidden size and hand-computed values."""
import torch

from blockzoo import create_block
from helpers import nparams


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
