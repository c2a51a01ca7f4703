"""NASNet-A (Zoph, Vasudevan, Shlens and Le, "Learning Transferable Architectures for Scalable Image Recognition",
CVPR 2018, arXiv:1707.07012; inventory S004): the searched Normal and Reduction cells, fixed, stacked for ImageNet
(NASNet-A Mobile 4 @ 1056, Large 6 @ 4032) and CIFAR-10 (6 @ 768), with ScheduledDropPath.

The cells (paper Fig. 4; TF-slim ``nets/nasnet/nasnet_utils.py``; timm's ``nasnet.py``, Cadene's port)
---------------------------------------------------------------------------------------------------------
Each cell takes the outputs of the two cells before it, ``h_i`` (``x``) and ``h_{i-1}`` (``prev``). ``x`` becomes
``cur = ReLU -> 1x1 conv -> BN`` (``conv_1x1``) with F filters; ``prev`` becomes F filters too: by a *factorized
reduction* when it has twice the resolution (ReLU, then two 1x1 convs of F/2 on the even and on the one-pixel-shifted
odd pixels, concatenated, BN: ``reduce_prev``), else by ``ReLU -> 1x1 -> BN`` (``conv_prev_1x1``). Every separable
op is ``(ReLU -> depthwise kxk -> pointwise 1x1 -> BN)`` twice (stride on the first depthwise conv only); all BNs
have eps = 1e-3 (TF's). With ``sep_k`` a separable kxk op, ``avg`` / ``max`` 3x3 pooling:

* Normal cell (stride 1): five combinations, concatenated with ``prev`` (6F channels):
  ``c0 = sep5(cur) + sep3(prev)``, ``c1 = sep5(prev) + sep3(prev)``, ``c2 = avg(cur) + prev``,
  ``c3 = avg(prev) + avg(prev)``, ``c4 = sep3(cur) + cur``; output ``[prev, c0, c1, c2, c3, c4]``.
* Reduction cell (stride 2 on the cell inputs), output ``[c1, c2, c3, c4]`` (4F channels):
  ``c0 = sep5(cur) + sep7(prev)``, ``c1 = max(cur) + sep7(prev)``, ``c2 = avg(cur) + sep5(prev)``,
  ``c3 = avg_s1(c0) + c1``, ``c4 = sep3(c0) + max(cur)``.

Networks ("N @ P": N normal cells per stack, P = 24 F filters in the last cells)
---------------------------------------------------------------------------------
* ImageNet (``stem="imagenet"``): 3x3/2 conv (no padding, no activation) -> BN; two reduction cells as the stem
  (``cells.0``: F/4 filters, its ``prev`` is the raw stem conv; ``cells.1``: F/2); then N normal cells (F), a
  reduction cell (2F), N normal (2F), a reduction cell (4F), N normal (4F); ReLU, global average pooling, dropout
  (0.5, TF-slim's ``dense_dropout_keep_prob``), FC. Large: 96 stem filters, F = 168; Mobile: 32, F = 44.
* CIFAR (``stem="cifar"``): 3x3/1 conv -> BN with 3F filters, then the three stacks as above (no stem cells; the
  first cell's ``prev`` is the stem too); no dropout. The paper's CIFAR-10 net: N = 6, F = 32.
* After a reduction cell, the next normal cell's ``prev`` is the reduction cell's ``x`` (TF-slim
  ``skip_reduction_layer_input=0``: Mobile, CIFAR) or its ``prev`` (``=1``, Large): ``skip_reduction_input``.

Padding: TF's ``SAME`` -- at stride 2, ``k - 2 + (n mod 2)`` pixels in all, the extra one at the bottom/right -- as
the released TF model and timm, so ``nasnetalarge`` computes timm's ``nasnetalarge`` function (its weights came from
TF). Stride-2 3x3 average pools: TF averages the valid pixels only (``avg_pool_pad="exclude"``, the default);
timm's port pads zeros first and averages over them at the border (``avg_pool_pad="include"``), which
``nasnetalarge`` uses so that timm's weights give timm's outputs (``tests/weights/``).

Parameter counts (1000 classes; PyTorch counts, BN running statistics excluded): ``nasnetalarge`` 88,753,150 =
timm's; ``nasnetamobile`` 5,289,978 = Cadene's ``nasnetamobile`` (Keras' ``NASNetMobile`` reports 5,326,716 because it
also counts the 36,738 BN moving means/variances as non-trainable weights); both paper rows say 88.9M / 5.3M.
``nasnetacifar`` (6 @ 768) has 3,328,234 (10 classes; paper Table 1: 3.3M). With ``avg_pool_pad="exclude"``,
``nasnetamobile`` computes Cadene's ``NASNetAMobile`` (its TF-weight port) to float precision for the same weights
(checked with that code, which is not a dependency).

MACs (``blockzoo.profile.count_macs``: conv + linear multiply-adds): ``nasnetamobile`` 563.6M at 224 px (paper
564M), ``nasnetalarge`` 23.78G at 331 px (paper 23.8B; timm's table 23.89G counts more op kinds).

ScheduledDropPath (``drop_path_rate``; paper Sec. 4.1, TF-slim ``drop_connect_version="v3"``)
--------------------------------------------------------------------------------------------
Each op output of a cell (not the identities) is dropped per sample with probability
``drop_path_rate * (cell index + 1) / number of cells`` (stem and reduction cells count; TF-slim's layer ratio)
times the training progress (:class:`blockzoo.blocks.common.drop.ScheduledDropPath`, driven by the trainer through
``set_drop_progress``). TF-slim trains Large with keep probability 0.7 (``drop_path_rate=0.3``), CIFAR with 0.6
(0.4), Mobile without; the registered models default to 0 (no drop-path modules, the same state dict).

Not implemented (documented departures)
---------------------------------------
* The auxiliary classifier of the paper's training recipe (TF-slim ``use_aux_head=1``) is not built: the models are
  the inference networks (as timm's and Cadene's), and the trainer takes one output.
* TF-slim's first CIFAR cell uses the raw stem output (3F channels) as its ``prev`` (``_reduce_prev_layer`` returns
  the cell input when there is no previous layer), so the ops reading it get extra 1x1 convs or wider first
  separable convs; here that ``prev`` is ``ReLU -> 1x1 -> BN`` to F, like every other ``prev`` of another width.
  Only that cell's parameters differ; the ImageNet stem's first cell keeps the raw input as TF-slim and timm do.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import papers
from blockzoo.blocks.common.drop import ScheduledDropPath
from blockzoo.checks import check_choice
from blockzoo.errors import ConfigError
from blockzoo.models.base import Backbone, init_weights, to_size
from blockzoo.registry import Claim, register_model

__all__ = ["NASNetA", "NormalCell", "ReductionCell", "BranchSeparables", "FactorizedReduction", "Pool3x3", "BN_EPS",
           "SLOTS"]

SLOTS = {"head": "avg"}
BN_EPS = 1e-3  # TF-slim's batch_norm_epsilon


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


def _same_pad(x: torch.Tensor, kernel: int, value: float = 0.0) -> torch.Tensor:
    """TF ``SAME`` padding of a stride-2 ``kernel`` x ``kernel`` op: ``kernel - 2 + (n mod 2)`` pixels along each
    side of length n, the odd one at the end (arithmetic on the size, no branch: traceable)."""
    ph, pw = kernel - 2 + x.shape[-2] % 2, kernel - 2 + x.shape[-1] % 2
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=value)


class Conv2dSame(nn.Conv2d):
    """A bias-free conv with TF ``SAME`` padding (static ``k // 2`` at stride 1, :func:`_same_pad` at stride 2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride, kernel_size // 2 if stride == 1 else 0,
                         groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        return self._conv_forward(_same_pad(x, self.kernel_size[0]), self.weight, None)


class Pool3x3(nn.Module):
    """3x3 pooling with TF ``SAME`` padding: max (stride 2: NASNet-A has no stride-1 max pool) or average (stride 1
    or 2); the average excludes the padding (TF) unless ``include_pad`` (timm's port, stride 2: zeros padded, then
    averaged over)."""

    def __init__(self, kind: str, stride: int = 1, include_pad: bool = False):
        super().__init__()
        self.kind, self.stride, self.include_pad = kind, stride, include_pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max":
            return F.max_pool2d(_same_pad(x, 3, float("-inf")), 3, 2)
        if self.stride == 1:
            return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        out = F.avg_pool2d(_same_pad(x, 3), 3, 2)
        if self.include_pad:
            return out
        return out / F.avg_pool2d(_same_pad(torch.ones_like(x[:1, :1]), 3), 3, 2)   # the valid pixels per window

    def extra_repr(self) -> str:
        return f"{self.kind}, stride={self.stride}" + (", include_pad=True" if self.include_pad else "")


class ActConvBn(nn.Module):
    """ReLU -> 1x1 conv -> BN (TF-slim's ``_cell_base`` / ``_reduce_prev_layer``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.act = nn.ReLU()   # not in place: the cell input is read again by the next cell
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = _bn(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.act(x)))


class SeparableConv2d(nn.Sequential):
    """Depthwise kxk (TF ``SAME``) -> pointwise 1x1, no bias (``slim.separable_conv2d``, depth multiplier 1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__(OrderedDict(
            depthwise_conv2d=Conv2dSame(in_channels, in_channels, kernel_size, stride, groups=in_channels),
            pointwise_conv2d=nn.Conv2d(in_channels, out_channels, 1, bias=False)))


class BranchSeparables(nn.Module):
    """NASNet's separable op: (ReLU -> separable kxk -> BN) twice, the stride on the first (TF-slim
    ``_stacked_separable_conv``: both separable convs output ``out_channels``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.act_1 = nn.ReLU()
        self.separable_1 = SeparableConv2d(in_channels, out_channels, kernel_size, stride)
        self.bn_sep_1 = _bn(out_channels)
        self.act_2 = nn.ReLU(inplace=True)
        self.separable_2 = SeparableConv2d(out_channels, out_channels, kernel_size)
        self.bn_sep_2 = _bn(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn_sep_1(self.separable_1(self.act_1(x)))
        return self.bn_sep_2(self.separable_2(self.act_2(x)))


class FactorizedReduction(nn.Module):
    """ReLU, then two 1x1 convs of ``out_channels / 2`` on the even pixels and on the pixels shifted by one (the last
    row/column zero), concatenated, BN: halves the resolution of a cell's ``prev`` (TF-slim
    ``factorized_reduction``; the 1x1/2 average pools there are the strided slices here)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.act = nn.ReLU()
        self.path_1 = nn.Sequential(OrderedDict(conv=nn.Conv2d(in_channels, out_channels // 2, 1, bias=False)))
        self.path_2 = nn.Sequential(OrderedDict(conv=nn.Conv2d(in_channels, out_channels // 2, 1, bias=False)))
        self.final_path_bn = _bn(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.final_path_bn(torch.cat([self.path_1(x[:, :, ::2, ::2]), self.path_2(shifted[:, :, ::2, ::2])],
                                            1))


class _Cell(nn.Module):
    """What both cells share: ``cur`` from ``x`` (``conv_1x1``), ``prev`` brought to F filters (``prev_mode``:
    ``"reduce"`` twice the resolution, ``"conv"`` another width, ``"raw"`` used as it is: the first stem cell), and
    the cell's ScheduledDropPath. ``first``: the cell gets one tensor (the stem's), which is both ``x`` and ``prev``."""

    def __init__(self, x_channels: int, prev_channels: int, filters: int, prev_mode: str, drop_prob: float,
                 first: bool):
        super().__init__()
        self.prev_mode, self.first = prev_mode, first
        self.conv_1x1 = ActConvBn(x_channels, filters)
        if prev_mode == "reduce":
            self.reduce_prev = FactorizedReduction(prev_channels, filters)
        elif prev_mode == "conv":
            self.conv_prev_1x1 = ActConvBn(prev_channels, filters)
        self.drop_path = ScheduledDropPath(drop_prob) if drop_prob > 0 else nn.Identity()

    def _inputs(self, state: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x, prev, cur, h_prev)``: the two cell inputs and the two hidden states made from them."""
        x, prev = (state, state) if self.first else state
        if self.prev_mode == "reduce":
            h_prev = self.reduce_prev(prev)
        elif self.prev_mode == "conv":
            h_prev = self.conv_prev_1x1(prev)
        else:
            h_prev = prev
        return x, prev, self.conv_1x1(x), h_prev


class NormalCell(_Cell):
    """The NASNet-A Normal cell (module docstring); ``(x, prev) -> (output, x)``, 6F output channels."""

    def __init__(self, x_channels: int, prev_channels: int, filters: int, prev_mode: str = "conv",
                 drop_prob: float = 0.0, first: bool = False):
        super().__init__(x_channels, prev_channels, filters, prev_mode, drop_prob, first)
        f = filters
        self.comb_iter_0_left, self.comb_iter_0_right = BranchSeparables(f, f, 5), BranchSeparables(f, f, 3)
        self.comb_iter_1_left, self.comb_iter_1_right = BranchSeparables(f, f, 5), BranchSeparables(f, f, 3)
        self.comb_iter_2_left = Pool3x3("avg")
        self.comb_iter_3_left, self.comb_iter_3_right = Pool3x3("avg"), Pool3x3("avg")
        self.comb_iter_4_left = BranchSeparables(f, f, 3)

    def forward(self, state: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x, _, cur, hp = self._inputs(state)
        d = self.drop_path
        c0 = d(self.comb_iter_0_left(cur)) + d(self.comb_iter_0_right(hp))
        c1 = d(self.comb_iter_1_left(hp)) + d(self.comb_iter_1_right(hp))
        c2 = d(self.comb_iter_2_left(cur)) + hp
        c3 = d(self.comb_iter_3_left(hp)) + d(self.comb_iter_3_right(hp))
        c4 = d(self.comb_iter_4_left(cur)) + cur
        return torch.cat([hp, c0, c1, c2, c3, c4], 1), x


class ReductionCell(_Cell):
    """The NASNet-A Reduction cell (module docstring); ``(x, prev) -> (output, x)``, or ``(output, prev)`` with
    ``keep_prev`` (TF-slim ``skip_reduction_layer_input``); 4F output channels at half the resolution."""

    def __init__(self, x_channels: int, prev_channels: int, filters: int, prev_mode: str = "conv",
                 drop_prob: float = 0.0, first: bool = False, keep_prev: bool = False, include_pad: bool = False):
        super().__init__(x_channels, prev_channels, filters, prev_mode, drop_prob, first)
        f, fp = filters, (prev_channels if prev_mode == "raw" else filters)
        self.keep_prev = keep_prev
        self.comb_iter_0_left, self.comb_iter_0_right = BranchSeparables(f, f, 5, 2), BranchSeparables(fp, f, 7, 2)
        self.comb_iter_1_left, self.comb_iter_1_right = Pool3x3("max", 2), BranchSeparables(fp, f, 7, 2)
        self.comb_iter_2_left = Pool3x3("avg", 2, include_pad)
        self.comb_iter_2_right = BranchSeparables(fp, f, 5, 2)
        self.comb_iter_3_right = Pool3x3("avg")
        self.comb_iter_4_left, self.comb_iter_4_right = BranchSeparables(f, f, 3), Pool3x3("max", 2)

    def forward(self, state: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x, prev, cur, hp = self._inputs(state)
        d = self.drop_path
        c0 = d(self.comb_iter_0_left(cur)) + d(self.comb_iter_0_right(hp))
        c1 = d(self.comb_iter_1_left(cur)) + d(self.comb_iter_1_right(hp))
        c2 = d(self.comb_iter_2_left(cur)) + d(self.comb_iter_2_right(hp))
        c3 = d(self.comb_iter_3_right(c0)) + c1
        c4 = d(self.comb_iter_4_left(c0)) + d(self.comb_iter_4_right(cur))
        return torch.cat([c1, c2, c3, c4], 1), (prev if self.keep_prev else x)


class CellOutput(nn.Module):
    """The ReLU after the last cell, on the cell output of a ``(output, x)`` state."""

    def forward(self, state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return F.relu(state[0])


class NASNetA(Backbone):
    """NASNet-A "N @ P" (module docstring).

    Args:
        num_cells: N, the normal cells per stack (3 stacks). penultimate_filters: P = 24 F (F: the filters of the
            first stack; a multiple of 96 for the ImageNet stem, of 24 for CIFAR: every factorized reduction
            splits its filters in two halves).
        stem: ``"imagenet"`` (3x3/2 conv, two reduction stem cells) or ``"cifar"`` (3x3/1 conv).
        stem_filters: the stem conv's filters (TF-slim: 32 x stem multiplier on ImageNet, 3 F on CIFAR).
        skip_reduction_input: the normal cell after a reduction cell takes the reduction cell's ``prev`` (True,
            Large) or its ``x`` (False, Mobile / CIFAR) as its ``prev``.
        avg_pool_pad: ``"exclude"`` (TF: stride-2 average pools average the valid pixels) or ``"include"`` (timm's
            port: over the zero padding too).
        drop_rate: dropout before the classifier; drop_path_rate: ScheduledDropPath's final rate in the last cell.
    """

    _feature_path, _final_path = ("conv0", "cells.*"), ("act",)

    def __init__(self, *, num_cells: int = 6, penultimate_filters: int = 4032, stem: str = "imagenet",
                 stem_filters: int = 96, skip_reduction_input: bool = True, avg_pool_pad: str = "exclude",
                 num_classes: int = 1000, in_chans: int = 3, img_size: int | tuple[int, int] | None = None,
                 drop_rate: float = 0.5, drop_path_rate: float = 0.0, head: Any = SLOTS["head"],
                 model_name: str = "nasnet_a"):
        super().__init__()
        check_choice(stem, "stem", ("imagenet", "cifar"), owner=model_name)
        check_choice(avg_pool_pad, "avg_pool_pad", ("exclude", "include"), owner=model_name)
        imagenet = stem == "imagenet"
        unit = 96 if imagenet else 24   # 24 F, and F/4 (ImageNet stem) or F filters per factorized-reduction half
        if num_cells < 1 or penultimate_filters % unit:
            raise ConfigError(f"{model_name}: num_cells must be >= 1 and penultimate_filters a multiple of {unit} "
                              f"for the {stem} stem (24 F, the halves of every factorized reduction whole), got "
                              f"{num_cells} and {penultimate_filters}")
        self.model_name, self.in_chans, self.num_stages = model_name, in_chans, 3
        filters, include_pad = penultimate_filters // 24, avg_pool_pad == "include"
        feat = to_size(img_size)
        n_total = 3 * num_cells + 2 + 2 * imagenet          # TF-slim's total_num_cells (drop-path layer ratio)
        rates = iter(drop_path_rate * (i + 1) / n_total for i in range(n_total))

        stride, pad = (2, 0) if imagenet else (1, 1)      # ImageNet: 3x3/2 unpadded; CIFAR: 3x3/1 "same"
        self.conv0 = nn.Sequential(OrderedDict(conv=nn.Conv2d(in_chans, stem_filters, 3, stride, pad, bias=False),
                                               bn=_bn(stem_filters)))
        feat = self.track(feat, stride, 3, pad)
        if imagenet:
            self.add_feature("conv0", stem_filters)
            f0, f1 = filters // 4, filters // 2
            cells: list[nn.Module] = [
                ReductionCell(stem_filters, stem_filters, f0, "raw", next(rates), first=True,
                              include_pad=include_pad)]
            feat = self.track(feat, 2, 3, 1)
            self.add_feature("cells.0", 4 * f0)
            cells.append(ReductionCell(4 * f0, stem_filters, f1, "reduce", next(rates), include_pad=include_pad))
            feat = self.track(feat, 2, 3, 1)
            x_ch, prev_ch, prev_mode = 4 * f1, 4 * f0, "reduce"
        else:
            cells, x_ch, prev_ch, prev_mode = [], stem_filters, stem_filters, "conv"
        for stage in range(3):
            f = filters * 2 ** stage
            if stage:
                cells.append(ReductionCell(x_ch, prev_ch, f, "conv", next(rates), keep_prev=skip_reduction_input,
                                           include_pad=include_pad))
                feat = self.track(feat, 2, 3, 1)
                x_ch, prev_ch, prev_mode = 4 * f, (prev_ch if skip_reduction_input else x_ch), "reduce"
            self.begin_stage(stage, f"cells.{len(cells)}-{len(cells) + num_cells - 1}", feat)
            for _ in range(num_cells):
                cells.append(NormalCell(x_ch, prev_ch, f, prev_mode, next(rates), first=not cells))
                x_ch, prev_ch, prev_mode = 6 * f, x_ch, "conv"
            self.add_feature(f"cells.{len(cells) - 1}", x_ch)
        self.cells = nn.Sequential(*cells)
        self.act = CellOutput()
        self.init_head(x_ch, num_classes, head, drop_rate, feat_size=feat)
        init_weights(self)

    input_mean = input_std = (0.5, 0.5, 0.5)   # the released models take inputs in [-1, 1] (TF-slim preprocessing)

    def _feature_map(self, x: Any, inp: torch.Tensor) -> torch.Tensor:
        """A cell's ``(output, x)`` state -> its output after ReLU (timm's feature taps: the activation the next cell
        starts with); the stem conv's output as it is."""
        return F.relu(x[0]) if isinstance(x, tuple) else x


# ------------------------------------------------------------------------------------------------- registrations
_TEST = "tests/models/test_nasnet.py"


def _nasnet(name: str, *, num_cells: int, penultimate: int, stem: str, stem_filters: int, skip: bool,
            classes: int, pool_pad: str = "exclude", drop_rate: float = 0.5, size: int | None = None):
    def fn(*, num_classes: int = classes, in_chans: int = 3, **kw) -> NASNetA:
        kw.setdefault("avg_pool_pad", pool_pad)
        kw.setdefault("drop_rate", drop_rate)
        if size is not None:
            kw.setdefault("img_size", size)
        return NASNetA(num_cells=num_cells, penultimate_filters=penultimate, stem=stem, stem_filters=stem_filters,
                       skip_reduction_input=skip, num_classes=num_classes, in_chans=in_chans, model_name=name, **kw)
    fn.__doc__ = f"NASNet-A ({num_cells} @ {penultimate}), {stem} stem"
    return fn


register_model(
    "nasnetalarge", family="nasnet", slots=SLOTS, paper=papers.NASNET, input_size=(3, 331, 331), num_classes=1000,
    paper_params=88_900_000, paper_macs=23.8e9,
    reference={"params_1000cls": 88_753_150, "macs_331": 23_783_414_658},
    summary="NASNet-A Large (6 @ 4032): searched Normal/Reduction cells, 331 px; timm's nasnetalarge exactly",
    claims=(Claim("88,753,150 parameters (1000 classes), timm's nasnetalarge", f"{_TEST}::test_param_count_large"),
            Claim("23.8B mult-adds at 331 px, fewer than the human-designed models of equal accuracy (paper Table 2: "
                  "SENet 42.3B at 82.7%; the abstract: '9 billion fewer FLOPS, 28% reduction'): ours 23.78G, 44% "
                  "below SENet's figure; see the test for what this can and cannot show",
                  f"{_TEST}::test_flops_saving_claim")),
    notes="avg_pool_pad defaults to 'include' (timm's port) so that timm's weights give timm's outputs.")(
    _nasnet("nasnetalarge", num_cells=6, penultimate=4032, stem="imagenet", stem_filters=96, skip=True,
            classes=1000, pool_pad="include"))
register_model(
    "nasnetamobile", family="nasnet", slots=SLOTS, paper=papers.NASNET, input_size=(3, 224, 224), num_classes=1000,
    paper_params=5_300_000, paper_macs=564e6,
    reference={"params_1000cls": 5_289_978, "macs_224": 563_638_816},
    summary="NASNet-A Mobile (4 @ 1056): searched Normal/Reduction cells, 224 px (Cadene's nasnetamobile, TF-slim)",
    claims=(Claim("5,289,978 parameters (1000 classes; Keras' 5,326,716 adds the BN moving statistics)",
                  f"{_TEST}::test_param_counts"),
            Claim("564M mult-adds at 224 px (paper; ours 563.6M MACs)", f"{_TEST}::test_macs_224")))(
    _nasnet("nasnetamobile", num_cells=4, penultimate=1056, stem="imagenet", stem_filters=32, skip=False,
            classes=1000))
register_model(
    "nasnetacifar", family="nasnet", slots=SLOTS, paper=papers.NASNET, input_size=(3, 32, 32), num_classes=10,
    paper_params=3_300_000, reference={"params_3ch_10cls": 3_328_234}, test_size=16,
    summary="NASNet-A (6 @ 768), the paper's CIFAR-10 network: 3x3/1 stem, three stacks of 6 normal cells",
    claims=(Claim("3.3M parameters (paper Table 1: NASNet-A (6 @ 768) 3.3M)", f"{_TEST}::test_param_counts"),))(
    _nasnet("nasnetacifar", num_cells=6, penultimate=768, stem="cifar", stem_filters=96, skip=False, classes=10,
            drop_rate=0.0, size=32))
register_model(
    "nasnetacifar_tiny", family="nasnet", slots=SLOTS, paper=papers.NASNET, input_size=(3, 32, 32), num_classes=10,
    reference={"params_3ch_10cls": 108_866},
    summary="NASNet-A (2 @ 192) for 28-32 px inputs: the CIFAR network with 2 normal cells per stack, F = 8",
    claims=(Claim("trains on 28-32 px inputs (loss falls on a fixed batch)", f"{_TEST}::test_tiny_trains"),))(
    _nasnet("nasnetacifar_tiny", num_cells=2, penultimate=192, stem="cifar", stem_filters=24, skip=False,
            classes=10, drop_rate=0.0, size=32))
