"""Stochastic depth (Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016), in the per-sample form of timm /
ConvNeXt: :class:`DropPath` zeroes a whole residual branch of a sample; :func:`drop_path_schedule` spreads a network's
``drop_path_rate`` linearly over its blocks."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from blockzoo.checks import check_positive
from blockzoo.errors import ConfigError

__all__ = ["DropPath", "drop_path_schedule", "make_drop_path"]


def drop_path_schedule(depths: Sequence[int], drop_path_rate: float) -> list[float]:
    """Per-block stochastic-depth rates, linear over all blocks: ``linspace(0, rate, sum(depths))``."""
    n = sum(depths)
    if n == 1:
        return [0.0]
    return [drop_path_rate * k / (n - 1) for k in range(n)]


class DropPath(nn.Module):
    """Stochastic depth: zero the whole residual branch of a sample with probability ``drop_prob`` (training only);
    kept samples are scaled by ``1 / (1 - drop_prob)`` so the expectation is unchanged."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True):
        super().__init__()
        check_positive(drop_prob, "drop_prob", allow_zero=True, owner="DropPath")
        if drop_prob >= 1.0:
            raise ConfigError(f"DropPath: drop_prob must be in [0, 1) (the probability of dropping the branch), got "
                              f"{drop_prob}")
        self.drop_prob, self.scale_by_keep = float(drop_prob), scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        if self.scale_by_keep:
            mask.div_(keep)
        return x * mask

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.4f}"


def make_drop_path(drop_prob: float) -> nn.Module:
    """The residual branch's stochastic depth: :class:`DropPath` for a rate > 0, else ``nn.Identity`` (no module
    state either way, so state_dicts do not depend on the rate)."""
    return DropPath(drop_prob) if drop_prob > 0 else nn.Identity()
