"""Structural re-parameterisation for deployment: fold BatchNorms into convs, merge parallel branches.

Structural re-parameterisation (RepVGG, RepLKNet, UniRepLKNet [S016/S084: Ding et al., "UniRepLKNet: A Universal
Perception Large-Kernel ConvNet for Audio, Video, Point Cloud, Time-Series and Image Recognition", CVPR 2024,
arXiv:2311.15599]) trains a multi-branch block and converts it, after training, into a single-branch block that
computes *the same function in eval mode* but runs faster. Conversion is in place; BatchNorm is folded with its
running statistics, so the converted model equals the original **in eval mode only** (in train mode the original
would normalise with batch statistics). Convert trained models, then evaluate them with ``model.eval()``.

API
---
- :func:`reparameterize(model) <reparameterize>` walks ``model`` top-down and calls ``m.reparameterize()`` on every
  module ``m`` that has such a method (the root included; children are visited *after* their parent converted, so a
  parent may replace them), and returns ``model``. This is the protocol of timm's ``reparameterize_model`` and
  UniRepLKNet's ``reparameterize_unireplknet``. A module's ``reparameterize()`` must be idempotent (a second call is
  a no-op) because the walker may reach a module its parent already converted.
- :func:`fuse_conv_bn(conv, bn) <fuse_conv_bn>` returns a new ``nn.Conv2d`` (with bias) equal to ``bn(conv(x))`` in
  eval mode; any stride / padding / dilation / groups. :func:`bn_scale_shift` gives the per-channel affine map
  ``bn(x) = scale * x + shift`` of an eval-mode BatchNorm, for folding into other layers (e.g. a Linear).

Folding: with ``s = gamma / sqrt(running_var + eps)``, ``W' = W * s`` (per output channel) and
``b' = (b - running_mean) * s + beta``. Computed in float64 and cast back to the conv's dtype.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["reparameterize", "fuse_conv_bn", "bn_scale_shift"]

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


def reparameterize(model: nn.Module) -> nn.Module:
    """Convert ``model`` in place to its deploy form: call ``reparameterize()`` on every module that has it.

    Top-down walk: a module is converted before its (then current) children are visited. Returns ``model``. The
    result matches the original in eval mode (BatchNorms are folded with their running statistics).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"reparameterize expects an nn.Module, got {type(model).__name__}")

    def visit(m: nn.Module) -> None:
        fn = getattr(m, "reparameterize", None)
        if callable(fn):
            fn()
        for child in list(m.children()):
            visit(child)

    visit(model)
    return model
