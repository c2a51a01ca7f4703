"""Improved Group Normalization: Gunawan, Yin & Zhang, "Understanding and Improving Group Normalization", arXiv
2022, arXiv:2207.01972 (inventory S100; no official code is linked).

The paper finds that GroupNorm (GN) trains less stably than BatchNorm (BN) and is more sensitive to distortions
(input noise, regularisation), and proposes "a new normalization layer built on top of GN, by incorporating the
advantages of BN" (its abstract), i.e. BN's batch statistics.

**What could not be read**: the paper's full text (its equations, the exact way GN and the batch statistics are
combined, and any default values) was not available to us; only the abstract was. This block implements the plain
reading of the abstract, a GN followed by a batch standardisation, and should be checked against the paper's method
section:

    x_gn = GN(x)                       (G groups, no affine; G = 32 or the largest divisor of C below it)
    x_hat = (x_gn - mu_B) / sqrt(sigma_B^2 + eps)   (per channel over N, H, W: BN's batch statistics, running
                                                       averages with ``momentum`` for eval mode, as BN)
    y = gamma * x_hat + beta           (one per-channel affine, gamma = 1, beta = 0 at init)

Properties that follow: in eval mode the batch step uses the running statistics (a per-channel affine map of GN's
output, foldable like BN); with a single sample in training mode the batch step standardises each channel of that
sample over H x W, so with ``groups = C`` (GN = Instance Norm) the layer is Instance Norm again (standardising a
standardised map changes nothing). An unattributed public experiment file tries sequential and parallel GN/BN
combinations with learnable mixing weights ("GroupNormPlus..."); it could not be tied to the paper, so none of its
variants is offered here.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import papers
from blockzoo.blocks.common.layers import gn_groups
from blockzoo.checks import check_int, check_positive
from blockzoo.registry import Claim, register_block

__all__ = ["GroupBatchNorm2d"]

_TEST = "tests/blocks/norm/test_gn_plus.py"


class GroupBatchNorm2d(nn.Module):
    """GroupNorm (no affine) -> batch standardisation per channel (running statistics in eval) -> affine."""

    def __init__(self, channels: int, groups: int = 32, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        check_int(groups, "groups", min_value=1, owner="gn_plus")
        check_positive(momentum, "momentum", owner="gn_plus")
        self.channels, self.groups, self.eps = channels, gn_groups(channels, groups), float(eps)
        self.batch = nn.BatchNorm2d(channels, eps=eps, momentum=momentum, affine=False)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def init_weights(self) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.batch(F.group_norm(x, self.groups, None, None, self.eps))
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.channels}, groups={self.groups}, eps={self.eps}"


@register_block(
    "gn_plus", slot="norm", paper=papers.GN_PLUS, family="gn_plus",
    summary="GroupNorm followed by BN's batch standardisation (running statistics in eval), one affine "
            "(reading of the paper's abstract; its equations could not be read)",
    claims=(
        Claim("y = gamma * BNstat(GN(x)) + beta: hand-computed small case", f"{_TEST}::test_hand_computed"),
        Claim("eval mode uses the running batch statistics (a fixed per-channel affine map of GN's output)",
              f"{_TEST}::test_eval_uses_running_statistics"),
        Claim("batch size 1 with groups = C reduces to Instance Normalization", f"{_TEST}::test_batch1_groups_c_is_in"),
        Claim("outperforms GN at every batch size and stabilises training (paper); measured here in resnet20 on a "
              "Fashion-MNIST subset at batch 8 and 64, same groups", "benchmarks/claims/norm_gn_plus.py",
              status="measured"),
    ),
    notes="groups as gn (32 or the largest divisor of C below it); momentum and eps are the batch step's (eps also "
          "GN's). The paper's exact formulation could not be read: see the module docstring.",
    usage='model = create_model("resnet20", norm="gn_plus")',
)
def gn_plus(channels: int, groups: int = 32, eps: float = 1e-5, momentum: float = 0.1) -> nn.Module:
    return GroupBatchNorm2d(channels, groups=groups, eps=eps, momentum=momentum)
