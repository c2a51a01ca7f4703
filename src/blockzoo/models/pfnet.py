"""Parameter-free spatial operators as backbones (Han et al., "Learning Features with Parameter-Free Layers",
ICLR 2022, arXiv:2202.02777 [S008]; code: naver-ai/PfLayer) and the PoolFormer baseline (Yu et al., "MetaFormer Is
Actually What You Need for Vision", CVPR 2022, arXiv:2111.11418).

- ``pf_resnet50_max`` -- the paper's **R50-max**: ResNet-50 (v1.5, stride on the middle unit) whose 3x3 conv -> BN ->
  ReLU units are replaced by ``MaxPool2d(3, stride, 1)`` (``conv="pf_maxpool"``; official ``MaxBottleneck``).
- ``pf_resnet50_hybrid`` -- **R50-hybrid** (official ``EffBottleneck``): max pool in the stride-1 blocks; in the three
  stride-2 blocks a 2x2 average pool followed by the 3x3 conv -> BN -> ReLU (``conv="pf_hybrid"``).
  Both reuse :class:`blockzoo.models.common.resnet.ResNet` (7x7/2 stem + max pool, projection shortcuts, no
  zero-init of the last BN, as in the official code); ``stem="small"`` (3x3/1, no max pool) for 28-32 px inputs.
- ``pf_convnext_atto`` / ``pf_convnext_tiny`` -- ConvNeXt with the 7x7 depthwise conv replaced by a 3x3 stride-1 max
  pool (``mixer="maxpool"``): the paper's recipe (replace the depthwise conv by max-pool) applied to the ConvNeXt block
  (not a configuration from the paper, which has no ConvNeXt table).
- ``poolformer_s12`` -- PoolFormer-S12 on the MetaFormer skeleton: MetaFormer (pre-norm) blocks with the ``pool``
  mixer (``avgpool3x3(x) - x``), GroupNorm with one group (``norm="gn(groups=1)"``), MLP 4x GELU, layer scale 1e-5,
  7x7/4 (padding 2) stem and 3x3/2 downsampling without norms, GroupNorm before GAP, FC head.

The paper's and our exact numbers are in the registry (``blockzoo info <model>``, ``docs/catalog.md``). Params
exact (asserted by tests/models/test_pfnet.py); MACs with ``blockzoo.profile.counting.count_macs``: convs + linears only
-- pooling, norms and activations are not counted, like the paper's FLOPs. R50-* paper numbers: PfLayer README table
(ours within 0.3% / 2%); PoolFormer: timm's results CSV (paper: 12M / 1.8G). The pf ConvNeXts have no paper row.
"""
from __future__ import annotations

from typing import Any

from blockzoo.models.common.resnet import SLOTS as RESNET_SLOTS
from blockzoo.models.common.resnet import Bottleneck, ResNet
from blockzoo.models.metaformer import CONVNEXT_MACRO, metaformer_entry
from blockzoo.papers import PFLAYER, POOLFORMER
from blockzoo.registry import Claim, register_model

_T = "tests/models/test_pfnet.py::"

_PARAMS = {
    "pf_resnet50_max": 14_232_232,
    "pf_resnet50_hybrid": 17_330_600,
    "pf_convnext_atto": 3_603_520,
    "pf_convnext_tiny": 28_257_928,
    "poolformer_s12": 11_915_176,
}

# MACs of our builds at 224 px (blockzoo.profile.counting.count_macs); asserted by the slow tests
_MACS = {
    "pf_resnet50_max": 2_239_496_192,
    "pf_resnet50_hybrid": 2_586_312_704,
    "pf_convnext_atto": 518_136_320,
    "pf_convnext_tiny": 4_350_425_088,
    "poolformer_s12": 1_812_267_008,
}


# --------------------------------------------------------------------------------------------- R50-max / hybrid
def _pf_resnet(name: str, num_classes: int, in_chans: int, **kw: Any) -> ResNet:
    """ResNet-50 (bottlenecks (3, 4, 6, 3), projection shortcuts, no zero-init of the last BN: official code)."""
    kw.setdefault("zero_init_last", False)
    kw.setdefault("stem", "imagenet")
    return ResNet(Bottleneck, (3, 4, 6, 3), (64, 128, 256, 512), num_classes=num_classes, in_chans=in_chans,
                  shortcut="B", model_name=name, **kw)


@register_model(
    "pf_resnet50_max", family="pfnet", slots={**RESNET_SLOTS, "conv": "pf_maxpool"}, paper=PFLAYER,
    paper_params=14_200_000, paper_macs=2.2e9,
    reference={"params_1000cls": _PARAMS["pf_resnet50_max"], "macs_224": _MACS["pf_resnet50_max"]},
    summary="ResNet-50 with parameter-free layers (every 3x3 conv unit -> 3x3 max pool)",
    claims=(Claim(f"{_PARAMS['pf_resnet50_max']:,} parameters (paper README: 14.2M)", _T + "test_pf_resnet_params"),
            Claim("2.2 GFLOPs (MACs) at 224, within 3%", _T + "test_macs_tiny_224")),
)
def pf_resnet50_max(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> ResNet:
    """pf_resnet50_max: ResNet-50 with conv='pf_maxpool' (parameter-free spatial units)."""
    return _pf_resnet("pf_resnet50_max", num_classes, in_chans, **kw)


@register_model(
    "pf_resnet50_hybrid", family="pfnet", slots={**RESNET_SLOTS, "conv": "pf_hybrid"}, paper=PFLAYER,
    paper_params=17_300_000, paper_macs=2.6e9,
    reference={"params_1000cls": _PARAMS["pf_resnet50_hybrid"], "macs_224": _MACS["pf_resnet50_hybrid"]},
    summary="ResNet-50 with parameter-free layers (stride-1 3x3 units -> max pool; stride-2 -> avgpool+conv)",
    claims=(Claim(f"{_PARAMS['pf_resnet50_hybrid']:,} parameters (paper README: 17.3M)",
                  _T + "test_pf_resnet_params"),
            Claim("2.6 GFLOPs (MACs) at 224, within 3%", _T + "test_macs_tiny_224")),
)
def pf_resnet50_hybrid(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> ResNet:
    """pf_resnet50_hybrid: ResNet-50 with conv='pf_hybrid' (parameter-free spatial units)."""
    return _pf_resnet("pf_resnet50_hybrid", num_classes, in_chans, **kw)


# ------------------------------------------------------------------------------------------- pf ConvNeXt
_PF_CONVNEXT_SLOTS = {"mixer": "maxpool", "norm": "ln2d", "act": "gelu", "attn": "none", "head": "avg",
                      "connection": "residual"}

register_model(
    "pf_convnext_atto", family="pfnet", slots=_PF_CONVNEXT_SLOTS, paper=PFLAYER,
    reference={"params_1000cls": _PARAMS["pf_convnext_atto"], "macs_224": _MACS["pf_convnext_atto"]},
    summary="ConvNeXt-atto with the 7x7 depthwise conv replaced by a 3x3 max pool (parameter-free mixer)",
    claims=(Claim(f"{_PARAMS['pf_convnext_atto']:,} parameters = convnext_atto minus its depthwise convs",
                  _T + "test_param_counts"),),
)(metaformer_entry("pf_convnext_atto", dict(CONVNEXT_MACRO, depths=(2, 2, 6, 2), dims=(40, 80, 160, 320)),
                   doc="pf_convnext_atto: ConvNeXt-atto with max-pool mixers"))

register_model(
    "pf_convnext_tiny", family="pfnet", slots=_PF_CONVNEXT_SLOTS, paper=PFLAYER,
    reference={"params_1000cls": _PARAMS["pf_convnext_tiny"], "macs_224": _MACS["pf_convnext_tiny"]},
    summary="ConvNeXt-tiny with the 7x7 depthwise conv replaced by a 3x3 max pool (parameter-free mixer)",
    claims=(Claim(f"{_PARAMS['pf_convnext_tiny']:,} parameters = convnext_tiny minus its depthwise convs",
                  _T + "test_param_counts"),),
)(metaformer_entry("pf_convnext_tiny", dict(CONVNEXT_MACRO, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)),
                   doc="pf_convnext_tiny: ConvNeXt-tiny with max-pool mixers"))


# ------------------------------------------------------------------------------------------------- PoolFormer
POOLFORMER_CFG = dict(block="metaformer", mlp_ratios=4.0, ls_init_value=1e-5, stem="overlap", downsample="overlap",
                      head_norm="pre", mlp_layout="linear")
register_model(
    "poolformer_s12", family="poolformer",
    slots={"mixer": "pool", "norm": "gn(groups=1)", "act": "gelu", "attn": "none", "head": "avg",
           "connection": "residual"}, paper=POOLFORMER,
    paper_params=11_920_000, paper_macs=1.82e9,
    reference={"params_1000cls": _PARAMS["poolformer_s12"], "macs_224": _MACS["poolformer_s12"]},
    summary="PoolFormer-S12: MetaFormer blocks with the pooling mixer, GroupNorm(1), depths (2,2,6,2)",
    claims=(Claim(f"{_PARAMS['poolformer_s12']:,} parameters (timm 11.92M, paper 12M)", _T + "test_param_counts"),
            Claim("1.82 GMACs at 224 (timm), within 3%", _T + "test_macs_tiny_224")),
)(metaformer_entry("poolformer_s12", dict(POOLFORMER_CFG, depths=(2, 2, 6, 2), dims=(64, 128, 320, 512)),
                   doc="PoolFormer-S12"))
