"""Claim run (S027, MEAL V2, Shen & Savvides 2020): a student distilled from the averaged softmax of a teacher
ensemble, with the discriminator on the outputs and no hard labels (``--distill meal_v2``), beats the same student
trained on the labels (the paper: ResNet-18 69.76% -> 73.19% and ResNet-50 -> 80.67% on ImageNet).

At CPU scale (``distill_common``): two SpeedNet teachers (``--teacher-widths``, twice the students' epochs) are
trained inside this script on a class-stratified Fashion-MNIST subset; then, for each seed, a SpeedNet student is
trained on the same images once with the labels (the default recipe: label smoothing 0.1, weight decay 5e-4) and
once with ``--distill meal_v2`` from the two teachers (MEAL V2's recipe: weight decay 0, no labels), same epochs,
schedule and data order. Unlike the paper the students start from scratch (MEAL V2 initialises them from pretrained
weights). Verdict rule: :data:`distill_common.RULE` on the paired per-seed test-accuracy difference. With the same
``--work-dir`` as ``distill_ferkd.py`` the teachers and students are shared (each trained once).

    python benchmarks/claims/distill_meal_v2.py --work-dir W   # the recorded budget (~8 min of 2-core CPU when idle)
    python benchmarks/claims/distill_meal_v2.py --smoke        # seconds
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill_common import RULE, compare, run_all, teachers_line, verdict_of  # noqa: E402

from blockzoo import papers  # noqa: E402
from blockzoo.report.verdicts import write_verdict  # noqa: E402

__all__ = ["main", "verdict_of"]


def main(argv: list[str] | None = None) -> int:
    a, t_acc, acc, budget = run_all(argparse.ArgumentParser(description=__doc__.splitlines()[0]), argv,
                                    ("labels", "meal_v2"))
    verdict, line, paired = compare(acc["meal_v2"], acc["labels"], "MEAL V2", "labels")
    summary = f"{line}; {teachers_line(t_acc)}"
    path = write_verdict(
        "distill_meal_v2", paper=papers.MEAL_V2, block="--distill meal_v2",
        claim="distilling a student from the averaged softmax of a teacher ensemble with a discriminator on the "
              "outputs and no one-hot labels makes it more accurate than training it on the labels",
        verdict=verdict, summary=summary, budget=budget, rule=RULE,
        results={"test_acc": acc, "teacher_test_acc": t_acc, "paired": paired}, out_dir=a.out_dir)
    print(f"{verdict}: {summary}\nwritten {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
