"""Claim run (S100, Gunawan, Yin & Zhang 2022, arXiv:2207.01972): the improved Group Normalization (``norm="gn_plus"``,
GN followed by BN's batch standardisation; a reading of the abstract, see ``blockzoo.blocks.norm.gn_plus``) beats GN
regardless of the batch size and trains more stably.

At CPU scale: ``resnet20`` (1 input channel) with ``norm=("gn_plus", {"groups": G})`` vs ``norm=("gn", {"groups":
G})`` (the same G), at a small and a large batch size with equal epochs, the learning rate scaled linearly with the
batch (lr = base_lr * batch / 32, the GN paper's rule), the same seeds and images for both; Fashion-MNIST subset.
The paper's own budgets and numbers could not be read (its abstract has none).

Verdict rule (stated before the runs, :data:`RULE`, :func:`verdict_of`): at each batch size, ``norm_common.RULE`` on
the per-seed test accuracy gn_plus - gn (paired by seed); reproduced only if reproduced at every batch size, not
reproduced if not reproduced at any, else inconclusive. "Stabler training" is reported (the spread over seeds and the
last-epoch train loss), not judged.

    python benchmarks/claims/norm_gn_plus.py          # recorded budget: 5 min wall, 1 thread, loaded CPU
    python benchmarks/claims/norm_gn_plus.py --smoke  # seconds
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from norm_common import RULE as PAIRED_RULE  # noqa: E402
from norm_common import accuracy, add_options, fashion_subsets, paired_verdict, parse, train  # noqa: E402

from blockzoo import create_model, papers  # noqa: E402
from blockzoo.report.verdicts import write_verdict  # noqa: E402

NORMS = ("gn_plus", "gn")
RULE = (f"at each batch size: {PAIRED_RULE} (test accuracy, new = gn_plus, baseline = gn); reproduced only if "
        "reproduced at every batch size, not reproduced if not reproduced at any, else inconclusive")


def verdict_of(per_batch: list[str]) -> str:
    """The overall verdict by :data:`RULE` from the per-batch-size verdicts."""
    if "not reproduced" in per_batch:
        return "not reproduced"
    return "reproduced" if per_batch and all(v == "reproduced" for v in per_batch) else "inconclusive"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(p, train=800, test=500, epochs=3, batch_size=None, lr=None, weight_decay=5e-4)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=(8, 64))
    p.add_argument("--groups", type=int, default=8, help="G of both GN and gn_plus")
    p.add_argument("--base-lr", type=float, default=0.1, help="lr at batch 32 (scaled linearly with the batch)")
    a = parse(p, argv, train=48, batch_sizes=(16, 32))
    train_set, test_set = fashion_subsets(a.train, a.test)
    acc = {str(b): {n: [] for n in NORMS} for b in a.batch_sizes}
    loss = {str(b): {n: [] for n in NORMS} for b in a.batch_sizes}
    for seed in range(a.seeds):
        for bs in a.batch_sizes:
            lr = a.base_lr * bs / 32
            for norm in NORMS:
                torch.manual_seed(seed)
                model = create_model("resnet20", norm=(norm, {"groups": a.groups}), in_chans=1, num_classes=10)
                losses = train(model, train_set, epochs=a.epochs, batch_size=bs, lr=lr, weight_decay=a.weight_decay,
                               seed=seed)
                acc[str(bs)][norm].append(accuracy(model, test_set))
                loss[str(bs)][norm].append(losses[-1])
                print(f"seed {seed} batch {bs} {norm}: test acc {acc[str(bs)][norm][-1]:.4f}, last-epoch train loss "
                      f"{losses[-1]:.4f}", flush=True)
    per_batch, lines, stats = [], [], {}
    for bs in map(str, a.batch_sizes):
        v, line, stats[bs] = paired_verdict(acc[bs]["gn_plus"], acc[bs]["gn"])
        per_batch.append(v)
        lines.append(f"batch {bs}: {line} -> {v}")
    verdict = verdict_of(per_batch)
    summary = "test accuracy gn_plus vs gn; " + "; ".join(lines)
    budget = (f"resnet20 (in_chans 1), GN groups {a.groups} in both, Fashion-MNIST {a.train} train / {a.test} test "
              f"images (class-stratified), {a.epochs} epochs at batch sizes {', '.join(map(str, a.batch_sizes))}, "
              f"SGD Nesterov lr {a.base_lr} * batch / 32 cosine, wd {a.weight_decay} on weights, no augmentation, "
              f"fp32 CPU, {a.seeds} seeds")
    path = write_verdict(
        "norm_gn_plus", paper=papers.GN_PLUS, block="gn_plus",
        claim="the improved GN (GN + BN's batch statistics) outperforms GN regardless of the batch size and trains "
              "more stably",
        verdict=verdict, summary=summary, budget=budget, rule=RULE,
        results={"test_acc": acc, "final_train_loss": loss, "paired": stats, "per_batch_verdict":
                 dict(zip(map(str, a.batch_sizes), per_batch))}, out_dir=a.out_dir, threads=a.threads)
    print(f"{verdict}: {summary}\n-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
