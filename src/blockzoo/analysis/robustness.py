"""Accuracy under common corruptions of the test set: Gaussian noise, Gaussian blur, contrast and brightness.

Several papers claim robustness to corruptions (IBN-Net [S052], the GCP paper [S002]); the standard protocol is
Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and Perturbations", ICLR 2019
(ImageNet-C / CIFAR-10-C: 5 severities per corruption). The corruptions are applied here on the fly to the images on
the 0..1 scale (then clipped and normalised as the loader does), so any dataset works:

* ``gaussian_noise``: ``x + N(0, c^2)``, ``c`` = 0.04, 0.06, 0.08, 0.09, 0.10;
* ``gaussian_blur``: a Gaussian filter of standard deviation ``c`` = 0.4, 0.6, 0.7, 0.8, 1.0 pixels (reflect
  padding, kernel radius ``ceil(3c)``);
* ``contrast``: ``(x - mean) c + mean`` with the per-image mean, ``c`` = 0.75, 0.5, 0.4, 0.3, 0.15;
* ``brightness``: ``x + c``, ``c`` = 0.05, 0.1, 0.15, 0.2, 0.3 (the benchmark adds ``c`` to the V channel of HSV,
  i.e. to ``max(R, G, B)`` with the hue and saturation kept: for grayscale images that is exactly ``x + c``; for
  colour images this adds ``c`` to every channel, a simplification).

The severities are the CIFAR-10-C values as we remember them from the benchmark's generation code (meant for 32-px
images, so they suit Fashion-MNIST and CIFAR); we could not re-read that code here, so treat them as close to, not
certainly equal to, the benchmark's. The noise is drawn from ``seed``.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.checks import check_choice, check_int
from blockzoo.errors import ConfigError

__all__ = ["SEVERITIES", "corrupt", "robustness"]

SEVERITIES: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
}


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def corrupt(x: torch.Tensor, name: str, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Corrupt images ``x`` ``(B, C, H, W)`` on the 0..1 scale with corruption ``name`` at ``severity`` 1..5;
    returns a new tensor clipped to [0, 1]."""
    check_choice(name, "corruption", SEVERITIES, owner="corrupt")
    check_int(severity, "severity", min_value=1, owner="corrupt")
    if severity > len(SEVERITIES[name]):
        raise ConfigError(f"corrupt: severity must be 1..{len(SEVERITIES[name])}, got {severity}")
    c = SEVERITIES[name][severity - 1]
    if name == "gaussian_noise":
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        out = x + c * noise
    elif name == "gaussian_blur":
        out = _blur(x, c)
    elif name == "brightness":
        out = x + c
    else:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        out = (x - mean) * c + mean
    return out.clamp(0, 1)


@torch.no_grad()
def robustness(model: nn.Module, dataset: Any, *, corruptions: tuple[str, ...] = tuple(SEVERITIES),
               severities: tuple[int, ...] = (1, 3, 5), batch_size: int = 256, seed: int = 0,
               device: str | torch.device = "cpu") -> dict[str, Any]:
    """Test accuracy of ``model`` on ``dataset`` (a :class:`blockzoo.data.Dataset`, e.g. a test split) clean and
    under each corruption at each severity. Returns ``{"clean": acc, "corrupted": {name: {severity: acc}},
    "mean_corrupted": acc, "relative": mean_corrupted / clean, "n": images}``."""
    from blockzoo.data import Loader

    for name in corruptions:
        check_choice(name, "corruption", SEVERITIES, owner="robustness")
    loader = Loader(dataset, batch_size, train=False, device=device)
    model = model.to(device).eval()
    gen = torch.Generator().manual_seed(seed)

    def accuracy(transform: Any) -> float:
        correct = n = 0
        for x, y in loader:
            x = loader.normalize(transform(loader.denormalize(x)) * 255.0) if transform else x
            correct += int((model(x).argmax(dim=1) == y).sum())
            n += len(y)
        return correct / n

    clean = accuracy(None)
    table = {name: {int(s): accuracy(lambda v, name=name, s=s: corrupt(v, name, s, gen)) for s in severities}
             for name in corruptions}
    accs = [a for row in table.values() for a in row.values()]
    mean = sum(accs) / len(accs) if accs else clean
    return {"clean": clean, "corrupted": table, "mean_corrupted": mean, "relative": mean / clean if clean else None,
            "n": len(dataset), "severities": list(severities), "seed": seed}
