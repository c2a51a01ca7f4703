"""benchmarks/claims/distill_meal_v2.py (issue 13's MEAL V2 claim run): the verdict rule by hand, and the smoke mode
runs end to end (teachers trained in the script, then labels vs --distill meal_v2) and writes a claims-lab verdict.
Needs the Fashion-MNIST files; no timing is checked."""
import json
from pathlib import Path

import pytest

from blockzoo.report.verdicts import load_verdicts
from helpers import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "claims" / "distill_meal_v2.py"


def _script():
    return load_script(SCRIPT)


def test_verdict_rule_by_hand():
    m = _script()
    assert m.verdict_of([0.80, 0.81, 0.82], [0.70, 0.705, 0.72])[0] == "reproduced"      # +10 points, tight
    assert m.verdict_of([0.70, 0.70, 0.70], [0.71, 0.70, 0.72])[0] == "not reproduced"   # worse on average
    assert m.verdict_of([0.75, 0.70, 0.70], [0.70, 0.72, 0.70])[0] == "inconclusive"     # +1 point, noisy


@pytest.mark.slow
def test_smoke_run_writes_a_verdict(tmp_path):
    from helpers import FMNIST_DIR
    if not FMNIST_DIR.is_dir():
        pytest.skip("Fashion-MNIST files not installed")
    m = _script()
    assert m.main(["--smoke", "--threads", "1", "--out-dir", str(tmp_path), "--work-dir", str(tmp_path / "runs")]) == 0
    rec = json.loads((tmp_path / "distill_meal_v2.json").read_text())
    assert rec["verdict"] in ("reproduced", "not reproduced", "inconclusive") and rec["paper"]["id"] == "S027"
    assert len(rec["results"]["test_acc"]["labels"]) == len(rec["results"]["test_acc"]["meal_v2"]) == 2
    assert [r["name"] for r in load_verdicts(tmp_path)] == ["distill_meal_v2"]
    cfg = json.loads((tmp_path / "runs" / "meal_v2-s0" / "result.json").read_text())["config"]
    assert cfg["distill"] == "meal_v2" and len(cfg["teachers"]) == 2
