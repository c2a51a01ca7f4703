"""The channel MLPs of Transformer / MetaFormer / ConvNeXt blocks: :class:`Mlp` (``fc1 -> act -> drop -> fc2 ->
drop``) and :class:`ConvGLU`, the Convolutional GLU of TransNeXt (Shi, "TransNeXt: Robust Foveal Visual Perception
for Vision Transformers", CVPR 2024, arXiv:2311.17132 [S025]; official code DaiShiResearch/TransNeXt,
``classification/transnext.py``, ``ConvolutionalGLU``). :func:`make_mlp` builds either by name (the ``mlp=`` option
of the MetaFormer skeleton)."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from blockzoo.checks import check_choice
from blockzoo.errors import ConfigError

__all__ = ["Mlp", "ConvGLU", "MLPS", "make_mlp", "to_nhwc"]


def to_nhwc(x: torch.Tensor) -> torch.Tensor:
    """The NHWC view ``x.permute(0, 2, 3, 1)`` of an NCHW tensor, as the input of an ``nn.Linear`` over the channels.

    Under CPU autocast it is made contiguous: autocast's bf16 cast keeps the permuted strides, and ``nn.Linear`` on
    such a 4-D tensor falls back to a batched matmul with copies, about twice as slow for PoolFormer-S12 in bf16
    (``benchmarks/speed_vs_timm.py``; casting and copying in one ``.to`` is slower than this fp32 copy). Outside
    autocast the strided view is as fast as a copy, so it is returned as is. The Linear gets the same values either
    way (in bf16 the two matmul kernels may round an output's last bit differently).
    """
    x = x.permute(0, 2, 3, 1)
    return x.contiguous() if torch.is_autocast_enabled("cpu") else x


class Mlp(nn.Module):
    """Channel MLP ``fc1 -> act -> drop -> fc2 -> drop`` on an NCHW tensor.

    ``layout="linear"``: ``nn.Linear`` layers on an NHWC view (default, faster on CPU); ``"conv"``: 1x1 convs.
    """

    def __init__(self, dim: int, hidden: int, act_layer: Callable[[], nn.Module], out_dim: int | None = None,
                 bias: bool = True, drop: float = 0.0, layout: str = "linear"):
        super().__init__()
        out_dim = out_dim or dim
        if layout == "linear":
            self.fc1, self.fc2 = nn.Linear(dim, hidden, bias=bias), nn.Linear(hidden, out_dim, bias=bias)
        elif layout == "conv":
            self.fc1, self.fc2 = nn.Conv2d(dim, hidden, 1, bias=bias), nn.Conv2d(hidden, out_dim, 1, bias=bias)
        else:
            raise ConfigError(f"mlp_layout must be 'linear' (nn.Linear on NHWC) or 'conv' (1x1 convs), got {layout!r}")
        self.layout = layout
        self.act = act_layer()
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def forward_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP on an NHWC tensor (``layout="linear"`` only)."""
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "linear":
            return self.forward_nhwc(to_nhwc(x)).permute(0, 3, 1, 2)
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def _layers(dim: int, hidden: int, out_dim: int, bias: bool, layout: str) -> tuple[nn.Module, nn.Module]:
    if layout == "linear":
        return nn.Linear(dim, hidden, bias=bias), nn.Linear(hidden // 2, out_dim, bias=bias)
    if layout == "conv":
        return nn.Conv2d(dim, hidden, 1, bias=bias), nn.Conv2d(hidden // 2, out_dim, 1, bias=bias)
    raise ConfigError(f"mlp_layout must be 'linear' (nn.Linear on NHWC) or 'conv' (1x1 convs), got {layout!r}")


class ConvGLU(nn.Module):
    """TransNeXt's Convolutional GLU: ``fc1`` to ``2h`` channels, split into a gate (the first half) and a value
    (the second half); the gate passes a 3x3 depthwise conv (with bias) and the activation, so each token's channel
    gate comes from its 3x3 neighbourhood (the paper's "SE-like" nearest-neighbour attention); then
    ``gate * value -> drop -> fc2 -> drop``.

    ``hidden`` is the hidden width of the MLP it replaces: ``h = int(2 * hidden / 3)`` (official), which keeps about
    the parameters of that MLP (``2dh + h d`` weights vs ``2 d hidden``). ``layout`` as :class:`Mlp` (``"linear"``,
    the official form, or 1x1 convs). Parameters: ``(d + 1) 2h + 10 h + (h + 1) d_out`` with biases.
    """

    def __init__(self, dim: int, hidden: int, act_layer: Callable[[], nn.Module], out_dim: int | None = None,
                 bias: bool = True, drop: float = 0.0, layout: str = "linear"):
        super().__init__()
        h = int(2 * hidden / 3)
        if h < 1:
            raise ConfigError(f"ConvGLU: a hidden width of {hidden} leaves int(2 * {hidden} / 3) = 0 gate channels; "
                              f"use a hidden width (mlp_ratio * dim) of at least 2")
        self.fc1, self.fc2 = _layers(dim, 2 * h, out_dim or dim, bias, layout)
        self.dwconv = nn.Conv2d(h, h, 3, padding=1, groups=h)
        self.act = act_layer()
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()
        self.layout = layout

    def forward_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        """The ConvGLU on an NHWC tensor (``layout="linear"`` only)."""
        gate, value = self.fc1(x).chunk(2, dim=-1)
        gate = self.dwconv(gate.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.drop(self.fc2(self.drop(self.act(gate) * value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "linear":
            return self.forward_nhwc(to_nhwc(x)).permute(0, 3, 1, 2)
        gate, value = self.fc1(x).chunk(2, dim=1)
        return self.drop(self.fc2(self.drop(self.act(self.dwconv(gate)) * value)))


MLPS: dict[str, type[nn.Module]] = {"mlp": Mlp, "convglu": ConvGLU}


def make_mlp(kind: str, dim: int, hidden: int, act_layer: Callable[[], nn.Module], **kw) -> nn.Module:
    """The channel MLP ``kind`` (``"mlp"``: :class:`Mlp`; ``"convglu"``: :class:`ConvGLU`) of hidden width
    ``hidden``; ``kw`` as their constructors (``bias``, ``drop``, ``layout``, ``out_dim``)."""
    check_choice(kind, "mlp", MLPS)
    return MLPS[kind](dim, hidden, act_layer, **kw)
