"""DFC attention (Tang et al., "GhostNetV2: Enhance Cheap Operation with Long-Range Attention", NeurIPS 2022,
arXiv:2211.12905; inventory S042), as in the official code (huawei-noah/Efficient-AI-Backbones,
``ghostnetv2_pytorch/model/ghostnetv2_torch.py``, ``GhostModuleV2(mode='attn').short_conv``).

Decoupled fully-connected attention: the horizontal and vertical "FC" layers are depthwise ``1 x K`` and ``K x 1``
convolutions (K = 5), run on 2x down-sampled features so the gate is cheap::

    a   = AvgPool(kernel 2, stride 2)(x)                       # floor for odd H/W (F.avg_pool2d)
    a   = BN(Conv1x1(a))                                       # C -> C, no bias
    a   = BN(DWConv 1xK(a))                                    # padding (0, K//2), no bias
    a   = BN(DWConv Kx1(a))                                    # padding (K//2, 0), no bias
    out = x * Upsample_nearest(sigmoid(a), size=(H, W))        # back to the exact input size (odd sizes too)

No activation between the three conv+BN pairs (as in the official code). In GhostNetV2 the gate is computed from
the Ghost module's *input* and multiplies the Ghost module's *output* (same spatial size; the first 1x1 conv maps the
input's channels to the output's, ``in_channels=``); as a standalone ``attn`` block (channels kept) it is computed
from and gates its own input. With
``downsample=False`` the pooling and the up-sampling are skipped (the gate runs at full resolution).
Down-sampling needs feature maps of at least 2x2 (declared as ``Requires(min_size=2)``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import papers
from blockzoo.checks import check_input, check_int, check_odd
from blockzoo.registry import Claim, Requires, register_block


class DFCAttention(nn.Module):
    """DFC attention gate: 2x avg-pool -> 1x1 conv+BN -> 1xK dw conv+BN -> Kx1 dw conv+BN -> sigmoid -> nearest up."""

    def __init__(self, channels: int, kernel_size: int = 5, downsample: bool = True, in_channels: int | None = None):
        super().__init__()
        check_int(channels, "channels", min_value=1, owner="dfc")
        check_odd(kernel_size, "kernel_size", owner="dfc")
        k, p = kernel_size, kernel_size // 2
        self.kernel_size, self.downsample = kernel_size, downsample
        # in_channels != channels: GhostNetV2's gate, computed from a Ghost module's input (its official short_conv
        # maps C_in -> C_out); use gate() then, forward() needs in_channels == channels
        self.conv = nn.Conv2d(in_channels or channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.conv_h = nn.Conv2d(channels, channels, (1, k), padding=(0, p), groups=channels, bias=False)  # horizontal
        self.bn_h = nn.BatchNorm2d(channels)
        self.conv_v = nn.Conv2d(channels, channels, (k, 1), padding=(p, 0), groups=channels, bias=False)  # vertical
        self.bn_v = nn.BatchNorm2d(channels)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The attention map at the input's resolution, (N, C, H, W), values in (0, 1)."""
        h, w = x.shape[-2:]
        a = x
        if self.downsample:
            check_input(x, "dfc (down-sampling by 2; dfc(downsample=False) has no minimum)", min_size=2)
            a = F.avg_pool2d(a, kernel_size=2, stride=2)
        a = self.bn_v(self.conv_v(self.bn_h(self.conv_h(self.bn(self.conv(a))))))
        a = torch.sigmoid(a)
        if self.downsample:
            a = F.interpolate(a, size=(h, w), mode="nearest")
        return a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


@register_block(
    "dfc", slot="attn", paper=papers.GHOSTNETV2, family="dfc",
    summary="DFC attention (GhostNetV2): 2x avg-pool -> 1x1+BN -> 1x5 dw+BN -> 5x1 dw+BN -> sigmoid -> nearest up",
    claims=(
        Claim("layer order, kernels (1x5 then 5x1 depthwise), no biases, avg-pool 2/2 and nearest up-sampling as in "
              "the official ghostnetv2_torch.py",
              "tests/blocks/attention/test_dfc.py::test_dfc_hand_computed_odd_size"),
        Claim("parameters = C^2 + 2KC + 6C (1x1 conv, two depthwise convs, three BNs)",
              "tests/blocks/attention/test_dfc.py::test_dfc_params_and_macs"),
        Claim("the gate is computed at half resolution: C(C + 2K) * floor(H/2) * floor(W/2) MACs",
              "tests/blocks/attention/test_dfc.py::test_dfc_params_and_macs"),
    ),
    requires=Requires(min_size=2),
    notes="kernel_size must be odd; downsample=True: 2x avg-pool + nearest up-sampling (needs H, W >= 2). "
          "Standalone it gates its own input; in GhostNetV2 it gates the Ghost module's output.",
)
def dfc(channels: int, kernel_size: int = 5, downsample: bool = True) -> nn.Module:
    return DFCAttention(channels, kernel_size=kernel_size, downsample=downsample)
