"""Claim run, S012 (Bermeitinger, Hrycej & Handschuh, "Make Deep Networks Shallow Again", KDIR 2023, arXiv:2309.08414;
:data:`blockzoo.papers.SHALLOW_AGAIN`): a deep sequential residual stack and the shallow parallel one
(``y = x + sum_i F_i(x)``, the same layers applied to the same input) reach similar training and validation losses.

The paper trained 6912 configurations (numbers of conv layers, filters, kernel sizes and other meta parameters) on
MNIST and CIFAR-10. Here a small grid at CPU scale: depth (residual units) x width (filters) x kernel size, each
configuration trained sequentially and in parallel from the same initial weights per seed, on a Fashion-MNIST subset
(pooled to 14 x 14). The network is the ResNet skeleton (``blockzoo.models.common.resnet.ResNet``) with one stage of
``depth`` basic units after a 3x3 stem, GAP and a linear classifier; ``parallel=depth`` makes the whole stage one
parallel group (``ParallelGroup``). The kernel size is the first conv of every unit (the ``conv`` slot; the unit's
second conv is the skeleton's 3x3); the paper's exact layer design (no norm, one conv per layer) was not available
here, so its numbers are not comparable one to one.

Rule: a configuration is *similar* for a loss (train or test) when the means over seeds differ by at most 10 % of the
sequential mean; reproduced if at least 75 % of the configurations are similar for both losses, not reproduced if
fewer than 50 % are, else inconclusive. The per-configuration paired differences (parallel - sequential, mean ± std
over seeds) are recorded too.

Usage: ``python benchmarks/claims/connection_shallow.py`` (the recorded budget), ``--smoke`` (seconds).
"""
from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import torch

from blockzoo import papers
from blockzoo.blocks.common.layers import ConvNormAct
from blockzoo.models.common.resnet import BasicBlock, ResNet
from blockzoo.report.stats import mean_std
from blockzoo.report.verdicts import write_verdict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from connection_common import add_options, fit, load, pooled  # noqa: E402

NAME = "connection_shallow"
TOLERANCE = 0.10
RULE = ("a configuration is similar for a loss when |mean parallel - mean sequential| <= 10% of the sequential mean "
        "(means over seeds); reproduced if >= 75% of the configurations are similar for both the train and the test "
        "loss, not reproduced if < 50%, else inconclusive")


def network(depth: int, width: int, kernel: int, parallel: bool, in_chans: int, num_classes: int) -> torch.nn.Module:
    """One stage of ``depth`` basic units (first conv ``kernel`` x ``kernel``), sequential or one parallel group."""
    def conv(in_ch, out_channels, stride=1, groups=1, norm="bn", act="relu"):
        return ConvNormAct(in_ch, out_channels, kernel, stride, groups=groups, norm=norm, act=act)
    return ResNet(BasicBlock, (depth,), (width,), num_classes=num_classes, in_chans=in_chans, stem="small",
                  stem_width=width, conv=conv, parallel=depth if parallel else 1, model_name="shallow_grid")


def similar(par: list[float], seq: list[float]) -> bool:
    return abs(mean_std(par)[0] - mean_std(seq)[0]) <= TOLERANCE * mean_std(seq)[0]


def verdict_of(share: float) -> str:
    return "reproduced" if share >= 0.75 else "not reproduced" if share < 0.5 else "inconclusive"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_options(p, subset=2000, epochs=3, seeds=3, lr=0.05)
    p.add_argument("--depths", default="2,4")
    p.add_argument("--widths", default="4,8")
    p.add_argument("--kernels", default="3,5")
    a = p.parse_args(argv)
    tr, te = load(a)
    grid = list(itertools.product(*(map(int, v.split(",")) for v in (a.depths, a.widths, a.kernels))))
    if a.smoke:
        grid = grid[:1]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work_dir or tmp)
        for depth, width, kernel in grid:
            key = f"d{depth}-w{width}-k{kernel}"
            runs = {"sequential": [], "parallel": []}
            for seed in range(a.seeds):
                for layout in runs:
                    torch.manual_seed(seed)   # the same initial weights for both layouts
                    net = network(depth, width, kernel, layout == "parallel", tr.in_chans, tr.num_classes)
                    runs[layout].append(fit(pooled(net), f"{key}-{layout}", seed, a, tr, te, work))
            results[key] = runs
    rows, ok = [], {"train_loss": 0, "test_loss": 0, "both": 0}
    for key, runs in results.items():
        row = {"config": key}
        both = True
        for loss in ("train_loss", "test_loss"):
            seq, par = ([r[loss] for r in runs[k]] for k in ("sequential", "parallel"))
            d = mean_std([b - s for b, s in zip(par, seq)])
            row[loss] = {"sequential": mean_std(seq), "parallel": mean_std(par), "diff": d,
                         "similar": similar(par, seq)}
            ok[loss] += row[loss]["similar"]
            both &= row[loss]["similar"]
        ok["both"] += both
        rows.append(row)
    share = ok["both"] / len(rows)
    verdict = "inconclusive" if a.smoke else verdict_of(share)
    diffs = "; ".join(f"{r['config']} train {r['train_loss']['diff'][0]:+.3f} ± {r['train_loss']['diff'][1]:.3f}, "
                      f"test {r['test_loss']['diff'][0]:+.3f} ± {r['test_loss']['diff'][1]:.3f}" for r in rows)
    summary = (f"{ok['both']}/{len(rows)} configurations similar in both losses (train {ok['train_loss']}, test "
               f"{ok['test_loss']}); parallel - sequential loss per config (mean ± std over seeds): {diffs}")
    write_verdict(
        NAME, paper=papers.SHALLOW_AGAIN, block="resnet skeleton parallel=k",
        claim="deep sequential and shallow parallel residual stacks give similar training and validation losses",
        verdict=verdict, summary=("SMOKE RUN: " if a.smoke else "") + summary,
        budget=f"{a.data} {len(tr)} train / {len(te)} test images pooled to 14 x 14, grid depth {a.depths} x width "
               f"{a.widths} x kernel {a.kernels} ({len(rows)} configs), {a.epochs} epochs, batch {a.batch_size}, SGD "
               f"momentum 0.9 lr {a.lr} cosine, wd 5e-4, fp32, {a.seeds} seeds x 2 layouts",
        rule=RULE, results={"rows": rows, "runs": results}, out_dir=a.out_dir)
    print(f"{NAME}: {verdict}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
