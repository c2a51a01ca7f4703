"""Eigen-CAM: a class activation map from the first principal component of a layer's activations, without
gradients or class scores.

Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components", IJCNN 2020, arXiv:2008.00299
[S088, EIGENCAM]: the activations ``O`` of a convolutional layer for one image, as the ``(HW, C)`` matrix (one row per
position), are factorised ``O = U S V^T``; the map is the projection on the first right singular vector,
``L = O V_1``, reshaped to ``(H, W)`` and upsampled to the image.

Centring: the paper's formulation factorises ``O`` as it is (no mean subtraction; we could read its equations only
in secondary summaries, not its full text or code, so this default is our reading), so ``V_1`` is the dominant
direction of the raw activations (for post-ReLU activations a direction of one sign). The widely used implementation
(pytorch-grad-cam's ``get_2d_projection``; read for the facts) subtracts the per-channel mean over the positions
first, i.e. a true PCA: ``center=True``.
Sign: a singular vector is defined up to its sign; we choose it so that the map correlates non-negatively with the
channel-summed activation ``sum_c O[:, c]`` (uncentred: so that the map is mostly positive where the layer is
active). The overlay (:func:`plot_eigencam`) shows ``max(L, 0)`` scaled to [0, 1], as the reference implementation.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.analysis.common import layer_output, resolve_layer, save_figure
from blockzoo.errors import ConfigError

__all__ = ["eigen_projection", "eigencam", "plot_eigencam"]


def eigen_projection(acts: torch.Tensor, *, center: bool = False) -> torch.Tensor:
    """Eigen-CAM of activations ``(B, C, H, W)``: per image the projection ``O V_1`` of the ``(HW, C)`` matrix on
    its first right singular vector (``center``: after subtracting the mean over positions), signed as the module
    docstring says. Returns ``(B, H, W)``."""
    if acts.ndim != 4:
        raise ConfigError(f"eigen_projection needs (B, C, H, W) activations, got shape {tuple(acts.shape)}")
    b, c, h, w = acts.shape
    o = acts.detach().double().flatten(2).transpose(1, 2)        # (B, HW, C)
    if center:
        o = o - o.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(o, full_matrices=False)
    proj = o @ vh[:, 0, :].unsqueeze(-1)                          # (B, HW, 1)
    ref = acts.detach().double().flatten(2).sum(dim=1).unsqueeze(-1)  # channel sum (B, HW, 1)
    ref = ref - ref.mean(dim=1, keepdim=True)
    sign = torch.where((proj * ref).sum(dim=(1, 2)) < 0, -1.0, 1.0).to(proj.dtype)
    return (proj.squeeze(-1) * sign[:, None]).reshape(b, h, w).to(acts.dtype)


@torch.no_grad()
def eigencam(model: nn.Module, images: torch.Tensor, layer: str | int | None = None, *,
             center: bool = False) -> tuple[str, torch.Tensor]:
    """``(layer name, maps (N, h, w))``: the Eigen-CAM of ``layer`` (a ``feature_info`` name or index, any module
    name; default: the last stage) for each image of ``images`` ``(N, C, H, W)``; one eval-mode forward, no
    gradients."""
    name, module = resolve_layer(model, layer, "eigencam")
    acts = layer_output(model, module, images, "eigencam")
    if acts.ndim != 4:
        raise ConfigError(f"eigencam: the layer {name!r} returns shape {tuple(acts.shape)}, not an NCHW feature map; "
                          f"choose a convolutional stage (feature_info)")
    return name, eigen_projection(acts, center=center)


def plot_eigencam(images: torch.Tensor, maps: torch.Tensor, path: Any, *, title: str | None = None,
                  cols: int = 8) -> Any:
    """A grid of overlays: each image (``(N, C, H, W)`` on the 0..1 scale; the first channel or RGB) with its map
    (``max(L, 0)`` scaled to [0, 1], bilinearly upsampled) on top; written atomically to ``path`` (PNG)."""
    from blockzoo.report.plot import pyplot

    plt = pyplot()
    n = len(images)
    up = F.interpolate(maps.float().clamp_min(0).unsqueeze(1), size=images.shape[-2:], mode="bilinear",
                       align_corners=False).squeeze(1)
    up = up / up.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    cols = min(cols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + 0.4), squeeze=False,
                             constrained_layout=True)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i]
        ax.imshow(img[0].numpy() if img.shape[0] != 3 else img.permute(1, 2, 0).numpy(), cmap="gray")
        ax.imshow(up[i].numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
