"""What the analysis tools share: naming a layer, catching its output, building the model to analyse, writing
figures and JSON atomically.

Layers are named as the model names them: the ``module`` of an entry of ``feature_info`` (``"stages.2"``; also its
index, ``"2"``) or any name of ``model.named_modules()``. A wrong name is a :class:`ConfigError` listing the
feature-map names and how to see the others.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from blockzoo.errors import ConfigError
from blockzoo.files import atomic_write, atomic_write_text

__all__ = ["feature_layers", "resolve_layer", "layer_output", "load_target", "save_figure", "save_json"]


def feature_layers(model: nn.Module) -> list[str]:
    """The module names of ``model.feature_info`` (the stage outputs of a blockzoo backbone), in order; ``[]`` for
    a plain module."""
    info = getattr(model, "feature_info", None)
    return [f["module"] for f in info] if isinstance(info, (list, tuple)) else []


def resolve_layer(model: nn.Module, layer: str | int | None, owner: str) -> tuple[str, nn.Module]:
    """``(name, module)`` for ``layer``: a feature-map index or module name, any module name, or ``None`` for the
    last feature map (the last stage). Raises :class:`ConfigError` listing the valid names."""
    feats = feature_layers(model)
    modules = dict(model.named_modules())
    if layer is None:
        if not feats:
            raise ConfigError(f"{owner}: {type(model).__name__} has no feature_info; pass layer= one of its module "
                              f"names (model.named_modules())")
        layer = feats[-1]
    name = str(layer)
    if name.lstrip("-").isdigit() and feats and -len(feats) <= int(name) < len(feats):
        name = feats[int(name)]
    if name not in modules:   # "" = the model itself (its output)
        shown = feats or [n for n in modules if n][:20]
        raise ConfigError(f"{owner}: no layer {layer!r} in {type(model).__name__}; use a feature map "
                          f"({', '.join(shown)}) or another name of model.named_modules()")
    return name, modules[name]


class _Stop(Exception):
    """Raised by the capture hook so that the forward pass ends at the layer (nothing after it is computed)."""


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def layer_output(model: nn.Module, module: nn.Module, x: torch.Tensor, owner: str) -> torch.Tensor:
    """The output of ``module`` (a submodule of ``model``) for input ``x``: one eval-mode forward that stops at the
    module (the model's mode is restored); autograd is kept, so the result can be differentiated w.r.t. ``x``.
    Raises :class:`ConfigError` if the forward never reaches the module or its output is not a tensor."""
    out: list[Any] = []

    def hook(mod: nn.Module, args: Any, output: Any) -> None:
        out.append(output)
        raise _Stop

    handle = module.register_forward_hook(hook)
    try:
        with _eval_mode(model):
            model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not out or not isinstance(out[0], torch.Tensor):
        raise ConfigError(f"{owner}: the layer {type(module).__name__} " +
                          ("is not used in the model's forward" if not out else "does not return a tensor") +
                          "; choose another layer")
    return out[0]


def load_target(target: str | nn.Module, *, data: Any = None, **kw: Any) -> nn.Module:
    """The model to analyse: a module (returned as is), a checkpoint / weights path (rebuilt from the file alone
    with :func:`blockzoo.load_model`, the safe safetensors loader of ``blockzoo eval``), or a registered model name
    (built at initialisation, with the classes and channels of ``data`` (a :class:`blockzoo.data.Dataset`) when
    given, and ``kw``). Returns the model in eval mode."""
    if isinstance(target, nn.Module):
        return target.eval()
    if os.path.exists(target) or target.endswith(".safetensors"):
        from blockzoo.train import load_model
        return load_model(target)
    from blockzoo.registry import create_model
    if data is not None:
        kw = {"num_classes": data.num_classes, "in_chans": data.in_chans, **kw}
    return create_model(target, **kw).eval()


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write a matplotlib figure to ``path`` atomically (PNG) and close it."""
    from blockzoo.report.plot import pyplot
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    finally:
        pyplot().close(fig)
    return Path(path)


def save_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=1, default=float) + "\n")
    return Path(path)
