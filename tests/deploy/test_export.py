"""export_model: ONNX (onnxruntime) and torch.export files written atomically, with a parity check against eager."""
from __future__ import annotations

import os
import sys

import pytest
import torch
from torch import nn

from blockzoo import create_model
from blockzoo.deploy import export_model
from blockzoo.errors import ConfigError, InputShapeError

SUFFIX = {"onnx": ".onnx", "torch-export": ".pt2"}


class Counting(nn.Module):
    """Output depends on a Python counter: the exported graph freezes it, so eager and export disagree."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x * self.calls


class Small(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


class TwoOutputs(nn.Module):
    def forward(self, x):
        return [x.mean((2, 3)), x[:, :1] * 2]


@pytest.mark.parametrize("fmt", ["onnx", "torch-export"])
def test_export_writes_file_and_checks_parity(tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    model = Small()
    path = tmp_path / "out" / f"m{SUFFIX[fmt]}"
    res = export_model(model, path, format=fmt, example=torch.randn(2, 3, 16, 16))
    assert set(res) == {"format", "path", "max_abs_diff", "rtol", "atol", "ok"}
    assert res["format"] == fmt and res["path"] == str(path) and res["ok"] is True
    assert 0 <= res["max_abs_diff"] < 1e-4
    assert model.training, "export_model must restore the model's mode"
    assert os.listdir(path.parent) == [path.name], "no temporary file may be left behind"
    model.eval()
    if fmt == "onnx":
        import onnxruntime as ort
        session = ort.InferenceSession(str(path))
        run = lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0])  # noqa: E731
        sizes = [(5, 3, 16, 16)]  # a third batch size through the dynamic batch axis
    else:
        run = torch.export.load(str(path)).module()
        sizes = [(5, 3, 16, 16), (3, 3, 20, 24)]  # and height x width
    for size in sizes:
        x = torch.randn(size)
        with torch.no_grad():
            torch.testing.assert_close(run(x), model(x), rtol=1e-4, atol=1e-4)


def test_default_example_is_the_registered_input_size(tmp_path):
    m = create_model("resnet20", num_classes=10, in_chans=1)
    res = export_model(m, tmp_path / "m.pt2", format="torch-export", dynamic=False)
    assert res["ok"]
    sig = torch.export.load(str(tmp_path / "m.pt2")).module()
    with pytest.raises(AssertionError):  # static export: the program refuses another batch size
        sig(torch.randn(3, 1, 32, 32))
    assert sig(torch.randn(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("fmt", ["onnx", "torch-export"])
def test_check_detects_a_mismatch(tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    res = export_model(Counting(), tmp_path / f"m{SUFFIX[fmt]}", format=fmt, example=torch.randn(2, 3, 4, 4))
    assert res["ok"] is False and res["max_abs_diff"] > 0


@pytest.mark.parametrize("fmt", ["onnx", "torch-export"])
def test_list_outputs_and_no_check(tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    res = export_model(TwoOutputs(), tmp_path / f"m{SUFFIX[fmt]}", format=fmt, example=torch.randn(2, 3, 4, 4))
    assert res["ok"] is True
    res = export_model(TwoOutputs(), tmp_path / f"n{SUFFIX[fmt]}", format=fmt, example=torch.randn(2, 3, 4, 4),
                       check=False)
    assert res["ok"] is None and res["max_abs_diff"] is None and (tmp_path / f"n{SUFFIX[fmt]}").is_file()


def test_bad_arguments(tmp_path):
    model = Small()
    with pytest.raises(ConfigError, match="format"):
        export_model(model, tmp_path / "m.x", format="tflite")
    with pytest.raises(ConfigError, match="example="):
        export_model(TwoOutputs(), tmp_path / "m.pt2", format="torch-export")
    with pytest.raises(InputShapeError, match="floating-point"):
        export_model(model, tmp_path / "m.pt2", format="torch-export", example=torch.zeros(2, 3, 8, 8).long())
    assert not list(tmp_path.iterdir())


def test_missing_onnx_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'blockzoo\[export\]'"):
        export_model(Small(), tmp_path / "m.onnx", example=torch.randn(2, 3, 8, 8))


def test_features_only_model_exports_every_feature_map(tmp_path):
    """A features_only model (a list of maps): one ONNX output each; the default example takes the backbone's
    in_chans."""
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort
    m = create_model("resnet20", num_classes=10, in_chans=1, features_only=True)
    res = export_model(m, tmp_path / "f.onnx")
    assert res["ok"] is True
    session = ort.InferenceSession(str(tmp_path / "f.onnx"))
    assert [i.shape[1] for i in session.get_inputs()] == [1]
    assert len(session.get_outputs()) == len(m(torch.randn(1, 1, 32, 32)))


def test_tolerance_scales_with_the_output_and_nan_fails():
    from blockzoo.deploy.export import _compare
    big = torch.tensor([20000.0, 0.01])
    assert _compare([big], [big + torch.tensor([0.0, 0.5])], 1e-3, 1e-4) == (0.5, True)    # 0.5 <= 1e-3 * 2e4
    assert _compare([big], [big + torch.tensor([0.0, 50.0])], 1e-3, 1e-4) == (50.0, False)
    assert _compare([big], [torch.tensor([float("nan"), 0.01])], 1e-3, 1e-4) == (float("inf"), False)
    assert _compare([big], [big[:1]], 1e-3, 1e-4) == (float("inf"), False)                 # shape mismatch
