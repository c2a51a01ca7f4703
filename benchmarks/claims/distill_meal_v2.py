"""Claim run (S027, MEAL V2, Shen & Savvides 2020): a student distilled from the averaged softmax of a teacher
ensemble, with the discriminator on the outputs and no hard labels (``--distill meal_v2``), beats the same student
trained on the labels (the paper: ResNet-18 69.76% -> 73.19% and ResNet-50 -> 80.67% on ImageNet).

At CPU scale: two stronger SpeedNets (``--teacher-widths``) are trained inside this script on a class-stratified
Fashion-MNIST subset; then, for each seed, a narrow SpeedNet student is trained on the same images once with the
labels (the default recipe: label smoothing 0.1, weight decay 5e-4) and once with ``--distill meal_v2`` from the two
teachers (MEAL V2's recipe: weight decay 0, no labels), same epochs, schedule and data order. Unlike the paper the
students start from scratch (MEAL V2 initialises them from pretrained weights). Verdict rule: :data:`RULE` on the
paired per-seed test-accuracy difference.

    python benchmarks/claims/distill_meal_v2.py            # the recorded budget (~4 min of 2-core CPU when idle)
    python benchmarks/claims/distill_meal_v2.py --smoke    # seconds
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from blockzoo import papers
from blockzoo.data import load_split
from blockzoo.report.stats import detectable_difference, mean_std, paired_ttest
from blockzoo.report.verdicts import write_verdict
from blockzoo.train import TrainConfig, train

RULE = ("reproduced if the mean paired difference (distilled - labels) of the test accuracy is > 0 with a paired "
        "two-sided t-test p < 0.05 over the seeds; not reproduced if the mean difference is <= 0; inconclusive "
        "otherwise (better on average but not significantly)")


def _widths(s: str) -> tuple[int, int, int]:
    w = tuple(int(v) for v in s.split(","))
    if len(w) != 3:
        raise argparse.ArgumentTypeError(f"three comma-separated widths expected, got {s!r}")
    return w  # type: ignore[return-value]


def verdict_of(distilled: list[float], labels: list[float]) -> tuple[str, object]:
    """The verdict by :data:`RULE` and the paired test."""
    test = paired_ttest(distilled, labels)
    if test.mean_diff <= 0:
        return "not reproduced", test
    return ("reproduced" if test.p_value is not None and test.p_value < 0.05 else "inconclusive"), test


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=2000, help="training images (class-stratified Fashion-MNIST subset)")
    p.add_argument("--test", type=int, default=2000, help="test images (class-stratified)")
    p.add_argument("--teacher-epochs", type=int, default=8)
    p.add_argument("--epochs", type=int, default=6, help="student epochs")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--teacher-widths", type=_widths, default=(16, 32, 64))
    p.add_argument("--student-widths", type=_widths, default=(8, 16, 16))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--smoke", action="store_true", help="a seconds-long run (tiny data, 2 seeds, 1 epoch)")
    p.add_argument("--out-dir", default=None, help="verdict folder (default benchmarks/results/claims)")
    p.add_argument("--work-dir", default=None, help="run folders (default: a temporary folder, removed after)")
    a = p.parse_args(argv)
    if a.smoke:
        a.train, a.test, a.teacher_epochs, a.epochs, a.seeds = 256, 128, 1, 1, 2
        a.teacher_widths, a.student_widths = (8, 8, 8), (4, 4, 4)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work_dir or tmp)
        common = dict(data="fashion-mnist", batch_size=a.batch_size, progress=False, threads=a.threads, device="cpu",
                      precision="fp32", log="none", subset=a.train, test_subset=a.test)
        pick = TrainConfig(**common)
        train_set, test_set = load_split(pick, "train", subset_seed=0), load_split(pick, "test")

        def run(name: str, widths: tuple[int, int, int], epochs: int, seed: int, **kw) -> dict:
            cfg = TrainConfig(model="speednet", model_kwargs={"widths": widths}, epochs=epochs, seed=seed,
                              eval_every=epochs, out_dir=str(work / name), **common, **kw)
            r = train(cfg, train_set=train_set, test_set=test_set)
            print(f"{name}: test acc {r['final_test_acc']:.4f} ({r['train_time_s']:.0f} s)", flush=True)
            return r

        teachers = [run(f"teacher{k}", a.teacher_widths, a.teacher_epochs, 100 + k) for k in range(2)]
        paths = [str(work / f"teacher{k}" / "last.safetensors") for k in range(2)]
        acc: dict[str, list[float]] = {"labels": [], "meal_v2": []}
        for seed in range(a.seeds):
            acc["labels"].append(run(f"labels-s{seed}", a.student_widths, a.epochs, seed)["final_test_acc"])
            acc["meal_v2"].append(run(f"meal_v2-s{seed}", a.student_widths, a.epochs, seed, distill="meal_v2",
                                      teachers=paths)["final_test_acc"])
    verdict, test = verdict_of(acc["meal_v2"], acc["labels"])
    (m_d, s_d), (m_l, s_l) = mean_std(acc["meal_v2"]), mean_std(acc["labels"])
    t_acc = [t["final_test_acc"] for t in teachers]
    det = detectable_difference(test.std_diff, test.n)
    summary = (f"test acc MEAL V2 {100 * m_d:.2f} ± {100 * s_d:.2f}% vs labels {100 * m_l:.2f} ± {100 * s_l:.2f}% "
               f"({a.seeds} seeds): difference {100 * test.mean_diff:+.2f} ± {100 * test.std_diff:.2f} points, "
               f"p = {test.p_value if test.p_value is None else round(test.p_value, 3)}"
               + (f", detectable {100 * det:.2f} points" if det is not None else "")
               + f"; teachers {', '.join(f'{100 * t:.2f}%' for t in t_acc)}")
    budget = (f"Fashion-MNIST {a.train} train / {a.test} test images (class-stratified, the same for every run); "
              f"2 SpeedNet teachers widths {a.teacher_widths}, {a.teacher_epochs} epochs each, trained inside the "
              f"script; SpeedNet students widths {a.student_widths} from scratch, {a.epochs} epochs, batch "
              f"{a.batch_size}, SGD Nesterov one-cycle (trainer defaults), crop + flip, fp32 CPU, {a.seeds} seeds")
    path = write_verdict(
        "distill_meal_v2", paper=papers.MEAL_V2, block="--distill meal_v2",
        claim="distilling a student from the averaged softmax of a teacher ensemble with a discriminator on the "
              "outputs and no one-hot labels makes it more accurate than training it on the labels",
        verdict=verdict, summary=summary, budget=budget, rule=RULE,
        results={"test_acc": acc, "teacher_test_acc": t_acc, "paired": test.to_dict()}, out_dir=a.out_dir)
    print(f"{verdict}: {summary}\nwritten {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
