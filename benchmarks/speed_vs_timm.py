"""CPU speed of blockzoo next to timm on every architecture both have, the two models interleaved rep by rep.

    PYTHONPATH=/path/to/timm .venv/bin/python benchmarks/speed_vs_timm.py                 # every shared model
    .venv/bin/python benchmarks/speed_vs_timm.py --models convnext_atto,poolformer_s12 --reps 15
    .venv/bin/python benchmarks/speed_vs_timm.py --deploy      # adds blockzoo's deploy form vs timm's eager eval
    .venv/bin/python benchmarks/speed_vs_timm.py --smoke       # tiny sizes, 2 models, 2 reps (the test runs this)

Getting timm: it is a benchmark-only dependency, not one of blockzoo's extras. ``pip install timm --no-deps
huggingface_hub pyyaml`` (or unpack timm's wheel and put it on ``PYTHONPATH``). timm imports torchvision, which has
no working build on this machine: ``benchmarks/timm_shim/torchvision`` provides the few names timm imports (this
script puts it on ``sys.path`` when the real torchvision cannot be imported; the blockzoo package never sees it).

For each architecture, blockzoo's model and timm's model of the same architecture (same parameter count, asserted;
the weights are random and need not match) are built once; every rep times, for each mode, one call of the
blockzoo model and one of the timm model, alternating which goes first. Modes: ``eval_fp32`` (inference_mode),
``eval_bf16`` (inference_mode + CPU autocast bf16) and ``train`` (forward + cross-entropy + backward + SGD step with
momentum, train mode). With ``--deploy``, ``deploy_fp32``: ``blockzoo.deploy.reparameterize`` + channels_last
against timm's eager fp32 eval. Reported per model and mode: the median time over the reps after ``--warmup``
warm-up reps and the speed ratio: the median over the reps of ``timm time / blockzoo time`` (> 1: blockzoo is
faster; each pair runs back to back, so load changes between reps cancel), with its quartiles as the noise measure
(the ratio of the medians and of the fastest reps are in the JSON); then the geometric mean of the ratios per mode
and over all. On a shared 2-core machine, 2 threads are fragile (another runnable process stalls every OpenMP
region): ``--threads 1`` gives much tighter ratios. Results go to ``benchmarks/results/speed_vs_timm{--tag}.md``
and ``.json`` with the exact command, ``blockzoo.env.machine()`` and the load average before and after (rewritten
after every model). Tests never time anything: the test suite only runs ``--smoke`` to keep the script working.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.env import machine

ROOT = Path(__file__).resolve().parent
SHIM = ROOT / "timm_shim"
MODES = ("eval_fp32", "eval_bf16", "train")
SMOKE_MODELS = ("convnext_atto", "resnet18")


def import_timm():
    """``timm``, with the torchvision shim on ``sys.path`` when no real torchvision can be imported."""
    try:
        importlib.import_module("torchvision")
    except Exception:                                 # missing, or a broken build (this machine): use the shim
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]
        sys.path.insert(0, str(SHIM))
    return importlib.import_module("timm")


# ------------------------------------------------------------------------------- the shared architectures
def _timm_resnet(block: str, layers: tuple[int, ...], attn: str) -> Callable[[], nn.Module]:
    """timm's ``ResNet`` with ``attn`` in every block: ``"se"`` with reduced channels C/16 unrounded (the SE paper,
    as blockzoo; timm's registered seresnet18/34 round them up to a multiple of 8), ``"eca"`` with the adaptive
    kernel (timm registers ECA only on ResNet-D stems)."""
    def build() -> nn.Module:
        from timm.layers import SEModule
        from timm.models import resnet
        attn_layer = partial(SEModule, rd_divisor=1) if attn == "se" else attn
        return resnet.ResNet(block=getattr(resnet, block), layers=layers, block_args=dict(attn_layer=attn_layer))
    return build


def _timm_named(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm
        return timm.create_model(name)
    return build


_DEPTHS = {"18": ("BasicBlock", (2, 2, 2, 2)), "34": ("BasicBlock", (3, 4, 6, 3)),
           "50": ("Bottleneck", (3, 4, 6, 3)), "101": ("Bottleneck", (3, 4, 23, 3))}
# blockzoo name -> builder of timm's model of the same architecture (checked by parameter count before timing)
SHARED: dict[str, Callable[[], nn.Module]] = {
    **{f"resnet{d}": _timm_named(f"resnet{d}") for d in _DEPTHS},
    **{f"seresnet{d}": _timm_resnet(*_DEPTHS[d], "se") for d in _DEPTHS},
    **{f"ecaresnet{d}": _timm_resnet(*_DEPTHS[d], "eca") for d in _DEPTHS},
    **{n: _timm_named(n) for n in ("mobilenetv2_035", "mobilenetv2_050", "mobilenetv2_075", "mobilenetv2_100",
                                   "mobilenetv2_140", "convnext_atto", "convnext_femto", "convnext_pico",
                                   "convnext_nano", "convnext_tiny", "convnext_small", "inception_next_atto",
                                   "inception_next_tiny", "inception_next_small", "poolformer_s12")},
    # the vision transformers at 224 px (issue 10; Swin V2 and HaloNet need 256 px inputs in timm: not timed here)
    **{n: _timm_named(n) for n in ("vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224",
                                   "deit_tiny_distilled_patch16_224", "convit_tiny", "convit_small",
                                   "swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224")},
    # the ConvNet backbones of issue 12 (timed at --img like the others; Inception's native size is 299, NASNet's 331)
    **{n: _timm_named(n) for n in ("ghostnet_050", "ghostnet_100", "ghostnet_130", "ghostnetv2_100",
                                   "inception_v4", "inception_resnet_v2", "nasnetalarge")},
}


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def build_pair(name: str, num_classes: int | None = None) -> tuple[nn.Module, nn.Module]:
    """``(blockzoo model, timm model)`` of ``name``, seeded; raises if their parameter counts differ."""
    from blockzoo.registry import create_model
    kw = {} if num_classes is None else {"num_classes": num_classes}
    torch.manual_seed(0)
    bz = create_model(name, **kw)
    torch.manual_seed(0)
    tm = SHARED[name]()
    if num_classes is not None:
        tm.reset_classifier(num_classes)
    if n_params(bz) != n_params(tm):
        raise AssertionError(f"{name}: blockzoo has {n_params(bz):,} parameters, timm {n_params(tm):,}: not the "
                             f"same architecture")
    return bz, tm


# ------------------------------------------------------------------------------------------------ timing
def _step_fn(model: nn.Module, mode: str, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """One timed call of ``model`` in ``mode`` (the model is put in the right train/eval state by the caller)."""
    if mode == "train":
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
        return step
    bf16 = mode == "eval_bf16"

    def infer() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x)
    return infer


def _deploy(model: nn.Module) -> nn.Module:
    from blockzoo.deploy import reparameterize
    return reparameterize(model.eval()).to(memory_format=torch.channels_last)


def time_pair(bz: nn.Module, tm: nn.Module, modes: tuple[str, ...], batch: int, img: int, reps: int,
              warmup: int) -> dict[str, dict[str, Any]]:
    """Per mode: the blockzoo and timm times (s) of every rep after warm-up, interleaved (the order alternates)."""
    x = torch.randn(batch, 3, img, img)
    y = torch.randint(0, 10, (batch,))
    deploy = _deploy(bz) if "deploy_fp32" in modes else None
    out: dict[str, dict[str, Any]] = {}
    for mode in modes:
        train = mode == "train"
        a = deploy if mode == "deploy_fp32" else bz
        xa = x.contiguous(memory_format=torch.channels_last) if mode == "deploy_fp32" else x
        a.train(train)
        tm.train(train)
        fa, fb = _step_fn(a, "eval_fp32" if mode == "deploy_fp32" else mode, xa, y), \
            _step_fn(tm, "eval_fp32" if mode == "deploy_fp32" else mode, x, y)
        ta: list[float] = []
        tb: list[float] = []
        for r in range(warmup + reps):
            order = ((fa, ta), (fb, tb)) if r % 2 == 0 else ((fb, tb), (fa, ta))
            for f, times in order:
                t = time.perf_counter()
                f()
                times.append(time.perf_counter() - t)
        out[mode] = summarize(ta[warmup:], tb[warmup:])
    bz.train(False)
    return out


def summarize(ta: list[float], tb: list[float]) -> dict[str, Any]:
    """The times (s) of blockzoo (``ta``) and timm (``tb``), rep by rep, and their summary: median times (ms), the
    speed ratio (median of the per-rep ratios timm / blockzoo: each pair ran back to back, so a load change between
    reps cancels), its quartiles, the ratio of the medians and the ratio of the fastest reps."""
    paired = sorted(b / a for a, b in zip(ta, tb))
    q = statistics.quantiles(paired, n=4, method="inclusive") if len(paired) > 1 else [paired[0]] * 3
    return dict(blockzoo_s=ta, timm_s=tb, blockzoo_ms=1e3 * statistics.median(ta), timm_ms=1e3 * statistics.median(tb),
                ratio=statistics.median(paired), paired_p25=q[0], paired_p75=q[2],
                ratio_of_medians=statistics.median(tb) / statistics.median(ta), ratio_min=min(tb) / min(ta))


def geomean(v: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(x) for x in v)) if v else float("nan")


def add_geomean(res: dict[str, Any]) -> None:
    """``res["geomean"]``: the geometric mean of the ratios over the models, per mode and over all modes."""
    ratios = {m: [r[m]["ratio"] for r in res["models"].values()] for m in res["modes"]}
    res["geomean"] = {m: geomean(v) for m, v in ratios.items()}
    res["geomean"]["all"] = geomean([x for v in ratios.values() for x in v])


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3])
    except OSError:
        return "n/a"


# ----------------------------------------------------------------------------------------------- reports
def _machine_line(m: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in m.items() if v is not None)


def render(res: dict[str, Any]) -> str:
    modes = res["modes"]
    a = res["args"]
    lines = [f"# blockzoo vs timm {res['timm_version']}: CPU speed, same architectures, interleaved", "",
             f"- command: `{res['command']}`",
             f"- machine: {_machine_line(res['machine'])}; load average before {res['load_before']}, "
             f"after {res['load_after']}",
             f"- batch {a['batch']} at {a['img']} px, {a['threads']} threads, {a['reps']} reps after {a['warmup']} "
             f"warm-up reps; written {res['written']}",
             "- ratio = median over the reps of timm time / blockzoo time, the two run back to back (> 1: blockzoo "
             "faster); [p25-p75] = quartiles of those per-rep ratios (the noise); min = ratio of the fastest reps",
             "",
             "| model | params | " + " | ".join(f"{m} bz / timm (ms) | {m} ratio [p25-p75] min" for m in modes) + " |",
             "|---|---:|" + "---:|---:|" * len(modes)]
    for name, r in res["models"].items():
        cells = [f"{r[m]['blockzoo_ms']:.1f} / {r[m]['timm_ms']:.1f} | {r[m]['ratio']:.2f} "
                 f"[{r[m]['paired_p25']:.2f}-{r[m]['paired_p75']:.2f}] {r[m]['ratio_min']:.2f}" for m in modes]
        lines.append(f"| {name} | {r['params']:,} | " + " | ".join(cells) + " |")
    g = res["geomean"]
    lines += ["", "Geometric mean of the ratios: " + ", ".join(f"{m} {g[m]:.3f}" for m in modes)
              + f"; all modes {g['all']:.3f}."]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    timm = import_timm()
    torch.set_num_threads(args.threads)
    modes = MODES + (("deploy_fp32",) if args.deploy else ())
    names = args.models.split(",") if args.models else (list(SMOKE_MODELS) if args.smoke else list(SHARED))
    unknown = [n for n in names if n not in SHARED]
    if unknown:
        raise SystemExit(f"not a shared architecture: {', '.join(unknown)}; choose from {', '.join(SHARED)}")
    res: dict[str, Any] = dict(command=shlex.join(["python", *sys.argv]), machine=machine(args.threads),
                               timm_version=timm.__version__, load_before=_load(), modes=list(modes),
                               args={k: getattr(args, k) for k in ("batch", "img", "threads", "reps", "warmup")},
                               models={})
    for name in names:
        bz, tm = build_pair(name, num_classes=10 if args.smoke else None)
        r = time_pair(bz, tm, modes, args.batch, args.img, args.reps, args.warmup)
        res["models"][name] = {"params": n_params(bz), **r}
        print(f"{name:22s} " + "  ".join(f"{m} {r[m]['ratio']:.2f} [{r[m]['paired_p25']:.2f}-{r[m]['paired_p75']:.2f}] "
                                          f"min {r[m]['ratio_min']:.2f}" for m in modes), flush=True)
        del bz, tm
        add_geomean(res)
        res["load_after"] = _load()
        res["written"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        save(res)                                     # after every model: an interrupted run keeps what it measured
    print("geometric mean: " + ", ".join(f"{k} {v:.3f}" for k, v in res["geomean"].items()))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="", help="comma-separated blockzoo names (default: every shared one)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--img", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--deploy", action="store_true", help="also time blockzoo's deploy form against timm's eval")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, 2 models, 2 reps: checks the script runs")
    ap.add_argument("--tag", default="", help="suffix of the result files (speed_vs_timm<tag>.md/.json)")
    ap.add_argument("--out", type=Path, default=ROOT / "results", help="folder of the result files")
    ap.add_argument("--render", type=Path, help="recompute the summaries of a result JSON from its raw times and "
                    "rewrite it and its markdown (no timing)")
    args = ap.parse_args(argv)
    if args.render:
        res = json.loads(args.render.read_text(encoding="utf-8"))
        for r in res["models"].values():
            for m in res["modes"]:
                r[m] = summarize(r[m]["blockzoo_s"], r[m]["timm_s"])
        add_geomean(res)
        args.render.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
        args.render.with_suffix(".md").write_text(render(res), encoding="utf-8")
        return 0
    if args.smoke:
        args.batch, args.img, args.reps, args.warmup, args.threads = 2, 64, 2, 1, 1
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"speed_vs_timm{args.tag}"

    def save(res: dict[str, Any]) -> None:
        Path(f"{stem}.json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
        Path(f"{stem}.md").write_text(render(res), encoding="utf-8")

    run(args, save)
    print(f"wrote {stem}.md and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
