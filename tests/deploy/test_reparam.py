"""blockzoo.deploy.reparam: the one re-parameterisation walker (fuse() / reparameterize() hooks, copy by default,
dtype kept) and the BN folds, on hand-built modules and on every re-parameterisable family."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from blockzoo import create_model
from blockzoo.blocks.common.conv_bn import ConvBN
from blockzoo.blocks.common.layer_scale import LayerScale
from blockzoo.deploy import bn_scale_shift, fuse_bn_linear, fuse_conv_bn, reparameterize


def randomize(model: nn.Module, seed: int = 1) -> nn.Module:
    """Random BN statistics / affines (1-d and 2-d) and layer scales, so that every folded term matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.5, 0.5, generator=g)
            elif isinstance(m, LayerScale):
                m.gamma.uniform_(0.5, 1.5, generator=g)
    return model


def test_fuse_conv_bn():
    torch.manual_seed(0)
    for bias, affine in ((True, True), (False, True), (True, False)):
        conv = nn.Conv2d(6, 9, 3, stride=2, padding=2, dilation=2, groups=3, bias=bias)
        bn = nn.BatchNorm2d(9, affine=affine)
        with torch.no_grad():
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.2, 3)
            if affine:
                bn.weight.uniform_(-2, 2)
                bn.bias.uniform_(-1, 1)
        conv.eval(), bn.eval()
        fused = fuse_conv_bn(conv, bn)
        assert isinstance(fused, nn.Conv2d) and fused.bias is not None
        assert (fused.stride, fused.padding, fused.dilation, fused.groups) == ((2, 2), (2, 2), (2, 2), 3)
        x = torch.randn(2, 6, 13, 10)
        with torch.no_grad():
            torch.testing.assert_close(fused(x), bn(conv(x)), atol=1e-5, rtol=1e-5)
    # bn_scale_shift by hand: gamma 2, beta 1, mean 3, var 4 - eps -> scale 1, shift -2
    bn = nn.BatchNorm2d(1)
    with torch.no_grad():
        bn.weight.fill_(2.0), bn.bias.fill_(1.0), bn.running_mean.fill_(3.0), bn.running_var.fill_(4.0 - bn.eps)
    s, t = bn_scale_shift(bn)
    assert math.isclose(s.item(), 1.0, rel_tol=1e-7) and math.isclose(t.item(), -2.0, rel_tol=1e-7)  # fp32 stats
    with pytest.raises(TypeError, match="BatchNorm"):
        fuse_conv_bn(nn.Conv2d(2, 2, 1), nn.GroupNorm(1, 2))
    with pytest.raises(ValueError, match="running statistics"):
        fuse_conv_bn(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2, track_running_stats=False))
    with pytest.raises(ValueError, match="channels"):
        fuse_conv_bn(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(2))


def test_fuse_bn_linear():
    bn, fc = nn.BatchNorm1d(3), nn.Linear(3, 2)
    randomize(bn)
    bn.eval()
    x = torch.randn(4, 3)
    with torch.no_grad():
        torch.testing.assert_close(fuse_bn_linear(bn, fc)(x), fc(bn(x)))
    with pytest.raises(TypeError, match="nn.Linear"):
        fuse_bn_linear(bn, nn.Conv2d(3, 2, 1))  # type: ignore[arg-type]


def test_walker_order_copy_and_inplace():
    """reparameterize() hooks run top-down (a parent first, then its current children); the default converts a copy
    and leaves the model as it was; inplace=True converts the model itself."""
    calls: list[str] = []

    class Leaf(nn.Module):
        def __init__(self, tag: str):
            super().__init__()
            self.tag = tag

        def reparameterize(self):
            calls.append(self.tag)

    class Parent(nn.Module):
        def __init__(self):
            super().__init__()
            self.child = Leaf("old")

        def reparameterize(self):
            calls.append("parent")
            self.child = Leaf("new")   # replaced children are visited after the parent converted

    model = nn.Sequential(Parent(), nn.ReLU(), Leaf("leaf"))
    copy = reparameterize(model)
    assert copy is not model and calls == ["parent", "new", "leaf"]
    assert model[0].child.tag == "old"                                  # the original is untouched
    calls.clear()
    assert reparameterize(model, inplace=True) is model and calls == ["parent", "new", "leaf"]
    assert model[0].child.tag == "new"
    with pytest.raises(TypeError):
        reparameterize("model")  # type: ignore[arg-type]


def test_fuse_hook_replaces_child_and_root():
    """A fuse() hook returns a replacement that the walker swaps into the parent (or returns, for the root)."""
    torch.manual_seed(0)
    model = randomize(nn.Sequential(ConvBN(3, 4, 3, padding=1), nn.ReLU(), ConvBN(4, 2))).eval()
    x = torch.randn(2, 3, 5, 6)
    with torch.no_grad():
        y = model(x)
        d = reparameterize(model)
        assert [type(m) for m in d] == [nn.Conv2d, nn.ReLU, nn.Conv2d]
        torch.testing.assert_close(d(x), y)
        assert reparameterize(d, inplace=True) is d                    # idempotent: nothing left to convert
        root = randomize(ConvBN(3, 4, 1)).eval()
        fused = reparameterize(root)
        assert type(fused) is nn.Conv2d and isinstance(root, ConvBN)
        torch.testing.assert_close(fused(x), root(x))


# every registered family with a fuse()/reparameterize() hook, at its small-input variant (fast); the input size
_FAMILIES = {"unireplknet_a_small": 32, "ffnet_nano": 32, "lsnet_t_small": 32}


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.bfloat16, 0.1)])
@pytest.mark.parametrize("name", list(_FAMILIES))
def test_deploy_keeps_dtype_and_function(name, dtype, tol):
    """The deploy form of a float64 / bfloat16 model is a float64 / bfloat16 model with the same eval output."""
    torch.manual_seed(0)
    m = randomize(create_model(name, num_classes=4)).eval().to(dtype)
    s = _FAMILIES[name]
    x = torch.randn(2, 3, s, s, dtype=dtype)
    with torch.no_grad():
        y = m(x).float()
        d = reparameterize(m)
        assert {p.dtype for p in d.parameters()} == {dtype}
        assert sum(p.numel() for p in d.parameters()) < sum(p.numel() for p in m.parameters())
        y1 = d(x).float()
    assert (y1 - y).abs().max().item() <= tol * max(y.abs().max().item(), 1.0)
