"""HaloNets (blockzoo.models.halonet): the paper's model table (parameters, on the meta device), the block layout,
the conv/attention hybrids, halo_resnet50 and the small-input variant training on 32 px."""
from __future__ import annotations

import pytest
import torch

from blockzoo import create_model
from blockzoo.blocks.mixers.halo import HaloAttention
from helpers import check_param_count, fit_losses, meta_model, meta_params

# the paper's model table: name -> (exact count of our build, the table's parameters)
TABLE = {
    "halonet_h0": (5_500_952, 5.5e6), "halonet_h1": (8_100_056, 8.1e6), "halonet_h2": (9_404_312, 9.4e6),
    "halonet_h3": (11_841_304, 11.8e6), "halonet_h4": (19_101_976, 19.1e6), "halonet_h5": (30_717_272, 30.7e6),
    "halonet_h6": (43_456_792, 43.4e6), "halonet_h7": (67_433_240, 67.4e6),
}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_param_counts(name):
    """Within 0.5% of the table (rounded to 0.1M; H1 is timm's halonet_h1 exactly, 8,100,056)."""
    exact, paper = TABLE[name]
    check_param_count(name, exact, paper, tol=0.005)


def test_h5_block_widths():
    """H5 (rv = 2.5, rb = 2): stage-3 blocks 256 -> 1x1 -> 256 (queries / keys 256) -> values 640 -> 1x1 -> 512,
    the 1x1 conv to d_f = 1536 at the end; the table's b = 14, h = 2 in every attention layer."""
    m = meta_model("halonet_h5")
    blk = m.stages[2][1]
    assert (blk.conv1.conv.in_channels, blk.conv1.conv.out_channels) == (512, 256)
    attn = blk.conv2.attn
    assert isinstance(attn, HaloAttention) and attn.q.out_channels == 256 and attn.kv.out_channels == 256 + 640
    assert (attn.block_size, attn.halo_size, attn.num_heads) == (14, 2, 8)
    assert (blk.conv3.conv.in_channels, blk.conv3.conv.out_channels) == (640, 512)
    assert m.final_conv.conv.out_channels == 1536 == m.num_features
    assert [len(s) for s in m.stages] == [3, 3, 23, 3]


def test_strided_attention_downsamples():
    """The first block of stages 2-4 subsamples its queries (stride 2): 256 px -> 64, 32, 16, 8 feature maps."""
    m = create_model("halonet_h0").eval()
    assert [blk[0].conv2.attn.stride for blk in m.stages] == [1, 2, 2, 2]
    assert [f["reduction"] for f in m.feature_info] == [2, 4, 8, 16, 32]
    with torch.no_grad():
        maps = m.forward_intermediates(torch.randn(1, 3, 256, 256), intermediates_only=True)
    assert [t.shape[-1] for t in maps] == [128, 64, 32, 16, 8]


def test_conv_attention_hybrid():
    """One conv value per stage: the paper's hybrids with convolutions in the early stages (a 3x3 conv unit has
    9x the weights of the halo layer's q and half its kv)."""
    hybrid = meta_model("halonet_h1", conv=["conv3x3", "conv3x3", "conv3x3", "halo(block_size=8, halo_size=3)"])
    assert type(hybrid.stages[0][0].conv2.conv).__name__ == "Conv2d"
    assert isinstance(hybrid.stages[3][0].conv2.attn, HaloAttention)
    rel = lambda w: 2 * (2 * 14 - 1) * (w // 8)      # noqa: E731 - the two relative tables of one layer
    attn_w = sum(n * (w * w + 2 * w * w + rel(w)) for n, w in ((3, 64), (3, 128), (10, 256)))
    conv_w = sum(n * 9 * w * w for n, w in ((3, 64), (3, 128), (10, 256)))
    assert meta_params("halonet_h1") - attn_w + conv_w == sum(p.numel() for p in hybrid.parameters())


def test_halo_resnet50():
    """ResNet-50 with halo attention in the last stage's 3x3 position: its three 3x3 convs (512 -> 512) replaced
    by q (512 x 512), kv (512 x 1024) and two 27 x 64 relative tables each."""
    resnet = meta_params("resnet50")
    assert meta_params("halo_resnet50") == resnet - 3 * 9 * 512 * 512 + 3 * (512 * 512 + 512 * 1024 + 2 * 27 * 64)
    m = create_model("halo_resnet50", num_classes=5).eval()
    assert isinstance(m.layers[3][0].conv2.attn, HaloAttention)
    with torch.no_grad():
        assert m(torch.randn(1, 3, 128, 128)).shape == (1, 5)


@pytest.mark.slow
def test_small_variant_trains():
    """halonet_h0_small fits a fixed batch of 32 px images within a few Adam steps (loss falls by half)."""
    torch.manual_seed(0)
    m = create_model("halonet_h0_small", num_classes=4).train()
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
    losses = fit_losses(m, x, y, steps=8, lr=1e-3, optimizer=torch.optim.Adam)
    assert losses[-1] < 0.5 * losses[0], losses
