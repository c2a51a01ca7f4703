"""blockzoo.blocks.attention.residual_attention: the attention module's invariants, mask topology, pre-activation
units (S105)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import create_block, create_model
from blockzoo.blocks.attention.residual_attention import PreActBottleneck, ResidualAttentionModule, SoftMaskBranch
from blockzoo.errors import ConfigError


def randomize_norms(m: nn.Module) -> None:
    """Non-trivial BN affine parameters and running statistics, so eval-mode checks are not near-identity."""
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            c = mod.num_features
            mod.weight.data = 0.5 + torch.rand(c, generator=g)
            mod.bias.data = torch.randn(c, generator=g) * 0.2
            mod.running_mean = torch.randn(c, generator=g) * 0.2
            mod.running_var = 0.5 + torch.rand(c, generator=g)


def zero_mask(module: ResidualAttentionModule) -> None:
    conv = module.mask.last_conv
    with torch.no_grad():
        conv.weight.zero_()
        if conv.bias is not None:
            conv.bias.zero_()


def _set(conv: nn.Conv2d, value: torch.Tensor) -> None:
    with torch.no_grad():
        conv.weight.copy_(value)


@pytest.mark.parametrize("mask_bias", [False, True])
def test_zero_mask_gives_one_and_a_half_trunk(mask_bias):
    m = ResidualAttentionModule(16, downsamples=2, p=1, t=2, mask_bias=mask_bias).eval()
    randomize_norms(m)
    x = torch.randn(2, 16, 11, 9)
    with torch.no_grad():
        trunk = m.trunk(m.pre(x))
        # with random weights the mask is not constant, so H != post(1.5 T): the check below can fail
        assert not torch.allclose(m(x), m.post(1.5 * trunk), atol=1e-4)
        zero_mask(m)
        assert torch.equal(m.soft_mask(x), torch.full_like(trunk, 0.5))   # sigmoid(0) = 0.5 exactly
        assert torch.allclose(m(x), m.post(1.5 * trunk), atol=1e-6)


def test_zero_mask_plug_in_form_is_exactly_one_and_a_half_x():
    m = create_block("resattn", 8, zero_init_mask=True)          # p = t = 0: H = (1 + M(x)) * x
    assert isinstance(m, ResidualAttentionModule) and len(m.pre) == len(m.trunk) == len(m.post) == 0
    assert torch.count_nonzero(m.mask.last_conv.weight) == 0
    x = torch.randn(2, 8, 7, 5)
    assert torch.equal(m(x), 1.5 * x)


def test_plug_in_form_is_one_plus_mask_times_x():
    m = create_block("resattn", 8)
    x = torch.randn(2, 8, 10, 6)
    mask = m.mask(x)
    assert not torch.allclose(mask, torch.full_like(mask, 0.5))
    assert torch.equal(m(x), (1 + mask) * x)


def test_tanh_gate_zero_mask_is_identity_on_trunk():
    m = ResidualAttentionModule(8, downsamples=1, p=0, t=1, gate="tanh").eval()
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        mask = m.soft_mask(x)
        assert (mask > -1).all() and (mask < 1).all() and (mask < 0).any()   # tanh: (-1, 1), not only positive
        zero_mask(m)
        assert torch.equal(m(x), m.trunk(x))                                  # 1 + tanh(0) = 1


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (13, 9), (28, 28), (31, 17)])
def test_mask_range_and_odd_sizes(size):
    m = ResidualAttentionModule(8, downsamples=3, p=1, t=2)
    x = torch.randn(2, 8, *size)
    mask = m.soft_mask(x)
    out = m(x)
    assert mask.shape == out.shape == x.shape
    assert (mask > 0).all() and (mask < 1).all()
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_mask_topology_matches_manual_composition():
    """Bottom-up (pool -> r units) x 3, r extra units at the lowest level, top-down with skip units at the two upper
    levels, bilinear (align_corners=True) to the exact skip / input sizes, then norm-act-conv-norm-act-conv-sigmoid."""
    mb = SoftMaskBranch(8, downsamples=3).eval()
    randomize_norms(mb)
    x = torch.randn(1, 8, 13, 9)
    with torch.no_grad():
        d0 = mb.down[0](F.max_pool2d(x, 3, 2, 1))     # 7 x 5
        d1 = mb.down[1](F.max_pool2d(d0, 3, 2, 1))    # 4 x 3
        d2 = mb.down[2](F.max_pool2d(d1, 3, 2, 1))    # 2 x 2
        assert d0.shape[-2:] == (7, 5) and d1.shape[-2:] == (4, 3) and d2.shape[-2:] == (2, 2)
        up = lambda t, size: F.interpolate(t, size=size, mode="bilinear", align_corners=True)  # noqa: E731
        y = mb.up[2](d2)
        y = mb.up[1](up(y, (4, 3)) + mb.skips[1](d1))
        y = mb.up[0](up(y, (7, 5)) + mb.skips[0](d0))
        expected = torch.sigmoid(mb.out(up(y, (13, 9))))
        assert torch.allclose(mb(x), expected, atol=1e-6)
    assert len(mb.skips) == 2 and len(mb.down) == len(mb.up) == 3


def test_caffe_pooling_sizes_at_56():
    """3x3/2 max-pool with padding 1 reproduces the prototxt's ceil-mode sizes 56 -> 28 -> 14 -> 7."""
    mb = SoftMaskBranch(8, downsamples=3)
    sizes = []
    hooks = [d.register_forward_hook(lambda mod, i, o: sizes.append(tuple(o.shape[-2:]))) for d in mb.down]
    mb(torch.randn(1, 8, 56, 56))
    for h in hooks:
        h.remove()
    assert sizes == [(28, 28), (14, 14), (7, 7)]


def test_mask_unit_counts_per_stage_setting():
    # official prototxt: stage 1 (3 pools) 8 units, stage 2 (2 pools) 5 units, stage 3 (1 pool) 2 units (r = 1)
    for n_down, units in ((3, 8), (2, 5), (1, 2)):
        mb = SoftMaskBranch(16, downsamples=n_down)
        assert sum(isinstance(u, PreActBottleneck) for u in mb.modules()) == units


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ConfigError, match="downsamples must be an integer >= 1"):
        SoftMaskBranch(8, downsamples=0)
    with pytest.raises(ConfigError, match="gate must be one of"):
        ResidualAttentionModule(8, gate="relu")
    with pytest.raises(ConfigError, match="p must be an integer >= 0"):
        ResidualAttentionModule(8, p=-1)
    with pytest.raises(ConfigError, match="at least 4 output channels"):
        PreActBottleneck(3, 3)
    model = create_model("resattnet56_cifar")
    with pytest.raises(ValueError, match="in_chans=1"):
        model(torch.randn(2, 1, 28, 28))


def test_preact_unit_identity_shortcut_hand_computed():
    u = PreActBottleneck(4, 4, norm="none")                 # mid = 1
    _set(u.conv1, torch.tensor([1.0, -1.0, 0.5, 0.0]).view(1, 4, 1, 1))
    w2 = torch.zeros(1, 1, 3, 3)
    w2[0, 0, 1, 1], w2[0, 0, 1, 2] = 2.0, 1.0               # centre and right neighbour
    _set(u.conv2, w2)
    _set(u.conv3, torch.tensor([1.0, 2.0, -1.0, 0.5]).view(4, 1, 1, 1))
    x = torch.tensor([[1.0, -2.0], [3.0, -1.0]]).view(1, 1, 2, 2).repeat(1, 4, 1, 1)
    x[:, 1] *= -1
    pre = x.clamp(min=0)                                        # pre-activation (norm = identity)
    h = (pre * torch.tensor([1.0, -1.0, 0.5, 0.0]).view(1, 4, 1, 1)).sum(1, keepdim=True).clamp(min=0)
    right = F.pad(h, (0, 1))[..., :, 1:]                        # value of the right neighbour (zero padded)
    g = (2 * h + right).clamp(min=0)
    expected = x + g * torch.tensor([1.0, 2.0, -1.0, 0.5]).view(1, 4, 1, 1)   # identity shortcut: raw x
    assert u.shortcut is None
    assert torch.allclose(u(x), expected)


def test_preact_unit_projection_uses_preactivated_input():
    u = PreActBottleneck(2, 4, stride=2, norm="none")
    for conv in (u.conv1, u.conv2, u.conv3):
        nn.init.zeros_(conv.weight)                             # branch = 0: output = shortcut only
    _set(u.shortcut, torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 2.0]]).view(4, 2, 1, 1))
    x = torch.randn(1, 2, 5, 4)
    pre = x.clamp(min=0)[..., ::2, ::2]                         # 1x1 stride-2 conv of relu(x)
    expected = torch.stack([pre[:, 0], pre[:, 1], pre[:, 0] + pre[:, 1], -pre[:, 0] + 2 * pre[:, 1]], 1)
    assert torch.allclose(u(x), expected)
    assert u(x).shape == (1, 4, 3, 2)


@pytest.mark.parametrize("align_corners", [True, False])
def test_resize_to_the_same_size_is_the_identity_and_the_module_traces(align_corners):
    """The mask resizes without a branch on the sizes; where they agree (here every level of a 2x2 input pools to
    1x1) the resize is exactly the identity, and the torch.fx graph gives eager's numbers at other sizes too."""
    mb = SoftMaskBranch(8, downsamples=3, align_corners=align_corners).eval()
    x = torch.randn(2, 8, 1, 1)
    assert torch.equal(mb._resize(x, x), x)
    m = ResidualAttentionModule(8, downsamples=3, align_corners=align_corners).eval()
    randomize_norms(m)
    gm = torch.fx.symbolic_trace(m)
    for size in [(2, 2), (13, 9)]:
        x = torch.randn(2, 8, *size)
        assert torch.equal(gm(x), m(x))
