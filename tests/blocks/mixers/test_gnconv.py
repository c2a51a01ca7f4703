"""blockzoo.blocks.mixers.gnconv: gnConv channel widths, hand-computed orders 1 and 2, the cost of higher orders, the
global-local filter."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.blocks.mixers.gnconv import GlobalLocalFilter, GnConv, gnconv_dims
from blockzoo.registry import IncompatibleBlockError, create_block
from helpers import count_macs, n_params


def test_channel_split_sizes():
    assert gnconv_dims(64, 1) == [64]
    assert gnconv_dims(64, 2) == [32, 64]
    assert gnconv_dims(64, 3) == [16, 32, 64]
    assert gnconv_dims(64, 5) == [4, 8, 16, 32, 64]
    assert gnconv_dims(512, 5) == [32, 64, 128, 256, 512]          # HorNet-T stage 4
    for order, dims in ((1, [64]), (3, [16, 32, 64]), (5, [4, 8, 16, 32, 64])):
        m = create_block("gnconv", 64, order=order)
        assert isinstance(m, GnConv) and m.dims == dims and m.scale == pytest.approx(1 / 3)
        s = sum(dims)
        assert m.proj_in.in_channels == 64 and m.proj_in.out_channels == 128 == dims[0] + s
        assert isinstance(m.dwconv, nn.Conv2d) and m.dwconv.groups == m.dwconv.in_channels == s
        assert m.dwconv.kernel_size == (7, 7) and m.dwconv.padding == (3, 3) and m.dwconv.bias is not None
        assert [(c.in_channels, c.out_channels) for c in m.pws] == list(zip(dims[:-1], dims[1:]))
        assert m.proj_out.in_channels == m.proj_out.out_channels == 64
        # closed form: proj_in + 7x7 dw (bias) + pws + proj_out
        expect = 64 * 128 + 128 + 50 * s + sum(a * b + b for a, b in zip(dims, dims[1:])) + 64 * 64 + 64
        assert n_params(m) == expect
    # widths that 2**(order-1) does not divide: proj_in gives dims[0] + sum(dims) channels (official: 2C, crashes)
    m = create_block("gnconv", 40, order=5)
    assert m.dims == [2, 5, 10, 20, 40] and m.proj_in.out_channels == 79
    assert m(torch.randn(1, 40, 5, 6)).shape == (1, 40, 5, 6)
    with pytest.raises(IncompatibleBlockError, match="at least 16 channels"):
        create_block("gnconv", 8, order=5)
    with pytest.raises(ValueError, match="order"):
        create_block("gnconv", 8, order=0)
    with pytest.raises(ValueError, match="filter"):
        create_block("gnconv", 8, order=2, filter="9x9")


def test_order1_and_order2_by_hand():
    # order 1, C = 2, one pixel (the 7x7 dw reduces to its centre tap): every number by hand
    m = create_block("gnconv", 2, order=1)
    with torch.no_grad():
        m.proj_in.weight.copy_(torch.tensor([[1., 0.], [0., 1.], [1., 1.], [1., -1.]]).view(4, 2, 1, 1))
        m.proj_in.bias.copy_(torch.tensor([0., 0., 0.5, 0.]))
        m.dwconv.weight.zero_()
        m.dwconv.weight[:, 0, 3, 3] = torch.tensor([2., 3.])
        m.dwconv.bias.copy_(torch.tensor([0.5, 0.]))
        m.proj_out.weight.copy_(torch.tensor([[1., 1.], [1., -1.]]).view(2, 2, 1, 1))
        m.proj_out.bias.copy_(torch.tensor([0., 1.]))
    # x = (1, 2): p0 = (1, 2); q = (3.5, -1); dw(q) = (2*3.5 + 0.5, 3*-1) = (7.5, -3); / 3 = (2.5, -1)
    # p1 = p0 * q0 = (2.5, -2); proj_out: (2.5 - 2 + 0, 2.5 + 2 + 1) = (0.5, 5.5)
    y = m(torch.tensor([1., 2.]).view(1, 2, 1, 1))
    torch.testing.assert_close(y.flatten(), torch.tensor([0.5, 5.5]))
    with torch.no_grad():
        m.scale = 1.0                                                    # official class default s = 1
    # q = (7.5, -3) -> p1 = (7.5, -6) -> (1.5, 14.5)
    torch.testing.assert_close(m(torch.tensor([1., 2.]).view(1, 2, 1, 1)).flatten(), torch.tensor([1.5, 14.5]))

    # order 2, C = 4 on a 3x5 map: random 1x1 weights, dw kernels that shift each channel by a known offset;
    # the expectation uses only einsum, slicing and elementwise ops
    torch.manual_seed(0)
    m = create_block("gnconv", 4, order=2)
    assert m.dims == [2, 4]
    shifts = [(0, 1), (1, 0), (-1, 2), (0, 0), (2, -1), (-2, -3)]          # (dy, dx) per q channel (6 = 2 + 4)
    taps = torch.tensor([1.5, -2.0, 0.5, 3.0, -1.0, 2.5])
    with torch.no_grad():
        m.dwconv.weight.zero_()
        for k, (dy, dx) in enumerate(shifts):
            m.dwconv.weight[k, 0, 3 + dy, 3 + dx] = taps[k]                # y[i, j] = tap * q[i + dy, j + dx]
    x = torch.randn(2, 4, 3, 5)
    w_in, b_in = m.proj_in.weight[:, :, 0, 0], m.proj_in.bias
    fused = torch.einsum("oc,bchw->bohw", w_in, x) + b_in.view(1, -1, 1, 1)
    p0, q = fused[:, :2], fused[:, 2:]
    dq = torch.zeros_like(q)
    for k, (dy, dx) in enumerate(shifts):
        for i in range(3):
            for j in range(5):
                if 0 <= i + dy < 3 and 0 <= j + dx < 5:
                    dq[:, k, i, j] = taps[k] * q[:, k, i + dy, j + dx]
    dq = (dq + m.dwconv.bias.view(1, -1, 1, 1)) / 3
    p1 = p0 * dq[:, :2]
    p2 = (torch.einsum("oc,bchw->bohw", m.pws[0].weight[:, :, 0, 0], p1) + m.pws[0].bias.view(1, -1, 1, 1)) * dq[:, 2:]
    exp = torch.einsum("oc,bchw->bohw", m.proj_out.weight[:, :, 0, 0], p2) + m.proj_out.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(m(x), exp)


def test_higher_orders_add_little_cost():
    """MACs (count_macs: convs only) of gnConv at C = 64, 56x56 for orders 1..5: recorded in the registry claim."""
    c, hw = 64, 56 * 56
    macs = {o: count_macs(create_block("gnconv", c, order=o), (c, 56, 56)) for o in range(1, 6)}
    assert macs == {1: 48_369_664, 2: 59_709_440, 3: 63_773_696, 4: 65_404_416, 5: 66_119_424}
    for o, v in macs.items():                                         # the closed form per pixel
        d = gnconv_dims(c, o)
        assert v == hw * (2 * c * c + 49 * sum(d) + sum(a * b for a, b in zip(d, d[1:])) + c * c)
        assert v < hw * c * (2 * 49 + 11 * c / 3)                       # the paper's bound (without the +2)
    assert all(macs[o] < macs[o + 1] for o in range(1, 5))
    assert macs[5] / macs[2] == pytest.approx(1.1074, abs=1e-4) and macs[5] / macs[2] < 1.12
    limit = hw * (2 * c * c + 49 * 2 * c + 2 * c * c / 3 + c * c)     # order -> infinity
    assert macs[5] < limit < 1.12 * macs[2]


def test_gf_filter_size_handling():
    torch.manual_seed(0)
    gf = GlobalLocalFilter(8, h=14, w=8)
    assert gf.dw.groups == 4 and gf.dw.kernel_size == (3, 3) and gf.dw.bias is None
    assert gf.complex_weight.shape == (4, 14, 8, 2)
    assert n_params(gf) == 4 * 9 + 4 * 14 * 8 * 2 + 4 * 8
    # matching size: the stored weight is used as is
    w_same = gf.spectral_weight((14, 8))
    assert torch.equal(torch.view_as_real(w_same), gf.complex_weight.detach())
    # non-square 12 x 10 input -> half spectrum 12 x 6: bilinear resize with align_corners=True
    w_ns = gf.spectral_weight((12, 6))
    ref = F.interpolate(gf.complex_weight.detach().permute(3, 0, 1, 2), size=(12, 6), mode="bilinear",
                        align_corners=True).permute(1, 2, 3, 0)
    torch.testing.assert_close(torch.view_as_real(w_ns).detach(), ref)
    for i, j in ((0, 0), (0, -1), (-1, 0), (-1, -1)):                   # align_corners keeps the corner values
        torch.testing.assert_close(torch.view_as_real(w_ns)[:, i, j].detach(), gf.complex_weight[:, i, j].detach())
    x = torch.randn(2, 8, 12, 10, requires_grad=True)
    y = gf(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert gf.complex_weight.grad is not None and gf.complex_weight.grad.abs().sum() > 0

    # hand check on a non-square 6 x 8 map with a filter made for it (6, 5): complex weight = pure phase shift,
    # i.e. a circular shift by (dy, dx); dw = identity. Expected: post_norm(interleave(n[:4], roll(n[4:]))) with
    # n = pre_norm(x); the norms are plain LayerNorms over channels (affine 1/0).
    gf = GlobalLocalFilter(8, h=6, w=5)
    dy, dx = 1, -2
    u = torch.arange(6).view(6, 1).float()
    v = torch.arange(5).view(1, 5).float()
    phase = torch.exp(-2j * math.pi * (u * dy / 6 + v * dx / 8))
    with torch.no_grad():
        gf.complex_weight.copy_(torch.view_as_real(phase.expand(4, 6, 5).contiguous()))
        gf.dw.weight.zero_()
        gf.dw.weight[:, 0, 1, 1] = 1.0
    x = torch.randn(2, 8, 6, 8)
    n = F.layer_norm(x.permute(0, 2, 3, 1), (8,), eps=1e-6).permute(0, 3, 1, 2)
    local, glob = n[:, :4], torch.roll(n[:, 4:], shifts=(dy, dx), dims=(2, 3))
    inter = torch.stack([local[:, 0], glob[:, 0], local[:, 1], glob[:, 1], local[:, 2], glob[:, 2],
                         local[:, 3], glob[:, 3]], dim=1)
    exp = F.layer_norm(inter.permute(0, 2, 3, 1), (8,), eps=1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(gf(x), exp, atol=1e-5, rtol=1e-5)

    # gnConv with the global filter: works on non-square input, every parameter gets a gradient, bf16 autocast
    m = create_block("gnconv", 32, order=3, filter="gf")
    assert isinstance(m.dwconv, GlobalLocalFilter) and m.dwconv.filter_size == (14, 8)
    x = torch.randn(2, 32, 12, 10)
    m(x).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(m(x).float()).all()
    with pytest.raises(IncompatibleBlockError, match="even"):
        create_block("gnconv", 40, order=5, filter="gf")              # sum(dims) = 77


@pytest.mark.parametrize("filt", ["7x7", "gf"])
def test_gnconv_traces_and_exports(filt, tmp_path):
    """torch.fx traces every order (the split is indexed, not iterated) and the global filter at a size other than
    its stored one (the resize has no branch on the size); ONNX (real-arithmetic DFTs for 'gf') matches eager."""
    m = GnConv(32, order=4, filter=filt, h=6, w=4).eval()
    x = torch.randn(2, 32, 8, 8)   # half spectrum 8 x 5, stored filter 6 x 4: resized
    assert torch.equal(torch.fx.symbolic_trace(m)(x), m(x))
    pytest.importorskip("onnxruntime")
    from blockzoo.deploy import export_model
    res = export_model(m, tmp_path / "gnconv.onnx", example=x)
    assert res["ok"], res
