"""The attention-collapse probe of DeepViT: how similar the attention maps of nearby layers are.

Zhou et al., "DeepViT: Towards Deeper Vision Transformer", arXiv:2103.11886 [S033, DEEPVIT], eq. 2: the similarity
of the attention maps ``A^p``, ``A^q`` (``(heads, N, N)``, rows = queries) of layers ``p`` and ``q`` is the cosine
similarity of their columns, per head ``h`` and token ``t``: ``M^{p,q}_{h,t} = <A^p_{h,:,t}, A^q_{h,:,t}> /
(||A^p_{h,:,t}|| ||A^q_{h,:,t}||)``, averaged here over heads, tokens and the batch; in deep ViTs it approaches 1 in
the top layers ("attention collapse") and re-attention keeps it lower.

:func:`attention_maps` records the maps of any ViT-like blockzoo model: every submodule with an ``attn_map(x)``
method (the token-attention contract of :mod:`blockzoo.blocks.common.transformer`: ViT's ``Attention``, DeepViT's
``ReAttention``, ConViT's GPSA ...) in module order, from the input it gets in one eval-mode forward.
:func:`attention_similarity` turns them into the per-layer curve ``sim(l, l + k)``. Layers with different token
counts (ConViT's class token joins after its GPSA layers) are compared on their last (patch) tokens.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.checks import check_int
from blockzoo.errors import ConfigError

__all__ = ["attention_maps", "map_similarity", "attention_similarity"]


@torch.no_grad()
def attention_maps(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The attention maps ``(B, heads, N, N)`` of every attention module of ``model`` (those with ``attn_map``) for
    input ``x``, in module order (one forward in eval mode; the model's mode is restored)."""
    mods = [m for m in model.modules() if callable(getattr(m, "attn_map", None))]
    if not mods:
        raise ConfigError(f"{type(model).__name__} has no attention module with attn_map(x) (a ViT-like blockzoo "
                          f"model: vit_*, deit_*, deepvit_*, convit_* ...)")
    inputs: dict[int, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, i=i: inputs.__setitem__(i, args[0]))
             for i, m in enumerate(mods)]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return [m.attn_map(inputs[i]) for i, m in enumerate(mods) if i in inputs]


def map_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """DeepViT's eq. 2 averaged: the mean cosine similarity of the columns ``a[..., :, t]``, ``b[..., :, t]`` of two
    attention maps ``(B, heads, N, N)`` (compared on their last ``min(N)`` tokens)."""
    n = min(a.shape[-1], b.shape[-1])
    a, b = a[..., -n:, -n:], b[..., -n:, -n:]
    return F.cosine_similarity(a, b, dim=-2).mean()


def attention_similarity(model: nn.Module, x: torch.Tensor, k: int = 1) -> torch.Tensor:
    """The cross-layer similarity curve: ``sim(l, l + k)`` for ``l = 0 .. L - k - 1`` over the ``L`` attention layers
    of ``model`` on batch ``x`` (a float tensor of length ``L - k``; 1 = the two layers attend identically)."""
    check_int(k, "k", min_value=1, owner="attention_similarity")
    maps = attention_maps(model, x)
    if len(maps) <= k:
        raise ConfigError(f"attention_similarity: the model has {len(maps)} attention layers; k={k} needs at least "
                          f"{k + 1}")
    return torch.stack([map_similarity(maps[i], maps[i + k]) for i in range(len(maps) - k)])
