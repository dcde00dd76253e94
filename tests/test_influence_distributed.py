"""hop_influence under torch.distributed: two processes share the seeds and return the one-process result."""

import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch_geometric.data import Data
from torch_geometric.nn.models import GCN
from torch_geometric.utils import to_undirected

from fwdlearn.graphs import hop_influence


def small_graph_and_model():
    torch.manual_seed(0)
    edge_index = to_undirected(torch.randint(0, 60, (2, 150)), num_nodes=60)
    data = Data(x=torch.randn(60, 5), edge_index=edge_index)
    return data, GCN(5, 8, 3, 4)


def _worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    data, model = small_graph_and_model()
    curve, R, per_seed = hop_influence(model, data, max_hops=3, samples=25, seed=1, batch_size=4)
    if rank == 0:
        torch.save((curve, R, per_seed), out)
    dist.barrier()
    dist.destroy_process_group()


def test_two_processes_equal_one(tmp_path):
    data, model = small_graph_and_model()
    curve, R, per_seed = hop_influence(model, data, max_hops=3, samples=25, seed=1, batch_size=4)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "result.pt"
    mp.start_processes(_worker, args=(port, str(out)), nprocs=2, start_method="spawn")
    curve2, R2, per_seed2 = torch.load(out)
    assert per_seed2.shape == per_seed.shape == (25, 4)
    torch.testing.assert_close(per_seed2, per_seed)
    torch.testing.assert_close(curve2, curve)
    assert abs(R2 - R) < 1e-6


def _differing_worker(rank: int, port: int, out: str) -> None:
    from fwdlearn.errors import found_by_every_process

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    data, model = small_graph_and_model()
    found = {}
    for case in ("graph", "model"):
        given, measured = data.clone(), model
        if rank == 1 and case == "graph":  # the file rewritten between the processes' reads: one feature changed
            given.x[7, 2] += 1.0
        if rank == 1 and case == "model":  # a model seeded per process
            torch.manual_seed(1)
            measured = GCN(5, 8, 3, 4)
        try:
            hop_influence(measured, given, max_hops=3, samples=25, seed=1, batch_size=4)
            found[case] = None
        except ValueError as error:
            found[case] = (found_by_every_process(error), str(error))
    from fwdlearn.distributed import take_rank_0s

    take_rank_0s(measured)  # (rank 1's model, seeded apart, set to rank 0's: measured as one model)
    found["taken"] = hop_influence(measured, data, max_hops=3, samples=25, seed=1, batch_size=4)[2]
    torch.save(found, f"{out}{rank}")
    dist.barrier()
    dist.destroy_process_group()


def test_processes_given_different_graphs_or_models_are_refused_alike(tmp_path):
    """Every process reads --data itself: a graph file rewritten while they read it (or a model seeded per process)
    gave each process's share of the seeds another graph's (or model's) rows, gathered into one result in silence
    (R 1.7703 where one process measured 1.7739). Every process now refuses alike, naming what differs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_differing_worker, args=(port, str(tmp_path / "found")), nprocs=2, start_method="spawn")
    for rank in (0, 1):
        found = torch.load(tmp_path / f"found{rank}")
        for case, named in (("graph", "(data.x)"), ("model", "(the model's parameters and buffers)")):
            assert found[case] is not None and found[case][0], (rank, case)  # (rank 0 alone says it)
            assert found[case][1].startswith(f"hop_influence shares its work out over the 2 processes of the group, "
                                             f"but they were given different inputs {named}, so the gathered "
                                             "result would mix them: give every process the same graph"), found[case]
    data, model = small_graph_and_model()  # (after take_rank_0s: rank 0's model, as one process measures it)
    torch.testing.assert_close(found["taken"], hop_influence(model, data, max_hops=3, samples=25, seed=1,
                                                             batch_size=4)[2])
