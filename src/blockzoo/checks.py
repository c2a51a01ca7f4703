"""Argument and input checks shared by every block and model: one clear :mod:`blockzoo.errors` error each.

Option checks (``check_int``, ``check_positive``, ``check_choice``, ``check_odd``) run when a block or model is
built. Input checks (``check_input``) run at forward time and are skipped while ``torch.fx`` traces or
``torch.compile`` / ``torch.export`` compile the module, so they never break a traced or exported graph (the shapes
are symbolic there; the exported program checks its own input specs).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from blockzoo.errors import ConfigError, InputShapeError

__all__ = ["tracing", "check_int", "check_counts", "check_positive", "check_choice", "check_odd", "check_input"]


def tracing() -> bool:
    """True while torch.fx symbolic tracing, torch.compile / torch.export or the TorchScript tracer (the ONNX
    exporter's) is running (shapes are symbolic)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return True
    from torch.fx import _symbolic_trace as fx
    probe = getattr(fx, "is_fx_symbolic_tracing", None) or getattr(fx, "is_fx_tracing", None)
    return bool(probe()) if probe is not None else False


def _where(owner: str) -> str:
    return f"{owner}: " if owner else ""


def check_int(value: Any, name: str, *, min_value: int | None = None, owner: str = "") -> int:
    """``value`` must be an ``int`` (not a bool or a float) ``>= min_value``; returns it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{_where(owner)}{name} must be an integer"
                          + (f" >= {min_value}" if min_value is not None else "") + f", got {value!r}")
    if min_value is not None and value < min_value:
        raise ConfigError(f"{_where(owner)}{name} must be an integer >= {min_value}, got {value!r}")
    return value


def check_counts(owner: str, **values: Any) -> None:
    """Each keyword's value must be an integer >= 1 (:func:`check_int`), checked in the order given: a conv unit's
    ``in_channels``, ``out_channels``, ``stride``, ``groups`` ..."""
    for name, value in values.items():
        check_int(value, name, min_value=1, owner=owner)


def check_positive(value: Any, name: str, *, allow_zero: bool = False, owner: str = "") -> float:
    """``value`` must be a finite real number ``> 0`` (``>= 0`` with ``allow_zero``); returns it."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and (value >= 0 if allow_zero else value > 0))
    if not ok:
        raise ConfigError(f"{_where(owner)}{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, "
                          f"got {value!r}")
    return value


def check_choice(value: Any, name: str, choices: Iterable[Any], *, owner: str = "") -> Any:
    """``value`` must be one of ``choices``; returns it."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{_where(owner)}{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_odd(value: Any, name: str, *, owner: str = "") -> int:
    """``value`` must be a positive odd integer (a kernel size with 'same' padding); returns it."""
    check_int(value, name, min_value=1, owner=owner)
    if value % 2 == 0:
        raise ConfigError(f"{_where(owner)}{name} must be odd (a 'same'-padded kernel), got {value}; "
                          f"use {value - 1} or {value + 1}")
    return value


def check_groups(in_channels: int, out_channels: int, groups: int, *, owner: str) -> None:
    """A grouped conv's ``groups`` must divide both channel counts (checked positive integers)."""
    if in_channels % groups or out_channels % groups:
        raise ConfigError(f"{owner}: in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                          f"divisible by groups ({groups}); pick groups that divide both")


def check_input(x: Any, owner: str, *, ndim: int = 4, channels: int | None = None, min_size: int = 1) -> None:
    """At forward time: ``x`` is a tensor of rank ``ndim`` (NCHW for 4), with ``channels`` channels (dim 1) and
    spatial dims >= ``min_size``. Raises :class:`InputShapeError` naming ``owner`` and the fix; a no-op while
    tracing/compiling."""
    if tracing():
        return
    if not isinstance(x, torch.Tensor):
        raise InputShapeError(f"{owner} expects a torch.Tensor, got {type(x).__name__}")
    if x.ndim != ndim:
        layout = {4: "an NCHW batch (4-D tensor)", 3: "an (N, L, C) batch (3-D tensor)", 2: "an (N, C) batch"}
        hint = "; add a batch dimension with x.unsqueeze(0)" if x.ndim == ndim - 1 else ""
        raise InputShapeError(f"{owner} expects {layout.get(ndim, f'a {ndim}-D tensor')}, got shape "
                              f"{tuple(x.shape)}{hint}")
    if channels is not None and x.shape[1] != channels:
        raise InputShapeError(f"{owner} was built for {channels} channels but got {x.shape[1]} "
                              f"(input shape {tuple(x.shape)})")
    if ndim == 4 and min(x.shape[-2:]) < min_size:
        raise InputShapeError(f"{owner} needs inputs of at least {min_size}x{min_size} pixels, got "
                              f"{x.shape[-2]}x{x.shape[-1]}")
    if not x.is_floating_point():
        raise InputShapeError(f"{owner} expects a floating-point tensor, got {x.dtype}; convert with x.float()")
