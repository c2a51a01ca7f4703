"""Global filtering in the 2-D Fourier domain, ``irfft2(rfft2(x) * M)`` (``norm="ortho"``), shared by the frequency
mixers (AFFNet's AFF, HorNet's global-local filter).

Eager, ``torch.fx`` and ``torch.export`` use ``torch.fft`` with complex tensors. While exporting to ONNX (which has
no complex type) the same computation runs in real arithmetic: the DFTs are products with cosine / sine matrices
built from the input's size (so the graph stays dynamic) and the complex product is written out,
``(a + ib)(c + id) = (ac - bd) + i(ad + bc)``. Both forms agree to float32 rounding
(tests/blocks/common/test_spectral.py).

:func:`autocast_off` is the float32 region these blocks compute the complex parts in.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch

__all__ = ["spectral_filter", "real_rfft2", "real_irfft2", "autocast_off"]

MaskFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def autocast_off(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Autocast disabled on ``x``'s device type; nothing while torch.fx traces ``x`` as a proxy (its device is not
    known then, and a context manager is not part of an fx graph)."""
    if isinstance(x, torch.fx.Proxy):
        return contextlib.nullcontext()
    return torch.autocast(device_type=x.device.type, enabled=False)


def _dft(rows: int, cols: int, period: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``sin`` of ``2 pi j k / period`` for ``j < rows``, ``k < cols``, in ``like``'s dtype and device."""
    j = torch.arange(rows, device=like.device, dtype=like.dtype)
    k = torch.arange(cols, device=like.device, dtype=like.dtype)
    angle = (2 * math.pi / period) * torch.remainder(j[:, None] * k[None, :], period)  # reduced: accurate angles
    return torch.cos(angle), torch.sin(angle)


def real_rfft2(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary parts of ``torch.fft.rfft2(x, norm="ortho")`` over the last two dims, in real arithmetic."""
    h, w = x.shape[-2], x.shape[-1]
    cw, sw = _dft(w, w // 2 + 1, w, x)
    ch, sh = _dft(h, h, h, x)                        # symmetric
    ar, ai = x @ cw, -(x @ sw)                       # rfft along W
    scale = (h * w) ** -0.5
    return (ch @ ar + sh @ ai) * scale, (ch @ ai - sh @ ar) * scale   # fft along H: (ch - i sh) @ (ar + i ai)


def real_irfft2(re: torch.Tensor, im: torch.Tensor, size: tuple) -> torch.Tensor:
    """``torch.fft.irfft2(torch.complex(re, im), s=size, norm="ortho")`` over the last two dims, in real arithmetic:
    ``re + i im`` is the half spectrum (width ``W//2+1``) of a real signal; as there, the imaginary parts of the
    frequencies 0 and W/2 drop out."""
    h, w = size
    ch, sh = _dft(h, h, h, re)
    br, bi = ch @ re - sh @ im, ch @ im + sh @ re    # inverse fft along H: (ch + i sh) @ (re + i im)
    cw, sw = _dft(w // 2 + 1, w, w, re)
    k = torch.arange(w // 2 + 1, device=re.device, dtype=re.dtype)[:, None]
    twins = 2 - ((k == 0) | (2 * k == w)).to(re.dtype)   # bins 1 .. ceil(W/2)-1 also stand for their twins W - k
    return (br @ (twins * cw) - bi @ (twins * sw)) * (h * w) ** -0.5


def spectral_filter(x: torch.Tensor, mask: MaskFn) -> torch.Tensor:
    """``irfft2(X * M, s=(H, W))`` with ``X = rfft2(x)`` (``norm="ortho"``, last two dims of a float tensor ``x``)
    and ``(M.real, M.imag) = mask(X.real, X.imag)``; in real arithmetic while exporting to ONNX."""
    h, w = x.shape[-2], x.shape[-1]
    if torch.onnx.is_in_onnx_export():
        xr, xi = real_rfft2(x)
        mr, mi = mask(xr, xi)
        return real_irfft2(xr * mr - xi * mi, xr * mi + xi * mr, (h, w))
    xf = torch.fft.rfft2(x, dim=(-2, -1), norm="ortho")
    return torch.fft.irfft2(xf * torch.complex(*mask(xf.real, xf.imag)), s=(h, w), dim=(-2, -1), norm="ortho")
