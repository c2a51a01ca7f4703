"""benchmarks/claims/prune_taylor_{correlation,tradeoff}.py (issue 14's Taylor pruning claim runs): the verdict rules
and the rank correlation by hand; the smoke modes run end to end and write claims-lab verdicts. The smoke runs need
the Fashion-MNIST files; no timing is checked."""
import json
from pathlib import Path

import pytest
import torch

from blockzoo.report.verdicts import load_verdicts
from helpers import load_script

CLAIMS = Path(__file__).resolve().parents[2] / "benchmarks" / "claims"


def _script(name):
    return load_script(CLAIMS / f"{name}.py")


def test_correlation_helpers_and_rule_by_hand():
    m = _script("prune_taylor_correlation")
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert m.spearman(a, a ** 3) == pytest.approx(1.0) and m.spearman(a, -a) == pytest.approx(-1.0)
    assert m.spearman(a, torch.tensor([1.0, 3.0, 2.0, 4.0])) == pytest.approx(0.8)   # 1 - 6*2 / (4*15)
    assert m.verdict_of([0.96, 0.97, 0.95]) == "reproduced"
    assert m.verdict_of([0.80, 0.82, 0.81]) == "not reproduced"
    assert m.verdict_of([0.99, 0.85, 0.95]) == "inconclusive"


def test_tradeoff_rule_by_hand():
    m = _script("prune_taylor_tradeoff")
    assert m.verdict_of([0.001, 0.002, 0.0]) == "reproduced"
    assert m.verdict_of([0.05, 0.06, 0.055]) == "not reproduced"
    assert m.verdict_of([0.0, 0.03, 0.01]) == "inconclusive"
    assert m.verdict_of([0.001, 0.002, 0.0], [0.3, 0.2, 0.25]) == "inconclusive"   # baseline near chance
    assert m.verdict_of([0.001, 0.002, 0.0], [0.9, 0.88, 0.89]) == "reproduced"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["prune_taylor_correlation", "prune_taylor_tradeoff"])
def test_smoke_run_writes_a_verdict(tmp_path, name):
    from helpers import FMNIST_DIR
    if not FMNIST_DIR.is_dir():
        pytest.skip("Fashion-MNIST files not installed")
    assert _script(name).main(["--smoke", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / f"{name}.json").read_text())
    assert rec["verdict"] in ("reproduced", "not reproduced", "inconclusive") and rec["paper"]["id"] == "S104"
    assert [r["name"] for r in load_verdicts(tmp_path)] == [name]
