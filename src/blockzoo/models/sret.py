"""SReT (Shen, Liu & Xing, "Sliced Recursive Transformer", ECCV 2022, arXiv:2111.05297 [S030]) on the MetaFormer
skeleton.

Configuration of :class:`blockzoo.models.metaformer.MetaFormer` following the official ``SReT.py``
(szq0214/SReT; the pooling-ViT macro of PiT), with the recursive block of :mod:`blockzoo.blocks.mixers.sret`:

- **Stem** (:class:`SReTStem`, official ``conv_embedding``): three 3x3 convs (bias) with BatchNorm + ReLU,
  ``in -> C/2 -> C -> C``, stride 2 each (224 px -> 28 x 28), then a learned position embedding for the built
  ``img_size``'s grid (trunc-normal 0.02), resampled bicubically to another input's grid (DeiT; the identity at the
  built size). The model's ``norm``/``act`` slots are not used here: the official stem is fixed to BN + ReLU.
- **Stages**: 3 stages of width ``C = base_dim x heads`` (SReT-T/LT 64/128/256 with 2/4/8 heads of 32; SReT-S
  126/252/504 with 3/6/12 heads of 42). The paper's 4/10/6 transformer layers are 2/5/3 recursive blocks
  (``depths``) of 2 loops each: every block is applied twice with shared weights, each time followed by its own
  non-linear projection layer (NLL, MLP ratio ``nll_ratio``: 1 for T/LT, 2 for S). Blocks: pre-norm LayerNorm
  (eps 1e-6) -> ``mixer`` -> learnable residual connection, LayerNorm -> GELU MLP (ratio 3.6 T, 4 LT, 3 S) -> LRC.
- **Sliced group attention** (``mixer`` slot, per-stage default): ``sliced_attn`` with ``G`` slices per loop,
  SReT-T/LT/S ``[8-4-1, 2-1-1]`` (stage 1: 8 then 2, stage 2: 4 then 1, stage 3: 1); the ``*_wo_slice`` models
  (the paper's SReT-⋇T/⋇S) use one group everywhere (plain multi-head attention). ``mixer="mhsa"`` or any other
  mixer replaces it.
- **Pooling** (:class:`DepthwisePool`, official ``conv_head_pooling``): a 3x3/2 depthwise conv with channel multiplier
  2 (``groups = C_in``, bias) between stages.
- **Head**: global average pooling -> LayerNorm (eps 1e-6) -> Linear (``head_norm="post"``).
- **Init**: as the official code, PyTorch's default init for the convs and Linears (the official ``_init_weights``
  only sets the LayerNorms to 1/0), trunc-normal(0.02) position embedding, LRC scalars 1.

Differences from the official code: ``drop_path_rate`` defaults to 0 (official class default 0.1, the training
setting) and follows the skeleton's linear schedule over the recursive blocks (see
:mod:`blockzoo.blocks.mixers.sret`); ``drop_rate`` is the dropout before the classifier (the official ``drop_rate``,
0 in every model, drops in the MLPs and after the position embedding instead); the second-loop permutation is random
in training only (eval: the interleaved one). The distilled models (``SReT_T_distill`` ...) are the same
architecture trained with a teacher.

The paper's and our exact numbers are in the registry (``blockzoo info sret_t``, ``docs/catalog.md``): paper figures
from the official README table (#params, FLOPs = MACs at 224 px). Our parameter counts equal those of the official
definition built with torch (asserted by tests/models/test_sret.py); MACs with ``blockzoo.profile.count_macs``
(convs, linears, attention products; norms and elementwise ops uncounted), equal to the official model's count with
the same counter. Same function: the official ``SReT_T`` / ``SReT_S`` weights loaded into ours (a scratch check, not
in the suite: the official code needs timm and einops) give the same logits at 224 px (max abs difference 5e-7),
with the official eval-mode random permutation replaced by the interleaved one.

``sret_t_small`` (not a paper model): SReT-T for 28-32 px inputs, its stem at strides 2/1/1 (28 px -> 14/7/4 feature
maps; 32 px -> 16/8/4), 10 classes.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.common.layers import ConvNormAct, out_size
from blockzoo.blocks.common.transformer import resample_pos_embed
from blockzoo.blocks.mixers.sret import SReTBlock
from blockzoo.checks import check_int
from blockzoo.errors import ConfigError
from blockzoo.models.base import to_size
from blockzoo.models.metaformer import MetaFormer
from blockzoo.registry import Claim, register_model

__all__ = ["SReTStem", "DepthwisePool", "SReT", "CONFIGS", "sret_slots"]

_T = "tests/models/test_sret.py::"


# ------------------------------------------------------------------------------------------------------- layers
class SReTStem(nn.Module):
    """Three 3x3 conv (bias) -> BN -> ReLU units (``in -> dim/2 -> dim -> dim``, ``strides``), plus a learned position
    embedding ``pos_embed`` (tokens ``(1, h*w, dim)`` of the ``img_size`` grid), resampled to the input's grid."""

    def __init__(self, in_chans: int, dim: int, norm_layer: Any = None, act_layer: Any = None, *,
                 img_size: int | tuple[int, int] | None, strides: Sequence[int] = (2, 2, 2)):
        super().__init__()
        if img_size is None:
            raise ConfigError("SReT needs img_size= (its position embedding is built for that input size)")
        self.strides = tuple(check_int(s, "stem stride", min_value=1, owner="SReTStem") for s in strides)
        chans = (in_chans, dim // 2, dim, dim)
        self.convs = nn.Sequential(*(ConvNormAct(chans[i], chans[i + 1], 3, s, norm="bn", act="relu", bias=True)
                                     for i, s in enumerate(self.strides)))
        self.grid = self.out_size(to_size(img_size))
        if min(self.grid) < 1:
            raise ConfigError(f"SReT: img_size={img_size} is too small for the stem (strides {self.strides}); use a "
                              f"larger img_size")
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], dim))

    def out_size(self, size: tuple[int, int] | None) -> tuple[int, int] | None:
        for s in self.strides:
            size = out_size(size, s, 3, 1)
        return size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        h, w = x.shape[2], x.shape[3]
        pos = resample_pos_embed(self.pos_embed, (h, w), self.grid, num_prefix_tokens=0, antialias=False)
        return x + pos.transpose(1, 2).unflatten(2, (h, w))

    def init_weights(self) -> None:
        for m in self.convs.modules():
            if isinstance(m, nn.Conv2d):
                m.reset_parameters()
        nn.init.trunc_normal_(self.pos_embed, std=0.02)


class DepthwisePool(nn.Conv2d):
    """SReT's (PiT's) pooling between stages: a 3x3/2 depthwise conv (``groups = in_dim``, bias) to ``out_dim``
    (a multiple of ``in_dim``); the MetaFormer downsample constructor (the norm/act arguments are not used)."""

    def __init__(self, in_dim: int, out_dim: int, *_: Any):
        if out_dim % in_dim:
            raise ConfigError(f"SReT's depthwise pooling maps {in_dim} -> {out_dim} channels, but the output width "
                              f"must be a multiple of the input width; choose dims with dims[i + 1] % dims[i] == 0")
        super().__init__(in_dim, out_dim, 3, 2, 1, groups=in_dim)

    def out_size(self, size: tuple[int, int] | None) -> tuple[int, int] | None:
        return out_size(size, 2, 3, 1)

    def init_weights(self) -> None:
        self.reset_parameters()


class SReT(MetaFormer):
    """A :class:`~blockzoo.models.metaformer.MetaFormer` configured as SReT (see the module docstring); its position
    embedding is left out of weight decay (official ``no_weight_decay``)."""

    def no_weight_decay(self) -> set[str]:
        return {n for n, _ in self.named_parameters() if n.endswith("pos_embed")}


# ------------------------------------------------------------------------------------------------ registration
SRET_MACRO: dict[str, Any] = dict(block=SReTBlock, downsample=DepthwisePool, ls_init_value=None, head_norm="post",
                                  init="kaiming")

# name: (dims, mlp ratio, NLL ratio, head_dim, sliced, paper params, paper MACs); depths (2, 5, 3) x 2 loops
CONFIGS: dict[str, tuple[Any, ...]] = {
    "sret_t": ((64, 128, 256), 3.6, 1.0, 32, True, 4.8e6, 1.1e9),
    "sret_lt": ((64, 128, 256), 4.0, 1.0, 32, True, 5.0e6, 1.2e9),
    "sret_s": ((126, 252, 504), 3.0, 2.0, 42, True, 20.9e6, 4.2e9),
    "sret_t_wo_slice": ((64, 128, 256), 3.6, 1.0, 32, False, 4.8e6, 1.4e9),
    "sret_s_wo_slice": ((126, 252, 504), 3.0, 2.0, 42, False, 20.9e6, 4.7e9),
}
DEPTHS, LOOPS = (2, 5, 3), 2
GROUPS = ((8, 2), (4, 1), 1)          # slices per loop in each stage: the paper's [8-4-1, 2-1-1]

# exact counts of our builds (1000 classes, 3 channels) = the official definition's; MACs at 224 px (count_macs)
_PARAMS = {"sret_t": 4_755_979, "sret_lt": 4_988_024, "sret_s": 20_899_692, "sret_t_wo_slice": 4_755_979,
           "sret_s_wo_slice": 20_899_692}
_MACS = {"sret_t": 1_112_444_672, "sret_lt": 1_164_477_184, "sret_s": 4_172_819_112,
         "sret_t_wo_slice": 1_365_682_944, "sret_s_wo_slice": 4_671_381_960}
_SMALL_PARAMS = {"params_1ch_10cls": 4_463_341}


def sret_slots(head_dim: int = 32, sliced: bool = True) -> dict[str, Any]:
    """The slot defaults of an SReT: per stage, sliced group attention with that stage's slices (one group each
    without slicing) and ``head_dim``-wide heads."""
    opts = "" if head_dim == 32 else f", head_dim={head_dim}"
    mixer = [f"sliced_attn(groups={g if sliced else 1}{opts})" for g in GROUPS]
    return {"mixer": mixer, "norm": "ln2d", "act": "gelu", "attn": "none", "head": "avg"}


def _entry(name: str, config: str, *, strides: Sequence[int] = (2, 2, 2), default_img_size: int = 224,
           default_num_classes: int = 1000) -> Callable[..., SReT]:
    dims, mlp_ratio, nll_ratio = CONFIGS[config][:3]
    macro = dict(SRET_MACRO, depths=DEPTHS, dims=dims, mlp_ratios=mlp_ratio,
                 block_kwargs={"loops": LOOPS, "nll_ratio": nll_ratio})

    def fn(*, num_classes: int = default_num_classes, in_chans: int = 3,
           img_size: int | tuple[int, int] = default_img_size, **kw: Any) -> SReT:
        cfg = {**macro, **kw}
        cfg.setdefault("stem", partial(SReTStem, img_size=img_size, strides=strides))
        return SReT(num_classes=num_classes, in_chans=in_chans, model_name=name, img_size=img_size, **cfg)

    fn.__name__ = name
    fn.__doc__ = f"{name}: SReT with {DEPTHS} recursive blocks x {LOOPS} loops, dims {dims}"
    return fn


def _paper_spec(name: str) -> dict[str, Any]:
    """register_model arguments of a paper SReT (numbers from the tables above)."""
    dims, _, _, head_dim, sliced, pp, pm = CONFIGS[name]
    base = name.split("_")[1].upper()
    kind = "sliced group attention [8-4-1, 2-1-1]" if sliced else f"full attention (the paper's unsliced SReT-{base})"
    return dict(
        family="sret", slots=sret_slots(head_dim, sliced), paper=papers.SRET, paper_params=int(pp), paper_macs=pm,
        reference={"params_1000cls": _PARAMS[name], "macs_224": _MACS[name]},
        summary=f"SReT-{base}: 2/5/3 recursive blocks x 2 loops with NLLs, dims {dims}, conv stem, "
                f"depthwise pooling, {kind}",
        claims=(Claim(f"{_PARAMS[name]:,} parameters = the official definition's (paper: {pp / 1e6:.1f}M)",
                      _T + "test_param_counts"),
                Claim(f"{_MACS[name] / 1e9:.3f} GMACs at 224 px (paper: {pm / 1e9:.1f} G FLOPs)", _T + "test_macs_224"),
                Claim("recursion shares weights: a second loop adds only the NLL's parameters",
                      "tests/blocks/mixers/test_sret.py::test_recursion_shares_parameters")),
        notes=_NOTES)


_NOTES = ("depths = recursive blocks per stage; block_kwargs={'loops': 2, 'nll_ratio': r} sets the loops and the NLL "
          "MLP ratio (None: no NLL). img_size sets the position embedding's grid (other input sizes resample it).")

register_model("sret_t", **_paper_spec("sret_t"))(_entry("sret_t", "sret_t"))
register_model("sret_lt", **_paper_spec("sret_lt"))(_entry("sret_lt", "sret_lt"))
register_model("sret_s", **_paper_spec("sret_s"))(_entry("sret_s", "sret_s"))
register_model("sret_t_wo_slice", **_paper_spec("sret_t_wo_slice"))(_entry("sret_t_wo_slice", "sret_t_wo_slice"))
register_model("sret_s_wo_slice", **_paper_spec("sret_s_wo_slice"))(_entry("sret_s_wo_slice", "sret_s_wo_slice"))
register_model(
    "sret_t_small", family="sret", slots=sret_slots(), paper=papers.SRET, input_size=(1, 28, 28),
    num_classes=10, reference=_SMALL_PARAMS,
    summary="SReT-T for 28-32 px inputs: the stem at strides 2/1/1 (28 px -> 14/7/4 feature maps), 10 classes (not "
            "a paper model)",
    claims=(Claim("trains on 28 px inputs (a few optimizer steps fit a fixed batch)",
                  _T + "test_small_variant_trains"),),
    notes="Not a paper model: SReT-T with stem strides (2, 1, 1) and img_size 28. " + _NOTES,
)(_entry("sret_t_small", "sret_t", strides=(2, 1, 1), default_img_size=28, default_num_classes=10))
