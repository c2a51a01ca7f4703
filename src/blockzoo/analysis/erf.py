"""The effective receptive field (ERF) of a layer: how much each input pixel contributes to the central unit of the
layer's output.

Luo et al., "Understanding the Effective Receptive Field in Deep Convolutional Neural Networks", NIPS 2016, define it
as the gradient of the central output unit w.r.t. the input; the large-kernel papers compare backbones with it
(UniRepLKNet [S084, UNIREPLKNET], with the analysis RepLKNet introduced: the contribution map of the last stage
summed over validation images (50 in RepLKNet's script), and the "high-contribution area ratio": the smallest centred
square holding t = 20 / 30 / 50 / 99 % of the total contribution, as a fraction of the input area).

:func:`erf` computes the map ``E[h, w] = sum_images sum_channels |d y_c(center) / d x[h, w]|`` with ``y_c(center)``
the output of ``layer`` at its central position, summed over the output channels (Luo et al.'s unit gradient at the
centre), and :func:`erf_areas` the area ratios. Differences from the official RepLKNet / UniRepLKNet ERF scripts
(``erf/visualize_erf.py``, ``erf/analyze_erf.py``; read for the facts, not copied), available with
``official=True``: the central outputs go through a ReLU before summing and the input gradient through a ReLU
(negative contributions dropped) instead of ``|.|`` (the paper text speaks of contribution scores without saying
which). Both variants scale the map as ``log10(E + 1) / max`` before the area ratios (``log_scale=True``: as we read
the official analysis script, which takes the logarithm because the scores differ by orders of magnitude;
``log_scale=False`` uses the raw sums). Caveat: ``log10(E + 1)`` is not scale-invariant: where ``E`` is much
larger than 1 (many images, large gradients) the logarithm flattens the map and the ratios grow; where ``E`` is tiny
(e.g. a network whose residual branches start silent) it is linear. Compare models with the same images, and check
with ``log_scale=False`` (scale-invariant) before reading a difference between models of different gradient scale.
The official search starts at a 3x3 square and needs strictly more than ``t``; here the side runs 1, 3, 5, ... and
the first square holding at least ``t`` wins (the same numbers except at the boundaries). On an even-sized map the
centre is pixel ``(H // 2, W // 2)``, as there.

Gradients are taken in eval mode (BN uses its running statistics), on random or dataset images: the official scripts
use ImageNet validation images; at initialisation a normal batch is the usual stand-in.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.analysis.common import layer_output, resolve_layer, save_figure
from blockzoo.checks import check_positive
from blockzoo.errors import ConfigError

__all__ = ["THRESHOLDS", "ErfResult", "erf", "erf_map", "erf_areas", "plot_erf"]

THRESHOLDS = (0.2, 0.3, 0.5, 0.99)


@dataclass
class ErfResult:
    """An ERF: ``map`` ``(H, W)`` (the summed contributions over ``n_images``), the area ratios per threshold
    (``{t: {"side": s, "ratio": s * s / (H * W)}}``), the layer and its output size."""

    layer: str
    map: torch.Tensor
    areas: dict[float, dict[str, float]]
    n_images: int
    out_size: tuple[int, int]
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "n_images": self.n_images, "input_size": list(self.map.shape),
                "out_size": list(self.out_size), "areas": {str(t): v for t, v in self.areas.items()},
                **self.options}


def erf_map(model: nn.Module, images: torch.Tensor, module: nn.Module, *, official: bool = False,
            owner: str = "erf") -> tuple[torch.Tensor, tuple[int, int]]:
    """The summed contribution map ``(H, W)`` of ``images`` ``(B, C, H, W)`` to the central unit of ``module``'s
    output (a submodule of ``model``; an NCHW feature map), and that output's ``(h, w)``."""
    x = images.detach().clone().requires_grad_(True)
    out = layer_output(model, module, x, owner)
    if out.ndim != 4:
        raise ConfigError(f"{owner}: the layer's output has shape {tuple(out.shape)}, not an NCHW feature map; choose "
                          f"a convolutional stage (feature_info)")
    h, w = out.shape[-2:]
    centre = out[:, :, h // 2, w // 2]
    (grad,) = torch.autograd.grad((F.relu(centre) if official else centre).sum(), x)
    grad = F.relu(grad) if official else grad.abs()
    return grad.sum(dim=(0, 1)).detach(), (int(h), int(w))


def erf_areas(emap: torch.Tensor, thresholds: Sequence[float] = THRESHOLDS, *,
              log_scale: bool = True) -> dict[float, dict[str, float]]:
    """For each threshold ``t`` the smallest centred square (odd side ``s``) holding at least ``t`` of the map's
    total (after ``log10(E + 1) / max`` with ``log_scale``): ``{t: {"side": s, "ratio": s^2 / (H W)}}``."""
    for t in thresholds:
        if not 0 < t <= 1:
            raise ConfigError(f"erf_areas: thresholds must lie in (0, 1], got {t!r}")
    data = emap.double()
    if log_scale:
        data = torch.log10(data + 1)
        data = data / data.max().clamp_min(torch.finfo(data.dtype).tiny)
    total = data.sum()
    hgt, wid = data.shape
    cy, cx = hgt // 2, wid // 2
    sums = torch.stack([data[max(cy - r, 0):cy + r + 1, max(cx - r, 0):cx + r + 1].sum()
                        for r in range(max(hgt, wid) // 2 + 1)])
    fractions = sums / total if total > 0 else torch.ones_like(sums)
    res = {}
    for t in thresholds:   # the last square covers the whole map, so some side always holds t
        r = int(torch.nonzero(fractions >= t - 1e-12)[0, 0])
        side = 2 * r + 1
        res[float(t)] = {"side": side, "ratio": min(side, hgt) * min(side, wid) / (hgt * wid)}
    return res


def erf(model: nn.Module, images: torch.Tensor, layer: str | int | None = None, *, official: bool = False,
        log_scale: bool = True, thresholds: Sequence[float] = THRESHOLDS, batch_size: int = 16) -> ErfResult:
    """The ERF of ``layer`` (a ``feature_info`` name or index, any module name; default: the last stage) of
    ``model`` over ``images`` ``(N, C, H, W)`` (normalised as the model expects), summed over the images in
    batches of ``batch_size``; the area ratios by :func:`erf_areas`."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ConfigError("erf: images must be a float (N, C, H, W) tensor")
    check_positive(batch_size, "batch_size", owner="erf")
    name, module = resolve_layer(model, layer, "erf")
    total, out_size = None, (0, 0)
    for chunk in images.split(int(batch_size)):
        m, out_size = erf_map(model, chunk, module, official=official)
        total = m if total is None else total + m
    assert total is not None
    return ErfResult(name, total, erf_areas(total, thresholds, log_scale=log_scale), len(images), out_size,
                     {"official": official, "log_scale": log_scale})


def plot_erf(results: Sequence[tuple[str, ErfResult]], path: Any, title: str | None = None) -> Any:
    """A row of ERF heat maps (``log10(E + 1) / max``, as the papers draw them), each titled with its label and its
    area ratios; written atomically to ``path`` (PNG)."""
    from blockzoo.report.plot import pyplot

    plt = pyplot()
    n = len(results)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.6), constrained_layout=True, squeeze=False)
    for ax, (label, res) in zip(axes[0], results):
        data = torch.log10(res.map.double() + 1)
        data = data / data.max().clamp_min(1e-300)
        ax.imshow(data.numpy(), cmap="RdYlGn", vmin=0, vmax=1)
        ratios = ", ".join(f"{int(100 * t)}%:{v['ratio']:.3f}" for t, v in res.areas.items())
        ax.set_title(f"{label}\n{ratios}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
