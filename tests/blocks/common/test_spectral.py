"""blockzoo.blocks.common.spectral: the real-arithmetic 2-D DFTs equal torch.fft; spectral_filter in both forms."""
from __future__ import annotations

from unittest import mock

import pytest
import torch

from blockzoo.blocks.common.spectral import autocast_off, real_irfft2, real_rfft2, spectral_filter

SIZES = [(1, 1), (2, 3), (7, 5), (6, 9), (8, 8)]   # odd, even, non-square, degenerate


@pytest.mark.parametrize("h,w", SIZES)
def test_real_rfft2_equals_torch_fft(h, w):
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    xf = torch.fft.rfft2(x, norm="ortho")
    re, im = real_rfft2(x)
    torch.testing.assert_close(re, xf.real, rtol=0, atol=1e-12)
    torch.testing.assert_close(im, xf.imag, rtol=0, atol=1e-12)


@pytest.mark.parametrize("h,w", SIZES)
def test_real_irfft2_equals_torch_fft_for_any_half_spectrum(h, w):
    """Also for spectra that no real signal has (imaginary parts at frequency 0 and W/2): they drop out as in
    torch.fft.irfft2."""
    spec = torch.randn(2, 3, h, w // 2 + 1, dtype=torch.complex128)
    ref = torch.fft.irfft2(spec, s=(h, w), norm="ortho")
    torch.testing.assert_close(real_irfft2(spec.real, spec.imag, (h, w)), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("h,w", [(7, 5), (8, 8)])
def test_spectral_filter_real_form_equals_complex_form(h, w):
    x = torch.randn(2, 4, h, w)
    mr, mi = torch.randn(4, h, w // 2 + 1), torch.randn(4, h, w // 2 + 1)

    def mask(re, im):
        assert re.shape == im.shape == (2, 4, h, w // 2 + 1)
        return mr * re.tanh(), mi

    xf = torch.fft.rfft2(x, norm="ortho")
    ref = torch.fft.irfft2(xf * torch.complex(mr * xf.real.tanh(), mi), s=(h, w), norm="ortho")
    torch.testing.assert_close(spectral_filter(x, mask), ref)
    with mock.patch("torch.onnx.is_in_onnx_export", return_value=True):
        torch.testing.assert_close(spectral_filter(x, mask), ref, rtol=1e-5, atol=1e-5)


def test_autocast_off():
    x = torch.randn(2, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (x @ x.T).dtype == torch.bfloat16
        with autocast_off(x):
            assert (x @ x.T).dtype == torch.float32
    proxy = torch.fx.Proxy(torch.fx.Graph().placeholder("x"))
    with autocast_off(proxy):   # no device to read while tracing: a no-op context
        pass
