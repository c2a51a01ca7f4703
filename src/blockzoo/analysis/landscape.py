"""Loss-landscape probes: how smooth the loss is along the training path, and a slice of it around a checkpoint.

Wang et al., "What Deep CNNs Benefit from Global Covariance Pooling: An Optimization Perspective", CVPR 2020,
arXiv:2003.11241 [S002, GCP], compare GAP and GCP heads with the measures of Santurkar et al., "How Does Batch
Normalization Help Optimization?", NeurIPS 2018: at a training step with weights ``w`` and gradient ``g = dL/dw``
(one batch), move along the gradient, ``w_eta = w - eta g``, for a range of step sizes ``eta`` and record

* the *loss landscape* (Lipschitzness of the loss): the range of ``L(w_eta)`` over the step sizes (a small range =
  a smooth, predictable loss);
* the *gradient predictiveness*: ``||g(w_eta) - g||`` (l2 change of the gradient; small = the gradient stays
  predictive);
* the *effective beta-smoothness*: ``max_eta ||g(w_eta) - g|| / ||eta g||``.

:func:`smoothness_probe` takes one such measurement (the model's weights and buffers are restored afterwards; the
model's mode is kept: train mode measures the training loss with batch statistics, as the papers do);
:class:`SmoothnessRecorder` repeats it on a fixed batch as the trainer's ``on_epoch_end`` callback
(``blockzoo.train.train(cfg, model=model, on_epoch_end=recorder)``), and :func:`probe_training` along a plain SGD loop
every ``probe_every`` steps. Step sizes: we could not read the exact ranges of the papers; the default is the
learning rate times 0.25 .. 4 (say which you use).

:func:`loss_slice`: Li et al., "Visualizing the Loss Landscape of Neural Nets", NeurIPS 2018: ``L(w + a d1 + b d2)``
on a grid, with random Gaussian directions *filter-normalised*: each filter (a row of a weight: an output channel of
a conv, an output unit of a linear layer) of ``d`` is rescaled to the norm of the same filter of ``w``; biases and
norm parameters (1-D tensors) get a zero direction, as in the paper (``perturb_1d=True`` normalises them as one
filter instead). Evaluated in eval mode.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.analysis.common import save_figure
from blockzoo.checks import check_int, check_positive
from blockzoo.errors import ConfigError

__all__ = ["STEP_MULTIPLES", "smoothness_probe", "SmoothnessRecorder", "probe_training",
           "filter_normalized_direction", "loss_slice", "plot_slice"]

STEP_MULTIPLES = (0.25, 0.5, 1.0, 2.0, 4.0)
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _params(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _loss_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> tuple[float, torch.Tensor]:
    params = _params(model)
    loss = loss_fn(model(x), y)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    flat = torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, grads)])
    return float(loss.detach()), flat.detach()


def smoothness_probe(model: nn.Module, x: torch.Tensor, y: torch.Tensor, step_sizes: Sequence[float], *,
                     loss_fn: LossFn = F.cross_entropy) -> dict[str, Any]:
    """One Santurkar-style measurement at the model's current weights on batch ``(x, y)``: the loss and gradient
    at ``w - eta g`` for each ``eta`` of ``step_sizes``. Returns ``{"loss", "grad_norm", "step_sizes", "losses",
    "grad_changes", "loss_range", "grad_change_max", "beta_smoothness"}``; weights and buffers are restored."""
    if not step_sizes:
        raise ConfigError("smoothness_probe: give at least one step size")
    for eta in step_sizes:
        check_positive(eta, "step size", owner="smoothness_probe")
    params = _params(model)
    state = copy.deepcopy(model.state_dict())
    try:
        loss0, g0 = _loss_grad(model, x, y, loss_fn)
        gnorm = float(g0.norm())
        losses, changes = [], []
        for eta in step_sizes:
            model.load_state_dict(state)
            with torch.no_grad():
                torch.nn.utils.vector_to_parameters(torch.nn.utils.parameters_to_vector(params) - eta * g0, params)
            loss, g = _loss_grad(model, x, y, loss_fn)
            losses.append(loss)
            changes.append(float((g - g0).norm()))
    finally:
        model.load_state_dict(state)
    betas = [c / (eta * gnorm) if gnorm > 0 else 0.0 for c, eta in zip(changes, step_sizes)]
    return {"loss": loss0, "grad_norm": gnorm, "step_sizes": [float(s) for s in step_sizes], "losses": losses,
            "grad_changes": changes, "loss_range": max(losses + [loss0]) - min(losses + [loss0]),
            "grad_change_max": max(changes), "beta_smoothness": max(betas)}


class SmoothnessRecorder:
    """The trainer's ``on_epoch_end`` callback that runs :func:`smoothness_probe` on a fixed batch after every epoch
    (the trainer trains ``model`` in place, so pass the same module to ``train(cfg, model=model, ...)``); the
    measurements accumulate in ``records`` (each with the epoch's metrics ``epoch`` and ``step`` when present)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step_sizes: Sequence[float], *,
                 loss_fn: LossFn = F.cross_entropy) -> None:
        self.model, self.x, self.y, self.step_sizes, self.loss_fn = model, x, y, tuple(step_sizes), loss_fn
        self.records: list[dict[str, Any]] = []

    def __call__(self, metrics: dict[str, Any] | None = None) -> None:
        dev = next(self.model.parameters()).device
        rec = smoothness_probe(self.model, self.x.to(dev), self.y.to(dev), self.step_sizes, loss_fn=self.loss_fn)
        for key in ("epoch", "step"):
            if metrics and key in metrics:
                rec[key] = metrics[key]
        self.records.append(rec)


def probe_training(model: nn.Module, batches: Any, *, lr: float, epochs: int = 1, probe_every: int = 10,
                   momentum: float = 0.9, weight_decay: float = 5e-4, step_multiples: Sequence[float] = STEP_MULTIPLES,
                   loss_fn: LossFn = F.cross_entropy) -> list[dict[str, Any]]:
    """Train ``model`` with SGD (``lr``, ``momentum``, ``weight_decay``) over ``batches`` (an iterable of ``(x, y)``,
    e.g. a :class:`blockzoo.data.Loader`, re-iterated each epoch) and probe the smoothness on the current batch
    every ``probe_every`` steps, at step sizes ``lr x step_multiples``. Returns the probes, each with its ``step``."""
    check_positive(lr, "lr", owner="probe_training")
    check_int(epochs, "epochs", min_value=1, owner="probe_training")
    check_int(probe_every, "probe_every", min_value=1, owner="probe_training")
    opt = torch.optim.SGD(_params(model), lr=lr, momentum=momentum, weight_decay=weight_decay)
    steps = [lr * m for m in step_multiples]
    records, step = [], 0
    model.train()
    for _ in range(epochs):
        for x, y in batches:
            if step % probe_every == 0:
                records.append({"step": step, **smoothness_probe(model, x, y, steps, loss_fn=loss_fn)})
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
            step += 1
    return records


def filter_normalized_direction(model: nn.Module, generator: torch.Generator, *,
                                perturb_1d: bool = False) -> list[torch.Tensor]:
    """A random direction with one tensor per trainable parameter of ``model``: Gaussian, each filter (row along
    dim 0) rescaled to the norm of the parameter's filter; 1-D parameters zero (or one normalised filter with
    ``perturb_1d``)."""
    dirs = []
    for p in _params(model):
        d = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
        if p.ndim <= 1:
            dirs.append(d * (p.detach().norm() / d.norm().clamp_min(1e-12)) if perturb_1d else torch.zeros_like(p))
            continue
        rows_d, rows_p = d.flatten(1), p.detach().flatten(1)
        scale = rows_p.norm(dim=1, keepdim=True) / rows_d.norm(dim=1, keepdim=True).clamp_min(1e-12)
        dirs.append((rows_d * scale).view_as(p))
    return dirs


@torch.no_grad()
def loss_slice(model: nn.Module, x: torch.Tensor, y: torch.Tensor, alphas: Sequence[float],
               betas: Sequence[float] | None = None, *, seed: int = 0, perturb_1d: bool = False,
               loss_fn: LossFn = F.cross_entropy) -> dict[str, Any]:
    """The loss on batch ``(x, y)`` at ``w + a d1`` for each ``a`` of ``alphas`` (1-D) or at ``w + a d1 + b d2`` on
    the ``alphas x betas`` grid (2-D), with filter-normalised directions drawn from ``seed``; eval mode, the weights
    restored. Returns ``{"alphas", "betas", "loss"}`` (``loss``: a list, or a list of rows over ``betas``) and
    ``"center_loss"``, the loss at the checkpoint itself."""
    params = _params(model)
    gen = torch.Generator().manual_seed(seed)
    d1 = filter_normalized_direction(model, gen, perturb_1d=perturb_1d)
    d2 = filter_normalized_direction(model, gen, perturb_1d=perturb_1d) if betas is not None else None
    base = [p.detach().clone() for p in params]
    was_training = model.training
    model.eval()

    def at(a: float, b: float) -> float:
        for i, p in enumerate(params):
            p.copy_(base[i] + a * d1[i] if d2 is None else base[i] + a * d1[i] + b * d2[i])
        return float(loss_fn(model(x), y))

    try:
        grid = ([at(a, 0.0) for a in alphas] if betas is None
                else [[at(a, b) for b in betas] for a in alphas])
        for p, w in zip(params, base):
            p.copy_(w)
        center = float(loss_fn(model(x), y))
    finally:
        for p, w in zip(params, base):
            p.copy_(w)
        model.train(was_training)
    return {"alphas": [float(a) for a in alphas], "betas": None if betas is None else [float(b) for b in betas],
            "loss": grid, "center_loss": center, "seed": seed, "perturb_1d": perturb_1d}


def plot_slice(result: dict[str, Any], path: Any, title: str | None = None) -> Any:
    """A 1-D slice as a curve, a 2-D slice as filled contours; written atomically to ``path`` (PNG)."""
    from blockzoo.report.plot import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4), constrained_layout=True)
    if result["betas"] is None:
        ax.plot(result["alphas"], result["loss"], marker=".")
        ax.set(xlabel="alpha (filter-normalised direction)", ylabel="loss")
    else:
        cs = ax.contourf(result["betas"], result["alphas"], result["loss"], levels=20, cmap="viridis")
        fig.colorbar(cs, ax=ax, label="loss")
        ax.set(xlabel="beta", ylabel="alpha")
    ax.set_title(title or "loss slice (Li et al. 2018)", fontsize=9)
    return save_figure(fig, path)
