"""ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, arXiv:1512.03385) with slots.

- CIFAR-style ``resnet20/32/44/56/110`` (paper section 4.2): 3x3 stem with 16 channels, three stages of n basic
  blocks with widths 16/32/64 (depth = 6n + 2), global average pooling, FC. Shortcut option A (parameter-free: stride-2
  subsampling and zero-padded channels, as in the paper's CIFAR experiments) by default; option B (1x1 conv + BN on
  projection shortcuts) with ``shortcut="B"``.
- ImageNet-style ``resnet18/34/50/101`` (basic blocks up to 34, bottlenecks from 50; 7x7/2 stem + 3x3/2 max-pool,
  projection shortcuts) with ``seresnet*`` / ``ecaresnet*`` variants; ``stem="small"`` swaps in a 3x3/1 stem without
  max-pool for 28-32 px inputs.

Slots: ``attn`` on the residual branch after the last norm, before the addition (as in the SE and ECA papers);
``conv`` = the first 3x3 conv unit of a basic block / the 3x3 unit of a bottleneck (conv -> norm -> act);
``norm``, ``act``, ``connection`` (how the branch is merged with the shortcut) and ``head`` (pooling).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import papers
from blockzoo.blocks.common.layers import make_act, make_norm
from blockzoo.models.base import Backbone, imagenet_stem, init_weights, out_size, to_size
from blockzoo.registry import Claim, build_slot, register_model

SLOTS = {"attn": "none", "conv": "conv3x3", "norm": "bn", "act": "relu", "connection": "residual", "head": "avg"}


class PadShortcut(nn.Module):
    """Option A shortcut: subsample spatially by ``stride`` and zero-pad the new channels (no parameters)."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride, self.pad = stride, planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        lo = self.pad // 2
        return F.pad(x, (0, 0, 0, 0, lo, self.pad - lo))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, *, shortcut: str = "B", attn="none",
                 conv="conv3x3", norm="bn", act="relu", connection="residual", ctx=None, feat_size=None):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = build_slot("conv", conv, in_planes, ctx("conv", feat_size), out_channels=planes, stride=stride,
                                norm=norm, act=act)
        feat_out = out_size(feat_size, stride)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = make_norm(norm, planes)
        self.attn = build_slot("attn", attn, out_planes, ctx("attn", feat_out))
        self.shortcut = _shortcut(in_planes, out_planes, stride, shortcut, norm)
        self.merge = build_slot("connection", connection, out_planes, ctx("connection", feat_out))
        self.act = make_act(act)

    def zero_init_last(self) -> None:
        if getattr(self.bn2, "weight", None) is not None:
            nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.attn(self.bn2(self.conv2(self.conv1(x))))
        return self.act(self.merge(self.shortcut(x), out))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, *, shortcut: str = "B", attn="none",
                 conv="conv3x3", norm="bn", act="relu", connection="residual", ctx=None, feat_size=None,
                 groups: int = 1, base_width: int = 64):
        super().__init__()
        width = int(planes * base_width / 64) * groups
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, width, 1, bias=False)
        self.bn1 = make_norm(norm, width)
        self.act1 = make_act(act)
        self.conv2 = build_slot("conv", conv, width, ctx("conv", feat_size), out_channels=width, stride=stride,
                                groups=groups, norm=norm, act=act)
        feat_out = out_size(feat_size, stride)
        self.conv3 = nn.Conv2d(width, out_planes, 1, bias=False)
        self.bn3 = make_norm(norm, out_planes)
        self.attn = build_slot("attn", attn, out_planes, ctx("attn", feat_out))
        self.shortcut = _shortcut(in_planes, out_planes, stride, shortcut, norm)
        self.merge = build_slot("connection", connection, out_planes, ctx("connection", feat_out))
        self.act = make_act(act)

    def zero_init_last(self) -> None:
        if getattr(self.bn3, "weight", None) is not None:
            nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.attn(self.bn3(self.conv3(self.conv2(out))))
        return self.act(self.merge(self.shortcut(x), out))


def _shortcut(in_planes: int, out_planes: int, stride: int, kind: str, norm) -> nn.Module:
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    if kind.upper() == "A":
        if out_planes < in_planes:
            raise ValueError("option A shortcut cannot reduce channels; use shortcut='B'")
        return PadShortcut(in_planes, out_planes, stride)
    if kind.upper() == "B":
        return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), make_norm(norm, out_planes))
    raise ValueError(f"shortcut must be 'A' (zero-padding) or 'B' (1x1 projection), got {kind!r}")


class ResNet(Backbone):
    """ResNet with slots. ``style='cifar'``: 3 stages from a 3x3 stem; ``style='imagenet'``: 4 stages, 7x7/2 stem."""

    def __init__(self, block: type[nn.Module], layers: tuple[int, ...], widths: tuple[int, ...], *, num_classes: int,
                 in_chans: int = 3, stem: str = "imagenet", stem_width: int = 64, shortcut: str = "B",
                 img_size: int | tuple[int, int] | None = None, drop_rate: float = 0.0, zero_init_last: bool = False,
                 groups: int = 1, base_width: int = 64, model_name: str = "resnet", attn="none", conv="conv3x3",
                 norm="bn", act="relu", connection="residual", head="avg", attn_stages: tuple[int, ...] | None = None,
                 attn_kwargs_per_stage: tuple[dict, ...] | None = None):
        super().__init__()
        self.model_name, self.in_chans = model_name, in_chans
        feat = to_size(img_size)
        if stem == "imagenet":
            self.stem, feat = imagenet_stem(in_chans, stem_width, norm, act, feat)
        elif stem in ("cifar", "small"):
            self.stem = nn.Sequential(nn.Conv2d(in_chans, stem_width, 3, 1, 1, bias=False), make_norm(norm, stem_width),
                                      make_act(act))
        else:
            raise ValueError(f"stem must be 'imagenet' or 'small'/'cifar', got {stem!r}")
        in_planes, stages = stem_width, []
        extra = dict(groups=groups, base_width=base_width) if block is Bottleneck else {}
        for i, (n, w) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n):
                stride = 2 if (j == 0 and i > 0) else 1
                use_attn = attn if attn_stages is None or i in attn_stages else "none"
                if attn_kwargs_per_stage is not None and use_attn not in (None, "none"):
                    use_attn = (use_attn, attn_kwargs_per_stage[i])
                pos = f"layer{i + 1}.{j}"
                blocks.append(block(
                    in_planes, w, stride, shortcut=shortcut, attn=use_attn, conv=conv, norm=norm, act=act,
                    connection=connection, feat_size=feat, ctx=lambda s, f, p=pos: self.ctx(f"{p}.{s}", f), **extra))
                feat = out_size(feat, stride)
                in_planes = w * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.init_head(in_planes, num_classes, head, drop_rate, feat_size=feat)
        init_weights(self, zero_init_last=zero_init_last)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x))


# ------------------------------------------------------------------------------------------------- registrations
def _cifar(depth: int):
    n = (depth - 2) // 6

    def fn(*, num_classes: int = 10, in_chans: int = 3, shortcut: str = "A", **kw) -> ResNet:
        kw.setdefault("img_size", 32)
        return ResNet(BasicBlock, (n, n, n), (16, 32, 64), num_classes=num_classes, in_chans=in_chans, stem="cifar",
                      stem_width=16, shortcut=shortcut, model_name=f"resnet{depth}", **kw)
    fn.__doc__ = f"CIFAR ResNet-{depth} ({n} basic blocks per stage, widths 16/32/64, option-A shortcuts)"
    return fn


_CIFAR_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}
_PAPER_CIFAR = {20: 0.27e6, 32: 0.46e6, 44: 0.66e6, 56: 0.85e6, 110: 1.7e6}
for _d in (20, 32, 44, 56, 110):
    register_model(
        f"resnet{_d}", family="resnet_cifar", slots=SLOTS, paper=papers.RESNET, input_size=(3, 32, 32), num_classes=10,
        paper_params=int(_PAPER_CIFAR[_d]), reference={"params_3ch_10cls": _CIFAR_PARAMS[_d]},
        summary=f"CIFAR ResNet-{_d}: 3x3 stem, {(_d - 2) // 6}x3 basic blocks, widths 16/32/64, option-A shortcuts",
        claims=(Claim(f"{_CIFAR_PARAMS[_d]:,} parameters (3 input channels, 10 classes, option A)",
                      "tests/test_models.py::test_param_counts"),),
    )(_cifar(_d))

_IMAGENET = {
    "resnet18": (BasicBlock, (2, 2, 2, 2), 11_689_512, 1.82e9),
    "resnet34": (BasicBlock, (3, 4, 6, 3), 21_797_672, 3.67e9),
    "resnet50": (Bottleneck, (3, 4, 6, 3), 25_557_032, 4.11e9),
    "resnet101": (Bottleneck, (3, 4, 23, 3), 44_549_160, 7.83e9),
}


def _imagenet(name: str, block, layers):
    def fn(*, num_classes: int = 1000, in_chans: int = 3, **kw) -> ResNet:
        kw.setdefault("zero_init_last", True)
        kw.setdefault("stem", "imagenet")
        return ResNet(block, layers, (64, 128, 256, 512), num_classes=num_classes, in_chans=in_chans,
                      shortcut="B", model_name=name, **kw)
    fn.__doc__ = f"ImageNet {name}"
    return fn


for _name, (_block, _layers, _params, _macs) in _IMAGENET.items():
    _kind = "basic" if _block is BasicBlock else "bottleneck"
    register_model(_name, family="resnet", slots=SLOTS, paper=papers.RESNET, paper_params=_params, paper_macs=_macs,
                   reference={"params_1000cls": _params},
                   summary=f"ImageNet {_name}: 7x7 stem, {_kind} blocks {_layers}, projection shortcuts",
                   claims=(Claim(f"{_params:,} parameters (1000 classes)", "tests/test_models.py::test_param_counts"),)
                   )(_imagenet(_name, _block, _layers))
    _se_params = _params + 2_530_992  # SE (r = 16, biased FCs) on ResNet-50's 16 bottlenecks
    register_model(f"se{_name}", family="resnet", slots={**SLOTS, "attn": "se"}, paper=papers.SENET,
                   summary=f"SE-{_name}: {_name} with an SE block (r = 16) on every residual branch",
                   reference={"params_1000cls": _se_params} if _name == "resnet50" else {},
                   paper_params=_se_params if _name == "resnet50" else None,
                   claims=(Claim("SE-ResNet-50 has 28,088,024 parameters", "tests/test_models.py::test_param_counts"),)
                   if _name == "resnet50" else ())(_imagenet(f"se{_name}", _block, _layers))
    register_model(f"eca{_name}", family="resnet", slots={**SLOTS, "attn": "eca"}, paper=papers.ECA,
                   summary=f"ECA-{_name}: {_name} with ECA (adaptive k) on every residual branch",
                   reference={"params_1000cls": _params + 86} if _name == "resnet50" else {},
                   claims=(Claim("ECA-ResNet-50 = ResNet-50 + 86 parameters", "tests/test_models.py::test_param_counts"),)
                   if _name == "resnet50" else ())(_imagenet(f"eca{_name}", _block, _layers))
