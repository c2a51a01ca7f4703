"""blockzoo.train.checkpoint: the checksum covers the metadata, fields are type- and range-checked on load, format
version 1 still loads, stale temporary files are removed by pattern, and model specs round-trip."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from blockzoo.errors import CheckpointError
from blockzoo.train import checkpoint as ckpt
from blockzoo.train import load_checkpoint, load_weights, make_model_spec, save_checkpoint, save_weights


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
