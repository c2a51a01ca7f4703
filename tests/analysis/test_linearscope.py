"""LinearScope: exact replay of piecewise-linear networks as A(x) x + b(x); refusals."""
import pytest
import torch
import torch.nn as nn

from blockzoo.analysis import linear_interpreter
from blockzoo.analysis.linearscope import plot_rows
from blockzoo.errors import ConfigError


def _jacobian(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    net = net.double().eval()
    return torch.autograd.functional.jacobian(lambda v: net(v).flatten(), x.double()).reshape(-1, x.numel())


def _convnet() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                        nn.Conv2d(4, 6, 3), nn.LeakyReLU(0.1), nn.AdaptiveMaxPool2d(2), nn.ReLU6(), nn.Flatten(),
                        nn.Linear(24, 5))
    net[1].running_mean.normal_()
    net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_relu_mlp_reproduced_and_A_is_the_jacobian():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    x = torch.randn(1, 3, 2, 2)
    r = linear_interpreter(mlp, x)
    y = mlp.double()(x.double()).flatten()
    torch.testing.assert_close(r.A @ x.double().flatten() + r.b, y, atol=1e-6, rtol=0)
    torch.testing.assert_close(r.A, _jacobian(mlp, x), atol=1e-10, rtol=0)
    assert r.error < 1e-6 and r.A.shape == (3, 12)


def test_conv_net_with_bn_and_max_pooling_reproduced():
    net = _convnet()
    x = torch.randn(1, 1, 10, 10)
    r = linear_interpreter(net, x)
    assert net[2].inplace and next(net.parameters()).dtype == torch.float32   # the model itself is untouched
    torch.testing.assert_close(r.A @ x.double().flatten() + r.b, net.double()(x.double()).flatten(), atol=1e-6,
                               rtol=0)
    torch.testing.assert_close(r.A, _jacobian(net, x), atol=1e-10, rtol=0)
    # A(x) depends on x: another input switches other units
    assert not torch.allclose(linear_interpreter(net, torch.randn(1, 1, 10, 10)).A, r.A)


def test_hand_computed_one_relu():
    lin = nn.Linear(2, 2)
    lin.weight.data = torch.tensor([[1.0, 2.0], [-1.0, 1.0]])
    lin.bias.data = torch.tensor([0.5, -3.0])
    net = nn.Sequential(lin, nn.ReLU())
    r = linear_interpreter(net, torch.tensor([[1.0, 1.0]]))   # pre-activations 3.5 (on) and -3 (off)
    torch.testing.assert_close(r.A, torch.tensor([[1.0, 2.0], [0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(r.b, torch.tensor([0.5, 0.0], dtype=torch.float64))


def test_registered_resnet_reproduced(tmp_path):
    from blockzoo import create_model
    model = create_model("resnet20", num_classes=10, in_chans=1).eval()
    r = linear_interpreter(model, torch.randn(1, 1, 28, 28))
    assert r.error < 1e-6 and r.A.shape == (10, 784)
    assert plot_rows(r, tmp_path / "rows.png").read_bytes()[:4] == b"\x89PNG"


def test_non_piecewise_linear_layers_are_refused_by_name():
    net = nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 2))
    with pytest.raises(ConfigError, match=r"'1' \(GELU\)"):
        linear_interpreter(net, torch.randn(1, 4))
    with pytest.raises(ConfigError, match="LayerNorm"):
        linear_interpreter(nn.Sequential(nn.LayerNorm(4)), torch.randn(1, 4))


def test_hidden_non_linearity_fails_the_reproduction_check():
    class Hidden(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return torch.tanh(self.fc(x)) * 3

    with pytest.raises(ConfigError, match="cannot see"):
        linear_interpreter(Hidden(), torch.randn(1, 4))
    with pytest.raises(ConfigError, match="one input"):
        linear_interpreter(Hidden(), torch.randn(2, 4))
