"""Reader for the CIFAR-10 / CIFAR-100 "python version" pickle batches (Krizhevsky 2009,
https://www.cs.toronto.edu/~kriz/cifar.html), loaded *without* executing arbitrary pickled code.

A pickle can call any importable function while loading (``os.system`` included). :class:`RestrictedUnpickler` only
resolves the handful of numpy globals needed to rebuild a ``numpy.ndarray`` (and ``_codecs.encode``, which Python 3
emits for ``bytes`` in protocol-2 pickles); any other global raises :class:`DataError` before it is called.

Batch layout: a dict with ``data`` (uint8 N x 3072, each row = 1024 red, 1024 green, 1024 blue values of a 32 x 32
image, row-major) and ``labels`` (CIFAR-10) or ``fine_labels``/``coarse_labels`` (CIFAR-100). Keys are ``bytes`` or
``str`` depending on how the file was written; both are accepted.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .core import DataError, DatasetInfo, fix_hint

__all__ = ["RestrictedUnpickler", "safe_load_pickle", "read_cifar_split", "md5_file"]


def _allowed_globals() -> dict[tuple[str, str], Any]:
    try:  # numpy >= 2
        from numpy._core import multiarray as _ma
        from numpy._core import numeric as _num
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as _ma  # type: ignore[no-redef]
        from numpy.core import numeric as _num  # type: ignore[no-redef]
    import _codecs

    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): _codecs.encode}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = _ma._reconstruct
    if hasattr(_num, "_frombuffer"):  # protocol-5 pickles of arrays
        for mod in ("numpy.core.numeric", "numpy._core.numeric"):
            allowed[(mod, "_frombuffer")] = _num._frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild dicts/lists/str/bytes/numbers and numpy arrays, and nothing else.

    ``find_class`` resolves only the globals in :attr:`ALLOWED`; anything else (``os.system``, ``builtins.eval``,
    ``subprocess.Popen``...) raises :class:`DataError` naming the global and the file, without importing or calling it.
    """

    ALLOWED: dict[tuple[str, str], Any] = _allowed_globals()

    def __init__(self, file: io.BufferedIOBase, *, source: str | Path = "<pickle>", hint: str = "",
                 encoding: str = "latin1") -> None:
        super().__init__(file, encoding=encoding)
        self._source = source
        self._hint = hint or "delete the file and fetch a genuine copy"

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            allowed = ", ".join(sorted(f"{m}.{n}" for m, n in self.ALLOWED))
            raise DataError(f"{self._source}: refusing to unpickle global `{module}.{name}`: only numpy array data is "
                            f"allowed in a dataset file (allowed globals: {allowed}). The file is not a genuine CIFAR "
                            f"batch and may be malicious; do not load it with plain pickle; {self._hint}.") from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self._source}: refusing persistent id {pid!r} in a dataset pickle; {self._hint}.")


def safe_load_pickle(path: Path, hint: str = "") -> Any:
    """Load a pickle file with :class:`RestrictedUnpickler` (``latin1`` decoding of Python-2 strings)."""
    path = Path(path)
    hint = hint or "delete the file and fetch a genuine copy"
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e}); {hint}.") from e
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=path, hint=hint).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            UnicodeDecodeError, OverflowError, MemoryError) as e:
        raise DataError(f"{path}: not a readable pickle, truncated or corrupt ({type(e).__name__}: {e}); "
                        f"{hint}.") from e


def md5_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _get(d: dict, key: str) -> Any:
    if key in d:
        return d[key]
    return d.get(key.encode("latin1"))


def read_cifar_batch(path: Path, label_key: str, num_classes: int, hint: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 N x 3 x 32 x 32, int64 N), with structural checks."""
    obj = safe_load_pickle(path, hint)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict in a CIFAR batch, got {type(obj).__name__}; {hint}.")
    data = _get(obj, "data")
    labels = _get(obj, label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be a uint8 array N x 3072, got {desc}; {hint}.")
    if labels is None:
        raise DataError(f"{path}: no '{label_key}' entry in the batch; {hint}.")
    try:
        lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: '{label_key}' is not a list of integers ({e}); {hint}.") from e
    if lab.shape[0] != data.shape[0]:
        raise DataError(f"{path}: {data.shape[0]} images but {lab.shape[0]} labels; {hint}.")
    if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
        raise DataError(f"{path}: label out of range 0..{num_classes - 1} (min {lab.min()}, max {lab.max()}); {hint}.")
    return data.reshape(-1, 3, 32, 32), lab


def read_cifar_split(info: DatasetInfo, directory: Path, split: str,
                     verify: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Read all batch files of ``split`` from ``directory`` (``cifar-10-batches-py`` or ``cifar-100-python``)."""
    label_key = "fine_labels" if info.num_classes == 100 else "labels"
    images, labels = [], []
    for spec in info.files[split]:
        path = Path(directory) / spec.name
        hint = fix_hint(info, path)
        if not path.is_file():
            raise DataError(f"{path}: file not found; {fix_hint(info)}.")
        if verify and spec.md5 is not None:
            got = md5_file(path)
            if got != spec.md5:
                raise DataError(f"{path}: checksum mismatch: md5 {got}, expected {spec.md5} (the official file); the "
                                f"file is truncated, corrupt or not the official one; {hint}.")
        x, y = read_cifar_batch(path, label_key, info.num_classes, hint)
        images.append(x)
        labels.append(y)
    x = np.concatenate(images) if len(images) > 1 else images[0]
    y = np.concatenate(labels) if len(labels) > 1 else labels[0]
    x = np.ascontiguousarray(x)
    if not x.flags.writeable:  # arrays rebuilt by numpy's _frombuffer are read-only views of the pickle bytes
        x = x.copy()
    return torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(y))
