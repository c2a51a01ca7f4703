"""ConvBN modes (S069): Tune == Eval (forward and gradients), Deploy == Eval, Train restores."""
import pytest
import torch
import torch.nn as nn

from blockzoo.deploy import convbn_mode, find_convbn_pairs
from blockzoo.deploy.convbn import folded_conv_params
from blockzoo.errors import ConfigError
from blockzoo.registry import create_model


def _randomise_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def _fwd_bwd(model, x):
    model.zero_grad()
    out = model(x)
    out.square().sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_folded_params_hand_computed():
    conv = nn.Conv2d(1, 1, 1, bias=True)
    bn = nn.BatchNorm2d(1, eps=0.0)
    with torch.no_grad():
        conv.weight.fill_(2.0), conv.bias.fill_(1.0)
        bn.weight.fill_(3.0), bn.bias.fill_(0.5), bn.running_mean.fill_(4.0), bn.running_var.fill_(9.0)
    w, b = folded_conv_params(conv, bn)
    assert w.item() == pytest.approx(2.0 * 3 / 3) and b.item() == pytest.approx((1 - 4) * 1 + 0.5)


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2_050_small"])
def test_tune_equals_eval_forward_and_gradients(name):
    model = _randomise_bn(create_model(name, num_classes=10)).double().train()
    x = torch.randn(2, model.in_chans, 32, 32, dtype=torch.float64)
    pairs = find_convbn_pairs(model)
    assert len(pairs) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    convbn_mode(model, "eval")
    out_eval, g_eval = _fwd_bwd(model, x)
    convbn_mode(model, "tune")
    out_tune, g_tune = _fwd_bwd(model, x)
    torch.testing.assert_close(out_tune, out_eval, rtol=0, atol=1e-6)
    assert g_tune.keys() == g_eval.keys() and any("bn" in k or "norm" in k for k in g_tune)
    for k in g_eval:
        torch.testing.assert_close(g_tune[k], g_eval[k], rtol=1e-6, atol=1e-8)
    # frozen statistics in both modes, whatever model.train() says
    stats = [m.running_mean.clone() for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    model(x)
    assert all(torch.equal(a, m.running_mean) for a, m in
               zip(stats, [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]))
    deployed = convbn_mode(model, "deploy").eval()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
    torch.testing.assert_close(deployed(x), out_eval, rtol=0, atol=1e-6)
    convbn_mode(model, "train")
    assert all(not m.__dict__.get("forward") for m in model.modules())
    model.eval()
    torch.testing.assert_close(model(x), out_eval, rtol=0, atol=1e-6)   # the ordinary eval-mode BN again
    model.train()
    assert not torch.allclose(model(x), out_eval)                        # batch statistics again


def test_train_mode_restores_batch_statistics_updates():
    model = create_model("resnet20", num_classes=10)
    convbn_mode(model, "tune")
    convbn_mode(model, "train")
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    before = bn.running_mean.clone()
    model.train()(torch.randn(2, 3, 32, 32))
    assert not torch.equal(before, bn.running_mean)


def test_convnext_has_no_pairs_and_is_unchanged():
    model = create_model("convnext_atto_small", num_classes=10)
    assert find_convbn_pairs(model) == []
    x = torch.randn(1, model.in_chans, 32, 32)
    model.eval()
    ref = model(x)
    torch.testing.assert_close(convbn_mode(model, "tune")(x), ref)


def test_tune_mode_traces_and_bad_mode():
    model = create_model("resnet20", num_classes=10)
    convbn_mode(model, "tune")
    gm = torch.fx.symbolic_trace(model)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(gm(x), model(x))
    with pytest.raises(ConfigError, match="mode"):
        convbn_mode(model, "fold")
