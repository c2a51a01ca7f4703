import os

import pytest
import torch

# The suite runs on 2-core CI machines: one intra-op thread keeps parallel test workers and the rest of the machine
# responsive, and makes timings irrelevant to correctness.
torch.set_num_threads(int(os.environ.get("BLOCKZOO_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """One intra-op thread for the test, whatever BLOCKZOO_TEST_THREADS says (timing-sensitive tests)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def make_image_folder(tmp_path, monkeypatch):
    """``make_image_folder(n_train=48, n_test=12, **synthetic options) -> Path``: a tiny image folder (PNG files in
    timm's layout) of synthetic 3-class 8 px RGB images; the decoded-folder cache stays inside the test."""
    pytest.importorskip("PIL")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from blockzoo.data import load_dataset, save_image_folder

    def make(n_train: int = 48, n_test: int = 12, **kw):
        kw = {"num_classes": 3, "image_size": 8, "channels": 3, **kw}
        return save_image_folder(tmp_path / "imgs", load_dataset("synthetic", "train", n=n_train, **kw),
                                 load_dataset("synthetic", "test", n=n_test, **kw))
    return make
