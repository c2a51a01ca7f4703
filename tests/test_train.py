"""Tests for blockzoo.train: schedules, config, optimizer groups, checkpoints, the training loop and exact resume.

Everything runs on tiny synthetic data (8x8 grey images) with a tiny conv net, on CPU, in well under 20 s.
"""
from __future__ import annotations

import io
import json
import math
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from blockzoo.train import (
    METRIC_KEYS,
    RESULT_KEYS,
    CheckpointError,
    LRSchedule,
    NonFiniteLossError,
    TrainConfig,
    build_optimizer,
    evaluate,
    load_checkpoint,
    load_weights,
    lr_at,
    read_metadata,
    save_checkpoint,
    save_weights,
    train,
    warmup_steps_for,
)
from blockzoo.train import checkpoint as ckpt_mod


# ------------------------------------------------------------------------------------------------------------ helpers
class Tiny(nn.Module):
    """Conv-BN-ReLU-Dropout-pool-Linear: exercises buffers (BN), RNG (dropout), channels_last and no-decay params."""

    def __init__(self, in_chans: int = 1, num_classes: int = 4, p: float = 0.2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(p)
        self.fc = nn.Linear(8 * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(torch.relu(self.bn(self.conv(x))))
        x = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        return self.fc(x)


class NaNAfter(nn.Module):
    """Tiny whose training output turns NaN after ``n`` training forward passes."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.net = Tiny()
        self.n = n
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls > self.n:
                out = out * float("nan")
        return out


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def data():
    from blockzoo.data.synthetic import make_synthetic
    tr = make_synthetic("train", num_classes=4, image_size=8, channels=1, n=256, noise=0.1, max_shift=1)
    te = make_synthetic("test", num_classes=4, image_size=8, channels=1, n=128, noise=0.1, max_shift=1)
    return tr, te


def cfg_for(tmp: Path, **kw) -> TrainConfig:
    base = dict(model="tiny", data="synthetic", epochs=3, batch_size=32, lr=0.1, warmup_epochs=0.5, progress=False,
                out_dir=str(tmp), deterministic=True, threads=1, device="cpu", seed=0)
    base.update(kw)
    return TrainConfig(**base)


def no_temp_files(d: Path) -> bool:
    return not [p.name for p in d.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]


# ---------------------------------------------------------------------------------------------------------- schedules
def test_schedule_values_by_hand():
    # T=10, W=2, peak 1: warm-up 0.5, 1.0; onecycle decays linearly (T - s) / (T - W)
    one = LRSchedule(1.0, 10, 2, "onecycle").curve()
    assert one == pytest.approx([0.5, 1.0, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8])
    cos = LRSchedule(1.0, 10, 2, "cosine").curve()
    assert cos[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert cos[6] == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))  # = 0.5, midway through the decay
    assert cos[9] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))
    assert LRSchedule(0.3, 10, 2, "constant").curve() == pytest.approx([0.15] + [0.3] * 9)
    # beyond the end: clamped to the last step
    assert lr_at(50, peak_lr=1.0, total_steps=10, warmup_steps=2) == pytest.approx(1 / 8)


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_schedule_shapes(schedule):
    s = LRSchedule(0.4, 1000, 100, schedule)
    c = s.curve()
    assert all(b > a for a, b in zip(c[:100], c[1:100]))          # warm-up strictly rises
    assert c[99] == pytest.approx(0.4) and max(c) == pytest.approx(0.4)
    assert all(b <= a for a, b in zip(c[100:], c[101:]))          # then never rises
    assert c[-1] < 0.4 * 0.01                                     # ends near 0


def test_warmup_and_schedule_validation():
    assert warmup_steps_for(1.0, 50, 500) == 50
    assert warmup_steps_for(0.5, 50, 500) == 25
    assert warmup_steps_for(3.0, 50, 100) == 50                   # capped at half the run
    assert LRSchedule(1.0, 5, 0, "onecycle")(0) == pytest.approx(1.0)  # no warm-up: starts at the peak
    with pytest.raises(ValueError, match="schedule"):
        lr_at(0, peak_lr=1.0, total_steps=10, schedule="step")
    with pytest.raises(ValueError):
        LRSchedule(1.0, 10, 11)


# ------------------------------------------------------------------------------------------------------------- config
def test_config_defaults_and_validation():
    r = TrainConfig().resolved()
    assert (r.optimizer, r.schedule, r.nesterov, r.label_smoothing) == ("sgd", "onecycle", True, 0.1)
    assert (r.precision, r.channels_last) == ("bf16", True)
    assert r.lr == pytest.approx(0.1) and r.weight_decay == pytest.approx(5e-4) and r.eval_batch_size == 256
    assert TrainConfig(batch_size=512).resolved().lr == pytest.approx(0.4)   # linear scaling per 128
    a = TrainConfig(optimizer="adamw", batch_size=512).resolved()
    assert a.lr == pytest.approx(2e-3) and a.weight_decay == pytest.approx(0.05)
    assert TrainConfig(lr=0.3, weight_decay=0.0).resolved().lr == 0.3
    assert TrainConfig.from_dict(TrainConfig(epochs=7).to_dict()) == TrainConfig(epochs=7)
    for bad in [dict(optimizer="adam"), dict(schedule="step"), dict(precision="fp8"), dict(epochs=0),
                dict(lr=-1.0), dict(label_smoothing=1.0), dict(eval_every=0), dict(tta_thresholds=[1.5])]:
        with pytest.raises(ValueError, match="--"):
            TrainConfig(**bad).resolved()
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"epochz": 3})


def test_optimizer_param_groups():
    m = Tiny()
    opt = build_optimizer(m, TrainConfig(lr=0.1, weight_decay=1e-3).resolved())
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    decay, no_decay = opt.param_groups
    assert [p.shape for p in decay["params"]] == [m.conv.weight.shape, m.fc.weight.shape]
    assert decay["weight_decay"] == 1e-3 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in no_decay["params"]} == {id(m.bn.weight), id(m.bn.bias), id(m.fc.bias)}
    opt2 = build_optimizer(m, TrainConfig(optimizer="adamw", wd_norm_bias=True).resolved())
    assert isinstance(opt2, torch.optim.AdamW) and len(opt2.param_groups) == 1
    assert len(opt2.param_groups[0]["params"]) == 5 and opt2.param_groups[0]["weight_decay"] == 0.05


# ----------------------------------------------------------------------------------------------------------- evaluate
def test_evaluate_by_hand():
    lin = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(2))
    x = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    batches = [(x[:2], torch.tensor([0, 1])), (x[2:], torch.tensor([1]))]
    r = evaluate(lin, batches)
    lo, hi = math.log1p(math.exp(-2)), math.log1p(math.exp(2))   # CE of the right / wrong class at margin 2
    assert r["n"] == 3 and r["acc"] == pytest.approx(2 / 3)
    assert r["loss"] == pytest.approx((2 * lo + hi) / 3, rel=1e-6)
    assert lin.training  # mode restored


# -------------------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(1)
    m = Tiny().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, betas=(0.8, 0.99))
    m(torch.randn(4, 1, 8, 8)).sum().backward()
    opt.step()
    extra = {"nested": {"t": torch.arange(3), 1: (2.5, None, "s")}, "lst": [1, torch.ones(2, dtype=torch.bfloat16)]}
    p = tmp_path / "c.safetensors"
    save_checkpoint(p, model=m, optimizer=opt, step=17, epoch=2, extra=extra, config={"a": 1}, best_metric=0.5)
    assert no_temp_files(tmp_path)
    expected = (torch.rand(3), random.random(), np.random.rand())   # the draws that follow the saved RNG state
    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(7)

    m2 = Tiny()
    opt2 = torch.optim.AdamW(m2.parameters(), lr=1.0)
    meta = load_checkpoint(p, model=m2, optimizer=opt2, restore_rng=True)
    # the RNG state of save time is back: the same draws again
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]
    assert np.random.rand() == expected[2]
    assert (meta["epoch"], meta["step"], meta["best_metric"], meta["config"]) == (2, 17, 0.5, {"a": 1})
    assert meta["model_class"] == "Tiny" and meta["optimizer_class"] == "AdamW"
    assert torch.equal(meta["extra"]["nested"]["t"], torch.arange(3)) and meta["extra"]["nested"][1] == (2.5, None, "s")
    assert meta["extra"]["lst"][1].dtype == torch.bfloat16
    for (k, a), b in zip(m.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s2["param_groups"][0]["betas"] == (0.8, 0.99) and s2["param_groups"][0]["lr"] == 1e-2
    for i in s1["state"]:
        for k in s1["state"][i]:
            assert torch.equal(s1["state"][i][k], s2["state"][i][k]), (i, k)
    # the file is plain safetensors (8-byte header length + JSON header); no pickle involved
    raw = p.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert header["__metadata__"]["format"] == "blockzoo-checkpoint"
    assert set(load_file(p)) >= {"model.conv.weight", "model.bn.num_batches_tracked"}


def test_tied_weights_and_weights_files(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = nn.Linear(3, 3)
            self.b.weight = self.a.weight

    t = Tied()
    save_checkpoint(tmp_path / "t.safetensors", model=t)
    t2 = Tied()
    load_checkpoint(tmp_path / "t.safetensors", model=t2)
    assert torch.equal(t2.a.weight, t.a.weight) and t2.b.weight is t2.a.weight

    m = Tiny()
    save_weights(tmp_path / "w.safetensors", m, metadata={"epoch": 3})
    assert read_metadata(tmp_path / "w.safetensors")["epoch"] == 3
    m2 = Tiny()
    load_weights(tmp_path / "w.safetensors", m2)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    with pytest.raises(CheckpointError, match="shape mismatch.*fc.weight"):
        load_weights(tmp_path / "w.safetensors", Tiny(num_classes=7))
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(tmp_path / "w.safetensors", model=Tiny())
    # a full checkpoint also serves as a weights file
    save_checkpoint(tmp_path / "c.safetensors", model=m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1))
    m3 = Tiny()
    load_weights(tmp_path / "c.safetensors", m3)
    assert torch.equal(m3.fc.weight, m.fc.weight)
    with pytest.raises(CheckpointError, match="optimizer SGD, not AdamW"):
        load_checkpoint(tmp_path / "c.safetensors", model=Tiny(), optimizer=torch.optim.AdamW(m3.parameters()))


def test_corrupt_checkpoints_raise(tmp_path):
    m = Tiny()
    good = tmp_path / "good.safetensors"
    save_checkpoint(good, model=m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9))
    raw = good.read_bytes()
    cases = {
        "truncated.safetensors": raw[: len(raw) - 100],
        "halved.safetensors": raw[: len(raw) // 2],
        "random.safetensors": np.random.default_rng(0).bytes(4096),
        "empty.safetensors": b"",
        "flipped.safetensors": raw[:-10] + bytes([raw[-10] ^ 0xFF]) + raw[-9:],   # bit rot in the tensor data
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(CheckpointError) as ei:
            load_checkpoint(tmp_path / name, model=Tiny())
        msg = str(ei.value)
        assert name in msg and "delete" in msg and "--resume" in msg, msg
        with pytest.raises(CheckpointError, match=name):
            load_weights(tmp_path / name, Tiny())
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    m = Tiny()
    p = tmp_path / "last.safetensors"
    save_checkpoint(p, model=m, epoch=1)
    before = p.read_bytes()

    def broken_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(p, model=m, epoch=2)
    assert p.read_bytes() == before and load_checkpoint(p)["epoch"] == 1
    assert sorted(x.name for x in tmp_path.iterdir()) == ["last.safetensors"]   # no temp file left


# ---------------------------------------------------------------------------------------------------------- training
def test_train_metrics_result_and_exact_resume(tmp_path, data):
    tr, te = data
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()

    # uninterrupted: 3 epochs (with a progress bar going to a string console)
    from rich.console import Console
    out = io.StringIO()
    torch.manual_seed(0)
    a_dir = tmp_path / "a"
    res = train(cfg_for(a_dir, progress=True), Tiny(), tr, te, console=Console(file=out, width=120))
    assert torch.get_num_threads() == threads and torch.are_deterministic_algorithms_enabled() == det  # restored
    assert "epoch 3/3" in out.getvalue()

    lines = [json.loads(x) for x in (a_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3] and all(tuple(x) == METRIC_KEYS for x in lines)
    assert [x["step"] for x in lines] == [8, 16, 24]              # 256 images / batch 32
    assert lines[2]["train_loss"] < lines[0]["train_loss"]        # it learns
    assert lines[2]["lr"] == pytest.approx(0.1 / 20)              # onecycle, W=4 of T=24: last lr = peak / (T - W)
    assert lines[2]["train_time_s"] == pytest.approx(sum(x["epoch_time_s"] for x in lines))
    result = json.loads((a_dir / "result.json").read_text())
    assert tuple(result) == RESULT_KEYS and result == json.loads(json.dumps(res))
    assert result["final_test_acc"] == lines[2]["test_acc"] > 0.5          # 4 classes: chance is 0.25
    assert result["best_test_acc"] == max(x["test_acc"] for x in lines)
    assert result["params"] == sum(p.numel() for p in Tiny().parameters())
    assert [result[k] for k in ("steps", "total_steps", "warmup_steps", "epochs_completed")] == [24, 24, 4, 3]
    assert set(result["time_to_acc"]) == {"0.90", "0.92", "0.93", "0.94"}
    for k, t in result["time_to_acc"].items():   # seconds of training when the per-epoch eval first reached it
        hit = [x for x in lines if x["test_acc"] >= float(k)]
        assert t == (hit[0]["train_time_s"] if hit else None)
    assert result["threads"] == 1 and result["device"] == "cpu" and result["torch_version"] == torch.__version__
    assert result["precision"] == "bfloat16 autocast" and result["config"]["lr"] == 0.1
    assert {p.name for p in a_dir.iterdir()} == {"metrics.jsonl", "result.json", "last.safetensors",
                                                  "best.safetensors"}
    best = Tiny()
    assert read_metadata(a_dir / "best.safetensors")["epoch"] == result["best_epoch"]
    load_weights(a_dir / "best.safetensors", best)

    # killed after epoch 2 (the hook runs after the checkpoint is written), then resumed with a fresh model
    def kill_at_2(m):
        if m["epoch"] == 2:
            raise Killed
    b_dir = tmp_path / "b"
    torch.manual_seed(0)
    with pytest.raises(Killed):
        train(cfg_for(b_dir), Tiny(), tr, te, on_epoch_end=kill_at_2)
    assert load_checkpoint(b_dir / "last.safetensors")["epoch"] == 2
    assert torch.are_deterministic_algorithms_enabled() == det           # restored on error, too
    torch.manual_seed(999)                                               # resume must not depend on the caller's RNG
    model_b = Tiny()
    res_b = train(cfg_for(b_dir, resume=True), model_b, tr, te)
    assert res_b["resumed_from_epoch"] == 2 and res_b["epochs_completed"] == 3

    sa, sb = load_file(a_dir / "last.safetensors"), load_file(b_dir / "last.safetensors")
    assert set(sa) == set(sb)
    for k in sa:   # model, optimizer momentum and RNG tensors: bit-identical
        assert torch.equal(sa[k], sb[k]), k
    model_a = Tiny()
    load_weights(a_dir / "last.safetensors", model_a)
    for (k, x), y in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(x, y), k
    lines_b = [json.loads(x) for x in (b_dir / "metrics.jsonl").read_text().splitlines()]
    keys = ("epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "lr")
    assert [[x[k] for k in keys] for x in lines_b] == [[x[k] for k in keys] for x in lines]
    assert res_b["final_test_acc"] == res["final_test_acc"] and res_b["best_test_acc"] == res["best_test_acc"]
    assert no_temp_files(b_dir)

    # resuming a finished run trains nothing more and reports the same result
    res_c = train(cfg_for(b_dir, resume=True), Tiny(), tr, te)
    assert res_c["steps"] == 24 and res_c["final_test_acc"] == res["final_test_acc"]
    assert len((b_dir / "metrics.jsonl").read_text().splitlines()) == 3


def test_resume_from_corrupt_checkpoint_raises(tmp_path, data):
    tr, te = data
    d = tmp_path / "run"
    train(cfg_for(d, epochs=1), Tiny(), tr, te)
    p = d / "last.safetensors"
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="without --resume"):
        train(cfg_for(d, epochs=2, resume=True), Tiny(), tr, te)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, data):
    tr, te = data
    d = tmp_path / "nan"
    model = NaNAfter(8 + 2)   # 8 steps per epoch: NaN from the 3rd step of epoch 2
    with pytest.raises(NonFiniteLossError) as ei:
        train(cfg_for(d, epochs=4), model, tr, te)
    e = ei.value
    assert (e.epoch, e.step, e.global_step) == (2, 3, 11) and math.isnan(e.loss)
    msg = str(e)
    assert "epoch 2" in msg and "lr=" in msg and "--lr" in msg and "fp32" in msg and "last.safetensors" in msg
    meta = load_checkpoint(d / "last.safetensors", model=NaNAfter(0))
    assert meta["epoch"] == 1 and meta["step"] == 8
    assert all(torch.isfinite(t).all() for t in load_file(d / "last.safetensors").values() if t.is_floating_point())
    assert [json.loads(x)["epoch"] for x in (d / "metrics.jsonl").read_text().splitlines()] == [1]
    assert no_temp_files(d) and not (d / "result.json").exists()


def test_time_budget_and_adamw_cosine(tmp_path, data):
    tr, te = data
    res = train(cfg_for(tmp_path / "b", optimizer="adamw", lr=None, schedule="cosine", precision="fp32",
                        channels_last=False, deterministic=False, max_train_time_s=1e-9, eval_every=2, threads=2),
                Tiny(), tr, te)
    assert res["threads"] == 2 and torch.get_num_threads() == 1            # set for the run, restored afterwards
    assert res["stopped_reason"] == "max_train_time_s" and res["steps"] == 1 and res["epochs_completed"] == 1
    assert res["precision"] == "fp32" and res["lr_peak"] == 2e-3 and res["final_test_acc"] is not None
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["test_acc"] is not None   # a budget stop evaluates at once


def test_fp16_gradscaler_path_resumes(tmp_path, data):
    # fp16 autocast + GradScaler (the CUDA "amp" path) also runs on CPU: the scaler state goes through the checkpoint
    tr, te = data
    d = tmp_path / "fp16"
    train(cfg_for(d, epochs=1, precision="fp16", clip_grad_norm=1.0), Tiny(), tr, te)
    meta = load_checkpoint(d / "last.safetensors")
    assert meta["scaler"]["scale"] > 0 and "_growth_tracker" in meta["scaler"]
    with pytest.warns(UserWarning, match=r"changed settings \['epochs'\]"):   # a longer run: new schedule
        res = train(cfg_for(d, epochs=2, precision="fp16", clip_grad_norm=1.0, resume=True), Tiny(), tr, te)
    assert res["precision"] == "float16+gradscaler autocast" and res["steps"] == 16 and res["resumed_from_epoch"] == 1


def test_unknown_dataset_fails_before_creating_the_run_dir(tmp_path):
    from blockzoo.data import DataError
    with pytest.raises(DataError):
        train(cfg_for(tmp_path / "x", data="no-such-dataset"), Tiny())
    assert not (tmp_path / "x").exists()
