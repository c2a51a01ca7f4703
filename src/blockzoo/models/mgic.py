"""MGIC networks (Eliasof, Ephrath, Ruthotto & Treister, "MGIC: Multigrid-in-Channels Neural Network Architectures",
SIAM J. Sci. Comput. 2023, arXiv:2011.09128, inventory S106; official code
https://github.com/BGUCompSci/MultigridInChannelsCNNs): ResNets and a MobileNetV2-style network whose every block is
an MGIC block, i.e. a V-cycle over the channels (:mod:`blockzoo.blocks.conv.mgic`) whose level blocks are the host
network's block with grouped convolutions of group size g (one group on the coarsest level).

MGIC block (both families): [connector, when the block changes the channels or the resolution: 3x3 conv with
gcd(C_in, C_out) groups, stride s -> BN -> act, as the official ``MgBlockDwGroup.shortcut`` (``groups=in_planes``)]
-> the channel V-cycle on C_out channels with the family's level block.

* **MGIC ResNets** (official ``resnetMG.py``, ``bottleneck=False``): the level block is the basic residual block
  (``resnetStep``): 3x3 conv (c/g groups) -> BN -> ReLU -> 3x3 conv (c/g groups) -> BN, + identity, ReLU. There is no
  residual around the whole MGIC block (each level block has its own). ``mgic_resnet20`` / ``mgic_resnet56``: He et
  al.'s CIFAR layouts (3x3 stem with 16 channels, 3 stages of 3 / 9 blocks, widths 16 / 32 / 64, strides 1 / 2 / 2,
  global average pooling, FC) with MGIC blocks, g = 16: the 16-channel stage is a single fully coupled level (an
  ordinary basic block), the 32-channel stage has the levels 32 -> 16 and the 64-channel stage 64 -> 32 -> 16.
* **MGIC MobileNetV2** (the paper's MobileNet experiments; official ``mobilenetv3_MG.py``): MobileNetV2's layout
  (paper Table 2: stem 3x3/2 with 32 channels, the seven ``(t, c, n, s)`` rows, 1x1 head conv to 1280, pooling, FC;
  ``blockzoo.models.mobilenetv2``) whose inverted residuals become MGIC blocks; the level block is the inverted
  residual with grouped point-wise convs: 1x1 expand (c/g groups) to t * c -> BN -> ReLU6 -> 3x3 depthwise -> BN ->
  ReLU6 -> 1x1 linear projection (c/g groups) -> BN, + identity (the official ``netMGParamsDWGroup`` convs with
  ``groupsChannel``; dense point-wise convs on the coarsest level). ``mgic_mobilenetv2_100`` (224 px) and
  ``mgic_mobilenetv2_100_small`` (28-32 px: stem stride 1 and the c = 24 stage at stride 1, as
  ``mobilenetv2_100_small``).

Where the official code differs (documented, not reproduced): its MobileNet connector is a dense 1x1 conv with the
block's stride and no norm (here the ResNet connector above, linear in the width); its MobileNet level step returns
``relu(conv(x) + x) + x`` (here the standard inverted residual ``x + conv(x)``); it builds MobileNetV3 (SE, h-swish,
its own channel table); its scripts re-initialise R and P with their generic conv init (here they start as channel
averages, their constructor's init). The paper's tables (exact widths, group sizes and parameter counts of its MGIC
networks) could not be read here -- only the abstract was available -- so these variants are blockzoo's
configurations of the paper's construction at the official default g = 16, and no paper figure is claimed for them;
their exact counts are in the registry (``reference``).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.common.drop import drop_path_schedule, make_drop_path
from blockzoo.blocks.common.inverted_residual import MBV2_SETTINGS
from blockzoo.blocks.common.layers import ConvNormAct, make_act
from blockzoo.blocks.conv.mgic import MGICConv
from blockzoo.errors import ConfigError
from blockzoo.models.base import Backbone, init_weights, out_size, parse_once, to_size
from blockzoo.registry import Claim, register_model

__all__ = ["MGICBasicLevel", "MGICInvertedResidualLevel", "MGICResNet", "MGICMobileNetV2", "SLOTS", "MBV2_SLOTS"]

SLOTS = {"norm": "bn", "act": "relu", "head": "avg"}
MBV2_SLOTS = {"norm": "bn", "act": "relu6", "head": "avg"}



class MGICBasicLevel(nn.Module):
    """Level block of the MGIC ResNets: basic residual block with grouped 3x3 convs, ``act(x + conv2(conv1(x)))``."""

    def __init__(self, channels: int, groups: int, norm: Any = "bn", act: Any = "relu", drop_path: float = 0.0):
        super().__init__()
        self.conv1 = ConvNormAct(channels, channels, 3, groups=groups, norm=norm, act=act)
        self.conv2 = ConvNormAct(channels, channels, 3, groups=groups, norm=norm, act=None)
        self.drop_path = make_drop_path(drop_path)
        self.act = make_act(act, inplace=True)   # on the fresh residual sum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.drop_path(self.conv2(self.conv1(x))))


class MGICInvertedResidualLevel(nn.Module):
    """Level block of the MGIC MobileNets: inverted residual with grouped point-wise convs,
    ``x + project(dw(expand(x)))`` (no expansion conv when t = 1)."""

    def __init__(self, channels: int, groups: int, expand_ratio: int, norm: Any = "bn", act: Any = "relu6",
                 drop_path: float = 0.0):
        super().__init__()
        hidden = channels * expand_ratio
        self.conv_pw = (ConvNormAct(channels, hidden, 1, groups=groups, norm=norm, act=act) if expand_ratio != 1
                        else nn.Identity())
        self.conv_dw = ConvNormAct(hidden, hidden, 3, groups=hidden, norm=norm, act=act)
        self.conv_pwl = ConvNormAct(hidden, channels, 1, groups=groups, norm=norm, act=None)   # linear bottleneck
        self.drop_path = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.conv_pwl(self.conv_dw(self.conv_pw(x))))


def _mgic_block(in_ch: int, out_ch: int, stride: int, level, *, group_size: int, coarse_channels: int | None,
                norm: Any, act: Any) -> MGICConv:
    """An MGIC block: the ``mgic`` unit's connector and channel V-cycle with the family's ``level(c, groups)``."""
    return MGICConv(in_ch, out_ch, stride, norm=norm, act=act, group_size=group_size,
                    coarse_channels=coarse_channels, level_block=level)


class MGICResNet(Backbone):
    """CIFAR-style ResNet whose blocks are MGIC blocks with :class:`MGICBasicLevel` level blocks (module docstring).

    Args:
        layers, widths: blocks and channels per stage (strides 1, 2, 2, ...).
        group_size: g of every MGIC block (official default 16); coarse_channels: see ``mgic``.
        drop_path_rate: stochastic depth on the level blocks' residual branches, linear over the MGIC blocks (every
            level of a block gets the block's rate; not in the paper).
    """

    _feature_path = ("stem", "stages.*")

    def __init__(self, layers: tuple[int, ...] = (3, 3, 3), widths: tuple[int, ...] = (16, 32, 64), *,
                 num_classes: int = 10, in_chans: int = 3, img_size: int | tuple[int, int] | None = None,
                 group_size: int = 16, coarse_channels: int | None = None, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, norm: Any = SLOTS["norm"], act: Any = SLOTS["act"],
                 head: Any = SLOTS["head"], model_name: str = "mgic_resnet"):
        super().__init__()
        if len(layers) != len(widths) or not layers:
            raise ConfigError(f"{model_name}: layers and widths need one entry per stage, got {layers} and {widths}")
        norm, act = parse_once(norm), parse_once(act)
        self.model_name, self.in_chans, self.num_stages = model_name, in_chans, len(layers)
        feat = to_size(img_size)
        self.stem = ConvNormAct(in_chans, widths[0], 3, norm=norm, act=act)
        feat = self.track(feat, 1)
        self.add_feature("stem", widths[0], reduction=1)
        dpr = iter(drop_path_schedule(layers, drop_path_rate))
        in_ch, stages = widths[0], []
        for i, (n, w) in enumerate(zip(layers, widths)):
            stage_stride = 1 if i == 0 else 2
            self.begin_stage(i, f"stages.{i}", self.track(feat, stage_stride))
            blocks = []
            for j in range(n):
                rate = next(dpr)
                blocks.append(_mgic_block(
                    in_ch, w, stage_stride if j == 0 else 1,
                    lambda c, g, rate=rate: MGICBasicLevel(c, g, norm, act, rate),
                    group_size=group_size, coarse_channels=coarse_channels, norm=norm, act=act))
                in_ch = w
            feat = out_size(feat, stage_stride)
            stages.append(nn.Sequential(*blocks))
            self.add_feature(f"stages.{i}", w)
        self.stages = nn.Sequential(*stages)
        self.init_head(in_ch, num_classes, head, drop_rate, feat_size=feat)
        init_weights(self)


class MGICMobileNetV2(Backbone):
    """MobileNetV2 whose inverted residuals are MGIC blocks with :class:`MGICInvertedResidualLevel` level blocks.

    Args:
        stem: ``"imagenet"`` (paper strides) or ``"small"`` (stem stride 1 and the c = 24 stage at stride 1).
        group_size, coarse_channels: see ``mgic``; drop_path_rate: as in :class:`MGICResNet`.
    """

    _feature_path, _final_path = ("stem", "blocks.*"), ("conv_head",)

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, stem: str = "imagenet",
                 img_size: int | tuple[int, int] | None = None, group_size: int = 16,
                 coarse_channels: int | None = None, drop_rate: float = 0.2, drop_path_rate: float = 0.0,
                 norm: Any = MBV2_SLOTS["norm"], act: Any = MBV2_SLOTS["act"], head: Any = MBV2_SLOTS["head"],
                 last_channels: int = 1280, model_name: str = "mgic_mobilenetv2"):
        super().__init__()
        if stem not in ("imagenet", "small"):
            raise ConfigError(f"{model_name}: stem must be 'imagenet' (224 px) or 'small' (28-32 px inputs), "
                              f"got {stem!r}")
        norm, act = parse_once(norm), parse_once(act)
        self.model_name, self.in_chans, self.num_stages = model_name, in_chans, len(MBV2_SETTINGS)
        small = stem == "small"
        feat = to_size(img_size)
        self.stem = ConvNormAct(in_chans, 32, 3, 1 if small else 2, norm=norm, act=act)
        feat = self.track(feat, 1 if small else 2)
        dpr = iter(drop_path_schedule([n for _, _, n, _ in MBV2_SETTINGS], drop_path_rate))
        blocks: list[nn.Module] = []
        in_ch, first_stride2 = 32, True
        for si, (t, c, n, s) in enumerate(MBV2_SETTINGS):
            if s == 2 and first_stride2:
                first_stride2 = False
                s = 1 if small else s     # CIFAR practice, as mobilenetv2_*_small
            if s == 2:                    # a feature map at the end of each resolution (as MobileNetV2)
                self.add_feature(f"blocks.{len(blocks) - 1}", in_ch)
            self.begin_stage(si, f"blocks.{len(blocks)}-{len(blocks) + n - 1}", self.track(feat, s))
            for i in range(n):
                rate = next(dpr)
                blocks.append(_mgic_block(
                    in_ch, c, s if i == 0 else 1,
                    lambda ch, g, t=t, rate=rate: MGICInvertedResidualLevel(ch, g, t, norm, act, rate),
                    group_size=group_size, coarse_channels=coarse_channels, norm=norm, act=act))
                in_ch = c
            feat = out_size(feat, s)
        self.add_feature(f"blocks.{len(blocks) - 1}", in_ch)
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = ConvNormAct(in_ch, last_channels, 1, norm=norm, act=act)
        self.init_head(last_channels, num_classes, head, drop_rate, feat_size=feat)
        init_weights(self)


# ------------------------------------------------------------------------------------------------- registrations
# name: (exact parameters, MACs as counted by blockzoo.profile.count_macs; 3 channels, 10 classes at 32 px for the
# CIFAR-size models, 1000 classes at 224 px for the ImageNet one) and the dense counterpart they are compared with
_COUNTS: dict[str, tuple[int, int]] = {
    "mgic_resnet20": (163_258, 32_207_488),            # resnet20: 269,722 / 40,551,040
    "mgic_resnet56": (485_434, 95_515_264),            # resnet56: 853,018 / 125,485,696
    "mgic_mobilenetv2_100": (2_506_968, 194_546_976),  # mobilenetv2_100: 3,504,872 / 300,774,272
    "mgic_mobilenetv2_100_small": (1_238_778, 58_352_640),  # mobilenetv2_100_small: 2,236,682 / 87,976,448
}
_TEST = "tests/models/test_mgic.py"


def _resnet_spec(name: str, depth: int, dense: str) -> dict[str, Any]:
    params, macs = _COUNTS[name]
    return dict(
        family="mgic", slots=SLOTS, paper=papers.MGIC, input_size=(3, 32, 32), num_classes=10,
        reference={"params_3ch_10cls": params, "macs_32": macs},
        summary=f"MGIC-ResNet-{depth}: CIFAR ResNet-{depth} (16/32/64) whose basic blocks are MGIC blocks (channel "
                f"V-cycles of grouped basic blocks, g = 16)",
        claims=(Claim(f"{params:,} parameters (3 channels, 10 classes), fewer than {dense} for the same layout",
                      f"{_TEST}::test_resnet_param_counts"),
                Claim("the MGIC ResNet's parameters grow linearly with the width (the ResNet's quadratically)",
                      f"{_TEST}::test_mgic_resnet_linear_in_width")),
        notes="blockzoo's configuration of the paper's construction (the paper's widths / group sizes could not be "
              "read); group_size= and coarse_channels= as in the mgic block.")


@register_model("mgic_resnet20", **_resnet_spec("mgic_resnet20", 20, "resnet20"))
def mgic_resnet20(*, num_classes: int = 10, in_chans: int = 3, **kw) -> MGICResNet:
    """MGIC-ResNet-20 (CIFAR, 3 x 3 MGIC blocks)."""
    kw.setdefault("img_size", 32)
    return MGICResNet((3, 3, 3), (16, 32, 64), num_classes=num_classes, in_chans=in_chans,
                      model_name="mgic_resnet20", **kw)


@register_model("mgic_resnet56", **_resnet_spec("mgic_resnet56", 56, "resnet56"))
def mgic_resnet56(*, num_classes: int = 10, in_chans: int = 3, **kw) -> MGICResNet:
    """MGIC-ResNet-56 (CIFAR, 3 x 9 MGIC blocks)."""
    kw.setdefault("img_size", 32)
    return MGICResNet((9, 9, 9), (16, 32, 64), num_classes=num_classes, in_chans=in_chans,
                      model_name="mgic_resnet56", **kw)


@register_model(
    "mgic_mobilenetv2_100", family="mgic", slots=MBV2_SLOTS, paper=papers.MGIC, input_size=(3, 224, 224),
    num_classes=1000, reference={"params_1000cls": _COUNTS["mgic_mobilenetv2_100"][0],
                                 "macs_224": _COUNTS["mgic_mobilenetv2_100"][1]},
    summary="MGIC-MobileNetV2: MobileNetV2 whose inverted residuals are MGIC blocks (grouped point-wise convs, g = 16)",
    claims=(Claim(f"{_COUNTS['mgic_mobilenetv2_100'][0]:,} parameters (1000 classes), 72% of MobileNetV2's "
                  f"3,504,872", f"{_TEST}::test_mobilenet_param_counts"),
            Claim(f"{_COUNTS['mgic_mobilenetv2_100'][1] / 1e6:.1f}M MACs at 224 px (MobileNetV2: 300.8M)",
                  f"{_TEST}::test_mobilenet_macs_224")),
    notes="blockzoo's configuration of the paper's construction on MobileNetV2 (the paper reports MobileNetV3; its "
          "tables could not be read). stem='small' and img_size= for 28-32 px inputs.",
)
def mgic_mobilenetv2_100(*, num_classes: int = 1000, in_chans: int = 3, **kw) -> MGICMobileNetV2:
    """MGIC-MobileNetV2 x1.0 (ImageNet, 224 px)."""
    return MGICMobileNetV2(num_classes=num_classes, in_chans=in_chans, model_name="mgic_mobilenetv2_100", **kw)


@register_model(
    "mgic_mobilenetv2_100_small", family="mgic", slots=MBV2_SLOTS, paper=papers.MGIC, input_size=(3, 32, 32),
    num_classes=10, reference={"params_3ch_10cls": _COUNTS["mgic_mobilenetv2_100_small"][0],
                               "macs_32": _COUNTS["mgic_mobilenetv2_100_small"][1]},
    summary="MGIC-MobileNetV2 for 28-32 px inputs: stem stride 1, the c=24 stage at stride 1, 4x4 final map",
    claims=(Claim(f"{_COUNTS['mgic_mobilenetv2_100_small'][0]:,} parameters (3 channels, 10 classes)",
                  f"{_TEST}::test_mobilenet_param_counts"),),
    notes="img_size defaults to 32, drop_rate to 0.",
)
def mgic_mobilenetv2_100_small(*, num_classes: int = 10, in_chans: int = 3, **kw) -> MGICMobileNetV2:
    """MGIC-MobileNetV2 x1.0 for 28-32 px inputs."""
    kw.setdefault("img_size", 32)
    kw.setdefault("stem", "small")
    kw.setdefault("drop_rate", 0.0)
    return MGICMobileNetV2(num_classes=num_classes, in_chans=in_chans, model_name="mgic_mobilenetv2_100_small", **kw)
