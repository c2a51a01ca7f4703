"""benchmarks/claims/norm_ibn_robustness.py (issue 13's IBN-Net robustness claim run) and the brightness corruption
of blockzoo.analysis.robustness it needs: by hand, the verdict rule by hand, and the smoke mode end to end (needs
the Fashion-MNIST files)."""
import json
from pathlib import Path

import pytest
import torch

from blockzoo.analysis.robustness import SEVERITIES, corrupt
from helpers import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "claims" / "norm_ibn_robustness.py"


def test_brightness_by_hand():
    x = torch.tensor([0.0, 0.5, 0.8, 1.0]).view(1, 1, 2, 2)
    assert SEVERITIES["brightness"] == (0.05, 0.1, 0.15, 0.2, 0.3)
    torch.testing.assert_close(corrupt(x, "brightness", 5), torch.tensor([0.3, 0.8, 1.0, 1.0]).view(1, 1, 2, 2))
    torch.testing.assert_close(corrupt(x, "brightness", 1), torch.tensor([0.05, 0.55, 0.85, 1.0]).view(1, 1, 2, 2))


def test_verdict_rule_by_hand():
    combine = load_script(SCRIPT).combine
    assert combine("reproduced", "inconclusive") == "reproduced"         # more robust, clean accuracy not hurt
    assert combine("reproduced", "reproduced") == "reproduced"
    assert combine("reproduced", "not reproduced") == "not reproduced"   # robust but clearly less accurate
    assert combine("not reproduced", "reproduced") == "not reproduced"
    assert combine("inconclusive", "inconclusive") == "inconclusive"


def test_appearance_mean_uses_only_appearance_corruptions():
    m = load_script(SCRIPT)
    table = {"contrast": {1: 0.8, 5: 0.4}, "brightness": {1: 0.9, 5: 0.5}, "gaussian_noise": {1: 0.0}}
    assert m.appearance_mean(table) == pytest.approx(0.65)


@pytest.mark.slow
def test_smoke_run_writes_a_verdict(tmp_path):
    from helpers import FMNIST_DIR
    if not FMNIST_DIR.is_dir():
        pytest.skip("Fashion-MNIST files not installed")
    assert load_script(SCRIPT).main(["--smoke", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "norm_ibn_robustness.json").read_text())
    assert rec["verdict"] in ("reproduced", "not reproduced", "inconclusive") and rec["paper"]["id"] == "S052"
    res = rec["results"]
    assert len(res["ibn_a"]["clean"]) == len(res["bn"]["appearance"]) == 2
    assert set(res["bn"]["corrupted"][0]) == {"contrast", "brightness"}
