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
