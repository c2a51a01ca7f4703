"""Shared by the distillation claim runs (``distill_*.py``: MEAL V2 [S027], FerKD [S062]): the command-line budget,
the teacher and student trainings with the trainer's ``--distill``, and the paired-difference verdict.

Every run goes to ``<work dir>/<name>-<config hash>`` (:func:`blockzoo.train.trainer.config_hash`). The trainer
returns a finished run with the same settings instead of training it again, so with the same ``--work-dir`` the two
teachers are trained once and shared by ``distill_meal_v2.py`` and ``distill_ferkd.py`` (and so is every student
both scripts train with the same settings, e.g. the label-trained baseline); another budget gets other folders.
Without ``--work-dir`` each script trains in a temporary folder removed after it.

The budget defaults (:func:`add_arguments`) are the recorded one: SpeedNet teachers and students at 28 px on a
class-stratified Fashion-MNIST subset, the trainer's default recipe (SGD Nesterov, one-cycle schedule, crop + flip)
with SpeedNet's data-dependent whitening init (``data_init``) and a peak learning rate of 0.2 (``--lr``; at the
trainer's defaults a 10-epoch teacher reached 80.0% on this subset, with both changes a 5-epoch student 83.7%, one
probe each), all students of a seed seeing the same data order and epochs. The teachers have the students' widths
and twice their epochs (wider ones cost too much CPU here).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path

from blockzoo.data import load_split
from blockzoo.report.stats import detectable_difference, mean_std, paired_ttest
from blockzoo.train import TrainConfig, train
from blockzoo.train.trainer import config_hash

RULE = ("reproduced if the mean paired difference (distilled - baseline) of the test accuracy is > 0 with a paired "
        "two-sided t-test p < 0.05 over the seeds; not reproduced if the mean difference is <= 0; inconclusive "
        "otherwise (better on average but not significantly)")
#: the teacher ensemble: this many teachers, seeds 100, 101, ...
TEACHERS = 2


def widths(s: str) -> tuple[int, int, int]:
    """``"8,16,32"`` -> ``(8, 16, 32)`` (SpeedNet's three group widths)."""
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The budget options both scripts share (defaults: the recorded budget)."""
    p.add_argument("--train", type=int, default=3000, help="training images (class-stratified Fashion-MNIST subset)")
    p.add_argument("--test", type=int, default=2000, help="test images (class-stratified)")
    p.add_argument("--teacher-epochs", type=int, default=10)
    p.add_argument("--epochs", type=int, default=5, help="student epochs")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.2, help="peak SGD learning rate (the trainer's default at batch 64 "
                                                        "is 0.05: too low for SpeedNet's 1/9 logit scale)")
    p.add_argument("--teacher-widths", type=widths, default=(16, 32, 64), help="the teachers' SpeedNet widths")
    p.add_argument("--student-widths", type=widths, default=(16, 32, 64))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--smoke", action="store_true", help="a seconds-long run (tiny data, 2 seeds, 1 epoch)")
    p.add_argument("--out-dir", default=None, help="verdict folder (default benchmarks/results/claims)")
    p.add_argument("--work-dir", default=None, help="run folders, reused by a later run with the same settings "
                                                    "(default: a temporary folder, removed after)")


def parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; ``--smoke`` replaces the budget by a tiny one."""
    a = p.parse_args(argv)
    if a.smoke:
        a.train, a.test, a.teacher_epochs, a.epochs, a.seeds = 256, 128, 1, 1, 2
        a.teacher_widths, a.student_widths = (8, 8, 8), (4, 4, 4)
    return a


class Lab:
    """The runs of one script: the data subsets, the teachers and the students, all in ``work``."""

    def __init__(self, a: argparse.Namespace, work: Path) -> None:
        self.a, self.work = a, work
        self.common = dict(data="fashion-mnist", batch_size=a.batch_size, progress=False, threads=a.threads,
                           device="cpu", precision="fp32", log="none", subset=a.train, test_subset=a.test,
                           lr=a.lr, data_init=True)
        pick = TrainConfig(**self.common)
        self.train_set, self.test_set = load_split(pick, "train", subset_seed=0), load_split(pick, "test")
        self.teacher_results: list[dict] = []
        self.teacher_paths: list[str] = []

    def run(self, name: str, widths: tuple[int, int, int], epochs: int, seed: int, **kw) -> dict:
        """Train (or return the finished run with the same settings) into ``<work>/<name>-<config hash>``."""
        cfg = TrainConfig(model="speednet", model_kwargs={"widths": widths}, epochs=epochs, seed=seed,
                          eval_every=epochs, **self.common, **kw)
        cfg = dataclasses.replace(cfg, out_dir=str(self.work / f"{name}-{config_hash(cfg)}"))
        r = train(cfg, train_set=self.train_set, test_set=self.test_set)
        print(f"{name}: test acc {r['final_test_acc']:.4f} ({r['train_time_s']:.0f} s)", flush=True)
        return r

    def teachers(self) -> list[float]:
        """Train the :data:`TEACHERS` teachers (once per work dir); their test accuracies."""
        a = self.a
        self.teacher_results = [self.run(f"teacher{k}", a.teacher_widths, a.teacher_epochs, 100 + k)
                                for k in range(TEACHERS)]
        self.teacher_paths = [str(Path(r["run_dir"]) / "last.safetensors") for r in self.teacher_results]
        return [r["final_test_acc"] for r in self.teacher_results]

    def student(self, mode: str, seed: int) -> float:
        """The test accuracy of the student of ``seed`` trained on the labels (``mode="labels"``) or with
        ``--distill mode`` from the teachers."""
        kw = {} if mode == "labels" else dict(distill=mode, teachers=self.teacher_paths)
        return self.run(f"{mode}-s{seed}", self.a.student_widths, self.a.epochs, seed, **kw)["final_test_acc"]

    def budget(self) -> str:
        a = self.a
        return (f"Fashion-MNIST {a.train} train / {a.test} test images (class-stratified, the same for every run); "
                f"{TEACHERS} SpeedNet teachers widths {a.teacher_widths}, {a.teacher_epochs} epochs each, trained "
                f"inside the script; SpeedNet students widths {a.student_widths} from scratch, {a.epochs} epochs, "
                f"batch {a.batch_size}, SGD Nesterov peak lr {a.lr} one-cycle, SpeedNet's whitening from the data "
                f"(--data-init), crop + flip, fp32 CPU, {a.seeds} seeds")


@contextlib.contextmanager
def lab(a: argparse.Namespace) -> Iterator[Lab]:
    """A :class:`Lab` in ``a.work_dir`` (created if missing) or in a temporary folder removed after."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        yield Lab(a, work)


def run_all(p: argparse.ArgumentParser, argv: list[str] | None, modes: tuple[str, ...]):
    """Parse the options, train the teachers and, per seed, a student in each of ``modes`` (``"labels"`` or a
    ``--distill`` method); returns ``(options, teacher accuracies, {mode: [accuracy per seed]}, budget line)``."""
    add_arguments(p)
    a = parse(p, argv)
    with lab(a) as runs:
        t_acc = runs.teachers()
        acc: dict[str, list[float]] = {m: [] for m in modes}
        for seed in range(a.seeds):
            for mode, accs in acc.items():
                accs.append(runs.student(mode, seed))
        return a, t_acc, acc, runs.budget()


def compare(new: list[float], base: list[float], new_name: str, base_name: str) -> tuple[str, str, dict]:
    """``(verdict by RULE, summary line, paired test as a dict)`` of ``new`` vs ``base`` test accuracies."""
    verdict, test = verdict_of(new, base)
    (m_n, s_n), (m_b, s_b) = mean_std(new), mean_std(base)
    det = detectable_difference(test.std_diff, test.n)
    line = (f"test acc {new_name} {100 * m_n:.2f} ± {100 * s_n:.2f}% vs {base_name} {100 * m_b:.2f} ± "
            f"{100 * s_b:.2f}% ({test.n} seeds): difference {100 * test.mean_diff:+.2f} ± {100 * test.std_diff:.2f} "
            f"points, p = {test.p_value if test.p_value is None else round(test.p_value, 3)}"
            + (f", detectable {100 * det:.2f} points" if det is not None else ""))
    return verdict, line, test.to_dict()


def teachers_line(t_acc: list[float]) -> str:
    return f"teachers {', '.join(f'{100 * t:.2f}%' for t in t_acc)}"
