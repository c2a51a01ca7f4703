"""Hand-computed checks for CBAM, DFC attention (GhostNetV2), the non-local and the softmax-free non-local blocks."""
import math

import pytest
import torch
import torch.nn as nn

from blockzoo import create_block, create_model
from blockzoo.blocks.attention.cbam import CBAM
from blockzoo.blocks.attention.nonlocal_block import NonLocal2d, SoftmaxFreeNonLocal2d
from blockzoo.profile import count_macs
from blockzoo.registry import IncompatibleBlockError, get_block_spec, get_info

EPS = 1e-5
BNF = 1 / math.sqrt(1 + EPS)  # a BatchNorm in eval mode with default running stats, gamma 1, beta 0


def nparams(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def zero_params(m: nn.Module) -> None:
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()


# ------------------------------------------------------------------------------------------------------------ CBAM
@pytest.mark.parametrize("variant", ["paper", "official"])
def test_cbam_no_residual(variant):
    m = create_block("cbam", 8, variant=variant)
    zero_params(m)                                   # both gates = sigmoid(0) = 0.5
    x = torch.randn(2, 8, 5, 7)
    for mode in (m.train, m.eval):
        mode()
        assert torch.equal(m(x), 0.25 * x)           # 0.5 * 0.5 * x, no "+ x"


def test_cbam_hand_computed():
    m = create_block("cbam", 2, reduction=2).eval()   # hidden = 1
    assert m.channel.hidden == 1 and m.spatial.conv.kernel_size == (7, 7) and m.spatial.conv.padding == (3, 3)
    with torch.no_grad():
        m.channel.fc1.weight.copy_(torch.tensor([[1.0, -1.0]]))
        m.channel.fc1.bias.fill_(0.5)
        m.channel.fc2.weight.copy_(torch.tensor([[2.0], [-1.0]]))
        m.channel.fc2.bias.copy_(torch.tensor([0.0, 1.0]))
        m.spatial.conv.weight.zero_()
        m.spatial.conv.weight[0, 0, 3, 3] = 1.0      # avg map, same position
        m.spatial.conv.weight[0, 1, 4, 3] = 2.0      # max map, one row below
        m.spatial.conv.bias.fill_(-0.25)
    x = torch.tensor([[[0.0, 1.0, 2.0, -1.0], [3.0, 0.5, -2.0, 1.0], [1.0, 1.0, 0.0, 2.0]],
                      [[1.0, -1.0, 0.0, 2.0], [0.0, 4.0, 1.0, -3.0], [2.0, 0.0, 1.0, 1.0]]]).unsqueeze(0)  # (1,2,3,4)
    avg = [x[0, c].mean().item() for c in range(2)]
    mx = [x[0, c].max().item() for c in range(2)]
    h_avg, h_max = max(0.0, avg[0] - avg[1] + 0.5), max(0.0, mx[0] - mx[1] + 0.5)
    # shared MLP on both descriptors: fc2's bias enters once per descriptor
    att_c = torch.sigmoid(torch.tensor([2 * h_avg + 2 * h_max, (-h_avg + 1) + (-h_max + 1)]))
    x1 = x * att_c[None, :, None, None]
    cavg, cmax = x1[0].mean(0), x1[0].amax(0)       # (3, 4) channel-wise maps
    s = torch.empty(3, 4)
    for i in range(3):
        for j in range(4):
            s[i, j] = cavg[i, j] + (2 * cmax[i + 1, j] if i + 1 < 3 else 0.0) - 0.25
    expected = x1 * torch.sigmoid(s)[None, None]
    assert torch.allclose(m(x), expected, atol=1e-6)


def test_cbam_official_variant():
    m = create_block("cbam", 4, variant="official").eval()
    assert m.spatial.conv.bias is None and isinstance(m.spatial.bn, nn.BatchNorm2d)
    assert m.spatial.bn.momentum == 0.01
    zero_params(m.channel)                            # channel gate = 0.5
    with torch.no_grad():
        m.spatial.conv.weight.zero_()
        m.spatial.conv.weight[0, 0, 3, 3] = 1.0      # official order: channel 0 of the descriptor is the MAX map
        m.spatial.bn.weight.fill_(1.0)
    x = torch.randn(1, 4, 3, 5)
    x1 = 0.5 * x
    expected = x1 * torch.sigmoid(x1.amax(1, keepdim=True) * BNF)
    assert torch.allclose(m(x), expected, atol=1e-6)


@pytest.mark.parametrize("c", [8, 32, 64, 256])
def test_cbam_params(c):
    h = max(1, c // 16)
    mlp = c * h + h + h * c + c
    assert nparams(create_block("cbam", c)) == mlp + 2 * 49 + 1                 # spatial conv with bias
    assert nparams(create_block("cbam", c, variant="official")) == mlp + 2 * 49 + 2  # conv without bias + BN
    assert nparams(create_block("cbam", c, kernel_size=3)) == mlp + 2 * 9 + 1
    with pytest.raises(ValueError, match="odd"):
        create_block("cbam", c, kernel_size=4)
    with pytest.raises(ValueError, match="variant"):
        create_block("cbam", c, variant="timm")


def test_cbam_resnet50_params():
    m = create_model("resnet50", attn="cbam")
    cbams = [b for b in m.modules() if isinstance(b, CBAM)]
    extra = sum(2 * c * (c // 16) + c // 16 + c + 99 for c, n in ((256, 3), (512, 4), (1024, 6), (2048, 3))
                for _ in range(n))
    assert len(cbams) == 16 and sum(nparams(b) for b in cbams) == extra == 2_532_576
    assert nparams(m) - extra == 25_557_032                                     # plain ResNet-50
    assert nparams(m) == 28_089_608
    assert round(nparams(m) / 1e6, 2) == 28.09                                  # paper: 28.09M


def test_cbam_resnet50_macs():
    total = 0
    for c, size, n in ((256, 56, 3), (512, 28, 4), (1024, 14, 6), (2048, 7, 3)):
        macs = count_macs(create_block("cbam", c), (c, size, size)).macs
        h = c // 16
        assert macs == 2 * (c * h + h * c) + 2 * 49 * size * size              # MLP on 2 descriptors + 7x7 conv
        total += n * macs
    assert round(total / 1e9, 3) == 0.006                                      # paper: 3.858 -> 3.864 GFLOPs


# ------------------------------------------------------------------------------------------------------------- DFC
def _bn_eval(t: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    shape = (-1, 1, 1)
    return (t - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps) * \
        bn.weight.view(shape) + bn.bias.view(shape)


def test_dfc_hand_computed_odd_size():
    m = create_block("dfc", 2).eval()
    assert m.conv.bias is None and m.conv_h.bias is None and m.conv_v.bias is None
    assert m.conv_h.kernel_size == (1, 5) and m.conv_h.padding == (0, 2) and m.conv_h.groups == 2
    assert m.conv_v.kernel_size == (5, 1) and m.conv_v.padding == (2, 0) and m.conv_v.groups == 2
    kh = torch.tensor([[0.1, -0.2, 0.5, 0.3, 0.2], [0.4, 0.0, -0.5, 0.1, 0.3]])
    kv = torch.tensor([[0.2, 0.1, 0.6, -0.3, 0.1], [-0.1, 0.5, 0.2, 0.2, 0.4]])
    with torch.no_grad():
        m.conv.weight.copy_(torch.tensor([[1.0, 0.5], [0.0, -1.0]]).view(2, 2, 1, 1))
        m.conv_h.weight.copy_(kh.view(2, 1, 1, 5))
        m.conv_v.weight.copy_(kv.view(2, 1, 5, 1))
        m.bn.running_mean.copy_(torch.tensor([0.1, -0.2]))
        m.bn.running_var.copy_(torch.tensor([2.0, 0.5]))
        m.bn_h.weight.copy_(torch.tensor([1.5, 0.5]))
        m.bn_v.bias.copy_(torch.tensor([0.3, -0.1]))
    x = torch.randn(1, 2, 5, 7)                        # odd, non-square: pooled to 2 x 3 (floor)
    p = torch.empty(2, 2, 3)
    for i in range(2):
        for j in range(3):
            p[:, i, j] = x[0, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean((1, 2))
    a = _bn_eval(torch.einsum("oc,cij->oij", m.conv.weight[:, :, 0, 0], p), m.bn)
    hh = torch.zeros(2, 2, 3)
    for c in range(2):
        for i in range(2):
            for j in range(3):
                hh[c, i, j] = sum(kh[c, t] * a[c, i, j + t - 2] for t in range(5) if 0 <= j + t - 2 < 3)
    hh = _bn_eval(hh, m.bn_h)
    vv = torch.zeros(2, 2, 3)
    for c in range(2):
        for i in range(2):
            for j in range(3):
                vv[c, i, j] = sum(kv[c, t] * hh[c, i + t - 2, j] for t in range(5) if 0 <= i + t - 2 < 2)
    gate = torch.sigmoid(_bn_eval(vv, m.bn_v))
    rows, cols = [0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 2, 2]   # nearest: src = floor(dst * in / out)
    up = gate[:, rows][:, :, cols]
    with torch.no_grad():
        assert torch.allclose(m.gate(x)[0], up, atol=1e-6)
        assert torch.allclose(m(x), x * up[None], atol=1e-6)


def test_dfc_params_and_macs():
    for c, k in ((32, 5), (16, 3)):
        m = create_block("dfc", c, kernel_size=k)
        assert nparams(m) == c * c + 2 * k * c + 6 * c
        for h, w in ((12, 10), (5, 7), (2, 3)):
            assert count_macs(m, (c, h, w)).macs == c * (c + 2 * k) * (h // 2) * (w // 2)
        full = create_block("dfc", c, kernel_size=k, downsample=False)
        assert count_macs(full, (c, 5, 7)).macs == c * (c + 2 * k) * 35
        assert full(torch.randn(1, c, 1, 3)).shape == (1, c, 1, 3)
    with pytest.raises(ValueError, match="odd"):
        create_block("dfc", 8, kernel_size=4)


def test_dfc_min_size():
    assert get_block_spec("dfc").requires.min_size == 2
    m = create_block("dfc", 8)
    with pytest.raises(ValueError, match="at least 2x2"):
        m(torch.randn(1, 8, 1, 6))
    assert m(torch.randn(2, 8, 2, 3)).shape == (2, 8, 2, 3)                       # pooled to 1x1
    with pytest.raises(IncompatibleBlockError, match="at least 2x2"):
        create_model("resnet20", attn="dfc", img_size=4)                      # last stage sees 1x1
    assert create_model("resnet20", attn="dfc", img_size=8).eval()(torch.randn(1, 3, 8, 8)).shape == (1, 10)


# -------------------------------------------------------------------------------------------------------- non-local
def _set(conv: nn.Conv2d, w) -> None:
    conv.weight.copy_(torch.tensor(w, dtype=torch.float32).view_as(conv.weight))


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


def test_nonlocal_identity_in_resnet20():
    m = create_model("resnet20", attn="nonlocal")
    blocks = [b for b in m.modules() if isinstance(b, NonLocal2d)]
    assert len(blocks) == 9
    assert all(torch.count_nonzero(b.bn.weight) == 0 for b in blocks)         # survived the backbone's generic init
    assert all(torch.count_nonzero(b.theta.weight) > 0 for b in blocks)        # ... which did init the convs
    assert _identity_check(m, NonLocal2d, torch.randn(2, 3, 32, 32)) == 9


# ------------------------------------------------------------------------------------------- softmax-free non-local
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
