"""Cost vs input size of the vision transformers: global attention (ViT/DeiT, ConViT) grows quadratically with the
number of pixels, window attention (Swin, Swin V2) and halo attention linearly.

    .venv/bin/python benchmarks/attention_scaling.py --sizes 64,128,224,384,512 --threads 2
    .venv/bin/python benchmarks/attention_scaling.py --smoke          # tiny sizes, no latency (the suite's check)

Each model at its paper settings (1000 classes, 3 channels) is built for each input size (``img_size=S``: position
embeddings resampled, windows clamped as the official code does) and profiled: MACs per image with
``blockzoo.profile.count_macs`` (FLOPs = 2 x MACs; scaled-dot-product attention counted exactly) and, unless
``--no-latency``, the median fp32 eval latency at batch 1 after warm-up. The growth exponent between consecutive sizes
is ``log(MACs ratio) / log(pixel ratio)``: 1 is linear in the number of pixels, 2 quadratic (the token MLPs and
projections are linear in every model, so a global-attention model approaches 2 only once attention dominates).
Writes ``benchmarks/results/attention_scaling.{md,json,png}`` with the command, the machine and the load average.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch

from blockzoo import create_model
from blockzoo.env import machine
from blockzoo.errors import BlockzooError
from blockzoo.files import atomic_write_text
from blockzoo.profile import count_macs, profile_model

MODELS = ("vit_tiny_patch16_224", "deit_small_patch16_224", "convit_tiny", "swin_tiny_patch4_window7_224",
          "swinv2_tiny_window8_256", "halonet_h0")
SMOKE_MODELS = ("vit_tiny_patch4_32", "swin_nano_patch2_window4_32")


def growth(sizes: list[int], macs: list[float]) -> list[float]:
    """The exponent of MACs in the number of pixels between consecutive sizes."""
    return [math.log(macs[i + 1] / macs[i]) / math.log((sizes[i + 1] / sizes[i]) ** 2) for i in range(len(sizes) - 1)]


def measure(name: str, sizes: list[int], latency: bool, threads: int, min_time: float) -> dict:
    rec: dict = {"size": [], "macs": [], "latency_ms": [], "skipped": {}}
    for s in sizes:
        torch.manual_seed(0)
        try:
            m = create_model(name, img_size=s).eval()
        except BlockzooError as e:
            rec["skipped"][s] = str(e)
            continue
        macs = count_macs(m, (3, s, s)).macs
        ms = None
        if latency:
            r = profile_model(m, (3, s, s), train_step=False, memory=False, min_time_s=min_time, threads=threads,
                              name=name)
            ms = r.latency_ms["median"]
        rec["size"].append(s)
        rec["macs"].append(macs)
        rec["latency_ms"].append(ms)
        print(f"{name} @ {s}: {macs / 1e9:.3f} GMACs" + (f", {ms:.1f} ms" if ms is not None else ""), flush=True)
    rec["growth"] = growth(rec["size"], rec["macs"]) if len(rec["size"]) > 1 else []
    return rec


def render(data: dict, meta: dict) -> str:
    sizes = sorted({s for r in data.values() for s in r["size"]})
    lines = ["# Vision transformers: cost vs input size", "",
             f"- Command: `{meta['command']}`",
             f"- Machine: {meta['machine']['cpu']}, {meta['threads']} thread(s), torch {meta['machine']['torch']}; "
             f"load average before/after {meta['load_before']} / {meta['load_after']}.",
             "- Each model at its paper settings, built for each input size; MACs per image (blockzoo.profile."
             "count_macs, FLOPs = 2 x MACs), latency: median fp32 eval forward at batch 1 after warm-up. Growth: "
             "exponent of MACs in the number of pixels between consecutive sizes (1 = linear, 2 = quadratic).", "",
             "| model | " + " | ".join(f"GMACs @ {s}" for s in sizes) + " | " +
             " | ".join(f"ms @ {s}" for s in sizes) + " | growth (per step) |",
             "|---|" + "---|" * (2 * len(sizes) + 1)]
    for name, r in data.items():
        by = dict(zip(r["size"], zip(r["macs"], r["latency_ms"])))
        g = ", ".join(f"{x:.2f}" for x in r["growth"]) or "-"
        lines.append(f"| `{name}` | " + " | ".join(f"{by[s][0] / 1e9:.3f}" if s in by else "n/a" for s in sizes)
                     + " | " + " | ".join(f"{by[s][1]:.1f}" if s in by and by[s][1] is not None else "n/a"
                                          for s in sizes) + f" | {g} |")
    skipped = [f"`{n}` @ {s}: {why}" for n, r in data.items() for s, why in r["skipped"].items()]
    if skipped:
        lines += ["", "Not built (the model refuses the size at build time):", ""] + [f"- {x}" for x in skipped]
    return "\n".join(lines) + "\n"


def plot(data: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
    for name, r in data.items():
        if r["size"]:
            ax.loglog([s * s for s in r["size"]], [m / 1e9 for m in r["macs"]], "o-", label=name)
    ax.set_xlabel("pixels per image")
    ax.set_ylabel("GMACs per image")
    ax.set_title("cost vs input size (log-log: slope 1 = linear, 2 = quadratic)")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--sizes", default="64,128,224,384,512")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny models at 16/32 px, MACs only, nothing written "
                                                         "unless --out is given")
    ap.add_argument("--out", default=None, help="output stem (default: benchmarks/results/attention_scaling)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    models = SMOKE_MODELS if a.smoke else tuple(a.models.split(","))
    sizes = [16, 32] if a.smoke else [int(s) for s in a.sizes.split(",")]
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    data = {n: measure(n, sizes, not (a.no_latency or a.smoke), a.threads, a.min_time) for n in models}
    meta = {"command": "python benchmarks/attention_scaling.py " + " ".join(argv if argv is not None else
                                                                              sys.argv[1:]),
            "machine": machine(a.threads), "threads": a.threads, "load_before": load_before,
            "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    out = a.out or (None if a.smoke else "benchmarks/results/attention_scaling")
    if out:
        stem = Path(out)
        stem.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(stem.with_suffix(".json"), json.dumps({"meta": meta, "models": data}, indent=2) + "\n")
        atomic_write_text(stem.with_suffix(".md"), render(data, meta))
        plot(data, stem.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
