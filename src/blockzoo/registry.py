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

import re

import ast
import difflib
import fnmatch
import importlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import torch.nn as nn

from blockzoo.errors import (  # noqa: F401  (re-exported: registry.BlockzooError etc. stay valid)
    BlockzooError, ConfigError, IncompatibleBlockError, InputShapeError, UnknownNameError,
)

__all__ = [
    "Paper", "Claim", "Requires", "BlockSpec", "ModelSpec", "SlotContext", "SLOTS",
    "BlockzooError", "ConfigError", "UnknownNameError", "IncompatibleBlockError", "InputShapeError",
    "register_block", "register_model", "create_block", "create_model", "build_slot", "parse_slot_value",
    "list_blocks", "list_models", "list_slots", "get_block_spec", "get_model_spec", "get_info", "is_block", "is_model",
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
        return f"{tag}{self.authors + ', ' if self.authors else ''}{self.title} ({self.venue} {self.year}) {ref}".strip()


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


def list_blocks(slot: str | None = None, pattern: str | None = None) -> list[str]:
    """Registered block names, sorted; filter by slot and/or fnmatch ``pattern`` (e.g. ``"*se*"``)."""
    _ensure_loaded()
    if slot is not None and slot not in SLOTS:
        raise UnknownNameError("slot", slot, SLOTS, f" Slots are: {', '.join(SLOTS)}.")
    names = [n for n, s in _BLOCKS.items() if slot is None or s.slot == slot]
    if pattern:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return sorted(names)


def list_models(pattern: str | None = None, family: str | None = None) -> list[str]:
    """Registered model names, sorted; filter by fnmatch ``pattern`` and/or family."""
    _ensure_loaded()
    names = [n for n, s in _MODELS.items() if family is None or s.family == family]
    if pattern:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return sorted(names)


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
            "defaults": s.defaults, "notes": s.notes, "usage": s.usage or _default_usage(s),
        }
    if name in _MODELS and kind != "block":
        m = _MODELS[name]
        return {
            "kind": "model", "name": m.name, "family": m.family, "summary": m.summary, "paper": _paper_dict(m.paper),
            "slots": {k: _slot_repr(v) for k, v in m.slots.items()}, "input_size": list(m.input_size),
            "num_classes": m.num_classes, "claims": [asdict(c) for c in m.claims], "paper_params": m.paper_params,
            "paper_macs": m.paper_macs, "reference": m.reference, "notes": m.notes,
        }
    raise UnknownNameError("block or model", name, list(_BLOCKS) + list(_MODELS), " Run `blockzoo list` to see all.")


def _slot_repr(v: Any) -> Any:
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if isinstance(v, tuple):
        return f"{v[0]}({', '.join(f'{k}={w!r}' for k, w in v[1].items())})"
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


# ---------------------------------------------------------------------------------------------------- construction
def parse_slot_value(value: Any) -> tuple[Any, dict[str, Any]]:
    """Normalise a slot value to ``(name_or_callable, kwargs)``.

    Accepts ``"eca"``, ``"se(reduction=8, gate='hsigmoid')"``, ``("se", {"reduction": 8})``, ``None`` -> ``"none"``,
    or a callable. Keyword values are parsed with ``ast.literal_eval`` (numbers, strings, tuples, True/False/None);
    bare words are taken as strings.
    """
    if value is None:
        return "none", {}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        return value[0], dict(value[1])
    if callable(value) and not isinstance(value, str):
        return value, {}
    if not isinstance(value, str):
        raise BlockzooError(f"slot value must be a block name, (name, kwargs) or a callable, got {value!r}")
    value = value.strip()
    if "(" not in value:
        return value, {}
    if not value.endswith(")"):
        raise BlockzooError(f"cannot parse slot value {value!r}: expected name(key=value, ...)")
    name, args = value[: value.index("(")].strip(), value[value.index("(") + 1: -1]
    try:
        call = ast.parse(f"f({args})", mode="eval").body
        assert isinstance(call, ast.Call) and not call.args
        kw = {}
        for k in call.keywords:
            if isinstance(k.value, ast.Name):
                kw[k.arg] = k.value.id
            else:
                kw[k.arg] = ast.literal_eval(k.value)
    except (SyntaxError, ValueError, AssertionError) as e:
        raise BlockzooError(f"cannot parse slot value {value!r}: expected name(key=value, ...) ({e})") from None
    return name, kw


def create_block(name: str, channels: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered block. ``channels`` is the input channel count (ignored by activations)."""
    name, kw = parse_slot_value(name)
    if callable(name):
        return name(channels, **{**kw, **kwargs}) if channels is not None else name(**{**kw, **kwargs})
    spec = get_block_spec(name)
    kw = {**spec.defaults, **kw, **kwargs}
    if spec.slot == "act":
        return spec.fn(**kw)
    if channels is None:
        raise BlockzooError(f"create_block({name!r}) needs the channel count: create_block({name!r}, channels)")
    if channels < spec.requires.min_channels:
        raise IncompatibleBlockError(
            f"block {name!r} needs at least {spec.requires.min_channels} channels, got {channels}")
    return spec.fn(channels, **kw)


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
    if slot == "act":
        return create_block(name, **kw)
    out_ch = kw.get("out_channels")
    if req.keeps_channels and out_ch is not None and channels is not None and out_ch != channels:
        raise IncompatibleBlockError(
            f"{name!r} keeps the channel count, but {where} maps {channels} -> {out_ch} channels. "
            f"Use a block that can change channels there (e.g. conv3x3).")
    if not req.stride and kw.get("stride", 1) != 1 and slot == "conv":
        raise IncompatibleBlockError(f"{name!r} has no stride, but {where} needs stride {kw['stride']}.")
    try:
        return create_block(name, channels, **kw)
    except IncompatibleBlockError as e:
        raise IncompatibleBlockError(f"{where}: {e}") from None


def _accepts(fn: Callable[..., Any], arg: str) -> bool:
    import inspect
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == arg or p.kind is p.VAR_KEYWORD for p in params)


def create_model(name: str, num_classes: int | None = None, in_chans: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    ``num_classes``/``in_chans`` default to the model's paper setting; any slot the model declares can be overridden
    by name (``attn="eca"``, ``act="elu"``, ``norm="gn"``); other keyword arguments go to the model constructor
    (``img_size=28``, ``drop_rate=0.1``, ``shortcut="B"`` ...).
    """
    spec = get_model_spec(name)
    for k in list(kwargs):
        if k in SLOTS and k not in spec.slots:
            having = [n for n in list_models() if k in _MODELS[n].slots]
            raise IncompatibleBlockError(
                f"model {name!r} has no {k!r} slot; its slots are: {', '.join(spec.slots) or 'none'}. "
                f"Models with a {k!r} slot: {', '.join(having[:20]) or 'none yet'}{' ...' if len(having) > 20 else ''}")
        if k in spec.slots:
            bname, _ = parse_slot_value(kwargs[k])
            if isinstance(bname, str) and bname not in NONE_NAMES:
                if not is_block(bname):
                    raise UnknownNameError("block", bname, list_blocks(slot=k),
                                           f" Blocks for the {k!r} slot of {name!r}: {', '.join(list_blocks(slot=k))}.")
                bspec = get_block_spec(bname)
                if bspec.slot != k:
                    raise IncompatibleBlockError(
                        f"{bname!r} is a {bspec.slot!r} block and cannot go into the {k!r} slot of {name!r}. "
                        f"Blocks for the {k!r} slot: {', '.join(list_blocks(slot=k))}.")
    if "img_size" in kwargs and not _accepts(spec.fn, "img_size"):
        kwargs.pop("img_size")  # models without a resolution-dependent part ignore it
    kw = {**{k: v for k, v in spec.slots.items()}, **kwargs}
    kw["num_classes"] = spec.num_classes if num_classes is None else num_classes
    kw["in_chans"] = spec.input_size[0] if in_chans is None else in_chans
    try:
        model = spec.fn(**kw)
    except TypeError as e:  # a misspelt constructor option: say which, instead of a traceback from deep inside
        m = re.search(r"unexpected keyword argument '([^']+)'", str(e))
        if m is None or m.group(1) not in kwargs:  # e.g. a bad block option inside a slot value: not the model's
            raise
        raise BlockzooError(
            f"model {name!r} has no option {m.group(1)!r}. Its slots are: {', '.join(spec.slots) or 'none'}; "
            f"see `blockzoo info {name}` for its constructor options.") from e
    if hasattr(model, "__dict__"):
        model.model_name = name  # type: ignore[attr-defined]
    return model
