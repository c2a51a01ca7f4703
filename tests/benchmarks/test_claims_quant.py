"""benchmarks/claims/quant_ptq.py, quant_qat_recovery.py and benchmarks/quantize_speed.py (issue 14, S007): the verdict
rules by hand, the benchmark's helpers, and the smoke runs end to end (slow: each quantizes a few times; the QAT one
traces torch.export graphs: a minute on 2 loaded cores). No timing is checked."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import load_script

ROOT = Path(__file__).resolve().parents[2] / "benchmarks"


def _script(path: Path):
    return load_script(path)


def test_within_2pct_rule_by_hand():
    m = _script(ROOT / "claims" / "quant_ptq.py")
    assert m.within_verdict([0.5, 0.7, 0.6]) == "reproduced"           # 0.6 + 2 * 0.1 / sqrt(3) < 2
    assert m.within_verdict([5.0, 6.0, 5.5]) == "not reproduced"       # 5.5 - 2 * 0.5 / sqrt(3) > 2
    assert m.within_verdict([0.0, 4.0, 2.0]) == "inconclusive"         # 2 +- 2.3 straddles the limit
    assert m.within_verdict([1.0]) == "inconclusive"                   # one seed: no spread


@pytest.mark.slow
def test_claim_smoke_run_writes_both_verdicts(tmp_path):
    m = _script(ROOT / "claims" / "quant_ptq.py")
    assert m.main(["--smoke", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    for name in ("quant_ptq_within_2pct", "quant_ptq_per_channel_vs_per_tensor"):
        rec = json.loads((tmp_path / f"{name}.json").read_text())
        assert rec["paper"]["id"] == "S007" and rec["verdict"] in ("reproduced", "not reproduced", "inconclusive")
        assert len(rec["results"]["acc_percent"]["int8_per_tensor"]) == 2


@pytest.mark.slow
def test_speed_smoke_run_writes_its_tables(tmp_path):
    m = _script(ROOT / "quantize_speed.py")
    assert m.main(["--smoke", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "quantize_speed.json").read_text())["rows"][0]
    q = row["backends"]["onnxruntime"]
    assert row["model"] == "resnet20" and q["size_ratio_vs_onnx_fp32"] > 3 and q["top1_agreement"] >= 0.75
    assert "| resnet20 |" in (tmp_path / "quantize_speed.md").read_text()


def test_qat_recovery_rule_by_hand():
    m = _script(ROOT / "claims" / "quant_qat_recovery.py")
    fp32 = [80.0, 81.0, 79.0]
    assert m.recovery_verdict(fp32, [60.0, 62.0, 58.0], [76.0, 77.5, 75.0]) == "reproduced"      # +16.5, loses 3.8
    assert m.recovery_verdict(fp32, [79.0, 80.5, 78.5], [79.0, 80.0, 78.0]) == "inconclusive"    # PTQ lost < 2
    assert m.recovery_verdict(fp32, [60.0, 62.0, 58.0], [60.5, 61.0, 58.5]) == "not reproduced"  # no clear gain
    assert m.recovery_verdict(fp32, [40.0, 42.0, 38.0], [60.0, 61.0, 59.0]) == "not reproduced"  # gain, loses 20
    assert m.recovery_verdict(fp32, [40.0, 42.0, 38.0], [70.0, 73.0, 67.0]) == "inconclusive"    # 10 +- 3.5 vs 10


def test_bn_statistics_make_a_random_mobilenetv2_non_degenerate():
    """The benchmark's fix: fresh BN statistics (eval mode = identity) shrink a random MobileNetV2's logits to ~1e-9;
    statistics of its own activations give each BN output unit variance."""
    m = _script(ROOT / "quantize_speed.py")
    import blockzoo

    torch.manual_seed(0)
    net = blockzoo.create_model("mobilenetv2_100_small", num_classes=10, in_chans=1).eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert net(x).abs().max() < 1e-6
        assert m.with_bn_statistics(net, (8, 1, 28, 28)) is net and not net.training
        assert net(x).abs().max() > 1e-2
    bn = nn.BatchNorm2d(3)
    m.with_bn_statistics(nn.Sequential(nn.Identity(), bn), (4096, 3, 2, 2), batches=2)
    assert bn.momentum == 0.1 and int(bn.num_batches_tracked) == 2
    torch.testing.assert_close(bn.running_var, torch.ones(3), atol=0.05, rtol=0)   # of N(0, 1) inputs


def test_interleaved_timing_calls_every_runner_in_turn():
    m = _script(ROOT / "quantize_speed.py")
    calls = []
    runs = {k: (lambda x, k=k: calls.append(k)) for k in ("a", "b")}
    ms = m.interleaved_ms(runs, torch.zeros(1), reps=3)
    assert calls == ["a", "b"] * 4 and set(ms) == {"a", "b"} and all(v >= 0 for v in ms.values())


@pytest.mark.slow
def test_qat_recovery_smoke_run_writes_its_verdict(tmp_path):
    m = _script(ROOT / "claims" / "quant_qat_recovery.py")
    assert m.main(["--smoke", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "quant_qat_recovery.json").read_text())
    assert rec["paper"]["id"] == "S007" and rec["verdict"] in ("reproduced", "not reproduced", "inconclusive")
    assert {k: len(v) for k, v in rec["results"]["acc_percent"].items()} == {"fp32": 2, "ptq_w4": 2, "qat_w4": 2}
