"""GhostNet (Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020, arXiv:1911.11907; S098) and
GhostNetV2 (Tang et al., "GhostNetV2: Enhance Cheap Operation with Long-Range Attention", NeurIPS 2022,
arXiv:2211.12905; S042), with ``attn`` / ``norm`` / ``act`` / ``head`` slots. The blocks are
:class:`blockzoo.blocks.conv.ghost.GhostBottleneck` (see that module for the Ghost module, the bottleneck, the SE and
the V2 module). C-GhostNet (S099) is GhostNet v1 and is not registered separately.

Architecture (GhostNet paper Table 1; official ``ghostnet_pytorch/ghostnet.py``, timm ``ghostnet.py``)
-----------------------------------------------------------------------------------------------------
* stem: 3x3 conv, stride 2, 16 channels -> BN -> ReLU;
* 16 Ghost bottlenecks ``(k, #exp, #out, SE, stride)``, in the official code's 9 groups (``model.blocks[i]``, the
  stages of per-stage slot values): (3,16,16,-,1) | (3,48,24,-,2) | (3,72,24,-,1) | (5,72,40,SE,2) |
  (5,120,40,SE,1) | (3,240,80,-,2) | (3,200,80,-,1) (3,184,80,-,1) (3,184,80,-,1) (3,480,112,SE,1)
  (3,672,112,SE,1) | (5,672,160,SE,2) | (5,960,160,-,1) (5,960,160,SE,1) (5,960,160,-,1) (5,960,160,SE,1);
* ``conv_last``: 1x1 conv to 960 -> BN -> ReLU (the official ``blocks[9]``);
* head: global average pooling -> ``head_pre`` (the official ``conv_head``: 1x1 conv with bias to 1280 on the pooled
  vector, stored as a Linear) -> ReLU -> dropout 0.2 -> FC.

Width multiplier ``width`` (0.5 / 1.0 / 1.3): every width (stem, #exp, #out, the 960 of ``conv_last``) is
``make_divisible(c * width, 4)``; the 1280 of the head stays. The SE is the paper's (r = 4, hard sigmoid, hidden
``make_divisible(C/4, 4)``) at the table's SE positions; ``attn=`` replaces it there (``attn_blocks="all"`` puts the
``attn`` value into every bottleneck). ``ghostnet_100`` has exactly timm's / the official model's parameter count.

GhostNetV2 (``version="v2"``)
-----------------------------
The same network whose bottlenecks from the third on (``dfc_first_block=2``) have a :class:`GhostModuleV2` as their
first Ghost module (DFC attention on the expanded features). The paper's text and Fig. 4 put DFC attention in every
bottleneck; the official code (``GhostBottleneckV2``: ``mode='original'`` for ``layer_id <= 1``) leaves it out of the
first two, at the 112 px resolution, and the paper's 167M FLOPs for GhostNetV2 1.0x are only reached that way (DFC
in all 16 bottlenecks: 2,048 more parameters and +5.2M MACs). So the default follows the official code;
``dfc_first_block=0`` gives the every-bottleneck reading of the text.

Feature maps (``feature_info``)
-------------------------------
The last group at each resolution (``blocks.0``, ``blocks.2``, ``blocks.4``, ``blocks.6``, ``blocks.8``: reductions
2 ... 32), as blockzoo's MobileNetV2 and timm's EfficientNets; ``forward_features`` ends with ``conv_last``. timm's
GhostNet takes instead the stem conv's output and the *first* group at each resolution (``blocks.1, 3, 5, 7``), so
its maps differ (the weights and outputs are the same).

Initialisation: the official code and timm keep PyTorch's default init; blockzoo's generic init (Kaiming-normal convs)
is used, as for the other families.

Small inputs (28-32 px), ``stem="small"``
-----------------------------------------
No GhostNet paper defines a CIFAR GhostNet (the GhostNet paper's CIFAR models are Ghost-VGG-16 and Ghost-ResNet-56:
``create_model("resnet20", conv="ghost")`` is the cheap counterpart here). As for blockzoo's MobileNetV2
(kuangliu/pytorch-cifar practice), the stem conv and the first stride-2 group get stride 1, so the network
down-samples by 8 (32 px -> 4x4). The parameters are the ImageNet model's except that the now stride-1 block has no
depthwise conv (a Ghost bottleneck has one only at stride 2: 48 x 9 + 2 x 48 = 528 parameters fewer). Registered
as ``ghostnet_100_small`` and ``ghostnetv2_100_small`` (10 classes, 32 px, dropout 0).

"GhostNet beats MobileNetV3 at similar cost" (paper abstract, Table 7)
---------------------------------------------------------------------
The paper compares with MobileNetV3 (Large 0.75x: 4.0M / 155M, 73.3%; Large 1.0x: 5.4M / 219M, 75.2% against
GhostNet 1.0x: 5.2M / 141M, 73.9% and 1.3x: 7.3M / 226M, 75.7%). blockzoo has no MobileNetV3, so the registered
claim is the cost half against the mobile baseline blockzoo has, MobileNetV2 1.0x (3.5M / 300M in the paper's
Table 7): ``ghostnet_100`` costs 141.2M MACs, 47% of ``mobilenetv2_100``'s 300.8M, with 1.48x its parameters
(5.18M vs 3.50M; most of the difference is the 1280-wide layer after pooling, 1.23M parameters and as many MACs).
The accuracy half of the claim is not checked here.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.common.drop import drop_path_schedule
from blockzoo.blocks.common.layers import ConvNormAct, make_act, make_divisible
from blockzoo.blocks.conv.ghost import GhostBottleneck
from blockzoo.checks import check_choice, check_int
from blockzoo.errors import ConfigError
from blockzoo.models.base import Backbone, init_weights, parse_once, to_size
from blockzoo.registry import Claim, IncompatibleBlockError, register_model

__all__ = ["GhostNet", "GHOSTNET_CFG", "SLOTS"]

SLOTS = {"attn": "se(reduction=4, gate=hsigmoid)", "norm": "bn", "act": "relu", "head": "avg"}

# (k, #exp, #out, SE, stride) of each bottleneck (paper Table 1), in the official code's groups
GHOSTNET_CFG: tuple[tuple[tuple[int, int, int, bool, int], ...], ...] = (
    ((3, 16, 16, False, 1),),
    ((3, 48, 24, False, 2),),
    ((3, 72, 24, False, 1),),
    ((5, 72, 40, True, 2),),
    ((5, 120, 40, True, 1),),
    ((3, 240, 80, False, 2),),
    ((3, 200, 80, False, 1), (3, 184, 80, False, 1), (3, 184, 80, False, 1), (3, 480, 112, True, 1),
     (3, 672, 112, True, 1)),
    ((5, 672, 160, True, 2),),
    ((5, 960, 160, False, 1), (5, 960, 160, True, 1), (5, 960, 160, False, 1), (5, 960, 160, True, 1)),
)


class GhostNet(Backbone):
    """GhostNet / GhostNetV2 with slots; see the module docstring.

    Args:
        width: the width multiplier (widths rounded with ``make_divisible(., 4)``).
        version: ``"v1"`` (GhostNet) or ``"v2"`` (GhostNetV2: DFC attention in the first Ghost module).
        dfc_first_block: v2 only: the first bottleneck (0-based, over all 16) with DFC attention (``None``: the
            official 2).
        stem: ``"imagenet"`` (3x3/2 stem) or ``"small"`` (stem and first stride-2 group at stride 1, 28-32 px).
        attn_blocks: ``"paper"`` (``attn`` at the table's SE positions) or ``"all"`` (in every bottleneck).
        head_channels: the width of the layer after pooling (1280).
        drop_rate: dropout before the classifier (official 0.2); drop_path_rate: stochastic depth on the
            identity-shortcut bottlenecks, linear over the blocks (not in the papers).
    """

    _feature_path, _final_path = ("stem", "blocks.*"), ("conv_last",)

    def __init__(self, *, width: float = 1.0, version: str = "v1", dfc_first_block: int | None = None,
                 num_classes: int = 1000,
                 in_chans: int = 3, stem: str = "imagenet", img_size: int | tuple[int, int] | None = None,
                 drop_rate: float = 0.2, drop_path_rate: float = 0.0, attn: Any = SLOTS["attn"],
                 attn_blocks: str = "paper", norm: Any = SLOTS["norm"], act: Any = SLOTS["act"],
                 head: Any = SLOTS["head"], head_channels: int = 1280, model_name: str = "ghostnet"):
        super().__init__()
        norm, act = parse_once(norm), parse_once(act)
        if width <= 0:
            raise ConfigError(f"{model_name}: width must be positive (the papers use 0.5 ... 1.6), got {width}")
        check_choice(version, "version", ("v1", "v2"), owner=model_name)
        check_choice(stem, "stem", ("imagenet", "small"), owner=model_name)
        check_choice(attn_blocks, "attn_blocks", ("paper", "all"), owner=model_name)
        if version == "v1" and dfc_first_block is not None:
            raise ConfigError(f"{model_name}: dfc_first_block only applies to GhostNetV2 (version='v2'); drop it")
        dfc_first_block = 2 if dfc_first_block is None else dfc_first_block
        check_int(dfc_first_block, "dfc_first_block", min_value=0, owner=model_name)
        check_int(head_channels, "head_channels", min_value=1, owner=model_name)
        self.model_name, self.in_chans, self.width, self.version = model_name, in_chans, width, version
        self.num_stages = len(GHOSTNET_CFG)
        small = stem == "small"
        feat = to_size(img_size)

        stem_ch = make_divisible(16 * width, 4)
        stem_stride = 1 if small else 2
        self.stem = ConvNormAct(in_chans, stem_ch, 3, stem_stride, norm=norm, act=act, inplace=True)
        feat = self.track(feat, stem_stride)

        strides = [group[0][4] for group in GHOSTNET_CFG]
        if small:
            strides[strides.index(2)] = 1   # CIFAR practice: the first stride-2 group keeps the resolution
        dpr = iter(drop_path_schedule([len(g) for g in GHOSTNET_CFG], drop_path_rate))
        groups, in_ch, index = [], stem_ch, 0
        for si, group in enumerate(GHOSTNET_CFG):
            blocks = []
            for j, (k, exp, c, se, _) in enumerate(group):
                stride = strides[si] if j == 0 else 1
                feat_out = self.track(feat, stride, k) if stride > 1 else feat
                if j == 0:
                    self.begin_stage(si, f"blocks.{si}", feat_out)
                dfc = version == "v2" and index >= dfc_first_block
                if dfc:
                    self._need_dfc_size(si, j, feat)
                use_attn = self.slot_value("attn", attn, si, j) if se or attn_blocks == "all" else "none"
                out_ch = make_divisible(c * width, 4)
                pos = f"blocks.{si}.{j}"
                blocks.append(GhostBottleneck(
                    in_ch, make_divisible(exp * width, 4), out_ch, k, stride, attn=use_attn, norm=norm, act=act,
                    dfc=dfc, ctx=self.block_ctx(pos, feat), feat_size=feat, drop_path=next(dpr)))
                feat, in_ch, index = feat_out, out_ch, index + 1
            groups.append(nn.Sequential(*blocks))
            if si == len(GHOSTNET_CFG) - 1 or strides[si + 1] == 2:   # the last group at each resolution
                self.add_feature(f"blocks.{si}", in_ch)
        self.blocks = nn.Sequential(*groups)
        last_ch = make_divisible(960 * width, 4)
        self.conv_last = ConvNormAct(in_ch, last_ch, 1, norm=norm, act=act, inplace=True)
        self.head_channels, self._act = head_channels, act
        self.init_head(last_ch, num_classes, head, drop_rate, feat_size=feat)
        self._build_head_pre()
        self.fc = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()
        init_weights(self)

    def _need_dfc_size(self, stage: int, block: int, feat: tuple[int, int] | None) -> None:
        """DFC attention pools its input by 2: the stage needs feature maps of at least 2x2 (refused now when
        ``img_size`` says it gets less, else checked at forward with the other stage sizes)."""
        if feat is not None and min(feat) < 2:
            raise IncompatibleBlockError(
                f"{self.model_name}.blocks.{stage}.{block}: the DFC attention needs feature maps of at least 2x2 but "
                f"sees {feat[0]}x{feat[1]}; use a larger img_size")
        self._stage_needs[stage] = max(2, self._stage_needs.get(stage, 1))

    def _build_head_pre(self) -> None:
        """The official ``conv_head`` + ReLU on the pooled vector (a Linear: a 1x1 conv on a 1x1 map)."""
        self._pooled_features = getattr(self.head, "out_features", self.num_features)
        self.head_pre = nn.Sequential(nn.Linear(self._pooled_features, self.head_channels),
                                      make_act(self._act, inplace=True))
        self.head_hidden_size = self.head_channels

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.head_pre(self.head(x)))
        return x if pre_logits else self.fc(x)

    def _reset_classifier(self, num_classes: int, head: Any) -> None:
        """New classifier; the 1280-wide layer after pooling is kept (timm) unless a new pooling ``head`` changes the
        pooled size, then it is rebuilt."""
        if head is not None:
            self.set_head(head)
            if getattr(self.head, "out_features", self.num_features) != self._pooled_features:
                self._build_head_pre()
        self.num_classes = num_classes
        self.fc = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()


# ------------------------------------------------------------------------------------------------- registrations
# name: (version, width, exact params at 1000 classes (= timm's), MACs at 224 px (blockzoo.profile.count_macs),
# the paper's params and FLOPs (GhostNet Table 7; the GhostNetV2 paper's ImageNet comparison))
_IMAGENET: dict[str, tuple[str, float, int, int, float, float]] = {
    "ghostnet_050": ("v1", 0.5, 2_587_292, 42_328_152, 2.6e6, 42e6),
    "ghostnet_100": ("v1", 1.0, 5_182_508, 141_150_512, 5.2e6, 141e6),
    "ghostnet_130": ("v1", 1.3, 7_358_820, 227_003_256, 7.3e6, 226e6),
    "ghostnetv2_100": ("v2", 1.0, 6_156_908, 167_048_288, 6.1e6, 167e6),
    "ghostnetv2_130": ("v2", 1.3, 8_960_404, 269_322_976, 8.9e6, 269e6),
    "ghostnetv2_160": ("v2", 1.6, 12_392_698, 398_607_224, 12.3e6, 399e6),
}
_SMALL: dict[str, tuple[str, int]] = {"ghostnet_100_small": ("v1", 3_913_790),
                                      "ghostnetv2_100_small": ("v2", 4_888_190)}
_TEST = "tests/models/test_ghostnet.py"


def _entry(name: str, version: str, width: float, small: bool):
    def fn(*, num_classes: int = 10 if small else 1000, in_chans: int = 3, **kw) -> GhostNet:
        if version == "v2":
            kw.setdefault("dfc_first_block", 2)
        if small:
            kw.setdefault("img_size", 32)
            kw.setdefault("stem", "small")
            kw.setdefault("drop_rate", 0.0)
        return GhostNet(width=width, version=version, num_classes=num_classes, in_chans=in_chans, model_name=name,
                        **kw)
    label = "GhostNetV2" if version == "v2" else "GhostNet"
    fn.__doc__ = (f"{label} {width}x for 28-32 px inputs (stem and first stride-2 group at stride 1; ends at 4x4)"
                  if small else f"{label} {width}x (ImageNet, 224 px)")
    return fn


def _imagenet_spec(name: str, *extra_claims: Claim) -> dict[str, Any]:
    version, w, params, macs, pp, pm = _IMAGENET[name]
    v2 = version == "v2"
    return dict(
        family="ghostnetv2" if v2 else "ghostnet", slots=SLOTS, paper=papers.GHOSTNETV2 if v2 else papers.GHOSTNET,
        input_size=(3, 224, 224), num_classes=1000, paper_params=int(pp), paper_macs=pm,
        reference={"params_1000cls": params, "macs_224": macs},
        summary=(f"GhostNetV2 {w}x: Ghost bottlenecks whose first Ghost module is gated by DFC attention, 224 px" if v2
                 else f"GhostNet {w}x: Ghost bottlenecks (Ghost modules, SE), 224 px"),
        claims=(Claim(f"{params:,} parameters (1000 classes; the official model / timm)",
                      f"{_TEST}::test_param_counts"),
                Claim(f"{macs / 1e6:.1f}M MACs at 224 px (paper: {pm / 1e6:.0f}M FLOPs)",
                      f"{_TEST}::test_macs_reference_table"),
                *extra_claims),
        notes="version='v2' + dfc_first_block (official 2); attn at the table's SE positions (attn_blocks='all': "
              "everywhere); stem='small' and img_size= for small inputs.")


def _small_spec(name: str) -> dict[str, Any]:
    version, params = _SMALL[name]
    v2 = version == "v2"
    return dict(
        family="ghostnetv2" if v2 else "ghostnet", slots=SLOTS, paper=papers.GHOSTNETV2 if v2 else papers.GHOSTNET,
        input_size=(3, 32, 32), num_classes=10, reference={"params_3ch_10cls": params},
        summary=f"{'GhostNetV2' if v2 else 'GhostNet'} 1.0x for 28-32 px inputs: stem and the first stride-2 group at "
                f"stride 1 (CIFAR practice, as mobilenetv2_*_small), 4x4 final map",
        claims=(Claim(f"{params:,} parameters (3 channels, 10 classes)", f"{_TEST}::test_param_counts_small"),
                Claim("a 32 px input ends at 4x4 (overall stride 8)", f"{_TEST}::test_small_feature_size")),
        notes="img_size defaults to 32, drop_rate to 0.")


register_model("ghostnet_050", **_imagenet_spec("ghostnet_050"))(_entry("ghostnet_050", "v1", 0.5, False))
register_model("ghostnet_100", **_imagenet_spec(
    "ghostnet_100",
    Claim("GhostNet costs less than the MobileNet baseline at 224 px: ghostnet_100 has 47% of mobilenetv2_100's MACs "
          "(the paper compares with MobileNetV3, which blockzoo does not have)",
          f"{_TEST}::test_cost_vs_mobilenetv2")))(_entry("ghostnet_100", "v1", 1.0, False))
register_model("ghostnet_130", **_imagenet_spec("ghostnet_130"))(_entry("ghostnet_130", "v1", 1.3, False))
register_model("ghostnetv2_100", **_imagenet_spec(
    "ghostnetv2_100",
    Claim("DFC attention from the third bottleneck on (official code) gives the paper's 167M; in all 16 it would add "
          "2,048 parameters and 5.2M MACs", f"{_TEST}::test_v2_dfc_first_block")))(
    _entry("ghostnetv2_100", "v2", 1.0, False))
register_model("ghostnetv2_130", **_imagenet_spec("ghostnetv2_130"))(_entry("ghostnetv2_130", "v2", 1.3, False))
register_model("ghostnetv2_160", **_imagenet_spec("ghostnetv2_160"))(_entry("ghostnetv2_160", "v2", 1.6, False))
register_model("ghostnet_100_small", **_small_spec("ghostnet_100_small"))(
    _entry("ghostnet_100_small", "v1", 1.0, True))
register_model("ghostnetv2_100_small", **_small_spec("ghostnetv2_100_small"))(
    _entry("ghostnetv2_100_small", "v2", 1.0, True))
