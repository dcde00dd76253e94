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


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    """A small repetitive text corpus (char level) for fast language-model tests."""
    from fwdlearn.sequences import load_text

    path = tmp_path_factory.mktemp("text") / "abc.txt"
    path.write_text(("the quick brown fox jumps over the lazy dog. " * 40).strip())
    return load_text(str(path))


@pytest.fixture
def two_processes():
    """``run(worker, *args)``: ``worker(rank, port, *args)`` in two spawned processes, as a real two-process gloo
    group's members (``port``: a free local port for its rendezvous)."""
    import socket

    import torch.multiprocessing as mp

    def run(worker, *args) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.start_processes(worker, args=(port, *args), nprocs=2, start_method="spawn")

    return run
