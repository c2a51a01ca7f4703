"""Effective receptive fields (``blockzoo.analysis.erf``) of the ConvNet token mixers in one small skeleton, trained
on Fashion-MNIST (3 seeds) and at initialisation, and of the paper backbones at initialisation. The large-kernel
claim run ``benchmarks/claims/analysis_erf_large_kernel.py`` (dwconv vs dilated_reparam) decides its verdict from
this benchmark's trained runs (``--from-benchmark``; both use ``benchmarks/claims/analysis_common.py``'s recipe).
The attention-collapse curves of a deep ViT vs DeepViT are ``benchmarks/attention_collapse.py`` ->
``benchmarks/results/attention_collapse.md`` (not redone here).

    .venv/bin/python benchmarks/analysis_erf.py                  # both parts at the recorded budget
    .venv/bin/python benchmarks/analysis_erf.py --part trained   # only the trained part (keeps erf.json's init part)
    .venv/bin/python benchmarks/analysis_erf.py --smoke          # seconds: 2 mixers, 1 backbone, tiny inputs

1. Trained (``--part trained``): ``convnext_atto_small`` (1 channel; depths 1/1/3/1 and dims 24/48/96/192, a
   cheaper variant: ``analysis_common.SKELETON``) with each ConvNet mixer of :data:`MIXERS` (``--mixers``), trained
   per seed by ``analysis_common.Recipe`` (AdamW, the trainer's defaults otherwise; the budget is in ``erf.md``),
   then the ERF of ``stages.2`` (stride 8) over the first test images on a 64-px canvas; test accuracy alongside;
   the heat maps of seed 0 in ``mixers_trained.png``. Results are written after each mixer, so a stopped run keeps
   the finished ones (``erf.md`` lists those not measured).
2. At init (``--part init``): the registered ``convnext_atto_small`` (depths 2/2/6/2) with the same mixers, ERF of
   ``stages.2`` on standard-normal 64 x 64 inputs,
   at the paper's layer-scale init (1e-6: the residual branches are nearly silent, so every mixer shows the skip
   path's ERF) and with ``ls_init_value=1`` (the branches at full strength: what each mixer adds at init); and the
   registered paper models of :data:`BACKBONES` (3 channels, 128 x 128 inputs), the ERF of the feature map at stride
   16 (the deepest one at most 16 where a model has none), at their paper initialisation.

Numbers: the high-contribution area ratios (20 / 30 / 50 / 99 %, of the input area), mean ± std over the seeds.
Writes ``benchmarks/results/analysis_erf/{erf.json, erf.md, mixers_trained.png, mixers_init.png,
backbones_init.png}``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "claims"))
from analysis_common import SMOKE, Recipe, add_arguments, summarize  # noqa: E402

from blockzoo import create_model  # noqa: E402
from blockzoo.analysis.erf import THRESHOLDS, erf, plot_erf  # noqa: E402
from blockzoo.env import machine  # noqa: E402
from blockzoo.files import atomic_write_text  # noqa: E402
from blockzoo.report.stats import mean_std  # noqa: E402

MIXERS = ("dwconv", "dilated_reparam", "gnconv", "ls_conv", "inception_dw", "ffnified", "spartan", "pool")
BACKBONES = ("resnet18", "convnext_atto", "hornet_atto", "unireplknet_a", "lsnet_t")
CLAIM = Path("benchmarks/results/claims/analysis_erf_large_kernel.json")


def stage_at(model: torch.nn.Module, stride: int) -> str:
    """The feature map at ``stride``, else the deepest one with a smaller reduction."""
    info = [f for f in model.feature_info if f["reduction"] <= stride]
    return info[-1]["module"]


def measure(name: str, seeds: int, images: int, size: int, chans: int, layer: str | None, **kw) -> dict:
    rows, first = [], None
    for seed in range(seeds):
        torch.manual_seed(seed)
        model = create_model(name, num_classes=10, in_chans=chans, **kw)
        x = torch.randn(images, chans, size, size, generator=torch.Generator().manual_seed(100 + seed))
        res = erf(model, x, layer or stage_at(model, 16))
        rows.append({str(t): v["ratio"] for t, v in res.areas.items()})
        first = first or res
    return {"layer": first.layer, "out_size": list(first.out_size), "per_seed": rows,
            "mean_std": {str(t): mean_std([r[str(t)] for r in rows]) for t in THRESHOLDS}, "_result": first}


def _pct(ms: list[float]) -> str:
    return f"{100 * ms[0]:.2f} ± {100 * ms[1]:.2f}"


def _cells(stats: dict) -> str:
    return " | ".join(_pct(stats[str(t)]) for t in THRESHOLDS)


def _load(meta: dict) -> str:
    return f"load average before/after {meta['load_before']} / {meta['load_after']}"


def render(res: dict) -> str:
    head = "| " + " | ".join(f"{int(100 * t)}% area %" for t in THRESHOLDS) + " |"
    sep = "|---|---|---|" + "---|" * len(THRESHOLDS)
    lines = ["# Effective receptive fields (blockzoo.analysis.erf)", "",
             "Area ratios: the smallest centred square holding t of log10(E+1)/max (RepLKNet's analysis), % of the "
             "input; mean ± std over the seeds.", ""]
    if res.get("trained"):
        tr, m = res["trained"], res["trained"]["meta"]
        lines += [f"## Trained: the mixers in {m['model']} ({m['layer']}, stride 8, {m['canvas']}-px canvas)", "",
                  f"- Command: `{m['command']}`", f"- Machine: {m['machine']['cpu']}, torch {m['machine']['torch']}, "
                  f"{m['machine']['threads']} threads; {_load(m)}; wall time {m['wall_s'] / 60:.1f} min "
                  "(a shared machine: the idle cost is lower).", f"- Budget: {m['budget']}.",
                  "- Heat maps of seed 0: `mixers_trained.png`.", "",
                  "| mixer | test acc % | " + head[2:] + " 20% at init |", "|---|---|" + "---|" * len(THRESHOLDS)
                  + "---|"]
        for mixer, r in tr["mixers"].items():
            s = r["mean_std"]
            lines.append(f"| {mixer} | {_pct(s['acc'])} | {_cells(s['trained'])} | {_pct(s['init']['0.2'])} |")
        accs = [100 * r["mean_std"]["acc"][0] for r in tr["mixers"].values()]
        if accs:
            lines += ["", f"Mean test accuracy {min(accs):.1f}-{max(accs):.1f}% (full Fashion-MNIST training reaches "
                      "> 90%): the maps are those of partly trained models at this CPU budget."]
        missing = [x for x in m.get("requested", ()) if x not in tr["mixers"]]
        if missing:
            lines += ["", f"Not measured (the run was stopped before them): {', '.join(missing)}."]
        lines.append("")
    if res.get("mixers"):
        m = res["meta"]
        lines += [f"## At initialisation: the mixers in convnext_atto_small (stages.2, stride 8, {m['mixer_size']}-px "
                  "input)", "", f"- Command: `{m['command']}`", f"- Machine: {m['machine']['cpu']}, torch "
                  f"{m['machine']['torch']}; {_load(m)}.", f"- Budget: {m['seeds']} weight seeds x {m['images']} "
                  "standard-normal images each.", "", "| mixer | ls_init_value | output " + head, sep]
        for key, r in res["mixers"].items():
            mixer, ls = key.split("@")
            lines.append(f"| {mixer} | {ls} | {r['out_size'][0]}x{r['out_size'][1]} | {_cells(r['mean_std'])} |")
        lines += ["", f"## Paper backbones at their initialisation ({m['backbone_size']}-px input, stride-16 map)", "",
                  "| model | layer | output " + head, sep]
        for name, r in res["backbones"].items():
            lines.append(f"| {name} | {r['layer']} | {r['out_size'][0]}x{r['out_size'][1]} | {_cells(r['mean_std'])} |")
        lines += ["", "At initialisation the residual branches of these backbones are (nearly) silent by design: "
                  "ResNet's zero-initialised last BN of each block (`zero_init_last=True`, as timm), the layer scale "
                  "1e-6 of ConvNeXt / UniRepLKNet / HorNet (and UniRepLKNet's zero-initialised GRN). Their ERFs at "
                  "init are mostly those of the stem and downsampling path, not of the kernels; the mixer table's "
                  "`ls_init_value=1` rows show what the kernels add. The area ratios are taken on log10(E+1)/max, "
                  "which is not scale-invariant: UniRepLKNet-A's contribution map at init is ~1e-7 in magnitude "
                  "(ConvNeXt-atto's max ~3, seed 0), so the two are not compared on the same footing (seed 0, linear "
                  "scale: UniRepLKNet-A 2.7 / 4.5 / 24.2 / 100 %, ConvNeXt-atto 1.4 / 1.8 / 3.2 / 5.9 %). The papers' "
                  "ERF claims are about trained models: see the trained table and the claim run.", ""]
    lines += ["## The large-kernel claim run", ""]
    if res.get("claim"):
        c = res["claim"]
        lines += [f"- `{CLAIM}`: **{c['verdict']}**: {c['summary']}", f"- budget: {c['budget']}"]
    else:
        lines.append(f"- not run yet: `python benchmarks/claims/analysis_erf_large_kernel.py --from-benchmark "
                     f"benchmarks/results/analysis_erf/erf.json` writes `{CLAIM}`")
    lines += ["", "Attention collapse (deep ViT vs DeepViT): `benchmarks/results/attention_collapse.md`."]
    return "\n".join(lines) + "\n"


def _meta(a: argparse.Namespace, argv: list[str] | None, load_before: str) -> dict:
    return {"command": "python benchmarks/analysis_erf.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "machine": machine(a.threads), "load_before": load_before,
            "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg())}


def run_init(a: argparse.Namespace, mixers: tuple, backbones: tuple, out: Path) -> dict:
    res: dict = {"mixers": {}, "backbones": {}}
    for ls in (1e-6, 1.0):
        for mixer in mixers:
            res["mixers"][f"{mixer}@{ls:g}"] = measure("convnext_atto_small", a.seeds, a.images, a.mixer_size, 1,
                                                       "stages.2", mixer=mixer, ls_init_value=ls)
            print(f"{mixer} ls={ls:g}: {res['mixers'][f'{mixer}@{ls:g}']['mean_std']}", flush=True)
    for name in backbones:
        res["backbones"][name] = measure(name, a.seeds, a.images, a.backbone_size, 3, None)
        print(f"{name}: {res['backbones'][name]['mean_std']}", flush=True)
    plot_erf([(k.replace("@", " ls="), r["_result"]) for k, r in res["mixers"].items() if k.endswith("@1")],
             out / "mixers_init.png", title="convnext_atto_small stages.2 at init, ls_init_value=1")
    plot_erf([(k, r["_result"]) for k, r in res["backbones"].items()], out / "backbones_init.png",
             title="paper backbones at init, stride-16 feature map")
    for group in ("mixers", "backbones"):
        for r in res[group].values():
            r.pop("_result")
    return res


def run_trained(a: argparse.Namespace, mixers: tuple, out: Path, save: Callable[[dict], None]) -> None:
    """Train and measure each mixer; ``save(part)`` after each one (a stopped run keeps the finished mixers)."""
    recipe = Recipe(a)
    res: dict = {"mixers": {}, "meta": {"model": "convnext_atto_small", "layer": a.layer, "canvas": a.canvas,
                                        "seeds": a.seeds, "requested": list(mixers),
                                        "budget": recipe.budget(", ".join(mixers), a.seeds)}}
    maps = []
    for mixer in mixers:
        runs = []
        for seed in range(a.seeds):
            row, _, trained = recipe.run(mixer, seed)
            runs.append(row)
            if seed == 0:
                maps.append((mixer, trained))
        res["mixers"][mixer] = {"per_seed": runs, "mean_std": summarize(runs)}
        plot_erf(maps, out / "mixers_trained.png", title=f"convnext_atto_small {a.layer} trained on Fashion-MNIST, "
                                                         "seed 0")
        save(res)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("all", "trained", "init"), default="all",
                    help="what to (re)measure; the other part is kept from <out-dir>/erf.json when it exists")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--images", type=int, default=4, help="init part: random images per seed")
    ap.add_argument("--mixer-size", type=int, default=64, help="init part: input side for the mixers")
    ap.add_argument("--backbone-size", type=int, default=128, help="init part: input side for the backbones")
    ap.add_argument("--mixers", default=",".join(MIXERS), help="trained part: comma-separated mixers (default: all)")
    add_arguments(ap, threads=2)
    ap.add_argument("--smoke", action="store_true", help="2 mixers, 1 backbone, 1 seed, tiny inputs and data")
    ap.add_argument("--out-dir", default="benchmarks/results/analysis_erf")
    ap.add_argument("--render-only", action="store_true", help="rewrite erf.md from erf.json (and the claim run)")
    a = ap.parse_args(argv)
    out = Path(a.out_dir)
    rec = json.loads((out / "erf.json").read_text(encoding="utf-8")) if (out / "erf.json").exists() else {}
    if not a.render_only:
        mixers, backbones = tuple(m.strip() for m in a.mixers.split(",") if m.strip()), BACKBONES
        if a.smoke:
            mixers, backbones = MIXERS[:2], BACKBONES[:1]
            vars(a).update(SMOKE, seeds=1, images=1, mixer_size=32, backbone_size=64)
        torch.set_num_threads(a.threads)
        out.mkdir(parents=True, exist_ok=True)
        if a.part in ("all", "init"):
            load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
            res = run_init(a, mixers, backbones, out)
            meta = {**_meta(a, argv, load_before), "seeds": a.seeds, "images": a.images,
                    "mixer_size": a.mixer_size, "backbone_size": a.backbone_size}
            rec.update(res, meta=meta)
        if a.part in ("all", "trained"):
            load_before, t0 = " ".join(f"{x:.1f}" for x in os.getloadavg()), time.perf_counter()

            def save(part: dict) -> None:
                part["meta"].update(_meta(a, argv, load_before), wall_s=time.perf_counter() - t0)
                rec["trained"] = part
                write(rec, out)

            run_trained(a, mixers, out, save)
    write(rec, out)
    return 0


def write(rec: dict, out: Path) -> None:
    """``erf.json`` and ``erf.md`` from ``rec`` (with the claim run's verdict, when there is one)."""
    if CLAIM.exists():
        c = json.loads(CLAIM.read_text(encoding="utf-8"))
        rec["claim"] = {k: c[k] for k in ("verdict", "summary", "budget")}
    atomic_write_text(out / "erf.json", json.dumps(rec, indent=1) + "\n")
    atomic_write_text(out / "erf.md", render(rec))
    print(f"written {out / 'erf.md'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
