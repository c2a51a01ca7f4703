"""Parameter-free spatial operators as backbones (Han et al., "Learning Features with Parameter-Free Layers",
ICLR 2022, arXiv:2202.02777 [S008]; code: naver-ai/PfLayer) and the PoolFormer baseline (Yu et al., "MetaFormer Is
Actually What You Need for Vision", CVPR 2022, arXiv:2111.11418).

- ``pf_resnet50_max`` -- the paper's **R50-max**: ResNet-50 (v1.5, stride on the middle unit) whose 3x3 conv -> BN ->
  ReLU units are replaced by ``MaxPool2d(3, stride, 1)`` (``conv="pf_maxpool"``; official ``MaxBottleneck``).
- ``pf_resnet50_hybrid`` -- **R50-hybrid** (official ``EffBottleneck``): max pool in the stride-1 blocks; in the three
  stride-2 blocks a 2x2 average pool followed by the 3x3 conv -> BN -> ReLU (``conv="pf_hybrid"``).
  Both reuse :class:`blockzoo.models.resnet.ResNet` (7x7/2 stem + max pool, projection shortcuts, no zero-init of the
  last BN, as in the official code); ``stem="small"`` (3x3/1, no max pool) for 28-32 px inputs.
- ``pf_convnext_atto`` / ``pf_convnext_tiny`` -- ConvNeXt with the 7x7 depthwise conv replaced by a 3x3 stride-1 max
  pool (``mixer="maxpool"``): the paper's recipe (replace the depthwise conv by max-pool) applied to the ConvNeXt block
  (not a configuration from the paper, which has no ConvNeXt table).
- ``poolformer_s12`` -- PoolFormer-S12 on the MetaFormer skeleton: MetaFormer (pre-norm) blocks with the ``pool``
  mixer (``avgpool3x3(x) - x``), GroupNorm with one group (``norm="gn(groups=1)"``), MLP 4x GELU, layer scale 1e-5,
  7x7/4 (padding 2) stem and 3x3/2 downsampling without norms, GroupNorm before GAP, FC head.

Paper vs ours (1000 classes, 224 px; params exact, asserted by tests/test_metaformer.py; MACs with
``blockzoo.profile.counting.count_macs``: convs + linears only -- pooling, norms and activations are not counted, like
the paper's FLOPs). R50-* paper numbers: PfLayer README table; PoolFormer: timm's results CSV (paper: 12M / 1.8G):

================== =============== ============== ======= ============ ========== =======
model              params (paper)  params (ours)  diff    MACs (paper) MACs ours  diff
================== =============== ============== ======= ============ ========== =======
pf_resnet50_max    14.2M           14,232,232     +0.23%  2.2G         2.239G     +1.8%
pf_resnet50_hybrid 17.3M           17,330,600     +0.18%  2.6G         2.586G     -0.5%
pf_convnext_atto   (no paper row)  3,603,520      --      --           0.518G     --
pf_convnext_tiny   (no paper row)  28,257,928     --      --           4.350G     --
poolformer_s12     11.92M          11,915,176     -0.04%  1.82G        1.812G     -0.4%
================== =============== ============== ======= ============ ========== =======
"""
from __future__ import annotations

from blockzoo.blocks.mixers.basic import PFLAYER, POOLFORMER
from blockzoo.models.convnext import CONFIGS as CONVNEXT_CONFIGS
from blockzoo.models.convnext import CONVNEXT
from blockzoo.models.convnext import SLOTS as CONVNEXT_SLOTS
from blockzoo.models.metaformer import metaformer_entry
from blockzoo.models.resnet import SLOTS as RESNET_SLOTS
from blockzoo.models.resnet import Bottleneck, ResNet
from blockzoo.registry import Claim, register_model

_T = "tests/test_metaformer.py::"

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
def _pf_resnet(name: str, conv: str):
    def fn(*, num_classes: int = 1000, in_chans: int = 3, **kw) -> ResNet:
        kw.setdefault("zero_init_last", False)
        kw.setdefault("stem", "imagenet")
        return ResNet(Bottleneck, (3, 4, 6, 3), (64, 128, 256, 512), num_classes=num_classes, in_chans=in_chans,
                      shortcut="B", model_name=name, **kw)
    fn.__doc__ = f"{name}: ResNet-50 with conv='{conv}' (parameter-free spatial units)"
    return fn


for _name, _conv, _pp, _pm, _what in (
        ("pf_resnet50_max", "pf_maxpool", 14.2e6, 2.2e9, "every 3x3 conv unit -> 3x3 max pool"),
        ("pf_resnet50_hybrid", "pf_hybrid", 17.3e6, 2.6e9, "stride-1 3x3 units -> max pool; stride-2 -> avgpool+conv")):
    register_model(
        _name, family="pfnet", slots={**RESNET_SLOTS, "conv": _conv}, paper=PFLAYER, paper_params=int(_pp),
        paper_macs=_pm, reference={"params_1000cls": _PARAMS[_name], "macs_224": _MACS[_name]},
        summary=f"ResNet-50 with parameter-free layers ({_what})",
        claims=(Claim(f"{_PARAMS[_name]:,} parameters (paper README: {_pp / 1e6:.1f}M)", _T + "test_pf_resnet_params"),
                Claim(f"{_pm / 1e9:.1f} GFLOPs (MACs) at 224, within 3%", _T + "test_macs_tiny_224")),
        notes="Options: stem ('imagenet'|'small'), img_size, drop_rate, attn, norm, act, head (ResNet's options).",
    )(_pf_resnet(_name, _conv))


# ------------------------------------------------------------------------------------------- pf ConvNeXt
for _size in ("atto", "tiny"):
    _depths, _dims = CONVNEXT_CONFIGS[f"convnext_{_size}"][:2]
    _name = f"pf_convnext_{_size}"
    register_model(
        _name, family="pfnet", slots={**CONVNEXT_SLOTS, "mixer": "maxpool"}, paper=PFLAYER,
        reference={"params_1000cls": _PARAMS[_name], "macs_224": _MACS[_name]},
        summary=f"ConvNeXt-{_size} with the 7x7 depthwise conv replaced by a 3x3 max pool (parameter-free mixer)",
        claims=(Claim(f"{_PARAMS[_name]:,} parameters = convnext_{_size} minus its depthwise convs",
                      _T + "test_param_counts"),),
        notes="Options: as convnext_* (stem='small', img_size, drop_path_rate, ...).",
    )(metaformer_entry(_name, dict(CONVNEXT, depths=_depths, dims=_dims),
                       doc=f"{_name}: ConvNeXt-{_size} with max-pool mixers"))


# ------------------------------------------------------------------------------------------------- PoolFormer
POOLFORMER_CFG = dict(block="metaformer", mlp_ratios=4.0, ls_init_value=1e-5, stem="overlap", downsample="overlap",
                      head_norm="pre", mlp_layout="linear")
register_model(
    "poolformer_s12", family="poolformer",
    slots={"mixer": "pool", "norm": "gn(groups=1)", "act": "gelu", "attn": "none", "head": "avg"}, paper=POOLFORMER,
    paper_params=11_920_000, paper_macs=1.82e9,
    reference={"params_1000cls": _PARAMS["poolformer_s12"], "macs_224": _MACS["poolformer_s12"]},
    summary="PoolFormer-S12: MetaFormer blocks with the pooling mixer, GroupNorm(1), depths (2,2,6,2)",
    claims=(Claim(f"{_PARAMS['poolformer_s12']:,} parameters (timm 11.92M, paper 12M)", _T + "test_param_counts"),
            Claim("1.82 GMACs at 224 (timm), within 3%", _T + "test_macs_tiny_224")),
    notes="Options: drop_path_rate, ls_init_value (1e-5), stem ('overlap'|'small'), img_size, mlp_layout.",
)(metaformer_entry("poolformer_s12", dict(POOLFORMER_CFG, depths=(2, 2, 6, 2), dims=(64, 128, 320, 512)),
                   doc="PoolFormer-S12"))
