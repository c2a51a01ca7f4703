"""AFFNet: a lightweight MobileViT-like backbone whose global token mixer is the Adaptive Frequency Filter (AFF).

Huang et al., "Adaptive Frequency Filters As Efficient Global Token Mixers", ICCV 2023, arXiv:2307.14008 [S055];
official code microsoft/TokenMixers ``Adaptive Frequency Filters/affnet/`` (``models/classification/affnet.py``,
``models/classification/config/affnet.py``, ``modules/aff_block.py``, ``modules/mobilenetv2.py``; built on Apple's
ml-cvnets). The mixer itself is ``aff`` (:mod:`blockzoo.blocks.mixers.aff`).

Architecture (official code; AFFNet = mode ``small``, AFFNet-T = ``x_small``, AFFNet-ET = ``xx_small``)
--------------------------------------------------------------------------------------------------------
::

    stem     3x3/2 conv (16) -> BN -> act
    layer1   MV2(16 -> 32, t)                                   (MobileNetV2 inverted residual, stride 1)
    layer2   MV2(32 -> c2, t, stride 2), 2 x MV2(c2 -> c2, t)
    layer3-5 MV2(c_{i-1} -> c_i, t, stride 2) -> AFFBlock(c_i, n_i layers)
    head     1x1 conv -> min(4 c5, 960) -> BN -> act -> global average pooling -> [dropout] -> Linear

    AFFBlock(x):  y = n x AFFLayer(x) -> norm -> Conv1x1 -> BN                    (official ``AFFBlock``)
                  out = act(BN(Conv1x1(cat(x, y))))          (fusion; official ``no_fusion`` for base/large only)
    AFFLayer(x):  x + DP(mixer(norm2(MV2_{t=2}(norm1(x)))))                       (official ``Block``)

``MV2_{t=2}`` is the layer's channel mixer (official ``mlp = InvertedResidual(dim, dim, expand_ratio =
ffn_dim / dim = 2)``; it has its own identity skip); the token mixer (official ``filter``) is the ``mixer`` slot
(default ``aff``, which carries the official inner skip ``x + filter(x)``). The MobileViT block's local
representation convs and unfold/fold are commented out in the official AFFBlock and are absent here too.

============ ===== ============================ ============================== ======
variant      t     widths c1..c5                AFF layers per stage (3, 4, 5) head
============ ===== ============================ ============================== ======
affnet_et    2     32, 48, 64, 104, 144         2, 4, 3                        576
affnet_t     4     32, 48, 96, 160, 192         2, 4, 3                        768
affnet       4     32, 64, 128, 256, 320        2, 4, 3                        960
============ ===== ============================ ============================== ======

Slots: ``mixer`` (``aff``), ``norm`` (the AFF layers' and AFFBlock's norms; default ``gn(groups=1)`` =
GroupNorm with one group = cvnets' ``layer_norm_2d``, the fallback written in the official ``_make_affnet_layer``),
``act`` (``silu`` = swish, the ml-cvnets MobileViT setting; used in every conv unit), ``head`` (``avg``). The conv
units keep BatchNorm (``conv_norm="bn"``).

Choices (facts we could not find)
---------------------------------
- AFFNet's training configs are not in the repository (only links to Google Drive). Activation: swish (the
  MobileViT configs the code derives from). Block norm: ``layer_norm_2d`` (GroupNorm(1, C), the code's fallback);
  the argparse default ``layer_norm`` (per-pixel channel LayerNorm, our ``ln2d``) is ``norm="ln2d"`` -- same
  parameter count. Mask activation of ``aff``: the model's ``act`` (the official code ties both to the one
  network-wide activation); ``mixer="aff(mask_act=relu)"`` sets another.
- Init (ml-cvnets defaults): Kaiming-normal fan-out convs, norms 1/0, classifier normal(0, 0.01) with zero bias;
  the ``aff`` mask weights keep their normal(0, 0.02) init. ``drop_rate`` (classifier dropout) defaults to 0 and
  ``drop_path_rate`` (linear over the AFF layers) to 0; the official Block has no drop path.
- Small inputs (``stem="small"``, 28-32 px): the stem and layer2 get stride 1 (MobileNetV2 CIFAR practice, as in
  :mod:`blockzoo.models.mobilenetv2`): 32 px -> 32, 32, 32, 16, 8, 4; same parameters as the ImageNet model.
  Registered: ``affnet_et_small`` (AFFNet-ET widths, 10 classes, 32 px).

The paper's and our exact numbers are in the registry (``blockzoo info <model>``, ``docs/catalog.md``). Paper:
README and paper table, 256 px, ImageNet-1K. Params exact (asserted in ``tests/models/test_affnet.py``); MACs with
``blockzoo.profile.count_macs`` at 256 px: convs, linears, the mask generator's matmuls and the FFTs under
``FFT_CONVENTION``.

**The paper's figures are printed to 0.1M / 0.1G and our exact counts do not meet a 0.5% parameter tolerance
against them.** What matches: every parameter count lies in the interval the printed figure *truncates* from
([1.4, 1.5)M, [2.6, 2.7)M, [5.5, 5.6)M) and every MAC count *rounds* to the printed figure (0.36 -> 0.4, 0.79 ->
0.8, 1.46 -> 1.5); within 3% for AFFNet and AFFNet-T MACs, not for AFFNet-ET (-10%, a rounding artefact of a
0.4G figure). The structure follows the official code (every layer width, expansion, fusion conv and norm above);
ml-cvnets' own profiler (``profile_model``, which the authors' code prints) reports fewer parameters than
``sum(p.numel())`` because ``Block.profile_module`` skips ``norm1``/``norm2`` and the filter reports only its C^2/2
mask weights (no biases): 8C fewer per AFF layer, i.e. 1,428,456 / 2,642,968 / 5,550,776 -- still +2.0 / +1.7 /
+0.9% over the printed figures. We record the exact ``sum(p.numel())`` counts.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from blockzoo.blocks.common.drop import drop_path_schedule, make_drop_path
from blockzoo.blocks.common.inverted_residual import InvertedResidual
from blockzoo.blocks.common.layers import ConvNormAct, make_norm
from blockzoo.errors import ConfigError
from blockzoo.models.base import Backbone, init_weights, out_size, parse_once, to_size
from blockzoo.papers import AFFNET
from blockzoo.registry import Claim, build_slot, parse_slot_value, register_model

__all__ = ["AFFLayer", "AFFBlock", "AFFNet", "AFFNET_CONFIGS"]


class AFFLayer(nn.Module):
    """Official ``Block``: ``x + DP(mixer(norm2(MV2(norm1(x)))))`` with an MV2 channel mixer of expansion ``ffn_ratio``.
    """

    def __init__(self, dim: int, mixer: nn.Module, *, norm: Any = "gn(groups=1)", act: Any = "silu",
                 conv_norm: Any = "bn", ffn_ratio: float = 2.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = make_norm(norm, dim)
        self.ffn = InvertedResidual(dim, dim, 1, ffn_ratio, norm=conv_norm, act=act)
        self.norm2 = make_norm(norm, dim)
        self.mixer = mixer
        self.drop_path = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.mixer(self.norm2(self.ffn(self.norm1(x)))))


class AFFBlock(nn.Module):
    """Official ``AFFBlock``: ``n`` :class:`AFFLayer` -> norm -> 1x1 conv + BN; then, unless ``fusion=False``,
    ``act(BN(Conv1x1(cat(x, y))))``."""

    def __init__(self, dim: int, layers: list[nn.Module], *, norm: Any = "gn(groups=1)", act: Any = "silu",
                 conv_norm: Any = "bn", fusion: bool = True):
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.norm = make_norm(norm, dim)
        self.proj = ConvNormAct(dim, dim, 1, norm=conv_norm, act=None)
        self.fusion = ConvNormAct(2 * dim, dim, 1, norm=conv_norm, act=act) if fusion else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(self.norm(self.layers(x)))
        return self.fusion(torch.cat((x, y), dim=1)) if self.fusion is not None else y


# name: (t, (c1, c2, c3, c4, c5), AFF layers per AFF stage, fusion per AFF stage)
AFFNET_CONFIGS: dict[str, tuple[float, tuple[int, ...], tuple[int, int, int], tuple[bool, bool, bool]]] = {
    "xx_small": (2, (32, 48, 64, 104, 144), (2, 4, 3), (True, True, True)),
    "x_small": (4, (32, 48, 96, 160, 192), (2, 4, 3), (True, True, True)),
    "small": (4, (32, 64, 128, 256, 320), (2, 4, 3), (True, True, True)),
}


def _tie_mask_act(value: Any, act: Any) -> Any:
    """The official AFFNet gives the AFF mask the network's one activation: an ``aff`` mixer without its own
    ``mask_act`` gets the model's ``act``."""
    name, kw = parse_slot_value(value)
    return (name, {**kw, "mask_act": act}) if name == "aff" and "mask_act" not in kw else value


SLOTS = {"mixer": "aff", "norm": "gn(groups=1)", "act": "silu", "head": "avg"}


class AFFNet(Backbone):
    """AFFNet backbone; see the module docstring.

    Args:
        mode: official configuration name: ``"xx_small"`` (AFFNet-ET), ``"x_small"`` (AFFNet-T), ``"small"`` (AFFNet).
        stem: ``"imagenet"`` (3x3/2 stem, paper strides) or ``"small"`` (stem and layer2 at stride 1, 28-32 px).
        img_size: input size (tracked so that size-limited mixers fail at build time).
        mixer / norm / act / head: slots (``aff``, ``gn(groups=1)``, ``silu``, ``avg``); ``conv_norm``: the norm of
            the conv units (``bn``).
        ffn_ratio: expansion of the AFF layers' MV2 channel mixer (official ffn_dim / dim = 2).
        drop_rate: classifier dropout; drop_path_rate: stochastic depth over the AFF layers (linear).
    """

    _final_path = ("conv_head",)

    def __init__(self, mode: str = "small", *, num_classes: int = 1000, in_chans: int = 3, stem: str = "imagenet",
                 img_size: int | tuple[int, int] | None = None, mixer: Any = SLOTS["mixer"],
                 norm: Any = SLOTS["norm"], act: Any = SLOTS["act"], head: Any = SLOTS["head"], conv_norm: Any = "bn",
                 ffn_ratio: float = 2.0,
                 drop_rate: float = 0.0, drop_path_rate: float = 0.0, stem_channels: int = 16,
                 model_name: str = "affnet"):
        super().__init__()
        norm, act, conv_norm = parse_once(norm), parse_once(act), parse_once(conv_norm)
        if mode not in AFFNET_CONFIGS:
            raise ConfigError(f"unknown AFFNet mode {mode!r}; choose one of {', '.join(AFFNET_CONFIGS)}")
        if stem not in ("imagenet", "small"):
            raise ConfigError(f"stem must be 'imagenet' (256 px, paper strides) or 'small' (28-32 px inputs), "
                              f"got {stem!r}")
        t, widths, n_layers, fusion = AFFNET_CONFIGS[mode]
        self.model_name, self.in_chans, self.mode, self.stem_type = model_name, in_chans, mode, stem
        self.num_stages = 2 + len(n_layers)   # model.stages; the mixer slot is in stages 2-4
        small = stem == "small"
        feat = to_size(img_size)
        s0 = 1 if small else 2
        self.stem = ConvNormAct(in_chans, stem_channels, 3, s0, norm=conv_norm, act=act)
        feat = self.track(feat, s0)
        dpr = iter(drop_path_schedule(n_layers, drop_path_rate))

        stages: list[nn.Module] = []
        feature_sizes = []
        # layer1 (1 MV2, stride 1) and layer2 (3 MV2, first stride 2; 1 for small inputs)
        c_in = stem_channels
        for si, (c, n, s) in enumerate(((widths[0], 1, 1), (widths[1], 3, 1 if small else 2))):
            blocks = []
            self.begin_stage(si, f"stages.{si}", self.track(feat, s))
            for i in range(n):
                blocks.append(InvertedResidual(c_in, c, s if i == 0 else 1, t, norm=conv_norm, act=act))
                feat, c_in = out_size(feat, s if i == 0 else 1), c
            stages.append(nn.Sequential(*blocks))
            feature_sizes.append(feat)
            self.add_feature(f"stages.{si}", c)
        # layer3..5: MV2 stride 2 -> AFFBlock
        for k, (c, n, fuse) in enumerate(zip(widths[2:], n_layers, fusion)):
            si = k + 2
            down = InvertedResidual(c_in, c, 2, t, norm=conv_norm, act=act)
            feat, c_in = self.track(feat, 2), c
            self.begin_stage(si, f"stages.{si}", feat)
            layers = [AFFLayer(c, build_slot("mixer", _tie_mask_act(self.slot_value("mixer", mixer, si, j), act), c,
                                             self.ctx(f"stages.{si}.1.layers.{j}.mixer", feat)),
                               norm=norm, act=act, conv_norm=conv_norm, ffn_ratio=ffn_ratio, drop_path=next(dpr))
                      for j in range(n)]
            stages.append(nn.Sequential(down, AFFBlock(c, layers, norm=norm, act=act, conv_norm=conv_norm,
                                                       fusion=fuse)))
            feature_sizes.append(feat)
            self.add_feature(f"stages.{si}", c)
        self.stages = nn.Sequential(*stages)
        self.feature_sizes = feature_sizes
        head_ch = min(4 * c_in, 960)
        self.conv_head = ConvNormAct(c_in, head_ch, 1, norm=conv_norm, act=act)
        self.init_head(head_ch, num_classes, head, drop_rate)
        init_weights(self)
        if isinstance(self.fc, nn.Linear):   # ml-cvnets default linear init: normal(0, 0.01), zero bias
            nn.init.normal_(self.fc.weight, 0.0, 0.01)
            nn.init.zeros_(self.fc.bias)

    def _reset_classifier(self, num_classes: int, head: Any) -> None:
        super()._reset_classifier(num_classes, head)
        if isinstance(self.fc, nn.Linear):
            nn.init.normal_(self.fc.weight, 0.0, 0.01)
            nn.init.zeros_(self.fc.bias)


# ------------------------------------------------------------------------------------------------- registrations
_T = "tests/models/test_affnet.py::"
_NOTES = ("stem='small' puts the stem and layer2 at stride 1 for 28-32 px inputs; the AFF layers' norm "
          "gn(groups=1) is cvnets' layer_norm_2d; conv_norm is the norm of the conv units.")

# name: (mode, paper name, paper params, paper FLOPs (MACs) at 256 px, exact params (1000 classes), MACs at 256 px)
PAPER = {
    "affnet_et": ("xx_small", "AFFNet-ET", 1.4e6, 0.4e9, 1_436_264, 359_844_608),
    "affnet_t": ("x_small", "AFFNet-T", 2.6e6, 0.8e9, 2_654_232, 791_880_704),
    "affnet": ("small", "AFFNet", 5.5e6, 1.5e9, 5_568_696, 1_461_611_008),
}


def _entry(name: str, mode: str, small: bool = False):
    def fn(*, num_classes: int = 10 if small else 1000, in_chans: int = 3, **kw: Any) -> AFFNet:
        if small:
            kw.setdefault("stem", "small")
        kw.setdefault("img_size", 32 if kw.get("stem") == "small" else 256)
        return AFFNet(mode, num_classes=num_classes, in_chans=in_chans, model_name=name, **kw)
    fn.__name__ = name
    fn.__doc__ = f"AFFNet ({name}, official mode {mode!r})" + (" for 28-32 px inputs" if small else "")
    return fn


def _paper_spec(name: str) -> dict[str, Any]:
    """register_model arguments of a paper AFFNet (numbers from the table above)."""
    _, pname, pp, pm, params, macs = PAPER[name]
    return dict(
        family="affnet", slots=SLOTS, paper=AFFNET, input_size=(3, 256, 256), paper_params=int(pp), paper_macs=pm,
        reference={"params_1000cls": params, "macs_256": macs},
        summary=f"{pname}: MobileViT-like MV2 stages + AFF blocks (adaptive frequency filter token mixer), 256 px",
        claims=(Claim(f"{params:,} parameters (paper {pp / 1e6:.1f}M)", _T + "test_affnet_param_counts"),
                Claim(f"{pm / 1e9:.1f} GFLOPs (MACs) at 256 px (ours {macs / 1e9:.3f}G)", _T + "test_affnet_macs_256")),
        notes=_NOTES)


register_model("affnet_et", **_paper_spec("affnet_et"))(_entry("affnet_et", "xx_small"))
register_model("affnet_t", **_paper_spec("affnet_t"))(_entry("affnet_t", "x_small"))
register_model("affnet", **_paper_spec("affnet"))(_entry("affnet", "small"))

_SMALL_PARAMS = 865_034
register_model(
    "affnet_et_small", family="affnet", slots=SLOTS, paper=AFFNET, input_size=(3, 32, 32), num_classes=10,
    reference={"params_3ch_10cls": _SMALL_PARAMS},
    summary="AFFNet-ET for 28-32 px inputs (stem and layer2 at stride 1: 32 px -> 32, 32, 16, 8, 4)",
    claims=(Claim(f"{_SMALL_PARAMS:,} parameters (10 classes)", _T + "test_affnet_param_counts"),),
    notes=_NOTES,
)(_entry("affnet_et_small", "xx_small", small=True))
