"""GradInit: learn one positive scale per parameter tensor so that one optimizer step gives the lowest loss.

Zhu, Ni, Xu, Kong, Huang & Goldstein, "GradInit: Learning to Initialize Neural Networks for Stable and Efficient
Training", NeurIPS 2021, arXiv:2102.08098 (:data:`blockzoo.papers.GRADINIT`, S102); official code
github.com/zhuchen03/gradinit (``gradinit_utils.py``, ``gradinit_optimizers.py``, ``launch/run_gradinit.sh``).

Every parameter tensor ``theta_i`` (each weight and each bias) of the initialised model gets a scalar ``m_i``
(start 1); with ``theta_m = m * theta_0`` GradInit solves

    min_m  L(S~; theta_m - eta * A[g(S; theta_m)])   s.t.   ||g(S; theta_m)||_p <= gamma,   m_i >= alpha,

where ``g(S; .)`` is the loss gradient on a minibatch ``S``, ``S~`` a second minibatch, ``eta`` the learning rate of
the optimizer that will train the model and ``A`` its first step: SGD ``A[g] = g`` with the L2 norm, Adam
``A[g] = sign(g)`` (Adam's bias-corrected first step) with the L1 norm. Each iteration draws ``S`` and ``S~``; if the
constraint is violated it takes a meta-step that lowers the gradient norm, otherwise one that lowers the loss after
the step. At the end the weights are multiplied by the learned scales and training starts as usual.

Where the values come from: the paper's text was not available here, so the objective above follows the paper's
description as summarised in ``shared/reference`` and the official code, and the numbers below are the official
code's (its CIFAR-10 launch scripts and IWSLT configuration), not read from the paper:

* meta-optimizer: Adam on the scales (betas 0.9 / 0.999, eps 1e-8), each scale's meta-gradient clipped to
  ``[-grad_clip, grad_clip]`` (1), with separate first moments for objective and constraint steps and a shared
  second moment (the official ``RescaleAdam``); meta learning rate ``meta_lr``: the official default 1e-3 (its
  scripts use 1e-2 / 5e-2 for VGG-19 / ResNet-110 without BN);
* lower bound ``alpha = min_scale = 0.01`` for weights; biases are bounded below by 0 (official);
* ``iters``: 390, one CIFAR-10 epoch at batch 128 (official scripts); ``gamma``: SGD 1 (the CIFAR scripts), Adam
  1000 (the official IWSLT configuration);
* batches: ``S`` = two half-batches (a, b), ``S~`` = (a, c) with a fresh half-batch c, i.e. the two minibatches share
  half their images (official; the loader here yields the half-batches);
* the objective is divided by ``eta`` (official; it only rescales the meta-gradient before clipping);
* BatchNorm layers use batch statistics without updating their running statistics, dropout is off (official).

Where the official code differs, as options: ``normalize_grad=True`` steps along ``g / ||g||_2`` for SGD (every
official CIFAR script passes ``--gradinit-normalize-grad``); ``first_order=True`` treats the step ``eta * A[g]`` as a
constant when differentiating the objective (the official code takes ``.data`` of the step; by default the gradient
flows through ``g`` as the objective is written). The official code scales only Conv2d / Linear / BatchNorm2d
parameters; here every trainable parameter tensor gets a scale (a zero tensor, such as a zero-initialised bias,
keeps scale 1: scaling it changes nothing, but it takes part in the gradient and the step).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from blockzoo.checks import check_choice, check_int, check_positive
from blockzoo.errors import ConfigError

__all__ = ["gradinit", "OPTS", "DEFAULT_GAMMA"]

OPTS = ("sgd", "adam")
#: the gradient-norm bound ``gamma`` per optimizer (official code: CIFAR scripts for SGD, IWSLT config for Adam)
DEFAULT_GAMMA = {"sgd": 1.0, "adam": 1000.0}
_BETAS, _EPS = (0.9, 0.999), 1e-8


def _cycle(batches: Iterable[Any]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches, again and again (a :class:`blockzoo.data.Loader` draws a new order on every pass)."""
    if isinstance(batches, Iterator):
        yield from batches
        raise ConfigError("gradinit's batches ran out; pass a loader or a list (both are cycled), or more batches")
    for _ in itertools.count():
        n = 0
        for x, y in batches:
            n += 1
            yield x, y
        if n == 0:
            raise ConfigError("gradinit got no batches; pass a loader or a non-empty list of (images, labels)")


class _ScaleAdam:
    """The official ``RescaleAdam`` on a vector of scales: clipped per-scale gradients, first moments kept apart
    for objective and constraint steps, one second moment, the result clamped to the lower bounds."""

    def __init__(self, n: int, lr: float, grad_clip: float, lower: torch.Tensor) -> None:
        self.lr, self.grad_clip, self.lower = lr, grad_clip, lower
        self.m = {False: torch.zeros(n, dtype=torch.float64), True: torch.zeros(n, dtype=torch.float64)}
        self.steps = {False: 0, True: 0}
        self.v = torch.zeros(n, dtype=torch.float64)

    def step(self, scales: torch.Tensor, grad: torch.Tensor, constraint: bool) -> torch.Tensor:
        b1, b2 = _BETAS
        g = grad.double().clamp(-self.grad_clip, self.grad_clip) if self.grad_clip > 0 else grad.double()
        self.steps[constraint] += 1
        self.m[constraint].mul_(b1).add_(g, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
        c1 = 1 - b1 ** self.steps[constraint]
        c2 = 1 - b2 ** (self.steps[False] + self.steps[True])
        new = scales.double() - self.lr / c1 * self.m[constraint] / ((self.v / c2).sqrt() + _EPS)
        return torch.maximum(new, self.lower)


def gradinit(model: nn.Module, batches: Iterable[Any], *, opt: str = "sgd", lr: float, iters: int = 390,
             gamma: float | None = None, meta_lr: float = 1e-3, min_scale: float = 0.01, grad_clip: float = 1.0,
             normalize_grad: bool = False, first_order: bool = False,
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
    """Run GradInit on ``model`` (in place) and return the learned scale of every parameter, by name.

    Args:
        model: an initialised model; afterwards each parameter is its learned scale times its value before.
        batches: a :class:`blockzoo.data.Loader` or an iterable of ``(images, labels)`` half-batches, cycled; each
            iteration takes three (``S`` = the first two, ``S~`` = the first and the third; module docstring).
        opt: the optimizer that will train the model, ``"sgd"`` or ``"adam"`` (AdamW's first step is Adam's).
        lr: its learning rate ``eta``.
        iters: GradInit iterations (objective and constraint steps together).
        gamma: the gradient-norm bound (L2 for SGD, L1 for Adam); default :data:`DEFAULT_GAMMA`.
        meta_lr: Adam's learning rate on the scales.
        min_scale: lower bound of the weights' scales (biases: 0).
        grad_clip: clip of each scale's meta-gradient (0 = none).
        normalize_grad: SGD steps along ``g / ||g||_2`` (the official scripts' setting).
        first_order: do not differentiate through the step (the official code).
        loss_fn: ``(logits, labels) -> loss``; default cross-entropy.
    """
    check_choice(opt, "gradinit opt", OPTS)
    check_positive(lr, "gradinit lr")
    check_int(iters, "gradinit iters", min_value=1)
    gamma = DEFAULT_GAMMA[opt] if gamma is None else check_positive(gamma, "gradinit gamma")
    check_positive(meta_lr, "gradinit meta_lr")
    check_positive(min_scale, "gradinit min_scale", allow_zero=True)
    check_positive(grad_clip, "gradinit grad_clip", allow_zero=True)
    loss_fn = loss_fn or F.cross_entropy
    # every trainable tensor takes part in the gradient, its norm and the step; a zero tensor's scale stays 1 (its
    # meta-gradient <d objective / d theta, theta_0> is exactly 0)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ConfigError("gradinit found no trainable parameters in the model; pass a model with trainable weights")
    names = [n for n, _ in named]
    theta0 = [p.detach().clone() for _, p in named]
    device = theta0[0].device
    lower = torch.tensor([0.0 if n.rsplit(".", 1)[-1] == "bias" else min_scale for n in names], dtype=torch.float64)
    scales = torch.ones(len(names), dtype=torch.float64)
    meta = _ScaleAdam(len(names), meta_lr, grad_clip, lower)
    modes = {m: m.training for m in model.modules()}
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    tracking = {m: m.track_running_stats for m in bns}
    model.eval()                                        # dropout off ...
    for m in bns:                                       # ... BN on batch statistics, running statistics untouched
        m.train()
        m.track_running_stats = False
    data = _cycle(batches)
    try:
        for _ in range(iters):
            (xa, ya), (xb, yb), (xc, yc) = next(data), next(data), next(data)
            s = scales.to(device=device, dtype=theta0[0].dtype).requires_grad_(True)
            theta = [s[i] * t for i, t in enumerate(theta0)]
            params = dict(zip(names, theta))
            loss = loss_fn(functional_call(model, params, (torch.cat([xa, xb]),), strict=False), torch.cat([ya, yb]))
            grads = torch.autograd.grad(loss, theta, create_graph=True)
            if opt == "adam":
                gnorm = sum(g.abs().sum() for g in grads)
                steps = [g.sign() for g in grads]
            else:
                gnorm = torch.sqrt(sum(g.square().sum() for g in grads))
                steps = [g / gnorm for g in grads] if normalize_grad else list(grads)
            constraint = gnorm.item() > gamma
            if constraint:                              # project back towards ||g|| <= gamma
                objective = gnorm
            else:
                if first_order:
                    steps = [st.detach() for st in steps]
                moved = {n: t - lr * st for n, t, st in zip(names, theta, steps)}
                after = functional_call(model, moved, (torch.cat([xa, xc]),), strict=False)
                objective = loss_fn(after, torch.cat([ya, yc])) / lr
            if not math.isfinite(objective.item()):
                raise ConfigError(f"gradinit's objective became {objective.item()} (lr {lr}); lower lr or meta_lr")
            (meta_grad,) = torch.autograd.grad(objective, s)
            scales = meta.step(scales, meta_grad.detach().cpu(), constraint)
    finally:
        for m, mode in modes.items():
            m.training = mode
        for m, track in tracking.items():
            m.track_running_stats = track
    with torch.no_grad():
        for (_, p), t, a in zip(named, theta0, scales.tolist()):
            p.copy_(t * a)
    learned = dict(zip(names, scales.tolist()))
    return {n: learned.get(n, 1.0) for n, _ in model.named_parameters()}   # a frozen tensor: 1
