"""Image folders of your own, laid out as timm and torchvision expect them, decoded once into an in-memory
:class:`~blockzoo.data.Dataset`::

    DIR/train/<class>/*.png|jpg|jpeg|bmp|ppm|pgm|tif|tiff|webp      (sub-folders inside a class folder are read too)
    DIR/val/<class>/...                                             (or DIR/test/<class>/...)

* Splits: ``train/`` is the training split; the evaluation split (blockzoo's ``"test"``) is ``val/``, or ``test/``
  when there is no ``val/`` (``val/`` wins when both exist, as in timm, where ``test/`` often has no labels).
* Classes: the sub-folder names of ``train/``, sorted as torchvision's ``ImageFolder`` sorts them (by code point);
  hidden folders (``.name``) are skipped. ``val/`` must have the same class folders. Files are found as
  ``ImageFolder`` finds them (walked with ``os.walk``, sorted, matched by extension, case-insensitive); other files are
  ignored.
* Colour: every image is converted to the mode most of the *training* images have: grayscale (1 channel: Pillow
  modes 1, L, LA, I, I;16, F) or RGB (3 channels: everything else; the alpha channel of RGBA/LA is dropped, palette
  images are expanded). A tie goes to RGB.
* Size (the resize policy): with ``img_size=S`` (``--img-size S``, as in timm) every image becomes S x S; without
  it, every image becomes the most common size of the training split (a tie goes to the larger one). An image of
  another size is resized, keeping its aspect ratio, until it covers the target (Pillow bilinear, antialiased) and
  then centre-cropped to it -- torchvision's ``Resize`` + ``CenterCrop``. Without ``img_size`` a warning says how
  many were resized.
* Normalisation: per-channel mean/std of the training split as decoded (0..1 scale, population std over all
  pixels); the evaluation split is normalised with the same values.
* Cache: the decoded arrays of both splits are written to ``$XDG_CACHE_HOME/blockzoo/image-folders/<folder hash>/
  <key>.npz`` (default ``~/.cache/blockzoo``), where the key hashes the folder, ``img_size`` and every image file's
  path, size and modification time, so a second run reads the arrays instead of decoding again and any added,
  removed or changed file decodes afresh. The file is written to a temporary name and renamed into place (a killed
  run leaves no half-written cache); older caches of the same folder are removed then.

Bad folders raise :class:`~blockzoo.errors.DataError` naming the folder or file: no ``train/``, no ``val/`` or
``test/``, no class folders, an empty class folder, different class sets in the two splits, an unreadable image.
Pillow is needed (``pip install 'blockzoo[data]'``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blockzoo.errors import ConfigError
from blockzoo.files import atomic_write

from .core import DataError, Dataset
from .fetch import cache_root

__all__ = ["IMG_EXTENSIONS", "load_image_folder", "save_image_folder", "is_image_folder", "eval_split_dir",
           "find_classes"]

#: File extensions read as images (torchvision's ``IMG_EXTENSIONS``), matched case-insensitively.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_GRAY_MODES = {"1", "L", "LA", "La", "I", "F"}
_CACHE_VERSION = 1
_LAYOUT = "lay the images out as DIR/train/<class>/*.png and DIR/val/<class>/*.png"
_STALE_TMP_S = 3600.0


def is_image_folder(data: str | os.PathLike) -> bool:
    """True if ``data`` names an existing directory (what ``--data DIR`` reads as an image folder)."""
    return Path(data).expanduser().is_dir()


def eval_split_dir(root: Path) -> Path:
    """``root/val`` or, if absent, ``root/test``; :class:`DataError` if neither exists."""
    for name in ("val", "test"):
        if (root / name).is_dir():
            return root / name
    raise DataError(f"{root}: no val/ or test/ folder for the evaluation split; {_LAYOUT}.")


def find_classes(split_dir: Path) -> list[str]:
    """Sorted names of the class folders of ``split_dir`` (hidden folders skipped); DataError if there are none."""
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DataError(f"{split_dir}: no class folders; {_LAYOUT}.")
    return classes


def _split_files(split_dir: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """``(file, class index)`` of every image under ``split_dir``, in ImageFolder's order."""
    out: list[tuple[Path, int]] = []
    for k, name in enumerate(classes):
        found = [Path(d) / f for d, _, files in sorted(os.walk(split_dir / name, followlinks=True))
                 for f in sorted(files) if f.lower().endswith(IMG_EXTENSIONS)]
        if not found:
            raise DataError(f"{split_dir / name}: empty class folder (no {'/'.join(e[1:] for e in IMG_EXTENSIONS)} "
                            f"files); add images to it or remove it.")
        out += [(p, k) for p in found]
    return out


def _scan(root: Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """Class names and the files of the two splits, with the layout checks."""
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; {_LAYOUT}.")
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataError(f"{root}: no train/ folder; {_LAYOUT}.")
    test_dir = eval_split_dir(root)
    classes = find_classes(train_dir)
    test_classes = find_classes(test_dir)
    if test_classes != classes:
        only_train = sorted(set(classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(classes))
        raise DataError(f"{root}: train/ and {test_dir.name}/ have different class folders (only in train/: "
                        f"{only_train or 'none'}; only in {test_dir.name}/: {only_test or 'none'}); give both splits "
                        f"the same class folders.")
    return classes, {"train": _split_files(train_dir, classes), "test": _split_files(test_dir, classes)}


def _pil():
    try:
        from PIL import Image
    except ImportError as e:
        raise ConfigError("reading image folders needs Pillow: pip install 'blockzoo[data]'") from e
    return Image


def _unreadable(path: Path, e: Exception) -> DataError:
    return DataError(f"{path}: unreadable image ({type(e).__name__}: {e}); replace or delete the file.")


def _header(path: Path) -> tuple[tuple[int, int], bool]:
    """``((height, width), is_gray)`` from the file's header (no full decode)."""
    image = _pil()
    try:
        with image.open(path) as im:
            w, h = im.size
            mode = im.mode
    except Exception as e:  # Pillow raises many types (OSError, SyntaxError, ValueError, DecompressionBombError)
        raise _unreadable(path, e) from e
    return (h, w), mode in _GRAY_MODES or mode.startswith("I;16")


def _decode_image(im: Any, size: tuple[int, int], gray: bool) -> tuple[np.ndarray, bool]:
    """A Pillow image as uint8 C x H x W at ``size`` (H, W) in the target mode, and whether it had to be resized."""
    th, tw = size
    im = im.convert("L" if gray else "RGB")
    w, h = im.size
    resized = (h, w) != (th, tw)
    if resized:  # cover the target keeping the aspect ratio, then centre-crop (torchvision's Resize + CenterCrop)
        scale = max(th / h, tw / w)
        nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
        im = im.resize((nw, nh), _pil().BILINEAR)
        left, top = (nw - tw) // 2, (nh - th) // 2
        im = im.crop((left, top, left + tw, top + th))
    arr = np.asarray(im, dtype=np.uint8)
    return (arr[None] if gray else arr.transpose(2, 0, 1)), resized


def _decode(path: Path, size: tuple[int, int], gray: bool) -> tuple[np.ndarray, bool]:
    """:func:`_decode_image` of the file ``path``; DataError naming the file if Pillow cannot read it."""
    try:
        with _pil().open(path) as im:
            return _decode_image(im, size, gray)
    except Exception as e:
        raise _unreadable(path, e) from e


def _most_common_size(sizes: list[tuple[int, int]]) -> tuple[int, int]:
    counts = Counter(sizes)
    return max(counts, key=lambda s: (counts[s], s[0] * s[1], s[0]))


def _mean_std(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std on the 0..1 scale, in float64, 1024 images at a time."""
    c = images.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    ss = torch.zeros(c, dtype=torch.float64)
    for lo in range(0, images.shape[0], 1024):
        x = images[lo:lo + 1024].to(torch.float64) / 255.0
        s += x.sum((0, 2, 3))
        ss += (x * x).sum((0, 2, 3))
    n = images.shape[0] * images.shape[2] * images.shape[3]
    mean = s / n
    std = (ss / n - mean * mean).clamp_min(0).sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))  # a constant channel: leave it unscaled
    return tuple(mean.tolist()), tuple(std.tolist())


def _decode_all(classes: list[str], files: dict[str, list[tuple[Path, int]]], img_size: int | None,
                workers: int) -> dict[str, Any]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        headers = list(pool.map(_header, [p for p, _ in files["train"]]))
        gray_votes = sum(g for _, g in headers)
        gray = gray_votes > len(headers) - gray_votes
        size = (img_size, img_size) if img_size is not None else _most_common_size([s for s, _ in headers])
        arrays: dict[str, Any] = {"classes": np.array(classes)}
        resized = 0
        for split, items in files.items():
            out = np.empty((len(items), 1 if gray else 3, *size), dtype=np.uint8)
            for i, (arr, was_resized) in enumerate(pool.map(lambda p: _decode(p, size, gray), [p for p, _ in items])):
                out[i] = arr
                resized += was_resized
            arrays[f"{split}_images"] = out
            arrays[f"{split}_labels"] = np.array([k for _, k in items], dtype=np.int64)
    mean, std = _mean_std(torch.from_numpy(arrays["train_images"]))
    arrays["mean"], arrays["std"] = np.array(mean), np.array(std)
    if resized and img_size is None:  # the size policy chose: say so (an asked-for --img-size needs no warning)
        n = sum(len(v) for v in files.values())
        warnings.warn(f"{resized} of {n} images are not {size[0]}x{size[1]}, the most common training size, and were "
                      f"resized to it (aspect kept, centre-cropped); pass --img-size to choose the size", stacklevel=4)
    return arrays


def _listing(root: Path, files: dict[str, list[tuple[Path, int]]]) -> list[list[Any]]:
    """(split, relative path, class, size, mtime) of every image: what identifies the folder's contents."""
    listing = []
    for split, items in files.items():
        for p, k in items:
            st = p.stat()
            listing.append([split, str(p.relative_to(root)), k, st.st_size, st.st_mtime_ns])
    return listing


def _cache_key(root: Path, files: dict[str, list[tuple[Path, int]]], img_size: int | None) -> str:
    blob = json.dumps({"version": _CACHE_VERSION, "root": str(root), "img_size": img_size,
                       "files": _listing(root, files)})
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def folder_fingerprint(root: str | os.PathLike) -> str:
    """16 hex digits identifying the image folder's contents (every image's split, path, class, size and
    modification time): a run records it, so a run trained on the folder as it was is never reused for the folder
    as it is now (the trainer refuses the run folder; compare retrains)."""
    path = Path(root).expanduser().resolve()
    _, files = _scan(path)
    return hashlib.sha256(json.dumps(_listing(path, files)).encode()).hexdigest()[:16]


def _cache_folder(root: Path) -> Path:
    return cache_root() / "image-folders" / hashlib.sha256(str(root).encode()).hexdigest()[:16]


def _read_cache(path: Path) -> dict[str, Any] | None:
    """The cached arrays, or None when there is no (readable) cache file: then the folder is decoded again."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, EOFError):
        return None


def _write_cache(folder: Path, key: str, arrays: dict[str, Any]) -> None:
    """Atomic write (temporary file + rename), then removal of older caches and of stale temporary files."""
    try:
        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:   # a file object: np.savez would append .npz to a path
                np.savez(f, **arrays)
        atomic_write(folder / f"{key}.npz", write)
        now = time.time()
        for old in folder.iterdir():
            stale_tmp = old.suffix == ".tmp" and now - old.stat().st_mtime > _STALE_TMP_S
            if stale_tmp or (old.suffix == ".npz" and old.stem != key):
                old.unlink(missing_ok=True)
    except OSError as e:  # an unwritable cache costs a decode next time, nothing else
        warnings.warn(f"could not write the image-folder cache in {folder} ({e}); the next run decodes again",
                      stacklevel=3)


def _arrays(root: Path, img_size: int | None, cache: bool, workers: int) -> dict[str, Any]:
    classes, files = _scan(root)
    if not cache:
        return _decode_all(classes, files, img_size, workers)
    folder = _cache_folder(root)
    key = _cache_key(root, files, img_size)
    arrays = _read_cache(folder / f"{key}.npz")
    if arrays is None:
        arrays = _decode_all(classes, files, img_size, workers)
        _write_cache(folder, key, arrays)
    return arrays


def load_image_folder(root: str | os.PathLike, split: str = "train", *, img_size: int | None = None,
                      cache: bool = True, workers: int | None = None) -> Dataset:
    """The ``split`` (``"train"`` or ``"test"`` = ``val/``, else ``test/``) of the image folder ``root`` as a
    :class:`Dataset` (uint8 N x C x H x W, int64 labels, classes from the folder names, mean/std of the training
    split, ``flip_ok=True``). ``img_size``: resize every image to this square size (default: the training split's
    most common size). ``cache``: read/write the decoded arrays (see the module docstring). ``workers``: decoding
    threads (default: up to 8)."""
    if split not in ("train", "test"):
        raise DataError(f"image folder: unknown split {split!r}; use train or test (the val/ or test/ folder)")
    if img_size is not None and (isinstance(img_size, bool) or not isinstance(img_size, int) or img_size < 1):
        raise ConfigError(f"--img-size must be a positive integer, got {img_size!r}")
    path = Path(root).expanduser().resolve()
    arrays = _arrays(path, img_size, cache, workers or min(8, os.cpu_count() or 1))
    split_dir = path / "train" if split == "train" else eval_split_dir(path)
    return Dataset(name=path.name, images=torch.from_numpy(arrays[f"{split}_images"]),
                   labels=torch.from_numpy(arrays[f"{split}_labels"]), classes=[str(c) for c in arrays["classes"]],
                   mean=tuple(arrays["mean"].tolist()), std=tuple(arrays["std"].tolist()), flip_ok=True, split=split,
                   source=split_dir, meta={"image_folder": str(path), "img_size": img_size})


def save_image_folder(root: str | os.PathLike, train: Dataset, test: Dataset, *, eval_name: str = "val") -> Path:
    """Write ``train`` and ``test`` as an image folder (``root/train/<class>/<index>.png``, ``root/<eval_name>/...``;
    lossless PNG, so :func:`load_image_folder` reads the same pixels back): e.g. a registered dataset in the layout
    timm and torchvision read, or a small learnable folder to try ``--data DIR`` on. Class names must be usable as
    folder names. Returns ``root``."""
    image = _pil()
    root = Path(root)
    for split_dir, ds in ((root / "train", train), (root / eval_name, test)):
        for name in ds.classes:
            (split_dir / name).mkdir(parents=True, exist_ok=True)
        for i, (x, y) in enumerate(zip(ds.images.numpy(), ds.labels.tolist())):
            arr = x[0] if x.shape[0] == 1 else x.transpose(1, 2, 0)
            image.fromarray(np.ascontiguousarray(arr)).save(split_dir / ds.classes[y] / f"{i:06d}.png")
    return root
