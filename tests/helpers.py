"""Helpers shared by several test files (tests/ is on sys.path: pyproject sets pytest's pythonpath).

Only helpers that more than one test file uses live here; a helper that one file uses stays in that file."""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import io
import math
import urllib.error
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

import blockzoo.data as bd
from blockzoo import create_model
from blockzoo.blocks.common.layer_scale import LayerScale
from blockzoo.data import DATASETS, Dataset
from blockzoo.data.idx import write_idx
from blockzoo.models.unireplknet import GRN


# -------------------------------------------------------------------------------------------------------- counting
def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


nparams = n_params  # the name some test files use


def meta_params(name: str, **kw) -> int:
    with torch.device("meta"):
        return n_params(create_model(name, **kw))


def check_param_count(name: str, exact: int, paper: float | None, tol: float) -> None:
    """The model's parameter count (1000 classes) equals ``exact`` and its registered reference, and is within
    ``tol`` (relative) of the paper's rounded figure."""
    from blockzoo.registry import get_model_spec
    ours = meta_params(name)
    assert ours == exact == get_model_spec(name).reference["params_1000cls"]
    if paper is not None:
        assert abs(ours - paper) <= tol * paper


def check_macs_224(name: str, paper: float | None) -> int:
    """MACs at 224 px (count_macs: convs + linears) equal the registered count and are within 3% of the paper's
    figure (which the registry also records); returns them."""
    from blockzoo.registry import get_model_spec
    ours = macs(create_model(name), (3, 224, 224))
    spec = get_model_spec(name)
    assert ours == spec.reference["macs_224"]
    assert spec.paper_macs == paper
    if paper is not None:
        assert abs(ours - paper) <= 0.03 * paper, (name, ours)
    return ours


# ------------------------------------------------------------------------------------ registry-wide model runs
BIG = 30e6  # models above this many parameters only run in the slow suite


@functools.cache
def params_meta(name: str) -> int:
    """Parameter count of ``name`` at its paper setting (built on the meta device; cached)."""
    return meta_params(name)


def model_marks(name: str) -> list:
    """``[pytest.mark.slow]`` for the models over :data:`BIG` parameters."""
    import pytest
    return [pytest.mark.slow] if params_meta(name) > BIG else []


@functools.cache
def _accepts_img_size(name: str) -> bool:
    import inspect

    from blockzoo.registry import get_model_spec
    sig = inspect.signature(get_model_spec(name).fn)
    return "img_size" in sig.parameters or any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def small_model(name: str, batch: int = 2, in_chans: int = 1, num_classes: int = 7, **slots):
    """``(model, input)`` at the model's small registry-test size (``ModelSpec.small_size``)."""
    from blockzoo.registry import get_model_spec
    s = get_model_spec(name).small_size
    kw = dict(img_size=s) if _accepts_img_size(name) else {}
    m = create_model(name, num_classes=num_classes, in_chans=in_chans, **kw, **slots)
    return m, torch.randn(batch, in_chans, s, s)


@functools.cache
def family_representatives() -> dict[str, str]:
    """The smallest registered model (parameters at paper settings) of every family."""
    from blockzoo import list_models
    from blockzoo.registry import get_model_spec
    best: dict[str, tuple[int, str]] = {}
    for n in list_models():
        fam, p = get_model_spec(n).family, params_meta(n)
        if fam not in best or p < best[fam][0]:
            best[fam] = (p, n)
    return {f: n for f, (_, n) in best.items()}


def meta_model(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kw)


def count_macs(model: nn.Module, size) -> int:
    """MACs per sample with blockzoo's counter (FLOPs = 2 x MACs)."""
    from blockzoo.profile import count_macs as cm
    return cm(model, size).macs


macs = count_macs  # the name some test files use


def conv_macs(c_in: int, c_out: int, k: int, h_out: int, w_out: int, groups: int = 1) -> int:
    return c_out * h_out * w_out * (c_in // groups) * k * k


class WeirdCompute(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x):
        d = torch.cdist(x, x)  # (B, N, N): real compute without a formula
        m = torch.linalg.inv(d + 10 * torch.eye(d.shape[-1]))
        return self.proj(m @ x)


# --------------------------------------------------------------------------------- BatchNorm and random parameters
EPS = 1e-5
BNF = 1 / math.sqrt(1 + EPS)  # a BatchNorm in eval mode with default running stats, gamma 1, beta 0


def randomize_bn(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))


def _randomize_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters (so folding tests are not vacuous)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(0.1 * torch.randn(c, generator=g))


def randomize(model: nn.Module, seed: int = 1) -> nn.Module:
    """Random BN statistics/affines, GRN gamma/beta and layer scales, so that every folded term matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.5, 0.5, generator=g)
            elif isinstance(m, GRN):
                m.gamma.uniform_(-1, 1, generator=g)
                m.beta.uniform_(-1, 1, generator=g)
            elif isinstance(m, LayerScale):
                m.gamma.uniform_(0.5, 1.5, generator=g)
    return model


def bn_ref(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Eval-mode BatchNorm written out."""
    v = lambda t: t.view(1, -1, 1, 1)  # noqa: E731
    return (x - v(bn.running_mean)) / torch.sqrt(v(bn.running_var) + bn.eps) * v(bn.weight) + v(bn.bias)


# ---------------------------------------------------------------- SpaRTAN: closed-form counts of the official code
def official_smixer_params(c: int, grouped: bool) -> int:
    h = c // 2
    g = h if grouped else 1
    convs = 3 * 9 * h * h // g + 2 * (2 * h)                 # h_conv, l_conv[0], l_conv[1] (no bias) + two BNs
    se = 2 * (h * (h // 4) + h // 4 + (h // 4) * h + h)      # SELayer(h, h // 4) x 2
    return (c * h + h) + h + convs + se + (c * c + c)        # proj_in, gamma, ..., proj_out


def official_cmixer_params(c: int, r: int, grouped: bool) -> int:
    n = r * c
    g = c if grouped else n
    se = n * (c // 4) + c // 4 + (c // 4) * n + n            # SELayer(n, c // 4)
    return 2 * (c * n + n) + n + (9 * n * n // g + 2 * n) + se + (n * c + c)   # theta, proj, complex, conv, ...


# -------------------------------------------------------------------------------------------------------- training
class Tiny(nn.Module):
    """Conv-BN-ReLU-Dropout-pool-Linear: exercises buffers (BN), RNG (dropout), channels_last and no-decay params."""

    def __init__(self, in_chans: int = 1, num_classes: int = 4, p: float = 0.2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(p)
        self.fc = nn.Linear(8 * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(torch.relu(self.bn(self.conv(x))))
        x = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        return self.fc(x)


def fit_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float = 1e-3,
               optimizer=torch.optim.AdamW) -> list[float]:
    """The losses of ``steps`` optimizer steps of ``model`` (train mode) on one fixed batch: the small-image
    "it trains" checks of the model tests."""
    opt = optimizer(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def tiny_synthetic():
    """(train, test): 4-class 8 px grayscale synthetic datasets of 128 / 64 images (the trainer tests' data)."""
    from blockzoo.data.synthetic import make_synthetic
    return (make_synthetic("train", num_classes=4, image_size=8, channels=1, n=128, noise=0.1, max_shift=1),
            make_synthetic("test", num_classes=4, image_size=8, channels=1, n=64, noise=0.1, max_shift=1))


def tiny_train_cfg(d: Path, **kw):
    """A deterministic fp32 CPU TrainConfig for a tiny model on :func:`tiny_synthetic` data in run folder ``d``."""
    from blockzoo.train import TrainConfig
    base = dict(model="tiny", data="synthetic", epochs=3, batch_size=32, lr=0.1, warmup_epochs=0.5, progress=False,
                out_dir=str(d), deterministic=True, threads=1, device="cpu", precision="fp32", channels_last=False)
    return TrainConfig(**{**base, **kw})


def no_temp_files(d: Path) -> bool:
    return not [p.name for p in d.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]


# ------------------------------------------------------------------------------------------------------------ data
FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_NAMES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def _fake_idx_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def _write_fake_idx(folder: Path, n_train: int = 30, n_test: int = 10) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        images, labels = _fake_idx_arrays(n, seed)
        write_idx(folder / IDX_NAMES[split][0], images)
        write_idx(folder / IDX_NAMES[split][1], labels)
        out[split] = (images, labels)
    return out


def _content_sha(path: Path) -> str:
    return hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _serve(files: dict[str, bytes], log: list[str] | None = None):
    """A stand-in for urllib's urlopen that serves ``files`` by URL (anything else: URLError, like no network)."""
    def fake_urlopen(url, timeout=None):
        assert timeout is not None and timeout <= 60, "downloads must use a short timeout"
        if log is not None:
            log.append(url)
        if url in files:
            return _FakeResponse(files[url])
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    return fake_urlopen


def _replace_info(monkeypatch, name: str, **changes) -> bd.DatasetInfo:
    info = dataclasses.replace(DATASETS[name], **changes)
    monkeypatch.setitem(DATASETS, name, info)
    return info


def _as_id_dataset(images: torch.Tensor, flip_ok: bool = True) -> Dataset:
    n = images.shape[0]
    return Dataset("ids", images, torch.arange(n), [str(i) for i in range(n)], (0.0,) * images.shape[1],
                   (1.0 / 255,) * images.shape[1], flip_ok=flip_ok)


def load_script(path: str | Path):
    """A script of ``benchmarks/`` as a module, from its file path (its folder first on ``sys.path``, so that it
    imports its sibling modules, e.g. ``benchmarks/claims/norm_common.py``)."""
    import importlib.util
    import sys

    path = Path(path)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
