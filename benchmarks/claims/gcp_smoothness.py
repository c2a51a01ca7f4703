"""Claim run, S002 (Wang et al., "What Deep CNNs Benefit from Global Covariance Pooling: An Optimization
Perspective", CVPR 2020, arXiv:2003.11241; :data:`blockzoo.papers.GCP`): a network with global covariance pooling
(GCP) has a smoother loss landscape than with global average pooling (GAP): along the training path the loss
varies less and the gradient changes less (is more predictive) when stepping along the gradient, the measures of
Santurkar et al. (NeurIPS 2018) that the paper uses.

A CIFAR-style ResNet-8 (``models.common.resnet.ResNet``: 3x3 stem, one basic block per stage, widths 16/32/64,
option-A shortcuts; ResNet-20 with one block per stage instead of three, for cost) with the registered ``gcp`` head
vs its default ``avg`` head (GAP), everything else equal (same seed, same data order), each trained with plain SGD
by ``blockzoo.analysis.landscape.probe_training`` (momentum 0.9, weight decay 5e-4, constant lr, no augmentation)
on a class-stratified Fashion-MNIST subset; every
``--probe-every`` steps, on the current training batch, :func:`~blockzoo.analysis.landscape.smoothness_probe`
moves the weights to ``w - eta g`` for ``eta`` = lr x (0.25, 0.5, 1, 2, 4) (``landscape.STEP_MULTIPLES``: we could
not read the paper's exact step-size range; Santurkar et al. step along the gradient over a similar range around
the lr) and records the loss range over those steps (loss landscape / Lipschitzness) and the largest l2 change of
the gradient (gradient predictiveness; also the effective beta-smoothness, the change over ``||eta g||``). Per seed
the statistic is the mean over the probes along training; the verdict is :data:`RULE`, fixed before the run, on
the per-seed paired differences of the first two. As in ``gcp_lr_decay.py`` the head reduces to 64 channels
(``gcp(reduce_dim=64)``: 2,080 features) instead of the paper's 256 (cost), and the data are Fashion-MNIST instead
of ImageNet. Test accuracy after training is reported. Caveat: the loss range and the gradient change are the
paper's raw measures, not scale-free (a net that has reached a lower loss or has smaller gradients shows smaller
ones); the normalised beta-smoothness is reported next to them but is not part of the rule.

Usage: ``python benchmarks/claims/gcp_smoothness.py`` (the recorded budget), ``--smoke`` (seconds).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from norm_common import accuracy  # noqa: E402

from blockzoo import papers  # noqa: E402
from blockzoo.analysis.landscape import STEP_MULTIPLES, probe_training  # noqa: E402
from blockzoo.data import Loader, load_dataset  # noqa: E402
from blockzoo.models.common.resnet import BasicBlock, ResNet  # noqa: E402
from blockzoo.report.stats import detectable_difference, mean_std, paired_ttest  # noqa: E402
from blockzoo.report.verdicts import write_verdict  # noqa: E402

NAME = "gcp_smoothness"
HEADS = {"gap": "avg", "gcp": "gcp(reduce_dim=64)"}
MEASURES = ("loss_range", "grad_change_max", "beta_smoothness")
RULE = ("per seed, the mean over the probes along training of the loss range and of the largest gradient change; "
        "reproduced if GCP's is smaller than GAP's for both, each paired by seed with a two-sided t-test p < 0.05; "
        "not reproduced if GCP's mean is not smaller for either; inconclusive otherwise")


def verdict_of(gap: dict[str, list[float]], gcp: dict[str, list[float]]) -> tuple[str, dict]:
    """The verdict by :data:`RULE` from the per-seed means of ``loss_range`` and ``grad_change_max`` of each head."""
    tests = {k: paired_ttest(gap[k], gcp[k]) for k in MEASURES[:2]}      # > 0: GCP smoother
    if any(t.mean_diff <= 0 for t in tests.values()):
        return "not reproduced", tests
    significant = all(t.p_value is not None and t.p_value < 0.05 for t in tests.values())
    return ("reproduced" if significant else "inconclusive"), tests


def run(head: str, seed: int, a: argparse.Namespace, tr, te) -> dict:
    torch.manual_seed(seed)
    model = ResNet(BasicBlock, (1, 1, 1), (16, 32, 64), num_classes=10, in_chans=tr.images.shape[1], stem="cifar",
                   stem_width=16, shortcut="A", model_name="resnet8", img_size=tr.images.shape[-1], head=HEADS[head])
    batches = Loader(tr, a.batch_size, train=True, augment=False, seed=seed)
    probes = probe_training(model, batches, lr=a.lr, epochs=a.epochs, probe_every=a.probe_every)
    acc = accuracy(model, te)
    means = {k: mean_std([p[k] for p in probes])[0] for k in MEASURES}
    print(f"{head} seed {seed}: test acc {acc:.4f}, {means}", flush=True)
    return {"acc": acc, **means, "probes": [{k: p[k] for k in ("step", "loss", "grad_norm", *MEASURES)}
                                             for p in probes]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subset", type=int, default=2000, help="Fashion-MNIST training images")
    p.add_argument("--test-subset", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (constant); step sizes lr x "
                                                          f"{STEP_MULTIPLES}")
    p.add_argument("--probe-every", type=int, default=8, help="training steps between probes")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default="fashion-mnist", help="a registered dataset (the smoke run: synthetic)")
    p.add_argument("--smoke", action="store_true", help="a seconds-long run on synthetic data (not a verdict)")
    p.add_argument("--out-dir", default=None, help="verdict folder (default benchmarks/results/claims)")
    a = p.parse_args(argv)
    if a.smoke:
        a.data, a.subset, a.test_subset, a.epochs, a.seeds, a.batch_size, a.probe_every = ("synthetic", 64, 32, 1, 2,
                                                                                           16, 2)
    torch.set_num_threads(a.threads)
    opts = {"num_classes": 10, "image_size": 16, "channels": 1} if a.data == "synthetic" else {}
    tr = load_dataset(a.data, "train", subset=a.subset, seed=0, **opts)
    te = load_dataset(a.data, "test", subset=a.test_subset, seed=0, **opts)
    runs = {h: [run(h, s, a, tr, te) for s in range(a.seeds)] for h in HEADS}
    per_seed = {h: {k: [r[k] for r in runs[h]] for k in ("acc", *MEASURES)} for h in HEADS}
    verdict, tests = verdict_of(per_seed["gap"], per_seed["gcp"])
    if a.smoke:
        verdict = "inconclusive"     # a smoke run decides nothing

    def fmt(h: str, k: str) -> str:
        return "{:.4g} ± {:.2g}".format(*mean_std(per_seed[h][k]))

    parts = []
    for k, t in tests.items():
        det = detectable_difference(t.std_diff, t.n)
        parts.append(f"{k} GAP {fmt('gap', k)} vs GCP {fmt('gcp', k)} (GAP - GCP {t.mean_diff:+.4g} ± "
                     f"{t.std_diff:.2g}, p {t.p_value if t.p_value is None else round(t.p_value, 4)}, detectable "
                     f"{det and float(f'{det:.3g}')})")
    summary = ("; ".join(parts) + f"; beta-smoothness GAP {fmt('gap', 'beta_smoothness')} vs GCP "
               f"{fmt('gcp', 'beta_smoothness')}; test acc GAP {fmt('gap', 'acc')} vs GCP {fmt('gcp', 'acc')}")
    steps = len(runs["gap"][0]["probes"])
    write_verdict(
        NAME, paper=papers.GCP, block="gcp",
        claim="global covariance pooling makes the loss landscape smoother than global average pooling: smaller loss "
              "variation and more predictive gradients along the training path (Santurkar et al.'s measures)",
        verdict=verdict, summary=("SMOKE RUN: " if a.smoke else "") + summary,
        budget=f"{a.data} {len(tr)} train / {len(te)} test images, ResNet-8 head avg vs gcp(reduce_dim=64), plain SGD "
               f"lr {a.lr} (constant, momentum 0.9, wd 5e-4, no augmentation), batch {a.batch_size}, {a.epochs} "
               f"epochs, a probe every {a.probe_every} steps ({steps} per run) at step sizes lr x {STEP_MULTIPLES} "
               f"on the current batch (train mode), fp32 CPU, {a.seeds} seeds",
        rule=RULE, results={"per_seed": per_seed, "ttests": {k: t.to_dict() for k, t in tests.items()},
                            "probes": {h: [r["probes"] for r in runs[h]] for h in HEADS}},
        out_dir=a.out_dir, threads=a.threads)
    print(f"{NAME}: {verdict}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
