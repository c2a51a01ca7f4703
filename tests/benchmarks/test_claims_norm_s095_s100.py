"""benchmarks/claims/norm_gn_plus.py (S100) and norm_invariance_lr.py (S095), issue 13's improved-GN and
invariance-transform claim runs: each verdict rule by hand, and each script's smoke mode end to end (writes a
claims-lab verdict). Needs the Fashion-MNIST files for the smoke runs; no timing is checked."""
import json
from pathlib import Path

import pytest

from blockzoo.report.verdicts import load_verdicts
from helpers import load_script

CLAIMS = Path(__file__).resolve().parents[2] / "benchmarks" / "claims"


def _script(name: str):
    return load_script(CLAIMS / f"{name}.py")


def test_gn_plus_verdict_rule_by_hand():
    v = _script("norm_gn_plus").verdict_of
    assert v(["reproduced", "reproduced"]) == "reproduced"
    assert v(["reproduced", "inconclusive"]) == "inconclusive"          # better at one batch size only
    assert v(["reproduced", "not reproduced"]) == "not reproduced"      # clearly worse at one batch size
    assert v(["inconclusive", "inconclusive"]) == "inconclusive"
    assert v([]) == "inconclusive"


def test_invariance_verdict_rule_by_hand():
    v = _script("norm_invariance_lr").verdict_of
    bn_ref = [0.80, 0.81, 0.79]
    # trains at lr 1.0 (equal to the lr-0.1 reference, d = 0) where BN at lr 1.0 fails clearly
    assert v([0.80, 0.81, 0.79], [0.30, 0.32, 0.31], bn_ref) == "reproduced"
    # beats BN at lr 1.0 but falls clearly below the reference: d = -0.10, -0.11, -0.09 (se ~ 0.006)
    assert v([0.70, 0.70, 0.70], [0.30, 0.32, 0.31], bn_ref) == "not reproduced"
    # near the reference (d = -0.02, +0.01, -0.01: mean -0.0067 > -2 se = -0.018) but worse than BN at lr 1.0
    assert v([0.78, 0.82, 0.78], [0.85, 0.86, 0.85], bn_ref) == "not reproduced"
    # near the reference, but no clear gain over BN at lr 1.0 (gains +0.05, -0.04, 0.0)
    assert v([0.80, 0.81, 0.79], [0.75, 0.85, 0.79], bn_ref) == "inconclusive"
    assert v([0.9], [0.1], [0.5]) == "inconclusive"                       # one seed decides nothing


@pytest.mark.slow
@pytest.mark.parametrize("name, paper", [("norm_gn_plus", "S100"), ("norm_invariance_lr", "S095")])
def test_smoke_run_writes_a_verdict(tmp_path, name, paper):
    from helpers import FMNIST_DIR
    if not FMNIST_DIR.is_dir():
        pytest.skip("Fashion-MNIST files not installed")
    assert _script(name).main(["--smoke", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    assert [r["name"] for r in load_verdicts(tmp_path)] == [name]
    rec = json.loads((tmp_path / f"{name}.json").read_text())
    assert rec["verdict"] in ("reproduced", "not reproduced", "inconclusive") and rec["paper"]["id"] == paper
    accs = rec["results"]["test_acc"]
    runs = [r for per in accs.values() for r in per.values()] if name == "norm_gn_plus" else list(accs.values())
    assert runs and all(len(r) == 2 and all(0.0 <= x <= 1.0 for x in r) for r in runs)   # 2 smoke seeds each
