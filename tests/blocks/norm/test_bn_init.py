"""Revisited BN initialisation (S093): gamma_0 = 0.1, the scale's learning rate / c (c = 100), BN's forward."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.fx
import torch.nn as nn

from blockzoo import create_block, create_model
from blockzoo.blocks.norm.bn_init import ScaledInitBatchNorm2d
from blockzoo.errors import ConfigError, InputShapeError
from blockzoo.train.config import TrainConfig
from blockzoo.train.trainer import build_optimizer, param_lr_scales


def test_initial_scale_survives_model_init():
    model = create_model("resnet20", norm="bn_init")   # the generic init sets every BN scale to 1 first
    norms = [m for m in model.modules() if isinstance(m, ScaledInitBatchNorm2d)]
    assert len(norms) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 10
    for m in norms:
        assert torch.all(m.weight == 0.1) and torch.all(m.bias == 0)
    m = create_block("bn_init", 8, weight_init=0.25)
    assert torch.all(m.weight == 0.25)


def test_scale_learning_rate_is_divided():
    """The trainer's optimizer gives the BN scale (not its shift) its own group at lr / 100."""
    m = create_block("bn_init", 4)
    scales = param_lr_scales(copy.deepcopy(nn.Sequential(m)))   # the declaration survives a copy
    assert sorted(scales.values()) == [0.01]
    assert param_lr_scales(m) == {id(m.weight): 0.01}   # the scale only, not the shift
    opt = build_optimizer(m, TrainConfig(optimizer="sgd", lr=0.5, momentum=0.0, weight_decay=0.0).resolved())
    scale_of = {id(p): g["lr_scale"] for g in opt.param_groups for p in g["params"]}
    assert scale_of == {id(m.weight): 0.01, id(m.bias): 1.0}
    for g in opt.param_groups:   # the trainer sets each group's lr to lr * lr_scale at every step
        g["lr"] = 0.5 * g["lr_scale"]
    m.weight.grad, m.bias.grad = torch.ones(4), torch.ones(4)
    opt.step()
    assert torch.allclose(m.weight, torch.full((4,), 0.1 - 0.5 / 100))   # alpha_gamma = alpha / c
    assert torch.allclose(m.bias, torch.full((4,), -0.5))


def test_forward_is_batchnorm():
    torch.manual_seed(0)
    m = create_block("bn_init", 6)
    ref = nn.BatchNorm2d(6)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(4, 6, 5, 5) * 3 + 1
    y = m(x)
    assert torch.allclose(y, ref(x))   # same batch statistics and running-average update
    assert torch.allclose(y.std(dim=(0, 2, 3), unbiased=False), torch.full((6,), 0.1), atol=1e-4)
    m.eval()
    ref.eval()
    assert torch.allclose(m(x), ref(x))


@pytest.mark.parametrize("kw", [{"weight_init": 0.0}, {"lr_scale": -1.0}, {"weight_init": float("nan")}])
def test_bad_options(kw):
    with pytest.raises(ConfigError):
        create_block("bn_init", 4, **kw)


def test_traces_and_checks_rank():
    m = create_model("resnet20", norm="bn_init").eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(torch.fx.symbolic_trace(m)(x), m(x), atol=1e-6)   # BatchNorm2d's rank check is skipped
    with pytest.raises(InputShapeError):
        create_block("bn_init", 4)(torch.randn(4, 4))
