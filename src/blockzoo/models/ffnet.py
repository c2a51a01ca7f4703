"""FFNet (Fast-Forward Networks) on the MetaFormer skeleton: FFNified-attention token mixer + conv FFN channel mixer.

Yun, Lee, Ro, "MetaMixer Is All You Need" (arXiv:2406.02021 [S040]); official code ysj9909/FFNet
``models/ffnet.py`` (``FFNet``, ``FFBlock``, ``PatchMerging``, ``ffnet_1`` ... ``ffnet_4``).

Configuration of :class:`blockzoo.models.metaformer.MetaFormer` with FFNet's own pieces (written here, not in the
skeleton):

- **stem** (:class:`FFNetStem`): ``Conv3x3/2(3 -> 64) -> BN -> GELU -> Conv3x3/2(64 -> C0) -> BN`` (official
  ``patch_embed``; convs without bias; the BN/GELU are the model's ``norm``/``act`` slots).
- **downsampling** (:class:`FFNetDownsample`, official ``PatchMerging``): a stride-2 re-parameterisable depthwise conv
  ``C_{i-1} -> C_i`` (7x7 BN + 3x3 BN branches, ``groups = C_{i-1}``, so each input channel feeds two outputs),
  then ``x + Conv1x1(BN(x))`` (official ``Conv2d_BN_skip``: BN before a bias-free 1x1 conv, identity skip).
- **block** (:class:`FFBlock`, official ``FFBlock``)::

      x = x + DP(LS1(attn(mixer(x))))                      # token mixer = ``ffnified`` (no pre-norm: BN inside)
      x = x + DP(LS2(Mlp(DWConvBN_k(x))))                  # channel mixer: dw conv -> 1x1 (3x, bias) -> GELU -> 1x1

  The channel mixer's depthwise conv is a :class:`~blockzoo.blocks.mixers.ffnified.RepDWConv` (7x7 + 3x3, BN) when
  ``kernel_size == 7`` and a dw conv -> BN otherwise (official ``Channel_Mixer``). ``mlp_ratio`` = 3 (official
  ``expansion_ratios``). Token-mixer kernels per stage: k1 = k2 = 3, 3, 7, 7 (``mixer_kwargs_per_stage``, applied
  only while the mixer is ``ffnified``).
- **head**: BN on the last feature map -> global average pooling -> Linear (``head_norm="pre"``; official ``norm``
  is BatchNorm2d unless ``layer_norm_last``).
- layer scale: none for FFNet-1/2, ``1e-6`` for FFNet-3/4 (official ``use_layer_scale``); stochastic depth linear
  over all blocks (official 0.1 / 0.15 / 0.35 / 0.4; ours default 0 like every blockzoo model, pass
  ``drop_path_rate``). Init: trunc-normal(0.02) convs/linears, zero biases, BN 1/0 (official ``_init_weights``).

Where we depart (documented choices)
------------------------------------
- The ``attn`` slot sits after the token mixer *inside* its residual branch (skeleton convention); the official
  optional SE (``use_ses``, False in every released config) is applied *after* the token mixer's residual add.
- ``ffnet_nano`` is ours (not in the paper): depths (2, 2, 6, 2), widths (32, 64, 128, 256), FFNet-1's kernels,
  and a stride-1 FFNet stem with 32 intermediate channels (``ffnet_stem(32, stride=1)``) for 28-32 px inputs
  (feature sizes 32/16/8/4 at 32 px).
  Any FFNet accepts ``stem="small"`` (the skeleton's 3x3/1 conv + norm stem) and ``img_size``.

Paper (README / paper table, ImageNet-1K, 256 px) vs ours (1000 classes). Params exact (asserted in
``tests/test_aff_ffnet.py``); MACs with ``blockzoo.profile.count_macs`` (convs and linears only) at 256 px, in the
deploy form (``reparameterize_ffnet(model)``) and in the training form (re-param branches unfused); FFNet-4 at
384 px, as in the paper:

========= ============= ====================== ====================== =========== ================ ===============
model     params paper  params ours (deploy)   params ours (train)    FLOPs paper MACs (deploy)    MACs (train)
========= ============= ====================== ====================== =========== ================ ===============
FFNet-1   13.7M         13,660,152 (-0.29%)    13,775,656 (+0.55%)    2.9G        2.985G (+2.9%)   3.001G (+3.5%)
FFNet-2   26.9M         26,908,440 (+0.03%)    27,208,408 (+1.15%)    6.0G        6.003G (+0.1%)   6.061G (+1.0%)
FFNet-3   48.3M         48,330,632 (+0.06%)    48,817,896 (+1.07%)    10.1G       10.146G (+0.5%)  10.236G (+1.3%)
FFNet-4   79.2M         79,200,360 (+0.00%)    79,868,968 (+0.84%)    43.1G @384  43.122G (+0.05%) 43.422G (+0.7%)
========= ============= ====================== ====================== =========== ================ ===============

The paper's counts match the **deploy** (re-parameterised) network, the form the official
``export_model.replace_batchnorm`` produces (every ``Conv2d_BN``, ``RepVGGDW`` and ``Conv2d_BN_skip`` fused); the
training form has +0.6 to +1.2% parameters (the 3x3 branches and BNs). Deploy-form params are within 0.3% and MACs
within 3% of the paper for all four models (FFNet-4 to 0.05%; FFNet-1's 2.985G is printed as 2.9G).
"""
from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from blockzoo.blocks.mixers.ffnified import FFNET, ConvBN, FFNifiedAttention, RepDWConv, fuse_conv_bn
from blockzoo.models.base import out_size
from blockzoo.models.metaformer import DropPath, LayerScale, Mlp, metaformer_entry
from blockzoo.registry import Claim, register_model

__all__ = ["FFNetStem", "FFNetDownsample", "FFBlock", "ffnet_stem", "reparameterize_ffnet"]


class FFNetStem(nn.Sequential):
    """``Conv3x3/s(in -> mid, no bias) -> norm -> act -> Conv3x3/s(mid -> dim, no bias) -> norm`` (official
    ``patch_embed`` with s = 2, mid = 64)."""

    def __init__(self, in_chans: int, dim: int, norm_layer: Callable[[int], nn.Module],
                 act_layer: Callable[[], nn.Module], mid: int = 64, stride: int = 2):
        super().__init__(
            nn.Conv2d(in_chans, mid, 3, stride, 1, bias=False), norm_layer(mid), act_layer(),
            nn.Conv2d(mid, dim, 3, stride, 1, bias=False), norm_layer(dim))
        self.stride = stride

    def out_size(self, size: tuple[int, int] | None) -> tuple[int, int] | None:
        return out_size(out_size(size, self.stride, 3, 1), self.stride, 3, 1)


def ffnet_stem(mid: int = 64, stride: int = 2) -> Callable[..., FFNetStem]:
    """A stem callable for :class:`MetaFormer` (``stem=ffnet_stem(stride=1)`` for 28-32 px inputs)."""
    def make(in_chans: int, dim: int, norm_layer, act_layer) -> FFNetStem:
        return FFNetStem(in_chans, dim, norm_layer, act_layer, mid=mid, stride=stride)
    make.__name__ = f"ffnet_stem_s{stride}"
    return make


class _PreNormConvSkip(nn.Module):
    """``x + Conv1x1(BN(x))`` (official ``Conv2d_BN_skip`` / ``BN_Conv2d``; the conv has no bias)."""

    def __init__(self, dim: int, norm_layer: Callable[[int], nn.Module]):
        super().__init__()
        self.norm = norm_layer(dim)
        self.conv = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.norm(x))

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """The single 1x1 conv (with bias) equal to ``x + conv(bn(x))`` in eval mode (BatchNorm only)."""
        bn, w = self.norm, self.conv.weight[:, :, 0, 0]
        if not isinstance(bn, nn.BatchNorm2d):
            raise TypeError(f"only a BatchNorm2d can be folded into the 1x1 conv, got {type(bn).__name__}")
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        conv = nn.Conv2d(w.shape[1], w.shape[0], 1, bias=True).to(w.device)
        conv.weight.copy_((w * scale[None, :] + torch.eye(w.shape[0], device=w.device))[:, :, None, None])
        conv.bias.copy_(w @ shift)
        return conv


class FFNetDownsample(nn.Sequential):
    """Official ``PatchMerging``: stride-2 :class:`RepDWConv` (7x7 + 3x3, ``in -> out``, groups = in) followed by
    ``x + Conv1x1(BN(x))``."""

    def __init__(self, in_dim: int, out_dim: int, norm_layer: Callable[[int], nn.Module],
                 act_layer: Callable[[], nn.Module] | None = None, stage_idx: int = 0):
        if out_dim % in_dim != 0:
            raise ValueError(f"FFNet downsampling is depthwise (groups = in_dim): out_dim {out_dim} must be a "
                             f"multiple of in_dim {in_dim}")
        super().__init__(RepDWConv(in_dim, out_dim, 7, stride=2), _PreNormConvSkip(out_dim, norm_layer))

    def out_size(self, size: tuple[int, int] | None) -> tuple[int, int] | None:
        return out_size(size, 2, 7, 3)


class FFBlock(nn.Module):
    """FFNet block: ``x + DP(LS1(attn(mixer(x))))`` then ``x + DP(LS2(Mlp(DWConvBN(x))))`` (no pre-norms)."""

    def __init__(self, dim: int, *, mixer: nn.Module, attn: nn.Module | None = None,
                 norm_layer: Callable[[int], nn.Module], act_layer: Callable[[], nn.Module], mlp_ratio: float = 3.0,
                 ls_init_value: float | None = None, drop_path: float = 0.0, mlp_layout: str = "conv",
                 kernel_size: int = 7, feat_size=None, ctx=None):
        super().__init__()
        self.mixer = mixer
        self.attn = attn if attn is not None else nn.Identity()
        self.ls1 = LayerScale(dim, ls_init_value) if ls_init_value is not None else nn.Identity()
        if kernel_size == 7:
            self.dwconv: nn.Module = RepDWConv(dim, dim, 7)
        else:
            if kernel_size % 2 != 1:
                raise ValueError(f"FFNet channel-mixer kernel_size must be odd, got {kernel_size}")
            self.dwconv = nn.Sequential(nn.Conv2d(dim, dim, kernel_size, 1, kernel_size // 2, groups=dim, bias=False),
                                        norm_layer(dim))
        self.mlp = Mlp(dim, int(mlp_ratio * dim), act_layer, layout=mlp_layout)
        self.ls2 = LayerScale(dim, ls_init_value) if ls_init_value is not None else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.ls1(self.attn(self.mixer(x))))
        return x + self.drop_path(self.ls2(self.mlp(self.dwconv(x))))


@torch.no_grad()
def reparameterize_ffnet(model: nn.Module) -> nn.Module:
    """Deploy form, as the official ``export_model.replace_batchnorm`` (call in eval mode; in place; returns ``model``).

    Folds every re-param branch (:class:`RepDWConv` -> one k x k conv), every ``conv -> BatchNorm2d`` pair (stem,
    query projection, channel-mixer dw conv) and every downsampling ``x + Conv1x1(BN(x))`` (-> one 1x1 conv with the
    identity added to its weight). The head BN stays (as in the official export). The output is unchanged.
    """
    for m in list(model.modules()):
        if isinstance(m, FFNifiedAttention):
            m.reparameterize()
        for name, child in list(m.named_children()):
            if isinstance(child, (RepDWConv, ConvBN, _PreNormConvSkip)):
                setattr(m, name, child.fuse())
        if isinstance(m, nn.Sequential) and not isinstance(m, ConvBN):
            kids = list(m.named_children())
            for (n1, c1), (n2, c2) in zip(kids, kids[1:]):
                if isinstance(c1, nn.Conv2d) and isinstance(c2, nn.BatchNorm2d):
                    w, b = fuse_conv_bn(c1, c2)
                    conv = nn.Conv2d(c1.in_channels, c1.out_channels, c1.kernel_size, c1.stride, c1.padding,
                                     c1.dilation, c1.groups, bias=True).to(w.device)
                    conv.weight.copy_(w)
                    conv.bias.copy_(b)
                    setattr(m, n1, conv)
                    setattr(m, n2, nn.Identity())
    return model


# ------------------------------------------------------------------------------------------------- registrations
SLOTS = {"mixer": "ffnified", "norm": "bn", "act": "gelu", "attn": "none", "head": "avg"}
_MIXER_KS = [{"kernel_size": k} for k in (3, 3, 7, 7)]      # official kernel_sizes1 = kernel_sizes2 = [3, 3, 7, 7]


def _config(depths, dims, kernel_size: int, ls: float | None, stem_stride: int = 2) -> dict[str, Any]:
    return dict(depths=depths, dims=dims, block=FFBlock, block_kwargs={"kernel_size": kernel_size}, mlp_ratios=3.0,
                mlp_layout="conv", ls_init_value=ls, stem=ffnet_stem(64 if stem_stride == 2 else 32, stem_stride),
                downsample=FFNetDownsample, head_norm="pre", mixer_kwargs_per_stage=_MIXER_KS,
                mixer_kwargs_for="ffnified")


# name: (depths, dims, channel-mixer kernel, layer scale, input size, paper params, paper FLOPs (MACs) at that size)
CONFIGS = {
    "ffnet_1": ((2, 2, 8, 2), (80, 160, 320, 640), 3, None, 256, 13.7e6, 2.9e9),
    "ffnet_2": ((3, 3, 15, 3), (88, 176, 352, 704), 7, None, 256, 26.9e6, 6.0e9),
    "ffnet_3": ((4, 4, 22, 5), (96, 192, 384, 768), 7, 1e-6, 256, 48.3e6, 10.1e9),
    "ffnet_4": ((4, 4, 27, 3), (128, 256, 512, 1024), 7, 1e-6, 384, 79.2e6, 43.1e9),
}


def _with_deploy(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """A registered FFNet gets ``model.reparameterize()`` = :func:`reparameterize_ffnet`, so the generic
    :func:`blockzoo.deploy.reparameterize` (and ``blockzoo profile --deploy``) gives the full deploy form."""
    @functools.wraps(build)
    def wrapped(*args: Any, **kwargs: Any) -> nn.Module:
        model = build(*args, **kwargs)
        model.reparameterize = types.MethodType(reparameterize_ffnet, model)
        return model
    return wrapped


# exact counts of our builds (1000 classes, 3 input channels): parameters and MACs at 256 px, in the training form
# and in the deploy form (reparameterize_ffnet: re-param branches and BNs folded, as the official export)
_PARAMS = {"ffnet_1": 13_775_656, "ffnet_2": 27_208_408, "ffnet_3": 48_817_896, "ffnet_4": 79_868_968}
_PARAMS_DEPLOY = {"ffnet_1": 13_660_152, "ffnet_2": 26_908_440, "ffnet_3": 48_330_632, "ffnet_4": 79_200_360}
# MACs at the paper's input size (256 px; 384 px for ffnet_4)
_MACS = {"ffnet_1": 3_000_681_472, "ffnet_2": 6_060_932_608, "ffnet_3": 10_235_590_656, "ffnet_4": 43_422_097_408}
_MACS_DEPLOY = {"ffnet_1": 2_984_829_952, "ffnet_2": 6_003_351_040, "ffnet_3": 10_146_232_320,
                "ffnet_4": 43_122_171_904}
_T = "tests/test_aff_ffnet.py::"
_NOTES = ("Options: drop_path_rate (official 0.1/0.15/0.35), drop_rate, ls_init_value, img_size, stem (default FFNet "
          "conv-BN-GELU-conv-BN stem; 'small' = 3x3/1 conv + norm), mlp_layout ('conv'|'linear'), block_kwargs="
          "{'kernel_size': k} (channel-mixer dw kernel), mixer_kwargs_per_stage. reparameterize_ffnet(model) gives the "
          "deploy form.")

for _name, (_d, _w, _k, _ls, _size, _pp, _pm) in CONFIGS.items():
    register_model(
        _name, family="ffnet", slots=SLOTS, paper=FFNET, input_size=(3, _size, _size), paper_params=int(_pp),
        paper_macs=_pm,
        reference={"params_1000cls": _PARAMS[_name], "params_1000cls_deploy": _PARAMS_DEPLOY[_name],
                   f"macs_{_size}": _MACS[_name], f"macs_{_size}_deploy": _MACS_DEPLOY[_name]},
        summary=f"FFNet-{_name[-1]}: depths {_d}, dims {_w}, FFNified attention (k 3,3,7,7) + conv FFN (dw {_k}x{_k}, "
                f"3x), BN, {_size} px",
        claims=(Claim(f"{_PARAMS_DEPLOY[_name]:,} parameters in the deploy form ({_PARAMS[_name]:,} training form; "
                      f"paper {_pp / 1e6:.1f}M)", _T + "test_ffnet_param_counts"),
                Claim(f"{_pm / 1e9:.1f} GFLOPs (MACs) at {_size} px (ours {_MACS_DEPLOY[_name] / 1e9:.3f}G deploy)",
                      _T + "test_ffnet_macs")),
        notes=_NOTES,
    )(_with_deploy(metaformer_entry(_name, _config(_d, _w, _k, _ls), default_img_size=_size,
                                    doc=f"FFNet ({_name}): depths {_d}, dims {_w}, channel-mixer kernel {_k}")))

_NANO_PARAMS = 1_992_874
register_model(
    "ffnet_nano", family="ffnet", slots=SLOTS, paper=FFNET, input_size=(3, 32, 32), num_classes=10,
    reference={"params_3ch_10cls": _NANO_PARAMS},
    summary="FFNet for 28-32 px inputs (ours, not in the paper): depths (2, 2, 6, 2), dims (32, 64, 128, 256), "
            "stride-1 FFNet stem",
    claims=(Claim(f"{_NANO_PARAMS:,} parameters (10 classes)", _T + "test_ffnet_param_counts"),),
    notes=_NOTES,
)(_with_deploy(metaformer_entry("ffnet_nano", _config((2, 2, 6, 2), (32, 64, 128, 256), 3, None, stem_stride=1),
                                default_img_size=32,
                                doc="FFNet nano for 28-32 px inputs (stride-1 stem; 32/16/8/4 features)")))
