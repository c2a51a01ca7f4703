"""Inception-v4, Inception-ResNet-v1 and Inception-ResNet-v2: Szegedy, Ioffe, Vanhoucke & Alemi, "Inception-v4,
Inception-ResNet and the Impact of Residual Connections on Learning", AAAI 2017, arXiv:1602.07261 (inventory S017),
with ``norm`` / ``act`` / ``head`` slots and, in the Inception-ResNets, the ``connection`` slot that merges each
residual branch (the paper's residual scaling: ``blockzoo.blocks.connection.residual_scaling``).

Every conv is conv (no bias) -> BN -> ReLU; convs marked "V" in the paper's figures are unpadded ("valid"), all
others "same"-padded. BN's epsilon is 0.001 (the released TF-slim arg scope; the paper states none), hence the
``norm`` default ``bn(eps=0.001)``. Head: global average pooling, dropout (the paper's "keep 0.8": ``drop_rate=0.2``),
FC.

Inception-v4 (paper Figures 3-9; the released tensorflow/models ``research/slim/nets/inception_v4.py``, timm's
``inception_v4``)
--------------------------------------------------------------------------------------------------------------
========================= ===================================================================================
stem (Fig. 3)             3x3/2 32 V, 3x3 32 V, 3x3 64; [maxpool 3x3/2 V | 3x3/2 96 V]; [1x1 64, 3x3 96 V |
                          1x1 64, 1x7 64, 7x1 64, 3x3 96 V]; [3x3/2 192 V | maxpool 3x3/2 V] -> 35x35x384
4 x Inception-A (Fig. 4)  1x1 96 | 1x1 64, 3x3 96 | 1x1 64, 3x3 96, 3x3 96 | avgpool 3x3, 1x1 96 -> 384
Reduction-A (Fig. 7)      3x3/2 n V | 1x1 k, 3x3 l, 3x3/2 m V | maxpool 3x3/2 V; (k, l, m, n) = (192, 224, 256, 384)
7 x Inception-B (Fig. 5)  1x1 384 | 1x1 192, 1x7 224, 7x1 256 | 1x1 192, 7x1 192, 1x7 224, 7x1 224, 1x7 256 |
                          avgpool 3x3, 1x1 128 -> 1024
Reduction-B (Fig. 8)      1x1 192, 3x3/2 192 V | 1x1 256, 1x7 256, 7x1 320, 3x3/2 320 V | maxpool 3x3/2 V
3 x Inception-C (Fig. 6)  1x1 256 | 1x1 384, [1x3 256 | 3x1 256] | 1x1 384, 3x1 448, 1x3 512, [1x3 256 |
                          3x1 256] | avgpool 3x3, 1x1 256 -> 1536
========================= ===================================================================================

The average pools inside the modules do not count the padding (TF's "SAME" average pooling). Figure 5 draws the
five-conv branch of Inception-B as 1x7, 7x1, 1x7, 7x1; the released code starts it with 7x1, as the table above and
this module do (the same parameters and MACs; the released weights need this order).
``inception_v4`` has exactly the released model's 42,679,816 parameters (timm: 12.28 GMACs at 299 px).

Inception-ResNet-v1 (paper Figures 10-15)
-----------------------------------------
No released model (and no timm counterpart): built from the paper's figures, which are consistent. Stem (Fig. 14):
3x3/2 32 V, 3x3 32 V, 3x3 64, maxpool 3x3/2 V, 1x1 80, 3x3 192 V, 3x3/2 256 V -> 35x35x256; 5 x Inception-ResNet-A
(Fig. 10: 1x1 32 | 1x1 32, 3x3 32 | 1x1 32, 3x3 32, 3x3 32 -> 1x1 256 linear); Reduction-A with (k, l, m, n) =
(192, 192, 256, 384) -> 896; 10 x Inception-ResNet-B (Fig. 11: 1x1 128 | 1x1 128, 1x7 128, 7x1 128 -> 1x1 896
linear); Reduction-B (Fig. 12: 1x1 256, 3x3/2 384 V | 1x1 256, 3x3/2 256 V | 1x1 256, 3x3 256, 3x3/2 256 V | maxpool)
-> 1792; 5 x Inception-ResNet-C (Fig. 13: 1x1 192 | 1x1 192, 1x3 192, 3x1 192 -> 1x1 1792 linear); pooling.

Inception-ResNet-v2: the released model (default) and the paper's figures
---------------------------------------------------------------------------
The paper's v2 figures are not self-consistent: Reduction-A (k, l, m, n) = (256, 256, 384, 384) on the 384-channel
Inception-v4 stem gives 1152 channels, but Inception-ResNet-B (Fig. 17) projects to 1154; Reduction-B (Fig. 18) then
gives 2146 channels, but Inception-ResNet-C (Fig. 19) projects to 2048; Figure 15 repeats the blocks 5, 10 and 5
times. No network can be built from them as drawn, so blockzoo registers only the released model
(``research/slim/nets/inception_resnet_v2.py``; timm's ``inception_resnet_v2``, 55,843,464 parameters, 13.18 GMACs
at 299 px), whose channel counts differ from the figures throughout:

=========================== ===================================================================================
stem                        3x3/2 32 V, 3x3 32 V, 3x3 64, maxpool 3x3/2 V, 1x1 80, 3x3 192 V, maxpool 3x3/2 V,
                            Mixed_5b (1x1 96 | 1x1 48, 5x5 64 | 1x1 64, 3x3 96, 3x3 96 | avgpool, 1x1 64) -> 320
10 x Inception-ResNet-A     1x1 32 | 1x1 32, 3x3 32 | 1x1 32, 3x3 48, 3x3 64 -> 1x1 320 linear
Reduction-A (Mixed_6a)      (k, l, m, n) = (256, 256, 384, 384) -> 1088
20 x Inception-ResNet-B     1x1 192 | 1x1 128, 1x7 160, 7x1 192 -> 1x1 1088 linear
Reduction-B (Mixed_7a)      1x1 256, 3x3/2 384 V | 1x1 256, 3x3/2 288 V | 1x1 256, 3x3 288, 3x3/2 320 V | maxpool
                            -> 2080
10 x Inception-ResNet-C     1x1 192 | 1x1 192, 1x3 224, 3x1 256 -> 1x1 2080 linear; the last one with an unscaled
                            sum and no ReLU (``final``)
conv_head                   1x1 1536 (conv -> BN -> ReLU)
=========================== ===================================================================================

Each Inception-ResNet block: x -> act(merge(x, drop_path(proj(concat(branches(x)))))), ``proj`` the linear 1x1 conv
(with bias, no BN: the paper puts BN "only on top of the traditional layers, but not on top of the summations") and
``merge`` the ``connection`` slot. The paper scales the residuals by "factors between 0.1 and 0.3" without naming
them per block; the released v2 uses 0.17, 0.10 and 0.20 in the A, B and C blocks: the registered default (one value
per stage), used for v1 too. The released v2's last C block (TF-slim ``block8(net, activation_fn=None)``, timm
``block8``) sums without scaling and without ReLU; it is part of the architecture, not of the slot, and keeps its
plain sum whatever ``connection`` is. ``drop_path_rate`` (stochastic depth on the residual branches, linear over the
blocks; not in the paper) applies to every Inception-ResNet block. Inception-v4 has no residuals, hence no
``connection`` slot and no ``drop_path_rate``.

Small inputs (28-32 px): ``stem="small"``, ``padding="same"``, ``width_mult``, ``depths``
-------------------------------------------------------------------------------------------
With its unpadded convs the ImageNet network needs at least 75 px inputs (it ends at 8x8 from 299 px). The small
variants give the first conv stride 1 (``stem="small"``) and pad every conv and pool (``padding="same"``), so the
network downsamples by 16 (32 px: 16, 8, 4, 2 at the four stride-2 steps); ``width_mult`` scales every conv's width
(rounded to a multiple of 8) and ``depths`` sets the blocks per stage. Neither the paper nor the released code define
such a variant; ``inception_v4_small``, ``inception_resnet_v1_small`` and ``inception_resnet_v2_small`` (10 classes,
32 px, dropout 0) are blockzoo's, at a quarter of the width and fewer blocks.

Official-code facts not reproduced: TF-slim's Xavier init (blockzoo's generic Kaiming init is used) and its
BN momentum (decay 0.9997); the auxiliary classifiers of the released models (not in the paper's figures).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.common.drop import drop_path_schedule, make_drop_path
from blockzoo.blocks.common.layers import ConvNormAct, make_act, make_divisible
from blockzoo.checks import check_choice, check_int, check_positive
from blockzoo.errors import ConfigError
from blockzoo.models.base import Backbone, init_weights, parse_once, to_size
from blockzoo.registry import Claim, build_slot, register_model

__all__ = ["SLOTS", "IR_SLOTS", "IR_SCALES", "Mixed", "ConvBuilder", "InceptionC", "InceptionResidual",
           "InceptionV4", "InceptionResNet", "IRConfig", "IR_V1", "IR_V2"]

SLOTS = {"norm": "bn(eps=0.001)", "act": "relu", "head": "avg"}
#: the released Inception-ResNet-v2's residual scales, one per stage (35x35 A, 17x17 B, 8x8 C blocks)
IR_SCALES = ["scaled_residual(scale=0.17)", "scaled_residual(scale=0.1)", "scaled_residual(scale=0.2)"]
IR_SLOTS = {**SLOTS, "connection": IR_SCALES}

V = True   # marks an unpadded ("valid") conv in the tables below
#: a conv of a branch: (width, kernel) or (width, kernel, stride) or (width, kernel, stride, V); kernel int or (kh, kw)
Conv = tuple[Any, ...]
Branch = tuple[Conv, ...]


class Mixed(nn.Module):
    """An Inception module: its branches run on the same input and are concatenated along the channels, in the order
    they were given (``Mixed(in_channels, branch0=..., branch1=...)``; a pooling branch keeps ``in_channels``)."""

    def __init__(self, in_channels: int, **branches: nn.Module):
        super().__init__()
        for name, branch in branches.items():
            self.add_module(name, branch)
        self.out_channels = sum(getattr(b, "out_channels", in_channels) for b in branches.values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.children()], 1)


@dataclass(frozen=True)
class ConvBuilder:
    """Builds a network's conv units and pools: its norm / act slot values, width multiplier and padding mode."""

    norm: Any
    act: Any
    width: float = 1.0
    valid: bool = True   # the paper's "V" convs and pools unpadded (False: every conv and pool padded)

    def ch(self, c: int) -> int:
        return make_divisible(c * self.width, 8)

    def conv(self, cin: int, spec: Conv) -> ConvNormAct:
        width, kernel, stride, valid = (*spec, *(1, False)[len(spec) - 2:])
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        pad = (0, 0) if valid and self.valid else (kh // 2, kw // 2)
        return ConvNormAct(cin, self.ch(width), (kh, kw), stride, norm=self.norm, act=self.act, padding=pad,
                           inplace=True)

    def chain(self, cin: int, *specs: Conv) -> nn.Module:
        """One conv unit, or a Sequential of them (``out_channels``: the last one's)."""
        convs = []
        for spec in specs:
            convs.append(self.conv(cin, spec))
            cin = convs[-1].out_channels
        if len(convs) == 1:
            return convs[0]
        seq = nn.Sequential(*convs)
        seq.out_channels = cin
        return seq

    def max_pool(self) -> nn.MaxPool2d:
        return nn.MaxPool2d(3, 2, 0 if self.valid else 1)

    def avg_branch(self, cin: int, width: int) -> nn.Sequential:
        """avgpool 3x3 (padding not counted, as TF's "SAME" pooling) -> 1x1 ``width``."""
        pooled = nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False), self.conv(cin, (width, 1)))
        pooled.out_channels = pooled[1].out_channels
        return pooled

    def mixed(self, cin: int, branches: Sequence[Branch], avg: int | None = None, max_pool: bool = False) -> Mixed:
        """``branch0 .. branch<n-1>`` from the conv tables, then an avgpool -> 1x1 ``avg`` branch or a max-pool
        branch."""
        named: dict[str, nn.Module] = {f"branch{i}": self.chain(cin, *b) for i, b in enumerate(branches)}
        if avg is not None:
            named[f"branch{len(branches)}"] = self.avg_branch(cin, avg)
        if max_pool:
            named[f"branch{len(branches)}"] = self.max_pool()
        return Mixed(cin, **named)

    def reduction_a(self, cin: int, k: int, l: int, m: int, n: int) -> Mixed:   # noqa: E741 (the paper's names)
        """Reduction-A (paper Fig. 7): 3x3/2 n V | 1x1 k, 3x3 l, 3x3/2 m V | maxpool 3x3/2 V."""
        return self.mixed(cin, (((n, 3, 2, V),), ((k, 1), (l, 3), (m, 3, 2, V))), max_pool=True)

    def stem_start(self, in_chans: int, stride: int) -> OrderedDict[str, nn.Module]:
        """3x3/``stride`` 32 V, 3x3 32 V, 3x3 64: the start of every stem of the paper."""
        c1 = self.conv(in_chans, (32, 3, stride, V))
        c2 = self.conv(c1.out_channels, (32, 3, 1, V))
        return OrderedDict(conv2d_1a=c1, conv2d_2a=c2, conv2d_2b=self.conv(c2.out_channels, (64, 3)))


class InceptionC(nn.Module):
    """Inception-v4's 8x8 module (paper Fig. 6): two of its branches end in a 1x3 and a 3x1 conv side by side."""

    def __init__(self, b: ConvBuilder, cin: int):
        super().__init__()
        self.branch0 = b.conv(cin, (256, 1))
        self.branch1_0 = b.conv(cin, (384, 1))
        self.branch1_1a = b.conv(self.branch1_0.out_channels, (256, (1, 3)))
        self.branch1_1b = b.conv(self.branch1_0.out_channels, (256, (3, 1)))
        self.branch2_0 = b.conv(cin, (384, 1))
        self.branch2_1 = b.conv(self.branch2_0.out_channels, (448, (3, 1)))
        self.branch2_2 = b.conv(self.branch2_1.out_channels, (512, (1, 3)))
        self.branch2_3a = b.conv(self.branch2_2.out_channels, (256, (1, 3)))
        self.branch2_3b = b.conv(self.branch2_2.out_channels, (256, (3, 1)))
        self.branch3 = b.avg_branch(cin, 256)
        self.out_channels = self.branch0.out_channels + 4 * self.branch1_1a.out_channels + \
            self.branch3.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.branch1_0(x)
        x2 = self.branch2_2(self.branch2_1(self.branch2_0(x)))
        return torch.cat([self.branch0(x), self.branch1_1a(x1), self.branch1_1b(x1), self.branch2_3a(x2),
                          self.branch2_3b(x2), self.branch3(x)], 1)


class InceptionResidual(nn.Module):
    """An Inception-ResNet block: ``act(merge(x, drop_path(proj(mixed(x)))))``; ``proj`` is the linear 1x1 conv back
    to the input width (bias, no norm), ``merge`` the ``connection`` slot (``activate=False``: no act, the released
    v2's last block)."""

    def __init__(self, mixed: Mixed, channels: int, *, connection: Any, act: Any, ctx, drop_path: float = 0.0,
                 activate: bool = True):
        super().__init__()
        self.mixed = mixed
        self.proj = nn.Conv2d(mixed.out_channels, channels, 1)
        self.merge = build_slot("connection", connection, channels, ctx("connection"))
        self.drop_path = make_drop_path(drop_path)
        self.act = make_act(act, inplace=True) if activate else nn.Identity()   # on the fresh sum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.merge(x, self.drop_path(self.proj(self.mixed(x)))))


class _Inception(Backbone):
    """What the three networks share: options, the conv builder, the spatial path and the head."""

    _feature_path = ("stem.*", "stages.*")

    def _setup(self, *, in_chans: int, img_size, stem: str, padding: str, width_mult: float, depths: Sequence[int],
               norm: Any, act: Any, model_name: str) -> tuple[ConvBuilder, Any]:
        self.model_name, self.in_chans = model_name, in_chans
        check_choice(stem, "stem", ("imagenet", "small"), owner=model_name)
        check_choice(padding, "padding", ("valid", "same"), owner=model_name)
        check_positive(width_mult, "width_mult", owner=model_name)
        if not (isinstance(depths, (tuple, list)) and len(depths) == 3):
            raise ConfigError(f"{model_name}: depths must list the blocks of the 3 stages (35x35, 17x17 and 8x8 at "
                              f"299 px), e.g. (4, 7, 3), got {depths!r}")
        for d in depths:
            check_int(d, "depths entry", min_value=1, owner=model_name)
        self.num_stages, self.depths = 3, tuple(depths)
        self._reduction = 1
        return ConvBuilder(parse_once(norm), parse_once(act), width_mult, padding == "valid"), to_size(img_size)

    def _step(self, feat, b: ConvBuilder, stride: int):
        """Record a "V" 3x3 conv/pool of the main path (unpadded unless the model pads every conv)."""
        self._reduction *= stride
        return self.track(feat, stride, 3, 0 if b.valid else 1)

    @staticmethod
    def _stage(reduction: nn.Module | None, blocks: list[nn.Module], tail: dict[str, nn.Module] | None = None
               ) -> nn.Sequential:
        """A stage: its reduction module (none in the first), ``blocks`` and the released v2's tail."""
        parts = OrderedDict(reduction=reduction) if reduction is not None else OrderedDict()
        parts["blocks"] = nn.Sequential(*blocks)
        parts.update(tail or {})
        return nn.Sequential(parts)

    def _finish(self, stem: OrderedDict, stages: list[nn.Sequential], features: list[tuple[str, int, int]],
                num_features: int, num_classes: int, head: Any, drop_rate: float, feat) -> None:
        self.stem = nn.Sequential(stem)
        self.stages = nn.Sequential(*stages)
        for module, channels, reduction in features:
            self.add_feature(module, channels, reduction=reduction)
        self.feat_size = feat
        self.init_head(num_features, num_classes, head, drop_rate, feat_size=feat)
        init_weights(self)

    input_mean = input_std = (0.5, 0.5, 0.5)   # the released models take inputs in [-1, 1] (TF-slim preprocessing)


class InceptionV4(_Inception):
    """Inception-v4 (paper Figures 3-9; see the module docstring).

    Args:
        depths: Inception-A, -B and -C blocks (paper: 4, 7, 3).
        stem: ``"imagenet"`` (first conv stride 2) or ``"small"`` (stride 1, for 28-32 px inputs).
        padding: ``"valid"`` (the paper's "V" convs and pools unpadded) or ``"same"`` (all padded: small inputs).
        width_mult: scales every conv's width (rounded to a multiple of 8; 1: the paper's widths).
        drop_rate: dropout before the classifier (paper: keep probability 0.8).
    """

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, img_size: int | tuple[int, int] | None = None,
                 depths: Sequence[int] = (4, 7, 3), stem: str = "imagenet", padding: str = "valid",
                 width_mult: float = 1.0, drop_rate: float = 0.2, norm: Any = SLOTS["norm"], act: Any = SLOTS["act"],
                 head: Any = SLOTS["head"], model_name: str = "inception_v4"):
        super().__init__()
        b, feat = self._setup(in_chans=in_chans, img_size=img_size, stem=stem, padding=padding,
                              width_mult=width_mult, depths=depths, norm=norm, act=act, model_name=model_name)
        parts, feat, features = self.stem_path(b, in_chans, stem, feat)
        cin = parts["mixed_5a"].out_channels

        self.begin_stage(0, "Inception-A", feat)
        blocks_a = []
        for _ in range(self.depths[0]):
            blocks_a.append(b.mixed(cin, (((96, 1),), ((64, 1), (96, 3)), ((64, 1), (96, 3), (96, 3))), avg=96))
            cin = blocks_a[-1].out_channels
        stages = [self._stage(None, blocks_a)]
        features.append(("stages.0", cin, self._reduction))

        red_a = b.reduction_a(cin, 192, 224, 256, 384)
        feat = self._step(feat, b, 2)
        self.begin_stage(1, "Inception-B", feat)
        cin, blocks_b = red_a.out_channels, []
        for _ in range(self.depths[1]):
            blocks_b.append(b.mixed(cin, (((384, 1),), ((192, 1), (224, (1, 7)), (256, (7, 1))),
                                          ((192, 1), (192, (7, 1)), (224, (1, 7)), (224, (7, 1)), (256, (1, 7)))),
                                    avg=128))
            cin = blocks_b[-1].out_channels
        stages.append(self._stage(red_a, blocks_b))
        features.append(("stages.1", cin, self._reduction))

        red_b = b.mixed(cin, (((192, 1), (192, 3, 2, V)), ((256, 1), (256, (1, 7)), (320, (7, 1)), (320, 3, 2, V))),
                        max_pool=True)
        feat = self._step(feat, b, 2)
        self.begin_stage(2, "Inception-C", feat)
        cin, blocks_c = red_b.out_channels, []
        for _ in range(self.depths[2]):
            blocks_c.append(InceptionC(b, cin))
            cin = blocks_c[-1].out_channels
        stages.append(self._stage(red_b, blocks_c))
        features.append(("stages.2", cin, self._reduction))
        self._finish(parts, stages, features, cin, num_classes, head, drop_rate, feat)

    def stem_path(self, b: ConvBuilder, in_chans: int, stem: str, feat):
        """The Inception-v4 stem (paper Fig. 3), its spatial path and its two feature maps."""
        parts = b.stem_start(in_chans, 2 if stem == "imagenet" else 1)
        feat = self._step(self._step(feat, b, 2 if stem == "imagenet" else 1), b, 1)
        features = [("stem.conv2d_2b", parts["conv2d_2b"].out_channels, self._reduction)]
        c = parts["conv2d_2b"].out_channels
        parts["mixed_3a"] = Mixed(c, maxpool=b.max_pool(), conv=b.conv(c, (96, 3, 2, V)))
        feat = self._step(feat, b, 2)
        features.append(("stem.mixed_3a", parts["mixed_3a"].out_channels, self._reduction))
        c = parts["mixed_3a"].out_channels
        parts["mixed_4a"] = b.mixed(c, (((64, 1), (96, 3, 1, V)),
                                        ((64, 1), (64, (1, 7)), (64, (7, 1)), (96, 3, 1, V))))
        feat = self._step(feat, b, 1)
        c = parts["mixed_4a"].out_channels
        parts["mixed_5a"] = Mixed(c, conv=b.conv(c, (192, 3, 2, V)), maxpool=b.max_pool())
        feat = self._step(feat, b, 2)
        return parts, feat, features


@dataclass(frozen=True)
class IRConfig:
    """One Inception-ResNet: its stem, the branches of its A / B / C blocks, Reduction-A's (k, l, m, n), the branches
    of Reduction-B, and the released v2's tail (a last unscaled C block without ReLU, a 1x1 conv to ``head_conv``)."""

    stem: str
    block_a: tuple[Branch, ...]
    reduction_a: tuple[int, int, int, int]
    block_b: tuple[Branch, ...]
    reduction_b: tuple[Branch, ...]
    block_c: tuple[Branch, ...]
    final_block: bool
    head_conv: int | None


IR_V1 = IRConfig(
    stem="v1",
    block_a=(((32, 1),), ((32, 1), (32, 3)), ((32, 1), (32, 3), (32, 3))),
    reduction_a=(192, 192, 256, 384),
    block_b=(((128, 1),), ((128, 1), (128, (1, 7)), (128, (7, 1)))),
    reduction_b=(((256, 1), (384, 3, 2, V)), ((256, 1), (256, 3, 2, V)), ((256, 1), (256, 3), (256, 3, 2, V))),
    block_c=(((192, 1),), ((192, 1), (192, (1, 3)), (192, (3, 1)))),
    final_block=False, head_conv=None)
IR_V2 = IRConfig(
    stem="v2",
    block_a=(((32, 1),), ((32, 1), (32, 3)), ((32, 1), (48, 3), (64, 3))),
    reduction_a=(256, 256, 384, 384),
    block_b=(((192, 1),), ((128, 1), (160, (1, 7)), (192, (7, 1)))),
    reduction_b=(((256, 1), (384, 3, 2, V)), ((256, 1), (288, 3, 2, V)), ((256, 1), (288, 3), (320, 3, 2, V))),
    block_c=(((192, 1),), ((192, 1), (224, (1, 3)), (256, (3, 1)))),
    final_block=True, head_conv=1536)
_IR_CONFIGS = {"v1": IR_V1, "v2": IR_V2}


class InceptionResNet(_Inception):
    """Inception-ResNet-v1 (paper Figures 10-15) or -v2 (the released model); see the module docstring.

    Args:
        version: ``"v1"`` or ``"v2"``.
        depths: Inception-ResNet-A, -B and -C blocks (v1, paper: 5, 10, 5; v2, released: 10, 20, 10, the last C block
            being the unscaled one without ReLU).
        stem, padding, width_mult, drop_rate: as in :class:`InceptionV4`.
        drop_path_rate: stochastic depth on the residual branches, linear over the blocks (not in the paper).
        connection: how each block's branch is merged (one value per stage; default the released v2's scaled sums).
    """

    def __init__(self, *, version: str = "v2", num_classes: int = 1000, in_chans: int = 3,
                 img_size: int | tuple[int, int] | None = None, depths: Sequence[int] = (10, 20, 10),
                 stem: str = "imagenet", padding: str = "valid", width_mult: float = 1.0, drop_rate: float = 0.2,
                 drop_path_rate: float = 0.0, norm: Any = SLOTS["norm"], act: Any = SLOTS["act"],
                 connection: Any = IR_SLOTS["connection"], head: Any = SLOTS["head"],
                 model_name: str = "inception_resnet_v2"):
        super().__init__()
        check_choice(version, "version", tuple(_IR_CONFIGS), owner=model_name)
        cfg = _IR_CONFIGS[version]
        b, feat = self._setup(in_chans=in_chans, img_size=img_size, stem=stem, padding=padding,
                              width_mult=width_mult, depths=depths, norm=norm, act=act, model_name=model_name)
        if cfg.final_block and self.depths[2] < 2:
            raise ConfigError(f"{model_name}: depths[2] counts the released last Inception-ResNet-C block too and "
                              f"must be >= 2, got {self.depths[2]}")
        parts, feat, features = self.stem_path(b, cfg, in_chans, stem, feat)
        cin = next(reversed(parts.values())).out_channels
        dpr = iter(drop_path_schedule(self.depths, drop_path_rate))
        specs = (cfg.block_a, cfg.block_b, cfg.block_c)
        stages = []
        for si in range(3):
            reduction = None
            if si == 1:
                reduction = b.reduction_a(cin, *cfg.reduction_a)
            elif si == 2:
                reduction = b.mixed(cin, cfg.reduction_b, max_pool=True)
            if reduction is not None:
                feat = self._step(feat, b, 2)
                cin = reduction.out_channels
            self.begin_stage(si, "Inception-ResNet-" + "ABC"[si], feat)
            n = self.depths[si] - (si == 2 and cfg.final_block)   # the released v2's last C block is built apart
            blocks = [InceptionResidual(b.mixed(cin, specs[si]), cin, act=b.act, drop_path=next(dpr),
                                        connection=self.slot_value("connection", connection, si, j),
                                        ctx=self.block_ctx(f"stages.{si}.blocks.{j}", feat)) for j in range(n)]
            tail: OrderedDict[str, nn.Module] = OrderedDict()
            if si == 2 and cfg.final_block:   # unscaled, without ReLU (TF-slim ``block8(net, activation_fn=None)``)
                tail["final"] = InceptionResidual(b.mixed(cin, specs[si]), cin, connection="residual", act=b.act,
                                                  ctx=self.block_ctx("stages.2.final", feat), drop_path=next(dpr),
                                                  activate=False)
            if si == 2 and cfg.head_conv:
                tail["conv_head"] = b.conv(cin, (cfg.head_conv, 1))
                cin = tail["conv_head"].out_channels
            stages.append(self._stage(reduction, blocks, tail))
            features.append((f"stages.{si}", cin, self._reduction))
        self._finish(parts, stages, features, cin, num_classes, head, drop_rate, feat)

    def stem_path(self, b: ConvBuilder, cfg: IRConfig, in_chans: int, stem: str, feat):
        """The Inception-ResNet stem (v1: paper Fig. 14; v2: the released one), its spatial path and feature maps."""
        parts = b.stem_start(in_chans, 2 if stem == "imagenet" else 1)
        feat = self._step(self._step(feat, b, 2 if stem == "imagenet" else 1), b, 1)
        features = [("stem.conv2d_2b", parts["conv2d_2b"].out_channels, self._reduction)]
        parts["maxpool_3a"] = b.max_pool()
        feat = self._step(feat, b, 2)
        parts["conv2d_3b"] = b.conv(parts["conv2d_2b"].out_channels, (80, 1))
        parts["conv2d_4a"] = b.conv(parts["conv2d_3b"].out_channels, (192, 3, 1, V))
        feat = self._step(feat, b, 1)
        c = parts["conv2d_4a"].out_channels
        features.append(("stem.conv2d_4a", c, self._reduction))
        if cfg.stem == "v1":
            parts["conv2d_4b"] = b.conv(c, (256, 3, 2, V))
        else:
            parts["maxpool_5a"] = b.max_pool()
            parts["mixed_5b"] = b.mixed(c, (((96, 1),), ((48, 1), (64, 5)), ((64, 1), (96, 3), (96, 3))), avg=64)
        feat = self._step(feat, b, 2)
        return parts, feat, features


# ------------------------------------------------------------------------------------------------- registrations
_TEST = "tests/models/test_inception_v4.py"
# exact counts of our builds (1000 classes; MACs at 299 px by blockzoo.profile.count_macs); timm reports 42.68M /
# 12.28 GMACs (inception_v4) and 55.84M / 13.18 GMACs (inception_resnet_v2); the paper gives no counts
_IMAGENET = {"inception_v4": (42_679_816, 12_253_974_624), "inception_resnet_v1": (22_756_328, 6_206_361_696),
             "inception_resnet_v2": (55_843_464, 13_155_794_016)}
# 28-32 px variants: (width_mult, depths, exact params at 3 channels / 10 classes)
_SMALL = {"inception_v4_small": (0.25, (2, 4, 2), 1_708_226),
          "inception_resnet_v1_small": (0.25, (2, 4, 2), 747_506),
          "inception_resnet_v2_small": (0.25, (2, 4, 2), 1_203_154)}


def _claims(name: str, *extra: Claim) -> tuple[Claim, ...]:
    params, macs = _IMAGENET[name]
    return (Claim(f"{params:,} parameters (1000 classes)", f"{_TEST}::test_param_counts_imagenet"),
            Claim(f"{macs / 1e9:.2f} GMACs at 299 px", f"{_TEST}::test_macs_299"), *extra)


def _spec(name: str, family: str, slots: dict[str, Any], summary: str, claims: tuple[Claim, ...]) -> dict[str, Any]:
    params, macs = _IMAGENET[name]
    return dict(family=family, slots=slots, paper=papers.INCEPTION_V4, input_size=(3, 299, 299), num_classes=1000,
                reference={"params_1000cls": params, "macs_299": macs}, summary=summary, claims=claims,
                test_size=88, notes="the smallest input is 75 px (unpadded convs); the paper gives no parameter or "
                                    "MAC counts")


def _small_spec(name: str, family: str, slots: dict[str, Any], summary: str) -> dict[str, Any]:
    width, depths, params = _SMALL[name]
    return dict(family=family, slots=slots, paper=papers.INCEPTION_V4, input_size=(3, 32, 32), num_classes=10,
                reference={"params_3ch_10cls": params},
                summary=f"{summary} for 28-32 px inputs: width x{width}, {depths} blocks, first conv stride 1, every "
                        f"conv and pool padded (overall stride 16)",
                claims=(Claim(f"{params:,} parameters (3 channels, 10 classes)", f"{_TEST}::test_param_counts_small"),
                        Claim("a 32 px input ends at 2x2 (overall stride 16)", f"{_TEST}::test_small_feature_size")),
                notes="blockzoo's small-input variant (not in the paper); img_size defaults to 32, drop_rate to 0.")


def _small_kw(kw: dict[str, Any]) -> dict[str, Any]:
    for key, value in (("img_size", 32), ("stem", "small"), ("padding", "same"), ("drop_rate", 0.0)):
        kw.setdefault(key, value)
    return kw


_RESIDUAL_CLAIMS = (
    Claim("an Inception-ResNet block with residual scale 1 computes the same function as with the plain sum",
          f"{_TEST}::test_scale_one_equals_unscaled_block"),
    Claim("residual connections accelerate the training of Inception networks significantly (paper Fig. 21-24; "
          "needs ImageNet training)", status="not checked"))


@register_model("inception_v4", **_spec(
    "inception_v4", "inception_v4", SLOTS, "Inception-v4: pure Inception modules A/B/C with reduction modules, 299 px",
    _claims("inception_v4", Claim("the layer plan of the paper's Figures 3-9 (stem 35x35x384, A 384, Reduction-A "
                                  "1024, B 1024, Reduction-B 1536, C 1536 channels)", f"{_TEST}::test_v4_layer_plan"))))
def _inception_v4(*, num_classes: int = 1000, in_chans: int = 3, **kw) -> InceptionV4:
    """Inception-v4 (the paper's and the released network), 299 px"""
    return InceptionV4(num_classes=num_classes, in_chans=in_chans, model_name="inception_v4", **kw)


@register_model("inception_v4_small", **_small_spec("inception_v4_small", "inception_v4", SLOTS, "Inception-v4"))
def _inception_v4_small(*, num_classes: int = 10, in_chans: int = 3, **kw) -> InceptionV4:
    """Inception-v4 at a quarter of the width for 28-32 px inputs"""
    width, depths, _ = _SMALL["inception_v4_small"]
    return InceptionV4(num_classes=num_classes, in_chans=in_chans, width_mult=width, depths=depths,
                       model_name="inception_v4_small", **_small_kw(kw))


@register_model("inception_resnet_v1", **_spec(
    "inception_resnet_v1", "inception_resnet", IR_SLOTS,
    "Inception-ResNet-v1 from the paper's Figures 10-15 (5/10/5 scaled residual Inception blocks), 299 px",
    _claims("inception_resnet_v1", *_RESIDUAL_CLAIMS, Claim(
        "Inception-ResNet-v1 has roughly the computational cost of Inception-v3 (ours: 6.21 GMACs at 299 px; "
        "Inception-v3: 5.73 GMACs by timm's count)", f"{_TEST}::test_costs_match_the_papers_pairing"))))
def _inception_resnet_v1(*, num_classes: int = 1000, in_chans: int = 3, **kw) -> InceptionResNet:
    """Inception-ResNet-v1 (paper figures), 299 px"""
    kw.setdefault("depths", (5, 10, 5))
    return InceptionResNet(version="v1", num_classes=num_classes, in_chans=in_chans,
                           model_name="inception_resnet_v1", **kw)


@register_model("inception_resnet_v1_small", **_small_spec(
    "inception_resnet_v1_small", "inception_resnet", IR_SLOTS, "Inception-ResNet-v1"))
def _inception_resnet_v1_small(*, num_classes: int = 10, in_chans: int = 3, **kw) -> InceptionResNet:
    """Inception-ResNet-v1 at a quarter of the width for 28-32 px inputs"""
    width, depths, _ = _SMALL["inception_resnet_v1_small"]
    return InceptionResNet(version="v1", num_classes=num_classes, in_chans=in_chans, width_mult=width, depths=depths,
                           model_name="inception_resnet_v1_small", **_small_kw(kw))


@register_model("inception_resnet_v2", **_spec(
    "inception_resnet_v2", "inception_resnet", IR_SLOTS,
    "Inception-ResNet-v2 as released (10/20/10 scaled residual Inception blocks, 1x1 conv to 1536), 299 px",
    _claims("inception_resnet_v2", *_RESIDUAL_CLAIMS, Claim(
        "Inception-ResNet-v2 matches the raw cost of Inception-v4 (ours: 13.16 vs 12.25 GMACs at 299 px, +7%)",
        f"{_TEST}::test_costs_match_the_papers_pairing"))))
def _inception_resnet_v2(*, num_classes: int = 1000, in_chans: int = 3, **kw) -> InceptionResNet:
    """Inception-ResNet-v2 (the released network), 299 px"""
    return InceptionResNet(version="v2", num_classes=num_classes, in_chans=in_chans,
                           model_name="inception_resnet_v2", **kw)


@register_model("inception_resnet_v2_small", **_small_spec(
    "inception_resnet_v2_small", "inception_resnet", IR_SLOTS, "Inception-ResNet-v2"))
def _inception_resnet_v2_small(*, num_classes: int = 10, in_chans: int = 3, **kw) -> InceptionResNet:
    """Inception-ResNet-v2 at a quarter of the width for 28-32 px inputs"""
    width, depths, _ = _SMALL["inception_resnet_v2_small"]
    return InceptionResNet(version="v2", num_classes=num_classes, in_chans=in_chans, width_mult=width, depths=depths,
                           model_name="inception_resnet_v2_small", **_small_kw(kw))
