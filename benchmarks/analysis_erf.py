"""Effective receptive fields (``blockzoo.analysis.erf``) of the ConvNet token mixers in one small skeleton and of
the paper backbones, at initialisation; the trained comparison is the claim run
``benchmarks/claims/analysis_erf_large_kernel.py`` (dwconv vs dilated_reparam trained on Fashion-MNIST, 3 seeds),
whose numbers this report links. The attention-collapse curves of a deep ViT vs DeepViT are
``benchmarks/attention_collapse.py`` -> ``benchmarks/results/attention_collapse.md`` (not redone here).

    .venv/bin/python benchmarks/analysis_erf.py            # the recorded budget (a few minutes on 2 cores)
    .venv/bin/python benchmarks/analysis_erf.py --smoke    # seconds: 2 mixers, 1 backbone, tiny inputs

1. Mixers: ``convnext_atto_small`` (1 channel) with each ConvNet mixer of :data:`MIXERS`, ERF of ``stages.2``
   (stride 8) on standard-normal 64 x 64 inputs, at the paper's layer-scale init (1e-6: the residual branches are
   nearly silent, so every mixer shows the skip path's ERF) and with ``ls_init_value=1`` (the branches at full
   strength: what each mixer adds at init).
2. Backbones: the registered paper models of :data:`BACKBONES` (3 channels, 128 x 128 inputs), the ERF of the
   feature map at stride 16 (the deepest one at most 16 where a model has none), at their paper initialisation.

Numbers: the high-contribution area ratios (20 / 30 / 50 / 99 %, of the input area), mean ± std over the weight
seeds. Writes ``benchmarks/results/analysis_erf/{erf.json, erf.md, mixers_init.png, backbones_init.png}``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from blockzoo import create_model
from blockzoo.analysis.erf import THRESHOLDS, erf, plot_erf
from blockzoo.env import machine
from blockzoo.files import atomic_write_text
from blockzoo.report.stats import mean_std

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


def _cells(r: dict) -> str:
    return " | ".join(f"{100 * r['mean_std'][str(t)][0]:.2f} ± {100 * r['mean_std'][str(t)][1]:.2f}"
                      for t in THRESHOLDS)


def render(res: dict, meta: dict) -> str:
    head = "| " + " | ".join(f"{int(100 * t)}% area %" for t in THRESHOLDS) + " |"
    sep = "|---|---|---|" + "---|" * len(THRESHOLDS)
    lines = ["# Effective receptive fields at initialisation (blockzoo.analysis.erf)", "",
             f"- Command: `{meta['command']}`", f"- Machine: {meta['machine']['cpu']}, torch "
             f"{meta['machine']['torch']}; load average before/after {meta['load_before']} / {meta['load_after']}.",
             f"- Budget: {meta['seeds']} weight seeds x {meta['images']} standard-normal images each; area ratios "
             "of the smallest centred square holding t of log10(E+1)/max (RepLKNet's analysis), % of the input.",
             "", f"## Mixers in convnext_atto_small (stages.2, stride 8, {meta['mixer_size']}-px input)", "",
             "| mixer | ls_init_value | output " + head, sep]
    for key, r in res["mixers"].items():
        mixer, ls = key.split("@")
        lines.append(f"| {mixer} | {ls} | {r['out_size'][0]}x{r['out_size'][1]} | {_cells(r)} |")
    lines += ["", f"## Paper backbones at their initialisation ({meta['backbone_size']}-px input, stride-16 map)", "",
              "| model | layer | output " + head, sep]
    for name, r in res["backbones"].items():
        lines.append(f"| {name} | {r['layer']} | {r['out_size'][0]}x{r['out_size'][1]} | {_cells(r)} |")
    lines += ["", "At initialisation the residual branches of these backbones are (nearly) silent by design: ResNet's "
              "zero-initialised last BN of each block (`zero_init_last=True`, as timm), the layer scale 1e-6 of "
              "ConvNeXt / UniRepLKNet / HorNet (and UniRepLKNet's zero-initialised GRN). Their ERFs at init are "
              "mostly those of the stem and downsampling path, not of the kernels; the mixer table's "
              "`ls_init_value=1` rows show what the kernels add. The area ratios are taken on log10(E+1)/max, which "
              "is not scale-invariant: UniRepLKNet-A's contribution map at init is ~1e-7 in magnitude (ConvNeXt-atto's "
              "max ~3, seed 0), so the two are not compared on the same footing (seed 0, linear scale: UniRepLKNet-A "
              "2.7 / 4.5 / 24.2 / 100 %, ConvNeXt-atto 1.4 / 1.8 / 3.2 / 5.9 %). The papers' ERF claims are about "
              "trained models: see the claim run below."]
    lines += ["", "## Trained (the claim run)", ""]
    if res.get("claim"):
        c = res["claim"]
        lines += [f"- `{CLAIM}`: **{c['verdict']}**: {c['summary']}", f"- budget: {c['budget']}"]
    else:
        lines.append(f"- not run yet: `python benchmarks/claims/analysis_erf_large_kernel.py` writes `{CLAIM}`")
    lines += ["", "Attention collapse (deep ViT vs DeepViT): `benchmarks/results/attention_collapse.md`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--images", type=int, default=4, help="random images per seed")
    ap.add_argument("--mixer-size", type=int, default=64)
    ap.add_argument("--backbone-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="2 mixers, 1 backbone, 1 seed, tiny inputs")
    ap.add_argument("--out-dir", default="benchmarks/results/analysis_erf")
    ap.add_argument("--render-only", action="store_true", help="rewrite erf.md from erf.json (and the claim run)")
    a = ap.parse_args(argv)
    out = Path(a.out_dir)
    if a.render_only:
        rec = json.loads((out / "erf.json").read_text(encoding="utf-8"))
        if CLAIM.exists():
            c = json.loads(CLAIM.read_text(encoding="utf-8"))
            rec["claim"] = {k: c[k] for k in ("verdict", "summary", "budget")}
        atomic_write_text(out / "erf.md", render(rec, rec["meta"]))
        return 0
    mixers, backbones = MIXERS, BACKBONES
    if a.smoke:
        mixers, backbones, a.seeds, a.images, a.mixer_size, a.backbone_size = MIXERS[:2], BACKBONES[:1], 1, 1, 32, 64
    torch.set_num_threads(a.threads)
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    res: dict = {"mixers": {}, "backbones": {}}
    for ls in (1e-6, 1.0):
        for mixer in mixers:
            res["mixers"][f"{mixer}@{ls:g}"] = measure("convnext_atto_small", a.seeds, a.images, a.mixer_size, 1,
                                                       "stages.2", mixer=mixer, ls_init_value=ls)
            print(f"{mixer} ls={ls:g}: {res['mixers'][f'{mixer}@{ls:g}']['mean_std']}", flush=True)
    for name in backbones:
        res["backbones"][name] = measure(name, a.seeds, a.images, a.backbone_size, 3, None)
        print(f"{name}: {res['backbones'][name]['mean_std']}", flush=True)
    if CLAIM.exists():
        c = json.loads(CLAIM.read_text(encoding="utf-8"))
        res["claim"] = {k: c[k] for k in ("verdict", "summary", "budget")}
    out.mkdir(parents=True, exist_ok=True)
    plot_erf([(k.replace("@", " ls="), r["_result"]) for k, r in res["mixers"].items() if k.endswith("@1")],
             out / "mixers_init.png", title="convnext_atto_small stages.2 at init, ls_init_value=1")
    plot_erf([(k, r["_result"]) for k, r in res["backbones"].items()], out / "backbones_init.png",
             title="paper backbones at init, stride-16 feature map")
    meta = {"command": "python benchmarks/analysis_erf.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "machine": machine(a.threads), "seeds": a.seeds, "images": a.images, "mixer_size": a.mixer_size,
            "backbone_size": a.backbone_size, "load_before": load_before,
            "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    for group in ("mixers", "backbones"):
        for r in res[group].values():
            r.pop("_result")
    atomic_write_text(out / "erf.json", json.dumps({"meta": meta, **res}, indent=1) + "\n")
    atomic_write_text(out / "erf.md", render(res, meta))
    print(f"written {out / 'erf.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
