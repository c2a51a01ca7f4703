"""blockzoo.models.fcaformer: hybrid FcaFormer (ICCV 2023, arXiv:2211.07198; S044): the official definition's exact
parameter counts, MACs vs the paper, the stage layout, the parameter saving, the small-input variant."""
from __future__ import annotations

import pytest
import torch

from blockzoo import ConfigError, create_model
from blockzoo.blocks.common.metaformer import MetaNeXtBlock
from blockzoo.blocks.mixers.fcaformer import FcaBlock
from blockzoo.models.fcaformer import FCAFORMER_CONFIGS
from blockzoo.registry import get_model_spec
from helpers import check_macs_224, check_param_count, meta_model, meta_params, n_params

NAMES = sorted(FCAFORMER_CONFIGS)


@pytest.mark.parametrize("name", NAMES)
def test_param_counts(name):
    """Exactly the official ``fcaformer_l1..l4`` counts (6,187,560 / 16,275,870 / 27,894,484 / 65,638,204, checked
    against the official module when this file was written), within 0.5% of the paper/README figures."""
    check_param_count(name, FCAFORMER_CONFIGS[name][2], get_model_spec(name).paper_params, 0.005)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_macs_224(name):
    """convs + linears + attention products at 224 px: 1.37 / 3.57 / 6.54 / 14.21 G, 0.9-2.5% below the README's
    1.4 / 3.6 / 6.7 / 14.5 G (the official comment gives 1.37 G for L1)."""
    assert check_macs_224(name, FCAFORMER_CONFIGS[name][5]) == FCAFORMER_CONFIGS[name][3]


def test_param_saving():
    """The paper's cost claim, checked where blockzoo has the compared model: FcaFormer-L2 (16.3M) against the 29M
    ConvNeXt-T and Swin-T of its tables: 0.57x / 0.58x their parameters (our exact counts). Not checkable here:
    "almost half of the parameters" of distilled EfficientFormer (-L3, 31.3M in the paper), which blockzoo does not
    build; only the paper's 16.3 / 31.3 = 0.52 figure is restated."""
    fca = meta_params("fcaformer_l2")
    cnx, swin = meta_params("convnext_tiny"), meta_params("swin_tiny_patch4_window7_224")
    assert cnx == get_model_spec("convnext_tiny").reference["params_1000cls"]
    assert 0.56 < fca / cnx < 0.58 and 0.57 < fca / swin < 0.59
    assert fca / 31.3e6 < 0.53


def test_stage_layout():
    """L2: ConvNeXt stages (2, 2 blocks), then FcaFormer stages (7, 2 blocks) with 10 / 15 heads of 32 on the 14x14
    and 7x7 grids; block b of a stage receives b * 16 (stage 3) / b * 4 (stage 4) cross tokens; the last block of each
    FcaFormer stage merges nothing; features at strides 4, 8, 16, 32."""
    m = meta_model("fcaformer_l2")
    assert [type(b) for b in m.stages[0].blocks] == [MetaNeXtBlock] * 2
    assert [type(b) for b in m.stages[1].blocks] == [MetaNeXtBlock] * 2
    for stage, n, heads, res, per in ((m.stages[2], 7, 10, (14, 14), 16), (m.stages[3], 2, 15, (7, 7), 4)):
        assert [type(b) for b in stage.blocks] == [FcaBlock] * n
        for b, blk in enumerate(stage.blocks):
            assert blk.attn.num_heads == heads and blk.attn.head_dim == 32 and blk.resolution == res
            assert blk.attn.num_cross == b * per and (blk.merge is None) == (b == n - 1)
    assert [f["reduction"] for f in m.feature_info] == [4, 8, 16, 32]
    assert [f["num_chs"] for f in m.feature_info] == [96, 192, 320, 480]


def test_forward_and_cross_tokens_stay_in_their_stage():
    """A 64 px L1 runs; the first FcaFormer block of each stage gets no cross tokens (none cross stage borders)."""
    torch.manual_seed(0)
    m = create_model("fcaformer_l1", img_size=64, num_classes=5).eval()
    seen = []
    for stage in m.stages[2:]:
        stage.blocks[0].register_forward_pre_hook(lambda mod, args: seen.append(args[1] if len(args) > 1 else None))
    with torch.no_grad():
        assert m(torch.randn(2, 3, 64, 64)).shape == (2, 5)
    assert seen == [None, None]


def test_other_input_sizes():
    """Built for 32 px, run at 28 px and non-square (tables resized, see the block module); the offset tables'
    size, hence the parameter count, follows img_size."""
    torch.manual_seed(0)
    m = create_model("fcaformer_l1_small").eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 28, 28)).shape == m(torch.randn(1, 3, 32, 24)).shape == (1, 10)
    assert meta_params("fcaformer_l1_small", img_size=28) < n_params(m)


def test_bad_options():
    with pytest.raises(ConfigError):
        create_model("fcaformer_l1", img_size=None)
    with pytest.raises(ConfigError):
        create_model("fcaformer_l1", num_heads=(1, 1, 5, 10))
    with pytest.raises(ConfigError):
        create_model("fcaformer_l1", num_conv_stages=4)
    with pytest.raises(ConfigError):
        create_model("fcaformer_l1", stem="tiny")
    with pytest.raises(ConfigError):
        create_model("fcaformer_l1", dims=(1, 128, 192, 320))
    with pytest.raises(ConfigError):
        create_model("fcaformer_l1", depths=(2, 2, 0, 2))


def test_mlp_norm_option():
    """The official second LayerNorm at the MLP input: 2 * C parameters per FcaFormer block (L1: 6 x 192, 2 x 320)."""
    assert meta_params("fcaformer_l1") - meta_params("fcaformer_l1", mlp_norm=False) == 2 * (6 * 192 + 2 * 320)


def test_init_is_official():
    torch.manual_seed(0)
    m = create_model("fcaformer_l1_small")
    blk = m.stages[2].blocks[1]
    assert torch.equal(blk.attn.cross_scale, torch.ones_like(blk.attn.cross_scale))
    assert not blk.attn.attention_biases.any() and torch.allclose(blk.ls1.gamma, torch.full((192,), 1e-6))
    assert abs(blk.attn.qkv.weight.std().item() - 0.02) < 0.003 and not blk.attn.qkv.bias.any()
    assert {k for k in m.no_weight_decay()} and all("bias" in k or "scale" in k for k in m.no_weight_decay())


def test_small_params():
    m = create_model("fcaformer_l1_small")
    assert n_params(m) == get_model_spec("fcaformer_l1_small").reference["params_3ch_10cls"] == 5_863_065


def test_small_feature_size():
    m = create_model("fcaformer_l1_small").eval()
    with torch.no_grad():
        assert m.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 320, 4, 4)
    assert [f["reduction"] for f in m.feature_info] == [1, 2, 4, 8]
