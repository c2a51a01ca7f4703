"""blockzoo.profile.counting: exact MAC formulas on hand-checkable layers, op classification, FFT/attention formulas,
breakdowns."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.flop_counter as flop_counter

from blockzoo.profile import (
    MacCount,
    classify_op,
    count_macs,
    extra_flop_formulas,
    fft_macs,
    register_flop_formulas,
    sdpa_macs,
)
from helpers import WeirdCompute, conv_macs

aten = torch.ops.aten


class SDPA(nn.Module):
    def __init__(self, gqa: bool = False) -> None:
        super().__init__()
        self.gqa = gqa

    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=self.gqa)


class GlobalFilter(nn.Module):
    """HorNet-style global filter: rfft2 over (H, W) of a (B, H, W, C) tensor, complex gating, irfft2."""

    def forward(self, x):
        X = torch.fft.rfft2(x, dim=(1, 2), norm="ortho")
        X = X * torch.ones_like(X)
        return torch.fft.irfft2(X, s=x.shape[1:3], dim=(1, 2), norm="ortho")


class TwoStage(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.Conv2d(8, 8, 1))
        self.head = nn.Linear(8, 2)
        self.extra = nn.Parameter(torch.randn(2, 2))

    def forward(self, x):
        x = self.body(self.stem(x)).mean((2, 3))
        return self.head(x) @ self.extra  # matmul in the root's own forward


@pytest.mark.parametrize(
    "kwargs, hw_in, hw_out",
    [
        (dict(), 10, 8),  # fidelity.md: 3->10 k3 on 10x10 = 17280 MACs (FlopCounterMode 34560 FLOPs)
        (dict(padding=1), 10, 10),
        (dict(padding=1, stride=2), 10, 5),
        (dict(stride=3), 11, 3),
        (dict(padding=2, dilation=2), 9, 9),
    ],
)
def test_conv2d_macs_exact(kwargs, hw_in, hw_out):
    conv = nn.Conv2d(3, 10, 3, **kwargs)
    mc = count_macs(conv, (3, hw_in, hw_in))
    expected = conv_macs(3, 10, 3, hw_out, hw_out)
    assert mc.macs == expected
    assert mc.flops == 2 * expected
    assert mc.uncounted_ops == {}


def test_conv2d_fidelity_anchor():
    mc = count_macs(nn.Conv2d(3, 10, 3), (3, 10, 10))
    assert (mc.macs, mc.flops) == (17280, 34560)


@pytest.mark.parametrize("groups", [1, 2, 4, 8])
def test_grouped_and_depthwise_conv(groups):
    conv = nn.Conv2d(8, 16, 3, padding=1, groups=groups)
    assert count_macs(conv, (8, 6, 6)).macs == conv_macs(8, 16, 3, 6, 6, groups)


def test_depthwise_conv():
    conv = nn.Conv2d(8, 8, 5, padding=2, groups=8)
    assert count_macs(conv, (8, 7, 7)).macs == 8 * 49 * 1 * 25


def test_bias_not_counted_and_batch_scales():
    with_bias = count_macs(nn.Conv2d(4, 6, 3, bias=True), (4, 5, 5)).macs
    without = count_macs(nn.Conv2d(4, 6, 3, bias=False), (4, 5, 5)).macs
    assert with_bias == without == conv_macs(4, 6, 3, 3, 3)
    assert count_macs(nn.Conv2d(4, 6, 3), (4, 5, 5), batch_size=3).macs == 3 * with_bias
    assert count_macs(nn.Linear(7, 5, bias=True), (7,)).macs == count_macs(nn.Linear(7, 5, bias=False), (7,)).macs


def test_linear_macs_exact():
    lin = nn.Linear(7, 5)
    assert count_macs(lin, (7,)).macs == 35
    mc = count_macs(lin, (3, 7), batch_size=2)  # tokens: (B, N, C_in)
    assert mc.macs == 2 * 3 * 7 * 5
    assert set(mc.macs_by_op) == {"aten.addmm"}


def test_conv1d_and_transposed_conv():
    assert count_macs(nn.Conv1d(4, 8, 3), (4, 10)).macs == 8 * 8 * 4 * 3
    # transposed conv: every input pixel is multiplied with every (c_out, k, k) weight: H*W*C_in*C_out*k*k
    assert count_macs(nn.ConvTranspose2d(4, 6, 2, stride=2), (4, 5, 5)).macs == 25 * 4 * 6 * 4


def test_matrix_vector_ops_counted():
    class MV(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(6, 4))

        def forward(self, x):
            v = x[0, 0]  # (4,)
            return (self.w @ v).sum() + (v @ v)  # mv: 6*4, dot: 4

    mc = count_macs(MV(), (1, 4))
    assert mc.macs == 6 * 4 + 4
    assert set(mc.macs_by_op) == {"aten.mv", "aten.dot"}


def test_bn_relu_are_ignored_not_counted():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.ReLU(inplace=True))
    model.train()
    mc = count_macs(model, (3, 8, 8))
    assert mc.macs == conv_macs(3, 4, 3, 6, 6)
    assert mc.uncounted_ops == {}
    assert "aten.relu" in mc.ignored_ops and "aten.relu_" in mc.ignored_by_category["activation"]
    assert any("batch_norm" in op for op in mc.ignored_by_category["normalization"])
    assert "aten.relu" in mc.ignored_by_category["activation"]
    assert "aten.max_pool2d_with_indices" in mc.ignored_by_category["pooling"]
    assert sum(mc.ignored_ops.values()) == sum(sum(v.values()) for v in mc.ignored_by_category.values())
    assert model.training and all(m.training for m in model.modules())  # mode restored


def test_only_contractions_contribute():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.GELU(), nn.Upsample(scale_factor=2),
        nn.GroupNorm(2, 8), nn.Hardswish(), nn.AvgPool2d(2), nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.LayerNorm(8), nn.Softmax(-1), nn.Linear(8, 3),
    )
    mc = count_macs(model, (3, 6, 6))
    assert set(mc.macs_by_op) == {"aten.convolution", "aten.addmm"}
    assert mc.macs == conv_macs(3, 8, 3, 6, 6) + 8 * 3
    assert mc.uncounted_ops == {}


def test_classify_op():
    assert classify_op(aten.add.Tensor) == "elementwise"
    assert classify_op(aten.view.default) == "view/copy"
    assert classify_op(aten.native_layer_norm.default) == "normalization"
    assert classify_op(aten._softmax.default) == "activation"
    assert classify_op(aten.avg_pool2d.default) == "pooling"
    assert classify_op(aten.sum.dim_IntList) == "reduction/sort"
    assert classify_op(aten._cdist_forward.default) is None
    assert classify_op(aten.linalg_inv_ex.default) is None


def test_sdpa_cpu_kernel_gets_formula():
    b, h, L, S, E = 2, 3, 5, 7, 8
    q, k, v = torch.randn(b, h, L, E), torch.randn(b, h, S, E), torch.randn(b, h, S, E)
    mc = count_macs(SDPA(), inputs=(q, k, v))
    assert mc.macs == b * h * L * S * (E + E) == sdpa_macs(q.shape, k.shape, v.shape)
    if torch.device("cpu") == q.device and hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        assert "aten._scaled_dot_product_flash_attention_for_cpu" in mc.macs_by_op  # the op torch counts as 0
    assert mc.uncounted_ops == {}


def test_sdpa_math_path_and_gqa_same_formula():
    b, h, L, S, E, Ev = 2, 3, 5, 7, 8, 4  # E != Ev: CPU falls back to the math path (bmm), same formula
    q, k, v = torch.randn(b, h, L, E), torch.randn(b, h, S, E), torch.randn(b, h, S, Ev)
    assert count_macs(SDPA(), inputs=(q, k, v)).macs == b * h * L * S * (E + Ev)
    q, k, v = torch.randn(1, 4, 5, 8), torch.randn(1, 2, 7, 8), torch.randn(1, 2, 7, 8)
    assert count_macs(SDPA(gqa=True), inputs=(q, k, v)).macs == 1 * 4 * 5 * 7 * 16  # every query head


def test_multihead_attention_fastpath_is_counted():
    mha = nn.MultiheadAttention(16, 2, batch_first=True).eval()

    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = mha

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    before = torch.backends.mha.get_fastpath_enabled()
    mc = count_macs(Wrap(), (5, 16))
    L, E = 5, 16
    assert mc.macs == L * E * 3 * E + L * E * E + L * L * (E + E)  # in-proj + out-proj + attention
    assert mc.uncounted_ops == {}
    assert torch.backends.mha.get_fastpath_enabled() == before


def test_extra_formulas_usable_with_flopcountermode_without_global_mutation():
    registry_before = dict(flop_counter.flop_registry)
    q = k = v = torch.randn(1, 2, 6, 8)
    count_macs(SDPA(), inputs=(q, k, v))
    assert flop_counter.flop_registry == registry_before  # count_macs registers nothing globally
    with flop_counter.FlopCounterMode(display=False, custom_mapping=extra_flop_formulas()) as fc:
        F.scaled_dot_product_attention(q, k, v)
    assert fc.get_total_flops() == 2 * sdpa_macs(q.shape, k.shape, v.shape)


def test_register_flop_formulas_is_idempotent(monkeypatch):
    monkeypatch.setattr(flop_counter, "flop_registry", dict(flop_counter.flop_registry))
    first = register_flop_formulas()
    assert "aten._fft_r2c" in first
    assert register_flop_formulas() == []


def test_rfft2_matches_hornet_convention():
    H, W, C = 8, 8, 4
    mc = count_macs(GlobalFilter(), (H, W, C))
    n = H * W
    hornet_rfft = n * C * math.ceil(math.log2(n))  # HorNet calc_flops.py rfft_flop_jit on the (1, H, W, C) input
    n_half = H * (W // 2 + 1)
    hornet_irfft = n_half * C * math.ceil(math.log2(n_half))  # same handler on irfft2's half-spectrum input
    assert mc.macs_by_op == {"aten._fft_r2c": hornet_rfft, "aten._fft_c2r": hornet_irfft}
    assert (hornet_rfft, hornet_irfft) == (1536, 960)
    assert mc.uncounted_ops == {}


def test_fft_formula_generalises_to_batch_and_odd_sizes():
    assert fft_macs((2, 7, 3), dim=[1]) == 2 * 7 * 3 * 3  # ceil(log2(7)) = 3
    assert fft_macs((5,), dim=[0]) == 5 * 3
    assert fft_macs((4, 1), dim=[1]) == 0  # a length-1 transform is free

    class FFT(nn.Module):
        def forward(self, x):
            return torch.fft.fft(x, dim=-1).real

    assert count_macs(FFT(), (3, 7), batch_size=2).macs == 2 * 3 * 7 * 3


def test_uncounted_compute_is_reported():
    mc = count_macs(WeirdCompute(), (5, 4))
    assert "aten._cdist_forward" in mc.uncounted_ops
    assert any("linalg" in op for op in mc.uncounted_ops)
    assert "aten.add" in mc.ignored_ops and "aten.add" not in mc.uncounted_ops
    assert mc.macs == 5 * 5 * 4 + 5 * 4 * 4  # bmm (m @ x) + linear only


def test_per_module_breakdown():
    mc = count_macs(TwoStage(), (3, 8, 8))
    stem, body0, body1, head, root = 4 * 64 * 27, 8 * 16 * 36, 8 * 16 * 8, 8 * 2, 2 * 2
    assert mc.top_level() == {"stem": stem, "body": body0 + body1, "head": head, "(root)": root}
    assert mc.by_module["body.0"] == body0 and mc.by_module["body.1"] == body1
    assert mc.by_module[""] == mc.macs == stem + body0 + body1 + head + root
    assert mc.at_depth(2)["stem.0"] == stem
    assert json.loads(json.dumps(mc.to_dict()))["macs"] == mc.macs


def test_count_macs_input_errors():
    with pytest.raises(ValueError, match="input_size"):
        count_macs(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="nn.Module"):
        count_macs(lambda x: x, (2,))  # type: ignore[arg-type]
    mc = count_macs(nn.Bilinear(3, 4, 2), inputs=(torch.randn(1, 3), torch.randn(1, 4)))
    assert isinstance(mc, MacCount)
