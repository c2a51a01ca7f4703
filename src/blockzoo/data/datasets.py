"""``load_dataset``: one entry point for every registered dataset, plus seeded, class-balanced subsets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from blockzoo.errors import ConfigError

from .core import DataError, Dataset, fix_hint
from .fetch import ENV_VAR, candidate_dirs, ensure_dataset, find_data_dir
from .imagefolder import is_image_folder, load_image_folder
from .registry import ALIASES, DATASETS, get_info
from .synthetic import SYNTHETIC_DEFAULTS, make_synthetic

__all__ = ["load_dataset", "load_split", "check_img_size", "dataset_shape", "dataset_label", "data_fingerprint",
           "is_registered",
           "subset_indices", "take_subset", "available_datasets", "SPLITS"]

SPLITS = ("train", "test")
_FILE_OPTIONS = {"verify", "download", "subset_mode"}
_FOLDER_OPTIONS = {"img_size", "cache", "workers"}


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


def is_registered(name: str) -> bool:
    """True if ``name`` is a spelling of a registered dataset (these win over a folder of the same name: write
    ``./cifar10`` for the folder)."""
    return str(name).strip().lower().replace("_", "-") in ALIASES


def check_img_size(data: str, img_size: int | None) -> None:
    """:class:`ConfigError` for ``--img-size`` with a registered dataset (their images have one fixed size)."""
    if img_size is not None and is_registered(data):
        raise ConfigError(f"--img-size applies to image folders only; {data!r} is a registered dataset with a fixed "
                          f"image size: drop --img-size")


def load_dataset(name: str, split: str = "train", data_dir: str | Path | None = None, subset: int | None = None,
                 seed: int = 0, **kw) -> Dataset:
    """Load a whole split of a registered dataset or an image folder into memory (uint8 images N x C x H x W, int64
    labels).

    ``name``: one of :data:`DATASETS` (``"fashion-mnist"``, ``"mnist"``, ``"cifar10"``, ``"cifar100"``,
    ``"synthetic"``; case and ``_``/``-`` are ignored), or the path of an image folder (``DIR/train/<class>/...``,
    ``DIR/val/<class>/...``; see :mod:`blockzoo.data.imagefolder`, options ``img_size``, ``cache``, ``workers``;
    ``data_dir`` is not used). ``split``: ``"train"`` or ``"test"``. ``data_dir``: folder
    with the files or a root holding ``<name>/`` (default: ``$BLOCKZOO_DATA``, the system folder, the cache; see
    :mod:`blockzoo.data.fetch`). ``subset``: keep ``subset`` samples, class-stratified, chosen by ``seed``
    (``subset_mode="random"``, default) or the first ones of each class (``subset_mode="first"``).

    Extra options: ``verify=True`` (checksums; structure is always checked), ``download=True`` (call
    :func:`ensure_dataset` when the files are absent: apt / download / clear error). For ``"synthetic"``:
    ``num_classes=10, image_size=32, channels=3, n=None (1024 train / 256 test), noise=0.15, pattern_seed=0,
    max_shift=2``.
    """
    subset_mode = kw.pop("subset_mode", "random")
    if not is_registered(name) and is_image_folder(name):
        kw.pop("verify", None)  # decoded images: no checksums to check
        bad = set(kw) - _FOLDER_OPTIONS
        if bad:
            raise DataError(f"image folder: unknown option(s) {sorted(bad)}; accepted: {sorted(_FOLDER_OPTIONS)}")
        ds = load_image_folder(name, split, **kw)
        return ds if subset is None else take_subset(ds, subset, seed, subset_mode)
    check_img_size(name, kw.pop("img_size", None))
    info = get_info(name)
    if split not in SPLITS:
        raise DataError(f"{info.name}: unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if info.kind == "synthetic":
        kw.pop("verify", None)  # generated in memory: nothing to verify
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


def load_split(opts: Any, split: str, *, subset_seed: int | None = None) -> Dataset:
    """The ``split`` that the data options of ``blockzoo train`` / ``compare`` name (the one place that turns them
    into a dataset). ``opts``: a :class:`~blockzoo.train.TrainConfig` or anything with its fields ``data``,
    ``data_dir``, ``verify``, ``img_size``, ``subset``, ``test_subset`` and ``seed``. The training subset is drawn
    with ``subset_seed`` (default ``opts.seed``; compare fixes it so every run trains on the same images), the test
    subset always with seed 0, so every seed and variant is evaluated on the same images."""
    train = split == "train"
    subset = opts.subset if train else opts.test_subset
    seed = (opts.seed if subset_seed is None else subset_seed) if train else 0
    kw: dict[str, Any] = {"verify": opts.verify}
    if opts.img_size is not None:
        kw["img_size"] = opts.img_size
    return load_dataset(opts.data, split, data_dir=opts.data_dir, subset=subset, seed=seed, **kw)


def dataset_shape(data: str, img_size: int | None = None) -> tuple[int, int, tuple[int, int]]:
    """``(num_classes, in_chans, (H, W))`` of dataset ``data`` as training sees it: from the registry for a registered
    name, else from the image folder's training split (decoded and cached, so training then reads the cache)."""
    if is_registered(data) or not is_image_folder(data):
        info = get_info(data)
        return info.num_classes, info.in_chans, tuple(info.image_size)
    ds = load_image_folder(data, "train", img_size=img_size)
    return ds.num_classes, ds.in_chans, ds.image_size


def data_fingerprint(data: str) -> str | None:
    """What identifies the contents of ``data`` beyond its name: an image folder's
    :func:`~blockzoo.data.imagefolder.folder_fingerprint`; ``None`` for a registered dataset (its files are fixed and
    checksummed)."""
    if is_registered(data) or not is_image_folder(data):
        return None
    from blockzoo.data.imagefolder import folder_fingerprint
    return folder_fingerprint(data)


def dataset_label(data: str) -> str:
    """A short name for ``data`` in folder names: the canonical registered name, else the image folder's name."""
    if is_registered(data):
        return get_info(data).name
    return Path(data).expanduser().resolve().name if is_image_folder(data) else str(data)
