"""The compare job (tiny synthetic comparison) and the CLI (--help everywhere, smoke runs, clear errors)."""
import json
import subprocess
import sys

import pytest

from blockzoo import create_model
from blockzoo.cli import main
from blockzoo.report.compare import CompareConfig, expand_variants, parse_vary, run_compare


def test_parse_vary():
    assert parse_vary(["attn=none,se(reduction=8,gate=sigmoid),eca"]) == {
        "attn": ["none", "se(reduction=8,gate=sigmoid)", "eca"]}
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


@pytest.mark.parametrize("cmd", [[], ["list"], ["info"], ["profile"], ["train"], ["compare"], ["docs"], ["claims"]])
def test_help_everywhere(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main(cmd + ["--help"])
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_cli_smoke(capsys, tmp_path):
    assert main(["list", "blocks", "--slot", "attn", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"se", "eca", "coord"} <= {b["name"] for b in out["blocks"]}
    assert main(["info", "eca", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["paper"]["arxiv"] == "1910.03151"
    assert main(["profile", "resnet20", "--input", "1,28,28", "--set", "attn=eca", "--no-latency", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["params"] == 269_461 and rep["macs"] > 0
    assert main(["profile", "eca", "--channels", "64", "--input", "64,8,8", "--no-latency", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 3
    assert main(["train", "resnet20", "--data", "synthetic", "--subset", "64", "--epochs", "1", "--batch-size", "32",
                 "--no-progress", "--precision", "fp32", "--out", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "result.json").exists()


def test_cli_errors_are_one_clear_line(capsys):
    assert main(["info", "ecaa"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean: eca" in err and "Traceback" not in err
    assert main(["profile", "resnet20", "--set", "attn=bn", "--no-latency"]) == 2
    assert "cannot go into the 'attn' slot" in capsys.readouterr().err
    assert main(["train", "resnet20", "--data", "nope", "--epochs", "1", "--no-progress"]) == 2
    assert "nope" in capsys.readouterr().err


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "blockzoo.cli", "list", "models", "resnet2*", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "resnet20" in r.stdout


def test_compare_model_arg_places_blocks_in_late_stages_only(tmp_path, capsys):
    """--model-arg passes non-slot constructor options (here ResNet's attn_stages) to every variant."""
    assert main(["compare", "resnet20", "--vary", "attn=none,eca", "--model-arg", "attn_stages=(2,)",
                 "--seeds", "1", "--data", "synthetic", "--subset", "32", "--epochs", "1", "--batch-size", "32",
                 "--no-progress", "--precision", "fp32", "--no-channels-last", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["config"]["model_kwargs"] == {"attn_stages": [2]}  # the tuple, as JSON
    # ECA in the 3 blocks of the last stage only (64 channels -> k = 3): 9 parameters instead of 27
    assert data["variants"][1]["params"] - data["variants"][0]["params"] == 9
    assert "attn_stages=" in (tmp_path / "leaderboard.md").read_text()


def test_unknown_model_option_is_one_clear_line(capsys):
    assert main(["profile", "resnet20", "--no-latency", "--model-arg", "attn_stage=(2,)"]) == 2
    assert "has no option 'attn_stage'" in capsys.readouterr().err
    assert main(["train", "resnet20", "--data", "synthetic", "--subset", "32", "--epochs", "1", "--no-progress",
                 "--model-arg", "attn_stage=(2,)"]) == 2
    err = capsys.readouterr().err
    assert "has no option 'attn_stage'" in err and "Traceback" not in err
    # a misspelt *block* option is not blamed on the model
    with pytest.raises(TypeError, match="reductoin"):
        create_model("resnet20", attn="se(reductoin=8)")
