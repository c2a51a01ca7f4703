"""benchmarks/speed_vs_timm.py: the smoke mode runs end to end (timm needed; skipped without it), the reports render.

No timing is checked: the smoke run only proves that the script, the torchvision shim and the timm counterparts of
blockzoo's models still work together.
"""
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "speed_vs_timm.py"


def _script():
    return load_script(SCRIPT)


def test_summary_pairs_reps_and_geomean():
    m = _script()
    # the load triples between reps, each timm rep takes 1.1x its blockzoo partner: the paired ratio stays 1.1
    s = m.summarize([0.1, 0.3, 0.9], [0.11, 0.33, 0.99])
    assert s["ratio"] == pytest.approx(1.1) and s["paired_p25"] == pytest.approx(1.1)
    assert s["blockzoo_ms"] == pytest.approx(300.0) and s["timm_ms"] == pytest.approx(330.0)
    s = m.summarize([0.1, 0.1, 0.1], [0.1, 0.2, 0.4])
    assert s["ratio"] == pytest.approx(2.0) and s["ratio_min"] == pytest.approx(1.0)
    assert (s["paired_p25"], s["paired_p75"]) == (pytest.approx(1.5), pytest.approx(3.0))
    assert m.geomean([2.0, 0.5]) == pytest.approx(1.0)
    assert m.geomean([1.0, 4.0]) == pytest.approx(2.0)


def test_report_render():
    m = _script()
    cell = dict(blockzoo_ms=10.0, timm_ms=12.0, ratio=1.2, ratio_min=1.1, paired_p25=1.05, paired_p75=1.3)
    res = dict(timm_version="1.0", command="python x", machine={}, load_before="1 1 1", load_after="2 2 2",
               written="now", modes=["eval_fp32"], args=dict(batch=8, img=224, threads=2, reps=5, warmup=1),
               models={"resnet18": {"params": 11689512, "eval_fp32": cell}},
               geomean={"eval_fp32": 1.2, "all": 1.2})
    md = m.render(res)
    assert "| resnet18 | 11,689,512 | 10.0 / 12.0 | 1.20 [1.05-1.30] 1.10 |" in md
    assert "`python x`" in md and "eval_fp32 1.200" in md


@pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm is not installed (benchmark-only "
                    "dependency: pip install timm --no-deps huggingface_hub pyyaml)")
def test_smoke_run_writes_results(tmp_path):
    # a subprocess: the torchvision shim the script may put on sys.path must not leak into the test process
    subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path)], check=True, cwd=ROOT,
                   capture_output=True, timeout=600)
    res = json.loads((tmp_path / "speed_vs_timm.json").read_text())
    assert list(res["models"]) == ["convnext_atto", "resnet18"]
    assert res["modes"] == ["eval_fp32", "eval_bf16", "train"]
    for r in res["models"].values():
        for mode in res["modes"]:
            assert len(r[mode]["blockzoo_s"]) == len(r[mode]["timm_s"]) == res["args"]["reps"]
            assert r[mode]["ratio"] > 0 and math.isfinite(r[mode]["ratio"])
    assert set(res["geomean"]) == {*res["modes"], "all"}
    assert res["machine"]["threads"] == res["args"]["threads"]
    md = (tmp_path / "speed_vs_timm.md").read_text()
    assert "| convnext_atto |" in md and "Geometric mean" in md and res["command"] in md
