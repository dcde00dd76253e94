"""Fixtures shared by the test modules."""

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Tiny models: one intra-op thread avoids OpenMP spinning on a shared CPU; restored afterwards
    (also when the code under test changes it, as ``--threads`` does)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
