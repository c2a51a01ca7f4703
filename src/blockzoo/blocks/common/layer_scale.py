"""Layer scale (Touvron et al., "Going deeper with Image Transformers", ICCV 2021; ConvNeXt): a learnable per-channel
scale on a residual branch, initialised small."""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["LayerScale", "layer_scale"]


class LayerScale(nn.Module):
    """Per-channel learnable scale ``gamma`` (shape ``(C,)``, initialised to ``init_value``) on an NCHW tensor."""

    def __init__(self, dim: int, init_value: float = 1e-6):
        super().__init__()
        self.init_value = float(init_value)
        self.gamma = nn.Parameter(torch.full((dim,), self.init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1)

    def init_weights(self) -> None:
        nn.init.constant_(self.gamma, self.init_value)

    def extra_repr(self) -> str:
        return f"dim={self.gamma.numel()}, init_value={self.init_value:g}"


def layer_scale(dim: int, init_value: float | None) -> nn.Module:
    """:class:`LayerScale` with ``init_value``, or the identity when ``init_value`` is ``None`` (no layer scale)."""
    return nn.Identity() if init_value is None else LayerScale(dim, init_value)
