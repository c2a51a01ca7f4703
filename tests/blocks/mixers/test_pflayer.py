"""blockzoo.blocks.mixers.pflayer: the parameter-free conv units keep the channel count."""
from __future__ import annotations

import pytest

from blockzoo.registry import IncompatibleBlockError, create_block, create_model


def test_pf_conv_units_reject_width_change():
    with pytest.raises(IncompatibleBlockError, match="keeps the channel count"):
        create_model("resnet18", conv="pf_maxpool")
    with pytest.raises(IncompatibleBlockError, match="keeps the channel count"):
        create_block("pf_hybrid", 16, out_channels=32, stride=2)
