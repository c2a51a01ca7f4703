"""blockzoo.models.transnext: exact parameter counts (the official definition), MACs at 224 px, the official stage
layout (pool grids, last-stage full attention), the official key rules, the ConvNeXt-B parameter claim, the
small-image variant trains; optionally the official model itself as an oracle."""
from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

import pytest
import torch

from blockzoo import create_model
from blockzoo.blocks.mixers.transnext import AggregatedAttention, LengthScaledAttention
from blockzoo.models.metaformer import CONVNEXT_MACRO, MetaFormer
from blockzoo.models.transnext import from_official_state_dict
from helpers import check_macs_224, check_param_count, fit_losses, meta_model, n_params

PARAMS = {   # name -> (exact count = the official classification/transnext.py, README figure, tolerance)
    "transnext_micro": (12_809_304, 12.8e6, 0.005),
    "transnext_tiny": (28_258_960, 28.2e6, 0.005),
    "transnext_small": (49_741_564, 49.7e6, 0.005),
    "transnext_base": (89_721_496, 89.7e6, 0.005),
}
MAC_PAPER = {"transnext_micro": 2.7e9, "transnext_tiny": 5.7e9, "transnext_small": 10.3e9, "transnext_base": 18.4e9}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_param_counts(name):
    check_param_count(name, *PARAMS[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MAC_PAPER))
def test_macs_224(name):
    """MACs at 224 px equal the recorded count (micro / tiny: the same counter on the official code gives the same
    2,648,551,168 / 5,711,069,568) and are within 3% of the README's figure."""
    check_macs_224(name, MAC_PAPER[name])


def test_official_stage_layout():
    """At 224 px every aggregated stage pools its 56/28/14 map to 7x7 (sr 8/4/2) with a 3x3 window; the last stage
    (sr 1) is full attention on 7x7; at 64 px the pools are 2x2; features after each stage's norm at reductions
    4..32; the official no-weight-decay keywords."""
    m = meta_model("transnext_micro")
    attns = [[b.attn for b in s.blocks] for s in m.stages]
    assert [len(a) for a in attns] == [2, 2, 15, 2]
    for i, stage in enumerate(attns[:3]):
        assert all(isinstance(a, AggregatedAttention) and a.pool_size == (7, 7) and a.window_size == 3
                   and a.input_resolution == (56 >> i,) * 2 for a in stage)
    assert all(isinstance(a, LengthScaledAttention) and a.input_resolution == (7, 7) for a in attns[3])
    assert [a.num_heads for a in (s[0] for s in attns)] == [2, 4, 8, 16]
    assert [f["reduction"] for f in m.feature_info] == [4, 8, 16, 32]
    assert {b.mlp.dwconv.in_channels for b in m.stages[0].blocks} == {int(2 * 8 * 48 / 3)}
    assert [a.pool_size for a in (s.blocks[0].attn for s in meta_model("transnext_micro", img_size=64).stages[:3])] \
        == [(2, 2)] * 3
    assert {k.split(".")[-1] for k in m.no_weight_decay()} == {"query_embedding", "relative_pos_bias_local",
                                                               "temperature", "weight", "bias"}
    assert all("cpb" in k for k in m.no_weight_decay() if k.endswith(("weight", "bias")))


def test_official_key_rules():
    """The official names map onto ours by one rule per stage (and ConvGLU's nested dwconv, the head)."""
    official = {"patch_embed1.proj.weight": 0, "block3.14.attn.cpb_fc1.bias": 1, "norm4.weight": 2,
                "block1.0.mlp.dwconv.dwconv.weight": 3, "head.bias": 4}
    assert from_official_state_dict(official) == {
        "stages.0.patch_embed.proj.weight": 0, "stages.2.blocks.14.attn.cpb_fc1.bias": 1, "stages.3.norm.weight": 2,
        "stages.0.blocks.0.mlp.dwconv.weight": 3, "fc.bias": 4}
    keys = set(meta_model("transnext_micro").state_dict())
    assert {"stages.2.blocks.14.attn.cpb_fc1.bias", "stages.0.blocks.0.mlp.dwconv.weight"} <= keys


def test_tiny_vs_convnext_base_parameters():
    """The paper's "TransNeXt-Tiny surpasses ConvNeXt-B with 69% fewer parameters": ConvNeXt-B (depths 3, 3, 27, 3,
    dims 128..1024 on the ConvNeXt configuration of the MetaFormer skeleton: timm's 88,591,464) has 3.1x the
    parameters, 68.1% fewer for TransNeXt-Tiny (the paper's 69% rounds 28.2M / 89M = 31.7% down to 31%). The
    accuracy part (84.0% vs 83.8% top-1) needs ImageNet training: not checked."""
    with torch.device("meta"):
        convnext_b = n_params(MetaFormer(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024), **CONVNEXT_MACRO))
        tiny = n_params(create_model("transnext_tiny"))
    assert convnext_b == 88_591_464
    fewer = 1 - tiny / convnext_b
    assert 0.68 < fewer < 0.69 and round(1 - 28.2 / 89, 2) == 0.68 and int(100 * 28.2 / 89) == 31


def test_other_input_sizes_and_small_variant_geometry():
    """The model runs at sizes other than the one it was built for (biases resampled; the pooled grid kept), and
    the CIFAR-scale variant sees 16/8/4/2 maps at 32 px with 2x2 pooled grids."""
    m = create_model("transnext_nano_small", in_chans=1).eval()
    assert [s.blocks[0].attn.input_resolution for s in m.stages] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert [s.blocks[0].attn.pool_size for s in m.stages[:3]] == [(2, 2)] * 3
    with torch.no_grad():
        for size in ((32, 32), (28, 28), (40, 24)):
            assert torch.isfinite(m(torch.randn(1, 1, *size))).all()


def test_nano_small_trains_on_small_images():
    """A few AdamW steps on a fixed batch of 28 px images reduce the loss."""
    torch.manual_seed(0)
    m = create_model("transnext_nano_small", in_chans=1, num_classes=10)
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8)
    losses = fit_losses(m, x, y, steps=4, lr=3e-3)
    assert losses[-1] < 0.5 * losses[0]


def _official_module():
    """The official classification code (``transnext.py`` + ``attention_native.py``) from the folder named by
    ``BLOCKZOO_TRANSNEXT_OFFICIAL`` (not shipped: fetch DaiShiResearch/TransNeXt); it imports timm (installed as the
    test oracle, with the torchvision stand-in of benchmarks/timm_shim) and pkg_resources (stubbed if missing)."""
    folder = os.environ.get("BLOCKZOO_TRANSNEXT_OFFICIAL")
    if not folder or not (Path(folder) / "transnext.py").is_file():
        pytest.skip("set BLOCKZOO_TRANSNEXT_OFFICIAL to the official classification/ folder to run this oracle")
    shim = str(Path(__file__).resolve().parents[2] / "benchmarks" / "timm_shim")
    for p in (shim, folder):
        if p not in sys.path:
            sys.path.insert(0, p)
    pytest.importorskip("timm")
    if importlib.util.find_spec("pkg_resources") is None:   # only used to look for the CUDA extension
        stub = types.ModuleType("pkg_resources")

        class DistributionNotFound(Exception):
            pass

        def get_distribution(name):
            raise DistributionNotFound(name)
        stub.DistributionNotFound, stub.get_distribution = DistributionNotFound, get_distribution
        sys.modules["pkg_resources"] = stub
    return importlib.import_module("transnext")


@pytest.mark.slow
def test_same_function_as_the_official_model():
    """The official plain-PyTorch TransNeXt-Micro (built for 64 px) and ours give the same logits for the same
    (randomised) weights, loaded through from_official_state_dict (max |diff| 1.2e-6 at 64 px, 6e-7 at 224 px,
    2.2e-6 for Tiny at 96 px when recorded)."""
    official = _official_module()
    torch.manual_seed(0)
    ref = official.transnext_micro(img_size=64).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.02 * torch.randn_like(p))
    ours = create_model("transnext_micro", img_size=64).eval()
    ours.load_state_dict(from_official_state_dict(ref.state_dict()))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
