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


def test_se_hidden_activation_option():
    """``act`` picks the hidden activation (MOAT's official SE uses SiLU); the default stays the paper's ReLU."""
    assert isinstance(create_block("se", 32).act, torch.nn.ReLU)
    blk = create_block("se(act=silu)", 32)
    assert isinstance(blk.act, torch.nn.SiLU)
    x = torch.randn(2, 32, 4, 4)
    s = x.mean((2, 3))
    want = x * torch.sigmoid(blk.fc2(torch.nn.functional.silu(blk.fc1(s))))[:, :, None, None]
    torch.testing.assert_close(blk(x), want)
