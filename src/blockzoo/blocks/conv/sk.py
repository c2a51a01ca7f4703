"""Selective Kernel (SK) unit: Li, Wang, Hu & Yang, "Selective Kernel Networks", CVPR 2019, arXiv:1903.06586
(inventory S097; official Caffe code https://github.com/implus/SKNet).

An SK unit replaces the k x k convolution of a block (the ``conv`` slot) by three steps:

* **Split** into M branches of grouped 3x3 convolutions with dilation 1, 2, ... (the paper's 3x3 and "5x5 as a
  dilated 3x3"), each followed by BN + ReLU. The stride is applied in every branch.
* **Fuse**: U = sum of the branches -> global average pooling s (C values) -> FC (1x1 conv, no bias) to
  d = max(C / r, L) -> BN -> ReLU, giving z; r = 16, L = 32.
* **Select**: one FC (no bias) per branch d -> C (stored as a single 1x1 conv d -> M*C, branch-major as in the official
  ``B_fc2`` + ``Reshape(0, M, -1, 0)``), softmax **across the M branches** for every channel, output
  V = sum_i a_i * branch_i.

Facts taken from the official ``models/sknet50.prototxt``: grouped branches (``3x3g32`` and ``3x3g32d2``, G = 32 in
SKNet-50, i.e. the ResNeXt cardinality of the host block), both branches strided in down-sampling blocks, ``B_fc1``
and ``B_fc2`` without bias, BN + ReLU after ``B_fc1`` and none after ``B_fc2``, both FCs initialised with a Gaussian of
std 0.01 (re-applied by :meth:`SelectiveKernel.init_weights`, so the init survives a backbone's generic init),
d = 32 for C = 128 .. 512 and 64 for C = 1024.

The grouping is not fixed here: the unit uses the ``groups`` its host passes (Bottleneck(groups=32) in ``sknet50``,
``groups=1`` when used stand-alone or in a basic block).

Limitation: the fuse BatchNorm normalises a (N, d, 1, 1) tensor, so in training mode the batch must hold at least 2
samples (as in the official code); use ``fc_norm="none"`` (then the FC gets a bias) or ``fc_norm="ln2d"`` for a
batch-independent variant.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.common.layers import ConvNormAct, make_act, make_norm
from blockzoo.checks import check_counts, check_groups, tracing
from blockzoo.errors import InputShapeError
from blockzoo.registry import Claim, Requires, register_block

__all__ = ["SelectiveKernel", "sk_hidden_dim"]


def sk_hidden_dim(channels: int, reduction: int = 16, min_dim: int = 32) -> int:
    """Width d = max(C / r, L) of the fuse vector z (paper eq. 4; integer division as in the official models)."""
    return max(channels // reduction, min_dim)


class SelectiveKernel(nn.Module):
    """SK unit (Split-Fuse-Select) usable as a k x k conv replacement.

    Args:
        in_channels: input channels.
        out_channels: output channels C (default: ``in_channels``).
        stride: stride of every branch.
        groups: convolution groups of every branch (the paper's G; 32 in SKNet-50).
        norm, act: norm / activation of the branches (slot values; paper: BN, ReLU).
        branches: M, the number of branches; branch i is a 3x3 conv with dilation i + 1 (receptive field 3 + 2i).
        reduction: r in d = max(C / r, L).
        min_dim: L in d = max(C / r, L).
        fc_norm: norm after the fuse FC (official: ``"bn"``); ``"none"`` drops it and gives the FC a bias.
        fc_act: activation after the fuse FC (official: ReLU).
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, stride: int = 1, groups: int = 1,
                 norm="bn", act="relu", *, branches: int = 2, reduction: int = 16, min_dim: int = 32,
                 fc_norm="bn", fc_act="relu"):
        super().__init__()
        out_channels = out_channels or in_channels
        check_counts("sk", in_channels=in_channels, out_channels=out_channels, stride=stride, groups=groups,
                     branches=branches, reduction=reduction, min_dim=min_dim)
        check_groups(in_channels, out_channels, groups, owner="sk")
        self.in_channels, self.out_channels, self.num_branches = in_channels, out_channels, branches
        self.hidden = sk_hidden_dim(out_channels, reduction, min_dim)
        self.branches = nn.ModuleList(
            ConvNormAct(in_channels, out_channels, 3, stride, groups=groups, dilation=i + 1, norm=norm, act=act)
            for i in range(branches))
        no_fc_norm = fc_norm in (None, "none")
        self.fc_reduce = nn.Conv2d(out_channels, self.hidden, 1, bias=no_fc_norm)
        self.fc_norm = nn.Identity() if no_fc_norm else make_norm(fc_norm, self.hidden)
        self.fc_act = nn.Identity() if fc_act in (None, "none") else make_act(fc_act)
        self.fc_select = nn.Conv2d(self.hidden, branches * out_channels, 1, bias=False)
        self.softmax = nn.Softmax(dim=1)  # across branches; a module so that hooks can read the attention
        self.init_weights()

    def init_weights(self) -> None:
        """Official init of the two attention FCs: Gaussian, std 0.01 (so the initial selection is near uniform)."""
        nn.init.normal_(self.fc_reduce.weight, std=0.01)
        nn.init.normal_(self.fc_select.weight, std=0.01)
        if self.fc_reduce.bias is not None:
            nn.init.zeros_(self.fc_reduce.bias)

    def attention(self, u: torch.Tensor) -> torch.Tensor:
        """Selection weights (N, M, C, 1, 1) from the fused map U (softmax over dim 1 = the branches)."""
        n = u.shape[0]
        if self.training and isinstance(self.fc_norm, nn.modules.batchnorm._BatchNorm) and not tracing() and n == 1:
            raise InputShapeError("sk: the fuse BatchNorm sees one value per channel with batch size 1 in training "
                                  "mode; train with batch size >= 2, call .eval(), or build the unit with "
                                  "fc_norm='none' or fc_norm='ln2d'")
        z = self.fc_act(self.fc_norm(self.fc_reduce(u.mean((2, 3), keepdim=True))))
        logits = self.fc_select(z).view(n, self.num_branches, self.out_channels, 1, 1)
        return self.softmax(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = torch.stack([b(x) for b in self.branches], dim=1)  # (N, M, C, H, W)
        a = self.attention(feats.sum(1))
        return (feats * a).sum(1)


@register_block(
    "sk", slot="conv", paper=papers.SKNET, family="sk",
    summary="Selective Kernel unit: 3x3 + dilated 3x3 branches, fused by a softmax attention across branches",
    requires=Requires(keeps_channels=False, stride=True),
    claims=(
        Claim("attention is a softmax across the M branches: the weights of every channel sum to 1",
              "tests/blocks/conv/test_sk.py::test_sk_softmax_across_branches"),
        Claim("d = max(C/r, L), r = 16, L = 32; parameter count of the unit by formula",
              "tests/blocks/conv/test_sk.py::test_sk_param_count_formula"),
        Claim("output = sum_i a_i * branch_i (selection)", "tests/blocks/conv/test_sk.py::test_sk_selects_branch"),
        Claim("SKNet-50 has 27.5M parameters (ResNeXt-50 32x4d body with SK units)",
              "tests/models/test_sknet.py::test_sknet50_params"),
        Claim("SKNet-50 costs 4.47 GFLOPs (MACs) at 224x224", "tests/models/test_sknet.py::test_sknet50_macs"),
    ),
    notes="branches = M, reduction = r, min_dim = L; fc_norm='none' gives the fuse FC a bias. Groups come from the "
          "host block (32 in sknet50). Batch size >= 2 in training with fc_norm='bn'.",
)
def sk(in_channels: int, out_channels: int | None = None, stride: int = 1, groups: int = 1, norm="bn", act="relu",
       branches: int = 2, reduction: int = 16, min_dim: int = 32, fc_norm="bn", fc_act="relu") -> nn.Module:
    return SelectiveKernel(in_channels, out_channels, stride, groups, norm, act, branches=branches,
                           reduction=reduction, min_dim=min_dim, fc_norm=fc_norm, fc_act=fc_act)
