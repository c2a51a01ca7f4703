"""blockzoo.deploy.quant_cli (``blockzoo quantize``): a trained checkpoint quantized with the report and the model
file written (slow: a 1-step training run, an ONNX export and two test-set evaluations)."""
from __future__ import annotations

import argparse
import json
from importlib.util import find_spec

import pytest

from blockzoo.deploy.quant_cli import LATENCY_BATCHES, add_commands, quantize_checkpoint
from blockzoo.deploy.quantization import load_quantized
from blockzoo.errors import ConfigError
from blockzoo.train import TrainConfig, train

pytestmark = pytest.mark.skipif(find_spec("onnxruntime") is None,
                                reason="onnxruntime is not installed (pip install 'blockzoo[export]')")


def test_parser_defaults_and_bad_values():
    p = argparse.ArgumentParser()
    add_commands(p.add_subparsers(dest="cmd"))
    a = p.parse_args(["quantize", "ck.safetensors", "--out", "d"])
    assert (a.calib, a.backend, a.per_tensor, a.fn.__name__) == (256, "onnxruntime", False, "cmd_quantize")
    with pytest.raises(SystemExit):
        p.parse_args(["quantize", "ck.safetensors", "--out", "d", "--calib", "0"])
    with pytest.raises(ConfigError, match="calib"):
        quantize_checkpoint("ck.safetensors", "d", calib=0)


@pytest.mark.slow
def test_quantize_checkpoint_writes_model_and_report(tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(model="resnet20", data="synthetic", subset=32, epochs=1, batch_size=32, progress=False,
                      precision="fp32", channels_last=False, threads=1, device="cpu", out_dir=str(run)))
    r = quantize_checkpoint(run / "last.safetensors", tmp_path / "q", calib=32, test_subset=64, threads=1,
                            latency_iters=2)
    assert r["data"] == "synthetic" and r["model"] == "resnet20" and r["calib_images"] == 32
    assert r["test_images"] == 64 and 0 <= r["acc"]["int8"] <= 1 and r["threads"] == 1
    assert r["bytes"]["fp32_onnx"] > 3 * r["bytes"]["int8"]                     # int8 weights: ~4x smaller
    assert set(r["latency_ms"]["int8"]) == set(LATENCY_BATCHES)
    assert json.loads((tmp_path / "q" / "quantize.json").read_text())["acc"] == r["acc"]
    assert "points lost" in (tmp_path / "q" / "quantize.md").read_text()
    assert 0 <= r["parity_rel_err"] < 0.5 and "parity with float" in (tmp_path / "q" / "quantize.md").read_text()
    assert load_quantized(r["model_file"]).backend == "onnxruntime"
