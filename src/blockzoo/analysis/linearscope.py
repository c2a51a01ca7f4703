"""LinearScope: replay a piecewise-linear network as the input-specific affine map ``y = A(x) x + b(x)``.

Navarrete Michelini, Liu, Lu & Jiang, "A Tour of Convolutional Networks Guided by Linear Interpreters", ICCV 2019,
arXiv:1908.05168 [S022, LINEARSCOPE]: the network runs on a batch of two halves; in every non-linear unit a
LinearScope hook computes the unit as usual on the first half (the image ``x``) and, on the second half, applies
the *action* the unit took on ``x`` (a ReLU's on/off mask, a max-pool's choice of position) as a fixed linear map.
Linear layers (convolutions, fully connected layers, BN with its running statistics, average pooling, sums) act on
both halves alike, so the second half of the output is an affine function of the second half of the input, the
linear interpreter: ``g_x(z) = A(x) z + b(x)``, with ``g_x(x) = f(x)``. For a piecewise-linear network ``A(x)`` is the
Jacobian of ``f`` at ``x`` and ``b(x) = f(x) - A(x) x`` gathers the biases.

:func:`linear_interpreter` installs the hooks on the model's modules, reads ``b = g_x(0)`` and ``A`` as the Jacobian
of ``g_x`` (exact: ``g_x`` is affine), and checks ``A x + b = f(x)``. Units it replays: ``nn.ReLU``, ``ReLU6``,
``Hardtanh``, ``LeakyReLU`` (masks; the clipped constant goes into ``b``), ``MaxPool1d/2d`` and ``AdaptiveMaxPool1d/2d``
(the argmax positions). Units that are not piecewise linear (GELU, SiLU, sigmoid, softmax, LayerNorm / GroupNorm /
InstanceNorm, attention ...) are refused with a :class:`ConfigError` naming the layer; the paper discusses other
units too, but we could not read how it linearises them, so nothing is guessed. A non-linearity the hooks cannot see
(a functional ``F.relu`` inside some module's ``forward``, batch-statistics BN) makes ``g_x`` non-affine; the
reproduction check then fails with a :class:`ConfigError` instead of returning a wrong ``A``.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.analysis.common import save_figure
from blockzoo.errors import ConfigError

__all__ = ["LinearInterpretation", "linear_interpreter", "plot_rows"]

_MASKED = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU)
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
_REFUSED = (nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Softmax, nn.LogSoftmax, nn.ELU, nn.CELU, nn.SELU, nn.Mish,
            nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.PReLU, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
            nn.MultiheadAttention, nn.modules.instancenorm._InstanceNorm)


@dataclass
class LinearInterpretation:
    """``A`` ``(outputs, inputs)`` (inputs = the flattened ``C x H x W`` image), ``b`` ``(outputs,)``, the network's
    output ``y`` ``(outputs,)`` and the largest ``|A x + b - y|`` (``error``)."""

    A: torch.Tensor
    b: torch.Tensor
    y: torch.Tensor
    error: float
    input_shape: tuple[int, ...]


def _replay(mod: nn.Module, z: torch.Tensor, half: int) -> torch.Tensor:
    """The unit on ``z``'s first ``half`` rows as usual, and its recorded action on the other rows."""
    x, v = z[:half], z[half:]
    if isinstance(mod, _POOLS):
        dims = 1 if isinstance(mod, (nn.MaxPool1d, nn.AdaptiveMaxPool1d)) else 2
        if isinstance(mod, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)):
            fn = F.adaptive_max_pool1d if dims == 1 else F.adaptive_max_pool2d
            out, idx = fn(x, mod.output_size, return_indices=True)
        else:
            fn = F.max_pool1d if dims == 1 else F.max_pool2d
            out, idx = fn(x, mod.kernel_size, mod.stride, mod.padding, mod.dilation, ceil_mode=mod.ceil_mode,
                          return_indices=True)
        picked = v.flatten(2).gather(2, idx.flatten(2)).view_as(out)
        return torch.cat([out, picked])
    out = mod.forward(x)   # not mod(x): that would run this hook again
    if isinstance(mod, nn.LeakyReLU):
        gain = torch.where(x > 0, 1.0, mod.negative_slope).to(x.dtype)
        return torch.cat([out, v * gain])
    if isinstance(mod, nn.Hardtanh):   # ReLU6 too: slope 1 inside (min, max), the clipped constant outside
        inside = (x > mod.min_val) & (x < mod.max_val)
        return torch.cat([out, torch.where(inside, v, out)])
    return torch.cat([out, v * (x > 0).to(x.dtype)])   # ReLU


@contextmanager
def _scopes(model: nn.Module, half: int) -> Iterator[None]:
    """Install the LinearScope hooks (and switch in-place units to out-of-place) for one analysis."""
    handles, inplace = [], []
    for name, mod in model.named_modules():
        if isinstance(mod, _REFUSED) or callable(getattr(mod, "attn_map", None)):
            raise ConfigError(f"linearscope: layer {name!r} ({type(mod).__name__}) is not piecewise linear, so the "
                              f"network has no exact linear interpreter; use a model with ReLU-family activations, "
                              f"max/avg pooling and BN (e.g. resnet20)")
        if isinstance(mod, _MASKED + _POOLS):
            if getattr(mod, "inplace", False):
                inplace.append(mod)
                mod.inplace = False
            handles.append(mod.register_forward_hook(lambda m, args, out: _replay(m, args[0], half)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for mod in inplace:
            mod.inplace = True


def linear_interpreter(model: nn.Module, x: torch.Tensor, *, dtype: torch.dtype = torch.float64,
                       atol: float = 1e-6) -> LinearInterpretation:
    """The linear interpreter of ``model`` at one input ``x`` (``(C, H, W)`` or ``(1, C, H, W)``): ``A(x)``,
    ``b(x)`` with ``A x + b = model(x)`` (checked to ``atol`` relative to the output's scale, else
    :class:`ConfigError`). Runs in eval mode in ``dtype`` on a copy of the model, so ``model`` is unchanged."""
    import copy

    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim < 2 or x.shape[0] != 1:
        raise ConfigError(f"linear_interpreter takes one input (C, H, W) or (1, C, H, W), got {tuple(x.shape)}")
    net = copy.deepcopy(model).to(dtype).eval()
    x = x.detach().to(dtype)

    def g(v: torch.Tensor) -> torch.Tensor:
        return net(torch.cat([x, v]))[1:].flatten()

    with _scopes(net, 1), torch.no_grad():
        y = net(torch.cat([x, x]))[0].flatten()
        b = g(torch.zeros_like(x))
    with _scopes(net, 1):
        a = torch.autograd.functional.jacobian(g, torch.zeros_like(x), vectorize=True).reshape(b.numel(), -1)
    err = float((a @ x.flatten() + b - y).abs().max())
    if err > atol * max(1.0, float(y.abs().max())):
        raise ConfigError(f"linearscope: A(x) x + b(x) misses the output by {err:.3g}: the network has a "
                          f"non-linearity the LinearScope hooks cannot see (a functional activation inside a "
                          f"module's forward, batch statistics); use a model built from nn.ReLU-family modules")
    return LinearInterpretation(a, b, y, err, tuple(x.shape[1:]))


def plot_rows(interp: LinearInterpretation, path: Any, *, labels: list[str] | None = None,
              title: str | None = None) -> Any:
    """The rows of ``A(x)`` as images (one per output, e.g. per class: the paper's "pixel-wise vote"), each on a
    symmetric diverging colour scale and titled with its output and bias; written atomically to ``path``."""
    from blockzoo.report.plot import pyplot

    plt = pyplot()
    n = interp.A.shape[0]
    cols = min(n, 5)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows + 0.4), squeeze=False,
                             constrained_layout=True)
    shape = interp.input_shape
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        row = interp.A[i].reshape(shape).float()
        img = row.sum(0) if len(shape) == 3 else row
        lim = float(img.abs().max()) or 1.0
        ax.imshow(img.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        name = labels[i] if labels and i < len(labels) else str(i)
        ax.set_title(f"{name}: y={float(interp.y[i]):.2f}, b={float(interp.b[i]):.2f}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
