"""blockzoo.blocks.mixers.poolformer (and the pooling/identity mixers): parameter-free, hand-computed outputs."""
from __future__ import annotations

import pytest
import torch

from blockzoo.registry import create_block
from helpers import n_params


def test_pool_mixers_parameter_free():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    for name in ("maxpool", "avgpool", "pool", "identity"):
        assert n_params(create_block(name, 32)) == 0
    mx, av, pl = create_block("maxpool", 1), create_block("avgpool", 1), create_block("pool", 1)
    assert mx(x)[0, 0, 0, 0].item() == 5.0                         # max of [[0, 1], [4, 5]]
    assert mx(x)[0, 0, 1, 1].item() == 10.0
    assert av(x)[0, 0, 0, 0].item() == pytest.approx((0 + 1 + 4 + 5) / 4)   # padding excluded from the mean
    assert av(x)[0, 0, 1, 1].item() == pytest.approx((0 + 1 + 2 + 4 + 5 + 6 + 8 + 9 + 10) / 9)
    torch.testing.assert_close(pl(x), av(x) - x)                   # PoolFormer: avgpool(x) - x
    assert torch.equal(create_block("identity", 1)(x), x)
    assert av(x).shape == mx(x).shape == x.shape
