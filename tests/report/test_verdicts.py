"""The claims lab's verdict records: written atomically with the machine and command, listed by ``claims --lab``."""
import json

import pytest

from blockzoo import papers
from blockzoo.cli import main
from blockzoo.errors import ConfigError
from blockzoo.report.verdicts import load_verdicts, write_verdict


def _write(tmp_path, name="demo", verdict="not reproduced"):
    return write_verdict(name, paper=papers.INCEPTION_V4, claim="scaling stabilises training", verdict=verdict,
                         summary="0.50 ± 0.01 vs 0.49 ± 0.02", budget="1 epoch, 3 seeds", rule="gap > 2 std",
                         block="scaled_residual", results={"a": [0.5, 0.51]}, out_dir=tmp_path)


def test_write_and_load_round_trip(tmp_path):
    path = _write(tmp_path)
    rec = json.loads(path.read_text())
    assert rec["verdict"] == "not reproduced" and rec["paper"]["id"] == "S017" and rec["results"] == {"a": [0.5, 0.51]}
    assert rec["machine"]["threads"] >= 1 and rec["command"]
    assert "**verdict: not reproduced**" in (tmp_path / "demo.md").read_text()
    assert [r["name"] for r in load_verdicts(tmp_path)] == ["demo"]
    assert load_verdicts(tmp_path / "missing") == []


def test_bad_verdicts_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="verdict must be one of"):
        _write(tmp_path, verdict="sort of")
    (tmp_path / "bad.json").write_text('{"name": "bad"}')
    with pytest.raises(ConfigError, match="bad.json: not a claims-lab verdict"):
        load_verdicts(tmp_path)


def test_cli_lists_the_lab(tmp_path, capsys):
    _write(tmp_path, "one", "reproduced")
    _write(tmp_path, "two", "inconclusive")
    assert main(["claims", "--lab", str(tmp_path), "--verdict", "reproduced", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["one"]
    assert main(["claims", "--lab", str(tmp_path)]) == 0
    assert "claims lab" in capsys.readouterr().out


def test_info_and_claims_show_the_lab_next_to_the_registry(tmp_path, monkeypatch, capsys):
    """``blockzoo info BLOCK`` lists the verdicts about that block; plain ``blockzoo claims`` adds the lab table."""
    _write(tmp_path / "benchmarks" / "results" / "claims", "one", "reproduced")
    monkeypatch.chdir(tmp_path)
    assert main(["info", "scaled_residual", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [r["verdict"] for r in info["lab"]] == ["reproduced"]
    assert main(["info", "scaled_residual"]) == 0
    assert "claims lab [reproduced]: scaling stabilises training" in capsys.readouterr().out
    assert main(["info", "se", "--json"]) == 0 and json.loads(capsys.readouterr().out)["lab"] == []
    assert main(["claims"]) == 0
    out = capsys.readouterr().out
    assert "registered claims" in out and "claims lab" in out
