"""The common model contract (timm-like) shared by every blockzoo backbone.

``forward_features(x)`` -> unpooled NCHW features with ``num_features`` channels;
``forward_head(x, pre_logits=False)`` -> head slot (pooling) -> dropout -> classifier;
``reset_classifier(num_classes, head=None)``; ``get_classifier()``; ``in_chans``, ``num_classes``.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from blockzoo.registry import SlotContext, build_slot


def out_size(size: tuple[int, int] | None, stride: int, kernel: int = 3, padding: int | None = None,
             dilation: int = 1) -> tuple[int, int] | None:
    """Spatial size after a conv/pool with the given geometry (None stays None)."""
    if size is None:
        return None
    padding = (dilation * (kernel - 1)) // 2 if padding is None else padding
    return tuple((s + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1 for s in size)  # type: ignore


def to_size(img_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if img_size is None:
        return None
    return (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)  # type: ignore


def check_stage_size(model_name: str, stage: int, feat: tuple[int, int] | None) -> None:
    """Refuse at build time an input so small that ``stage`` would get an empty feature map."""
    if feat is not None and min(feat) < 1:
        raise ValueError(f"{model_name}: the input is too small, stage {stage} would have {feat[0]}x{feat[1]} "
                         f"features; use a larger img_size or stem='small'")


def imagenet_stem(in_chans: int, width: int, norm="bn", act="relu",
                  feat_size: tuple[int, int] | None = None) -> tuple[nn.Module, tuple[int, int] | None]:
    """He et al.'s ImageNet stem: 7x7/2 conv (no bias) -> norm -> act -> 3x3/2 max-pool; returns (stem, output size)."""
    from blockzoo.blocks.common.layers import make_act, make_norm

    stem = nn.Sequential(nn.Conv2d(in_chans, width, 7, 2, 3, bias=False), make_norm(norm, width), make_act(act),
                         nn.MaxPool2d(3, 2, 1))
    return stem, out_size(out_size(feat_size, 2, 7), 2, 3)


class Backbone(nn.Module):
    """Base class: subclasses build ``self.features`` (or override ``forward_features``) and call ``init_head``."""

    num_classes: int
    num_features: int
    in_chans: int
    model_name: str = "<model>"

    def init_head(self, num_features: int, num_classes: int, head="avg", drop_rate: float = 0.0,
                  feat_size: tuple[int, int] | None = None) -> None:
        """Build the head slot (checked against the final feature size when known), dropout and classifier."""
        self.num_features, self.num_classes, self.drop_rate = num_features, num_classes, drop_rate
        self.head_spec, self.head_feat_size = head, feat_size
        self.head = build_slot("head", head, num_features, SlotContext(self.model_name, "head", feat_size))
        self.head_hidden_size = getattr(self.head, "out_features", num_features)
        self.head_drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    def ctx(self, position: str, feat_size: tuple[int, int] | None) -> SlotContext:
        return SlotContext(model=self.model_name, position=position, feat_size=feat_size)

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4:
            raise ValueError(f"{self.model_name} expects an NCHW batch (4-D tensor), got shape {tuple(x.shape)}; "
                             f"add a batch dimension with x.unsqueeze(0)" if x.ndim == 3 else
                             f"{self.model_name} expects an NCHW batch (4-D tensor), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise ValueError(f"{self.model_name} was built for in_chans={self.in_chans} but got {x.shape[1]} channels; "
                             f"create it with create_model(..., in_chans={x.shape[1]})")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.head(x))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, head=None) -> None:
        if head is not None:
            self.head = build_slot("head", head, self.num_features,
                                   SlotContext(self.model_name, "head", getattr(self, "head_feat_size", None)))
            self.head_hidden_size = getattr(self.head, "out_features", self.num_features)
        self.num_classes = num_classes
        self.fc = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()


def init_weights(model: nn.Module, zero_init_last: bool = False) -> None:
    """Kaiming-normal (fan_out, ReLU) convs, unit/zero norms, PyTorch-default linears; then every submodule that defines
    ``init_weights()`` (blocks with a paper-specific init) re-applies its own; optionally zero the last norm of each
    residual branch (modules that define ``zero_init_last()``)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1 / math.sqrt(m.in_features)
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.uniform_(m.bias, -bound, bound)
    for m in model.modules():  # blocks with a paper-specific init (e.g. zero-initialised output BN) re-apply it
        if m is not model and callable(getattr(m, "init_weights", None)):
            m.init_weights()
    if zero_init_last:
        for m in model.modules():
            if hasattr(m, "zero_init_last") and m is not model:
                m.zero_init_last()
