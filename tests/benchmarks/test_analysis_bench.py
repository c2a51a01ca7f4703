"""benchmarks/analysis_erf.py and benchmarks/claims/analysis_erf_large_kernel.py (issue 15), with their shared recipe
benchmarks/claims/analysis_common.py: the smoke modes run end to end and write their reports; the claim decides from
the benchmark's trained runs; the canvas and the verdict rule by hand. No timing is checked."""
import json
from pathlib import Path

import pytest
import torch

from helpers import load_script

ROOT = Path(__file__).resolve().parents[2] / "benchmarks"


def test_canvas_and_rule():
    common = load_script(ROOT / "claims" / "analysis_common.py")
    m = load_script(ROOT / "claims" / "analysis_erf_large_kernel.py")

    class Loader:   # normalises like blockzoo's: (pixel / 255 - 0.5) / 0.25
        def normalize(self, xb):
            return (xb.float() / 255 - 0.5) / 0.25

    x = torch.ones(2, 1, 2, 2)
    out = common.canvas(Loader(), x, 6)
    assert out.shape == (2, 1, 6, 6) and torch.equal(out[:, :, 2:4, 2:4], x)
    assert float(out[0, 0, 0, 0]) == -2.0                  # the background is a normalised 0 pixel
    assert m.verdict_of([0.2, 0.3, 0.25], [0.1, 0.1, 0.1])[0] == "reproduced"
    assert m.verdict_of([0.1, 0.1, 0.1], [0.2, 0.2, 0.2])[0] == "not reproduced"
    assert m.verdict_of([0.3, 0.1, 0.2], [0.1, 0.2, 0.1])[0] == "inconclusive"


def test_summarize_by_hand():
    common = load_script(ROOT / "claims" / "analysis_common.py")
    runs = [{"acc": a, "init": {str(t): 0.1 for t in (0.2, 0.3, 0.5, 0.99)},
             "trained": {str(t): a / 2 for t in (0.2, 0.3, 0.5, 0.99)}} for a in (0.8, 0.9)]
    s = common.summarize(runs)
    assert s["acc"][0] == pytest.approx(0.85) and s["acc"][1] == pytest.approx(0.0707107, rel=1e-5)   # sample std
    assert s["trained"]["0.99"][0] == pytest.approx(0.425) and s["init"]["0.2"] == pytest.approx([0.1, 0.0])


@pytest.mark.slow
def test_erf_benchmark_smoke_and_claim_from_it(tmp_path):
    m = load_script(ROOT / "analysis_erf.py")
    assert m.main(["--smoke", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "erf.json").read_text())
    assert set(data["mixers"]) == {"dwconv@1e-06", "dilated_reparam@1e-06", "dwconv@1", "dilated_reparam@1"}
    assert data["backbones"]["resnet18"]["layer"] == "layers.2"
    trained = data["trained"]["mixers"]
    assert set(trained) == {"dwconv", "dilated_reparam"} and len(trained["dwconv"]["per_seed"]) == 1
    assert 0.0 <= trained["dwconv"]["mean_std"]["acc"][0] <= 1.0
    md = (tmp_path / "erf.md").read_text()
    assert "## Trained" in md and "## At initialisation" in md
    assert (tmp_path / "mixers_init.png").exists() and (tmp_path / "mixers_trained.png").exists()
    # --part trained keeps the init part of erf.json
    assert m.main(["--smoke", "--part", "trained", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    again = json.loads((tmp_path / "erf.json").read_text())
    assert again["mixers"] == data["mixers"] and again["meta"] == data["meta"]
    claim = load_script(ROOT / "claims" / "analysis_erf_large_kernel.py")
    assert claim.main(["--from-benchmark", str(tmp_path / "erf.json"), "--out-dir", str(tmp_path / "claims")]) == 0
    rec = json.loads((tmp_path / "claims" / "analysis_erf_large_kernel.json").read_text())
    per = rec["results"]["per_mixer"]
    assert per["dwconv"]["trained"] == [r["trained"] for r in again["trained"]["mixers"]["dwconv"]["per_seed"]]
    assert "the trained runs of" in rec["budget"]


@pytest.mark.slow
def test_claim_smoke(tmp_path):
    m = load_script(ROOT / "claims" / "analysis_erf_large_kernel.py")
    assert m.main(["--smoke", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "analysis_erf_large_kernel.json").read_text())
    assert rec["verdict"] in ("reproduced", "not reproduced", "inconclusive")
    assert len(rec["results"]["per_mixer"]["dwconv"]["trained"]) == 2
    assert (tmp_path / "analysis_erf_large_kernel.png").exists()
