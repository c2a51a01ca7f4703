"""The ``blockzoo`` command line: list | info | profile | train | compare | plot | eval | export | prune | quantize |
data | analyze | docs | claims.

Every command has ``--help``; ``list``, ``info`` and ``profile`` take ``--json``; ``python -m blockzoo`` is the same
command. A failure prints one line on stderr that names the problem and the fix (a traceback only with
``BLOCKZOO_DEBUG=1``), and the exit status says what kind of failure it was:

* ``0``: success; also ``list`` with a pattern that matches nothing (it says so on stderr, with close names).
* ``2``: a user error: a bad flag or value (argparse usage errors included), an unknown name, an incompatible block,
  missing or corrupt data or checkpoints (every :class:`~blockzoo.errors.BlockzooError`), an unwritable ``--out``, a
  device that is not there, a file that cannot be read or written, out of memory (the line names the input and
  batch size to lower).
* ``1``: an internal error (``internal error: <type>: <message>``: anything else; please report it), a training
  loss that became NaN/inf (``NonFiniteLossError``: a result of training, not a bad input), an ``export`` whose file
  does not match the eager model, and ``docs --check`` finding the catalogue out of date.
* ``130``: interrupted (Ctrl-C); ``train`` and ``compare`` print the exact command that continues.

User strings (names, patterns, paths) are escaped before ``rich`` renders them.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import re
import shlex
import sys
import typing
from pathlib import Path
from typing import Any

from blockzoo.errors import BlockzooError, ConfigError

EPILOG = """examples:
  blockzoo list blocks --slot attn
  blockzoo info eca
  blockzoo profile resnet50 --input 3,224,224
  blockzoo profile resnet20 --input 1,28,28 --set attn=eca
  blockzoo profile eca --channels 256 --input 256,14,14
  blockzoo train resnet20 --data fashion-mnist --epochs 10 --set attn=eca
  blockzoo compare resnet20 --vary attn=none,se,eca --data fashion-mnist --epochs 3 --seeds 3
  blockzoo plot runs/resnet20-fashion-mnist-seed0 --out curves.png
  blockzoo eval runs/resnet20-fashion-mnist-seed0/best.safetensors --data fashion-mnist
  blockzoo export runs/resnet20-fashion-mnist-seed0/best.safetensors --format onnx
  blockzoo data fetch fashion-mnist

exit status: 0 ok, 2 user error (bad input: one `error:` line naming the fix), 1 internal error or NaN loss,
130 interrupted. BLOCKZOO_DEBUG=1 shows tracebacks.
"""


# ------------------------------------------------------------------------------------------------ parsing values
class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as a :class:`ConfigError` (one ``error:`` line, exit status 2)."""

    def error(self, message: str) -> typing.NoReturn:
        raise ConfigError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def int_at_least(low: int) -> Any:
    """argparse ``type=``: an integer >= ``low``."""
    def parse(s: str) -> int:
        try:
            if int(s) >= low:
                return int(s)
        except ValueError:
            pass
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {s!r}")
    return parse


def _input_size(s: str) -> tuple[int, int, int]:
    """argparse ``type=`` of ``--input``: ``C,H,W`` (or ``CxHxW``) of positive integers."""
    try:
        dims = tuple(int(x) for x in s.replace("x", ",").split(","))
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W: three integers >= 1 (e.g. 3,224,224), got {s!r}")
    return dims  # type: ignore[return-value]


def _seeds(s: str) -> list[int]:
    """argparse ``type=`` of ``--seeds``: ``N`` (seeds 0..N-1), a list ``0,3,7`` or a range ``LO:HI`` (HI excluded)."""
    try:
        if ":" in s:
            lo, hi = s.split(":")
            seeds = list(range(int(lo), int(hi)))
        elif "," in s or s.strip().startswith("["):
            seeds = [int(x) for x in s.strip().strip("[]").split(",") if x.strip()]
        else:
            seeds = list(range(int(s)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N (seeds 0..N-1), a list 0,1,2 or a range LO:HI, "
                                         f"got {s!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"{s!r} gives no seed; use N >= 1, a list 0,1,2 or a range LO:HI with "
                                         f"LO < HI")
    if min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct integers >= 0, got {s!r}")
    return seeds


def _parse_sets(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k.strip() or not v.strip():
            raise ConfigError(f"--set expects SLOT=BLOCK (e.g. --set attn=eca), got {item!r}")
        out[k.strip()] = v.strip()
    return out


def _parse_model_args(items: list[str] | None) -> dict[str, Any]:
    """``--model-arg KEY=VALUE``: VALUE as a Python literal (``2``, ``(1, 2)``, ``True``, ``'B'``), else a string."""
    import ast
    out: dict[str, Any] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k.strip().isidentifier():
            raise ConfigError(f"--model-arg expects KEY=VALUE (e.g. --model-arg drop_rate=0.1), got {item!r}")
        try:
            out[k.strip()] = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError):
            out[k.strip()] = v.strip()
    return out


def _refuse_reserved(model_args: dict[str, Any], reserved: dict[str, str]) -> None:
    """``--model-arg in_chans=3`` where the command sets ``in_chans`` itself (from ``--input``, the dataset ...)."""
    for k, source in reserved.items():
        if k in model_args:
            raise ConfigError(f"--model-arg {k} cannot be given: {k} is set by {source}")


# ------------------------------------------------------------------------------------------- checks before work
def _check_device(device: str, *, auto: bool = True) -> None:
    """A device flag names a device this machine has (``auto`` where allowed)."""
    import torch
    if auto and device == "auto":
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"--device {device!r} is not a device; use cpu, cuda, cuda:N"
                          + (" or auto" if auto else "")) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ConfigError(f"--device {device}: CUDA is not available ({why}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                              f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device}: MPS is not available on this machine; use --device cpu")


def _check_writable(path: str, flag: str = "--out") -> None:
    """``path`` (a folder, created later) can be made and written: probe the nearest existing folder above it
    with a temporary file, so that an unwritable ``--out`` fails before any training rather than after it."""
    import tempfile
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{flag} {path}: {probe} is a file, not a folder; choose another {flag}")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise ConfigError(f"{flag} {path} is not writable: no file can be created in {probe} ({e.strerror}); "
                          f"choose a folder you can write to") from None


def _precheck_model(name: str, data: str, slots: dict[str, Any], model_args: dict[str, Any],
                    img_size: int | None = None) -> None:
    """Build the model once on the meta device (no memory, no init cost) as training will build it, so that a bad
    ``--set`` / ``--model-arg`` (unknown option, bad value, incompatible block) fails before the data is loaded.
    Anything but a blockzoo error is left to the real build (a constructor may do what the meta device cannot)."""
    import torch

    from blockzoo.data import dataset_shape
    from blockzoo.registry import create_model
    _refuse_reserved(model_args, {k: f"the dataset ({data})" for k in ("in_chans", "num_classes", "img_size")})
    num_classes, in_chans, size = dataset_shape(data, img_size)  # an image folder is decoded (and cached) here
    try:
        with torch.device("meta"):
            create_model(name, num_classes=num_classes, in_chans=in_chans, img_size=size, **{**model_args, **slots})
    except BlockzooError:
        raise
    except Exception:  # not a verdict on the options: the real build reports it
        pass


# ------------------------------------------------------------------------------------------------ rich output
def _console():
    from rich.console import Console
    return Console(stderr=False, highlight=False)


def _esc(value: Any) -> str:
    """``value`` as text that rich prints literally (``resnet20[/x]`` is not markup)."""
    from rich.markup import escape
    return escape(str(value))


def _table(title: str, columns: list[str], rows: list[list[Any]], *, key: str | None = None):
    from rich.table import Table
    t = Table(title=_esc(title))
    for c in columns:
        t.add_column(c, style="cyan" if c == key else None, overflow="fold")
    for r in rows:
        t.add_row(*(_esc(v) for v in r))
    return t


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _paper_title(paper: Any) -> str | None:
    """``Title (2020) [S003]`` for a :class:`~blockzoo.registry.Paper` (or its dict form); the inventory id, where
    there is one, follows the title."""
    if paper is None:
        return None
    p = paper if isinstance(paper, dict) else dataclasses.asdict(paper)
    return f"{p['title']} ({p['year']})" + (f" [{p['id']}]" if p.get("id") else "")


def _cite(p: dict[str, Any]) -> str:
    ref = f"arXiv:{p['arxiv']}" if p.get("arxiv") else (p.get("url") or "")
    who = f"{p['authors']}, " if p.get("authors") else ""
    tag = f" [{p['id']}]" if p.get("id") else ""
    return f"{who}{p['title']} ({' '.join(str(x) for x in (p.get('venue'), p['year']) if x)}) {ref}".strip() + tag


# ----------------------------------------------------------------------------------------------------- commands
def cmd_list(a: argparse.Namespace) -> int:
    from blockzoo import registry as R

    what, pattern = a.what, a.pattern
    if what not in ("blocks", "models", "slots", "all"):   # `blockzoo list *eca*` -> pattern
        what, pattern = "all", what
    out: dict[str, Any] = {}
    if what in ("slots",):
        out["slots"] = R.list_slots()
    if what in ("blocks", "all"):
        specs = [R.get_block_spec(n) for n in R.list_blocks(slot=a.slot, pattern=pattern)]
        out["blocks"] = [{"name": s.name, "slot": s.slot, "summary": s.summary, "paper": _paper_title(s.paper)}
                         for s in specs]
    if what in ("models", "all") and a.slot is None:
        specs = [R.get_model_spec(n) for n in R.list_models(pattern)]
        out["models"] = [{"name": s.name, "family": s.family, "summary": s.summary, "paper": _paper_title(s.paper),
                          "slots": list(s.slots)} for s in specs]
    if pattern and not any(out.get(k) for k in ("blocks", "models")):
        print(_no_match(pattern, what, a.slot), file=sys.stderr)
    if a.json:
        _print_json(out)
        return 0
    con = _console()
    if "slots" in out:
        con.print(_table("slots", ["slot", "contract"], [list(kv) for kv in out["slots"].items()], key="slot"))
    if out.get("blocks"):
        con.print(_table(f"blocks ({len(out['blocks'])})", ["name", "slot", "paper", "summary"],
                         [[b["name"], b["slot"], b["paper"] or "", b["summary"]] for b in out["blocks"]], key="name"))
    if out.get("models"):
        con.print(_table(f"models ({len(out['models'])})", ["name", "family", "slots", "paper", "summary"],
                         [[m["name"], m["family"], ", ".join(m["slots"]), m["paper"] or "", m["summary"]]
                          for m in out["models"]], key="name"))
    return 0


def _no_match(pattern: str, what: str, slot: str | None) -> str:
    """The line for a ``list`` pattern that matches nothing, with the closest names (difflib)."""
    from blockzoo import registry as R
    kinds = {"blocks": "blocks", "models": "models"}.get(what, "blocks or models")
    names = (R.list_blocks(slot=slot) if what in ("blocks", "all") else []) + \
        (R.list_models() if what in ("models", "all") and slot is None else [])
    close = difflib.get_close_matches(re.sub(r"[*?\[\]]", "", pattern), names, n=5, cutoff=0.5)
    hint = f"close names: {', '.join(close)}" if close else "no name is close"
    wild = "" if any(c in pattern for c in "*?[") else f"; for names containing it use '*{pattern}*'"
    return (f"no {kinds}{f' of slot {slot!r}' if slot else ''} match {pattern!r} ({hint}{wild}); "
            f"`blockzoo list` shows all")


def cmd_info(a: argparse.Namespace) -> int:
    from blockzoo.registry import get_info, is_block, is_model

    kinds = ["block", "model"] if is_block(a.name) and is_model(a.name) else [None]
    infos = [get_info(a.name, k) for k in kinds]
    from blockzoo.report.verdicts import load_verdicts
    for info in infos:
        info["lab"] = [{k: r[k] for k in ("name", "verdict", "claim", "summary", "budget")}
                       for r in load_verdicts(block=info["name"])]
    if a.json:
        _print_json(infos[0] if len(infos) == 1 else infos)
        return 0
    for info in infos:
        _print_info(info)
    return 0


def _print_info(info: dict[str, Any]) -> None:
    lines = [f"{info['name']} ({info['kind']}"
             + (f", slot {info['slot']}" if info["kind"] == "block" else f", family {info['family']}") + ")",
             f"  {info['summary']}"]
    if info.get("paper"):
        lines.append(f"  paper: {_cite(info['paper'])}")
    if info["kind"] == "model":
        lines.append(f"  slots: {', '.join(f'{k}={v}' for k, v in info['slots'].items())}")
        lines.append(f"  paper input: {'x'.join(map(str, info['input_size']))}, classes {info['num_classes']}"
                     + (f", paper params {info['paper_params']:,}" if info.get("paper_params") else "")
                     + (f", paper MACs {info['paper_macs'] / 1e9:.2f} G" if info.get("paper_macs") else ""))
    else:
        req = info["requires"]
        lines.append(f"  requires: layout {req['layout']}, min size {req['min_size']}, keeps channels "
                     f"{req['keeps_channels']}" + (", fixed resolution" if req["fixed_resolution"] else ""))
    if info.get("options"):
        lines.append(f"  options: {', '.join(f'{k}={v!r}' for k, v in info['options'].items())}")
    if info.get("fixed_options"):
        lines.append(f"  fixed by this variant: {', '.join(f'{k}={v!r}' for k, v in info['fixed_options'].items())}")
    if info.get("notes"):
        lines.append(f"  notes: {info['notes']}")
    for c in info.get("claims", []):
        lines.append(f"  claim [{c['status']}]: {c['text']}" + (f"  ({c['check']})" if c.get("check") else ""))
    for r in info.get("lab", []):
        lines.append(f"  claims lab [{r['verdict']}]: {r['claim']} -- {r['summary']} ({r['budget']})")
    if info.get("usage"):
        lines.append("  usage:\n    " + info["usage"].replace("\n", "\n    "))
    con = _console()
    con.print(f"[bold cyan]{_esc(lines[0])}[/]")
    for line in lines[1:]:
        con.print(_esc(line))


def cmd_profile(a: argparse.Namespace) -> int:
    from blockzoo.profile import format_report, profile_model
    from blockzoo.registry import create_block, create_model, get_model_spec, is_block, is_model, parse_slot_value

    sets, model_args = _parse_sets(a.set), _parse_model_args(a.model_arg)
    _check_device(a.device, auto=False)
    base = parse_slot_value(a.name)[0]   # a block may carry its options: 'se(reduction=8)'
    if is_block(base) and not is_model(base):
        if sets or model_args:
            raise ConfigError("--set and --model-arg apply to models; pass block options as NAME(key=value), e.g. "
                              "blockzoo profile 'se(reduction=8)'")
        if a.input and a.channels and a.channels != a.input[0]:
            raise ConfigError(f"--channels {a.channels} contradicts --input {','.join(map(str, a.input))} "
                              f"(C = {a.input[0]}); give one of them")
        size = a.input or (a.channels or 64, 56, 56)
        model = create_block(a.name, size[0])
        name = f"{a.name} @ {'x'.join(map(str, size))}"
    else:
        spec = get_model_spec(a.name)   # clear error with suggestions for unknown names
        size = a.input or spec.input_size
        _refuse_reserved(model_args, {"in_chans": "--input", "img_size": "--input", "num_classes": "--num-classes"})
        model = create_model(a.name, in_chans=size[0], num_classes=a.num_classes, img_size=size[1:],
                             **{**model_args, **sets})
        name = a.name + (" " + " ".join(f"{k}={v}" for k, v in sets.items()) if sets else "")
    a.workload = (f"input {'x'.join(map(str, size))} at batch size {a.batch_size} (train step "
                  f"{a.train_batch_size or a.batch_size})", "a smaller --batch-size / --train-batch-size or --input")
    if a.deploy:  # profile the inference form: re-parameterisable branches merged, BN folded where the block does
        from blockzoo.deploy import reparameterize
        model = reparameterize(model.eval())
        name += " (deploy form)"
    train_step = not (a.no_latency or a.no_train_step or a.deploy)
    rep = profile_model(model, size, batch_size=a.batch_size, train_batch_size=a.train_batch_size,
                  latency=not a.no_latency, train_step=train_step, dtype=a.dtype,
                  channels_last=a.channels_last, threads=a.threads, device=a.device, name=name)
    if a.json:
        _print_json(rep.to_dict())
    else:
        _console().print(format_report(dataclasses.replace(rep, model=_esc(rep.model))))
    return 0


# ------------------------------------------------------------------------------- TrainConfig fields as flags
#: TrainConfig fields without a generated flag: the positional model, --set, --model-arg and --out stand for them.
_SKIP_FLAGS = {"model", "slots", "model_kwargs", "tta_thresholds", "out_dir"}
#: ... and those compare sets per run itself (it resumes and reuses runs by their configuration).
_COMPARE_SKIP = {"seed", "resume", "overwrite", "sync_bn"}


def _train_fields(compare: bool = False) -> list[tuple[dataclasses.Field, Any]]:
    from blockzoo.train.config import TrainConfig
    hints = typing.get_type_hints(TrainConfig)
    skip = _SKIP_FLAGS | (_COMPARE_SKIP if compare else set())
    return [(f, hints[f.name]) for f in dataclasses.fields(TrainConfig) if f.name not in skip]


#: the value of a training flag that was not given (the recipe's default, else the field's, applies)
_NOT_GIVEN = argparse.SUPPRESS


def _field_default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def _add_train_flags(p: argparse.ArgumentParser, *, compare: bool = False) -> None:
    """One flag per TrainConfig field (``foo_bar`` -> ``--foo-bar``), generated from the fields and their ``help`` /
    ``choices`` metadata so that the CLI never drifts; booleans are ``--x`` / ``--no-x``. Value ranges are checked
    by :meth:`TrainConfig.validate`. ``--recipe`` picks the defaults of the flags not given
    (:data:`blockzoo.train.config.RECIPES`)."""
    from blockzoo.train.config import RECIPES

    g = p.add_argument_group("training recipe (TrainConfig fields)")
    fast = ", ".join(f"{k}={v}" for k, v in RECIPES["fast"].items())
    g.add_argument("--recipe", choices=tuple(RECIPES), default="default",
                   help="the defaults of the flags below: default (as listed), or fast (the speed-run recipe of "
                        f"blockzoo.train.speedrun, for 28-32 px images: {fast}); flags given explicitly win "
                        "(default: default)")
    for f, tp in _train_fields(compare):
        flag = "--" + f.name.replace("_", "-")
        default = _field_default(f)
        base = next((t for t in typing.get_args(tp) if t is not type(None)), tp)
        text = f.metadata.get("help", "")
        if "names" in f.metadata:
            text += f": {', '.join(f.metadata['names']())}"
        if base is bool:
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=_NOT_GIVEN,
                           help=f"{text} (default: {'on' if default else 'off'})")
            continue
        if typing.get_origin(tp) is list:   # a repeatable flag, named by the field's "flag" (--teacher CKPT)
            g.add_argument(f.metadata.get("flag", flag), dest=f.name, action="append", default=_NOT_GIVEN,
                           metavar=f.metadata.get("metavar"), help=f"{text} (repeat the flag for each)")
            continue
        kw: dict[str, Any] = {"choices": f.metadata["choices"]} if "choices" in f.metadata else {}
        g.add_argument(flag, type=base if base in (int, float, str) else str, default=_NOT_GIVEN,
                       help=text if default is None else f"{text} (default: {default})", **kw)


def _train_kwargs(a: argparse.Namespace, *, compare: bool = False) -> dict[str, Any]:
    """The TrainConfig fields of the parsed flags: those given, else the ``--recipe``'s default, else the field's."""
    from blockzoo.train.config import RECIPES

    preset = RECIPES[getattr(a, "recipe", "default")]
    out = {}
    for f, _ in _train_fields(compare):
        default = _field_default(f)
        out[f.name] = getattr(a, f.name) if hasattr(a, f.name) else preset.get(f.name, default)
    return out


def cmd_train(a: argparse.Namespace) -> int:
    from blockzoo.registry import get_model_spec
    from blockzoo.train import TrainConfig, train
    from blockzoo.train.distributed import is_main_process

    get_model_spec(a.model)
    cfg = TrainConfig(model=a.model, slots=_parse_sets(a.set), model_kwargs=_parse_model_args(a.model_arg),
                      out_dir=a.out, **_train_kwargs(a))
    resolved = cfg.resolved()   # validates: a bad value is one ConfigError naming the flag
    _check_device(cfg.device)
    a.run_dir = resolved.out_dir
    _check_writable(a.run_dir)
    _precheck_model(cfg.model, cfg.data, cfg.slots, cfg.model_kwargs, cfg.img_size)
    a.workload = (f"training batch size {cfg.batch_size} (eval {resolved.eval_batch_size}) on {cfg.data}",
                  "a smaller --batch-size / --eval-batch-size")
    con = _console()
    res = train(cfg, console=con)
    if not is_main_process():  # under torchrun rank 0 reports
        return 0
    con.print(f"[bold]done[/]: final test acc {100 * res['final_test_acc']:.2f}% "
              f"(best {100 * (res['best_test_acc'] or 0):.2f}%), train time {res['train_time_s']:.1f} s, "
              f"results in {_esc(a.run_dir)}")
    return 0


def cmd_compare(a: argparse.Namespace) -> int:
    from blockzoo.registry import get_model_spec
    from blockzoo.report.compare import (
        CompareConfig,
        detectable_words,
        expand_variants,
        leaderboard_rows,
        parse_vary,
        run_compare,
    )
    from blockzoo.train import TrainConfig

    get_model_spec(a.model)
    vary, fixed, model_args = parse_vary(a.vary), _parse_sets(a.set), _parse_model_args(a.model_arg)
    base = TrainConfig(model=a.model, **_train_kwargs(a, compare=True)).validate()
    _check_device(base.device)
    out = a.out or f"runs/compare-{a.model}-{'-'.join(vary)}"
    _check_writable(out)
    variants = expand_variants(vary)
    for v in variants:
        _precheck_model(a.model, base.data, {**fixed, **v}, model_args, base.img_size)
    a.run_dir = out
    a.workload = (f"training batch size {base.batch_size} on {base.data}", "a smaller --batch-size")
    cfg = CompareConfig(model=a.model, vary=vary, fixed=fixed, seeds=a.seeds, out_dir=out, model_kwargs=model_args,
                        train=_train_kwargs(a, compare=True), latency_batch=a.latency_batch,
                        analyze=a.analyze or [], command=_command(a.argv), **_executor_kwargs(a))
    con = _console()
    budget = (f"{a.model}: {len(a.seeds) * len(variants)} runs = variants x seeds {a.seeds}; budget: {base.epochs} "
              f"epochs on {'the full training set' if base.subset is None else f'{base.subset} training images'} "
              f"of {base.data}, batch {base.batch_size}, {base.precision}; output in {out}")
    con.print(f"[bold]blockzoo compare[/] {_esc(budget)}")
    res = run_compare(cfg, console=con)
    rows = leaderboard_rows(res)
    keep = [k for k in rows[0] if k in ("variant", "params", "MACs (M)", "test acc % (mean ± std)",
                                        "TTA acc % (mean ± std)", "Δ vs baseline (pp)", "paired p")
            or k.startswith("latency")]
    short = {"MACs (M)": "MMACs", "test acc % (mean ± std)": "test acc %", "TTA acc % (mean ± std)": "TTA acc %",
             "Δ vs baseline (pp)": "Δ pp", "paired p": "p"}
    b = res["budget"]
    con.print(_table(f"{res['model']} on {res['data']}: {b['epochs']} epochs, {res['train_images']} training "
                     f"images, seeds {b['seeds']}",
                     [short.get(k, "ms bs1" if k.startswith("latency") else k) for k in keep],
                     [[r[k] for k in keep] for r in rows]))
    con.print(_esc(detectable_words(res)))
    con.print(f"[bold]wrote[/] {_esc(out)}/leaderboard.md (full table and budget), leaderboard.csv, results.json, "
              f"tradeoff.png, report.html")
    return 0


def cmd_plot(a: argparse.Namespace) -> int:
    from blockzoo.report.plot import plot_runs

    _check_writable(str(Path(a.out).parent), "--out")
    labels = plot_runs(a.runs, a.out, title=a.title)
    _console().print(f"[bold]wrote[/] {_esc(a.out)}: training curves of {len(labels)} run(s): "
                     f"{_esc(', '.join(labels))}")
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    from blockzoo.train.evaluation import evaluate_checkpoint, write_eval_report

    _check_device(a.device)
    _check_writable(a.out or str(Path(a.checkpoint).parent))
    res = evaluate_checkpoint(a.checkpoint, a.data, data_dir=a.data_dir, batch_size=a.batch_size, device=a.device,
                              precision=a.precision)
    files = write_eval_report(res, a.out or Path(a.checkpoint).parent / f"eval-{Path(a.checkpoint).stem}-"
                                                                          f"{Path(res['data']).name}")
    if a.json:
        _print_json(res)
        return 0
    con = _console()
    con.print(_table(f"{res['model']} on {res['data']} ({res['split']}): accuracy {100 * res['acc']:.2f}% of "
                     f"{res['n']} images, loss {res['loss']:.4f}", ["class", "images", "correct", "accuracy %"],
                     [[c, n, res["confusion"][i][i], "n/a" if acc is None else f"{100 * acc:.2f}"]
                      for i, (c, n, acc) in enumerate(zip(res["classes"], res["per_class_n"], res["per_class_acc"]))],
                     key="class"))
    con.print(f"[bold]wrote[/] {_esc(files['json'])} (with the confusion matrix), {_esc(files['png'])}")
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    import torch

    from blockzoo.deploy.export import export_model
    from blockzoo.train import load_model, read_metadata

    model = load_model(a.checkpoint)
    spec = read_metadata(a.checkpoint)["model_spec"]
    out = a.out or str(Path(a.checkpoint).with_suffix(".onnx" if a.format == "onnx" else ".pt2"))
    _check_writable(str(Path(out).parent), "--out")
    # the input the model was trained at (the registered paper size may not fit a model built for another size)
    example = None if spec["img_size"] is None else torch.randn(2, spec["in_chans"], *spec["img_size"])
    # --deploy: the deploy form, timed (eager / deploy form / the file's runtime); passed only when asked
    extra = {"deploy": True, "latency": True} if a.deploy else {"latency": True} if a.latency else {}
    res = export_model(model, out, format=a.format, example=example, dynamic=not a.static, check=not a.no_check,
                       **extra)
    if a.json:
        _print_json(res)
    elif res["ok"] is None:
        _console().print(f"[bold]wrote[/] {_esc(res['path'])} ({_esc(res['format'])}; parity not checked)")
    else:
        _console().print(f"[bold]wrote[/] {_esc(res['path'])} ({_esc(res['format'])}"
                         f"{', deploy form' if a.deploy else ''}): parity with eager "
                         f"{'ok' if res['ok'] else 'FAILED'}, max abs diff {res['max_abs_diff']:.3g} "
                         f"(rtol {res['rtol']:g}, atol {res['atol']:g})")
    if not a.json and "latency_ms" in res:
        _console().print("latency (median ms): " + "; ".join(
            f"{_esc(k)} " + ", ".join(f"batch {b} {ms:.2f}" for b, ms in v.items())
            for k, v in res["latency_ms"].items()))
    if res["ok"] is False:
        print(f"error: the exported {res['format']} model does not match the eager model (max abs diff "
              f"{res['max_abs_diff']:.3g}); please report it with the checkpoint's model", file=sys.stderr)
        return 1
    return 0


def cmd_docs(a: argparse.Namespace) -> int:
    from blockzoo.report.catalog import write_catalog
    changed = write_catalog(a.out, check=a.check)
    if a.check and changed:
        print(f"error: {a.out} is out of date; run `blockzoo docs` to regenerate it", file=sys.stderr)
        return 1
    print(f"{a.out} {'is up to date' if not changed else 'written'}")
    return 0


def cmd_claims(a: argparse.Namespace) -> int:
    from blockzoo import registry as R
    if a.lab is not None:
        return _cmd_claims_lab(a)
    rows = []
    for n in R.list_blocks() + R.list_models():
        spec = R.get_block_spec(n) if R.is_block(n) else R.get_model_spec(n)
        for c in spec.claims:
            if a.status and c.status != a.status:
                continue
            rows.append({"name": n, "paper": _paper_title(spec.paper), "status": c.status, "claim": c.text,
                         "check": c.check})
    if a.json:
        _print_json(rows)
        return 0
    _console().print(_table(f"registered claims ({len(rows)})", ["name", "paper", "status", "claim", "check"],
                            [[r["name"], r["paper"] or "", r["status"], r["claim"], r["check"] or ""] for r in rows]))
    from blockzoo.report.verdicts import load_verdicts
    if not a.status and load_verdicts():
        a.lab, a.verdict = "", None   # the claims lab's verdicts follow the structural claims
        return _cmd_claims_lab(a)
    return 0


def _cmd_claims_lab(a: argparse.Namespace) -> int:
    from blockzoo.report.verdicts import load_verdicts
    recs = [r for r in load_verdicts(a.lab or None) if not a.verdict or r["verdict"] == a.verdict]
    if a.json:
        _print_json(recs)
        return 0
    _console().print(_table(f"claims lab: the papers' claims run at CPU scale ({len(recs)})",
                            ["name", "paper", "block", "verdict", "claim", "result", "budget"],
                            [[r["name"], _paper_title(r["paper"]) if isinstance(r["paper"], dict) else str(r["paper"]),
                              r.get("block") or "", r["verdict"], r["claim"], r["summary"], r["budget"]]
                             for r in recs]))
    return 0


# ------------------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    from blockzoo.analysis import cli as analysis_cli
    from blockzoo.data import cli as data_cli
    from blockzoo.deploy import cli as deploy_cli
    from blockzoo.deploy import quant_cli
    from blockzoo.train.config import TrainConfig

    out_help = next(f for f in dataclasses.fields(TrainConfig) if f.name == "out_dir").metadata["help"]
    positive = int_at_least(1)
    p = _Parser(prog="blockzoo", description="Faithful, swappable deep-network building blocks from the papers, and "
                "the bench to measure them.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"blockzoo {__import__('blockzoo').__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    s = sub.add_parser("list", help="list registered blocks, models or slots")
    s.add_argument("what", nargs="?", default="all", help="blocks | models | slots | all, or a PATTERN")
    s.add_argument("pattern", nargs="?", default=None,
                   help="fnmatch wildcard, e.g. '*eca*' (one that matches nothing says so, with close names; "
                        "exit status 0)")
    s.add_argument("--slot", default=None, help="only blocks of this slot (attn, norm, act, mixer, conv, head, ...)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("info", help="paper, slot, options and claims of a block or model")
    s.add_argument("name", help="block or model name")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=cmd_info)

    s = sub.add_parser("profile", help="params, MACs, latency, train step, memory of a model or block")
    s.add_argument("name", help="model or block name (block options inline: 'se(reduction=8)')")
    s.add_argument("--input", type=_input_size, default=None,
                   help="C,H,W (default: the model's paper input; blocks: 64,56,56)")
    s.add_argument("--channels", type=positive, default=None, help="blocks: channel count (default: 64)")
    s.add_argument("--set", action="append", metavar="SLOT=BLOCK", help="swap a slot, e.g. --set attn=eca")
    _add_model_arg(s)
    s.add_argument("--num-classes", type=int_at_least(0), default=None,
                   help="classifier outputs; 0: features only (default: the model's paper setting)")
    s.add_argument("--batch-size", type=positive, default=1, help="latency batch size (default: 1)")
    s.add_argument("--train-batch-size", type=positive, default=None, help="train-step batch size (default: "
                   "--batch-size)")
    s.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="(default: fp32)")
    s.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    s.add_argument("--threads", type=positive, default=None, help="torch threads (default: torch's)")
    s.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    s.add_argument("--deploy", action="store_true",
                   help="profile the deploy form (blockzoo.deploy.reparameterize: merged branches; no train step)")
    s.add_argument("--no-latency", action="store_true", help="count params/MACs only")
    s.add_argument("--no-train-step", action="store_true", help="skip the train-step timing")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=cmd_profile)

    s = sub.add_parser("train", help="train a model (checkpoints every epoch; the same command continues a run)")
    s.add_argument("model", help="registered model name")
    s.add_argument("--set", action="append", metavar="SLOT=BLOCK", help="swap a slot, e.g. --set attn=eca")
    s.add_argument("--out", default=None, help=out_help)
    _add_model_arg(s)
    _add_train_flags(s)
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("compare", help="train variants x seeds with one budget; leaderboard + plot")
    s.add_argument("model", help="registered model name")
    s.add_argument("--vary", action="append", metavar="SLOT=V1,V2,...", required=True,
                   help="values of a slot to compare; the first is the baseline (repeat for a Cartesian product)")
    s.add_argument("--set", action="append", metavar="SLOT=BLOCK", help="fixed slot value for every variant")
    _add_model_arg(s)
    s.add_argument("--seeds", type=_seeds, default="3",
                   help="N (seeds 0..N-1), a list 0,1,2 or a range LO:HI (default: 3)")
    s.add_argument("--out", default=None, help="output directory (default: runs/compare-<model>-<slots>)")
    s.add_argument("--latency-batch", type=positive, default=1, help="latency batch size (default: 1)")
    s.add_argument("--analyze", action="append", choices=["erf"], default=None,
                   help="add an analysis column from each run's final checkpoint (erf: the effective receptive field's "
                   "area; repeatable)")
    _add_executor_flags(s, positive)
    _add_train_flags(s, compare=True)
    s.set_defaults(fn=cmd_compare)

    _add_run_commands(sub, positive)
    deploy_cli.add_commands(sub)     # prune
    quant_cli.add_commands(sub)      # quantize

    s = sub.add_parser("data", help="fetch / list / bench datasets")
    data_cli.add_commands(s)

    s = sub.add_parser("analyze", help="analysis bench: erf, eigencam, attention, landscape, linearscope, robustness "
                       "of a model or checkpoint (PNGs + JSON)")
    analysis_cli.add_commands(s)

    s = sub.add_parser("docs", help="regenerate docs/catalog.md from the registry")
    s.add_argument("--out", default="docs/catalog.md", help="(default: docs/catalog.md)")
    s.add_argument("--check", action="store_true", help="exit 1 if the file is out of date (no write)")
    s.set_defaults(fn=cmd_docs)

    s = sub.add_parser("claims", help="the papers' checkable claims and where blockzoo checks them")
    s.add_argument("--status", default=None, choices=["tested", "measured", "not checked"], help="only this status")
    s.add_argument("--lab", nargs="?", const="", default=None, metavar="DIR",
                   help="the claims lab instead: the verdicts of the claim runs of benchmarks/claims/ (default DIR: "
                   "benchmarks/results/claims)")
    s.add_argument("--verdict", default=None, choices=["reproduced", "not reproduced", "inconclusive"],
                   help="with --lab: only this verdict")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=cmd_claims)
    return p


def _add_run_commands(sub: Any, positive: Any) -> None:
    """``plot``, ``eval`` and ``export``: commands on the runs and checkpoints that ``train`` / ``compare`` wrote."""
    from blockzoo.deploy.export import EXPORT_FORMATS
    from blockzoo.train.config import PRECISIONS

    s = sub.add_parser("plot", help="training curves (loss, accuracy, lr) of runs to a PNG")
    s.add_argument("runs", nargs="+", metavar="RUN",
                   help="a run folder (blockzoo train --out) or a compare folder (all its runs)")
    s.add_argument("--out", required=True, metavar="FILE.png", help="image file to write")
    s.add_argument("--title", default=None, help="figure title")
    s.set_defaults(fn=cmd_plot)

    s = sub.add_parser("eval", help="accuracy, per-class accuracy and confusion matrix of a checkpoint")
    s.add_argument("checkpoint", help="a checkpoint or weights file (last.safetensors, best.safetensors)")
    s.add_argument("--data", default=None, help="dataset to test on (default: the one the checkpoint was trained on)")
    s.add_argument("--data-dir", default=None, help="folder holding the dataset files (default: as for train)")
    s.add_argument("--batch-size", type=positive, default=256, help="(default: 256)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    s.add_argument("--precision", default="fp32", choices=PRECISIONS, help="(default: fp32)")
    s.add_argument("--out", default=None, help="folder for eval.json and confusion.png (default: "
                   "eval-<checkpoint name>-<data> beside the checkpoint)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=cmd_eval)

    s = sub.add_parser("export", help="export a checkpoint to ONNX or torch.export, checked against eager")
    s.add_argument("checkpoint", help="a checkpoint or weights file (last.safetensors, best.safetensors)")
    s.add_argument("--format", default="onnx", choices=EXPORT_FORMATS, help="(default: onnx)")
    s.add_argument("--out", default=None, help="file to write (default: the checkpoint's name with .onnx / .pt2)")
    s.add_argument("--static", action="store_true", help="fixed input shape (default: dynamic batch; torch-export "
                   "also dynamic height and width)")
    s.add_argument("--no-check", action="store_true", help="skip the parity check against the eager model")
    s.add_argument("--deploy", action="store_true", help="export the deploy form (re-parameterized, BN folded; "
                   "parity against the eager original) and report its latency; a quantized model: blockzoo quantize")
    s.add_argument("--latency", action="store_true", help="report the latency of eager and of the written file")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=cmd_export)


def _add_executor_flags(p: argparse.ArgumentParser, positive: Any) -> None:
    """compare's ``--executor`` / ``--ray-address`` / ``--workers`` (:mod:`blockzoo.report.executors`)."""
    from blockzoo.report.executors import EXECUTORS

    g = p.add_argument_group("where the runs train")
    g.add_argument("--executor", default="local", choices=EXECUTORS,
                   help="local: one run after another in this process; ray: Ray tasks (pip install 'blockzoo[ray]') "
                        "(default: local)")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --executor ray: an existing Ray cluster (auto, ray://HOST:10001, ...; run folders on a "
                        "shared file system); default: start a local Ray")
    g.add_argument("--workers", type=positive, default=1,
                   help="with --executor ray on a local Ray: runs at once, each with --threads threads (default: 1)")


def _executor_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    return {"executor": a.executor, "ray_address": a.ray_address, "workers": a.workers}


def _add_model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                   help="model constructor option other than a slot (compare: for every variant), "
                        "e.g. --model-arg drop_rate=0.1")


# ------------------------------------------------------------------------------------------------ failures
def _command(argv: list[str]) -> str:
    return "blockzoo " + shlex.join(argv)


def _interrupted(a: argparse.Namespace | None) -> str:
    """The Ctrl-C line; for train and compare with the exact command that continues: the same one, less
    ``--overwrite`` (which would start over)."""
    if a is None or getattr(a, "run_dir", None) is None:
        return "interrupted"
    again = _command([x for x in a.argv if x != "--overwrite"])
    if a.cmd == "compare":
        return f"interrupted: finished runs and the last checkpoint are kept; continue with: {again}"
    epoch = None
    last = Path(a.run_dir) / "last.safetensors"
    if last.exists():
        from blockzoo.train import read_metadata
        try:
            epoch = read_metadata(last).get("epoch")
        except BlockzooError:  # unreadable: say nothing about its epoch
            pass
    if epoch is None:
        return f"interrupted before the first checkpoint; start again with: {again}"
    return f"interrupted: the last checkpoint (epoch {epoch}) is kept; continue with: {again}"


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and any(
        s in str(e) for s in ("out of memory", "DefaultCPUAllocator", "Cannot allocate memory")))


def _error_line(e: BaseException, a: argparse.Namespace | None) -> tuple[str, int]:
    """The one line (and exit status) for an exception that ended a command."""
    from blockzoo.train import NonFiniteLossError
    if isinstance(e, NonFiniteLossError):
        return f"error: {e}", 1
    if isinstance(e, BlockzooError):
        return f"error: {e}", 2
    if _is_oom(e):
        m = re.search(r"allocate (\d+ bytes|[\d.]+ ?[KMGT]i?B)", str(e))
        workload, fix = getattr(a, "workload", ("this input", "a smaller --batch-size or input"))
        return (f"error: out of memory{f' (tried to allocate {m.group(1)})' if m else ''} with {workload}; "
                f"use {fix}"), 2
    if isinstance(e, OSError) and e.strerror:
        where = f" ({e.filename})" if e.filename else ""
        return f"error: {e.strerror}{where}; check the path, its permissions and the free disk space", 2
    msg = " ".join(str(e).split())
    return (f"internal error: {type(e).__name__}: {msg} (BLOCKZOO_DEBUG=1 shows the traceback; please report "
            f"it)"), 1


def main(argv: list[str] | None = None) -> int:
    """Run the ``blockzoo`` command line on ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    a: argparse.Namespace | None = None
    try:
        parser = build_parser()
        a = parser.parse_args(argv)
        if not getattr(a, "fn", None):
            parser.print_help()
            return 0
        a.argv = argv
        return a.fn(a)
    except BrokenPipeError:  # `blockzoo list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(_interrupted(a), file=sys.stderr)
        return 130
    except Exception as e:  # every failure ends as one line and an exit status
        if os.environ.get("BLOCKZOO_DEBUG"):
            import traceback
            traceback.print_exc()
        line, status = _error_line(e, a)
        print(line, file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
