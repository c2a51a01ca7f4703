"""blockzoo.data.idx: IDX round trips, folder layouts, and clear errors for corrupt or inconsistent files."""
from __future__ import annotations

import gzip
import io
import struct

import numpy as np
import pytest
import torch

from blockzoo.data import (
    DataError,
    load_dataset,
)
from blockzoo.data.idx import write_idx
from helpers import IDX_NAMES, _fake_idx_arrays, _write_fake_idx


def _idx_bytes(array: np.ndarray) -> bytes:
    """Uncompressed IDX bytes of a uint8 array (written with write_idx, read back)."""
    buf = io.BytesIO()
    arr = np.ascontiguousarray(array, dtype=np.uint8)
    magic = 0x801 if arr.ndim == 1 else 0x803
    buf.write(struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes())
    return buf.getvalue()


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
