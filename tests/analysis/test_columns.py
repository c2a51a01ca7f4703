"""``compare --analyze erf``: the ERF column per variant, from each run's checkpoint."""
import json

import pytest

from blockzoo.analysis.columns import check_analyses, leaderboard_cells
from blockzoo.errors import ConfigError


def test_cells_and_names():
    assert leaderboard_cells({"label": "x"}) == {}
    v = {"analysis": {"erf_area_20": [0.1, 0.3], "erf_area_20_mean": 0.2, "erf_area_20_std": 0.1414}}
    assert leaderboard_cells(v) == {"ERF 20% area % (mean ± std)": "20.00 ± 14.14"}
    assert check_analyses(["erf"]) == ["erf"]
    with pytest.raises(ConfigError, match="erf"):
        check_analyses(["erff"])


@pytest.mark.slow
def test_compare_with_erf_column(tmp_path, monkeypatch):
    from blockzoo.report import compare
    from blockzoo.report.compare import CompareConfig, run_compare
    row = {"params": 1, "macs": 1_000_000, "latency_ms": None, "latency_iqr_ms": None, "latency_batch": 1,
           "latency_threads": 1, "uncounted_ops": {}}
    monkeypatch.setattr(compare, "_profile_variant", lambda *a, **k: dict(row))
    train = dict(data="synthetic", subset=32, epochs=1, batch_size=32, progress=False, precision="fp32",
                 channels_last=False, threads=1)
    res = run_compare(CompareConfig(model="resnet20", vary={"attn": ["none", "eca"]}, seeds=[0], out_dir=str(tmp_path),
                                    train=train, analyze=["erf"]))
    for v in res["variants"]:
        assert len(v["analysis"]["erf_area_20"]) == 1 and 0 < v["analysis"]["erf_area_20_mean"] <= 1
    assert "ERF 20% area" in (tmp_path / "leaderboard.md").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["config"]["analyze"] == ["erf"]
    with pytest.raises(ConfigError, match="--analyze"):
        run_compare(CompareConfig(model="resnet20", vary={"attn": ["none"]}, seeds=[0], out_dir=str(tmp_path),
                                  train=train, analyze=["nope"]))
