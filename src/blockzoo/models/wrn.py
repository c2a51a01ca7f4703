"""Wide Residual Networks (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016, arXiv:1605.07146;
inventory S091), with the semantics of the official PyTorch code (szagoruyko/wide-residual-networks,
``pytorch/resnet.py``).

WRN-d-k: depth d = 6n + 4, three groups of n pre-activation basic blocks with widths 16k, 32k, 64k after a 3x3 stem
with 16 channels. Block: ``o1 = act(bn0(x))``; ``y = conv3x3(o1, stride)``; ``o2 = act(bn1(y))``; optional dropout;
``z = conv3x3(o2)``; the shortcut is ``conv1x1(o1, stride)`` -- applied to the *pre-activated* input -- when the width
or stride changes, else ``x``. No conv biases; a final BN-ReLU, global average pooling and FC.
The ``attn`` slot sits after the second conv, before the addition.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.common.drop import drop_path_schedule, make_drop_path
from blockzoo.blocks.common.layers import make_act, make_norm
from blockzoo.errors import ConfigError
from blockzoo.models.base import Backbone, init_weights, out_size, parse_once, to_size
from blockzoo.registry import Claim, build_slot, register_model

SLOTS = {"attn": "none", "norm": "bn", "act": "relu", "connection": "residual", "head": "avg"}


class WideBasic(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, *, dropout: float = 0.0, attn="none", norm="bn",
                 act="relu", connection="residual", ctx=None, feat_size=None, drop_path: float = 0.0):
        super().__init__()
        self.bn0 = make_norm(norm, in_planes)
        self.act0 = make_act(act)
        self.conv0 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = make_norm(norm, planes)
        self.act1 = make_act(act)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv1 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        feat_out = out_size(feat_size, stride)
        self.attn = build_slot("attn", attn, planes, ctx("attn", feat_out))
        self.proj = (nn.Conv2d(in_planes, planes, 1, stride, bias=False)
                     if stride != 1 or in_planes != planes else None)
        self.merge = build_slot("connection", connection, planes, ctx("connection", feat_out))
        self.drop_path = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o1 = self.act0(self.bn0(x))
        z = self.conv1(self.drop(self.act1(self.bn1(self.conv0(o1)))))
        return self.merge(self.proj(o1) if self.proj is not None else x, self.drop_path(self.attn(z)))


class WideResNet(Backbone):
    """Zagoruyko & Komodakis's WRN-d-k: pre-activation basic blocks in three groups. ``dropout``: the paper's dropout
    between the two convs of a block; ``drop_path_rate``: stochastic depth on each block's residual branch, linear
    over the blocks (timm's schedule; not in the paper)."""

    _feature_path, _final_path, _final_is_norm = ("stem", "groups.*"), ("final_norm", "final_act"), True

    def __init__(self, depth: int, widen: int, *, num_classes: int = 10, in_chans: int = 3, dropout: float = 0.0,
                 img_size: int | tuple[int, int] | None = 32, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 model_name: str = "wrn",
                 attn=SLOTS["attn"], norm=SLOTS["norm"], act=SLOTS["act"], connection=SLOTS["connection"],
                 head=SLOTS["head"]):
        super().__init__()
        norm, act = parse_once(norm), parse_once(act)
        if (depth - 4) % 6:
            raise ConfigError(f"WRN depth must be 6n + 4 (10, 16, 22, 28, 40, ...), got {depth}")
        n = (depth - 4) // 6
        self.model_name, self.in_chans, self.depth, self.widen = model_name, in_chans, depth, widen
        widths = (16 * widen, 32 * widen, 64 * widen)
        self.num_stages = len(widths)
        self.stem = nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)
        feat, in_planes, groups = to_size(img_size), 16, []
        dpr = iter(drop_path_schedule([n] * len(widths), drop_path_rate))
        for i, w in enumerate(widths):
            blocks = []
            self.begin_stage(i, f"group{i}", self.track(feat, 2 if i > 0 else 1))
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                pos = f"group{i}.{j}"
                blocks.append(WideBasic(in_planes, w, stride, dropout=dropout, attn=self.slot_value("attn", attn, i, j),
                                        norm=norm, act=act, connection=self.slot_value("connection", connection, i, j),
                                        feat_size=feat, ctx=self.block_ctx(pos, feat), drop_path=next(dpr)))
                feat, in_planes = out_size(feat, stride), w
            groups.append(nn.Sequential(*blocks))
            self.add_feature(f"groups.{i}", w)
        self.groups = nn.Sequential(*groups)
        self.final_norm = make_norm(norm, in_planes)
        self.final_act = make_act(act)
        self.init_head(in_planes, num_classes, head, drop_rate, feat_size=feat)
        init_weights(self)


_WRN = {  # name: (depth, widen, params at 3 ch / 10 classes as counted from the official code, paper C10 error %)
    "wrn_16_4": (16, 4, None, None),
    "wrn_16_8": (16, 8, 10_961_370, None),
    "wrn_22_8": (22, 8, None, None),
    "wrn_28_10": (28, 10, 36_479_194, 4.00),
    "wrn_40_4": (40, 4, 8_949_210, None),
    "wrn_16_1": (16, 1, None, None),
    "wrn_28_2": (28, 2, None, None),
}


def _make(name: str, depth: int, widen: int):
    def fn(*, num_classes: int = 10, in_chans: int = 3, **kw) -> WideResNet:
        return WideResNet(depth, widen, num_classes=num_classes, in_chans=in_chans, model_name=name, **kw)
    fn.__doc__ = f"WRN-{depth}-{widen}"
    return fn


def _spec(name: str) -> dict[str, Any]:
    """register_model arguments of a WRN (numbers from the table above)."""
    d, k, p, _ = _WRN[name]
    return dict(
        family="wrn", slots=SLOTS, paper=papers.WRN, input_size=(3, 32, 32), num_classes=10, paper_params=p,
        reference={"params_3ch_10cls": p} if p else {},
        summary=f"WRN-{d}-{k}: pre-activation wide basic blocks, widths {16 * k}/{32 * k}/{64 * k}, "
                f"{(d - 4) // 6} blocks per group",
        claims=((Claim(f"{p:,} parameters", "tests/models/test_wrn.py::test_param_counts"),) if p else ()))


register_model("wrn_16_4", **_spec("wrn_16_4"))(_make("wrn_16_4", 16, 4))
register_model("wrn_16_8", **_spec("wrn_16_8"))(_make("wrn_16_8", 16, 8))
register_model("wrn_22_8", **_spec("wrn_22_8"))(_make("wrn_22_8", 22, 8))
register_model("wrn_28_10", **_spec("wrn_28_10"))(_make("wrn_28_10", 28, 10))
register_model("wrn_40_4", **_spec("wrn_40_4"))(_make("wrn_40_4", 40, 4))
register_model("wrn_16_1", **_spec("wrn_16_1"))(_make("wrn_16_1", 16, 1))
register_model("wrn_28_2", **_spec("wrn_28_2"))(_make("wrn_28_2", 28, 2))
