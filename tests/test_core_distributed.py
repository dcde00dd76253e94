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


def _a_two_gpu_host(monkeypatch) -> list:
    """A CUDA host with two GPUs, process 1 of a two-process torchrun, whose group never connects: the list returned
    collects each ``cuda.set_device`` call and each backend a group is started with."""
    import torch.distributed as dist

    chosen = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: chosen.append(("set_device", index)))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: chosen.append(backend))
    return chosen


def test_the_backend_follows_the_runs_device_not_the_host(monkeypatch):
    """A CPU run on a GPU host needs gloo (it got nccl and cuda.set_device(LOCAL_RANK)); under torchrun a plain
    'cuda' is this process's own GPU."""
    from fwdlearn.distributed import init_from_env, process_device

    chosen = _a_two_gpu_host(monkeypatch)
    init_from_env(device="cpu")
    init_from_env(device=torch.device("cuda"))
    assert chosen == ["gloo", ("set_device", 1), "nccl"]
    assert process_device("cuda") == torch.device("cuda", 1) and process_device("cpu") == torch.device("cpu")
    assert process_device("cuda:0") == torch.device("cuda", 0)


def test_init_from_env_picks_nccl_without_a_device_on_a_cuda_host_and_keeps_one_pinned_gpu_per_machine(monkeypatch):
    """Without a device the host decides (CUDA present: nccl, this process's own GPU); one process on each machine
    may pin its GPU (LOCAL_WORLD_SIZE 1: nobody shares it), and takes it as its own."""
    from fwdlearn.distributed import init_from_env

    chosen = _a_two_gpu_host(monkeypatch)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    init_from_env()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    init_from_env()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")  # (a process per machine, each machine one GPU)
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    init_from_env(device="cuda:0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # (its collectives on the GPU it pins, with its model:
    init_from_env(device="cuda:1")                                # they ran on LOCAL_RANK's GPU 0)
    assert chosen == [("set_device", 1), "nccl", "gloo", ("set_device", 0), "nccl", ("set_device", 1), "nccl"]


def test_more_processes_than_gpus_or_one_pinned_gpu_are_refused_before_connecting(monkeypatch):
    """Under nccl, a process past the machine's GPUs failed in cuda.set_device with CUDA's traceback, and --device
    cuda:0 put every process on one GPU (NCCL's 'duplicate GPU'); both are refused, naming the fix."""
    import torch.distributed as dist

    from fwdlearn.distributed import init_from_env
    from fwdlearn.errors import UsageError

    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "2")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: pytest.fail("set_device reached"))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: pytest.fail("connected"))
    with pytest.raises(UsageError, match=r"^torchrun started 4 processes on this machine but it has 2 GPUs: one "
                                         r"process per GPU \(--nproc_per_node 2\), or --device cpu$"):
        init_from_env(device="cuda")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # (as many processes as GPUs, all on the one named)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(UsageError, match=r"^--device cuda:0 puts every process of this machine on one GPU; give "
                                         r"--device cuda"):
        init_from_env(device="cuda:0")


def test_more_processes_than_gpus_are_refused_by_rank_0_too(monkeypatch):
    """Only the processes past the GPUs refused: rank 0 (LOCAL_RANK 0, a GPU of its own) went on to connect, and an
    error before connecting is said by rank 0 alone, so nobody said why the job stopped. Every process of the
    machine refuses alike now, rank 0 included."""
    import torch.distributed as dist

    from fwdlearn.distributed import init_from_env
    from fwdlearn.errors import UsageError

    for name, value in (("WORLD_SIZE", "4"), ("LOCAL_WORLD_SIZE", "4"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: pytest.fail("set_device reached"))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: pytest.fail("rank 0 connected"))
    with pytest.raises(UsageError, match=r"^torchrun started 4 processes on this machine but it has 2 GPUs"):
        init_from_env(device="cuda")


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


def test_a_process_whose_peer_stopped_is_told_apart_from_a_bug(tmp_path, two_processes):
    """Rank 0 printed a 40-line gloo traceback ("Connection closed by peer") under the failing rank's one line;
    the CLI now says in one line that another process stopped. A RuntimeError of its own stays a bug (re-raised)."""
    two_processes(_peer_worker, str(tmp_path))
    assert (tmp_path / "found.txt").read_text() == "peer failed: True; bug-like error: False"


def _resume_refusal_worker(rank: int, port: int, folder: str) -> None:
    import os
    from pathlib import Path

    import torch.distributed as dist

    from fwdlearn.errors import found_by_every_process
    from fwdlearn.fit import Trainer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    part = Path(folder) / ("ckpt.pt" if rank == 0 else "ckpt.pt.rank1")  # (each process's own part, as fit_lm's)
    model = torch.nn.Linear(2, 1)

    def train(steps, batch_size, resume=False):
        trainer = Trainer(steps, checkpoint=part, resume=resume, quiet=True, fingerprint={"batch_size": batch_size})
        return trainer.run(lambda i: {"loss": 1.0}, state=model)

    def refusal(**kwargs):
        try:
            train(**kwargs)
        except ValueError as error:  # (UsageError, InputError)
            return found_by_every_process(error), str(error)
        return None

    train(2, 4)
    found = {"batch": refusal(steps=4, batch_size=8, resume=True),
             "budget": refusal(steps=1, batch_size=4, resume=True)}
    dist.barrier()
    if rank == 1:
        part.write_bytes(part.read_bytes()[:100])  # process 1's part alone is cut short
    dist.barrier()
    found["cut"] = refusal(steps=4, batch_size=4, resume=True)
    (Path(folder) / f"found{rank}.txt").write_text(repr(found))
    dist.destroy_process_group()
    os._exit(0)


def test_a_resume_every_process_refuses_alike_is_said_once_by_rank_0(tmp_path, two_processes):
    """Resuming a torchrun run with another --batch-size (or --steps below its step) was refused by every process,
    each printing the same line with its rank: now rank 0's error is marked as every process's (the CLI prints it
    once). A part only one process cannot read is still that process's own, and rank 0 says which process stopped."""
    import ast

    two_processes(_resume_refusal_worker, str(tmp_path))
    lead, other = (ast.literal_eval((tmp_path / f"found{r}.txt").read_text()) for r in (0, 1))
    for key, words in (("batch", "batch_size 4 (checkpoint) vs 8 (now)"), ("budget", "beyond the step budget 1")):
        assert lead[key][0] and other[key][0], key  # every process's error is marked: rank 0 alone prints its own
        assert words in lead[key][1] and str(tmp_path / "ckpt.pt") in lead[key][1]
    assert other["cut"] == (False, other["cut"][1]) and "cannot read" in other["cut"][1]  # said with its rank
    assert lead["cut"] == (True, "process 1 of this torchrun job could not resume (its own message says why)")


def _rows_worker(rank: int, port: int, folder: str) -> None:
    import os
    from pathlib import Path

    import torch.distributed as dist

    from fwdlearn.errors import found_by_every_process

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    found = {}
    try:  # float32 rows beside int32 ones of as many bytes: all_gather read the one as the other
        gather_rows(torch.full((2, 2), 1.5) if rank == 0 else torch.full((1, 2), 7, dtype=torch.int32))
        found["mixed"] = None
    except ValueError as error:
        found["mixed"] = (found_by_every_process(error), str(error))
    # an empty share made as torch.zeros(0, k) (float32) beside float64 rows: gloo aborted the process
    empty = torch.tensor([[0.25, 0.5]], dtype=torch.float64) if rank == 0 else torch.zeros(0, 2)
    out = gather_rows(empty)
    found["empty"] = (str(out.dtype), out.tolist())
    (Path(folder) / f"rows{rank}.txt").write_text(repr(found))
    dist.destroy_process_group()
    os._exit(0)


def test_gather_rows_takes_an_empty_share_as_the_others_and_refuses_rows_of_another_dtype(tmp_path, two_processes):
    """gather_rows sent only the row counts: rows of another dtype but as many bytes came back as reinterpreted bits,
    and an empty share of the default dtype beside float64 rows aborted a process inside gloo ("Received data size
    doesn't match expected size"). An empty share now takes the others' dtype and width; rows that differ are
    refused by every process alike, naming what each gave."""
    import ast

    two_processes(_rows_worker, str(tmp_path))
    for rank in (0, 1):
        found = ast.literal_eval((tmp_path / f"rows{rank}.txt").read_text())
        assert found["mixed"] == (True, "gather_rows needs every process's rows in one dtype and one shape past the "
                                        "first dim (process 0: float32 rows of shape (n, 2); process 1: int32 rows of "
                                        "shape (n, 2)): give every process rows of one dtype and width (an empty share "
                                        "may be of any)")
        assert found["empty"] == ("torch.float64", [[0.25, 0.5]])


def test_the_launchers_process_count_is_read_once_for_the_commands_and_the_library(monkeypatch):
    """fwdlearn.runs read WORLD_SIZE itself (it must not import torch, for a fast --help) beside
    distributed.launched_processes, and the two disagreed: WORLD_SIZE '' or 'two' made refuse_torchrun and run_outputs
    fail with int()'s "invalid literal for int() with base 10" while launch_rank and the fits read one process. One
    torch-free implementation serves both now."""
    from fwdlearn import distributed, runs
    from fwdlearn.errors import UsageError

    assert distributed.launched_processes is runs.launched_processes
    monkeypatch.setenv("RANK", "1")
    for value, count in (("", 1), ("two", 1), ("0", 1), ("1", 1), ("3", 3)):
        monkeypatch.setenv("WORLD_SIZE", value)
        assert runs.launched_processes() == count and runs.launch_rank() == (1 if count > 1 else 0)
        if count > 1:
            with pytest.raises(UsageError, match="runs in one process: start it without torchrun"):
                runs.refuse_torchrun("seq-sample")
        else:
            runs.refuse_torchrun("seq-sample")  # (one process: nothing to refuse)
