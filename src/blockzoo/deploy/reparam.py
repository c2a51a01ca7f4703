"""Structural re-parameterisation for deployment: fold BatchNorms into convs, merge parallel branches.

Structural re-parameterisation (RepVGG, RepLKNet, UniRepLKNet [S016/S084: Ding et al., "UniRepLKNet: A Universal
Perception Large-Kernel ConvNet for Audio, Video, Point Cloud, Time-Series and Image Recognition", CVPR 2024,
arXiv:2311.15599]) trains a multi-branch block and converts it, after training, into a single-branch block that
computes *the same function in eval mode* but runs faster. BatchNorm is folded with its running statistics, so the
converted model equals the original **in eval mode only** (in train mode the original would normalise with batch
statistics). Convert trained models, then evaluate them with ``model.eval()``.

The protocol (one walker for every family)
------------------------------------------
:func:`reparameterize(model, inplace=False) <reparameterize>` walks ``model`` top-down and converts every module
that has one of two hooks (the root included):

- ``fuse() -> nn.Module``: returns a **replacement** module (e.g. ``ConvBN.fuse()`` -> one biased ``nn.Conv2d``);
  the walker swaps it into the parent (or returns it, for the root) and then walks the replacement.
- ``reparameterize() -> None``: converts the module **in place** (e.g. a block folding its BN into the conv before
  it); the walker then visits its (then current) children, so a parent may replace them first.

Both hooks must be idempotent (a converted module's ``fuse()`` returns ``self`` or it has no hook; a second
``reparameterize()`` is a no-op) and should keep the module's device and dtype (fold in float64 with
:func:`fuse_conv_bn` / :func:`bn_scale_shift` and cast back); the walker casts the converted model back to the
original's dtype in any case, so a float64 or bfloat16 model stays one. By default the walker converts a deep copy
and returns it, like timm's ``reparameterize_model``; ``inplace=True`` converts ``model`` itself (and returns it, or
the root's replacement). Blocks and models implement hooks only; they do not walk their children themselves.

Helpers: :func:`fuse_conv_bn(conv, bn) <fuse_conv_bn>` returns a new ``nn.Conv2d`` (with bias) equal to
``bn(conv(x))`` in eval mode, any stride / padding / dilation / groups; :func:`bn_scale_shift` gives the
per-channel affine map ``bn(x) = scale * x + shift`` of an eval-mode BatchNorm, for folding into other layers (a
Linear after a BatchNorm1d, a 1x1 conv after a BatchNorm2d).

Folding: with ``s = gamma / sqrt(running_var + eps)``, ``W' = W * s`` (per output channel) and
``b' = (b - running_mean) * s + beta``. Computed in float64 and cast back to the conv's dtype.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

__all__ = ["reparameterize", "fuse_conv_bn", "fuse_bn_linear", "bn_scale_shift"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def bn_scale_shift(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` in float64 such that ``bn(x) == scale * x + shift`` per channel in eval mode."""
    if not isinstance(bn, _BN):
        raise TypeError(f"bn_scale_shift expects a BatchNorm layer, got {type(bn).__name__}")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics (track_running_stats=False): its eval "
                         "output depends on the batch. Build it with track_running_stats=True to re-parameterise.")
    var, mean = bn.running_var.detach().double(), bn.running_mean.detach().double()
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    shift = -mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach().double()
    return scale, shift


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
    """A new ``nn.Conv2d`` with bias computing ``bn(conv(x))`` (eval-mode BN); the inputs are not modified.

    Keeps the conv's geometry (kernel, stride, padding, dilation, groups, padding mode), device and dtype.
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"fuse_conv_bn expects an nn.Conv2d, got {type(conv).__name__}")
    if not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(f"fuse_conv_bn expects an nn.BatchNorm2d after the conv, got {type(bn).__name__}; only "
                        f"BatchNorm (an affine map in eval mode) can be folded into a conv")
    if bn.num_features != conv.out_channels:
        raise ValueError(f"BatchNorm has {bn.num_features} channels but the conv outputs {conv.out_channels}")
    scale, shift = bn_scale_shift(bn)
    w = conv.weight.detach()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(scale)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
                      device=w.device, dtype=w.dtype)
    with torch.no_grad():
        fused.weight.copy_((w.double() * scale.view(-1, 1, 1, 1)).to(w.dtype))
        fused.bias.copy_((b * scale + shift).to(w.dtype))
    fused.train(conv.training)
    return fused


def fuse_bn_linear(bn: nn.Module, linear: nn.Linear) -> nn.Linear:
    """A new ``nn.Linear`` (with bias) computing ``linear(bn(x))`` for an eval-mode BatchNorm1d on ``(N, F)`` inputs
    (e.g. LSNet's head); same device and dtype, the inputs are not modified."""
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"fuse_bn_linear expects an nn.Linear after the BatchNorm, got {type(linear).__name__}")
    scale, shift = bn_scale_shift(bn)
    w = linear.weight.detach()
    b = linear.bias.detach().double() if linear.bias is not None else w.new_zeros(linear.out_features).double()
    fused = nn.Linear(linear.in_features, linear.out_features, bias=True, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        fused.weight.copy_((w.double() * scale[None, :]).to(w.dtype))
        fused.bias.copy_((b + w.double() @ shift).to(w.dtype))
    fused.train(linear.training)
    return fused


def reparameterize(model: nn.Module, inplace: bool = False) -> nn.Module:
    """The deploy form of ``model``: every ``fuse()`` / ``reparameterize()`` hook applied, top-down (see the module
    docstring). Returns a converted deep copy (``inplace=False``, the default) or converts ``model`` itself. The
    result matches the original in eval mode (BatchNorms are folded with their running statistics)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"reparameterize expects an nn.Module, got {type(model).__name__}")
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    with torch.no_grad():
        converted = _convert(model if inplace else copy.deepcopy(model))
    if len(dtypes) == 1:     # a hook that built a default-dtype layer must not change the model's dtype
        converted.to(dtypes.pop())
    return converted


def _convert(m: nn.Module) -> nn.Module:
    fuse = getattr(m, "fuse", None)
    if callable(fuse):
        new = fuse()
        if new is not m:
            return _convert(new)
    fn = getattr(m, "reparameterize", None)
    if callable(fn):
        fn()
    for name, child in list(m.named_children()):
        new = _convert(child)
        if new is not child:
            setattr(m, name, new)
    return m
