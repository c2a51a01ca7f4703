"""The registry: the single source of truth for every block and model in blockzoo.

Every block is registered with its name, the *slot* it plugs into, its constructor, the paper it comes from and the
paper's checkable claims; every model with its family, its slots (and their defaults) and its paper settings.
Docs (``docs/catalog.md``), the CLI and the parametrised tests are all driven from here.

Contracts (timm-like)::

    create_block(name, channels, **kw)            # channels first, NCHW in, NCHW out for spatial slots
    create_model(name, num_classes=..., in_chans=..., attn="eca", act="elu", ...)
    list_blocks(slot=None, pattern=None)          # fnmatch wildcards
    list_models(pattern=None)
    get_info(name)                                # JSON-able dict

A slot value may be a registered name (``"eca"``), a name with keyword arguments (``"se(reduction=8)"`` or
``("se", {"reduction": 8})``), ``None``/``"none"`` (identity, where the slot allows it), or a callable returning an
``nn.Module`` (escape hatch for user code; no compatibility checks then).
"""
from __future__ import annotations

import ast
import collections.abc
import difflib
import fnmatch
import functools
import importlib
import inspect
import math
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch.nn as nn

from blockzoo.checks import check_input, check_int, check_positive
from blockzoo.errors import (  # noqa: F401  (re-exported: registry.BlockzooError etc. stay valid)
    BlockzooError,
    ConfigError,
    IncompatibleBlockError,
    InputShapeError,
    UnknownNameError,
)

__all__ = [
    "Paper", "Claim", "Requires", "BlockSpec", "ModelSpec", "SlotContext", "SLOTS",
    "BlockzooError", "ConfigError", "UnknownNameError", "IncompatibleBlockError", "InputShapeError",
    "register_block", "register_model", "create_block", "create_model", "build_slot", "parse_slot_value",
    "list_blocks", "list_models", "list_slots", "get_block_spec", "get_model_spec", "get_info", "is_block", "is_model",
    "block_options", "model_options", "model_fixed_options",
]


# ----------------------------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Paper:
    """Bibliographic record. ``id`` is the inventory id from ``shared/reference/papers.md`` (S001..S109), or ``None``
    for baselines the inventory does not list (ResNet, SENet, ...)."""

    title: str
    year: int
    venue: str = ""
    arxiv: str | None = None
    id: str | None = None
    url: str | None = None
    authors: str = ""

    @property
    def cite(self) -> str:
        ref = f"arXiv:{self.arxiv}" if self.arxiv else (self.url or "")
        tag = f"[{self.id}] " if self.id else ""
        who = f"{self.authors}, " if self.authors else ""
        return f"{tag}{who}{self.title} ({self.venue} {self.year}) {ref}".strip()


@dataclass(frozen=True)
class Claim:
    """A checkable statement from the paper and where blockzoo checks it.

    ``check`` names the test (``tests/test_x.py::test_y``) or benchmark that verifies it; ``status`` is one of
    ``tested`` (a unit test asserts it), ``measured`` (a benchmark records it, see benchmarks/results), or
    ``not checked`` (needs ImageNet-scale training or hardware we do not have)."""

    text: str
    check: str | None = None
    status: str = "tested"


@dataclass(frozen=True)
class Requires:
    """What a block needs from the place it is plugged into; checked when the model is built."""

    layout: str = "NCHW"              # input layout the block consumes
    keeps_channels: bool = True       # output channels == input channels
    min_size: int = 1                 # minimum spatial size (H and W) of its input
    fixed_resolution: bool = False    # needs the input resolution at construction (gets input_resolution=(H, W))
    min_channels: int = 1             # smallest channel count it supports
    stride: bool = False              # accepts ``stride`` / ``out_channels`` (conv slot)
    streams: bool = False             # connection slot: carries n residual streams (needs SlotContext(streams=True))


@dataclass
class BlockSpec:
    name: str
    slot: str
    fn: Callable[..., nn.Module]
    paper: Paper | None
    summary: str
    family: str
    claims: tuple[Claim, ...] = ()
    requires: Requires = field(default_factory=Requires)
    defaults: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    usage: str = ""


@dataclass
class ModelSpec:
    name: str
    fn: Callable[..., nn.Module]
    family: str
    paper: Paper | None
    summary: str
    slots: dict[str, Any]                        # slot name -> default value
    input_size: tuple[int, int, int] = (3, 224, 224)
    num_classes: int = 1000
    claims: tuple[Claim, ...] = ()
    paper_params: int | None = None              # parameter count in the paper's table (paper settings)
    paper_macs: float | None = None              # MACs in the paper's table
    reference: dict[str, Any] = field(default_factory=dict)  # exact counts we test against (e.g. params at 3ch/10cls)
    notes: str = ""
    test_size: int | None = None                 # input size for the registry-wide tests (default: min(64, paper))

    @property
    def small_size(self) -> int:
        return self.test_size or min(64, self.input_size[1])


@dataclass
class SlotContext:
    """Where a slot sits inside a model; used for compatibility checks and error messages."""

    model: str = "<model>"
    position: str = ""
    feat_size: tuple[int, int] | None = None     # spatial size of the slot's input, when known
    streams: bool = False                        # the skeleton carries residual streams (hyper-connections)


# The slots a backbone may declare. Each entry: what a block in that slot must do.
SLOTS: dict[str, str] = {
    "attn": "channel-preserving recalibration: NCHW -> NCHW, same C; built as create_block(name, channels)",
    "norm": "normalisation layer factory: create_block(name, channels) -> module over NCHW (bn, gn, ln2d, none)",
    "act": "activation factory: create_block(name) -> module (relu, relu6, gelu, silu, hswish, elu)",
    "mixer": "spatial token mixer: NCHW -> NCHW, same C (token mixers of MetaFormer-style blocks)",
    "conv": "kxk conv unit replacement with its norm+act: create_block(name, in_channels, out_channels=, stride=)",
    "connection": "how a residual branch is merged with its shortcut (residual variants)",
    "head": "pooling head: NCHW -> (N, out_features); replaces global average pooling",
}


# "none" means identity in these slots (an attention-free, norm-free or mixer-free variant).
NONE_NAMES = ("none", "identity")
IDENTITY_SLOTS = ("attn", "norm", "mixer")

_BLOCKS: dict[str, BlockSpec] = {}
_MODELS: dict[str, ModelSpec] = {}
_LOADED = False


def _ensure_loaded() -> None:
    """Import the block and model families (they register themselves) on first use."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        importlib.import_module("blockzoo.blocks")
        importlib.import_module("blockzoo.models")


# ---------------------------------------------------------------------------------------------------- registration
def register_block(
    name: str,
    *,
    slot: str,
    paper: Paper | None = None,
    summary: str = "",
    family: str = "",
    claims: Iterable[Claim] = (),
    requires: Requires | None = None,
    defaults: dict[str, Any] | None = None,
    notes: str = "",
    usage: str = "",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a block constructor ``fn(channels, **kw) -> nn.Module`` under ``name``."""
    if slot not in SLOTS:
        raise ValueError(f"unknown slot {slot!r}; slots are {', '.join(SLOTS)}")

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BLOCKS:
            raise ValueError(f"block {name!r} registered twice ({_BLOCKS[name].fn} and {fn})")
        _BLOCKS[name] = BlockSpec(
            name=name, slot=slot, fn=fn, paper=paper, summary=summary or (fn.__doc__ or "").strip().split("\n")[0],
            family=family or fn.__module__.rsplit(".", 1)[-1], claims=tuple(claims), requires=requires or Requires(),
            defaults=dict(defaults or {}), notes=notes, usage=usage,
        )
        return fn

    return deco


def register_model(
    name: str,
    *,
    family: str,
    slots: dict[str, Any],
    paper: Paper | None = None,
    summary: str = "",
    input_size: tuple[int, int, int] = (3, 224, 224),
    num_classes: int = 1000,
    claims: Iterable[Claim] = (),
    paper_params: int | None = None,
    paper_macs: float | None = None,
    reference: dict[str, Any] | None = None,
    notes: str = "",
    test_size: int | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model constructor ``fn(num_classes=, in_chans=, **slots_and_kwargs)``."""
    for s in slots:
        if s not in SLOTS:
            raise ValueError(f"model {name!r} declares unknown slot {s!r}")

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = ModelSpec(
            name=name, fn=fn, family=family, paper=paper, summary=summary or (fn.__doc__ or "").strip().split("\n")[0],
            slots=dict(slots), input_size=tuple(input_size), num_classes=num_classes, claims=tuple(claims),
            paper_params=paper_params, paper_macs=paper_macs, reference=dict(reference or {}), notes=notes,
            test_size=test_size,
        )
        return fn

    return deco


# ------------------------------------------------------------------------------------------------------- look-ups
def get_block_spec(name: str) -> BlockSpec:
    _ensure_loaded()
    if name not in _BLOCKS:
        hint = ""
        if name in _MODELS:
            hint = f" {name!r} is a model: use create_model({name!r})."
        raise UnknownNameError("block", name, _BLOCKS, hint)
    return _BLOCKS[name]


def get_model_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    if name not in _MODELS:
        hint = f" {name!r} is a block: use create_block({name!r}, channels)." if name in _BLOCKS else ""
        raise UnknownNameError("model", name, _MODELS, hint)
    return _MODELS[name]


def is_block(name: str) -> bool:
    _ensure_loaded()
    return name in _BLOCKS


def is_model(name: str) -> bool:
    _ensure_loaded()
    return name in _MODELS


def list_slots() -> dict[str, str]:
    return dict(SLOTS)


Patterns = str | Iterable[str] | None


def _filter_names(names: Iterable[str], pattern: Patterns, exclude_filters: Patterns) -> list[str]:
    """timm's name filtering: keep names matching any of ``pattern`` (fnmatch wildcards, case-insensitive; a string
    or a list of them), then drop those matching any of ``exclude_filters``; sorted."""
    def patterns(p: Patterns) -> list[str]:
        items = [p] if isinstance(p, str) else list(p or [])
        for q in items:
            if not isinstance(q, str):
                raise ConfigError(f"a name pattern must be a string (fnmatch wildcards, e.g. '*resnet*'), got {q!r}")
        return [q.lower() for q in items if q]

    keep, drop = patterns(pattern), patterns(exclude_filters)
    out = [n for n in names if not keep or any(fnmatch.fnmatchcase(n.lower(), q) for q in keep)]
    return sorted(n for n in out if not any(fnmatch.fnmatchcase(n.lower(), q) for q in drop))


def list_blocks(slot: str | None = None, pattern: Patterns = None, exclude_filters: Patterns = None) -> list[str]:
    """Registered block names, sorted; filter by slot and by ``pattern`` / ``exclude_filters`` (fnmatch wildcards,
    case-insensitive, a string or a list: ``list_blocks(pattern=["*se*", "eca*"])``)."""
    _ensure_loaded()
    if slot is not None and slot not in SLOTS:
        raise UnknownNameError("slot", slot, SLOTS, f" Slots are: {', '.join(SLOTS)}.")
    return _filter_names([n for n, s in _BLOCKS.items() if slot is None or s.slot == slot], pattern, exclude_filters)


def list_models(pattern: Patterns = None, family: str | None = None, exclude_filters: Patterns = None) -> list[str]:
    """Registered model names, sorted, like timm's ``list_models``: ``pattern`` and ``exclude_filters`` are fnmatch
    wildcards (case-insensitive; a string or a list of them: ``list_models(["*resnet*", "wrn*"],
    exclude_filters="*small*")``); ``family`` keeps one family."""
    _ensure_loaded()
    return _filter_names([n for n, s in _MODELS.items() if family is None or s.family == family], pattern,
                         exclude_filters)


def _paper_dict(p: Paper | None) -> dict[str, Any] | None:
    return None if p is None else {**asdict(p), "cite": p.cite}


def get_info(name: str, kind: str | None = None) -> dict[str, Any]:
    """A JSON-able description of a registered block or model. A name that is both (e.g. ``spartan``: the mixer and
    the backbone) gives the block unless ``kind="model"``."""
    _ensure_loaded()
    if kind not in (None, "block", "model"):
        raise ValueError(f"kind must be 'block' or 'model', got {kind!r}")
    if name in _BLOCKS and kind != "model":
        s = _BLOCKS[name]
        return {
            "kind": "block", "name": s.name, "slot": s.slot, "family": s.family, "summary": s.summary,
            "paper": _paper_dict(s.paper), "claims": [asdict(c) for c in s.claims], "requires": asdict(s.requires),
            "options": _jsonable(block_options(name)), "defaults": s.defaults, "notes": s.notes,
            "usage": s.usage or _default_usage(s),
        }
    if name in _MODELS and kind != "block":
        m = _MODELS[name]
        return {
            "kind": "model", "name": m.name, "family": m.family, "summary": m.summary, "paper": _paper_dict(m.paper),
            "slots": {k: _slot_repr(v) for k, v in m.slots.items()}, "options": _jsonable(model_options(name)),
            "fixed_options": _jsonable(model_fixed_options(name)), "input_size": list(m.input_size),
            "num_classes": m.num_classes, "claims": [asdict(c) for c in m.claims], "paper_params": m.paper_params,
            "paper_macs": m.paper_macs, "reference": m.reference, "notes": m.notes,
        }
    raise UnknownNameError("block or model", name, list(_BLOCKS) + list(_MODELS), " Run `blockzoo list` to see all.")


def _slot_repr(v: Any) -> Any:
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], dict):
        return f"{v[0]}({', '.join(f'{k}={w!r}' for k, w in v[1].items())})"
    if isinstance(v, list):   # one value per stage, in its command-line form
        return f"[{', '.join(str(_slot_repr(x)) for x in v)}]"
    return getattr(v, "__name__", repr(v))


def _default_usage(s: BlockSpec) -> str:
    if s.slot in ("attn", "mixer", "norm", "head"):
        host = 'create_model("convnext_atto", img_size=32, stem="small", ' if s.slot == "mixer" else \
            'create_model("resnet20", '
        return f'blk = create_block("{s.name}", 64)   # NCHW in -> ' + (
            "(N, F) out" if s.slot == "head" else "NCHW out") + f'\nmodel = {host}{s.slot}="{s.name}")'
    if s.slot == "conv":
        return f'blk = create_block("{s.name}", 64, out_channels=128, stride=2)'
    return f'blk = create_block("{s.name}")'


# ---------------------------------------------------------------------------------------------------------- options
_REQUIRED = inspect.Parameter.empty
_INTERNAL = ("model_name",)   # set by create_model itself


@dataclass(frozen=True)
class _Options:
    """A constructor's options as its signature declares them."""

    defaults: dict[str, Any]     # option -> default (``_REQUIRED`` where it has none)
    types: dict[str, Any]        # option -> annotation (resolved where possible)
    open: bool                   # it also takes **kwargs that the signature does not list


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    for eval_str in (True, False):
        try:
            return inspect.signature(fn, eval_str=eval_str)
        except (NameError, TypeError, ValueError):
            continue
    return None


def _options(fn: Callable[..., Any], skip_first: bool = False) -> _Options:
    sig = _signature(fn)
    if sig is None:
        return _Options({}, {}, True)
    params = [p for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if skip_first and params and params[0].kind is not params[0].KEYWORD_ONLY:
        params = params[1:]
    params = [p for p in params if p.name not in _INTERNAL]
    return _Options({p.name: p.default for p in params},
                    {p.name: p.annotation for p in params if p.annotation is not _REQUIRED},
                    any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()))


@functools.cache
def _block_options(fn: Callable[..., nn.Module], slot: str) -> _Options:
    return _options(fn, skip_first=slot != "act")


@functools.cache
def _model_options(fn: Callable[..., nn.Module]) -> _Options:
    """The entry's own options and, when it forwards ``**kwargs`` to the class it returns (its return annotation),
    that class's options with a default (the ones without a default are fixed by the entry)."""
    own = _options(fn)
    sig = _signature(fn)
    cls = sig.return_annotation if sig is not None else None
    if isinstance(cls, str):
        cls = getattr(inspect.unwrap(fn), "__globals__", {}).get(cls)
    if not own.open or not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        return own
    inner = _options(cls)
    defaults = {k: v for k, v in inner.defaults.items() if v is not _REQUIRED}
    return _Options({**defaults, **own.defaults}, {**inner.types, **own.types}, inner.open)


def block_options(name: str) -> dict[str, Any]:
    """``{option: default}`` of a registered block, read from its constructor's signature (the channel count, the
    first argument, is not an option)."""
    spec = get_block_spec(name)
    return {**_block_options(spec.fn, spec.slot).defaults, **spec.defaults}


def model_options(name: str) -> dict[str, Any]:
    """``{option: default}`` of a registered model: its constructor's keyword arguments, following ``**kwargs``
    into the backbone class the constructor builds, with the variant's own defaults and without the options it fixes
    itself (:func:`model_fixed_options`). Slot defaults are the registered ones."""
    spec = get_model_spec(name)
    fixed, variant = _variant_options(spec.fn)
    defaults = {k: v for k, v in _model_options(spec.fn).defaults.items() if k not in fixed}
    return {**defaults, **{k: v for k, v in variant.items() if k in defaults}, **spec.slots}


def model_fixed_options(name: str) -> dict[str, Any]:
    """The backbone options a registered variant sets itself and a user cannot change (e.g. resnet20's
    ``stem="cifar"``, its widths and depths; ``create_model`` refuses them), with their values."""
    spec = get_model_spec(name)
    return {k: v for k, v in _variant_options(spec.fn)[0].items() if k not in spec.slots}


class _Captured(Exception):
    pass


def _capture(fn: Callable[..., nn.Module], cls: type, **kwargs: Any) -> dict[str, Any] | None:
    """The arguments ``fn(**kwargs)`` passes to ``cls.__init__``, captured there (the model is not built); ``None``
    when the call fails before reaching it."""
    init_sig = inspect.signature(cls.__init__)

    def capture(self: Any, *args: Any, **kw: Any) -> None:
        raise _Captured(init_sig.bind_partial(self, *args, **kw).arguments)

    saved = cls.__dict__.get("__init__")
    cls.__init__ = capture  # type: ignore[method-assign]
    try:
        fn(**kwargs)
        return None
    except _Captured as c:
        passed = dict(c.args[0])
    except Exception as e:  # e.g. "got multiple values for keyword argument": the entry fixes it
        return {"__error__": e}
    finally:
        if saved is not None:
            cls.__init__ = saved  # type: ignore[method-assign]
        else:
            del cls.__init__
    passed.pop(next(iter(init_sig.parameters)), None)  # self
    for p in init_sig.parameters.values():
        if p.kind is p.VAR_KEYWORD and isinstance(passed.get(p.name), dict):
            passed.update(passed.pop(p.name))
    return passed


@functools.cache
def _variant_options(fn: Callable[..., nn.Module]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(fixed, variant defaults)`` of an entry that forwards ``**kwargs`` to the backbone class named by its return
    annotation: the options it passes to that class when called with its defaults are *fixed* if passing them too
    fails, and the variant's *defaults* if a passed value replaces them."""
    sig = _signature(fn)
    cls = sig.return_annotation if sig is not None else None
    if isinstance(cls, str):
        cls = getattr(inspect.unwrap(fn), "__globals__", {}).get(cls)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        return {}, {}
    passed = _capture(fn, cls)
    if not passed or "__error__" in passed:
        return {}, {}
    own = _options(fn).defaults
    fixed, variant, probe = {}, {}, object()
    for k, v in passed.items():
        if k in own or k in _INTERNAL:
            continue
        again = _capture(fn, cls, **{k: probe})
        if again is not None and again.get(k) is probe:
            variant[k] = v
        else:
            fixed[k] = v
    return fixed, variant


def _type_name(ann: Any) -> str:
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(ann))
    if ann is type(None):
        return "None"
    ann = typing.get_origin(ann) or ann
    names = {bool: "True or False", int: "an integer", float: "a number", str: "a string", tuple: "a tuple",
             list: "a list", dict: "a dict", collections.abc.Sequence: "a list or tuple"}
    return names.get(ann, f"a {getattr(ann, '__name__', ann)}")


def _type_ok(value: Any, ann: Any) -> bool:
    """Whether ``value`` fits the annotation ``ann``; annotations that cannot be checked here accept anything."""
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(ann))
    if ann is type(None):
        return value is None
    ann = typing.get_origin(ann) or ann
    if ann is bool:
        return isinstance(value, bool)
    if ann is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if ann is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ann in (str, tuple, list, dict):
        return isinstance(value, ann)
    if ann is collections.abc.Sequence:
        return isinstance(value, (tuple, list))
    return True


# options whose meaning is the same in every block: checked centrally when a block is built
_MIN_ONE = ("stride", "groups", "dilation", "out_channels", "kernel_size")
_POSITIVE = ("eps", "reduction")


def _check_options(owner: str, opts: _Options, kw: dict[str, Any]) -> None:
    """Unknown options (one line listing the valid ones), wrong types and the common ranges -> ConfigError."""
    if not opts.open:
        unknown = [k for k in kw if k not in opts.defaults]
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(opts.defaults), n=1)
            raise ConfigError(
                f"{owner} has no option {unknown[0]!r}{f' (did you mean {close[0]!r}?)' if close else ''}; its "
                f"options are: {', '.join(opts.defaults) or 'none'}")
    for k, v in kw.items():
        ann = opts.types.get(k)
        if ann is not None and not _type_ok(v, ann):
            raise ConfigError(f"{owner}: option {k} must be {_type_name(ann)}, got {v!r}")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if k in _MIN_ONE:
                check_int(v, k, min_value=1, owner=owner)
            elif k in _POSITIVE:
                check_positive(v, k, owner=owner)


def _jsonable(v: Any) -> Any:
    if v is _REQUIRED:
        return "<required>"
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return _slot_repr(v)


# ---------------------------------------------------------------------------------------------------- construction
_SLOT_SYNTAX = "expected a block name or name(key=value, ...), e.g. se(reduction=8, gate=hsigmoid)"


def _option_value(node: ast.expr, value: str) -> Any:
    if isinstance(node, ast.Name):        # a bare word is a string: gate=hsigmoid
        return node.id
    if isinstance(node, ast.Call):
        raise ConfigError(f"cannot parse slot value {value!r}: an option value cannot be a call "
                          f"({ast.unparse(node)}); pass a name or a literal (number, string, tuple)")
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ConfigError(f"cannot parse slot value {value!r}: {ast.unparse(node)!r} is not a literal; use a number, "
                          f"a quoted string, a tuple, True/False or None") from None


def parse_slot_value(value: Any) -> tuple[Any, dict[str, Any]]:
    """Normalise a slot value to ``(name_or_callable, kwargs)``.

    Accepts ``"eca"``, ``"se(reduction=8, gate='hsigmoid')"``, ``("se", {"reduction": 8})``, ``None`` -> ``"none"``,
    or a callable. Keyword values are literals (numbers, strings, tuples, True/False/None); bare words are taken as
    strings. Chained calls (``se(reduction=8)(gate=hsigmoid)``), positional arguments, repeated options, calls as
    values and other expressions raise :class:`ConfigError`.
    """
    if value is None:
        return "none", {}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        if not (isinstance(value[0], str) or callable(value[0])):
            raise ConfigError(f"slot value {value!r}: the first element must be a block name or a callable")
        return value[0], dict(value[1])
    if callable(value) and not isinstance(value, str):
        return value, {}
    if not isinstance(value, str):
        raise ConfigError(f"slot value must be a block name, (name, kwargs) or a callable, got {value!r}")
    value = value.strip()
    if "(" not in value and ")" not in value:
        return value, {}
    name = value.split("(", 1)[0].strip()
    if not name or "(" not in value or not value.endswith(")"):
        raise ConfigError(f"cannot parse slot value {value!r}: {_SLOT_SYNTAX}")
    try:   # the name is split off first: block names need not be Python identifiers (``nonlocal``)
        call = ast.parse(f"f({value[value.index('(') + 1:-1]})", mode="eval").body
    except SyntaxError:
        raise ConfigError(f"cannot parse slot value {value!r}: {_SLOT_SYNTAX}") from None
    assert isinstance(call, ast.Call)
    if isinstance(call.func, ast.Call):
        raise ConfigError(f"cannot parse slot value {value!r}: chained calls are not accepted (the options of the "
                          f"first call would be lost); write all options in one call, e.g. "
                          f"se(reduction=8, gate=hsigmoid)")
    if call.args:
        raise ConfigError(f"cannot parse slot value {value!r}: positional arguments are not accepted; name each "
                          f"option, e.g. {name}(key=value)")
    kw: dict[str, Any] = {}
    for k in call.keywords:
        if k.arg is None:
            raise ConfigError(f"cannot parse slot value {value!r}: ** is not accepted; name each option")
        if k.arg in kw:
            raise ConfigError(f"cannot parse slot value {value!r}: option {k.arg!r} is given twice")
        kw[k.arg] = _option_value(k.value, value)
    return name, kw


def _call_open(owner: str, fn: Callable[..., nn.Module], opts: _Options, kw: dict[str, Any],
               *args: Any) -> nn.Module:
    """``fn(*args, **kw)``; for a constructor whose signature is open (**kwargs), an unknown option that reaches a
    class which refuses it becomes a ConfigError naming it."""
    try:
        return fn(*args, **kw)
    except TypeError as e:
        bad = [k for k in kw if k not in opts.defaults and f"'{k}'" in str(e)]
        if not opts.open or "unexpected keyword argument" not in str(e) or not bad:
            raise
        raise ConfigError(f"{owner} has no option {bad[0]!r}; its options are: "
                          f"{', '.join(opts.defaults) or 'none'}") from None


class _InputCheck:
    """Forward pre-hook of a block built on its own by :func:`create_block`: a spatial block's input must be an NCHW
    floating-point tensor with the channel count the block was built for, an activation's a floating-point tensor
    of any rank (:func:`blockzoo.checks.check_input`: a few comparisons, skipped under fx tracing / torch.compile /
    export). A block with a minimum input size checks it itself (the limit may depend on its options). Blocks built
    inside a model by :func:`build_slot` do not get the hook: the model checks its own input."""

    def __init__(self, owner: str, channels: int | None):
        self.owner, self.channels = owner, channels

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0] if args else None
        ndim = 4 if self.channels is not None else getattr(x, "ndim", 4)   # an activation takes any rank
        check_input(x, self.owner, ndim=ndim, channels=self.channels)


_NCHW_SLOTS = ("attn", "norm", "mixer", "conv", "head")


def _build_block(name: str, channels: int | None, kw: dict[str, Any]) -> nn.Module:
    """Check the options and the channel count of a registered block and build it (see :func:`create_block`)."""
    spec = get_block_spec(name)
    kw = {**spec.defaults, **kw}
    owner = f"block {name!r}"
    opts = _block_options(spec.fn, spec.slot)
    _check_options(owner, opts, kw)
    if spec.slot == "act":
        return _call_open(owner, spec.fn, opts, kw)
    if channels is None:
        raise ConfigError(f"create_block({name!r}) needs the channel count: create_block({name!r}, channels)")
    check_int(channels, "channels", min_value=1, owner=owner)
    if channels < spec.requires.min_channels:
        raise IncompatibleBlockError(
            f"block {name!r} needs at least {spec.requires.min_channels} channels, got {channels}")
    return _call_open(owner, spec.fn, opts, kw, channels)


def create_block(name: str, channels: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered block. ``channels`` is the input channel count (ignored by activations).

    The options are checked against the constructor's signature (:func:`block_options`): an unknown option, a value
    of the wrong type, or a common option out of range (``eps`` / ``reduction`` > 0, ``stride`` / ``groups`` /
    ``kernel_size`` / ``dilation`` / ``out_channels`` >= 1) raises :class:`ConfigError`; each block checks its own
    options further when it is built. A spatial block (attn, norm, mixer, conv, head) built here checks its input at
    forward (NCHW, its channel count, its minimum size) and raises :class:`InputShapeError` otherwise.
    """
    name, kw = parse_slot_value(name)
    if callable(name):
        return name(channels, **{**kw, **kwargs}) if channels is not None else name(**{**kw, **kwargs})
    block = _build_block(name, channels, {**kw, **kwargs})
    spec = get_block_spec(name)
    if spec.slot in _NCHW_SLOTS or spec.slot == "act":
        block.register_forward_pre_hook(_InputCheck(f"block {name!r}", channels if spec.slot != "act" else None))
    return block


def build_slot(slot: str, value: Any, channels: int | None = None, ctx: SlotContext | None = None,
               **kwargs: Any) -> nn.Module:
    """Build the block for ``slot`` inside a model, checking compatibility first.

    Raises :class:`IncompatibleBlockError` with the model, position and reason when the block does not fit.
    """
    ctx = ctx or SlotContext()
    name, kw = parse_slot_value(value)
    kw.update(kwargs)
    if callable(name):
        return name(channels, **kw) if channels is not None else name(**kw)
    if name in NONE_NAMES and slot in IDENTITY_SLOTS:
        return nn.Identity()
    where = f"{ctx.model}{'.' + ctx.position if ctx.position else ''}"
    try:
        spec = get_block_spec(name)
    except UnknownNameError as e:
        raise UnknownNameError("block", name, list_blocks(slot=slot),
                               f" Blocks for the {slot!r} slot: {', '.join(list_blocks(slot=slot))}.") from e
    if spec.slot != slot:
        raise IncompatibleBlockError(
            f"{name!r} is a {spec.slot!r} block and cannot go into the {slot!r} slot of {where}. "
            f"Blocks for the {slot!r} slot: {', '.join(list_blocks(slot=slot))}.")
    req = spec.requires
    if ctx.feat_size is not None:
        h, w = ctx.feat_size
        if min(h, w) < req.min_size:
            raise IncompatibleBlockError(
                f"{name!r} needs feature maps of at least {req.min_size}x{req.min_size}, but {where} sees {h}x{w}. "
                f"Use a larger input (img_size=) or a block without this limit.")
        if req.fixed_resolution:
            kw.setdefault("input_resolution", (h, w))
    elif req.fixed_resolution:
        raise IncompatibleBlockError(
            f"{name!r} needs the input resolution when it is built, and {where} does not know it; "
            f"pass img_size= to create_model.")
    if req.streams and not ctx.streams:
        raise IncompatibleBlockError(
            f"{name!r} carries several residual streams through the trunk, and {where} merges a single stream; use "
            f"it in a skeleton that carries streams (the ResNet, ViT and MetaFormer skeletons) or "
            f"another connection block.")
    if slot == "act":
        return _build_block(name, None, kw)
    out_ch = kw.get("out_channels")
    if req.keeps_channels and out_ch is not None and channels is not None and out_ch != channels:
        raise IncompatibleBlockError(
            f"{name!r} keeps the channel count, but {where} maps {channels} -> {out_ch} channels. "
            f"Use a block that can change channels there (e.g. conv3x3).")
    if not req.stride and kw.get("stride", 1) != 1 and slot == "conv":
        raise IncompatibleBlockError(f"{name!r} has no stride, but {where} needs stride {kw['stride']}.")
    try:
        return _build_block(name, channels, kw)
    except IncompatibleBlockError as e:
        raise IncompatibleBlockError(f"{where}: {e}") from None


def _check_img_size(value: Any, owner: str) -> None:
    pair = isinstance(value, (tuple, list)) and len(value) == 2
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (value if pair else (value,)))
    if not ok:
        raise ConfigError(f"{owner}: img_size must be a positive integer or a pair (H, W) of positive integers, "
                          f"got {value!r}")


def _check_rate(value: Any, name: str, owner: str) -> None:
    check_positive(value, name, allow_zero=True, owner=owner)
    if value >= 1:
        raise ConfigError(f"{owner}: {name} is a probability and must be in [0, 1), got {value!r}")


def create_model(name: str, num_classes: int | None = None, in_chans: int | None = None, *,
                 features_only: bool = False, out_indices: Any = None, pretrained: bool = False,
                 checkpoint_path: str | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    As in timm: ``features_only=True`` returns a :class:`~blockzoo.models.features.FeatureListNet` whose forward gives
    the list of feature maps at ``out_indices`` (default: all of ``model.feature_info``); ``checkpoint_path`` loads
    weights (a blockzoo weights/checkpoint file, or a state dict in timm's layout for the architectures blockzoo
    shares with timm) and ``pretrained=True`` the model's published weights (see :mod:`blockzoo.weights`).

    ``num_classes``/``in_chans`` default to the model's paper setting; any slot the model declares can be overridden
    by name (``attn="eca"``, ``act="elu"``, ``norm="gn"``); other keyword arguments go to the model constructor
    (``img_size=28``, ``drop_rate=0.1``, ``shortcut="B"`` ...) and are checked against its options
    (:func:`model_options`). Bad values raise :class:`ConfigError`: ``num_classes`` must be an int >= 0,
    ``in_chans`` an int >= 1, ``img_size`` a positive int or (H, W) pair, ``drop_rate`` / ``drop_path_rate`` in
    [0, 1).
    """
    spec = get_model_spec(name)
    owner = f"model {name!r}"
    for k in list(kwargs):
        if k in SLOTS and k not in spec.slots:
            having = [n for n in list_models() if k in _MODELS[n].slots]
            raise IncompatibleBlockError(
                f"model {name!r} has no {k!r} slot; its slots are: {', '.join(spec.slots) or 'none'}. "
                f"Models with a {k!r} slot: {', '.join(having[:20]) or 'none yet'}{' ...' if len(having) > 20 else ''}")
        if k not in spec.slots:
            continue
        from blockzoo.models.base import per_stage_values  # a list (or "[...]") gives one value per stage
        entries = per_stage_values(kwargs[k])
        for entry in [kwargs[k]] if entries is None else entries:
            bname, _ = parse_slot_value(entry)
            if isinstance(bname, str) and bname not in NONE_NAMES:
                if not is_block(bname):
                    raise UnknownNameError("block", bname, list_blocks(slot=k),
                                           f" Blocks for the {k!r} slot of {name!r}: {', '.join(list_blocks(slot=k))}.")
                bspec = get_block_spec(bname)
                if bspec.slot != k:
                    raise IncompatibleBlockError(
                        f"{bname!r} is a {bspec.slot!r} block and cannot go into the {k!r} slot of {name!r}. "
                        f"Blocks for the {k!r} slot: {', '.join(list_blocks(slot=k))}.")
    if num_classes is not None:
        check_int(num_classes, "num_classes", min_value=0, owner=owner)
    if in_chans is not None:
        check_int(in_chans, "in_chans", min_value=1, owner=owner)
    opts = _model_options(spec.fn)
    if kwargs.get("img_size") is not None:
        _check_img_size(kwargs["img_size"], owner)
        if "img_size" not in opts.defaults and not opts.open:
            kwargs.pop("img_size")  # models without a resolution-dependent part ignore it
    for rate in ("drop_rate", "drop_path_rate"):
        if rate in kwargs:
            _check_rate(kwargs[rate], rate, owner)
    _check_options(owner, opts, {k: v for k, v in kwargs.items() if k not in spec.slots})
    kw = {**spec.slots, **kwargs}
    kw["num_classes"] = spec.num_classes if num_classes is None else num_classes
    kw["in_chans"] = spec.input_size[0] if in_chans is None else in_chans
    try:
        model = _call_open(owner, spec.fn, opts, kw)
    except TypeError as e:  # an option the variant fixes itself (e.g. resnet20's stem_width)
        fixed = [k for k in kwargs if f"multiple values for keyword argument '{k}'" in str(e)]
        if not fixed:
            raise
        raise ConfigError(f"{owner} fixes {fixed[0]!r} itself; it cannot be changed for this variant "
                          f"(see `blockzoo info {name}` for its options)") from None
    if hasattr(model, "__dict__"):
        model.model_name = name  # type: ignore[attr-defined]
    if pretrained or checkpoint_path is not None:
        from blockzoo.weights import load_pretrained

        load_pretrained(model, name, pretrained=pretrained, checkpoint_path=checkpoint_path, options=kwargs)
    if out_indices is not None and not features_only:
        raise ConfigError(f"{owner}: out_indices= only applies with features_only=True")
    if features_only:
        from blockzoo.models.features import FeatureListNet

        model = FeatureListNet(model, out_indices)
    return model
