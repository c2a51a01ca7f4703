"""The ``connection`` slot of the MetaFormer skeleton and of the registered ViT families (vit/deit, deepvit, convit):
hyper-connections (S001, Zhu et al., ICLR 2025) as a drop-in replacement of the blocks' ``x + F(x)`` sums.

Invariants: the default (unset or ``"residual"``) is the model as it was (pinned structure, same outputs); with
``n = 1`` and the fixed initial connections the model is the plain one with the same weights; at initialisation any
``n`` gives the plain model's output (every stream is the residual stream, the final norm removes the factor ``n``)
and ``n`` times its stage feature maps, across the downsampling layers; blocks that cannot carry it are refused at
build time; the hyper-connected models trace (torch.fx, torch.export) and their static connection weights are not
weight-decayed."""
from __future__ import annotations

import hashlib
import inspect

import pytest
import torch
import torch.nn as nn

from blockzoo import create_model
from blockzoo.blocks.connection.hyper import HyperConnection
from blockzoo.errors import IncompatibleBlockError
from blockzoo.models.metaformer import MetaFormer
from blockzoo.registry import get_model_spec, list_models
from blockzoo.train.config import TrainConfig
from blockzoo.train.trainer import build_optimizer

# PoolFormer-like (GroupNorm(1), overlapping downsampling without a norm, norm before pooling) and HorNet /
# ConvNeXt-like (LayerNorm2d, norm -> 2x2 conv downsampling, LayerNorm after pooling) MetaFormer-block trunks
_MF = {
    "pool": dict(mixer="pool", norm="gn(groups=1)", downsample="overlap", head_norm="pre"),
    "dwconv": dict(mixer="dwconv", norm="ln2d", downsample="patch", head_norm="post"),
    "metanext": dict(mixer="dwconv", norm="ln2d", downsample="patch", head_norm="post", block="metanext"),
}
_VITS = {"vit_tiny_patch4_32": dict(depth=3), "deepvit_tiny_patch4_32": dict(depth=3),
         "convit_tiny_patch4_32": dict(depth=3, local_up_to_layer=2),
         "deit_tiny_distilled_patch16_224": dict(depth=2, patch_size=4)}


def _metaformer(kind: str, connection=None, seed: int = 0, **kw) -> MetaFormer:
    torch.manual_seed(seed)
    cfg = dict(depths=(1, 2, 1), dims=(8, 16, 24), num_classes=3, in_chans=1, img_size=16, block="metaformer",
               stem="small", ls_init_value=None)
    cfg.update(_MF[kind])
    return MetaFormer(**{**cfg, **kw}, connection=connection)


def _vit(name: str, connection=None, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    kw = {} if connection is None else {"connection": connection}
    return create_model(name, num_classes=3, in_chans=1, img_size=16, embed_dim=24, num_heads=2, **_VITS[name], **kw)


def _copy(dst: nn.Module, src: nn.Module) -> nn.Module:
    """Load ``src``'s weights into ``dst``, which has only its connection parameters more."""
    missing, unexpected = dst.load_state_dict(src.state_dict(), strict=False)
    assert not unexpected and missing and all(".merges." in k for k in missing)
    return dst


def _hcs(m: nn.Module) -> list[HyperConnection]:
    return [mod for mod in m.modules() if isinstance(mod, HyperConnection)]


def _x() -> torch.Tensor:
    return torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------------------------------- default unchanged
# (state-dict keys, parameters, modules, sha1 of the key list, sum of the eval logits of a seeded model on a seeded
# 2 x 3 x 32 x 32 input or None): measured on the code before the slot existed
_PINNED = {
    "vit_tiny_patch4_32": ({}, 152, 5_362_762, 212, "ed7132c44f1a", 1.0910742),
    "deepvit_tiny_patch4_32": ({}, 312, 5_960_362, 312, "db28beaf3d25", None),
    "convit_tiny_patch4_32": ({}, 180, 5_355_858, 232, "2fcedfd57d54", 0.8065777),
    "poolformer_s12": (dict(img_size=32, stem="small"), 134, 11_399_754, 193, "0c0dcc8e1bf1", -1.1813731),
    "convnext_atto": ({}, 128, 3_377_730, 161, "7453b408620d", None),
}


@pytest.mark.parametrize("name", sorted(_PINNED))
def test_default_is_the_model_without_the_slot(name):
    kw, keys, params, modules, digest, logits = _PINNED[name]
    torch.manual_seed(0)
    m = create_model(name, num_classes=10, **kw).eval()
    sd = m.state_dict()
    assert (len(sd), sum(p.numel() for p in m.parameters()), len(list(m.named_modules()))) == (keys, params, modules)
    assert hashlib.sha1("\n".join(sd).encode()).hexdigest()[:12] == digest
    assert not any("merges" in n for n, _ in m.named_modules())
    if logits is not None:
        torch.manual_seed(1)
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            assert m(x).double().sum().item() == pytest.approx(logits, abs=1e-5)


@pytest.mark.parametrize("make", [lambda c: _metaformer("pool", c), lambda c: _vit("convit_tiny_patch4_32", c)])
def test_residual_value_is_the_unset_default(make):
    """``connection="residual"`` (the registered default) builds exactly the model without the option."""
    ref, res = make(None), make("residual")
    assert list(ref.state_dict()) == list(res.state_dict())
    assert [n for n, _ in ref.named_modules()] == [n for n, _ in res.named_modules()]
    with torch.no_grad():
        assert torch.equal(ref.eval()(_x()), res.eval()(_x()))


def test_registered_vit_families_declare_the_slot():
    for name in ("vit_tiny_patch4_32", "deit_small_patch16_224", "deit_tiny_distilled_patch16_224", "deepvit_16b",
                 "convit_tiny"):
        assert get_model_spec(name).slots["connection"] == "residual"


# ----------------------------------------------------------------------------------------- n = 1 is the plain net
@pytest.mark.parametrize("kind", sorted(_MF))
def test_metaformer_n1_equals_plain_residual(kind):
    """n = 1 with the fixed initial connections (A_m = 1, A_r = 1, B = 1) is x + F(x) for both sub-layers of every
    block: the same outputs as the plain model with the same weights, in training mode (drop path, layer scale) too."""
    kw = dict(drop_path_rate=0.2, ls_init_value=0.5)
    ref = _metaformer(kind, **kw)
    hc = _copy(_metaformer(kind, "hyper_connection(n=1)", seed=3, **kw), ref)
    assert len(_hcs(hc)) == (1 if kind == "metanext" else 2) * 4 and hc.streams == 1   # MetaNeXt: one sub-layer
    for mode in (True, False):
        ref.train(mode)
        hc.train(mode)
        torch.manual_seed(5)
        y_ref = ref(_x())
        torch.manual_seed(5)
        assert torch.allclose(hc(_x()), y_ref, rtol=0, atol=1e-6)   # float rounding (the streams' memory layout)


@pytest.mark.parametrize("name", sorted(_VITS))
def test_registered_vit_n1_equals_plain_residual(name):
    ref = _vit(name)
    hc = _copy(_vit(name, "hyper_connection(n=1)", seed=3), ref)
    assert len(_hcs(hc)) == 2 * _VITS[name]["depth"]
    with torch.no_grad():
        assert torch.equal(hc.eval()(_x()), ref.eval()(_x()))


# ------------------------------------------------------------------------------- n streams across the whole trunk
@pytest.mark.parametrize("kind", sorted(_MF))
@pytest.mark.parametrize("dynamic", [False, True])
def test_metaformer_at_init_is_the_plain_model(kind, dynamic):
    """At the paper's initialisation every stream is the residual stream through all blocks and downsampling layers
    (applied to each stream): the stage maps are n times the plain ones, the head's norm removes the factor."""
    n = 3
    ref = _metaformer(kind)
    hc = _copy(_metaformer(kind, f"hyper_connection(n={n}, dynamic={dynamic})", seed=3), ref).eval()
    ref.eval()
    subs = 4 if kind == "metanext" else 8
    assert [m.layer_index for m in _hcs(hc)] == list(range(subs))     # one per sub-layer, in trunk order
    assert hc.stages[0].blocks[0].merges.expands and hc.stages[-1].blocks[-1].merges.reduces
    with torch.no_grad():
        assert torch.allclose(hc(_x()), ref(_x()), atol=2e-4)   # up to the head norm's eps (pooled variance ~1e-3)
        maps = hc.forward_intermediates(_x(), intermediates_only=True)
        ref_maps = ref.forward_intermediates(_x(), intermediates_only=True)
    for a, b in zip(maps, ref_maps, strict=True):   # the last stage's map is the trunk's output, before the norm
        assert a.shape == b.shape and torch.allclose(a, n * b, atol=1e-5)


def test_metaformer_mean_reduce_feature_maps_are_the_plain_ones():
    ref, hc = _metaformer("pool"), _metaformer("pool", "hyper_connection(n=2, reduce='mean')", seed=3)
    _copy(hc, ref)
    with torch.no_grad():
        maps = hc.eval().forward_intermediates(_x(), intermediates_only=True)
        ref_maps = ref.eval().forward_intermediates(_x(), intermediates_only=True)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(maps, ref_maps, strict=True))


def test_metaformer_streams_are_mixed_by_the_learned_connections():
    """Hand-set depth connections in a one-block trunk (both streams start as the stem output s): the token-mixer
    sub-layer writes 2 F(s) into stream 0 only (B = (2, 0)), the MLP sub-layer writes nothing (B = 0): the sum of the
    streams is (s + 2 F(s)) + s."""
    hc = _metaformer("pool", "hyper_connection(n=2)", depths=(1,), dims=(8,), head_norm=None).eval()
    first, second = _hcs(hc)
    blk = hc.stages[0].blocks[0]
    with torch.no_grad():
        first.static_beta.copy_(torch.tensor([2.0, 0.0]))
        second.static_beta.zero_()
        s = hc.stem(_x())
        expected = 2 * s + 2 * blk._mixer_branch(s)
        assert torch.allclose(hc.forward_features(_x()), expected, atol=1e-6)


# --------------------------------------------------------------------------------------------- build-time refusals
def test_blocks_without_the_option_are_refused_naming_the_families():
    with pytest.raises(IncompatibleBlockError, match="UniRepLKNetBlock.*convnext.*hornet.*poolformer"):
        get_model_spec("unireplknet_a").fn(num_classes=3, connection="hyper_connection(n=2)")
    get_model_spec("convnext_atto").fn(num_classes=3, connection="residual")   # the plain sums: accepted


@pytest.mark.slow
def test_every_metaformer_family_carries_or_refuses_hyper_connections():
    """Over every registered family on the skeleton (its first model, built on the meta device): the streams run
    through all blocks, or the build is refused; a connection is never silently dropped."""
    carried, first = set(), {}
    for name in list_models():
        if inspect.signature(get_model_spec(name).fn).return_annotation is MetaFormer:
            first.setdefault(get_model_spec(name).family, name)
    assert {"convnext", "hornet", "poolformer", "unireplknet"} <= first.keys()
    for family, name in sorted(first.items()):
        spec = get_model_spec(name)
        try:
            with torch.device("meta"):
                m = spec.fn(num_classes=3, connection="hyper_connection(n=2)")
        except IncompatibleBlockError as e:
            assert "leave connection unset" in str(e)
            continue
        blocks = [b for stage in m.stages for b in stage.blocks]
        assert m.streams == 2 and len(_hcs(m)) == sum(len(b.merges) for b in blocks)
        carried.add(family)
    assert carried == {"convnext", "convnext_small_input", "hornet", "inceptionnext", "pfnet", "poolformer"}


def test_one_stream_count_per_metaformer_trunk():
    with pytest.raises(IncompatibleBlockError, match="same"):
        _metaformer("pool", ["hyper_connection(n=2)", "residual", "hyper_connection(n=2)"])
    with pytest.raises(IncompatibleBlockError, match="same"):
        _metaformer("pool", ["hyper_connection(n=2)", "hyper_connection(n=3)", "hyper_connection(n=2)"])
    assert _metaformer("pool", ["scaled_residual", "residual", "scaled_residual"]).streams == 0


# ------------------------------------------------------------------------------ forward, backward, traces, decay
def _perturbed(m: nn.Module) -> nn.Module:
    """Connections away from their initial values (so a trace that dropped them would differ)."""
    with torch.no_grad():
        for hc in _hcs(m):
            hc.static_alpha.add_(0.1 * torch.randn_like(hc.static_alpha))
            if hc.dynamic:
                hc.dynamic_alpha_fn.normal_(0, 0.1)
    return m


@pytest.mark.parametrize("make", [lambda c: _metaformer("dwconv", c), lambda c: _vit("vit_tiny_patch4_32", c)])
def test_n2_forward_backward_and_fx(make):
    m = _perturbed(make("hyper_connection(n=2, dynamic=True)"))
    y = m.train()(_x())
    assert y.shape == (2, 3) and torch.isfinite(y).all()
    y.sum().backward()
    assert all(hc.static_alpha.grad is not None and hc.dynamic_alpha_fn.grad is not None for hc in _hcs(m))
    m.eval()
    gm = torch.fx.symbolic_trace(m)
    with torch.no_grad():
        assert torch.allclose(gm(_x()), m(_x()), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("make", [lambda c: _metaformer("pool", c), lambda c: _vit("vit_tiny_patch4_32", c)])
def test_hyper_connected_models_export(make):
    m = _perturbed(make("hyper_connection(n=2, dynamic=True)")).eval()
    ep = torch.export.export(m, (_x(),))
    with torch.no_grad():
        assert torch.allclose(ep.module()(_x()), m(_x()), atol=1e-6)


@pytest.mark.parametrize("make", [lambda c: _metaformer("pool", c), lambda c: _vit("convit_tiny_patch4_32", c)])
def test_static_connection_weights_are_not_decayed(make):
    m = make("hyper_connection(n=2, dynamic=True)")
    static = {id(p) for n, p in m.named_parameters() if n.endswith(("static_alpha", "static_beta"))}
    assert len(static) == 2 * len(_hcs(m))
    opt = build_optimizer(m, TrainConfig(lr=0.1, weight_decay=1e-3).resolved())
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert not static & decayed
