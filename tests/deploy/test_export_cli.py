"""``blockzoo export CHECKPOINT --deploy`` (issue 14, section 4): the deploy form (re-parameterized, BN folded) written
as ONNX or a torch.export program, its parity against the eager original and the latency report (eager, deploy form
and the written file's runtime: onnxruntime for ONNX), end to end on a small re-parameterizable model."""
from __future__ import annotations

import json

import pytest
import torch

from blockzoo import create_model
from blockzoo.cli import main
from blockzoo.train.checkpoint import make_model_spec, save_checkpoint

NAME, SIZE = "ffnet_nano", 32     # a registered family with re-parameterizable blocks, small input


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    model = create_model(NAME, num_classes=10)
    spec = make_model_spec(NAME, slots={}, model_kwargs={}, num_classes=10, in_chans=3, img_size=(SIZE, SIZE))
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, model=model, model_spec=spec, config={"data": "synthetic"})
    return path


def _convs(path) -> int:
    return sum("conv2d" in str(n.target) for n in torch.export.load(str(path)).graph.nodes)


@pytest.mark.slow
def test_export_deploy_writes_the_merged_form_checked_and_timed(ckpt, tmp_path, capsys):
    plain, deploy = tmp_path / "plain.pt2", tmp_path / "deploy.pt2"
    assert main(["export", str(ckpt), "--format", "torch-export", "--out", str(plain), "--json"]) == 0
    assert "latency_ms" not in json.loads(capsys.readouterr().out)          # plain export: no timing asked
    assert main(["export", str(ckpt), "--format", "torch-export", "--out", str(deploy), "--deploy", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["ok"] is True and res["max_abs_diff"] < 1e-3                # the merged file against eager
    assert _convs(deploy) < _convs(plain)                                  # branches merged, BN folded
    assert set(res["latency_ms"]) == {"eager", "deploy", "torch-export"}
    assert all(set(v) == {"1", "2"} and min(v.values()) > 0 for v in res["latency_ms"].values())


@pytest.mark.slow
def test_export_deploy_onnx_reports_onnxruntime_latency(ckpt, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), "--out", str(out), "--deploy"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "deploy form): parity with eager ok" in text
    assert "latency (median ms): eager batch 1" in text and "onnxruntime batch 1" in text and out.stat().st_size > 0
