"""blockzoo.models.g_ghostnet: G-GhostNet (Han et al., IJCV 2022, arXiv:2201.03297; S099): the G-Ghost stage's
concatenation and cheap path by hand, lambda = 0 is the plain body, the official / paper counts, the cost claims."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import ConfigError, create_model
from blockzoo.models.g_ghostnet import (
    G_GHOST_RESNET20_PARAMS,
    G_GHOST_RESNET50_PARAMS,
    REGNETX_032_PARAMS,
    GGhostStage,
    XBlock,
)
from blockzoo.registry import get_model_spec
from helpers import bn_ref, check_macs_224, check_param_count, fit_losses, macs, meta_model, n_params, randomize_bn

# the paper's table (= the official README's pretrained models): params, "FLOPs" (multiply-adds)
PAPER = {"g_ghost_regnetx_032": (10.5e6, 1.8e9), "g_ghost_regnetx_040": (15.7e6, 2.2e9),
         "g_ghost_regnetx_080": (24.6e6, 4.2e9), "g_ghost_regnetx_160": (32.4e6, 9.0e9)}
# the official g_ghost_regnet.py, counted with blockzoo's parameter / MAC counters
OFFICIAL = {"g_ghost_regnetx_032": (10_511_000, 1_801_746_240), "g_ghost_regnetx_040": (15_726_268, 2_228_368_516),
            "g_ghost_regnetx_080": (24_586_928, 4_149_668_216), "g_ghost_regnetx_160": (32_381_704, 8_997_384_192)}


def _stage(ghost_ratio=0.5, mix=True, end_block=False, depth=4, planes=24, gw=4, thin_gw=4) -> GGhostStage:
    """A small RegNetX G-Ghost stage, 8 -> 24 channels at stride 2, in eval mode with random BN statistics."""
    def make_block(j, cin, p, stride, thin):
        return XBlock(cin, p, stride, group_width=thin_gw if thin else gw, ctx=lambda *a, **k: None)
    torch.manual_seed(0)
    stage = GGhostStage(make_block, 8, planes, depth, 2, ghost_ratio=ghost_ratio, divisor=thin_gw, mix=mix,
                        end_block=end_block)
    randomize_bn(stage)
    return stage.eval()


def _run_with_taps(stage: GGhostStage, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The stage output and the outputs of its first block and of every thin block (forward hooks)."""
    taps: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: taps.append(out)) for m in (stage.base, *stage.layers)]
    try:
        with torch.no_grad():
            y = stage(x)
    finally:
        for h in hooks:
            h.remove()
    return y, taps


def _conv1x1(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    return torch.einsum("oc,nchw->nohw", conv.weight[:, :, 0, 0], x)


def test_stage_output_is_the_concatenation_of_thin_and_cheap_features():
    """Paper's figure form (end_block=False): output = [last thin block's output, act(cheap(x1[:, t:]) + mix)], with
    the cheap op (1x1 conv -> BN) and the mix (GAP -> 1x1 -> BN -> ReLU -> 1x1 -> BN) written out by hand."""
    stage = _stage()
    t = stage.thin_channels
    assert (t, stage.cheap_channels) == (12, 12)        # int(24 * 0.5 / 4) * 4, the rest
    assert len(stage.layers) == 3 and isinstance(stage.end, nn.Identity)   # n - 1 thin blocks
    x = torch.randn(2, 8, 10, 10)
    y, (x1, *zs) = _run_with_taps(stage, x)
    assert y.shape == (2, 24, 5, 5) and x1.shape == (2, 24, 5, 5)
    assert all(z.shape == (2, t, 5, 5) for z in zs)
    assert torch.equal(y[:, :t], zs[-1])
    pooled = torch.cat([x1, *zs], 1).mean((2, 3), keepdim=True)
    mix = stage.mix
    v = bn_ref(_conv1x1(F.relu(bn_ref(_conv1x1(pooled, mix[1]), mix[2])), mix[4]), mix[5])
    cheap = bn_ref(_conv1x1(x1[:, t:], stage.cheap[0]), stage.cheap[1])
    assert torch.allclose(y[:, t:], F.relu(cheap + v), atol=1e-5)


def test_without_mix_the_cheap_part_depends_only_on_the_first_block():
    """mix=False: changing every thin block changes the complicated channels and leaves the ghost channels alone
    (they are act(BN(1x1 conv)) of the first block's last channels)."""
    stage = _stage(mix=False)
    t = stage.thin_channels
    x = torch.randn(2, 8, 10, 10)
    y, (x1, *_) = _run_with_taps(stage, x)
    assert stage.mix is None
    assert torch.allclose(y[:, t:], F.relu(bn_ref(_conv1x1(x1[:, t:], stage.cheap[0]), stage.cheap[1])), atol=1e-5)
    with torch.no_grad():
        for p in stage.layers.parameters():
            p.add_(torch.randn_like(p))
        y2 = stage(x)
    assert torch.equal(y2[:, t:], y[:, t:]) and not torch.allclose(y2[:, :t], y[:, :t])
    with torch.no_grad():   # and the first block's first channels feed only the complicated path
        probe = stage.base(x)
        probe[:, :t] += 1
        assert torch.equal(stage.cheap(probe[:, t:]), stage.cheap(x1[:, t:]))


def test_mix_adds_one_vector_per_sample_over_space():
    """The mix operation's contribution to the ghost features is constant over the spatial positions."""
    with_mix, without = _stage(mix=True), _stage(mix=False)
    with_mix.cheap_act = without.cheap_act = nn.Identity()   # look before the final activation
    without.load_state_dict({k: v for k, v in with_mix.state_dict().items() if not k.startswith("mix.")})
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        diff = with_mix(x)[:, 12:] - without(x)[:, 12:]
    assert torch.allclose(diff, diff[:, :, :1, :1].expand_as(diff), atol=1e-5)
    assert diff.abs().max() > 1e-3


def test_official_stage_ends_with_a_full_width_block_on_the_concatenation():
    """end_block=True (default, official): 1 + (n - 2) thin + 1 blocks; the end block gets [thin, ghost] channels."""
    stage = _stage(end_block=True)
    assert len(stage.layers) == 2 and isinstance(stage.end, XBlock)
    seen = []
    stage.end.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0]))
    x = torch.randn(2, 8, 10, 10)
    y, (x1, *zs) = _run_with_taps(stage, x)
    assert seen[0].shape == (2, 24, 5, 5) and torch.equal(seen[0][:, :12], zs[-1])
    with torch.no_grad():
        assert torch.equal(y, stage.end(seen[0]))


def test_lambda_zero_stage_is_the_plain_stage():
    """ghost_ratio=0: no cheap path, no mix, thin blocks at full width: the parameters of n plain X blocks."""
    stage = _stage(ghost_ratio=0.0, end_block=True)
    assert stage.cheap is None and stage.mix is None and stage.thin_channels == 24
    plain = [XBlock(8, 24, 2, group_width=4, ctx=lambda *a, **k: None)] + [
        XBlock(24, 24, 1, group_width=4, ctx=lambda *a, **k: None) for _ in range(3)]
    assert n_params(stage) == sum(n_params(b) for b in plain)


def test_resnet_bodies_lambda_zero_is_the_plain_body():
    """ghost_ratio=0 gives ResNet-20 / ResNet-50 back: the same parameters, and the same function (ResNet-20: its
    weights copied in order)."""
    assert n_params(meta_model("g_ghost_resnet50", ghost_ratio=0.0)) == n_params(meta_model("resnet50")) == 25_557_032
    assert n_params(meta_model("g_ghost_resnet50")) == G_GHOST_RESNET50_PARAMS
    ref = create_model("resnet20").eval()
    ours = create_model("g_ghost_resnet20", ghost_ratio=0.0).eval()
    randomize_bn(ref)
    src, dst = ref.state_dict(), ours.state_dict()
    assert [v.shape for v in src.values()] == [v.shape for v in dst.values()]
    ours.load_state_dict(dict(zip(dst, src.values())))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_regnetx_lambda_zero_is_regnetx():
    """ghost_ratio=0 with the body's own group width (thin_group_scale=1) is the plain RegNetX-3.2GF (timm's
    regnetx_032: 15,296,552 parameters)."""
    assert n_params(meta_model("g_ghost_regnetx_032", ghost_ratio=0.0, thin_group_scale=1.0)) == REGNETX_032_PARAMS


def test_regnetx_032_layout():
    """Official layout: stages 1 and 4 (2 blocks) plain; stages 2-3 G-Ghost with thin group width int(0.75 * 48) =
    36 and thin widths int(C / 2 / 36) * 36."""
    m = meta_model("g_ghost_regnetx_032")
    s = m.stages
    assert isinstance(s[0], nn.Sequential) and isinstance(s[3], nn.Sequential)
    assert [(st.thin_channels, st.cheap_channels, len(st.layers)) for st in (s[1], s[2])] == [(72, 120, 4),
                                                                                             (216, 216, 13)]
    thin = s[1].layers[0].conv2.conv
    assert (thin.in_channels, thin.groups) == (72, 2)           # group width 36
    assert s[1].base.conv2.conv.groups == 4 and s[1].end.conv2.conv.groups == 4   # group width 48
    assert s[1].mix[1].in_channels == 192 + 4 * 72              # x1 and every thin block's output
    assert m.stem.conv.stride == (2, 2) and s[0][0].conv2.conv.stride == (2, 2)
    assert isinstance(m.head_drop, nn.Dropout) and m.head_drop.p == 0.2


@pytest.mark.parametrize("name", list(PAPER))
def test_regnetx_params(name):
    """The official code's counts (blockzoo's builds equal them), within 0.5% of the paper's table."""
    check_param_count(name, OFFICIAL[name][0], PAPER[name][0], tol=0.005)


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n == "g_ghost_regnetx_032" else pytest.mark.slow)
                                  for n in PAPER])
def test_regnetx_macs(name):
    """MACs at 224 px equal the official code's and are within 3% of the paper's table."""
    assert check_macs_224(name, PAPER[name][1]) == OFFICIAL[name][1]


def test_g_ghost_body_is_cheaper_than_the_plain_body():
    """The paper's claim at equal width: G-Ghost-RegNetX-3.2GF 10.5M vs RegNetX-3.2GF 15.3M parameters (ours
    10,511,000 vs 15,296,552); G-Ghost ResNet-20 vs ResNet-20: fewer parameters and MACs at 32 px."""
    assert n_params(meta_model("g_ghost_regnetx_032")) < 0.7 * REGNETX_032_PARAMS
    ours, plain = create_model("g_ghost_resnet20"), create_model("resnet20")
    assert n_params(ours) == G_GHOST_RESNET20_PARAMS == 207_098 < n_params(plain) == 269_722
    assert macs(ours, (3, 32, 32)) == 33_609_344 < macs(plain, (3, 32, 32)) == 40_551_040


@pytest.mark.slow
def test_g_ghost_macs_vs_plain_bodies():
    """At 224 px and equal width: G-Ghost-RegNetX-3.2GF 1.802 GMACs / 10,511,000 parameters vs RegNetX-3.2GF 3.177 /
    15,296,552 (-43% / -31%); G-Ghost ResNet-50 3.103 GMACs vs ResNet-50's 4.089 (-24%) but 2.5% more parameters."""
    plain = create_model("g_ghost_regnetx_032", ghost_ratio=0.0, thin_group_scale=1.0)
    assert macs(plain, (3, 224, 224)) == 3_176_621_952 and n_params(plain) == REGNETX_032_PARAMS
    ours = get_model_spec("g_ghost_regnetx_032").reference
    assert ours["macs_224"] < 0.6 * 3_176_621_952 and ours["params_1000cls"] < 0.7 * REGNETX_032_PARAMS
    r50 = macs(create_model("g_ghost_resnet50"), (3, 224, 224))
    assert r50 == get_model_spec("g_ghost_resnet50").reference["macs_224"] == 3_103_260_672
    assert r50 < 0.8 * macs(create_model("resnet50"), (3, 224, 224)) == 0.8 * 4_089_184_256
    assert 1.02 < G_GHOST_RESNET50_PARAMS / 25_557_032 < 1.03


def test_small_variant_trains():
    """g_ghost_resnet20 fits a fixed batch of 32 px images within a few Adam steps (loss falls by half)."""
    torch.manual_seed(0)
    m = create_model("g_ghost_resnet20", num_classes=4)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
    losses = fit_losses(m, x, y, steps=8, lr=1e-2, optimizer=torch.optim.Adam)
    assert losses[-1] < 0.5 * losses[0], losses


def test_regnetx_small_stem():
    """stem='small' (3x3/1 stem, first stage at stride 1) runs a RegNetX body on 32 px inputs, ending at 4x4."""
    r = create_model("g_ghost_regnetx_032", stem="small", img_size=32, num_classes=10, in_chans=1).eval()
    with torch.no_grad():
        assert r(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert r.feature_info[-1]["reduction"] == 8


@pytest.mark.parametrize("kw, match", [
    (dict(ghost_ratio=1.0), "ghost_ratio"), (dict(ghost_ratio=-0.1), "ghost_ratio"),
    (dict(ghost_ratio=0.99), "no complicated path"), (dict(thin_group_scale=0.5), "RegNetX bodies only"),
    (dict(stem="cifar"), "stem"),
])
def test_bad_options(kw, match):
    with pytest.raises(ConfigError, match=match):
        create_model("g_ghost_resnet20", **kw)


@pytest.mark.parametrize("scale", [0.0, 1.5, 0.01])
def test_bad_thin_group_scale(scale):
    with pytest.raises(ConfigError, match="thin_group_scale"):
        meta_model("g_ghost_regnetx_032", thin_group_scale=scale)


def test_ibn_norms_take_the_resnet_positions():
    """norm='ibn_a': IBN after the first conv of the blocks of every stage but the last (IBN-Net's ResNet rule), BN
    elsewhere, so the mix's norms on its pooled 1x1 map stay BN and the model trains."""
    from blockzoo.blocks.norm.ibn import IBN
    m = create_model("g_ghost_resnet20", norm="ibn_a", num_classes=3)
    stage = m.stages[1]
    assert isinstance(stage.base.conv1.norm, IBN) and isinstance(stage.end.conv1.norm, IBN)
    assert not any(isinstance(b.conv1.norm, IBN) for b in (m.stages[2].base, m.stages[2].end))
    assert all(isinstance(n, nn.BatchNorm2d) for n in (stage.mix[2], stage.mix[5], stage.cheap[1]))
    m.train()(torch.randn(2, 3, 32, 32)).sum().backward()
