"""Claim run, S102 (Zhu et al., "GradInit: Learning to Initialize Neural Networks for Stable and Efficient Training",
NeurIPS 2021, arXiv:2102.08098; :data:`blockzoo.papers.GRADINIT`): GradInit speeds up the early convergence of
networks without normalization, and lets them train without learning-rate warm-up.

ResNet-20 with ``norm="none"`` trained by :func:`blockzoo.train.train` without warm-up (onecycle linear decay from
the peak), with and without ``--gradinit`` (the same initial weights and data order per seed). GradInit runs far
shorter than the paper's one epoch (390 iterations on CIFAR-10) and uses the official no-BN meta learning rate
(5e-2, the official ResNet-110 script); everything else is :func:`blockzoo.train.gradinit.gradinit`'s defaults
(SGD step at the run's lr, gamma 1, min scale 0.01). Early convergence = test accuracy after the first epoch (a run
that diverges counts as chance, 1 / classes); the mean training loss of the first epoch and the final accuracy are
reported too. Fashion-MNIST instead of CIFAR-10.

Usage: ``python benchmarks/claims/gradinit_no_norm.py`` (the recorded budget), ``--smoke`` (seconds).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from blockzoo import papers
from blockzoo.report.stats import detectable_difference, mean_std, paired_ttest
from blockzoo.report.verdicts import write_verdict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from connection_common import add_data_options, load  # noqa: E402

from blockzoo.train import TrainConfig, train
from blockzoo.train.trainer import NonFiniteLossError

NAME = "gradinit_no_norm"
RULE = ("reproduced if the test accuracy after the first epoch with GradInit is higher than without, paired by "
        "seed, with paired t-test p < 0.05; not reproduced if it is not higher; else inconclusive")


def verdict_of(with_gi: list[float], without: list[float]) -> tuple[str, object]:
    """The verdict by :data:`RULE` from the per-seed first-epoch accuracies."""
    t = paired_ttest(with_gi, without)
    if t.mean_diff <= 0:
        return "not reproduced", t
    return ("reproduced" if t.p_value is not None and t.p_value < 0.05 else "inconclusive"), t


def run(iters: int, seed: int, a: argparse.Namespace, tr, te, out: Path) -> dict:
    cfg = TrainConfig(model="resnet20", slots={"norm": "none"}, epochs=a.epochs, batch_size=a.batch_size,
                      warmup_epochs=0.0, gradinit=iters, gradinit_lr=a.gradinit_lr, seed=seed, threads=a.threads,
                      precision="fp32", out_dir=str(out / f"gi{iters}-seed{seed}"), overwrite=True,
                      checkpoint=False, progress=False, log="none")
    epochs: list[dict] = []
    try:
        train(cfg, None, tr, te, on_epoch_end=epochs.append)
    except NonFiniteLossError:
        pass
    chance = 1.0 / tr.num_classes
    acc = [m["test_acc"] for m in epochs] + [chance] * (a.epochs - len(epochs))
    return {"acc": acc, "diverged": len(epochs) < a.epochs,
            "train_loss_1": epochs[0]["train_loss"] if epochs else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--gradinit-iters", type=int, default=50)
    p.add_argument("--gradinit-lr", type=float, default=5e-2)
    add_data_options(p, subset=3000, seeds=3)
    a = p.parse_args(argv)
    torch.set_flush_denormal(True)   # an unnormalised net's tiny activations would run at denormal speed on CPU
    tr, te = load(a, gradinit_iters=2)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work_dir or tmp)
        res = {arm: [run(iters, s, a, tr, te, work) for s in range(a.seeds)]
               for arm, iters in (("gradinit", a.gradinit_iters), ("plain", 0))}
    first = {k: [r["acc"][0] for r in v] for k, v in res.items()}
    verdict, t = verdict_of(first["gradinit"], first["plain"])
    fmt = {k: "{:.3f} ± {:.3f}".format(*mean_std(v)) for k, v in first.items()}
    final = {k: "{:.3f} ± {:.3f}".format(*mean_std([r["acc"][-1] for r in v])) for k, v in res.items()}
    div = {k: sum(r["diverged"] for r in v) for k, v in res.items()}
    det = detectable_difference(t.std_diff, t.n)
    summary = (f"test acc after epoch 1 with GradInit {fmt['gradinit']} vs without {fmt['plain']} (diff "
               f"{t.mean_diff:.3f} ± {t.std_diff:.3f}, p {t.p_value if t.p_value is None else round(t.p_value, 4)}, "
               f"detectable {det and round(det, 3)}); after {a.epochs} epochs {final['gradinit']} vs {final['plain']};"
               f" diverged runs {div['gradinit']} vs {div['plain']} of {a.seeds}")
    if a.smoke:
        verdict = "inconclusive"     # a smoke run decides nothing
    write_verdict(
        NAME, paper=papers.GRADINIT, block="--gradinit",
        claim="GradInit accelerates the early convergence of networks without normalization (trained without "
              "learning-rate warm-up)",
        verdict=verdict, summary=("SMOKE RUN: " if a.smoke else "") + summary,
        budget=f"{a.data} {len(tr)} train / {len(te)} test images, resnet20 norm=none, {a.epochs} epochs, batch "
               f"{a.batch_size}, SGD Nesterov lr 0.1 x batch / 128 onecycle without warm-up, GradInit "
               f"{a.gradinit_iters} iterations at meta lr {a.gradinit_lr}, fp32, {a.seeds} seeds x 2 arms",
        rule=RULE, results=res, out_dir=a.out_dir)
    print(f"{NAME}: {verdict}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
