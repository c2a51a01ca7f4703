"""benchmarks/claims/gcp_smoothness.py (S002, issue 15): the verdict rule by hand and a smoke run end to end."""
import json
from pathlib import Path

import pytest

from helpers import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "claims" / "gcp_smoothness.py"


def test_verdict_rule():
    m = load_script(SCRIPT)
    gap = {"loss_range": [0.5, 0.6, 0.55], "grad_change_max": [2.0, 2.2, 2.1]}
    smooth = {"loss_range": [0.2, 0.25, 0.22], "grad_change_max": [1.0, 1.1, 1.05]}
    assert m.verdict_of(gap, smooth)[0] == "reproduced"
    rougher_grad = dict(smooth, grad_change_max=[2.5, 2.6, 2.7])       # smoother loss, less predictive gradient
    assert m.verdict_of(gap, rougher_grad)[0] == "not reproduced"
    noisy = dict(smooth, grad_change_max=[0.5, 2.3, 1.4])               # smaller on average, not significantly
    verdict, tests = m.verdict_of(gap, noisy)
    assert verdict == "inconclusive" and tests["grad_change_max"].mean_diff == pytest.approx(0.7)


@pytest.mark.slow
def test_smoke(tmp_path):
    m = load_script(SCRIPT)
    assert m.main(["--smoke", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "gcp_smoothness.json").read_text())
    assert rec["verdict"] == "inconclusive" and rec["summary"].startswith("SMOKE RUN")
    per = rec["results"]["per_seed"]
    assert len(per["gap"]["loss_range"]) == len(per["gcp"]["grad_change_max"]) == 2
    probes = rec["results"]["probes"]["gcp"][0]
    assert [p["step"] for p in probes] == [0, 2]          # 64 images / batch 16 = 4 steps, a probe every 2 (smoke)
    assert all(p["loss_range"] >= 0 for p in probes)
