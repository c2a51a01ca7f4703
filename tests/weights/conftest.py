"""Fixtures of the weights tests, also used by ``make_timm_layouts.py``: the (key, shape) lists and outputs of timm
models in ``timm_layouts/`` (parametrized as ``layout``), and the deterministic tensors that rebuild such a state
dict without timm (:func:`timm_state`)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

LAYOUTS = Path(__file__).parent / "timm_layouts"
#: layouts of models over ~20M parameters: filling and running them takes seconds
SLOW_LAYOUTS = ("resnet50", "seresnet50", "sknet50", "convnext_tiny", "swin_tiny_patch4_window7_224",
                "swinv2_tiny_window8_256", "inception_v4", "inception_resnet_v2",
                "nasnetalarge")


def read_layout(name: str) -> dict:
    return json.loads((LAYOUTS / f"{name}.json").read_text())


def fill(key: str, shape: list[int], index: int) -> torch.Tensor:
    """A tensor for timm key ``key`` that depends only on (key kind, shape, index): BatchNorm statistics that keep
    the activations sane, fan-in-scaled weights, and a per-index seed so that no two tensors are alike."""
    g = torch.Generator().manual_seed(1000 + index)
    if key.endswith("num_batches_tracked"):
        return torch.tensor(index, dtype=torch.long)
    if key.endswith("running_var"):
        return torch.rand(shape, generator=g) + 0.5
    t = torch.randn(shape, generator=g)
    if len(shape) >= 2:
        return t / math.sqrt(math.prod(shape[1:]))
    return 1 + 0.1 * t if key.endswith("weight") else 0.1 * t


def timm_state(layout: dict) -> dict[str, torch.Tensor]:
    """The state dict in timm's key layout that ``layout`` describes, filled with :func:`fill`."""
    return {k: fill(k, shape, i) for i, (k, shape) in enumerate(layout["keys"])}


def layout_input(layout: dict) -> torch.Tensor:
    return torch.randn(layout["input_shape"], generator=torch.Generator().manual_seed(0))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "layout" in metafunc.fixturenames:
        names = sorted(p.stem for p in LAYOUTS.glob("*.json"))
        metafunc.parametrize("layout", [pytest.param(read_layout(n), id=n, marks=[pytest.mark.slow] *
                                                     (n in SLOW_LAYOUTS)) for n in names])


@pytest.fixture
def timm_layout():
    """:func:`read_layout`, for the tests."""
    return read_layout


@pytest.fixture
def timm_layout_state():
    """:func:`timm_state`, for the tests."""
    return timm_state


@pytest.fixture
def timm_layout_input():
    """:func:`layout_input`, for the tests."""
    return layout_input
