"""blockzoo.blocks.mixers.aff: the AFF token mixer (S055): the convolution theorem behind it, hand-computed outputs,
parameters, MACs."""
from __future__ import annotations

import math

import pytest
import torch

from blockzoo import create_block, create_model
from blockzoo.blocks.mixers.aff import AFFMixer, aff_params, frequency_filter
from blockzoo.models.affnet import AFFNet
from blockzoo.models.metaformer import MetaFormer
from blockzoo.profile import count_macs
from blockzoo.registry import IncompatibleBlockError
from helpers import n_params


def circular_conv2d(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Direct 2-D circular convolution over the last two dims: y[i, j] = sum_{a, b} k[a, b] x[(i - a) % H, (j - b) % W].
    ``k`` broadcasts against ``x`` (per-channel kernels of the full map size)."""
    h, w = x.shape[-2:]
    y = torch.zeros(torch.broadcast_shapes(x.shape, k.shape), dtype=x.dtype)
    for a in range(h):
        for b in range(w):
            y = y + k[..., a:a + 1, b:b + 1] * torch.roll(x, shifts=(a, b), dims=(-2, -1))
    return y


# ============================================================================================================ AFF
@pytest.mark.parametrize("h,w", [(5, 6), (4, 7), (3, 8)])
def test_fft_product_is_circular_conv(h, w):
    """Convolution theorem (S055): irfft2(rfft2(x) * M) == x (*) irfft2(M) for a random complex half-spectrum mask,
    checked against a direct circular convolution on small non-square maps (even and odd widths)."""
    g = torch.Generator().manual_seed(h * 10 + w)
    x = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    mask = torch.complex(torch.randn(3, h, w // 2 + 1, generator=g, dtype=torch.float64),
                         torch.randn(3, h, w // 2 + 1, generator=g, dtype=torch.float64))
    kernel = torch.fft.irfft2(mask, s=(h, w))                   # the spatial kernel (norm="backward")
    torch.testing.assert_close(frequency_filter(x, mask), circular_conv2d(x, kernel), rtol=1e-10, atol=1e-10)
    # hand cases: an all-ones mask is the identity; the spectrum of a delta at (1, 2) shifts the map by (1, 2)
    torch.testing.assert_close(frequency_filter(x, torch.ones(h, w // 2 + 1, dtype=torch.complex128)), x)
    delta = torch.zeros(h, w, dtype=torch.float64)
    delta[1, 2] = 1.0
    torch.testing.assert_close(frequency_filter(x, torch.fft.rfft2(delta)), torch.roll(x, (1, 2), (-2, -1)))
    with pytest.raises(ValueError, match="half-spectrum"):
        frequency_filter(x, torch.ones(h, w, dtype=torch.complex128))


def test_aff_is_dynamic_global_conv():
    """The AFF mixer output is x + circular depthwise conv of x with the input-generated kernel irfft2(M(x)), a kernel
    as large as the map, different for different inputs."""
    torch.manual_seed(0)
    m = create_block("aff(init_scale=0.3)", 16)
    x1, x2 = torch.randn(2, 16, 5, 7), torch.randn(2, 16, 5, 7)
    for x in (x1, x2):
        k = m.spatial_kernel(x)
        assert k.shape == (2, 16, 5, 7)
        torch.testing.assert_close(m(x), x + circular_conv2d(x, k), rtol=1e-4, atol=1e-5)
    k1, k2 = m.spatial_kernel(x1), m.spatial_kernel(x2)
    assert (k1 - k2).abs().max() > 1e-2                          # dynamic: the kernel depends on the input
    assert (k1[..., 2:, 3:].abs().sum((-2, -1)) > 0).all()      # global: taps far from the origin are used
    bare = create_block("aff(init_scale=0.3, skip=False)", 16)
    bare.load_state_dict(m.state_dict())
    torch.testing.assert_close(bare(x1), m(x1) - x1)


def test_aff_hand_computed_constant_map():
    """Hand case: a constant map c has only a DC component X = c*sqrt(HW) (ortho FFT), so the output is
    c * (1 + Re M_DC) with M_DC = softshrink(L2(relu(L1(X)))); one channel per group, hand-set complex weights."""
    m = AFFMixer(8, num_groups=8)                                # group size 1, hidden 1: a scalar complex MLP
    a, b, b1r, b1i, c_, d, b2r, b2i = 0.5, 0.25, 0.1, -0.2, 1.0, 0.5, 0.05, 0.0
    with torch.no_grad():
        m.w1[0].fill_(a), m.w1[1].fill_(b), m.b1[0].fill_(b1r), m.b1[1].fill_(b1i)
        m.w2[0].fill_(c_), m.w2[1].fill_(d), m.b2[0].fill_(b2r), m.b2[1].fill_(b2i)
    c, h, w = 2.0, 4, 3
    xr = c * math.sqrt(h * w)                                    # DC of rfft2(norm="ortho"); imaginary part 0
    r1, i1 = max(xr * a + b1r, 0.0), max(xr * b + b1i, 0.0)     # (xr + 0i)(a + ib) + (b1r + i b1i), then ReLU
    r2, i2 = r1 * c_ - i1 * d + b2r, i1 * c_ + r1 * d + b2i
    shrink = lambda v: math.copysign(max(abs(v) - 0.01, 0.0), v)  # noqa: E731
    expected = c * (1.0 + shrink(r2))                           # imag part of the DC bin is dropped by irfft2
    assert r1 > 0 and i1 > 0 and abs(shrink(i2)) > 0
    y = m(torch.full((1, 8, h, w), c))
    torch.testing.assert_close(y, torch.full_like(y, expected), rtol=1e-5, atol=1e-5)


def test_aff_params_and_groups():
    for c in (32, 64, 136):
        assert n_params(create_block("aff", c)) == c * c // 2 + 4 * c == aff_params(c)
    assert n_params(create_block("aff(hidden_ratio=2)", 32)) == aff_params(32, hidden_ratio=2) == 4 * 32 * 8 + 6 * 32
    # block-diagonal mask generator: changing the channels of group 0 leaves the mask of the other groups unchanged
    torch.manual_seed(1)
    m = create_block("aff(init_scale=0.3)", 32)                 # 8 groups of 4 channels
    xf = torch.fft.rfft2(torch.randn(1, 32, 6, 5), norm="ortho")
    xf2 = xf.clone()
    xf2[:, :4] = torch.randn_like(xf2[:, :4])
    m1, m2 = m.mask(xf), m.mask(xf2)
    torch.testing.assert_close(m1[:, 4:], m2[:, 4:])
    assert (m1[:, :4] - m2[:, :4]).abs().max() > 1e-3
    with pytest.raises(IncompatibleBlockError, match="num_groups"):
        create_block("aff", 36)
    assert n_params(create_block("aff(num_groups=4)", 36)) == aff_params(36, 4)
    with pytest.raises(IncompatibleBlockError, match="at least 8"):
        create_block("aff", 4)
    # an incompatible width fails when the model is built, naming the position
    with pytest.raises(IncompatibleBlockError, match="stages.0.blocks.0.mixer"):
        MetaFormer((2, 2, 6, 2), (36, 72, 144, 288), mixer="aff", stem="small", img_size=32)


def test_aff_dtypes_and_backbones():
    m = create_block("aff", 32).eval()
    x = torch.randn(2, 32, 12, 10)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x.bfloat16())
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()
    torch.testing.assert_close(y.float(), m(x).detach(), rtol=0.05, atol=0.05)
    net = create_model("convnext_atto", mixer="aff", img_size=32, stem="small", num_classes=10)
    assert net(torch.randn(2, 3, 32, 30)).shape == (2, 10)


def test_aff_mac_convention():
    """FFT MACs follow blockzoo.profile.counting.FFT_CONVENTION; the mask generator costs C^2 * H * (W//2+1)."""
    c, h, w = 32, 12, 10
    r = count_macs(create_block("aff", c), (c, h, w))
    wf = w // 2 + 1
    assert r.macs_by_op["aten._fft_r2c"] == c * h * w * math.ceil(math.log2(h * w))
    assert r.macs_by_op["aten._fft_c2r"] == c * h * wf * math.ceil(math.log2(h * wf))
    assert r.macs_by_op["aten.bmm"] == c * c * h * wf
    # in a whole AFFNet-ET at 64 px every AFF mixer contributes its two FFTs (stages 3-5: 8x8, 4x4, 2x2 maps)
    net = AFFNet("xx_small", img_size=64).eval()
    r = count_macs(net, (3, 64, 64))
    def fft_macs(c: int, s: int) -> int:
        sf = s // 2 + 1
        return c * s * s * math.ceil(math.log2(s * s)) + c * s * sf * math.ceil(math.log2(s * sf))
    fft = sum(n * fft_macs(cc, s) for n, cc, s in ((2, 64, 8), (4, 104, 4), (3, 144, 2)))
    assert r.macs_by_op["aten._fft_r2c"] + r.macs_by_op["aten._fft_c2r"] == fft


def test_aff_traces_and_exports(tmp_path):
    """torch.fx traces the mixer (same numbers as eager); the ONNX graph (real-arithmetic DFTs, ONNX has no complex
    type) runs in onnxruntime with eager's numbers on a non-square map and a second batch size."""
    m = AFFMixer(16).eval()
    x = torch.randn(2, 16, 7, 6)
    assert torch.equal(torch.fx.symbolic_trace(m)(x), m(x))
    pytest.importorskip("onnxruntime")
    from blockzoo.deploy import export_model
    res = export_model(m, tmp_path / "aff.onnx", example=x)
    assert res["ok"], res
