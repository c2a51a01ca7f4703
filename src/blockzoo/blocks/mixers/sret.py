"""SReT's sliced group self-attention (``mixer`` slot ``sliced_attn``) and its recursive, weight-shared block.

Shen, Liu & Xing, "Sliced Recursive Transformer", ECCV 2022, arXiv:2111.05297 [S030]; official code szq0214/SReT
(``SReT.py``: ``Group_Attention``, ``Transformer_Block``, ``Non_proj``, ``LearnableCoefficient``, ``Transformer``).

- :class:`SlicedGroupAttention` (tokens ``(B, N, C)``): the tokens, in row-major order, are cut into ``G``
  contiguous slices and each slice runs multi-head self-attention on its own, so the two attention products cost
  ``2 N^2 C / G`` MACs instead of ``2 N^2 C`` (the projections are unchanged). ``groups`` gives one ``G`` per
  recursive loop (SReT-T: ``(8, 2)`` in stage 1, ``(4, 1)`` in stage 2, ``1`` in stage 3: the paper's
  "[8-4-1, 2-1-1]"); in the loops after the first the tokens are permuted before slicing and put back afterwards, so
  the slices of successive loops differ and together approximate global attention (paper Fig. 2).
  ``permute``: ``"random"`` (default) draws a new random permutation at every training forward, as the official
  code; ``"stride"`` uses the fixed interleaved one (slice ``g`` = tokens ``g, g + G, g + 2G, ...``); ``"none"``
  keeps the contiguous slices in every loop. **Differs from the official code:** the official code also draws a
  random permutation in eval mode, so its predictions change from call to call; here an eval-mode ``"random"``
  uses the interleaved permutation (deterministic, exportable; like the random one it spreads every slice over the
  whole map). The official code needs ``N`` divisible by ``G`` (its reshape fails otherwise); here the slices hold
  ``ceil(N / G)`` tokens and the last ones are filled up with masked padding inside the attention (the projections
  see only the ``N`` real tokens), so any map size works; at the paper's sizes ``N`` is divisible and nothing is
  padded.
- :class:`SlicedMixer2d` -- the ``mixer`` adaptor (NCHW -> tokens -> attention -> NCHW) that passes the loop index
  on. ``create_block("sliced_attn", C)`` alone (no recursion) is loop 0: ``groups[0]`` contiguous slices.
- :class:`LRCBlock` -- the pre-norm transformer block with the paper's learnable residual connections (LRC):
  ``x = a1 x + a2 DP(mixer(norm1(x)))``, ``x = a3 x + a4 DP(mlp(norm2(x)))``, four learnable scalars initialised to 1
  (official ``coefficient1..4``); any ``mixer`` works, a loop-aware one gets the loop index.
- :class:`NonLinearProjection` -- the paper's non-linear projection layer (NLL) after every application of a shared
  block: ``x = b1 x + b2 mlp(norm(x))`` (MLP ratio 1 in SReT-T, 2 in SReT-S; LRC scalars as above; not shared).
- :class:`Recursive` -- a block applied ``loops`` times with the same weights, each application followed by its own
  NLL (official order ``block, NLL_1, block, NLL_2``: ``z = NLL_2(F(NLL_1(F(z))))``); its parameter count does not
  depend on ``loops`` apart from the NLLs.
- :class:`SReTBlock` -- ``Recursive(LRCBlock)`` with the MetaFormer block constructor
  (:mod:`blockzoo.models.metaformer`), the unit of :mod:`blockzoo.models.sret`.

The official code marks the second loop with ``(i + 2) % 4 == 0``, which is right only for two loops (every SReT
model); ``loops`` here may be any number (loop ``l`` uses ``groups[min(l, len(groups) - 1)]``). Its stochastic
depth gives the shared block of a stage the rates of the stage's first layers (``drop_path_prob[i]`` for
``i < recursive_num``); here each recursive block takes the MetaFormer skeleton's linear rate for its position
(the NLLs have none, as in the official code).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.blocks.common.metaformer import MetaFormerBlock
from blockzoo.blocks.common.mlp import Mlp
from blockzoo.blocks.common.transformer import Attention, TokenMixer2d, heads_for
from blockzoo.checks import check_choice, check_int
from blockzoo.errors import ConfigError
from blockzoo.papers import SRET
from blockzoo.registry import Claim, register_block

__all__ = ["SlicedGroupAttention", "SlicedMixer2d", "LRCBlock", "NonLinearProjection", "Recursive", "SReTBlock",
           "PERMUTE", "sliced_attn"]

PERMUTE = ("random", "stride", "none")
_T = "tests/blocks/mixers/test_sret.py::"
_T_MODEL = "tests/models/test_sret.py::"


def _slices(t: torch.Tensor, groups: int, n: int, stride: bool) -> torch.Tensor:
    """Tokens ``(B, G*n, ...) -> (B*G, n, ...)``: contiguous slices, or (``stride``) slice g = tokens g, g+G, ..."""
    t = t.unflatten(1, (n, groups)).transpose(1, 2) if stride else t.unflatten(1, (groups, n))
    return t.flatten(0, 1)


def _unslice(t: torch.Tensor, batch: int, groups: int, stride: bool) -> torch.Tensor:
    """The inverse of :func:`_slices`: ``(B*G, n, ...) -> (B, G*n, ...)``."""
    t = t.unflatten(0, (batch, groups))
    return (t.transpose(1, 2) if stride else t).flatten(1, 2)


class SlicedGroupAttention(Attention):
    """Multi-head self-attention within ``G`` slices of the tokens ``(B, N, C)`` (see the module docstring).

    ``groups``: ``G`` per recursive loop (an int: the same in every loop); ``forward(x, loop)`` picks
    ``groups[min(loop, len(groups) - 1)]`` and, in loops after the first, permutes the tokens first (``permute``).
    With one group it is :class:`~blockzoo.blocks.common.transformer.Attention` with the same weights.
    """

    def __init__(self, dim: int, num_heads: int = 8, groups: int | Sequence[int] = 1, permute: str = "random",
                 qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0, head_dim: int | None = None):
        super().__init__(dim, num_heads, qkv_bias, attn_drop, proj_drop, head_dim)
        owner = type(self).__name__
        per_loop = (groups,) if isinstance(groups, int) else tuple(groups)
        if not per_loop:
            raise ConfigError(f"{owner}: groups is empty; give the number of slices (e.g. 4) or one per loop (8, 2)")
        self.groups = tuple(check_int(g, "groups", min_value=1, owner=owner) for g in per_loop)
        self.permute = check_choice(permute, "permute", PERMUTE, owner=owner)

    def forward(self, x: torch.Tensor, loop: int = 0) -> torch.Tensor:
        g = self.groups[min(loop, len(self.groups) - 1)]
        shuffled = loop > 0 and g > 1 and self.permute != "none"
        rand = shuffled and self.permute == "random" and self.training
        stride = shuffled and not rand
        b, n_tok = x.shape[0], x.shape[1]
        n = (n_tok + g - 1) // g                            # tokens per slice
        pos = x.new_ones(n * g, dtype=torch.long).cumsum(0) - 1
        valid = pos < n_tok                                 # the padding that fills the last slices is masked
        src = pos.clamp(max=n_tok - 1)
        if rand:
            order = torch.argsort(torch.rand_like(pos, dtype=torch.float))
            src, valid = src[order], valid[order]
        # q, k, v of the real tokens (B, heads, N, d) -> gathered into slices (B*G, heads, n, d)
        q, k, v = (_slices(t.transpose(1, 2)[:, src], g, n, stride).transpose(1, 2) for t in self.qkv_heads(x))
        valid = _slices(valid[None], g, n, stride).repeat(b, 1)
        # a real query sees the real keys of its slice; a padding query sees everything (no empty softmax row)
        keep = valid[:, None, None, :] | ~valid[:, None, :, None]
        p = self.attn_drop.p if self.training else 0.0
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=p).transpose(1, 2)
        back = pos[:n_tok] if not rand else torch.argsort(order)[:n_tok]
        return self.out(_unslice(o, b, g, stride)[:, back].transpose(1, 2))

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, head_dim={self.head_dim}, groups={self.groups}, permute={self.permute!r}"


class SlicedMixer2d(TokenMixer2d):
    """:class:`~blockzoo.blocks.common.transformer.TokenMixer2d` that passes the recursion loop to its attention."""

    takes_loop = True

    def forward(self, x: torch.Tensor, loop: int = 0) -> torch.Tensor:
        return self.attn(x.flatten(2).transpose(1, 2), loop).transpose(1, 2).reshape_as(x)


class LRCBlock(MetaFormerBlock):
    """Pre-norm block with learnable residual connections (NCHW): ``x = a1 x + a2 DP(LS1(attn(mixer(norm1(x)))))``,
    ``x = a3 x + a4 DP(LS2(mlp(norm2(x))))``; ``lrc = (a1, a2, a3, a4)``, initialised to 1. ``forward(x, loop)``
    passes ``loop`` to a loop-aware mixer (``takes_loop``); other mixers ignore it."""

    takes_loop = True

    def __init__(self, dim: int, **kw):
        super().__init__(dim, **kw)
        self.lrc = nn.Parameter(torch.ones(4))
        self._mixer_loop = getattr(self.mixer, "takes_loop", False)

    def forward(self, x: torch.Tensor, loop: int = 0) -> torch.Tensor:
        h = self.norm1(x)
        h = self.mixer(h, loop) if self._mixer_loop else self.mixer(h)
        a = self.lrc
        x = a[0] * x + a[1] * self.drop_path1(self.ls1(self.attn(h)))
        return a[2] * x + a[3] * self.drop_path2(self.ls2(self.mlp(self.norm2(x))))

    def init_weights(self) -> None:
        nn.init.ones_(self.lrc)


class NonLinearProjection(nn.Module):
    """The NLL between recursive loops (NCHW): ``x = b1 x + b2 mlp(norm(x))``; ``lrc = (b1, b2)``, initialised to 1."""

    def __init__(self, dim: int, mlp_ratio: float, norm_layer: Callable[[int], nn.Module],
                 act_layer: Callable[[], nn.Module], mlp_layout: str = "linear"):
        super().__init__()
        self.norm = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer, layout=mlp_layout)
        self.lrc = nn.Parameter(torch.ones(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lrc[0] * x + self.lrc[1] * self.mlp(self.norm(x))

    def init_weights(self) -> None:
        nn.init.ones_(self.lrc)


class Recursive(nn.Module):
    """``block`` applied ``loops`` times with the same weights; after loop ``l`` its own ``nlls[l]`` (built by
    ``projection()``; the identity without one: the paper's naive recursion). A block with ``takes_loop`` gets the
    loop index (``block(x, l)``)."""

    def __init__(self, block: nn.Module, loops: int, projection: Callable[[], nn.Module] | None = None):
        super().__init__()
        self.loops = check_int(loops, "loops", min_value=1, owner=type(self).__name__)
        self.block = block
        self.nlls = nn.ModuleList(projection() if projection is not None else nn.Identity() for _ in range(loops))
        self._block_loop = getattr(block, "takes_loop", False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for loop, nll in enumerate(self.nlls):
            x = nll(self.block(x, loop) if self._block_loop else self.block(x))
        return x

    def extra_repr(self) -> str:
        return f"loops={self.loops}"


class SReTBlock(Recursive):
    """SReT's recursive unit with the MetaFormer block constructor: an :class:`LRCBlock` shared over ``loops`` loops,
    each followed by its own :class:`NonLinearProjection` (MLP ratio ``nll_ratio``; ``None``: no NLL)."""

    def __init__(self, dim: int, *, mixer: nn.Module, attn: nn.Module | None = None,
                 norm_layer: Callable[[int], nn.Module], act_layer: Callable[[], nn.Module], mlp_ratio: float = 4.0,
                 ls_init_value: float | None = None, drop_path: float = 0.0, mlp_layout: str = "linear",
                 feat_size=None, ctx=None, loops: int = 2, nll_ratio: float | None = 1.0):
        block = LRCBlock(dim, mixer=mixer, attn=attn, norm_layer=norm_layer, act_layer=act_layer, mlp_ratio=mlp_ratio,
                         ls_init_value=ls_init_value, drop_path=drop_path, mlp_layout=mlp_layout)
        nll = None if nll_ratio is None else partial(NonLinearProjection, dim, nll_ratio, norm_layer, act_layer,
                                                     mlp_layout)
        super().__init__(block, loops, nll)


@register_block(
    "sliced_attn", slot="mixer", paper=SRET, family="sret",
    summary="SReT sliced group self-attention: multi-head attention within G slices of the tokens (per recursive "
            "loop, permuted in the loops after the first)",
    claims=(
        Claim("with one group it is full multi-head self-attention with the same weights",
              _T + "test_one_group_is_full_attention"),
        Claim("G slices attend independently: equal to full attention run on each slice (also on uneven, padded "
              "slices and the interleaved permutation)", _T + "test_slices_attend_independently"),
        Claim("the attention products cost 2 N^2 C / G MACs instead of 2 N^2 C (hand-computed)",
              _T + "test_macs_by_hand"),
        Claim("sliced group attention cuts the cost by 10-30% (paper abstract): SReT-T 1.37 -> 1.11 GMACs (-18.5%; "
              "paper 1.4 -> 1.1 G), SReT-S 4.67 -> 4.17 GMACs (-10.7%; paper 4.7 -> 4.2 G) at 224 px",
              _T_MODEL + "test_slicing_saves_10_to_30_percent"),
    ),
    notes="groups: slices per recursive loop (an int or a tuple, e.g. (8, 2)); alone (no recursion) the mixer is "
          "loop 0. num_heads defaults to max(1, C // head_dim), head_dim 32 (timm's MetaFormer attention: with "
          "num_heads given, head_dim = C // num_heads). permute='random' is random in training only (official: also "
          "in eval).",
    usage='blk = create_block("sliced_attn", 64, groups=4)   # NCHW in -> NCHW out\n'
          'model = create_model("poolformer_s12", mixer="sliced_attn")',
)
def sliced_attn(channels: int, num_heads: int | None = None, head_dim: int = 32, groups: int | tuple[int, ...] = 4,
                permute: str = "random", qkv_bias: bool = True, attn_drop: float = 0.0,
                proj_drop: float = 0.0) -> nn.Module:
    for rate, name in ((attn_drop, "attn_drop"), (proj_drop, "proj_drop")):
        if not 0.0 <= rate < 1.0:
            raise ConfigError(f"sliced_attn: {name} is a dropout probability and must be in [0, 1), got {rate!r}")
    heads = heads_for(channels, num_heads, head_dim, "sliced_attn")
    return SlicedMixer2d(SlicedGroupAttention(channels, heads, groups, permute, qkv_bias, attn_drop, proj_drop,
                                              head_dim=None if num_heads is not None else head_dim))
