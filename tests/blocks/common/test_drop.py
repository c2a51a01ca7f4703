"""blockzoo.blocks.common.drop: DropPath with LayerScale, and the linear drop-path schedule over blocks."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from blockzoo.blocks.common.drop import DropPath, drop_path_schedule
from blockzoo.blocks.common.layer_scale import LayerScale
from blockzoo.registry import create_model


def test_drop_path_and_layer_scale():
    dp = DropPath(0.5).train()
    torch.manual_seed(0)
    x = torch.ones(64, 3, 2, 2)
    y = dp(x)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}         # dropped, or kept and scaled by 1 / 0.5
    assert torch.all(per_sample.min(1).values == per_sample.max(1).values)   # whole samples
    assert 0 < (per_sample[:, 0] == 0).sum() < 64
    assert torch.equal(dp.eval()(x), x)
    ls = LayerScale(3, 1e-6)
    assert torch.equal(ls.gamma, torch.full((3,), 1e-6))
    with torch.no_grad():
        ls.gamma.copy_(torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(ls(torch.ones(1, 3, 1, 1)).flatten(), torch.tensor([1.0, 2.0, 3.0]))


def test_drop_path_schedule_linear_over_blocks():
    assert drop_path_schedule((2, 2), 0.3) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    m = create_model("convnext_tiny", drop_path_rate=0.17, img_size=None, num_classes=0)
    probs = [blk.drop_path.drop_prob if isinstance(blk.drop_path, DropPath) else 0.0
             for st in m.stages for blk in st.blocks]
    assert len(probs) == 18
    assert probs == pytest.approx([0.17 * k / 17 for k in range(18)])
    assert probs == pytest.approx(torch.linspace(0, 0.17, 18).tolist())
    assert m.drop_path_rates == pytest.approx(probs)
    pf = create_model("poolformer_s12", drop_path_rate=0.1, img_size=None)
    assert pf.stages[3].blocks[1].drop_path1.drop_prob == pytest.approx(0.1)
    assert isinstance(pf.stages[0].blocks[0].drop_path1, nn.Identity)   # first block: rate 0
