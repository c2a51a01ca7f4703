"""Selective Kernel unit / SKNets (S097) and the global covariance pooling head (S002, iSQRT-COV)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from blockzoo import create_block, create_model, list_blocks
from blockzoo.blocks.conv.sk import SelectiveKernel, sk_hidden_dim
from blockzoo.blocks.heads.gcp import GCPHead, covariance_pool, isqrt_cov, newton_schulz_sqrtm, triu_vec
from blockzoo.models.sknet import SKNET50_PARAMS, SKNET101_PARAMS, SKRESNET20_PARAMS


def nparams(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_registered():
    assert "sk" in list_blocks(slot="conv")
    assert "gcp" in list_blocks(slot="head")


# --------------------------------------------------------------------------------------------------------------- SK
def _sk_params(cin: int, cout: int, groups: int, d: int, m: int) -> int:
    branch = cout * (cin // groups) * 9 + 2 * cout          # grouped 3x3 conv (no bias) + BN
    return m * branch + cout * d + 2 * d + d * m * cout       # + fuse FC (no bias) + BN + M select FCs (no bias)


@pytest.mark.parametrize("cin,cout,groups,r,L,m,d", [
    (8, 16, 2, 4, 3, 2, 4),       # C/r = 4 wins over L = 3
    (32, 32, 1, 16, 8, 2, 8),     # L = 8 wins over C/r = 2
    (12, 24, 3, 2, 5, 3, 12),     # three branches
    (64, 128, 32, 16, 32, 2, 32),  # SKNet-50 stage-1 unit: d = max(8, 32) = 32
])
def test_sk_param_count_formula(cin, cout, groups, r, L, m, d):
    assert sk_hidden_dim(cout, r, L) == d
    u = create_block("sk", cin, out_channels=cout, groups=groups, reduction=r, min_dim=L, branches=m)
    assert u.hidden == d
    assert nparams(u) == _sk_params(cin, cout, groups, d, m)
    for i, b in enumerate(u.branches):  # branch i: 3x3, dilation = padding = i + 1, grouped
        assert b.conv.kernel_size == (3, 3) and b.conv.dilation == (i + 1, i + 1) and b.conv.padding == (i + 1, i + 1)
        assert b.conv.groups == groups and b.conv.bias is None


def test_sk_softmax_across_branches():
    u = create_block("sk", 8, out_channels=16, branches=3, min_dim=4).eval()
    nn.init.normal_(u.fc_select.weight, std=2.0)      # make the attention clearly non-uniform
    with torch.no_grad():
        u.fc_norm.running_mean.uniform_(-0.5, 0.5)
    seen = []
    u.softmax.register_forward_hook(lambda mod, inp, out: seen.append(out))
    x = torch.randn(2, 8, 7, 6)
    with torch.no_grad():
        u(x)
    a = seen[0]
    assert a.shape == (2, 3, 16, 1, 1)
    torch.testing.assert_close(a.sum(1), torch.ones(2, 16, 1, 1))     # sums to 1 over the branches ...
    assert not torch.allclose(a.sum(2), torch.ones_like(a.sum(2)))    # ... not over the channels
    # the same attention from plain ops: GAP of the summed branches -> FC -> BN -> ReLU -> FC -> softmax over M
    with torch.no_grad():
        s = sum(b(x) for b in u.branches).mean((2, 3))                                   # (N, C)
        bn = u.fc_norm
        z = torch.relu((s @ u.fc_reduce.weight[:, :, 0, 0].T - bn.running_mean) /
                       torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias)      # (N, d)
        logits = (z @ u.fc_select.weight[:, :, 0, 0].T).view(2, 3, 16)
        torch.testing.assert_close(a[..., 0, 0], torch.softmax(logits, dim=1))


def _force_logits(u: SelectiveKernel, per_branch: list[float]) -> None:
    """Make z == 1 (fuse BN outputs its bias 1 -> ReLU) and the select FC give logit ``per_branch[i]`` to branch i."""
    with torch.no_grad():
        u.fc_norm.weight.zero_()
        u.fc_norm.bias.fill_(1.0)
        w = u.fc_select.weight.view(u.num_branches, u.out_channels, u.hidden)
        for i, logit in enumerate(per_branch):
            w[i].fill_(logit / u.hidden)


def test_sk_selects_branch():
    u = create_block("sk", 6, out_channels=10, min_dim=4).eval()
    x = torch.randn(2, 6, 9, 8)
    with torch.no_grad():
        b0, b1 = u.branches[0](x), u.branches[1](x)
        assert not torch.allclose(b0, b1)
        _force_logits(u, [100.0, 0.0])      # a_0 = 1 / (1 + e^-100) == 1 in float32
        torch.testing.assert_close(u(x), b0, rtol=0, atol=1e-6)
        _force_logits(u, [0.0, 100.0])
        torch.testing.assert_close(u(x), b1, rtol=0, atol=1e-6)
        _force_logits(u, [1.0, 0.0])        # a_0 = e / (1 + e), a_1 = 1 / (1 + e)
        a0 = math.e / (1 + math.e)
        torch.testing.assert_close(u(x), a0 * b0 + (1 - a0) * b1)


def test_sk_dilated_branch_receptive_field():
    """Branch 0 sees a 3x3 neighbourhood, branch 1 (dilation 2) the 3x3 grid of offsets {-2, 0, 2}^2 (5x5 field)."""
    u = create_block("sk", 1, out_channels=1, min_dim=2, act="none").eval()
    for b in u.branches:
        nn.init.ones_(b.conv.weight)
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    with torch.no_grad():
        r0 = u.branches[0](x)[0, 0] != 0
        r1 = u.branches[1](x)[0, 0] != 0
    e0 = torch.zeros(9, 9, dtype=torch.bool)
    e0[3:6, 3:6] = True
    e1 = torch.zeros(9, 9, dtype=torch.bool)
    e1[2:7:2, 2:7:2] = True
    assert torch.equal(r0, e0) and torch.equal(r1, e1)


def test_sk_stride2_and_groups():
    u = create_block("sk", 16, out_channels=32, stride=2, groups=4)
    x = torch.randn(2, 16, 9, 7)
    y = u(x)
    assert y.shape == (2, 32, 5, 4)
    assert all(b.conv.stride == (2, 2) and b(x).shape == y.shape for b in u.branches)  # stride in every branch
    y.sum().backward()
    assert all(p.grad is not None for p in u.parameters())


def test_sk_batch1_training_message_and_bn_free_variant():
    u = create_block("sk", 8, out_channels=8)
    with pytest.raises(ValueError, match="batch size"):
        u(torch.randn(1, 8, 5, 5))
    u.eval()
    assert u(torch.randn(1, 8, 5, 5)).shape == (1, 8, 5, 5)
    v = create_block("sk", 8, out_channels=8, fc_norm="none")
    assert isinstance(v.fc_norm, nn.Identity) and v.fc_reduce.bias is not None
    assert v(torch.randn(1, 8, 5, 5)).shape == (1, 8, 5, 5)


def test_sk_official_fc_init_survives_backbone_init():
    m = create_model("skresnet20")
    for mod in m.modules():
        if isinstance(mod, SelectiveKernel):
            assert mod.fc_reduce.weight.std() < 0.02 and mod.fc_select.weight.std() < 0.02   # Gaussian, std 0.01
            assert mod.branches[0].conv.weight.std() > 0.05                                     # Kaiming elsewhere


def test_sknet50_params():
    with torch.device("meta"):
        m = create_model("sknet50")
    assert nparams(m) == SKNET50_PARAMS == 27_479_784
    assert abs(SKNET50_PARAMS / 27.5e6 - 1) < 0.01
    # ResNeXt-50 32x4d body: SK widths 128/256/512/1024, G = 32, d = max(C/16, 32), stride in the first SK of stages 2-4
    units = [mod for mod in m.modules() if isinstance(mod, SelectiveKernel)]
    assert len(units) == 16
    firsts = [units[0], units[3], units[7], units[13]]
    assert [u.out_channels for u in firsts] == [128, 256, 512, 1024]
    assert [u.hidden for u in firsts] == [32, 32, 32, 64]
    assert [u.branches[1].conv.stride[0] for u in firsts] == [1, 2, 2, 2]
    assert all(u.branches[0].conv.groups == 32 for u in units)
    # = ResNeXt-50 32x4d + the SK additions
    with torch.device("meta"):
        rx = create_model("sknet50", conv="conv3x3")
    assert nparams(rx) == 25_028_904


def test_sknet101_params():
    with torch.device("meta"):
        m = create_model("sknet101")
    assert nparams(m) == SKNET101_PARAMS
    assert abs(SKNET101_PARAMS / 48.9e6 - 1) < 0.01


@pytest.mark.slow
def test_sknet50_macs():
    from blockzoo.profile.counting import count_macs
    with torch.device("meta"):
        m = create_model("sknet50")
        macs = count_macs(m, (3, 224, 224)).macs
    assert macs == 4_462_710_784
    assert abs(macs / 4.47e9 - 1) < 0.03


def test_skresnet20():
    m = create_model("skresnet20")
    extra = 0   # SK additions over resnet20: second branch conv + BN, fuse FC + BN, select FCs (d = 32)
    for cin, cout in [(16, 16)] * 3 + [(16, 32), (32, 32), (32, 32), (32, 64), (64, 64), (64, 64)]:
        extra += cout * cin * 9 + 2 * cout + cout * 32 + 2 * 32 + 32 * 2 * cout
    assert nparams(m) == SKRESNET20_PARAMS == nparams(create_model("resnet20")) + extra
    small = create_model("skresnet20", in_chans=1, num_classes=7, img_size=28)
    assert small(torch.randn(2, 1, 28, 28)).shape == (2, 7)


# -------------------------------------------------------------------------------------------------------------- GCP
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
