"""Tests for blockzoo.profile: exact MAC formulas on hand-checkable layers, op classification, report contract."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.flop_counter as flop_counter
from rich.console import Console
from rich.table import Table

from blockzoo.profile import (
    MacCount,
    ProfileReport,
    classify_op,
    count_macs,
    extra_flop_formulas,
    fft_macs,
    format_report,
    profile_model,
    register_flop_formulas,
    sdpa_macs,
)

aten = torch.ops.aten


def conv_macs(c_in: int, c_out: int, k: int, h_out: int, w_out: int, groups: int = 1) -> int:
    return c_out * h_out * w_out * (c_in // groups) * k * k


# ------------------------------------------------------------------------------------------------ convolution / linear


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


# ------------------------------------------------------------------------------------------------ ignored ops


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


# ------------------------------------------------------------------------------------------------ attention


class SDPA(nn.Module):
    def __init__(self, gqa: bool = False) -> None:
        super().__init__()
        self.gqa = gqa

    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=self.gqa)


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


# ------------------------------------------------------------------------------------------------ FFT


class GlobalFilter(nn.Module):
    """HorNet-style global filter: rfft2 over (H, W) of a (B, H, W, C) tensor, complex gating, irfft2."""

    def forward(self, x):
        X = torch.fft.rfft2(x, dim=(1, 2), norm="ortho")
        X = X * torch.ones_like(X)
        return torch.fft.irfft2(X, s=x.shape[1:3], dim=(1, 2), norm="ortho")


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


# ------------------------------------------------------------------------------------------------ uncounted ops


class WeirdCompute(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x):
        d = torch.cdist(x, x)  # (B, N, N): real compute without a formula
        m = torch.linalg.inv(d + 10 * torch.eye(d.shape[-1]))
        return self.proj(m @ x)


def test_uncounted_compute_is_reported():
    mc = count_macs(WeirdCompute(), (5, 4))
    assert "aten._cdist_forward" in mc.uncounted_ops
    assert any("linalg" in op for op in mc.uncounted_ops)
    assert "aten.add" in mc.ignored_ops and "aten.add" not in mc.uncounted_ops
    assert mc.macs == 5 * 5 * 4 + 5 * 4 * 4  # bmm (m @ x) + linear only


# ------------------------------------------------------------------------------------------------ module breakdown


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


# ------------------------------------------------------------------------------------------ profile_model()


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


LATENCY_KEYS = {"median", "iqr", "min", "iters", "warmup", "batch_size", "dtype", "threads", "device", "channels_last"}


def test_profile_report_contract():
    model = small_model()
    model[1].eval()  # a per-module flag that must survive
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    rep = profile_model(model, (3, 8, 8), batch_size=2, train_batch_size=3, warmup=1, iters=3, threads=1, name="tiny")
    rng_after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(rng_after, torch.rand(3))  # profiling does not consume the caller's RNG stream

    assert isinstance(rep, ProfileReport) and rep.model == "tiny"
    assert rep.params == rep.trainable_params == sum(p.numel() for p in model.parameters()) == 8 * 27 + 8 + 16 + 36
    assert rep.macs == conv_macs(3, 8, 3, 8, 8) + 8 * 4 and rep.flops == 2 * rep.macs
    assert rep.mac_breakdown == {"0": conv_macs(3, 8, 3, 8, 8), "1": 0, "2": 0, "3": 0, "4": 0, "5": 0, "6": 32}
    for t, bs in ((rep.latency_ms, 2), (rep.train_step_ms, 3)):
        assert LATENCY_KEYS <= set(t)
        assert t["median"] > 0 and t["min"] > 0 and t["iqr"] >= 0 and t["min"] <= t["median"]
        assert t["iters"] == 3 and t["batch_size"] == bs and t["threads"] == 1
        assert t["dtype"] == "fp32" and t["device"] == "cpu" and t["channels_last"] is False
    assert rep.throughput_img_s == pytest.approx(2 / (rep.latency_ms["median"] / 1e3))
    assert rep.train_throughput_img_s == pytest.approx(3 / (rep.train_step_ms["median"] / 1e3))
    assert rep.peak_memory_mb is not None and rep.peak_memory_mb > 0 and "train step" in rep.peak_memory_method

    # the user's model is untouched: same values (BN stats included), same per-module flags, threads restored
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert [m.training for m in model.modules()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert torch.get_num_threads() == threads

    d = rep.to_dict()
    assert json.loads(json.dumps(d)) == d and d["input_size"] == [3, 8, 8]


def test_profile_adaptive_iterations_and_flags():
    rep = profile_model(small_model(), (3, 8, 8), train_step=False, memory=False, warmup=0, min_time_s=0.0)
    assert rep.latency_ms["iters"] == 5  # minimum number of timed iterations
    assert rep.train_step_ms is None and rep.train_throughput_img_s is None
    assert rep.peak_memory_mb is None and rep.peak_memory_method == "not measured"
    rep = profile_model(small_model(), (3, 8, 8), dtype="bf16", channels_last=True, iters=2, warmup=1, batch_size=2)
    assert rep.latency_ms["dtype"] == rep.train_step_ms["dtype"] == "bf16-autocast"
    assert rep.latency_ms["channels_last"] is True
    rep = profile_model(small_model(), (3, 8, 8), latency=False, train_step=False)
    assert rep.latency_ms is None and rep.macs > 0
    rep = profile_model(nn.AvgPool2d(2), (3, 8, 8), iters=2, warmup=0)  # nothing to train: skipped with a note
    assert rep.train_step_ms is None and rep.latency_ms["median"] > 0 and rep.params == rep.macs == 0
    assert any("no trainable parameters" in w for w in rep.warnings)


def test_profile_warns_about_uncounted_compute_and_formats():
    rep = profile_model(WeirdCompute(), (5, 4), latency=False, train_step=False)
    assert "aten._cdist_forward" in rep.uncounted_ops and rep.warnings
    table = format_report(rep)
    assert isinstance(table, Table)
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "MACs" in text and "UNCOUNTED" in text and "_cdist_forward" in text


def test_profile_argument_errors():
    with pytest.raises(ValueError, match="dtype"):
        profile_model(small_model(), (3, 8, 8), dtype="int8")
    with pytest.raises(ValueError, match="channels_last"):
        profile_model(nn.Linear(4, 4), (4,), channels_last=True)
    with pytest.raises(ValueError, match="train_batch_size"):
        profile_model(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), (4,), latency=False, memory=False)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            profile_model(small_model(), (3, 8, 8), device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_profile_on_cuda():
    model = small_model()
    rep = profile_model(model, (3, 8, 8), device="cuda", iters=3, warmup=1, batch_size=2)
    assert rep.macs == conv_macs(3, 8, 3, 8, 8) + 8 * 4
    assert rep.latency_ms["device"].startswith("cuda") and rep.latency_ms["median"] > 0
    assert "cuda.max_memory_allocated" in rep.peak_memory_method and rep.peak_memory_mb > 0
    assert next(model.parameters()).device.type == "cpu"  # the user's model stays where it was


def test_blockzoo_profile_is_the_package_and_profile_model_the_function():
    import types

    import blockzoo
    import blockzoo.profile as profile_pkg

    assert blockzoo.profile is profile_pkg and isinstance(profile_pkg, types.ModuleType) and not callable(profile_pkg)
    assert blockzoo.profile_model is profile_pkg.profile_model is profile_model
    assert profile_pkg.profile is profile_model  # the former name, kept for callers of blockzoo.profile.profile
    rep = blockzoo.profile_model(nn.Linear(3, 2), (3,), latency=False, train_step=False)
    assert isinstance(rep, ProfileReport) and rep.macs == 6
