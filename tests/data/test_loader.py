"""blockzoo.data.loader: shapes, normalisation, coverage, per-epoch determinism, CUDA, and speed on Fashion-MNIST."""
from __future__ import annotations

import time

import pytest
import torch

import blockzoo.data as bd
from blockzoo.data import (
    DataError,
    Loader,
    load_dataset,
)
from helpers import _as_id_dataset


def _epoch_batches(loader: Loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


def test_loader_shapes_normalisation_and_coverage():
    ds = load_dataset("synthetic", n=103, num_classes=5, image_size=8, channels=3)
    ev = Loader(ds, 25, train=False)
    assert len(ev) == 5 and not ev.shuffle and not ev.augment and not ev.drop_last
    xs, ys = zip(*ev)
    assert [x.shape[0] for x in xs] == [25, 25, 25, 25, 3]
    x = torch.cat(xs)
    assert x.dtype == torch.float32 and x.shape == (103, 3, 8, 8) and torch.equal(torch.cat(ys), ds.labels)
    mean = torch.tensor(ds.mean).view(1, 3, 1, 1)
    std = torch.tensor(ds.std).view(1, 3, 1, 1)
    assert torch.allclose(x, (ds.images.float() / 255 - mean) / std, atol=1e-5)
    assert torch.allclose(ev.denormalize(x), ds.images.float() / 255, atol=1e-6)
    # train: shuffled, drop_last, every sample at most once; without drop_last exactly once
    idset = _as_id_dataset(torch.zeros(103, 1, 4, 4, dtype=torch.uint8))
    tr = Loader(idset, 25, train=True)
    ids = torch.cat([y for _, y in tr])
    assert len(tr) == 4 and ids.numel() == 100 and ids.unique().numel() == 100 and ids.tolist() != sorted(ids.tolist())
    full = torch.cat([y for _, y in Loader(idset, 25, train=True, drop_last=False)])
    assert sorted(full.tolist()) == list(range(103))
    half = Loader(ds, 16, train=True, dtype=torch.float64, channels_last=True)
    xb, yb = next(iter(half))
    assert xb.dtype == torch.float64 and yb.dtype == torch.int64
    assert xb.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(DataError, match="gives no batches"):
        Loader(ds, 500, train=True)


def test_set_epoch_resume_determinism():
    ds = load_dataset("synthetic", n=64, image_size=8)
    run = Loader(ds, 16, train=True, seed=7)
    epochs = [_epoch_batches(run) for _ in range(3)]                  # uninterrupted: epochs 0, 1, 2
    assert run.epoch == 3
    assert not _same(epochs[0], epochs[1]) and not _same(epochs[1], epochs[2])
    resumed = Loader(ds, 16, train=True, seed=7)
    resumed.set_epoch(2)
    assert _same(_epoch_batches(resumed), epochs[2])
    explicit = Loader(ds, 16, train=True, seed=7)                     # a trainer calling set_epoch every epoch
    for e in range(3):
        explicit.set_epoch(e)
        assert _same(_epoch_batches(explicit), epochs[e])
    other = Loader(ds, 16, train=True, seed=8)
    assert not _same(_epoch_batches(other), epochs[0])
    # an abandoned pass does not disturb the next one
    partial = Loader(ds, 16, train=True, seed=7)
    next(iter(partial))
    assert _same(_epoch_batches(partial), epochs[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_loader_cuda_matches_cpu():
    ds = load_dataset("synthetic", n=64, image_size=8)
    cpu = _epoch_batches(Loader(ds, 16, train=True, seed=5))
    gpu = [(x.cpu(), y.cpu()) for x, y in Loader(ds, 16, train=True, seed=5, device="cuda")]
    assert all(x.device.type == "cpu" for x, _ in gpu)
    assert all(torch.allclose(a, b, atol=1e-5) and torch.equal(ya, yb) for (a, ya), (b, yb) in zip(cpu, gpu))


def test_real_fashion_mnist_loader_speed(fmnist):
    """Augmenting loader on one thread: must be far above the ~1k img/s a training step consumes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ds = bd.take_subset(fmnist["train"], 8192, seed=0)
        loader = Loader(ds, 128, train=True)
        next(iter(loader))
        t0 = time.perf_counter()
        n = sum(x.shape[0] for x, _ in loader)
        rate = n / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    assert rate > 20_000, f"loader too slow: {rate:.0f} img/s"
