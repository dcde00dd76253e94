"""fwdlearn.distributed: shards cover the items once, in order; gather_rows concatenates across real processes."""

import pytest
import torch

from fwdlearn.distributed import gather_rows, is_distributed, shard_bounds, world_size


@pytest.mark.parametrize("count,shards", [(10, 3), (2, 4), (0, 2), (7, 1)])
def test_shards_partition_the_items_in_order(count, shards):
    parts = [shard_bounds(count, shards, i) for i in range(shards)]
    covered = [i for start, stop in parts for i in range(start, stop)]
    assert covered == list(range(count))
    assert max(stop - start for start, stop in parts) - min(stop - start for start, stop in parts) <= 1


def test_single_process_is_the_identity():
    rows = torch.randn(3, 2)
    assert not is_distributed() and world_size() == 1
    assert gather_rows(rows) is rows
    with pytest.raises(ValueError, match=r"shard index 2 outside \[0, 2\)"):
        shard_bounds(5, 2, 2)

# gather_rows across real processes (uneven shards) is exercised by tests/test_influence_distributed.py


def test_the_backend_follows_the_runs_device_not_the_host(monkeypatch):
    """A CPU run on a GPU host needs gloo (it got nccl and cuda.set_device(LOCAL_RANK)); under torchrun a plain
    'cuda' is this process's own GPU."""
    import torch.distributed as dist

    from fwdlearn.distributed import init_from_env, process_device

    chosen = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: chosen.append(("set_device", index)))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: chosen.append(backend))
    init_from_env(device="cpu")
    init_from_env(device=torch.device("cuda"))
    assert chosen == ["gloo", ("set_device", 1), "nccl"]
    assert process_device("cuda") == torch.device("cuda", 1) and process_device("cpu") == torch.device("cpu")
    assert process_device("cuda:0") == torch.device("cuda", 0)


@pytest.mark.parametrize("argv", [["graph", "train", "--data", "karate"], ["bench", "graph", "--data", "karate"],
                                  ["influence", "seq"]])
def test_commands_that_do_not_scale_out_refuse_torchrun(argv, monkeypatch, tmp_path, capsys):
    """Under torchrun every process would run all of it and write the same files (graph train: 'checkpoint already
    exists' on a fresh folder)."""
    from fwdlearn.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main([*argv, "--name", "x", "--quiet"]) == 2
    assert "runs in one process: start it without torchrun" in capsys.readouterr().err


def _peer_worker(rank: int, port: int, folder: str) -> None:
    import os
    from pathlib import Path

    import torch.distributed as dist

    from fwdlearn.cli import _peer_failed

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    if rank == 1:
        os._exit(0)  # a process that stops (as a rank that raised its own error does)
    try:
        dist.all_reduce(torch.zeros(1))
        dist.all_reduce(torch.zeros(1))
        found = "no error"
    except RuntimeError as error:
        found = f"peer failed: {_peer_failed(error)}; bug-like error: {_peer_failed(RuntimeError('bad shape'))}"
    (Path(folder) / "found.txt").write_text(found)
    os._exit(0)


def test_a_process_whose_peer_stopped_is_told_apart_from_a_bug(tmp_path):
    """Rank 0 printed a 40-line gloo traceback ("Connection closed by peer") under the failing rank's one line;
    the CLI now says in one line that another process stopped. A RuntimeError of its own stays a bug (re-raised)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_peer_worker, args=(port, str(tmp_path)), nprocs=2, start_method="spawn")
    assert (tmp_path / "found.txt").read_text() == "peer failed: True; bug-like error: False"
