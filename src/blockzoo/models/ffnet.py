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
  ``expansion_ratios``). Token-mixer kernels per stage: k1 = k2 = 3, 3, 7, 7 (the registered per-stage default of
  the ``mixer`` slot, ``[ffnified(kernel_size=3), ..., ffnified(kernel_size=7)]``).
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

The paper's and our exact numbers are in the registry (``blockzoo info <model>``, ``docs/catalog.md``), in the
training and the deploy form (``blockzoo.deploy.reparameterize(model)``). Paper: README / paper table, ImageNet-1K,
256 px (FFNet-4 at 384 px). Params exact (asserted in ``tests/models/test_ffnet.py``); MACs with
``blockzoo.profile.count_macs`` (convs and linears only).

The paper's counts match the **deploy** (re-parameterised) network, the form the official
``export_model.replace_batchnorm`` produces (every ``Conv2d_BN``, ``RepVGGDW`` and ``Conv2d_BN_skip`` fused); the
training form has +0.6 to +1.2% parameters (the 3x3 branches and BNs). Deploy-form params are within 0.3% and MACs
within 3% of the paper for all four models (FFNet-4 to 0.05%; FFNet-1's 2.985G is printed as 2.9G).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from blockzoo.blocks.common.drop import make_drop_path
from blockzoo.blocks.common.layer_scale import layer_scale
from blockzoo.blocks.common.mlp import Mlp
from blockzoo.blocks.mixers.ffnified import RepDWConv
from blockzoo.deploy.reparam import bn_scale_shift, fuse_conv_bn
from blockzoo.errors import ConfigError
from blockzoo.models.base import out_size
from blockzoo.models.metaformer import metaformer_entry
from blockzoo.papers import FFNET
from blockzoo.registry import Claim, register_model

__all__ = ["FFNetStem", "FFNetDownsample", "FFBlock", "ffnet_stem"]


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

    def reparameterize(self) -> None:
        """Deploy hook: each ``conv -> BatchNorm2d`` pair becomes one biased conv (the BN an identity)."""
        for i in range(len(self) - 1):
            if isinstance(self[i], nn.Conv2d) and isinstance(self[i + 1], nn.BatchNorm2d):
                self[i], self[i + 1] = fuse_conv_bn(self[i], self[i + 1]), nn.Identity()


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
    def fuse(self) -> nn.Module:
        """Deploy hook: the single 1x1 conv (with bias) equal to ``x + conv(bn(x))`` in eval mode; ``self`` when the
        norm is not a BatchNorm (nothing to fold)."""
        if not isinstance(self.norm, nn.BatchNorm2d):
            return self
        scale, shift = bn_scale_shift(self.norm)
        w = self.conv.weight[:, :, 0, 0]
        w64 = w.double()
        conv = nn.Conv2d(w.shape[1], w.shape[0], 1, bias=True, device=w.device, dtype=w.dtype)
        eye = torch.eye(w.shape[0], device=w.device, dtype=torch.float64)
        conv.weight.copy_((w64 * scale[None, :] + eye)[:, :, None, None].to(w.dtype))
        conv.bias.copy_((w64 @ shift).to(w.dtype))
        return conv


class FFNetDownsample(nn.Sequential):
    """Official ``PatchMerging``: stride-2 :class:`RepDWConv` (7x7 + 3x3, ``in -> out``, groups = in) followed by
    ``x + Conv1x1(BN(x))``."""

    def __init__(self, in_dim: int, out_dim: int, norm_layer: Callable[[int], nn.Module],
                 act_layer: Callable[[], nn.Module] | None = None, stage_idx: int = 0):
        if out_dim % in_dim != 0:
            raise ConfigError(f"FFNet downsampling is depthwise (groups = in_dim): out_dim {out_dim} must be a "
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
        self.ls1 = layer_scale(dim, ls_init_value)
        if kernel_size == 7:
            self.dwconv: nn.Module = RepDWConv(dim, dim, 7)
        else:
            if kernel_size % 2 != 1:
                raise ConfigError(f"FFNet channel-mixer kernel_size must be odd, got {kernel_size}")
            self.dwconv = nn.Sequential(nn.Conv2d(dim, dim, kernel_size, 1, kernel_size // 2, groups=dim, bias=False),
                                        norm_layer(dim))
        self.mlp = Mlp(dim, int(mlp_ratio * dim), act_layer, layout=mlp_layout)
        self.ls2 = layer_scale(dim, ls_init_value)
        self.drop_path = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.ls1(self.attn(self.mixer(x))))
        return x + self.drop_path(self.ls2(self.mlp(self.dwconv(x))))

    def reparameterize(self) -> None:
        """Deploy hook: the channel mixer's ``dw conv -> BatchNorm2d`` becomes one biased conv (the RepDWConv of
        k = 7 has its own ``fuse()``)."""
        if isinstance(self.dwconv, nn.Sequential) and isinstance(self.dwconv[1], nn.BatchNorm2d):
            self.dwconv = fuse_conv_bn(self.dwconv[0], self.dwconv[1])


# ------------------------------------------------------------------------------------------------- registrations
# official kernel_sizes1 = kernel_sizes2 = [3, 3, 7, 7]
SLOTS = {"mixer": [f"ffnified(kernel_size={k})" for k in (3, 3, 7, 7)], "norm": "bn", "act": "gelu", "attn": "none",
         "head": "avg"}


def _config(depths, dims, kernel_size: int, ls: float | None, stem_stride: int = 2) -> dict[str, Any]:
    return dict(depths=depths, dims=dims, block=FFBlock, block_kwargs={"kernel_size": kernel_size}, mlp_ratios=3.0,
                mlp_layout="conv", ls_init_value=ls, stem=ffnet_stem(64 if stem_stride == 2 else 32, stem_stride),
                downsample=FFNetDownsample, head_norm="pre")


# name: (depths, dims, channel-mixer kernel, layer scale, input size, paper params, paper FLOPs (MACs) at that size)
CONFIGS = {
    "ffnet_1": ((2, 2, 8, 2), (80, 160, 320, 640), 3, None, 256, 13.7e6, 2.9e9),
    "ffnet_2": ((3, 3, 15, 3), (88, 176, 352, 704), 7, None, 256, 26.9e6, 6.0e9),
    "ffnet_3": ((4, 4, 22, 5), (96, 192, 384, 768), 7, 1e-6, 256, 48.3e6, 10.1e9),
    "ffnet_4": ((4, 4, 27, 3), (128, 256, 512, 1024), 7, 1e-6, 384, 79.2e6, 43.1e9),
}


# exact counts of our builds (1000 classes, 3 input channels): parameters and MACs at 256 px, in the training form
# and in the deploy form (blockzoo.deploy.reparameterize: re-param branches and BNs folded, as the official export)
_PARAMS = {"ffnet_1": 13_775_656, "ffnet_2": 27_208_408, "ffnet_3": 48_817_896, "ffnet_4": 79_868_968}
_PARAMS_DEPLOY = {"ffnet_1": 13_660_152, "ffnet_2": 26_908_440, "ffnet_3": 48_330_632, "ffnet_4": 79_200_360}
# MACs at the paper's input size (256 px; 384 px for ffnet_4)
_MACS = {"ffnet_1": 3_000_681_472, "ffnet_2": 6_060_932_608, "ffnet_3": 10_235_590_656, "ffnet_4": 43_422_097_408}
_MACS_DEPLOY = {"ffnet_1": 2_984_829_952, "ffnet_2": 6_003_351_040, "ffnet_3": 10_146_232_320,
                "ffnet_4": 43_122_171_904}
_T = "tests/models/test_ffnet.py::"
_NOTES = ("Deploy form: blockzoo.deploy.reparameterize(model) (re-param branches and BNs folded, as the official "
          "export). Official drop_path_rate 0.1 / 0.15 / 0.35 (default 0 here); block_kwargs={'kernel_size': k} sets "
          "the channel mixer's dw kernel; stem='small' is the skeleton's 3x3/1 conv + norm stem.")


def _paper_entry(name: str) -> Callable[..., nn.Module]:
    d, w, k, ls, size = CONFIGS[name][:5]
    return metaformer_entry(name, _config(d, w, k, ls), default_img_size=size,
                            doc=f"FFNet ({name}): depths {d}, dims {w}, channel-mixer kernel {k}")


def _paper_spec(name: str) -> dict[str, Any]:
    """register_model arguments of a paper FFNet (numbers from the tables above)."""
    d, w, k, _, size, pp, pm = CONFIGS[name]
    return dict(
        family="ffnet", slots=SLOTS, paper=FFNET, input_size=(3, size, size), paper_params=int(pp), paper_macs=pm,
        reference={"params_1000cls": _PARAMS[name], "params_1000cls_deploy": _PARAMS_DEPLOY[name],
                   f"macs_{size}": _MACS[name], f"macs_{size}_deploy": _MACS_DEPLOY[name]},
        summary=f"FFNet-{name[-1]}: depths {d}, dims {w}, FFNified attention (k 3,3,7,7) + conv FFN (dw {k}x{k}, "
                f"3x), BN, {size} px",
        claims=(Claim(f"{_PARAMS_DEPLOY[name]:,} parameters in the deploy form ({_PARAMS[name]:,} training form; "
                      f"paper {pp / 1e6:.1f}M)", _T + "test_ffnet_param_counts"),
                Claim(f"{pm / 1e9:.1f} GFLOPs (MACs) at {size} px (ours {_MACS_DEPLOY[name] / 1e9:.3f}G deploy)",
                      _T + "test_ffnet_macs")),
        notes=_NOTES)


register_model("ffnet_1", **_paper_spec("ffnet_1"))(_paper_entry("ffnet_1"))
register_model("ffnet_2", **_paper_spec("ffnet_2"))(_paper_entry("ffnet_2"))
register_model("ffnet_3", **_paper_spec("ffnet_3"))(_paper_entry("ffnet_3"))
register_model("ffnet_4", **_paper_spec("ffnet_4"))(_paper_entry("ffnet_4"))

_NANO_PARAMS = 1_992_874
register_model(
    "ffnet_nano", family="ffnet", slots=SLOTS, paper=FFNET, input_size=(3, 32, 32), num_classes=10,
    reference={"params_3ch_10cls": _NANO_PARAMS},
    summary="FFNet for 28-32 px inputs (ours, not in the paper): depths (2, 2, 6, 2), dims (32, 64, 128, 256), "
            "stride-1 FFNet stem",
    claims=(Claim(f"{_NANO_PARAMS:,} parameters (10 classes)", _T + "test_ffnet_param_counts"),),
    notes=_NOTES,
)(metaformer_entry("ffnet_nano", _config((2, 2, 6, 2), (32, 64, 128, 256), 3, None, stem_stride=1),
                   default_img_size=32, doc="FFNet nano for 28-32 px inputs (stride-1 stem; 32/16/8/4 features)"))
