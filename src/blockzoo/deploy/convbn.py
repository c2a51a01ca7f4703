"""ConvBN modes: Train, Eval, Deploy and Tune for every conv -> BatchNorm pair of a model.

S069: Xiong et al., "Efficient ConvBN Blocks for Transfer Learning and Beyond", ICLR 2024, arXiv:2305.11624
(``papers.CONVBN_TUNE``). A conv followed by a BatchNorm can run in four modes:

- ``train``: the ordinary modules; the BN normalises with batch statistics in ``model.train()`` and updates its
  running statistics (this is also how the model is restored from ``eval`` / ``tune``).
- ``eval``: the BN always normalises with its frozen running statistics (whatever ``model.train()`` says), while the
  conv weight, ``gamma`` and ``beta`` still receive gradients: the stable transfer-learning mode of the paper.
- ``deploy``: the BN folded into the conv (``deploy.fuse_conv_bn``), the BN replaced by ``nn.Identity``; inference
  only and one-way (the BN parameters are gone), so convert a copy (``inplace=False``, the default for this mode).
- ``tune`` (the paper's proposal): each forward folds the frozen BN into the conv weight on the fly,
  ``w' = w * gamma / sqrt(running_var + eps)``, ``b' = (b - running_mean) * gamma / sqrt(running_var + eps) + beta``
  and runs one conv with ``(w', b')``; gradients flow to ``w``, ``gamma`` and ``beta`` through that expression. It
  computes the same function as ``eval`` mode (and the same gradients) but does not keep the conv's output for
  the BN's backward, which saves memory and time (the paper's claim; ``benchmarks/convbn_tune.py`` measures it).

The modes survive ``model.train()`` / ``model.eval()`` (they patch the instances' ``forward``, as MMCV's
``turn_on_fast_conv_bn_eval`` does, so parameter names and state dicts are unchanged in ``train``/``eval``/``tune``).

Pair detection (:func:`find_convbn_pairs`) is structural over the torch.fx graph of the model: a ``nn.Conv2d`` call
whose output feeds exactly one node, a ``nn.BatchNorm2d`` call with as many channels (this covers ``ConvNormAct``,
``ConvBN`` and any hand-written conv -> BN). Not covered: convs called through ``F.conv2d`` inside a custom module,
a BN with ``track_running_stats=False``, a conv or BN module called more than once (shared), and models torch.fx
cannot trace; for those, :func:`find_convbn_pairs` falls back to the ``ConvNormAct`` / ``ConvBN`` children. A model
without BatchNorm (ConvNeXt: LayerNorm) has no pairs and is left unchanged.
"""
from __future__ import annotations

import copy
import functools

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.checks import check_choice
from blockzoo.deploy.reparam import fuse_conv_bn
from blockzoo.errors import ConfigError

__all__ = ["CONVBN_MODES", "convbn_mode", "find_convbn_pairs", "folded_conv_params"]

CONVBN_MODES = ("train", "eval", "deploy", "tune")


def find_convbn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``[(conv_name, bn_name), ...]`` for every conv whose only consumer is a BatchNorm2d (module docstring)."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - untraceable model: the structural fallback below
        return _structural_pairs(model)
    mods = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(mods[node.target], nn.Conv2d) or len(node.users) != 1:
            continue
        user = next(iter(node.users))
        if user.op != "call_module" or calls[node.target] != 1 or calls[user.target] != 1:
            continue
        conv, bn = mods[node.target], mods[user.target]
        if isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels and bn.track_running_stats:
            pairs.append((node.target, user.target))
    return pairs


def _structural_pairs(model: nn.Module) -> list[tuple[str, str]]:
    pairs = []
    for name, m in model.named_modules():
        for c, b in (("conv", "norm"), ("c", "bn")):
            conv, bn = getattr(m, c, None), getattr(m, b, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                pairs.append((f"{name}.{c}".lstrip("."), f"{name}.{b}".lstrip(".")))
    return pairs


def folded_conv_params(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w', b')`` of the conv with the frozen BN folded in, differentiable in ``w``, ``b``, ``gamma``, ``beta``."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    shift = (bias - bn.running_mean) * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return conv.weight * scale.reshape(-1, 1, 1, 1), shift


def _tune_forward(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    w, b = folded_conv_params(conv, bn)
    return conv._conv_forward(x, w, b)


def _frozen_bn_forward(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _passthrough(x: torch.Tensor) -> torch.Tensor:
    return x


def _restore(*modules: nn.Module) -> None:
    for m in modules:
        m.__dict__.pop("forward", None)
        m.__dict__.pop("convbn_mode", None)


def convbn_mode(model: nn.Module, mode: str, *, inplace: bool | None = None) -> nn.Module:
    """Switch every conv -> BN pair of ``model`` to ``mode`` (one of :data:`CONVBN_MODES`) and return the model.

    ``inplace`` defaults to True for ``train``/``eval``/``tune`` (reversible: ``convbn_mode(m, "train")`` restores the
    ordinary modules) and to False for ``deploy`` (folding is one-way: a converted copy is returned). A model
    without pairs is returned unchanged; :func:`find_convbn_pairs` lists them.
    """
    check_choice(mode, "mode", CONVBN_MODES, owner="convbn_mode")
    inplace = mode != "deploy" if inplace is None else inplace
    if not inplace:
        model = copy.deepcopy(model)
    for conv_name, bn_name in find_convbn_pairs(model):
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        _restore(conv, bn)
        if mode == "eval":
            bn.forward = functools.partial(_frozen_bn_forward, bn)
        elif mode == "tune":
            conv.forward = functools.partial(_tune_forward, conv, bn)
            bn.forward = _passthrough
        elif mode == "deploy":
            with torch.no_grad():
                _set(model, conv_name, fuse_conv_bn(conv, bn))
            _set(model, bn_name, nn.Identity())
            continue
        if mode != "train":
            conv.__dict__["convbn_mode"] = bn.__dict__["convbn_mode"] = mode
    return model


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    if not child:
        raise ConfigError("convbn_mode cannot replace the model itself; pass a model that contains the conv")
    setattr(model.get_submodule(parent) if parent else model, child, module)
