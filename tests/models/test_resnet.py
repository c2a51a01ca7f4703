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


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "skresnet20"])
def test_drop_path_rate_linear_per_block_and_state_dict_unchanged(name):
    """drop_path_rate puts stochastic depth on each block's residual branch, linear from 0 (first block) to the rate
    (last block), like timm's ResNet; it adds no parameters or buffers, and eval mode is unaffected."""
    from blockzoo.blocks.common.drop import DropPath

    plain = create_model(name, num_classes=10, in_chans=1)
    m = create_model(name, num_classes=10, in_chans=1, drop_path_rate=0.2)
    assert m.state_dict().keys() == plain.state_dict().keys()
    blocks = [b for stage in m.layers for b in stage]
    rates = [b.drop_path.drop_prob if isinstance(b.drop_path, DropPath) else 0.0 for b in blocks]
    expected = [0.2 * k / (len(blocks) - 1) for k in range(len(blocks))]
    assert rates == pytest.approx(expected) and rates[0] == 0.0 and rates[-1] == pytest.approx(0.2)
    with torch.no_grad():   # the ImageNet ResNets zero-init the last BN of each branch: give the branches weight
        for p in plain.parameters():
            p.add_(0.1 * torch.randn_like(p))
    m.load_state_dict(plain.state_dict())
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(m.eval()(x), plain.eval()(x))
        m.train()
        torch.manual_seed(0)
        a = m(x)
        torch.manual_seed(1)
        assert not torch.equal(a, m(x))   # some branches dropped for some samples
