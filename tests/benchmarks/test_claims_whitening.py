"""benchmarks/claims/whitening_large_lr.py (issue 13's S090 claim run): the verdict rule by hand, the org / ours
network layouts, and the smoke mode end to end (writes a claims-lab verdict). Needs the Fashion-MNIST files for the
smoke run; no timing is checked."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from blockzoo.blocks.conv.bw_conv import BWConv
from blockzoo.blocks.norm.iternorm import IterNorm
from blockzoo.report.verdicts import load_verdicts
from helpers import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "claims" / "whitening_large_lr.py"


def _script():
    return load_script(SCRIPT)


def test_verdict_rule_by_hand():
    m = _script()
    assert m.verdict_of([0.10, 0.12, 0.11]) == "reproduced"          # +11 points, sd 1 point
    assert m.verdict_of([0.0, 0.0, 0.0]) == "not reproduced"         # e.g. both diverge, or both train
    assert m.verdict_of([0.05, -0.06, -0.02]) == "not reproduced"    # worse on average
    assert m.verdict_of([0.20, -0.10, 0.05]) == "inconclusive"       # +5 points, noisy
    assert m.verdict_of([0.10, 0.12]) == m.verdict_of([-0.1]) == "inconclusive"   # fewer than 3 seeds


def test_network_layouts():
    m = _script()
    ours = m.SmallResNet("bw_conv", depth=8, width=4, group_size=16)
    org = m.SmallResNet("iternorm", depth=8, width=4, group_size=16)
    bw = [u for u in ours.modules() if isinstance(u, BWConv)]
    assert len(bw) == 6 and isinstance(ours.final_norm, IterNorm)             # every 3x3 conv, + final whitening
    assert isinstance(ours.stem.norm, nn.Identity)                            # ours: no norm after the stem
    assert isinstance(ours.blocks[1].shortcut[0], IterNorm)                   # whitening before the 1x1 projection
    assert not any(isinstance(u, BWConv) for u in org.modules())
    assert isinstance(org.blocks[0].conv1.norm, IterNorm) and isinstance(org.final_norm, nn.Identity)
    for net in (ours, org):
        assert net(torch.randn(4, 1, 28, 28)).shape == (4, 10)


@pytest.mark.slow
def test_smoke_run_writes_a_verdict(tmp_path):
    from helpers import FMNIST_DIR
    if not FMNIST_DIR.is_dir():
        pytest.skip("Fashion-MNIST files not installed")
    m = _script()
    assert m.main(["--smoke", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "whitening_large_lr.json").read_text())
    assert rec["verdict"] == "inconclusive" and rec["paper"]["id"] == "S090" and rec["block"] == "bw_conv"
    runs = rec["results"]["runs"]
    assert set(runs) == {"bn", "iternorm", "bw_conv"} and all(len(v) == 2 for v in runs.values())
    assert [r["name"] for r in load_verdicts(tmp_path)] == ["whitening_large_lr"]
