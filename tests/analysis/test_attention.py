"""The attention report and pictures (built on collapse.py and locality.py)."""
import torch

from blockzoo import create_model
from blockzoo.analysis import attention_report
from blockzoo.analysis.attention import plot_attention_curves, plot_attention_maps
from blockzoo.analysis.collapse import attention_maps


def _identical_layers_vit():
    torch.manual_seed(0)
    m = create_model("vit_tiny_patch4_32", depth=3, img_size=16).eval()
    for blk in m.blocks[1:]:
        blk.attn.load_state_dict(m.blocks[0].attn.state_dict())
        blk.ls1 = blk.ls2 = torch.nn.Identity()
    for blk in m.blocks:                      # no change of the tokens between blocks
        for lin in (blk.attn.proj, blk.mlp.fc2):
            lin.weight.data.zero_()
            lin.bias.data.zero_()
    return m


def test_report_of_identical_layers(tmp_path):
    m = _identical_layers_vit()
    x = torch.randn(2, 3, 16, 16)
    rep = attention_report(m, x)
    assert rep["layers"] == 3 and rep["heads"] == [m.blocks[0].attn.num_heads] * 3
    torch.testing.assert_close(torch.tensor(rep["similarity"]), torch.ones(2))   # identical layers: 1
    assert len(rep["nonlocality"]) == 3 and len(rep["nonlocality"][0]) == rep["heads"][0]
    assert rep["mean_nonlocality"][0] == rep["mean_nonlocality"][1]               # same maps, same distances
    maps = attention_maps(m, x[:1])
    assert plot_attention_maps(maps, tmp_path / "maps.png").read_bytes()[:4] == b"\x89PNG"
    assert plot_attention_curves(rep, tmp_path / "curves.png").exists()
