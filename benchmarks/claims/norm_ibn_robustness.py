"""Claim run (S052, IBN-Net, Pan, Luo, Shi & Tang ECCV 2018): mixing Instance Norm into the shallow layers
(``norm="ibn_a"``: IN on half the channels of the first norm of the blocks of every stage but the last) makes the
features invariant to appearance changes (colour, style, contrast, brightness) while BatchNorm keeps the content, so
the network is more robust to appearance changes of its input without losing accuracy on it.

At CPU scale: ``resnet20`` (1 input channel, 28 px) with ``norm="ibn_a"`` vs the same network with BatchNorm
(``norm="bn"``), trained on the same class-stratified Fashion-MNIST subset with the same plain SGD loop, epochs and
seeds (``norm_common.train``); tested clean and under the appearance corruptions of
:mod:`blockzoo.analysis.robustness` (``contrast`` and ``brightness`` at severities 1, 3, 5; Gaussian noise and
blur are not appearance changes, ConvNorm's claim run covers noise). Grayscale inversion is left out: it swaps the
black background and the white garment, a content change as much as an appearance one for Fashion-MNIST. The paper
tests domain shifts (GTA5 -> Cityscapes, style transfer); a corrupted test set is the nearest cheap stand-in.

Verdict rule, fixed before the run (:data:`RULE`): with ``norm_common.paired_verdict`` (gain beyond twice its
standard error over the seeds) on the mean accuracy over the appearance corruptions ("robust") and on the clean
accuracy ("clean"): reproduced if robust is reproduced and clean is not "not reproduced" (no clear loss of clean
accuracy); not reproduced if robust is "not reproduced" or clean is; inconclusive otherwise.

    python benchmarks/claims/norm_ibn_robustness.py            # the recorded budget (~5 min on 2 idle cores)
    python benchmarks/claims/norm_ibn_robustness.py --smoke    # seconds
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from norm_common import RULE as PAIRED_RULE  # noqa: E402
from norm_common import add_options, fashion_subsets, paired_verdict, parse, train  # noqa: E402

from blockzoo import create_model, papers  # noqa: E402
from blockzoo.analysis.robustness import robustness  # noqa: E402
from blockzoo.report.verdicts import write_verdict  # noqa: E402

APPEARANCE = ("contrast", "brightness")
LEVELS = (1, 3, 5)   # the severities tested
RULE = (f"{PAIRED_RULE}; applied to the mean accuracy over the appearance corruptions {', '.join(APPEARANCE)} "
        f"(robust) and to the clean accuracy (clean): reproduced if robust is reproduced and clean is not 'not "
        f"reproduced'; not reproduced if robust or clean is 'not reproduced'; inconclusive otherwise")


def combine(robust: str, clean: str) -> str:
    """The verdict by :data:`RULE` from the two paired verdicts."""
    if "not reproduced" in (robust, clean):
        return "not reproduced"
    return "reproduced" if robust == "reproduced" else "inconclusive"


def appearance_mean(table: dict[str, dict[int, float]]) -> float:
    accs = [a for name in APPEARANCE for a in table[name].values()]
    return sum(accs) / len(accs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(p, train=1000, test=500, epochs=2, batch_size=16, lr=0.05, weight_decay=5e-4)
    p.add_argument("--norm", default="ibn_a", help="the IBN variant tested against bn (ibn_a or ibn_b)")
    a = parse(p, argv)
    train_set, test_set = fashion_subsets(a.train, a.test)
    res: dict[str, dict[str, list]] = {v: {"clean": [], "appearance": [], "corrupted": []} for v in ("bn", a.norm)}
    for seed in range(a.seeds):
        for norm, r in res.items():
            torch.manual_seed(seed)
            model = create_model("resnet20", num_classes=10, in_chans=1, img_size=28, norm=norm)
            train(model, train_set, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                  weight_decay=a.weight_decay, seed=seed)
            rob = robustness(model, test_set, corruptions=APPEARANCE, severities=LEVELS, seed=seed)
            r["clean"].append(rob["clean"])
            r["appearance"].append(appearance_mean(rob["corrupted"]))
            r["corrupted"].append(rob["corrupted"])
            print(f"seed {seed} {norm}: clean {rob['clean']:.4f}, appearance {r['appearance'][-1]:.4f}, "
                  + ", ".join(f"{k} {sum(v.values()) / len(v):.4f}" for k, v in rob["corrupted"].items()), flush=True)
    ibn, bn = res[a.norm], res["bn"]
    robust, robust_line, robust_stats = paired_verdict(ibn["appearance"], bn["appearance"],
                                                       f" appearance-corrupted accuracy ({a.norm} vs bn)")
    clean, clean_line, clean_stats = paired_verdict(ibn["clean"], bn["clean"], " clean accuracy")
    verdict = combine(robust, clean)
    budget = (f"resnet20 (1 input channel, 28 px, option-A shortcuts), Fashion-MNIST {a.train} train / {a.test} test "
              f"images (class-stratified), {a.epochs} epochs, batch {a.batch_size}, SGD Nesterov lr {a.lr} cosine, "
              f"wd {a.weight_decay} on weights, no augmentation, fp32 CPU, {a.seeds} seeds; corruptions "
              f"{', '.join(APPEARANCE)} at severities {LEVELS} (blockzoo.analysis.robustness)")
    summary = f"robust ({robust}): {robust_line}; clean ({clean}): {clean_line}"
    path = write_verdict(
        "norm_ibn_robustness", paper=papers.IBNNET, block=a.norm,
        claim="IBN-Net's instance + batch normalisation makes a CNN more robust to appearance changes of its input "
              "(the paper: colour, style, virtuality/reality; here contrast and brightness) without hurting its "
              "accuracy on the clean data",
        verdict=verdict, summary=summary, budget=budget, rule=RULE,
        results={a.norm: ibn, "bn": bn, "paired_robust": robust_stats, "paired_clean": clean_stats},
        out_dir=a.out_dir)
    print(f"{verdict}: {summary}\n-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
