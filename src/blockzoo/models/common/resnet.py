"""The ResNet skeleton shared by every ResNet-shaped family (ResNet, SE/ECA-ResNet, SKNet, the parameter-free
ResNets): basic and bottleneck residual units with ``attn`` / ``conv`` / ``connection`` slots, option A / B shortcuts,
and the :class:`ResNet` backbone (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
arXiv:1512.03385). Registers nothing: the families register their configurations (``models/resnet.py``,
``models/sknet.py``, ``models/pfnet.py``).

Slots: ``attn`` on the residual branch after the last norm, before the addition (as in the SE and ECA papers);
``conv`` = the first 3x3 conv unit of a basic block / the 3x3 unit of a bottleneck (conv -> norm -> act);
``norm``, ``act``, ``connection`` (how the branch is merged with the shortcut) and ``head`` (pooling).

Norm positions: ``norm`` is every norm by default; ``stem_norm`` (after the stem conv), ``norm1`` (after a block's first
conv: ``bn1`` of a bottleneck, the norm of a basic block's first conv unit) and ``post_norm`` (after the residual
addition, before the activation; none by default) override single positions. With ``norm="ibn_a"`` / ``"ibn_b"`` the
IBN-Net placement rules of :func:`blockzoo.blocks.norm.ibn.resnet_placement` choose them (IBN-Net, ECCV 2018).

Residual streams (hyper-connections, :mod:`blockzoo.blocks.connection.hyper`, Zhu et al., ICLR 2025): the basic and
bottleneck units build their ``connection`` slot with ``SlotContext(streams=True)``; with a stream connection
(``connection="hyper_connection"``) the trunk's first unit copies its input into the ``n`` streams (folded into the
batch), each unit reads its branch input through the width connection, applies its shortcut to the mixed streams and
writes the branch back through the depth connection (the post-addition norm and activation then act on every
stream), and the last unit sums the streams. The stage feature maps are the sums of their streams.

Parallel stack (``parallel=k``; Bermeitinger, Hrycej & Handschuh, "Make Deep Networks Shallow Again", KDIR 2023,
arXiv:2309.08414): the consecutive identity-shortcut units of each stage are applied ``k`` at a time to the same
input, ``act(x + sum_i F_i(x))`` (:class:`ParallelGroup`); a unit with a stride or a projection shortcut stays
sequential, because its branches and shortcut change the shape.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.blocks.common.drop import drop_path_schedule, make_drop_path
from blockzoo.blocks.common.layers import make_act, make_norm
from blockzoo.blocks.connection.hyper import combine_streams, stream_trunk
from blockzoo.blocks.norm.ibn import resnet_placement
from blockzoo.checks import check_int
from blockzoo.errors import ConfigError
from blockzoo.models.base import Backbone, ImageNetStem, init_weights, out_size, parse_once, to_size
from blockzoo.registry import build_slot

__all__ = ["SLOTS", "PadShortcut", "BasicBlock", "Bottleneck", "ParallelGroup", "ResNet"]

# the skeleton's slot defaults (the ResNet family's registered slots; variants override some)
SLOTS = {"attn": "none", "conv": "conv3x3", "norm": "bn", "act": "relu", "connection": "residual", "head": "avg"}


class PadShortcut(nn.Module):
    """Option A shortcut: subsample spatially by ``stride`` and zero-pad the new channels (no parameters)."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride, self.pad = stride, planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        lo = self.pad // 2
        return F.pad(x, (0, 0, 0, 0, lo, self.pad - lo))


class _ResidualUnit(nn.Module):
    """What the basic and the bottleneck unit share: the branch's ``attn`` slot, the shortcut, stochastic depth and
    the ``connection`` slot that merges them, then the activation."""

    def _init_merge(self, in_planes: int, out_planes: int, stride: int, feat_out, *, shortcut: str, attn, norm, act,
                    connection, ctx, drop_path: float, post_norm="none", streams: bool = False) -> None:
        self.attn = build_slot("attn", attn, out_planes, ctx("attn", feat_out))
        self.shortcut = _shortcut(in_planes, out_planes, stride, shortcut, norm)
        # streams=True: the unit's forward carries residual streams (hyper-connections; see the module docstring)
        where = ctx("connection", feat_out)
        self.merge = build_slot("connection", connection, out_planes,
                                dataclasses.replace(where, streams=True) if streams and where is not None else where)
        self.streams = getattr(self.merge, "streams", 0)   # > 0: the merge is a stream (hyper-)connection
        if self.streams and in_planes != out_planes:
            self.merge.set_input_channels(in_planes)       # its width connections read the unit's input streams
        self.expands = self.reduces = False                # the trunk's first / last unit (set by ResNet)
        self.stride = stride
        self.post_norm = make_norm(post_norm, out_planes)   # after the addition (IBN-b's IN); identity by default
        self.drop_path = make_drop_path(drop_path)
        self.act = make_act(act, inplace=True)   # on the fresh residual sum, as timm / torchvision

    def _merge(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return self.act(self.post_norm(self.merge(self.shortcut(x), self.drop_path(self.attn(branch)))))

    def _branch(self, x: torch.Tensor) -> torch.Tensor:   # the residual branch up to its last norm
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.streams:
            return self._merge(x, self._branch(x))
        h = self.merge.expand(x) if self.expands else x
        inp, mixed, beta = self.merge.width(h)
        if self.stride > 1:
            beta = self.merge.subsample(beta, self.stride)   # dynamic depth weights at the output positions
        out = self.merge.depth(self.shortcut(mixed), self.drop_path(self.attn(self._branch(inp))), beta)
        out = self.act(self.post_norm(out))
        return self.merge.reduce(out) if self.reduces else out


class BasicBlock(_ResidualUnit):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, *, shortcut: str = "B", attn="none",
                 conv="conv3x3", norm="bn", act="relu", connection="residual", ctx=None, feat_size=None,
                 drop_path: float = 0.0, norm1=None, post_norm="none", streams: bool = False):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = build_slot("conv", conv, in_planes, ctx("conv", feat_size), out_channels=planes, stride=stride,
                                norm=norm if norm1 is None else norm1, act=act)
        feat_out = out_size(feat_size, stride)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = make_norm(norm, planes)
        self._init_merge(in_planes, out_planes, stride, feat_out, shortcut=shortcut, attn=attn, norm=norm, act=act,
                         connection=connection, ctx=ctx, drop_path=drop_path, post_norm=post_norm, streams=streams)

    def zero_init_last(self) -> None:
        if getattr(self.bn2, "weight", None) is not None:
            nn.init.zeros_(self.bn2.weight)

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.conv1(x)))


class Bottleneck(_ResidualUnit):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, *, shortcut: str = "B", attn="none",
                 conv="conv3x3", norm="bn", act="relu", connection="residual", ctx=None, feat_size=None,
                 groups: int = 1, base_width: int = 64, drop_path: float = 0.0, norm1=None, post_norm="none",
                 streams: bool = False):
        super().__init__()
        width = int(planes * base_width / 64) * groups
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, width, 1, bias=False)
        self.bn1 = make_norm(norm if norm1 is None else norm1, width)
        self.act1 = make_act(act, inplace=True)   # on the norm's output
        self.conv2 = build_slot("conv", conv, width, ctx("conv", feat_size), out_channels=width, stride=stride,
                                groups=groups, norm=norm, act=act)
        feat_out = out_size(feat_size, stride)
        self.conv3 = nn.Conv2d(width, out_planes, 1, bias=False)
        self.bn3 = make_norm(norm, out_planes)
        self._init_merge(in_planes, out_planes, stride, feat_out, shortcut=shortcut, attn=attn, norm=norm, act=act,
                         connection=connection, ctx=ctx, drop_path=drop_path, post_norm=post_norm, streams=streams)

    def zero_init_last(self) -> None:
        if getattr(self.bn3, "weight", None) is not None:
            nn.init.zeros_(self.bn3.weight)

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn3(self.conv3(self.conv2(self.act1(self.bn1(self.conv1(x))))))


class ParallelGroup(nn.Module):
    """``k`` residual units applied to the same input, their branches summed: ``act(x + sum_i F_i(x))`` (Bermeitinger,
    Hrycej & Handschuh, "Make Deep Networks Shallow Again", KDIR 2023, arXiv:2309.08414: the truncated expansion of
    a residual stack). Each unit's ``connection`` merges its branch into the running sum (``residual``: plain
    addition); the last unit's post-addition norm and activation follow. The units keep their parameters (under
    ``<group>.blocks.<i>``): the parallel model has exactly the sequential one's parameters."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for blk in self.blocks:
            out = blk.merge(out, blk.drop_path(blk.attn(blk._branch(x))))
        last = self.blocks[-1]
        return last.act(last.post_norm(out))


def _parallel_groups(blocks: list[nn.Module], k: int, owner: str) -> list[nn.Module]:
    """Group the consecutive identity-shortcut units of a stage ``k`` at a time (a unit with a stride or projection
    shortcut stays on its own, sequential; the last group may be smaller); a group of one is the unit itself."""
    units: list[nn.Module] = []
    run: list[nn.Module] = []

    def close_run() -> None:
        if any(not isinstance(b.post_norm, nn.Identity) for b in run[:-1]):
            raise ConfigError(f"{owner}: parallel={k} sums the branches before one post-addition norm; it cannot "
                              f"keep a post_norm in every block (use post_norm='none' or parallel=1)")
        if run:
            units.append(run[0] if len(run) == 1 else ParallelGroup(run))
        run.clear()

    for blk in blocks:
        if not isinstance(blk.shortcut, nn.Identity):   # a stride or projection: sequential
            close_run()
            units.append(blk)
            continue
        run.append(blk)
        if len(run) == k:
            close_run()
    close_run()
    return units


def _shortcut(in_planes: int, out_planes: int, stride: int, kind: str, norm) -> nn.Module:
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    if kind.upper() == "A":
        if out_planes < in_planes:
            raise ConfigError("option A shortcut cannot reduce channels; use shortcut='B'")
        return PadShortcut(in_planes, out_planes, stride)
    if kind.upper() == "B":
        return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), make_norm(norm, out_planes))
    raise ConfigError(f"shortcut must be 'A' (zero-padding) or 'B' (1x1 projection), got {kind!r}")


class ResNet(Backbone):
    """ResNet with slots. ``style='cifar'``: 3 stages from a 3x3 stem; ``style='imagenet'``: 4 stages, 7x7/2 stem.

    ``last_stride``: stride of the last stage (2; 1 keeps its input resolution, as the iSQRT-COV / GCP ResNet-50
    does so that the covariance is taken over 14x14 features at 224 px; the parameters are the same).
    ``drop_path_rate``: stochastic depth on each block's residual branch (before the merge), rising linearly from 0
    at the first block to the rate at the last (timm's ResNet schedule). Any in-stage
    slot (``attn``, ``conv``, ``connection``) takes one value per stage (``attn=["none", "none", "se", "se"]``) or a
    :class:`~blockzoo.models.base.PerBlock` function (see :mod:`blockzoo.models.base`).
    ``stem_norm``, ``norm1``, ``post_norm``: norm values for single positions (module docstring; ``None``: the
    placement of ``norm``); ``norm1`` and ``post_norm`` take per-stage and per-block values too.
    ``parallel``: apply each stage's identity-shortcut units ``parallel`` at a time to the same input (the shallow
    parallel stack of the module docstring; 1: the sequential ResNet).
    """

    _feature_path = ("stem.*", "layers.*")

    def __init__(self, block: type[nn.Module], layers: tuple[int, ...], widths: tuple[int, ...], *, num_classes: int,
                 in_chans: int = 3, stem: str = "imagenet", stem_width: int = 64, shortcut: str = "B",
                 img_size: int | tuple[int, int] | None = None, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 zero_init_last: bool = False, parallel: int = 1,
                 groups: int = 1, base_width: int = 64, last_stride: int = 2, model_name: str = "resnet",
                 attn=SLOTS["attn"], conv=SLOTS["conv"], norm=SLOTS["norm"], act=SLOTS["act"],
                 connection=SLOTS["connection"], head=SLOTS["head"], norm1=None, post_norm=None, stem_norm=None):
        super().__init__()
        norm, act = parse_once(norm), parse_once(act)
        place = resnet_placement(norm, layers)   # IBN-Net's positions for norm="ibn_a" / "ibn_b"; else norm everywhere
        norm, stem_norm = place.other, place.stem if stem_norm is None else parse_once(stem_norm)
        if last_stride not in (1, 2):
            raise ConfigError(f"{model_name}: last_stride must be 1 or 2, got {last_stride!r}")
        self.model_name, self.in_chans, self.num_stages = model_name, in_chans, len(layers)
        feat = to_size(img_size)
        if stem == "imagenet":
            self.stem: nn.Module = ImageNetStem(in_chans, stem_width, stem_norm, act)
            feat = self.track_module(self.stem, feat)
        elif stem in ("cifar", "small"):
            self.stem = nn.Sequential(nn.Conv2d(in_chans, stem_width, 3, 1, 1, bias=False),
                                      make_norm(stem_norm, stem_width),
                                      make_act(act, inplace=True))
        else:
            raise ConfigError(f"{model_name}: stem must be 'imagenet' or 'small'/'cifar', got {stem!r}")
        self.add_feature("stem.2", stem_width, reduction=2 if stem == "imagenet" else 1)  # the stem's act (timm)
        in_planes, stages = stem_width, []
        extra = dict(groups=groups, base_width=base_width) if block is Bottleneck else {}
        if block in (BasicBlock, Bottleneck):
            extra["streams"] = True   # their forward carries hyper-connection streams
        check_int(parallel, "parallel", min_value=1, owner=model_name)
        dpr = iter(drop_path_schedule(layers, drop_path_rate))  # stochastic depth, linear over the blocks
        for i, (n, w) in enumerate(zip(layers, widths)):
            stage_stride = 1 if i == 0 else (last_stride if i == len(layers) - 1 else 2)
            feat_out = self.track(feat, stage_stride)
            self.begin_stage(i, f"layer{i + 1}", feat_out)
            blocks = []
            for j in range(n):
                stride = stage_stride if j == 0 else 1
                pos = f"layer{i + 1}.{j}"
                blocks.append(block(
                    in_planes, w, stride, shortcut=shortcut, attn=self.slot_value("attn", attn, i, j),
                    conv=self.slot_value("conv", conv, i, j), norm=norm, act=act,
                    connection=self.slot_value("connection", connection, i, j), feat_size=feat,
                    ctx=self.block_ctx(pos, feat), drop_path=next(dpr),
                    norm1=place.first(i, j) if norm1 is None else self.slot_value("norm", norm1, i, j),
                    post_norm=place.post(i, j) if post_norm is None else self.slot_value("norm", post_norm, i, j),
                    **extra))
                feat = out_size(feat, stride)
                in_planes = w * block.expansion
            stages.append(blocks)
            self.add_feature(f"layers.{i}", in_planes)
        units = [b for blocks in stages for b in blocks]
        self.streams = stream_trunk(units, [b.merge for b in units], model_name)
        self.stream_reduce = units[-1].merge.reduce_mode if self.streams else None
        if parallel > 1:
            if self.streams:
                raise ConfigError(f"{model_name}: parallel={parallel} sums residual branches of one stream; it cannot "
                                  f"be combined with hyper-connections (use parallel=1 or another connection)")
            stages = [_parallel_groups(blocks, parallel, model_name) for blocks in stages]
        self.layers = nn.Sequential(*(nn.Sequential(*blocks) for blocks in stages))
        self.init_head(in_planes, num_classes, head, drop_rate, feat_size=feat)
        init_weights(self, zero_init_last=zero_init_last)

    def _feature_map(self, x: torch.Tensor, inp: torch.Tensor) -> torch.Tensor:
        """A stage's feature map combines its streams (sum or mean) in a hyper-connected trunk (the stem's and the
        last stage's maps hold one stream already)."""
        return combine_streams(x.unflatten(0, (-1, inp.shape[0])), self.stream_reduce) if self.streams else x
