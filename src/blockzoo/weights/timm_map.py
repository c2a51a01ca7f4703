"""State-dict key maps between blockzoo and timm for the architectures the two share.

:data:`TIMM_MODELS` is the one record of which registered blockzoo model is which timm model (and which of timm's
published weights ``pretrained=True`` loads); the per-family rules below rename blockzoo's state-dict keys into
timm's. Each map was written from timm's module structure (``timm/models/resnet.py``, ``efficientnet.py``,
``convnext.py``, ``inception_next.py``, ``metaformer.py``, ``sknet.py``) and checked, with timm's code, to give the
same outputs as timm for the same weights (``tests/weights/timm_layouts/`` holds timm's keys, shapes and outputs).

Layout differences handled besides the names: blockzoo's Linear MLPs / SE gates where timm uses 1x1 convolutions
(``(out, in)`` vs ``(out, in, 1, 1)``: the same numbers, reshaped), and blockzoo's flat MobileNetV2 ``blocks.<i>``
against timm's ``blocks.<stage>.<block>``. Layer-scale vectors (timm ``gamma`` / ``layer_scale<k>.scale``) are
``ls.gamma`` / ``ls<k>.gamma`` in blockzoo.

Registered models whose architecture differs from timm's counterpart and are therefore not listed: ``seresnet18`` /
``seresnet34`` (timm rounds the SE width to a multiple of 8: 8 channels where the paper's reduction 16 gives 4), the
``*_small`` CIFAR-stem variants, and the CIFAR ResNets / WRNs (timm has no counterpart). The ECA-ResNets are
timm's ``ResNet(block, layers, block_args=dict(attn_layer="eca"))`` exactly, but timm registers no such model (its
``ecaresnet*d`` / ``*t`` use deep stems), so they are listed without a timm name or weights.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from blockzoo.errors import CheckpointError, ConfigError

__all__ = ["TimmModel", "TIMM_MODELS", "timm_counterpart", "timm_key_map", "from_timm_state_dict",
           "to_timm_state_dict"]

Rule = tuple[str, "str | Callable[[re.Match[str]], str]"]


def _shift(group: int, prefix: str) -> Callable[[re.Match[str]], str]:
    """A replacement giving ``prefix`` + (the matched index + 1): blockzoo's ``layers.0`` is timm's ``layer1``."""
    return lambda m: f"{prefix}{int(m.group(group)) + 1}."


_RESNET_COMMON: list[Rule] = [
    (r"^stem\.0\.", "conv1."), (r"^stem\.1\.", "bn1."),
    (r"^layers\.(\d+)\.", _shift(1, "layer")),
    (r"\.shortcut\.", ".downsample."),
]
#: timm ``ResNet`` with ``BasicBlock`` / ``Bottleneck``; the conv-slot unit is ``conv<k>.conv`` + ``conv<k>.norm``
#: in blockzoo, timm's plain ``conv<k>`` + ``bn<k>``; the attention slot is timm's ``se`` (SE and ECA alike).
_RESNET: list[Rule] = _RESNET_COMMON + [
    (r"\.conv(\d)\.conv\.", r".conv\1."), (r"\.conv(\d)\.norm\.", r".bn\1."), (r"\.attn\.", ".se."),
]
#: timm ``skresnext50_32x4d``: ``SelectiveKernelBottleneck`` (``ConvNormAct`` units ``conv<k>.conv`` / ``.bn``, the
#: selective-kernel conv's ``paths`` and ``attn``).
_SKNET: list[Rule] = _RESNET_COMMON + [
    (r"\.conv([13])\.weight$", r".conv\1.conv.weight"), (r"\.bn([13])\.", r".conv\1.bn."),
    (r"\.conv2\.branches\.(\d+)\.norm\.", r".conv2.paths.\1.bn."), (r"\.conv2\.branches\.", ".conv2.paths."),
    (r"\.conv2\.fc_(reduce|select)\.", r".conv2.attn.fc_\1."), (r"\.conv2\.fc_norm\.", ".conv2.attn.bn."),
]
#: timm ``ConvNeXt`` (``conv_mlp=True`` for atto..nano: 1x1-conv MLP weights, reshaped).
_CONVNEXT: list[Rule] = [
    (r"\.mixer\.", ".conv_dw."), (r"\.ls\.gamma$", ".gamma"), (r"^head_pre\.norm\.", "head.norm."),
    (r"^fc\.", "head.fc."),
]
#: timm ``MetaNeXt`` (InceptionNeXt) with its ``MlpClassifierHead`` (fc1 -> act -> norm -> fc2).
_INCEPTIONNEXT: list[Rule] = [
    (r"\.mixer\.", ".token_mixer."), (r"\.ls\.gamma$", ".gamma"), (r"^head_pre\.", "head."), (r"^fc\.", "head.fc2."),
]
#: timm ``MetaFormer`` (``poolformer_*``: the PoolFormer-v1 configuration).
_POOLFORMER: list[Rule] = [
    (r"^stem\.0\.", "stem.conv."), (r"^stages\.(\d+)\.downsample\.0\.", r"stages.\1.downsample.conv."),
    (r"\.ls(\d)\.gamma$", r".layer_scale\1.scale"), (r"^norm_pre\.", "head.norm."), (r"^fc\.", "head.fc."),
]
#: timm ``VisionTransformer`` / ``VisionTransformerDistilled`` (the same module names; timm's classifier ``head``).
_VIT: list[Rule] = [(r"^fc\.", "head.")]
#: timm ``ConVit`` (the same module names; timm's classifier ``head``).
_CONVIT: list[Rule] = [(r"^fc\.", "head.")]
#: timm ``SwinTransformer`` / ``SwinTransformerV2`` (``models/common/swin.py`` keeps timm's names below the top level).
_SWIN: list[Rule] = [(r"^stem\.", "patch_embed."), (r"^stages\.", "layers."), (r"^fc\.", "head.fc.")]

#: timm ``ByobNet`` with ``SelfAttnBlock`` + ``HaloAttn`` (``halonet_h1``): ``ConvNormAct`` units ``<unit>.conv`` /
#: ``.bn``, the halo layer ``self_attn`` (same names inside) and its ``post_attn`` norm.
_HALONET: list[Rule] = [
    (r"\.conv([13])\.conv\.", r".conv\1_1x1.conv."), (r"\.conv([13])\.norm\.", r".conv\1_1x1.bn."),
    (r"\.conv2\.attn\.", ".self_attn."), (r"\.conv2\.norm\.", ".post_attn."),
    (r"\.shortcut\.0\.", ".shortcut.conv."), (r"\.shortcut\.1\.", ".shortcut.bn."), (r"^fc\.", "head.fc."),
    (r"^stem\.0\.", "stem.conv1.conv."), (r"^stem\.1\.", "stem.conv1.bn."),   # after the block rules
]
#: timm ``InceptionV4``: blockzoo's named stem units and ``stages.<s>.reduction`` / ``.blocks.<j>`` are timm's flat
#: ``features.<i>`` (6 stem units, 4 Inception-A, Reduction-A, 7 B, Reduction-B, 3 C); conv units' ``norm`` is ``bn``.
_V4_STEM = ("conv2d_1a", "conv2d_2a", "conv2d_2b", "mixed_3a", "mixed_4a", "mixed_5a")
_V4_STAGE_START = {("0", "blocks"): 6, ("1", "reduction"): 10, ("1", "blocks"): 11, ("2", "reduction"): 18,
                   ("2", "blocks"): 19}
_INCEPTION_V4: list[Rule] = [
    (r"^stem\.(\w+?)\.", lambda m: f"features.{_V4_STEM.index(m.group(1))}."),
    (r"^stages\.(\d)\.(reduction|blocks)\.(?:(\d+)\.)?",
     lambda m: f"features.{_V4_STAGE_START[m.group(1), m.group(2)] + int(m.group(3) or 0)}."),
    (r"\.norm\.", ".bn."), (r"^fc\.", "last_linear."),
]
#: timm ``InceptionResnetV2``: the stem units have timm's names; the stages are timm's ``repeat`` / ``mixed_6a`` /
#: ``repeat_1`` / ``mixed_7a`` / ``repeat_2`` / ``block8`` / ``conv2d_7b``; a block's branches sit directly on timm's
#: block, whose linear 1x1 projection is ``conv2d``.
_IR_STAGES = {"0.blocks": "repeat", "1.reduction": "mixed_6a", "1.blocks": "repeat_1", "2.reduction": "mixed_7a",
              "2.blocks": "repeat_2", "2.final": "block8", "2.conv_head": "conv2d_7b"}
_INCEPTION_RESNET_V2: list[Rule] = [
    (r"^stem\.", ""), (r"^stages\.(\d\.\w+)\.", lambda m: f"{_IR_STAGES[m.group(1)]}."), (r"\.mixed\.", "."),
    (r"\.proj\.", ".conv2d."), (r"\.norm\.", ".bn."), (r"^fc\.", "classif."),
]
#: timm ``NASNetALarge`` (``models/nasnet.py``): blockzoo's flat ``cells.<i>`` are timm's named cells (two stem cells,
#: then three stacks of six normal cells with a reduction cell between them); the factorized reduction of a cell's
#: ``prev`` (``reduce_prev``) has its modules directly on timm's cell; the classifier is ``last_linear``.
_NASNET_LARGE_CELLS = ("cell_stem_0", "cell_stem_1", *(f"cell_{i}" for i in range(6)), "reduction_cell_0",
                       *(f"cell_{i}" for i in range(6, 12)), "reduction_cell_1", *(f"cell_{i}" for i in range(12, 18)))
_NASNET_LARGE: list[Rule] = [
    (r"^cells\.(\d+)\.", lambda m: f"{_NASNET_LARGE_CELLS[int(m.group(1))]}."), (r"\.reduce_prev\.", "."),
    (r"^fc\.", "last_linear."),
]
#: blocks per stage of MobileNetV2 (the paper's Table 2, n = 1, 2, 3, 4, 3, 3, 1; timm's ``arch_def``).
_MBV2_DEPTHS = (1, 2, 3, 4, 3, 3, 1)
#: inside a block: blockzoo ``<conv>.conv`` / ``<conv>.norm`` -> timm; the first block is timm's
#: ``DepthwiseSeparableConv`` (no expansion: ``conv_dw``, ``bn1``, ``conv_pw``, ``bn2``), the others its
#: ``InvertedResidual`` (``conv_pw``, ``bn1``, ``conv_dw``, ``bn2``, ``conv_pwl``, ``bn3``).
_MBV2_FIRST = {"conv_dw.conv": "conv_dw", "conv_dw.norm": "bn1", "conv_pwl.conv": "conv_pw", "conv_pwl.norm": "bn2"}
_MBV2_BLOCK = {"conv_pw.conv": "conv_pw", "conv_pw.norm": "bn1", "conv_dw.conv": "conv_dw", "conv_dw.norm": "bn2",
               "conv_pwl.conv": "conv_pwl", "conv_pwl.norm": "bn3"}


def _mbv2_block(m: re.Match[str]) -> str:
    index, unit, rest = int(m.group(1)), m.group(2), m.group(3)
    stage = 0
    while stage < len(_MBV2_DEPTHS) and index >= _MBV2_DEPTHS[stage]:
        index -= _MBV2_DEPTHS[stage]
        stage += 1
    table = _MBV2_FIRST if stage == 0 else _MBV2_BLOCK
    return f"blocks.{stage}.{index}.{table.get(unit, unit)}.{rest}"


#: timm ``EfficientNet`` built by ``_gen_mobilenet_v2``.
_MOBILENETV2: list[Rule] = [
    (r"^stem\.conv\.", "conv_stem."), (r"^stem\.norm\.", "bn1."),
    (r"^blocks\.(\d+)\.(conv_\w+\.(?:conv|norm))\.(.*)$", _mbv2_block),
    (r"^conv_head\.conv\.", "conv_head."), (r"^conv_head\.norm\.", "bn2."), (r"^fc\.", "classifier."),
]
#: timm ``GhostNet`` (v1 and v2): the Ghost modules' ``ConvNormAct`` units are timm's ``nn.Sequential``s
#: (``primary_conv.0`` / ``.1``), the DFC gate is timm's ``short_conv.0-5``, the SE timm's ``se.conv_reduce`` /
#: ``conv_expand``; blockzoo's ``conv_last`` is timm's ``blocks.9.0`` and ``head_pre.0`` its ``conv_head``.
_DFC_ORDER = ("conv", "bn", "conv_h", "bn_h", "conv_v", "bn_v")
_GHOSTNET: list[Rule] = [
    (r"\.(primary_conv|cheap_operation)\.(conv|norm)\.", lambda m: f".{m.group(1)}.{int(m.group(2) == 'norm')}."),
    (r"\.dfc\.(\w+)\.", lambda m: f".short_conv.{_DFC_ORDER.index(m.group(1))}."),
    (r"\.conv_dw\.conv\.", ".conv_dw."), (r"\.conv_dw\.norm\.", ".bn_dw."),
    (r"\.attn\.fc1\.", ".se.conv_reduce."), (r"\.attn\.fc2\.", ".se.conv_expand."),
    (r"^stem\.conv\.", "conv_stem."), (r"^stem\.norm\.", "bn1."),
    (r"^conv_last\.conv\.", "blocks.9.0.conv."), (r"^conv_last\.norm\.", "blocks.9.0.bn1."),
    (r"^head_pre\.0\.", "conv_head."), (r"^fc\.", "classifier."),
]


@dataclass(frozen=True)
class TimmModel:
    """A registered blockzoo model's timm counterpart: timm's model name (``None``: timm has the architecture but
    registers no model for it), the tag of the published weights ``pretrained=True`` loads (``None``: timm publishes
    none; the hub repository is ``timm/<name>.<tag>``), the key-map rules of the family and ``conv1x1``, a pattern of
    the timm keys that are 1x1-conv weights where blockzoo has a Linear."""

    name: str | None
    tag: str | None
    rules: tuple[Rule, ...]
    conv1x1: str | None = None

    @property
    def hub_id(self) -> str | None:
        return f"timm/{self.name}.{self.tag}" if self.name and self.tag else None


def _family(rules: list[Rule], conv1x1: str | None = None,
            **models: tuple[str | None, str | None]) -> dict[str, TimmModel]:
    return {bz: TimmModel(name, tag, tuple(rules), conv1x1) for bz, (name, tag) in models.items()}


_MLP_CONV = r"\.mlp\.fc[12]\.weight$"
#: blockzoo model name -> its timm counterpart (the ONE place this is recorded).
TIMM_MODELS: dict[str, TimmModel] = {
    **_family(_RESNET, r"\.se\.fc[12]\.weight$",
              resnet18=("resnet18", "a1_in1k"), resnet34=("resnet34", "a1_in1k"), resnet50=("resnet50", "a1_in1k"),
              resnet101=("resnet101", "a1_in1k"), seresnet50=("seresnet50", "a1_in1k"),
              seresnet101=("seresnet101", None), ecaresnet18=(None, None), ecaresnet34=(None, None),
              ecaresnet50=(None, None), ecaresnet101=(None, None)),
    **_family(_SKNET, sknet50=("skresnext50_32x4d", "ra_in1k")),
    **_family(_MOBILENETV2, mobilenetv2_035=("mobilenetv2_035", None), mobilenetv2_050=("mobilenetv2_050", "lamb_in1k"),
              mobilenetv2_075=("mobilenetv2_075", None), mobilenetv2_100=("mobilenetv2_100", "ra_in1k"),
              mobilenetv2_140=("mobilenetv2_140", "ra_in1k")),
    **_family(_CONVNEXT, _MLP_CONV,   # timm's conv_mlp=True configurations
              convnext_atto=("convnext_atto", "d2_in1k"), convnext_femto=("convnext_femto", "d1_in1k"),
              convnext_pico=("convnext_pico", "d1_in1k"), convnext_nano=("convnext_nano", "d1h_in1k")),
    **_family(_CONVNEXT, convnext_tiny=("convnext_tiny", "fb_in1k"), convnext_small=("convnext_small", "fb_in1k")),
    **_family(_INCEPTIONNEXT, _MLP_CONV, inception_next_atto=("inception_next_atto", "sail_in1k"),
              inception_next_tiny=("inception_next_tiny", "sail_in1k"),
              inception_next_small=("inception_next_small", "sail_in1k")),
    **_family(_POOLFORMER, _MLP_CONV, poolformer_s12=("poolformer_s12", "sail_in1k")),
    **_family(_HALONET, halonet_h1=("halonet_h1", None)),
    **_family(_SWIN, swin_tiny_patch4_window7_224=("swin_tiny_patch4_window7_224", "ms_in1k"),
              swin_small_patch4_window7_224=("swin_small_patch4_window7_224", "ms_in1k"),
              swin_base_patch4_window7_224=("swin_base_patch4_window7_224", "ms_in1k"),
              swinv2_tiny_window8_256=("swinv2_tiny_window8_256", "ms_in1k"),
              swinv2_tiny_window16_256=("swinv2_tiny_window16_256", "ms_in1k"),
              swinv2_small_window8_256=("swinv2_small_window8_256", "ms_in1k"),
              swin_nano_patch2_window4_32=(None, None), swinv2_nano_patch2_window4_32=(None, None)),
    # timm's vit_* weights (AugReg) expect mean = std = 0.5, not the ImageNet statistics pretrained_cfg records:
    # the published weights of this architecture are loaded through the deit_* names
    **_family(_VIT, vit_tiny_patch16_224=("vit_tiny_patch16_224", None),
              vit_small_patch16_224=("vit_small_patch16_224", None),
              vit_base_patch16_224=("vit_base_patch16_224", None),
              deit_tiny_patch16_224=("deit_tiny_patch16_224", "fb_in1k"),
              deit_small_patch16_224=("deit_small_patch16_224", "fb_in1k"),
              deit_base_patch16_224=("deit_base_patch16_224", "fb_in1k"),
              deit_tiny_distilled_patch16_224=("deit_tiny_distilled_patch16_224", "fb_in1k")),
    **_family(_CONVIT, convit_tiny=("convit_tiny", "fb_in1k"), convit_small=("convit_small", "fb_in1k"),
              convit_base=("convit_base", "fb_in1k")),
    **_family(_INCEPTION_V4, inception_v4=("inception_v4", "tf_in1k")),
    **_family(_INCEPTION_RESNET_V2, inception_resnet_v2=("inception_resnet_v2", "tf_in1k")),
    **_family(_NASNET_LARGE, nasnetalarge=("nasnetalarge", "tf_in1k")),
    **_family(_GHOSTNET, r"(\.se\.conv_(reduce|expand)|^conv_head)\.weight$",
              ghostnet_050=("ghostnet_050", None), ghostnet_100=("ghostnet_100", "in1k"),
              ghostnet_130=("ghostnet_130", None), ghostnetv2_100=("ghostnetv2_100", "in1k"),
              ghostnetv2_130=("ghostnetv2_130", "in1k"), ghostnetv2_160=("ghostnetv2_160", "in1k")),
}


def _model_name(model: nn.Module, name: str | None) -> str:
    name = name or getattr(model, "model_name", None)
    if not isinstance(name, str):
        raise ConfigError(f"cannot tell which registered model this {type(model).__name__} is; pass name= "
                          f"(one of {', '.join(sorted(TIMM_MODELS))})")
    return name


def timm_counterpart(name: str) -> TimmModel:
    """The :class:`TimmModel` of registered model ``name``; :class:`ConfigError` if blockzoo shares none with timm."""
    if name not in TIMM_MODELS:
        raise ConfigError(f"{name!r} has no timm counterpart (blockzoo reads timm's weights for "
                          f"{', '.join(sorted(TIMM_MODELS))}); load a blockzoo weights file with checkpoint_path= "
                          f"instead")
    return TIMM_MODELS[name]


def _timm_key(key: str, rules: tuple[Rule, ...]) -> str:
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def timm_key_map(model: nn.Module, name: str | None = None) -> dict[str, str]:
    """``{blockzoo key: timm key}`` for every entry of ``model.state_dict()`` (``name``: the registered model it
    was built as; default ``model.model_name``, which :func:`blockzoo.create_model` sets)."""
    name = _model_name(model, name)
    rules = timm_counterpart(name).rules
    out = {k: _timm_key(k, rules) for k in model.state_dict()}
    if len(set(out.values())) != len(out):   # two blockzoo tensors onto one timm key: a rule is wrong
        raise AssertionError(f"the timm key map of {name!r} is not one-to-one")
    return out


def _without_trailing_ones(shape: torch.Size) -> tuple[int, ...]:
    dims = list(shape)
    while dims and dims[-1] == 1:
        dims.pop()
    return tuple(dims)


def _fit(t: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
    """``t`` in ``shape``: as is, or reshaped where the two differ only by trailing size-1 dimensions (a Linear
    weight ``(out, in)`` against a 1x1 conv's ``(out, in, 1, 1)``); ``None`` if it does not fit."""
    if t.shape == shape:
        return t
    return t.reshape(shape) if _without_trailing_ones(t.shape) == _without_trailing_ones(shape) else None


#: the classifier of every blockzoo backbone (``Backbone.get_classifier()`` is ``model.fc``)
_CLASSIFIER = ("fc.weight", "fc.bias")


def from_timm_state_dict(model: nn.Module, state: dict[str, torch.Tensor], *, name: str | None = None,
                         source: str = "the state dict", new_classifier: bool = False) -> dict[str, torch.Tensor]:
    """``state`` (in timm's key layout) renamed and reshaped to ``model``'s own keys, checked strictly.

    ``new_classifier=True`` leaves timm's classifier out and keeps the model's own (freshly initialised, any
    ``num_classes``, 0 included), as timm's ``pretrained=True`` does for another number of classes.
    Raises :class:`CheckpointError` naming the first timm key that is missing (with the shape expected), has the
    wrong shape or is not used by the model. A missing BatchNorm ``num_batches_tracked`` (older timm files) keeps
    the model's own counter."""
    name = _model_name(model, name)
    own = model.state_dict()
    keys = timm_key_map(model, name)
    if new_classifier:
        rules = timm_counterpart(name).rules
        theirs = {_timm_key(k, rules) for k in _CLASSIFIER}
        state = {**{k: v for k, v in state.items() if k not in theirs},
                 **{keys[k]: own[k] for k in _CLASSIFIER if k in own}}
    fix = (f"pass the weights of timm's {timm_counterpart(name).name or name} built with the same num_classes / "
           f"in_chans (for another number of classes: build with the file's num_classes, load, then "
           f"model.reset_classifier(n))")
    out: dict[str, torch.Tensor] = {}
    for k, tk in keys.items():
        if tk not in state:
            if tk.endswith("num_batches_tracked"):
                out[k] = own[k]
                continue
            raise CheckpointError(f"{source} does not fit blockzoo's {name}: timm key {tk!r} is missing (expected "
                                  f"shape {tuple(own[k].shape)}). Fix: {fix}")
        t = _fit(state[tk], own[k].shape)
        if t is None:
            raise CheckpointError(f"{source} does not fit blockzoo's {name}: timm key {tk!r} has shape "
                                  f"{tuple(state[tk].shape)}, expected {tuple(own[k].shape)}. Fix: {fix}")
        out[k] = t
    used = set(keys.values())
    unused = [tk for tk in state if tk not in used]
    if unused:
        raise CheckpointError(f"{source} does not fit blockzoo's {name}: unexpected timm key {unused[0]!r}"
                              f"{f' (and {len(unused) - 1} more)' if len(unused) > 1 else ''}. Fix: {fix}")
    return out


def to_timm_state_dict(model: nn.Module, name: str | None = None) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` in timm's key layout and tensor shapes (Linear weights get the trailing 1x1 of timm's
    conv where timm has one), for ``timm.create_model(<timm name>).load_state_dict(...)``."""
    name = _model_name(model, name)
    conv1x1 = timm_counterpart(name).conv1x1
    keys = timm_key_map(model, name)
    out = {}
    for k, v in model.state_dict().items():
        tk = keys[k]
        out[tk] = v.reshape(*v.shape, 1, 1) if conv1x1 and v.ndim == 2 and re.search(conv1x1, tk) else v
    return out
