"""The parallel "shallow" residual stack (S012, Bermeitinger, Hrycej & Handschuh, "Make Deep Networks Shallow Again",
KDIR 2023) as the ResNet skeleton's ``parallel=k`` option: a group of one block is the block, a group of k is
``x + sum_i F_i(x)`` on the sequential stack's weights, strided / projection blocks stay sequential, option checks."""
from __future__ import annotations

import pytest
import torch

from blockzoo import ConfigError, create_model
from blockzoo.models.common.resnet import BasicBlock, ParallelGroup
from helpers import n_params


def _unit_prefixes(model: torch.nn.Module) -> list[str]:
    """The state-dict prefix of every residual unit, in order (a group's units are ``<group>.blocks.<k>.``)."""
    out = []
    for i, stage in enumerate(model.layers):
        for g, u in enumerate(stage):
            out += ([f"layers.{i}.{g}.blocks.{k}." for k in range(len(u.blocks))] if isinstance(u, ParallelGroup)
                    else [f"layers.{i}.{g}."])
    return out


def _parallel_state(seq: torch.nn.Module, par: torch.nn.Module) -> dict:
    """The sequential model's weights under the parallel model's names (the same units, grouped)."""
    rename = dict(zip(_unit_prefixes(seq), _unit_prefixes(par)))
    out = {}
    for key, value in seq.state_dict().items():
        prefix = next((p for p in rename if key.startswith(p)), None)
        out[key if prefix is None else rename[prefix] + key[len(prefix):]] = value
    return out


def test_group_of_one_block_is_the_block():
    torch.manual_seed(0)
    m = create_model("resnet20", num_classes=3)
    blk = m.layers[0][1]
    x = torch.randn(2, 16, 8, 8)
    for mode in (True, False):
        blk.train(mode)
        assert torch.equal(ParallelGroup([blk])(x), blk(x))


def test_parallel_one_is_the_default_model():
    torch.manual_seed(0)
    a = create_model("resnet20")
    torch.manual_seed(0)
    b = create_model("resnet20", parallel=1)
    assert not any(isinstance(mod, ParallelGroup) for mod in b.modules())
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(a.eval()(x), b.eval()(x))


def test_grouping_keeps_strided_blocks_sequential():
    m = create_model("resnet20", parallel=2)   # 3 blocks per stage
    s0, s1 = m.layers[0], m.layers[1]
    assert [type(u).__name__ for u in s0] == ["ParallelGroup", "BasicBlock"]   # 2 + 1 identity blocks
    assert [type(u).__name__ for u in s1] == ["BasicBlock", "ParallelGroup"]   # the strided block, then 2
    assert s1[0].conv1.conv.stride == (2, 2) and len(s1[1].blocks) == 2
    assert n_params(m) == n_params(create_model("resnet20"))                  # the same blocks, regrouped


def test_group_of_k_is_x_plus_the_sum_of_branches_on_copied_weights():
    torch.manual_seed(0)
    seq = create_model("resnet20", num_classes=4).eval()
    par = create_model("resnet20", num_classes=4, parallel=3).eval()
    par.load_state_dict(_parallel_state(seq, par))
    x = torch.randn(2, 16, 8, 8)
    blocks = list(seq.layers[0])
    expected = torch.relu(x + sum(b.bn2(b.conv2(b.conv1(x))) for b in blocks))
    with torch.no_grad():
        assert torch.allclose(par.layers[0][0](x), expected, atol=1e-6)
        # stage 2: the strided block, then a group of the other two on its output
        z = par.layers[0](x)
        y = seq.layers[1][0](z)
        expected2 = torch.relu(y + sum(b.bn2(b.conv2(b.conv1(y))) for b in list(seq.layers[1])[1:]))
        assert torch.allclose(par.layers[1](z), expected2, atol=1e-6)


def test_parallel_bottleneck_model_runs():
    m = create_model("resnet50", num_classes=3, parallel=4)
    assert sum(isinstance(u, ParallelGroup) for u in m.modules()) == 4   # stages of 3, 4, 6, 3: groups of 2, 3, 4, 2
    y = m.eval()(torch.randn(1, 3, 32, 32))
    assert y.shape == (1, 3)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_bad_parallel_values(bad):
    with pytest.raises(ConfigError):
        create_model("resnet20", parallel=bad)


def test_parallel_refuses_hyper_connections_and_post_norms():
    with pytest.raises(ConfigError, match="hyper-connections"):
        create_model("resnet20", parallel=2, connection="hyper_connection")
    with pytest.raises(ConfigError, match="post_norm"):
        create_model("resnet20", parallel=2, post_norm="bn")
    assert isinstance(create_model("resnet20", parallel=2).layers[0][1], BasicBlock)
