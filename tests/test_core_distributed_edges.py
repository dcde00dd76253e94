"""fwdlearn.distributed's edges: the documented shards, checksums that tell inputs apart, one process (or a one-process
group) left alone, and the collectives across a real two-process gloo group joined by init_from_env (a longer share
past rank 0, rows of another width or number of dims, 0-dim values, sizes said per process, buffers taken from
rank 0)."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fwdlearn.distributed import (checksum, gather_rows, init_from_env, is_distributed, mean, min_max, process_device,
                                  raise_together, rank, shard_bounds, world_size)


def test_shards_are_the_documented_ceilings():
    """The module's formula, shard_r = items[ceil(rS/W) : ceil((r+1)S/W)], not only some partition."""
    assert [shard_bounds(10, 3, i) for i in range(3)] == [(0, 4), (4, 7), (7, 10)]
    assert [shard_bounds(2, 4, i) for i in range(4)] == [(0, 1), (1, 1), (1, 2), (2, 2)]
    assert shard_bounds(5) == (0, 5)  # (one process: the whole range)
    with pytest.raises(ValueError, match=r"^shard index -1 outside \[0, 3\)$"):
        shard_bounds(5, 3, -1)


def test_checksums_tell_apart_order_shape_and_bits():
    x = torch.tensor([[0.25, 0.5, 1.0], [2.0, 3.0, 4.0]])
    assert checksum(x) == checksum(x.clone()) == checksum(x.t().contiguous().t())  # equal tensors, any layout
    assert checksum(x) != checksum(x.flip(1))  # a permutation
    assert checksum(x) != checksum(x.reshape(3, 2))  # the same values in another shape
    assert checksum(torch.zeros(2, 3)) != checksum(torch.zeros(4, 3))  # (both sum to 0: the shape tells them apart)
    assert checksum(torch.tensor([0.25, 2.0])) != checksum(torch.tensor([0.5, 2.0]))  # (truncated to ints: both 0)
    assert checksum(torch.tensor([0.0, 1.0])) != checksum(torch.tensor([-0.0, 1.0]))  # the bits, not the values
    assert checksum(torch.tensor([5, 2])) != checksum(torch.tensor([6, 2]))  # the first element counts too
    weight = torch.nn.Linear(2, 2).weight  # (a parameter: requires grad)
    assert checksum(weight) == checksum(weight.detach().clone())
    for dtype in (torch.float16, torch.bfloat16, torch.float64, torch.complex64, torch.complex128, torch.bool):
        ones = torch.ones(3, dtype=dtype)
        assert checksum(ones) == checksum(ones.clone()) != checksum(torch.zeros(3, dtype=dtype)), dtype


def test_one_process_is_left_alone(monkeypatch):
    """Without a group: mean is the value (detached, not a copy's grad), min_max the value twice, an error raised as
    given, a plain 'cuda' kept, and init_from_env joins nothing."""
    from fwdlearn.errors import found_by_every_process

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(dist, "init_process_group", lambda *a, **k: pytest.fail("connected"))
    assert init_from_env() is False and init_from_env(device="cuda") is False
    value = torch.tensor(1.5, requires_grad=True)
    averaged = mean(value * 2)
    assert float(averaged) == 3.0 and not averaged.requires_grad
    assert min_max(-2.5) == (-2.5, -2.5)
    assert process_device("cuda") == torch.device("cuda") and process_device("cuda").index is None
    raise_together(None, "could not resume")
    error = ValueError("part 0 is cut short")
    with pytest.raises(ValueError) as caught:
        raise_together(error, "could not resume")
    assert caught.value is error and not found_by_every_process(caught.value)


def test_a_one_process_group_is_not_distributed(tmp_path, monkeypatch):
    """is_distributed means more than one process: in a group of one, everything stays the identity, and
    init_from_env (idempotent) joins no other group and says that no more than one process takes part."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        rows = torch.ones(2, 3)
        assert not is_distributed() and rank() == 0 and world_size() == 1
        assert gather_rows(rows) is rows and shard_bounds(4) == (0, 4)
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert init_from_env(device="cpu") is False and dist.get_world_size() == 1
    finally:
        dist.destroy_process_group()


def test_init_from_env_without_torch_distributed_says_so(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"^WORLD_SIZE > 1 but this torch build has no torch.distributed support$"):
        init_from_env(device="cpu")


def _refusal(call) -> "tuple[bool, str] | None":
    from fwdlearn.errors import found_by_every_process

    try:
        call()
    except ValueError as error:
        return found_by_every_process(error), str(error)
    return None


def _worker(rank_: int, port: int, folder: str) -> None:
    from fwdlearn.distributed import check_group_started, same_on_every_process, take_rank_0s

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank_), LOCAL_RANK=str(rank_), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    found = {"joined": (init_from_env(device="cpu"), init_from_env(device="cpu"), dist.get_backend(), rank(),
                        world_size(), shard_bounds(5))}
    check_group_started("a fit")  # (WORLD_SIZE 2 and a group joined: nothing to refuse)
    found["longer past rank 0"] = gather_rows(torch.arange(2 + 4 * rank_).reshape(-1, 2) + 10 * rank_).tolist()
    found["width"] = _refusal(lambda: gather_rows(torch.zeros(1, 2 + rank_)))
    found["dims"] = _refusal(lambda: gather_rows(torch.zeros(2) if rank_ == 0 else torch.zeros(1, 2)))
    found["3 dims"] = _refusal(lambda: gather_rows(torch.zeros(1, 2) if rank_ == 0 else torch.zeros(1, 2, 1)))
    found["0-dim"] = _refusal(lambda: gather_rows(torch.zeros(1) if rank_ == 0 else torch.tensor(1.0)))
    found["0-dims"] = _refusal(lambda: gather_rows(torch.tensor(1.0)))
    found["min_max"] = min_max(-1.0 if rank_ == 0 else 2.5)
    value = torch.tensor(1.0 + 2 * rank_, requires_grad=True)
    averaged = mean(value)
    found["mean"] = (float(averaged), averaged.requires_grad, float(value))
    found["sizes"] = _refusal(lambda: same_on_every_process(
        "the work", "give every process the same", sizes={"items": 3 + rank_, "hops": 2},
        contents={"x": torch.ones(2), "w": [torch.ones(1), torch.full((1,), float(rank_))]}))
    big = (2 ** 62 + 7) ^ hash((1,))  # (a checksum of 2**62 + 7: two of them sum past int64)
    found["wide sums"] = _refusal(lambda: same_on_every_process(
        "the work", "fix", sizes={}, contents={"w": [torch.tensor([big]), torch.tensor([big])]}))
    pair = [torch.ones(1), torch.zeros(1)]
    found["swapped"] = _refusal(lambda: same_on_every_process(  # (a sum of the checksums took them for the same)
        "the work", "fix", sizes={}, contents={"w": pair if rank_ == 0 else pair[::-1]}))
    found["negative"] = _refusal(lambda: same_on_every_process(  # (shown masked: 9223372036854775807 (process 0))
        "the work", "fix", sizes={"offset": -1 if rank_ == 0 else 2}, contents={}))
    norm = torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        norm.weight.fill_(1.0 + rank_)
        norm.running_mean.fill_(5.0 + rank_)
        norm.num_batches_tracked.fill_(7 + rank_)
    take_rank_0s(norm)
    found["rank 0's"] = (norm.weight.tolist(), norm.running_mean.tolist(), int(norm.num_batches_tracked))
    torch.save(found, os.path.join(folder, f"found{rank_}.pt"))
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    """Each process's results of :func:`_worker`, run once for the tests below (a spawn costs seconds)."""
    folder = tmp_path_factory.mktemp("distributed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_worker, args=(port, str(folder)), nprocs=2, start_method="spawn")
    return [torch.load(folder / f"found{r}.pt") for r in (0, 1)]


def test_init_from_env_joins_once_and_the_group_is_used(found):
    assert found[0]["joined"] == (True, True, "gloo", 0, 2, (0, 3))
    assert found[1]["joined"] == (True, True, "gloo", 1, 2, (3, 5))


def test_gather_rows_keeps_a_longer_share_past_rank_0(found):
    for process in found:
        assert process["longer past rank 0"] == [[0, 1], [10, 11], [12, 13], [14, 15]]


def test_gather_rows_refuses_another_width_number_of_dims_or_0_dim_values_alike(found):
    fix = ": give every process rows of one dtype and width (an empty share may be of any)"
    for process in found:
        assert process["width"] == (True, "gather_rows needs every process's rows in one dtype and one shape past the "
                                          "first dim (process 0: float32 rows of shape (n, 2); process 1: float32 "
                                          "rows of shape (n, 3))" + fix)
        assert process["dims"] == (True, "gather_rows needs every process's rows in one dtype and one shape past the "
                                         "first dim (process 0: float32 rows of shape (n,); process 1: float32 rows "
                                         "of shape (n, 2))" + fix)
        assert process["3 dims"] == (True, "gather_rows needs every process's rows in one dtype and one shape past "
                                           "the first dim (process 0: float32 rows of shape (n, 2); process 1: "
                                           "float32 rows of shape (n, 2, 1))" + fix)
        assert process["0-dim"] == (True, "gather_rows concatenates rows (a tensor of one or more dims); process 1 "
                                          "gave a 0-dim tensor: give each process's values as rows, e.g. "
                                          "value.reshape(1)")
        assert process["0-dims"][1].startswith("gather_rows concatenates rows (a tensor of one or more dims); "
                                               "processes 0, 1 gave a 0-dim tensor")


def test_min_max_and_mean_over_the_processes(found):
    for r, process in enumerate(found):
        assert process["min_max"] == (-1.0, 2.5)
        assert process["mean"] == (2.0, False, 1.0 + 2 * r)  # (the caller's value is not summed into)


def test_differing_sizes_are_said_per_process_and_wide_checksum_sums_are_compared(found):
    for process in found:
        assert process["sizes"] == (True, "the work shares its work out over the 2 processes of the group, but they "
                                          "were given different inputs (items: 3 (process 0), 4 (process 1); w), so "
                                          "the gathered result would mix them: give every process the same")
        assert process["wide sums"] is None
        assert process["swapped"] == (True, "the work shares its work out over the 2 processes of the group, but they "
                                            "were given different inputs (w), so the gathered result would mix them: "
                                            "fix")
        assert process["negative"][1].startswith("the work shares its work out over the 2 processes of the group, but "
                                                 "they were given different inputs (offset: -1 (process 0), 2 "
                                                 "(process 1)), so")


def test_take_rank_0s_sets_the_buffers_too(found):
    for process in found:
        assert process["rank 0's"] == ([1.0, 1.0], [5.0, 5.0], 7)
