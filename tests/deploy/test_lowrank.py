"""LRPET (S094): the projection keeps rank r and the energy; the factored layer equals the projected one."""
import pytest
import torch
import torch.nn as nn

from blockzoo.deploy import factorize, factorize_model, layer_ranks, lowrank_project
from blockzoo.deploy.lowrank import LowRankProjector, project_matrix
from blockzoo.errors import ConfigError
from blockzoo.registry import create_model


def test_projection_hand_computed():
    w = torch.diag(torch.tensor([3.0, 4.0, 0.0], dtype=torch.float64))
    p = project_matrix(w, 1)
    # keep 4, transfer the energy 9 of the dropped 3: 4 * sqrt(25 / 16) = 5
    torch.testing.assert_close(p, torch.diag(torch.tensor([0.0, 5.0, 0.0], dtype=torch.float64)))
    half = project_matrix(w, 1, redu=0.5)   # official redu_fac: dropped 3 -> 1.5, kept 4 -> sqrt(25 - 2.25)
    torch.testing.assert_close(torch.linalg.svdvals(half)[:2],
                               torch.tensor([22.75 ** 0.5, 1.5], dtype=torch.float64))


def test_projection_keeps_rank_and_energy():
    w = torch.randn(12, 30, dtype=torch.float64)
    p = project_matrix(w, 4)
    assert torch.linalg.matrix_rank(p).item() == 4
    torch.testing.assert_close(torch.linalg.norm(p), torch.linalg.norm(w))
    u, s, vh = torch.linalg.svd(w, full_matrices=False)     # same singular vectors, kept values scaled uniformly
    ratio = torch.linalg.svdvals(p)[:4] / s[:4]
    torch.testing.assert_close(ratio, ratio[0].expand(4))


def test_bn_rectified_projection_is_low_rank_after_folding():
    conv, bn = nn.Conv2d(8, 6, 3, bias=False).double(), nn.BatchNorm2d(6).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0), bn.running_var.uniform_(0.5, 2.0)
    model = nn.Sequential(conv, bn)
    lowrank_project(model, {"0": 2})
    folded = conv.weight.reshape(6, -1) * (bn.weight / (bn.running_var + bn.eps).sqrt())[:, None]
    assert torch.linalg.matrix_rank(folded, rtol=1e-7).item() == 2


@pytest.mark.parametrize("layer", [nn.Conv2d(6, 10, 3, stride=2, padding=1), nn.Linear(20, 16)])
def test_factorized_layer_equals_projected(layer):
    layer = layer.double()
    with torch.no_grad():
        layer.weight.copy_(project_matrix(layer.weight.reshape(layer.weight.shape[0], -1), 3)
                           .reshape_as(layer.weight))
    two = factorize(layer, 3)
    x = torch.randn(2, 6, 9, 9, dtype=torch.float64) if isinstance(layer, nn.Conv2d) else torch.randn(
        4, 20, dtype=torch.float64)
    torch.testing.assert_close(two(x), layer(x))
    assert two[0].weight.shape[0] == 3 and sum(p.numel() for p in two.parameters()) < sum(
        p.numel() for p in layer.parameters())


def test_lowrank_resnet20_end_to_end():
    model = create_model("resnet20", num_classes=10).double().eval()
    ranks = {k: v for k, v in layer_ranks(model, 0.25).items() if k.startswith("layers")}
    lowrank_project(model, ranks, bn_rectify=False)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    ref = model(x)
    n0 = sum(p.numel() for p in model.parameters())
    factorize_model(model, ranks)
    assert sum(p.numel() for p in model.parameters()) < n0
    torch.testing.assert_close(model(x), ref)


def test_bad_options():
    with pytest.raises(ConfigError, match="ratio"):
        layer_ranks(nn.Linear(2, 2), 1.5)
    with pytest.raises(ConfigError, match="grouped"):
        factorize(nn.Conv2d(4, 4, 3, groups=4), 1)
    with pytest.raises(ConfigError, match="redu"):
        project_matrix(torch.eye(3), 1, redu=1.0)


def test_projector_callback_alternates_sgd_and_projection():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    proj = LowRankProjector(net, ranks={"0": 2}, every=2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
    done = []
    for step in range(1, 5):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        done.append(proj(step))
        rank = torch.linalg.matrix_rank(net[0].weight.detach(), rtol=1e-5).item()
        assert (rank == 2) == done[-1]             # low rank right after a projection, full again after SGD
    assert done == [False, True, False, True]
