"""The compare job (tiny synthetic comparison) and `blockzoo compare` (the rest of the CLI: tests/cli/test_cli.py)."""
import json
from pathlib import Path

from blockzoo.cli import main
from blockzoo.report.compare import CompareConfig, expand_variants, parse_vary, run_compare


def test_parse_vary():
    assert parse_vary(["attn=none,se(reduction=8,gate=sigmoid),eca"]) == {
        "attn": ["none", "se(reduction=8,gate=sigmoid)", "eca"]}
    assert parse_vary(["attn=none,[none, se(reduction=8,gate=sigmoid), eca]"]) == {   # a per-stage value
        "attn": ["none", "[none, se(reduction=8,gate=sigmoid), eca]"]}
    assert len(expand_variants({"attn": ["none", "se"], "act": ["relu", "elu", "gelu"]})) == 6


TINY = dict(data="synthetic", subset=64, epochs=1, batch_size=32, progress=False, precision="fp32",
            channels_last=False, checkpoint=True)


def test_tiny_compare_writes_all_outputs_and_resumes(tmp_path):
    cfg = CompareConfig(model="resnet20", vary={"attn": ["none", "eca"]}, seeds=[0, 1], out_dir=str(tmp_path),
                        train=TINY)
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
