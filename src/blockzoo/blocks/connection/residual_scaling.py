"""Residual scaling: Szegedy, Ioffe, Vanhoucke & Alemi, "Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning", AAAI 2017, arXiv:1602.07261 (inventory S017), Section 3.3 and Figure 20.

The paper found that residual Inception networks with more than about 1000 filters "died" early in training (the
last layer before the pooling produced only zeros) and that *scaling the residual branch down before adding it to
the shortcut* stabilised them: ``out = shortcut + scale * branch`` with "scaling factors between 0.1 and 0.3", fixed
constants. The paper names no factor per block; the released Inception-ResNet-v2
(tensorflow/models ``research/slim/nets/inception_resnet_v2.py``, also timm's port) uses 0.17 in the 35x35 blocks,
0.10 in the 17x17 blocks and 0.20 in the 8x8 blocks. The default here, 0.2, is the 8x8 blocks' factor and the middle
of the paper's range; ``scale=1`` is the plain residual sum.

As a ``connection`` block it goes into any residual backbone: ``create_model("resnet20",
connection="scaled_residual")``, ``connection="scaled_residual(scale=0.1)"``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.checks import check_positive
from blockzoo.errors import ConfigError
from blockzoo.registry import Claim, register_block

__all__ = ["ScaledResidual"]

_TEST = "tests/blocks/connection/test_residual_scaling.py"


class ScaledResidual(nn.Module):
    """``shortcut + scale * branch`` (no parameters).

    Args:
        scale: the constant factor of the residual branch, in (0, 1] (paper: 0.1 ... 0.3; 1: the plain residual).
    """

    def __init__(self, scale: float = 0.2):
        super().__init__()
        check_positive(scale, "scale", owner="scaled_residual")
        if scale > 1:
            raise ConfigError(f"scaled_residual: scale scales the residual branch down and must be in (0, 1] (the "
                              f"paper uses 0.1 ... 0.3), got {scale!r}")
        self.scale = float(scale)

    def forward(self, shortcut: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return shortcut + self.scale * branch

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}"


@register_block(
    "scaled_residual", slot="connection", family="connection", paper=papers.INCEPTION_V4,
    summary="shortcut + scale * branch: the residual branch scaled down by a constant (0.1-0.3) before the addition",
    claims=(
        Claim("out = shortcut + scale * branch, with no parameters", f"{_TEST}::test_hand_computed_output"),
        Claim("scale = 1 is the plain residual connection (an Inception-ResNet block gives the same outputs as with "
              "the unscaled sum)", "tests/models/test_inception_v4.py::test_scale_one_equals_unscaled_block"),
        Claim("scaling the residuals by 0.1-0.3 stabilises the training of residual Inception networks with more "
              "than ~1000 filters (paper Section 3.3; needs ImageNet-scale training)", status="not checked"),
    ),
    usage='merge = create_block("scaled_residual", 64, scale=0.1)   # merge(shortcut, branch)\n'
          'model = create_model("resnet20", connection="scaled_residual(scale=0.3)")')
def _scaled_residual(channels: int | None = None, scale: float = 0.2) -> nn.Module:
    return ScaledResidual(scale)
