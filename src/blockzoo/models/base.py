"""The common model contract (timm-like) shared by every blockzoo backbone.

``forward_features(x)`` -> unpooled NCHW features with ``num_features`` channels (token models such as the ViTs:
tokens ``(B, N, num_features)``, their feature maps reshaped to NCHW by :meth:`Backbone._feature_map`);
``forward_head(x, pre_logits=False)`` -> head slot (pooling) -> dropout -> classifier;
``reset_classifier(num_classes, global_pool=None)`` (timm's name; ``head=`` too); ``get_classifier()``;
``in_chans``, ``num_classes``.

Per-stage and per-block slot values
-----------------------------------
Every backbone accepts, for any slot it builds inside its stages (``attn``, ``mixer``, ``conv`` ...), besides a single
slot value (``"se"``, ``"se(reduction=8)"``, ``("se", {...})``, ``None``, a callable):

- a **list with one value per stage** (``attn=["none", "none", "se", "se"]``; on the command line the string
  ``"[none, none, se, se]"``). A list is never a block name nor the ``(name, kwargs)`` tuple form, so it is
  unambiguous. Stages are those of ``model.stages`` (``model.layers`` for ResNets, the rows of the paper's table for
  MobileNetV2; ``model.num_stages`` says how many); an entry for a stage that has no such slot is not used.
- a :class:`PerBlock` function ``(stage_idx, block_idx) -> slot value``, e.g.
  ``mixer=PerBlock(lambda s, b: "dwconv" if b % 2 else "gnconv")``.

:meth:`Backbone.slot_value` resolves them; every backbone calls it for each block it builds, so the convention is
the same in every family. Registered variants whose paper configuration differs per stage (HorNet's gnConv orders,
FFNet's kernels, SpaRTAN's grouping, UniRepLKNet's kernel schedule) register that configuration as the slot's
default value, so a user value (``mixer="dwconv"``) simply replaces it.

timm's model conventions
------------------------
Every backbone declares its forward path once: ``_feature_path`` (module names in forward order; ``"name.*"`` stands
for the children of a ``nn.Sequential``: the units the features are taken from) and ``_final_path`` (the modules
``forward_features`` applies after them, e.g. a final norm or a 1x1 conv head). :meth:`Backbone.forward_features`
runs that path, so :meth:`forward_intermediates` (timm >= 1.0), :meth:`prune_intermediate_layers`,
``features_only=True`` (:class:`blockzoo.models.features.FeatureListNet`), :meth:`set_grad_checkpointing` and
:meth:`group_matcher` work the same in every family. While building, a backbone calls :meth:`add_feature` for each
feature map (module name and channels; the reduction is read off the recorded spatial path), which fills
``model.feature_info`` (timm's list of ``dict(num_chs=, reduction=, module=)``).

Input sizes
-----------
While it builds, a backbone records the geometry of its spatial path (:meth:`Backbone.track`,
:meth:`Backbone.track_module`) and where each stage begins (:meth:`Backbone.begin_stage`); the minimum feature size of
the blocks put into each stage (their ``Requires.min_size``) is recorded by :meth:`Backbone.slot_value`. At forward
time :meth:`Backbone.check_input` checks the rank, channels and dtype of the input and, for each new spatial size, that
every stage gets a feature map of at least 1x1 and of the size its blocks need: a too-small input raises
:class:`~blockzoo.errors.InputShapeError` naming the stage and the smallest input that works (instead of a kernel error
deep inside torch). The checks are skipped while torch.fx traces or torch.compile / torch.export compile the model.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.utils.checkpoint

from blockzoo.blocks.common.init import apply_block_inits
from blockzoo.blocks.common.layers import LayerNorm2d, out_size
from blockzoo.blocks.common.metaformer import PooledNorm
from blockzoo.checks import check_choice, check_input, check_int, tracing
from blockzoo.errors import ConfigError, InputShapeError
from blockzoo.registry import SlotContext, build_slot, get_block_spec, is_block, parse_slot_value

__all__ = ["PerBlock", "per_stage_values", "per_stage", "parse_once", "Backbone", "ImageNetStem", "PooledNormHead",
           "init_weights", "out_size", "to_size"]

_MAX_INPUT = 1 << 14   # the search for the smallest working input stops here
_NOMINAL = 1 << 12     # the input size whose path gives each feature map's reduction
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def to_size(img_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if img_size is None:
        return None
    return (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)  # type: ignore


def _step_size(step: Any, size: tuple[int, int]) -> tuple[int, int]:
    """The size after one recorded step of a backbone's spatial path: a module with ``out_size`` or a
    ``(kernel, stride, padding, dilation)`` conv/pool."""
    if isinstance(step, nn.Module):
        return step.out_size(size)
    kernel, stride, padding, dilation = step
    return out_size(size, stride, kernel, padding, dilation)


class PerBlock:
    """A slot value chosen block by block: ``fn(stage_idx, block_idx) -> slot value`` (see the module docstring).

    Its own type, because a plain callable is already a slot value (a user function that builds the block)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[int, int], Any]):
        if not callable(fn):
            raise ConfigError(f"PerBlock needs a function (stage_idx, block_idx) -> slot value, got {fn!r}")
        self.fn = fn

    def __call__(self, stage: int, block: int) -> Any:
        return self.fn(stage, block)

    def __repr__(self) -> str:
        return f"PerBlock({getattr(self.fn, '__qualname__', None) or self.fn!r})"


def per_stage(value: Any, n: int, name: str, owner: str = "") -> list[Any]:
    """A model option with one entry per stage (``dims``, ``num_heads``, ``mlp_ratios`` ...): a list / tuple of ``n``
    values, or one value for every stage; a list of another length is a ConfigError naming ``owner`` (the model)."""
    if not isinstance(value, (list, tuple)):
        return [value] * n
    if len(value) != n:
        raise ConfigError(f"{owner + ': ' if owner else ''}{name} has {len(value)} entries but the model has {n} "
                          f"stages; give one value per stage or a single value for all")
    return list(value)


def per_stage_values(value: Any) -> list[Any] | None:
    """The entries of a per-stage slot value -- a list, or its string form ``"[v0, v1, ...]"`` -- else ``None``.

    In the string form each entry is a slot value as written on the command line (``se(reduction=8)``, ``none``,
    ``nonlocal``, ``'eca'``), separated by commas outside parentheses."""
    if isinstance(value, list):
        return list(value)
    if not (isinstance(value, str) and value.strip().startswith("[")):
        return None
    text = value.strip()
    entries, depth, cur, end = [], 0, "", None
    for pos, ch in enumerate(text[1:], 1):
        depth += (ch in "([") - (ch in ")]")
        if depth < 0:                                     # the closing bracket
            end = pos
            break
        if ch == "," and depth == 0:
            entries.append(cur)
            cur = ""
        else:
            cur += ch
    if end != len(text) - 1:
        raise ConfigError(f"cannot parse the per-stage slot value {value!r}: expected [value, value, ...] with one "
                          f"slot value per stage, e.g. [none, se, se(reduction=8)]")
    entries.append(cur)
    out = [e.strip() for e in entries]
    if any(not e for e in out):
        raise ConfigError(f"the per-stage slot value {value!r} has an empty entry; give one slot value per stage, "
                          f"e.g. [none, se, se(reduction=8)]")
    return [e[1:-1] if len(e) > 1 and e[0] == e[-1] and e[0] in "'\"" else e for e in out]


def parse_once(value: Any) -> Any:
    """A model-wide slot value (``norm``, ``act``) parsed once per model, so that its blocks do not re-parse it:
    ``"gn(groups=1)"`` -> ``("gn", {"groups": 1})``; names without options, ``None`` and callables are returned as
    they are."""
    name, kw = parse_slot_value(value)
    return (name, kw) if kw else value


class ImageNetStem(nn.Sequential):
    """He et al.'s ImageNet stem: 7x7/2 conv (no bias) -> norm -> act -> 3x3/2 max-pool."""

    def __init__(self, in_chans: int, width: int, norm: Any = "bn", act: Any = "relu"):
        from blockzoo.blocks.common.layers import make_act, make_norm

        super().__init__(nn.Conv2d(in_chans, width, 7, 2, 3, bias=False), make_norm(norm, width),
                         make_act(act, inplace=True), nn.MaxPool2d(3, 2, 1))

    def out_size(self, size: tuple[int, int] | None) -> tuple[int, int] | None:
        return out_size(out_size(size, 2, 7), 2, 3)


class Backbone(nn.Module):
    """Base class: subclasses build their stem and stages, then call ``init_head``.

    While building, a subclass sets ``num_stages``, resolves each in-stage slot with :meth:`slot_value`, and records
    its spatial path with :meth:`track` / :meth:`track_module` and :meth:`begin_stage` (see the module docstring).
    """

    num_classes: int
    num_features: int
    in_chans: int
    num_stages: int = 0
    model_name: str = "<model>"
    # the forward path (see the module docstring): units (``"name.*"``: the children of a Sequential), final modules,
    # and whether the final modules are a norm (``forward_intermediates(norm=True)`` applies them to the last stage)
    _feature_path: tuple[str, ...] = ("stem", "stages.*")
    _final_path: tuple[str, ...] = ()
    _final_is_norm: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.feature_info: list[dict[str, Any]] = []
        self.grad_checkpointing = False
        # the spatial path: (kernel, stride, padding, dilation) steps, modules with out_size(), stage markers
        self._size_plan: list[Any] = []
        self._stage_needs: dict[Any, int] = {}   # stage index (or "head") -> min feature size its blocks need
        self._size_ok: tuple[int, int] | None = None

    # ------------------------------------------------------------------------------------------ slot values
    def slot_value(self, slot: str, value: Any, stage: int, block: int = 0) -> Any:
        """The value of ``slot`` for block ``block`` of stage ``stage``: a per-stage list picks its entry, a
        :class:`PerBlock` is called; also records the block's minimum feature size for the forward-time check."""
        entries = per_stage_values(value)
        if entries is not None:
            if len(entries) != self.num_stages:
                raise ConfigError(f"{self.model_name}: {slot}= lists {len(entries)} values but the model has "
                                  f"{self.num_stages} stages; give one value per stage (or a PerBlock function)")
            value = entries[stage]
        if isinstance(value, PerBlock):
            value = value(stage, block)
        if isinstance(value, PerBlock) or per_stage_values(value) is not None:
            raise ConfigError(f"{self.model_name}: the {slot} value of stage {stage} is itself a per-stage or "
                              f"per-block value ({value!r}); give one slot value per stage or per block")
        name, _ = parse_slot_value(value)
        if isinstance(name, str) and is_block(name):
            need = get_block_spec(name).requires.min_size
            self._stage_needs[stage] = max(need, self._stage_needs.get(stage, 1))
        return value

    def ctx(self, position: str, feat_size: tuple[int, int] | None) -> SlotContext:
        return SlotContext(model=self.model_name, position=position, feat_size=feat_size)

    def block_ctx(self, prefix: str, feat_size: tuple[int, int] | None = None) -> Callable[..., SlotContext]:
        """The ``ctx(position, feat_size=<the block's input size>)`` a block gets to build its own slots: the context
        of ``"<prefix>.<position>"`` (every backbone hands its blocks this one signature; a block calls it in
        ``__init__`` and does not keep it, it refers to the model)."""
        return lambda position, feat=feat_size: self.ctx(f"{prefix}.{position}", feat)

    # ------------------------------------------------------------------------------------ the spatial path
    def track(self, feat: tuple[int, int] | None, stride: int, kernel: int = 3, padding: int | None = None,
              dilation: int = 1) -> tuple[int, int] | None:
        """:func:`out_size` of a conv/pool on the main path, recorded for the forward-time size check."""
        self._size_plan.append((kernel, stride, padding, dilation))
        return out_size(feat, stride, kernel, padding, dilation)

    def track_module(self, module: nn.Module, feat: tuple[int, int] | None) -> tuple[int, int] | None:
        """The output size of a stem / downsampling ``module`` with an ``out_size(size)`` method (recorded); a module
        without one makes the size unknown from here on (no size checks after it)."""
        fn = getattr(module, "out_size", None)
        self._size_plan.append(module if callable(fn) else None)
        return fn(feat) if callable(fn) and feat is not None else None

    def begin_stage(self, index: int, name: str, feat: tuple[int, int] | None) -> None:
        """Stage ``index`` (``name`` in messages, e.g. ``"layer4"``) starts here, after its downsampling. With a known
        ``feat`` (an ``img_size`` was given), an empty feature map is refused now."""
        self._size_plan.append(("stage", index, name))
        if feat is not None and min(feat) < 1:
            need = self.min_input_size()      # of the stages so far: a lower bound for the whole model
            raise ConfigError(f"{self.model_name}: img_size is too small: stage {index + 1} ({name}) would see "
                              f"{max(feat[0], 0)}x{max(feat[1], 0)} features; use a larger img_size (this stage "
                              f"needs at least {need}x{need}) or a small-input stem (e.g. stem='small')")

    def _size_problem(self, size: tuple[int, int]) -> tuple[str, tuple[int, int], int] | None:
        """The first place on the spatial path where an input of ``size`` fails: (where, feature size, need)."""
        failed = False
        for step in self._size_plan:
            if step is None:                                  # unknown geometry from here on
                return None
            if isinstance(step, tuple) and step[0] == "stage":
                _, index, name = step
                need = max(1, self._stage_needs.get(index, 1))
                if failed or min(size) < need:
                    where = "the head" if index == "head" else f"stage {index + 1} ({name})"
                    return where, (max(size[0], 0), max(size[1], 0)), need
                continue
            if not failed:
                size = _step_size(step, size)
                failed = min(size) < 1                        # the conv itself cannot run: name the next stage
        return None

    def min_input_size(self) -> int:
        """The smallest square input (in pixels) every stage can take, from the recorded spatial path."""
        n = 1
        while n < _MAX_INPUT and self._size_problem((n, n)) is not None:
            n += 1
        return n

    def check_input(self, x: torch.Tensor) -> None:
        """Rank 4, ``in_chans`` channels, floating point, and a spatial size every stage can take (skipped while
        tracing / compiling). Raises :class:`~blockzoo.errors.InputShapeError`."""
        check_input(x, self.model_name, ndim=4)
        if tracing():
            return
        if x.shape[1] != self.in_chans:
            raise InputShapeError(f"{self.model_name} was built for in_chans={self.in_chans} but got {x.shape[1]} "
                                  f"channels; create it with create_model(..., in_chans={x.shape[1]})")
        size = (int(x.shape[-2]), int(x.shape[-1]))
        if size == self._size_ok:
            return
        problem = self._size_problem(size)
        if problem is not None:
            where, feat, need = problem
            n = self.min_input_size()
            raise InputShapeError(
                f"{self.model_name}: the input {size[0]}x{size[1]} is too small: {where} would see {feat[0]}x{feat[1]} "
                f"features" + (f" but its blocks need at least {need}x{need}" if need > 1 else "")
                + f"; use an input of at least {n}x{n}")
        self._size_ok = size

    # ------------------------------------------------------------------------------------------------ head
    def init_head(self, num_features: int, num_classes: int, head="avg", drop_rate: float = 0.0,
                  feat_size: tuple[int, int] | None = None) -> None:
        """Build the head slot (checked against the final feature size when known), dropout and classifier."""
        self.num_features, self.num_classes, self.drop_rate = num_features, num_classes, drop_rate
        self.head_spec, self.head_feat_size = head, feat_size
        self.set_head(head)
        self._size_plan.append(("stage", "head", "head"))
        self.head_hidden_size = getattr(self.head, "out_features", num_features)
        self.head_drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    def set_head(self, head: Any) -> None:
        """(Re)build the pooling ``head`` slot, checked against the final feature size when it is known; its minimum
        feature size joins the forward-time size check."""
        self.head = build_slot("head", head, self.num_features,
                               SlotContext(self.model_name, "head", getattr(self, "head_feat_size", None)))
        name, _ = parse_slot_value(head)
        self._stage_needs["head"] = get_block_spec(name).requires.min_size if isinstance(name, str) and is_block(
            name) else 1
        self._size_ok = None

    # ------------------------------------------------------------------------ the forward path and features
    def add_feature(self, module: str, channels: int, reduction: int | None = None) -> None:
        """Record a feature map: the output of unit ``module`` (a name on ``_feature_path``) with ``channels``
        channels; ``reduction`` (input size / feature size) defaults to the one of the spatial path recorded so far
        (call it after the stage's downsampling was tracked)."""
        if reduction is None:
            reduction = self._plan_reduction()
        if reduction is None:  # pragma: no cover - a family bug, caught by the registry-wide tests
            raise RuntimeError(f"{self.model_name}: the reduction of feature {module!r} is unknown; pass reduction=")
        self.feature_info.append(dict(num_chs=int(channels), reduction=int(reduction), module=module))

    def _plan_reduction(self) -> int | None:
        size = (_NOMINAL, _NOMINAL)
        for step in self._size_plan:
            if step is None:
                return None
            if not (isinstance(step, tuple) and step[0] == "stage"):
                size = _step_size(step, size)
        return round(_NOMINAL / size[0])

    def _units(self) -> list[tuple[str, nn.Module]]:
        """``(name, module)`` of each unit on the forward path, in order (resolved at each call: a deploy pass or
        pruning may have replaced a module)."""
        units = []
        for entry in self._feature_path:
            if entry.endswith(".*"):
                prefix = entry[:-2]
                mod = self.get_submodule(prefix)
                if isinstance(mod, nn.Sequential):
                    units.extend((f"{prefix}.{k}", m) for k, m in mod.named_children())
                    continue
                entry = prefix
            # an entry that is no submodule names a method of the model: a step without modules of its own (a ViT's
            # class token and position embedding)
            units.append((entry, self.get_submodule(entry) if "." in entry or entry in self._modules
                          else getattr(self, entry)))
        return units

    @property
    def _stages_name(self) -> str:
        """The stage container: the last ``"name.*"`` entry of ``_feature_path`` (``"stages"``, ``"layers"`` ...)."""
        return [e[:-2] for e in self._feature_path if e.endswith(".*")][-1]

    def _last_unit(self, take: list[int], names: list[str]) -> int:
        """The position on the forward path of the last unit the feature maps ``take`` need (-1: none)."""
        return max((names.index(self.feature_info[i]["module"]) for i in take), default=-1)

    def _to_identity(self, name: str) -> None:
        parent, _, child = name.rpartition(".")
        setattr(self.get_submodule(parent) if parent else self, child, nn.Identity())

    def _feature_map(self, x: torch.Tensor, inp: torch.Tensor) -> torch.Tensor:
        """The NCHW feature map of a unit's output ``x`` for the model input ``inp``: ``x`` itself (a token model
        reshapes its patch tokens to the patch grid)."""
        return x

    def _forward_final(self, x: torch.Tensor) -> torch.Tensor:
        for name in self._final_path:
            x = self.get_submodule(name)(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled features: the units of the forward path, then the final modules (gradient checkpointing per stage
        unit, as timm, when :meth:`set_grad_checkpointing` is on and gradients are being recorded; the stem runs as
        is)."""
        ckpt = self.grad_checkpointing and torch.is_grad_enabled()
        stages = self._stages_name + "." if ckpt else ""
        for name, unit in self._units():
            if ckpt and name.startswith(stages):
                x = torch.utils.checkpoint.checkpoint(unit, x, use_reentrant=False)
            else:
                x = unit(x)
        return self._forward_final(x)

    def _take_indices(self, indices: int | Sequence[int] | None) -> list[int]:
        n = len(self.feature_info)
        if indices is None:
            return list(range(n))
        if isinstance(indices, int) and not isinstance(indices, bool):   # timm: an int takes the last n
            if not 1 <= indices <= n:
                raise ConfigError(f"{self.model_name}: indices={indices} takes the last n feature maps; n must be "
                                  f"in 1..{n} (the model has {n}: see model.feature_info)")
            return list(range(n - indices, n))
        take = []
        for i in indices:
            if isinstance(i, bool) or not isinstance(i, int) or not -n <= i < n:
                raise ConfigError(f"{self.model_name}: feature index {i!r} is out of range; the model has {n} feature "
                                  f"maps (indices 0..{n - 1}, or negative from the end; see model.feature_info)")
            take.append(i % n)
        return sorted(set(take))

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False):
        """timm's (>= 1.0) feature API: the feature maps at ``indices`` (of ``model.feature_info``; an int takes the
        last n; default all) and, unless ``intermediates_only``, the final features: ``(final, [maps])``.
        ``stop_early`` stops after the last requested unit (the returned final tensor is then that unit's output);
        ``norm=True`` applies the model's final norm (where ``forward_features`` ends with one) to the last stage's
        map; ``output_fmt`` ``"NCHW"`` or ``"NHWC"``."""
        check_choice(output_fmt, "output_fmt", ("NCHW", "NHWC"), owner=f"{self.model_name}.forward_intermediates")
        take = self._take_indices(indices)
        self.check_input(x)
        inp = x
        units = self._units()
        names = [name for name, _ in units]
        wanted = {self.feature_info[i]["module"] for i in take}
        last = self._last_unit(take, names)
        stop = last if (stop_early or intermediates_only) else len(units) - 1
        maps = []
        for name, unit in units[:stop + 1]:
            x = unit(x)
            if name in wanted:
                maps.append(x)
        if norm and self._final_is_norm and maps and last == len(units) - 1:
            maps[-1] = self._forward_final(maps[-1])
        maps = [self._feature_map(m, inp) for m in maps]
        if output_fmt == "NHWC":
            maps = [m.permute(0, 2, 3, 1) for m in maps]
        if intermediates_only:
            return maps
        return (x if stop < len(units) - 1 else self._forward_final(x)), maps

    def prune_intermediate_layers(self, indices: int | Sequence[int] | None = None, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop what the feature maps at ``indices`` do not need (timm): the units after the last one (replaced by
        ``nn.Identity``), the final modules (when units were dropped, or ``prune_norm``) and, with ``prune_head``,
        the pooling head and classifier. Returns the feature indices kept."""
        take = self._take_indices(indices)
        units = self._units()
        last = self._last_unit(take, [name for name, _ in units])
        for name, _ in units[last + 1:]:
            self._to_identity(name)
        if prune_norm or last < len(units) - 1:
            for name in self._final_path:
                self._to_identity(name)
        if prune_head:   # every top-level module off the forward path: pooling head, dropout, classifier ...
            keep = {e.split(".")[0] for e in (*self._feature_path, *self._final_path)}
            for name, _ in list(self.named_children()):
                if name not in keep:
                    setattr(self, name, nn.Identity())
            self.num_classes = 0
        return take

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage unit (``model.stages[i]`` / ``layers[i]`` ...) in the backward pass instead of keeping
        its activations (``torch.utils.checkpoint``, non-reentrant): less memory, about one more forward of
        compute."""
        self.grad_checkpointing = bool(enable)

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's parameter groups (layer-wise learning-rate decay): ``stem`` (the modules before the stages), then
        ``blocks``: one group per stage (``coarse``) or per block, the final modules last; the head is left out
        (timm puts unmatched parameters in the last group)."""
        stages = self._stages_name
        before = [e.removesuffix(".*") for e in self._feature_path[:self._feature_path.index(stages + ".*")]]
        c = re.escape(stages)
        stem = "^(?:" + "|".join(re.escape(b) for b in before) + r")\." if before else r"^$"
        final = [(r"^(?:" + "|".join(re.escape(f) for f in self._final_path) + r")\.", (99999,))] \
            if self._final_path else []
        if coarse:
            return dict(stem=stem, blocks=[(rf"^{c}\.(\d+)\.", None), *final])
        return dict(stem=stem, blocks=[(rf"^{c}\.(\d+)\.(?:blocks\.|layers\.)?(\d+)\.", None),
                                       (rf"^{c}\.(\d+)\.", None), *final])

    def no_weight_decay(self) -> set[str]:
        """Parameter names timm's optimizer factory must not decay beyond its own rule (1-D parameters: norms,
        biases, layer scales); empty for convolutional backbones (position embeddings and tokens go here)."""
        return set()

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """timm's ``pretrained_cfg`` / ``default_cfg``: the architecture, its paper, the input size and class count it
        was built for, the input normalization of its paper setting (ImageNet's mean/std for ImageNet models; the
        small-input models are normalized by their dataset's own statistics, computed by ``blockzoo.data``), and the
        first conv / classifier names; for the architectures shared with timm, timm's model name and the hub id of
        the weights ``pretrained=True`` loads. Keys blockzoo does not know (a published evaluation crop) are left
        out."""
        cfg = self.__dict__.get("_pretrained_cfg")
        if cfg is None:
            cfg = self.__dict__["_pretrained_cfg"] = self._default_pretrained_cfg()
        return cfg

    @pretrained_cfg.setter
    def pretrained_cfg(self, value: dict[str, Any]) -> None:
        self.__dict__["_pretrained_cfg"] = dict(value)

    default_cfg = pretrained_cfg

    #: the input normalisation of the family's ImageNet models (``pretrained_cfg`` mean / std); TF-slim-trained
    #: families (Inception, NASNet) take inputs scaled to [-1, 1]: mean = std = 0.5
    input_mean: tuple[float, ...] = IMAGENET_MEAN
    input_std: tuple[float, ...] = IMAGENET_STD

    def _default_pretrained_cfg(self) -> dict[str, Any]:
        from blockzoo.registry import get_model_spec, list_models
        from blockzoo.weights.timm_map import TIMM_MODELS  # the architectures shared with timm, and their weights

        spec = get_model_spec(self.model_name) if self.model_name in list_models() else None
        size = tuple(spec.input_size[1:]) if spec else None
        cfg: dict[str, Any] = {"architecture": self.model_name, "num_classes": self.num_classes}
        if size:
            cfg["input_size"] = (self.in_chans, *size)
        if spec and spec.num_classes == 1000 and size and min(size) >= 128:
            cfg.update(mean=self.input_mean, std=self.input_std)
        if spec and spec.paper:
            cfg["paper"] = f"{spec.paper.title} (arXiv:{spec.paper.arxiv})" if getattr(spec.paper, "arxiv", None) \
                else spec.paper.title
        timm = TIMM_MODELS.get(self.model_name)
        if timm is not None and timm.name:
            cfg["timm_model"] = timm.name
            if timm.hub_id:
                cfg["hf_hub_id"] = timm.hub_id
        first = next((n for n, m in self.named_modules() if isinstance(m, nn.Conv2d)), None)
        if first:
            cfg["first_conv"] = first
        cfg["classifier"] = "fc"
        return cfg

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.head(x))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: Any = None, head: Any = None) -> None:
        """A new classifier for ``num_classes`` (0: none, ``forward`` returns the pooled features), as in timm;
        ``global_pool`` (timm's name) or ``head``: a new pooling ``head`` slot value (``"avg"``, ``"max"``,
        ``"gcp"`` ...), checked against the final feature size like the one the model was built with."""
        check_int(num_classes, "num_classes", min_value=0, owner=f"{self.model_name}.reset_classifier")
        if global_pool is not None and head is not None and global_pool != head:
            raise ConfigError(f"{self.model_name}.reset_classifier: global_pool={global_pool!r} and head={head!r} "
                              f"name two different pooling heads; pass one")
        self._reset_classifier(num_classes, head if head is not None else global_pool)

    def _reset_classifier(self, num_classes: int, head: Any) -> None:
        """The family's part of :meth:`reset_classifier` (override to re-initialise or rebuild head layers)."""
        if head is not None:
            self.set_head(head)
            self.head_hidden_size = getattr(self.head, "out_features", self.num_features)
        self.num_classes = num_classes
        self.fc = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()


class PooledNormHead:
    """Mixin (before :class:`Backbone` in the bases) for the ConvNeXt-style head: pooling -> LayerNorm of the pooled
    vector (``head_norm``) -> dropout -> ``fc`` (MOAT, FcaFormer). Call :meth:`init_head_norm` after ``init_head``;
    a new classifier (``reset_classifier``) is initialised with ``fc_init`` (std 0.02, zero bias) and keeps the head
    LayerNorm unless a new pooling head changes the pooled size."""

    fc_init = staticmethod(nn.init.trunc_normal_)

    def init_head_norm(self, eps: float) -> None:
        self._head_norm_eps = eps
        self.head_norm = PooledNorm(LayerNorm2d(self.head_hidden_size, eps=eps))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.head_norm(self.head(x)))
        return x if pre_logits else self.fc(x)

    def _reset_classifier(self, num_classes: int, head: Any) -> None:
        super()._reset_classifier(num_classes, head)
        if self.head_norm.norm.weight.shape[0] != self.head_hidden_size:
            self.init_head_norm(self._head_norm_eps)
        if isinstance(self.fc, nn.Linear):
            self.fc_init(self.fc.weight, std=0.02)
            nn.init.zeros_(self.fc.bias)


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
    apply_block_inits(model)  # blocks with a paper-specific init (e.g. zero-initialised output BN) re-apply it
    if zero_init_last:
        for m in model.modules():
            if hasattr(m, "zero_init_last") and m is not model:
                m.zero_init_last()
