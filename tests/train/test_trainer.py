"""blockzoo.train.trainer: optimizer groups, evaluate, the training loop (metrics, exact resume, non-finite loss,
time budget, fp16) and the run folder of blockzoo.train.train: the same command resumes, other settings are
refused (files untouched), --overwrite replaces, stale temporary files go; the result-changing config and its
hash; load_model from a run."""
from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

import blockzoo
from blockzoo.env import native_bf16
from blockzoo.errors import CheckpointError, ConfigError
from blockzoo.train import (
    METRIC_KEYS,
    NON_RESULT_FIELDS,
    RESULT_FIELDS,
    RESULT_KEYS,
    NonFiniteLossError,
    TrainConfig,
    build_optimizer,
    config_diff,
    config_hash,
    evaluate,
    load_checkpoint,
    load_weights,
    read_metadata,
    result_config,
    train,
)
from helpers import Tiny as TinyBN
from helpers import no_temp_files, tiny_synthetic, tiny_train_cfg


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.fixture(scope="module")
def data():
    return tiny_synthetic()


cfg_for = tiny_train_cfg


def snapshot(d: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.iterdir())}


def metric_epochs(d: Path) -> list[int]:
    return [json.loads(x)["epoch"] for x in (d / "metrics.jsonl").read_text().splitlines()]


# -------------------------------------------------------------------------------------------- result config / hash
def test_result_config_covers_exactly_the_result_changing_fields():
    assert NON_RESULT_FIELDS == {"progress", "out_dir", "threads", "device", "data_dir", "verify", "resume",
                                 "overwrite", "checkpoint", "log"}
    assert set(RESULT_FIELDS) | NON_RESULT_FIELDS == {f.name for f in dataclasses.fields(TrainConfig)}
    base = TrainConfig(model="resnet20", slots={"attn": ("eca", {"k_size": 3})},  # a tuple
                       model_kwargs={"shortcut": "B"})
    h = config_hash(base)
    assert len(h) == 8 and int(h, 16) >= 0
    # what does not change the result does not change the hash; resolved defaults equal their explicit values
    same = dataclasses.replace(base, threads=3, device="cpu", out_dir="elsewhere", progress=False, resume=True,
                               checkpoint=False, data_dir="/data", lr=0.1, weight_decay=5e-4, warmup_epochs=1,
                               verify=False)
    assert config_hash(same) == h and config_diff(base, same) == []
    # a stored config (JSON: tuples are lists) hashes like the live one; a missing field counts as its default
    stored = json.loads(json.dumps(base.resolved().to_dict()))
    del stored["overwrite"], stored["wd_norm_bias"]
    assert config_hash(stored) == h and result_config(stored) == result_config(base)
    for change in (dict(epochs=11), dict(subset=100), dict(seed=1), dict(slots={"attn": "se"}), dict(lr=0.2),
                   dict(model_kwargs={"shortcut": "A"}), dict(precision="fp32"), dict(augment=False),
                   dict(max_train_time_s=5.0), dict(batch_size=64), dict(data="cifar10"), dict(test_subset=100),
                   dict(data="./imgs", img_size=32), dict(aa="rand-m9-n2"), dict(reprob=0.25), dict(mixup=0.2),
                   dict(cutmix=1.0)):
        other = dataclasses.replace(base, **change)
        assert config_hash(other) != h, change
        assert [k for k, _, _ in config_diff(base, other)] != [], change
    assert config_diff(base, dataclasses.replace(base, epochs=11)) == [("epochs", 10, 11)]
    # a run stored before an option existed (no such field) keeps its hash once the option is added with a default
    # that keeps the old behaviour: only fields that differ from their defaults are hashed
    older = {k: v for k, v in stored.items() if k not in ("mixup", "cutmix", "aa", "reprob", "test_subset")}
    assert config_hash(older) == h
    # pinned: adding an option (with a default that keeps the old behaviour) must not move existing runs' hashes,
    # or compare would retrain them and the trainer refuse their folders; change these only on purpose
    assert config_hash(TrainConfig(model="resnet20")) == "c7321608"
    assert config_hash(TrainConfig(model="resnet20", epochs=3, slots={"attn": "eca"})) == "e098311e"


# ------------------------------------------------------------------------------------------------------ run folder
def test_rerunning_an_interrupted_command_resumes_it(tmp_path, data):
    tr, te = data
    full = train(cfg_for(tmp_path / "full"), Tiny(), tr, te)

    def ctrl_c_after_2(m):
        if m["epoch"] == 2:
            raise KeyboardInterrupt
    d = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(cfg_for(d), Tiny(), tr, te, on_epoch_end=ctrl_c_after_2)
    assert load_checkpoint(d / "last.safetensors")["epoch"] == 2
    res = train(cfg_for(d), Tiny(), tr, te)   # the very same call, no --resume
    assert res["resumed_from_epoch"] == 2 and res["epochs_completed"] == 3 and metric_epochs(d) == [1, 2, 3]
    assert res["final_test_acc"] == full["final_test_acc"] and res["steps"] == full["steps"] == 12
    assert res["config_hash"] == full["config_hash"] == config_hash(cfg_for(d))

    # a finished run is only re-reported: no epoch is trained again
    again = train(cfg_for(d), Tiny(), tr, te)
    assert again["steps"] == 12 and again["final_test_acc"] == res["final_test_acc"] and metric_epochs(d) == [1, 2, 3]


def test_other_settings_are_refused_and_the_run_is_left_untouched(tmp_path, data):
    tr, te = data
    d = tmp_path / "run"
    train(cfg_for(d, epochs=1), Tiny(), tr, te)
    before = snapshot(d)
    with pytest.raises(ConfigError) as ei:
        train(cfg_for(d, epochs=2, lr=0.05), Tiny(), tr, te)
    msg = str(ei.value)
    assert "epochs: 1 -> 2" in msg and "lr: 0.1 -> 0.05" in msg, msg
    assert "--resume" in msg and "--overwrite" in msg and "--out" in msg, msg
    assert snapshot(d) == before
    with pytest.raises(ConfigError, match="not both"):
        train(cfg_for(d, epochs=2, resume=True, overwrite=True), Tiny(), tr, te)
    assert snapshot(d) == before
    # settings that do not change the result (threads, progress) are not "other settings": the run is re-reported
    assert train(cfg_for(d, epochs=1, threads=2), Tiny(), tr, te)["steps"] == 4

    res = train(cfg_for(d, epochs=2, overwrite=True), Tiny(), tr, te)   # --overwrite replaces the run
    assert res["resumed_from_epoch"] is None and res["steps"] == 8 and metric_epochs(d) == [1, 2]
    assert read_metadata(d / "last.safetensors")["config"]["epochs"] == 2

    with pytest.warns(UserWarning, match=r"changed settings \['epochs'\]"):   # --resume continues with new settings
        res = train(cfg_for(d, epochs=3, resume=True), Tiny(), tr, te)
    assert res["resumed_from_epoch"] == 2 and metric_epochs(d) == [1, 2, 3]


def test_run_without_checkpoint_is_reported_or_refused(tmp_path, data):
    tr, te = data
    d = tmp_path / "run"
    res = train(cfg_for(d, epochs=1, checkpoint=False), Tiny(), tr, te)
    assert sorted(p.name for p in d.iterdir()) == ["epochs.csv", "metrics.jsonl", "result.json", "steps.csv"]
    before = snapshot(d)
    assert train(cfg_for(d, epochs=1, checkpoint=False), Tiny(), tr, te) == res   # stored result, nothing trained
    with pytest.raises(ConfigError, match="no checkpoint to resume.*--overwrite"):
        train(cfg_for(d, epochs=2, checkpoint=False, resume=True), Tiny(), tr, te)
    assert snapshot(d) == before


def test_stale_temporary_files_are_removed_on_start_and_resume(tmp_path, data):
    tr, te = data
    d = tmp_path / "run"
    d.mkdir()
    stale = [".last.safetensors.k1lled.tmp", ".best.safetensors.x.tmp", ".result.json.4242.tmp",
             ".metrics.jsonl.77.tmp"]
    kept = [".other.file.1.tmp", "notes.tmp", ".last.safetensors.keep"]
    for name in stale + kept:
        (d / name).write_bytes(b"partial")
    train(cfg_for(d, epochs=1), Tiny(), tr, te)
    names = {p.name for p in d.iterdir()}
    assert not names & set(stale) and set(kept) <= names
    (d / stale[0]).write_bytes(b"partial")
    train(cfg_for(d, epochs=1), Tiny(), tr, te)   # the same command again: resumes (re-reports) the run
    assert not (d / stale[0]).exists() and set(kept) <= {p.name for p in d.iterdir()}


# ------------------------------------------------------------------------------------------------------ load_model
def test_load_model_rebuilds_a_trained_registry_model_without_the_run_folder(tmp_path, data):
    tr, te = data
    d = tmp_path / "run"
    slots = {"attn": "se(reduction=8)"}
    cfg = cfg_for(d, model="resnet20", epochs=1, slots=slots, model_kwargs={"zero_init_last": False})
    train(cfg, None, tr, te)
    for name in ("best.safetensors", "last.safetensors"):
        spec = read_metadata(d / name)["model_spec"]
        assert spec["name"] == "resnet20" and spec["slots"] == slots
        assert spec["model_kwargs"] == {"zero_init_last": False}
        assert (spec["num_classes"], spec["in_chans"]) == (4, 1)
        moved = tmp_path / f"copy-{name}"   # no run folder around it
        moved.write_bytes((d / name).read_bytes())
        model = blockzoo.load_model(moved)
        assert not model.training
        ref = blockzoo.create_model("resnet20", num_classes=4, in_chans=1, img_size=(8, 8), **slots)
        assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ref.parameters())
        tensors = load_file(moved)
        prefix = "model." if name == "last.safetensors" else ""
        for k, v in model.state_dict().items():
            assert torch.equal(v, tensors[prefix + k]), k
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 4)


def test_load_model_needs_a_model_spec(tmp_path, data):
    tr, te = data
    train(cfg_for(tmp_path, epochs=1), Tiny(), tr, te)   # a ready-made model: how it was built is unknown
    with pytest.raises(CheckpointError, match="does not say which model.*load_weights"):
        blockzoo.load_model(tmp_path / "best.safetensors")


class NaNAfter(nn.Module):
    """TinyBN whose training output turns NaN after ``n`` training forward passes."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.net = TinyBN()
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
def data_256():
    from blockzoo.data.synthetic import make_synthetic
    tr = make_synthetic("train", num_classes=4, image_size=8, channels=1, n=256, noise=0.1, max_shift=1)
    te = make_synthetic("test", num_classes=4, image_size=8, channels=1, n=128, noise=0.1, max_shift=1)
    return tr, te


def seeded_cfg_for(tmp: Path, **kw) -> TrainConfig:
    base = dict(model="tiny", data="synthetic", epochs=3, batch_size=32, lr=0.1, warmup_epochs=0.5, progress=False,
                out_dir=str(tmp), deterministic=True, threads=1, device="cpu", seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_optimizer_param_groups():
    m = TinyBN()
    opt = build_optimizer(m, TrainConfig(lr=0.1, weight_decay=1e-3).resolved())
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    decay, no_decay = opt.param_groups
    assert [p.shape for p in decay["params"]] == [m.conv.weight.shape, m.fc.weight.shape]
    assert decay["weight_decay"] == 1e-3 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in no_decay["params"]} == {id(m.bn.weight), id(m.bn.bias), id(m.fc.bias)}
    opt2 = build_optimizer(m, TrainConfig(optimizer="adamw", wd_norm_bias=True).resolved())
    assert isinstance(opt2, torch.optim.AdamW) and len(opt2.param_groups) == 1
    assert len(opt2.param_groups[0]["params"]) == 5 and opt2.param_groups[0]["weight_decay"] == 0.05


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


def test_train_metrics_result_and_exact_resume(tmp_path, data_256):
    tr, te = data_256
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()

    # uninterrupted: 3 epochs (with a progress bar going to a string console)
    from rich.console import Console
    out = io.StringIO()
    torch.manual_seed(0)
    a_dir = tmp_path / "a"
    res = train(seeded_cfg_for(a_dir, progress=True), TinyBN(), tr, te, console=Console(file=out, width=120))
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
    assert result["params"] == sum(p.numel() for p in TinyBN().parameters())
    assert [result[k] for k in ("steps", "total_steps", "warmup_steps", "epochs_completed")] == [24, 24, 4, 3]
    assert set(result["time_to_acc"]) == {"0.90", "0.92", "0.93", "0.94"}
    for k, t in result["time_to_acc"].items():   # seconds of training when the per-epoch eval first reached it
        hit = [x for x in lines if x["test_acc"] >= float(k)]
        assert t == (hit[0]["train_time_s"] if hit else None)
    assert result["threads"] == 1 and result["device"] == "cpu" and result["torch_version"] == torch.__version__
    assert result["precision"] == ("bfloat16 autocast" if native_bf16() else "fp32")   # the default, "auto"
    assert result["config"]["lr"] == 0.1
    assert {p.name for p in a_dir.iterdir()} == {"metrics.jsonl", "result.json", "last.safetensors",
                                                  "best.safetensors", "steps.csv", "epochs.csv"}
    best = TinyBN()
    assert read_metadata(a_dir / "best.safetensors")["epoch"] == result["best_epoch"]
    load_weights(a_dir / "best.safetensors", best)

    # killed after epoch 2 (the hook runs after the checkpoint is written), then resumed with a fresh model
    def kill_at_2(m):
        if m["epoch"] == 2:
            raise Killed
    b_dir = tmp_path / "b"
    torch.manual_seed(0)
    with pytest.raises(Killed):
        train(seeded_cfg_for(b_dir), TinyBN(), tr, te, on_epoch_end=kill_at_2)
    assert load_checkpoint(b_dir / "last.safetensors")["epoch"] == 2
    assert torch.are_deterministic_algorithms_enabled() == det           # restored on error, too
    torch.manual_seed(999)                                               # resume must not depend on the caller's RNG
    model_b = TinyBN()
    res_b = train(seeded_cfg_for(b_dir, resume=True), model_b, tr, te)
    assert res_b["resumed_from_epoch"] == 2 and res_b["epochs_completed"] == 3

    sa, sb = load_file(a_dir / "last.safetensors"), load_file(b_dir / "last.safetensors")
    assert set(sa) == set(sb)
    for k in sa:   # model, optimizer momentum and RNG tensors: bit-identical
        assert torch.equal(sa[k], sb[k]), k
    model_a = TinyBN()
    load_weights(a_dir / "last.safetensors", model_a)
    for (k, x), y in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(x, y), k
    lines_b = [json.loads(x) for x in (b_dir / "metrics.jsonl").read_text().splitlines()]
    keys = ("epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "lr")
    assert [[x[k] for k in keys] for x in lines_b] == [[x[k] for k in keys] for x in lines]
    assert res_b["final_test_acc"] == res["final_test_acc"] and res_b["best_test_acc"] == res["best_test_acc"]
    assert no_temp_files(b_dir)

    # resuming a finished run trains nothing more and reports the same result
    res_c = train(seeded_cfg_for(b_dir, resume=True), TinyBN(), tr, te)
    assert res_c["steps"] == 24 and res_c["final_test_acc"] == res["final_test_acc"]
    assert len((b_dir / "metrics.jsonl").read_text().splitlines()) == 3


def test_resume_from_corrupt_checkpoint_raises(tmp_path, data_256):
    tr, te = data_256
    d = tmp_path / "run"
    train(seeded_cfg_for(d, epochs=1), TinyBN(), tr, te)
    p = d / "last.safetensors"
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="without --resume"):
        train(seeded_cfg_for(d, epochs=2, resume=True), TinyBN(), tr, te)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, data_256):
    tr, te = data_256
    d = tmp_path / "nan"
    model = NaNAfter(8 + 2)   # 8 steps per epoch: NaN from the 3rd step of epoch 2
    with pytest.raises(NonFiniteLossError) as ei:
        train(seeded_cfg_for(d, epochs=4), model, tr, te)
    e = ei.value
    assert (e.epoch, e.step, e.global_step) == (2, 3, 11) and math.isnan(e.loss)
    msg = str(e)
    assert "epoch 2" in msg and "lr=" in msg and "--lr" in msg and "fp32" in msg and "last.safetensors" in msg
    meta = load_checkpoint(d / "last.safetensors", model=NaNAfter(0))
    assert meta["epoch"] == 1 and meta["step"] == 8
    assert all(torch.isfinite(t).all() for t in load_file(d / "last.safetensors").values() if t.is_floating_point())
    assert [json.loads(x)["epoch"] for x in (d / "metrics.jsonl").read_text().splitlines()] == [1]
    assert no_temp_files(d) and not (d / "result.json").exists()


def test_time_budget_and_adamw_cosine(tmp_path, data_256):
    tr, te = data_256
    res = train(seeded_cfg_for(tmp_path / "b", optimizer="adamw", lr=None, schedule="cosine", precision="fp32",
                        channels_last=False, deterministic=False, max_train_time_s=1e-9, eval_every=2, threads=2),
                TinyBN(), tr, te)
    assert res["threads"] == 2 and torch.get_num_threads() == 1            # set for the run, restored afterwards
    assert res["stopped_reason"] == "max_train_time_s" and res["steps"] == 1 and res["epochs_completed"] == 1
    assert res["precision"] == "fp32" and res["lr_peak"] == 2e-3 and res["final_test_acc"] is not None
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["test_acc"] is not None   # a budget stop evaluates at once


def test_fp16_gradscaler_path_resumes(tmp_path, data_256):
    # fp16 autocast + GradScaler (the CUDA "amp" path) also runs on CPU: the scaler state goes through the checkpoint
    tr, te = data_256
    d = tmp_path / "fp16"
    train(seeded_cfg_for(d, epochs=1, precision="fp16", clip_grad_norm=1.0), TinyBN(), tr, te)
    meta = load_checkpoint(d / "last.safetensors")
    assert meta["scaler"]["scale"] > 0 and "_growth_tracker" in meta["scaler"]
    with pytest.warns(UserWarning, match=r"changed settings \['epochs'\]"):   # a longer run: new schedule
        res = train(seeded_cfg_for(d, epochs=2, precision="fp16", clip_grad_norm=1.0, resume=True), TinyBN(), tr, te)
    assert res["precision"] == "float16+gradscaler autocast" and res["steps"] == 16 and res["resumed_from_epoch"] == 1


def test_unknown_dataset_fails_before_creating_the_run_dir(tmp_path):
    from blockzoo.data import DataError
    with pytest.raises(DataError):
        train(seeded_cfg_for(tmp_path / "x", data="no-such-dataset"), TinyBN())
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------- your own data and augmentation
@pytest.fixture
def image_folder(make_image_folder):
    return make_image_folder(noise=0.1, max_shift=1)


def test_train_on_an_image_folder(image_folder, tmp_path):
    cfg = TrainConfig(model="resnet20", data=str(image_folder), epochs=1, batch_size=16, test_subset=6,
                      progress=False, out_dir=str(tmp_path / "run"), threads=1, device="cpu", precision="fp32",
                      channels_last=False, log="none")
    res = train(cfg)
    assert (res["train_size"], res["test_size"], res["steps"]) == (48, 6, 3)
    assert res["dataset"] == "imgs" and 0 <= res["final_test_acc"] <= 1
    model = blockzoo.load_model(tmp_path / "run" / "best.safetensors")
    assert model(torch.zeros(1, 3, 8, 8)).shape == (1, 3)        # the spec carries the folder's classes and size


def test_a_run_on_an_image_folder_is_not_reused_once_its_files_change(image_folder, tmp_path):
    """The folder's contents (file list, sizes, mtimes) are part of a run's identity: the same command on a changed
    folder is refused with the fix, nothing in the run folder is touched, and --overwrite trains on the new files."""
    import os
    cfg = TrainConfig(model="resnet20", data=str(image_folder), epochs=1, batch_size=16, progress=False,
                      out_dir=str(tmp_path / "run"), threads=1, device="cpu", precision="fp32", channels_last=False,
                      log="none", checkpoint=False)
    res = train(cfg)
    assert res["data_fingerprint"] and train(cfg) == res          # unchanged folder: the stored result
    img = next((image_folder / "train").rglob("*.png"))
    os.utime(img, ns=(img.stat().st_atime_ns, img.stat().st_mtime_ns + 10**9))   # an edited image
    before = snapshot(tmp_path / "run")
    with pytest.raises(ConfigError, match="files have changed since.*--overwrite"):
        train(cfg)
    assert snapshot(tmp_path / "run") == before
    again = train(dataclasses.replace(cfg, overwrite=True))
    assert again["data_fingerprint"] not in (None, res["data_fingerprint"])


def test_mixup_cutmix_erasing_randaugment_train_with_soft_targets(image_folder, tmp_path):
    pytest.importorskip("kornia")
    from blockzoo.data import load_dataset
    tr, te = (load_dataset(str(image_folder), s) for s in ("train", "test"))
    seen = []

    class Spy(TinyBN):
        def forward(self, x):
            seen.append(x.shape)
            return super().forward(x)

    cfg = cfg_for(tmp_path / "aug", epochs=1, batch_size=16, aa="rand-m9-n2", reprob=0.25, mixup=0.2, cutmix=1.0,
                  log="none")
    torch.manual_seed(0)
    res = train(cfg, model=Spy(in_chans=3, num_classes=3), train_set=tr, test_set=te)
    assert math.isfinite(res["final_train_loss"]) and 0 <= res["final_train_acc"] <= 1 and res["steps"] == 3
    assert seen[:3] == [(16, 3, 8, 8)] * 3
    torch.manual_seed(0)
    again = train(dataclasses.replace(cfg, out_dir=str(tmp_path / "aug2")), model=Spy(in_chans=3, num_classes=3),
                  train_set=tr, test_set=te)
    assert again["final_train_loss"] == res["final_train_loss"]  # deterministic under the seed


def test_hard_labels_of_soft_targets():
    from blockzoo.train.trainer import _hard_labels
    y = torch.tensor([2, 0])
    assert torch.equal(_hard_labels(y), y)
    assert torch.equal(_hard_labels(torch.tensor([[0.2, 0.0, 0.8], [0.6, 0.4, 0.0]])), y)


# ------------------------------------------------------------------------------- the fast recipe's mechanics
def test_norm_lr_scale_group_keeps_the_decay_per_step():
    """--norm-lr-scale: norm parameters get lr x s and weight decay / s (airbench's bias_scaler), others unchanged."""
    m = TinyBN()
    opt = build_optimizer(m, TrainConfig(lr=0.1, weight_decay=1e-3, wd_norm_bias=True, norm_lr_scale=64.0).resolved())
    decay, norm = opt.param_groups
    assert {id(p) for p in norm["params"]} == {id(m.bn.weight), id(m.bn.bias)}
    assert id(m.fc.bias) in {id(p) for p in decay["params"]}
    assert norm["lr_scale"] == 64.0 and norm["weight_decay"] * norm["lr_scale"] == pytest.approx(1e-3)
    assert decay["lr_scale"] == 1.0 and decay["weight_decay"] == 1e-3


class _DataInit(TinyBN):
    """TinyBN with the --data-init hooks, recording their calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list = []

    def init_from_data(self, images: torch.Tensor) -> None:
        self.calls.append(("init", tuple(images.shape)))
        with torch.no_grad():
            self.conv.weight.mul_(0.5)

    def on_train_epoch(self, epoch: int) -> None:
        self.calls.append(("epoch", epoch))


FAST_MECHANICS = dict(lookahead=True, norm_lr_scale=8.0, wd_norm_bias=True, schedule="airbench", data_init=True,
                      test_time_aug=2, label_smoothing=0.2)


def test_fast_recipe_mechanics_resume_exactly_and_report_tta(tmp_path, data_256):
    """Lookahead (EMA in the checkpoint), the norm lr group, the airbench schedule, the data-dependent init (new runs
    only) and the final TTA evaluation: killed after epoch 2 and resumed, the run is bit-identical to an
    uninterrupted one; the EMA weights are the result; final_tta_acc is evaluate(tta_level=2) of the final model."""
    tr, te = data_256
    torch.manual_seed(0)
    a = _DataInit()
    res = train(seeded_cfg_for(tmp_path / "a", **FAST_MECHANICS), a, tr, te)
    assert a.calls == [("init", (256, 1, 8, 8)), ("epoch", 1), ("epoch", 2), ("epoch", 3)]   # all 256 < 5000
    assert tuple(res) == RESULT_KEYS and res["tta_eval_time_s"] > 0
    from blockzoo.data import Loader
    loader = Loader(te, 64, train=False)
    assert res["final_tta_acc"] == evaluate(a, loader, precision="auto", tta_level=2)["acc"]
    assert res["final_test_acc"] == evaluate(a, loader, precision="auto")["acc"]

    def kill_at_2(m):
        if m["epoch"] == 2:
            raise Killed
    torch.manual_seed(0)
    with pytest.raises(Killed):
        train(seeded_cfg_for(tmp_path / "b", **FAST_MECHANICS), _DataInit(), tr, te, on_epoch_end=kill_at_2)
    b = _DataInit()
    res_b = train(seeded_cfg_for(tmp_path / "b", **FAST_MECHANICS, resume=True), b, tr, te)
    assert b.calls == [("epoch", 3)]            # no data init when resuming
    assert res_b["final_test_acc"] == res["final_test_acc"] and res_b["final_tta_acc"] == res["final_tta_acc"]
    sa, sb = load_file(tmp_path / "a" / "last.safetensors"), load_file(tmp_path / "b" / "last.safetensors")
    assert set(sa) == set(sb) and any("lookahead" in k for k in sa)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_lookahead_checkpoint_is_required_to_resume_with_lookahead(tmp_path, data_256):
    tr, te = data_256

    def kill_at_1(m):
        raise Killed
    with pytest.raises(Killed):
        train(seeded_cfg_for(tmp_path, epochs=2), TinyBN(), tr, te, on_epoch_end=kill_at_1)
    with pytest.raises(CheckpointError, match="lookahead"), pytest.warns(UserWarning, match="changed settings"):
        train(seeded_cfg_for(tmp_path, epochs=2, lookahead=True, resume=True), TinyBN(), tr, te)


def test_grad_noise_is_annealed_seeded_by_step_and_resumes_exactly(tmp_path, data_256):
    """--grad-noise (Neelakantan et al. 2015): N(0, eta / (1 + t)^gamma) added to every gradient; the draw depends
    only on (seed, step), so a killed-and-resumed run equals the uninterrupted one; off (0) by default."""
    from blockzoo.train.trainer import _Run
    assert TrainConfig().grad_noise == 0 and TrainConfig().grad_noise_decay == 0.55
    with pytest.raises(ConfigError, match="grad-noise"):
        TrainConfig(grad_noise=-1.0).validate()
    # the std at step t, on a big zero gradient
    tr, te = data_256
    run = _Run.__new__(_Run)                          # only what _add_grad_noise reads
    big = nn.Linear(400, 500)
    run.cfg, run.model, run.device = seeded_cfg_for(tmp_path, grad_noise=0.3), big, torch.device("cpu")
    draws = []
    for t in (0, 99, 99):
        run.global_step = t
        big.weight.grad, big.bias.grad = torch.zeros_like(big.weight), torch.zeros_like(big.bias)
        run._add_grad_noise()
        draws.append(big.weight.grad.clone())
        assert big.weight.grad.std().item() == pytest.approx(math.sqrt(0.3 / (1 + t) ** 0.55), rel=0.01)
    assert torch.equal(draws[1], draws[2]) and not torch.equal(draws[0] / draws[0].std(), draws[1] / draws[1].std())

    noisy = dict(grad_noise=1.0)
    torch.manual_seed(0)
    res = train(seeded_cfg_for(tmp_path / "a", **noisy), TinyBN(), tr, te)
    torch.manual_seed(0)
    plain = train(seeded_cfg_for(tmp_path / "p"), TinyBN(), tr, te)
    assert res["final_test_loss"] != plain["final_test_loss"]

    def kill_at_2(m):
        if m["epoch"] == 2:
            raise Killed
    torch.manual_seed(0)
    with pytest.raises(Killed):
        train(seeded_cfg_for(tmp_path / "b", **noisy), TinyBN(), tr, te, on_epoch_end=kill_at_2)
    res_b = train(seeded_cfg_for(tmp_path / "b", **noisy, resume=True), TinyBN(), tr, te)
    assert res_b["final_test_loss"] == res["final_test_loss"]
    sa, sb = load_file(tmp_path / "a" / "last.safetensors"), load_file(tmp_path / "b" / "last.safetensors")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
