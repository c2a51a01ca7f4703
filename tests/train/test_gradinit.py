"""blockzoo.train.gradinit (GradInit, Zhu et al. 2021) and the trainer's --gradinit: the first meta-step by hand
(objective, first-order variant, Adam's sign step, the constraint step, the lower bound), GradInit changes only one
scale per tensor, the gradient-norm constraint holds afterwards, a badly scaled MLP takes a better first step, and
the trainer option is off by default, checked and recorded."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.errors import ConfigError
from blockzoo.train import TrainConfig, train
from blockzoo.train.gradinit import DEFAULT_GAMMA, gradinit
from helpers import Tiny


def _mse(out, y):
    return ((out - y) ** 2).mean()


def _one_weight(w0: float = 2.0) -> nn.Linear:
    m = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(w0)
    return m


# one sample x = 1, y = 0: theta = s * w0 = 2, L = theta^2, g = 2 theta (||g|| = 4)
_BATCHES = [(torch.ones(1, 1), torch.zeros(1, 1))] * 3


@pytest.mark.parametrize("opt,lr,first_order,gamma,moves", [
    # SGD, lr 0.25: theta' = theta (1 - 2 lr) = theta / 2, objective theta^2 / (4 lr): grows with s -> s goes down
    ("sgd", 0.25, False, 100.0, -1),
    # SGD, lr 0.75: theta' = -theta / 2; through the step the objective grows with s (down) ...
    ("sgd", 0.75, False, 100.0, -1),
    # ... with the step held constant (official first-order variant): d/dtheta (theta - 2 theta_0)^2 < 0 -> up
    ("sgd", 0.75, True, 100.0, +1),
    # Adam, lr 3: theta' = theta - 3 sign(g) = -1: (s w0 - 3)^2 falls with s -> up
    ("adam", 3.0, False, 100.0, +1),
    # ||g||_2 = 4 > gamma = 1: a constraint step lowers the gradient norm 2 |theta| -> down
    ("sgd", 0.25, False, 1.0, -1),
])
def test_first_meta_step_by_hand(opt, lr, first_order, gamma, moves):
    """Adam's first bias-corrected step on the scale is meta_lr * sign(d objective / d s)."""
    m = _one_weight()
    scales = gradinit(m, _BATCHES, opt=opt, lr=lr, iters=1, gamma=gamma, meta_lr=0.1, first_order=first_order,
                      loss_fn=_mse)
    assert scales == {"weight": pytest.approx(1 + moves * 0.1)}
    assert m.weight.item() == pytest.approx(2.0 * (1 + moves * 0.1))


def test_lower_bound_on_scales():
    """m_i >= min_scale for weights (the paper's alpha), >= 0 for biases (official)."""
    m = nn.Linear(1, 1)
    with torch.no_grad():
        m.weight.fill_(2.0)
        m.bias.fill_(1.0)
    scales = gradinit(m, _BATCHES, lr=0.1, iters=1, gamma=100.0, meta_lr=5.0, loss_fn=_mse)
    assert scales == {"weight": 0.01, "bias": 0.0}
    assert m.weight.item() == pytest.approx(0.02) and m.bias.item() == 0.0


def _batches(n=6, bs=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(bs, 1, 8, 8, generator=g), torch.randint(0, 4, (bs,), generator=g)) for _ in range(n)]


def test_changes_only_one_scale_per_tensor_and_restores_modes():
    torch.manual_seed(0)
    m = Tiny()
    m.train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    scales = gradinit(m, _batches(), lr=0.1, iters=4, meta_lr=0.05)
    assert set(scales) == {n for n, _ in m.named_parameters()}
    assert m.training and m.bn.training and m.bn.track_running_stats and m.drop.training
    for name, v in m.state_dict().items():
        if name in scales:
            assert torch.equal(v, before[name] * scales[name]), name    # exactly scale * before
        else:
            assert torch.equal(v, before[name]), name                   # BN running statistics untouched
    assert scales["bn.bias"] == 1.0                                     # a zero tensor keeps scale 1
    assert any(s != 1.0 for s in scales.values())
    assert all(s >= 0.01 for n, s in scales.items() if not n.endswith("bias"))


@pytest.mark.parametrize("opt,norm", [("sgd", 2), ("adam", 1)])
def test_gradient_norm_constraint_holds_afterwards(opt, norm):
    """From a net whose gradient norm is far above gamma, GradInit ends within it (L2 for SGD, L1 for Adam): the
    constraint steps pull the norm down, objective steps only start inside the bound."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(5.0)
    batch = _batches(1)[0]
    x, y = torch.cat([batch[0]] * 2), torch.cat([batch[1]] * 2)

    def gnorm():
        grads = torch.autograd.grad(F.cross_entropy(m(x), y), list(m.parameters()))
        return sum(g.abs().pow(norm).sum() for g in grads).item() ** (1 / norm)

    gamma = gnorm() / 20
    gradinit(m, [batch] * 3, opt=opt, lr=0.01, iters=60, gamma=gamma, meta_lr=0.05)
    assert gnorm() <= gamma * 1.05


def test_badly_scaled_mlp_takes_a_better_first_step():
    """The point of GradInit: after it, one SGD step at the given lr lowers the loss on held-out batches more."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 20, generator=g)
    y = (x @ torch.randn(20, 4, generator=g)).argmax(1)

    def mlp():
        torch.manual_seed(1)
        m = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(4.0)                                            # badly scaled: huge logits
        return m

    def loss_after_one_step(m):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        F.cross_entropy(m(x[:64]), y[:64]).backward()
        opt.step()
        with torch.no_grad():
            return F.cross_entropy(m(x[64:]), y[64:]).item()

    m = mlp()
    gradinit(m, [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)], lr=0.1, iters=30, meta_lr=0.05)
    assert loss_after_one_step(m) < 0.5 * loss_after_one_step(mlp())


def test_bad_options_raise_config_error():
    m = _one_weight()
    for kw in (dict(opt="rmsprop"), dict(lr=0.0), dict(iters=0), dict(gamma=-1.0), dict(meta_lr=0.0),
               dict(min_scale=-0.1)):
        with pytest.raises(ConfigError):
            gradinit(m, _BATCHES, **{"lr": 0.1, **kw})
    with pytest.raises(ConfigError, match="no batches"):
        gradinit(m, [], lr=0.1)
    with pytest.raises(ConfigError, match="no trainable"):
        gradinit(nn.Linear(1, 1).requires_grad_(False), _BATCHES, lr=0.1)
    assert m.weight.item() == 2.0                                      # nothing ran
    assert DEFAULT_GAMMA == {"sgd": 1.0, "adam": 1000.0}


# ------------------------------------------------------------------------------------------------- the trainer
def test_trainer_option_is_off_by_default_checked_and_recorded(tmp_path):
    from blockzoo.data.synthetic import make_synthetic
    from blockzoo.train.trainer import config_hash

    assert TrainConfig().gradinit == 0 and TrainConfig().gradinit_lr == 1e-3
    assert config_hash(TrainConfig(model="resnet20")) == "c7321608"    # off: the pinned hash is unchanged
    for bad in (dict(gradinit=-1), dict(gradinit=1.5), dict(gradinit_lr=0.0), dict(gradinit_lr=math.inf)):
        with pytest.raises(ConfigError, match="gradinit"):
            TrainConfig(**bad).validate()
    tr = make_synthetic("train", num_classes=4, image_size=8, channels=1, n=128, noise=0.1, max_shift=1)
    te = make_synthetic("test", num_classes=4, image_size=8, channels=1, n=64, noise=0.1, max_shift=1)
    base = dict(model="tiny", data="synthetic", epochs=1, batch_size=32, lr=0.1, progress=False, deterministic=True,
                threads=1, device="cpu", seed=0, checkpoint=False, log="none")
    torch.manual_seed(0)
    on = train(TrainConfig(out_dir=str(tmp_path / "on"), gradinit=3, gradinit_lr=0.05, **base), Tiny(), tr, te)
    torch.manual_seed(0)
    off = train(TrainConfig(out_dir=str(tmp_path / "off"), **base), Tiny(), tr, te)
    assert on["config"]["gradinit"] == 3 and on["config"]["gradinit_lr"] == 0.05 and off["config"]["gradinit"] == 0
    assert on["config_hash"] != off["config_hash"]
    assert on["final_test_loss"] != off["final_test_loss"]
    torch.manual_seed(0)                                                # AdamW runs GradInit's Adam variant
    adam = train(TrainConfig(out_dir=str(tmp_path / "adam"), **{**base, "optimizer": "adamw", "lr": 1e-3},
                             gradinit=2), Tiny(), tr, te)
    assert adam["config"]["gradinit"] == 2 and math.isfinite(adam["final_test_loss"])


def test_cli_flag():
    from blockzoo.cli import _train_kwargs, build_parser
    kw = _train_kwargs(build_parser().parse_args(["train", "resnet20", "--gradinit", "50", "--gradinit-lr", "0.05"]))
    assert kw["gradinit"] == 50 and kw["gradinit_lr"] == 0.05
    assert _train_kwargs(build_parser().parse_args(["train", "resnet20"]))["gradinit"] == 0


def test_a_one_shot_iterator_that_runs_out_is_an_error():
    with pytest.raises(ConfigError, match="ran out"):
        gradinit(_one_weight(), iter(_BATCHES), lr=0.1, iters=2, loss_fn=_mse)
