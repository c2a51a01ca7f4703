"""benchmarks/claims/distill_*.py (issue 13's MEAL V2 and FerKD claim runs, shared code in distill_common.py): the
verdict rule by hand, and the smoke modes run end to end (teachers trained in the script, then labels vs
--distill meal_v2 / ferkd), write claims-lab verdicts and share the teachers and students through --work-dir.
Needs the Fashion-MNIST files; no timing is checked."""
import json
from pathlib import Path

import pytest

from blockzoo.report.verdicts import load_verdicts
from helpers import load_script

CLAIMS = Path(__file__).resolve().parents[2] / "benchmarks" / "claims"


def _script(name: str = "distill_meal_v2"):
    return load_script(CLAIMS / f"{name}.py")


def test_verdict_rule_by_hand():
    m = _script()
    assert m.verdict_of([0.80, 0.81, 0.82], [0.70, 0.705, 0.72])[0] == "reproduced"      # +10 points, tight
    assert m.verdict_of([0.70, 0.70, 0.70], [0.71, 0.70, 0.72])[0] == "not reproduced"   # worse on average
    assert m.verdict_of([0.75, 0.70, 0.70], [0.70, 0.72, 0.70])[0] == "inconclusive"     # +1 point, noisy


def test_compare_summary_numbers():
    common = load_script(CLAIMS / "distill_common.py")
    verdict, line, paired = common.compare([0.80, 0.82, 0.84], [0.70, 0.71, 0.72], "FerKD", "labels")
    assert verdict == "reproduced" and paired["n"] == 3
    assert "FerKD 82.00 ± 2.00% vs labels 71.00 ± 1.00%" in line and "difference +11.00 ± 1.00 points" in line


def _fmnist():
    from helpers import FMNIST_DIR
    if not FMNIST_DIR.is_dir():
        pytest.skip("Fashion-MNIST files not installed")


def _run_dirs(work: Path, prefix: str) -> list[Path]:
    return sorted(d for d in work.iterdir() if d.name.startswith(prefix + "-"))


@pytest.mark.slow
def test_smoke_runs_write_verdicts_and_share_the_work_dir(tmp_path):
    _fmnist()
    work, args = tmp_path / "runs", ["--smoke", "--threads", "1", "--out-dir", str(tmp_path)]
    assert _script().main([*args, "--work-dir", str(work)]) == 0
    rec = json.loads((tmp_path / "distill_meal_v2.json").read_text())
    assert rec["verdict"] in ("reproduced", "not reproduced", "inconclusive") and rec["paper"]["id"] == "S027"
    assert len(rec["results"]["test_acc"]["labels"]) == len(rec["results"]["test_acc"]["meal_v2"]) == 2
    (meal,) = _run_dirs(work, "meal_v2-s0")
    cfg = json.loads((meal / "result.json").read_text())["config"]
    assert cfg["distill"] == "meal_v2" and len(cfg["teachers"]) == 2
    teachers = {d: (d / "last.safetensors").stat().st_mtime_ns for d in _run_dirs(work, "teacher0")}
    assert len(teachers) == 1

    assert _script("distill_ferkd").main([*args, "--work-dir", str(work)]) == 0
    assert {d: (d / "last.safetensors").stat().st_mtime_ns for d in _run_dirs(work, "teacher0")} == teachers
    assert len(_run_dirs(work, "labels-s0")) == len(_run_dirs(work, "meal_v2-s0")) == 1   # reused, not retrained
    (ferkd,) = _run_dirs(work, "ferkd-s1")
    assert json.loads((ferkd / "result.json").read_text())["config"]["distill"] == "ferkd"
    recs = {r["name"]: r for r in load_verdicts(tmp_path)}
    assert set(recs) == {"distill_meal_v2", "distill_ferkd", "distill_ferkd_vs_meal_v2"}
    fer = recs["distill_ferkd"]
    assert fer["paper"]["id"] == "S062" and "labelled choice" in fer["budget"]
    assert fer["results"]["test_acc"]["meal_v2"] == rec["results"]["test_acc"]["meal_v2"]   # the same students
