"""Time-to-accuracy benchmark on Fashion-MNIST: the fast recipe (:func:`blockzoo.train.speedrun.speedrun`, SpeedNet)
next to the project's default recipe (ResNet-20 via :func:`blockzoo.train.train`).

    python benchmarks/speedrun_fmnist.py --seeds 3                               # fast recipe, seeds 0..2
    python benchmarks/speedrun_fmnist.py --recipe default --epochs 10            # ResNet-20, 1 seed (bf16 where native)
    python benchmarks/speedrun_fmnist.py --recipe default --epochs 2 --precision fp32

Each invocation adds (or replaces) its own section in ``benchmarks/results/speedrun_fmnist.json`` -- keyed by recipe
and precision -- and re-renders ``benchmarks/results/speedrun_fmnist.md`` from all sections, so the recipes can be run
one after the other. Recorded per seed: accuracy after every epoch with the cumulative training time (evaluation
excluded), time to 90/92/93/94 % test accuracy, final accuracy with and without TTA, training throughput and achieved
GFLOP/s (forward MACs from ``blockzoo.profile.count_macs`` x 2 FLOPs x 3 for forward+backward, times img/s), plus
the exact command, the machine (CPU, threads, torch) and the load average before and after each run.
This is a script, not a test: a full run takes minutes per seed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from blockzoo.env import device_name, native_bf16

THRESHOLDS = ("0.90", "0.92", "0.93", "0.94")
ROOT = Path(__file__).resolve().parent


def _load() -> str:
    try:
        return " ".join(open("/proc/loadavg", encoding="utf-8").read().split(" ", 3)[:3])
    except OSError:
        return "n/a"


def _mean_std(vals: list[float | None]) -> str:
    v = [x for x in vals if x is not None]
    if not v:
        return "-"
    if len(v) == 1:
        return f"{v[0]:.4g}"
    return f"{statistics.mean(v):.4g} ± {statistics.stdev(v):.2g}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _sec(x: float | None) -> str:
    return "not reached" if x is None else f"{x:.0f} s"


# -------------------------------------------------------------------------------------------------- the recipes
def run_fast(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from blockzoo.train.speedrun import speedrun
    kw: dict[str, Any] = dict(seed=seed, budget=args.budget if args.budget > 0 else None, tta=not args.no_tta,
                              threads=args.threads, holdout=args.holdout, subset=args.subset)
    if args.epochs is not None:
        kw["epochs"] = args.epochs
    if args.precision is not None:
        kw["precision"] = args.precision
    r = speedrun(log=lambda s: print(f"  [seed {seed}] {s}", flush=True), **kw)
    return dict(seed=seed, curve=[dict(epoch=c["epoch"], train_time_s=c["train_time_s"], test_acc=c["test_acc"],
                                       val_acc=c["val_acc"]) for c in r["curve"]],
                time_to_acc=r["time_to_acc"], final_test_acc=r["final_test_acc"], final_tta_acc=r["final_tta_acc"],
                train_time_s=r["train_time_s"], train_cpu_s=r["train_cpu_s"], eval_time_s=r["eval_time_s"],
                tta_eval_time_s=r["tta_eval_time_s"], img_per_s=r["img_per_s"], gflops=r["gflops"],
                macs_per_image=r["macs_per_image"], params=r["params"],
                epochs=r["epochs_completed"], stopped_reason=r["stopped_reason"], config=r["config"])


def run_default(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from blockzoo import create_model
    from blockzoo.profile import count_macs
    from blockzoo.train import TrainConfig, train
    out = Path(tempfile.mkdtemp(prefix="bz-default-"))
    cfg = TrainConfig(model="resnet20", data="fashion-mnist", epochs=args.epochs or 10, seed=seed,
                      precision=args.precision, threads=args.threads, out_dir=str(out), progress=False,
                      checkpoint=False, subset=args.subset)
    r = train(cfg)
    curve = []
    for line in open(out / "metrics.jsonl", encoding="utf-8"):
        m = json.loads(line)
        curve.append(dict(epoch=m["epoch"], train_time_s=m["train_time_s"], test_acc=m["test_acc"], val_acc=None))
    macs = int(count_macs(create_model("resnet20", in_chans=1, num_classes=10, img_size=28), (1, 28, 28)).macs)
    ips = r["img_per_s"]
    return dict(seed=seed, curve=curve, time_to_acc=r["time_to_acc"], final_test_acc=r["final_test_acc"],
                final_tta_acc=None, train_time_s=r["train_time_s"], eval_time_s=r["eval_time_s"], tta_eval_time_s=None,
                img_per_s=ips, gflops=6 * macs * ips / 1e9 if ips else None, macs_per_image=macs,
                params=r["params"], epochs=r["epochs_completed"], stopped_reason=r["stopped_reason"],
                config=r["config"])


# ------------------------------------------------------------------------------------------------------ report
def render(doc: dict[str, Any]) -> str:
    lines = ["# Fashion-MNIST time-to-accuracy: fast recipe (SpeedNet) vs default recipe (ResNet-20)", "",
             "Generated by `benchmarks/speedrun_fmnist.py`. Training time = whitening init (fast recipe) + data "
             "augmentation + forward/backward/optimizer steps; per-epoch test evaluations (no TTA) and the final TTA "
             "evaluation are timed separately and excluded. Time to X% = cumulative training time at the end of the "
             "first evaluated epoch whose plain test accuracy is >= X (or the final TTA accuracy, marked 'with TTA'). "
             "No early stopping or model selection on the test set: the reported model is the last one. "
             "GFLOP/s = forward MACs x 2 x 3 (forward + backward) x training img/s. "
             "The machine's 2 cores are shared with other developers: load averages before/after each run are "
             "listed, timings are upper bounds of what an idle machine gives.", ""]
    for note in doc.get("notes", []):
        lines += [f"- {note}"]
    if doc.get("notes"):
        lines.append("")
    for key in sorted(doc.get("sections", {})):
        s = doc["sections"][key]
        runs = s["runs"]
        cmds = s.get("commands", [s.get("command", "")])
        lines += [f"## {s['title']}", "", "- command(s): " + "; ".join(f"`{c}`" for c in cmds),
                  f"- machine: {s['machine']['cpu']}, {s['machine']['threads']} threads "
                  f"({s['machine']['cpus']} logical CPUs visible), torch {s['machine']['torch']}, "
                  f"python {s['machine']['python']}",
                  f"- seeds run: {len(runs)} ({', '.join(str(r['seed']) for r in runs)}); last written {s['started']}",
                  f"- model: {runs[0]['config'].get('model')} ({runs[0]['params']:,} params, "
                  f"{runs[0]['macs_per_image'] / 1e6:.1f} M MACs/image forward)", ""]
        if s.get("note"):
            lines += [f"Note: {s['note']}", ""]
        head = " | mean ± std |" if len(runs) > 1 else " |"
        lines += ["| | " + " | ".join(f"seed {r['seed']}" for r in runs) + head,
                  "|---|" + "---|" * len(runs) + ("---|" if len(runs) > 1 else "")]

        def row(name: str, vals: list[Any], fmt, agg: bool = True, scale: float = 1.0, runs=runs, lines=lines) -> None:
            cells = [fmt(v) for v in vals]
            if len(runs) > 1:
                cells.append(_mean_std([None if v is None else scale * v for v in vals]) if agg else "")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")

        row("epochs", [r["epochs"] for r in runs], str, False)
        row("final test acc (%)", [r["final_test_acc"] for r in runs], _pct, scale=100)
        if any(r["final_tta_acc"] is not None for r in runs):
            row("final test acc with TTA (%)", [r["final_tta_acc"] for r in runs], _pct, scale=100)
        for t in THRESHOLDS:
            vals = [r["time_to_acc"].get(t) for r in runs]
            tta_only = [v is not None and not any(c["test_acc"] is not None and c["test_acc"] >= float(t)
                                                  for c in r["curve"]) for v, r in zip(vals, runs)]
            labels = [_sec(v) + (" (with TTA)" if o else "") for v, o in zip(vals, tta_only)]
            row(f"time to {float(t) * 100:.0f}%", labels, str, agg=False)
            if len(runs) > 1:
                hit = [v for v in vals if v is not None]
                lines[-1] = lines[-1][:-2] + (f"{_mean_std(hit)} s ({len(hit)}/{len(runs)} seeds reached) |"
                                              if hit else f"0/{len(runs)} seeds reached |")
        row("training time (s)", [r["train_time_s"] for r in runs], lambda v: f"{v:.1f}")
        if all(r.get("train_cpu_s") for r in runs):
            row("training CPU time / threads (s)", [r["train_cpu_s"] / s["machine"]["threads"] for r in runs],
                lambda v: f"{v:.1f}")
        row("per-epoch eval time (s, excluded)", [r["eval_time_s"] for r in runs], lambda v: f"{v:.1f}")
        if any(r["tta_eval_time_s"] for r in runs):
            row("final TTA eval time (s, excluded)", [r["tta_eval_time_s"] for r in runs], lambda v: f"{v:.1f}")
        row("throughput (train img/s)", [r["img_per_s"] for r in runs], lambda v: f"{v:.0f}")
        row("achieved GFLOP/s", [r["gflops"] for r in runs], lambda v: f"{v:.0f}")
        if all(r.get("train_cpu_s") and r.get("img_per_s") for r in runs):
            th = s["machine"]["threads"]
            cpu_ips = [r["img_per_s"] * r["train_time_s"] / (r["train_cpu_s"] / th) for r in runs]
            row("img/s per CPU time (images / (CPU s / threads))", cpu_ips, lambda v: f"{v:.0f}")
            row("GFLOP/s per CPU time", [6 * r["macs_per_image"] * v / 1e9 for r, v in zip(runs, cpu_ips)],
                lambda v: f"{v:.0f}")
        row("load avg before", [r.get("load_before") for r in runs], str, False)
        row("load avg after", [r.get("load_after") for r in runs], str, False)
        lines += ["", "Per-epoch test accuracy (plain, no TTA) and cumulative training time:", ""]
        for r in runs:
            lines.append(f"- seed {r['seed']}: " + ", ".join(
                f"ep {c['epoch']} {_pct(c['test_acc'])}% @ {c['train_time_s']:.0f}s" for c in r["curve"]))
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--recipe", choices=("fast", "default"), default="fast")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1); default 3 (fast), 1 (default)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--epochs", type=float, default=None, help="fast: recipe default; default recipe: 10")
    p.add_argument("--precision", choices=("bf16", "fp32"), default=None,
                   help="default: bf16 where the CPU computes it in hardware (AVX512-BF16/AMX), else fp32")
    p.add_argument("--budget", type=float, default=300.0,
                   help="fast recipe: hard cap on training seconds (<= 0: no cap, e.g. on a loaded machine)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-tta", action="store_true")
    p.add_argument("--holdout", type=int, default=0, help="fast recipe: hold out this many train images")
    p.add_argument("--subset", type=int, default=None, help="smoke runs only: train on a subset")
    p.add_argument("--replace", action="store_true", help="replace the section instead of adding seeds to it")
    p.add_argument("--note", default="", help="free text stored with the section")
    p.add_argument("--out", default=str(ROOT / "results" / "speedrun_fmnist"), help="output path without suffix")
    p.add_argument("--render-only", action="store_true", help="re-render the .md from the .json and exit")
    args = p.parse_args(argv)
    if args.render_only:
        out = Path(args.out)
        out.with_suffix(".md").write_text(render(json.loads(out.with_suffix(".json").read_text())))
        return 0
    if args.recipe == "default" and "--seeds" not in (argv if argv is not None else sys.argv):
        args.seeds = 1
    if args.recipe == "default" and args.epochs is not None:
        args.epochs = int(args.epochs)
    prec = args.precision = args.precision or ("bf16" if native_bf16() else "fp32")
    key = f"default_{prec}" if args.recipe == "default" else "fast" if prec == "bf16" else f"fast_{prec}"
    title = (f"Fast recipe: SpeedNet + speedrun (airbench-style), {prec}" if args.recipe == "fast"
             else f"Default recipe: ResNet-20 via blockzoo.train.train, {prec}")
    if args.subset:
        key += f"_subset{args.subset}"
        title += f" (SMOKE: subset {args.subset})"
    cmd = " ".join(shlex.quote(a) for a in [sys.executable.rsplit("/", 1)[-1], *sys.argv])
    runs = []
    fn = run_fast if args.recipe == "fast" else run_default
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        before = _load()
        print(f"[{time.strftime('%H:%M:%S')}] {key} seed {seed}: load {before}", flush=True)
        r = fn(seed, args)
        r["load_before"], r["load_after"] = before, _load()
        print(f"  -> final {r['final_test_acc']:.4f} tta {r['final_tta_acc']} train {r['train_time_s']:.1f}s "
              f"time_to_acc {r['time_to_acc']} load after {r['load_after']}", flush=True)
        runs.append(r)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    jpath = out.with_suffix(".json")
    doc = json.loads(jpath.read_text()) if jpath.exists() else {"sections": {}}
    old = doc.setdefault("sections", {}).get(key)
    commands = [cmd]
    if old is not None and not args.replace:  # add these seeds to the section (a re-run seed replaces its old run)
        by_seed = {r["seed"]: r for r in old["runs"]}
        by_seed.update({r["seed"]: r for r in runs})
        runs = [by_seed[k] for k in sorted(by_seed)]
        commands = [c for c in old.get("commands", [old.get("command", "")]) if c] + commands
    doc["sections"][key] = dict(
        title=title, commands=commands, started=time.strftime("%Y-%m-%d %H:%M:%S"), note=args.note, runs=runs,
        machine=dict(cpu=device_name("cpu"), cpus=os.cpu_count(), threads=args.threads, torch=torch.__version__,
                     python=platform.python_version()))
    jpath.write_text(json.dumps(doc, indent=1) + "\n")
    out.with_suffix(".md").write_text(render(doc))
    print(f"wrote {jpath} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
