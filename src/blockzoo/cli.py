"""The ``blockzoo`` command line: list | info | profile | train | compare | data | docs | claims.

Every command has ``--help``; ``list``, ``info`` and ``profile`` take ``--json``. Heavy imports (torch) happen inside
the commands, so ``blockzoo --help`` is instant. User errors (unknown names, incompatible slots, missing or corrupt
data, corrupt checkpoints, NaN loss) print one clear ``error:`` line and exit with status 2 (1 for NaN loss).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import typing
from typing import Any

EPILOG = """examples:
  blockzoo list blocks --slot attn
  blockzoo info eca
  blockzoo profile resnet50 --input 3,224,224
  blockzoo profile resnet20 --input 1,28,28 --set attn=eca
  blockzoo profile eca --channels 256 --input 256,14,14
  blockzoo train resnet20 --data fashion-mnist --epochs 10 --set attn=eca
  blockzoo compare resnet20 --vary attn=none,se,eca --data fashion-mnist --epochs 3 --seeds 3
"""


# ----------------------------------------------------------------------------------------------------- helpers
def _console():
    from rich.console import Console
    return Console(stderr=False, highlight=False)


def _parse_sets(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"error: --set expects SLOT=BLOCK (e.g. attn=eca), got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _parse_model_args(items: list[str] | None) -> dict[str, Any]:
    """``--model-arg KEY=VALUE``: VALUE as a Python literal (``2``, ``(1, 2)``, ``True``, ``'B'``), else a string."""
    import ast
    out: dict[str, Any] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k.strip().isidentifier():
            raise SystemExit(f"error: --model-arg expects KEY=VALUE (e.g. attn_stages=(2,)), got {item!r}")
        try:
            out[k.strip()] = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError):
            out[k.strip()] = v.strip()
    return out


def _parse_input(s: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(x) for x in s.replace("x", ",").split(",") if x)
    except ValueError:
        raise SystemExit(f"error: --input expects C,H,W (e.g. 3,224,224), got {s!r}") from None
    if len(dims) != 3:
        raise SystemExit(f"error: --input expects 3 numbers C,H,W (e.g. 3,224,224), got {s!r}")
    return dims


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


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
        out["blocks"] = [{"name": n, "slot": R.get_block_spec(n).slot, "summary": R.get_block_spec(n).summary,
                          "paper": (R.get_block_spec(n).paper.id or R.get_block_spec(n).paper.title)
                          if R.get_block_spec(n).paper else None}
                         for n in R.list_blocks(slot=a.slot, pattern=pattern)]
    if what in ("models", "all") and a.slot is None:
        out["models"] = [{"name": n, "family": R.get_model_spec(n).family, "summary": R.get_model_spec(n).summary,
                          "slots": list(R.get_model_spec(n).slots)} for n in R.list_models(pattern)]
    if a.json:
        _print_json(out)
        return 0
    from rich.table import Table

    con = _console()
    if "slots" in out:
        t = Table(title="slots")
        t.add_column("slot", style="cyan")
        t.add_column("contract")
        for k, v in out["slots"].items():
            t.add_row(k, v)
        con.print(t)
    if out.get("blocks") is not None:
        t = Table(title=f"blocks ({len(out['blocks'])})")
        for c in ("name", "slot", "paper", "summary"):
            t.add_column(c, style="cyan" if c == "name" else None, overflow="fold")
        for b in out["blocks"]:
            t.add_row(b["name"], b["slot"], b["paper"] or "", b["summary"])
        con.print(t)
    if out.get("models") is not None:
        t = Table(title=f"models ({len(out['models'])})")
        for c in ("name", "family", "slots", "summary"):
            t.add_column(c, style="cyan" if c == "name" else None, overflow="fold")
        for m in out["models"]:
            t.add_row(m["name"], m["family"], ",".join(m["slots"]), m["summary"])
        con.print(t)
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    from blockzoo.registry import get_info, is_block, is_model

    kinds = ["block", "model"] if is_block(a.name) and is_model(a.name) else [None]
    infos = [get_info(a.name, k) for k in kinds]
    if a.json:
        _print_json(infos[0] if len(infos) == 1 else infos)
        return 0
    for info in infos:
        _print_info(info)
    return 0


def _print_info(info: dict[str, Any]) -> None:
    con = _console()
    con.print(f"[bold cyan]{info['name']}[/] ({info['kind']}"
              + (f", slot {info['slot']}" if info["kind"] == "block" else f", family {info['family']}") + ")")
    con.print(f"  {info['summary']}")
    if info.get("paper"):
        con.print(f"  paper: {info['paper']['cite']}")
    if info["kind"] == "model":
        con.print(f"  slots: {', '.join(f'{k}={v}' for k, v in info['slots'].items())}")
        con.print(f"  paper input: {'x'.join(map(str, info['input_size']))}, classes {info['num_classes']}"
                  + (f", paper params {info['paper_params']:,}" if info.get("paper_params") else "")
                  + (f", paper MACs {info['paper_macs'] / 1e9:.2f} G" if info.get("paper_macs") else ""))
    else:
        req = info["requires"]
        con.print(f"  requires: layout {req['layout']}, min size {req['min_size']}, keeps channels "
                  f"{req['keeps_channels']}" + (", fixed resolution" if req["fixed_resolution"] else ""))
    if info.get("notes"):
        con.print(f"  notes: {info['notes']}")
    from rich.markup import escape
    for c in info.get("claims", []):
        con.print(escape(f"  claim [{c['status']}]: {c['text']}" + (f"  ({c['check']})" if c.get("check") else "")))
    if info.get("usage"):
        con.print("  usage:\n    " + info["usage"].replace("\n", "\n    "))


def cmd_profile(a: argparse.Namespace) -> int:
    import torch

    from blockzoo.profile import format_report, profile
    from blockzoo.registry import create_block, create_model, get_model_spec, is_block, is_model

    sets = _parse_sets(a.set)
    if is_block(a.name) and not is_model(a.name):
        if sets:
            raise SystemExit("error: --set applies to models; pass block options as NAME(key=value)")
        size = _parse_input(a.input) if a.input else (a.channels or 64, 56, 56)
        model = create_block(a.name, size[0])
        name = f"{a.name} @ {size[0]}x{size[1]}x{size[2]}"
    else:
        spec = get_model_spec(a.name)   # clear error with suggestions for unknown names
        size = _parse_input(a.input) if a.input else spec.input_size
        kw: dict[str, Any] = {**_parse_model_args(a.model_arg), **sets}
        model = create_model(a.name, in_chans=size[0], num_classes=a.num_classes, img_size=size[1:], **kw)
        name = a.name + (" " + " ".join(f"{k}={v}" for k, v in sets.items()) if sets else "")
    if a.deploy:  # profile the inference form: re-parameterisable branches merged, BN folded where the block does
        from blockzoo.deploy import reparameterize
        model = reparameterize(model.eval())
        name += " (deploy form)"
    train_step = not (a.no_latency or a.no_train_step or a.deploy)
    rep = profile(model, size, batch_size=a.batch_size, train_batch_size=a.train_batch_size,
                  latency=not a.no_latency, train_step=train_step, dtype=a.dtype,
                  channels_last=a.channels_last, threads=a.threads, device=a.device, name=name)
    if a.json:
        _print_json(rep.to_dict())
    else:
        _console().print(format_report(rep))
    del torch
    return 0


def _train_config_fields():
    from blockzoo.train import TrainConfig
    hints = typing.get_type_hints(TrainConfig)
    return TrainConfig, [(f, hints[f.name]) for f in dataclasses.fields(TrainConfig)]


_SKIP_FLAGS = {"model", "slots", "model_kwargs", "tta_thresholds", "out_dir"}


def _add_model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                   help="model constructor option other than a slot (compare: for every variant), "
                        "e.g. --model-arg attn_stages=(2,)")


def _add_train_flags(p: argparse.ArgumentParser, *, compare: bool = False) -> None:
    """One flag per TrainConfig field (``foo_bar`` -> ``--foo-bar``), generated so the CLI never drifts."""
    TrainConfig, fields = _train_config_fields()
    g = p.add_argument_group("training recipe (TrainConfig fields)")
    for f, tp in fields:
        if f.name in _SKIP_FLAGS or (compare and f.name in ("seed", "resume")):
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        args = typing.get_args(tp)
        base = tp if not args else next((t for t in args if t is not type(None)), str)
        if base is bool:
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=f"(default: {default})")
        else:
            g.add_argument(flag, type=base if base in (int, float, str) else str, default=default,
                           help=f"(default: {default})")


def _train_kwargs(a: argparse.Namespace, *, compare: bool = False) -> dict[str, Any]:
    _, fields = _train_config_fields()
    return {f.name: getattr(a, f.name) for f, _ in fields
            if f.name not in _SKIP_FLAGS and not (compare and f.name in ("seed", "resume"))}


def cmd_train(a: argparse.Namespace) -> int:
    from blockzoo.registry import get_model_spec
    from blockzoo.train import TrainConfig, train

    get_model_spec(a.model)
    cfg = TrainConfig(model=a.model, slots=_parse_sets(a.set), model_kwargs=_parse_model_args(a.model_arg),
                      out_dir=a.out, **_train_kwargs(a))
    con = _console()
    res = train(cfg, console=con)
    con.print(f"[bold]done[/]: final test acc {100 * res['final_test_acc']:.2f}% "
              f"(best {100 * (res['best_test_acc'] or 0):.2f}%), train time {res['train_time_s']:.1f} s, "
              f"results in {res.get('out_dir', cfg.out_dir or '')}")
    return 0


def _parse_seeds(s: str) -> list[int]:
    s = s.strip()
    if "," in s or s.startswith("[") or ":" in s:
        if ":" in s:
            lo, hi = s.split(":")
            return list(range(int(lo), int(hi)))
        return [int(x) for x in s.strip("[]").split(",") if x.strip()]
    n = int(s)
    if n < 1:
        raise SystemExit("error: --seeds needs at least 1 seed")
    return list(range(n))


def cmd_compare(a: argparse.Namespace) -> int:
    from blockzoo.report.compare import CompareConfig, parse_vary, run_compare

    vary = parse_vary(a.vary or [])
    seeds = _parse_seeds(a.seeds)
    out = a.out or f"runs/compare-{a.model}-{'-'.join(vary)}"
    cfg = CompareConfig(model=a.model, vary=vary, fixed=_parse_sets(a.set), seeds=seeds, out_dir=out,
                        model_kwargs=_parse_model_args(a.model_arg),
                        train=_train_kwargs(a, compare=True), latency_batch=a.latency_batch,
                        command="blockzoo " + " ".join(shlex.quote(x) for x in sys.argv[1:]))
    con = _console()
    n = len(seeds) * max(1, len(__import__("blockzoo.report.compare", fromlist=["x"]).expand_variants(vary)))
    con.print(f"[bold]blockzoo compare[/] {a.model}: {n} runs = variants x seeds {seeds}; budget: {a.epochs} epochs on "
              f"{'the full training set' if a.subset is None else f'{a.subset} training images'} of {a.data}, "
              f"batch {a.batch_size}, {a.precision}; output in {out}")
    res = run_compare(cfg, console=con)
    from rich.table import Table

    from blockzoo.report.compare import leaderboard_rows
    rows = leaderboard_rows(res)
    keep = [k for k in rows[0] if k in ("variant", "params", "MACs (M)", "test acc % (mean ± std)",
                                        "Δ vs baseline (pp)", "paired p") or k.startswith("latency")]
    b = res["budget"]
    t = Table(title=f"{res['model']} on {res['data']}: {b['epochs']} epochs, {res['train_images']} training images, "
                    f"seeds {b['seeds']}")
    short = {"MACs (M)": "MMACs", "test acc % (mean ± std)": "test acc %", "Δ vs baseline (pp)": "Δ pp",
             "paired p": "p"}
    for k in keep:
        t.add_column(short.get(k, "ms bs1" if k.startswith("latency") else k), no_wrap=k == "variant")
    for r in rows:
        t.add_row(*(str(r[k]) for k in keep))
    con.print(t)
    con.print(f"[bold]wrote[/] {out}/leaderboard.md (full table and budget), leaderboard.csv, results.json, "
              f"tradeoff.png")
    return 0


def cmd_data(a: argparse.Namespace) -> int:
    from blockzoo.data import cli as data_cli
    return int(data_cli.main(a.rest) or 0)


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
    rows = []
    for n in R.list_blocks() + R.list_models():
        spec = R.get_block_spec(n) if R.is_block(n) else R.get_model_spec(n)
        for c in spec.claims:
            if a.status and c.status != a.status:
                continue
            rows.append({"name": n, "paper": spec.paper.id if spec.paper else None, "status": c.status,
                         "claim": c.text, "check": c.check})
    if a.json:
        _print_json(rows)
        return 0
    from rich.table import Table
    t = Table(title=f"registered claims ({len(rows)})")
    for c in ("name", "paper", "status", "claim", "check"):
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(r["name"], r["paper"] or "", r["status"], r["claim"], r["check"] or "")
    _console().print(t)
    return 0


# ------------------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="blockzoo", description="Faithful, swappable deep-network building blocks from "
                                "the papers, and the bench to measure them.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"blockzoo {__import__('blockzoo').__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    s = sub.add_parser("list", help="list registered blocks, models or slots")
    s.add_argument("what", nargs="?", default="all", help="blocks | models | slots | all, or a PATTERN")
    s.add_argument("pattern", nargs="?", default=None, help="fnmatch wildcard, e.g. '*eca*'")
    s.add_argument("--slot", default=None, help="only blocks of this slot (attn, norm, act, mixer, conv, head, ...)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("info", help="paper, slot, options and claims of a block or model")
    s.add_argument("name")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_info)

    s = sub.add_parser("profile", help="params, MACs, latency, train step, memory of a model or block")
    s.add_argument("name", help="model or block name")
    s.add_argument("--input", default=None, help="C,H,W (default: the model's paper input; blocks: 64,56,56)")
    s.add_argument("--channels", type=int, default=None, help="blocks: channel count (default 64)")
    s.add_argument("--set", action="append", metavar="SLOT=BLOCK", help="swap a slot, e.g. --set attn=eca")
    _add_model_arg(s)
    s.add_argument("--num-classes", type=int, default=None)
    s.add_argument("--batch-size", type=int, default=1, help="latency batch size (default 1)")
    s.add_argument("--train-batch-size", type=int, default=None, help="train-step batch size (default: batch size)")
    s.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    s.add_argument("--channels-last", action="store_true")
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--device", default="cpu")
    s.add_argument("--deploy", action="store_true",
                   help="profile the deploy form (blockzoo.deploy.reparameterize: merged branches; no train step)")
    s.add_argument("--no-latency", action="store_true", help="count params/MACs only")
    s.add_argument("--no-train-step", action="store_true")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_profile)

    s = sub.add_parser("train", help="train a model (checkpoints every epoch; --resume continues)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("model")
    s.add_argument("--set", action="append", metavar="SLOT=BLOCK", help="swap a slot, e.g. --set attn=eca")
    s.add_argument("--out", default=None, help="run directory (default runs/<model>-<data>-seed<seed>)")
    _add_model_arg(s)
    _add_train_flags(s)
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("compare", help="train variants x seeds with one budget; leaderboard + plot")
    s.add_argument("model")
    s.add_argument("--vary", action="append", metavar="SLOT=V1,V2,...", required=True,
                   help="values of a slot to compare; the first is the baseline (repeat for a Cartesian product)")
    s.add_argument("--set", action="append", metavar="SLOT=BLOCK", help="fixed slot value for every variant")
    _add_model_arg(s)
    s.add_argument("--seeds", default="3", help="N (seeds 0..N-1) or a list 0,1,2 (default 3)")
    s.add_argument("--out", default=None, help="output directory (default runs/compare-<model>-<slots>)")
    s.add_argument("--latency-batch", type=int, default=1)
    _add_train_flags(s, compare=True)
    s.set_defaults(fn=cmd_compare)

    s = sub.add_parser("data", help="fetch / check datasets (see `blockzoo data --help`)", add_help=False)
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(fn=cmd_data)

    s = sub.add_parser("docs", help="regenerate docs/catalog.md from the registry")
    s.add_argument("--out", default="docs/catalog.md")
    s.add_argument("--check", action="store_true", help="exit 1 if the file is out of date (no write)")
    s.set_defaults(fn=cmd_docs)

    s = sub.add_parser("claims", help="the papers' checkable claims and where blockzoo checks them")
    s.add_argument("--status", default=None, choices=["tested", "measured", "not checked"])
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_claims)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not getattr(a, "fn", None):
        parser.print_help()
        return 0
    try:
        return a.fn(a)
    except BrokenPipeError:  # `blockzoo list | head`
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted: finished runs and the last checkpoint are kept; re-run the same command to resume",
              file=sys.stderr)
        return 130
    except Exception as e:  # user-facing errors: one clear line, no traceback (BLOCKZOO_DEBUG=1 shows it)
        import os

        from blockzoo.registry import BlockzooError
        if os.environ.get("BLOCKZOO_DEBUG"):
            raise
        names = {"DataError", "CheckpointError", "NonFiniteLossError", "IncompatibleBlockError", "UnknownNameError"}
        if isinstance(e, (BlockzooError, ValueError)) or type(e).__name__ in names:
            print(f"error: {e}", file=sys.stderr)
            return 1 if type(e).__name__ == "NonFiniteLossError" else 2
        raise


if __name__ == "__main__":
    sys.exit(main())
