"""The non-locality of attention heads (d'Ascoli et al., "ConViT", ICML 2021, arXiv:2103.10697 [S021]).

The paper measures how far each head looks as the attention-weighted distance between query and key patches,
averaged over the queries (official ``get_attention_map``: ``einsum('nm,hnm->h', distances, attn) / N`` on the
batch-averaged map)::

    D_h = 1/L sum_q sum_k A_h[q, k] ||delta_qk||

with ``||delta_qk||`` the Euclidean distance between the two patches on the token grid, in patches. A head that
attends only to its own patch has non-locality 0, a uniform head the mean distance between two patches of the grid;
a convolution-like GPSA head at its local init sits near the length of its offset.

Prefix tokens (class / distillation token): maps of ``prefix + H*W`` tokens are reduced to the patch queries and patch
keys, each row renormalised over the patch keys (the distance of a class token is undefined). The official code
assumes a square grid and no class token; here any ``H x W`` grid works (:func:`blockzoo.blocks.mixers.gpsa.
relative_indices`).

:func:`nonlocality` works on attention maps (e.g. ``block.attn.attn_map(x)`` of a GPSA mixer in a MetaFormer stage,
on that stage's grid); :func:`model_nonlocality` runs a ViT-like model on a batch and measures every attention layer
in it (every submodule with an ``attn_map`` method, the token-attention contract of
:mod:`blockzoo.blocks.common.transformer`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from blockzoo.analysis.collapse import attention_maps
from blockzoo.blocks.mixers.gpsa import relative_indices
from blockzoo.errors import ConfigError

__all__ = ["patch_distances", "nonlocality", "model_nonlocality"]


def patch_distances(grid: Sequence[int], device=None, dtype=torch.float32) -> torch.Tensor:
    """``(N, N)`` Euclidean distances between the ``N = H * W`` patches of an ``H x W`` grid (row-major order)."""
    h, w = grid
    return relative_indices(h, w, device=device, dtype=dtype)[..., 2].sqrt()


def nonlocality(attn: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """The non-locality of each head: ``attn`` is ``(..., heads, N, N)`` (rows sum to 1; leading dims such as the
    batch are averaged), ``grid`` the ``(H, W)`` patch grid; ``N - H * W`` leading tokens are prefix tokens (dropped,
    rows renormalised over the patch keys). Returns ``(heads,)``, in patches."""
    h, w = (int(v) for v in grid)
    patches = h * w
    if attn.ndim < 3 or attn.shape[-1] != attn.shape[-2] or attn.shape[-1] < patches:
        raise ConfigError(f"nonlocality needs attention maps (..., heads, N, N) with N >= H * W = {patches} tokens "
                          f"for the {h}x{w} grid, got shape {tuple(attn.shape)}; pass the grid the map was made on")
    prefix = attn.shape[-1] - patches
    a = attn[..., prefix:, prefix:].float()
    a = a / a.sum(dim=-1, keepdim=True)
    per_query = (a * patch_distances((h, w), device=a.device)).sum(dim=-1)   # (..., heads, L)
    return per_query.mean(dim=-1).reshape(-1, attn.shape[-3]).mean(dim=0)


def model_nonlocality(model: nn.Module, x: torch.Tensor, grid: Sequence[int] | None = None) -> list[torch.Tensor]:
    """The ``(heads,)`` non-locality of every attention layer of a ViT-like ``model`` on the batch ``x``, in module
    order (the maps of :func:`blockzoo.analysis.collapse.attention_maps`: one eval-mode forward, the model's mode
    restored), on ``grid``: by default the patch grid of the model's ``patch_embed`` for this input (a layer with
    prefix tokens -- ConViT's after its GPSA layers, every ViT layer -- is measured on its patch tokens)."""
    if grid is None:
        embed = getattr(model, "patch_embed", None)
        if not callable(getattr(embed, "out_size", None)):
            raise ConfigError(f"{type(model).__name__} has no patch_embed to read the token grid from; pass "
                              f"grid=(H, W)")
        grid = embed.out_size(tuple(x.shape[-2:]))
    return [nonlocality(a, grid) for a in attention_maps(model, x)]
