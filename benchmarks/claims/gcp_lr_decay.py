"""Claim run, S002 (Wang et al., "What Deep CNNs Benefit from Global Covariance Pooling: An Optimization
Perspective", CVPR 2020, arXiv:2003.11241; :data:`blockzoo.papers.GCP`): networks with global covariance pooling
(GCP) permit a faster learning-rate decay (fewer epochs) than with global average pooling (GAP).

ResNet-20 with the registered ``gcp`` head vs its default ``avg`` head (GAP), everything else equal, each trained
with a long and a short schedule of the same peak lr decayed linearly to 0 (the trainer's onecycle, no warm-up):
the claim says shortening the schedule costs the GCP net less accuracy than the GAP net. The verdict is on that
interaction, paired by seed: (long - short)_GAP - (long - short)_GCP > 0; the short-schedule accuracies are
reported too. At CPU scale the head reduces to 64 channels (``gcp(reduce_dim=64)``: 2,080 features) instead of the
paper's 256 (32,896 features), whose Newton-Schulz iterations alone would cost ~9x the whole ResNet-20 here;
Fashion-MNIST instead of ImageNet / CIFAR.

Usage: ``python benchmarks/claims/gcp_lr_decay.py`` (the recorded budget), ``--smoke`` (seconds).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from blockzoo import papers
from blockzoo.report.stats import detectable_difference, mean_std, paired_ttest
from blockzoo.report.verdicts import write_verdict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from connection_common import add_data_options, load  # noqa: E402

from blockzoo.train import TrainConfig, train

NAME = "gcp_lr_decay"
HEADS = {"gap": "avg", "gcp": "gcp(reduce_dim=64)"}
RULE = ("reproduced if the accuracy the GCP net loses from the long to the short schedule is smaller than the GAP "
        "net's, paired by seed, with paired t-test p < 0.05; not reproduced if it is not smaller; else inconclusive")


def verdict_of(gap_drop: list[float], gcp_drop: list[float]) -> tuple[str, object]:
    """The verdict by :data:`RULE` from the per-seed accuracy drops (long - short schedule)."""
    t = paired_ttest(gap_drop, gcp_drop)       # > 0: GCP loses less
    if t.mean_diff <= 0:
        return "not reproduced", t
    return ("reproduced" if t.p_value is not None and t.p_value < 0.05 else "inconclusive"), t


def run(head: str, epochs: int, seed: int, a: argparse.Namespace, tr, te, out: Path) -> float:
    cfg = TrainConfig(model="resnet20", slots={"head": HEADS[head]}, epochs=epochs, batch_size=a.batch_size,
                      warmup_epochs=0.0, seed=seed, threads=a.threads, precision="fp32",
                      out_dir=str(out / f"{head}-e{epochs}-seed{seed}"), overwrite=True, checkpoint=False,
                      progress=False, log="none", eval_every=epochs)
    return float(train(cfg, None, tr, te)["final_test_acc"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--long", type=int, default=4, help="epochs of the long schedule")
    p.add_argument("--short", type=int, default=2, help="epochs of the short (fast-decay) schedule")
    p.add_argument("--batch-size", type=int, default=128)
    add_data_options(p, subset=3000, seeds=3)
    a = p.parse_args(argv)
    tr, te = load(a, subset=64, test_subset=32, long=2, short=1, batch_size=32)
    seeds = range(a.seeds)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work_dir or tmp)
        acc = {h: {n: [run(h, e, s, a, tr, te, work) for s in seeds] for n, e in (("long", a.long), ("short", a.short))}
               for h in HEADS}
    drop = {h: [lo - sh for lo, sh in zip(acc[h]["long"], acc[h]["short"])] for h in HEADS}
    verdict, t = verdict_of(drop["gap"], drop["gcp"])
    short = paired_ttest(acc["gcp"]["short"], acc["gap"]["short"])
    fmt = {(h, n): "{:.3f} ± {:.3f}".format(*mean_std(acc[h][n])) for h in HEADS for n in ("long", "short")}
    det = detectable_difference(t.std_diff, t.n)
    summary = (f"test acc GAP {fmt['gap', 'long']} ({a.long} ep) -> {fmt['gap', 'short']} ({a.short} ep), GCP "
               f"{fmt['gcp', 'long']} -> {fmt['gcp', 'short']}; drop GAP - drop GCP {t.mean_diff:.3f} ± "
               f"{t.std_diff:.3f} (p {t.p_value if t.p_value is None else round(t.p_value, 4)}, detectable "
               f"{det and round(det, 3)}); short schedule GCP - GAP {short.mean_diff:.3f} ± {short.std_diff:.3f}")
    if a.smoke:
        verdict = "inconclusive"     # a smoke run decides nothing
    write_verdict(
        NAME, paper=papers.GCP, block="gcp",
        claim="global covariance pooling permits a faster learning-rate decay (fewer epochs) than global average "
              "pooling",
        verdict=verdict, summary=("SMOKE RUN: " if a.smoke else "") + summary,
        budget=f"{a.data} {len(tr)} train / {len(te)} test images, resnet20 head avg vs gcp(reduce_dim=64), "
               f"{a.long} vs {a.short} epochs (onecycle linear decay, no warm-up, trainer defaults otherwise: SGD "
               f"Nesterov, batch {a.batch_size}, lr 0.1 x batch / 128, crop + flip), fp32, {a.seeds} seeds",
        rule=RULE, results={"test_acc": acc, "drop": drop, "ttest": t.to_dict(), "short_ttest": short.to_dict()},
        out_dir=a.out_dir)
    print(f"{NAME}: {verdict}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
