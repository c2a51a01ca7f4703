"""Profile every registered block of the given slots at fixed feature-map sizes: params, MACs, forward latency.

    .venv/bin/python benchmarks/block_profiles.py --slots attn --sizes 64x56x56,256x14x14 --threads 1

Writes benchmarks/results/block_profiles_<slots>.md and .json (with the command, the machine and the load average).
Latency: median forward time in eval mode, fp32, batch 1, after warm-up (blockzoo.profile).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

import blockzoo
from blockzoo.env import device_name
from blockzoo.profile import profile_model
from blockzoo.registry import create_block, get_block_spec, list_blocks


def run_meta(threads: int, load_before: tuple[float, ...], **extra) -> dict:
    """What every recorded benchmark states: command, CPU, threads, torch, date and the load average around it."""
    return {"command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]), "cpu": device_name("cpu"),
            "threads": threads,
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M"), **extra,
            "loadavg_before": load_before, "loadavg_after": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slots", default="attn")
    ap.add_argument("--sizes", default="64x56x56,256x14x14")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",")]
    slots = a.slots.split(",")
    load_before = os.getloadavg()
    rows = []
    for slot in slots:
        for name in list_blocks(slot=slot):
            spec = get_block_spec(name)
            for c, h, w in sizes:
                kw = {"input_resolution": (h, w)} if spec.requires.fixed_resolution else {}
                if spec.slot == "conv":
                    kw.update(out_channels=c if spec.requires.keeps_channels else c, stride=1)
                row = {"block": name, "slot": slot, "input": f"{c}x{h}x{w}"}
                try:
                    torch.manual_seed(0)
                    m = create_block(name, c, **kw)
                    r = profile_model(m, (c, h, w), batch_size=a.batch_size, train_step=False, memory=False,
                                min_time_s=a.min_time, threads=a.threads, name=name)
                    row.update(params=r.params, macs=r.macs, latency_ms=r.latency_ms["median"],
                               latency_iqr_ms=r.latency_ms["iqr"], uncounted=r.uncounted_ops)
                except Exception as e:  # recorded, not hidden
                    row.update(error=f"{type(e).__name__}: {e}")
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    meta = run_meta(a.threads, load_before, blockzoo=blockzoo.__version__, batch_size=a.batch_size)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = "_".join(slots)
    (out / f"block_profiles_{tag}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# Block profiles ({', '.join(slots)} slots)", "",
             f"- Command: `{meta['command']}`",
             f"- Machine: {meta['cpu']}, {a.threads} thread(s), torch {meta['torch']}, {meta['date']}; "
             f"load average before/after: {load_before[0]:.1f} / {meta['loadavg_after'][0]:.1f} "
             "(other jobs were running: latencies are indicative, compare within this table only).",
             f"- Params; MACs per image (multiply-accumulates, FLOPs = 2 x MACs; blockzoo.profile.count_macs); "
             f"latency = median forward time, eval mode, fp32, batch {a.batch_size}, after warm-up.", "",
             "| block | input | params | MACs (M) | latency ms | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| `{r['block']}` | {r['input']} | — | — | — | {r['error'][:120]} |")
        else:
            note = ("uncounted: " + ", ".join(r["uncounted"])) if r["uncounted"] else ""
            lines.append(f"| `{r['block']}` | {r['input']} | {r['params']:,} | {r['macs'] / 1e6:.3f} | "
                         f"{r['latency_ms']:.3f} | {note} |")
    (out / f"block_profiles_{tag}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
