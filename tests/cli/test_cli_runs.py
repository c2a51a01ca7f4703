"""The commands on runs and checkpoints: ``train --log``, ``plot``, ``eval`` and ``export`` (help, the work they do
on a tiny trained run, and their failures as one clear line)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import blockzoo.deploy.export
from blockzoo.cli import main

TINY_TRAIN = ["--data", "synthetic", "--subset", "32", "--epochs", "1", "--batch-size", "32", "--no-progress",
              "--precision", "fp32", "--no-channels-last", "--threads", "1", "--device", "cpu"]


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "resnet20", *TINY_TRAIN, "--log", "csv", "--out", str(d)]) == 0
    return d


@pytest.mark.parametrize("cmd", ["plot", "eval", "export"])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0 and f"usage: blockzoo {cmd}" in capsys.readouterr().out


def test_train_log_flag(run, capsys):
    assert (run / "steps.csv").read_text().startswith("step,epoch,loss,lr,img_per_s\n")
    assert len((run / "epochs.csv").read_text().splitlines()) == 2
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--log" in capsys.readouterr().out
    assert main(["train", "resnet20", *TINY_TRAIN, "--log", "csv,wandb", "--out", str(run.parent / "x")]) == 2
    assert "--log 'csv,wandb': unknown logger 'wandb'" in one_error_line(capsys.readouterr().err)
    assert not (run.parent / "x").exists()


def test_plot(run, tmp_path, capsys):
    out = tmp_path / "curves.png"
    assert main(["plot", str(run), "--out", str(out)]) == 0
    assert f"wrote {out}: training curves of 1 run(s)" in " ".join(capsys.readouterr().out.split())
    with Image.open(out) as im:
        assert im.format == "PNG"
    assert main(["plot", str(tmp_path), "--out", str(out)]) == 2
    assert "is neither a run folder" in one_error_line(capsys.readouterr().err)
    assert main(["plot", str(run)]) == 2                     # --out is required
    assert "--out" in one_error_line(capsys.readouterr().err)


def test_eval(run, tmp_path, capsys):
    assert main(["eval", str(run / "best.safetensors"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    result = json.loads((run / "result.json").read_text())
    assert f"accuracy {100 * result['final_test_acc']:.2f}% of 256 images" in " ".join(out.split())
    assert "class0" in out and "class9" in out
    ev = run / "eval-best-synthetic"
    assert json.loads((ev / "eval.json").read_text())["acc"] == result["final_test_acc"]
    assert (ev / "confusion.png").is_file()
    assert main(["eval", str(run / "last.safetensors"), "--data", "synthetic", "--device", "cpu", "--json",
                 "--out", str(tmp_path / "ev")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "ev" / "eval.json").read_text()) and len(printed["confusion"]) == 10
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    assert main(["eval", str(tmp_path / "bad.safetensors"), "--device", "cpu"]) == 2
    one_error_line(capsys.readouterr().err)


@pytest.fixture
def fake_export(monkeypatch):
    """export_model as its contract says, without exporting: records the call."""
    calls: list[dict] = []

    def export_model(model, path, *, format, example=None, dynamic=True, check=True):
        calls.append(dict(model=model, path=path, format=format, example=example, dynamic=dynamic, check=check))
        return {"format": format, "path": str(path), "max_abs_diff": 1e-6 if check else None, "rtol": 1e-3,
                "atol": 1e-4, "ok": True if check else None}

    monkeypatch.setattr(blockzoo.deploy.export, "export_model", export_model)
    return calls


def test_export_calls_export_model_with_the_trained_input(run, fake_export, capsys):
    ckpt = run / "best.safetensors"
    assert main(["export", str(ckpt), "--format", "torch-export"]) == 0
    (c,) = fake_export
    assert c["path"] == str(run / "best.pt2") and c["format"] == "torch-export" and c["dynamic"] and c["check"]
    assert tuple(c["example"].shape) == (2, 3, 32, 32) and type(c["model"]).__name__ == "ResNet"
    assert not c["model"].training
    assert "parity with eager ok, max abs diff 1e-06" in " ".join(capsys.readouterr().out.split())
    assert main(["export", str(ckpt), "--out", str(run / "m.onnx"), "--static", "--no-check"]) == 0
    c = fake_export[-1]
    assert (c["format"], c["path"], c["dynamic"], c["check"]) == ("onnx", str(run / "m.onnx"), False, False)
    assert "parity not checked" in capsys.readouterr().out


def test_export_parity_failure_exits_1(run, monkeypatch, capsys):
    monkeypatch.setattr(blockzoo.deploy.export, "export_model", lambda model, path, **kw: {
        "format": "onnx", "path": str(path), "max_abs_diff": 0.5, "rtol": 1e-3, "atol": 1e-4, "ok": False})
    assert main(["export", str(run / "best.safetensors")]) == 1
    captured = capsys.readouterr()
    assert "parity with eager FAILED, max abs diff 0.5" in " ".join(captured.out.split())
    assert "does not match the eager model" in one_error_line(captured.err)


def test_export_bad_format_is_a_usage_error(run, capsys):
    assert main(["export", str(run / "best.safetensors"), "--format", "tflite"]) == 2
    assert "invalid choice: 'tflite'" in one_error_line(capsys.readouterr().err)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torch-export", "onnx"])
def test_export_for_real(run, tmp_path, fmt, capsys):
    if fmt == "onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    out = tmp_path / ("m.onnx" if fmt == "onnx" else "m.pt2")
    assert main(["export", str(run / "best.safetensors"), "--format", fmt, "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["ok"] is True and res["max_abs_diff"] < 1e-3 and out.stat().st_size > 0
    if fmt == "torch-export":
        program = torch.export.load(str(out))
        assert program.module()(torch.randn(3, 3, 32, 32)).shape == (3, 10)
