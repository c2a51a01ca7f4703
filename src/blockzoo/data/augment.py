"""Batch augmentation with plain tensor ops (no torchvision): random crop with zero padding and horizontal flip, done
as one ``torch.gather`` per batch so that it runs at several 100k img/s on one CPU thread for 28 x 28 images.

The crop follows the usual CIFAR recipe (e.g. He et al. 2016, "Deep Residual Learning", Sec. 4.2: "4 pixels are
padded on each side, and a 32x32 crop is randomly sampled from the padded image or its horizontal flip").

Beyond crop + flip (:class:`BatchAugment`, the ``--aa`` / ``--reprob`` / ``--mixup`` / ``--cutmix`` options, named
as in timm):

* RandAugment (Cubuk et al. 2020) through kornia (``pip install 'blockzoo[data]'``): ``rand-m<M>-n<N>``, N ops of
  magnitude M on timm's 0..10 scale (kornia's 0..30 scale is 3x it; kornia excludes its maximum, so M is 1..9).
  Kornia draws the N ops once per batch (the signs and the per-op parameters per image); the paper draws them per
  image. Applied to the uint8 images (as 0..1 floats, rounded back to uint8, so the range is kept).
* Random erasing (Zhong et al. 2020) through kornia: per image with probability ``reprob``, a box of 2-33 % of the
  area with aspect ratio 0.3-3.3, filled with 0 in the normalised image, i.e. the dataset mean (timm's
  ``--remode const``).
* MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019), hand-written: kornia draws MixUp's weight uniformly from a
  range rather than from Beta(alpha, alpha), and computes CutMix's label weight differently from the paper. As in
  timm, each batch is mixed with its reverse (``x.flip(0)``), one weight ``lam ~ Beta(alpha, alpha)`` per batch;
  CutMix pastes a box of area ``1 - lam`` (centre uniform, clipped at the border) and sets ``lam`` to the pasted
  area; with both enabled each batch uses one of the two, chosen with probability 1/2. The labels become soft
  targets ``lam * onehot(y) + (1 - lam) * onehot(y.flip(0))`` (rows sum to 1); ``nn.CrossEntropyLoss`` takes them
  as class probabilities (label smoothing applies on top, as timm folds it into its mixup targets).

Every random number comes from the loader's per-epoch CPU generator (kornia's draws from a torch seed taken from
it), so the batches are deterministic under a seed; with every option off nothing is drawn and crop + flip see the
same random numbers as before.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from blockzoo.checks import check_positive
from blockzoo.errors import ConfigError

__all__ = ["crop_flip", "random_crop_flip", "parse_randaugment", "check_batch_augment", "BatchAugment"]


def crop_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor | None = None, pad: int = 0,
              out_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Per-sample crop (and optional horizontal flip) of a batch.

    ``x`` (B x C x H x W, any dtype) is zero-padded by ``pad`` on every side; sample ``b`` of the result is the
    ``out_size`` window (default H x W) whose top-left corner is at ``(dy[b], dx[b])`` in the *padded* image, mirrored
    left-right when ``flip[b]``:  ``out[b, c, i, j] = xp[b, c, dy[b] + i, dx[b] + (w - 1 - j if flip[b] else j)]``.
    So ``dy = dx = pad`` and no flip returns ``x`` unchanged, and ``dx = pad + s`` shifts the content ``s`` pixels left.
    """
    b, c, h, w = x.shape
    oh, ow = out_size if out_size is not None else (h, w)
    if pad:
        x = F.pad(x, (pad, pad, pad, pad))
    hp, wp = h + 2 * pad, w + 2 * pad
    if b and (int(dy.min()) < 0 or int(dx.min()) < 0 or int(dy.max()) > hp - oh or int(dx.max()) > wp - ow):
        raise ValueError(f"crop_flip: offsets out of range for a {oh}x{ow} window in a {hp}x{wp} padded image")
    dev = x.device
    dy = dy.to(dev, torch.long, non_blocking=True)
    dx = dx.to(dev, torch.long, non_blocking=True)
    ar_h = torch.arange(oh, device=dev)
    ar_w = torch.arange(ow, device=dev)
    rows = dy[:, None] + ar_h                                            # B x oh
    if flip is None:
        cols = dx[:, None] + ar_w                                        # B x ow
    else:
        cols = dx[:, None] + torch.where(flip.to(dev, torch.bool)[:, None], ow - 1 - ar_w, ar_w)
    lin = (rows[:, :, None] * wp + cols[:, None, :]).reshape(b, 1, oh * ow).expand(b, c, oh * ow)
    return torch.gather(x.reshape(b, c, hp * wp), 2, lin).reshape(b, c, oh, ow)


def random_crop_flip(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop with zero padding ``pad`` (offsets uniform in ``0..2*pad``) and, if ``flip``, a horizontal flip with
    probability 1/2. Random numbers come from ``generator`` on the CPU (device-independent), in the order dy, dx, flip.
    """
    b = x.shape[0]
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    fl = torch.rand(b, generator=generator) < 0.5 if flip else None
    return crop_flip(x, dy, dx, fl, pad)


_RAND_PART = re.compile(r"([mn])(\d+)")
#: kornia's RandAugment draws from 15 ops (timm's list without Cutout).
_RAND_OPS = 15


def parse_randaugment(spec: str) -> tuple[int, int]:
    """``"rand-m9-n2"`` (timm's ``--aa`` form; parts in any order, ``n`` defaults to 2 as in timm) ->
    ``(n, m)``; :class:`ConfigError` naming the accepted form otherwise."""
    parts = str(spec).strip().lower().split("-")
    form = "use rand-m<M>-n<N>, e.g. rand-m9-n2 (M in 1..9 on timm's 0..10 scale, N in 1..15)"
    if parts[0] != "rand":
        raise ConfigError(f"--aa {spec!r} is not supported: only RandAugment is; {form}")
    found: dict[str, int] = {}
    for part in parts[1:]:
        m = _RAND_PART.fullmatch(part)
        if m is None or m.group(1) in found:
            raise ConfigError(f"--aa {spec!r}: unsupported or repeated part {part!r}; {form}")
        found[m.group(1)] = int(m.group(2))
    if "m" not in found:
        raise ConfigError(f"--aa {spec!r} has no magnitude; {form}")
    n, mag = found.get("n", 2), found["m"]
    if not (1 <= mag <= 9 and 1 <= n <= _RAND_OPS):
        raise ConfigError(f"--aa {spec!r}: magnitude {mag} or op count {n} out of range; {form}")
    return n, mag


def check_batch_augment(aa: str | None, reprob: float, mixup: float, cutmix: float) -> None:
    """:class:`ConfigError` naming the flag for a bad ``--aa`` / ``--reprob`` / ``--mixup`` / ``--cutmix`` value."""
    if not 0 <= reprob <= 1:
        raise ConfigError(f"--reprob must be a probability in [0, 1], got {reprob!r}")
    for flag, alpha in (("--mixup", mixup), ("--cutmix", cutmix)):
        check_positive(alpha, flag, allow_zero=True)
    if aa is not None:
        parse_randaugment(aa)


def _kornia():
    try:
        import kornia.augmentation as K
        from kornia.augmentation.auto import RandAugment
    except ImportError as e:
        raise ConfigError("--aa and --reprob need kornia: pip install 'blockzoo[data]'") from e
    return K, RandAugment


def _draw_seed(g: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=g))


def _with_seed(seed: int, device: torch.device, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``fn()`` with torch's global RNG seeded by ``seed`` (for kornia), the caller's RNG state restored after."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return fn()


class BatchAugment:
    """RandAugment, random erasing and MixUp/CutMix on whole batches (see the module docstring), as
    :class:`~blockzoo.data.Loader` applies them: ``x, y = aug(uint8 batch, labels, generator, normalize)`` returns
    the normalised float batch and int64 labels, or float soft targets (B x ``num_classes``) when mixing."""

    def __init__(self, num_classes: int, *, aa: str | None = None, reprob: float = 0.0, mixup: float = 0.0,
                 cutmix: float = 0.0) -> None:
        check_batch_augment(aa, reprob, mixup, cutmix)
        self.num_classes = int(num_classes)
        self.mixup, self.cutmix = float(mixup), float(cutmix)
        self.randaugment = self.erasing = None
        if aa is not None or reprob > 0:
            K, RandAugment = _kornia()
            if aa is not None:
                n, m = parse_randaugment(aa)
                self.randaugment = RandAugment(n=n, m=3 * m)
            if reprob > 0:
                self.erasing = K.RandomErasing(scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0, p=float(reprob))

    @property
    def mixing(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def __call__(self, xb: torch.Tensor, y: torch.Tensor, g: torch.Generator,
                 normalize: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.randaugment is not None:
            xb = self._randaugment(xb, g)
        x = normalize(xb)
        if self.erasing is not None:
            er = self.erasing
            x = _with_seed(_draw_seed(g), x.device, lambda: er(x))
        if self.mixing:
            x, y = self.mix(x, y, g)
        return x, y

    def _randaugment(self, xb: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """uint8 -> uint8; a grayscale batch goes through as R = G = B (kornia's colour ops want 3 channels), which
        every op keeps equal, and comes back as one channel."""
        c = xb.shape[1]
        if c not in (1, 3):
            raise ConfigError(f"--aa needs 1- or 3-channel images, got {c} channels; drop --aa")
        x01 = xb.float().div_(255).expand(-1, 3, -1, -1)
        ra = self.randaugment
        out = _with_seed(_draw_seed(g), xb.device, lambda: ra(x01))[:, :c]
        return out.mul(255).round_().clamp_(0, 255).to(torch.uint8)

    def mix(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """MixUp or CutMix of the batch ``x`` with its reverse; returns the mixed batch and the soft targets."""
        use_cutmix = self.cutmix > 0 and (self.mixup == 0 or bool(torch.rand(1, generator=g) < 0.5))
        rng = np.random.default_rng(_draw_seed(g))
        alpha = self.cutmix if use_cutmix else self.mixup
        lam = float(rng.beta(alpha, alpha))
        if use_cutmix:
            h, w = x.shape[-2:]
            cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
            y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
            x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
            x = x.clone()
            x[:, :, y0:y1, x0:x1] = x.flip(0)[:, :, y0:y1, x0:x1]
            lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)   # the label weight is the area actually kept
        else:
            x = x * lam + x.flip(0) * (1 - lam)
        onehot = F.one_hot(y, self.num_classes).to(torch.float32)
        return x, onehot * lam + onehot.flip(0) * (1 - lam)
