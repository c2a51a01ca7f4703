"""blockzoo.blocks.mixers.dilated_reparam: dilated kernels, the Dilated Reparam Block and its re-parameterisation
[S016/S084]."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import create_block, create_model
from blockzoo.blocks.mixers.dilated_reparam import (
    KERNEL_TABLE,
    DilatedReparamBlock,
    dilated_to_dense,
    merge_dilated_into_large_kernel,
)
from blockzoo.deploy.reparam import reparameterize
from helpers import bn_ref, n_params, randomize

OFFICIAL = {17: ([5, 9, 3, 3, 3], [1, 2, 4, 5, 7]), 15: ([5, 7, 3, 3, 3], [1, 2, 3, 5, 7]),
            13: ([5, 7, 3, 3, 3], [1, 2, 3, 4, 5]), 11: ([5, 5, 3, 3, 3], [1, 2, 3, 4, 5]),
            9: ([5, 5, 3, 3], [1, 2, 3, 4]), 7: ([5, 3, 3], [1, 2, 3]), 5: ([3, 3], [1, 2]), 3: ([], [])}


def test_dilated_to_dense():
    k = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    d = dilated_to_dense(k, 2)
    assert d.shape == (1, 1, 5, 5)
    exp = torch.tensor([[1, 0, 2, 0, 3], [0] * 5, [4, 0, 5, 0, 6], [0] * 5, [7, 0, 8, 0, 9]], dtype=torch.float)
    torch.testing.assert_close(d[0, 0], exp)
    assert dilated_to_dense(k, 1) is k
    # the official construction: conv_transpose2d with a 1x1 identity kernel at stride r
    w = torch.randn(6, 1, 5, 5)
    for r in (2, 3, 4):
        torch.testing.assert_close(dilated_to_dense(w, r), F.conv_transpose2d(w, torch.ones(1, 1, 1, 1), stride=r))
        # and the dense kernel computes the dilated conv (depthwise, "same" padding)
        x = torch.randn(2, 6, 23, 17)
        p = r * 2
        torch.testing.assert_close(F.conv2d(x, dilated_to_dense(w, r), padding=p, groups=6),
                                   F.conv2d(x, w, padding=p, dilation=r, groups=6), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        dilated_to_dense(k, 0)


def test_merge_dilated_into_large_kernel():
    large = torch.zeros(1, 1, 7, 7)
    small = torch.ones(1, 1, 3, 3)
    m = merge_dilated_into_large_kernel(large, small, 2)  # spans 5x5, centred: rows/cols 1, 3, 5
    exp = torch.zeros(7, 7)
    exp[1::2, 1::2] = 1.0
    torch.testing.assert_close(m[0, 0], exp)
    m3 = merge_dilated_into_large_kernel(large, small, 3)  # spans 7x7: rows/cols 0, 3, 6
    assert m3[0, 0].nonzero().tolist() == [[i, j] for i in (0, 3, 6) for j in (0, 3, 6)]
    with pytest.raises(ValueError, match="does not fit"):
        merge_dilated_into_large_kernel(large, small, 4)  # 9 > 7


@pytest.mark.parametrize("K", sorted(OFFICIAL))
def test_drb_tables_and_params(K):
    ks, rs = OFFICIAL[K]
    assert list(KERNEL_TABLE[K][0]) == ks and list(KERNEL_TABLE[K][1]) == rs
    C = 8
    m = create_block("dilated_reparam", C, kernel_size=K)
    assert isinstance(m, DilatedReparamBlock)
    assert m.lk_origin.kernel_size == (K, K) and m.lk_origin.groups == C and m.lk_origin.bias is None
    assert m.lk_origin.padding == (K // 2, K // 2)
    for k, r in zip(ks, rs):
        conv = getattr(m, f"dil_conv_k{k}_{r}")
        assert conv.kernel_size == (k, k) and conv.dilation == (r, r) and conv.groups == C and conv.bias is None
        assert conv.padding == (r * (k - 1) // 2,) * 2
        assert isinstance(getattr(m, f"dil_bn_k{k}_{r}"), nn.BatchNorm2d)
    assert n_params(m) == (K * K + sum(k * k for k in ks)) * C + 2 * C * (1 + len(ks))


def test_drb_forward_hand_computed():
    """K=5, branches (3, r=1), (3, r=2): identity / shift / dilated shift kernels, each through its own eval BN."""
    C = 2
    m = DilatedReparamBlock(C, 5).eval()
    randomize(m)
    with torch.no_grad():
        for conv in (m.lk_origin, m.dil_conv_k3_1, m.dil_conv_k3_2):
            conv.weight.zero_()
        m.lk_origin.weight[:, 0, 2, 2] = 1.0        # identity
        m.dil_conv_k3_1.weight[:, 0, 0, 0] = 1.0    # y[i, j] = x[i - 1, j - 1]
        m.dil_conv_k3_2.weight[:, 0, 2, 2] = 2.0    # y[i, j] = 2 x[i + 2, j + 2]   (dilation 2)
    x = torch.randn(1, C, 6, 7)
    s1 = torch.zeros_like(x)
    s1[:, :, 1:, 1:] = x[:, :, :-1, :-1]
    s2 = torch.zeros_like(x)
    s2[:, :, :-2, :-2] = 2 * x[:, :, 2:, 2:]
    exp = bn_ref(x, m.origin_bn) + bn_ref(s1, m.dil_bn_k3_1) + bn_ref(s2, m.dil_bn_k3_2)
    torch.testing.assert_close(m(x), exp)


@pytest.mark.parametrize("K,size", [(3, (11, 19)), (5, (11, 19)), (7, (19, 11)), (9, (12, 10)), (11, (12, 10)),
                                    (13, (12, 10)), (15, (9, 14)), (17, (9, 6))])
def test_drb_reparam_equivalence(K, size):
    torch.manual_seed(K)
    m = randomize(create_block("dilated_reparam", 16, kernel_size=K), seed=K)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 4:
                p.normal_(0, 0.3)
    m.eval()
    x = torch.randn(2, 16, *size)
    with torch.no_grad():
        y0 = m(x)
        w, b = m.equivalent_kernel_bias()
        m.reparameterize()
        y1 = m(x)
    assert (y0 - y1).abs().max().item() < 1e-5
    # ONE KxK depthwise conv with bias is left, holding the equivalent kernel, and the forward uses only it
    assert m.deployed and [n for n, _ in m.named_children()] == ["lk_origin"]
    conv = m.lk_origin
    assert conv.kernel_size == (K, K) and conv.groups == 16 and conv.bias is not None and conv.padding == (K // 2,) * 2
    torch.testing.assert_close(conv.weight, w.float())
    torch.testing.assert_close(conv.bias, b.float())
    torch.testing.assert_close(y1, F.conv2d(x, conv.weight, conv.bias, padding=K // 2, groups=16))
    assert n_params(m) == (K * K + 1) * 16
    m.reparameterize()  # idempotent
    torch.testing.assert_close(m(x), y1)


def test_drb_custom_table_and_errors():
    m = create_block("dilated_reparam", 4, kernel_size=7, kernel_sizes=(3,), dilations=(3,))
    assert m.branches == [(3, 3)] and m.dil_conv_k3_3.padding == (3, 3)
    x = torch.randn(1, 4, 8, 9)
    randomize(m).eval()
    with torch.no_grad():
        y0 = m(x)
        m.reparameterize()
        assert (m(x) - y0).abs().max() < 1e-5
    with pytest.raises(ValueError, match="odd kernel_size"):
        create_block("dilated_reparam", 4, kernel_size=8)
    with pytest.raises(ValueError, match="kernel_sizes=.*dilations="):
        create_block("dilated_reparam", 4, kernel_size=19)
    with pytest.raises(ValueError, match="r \\(k - 1\\) \\+ 1"):
        create_block("dilated_reparam", 4, kernel_size=7, kernel_sizes=(5,), dilations=(2,))   # spans 9 > 7
    with pytest.raises(ValueError, match="both"):
        create_block("dilated_reparam", 4, kernel_size=7, kernel_sizes=(5,))
    with pytest.raises(ValueError, match="duplicate"):
        create_block("dilated_reparam", 4, kernel_size=7, kernel_sizes=(3, 3), dilations=(2, 2))


def test_dilated_reparam_in_convnext_reparameterizes():
    m = randomize(create_model("convnext_atto", mixer="dilated_reparam", img_size=32, stem="small",
                               num_classes=5)).eval()
    x = torch.randn(1, 3, 30, 26)
    with torch.no_grad():
        y0 = m(x)
        d = reparameterize(m)
        y1 = d(x)
    assert (y0 - y1).abs().max().item() < 1e-4 * y0.abs().max().item()
    assert not any(isinstance(mm, nn.BatchNorm2d) for mm in d.modules())
