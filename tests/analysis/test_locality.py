"""blockzoo.analysis.locality: ConViT's non-locality measure on hand-built attention maps and on models."""
from __future__ import annotations

import math

import pytest
import torch

from blockzoo import ConfigError, create_model
from blockzoo.analysis.locality import model_nonlocality, nonlocality, patch_distances


def test_patch_distances():
    d = patch_distances((2, 3))
    assert d.shape == (6, 6) and torch.equal(d, d.T) and not d.diagonal().any()
    assert d[0, 5].item() == pytest.approx(math.sqrt(5))          # (0, 0) -> (1, 2)
    assert d[1, 4].item() == 1.0                                  # (0, 1) -> (1, 1)


def test_self_attention_is_local_and_uniform_is_the_mean_distance():
    eye = torch.eye(4).expand(2, 3, 4, 4)                         # batch 2, 3 heads, 2x2 grid
    assert torch.equal(nonlocality(eye, (2, 2)), torch.zeros(3))
    uniform = torch.full((1, 1, 4, 4), 0.25)
    assert nonlocality(uniform, (2, 2)).item() == pytest.approx((0 + 1 + 1 + math.sqrt(2)) / 4)
    # 3x3 grid: the mean distance over all 81 (query, key) pairs
    pairs = [(abs(a // 3 - b // 3), abs(a % 3 - b % 3)) for a in range(9) for b in range(9)]
    mean = sum(math.hypot(*p) for p in pairs) / 81
    assert nonlocality(torch.full((1, 9, 9), 1 / 9), (3, 3)).item() == pytest.approx(mean)


def test_heads_batch_and_non_square_grids():
    # a 1x3 grid: head 0 looks one patch away from every query (distances 1, 1, 1), head 1 two, one and two away
    a = torch.zeros(2, 3, 3)
    a[0, 0, 1] = a[0, 1, 2] = a[0, 2, 1] = 1
    a[1, 0, 2] = a[1, 2, 0] = 1
    a[1, 1, 0] = 1
    assert nonlocality(a, (1, 3)).tolist() == pytest.approx([1.0, 5 / 3])
    # the batch is averaged: a local and a uniform sample give the mean of the two
    both = torch.stack([torch.eye(6)[None], torch.full((1, 6, 6), 1 / 6)])
    assert nonlocality(both, (2, 3)).item() == pytest.approx(nonlocality(both[1], (2, 3)).item() / 2)


def test_prefix_tokens_are_dropped_and_rows_renormalised():
    a = torch.zeros(1, 5, 5)                                      # class token + 2x2 patches
    a[0, 0] = 0.2
    a[0, 1:, 0] = 0.5                                             # half of every patch row on the class token
    a[0, 1:, 1:] = 0.5 * torch.eye(4)
    assert nonlocality(a, (2, 2)).item() == 0.0
    a[0, 1:, 1:] = 0.5 / 4
    assert nonlocality(a, (2, 2)).item() == pytest.approx((2 + math.sqrt(2)) / 4)
    with pytest.raises(ConfigError, match="N >= H"):
        nonlocality(torch.full((1, 4, 4), 0.25), (3, 3))


def test_model_nonlocality_on_a_convit():
    """One (heads,) vector per attention layer; with the GPSA gates fully open a GPSA layer's non-locality is that of
    its positional attention alone (input-independent); the self-attention layers with the class token are measured
    on their patch tokens."""
    m = create_model("convit_tiny_patch4_32", depth=3, local_up_to_layer=2)
    with torch.no_grad():
        for b in m.blocks[:2]:
            b.attn.gating_param.fill_(1e4)
    out = model_nonlocality(m, torch.randn(2, 3, 32, 32))
    assert len(out) == 3 and all(v.shape == (4,) for v in out)
    for b, v in zip(m.blocks[:2], out):
        torch.testing.assert_close(v, nonlocality(b.attn.position_map(8, 8, torch.zeros(1)), (8, 8)))
    assert m.training                                             # the mode is restored
    # another input size: the grid follows the input (7x7 patches at 28 px)
    assert model_nonlocality(m, torch.randn(1, 3, 28, 28))[0].shape == (4,)


def test_model_nonlocality_needs_attention_and_a_grid():
    with pytest.raises(ConfigError, match="attention"):
        model_nonlocality(create_model("resnet20"), torch.randn(1, 3, 32, 32), grid=(8, 8))
    with pytest.raises(ConfigError, match="grid"):
        model_nonlocality(create_model("poolformer_s12", mixer="gpsa", img_size=64), torch.randn(1, 3, 64, 64))
