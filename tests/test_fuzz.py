"""Fuzz test: random create_model / create_block configurations and inputs, valid and invalid.

Every outcome must be a success (the module was built and its forward returned a tensor) or a blockzoo error
(:class:`blockzoo.errors.BlockzooError` and its subclasses: ConfigError, UnknownNameError, IncompatibleBlockError,
InputShapeError, ...). Any other exception fails the test and prints the configuration that produced it, so it can be
replayed with ``run_case(config)``. A few hundred cases run in the default suite; thousands under ``slow``.

Modules are built on the meta device first; only those under ``MAX_PARAMS`` parameters are built for real and run
(a huge option value is allowed to build, it just is not run). Models use the smallest registered variant of each
family.
"""
from __future__ import annotations

import functools
import random
from typing import Any

import pytest
import torch

from blockzoo import create_block, create_model
from blockzoo.errors import BlockzooError
from blockzoo.registry import (
    SLOTS,
    block_options,
    get_block_spec,
    get_model_spec,
    list_blocks,
    list_models,
    model_options,
)
from helpers import family_representatives, params_meta

MAX_PARAMS = 3e6          # build for real and run forward only below this many parameters
MAX_MODEL_PARAMS = 5e6    # the smallest variant of a family must be below this to be fuzzed
DTYPES = (torch.float32, torch.float32, torch.float32, torch.float64, torch.bfloat16, torch.int64)
BAD_VALUES = (0, -1, None, True, 2.5, "x", 10 ** 4, (1, 2), 1, 3)
CHANNELS = (0, -1, 1, 3, 7, 2.0, True, None) + (8, 16, 32, 64) * 3


@functools.cache
def _models() -> tuple[str, ...]:
    """The smallest variant of every family (if small enough to run in a fuzz case)."""
    return tuple(sorted(n for n in family_representatives().values() if params_meta(n) < MAX_MODEL_PARAMS))


def _typo(rng: random.Random, name: str) -> str:
    i = rng.randrange(len(name) + 1)
    return rng.choice((name[:i] + name[i + 1:], name[:i] + rng.choice("xz_1") + name[i:], name.upper(), name + " "))


def _name(rng: random.Random, names: list[str] | tuple[str, ...]) -> Any:
    r = rng.random()
    if r < 0.88:
        return rng.choice(names)
    if r < 0.95:
        return _typo(rng, rng.choice(names))
    return rng.choice(("", None, 3, "resnet20[/x]", "se(", "se)", "(", "se(reduction=8)(gate=hsigmoid)"))


def _option_values(rng: random.Random, options: dict[str, Any]) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    for _ in range(rng.choice((0, 0, 0, 1, 1, 2))):
        if options and rng.random() < 0.85:
            key = rng.choice(sorted(options))
            default = options[key]
            kw[key] = default if rng.random() < 0.4 and isinstance(default, (int, float, str, type(None))) \
                else rng.choice(BAD_VALUES)
        else:
            kw[rng.choice(("foo", "reduction", "kernel_size", "eps", "k", "size"))] = rng.choice(BAD_VALUES)
    return kw


def _slot_value(rng: random.Random, slot: str) -> Any:
    r = rng.random()
    names = list_blocks(slot=slot)
    if r < 0.5:
        return rng.choice(names)
    if r < 0.75:
        name = rng.choice(names)
        kw = _option_values(rng, block_options(name))
        return f"{name}({', '.join(f'{k}={v!r}' for k, v in kw.items())})"
    if r < 0.85:
        return rng.choice(list_blocks())                     # a block of another slot, often
    return rng.choice(("se(reduction=8)(gate=hsigmoid)", "se(8)", "se(reduction=8, reduction=4)", "eca(k=f(3))",
                       "eca(k_size=3+1)", "none", "???", "se(reduction=", ("se", {"reduction": 0}), ("se", "x")))


def _input(rng: random.Random, channels: Any) -> dict[str, Any]:
    rank = rng.choice((2, 3, 5) + (4,) * 9)
    c = channels if isinstance(channels, int) and not isinstance(channels, bool) and 1 <= channels <= 64 \
        and rng.random() < 0.9 else rng.choice((1, 3, 8, 16))
    h, w = rng.randint(1, 80), rng.randint(1, 80)
    if rank == 4 and rng.random() < 0.7:
        h, w = rng.randint(8, 40), rng.randint(8, 40)
    shape = {2: (2, c), 3: (2, c, h), 4: (rng.choice((1, 2)), c, h, w), 5: (1, c, 2, h, w)}[rank]
    return {"shape": shape, "dtype": rng.choice(DTYPES)}


def make_case(seed: int) -> dict[str, Any]:
    """A random configuration; reproducible from ``seed``."""
    rng = random.Random(seed)
    if rng.random() < 0.55:
        name = _name(rng, list_blocks())
        spec_opts = block_options(name) if isinstance(name, str) and name in list_blocks() else {}
        channels = rng.choice(CHANNELS)
        kw = _option_values(rng, spec_opts)
        is_conv = isinstance(name, str) and name in list_blocks() and get_block_spec(name).slot == "conv"
        if is_conv and rng.random() < .5:
            kw.setdefault("out_channels", rng.choice((channels, 16, 0)))
            kw.setdefault("stride", rng.choice((1, 2, 2, 0)))
        return {"kind": "block", "name": name, "channels": channels, "kwargs": kw, "input": _input(rng, channels)}
    name = _name(rng, _models())
    kw: dict[str, Any] = {}
    if rng.random() < 0.5:
        kw["num_classes"] = rng.choice((0, 1, 10, 10, 10, -1, -3, 2.5, True, None))
    in_chans = rng.choice((1, 3, 3, 3, 3, 0, -1, 2.0, True, None))
    if in_chans is not None:
        kw["in_chans"] = in_chans
    if rng.random() < 0.6:
        kw["img_size"] = rng.choice((None, 32, 32, 32, 16, 8, 64, 0, -1, (32, 24), (32,), "x", 2.5))
    known = isinstance(name, str) and name in list_models()
    if known and rng.random() < 0.6:
        slot = rng.choice(sorted(get_model_spec(name).slots) + ["mixer", "attn"])
        kw[slot] = _slot_value(rng, slot if slot in SLOTS else "attn")
    if known and rng.random() < 0.4:
        opts = {k: v for k, v in model_options(name).items() if k not in SLOTS}
        kw.update(_option_values(rng, opts))
    size = kw.get("img_size") if isinstance(kw.get("img_size"), int) and kw["img_size"] > 0 else 32
    inp = _input(rng, in_chans if in_chans is not None else 3)
    if len(inp["shape"]) == 4 and rng.random() < 0.8:
        inp["shape"] = inp["shape"][:2] + (size, size)
    return {"kind": "model", "name": name, "kwargs": kw, "input": inp}


def _build(case: dict[str, Any]) -> torch.nn.Module:
    kw = dict(case["kwargs"])
    if case["kind"] == "model":
        return create_model(case["name"], **kw)
    if isinstance(case["name"], str) and case["name"] in list_blocks() and get_block_spec(case["name"]).slot == "act":
        return create_block(case["name"], **kw)
    return create_block(case["name"], case["channels"], **kw)


def run_case(case: dict[str, Any]) -> str:
    """Run one configuration: ``"ok"``, ``"skipped"`` (too big to run) or the blockzoo error's class name. Any other
    exception propagates."""
    try:
        with torch.device("meta"):
            meta = _build(case)
        if sum(p.numel() for p in meta.parameters()) > MAX_PARAMS:
            return "skipped"
        m = _build(case)
        shape, dtype = case["input"]["shape"], case["input"]["dtype"]
        if dtype.is_floating_point:
            m = m.to(dtype)
            x = torch.randn(shape, dtype=dtype)
        else:
            x = torch.randint(0, 5, shape, dtype=dtype)
        m.eval()
        with torch.no_grad():
            args = (x, x) if case["kind"] == "block" and get_block_spec(case["name"]).slot == "connection" else (x,)
            y = m(*args)
        assert isinstance(y, torch.Tensor), f"forward returned {type(y).__name__}"
        return "ok"
    except BlockzooError as e:
        assert str(e).strip(), "a blockzoo error without a message"
        return type(e).__name__


def _run(seeds: range) -> dict[str, int]:
    outcomes: dict[str, int] = {}
    failures = []
    for seed in seeds:
        case = make_case(seed)
        try:
            out = run_case(case)
        except Exception as e:  # noqa: BLE001 - the point of the test: report every unclear crash
            failures.append(f"seed {seed}: {case}\n    -> {type(e).__name__}: {str(e).splitlines()[0][:300]}")
            out = "crash"
        outcomes[out] = outcomes.get(out, 0) + 1
    assert not failures, (f"{len(failures)} of {len(seeds)} cases crashed outside blockzoo's errors "
                          f"(outcomes {outcomes}):\n" + "\n".join(failures[:40]))
    return outcomes


def test_fuzz_default():
    outcomes = _run(range(300))
    assert outcomes.get("ok", 0) >= 30, f"too few successful cases to mean anything: {outcomes}"


@pytest.mark.slow
def test_fuzz_slow():
    _run(range(300, 4300))


def test_fuzz_case_replays():
    """The generator is deterministic, so a failure report can be replayed."""
    assert make_case(7) == make_case(7)
