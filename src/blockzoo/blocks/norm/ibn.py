"""IBN-Net's normalisation blocks: Pan, Luo, Shi & Tang, "Two at Once: Enhancing Learning and Generalization Capacities
via IBN-Net", ECCV 2018, arXiv:1807.09441 (inventory S052; official PyTorch code https://github.com/XingangPan/IBN-Net,
``ibnnet/modules.py`` and ``ibnnet/resnet_ibn.py``).

Instance Normalization (IN) normalises each sample's channel over H x W (appearance-invariant features), Batch
Normalization (BN) over the batch (content-discriminative features); IBN-Net uses both in the shallow layers.

* ``ibn_a`` (paper Fig. 3(b), the official ``IBN`` layer): the first ``int(C * ratio)`` channels are instance-normalised
  (affine IN: per-channel scale and shift, no running statistics), the other channels batch-normalised, and the two
  halves concatenated back in channel order. ratio = 0.5 (paper: "half of the channels"; official default). IN with an
  affine transform has the same 2 parameters per channel as BN, hence "no extra computational cost".
* ``ibn_b`` (paper Fig. 3(c)): affine Instance Normalization over all channels, the layer IBN-b inserts.

Where they go (:func:`resnet_placement`, used by the ResNet skeleton ``blockzoo.models.common.resnet`` when its
``norm`` is one of these blocks; the rules are those of the official ``resnet_ibn.py``):

* ``ibn_a``: the norm after the first conv of every residual block of every stage but the last (ResNet-50: conv2_x to
  conv4_x, not conv5_x: the official ``ibn_cfg=('a', 'a', 'a', None)``). Every other norm stays BN.
* ``ibn_b``: IN after the residual addition, before the ReLU, in the *last* block of the first two stages (conv2_x and
  conv3_x: ``ibn_cfg=('b', 'b', None, None)``, where only block ``blocks - 1`` of a stage gets the IN), and IN in place
  of the stem's BN (after conv1). Every other norm stays BN. ResNet-50-IBN-b thus has 2 x (256 + 512) = 1,536 more
  parameters than ResNet-50 (three IN layers, the stem's replacing a BN). The paper's Fig. 3 gives the positions
  inside a block (and the stages); which blocks of a stage get them is taken from the official code, whose released
  ImageNet weights these models are.

Backbones without such rules (every family but the ResNet skeleton) use the block at each of their norm positions.

Instance statistics of a single position are degenerate: on a 1x1 map (a norm after global pooling, as in ConvNeXt's
head) the IN part outputs its shift alone. ``torch.nn.InstanceNorm2d`` refuses such an input at forward; these blocks
compute the same formula with torch's instance-norm kernel and no such guard, so that they run (and trace) at every
norm position of every backbone -- use them where the maps are larger than 1x1, as the paper does.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.checks import check_int, check_positive
from blockzoo.errors import ConfigError
from blockzoo.registry import Claim, parse_slot_value, register_block

__all__ = ["IBN", "InstanceNorm2d", "ResNetPlacement", "resnet_placement"]

_TEST = "tests/blocks/norm/test_ibn.py"


def _instance_norm(x: torch.Tensor, m: nn.InstanceNorm2d) -> torch.Tensor:
    """``m``'s affine instance norm of ``x`` (input statistics; also defined on a 1x1 map: the shift)."""
    return torch.instance_norm(x, m.weight, m.bias, None, None, True, 0.0, m.eps, torch.backends.cudnn.enabled)


class InstanceNorm2d(nn.InstanceNorm2d):
    """Affine Instance Normalization: per sample and channel over H x W, no running statistics."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__(channels, eps=eps, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _instance_norm(x, self)


class IBN(nn.Module):
    """IBN-a's Instance-Batch Normalization: IN on the first ``int(C * ratio)`` channels, BN on the rest, concatenated.

    Submodules are named ``IN`` and ``BN`` as in the official code, so state-dict keys map 1:1 (``bn1.IN.weight``).
    """

    def __init__(self, channels: int, ratio: float = 0.5, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        check_int(channels, "channels", min_value=2, owner="ibn_a")
        check_positive(ratio, "ratio", owner="ibn_a")
        half = int(channels * ratio)
        if not 1 <= half < channels:
            raise ConfigError(f"ibn_a: ratio={ratio} gives {half} of {channels} channels to instance normalisation; "
                              f"choose a ratio in (0, 1) that leaves at least one channel to each of IN and BN")
        self.channels, self.half, self.ratio = channels, half, ratio
        self.IN = nn.InstanceNorm2d(half, eps=eps, affine=True)
        self.BN = nn.BatchNorm2d(channels - half, eps=eps, momentum=momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inst, batch = torch.split(x, [self.half, self.channels - self.half], dim=1)
        return torch.cat((_instance_norm(inst, self.IN), self.BN(batch)), dim=1)


@register_block(
    "ibn_a", slot="norm", paper=papers.IBNNET, family="ibn",
    summary="IBN-a: Instance Norm on the first half of the channels, BatchNorm on the rest (concatenated)",
    claims=(
        Claim("the first int(C * ratio) channels are instance-normalised per sample, the rest batch-normalised",
              f"{_TEST}::test_ibn_a_channel_split"),
        Claim("same parameter count as BatchNorm (2 per channel: IN is affine)", f"{_TEST}::test_ibn_a_params"),
        Claim("in a ResNet: the first norm of the blocks of every stage but the last (official ibn_cfg a, a, a, None)",
              f"{_TEST}::test_resnet_placement_ibn_a"),
        Claim("IBN-Net adds no computational cost: resnet50_ibn_a has ResNet-50's parameters and MACs",
              "tests/models/test_ibnnet.py::test_resnet50_ibn_a_no_extra_cost"),
    ),
    notes="ratio = share of IN channels (paper/official 0.5); momentum and eps are the BN half's (eps also IN's). In "
          "the ResNet skeleton norm='ibn_a' applies the paper's placement; elsewhere it replaces every norm.",
)
def ibn_a(channels: int, ratio: float = 0.5, eps: float = 1e-5, momentum: float = 0.1) -> nn.Module:
    return IBN(channels, ratio=ratio, eps=eps, momentum=momentum)


@register_block(
    "ibn_b", slot="norm", paper=papers.IBNNET, family="ibn",
    summary="IBN-b's Instance Norm (affine, all channels): after the residual addition and after the stem conv",
    claims=(
        Claim("instance-normalises each sample's channels over H x W with an affine transform",
              f"{_TEST}::test_ibn_b_is_instance_norm"),
        Claim("in a ResNet: IN after the addition (before the ReLU) in the last block of the first two stages, and "
              "IN in place of the stem's BN (official ibn_cfg b, b, None, None)", f"{_TEST}::test_ibn_b_position"),
    ),
    notes="In the ResNet skeleton norm='ibn_b' applies the paper's placement; elsewhere it replaces every norm "
          "(Instance Norm everywhere).",
)
def ibn_b(channels: int, eps: float = 1e-5) -> nn.Module:
    return InstanceNorm2d(channels, eps=eps)


# ------------------------------------------------------------------------------------------- placement in ResNets
@dataclass(frozen=True)
class ResNetPlacement:
    """The norm of each position of a ResNet: ``stem`` (after conv1), ``first(stage, block)`` (after a block's first
    conv), ``post(stage, block)`` (after the residual addition, ``"none"``: no norm there) and ``other`` (every other
    norm: the block's later norms and the projection shortcuts)."""

    other: Any
    stem: Any
    first: Callable[[int, int], Any]
    post: Callable[[int, int], Any]


def resnet_placement(norm: Any, layers: Sequence[int]) -> ResNetPlacement:
    """Where a ResNet with ``layers`` blocks per stage puts the model-wide ``norm`` value: the IBN-Net rules for
    ``ibn_a`` / ``ibn_b`` (module docstring), else ``norm`` at every usual position and none after the addition."""
    name, kw = parse_slot_value(norm)
    value = (name, kw) if kw else name
    if name == "ibn_a":
        last = len(layers) - 1
        return ResNetPlacement("bn", "bn", lambda s, b: value if s < last else "bn", lambda s, b: "none")
    if name == "ibn_b":
        shallow = min(2, len(layers) - 1)
        return ResNetPlacement("bn", value, lambda s, b: "bn",
                               lambda s, b: value if s < shallow and 0 < b == layers[s] - 1 else "none")
    return ResNetPlacement(norm, norm, lambda s, b: norm, lambda s, b: "none")
