"""blockzoo.blocks.norm.ibn: IBN-Net's norm blocks (Pan et al., ECCV 2018, arXiv:1807.09441; S052): the IBN-a channel
split by hand, IBN-b's Instance Norm, and the placement rules in the ResNet skeleton."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import ConfigError, create_block, create_model
from blockzoo.blocks.norm.ibn import IBN, InstanceNorm2d, resnet_placement
from blockzoo.models.base import PerBlock
from helpers import meta_model, n_params

EPS = 1e-5


def _inst(x, w, b):
    """Instance norm written out: per sample and channel over H x W, biased variance."""
    mu = x.mean((2, 3), keepdim=True)
    var = x.var((2, 3), unbiased=False, keepdim=True)
    return (x - mu) / torch.sqrt(var + EPS) * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)


def _batch(x, w, b):
    """Training-mode batch norm written out: per channel over N x H x W, biased variance."""
    mu = x.mean((0, 2, 3), keepdim=True)
    var = x.var((0, 2, 3), unbiased=False, keepdim=True)
    return (x - mu) / torch.sqrt(var + EPS) * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)


def _randomize(m: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.rand(p.shape, generator=g) + 0.5)


@pytest.mark.parametrize("channels,ratio,half", [(6, 0.5, 3), (7, 0.5, 3), (8, 0.25, 2)])
def test_ibn_a_channel_split(channels, ratio, half):
    m = create_block("ibn_a", channels, ratio=ratio)
    assert m.half == half == int(channels * ratio)   # the official int(planes * ratio)
    _randomize(m)
    x = torch.randn(4, channels, 5, 6) * 3 + 1
    m.train()
    y = m(x)
    assert torch.allclose(y[:, :half], _inst(x[:, :half], m.IN.weight, m.IN.bias), atol=1e-5)
    assert torch.allclose(y[:, half:], _batch(x[:, half:], m.BN.weight, m.BN.bias), atol=1e-5)
    # the same as torch's functional forms
    assert torch.allclose(y[:, :half], F.instance_norm(x[:, :half], weight=m.IN.weight, bias=m.IN.bias), atol=1e-5)
    # instance statistics are per sample, batch statistics are not: change sample 1, sample 0 keeps only its IN half
    x2 = x.clone()
    x2[1] = x2[1] * 5 - 2
    y2 = m(x2)
    assert torch.allclose(y2[0, :half], y[0, :half], atol=1e-6)
    assert not torch.allclose(y2[0, half:], y[0, half:], atol=1e-3)
    # eval: the BN half uses its running statistics, the IN half still the sample's own
    m.eval()
    with torch.no_grad():
        ye = m(x)
    bn = m.BN
    ref = (x[:, half:] - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + EPS)
    assert torch.allclose(ye[:, half:], ref * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1), atol=1e-5)
    assert torch.allclose(ye[:, :half], _inst(x[:, :half], m.IN.weight, m.IN.bias), atol=1e-5)


def test_ibn_a_params():
    for c in (2, 7, 64, 256):
        assert n_params(create_block("ibn_a", c)) == 2 * c == n_params(create_block("bn", c))
    m = create_block("ibn_a", 64)
    assert sorted(k for k, _ in m.named_parameters()) == ["BN.bias", "BN.weight", "IN.bias", "IN.weight"]
    assert isinstance(m, IBN) and m.IN.track_running_stats is False


@pytest.mark.parametrize("kw", [dict(ratio=0.0), dict(ratio=1.0), dict(ratio=1.5), dict(ratio=0.01)])
def test_ibn_a_bad_ratio(kw):
    with pytest.raises(ConfigError, match="ratio"):
        create_block("ibn_a", 32, **kw)


def test_ibn_a_needs_two_channels():
    with pytest.raises(ConfigError):
        create_block("ibn_a", 1)


def test_ibn_b_is_instance_norm():
    m = create_block("ibn_b", 5)
    assert isinstance(m, InstanceNorm2d) and n_params(m) == 10
    _randomize(m)
    x = torch.randn(3, 5, 4, 7) * 2 - 1
    for mode in (m.train, m.eval):
        mode()
        with torch.no_grad():
            assert torch.allclose(m(x), _inst(x, m.weight, m.bias), atol=1e-5)


@pytest.mark.parametrize("name", ["ibn_a", "ibn_b"])
def test_one_position_map_gives_the_shift(name):
    """On a 1x1 map the instance statistics are the value itself: the IN part outputs its shift (nn.InstanceNorm2d
    would refuse the input; the blocks keep running, e.g. in a norm after global pooling)."""
    m = create_block(name, 8)
    _randomize(m)
    y = m(torch.randn(2, 8, 1, 1))
    inst = m.IN if name == "ibn_a" else m
    k = inst.weight.numel()
    assert torch.allclose(y[:, :k].flatten(1), inst.bias.expand(2, k), atol=1e-3)


def _norm_kinds(model) -> dict[str, str]:
    kinds = {IBN: "ibn_a", InstanceNorm2d: "in", nn.BatchNorm2d: "bn"}
    return {n: kinds[type(m)] for n, m in model.named_modules() if type(m) in kinds}


def test_resnet_placement_ibn_a():
    """resnet50 with norm='ibn_a': exactly bn1 of each block of layer1-layer3 is IBN (official ibn_cfg a, a, a, None),
    every other norm BN; basic blocks (resnet18) put it in the first conv unit's norm."""
    kinds = _norm_kinds(meta_model("resnet50", norm="ibn_a"))
    ibn = sorted(n for n, k in kinds.items() if k == "ibn_a")
    assert ibn == sorted(f"layers.{i}.{j}.bn1" for i, n in enumerate((3, 4, 6)) for j in range(n))
    assert set(kinds.values()) == {"ibn_a", "bn"} and kinds["stem.1"] == "bn"
    m = meta_model("resnet18", norm="ibn_a(ratio=0.25)")
    ibn18 = sorted(n for n, k in _norm_kinds(m).items() if k == "ibn_a")
    assert ibn18 == sorted(f"layers.{i}.{j}.conv1.norm" for i in range(3) for j in range(2))
    assert m.layers[0][0].conv1.norm.half == 16   # the block's options reach every IBN layer
    p = resnet_placement("ibn_a", (3, 4, 6, 3))
    assert [p.first(s, 0) for s in range(4)] == ["ibn_a", "ibn_a", "ibn_a", "bn"] and p.post(0, 2) == "none"


def test_ibn_b_position():
    """norm='ibn_b': IN after the addition of the last block of layer1 and layer2 and in place of the stem's BN, BN
    everywhere else; the block computes relu(IN(shortcut + branch))."""
    m = create_model("resnet50", norm="ibn_b").eval()
    kinds = _norm_kinds(m)
    assert sorted(n for n, k in kinds.items() if k == "in") == ["layers.0.2.post_norm", "layers.1.3.post_norm",
                                                                 "stem.1"]
    assert all(isinstance(b.post_norm, nn.Identity) for i, s in enumerate(m.layers) for j, b in enumerate(s)
               if (i, j) not in ((0, 2), (1, 3)))
    blk = m.layers[0][2]
    _randomize(blk.post_norm)
    x = torch.randn(2, 256, 6, 5)
    with torch.no_grad():
        branch = blk.bn3(blk.conv3(blk.conv2(blk.act1(blk.bn1(blk.conv1(x))))))
        want = torch.relu(_inst(x + branch, blk.post_norm.weight, blk.post_norm.bias))
        assert torch.allclose(blk(x), want, atol=1e-5)
        assert not torch.allclose(blk(x), torch.relu(x + branch), atol=1e-3)   # the IN changes the output
    # 3-stage CIFAR ResNet: the first two stages (never the last)
    kinds20 = _norm_kinds(meta_model("resnet20", norm="ibn_b"))
    assert sorted(n for n, k in kinds20.items() if k == "in") == ["layers.0.2.post_norm", "layers.1.2.post_norm",
                                                                   "stem.1"]


def test_explicit_positions_override_the_rule():
    m = meta_model("resnet18", norm1=["ibn_a", "bn", "bn", "bn"],
                   post_norm=PerBlock(lambda s, b: "ibn_b" if s == 3 else "none"), stem_norm="gn")
    kinds = _norm_kinds(m)
    assert sorted(n for n, k in kinds.items() if k == "ibn_a") == ["layers.0.0.conv1.norm", "layers.0.1.conv1.norm"]
    assert sorted(n for n, k in kinds.items() if k == "in") == ["layers.3.0.post_norm", "layers.3.1.post_norm"]
    assert isinstance(m.stem[1], nn.GroupNorm)
    with pytest.raises(ConfigError, match="stages"):
        meta_model("resnet18", norm1=["ibn_a", "bn"])


def test_default_resnets_unchanged():
    """A plain norm keeps every position as before: no post-addition norm, no parameters added."""
    m = meta_model("resnet50")
    assert all(isinstance(b.post_norm, nn.Identity) for s in m.layers for b in s)
    assert set(_norm_kinds(m).values()) == {"bn"} and n_params(m) == 25_557_032
