"""blockzoo.data.fetch: checksums, data locations, ensure_dataset and downloads (offline, monkeypatched)."""
from __future__ import annotations

import dataclasses
import gzip
import hashlib

import pytest
import torch

from blockzoo.data import (
    DATASETS,
    DataError,
    default_data_dir,
    ensure_dataset,
    load_dataset,
)
from blockzoo.data import fetch as fetch_mod
from helpers import IDX_NAMES, _content_sha, _replace_info, _serve, _write_fake_idx


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


def test_system_dir_error_suggests_apt_reinstall(tmp_path, monkeypatch):
    sysdir = tmp_path / "usr-share"
    _write_fake_idx(sysdir)
    _replace_info(monkeypatch, "fashion-mnist", system_dir=sysdir)
    assert default_data_dir("fashion-mnist") == sysdir
    with pytest.raises(DataError, match=r"sudo apt-get install --reinstall dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


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
