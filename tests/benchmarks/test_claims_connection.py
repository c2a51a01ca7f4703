"""benchmarks/claims/connection_shallow.py (S012) and connection_hyper.py (S001), issue 13's connection claim runs:
the verdict rules by hand, the grid network's two layouts, and each script's smoke mode end to end (synthetic data;
writes a claims-lab verdict). No timing checked."""
import json
from pathlib import Path

import pytest
import torch

from blockzoo.models.common.resnet import ParallelGroup
from blockzoo.report.verdicts import load_verdicts
from helpers import load_script

CLAIMS = Path(__file__).resolve().parents[2] / "benchmarks" / "claims"


def _script(name: str):
    return load_script(CLAIMS / f"{name}.py")


def test_shallow_rule_by_hand():
    s = _script("connection_shallow")
    assert s.similar([1.05, 1.05], [1.0, 1.0]) and not s.similar([1.2, 1.2], [1.0, 1.0])
    assert [s.verdict_of(v) for v in (1.0, 0.75, 0.6, 0.5, 0.4)] == [
        "reproduced", "reproduced", "inconclusive", "inconclusive", "not reproduced"]


def test_shallow_grid_network_layouts():
    s = _script("connection_shallow")
    seq, par = (s.network(3, 4, 5, p, 1, 10) for p in (False, True))
    assert not any(isinstance(m, ParallelGroup) for m in seq.modules())
    assert isinstance(par.layers[0][0], ParallelGroup) and len(par.layers[0][0].blocks) == 3
    assert seq.layers[0][0].conv1.conv.kernel_size == (5, 5) and seq.layers[0][0].conv2.kernel_size == (3, 3)
    assert sum(p.numel() for p in seq.parameters()) == sum(p.numel() for p in par.parameters())
    assert seq(torch.randn(2, 1, 14, 14)).shape == par(torch.randn(2, 1, 14, 14)).shape == (2, 10)


def test_hyper_rule_by_hand():
    h = _script("connection_hyper")
    assert h.verdict_of([0.80, 0.81, 0.82], [0.70, 0.705, 0.72])[0] == "reproduced"
    assert h.verdict_of([0.70, 0.70, 0.69], [0.71, 0.72, 0.72])[0] == "not reproduced"
    assert h.verdict_of([0.75, 0.70, 0.70], [0.70, 0.72, 0.68])[0] == "inconclusive"


@pytest.mark.slow
@pytest.mark.parametrize("name, paper", [("connection_shallow", "S012"), ("connection_hyper", "S001")])
def test_smoke_run_writes_a_verdict(tmp_path, name, paper):
    assert _script(name).main(["--smoke", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    assert [r["name"] for r in load_verdicts(tmp_path)] == [name]
    rec = json.loads((tmp_path / f"{name}.json").read_text())
    assert rec["verdict"] == "inconclusive" and rec["summary"].startswith("SMOKE RUN")   # a smoke run decides nothing
    assert rec["paper"]["id"] == paper
