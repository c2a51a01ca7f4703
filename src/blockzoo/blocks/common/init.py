"""Weight initialisation shared by the backbones: the "normal(0.02)" init of the official transformer-era code and the
hook by which blocks with a paper-specific init re-apply it after a backbone's generic init.

The contract: a backbone initialises all its weights generically first, then calls :func:`apply_block_inits`, which
calls ``init_weights()`` on every submodule (the root excluded) that defines it, in module order -- so a block's own
init (a zero-initialised output BN, a GPSA's locality init, a relative-position table) always wins.
"""
from __future__ import annotations

import torch.nn as nn

__all__ = ["apply_block_inits", "init_normal"]

_NORMS = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)


def apply_block_inits(model: nn.Module) -> None:
    """Call ``init_weights()`` on every submodule of ``model`` (not ``model`` itself) that defines it."""
    for m in model.modules():
        if m is not model and callable(getattr(m, "init_weights", None)):
            m.init_weights()


def init_normal(model: nn.Module, std: float = 0.02, *, trunc: bool = True, convs: bool = True) -> None:
    """Every Linear (and, with ``convs``, every Conv2d) weight ``(trunc_)normal(0, std)`` with zero bias, every
    BatchNorm2d / GroupNorm / LayerNorm with an affine (1, 0), in module order; then :func:`apply_block_inits`."""
    init = nn.init.trunc_normal_ if trunc else nn.init.normal_
    weighted = (nn.Conv2d, nn.Linear) if convs else (nn.Linear,)
    for m in model.modules():
        if isinstance(m, weighted):
            init(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORMS) and m.weight is not None:
            nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    apply_block_inits(model)
