"""Batch augmentation with plain tensor ops (no torchvision): random crop with zero padding and horizontal flip, done
as one ``torch.gather`` per batch so that it runs at several 100k img/s on one CPU thread for 28 x 28 images.

The crop follows the usual CIFAR recipe (e.g. He et al. 2016, "Deep Residual Learning", Sec. 4.2: "4 pixels are
padded on each side, and a 32x32 crop is randomly sampled from the padded image or its horizontal flip").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["crop_flip", "random_crop_flip"]


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
