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


# ------------------------------------------------------------------------- RandAugment, erasing, MixUp / CutMix
def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _norm(xb: torch.Tensor) -> torch.Tensor:
    return xb.float() / 255 - 0.5


def test_parse_randaugment_timm_strings():
    from blockzoo.data.augment import parse_randaugment
    from blockzoo.errors import ConfigError

    assert parse_randaugment("rand-m9-n2") == (2, 9) and parse_randaugment("rand-n3-m5") == (3, 5)
    assert parse_randaugment("RAND-m7") == (2, 7)                  # timm's default of 2 ops
    for bad, match in (("augmix-m5", "only RandAugment"), ("rand-m9-mstd0.5", "unsupported or repeated part"),
                       ("rand-n2", "no magnitude"), ("rand-m10-n2", "out of range"), ("rand-m9-n16", "out of range"),
                       ("rand-m9-m8", "repeated")):
        with pytest.raises(ConfigError, match=match):
            parse_randaugment(bad)


def test_randaugment_changes_images_keeps_range_and_is_seeded():
    pytest.importorskip("kornia")
    from blockzoo.data.augment import BatchAugment

    xb = load_dataset("synthetic", "train", n=16, image_size=16).images
    aug = BatchAugment(10, aa="rand-m9-n2")
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    outs = [aug(xb, torch.zeros(16, dtype=torch.long), _gen(s), lambda t: t)[0] for s in (0, 0, 1)]
    assert torch.equal(torch.random.get_rng_state(), before)       # the global RNG is left alone
    for out in outs:
        assert out.dtype == torch.uint8 and out.shape == xb.shape
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    assert all(not torch.equal(o, xb) for o in outs)
    # grayscale goes through as R = G = B: all 15 ops keep the channels equal, so one channel comes back exactly
    every_op = BatchAugment(10, aa="rand-m9-n15")
    labels = torch.zeros(16, dtype=torch.long)
    rgb = every_op(xb[:, :1].expand(-1, 3, -1, -1).contiguous(), labels, _gen(), lambda t: t)[0]
    assert torch.equal(rgb[:, 0], rgb[:, 1]) and torch.equal(rgb[:, 1], rgb[:, 2])
    gray = every_op(xb[:, :1].contiguous(), labels, _gen(), lambda t: t)[0]
    assert gray.shape == (16, 1, 16, 16) and torch.equal(gray, rgb[:, :1])


def test_random_erasing_fills_boxes_with_the_mean():
    pytest.importorskip("kornia")
    from blockzoo.data.augment import BatchAugment

    xb = torch.full((8, 3, 16, 16), 255, dtype=torch.uint8)
    x, y = BatchAugment(10, reprob=1.0)(xb, torch.arange(8), _gen(), _norm)
    erased = (x == 0).all(1)                                        # 0 in the normalised image = the mean
    area = erased.flatten(1).float().mean(1)
    assert torch.equal(y, torch.arange(8)) and ((area > 0.01) & (area < 0.4)).all()
    assert torch.equal(x[~erased.unsqueeze(1).expand_as(x)], torch.full_like(x, 0.5)[~erased.unsqueeze(1).expand_as(x)])


def test_mixup_mixes_images_and_labels_with_one_weight():
    from blockzoo.data.augment import BatchAugment

    xb = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    x, soft = BatchAugment(5, mixup=0.4)(xb, y, _gen(), _norm)
    assert soft.shape == (6, 5) and soft.dtype == torch.float32
    assert torch.allclose(soft.sum(1), torch.ones(6))
    lam = float(soft[1, 1])                                         # sample 1 (class 1) is mixed with sample 4
    assert soft[1, 4] == pytest.approx(1 - lam) and 0 < lam < 1
    assert torch.allclose(x, lam * _norm(xb) + (1 - lam) * _norm(xb).flip(0), atol=1e-6)
    again, soft2 = BatchAugment(5, mixup=0.4)(xb, y, _gen(), _norm)
    assert torch.equal(again, x) and torch.equal(soft2, soft)


def test_cutmix_label_weight_is_the_kept_area():
    from blockzoo.data.augment import BatchAugment

    xb = torch.stack([torch.full((1, 20, 20), 10 * k, dtype=torch.uint8) for k in range(1, 5)])
    y = torch.arange(4)
    for seed in range(5):
        x, soft = BatchAugment(4, cutmix=1.0)(xb, y, _gen(seed), _norm)
        kept = (x[0] == _norm(xb)[0]).float().mean().item()        # sample 0 keeps itself outside the box
        assert soft[0, 0].item() == pytest.approx(kept) and soft[0, 3].item() == pytest.approx(1 - kept)
        assert torch.allclose(soft.sum(1), torch.ones(4))
    both = [bool((BatchAugment(4, mixup=1.0, cutmix=1.0)(xb, y, _gen(s), _norm)[0] == _norm(xb)).any())
            for s in range(20)]
    assert any(both) and not all(both)                             # CutMix keeps pixels, MixUp blends them all


def test_loader_batch_augment_off_by_default_and_soft_targets_on():
    ds = load_dataset("synthetic", "train", n=64, image_size=16)
    plain = list(Loader(ds, 16, train=True, seed=3))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(plain, Loader(ds, 16, train=True, seed=3, mixup=0.0, cutmix=0.0, reprob=0.0)))
    mixed = list(Loader(ds, 16, train=True, seed=3, mixup=0.2, cutmix=1.0))
    assert all(y.shape == (16, 10) and y.dtype == torch.float32 for _, y in mixed)
    assert all(x.shape == (16, 3, 16, 16) and x.dtype == torch.float32 for x, _ in mixed)
    again = list(Loader(ds, 16, train=True, seed=3, mixup=0.2, cutmix=1.0))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(mixed, again))
    # each sample's hard label keeps the most weight or shares it with its partner
    assert all((y.max(1).values >= 0.5 - 1e-6).all() for _, y in mixed)


def test_missing_kornia_names_the_extra(monkeypatch):
    import builtins

    from blockzoo.data.augment import BatchAugment
    from blockzoo.errors import ConfigError

    real = builtins.__import__

    def no_kornia(name, *a, **k):
        if name.startswith("kornia"):
            raise ImportError("No module named 'kornia'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_kornia)
    with pytest.raises(ConfigError, match=r"pip install 'blockzoo\[data\]'"):
        BatchAugment(10, reprob=0.5)
    BatchAugment(10, mixup=0.2)                                    # MixUp / CutMix need no extra


def test_batch_augment_runs_on_the_global_batch_before_sharding():
    ds = load_dataset("synthetic", "train", n=64, image_size=16)
    kw = dict(train=True, seed=1, mixup=0.4, cutmix=1.0, channels_last=True)
    full = list(Loader(ds, 16, **kw))
    for rank in range(2):
        part = list(Loader(ds, 16, shard=(rank, 2), **kw))
        assert len(part) == len(full)
        for (x, y), (xp, yp) in zip(full, part):
            assert torch.equal(x[8 * rank:8 * rank + 8], xp) and torch.equal(y[8 * rank:8 * rank + 8], yp)
            assert xp.is_contiguous(memory_format=torch.channels_last)
