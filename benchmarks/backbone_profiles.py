"""Profile table of backbones at their paper input (and the small-input variants at 28/32 px): params, MACs,
forward latency at batch 1 and training throughput, next to the papers' numbers.

    .venv/bin/python benchmarks/backbone_profiles.py --threads 2 \
        --families convnext,inceptionnext,hornet,unireplknet,lsnet,spartan,affnet,ffnet,pfnet,resnet

Writes benchmarks/results/backbone_profiles.md/.json with the command, machine and load average. MACs are
multiply-accumulates per image (FLOPs = 2 x MACs) from blockzoo.profile.count_macs; latency is the median forward
time in eval mode (fp32, batch 1); train throughput is images/s of full SGD steps (fp32) at --train-batch.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from blockzoo.profile import profile_model
from blockzoo.registry import create_model, get_model_spec, list_models

sys.path.insert(0, str(Path(__file__).parent))
from block_profiles import run_meta  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default="convnext,inceptionnext,hornet,unireplknet,lsnet,spartan,affnet,ffnet,pfnet")
    ap.add_argument("--models", default="resnet50", help="extra models (reference points)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--small-train-batch", type=int, default=64)
    ap.add_argument("--max-params", type=float, default=30e6, help="skip training throughput above this size")
    ap.add_argument("--max-macs", type=float, default=5e9, help="skip training throughput above this many MACs")
    ap.add_argument("--out", default="benchmarks/results/backbone_profiles")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    names = [m for f in a.families.split(",") for m in list_models(family=f)]
    names += [m for m in a.models.split(",") if m]
    load_before = os.getloadavg()
    rows = []
    for name in names:
        spec = get_model_spec(name)
        size = spec.input_size
        small = size[1] <= 64
        torch.manual_seed(0)
        m = create_model(name, num_classes=spec.num_classes)
        n_params = sum(p.numel() for p in m.parameters())
        tb = a.small_train_batch if small else a.train_batch
        from blockzoo.profile import count_macs
        do_train = n_params <= a.max_params and count_macs(m, size).macs <= a.max_macs
        t0 = time.perf_counter()
        r = profile_model(m, size, batch_size=1, train_batch_size=tb, train_step=do_train, memory=False, min_time_s=0.3,
                    warmup=1, iters=None, threads=a.threads, name=name)
        row = {"model": name, "family": spec.family, "input": "x".join(map(str, size)), "params": r.params,
               "paper_params": spec.paper_params, "macs": r.macs, "paper_macs": spec.paper_macs,
               "latency_ms": r.latency_ms["median"], "train_batch": tb if do_train else None,
               "train_img_s": r.train_throughput_img_s if do_train else None, "uncounted": r.uncounted_ops,
               "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    meta = run_meta(a.threads, load_before)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))

    def pct(ours, paper):
        return "" if not paper else f" ({100 * (ours / paper - 1):+.1f}%)"

    lines = ["# Backbone profiles", "", f"- Command: `{meta['command']}`",
             f"- Machine: {meta['cpu']}, {a.threads} threads, torch {meta['torch']}, {meta['date']}; load average "
             f"before/after {load_before[0]:.1f} / {meta['loadavg_after'][0]:.1f} (other jobs were running: "
             "timings are indicative).",
             "- MACs per image at the model's paper input (FLOPs = 2 x MACs; blockzoo.profile.count_macs, conv/linear/"
             "matmul/SDPA/FFT). Latency: median fp32 forward, eval, batch 1. Train: fp32 SGD steps, images/s.", "",
             "| model | input | params | paper params | MACs (G) | paper MACs (G) | latency ms (bs1) "
             "| train img/s (bs) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pp = f"{r['paper_params'] / 1e6:.2f}M{pct(r['params'], r['paper_params'])}" if r["paper_params"] else ""
        pm = f"{r['paper_macs'] / 1e9:.2f}{pct(r['macs'], r['paper_macs'])}" if r["paper_macs"] else ""
        tr = "—" if r["train_img_s"] is None else f"{r['train_img_s']:.1f} ({r['train_batch']})"
        lines.append(f"| `{r['model']}` | {r['input']} | {r['params']:,} | {pp} | {r['macs'] / 1e9:.3f} | {pm} | "
                     f"{r['latency_ms']:.1f} | {tr} |")
    by = {r["model"]: r for r in rows}
    if "inception_next_tiny" in by and "convnext_tiny" in by and by["convnext_tiny"]["train_img_s"]:
        ratio = by["inception_next_tiny"]["train_img_s"] / by["convnext_tiny"]["train_img_s"]
        lines += ["", f"InceptionNeXt-T / ConvNeXt-T training throughput on this CPU: **{ratio:.2f}x** "
                  "(paper: 1.6x on an A100 GPU, batch 128, full precision)."]
    lines += ["", "Notes: the UniRepLKNet and FFNet papers count the re-parameterised (deploy) structure; this table "
              "profiles the training structure. After `blockzoo.deploy.reparameterize(model)`: unireplknet_a "
              "4,437,300 params / 0.640 GMACs, unireplknet_t 31,037,980 / 4.899 G, ffnet_1..4 13,660,152 / "
              "26,908,440 / 48,330,632 / 79,200,360 params (tests assert both forms). SpaRTAN, AFFNet and FFNet-1..3 "
              "are profiled at 256 px, the resolution of their official configs; LSNet's and AFFNet's papers round "
              "to 0.1 G (see the model docstrings for the rounding analysis)."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
