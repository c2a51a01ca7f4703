"""Claim run, S001 (Zhu et al., "Hyper-Connections", ICLR 2025, arXiv:2409.19606; :data:`blockzoo.papers.
HYPER_CONNECTIONS`): hyper-connections improve over residual connections at (almost) equal parameters (the paper:
dense and MoE LLM pre-training, and ViT / image generation on ImageNet; dynamic HC with expansion rate 4 is its best
setting).

CPU scale: the CIFAR-style ``resnet20`` (0.27M parameters) on a Fashion-MNIST subset (pooled to 14 x 14) with the
``residual`` connection vs ``hyper_connection(n=4, dynamic=True)`` (the same initial weights per seed for everything
but the connections; HC adds about 1 % parameters, recorded below), trained with the same recipe; the static
connection weights are not weight-decayed (the trainer's default grouping, as the authors advise). The paper's
setting (a Pre-Norm transformer, long training) is far from this one, so a null result here says little about it.

A third variant, ``reduce='mean'``, averages the streams at the trunk's end instead of summing them (the paper's
sum relies on the final norm of a Pre-Norm network; a ResNet has none, so the sum scales its features, and every
branch's gradient, by n at initialisation); it is reported next to the verdict, which is about the paper's HC.

Rule: paired by seed on the final test accuracy: reproduced if HC is higher with paired t-test p < 0.05; not
reproduced if HC's mean is not higher; else inconclusive (the test loss is reported too).

Usage: ``python benchmarks/claims/connection_hyper.py`` (the recorded budget), ``--smoke`` (seconds).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from blockzoo import create_model, papers
from blockzoo.report.stats import detectable_difference, mean_std, paired_ttest
from blockzoo.report.verdicts import write_verdict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from connection_common import add_options, load, pooled, train_variants  # noqa: E402

NAME = "connection_hyper"
VARIANTS = {"residual": "residual", "hc": "hyper_connection(n=4, dynamic=True)",
            "hc_mean": "hyper_connection(n=4, dynamic=True, reduce='mean')"}
RULE = ("paired by seed on the final test accuracy: reproduced if HC - residual > 0 with paired t-test p < 0.05; "
        "not reproduced if the mean difference is <= 0; else inconclusive")


def verdict_of(hc: list[float], res: list[float]) -> tuple[str, object]:
    t = paired_ttest(hc, res)    # > 0: HC higher
    if t.mean_diff <= 0:
        return "not reproduced", t
    return ("reproduced" if t.p_value is not None and t.p_value < 0.05 else "inconclusive"), t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_options(p, subset=1000, epochs=2, seeds=3, lr=0.05)
    a = p.parse_args(argv)
    tr, te = load(a)
    res, params = train_variants(
        a, tr, te, VARIANTS, lambda c: create_model("resnet20", num_classes=tr.num_classes, in_chans=tr.in_chans,
                                                    connection=c), "resnet20", wrap=pooled)
    acc = {k: [r["test_acc"] for r in v] for k, v in res.items()}
    verdict, t = verdict_of(acc["hc"], acc["residual"])
    verdict = "inconclusive" if a.smoke else verdict
    ms = {k: "{:.4f} ± {:.4f}".format(*mean_std(v)) for k, v in acc.items()}
    loss = {k: "{:.4f} ± {:.4f}".format(*mean_std([r["test_loss"] for r in v])) for k, v in res.items()}
    det = detectable_difference(t.std_diff, t.n)
    tm = paired_ttest(acc["hc_mean"], acc["residual"])
    summary = (f"test acc HC {ms['hc']} vs residual {ms['residual']} (HC - residual {t.mean_diff:+.4f} ± "
               f"{t.std_diff:.4f}, p {t.p_value if t.p_value is None else round(t.p_value, 4)}, detectable "
               f"{det and round(det, 4)}); test loss {loss['hc']} vs {loss['residual']}; HC with reduce='mean' "
               f"{ms['hc_mean']} (- residual {tm.mean_diff:+.4f} ± {tm.std_diff:.4f}), test loss {loss['hc_mean']}; "
               f"params {params['hc']} vs {params['residual']}")
    write_verdict(
        NAME, paper=papers.HYPER_CONNECTIONS, block="hyper_connection",
        claim="hyper-connections improve over residual connections at (almost) equal parameters",
        verdict=verdict, summary=("SMOKE RUN: " if a.smoke else "") + summary,
        budget=f"{a.data} {len(tr)} train / {len(te)} test images pooled to 14 x 14, resnet20 residual vs "
               f"{VARIANTS['hc']}, {a.epochs} epochs, batch {a.batch_size}, SGD momentum 0.9 lr {a.lr} cosine, wd 5e-4 "
               f"(none on the static HC weights), fp32, {a.seeds} seeds",
        rule=RULE, results={"runs": res, "params": params}, out_dir=a.out_dir)
    print(f"{NAME}: {verdict}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
