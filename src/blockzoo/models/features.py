"""Feature extraction as in timm: ``create_model(name, features_only=True, out_indices=...)``.

Every backbone declares its feature maps while it builds (:meth:`blockzoo.models.base.Backbone.add_feature`):
``model.feature_info`` is timm's list of ``dict(num_chs=, reduction=, module=)`` and
``model.forward_intermediates(x, indices=...)`` returns them. :class:`FeatureListNet` wraps a backbone for dense
prediction code (detection, segmentation): its ``forward`` returns the list of feature maps at ``out_indices``, its
``feature_info`` is a :class:`FeatureInfo` with timm's ``channels()`` / ``reduction()`` / ``module_name()``, and the
layers no requested map needs (later stages, the final modules, the pooling head and classifier) are removed.
This module registers nothing.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from blockzoo.errors import ConfigError

__all__ = ["FeatureInfo", "FeatureListNet"]


class FeatureInfo:
    """The feature maps ``out_indices`` of a backbone's ``feature_info`` (timm's ``FeatureInfo``): ``channels()``,
    ``reduction()``, ``module_name()`` (all of them, or the ``idx``-th of the selected ones), ``get_dicts()``."""

    def __init__(self, feature_info: Sequence[dict[str, Any]], out_indices: Sequence[int]):
        self.info = [dict(feature_info[i]) for i in out_indices]
        self.out_indices = tuple(out_indices)

    def get(self, key: str, idx: int | Sequence[int] | None = None) -> Any:
        if idx is None:
            return [f[key] for f in self.info]
        if isinstance(idx, int):
            return self.info[idx][key]
        return [self.info[i][key] for i in idx]

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("module", idx)

    def get_dicts(self) -> list[dict[str, Any]]:
        return [dict(f) for f in self.info]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.info[i]

    def __len__(self) -> int:
        return len(self.info)

    def __repr__(self) -> str:
        return f"FeatureInfo({self.info})"


class FeatureListNet(nn.Module):
    """A backbone that returns its feature maps at ``out_indices`` (indices of ``model.feature_info``; default all;
    an int n takes the last n, as in timm), pruned of what those maps do not need. The backbone is ``self.model``
    (state-dict keys ``model.<...>``); load weights into it before wrapping (``create_model(...,
    checkpoint_path=...)`` does)."""

    def __init__(self, model: nn.Module, out_indices: int | Sequence[int] | None = None):
        super().__init__()
        if not callable(getattr(model, "forward_intermediates", None)) or not getattr(model, "feature_info", None):
            raise ConfigError(f"{type(model).__name__} has no feature maps (forward_intermediates / feature_info); "
                              f"features_only needs a blockzoo backbone")
        take = model.prune_intermediate_layers(out_indices, prune_norm=False, prune_head=True)
        self.model = model
        self.out_indices = tuple(take)
        self.feature_info = FeatureInfo(model.feature_info, take)
        self.model_name = getattr(model, "model_name", type(model).__name__)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_intermediates(x, indices=list(self.out_indices), intermediates_only=True)

    def extra_repr(self) -> str:
        return f"out_indices={self.out_indices}"
