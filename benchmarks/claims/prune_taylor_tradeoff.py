"""Claim run (S104, Molchanov et al. 2019): iterative Taylor pruning removes a large share of the FLOPs at almost no
accuracy loss (the paper: ResNet-101 on ImageNet, 40% fewer FLOPs and 30% fewer parameters for 0.02% top-1). Here:
resnet20 trained on a Fashion-MNIST subset, then ``blockzoo.deploy.prune`` (Taylor FO on the gates after BN,
fine-tuning between removals, physical removal) down to 80% and 60% of the MACs, each point fine-tuned for one
more epoch; the params / MACs vs test-accuracy curve per seed (``--points 0.8,0.6,0.4`` for a longer curve).

Verdict rule (on the 60%-MACs point, the paper's 40% reduction): d = accuracy(unpruned) - accuracy(pruned) per
seed; reproduced if mean(d) + 2 sd/sqrt(n) <= 1 point (the tolerance stated here for "almost no loss" at this
scale), not reproduced if mean(d) - 2 sd/sqrt(n) > 1 point, else inconclusive; inconclusive in any case when the
mean unpruned accuracy is below 70% (an unlearned baseline cannot show a trade-off).

    python benchmarks/claims/prune_taylor_tradeoff.py            # the recorded budget (~1-2 min on 2 idle cores)
    python benchmarks/claims/prune_taylor_tradeoff.py --smoke    # seconds
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from norm_common import accuracy, add_options, fashion_subsets, parse, train  # noqa: E402

from blockzoo import create_model, papers  # noqa: E402
from blockzoo.data import Loader  # noqa: E402
from blockzoo.deploy import prune  # noqa: E402
from blockzoo.report.stats import mean_std  # noqa: E402
from blockzoo.report.verdicts import write_verdict  # noqa: E402

TOLERANCE = 0.01
MIN_BASE = 0.7      # below this mean unpruned accuracy the baseline has not learned the task: no verdict
POINTS = (0.8, 0.6)


def verdict_of(drops: list[float], base: list[float] | None = None, tol: float = TOLERANCE) -> str:
    if base is not None and mean_std(base)[0] < MIN_BASE:
        return "inconclusive"
    m, s = mean_std(drops)
    half = 2 * s / math.sqrt(len(drops))
    return "reproduced" if m + half <= tol else "not reproduced" if m - half > tol else "inconclusive"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(p, train=300, test=300, epochs=2, batch_size=32, lr=0.1)
    p.add_argument("--per-step", type=int, default=60, help="groups removed per round")
    p.add_argument("--batches-per-step", type=int, default=2, help="fine-tuning minibatches between removals")
    p.add_argument("--points", default=",".join(map(str, POINTS)), help="MACs fractions, in decreasing order")
    p.add_argument("--prune-lr", type=float, default=0.01)
    a = parse(p, argv, per_step=80, batches_per_step=1)
    points = (0.8,) if a.smoke else tuple(float(v) for v in a.points.split(","))
    train_set, test_set = fashion_subsets(a.train, a.test)
    curves = []
    for seed in range(a.seeds):
        torch.manual_seed(seed)
        model = create_model("resnet20", in_chans=1, num_classes=10)
        train(model, train_set, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, weight_decay=5e-4, seed=seed)
        curve = [{"macs_frac": 1.0, "params_frac": 1.0, "acc": accuracy(model, test_set)}]
        loader = Loader(train_set, a.batch_size, train=True, seed=seed)
        res = None
        for frac in points:
            res = prune(model, loader, target_macs=frac / curve[-1]["macs_frac"], per_step=a.per_step,
                        batches_per_step=a.batches_per_step, lr=a.prune_lr, weight_decay=5e-4)
            train(model, train_set, epochs=1, batch_size=a.batch_size, lr=a.prune_lr, weight_decay=5e-4, seed=seed)
            macs0 = res.history[0]["macs"] / curve[-1]["macs_frac"]
            params0 = res.history[0]["params"] / curve[-1]["params_frac"]
            curve.append({"target": frac, "macs_frac": res.history[-1]["macs"] / macs0,
                          "params_frac": res.history[-1]["params"] / params0, "acc": accuracy(model, test_set),
                          "rounds": len(res.history) - 1})
            print(f"seed {seed}: {curve[-1]}", flush=True)
        curves.append(curve)
    at = points.index(0.6) + 1 if 0.6 in points else len(points)    # the 60%-MACs point (smoke: the last one)
    drops = [c[0]["acc"] - c[at]["acc"] for c in curves]
    (md, sd), (ma, sa) = mean_std(drops), mean_std([c[at]["params_frac"] for c in curves])
    verdict = verdict_of(drops, [c[0]["acc"] for c in curves])
    base_m, base_s = mean_std([c[0]["acc"] for c in curves])
    line = (f"unpruned {100 * base_m:.2f} ± {100 * base_s:.2f}%; at {points[at - 1]:.0%} of the MACs "
            f"({ma:.0%} ± {sa:.0%} of the params) the accuracy drops {100 * md:.2f} ± {100 * sd:.2f} points "
            f"({a.seeds} seeds); paper: 0.02 points at 60% FLOPs / 70% params (ImageNet ResNet-101)")
    budget = (f"resnet20 (in_chans 1), Fashion-MNIST {a.train} train / {a.test} test images, {a.epochs} epochs SGD "
              f"Nesterov lr {a.lr} cosine wd 5e-4 batch {a.batch_size}; Taylor FO-BN pruning removing {a.per_step} "
              f"groups per round after {a.batches_per_step} fine-tuning minibatches (SGD lr {a.prune_lr}), then "
              f"1 fine-tuning epoch per point ({', '.join(f'{p:.0%}' for p in points)} of the MACs); {a.seeds} "
              f"seeds; fp32 CPU")
    path = write_verdict(
        "prune_taylor_tradeoff", paper=papers.TAYLOR_PRUNING, block="blockzoo.deploy.prune",
        claim="iterative Taylor pruning removes 40% of a ResNet's FLOPs (30% of its parameters) at almost no "
              "accuracy loss",
        verdict=verdict, summary=line, budget=budget,
        rule=f"d = acc(unpruned) - acc(60% MACs) per seed; reproduced if mean(d) + 2 sd/sqrt(n) <= "
             f"{100 * TOLERANCE:g} point, not reproduced if mean(d) - 2 sd/sqrt(n) > {100 * TOLERANCE:g} point, "
             f"else inconclusive; inconclusive whatever d if the mean unpruned accuracy is below "
             f"{100 * MIN_BASE:g}% (the baseline has not learned the task at this budget)",
        results={"curves": curves, "drops": drops}, out_dir=a.out_dir)
    print(f"{verdict}: {line}\n-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
