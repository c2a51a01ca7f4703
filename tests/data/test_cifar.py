"""blockzoo.data.cifar: CIFAR-10/100 batches, the restricted unpickler, archive extraction."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from blockzoo.data import (
    DATASETS,
    DataError,
    ensure_dataset,
    load_dataset,
)
from blockzoo.data import fetch as fetch_mod
from blockzoo.data.cifar import RestrictedUnpickler, safe_load_pickle
from helpers import _replace_info, _serve


def _cifar_batch(n: int, seed: int, label_key: str = "labels", num_classes: int = 10) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, num_classes, size=n)]
    return {"batch_label": "testing batch", label_key: labels, "data": data,
            "filenames": [f"img_{i}.png" for i in range(n)]}, data


def _write_cifar10(folder: Path, protocol: int = 2) -> dict[str, list[np.ndarray]]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {"train": [], "test": []}
    for i, fname in enumerate(["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                               "test_batch"]):
        batch, data = _cifar_batch(4, i)
        (folder / fname).write_bytes(pickle.dumps(batch, protocol=protocol))
        out["test" if fname == "test_batch" else "train"].append((data, batch["labels"]))
    return out


class _Evil:
    def __init__(self, marker: Path, fn):
        self.marker, self.fn = marker, fn

    def __reduce__(self):
        if self.fn == "system":
            return (os.system, (f"touch {self.marker}",))
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_fabricated_batches(tmp_path, protocol):
    folder = tmp_path / "cifar-10-batches-py"
    written = _write_cifar10(folder, protocol)
    ds = load_dataset("cifar10", data_dir=tmp_path, verify=False)
    assert ds.images.shape == (20, 3, 32, 32) and ds.images.dtype == torch.uint8 and ds.source == folder
    data0, labels0 = written["train"][0]
    # row layout: 1024 red values, then green, then blue, each row-major 32 x 32
    assert torch.equal(ds.images[0, 0], torch.from_numpy(data0[0, :1024].reshape(32, 32)))
    assert torch.equal(ds.images[1, 2, 0, :3], torch.from_numpy(data0[1, 2048:2051]))
    all_labels = [lab for _, labs in written["train"] for lab in labs]
    assert ds.labels.tolist() == all_labels
    test = load_dataset("cifar10", "test", data_dir=folder, verify=False)
    assert len(test) == 4 and test.classes[0] == "airplane" and test.mean == (0.4914, 0.4822, 0.4465)
    with pytest.raises(DataError, match=r"data_batch_1: checksum mismatch: md5 .* expected c99cafc152244af753f735de7"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True)
    for fname, seed in (("train", 0), ("test", 1)):
        batch, _ = _cifar_batch(6, seed, "fine_labels", 100)
        batch["coarse_labels"] = [0] * 6
        (folder / fname).write_bytes(pickle.dumps(batch, protocol=2))
    ds = load_dataset("cifar100", "test", data_dir=tmp_path, verify=False)
    assert ds.labels.tolist() == _cifar_batch(6, 1, "fine_labels", 100)[0]["fine_labels"]
    assert ds.num_classes == 100 and ds.classes[:3] == ["apple", "aquarium_fish", "baby"]


@pytest.mark.parametrize("fn, global_name", [("system", "posix.system"), ("eval", "__builtin__.eval")])
def test_restricted_unpickler_refuses_code(tmp_path, fn, global_name):
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar10(folder)
    batch, _ = _cifar_batch(4, 0)
    batch["labels"] = _Evil(marker, fn)
    (folder / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))   # protocol 2 names builtins __builtin__
    with pytest.raises(DataError) as ei:
        load_dataset("cifar10", data_dir=folder, verify=False)
    msg = str(ei.value)
    assert f"refusing to unpickle global `{global_name}`" in msg and "data_batch_3" in msg and "malicious" in msg
    assert not marker.exists()
    # sanity: plain pickle would have run it
    pickle.loads(pickle.dumps(_Evil(marker, fn)))
    assert marker.exists()


def test_restricted_unpickler_other_cases(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for proto in (2, 3, 5):
        back = RestrictedUnpickler(io.BytesIO(pickle.dumps({"a": arr, b"b": [1, 2.5, "x"]}, protocol=proto))).load()
        assert np.array_equal(back["a"], arr) and back[b"b"] == [1, 2.5, "x"]
    with pytest.raises(DataError, match="refusing to unpickle global `collections.OrderedDict`"):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(__import__("collections").OrderedDict(a=1)))).load()
    bad = tmp_path / "trunc"
    bad.write_bytes(pickle.dumps({"data": arr}, protocol=2)[:-5])
    with pytest.raises(DataError, match="truncated or corrupt"):
        safe_load_pickle(bad)
    wrong = tmp_path / "cifar-10-batches-py"
    _write_cifar10(wrong)
    (wrong / "test_batch").write_bytes(pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}))
    with pytest.raises(DataError, match=r"'data' must be a uint8 array N x 3072"):
        load_dataset("cifar10", "test", data_dir=wrong, verify=False)


def test_cifar_archive_download_extracts_only_expected_files(tmp_path, monkeypatch):
    src = tmp_path / "src" / "cifar-10-batches-py"
    _write_cifar10(src)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
        evil = tarfile.TarInfo("../escaped")
        evil.size = 3
        tar.addfile(evil, io.BytesIO(b"bad"))
    blob = buf.getvalue()
    info = _replace_info(monkeypatch, "cifar10", archive_md5=hashlib.md5(blob).hexdigest(),
                         files={s: tuple(dataclasses.replace(f, md5=None) for f in fs)
                                for s, fs in DATASETS["cifar10"].files.items()})
    monkeypatch.setattr(fetch_mod, "_urlopen", _serve({info.archive_url: blob}))
    path = ensure_dataset("cifar10", tmp_path / "dl")
    assert path == tmp_path / "dl" / "cifar10" / "cifar-10-batches-py"
    assert sorted(p.name for p in path.iterdir()) == ["data_batch_1", "data_batch_2", "data_batch_3",
                                                      "data_batch_4", "data_batch_5", "test_batch"]
    assert not (tmp_path / "dl" / "escaped").exists() and not (tmp_path / "dl" / "cifar10" / "escaped").exists()
    assert sorted(p.name for p in (tmp_path / "dl" / "cifar10").iterdir()) == ["cifar-10-batches-py"]
    assert len(load_dataset("cifar10", "test", data_dir=tmp_path / "dl")) == 4


def test_own_cifar_format_files_load_with_no_verify(tmp_path):
    import types

    from blockzoo.data import load_split
    _write_cifar10(tmp_path / "cifar-10-batches-py")
    opts = types.SimpleNamespace(data="cifar10", data_dir=str(tmp_path), verify=False, img_size=None, subset=None,
                                 test_subset=2, seed=0)
    assert len(load_split(opts, "train")) == 20 and len(load_split(opts, "test")) == 2
    with pytest.raises(DataError, match="checksum mismatch"):
        load_split(types.SimpleNamespace(**{**vars(opts), "verify": True}), "train")


@pytest.mark.slow
def test_train_cli_on_own_cifar_format_files(tmp_path, capsys):
    from blockzoo.cli import main
    _write_cifar10(tmp_path / "cifar-10-batches-py")
    args = ["train", "resnet20", "--data", "cifar10", "--data-dir", str(tmp_path), "--epochs", "1", "--batch-size",
            "10", "--test-subset", "2", "--no-progress", "--precision", "fp32", "--no-channels-last", "--log", "none",
            "--out", str(tmp_path / "run")]
    assert main(args) == 2 and "checksum mismatch" in capsys.readouterr().err
    assert main([*args, "--no-verify"]) == 0
    assert json.loads((tmp_path / "run" / "result.json").read_text())["test_size"] == 2
