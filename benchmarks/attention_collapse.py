"""DeepViT's attention-collapse diagnostic at CPU scale: the cross-layer similarity of attention maps
(``blockzoo.analysis.collapse.attention_similarity``, the paper's eq. 2 between blocks l and l+1) of a deep ViT and of
the same network with re-attention, after the same short training on Fashion-MNIST.

    .venv/bin/python benchmarks/attention_collapse.py --subset 5000 --epochs 4 --seeds 2 --threads 1
    .venv/bin/python benchmarks/attention_collapse.py --smoke     # synthetic data, 1 step (the suite's check)

Both models are ``deepvit_tiny_patch4_32`` (16 blocks, width 192, 6 heads, 4x4 patches: 49 patch tokens + the class
token at 28 px): ``reattn_from=16`` is the plain ViT, ``reattn_from=0`` DeepViT (re-attention in every block,
official BatchNorm mixing). Training: ``blockzoo.train.train`` with AdamW (lr 1e-3, weight decay 0.05, cosine, one
warm-up epoch), label smoothing 0.1, crop+flip, bf16 autocast, on a class-balanced subset; the curve is measured on
the first 500 test images, at initialisation and after training; the accuracy once at the end, on a class-balanced
2,000-image test subset. The paper's claim (32-block ViT on ImageNet:
adjacent-block similarity above 0.9 in the deep blocks, lower with re-attention) is checked at this budget only:
the result says what this budget shows, not what ImageNet training would. Writes
``benchmarks/results/attention_collapse.{md,json,png}`` with the command, the machine and the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from blockzoo import create_model
from blockzoo.analysis.collapse import attention_similarity
from blockzoo.env import machine
from blockzoo.files import atomic_write_text

VARIANTS = {"vit (reattn_from=16)": 16, "deepvit (reattn_from=0)": 0}


def _batch(test_set, n: int) -> torch.Tensor:
    from blockzoo.data import Loader
    x, _ = next(iter(Loader(test_set, min(n, len(test_set)), train=False)))
    return x


def run_variant(reattn_from: int, seed: int, a: argparse.Namespace, out_dir: Path) -> dict:
    from blockzoo.data import load_dataset, take_subset
    from blockzoo.train import TrainConfig, train

    data = "synthetic" if a.smoke else "fashion-mnist"
    train_set = load_dataset(data, "train", **({"n": 64, "image_size": 28, "channels": 1} if a.smoke else {}))
    test_set = load_dataset(data, "test", **({"n": 32, "image_size": 28, "channels": 1} if a.smoke else {}))
    if a.subset and a.subset < len(train_set):
        train_set = take_subset(train_set, a.subset, seed)
    if a.test_subset and a.test_subset < len(test_set):
        test_set = take_subset(test_set, a.test_subset, 0)
    torch.manual_seed(seed)
    model = create_model("deepvit_tiny_patch4_32", num_classes=train_set.num_classes, in_chans=train_set.in_chans,
                         img_size=train_set.image_size, reattn_from=reattn_from)
    x = _batch(test_set, a.probe)
    at_init = attention_similarity(model, x).tolist()
    cfg = TrainConfig(model="deepvit_tiny_patch4_32", data=data, epochs=a.epochs, batch_size=a.batch_size,
                      optimizer="adamw", lr=1e-3, weight_decay=0.05, schedule="cosine", warmup_epochs=1.0,
                      seed=seed, threads=a.threads, progress=False, checkpoint=not a.smoke, eval_every=a.epochs,
                      out_dir=str(out_dir / f"reattn_from{reattn_from}-seed{seed}"), overwrite=True)
    res = train(cfg, model, train_set, test_set)
    trained = attention_similarity(model, x).tolist()
    return {"reattn_from": reattn_from, "seed": seed, "test_acc": res["final_test_acc"],
            "train_time_s": res["train_time_s"], "similarity_init": at_init, "similarity_trained": trained}


def render(rows: list[dict], meta: dict) -> str:
    lines = ["# Attention collapse: cross-layer similarity of attention maps, ViT vs DeepViT (re-attention)", "",
             f"- Command: `{meta['command']}`",
             f"- Machine: {meta['machine']['cpu']}, {meta['threads']} thread(s), torch {meta['machine']['torch']}; "
             f"load average before/after {meta['load_before']} / {meta['load_after']}.",
             f"- Budget: deepvit_tiny_patch4_32 (16 blocks, width 192, 6 heads, 4x4 patches), {meta['epochs']} epochs "
             f"on a {meta['subset']}-image class-balanced Fashion-MNIST subset, AdamW lr 1e-3, batch "
             f"{meta['batch_size']}; test accuracy on {meta['test_subset']} test images; similarity on "
             f"{meta['probe']} test images (the paper's eq. 2 between blocks l "
             "and l+1, 1 = identical maps).", "",
             "| variant | seed | test acc % | mean sim, blocks 0-7 | mean sim, blocks 8-15 | max sim | at init: "
             "mean sim 8-15 |", "|---|---|---|---|---|---|---|"]
    for name, r in rows:
        s, s0 = r["similarity_trained"], r["similarity_init"]
        half = len(s) // 2
        lines.append(f"| {name} | {r['seed']} | {100 * r['test_acc']:.2f} | {sum(s[:half]) / half:.3f} | "
                     f"{sum(s[half:]) / (len(s) - half):.3f} | {max(s):.3f} | "
                     f"{sum(s0[half:]) / (len(s0) - half):.3f} |")
    lines += ["", "Per-layer curves (trained; sim(l, l+1) for l = 0 ..):", ""]
    lines += [f"- {name}, seed {r['seed']}: " + ", ".join(f"{v:.3f}" for v in r["similarity_trained"])
              for name, r in rows]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2), constrained_layout=True)
    for name, r in rows:
        ax.plot(range(len(r["similarity_trained"])), r["similarity_trained"], "o-", label=f"{name}, seed {r['seed']}")
    ax.set_xlabel("block l (similarity of blocks l and l+1)")
    ax.set_ylabel("cross-layer attention similarity")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subset", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--probe", type=int, default=500, help="test images the similarity is measured on")
    ap.add_argument("--test-subset", type=int, default=2000, help="class-balanced test images the accuracy is "
                                                                  "measured on (once, after training)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="synthetic data, one short epoch, nothing written unless "
                                                         "--out is given")
    ap.add_argument("--out", default=None, help="output stem (default: benchmarks/results/attention_collapse)")
    a = ap.parse_args(argv)
    if a.smoke:
        a.subset, a.epochs, a.batch_size, a.seeds, a.probe, a.test_subset = 0, 1, 32, 1, 8, 0
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) if a.smoke else Path("runs/bench/attention_collapse")
        rows = [(name, run_variant(rf, seed, a, runs)) for seed in range(a.seeds) for name, rf in VARIANTS.items()]
    meta = {"command": "python benchmarks/attention_collapse.py " + " ".join(argv if argv is not None
                                                                               else sys.argv[1:]),
            "machine": machine(a.threads), "threads": a.threads, "epochs": a.epochs, "subset": a.subset,
            "batch_size": a.batch_size, "probe": a.probe, "test_subset": a.test_subset, "load_before": load_before,
            "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    out = a.out or (None if a.smoke else "benchmarks/results/attention_collapse")
    if out:
        stem = Path(out)
        stem.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(stem.with_suffix(".json"), json.dumps({"meta": meta, "runs": [dict(r, variant=n)
                                                                                        for n, r in rows]},
                                                                indent=2) + "\n")
        atomic_write_text(stem.with_suffix(".md"), render(rows, meta))
        plot(rows, stem.with_suffix(".png"))
    for name, r in rows:
        print(f"{name} seed {r['seed']}: acc {r['test_acc']:.4f}, sim " +
              " ".join(f"{v:.2f}" for v in r["similarity_trained"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
