"""The training-technique claim runs of issue 13 (benchmarks/claims/grad_noise_deep_mlp.py, elu_depth.py,
gcp_lr_decay.py, gradinit_no_norm.py): each verdict rule by hand, the nets they build, and each smoke mode runs end
to end on synthetic data and writes a claims-lab verdict (marked slow). No timing is checked."""
import json
from pathlib import Path

import pytest
import torch.nn as nn

from blockzoo.report.verdicts import load_verdicts
from helpers import load_script

CLAIMS = Path(__file__).resolve().parents[2] / "benchmarks" / "claims"
SCRIPTS = ("grad_noise_deep_mlp", "elu_depth", "gcp_lr_decay", "gradinit_no_norm")


def _script(name):
    return load_script(CLAIMS / f"{name}.py")


def test_grad_noise_verdict_rule_by_hand():
    v = _script("grad_noise_deep_mlp").verdict_of
    stalled = [0.10, 0.10, 0.10]
    assert v(stalled, [0.70, 0.72, 0.71])[0] == "reproduced"
    assert v([0.80, 0.81, 0.82], [0.85, 0.86, 0.84])[0] == "not reproduced"     # no stall without noise
    assert v(stalled, [0.10, 0.10, 0.09])[0] == "not reproduced"                # noise does not help
    assert v(stalled, [0.50, 0.12, 0.11])[0] == "inconclusive"                  # one seed trains
    assert v(stalled, [0.30, 0.29, 0.31], tries=3)[1].p_value < 0.05 / 3


def test_grad_noise_net_is_the_papers():
    net = _script("grad_noise_deep_mlp").deep_mlp(784)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 21 and all(m.out_features == 50 for m in linears[:-1])
    assert sum(isinstance(m, nn.ReLU) for m in net.modules()) == 20
    assert abs(linears[5].weight.std().item() - 0.1) < 0.01 and linears[5].bias.abs().sum() == 0


@pytest.mark.parametrize("name", ["elu_depth", "gcp_lr_decay", "gradinit_no_norm"])
def test_paired_verdict_rules_by_hand(name):
    """``verdict_of(better_if_this, baseline)`` with the claimed direction first; elu_depth's numbers are losses
    (lower is better), so its arguments are (elu, relu) and the claim holds when ELU's is lower."""
    v = _script(name).verdict_of
    up, down = ([0.80, 0.81, 0.82], [0.70, 0.705, 0.72]), ([0.70, 0.70, 0.70], [0.71, 0.70, 0.72])
    noisy = ([0.75, 0.70, 0.70], [0.70, 0.72, 0.70])
    if name == "elu_depth":
        up, down, noisy = up[::-1], down[::-1], noisy[::-1]
    assert v(*up)[0] == "reproduced"
    assert v(*down)[0] == "not reproduced"
    assert v(*noisy)[0] == "inconclusive"


def test_elu_net_uses_the_registered_act_block():
    net = _script("elu_depth").mlp("elu", 784, depth=8, width=128)
    assert sum(isinstance(m, nn.ELU) for m in net.modules()) == 8
    assert sum(isinstance(m, nn.Linear) for m in net.modules()) == 9


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_smoke_run_writes_a_verdict(name, tmp_path):
    m = _script(name)
    assert m.main(["--smoke", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    (rec,) = load_verdicts(tmp_path)
    assert rec["name"] == m.NAME and rec["verdict"] == "inconclusive" and rec["summary"].startswith("SMOKE RUN")
    assert rec["results"] and json.loads((tmp_path / f"{m.NAME}.json").read_text())["paper"]["id"]
