"""The shared pieces of the vision transformers: multi-head self-attention, the pre-norm transformer block, the patch
embedding, position-embedding resampling and the adaptor that puts a token-attention module into the ``mixer`` slot.

Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale", ICLR 2021,
arXiv:2010.11929 [VIT] (eq. 1-4: patch embedding, pre-norm blocks ``x + MSA(LN(x))``, ``x + MLP(LN(x))``, GELU MLP);
Touvron et al., "Training data-efficient image transformers & distillation through attention", ICML 2021,
arXiv:2012.12877 [DEIT] (bicubic interpolation of the position embeddings to another resolution). Module names follow
timm's ``vision_transformer.py`` (``qkv``, ``proj``, ``norm1``, ``attn``, ``ls1``, ``mlp.fc1`` ...), so state dicts
map 1:1.

Token-attention modules
-----------------------
A *token-attention module* maps tokens ``(B, N, C) -> (B, N, C)``. :class:`Attention` is the ViT one; the other
families (:mod:`blockzoo.blocks.mixers.reattention`, ConViT's GPSA ...) follow the same contract and also implement
``attn_map(x) -> (B, heads, N, N)``: the attention weights their forward multiplies the values with, computed from the
same input ``x`` (before attention dropout). The forward path itself uses ``F.scaled_dot_product_attention`` where the
weights are plain softmax attention and never stores the maps; :mod:`blockzoo.analysis.collapse` records a model's
maps by capturing each module's input with a forward pre-hook and calling ``attn_map`` on it.

- :class:`TransformerBlock` -- ``x + DP(LS1(attn(norm1(x))))``, ``x + DP(LS2(mlp(norm2(x))))``; ``attn`` is any
  token-attention module (default :class:`Attention`).
- :class:`TokenMixer2d` -- NCHW -> tokens -> token-attention -> NCHW: a token-attention module as a ``mixer`` block
  (``create_model("poolformer_s12", mixer="mhsa")``).
- :class:`PatchEmbed` -- the non-overlapping ``p x p`` patch convolution ``proj``; tokens out (or NHWC).
- :func:`resample_pos_embed` -- bicubic resampling of a learned position embedding to another patch grid (DeiT;
  ``antialias=True``: timm's variant).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.blocks.common.drop import make_drop_path
from blockzoo.blocks.common.init import apply_block_inits
from blockzoo.blocks.common.layer_scale import LayerScale
from blockzoo.blocks.common.layers import SubLayerMerges, make_act, out_size
from blockzoo.blocks.common.mlp import Mlp
from blockzoo.checks import check_int
from blockzoo.errors import ConfigError

__all__ = ["Attention", "TokenLayerScale", "TokenMlp", "TransformerBlock", "TokenMixer2d", "PatchEmbed",
           "resample_pos_embed", "token_norm", "heads_for"]


def heads_for(channels: int, num_heads: int | None, head_dim: int, owner: str) -> int:
    """The number of heads of an attention ``mixer`` with ``channels`` channels: ``num_heads`` if given, else
    ``max(1, channels // head_dim)`` (timm's MetaFormer ``Attention``)."""
    if num_heads is not None:
        return check_int(num_heads, "num_heads", min_value=1, owner=owner)
    return max(1, channels // check_int(head_dim, "head_dim", min_value=1, owner=owner))


def _head_dim(dim: int, num_heads: int, head_dim: int | None, owner: str) -> int:
    check_int(dim, "dim", min_value=1, owner=owner)
    check_int(num_heads, "num_heads", min_value=1, owner=owner)
    if head_dim is not None:
        return check_int(head_dim, "head_dim", min_value=1, owner=owner)
    if dim % num_heads:
        raise ConfigError(f"{owner}: dim={dim} is not divisible by num_heads={num_heads}; choose num_heads dividing "
                          f"the width (or give head_dim=)")
    return dim // num_heads


class Attention(nn.Module):
    """Multi-head self-attention on tokens ``(B, N, C)`` (ViT eq. 5-8): ``qkv`` Linear, per-head
    ``softmax(q k^T / sqrt(d)) v``, ``proj`` Linear.

    ``head_dim`` (default ``dim // num_heads``) sets the per-head width; with it the inner width
    ``num_heads * head_dim`` may differ from ``dim`` (timm's MetaFormer attention). The forward path runs
    ``F.scaled_dot_product_attention``; :meth:`attn_map` returns the softmax weights (see the module docstring).
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, head_dim: int | None = None):
        super().__init__()
        self.head_dim = _head_dim(dim, num_heads, head_dim, type(self).__name__)
        self.num_heads = num_heads
        self.scale = self.head_dim ** -0.5
        inner = num_heads * self.head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(inner, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``q, k, v`` of tokens ``x``, each ``(B, heads, N, head_dim)``."""
        q, k, v = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def attn_map(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weights ``softmax(q k^T / sqrt(d))`` of tokens ``x``: ``(B, heads, N, N)``."""
        q, k, _ = self.qkv_heads(x)
        return (q * self.scale @ k.transpose(-2, -1)).softmax(dim=-1)

    def out(self, o: torch.Tensor) -> torch.Tensor:
        """Heads ``(B, heads, N, head_dim)`` -> merged tokens -> ``proj`` -> dropout."""
        return self.proj_drop(self.proj(o.transpose(1, 2).flatten(2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_heads(x)
        p = self.attn_drop.p if self.training else 0.0
        return self.out(F.scaled_dot_product_attention(q, k, v, dropout_p=p))


class TokenLayerScale(LayerScale):
    """:class:`~blockzoo.blocks.common.layer_scale.LayerScale` on channels-last tokens ``(..., C)`` (CaiT / DeiT III;
    parameter ``gamma`` as timm's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class TokenMlp(Mlp):
    """The channel MLP ``fc1 -> act -> drop -> fc2 -> drop`` on channels-last tokens ``(..., C)``."""

    forward = Mlp.forward_nhwc


def token_norm(norm: Any, dim: int) -> nn.Module:
    """The norm of a transformer block over the last (channel) dim: ``"ln"`` = ``nn.LayerNorm(dim, eps=1e-6)`` (timm's
    ViT), or a callable ``norm(dim)``."""
    if callable(norm):
        return norm(dim)
    if norm != "ln":
        raise ConfigError(f"unknown transformer norm {norm!r}; use 'ln' (LayerNorm over the channels, eps=1e-6) or a "
                          f"callable norm(dim)")
    return nn.LayerNorm(dim, eps=1e-6)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block on tokens: ``x + DP(LS1(attn(norm1(x))))``, then ``x + DP(LS2(mlp(norm2(x))))``.

    ``attn``: an already built token-attention module (default :class:`Attention` with ``num_heads``, ``qkv_bias``);
    ``init_values``: layer scale (``None``: none, as ViT/DeiT); ``act``: the MLP activation (a slot value).
    ``connection``: ``None`` keeps the plain sums; a ``connection`` slot value builds one merge per sub-layer
    (:class:`~blockzoo.blocks.common.layers.SubLayerMerges` ``merges``), e.g. hyper-connections (Zhu et al., ICLR
    2025: one per attention / MLP sub-layer); ``ctx``: the block's slot context (``block_ctx``).
    """

    def __init__(self, dim: int, num_heads: int = 8, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 attn: nn.Module | None = None, init_values: float | None = None, drop_path: float = 0.0,
                 norm: Any = "ln", act: Any = "gelu", proj_drop: float = 0.0, attn_drop: float = 0.0,
                 connection: Any = None, ctx: Any = None):
        super().__init__()
        self.norm1 = token_norm(norm, dim)
        self.attn = attn if attn is not None else Attention(dim, num_heads, qkv_bias, attn_drop, proj_drop)
        self.ls1 = TokenLayerScale(dim, init_values) if init_values is not None else nn.Identity()
        self.drop_path1 = make_drop_path(drop_path)
        self.norm2 = token_norm(norm, dim)
        self.mlp = TokenMlp(dim, int(dim * mlp_ratio), lambda: make_act(act), drop=proj_drop)
        self.ls2 = TokenLayerScale(dim, init_values) if init_values is not None else nn.Identity()
        self.drop_path2 = make_drop_path(drop_path)
        self.merges = None if connection is None else SubLayerMerges(connection, dim, ctx, channels_last=True)

    def _attn_branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path1(self.ls1(self.attn(self.norm1(x))))

    def _mlp_branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path2(self.ls2(self.mlp(self.norm2(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merges is None:
            x = x + self._attn_branch(x)
            return x + self._mlp_branch(x)
        return self.merges(x, (self._attn_branch, self._mlp_branch))


class TokenMixer2d(nn.Module):
    """A token-attention module as a ``mixer`` block: NCHW -> ``(B, H*W, C)`` tokens -> ``attn`` -> NCHW (same C, any
    spatial size; the tokens are the pixels in row-major order, no position embedding: the skeleton's convolutions
    and position-free attention as in MetaFormer's CAFormer)."""

    def __init__(self, attn: nn.Module):
        super().__init__()
        self.attn = attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape_as(x)


class PatchEmbed(nn.Module):
    """ViT's patch embedding: a ``patch_size x patch_size`` conv with stride ``patch_size`` (``proj``), then tokens
    ``(B, H/p * W/p, C)`` in row-major order (``flatten=False``: the NHWC grid ``(B, H/p, W/p, C)``). Any input size
    works (the conv floors ``H/p``); ``img_size`` gives :attr:`grid_size` and :attr:`num_patches`, the grid the model's
    position embedding is built for."""

    def __init__(self, img_size: int | tuple[int, int] = 224, patch_size: int = 16, in_chans: int = 3,
                 embed_dim: int = 768, flatten: bool = True, bias: bool = True):
        super().__init__()
        check_int(patch_size, "patch_size", min_value=1, owner="PatchEmbed")
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.patch_size = patch_size
        self.grid_size = (size[0] // patch_size, size[1] // patch_size)
        if min(self.grid_size) < 1:
            raise ConfigError(f"PatchEmbed: img_size={img_size} is smaller than patch_size={patch_size}; use a larger "
                              f"img_size or a smaller patch")
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.flatten = flatten
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size, bias=bias)

    def out_size(self, size: tuple[int, int] | None) -> tuple[int, int] | None:
        return out_size(size, self.patch_size, self.patch_size, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2) if self.flatten else x.permute(0, 2, 3, 1)


def resample_pos_embed(pos_embed: torch.Tensor, new_size: tuple[int, int] | Any, old_size: tuple[int, int],
                       num_prefix_tokens: int = 1, antialias: bool = False) -> torch.Tensor:
    """A learned position embedding ``(1, prefix + old_h * old_w, C)`` for a ``new_size`` patch grid: the prefix
    (class / distillation token) embeddings are kept, the grid part is resampled bicubically as the official DeiT
    code does (``F.interpolate``, ``align_corners=False``). ``antialias=True`` is timm's ``resample_abs_pos_embed``
    default: PyTorch's antialiased bicubic uses another cubic kernel (a = -0.5 instead of -0.75), so it differs even
    when enlarging. Returns ``(1, prefix + new_h * new_w, C)``; at the same size (without antialias) the result is the
    input, exactly."""
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    grid = grid.unflatten(1, tuple(old_size)).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=tuple(new_size), mode="bicubic", align_corners=False,
                         antialias=antialias).to(pos_embed.dtype)
    return torch.cat([prefix, grid.permute(0, 2, 3, 1).flatten(1, 2)], dim=1)


def init_transformer_weights(model: nn.Module, tokens: tuple[torch.Tensor | None, ...] = ()) -> None:
    """The init of the official ViT/DeiT and Swin code: every Linear trunc-normal(0.02) with zero bias, every LayerNorm
    (1, 0), then the parameters ``tokens`` (position embedding, class tokens; ``None`` skipped) trunc-normal(0.02);
    then every submodule's own ``init_weights()`` (a GPSA's locality init, a relative-bias table ...)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for p in tokens:
        if p is not None:
            nn.init.trunc_normal_(p, std=0.02)
    apply_block_inits(model)
