"""Data-parallel RecurrentLM / TransformerLM (DFA) training under torch.distributed (gloo): replicas stay identical."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fwdlearn.sequences import RecurrentLM, load_text
from fwdlearn.sequences.nn.transformer import TransformerLM

TEXT = "to be or not to be, that is the question; whether tis nobler in the mind to suffer.\n" * 20


def _initial_model(vocab_size: int, seed: int, kind: str = "recurrent"):
    if kind == "transformer":
        model = TransformerLM(vocab_size, hidden=12, layers=2, heads=2, context=12, training="dfa")
    else:
        model = RecurrentLM(vocab_size, cell="gru", hidden=12, layers=2, training="dsf")
    torch.manual_seed(seed)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return model


def _worker(rank: int, port: int, folder: str, kind: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    corpus = load_text(f"{folder}/text.txt")
    model = _initial_model(corpus.vocab_size, 100 + rank, kind)  # different replicas: DDP must start all from rank 0's
    model.fit(corpus, context=12, steps=3, batch_size=3, eval_every=3, checkpoint=f"{folder}/ckpt.pt", quiet=True)
    torch.save({n: p.detach().clone() for n, p in model.named_parameters()}, f"{folder}/rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.parametrize("kind", ["recurrent", "transformer"])
def test_two_process_data_parallel_replicas_stay_identical(tmp_path, kind):
    (tmp_path / "text.txt").write_text(TEXT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_worker, args=(port, str(tmp_path), kind), nprocs=2, start_method="spawn")
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert set(a) == set(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    start = dict(_initial_model(load_text(str(tmp_path / "text.txt")).vocab_size, 100, kind).named_parameters())
    assert not torch.allclose(a["head.weight"], start["head.weight"])  # they trained, together
    assert (tmp_path / "ckpt.pt").exists() and (tmp_path / "ckpt.pt.rank1").exists()
    loaded, vocab = RecurrentLM.load(tmp_path / "ckpt.pt")
    assert vocab is not None and loaded.config.hidden == 12 and loaded.config.kind == kind
