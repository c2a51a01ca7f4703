"""blockzoo.models.speednet: SpeedNet (after airbench, arXiv:2404.00498): parameter counts, init, patch whitening."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import create_model
from blockzoo.models.speednet import init_whitening, patch_second_moment
from helpers import nparams

pytestmark = pytest.mark.usefixtures("one_thread")  # every test here runs on one intra-op thread


def test_speednet_registered_param_count():
    m = create_model("speednet")
    # whiten 8x1x2x2 + 8; convs 9 * (8*64 + 64*64 + 64*128 + 128*128 + 128*256 + 256*256); BN 2 x (64+64+128+128+
    # 256+256); fc 256 x 10 (no bias)
    assert nparams(m) == 1_151_784
    trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
    assert trainable == 1_151_784 - 32 - (64 + 64 + 128 + 128 + 256 + 256)  # frozen whitening weight and BN scales
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert m.whiten.out_channels == 8 and m.fc.bias is None


def test_airbench94_param_count():
    m = create_model("speednet_airbench94")
    assert nparams(m) == 312 + 9 * (24 * 64 + 64 * 64 + 64 * 256 + 3 * 256 * 256) + 4 * (64 + 256 + 256) + 2560
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_speednet_dirac_init_and_logit_scale():
    m = create_model("speednet", widths=(16, 16, 32)).eval()
    w = m.groups[1].conv1.weight  # 16 -> 16: the first 16 filters are identity kernels
    assert torch.equal(w[:, :, 1, 1], torch.eye(16)) and w[:, :, 0].abs().sum() == 0
    f = torch.randn(3, 32, 3, 3)
    assert torch.allclose(m.forward_head(f), m.fc(f.amax((2, 3))) / 9)


def test_whitening_init_whitens():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 12, 12, generator=g)
    x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)  # spatially correlated -> non-white patches
    x[:, 1] += 0.5 * x[:, 0]
    conv = nn.Conv2d(3, 24, 2, bias=False)
    evals = init_whitening(conv, x, eps=1e-6)
    assert evals.shape == (12,) and bool((evals[:-1] >= evals[1:]).all())  # descending
    with torch.no_grad():
        y = conv(x.double().float())
    feats = y.permute(0, 2, 3, 1).reshape(-1, 24).double()
    m2 = feats.T @ feats / feats.shape[0]
    half = m2[:12, :12]
    assert torch.allclose(half, torch.eye(12, dtype=torch.float64), atol=2e-3)
    assert torch.allclose(m2[12:, 12:], half) and torch.allclose(m2[:12, 12:], -half)
    # the raw patches are far from white (so the test would fail without the init)
    raw = patch_second_moment(x, 2)
    assert (raw - torch.eye(12, dtype=torch.float64)).abs().max() > 0.3


def test_patch_second_moment_by_hand():
    x = torch.arange(9.0).view(1, 1, 3, 3)  # 2x2 patches: [0,1,3,4], [1,2,4,5], [3,4,6,7], [4,5,7,8]
    p = torch.tensor([[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]], dtype=torch.float64)
    assert torch.allclose(patch_second_moment(x, 2), p.T @ p / 4)


def test_init_whitening_rejects_wrong_width():
    with pytest.raises(ValueError, match="8 output channels"):
        init_whitening(nn.Conv2d(1, 6, 2), torch.randn(4, 1, 8, 8))
