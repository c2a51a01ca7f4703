"""SpaRTAN backbone (Pay et al., "SpaRTAN: Spatial Reinforcement Token-based Aggregation Network for Visual
Recognition", IJCNN 2025, arXiv:2507.10999 [S024]) as a configuration of the MetaFormer skeleton.

Follows the official ``src/model/spartan.py`` + ``src/config/model/spartan.yaml`` (henry-pay/SpaRTAN):

- config: ``num_layer=4``, ``layer_depths=(3, 3, 12, 2)``, ``expand_ratios=(4, 4, 2, 2)``, ``init_dim=32``,
  ``dims=(64, 128, 256)`` (the widths *after* each of the three downsamplings), so the four stages have widths
  **32, 64, 128, 256** at strides 4, 8, 16, 32; ``dropout=0.1`` (stochastic depth, see below).
- stem (:class:`SpaRTANStem`): 3x3/2 conv (C_in -> 16) -> BN -> GELU -> 3x3/2 conv (16 -> 32) -> BN -> GELU
  (convs without bias, BN eps 1e-6).
- downsampling (:class:`SpaRTANDownsample`, before stages 1-3): 2x2/2 conv (no bias) -> BN (eps 1e-6) -> **SiLU**.
- block (:class:`SpaRTANBlock`, pre-norm, two residual branches)::

      x = x + DropPath(ls1 * SMixer(norm1(x)))            # mixer slot, default "spartan"
      x = x + DropPath(ls2 * CMixer(norm2(x), r_stage))    # the block's channel mixer ("spartan_cmixer")

  ``norm`` = the official ``LayerNorm(use_group=True)``, i.e. ``F.group_norm(x, 1, weight, bias, eps=1e-6)``: one
  group over (C, H, W) with a per-channel affine -- exactly ``nn.GroupNorm(1, C, eps=1e-6)``, which is the default
  ``norm`` slot value ``"gn(groups=1, eps=1e-06)"`` (note: *not* the channels-only LayerNorm of ConvNeXt). Layer scale
  init 1e-5 on both branches.
- grouping flips halfway: stages ``i < num_layer // 2`` (0, 1) use dense 3x3 convs in the SMixer and a depthwise
  (groups rC) 3x3 in the CMixer; stages 2, 3 use ``groups = C/2`` (depthwise) in the SMixer and ``groups = C`` in
  the CMixer (``dense_stages=`` moves the switch; a ``spartan`` mixer value that does not set ``grouped`` / ``act``
  gets its stage's grouping and the model's ``act``, single or per stage).
- head: GAP -> Linear (no norm, no dropout by default).
- init: the official ``_init_weights`` (conv weights ``N(0, 2 / (k*k*out/groups))``, zero biases, BN 1/0,
  Linear head ``trunc_normal(0.02)``), layer scales / gamma 1e-5, complex weights ``randn``.

Slots: ``mixer`` (``spartan``; any mixer can replace the SMixer, e.g. ``mixer="dwconv"``), ``norm`` (the two block
norms; default ``gn(groups=1, eps=1e-06)``), ``act`` (the official ``act`` variable: the stem, the SMixer's and the
CMixer's GELUs, including the CMixer's theta activation; the downsampling keeps its SiLU and the SEs their ReLU),
``attn`` (``none``; after the SMixer), ``head`` (``avg``). The stem and downsampling convs always use BatchNorm
(eps 1e-6), as officially.

Deviation / conventions:

- stochastic depth: the official block ``k`` of ``N`` (network order, k = 0..N-1) gets ``dropout * k / N``; the
  skeleton's linear schedule gives ``rate * k / (N - 1)``. ``drop_path_rate=OFFICIAL_DROP_PATH_RATE`` (= 0.1 * 19 /
  20 = 0.095) reproduces the official per-block rates exactly; the registered default is 0 (no regularisation unless
  asked for, like every blockzoo family). torchvision ``StochasticDepth(p, "row")`` = the skeleton's ``DropPath``.
- small images: ``stem="small"`` (default of ``spartan_small``) keeps the same two conv-BN-GELU layers at stride 1,
  so a 32 px input gives stages at 32, 16, 8, 4 (28 px: 28, 14, 7, 3). Any skeleton stem (``"patch"``, a callable)
  can also be given.

The paper's and our exact numbers are in the registry (``blockzoo info <model>``, ``docs/catalog.md``). Paper:
3.8M parameters (abstract) and "approximately 1.0G" FLOPs. Params exact (asserted in tests/models/test_spartan.py
against a
closed-form count of the official modules); MACs with ``blockzoo.profile.counting.count_macs`` (convs and linears
only; norms, activations, pooling, the argmax gather, the complex multiply and other elementwise ops uncounted): ours
are 3,820,296 parameters (+0.5%) and 1.044 GMACs at 256 px (+4.4%; 0.800 G at 224 px, -20%).

Both paper numbers are given to one decimal: 3.8M stands for 3.75M-3.85M and 1.0G for 0.95G-1.05G; ours are
inside both intervals. The parameter count is exactly that of the official ``SpaRTAN(**spartan.yaml)`` (same modules,
same shapes). **Resolution:** the official ImageNet pipeline trains and evaluates at **256 px**
(``src/config/data/imagenet.yaml``: ``img_size: 256``, ``crop_size: 256``; RandomResizedCrop(256) for training,
Resize(256) + CenterCrop(256) for evaluation), and the paper's "approximately 1.0 GFLOPs" matches the 256 px count
(1.044 GMACs), not 224 px (0.800 GMACs; the official ``main.py`` prints an fvcore count at 224 px, which would add
only about 0.02-0.04G for norms and pooling to ours). ``spartan`` is therefore registered with
``input_size=(3, 256, 256)``; it runs at any size (224 px included).
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn as nn

from blockzoo.blocks.common.drop import make_drop_path
from blockzoo.blocks.common.layer_scale import layer_scale
from blockzoo.blocks.common.layers import make_act
from blockzoo.blocks.mixers.spartan import BN_EPS, CMixer, official_init
from blockzoo.errors import ConfigError
from blockzoo.models.base import PerBlock, out_size, per_stage_values
from blockzoo.models.metaformer import SMALL_IMG_SIZE, MetaFormer
from blockzoo.papers import SPARTAN
from blockzoo.registry import Claim, SlotContext, parse_slot_value, register_model

__all__ = ["SpaRTANStem", "SpaRTANDownsample", "SpaRTANBlock", "SPARTAN_CONFIG", "OFFICIAL_DROP_PATH_RATE",
           "spartan_entry"]

_T = "tests/models/test_spartan.py::"

SLOTS = {"mixer": "spartan", "norm": f"gn(groups=1, eps={BN_EPS})", "act": "gelu", "attn": "none", "head": "avg"}

# official config src/config/model/spartan.yaml: stage widths = (init_dim, *dims)
SPARTAN_CONFIG: dict[str, Any] = dict(depths=(3, 3, 12, 2), dims=(32, 64, 128, 256), mlp_ratios=(4, 4, 2, 2),
                                      ls_init_value=1e-5, downsample=None, head_norm=None, head_hidden_ratio=None,
                                      init="trunc_normal")
# official dropout 0.1 with per-block rate 0.1 * k / 20  ==  skeleton rate r * k / 19  with r = 0.1 * 19 / 20
OFFICIAL_DROP_PATH_RATE = 0.1 * 19 / 20

_PARAMS = {"spartan": 3_820_296, "spartan_small": 3_565_866}      # 1000 / 10 classes, 3 input channels
_MACS = {"spartan": {224: 799_589_888, 256: 1_044_147_968}}       # count_macs (convs + linears)


# ------------------------------------------------------------------------------------------- stem/downsampling
class SpaRTANStem(nn.Sequential):
    """Two 3x3 conv (no bias) -> BN (eps 1e-6) -> act layers, ``in_chans -> dim/2 -> dim``, each at ``stride``
    (2 = official, overall stride 4; 1 = the small-image stem)."""

    def __init__(self, in_chans: int, dim: int, norm_layer: Any = None,
                 act_layer: Callable[[], nn.Module] | None = None, stride: int = 2):
        act_layer = act_layer or partial(make_act, "gelu")
        mid = dim // 2
        super().__init__(
            nn.Conv2d(in_chans, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid, eps=BN_EPS), act_layer(),
            nn.Conv2d(mid, dim, 3, stride, 1, bias=False), nn.BatchNorm2d(dim, eps=BN_EPS), act_layer())
        self.stride = stride

    def out_size(self, size: tuple[int, int] | None) -> tuple[int, int] | None:
        return out_size(out_size(size, self.stride, 3, 1), self.stride, 3, 1)

    def init_weights(self) -> None:
        official_init(self)


class SpaRTANDownsample(nn.Sequential):
    """2x2/2 conv (no bias) -> BN (eps 1e-6) -> SiLU (official downsampling between stages)."""

    def __init__(self, in_dim: int, out_dim: int, norm_layer: Any = None, act_layer: Any = None, stage_idx: int = 0):
        super().__init__(nn.Conv2d(in_dim, out_dim, 2, 2, bias=False), nn.BatchNorm2d(out_dim, eps=BN_EPS), nn.SiLU())

    def out_size(self, size: tuple[int, int] | None) -> tuple[int, int] | None:
        return out_size(size, 2, 2, 0)

    def init_weights(self) -> None:
        official_init(self)


# ------------------------------------------------------------------------------------------------------- block
class SpaRTANBlock(nn.Module):
    """``x + DP(LS1(attn(mixer(norm1(x)))))`` then ``x + DP(LS2(CMixer(norm2(x))))``; the CMixer's expansion ratio is
    the stage's ``mlp_ratio`` and its 3x3 conv is grouped (groups C) when ``grouped`` else depthwise."""

    def __init__(self, dim: int, *, mixer: nn.Module, attn: nn.Module | None = None,
                 norm_layer: Callable[[int], nn.Module], act_layer: Callable[[], nn.Module], mlp_ratio: float = 4.0,
                 ls_init_value: float | None = 1e-5, drop_path: float = 0.0, mlp_layout: str = "conv",
                 feat_size: tuple[int, int] | None = None, ctx: Callable[[str], SlotContext] | None = None,
                 grouped: bool = False):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.mixer = mixer
        self.attn = attn if attn is not None else nn.Identity()
        self.ls1 = layer_scale(dim, ls_init_value)
        self.drop_path1 = make_drop_path(drop_path)
        self.norm2 = norm_layer(dim)
        self.cmixer = CMixer(dim, expand_ratio=mlp_ratio, grouped=grouped, act=act_layer)
        self.ls2 = layer_scale(dim, ls_init_value)
        self.drop_path2 = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.mixer(self.norm1(x)))))
        return x + self.drop_path2(self.ls2(self.cmixer(self.norm2(x))))


# ---------------------------------------------------------------------------------------------------- builder
def spartan_entry(name: str, config: dict[str, Any], *, default_stem: str = "spartan", default_img_size: int = 256,
                  doc: str = "") -> Callable[..., MetaFormer]:
    """Constructor ``fn(*, num_classes, in_chans, stem, dense_stages, **kw)`` of a registered SpaRTAN variant.

    ``stem``: ``"spartan"`` (official, stride 4), ``"small"`` (the same layers at stride 1, for 28-32 px inputs) or
    any skeleton stem. ``dense_stages``: the number of leading stages with dense SMixer convs and a depthwise CMixer
    3x3 (default ``len(depths) // 2``, official). Slots default to ``SLOTS``. Other keyword arguments go to
    :class:`MetaFormer` (``img_size``, ``drop_path_rate``, ``depths``, ``dims``, ``mlp_ratios``, slots ...);
    ``img_size`` (used for the feature-size checks only) defaults to ``default_img_size`` (32 with ``stem="small"``).
    """

    def fn(*, num_classes: int = 1000, in_chans: int = 3, stem: Any = default_stem, dense_stages: int | None = None,
           **kw: Any) -> MetaFormer:
        cfg = {**SLOTS, **config, **kw}
        n = len(cfg["depths"])
        dense = n // 2 if dense_stages is None else int(dense_stages)
        if not 0 <= dense <= n:
            raise ConfigError(f"dense_stages must be between 0 and the number of stages ({n}), got {dense_stages}")
        if cfg.get("img_size") is None:
            cfg["img_size"] = SMALL_IMG_SIZE if stem == "small" else default_img_size
        if stem in ("spartan", "small"):
            stem = partial(SpaRTANStem, stride=1 if stem == "small" else 2)
        if cfg.get("downsample") is None:
            cfg["downsample"] = SpaRTANDownsample
        cfg.setdefault("block", [partial(SpaRTANBlock, grouped=i >= dense) for i in range(n)])
        cfg["mixer"] = _stage_smixers(cfg["mixer"], n, dense, cfg["act"])
        return MetaFormer(num_classes=num_classes, in_chans=in_chans, model_name=name, stem=stem, **cfg)

    fn.__name__ = name
    fn.__doc__ = doc or f"{name}: SpaRTAN on the MetaFormer skeleton"
    return fn


def _stage_smixers(mixer: Any, n: int, dense: int, act: Any) -> Any:
    """The per-stage ``mixer`` value: every ``spartan`` entry (single or per stage) that does not set them gets the
    stage's grouping (``grouped = stage >= dense``, as the CMixer) and the model's ``act``, as in the official code.
    Other mixers and a :class:`~blockzoo.models.base.PerBlock` are used as given."""
    if isinstance(mixer, PerBlock):
        return mixer
    entries = per_stage_values(mixer) or [mixer] * n
    out = []
    for i, value in enumerate(entries):
        name, kw = parse_slot_value(value)
        out.append((name, {"grouped": i >= dense, "act": act, **kw}) if name == "spartan" else value)
    return out


_NOTES = ("The official drop-path schedule is drop_path_rate=OFFICIAL_DROP_PATH_RATE (0.095; default 0 here); "
          "mlp_ratios are the CMixer expand ratios (4, 4, 2, 2).")

register_model(
    "spartan", family="spartan", slots=SLOTS, paper=SPARTAN, input_size=(3, 256, 256), num_classes=1000,
    paper_params=3_800_000, paper_macs=1.0e9,
    reference={"params_1000cls": _PARAMS["spartan"], "macs_256": _MACS["spartan"][256],
               "macs_224": _MACS["spartan"][224]},
    summary="SpaRTAN (official config): stages 32/64/128/256, depths 3/3/12/2, CMixer ratios 4/4/2/2, SMixer + "
            "wave CMixer blocks, GroupNorm(1) pre-norm, layer scale 1e-5",
    claims=(Claim(f"{_PARAMS['spartan']:,} parameters (paper: 3.8M)", _T + "test_param_count_official"),
            Claim("approximately 1.0 GFLOPs (MACs; paper) at the official 256 px train/eval resolution: ours "
                  "1.044 GMACs at 256 px, 0.800 GMACs at 224 px", _T + "test_macs"),
            Claim("grouping flips halfway: dense SMixer / depthwise CMixer 3x3 in stages 0-1, SMixer groups C/2 and "
                  "CMixer groups C in stages 2-3", _T + "test_grouping_flip_per_stage"),
            Claim("77.7% ImageNet-1k top-1", None, status="not checked")),
    notes=_NOTES,
)(spartan_entry("spartan", SPARTAN_CONFIG, doc="SpaRTAN (official config; official resolution 256 px)"))

register_model(
    "spartan_small", family="spartan", slots=SLOTS, paper=SPARTAN, input_size=(3, 32, 32), num_classes=10,
    reference={"params_3ch_10cls": _PARAMS["spartan_small"]},
    summary="SpaRTAN (official widths/depths) for 28-32 px inputs: the two-conv stem at stride 1, stages at "
            "32/16/8/4 px",
    claims=(Claim(f"{_PARAMS['spartan_small']:,} parameters (3 channels, 10 classes)",
                  _T + "test_param_count_official"),
            Claim("trains on (N, 1, 28, 28) inputs: forward/backward, feature sizes 28/14/7/3",
                  _T + "test_small_forward_backward")),
    notes=_NOTES + " img_size defaults to 32.",
)(spartan_entry("spartan_small", SPARTAN_CONFIG, default_stem="small",
                doc="SpaRTAN for 28-32 px inputs (stride-1 stem)"))
