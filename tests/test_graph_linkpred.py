"""Link prediction by each of its rules (local:ce, local:ff, bp) learns on a built-in graph."""

import re

import pytest

from fwdlearn.fit import seed_everything
from fwdlearn.graphs import ForwardLinkPredictor, load_graph


@pytest.fixture(scope="module")
def sbm():
    return load_graph("sbm:600", split="random")  # homophilous edges: a link is predictable from the features


@pytest.mark.parametrize("method,lr,epochs,floor", [("ce", 0.01, 40, 0.65), ("bp", 0.01, 40, 0.65),
                                                    ("ff", 0.03, 60, 0.55)])
def test_every_link_rule_ranks_held_out_edges_above_chance(sbm, method, lr, epochs, floor):
    seed_everything(0)
    model = ForwardLinkPredictor(sbm.num_features, hidden=32, layers=2, method=method)
    report = model.fit(sbm, epochs=epochs, lr=lr, quiet=True, seed=0)
    assert report.test_auc > floor  # chance is 0.5 (measured: ce 0.69, bp 0.72, ff 0.62)


def test_the_link_split_cleans_a_directed_graph_with_duplicates():
    """Held-out edges must not reach training: a duplicated edge could put a copy of a test edge there, and a directed
    input lost the edges the undirected split does not read. A clean graph keeps its split."""
    import torch
    from torch_geometric.data import Data
    from torch_geometric.utils import to_undirected

    from fwdlearn.graphs.nn.linkpred import link_split

    gen = torch.Generator().manual_seed(0)
    directed = torch.randint(0, 40, (2, 150), generator=gen)
    messy = Data(x=torch.randn(40, 3), edge_index=torch.cat([directed, directed[:, :30]], 1), num_nodes=40)
    train, val, test = link_split(messy)
    held = torch.cat([val.pos_edge_label_index, test.pos_edge_label_index], 1)
    seen = {tuple(e) for e in train.edge_index.t().tolist()}
    assert not any(tuple(e) in seen or tuple(e[::-1]) in seen for e in held.t().tolist())
    clean = to_undirected(directed[:, directed[0] != directed[1]], num_nodes=40)
    everything = torch.cat([train.edge_index, held, held.flip(0)], 1)
    assert {tuple(e) for e in everything.t().tolist()} == {tuple(e) for e in clean.t().tolist()}
    from torch_geometric.transforms import RandomLinkSplit

    shuffled = clean[:, torch.randperm(clean.shape[1], generator=gen)]  # clean, in no particular order (as Cora's)
    graph = Data(x=torch.randn(40, 3), edge_index=shuffled, num_nodes=40)
    torch.manual_seed(0)
    plain = RandomLinkSplit(num_val=0.16, num_test=0.20, is_undirected=True, add_negative_train_samples=False,
                            split_labels=True)(graph)
    torch.testing.assert_close(link_split(graph, seed=0)[2].pos_edge_label_index, plain[2].pos_edge_label_index)


def test_link_prediction_names_a_dtype_mismatch():
    data = load_graph("karate", split="random")
    data.x = data.x.double()
    with pytest.raises(TypeError, match=r"data.x is torch.float64 but the model's parameters are torch.float32"):
        ForwardLinkPredictor(data.num_features, hidden=8, layers=1).fit(data, epochs=1, quiet=True)


def test_a_graph_too_small_to_split_its_links_is_refused():
    """It failed with "'GlobalStorage' object has no attribute 'neg_edge_label_index'"."""
    import torch
    from torch_geometric.data import Data

    from fwdlearn.graphs.nn.linkpred import link_split

    path = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6]])
    with pytest.raises(ValueError, match=r"the graph's 6 undirected edges \(self-loops and duplicates dropped\) leave "
                                         r"the validation split without edges"):
        link_split(Data(x=torch.randn(30, 6), edge_index=path))
    loops = torch.arange(5).repeat(2, 1)  # self-loops only: PyG's bare "Insufficient number of edges" before
    with pytest.raises(ValueError, match=r"the graph's 0 undirected edges \(self-loops and duplicates dropped\)"):
        link_split(Data(x=torch.randn(5, 6), edge_index=loops))
    complete = torch.combinations(torch.arange(12)).t()  # no pair is left to be a negative
    with pytest.raises(ValueError, match=r"the graph is too dense to draw negative pairs for its validation split "
                                         r"\(66 edges among 12 nodes\)"):
        link_split(Data(x=torch.randn(12, 6), edge_index=complete))
    dense = complete[:, 5:]  # five pairs left: 1:1 negatives cannot be drawn
    with pytest.warns(UserWarning) as caught:
        link_split(Data(x=torch.randn(12, 6), edge_index=dense))
    said = [str(w.message) for w in caught]
    assert any(re.match(r"the graph is dense: its validation split has 9 edges but only \d negative", m) for m in said)
    assert any(m.startswith("the graph is dense: its test split has 12 edges") for m in said), said


def test_the_link_split_depends_on_its_seed_alone():
    """PyG's negative sampling draws from Python's random module, which link_split did not seed."""
    import random

    import torch
    from torch_geometric.data import Data

    from fwdlearn.graphs.nn.linkpred import link_split

    g = torch.Generator().manual_seed(0)
    data = Data(x=torch.randn(40, 4), edge_index=torch.randint(0, 40, (2, 120), generator=g))
    first = link_split(data, seed=3)
    random.random()
    again = link_split(data, seed=3)
    for a, b in zip(first, again):
        assert torch.equal(a.pos_edge_label_index, b.pos_edge_label_index)
        if "neg_edge_label_index" in a:
            assert torch.equal(a.neg_edge_label_index, b.neg_edge_label_index)


def test_the_link_split_leaves_the_callers_generators_as_they_were():
    """link_split reseeded Python's, NumPy's and torch's global generators with its seed and left them there, so every
    draw of the caller after it changed (a library call moved the user's RNG state); its split is the same as before."""
    import random

    import numpy as np
    import torch
    from torch_geometric.data import Data

    from fwdlearn.graphs.nn.linkpred import link_split

    g = torch.Generator().manual_seed(0)
    data = Data(x=torch.randn(40, 4), edge_index=torch.randint(0, 40, (2, 120), generator=g))

    def draws():
        return torch.rand(3).tolist(), random.random(), float(np.random.rand())

    seed_everything(123)
    expected = draws()
    seed_everything(123)
    first = link_split(data, seed=7)
    assert draws() == expected
    torch.manual_seed(0)
    random.seed(1)
    again = link_split(data, seed=7)  # (the same split from other global states)
    for a, b in zip(first, again):
        assert torch.equal(a.pos_edge_label_index, b.pos_edge_label_index)
        if "neg_edge_label_index" in a:
            assert torch.equal(a.neg_edge_label_index, b.neg_edge_label_index)


def test_link_ff_weighs_positives_and_negatives_as_the_reference():
    """ForwardGNN-FF: the positives' mean loss plus the negatives' mean loss (it was one mean over both sets)."""
    import torch
    import torch.nn.functional as F

    from fwdlearn.graphs.nn.linkpred import GoodnessScore

    pos, neg = torch.randn(6, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    g_pos, g_neg = pos.pow(2).sum(-1), neg.pow(2).sum(-1)
    expected = F.softplus(2.0 - g_pos).mean() + F.softplus(g_neg - 2.0).mean()
    torch.testing.assert_close(GoodnessScore(2.0).loss(pos, neg), expected)


@pytest.mark.parametrize("method", ["ce", "ff", "bp"])
def test_link_inputs_are_checked_by_name(method):
    """Pairs [P, 2], a negative id (it read node N-1) or one past the graph, and another feature width (a raw
    matmul error under ce/ff) are refused, naming the fix."""
    import torch

    data = load_graph("karate", split="random")
    model = ForwardLinkPredictor(data.num_features, hidden=8, layers=1, method=method)
    x, edges, N = data.x, data.edge_index, data.num_nodes
    with pytest.raises(ValueError, match=r"pairs must be a \[2, num_edges\] tensor of node ids; got shape \(3, 2\): "
                                         r"transpose it"):
        model(x, edges, torch.tensor([[0, 1], [2, 3], [4, 5]]))
    for bad in (-1, N):
        with pytest.raises(ValueError, match=rf"pairs values must lie in \[0, {N - 1}\] \(x has {N} rows\)"):
            model(x, edges, torch.tensor([[0, 1], [2, bad]]))
    with pytest.raises(ValueError, match=rf"data.x has {data.num_features + 1} node features but the model has "
                                         rf"in_dim={data.num_features}"):
        model.fit(type(data)(x=torch.randn(N, data.num_features + 1), edge_index=edges), epochs=1, quiet=True)
    assert model(x, edges, torch.tensor([[0, 1], [2, 3]])).shape == (2,)


@pytest.mark.parametrize("size,value", [("layers", 2.5), ("layers", 0), ("hidden", 0), ("hidden", 8.0), ("in_dim", 0)])
def test_link_predictor_sizes_are_checked_as_forward_gnn_checks_them(size, value):
    """layers=2.5 built 2 layers and hidden=0 failed deep in the conv factory."""
    with pytest.raises(ValueError, match=rf"^{size} must be an int >= 1"):
        ForwardLinkPredictor(**{"in_dim": 4, "hidden": 8, "layers": 2, size: value})


@pytest.mark.parametrize("theta,message", [(float("inf"), "theta must be a finite number, got inf"),
                                           (1e39, r"theta 1e\+39 is larger than any float32 number"),
                                           ("2", "theta must be a number, got '2'")])
def test_link_predictor_checks_theta_as_forward_gnn_does(theta, message):
    """NaN, inf or 1e39 trained a step and then said 'training diverged'; '2' failed inside fit."""
    from fwdlearn.errors import UsageError

    with pytest.raises(UsageError, match=message):
        ForwardLinkPredictor(4, hidden=8, layers=1, method="ff", theta=theta)


def test_link_methods_are_a_registry_resolved_by_name_or_rule():
    from fwdlearn.graphs.nn.linkpred import CE
    from fwdlearn.graphs.registries import LINK_METHODS, link_method

    assert [ForwardLinkPredictor(4, hidden=8, layers=1, method=m).method for m in ("local:ce", "LOCAL:FF", "bp")] \
        == ["ce", "ff", "bp"]
    with pytest.raises(ValueError, match="unknown link method 'local:prototype'; choose one of ce, ff, bp"):
        link_method("local:prototype")
    LINK_METHODS.register("ce2", CE)
    try:
        model = ForwardLinkPredictor(4, hidden=8, layers=1, method="ce2")
        assert (model.method, model.rule, model.layerwise) == ("ce2", "ce2", True)
    finally:
        LINK_METHODS.unregister("ce2")


def test_held_out_negative_pairs_are_distinct_unordered_pairs():
    """PyG draws ordered pairs: (30, 5) was a validation negative and (5, 30) a test one on karate at seed 0, and the
    'not 1:1' warning counted columns, so a dense graph with fewer non-edges than held-out edges passed silently."""
    import warnings

    import torch
    from torch_geometric.data import Data

    from fwdlearn.graphs.nn.linkpred import link_split

    def unordered(part):
        return [tuple(sorted(pair)) for pair in part.neg_edge_label_index.t().tolist()]

    _, val, test = link_split(load_graph("karate", split="random"), seed=0)
    a, b = unordered(val), unordered(test)
    assert len(set(a)) == len(a) == val.pos_edge_label_index.shape[1] and len(set(b)) == len(b)
    assert not set(a) & set(b) and val.neg_edge_label.shape == (len(a),)
    pairs = torch.combinations(torch.arange(12)).t()
    dense = Data(x=torch.randn(12, 3), num_nodes=12,
                 edge_index=pairs[:, torch.randperm(66, generator=torch.Generator().manual_seed(1))[:50]])
    with pytest.warns(UserWarning, match="its test split has 10 edges but only 8 negative pairs"):
        _, val, test = link_split(dense, seed=0)
    assert len(set(unordered(val)) | set(unordered(test))) == 66 - 50  # every non-edge once
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        link_split(load_graph("karate", split="random"), seed=3)


def test_link_auc_reads_pyg_default_splits_and_names_a_split_without_negatives():
    """model.auc on a RandomLinkSplit split (its default edge_label_index / edge_label) or on link_split's training
    split (no negatives) failed with "'GlobalStorage' object has no attribute 'pos_edge_label_index'"."""
    import torch
    from torch_geometric.transforms import RandomLinkSplit

    from fwdlearn.graphs.nn.linkpred import link_split
    from fwdlearn.metrics import roc_auc

    data = load_graph("karate", split="random")
    seed_everything(0)
    model = ForwardLinkPredictor(data.num_features, hidden=8, layers=2)
    train, val, _ = RandomLinkSplit(num_val=0.16, num_test=0.2, is_undirected=True)(data)
    with torch.no_grad():
        expected = roc_auc(model(data.x, train.edge_index, val.edge_label_index), val.edge_label)
    assert model.auc(data.x, train.edge_index, val) == expected
    train, _, _ = link_split(data)
    with pytest.raises(ValueError, match=r"the split has positive pairs \(pos_edge_label_index\) but no negative ones "
                                         r".*score link_split's validation or test split"):
        model.auc(data.x, train.edge_index, train)
    with pytest.raises(ValueError, match="the split has no labelled pairs: give pos_edge_label_index"):
        model.auc(data.x, data.edge_index, data)


def test_link_fit_names_ignored_edge_weights_and_a_wrong_num_nodes():
    """edge_weight / edge_attr were dropped without a word (ForwardGNN warns), and a data.num_nodes other than
    data.x's rows failed with "addmm: Argument #3 (dense): Expected dim 0 size 40, got 34"."""
    import warnings

    import torch
    from torch_geometric.data import Data

    data = load_graph("karate", split="random")
    model = ForwardLinkPredictor(data.num_features, hidden=8, layers=1)
    edges = data.edge_index.shape[1]
    weighted = Data(x=data.x, edge_index=data.edge_index, edge_weight=torch.rand(edges), edge_attr=torch.rand(edges, 2))
    with pytest.warns(UserWarning, match=r"data.edge_weight and data.edge_attr are ignored: ForwardLinkPredictor treats "
                                         r"the edges as unweighted .* \(del data.edge_weight; del data.edge_attr\)"):
        model.fit(weighted, epochs=1, quiet=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unweighted graph: no warning
        model.fit(Data(x=data.x, edge_index=data.edge_index), epochs=1, quiet=True)
    for wrong in (40, 30):
        with pytest.raises(ValueError, match=rf"data.num_nodes is {wrong} but data.x has 34 rows, one per node: set "
                                             r"data.num_nodes = data.x.shape\[0\]"):
            model.fit(Data(x=data.x, edge_index=data.edge_index, num_nodes=wrong), epochs=1, quiet=True)


@pytest.mark.parametrize("method", ["ce", "ff"])
def test_layerwise_link_steps_take_the_output_the_evaluation_before_them_computed(method, monkeypatch):
    """The evaluation after a step computes the block's output on the very input the next step's loss reads (same
    weights), and it was computed again; taking it over must train exactly as computing it afresh."""
    import torch

    import fwdlearn.graphs.nn.aggregation_cache as aggregation_cache

    data = load_graph("karate", split="random")

    def fit() -> tuple[dict, int]:
        calls = []
        monkeypatch.setattr(aggregation_cache, "run_block", lambda block, cached: calls.append(1) or run(block, cached))
        seed_everything(0)
        model = ForwardLinkPredictor(data.num_features, hidden=8, layers=1, method=method)
        model.fit(data, epochs=5, patience=None, eval_every=1, quiet=True, lr=0.05)
        return model.state_dict(), len(calls)

    run = aggregation_cache.run_block
    kept, calls = fit()
    assert calls == 1 + 5 + 1  # the first step's loss, five evaluations, the finished layer's output (was 11)
    get = aggregation_cache.KeptOutputs.get
    monkeypatch.setattr(aggregation_cache.KeptOutputs, "get",  # never reuse: every output computed afresh
                        lambda self, name, take=False: self.clear() or get(self, name, take))
    fresh, calls = fit()
    assert calls == 5 + 5 + 1
    assert all(torch.equal(kept[k], fresh[k]) for k in fresh)


def test_int32_edge_ids_of_a_large_graph_split_as_int64_ones():
    """PyG's coalesce keys an edge u * n + v in the ids' own dtype: int32 ids on a graph of more than 46,340 nodes
    overflowed, and the split came from other edges than the graph's (5,999 of 6,000 here, no error)."""
    import torch
    from torch_geometric.data import Data
    from torch_geometric.utils import coalesce

    from fwdlearn.graphs.nn.linkpred import link_split

    n, gen = 60_000, torch.Generator().manual_seed(0)
    src, dst = torch.randint(0, n, (3000,), generator=gen), torch.randint(50_000, n, (3000,), generator=gen)
    edges = coalesce(torch.stack([torch.cat([src, dst]), torch.cat([dst, src])]), num_nodes=n)
    x = torch.zeros(n, 1)
    wide, narrow = (link_split(Data(x=x, edge_index=edges.to(dtype)), seed=0) for dtype in (torch.int64, torch.int32))
    for a, b in zip(wide, narrow):
        assert torch.equal(a.edge_index, b.edge_index)
        assert torch.equal(a.pos_edge_label_index, b.pos_edge_label_index)
    held = torch.cat([narrow[1].pos_edge_label_index, narrow[2].pos_edge_label_index], 1)
    assert narrow[0].edge_index.shape[1] + 2 * held.shape[1] == edges.shape[1]  # every edge, once in one split


@pytest.mark.parametrize("conv", ["gcn", "sage"])
def test_narrow_edge_ids_and_pairs_train_and_score_as_int64_ones(conv):
    """Node ids of a narrow integer dtype pass the checks (the blocks read them as int64), but uint8 pairs indexed the
    node representations as a boolean mask (other pairs' probabilities, only torch's deprecation warning), uint8 edge
    ids overflowed in the split (test AUC 0.69 for 0.42), and int16 ones failed with torch's raw errors (SAGE's
    cached degree count; the pairs' indexing)."""
    import warnings

    import torch
    from torch_geometric.data import Data
    from torch_geometric.utils import to_undirected

    gen = torch.Generator().manual_seed(0)
    x, edges = torch.randn(40, 5, generator=gen), to_undirected(torch.randint(0, 40, (2, 60), generator=gen))
    pairs = torch.stack([torch.randperm(39, generator=gen) + 1, torch.randperm(39, generator=gen) + 1])  # no id 0
    results = []
    for dtype in (torch.int64, torch.int16, torch.uint8):
        seed_everything(0)
        model = ForwardLinkPredictor(5, conv=conv, hidden=8, layers=2, method="ce")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # (no deprecated uint8 indexing either)
            report = model.fit(Data(x=x, edge_index=edges.to(dtype)), epochs=2, patience=None, quiet=True)
            with torch.no_grad():
                results.append((report.test_auc, model(x, edges.to(dtype), pairs.to(dtype))))
    for auc, probabilities in results[1:]:
        assert auc == results[0][0]
        assert torch.equal(probabilities, results[0][1])


@pytest.mark.parametrize("method", ["ce", "bp"])
def test_fixed_train_negatives_are_the_references_one_set_that_excludes_held_out_edges(method, monkeypatch, tmp_path):
    """The reference (forwardgnn's datasplit.py: RandomLinkSplit with add_negative_train_samples=True) trains on one set
    of negatives drawn with the split, excluding every edge of the graph; fit drew afresh every epoch among the
    non-training pairs only (5 % of karate's draws are held-out positives), with no way to run the reference's
    protocol. train_negatives="fixed": one set per seed, reused every epoch, no held-out positive and no validation or
    test negative among it; the default stays PyG's fresh draws; a resume with the other choice is refused, one of a
    checkpoint written before the choice (fresh draws, not recorded) goes on with the default."""
    import torch

    from fwdlearn.errors import UsageError
    from fwdlearn.graphs.nn.linkpred import link_split, split_negatives

    data = load_graph("karate", split="random")
    n = data.num_nodes
    train, val, test = link_split(data, seed=0)
    every_edge = torch.cat([train.edge_index, val.pos_edge_label_index, test.pos_edge_label_index], 1)
    held_negatives = torch.cat([val.neg_edge_label_index, test.neg_edge_label_index], 1)

    def keys(pairs: torch.Tensor) -> set[int]:
        return set((pairs[0] * n + pairs[1]).tolist()) | set((pairs[1] * n + pairs[0]).tolist())

    drawn = []
    loss = ForwardLinkPredictor._loss
    monkeypatch.setattr(ForwardLinkPredictor, "_loss", lambda self, h, pos, neg: drawn.append(neg) or loss(self, h, pos,
                                                                                                           neg))

    def fit(**options) -> list[torch.Tensor]:
        drawn.clear()
        seed_everything(0)
        ForwardLinkPredictor(data.num_features, hidden=8, layers=1, method=method).fit(
            data, epochs=4, patience=None, quiet=True, seed=0, **options)
        return list(drawn)

    fixed = fit(train_negatives="fixed")
    assert len(fixed) >= 4 and all(torch.equal(neg, fixed[0]) for neg in fixed)  # one set, every epoch
    torch.testing.assert_close(fixed[0], split_negatives(train, val, test, n, 0))  # the seed's set
    assert fixed[0].shape == (2, train.pos_edge_label_index.shape[1])  # one per training edge, as the reference
    assert not bool((fixed[0][0] == fixed[0][1]).any())
    assert not set((fixed[0][0] * n + fixed[0][1]).tolist()) & (keys(every_edge) | keys(held_negatives))
    assert all(torch.equal(a, b) for a, b in zip(fixed, fit(train_negatives="fixed")))  # the same seed, the same set
    fresh = fit()  # the default: drawn every epoch among the non-training pairs (may hold held-out positives)
    assert not torch.equal(fresh[0], fresh[1])
    with pytest.raises(ValueError, match=r"unknown train_negatives 'all'; use 'fresh' .* or 'fixed'"):
        fit(train_negatives="all")
    ckpt = tmp_path / "link.pt"
    seed_everything(0)
    ForwardLinkPredictor(data.num_features, hidden=8, layers=1, method=method).fit(
        data, epochs=2, patience=None, quiet=True, checkpoint=ckpt, train_negatives="fixed")
    with pytest.raises(UsageError, match=r"train_negatives 'fixed' \(checkpoint\) vs 'fresh' \(now\)"):
        ForwardLinkPredictor(data.num_features, hidden=8, layers=1, method=method).fit(
            data, epochs=4, patience=None, quiet=True, checkpoint=ckpt, resume=True)
    older = torch.load(ckpt, weights_only=False)  # a checkpoint from before the choice drew fresh negatives: resumed
    del older["fingerprint"]["train_negatives"]
    torch.save(older, ckpt)
    report = ForwardLinkPredictor(data.num_features, hidden=8, layers=1, method=method).fit(
        data, epochs=4, patience=None, quiet=True, checkpoint=ckpt, resume=True)
    assert report.resumed is not None


def test_the_reported_test_auc_passes_messages_over_the_training_and_validation_edges():
    """As PyG's split provides: the test AUC of fit's report is model.auc on the test split's edge_index (training
    and validation edges), the validation AUC on the training edges."""
    from fwdlearn.graphs.nn.linkpred import link_split

    data = load_graph("karate", split="random")
    seed_everything(0)
    model = ForwardLinkPredictor(data.num_features, hidden=8, layers=2, method="ce")
    report = model.fit(data, epochs=3, patience=None, quiet=True, seed=0)
    train, val, test = link_split(data, seed=0)
    assert report.test_auc == model.auc(data.x, test.edge_index, test)
    assert report.val_auc == model.auc(data.x, train.edge_index, val)
    assert report.test_auc != model.auc(data.x, train.edge_index, test)  # (the two graphs score differently here)
