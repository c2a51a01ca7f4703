"""MOAT and tiny-MOAT (Yang et al., "MOAT: Alternating Mobile Convolution and Attention Brings Strong Vision
Models", ICLR 2023, arXiv:2210.01820 [S053]; official TensorFlow code google-research/deeplab2,
``model/pixel_encoder/moat.py``) with ``attn`` / ``mixer`` / ``norm`` / ``act`` / ``head`` slots. The blocks are in
:mod:`blockzoo.blocks.mixers.moat`.

Architecture (paper Sec. 3.2 and Table 1, CoAtNet's macro layout; details from the official code)
-------------------------------------------------------------------------------------------------
* stem: 3x3 conv stride 2 (bias) -> BN -> GELU -> 3x3 conv (bias); no norm after it (the first block pre-norms);
* four stages, each downsampling by 2 in its first block (the depthwise conv's stride, pooled shortcut):
  stages 1-2 are MBConv blocks (with SE), stages 3-4 MOAT blocks (MBConv without SE, then attention);
  expansion 4 of the output width, head_dim 32, GELU, BatchNorm in the MBConvs, LayerNorm before attention;
* global attention at 224 px (the 14x14 and 7x7 maps), relative position tables of size 14 and 7 (the
  position-embedding sizes at strides 16 / 32; resized for other inputs, so the parameter count is the same at every
  input size), the ``mixer`` default ``[none, none, moat_attn(position_size=14), moat_attn(position_size=7)]``;
  window attention for large inputs: ``mixer="moat_attn(window_size=14)"`` (or a per-stage list);
* head: global average pooling -> LayerNorm (eps 1e-5) -> linear classifier (the official 1x1 conv on the pooled
  map, the same function).

========== ============ ================ ========================  (widths = output channels of each stage)
model      stem         blocks           widths
========== ============ ================ ========================
MOAT-0     64, 64       2, 3, 7, 2       96, 192, 384, 768
MOAT-1     64, 64       2, 6, 14, 2      96, 192, 384, 768
MOAT-2     128, 128     2, 6, 14, 2      128, 256, 512, 1024
tiny-0     32, 32       2, 3, 7, 2       32, 64, 128, 256
tiny-1     40, 40       2, 3, 7, 2       40, 80, 160, 320
tiny-2     56, 56       2, 3, 7, 2       56, 112, 224, 448
tiny-3     80, 80       2, 3, 7, 2       80, 160, 320, 640
========== ============ ================ ========================

The parameter counts equal the official code's own test (``moat_test.py``: 27,846,892 for MOAT-0 ...,
3,355,348 for tiny-MOAT-0, 1000 classes, with position embeddings) exactly; the paper rounds them (27.8M, 3.4M).
``rel_pos=False`` in the mixer gives the official "no_pe" variants (27,777,544 / 3,332,232).
MACs: ``blockzoo.profile.count_macs`` (convs, linears and the attention products) at 224 px. The paper's "FLOPs" are
multiply-adds too, but the official test counts every TensorFlow float op / 2, norms, GELU, softmax and additions
included, which blockzoo's convention leaves out: ours are 1-3% below the paper's table, most for the narrowest model
(tiny-MOAT-0: 3.1% below its rounded 0.8 G; 5.4% below the official README's 1.1 G at 256 px). Provenance of the
224-px MAC figures: MOAT-0/1 from the official README; MOAT-2 and tiny-MOAT-0..3 could not be read off the paper's
table here -- they are consistent with the README's 256-px figures scaled by (224/256)^2 and MOAT-2 with the paper's
plot (about 17 G), so treat them as unverified.

Deviations / options
--------------------
* Init (official): every conv / linear weight normal(0.02), zero biases, norms (1, 0), position tables normal(0.02).
* ``drop_path_rate``: linear over the blocks (``drop_path_schedule``: 0 at the first block, the rate at the last);
  the official code uses ``rate * i / n`` (not quite reaching it); default 0 (the paper trains MOAT-0/1 with
  0.2/0.3). ``pool_size`` 2 (classification, official default) or 3 (the official choice for dense prediction).
* Padding: PyTorch's symmetric padding (see the block module); the SE uses ReLU (blockzoo ``se``, the SE paper's), the
  official code SiLU: ``attn=["se(act=silu)"] * 2 + ["none"] * 2`` (same parameters and MACs).

Small inputs (28-32 px), ``stem="small"``
-----------------------------------------
The paper defines no CIFAR variant. ``stem="small"`` keeps every layer and sets the stem and the first stage to
stride 1, so a 32 px input is attended at 8x8 and 4x4 and ends at 4x4 (overall stride 8, as blockzoo's small
MobileNetV2); ``tiny_moat_0_small`` (10 classes, 32 px) uses ``mixer="moat_attn"`` (tables of the window's own
size: 15x15 and 7x7, nothing resized).
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.common.drop import drop_path_schedule
from blockzoo.blocks.common.init import init_normal
from blockzoo.blocks.common.layers import ConvNormAct
from blockzoo.blocks.mixers.moat import MBConv, MOATBlock
from blockzoo.checks import check_choice
from blockzoo.errors import ConfigError
from blockzoo.models.base import Backbone, PooledNormHead, out_size, parse_once, to_size
from blockzoo.registry import Claim, register_model

__all__ = ["MOAT", "SLOTS", "SMALL_SLOTS", "BLOCK_TYPES", "MOAT_CONFIGS"]

SLOTS = {"attn": ["se", "se", "none", "none"],
         "mixer": ["none", "none", "moat_attn(position_size=14)", "moat_attn(position_size=7)"],
         "norm": "bn", "act": "gelu", "head": "avg"}
SMALL_SLOTS = {**SLOTS, "mixer": "moat_attn"}
BLOCK_TYPES = ("mbconv", "mbconv", "moat", "moat")
LN_EPS = 1e-5

# name: (stem widths, blocks per stage, stage widths, exact params (1000 classes, official moat_test.py),
#        MACs at 224 px (blockzoo.profile.count_macs), paper params, paper MACs (224 px))
MOAT_CONFIGS: dict[str, tuple[tuple[int, int], tuple[int, ...], tuple[int, ...], int, int, float, float]] = {
    "moat_0": ((64, 64), (2, 3, 7, 2), (96, 192, 384, 768), 27_846_892, 5_638_149_120, 27.8e6, 5.7e9),
    "moat_1": ((64, 64), (2, 6, 14, 2), (96, 192, 384, 768), 41_598_448, 9_001_466_880, 41.6e6, 9.1e9),
    "moat_2": ((128, 128), (2, 6, 14, 2), (128, 256, 512, 1024), 73_422_408, 17_045_458_944, 73.4e6, 17.2e9),
    "tiny_moat_0": ((32, 32), (2, 3, 7, 2), (32, 64, 128, 256), 3_355_348, 775_052_288, 3.4e6, 0.8e9),
    "tiny_moat_1": ((40, 40), (2, 3, 7, 2), (40, 80, 160, 320), 5_122_895, 1_179_061_760, 5.1e6, 1.2e9),
    "tiny_moat_2": ((56, 56), (2, 3, 7, 2), (56, 112, 224, 448), 9_772_741, 2_239_376_384, 9.8e6, 2.3e9),
    "tiny_moat_3": ((80, 80), (2, 3, 7, 2), (80, 160, 320, 640), 19_534_390, 4_460_587_520, 19.5e6, 4.5e9),
}
_TEST = "tests/models/test_moat.py"


class MOAT(PooledNormHead, Backbone):
    """MOAT backbone (see the module docstring).

    Args:
        stem_widths: output channels of the two stem convs; depths / dims: blocks and output width per stage;
        block_types: ``"mbconv"`` or ``"moat"`` per stage.
        expansion: MBConv expansion of the output width (4).
        pool_size: kernel of the shortcut's average pooling in downsampling blocks (2; official dense tasks: 3).
        stem: ``"imagenet"`` (stride-2 stem) or ``"small"`` (stem and first stage at stride 1, for 28-32 px).
        img_size: the input size the attention windows are built for (global attention = the feature map).
        drop_rate: dropout before the classifier; drop_path_rate: stochastic depth, linear over the blocks.
        attn: the MBConvs' recalibration block (``se`` in stages 1-2), per stage; mixer: the MOAT blocks' attention.
    """

    fc_init = staticmethod(nn.init.normal_)  # the official classifier init: normal(0.02), not truncated

    _feature_path = ("stem", "stages.*")

    def __init__(self, *, stem_widths: tuple[int, int] = (64, 64), depths: tuple[int, ...] = (2, 3, 7, 2),
                 dims: tuple[int, ...] = (96, 192, 384, 768), block_types: tuple[str, ...] = BLOCK_TYPES,
                 expansion: float = 4.0, pool_size: int = 2, stem: str = "imagenet",
                 img_size: int | tuple[int, int] | None = 224, num_classes: int = 1000, in_chans: int = 3,
                 drop_rate: float = 0.0, drop_path_rate: float = 0.0, attn: Any = SLOTS["attn"],
                 mixer: Any = SLOTS["mixer"], norm: Any = SLOTS["norm"], act: Any = SLOTS["act"],
                 head: Any = SLOTS["head"], model_name: str = "moat"):
        super().__init__()
        check_choice(stem, "stem", ("imagenet", "small"), owner=model_name)
        if not len(depths) == len(dims) == len(block_types):
            raise ConfigError(f"{model_name}: depths, dims and block_types need one entry per stage, got "
                              f"{len(depths)}, {len(dims)} and {len(block_types)}")
        for t in block_types:
            check_choice(t, "block_types", ("mbconv", "moat"), owner=model_name)
        if expansion <= 0:
            raise ConfigError(f"{model_name}: expansion must be positive (the paper uses 4), got {expansion}")
        norm, act = parse_once(norm), parse_once(act)
        self.model_name, self.in_chans, self.num_stages = model_name, in_chans, len(depths)
        small = stem == "small"
        feat = to_size(img_size)

        stem_stride = 1 if small else 2
        self.stem = nn.Sequential(ConvNormAct(in_chans, stem_widths[0], 3, stem_stride, norm=norm, act=act, bias=True),
                                  nn.Conv2d(stem_widths[0], stem_widths[1], 3, 1, 1))
        feat = self.track(feat, stem_stride)
        feat = self.track(feat, 1)

        stages: list[nn.Module] = []
        in_ch = stem_widths[1]
        dpr = iter(drop_path_schedule(depths, drop_path_rate))
        for si, (n, dim, kind) in enumerate(zip(depths, dims, block_types)):
            s = 1 if small and si == 0 else 2
            self.begin_stage(si, f"stages.{si}", self.track(feat, s))
            blocks = []
            for bi in range(n):
                stride = s if bi == 0 else 1
                pos = f"stages.{si}.{bi}"
                kw = dict(attn=self.slot_value("attn", attn, si, bi), norm=norm, act=act, pool_size=pool_size,
                          ctx=self.block_ctx(pos, feat), feat_size=feat, drop_path=next(dpr))
                if kind == "moat":
                    kw["mixer"] = self.slot_value("mixer", mixer, si, bi)
                    blocks.append(MOATBlock(in_ch, dim, stride, expansion, ln_eps=LN_EPS, **kw))
                else:
                    blocks.append(MBConv(in_ch, dim, stride, expansion, **kw))
                feat, in_ch = out_size(feat, stride), dim
            stages.append(nn.Sequential(*blocks))
            self.add_feature(f"stages.{si}", dim)
        self.stages = nn.Sequential(*stages)
        self.feat_size = feat
        self.init_head(in_ch, num_classes, head, drop_rate, feat_size=feat)
        self.init_head_norm(LN_EPS)
        self._init_weights()

    def _init_weights(self) -> None:
        """Official init: conv / linear weights normal(0.02), zero biases, norms (1, 0); then each block's own
        (the position tables: normal(0.02))."""
        init_normal(self, 0.02, trunc=False)


    def no_weight_decay(self) -> set[str]:
        """The relative position tables (as Swin's in timm)."""
        return {k for k, _ in self.named_parameters() if "relative_position_bias_table" in k}


# ------------------------------------------------------------------------------------------------- registrations
def _imagenet(name: str):
    stem_widths, depths, dims = MOAT_CONFIGS[name][:3]

    def fn(*, num_classes: int = 1000, in_chans: int = 3, **kw) -> MOAT:
        return MOAT(stem_widths=stem_widths, depths=depths, dims=dims, num_classes=num_classes, in_chans=in_chans,
                    model_name=name, **kw)
    fn.__doc__ = f"{name}: MOAT at the paper's 224 px setting (global attention in stages 3-4)"
    return fn


def _spec(name: str, *extra_claims: Claim) -> dict[str, Any]:
    """register_model arguments of a paper MOAT / tiny-MOAT (numbers from :data:`MOAT_CONFIGS`)."""
    _, depths, dims, params, macs, pp, pm = MOAT_CONFIGS[name]
    family = "tiny-MOAT" if name.startswith("tiny") else "MOAT"
    return dict(
        family="moat", slots=SLOTS, paper=papers.MOAT, input_size=(3, 224, 224), num_classes=1000,
        paper_params=int(pp), paper_macs=pm, reference={"params_1000cls": params, "macs_224": macs},
        summary=f"{family}: MBConv stages, then MOAT blocks (MBConv -> global attention, no MLP); blocks "
                f"{','.join(map(str, depths))}, widths {','.join(map(str, dims))}",
        claims=(Claim(f"{params:,} parameters (1000 classes), the official code's count",
                      f"{_TEST}::test_param_counts"),
                Claim(f"about {pm / 1e9:g} G MACs at 224 px (paper table)", f"{_TEST}::test_macs_224"),
                *extra_claims))


register_model("moat_0", **_spec(
    "moat_0",
    Claim("MOAT-0 vs the paper's ImageNet-1K table: 27.8M / 5.7G vs CoAtNet-0 25M / 4.2G and ConvNeXt-T 29M / 4.5G "
          "(ours: MOAT-0 has 2.6% fewer parameters than convnext_tiny and 1.27x its MACs)",
          f"{_TEST}::test_cost_vs_convnext_tiny")))(_imagenet("moat_0"))
register_model("moat_1", **_spec("moat_1"))(_imagenet("moat_1"))
register_model("moat_2", **_spec("moat_2"))(_imagenet("moat_2"))
register_model("tiny_moat_0", **_spec(
    "tiny_moat_0",
    Claim("the no-position-embedding variant has 3,332,232 parameters (official)", f"{_TEST}::test_no_pe_counts"),
    Claim("the tiny-MOAT family only narrows the channels (same depths 2,3,7,2)",
          f"{_TEST}::test_tiny_family_only_narrows")))(_imagenet("tiny_moat_0"))
register_model("tiny_moat_1", **_spec("tiny_moat_1"))(_imagenet("tiny_moat_1"))
register_model("tiny_moat_2", **_spec("tiny_moat_2"))(_imagenet("tiny_moat_2"))
register_model("tiny_moat_3", **_spec("tiny_moat_3"))(_imagenet("tiny_moat_3"))


def _small(name: str, base: str):
    stem_widths, depths, dims = MOAT_CONFIGS[base][:3]

    def fn(*, num_classes: int = 10, in_chans: int = 3, **kw) -> MOAT:
        kw.setdefault("img_size", 32)
        kw.setdefault("mixer", SMALL_SLOTS["mixer"])
        return MOAT(stem_widths=stem_widths, depths=depths, dims=dims, stem="small", num_classes=num_classes,
                    in_chans=in_chans, model_name=name, **kw)
    fn.__doc__ = f"{base} for 28-32 px inputs (stem and first stage at stride 1; ends at 4x4)"
    return fn


_SMALL_PARAMS = 3_084_886   # tiny_moat_0_small, 3 channels, 10 classes (smaller tables: 15x15 / 7x7)
register_model(
    "tiny_moat_0_small", family="moat", slots=SMALL_SLOTS, paper=papers.MOAT, input_size=(3, 32, 32),
    num_classes=10, reference={"params_3ch_10cls": _SMALL_PARAMS},
    summary="tiny-MOAT-0 for 28-32 px inputs: stem and first stage at stride 1, attention at 8x8 and 4x4",
    claims=(Claim(f"{_SMALL_PARAMS:,} parameters (3 channels, 10 classes)", f"{_TEST}::test_small_params"),
            Claim("a 32 px input ends at 4x4 (overall stride 8)", f"{_TEST}::test_small_feature_size")),
    notes="img_size defaults to 32; mixer='moat_attn' (position tables of the window size).",
)(_small("tiny_moat_0_small", "tiny_moat_0"))
