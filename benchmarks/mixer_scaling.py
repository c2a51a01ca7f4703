"""Cost growth with input size for every `mixer` block: MACs and CPU latency at 32, 64, 128, 224, 384 px.

    .venv/bin/python benchmarks/mixer_scaling.py --channels 64 --sizes 32,64,128,224,384 --threads 1

One mixer at a fixed width (default 64 channels) on a C x S x S map, batch 1, fp32, eval mode. Writes
benchmarks/results/mixer_scaling.{md,json,png} with the command, machine and load average.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from blockzoo.profile import profile_model
from blockzoo.registry import create_block, list_blocks

sys.path.insert(0, str(Path(__file__).parent))
from block_profiles import run_meta  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--sizes", default="32,64,128,224,384")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-time", type=float, default=0.2)
    ap.add_argument("--out", default="benchmarks/results/mixer_scaling")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    sizes = [int(s) for s in a.sizes.split(",")]
    load_before = os.getloadavg()
    data: dict[str, dict[str, list]] = {}
    for name in list_blocks(slot="mixer"):
        torch.manual_seed(0)
        try:
            m = create_block(name, a.channels)
        except Exception as e:
            print(f"skip {name}: {e}", file=sys.stderr)
            continue
        rec = {"size": [], "macs": [], "latency_ms": []}
        for s in sizes:
            try:
                r = profile_model(m, (a.channels, s, s), train_step=False, memory=False, min_time_s=a.min_time,
                            threads=a.threads, name=name)
                rec["size"].append(s)
                rec["macs"].append(r.macs)
                rec["latency_ms"].append(r.latency_ms["median"])
            except Exception as e:  # e.g. a size a mixer cannot take: recorded as missing
                print(f"{name} @ {s}: {type(e).__name__}: {e}", file=sys.stderr)
        data[name] = rec
        print(name, json.dumps(rec), file=sys.stderr, flush=True)
    meta = run_meta(a.threads, load_before, channels=a.channels)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "mixers": data}, indent=2))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    for name, rec in data.items():
        if rec["size"]:
            axes[0].plot(rec["size"], [m / 1e6 for m in rec["macs"]], marker="o", label=name)
            axes[1].plot(rec["size"], rec["latency_ms"], marker="o", label=name)
    for ax, yl in zip(axes, ("MACs (M)", "latency (ms, batch 1, fp32)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"input size (px), {a.channels} channels")
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(f"Mixer cost vs input size ({meta['cpu']}, {a.threads} thread(s))", fontsize=10)
    fig.savefig(out.with_suffix(".png"), dpi=110)
    lines = ["# Mixer cost growth with input size", "", f"- Command: `{meta['command']}`",
             f"- Machine: {meta['cpu']}, {a.threads} thread(s), torch {meta['torch']}, {meta['date']}; load average "
             f"before/after {load_before[0]:.1f} / {meta['loadavg_after'][0]:.1f} (other jobs were running).",
             f"- One mixer at {a.channels} channels on an S x S map, batch 1, fp32, eval. MACs per image "
             "(FLOPs = 2 x MACs). Plot: `mixer_scaling.png`.", "",
             "| mixer | " + " | ".join(f"MACs (M) @ {s}" for s in sizes) + " | " +
             " | ".join(f"ms @ {s}" for s in sizes) + " |",
             "|---|" + "---|" * (2 * len(sizes))]
    for name, rec in data.items():
        by = dict(zip(rec["size"], zip(rec["macs"], rec["latency_ms"])))
        macs = " | ".join(f"{by[s][0] / 1e6:.2f}" if s in by else "—" for s in sizes)
        lat = " | ".join(f"{by[s][1]:.2f}" if s in by else "—" for s in sizes)
        lines.append(f"| `{name}` | {macs} | {lat} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
