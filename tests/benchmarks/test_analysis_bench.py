"""benchmarks/analysis_erf.py and benchmarks/claims/analysis_erf_large_kernel.py (issue 15): the smoke modes run end
to end and write their reports; the canvas and the verdict rule by hand. No timing is checked."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_erf_benchmark_smoke(tmp_path):
    m = _load(ROOT / "analysis_erf.py")
    assert m.main(["--smoke", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "erf.json").read_text())
    assert set(data["mixers"]) == {"dwconv@1e-06", "dilated_reparam@1e-06", "dwconv@1", "dilated_reparam@1"}
    assert data["backbones"]["resnet18"]["layer"] == "layers.2"
    assert (tmp_path / "mixers_init.png").exists() and "## Mixers" in (tmp_path / "erf.md").read_text()


def test_claim_canvas_and_rule():
    m = _load(ROOT / "claims" / "analysis_erf_large_kernel.py")

    class Loader:   # normalises like blockzoo's: (pixel / 255 - 0.5) / 0.25
        def normalize(self, xb):
            return (xb.float() / 255 - 0.5) / 0.25

    x = torch.ones(2, 1, 2, 2)
    out = m.canvas(Loader(), x, 6)
    assert out.shape == (2, 1, 6, 6) and torch.equal(out[:, :, 2:4, 2:4], x)
    assert float(out[0, 0, 0, 0]) == -2.0                  # the background is a normalised 0 pixel
    assert m.verdict_of([0.2, 0.3, 0.25], [0.1, 0.1, 0.1])[0] == "reproduced"
    assert m.verdict_of([0.1, 0.1, 0.1], [0.2, 0.2, 0.2])[0] == "not reproduced"
    assert m.verdict_of([0.3, 0.1, 0.2], [0.1, 0.2, 0.1])[0] == "inconclusive"


@pytest.mark.slow
def test_claim_smoke(tmp_path):
    m = _load(ROOT / "claims" / "analysis_erf_large_kernel.py")
    assert m.main(["--smoke", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "analysis_erf_large_kernel.json").read_text())
    assert rec["verdict"] in ("reproduced", "not reproduced", "inconclusive")
    assert len(rec["results"]["per_mixer"]["dwconv"]["trained"]) == 2
    assert (tmp_path / "analysis_erf_large_kernel.png").exists()
