"""blockzoo.models.resnet: exact parameter counts at paper settings, the option-A shortcut, attention placement,
MACs."""
import pytest
import torch

from blockzoo import create_model
from helpers import nparams

EXACT = [  # (model, kwargs, params) at 3 input channels; 10 classes for CIFAR models, 1000 for ImageNet ones
    ("resnet20", {}, 269_722), ("resnet56", {}, 853_018), ("resnet110", {}, 1_727_962),
    ("resnet20", {"shortcut": "B"}, 272_474),
    ("resnet18", {}, 11_689_512), ("resnet50", {}, 25_557_032),
    ("seresnet50", {}, 28_088_024), ("ecaresnet50", {}, 25_557_118),
]


@pytest.mark.parametrize("name,kw,expected", EXACT, ids=[f"{n}{'-' + str(k) if k else ''}" for n, k, _ in EXACT])
def test_param_counts(name, kw, expected):
    assert nparams(create_model(name, in_chans=3, **kw)) == expected


def test_option_a_shortcut_is_parameter_free_and_pads():
    m = create_model("resnet20", in_chans=1)
    sc = m.layers[1][0].shortcut
    x = torch.randn(2, 16, 8, 6)
    y = sc(x)
    assert y.shape == (2, 32, 4, 3) and nparams(sc) == 0
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2]) and y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_attention_goes_on_the_residual_branch_before_addition():
    m = create_model("resnet20", in_chans=1, attn="se").eval()
    blk = m.layers[0][0]
    seen = {}
    blk.attn.register_forward_hook(lambda mod, i, o: seen.setdefault("out", o))
    x = torch.randn(2, 16, 8, 8)
    y = blk(x)
    assert torch.allclose(y, torch.relu(x + seen["out"]), atol=1e-6)


@pytest.mark.slow
def test_resnet50_macs():
    from blockzoo.profile import count_macs
    macs = count_macs(create_model("resnet50"), (3, 224, 224)).macs
    assert 4.08e9 <= macs <= 4.13e9
