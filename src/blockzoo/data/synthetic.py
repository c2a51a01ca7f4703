"""A small, learnable, deterministic synthetic image-classification dataset for tests and smoke runs.

Each class ``k`` has a smooth random template (a low-resolution Gaussian pattern, bilinearly upsampled, made
left-right symmetric so a horizontal flip keeps the label, normalised to zero mean / unit std). A sample is
``128 + 48 * a * template[k]`` shifted by up to ``max_shift`` pixels, plus a brightness offset ``b``, plus Gaussian
pixel noise of std ``noise * 255``, clipped to 0..255 (``a ~ U[0.75, 1.25]``, ``b ~ U[-16, 16]``).
Templates depend only on ``pattern_seed`` (the same for train and test); the samples depend on ``(pattern_seed,
split)``; labels are balanced (``i % num_classes``, shuffled).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .augment import crop_flip
from .core import DataError, Dataset

__all__ = ["make_synthetic", "SYNTHETIC_DEFAULTS"]

SYNTHETIC_DEFAULTS = dict(num_classes=10, image_size=32, channels=3, n=None, noise=0.15, pattern_seed=0, max_shift=2)
_DEFAULT_N = {"train": 1024, "test": 256}
_SPLIT_STREAM = {"train": 1, "test": 2}
_STATS_N = 1024  # size of the reference train draw that mean/std are estimated on


def _size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


def _templates(num_classes: int, channels: int, h: int, w: int, pattern_seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1_000_003 * int(pattern_seed) + 17)
    low = torch.randn(num_classes, channels, 4, 4, generator=g)
    t = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=True)
    t = 0.5 * (t + t.flip(-1))
    t = t - t.mean(dim=(1, 2, 3), keepdim=True)
    return t / t.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)


def _generate(split: str, num_classes: int, h: int, w: int, channels: int, n: int, noise: float, pattern_seed: int,
              max_shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    s = max_shift
    temps = _templates(num_classes, channels, h + 2 * s, w + 2 * s, pattern_seed)
    g = torch.Generator().manual_seed(1_000_003 * int(pattern_seed) + 7919 * _SPLIT_STREAM[split])
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    images = torch.empty(n, channels, h, w, dtype=torch.uint8)
    for start in range(0, n, 4096):
        lab = labels[start:start + 4096]
        b = lab.shape[0]
        dy = torch.randint(0, 2 * s + 1, (b,), generator=g)
        dx = torch.randint(0, 2 * s + 1, (b,), generator=g)
        a = 0.75 + 0.5 * torch.rand(b, 1, 1, 1, generator=g)
        bright = 32.0 * torch.rand(b, 1, 1, 1, generator=g) - 16.0
        eps = torch.randn(b, channels, h, w, generator=g)
        t = crop_flip(temps[lab], dy, dx, None, 0, out_size=(h, w))
        x = 128.0 + 48.0 * a * t + bright + (noise * 255.0) * eps
        images[start:start + b] = x.round_().clamp_(0, 255).to(torch.uint8)
    return images, labels


@functools.lru_cache(maxsize=16)
def _train_stats(num_classes: int, h: int, w: int, channels: int, n: int, noise: float, pattern_seed: int,
                 max_shift: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x, _ = _generate("train", num_classes, h, w, channels, n, noise, pattern_seed, max_shift)
    xf = x.to(torch.float64).div_(255.0)
    mean = xf.mean(dim=(0, 2, 3))
    std = xf.std(dim=(0, 2, 3), unbiased=False)
    return tuple(mean.tolist()), tuple(std.tolist())


def make_synthetic(split: str = "train", *, num_classes: int = 10, image_size: int | tuple[int, int] = 32,
                   channels: int = 3, n: int | None = None, noise: float = 0.15, pattern_seed: int = 0,
                   max_shift: int = 2) -> Dataset:
    """Build the synthetic dataset. ``n`` defaults to 1024 (train) / 256 (test). ``mean``/``std`` are estimated on a
    fixed 1024-sample train draw of the same configuration, so they do not depend on ``n`` or on the split."""
    if split not in _SPLIT_STREAM:
        raise DataError(f"synthetic: unknown split {split!r}; use one of {sorted(_SPLIT_STREAM)}")
    h, w = _size(image_size)
    if num_classes < 1 or channels < 1 or h < 1 or w < 1 or max_shift < 0 or noise < 0:
        raise DataError(f"synthetic: invalid options num_classes={num_classes}, channels={channels}, "
                        f"image_size={image_size}, max_shift={max_shift}, noise={noise}")
    n_split = _DEFAULT_N[split] if n is None else int(n)
    if n_split < 1:
        raise DataError(f"synthetic: n must be >= 1, got {n}")
    images, labels = _generate(split, num_classes, h, w, channels, n_split, float(noise), int(pattern_seed),
                               int(max_shift))
    mean, std = _train_stats(num_classes, h, w, channels, _STATS_N, float(noise), int(pattern_seed), int(max_shift))
    cfg = dict(num_classes=num_classes, image_size=(h, w), channels=channels, n=n_split, noise=noise,
               pattern_seed=pattern_seed, max_shift=max_shift)
    return Dataset(name="synthetic", images=images, labels=labels, classes=[f"class{k}" for k in range(num_classes)],
                   mean=mean, std=std, flip_ok=True, split=split, source=None, meta={"config": cfg})
