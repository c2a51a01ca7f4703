"""Stochastic depth (Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016), in the per-sample form of timm /
ConvNeXt: :class:`DropPath` zeroes a whole residual branch of a sample; :func:`drop_path_schedule` spreads a network's
``drop_path_rate`` linearly over its blocks.

:class:`ScheduledDropPath` is NASNet's variant (Zoph et al., "Learning Transferable Architectures for Scalable Image
Recognition", CVPR 2018, Sec. 4.1): the drop probability also grows linearly over training. The module's rate is
``drop_prob * progress``; ``progress`` in [0, 1] is set from outside through ``set_drop_progress(progress)``, the
protocol :func:`blockzoo.train.train` drives (progress = global step / total steps, before every optimizer step, on
every module of the model that has the method). Nothing drives it outside the trainer: a module left alone keeps
``progress = 1`` (the full rate, a plain :class:`DropPath`)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from blockzoo.checks import check_positive
from blockzoo.errors import ConfigError

__all__ = ["DropPath", "ScheduledDropPath", "drop_path", "drop_path_schedule", "make_drop_path"]


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
        return drop_path(x, self.drop_prob, self.training, self.scale_by_keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.4f}"


def drop_path(x: torch.Tensor, drop_prob: float, training: bool = True, scale_by_keep: bool = True) -> torch.Tensor:
    """Zero each sample of ``x`` with probability ``drop_prob`` (``training`` only; kept samples scaled by
    ``1 / (1 - drop_prob)`` with ``scale_by_keep``): the per-sample mask of :class:`DropPath`."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    if scale_by_keep:
        mask.div_(keep)
    return x * mask


class ScheduledDropPath(DropPath):
    """NASNet's ScheduledDropPath: :class:`DropPath` at rate ``drop_prob * progress`` (see the module docstring);
    ``drop_prob`` is the rate at the end of training, ``progress`` starts at 1 until something sets it."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True):
        super().__init__(drop_prob, scale_by_keep)
        self.progress = 1.0

    def set_drop_progress(self, progress: float) -> None:
        """The fraction of training done, in [0, 1] (the trainer passes global step / total steps)."""
        if not 0.0 <= progress <= 1.0:
            raise ConfigError(f"ScheduledDropPath: progress must be in [0, 1] (the fraction of training done), got "
                              f"{progress}")
        self.progress = float(progress)

    @property
    def current_prob(self) -> float:
        """The drop probability now: ``drop_prob * progress``."""
        return self.drop_prob * self.progress

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.current_prob, self.training, self.scale_by_keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.4f}, progress={self.progress:.4f}"


def make_drop_path(drop_prob: float) -> nn.Module:
    """The residual branch's stochastic depth: :class:`DropPath` for a rate > 0, else ``nn.Identity`` (no module
    state either way, so state_dicts do not depend on the rate)."""
    return DropPath(drop_prob) if drop_prob > 0 else nn.Identity()
