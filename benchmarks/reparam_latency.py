"""Batch-1 CPU latency of a re-parameterisable model before and after ``blockzoo.deploy.reparameterize``.

    .venv/bin/python benchmarks/reparam_latency.py --model unireplknet_a --rounds 9 --threads 1

``--rounds`` interleaved rounds of ``blockzoo.profile.profile`` (eval, fp32, batch 1); prints the minimum and the
median over the per-round medians (ms) for the training and the deploy structure. The numbers recorded in
``blockzoo.models.unireplknet.DEPLOY_LATENCY_MS`` come from this script.
"""
from __future__ import annotations

import argparse
import statistics

import torch

from blockzoo.deploy import reparameterize
from blockzoo.profile import profile
from blockzoo.registry import create_model


def bench(name: str, img: int = 224, rounds: int = 9, threads: int = 1) -> dict[str, dict[str, float]]:
    """``{"train"|"deploy": {"min": ..., "median": ...}}`` over the per-round median latencies (ms)."""
    torch.manual_seed(0)
    models = {"train": create_model(name).eval()}
    models["deploy"] = reparameterize(models["train"]).eval()
    med: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for k, m in models.items():
            rep = profile(m, (3, img, img), batch_size=1, train_step=False, memory=False, threads=threads)
            med[k].append(rep.latency_ms["median"])
    return {k: {"min": min(v), "median": statistics.median(v)} for k, v in med.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="unireplknet_a")
    ap.add_argument("--img", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    for form, t in bench(args.model, args.img, args.rounds, args.threads).items():
        print(f"{args.model} {form}: min {t['min']:.1f} ms, median {t['median']:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
