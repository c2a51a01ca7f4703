"""Taylor pruning (S104) with physical removal: zero-importance removal is exact, tied channels go together,
the pruned models run, the channel plan rebuilds them."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.deploy import apply_plan, channel_groups, prune, taylor_importance
from blockzoo.deploy.prune import ChannelPad, gradient_redundancy, remove_groups
from blockzoo.errors import ConfigError, IncompatibleBlockError
from blockzoo.registry import create_model
from helpers import n_params


def _data(in_chans=3, n=4, seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, in_chans, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def _group_of(cg, module, channel, side="outs"):
    root = cg.find(getattr(cg.uses[module], side)[channel])
    return next(k for k, g in enumerate(cg.groups) if cg.find(g[0]) == root)


def test_zero_importance_filter_removed_exactly():
    model = create_model("resnet20", num_classes=10).double().eval()
    x, y = _data()
    x = x.double()
    bn = model.layers[1][0].conv1.norm                      # the first BN of a basic block: its own group
    with torch.no_grad():
        bn.weight[3] = 0.0
        bn.bias[3] = 0.0
    ref = model(x)
    cg, scores = taylor_importance(model, [(x, y)])
    k = _group_of(cg, "layers.1.0.conv1.conv", 3)
    assert scores[k] == 0.0 and (scores > 0).sum() > len(scores) // 2
    n0 = n_params(model)
    plan = remove_groups(cg, [k])
    conv = model.layers[1][0].conv1.conv
    assert conv.out_channels == 31 and model.layers[1][0].conv2.in_channels == 31
    assert n_params(model) == n0 - (16 * 9 + 2 + 32 * 9)    # conv1 filter, BN gamma/beta, conv2 input slice
    assert plan["layers.1.0.conv1.conv"] == {"kind": "conv", "in": 16, "out": 31}
    torch.testing.assert_close(model(x), ref, rtol=0, atol=1e-12)


def test_importance_hand_computed_on_tiny_net():
    net = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(1),
                        nn.Linear(2 * 4, 1))
    x, y = torch.randn(3, 1, 2, 2), torch.randn(3, 1)
    cg, scores = taylor_importance(net, [(x, y)], loss_fn=F.mse_loss)
    assert len(cg.groups) == 0          # Flatten mixes channels and space: nothing is prunable
    net = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(1), nn.Linear(2, 1))
    cg, scores = taylor_importance(net, [(x, y)], loss_fn=F.mse_loss)
    net.zero_grad()
    F.mse_loss(net(x), y).backward()
    bn = net[1]
    expect = (bn.weight * bn.weight.grad + bn.bias * bn.bias.grad).detach().double().square()
    torch.testing.assert_close(scores, expect)
    _, w_scores = taylor_importance(net, [(x, y)], loss_fn=F.mse_loss, criterion="weight")
    net.zero_grad()
    F.mse_loss(net(x), y).backward()
    conv = net[0]
    torch.testing.assert_close(w_scores, (conv.weight * conv.weight.grad).sum((1, 2, 3)).detach().double().square())


def test_residual_tied_channels_pruned_together():
    model = create_model("resnet20", num_classes=10).eval()
    cg = channel_groups(model, _data()[0][:1])
    # stage-1 stream channel 5: the stem conv, every block's conv2 of stage 1 and (option-A padding: 16 zero
    # channels on each side) channel 5 + 8 of stage 2's stream
    k = _group_of(cg, "stem.0", 5)
    assert k == _group_of(cg, "layers.0.2.conv2", 5) == _group_of(cg, "layers.1.0.conv2", 5 + 8)
    remove_groups(cg, [k])
    assert model.stem[0].out_channels == 15 and model.layers[0][2].conv2.out_channels == 15
    assert model.layers[1][0].conv2.out_channels == 31 and model.layers[2][0].conv2.out_channels == 63
    pad = model.layers[1][0].shortcut
    assert isinstance(pad, ChannelPad) and (pad.lo, pad.hi) == (8, 8)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_depthwise_tied_to_its_input():
    model = create_model("mobilenetv2_050_small", num_classes=10).eval()
    cg = channel_groups(model, _data()[0][:1])
    dw = next(n for n, u in cg.uses.items() if u.kind == "dw")
    u = cg.uses[dw]
    assert [cg.find(c) for c in u.ins] == [cg.find(c) for c in u.outs]


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2_050_small", "convnext_atto_small"])
def test_prune_end_to_end_and_rebuild(name):
    model = create_model(name, num_classes=10)
    data = [_data(model.in_chans, n=2, seed=s, size=16) for s in range(2)]
    n0 = n_params(model)
    res = prune(model, data, target_macs=0.9, batches_per_step=2, per_step=len(channel_groups(
        model, data[0][0][:1]).groups) // 8)
    assert res.history[-1]["macs"] <= 0.9 * res.history[0]["macs"] and n_params(model) < n0
    model.eval()
    x = data[0][0]
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    fresh = apply_plan(create_model(name, num_classes=10), res.plan)
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh.eval()(x), out)
    torch.fx.symbolic_trace(model)            # still traceable (export convention)


def test_bad_options():
    model = create_model("resnet20", num_classes=10)
    data = [_data()]
    with pytest.raises(ConfigError, match="target_macs"):
        prune(model, data, target_macs=1.5)
    with pytest.raises(ConfigError, match="method"):
        prune(model, data, method="l1")
    with pytest.raises(ConfigError, match="criterion"):
        prune(model, data, criterion="bn_scale")
    with pytest.raises(ConfigError, match="no batches"):
        prune(model, [])
    with pytest.raises(ConfigError, match="does not have"):
        apply_plan(model, {"nope.conv": {"kind": "conv", "in": 1, "out": 1}})


def test_gradient_redundancy_of_a_rank_one_gradient():
    net = nn.Sequential(nn.Conv2d(1, 4, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(1), nn.Linear(4, 1))
    x, y = torch.randn(3, 1, 2, 2), torch.randn(3, 1)
    cg = channel_groups(net, x[:1])
    red = gradient_redundancy(net, [(x, y)], cg, loss_fn=F.mse_loss)
    assert red == {"0": pytest.approx(0.75)}      # a 4 x 1 gradient matrix has one singular value
    with pytest.raises(ConfigError, match="energy"):
        gradient_redundancy(net, [(x, y)], cg, energy=1.5)


@pytest.mark.slow
def test_svd_method_respects_the_layer_caps():
    model = create_model("resnet20", num_classes=10)
    data = [_data(n=2, seed=s, size=16) for s in range(2)]
    widths = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    res = prune(model, data, method="svd", target_macs=0.5, batches_per_step=2, per_step=100, lr=0.0,
                max_rounds=1)
    assert len(res.history) == 2 and res.history[1]["removed"] > 0
    red = res.history[0]["redundancy"]
    assert red and all(0.0 <= r < 1.0 for r in red.values())
    for name, r in red.items():
        assert widths[name] - model.get_submodule(name).out_channels <= int(r * widths[name])


class _Gate(nn.Module):
    """x * sigmoid(1-channel map): the broadcast operand comes first."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.map = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 1, 1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.bn(self.conv(x))
        x = torch.sigmoid(self.map(x)) * x
        return self.fc(x.mean((2, 3)))


def test_broadcast_operand_does_not_decide_the_channels():
    net = _Gate().eval()
    x = torch.randn(2, 1, 6, 6)
    cg = channel_groups(net, x[:1])
    assert len(cg.groups) == 4 and len(cg.uses["conv"].outs) == 4     # the conv's 4 channels; the map is frozen
    ref_shape = net(x).shape
    remove_groups(cg, [0])
    assert net.conv.out_channels == 3 and net.map.in_channels == 3 and net.fc.in_features == 3
    assert net(x).shape == ref_shape


def test_model_without_prunable_channels_is_refused():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(1), nn.Linear(2 * 4 * 4, 3))
    with pytest.raises(IncompatibleBlockError, match="no prunable channel groups"):
        prune(net, [(torch.randn(2, 1, 6, 6), torch.tensor([0, 1]))])
