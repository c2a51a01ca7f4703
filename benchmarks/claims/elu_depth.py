"""Claim run, S109 (Clevert, Unterthiner & Hochreiter, "Fast and Accurate Deep Network Learning by Exponential Linear
Units (ELUs)", ICLR 2016, arXiv:1511.07289; :data:`blockzoo.papers.ELU`): in networks deeper than 5 layers ELUs
learn faster than ReLUs (lower training loss earlier).

Fully connected nets after the paper's MNIST learning-behaviour experiment (8 hidden layers of 128 units, plain
SGD, lr 0.01, batch 64, He initialisation; these values are as recalled from the paper, whose text was not
available here) on a Fashion-MNIST subset, the activation being the registered ``elu`` / ``relu`` act block and
everything else equal (the same initial weights per seed). Learning speed = the mean of the per-epoch training
losses (the area under the training curve; lower is faster); the final training loss and test accuracy are
reported too. Trained with :func:`blockzoo.train.train` (no momentum, weight decay, label smoothing or augmentation,
constant lr).

Usage: ``python benchmarks/claims/elu_depth.py`` (the recorded budget), ``--smoke`` (seconds).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn as nn

from blockzoo import create_block, papers
from blockzoo.report.stats import detectable_difference, mean_std, paired_ttest
from blockzoo.report.verdicts import write_verdict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from connection_common import add_data_options, load  # noqa: E402

from blockzoo.train import TrainConfig, train

NAME = "elu_depth"
RULE = ("reproduced if ELU's mean per-epoch training loss is lower than ReLU's, paired by seed, with paired t-test "
        "p < 0.05; not reproduced if it is not lower; else inconclusive")


def mlp(act: str, in_features: int, depth: int, width: int, num_classes: int = 10) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` units with the act block ``act``; He-normal weights, zero biases."""
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(depth):
        layers += [nn.Linear(in_features if i == 0 else width, width), create_block(act)]
    layers.append(nn.Linear(width, num_classes))
    net = nn.Sequential(*layers)
    for m in net.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return net


def verdict_of(elu: list[float], relu: list[float]) -> tuple[str, object]:
    """The verdict by :data:`RULE` from the per-seed learning-speed numbers (lower is faster)."""
    t = paired_ttest(relu, elu)      # > 0: ELU lower
    if t.mean_diff <= 0:
        return "not reproduced", t
    return ("reproduced" if t.p_value is not None and t.p_value < 0.05 else "inconclusive"), t


def run(act: str, seed: int, a: argparse.Namespace, tr, te, out: Path) -> dict:
    torch.manual_seed(seed)
    model = mlp(act, tr.in_chans * tr.image_size[0] * tr.image_size[1], a.depth, a.width)
    cfg = TrainConfig(model=f"mlp{a.depth}-{act}", epochs=a.epochs, batch_size=a.batch_size, optimizer="sgd",
                      lr=a.lr, momentum=0.0, nesterov=False, weight_decay=0.0, schedule="constant",
                      warmup_epochs=0.0, label_smoothing=0.0, augment=False, precision="fp32", seed=seed,
                      threads=a.threads, out_dir=str(out / f"{act}-seed{seed}"), overwrite=True, checkpoint=False,
                      progress=False, log="none", eval_every=a.epochs)
    curve: list[float] = []
    r = train(cfg, model, tr, te, on_epoch_end=lambda m: curve.append(m["train_loss"]))
    return {"curve": curve, "speed": sum(curve) / len(curve), "final_train_loss": curve[-1],
            "test_acc": r["final_test_acc"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depth", type=int, default=8, help="hidden layers (the claim: more than 5)")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.01)
    add_data_options(p, subset=6000, seeds=5)
    a = p.parse_args(argv)
    tr, te = load(a, subset=256, test_subset=128, epochs=2)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work_dir or tmp)
        res = {act: [run(act, s, a, tr, te, work) for s in range(a.seeds)] for act in ("elu", "relu")}
    speed = {k: [r["speed"] for r in v] for k, v in res.items()}
    verdict, t = verdict_of(speed["elu"], speed["relu"])
    ms = {k: "{:.4f} ± {:.4f}".format(*mean_std(v)) for k, v in speed.items()}
    acc = {k: "{:.3f} ± {:.3f}".format(*mean_std([r["test_acc"] for r in v])) for k, v in res.items()}
    fin = {k: "{:.4f}".format(mean_std([r["final_train_loss"] for r in v])[0]) for k, v in res.items()}
    det = detectable_difference(t.std_diff, t.n)
    summary = (f"mean per-epoch train loss ELU {ms['elu']} vs ReLU {ms['relu']} (ReLU - ELU {t.mean_diff:.4f} ± "
               f"{t.std_diff:.4f}, p {t.p_value if t.p_value is None else round(t.p_value, 4)}, detectable "
               f"{det and round(det, 4)}); final train loss {fin['elu']} vs {fin['relu']}; test acc {acc['elu']} vs "
               f"{acc['relu']}")
    if a.smoke:
        verdict = "inconclusive"     # a smoke run decides nothing
    write_verdict(
        NAME, paper=papers.ELU, block="elu",
        claim="in networks deeper than 5 layers ELUs learn faster than ReLUs",
        verdict=verdict, summary=("SMOKE RUN: " if a.smoke else "") + summary,
        budget=f"{a.data} {len(tr)} train / {len(te)} test images, MLP {a.depth} x {a.width}, {a.epochs} epochs, "
               f"batch {a.batch_size}, plain SGD lr {a.lr}, He init, fp32, {a.seeds} seeds x 2 activations",
        rule=RULE, results={k: [{"curve": r["curve"], "test_acc": r["test_acc"]} for r in v] for k, v in res.items()},
        out_dir=a.out_dir)
    print(f"{NAME}: {verdict}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
