"""Fixtures of the blockzoo.data tests: every test runs offline, with no apt and no user environment."""
from __future__ import annotations

import pytest

from blockzoo.data import fetch as fetch_mod
from blockzoo.data import load_dataset
from helpers import FMNIST_DIR, IDX_NAMES, _serve


@pytest.fixture(autouse=True)
def _isolate(monkeypatch, tmp_path):
    """No network, no apt, no user environment: every test starts from a clean, offline state."""
    def no_network(*a, **k):
        raise AssertionError("a test tried to use the network")

    def no_subprocess(*a, **k):
        raise AssertionError("a test tried to run a command")

    monkeypatch.setattr(fetch_mod, "_urlopen", no_network)
    monkeypatch.setattr(fetch_mod, "_run", no_subprocess)
    monkeypatch.setattr(fetch_mod, "_is_root", lambda: False)
    monkeypatch.delenv("BLOCKZOO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def offline(monkeypatch):
    log: list[str] = []
    monkeypatch.setattr(fetch_mod, "_urlopen", _serve({}, log))
    return log


@pytest.fixture(scope="module")
def fmnist():
    if not all((FMNIST_DIR / n).is_file() for names in IDX_NAMES.values() for n in names):
        pytest.skip("Fashion-MNIST not installed (sudo apt-get install dataset-fashion-mnist)")
    return {s: load_dataset("fashion-mnist", s, data_dir=FMNIST_DIR) for s in ("train", "test")}
