"""G-GhostNets (Han et al., "GhostNets on Heterogeneous Devices via Cheap Operations", IJCV 2022, arXiv:2201.03297
[S099]): the GPU-efficient G-Ghost stage on RegNetX and ResNet bodies. (The CPU-efficient C-Ghost module and
bottleneck of the same paper are GhostNet's, in their own family files.)

The G-Ghost stage
-----------------
A stage of n blocks with C output channels exploits the redundancy *between* the blocks of a stage: its first block
(the downsampling one) is an ordinary full-width block with output X1; the "complicated" features are computed by
ordinary blocks at the thin width C * (1 - lambda) from the first (1 - lambda) C channels of X1; the remaining
lambda * C "ghost" features are generated from the other channels of X1 by a cheap operation, and the two are
concatenated. The mix operation ("intrinsic feature aggregation") enhances the cheap features with the complicated
path: global average pooling of [X1, Z_2, ..., Z_k] (X1 and the output of every thin block) -> 1x1 conv -> norm ->
act -> 1x1 conv -> norm, a per-channel vector added to the cheap features (broadcast over space). What
:class:`GGhostStage` computes, with ``t`` = the thin channels::

    x1 = base(x);  z = x1[:, :t];  zs = [x1]
    for block in layers: z = block(z); zs.append(z)           # the complicated (thin) path
    g = act(cheap(x1[:, t:]) + mix(cat(zs)))                  # cheap op: 1x1 conv -> norm; mix as above
    y = end(cat(z, g))                                        # end: an ordinary full-width block (official)

Read from the official code (huawei-noah/Efficient-AI-Backbones, ``g_ghost_pytorch/g_ghost_regnet.py``, which
reproduces the paper's table exactly): the cheap operation is a 1x1 conv + BN on the *last* lambda C channels of X1
(the complicated path takes the first ones); the mix takes X1 itself and every thin block's output; the activation
follows the sum; the thin blocks use the group width ``int(0.75 * w_g)`` (``thin_group_scale=0.75``) and the thin
width is rounded down to a multiple of it (``int(C (1 - lambda) / w) * w``); and the stage ends with one more
ordinary full-width block applied to the concatenation (``end_block=True``), so a stage of n blocks has 1 + (n - 2)
+ 1 blocks. Only the stages after the first with more than two blocks are G-Ghost stages (the others are plain).
We could not read the paper's PDF, only its abstract (which describes the stage output as the concatenation of the
two parts) and its G-Ghost-RegNetX results as the official README lists them (params / FLOPs of the released models);
those counts are the official stage's exactly, so the official form is the default here and the abstract's form an
option: ``end_block=False`` ends the stage with the concatenation (n - 1 thin blocks), ``mix=False`` drops the mix
operation, ``thin_group_scale=1.0`` keeps the body's group width. With ``ghost_ratio=0`` (and
``thin_group_scale=1``) a G-Ghost stage is the ordinary stage: same blocks, same parameters (and RegNetX-3.2GF
is then timm's ``regnetx_032``, the same function for the same weights in order). Checked once against the official
code: for the same weights our ``g_ghost_regnetx_032`` / ``_040`` give bitwise the official outputs; its keys map by
renaming ``conv1`` / ``bn1`` (stem) -> ``stem.conv`` / ``stem.norm``, ``layer<k>`` -> ``stages.<k-1>``, ``merge`` ->
``mix``, ``downsample`` -> ``shortcut`` and a block's ``conv2`` / ``bn2`` -> ``conv2.conv`` / ``conv2.norm``.

RegNetX body (Radosavovic et al., "Designing Network Design Spaces", CVPR 2020, as in the official code and timm's
``regnetx_*``): 3x3/2 stem (32 channels) -> BN -> ReLU; four stages, all at stride 2; X block = 1x1 conv -> BN ->
ReLU -> 3x3 group conv (group width w_g, stride in the first block; the ``conv`` slot) -> BN -> ReLU -> 1x1 conv ->
BN, + shortcut (identity, or 1x1 conv + BN where the shape changes), ReLU (bottleneck ratio 1); global average
pooling, dropout 0.2, FC. Kaiming (fan-out) convs, BN 1 / 0, no zero-initialised last BN (the official code takes a
``zero_init_residual`` argument but never applies it). The registered configurations (the paper's table, the
official pretrained models; depths / stage widths / group width w_g):

=========================  ================  ======================  ====
model                      depths            widths                  w_g
=========================  ================  ======================  ====
g_ghost_regnetx_032        2, 6, 15, 2       96, 192, 432, 1008      48
g_ghost_regnetx_040        2, 5, 14, 2       80, 240, 560, 1360      40
g_ghost_regnetx_080        2, 5, 15, 1       80, 240, 720, 1920      120
g_ghost_regnetx_160        2, 6, 13, 1       256, 512, 896, 2048     128
=========================  ================  ======================  ====

ResNet body (the official authors' advice for ResNets: the same stage on ResNet blocks): the ResNet skeleton's basic /
bottleneck blocks (``blockzoo.models.common.resnet``) in the same stage, thin width rounded to whole block widths.
``g_ghost_resnet50``: ResNet-50 (7x7/2 stem + max pool, bottlenecks (3, 4, 6, 3), widths 64-512, projection
shortcuts) with G-Ghost stages 2-4 at lambda = 0.5; ``g_ghost_resnet20``: CIFAR ResNet-20 (3x3 stem of 16, basic
blocks (3, 3, 3), widths 16/32/64, option-A shortcuts) with G-Ghost stages 2-3, for 28-32 px inputs. The paper reports
no table for these two (blockzoo's configurations; their counts are measured). Every body takes ``stem="small"`` (a
3x3/1 stem and a first stage at stride 1) for 28-32 px inputs.

Slots: ``conv`` (the 3x3 unit of every block), ``attn`` (on each residual branch before the addition), ``norm``
(every norm, the cheap operation's and the mix's included; ``ibn_a`` / ``ibn_b`` take IBN-Net's ResNet positions,
:func:`blockzoo.blocks.norm.ibn.resnet_placement`, and BN elsewhere, so the mix's norms on its pooled 1x1 map stay BN),
``act`` (also in the cheap operation and the mix), ``connection``, ``head``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.common.drop import drop_path_schedule
from blockzoo.blocks.common.layers import ConvNormAct, make_act, make_norm
from blockzoo.blocks.norm.ibn import resnet_placement
from blockzoo.checks import check_choice, check_positive
from blockzoo.errors import ConfigError
from blockzoo.models.base import Backbone, ImageNetStem, init_weights, out_size, parse_once, to_size
from blockzoo.models.common.resnet import SLOTS, BasicBlock, Bottleneck, _ResidualUnit
from blockzoo.registry import Claim, build_slot, register_model

__all__ = ["SLOTS", "XBlock", "GGhostStage", "GGhostNet"]

OFFICIAL_THIN_GROUP_SCALE = 0.75   # the official thin blocks' group width: int(0.75 * w_g)


class XBlock(_ResidualUnit):
    """RegNetX block (bottleneck ratio 1): 1x1 conv -> norm -> act -> ``conv`` slot (3x3, ``planes / group_width``
    groups, the stride) -> 1x1 conv -> norm, merged with the shortcut (the ResNet skeleton's ``attn`` /
    ``connection`` slots and stochastic depth), then act. ``norm1`` / ``post_norm``: the norm after the first conv /
    after the addition, as in the skeleton's blocks (IBN-Net's positions)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, *, group_width: int, shortcut: str = "B",
                 attn="none", conv="conv3x3", norm="bn", act="relu", connection="residual", ctx=None, feat_size=None,
                 drop_path: float = 0.0, norm1=None, post_norm="none"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = make_norm(norm if norm1 is None else norm1, planes)
        self.act1 = make_act(act, inplace=True)
        self.conv2 = build_slot("conv", conv, planes, ctx("conv", feat_size), out_channels=planes, stride=stride,
                                groups=planes // min(planes, group_width), norm=norm, act=act)
        self.conv3 = nn.Conv2d(planes, planes, 1, bias=False)
        self.bn3 = make_norm(norm, planes)
        self._init_merge(in_planes, planes, stride, out_size(feat_size, stride), shortcut=shortcut, attn=attn,
                         norm=norm, act=act, connection=connection, ctx=ctx, drop_path=drop_path, post_norm=post_norm)

    def zero_init_last(self) -> None:
        if getattr(self.bn3, "weight", None) is not None:
            nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._merge(x, self.bn3(self.conv3(self.conv2(self.act1(self.bn1(self.conv1(x)))))))


class GGhostStage(nn.Module):
    """The G-Ghost stage (see the module docstring) of ``depth`` blocks from ``in_planes`` to ``planes * expansion``
    channels.

    ``make_block(j, in_channels, planes, stride, thin)`` builds block ``j`` of the stage (called in block order;
    ``thin``: a block of the complicated path). ``ghost_ratio`` (lambda): the share of the output made by the cheap
    operation; the thin blocks' planes are ``int(planes * (1 - lambda) / divisor) * divisor``. ``mix``: add the mix
    operation to the cheap features; ``end_block``: end with an ordinary full-width block on the concatenation (the
    official stage) instead of the concatenation itself.
    """

    def __init__(self, make_block: Callable[[int, int, int, int, bool], nn.Module], in_planes: int, planes: int,
                 depth: int, stride: int, *, expansion: int = 1, ghost_ratio: float = 0.5, divisor: int = 1,
                 mix: bool = True, end_block: bool = True, norm: Any = "bn", act: Any = "relu"):
        super().__init__()
        out = planes * expansion
        thin = int(planes * (1 - ghost_ratio) / divisor) * divisor
        n_thin = depth - 1 - int(end_block)
        if thin < 1 or n_thin < 1:
            raise ConfigError(f"a G-Ghost stage of {depth} blocks and {out} channels has no complicated path at "
                              f"ghost_ratio={ghost_ratio} (thin width {thin * expansion}); use a smaller ghost_ratio")
        self.thin_channels, self.cheap_channels = thin * expansion, out - thin * expansion
        self.base = make_block(0, in_planes, planes, stride, False)
        self.layers = nn.Sequential(*(make_block(j, self.thin_channels, thin, 1, True) for j in range(1, n_thin + 1)))
        self.cheap: nn.Module | None = None
        self.mix: nn.Module | None = None
        if self.cheap_channels:
            g = self.cheap_channels
            self.cheap = nn.Sequential(nn.Conv2d(g, g, 1, bias=False), make_norm(norm, g))
            if mix:
                mixed = out + n_thin * self.thin_channels   # x1 and every thin block's output
                self.mix = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(mixed, g, 1, bias=False),
                                         make_norm(norm, g), make_act(act, inplace=True),
                                         nn.Conv2d(g, g, 1, bias=False), make_norm(norm, g))
            self.cheap_act = make_act(act, inplace=True)
        self.end = make_block(depth - 1, out, planes, 1, False) if end_block else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.base(x)
        z, zs = x1[:, :self.thin_channels], [x1]
        for block in self.layers:
            z = block(z)
            zs.append(z)
        if self.cheap is not None:
            g = self.cheap(x1[:, self.thin_channels:])
            if self.mix is not None:
                g = g + self.mix(torch.cat(zs, 1))
            z = torch.cat((z, self.cheap_act(g)), 1)
        return self.end(z)


class GGhostNet(Backbone):
    """A RegNetX (``block=XBlock``, ``group_width``) or ResNet (``block=BasicBlock`` / ``Bottleneck``) body whose
    stages after the first with more than two blocks are G-Ghost stages (see the module docstring).

    ``ghost_ratio``: lambda in [0, 1); ``mix``, ``end_block``: see :class:`GGhostStage`; ``thin_group_scale``: the
    thin blocks' group width as a fraction of ``group_width`` (RegNetX bodies only; default the official 0.75).
    ``stem``: ``"regnet"`` (3x3/2 conv, first stage at stride 2), ``"imagenet"`` (ResNet's 7x7/2 conv + 3x3/2 max
    pool, first stage at stride 1) or ``"small"`` (3x3/1 conv, first stage at stride 1: 28-32 px inputs).
    ``drop_path_rate``: stochastic depth on every residual branch, linear over the blocks.
    """

    _feature_path = ("stem", "stages.*")

    def __init__(self, block: type[nn.Module], depths: tuple[int, ...], widths: tuple[int, ...], *,
                 group_width: int | None = None, ghost_ratio: float = 0.5, mix: bool = True, end_block: bool = True,
                 thin_group_scale: float | None = None, num_classes: int = 1000, in_chans: int = 3,
                 stem: str = "regnet", stem_width: int = 32, shortcut: str = "B",
                 img_size: int | tuple[int, int] | None = None, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 zero_init_last: bool = False, model_name: str = "g_ghostnet", attn=SLOTS["attn"],
                 conv=SLOTS["conv"], norm=SLOTS["norm"], act=SLOTS["act"], connection=SLOTS["connection"],
                 head=SLOTS["head"]):
        super().__init__()
        owner = model_name
        check_positive(ghost_ratio, "ghost_ratio", allow_zero=True, owner=owner)
        if ghost_ratio >= 1:
            raise ConfigError(f"{owner}: ghost_ratio (the share of each G-Ghost stage made by cheap operations) must "
                              f"be in [0, 1), got {ghost_ratio}")
        check_choice(stem, "stem", ("regnet", "imagenet", "small"), owner=owner)
        divisor = 1
        if group_width is None:
            if thin_group_scale is not None:
                raise ConfigError(f"{owner}: thin_group_scale applies to the grouped RegNetX bodies only; leave it "
                                  f"unset")
        else:
            scale = OFFICIAL_THIN_GROUP_SCALE if thin_group_scale is None else thin_group_scale
            check_positive(scale, "thin_group_scale", owner=owner)
            divisor = int(group_width * scale)
            if scale > 1 or divisor < 1:
                raise ConfigError(f"{owner}: thin_group_scale must be in (0, 1] and leave a group width of at least "
                                  f"1 (group width {group_width}), got {scale}")
        norm, act = parse_once(norm), parse_once(act)
        place = resnet_placement(norm, depths)   # IBN-Net's positions for norm="ibn_a" / "ibn_b"; else norm everywhere
        norm = place.other
        self.model_name, self.in_chans, self.num_stages = model_name, in_chans, len(depths)
        feat = to_size(img_size)
        if stem == "imagenet":
            self.stem: nn.Module = ImageNetStem(in_chans, stem_width, place.stem, act)
            feat = self.track_module(self.stem, feat)
        else:
            stem_stride = 2 if stem == "regnet" else 1
            self.stem = ConvNormAct(in_chans, stem_width, 3, stem_stride, norm=place.stem, act=act)
            feat = self.track(feat, stem_stride)
        self.add_feature("stem", stem_width)
        dpr = drop_path_schedule(depths, drop_path_rate)
        expansion = block.expansion
        in_planes, stages, first = stem_width, [], 0
        for i, (depth, planes) in enumerate(zip(depths, widths)):
            stage_stride = 2 if i > 0 or stem == "regnet" else 1
            feat_in, feat = feat, self.track(feat, stage_stride)
            self.begin_stage(i, f"stages.{i}", feat)

            def make_block(j: int, cin: int, p: int, stride: int, thin: bool, i: int = i, first: int = first,
                           feat_in=feat_in, stage_stride: int = stage_stride) -> nn.Module:
                kw = {} if group_width is None else {"group_width": divisor if thin else group_width}
                size = feat_in if j == 0 else out_size(feat_in, stage_stride)
                return block(cin, p, stride, shortcut=shortcut, attn=self.slot_value("attn", attn, i, j),
                             conv=self.slot_value("conv", conv, i, j), norm=norm, act=act,
                             connection=self.slot_value("connection", connection, i, j), feat_size=size,
                             ctx=self.block_ctx(f"stages.{i}.{j}", size), drop_path=dpr[first + j],
                             norm1=place.first(i, j), post_norm=place.post(i, j), **kw)

            if i > 0 and depth > 2:
                stage: nn.Module = GGhostStage(make_block, in_planes, planes, depth, stage_stride, expansion=expansion,
                                               ghost_ratio=ghost_ratio, divisor=divisor, mix=mix, end_block=end_block,
                                               norm=norm, act=act)
            else:
                stage = nn.Sequential(*(make_block(j, in_planes if j == 0 else planes * expansion, planes,
                                                   stage_stride if j == 0 else 1, False) for j in range(depth)))
            stages.append(stage)
            in_planes, first = planes * expansion, first + depth
            self.add_feature(f"stages.{i}", in_planes)
        self.stages = nn.Sequential(*stages)
        self.init_head(in_planes, num_classes, head, drop_rate, feat_size=feat)
        init_weights(self, zero_init_last=zero_init_last)


# ------------------------------------------------------------------------------------------------- registrations
_T = "tests/models/test_g_ghostnet.py::"
REGNETX_032_PARAMS = 15_296_552   # the plain RegNetX-3.2GF (ghost_ratio=0, thin_group_scale=1; timm's regnetx_032)
G_GHOST_RESNET50_PARAMS = 26_187_816
G_GHOST_RESNET20_PARAMS = 207_098


def _regnetx(name: str, depths: tuple[int, ...], widths: tuple[int, ...], group_width: int):
    def build(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> GGhostNet:
        kw.setdefault("drop_rate", 0.2)
        return GGhostNet(XBlock, depths, widths, group_width=group_width, num_classes=num_classes,
                         in_chans=in_chans, model_name=name, **kw)

    build.__name__ = name
    build.__doc__ = f"G-Ghost-RegNetX {name}: depths {depths}, widths {widths}, group width {group_width}"
    return build


def _regnetx_claims(params: int, paper_params: str, macs: int, paper_macs: str) -> tuple[Claim, ...]:
    return (Claim(f"{params:,} parameters (paper: {paper_params}), the official code's count",
                  _T + "test_regnetx_params"),
            Claim(f"{macs / 1e9:.3f} GMACs at 224 px (paper: {paper_macs} FLOPs, i.e. multiply-adds)",
                  _T + "test_regnetx_macs"))


_REGNETX_NOTES = ("Counts equal those of the official g_ghost_regnet.py, which match the paper's table; stem='small' "
                  "and img_size= for 28-32 px inputs.")

# paper_params / paper_macs: the G-Ghost-RegNetX results as the official README lists them (FLOPs there are
# multiply-adds: RegNetX-3.2GF's "3.2G"); reference: exact counts of our builds (= the official code's)
register_model(
    "g_ghost_regnetx_032", family="g_ghostnet", slots=SLOTS, paper=papers.CGHOSTNET, paper_params=10_500_000,
    paper_macs=1.8e9, reference={"params_1000cls": 10_511_000, "macs_224": 1_801_746_240},
    summary="G-Ghost-RegNetX-3.2GF: RegNetX-3.2GF with G-Ghost stages 2-3 (lambda = 0.5, mix, official end block)",
    claims=_regnetx_claims(10_511_000, "10.5M", 1_801_746_240, "1.8B") + (
        Claim("31% fewer parameters and 43% fewer MACs than the plain RegNetX-3.2GF at equal width (ghost_ratio=0, "
              "thin_group_scale=1: 15,296,552 and 3.177 GMACs; RegNet's published 15.3M / 3.2GF)",
              _T + "test_g_ghost_macs_vs_plain_bodies"),),
    notes=_REGNETX_NOTES,
)(_regnetx("g_ghost_regnetx_032", (2, 6, 15, 2), (96, 192, 432, 1008), 48))
register_model(
    "g_ghost_regnetx_040", family="g_ghostnet", slots=SLOTS, paper=papers.CGHOSTNET, paper_params=15_700_000,
    paper_macs=2.2e9, reference={"params_1000cls": 15_726_268, "macs_224": 2_228_368_516},
    summary="G-Ghost-RegNetX-4.0GF: RegNetX-4.0GF with G-Ghost stages 2-3 (lambda = 0.5, mix, official end block)",
    claims=_regnetx_claims(15_726_268, "15.7M", 2_228_368_516, "2.2B"), notes=_REGNETX_NOTES,
)(_regnetx("g_ghost_regnetx_040", (2, 5, 14, 2), (80, 240, 560, 1360), 40))
register_model(
    "g_ghost_regnetx_080", family="g_ghostnet", slots=SLOTS, paper=papers.CGHOSTNET, paper_params=24_600_000,
    paper_macs=4.2e9, reference={"params_1000cls": 24_586_928, "macs_224": 4_149_668_216},
    summary="G-Ghost-RegNetX-8.0GF: RegNetX-8.0GF with G-Ghost stages 2-3 (lambda = 0.5, mix, official end block)",
    claims=_regnetx_claims(24_586_928, "24.6M", 4_149_668_216, "4.2B"), notes=_REGNETX_NOTES,
)(_regnetx("g_ghost_regnetx_080", (2, 5, 15, 1), (80, 240, 720, 1920), 120))
register_model(
    "g_ghost_regnetx_160", family="g_ghostnet", slots=SLOTS, paper=papers.CGHOSTNET, paper_params=32_400_000,
    paper_macs=9.0e9, reference={"params_1000cls": 32_381_704, "macs_224": 8_997_384_192},
    summary="G-Ghost-RegNetX-16GF: RegNetX-16GF with G-Ghost stages 2-3 (lambda = 0.5, mix, official end block)",
    claims=_regnetx_claims(32_381_704, "32.4M", 8_997_384_192, "9.0B"), notes=_REGNETX_NOTES,
)(_regnetx("g_ghost_regnetx_160", (2, 6, 13, 1), (256, 512, 896, 2048), 128))


@register_model(
    "g_ghost_resnet50", family="g_ghostnet", slots=SLOTS, paper=papers.CGHOSTNET,
    reference={"params_1000cls": G_GHOST_RESNET50_PARAMS, "macs_224": 3_103_260_672},
    summary="ResNet-50 whose stages 2-4 are G-Ghost stages (lambda = 0.5, mix, end block; blockzoo's configuration)",
    claims=(Claim("ghost_ratio=0 gives ResNet-50 back (25,557,032 parameters, the same function)",
                  _T + "test_resnet_bodies_lambda_zero_is_the_plain_body"),
            Claim(f"3.103 GMACs at 224 px vs ResNet-50's 4.089 (-24%), with {G_GHOST_RESNET50_PARAMS:,} parameters "
                  f"(+2.5%: the mix operation's 1x1 convs outweigh the thin blocks' saving in 3-block stages)",
                  _T + "test_g_ghost_macs_vs_plain_bodies"),),
    notes="Not in the paper's tables: the official authors apply the same stage to ResNets; counts are ours.",
)
def g_ghost_resnet50(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> GGhostNet:
    """G-Ghost ResNet-50 (bottlenecks (3, 4, 6, 3), G-Ghost stages 2-4)."""
    kw.setdefault("stem", "imagenet")
    kw.setdefault("stem_width", 64)
    return GGhostNet(Bottleneck, (3, 4, 6, 3), (64, 128, 256, 512), num_classes=num_classes, in_chans=in_chans,
                     model_name="g_ghost_resnet50", **kw)


@register_model(
    "g_ghost_resnet20", family="g_ghostnet", slots=SLOTS, paper=papers.CGHOSTNET, input_size=(3, 32, 32),
    num_classes=10, reference={"params_3ch_10cls": G_GHOST_RESNET20_PARAMS},
    summary="CIFAR ResNet-20 whose stages 2-3 are G-Ghost stages (lambda = 0.5, mix, end block), for 28-32 px",
    claims=(Claim("fewer parameters and MACs than ResNet-20 at equal width, and exactly ResNet-20 at lambda = 0",
                  _T + "test_g_ghost_body_is_cheaper_than_the_plain_body"),),
    notes="Not a paper model: the CIFAR counterpart of resnet20 for cheap comparisons; option-A shortcuts.",
)
def g_ghost_resnet20(*, num_classes: int = 10, in_chans: int = 3, shortcut: str = "A", **kw: Any) -> GGhostNet:
    """CIFAR G-Ghost ResNet-20 (basic blocks (3, 3, 3), widths 16/32/64, G-Ghost stages 2-3)."""
    kw.setdefault("img_size", 32)
    return GGhostNet(BasicBlock, (3, 3, 3), (16, 32, 64), num_classes=num_classes, in_chans=in_chans, stem="small",
                     stem_width=16, shortcut=shortcut, model_name="g_ghost_resnet20", **kw)
