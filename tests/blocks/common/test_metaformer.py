"""blockzoo.blocks.common.metaformer: the MetaNeXt and MetaFormer block formulas."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from blockzoo.blocks.common.metaformer import MetaFormerBlock, MetaNeXtBlock
from blockzoo.registry import create_model


def test_metanext_block_formula_and_fused_ln_path():
    torch.manual_seed(0)
    blk = create_model("convnext_atto", img_size=None).stages[1].blocks[0]
    assert isinstance(blk, MetaNeXtBlock) and blk._fused_ln
    with torch.no_grad():
        blk.ls.gamma.uniform_(0.5, 1.5)
    x = torch.randn(2, 80, 5, 6)
    # reference: x + gamma * fc2(gelu(fc1(LN_c(dwconv(x))))) computed with plain ops
    y = F.conv2d(x, blk.mixer.weight, blk.mixer.bias, padding=3, groups=80).permute(0, 2, 3, 1)
    y = F.layer_norm(y, (80,), blk.norm.weight, blk.norm.bias, 1e-6)
    y = F.linear(F.gelu(F.linear(y, blk.mlp.fc1.weight, blk.mlp.fc1.bias)), blk.mlp.fc2.weight, blk.mlp.fc2.bias)
    exp = x + (y * blk.ls.gamma).permute(0, 3, 1, 2)
    torch.testing.assert_close(blk(x), exp)
    blk._fused_ln = False
    torch.testing.assert_close(blk(x), exp)


def test_metaformer_block_formula():
    torch.manual_seed(0)
    blk = create_model("poolformer_s12", img_size=None).stages[0].blocks[0]
    assert isinstance(blk, MetaFormerBlock)
    with torch.no_grad():
        blk.ls1.gamma.fill_(0.5)
        blk.ls2.gamma.fill_(2.0)
    x = torch.randn(2, 64, 6, 5)
    n1 = F.group_norm(x, 1, blk.norm1.weight, blk.norm1.bias, 1e-5)
    h = x + 0.5 * (F.avg_pool2d(n1, 3, 1, 1, count_include_pad=False) - n1)
    n2 = F.group_norm(h, 1, blk.norm2.weight, blk.norm2.bias, 1e-5).permute(0, 2, 3, 1)
    mlp = F.linear(F.gelu(F.linear(n2, blk.mlp.fc1.weight, blk.mlp.fc1.bias)), blk.mlp.fc2.weight, blk.mlp.fc2.bias)
    torch.testing.assert_close(blk(x), h + 2.0 * mlp.permute(0, 3, 1, 2))
