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
