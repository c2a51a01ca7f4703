"""ConvNorm (S096): Fourier-domain kernel preconditioning; channel-wise isometry and the layer's spectral norm."""
from __future__ import annotations

import pytest
import torch
import torch.fx
import torch.nn.functional as F

from blockzoo import create_block, create_model
from blockzoo.blocks.conv.convnorm import ConvNormUnit, kernel_preconditioner
from blockzoo.errors import ConfigError


def _matrix(fn, shape) -> torch.Tensor:
    """The matrix of a linear map ``fn`` on tensors of ``shape`` (1, C, H, W): one column per basis input."""
    n = int(torch.tensor(shape).prod())
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape[1:])
    return fn(basis).reshape(n, -1).T


def test_channelwise_isometry():
    torch.manual_seed(0)
    unit = ConvNormUnit(2, 3, norm="none", act="none", affine=False).double()
    m, k = 5, 3

    def circular_then_precondition(x):   # circular conv on the m x m grid, then the preconditioner
        y = F.conv2d(F.pad(x, [0, k - 1, 0, k - 1], mode="circular"), unit.weight)
        return unit.precondition(y)

    a = _matrix(circular_then_precondition, (1, 2, m, m))   # (3 m^2, 2 m^2)
    for i in range(3):
        rows = a[i * m * m:(i + 1) * m * m]
        assert torch.allclose(rows @ rows.T, torch.eye(m * m, dtype=torch.float64), atol=1e-6)
    # the same statement in the Fourier domain: sum_j |v_i F a_ij|^2 = 1 at every frequency
    v = kernel_preconditioner(unit.weight.detach(), (m, m), eps=0.0)
    spec = torch.fft.rfft2(unit.weight.detach(), s=(m, m))
    assert torch.allclose((spec.abs().square().sum(1) * v.square()), torch.ones(3, m, m // 2 + 1, dtype=torch.float64),
                          atol=1e-6)


def test_spectral_norm_bounded_and_scale_free():
    torch.manual_seed(0)
    unit = ConvNormUnit(3, 4, norm="none", act="none", affine=False).double()
    shape = (1, 3, 6, 6)
    conv = _matrix(lambda x: F.conv2d(x, unit.weight, padding=1), shape)
    pre = _matrix(unit, shape)
    s_conv, s_pre = torch.linalg.matrix_norm(conv, 2), torch.linalg.matrix_norm(pre, 2)
    assert s_pre <= 4 ** 0.5 + 1e-6   # each of the 4 output channels is a contraction (norm <= 1)
    for i in range(4):
        assert torch.linalg.matrix_norm(pre[i * 36:(i + 1) * 36], 2) <= 1 + 1e-6
    with torch.no_grad():
        unit.weight.mul_(10.0)
    conv10 = _matrix(lambda x: F.conv2d(x, unit.weight, padding=1), shape)
    assert torch.allclose(torch.linalg.matrix_norm(conv10, 2), 10 * s_conv)   # the plain conv's norm scales
    assert torch.allclose(torch.linalg.matrix_norm(_matrix(unit, shape), 2), s_pre, atol=1e-6)   # ConvNorm's not
    assert s_pre < torch.linalg.matrix_norm(conv10, 2)


def test_matches_explicit_circulant_preconditioning():
    torch.manual_seed(0)
    unit = ConvNormUnit(2, 3, stride=2, norm="none", act="none", affine=False).double()
    x = torch.randn(2, 2, 7, 6, dtype=torch.float64)
    full = F.conv2d(x, unit.weight, padding=2)   # (2, 3, 9, 8): the linear conv on the padded grid
    v = (torch.fft.fft2(unit.weight, s=(9, 8)).abs().square().sum(1) + unit.eps).rsqrt()   # two-sided FFT
    filtered = torch.fft.ifft2(torch.fft.fft2(full) * v).real
    want = filtered[..., 1:-1, 1:-1][..., ::2, ::2]
    assert torch.allclose(unit(x), want, atol=1e-5)
    assert unit(x).shape == (2, 3, 4, 3)


def test_unit_and_backbone():
    unit = create_block("convnorm", 8, out_channels=16, stride=2)
    assert isinstance(unit.affine, torch.nn.Conv2d) and unit.affine.groups == 16 and unit.affine.bias is not None
    assert isinstance(unit.norm, torch.nn.BatchNorm2d)
    x = torch.randn(2, 8, 9, 9, requires_grad=True)
    unit(x).sum().backward()
    assert unit.weight.grad is not None and x.grad is not None
    model = create_model("resnet20", conv="convnorm")
    assert sum(isinstance(m, ConvNormUnit) for m in model.modules()) == 9
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(torch.fx.symbolic_trace(model)(x), model(x), atol=1e-5)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(model(torch.randn(1, 3, 32, 32)).float()).all()


@pytest.mark.parametrize("kw", [{"kernel_size": 2}, {"groups": 3}, {"eps": 0.0}])
def test_bad_options(kw):
    with pytest.raises(ConfigError):
        create_block("convnorm", 8, out_channels=16, **kw)
