"""benchmarks/claims/quant_ptq.py and benchmarks/quantize_speed.py (issue 14, S007): the verdict rule by hand and the
smoke runs end to end (slow: each quantizes through onnxruntime a few times). No timing is checked."""
import json
from pathlib import Path

import pytest

from helpers import load_script

ROOT = Path(__file__).resolve().parents[2] / "benchmarks"


def _script(path: Path):
    return load_script(path)


def test_within_2pct_rule_by_hand():
    m = _script(ROOT / "claims" / "quant_ptq.py")
    assert m.within_verdict([0.5, 0.7, 0.6]) == "reproduced"           # 0.6 + 2 * 0.1 / sqrt(3) < 2
    assert m.within_verdict([5.0, 6.0, 5.5]) == "not reproduced"       # 5.5 - 2 * 0.5 / sqrt(3) > 2
    assert m.within_verdict([0.0, 4.0, 2.0]) == "inconclusive"         # 2 +- 2.3 straddles the limit
    assert m.within_verdict([1.0]) == "inconclusive"                   # one seed: no spread


@pytest.mark.slow
def test_claim_smoke_run_writes_both_verdicts(tmp_path):
    m = _script(ROOT / "claims" / "quant_ptq.py")
    assert m.main(["--smoke", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    for name in ("quant_ptq_within_2pct", "quant_ptq_per_channel_vs_per_tensor"):
        rec = json.loads((tmp_path / f"{name}.json").read_text())
        assert rec["paper"]["id"] == "S007" and rec["verdict"] in ("reproduced", "not reproduced", "inconclusive")
        assert len(rec["results"]["acc_percent"]["int8_per_tensor"]) == 2


@pytest.mark.slow
def test_speed_smoke_run_writes_its_tables(tmp_path):
    m = _script(ROOT / "quantize_speed.py")
    assert m.main(["--smoke", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "quantize_speed.json").read_text())["rows"][0]
    q = row["backends"]["onnxruntime"]
    assert row["model"] == "resnet20" and q["size_ratio_vs_onnx_fp32"] > 3 and q["top1_agreement"] >= 0.75
    assert "| resnet20 |" in (tmp_path / "quantize_speed.md").read_text()
