"""blockzoo.models.ffnet: the FFNet backbones (S040): exact parameter counts, structure, block order, deploy
equivalence, MACs."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from blockzoo import create_model
from blockzoo.blocks.common.conv_bn import ConvBN
from blockzoo.blocks.mixers.ffnified import RepDWConv
from blockzoo.deploy import reparameterize
from blockzoo.models.ffnet import FFBlock, FFNetDownsample, FFNetStem
from blockzoo.profile import count_macs
from blockzoo.registry import get_model_spec
from helpers import meta_model, n_params, randomize_bn

# ========================================================================================================== FFNet
FFNET_PARAMS = {  # training form, deploy form (1000 classes)
    "ffnet_1": (13_775_656, 13_660_152),
    "ffnet_2": (27_208_408, 26_908_440),
    "ffnet_3": (48_817_896, 48_330_632),
    "ffnet_4": (79_868_968, 79_200_360),
}


def test_ffnet_param_counts():
    for name, (train, deploy) in FFNET_PARAMS.items():
        spec = get_model_spec(name)
        m = meta_model(name).eval()
        assert n_params(m) == train == spec.reference["params_1000cls"]
        with torch.device("meta"):
            m = reparameterize(m)
        assert n_params(m) == deploy == spec.reference["params_1000cls_deploy"]
        assert abs(deploy - spec.paper_params) / spec.paper_params < 0.005     # the paper counts the deploy form
    assert n_params(meta_model("ffnet_nano")) == 1_992_874 == get_model_spec("ffnet_nano").reference[
        "params_3ch_10cls"]


def test_ffnet_structure():
    m = meta_model("ffnet_1")
    assert isinstance(m.stem, FFNetStem) and m.feature_sizes == [(64, 64), (32, 32), (16, 16), (8, 8)]
    ks = [[b.mixer.kernel_sizes for b in s.blocks] for s in m.stages]
    assert ks == [[(3, 3)] * 2, [(3, 3)] * 2, [(7, 7)] * 8, [(7, 7)] * 2]      # official kernel_sizes1/2 [3, 3, 7, 7]
    blk = m.stages[2].blocks[0]
    assert isinstance(blk, FFBlock) and isinstance(blk.dwconv, nn.Sequential)  # FFNet-1: channel-mixer dw 3x3 + BN
    assert blk.mlp.fc1.out_channels == 3 * 320 and isinstance(blk.ls1, nn.Identity)
    ds = m.stages[1].downsample
    assert isinstance(ds, FFNetDownsample) and ds[0].conv.c.groups == 80 and ds[0].conv.c.out_channels == 160
    m3 = meta_model("ffnet_3")
    assert isinstance(m3.stages[0].blocks[0].dwconv, RepDWConv)
    assert m3.stages[0].blocks[0].ls1.init_value == 1e-6
    assert isinstance(m.norm_pre, nn.BatchNorm2d)                              # head: BN -> GAP -> Linear
    # the per-stage kernels only go to ffnified: another mixer gets no foreign keywords
    sw = create_model("ffnet_nano", mixer="dwconv")
    assert sw(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_ffnet_block_order():
    """FFBlock = x1 = x + mixer(x); y = x1 + mlp(dwconv(x1)) (no pre-norms, BN inside the convs)."""
    torch.manual_seed(0)
    m = create_model("ffnet_nano").eval()
    blk = m.stages[1].blocks[0]
    with torch.no_grad():                      # O(1) weights so that a wrong order shows (init is std 0.02)
        for p in blk.parameters():
            p.normal_(0.0, 0.3)
    x = torch.randn(2, 64, 8, 6)
    x1 = x + blk.mixer(x)
    torch.testing.assert_close(blk(x), x1 + blk.mlp(blk.dwconv(x1)))


def test_ffnet_deploy_equivalence(capsys):
    """blockzoo.deploy.reparameterize gives FFNet's full deploy form as a copy (the model is left as it was);
    converting again in place is harmless; `blockzoo profile --deploy` profiles that form."""
    torch.manual_seed(0)
    m = create_model("ffnet_nano")
    randomize_bn(m)
    m.eval()
    x = torch.randn(2, 3, 32, 28)
    y = m(x)
    d = reparameterize(m)
    assert sum(isinstance(mod, RepDWConv) for mod in m.modules()) > 0                # the original is untouched
    assert not any(isinstance(mod, (RepDWConv, ConvBN)) for mod in d.modules())
    assert sum(isinstance(mod, nn.BatchNorm2d) for mod in d.modules()) == 1     # only the head BN stays
    torch.testing.assert_close(d(x), y, rtol=1e-4, atol=1e-4)
    assert reparameterize(d, inplace=True) is d                                  # idempotent
    torch.testing.assert_close(d(x), y, rtol=1e-4, atol=1e-4)
    from blockzoo.cli import main
    assert main(["profile", "ffnet_nano", "--deploy", "--no-latency", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["params"] == sum(p.numel() for p in d.parameters()) < 1_992_874 and "deploy form" in rep["model"]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FFNET_PARAMS))
def test_ffnet_macs(name):
    spec = get_model_spec(name)
    size = spec.input_size[1]
    m = create_model(name).eval()
    assert count_macs(m, (3, size, size)).macs == spec.reference[f"macs_{size}"]
    macs = count_macs(reparameterize(m), (3, size, size)).macs
    assert macs == spec.reference[f"macs_{size}_deploy"]
    assert abs(macs - spec.paper_macs) / spec.paper_macs < 0.03
