"""LSNet backbones: Wang et al., "LSNet: See Large, Focus Small", CVPR 2025, arXiv:2503.23135 [S006]; official code
github.com/THU-MIG/lsnet (``model/lsnet.py``; formerly jameslahm/lsnet). The LS convolution itself is
:mod:`blockzoo.blocks.mixers.ls_conv` (``mixer="ls_conv"``).

Architecture (official code, reproduced layer by layer; ``ConvBN`` = bias-free conv + BatchNorm, the official
``Conv2d_BN``)
------------------------------------------------------------------------------------------------------------------
- **Stem** (``stem="official"``): ConvBN 3x3/2 ``in -> C0/4`` -> ReLU -> ConvBN 3x3/2 ``-> C0/2`` -> ReLU -> ConvBN
  3x3/2 ``-> C0`` (overall stride 8: 224 -> 28). ``stem="small"`` (28-32 px inputs): the same three ConvBNs at stride
  1, so a 28 px image gives exactly the ImageNet feature sizes 28 / 14 / 7 / 4 (32 px: 32 / 16 / 8 / 4).
- **Downsampling** before stages 1-3: ConvBN 3x3/2 depthwise (``C_{i-1}``) -> ConvBN 1x1 ``C_{i-1} -> C_i``, no
  activation (``model.stages[i].downsample``).
- **Blocks** (:class:`LSNetBlock`; ``j`` = index inside the stage): ``y = ffn_res(se(mixer(x)))`` with
  ``ffn_res(z) = z + DP(FFN(z))``, ``FFN = ConvBN 1x1 (C -> 2C) -> ReLU -> ConvBN 1x1 (2C -> C, BN weight 0)``.

  * even ``j``: mixer = :class:`RepVGGDW` (``ConvBN 3x3 dw + ConvBN 1x1 dw + x``) followed by the ``attn`` slot
    (default ``se(reduction=4)`` = timm ``SqueezeExcite(C, 0.25)``: 1x1 convs with bias, hidden
    ``make_divisible(C/4, 8)``, ReLU, sigmoid -- the hidden width gets the same rounding here);
  * odd ``j`` in stages 0-2: the **``mixer`` slot** (default ``ls_conv``) and no SE;
  * odd ``j`` in stage 3 (``attention_stages``): ``x + DP(Attention(x))``, :class:`LSNetAttention` (below).

  Residuals: LS conv and RepVGGDW contain their own shortcut (``includes_residual``), so the block adds none around
  them -- as in the official code. A mixer from another family placed in the slot (``mixer="dwconv"``) gets
  ``x + DP(mixer(x))``; ``mixer="none"`` skips the mixing step (the block is then ``ffn_res(x)``).
  Stochastic depth (``drop_path_rate``, linear over all blocks, :func:`metaformer.drop_path_schedule`) acts on the
  FFN and attention residuals (the official ``Residual(m, drop)``; the official models train with 0).
- **Head**: the ``head`` slot (global average pooling) -> BatchNorm1d -> [dropout] -> Linear (official
  ``BN_Linear``; Linear ``trunc_normal(0.02)``, zero bias). The distillation head of the ``*`` models is not built.
- **Init** (``init="official"``): PyTorch's default conv init, ConvBN BN weight 1 (0 for the last ConvBN of the FFN
  and of the attention projection), bias 0; then every submodule's ``init_weights()`` (slot blocks keep their paper
  init). ``init="kaiming"``: :func:`blockzoo.models.base.init_weights`.

Attention (stage 3) and its fixed resolution
--------------------------------------------
:class:`LSNetAttention` (the official ``Attention``, LeViT / EfficientViT style): ``qkv = ConvBN 1x1 (C -> 2 h d_k
+ h d_v)``, ``q <- ConvBN 3x3 dw (q)``, ``softmax(q^T k / sqrt(d_k) + B) v``, ``proj = ReLU -> ConvBN 1x1 (h d_v ->
C, BN weight 0)``; ``d_k = key_dim = 16``, ``h = num_heads[3] = 4``, ``d_v = C / (d_k h) * d_k = C / h``. ``B`` is a
learned per-head bias over the *relative offset* ``(|dy|, |dx|)`` of two positions, one table entry per offset
of an ``R x R`` grid -- it needs the feature size at build time. As in the official code, ``R`` comes from
``img_size`` (stage-3 size: 224 -> 4; 32 -> 4 with ``stem="small"``). The official table order is
``index = |dy| * R + |dx|`` (its offsets dict is filled row-major from position (0, 0)); blockzoo uses that formula,
so at the build resolution the result is exactly the official one, and **smaller** stage-3 maps (e.g. a non-square
or smaller input) reuse the same table (their offsets are a subset). A **larger** stage-3 map raises a ``ValueError``
naming the ``img_size`` to build with (the official code fails with a shape error there).

The paper's and our exact numbers are in the registry (``blockzoo info <model>``, ``docs/catalog.md``), in
the training and the deploy form; the paper / official README table gives one decimal. Params: exact counts,
asserted by tests/models/test_lsnet.py. **Structure check**: a float64 forward of the official ``model/lsnet.py``
structure
(re-typed outside the repository, SKA by unfold) and of ours with the same weights (state dicts align entry by
entry, in order) agreed to 2e-10 for T, S and B. MACs: ``blockzoo.profile.count_macs`` (convs, linears and the
attention matmuls); fvcore's default handles count BatchNorm 2 and GroupNorm 5 per element (eval mode) on top,
which is presumably how the paper counted (its one-decimal FLOPs are reproduced only with them: B is 1.241 G
without, 1.255 G with).

Deploy form (``blockzoo.deploy.reparameterize(model)``): BN folded into the convs, RepVGGDW's two branches and
identity merged into one 3x3 conv, the head BN folded into the Linear; LS conv's BN after SKA cannot be folded and is
kept. The same group's RepViT ``flops.py`` counts parameters after such folding (``utils.replace_batchnorm``);
LSNet's own scripts were not available to check. Training-time and deploy counts are both within 0.5% of the paper.

The paper's MACs are rounded to 0.1 G, so "within 3%" cannot be checked against them; the tests assert our exact
counts and that the fvcore-convention totals round to the paper's figures.

Registered: ``lsnet_t``, ``lsnet_s``, ``lsnet_b`` (paper settings) and ``lsnet_t_small`` (LSNet-T with
``stem="small"``, 32 px, 10 classes; 28 px works too and gives the ImageNet feature sizes 28/14/7/4; 11.03M
parameters, 0.352 G MACs at 32 px, 0.299 G at 28 px with one input channel).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn as nn

from blockzoo.blocks.attention.se import se_value_divisible
from blockzoo.blocks.common.conv_bn import ConvBN
from blockzoo.blocks.common.drop import drop_path_schedule, make_drop_path
from blockzoo.blocks.common.init import apply_block_inits
from blockzoo.blocks.common.layers import make_act
from blockzoo.blocks.common.metaformer import MetaFormerStage
from blockzoo.checks import tracing
from blockzoo.deploy.reparam import fuse_bn_linear
from blockzoo.errors import ConfigError, InputShapeError
from blockzoo.models.base import Backbone, init_weights, out_size, parse_once, to_size
from blockzoo.papers import LSNET
from blockzoo.registry import Claim, build_slot, register_model

__all__ = ["RepVGGDW", "LSNetFFN", "LSNetAttention", "LSNetBlock", "LSNetStem", "LSNetDownsample", "LSNet",
           "CONFIGS", "SLOTS"]

SLOTS = {"mixer": "ls_conv", "attn": "se(reduction=4)", "act": "relu", "head": "avg"}

_T = "tests/models/test_lsnet.py::"


# -------------------------------------------------------------------------------------------------------- layers
class RepVGGDW(nn.Module):
    """``ConvBN 3x3 dw (x) + ConvBN 1x1 dw (x) + x`` (contains its own identity shortcut); :meth:`fuse` merges the
    three branches into one biased 3x3 depthwise conv."""

    includes_residual = True

    def __init__(self, dim: int):
        super().__init__()
        self.conv = ConvBN(dim, dim, 3, 1, 1, groups=dim)
        self.conv1 = ConvBN(dim, dim, 1, 1, 0, groups=dim)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.conv1(x) + x

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """The ``fuse()`` hook of :func:`blockzoo.deploy.reparameterize`: the three branches as one conv."""
        conv, conv1 = self.conv.fuse(), self.conv1.fuse()
        conv.weight[:, :, 1:2, 1:2] += conv1.weight + 1.0
        conv.bias += conv1.bias
        return conv


class LSNetFFN(nn.Module):
    """``ConvBN 1x1 (C -> hidden) -> act -> ConvBN 1x1 (hidden -> C, BN weight 0)`` (the official ``FFN``)."""

    def __init__(self, dim: int, hidden: int, act_layer: Callable[[], nn.Module]):
        super().__init__()
        self.pw1 = ConvBN(dim, hidden)
        self.act = act_layer()
        self.pw2 = ConvBN(hidden, dim, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw2(self.act(self.pw1(x)))


class LSNetAttention(nn.Module):
    """Multi-head self-attention with a depthwise-conv'd query and a relative-offset bias table (stage 3 of LSNet).

    ``resolution`` (int or (H, W)) is the feature size the bias table is built for; inputs up to that size are
    accepted (see the module docstring). Output: NCHW, same C (no residual: the block adds it).
    """

    includes_residual = False

    def __init__(self, dim: int, key_dim: int = 16, num_heads: int = 8, attn_ratio: float = 4.0,
                 resolution: int | tuple[int, int] = 14, act_layer: Callable[[], nn.Module] = nn.ReLU):
        super().__init__()
        self.num_heads, self.key_dim = num_heads, key_dim
        self.scale = key_dim ** -0.5
        self.nh_kd = key_dim * num_heads
        self.d = int(attn_ratio * key_dim)
        self.dh = self.d * num_heads
        self.resolution = to_size(resolution)
        rh, rw = self.resolution  # type: ignore[misc]
        self.qkv = ConvBN(dim, self.dh + 2 * self.nh_kd)
        self.proj = nn.Sequential(act_layer(), ConvBN(self.dh, dim, bn_weight_init=0.0))
        self.dw = ConvBN(self.nh_kd, self.nh_kd, 3, 1, 1, groups=self.nh_kd)  # (official registration order)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, rh * rw))
        self.register_buffer("attention_bias_idxs", self._bias_idxs(rh, rw), persistent=True)

    def _bias_idxs(self, h: int, w: int) -> torch.Tensor:
        """(h*w, h*w) indices into the bias table: ``|dy| * R_w + |dx|`` (the official offsets order)."""
        rw = self.resolution[1]  # type: ignore[index]
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        return (ys[:, None] - ys[None, :]).abs() * rw + (xs[:, None] - xs[None, :]).abs()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        rh, rw = self.resolution  # type: ignore[misc]
        if tracing():  # a graph keeps the size limit as a runtime assertion (no Python branch on its shapes)
            torch._assert(h <= rh, f"LSNet attention was built for feature maps up to {rh}x{rw}")
            torch._assert(w <= rw, f"LSNet attention was built for feature maps up to {rh}x{rw}")
        elif h > rh or w > rw:
            raise InputShapeError(f"LSNet attention was built for feature maps up to {rh}x{rw} (its relative-position "
                                  f"bias table), got {h}x{w}; build the model with a larger img_size= (the input size)")
        pos = (torch.arange(h, device=x.device)[:, None] * rw + torch.arange(w, device=x.device)).flatten()
        idxs = self.attention_bias_idxs[pos][:, pos]  # the h x w top-left positions of the table's R x R grid
        n = h * w
        q, k, v = self.qkv(x).split([self.nh_kd, self.nh_kd, self.dh], dim=1)
        q = self.dw(q)
        q = q.reshape(b, self.num_heads, self.key_dim, n)
        k = k.reshape(b, self.num_heads, self.key_dim, n)
        v = v.reshape(b, self.num_heads, self.d, n)
        attn = (q.transpose(-2, -1) @ k) * self.scale + self.attention_biases[:, idxs]
        attn = attn.softmax(dim=-1)
        out = (v @ attn.transpose(-2, -1)).reshape(b, self.dh, h, w)
        return self.proj(out)

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, key_dim={self.key_dim}, d_v={self.d}, resolution={self.resolution}"


class LSNetBlock(nn.Module):
    """``y = x' + DP(FFN(x'))`` with ``x' = se(mix(x))``; ``mix(x) = mixer(x)`` when the mixer contains its own
    shortcut (LS conv, RepVGGDW), ``x + DP(mixer(x))`` otherwise, ``x`` for an identity mixer."""

    def __init__(self, dim: int, *, mixer: nn.Module, se: nn.Module | None, act_layer: Callable[[], nn.Module],
                 mlp_ratio: float = 2.0, drop_path: float = 0.0):
        super().__init__()
        self.mixer = mixer
        self.se = se if se is not None else nn.Identity()
        self.ffn = LSNetFFN(dim, int(dim * mlp_ratio), act_layer)
        self.drop_path = make_drop_path(drop_path)
        self.skip_mixer = isinstance(mixer, nn.Identity)
        # decided once here: reparameterize() may later swap the mixer for a fused conv without the attribute
        self.mixer_residual = not self.skip_mixer and not getattr(mixer, "includes_residual", False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.skip_mixer:
            x = x + self.drop_path(self.mixer(x)) if self.mixer_residual else self.mixer(x)
        x = self.se(x)
        return x + self.drop_path(self.ffn(x))


class LSNetStem(nn.Sequential):
    """ConvBN 3x3 ``in -> C/4`` -> act -> ConvBN 3x3 ``-> C/2`` -> act -> ConvBN 3x3 ``-> C`` at ``strides``."""

    def __init__(self, in_chans: int, dim: int, act_layer: Callable[[], nn.Module],
                 strides: Sequence[int] = (2, 2, 2)):
        s1, s2, s3 = strides
        super().__init__(ConvBN(in_chans, dim // 4, 3, s1, 1), act_layer(), ConvBN(dim // 4, dim // 2, 3, s2, 1),
                         act_layer(), ConvBN(dim // 2, dim, 3, s3, 1))
        self.strides = (s1, s2, s3)

    def out_size(self, size: tuple[int, int] | None) -> tuple[int, int] | None:
        for stride in self.strides:   # from the geometry, not the children (reparameterize fuses them)
            size = out_size(size, stride, 3, 1)
        return size


class LSNetDownsample(nn.Sequential):
    """ConvBN 3x3/2 depthwise -> ConvBN 1x1 ``in -> out`` (no activation)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__(ConvBN(in_dim, in_dim, 3, 2, 1, groups=in_dim), ConvBN(in_dim, out_dim, 1))

    def out_size(self, size: tuple[int, int] | None) -> tuple[int, int] | None:
        return out_size(size, 2, 3, 1)     # the 3x3/2 conv (the 1x1 keeps the size)


_STEM_STRIDES = {"official": (2, 2, 2), "small": (1, 1, 1)}


# ------------------------------------------------------------------------------------------------------ backbone
class LSNet(Backbone):
    """LSNet backbone (see the module docstring). ``depths`` / ``dims`` per stage; ``num_heads`` / ``key_dim`` of the
    attention in ``attention_stages``."""

    def __init__(
        self,
        depths: Sequence[int],
        dims: Sequence[int],
        *,
        num_heads: int | Sequence[int] = (3, 3, 3, 4),
        key_dim: int | Sequence[int] = 16,
        mlp_ratio: float = 2.0,
        attention_stages: Sequence[int] = (3,),
        num_classes: int = 1000,
        in_chans: int = 3,
        model_name: str = "lsnet",
        mixer: Any = SLOTS["mixer"],
        attn: Any = SLOTS["attn"],
        act: Any = SLOTS["act"],
        head: Any = SLOTS["head"],
        stem: str | Sequence[int] = "official",
        img_size: int | tuple[int, int] | None = None,
        drop_path_rate: float = 0.0,
        drop_rate: float = 0.0,
        init: str = "official",
    ):
        super().__init__()
        depths, dims = list(depths), list(dims)
        if len(depths) != len(dims) or not depths:
            raise ConfigError(f"depths {depths} and dims {dims} must be non-empty and of the same length")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ConfigError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        if init not in ("official", "kaiming"):
            raise ConfigError(f"init must be 'official' or 'kaiming', got {init!r}")
        n_stages = len(dims)
        heads = [num_heads] * n_stages if isinstance(num_heads, int) else list(num_heads)
        key_dims = [key_dim] * n_stages if isinstance(key_dim, int) else list(key_dim)
        if len(heads) != n_stages or len(key_dims) != n_stages:
            raise ConfigError(f"num_heads and key_dim need one entry per stage ({n_stages})")
        if isinstance(stem, str):
            if stem not in _STEM_STRIDES:
                raise ConfigError(f"stem must be one of {', '.join(_STEM_STRIDES)} or three strides, got {stem!r}")
            strides = _STEM_STRIDES[stem]
        else:
            strides = tuple(stem)
        if img_size is None:
            img_size = 32 if strides == (1, 1, 1) else 224
        self.model_name, self.in_chans = model_name, in_chans
        self.depths, self.dims, self.num_stages = tuple(depths), tuple(dims), n_stages
        act_layer: Callable[[], nn.Module] = partial(make_act, parse_once(act))

        feat = to_size(img_size)
        self.stem = LSNetStem(in_chans, dims[0], act_layer, strides)
        feat = self.track_module(self.stem, feat)
        self.drop_path_rates = drop_path_schedule(depths, drop_path_rate)
        stages, feature_sizes, k = [], [], 0
        for i in range(n_stages):
            ds: nn.Module = nn.Identity() if i == 0 else LSNetDownsample(dims[i - 1], dims[i])
            if i > 0:
                feat = self.track_module(ds, feat)
            self.begin_stage(i, f"stages.{i}", feat)
            blocks = []
            for j in range(depths[i]):
                pos = f"stages.{i}.blocks.{j}"
                se = None
                if j % 2 == 0:
                    mix: nn.Module = RepVGGDW(dims[i])
                    se_value = se_value_divisible(self.slot_value("attn", attn, i, j), dims[i], 8, round_limit=0.0)
                    se = build_slot("attn", se_value, dims[i], self.ctx(f"{pos}.se", feat))
                elif i in attention_stages:
                    if feat is None:
                        raise ConfigError(f"{model_name}: the attention of stage {i} needs the feature size; "
                                          f"pass img_size=")
                    mix = LSNetAttention(dims[i], key_dims[i], heads[i], dims[i] / (key_dims[i] * heads[i]),
                                         resolution=feat, act_layer=act_layer)
                else:
                    mix = build_slot("mixer", self.slot_value("mixer", mixer, i, j), dims[i],
                                     self.ctx(f"{pos}.mixer", feat))
                blocks.append(LSNetBlock(dims[i], mixer=mix, se=se, act_layer=act_layer, mlp_ratio=mlp_ratio,
                                         drop_path=self.drop_path_rates[k]))
                k += 1
            stages.append(MetaFormerStage(ds, blocks))
            feature_sizes.append(feat)
            self.add_feature(f"stages.{i}", dims[i])
        self.stages = nn.Sequential(*stages)
        self.feature_sizes: list[tuple[int, int] | None] = feature_sizes

        self.init_head(dims[-1], num_classes, head, drop_rate)
        self.head_norm: nn.Module = nn.BatchNorm1d(self.head_hidden_size)
        if init == "kaiming":
            init_weights(self)
        else:
            apply_block_inits(self)
        self._init_fc()

    def _init_fc(self) -> None:
        if isinstance(self.fc, nn.Linear):
            nn.init.trunc_normal_(self.fc.weight, std=0.02)
            nn.init.zeros_(self.fc.bias)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.head_norm(self.head(x)))
        return x if pre_logits else self.fc(x)

    def _reset_classifier(self, num_classes: int, head: Any) -> None:
        """New classifier (and a new BatchNorm1d when a new pooling ``head`` changes the pooled size)."""
        if head is not None:
            self.set_head(head)
            size = getattr(self.head, "out_features", self.num_features)
            if size != self.head_hidden_size:
                self.head_norm = nn.BatchNorm1d(size)
            self.head_hidden_size = size
        self.num_classes = num_classes
        self.fc = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()
        self._init_fc()

    def reparameterize(self) -> None:
        """The model-level ``reparameterize()`` hook of :func:`blockzoo.deploy.reparameterize`: folds the head
        BatchNorm1d into the classifier Linear (idempotent). The walker fuses the rest (every ConvBN -> biased conv,
        RepVGGDW -> one 3x3 depthwise conv; LS conv's BN after SKA cannot be folded and stays): call
        ``blockzoo.deploy.reparameterize(model)`` for the inference form, not this method."""
        if isinstance(self.head_norm, nn.BatchNorm1d) and isinstance(self.fc, nn.Linear):
            self.fc = fuse_bn_linear(self.head_norm, self.fc)
            self.head_norm = nn.Identity()


# --------------------------------------------------------------------------------------------------- registration
# name: (depths, dims, paper params, paper MACs)
CONFIGS = {
    "lsnet_t": ((0, 2, 8, 10), (64, 128, 256, 384), 11.4e6, 0.3e9),
    "lsnet_s": ((1, 2, 8, 10), (96, 192, 320, 448), 16.1e6, 0.5e9),
    "lsnet_b": ((4, 6, 8, 10), (128, 256, 384, 512), 23.2e6, 1.3e9),
}
# exact counts of our builds (1000 classes, 3 channels); asserted by tests/models/test_lsnet.py
_PARAMS = {"lsnet_t": 11_409_832, "lsnet_s": 16_146_304, "lsnet_b": 23_313_608}
_DEPLOY_PARAMS = {"lsnet_t": 11_370_488, "lsnet_s": 16_098_232, "lsnet_b": 23_249_320}
# MACs of our builds at 224 px (blockzoo.profile.count_macs); asserted by the slow test
_MACS = {"lsnet_t": 315_147_392, "lsnet_s": 537_069_632, "lsnet_b": 1_240_906_752}
_SMALL_PARAMS = {"params_3ch_10cls": 11_028_682, "params_1ch_10cls": 11_028_394}

_NOTES = ("img_size sets the stage-3 attention's bias table (inputs up to it are accepted); attention_stages=() puts "
          "the mixer slot in stage 3 too. blockzoo.deploy.reparameterize(model) gives the inference form (deploy "
          "parameter count).")


def _entry(name: str, config: str, **defaults: Any) -> Callable[..., LSNet]:
    depths, dims = CONFIGS[config][:2]

    def fn(*, num_classes: int = 1000, in_chans: int = 3, **kw: Any) -> LSNet:
        return LSNet(depths, dims, num_classes=num_classes, in_chans=in_chans, model_name=name, **{**defaults, **kw})

    fn.__name__ = name
    fn.__doc__ = f"{name}: LSNet with depths {tuple(depths)}, dims {tuple(dims)}"
    return fn


def _paper_spec(name: str) -> dict[str, Any]:
    """register_model arguments of a paper LSNet (numbers from the tables above)."""
    depths, dims, pp, pm = CONFIGS[name]
    return dict(
        family="lsnet", slots=SLOTS, paper=LSNET, paper_params=int(pp), paper_macs=pm,
        reference={"params_1000cls": _PARAMS[name], "deploy_params_1000cls": _DEPLOY_PARAMS[name],
                   "macs_224": _MACS[name]},
        summary=f"LSNet-{name[-1].upper()}: depths {depths}, dims {dims}; RepVGGDW+SE / LS conv blocks, attention "
                f"in stage 3, FFN x2",
        claims=(Claim(f"{_PARAMS[name]:,} parameters (paper: {pp / 1e6:.1f}M)", _T + "test_param_counts"),
                Claim(f"{_DEPLOY_PARAMS[name]:,} parameters after blockzoo.deploy.reparameterize()",
                      _T + "test_deploy_param_counts"),
                Claim(f"{_MACS[name] / 1e9:.3f} G MACs at 224 (convs/linears/matmuls); with fvcore's norm counts it "
                      f"rounds to the paper's {pm / 1e9:.1f} G", _T + "test_macs_224")),
        notes=_NOTES)


register_model("lsnet_t", **_paper_spec("lsnet_t"))(_entry("lsnet_t", "lsnet_t"))
register_model("lsnet_s", **_paper_spec("lsnet_s"))(_entry("lsnet_s", "lsnet_s"))
register_model("lsnet_b", **_paper_spec("lsnet_b"))(_entry("lsnet_b", "lsnet_b"))
register_model(
    "lsnet_t_small", family="lsnet", slots=SLOTS, paper=LSNET, input_size=(3, 32, 32), num_classes=10,
    reference=_SMALL_PARAMS,
    summary="LSNet-T for 28-32 px inputs: the stem's three 3x3 ConvBNs at stride 1 (stage sizes 32/16/8/4, or "
            "28/14/7/4 = the ImageNet sizes at 28 px)",
    claims=(Claim(f"{_SMALL_PARAMS['params_3ch_10cls']:,} parameters (3 channels, 10 classes)",
                  _T + "test_small_variant"),
            Claim("a 28 px input gives the ImageNet feature sizes 28/14/7/4", _T + "test_small_variant")),
    notes="Not a paper model: LSNet-T with stem='small' and img_size=32. " + _NOTES,
)(_entry("lsnet_t_small", "lsnet_t", stem="small"))
