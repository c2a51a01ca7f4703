"""benchmarks/attention_scaling.py and attention_collapse.py (the issue-10 benchmarks): the smoke modes run end to end
and write their reports; the growth exponent by hand. No timing is checked."""
import importlib.util
import json
from pathlib import Path

import pytest

from helpers import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "attention_scaling.py"


def _script():
    return load_script(SCRIPT)


def test_growth_exponent_by_hand():
    m = _script()
    assert m.growth([32, 64], [1.0, 4.0]) == pytest.approx([1.0])     # 4x pixels, 4x MACs: linear
    assert m.growth([32, 64], [1.0, 16.0]) == pytest.approx([2.0])    # 4x pixels, 16x MACs: quadratic


def test_smoke_run_writes_reports(tmp_path):
    m = _script()
    assert m.main(["--smoke", "--threads", "1", "--out", str(tmp_path / "scaling")]) == 0
    data = json.loads((tmp_path / "scaling.json").read_text())
    vit, swin = (data["models"][n] for n in m.SMOKE_MODELS)
    assert vit["size"] == swin["size"] == [16, 32]
    assert swin["growth"][0] == pytest.approx(1.0, abs=0.02)   # window attention: linear in the pixels
    assert vit["growth"][0] > 0.9   # at 16 vs 64 tokens the MLPs dominate; the quadratic term shows at larger sizes
    assert "| `swin_nano_patch2_window4_32` |" in (tmp_path / "scaling.md").read_text()
    assert (tmp_path / "scaling.png").stat().st_size > 0


def test_collapse_benchmark_smoke(tmp_path):
    """benchmarks/attention_collapse.py in smoke mode (synthetic data, one short epoch): both variants train and the
    report has a curve of depth - 1 similarities each."""
    spec = importlib.util.spec_from_file_location("attention_collapse", SCRIPT.parent / "attention_collapse.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--smoke", "--out", str(tmp_path / "collapse")]) == 0
    runs = json.loads((tmp_path / "collapse.json").read_text())["runs"]
    assert [r["reattn_from"] for r in runs] == [16, 0]
    assert all(len(r["similarity_trained"]) == len(r["similarity_init"]) == 15 for r in runs)
    assert "| deepvit (reattn_from=0) | 0 |" in (tmp_path / "collapse.md").read_text()
