"""The run folder of blockzoo.train.train: the same command resumes, other settings are refused (files untouched),
--overwrite replaces, stale temporary files go; the result-changing config and its hash; load_model from a run."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

import blockzoo
from blockzoo.errors import CheckpointError, ConfigError
from blockzoo.train import (
    NON_RESULT_FIELDS,
    RESULT_FIELDS,
    TrainConfig,
    config_diff,
    config_hash,
    load_checkpoint,
    read_metadata,
    result_config,
    train,
)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.fixture(scope="module")
def data():
    from blockzoo.data.synthetic import make_synthetic
    return (make_synthetic("train", num_classes=4, image_size=8, channels=1, n=128, noise=0.1, max_shift=1),
            make_synthetic("test", num_classes=4, image_size=8, channels=1, n=64, noise=0.1, max_shift=1))


def cfg_for(d: Path, **kw) -> TrainConfig:
    base = dict(model="tiny", data="synthetic", epochs=3, batch_size=32, lr=0.1, warmup_epochs=0.5, progress=False,
                out_dir=str(d), deterministic=True, threads=1, device="cpu", precision="fp32", channels_last=False)
    return TrainConfig(**{**base, **kw})


def snapshot(d: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.iterdir())}


def metric_epochs(d: Path) -> list[int]:
    return [json.loads(x)["epoch"] for x in (d / "metrics.jsonl").read_text().splitlines()]


# -------------------------------------------------------------------------------------------- result config / hash
def test_result_config_covers_exactly_the_result_changing_fields():
    assert NON_RESULT_FIELDS == {"progress", "out_dir", "threads", "device", "data_dir", "resume", "overwrite",
                                 "checkpoint"}
    assert set(RESULT_FIELDS) | NON_RESULT_FIELDS == {f.name for f in dataclasses.fields(TrainConfig)}
    base = TrainConfig(model="resnet20", slots={"attn": ("eca", {"k_size": 3})},  # a tuple
                       model_kwargs={"shortcut": "B"})
    h = config_hash(base)
    assert len(h) == 8 and int(h, 16) >= 0
    # what does not change the result does not change the hash; resolved defaults equal their explicit values
    same = dataclasses.replace(base, threads=3, device="cpu", out_dir="elsewhere", progress=False, resume=True,
                               checkpoint=False, data_dir="/data", lr=0.1, weight_decay=5e-4, warmup_epochs=1)
    assert config_hash(same) == h and config_diff(base, same) == []
    # a stored config (JSON: tuples are lists) hashes like the live one; a missing field counts as its default
    stored = json.loads(json.dumps(base.resolved().to_dict()))
    del stored["overwrite"], stored["wd_norm_bias"]
    assert config_hash(stored) == h and result_config(stored) == result_config(base)
    for change in (dict(epochs=11), dict(subset=100), dict(seed=1), dict(slots={"attn": "se"}), dict(lr=0.2),
                   dict(model_kwargs={"shortcut": "A"}), dict(precision="fp32"), dict(augment=False),
                   dict(max_train_time_s=5.0), dict(batch_size=64), dict(data="cifar10")):
        other = dataclasses.replace(base, **change)
        assert config_hash(other) != h, change
        assert [k for k, _, _ in config_diff(base, other)] != [], change
    assert config_diff(base, dataclasses.replace(base, epochs=11)) == [("epochs", 10, 11)]


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
    assert sorted(p.name for p in d.iterdir()) == ["metrics.jsonl", "result.json"]
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
