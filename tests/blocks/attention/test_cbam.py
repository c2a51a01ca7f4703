"""blockzoo.blocks.attention.cbam: CBAM hand-computed, the official variant, parameters, and CBAM-ResNet-50 counts."""
import pytest
import torch
import torch.nn as nn

from blockzoo import create_block, create_model
from blockzoo.blocks.attention.cbam import CBAM
from blockzoo.profile import count_macs
from helpers import BNF, nparams


def zero_params(m: nn.Module) -> None:
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_cbam_no_residual(variant):
    m = create_block("cbam", 8, variant=variant)
    zero_params(m)                                   # both gates = sigmoid(0) = 0.5
    x = torch.randn(2, 8, 5, 7)
    for mode in (m.train, m.eval):
        mode()
        assert torch.equal(m(x), 0.25 * x)           # 0.5 * 0.5 * x, no "+ x"


def test_cbam_hand_computed():
    m = create_block("cbam", 2, reduction=2).eval()   # hidden = 1
    assert m.channel.hidden == 1 and m.spatial.conv.kernel_size == (7, 7) and m.spatial.conv.padding == (3, 3)
    with torch.no_grad():
        m.channel.fc1.weight.copy_(torch.tensor([[1.0, -1.0]]))
        m.channel.fc1.bias.fill_(0.5)
        m.channel.fc2.weight.copy_(torch.tensor([[2.0], [-1.0]]))
        m.channel.fc2.bias.copy_(torch.tensor([0.0, 1.0]))
        m.spatial.conv.weight.zero_()
        m.spatial.conv.weight[0, 0, 3, 3] = 1.0      # avg map, same position
        m.spatial.conv.weight[0, 1, 4, 3] = 2.0      # max map, one row below
        m.spatial.conv.bias.fill_(-0.25)
    x = torch.tensor([[[0.0, 1.0, 2.0, -1.0], [3.0, 0.5, -2.0, 1.0], [1.0, 1.0, 0.0, 2.0]],
                      [[1.0, -1.0, 0.0, 2.0], [0.0, 4.0, 1.0, -3.0], [2.0, 0.0, 1.0, 1.0]]]).unsqueeze(0)  # (1,2,3,4)
    avg = [x[0, c].mean().item() for c in range(2)]
    mx = [x[0, c].max().item() for c in range(2)]
    h_avg, h_max = max(0.0, avg[0] - avg[1] + 0.5), max(0.0, mx[0] - mx[1] + 0.5)
    # shared MLP on both descriptors: fc2's bias enters once per descriptor
    att_c = torch.sigmoid(torch.tensor([2 * h_avg + 2 * h_max, (-h_avg + 1) + (-h_max + 1)]))
    x1 = x * att_c[None, :, None, None]
    cavg, cmax = x1[0].mean(0), x1[0].amax(0)       # (3, 4) channel-wise maps
    s = torch.empty(3, 4)
    for i in range(3):
        for j in range(4):
            s[i, j] = cavg[i, j] + (2 * cmax[i + 1, j] if i + 1 < 3 else 0.0) - 0.25
    expected = x1 * torch.sigmoid(s)[None, None]
    assert torch.allclose(m(x), expected, atol=1e-6)


def test_cbam_official_variant():
    m = create_block("cbam", 4, variant="official").eval()
    assert m.spatial.conv.bias is None and isinstance(m.spatial.bn, nn.BatchNorm2d)
    assert m.spatial.bn.momentum == 0.01
    zero_params(m.channel)                            # channel gate = 0.5
    with torch.no_grad():
        m.spatial.conv.weight.zero_()
        m.spatial.conv.weight[0, 0, 3, 3] = 1.0      # official order: channel 0 of the descriptor is the MAX map
        m.spatial.bn.weight.fill_(1.0)
    x = torch.randn(1, 4, 3, 5)
    x1 = 0.5 * x
    expected = x1 * torch.sigmoid(x1.amax(1, keepdim=True) * BNF)
    assert torch.allclose(m(x), expected, atol=1e-6)


@pytest.mark.parametrize("c", [8, 32, 64, 256])
def test_cbam_params(c):
    h = max(1, c // 16)
    mlp = c * h + h + h * c + c
    assert nparams(create_block("cbam", c)) == mlp + 2 * 49 + 1                 # spatial conv with bias
    assert nparams(create_block("cbam", c, variant="official")) == mlp + 2 * 49 + 2  # conv without bias + BN
    assert nparams(create_block("cbam", c, kernel_size=3)) == mlp + 2 * 9 + 1
    with pytest.raises(ValueError, match="odd"):
        create_block("cbam", c, kernel_size=4)
    with pytest.raises(ValueError, match="variant"):
        create_block("cbam", c, variant="timm")


def test_cbam_resnet50_params():
    m = create_model("resnet50", attn="cbam")
    cbams = [b for b in m.modules() if isinstance(b, CBAM)]
    extra = sum(2 * c * (c // 16) + c // 16 + c + 99 for c, n in ((256, 3), (512, 4), (1024, 6), (2048, 3))
                for _ in range(n))
    assert len(cbams) == 16 and sum(nparams(b) for b in cbams) == extra == 2_532_576
    assert nparams(m) - extra == 25_557_032                                     # plain ResNet-50
    assert nparams(m) == 28_089_608
    assert round(nparams(m) / 1e6, 2) == 28.09                                  # paper: 28.09M


def test_cbam_resnet50_macs():
    total = 0
    for c, size, n in ((256, 56, 3), (512, 28, 4), (1024, 14, 6), (2048, 7, 3)):
        macs = count_macs(create_block("cbam", c), (c, size, size)).macs
        h = c // 16
        assert macs == 2 * (c * h + h * c) + 2 * 49 * size * size              # MLP on 2 descriptors + 7x7 conv
        total += n * macs
    assert round(total / 1e9, 3) == 0.006                                      # paper: 3.858 -> 3.864 GFLOPs
