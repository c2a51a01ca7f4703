"""blockzoo.models.swinv2: exact parameter counts, MACs by hand and at 256 px, window-8 weights in the window-16
model, the V2 init, the CIFAR-scale variant trains."""
from __future__ import annotations

import pytest
import torch

from blockzoo import create_model
from blockzoo.registry import get_model_spec
from helpers import check_param_count, count_macs, fit_losses, meta_model, meta_params

PARAMS = {   # name -> (exact count = the official / timm definition, paper figure, tolerance)
    "swinv2_tiny_window8_256": (28_347_154, 28e6, 0.02),
    "swinv2_tiny_window16_256": (28_347_154, 28e6, 0.02),
    "swinv2_small_window8_256": (49_728_418, 50e6, 0.02),
}
MAC_PAPER = {"swinv2_tiny_window8_256": 5.9e9, "swinv2_tiny_window16_256": 6.6e9, "swinv2_small_window8_256": 11.5e9}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_param_counts(name):
    check_param_count(name, *PARAMS[name])


def test_param_count_vs_v1():
    """Per block V2 drops the (2M-1)^2 x heads bias table and the k bias and adds the CPB MLP (2 x 512 + 512 +
    512 x heads) and the logit scale (heads); merging normalises its output instead of its 4 C_in input."""
    dims, heads, windows = (32, 64, 128, 256), (1, 2, 4, 8), (4, 4, 4, 2)
    diff = 0
    for i, (c, h, w) in enumerate(zip(dims, heads, windows)):
        diff += 2 * (-(2 * w - 1) ** 2 * h - c + (2 * 512 + 512 + 512 * h) + h)
        if i:
            diff -= 2 * c                  # LN(2 C_in) instead of LN(4 C_in): 4 C_in = 2 C parameters fewer
    assert meta_params("swinv2_nano_patch2_window4_32") - meta_params("swin_nano_patch2_window4_32") == diff


def _cpb_macs(depths, heads, windows) -> int:
    """The CPB MLP of every block: (2M-1)^2 coordinates through Linear(2, 512) and Linear(512, heads)."""
    return sum(d * (2 * w - 1) ** 2 * (2 * 512 + 512 * h) for d, h, w in zip(depths, heads, windows))


def test_macs_by_hand_nano():
    """V2 computes what V1 computes (qkv, proj, MLP, attention products, merging: the same shapes) plus the CPB
    MLPs; V1's MACs are checked by hand in test_swin.py."""
    v2 = count_macs(create_model("swinv2_nano_patch2_window4_32"), (3, 32, 32))
    v1 = count_macs(create_model("swin_nano_patch2_window4_32"), (3, 32, 32))
    assert v2 - v1 == _cpb_macs((2, 2, 2, 2), (1, 2, 4, 8), (4, 4, 4, 2))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MAC_PAPER))
def test_macs_256(name):
    """MACs at 256 px equal the recorded count and are within 3% of the official figures."""
    spec = get_model_spec(name)
    ours = count_macs(create_model(name), (3, 256, 256))
    assert ours == spec.reference["macs_256"] and spec.paper_macs == MAC_PAPER[name]
    assert abs(ours - MAC_PAPER[name]) <= 0.03 * MAC_PAPER[name]
    if name == "swinv2_tiny_window8_256":
        v1 = count_macs(create_model("swin_tiny_patch4_window7_224", window_size=8, img_size=256), (3, 256, 256))
        assert ours - v1 == _cpb_macs((2, 2, 6, 2), (3, 6, 12, 24), (8, 8, 8, 8))


def test_window8_weights_run_at_window16():
    """The CPB has no window-sized parameters: the window-8 model's state dict loads strictly into the window-16
    model (pretrained_window_sizes=8 keeps the window-8 coordinates), which then runs; the V2 init zeroes the
    post-norms and sets the logit scale to log(10)."""
    torch.manual_seed(0)
    kw = dict(img_size=64, num_classes=4)
    w8 = create_model("swinv2_nano_patch2_window4_32", window_size=4, **kw)
    w16 = create_model("swinv2_nano_patch2_window4_32", window_size=8, pretrained_window_sizes=4, **kw).eval()
    w16.load_state_dict(w8.state_dict())
    assert w16.stages[0].blocks[1].window_size == (8, 8) and w16(torch.randn(1, 3, 64, 64)).shape == (1, 4)
    blk = w8.stages[0].blocks[0]
    assert not blk.norm1.weight.any() and torch.allclose(blk.attn.logit_scale, torch.tensor(2.302585))
    big = meta_model("swinv2_tiny_window16_256")
    assert [b.window_size[0] for s in big.stages for b in s.blocks][-2:] == [8, 8]    # 8x8 last map: one window
    assert {k.split(".")[-1] for k in big.no_weight_decay()} >= {"logit_scale", "weight"}


def test_nano_trains_on_small_images():
    torch.manual_seed(0)
    m = create_model("swinv2_nano_patch2_window4_32", in_chans=1, num_classes=10)
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8)
    losses = fit_losses(m, x, y, steps=6, lr=2e-3)
    assert losses[-1] < 0.5 * losses[0]
