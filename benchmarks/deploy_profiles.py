"""Training form vs deploy form (``blockzoo.deploy.reparameterize``) of the re-parameterisable backbones:
params, MACs and CPU forward latency, plus the max abs difference of the eval outputs.

    .venv/bin/python benchmarks/deploy_profiles.py --threads 1

Writes benchmarks/results/deploy_profiles.md/.json with the command, machine and load average. MACs per image from
blockzoo.profile.count_macs (FLOPs = 2 x MACs); latency: median fp32 eval forward at batch 1 after warm-up, in the
same process for both forms. The same table for one model: ``blockzoo profile unireplknet_a`` vs ``... --deploy``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from blockzoo.deploy import reparameterize
from blockzoo.profile import profile_model
from blockzoo.registry import create_model, get_model_spec

sys.path.insert(0, str(Path(__file__).parent))
from block_profiles import run_meta  # noqa: E402

DEFAULT = "unireplknet_a,unireplknet_t,ffnet_1,lsnet_t,lsnet_s,lsnet_b"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=DEFAULT)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/deploy_profiles")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    load_before = os.getloadavg()
    rows = []
    for name in a.models.split(","):
        size = get_model_spec(name).input_size
        torch.manual_seed(0)
        train_form = create_model(name).eval()
        with torch.no_grad():  # non-trivial BN statistics and layer scales (1e-6 at init would hide any mismatch)
            for mod in train_form.modules():
                if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                    mod.running_mean.uniform_(-0.1, 0.1)
                    mod.running_var.uniform_(0.5, 1.5)
                elif type(mod).__name__ == "LayerScale":
                    for p in mod.parameters():
                        p.uniform_(0.1, 0.3)
        deploy = reparameterize(train_form)  # a converted copy; train_form is unchanged
        x = torch.randn(1, *size)
        with torch.no_grad():
            diff = (train_form(x) - deploy(x)).abs().max().item()
        reps = [profile_model(m, size, batch_size=1, train_step=False, memory=False, min_time_s=1.0, threads=a.threads,
                        name=name) for m in (train_form, deploy)]
        row = {"model": name, "input": "x".join(map(str, size)), "max_abs_diff": diff,
               **{f"{k}_{form}": v for form, r in zip(("train", "deploy"), reps)
                  for k, v in (("params", r.params), ("macs", r.macs), ("latency_ms", r.latency_ms["median"]),
                               ("latency_iqr_ms", r.latency_ms["iqr"]))}}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    meta = run_meta(a.threads, load_before)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = ["# Deploy form vs training form", "", f"- Command: `{meta['command']}`",
             f"- Machine: {meta['cpu']}, {a.threads} thread(s), torch {meta['torch']}, {meta['date']}; load average "
             f"before/after {load_before[0]:.1f} / {meta['loadavg_after'][0]:.1f}.",
             "- MACs per image (FLOPs = 2 x MACs). Latency: median fp32 eval forward, batch 1, after warm-up (IQR in "
             "brackets). max |diff|: largest absolute difference of the logits of the two forms (random weights, "
             "randomised BN statistics, layer scales set to 0.1-0.3).", "",
             "| model | input | params train -> deploy | GMACs train -> deploy | latency ms train -> deploy | speed-up "
             "| max abs diff |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| `{r['model']}` | {r['input']} | {r['params_train']:,} -> {r['params_deploy']:,} | "
            f"{r['macs_train'] / 1e9:.3f} -> {r['macs_deploy'] / 1e9:.3f} | {r['latency_ms_train']:.1f} "
            f"[{r['latency_iqr_ms_train']:.1f}] -> {r['latency_ms_deploy']:.1f} [{r['latency_iqr_ms_deploy']:.1f}] | "
            f"{r['latency_ms_train'] / r['latency_ms_deploy']:.2f}x | {r['max_abs_diff']:.1e} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
