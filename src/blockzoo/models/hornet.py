"""HorNet backbones (Rao et al., "HorNet: Efficient High-Order Spatial Interactions with Recursive Gated Convolutions",
NeurIPS 2022, arXiv:2207.14284 [S013]) on the MetaFormer skeleton.

Configuration of :class:`blockzoo.models.metaformer.MetaFormer` following the official ``hornet.py``: patchify stem
(4x4/4 conv + LayerNorm), LayerNorm + 2x2/2 conv downsampling, widths ``base_dim * (1, 2, 4, 8)``; HorNet block =
the skeleton's pre-norm ``"metaformer"`` block: ``x + DP(gamma1 * gnconv(LN(x)))`` then
``x + DP(gamma2 * MLP(LN(x)))`` (MLP 4x, GELU; layer scale 1e-6; LayerNorm eps 1e-6); gnConv orders 2, 3, 4, 5 in
stages 1-4 with ``s = 1/3`` (``mixer_kwargs_per_stage`` with ``mixer_kwargs_for="gnconv"``, so swapping in another
mixer does not receive ``order``); head = GAP -> LayerNorm -> FC. Init: trunc-normal(0.02) convs/linears, zero
biases (official ``uniform_init=False``); ``head_init_scale`` option. Stochastic depth ``drop_path_rate`` linear over
all blocks (official HorNet-T: 0.2). The mixer is in :mod:`blockzoo.blocks.mixers.gnconv`.

- ``hornet_tiny_7x7``: depths (2, 3, 18, 2), base dim 64, 7x7 depthwise filter in every gnConv.
- ``hornet_tiny_gf``: the same with the global-local filter in stages 3 and 4 only (official ``hornet_tiny_gf``:
  stages 1-2 keep the 7x7 filter). The global filter's weight is sized to the half spectrum ``(H, W // 2 + 1)`` of
  its stage's feature map at ``img_size`` -- 14 x 8 and 7 x 4 at 224 px, exactly the official values (and 24 x 13 /
  12 x 7 at 384 px, the official ``*_gf_img384`` values), so the parameter count depends on ``img_size``.
  ``gf_size=((14, 8), (7, 4))`` fixes the sizes instead (e.g. to keep the 224-px weights at another resolution, which
  are then interpolated at run time, the official behaviour).
- ``hornet_atto`` (**not a paper model**): a CIFAR / Fashion-MNIST size HorNet for 28-32 px inputs with ConvNeXt-atto's
  depths and widths (2, 2, 6, 2) / (40, 80, 160, 320), gnConv orders 2-5 with the 7x7 filter and the 3x3/1
  ``stem="small"`` (feature maps 32, 16, 8, 4 at 32 px); 10 classes by default. Comparable one-to-one with
  ``create_model("convnext_atto", stem="small")``; ``create_model("convnext_atto", mixer="gnconv", stem="small")``
  is a ConvNeXt (MetaNeXt block) with gnConv mixers of one fixed order instead.

Paper (official README; mmpretrain's converted checkpoints give 22.41M / 3.98G and 22.99M / 3.90G) vs ours, 1000
classes, 224 px. Params counted exactly and equal to the official code's count, which
``tests/test_hornet.py::test_param_counts`` derives in closed form from the official layer list; MACs with
``blockzoo.profile.count_macs`` (convs, linears and FFTs with HorNet's ``N log2 N`` convention over the transformed
dims; LayerNorms, biases and elementwise products uncounted -- fvcore also counts the LayerNorms, hence our
slightly lower numbers):

=============== ============== ============== ======= ============ =========== =======
model           params (paper) params (ours)  diff    MACs (paper) MACs (ours)  diff
=============== ============== ============== ======= ============ =========== =======
hornet_tiny_7x7 22M (22.41M)   22,409,512     -0.00%  4.0G (3.98G) 3.968G      -0.3%
hornet_tiny_gf  23M (22.99M)   22,991,848     +0.01%  3.9G (3.90G) 3.899G      -0.0%
=============== ============== ============== ======= ============ =========== =======

The "diff" columns compare with the mmpretrain figures in brackets (the README rounds to 1M / 0.1G; against the
README's 4.0G the 7x7 model is -0.8%). ``hornet_atto`` (not a paper model): 4,840,730 parameters (3 channels, 10
classes), 255,672,320 MACs at 32 px (``convnext_atto`` at the same setting: 3,376,890 parameters).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from blockzoo import papers
from blockzoo.models.metaformer import SMALL_IMG_SIZE, MetaFormer, metaformer_entry
from blockzoo.registry import Claim, register_model

__all__ = ["HORNET", "SLOTS", "CONFIGS", "hornet_entry", "stage_feature_sizes", "gf_filter_size"]

SLOTS = {"mixer": "gnconv", "norm": "ln2d", "act": "gelu", "attn": "none", "head": "avg"}
ORDERS = (2, 3, 4, 5)
SCALE = 1.0 / 3.0

HORNET = dict(block="metaformer", mlp_ratios=4.0, ls_init_value=1e-6, stem="patch", downsample="patch",
              head_norm="post", mixer_kwargs_per_stage=[{"order": o, "scale": SCALE} for o in ORDERS],
              mixer_kwargs_for="gnconv")

# name: (depths, dims, global-filter stages, extra config, paper params, paper MACs)
CONFIGS: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], dict[str, Any], int | None,
                         float | None]] = {
    "hornet_tiny_7x7": ((2, 3, 18, 2), (64, 128, 256, 512), (), {}, 22_000_000, 4.0e9),
    "hornet_tiny_gf": ((2, 3, 18, 2), (64, 128, 256, 512), (2, 3), {}, 23_000_000, 3.9e9),
    "hornet_atto": ((2, 2, 6, 2), (40, 80, 160, 320), (), {"stem": "small"}, None, None),
}

# exact parameter counts of our builds (3 input channels; 1000 classes, hornet_atto 10); tests/test_hornet.py
_PARAMS = {"hornet_tiny_7x7": 22_409_512, "hornet_tiny_gf": 22_991_848, "hornet_atto": 4_840_730}
# MACs at 224 px (hornet_atto: 32 px) with blockzoo.profile.count_macs; asserted by the slow test
_MACS = {"hornet_tiny_7x7": 3_968_389_312, "hornet_tiny_gf": 3_899_296_288, "hornet_atto": 255_672_320}


def gf_filter_size(feat: tuple[int, int]) -> tuple[int, int]:
    """The global filter size ``(H, W // 2 + 1)`` (the rFFT half spectrum) for an ``H x W`` feature map."""
    return int(feat[0]), int(feat[1]) // 2 + 1


def stage_feature_sizes(config: dict[str, Any]) -> list[tuple[int, int] | None]:
    """Per-stage feature sizes of a MetaFormer ``config`` (as the skeleton computes them: a block-less probe built on
    the meta device, so custom stems/downsamplers with ``out_size`` are honoured)."""
    probe_cfg = {k: v for k, v in config.items() if k not in ("mixer_kwargs_per_stage", "mixer_per_block")}
    probe_cfg["depths"] = [0] * len(config["depths"])
    probe_cfg["num_classes"] = 0
    with torch.device("meta"):
        probe = MetaFormer(**probe_cfg)
    return list(probe.feature_sizes)


def hornet_entry(name: str, config: dict[str, Any], gf_stages: Sequence[int] = (), *,
                 doc: str = "") -> Callable[..., MetaFormer]:
    """Constructor ``fn(*, num_classes, in_chans, gf_size="auto", **kw)`` of a HorNet variant: ``metaformer_entry``
    plus the global-local filter (``filter="gf"`` with its ``h, w``) in ``gf_stages``.

    ``gf_size="auto"`` sizes each global filter to its stage's feature map at ``img_size`` (official convention);
    a sequence of ``(h, w)`` pairs (one per gf stage) fixes them. A user-given ``mixer_kwargs_per_stage`` is used as
    is (no global filter is added to it).
    """
    base = metaformer_entry(name, config, doc=doc)
    gf_stages = tuple(gf_stages)

    def fn(*, num_classes: int = 1000, in_chans: int = 3, gf_size: Any = "auto", **kw: Any) -> MetaFormer:
        if gf_stages and "mixer_kwargs_per_stage" not in kw:
            cfg = {**config, **kw}
            if cfg.get("img_size") is None:
                cfg["img_size"] = SMALL_IMG_SIZE if cfg.get("stem") == "small" else 224
            if isinstance(gf_size, str):
                if gf_size != "auto":
                    raise ValueError(f"gf_size must be 'auto' or one (h, w) per global-filter stage, got {gf_size!r}")
                feats = stage_feature_sizes({**cfg, "in_chans": in_chans})
                sizes = [gf_filter_size(feats[i]) if feats[i] is not None else None for i in gf_stages]
            else:
                sizes = [tuple(s) for s in gf_size]
                if len(sizes) != len(gf_stages) or any(len(s) != 2 for s in sizes):
                    raise ValueError(f"gf_size needs one (h, w) pair per global-filter stage {list(gf_stages)}, "
                                     f"got {gf_size!r}")
            per_stage = [dict(d) for d in config["mixer_kwargs_per_stage"]]
            for i, size in zip(gf_stages, sizes):
                per_stage[i]["filter"] = "gf"
                if size is not None:   # unknown feature size: the gnconv defaults (14, 8) apply
                    per_stage[i]["h"], per_stage[i]["w"] = size
            kw["mixer_kwargs_per_stage"] = per_stage
        elif not isinstance(gf_size, str) or gf_size != "auto":
            raise ValueError(f"{name}: gf_size applies only to the global-filter variants (and not together with "
                             f"mixer_kwargs_per_stage)")
        return base(num_classes=num_classes, in_chans=in_chans, **kw)

    fn.__name__ = name
    fn.__doc__ = doc or base.__doc__
    return fn


for _name, (_depths, _dims, _gf, _extra, _pp, _pm) in CONFIGS.items():
    _paper_model = _pp is not None
    _summary = (f"HorNet {_name.split('_', 1)[1]}: depths {_depths}, dims {_dims}, gnConv orders 2-5 (s=1/3), "
                + ("global filter in stages 3-4" if _gf else "7x7 filter")
                + ("" if _paper_model else "; small-input variant (3x3/1 stem), not a paper model"))
    _claims = [Claim(f"{_PARAMS[_name]:,} parameters" + (f" (paper {_pp / 1e6:.0f}M; official code: the same exact "
                                                          f"count)" if _paper_model else " (3 ch, 10 classes)"),
                     "tests/test_hornet.py::test_param_counts")]
    if _paper_model:
        _claims.append(Claim(f"{_pm / 1e9:.1f} GFLOPs (MACs) at 224; ours {_MACS[_name] / 1e9:.3f}G",
                             "tests/test_hornet.py::test_macs_224"))
    register_model(
        _name, family="hornet", slots=SLOTS, paper=papers.HORNET, paper_params=_pp, paper_macs=_pm,
        input_size=(3, 224, 224) if _paper_model else (3, SMALL_IMG_SIZE, SMALL_IMG_SIZE),
        num_classes=1000 if _paper_model else 10,
        reference={"params_1000cls" if _paper_model else "params_3ch_10cls": _PARAMS[_name]}
        | {"macs_224" if _paper_model else "macs_32": _MACS[_name]},
        summary=_summary, claims=tuple(_claims),
        notes="Options: drop_path_rate (official T: 0.2), drop_rate, ls_init_value, stem ('patch'|'small'), "
              "patch_size, img_size, mlp_layout ('linear'|'conv'), head_init_scale, mixer_kwargs_per_stage"
              + (", gf_size ('auto' | ((h, w), (h, w)))" if _gf else "") + ".",
    )(hornet_entry(_name, dict(HORNET, depths=_depths, dims=_dims, **_extra), _gf, doc=_summary))
