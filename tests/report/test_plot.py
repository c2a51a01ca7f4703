"""blockzoo.report.plot (``blockzoo plot``): training curves of run folders and of compare folders (the runs their
results.json lists), one legend entry per run, written to a PNG."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from blockzoo.errors import ConfigError
from blockzoo.report.plot import curves_figure, find_runs, plot_runs, pyplot


def fake_run(d: Path, epochs: int = 3, steps_per_epoch: int = 2, *, with_steps: bool = True,
             torn: bool = False) -> Path:
    """A run folder as the trainer writes it: metrics.jsonl (+ steps.csv)."""
    d.mkdir(parents=True)
    lines = [json.dumps({"epoch": e, "step": e * steps_per_epoch, "train_loss": 2.0 / e, "train_acc": 0.3 * e,
                         "test_loss": 2.2 / e, "test_acc": None if e == 1 else 0.25 * e, "lr": 0.1 / e})
             for e in range(1, epochs + 1)]
    (d / "metrics.jsonl").write_text("\n".join(lines) + ("\n{\"epoch\": 9, \"tr" if torn else "\n"))
    if with_steps:
        rows = [f"{s},{(s - 1) // steps_per_epoch + 1},{3.0 - 0.1 * s},{0.01 * s},100.0"
                for s in range(1, epochs * steps_per_epoch + 1)]
        (d / "steps.csv").write_text("step,epoch,loss,lr,img_per_s\n" + "\n".join(rows) + "\n")
    return d


def fake_compare(d: Path) -> Path:
    """A compare folder: results.json lists 2 variants x 2 seeds under runs/ (with run_dir paths as written from
    another working directory); runs/ also holds a run of another budget that it does not list."""
    variants = []
    for label in ("attn=none", "attn=eca"):
        runs = []
        for seed in (0, 1):
            fake_run(d / "runs" / label / f"seed{seed}-abcd1234", with_steps=seed == 0)
            runs.append({"seed": seed, "config_hash": "abcd1234",
                         "run_dir": f"elsewhere/cmp/runs/{label}/seed{seed}-abcd1234"})
        variants.append({"label": label, "runs": runs})
    fake_run(d / "runs" / "attn=none" / "seed0-00000000")      # another budget: not this compare's
    (d / "results.json").write_text(json.dumps({"variants": variants}))
    return d


def legend(fig) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


def test_one_run_all_panels(tmp_path):
    runs = find_runs([fake_run(tmp_path / "r", torn=True)])
    assert len(runs) == 1 and [e["epoch"] for e in runs[0].epochs] == [1, 2, 3]   # the torn line is skipped
    fig = curves_figure(runs)
    try:
        (ax_loss, ax_acc), (ax_lr, ax_step) = fig.axes[:2], fig.axes[2:4]
        train_loss, test_loss = ax_loss.lines[:2]
        assert list(train_loss.get_xdata()) == [1, 2, 3] and list(train_loss.get_ydata()) == [2.0, 1.0, 2 / 3]
        assert test_loss.get_linestyle() == "--"
        assert list(ax_acc.lines[1].get_xdata()) == [2, 3]     # epochs without evaluation are left out
        assert list(ax_lr.lines[0].get_xdata()) == list(range(1, 7))   # per step, from steps.csv
        assert list(ax_step.lines[0].get_ydata()) == pytest.approx([3.0 - 0.1 * s for s in range(1, 7)])
        assert legend(fig) == [str(tmp_path / "r")]
    finally:
        pyplot().close(fig)


def test_a_run_without_steps_csv_plots_the_epoch_lr(tmp_path):
    fig = curves_figure(find_runs([fake_run(tmp_path / "r", with_steps=False)]))
    try:
        lr = fig.axes[2].lines[0]
        assert list(lr.get_xdata()) == [2, 4, 6] and list(lr.get_ydata()) == pytest.approx([0.1, 0.05, 0.1 / 3])
        assert any("--log csv" in t.get_text() for t in fig.axes[3].texts)
    finally:
        pyplot().close(fig)


def test_compare_folder_is_its_listed_runs_one_legend_entry_each(tmp_path):
    cmp = fake_compare(tmp_path / "cmp")
    extra = fake_run(tmp_path / "single")
    runs = find_runs([cmp, extra])
    assert [r.label for r in runs] == ["attn=none seed0", "attn=none seed1", "attn=eca seed0", "attn=eca seed1",
                                       str(extra)]
    assert runs[0].path == cmp / "runs" / "attn=none" / "seed0-abcd1234"
    out = tmp_path / "curves.png"
    labels = plot_runs([cmp, extra], out, title="t")
    assert labels == [r.label for r in runs]
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 500
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    fig = curves_figure(runs)
    try:
        assert legend(fig) == labels
        assert len({line.get_color() for line in fig.axes[0].lines}) == 5   # one colour per run
    finally:
        pyplot().close(fig)


def test_not_a_run_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="neither a run folder .* nor a compare folder"):
        find_runs([tmp_path])
    (tmp_path / "results.json").write_text(json.dumps({"variants": [{"label": "a", "runs": [
        {"seed": 0, "run_dir": "x/runs/a/seed0-1"}]}]}))
    with pytest.raises(ConfigError, match="holds no training run"):
        find_runs([tmp_path])
