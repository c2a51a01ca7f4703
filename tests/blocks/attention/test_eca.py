"""blockzoo.blocks.attention.eca: ECA kernel sizes, values, overrides, ECA-NS, and the per-stage kernels of
ECA-ResNet."""
import pytest
import torch
import torch.nn.functional as F

from blockzoo import create_block, create_model
from blockzoo.blocks.attention.eca import eca_kernel_size
from blockzoo.models.base import PerBlock
from helpers import nparams


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


def test_eca_official_per_stage_kernels():
    """The released ECA-Net50 checkpoint ('k3557') uses hand-picked per-stage kernels instead of the paper formula."""
    ks = (3, 5, 5, 7)
    m = create_model("ecaresnet50", attn=PerBlock(lambda stage, block: f"eca(k_size={ks[stage]})"))
    got = [blk.attn.k_size for stage in m.layers for blk in stage]
    assert got == [3] * 3 + [5] * 4 + [5] * 6 + [7] * 3
    assert nparams(m) == 25_557_032 + 3 * 3 + 4 * 5 + 6 * 5 + 3 * 7
    formula = [blk.attn.k_size for stage in create_model("ecaresnet50").layers for blk in stage]
    assert formula == [5] * 3 + [5] * 4 + [5] * 6 + [7] * 3   # paper formula on 256/512/1024/2048 channels
