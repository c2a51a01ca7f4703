"""Registry-wide: every registered model traces with torch.fx, exports with torch.export (dynamic batch, height and
width) and to ONNX (dynamic batch; run by onnxruntime), and the traced/exported graphs give eager's numbers.

The smallest model of every family runs by default; the other variants run in the slow suite.
"""
from __future__ import annotations

import functools

import pytest
import torch
from torch.export import Dim

from blockzoo import create_model, list_models
from blockzoo.deploy import export_model
from blockzoo.registry import get_model_spec
from helpers import family_representatives

TOL = {"rtol": 1e-4, "atol": 1e-5}


def _params():
    reps = set(family_representatives().values())
    return [pytest.param(n, marks=[] if n in reps else [pytest.mark.slow]) for n in list_models()]


@functools.cache
def _sizes(name: str) -> tuple[int, tuple[int, int]]:
    """The example's size s and a second, larger and non-square, H x W. s is the model's small test size, doubled
    where that leaves a 1x1 final feature map: torch.export specialises a dimension that reaches 1 (broadcasting),
    so an exported program only takes the sizes on the same side of 1 as its example (smaller sizes are not portable
    for the same reason)."""
    s = get_model_spec(name).small_size
    with torch.no_grad():
        f = create_model(name, num_classes=10).eval().forward_features(_batch(name, 1, s, s))
        if f.ndim == 4 and min(f.shape[-2:]) == 1:
            s *= 2
    return s, (s + s // 2, s + s // 4)


def _batch(name: str, n: int, h: int, w: int) -> torch.Tensor:
    return torch.randn(n, get_model_spec(name).input_size[0], h, w)


def _model(name: str):
    """The model in eval mode, built for the larger of the two test sizes (``img_size`` where it takes one: LSNet's
    attention bias table covers feature maps up to that size)."""
    s, (h, _) = _sizes(name)
    return create_model(name, num_classes=10, img_size=h).eval()  # models without an img_size option ignore it


def _inputs(name: str) -> list[torch.Tensor]:
    """The example (batch 2, s x s) and two more: another batch size, and another H x W."""
    s, (h, w) = _sizes(name)
    return [_batch(name, 2, s, s), _batch(name, 3, s, s), _batch(name, 1, h, w)]


@pytest.mark.parametrize("name", _params())
def test_fx_trace(name):
    m = _model(name)
    gm = torch.fx.symbolic_trace(m)
    with torch.no_grad():
        for x in _inputs(name):
            torch.testing.assert_close(gm(x), m(x), **TOL)


@pytest.mark.parametrize("name", _params())
def test_torch_export_dynamic(name):
    m = _model(name)
    example, *others = _inputs(name)
    with torch.no_grad():
        ep = torch.export.export(m, (example,), dynamic_shapes=({0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC},))
        run = ep.module()
        for x in [example, *others]:
            torch.testing.assert_close(run(x), m(x), **TOL)


@pytest.mark.parametrize("name", _params())
def test_onnx_parity(name, tmp_path):
    pytest.importorskip("onnxruntime")
    res = export_model(_model(name), tmp_path / f"{name}.onnx", format="onnx", example=_inputs(name)[0])
    assert res["ok"], f"{name}: onnxruntime differs from eager by {res['max_abs_diff']:.3g}"


def test_lsnet_attention_size_limit_survives_tracing():
    """LSNet's attention reads its bias table for any map up to the built size without a branch on the size (so
    torch.export keeps H and W dynamic), and the traced/exported graphs keep the size limit as an assertion."""
    from blockzoo.models.lsnet import LSNetAttention
    a = LSNetAttention(32, key_dim=4, num_heads=2, resolution=4).eval()
    with torch.no_grad():
        a.attention_biases.normal_()
    gm = torch.fx.symbolic_trace(a)
    ep = torch.export.export(a, (torch.randn(2, 32, 4, 3),),
                             dynamic_shapes=({0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC},)).module()
    with torch.no_grad():
        for size in [(4, 4), (3, 2), (2, 4)]:
            x = torch.randn(2, 32, *size)
            torch.testing.assert_close(gm(x), a(x), rtol=0, atol=0)
            torch.testing.assert_close(ep(x), a(x), **TOL)
        for run in (gm, ep):
            with pytest.raises((AssertionError, RuntimeError)):
                run(torch.randn(2, 32, 3, 5))
