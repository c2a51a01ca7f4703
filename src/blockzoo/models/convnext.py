"""ConvNeXt (Liu et al., "A ConvNet for the 2020s", CVPR 2022, arXiv:2201.03545 [S057]) on the MetaFormer skeleton.

Configuration of :class:`blockzoo.models.metaformer.MetaFormer`: patchify stem (4x4/4 conv + LayerNorm), LayerNorm +
2x2/2 conv downsampling, ConvNeXt block = MetaNeXt block with ``mixer="dwconv"`` (7x7 depthwise, bias) ->
LayerNorm -> MLP (4x, GELU) -> layer scale (1e-6) -> stochastic depth -> residual; head = GAP -> LayerNorm -> FC
(timm ``head_norm_first=False``, the official ordering). ``atto/femto/pico/nano`` are timm's configurations (not in
the paper; ConvNeXt-V2 reuses their depths/widths with GRN and without layer scale) built, like timm's
``convnext_atto``..., from V1 blocks. Init: trunc-normal(0.02) convs/linears, zero biases (official);
``head_init_scale`` option (1.0). timm builds atto..nano with a 1x1-conv MLP (``conv_mlp=True``) and tiny/small with
Linear layers; ours defaults to Linear-on-NHWC everywhere (same parameters and function; ``mlp_layout="conv"`` gives
the 1x1-conv form). Stochastic depth: ``drop_path_rate`` (paper: 0.1 tiny, 0.4 small on ImageNet-1K), linear over
all blocks.

Slots: ``mixer`` (``dwconv``), ``norm`` (``ln2d``), ``act`` (``gelu``), ``attn`` (``none``; after the mixer), ``head``
(``avg``). ``create_model("convnext_atto", mixer="inception_dw", stem="small", img_size=32, num_classes=10)`` builds a
CIFAR-size ConvNeXt with Inception depthwise mixers (feature sizes 32/16/8/4, see ``metaformer``).

Paper (timm's results CSV ``benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv``: ``param_count`` / ``infer_gmacs``;
the ConvNeXt paper rounds tiny/small to 28M / 4.5G and 50M / 8.7G) vs ours, 1000 classes, 224 px. Params counted
exactly (also asserted by tests/test_metaformer.py); MACs with ``blockzoo.profile.counting.count_macs`` -- convs and
linears only (bias, norm, activation, pooling and elementwise ops uncounted), which is why ours are slightly below
timm's fvcore/deepspeed numbers (those also count the LayerNorms):

============== =============== ============== ======= =========== ========== =======
model          params (paper)  params (ours)  diff    MACs paper  MACs ours  diff
============== =============== ============== ======= =========== ========== =======
convnext_atto  3.70M           3,695,520      -0.12%  0.55G       0.547G     -0.5%
convnext_femto 5.22M           5,217,784      -0.04%  0.79G       0.780G     -1.3%
convnext_pico  9.05M           9,045,672      -0.05%  1.37G       1.367G     -0.2%
convnext_nano  15.59M          15,593,560     +0.02%  2.46G       2.446G     -0.6%
convnext_tiny  28,589,128      28,589,128     exact   4.47G       4.456G     -0.3%
convnext_small 50.22M          50,223,688     +0.01%  8.71G       8.684G     -0.3%
============== =============== ============== ======= =========== ========== =======
"""
from __future__ import annotations

from blockzoo import papers
from blockzoo.models.metaformer import metaformer_entry
from blockzoo.registry import Claim, register_model

SLOTS = {"mixer": "dwconv", "norm": "ln2d", "act": "gelu", "attn": "none", "head": "avg"}

CONVNEXT = dict(block="metanext", mlp_ratios=4.0, ls_init_value=1e-6, stem="patch", downsample="patch",
                head_norm="post")

# name: (depths, dims, paper params, paper MACs)
CONFIGS = {
    "convnext_atto": ((2, 2, 6, 2), (40, 80, 160, 320), 3.70e6, 0.55e9),
    "convnext_femto": ((2, 2, 6, 2), (48, 96, 192, 384), 5.22e6, 0.79e9),
    "convnext_pico": ((2, 2, 6, 2), (64, 128, 256, 512), 9.05e6, 1.37e9),
    "convnext_nano": ((2, 2, 8, 2), (80, 160, 320, 640), 15.59e6, 2.46e9),
    "convnext_tiny": ((3, 3, 9, 3), (96, 192, 384, 768), 28_589_128, 4.47e9),
    "convnext_small": ((3, 3, 27, 3), (96, 192, 384, 768), 50.22e6, 8.71e9),
}

# exact parameter counts of our builds (1000 classes, 3 input channels); asserted by tests/test_metaformer.py
_PARAMS = {
    "convnext_atto": 3_695_520,
    "convnext_femto": 5_217_784,
    "convnext_pico": 9_045_672,
    "convnext_nano": 15_593_560,
    "convnext_tiny": 28_589_128,
    "convnext_small": 50_223_688,
}

# MACs of our builds at 224 px (blockzoo.profile.counting.count_macs); asserted by the slow tests
_MACS = {
    "convnext_atto": 547_332_480,
    "convnext_femto": 779_629_824,
    "convnext_pico": 1_367_055_360,
    "convnext_nano": 2_445_528_320,
    "convnext_tiny": 4_455_531_264,
    "convnext_small": 8_683_712_256,
}

for _name, (_depths, _dims, _pp, _pm) in CONFIGS.items():
    register_model(
        _name, family="convnext", slots=SLOTS, paper=papers.CONVNEXT, paper_params=int(_pp), paper_macs=_pm,
        reference={"params_1000cls": _PARAMS[_name], "macs_224": _MACS[_name]},
        summary=f"ConvNeXt {_name.split('_')[1]}: depths {_depths}, dims {_dims}, 7x7 dw mixer, LN, layer scale 1e-6",
        claims=(Claim(f"{_PARAMS[_name]:,} parameters (timm: {_pp / 1e6:.2f}M)",
                      "tests/test_metaformer.py::test_param_counts"),
                Claim(f"{_pm / 1e9:.2f} GMACs at 224 (timm)", "tests/test_metaformer.py::test_macs_tiny_224"))
        + ((Claim("ConvNeXt-T's MACs are close to ResNet-50's (S014/S057: 4.5 vs 4.1 G; ours 4.456 vs 4.089 G, "
                  "+9%)", "tests/test_metaformer.py::test_convnext_tiny_macs_close_to_resnet50"),)
           if _name == "convnext_tiny" else ()),
        notes="Options: drop_path_rate, drop_rate, ls_init_value, stem ('patch'|'small'), patch_size, img_size, "
              "mlp_layout ('linear'|'conv'), head_init_scale, mixer_kwargs_per_stage.",
    )(metaformer_entry(_name, dict(CONVNEXT, depths=_depths, dims=_dims),
                       doc=f"ConvNeXt ({_name}): depths {_depths}, dims {_dims}"))

# A shared small skeleton for comparing token mixers on 28-32 px images (not a paper model): ConvNeXt-atto's depths
# and widths with a 2x2/2 patch stem, so a 28 px image gives 14/7/3/1 feature maps (32 px: 16/8/4/2) and costs
# ~26 MMACs with dwconv (about ResNet-20's 31 MMACs). `blockzoo compare convnext_atto_small --vary mixer=dwconv,inception_dw,gnconv,...`
register_model(
    "convnext_atto_small", family="convnext_small_input", slots=SLOTS, paper=papers.CONVNEXT, input_size=(1, 28, 28),
    num_classes=10,
    summary="ConvNeXt-atto depths/widths with a 2x2/2 patch stem for 28-32 px inputs: the shared skeleton of the "
            "mixer comparisons (not a paper model)",
    notes="Options as convnext_*; patch_size (2), img_size (28).",
)(metaformer_entry("convnext_atto_small", dict(CONVNEXT, depths=CONFIGS["convnext_atto"][0],
                                                dims=CONFIGS["convnext_atto"][1], patch_size=2),
                   default_img_size=28, doc="ConvNeXt-atto with a 2x2 patch stem for small images"))
