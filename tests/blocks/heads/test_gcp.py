"""blockzoo.blocks.heads.gcp: the global covariance pooling head (S002, iSQRT-COV)."""
from __future__ import annotations

import math

import pytest
import torch

from blockzoo import create_block, create_model
from blockzoo.blocks.heads.gcp import GCPHead, covariance_pool, isqrt_cov, newton_schulz_sqrtm, triu_vec


def test_gcp_output_size_and_triu_order():
    h = create_block("gcp", 64)
    assert h.out_features == 256 * 257 // 2 == 32_896
    assert h(torch.randn(2, 64, 5, 4)).shape == (2, 32_896)
    m = torch.arange(9.0).view(1, 3, 3)
    assert triu_vec(m).tolist() == [[0.0, 1.0, 2.0, 4.0, 5.0, 8.0]]     # row-major: (0,0),(0,1),(0,2),(1,1),(1,2),(2,2)
    assert create_block("gcp", 10, reduce_dim=None).out_features == 55


def test_gcp_covariance_hand_computed():
    x = torch.tensor([[1.0, 2.0, 3.0], [2.0, 4.0, 9.0]]).view(1, 2, 1, 3)
    # centred: [-1, 0, 1], [-3, -1, 4]; divided by M = 3
    expected = torch.tensor([[2 / 3, 7 / 3], [7 / 3, 26 / 3]])
    torch.testing.assert_close(covariance_pool(x)[0], expected)


def test_gcp_newton_schulz_iteration_count_and_compensation():
    """Diagonal Sigma = diag(1, 3): tr = 4, A = diag(1/4, 3/4); the coupled iteration acts on each eigenvalue."""
    cov = torch.diag(torch.tensor([1.0, 3.0], dtype=torch.float64))[None]
    expected = []
    for lam in (0.25, 0.75):
        y, z = lam, 1.0
        for _ in range(5):
            t = (3 - z * y) / 2
            y, z = y * t, t * z
        expected.append(y * 2.0)       # post-compensation by sqrt(tr) = 2
    torch.testing.assert_close(isqrt_cov(cov, 5)[0].diagonal(), torch.tensor(expected, dtype=torch.float64))
    exact = torch.diag(torch.tensor([1.0, math.sqrt(3)], dtype=torch.float64))
    torch.testing.assert_close(isqrt_cov(cov, 30)[0], exact)


def test_gcp_sqrt_matches_eigh():
    """Well-conditioned case (4 channels, 400 positions; eigenvalues of A in [0.20, 0.30]): relative Frobenius error of
    the 5-iteration result < 1e-4 (measured 6.4e-6), and < 1e-12 after 10 iterations."""
    x = torch.randn(3, 4, 20, 20, dtype=torch.float64)
    cov = covariance_pool(x)
    ev, v = torch.linalg.eigh(cov)
    ref = v @ torch.diag_embed(ev.sqrt()) @ v.transpose(1, 2)

    def rel(y):
        return ((y - ref).norm(dim=(1, 2)) / ref.norm(dim=(1, 2))).max().item()

    assert rel(isqrt_cov(cov, 5)) < 1e-4
    assert rel(isqrt_cov(cov, 10)) < 1e-12
    assert rel(isqrt_cov(cov, 2)) > 1e-2      # and the iteration count matters
    head = GCPHead(4, reduce_dim=None, iterations=10).double()
    torch.testing.assert_close(head(x), triu_vec(ref), rtol=1e-10, atol=1e-12)
    # sqrt of the sqrt-normalised output squared gives back the covariance
    y = isqrt_cov(cov, 10)
    torch.testing.assert_close(y @ y, cov)


def test_gcp_gradcheck():
    x = torch.randn(2, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    for it in (1, 5):
        assert torch.autograd.gradcheck(lambda t, it=it: triu_vec(isqrt_cov(covariance_pool(t), it)), (x,))
    head = GCPHead(4, reduce_dim=3, iterations=5).double().eval()
    with torch.no_grad():
        head.reduce[1].running_mean.uniform_(-0.2, 0.2)
    xin = torch.randn(2, 4, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(head, (xin,))
    assert torch.autograd.gradcheck(lambda a: newton_schulz_sqrtm(a @ a.transpose(1, 2) / 10 + 0.1 * torch.eye(3), 3),
                                    (torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True),))


def test_gcp_bf16_autocast_and_dtype():
    h = create_block("gcp", 16, reduce_dim=12).eval()
    x = torch.randn(2, 16, 6, 5)
    with torch.no_grad():
        ref = h(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yb = h(x)
        yh = h.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert yb.dtype == torch.bfloat16 and yh.dtype == torch.bfloat16
    assert torch.isfinite(yb.float()).all() and torch.isfinite(yh.float()).all()
    assert (yb.float() - ref).norm() / ref.norm() < 0.05


def test_gcp_in_resnet20():
    m = create_model("resnet20", head="gcp")
    assert m.fc.in_features == 32_896 and m.head_hidden_size == 32_896
    x = torch.randn(2, 3, 32, 32)
    y = m(x)
    assert y.shape == (2, 10)
    y.sum().backward()
    assert m.head.reduce[0].weight.grad is not None and m.stem[0].weight.grad.abs().sum() > 0
    m.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(m(x).float()).all()


def test_gcp_degenerate_inputs():
    h = create_block("gcp", 8, reduce_dim=None)
    with pytest.raises(ValueError, match="2 spatial positions"):
        h(torch.randn(2, 8, 1, 1))
    y = h(torch.zeros(2, 8, 3, 3))          # dead features: zero covariance -> zero output, not NaN
    assert torch.equal(y, torch.zeros_like(y))
    with pytest.raises(ValueError, match="iterations"):
        create_block("gcp", 8, iterations=0)
