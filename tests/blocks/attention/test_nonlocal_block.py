"""blockzoo.blocks.attention.nonlocal_block: the non-local and the softmax-free non-local blocks, hand-computed and
inside ResNet-20."""
import math

import pytest
import torch
import torch.nn as nn

from blockzoo import create_block, create_model
from blockzoo.blocks.attention.nonlocal_block import NonLocal2d, SoftmaxFreeNonLocal2d
from blockzoo.profile import count_macs
from blockzoo.registry import get_info
from helpers import BNF, nparams


def _set(conv: nn.Conv2d, w) -> None:
    conv.weight.copy_(torch.tensor(w, dtype=torch.float32).view_as(conv.weight))


def _identity_check(model: nn.Module, cls: type, x: torch.Tensor) -> int:
    seen = []

    def hook(mod, inp, out):
        seen.append(torch.equal(out, inp[0]))

    handles = [mod.register_forward_hook(hook) for mod in model.modules() if isinstance(mod, cls)]
    with torch.no_grad():
        model.train()
        model(x)
        model.eval()
        model(x)
    for hd in handles:
        hd.remove()
    assert seen and all(seen)
    return len(handles)


def test_nonlocal_hand_computed():
    m = create_block("nonlocal", 2).eval()                                      # C' = 1
    assert m.inner == 1 and m.theta.bias is None and m.w_z.bias is None
    with torch.no_grad():
        _set(m.theta, [[1.0, 0.0]])
        _set(m.phi, [[0.0, 1.0]])
        _set(m.g, [[1.0, 1.0]])
        _set(m.w_z, [[2.0], [-1.0]])
        m.bn.weight.fill_(1.0)                                                  # undo the zero init
    x = torch.tensor([[[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]],
                      [[1.0, 0.0, -0.5], [0.3, 2.0, 1.0]]]).unsqueeze(0)         # (1, 2, 2, 3), N = 6
    xs = x[0].reshape(2, 6)
    theta, phi, g = xs[0], xs[1], xs[0] + xs[1]
    y = torch.empty(6)
    for i in range(6):
        e = [math.exp(theta[i].item() * phi[j].item()) for j in range(6)]
        y[i] = sum(e[j] * g[j].item() for j in range(6)) / sum(e)
    expected = torch.stack([2 * y, -y]).view(1, 2, 2, 3) * BNF + x             # z = BN(W_z y) + x
    assert torch.allclose(m(x), expected, atol=1e-6)


def test_nonlocal_scale_and_bias_options():
    x = torch.randn(2, 8, 3, 5)
    a = create_block("nonlocal", 8, inner_channels=4, scale=True).eval()       # logits * 4^-1/2
    b = create_block("nonlocal", 8, inner_channels=4).eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        a.bn.weight.fill_(1.0)
        b.bn.weight.fill_(1.0)
        b.theta.weight.mul_(0.5)                                                # same logits without the scale
        assert torch.allclose(a(x), b(x), atol=1e-6)
    c, ci = 8, 4
    assert nparams(b) == 4 * c * ci + 2 * c
    assert nparams(create_block("nonlocal", 8, inner_channels=4, bias=True)) == 4 * c * ci + 2 * c + 3 * ci + c


def test_nonlocal_params_and_macs():
    for c, (h, w) in ((32, (12, 10)), (16, (5, 7)), (8, (1, 1))):
        m = create_block("nonlocal", c)
        ci, n = c // 2, h * w
        assert nparams(m) == 4 * c * ci + 2 * c
        assert count_macs(m, (c, h, w)).macs == 4 * c * ci * n + 2 * ci * n * n
        m.eval()
        x = torch.randn(1, c, h, w)
        assert torch.equal(m(x), x)                                             # identity at init, any H x W
    assert "quadratic" in get_info("nonlocal")["notes"]


def test_nonlocal_subsample():
    m = create_block("nonlocal", 4, subsample=True).eval()
    with torch.no_grad():
        m.bn.weight.fill_(1.0)
    x = torch.randn(1, 4, 2, 2)                                                 # one key/value after the 2x2 max-pool
    with torch.no_grad():
        g = m.g(x).amax((2, 3), keepdim=True)                                   # softmax over one key = 1
        expected = x + m.bn(m.w_z(g.expand(1, 2, 2, 2)))
        assert torch.allclose(m(x), expected, atol=1e-6)
    assert m(torch.randn(1, 4, 3, 5)).shape == (1, 4, 3, 5)                     # odd sizes (ceil_mode)
    assert m(torch.randn(1, 4, 1, 1)).shape == (1, 4, 1, 1)
    c, ci, n = 16, 8, 48
    full = count_macs(create_block("nonlocal", c), (c, 8, 6)).macs - 4 * c * ci * n
    sub = count_macs(create_block("nonlocal", c, subsample=True), (c, 8, 6)).macs - 4 * c * ci * n
    assert full == 2 * ci * n * n and sub * 4 == full                           # 4x fewer pairs


def test_nonlocal_identity_in_resnet20():
    m = create_model("resnet20", attn="nonlocal")
    blocks = [b for b in m.modules() if isinstance(b, NonLocal2d)]
    assert len(blocks) == 9
    assert all(torch.count_nonzero(b.bn.weight) == 0 for b in blocks)         # survived the backbone's generic init
    assert all(torch.count_nonzero(b.theta.weight) > 0 for b in blocks)        # ... which did init the convs
    assert _identity_check(m, NonLocal2d, torch.randn(2, 3, 32, 32)) == 9


@pytest.mark.parametrize("order", ["auto", "qk", "kv"])
def test_sfnl_hand_computed(order):
    m = create_block("sfnl", 4, heads=2, order=order).eval()                   # C' = 2, d = 1 per head
    assert m.inner == 2 and m.head_dim == 1 and all(c.bias is None for c in (m.theta, m.phi, m.g, m.w_z))
    wt = [[1.0, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, -1.0]]
    wp = [[0.0, 1.0, 0.0, 0.5], [1.0, 0.0, -0.5, 0.0]]
    wg = [[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]
    wz = [[1.0, 0.0], [0.0, 2.0], [1.0, -1.0], [0.5, 0.5]]
    with torch.no_grad():
        _set(m.theta, wt)
        _set(m.phi, wp)
        _set(m.g, wg)
        _set(m.w_z, wz)
        m.bn.weight.fill_(1.0)
    x = torch.randn(1, 4, 2, 3)                                                 # N = 6
    xs = x[0].reshape(4, 6)
    q, k, v = torch.tensor(wt) @ xs, torch.tensor(wp) @ xs, torch.tensor(wg) @ xs   # (2, 6): head h = row h
    y = torch.zeros(2, 6)
    for h in range(2):
        for i in range(6):
            y[h, i] = sum(q[h, i] * k[h, j] * v[h, j] for j in range(6)) / math.sqrt(6)   # no softmax
    expected = (torch.tensor(wz) @ y).view(1, 4, 2, 3) * BNF + x
    assert torch.allclose(m(x), expected, atol=1e-5)


def test_sfnl_scales():
    x = torch.randn(2, 8, 3, 4)                                                 # N = 12
    ref = create_block("sfnl", 8, order="qk").eval()                            # single head, d = 4
    with torch.no_grad():
        ref.bn.weight.fill_(1.0)
        xs = x.flatten(2)
        q, k, v = (torch.einsum("oc,ncl->nol", conv.weight[:, :, 0, 0], xs) for conv in (ref.theta, ref.phi, ref.g))
        raw = torch.einsum("ndi,ndj,nej->nei", q, k, v)                         # sum_j (q_i . k_j) v_j
        for scale, factor in (("sqrt_n", 12 ** -0.5), ("n", 1 / 12), ("sqrt_nd", 48 ** -0.5)):
            m = create_block("sfnl", 8, scale=scale).eval()
            m.load_state_dict(ref.state_dict())
            expected = x + ref.bn(ref.w_z((raw * factor).view(2, 4, 3, 4)))
            assert torch.allclose(m(x), expected, atol=1e-5), scale
    with pytest.raises(ValueError, match="scale"):
        create_block("sfnl", 8, scale="softmax")


def test_sfnl_multihead_cost():
    c, h, w = 32, 6, 5
    n, ci = h * w, c // 2
    conv_macs = 4 * c * ci * n
    p1 = nparams(create_block("sfnl", c))
    assert p1 == 4 * c * ci + 2 * c
    for heads in (1, 2, 4, 8, 16):
        d = ci // heads
        assert nparams(create_block("sfnl", c, heads=heads)) == p1                         # no extra parameters
        assert count_macs(create_block("sfnl", c, heads=heads, order="qk"), (c, h, w)).macs == \
            conv_macs + 2 * ci * n * n                                                     # N x N order: equal
        assert count_macs(create_block("sfnl", c, heads=heads, order="kv"), (c, h, w)).macs == \
            conv_macs + 2 * ci * d * n                                                     # associative: lower
    m1, m4 = create_block("sfnl", c, order="qk"), create_block("sfnl", c, heads=4, order="qk")
    assert count_macs(m4, (c, h, w)).macs == count_macs(m1, (c, h, w)).macs
    with pytest.raises(ValueError, match="heads must divide"):
        create_block("sfnl", c, heads=3)
    assert "quadratic" in get_info("sfnl")["notes"]


def test_sfnl_orders_agree_and_identity():
    x = torch.randn(2, 16, 3, 7)
    a = create_block("sfnl", 16, heads=2, order="qk").eval()
    b = create_block("sfnl", 16, heads=2, order="kv").eval()
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(x), x) and torch.equal(b(x), x)                       # zero-init BN: identity
    with torch.no_grad():
        for m in (a, b):
            m.bn.weight.fill_(1.0)
            m.bn.bias.fill_(0.1)
        assert torch.allclose(a(x), b(x), atol=1e-5) and not torch.allclose(a(x), x)


def test_sfnl_identity_in_resnet20():
    m = create_model("resnet20", attn="sfnl(heads=2)")
    blocks = [b for b in m.modules() if isinstance(b, SoftmaxFreeNonLocal2d)]
    assert len(blocks) == 9 and all(b.heads == 2 for b in blocks)
    assert all(torch.count_nonzero(b.bn.weight) == 0 and torch.count_nonzero(b.bn.bias) == 0 for b in blocks)
    assert _identity_check(m, SoftmaxFreeNonLocal2d, torch.randn(2, 3, 32, 30)) == 9
