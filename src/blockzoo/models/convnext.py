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

The paper's and our exact numbers are in the registry (``blockzoo info <model>``, ``docs/catalog.md``); paper
figures: timm's results CSV ``benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv`` (``param_count`` /
``infer_gmacs``; the ConvNeXt paper rounds tiny/small to 28M / 4.5G and 50M / 8.7G). Params are exact (asserted by
tests/models/test_convnext.py); MACs with ``blockzoo.profile.counting.count_macs`` count convs and linears only (bias,
norm, activation, pooling and elementwise ops uncounted), which is why ours are slightly below timm's
fvcore/deepspeed numbers (those also count the LayerNorms).
"""
from __future__ import annotations

from collections.abc import Callable

from blockzoo import papers
from blockzoo.models.metaformer import CONVNEXT_MACRO, MetaFormer, metaformer_entry
from blockzoo.registry import Claim, register_model

SLOTS = {"mixer": "dwconv", "norm": "ln2d", "act": "gelu", "attn": "none", "head": "avg", "connection": "residual"}
_T = "tests/models/test_convnext.py::"


def _convnext(name: str, depths: tuple[int, ...], dims: tuple[int, ...]) -> Callable[..., MetaFormer]:
    return metaformer_entry(name, dict(CONVNEXT_MACRO, depths=depths, dims=dims),
                            doc=f"ConvNeXt ({name}): depths {depths}, dims {dims}")


# paper_params / paper_macs: timm's results CSV; reference: exact counts of our builds (1000 classes, 3 channels;
# MACs at 224 px with blockzoo.profile.counting.count_macs), asserted by tests/models/test_convnext.py
register_model(
    "convnext_atto", family="convnext", slots=SLOTS, paper=papers.CONVNEXT, paper_params=3_700_000, paper_macs=0.55e9,
    reference={"params_1000cls": 3_695_520, "macs_224": 547_332_480},
    summary="ConvNeXt atto: depths (2, 2, 6, 2), dims (40, 80, 160, 320), 7x7 dw mixer, LN, layer scale 1e-6",
    claims=(Claim("3,695,520 parameters (timm: 3.70M)", _T + "test_param_counts"),
            Claim("0.55 GMACs at 224 (timm)", _T + "test_macs_tiny_224")),
)(_convnext("convnext_atto", (2, 2, 6, 2), (40, 80, 160, 320)))

register_model(
    "convnext_femto", family="convnext", slots=SLOTS, paper=papers.CONVNEXT, paper_params=5_220_000, paper_macs=0.79e9,
    reference={"params_1000cls": 5_217_784, "macs_224": 779_629_824},
    summary="ConvNeXt femto: depths (2, 2, 6, 2), dims (48, 96, 192, 384), 7x7 dw mixer, LN, layer scale 1e-6",
    claims=(Claim("5,217,784 parameters (timm: 5.22M)", _T + "test_param_counts"),
            Claim("0.79 GMACs at 224 (timm)", _T + "test_macs_tiny_224")),
)(_convnext("convnext_femto", (2, 2, 6, 2), (48, 96, 192, 384)))

register_model(
    "convnext_pico", family="convnext", slots=SLOTS, paper=papers.CONVNEXT, paper_params=9_050_000, paper_macs=1.37e9,
    reference={"params_1000cls": 9_045_672, "macs_224": 1_367_055_360},
    summary="ConvNeXt pico: depths (2, 2, 6, 2), dims (64, 128, 256, 512), 7x7 dw mixer, LN, layer scale 1e-6",
    claims=(Claim("9,045,672 parameters (timm: 9.05M)", _T + "test_param_counts"),
            Claim("1.37 GMACs at 224 (timm)", _T + "test_macs_tiny_224")),
)(_convnext("convnext_pico", (2, 2, 6, 2), (64, 128, 256, 512)))

register_model(
    "convnext_nano", family="convnext", slots=SLOTS, paper=papers.CONVNEXT, paper_params=15_590_000, paper_macs=2.46e9,
    reference={"params_1000cls": 15_593_560, "macs_224": 2_445_528_320},
    summary="ConvNeXt nano: depths (2, 2, 8, 2), dims (80, 160, 320, 640), 7x7 dw mixer, LN, layer scale 1e-6",
    claims=(Claim("15,593,560 parameters (timm: 15.59M)", _T + "test_param_counts"),
            Claim("2.46 GMACs at 224 (timm)", _T + "test_macs_tiny_224")),
)(_convnext("convnext_nano", (2, 2, 8, 2), (80, 160, 320, 640)))

register_model(
    "convnext_tiny", family="convnext", slots=SLOTS, paper=papers.CONVNEXT, paper_params=28_589_128, paper_macs=4.47e9,
    reference={"params_1000cls": 28_589_128, "macs_224": 4_455_531_264},
    summary="ConvNeXt tiny: depths (3, 3, 9, 3), dims (96, 192, 384, 768), 7x7 dw mixer, LN, layer scale 1e-6",
    claims=(Claim("28,589,128 parameters (timm: 28.59M)", _T + "test_param_counts"),
            Claim("4.47 GMACs at 224 (timm)", _T + "test_macs_tiny_224"),
            Claim("ConvNeXt-T's MACs are close to ResNet-50's (S014/S057: 4.5 vs 4.1 G; ours 4.456 vs 4.089 G, +9%)",
                  _T + "test_convnext_tiny_macs_close_to_resnet50")),
)(_convnext("convnext_tiny", (3, 3, 9, 3), (96, 192, 384, 768)))

register_model(
    "convnext_small", family="convnext", slots=SLOTS, paper=papers.CONVNEXT, paper_params=50_220_000, paper_macs=8.71e9,
    reference={"params_1000cls": 50_223_688, "macs_224": 8_683_712_256},
    summary="ConvNeXt small: depths (3, 3, 27, 3), dims (96, 192, 384, 768), 7x7 dw mixer, LN, layer scale 1e-6",
    claims=(Claim("50,223,688 parameters (timm: 50.22M)", _T + "test_param_counts"),
            Claim("8.71 GMACs at 224 (timm)", _T + "test_macs_tiny_224")),
)(_convnext("convnext_small", (3, 3, 27, 3), (96, 192, 384, 768)))


# A shared small skeleton for comparing token mixers on 28-32 px images (not a paper model): ConvNeXt-atto's depths
# and widths with a 2x2/2 patch stem, so a 28 px image gives 14/7/3/1 feature maps (32 px: 16/8/4/2) and costs
# ~26 MMACs with dwconv (about ResNet-20's 31 MMACs):
# `blockzoo compare convnext_atto_small --vary mixer=dwconv,inception_dw,gnconv,...`
register_model(
    "convnext_atto_small", family="convnext_small_input", slots=SLOTS, paper=papers.CONVNEXT, input_size=(1, 28, 28),
    num_classes=10,
    summary="ConvNeXt-atto depths/widths with a 2x2/2 patch stem for 28-32 px inputs: the shared skeleton of the "
            "mixer comparisons (not a paper model)",
    notes="patch_size 2 and img_size 28 by default.",
)(metaformer_entry("convnext_atto_small", dict(CONVNEXT_MACRO, depths=(2, 2, 6, 2), dims=(40, 80, 160, 320),
                                                patch_size=2),
                   default_img_size=28, doc="ConvNeXt-atto with a 2x2 patch stem for small images"))
