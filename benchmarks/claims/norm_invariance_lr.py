"""Claim run (S095, Ye et al., AAAI 2022, arXiv:2103.16634): with the invariance-imposing transform
(``norm="invariance"``, a reconstruction from the abstract, see ``blockzoo.blocks.norm.invariance``) a network trains
well with an initial learning rate of 1.0 (and needs fewer iterations).

At CPU scale: ``resnet20`` (1 input channel) with ``norm="invariance"`` at lr 1.0, against BN at the same lr 1.0 and
BN at its usual lr 0.1 (the reference), the same seeds and images; Fashion-MNIST subset. A run whose last-epoch loss
is not finite counts as diverged, with chance accuracy (0.1). The paper's own schedules and numbers could not be read;
"fewer iterations" is not judged (the per-epoch train losses are recorded).

Verdict rule (stated before the runs, :data:`RULE`, :func:`verdict_of`): with per-seed differences (paired by seed),
"reproduced" if invariance@1.0 is not below BN@0.1 by more than 2 standard errors of their difference AND beats
BN@1.0 by ``norm_common.RULE``; "not reproduced" if it falls below BN@0.1 by more than 2 standard errors or
``norm_common.RULE`` says not reproduced against BN@1.0; else (and with fewer than 2 seeds) inconclusive.

    python benchmarks/claims/norm_invariance_lr.py            # recorded budget: 5 min wall, 1 thread, loaded CPU
    python benchmarks/claims/norm_invariance_lr.py --smoke    # seconds
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from norm_common import accuracy, add_options, fashion_subsets, paired_verdict, parse, train  # noqa: E402

from blockzoo import create_model, papers  # noqa: E402
from blockzoo.report.stats import paired_ttest  # noqa: E402
from blockzoo.report.verdicts import write_verdict  # noqa: E402

CHANCE = 0.1
RUNS = {"invariance@1.0": ("invariance", 1.0), "bn@1.0": ("bn", 1.0), "bn@0.1": ("bn", 0.1)}
RULE = ("per seed (paired): reproduced if mean(invariance@1.0 - bn@0.1) >= -2 sd/sqrt(n) and invariance@1.0 beats "
        "bn@1.0 (mean gain > 2 sd/sqrt(n) of the paired difference); not reproduced if mean(invariance@1.0 - bn@0.1) "
        "< -2 sd/sqrt(n) or invariance@1.0 is worse than bn@1.0 by > 2 sd/sqrt(n); else inconclusive (also with < 2 "
        f"seeds); test accuracy, a diverged run counts as chance ({CHANCE})")


def verdict_of(inv: list[float], bn_large: list[float], bn_ref: list[float]) -> str:
    """The verdict by :data:`RULE` from the per-seed test accuracies."""
    if len(inv) < 2:
        return "inconclusive"
    t = paired_ttest(inv, bn_ref)
    below_ref = t.mean_diff < -2 * t.std_diff / math.sqrt(t.n)
    vs_large = paired_verdict(inv, bn_large)[0]
    if below_ref or vs_large == "not reproduced":
        return "not reproduced"
    return "reproduced" if vs_large == "reproduced" else "inconclusive"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(p, train=800, test=500, epochs=4, lr=None, weight_decay=5e-4)
    a = parse(p, argv, train=48, batch_size=16)
    train_set, test_set = fashion_subsets(a.train, a.test)
    acc: dict[str, list[float]] = {k: [] for k in RUNS}
    loss: dict[str, list[list[float]]] = {k: [] for k in RUNS}
    for seed in range(a.seeds):
        for key, (norm, lr) in RUNS.items():
            torch.manual_seed(seed)
            model = create_model("resnet20", norm=norm, in_chans=1, num_classes=10)
            losses = train(model, train_set, epochs=a.epochs, batch_size=a.batch_size, lr=lr,
                           weight_decay=a.weight_decay, seed=seed)
            acc[key].append(accuracy(model, test_set) if math.isfinite(losses[-1]) else CHANCE)
            loss[key].append(losses)
            print(f"seed {seed} {key}: test acc {acc[key][-1]:.4f}, train loss per epoch "
                  f"{[round(x, 4) for x in losses]}", flush=True)
    verdict = verdict_of(acc["invariance@1.0"], acc["bn@1.0"], acc["bn@0.1"])
    _, vs_large, st_large = paired_verdict(acc["invariance@1.0"], acc["bn@1.0"])
    _, vs_ref, st_ref = paired_verdict(acc["invariance@1.0"], acc["bn@0.1"])
    summary = (f"test accuracy invariance@1.0 vs bn@1.0: {vs_large}; invariance@1.0 vs bn@0.1 (reference): {vs_ref}; "
               f"diverged runs: {sum(not math.isfinite(ls[-1]) for v in loss.values() for ls in v)}")
    budget = (f"resnet20 (in_chans 1), Fashion-MNIST {a.train} train / {a.test} test images (class-stratified), "
              f"{a.epochs} epochs, batch {a.batch_size}, SGD Nesterov cosine from the initial lr (1.0 or 0.1), wd "
              f"{a.weight_decay} on weights, no warm-up, no augmentation, fp32 CPU, {a.seeds} seeds; invariance "
              "defaults (k 3, group size 16, T 5, sample stride 2)")
    path = write_verdict(
        "norm_invariance_lr", paper=papers.INVARIANCE_TRANSFORM, block="invariance",
        claim="with the invariance-imposing transform, training works with an initial learning rate of 1.0 (and "
              "needs fewer iterations)",
        verdict=verdict, summary=summary, budget=budget, rule=RULE,
        results={"test_acc": acc, "train_loss_per_epoch": loss, "paired_vs_bn_lr1": st_large,
                 "paired_vs_bn_lr0.1": st_ref}, out_dir=a.out_dir, threads=a.threads)
    print(f"{verdict}: {summary}\n-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
