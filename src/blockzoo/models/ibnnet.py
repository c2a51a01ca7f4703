"""IBN-Nets (Pan, Luo, Shi & Tang, "Two at Once: Enhancing Learning and Generalization Capacities via IBN-Net",
ECCV 2018, arXiv:1807.09441; inventory S052; official code https://github.com/XingangPan/IBN-Net,
``ibnnet/resnet_ibn.py``).

ResNets of the shared skeleton :class:`blockzoo.models.common.resnet.ResNet` whose ``norm`` slot defaults to an IBN
block (``blockzoo.blocks.norm.ibn``); the skeleton puts it where the paper and the official code do:

- ``resnet{18,34,50,101}_ibn_a``: IBN-a (half the channels Instance Norm, half BatchNorm) as the norm after the first
  conv of every block of conv2_x .. conv4_x (not conv5_x); ResNet-50-IBN-a has exactly ResNet-50's 25,557,032
  parameters and MACs (the affine IN has BN's 2 parameters per channel; normalisation is not a multiply-add).
- ``resnet{18,34,50,101}_ibn_b``: IN after the residual addition (before the ReLU) in the last block of conv2_x and
  conv3_x, and IN instead of BN after the stem conv: 2 x (256 + 512) = 1,536 parameters more than ResNet-50 (Basic
  blocks: 2 x (64 + 128) = 384 more than ResNet-18/34).

Both follow torchvision's ResNet layout (7x7/2 stem + 3x3/2 max pool, stride in the 3x3 conv, 1x1 projection
shortcuts with BN), as the official code does. The official code initialises every BN / IN weight to 1 and bias to 0
(no zero-initialised last BN), hence ``zero_init_last=False`` here, unlike blockzoo's ImageNet ResNets; its convs use
the same He-normal (fan-out) init as blockzoo's generic one. The official ``avgpool`` is a fixed 7x7 pool (224 px
only); blockzoo's ``head="avg"`` is global, the same at 224 px. A user ``norm`` replaces the IBN default
(``create_model("resnet50_ibn_a", norm="bn")`` is ResNet-50 with the official init).

Same function as the official models: renaming the state-dict keys (``stem.0`` / ``stem.1`` -> ``conv1`` / ``bn1``,
``layers.{i}`` -> ``layer{i+1}``, a conv unit's ``conv`` / ``norm`` -> ``conv1`` / ``bn1`` (basic) or ``conv2`` /
``bn2`` (bottleneck), ``shortcut`` -> ``downsample``, ``post_norm`` -> ``IN``) loads them strictly into
``resnet_ibn.py``'s models, which then give the same outputs in train and eval mode (checked for resnet18/50 IBN-a
and IBN-b when this file was written; the official code is not a test dependency).

``resnet20_ibn_a`` / ``resnet20_ibn_b`` (blockzoo's small variants for 28-32 px, not paper models): the CIFAR ResNet-20
of He et al. (3 stages of 3 basic blocks, widths 16/32/64, option-A shortcuts) with the same rules: IBN-a in stages 1-2
(all but the last), IBN-b after the last block of stages 1-2 and in the stem.
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from blockzoo import papers
from blockzoo.models.common.resnet import SLOTS as RESNET_SLOTS
from blockzoo.models.common.resnet import BasicBlock, Bottleneck, ResNet
from blockzoo.registry import Claim, register_model

__all__ = ["SLOTS_A", "SLOTS_B"]

SLOTS_A = {**RESNET_SLOTS, "norm": "ibn_a"}
SLOTS_B = {**RESNET_SLOTS, "norm": "ibn_b"}
_TEST = "tests/models/test_ibnnet.py"

# name: (block, layers, exact parameters at 1000 classes = the official resnet_ibn.py models)
_IMAGENET: dict[str, tuple[type[nn.Module], tuple[int, ...], int]] = {
    "resnet18_ibn_a": (BasicBlock, (2, 2, 2, 2), 11_689_512),
    "resnet34_ibn_a": (BasicBlock, (3, 4, 6, 3), 21_797_672),
    "resnet50_ibn_a": (Bottleneck, (3, 4, 6, 3), 25_557_032),
    "resnet101_ibn_a": (Bottleneck, (3, 4, 23, 3), 44_549_160),
    "resnet18_ibn_b": (BasicBlock, (2, 2, 2, 2), 11_689_896),
    "resnet34_ibn_b": (BasicBlock, (3, 4, 6, 3), 21_798_056),
    "resnet50_ibn_b": (Bottleneck, (3, 4, 6, 3), 25_558_568),
    "resnet101_ibn_b": (Bottleneck, (3, 4, 23, 3), 44_550_696),
}
RESNET50_MACS_224 = 4_089_184_256   # conv + linear multiply-adds at 224 px, ResNet-50 and both IBN variants


def _imagenet(name: str):
    block, layers, _ = _IMAGENET[name]

    def fn(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> ResNet:
        kw.setdefault("norm", SLOTS_A["norm"] if name.endswith("_a") else SLOTS_B["norm"])
        kw.setdefault("zero_init_last", False)   # official init: every norm weight 1
        kw.setdefault("stem", "imagenet")
        return ResNet(block, layers, (64, 128, 256, 512), num_classes=num_classes, in_chans=in_chans, shortcut="B",
                      model_name=name, **kw)
    kind = "IBN-a (IN/BN split in the first norm of conv2_x-conv4_x)" if name.endswith("_a") else \
        "IBN-b (IN after the addition in conv2_x/conv3_x's last block and after conv1)"
    fn.__doc__ = f"{name.split('_')[0].replace('resnet', 'ResNet-')} with {kind}"
    return fn


def _imagenet_spec(name: str, *claims: Claim) -> dict[str, Any]:
    params = _IMAGENET[name][2]
    reference: dict[str, Any] = {"params_1000cls": params}
    if name.startswith("resnet50"):
        reference["macs_224"] = RESNET50_MACS_224
    return dict(
        family="ibnnet", slots=SLOTS_A if name.endswith("_a") else SLOTS_B, paper=papers.IBNNET,
        paper_params=params, reference=reference, summary=_imagenet(name).__doc__,
        claims=(Claim(f"{params:,} parameters (1000 classes; the official resnet_ibn.py count)",
                      f"{_TEST}::test_param_counts"), *claims),
        notes="zero_init_last=False (official init); stem='small' and img_size= for small inputs.")


_NO_EXTRA = Claim("no extra computational cost: the parameters and MACs of ResNet-50 (25,557,032; 4.089 GMACs at "
                  "224 px)", f"{_TEST}::test_resnet50_ibn_a_no_extra_cost")
register_model("resnet18_ibn_a", **_imagenet_spec("resnet18_ibn_a"))(_imagenet("resnet18_ibn_a"))
register_model("resnet34_ibn_a", **_imagenet_spec("resnet34_ibn_a"))(_imagenet("resnet34_ibn_a"))
register_model("resnet50_ibn_a", **_imagenet_spec("resnet50_ibn_a", _NO_EXTRA))(_imagenet("resnet50_ibn_a"))
register_model("resnet101_ibn_a", **_imagenet_spec("resnet101_ibn_a"))(_imagenet("resnet101_ibn_a"))
register_model("resnet18_ibn_b", **_imagenet_spec("resnet18_ibn_b"))(_imagenet("resnet18_ibn_b"))
register_model("resnet34_ibn_b", **_imagenet_spec("resnet34_ibn_b"))(_imagenet("resnet34_ibn_b"))
register_model("resnet50_ibn_b", **_imagenet_spec(
    "resnet50_ibn_b", Claim("the MACs of ResNet-50 (three IN layers: +1,536 parameters, no multiply-adds)",
                            f"{_TEST}::test_resnet50_ibn_b_cost")))(_imagenet("resnet50_ibn_b"))
register_model("resnet101_ibn_b", **_imagenet_spec("resnet101_ibn_b"))(_imagenet("resnet101_ibn_b"))


def _cifar(name: str, norm: str):
    def fn(*, num_classes: int = 10, in_chans: int = 3, shortcut: str = "A", **kw: Any) -> ResNet:
        kw.setdefault("img_size", 32)
        kw.setdefault("norm", norm)
        return ResNet(BasicBlock, (3, 3, 3), (16, 32, 64), num_classes=num_classes, in_chans=in_chans, stem="cifar",
                      stem_width=16, shortcut=shortcut, model_name=name, **kw)
    fn.__doc__ = f"CIFAR ResNet-20 with {norm} at the IBN-Net positions (blockzoo's small IBN net)"
    return fn


_SMALL = {"resnet20_ibn_a": ("ibn_a", 269_722), "resnet20_ibn_b": ("ibn_b", 269_818)}


def _small_spec(name: str) -> dict[str, Any]:
    norm, params = _SMALL[name]
    return dict(
        family="ibnnet", slots={**RESNET_SLOTS, "norm": norm}, paper=papers.IBNNET, input_size=(3, 32, 32),
        num_classes=10, reference={"params_3ch_10cls": params}, summary=_cifar(name, norm).__doc__,
        claims=(Claim(f"{params:,} parameters (3 input channels, 10 classes, option A)",
                      f"{_TEST}::test_small_variants"),),
        notes="Not a paper model: the CIFAR counterpart of resnet20 for cheap comparisons; option-A shortcuts.")


register_model("resnet20_ibn_a", **_small_spec("resnet20_ibn_a"))(_cifar("resnet20_ibn_a", "ibn_a"))
register_model("resnet20_ibn_b", **_small_spec("resnet20_ibn_b"))(_cifar("resnet20_ibn_b", "ibn_b"))
