"""blockzoo.data.augment: crop/flip by hand and the loader's augmented crops and flip default."""
from __future__ import annotations

import pytest
import torch

from blockzoo.data import (
    Loader,
    crop_flip,
    load_dataset,
)
from helpers import _as_id_dataset


def test_crop_flip_hand_made():
    x = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4)     # rows 1..4, 5..8, 9..12, 13..16
    one = torch.tensor([1])

    def run(dy, dx, flip=False, pad=1):
        return crop_flip(x, one * dy, one * dx, torch.tensor([flip]), pad)[0, 0].tolist()

    assert run(1, 1) == x[0, 0].tolist()                              # offset == pad: identity
    assert run(1, 2) == [[2, 3, 4, 0], [6, 7, 8, 0], [10, 11, 12, 0], [14, 15, 16, 0]]   # content moves left
    assert run(0, 1) == [[0, 0, 0, 0], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]      # content moves down
    assert run(2, 0) == [[0, 5, 6, 7], [0, 9, 10, 11], [0, 13, 14, 15], [0, 0, 0, 0]]
    assert run(1, 1, flip=True) == x[0, 0].flip(-1).tolist()
    assert run(1, 2, flip=True) == [[0, 4, 3, 2], [0, 8, 7, 6], [0, 12, 11, 10], [0, 16, 15, 14]]
    with pytest.raises(ValueError, match="out of range"):
        run(3, 0)
    # batch: each sample gets its own offsets; channels move together
    xb = torch.stack([x[0].repeat(2, 1, 1), x[0].repeat(2, 1, 1) + 100])
    out = crop_flip(xb, torch.tensor([1, 0]), torch.tensor([2, 1]), torch.tensor([False, True]), 1)
    assert out[0, 1].tolist() == run(1, 2) and out[1, 0, 0].tolist() == [0, 0, 0, 0]
    assert out[1, 1, 1].tolist() == [104, 103, 102, 101]


def test_loader_augment_outputs_are_valid_crops():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(1, 256, (16, 1, 6, 6), dtype=torch.uint8, generator=g)   # no zeros inside the images
    ds = _as_id_dataset(imgs)                                        # mean 0, std 1/255 -> x == pixel values
    loader = Loader(ds, 4, train=True, crop_padding=2, seed=3)
    params = [(dy, dx, f) for dy in range(5) for dx in range(5) for f in (False, True)]
    n = imgs.shape[0]
    candidates = torch.stack([crop_flip(imgs, torch.full((n,), dy), torch.full((n,), dx), torch.full((n,), f), 2)
                              for dy, dx, f in params])               # 50 x 16 x 1 x 6 x 6: every possible output
    seen_offsets, flips = set(), 0
    for _ in range(12):
        for x, y in loader:
            for xi, i in zip(x, y.tolist()):
                hits = (candidates[:, i] == xi.round().to(torch.uint8)).flatten(1).all(1).nonzero().flatten()
                assert hits.numel() == 1, "augmented sample is not (exactly) one crop/flip of its source image"
                dy, dx, f = params[int(hits[0])]
                seen_offsets.add((dy, dx))
                flips += f
    assert len(seen_offsets) == 25                                   # all offsets in 0..2*pad occur
    assert 0.35 < flips / (12 * 16) < 0.65


def test_flip_respects_dataset_default():
    img = torch.zeros(1, 1, 4, 4, dtype=torch.uint8)
    img[..., 0] = 200                                                 # left column bright: flip is visible
    ds = _as_id_dataset(img.repeat(64, 1, 1, 1), flip_ok=False)      # like MNIST
    loader = Loader(ds, 64, train=True, crop_padding=0, flip=True)
    assert loader.flip is False
    x, _ = next(iter(loader))
    assert (x[..., 0] == 200).all()
    forced = Loader(ds, 64, train=True, crop_padding=0, force_flip=True)
    x, _ = next(iter(forced))
    assert forced.flip and (x[:, 0, 0, 3] == 200).any() and (x[:, 0, 0, 0] == 200).any()
    assert Loader(load_dataset("synthetic", n=20), 4, train=True).crop_padding == 4
    assert Loader(_as_id_dataset(torch.zeros(4, 1, 28, 28, dtype=torch.uint8)), 2, train=True).crop_padding == 2
