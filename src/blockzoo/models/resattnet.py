"""Residual Attention Networks (Wang et al., "Residual Attention Network for Image Classification", CVPR 2017,
arXiv:1704.06904; inventory S105), following the authors' Caffe prototxts (fwang91/residual-attention-network,
``imagenet_model/Attention-56-deploy.prototxt``) where the paper leaves details open.

The attention module (the soft-mask branch, attention residual learning, the ``resattn`` block) is
:mod:`blockzoo.blocks.attention.residual_attention`.

Networks:

- ``resattnet56`` / ``resattnet92`` (ImageNet, paper Table 2): 7x7/2 conv (64) -> BN-ReLU -> 3x3/2 max-pool; stage 1
  (56x56, width 256): 1 unit + m1 modules (3 down-samplings); stage 2 (28x28, 512): 1 stride-2 unit + m2 modules (2);
  stage 3 (14x14, 1024): 1 stride-2 unit + m3 modules (1); stage 4 (7x7, 2048): 3 units, the first with stride 2;
  BN-ReLU, global average pooling, FC. (m1, m2, m3) = (1, 1, 1) for Attention-56 and (1, 2, 3) for Attention-92.
  Parameters at 1000 classes / MACs at 224 px: Attention-56 31,810,728 / 6.27 G (paper 31.9M / 6.3 G: -0.3% /
  -0.5%); Attention-92 52,466,344 / 10.53 G (paper 51.3M / 10.4 G: +2.3% / +1.3%). The Attention-92 gap is in the
  paper's table, not in the layout: the official ``model/Attention-92-deploy.prototxt`` is built from the same units
  as the Attention-56 one, with 2 and 3 modules in stages 2 and 3 (its modules, transitions and stage 4 were read for
  this port), which is what we build; we keep it and record the paper's numbers as ``paper_params`` /
  ``paper_macs``. That prototxt gates the mask with tanh instead of sigmoid (``gate="tanh"``; the paper and the
  Attention-56 prototxt use sigmoid, our default).
- ``resattnet56_cifar`` / ``resattnet92_cifar`` (32 px, the paper's CIFAR experiments): the paper gives their depths
  (36m + 20 weighted layers with m modules per stage and p, t, r = 1, 2, 1) and Attention-92's size (1.9M
  parameters, in its CIFAR comparison table) but no layout. We use a 3x3 stem with 16 channels and the widths of
  ResNet-164 (the baseline it is compared with): stages of width 64/128/256 at 32/16/8 px (bottleneck width / 4),
  m modules in every stage (m = 1: 56 layers, m = 2: 92) with 3/2/1 mask levels as on ImageNet, one unit before the
  modules (stride 2 in stages 2-3) and one after. Attention-92 then has 1,841,242 parameters at 10 classes (paper
  1.9M, -3%; the ImageNet split (1, 2, 3) of modules would give 2.33M). ``img_size``/``in_chans`` make them run on
  28 px Fashion-MNIST (masks 28->14->7->4 etc.).

Slots: ``attn`` (on the residual branch of every trunk residual unit -- pre/trunk/post units of the modules and the
stage units -- before the addition; the mask branch's units never get it), ``norm``, ``act``, ``head``.

"""
from __future__ import annotations

import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.attention.residual_attention import PreActBottleneck, ResidualAttentionModule
from blockzoo.blocks.common.drop import drop_path_schedule
from blockzoo.blocks.common.layers import make_act, make_norm
from blockzoo.errors import ConfigError
from blockzoo.models.base import Backbone, ImageNetStem, init_weights, out_size, parse_once, to_size
from blockzoo.registry import Claim, register_model

__all__ = ["ResidualAttentionNet", "resattnet56", "resattnet92", "resattnet56_cifar", "resattnet92_cifar"]

SLOTS = {"attn": "none", "norm": "bn", "act": "relu", "head": "avg"}


# ------------------------------------------------------------------------------------------------------- networks
class ResidualAttentionNet(Backbone):
    """Stem + stages of (units before, attention modules, units after) + final norm-act + head.

    ``stages``: one tuple ``(width, stride, modules, downsamples, units_before, units_after)`` per stage; the first
    unit before the modules carries the stride and the width change.
    """

    _final_path, _final_is_norm = ("final_norm", "final_act"), True

    def __init__(self, stages: tuple[tuple[int, int, int, int, int, int], ...], *, num_classes: int = 1000,
                 in_chans: int = 3, stem: str = "imagenet", stem_width: int = 64,
                 img_size: int | tuple[int, int] | None = None, p: int = 1, t: int = 2, r: int = 1,
                 gate: str = "sigmoid", mask_bias: bool = False, zero_init_mask: bool = False,
                 align_corners: bool = True, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 model_name: str = "resattnet",
                 attn=SLOTS["attn"], norm=SLOTS["norm"], act=SLOTS["act"], head=SLOTS["head"]):
        super().__init__()
        norm, act = parse_once(norm), parse_once(act)
        self.model_name, self.in_chans, self.num_stages = model_name, in_chans, len(stages)
        feat = to_size(img_size)
        if stem == "imagenet":
            self.stem: nn.Module = ImageNetStem(in_chans, stem_width, norm, act)
            feat = self.track_module(self.stem, feat)
        elif stem in ("cifar", "small"):
            self.stem = nn.Conv2d(in_chans, stem_width, 3, 1, 1, bias=False)
        else:
            raise ConfigError(f"stem must be 'imagenet' (7x7/2 conv + max-pool) or 'cifar'/'small' (3x3 conv), "
                              f"got {stem!r}")
        chans, layers = stem_width, []
        # stochastic depth (not in the paper) on the stages' residual units, linear over the stages' blocks (the
        # attention modules, (1 + M) * T rather than x + f(x), take none)
        dpr = iter(drop_path_schedule([st[2] + st[4] + st[5] for st in stages], drop_path_rate))
        for si, (width, stride, n_mod, n_down, n_before, n_after) in enumerate(stages):
            blocks: list[nn.Module] = []
            feat_out = self.track(feat, stride if n_before else 1)
            self.begin_stage(si, f"stage{si + 1}", feat_out)
            for j in range(n_before):
                s = stride if j == 0 else 1
                blocks.append(PreActBottleneck(chans, width, s, norm=norm, act=act,
                                               attn=self.slot_value("attn", attn, si, len(blocks)),
                                               ctx=self.ctx(f"stage{si + 1}.pre{j}.attn", out_size(feat, s)),
                                               drop_path=next(dpr)))
                feat, chans = out_size(feat, s), width
            if n_mod and chans != width:
                raise ConfigError(f"stage {si + 1} has attention modules but no unit to change the width to {width}")
            for k in range(n_mod):
                blocks.append(ResidualAttentionModule(
                    width, n_down, p=p, t=t, r=r, norm=norm, act=act,
                    attn=self.slot_value("attn", attn, si, len(blocks)), gate=gate, mask_bias=mask_bias,
                    zero_init_mask=zero_init_mask, align_corners=align_corners,
                    ctx_fn=self.block_ctx(f"stage{si + 1}.attention{k}", feat)))
                next(dpr)
            for j in range(n_after):
                blocks.append(PreActBottleneck(chans, width, 1, norm=norm, act=act,
                                               attn=self.slot_value("attn", attn, si, len(blocks)),
                                               ctx=self.ctx(f"stage{si + 1}.post{j}.attn", feat),
                                               drop_path=next(dpr)))
                chans = width
            layers.append(nn.Sequential(*blocks))
            self.add_feature(f"stages.{si}", chans)
        self.stages = nn.Sequential(*layers)
        self.final_norm, self.final_act = make_norm(norm, chans), make_act(act)
        self.init_head(chans, num_classes, head, drop_rate)
        init_weights(self)


def _imagenet_stages(mods: tuple[int, int, int]) -> tuple[tuple[int, int, int, int, int, int], ...]:
    return ((256, 1, mods[0], 3, 1, 0), (512, 2, mods[1], 2, 1, 0), (1024, 2, mods[2], 1, 1, 0),
            (2048, 2, 0, 0, 3, 0))


def _cifar_stages(m: int) -> tuple[tuple[int, int, int, int, int, int], ...]:
    return ((64, 1, m, 3, 1, 1), (128, 2, m, 2, 1, 1), (256, 2, m, 1, 1, 1))


_TEST = "tests/models/test_resattnet.py"
_IMAGENET_NOTE = ("Stages as in paper Table 2 and the official prototxts (pre-activation bottlenecks, mask with 3/2/1 "
                  "max-pool levels in stages 1/2/3). {diff}")


@register_model(
    "resattnet56", family="resattnet", slots=SLOTS, paper=papers.RESATTNET, paper_params=31_900_000,
    paper_macs=6.3e9, reference={"params_1000cls": 31_810_728, "macs_224": 6_270_836_736},
    summary="Attention-56 (ImageNet): 7x7 stem, 1/1/1 attention modules in stages 1-3, 3 units in stage 4",
    claims=(Claim("31,810,728 parameters at 1000 classes (paper: 31.9M, 0.3% less)",
                  f"{_TEST}::test_imagenet_param_counts"),
            Claim("6.27 G MACs at 224 px (paper: 6.3 G)", f"{_TEST}::test_imagenet_macs"),
            Claim("top-1 error 21.76% on ImageNet at 224 px (official README)", None, "not checked")),
    notes=_IMAGENET_NOTE.format(diff="Params and MACs within 0.5% of the paper."),
)
def resattnet56(*, num_classes: int = 1000, in_chans: int = 3, **kw) -> ResidualAttentionNet:
    """Attention-56 (ImageNet): one attention module in each of stages 1-3."""
    return ResidualAttentionNet(_imagenet_stages((1, 1, 1)), num_classes=num_classes, in_chans=in_chans,
                                model_name="resattnet56", **kw)


@register_model(
    "resattnet92", family="resattnet", slots=SLOTS, paper=papers.RESATTNET, paper_params=51_300_000,
    paper_macs=10.4e9, reference={"params_1000cls": 52_466_344, "macs_224": 10_533_789_696},
    summary="Attention-92 (ImageNet): 7x7 stem, 1/2/3 attention modules in stages 1-3, 3 units in stage 4",
    claims=(Claim("52,466,344 parameters at 1000 classes: 2.3% above the paper's 51.3M; the structure is that of the "
                  "official Attention-92 prototxt", f"{_TEST}::test_imagenet_param_counts"),
            Claim("10.53 G MACs at 224 px (paper: 10.4 G, +1.3%)", f"{_TEST}::test_imagenet_macs"),
            Claim("4.8% top-5 error on ImageNet (single model, single crop; 320 px test size per the official "
                  "README)", None, "not checked")),
    notes=_IMAGENET_NOTE.format(
        diff="The paper's table says 51.3M parameters / 10.4 G FLOPs; the layout of the official "
             "model/Attention-92-deploy.prototxt (built here) gives 52.47M / 10.53 G MACs (+2.3% / +1.3%). "
             "We keep the official structure and record the paper's numbers as paper_params / paper_macs. That "
             "prototxt uses tanh as the mask gate (gate='tanh'); the paper and the Attention-56 prototxt use sigmoid."),
)
def resattnet92(*, num_classes: int = 1000, in_chans: int = 3, **kw) -> ResidualAttentionNet:
    """Attention-92 (ImageNet): 1, 2 and 3 attention modules in stages 1-3."""
    return ResidualAttentionNet(_imagenet_stages((1, 2, 3)), num_classes=num_classes, in_chans=in_chans,
                                model_name="resattnet92", **kw)


_CIFAR_NOTE = ("The paper does not give the CIFAR layout; blockzoo uses a 3x3 stem (16 ch), stage widths 64/128/256 "
               "(ResNet-164's, the baseline it is compared with), m modules per stage with 3/2/1 mask levels, one unit "
               "before (stride 2 in stages 2-3) and one after the modules of each stage; 36m + 20 weighted layers. "
               "img_size / in_chans for other inputs (e.g. img_size=28, in_chans=1 for Fashion-MNIST).")


@register_model(
    "resattnet56_cifar", family="resattnet", slots=SLOTS, paper=papers.RESATTNET, input_size=(3, 32, 32),
    num_classes=10, reference={"params_3ch_10cls": 1_030_362, "params_1ch_10cls": 1_030_074},
    summary="Attention-56 for 32 px: 3x3 stem, widths 64/128/256, one attention module per stage",
    claims=(Claim("1,030,362 parameters (3 channels, 10 classes)", f"{_TEST}::test_cifar_param_counts"),),
    notes=_CIFAR_NOTE,
)
def resattnet56_cifar(*, num_classes: int = 10, in_chans: int = 3, **kw) -> ResidualAttentionNet:
    """Attention-56 for 32 px inputs: 3 stages (64/128/256) with one attention module each."""
    kw.setdefault("img_size", 32)
    kw.setdefault("stem", "cifar")
    kw.setdefault("stem_width", 16)
    return ResidualAttentionNet(_cifar_stages(1), num_classes=num_classes, in_chans=in_chans,
                                model_name="resattnet56_cifar", **kw)


@register_model(
    "resattnet92_cifar", family="resattnet", slots=SLOTS, paper=papers.RESATTNET, input_size=(3, 32, 32),
    num_classes=10, paper_params=1_900_000, reference={"params_3ch_10cls": 1_841_242, "params_1ch_10cls": 1_840_954},
    summary="Attention-92 for 32 px: 3x3 stem, widths 64/128/256, two attention modules per stage",
    claims=(Claim("1,841,242 parameters (3 channels, 10 classes); the paper's CIFAR table: 1.9M (3% less; the "
                  "paper gives no CIFAR layout)", f"{_TEST}::test_cifar_param_counts"),
            Claim("CIFAR-10 error 4.99%, CIFAR-100 21.71% (paper's CIFAR comparison table)", None, "not checked")),
    notes=_CIFAR_NOTE + " With the ImageNet split of modules (1, 2, 3) at these widths it would have 2.33M "
                        "parameters, further from the paper's 1.9M, so m = 2 in every stage.",
)
def resattnet92_cifar(*, num_classes: int = 10, in_chans: int = 3, **kw) -> ResidualAttentionNet:
    """Attention-92 for 32 px inputs: 3 stages (64/128/256) with two attention modules each."""
    kw.setdefault("img_size", 32)
    kw.setdefault("stem", "cifar")
    kw.setdefault("stem_width", 16)
    return ResidualAttentionNet(_cifar_stages(2), num_classes=num_classes, in_chans=in_chans,
                                model_name="resattnet92_cifar", **kw)
