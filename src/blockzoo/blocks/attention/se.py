"""Squeeze-and-Excitation (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018, arXiv:1709.01507).

SE: global average pooling -> FC(C, C/r) -> ReLU -> FC(C/r, C) -> sigmoid -> channel-wise rescale, r = 16.
The paper uses fully-connected layers with biases and ``C // r`` hidden units (no rounding to multiples of 8, unlike
timm's ``SEModule``); with these choices SE-ResNet-50 has exactly 28,088,024 parameters.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import papers
from blockzoo.blocks.common.layers import make_act, make_divisible
from blockzoo.checks import check_choice, check_int
from blockzoo.registry import Claim, parse_slot_value, register_block

GATES = {"sigmoid": torch.sigmoid, "hsigmoid": F.hardsigmoid}


class SqueezeExcite(nn.Module):
    """SE block. ``hidden`` overrides ``channels // reduction``; ``gate`` is ``sigmoid`` (paper) or ``hsigmoid``;
    ``act`` the hidden activation (paper: ReLU; an ``act`` slot value, e.g. ``"silu"`` as in MOAT's official code)."""

    def __init__(self, channels: int, reduction: int = 16, hidden: int | None = None, gate: str = "sigmoid",
                 act: type[nn.Module] | str = nn.ReLU):
        super().__init__()
        check_int(channels, "channels", min_value=1, owner="se")
        check_choice(gate, "gate", GATES, owner="se")
        if hidden is None:
            self.hidden = max(1, channels // check_int(reduction, "reduction", min_value=1, owner="se"))
        else:
            self.hidden = check_int(hidden, "hidden", min_value=1, owner="se")
        self.fc1 = nn.Linear(channels, self.hidden)
        self.act = make_act(act) if isinstance(act, str) else act()
        self.fc2 = nn.Linear(self.hidden, channels)
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3))                                   # squeeze: (N, C)
        s = GATES[self.gate](self.fc2(self.act(self.fc1(s))))  # excitation
        return x * s[:, :, None, None]


@register_block(
    "se", slot="attn", paper=papers.SENET, family="se",
    summary="Squeeze-and-Excitation: GAP -> FC(C, C/16) -> ReLU -> FC -> sigmoid -> rescale",
    claims=(Claim("SE-ResNet-50 has 28,088,024 parameters (ResNet-50 + 2,530,992)",
                  "tests/models/test_resnet.py::test_param_counts"),
            Claim("hidden size is C // r with r = 16", "tests/blocks/attention/test_se.py::test_se_hidden_and_values")),
)
def se(channels: int, reduction: int = 16, hidden: int | None = None, gate: str = "sigmoid",
       act: str = "relu") -> nn.Module:
    return SqueezeExcite(channels, reduction=reduction, hidden=hidden, gate=gate, act=act)


def se_value_divisible(value, channels: int, divisor: int, round_limit: float = 0.9):
    """An ``se`` slot value with the hidden width rounded the mobile-network way, ``make_divisible(C / reduction,
    divisor)`` (timm's SqueezeExcite in LSNet: divisor 8, no round limit; GhostNet: divisor 4), when it names no
    ``hidden``; any other value (another block, or a bad reduction, which ``se`` itself refuses) is returned as is."""
    name, kw = parse_slot_value(value)
    r = kw.get("reduction", 16)
    if name != "se" or "hidden" in kw or isinstance(r, bool) or not isinstance(r, int) or r < 1:
        return value
    return name, {**kw, "hidden": make_divisible(channels / r, divisor, round_limit=round_limit)}
