"""HorNet backbones (Rao et al., "HorNet: Efficient High-Order Spatial Interactions with Recursive Gated Convolutions",
NeurIPS 2022, arXiv:2207.14284 [S013]) on the MetaFormer skeleton.

Configuration of :class:`blockzoo.models.metaformer.MetaFormer` following the official ``hornet.py``: patchify stem
(4x4/4 conv + LayerNorm), LayerNorm + 2x2/2 conv downsampling, widths ``base_dim * (1, 2, 4, 8)``; HorNet block =
the skeleton's pre-norm ``"metaformer"`` block: ``x + DP(gamma1 * gnconv(LN(x)))`` then
``x + DP(gamma2 * MLP(LN(x)))`` (MLP 4x, GELU; layer scale 1e-6; LayerNorm eps 1e-6); gnConv orders 2, 3, 4, 5 in
stages 1-4 with ``s = 1/3`` (the registered per-stage default of the ``mixer`` slot, ``[gnconv(order=2), ...,
gnconv(order=5)]``, so ``mixer="dwconv"`` replaces it as a whole); head = GAP -> LayerNorm -> FC. Init:
trunc-normal(0.02) convs/linears, zero biases (official ``uniform_init=False``); ``head_init_scale`` option.
Stochastic depth ``drop_path_rate`` linear over all blocks (official HorNet-T: 0.2). The mixer is in
:mod:`blockzoo.blocks.mixers.gnconv`.

- ``hornet_tiny_7x7``: depths (2, 3, 18, 2), base dim 64, 7x7 depthwise filter in every gnConv.
- ``hornet_tiny_gf``: the same with the global-local filter in stages 3 and 4 only (official ``hornet_tiny_gf``:
  stages 1-2 keep the 7x7 filter). The global filter's weight is sized to the half spectrum ``(H, W // 2 + 1)`` of
  its stage's feature map at ``img_size`` (any ``gnconv(filter=gf)`` mixer value without ``h``/``w`` is sized so,
  in any HorNet) -- 14 x 8 and 7 x 4 at 224 px, exactly the official values (and 24 x 13 /
  12 x 7 at 384 px, the official ``*_gf_img384`` values), so the parameter count depends on ``img_size``.
  ``gf_size=((14, 8), (7, 4))`` fixes the sizes instead (e.g. to keep the 224-px weights at another resolution, which
  are then interpolated at run time, the official behaviour).
- ``hornet_atto`` (**not a paper model**): a CIFAR / Fashion-MNIST size HorNet for 28-32 px inputs with ConvNeXt-atto's
  depths and widths (2, 2, 6, 2) / (40, 80, 160, 320), gnConv orders 2-5 with the 7x7 filter and the 3x3/1
  ``stem="small"`` (feature maps 32, 16, 8, 4 at 32 px); 10 classes by default. Comparable one-to-one with
  ``create_model("convnext_atto", stem="small")``; ``create_model("convnext_atto", mixer="gnconv", stem="small")``
  is a ConvNeXt (MetaNeXt block) with gnConv mixers of one fixed order instead.

The paper's and our exact numbers are in the registry (``blockzoo info <model>``, ``docs/catalog.md``); paper
figures: the official README, which rounds to 1M / 0.1G (mmpretrain's converted checkpoints give 22.41M / 3.98G and
22.99M / 3.90G, which ours match to 0.01% / 0.3%; against the README's 4.0G the 7x7 model is -0.8%). Params are
exact and equal to the official code's count, which ``tests/models/test_hornet.py::test_param_counts`` derives in closed
form from the official layer list; MACs with ``blockzoo.profile.count_macs`` (convs, linears and FFTs with HorNet's
``N log2 N`` convention over the transformed dims; LayerNorms, biases and elementwise products uncounted -- fvcore
also counts the LayerNorms, hence our slightly lower numbers).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

from blockzoo import papers
from blockzoo.errors import ConfigError
from blockzoo.models.base import PerBlock, per_stage_values
from blockzoo.models.metaformer import SMALL_IMG_SIZE, MetaFormer, metaformer_entry
from blockzoo.registry import Claim, parse_slot_value, register_model

__all__ = ["HORNET", "SLOTS", "CONFIGS", "gnconv_mixers", "hornet_entry", "stage_feature_sizes", "gf_filter_size"]

ORDERS = (2, 3, 4, 5)


def gnconv_mixers(gf_stages: Sequence[int] = ()) -> list[str]:
    """The per-stage ``mixer`` value of a HorNet: gnConv of order 2, 3, 4, 5 (``s = 1/3``, the gnconv default), with
    the global-local filter in ``gf_stages`` (sized to its stage's feature map by :func:`hornet_entry`)."""
    return [f"gnconv(order={o}" + (", filter=gf" if i in gf_stages else "") + ")" for i, o in enumerate(ORDERS)]


SLOTS = {"mixer": gnconv_mixers(), "norm": "ln2d", "act": "gelu", "attn": "none", "head": "avg",
         "connection": "residual"}

HORNET = dict(block="metaformer", mlp_ratios=4.0, ls_init_value=1e-6, stem="patch", downsample="patch",
              head_norm="post")

# name: (depths, dims, global-filter stages, extra config, paper params, paper MACs)
CONFIGS: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], dict[str, Any], int | None,
                         float | None]] = {
    "hornet_tiny_7x7": ((2, 3, 18, 2), (64, 128, 256, 512), (), {}, 22_000_000, 4.0e9),
    "hornet_tiny_gf": ((2, 3, 18, 2), (64, 128, 256, 512), (2, 3), {}, 23_000_000, 3.9e9),
    "hornet_atto": ((2, 2, 6, 2), (40, 80, 160, 320), (), {"stem": "small"}, None, None),
}

# exact parameter counts of our builds (3 input channels; 1000 classes, hornet_atto 10); tests/models/test_hornet.py
_PARAMS = {"hornet_tiny_7x7": 22_409_512, "hornet_tiny_gf": 22_991_848, "hornet_atto": 4_840_730}
# MACs at 224 px (hornet_atto: 32 px) with blockzoo.profile.count_macs; asserted by the slow test
_MACS = {"hornet_tiny_7x7": 3_968_389_312, "hornet_tiny_gf": 3_899_296_288, "hornet_atto": 255_672_320}


def gf_filter_size(feat: tuple[int, int]) -> tuple[int, int]:
    """The global filter size ``(H, W // 2 + 1)`` (the rFFT half spectrum) for an ``H x W`` feature map."""
    return int(feat[0]), int(feat[1]) // 2 + 1


def stage_feature_sizes(config: dict[str, Any]) -> list[tuple[int, int] | None]:
    """Per-stage feature sizes of a MetaFormer ``config`` (as the skeleton computes them: a block-less probe built on
    the meta device, so custom stems/downsamplers with ``out_size`` are honoured)."""
    probe_cfg = dict(config)
    probe_cfg["depths"] = [0] * len(config["depths"])
    probe_cfg["num_classes"] = 0
    with torch.device("meta"):
        probe = MetaFormer(**probe_cfg)
    return list(probe.feature_sizes)


def hornet_entry(name: str, config: dict[str, Any], *, doc: str = "") -> Callable[..., MetaFormer]:
    """Constructor ``fn(*, num_classes, in_chans, gf_size="auto", **kw)`` of a HorNet variant: ``metaformer_entry``
    plus the sizes of the global-local filters.

    A ``gnconv(filter='gf')`` mixer value without ``h``/``w`` (single or per stage) gets the half spectrum of its
    stage's feature map at ``img_size`` with ``gf_size="auto"`` (official convention); a sequence of ``(h, w)``
    pairs, one per global-filter stage, fixes them instead.
    """
    base = metaformer_entry(name, config, doc=doc)

    def fn(*, num_classes: int = 1000, in_chans: int = 3, gf_size: Any = "auto", **kw: Any) -> MetaFormer:
        cfg = {**config, **kw}
        n = len(cfg["depths"])
        mixers = per_stage_values(cfg.get("mixer", SLOTS["mixer"]))
        if mixers is None and not isinstance(cfg.get("mixer"), PerBlock):
            mixers = [cfg.get("mixer")] * n
        gf = [i for i, v in enumerate(mixers or []) if i < n and _is_unsized_gf(v)]
        if isinstance(gf_size, str) and gf_size != "auto":
            raise ConfigError(f"gf_size must be 'auto' or one (h, w) per global-filter stage, got {gf_size!r}")
        if not isinstance(gf_size, str) and not gf:
            raise ConfigError(f"{name}: gf_size applies only to global-filter gnconv mixers (filter='gf' without h, w)")
        if gf:
            if isinstance(gf_size, str):
                if cfg.get("img_size") is None:
                    cfg["img_size"] = SMALL_IMG_SIZE if cfg.get("stem") == "small" else 224
                feats = stage_feature_sizes({**cfg, "in_chans": in_chans})
                sizes = [gf_filter_size(feats[i]) if feats[i] is not None else None for i in gf]
            else:
                sizes = [tuple(s) for s in gf_size]
                if len(sizes) != len(gf) or any(len(s) != 2 for s in sizes):
                    raise ConfigError(f"gf_size needs one (h, w) pair per global-filter stage {gf}, got {gf_size!r}")
            mixers = list(mixers)
            for i, size in zip(gf, sizes):
                if size is not None:   # unknown feature size: the gnconv defaults (14, 8) apply
                    mname, mkw = parse_slot_value(mixers[i])
                    mixers[i] = (mname, {**mkw, "h": size[0], "w": size[1]})
            kw["mixer"] = mixers
        return base(num_classes=num_classes, in_chans=in_chans, **kw)

    fn.__name__ = name
    fn.__doc__ = doc or base.__doc__
    sig = inspect.signature(base)         # the variant's config as option defaults, plus gf_size
    *params, var_kw = sig.parameters.values()
    fn.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[*params, inspect.Parameter("gf_size", inspect.Parameter.KEYWORD_ONLY, default="auto"), var_kw])
    return fn


def _is_unsized_gf(value: Any) -> bool:
    name, kw = parse_slot_value(value)
    return name == "gnconv" and kw.get("filter") == "gf" and "h" not in kw and "w" not in kw


def _spec(name: str) -> dict[str, Any]:
    """register_model arguments of a HorNet variant (numbers from the tables above)."""
    depths, dims, gf, _, pp, pm = CONFIGS[name]
    paper_model = pp is not None
    claims = [Claim(f"{_PARAMS[name]:,} parameters" + (f" (paper {pp / 1e6:.0f}M; official code: the same exact "
                                                       f"count)" if paper_model else " (3 ch, 10 classes)"),
                    "tests/models/test_hornet.py::test_param_counts")]
    if paper_model:
        claims.append(Claim(f"{pm / 1e9:.1f} GFLOPs (MACs) at 224; ours {_MACS[name] / 1e9:.3f}G",
                            "tests/models/test_hornet.py::test_macs_224"))
    return dict(
        family="hornet", slots={**SLOTS, "mixer": gnconv_mixers(gf)}, paper=papers.HORNET, paper_params=pp,
        paper_macs=pm, input_size=(3, 224, 224) if paper_model else (3, SMALL_IMG_SIZE, SMALL_IMG_SIZE),
        num_classes=1000 if paper_model else 10,
        reference={"params_1000cls" if paper_model else "params_3ch_10cls": _PARAMS[name]}
        | {"macs_224" if paper_model else "macs_32": _MACS[name]},
        summary=_summary(name), claims=tuple(claims),
        notes="official drop_path_rate for T: 0.2" + ("; gf_size: 'auto' or ((h, w), (h, w))" if gf else "") + ".")


def _summary(name: str) -> str:
    depths, dims, gf, _, pp, _ = CONFIGS[name]
    return (f"HorNet {name.split('_', 1)[1]}: depths {depths}, dims {dims}, gnConv orders 2-5 (s=1/3), "
            + ("global filter in stages 3-4" if gf else "7x7 filter")
            + ("" if pp is not None else "; small-input variant (3x3/1 stem), not a paper model"))


def _entry(name: str) -> Callable[..., MetaFormer]:
    depths, dims, _, extra, _, _ = CONFIGS[name]
    return hornet_entry(name, dict(HORNET, depths=depths, dims=dims, **extra), doc=_summary(name))


register_model("hornet_tiny_7x7", **_spec("hornet_tiny_7x7"))(_entry("hornet_tiny_7x7"))
register_model("hornet_tiny_gf", **_spec("hornet_tiny_gf"))(_entry("hornet_tiny_gf"))
register_model("hornet_atto", **_spec("hornet_atto"))(_entry("hornet_atto"))
