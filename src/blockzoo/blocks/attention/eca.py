"""Efficient Channel Attention (Wang et al., "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural
Networks", CVPR 2020, arXiv:1910.03151; inventory S003).

ECA: global average pooling -> 1-D convolution across channels with kernel size k, no bias -> sigmoid -> rescale.
No dimensionality reduction; exactly k parameters. The paper's adaptive kernel size is
``k = psi(C) = |log2(C)/gamma + b/gamma|_odd`` with gamma = 2, b = 1 (``t = int(|(log2 C + b) / gamma|)``, then the
next odd number), giving k = 3, 5, 5, 5, 5, 7 for C = 64, 128, 256, 512, 1024, 2048. Unlike timm there is no clamp
to k >= 3 (the formula gives k = 1 for C < 8; pass ``k_size`` to override).

The released ECA-Net checkpoints instead use hand-picked per-stage kernels (``k3577`` for ECA-Net18, ``k3557`` for
ECA-Net50); pass ``k_size=`` to the block, or one value per stage to a ResNet with
``create_model("ecaresnet50", attn=["eca(k_size=3)", "eca(k_size=5)", "eca(k_size=5)", "eca(k_size=7)"])``.

``eca_ns`` is the paper's ECA-NS variant (non-shared weights: every channel has its own k weights; k x C params).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import papers
from blockzoo.checks import check_int, check_odd
from blockzoo.errors import ConfigError
from blockzoo.registry import Claim, register_block


def eca_kernel_size(channels: int, gamma: float = 2, b: float = 1) -> int:
    """The paper's adaptive kernel size: the nearest odd number to |log2(C)/gamma + b/gamma| (rounded as the
    reference: t = int(...), then t + 1 if t is even)."""
    if gamma == 0:
        raise ConfigError("eca: gamma must be non-zero (k = |(log2 C + b) / gamma|_odd; the paper uses gamma = 2)")
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


def _kernel(channels: int, k_size: int | None, gamma: float, b: float, owner: str) -> int:
    """``k_size`` (checked: odd, >= 1) or the adaptive kernel size for ``channels``."""
    check_int(channels, "channels", min_value=1, owner=owner)
    if k_size is not None:
        return check_odd(k_size, "k_size", owner=owner)
    return eca_kernel_size(channels, gamma, b)


class ECA(nn.Module):
    def __init__(self, channels: int, k_size: int | None = None, gamma: float = 2, b: float = 1):
        super().__init__()
        self.k_size = _kernel(channels, k_size, gamma, b, "eca")
        self.conv = nn.Conv1d(1, 1, self.k_size, padding=(self.k_size - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3))                                   # (N, C)
        y = self.conv(y.unsqueeze(1)).squeeze(1)             # 1-D conv across channels
        return x * torch.sigmoid(y)[:, :, None, None]


class ECANS(nn.Module):
    """ECA-NS: like ECA but each channel has its own k weights (no weight sharing across channels)."""

    def __init__(self, channels: int, k_size: int | None = None, gamma: float = 2, b: float = 1):
        super().__init__()
        self.k_size = _kernel(channels, k_size, gamma, b, "eca_ns")
        self.weight = nn.Parameter(torch.empty(channels, self.k_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3))                                   # (N, C)
        p = (self.k_size - 1) // 2
        nb = F.pad(y, (p, p)).unfold(1, self.k_size, 1)     # (N, C, k): the k neighbours of each channel
        y = torch.einsum("nck,ck->nc", nb, self.weight)  # a matmul, so MAC counters see it
        return x * torch.sigmoid(y)[:, :, None, None]


@register_block(
    "eca", slot="attn", paper=papers.ECA, family="eca",
    summary="Efficient Channel Attention: GAP -> 1-D conv (adaptive k, no bias) across channels -> sigmoid",
    claims=(Claim("adds exactly k parameters per module, k < 9",
                  "tests/blocks/attention/test_eca.py::test_eca_kernel_table"),
            Claim("k = 3, 5, 5, 5, 5, 7 for C = 64 ... 2048 (gamma = 2, b = 1)",
                  "tests/blocks/attention/test_eca.py::test_eca_kernel_table"),
            Claim("ECA-ResNet-50 = ResNet-50 + 86 parameters (25,557,118)",
                  "tests/models/test_resnet.py::test_param_counts")),
)
def eca(channels: int, k_size: int | None = None, gamma: float = 2, b: float = 1) -> nn.Module:
    return ECA(channels, k_size=k_size, gamma=gamma, b=b)


@register_block(
    "eca_ns", slot="attn", paper=papers.ECA, family="eca",
    summary="ECA-NS: ECA with non-shared per-channel 1-D kernels (k x C parameters)",
    claims=(Claim("k x C parameters", "tests/blocks/attention/test_eca.py::test_eca_ns"),),
)
def eca_ns(channels: int, k_size: int | None = None, gamma: float = 2, b: float = 1) -> nn.Module:
    return ECANS(channels, k_size=k_size, gamma=gamma, b=b)
