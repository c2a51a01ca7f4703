"""MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018,
arXiv:1801.04381; inventory S071) with ``attn`` / ``norm`` / ``act`` / ``head`` slots.

Architecture (paper Table 2 and the reference code: tensorflow/models ``slim/nets/mobilenet``, torchvision)
---------------------------------------------------------------------------------------------------------
* stem: 3x3 conv, stride 2, 32 channels -> BN -> ReLU6;
* inverted residual blocks, ``(t, c, n, s)`` = (1,16,1,1), (6,24,2,2), (6,32,3,2), (6,64,4,2), (6,96,3,1),
  (6,160,3,2), (6,320,1,1): 1x1 expansion to ``t * C_in`` -> BN -> ReLU6 (omitted when t = 1) -> 3x3 depthwise
  (stride s on the first block of a stage) -> BN -> ReLU6 -> 1x1 *linear* projection -> BN (no activation);
  identity residual when stride = 1 and C_in = C_out;
* last 1x1 conv to 1280 -> BN -> ReLU6, global average pooling, dropout (0.2, torchvision's default), FC.

Width multiplier ``alpha`` (0.35 ... 1.4): every channel count is ``make_divisible(c * alpha, 8)`` (stem included);
the last conv stays at 1280 for ``alpha <= 1`` and becomes ``make_divisible(1280 * alpha, 8)`` above 1, as in the
reference code. ``mobilenetv2_100`` has exactly 3,504,872 parameters (1000 classes) and 300.8M MACs at 224 px
(conv + linear multiply-adds, ``blockzoo.profile.count_macs``); the paper's Table 4 says 3.4M / 300M.

Small inputs (28-32 px), ``stem="small"``
-----------------------------------------
Neither the MobileNetV2 paper nor the ECA / CA papers define a CIFAR variant. We follow the common CIFAR practice of
kuangliu/pytorch-cifar (``models/mobilenetv2.py``): the stem conv gets stride 1 and the first stride-2 stage
(c = 24) gets stride 1; the later stride-2 stages (32, 64, 160) are kept, so the network downsamples by 8:
a 32 px input ends at 4x4, a 28 px input at 4x4 (28 -> 14 -> 7 -> 4). Only the strides change (same parameters as
the ImageNet model). kuangliu's other departures (ReLU instead of ReLU6, conv shortcuts, an expansion conv in the
t = 1 block) are *not* copied. Registered as ``mobilenetv2_050_small`` / ``mobilenetv2_100_small`` (10 classes,
32 px, dropout 0); any width via ``create_model("mobilenetv2_075", stem="small", img_size=32, num_classes=10)``.

Where the ``attn`` block goes (``ATTN_RULES``)
---------------------------------------------
The position follows each attention paper's official MobileNetV2 code, keyed by block name:

============ =========== ============== =====================================================================
block        position    in t=1 block   source
============ =========== ============== =====================================================================
``coord``    after_dw    no             houqb (Andrew-Qibin)/CoordAttention ``mbv2_ca.py``: ``CoordAtt`` after the
                                        depthwise conv's ReLU6, before the linear projection, and only in the
                                        t = 6 branch (the t = 1 block has no CA)
``se``       after_dw    yes            MnasNet / MobileNetV3 convention (SE on the expanded features after the
                                        depthwise conv and its activation, before the projection)
``eca``      after_proj  yes            BangguWu/ECANet ``models/eca_mobilenetv2.py``: ``eca_layer(oup)`` after
                                        the projection BN, before the residual add, in every block
``eca_ns``   after_proj  yes            same as ECA
other        after_dw    yes            default for any other attn block (and callables)
============ =========== ============== =====================================================================

Override with ``attn_position="after_dw" | "after_proj"`` and ``attn_first_block=True | False``. ``after_dw``
blocks see ``t * C_in`` channels, ``after_proj`` blocks ``C_out``.

ECA kernel sizes: by default the paper's adaptive formula ``k = psi(C)`` on the channels the block sees (3 for C up to
96, 5 for 160 and 320 at alpha = 1). ``eca_k_official=True`` reproduces the released ECA-MobileNetV2, whose code sets
``k = 1 if c <= 96 else 3`` from the stage's *table* width c (before the width multiplier): 25 ECA parameters in all
instead of 59. (Only the kernels are reproduced: that code also rounds widths with ``int(c * alpha)`` instead of
``make_divisible``, which matters only for alpha != 1.)

"Coordinate Attention on MobileNetV2 adds nearly no computational overhead" (CA paper's MobileNetV2 table)
--------------------------------------------------------------------------------------------------------
==========================  ============================  =====================================================
model (alpha = 1, 224 px)    paper                         blockzoo (1000 classes)
==========================  ============================  =====================================================
MobileNetV2                  3.5M params, 300M MAdds       3,504,872 params, 300,774,272 MACs
MobileNetV2 + CA             3.95M params, 310M MAdds      3,950,648 params (+445,776, +12.7 %),
                                                           306,666,368 MACs (+5,892,096, +1.96 %)
==========================  ============================  =====================================================

The parameter count matches the paper's 3.95M. Our MACs count multiply-adds of convolutions / linear layers only
(``blockzoo.profile.count_macs``); adding the two elementwise products ``x * a_w * a_h`` over every attended feature
map (2 x 1,900,416 = 3,800,832 multiplications at 224 px) gives 310.5M, i.e. the paper's 310M. Either way the
overhead is 2-3 % of the MACs: "nearly no computational overhead" holds for compute; the parameter overhead
(+12.7 %) is not negligible.
The CA paper's "MobileNetV2 + SE 3.89M" is matched by SE with ``reduction=24`` on all 17 blocks (3,888,305; the
paper does not state its SE ratio);
blockzoo's ``se`` default (r = 16, the SENet paper) gives 4,076,486.
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.common.drop import drop_path_schedule
from blockzoo.blocks.common.inverted_residual import ATTN_POSITIONS, MBV2_SETTINGS, InvertedResidual
from blockzoo.blocks.common.layers import ConvNormAct, make_divisible
from blockzoo.errors import ConfigError
from blockzoo.models.base import Backbone, init_weights, out_size, parse_once, to_size
from blockzoo.registry import Claim, parse_slot_value, register_model

__all__ = ["MobileNetV2", "MBV2_SETTINGS", "ATTN_RULES", "attn_rule", "eca_official_k", "SLOTS"]

SLOTS = {"attn": "none", "norm": "bn", "act": "relu6", "head": "avg"}


# block name -> (position, also in the t = 1 block); see the module docstring for the sources.
ATTN_RULES: dict[str, tuple[str, bool]] = {
    "coord": ("after_dw", False),
    "se": ("after_dw", True),
    "eca": ("after_proj", True),
    "eca_ns": ("after_proj", True),
}
DEFAULT_ATTN_RULE: tuple[str, bool] = ("after_dw", True)


def attn_rule(attn: Any) -> tuple[str, bool]:
    """``(position, in_first_block)`` for an ``attn`` slot value, from :data:`ATTN_RULES` (default: after_dw, yes)."""
    name, _ = parse_slot_value(attn)
    return ATTN_RULES.get(name, DEFAULT_ATTN_RULE) if isinstance(name, str) else DEFAULT_ATTN_RULE


def _eca_official(attn: Any, c: int) -> Any:
    """``eca_k_official``: the released kernel of the stage (table width ``c``) for an ``eca`` value."""
    name, kw = parse_slot_value(attn)
    if name == "none":
        return attn
    if name != "eca":
        raise ConfigError(f"eca_k_official=True only applies to attn='eca', got attn={attn!r}")
    if "k_size" in kw:
        raise ConfigError("eca_k_official=True sets k_size per stage; do not also pass eca(k_size=...)")
    return "eca", {**kw, "k_size": eca_official_k(c)}


def eca_official_k(c: int) -> int:
    """Kernel size of the released ECA-MobileNetV2 (``models/eca_mobilenetv2.py``): 1 if the stage's table width
    c <= 96, else 3."""
    return 1 if c <= 96 else 3


class MobileNetV2(Backbone):
    """MobileNetV2 with slots; see the module docstring for the options and the attention placement rules.

    Args:
        width_mult: the paper's width multiplier alpha (channels rounded with ``make_divisible(., 8)``).
        stem: ``"imagenet"`` (3x3/2 stem, paper strides) or ``"small"`` (stem stride 1 and the c = 24 stage at stride 1,
            for 28-32 px inputs).
        img_size: input size, used to check attention blocks that need a minimum / fixed feature size.
        attn_position: ``None`` (per-block rule), ``"after_dw"`` or ``"after_proj"``.
        attn_first_block: put ``attn`` in the t = 1 block too (``None``: per-block rule; CA's official code: no).
        eca_k_official: with ``attn="eca"``, use the released ECA-MobileNetV2 kernels (k = 1 for c <= 96, else 3).
        drop_rate: dropout before the classifier; drop_path_rate: stochastic depth on the residual branches, linear
            over the blocks (timm's schedule; not in the paper).

    ``attn`` takes one value per bottleneck stage (the 7 rows of the paper's Table 2), e.g.
    ``attn=["none"] * 3 + ["nonlocal"] * 4`` keeps costly blocks (non-local, residual attention) to the late,
    low-resolution stages, as the non-local paper does in ResNets; or a :class:`~blockzoo.models.base.PerBlock`.
    """

    _feature_path, _final_path = ("stem", "blocks.*"), ("conv_head",)

    def __init__(self, *, width_mult: float = 1.0, num_classes: int = 1000, in_chans: int = 3, stem: str = "imagenet",
                 img_size: int | tuple[int, int] | None = None, drop_rate: float = 0.2, drop_path_rate: float = 0.0,
                 attn: Any = SLOTS["attn"],
                 attn_position: str | None = None, attn_first_block: bool | None = None, eca_k_official: bool = False,
                 norm: Any = SLOTS["norm"], act: Any = SLOTS["act"], head: Any = SLOTS["head"],
                 round_nearest: int = 8,
                 last_channels: int = 1280, settings: tuple[tuple[int, int, int, int], ...] = MBV2_SETTINGS,
                 model_name: str = "mobilenetv2", zero_init_last: bool = False):
        super().__init__()
        norm, act = parse_once(norm), parse_once(act)
        if width_mult <= 0:
            raise ConfigError(f"width_mult must be positive (the paper uses 0.35 ... 1.4), got {width_mult}")
        if stem not in ("imagenet", "small", "cifar"):
            raise ConfigError(f"stem must be 'imagenet' (224 px) or 'small' (28-32 px inputs), got {stem!r}")
        if attn_position is not None and attn_position not in ATTN_POSITIONS:
            raise ConfigError(f"attn_position must be None (per-block rule) or one of {ATTN_POSITIONS}, "
                              f"got {attn_position!r}")

        self.model_name, self.in_chans, self.width_mult = model_name, in_chans, width_mult
        self.num_stages = len(settings)
        self.stem_type, self.attn_position, self.attn_first_block = stem, attn_position, attn_first_block
        small = stem in ("small", "cifar")
        feat = to_size(img_size)
        stem_ch = make_divisible(32 * width_mult, round_nearest)
        stem_stride = 1 if small else 2
        self.stem = ConvNormAct(in_chans, stem_ch, 3, stem_stride, norm=norm, act=act)
        feat = self.track(feat, stem_stride)

        blocks: list[nn.Module] = []
        in_ch, first_stride2 = stem_ch, True
        dpr = iter(drop_path_schedule([n for _, _, n, _ in settings], drop_path_rate))
        for si, (t, c, n, s) in enumerate(settings):
            out_ch = make_divisible(c * width_mult, round_nearest)
            if small and s == 2 and first_stride2:
                s, first_stride2 = 1, False  # CIFAR practice: the first stride-2 stage keeps the resolution
            elif s == 2:
                first_stride2 = False
            if s == 2 and blocks:   # a feature map at the end of each resolution (timm's feature_info)
                self.add_feature(f"blocks.{len(blocks) - 1}", in_ch)
            self.begin_stage(si, f"blocks.{len(blocks)}-{len(blocks) + n - 1}", self.track(feat, s))
            for i in range(n):
                stride = s if i == 0 else 1
                value = self.slot_value("attn", attn, si, i)
                rule_pos, rule_first = attn_rule(value)
                first_block = rule_first if attn_first_block is None else attn_first_block
                use_attn = value if t != 1 or first_block else "none"
                if eca_k_official:
                    use_attn = _eca_official(use_attn, c)
                pos = f"blocks.{len(blocks)}"
                blocks.append(InvertedResidual(
                    in_ch, out_ch, stride, t, attn=use_attn, attn_position=attn_position or rule_pos, norm=norm,
                    act=act, feat_size=feat, ctx=self.block_ctx(pos, feat), drop_path=next(dpr)))
                feat, in_ch = out_size(feat, stride), out_ch
        self.add_feature(f"blocks.{len(blocks) - 1}", in_ch)
        self.blocks = nn.Sequential(*blocks)
        self.feat_size = feat
        head_ch = make_divisible(last_channels * width_mult, round_nearest) if width_mult > 1.0 else last_channels
        self.conv_head = ConvNormAct(in_ch, head_ch, 1, norm=norm, act=act)
        self.init_head(head_ch, num_classes, head, drop_rate)
        init_weights(self, zero_init_last=zero_init_last)
        if isinstance(self.fc, nn.Linear):  # reference init of the classifier (torchvision / official code)
            nn.init.normal_(self.fc.weight, 0, 0.01)
            nn.init.zeros_(self.fc.bias)


# ------------------------------------------------------------------------------------------------- registrations
# name: (width, exact params at 1000 classes, MACs at 224 px as counted by blockzoo.profile.count_macs, published
# params and MAdds: MobileNetV2 paper Table 4 for x1.0 / x1.4, the tensorflow/models slim mobilenet README for
# x0.35 - x0.75; its x1.4 checkpoint has 6.06M params / 582M MACs, the paper's 6.9M does not match the released model)
_IMAGENET: dict[str, tuple[float, int, int, float, float]] = {
    "mobilenetv2_035": (0.35, 1_677_128, 59_285_808, 1.66e6, 59e6),
    "mobilenetv2_050": (0.50, 1_968_680, 97_131_840, 1.95e6, 97e6),
    "mobilenetv2_075": (0.75, 2_636_424, 209_069_792, 2.61e6, 209e6),
    "mobilenetv2_100": (1.00, 3_504_872, 300_774_272, 3.4e6, 300e6),
    "mobilenetv2_140": (1.40, 6_108_776, 582_195_824, 6.9e6, 585e6),
}
_TEST = "tests/models/test_mobilenetv2.py"


def _imagenet(name: str, width: float):
    def fn(*, num_classes: int = 1000, in_chans: int = 3, **kw) -> MobileNetV2:
        return MobileNetV2(width_mult=width, num_classes=num_classes, in_chans=in_chans, model_name=name, **kw)
    fn.__doc__ = f"MobileNetV2 with width multiplier {width} (ImageNet, 224 px)"
    return fn


def _small(name: str, width: float):
    def fn(*, num_classes: int = 10, in_chans: int = 3, **kw) -> MobileNetV2:
        kw.setdefault("img_size", 32)
        kw.setdefault("stem", "small")
        kw.setdefault("drop_rate", 0.0)
        return MobileNetV2(width_mult=width, num_classes=num_classes, in_chans=in_chans, model_name=name, **kw)
    fn.__doc__ = f"MobileNetV2 x{width} for 28-32 px inputs (stem stride 1, c=24 stage stride 1; ends at 4x4)"
    return fn


def _imagenet_spec(name: str, *extra_claims: Claim) -> dict[str, Any]:
    """register_model arguments of an ImageNet MobileNetV2 (numbers from the table above)."""
    w, params, macs, pp, pm = _IMAGENET[name]
    return dict(
        family="mobilenetv2", slots=SLOTS, paper=papers.MOBILENETV2, input_size=(3, 224, 224), num_classes=1000,
        paper_params=int(pp), paper_macs=pm, reference={"params_1000cls": params, "macs_224": macs},
        summary=f"MobileNetV2 x{w}: inverted residuals with linear bottlenecks, ReLU6, 224 px",
        claims=(Claim(f"{params:,} parameters (1000 classes)", f"{_TEST}::test_param_counts_imagenet"),
                *extra_claims))


def _small_spec(name: str) -> dict[str, Any]:
    """register_model arguments of a 28-32 px MobileNetV2 (numbers from the table below)."""
    w, params = _SMALL[name]
    return dict(
        family="mobilenetv2", slots=SLOTS, paper=papers.MOBILENETV2, input_size=(3, 32, 32), num_classes=10,
        reference={"params_3ch_10cls": params},
        summary=f"MobileNetV2 x{w} for 28-32 px inputs: stem stride 1, the c=24 stage at stride 1 (kuangliu CIFAR "
                f"practice), 4x4 final map",
        claims=(Claim(f"{params:,} parameters (3 channels, 10 classes)", f"{_TEST}::test_param_counts_small"),
                Claim("a 32 px input ends at 4x4 (overall stride 8)", f"{_TEST}::test_small_feature_size")),
        notes="img_size defaults to 32, drop_rate to 0.")


register_model("mobilenetv2_035", **_imagenet_spec("mobilenetv2_035"))(_imagenet("mobilenetv2_035", 0.35))
register_model("mobilenetv2_050", **_imagenet_spec("mobilenetv2_050"))(_imagenet("mobilenetv2_050", 0.50))
register_model("mobilenetv2_075", **_imagenet_spec("mobilenetv2_075"))(_imagenet("mobilenetv2_075", 0.75))
register_model("mobilenetv2_100", **_imagenet_spec(
    "mobilenetv2_100",
    Claim("about 300M MACs at 224 px (paper Table 4: 300M MAdds)", f"{_TEST}::test_macs_224"),
    Claim("Coordinate Attention adds nearly no computational overhead (CA paper: 3.5M/300M -> 3.95M/310M; ours: "
          "+445,776 params -> 3,950,648, +5.89M conv MACs -> 306.7M)", f"{_TEST}::test_coord_overhead"),
    Claim("ECA adds only k parameters per module (paper formula: 59 in all; released kernels: 25)",
          f"{_TEST}::test_eca_params_per_module")))(_imagenet("mobilenetv2_100", 1.00))
register_model("mobilenetv2_140", **_imagenet_spec("mobilenetv2_140"))(_imagenet("mobilenetv2_140", 1.40))

_SMALL = {"mobilenetv2_050_small": (0.5, 700_490), "mobilenetv2_100_small": (1.0, 2_236_682)}
register_model("mobilenetv2_050_small", **_small_spec("mobilenetv2_050_small"))(_small("mobilenetv2_050_small", 0.5))
register_model("mobilenetv2_100_small", **_small_spec("mobilenetv2_100_small"))(_small("mobilenetv2_100_small", 1.0))
