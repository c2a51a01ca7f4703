"""HaloNets (Vaswani et al., "Scaling Local Self-Attention for Parameter Efficient Visual Backbones", CVPR 2021,
arXiv:2103.12731 [S066]): ResNet-like backbones whose bottleneck blocks put halo attention
(:mod:`blockzoo.blocks.mixers.halo`) where a ResNet has its 3x3 convolution.

Body: 7x7/2 conv stem + 3x3/2 max pool (ResNet's), four stages of (3, 3, l3, 3) bottleneck blocks; block of stage i
(base width w_i = 64 * 2^i): 1x1 conv (-> w_i) -> BN -> ReLU -> halo attention (queries / keys w_i wide, values
rv * w_i; stride 2 in the first block of stages 2-4: query subsampling) -> BN -> ReLU -> 1x1 conv (-> rb * w_i) ->
BN, plus the shortcut (identity, or 1x1 conv + BN where the shape changes), then ReLU. H3..H7 end with a 1x1 conv
to d_f features (-> BN -> ReLU) before pooling. The paper's model table (H0..H7: block size b, halo h, value
multiplier rv, output multiplier rb, l3, d_f, image size, parameters, top-1) is registered as is; we read it as
reproduced by leondgarse/keras_cv_attention_models (README and ``BLOCK_CONFIGS``) and timm's early ``byoanet``
configurations, not from the paper's PDF. Our builds match its parameter counts to 0.4% (H1: timm's ``halonet_h1``
exactly, which maps 1:1 onto ours, see ``blockzoo.weights.timm_map``), which also confirms the reading of rv (values
rv * w_i wide, queries / keys w_i) and rb. For the number of heads and the activation (not in what we could read of
the paper) we use 8 heads and ReLU (timm's ``halonet_h1``; the keras re-implementation uses 4 heads in the first
stage and SiLU; the heads only change the relative-embedding widths, about 0.01% of the parameters).

Slots: ``conv`` (the halo unit, registered per variant with the table's b and h: ``"halo(block_size=8,
halo_size=3)"``; one value per stage gives the paper's conv/attention hybrids, e.g. ``conv=["conv3x3", "conv3x3",
"conv3x3", "halo(block_size=10, halo_size=3)"]``), ``attn`` (on the branch before the addition), ``norm``, ``act``,
``connection``, ``head``. Also registered: ``halo_resnet50`` (a ResNet-50 whose last stage uses halo attention, on
the ResNet skeleton) and ``halonet_h0_small`` (H0 with a 3x3/1 stem for 28-32 px inputs, b = 2, h = 1:
the 4x4 final map still has 2 x 2 blocks, so torch.export's dynamic shapes are not specialised to one block).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.common.drop import drop_path_schedule
from blockzoo.blocks.common.layers import ConvNormAct, make_act, make_norm
from blockzoo.errors import ConfigError
from blockzoo.models.base import Backbone, ImageNetStem, init_weights, out_size, parse_once, to_size
from blockzoo.models.common.resnet import SLOTS as RESNET_SLOTS
from blockzoo.models.common.resnet import Bottleneck, ResNet, _ResidualUnit
from blockzoo.registry import Claim, build_slot, register_model

__all__ = ["SLOTS", "HaloBlock", "HaloNet"]

SLOTS = {"attn": "none", "conv": "halo", "norm": "bn", "act": "relu", "connection": "residual", "head": "avg"}
_BASE_WIDTHS = (64, 128, 256, 512)


class HaloBlock(_ResidualUnit):
    """HaloNet bottleneck: 1x1 conv -> ``conv`` slot (halo attention -> norm -> act) -> 1x1 conv -> norm, merged
    with the shortcut (the ResNet skeleton's ``attn`` / ``connection`` slots and stochastic depth), then act."""

    def __init__(self, in_ch: int, width: int, value_width: int, out_ch: int, stride: int = 1, *, conv="halo",
                 attn="none", norm="bn", act="relu", connection="residual", ctx=None, feat_size=None,
                 drop_path: float = 0.0):
        super().__init__()
        self.conv1 = ConvNormAct(in_ch, width, 1, norm=norm, act=act)
        self.conv2 = build_slot("conv", conv, width, ctx("conv", feat_size), out_channels=value_width,
                                stride=stride, norm=norm, act=act)
        self.conv3 = ConvNormAct(value_width, out_ch, 1, norm=norm, act="none")
        self._init_merge(in_ch, out_ch, stride, out_size(feat_size, stride), shortcut="B", attn=attn, norm=norm,
                         act=act, connection=connection, ctx=ctx, drop_path=drop_path)

    def zero_init_last(self) -> None:
        if getattr(self.conv3.norm, "weight", None) is not None:
            nn.init.zeros_(self.conv3.norm.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._merge(x, self.conv3(self.conv2(self.conv1(x))))


class HaloNet(Backbone):
    """The HaloNet backbone (see the module docstring).

    ``rb``: output width multiplier (stage outputs rb * 64, 128, 256, 512); ``rv``: value width multiplier of the
    attention (rv * 64, ...); ``depths``: blocks per stage (the paper's (3, 3, l3, 3)); ``num_features``: the final
    1x1 conv's width d_f (``None``: no final conv); ``stem``: ``"imagenet"`` (7x7/2 + max pool) or ``"small"``
    (3x3/1, for 28-32 px inputs). ``drop_path_rate``: stochastic depth, linear over the blocks.
    """

    _feature_path = ("stem.*", "stages.*")
    _final_path = ("final_conv",)

    def __init__(self, *, rb: float, rv: float, depths: tuple[int, ...], num_features: int | None = None,
                 num_classes: int = 1000, in_chans: int = 3, stem: str = "imagenet",
                 img_size: int | tuple[int, int] | None = None, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 zero_init_last: bool = True, model_name: str = "halonet", attn=SLOTS["attn"], conv=SLOTS["conv"],
                 norm=SLOTS["norm"], act=SLOTS["act"], connection=SLOTS["connection"], head=SLOTS["head"]):
        super().__init__()
        norm, act = parse_once(norm), parse_once(act)
        self.model_name, self.in_chans, self.num_stages = model_name, in_chans, len(depths)
        feat = to_size(img_size)
        if stem == "imagenet":
            self.stem: nn.Module = ImageNetStem(in_chans, 64, norm, act)
            feat = self.track_module(self.stem, feat)
        elif stem == "small":
            self.stem = nn.Sequential(nn.Conv2d(in_chans, 64, 3, 1, 1, bias=False), make_norm(norm, 64),
                                      make_act(act, inplace=True))
        else:
            raise ConfigError(f"{model_name}: stem must be 'imagenet' or 'small', got {stem!r}")
        self.add_feature("stem.2", 64, reduction=2 if stem == "imagenet" else 1)
        in_ch, stages = 64, []
        dpr = iter(drop_path_schedule(depths, drop_path_rate))
        for i, (n, base) in enumerate(zip(depths, _BASE_WIDTHS)):
            stride = 1 if i == 0 else 2
            self.begin_stage(i, f"stages.{i}", self.track(feat, stride))
            out_ch, blocks = int(base * rb), []
            for j in range(n):
                s = stride if j == 0 else 1
                blocks.append(HaloBlock(
                    in_ch, base, int(base * rv), out_ch, s, conv=self.slot_value("conv", conv, i, j),
                    attn=self.slot_value("attn", attn, i, j), norm=norm, act=act,
                    connection=self.slot_value("connection", connection, i, j),
                    ctx=self.block_ctx(f"stages.{i}.{j}", feat), feat_size=feat, drop_path=next(dpr)))
                feat, in_ch = out_size(feat, s), out_ch
            stages.append(nn.Sequential(*blocks))
            self.add_feature(f"stages.{i}", in_ch)
        self.stages = nn.Sequential(*stages)
        self.final_conv = nn.Identity() if num_features is None else ConvNormAct(in_ch, num_features, 1, norm=norm,
                                                                                 act=act)
        self.init_head(num_features or in_ch, num_classes, head, drop_rate, feat_size=feat)
        init_weights(self, zero_init_last=zero_init_last)


# ------------------------------------------------------------------------------------------------- registrations
_T = "tests/models/test_halonet.py::"


def _halo_slots(block_size: int, halo_size: int) -> dict[str, Any]:
    return {**SLOTS, "conv": f"halo(block_size={block_size}, halo_size={halo_size})"}


def _entry(name: str, rb: float, rv: float, l3: int, num_features: int | None, **fixed: Any):
    def build(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> HaloNet:
        return HaloNet(rb=rb, rv=rv, depths=(3, 3, l3, 3), num_features=num_features, num_classes=num_classes,
                       in_chans=in_chans, model_name=name, **fixed, **kw)

    build.__name__ = name
    build.__doc__ = f"HaloNet {name}: rb={rb}, rv={rv}, depths (3, 3, {l3}, 3), d_f={num_features}"
    return build


def _claims(params: str, top1: str) -> tuple[Claim, ...]:
    return (Claim(f"{params} parameters (paper's table)", _T + "test_param_counts"),
            Claim(f"{top1} ImageNet top-1 (paper's table)", None, status="not checked"))


# paper_params: the paper's model table (rounded to 0.1M); reference: exact counts of our builds (1000 classes)
register_model(
    "halonet_h0", family="halonet", slots=_halo_slots(8, 3), paper=papers.HALONET, input_size=(3, 256, 256),
    paper_params=5_500_000, reference={"params_1000cls": 5_500_952},
    summary="HaloNet-H0: b=8, h=3, rv=1, rb=0.5, depths (3, 3, 7, 3), 256 px", claims=_claims("5.5M", "77.9%"),
)(_entry("halonet_h0", 0.5, 1.0, 7, None))
register_model(
    "halonet_h1", family="halonet", slots=_halo_slots(8, 3), paper=papers.HALONET, input_size=(3, 256, 256),
    paper_params=8_100_000, reference={"params_1000cls": 8_100_056},
    summary="HaloNet-H1: b=8, h=3, rv=1, rb=1, depths (3, 3, 10, 3), 256 px (timm halonet_h1)",
    claims=_claims("8.1M", "79.9%") + (Claim("the same function as timm's halonet_h1 for the same weights",
                                             "tests/weights/test_timm_map.py::test_a_timm_state_dict_gives_timms_outputs"),),
)(_entry("halonet_h1", 1.0, 1.0, 10, None))
register_model(
    "halonet_h2", family="halonet", slots=_halo_slots(8, 3), paper=papers.HALONET, input_size=(3, 256, 256),
    paper_params=9_400_000, reference={"params_1000cls": 9_404_312},
    summary="HaloNet-H2: b=8, h=3, rv=1, rb=1.25, depths (3, 3, 11, 3), 256 px", claims=_claims("9.4M", "80.4%"),
)(_entry("halonet_h2", 1.25, 1.0, 11, None))
register_model(
    "halonet_h3", family="halonet", slots=_halo_slots(10, 3), paper=papers.HALONET, input_size=(3, 320, 320),
    paper_params=11_800_000, reference={"params_1000cls": 11_841_304},
    summary="HaloNet-H3: b=10, h=3, rv=1, rb=1.5, depths (3, 3, 12, 3), d_f=1024, 320 px",
    claims=_claims("11.8M", "81.9%"),
)(_entry("halonet_h3", 1.5, 1.0, 12, 1024))
register_model(
    "halonet_h4", family="halonet", slots=_halo_slots(12, 2), paper=papers.HALONET, input_size=(3, 384, 384),
    paper_params=19_100_000, reference={"params_1000cls": 19_101_976},
    summary="HaloNet-H4: b=12, h=2, rv=1, rb=3, depths (3, 3, 12, 3), d_f=1280, 384 px",
    claims=_claims("19.1M", "83.3%"),
)(_entry("halonet_h4", 3.0, 1.0, 12, 1280))
register_model(
    "halonet_h5", family="halonet", slots=_halo_slots(14, 2), paper=papers.HALONET, input_size=(3, 448, 448),
    paper_params=30_700_000, reference={"params_1000cls": 30_717_272},
    summary="HaloNet-H5: b=14, h=2, rv=2.5, rb=2, depths (3, 3, 23, 3), d_f=1536, 448 px",
    claims=_claims("30.7M", "84.0%"),
)(_entry("halonet_h5", 2.0, 2.5, 23, 1536))
register_model(
    "halonet_h6", family="halonet", slots=_halo_slots(8, 4), paper=papers.HALONET, input_size=(3, 512, 512),
    paper_params=43_400_000, reference={"params_1000cls": 43_456_792},
    summary="HaloNet-H6: b=8, h=4, rv=3, rb=2.75, depths (3, 3, 24, 3), d_f=1536, 512 px",
    claims=_claims("43.4M", "84.4%"),
)(_entry("halonet_h6", 2.75, 3.0, 24, 1536))
register_model(
    "halonet_h7", family="halonet", slots=_halo_slots(10, 3), paper=papers.HALONET, input_size=(3, 600, 600),
    paper_params=67_400_000, reference={"params_1000cls": 67_433_240},
    summary="HaloNet-H7: b=10, h=3, rv=4, rb=3.5, depths (3, 3, 26, 3), d_f=2048, 600 px",
    claims=_claims("67.4M", "84.9%"),
)(_entry("halonet_h7", 3.5, 4.0, 26, 2048))
register_model(
    "halonet_h0_small", family="halonet", slots=_halo_slots(2, 1), paper=papers.HALONET, input_size=(3, 32, 32),
    num_classes=10, reference={"params_3ch_10cls": 5_219_322},
    summary="HaloNet-H0 for 28-32 px inputs: 3x3/1 stem (no max pool), b=2, h=1",
    claims=(Claim("trains on 32 px inputs (loss falls in a few steps)", _T + "test_small_variant_trains"),),
)(_entry("halonet_h0_small", 0.5, 1.0, 7, None, stem="small"))


@register_model(
    "halo_resnet50", family="halonet", slots={**RESNET_SLOTS, "conv": ["conv3x3", "conv3x3", "conv3x3", "halo"]},
    paper=papers.HALONET, input_size=(3, 256, 256), reference={"params_1000cls": 20_848_808},
    summary="ResNet-50 whose last stage has halo attention (b=8, h=3, 8 heads) instead of its 3x3 convolutions",
    claims=(Claim("a halo-attention stage in a ResNet body: fewer parameters than ResNet-50 (attention replaces "
                  "the 3x3 convs)", _T + "test_halo_resnet50"),),
)
def halo_resnet50(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> ResNet:
    """ResNet-50 (timm-style bottlenecks, 7x7 stem) with halo attention in the 3x3 position of stage 4."""
    kw.setdefault("zero_init_last", True)
    return ResNet(Bottleneck, (3, 4, 6, 3), (64, 128, 256, 512), num_classes=num_classes, in_chans=in_chans,
                  model_name="halo_resnet50", **kw)
