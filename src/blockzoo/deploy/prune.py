"""Structured (filter) pruning with physical removal: Taylor importance (S104) on a channel-dependency graph.

S104: Molchanov, Mallya, Tyree, Frosio & Kautz, "Importance Estimation for Neural Network Pruning", CVPR 2019,
arXiv:1906.10771 (``papers.TAYLOR_PRUNING``; official code github.com/NVlabs/Taylor_pruning, read for the facts below).

Importance (first-order Taylor, "FO"): the loss change when a group of parameters ``S`` is removed is estimated by
``(sum_{s in S} g_s w_s)^2``, computed on each minibatch and averaged over the minibatches. ``criterion="bn_gate"``
(the default: the paper's best variant, "gate after BN" / Taylor-FO-BN, the official ``method=22``) puts a gate
``z = 1`` after each BatchNorm; its gradient is ``sum_{n,h,w} dL/dy * y``, which equals ``gamma * g_gamma + beta *
g_beta`` for the channel, so no gate module is inserted. ``criterion="weight"`` uses the filter's own parameters
(its conv / linear weights and bias; the paper's "FO on weights"; the official ``method=0`` sums the squares
``sum (g w)^2`` instead of squaring the sum). A group without any BatchNorm (ConvNeXt: LayerNorm) uses the weight
criterion under ``bn_gate`` too.

Channels that must stay aligned are pruned together. :func:`channel_groups` traces the model with torch.fx (custom
leaves: convs, linears, norms, per-channel modules such as ``LayerScale``, the option-A ``PadShortcut``), propagates
shapes and unions individual channels: the inputs of an add / mul, the input and output of a depthwise conv, a
norm, an activation, the channel axis through ``permute``, pooling, flattening and the option-A zero padding. A
group is one equivalence class; its importance is the first-order estimate of removing all of its channels at once,
``(sum over the group's gates of g * z)^2`` (one shared gate; the official code shares one gate per ResNet stage on
the skip path and *sums* its contributions, the same estimate). Channels reaching the model input or output, a
grouped (non-depthwise) conv, an op the analysis does not know or a module called twice are frozen (never
pruned), so any traceable model can be pruned where it is safe; a model torch.fx cannot trace raises
``IncompatibleBlockError``. The trace is the eval-mode graph. Removing a zero-importance channel is exact after a
BatchNorm / per-channel op; channels normalised together by a LayerNorm (ConvNeXt) can be pruned too, but removing
one changes the statistics of the others (not exact; fine-tuning absorbs it); GroupNorm, concatenation and channel
shuffles freeze their channels (GhostNet, TransNeXt, ConViT, InceptionNeXt have no prunable groups yet).

Iterative removal (the official schedule: ``frequency=30`` minibatches of fine-tuning between removals,
``prune_per_iteration`` neurons each time, a global ranking with no per-layer normalisation): :func:`prune`
fine-tunes on ``batches_per_step`` minibatches while accumulating the importance, removes the ``per_step`` least
important groups, and repeats until the MACs (``blockzoo.profile.count_macs``) are at most ``target_macs`` of the
original. Differences from the official code: its criterion momentum across removal rounds (0.9) is not used (the
groups change shape after a physical removal; each round starts fresh), and removal is physical (smaller
``Conv2d`` / ``BatchNorm2d`` / ``LayerNorm`` / ``Linear`` modules) instead of a mask, so parameters, MACs and
latency really drop. A module always keeps at least one channel.

``method="svd"`` adds S107's layer-wise stage (Zhou, Lian, Yin & Wang, "Neural Network Compression via Effective
Filter Analysis and Hierarchical Pruning", arXiv:2206.03596, ``papers.HIER_PRUNING``): per-layer caps from the
singular values of each layer's gradient matrix, then Taylor order within the caps; a reconstruction, see
:func:`prune` and :func:`gradient_redundancy`.

The result records a *channel plan* (per rewritten module its kind and channel counts): :func:`apply_plan` rebuilds
the pruned shapes on a freshly built model so a checkpoint's state dict can be loaded without pickles.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.checks import check_choice, check_int, check_positive
from blockzoo.errors import ConfigError, IncompatibleBlockError

__all__ = ["PRUNE_METHODS", "CRITERIA", "ChannelGraph", "channel_groups", "taylor_importance", "remove_groups",
           "gradient_redundancy",
           "apply_plan", "prune", "PruneResult", "save_pruned", "load_pruned"]

PRUNE_METHODS = ("taylor", "svd")
CRITERIA = ("bn_gate", "weight")


class ChannelPad(nn.Module):
    """Option-A shortcut after pruning: subsample by ``stride`` and zero-pad ``lo`` / ``hi`` channels."""

    def __init__(self, stride: int, lo: int, hi: int):
        super().__init__()
        self.stride, self.lo, self.hi = stride, lo, hi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.lo, self.hi))


def _is_pad(m: nn.Module) -> bool:
    from blockzoo.models.common.resnet import PadShortcut  # lazy: blockzoo.blocks imports blockzoo.deploy
    return isinstance(m, (PadShortcut, ChannelPad))


def _pad_of(m: nn.Module) -> tuple[int, int]:
    return (m.lo, m.hi) if isinstance(m, ChannelPad) else (m.pad // 2, m.pad - m.pad // 2)


def _per_channel(m: nn.Module) -> bool:
    """A parameterised leaf that scales / shifts each channel (BN, LayerNorm over C, LayerScale, ...)."""
    if isinstance(m, nn.GroupNorm):        # normalises groups of channels together: not per channel
        return False
    tensors = list(m.parameters(recurse=False)) + [b for b in m.buffers(recurse=False) if b.dim() > 0]
    return (not list(m.children()) and bool(tensors) and all(t.dim() == 1 for t in tensors)
            and len({t.numel() for t in tensors}) == 1)


class _Shapes(fx.Interpreter):
    """Runs the traced graph once and records every tensor node's shape in ``node.meta["shape"]``."""

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            n.meta["shape"] = tuple(result.shape)
        return result


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return (isinstance(m, (nn.Conv2d, nn.Linear, nn.LayerNorm, nn.modules.batchnorm._BatchNorm)) or _is_pad(m)
                or _per_channel(m) or super().is_leaf_module(m, qualname))


# parameter-free leaves that act on each channel separately (activations, dropout, pooling, flatten of 1 x 1 maps)
_PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.ELU,
                 nn.LeakyReLU, nn.Mish, nn.Identity, nn.Dropout, nn.Dropout2d, nn.MaxPool2d, nn.AvgPool2d,
                 nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Upsample, nn.ZeroPad2d)
_ELEMENTWISE = {operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul,
                torch.div, "add", "sub", "mul", "div", "add_", "mul_"}
_UNARY = {F.relu, F.relu6, F.gelu, F.silu, F.hardswish, F.sigmoid, torch.relu, torch.sigmoid, torch.tanh, F.dropout,
          F.elu, F.leaky_relu, F.hardsigmoid, "relu", "sigmoid", "tanh", "contiguous", "clone", "float", "to",
          "relu_", "sigmoid_", "gelu", "type_as", "detach"}
_REDUCE = {"mean", "amax", "sum", torch.mean, torch.amax, torch.sum, torch.flatten, "flatten"}
_IGNORED = {"size", "dim", getattr, "shape"}


@dataclass
class _Use:
    """One leaf module of the graph: its kind and the channel ids of its input and output."""

    name: str
    kind: str                  # conv | dw | linear | perchannel | pad
    ins: list[int]
    outs: list[int]


@dataclass
class ChannelGraph:
    """The channel-dependency analysis of a model (:func:`channel_groups`)."""

    model: nn.Module
    uses: dict[str, _Use]
    parent: list[int]
    frozen: set[int]
    gates: dict[str, list[int]]                      # BatchNorm name -> ids of its channels
    groups: list[list[int]] = field(default_factory=list)    # prunable groups (lists of ids), graph order

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i


def channel_groups(model: nn.Module, example: torch.Tensor) -> ChannelGraph:
    """Trace ``model`` on ``example`` (one batch of inputs) and group its channels (module docstring)."""
    was = model.training
    model.eval()                   # the inference graph: no stochastic depth / dropout branches
    try:
        graph = _Tracer().trace(model)
        with torch.no_grad():
            _Shapes(fx.GraphModule(model, graph)).run(example)
    except Exception as e:  # noqa: BLE001 - any tracing failure means the analysis cannot see the model
        raise IncompatibleBlockError(f"pruning needs a model torch.fx can trace; {type(model).__name__} failed "
                                     f"({type(e).__name__}: {str(e)[:120]})") from None
    finally:
        model.train(was)
    parent: list[int] = []
    frozen: set[int] = set()
    ids: dict[fx.Node, list[int]] = {}
    axis: dict[fx.Node, int] = {}
    uses: dict[str, _Use] = {}
    gates: dict[str, list[int]] = {}
    calls: dict[str, int] = {}

    def fresh(n: int) -> list[int]:
        start = len(parent)
        parent.extend(range(start, start + n))
        return list(range(start, start + n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(a: list[int], b: list[int]) -> None:
        for x, y in zip(a, b):
            rx, ry = find(x), find(y)
            if rx != ry:
                parent[ry] = rx

    def freeze(n: Any) -> None:
        if isinstance(n, fx.Node) and n in ids:
            frozen.update(ids[n])

    def shape(n: Any) -> tuple[int, ...] | None:
        return n.meta.get("shape") if isinstance(n, fx.Node) else None

    def track(n: fx.Node, chan: list[int], ax: int) -> None:
        ids[n], axis[n] = chan, ax

    def tensor_args(n: fx.Node) -> list[fx.Node]:
        return [a for a in n.all_input_nodes if a in ids]

    for n in graph.nodes:
        out_shape = shape(n)
        if n.op == "placeholder":
            if out_shape is not None and len(out_shape) >= 2:
                track(n, fresh(out_shape[1]), 1)
                freeze(n)
            continue
        if n.op == "output":
            for a in n.all_input_nodes:
                freeze(a)
            continue
        if n.op == "get_attr":
            continue
        args = tensor_args(n)
        if n.op == "call_module":
            calls[n.target] = calls.get(n.target, 0) + 1
            m = model.get_submodule(n.target)
            x = n.args[0] if n.args and n.args[0] in ids else None
            if x is None:
                for a in args:
                    freeze(a)
                continue
            xin, ax = ids[x], axis[x]
            if isinstance(m, nn.Conv2d) and ax == 1:
                if m.groups == 1:
                    out = fresh(m.out_channels)
                    uses[n.target] = _Use(n.target, "conv", xin, out)
                elif m.groups == m.in_channels == m.out_channels:
                    out = xin
                    uses[n.target] = _Use(n.target, "dw", xin, out)
                else:
                    freeze(x)
                    out = fresh(m.out_channels)
                    frozen.update(out)
                track(n, out, 1)
            elif isinstance(m, nn.Linear) and out_shape is not None and ax == len(out_shape) - 1:
                out = fresh(m.out_features)
                uses[n.target] = _Use(n.target, "linear", xin, out)
                track(n, out, ax)
            elif _is_pad(m) and ax == 1:
                lo, hi = _pad_of(m)
                out = fresh(lo) + xin + fresh(hi)
                uses[n.target] = _Use(n.target, "pad", xin, out)
                track(n, out, 1)
            elif _per_channel(m) and len(xin) == _size(m, "perchannel", "out") and (
                    ax == (len(out_shape) - 1 if type(m) is nn.LayerNorm else 1)):
                uses[n.target] = _Use(n.target, "perchannel", xin, xin)
                if isinstance(m, nn.BatchNorm2d) and m.affine:
                    gates[n.target] = xin
                track(n, xin, ax)
            elif isinstance(m, _PASS_MODULES) and _keeps_channels(shape(x), out_shape, ax):
                track(n, xin, ax)
            else:
                freeze(x)
                if out_shape is not None and len(out_shape) >= 2:
                    track(n, fresh(out_shape[1]), 1)
                    freeze(n)
            continue
        target = n.target
        if target in _IGNORED or not args:
            continue
        # the input that carries the output's channels (a broadcast operand, e.g. an (N, 1, H, W) map, does not)
        x = next((a for a in args if shape(a) == out_shape), args[0])
        xin, ax = ids[x], axis[x]
        if target in _ELEMENTWISE and out_shape is not None:
            ok = True
            for a in n.all_input_nodes:
                s = shape(a)
                if a in ids:
                    ok &= len(s) - axis[a] == len(out_shape) - ax and s[axis[a]] in (len(xin), 1)
                elif s is not None and len(s) >= len(out_shape) - ax and s[len(s) - (len(out_shape) - ax)] > 1:
                    ok = False                      # a parameter / constant with one value per channel
            if not ok:
                for a in args:
                    freeze(a)
                continue
            for a in args:
                if a is not x and len(ids[a]) == len(xin):
                    union(xin, ids[a])
                elif a is not x:
                    freeze(a)                       # broadcast along the channels: its one channel must stay
            track(n, xin, ax)
        elif target in _UNARY:
            track(n, xin, ax)
        elif target is F.layer_norm and _norm_owner(n) and len(n.args[1]) == 1 and ax == len(out_shape) - 1:
            owner = _norm_owner(n)                  # a norm module applied functionally (channels last)
            calls[owner] = calls.get(owner, 0) + 1
            uses[owner] = _Use(owner, "perchannel", xin, xin)
            track(n, xin, ax)
        elif target in ("permute",) and out_shape is not None:
            dims = n.args[1] if len(n.args) == 2 else n.args[1:]
            dims = [d % len(out_shape) for d in dims]
            track(n, xin, dims.index(ax))
        elif target == operator.getitem and out_shape is not None:
            idx = n.args[1] if isinstance(n.args[1], tuple) else (n.args[1],)
            if ax < len(idx) and all(isinstance(i, slice) for i in idx[:ax + 1]) and idx[ax] == slice(None):
                track(n, xin, ax)
            else:
                freeze(x)
        elif target in _REDUCE and out_shape is not None:
            in_shape = shape(x)
            if _keeps_channels(in_shape, out_shape, ax):
                track(n, xin, ax)
            elif _reduced_dims(n, len(in_shape)) is not None and ax not in _reduced_dims(n, len(in_shape)):
                red = _reduced_dims(n, len(in_shape))
                track(n, xin, ax - sum(d < ax for d in red))
            else:
                freeze(x)
        else:
            for a in args:
                freeze(a)
    for name, count in calls.items():          # a shared module cannot be pruned per call
        if count > 1 and name in uses:
            frozen.update(uses[name].ins + uses[name].outs)
            del uses[name]
    cg = ChannelGraph(model, uses, parent, frozen, gates)
    bad = {cg.find(i) for i in frozen}
    members: dict[int, list[int]] = {}
    for i in range(len(parent)):
        members.setdefault(cg.find(i), []).append(i)
    produced = {cg.find(i) for u in uses.values() if u.kind in ("conv", "linear") for i in u.outs}
    cg.groups = [g for r, g in members.items() if r not in bad and r in produced]
    return cg


def _keeps_channels(in_shape: tuple[int, ...] | None, out_shape: tuple[int, ...] | None, ax: int) -> bool:
    """The op leaves the channel axis ``ax`` in place: same rank, or only size-1 dims after it are dropped."""
    if in_shape is None or out_shape is None or len(out_shape) <= ax or out_shape[ax] != in_shape[ax]:
        return False
    return len(out_shape) == len(in_shape) or all(d == 1 for d in in_shape[ax + 1:])


def _norm_owner(n: fx.Node) -> str | None:
    """The module whose ``weight`` and ``bias`` a functional ``layer_norm`` call uses (``None`` if not one)."""
    w = n.args[2] if len(n.args) > 2 else n.kwargs.get("weight")
    b = n.args[3] if len(n.args) > 3 else n.kwargs.get("bias")
    if not all(isinstance(a, fx.Node) and a.op == "get_attr" for a in (w, b)):
        return None
    owner = w.target.rpartition(".")[0]
    return owner if b.target.rpartition(".")[0] == owner else None


def _reduced_dims(n: fx.Node, rank: int) -> list[int] | None:
    dims = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
    if n.kwargs.get("keepdim") or (len(n.args) > 2 and n.args[2] is True) or dims is None:
        return None
    dims = [dims] if isinstance(dims, int) else list(dims)
    return [d % rank for d in dims]


# ------------------------------------------------------------------------------------------------ importance
def _group_index(cg: ChannelGraph) -> dict[int, int]:
    return {cg.find(g[0]): k for k, g in enumerate(cg.groups)}


def _batch_scores(cg: ChannelGraph, criterion: str) -> torch.Tensor:
    """``(sum over each group's gates of g * w)^2`` from the gradients currently in ``.grad``."""
    index = _group_index(cg)
    model = cg.model
    gate_sum = torch.zeros(len(cg.groups), dtype=torch.float64)
    has_gate = torch.zeros(len(cg.groups), dtype=torch.bool)
    weight_sum = torch.zeros(len(cg.groups), dtype=torch.float64)

    def add(target: torch.Tensor, flags: torch.Tensor | None, chans: list[int], contrib: torch.Tensor) -> None:
        rows = [(k, index.get(cg.find(c))) for k, c in enumerate(chans)]
        rows = [(k, g) for k, g in rows if g is not None]
        if rows:
            ks, gs = zip(*rows)
            target.index_add_(0, torch.tensor(gs), contrib.double()[list(ks)])
            if flags is not None:
                flags[list(gs)] = True

    if criterion == "bn_gate":
        for name, chans in cg.gates.items():
            bn = model.get_submodule(name)
            if bn.weight.grad is None:
                continue
            contrib = bn.weight.detach() * bn.weight.grad + bn.bias.detach() * bn.bias.grad
            add(gate_sum, has_gate, chans, contrib)
    for u in cg.uses.values():
        if u.kind not in ("conv", "linear"):
            continue
        m = model.get_submodule(u.name)
        if m.weight.grad is None:
            continue
        contrib = (m.weight.detach() * m.weight.grad).reshape(m.weight.shape[0], -1).sum(1)
        if m.bias is not None and m.bias.grad is not None:
            contrib = contrib + m.bias.detach() * m.bias.grad
        add(weight_sum, None, u.outs, contrib)
    return torch.where(has_gate, gate_sum, weight_sum).square()


def taylor_importance(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
                      criterion: str = "bn_gate", loss_fn: Callable[..., torch.Tensor] = F.cross_entropy,
                      cg: ChannelGraph | None = None, optimizer: torch.optim.Optimizer | None = None,
                      ) -> tuple[ChannelGraph, torch.Tensor]:
    """The Taylor importance of every prunable group, averaged over ``batches`` (``(images, labels)`` pairs).

    With ``optimizer`` each batch is also a fine-tuning step (the official schedule: the importance is gathered
    during fine-tuning). Returns the channel graph and one score per ``cg.groups`` entry.
    """
    check_choice(criterion, "criterion", CRITERIA, owner="prune")
    total, n = None, 0
    for images, labels in batches:
        if cg is None:
            cg = channel_groups(model, images[:1])
        model.zero_grad(set_to_none=True)
        loss_fn(model(images), labels).backward()
        s = _batch_scores(cg, criterion)
        total = s if total is None else total + s
        n += 1
        if optimizer is not None:
            optimizer.step()
    if n == 0:
        raise ConfigError("prune: the data loader yielded no batches; pass a loader with at least one batch")
    model.zero_grad(set_to_none=True)
    return cg, total / n


# -------------------------------------------------------------------------------------------- physical removal
def _slice_param(p: torch.Tensor | None, keep: list[int], dim: int = 0) -> nn.Parameter | None:
    if p is None:
        return None
    return nn.Parameter(p.detach().index_select(dim, torch.tensor(keep, device=p.device)).clone(),
                        requires_grad=p.requires_grad)


def _rewrite(model: nn.Module, u: _Use, keep_in: list[int], keep_out: list[int]) -> dict[str, Any]:
    """Shrink module ``u.name`` to the kept channels; returns its plan entry."""
    m = model.get_submodule(u.name)
    idx = torch.tensor
    if u.kind == "conv":
        m.weight = _slice_param(_slice_param(m.weight, keep_out), keep_in, 1)
        m.bias = _slice_param(m.bias, keep_out)
        m.in_channels, m.out_channels = len(keep_in), len(keep_out)
        return {"kind": "conv", "in": len(keep_in), "out": len(keep_out)}
    if u.kind == "dw":
        m.weight, m.bias = _slice_param(m.weight, keep_out), _slice_param(m.bias, keep_out)
        m.in_channels = m.out_channels = m.groups = len(keep_out)
        return {"kind": "dw", "out": len(keep_out)}
    if u.kind == "linear":
        m.weight = _slice_param(_slice_param(m.weight, keep_out), keep_in, 1)
        m.bias = _slice_param(m.bias, keep_out)
        m.in_features, m.out_features = len(keep_in), len(keep_out)
        return {"kind": "linear", "in": len(keep_in), "out": len(keep_out)}
    if u.kind == "perchannel":
        old = len(u.ins)
        for name, p in list(m.named_parameters(recurse=False)):
            setattr(m, name, _slice_param(p, keep_out))
        for name, b in list(m.named_buffers(recurse=False)):
            if b.dim() == 1:
                setattr(m, name, b.index_select(0, idx(keep_out, device=b.device)).clone())
        for attr in ("num_features", "dim", "channels", "num_channels"):
            if getattr(m, attr, None) == old:
                setattr(m, attr, len(keep_out))
        if isinstance(m, nn.LayerNorm):
            m.normalized_shape = (len(keep_out),)
        return {"kind": "perchannel", "out": len(keep_out)}
    lo, hi = _pad_of(m)
    n_lo = sum(k < lo for k in keep_out)
    n_hi = sum(k >= lo + len(u.ins) for k in keep_out)
    _replace(model, u.name, ChannelPad(m.stride, n_lo, n_hi))
    return {"kind": "pad", "stride": m.stride, "lo": n_lo, "hi": n_hi}


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def remove_groups(cg: ChannelGraph, remove: Iterable[int]) -> dict[str, dict[str, Any]]:
    """Physically remove the groups ``remove`` (indices into ``cg.groups``) from ``cg.model``; returns the plan
    entries of the rewritten modules. Raises ``ConfigError`` if a module would lose all of its channels."""
    gone = {cg.find(cg.groups[k][0]) for k in remove}
    plan = {}
    for u in cg.uses.values():
        keep_in = [k for k, c in enumerate(u.ins) if cg.find(c) not in gone]
        keep_out = [k for k, c in enumerate(u.outs) if cg.find(c) not in gone]
        if len(keep_in) == len(u.ins) and len(keep_out) == len(u.outs):
            continue
        if not keep_out or (u.kind != "pad" and not keep_in):
            raise ConfigError(f"prune: removing these groups would leave {u.name} without channels; remove fewer")
        with torch.no_grad():
            plan[u.name] = _rewrite(cg.model, u, keep_in, keep_out)
    return plan


def _removable(cg: ChannelGraph, order: Iterable[int], count: int, caps: dict[str, int] | None = None) -> list[int]:
    """The first ``count`` groups of ``order`` whose joint removal leaves every module at least one channel (and,
    with ``caps``, removes at most ``caps[name]`` more output channels of each capped layer)."""
    left = {name: [len(u.ins), len(u.outs)] for name, u in cg.uses.items()}
    if caps:
        for name, cap in caps.items():
            if name in left:
                left[name][1] = min(left[name][1], cap + 1)
    where: dict[int, list[tuple[str, int]]] = {}
    for name, u in cg.uses.items():
        for side, chans in enumerate((u.ins, u.outs)):
            if u.kind == "pad" and side == 0:
                continue
            for c in chans:
                where.setdefault(cg.find(c), []).append((name, side))
    chosen = []
    for k in order:
        if len(chosen) == count:
            break
        spots = where.get(cg.find(cg.groups[k][0]), [])
        need: dict[tuple[str, int], int] = {}
        for s in spots:
            need[s] = need.get(s, 0) + 1
        if all(left[name][side] > n for (name, side), n in need.items()):
            for (name, side), n in need.items():
                left[name][side] -= n
            chosen.append(k)
    return chosen


def apply_plan(model: nn.Module, plan: dict[str, dict[str, Any]]) -> nn.Module:
    """Give a freshly built ``model`` the pruned shapes of ``plan`` (values are then loaded from a state dict)."""
    for name, e in plan.items():
        try:
            m = model.get_submodule(name)
        except AttributeError:
            raise ConfigError(f"prune plan names {name!r}, which this model does not have; rebuild the model the "
                              f"plan was made for") from None
        kind = e.get("kind")
        if kind == "pad":
            _replace(model, name, ChannelPad(int(e["stride"]), int(e["lo"]), int(e["hi"])))
            continue
        if kind not in ("conv", "dw", "linear", "perchannel"):
            raise ConfigError(f"prune plan entry {name!r} has an unknown kind {kind!r}")
        n_in = int(e.get("in", e["out"]))
        u = _Use(name, kind, list(range(_size(m, kind, "in"))), list(range(_size(m, kind, "out"))))
        with torch.no_grad():
            _rewrite(model, u, list(range(n_in)), list(range(int(e["out"]))))
    return model


def _size(m: nn.Module, kind: str, side: str) -> int:
    if kind == "linear":
        return m.in_features if side == "in" else m.out_features
    if kind in ("conv", "dw"):
        return m.in_channels if side == "in" else m.out_channels
    return next(iter(m.parameters(recurse=False))).numel()


def gradient_redundancy(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], cg: ChannelGraph, *,
                        energy: float = 0.99, loss_fn: Callable[..., torch.Tensor] = F.cross_entropy,
                        ) -> dict[str, float]:
    """S107 (reconstruction, see :func:`prune`): per prunable conv / linear layer the redundancy
    ``1 - k / n``, ``k`` the number of singular values of the layer's gradient matrix (``n`` filters x fan-in,
    averaged over ``batches``) that hold ``energy`` of its squared singular values."""
    check_positive(energy, "energy", owner="prune")
    if energy > 1:
        raise ConfigError(f"prune: energy must be in (0, 1], got {energy}")
    prunable = {cg.find(g[0]) for g in cg.groups}
    layers = {n: model.get_submodule(n) for n, u in cg.uses.items()
              if u.kind in ("conv", "linear") and any(cg.find(c) in prunable for c in u.outs)}
    sums = {n: torch.zeros_like(m.weight, dtype=torch.float64) for n, m in layers.items()}
    count = 0
    for images, labels in batches:
        model.zero_grad(set_to_none=True)
        loss_fn(model(images), labels).backward()
        for n, m in layers.items():
            sums[n] += m.weight.grad.double()
        count += 1
    model.zero_grad(set_to_none=True)
    out = {}
    for n, g in sums.items():
        sv = torch.linalg.svdvals((g / max(count, 1)).reshape(g.shape[0], -1)).square()
        total = sv.sum()
        k = int((sv.cumsum(0) < energy * total).sum().item()) + 1 if total > 0 else g.shape[0]
        out[n] = 1.0 - min(k, g.shape[0]) / g.shape[0]
    return out


# ------------------------------------------------------------------------------------------------- the loop
@dataclass
class PruneResult:
    """What :func:`prune` did: the pruned model, its channel plan, and the MACs / parameters per round."""

    model: nn.Module
    plan: dict[str, dict[str, Any]]
    history: list[dict[str, float]]


def _macs(model: nn.Module, example: torch.Tensor) -> int:
    from blockzoo.profile import count_macs
    return int(count_macs(model, inputs=example[:1]).macs)


def prune(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], method: str = "taylor",
          target_macs: float = 0.6, *, criterion: str = "bn_gate", per_step: int | None = None,
          batches_per_step: int = 30, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0,
          finetune: bool = True, max_rounds: int = 1000, loss_fn: Callable[..., torch.Tensor] = F.cross_entropy,
          energy: float = 0.99, on_round: Callable[[dict[str, float]], None] | None = None) -> PruneResult:
    """Iterative Taylor pruning of ``model`` (in place) until its MACs are at most ``target_macs`` of the original.

    ``loader`` yields ``(images, labels)`` and is cycled; ``per_step`` groups are removed per round (default: 2% of
    the prunable groups, at least one), after ``batches_per_step`` minibatches of importance gathering, which are
    SGD fine-tuning steps (``lr``, ``momentum``, ``weight_decay``; a fresh optimizer each round, since the
    parameters change shape) unless ``finetune=False``. ``on_round`` gets each round's record (round, macs, params,
    groups removed). Returns a :class:`PruneResult`; save it with :func:`save_pruned`.

    ``method="svd"`` (S107, Zhou, Lian, Yin & Wang, "Neural Network Compression via Effective Filter Analysis and
    Hierarchical Pruning", arXiv:2206.03596; ``papers.HIER_PRUNING``; no official code): hierarchical pruning,
    layer-wise then filter-wise. **Reconstruction** from the abstract and third-party summaries (the paper body
    could not be read): before pruning, :func:`gradient_redundancy` estimates each layer's maximum redundancy from
    the singular values of its gradient matrix (``energy`` of the squared singular values; 0.99 is this library's
    choice); that fraction of the layer's filters is the most it may lose (a tied group needs room in every layer
    that produces it), and within those caps filters are removed in Taylor order as for ``"taylor"``. Pruning
    stops early when the caps are exhausted (the estimated maximum compression is reached): ``history`` shows it.
    """
    check_choice(method, "method", PRUNE_METHODS, owner="prune")
    check_choice(criterion, "criterion", CRITERIA, owner="prune")
    check_positive(target_macs, "target_macs", owner="prune")
    if target_macs >= 1:
        raise ConfigError(f"prune: target_macs is the fraction of the original MACs to keep, in (0, 1); got "
                          f"{target_macs}")
    check_int(batches_per_step, "batches_per_step", min_value=1, owner="prune")
    if per_step is not None:
        check_int(per_step, "per_step", min_value=1, owner="prune")
    batches = _cycle(loader)
    first = next(batches)
    example = first[0]
    base = _macs(model, example)
    plan: dict[str, dict[str, Any]] = {}
    history = [{"round": 0, "macs": base, "params": _n_params(model), "removed": 0}]
    pending = [first]
    caps = None
    if method == "svd":
        cg0 = channel_groups(model, example[:1])
        chunk = pending + [next(batches) for _ in range(batches_per_step - 1)]
        model.train()
        red = gradient_redundancy(model, chunk, cg0, energy=energy, loss_fn=loss_fn)
        caps = {n: int(r * len(cg0.uses[n].outs)) for n, r in red.items()}
        history[0]["redundancy"] = red
    for rnd in range(1, max_rounds + 1):
        if history[-1]["macs"] <= target_macs * base:
            break
        cg = channel_groups(model, example[:1])
        if not cg.groups:
            raise IncompatibleBlockError(f"prune: {type(model).__name__} has no prunable channel groups (every "
                                         f"channel is tied to the input, the output or an unsupported op)")
        step = per_step or max(1, math.ceil(0.02 * len(cg.groups)))
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay) \
            if finetune else None
        chunk = pending + [next(batches) for _ in range(batches_per_step - len(pending))]
        pending = []
        model.train()
        _, scores = taylor_importance(model, chunk, criterion=criterion, loss_fn=loss_fn, cg=cg, optimizer=opt)
        chosen = _removable(cg, scores.argsort().tolist(), step, caps)
        if not chosen:
            break
        if caps is not None:
            for name in caps:
                if name in cg.uses:
                    gone = {cg.find(cg.groups[k][0]) for k in chosen}
                    caps[name] -= sum(cg.find(c) in gone for c in cg.uses[name].outs)
        plan.update(remove_groups(cg, chosen))
        rec = {"round": rnd, "macs": _macs(model, example), "params": _n_params(model), "removed": len(chosen)}
        history.append(rec)
        if on_round is not None:
            on_round(rec)
    return PruneResult(model, plan, history)


PLAN_KEY = "prune_plan"


def save_pruned(path: str, model: nn.Module, plan: dict[str, dict[str, Any]], model_spec: dict[str, Any], *,
                info: dict[str, Any] | None = None) -> None:
    """Write the pruned ``model`` as a checkpoint (``train.checkpoint.save_checkpoint``, safetensors, no pickle)
    whose config carries the channel plan (and ``info``), so :func:`load_pruned` can rebuild it."""
    from blockzoo.train.checkpoint import save_checkpoint
    save_checkpoint(path, model=model, model_spec=model_spec, rng=False,
                    config={PLAN_KEY: plan, "prune": dict(info or {})})


def load_pruned(path: str) -> nn.Module:
    """The pruned model in the checkpoint ``path`` (written by :func:`save_pruned`), in eval mode: the registered
    model rebuilt from the file's model spec, given the plan's shapes, then its weights."""
    from blockzoo.errors import CheckpointError
    from blockzoo.registry import create_model
    from blockzoo.train.checkpoint import load_weights, read_metadata, read_model_spec

    plan = (read_metadata(path).get("config") or {}).get(PLAN_KEY)
    spec = read_model_spec(path)
    if plan is None or spec is None:
        raise CheckpointError(f"{path!r} is not a pruned checkpoint (no {PLAN_KEY} or model_spec in its config); "
                              f"load it with blockzoo.train.load_model")
    size = {} if spec["img_size"] is None else {"img_size": tuple(spec["img_size"])}
    model = create_model(spec["name"], num_classes=spec["num_classes"], in_chans=spec["in_chans"], **size,
                         **{**spec["model_kwargs"], **spec["slots"]})
    load_weights(path, apply_plan(model, plan))
    return model.eval()


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _cycle(loader: Iterable[Any]):
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ConfigError("prune: the data loader yielded no batches; pass a loader with at least one batch")
