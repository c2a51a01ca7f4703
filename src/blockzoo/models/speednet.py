"""SpeedNet: a small, wide, shallow convnet for fast training on 28-32 px images, after airbench (Jordan, "94% on
CIFAR-10 in 3.29 Seconds on a Single GPU", arXiv:2404.00498; official code KellerJordan/cifar10-airbench,
``airbench94.py``), resized for a 2-core CPU with bf16 (AMX) matmuls.

Layout (airbench94's, with the widths as a parameter)::

    whiten   : k x k conv (k=2), in_chans -> 2 * in_chans * k * k channels, no padding, with bias; its weight is
               frozen and set from the data by :func:`init_whitening` (eigenvectors of the patch second-moment matrix
               scaled by 1/sqrt(eigenvalue + eps), concatenated with their negatives); then ``act``
    group i  : conv3x3 (no bias) -> 2x2 max-pool -> norm -> act -> conv3x3 -> norm -> act -> ``attn`` slot
               (three groups, widths ``widths``; the pool halves the resolution: 28 -> 27 -> 13 -> 6 -> 3)
    head     : ``head`` slot (global max pool by default, as airbench's MaxPool2d(3) over the final 3x3 map)
               -> linear (no bias) -> multiplied by ``logit_scale`` (1/9 in airbench)

Norm: the ``bn`` default is airbench's BatchNorm: PyTorch momentum ``1 - 0.6 = 0.4`` (fast running statistics for
short runs), eps 1e-12, scale frozen at 1 (only the shift is trained). Convs use PyTorch's default (Kaiming-uniform)
init with airbench's partial identity init: ``dirac_`` on the first ``in_channels`` filters of every 3x3 conv.

Differences from the official airbench94: (1) widths default to (64, 128, 256) instead of (64, 256, 256) -- on a
2-core CPU the per-image cost dominates and 28 px Fashion-MNIST needs less capacity than CIFAR-10; (2) the
classifier is a ``Backbone`` ``fc`` without bias (airbench: ``Linear(bias=False)`` + ``Mul(1/9)``); (3) ``attn``,
``norm``, ``act`` and ``head`` are swappable slots. ``widths=(64, 256, 256)``, ``in_chans=3`` reproduces airbench94's
layer shapes (its parameter count is asserted in the tests).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.blocks.common.layers import make_act
from blockzoo.errors import ConfigError
from blockzoo.models.base import Backbone, out_size, parse_once, to_size
from blockzoo.papers import AIRBENCH
from blockzoo.registry import Claim, build_slot, parse_slot_value, register_model

__all__ = ["AIRBENCH", "SpeedNet", "ConvGroup", "init_whitening", "patch_second_moment", "SLOTS", "AIRBENCH_BN"]


SLOTS = {"attn": "none", "norm": "bn", "act": "gelu", "head": "max"}
#: airbench94's BatchNorm: ``momentum=0.6`` in its (EMA-decay) convention = PyTorch momentum 0.4; eps 1e-12.
AIRBENCH_BN = {"momentum": 0.4, "eps": 1e-12}


def _make_norm(norm, channels: int, ctx) -> nn.Module:
    """Norm slot; the default ``bn`` gets airbench's momentum/eps (overridable: ``"bn(momentum=0.1)"``) and a
    frozen unit scale (airbench's ``BatchNorm(weight=False)``; ``"bn(train_scale=True)"`` trains it)."""
    name, kw = parse_slot_value(norm)
    if name == "bn":
        train_scale = bool(kw.pop("train_scale", False))
        m = build_slot("norm", ("bn", {**AIRBENCH_BN, **kw}), channels, ctx)
        if not train_scale and m.weight is not None:
            m.weight.requires_grad_(False)
        return m
    return build_slot("norm", norm, channels, ctx)


class ConvGroup(nn.Module):
    """conv3x3 -> maxpool 2 -> norm -> act -> conv3x3 -> norm -> act -> attn (airbench94's ``ConvGroup``)."""

    def __init__(self, in_channels: int, out_channels: int, *, norm="bn", act="gelu", attn="none", ctx=None,
                 feat_size: tuple[int, int] | None = None, dirac: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)
        self.pool = nn.MaxPool2d(2)
        feat = out_size(feat_size, 2, 2, 0)
        self.norm1 = _make_norm(norm, out_channels, ctx("norm1", feat))
        self.act1 = make_act(act)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.norm2 = _make_norm(norm, out_channels, ctx("norm2", feat))
        self.act2 = make_act(act)
        self.attn = build_slot("attn", attn, out_channels, ctx("attn", feat))
        self.dirac = dirac
        self.feat_out = feat

    def init_weights(self) -> None:
        """PyTorch default conv init, then identity (dirac) init of the first ``in_channels`` filters (airbench)."""
        for conv in (self.conv1, self.conv2):
            conv.reset_parameters()
            if self.dirac:
                w = conv.weight.data
                nn.init.dirac_(w[: w.size(1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.norm1(self.pool(self.conv1(x))))
        x = self.act2(self.norm2(self.conv2(x)))
        return self.attn(x)


class SpeedNet(Backbone):
    """airbench94-style network (see module docstring). ``widths``: the three group widths; ``whiten_kernel``: patch
    size of the frozen whitening conv (its width is ``2 * in_chans * k * k``); ``logit_scale``: output multiplier."""

    _feature_path = ("whiten", "whiten_act", "groups.*")

    def __init__(self, *, num_classes: int = 10, in_chans: int = 3, widths: tuple[int, int, int] = (64, 128, 256),
                 whiten_kernel: int = 2, img_size: int | tuple[int, int] | None = 32, logit_scale: float = 1 / 9,
                 dirac: bool = True, drop_rate: float = 0.0, model_name: str = "speednet",
                 attn=SLOTS["attn"], norm=SLOTS["norm"], act=SLOTS["act"], head=SLOTS["head"]):
        super().__init__()
        norm, act = parse_once(norm), parse_once(act)
        if len(widths) != 3 or any(int(w) < 1 for w in widths):
            raise ConfigError(f"widths must be three positive channel counts, got {widths!r}")
        self.model_name, self.in_chans, self.widths = model_name, in_chans, tuple(int(w) for w in widths)
        self.logit_scale = float(logit_scale)
        self.whiten_bias_epochs = 3   # airbench94's whiten_bias_train_steps, in epochs (see on_train_epoch)
        k = int(whiten_kernel)
        self.whiten = nn.Conv2d(in_chans, 2 * in_chans * k * k, k, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.whiten_act = make_act(act)
        self.num_stages = len(self.widths)
        feat = self.track(to_size(img_size), 1, k, 0)
        groups, c = [], self.whiten.out_channels
        for i, w in enumerate(self.widths):
            pos = f"group{i + 1}"
            self.begin_stage(i, pos, self.track(feat, 2, 2, 0))     # the group's 2x2 max-pool
            g = ConvGroup(c, w, norm=norm, act=act, attn=self.slot_value("attn", attn, i), feat_size=feat,
                          dirac=dirac, ctx=self.block_ctx(pos, feat))
            groups.append(g)
            feat, c = g.feat_out, w
            self.add_feature(f"groups.{i}", w)
        self.groups = nn.Sequential(*groups)
        self.init_head(c, num_classes, head, drop_rate)
        if isinstance(self.fc, nn.Linear):
            self.fc = nn.Linear(self.fc.in_features, num_classes, bias=False)
        self.init_weights()

    def init_weights(self) -> None:
        """PyTorch default init everywhere (as airbench), norms to (1, 0), dirac init in the conv groups; the
        whitening conv gets a placeholder init until :func:`init_whitening` is called with training data."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.reset_parameters()
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for g in self.groups:
            g.init_weights()
        if self.whiten.bias is not None:
            nn.init.zeros_(self.whiten.bias)

    # the trainer's --data-init hooks (blockzoo.train: the fast recipe)
    def init_from_data(self, images: torch.Tensor) -> None:
        """airbench's data-dependent init: the whitening conv from normalised training ``images``
        (:func:`init_whitening`)."""
        init_whitening(self, images)

    def on_train_epoch(self, epoch: int) -> None:
        """airbench trains the whitening bias for the first :attr:`whiten_bias_epochs` epochs only."""
        if self.whiten.bias is not None:
            self.whiten.bias.requires_grad_(epoch <= self.whiten_bias_epochs)

    def _reset_classifier(self, num_classes: int, head: Any) -> None:
        super()._reset_classifier(num_classes, head)
        if isinstance(self.fc, nn.Linear):
            self.fc = nn.Linear(self.fc.in_features, num_classes, bias=False)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.head(x))
        return x if pre_logits else self.fc(x) * self.logit_scale


# ------------------------------------------------------------------------------------------- whitening init
def patch_second_moment(images: torch.Tensor, kernel: int) -> torch.Tensor:
    """Second-moment matrix ``E[p p^T]`` (not mean-centred, as airbench) of all ``kernel x kernel`` patches
    (stride 1, no padding) of a float N x C x H x W batch; patches are flattened in (c, i, j) order, i.e. the order
    of a conv weight ``(C, k, k)``. Returns a float64 (C*k*k) x (C*k*k) matrix."""
    if images.ndim != 4:
        raise ConfigError(f"images must be N x C x H x W, got shape {tuple(images.shape)}")
    x = images.detach().to(torch.float64)
    p = F.unfold(x, kernel)                              # N x (C*k*k) x L, rows in (c, i, j) order
    p = p.transpose(1, 2).reshape(-1, p.shape[1])         # (N*L) x D
    return p.T @ p / p.shape[0]


@torch.no_grad()
def init_whitening(model_or_conv: nn.Module, images: torch.Tensor, eps: float = 5e-4) -> torch.Tensor:
    """Set a whitening conv from data (airbench's ``init_whitening_conv``): with ``C = E[p p^T]`` over the patches
    of ``images`` (normalised float N x C x H x W) and ``C = V diag(l) V^T``, the first half of the filters is
    ``V^T / sqrt(l + eps)`` (largest eigenvalue first) and the second half its negative, so the conv output (before
    the bias) has second moment ``diag(l / (l + eps))`` ~ identity on the first half. Accepts a :class:`SpeedNet`
    (uses ``.whiten``) or a conv with ``out_channels == 2 * in_channels * k * k``. Returns the eigenvalues."""
    conv = model_or_conv.whiten if isinstance(model_or_conv, SpeedNet) else model_or_conv
    if not isinstance(conv, nn.Conv2d) or conv.kernel_size[0] != conv.kernel_size[1]:
        raise TypeError("init_whitening needs a SpeedNet or a square-kernel nn.Conv2d")
    c, k = conv.in_channels, conv.kernel_size[0]
    d = c * k * k
    if conv.out_channels != 2 * d or conv.groups != 1:
        raise ConfigError(f"a whitening conv over {c}x{k}x{k} patches needs {2 * d} output channels, "
                          f"got {conv.out_channels}")
    if images.ndim != 4 or images.shape[1] != c:
        raise ConfigError(f"images must be N x {c} x H x W (normalised floats), got shape {tuple(images.shape)}")
    evals, evecs = torch.linalg.eigh(patch_second_moment(images, k))     # ascending
    evals, evecs = evals.flip(0), evecs.flip(1)
    w = (evecs.T / torch.sqrt(evals.clamp_min(0) + eps)[:, None]).reshape(d, c, k, k)
    conv.weight.copy_(torch.cat([w, -w]).to(conv.weight.dtype))
    return evals.to(torch.float32)


# ------------------------------------------------------------------------------------------------- registration
def _speednet(*, num_classes: int = 10, in_chans: int = 1, **kw) -> SpeedNet:
    """SpeedNet for 28 px Fashion-MNIST (widths 64/128/256, 2x2 whitening, GELU, max-pool head)."""
    kw.setdefault("img_size", 28)
    return SpeedNet(num_classes=num_classes, in_chans=in_chans, model_name="speednet", **kw)


def _airbench94(*, num_classes: int = 10, in_chans: int = 3, **kw) -> SpeedNet:
    """airbench94's network shapes (widths 64/256/256) for 32 px CIFAR-10."""
    kw.setdefault("img_size", 32)
    kw.setdefault("widths", (64, 256, 256))
    return SpeedNet(num_classes=num_classes, in_chans=in_chans, model_name="speednet_airbench94", **kw)


# Parameter counts (trainable + frozen). speednet, 1 ch / 10 cls: whiten 8*4+8, convs 8*64*9 + 64*64*9 + 64*128*9
# + 128*128*9 + 128*256*9 + 256*256*9, BN 2*(2*64 + 2*128 + 2*256), fc 256*10.
SPEEDNET_PARAMS = 40 + 9 * (8 * 64 + 64 * 64 + 64 * 128 + 128 * 128 + 128 * 256 + 256 * 256) + 4 * (64 + 128 + 256) \
    + 2560
# airbench94 at 3 ch / 10 cls: whiten 24*12+24, convs 9*(24*64 + 64*64 + 64*256 + 256*256*3), BN 4*(64+256+256),
# fc 256*10 (no bias).
AIRBENCH94_PARAMS = 312 + 9 * (24 * 64 + 64 * 64 + 64 * 256 + 3 * 256 * 256) + 4 * (64 + 256 + 256) + 2560

register_model(
    "speednet", family="speednet", slots=SLOTS, paper=AIRBENCH, input_size=(1, 28, 28), num_classes=10,
    reference={"params_1ch_10cls": SPEEDNET_PARAMS}, test_size=28,
    summary="airbench-style wide shallow convnet for 28 px: frozen 2x2 whitening conv, 3 conv groups 64/128/256",
    notes="Train with blockzoo.train.speedrun (whitening init from data, lookahead, TTA).",
    claims=(Claim(f"{SPEEDNET_PARAMS:,} parameters at 1 input channel / 10 classes",
                  "tests/models/test_speednet.py::test_speednet_registered_param_count"),
            Claim("the whitening init gives patch features with identity second moment",
                  "tests/models/test_speednet.py::test_whitening_init_whitens"),
            Claim("airbench94 (the paper's network and recipe): 94.01% mean CIFAR-10 accuracy in 3.83 s on an A100",
                  None, status="not checked"),
            Claim("Fashion-MNIST time to 90/92/93/94% with blockzoo.train.speedrun on a 2-core CPU, vs ResNet-20",
                  "benchmarks/results/speedrun_fmnist.md", status="measured")),
)(_speednet)

register_model(
    "speednet_airbench94", family="speednet", slots=SLOTS, paper=AIRBENCH, input_size=(3, 32, 32), num_classes=10,
    reference={"params_3ch_10cls": AIRBENCH94_PARAMS}, test_size=32,
    summary="airbench94's network (widths 64/256/256, 2x2 whitening) for 32 px CIFAR-10",
    claims=(Claim(f"{AIRBENCH94_PARAMS:,} parameters, the layer shapes of airbench94.py",
                  "tests/models/test_speednet.py::test_airbench94_param_count"),),
)(_airbench94)
