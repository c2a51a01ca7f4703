"""Re-attention (DeepViT): the per-head attention maps mixed by a learnable H x H matrix and normalised before they
weight the values (``mixer`` slot via :class:`~blockzoo.blocks.common.transformer.TokenMixer2d`; the token module
:class:`ReAttention` for the ViT skeleton).

Zhou et al., "DeepViT: Towards Deeper Vision Transformer", arXiv:2103.11886 [S033, DEEPVIT], eq. 3:
``ReAttention(Q, K, V) = Norm(Theta^T Softmax(Q K^T / sqrt(d))) V`` with a learnable ``Theta`` (H x H) mixing the
heads' maps, to regenerate diverse maps where deep ViTs' attention collapses (cross-layer similarity:
:mod:`blockzoo.analysis.collapse`). The official code (zhoudaquan/dvit_repo, ``models/layers.py``) is the reference
for what the equation leaves open, and the default here: ``Theta`` is a 1x1 ``Conv2d(H, H)`` over the head axis
(``reatten_matrix``, with a bias), ``Norm`` a ``BatchNorm2d(H)`` (``var_norm``), the attention dropout applied before
the mixing, and an optional extra scale (``transform_scale=True``: the maps are multiplied by ``1/sqrt(d)`` again,
the official ``reatten_scale``; off in its DeepViT-16B/24B/32B). ``norm="ln"`` is lucidrains' vit-pytorch variant
(LayerNorm over the head axis); ``norm="none"`` leaves the mixed maps unnormalised. With
``Theta = I``, zero bias and ``norm="none"`` re-attention is plain attention.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from blockzoo.blocks.common.transformer import Attention, TokenMixer2d, heads_for
from blockzoo.checks import check_choice
from blockzoo.papers import DEEPVIT
from blockzoo.registry import Claim, register_block

__all__ = ["ReAttention", "reattn", "REATTN_NORMS"]

REATTN_NORMS = ("bn", "ln", "none")
_T = "tests/blocks/mixers/test_reattention.py::"


class _HeadLayerNorm(nn.LayerNorm):
    """LayerNorm over the head axis of ``(B, H, N, N)`` maps (lucidrains' re-attention norm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


class ReAttention(Attention):
    """DeepViT's re-attention on tokens ``(B, N, C)``: ``proj(Norm(Theta^T softmax(q k^T / sqrt(d))) v)``.

    Same ``qkv`` / ``proj`` as :class:`~blockzoo.blocks.common.transformer.Attention`, plus ``reatten_matrix``
    (``Conv2d(H, H, 1)``) and ``var_norm`` (see the module docstring for ``norm`` and ``transform_scale``).
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, head_dim: int | None = None, norm: str = "bn", transform_scale: bool = False):
        super().__init__(dim, num_heads, qkv_bias, attn_drop, proj_drop, head_dim)
        check_choice(norm, "norm", REATTN_NORMS, owner="ReAttention")
        self.reatten_matrix = nn.Conv2d(num_heads, num_heads, 1)
        self.var_norm = {"bn": lambda: nn.BatchNorm2d(num_heads), "ln": lambda: _HeadLayerNorm(num_heads),
                         "none": nn.Identity}[norm]()
        self.reatten_scale = self.scale if transform_scale else 1.0

    def _reattend(self, attn: torch.Tensor) -> torch.Tensor:
        return self.var_norm(self.reatten_matrix(attn)) * self.reatten_scale

    def attn_map(self, x: torch.Tensor) -> torch.Tensor:
        """The re-attended maps ``Norm(Theta^T softmax(q k^T / sqrt(d)))``: ``(B, heads, N, N)`` (the weights of v)."""
        return self._reattend(super().attn_map(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_heads(x)
        attn = self.attn_drop((q * self.scale @ k.transpose(-2, -1)).softmax(dim=-1))
        return self.out(self._reattend(attn) @ v)


@register_block(
    "reattn", slot="mixer", paper=DEEPVIT, family="deepvit",
    summary="DeepViT re-attention over the pixels of the feature map: heads' maps mixed by a learnable HxH matrix "
            "and BatchNorm before weighting v",
    claims=(Claim("with an identity mixing matrix and no norm, re-attention equals plain attention",
                  _T + "test_identity_reattention_is_attention"),
            Claim("adds H*H + H mixing and 2H norm parameters per layer (negligible cost)",
                  _T + "test_reattention_extra_parameters")),
    notes="official dvit_repo: Conv2d(H, H, 1) + BatchNorm2d(H); norm='ln' is lucidrains' variant.",
)
def reattn(channels: int, num_heads: int | None = None, head_dim: int = 32, qkv_bias: bool = True,
           attn_drop: float = 0.0, proj_drop: float = 0.0, norm: str = "bn",
           transform_scale: bool = False) -> nn.Module:
    heads = heads_for(channels, num_heads, head_dim, "reattn")
    return TokenMixer2d(ReAttention(channels, heads, qkv_bias, attn_drop, proj_drop,
                                    head_dim=head_dim if num_heads is None else None, norm=norm,
                                    transform_scale=transform_scale))
