"""benchmarks/claims/norm_bn_init.py and norm_convnorm.py (issue 13's BN-init and ConvNorm claim runs): the shared
verdict rule and optimizer groups by hand, the spectral-norm estimate against an exact value, and each script's smoke
mode end to end (writes a claims-lab verdict). Needs the Fashion-MNIST files for the smoke runs; no timing checked."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from blockzoo import create_block
from blockzoo.report.verdicts import load_verdicts
from helpers import load_script

CLAIMS = Path(__file__).resolve().parents[2] / "benchmarks" / "claims"


def _script(name: str):
    return load_script(CLAIMS / f"{name}.py")


def test_verdict_rule_by_hand():
    common = _script("norm_common")
    assert common.paired_verdict([0.80, 0.81, 0.82], [0.70, 0.705, 0.72])[0] == "reproduced"
    assert common.paired_verdict([0.70, 0.70, 0.69], [0.71, 0.72, 0.72])[0] == "not reproduced"
    assert common.paired_verdict([0.75, 0.70, 0.70], [0.70, 0.72, 0.70])[0] == "inconclusive"
    assert common.paired_verdict([0.9], [0.1])[0] == "inconclusive"   # one seed decides nothing


def test_sgd_groups_honour_declared_lr_scale():
    common = _script("norm_common")
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), create_block("bn_init", 4))
    groups = {(g["lr"], g["weight_decay"]): len(g["params"]) for g in common.sgd_groups(model, 0.1, 5e-4)}
    assert groups == {(0.1, 5e-4): 1, (0.1 * 0.01, 0.0): 1, (0.1, 0.0): 1}   # conv, BN scale (lr / 100), BN shift


def test_spectral_norm_estimate():
    cn = _script("norm_convnorm")
    conv = nn.Conv2d(1, 1, 1, bias=True)
    with torch.no_grad():
        conv.weight.fill_(3.0)
        conv.bias.fill_(5.0)   # the affine part is ignored
    assert abs(cn.spectral_norm(conv, (1, 1, 4, 4), iters=5) - 3.0) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("name, files", [("norm_bn_init", ["norm_bn_init"]),
                                         ("norm_convnorm", ["norm_convnorm_noise", "norm_convnorm_spectral"])])
def test_smoke_run_writes_verdicts(tmp_path, name, files):
    from helpers import FMNIST_DIR
    if not FMNIST_DIR.is_dir():
        pytest.skip("Fashion-MNIST files not installed")
    assert _script(name).main(["--smoke", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    assert [r["name"] for r in load_verdicts(tmp_path)] == files
    for f in files:
        rec = json.loads((tmp_path / f"{f}.json").read_text())
        assert rec["verdict"] in ("reproduced", "not reproduced", "inconclusive")
        assert rec["paper"]["id"] in ("S093", "S096") and rec["results"]["paired"]["n"] == 2   # 2 smoke seeds
