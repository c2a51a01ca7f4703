"""Claim run (S104, Molchanov et al. 2019): the first-order Taylor importance on the gates after BN correlates with
the true importance, the loss change when the filter is removed (the paper reports > 93% Spearman correlation on
ImageNet ResNets). Here: resnet20 trained on a Fashion-MNIST subset, then for a random sample of the prunable
filters (the first conv of each basic block: single-channel groups) the Taylor score
``blockzoo.deploy.taylor_importance`` (averaged over minibatches) against the oracle ``|L(without the filter) - L|``
(the filter's BN gamma and beta zeroed, the same images), both with frozen BN statistics (eval mode).

Verdict rule: per seed the Spearman rank correlation rho over the sampled filters; reproduced if
mean(rho) - 2 sd/sqrt(n) >= 0.93, not reproduced if mean(rho) + 2 sd/sqrt(n) < 0.93, else inconclusive.

    python benchmarks/claims/prune_taylor_correlation.py            # the recorded budget (~1-2 min on 2 idle cores)
    python benchmarks/claims/prune_taylor_correlation.py --smoke    # seconds
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from norm_common import add_options, fashion_subsets, parse, train  # noqa: E402

from blockzoo import create_model, papers  # noqa: E402
from blockzoo.data import Loader  # noqa: E402
from blockzoo.deploy import taylor_importance  # noqa: E402
from blockzoo.report.stats import mean_std  # noqa: E402
from blockzoo.report.verdicts import write_verdict  # noqa: E402

TARGET = 0.93


def _ranks(x: torch.Tensor) -> torch.Tensor:
    r = torch.empty_like(x)
    r[x.argsort()] = torch.arange(len(x), dtype=x.dtype)
    return r


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-300))


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    return pearson(_ranks(a.double()), _ranks(b.double()))


def verdict_of(rhos: list[float], target: float = TARGET) -> str:
    m, s = mean_std(rhos)
    half = 2 * s / math.sqrt(len(rhos))
    return "reproduced" if m - half >= target else "not reproduced" if m + half < target else "inconclusive"


@torch.no_grad()
def _loss(model, batches) -> float:
    return sum(F.cross_entropy(model(x), y, reduction="sum").item() for x, y in batches) / sum(len(y) for _, y in
                                                                                              batches)


def measure(model, batches, n_filters: int, seed: int) -> dict:
    """Taylor score vs oracle loss change for ``n_filters`` random single-filter groups."""
    model.eval()
    cg, scores = taylor_importance(model, batches)
    cands = []
    for name, u in cg.uses.items():       # first conv of a basic block: conv -> its BN (conv1.norm) -> conv2
        if u.kind == "conv" and name.endswith("conv1.conv"):
            for c in range(len(u.outs)):
                cands.append((name, c))
    g = torch.Generator().manual_seed(seed)
    pick = [cands[i] for i in torch.randperm(len(cands), generator=g)[:n_filters].tolist()]
    index = {cg.find(grp[0]): k for k, grp in enumerate(cg.groups)}
    base = _loss(model, batches)
    taylor, oracle = [], []
    for name, c in pick:
        bn = model.get_submodule(name.rpartition(".")[0] + ".norm")
        saved = bn.weight[c].item(), bn.bias[c].item()
        with torch.no_grad():
            bn.weight[c] = 0.0
            bn.bias[c] = 0.0
        oracle.append(abs(_loss(model, batches) - base))
        with torch.no_grad():
            bn.weight[c], bn.bias[c] = saved
        taylor.append(float(scores[index[cg.find(cg.uses[name].outs[c])]]))
    t, o = torch.tensor(taylor), torch.tensor(oracle)
    return {"spearman": spearman(t, o), "pearson": pearson(t.double(), o.double()), "base_loss": base,
            "taylor": taylor, "oracle": oracle, "filters": [f"{n}[{c}]" for n, c in pick]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(p, train=300, test=None, epochs=2, lr=0.1)
    p.add_argument("--probe", type=int, default=64, help="images the importance and the oracle are measured on")
    p.add_argument("--filters", type=int, default=32, help="filters sampled per seed")
    a = parse(p, argv, probe=32, filters=8)
    train_set, probe_set = fashion_subsets(a.train, a.probe)
    batches = list(Loader(probe_set, a.batch_size, train=False))
    runs = []
    for seed in range(a.seeds):
        torch.manual_seed(seed)
        model = create_model("resnet20", in_chans=1, num_classes=10)
        train(model, train_set, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, weight_decay=5e-4, seed=seed)
        runs.append(measure(model, batches, a.filters, seed))
        print(f"seed {seed}: spearman {runs[-1]['spearman']:.3f}, pearson {runs[-1]['pearson']:.3f}", flush=True)
    rho = [r["spearman"] for r in runs]
    pear = [r["pearson"] for r in runs]
    (m, s), (mp, sp) = mean_std(rho), mean_std(pear)
    verdict = verdict_of(rho)
    line = (f"Spearman rho(Taylor FO-BN, oracle |dL|) = {m:.3f} ± {s:.3f} over {a.seeds} seeds "
            f"(Pearson {mp:.3f} ± {sp:.3f}); paper: > {TARGET}")
    budget = (f"resnet20 (in_chans 1) trained {a.epochs} epochs on {a.train} Fashion-MNIST images (SGD Nesterov lr "
              f"{a.lr} cosine, wd 5e-4, batch {a.batch_size}); importance and oracle on {a.probe} test images "
              f"(batches of {a.batch_size}, eval-mode BN); {a.filters} random first-conv filters per seed; "
              f"{a.seeds} seeds; fp32 CPU")
    path = write_verdict(
        "prune_taylor_correlation", paper=papers.TAYLOR_PRUNING, block="blockzoo.deploy.taylor_importance",
        claim="the first-order Taylor importance (gate after BN) has > 93% Spearman correlation with the true "
              "loss change when a filter is removed",
        verdict=verdict, summary=line, budget=budget,
        rule=f"per seed Spearman rho; reproduced if mean - 2 sd/sqrt(n) >= {TARGET}, not reproduced if mean + "
             f"2 sd/sqrt(n) < {TARGET}, else inconclusive",
        results={"spearman": rho, "pearson": pear, "runs": runs}, out_dir=a.out_dir)
    print(f"{verdict}: {line}\n-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
