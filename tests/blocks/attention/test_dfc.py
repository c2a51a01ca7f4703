"""blockzoo.blocks.attention.dfc: DFC attention (GhostNetV2) hand-computed on odd sizes, parameters, MACs, minimum
size."""

import pytest
import torch
import torch.nn as nn

from blockzoo import create_block, create_model
from blockzoo.profile import count_macs
from blockzoo.registry import IncompatibleBlockError, get_block_spec
from helpers import nparams


def _bn_eval(t: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    shape = (-1, 1, 1)
    return (t - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps) * \
        bn.weight.view(shape) + bn.bias.view(shape)


def test_dfc_hand_computed_odd_size():
    m = create_block("dfc", 2).eval()
    assert m.conv.bias is None and m.conv_h.bias is None and m.conv_v.bias is None
    assert m.conv_h.kernel_size == (1, 5) and m.conv_h.padding == (0, 2) and m.conv_h.groups == 2
    assert m.conv_v.kernel_size == (5, 1) and m.conv_v.padding == (2, 0) and m.conv_v.groups == 2
    kh = torch.tensor([[0.1, -0.2, 0.5, 0.3, 0.2], [0.4, 0.0, -0.5, 0.1, 0.3]])
    kv = torch.tensor([[0.2, 0.1, 0.6, -0.3, 0.1], [-0.1, 0.5, 0.2, 0.2, 0.4]])
    with torch.no_grad():
        m.conv.weight.copy_(torch.tensor([[1.0, 0.5], [0.0, -1.0]]).view(2, 2, 1, 1))
        m.conv_h.weight.copy_(kh.view(2, 1, 1, 5))
        m.conv_v.weight.copy_(kv.view(2, 1, 5, 1))
        m.bn.running_mean.copy_(torch.tensor([0.1, -0.2]))
        m.bn.running_var.copy_(torch.tensor([2.0, 0.5]))
        m.bn_h.weight.copy_(torch.tensor([1.5, 0.5]))
        m.bn_v.bias.copy_(torch.tensor([0.3, -0.1]))
    x = torch.randn(1, 2, 5, 7)                        # odd, non-square: pooled to 2 x 3 (floor)
    p = torch.empty(2, 2, 3)
    for i in range(2):
        for j in range(3):
            p[:, i, j] = x[0, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean((1, 2))
    a = _bn_eval(torch.einsum("oc,cij->oij", m.conv.weight[:, :, 0, 0], p), m.bn)
    hh = torch.zeros(2, 2, 3)
    for c in range(2):
        for i in range(2):
            for j in range(3):
                hh[c, i, j] = sum(kh[c, t] * a[c, i, j + t - 2] for t in range(5) if 0 <= j + t - 2 < 3)
    hh = _bn_eval(hh, m.bn_h)
    vv = torch.zeros(2, 2, 3)
    for c in range(2):
        for i in range(2):
            for j in range(3):
                vv[c, i, j] = sum(kv[c, t] * hh[c, i + t - 2, j] for t in range(5) if 0 <= i + t - 2 < 2)
    gate = torch.sigmoid(_bn_eval(vv, m.bn_v))
    rows, cols = [0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 2, 2]   # nearest: src = floor(dst * in / out)
    up = gate[:, rows][:, :, cols]
    with torch.no_grad():
        assert torch.allclose(m.gate(x)[0], up, atol=1e-6)
        assert torch.allclose(m(x), x * up[None], atol=1e-6)


def test_dfc_params_and_macs():
    for c, k in ((32, 5), (16, 3)):
        m = create_block("dfc", c, kernel_size=k)
        assert nparams(m) == c * c + 2 * k * c + 6 * c
        for h, w in ((12, 10), (5, 7), (2, 3)):
            assert count_macs(m, (c, h, w)).macs == c * (c + 2 * k) * (h // 2) * (w // 2)
        full = create_block("dfc", c, kernel_size=k, downsample=False)
        assert count_macs(full, (c, 5, 7)).macs == c * (c + 2 * k) * 35
        assert full(torch.randn(1, c, 1, 3)).shape == (1, c, 1, 3)
    with pytest.raises(ValueError, match="odd"):
        create_block("dfc", 8, kernel_size=4)


def test_dfc_min_size():
    assert get_block_spec("dfc").requires.min_size == 2
    m = create_block("dfc", 8)
    with pytest.raises(ValueError, match="at least 2x2"):
        m(torch.randn(1, 8, 1, 6))
    assert m(torch.randn(2, 8, 2, 3)).shape == (2, 8, 2, 3)                       # pooled to 1x1
    with pytest.raises(IncompatibleBlockError, match="at least 2x2"):
        create_model("resnet20", attn="dfc", img_size=4)                      # last stage sees 1x1
    assert create_model("resnet20", attn="dfc", img_size=8).eval()(torch.randn(1, 3, 8, 8)).shape == (1, 10)
