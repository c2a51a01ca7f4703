"""Loss-landscape probes: the slice at distance 0, filter normalisation, the Santurkar measures, the callback."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.analysis.landscape import (
    SmoothnessRecorder,
    filter_normalized_direction,
    loss_slice,
    plot_slice,
    probe_training,
    smoothness_probe,
)
from blockzoo.errors import ConfigError


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 1, 6, 6, generator=g), torch.randint(0, 3, (8,), generator=g)


def test_slice_at_distance_zero_is_the_checkpoint_loss(tmp_path):
    net, (x, y) = _net().eval(), _batch()
    with torch.no_grad():
        loss = float(F.cross_entropy(net(x), y))
    before = [p.detach().clone() for p in net.parameters()]
    res = loss_slice(net, x, y, [-1.0, -0.5, 0.0, 0.5, 1.0])
    assert res["loss"][2] == loss and res["center_loss"] == loss
    assert res["loss"][0] != loss
    res2 = loss_slice(net, x, y, [-0.5, 0.0, 0.5], [-0.5, 0.0, 0.5])
    assert res2["loss"][1][1] == loss and len(res2["loss"]) == 3 and len(res2["loss"][0]) == 3
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))   # weights restored
    assert plot_slice(res, tmp_path / "s1.png").exists() and plot_slice(res2, tmp_path / "s2.png").exists()


def test_directions_are_filter_normalised():
    net = _net()
    dirs = filter_normalized_direction(net, torch.Generator().manual_seed(3))
    for p, d in zip(net.parameters(), dirs):
        assert d.shape == p.shape
        if p.ndim == 1:
            assert not d.any()            # biases and BN parameters are not perturbed
        else:
            torch.testing.assert_close(d.flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1))
    dirs1 = filter_normalized_direction(net, torch.Generator().manual_seed(3), perturb_1d=True)
    bias = list(net.parameters())[1]
    torch.testing.assert_close(dirs1[1].norm(), bias.detach().norm())


def test_smoothness_probe_on_a_quadratic():
    """L(w) = 0.5 * c * ||w||^2 (MSE of a bias-free linear map on a unit input): g = c w, so the gradient change
    after a step eta along g is c * eta * ||g||, i.e. beta-smoothness exactly c."""
    lin = nn.Linear(1, 2, bias=False)
    lin.weight.data = torch.tensor([[1.0], [-2.0]])
    x, y = torch.ones(1, 1), torch.zeros(1, 2)

    def loss_fn(out, target):
        return 0.5 * 3.0 * ((out - target) ** 2).sum()

    res = smoothness_probe(lin, x, y, [0.01, 0.1], loss_fn=loss_fn)
    assert res["loss"] == pytest.approx(7.5)                 # 1.5 * (1 + 4)
    assert res["grad_norm"] == pytest.approx(3 * 5 ** 0.5)
    assert res["beta_smoothness"] == pytest.approx(3.0)
    assert res["grad_changes"] == pytest.approx([3 * 0.01 * 3 * 5 ** 0.5, 3 * 0.1 * 3 * 5 ** 0.5])
    # w - eta g = (1 - 3 eta) w: loss 7.5 (1 - 3 eta)^2
    assert res["losses"] == pytest.approx([7.5 * 0.97 ** 2, 7.5 * 0.7 ** 2])
    assert res["loss_range"] == pytest.approx(7.5 - 7.5 * 0.49)
    torch.testing.assert_close(lin.weight.data, torch.tensor([[1.0], [-2.0]]))   # restored
    with pytest.raises(ConfigError):
        smoothness_probe(lin, x, y, [0.0], loss_fn=loss_fn)


def test_recorder_and_training_loop_restore_buffers():
    net, (x, y) = _net().train(), _batch()
    rec = SmoothnessRecorder(net, x, y, [0.05, 0.1])
    stats = net[1].running_mean.clone()
    rec({"epoch": 1, "step": 4})
    assert rec.records[0]["epoch"] == 1 and rec.records[0]["step"] == 4
    torch.testing.assert_close(net[1].running_mean, stats)      # the probe's forwards leave BN's statistics alone
    probes = probe_training(net, [(x, y)] * 3, lr=0.05, epochs=2, probe_every=4)
    assert [p["step"] for p in probes] == [0, 4]
    assert all(p["beta_smoothness"] > 0 for p in probes)
