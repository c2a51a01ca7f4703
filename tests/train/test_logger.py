"""blockzoo.train.logger: --log parsing, the per-step / per-epoch CSV files the trainer writes, resume without
duplicated steps, TensorBoard event files (when installed) and the clear error when it is not."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch

from blockzoo.errors import ConfigError
from blockzoo.train import NON_RESULT_FIELDS, TrainConfig, config_hash, train
from blockzoo.train.logger import STEP_KEYS, RunLogger, parse_log
from blockzoo.train.schedules import LRSchedule
from helpers import Tiny, no_temp_files, tiny_synthetic, tiny_train_cfg


@pytest.fixture(scope="module")
def data():
    return tiny_synthetic()


def cfg_for(d: Path, **kw) -> TrainConfig:
    return tiny_train_cfg(d, **{"epochs": 2, **kw})


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_parse_log_and_the_flag_is_checked_but_changes_no_result():
    assert parse_log("csv") == ("csv",) and parse_log(" CSV, tensorboard,csv ") == ("csv", "tensorboard")
    assert parse_log("none") == () == parse_log("")
    for bad in ("csv,tb", "none,csv", "json"):
        with pytest.raises(ConfigError, match="--log .*unknown logger"):
            parse_log(bad)
    with pytest.raises(ConfigError, match="--log"):
        TrainConfig(log="wandb").validate()
    assert "log" in NON_RESULT_FIELDS   # turning logging on does not retrain a run
    assert config_hash(TrainConfig(log="csv,tensorboard")) == config_hash(TrainConfig(log="none"))


def test_csv_rows_per_step_and_per_epoch(tmp_path, data):
    tr, te = data
    torch.manual_seed(0)
    train(cfg_for(tmp_path), Tiny(), tr, te)
    steps = rows(tmp_path / "steps.csv")
    assert list(steps[0]) == list(STEP_KEYS)
    assert [int(r["step"]) for r in steps] == list(range(1, 9))          # 128 images / batch 32, 2 epochs
    assert [int(r["epoch"]) for r in steps] == [1] * 4 + [2] * 4
    sched = LRSchedule(0.1, 8, 2, "onecycle")
    assert [float(r["lr"]) for r in steps] == pytest.approx([sched(s) for s in range(8)])  # lr of each step
    assert all(float(r["img_per_s"]) > 0 for r in steps)
    epochs = rows(tmp_path / "epochs.csv")
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [{k: float(v) for k, v in r.items()} for r in epochs] == [
        {k: pytest.approx(float(v)) for k, v in m.items()} for m in lines]
    for m in lines:   # the epoch's training loss is the mean of its steps' losses
        mine = [float(r["loss"]) for r in steps if int(r["epoch"]) == m["epoch"]]
        assert sum(mine) / len(mine) == pytest.approx(m["train_loss"], rel=1e-6)
    assert no_temp_files(tmp_path)


def test_log_none_writes_no_csv(tmp_path, data):
    train(cfg_for(tmp_path, epochs=1, log="none"), Tiny(), *data)
    assert not (tmp_path / "steps.csv").exists() and not (tmp_path / "epochs.csv").exists()


def ctrl_c_after_1(m):
    if m["epoch"] == 1:
        raise KeyboardInterrupt


def test_a_resumed_run_appends_without_duplicating_steps(tmp_path, data):
    tr, te = data
    torch.manual_seed(0)
    train(cfg_for(tmp_path / "full"), Tiny(), tr, te)

    d = tmp_path / "run"
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train(cfg_for(d), Tiny(), tr, te, on_epoch_end=ctrl_c_after_1)
    # the killed epoch 2 logged some steps (and a torn row) after the epoch-1 checkpoint
    with open(d / "steps.csv", "a") as f:
        f.write("5,2,9.9,0.1,100\n6,2,9.9,0.1,100\n7,2,9")
    with open(d / "epochs.csv", "a") as f:
        f.write("2,8,9.9\n")
    train(cfg_for(d), Tiny(), tr, te)   # the same call resumes
    steps, full = rows(d / "steps.csv"), rows(tmp_path / "full" / "steps.csv")
    assert [int(r["step"]) for r in steps] == list(range(1, 9))
    # deterministic CPU training: the resumed run logs exactly the uninterrupted run's losses
    assert [r["loss"] for r in steps] == [r["loss"] for r in full]
    assert [r["epoch"] for r in rows(d / "epochs.csv")] == ["1", "2"]

    train(cfg_for(d, overwrite=True, epochs=1), Tiny(), tr, te)      # a replaced run starts its files afresh
    assert [int(r["step"]) for r in rows(d / "steps.csv")] == [1, 2, 3, 4]


def test_step_losses_are_read_in_batches(tmp_path):
    log = RunLogger(tmp_path, ("csv",), flush_every=2)
    log.open(epoch=0, step=0)
    buf = torch.tensor([1.5, 2.5, 3.5])
    log.log_step(1, 1, buf[0], 0.1, 8, 0.5)
    assert not (tmp_path / "steps.csv").exists()              # pending: no host read yet
    log.log_step(2, 1, buf[1], 0.2, 8, 0.0)
    assert [r["loss"] for r in rows(tmp_path / "steps.csv")] == ["1.5", "2.5"]
    log.log_step(3, 1, buf[2], 0.3, 8, 2.0)
    log.close()
    got = rows(tmp_path / "steps.csv")
    assert [(r["step"], r["loss"], r["img_per_s"]) for r in got] == [("1", "1.5", "16.0"), ("2", "2.5", ""),
                                                                      ("3", "3.5", "4.0")]


def test_missing_tensorboard_is_a_config_error_naming_the_extra(tmp_path, data, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)   # import fails as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'blockzoo\[log\]'"):
        RunLogger(tmp_path, ("tensorboard",))
    with pytest.raises(ConfigError, match=r"blockzoo\[log\]"):
        train(cfg_for(tmp_path / "run", log="csv,tensorboard"), Tiny(), *data)
    assert not (tmp_path / "run").exists()                    # refused before the run folder is made


def test_tensorboard_scalars_and_resume_purges_the_killed_steps(tmp_path, data):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tr, te = data
    d = tmp_path / "run"
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train(cfg_for(d, log="tensorboard"), Tiny(), tr, te, on_epoch_end=ctrl_c_after_1)
    # a killed epoch 2 logged steps 5-6 after the checkpoint
    log = RunLogger(d, ("tensorboard",))
    log.open(epoch=1, step=4)
    log.log_step(5, 2, 9.0, 0.1, 32, 1.0)
    log.log_step(6, 2, 9.0, 0.1, 32, 1.0)
    log.close()
    train(cfg_for(d, log="tensorboard"), Tiny(), tr, te)
    acc = EventAccumulator(str(d / "tensorboard"))
    acc.Reload()
    loss = acc.Scalars("step/loss")
    assert [e.step for e in loss] == list(range(1, 9)) and all(e.value < 9 for e in loss)
    assert [e.step for e in acc.Scalars("epoch/test_acc")] == [4, 8]
    assert {"step/lr", "step/img_per_s", "epoch/train_loss", "epoch/lr", "epoch/epoch_time_s"} <= set(
        acc.Tags()["scalars"])
    assert not (d / "steps.csv").exists()                     # csv was not asked for
