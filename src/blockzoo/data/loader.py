"""In-memory batch loader: shuffles, augments (random crop with zero padding + horizontal flip, see
:mod:`blockzoo.data.augment`) and normalises whole batches with tensor ops, on the target device.

Determinism: every pass over the data draws its permutation and augmentation parameters from a fresh CPU
``torch.Generator`` seeded from ``(seed, epoch)``. A pass uses the loader's current epoch and then advances it by one,
so an uninterrupted run sees epochs 0, 1, 2, ... and a run resumed with ``set_epoch(e)`` sees exactly the batches the
uninterrupted run saw at epoch ``e`` (whether or not the trainer calls ``set_epoch`` every epoch). Random numbers are
always drawn on the CPU, so the batches do not depend on ``device``.

Sharding (``shard=(rank, world_size)``, used by distributed training): every process draws and augments the same
global batch of ``batch_size`` images and yields its slice ``[rank * k, (rank + 1) * k)``, ``k = batch_size /
world_size`` (a short last batch leaves the last processes fewer images, possibly none), so the processes' slices are
disjoint and together give exactly the batches of the unsharded loader, whatever the world size.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator

import torch

from .augment import BatchAugment, random_crop_flip
from .core import DataError, Dataset

__all__ = ["Loader", "epoch_seed", "default_crop_padding"]


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit generator seed derived from ``(seed, epoch)`` (well mixed, so nearby pairs are unrelated)."""
    digest = hashlib.sha256(f"blockzoo.data.Loader/{int(seed)}/{int(epoch)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def default_crop_padding(image_size: tuple[int, int]) -> int:
    """4 pixels for 32 px (and larger) images, the CIFAR standard; 2 for smaller ones such as 28 px (Fashion-)MNIST."""
    return 4 if min(image_size) >= 32 else 2


class Loader:
    """Iterate over ``(x, y)`` batches of a :class:`Dataset`.

    ``x``: float (``dtype``) B x C x H x W on ``device``, normalised with the dataset's mean/std
    (``(pixel / 255 - mean) / std``), channels-last if asked; ``y``: int64 B on ``device``.

    * ``train``: sets the defaults ``shuffle = augment = drop_last = train``.
    * ``augment``: random crop with ``crop_padding`` zero pixels on each side (default: 4 for 32 px, 2 for 28 px;
      0 disables the crop) and, if ``flip``, a horizontal flip with probability 1/2.
    * ``flip``: only honoured when the dataset allows it (``ds.flip_ok``; False for MNIST digits, where a flip can
      change the class). ``force_flip=True`` flips regardless.
    * ``aa`` (RandAugment ``rand-m9-n2``), ``reprob`` (random erasing), ``mixup`` / ``cutmix`` (alphas): the
      augmentations of :class:`~blockzoo.data.augment.BatchAugment`, applied to every batch when set (give them to
      the training loader only), after crop + flip and before sharding; with ``mixup`` / ``cutmix`` ``y`` is a float
      B x num_classes soft target.
    * ``seed`` / :meth:`set_epoch`: see the module docstring.
    * ``shard``: yield only this process's slice of every batch (module docstring); ``len()`` stays the number of
      global batches.
    """

    def __init__(self, ds: Dataset, batch_size: int, *, train: bool, augment: bool | None = None,
                 crop_padding: int | None = None, flip: bool = True, drop_last: bool | None = None, seed: int = 0,
                 device: str | torch.device = "cpu", channels_last: bool = False, dtype: torch.dtype = torch.float32,
                 shuffle: bool | None = None, force_flip: bool = False, shard: tuple[int, int] = (0, 1),
                 aa: str | None = None, reprob: float = 0.0, mixup: float = 0.0, cutmix: float = 0.0) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"Loader: batch_size must be a positive int, got {batch_size!r}")
        if not dtype.is_floating_point:
            raise DataError(f"Loader: dtype must be a floating-point dtype, got {dtype}")
        self.dataset = ds
        self.batch_size = batch_size
        self.train = bool(train)
        self.augment = self.train if augment is None else bool(augment)
        self.shuffle = self.train if shuffle is None else bool(shuffle)
        self.drop_last = self.train if drop_last is None else bool(drop_last)
        self.crop_padding = default_crop_padding(ds.image_size) if crop_padding is None else int(crop_padding)
        if self.crop_padding < 0:
            raise DataError(f"Loader: crop_padding must be >= 0, got {crop_padding}")
        self.flip = bool(force_flip) or (bool(flip) and bool(ds.flip_ok))
        self.seed = int(seed)
        self.device = torch.device(device)
        self.channels_last = bool(channels_last)
        self.dtype = dtype
        self._epoch = 0
        self.batch_aug = (BatchAugment(ds.num_classes, aa=aa, reprob=reprob, mixup=mixup, cutmix=cutmix)
                          if aa is not None or reprob > 0 or mixup > 0 or cutmix > 0 else None)
        rank, world = shard
        if not 0 <= rank < world or batch_size % world:
            raise DataError(f"Loader: shard {shard} must be (rank, world_size) with 0 <= rank < world_size and "
                            f"world_size dividing batch_size {batch_size}")
        self.shard = (int(rank), int(world))
        if len(self) == 0 and len(ds) > 0:
            raise DataError(f"Loader: batch_size {batch_size} > dataset size {len(ds)} with drop_last=True gives no "
                            f"batches; lower batch_size or pass drop_last=False")
        c = ds.in_chans
        mean = torch.tensor(ds.mean, dtype=torch.float64)
        std = torch.tensor(ds.std, dtype=torch.float64)
        self._scale = (1.0 / (255.0 * std)).to(dtype).view(1, c, 1, 1).to(self.device)
        self._shift = (-mean / std).to(dtype).view(1, c, 1, 1).to(self.device)
        self._images: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None

    # ------------------------------------------------------------------------------------------------------ epochs
    @property
    def epoch(self) -> int:
        """The epoch the next pass will use."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass the one of epoch ``epoch`` (reseeds shuffle/augmentation from ``(seed, epoch)``)."""
        self._epoch = int(epoch)

    # -------------------------------------------------------------------------------------------------- iteration
    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _on_device(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._images is None or self._labels is None:
            self._images = self.dataset.images.to(self.device)
            self._labels = self.dataset.labels.to(self.device)
        return self._images, self._labels

    def normalize(self, xb: torch.Tensor) -> torch.Tensor:
        """uint8 batch (on ``device``) -> normalised float batch, as yielded by the loader."""
        x = xb.to(self.dtype).mul_(self._scale).add_(self._shift)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`, back to the 0..1 scale (for plots)."""
        return ((x - self._shift) / self._scale / 255.0).clamp(0, 1)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self._epoch
        self._epoch += 1
        return self._iterate(epoch)

    def _iterate(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images, labels = self._on_device()
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        n = len(self.dataset)
        order = torch.randperm(n, generator=g) if self.shuffle else None
        do_aug = self.augment and (self.crop_padding > 0 or self.flip)
        bs = self.batch_size
        on_cpu = self.device.type == "cpu"
        for i in range(len(self)):
            lo, hi = i * bs, min((i + 1) * bs, n)
            if order is not None:
                idx = order[lo:hi]
                if not on_cpu:
                    idx = idx.to(self.device, non_blocking=True)
                xb = images.index_select(0, idx)
                yb = labels.index_select(0, idx)
            else:
                xb = images[lo:hi]
                yb = labels[lo:hi]
            if do_aug:
                xb = random_crop_flip(xb, self.crop_padding, self.flip, g)
            if self.batch_aug is not None:  # the whole global batch, normalised: the same batches at any world size
                xb, yb = self.batch_aug(xb, yb, g, self.normalize)
                if self.channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
            if self.shard[1] > 1:
                k = bs // self.shard[1]
                a, b = min(self.shard[0] * k, hi - lo), min((self.shard[0] + 1) * k, hi - lo)
                if a == b:
                    continue  # a short last batch leaves nothing for this process
                xb, yb = xb[a:b], yb[a:b]
            yield (self.normalize(xb) if self.batch_aug is None else xb), yb

    def __repr__(self) -> str:
        return (f"Loader({self.dataset.name}/{self.dataset.split}, n={len(self.dataset)}, "
                f"batch_size={self.batch_size}, batches={len(self)}, shuffle={self.shuffle}, augment={self.augment}, "
                f"crop_padding={self.crop_padding}, flip={self.flip}, drop_last={self.drop_last}, seed={self.seed}, "
                f"epoch={self._epoch}, device={self.device})")
