"""blockzoo.report.compare: --vary parsing, the full compare job (all outputs, resume, --model-arg), and run reuse.

blockzoo compare reuses a finished run only for the same result-changing configuration: a changed budget
(epochs, subset, --set, --model-arg) retrains into a folder of its own, and a leaderboard never mixes budgets."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from blockzoo.cli import main
from blockzoo.report import compare
from blockzoo.report.compare import CompareConfig, expand_variants, parse_vary, run_compare
from blockzoo.train import config_hash

TINY = dict(data="synthetic", subset=32, epochs=1, batch_size=32, progress=False, precision="fp32",
            channels_last=False, threads=1)


@pytest.fixture
def no_profiling(monkeypatch):
    """Profiling is not under test in the run-reuse tests (the full compare tests below cover it): a fixed row keeps
    these fast."""
    row = {"params": 1, "macs": 1_000_000, "latency_ms": None, "latency_iqr_ms": None, "latency_batch": 1,
           "latency_threads": 1, "uncounted_ops": {}}
    monkeypatch.setattr(compare, "_profile_variant", lambda *a, **k: dict(row))


def run(out: Path, trained: list, **kw) -> dict:
    cfg = dict(model="resnet20", vary={"attn": ["eca"]}, seeds=[0], out_dir=str(out), train=dict(TINY))
    return run_compare(CompareConfig(**{**cfg, **kw}), on_run_end=trained.append)


def check_only_current_runs(out: Path, trained: list) -> dict:
    """results.json names exactly the runs of this configuration, each with its hash, and those runs' files agree."""
    data = json.loads((out / "results.json").read_text())
    listed = [r for v in data["variants"] for r in v["runs"]]
    for r in listed:
        stored = json.loads((Path(r["run_dir"]) / "result.json").read_text())
        assert config_hash(stored["config"]) == r["config_hash"] and Path(r["run_dir"]).name.endswith(r["config_hash"])
    if trained:
        assert [r["config_hash"] for r in listed] == [t["config_hash"] for t in trained]
    return data


@pytest.mark.usefixtures("no_profiling")
def test_same_settings_reuse_and_a_changed_epoch_budget_retrains(tmp_path):
    trained: list = []
    run(tmp_path, trained)
    assert len(trained) == 1 and trained[0]["epochs_completed"] == 1
    first = check_only_current_runs(tmp_path, trained)
    trained.clear()
    again = run(tmp_path, trained)                       # identical settings: nothing is trained
    assert trained == [] and again["variants"][0]["test_acc"] == first["variants"][0]["test_acc"]

    run(tmp_path, trained, train={**TINY, "epochs": 2})  # another budget: trained, in a folder of its own
    assert len(trained) == 1 and trained[0]["config"]["epochs"] == 2 and trained[0]["epochs_completed"] == 2
    data = check_only_current_runs(tmp_path, trained)
    assert data["budget"]["epochs"] == 2
    md = (tmp_path / "leaderboard.md").read_text()
    assert "Budget: 2 epochs" in md and "1 epochs" not in md
    assert len(list((tmp_path / "runs" / "attn=eca").iterdir())) == 2   # both budgets kept, side by side
    trained.clear()
    run(tmp_path, trained)                               # back to the first budget: its run is reused
    assert trained == [] and check_only_current_runs(tmp_path, trained)["budget"]["epochs"] == 1


@pytest.mark.usefixtures("no_profiling")
@pytest.mark.slow
def test_changed_subset_set_and_model_arg_each_retrain(tmp_path):
    trained: list = []
    run(tmp_path, trained)
    for change, recorded in [
        (dict(train={**TINY, "subset": 64}), lambda r: r["config"]["subset"] == 64 and r["train_size"] == 64),
        (dict(fixed={"act": "elu"}), lambda r: r["config"]["slots"] == {"act": "elu", "attn": "eca"}),
        (dict(model_kwargs={"zero_init_last": False}),
         lambda r: r["config"]["model_kwargs"] == {"zero_init_last": False}),
    ]:
        trained.clear()
        run(tmp_path, trained, **change)
        assert len(trained) == 1 and recorded(trained[0]), change
        check_only_current_runs(tmp_path, trained)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "zero_init_last=False" in md and "act=" not in md   # the last compare's settings only
    assert len(list((tmp_path / "runs" / "attn=eca").iterdir())) == 4


# the full compare job (real profiling, checkpoints)
TINY_FULL = dict(data="synthetic", subset=64, epochs=1, batch_size=32, progress=False, precision="fp32",
                 channels_last=False, checkpoint=True)


def test_parse_vary():
    assert parse_vary(["attn=none,se(reduction=8,gate=sigmoid),eca"]) == {
        "attn": ["none", "se(reduction=8,gate=sigmoid)", "eca"]}
    assert parse_vary(["attn=none,[none, se(reduction=8,gate=sigmoid), eca]"]) == {   # a per-stage value
        "attn": ["none", "[none, se(reduction=8,gate=sigmoid), eca]"]}
    assert len(expand_variants({"attn": ["none", "se"], "act": ["relu", "elu", "gelu"]})) == 6


def test_tiny_compare_writes_all_outputs_and_resumes(tmp_path):
    cfg = CompareConfig(model="resnet20", vary={"attn": ["none", "eca"]}, seeds=[0, 1], out_dir=str(tmp_path),
                        train=TINY_FULL)
    res = run_compare(cfg)
    for f in ("leaderboard.md", "leaderboard.csv", "results.json", "tradeoff.png"):
        assert (tmp_path / f).stat().st_size > 0, f
    data = json.loads((tmp_path / "results.json").read_text())
    assert [v["label"] for v in data["variants"]] == ["attn=none", "attn=eca"]
    eca = data["variants"][1]
    assert eca["params"] - data["variants"][0]["params"] == 27  # 9 ECA modules with k = 3 in resnet20
    assert len(eca["test_acc"]) == 2 and eca["vs_baseline"]["n"] == 2
    md = (tmp_path / "leaderboard.md").read_text()
    assert "attn=none (baseline)" in md and "MACs" in md and "seeds [0, 1]" in md
    d = data["detectable_diff"]   # from the one non-baseline variant's paired differences
    assert d["seeds"] == 2 and d["std_diff"] == pytest.approx(eca["vs_baseline"]["std_diff"])
    assert "cannot be told from noise" in md and "TTA" not in md
    # a second run with the same arguments retrains nothing
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.glob("runs/*/*/result.json")}
    assert len(mtimes) == 4
    run_compare(cfg)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("runs/*/*/result.json")} == mtimes
    del res


def test_compare_model_arg_reaches_every_variant(tmp_path, capsys):
    """--model-arg passes non-slot constructor options to every variant (recorded in each run's config)."""
    assert main(["compare", "resnet20", "--vary", "attn=none,eca", "--model-arg", "zero_init_last=False",
                 "--seeds", "1", "--data", "synthetic", "--subset", "32", "--epochs", "1", "--batch-size", "32",
                 "--no-progress", "--precision", "fp32", "--no-channels-last", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["config"]["model_kwargs"] == {"zero_init_last": False}
    for v in data["variants"]:   # every run was trained with it
        run = json.loads((Path(v["runs"][0]["run_dir"]) / "result.json").read_text())
        assert run["config"]["model_kwargs"] == {"zero_init_last": False}
    assert data["variants"][1]["params"] - data["variants"][0]["params"] == 27  # 9 ECA modules with k = 3
    assert "zero_init_last=False" in (tmp_path / "leaderboard.md").read_text()


@pytest.mark.usefixtures("no_profiling")
def test_compare_on_an_image_folder_with_a_test_subset(tmp_path, make_image_folder):
    root = make_image_folder(48, 12)
    out = tmp_path / "cmp"
    assert main(["compare", "resnet20", "--vary", "attn=eca", "--data", str(root), "--test-subset", "6",
                 "--epochs", "1", "--batch-size", "16", "--seeds", "1", "--no-progress", "--precision", "fp32",
                 "--no-channels-last", "--threads", "1", "--log", "none", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert (res["data"], res["train_images"], res["test_images"], res["image_size"]) == (str(root), 48, 6, [8, 8])
    assert res["budget"]["test_subset"] == 6 and len(res["variants"]) == 1
    assert "on 48 training images (full set), test on 6 images, 8x8 px" in (out / "leaderboard.md").read_text()
    # a changed folder is another data set: its runs train afresh in their own folders, the old ones are kept
    first = {p.name for p in (out / "runs" / "attn=eca").iterdir()}
    (next((root / "train").rglob("*.png"))).unlink()
    assert main(["compare", "resnet20", "--vary", "attn=eca", "--data", str(root), "--test-subset", "6",
                 "--epochs", "1", "--batch-size", "16", "--seeds", "1", "--no-progress", "--precision", "fp32",
                 "--no-channels-last", "--threads", "1", "--log", "none", "--out", str(out)]) == 0
    now = {p.name for p in (out / "runs" / "attn=eca").iterdir()}
    assert first < now and len(now) == 2
    assert json.loads((out / "results.json").read_text())["train_images"] == 47


def test_detectable_words_and_the_tta_column():
    """The detectable-difference sentence (or why there is none), and the TTA column only when runs report one."""
    assert "fewer than 2 seeds" in compare.detectable_words({"detectable_diff": None})
    d = compare._detectable([{"vs_baseline": {"n": 3, "std_diff": 0.003}}, {"vs_baseline": {"n": 3,
                                                                                            "std_diff": 0.004}}])
    assert d["std_diff"] == pytest.approx(0.005 / 2 ** 0.5) and d["seeds"] == 3
    assert "3 seeds" in compare.detectable_words({"detectable_diff": d})
    row = {"label": "a", "params": 1, "macs": 1e6, "latency_ms": None, "latency_batch": 1, "train_time_s_mean": 1.0,
           "train_img_per_s_mean": 1.0, "test_acc": [0.9, 0.92], "test_acc_mean": 0.91, "test_acc_std": 0.01,
           "test_acc_min": 0.9, "test_acc_max": 0.92, "vs_baseline": {"mean_diff": 0.0, "std_diff": 0.0,
                                                                    "p_value": None}}
    assert "TTA acc % (mean ± std)" not in compare.leaderboard_rows({"variants": [row]})[0]
    tta = compare.leaderboard_rows({"variants": [{**row, "tta_acc_mean": 0.93, "tta_acc_std": 0.002}]})[0]
    assert tta["TTA acc % (mean ± std)"] == "93.00 ± 0.20"


def test_recipe_line_names_what_a_symbolic_precision_became():
    from blockzoo.report.compare import _precision_words
    assert _precision_words({"precision": "auto", "precision_used": ["fp32"]}) == "auto (fp32)"
    assert _precision_words({"precision": "auto", "precision_used": ["bfloat16 autocast", "fp32"]}) == \
        "auto (bfloat16 autocast, fp32)"                       # runs from two machines in one folder
    assert _precision_words({"precision": "fp32", "precision_used": ["fp32"]}) == "fp32"
    assert _precision_words({"precision": "bf16"}) == "bf16"  # a results.json written before precision_used
