"""The channel MLP of Transformer / MetaFormer / ConvNeXt blocks: ``fc1 -> act -> drop -> fc2 -> drop``."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from blockzoo.errors import ConfigError

__all__ = ["Mlp", "to_nhwc"]


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
