"""Low-rank training by projection with energy transfer (LRPET) and factorisation for deployment.

S094: Guo, Lin, Chen, Xing, Liu & Xu, "Compact Model Training by Low-Rank Projection with Energy Transfer",
arXiv:2204.05566 (``papers.LRPET``; official code github.com/BZQLin/LRPET). Training alternates SGD steps with a
projection of every conv / linear weight matrix (a conv's ``(out, in*kh*kw)`` reshape) onto rank ``r`` by truncated
SVD; the matrix energy (sum of squared singular values) the projection removes is transferred to the kept singular
values, and BN rectification makes the projection see the weight the deployed model will use (the conv with its BN
folded in). After training each layer is factored into two smaller layers.

What this module implements, and where the values come from (the paper body could not be read here; the formulas
follow the abstract and the official ``cifar10_train.py``):

- energy transfer: the kept singular values are multiplied by one common factor ``sqrt(alpha)``,
  ``alpha = (||s||^2 - ||redu * s_dropped||^2) / ||s_kept||^2``, and the dropped ones by ``redu`` (0: exactly rank
  ``r``, the default; the official code's ``redu_fac`` keeps a fraction). The Frobenius norm of the matrix is
  therefore unchanged. The abstract's "uniformly transfer" could also be read as adding the same energy to every kept
  value; the official multiplicative form is the one used here.
- BN rectification (``bn=``): the rows are scaled by ``a = gamma / sqrt(running_var + eps)`` before the SVD and by
  ``a / (a^2 + rect_eps)`` after it (the official regularised inverse; ``rect_eps`` is its ``eps_set``).
- :func:`factorize`: ``W ~ N @ C`` with ``C = sqrt(S) V^T`` (a conv ``in -> r`` with the original kernel, stride,
  padding, dilation, no bias) and ``N = U sqrt(S)`` (a 1x1 conv ``r -> out`` with the original bias), as the
  official code; a Linear becomes two Linears. Grouped convs are not factored (refused with ``ConfigError``).

A training loop calls a :class:`LowRankProjector` after its optimizer steps (``projector(step)`` projects every
``every`` steps; the official code projects once per epoch); :func:`factorize_model` converts the trained model for
deployment. The trainer has no callback hook yet, so this is a callback API for hand-written loops.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from blockzoo.checks import check_int, check_positive
from blockzoo.deploy.convbn import find_convbn_pairs
from blockzoo.errors import ConfigError

__all__ = ["project_matrix", "lowrank_project", "factorize", "factorize_model", "layer_ranks", "LowRankProjector"]


def project_matrix(w: torch.Tensor, rank: int, *, redu: float = 0.0) -> torch.Tensor:
    """The rank-``rank`` projection of the 2-D ``w`` with energy transfer (module docstring); same dtype."""
    check_int(rank, "rank", min_value=1, owner="lowrank")
    check_positive(redu, "redu", allow_zero=True, owner="lowrank")
    if redu >= 1:
        raise ConfigError(f"lowrank: redu must be in [0, 1) (the fraction of each dropped singular value kept), got "
                          f"{redu}")
    u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
    if rank >= s.numel() or s[0] <= 0:
        return w.clone()
    kept, dropped = s[:rank], s[rank:] * redu
    alpha = (s.square().sum() - dropped.square().sum()) / kept.square().sum().clamp_min(1e-300)
    s = torch.cat([kept * alpha.sqrt(), dropped])
    return ((u * s) @ vh).to(w.dtype)


def _matrix(m: nn.Module) -> torch.Tensor:
    return m.weight.detach().reshape(m.weight.shape[0], -1)


def layer_ranks(model: nn.Module, ratio: float) -> dict[str, int]:
    """``{layer name: rank}`` keeping ``ceil(ratio * full rank)`` for every ungrouped conv / linear of ``model``."""
    check_positive(ratio, "ratio", owner="lowrank")
    if ratio > 1:
        raise ConfigError(f"lowrank: ratio must be in (0, 1] (the fraction of each layer's rank kept), got {ratio}")
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1):
            out[name] = max(1, int(-(-ratio * min(_matrix(m).shape) // 1)))
    return out


@torch.no_grad()
def lowrank_project(model: nn.Module, ranks: dict[str, int], *, redu: float = 0.0, bn_rectify: bool = True,
                    rect_eps: float = 1e-10) -> None:
    """Project every layer named in ``ranks`` onto its rank, in place (energy transfer; BN rectification for a conv
    whose output feeds a BatchNorm2d, found with ``deploy.find_convbn_pairs``, when ``bn_rectify``)."""
    bns = {c: model.get_submodule(b) for c, b in find_convbn_pairs(model)} if bn_rectify else {}
    for name, rank in ranks.items():
        m = model.get_submodule(name)
        w = _matrix(m)
        bn = bns.get(name)
        if bn is None:
            m.weight.copy_(project_matrix(w, rank, redu=redu).reshape_as(m.weight))
            continue
        a = (torch.rsqrt(bn.running_var.double() + bn.eps) * bn.weight.double()).unsqueeze(1)
        merged = project_matrix(w.double() * a, rank, redu=redu)
        m.weight.copy_((merged * a / (a.square() + rect_eps)).to(w.dtype).reshape_as(m.weight))


def factorize(layer: nn.Module, rank: int) -> nn.Sequential:
    """Two layers equal to ``layer`` with its weight projected to rank ``rank`` (exact when it has that rank)."""
    check_int(rank, "rank", min_value=1, owner="lowrank")
    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        raise ConfigError(f"lowrank: cannot factor a grouped conv (groups={layer.groups}); leave it out of ranks")
    if not isinstance(layer, (nn.Conv2d, nn.Linear)):
        raise ConfigError(f"lowrank: can factor nn.Conv2d and nn.Linear layers, got {type(layer).__name__}")
    w = layer.weight.detach()
    u, s, vh = torch.linalg.svd(w.reshape(w.shape[0], -1).double(), full_matrices=False)
    rank = min(rank, s.numel())
    root = s[:rank].sqrt()
    c, n = root[:, None] * vh[:rank], u[:, :rank] * root
    kw = dict(device=w.device, dtype=w.dtype)
    bias = layer.bias is not None
    if isinstance(layer, nn.Linear):
        first, second = nn.Linear(layer.in_features, rank, bias=False, **kw), nn.Linear(rank, w.shape[0], bias, **kw)
    else:
        first = nn.Conv2d(layer.in_channels, rank, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                          bias=False, padding_mode=layer.padding_mode, **kw)
        second = nn.Conv2d(rank, layer.out_channels, 1, bias=bias, **kw)
    with torch.no_grad():
        first.weight.copy_(c.reshape(first.weight.shape).to(w.dtype))
        second.weight.copy_(n.reshape(second.weight.shape).to(w.dtype))
        if bias:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def factorize_model(model: nn.Module, ranks: dict[str, int]) -> nn.Module:
    """Replace, in place, every layer in ``ranks`` whose factorisation has fewer parameters; returns ``model``."""
    for name, rank in ranks.items():
        m = model.get_submodule(name)
        out_f, in_f = _matrix(m).shape
        if rank * (out_f + in_f) >= out_f * in_f:
            continue                                   # factoring would not make this layer smaller
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, factorize(m, rank))
    return model


class LowRankProjector:
    """LRPET's projection step as a training-loop callback: ``projector(step)`` projects ``model`` onto ``ranks``
    (default: :func:`layer_ranks` with ``ratio``) whenever ``step % every == 0``; returns whether it projected."""

    def __init__(self, model: nn.Module, *, ratio: float = 0.5, ranks: dict[str, int] | None = None, every: int = 1,
                 redu: float = 0.0, bn_rectify: bool = True):
        self.every = check_int(every, "every", min_value=1, owner="lowrank")
        self.model, self.redu, self.bn_rectify = model, redu, bn_rectify
        self.ranks = layer_ranks(model, ratio) if ranks is None else dict(ranks)

    def __call__(self, step: int) -> bool:
        if step % self.every:
            return False
        lowrank_project(self.model, self.ranks, redu=self.redu, bn_rectify=self.bn_rectify)
        return True
