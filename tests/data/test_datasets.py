"""blockzoo.data.datasets: load_dataset names/splits/options, subsets, and the real Fashion-MNIST when installed."""
from __future__ import annotations

import pytest
import torch

from blockzoo.data import (
    DATASETS,
    DataError,
    load_dataset,
    subset_indices,
)
from helpers import FMNIST_DIR, _content_sha


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
