"""Tests of blockzoo.data: IDX/CIFAR readers and their checks, fetching (offline, monkeypatched), the restricted
unpickler, subsets, the synthetic set, augmentation and the Loader. Never touches the network or apt."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

import blockzoo.data as bd
from blockzoo.data import (
    DATASETS,
    DataError,
    Dataset,
    Loader,
    crop_flip,
    default_data_dir,
    ensure_dataset,
    load_dataset,
    subset_indices,
)
from blockzoo.data import cli as data_cli
from blockzoo.data import fetch as fetch_mod
from blockzoo.data.cifar import RestrictedUnpickler, safe_load_pickle
from blockzoo.data.idx import write_idx

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_NAMES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


# ------------------------------------------------------------------------------------------------------------ helpers
@pytest.fixture(autouse=True)
def _isolate(monkeypatch, tmp_path):
    """No network, no apt, no user environment: every test starts from a clean, offline state."""
    def no_network(*a, **k):
        raise AssertionError("a test tried to use the network")

    def no_subprocess(*a, **k):
        raise AssertionError("a test tried to run a command")

    monkeypatch.setattr(fetch_mod, "_urlopen", no_network)
    monkeypatch.setattr(fetch_mod, "_run", no_subprocess)
    monkeypatch.setattr(fetch_mod, "_is_root", lambda: False)
    monkeypatch.delenv("BLOCKZOO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def _fake_idx_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def _write_fake_idx(folder: Path, n_train: int = 30, n_test: int = 10) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        images, labels = _fake_idx_arrays(n, seed)
        write_idx(folder / IDX_NAMES[split][0], images)
        write_idx(folder / IDX_NAMES[split][1], labels)
        out[split] = (images, labels)
    return out


def _idx_bytes(array: np.ndarray) -> bytes:
    """Uncompressed IDX bytes of a uint8 array (written with write_idx, read back)."""
    buf = io.BytesIO()
    arr = np.ascontiguousarray(array, dtype=np.uint8)
    magic = 0x801 if arr.ndim == 1 else 0x803
    buf.write(struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes())
    return buf.getvalue()


def _content_sha(path: Path) -> str:
    return hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _serve(files: dict[str, bytes], log: list[str] | None = None):
    """A stand-in for urllib's urlopen that serves ``files`` by URL (anything else: URLError, like no network)."""
    def fake_urlopen(url, timeout=None):
        assert timeout is not None and timeout <= 60, "downloads must use a short timeout"
        if log is not None:
            log.append(url)
        if url in files:
            return _FakeResponse(files[url])
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    return fake_urlopen


def _replace_info(monkeypatch, name: str, **changes) -> bd.DatasetInfo:
    info = dataclasses.replace(DATASETS[name], **changes)
    monkeypatch.setitem(DATASETS, name, info)
    return info


# ------------------------------------------------------------------------------------------------------ IDX reading
def test_idx_round_trip_mnist(tmp_path):
    arrays = _write_fake_idx(tmp_path / "mnist")
    for split in ("train", "test"):
        ds = load_dataset("mnist", split, data_dir=tmp_path)          # root holding mnist/
        images, labels = arrays[split]
        assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
        assert ds.images.shape == (len(labels), 1, 28, 28)
        assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
        assert torch.equal(ds.labels, torch.from_numpy(labels.astype(np.int64)))
        assert ds.split == split and ds.name == "mnist" and ds.source == tmp_path / "mnist"
    assert ds.mean == (0.1307,) and ds.std == (0.3081,)
    assert ds.flip_ok is False and ds.num_classes == 10 and ds.in_chans == 1 and ds.image_size == (28, 28)


def test_idx_folder_itself_uncompressed_and_name_aliases(tmp_path):
    images, labels = _fake_idx_arrays(12, 3)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)           # plain (not gzip) files are fine too
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    ds = load_dataset("MNIST", data_dir=tmp_path)                     # the folder itself; case-insensitive name
    assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
    with pytest.raises(DataError, match="not found"):                  # test split absent, no download
        load_dataset("mnist", "test", data_dir=tmp_path, download=False)


def test_fashion_fabricated_checksum_mismatch_and_verify_off(tmp_path):
    arrays = _write_fake_idx(tmp_path)
    with pytest.raises(DataError) as ei:
        load_dataset("fashion-mnist", data_dir=tmp_path)
    msg = str(ei.value)
    assert "train-images-idx3-ubyte.gz" in msg and "checksum mismatch" in msg
    assert DATASETS["fashion-mnist"].files["train"][0].sha256 in msg
    assert "blockzoo data fetch fashion-mnist" in msg and "rm " in msg
    ds = load_dataset("fashion-mnist", data_dir=tmp_path, verify=False)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(arrays["train"][0]))
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot" and ds.flip_ok


def test_fashion_known_good_checksum_accepted(tmp_path, monkeypatch):
    _write_fake_idx(tmp_path)
    train, test = DATASETS["fashion-mnist"].files["train"], DATASETS["fashion-mnist"].files["test"]
    files = {"train": tuple(dataclasses.replace(s, sha256=_content_sha(tmp_path / s.name)) for s in train),
             "test": tuple(dataclasses.replace(s, sha256=_content_sha(tmp_path / s.name)) for s in test)}
    _replace_info(monkeypatch, "fashion-mnist", files=files)
    assert len(load_dataset("fashion-mnist", "test", data_dir=tmp_path)) == 10
    assert ensure_dataset("fashion-mnist", tmp_path) == tmp_path        # verifies all 4 files


@pytest.mark.parametrize("case, pattern", [
    ("truncated_gzip", r"gzip stream is truncated or corrupt"),
    ("garbage_gzip", r"gzip stream is truncated or corrupt"),
    ("truncated_payload", r"payload is 783 bytes but the header \(1 x 28 x 28\) says 784; the file truncated"),
    ("trailing_bytes", r"payload is 785 bytes .* trailing garbage"),
    ("bad_magic", r"bad IDX magic 0x00000801, expected 0x00000803"),
    ("bad_dims", r"IDX dimensions 1 x 27 x 28, expected N x 28 x 28"),
    ("short_header", r"shorter than its 16-byte IDX header"),
])
def test_idx_corruptions_raise_clear_errors(tmp_path, case, pattern):
    _write_fake_idx(tmp_path)
    target = tmp_path / IDX_NAMES["train"][0]
    img = np.full((1, 28, 28), 7, np.uint8)
    good = _idx_bytes(img)
    raw = {
        "truncated_gzip": gzip.compress(_idx_bytes(np.zeros((30, 28, 28), np.uint8)))[:-40],
        "garbage_gzip": b"\x1f\x8b" + b"\x00" * 50,
        "truncated_payload": gzip.compress(good[:-1]),
        "trailing_bytes": gzip.compress(good + b"\x00"),
        "bad_magic": gzip.compress(_idx_bytes(np.zeros(5, np.uint8))),
        "bad_dims": gzip.compress(_idx_bytes(np.zeros((1, 27, 28), np.uint8))),
        "short_header": gzip.compress(good[:10]),
    }[case]
    target.write_bytes(raw)
    with pytest.raises(DataError, match=pattern) as ei:
        load_dataset("mnist", data_dir=tmp_path, verify=False)
    msg = str(ei.value)
    assert str(target) in msg and "blockzoo data fetch mnist" in msg


def test_idx_count_mismatch_and_label_range(tmp_path):
    _write_fake_idx(tmp_path)
    write_idx(tmp_path / IDX_NAMES["train"][1], np.zeros(29, np.uint8))
    with pytest.raises(DataError, match="30 images but .* 29 labels"):
        load_dataset("mnist", data_dir=tmp_path)
    write_idx(tmp_path / IDX_NAMES["train"][1], np.array([0] * 29 + [10], np.uint8))
    with pytest.raises(DataError, match=r"label 10 out of range 0\.\.9"):
        load_dataset("mnist", data_dir=tmp_path)


def test_system_dir_error_suggests_apt_reinstall(tmp_path, monkeypatch):
    sysdir = tmp_path / "usr-share"
    _write_fake_idx(sysdir)
    _replace_info(monkeypatch, "fashion-mnist", system_dir=sysdir)
    assert default_data_dir("fashion-mnist") == sysdir
    with pytest.raises(DataError, match=r"sudo apt-get install --reinstall dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


# --------------------------------------------------------------------------------------------------------- locations
def test_env_var_and_locations(tmp_path, monkeypatch):
    _write_fake_idx(tmp_path / "root" / "mnist")
    monkeypatch.setenv("BLOCKZOO_DATA", str(tmp_path / "root"))
    assert default_data_dir("mnist") == tmp_path / "root" / "mnist"
    assert len(load_dataset("mnist")) == 30
    monkeypatch.setenv("BLOCKZOO_DATA", str(tmp_path / "root" / "mnist"))   # the folder itself works too
    assert len(load_dataset("mnist", "test")) == 10
    monkeypatch.delenv("BLOCKZOO_DATA")
    # nothing anywhere: the default for mnist is the cache, for cifar10 the batches folder inside it
    cache = tmp_path / "xdg-cache" / "blockzoo"
    assert default_data_dir("mnist") == cache / "mnist"
    assert default_data_dir("cifar10") == cache / "cifar10" / "cifar-10-batches-py"
    assert fetch_mod.download_target("mnist", tmp_path / "d") == tmp_path / "d" / "mnist"
    assert fetch_mod.download_target("mnist", tmp_path / "mnist") == tmp_path / "mnist"


def test_unknown_name_split_option():
    with pytest.raises(DataError) as ei:
        load_dataset("imagenet")
    for name in ("fashion-mnist", "mnist", "cifar10", "cifar100", "synthetic"):
        assert name in str(ei.value)
    assert set(DATASETS) == {"fashion-mnist", "mnist", "cifar10", "cifar100", "synthetic"}
    with pytest.raises(DataError, match="unknown split 'val'"):
        load_dataset("synthetic", "val")
    with pytest.raises(DataError, match="unknown option"):
        load_dataset("synthetic", n_clases=3)
    with pytest.raises(DataError, match="unknown option"):
        load_dataset("mnist", colour=True)


# ---------------------------------------------------------------------------------------------- ensure / download
@pytest.fixture
def offline(monkeypatch):
    log: list[str] = []
    monkeypatch.setattr(fetch_mod, "_urlopen", _serve({}, log))
    return log


def test_ensure_offline_error_message(tmp_path, offline):
    target = tmp_path / "data"
    with pytest.raises(DataError) as ei:
        ensure_dataset("fashion-mnist", target)
    msg = str(ei.value)
    assert "sudo apt-get install dataset-fashion-mnist" in msg
    assert f"mkdir -p {target / 'fashion-mnist'}" in msg
    assert "curl -fLO http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/$f" in msg
    assert "blockzoo data fetch fashion-mnist" in msg and "name resolution" in msg
    assert offline == ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz"]
    assert not target.exists(), "a failed fetch must leave nothing behind"
    # load_dataset goes through the same path when the files are absent
    with pytest.raises(DataError, match="sudo apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", data_dir=target)


def test_ensure_uses_apt_when_root(tmp_path, monkeypatch, offline):
    sysdir = tmp_path / "usr-share"
    _replace_info(monkeypatch, "fashion-mnist", system_dir=sysdir)
    calls = []

    def fake_run(cmd, timeout):
        calls.append(cmd)
        _write_fake_idx(sysdir)
        return fetch_mod.subprocess.CompletedProcess(cmd, 0, "ok", "")

    monkeypatch.setattr(fetch_mod, "_is_root", lambda: True)
    monkeypatch.setattr(fetch_mod, "_have_apt", lambda: True)
    monkeypatch.setattr(fetch_mod, "_run", fake_run)
    assert ensure_dataset("fashion-mnist", verify=False) == sysdir
    assert calls == [["apt-get", "install", "-y", "dataset-fashion-mnist"]]
    assert offline == []


def test_ensure_apt_failure_then_download_failure(tmp_path, monkeypatch, offline):
    _replace_info(monkeypatch, "fashion-mnist", system_dir=tmp_path / "usr-share")
    monkeypatch.setattr(fetch_mod, "_is_root", lambda: True)
    monkeypatch.setattr(fetch_mod, "_have_apt", lambda: True)
    calls = []

    def fake_run(cmd, timeout):
        calls.append(cmd)
        return fetch_mod.subprocess.CompletedProcess(cmd, 100 if "install" in cmd else 0, "",
                                                     "E: Unable to locate package dataset-fashion-mnist")

    monkeypatch.setattr(fetch_mod, "_run", fake_run)
    with pytest.raises(DataError) as ei:
        ensure_dataset("fashion-mnist")
    assert [c[1] for c in calls] == ["install", "update", "install"]          # retried after apt-get update
    msg = str(ei.value)
    assert "apt-get install dataset-fashion-mnist failed (exit 100)" in msg and "Unable to locate" in msg
    assert str(tmp_path / "xdg-cache" / "blockzoo" / "fashion-mnist") in msg   # download went to the cache
    assert len(offline) == 1


def test_download_verified_atomic(tmp_path, monkeypatch):
    """MNIST: the official .gz md5 is checked; a bad download leaves nothing behind; a good one lands in the cache."""
    src = tmp_path / "src"
    _write_fake_idx(src)
    md5 = {n: hashlib.md5((src / n).read_bytes()).hexdigest() for names in IDX_NAMES.values() for n in names}
    files = {s: tuple(dataclasses.replace(f, md5=md5[f.name]) for f in DATASETS["mnist"].files[s]) for s in IDX_NAMES}
    info = _replace_info(monkeypatch, "mnist", files=files)
    mirror1, mirror2 = info.mirrors[0], info.mirrors[1]
    served = {mirror2 + n: (src / n).read_bytes() for n in md5}
    served[mirror1 + "train-images-idx3-ubyte.gz"] = b"\x1f\x8b corrupted"   # first mirror serves junk
    log: list[str] = []
    monkeypatch.setattr(fetch_mod, "_urlopen", _serve(served, log))
    path = ensure_dataset("mnist")
    cache = tmp_path / "xdg-cache" / "blockzoo" / "mnist"
    assert path == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(md5)            # no .part files
    assert log[0] == mirror1 + "train-images-idx3-ubyte.gz" and log[1] == mirror2 + "train-images-idx3-ubyte.gz"
    ds = load_dataset("mnist")
    assert len(ds) == 30 and ds.source == cache
    # second call: nothing to download
    log.clear()
    assert ensure_dataset("mnist") == cache and log == []
    # every mirror serves a wrong file -> checksum error, nothing written
    monkeypatch.setattr(fetch_mod, "_urlopen", _serve({m + n: b"junk" for m in info.mirrors for n in md5}))
    with pytest.raises(DataError, match="checksum mismatch after download") as ei:
        ensure_dataset("mnist", tmp_path / "other")
    assert not (tmp_path / "other").exists()
    assert "md5" in str(ei.value)


def test_download_recompressed_fashion_accepted_by_content_checksum(tmp_path, monkeypatch):
    """A mirror with re-compressed .gz files (md5 differs) is accepted when the decompressed sha256 matches."""
    src = tmp_path / "src"
    _write_fake_idx(src)
    files = {s: tuple(dataclasses.replace(f, sha256=_content_sha(src / f.name), md5="0" * 32)
                      for f in DATASETS["fashion-mnist"].files[s]) for s in IDX_NAMES}
    info = _replace_info(monkeypatch, "fashion-mnist", files=files)
    served = {info.mirrors[0] + n: gzip.compress(gzip.decompress((src / n).read_bytes()), compresslevel=1)
              for names in IDX_NAMES.values() for n in names}
    monkeypatch.setattr(fetch_mod, "_urlopen", _serve(served))
    path = ensure_dataset("fashion-mnist", tmp_path / "dl")
    assert path == tmp_path / "dl" / "fashion-mnist"
    assert len(load_dataset("fashion-mnist", "test", data_dir=tmp_path / "dl")) == 10


# --------------------------------------------------------------------------------------------------------- CIFAR
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


class _Evil:
    def __init__(self, marker: Path, fn):
        self.marker, self.fn = marker, fn

    def __reduce__(self):
        if self.fn == "system":
            return (os.system, (f"touch {self.marker}",))
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


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


# ------------------------------------------------------------------------------------------ synthetic and subsets
def test_synthetic_deterministic_and_learnable():
    a = load_dataset("synthetic", "train", n=400, num_classes=4, image_size=16, channels=2)
    b = load_dataset("synthetic", "train", n=400, num_classes=4, image_size=16, channels=2)
    t = load_dataset("synthetic", "test", n=200, num_classes=4, image_size=16, channels=2)
    assert a.images.shape == (400, 2, 16, 16) and a.num_classes == 4 and a.in_chans == 2
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.class_counts().tolist() == [100, 100, 100, 100]
    assert not torch.equal(a.images[:200], t.images)
    assert a.mean == t.mean and len(a.mean) == 2                           # test uses the train statistics
    xf = a.images.double() / 255
    assert np.allclose(a.mean, xf.mean(dim=(0, 2, 3)).tolist(), atol=0.01)
    assert np.allclose(a.std, xf.std(dim=(0, 2, 3)).tolist(), atol=0.01)
    other = load_dataset("synthetic", n=400, num_classes=4, image_size=16, channels=2, pattern_seed=1)
    assert not torch.equal(a.images, other.images)
    # learnable: nearest class mean (fit on train) classifies the test split well
    centroids = torch.stack([xf[a.labels == k].mean(0).flatten() for k in range(4)])
    xt = (t.images.double() / 255).flatten(1)
    pred = torch.cdist(xt, centroids).argmin(1)
    assert (pred == t.labels).double().mean() > 0.9


def test_subset_indices_counts_and_determinism():
    labels = torch.arange(1000) % 10
    idx = subset_indices(labels, 105, seed=0)
    counts = torch.bincount(labels[idx], minlength=10).tolist()
    assert counts == [11] * 5 + [10] * 5
    assert torch.equal(idx, torch.sort(idx).values) and idx.unique().numel() == 105
    assert torch.equal(idx, subset_indices(labels, 105, seed=0))
    assert not torch.equal(idx, subset_indices(labels, 105, seed=1))
    first = subset_indices(labels, 20, mode="first")
    assert first.tolist() == list(range(20))
    # unbalanced: 60 / 30 / 10 -> proportional 6 / 3 / 1
    unb = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)[torch.randperm(100, generator=torch.Generator().manual_seed(0))]
    assert torch.bincount(unb[subset_indices(unb, 10, seed=3)]).tolist() == [6, 3, 1]
    assert subset_indices(labels, 5000).tolist() == list(range(1000))


def test_load_dataset_subset_option():
    ds = load_dataset("synthetic", n=300, subset=50, seed=4)
    assert len(ds) == 50 and ds.class_counts().tolist() == [5] * 10
    full = load_dataset("synthetic", n=300)
    idx = subset_indices(full.labels, 50, seed=4)
    assert torch.equal(ds.images, full.images[idx]) and ds.mean == full.mean
    assert ds.meta["subset"] == dict(n=50, seed=4, mode="random", of=300)
    with pytest.raises(DataError, match="positive int"):
        load_dataset("synthetic", n=300, subset=0)


# ------------------------------------------------------------------------------------------------- augmentation
def test_crop_flip_hand_made():
    x = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4)     # rows 1..4, 5..8, 9..12, 13..16
    one = torch.tensor([1])

    def run(dy, dx, flip=False, pad=1):
        return crop_flip(x, one * dy, one * dx, torch.tensor([flip]), pad)[0, 0].tolist()

    assert run(1, 1) == x[0, 0].tolist()                              # offset == pad: identity
    assert run(1, 2) == [[2, 3, 4, 0], [6, 7, 8, 0], [10, 11, 12, 0], [14, 15, 16, 0]]   # content moves left
    assert run(0, 1) == [[0, 0, 0, 0], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]      # content moves down
    assert run(2, 0) == [[0, 5, 6, 7], [0, 9, 10, 11], [0, 13, 14, 15], [0, 0, 0, 0]]
    assert run(1, 1, flip=True) == x[0, 0].flip(-1).tolist()
    assert run(1, 2, flip=True) == [[0, 4, 3, 2], [0, 8, 7, 6], [0, 12, 11, 10], [0, 16, 15, 14]]
    with pytest.raises(ValueError, match="out of range"):
        run(3, 0)
    # batch: each sample gets its own offsets; channels move together
    xb = torch.stack([x[0].repeat(2, 1, 1), x[0].repeat(2, 1, 1) + 100])
    out = crop_flip(xb, torch.tensor([1, 0]), torch.tensor([2, 1]), torch.tensor([False, True]), 1)
    assert out[0, 1].tolist() == run(1, 2) and out[1, 0, 0].tolist() == [0, 0, 0, 0]
    assert out[1, 1, 1].tolist() == [104, 103, 102, 101]


def _as_id_dataset(images: torch.Tensor, flip_ok: bool = True) -> Dataset:
    n = images.shape[0]
    return Dataset("ids", images, torch.arange(n), [str(i) for i in range(n)], (0.0,) * images.shape[1],
                   (1.0 / 255,) * images.shape[1], flip_ok=flip_ok)


def test_loader_augment_outputs_are_valid_crops():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(1, 256, (16, 1, 6, 6), dtype=torch.uint8, generator=g)   # no zeros inside the images
    ds = _as_id_dataset(imgs)                                        # mean 0, std 1/255 -> x == pixel values
    loader = Loader(ds, 4, train=True, crop_padding=2, seed=3)
    params = [(dy, dx, f) for dy in range(5) for dx in range(5) for f in (False, True)]
    n = imgs.shape[0]
    candidates = torch.stack([crop_flip(imgs, torch.full((n,), dy), torch.full((n,), dx), torch.full((n,), f), 2)
                              for dy, dx, f in params])               # 50 x 16 x 1 x 6 x 6: every possible output
    seen_offsets, flips = set(), 0
    for _ in range(12):
        for x, y in loader:
            for xi, i in zip(x, y.tolist()):
                hits = (candidates[:, i] == xi.round().to(torch.uint8)).flatten(1).all(1).nonzero().flatten()
                assert hits.numel() == 1, "augmented sample is not (exactly) one crop/flip of its source image"
                dy, dx, f = params[int(hits[0])]
                seen_offsets.add((dy, dx))
                flips += f
    assert len(seen_offsets) == 25                                   # all offsets in 0..2*pad occur
    assert 0.35 < flips / (12 * 16) < 0.65


def test_flip_respects_dataset_default():
    img = torch.zeros(1, 1, 4, 4, dtype=torch.uint8)
    img[..., 0] = 200                                                 # left column bright: flip is visible
    ds = _as_id_dataset(img.repeat(64, 1, 1, 1), flip_ok=False)      # like MNIST
    loader = Loader(ds, 64, train=True, crop_padding=0, flip=True)
    assert loader.flip is False
    x, _ = next(iter(loader))
    assert (x[..., 0] == 200).all()
    forced = Loader(ds, 64, train=True, crop_padding=0, force_flip=True)
    x, _ = next(iter(forced))
    assert forced.flip and (x[:, 0, 0, 3] == 200).any() and (x[:, 0, 0, 0] == 200).any()
    assert Loader(load_dataset("synthetic", n=20), 4, train=True).crop_padding == 4
    assert Loader(_as_id_dataset(torch.zeros(4, 1, 28, 28, dtype=torch.uint8)), 2, train=True).crop_padding == 2


# ------------------------------------------------------------------------------------------------------- Loader
def test_loader_shapes_normalisation_and_coverage():
    ds = load_dataset("synthetic", n=103, num_classes=5, image_size=8, channels=3)
    ev = Loader(ds, 25, train=False)
    assert len(ev) == 5 and not ev.shuffle and not ev.augment and not ev.drop_last
    xs, ys = zip(*ev)
    assert [x.shape[0] for x in xs] == [25, 25, 25, 25, 3]
    x = torch.cat(xs)
    assert x.dtype == torch.float32 and x.shape == (103, 3, 8, 8) and torch.equal(torch.cat(ys), ds.labels)
    mean = torch.tensor(ds.mean).view(1, 3, 1, 1)
    std = torch.tensor(ds.std).view(1, 3, 1, 1)
    assert torch.allclose(x, (ds.images.float() / 255 - mean) / std, atol=1e-5)
    assert torch.allclose(ev.denormalize(x), ds.images.float() / 255, atol=1e-6)
    # train: shuffled, drop_last, every sample at most once; without drop_last exactly once
    idset = _as_id_dataset(torch.zeros(103, 1, 4, 4, dtype=torch.uint8))
    tr = Loader(idset, 25, train=True)
    ids = torch.cat([y for _, y in tr])
    assert len(tr) == 4 and ids.numel() == 100 and ids.unique().numel() == 100 and ids.tolist() != sorted(ids.tolist())
    full = torch.cat([y for _, y in Loader(idset, 25, train=True, drop_last=False)])
    assert sorted(full.tolist()) == list(range(103))
    half = Loader(ds, 16, train=True, dtype=torch.float64, channels_last=True)
    xb, yb = next(iter(half))
    assert xb.dtype == torch.float64 and yb.dtype == torch.int64
    assert xb.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(DataError, match="gives no batches"):
        Loader(ds, 500, train=True)


def _epoch_batches(loader: Loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


def test_set_epoch_resume_determinism():
    ds = load_dataset("synthetic", n=64, image_size=8)
    run = Loader(ds, 16, train=True, seed=7)
    epochs = [_epoch_batches(run) for _ in range(3)]                  # uninterrupted: epochs 0, 1, 2
    assert run.epoch == 3
    assert not _same(epochs[0], epochs[1]) and not _same(epochs[1], epochs[2])
    resumed = Loader(ds, 16, train=True, seed=7)
    resumed.set_epoch(2)
    assert _same(_epoch_batches(resumed), epochs[2])
    explicit = Loader(ds, 16, train=True, seed=7)                     # a trainer calling set_epoch every epoch
    for e in range(3):
        explicit.set_epoch(e)
        assert _same(_epoch_batches(explicit), epochs[e])
    other = Loader(ds, 16, train=True, seed=8)
    assert not _same(_epoch_batches(other), epochs[0])
    # an abandoned pass does not disturb the next one
    partial = Loader(ds, 16, train=True, seed=7)
    next(iter(partial))
    assert _same(_epoch_batches(partial), epochs[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_loader_cuda_matches_cpu():
    ds = load_dataset("synthetic", n=64, image_size=8)
    cpu = _epoch_batches(Loader(ds, 16, train=True, seed=5))
    gpu = [(x.cpu(), y.cpu()) for x, y in Loader(ds, 16, train=True, seed=5, device="cuda")]
    assert all(x.device.type == "cpu" for x, _ in gpu)
    assert all(torch.allclose(a, b, atol=1e-5) and torch.equal(ya, yb) for (a, ya), (b, yb) in zip(cpu, gpu))


# ------------------------------------------------------------------------------------------------------------ CLI
def test_cli_fetch(tmp_path, capsys, offline):
    assert data_cli.main(["fetch", "mnist", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "curl -fLO https://ossci-datasets.s3.amazonaws.com/mnist/$f" in err
    _write_fake_idx(tmp_path / "mnist")
    assert data_cli.main(["fetch", "mnist", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "mnist")
    offline.clear()
    assert data_cli.main(["fetch", "cifar10", "--data-dir", str(tmp_path), "--no-download"]) == 2
    assert "download disabled" in capsys.readouterr().err and offline == []


# ------------------------------------------------------------------------------------------ real Fashion-MNIST
@pytest.fixture(scope="module")
def fmnist():
    if not all((FMNIST_DIR / n).is_file() for names in IDX_NAMES.values() for n in names):
        pytest.skip("Fashion-MNIST not installed (sudo apt-get install dataset-fashion-mnist)")
    return {s: load_dataset("fashion-mnist", s, data_dir=FMNIST_DIR) for s in ("train", "test")}


def test_real_fashion_mnist(fmnist):
    train, test = fmnist["train"], fmnist["test"]
    assert len(train) == 60000 and len(test) == 10000
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.class_counts().tolist() == [6000] * 10 and test.class_counts().tolist() == [1000] * 10
    assert train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    hist = torch.bincount(train.images.flatten(), minlength=256).double()
    v = torch.arange(256, dtype=torch.float64) / 255
    mean = (hist * v).sum() / hist.sum()
    std = ((hist * (v - mean) ** 2).sum() / hist.sum()).sqrt()
    assert abs(mean.item() - train.mean[0]) < 1e-6 and abs(std.item() - train.std[0]) < 1e-6
    # loaded with verify=True: the decompressed sha256 of all 4 files matched the hard-coded values
    assert train.meta["verified_content"] and test.meta["verified_content"]
    for spec in (DATASETS["fashion-mnist"].files["train"][1], DATASETS["fashion-mnist"].files["test"][1]):
        assert _content_sha(FMNIST_DIR / spec.name) == spec.sha256


def test_real_fashion_mnist_loader_speed(fmnist):
    """Augmenting loader on one thread: must be far above the ~1k img/s a training step consumes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ds = bd.take_subset(fmnist["train"], 8192, seed=0)
        loader = Loader(ds, 128, train=True)
        next(iter(loader))
        t0 = time.perf_counter()
        n = sum(x.shape[0] for x, _ in loader)
        rate = n / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    assert rate > 20_000, f"loader too slow: {rate:.0f} img/s"
