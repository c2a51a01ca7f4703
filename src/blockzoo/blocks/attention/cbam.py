"""CBAM (Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018, arXiv:1807.06521; a baseline of the
ECA and Coordinate Attention papers, not in the inventory).

Channel attention, then spatial attention, applied sequentially (the paper's best arrangement)::

    M_c(F) = sigmoid( MLP(AvgPool(F)) + MLP(MaxPool(F)) )            shared MLP: C -> C/r -> C, ReLU, r = 16
    F'     = M_c(F) * F
    M_s(F') = sigmoid( f7x7( [AvgPool_c(F'); MaxPool_c(F')] ) )        pooling along the channel axis, 7x7 conv, pad 3
    out    = M_s(F') * F'

There is **no residual inside the module**: in a ResNet it sits on the residual branch before the addition, like SE
(External-Attention-pytorch's ``CBAMBlock`` wrongly returns ``out + x``; fidelity.md §2.4).

Paper vs official code (Jongchan/attention-module, ``MODELS/cbam.py``):

- MLP: ``Linear`` layers **with** biases in the official code. The paper writes the MLP without biases, but its
  ImageNet table (CBAM-ResNet-50: 28.09M parameters) only matches with biased layers (without them: 28.07M), so
  biases are used in both variants. Hidden width ``C // r`` (at least 1), no rounding.
- Spatial conv: the paper's ``f7x7`` is a plain 7x7 conv (2 -> 1 channels); the official ``SpatialGate`` uses
  ``BasicConv(2, 1, 7, padding=3, relu=False)``, i.e. a conv **without bias followed by BatchNorm**
  (eps 1e-5, momentum 0.01). Default ``variant="paper"``: conv with bias, no BN (the paper does not specify the bias;
  without BN the gate needs an offset). ``variant="official"``: conv without bias + BN.
- Order of the 2-channel spatial descriptor: the paper concatenates ``[avg; max]``, the official ``ChannelPool``
  ``[max; mean]``. ``variant="official"`` uses the official order, so official weights load unchanged.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.checks import check_choice, check_int, check_odd
from blockzoo.registry import Claim, register_block

VARIANTS = ("paper", "official")


class ChannelGate(nn.Module):
    """CBAM channel attention: shared MLP on the global average- and max-pooled descriptors, summed, sigmoid."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.hidden = max(1, check_int(channels, "channels", min_value=1, owner="cbam")
                          // check_int(reduction, "reduction", min_value=1, owner="cbam"))
        self.fc1 = nn.Linear(channels, self.hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(self.hidden, channels)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        desc = torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=0)     # (2N, C): avg then max, one shared MLP pass
        att = self.fc2(self.act(self.fc1(desc)))
        return torch.sigmoid(att[:n] + att[n:])                         # (N, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)[:, :, None, None]


class SpatialGate(nn.Module):
    """CBAM spatial attention: channel-wise avg and max maps -> k x k conv (2 -> 1) -> sigmoid."""

    def __init__(self, kernel_size: int = 7, variant: str = "paper"):
        super().__init__()
        check_odd(kernel_size, "kernel_size", owner="cbam")
        check_choice(variant, "variant", VARIANTS, owner="cbam")
        self.kernel_size, self.variant = kernel_size, variant
        official = variant == "official"
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=not official)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01) if official else nn.Identity()

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        avg, mx = x.mean(1, keepdim=True), x.amax(1, keepdim=True)
        desc = torch.cat([mx, avg] if self.variant == "official" else [avg, mx], dim=1)
        return torch.sigmoid(self.bn(self.conv(desc)))                 # (N, 1, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel gate then spatial gate, no residual."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7, variant: str = "paper"):
        super().__init__()
        self.channel = ChannelGate(channels, reduction)
        self.spatial = SpatialGate(kernel_size, variant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


@register_block(
    "cbam", slot="attn", paper=papers.CBAM, family="cbam",
    summary="CBAM: shared-MLP channel gate (avg+max, r = 16) then 7x7 spatial gate on [avg; max] maps; no residual",
    claims=(
        Claim("no residual inside the module: with both gates forced to 0.5 the output is exactly 0.25 * x",
              "tests/blocks/attention/test_cbam.py::test_cbam_no_residual"),
        Claim("channel MLP C -> C//16 -> C shared by the avg- and max-pooled descriptors; 7x7 spatial conv, padding 3",
              "tests/blocks/attention/test_cbam.py::test_cbam_hand_computed"),
        Claim("CBAM-ResNet-50 has 28.09M parameters (paper's ImageNet table; 25,557,032 + 2,532,576 = 28,089,608)",
              "tests/blocks/attention/test_cbam.py::test_cbam_resnet50_params"),
        Claim("CBAM adds 0.006 GFLOPs (MACs) to ResNet-50 at 224x224 (paper's ImageNet table: 3.858 -> 3.864 G)",
              "tests/blocks/attention/test_cbam.py::test_cbam_resnet50_macs"),
    ),
    notes="variant='paper': spatial conv with bias, no BN, [avg; max]; 'official' (Jongchan/attention-module): conv "
          "without bias + BN, [max; mean]. kernel_size must be odd. No residual inside.",
)
def cbam(channels: int, reduction: int = 16, kernel_size: int = 7, variant: str = "paper") -> nn.Module:
    return CBAM(channels, reduction=reduction, kernel_size=kernel_size, variant=variant)
