"""blockzoo.profile.core: profile_model's report contract, adaptive iterations, warnings, argument errors."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from rich.console import Console
from rich.table import Table

from blockzoo.profile import (
    ProfileReport,
    format_report,
    profile_model,
)
from helpers import WeirdCompute, conv_macs


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
