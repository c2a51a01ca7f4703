"""AFF token mixer + AFFNet (S055) and FFNified attention + FFNet (S040).

Hand-computed outputs on tiny tensors, the convolution theorem behind AFF (FFT-domain product == circular
convolution), exact parameter counts at the papers' settings, the re-parameterisation of FFNet, MAC conventions.
"""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn

from blockzoo import create_block, create_model
from blockzoo.blocks.common.conv_bn import ConvBN
from blockzoo.blocks.mixers.aff import AFFMixer, aff_params, frequency_filter
from blockzoo.blocks.mixers.ffnified import FFNifiedAttention, RepDWConv
from blockzoo.deploy import reparameterize
from blockzoo.models.affnet import AFFBlock, AFFLayer, AFFNet
from blockzoo.models.ffnet import FFBlock, FFNetDownsample, FFNetStem
from blockzoo.models.metaformer import MetaFormer
from blockzoo.profile import count_macs
from blockzoo.registry import IncompatibleBlockError, get_model_spec


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def meta_model(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kw)


def circular_conv2d(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Direct 2-D circular convolution over the last two dims: y[i, j] = sum_{a, b} k[a, b] x[(i - a) % H, (j - b) % W].
    ``k`` broadcasts against ``x`` (per-channel kernels of the full map size)."""
    h, w = x.shape[-2:]
    y = torch.zeros(torch.broadcast_shapes(x.shape, k.shape), dtype=x.dtype)
    for a in range(h):
        for b in range(w):
            y = y + k[..., a:a + 1, b:b + 1] * torch.roll(x, shifts=(a, b), dims=(-2, -1))
    return y


def randomize_bn(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))


# ============================================================================================================ AFF
@pytest.mark.parametrize("h,w", [(5, 6), (4, 7), (3, 8)])
def test_fft_product_is_circular_conv(h, w):
    """Convolution theorem (S055): irfft2(rfft2(x) * M) == x (*) irfft2(M) for a random complex half-spectrum mask,
    checked against a direct circular convolution on small non-square maps (even and odd widths)."""
    g = torch.Generator().manual_seed(h * 10 + w)
    x = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    mask = torch.complex(torch.randn(3, h, w // 2 + 1, generator=g, dtype=torch.float64),
                         torch.randn(3, h, w // 2 + 1, generator=g, dtype=torch.float64))
    kernel = torch.fft.irfft2(mask, s=(h, w))                   # the spatial kernel (norm="backward")
    torch.testing.assert_close(frequency_filter(x, mask), circular_conv2d(x, kernel), rtol=1e-10, atol=1e-10)
    # hand cases: an all-ones mask is the identity; the spectrum of a delta at (1, 2) shifts the map by (1, 2)
    torch.testing.assert_close(frequency_filter(x, torch.ones(h, w // 2 + 1, dtype=torch.complex128)), x)
    delta = torch.zeros(h, w, dtype=torch.float64)
    delta[1, 2] = 1.0
    torch.testing.assert_close(frequency_filter(x, torch.fft.rfft2(delta)), torch.roll(x, (1, 2), (-2, -1)))
    with pytest.raises(ValueError, match="half-spectrum"):
        frequency_filter(x, torch.ones(h, w, dtype=torch.complex128))


def test_aff_is_dynamic_global_conv():
    """The AFF mixer output is x + circular depthwise conv of x with the input-generated kernel irfft2(M(x)), a kernel
    as large as the map, different for different inputs."""
    torch.manual_seed(0)
    m = create_block("aff(init_scale=0.3)", 16)
    x1, x2 = torch.randn(2, 16, 5, 7), torch.randn(2, 16, 5, 7)
    for x in (x1, x2):
        k = m.spatial_kernel(x)
        assert k.shape == (2, 16, 5, 7)
        torch.testing.assert_close(m(x), x + circular_conv2d(x, k), rtol=1e-4, atol=1e-5)
    k1, k2 = m.spatial_kernel(x1), m.spatial_kernel(x2)
    assert (k1 - k2).abs().max() > 1e-2                          # dynamic: the kernel depends on the input
    assert (k1[..., 2:, 3:].abs().sum((-2, -1)) > 0).all()      # global: taps far from the origin are used
    bare = create_block("aff(init_scale=0.3, skip=False)", 16)
    bare.load_state_dict(m.state_dict())
    torch.testing.assert_close(bare(x1), m(x1) - x1)


def test_aff_hand_computed_constant_map():
    """Hand case: a constant map c has only a DC component X = c*sqrt(HW) (ortho FFT), so the output is
    c * (1 + Re M_DC) with M_DC = softshrink(L2(relu(L1(X)))); one channel per group, hand-set complex weights."""
    m = AFFMixer(8, num_groups=8)                                # group size 1, hidden 1: a scalar complex MLP
    a, b, b1r, b1i, c_, d, b2r, b2i = 0.5, 0.25, 0.1, -0.2, 1.0, 0.5, 0.05, 0.0
    with torch.no_grad():
        m.w1[0].fill_(a), m.w1[1].fill_(b), m.b1[0].fill_(b1r), m.b1[1].fill_(b1i)
        m.w2[0].fill_(c_), m.w2[1].fill_(d), m.b2[0].fill_(b2r), m.b2[1].fill_(b2i)
    c, h, w = 2.0, 4, 3
    xr = c * math.sqrt(h * w)                                    # DC of rfft2(norm="ortho"); imaginary part 0
    r1, i1 = max(xr * a + b1r, 0.0), max(xr * b + b1i, 0.0)     # (xr + 0i)(a + ib) + (b1r + i b1i), then ReLU
    r2, i2 = r1 * c_ - i1 * d + b2r, i1 * c_ + r1 * d + b2i
    shrink = lambda v: math.copysign(max(abs(v) - 0.01, 0.0), v)  # noqa: E731
    expected = c * (1.0 + shrink(r2))                           # imag part of the DC bin is dropped by irfft2
    assert r1 > 0 and i1 > 0 and abs(shrink(i2)) > 0
    y = m(torch.full((1, 8, h, w), c))
    torch.testing.assert_close(y, torch.full_like(y, expected), rtol=1e-5, atol=1e-5)


def test_aff_params_and_groups():
    for c in (32, 64, 136):
        assert n_params(create_block("aff", c)) == c * c // 2 + 4 * c == aff_params(c)
    assert n_params(create_block("aff(hidden_ratio=2)", 32)) == aff_params(32, hidden_ratio=2) == 4 * 32 * 8 + 6 * 32
    # block-diagonal mask generator: changing the channels of group 0 leaves the mask of the other groups unchanged
    torch.manual_seed(1)
    m = create_block("aff(init_scale=0.3)", 32)                 # 8 groups of 4 channels
    xf = torch.fft.rfft2(torch.randn(1, 32, 6, 5), norm="ortho")
    xf2 = xf.clone()
    xf2[:, :4] = torch.randn_like(xf2[:, :4])
    m1, m2 = m.mask(xf), m.mask(xf2)
    torch.testing.assert_close(m1[:, 4:], m2[:, 4:])
    assert (m1[:, :4] - m2[:, :4]).abs().max() > 1e-3
    with pytest.raises(IncompatibleBlockError, match="num_groups"):
        create_block("aff", 36)
    assert n_params(create_block("aff(num_groups=4)", 36)) == aff_params(36, 4)
    with pytest.raises(IncompatibleBlockError, match="at least 8"):
        create_block("aff", 4)
    # an incompatible width fails when the model is built, naming the position
    with pytest.raises(IncompatibleBlockError, match="stages.0.blocks.0.mixer"):
        MetaFormer((2, 2, 6, 2), (36, 72, 144, 288), mixer="aff", stem="small", img_size=32)


def test_aff_dtypes_and_backbones():
    m = create_block("aff", 32).eval()
    x = torch.randn(2, 32, 12, 10)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x.bfloat16())
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()
    torch.testing.assert_close(y.float(), m(x).detach(), rtol=0.05, atol=0.05)
    net = create_model("convnext_atto", mixer="aff", img_size=32, stem="small", num_classes=10)
    assert net(torch.randn(2, 3, 32, 30)).shape == (2, 10)


def test_aff_mac_convention():
    """FFT MACs follow blockzoo.profile.counting.FFT_CONVENTION; the mask generator costs C^2 * H * (W//2+1)."""
    c, h, w = 32, 12, 10
    r = count_macs(create_block("aff", c), (c, h, w))
    wf = w // 2 + 1
    assert r.macs_by_op["aten._fft_r2c"] == c * h * w * math.ceil(math.log2(h * w))
    assert r.macs_by_op["aten._fft_c2r"] == c * h * wf * math.ceil(math.log2(h * wf))
    assert r.macs_by_op["aten.bmm"] == c * c * h * wf
    # in a whole AFFNet-ET at 64 px every AFF mixer contributes its two FFTs (stages 3-5: 8x8, 4x4, 2x2 maps)
    net = AFFNet("xx_small", img_size=64).eval()
    r = count_macs(net, (3, 64, 64))
    def fft_macs(c: int, s: int) -> int:
        sf = s // 2 + 1
        return c * s * s * math.ceil(math.log2(s * s)) + c * s * sf * math.ceil(math.log2(s * sf))
    fft = sum(n * fft_macs(cc, s) for n, cc, s in ((2, 64, 8), (4, 104, 4), (3, 144, 2)))
    assert r.macs_by_op["aten._fft_r2c"] + r.macs_by_op["aten._fft_c2r"] == fft


# ========================================================================================================= AFFNet
AFFNET_PARAMS = {"affnet_et": 1_436_264, "affnet_t": 2_654_232, "affnet": 5_568_696}


def test_affnet_param_counts():
    for name, exact in AFFNET_PARAMS.items():
        spec = get_model_spec(name)
        n = n_params(meta_model(name))
        assert n == exact == spec.reference["params_1000cls"]
        # the paper prints 0.1M precision: our count lies in the interval its figure truncates from
        assert math.floor(n / 1e5) / 10 == pytest.approx(spec.paper_params / 1e6)
        # cvnets' profiler skips the AFF layers' two norms and the mask biases (8C per AFF layer)
    assert n_params(meta_model("affnet_et_small")) == 865_034 == get_model_spec("affnet_et_small").reference[
        "params_3ch_10cls"]


def test_affnet_structure():
    m = AFFNet("small", img_size=256)
    assert m.feature_sizes == [(128, 128), (64, 64), (32, 32), (16, 16), (8, 8)]
    assert m.conv_head.conv.out_channels == 960 and m.fc.in_features == 960     # min(4 * 320, 960)
    blocks = [b for b in m.modules() if isinstance(b, AFFBlock)]
    assert [len(b.layers) for b in blocks] == [2, 4, 3]
    assert all(b.fusion is not None and b.fusion.conv.in_channels == 2 * b.proj.conv.out_channels for b in blocks)
    layers = [l for l in m.modules() if isinstance(l, AFFLayer)]
    assert [l.mixer.channels for l in layers] == [128] * 2 + [256] * 4 + [320] * 3
    assert all(isinstance(l.norm1, nn.GroupNorm) and l.norm1.num_groups == 1 for l in layers)   # layer_norm_2d
    assert all(l.ffn.hidden == 2 * l.mixer.channels and l.ffn.use_res for l in layers)
    small = create_model("affnet_et_small")
    assert small.feature_sizes == [(32, 32), (32, 32), (16, 16), (8, 8), (4, 4)]
    assert small(torch.randn(2, 3, 32, 28)).shape == (2, 10)
    swapped = create_model("affnet_et_small", mixer="dwconv", norm="ln2d")
    assert not any(isinstance(x, AFFMixer) for x in swapped.modules())
    assert n_params(swapped) == n_params(small) - sum(aff_params(c) - 50 * c for c in [64] * 2 + [104] * 4 + [144] * 3)


def test_affnet_mask_act_is_the_model_act():
    """The official AFFNet ties the AFF mask's activation to the network's one activation (not ReLU with SiLU
    convs); an explicit mask_act still wins, and the block on its own keeps the module's ReLU default."""
    def mask_acts(m):
        return {type(a).__name__ for x in m.modules() if isinstance(x, AFFMixer) for a in (x.act_r, x.act_i)}

    assert mask_acts(create_model("affnet_t", img_size=64)) == {"SiLU"}
    assert mask_acts(create_model("affnet_t", img_size=64, act="gelu")) == {"GELU"}
    assert mask_acts(create_model("affnet_t", img_size=64, mixer="aff(mask_act=relu)")) == {"ReLU"}
    assert mask_acts(create_block("aff", 16)) == {"ReLU"}


def test_affnet_layer_order():
    """AFFLayer = x + mixer(norm2(MV2(norm1(x)))); AFFBlock = fusion(cat(x, proj(norm(layers(x)))))."""
    torch.manual_seed(0)
    blk = AFFNet("xx_small", img_size=64).stages[2][1].eval()
    x = torch.randn(2, 64, 8, 6)
    lay = blk.layers[0]
    torch.testing.assert_close(lay(x), x + lay.mixer(lay.norm2(lay.ffn(lay.norm1(x)))))
    y = blk.proj(blk.norm(blk.layers(x)))
    torch.testing.assert_close(blk(x), blk.fusion(torch.cat((x, y), 1)))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(AFFNET_PARAMS))
def test_affnet_macs_256(name):
    spec = get_model_spec(name)
    macs = count_macs(create_model(name).eval(), (3, 256, 256)).macs
    assert macs == spec.reference["macs_256"]
    assert round(macs / 1e8) / 10 == pytest.approx(spec.paper_macs / 1e9)     # rounds to the paper's 0.1G figure


# ==================================================================================================== FFNified
def _conv2d_same(x: list[list[float]], k: list[list[float]], bias: float) -> list[list[float]]:
    """Plain-Python zero-padded 'same' 2-D cross-correlation (odd kernel)."""
    h, w, r = len(x), len(x[0]), len(k) // 2
    out = [[bias] * w for _ in range(h)]
    for i in range(h):
        for j in range(w):
            for a in range(-r, r + 1):
                for b in range(-r, r + 1):
                    if 0 <= i + a < h and 0 <= j + b < w:
                        out[i][j] += k[a + r][b + r] * x[i + a][j + b]
    return out


def test_ffnified_hand_computed():
    """y = DW2(GELU(DW1(BN(Wq x)))) with hand-set weights on a 2-channel 3x4 map, computed in plain Python."""
    m = FFNifiedAttention(2, kernel_size=3).eval()
    assert isinstance(m.qk, nn.Conv2d) and m.qk.groups == 2 and m.qk.bias is not None   # 3x3: plain dw conv + bias
    wq = [[1.0, -0.5], [0.25, 2.0]]
    bn = dict(mean=[0.5, -1.0], var=[4.0, 0.25], gamma=[1.5, 0.5], beta=[0.1, -0.2])
    k1 = [[[0.0, 1.0, 0.0], [1.0, -2.0, 0.5], [0.0, 0.25, 0.0]], [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]]]
    k2 = [[[1.0, 0.0, -1.0], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]], [[0.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, -1.0]]]
    b1, b2 = [0.3, -0.1], [-0.2, 0.05]
    with torch.no_grad():
        m.q.c.weight.copy_(torch.tensor(wq)[:, :, None, None])
        m.q.bn.eps = 0.0
        m.q.bn.running_mean.copy_(torch.tensor(bn["mean"])), m.q.bn.running_var.copy_(torch.tensor(bn["var"]))
        m.q.bn.weight.copy_(torch.tensor(bn["gamma"])), m.q.bn.bias.copy_(torch.tensor(bn["beta"]))
        m.qk.weight.copy_(torch.tensor(k1)[:, None]), m.qk.bias.copy_(torch.tensor(b1))
        m.av.weight.copy_(torch.tensor(k2)[:, None]), m.av.bias.copy_(torch.tensor(b2))
    x = [[[0.5, -1.0, 2.0, 0.0], [1.5, 0.25, -0.75, 1.0], [-2.0, 0.5, 1.0, -0.5]],
         [[1.0, 0.0, -1.0, 2.0], [0.5, -0.5, 0.25, 0.75], [0.0, 1.5, -1.25, 0.5]]]
    gelu = lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))  # noqa: E731
    expected = []
    for c in range(2):
        q = [[(wq[c][0] * x[0][i][j] + wq[c][1] * x[1][i][j] - bn["mean"][c]) / math.sqrt(bn["var"][c])
              * bn["gamma"][c] + bn["beta"][c] for j in range(4)] for i in range(3)]
        a = [[gelu(v) for v in row] for row in _conv2d_same(q, k1[c], b1[c])]
        expected.append(_conv2d_same(a, k2[c], b2[c]))
    y = m(torch.tensor(x)[None])
    torch.testing.assert_close(y, torch.tensor(expected)[None], rtol=1e-5, atol=1e-6)
    # GELU (not softmax): the "attention" is not normalised over positions
    assert m.act.__class__ is nn.GELU


def test_ffnified_official_kernel_rule():
    m7 = create_block("ffnified", 16)
    assert isinstance(m7.qk, RepDWConv) and isinstance(m7.av, RepDWConv)
    assert m7.qk.conv.c.kernel_size == (7, 7) and m7.qk.conv1.c.kernel_size == (3, 3) and m7.qk.conv.c.groups == 16
    assert n_params(m7) == (16 * 16 + 32) + 2 * (16 * 49 + 32 + 16 * 9 + 32)
    m3 = create_block("ffnified(kernel_size=3)", 16)
    assert n_params(m3) == (16 * 16 + 32) + 2 * (16 * 9 + 16)
    assert isinstance(create_block("ffnified(kernel_size=5)", 8).qk, nn.Conv2d)
    assert isinstance(create_block("ffnified(kernel_size=5, rep=True)", 8).qk, RepDWConv)
    assert isinstance(create_block("ffnified(kernel_size=7, rep=False)", 8).qk, nn.Conv2d)
    m = create_block("ffnified(kernel_size=3, kernel_size_v=7)", 8)
    assert m.kernel_sizes == (3, 7) and isinstance(m.av, RepDWConv)
    with pytest.raises(ValueError, match="odd"):
        create_block("ffnified(kernel_size=4)", 8)


def test_ffnified_reparameterize():
    torch.manual_seed(0)
    m = create_block("ffnified", 16)
    randomize_bn(m)
    m.eval()
    x = torch.randn(2, 16, 9, 7)
    y = m(x)
    n_train = n_params(m)
    m.reparameterize()
    assert isinstance(m.q, nn.Conv2d) and isinstance(m.qk, nn.Conv2d) and m.qk.kernel_size == (7, 7)
    torch.testing.assert_close(m(x), y, rtol=1e-5, atol=1e-5)
    assert n_train - n_params(m) == 16 + 2 * (16 * 9 + 3 * 16)     # q: BN 2C -> bias C; rep: 3x3 + 2 BNs -> bias
    # stride-2, channel-doubling depthwise re-param conv (FFNet's downsampling)
    r = RepDWConv(8, 16, 7, stride=2)
    randomize_bn(r, 1)
    r.eval()
    x = torch.randn(1, 8, 9, 6)
    torch.testing.assert_close(r.fuse()(x), r(x), rtol=1e-5, atol=1e-5)


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
