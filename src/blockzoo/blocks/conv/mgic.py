"""Multigrid-in-channels (MGIC) unit: Eliasof, Ephrath, Ruthotto & Treister, "MGIC: Multigrid-in-Channels Neural
Network Architectures", SIAM J. Sci. Comput. 2023, arXiv:2011.09128 (inventory S106; official PyTorch code
https://github.com/BGUCompSci/MultigridInChannelsCNNs, ``resnetMG.py`` / ``mobilenetv3_MG.py``).

The paper replaces each CNN block by an MGIC block: a V-cycle over the *channel* dimension whose operators are grouped
convolutions of a small, fixed group size g, so the parameters grow linearly with the width c (every grouped conv has
c * g * k^2 weights) while the coarsest level, which has at most g channels, is fully coupled. One level on c
channels (c > g, c a multiple of g):

* **restriction** R: a grouped 1x1 conv c -> c/2 with c/g groups (each group of g channels gives g/2 coarse ones);
* the **coarse level**: the same cycle on the c/2 channels ``x_H = R x`` (recursively), giving ``y_H``;
* **coarse-grid correction**: ``z = x + norm(P (y_H - x_H))`` with the prolongation P a grouped 1x1 conv c/2 -> c
  (c/g groups) followed by a norm (full-approximation-scheme form: only the coarse level's *change* is prolongated);
* **relaxation**: the level's block with grouped convolutions of group size g (c/g groups) on ``z``.

The coarsest level is the level's block with one group (a standard, fully coupled convolution). Since the coarse
groups at level l + 1 span two groups of level l, every output channel depends on every input channel. The unit
stops coarsening at the first level that has at most ``coarse_channels`` (default g) channels or whose width is not a
multiple of g: a width such as 48 = 3 g gives the levels 48 -> 24, and the 24-channel level is fully coupled.

What comes from where:

* The structure above (nested grouped convolutions of small group size, coarsening by 2, full coupling on the
  coarsest level, linear growth) is the paper's abstract and method; the exact operators are read off the official
  code: R and P as grouped 1x1 convs with c/g groups (``groups = c / numberOfFixGroup``), the correction
  ``x + bnp1(P(x_c - R x))`` (``MgStepUp_pwGroup``), no relaxation on the way down (``twoSided=False``), one block of
  grouped convs after each correction, a dense block on the coarsest level, and R / P started as channel averages
  (each output the mean of the inputs of its group, as the official constructors' constant init; they set P to
  ``1/g``, half the mean, which the BN after P makes immaterial). :meth:`MGICLevel.init_weights` re-applies it
  after a backbone's generic init (the official scripts overwrite it with their generic conv init).
* The group size g = 16 is the official ``ModelParameters`` default (``numberOfFixGroup=16``, ``mgFcChannel=16``);
  the paper's per-experiment group sizes could not be read here (only its abstract was available), so no table
  value is claimed.
* Official variant, ``coarse_channels=g // 2``: the official ``genTensor4CycleDwGroup`` coarsens until a level has
  fewer than ``mgFcChannel`` (= g) channels, i.e. one level further than here (its g-channel level already has a
  single group), ending with g/2 channels.
* As a ``conv``-slot unit (which replaces one k x k conv -> norm -> act), the block of every level is a 3x3
  conv -> norm -> act (grouped on the fine levels). When the unit changes the channel count or the resolution, it
  first applies a *connector*: a 3x3 conv with ``gcd(C_in, C_out)`` groups (stride s) -> norm -> act, as the
  official ResNet block's ``shortcut`` (a 3x3 conv with ``groups=in_planes``, BN, ReLU) -- linear in the width too.
  The paper's MGIC networks use larger level blocks (a residual basic block in the MGIC ResNets, an inverted
  residual in the MGIC MobileNets); :class:`MGICLevel` takes any level block (``blockzoo.models.mgic``).

The unit makes its own groups, so it refuses a position that asks for a grouped conv (``groups > 1``, e.g. the 3x3
conv of a ResNeXt bottleneck) with an :class:`~blockzoo.errors.IncompatibleBlockError`.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.common.layers import ConvNormAct, make_norm
from blockzoo.checks import check_counts, check_int
from blockzoo.errors import ConfigError, IncompatibleBlockError
from blockzoo.registry import Claim, Requires, register_block

__all__ = ["MGICLevel", "MGICConv", "mgic_levels", "build_mgic_cycle"]

# level block factory: (channels, groups) -> module mapping `channels` to `channels` channels at the same resolution
LevelBlock = Callable[[int, int], nn.Module]


def mgic_levels(channels: int, group_size: int = 16, coarse_channels: int | None = None) -> list[int]:
    """Channel counts of the MGIC levels, finest first: halve while the level has more than ``coarse_channels``
    (default: ``group_size``) channels and is a multiple of ``group_size``."""
    check_int(group_size, "group_size", min_value=2, owner="mgic")
    if group_size % 2:
        raise ConfigError(f"mgic: group_size must be even (a restriction group maps g channels to g/2), got "
                          f"{group_size}; use {group_size - 1} or {group_size + 1}")
    coarse = group_size if coarse_channels is None else check_int(coarse_channels, "coarse_channels", min_value=1,
                                                                   owner="mgic")
    levels = [check_int(channels, "channels", min_value=1, owner="mgic")]
    while levels[-1] > coarse and levels[-1] % group_size == 0:
        levels.append(levels[-1] // 2)
    return levels


class MGICLevel(nn.Module):
    """One fine level of the channel V-cycle (see the module docstring): ``restrict`` (grouped 1x1, c -> c/2),
    ``coarse`` (the rest of the cycle on c/2 channels), ``prolong`` (grouped 1x1, c/2 -> c) + ``prolong_norm``, and
    ``block`` (the level block with c/g groups) on the corrected input."""

    def __init__(self, levels: list[int], group_size: int, level_block: LevelBlock, norm="bn"):
        super().__init__()
        c, c_coarse = levels[0], levels[1]
        groups = c // group_size
        self.restrict = nn.Conv2d(c, c_coarse, 1, groups=groups, bias=False)
        self.coarse = build_mgic_cycle(levels[1:], group_size, level_block, norm)
        self.prolong = nn.Conv2d(c_coarse, c, 1, groups=groups, bias=False)
        self.prolong_norm = make_norm(norm, c) if norm not in (None, "none") else nn.Identity()
        self.block = level_block(c, groups)
        self.init_weights()

    def init_weights(self) -> None:
        """R and P start as channel averages (each output the mean of the channels of its group; official init)."""
        for conv in (self.restrict, self.prolong):
            nn.init.constant_(conv.weight, 1.0 / conv.weight.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_coarse = self.restrict(x)
        x = x + self.prolong_norm(self.prolong(self.coarse(x_coarse) - x_coarse))
        return self.block(x)


def build_mgic_cycle(levels: list[int], group_size: int, level_block: LevelBlock, norm="bn") -> nn.Module:
    """The V-cycle over ``levels`` (from :func:`mgic_levels`): nested :class:`MGICLevel` modules ending with the
    fully coupled level block (one group) on the coarsest level."""
    if len(levels) == 1:
        return level_block(levels[0], 1)
    return MGICLevel(levels, group_size, level_block, norm)


class MGICConv(nn.Module):
    """The MGIC ``conv``-slot unit: [connector: 3x3 conv with gcd(C_in, C_out) groups, stride s -> norm -> act, when
    the channels or the resolution change] -> the channel V-cycle on C_out channels whose level blocks are 3x3
    conv -> norm -> act (c/g groups; one group on the coarsest level).

    Args:
        in_channels, out_channels (default ``in_channels``), stride: the unit's geometry.
        groups: the host position's grouping; must be 1 (the unit makes its own groups).
        norm, act: norm / activation of every conv of the unit, and the norm after each prolongation (official
            code: BN, ReLU).
        group_size: g, the channels per group of every grouped conv (official default 16; even).
        coarse_channels: coarsening stops at the first level with at most this many channels (default g;
            ``g // 2`` reproduces the official code's one extra level).
        level_block: ``(channels, groups) -> module``, the block of every level (default: 3x3 conv -> norm -> act
            with those groups); the MGIC networks pass their residual level blocks.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, stride: int = 1, groups: int = 1,
                 norm="bn", act="relu", *, group_size: int = 16, coarse_channels: int | None = None,
                 level_block: LevelBlock | None = None):
        super().__init__()
        out_channels = out_channels or in_channels
        check_counts("mgic", in_channels=in_channels, out_channels=out_channels, stride=stride, groups=groups)
        if groups != 1:
            raise IncompatibleBlockError(
                f"'mgic' builds its own grouped convolutions (group size {group_size}) and cannot replace a grouped "
                f"conv (groups={groups}); use it where the conv has groups=1, or use conv3x3 here")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.levels = mgic_levels(out_channels, group_size, coarse_channels)
        if stride != 1 or in_channels != out_channels:
            self.connector: nn.Module = ConvNormAct(in_channels, out_channels, 3, stride,
                                                    groups=math.gcd(in_channels, out_channels), norm=norm, act=act)
        else:
            self.connector = nn.Identity()
        if level_block is None:
            def level_block(c: int, g: int) -> nn.Module:
                return ConvNormAct(c, c, 3, groups=g, norm=norm, act=act)
        self.cycle = build_mgic_cycle(self.levels, group_size, level_block, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cycle(self.connector(x))


_TEST = "tests/blocks/conv/test_mgic.py"


@register_block(
    "mgic", slot="conv", paper=papers.MGIC, family="mgic",
    summary="Multigrid-in-channels unit: a V-cycle over channels of grouped convs (group size g), dense coarsest level",
    requires=Requires(keeps_channels=False, stride=True),
    claims=(
        Claim("parameters grow linearly with the width (MGIC: doubling c adds twice the previous increment), a dense "
              "3x3 conv quadratically (about 4x)", f"{_TEST}::test_mgic_params_linear_in_width"),
        Claim("full coupling: every output channel depends on every input channel",
              f"{_TEST}::test_mgic_full_coupling_jacobian"),
        Claim("parameter count by formula: (10g + 4)(2c - 2g) + 9g^2 + 2g for c = g * 2^k",
              f"{_TEST}::test_mgic_param_formula"),
    ),
    notes="group_size = g (official default 16, even); coarse_channels = g // 2 gives the official code's extra "
          "level. A 3x3 connector with gcd(C_in, C_out) groups handles stride / channel changes. Refuses groups > 1.",
)
def mgic(in_channels: int, out_channels: int | None = None, stride: int = 1, groups: int = 1, norm="bn",
         act="relu", group_size: int = 16, coarse_channels: int | None = None) -> nn.Module:
    return MGICConv(in_channels, out_channels, stride, groups, norm, act, group_size=group_size,
                    coarse_channels=coarse_channels)
