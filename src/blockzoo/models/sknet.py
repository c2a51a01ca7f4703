"""SKNets (Li et al., "Selective Kernel Networks", CVPR 2019, arXiv:1903.06586, inventory S097).

Built from the shared skeleton :class:`blockzoo.models.common.resnet.ResNet` with the ``sk`` unit
(``blockzoo.blocks.conv.sk``) in the ``conv`` slot, so every other slot (attn, norm, act, connection, head) stays
swappable.

- ``sknet50`` / ``sknet101``: the paper's SKNet-50 / SKNet-101 = ResNeXt-50 / -101 (32x4d) bodies whose grouped 3x3
  convolutions become SK units (M = 2, G = 32, r = 16, L = 32). Bottleneck widths 128/256/512/1024 (``groups=32,
  base_width=4``), outputs 256/512/1024/2048, 7x7/2 stem + 3x3/2 max-pool, stride in the SK unit of the first block of
  stages 2-4 (both branches strided, as in the official ``sknet50.prototxt``), 1x1 projection shortcuts. Measured:
  SKNet-50 27,479,784 parameters (paper 27.5M) and 4.463 GMACs at 224x224 (paper "4.47 GFLOPs"); SKNet-101
  48,736,040 (paper 48.9M). The official nets do not zero-initialise the last BN of a block, so
  ``zero_init_last=False`` by default here (unlike blockzoo's ImageNet ResNets). ``stem="small"`` (3x3/1 stem, no
  max-pool) and ``img_size=`` make them usable on 28-32 px inputs.
- ``skresnet20``: a CIFAR-size SK network chosen by blockzoo (the paper's CIFAR model, SKNet-29, is not reproduced:
  its exact configuration is not recoverable from the paper's table, whose 27.7M parameters do not match SK units
  dropped into ResNeXt-29 16x32d, which give 37.5M). It is the CIFAR ResNet-20 of He et al. (3 stages x 3 basic
  blocks, widths 16/32/64, option-A shortcuts, 32x32 inputs) whose first 3x3 conv unit in every block is an SK unit
  (groups = 1; d = max(C/16, 32) = 32). It pairs with ``resnet20`` for cheap CPU comparisons: 425,338 parameters vs
  269,722 (3 input channels, 10 classes).
"""
from __future__ import annotations

from blockzoo import papers
from blockzoo.models.common.resnet import SLOTS as RESNET_SLOTS
from blockzoo.models.common.resnet import BasicBlock, Bottleneck, ResNet
from blockzoo.registry import Claim, register_model

__all__ = ["sknet50", "sknet101", "skresnet20"]

SLOTS = {**RESNET_SLOTS, "conv": "sk"}

SKNET50_PARAMS = 27_479_784
SKNET101_PARAMS = 48_736_040
SKRESNET20_PARAMS = 425_338


def _imagenet(name: str, layers: tuple[int, ...]):
    def fn(*, num_classes: int = 1000, in_chans: int = 3, **kw) -> ResNet:
        kw.setdefault("zero_init_last", False)
        kw.setdefault("stem", "imagenet")
        return ResNet(Bottleneck, layers, (64, 128, 256, 512), num_classes=num_classes, in_chans=in_chans,
                      shortcut="B", groups=32, base_width=4, model_name=name, **kw)
    return fn


@register_model(
    "sknet50", family="sknet", slots=SLOTS, paper=papers.SKNET, paper_params=27_500_000, paper_macs=4.47e9,
    reference={"params_1000cls": SKNET50_PARAMS, "macs_224": 4_462_710_784},
    summary="SKNet-50: ResNeXt-50 (32x4d) with SK units (M=2, G=32, r=16, L=32) in place of the grouped 3x3 convs",
    claims=(Claim(f"{SKNET50_PARAMS:,} parameters (paper: 27.5M)", "tests/models/test_sknet.py::test_sknet50_params"),
            Claim("4.463 GMACs at 224x224 (paper: 4.47 GFLOPs)", "tests/models/test_sknet.py::test_sknet50_macs")),
    notes="zero_init_last=False (official init); stem='small' and img_size= for small inputs.",
)
def sknet50(*, num_classes: int = 1000, in_chans: int = 3, **kw) -> ResNet:
    """SKNet-50 (ResNeXt-50 32x4d body with SK units)."""
    return _imagenet("sknet50", (3, 4, 6, 3))(num_classes=num_classes, in_chans=in_chans, **kw)


@register_model(
    "sknet101", family="sknet", slots=SLOTS, paper=papers.SKNET, paper_params=48_900_000, paper_macs=8.46e9,
    reference={"params_1000cls": SKNET101_PARAMS},
    summary="SKNet-101: ResNeXt-101 (32x4d) with SK units (M=2, G=32, r=16, L=32)",
    claims=(Claim(f"{SKNET101_PARAMS:,} parameters (paper: 48.9M)",
                  "tests/models/test_sknet.py::test_sknet101_params"),),
    notes="zero_init_last=False (official init); stem='small' and img_size= for small inputs.",
)
def sknet101(*, num_classes: int = 1000, in_chans: int = 3, **kw) -> ResNet:
    """SKNet-101 (ResNeXt-101 32x4d body with SK units)."""
    return _imagenet("sknet101", (3, 4, 23, 3))(num_classes=num_classes, in_chans=in_chans, **kw)


@register_model(
    "skresnet20", family="sknet", slots=SLOTS, paper=papers.SKNET, input_size=(3, 32, 32), num_classes=10,
    reference={"params_3ch_10cls": SKRESNET20_PARAMS},
    summary="CIFAR ResNet-20 whose first 3x3 unit in every basic block is an SK unit (blockzoo's small SK net)",
    claims=(Claim(f"{SKRESNET20_PARAMS:,} parameters (3 input channels, 10 classes)",
                  "tests/models/test_sknet.py::test_skresnet20"),),
    notes="Not a paper model: the CIFAR counterpart of resnet20 for cheap comparisons; option-A shortcuts.",
)
def skresnet20(*, num_classes: int = 10, in_chans: int = 3, shortcut: str = "A", **kw) -> ResNet:
    """CIFAR SK-ResNet-20 (16/32/64 widths, SK unit as the first conv of each basic block)."""
    kw.setdefault("img_size", 32)
    return ResNet(BasicBlock, (3, 3, 3), (16, 32, 64), num_classes=num_classes, in_chans=in_chans, stem="cifar",
                  stem_width=16, shortcut=shortcut, model_name="skresnet20", **kw)
