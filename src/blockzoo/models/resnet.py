"""ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, arXiv:1512.03385) with slots.

- CIFAR-style ``resnet20/32/44/56/110`` (paper section 4.2): 3x3 stem with 16 channels, three stages of n basic
  blocks with widths 16/32/64 (depth = 6n + 2), global average pooling, FC. Shortcut option A (parameter-free: stride-2
  subsampling and zero-padded channels, as in the paper's CIFAR experiments) by default; option B (1x1 conv + BN on
  projection shortcuts) with ``shortcut="B"``.
- ImageNet-style ``resnet18/34/50/101`` (basic blocks up to 34, bottlenecks from 50; 7x7/2 stem + 3x3/2 max-pool,
  projection shortcuts) with ``seresnet*`` / ``ecaresnet*`` variants; ``stem="small"`` swaps in a 3x3/1 stem without
  max-pool for 28-32 px inputs.

Built on the shared skeleton :class:`blockzoo.models.common.resnet.ResNet` (its docstring lists the slots).
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from blockzoo import papers
from blockzoo.models.common.resnet import SLOTS, BasicBlock, Bottleneck, ResNet
from blockzoo.registry import Claim, register_model


# ------------------------------------------------------------------------------------------------- registrations
def _cifar_resnet(name: str, n: int, num_classes: int, in_chans: int, shortcut: str, **kw: Any) -> ResNet:
    """CIFAR ResNet-(6n+2): 3x3 stem (16), three stages of ``n`` basic blocks, widths 16/32/64."""
    kw.setdefault("img_size", 32)
    return ResNet(BasicBlock, (n, n, n), (16, 32, 64), num_classes=num_classes, in_chans=in_chans, stem="cifar",
                  stem_width=16, shortcut=shortcut, model_name=name, **kw)


def _imagenet_resnet(name: str, block: type[nn.Module], layers: tuple[int, ...], num_classes: int, in_chans: int,
                     **kw: Any) -> ResNet:
    """ImageNet ResNet: 7x7/2 stem + max pool, four stages of widths 64-512, projection shortcuts, zero-init last BN."""
    kw.setdefault("zero_init_last", True)
    kw.setdefault("stem", "imagenet")
    return ResNet(block, layers, (64, 128, 256, 512), num_classes=num_classes, in_chans=in_chans, shortcut="B",
                  model_name=name, **kw)


_CLAIM_TEST = "tests/models/test_resnet.py::test_param_counts"

@register_model(
    "resnet20", family="resnet_cifar", slots=SLOTS, paper=papers.RESNET, input_size=(3, 32, 32), num_classes=10,
    paper_params=270_000, reference={"params_3ch_10cls": 269_722},
    summary="CIFAR ResNet-20: 3x3 stem, 3x3 basic blocks, widths 16/32/64, option-A shortcuts",
    claims=(Claim("269,722 parameters (3 input channels, 10 classes, option A)", _CLAIM_TEST),),
)
def resnet20(*, num_classes: int = 10, in_chans: int = 3, shortcut: str = "A", **kw: Any) -> ResNet:
    """CIFAR ResNet-20 (3 basic blocks per stage, widths 16/32/64, option-A shortcuts)."""
    return _cifar_resnet("resnet20", 3, num_classes, in_chans, shortcut, **kw)

@register_model(
    "resnet32", family="resnet_cifar", slots=SLOTS, paper=papers.RESNET, input_size=(3, 32, 32), num_classes=10,
    paper_params=460_000, reference={"params_3ch_10cls": 464_154},
    summary="CIFAR ResNet-32: 3x3 stem, 5x3 basic blocks, widths 16/32/64, option-A shortcuts",
    claims=(Claim("464,154 parameters (3 input channels, 10 classes, option A)", _CLAIM_TEST),),
)
def resnet32(*, num_classes: int = 10, in_chans: int = 3, shortcut: str = "A", **kw: Any) -> ResNet:
    """CIFAR ResNet-32 (5 basic blocks per stage, widths 16/32/64, option-A shortcuts)."""
    return _cifar_resnet("resnet32", 5, num_classes, in_chans, shortcut, **kw)

@register_model(
    "resnet44", family="resnet_cifar", slots=SLOTS, paper=papers.RESNET, input_size=(3, 32, 32), num_classes=10,
    paper_params=660_000, reference={"params_3ch_10cls": 658_586},
    summary="CIFAR ResNet-44: 3x3 stem, 7x3 basic blocks, widths 16/32/64, option-A shortcuts",
    claims=(Claim("658,586 parameters (3 input channels, 10 classes, option A)", _CLAIM_TEST),),
)
def resnet44(*, num_classes: int = 10, in_chans: int = 3, shortcut: str = "A", **kw: Any) -> ResNet:
    """CIFAR ResNet-44 (7 basic blocks per stage, widths 16/32/64, option-A shortcuts)."""
    return _cifar_resnet("resnet44", 7, num_classes, in_chans, shortcut, **kw)

@register_model(
    "resnet56", family="resnet_cifar", slots=SLOTS, paper=papers.RESNET, input_size=(3, 32, 32), num_classes=10,
    paper_params=850_000, reference={"params_3ch_10cls": 853_018},
    summary="CIFAR ResNet-56: 3x3 stem, 9x3 basic blocks, widths 16/32/64, option-A shortcuts",
    claims=(Claim("853,018 parameters (3 input channels, 10 classes, option A)", _CLAIM_TEST),),
)
def resnet56(*, num_classes: int = 10, in_chans: int = 3, shortcut: str = "A", **kw: Any) -> ResNet:
    """CIFAR ResNet-56 (9 basic blocks per stage, widths 16/32/64, option-A shortcuts)."""
    return _cifar_resnet("resnet56", 9, num_classes, in_chans, shortcut, **kw)

@register_model(
    "resnet110", family="resnet_cifar", slots=SLOTS, paper=papers.RESNET, input_size=(3, 32, 32), num_classes=10,
    paper_params=1_700_000, reference={"params_3ch_10cls": 1_727_962},
    summary="CIFAR ResNet-110: 3x3 stem, 18x3 basic blocks, widths 16/32/64, option-A shortcuts",
    claims=(Claim("1,727,962 parameters (3 input channels, 10 classes, option A)", _CLAIM_TEST),),
)
def resnet110(*, num_classes: int = 10, in_chans: int = 3, shortcut: str = "A", **kw: Any) -> ResNet:
    """CIFAR ResNet-110 (18 basic blocks per stage, widths 16/32/64, option-A shortcuts)."""
    return _cifar_resnet("resnet110", 18, num_classes, in_chans, shortcut, **kw)

@register_model(
    "resnet18", family="resnet", slots=SLOTS, paper=papers.RESNET, paper_params=11_689_512, paper_macs=1.82e9,
    reference={"params_1000cls": 11_689_512},
    summary="ImageNet resnet18: 7x7 stem, basic blocks (2, 2, 2, 2), projection shortcuts",
    claims=(Claim("11,689,512 parameters (1000 classes)", _CLAIM_TEST),),
)
def resnet18(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> ResNet:
    """ImageNet resnet18."""
    return _imagenet_resnet("resnet18", BasicBlock, (2, 2, 2, 2), num_classes, in_chans, **kw)

@register_model(
    "resnet34", family="resnet", slots=SLOTS, paper=papers.RESNET, paper_params=21_797_672, paper_macs=3.67e9,
    reference={"params_1000cls": 21_797_672},
    summary="ImageNet resnet34: 7x7 stem, basic blocks (3, 4, 6, 3), projection shortcuts",
    claims=(Claim("21,797,672 parameters (1000 classes)", _CLAIM_TEST),),
)
def resnet34(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> ResNet:
    """ImageNet resnet34."""
    return _imagenet_resnet("resnet34", BasicBlock, (3, 4, 6, 3), num_classes, in_chans, **kw)

@register_model(
    "resnet50", family="resnet", slots=SLOTS, paper=papers.RESNET, paper_params=25_557_032, paper_macs=4.11e9,
    reference={"params_1000cls": 25_557_032},
    summary="ImageNet resnet50: 7x7 stem, bottleneck blocks (3, 4, 6, 3), projection shortcuts",
    claims=(Claim("25,557,032 parameters (1000 classes)", _CLAIM_TEST),),
)
def resnet50(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> ResNet:
    """ImageNet resnet50."""
    return _imagenet_resnet("resnet50", Bottleneck, (3, 4, 6, 3), num_classes, in_chans, **kw)

@register_model(
    "resnet101", family="resnet", slots=SLOTS, paper=papers.RESNET, paper_params=44_549_160, paper_macs=7.83e9,
    reference={"params_1000cls": 44_549_160},
    summary="ImageNet resnet101: 7x7 stem, bottleneck blocks (3, 4, 23, 3), projection shortcuts",
    claims=(Claim("44,549,160 parameters (1000 classes)", _CLAIM_TEST),),
)
def resnet101(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> ResNet:
    """ImageNet resnet101."""
    return _imagenet_resnet("resnet101", Bottleneck, (3, 4, 23, 3), num_classes, in_chans, **kw)

@register_model(
    "seresnet18", family="resnet", slots={**SLOTS, "attn": "se"}, paper=papers.SENET,
    summary="SE-resnet18: resnet18 with an SE block (r = 16) on every residual branch",
)
def seresnet18(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> ResNet:
    """SE-resnet18."""
    return _imagenet_resnet("seresnet18", BasicBlock, (2, 2, 2, 2), num_classes, in_chans, **kw)

@register_model(
    "seresnet34", family="resnet", slots={**SLOTS, "attn": "se"}, paper=papers.SENET,
    summary="SE-resnet34: resnet34 with an SE block (r = 16) on every residual branch",
)
def seresnet34(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> ResNet:
    """SE-resnet34."""
    return _imagenet_resnet("seresnet34", BasicBlock, (3, 4, 6, 3), num_classes, in_chans, **kw)

@register_model(
    "seresnet50", family="resnet", slots={**SLOTS, "attn": "se"}, paper=papers.SENET,
    summary="SE-resnet50: resnet50 with an SE block (r = 16) on every residual branch",
    reference={"params_1000cls": 28_088_024}, paper_params=28_088_024,  # SE (r = 16, biased FCs) on 16 bottlenecks
    claims=(Claim("SE-ResNet-50 has 28,088,024 parameters", _CLAIM_TEST),),
)
def seresnet50(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> ResNet:
    """SE-resnet50."""
    return _imagenet_resnet("seresnet50", Bottleneck, (3, 4, 6, 3), num_classes, in_chans, **kw)

@register_model(
    "seresnet101", family="resnet", slots={**SLOTS, "attn": "se"}, paper=papers.SENET,
    summary="SE-resnet101: resnet101 with an SE block (r = 16) on every residual branch",
)
def seresnet101(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> ResNet:
    """SE-resnet101."""
    return _imagenet_resnet("seresnet101", Bottleneck, (3, 4, 23, 3), num_classes, in_chans, **kw)

@register_model(
    "ecaresnet18", family="resnet", slots={**SLOTS, "attn": "eca"}, paper=papers.ECA,
    summary="ECA-resnet18: resnet18 with ECA (adaptive k) on every residual branch",
)
def ecaresnet18(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> ResNet:
    """ECA-resnet18."""
    return _imagenet_resnet("ecaresnet18", BasicBlock, (2, 2, 2, 2), num_classes, in_chans, **kw)

@register_model(
    "ecaresnet34", family="resnet", slots={**SLOTS, "attn": "eca"}, paper=papers.ECA,
    summary="ECA-resnet34: resnet34 with ECA (adaptive k) on every residual branch",
)
def ecaresnet34(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> ResNet:
    """ECA-resnet34."""
    return _imagenet_resnet("ecaresnet34", BasicBlock, (3, 4, 6, 3), num_classes, in_chans, **kw)

@register_model(
    "ecaresnet50", family="resnet", slots={**SLOTS, "attn": "eca"}, paper=papers.ECA,
    summary="ECA-resnet50: resnet50 with ECA (adaptive k) on every residual branch",
    reference={"params_1000cls": 25_557_118},
    claims=(Claim("ECA-ResNet-50 = ResNet-50 + 86 parameters", _CLAIM_TEST),),
)
def ecaresnet50(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> ResNet:
    """ECA-resnet50."""
    return _imagenet_resnet("ecaresnet50", Bottleneck, (3, 4, 6, 3), num_classes, in_chans, **kw)

@register_model(
    "ecaresnet101", family="resnet", slots={**SLOTS, "attn": "eca"}, paper=papers.ECA,
    summary="ECA-resnet101: resnet101 with ECA (adaptive k) on every residual branch",
)
def ecaresnet101(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> ResNet:
    """ECA-resnet101."""
    return _imagenet_resnet("ecaresnet101", Bottleneck, (3, 4, 23, 3), num_classes, in_chans, **kw)
