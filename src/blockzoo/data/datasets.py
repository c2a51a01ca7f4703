"""``load_dataset``: one entry point for every registered dataset, plus seeded, class-balanced subsets."""

from __future__ import annotations

from pathlib import Path

import torch

from .core import DataError, Dataset, fix_hint
from .fetch import ENV_VAR, candidate_dirs, ensure_dataset, find_data_dir
from .registry import DATASETS, get_info
from .synthetic import SYNTHETIC_DEFAULTS, make_synthetic

__all__ = ["load_dataset", "subset_indices", "take_subset", "available_datasets", "SPLITS"]

SPLITS = ("train", "test")
_FILE_OPTIONS = {"verify", "download", "subset_mode"}


def subset_indices(labels: torch.Tensor, n: int, seed: int = 0, mode: str = "random") -> torch.Tensor:
    """Indices (sorted ascending) of a class-stratified subset of size ``n`` of a dataset with ``labels``.

    Each class gets a share proportional to its frequency (largest-remainder rounding, ties to the lower class id), so
    a balanced dataset stays balanced (``n // K`` or ``n // K + 1`` per class). Within a class the samples are the
    first ones in file order (``mode="first"``) or a random choice seeded by ``seed`` (``mode="random"``); the result is
    deterministic in ``(labels, n, seed, mode)``.
    """
    labels = labels.reshape(-1).to(torch.int64).cpu()
    total = labels.numel()
    if mode not in ("random", "first"):
        raise DataError(f"subset_mode must be 'random' or 'first', got {mode!r}")
    if n >= total:
        return torch.arange(total)
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.to(torch.float64) * n / total
    quota = exact.floor().to(torch.int64)
    rest = n - int(quota.sum())
    if rest:
        frac = exact - quota.to(torch.float64)
        # stable sort on -frac keeps the lower class index first among ties
        order = torch.sort(-frac, stable=True).indices
        quota[order[:rest]] += 1
    g = torch.Generator().manual_seed(int(seed))
    picks = []
    for c, q in zip(classes.tolist(), quota.tolist()):
        idx = torch.nonzero(labels == c).flatten()
        if mode == "random":
            idx = idx[torch.randperm(idx.numel(), generator=g)]
        picks.append(idx[:q])
    return torch.sort(torch.cat(picks)).values


def take_subset(ds: Dataset, n: int, seed: int = 0, mode: str = "random") -> Dataset:
    """A new :class:`Dataset` with the stratified subset of :func:`subset_indices` (same mean/std/classes)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DataError(f"subset must be a positive int (number of samples), got {n!r}")
    if n >= len(ds):
        return ds
    idx = subset_indices(ds.labels, n, seed, mode)
    meta = dict(ds.meta, subset=dict(n=n, seed=seed, mode=mode, of=len(ds)))
    return Dataset(name=ds.name, images=ds.images[idx].contiguous(), labels=ds.labels[idx].contiguous(),
                   classes=list(ds.classes), mean=ds.mean, std=ds.std, flip_ok=ds.flip_ok, split=ds.split,
                   source=ds.source, meta=meta)


def load_dataset(name: str, split: str = "train", data_dir: str | Path | None = None, subset: int | None = None,
                 seed: int = 0, **kw) -> Dataset:
    """Load a whole split of a registered dataset into memory (uint8 images N x C x H x W, int64 labels).

    ``name``: one of :data:`DATASETS` (``"fashion-mnist"``, ``"mnist"``, ``"cifar10"``, ``"cifar100"``,
    ``"synthetic"``; case and ``_``/``-`` are ignored). ``split``: ``"train"`` or ``"test"``. ``data_dir``: folder
    with the files or a root holding ``<name>/`` (default: ``$BLOCKZOO_DATA``, the system folder, the cache; see
    :mod:`blockzoo.data.fetch`). ``subset``: keep ``subset`` samples, class-stratified, chosen by ``seed``
    (``subset_mode="random"``, default) or the first ones of each class (``subset_mode="first"``).

    Extra options: ``verify=True`` (checksums; structure is always checked), ``download=True`` (call
    :func:`ensure_dataset` when the files are absent: apt / download / clear error). For ``"synthetic"``:
    ``num_classes=10, image_size=32, channels=3, n=None (1024 train / 256 test), noise=0.15, pattern_seed=0,
    max_shift=2``.
    """
    info = get_info(name)
    if split not in SPLITS:
        raise DataError(f"{info.name}: unknown split {split!r}; use one of {', '.join(SPLITS)}")
    subset_mode = kw.pop("subset_mode", "random")
    if info.kind == "synthetic":
        bad = set(kw) - set(SYNTHETIC_DEFAULTS)
        if bad:
            raise DataError(f"synthetic: unknown option(s) {sorted(bad)}; accepted: {sorted(SYNTHETIC_DEFAULTS)}")
        ds = make_synthetic(split, **kw)
    else:
        bad = set(kw) - _FILE_OPTIONS
        if bad:
            raise DataError(f"{info.name}: unknown option(s) {sorted(bad)}; accepted: {sorted(_FILE_OPTIONS)}")
        verify = bool(kw.get("verify", True))
        download = bool(kw.get("download", True))
        directory = find_data_dir(info.name, data_dir, [split])
        if directory is None:
            if download:
                directory = ensure_dataset(info.name, data_dir, verify=False)
            else:
                looked = ", ".join(str(p) for p in candidate_dirs(info.name, data_dir))
                raise DataError(f"{info.title}: {split} files not found (looked in: {looked}); {fix_hint(info)} or "
                                f"set {ENV_VAR}/data_dir to the folder that holds them.")
        images, labels = info.reader(info, directory, split, verify)
        ds = Dataset(name=info.name, images=images, labels=labels, classes=list(info.classes), mean=info.mean,
                     std=info.std, flip_ok=info.flip_ok, split=split, source=Path(directory),
                     meta={"verified_content": verify and info.verified_content})
    if subset is not None:
        ds = take_subset(ds, subset, seed, subset_mode)
    return ds


def available_datasets() -> list[str]:
    """Canonical names of the registered datasets."""
    return list(DATASETS)
