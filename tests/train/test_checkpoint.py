"""blockzoo.train.checkpoint: round trips (tied weights, weights files), corrupt files, atomic writes; the checksum
covers the metadata, fields are type- and range-checked on load, format version 1 still loads, stale temporary
files are removed by pattern, and model specs round-trip."""
from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from blockzoo.errors import CheckpointError
from blockzoo.train import checkpoint as ckpt
from blockzoo.train import checkpoint as ckpt_mod
from blockzoo.train import (
    load_checkpoint,
    load_weights,
    make_model_spec,
    read_metadata,
    save_checkpoint,
    save_weights,
)
from helpers import Tiny, no_temp_files


def small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def header(path: Path) -> dict:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n])["__metadata__"]


def rewrite(path: Path, *, resign: bool = False, **fields: str) -> None:
    """Replace metadata fields (JSON strings) in place; ``resign`` recomputes the checksum as a careful editor
    would (so that only the range checks can catch the edit)."""
    meta = {**header(path), **fields}
    tensors = load_file(path)
    if resign:
        meta["sha256"] = ckpt._digest(tensors, None if meta.get("format_version") == "1" else meta)
    save_file(tensors, path, metadata=meta)


@pytest.fixture
def saved(tmp_path) -> Path:
    m = small()
    p = tmp_path / "last.safetensors"
    save_checkpoint(p, model=m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9), step=16, epoch=2,
                    config={"epochs": 3}, best_metric=0.5, steps_per_epoch=8)
    return p


@pytest.mark.parametrize("field,value", [("epoch", "5"), ("step", "17"), ("config", '{"epochs": 30}'),
                                         ("best_metric", "0.99"), ("model_class", '"Other"')])
def test_a_hand_edited_field_breaks_the_checksum(saved, field, value):
    rewrite(saved, **{field: value})
    with pytest.raises(CheckpointError, match="corrupt or was edited.*checksum"):
        load_checkpoint(saved, model=small())
    with pytest.raises(CheckpointError, match="corrupt or was edited"):
        load_weights(saved, small())


@pytest.mark.parametrize("field,value,want", [
    ("epoch", "-1", "integer >= 0"), ("epoch", "1.5", "integer >= 0"), ("epoch", "true", "integer >= 0"),
    ("step", '"16"', "integer >= 0"), ("step", "40", "between epoch"), ("step", "1", "between epoch"),
    ("steps_per_epoch", "0", "integer >= 1"), ("best_metric", "1.5", r"accuracy in \[0, 1\]"),
    ("best_metric", "NaN", r"accuracy in \[0, 1\]"), ("config", "[1, 2]", "dict of TrainConfig"),
    ("extra", "[]", "a dict"), ("model_spec", '{"name": "resnet20"}', "keys name, slots"),
])
def test_metadata_fields_are_type_and_range_checked(saved, field, value, want):
    rewrite(saved, resign=True, **{field: value})
    with pytest.raises(CheckpointError, match=f"invalid metadata field '{field}'.*{want}"):
        load_checkpoint(saved, model=small())


def test_the_checksum_covers_the_metadata_of_weights_files_too(tmp_path):
    p = tmp_path / "w.safetensors"
    save_weights(p, small(), metadata={"epoch": 3})
    load_weights(p, small())
    rewrite(p, epoch="4")
    with pytest.raises(CheckpointError, match="corrupt or was edited"):
        load_weights(p, small())


def test_format_version_1_files_still_load(saved):
    """Version 1 checksummed the tensors only: such files load, their tensors verified, their fields range-checked."""
    meta = header(saved)
    rewrite(saved, format_version="1", resign=True)
    assert header(saved)["sha256"] == ckpt._digest(load_file(saved))   # the old, tensor-only checksum
    out = load_checkpoint(saved, model=small(), optimizer=torch.optim.SGD(small().parameters(), lr=1, momentum=0.9))
    assert (out["epoch"], out["step"], out["config"]) == (2, 16, {"epochs": 3})
    assert json.loads(meta["epoch"]) == 2
    raw = bytearray(saved.read_bytes())
    raw[-3] ^= 0xFF   # bit rot in the tensor data is still found
    saved.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(saved, model=small())


def test_unknown_format_version_is_refused(saved):
    rewrite(saved, format_version="9", resign=True)
    with pytest.raises(CheckpointError, match="format version '9'.*reads versions 1, 2"):
        load_checkpoint(saved)


def test_remove_stale_temp_files_only_matches_the_write_patterns(tmp_path):
    names = [".last.safetensors.abc.tmp", ".result.json.123.tmp", ".last.safetensors.tmp", "last.safetensors",
             ".zzz.abc.tmp", "x.tmp"]
    for n in names:
        (tmp_path / n).write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".last.safetensors.abc.tmp").write_text("x")
    removed = ckpt.remove_stale_temp_files(tmp_path, ("last.safetensors", "result.json"))
    assert sorted(removed) == [".last.safetensors.abc.tmp", ".result.json.123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".last.safetensors.tmp", "last.safetensors", ".zzz.abc.tmp", "x.tmp", "sub"])
    assert (tmp_path / "sub" / ".last.safetensors.abc.tmp").exists()   # only that folder
    assert ckpt.remove_stale_temp_files(tmp_path / "missing", ("last.safetensors",)) == []


def test_model_spec_round_trips_with_tuples_and_refuses_callables(tmp_path):
    spec = make_model_spec("resnet20", slots={"attn": ("se", {"reduction": 8})}, model_kwargs={"last_stride": 1},
                           num_classes=10, in_chans=1, img_size=(28, 28))
    p = tmp_path / "w.safetensors"
    save_weights(p, small(), model_spec=spec)
    save_checkpoint(tmp_path / "c.safetensors", model=small(), model_spec=spec)
    assert load_checkpoint(tmp_path / "c.safetensors")["model_spec"] == spec
    assert ckpt._decoded_spec(header(p), str(p), "") == spec   # the tuples are tuples again
    assert make_model_spec("resnet20", slots={"attn": lambda c: nn.Identity()}, model_kwargs={}, num_classes=10,
                           in_chans=1, img_size=None) is None


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
