"""Link prediction's negative pairs (NegativeSampler): PyG's negative_sampling drawn in torch, with the training edges
keyed once per fit. Each pair is two distinct nodes, not a training edge, not drawn twice, and each non-edge is as
likely as any other; the count is PyG's; a seed repeats a draw; every link method trains on them."""

import pytest
import torch

from fwdlearn.fit import seed_everything
from fwdlearn.graphs.nn.negatives import NegativeSampler


def random_graph(n: int, edges: int, seed: int = 0) -> torch.Tensor:
    """An undirected graph (both directions of each edge, no self-loops, no repeats) as link_split's training split."""
    gen = torch.Generator().manual_seed(seed)
    u, v = torch.randint(n, (2, edges), generator=gen)
    keys = torch.unique((torch.minimum(u, v) * n + torch.maximum(u, v))[u != v])
    one_way = torch.stack([keys // n, keys % n])
    return torch.cat([one_way, one_way.flip(0)], 1)


def check_negatives(neg: torch.Tensor, edge_index: torch.Tensor, n: int) -> None:
    assert neg.dtype == torch.long and neg.shape[0] == 2
    assert bool((neg >= 0).all() and (neg < n).all())
    assert not bool((neg[0] == neg[1]).any()), "a self-loop"
    keys = neg[0] * n + neg[1]
    assert keys.unique().numel() == keys.numel(), "a pair drawn twice"
    assert not bool(torch.isin(keys, edge_index[0] * n + edge_index[1]).any()), "an edge drawn as a negative"


def test_negatives_of_a_cora_sized_graph_are_distinct_non_edges_one_per_edge():
    edge_index = random_graph(2708, 5278)  # Cora's size
    num = edge_index.shape[1] // 2  # one per training edge, as the fit asks
    sampler = NegativeSampler(edge_index, 2708)
    seed_everything(0)
    for _ in range(3):
        neg = sampler(num)
        assert neg.shape == (2, num)
        check_negatives(neg, edge_index, 2708)


@pytest.mark.parametrize("n,edges,num", [(5, 40, 8), (6, 40, 12), (6, 6, 19), (9, 30, 20), (12, 60, 30), (3, 0, 10),
                                         (1, 0, 3)])
def test_a_dense_graph_gives_as_many_negatives_as_pyg(n, edges, num):
    """Where fewer non-edges are left than asked for, both give every one of them; PyG lists them in key order (the
    same ones at every call), here in random order; otherwise both give the number asked for."""
    from torch_geometric.utils import negative_sampling

    edge_index = random_graph(n, edges) if edges else torch.empty(2, 0, dtype=torch.long)
    sampler = NegativeSampler(edge_index, n)
    assert sampler.available == n * (n - 1) - edge_index.shape[1]
    seed_everything(0)
    for _ in range(5):
        neg = sampler(num)
        check_negatives(neg, edge_index, n)
        assert neg.shape[1] == min(num, sampler.available)
        assert neg.shape[1] == negative_sampling(edge_index, num_nodes=n, num_neg_samples=num).shape[1]
    if 0 < sampler.available <= num:  # every non-edge
        pyg = negative_sampling(edge_index, num_nodes=n, num_neg_samples=num)
        assert set(map(tuple, neg.t().tolist())) == set(map(tuple, pyg.t().tolist()))


@pytest.mark.parametrize("num", [3, 12, 19])  # of the 20 non-edges: drawn at random (3, 12), listed (19)
def test_every_non_edge_is_drawn_as_often(num):
    """Pearson's chi-square of the pairs' counts over many draws: a draw is a uniform subset of num of the A non-edges,
    so the statistic times (A - 1) / A is about chi-square with A - 1 degrees of freedom; the bound is its 0.9999
    quantile (PyG's listing of a dense graph's first non-edges in key order fails it by far)."""
    from scipy.stats import chi2

    n = 6
    edge_index = random_graph(n, 6)
    sampler = NegativeSampler(edge_index, n)
    allowed = sampler.available  # 30 ordered pairs less the 5 edges (both directions): 20
    draws = 2000
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(n * n)
    for _ in range(draws):
        neg = sampler(num, generator=generator)
        counts += torch.bincount(neg[0] * n + neg[1], minlength=n * n)
    keys = torch.arange(n * n)
    possible = (keys // n != keys % n) & ~torch.isin(keys, edge_index[0] * n + edge_index[1])
    assert int(possible.sum()) == allowed and counts[~possible].sum() == 0
    share = num / allowed
    expected = draws * share
    statistic = float(((counts[possible] - expected) ** 2).sum() / (expected * (1 - share))) * (allowed - 1) / allowed
    assert statistic < chi2.ppf(0.9999, allowed - 1), (statistic, counts[possible])


def test_a_seed_repeats_the_negatives_and_they_come_from_torch():
    import random

    edge_index = random_graph(300, 600)
    sampler = NegativeSampler(edge_index, 300)
    seed_everything(4)
    first = [sampler(500) for _ in range(2)]
    seed_everything(4)
    random.seed(99)  # (Python's generator plays no part)
    again = [sampler(500) for _ in range(2)]
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b)
    assert not torch.equal(first[0], first[1])  # afresh at every call
    seed_everything(5)
    assert not torch.equal(sampler(500), first[0])
    mine = [sampler(500, generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    torch.testing.assert_close(mine[0], mine[1])


def test_the_sampler_refuses_edge_ids_outside_its_nodes():
    with pytest.raises(ValueError, match=r"node ids in \[0, 5\] but num_nodes=5"):
        NegativeSampler(torch.tensor([[0, 1], [1, 5]]), 5)
    with pytest.raises(ValueError, match="num must be an int >= 0"):
        NegativeSampler(torch.tensor([[0], [1]]), 5)(-1)


def test_the_sampler_refuses_an_edge_list_of_another_shape_or_dtype():
    """An [E, 2] edge list failed with Python's "too many values to unpack (expected 2)", naming neither the argument
    nor the fix; float ids were truncated to other nodes in silence."""
    with pytest.raises(ValueError, match=r"^edge_index must be a \[2, num_edges\] tensor of integer node ids; got "
                                         r"torch.int64 of shape \(3, 2\): transpose it \(\.t\(\)\)$"):
        NegativeSampler(torch.tensor([[0, 1], [1, 2], [2, 3]]), 4)
    with pytest.raises(ValueError, match=r"integer node ids; got torch.float32 of shape \(2, 2\)$"):
        NegativeSampler(torch.tensor([[0.0, 1.5], [1.0, 2.0]]), 4)
    with pytest.raises(ValueError, match=r"integer node ids; got torch.int64 of shape \(2,\)$"):
        NegativeSampler(torch.tensor([0, 1]), 4)
    assert NegativeSampler(torch.tensor([[0, 1], [1, 2], [2, 3]]).t(), 4).available == 4 * 3 - 3  # its fix


@pytest.mark.parametrize("method", ["ce", "ff", "bp"])
def test_every_link_method_trains_on_the_sampler_negatives(method, monkeypatch, one_torch_thread):
    """The training edges are keyed once per fit, and every epoch (of every layer) draws one negative per edge."""
    from fwdlearn.graphs import ForwardLinkPredictor, load_graph
    from fwdlearn.graphs.nn import linkpred

    built, drawn = [], []

    class Counting(NegativeSampler):
        def __init__(self, edge_index, num_nodes):
            super().__init__(edge_index, num_nodes)
            built.append(edge_index)

        def __call__(self, num, generator=None):
            neg = super().__call__(num, generator)
            drawn.append((num, neg))
            return neg

    monkeypatch.setattr(linkpred, "NegativeSampler", Counting)
    data = load_graph("karate", split="random")
    seed_everything(0)
    model = ForwardLinkPredictor(data.num_features, hidden=8, layers=2, method=method)
    report = model.fit(data, epochs=3, lr=0.01, patience=None, quiet=True, seed=0)
    assert 0 <= report.test_auc <= 1
    assert len(built) == 1
    assert len(drawn) == 3 * (2 if method != "bp" else 1)
    train = linkpred.link_split(data, 0)[0]
    for num, neg in drawn:
        assert num == train.pos_edge_label_index.shape[1] == neg.shape[1]
        check_negatives(neg, train.edge_index, data.num_nodes)


def test_fixed_negatives_of_a_near_complete_graph_are_said_to_be_fewer_or_refused():
    """split_negatives said "one per training edge"; on a near-complete graph it gave fewer (8 for 30 training edges)
    in silence, or none, with which ``ff`` failed ("ff_loss(per_set=True) needs positives and negatives; got 28 and
    0") and ``ce`` / ``bp`` trained on positives alone. Fewer are warned of, none refused naming the fix."""
    import itertools
    import warnings

    from torch_geometric.data import Data

    from fwdlearn.errors import FwdlearnWarning
    from fwdlearn.graphs.nn.linkpred import link_split, split_negatives

    def near_complete(n: int, missing: int):
        pairs = torch.tensor(list(itertools.combinations(range(n), 2))[missing:]).t()
        data = Data(x=torch.randn(n, 2), edge_index=torch.cat([pairs, pairs.flip(0)], 1), num_nodes=n)
        with warnings.catch_warnings():  # (link_split's own warning of few validation and test negatives)
            warnings.simplefilter("ignore")
            return link_split(data, 0)

    train, val, test = near_complete(12, 20)
    with pytest.warns(FwdlearnWarning, match=r"only 8 ordered pairs are neither an edge nor a validation or test "
                                             r"negative, so its 30 training edges get 8 fixed negatives \(not 1:1\); "
                                             r"train_negatives='fresh'"):
        assert split_negatives(train, val, test, 12, 0).shape == (2, 8)
    train, val, test = near_complete(10, 3)
    with pytest.raises(ValueError, match=r"too dense for fixed training negatives: .* none is left to train on; use "
                                         r"train_negatives='fresh'"):
        split_negatives(train, val, test, 10, 0)


def test_a_self_loop_excludes_no_pair():
    """Self-loops are ignored: with the loop (0, 0) on 3 nodes every one of the 6 ordered pairs of distinct nodes is
    available, (0, 1) included (keyed as the loop would be, u * (n - 1) + u, it was lost)."""
    sampler = NegativeSampler(torch.tensor([[0, 2], [0, 2]]), 3)
    assert sampler.available == 6
    pairs = sampler(6, torch.Generator().manual_seed(0))
    assert sorted(map(tuple, pairs.t().tolist())) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
