"""Claim run (S090, Cho et al., ICCV 2021): the batch-whitening conv unit (whitening -> conv -> act) improves the
stability of whitening with a large learning rate, compared with the usual conv -> IterNorm -> act unit.

Three CIFAR-style ResNets of the same skeleton (depth 6n + 2, widths w, 2w, 4w), as in the official
``models/resnet.py`` (``unit_type`` org / ours):

* ``bn``: conv -> BN -> ReLU units (the usual unit; reference);
* ``iternorm``: conv -> IterNorm -> ReLU units (``unit_type='org'`` with IterNorm);
* ``bw_conv``: every conv preceded by IterNorm (``blockzoo.blocks.conv.bw_conv.BWConv``), also the projection
  shortcut; no norm after the stem; IterNorm before the global pooling (``unit_type='ours'``).

Each is trained with blockzoo's trainer (SGD + Nesterov, one-cycle decay, no warm-up so that the large LR hits the
untrained network as in the paper's step schedule) at a normal and a large peak LR, over several seeds, on a
class-stratified Fashion-MNIST subset; the stem is strided so that the maps are 14 x 14 (CPU budget). A run whose
loss becomes non-finite counts as diverged, with chance accuracy (0.1). Default budget (the argparse defaults:
ResNet-8 at widths 8/16/32, 400 training images, 2 epochs, 3 seeds x 2 LRs x 3 networks = 18 runs) is estimated at
about a minute of 2-core CPU time on an idle machine (IterNorm costs about 3x BN per step here, bw_conv about 2x);
``--smoke`` runs a seconds-long tiny version.

Verdict rule (:data:`RULE`, :func:`verdict_of`): at the large LR, the per-seed accuracy gap bw_conv - iternorm (paired
by seed), over at least 3 seeds (fewer: inconclusive). Not reproduced if its mean is <= 0; reproduced if it exceeds 2
standard deviations of the per-seed gap; otherwise inconclusive.
"""
from __future__ import annotations

import argparse
import tempfile

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.common.layers import ConvNormAct, make_norm
from blockzoo.blocks.conv.bw_conv import BWConv
from blockzoo.blocks.norm.iternorm import IterNorm
from blockzoo.data import load_dataset
from blockzoo.report.stats import detectable_difference, mean_std
from blockzoo.report.verdicts import write_verdict
from blockzoo.train import TrainConfig, train
from blockzoo.train.trainer import NonFiniteLossError

UNITS = ("iternorm", "bw_conv", "bn")   # the compared pair first
CHANCE = 0.1
RULE = ("per-seed test-accuracy gap bw_conv - iternorm at the large LR (paired by seed; a diverged run counts as "
        f"chance, {CHANCE}), over >= 3 seeds (fewer: inconclusive): not reproduced if the mean gap is <= 0, "
        "reproduced if it exceeds 2 std of the per-seed gap, else inconclusive")


def verdict_of(gaps: list[float]) -> str:
    """The verdict by :data:`RULE` from the per-seed gaps."""
    gap, sd = mean_std(gaps)
    if len(gaps) < 3:
        return "inconclusive"
    if gap <= 0:
        return "not reproduced"
    return "reproduced" if gap > 2 * sd else "inconclusive"


class BasicBlock(nn.Module):
    """Two 3x3 units and the shortcut; ``unit``: ``bn`` / ``iternorm`` (conv -> norm -> act) or ``bw_conv``."""

    def __init__(self, cin: int, cout: int, stride: int, unit: str, group_size: int):
        super().__init__()
        if unit == "bw_conv":
            self.conv1 = BWConv(cin, cout, stride, group_size=group_size)
            self.conv2 = BWConv(cout, cout, act="none", group_size=group_size)
            proj = nn.Sequential(IterNorm(cin, group_size=group_size), nn.Conv2d(cin, cout, 1, stride, bias=False))
        else:
            norm = "bn" if unit == "bn" else ("iternorm", {"group_size": group_size})
            self.conv1 = ConvNormAct(cin, cout, 3, stride, norm=norm)
            self.conv2 = ConvNormAct(cout, cout, 3, norm=norm, act="none")
            proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), make_norm(norm, cout))
        self.shortcut = proj if stride != 1 or cin != cout else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """CIFAR ResNet-(6n+2) at widths (w, 2w, 4w) with a stride-2 stem; the official org / ours layouts."""

    def __init__(self, unit: str, depth: int, width: int, group_size: int, num_classes: int = 10, in_chans: int = 1):
        super().__init__()
        n = (depth - 2) // 6
        ours = unit == "bw_conv"
        self.stem = ConvNormAct(in_chans, width, 3, 2, norm="none" if ours else
                                ("bn" if unit == "bn" else ("iternorm", {"group_size": group_size})))
        blocks, cin = [], width
        for i, cout in enumerate((width, 2 * width, 4 * width)):
            for j in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if i and not j else 1, unit, group_size))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.final_norm = IterNorm(cin, group_size=group_size) if ours else nn.Identity()
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.final_norm(self.blocks(self.stem(x))).mean((2, 3)))


def run_one(unit: str, lr: float, seed: int, args, train_set, test_set, tmp: str) -> dict:
    torch.manual_seed(seed)
    model = SmallResNet(unit, args.depth, args.width, args.group_size)
    cfg = TrainConfig(model=f"claim_{unit}", data="fashion-mnist", epochs=args.epochs, batch_size=args.batch_size,
                      lr=lr, warmup_epochs=0.0, seed=seed, out_dir=f"{tmp}/{unit}_{lr}_{seed}", checkpoint=False,
                      progress=False, log="none", precision="fp32", device="cpu", threads=args.threads,
                      eval_every=args.epochs)
    try:
        res = train(cfg, model=model, train_set=train_set, test_set=test_set)
        return {"acc": res["final_test_acc"], "diverged": False, "train_time_s": res["train_time_s"]}
    except NonFiniteLossError:
        return {"acc": CHANCE, "diverged": True, "train_time_s": None}


def report(runs: dict[str, dict[str, list[dict]]], seeds: int, args) -> None:
    """Write the verdict from the runs of the first ``seeds`` seeds."""
    normal, large = args.lrs

    def accs(unit: str, lr: float) -> list[float]:
        return [r["acc"] for r in runs[unit][str(lr)]]

    def fmt(unit: str, lr: float) -> str:
        m, s = mean_std(accs(unit, lr))
        div = sum(r["diverged"] for r in runs[unit][str(lr)])
        return f"{unit} {m:.3f} ± {s:.3f}" + (f" ({div} diverged)" if div else "")

    gaps = [a - b for a, b in zip(accs("bw_conv", large), accs("iternorm", large))]
    gap, gap_sd = mean_std(gaps)
    normal_gap, normal_sd = mean_std([a - b for a, b in zip(accs("bw_conv", normal), accs("iternorm", normal))])
    detect = detectable_difference(gap_sd, len(gaps))
    summary = (f"test acc at lr {large}: " + ", ".join(fmt(u, large) for u in UNITS) +
               f"; at lr {normal}: " + ", ".join(fmt(u, normal) for u in UNITS) +
               f"; gap bw_conv - iternorm at lr {large}: {gap:+.3f} ± {gap_sd:.3f} over {len(gaps)} seeds "
               f"(at lr {normal}: {normal_gap:+.3f} ± {normal_sd:.3f})" +
               (f"; a paired t-test over these seeds detects gaps >= {detect:.3f}" if detect else ""))
    budget = (f"Fashion-MNIST, {args.train_images} train / {args.test_images} test images (class-stratified), "
              f"{args.epochs} epochs, batch {args.batch_size}, ResNet-{args.depth} widths {args.width}/"
              f"{2 * args.width}/{4 * args.width} with a stride-2 stem (14x14 maps), IterNorm group size "
              f"{args.group_size}, T = 5; SGD Nesterov, one-cycle, no warm-up, peak LR {normal} and {large}; "
              f"{seeds} of {args.seeds} seeds; fp32 on CPU")
    write_verdict(
        "whitening_large_lr", paper=papers.BW_CONV_UNIT, block="bw_conv", verdict=verdict_of(gaps), summary=summary,
        claim="whitening placed before the conv (BW -> conv -> act) improves the stability and performance of batch "
              "whitening (IterNorm) when a large learning rate is used",
        budget=budget, rule=f"{RULE} (large LR = {large})", results={"runs": runs, "gaps_large_lr": gaps},
        out_dir=args.out_dir)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="seconds-long tiny run (tests)")
    p.add_argument("--train-images", type=int, default=400)
    p.add_argument("--test-images", type=int, default=300)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--depth", type=int, default=8, help="6n + 2")
    p.add_argument("--width", type=int, default=8, help="channels of the first stage")
    p.add_argument("--group-size", type=int, default=16, help="IterNorm group size (channels per group)")
    p.add_argument("--lrs", type=float, nargs=2, default=(0.1, 1.0), help="normal and large peak LR")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-dir", default=None, help="verdict folder (default benchmarks/results/claims)")
    args = p.parse_args(argv)
    if args.smoke:
        args.train_images, args.test_images, args.epochs, args.depth, args.width, args.seeds = 32, 20, 1, 8, 4, 1
        args.batch_size = 16
    train_set = load_dataset("fashion-mnist", "train", subset=args.train_images, seed=0)
    test_set = load_dataset("fashion-mnist", "test", subset=args.test_images, seed=0)
    runs: dict[str, dict[str, list[dict]]] = {u: {str(lr): [] for lr in args.lrs} for u in UNITS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for unit in UNITS:
                for lr in args.lrs:
                    runs[unit][str(lr)].append(run_one(unit, lr, seed, args, train_set, test_set, tmp))
                    print(f"{unit} lr={lr} seed={seed}: {runs[unit][str(lr)][-1]}", flush=True)
            report(runs, seed + 1, args)    # after every seed, so that an interrupted run leaves its seeds so far
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
