"""blockzoo.blocks.connection.hyper: hyper-connections (S001, Zhu et al., ICLR 2025): hand-computed width and depth
connections, n = 1 is the plain residual, the paper's initialisation is the Pre-Norm residual, dynamic HC with zero
dynamic weights is static HC, gradients, the parameter count, the trainer's no-decay group, the stream protocol in
the ResNet skeleton and its refusal elsewhere."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from blockzoo import ConfigError, create_block, create_model
from blockzoo.blocks.connection.hyper import HyperConnection, hc_param_count
from blockzoo.registry import IncompatibleBlockError, block_options
from blockzoo.train.config import TrainConfig
from blockzoo.train.trainer import build_optimizer
from helpers import n_params


def _copy(dst: nn.Module, src: nn.Module) -> nn.Module:
    """Load ``src``'s weights into ``dst`` (``dst`` may have more: its connection parameters)."""
    missing, unexpected = dst.load_state_dict(src.state_dict(), strict=False)
    assert not unexpected and all(".merge" in k for k in missing)   # resnet: merge, transformers: merges
    return dst


def test_registered_options():
    assert block_options("hyper_connection") == {"n": 4, "dynamic": False, "reduce": "sum"}


def test_n1_fixed_connections_are_the_plain_residual():
    s, b = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    for dynamic in (False, True):
        assert torch.equal(create_block("hyper_connection", 3, n=1, dynamic=dynamic)(s, b), s + b)


def test_hand_computed_width_and_depth():
    """n = 2, static: h0 = A_m^T H, H'_k = B_k T(h0) + sum_j A_r[j, k] h_j (paper Eq. 3-5)."""
    hc = HyperConnection(1, n=2)
    with torch.no_grad():
        hc.static_alpha.copy_(torch.tensor([[0.5, 1.0, 2.0], [0.25, 3.0, -1.0]]))   # rows j: [A_m | A_r]
        hc.static_beta.copy_(torch.tensor([2.0, -1.0]))
    h1, h2 = torch.tensor([1.0]).view(1, 1, 1, 1), torch.tensor([4.0]).view(1, 1, 1, 1)
    inp, mixed, beta = hc.width(torch.cat([h1, h2]))
    assert inp.item() == 0.5 * 1 + 0.25 * 4                               # 1.5
    assert mixed.flatten().tolist() == [1 * 1 + 3 * 4, 2 * 1 - 1 * 4]     # [13, -2]
    out = hc.depth(mixed, 10 * inp, beta)                                 # T(h0) = 10 h0 = 15
    assert out.flatten().tolist() == [2 * 15 + 13, -1 * 15 - 2]           # [43, -17]


def _pre_norm_layers(c: int, depth: int) -> nn.ModuleList:
    torch.manual_seed(0)
    return nn.ModuleList(nn.Sequential(nn.LayerNorm(c), nn.Linear(c, c), nn.GELU()) for _ in range(depth))


@pytest.mark.parametrize("dynamic", [False, True])
def test_init_equals_pre_norm_residual(dynamic):
    """With the paper's initialisation every stream of every layer is the Pre-Norm residual stream x + T(norm(x)),
    so the final sum is n times it and the final LayerNorm gives the Pre-Norm network's output."""
    n, c, depth = 4, 8, 5
    layers = _pre_norm_layers(c, depth)
    hcs = [HyperConnection(c, n=n, dynamic=dynamic, layer_index=k, channels_last=True) for k in range(depth)]
    x = torch.randn(2, 6, c)
    h, ref = hcs[0].expand(x), x
    for layer, hc in zip(layers, hcs):
        inp, mixed, beta = hc.width(h)
        h = hc.depth(mixed, layer(inp), beta)
        ref = ref + layer(ref)
        assert torch.allclose(h.unflatten(0, (n, -1)), ref.expand(n, -1, -1, -1), atol=1e-6)
    out = hcs[-1].reduce(h)
    assert torch.allclose(out, n * ref, atol=1e-5)
    final = nn.LayerNorm(c)
    assert torch.allclose(final(out), final(ref), atol=1e-4)


def test_initial_width_connection_reads_stream_k_mod_n():
    hc = HyperConnection(2, n=3, layer_index=4)
    assert hc.static_alpha[:, 0].tolist() == [0.0, 1.0, 0.0]          # e_{4 mod 3}
    assert torch.equal(hc.static_alpha[:, 1:], torch.eye(3)) and hc.static_beta.tolist() == [1.0] * 3
    hc.set_layer_index(2)
    assert hc.static_alpha[:, 0].tolist() == [0.0, 0.0, 1.0]


def test_dynamic_zero_equals_static():
    torch.manual_seed(0)
    static, dynamic = HyperConnection(6, n=3), HyperConnection(6, n=3, dynamic=True)
    with torch.no_grad():
        for p in (static.static_alpha, static.static_beta):
            p.normal_()
        dynamic.static_alpha.copy_(static.static_alpha)
        dynamic.static_beta.copy_(static.static_beta)
        dynamic.dynamic_alpha_scale.fill_(0.7)
        dynamic.dynamic_beta_scale.fill_(-0.3)   # any scale: the zero dynamic weights give tanh(0) = 0
        dynamic.norm.weight.normal_()
    h, y = torch.randn(3 * 2, 6, 4, 5), torch.randn(2, 6, 4, 5)
    (i1, m1, b1), (i2, m2, b2) = static.width(h), dynamic.width(h)
    assert torch.allclose(i1, i2, atol=1e-6) and torch.allclose(m1, m2, atol=1e-6)
    assert torch.allclose(static.depth(m1, y, b1), dynamic.depth(m2, y, b2), atol=1e-6)


def test_dynamic_weights_depend_on_the_input():
    torch.manual_seed(0)
    hc = HyperConnection(4, n=2, dynamic=True)
    with torch.no_grad():
        hc.dynamic_alpha_fn.normal_()
        hc.dynamic_beta_fn.normal_()
    h = torch.randn(2 * 1, 4, 3, 3)
    _, _, beta = hc.width(h)
    assert beta.shape == (2, 1, 3, 3) and beta.std() > 0
    assert (beta - 1).abs().max() <= 0.01 + 1e-7                          # |s_b tanh(.)| <= s_b = 0.01 at init


@pytest.mark.parametrize("dynamic", [False, True])
def test_gradients_reach_all_connection_parameters(dynamic):
    torch.manual_seed(0)
    m = create_model("resnet20", num_classes=3, connection=f"hyper_connection(n=3, dynamic={dynamic})")
    for hc in (mod for mod in m.modules() if isinstance(mod, HyperConnection)):
        if dynamic:   # at the zero init the scales' gradient is tanh(0) = 0; move off it
            with torch.no_grad():
                hc.dynamic_alpha_fn.normal_(0, 0.1)
                hc.dynamic_beta_fn.normal_(0, 0.1)
    m(torch.randn(2, 3, 16, 16)).square().sum().backward()
    names = [n for n, _ in m.named_parameters() if ".merge." in n]
    assert names and len(names) == 9 * (8 if dynamic else 2)   # + the norm's weight and bias
    for name, p in m.named_parameters():
        if ".merge." in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("n,c", [(1, 8), (4, 16), (8, 64)])
def test_parameter_count(n, c):
    """Per layer: the (n+1) x (n+1) HC matrix less its fixed zero corner, n(n+2); dynamic adds W_a (C x (n+1)),
    W_b (C), the two scales and the norm's 2C."""
    assert n_params(create_block("hyper_connection", c, n=n)) == hc_param_count(n, c, False) == n * (n + 2)
    dyn = create_block("hyper_connection", c, n=n, dynamic=True)
    assert n_params(dyn) == hc_param_count(n, c, True) == n * (n + 2) + c * (n + 2) + 2 + 2 * c


def test_parameter_count_in_resnet20():
    """resnet20 has 9 units; the dynamic weights read each unit's input width (16 x 7, then 16, 32 x 3, 32, 64 x 2)."""
    plain = n_params(create_model("resnet20"))
    assert n_params(create_model("resnet20", connection="hyper_connection")) - plain == 9 * hc_param_count(4, 1, False)
    widths = [16] * 3 + [16, 32, 32] + [32, 64, 64]
    extra = sum(hc_param_count(2, c, True) for c in widths)
    assert n_params(create_model("resnet20", connection="hyper_connection(n=2, dynamic=True)")) - plain == extra


def test_trainer_does_not_decay_static_weights():
    m = create_model("resnet20", num_classes=3, connection="hyper_connection(dynamic=True)")
    static = {id(p) for n, p in m.named_parameters() if n.endswith(("static_alpha", "static_beta"))}
    dyn_fn = {id(p) for n, p in m.named_parameters() if n.endswith("dynamic_alpha_fn")}
    for cfg in (TrainConfig(lr=0.1, weight_decay=1e-3), TrainConfig(lr=0.1, weight_decay=1e-3, wd_norm_bias=True)):
        opt = build_optimizer(m, cfg.resolved())
        decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
        assert static and not static & decayed
        assert dyn_fn <= decayed   # the dynamic projection is an ordinary 2-D weight


def test_n1_resnet_equals_plain_residual():
    torch.manual_seed(0)
    ref = create_model("resnet20", num_classes=5)
    hc = _copy(create_model("resnet20", num_classes=5, connection="hyper_connection(n=1)"), ref)
    x = torch.randn(3, 3, 16, 16)
    for mode in (True, False):
        ref.train(mode)
        hc.train(mode)
        assert torch.equal(hc(x), ref(x))


@pytest.mark.parametrize("dynamic", [False, True])
def test_resnet_at_init_carries_n_copies_of_the_residual_stream(dynamic):
    """At init every stream of a hyper-connected ResNet is the plain ResNet's stream: the trunk's features are n
    times the plain ones, and so are the stage feature maps (the sum of the streams); the stem map is the same."""
    torch.manual_seed(0)
    ref = create_model("resnet20", num_classes=5).eval()
    hc = _copy(create_model("resnet20", num_classes=5, connection=f"hyper_connection(n=3, dynamic={dynamic})"),
               ref).eval()
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        assert torch.allclose(hc.forward_features(x), 3 * ref.forward_features(x), atol=1e-4)   # fp32 sums
        maps, ref_maps = hc.forward_intermediates(x, intermediates_only=True), ref.forward_intermediates(
            x, intermediates_only=True)
    assert [m.shape for m in maps] == [m.shape for m in ref_maps]
    assert torch.equal(maps[0], ref_maps[0])
    for a, b in zip(maps[1:], ref_maps[1:]):
        assert torch.allclose(a, 3 * b, atol=1e-4)


def test_mean_reduce_makes_the_initialised_resnet_the_plain_one():
    """reduce="mean" (for networks without a final norm): at init the output is the plain ResNet's, not n times it."""
    torch.manual_seed(0)
    ref = create_model("resnet20", num_classes=5).eval()
    hc = _copy(create_model("resnet20", num_classes=5, connection="hyper_connection(n=4, reduce='mean')"), ref).eval()
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        assert torch.allclose(hc(x), ref(x), atol=1e-5)
        maps = hc.forward_intermediates(x, intermediates_only=True)
        ref_maps = ref.forward_intermediates(x, intermediates_only=True)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(maps, ref_maps))
    with pytest.raises(ConfigError):
        create_block("hyper_connection", 8, reduce="max")


def test_resnet_traces_with_fx():
    torch.manual_seed(0)
    m = create_model("resnet20", num_classes=3, connection="hyper_connection(n=2, dynamic=True)").eval()
    for hc in (mod for mod in m.modules() if isinstance(mod, HyperConnection)):
        with torch.no_grad():
            hc.dynamic_alpha_fn.normal_(0, 0.1)
    x = torch.randn(2, 3, 11, 13)
    gm = torch.fx.symbolic_trace(m)
    with torch.no_grad():
        assert torch.allclose(gm(x), m(x), atol=1e-6)


def test_one_stream_count_per_trunk():
    with pytest.raises(IncompatibleBlockError, match="same"):
        create_model("resnet20", connection="[hyper_connection, residual, hyper_connection]")
    with pytest.raises(IncompatibleBlockError, match="same"):
        create_model("resnet20", connection="[hyper_connection(n=2), hyper_connection, hyper_connection]")


@pytest.mark.parametrize("model", ["g_ghost_resnet20", "halonet_h0_small", "inception_resnet_v1_small", "wrn_16_1"])
def test_refused_where_the_skeleton_carries_one_stream(model):
    with pytest.raises(IncompatibleBlockError, match="residual streams"):
        create_model(model, num_classes=3, connection="hyper_connection")


@pytest.mark.parametrize("opts", [{"n": 0}, {"n": 2.0}, {"n": True}, {"dynamic": "yes"}])
def test_bad_options(opts):
    with pytest.raises(ConfigError):
        create_block("hyper_connection", 8, **opts)


# ----------------------------------------------------------------------------- the ViT and MetaFormer skeletons
_VIT = dict(num_classes=3, img_size=16, patch_size=4, embed_dim=24, depth=3, num_heads=2)


def _vit(connection=None):
    from blockzoo.models.common.vit import VisionTransformer
    torch.manual_seed(0)
    return VisionTransformer(connection=connection, **_VIT)


def test_vit_n1_equals_plain_vit():
    ref, hc = _vit(), _vit("hyper_connection(n=1)")
    _copy(hc, ref)
    x = torch.randn(2, 3, 16, 16)
    for mode in (True, False):
        ref.train(mode)
        hc.train(mode)
        assert torch.equal(hc(x), ref(x))


@pytest.mark.parametrize("dynamic", [False, True])
def test_vit_at_init_is_the_pre_norm_vit(dynamic):
    """The paper's ViT setting: one HC per attention / MLP sub-layer (2 per block); at init the output after the final
    LayerNorm is the Pre-Norm ViT's (the streams' sum is n times the residual stream; the norm removes the factor)."""
    ref, hc = _vit(), _vit(f"hyper_connection(n=4, dynamic={dynamic})")
    _copy(hc, ref).eval()
    ref.eval()
    assert [m.layer_index for m in hc.modules() if isinstance(m, HyperConnection)] == list(range(6))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(hc(x), ref(x), atol=1e-4)
        maps, ref_maps = hc.forward_intermediates(x, intermediates_only=True), ref.forward_intermediates(
            x, intermediates_only=True)
    for a, b in zip(maps, ref_maps):
        assert torch.allclose(a, 4 * b, atol=1e-4)
    assert torch.fx.symbolic_trace(hc)(x).shape == (2, 3)


def test_metaformer_block_trunk():
    """MetaFormer blocks with hyper-connections (NCHW streams): n = 1 is the plain block; with n = 3 at init the
    trunk's output is 3 times the plain trunk's."""
    from blockzoo.blocks.common.layers import LayerNorm2d
    from blockzoo.blocks.common.metaformer import MetaFormerBlock
    from blockzoo.blocks.connection.hyper import stream_trunk

    def trunk(connection):
        torch.manual_seed(0)
        blocks = [MetaFormerBlock(8, mixer=nn.Conv2d(8, 8, 3, padding=1), norm_layer=LayerNorm2d, act_layer=nn.GELU,
                                  ls_init_value=None, connection=connection) for _ in range(3)]
        if connection is not None:
            stream_trunk([b.merges for b in blocks], [m for b in blocks for m in b.merges], "trunk")
        return nn.Sequential(*blocks)

    ref = trunk(None)
    x = torch.randn(2, 8, 5, 6)
    with torch.no_grad():
        assert torch.equal(trunk("hyper_connection(n=1)")(x), ref(x))
        assert torch.allclose(trunk("hyper_connection(n=3, dynamic=True)")(x), 3 * ref(x), atol=1e-5)
        assert torch.allclose(trunk("residual")(x), ref(x))


@pytest.mark.slow
def test_resnet_exports_with_torch_export():
    m = create_model("resnet20", num_classes=3, connection="hyper_connection(n=2, dynamic=True)").eval()
    x = torch.randn(2, 3, 16, 16)
    ep = torch.export.export(m, (x,))
    with torch.no_grad():
        assert torch.allclose(ep.module()(x), m(x), atol=1e-6)
