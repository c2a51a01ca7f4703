"""Core types of :mod:`blockzoo.data`: the error type, the in-memory :class:`Dataset`, and the static description of a
registered dataset (:class:`DatasetInfo`, :class:`FileSpec`).

Everything is kept in memory as ``uint8`` tensors (N x C x H x W); normalisation and augmentation happen per batch in
:class:`blockzoo.data.loader.Loader`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from blockzoo.errors import DataError

__all__ = ["DataError", "Dataset", "DatasetInfo", "FileSpec", "FETCH_CMD", "fix_hint"]

#: Shell command that (re)fetches and verifies a dataset; used in every error message that names a fix.
FETCH_CMD = "blockzoo data fetch {name}"


@dataclass(eq=False)
class Dataset:
    """A whole split of an image-classification dataset, in memory.

    ``images`` is ``uint8`` N x C x H x W, ``labels`` is ``int64`` N. ``mean``/``std`` are per-channel statistics on the
    0..1 scale of the *full train split* (hard-coded for the real datasets) and are what :class:`Loader` normalises
    with, so a subset or the test split is normalised exactly like the full train split.

    ``flip_ok`` says whether a horizontal flip preserves the label (True for Fashion-MNIST, CIFAR and the synthetic set;
    False for MNIST digits). :class:`Loader` only flips when it is True (or when forced with ``force_flip=True``).
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip_ok: bool = True
    split: str = "train"
    source: Path | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8 or self.images.dim() != 4:
            got = f"{getattr(self.images, 'dtype', type(self.images))} {tuple(getattr(self.images, 'shape', ()))}"
            raise DataError(f"Dataset {self.name!r}: images must be a uint8 tensor N x C x H x W, got {got}")
        if not isinstance(self.labels, torch.Tensor) or self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise DataError(f"Dataset {self.name!r}: labels must be an int64 tensor of shape (N,)")
        if self.labels.shape[0] != self.images.shape[0]:
            raise DataError(f"Dataset {self.name!r}: {self.images.shape[0]} images but {self.labels.shape[0]} labels")
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        c = self.images.shape[1]
        if len(self.mean) != c or len(self.std) != c:
            raise DataError(f"Dataset {self.name!r}: mean/std need {c} values (one per channel), got "
                            f"{len(self.mean)}/{len(self.std)}")
        if any(s <= 0 for s in self.std):
            raise DataError(f"Dataset {self.name!r}: std must be positive, got {self.std}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        h, w = self.image_size
        return (f"Dataset(name={self.name!r}, split={self.split!r}, n={len(self)}, in_chans={self.in_chans}, "
                f"image_size=({h}, {w}), num_classes={self.num_classes}, flip_ok={self.flip_ok})")

    def class_counts(self) -> torch.Tensor:
        """Number of samples per class (length ``num_classes``)."""
        return torch.bincount(self.labels, minlength=self.num_classes)


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset.

    ``sha256``: of the *decompressed* content (IDX) or of the file itself (CIFAR pickles); checked on every load.
    ``md5``: of the file as officially distributed (the .gz for IDX); for IDX it is only checked on download, because
    re-compressed copies (Debian's) differ in their .gz bytes but not in their content.
    """

    name: str
    sha256: str | None = None
    md5: str | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a registered dataset (see :data:`blockzoo.data.DATASETS`)."""

    name: str
    kind: str                                   # "idx" | "cifar" | "synthetic"
    title: str
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_chans: int
    image_size: tuple[int, int]
    flip_ok: bool = True
    files: dict[str, tuple[FileSpec, ...]] = field(default_factory=dict)   # split -> files
    subdirs: tuple[str, ...] = ()               # other folder names under a root that may hold the files
    mirrors: tuple[str, ...] = ()               # base URLs for the individual files (IDX)
    archive_url: str | None = None              # tarball (CIFAR)
    archive_md5: str | None = None
    archive_folder: str | None = None           # folder inside the tarball that holds the files
    system_dir: Path | None = None              # where a distribution package installs the files
    apt_package: str | None = None
    reader: Callable | None = field(default=None, repr=False, compare=False)
    verified_content: bool = True               # False: no reliable content checksum known (structural checks only)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.files) if self.files else ("train", "test")

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def fix_hint(info: DatasetInfo, path: Path | None = None) -> str:
    """The sentence that tells a user how to repair a bad/missing file ``path`` of dataset ``info``."""
    fetch = FETCH_CMD.format(name=info.name)
    in_system = (path is not None and info.system_dir is not None
                 and Path(path).resolve().parent == Path(info.system_dir).resolve())
    if in_system and info.apt_package:
        return (f"re-install with `sudo apt-get install --reinstall {info.apt_package}`, or point BLOCKZOO_DATA at "
                f"another copy and run `{fetch}`")
    if path is not None:
        return f"delete it (`rm {path}`) and run `{fetch}` to fetch a verified copy"
    return f"run `{fetch}`"
