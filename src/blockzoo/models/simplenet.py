"""SimpleNet (Hasanpour, Rouhani, Fayyaz & Sabokrou, "Lets Keep it Simple, Using Simple Architectures to Outperform
Deeper and More Complex Architectures", arXiv:1608.06037, 2016; inventory S020; official Caffe models
https://github.com/Coderx7/SimpleNet, official PyTorch code https://github.com/Coderx7/SimpleNet_Pytorch:
``cifar/models/simplenet.py`` and ``imagenet/simplenet.py``) with ``conv`` / ``attn`` / ``norm`` / ``act`` / ``head``
slots.

Architecture (the layer tables of the official PyTorch code, which follow the paper's 13-layer design)
--------------------------------------------------------------------------------------------------------
A plain network (no shortcuts): 13 convolutions, each conv -> BN -> ReLU, with 2x2/2 max pooling between groups and
global max pooling before the classifier. Every 3x3 layer is a ``conv``-slot unit (default ``conv3x3``); the two 1x1
layers stay 1x1 conv -> norm -> act units. Stages are the groups between poolings (``stages[k]`` starts with the pool
that precedes it); ``attn`` (none by default) goes after the last unit of each stage.

=========================  =====================================================================================
variant                    channels per layer (``1x1`` = 1x1 conv; ``P`` = 2x2/2 max pool)
=========================  =====================================================================================
CIFAR, 5M (``_5m``)        64, 128, 128, 128, P, 128, 128, 256, P, 256, 256, P, 512, 2048 1x1, 256 1x1, P, 256
CIFAR, 310K (``_310k``)    64, 32, 32, 32, P, 32, 32, 64, P, 64, 64, P, 128, 256 1x1, 64 1x1, P, 64
ImageNet, 5M (v1_5m)       64, 128, 128, 128, 128, 128, P, 256, 256, 256, 512, P, 2048 1x1, 256 1x1, 256
ImageNet, 9M (v1_9m)       128, 192, 192, 192, 192, 192, P, 320, 320, 320, 640, P, 2560 1x1, 320 1x1, 320
=========================  =====================================================================================

ImageNet ``stride_mode`` (official ``mode``): which of the first layers have stride 2 -- m1: layers 1, 2, 3; m2:
layers 1, 2, 4 (slower, more accurate); 3: 1, 2, 5; 4: 1, 3, 5. The CIFAR nets use no strided convs (mode 0).
``width`` scales every layer (``round(c * width)``, official ``scale``): the ``small_*_05`` / ``_075`` variants are the
5M table at 0.5 / 0.75.

Where the official code differs (documented, options where it matters)
----------------------------------------------------------------------
* **Conv biases**: the official convs (and the Caffe prototxts) have a bias before every BN. A bias followed by BN is
  redundant (BN's mean subtraction removes it in training, its shift absorbs it when folded); blockzoo's conv units
  have none, so every variant has the official parameter count minus the sum of its layers' output channels
  (CIFAR 5M: 5,498,378 - 4,544 = 5,493,834; the paper's table says 5.48M). The MACs are the official ones.
* **BN momentum 0.05** (PyTorch convention; the Caffe ``moving_average_fraction: 0.95``): the registered
  ``norm`` default ``bn(momentum=0.05)``.
* **Padding of the 1x1 convs**: the official PyTorch code of February-April 2023 (``9c18e1b`` .. ``3370d81``) padded
  every conv with 1, so each 1x1 layer grew the map by 2 pixels (CIFAR: 4x4 -> 6x6 -> 8x8 before the last pool). The
  current code and the Caffe models pad 1x1 convs with 0, the default here; ``pad_1x1=True`` is the 2023 variant.
* **Dropout**: the official table puts ``Dropout2d`` after every conv not followed by a pool and after every pool
  (the paper's Caffe ``DropoutAll`` model: ratio 0.2; the official PyTorch default: 0, i.e. off); ``feature_drop`` is
  that rate (default 0, the PyTorch code's), ``drop_rate`` the dropout before the classifier (official
  ``drop_rates[15]``, default 0).
* **Global max pooling** before the classifier, as the official code and the paper (``head="max"``).
* **Init**: the official xavier-uniform init with ReLU gain for the convs of the conv units (BN 1/0, classifier
  PyTorch default).
* The Caffe CIFAR prototxt has no BN on the last three layers and pools after ``conv4`` before its BN; the PyTorch
  tables (followed here) put conv -> BN -> ReLU everywhere.
* ``simplenet_cifar_460k`` of the official code (385,790 parameters, not 460K) is not registered.

Same function as the official models: copying these weights into the official PyTorch models (their conv biases set
to zero) gives the same outputs in train and eval mode (checked for ``simplenet_cifar_5m``, ``simplenetv1_5m_m2``
and ``simplenetv1_small_m1_075`` when this file was written; the official code is not a test dependency).
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.common.layers import ConvNormAct
from blockzoo.checks import check_choice, check_positive
from blockzoo.errors import ConfigError
from blockzoo.models.base import Backbone, init_weights, parse_once, to_size
from blockzoo.registry import Claim, build_slot, register_model

__all__ = ["SimpleNet", "SIMPLENET_TABLES", "STRIDE_MODES", "SLOTS", "conv_bias_count"]

SLOTS = {"conv": "conv3x3", "attn": "none", "norm": "bn(momentum=0.05)", "act": "relu", "head": "max"}

# layer tables: an int = 3x3 conv unit with that many channels, (c, 1) = 1x1 conv, "p" = 2x2/2 max pool
SIMPLENET_TABLES: dict[str, tuple[Any, ...]] = {
    "cifar_5m": (64, 128, 128, 128, "p", 128, 128, 256, "p", 256, 256, "p", 512, (2048, 1), (256, 1), "p", 256),
    "cifar_310k": (64, 32, 32, 32, "p", 32, 32, 64, "p", 64, 64, "p", 128, (256, 1), (64, 1), "p", 64),
    "imagenet_5m": (64, 128, 128, 128, 128, 128, "p", 256, 256, 256, 512, "p", (2048, 1), (256, 1), 256),
    "imagenet_9m": (128, 192, 192, 192, 192, 192, "p", 320, 320, 320, 640, "p", (2560, 1), (320, 1), 320),
}
# stride mode -> {table entry index: stride} (official ``strides``)
STRIDE_MODES: dict[int, dict[int, int]] = {
    0: {}, 1: {0: 2, 1: 2, 2: 2}, 2: {0: 2, 1: 2, 3: 2}, 3: {0: 2, 1: 2, 4: 2}, 4: {0: 2, 2: 2, 4: 2}}


def _stages(table: tuple[Any, ...]) -> list[list[tuple[int, Any]]]:
    """The table split at its pools: per stage, the ``(table index, entry)`` of its conv layers."""
    stages: list[list[tuple[int, Any]]] = [[]]
    for idx, entry in enumerate(table):
        if entry == "p":
            stages.append([])
        else:
            stages[-1].append((idx, entry))
    return stages


class SimpleNet(Backbone):
    """SimpleNet: a plain stack of conv -> BN -> ReLU units with max pooling; see the module docstring.

    Args:
        table: a key of :data:`SIMPLENET_TABLES` (the official layer table).
        width: width multiplier (every layer ``round(c * width)``).
        stride_mode: the official ``mode`` (0: no strided convs, the CIFAR nets; 1-4: the ImageNet strides).
        pad_1x1: pad the 1x1 convs with 1 (the 2023 official code); default 0 (Caffe and current official code).
        feature_drop: ``Dropout2d`` rate after every conv unit not followed by a pool and after every pool.
        drop_rate: dropout before the classifier.
        img_size: input size (checks blocks that need a minimum feature size when the model is built).
    """

    _feature_path = ("stages.*",)

    def __init__(self, *, table: str = "cifar_5m", width: float = 1.0, stride_mode: int = 0, pad_1x1: bool = False,
                 num_classes: int = 10, in_chans: int = 3, img_size: int | tuple[int, int] | None = None,
                 feature_drop: float = 0.0, drop_rate: float = 0.0, model_name: str = "simplenet",
                 conv: Any = SLOTS["conv"], attn: Any = SLOTS["attn"], norm: Any = SLOTS["norm"],
                 act: Any = SLOTS["act"], head: Any = SLOTS["head"]):
        super().__init__()
        check_choice(table, "table", SIMPLENET_TABLES, owner=model_name)
        check_choice(stride_mode, "stride_mode", STRIDE_MODES, owner=model_name)
        check_positive(width, "width", owner=model_name)
        if not check_positive(feature_drop, "feature_drop", allow_zero=True, owner=model_name) < 1:
            raise ConfigError(f"{model_name}: feature_drop must be in [0, 1), got {feature_drop!r}")
        if stride_mode and not table.startswith("imagenet"):
            raise ConfigError(f"{model_name}: stride_mode={stride_mode} is for the ImageNet tables; the CIFAR tables "
                              f"use stride_mode=0")
        norm, act = parse_once(norm), parse_once(act)
        self.model_name, self.in_chans = model_name, in_chans
        layout = _stages(SIMPLENET_TABLES[table])
        strides = STRIDE_MODES[stride_mode]
        self.num_stages = len(layout)
        feat, in_ch, stages = to_size(img_size), in_chans, []
        for si, layers in enumerate(layout):
            mods: list[nn.Module] = []
            if si > 0:
                mods.append(nn.MaxPool2d(2, 2))
                feat = self.track(feat, 2, kernel=2, padding=0)
                if feature_drop > 0:
                    mods.append(nn.Dropout2d(feature_drop))
            self.begin_stage(si, f"stages.{si}", feat)
            for li, (idx, entry) in enumerate(layers):
                out_ch, k = entry if isinstance(entry, tuple) else (entry, 3)
                out_ch, stride = max(1, round(out_ch * width)), strides.get(idx, 1)
                if k == 1:
                    unit: nn.Module = ConvNormAct(in_ch, out_ch, 1, norm=norm, act=act)
                    if pad_1x1:
                        unit.conv.padding = (1, 1)   # the 2023 official code: the map grows by 2 pixels
                    feat_out = self.track(feat, 1, kernel=1, padding=1 if pad_1x1 else 0)
                else:
                    value = self.slot_value("conv", conv, si, li)
                    unit = build_slot("conv", value, in_ch, self.ctx(f"stages.{si}.{len(mods)}", feat),
                                      out_channels=out_ch, stride=stride, norm=norm, act=act)
                    feat_out = self.track(feat, stride)
                mods.append(unit)
                feat, in_ch = feat_out, out_ch
                if li < len(layers) - 1 and feature_drop > 0:
                    mods.append(nn.Dropout2d(feature_drop))
            a = build_slot("attn", self.slot_value("attn", attn, si, len(layers) - 1), in_ch,
                           self.ctx(f"stages.{si}.attn", feat))
            if not isinstance(a, nn.Identity):
                mods.append(a)
            stages.append(nn.Sequential(*mods))
            self.add_feature(f"stages.{si}", in_ch)
        self.stages = nn.Sequential(*stages)
        self.init_head(in_ch, num_classes, head, drop_rate, feat_size=feat)
        init_weights(self)
        for m in self.modules():   # official init of the conv units: xavier-uniform with ReLU gain
            if isinstance(m, ConvNormAct):
                nn.init.xavier_uniform_(m.conv.weight, gain=nn.init.calculate_gain("relu"))


# ------------------------------------------------------------------------------------------------- registrations
# name: (table, width, stride mode, exact parameters of the official model (conv biases included), its MACs at its
# paper input size (32 px CIFAR, 224 px ImageNet; conv + linear multiply-adds), published parameter count)
_VARIANTS: dict[str, tuple[str, float, int, int, int, float]] = {
    "simplenet_cifar_5m": ("cifar_5m", 1.0, 0, 5_498_378, 652_151_296, 5.48e6),
    "simplenet_cifar_310k": ("cifar_310k", 1.0, 0, 312_362, 55_788_160, 310e3),
    "simplenetv1_small_m1_05": ("imagenet_5m", 0.5, 1, 1_506_792, 340_923_392, 1.5e6),
    "simplenetv1_small_m2_05": ("imagenet_5m", 0.5, 2, 1_506_792, 427_627_520, 1.5e6),
    "simplenetv1_small_m1_075": ("imagenet_5m", 0.75, 1, 3_287_272, 758_853_120, 3.2e6),
    "simplenetv1_small_m2_075": ("imagenet_5m", 0.75, 2, 3_287_272, 953_937_408, 3.2e6),
    "simplenetv1_5m_m1": ("imagenet_5m", 1.0, 1, 5_752_808, 1_341_761_536, 5.7e6),
    "simplenetv1_5m_m2": ("imagenet_5m", 1.0, 2, 5_752_808, 1_688_578_048, 5.7e6),
    "simplenetv1_9m_m1": ("imagenet_9m", 1.0, 1, 9_508_968, 2_774_249_984, 9.5e6),
    "simplenetv1_9m_m2": ("imagenet_9m", 1.0, 2, 9_508_968, 3_554_587_136, 9.5e6),
}
_TEST = "tests/models/test_simplenet.py"


def conv_bias_count(name: str) -> int:
    """The number of conv biases of the official model ``name`` (one per output channel of each of its 13 layers),
    which blockzoo's bias-free conv units do not have."""
    table, width = _VARIANTS[name][:2]
    return sum(max(1, round((e[0] if isinstance(e, tuple) else e) * width)) for e in SIMPLENET_TABLES[table]
               if e != "p")


def _build(name: str):
    table, width, mode = _VARIANTS[name][:3]
    cifar = table.startswith("cifar")

    def fn(*, num_classes: int = 10 if cifar else 1000, in_chans: int = 3, **kw: Any) -> SimpleNet:
        if cifar:
            kw.setdefault("img_size", 32)
        return SimpleNet(table=table, width=width, stride_mode=mode, num_classes=num_classes, in_chans=in_chans,
                         model_name=name, **kw)
    where = "CIFAR, 32 px" if cifar else f"ImageNet, 224 px, stride mode m{mode}, width x{width}"
    fn.__doc__ = f"SimpleNet {table.split('_')[1].upper()} table ({where}): 13 plain conv-BN-ReLU layers, max pooling"
    return fn


def _spec(name: str, *claims: Claim) -> dict[str, Any]:
    table, _, _, official, macs, paper = _VARIANTS[name]
    cifar = table.startswith("cifar")
    ours = official - conv_bias_count(name)
    reference: dict[str, Any] = {("params_3ch_10cls" if cifar else "params_1000cls"): ours,
                                 ("macs_32" if cifar else "macs_224"): macs, "official_params": official}
    return dict(
        family="simplenet", slots=SLOTS, paper=papers.SIMPLENET, input_size=(3, 32, 32) if cifar else (3, 224, 224),
        num_classes=10 if cifar else 1000, paper_params=int(paper), reference=reference, summary=_build(name).__doc__,
        claims=(Claim(f"{ours:,} parameters = the official {official:,} minus its {official - ours:,} conv biases "
                      f"(redundant before BN)", f"{_TEST}::test_param_counts"),
                Claim(f"{macs:,} MACs at {32 if cifar else 224} px, the official model's",
                      f"{_TEST}::test_macs_small" if cifar else f"{_TEST}::test_macs_224"), *claims),
        notes="Official quirks as options: pad_1x1=True (2023 code), feature_drop (Dropout2d placement of the official "
              "table), norm='bn(momentum=0.05)' default.")


register_model("simplenet_cifar_5m", **_spec(
    "simplenet_cifar_5m", Claim("a 13-layer plain net: 13 convolutions, no shortcut", f"{_TEST}::test_thirteen_layers"),
))(_build("simplenet_cifar_5m"))
register_model("simplenet_cifar_310k", **_spec(
    "simplenet_cifar_310k", Claim("trains on 32 px inputs", f"{_TEST}::test_small_trains")))(
    _build("simplenet_cifar_310k"))
register_model("simplenetv1_small_m1_05", **_spec("simplenetv1_small_m1_05"))(_build("simplenetv1_small_m1_05"))
register_model("simplenetv1_small_m2_05", **_spec("simplenetv1_small_m2_05"))(_build("simplenetv1_small_m2_05"))
register_model("simplenetv1_small_m1_075", **_spec("simplenetv1_small_m1_075"))(_build("simplenetv1_small_m1_075"))
register_model("simplenetv1_small_m2_075", **_spec("simplenetv1_small_m2_075"))(_build("simplenetv1_small_m2_075"))
register_model("simplenetv1_5m_m1", **_spec("simplenetv1_5m_m1"))(_build("simplenetv1_5m_m1"))
register_model("simplenetv1_5m_m2", **_spec("simplenetv1_5m_m2"))(_build("simplenetv1_5m_m2"))
register_model("simplenetv1_9m_m1", **_spec("simplenetv1_9m_m1"))(_build("simplenetv1_9m_m1"))
register_model("simplenetv1_9m_m2", **_spec("simplenetv1_9m_m2"))(_build("simplenetv1_9m_m2"))
