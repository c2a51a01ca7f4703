"""blockzoo.data.imagefolder: layout, classes, colour and size policy, normalisation, cache and every error."""
from __future__ import annotations

import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from blockzoo.data import (
    DataError,
    dataset_label,
    dataset_shape,
    load_dataset,
    load_image_folder,
    load_split,
    save_image_folder,
)
from blockzoo.data import imagefolder as imf

Image = pytest.importorskip("PIL.Image")


def png(path: Path, size=(8, 6), mode="RGB", value=0) -> Path:
    """A solid-colour image of ``size`` (W, H) in ``mode`` at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode in ("L", "1") else (value,) * len(mode)
    Image.new(mode, size, color).save(path)
    return path


def folder(root: Path, layout: dict[str, dict[str, int]], **kw) -> Path:
    """``layout = {"train": {"cat": 2, ...}, "val": {...}}``: that many images per class folder."""
    for split, classes in layout.items():
        for name, n in classes.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                png(root / split / name / f"{i}.png", value=40 * i + 10, **kw)
    return root


@pytest.fixture
def synthetic_folder(tmp_path):
    train = load_dataset("synthetic", "train", num_classes=3, image_size=12, n=24)
    test = load_dataset("synthetic", "test", num_classes=3, image_size=12, n=9)
    return save_image_folder(tmp_path / "imgs", train, test), train, test


def test_round_trip_classes_pixels_and_statistics(synthetic_folder):
    root, train, test = synthetic_folder
    tr, te = (load_dataset(str(root), s) for s in ("train", "test"))
    assert tr.classes == te.classes == sorted(train.classes) and tr.name == "imgs" and tr.flip_ok
    assert tr.images.dtype == torch.uint8 and tr.images.shape == (24, 3, 12, 12) and te.images.shape == (9, 3, 12, 12)
    # PNG is lossless: the folder holds exactly the synthetic images, in ImageFolder's order (class, then file name)
    for ds, ref in ((tr, train), (te, test)):
        order = torch.argsort(ref.labels, stable=True)
        assert torch.equal(ds.images, ref.images[order]) and torch.equal(ds.labels, ref.labels[order])
    x = train.images.to(torch.float64) / 255
    assert tr.mean == pytest.approx(x.mean((0, 2, 3)).tolist(), abs=1e-9)
    assert tr.std == pytest.approx(x.std((0, 2, 3), unbiased=False).tolist(), abs=1e-9)
    assert te.mean == tr.mean and te.std == tr.std  # the evaluation split is normalised like the training split


def test_classes_sorted_like_imagefolder_nested_files_and_other_files_ignored(tmp_path):
    root = folder(tmp_path, {"train": {"b": 1, "B": 1, "a_": 1}, "val": {"b": 1, "B": 1, "a_": 1}})
    png(root / "train" / "b" / "deeper" / "x.PNG")
    (root / "train" / "b" / "notes.txt").write_text("not an image")
    (root / "train" / ".ipynb_checkpoints").mkdir()
    ds = load_image_folder(root)
    assert ds.classes == ["B", "a_", "b"]                       # code-point order, as sorted() / torchvision
    assert ds.class_counts().tolist() == [1, 1, 2]


def test_val_wins_over_test_and_test_is_used_without_val(tmp_path):
    root = folder(tmp_path / "d", {"train": {"a": 1, "b": 1}, "test": {"a": 3, "b": 3}})
    assert len(load_image_folder(root, "test")) == 6
    folder(root, {"val": {"a": 1, "b": 1}})
    assert len(load_image_folder(root, "test")) == 2


def test_mixed_sizes_go_to_the_most_common_size_or_img_size(tmp_path):
    root = folder(tmp_path / "d", {"train": {"a": 3, "b": 2}, "val": {"a": 1, "b": 1}}, size=(8, 6))
    png(root / "train" / "a" / "big.png", size=(16, 16), value=200)
    with pytest.warns(UserWarning, match="1 of 8 images are not 6x8, the most common training size, and were resized"):
        ds = load_image_folder(root)
    assert ds.image_size == (6, 8)
    # the 16x16 image covers 6x8 at 8x8 and is centre-cropped: a solid image stays solid
    big = ds.images[3]                                      # a/0.png a/1.png a/2.png a/big.png b/...
    assert int(big.min()) == int(big.max()) == 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")                      # an asked-for size needs no warning
        sq = load_image_folder(root, img_size=5)
    assert sq.image_size == (5, 5) and len(sq) == 6
    with pytest.raises(ValueError, match="--img-size applies to image folders only"):
        load_dataset("synthetic", img_size=5)


def test_cover_and_centre_crop_keeps_the_middle():
    img = np.zeros((4, 12), dtype=np.uint8)
    img[:, 4:8], img[:, 8:] = 255, 100                      # thirds: 0 | 255 | 100
    arr, resized = imf._decode_image(Image.fromarray(img), (4, 4), gray=True)
    assert resized and arr.shape == (1, 4, 4) and arr.min() == arr.max() == 255   # the centre square
    arr, _ = imf._decode_image(Image.fromarray(np.repeat(img, 2, 0).repeat(2, 1)), (4, 4), gray=True)
    assert arr.shape == (1, 4, 4) and arr[:, :, 1:3].min() == 255                 # downscaled 2x, then cropped
    same, resized = imf._decode_image(Image.fromarray(img), (4, 12), gray=False)
    assert not resized and same.shape == (3, 4, 12) and (same == img).all()


def test_majority_colour_mode_and_tie_to_rgb(tmp_path):
    root = folder(tmp_path / "g", {"train": {"a": 2, "b": 1}, "val": {"a": 1, "b": 1}}, mode="L")
    png(root / "train" / "b" / "rgb.png", mode="RGB", value=30)
    png(root / "val" / "a" / "rgba.png", mode="RGBA", value=30)
    ds = load_image_folder(root, "test")
    assert ds.in_chans == 1 and len(ds.mean) == 1               # 3 of 4 training images are grayscale
    tie = folder(tmp_path / "t", {"train": {"a": 1}, "val": {"a": 1}}, mode="L")
    png(tie / "train" / "a" / "c.png", mode="RGB")
    assert load_image_folder(tie).in_chans == 3


@pytest.mark.parametrize("case, match", [
    ("no_folder", "no such folder"),
    ("no_train", "no train/ folder"),
    ("no_val", "no val/ or test/ folder"),
    ("no_classes", "no class folders"),
    ("empty_class", "empty class folder"),
    ("class_sets", r"different class folders \(only in train/: \['c'\]; only in val/: \['d'\]\)"),
    ("unreadable", "broken.png: unreadable image"),
    ("truncated", "cut.png: unreadable image"),
])
def test_errors_are_one_clear_sentence(tmp_path, case, match):
    root = tmp_path / "d"
    if case != "no_folder":
        folder(root, {"train": {"a": 1, "b": 1}, "val": {"a": 1, "b": 1}})
    if case == "no_train":
        (root / "train").rename(root / "training")
    elif case == "no_val":
        (root / "val").rename(root / "validation")
    elif case == "no_classes":
        for p in (root / "train").iterdir():
            for f in p.iterdir():
                f.rename(root / "train" / f"{p.name}{f.name}")
            p.rmdir()
    elif case == "empty_class":
        (root / "train" / "a" / "0.png").rename(root / "train" / "a" / "0.txt")
    elif case == "class_sets":
        png(root / "train" / "c" / "0.png")
        png(root / "val" / "d" / "0.png")
    elif case == "unreadable":
        (root / "train" / "b" / "broken.png").write_bytes(b"not a png")
    elif case == "truncated":
        noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(noise).save(root / "train" / "a" / "cut.png")
        full = (root / "train" / "a" / "cut.png").read_bytes()
        (root / "train" / "a" / "cut.png").write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match=match) as ei:
        load_image_folder(root) if case == "no_folder" else load_dataset(str(root))  # a missing path is no folder
    assert "\n" not in str(ei.value)


def test_unknown_name_that_is_no_folder():
    with pytest.raises(DataError, match="neither a registered dataset .* nor an existing folder"):
        load_dataset("./no-such-folder")


def test_cache_is_reused_and_invalidated_when_files_change(synthetic_folder, monkeypatch):
    root = synthetic_folder[0]
    first = load_image_folder(root)
    caches = list(imf._cache_folder(root.resolve()).glob("*.npz"))
    assert len(caches) == 1
    calls = []
    real = imf._decode_all
    monkeypatch.setattr(imf, "_decode_all", lambda *a: calls.append(1) or real(*a))
    again = load_image_folder(root)
    assert calls == [] and torch.equal(again.images, first.images) and again.mean == first.mean
    # a changed file (new mtime and content) decodes afresh and replaces the old cache
    target = sorted((root / "train").rglob("*.png"))[0]
    png(target, size=(12, 12), value=255)
    changed = load_image_folder(root)
    assert calls == [1] and not torch.equal(changed.images, first.images)
    assert [p.name for p in imf._cache_folder(root.resolve()).glob("*.npz")] != [caches[0].name]
    assert len(list(imf._cache_folder(root.resolve()).iterdir())) == 1  # no temporary files left
    # a torn cache file is not trusted: the folder is decoded again
    next(imf._cache_folder(root.resolve()).glob("*.npz")).write_bytes(b"torn")
    assert torch.equal(load_image_folder(root).images, changed.images) and calls == [1, 1]


def test_unwritable_cache_only_warns(synthetic_folder, monkeypatch):
    root = synthetic_folder[0]

    def fail(*a, **k):
        raise OSError("read-only file system")

    monkeypatch.setattr(imf, "atomic_write", fail)   # the cache write (blockzoo.files.atomic_write) fails
    with pytest.warns(UserWarning, match="could not write the image-folder cache"):
        ds = load_image_folder(root)
    assert len(ds) == 24


def test_load_split_options_and_helpers(synthetic_folder):
    root = synthetic_folder[0]
    opts = types.SimpleNamespace(data=str(root), data_dir=None, verify=True, img_size=None, subset=6,
                                 test_subset=3, seed=1)
    tr, te = load_split(opts, "train"), load_split(opts, "test")
    assert len(tr) == 6 and tr.class_counts().tolist() == [2, 2, 2] and len(te) == 3
    assert torch.equal(load_split(opts, "train", subset_seed=1).images, tr.images)
    assert not torch.equal(load_split(opts, "train", subset_seed=0).images, tr.images)
    with pytest.raises(DataError, match=r"image folder: unknown option\(s\) \['colour'\]"):
        load_dataset(str(root), colour=True)
    assert len(load_dataset(str(root), verify=False)) == 24      # nothing to verify in decoded images
    assert dataset_shape(str(root)) == (3, 3, (12, 12))
    assert dataset_shape("fashion-mnist") == (10, 1, (28, 28))
    assert dataset_label(str(root)) == "imgs" and dataset_label("FashionMNIST") == "fashion-mnist"
    syn = types.SimpleNamespace(data="synthetic", data_dir=None, verify=False, img_size=None, subset=None,
                                test_subset=10, seed=0)
    assert len(load_split(syn, "test")) == 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_split(syn, "train")


def test_a_registered_name_wins_over_a_folder_of_that_name(tmp_path, monkeypatch):
    folder(tmp_path / "synthetic", {"train": {"a": 1, "b": 1}, "val": {"a": 1, "b": 1}})
    monkeypatch.chdir(tmp_path)
    assert load_dataset("synthetic", n=20).source is None and dataset_label("synthetic") == "synthetic"
    own = load_dataset("./synthetic")
    assert len(own) == 2 and own.classes == ["a", "b"] and own.source == (tmp_path / "synthetic" / "train").resolve()


def test_data_fingerprint_identifies_the_folder_contents(make_image_folder):
    from blockzoo.data import data_fingerprint
    root = make_image_folder(12, 6)
    fp = data_fingerprint(str(root))
    assert isinstance(fp, str) and len(fp) == 16 and data_fingerprint(str(root)) == fp
    assert data_fingerprint("fashion-mnist") is None                 # registered: fixed, checksummed files
    next((root / "val").rglob("*.png")).unlink()
    assert data_fingerprint(str(root)) != fp
