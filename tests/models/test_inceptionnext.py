"""blockzoo.models.inceptionnext: exact parameter counts and MACs at 224 px."""
from __future__ import annotations

import pytest

from helpers import check_macs_224, check_param_count

# name -> (exact count of our build, paper/timm count, relative tolerance vs the paper's rounding)
PARAMS = {
    "inception_next_atto": (4_156_520, 4.2e6, 0.012),      # README "4.2M": one decimal, so +-0.05M
    "inception_next_tiny": (28_055_680, 28.06e6, 0.005),
    "inception_next_small": (49_374_016, 49.37e6, 0.005),
}


MAC_PAPER = {"inception_next_atto": 0.51e9, "inception_next_tiny": 4.19e9, "inception_next_small": 8.36e9}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_param_counts(name):
    check_param_count(name, *PARAMS[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MAC_PAPER))
def test_macs_tiny_224(name):
    """MACs at 224 px (count_macs: convs + linears) equal the recorded count and are within 3% of the paper."""
    check_macs_224(name, MAC_PAPER[name])
