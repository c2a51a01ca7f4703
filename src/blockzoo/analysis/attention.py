"""Attention maps, attention collapse and non-locality of a ViT-like model, with pictures.

Builds on :mod:`blockzoo.analysis.collapse` (DeepViT [S033, DEEPVIT]: the maps of every module with ``attn_map``
and the cross-layer similarity ``sim(l, l + k)`` of eq. 2) and :mod:`blockzoo.analysis.locality` (ConViT [S021,
CONVIT]: the attention-weighted patch distance per head); nothing is recomputed differently here.
:func:`attention_report` gathers the numbers per layer, :func:`plot_attention_maps` draws the per-layer, per-head
maps (rows: layers, columns: heads; each the ``(N, N)`` map of the first image, queries down, keys across) and
:func:`plot_attention_curves` the similarity curve and the mean non-locality per layer.
The recorded deep-ViT vs DeepViT collapse curves are ``benchmarks/attention_collapse.py`` ->
``benchmarks/results/attention_collapse.md``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from blockzoo.analysis.collapse import attention_maps, attention_similarity
from blockzoo.analysis.common import save_figure
from blockzoo.analysis.locality import model_nonlocality
from blockzoo.errors import ConfigError

__all__ = ["attention_report", "plot_attention_maps", "plot_attention_curves"]


def attention_report(model: nn.Module, x: torch.Tensor, k: int = 1) -> dict[str, Any]:
    """``{"layers", "heads", "similarity" (sim(l, l + k), length layers - k), "nonlocality" (per layer, per head,
    in patches), "mean_nonlocality" (per layer)}`` of a ViT-like ``model`` on batch ``x``. The non-locality needs
    the model's ``patch_embed`` (the token grid); without it the entry is ``None``."""
    maps = attention_maps(model, x)
    sim = attention_similarity(model, x, k=k).tolist() if len(maps) > k else []
    try:
        nonloc = [v.tolist() for v in model_nonlocality(model, x)]
    except ConfigError:   # no patch_embed to read the grid from
        nonloc = None
    return {"layers": len(maps), "heads": [int(m.shape[1]) for m in maps], "k": k, "similarity": sim,
            "nonlocality": nonloc,
            "mean_nonlocality": None if nonloc is None else [sum(h) / len(h) for h in nonloc]}


def plot_attention_maps(maps: list[torch.Tensor], path: Any, *, max_heads: int = 8, title: str | None = None) -> Any:
    """The maps ``(B, heads, N, N)`` of each layer (the first image; at most ``max_heads`` heads) as a grid of
    images; written atomically to ``path`` (PNG)."""
    from blockzoo.report.plot import pyplot

    if not maps:
        raise ConfigError("plot_attention_maps: no attention maps to draw")
    plt = pyplot()
    rows, cols = len(maps), min(max(int(m.shape[1]) for m in maps), max_heads)
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols + 0.6, 1.4 * rows + 0.4), squeeze=False,
                             constrained_layout=True)
    for layer, m in enumerate(maps):
        for head in range(cols):
            ax = axes[layer][head]
            ax.set_xticks([])
            ax.set_yticks([])
            if head < m.shape[1]:
                ax.imshow(m[0, head].float().numpy(), cmap="magma")
            if head == 0:
                ax.set_ylabel(f"layer {layer}", fontsize=7)
            if layer == 0:
                ax.set_title(f"head {head}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def plot_attention_curves(report: dict[str, Any], path: Any, title: str | None = None) -> Any:
    """The similarity curve ``sim(l, l + k)`` and the mean non-locality per layer of an :func:`attention_report`;
    written atomically to ``path`` (PNG)."""
    from blockzoo.report.plot import pyplot

    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    a1.plot(range(len(report["similarity"])), report["similarity"], marker=".")
    a1.set(xlabel="layer l", ylabel=f"similarity of l and l+{report['k']}", ylim=(0, 1.02),
           title="cross-layer attention similarity (DeepViT eq. 2)")
    if report["mean_nonlocality"] is not None:
        a2.plot(range(report["layers"]), report["mean_nonlocality"], marker=".")
    a2.set(xlabel="layer", ylabel="mean non-locality (patches)", title="non-locality (ConViT)")
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
