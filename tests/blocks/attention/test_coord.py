"""blockzoo.blocks.attention.coord: coordinate attention's hidden width and hand-computed values."""
import torch

from blockzoo import create_block


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
