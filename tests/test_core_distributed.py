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
