"""Reader for the IDX format of MNIST / Fashion-MNIST (LeCun et al., http://yann.lecun.com/exdb/mnist/; Xiao et al.
2017, https://github.com/zalandoresearch/fashion-mnist), gzip-compressed or plain.

IDX layout: 2 zero bytes, a type byte (0x08 = unsigned byte), a byte with the number of dimensions, then one big-endian
int32 per dimension, then the payload in C order. Images are magic 0x00000803 (N x H x W), labels 0x00000801 (N).

Every file goes through these checks, each with its own error message naming the file and the fix:
gzip integrity (incl. its CRC32), magic, dimensions, payload size vs header, image/label count agreement, label range,
and (when known) the sha256 of the decompressed bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from .core import DataError, DatasetInfo, FileSpec, fix_hint

__all__ = ["IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC", "find_idx_file", "read_idx_bytes", "parse_idx", "read_idx_split",
           "write_idx"]

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801


def find_idx_file(directory: Path, spec: FileSpec) -> Path | None:
    """The stored file for ``spec`` in ``directory``: ``<name>`` as given (normally ``.gz``) or uncompressed."""
    name = spec.name
    alts = [name, name[:-3]] if name.endswith(".gz") else [name, name + ".gz"]
    for alt in alts:
        p = Path(directory) / alt
        if p.is_file():
            return p
    return None


def read_idx_bytes(path: Path, info: DatasetInfo | None = None) -> bytes:
    """The decompressed bytes of an IDX file (gzip detected by its magic bytes, not by the file name)."""
    path = Path(path)
    hint = fix_hint(info, path) if info is not None else "replace the file with a good copy"
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=f) as gz:
                    return gz.read()
            return f.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: the gzip stream is truncated or corrupt ({type(e).__name__}: {e}); {hint}.") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e}); {hint}.") from e


def parse_idx(raw: bytes, path: Path, magic: int, info: DatasetInfo | None = None,
              item_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Parse decompressed IDX bytes into a uint8 array, checking magic, dimensions and payload size.

    ``magic`` is :data:`IDX_IMAGES_MAGIC` or :data:`IDX_LABELS_MAGIC`; ``item_shape`` (e.g. ``(28, 28)``) if given must
    match the per-item dimensions.
    """
    hint = fix_hint(info, path) if info is not None else "replace the file with a good copy"
    what = {IDX_IMAGES_MAGIC: "an IDX image file (uint8, 3 dims)", IDX_LABELS_MAGIC: "an IDX label file (uint8, 1 dim)"}
    if len(raw) < 4:
        raise DataError(f"{path}: only {len(raw)} bytes, too short for an IDX header; the file is truncated; {hint}.")
    (got,) = struct.unpack(">I", raw[:4])
    if got != magic:
        raise DataError(f"{path}: bad IDX magic 0x{got:08x}, expected 0x{magic:08x} ({what.get(magic, 'IDX')}); "
                        f"wrong or corrupt file; {hint}.")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: {len(raw)} bytes, shorter than its {header}-byte IDX header; the file is truncated; "
                        f"{hint}.")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if any(d <= 0 for d in dims) or (item_shape is not None and tuple(dims[1:]) != tuple(item_shape)):
        want = f"N x {' x '.join(map(str, item_shape))}" if item_shape else "positive sizes"
        raise DataError(f"{path}: IDX dimensions {' x '.join(map(str, dims))}, expected {want}; {hint}.")
    expected = int(np.prod(dims, dtype=np.int64))
    payload = len(raw) - header
    if payload != expected:
        kind = "truncated" if payload < expected else "has trailing garbage"
        raise DataError(f"{path}: payload is {payload} bytes but the header ({' x '.join(map(str, dims))}) says "
                        f"{expected}; the file {kind}; {hint}.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _check_sha256(raw: bytes, path: Path, spec: FileSpec, info: DatasetInfo | None) -> None:
    if spec.sha256 is None:
        return
    got = hashlib.sha256(raw).hexdigest()
    if got != spec.sha256:
        hint = fix_hint(info, path) if info is not None else "replace the file with a good copy"
        raise DataError(f"{path}: checksum mismatch: sha256 of the decompressed content is {got}, expected "
                        f"{spec.sha256} (the known-good file); the file is corrupt or a different version; {hint}.")


def read_idx_split(info: DatasetInfo, directory: Path, split: str,
                   verify: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Read the (images, labels) pair of ``split`` from ``directory``: uint8 N x 1 x H x W and int64 N."""
    img_spec, lab_spec = info.files[split]
    paths = []
    for spec in (img_spec, lab_spec):
        p = find_idx_file(directory, spec)
        if p is None:
            raise DataError(f"{Path(directory) / spec.name}: file not found; {fix_hint(info)}.")
        paths.append(p)
    img_path, lab_path = paths

    raw = read_idx_bytes(img_path, info)
    images = parse_idx(raw, img_path, IDX_IMAGES_MAGIC, info, item_shape=info.image_size)
    if verify:
        _check_sha256(raw, img_path, img_spec, info)
    raw_l = read_idx_bytes(lab_path, info)
    labels = parse_idx(raw_l, lab_path, IDX_LABELS_MAGIC, info)
    if verify:
        _check_sha256(raw_l, lab_path, lab_spec, info)

    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{img_path} has {images.shape[0]} images but {lab_path} has {labels.shape[0]} labels; the two "
                        f"files do not belong together; {fix_hint(info, img_path)}.")
    if labels.size and int(labels.max()) >= info.num_classes:
        bad = int(labels.max())
        raise DataError(f"{lab_path}: label {bad} out of range 0..{info.num_classes - 1}; the file is corrupt; "
                        f"{fix_hint(info, lab_path)}.")
    n, h, w = images.shape
    img_t = torch.from_numpy(images.copy()).view(n, 1, h, w)
    lab_t = torch.from_numpy(labels.astype(np.int64))
    return img_t, lab_t


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write a uint8 array (N x H x W images or N labels) as an IDX file, gzip-compressed if the name ends in .gz.

    Used by the tests to fabricate files; also handy to export a subset.
    """
    arr = np.ascontiguousarray(array, dtype=np.uint8)
    if arr.ndim not in (1, 3):
        raise ValueError(f"write_idx: expected 1 or 3 dims, got {arr.shape}")
    magic = IDX_LABELS_MAGIC if arr.ndim == 1 else IDX_IMAGES_MAGIC
    data = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    path = Path(path)
    if compress is None:
        compress = path.name.endswith(".gz")
    if compress:
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
