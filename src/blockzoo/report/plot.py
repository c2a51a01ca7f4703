"""``blockzoo plot``: training curves (loss, accuracy, learning rate) of one or several runs, drawn to a PNG.

A run is a folder ``blockzoo train`` wrote (its ``metrics.jsonl``, one line per epoch, and, when it was logged with
``--log csv``, its ``steps.csv``, one row per optimizer step); a folder ``blockzoo compare`` wrote stands for the runs
its ``results.json`` lists (one per variant x seed, of that compare's budget only). The figure has four panels:
train (solid) and test (dashed) loss and accuracy per epoch, the learning rate and the per-step training loss per
optimizer step; each run has one colour and one legend entry.
"""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from blockzoo.errors import ConfigError, DataError
from blockzoo.files import atomic_write

__all__ = ["RunCurves", "load_run", "find_runs", "compare_runs", "curves_figure", "plot_runs", "pyplot"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


@dataclass
class RunCurves:
    """The curves of one run: ``epochs`` (its ``metrics.jsonl`` lines) and ``steps`` (its ``steps.csv`` rows as
    floats; empty when the run was not logged per step)."""

    label: str
    path: Path
    epochs: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, float]] = field(default_factory=list)


def load_run(path: str | Path, label: str | None = None) -> RunCurves:
    """Read the run in folder ``path`` (a torn last line of a killed run is skipped)."""
    path = Path(path)
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        raise ConfigError(f"{str(path)!r} holds no training run (no metrics.jsonl); pass a folder that "
                          f"`blockzoo train` or `blockzoo compare` wrote")
    epochs = []
    for line in metrics.read_text(encoding="utf-8").splitlines():
        try:
            epochs.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    steps = []
    if (path / "steps.csv").is_file():
        with open(path / "steps.csv", newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                try:
                    steps.append({k: float(v) for k, v in row.items() if v not in ("", None)})
                except (TypeError, ValueError):
                    continue
    return RunCurves(label or str(path), path, epochs, steps)


def compare_runs(results: dict[str, Any], folder: str | Path) -> list[RunCurves]:
    """The runs of a compare (its results dict; ``folder``: where it was written), labelled ``<variant> seed<k>``.
    A run is found under ``folder/runs/`` by its last two path parts, so a moved compare folder still works."""
    folder = Path(folder)
    runs = []
    for v in results.get("variants", []):
        for r in v.get("runs", []):
            run_dir = Path(r["run_dir"])
            runs.append(load_run(folder / "runs" / run_dir.parent.name / run_dir.name,
                                 f"{v['label']} seed{r['seed']}"))
    return runs


def find_runs(paths: Iterable[str | Path]) -> list[RunCurves]:
    """The runs of each path: a run folder, or a compare folder (all the runs its ``results.json`` lists)."""
    runs: list[RunCurves] = []
    for p in map(Path, paths):
        if (p / "metrics.jsonl").is_file():
            runs.append(load_run(p))
        elif (p / "results.json").is_file():
            try:
                results = json.loads((p / "results.json").read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise DataError(f"{str(p / 'results.json')!r} is not valid JSON ({e}); re-run the compare that "
                                f"wrote it") from None
            runs.extend(compare_runs(results, p))
        else:
            raise ConfigError(f"{str(p)!r} is neither a run folder (metrics.jsonl) nor a compare folder "
                              f"(results.json); pass a folder that `blockzoo train` or `blockzoo compare` wrote")
    if not runs:
        raise ConfigError("no run to plot; pass at least one run or compare folder")
    return runs


def _xy(rows: list[dict[str, Any]], x: str, y: str) -> tuple[list[float], list[float]]:
    pts = [(r[x], r[y]) for r in rows if r.get(x) is not None and r.get(y) is not None]
    return [a for a, _ in pts], [b for _, b in pts]


def curves_figure(runs: list[RunCurves], title: str | None = None) -> Any:
    """The 2 x 2 figure of the runs' curves (one colour and one legend entry per run)."""
    plt = pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    (ax_loss, ax_acc), (ax_lr, ax_step) = axes
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles = []
    for i, run in enumerate(runs):
        c = colors[i % len(colors)]
        handles.append(Line2D([], [], color=c, label=run.label))
        for ax, key in ((ax_loss, "loss"), (ax_acc, "acc")):
            ax.plot(*_xy(run.epochs, "epoch", f"train_{key}"), color=c, marker=".")
            ax.plot(*_xy(run.epochs, "epoch", f"test_{key}"), color=c, marker=".", linestyle="--")
        # per-step lr where the run logged steps, else the lr of each epoch's last step
        ax_lr.plot(*(_xy(run.steps, "step", "lr") if run.steps else _xy(run.epochs, "step", "lr")), color=c)
        ax_step.plot(*_xy(run.steps, "step", "loss"), color=c, linewidth=0.8)
    for ax, xlabel, ylabel, what in (
            (ax_loss, "epoch", "loss", "loss (solid: train, dashed: test)"),
            (ax_acc, "epoch", "accuracy", "accuracy (solid: train, dashed: test)"),
            (ax_lr, "optimizer step", "learning rate", "learning rate"),
            (ax_step, "optimizer step", "training loss", "training loss per step")):
        ax.set(xlabel=xlabel, ylabel=ylabel, title=what)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if not any(run.steps for run in runs):
        ax_step.text(0.5, 0.5, "no steps.csv: train with --log csv", ha="center", va="center",
                     transform=ax_step.transAxes)
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_runs(paths: Iterable[str | Path], out: str | Path | IO[bytes], *, title: str | None = None) -> list[str]:
    """Draw the curves of the runs in ``paths`` (see :func:`find_runs`) to ``out`` (a file name, written
    atomically, or a binary file object; PNG unless the name says another matplotlib format). Returns the legend's
    labels, one per run."""
    runs = find_runs(paths)
    fig = curves_figure(runs, title)
    try:
        if isinstance(out, (str, os.PathLike)):
            out = Path(out)
            fmt = out.suffix.lstrip(".").lower() or "png"
            atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format=fmt))
        else:
            fig.savefig(out, dpi=110, format="png")
    finally:
        pyplot().close(fig)
    return [r.label for r in runs]
