"""blockzoo.blocks.common.mlp: the MLP layouts have the same parameters and function."""
from __future__ import annotations

import torch

from blockzoo.registry import create_model
from helpers import n_params


def test_mlp_layouts_have_same_params_and_function():
    a = create_model("convnext_atto", mlp_layout="linear", num_classes=10, stem="small")
    b = create_model("convnext_atto", mlp_layout="conv", num_classes=10, stem="small")
    assert n_params(a) == n_params(b)
    sd = {k: (v.reshape(b.state_dict()[k].shape)) for k, v in a.state_dict().items()}
    b.load_state_dict(sd)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(a.eval()(x), b.eval()(x), rtol=1e-4, atol=1e-5)


def test_to_nhwc_is_the_permuted_view_contiguous_only_under_autocast():
    from blockzoo.blocks.common.mlp import to_nhwc
    x = torch.randn(2, 8, 3, 5)
    v = to_nhwc(x)
    assert torch.equal(v, x.permute(0, 2, 3, 1)) and not v.is_contiguous() and v.data_ptr() == x.data_ptr()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        c = to_nhwc(x)
    assert torch.equal(c, x.permute(0, 2, 3, 1)) and c.is_contiguous() and c.dtype == x.dtype
