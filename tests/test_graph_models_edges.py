"""The graph models at their edges: ForwardGNN's split and option checks, its transductive scoring and fit report,
and the link predictor's split fractions, negatives, checks and persistence."""

import warnings

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.utils import to_undirected

from fwdlearn.graphs import ForwardGNN, ForwardLinkPredictor
from fwdlearn.graphs.nn.linkpred import link_split
from test_graph_methods import tiny_graph  # (a small labelled graph with train/val/test masks)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- ForwardGNN ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["sf", "bp"])
def test_a_split_outside_train_val_test_is_refused_by_every_scoring_call(method):
    """Only the three splits exist: another name (even one that reads like 'every node') is refused by name, not
    ignored by the methods that do not score per split."""
    model = ForwardGNN(5, 3, hidden=4, layers=1, method=method).eval()
    data = tiny_graph()
    message = "^unknown split 'all'; use 'train', 'val' or 'test'$"
    for call in (model.scores, model.predict, model.evaluate):
        with pytest.raises(ValueError, match=message):
            call(data, "all")


def test_options_given_at_their_default_values_are_not_named_as_ignored():
    """The warning is for an option set to something else than its default: the defaults spelled out (equal values,
    other objects) say nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ForwardGNN(5, 3, hidden=4, layers=1, method="bp", tau=1.0, theta=2.0, alpha=4.0, steps=10, update="sync",
                   spread_error=True, negatives=None)


@pytest.mark.parametrize("method", ["sf", "bp"])
def test_inductive_scores_refuse_features_of_another_width_by_name(method):
    """model(x, edge_index) with too few or too many feature columns names the expected shape (the first block's
    matrix product failed, or, for a wider x, could read the wrong columns), before any block runs."""
    model = ForwardGNN(5, 3, hidden=4, layers=1, method=method)
    edge_index = torch.tensor([[0, 1], [1, 0]])
    for width in (4, 6):
        with pytest.raises(ValueError, match=rf"^x must have shape \[N, 5\] \(in_dim=5\); got \(6, {width}\)$"):
            model(torch.randn(6, width), edge_index)


@pytest.mark.parametrize("method, split, where, label, span", [
    ("sf", None, "data.train_mask", 3, "0, 3"), ("sf", None, "data.train_mask", -1, "-1, 2"),
    ("ff-la", "test", "data.val_mask", 3, "0, 3")])
def test_a_known_label_just_outside_the_classes_is_refused(method, split, where, label, span):
    """Labels run 0..K-1: a known label of exactly K (one past the last class) or -1 (the usual 'unlabelled') is
    refused as any other outside label, on the training nodes and, when the FF methods score the test split, on the
    validation nodes whose labels they read (a -1 there is refused by the mask check first)."""
    model = ForwardGNN(5, 3, hidden=4, layers=1, method=method).eval()
    data = tiny_graph()
    data.y = data.y.clone()
    data.y[(data.train_mask if split is None else data.val_mask).nonzero()[0]] = label
    with pytest.raises(ValueError, match=rf"^data\.y holds labels in \[{span}\] on {where}.*, but the model has "
                                         r"num_classes=3 \(labels 0\.\.2\): score a graph labelled as the model's "
                                         r"training graph, or build the model with its number of classes$"):
        model.scores(data, split)


def test_a_checkpoint_resumes_with_the_other_cache_setting(tmp_path):
    """``cache`` is a speed option: a fit checkpointed with the cached aggregation resumes without it (and its
    weights match those of the same fit uncached to float precision)."""
    data = tiny_graph()
    torch.manual_seed(0)
    model = ForwardGNN(5, 3, hidden=4, layers=2, method="sf", cache=True)
    path = tmp_path / "fit.ckpt"
    model.fit(data, epochs=2, quiet=True, checkpoint=path)
    torch.manual_seed(0)
    again = ForwardGNN(5, 3, hidden=4, layers=2, method="sf", cache=False)
    again.fit(data, epochs=2, quiet=True, checkpoint=path, resume=True)
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_a_fit_refuses_a_label_equal_to_the_class_count_even_off_the_training_nodes():
    """One test node labelled K (the classes are 0..K-1) would be scored against no class: fit names the count to
    build the model with before training."""
    data = tiny_graph()
    data.y = data.y.clone()
    data.y[data.test_mask.nonzero()[0]] = 3
    model = ForwardGNN(5, 3, hidden=4, layers=1, method="sf")
    with pytest.raises(ValueError, match=r"^data has labels up to 3 but the model has num_classes=3 \(labels 0\.\.2\): "
                                         r"build it with num_classes=4, or number the classes 0\.\.K-1"):
        model.fit(data, epochs=1, quiet=True)


@pytest.mark.parametrize("method", ["sf", "bp"])
def test_a_model_on_the_meta_device_is_refused_when_it_scores(method):
    """A meta model has shapes but no values: transductive scores on it are refused by name, not returned as a meta
    tensor."""
    model = ForwardGNN(5, 3, hidden=4, layers=1, method=method).to("meta")
    with pytest.raises(ValueError, match=r"^this ForwardGNN's .* is on the meta device \(shape \[.*\]\): a shape "
                                         r"without values, and scoring reads its values; build the model outside"):
        model.scores(tiny_graph())


def test_a_resume_on_the_same_graph_with_another_test_split_is_refused(tmp_path):
    """The checkpoint is of a graph with its split: one node fewer in the test mask is another run."""
    from fwdlearn.fit import CheckpointMismatch

    data = tiny_graph()
    path = tmp_path / "fit.ckpt"
    ForwardGNN(5, 3, hidden=4, layers=1, method="sf").fit(data, epochs=1, quiet=True, checkpoint=path)
    data.test_mask = data.test_mask.clone()
    data.test_mask[data.test_mask.nonzero()[0]] = False
    with pytest.raises(CheckpointMismatch, match=r"was made by a different run: graph '[0-9a-f]+' \(checkpoint\) vs "
                                                 r"'[0-9a-f]+' \(now\)"):
        ForwardGNN(5, 3, hidden=4, layers=1, method="sf").fit(data, epochs=1, quiet=True, checkpoint=path,
                                                               resume=True)


# --- link prediction ----------------------------------------------------------------------------------------------

def small_link_graph(n=20, edges=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return Data(x=x, edge_index=to_undirected(torch.randint(0, n, (2, edges), generator=g)))


@pytest.mark.parametrize("val, test, message", [
    (0, 0.2, "^val must be > 0, got 0$"), (0.16, 0, "^test must be > 0, got 0$"),
    (0.5, 0.5, r"^val=0\.5 and test=0\.5 leave no edges to train on: the training split is the rest, 1 - val - test; "
               r"give fractions that sum to less than 1 \(the default: val=0\.16, test=0\.20\)$")])
def test_link_split_fractions_at_their_bounds_are_refused_by_name(val, test, message):
    """A zero fraction is no split, and fractions summing to exactly 1 leave no training edges: each is refused as
    the arguments' fault, not the graph's ('link prediction needs a larger graph')."""
    from fwdlearn.errors import UsageError

    with pytest.raises(UsageError, match=message):
        link_split(small_link_graph(), val=val, test=test)


def near_complete_graph(n: int, missing: int, seed: int = 0) -> Data:
    """The complete graph on ``n`` nodes less ``missing`` edges drawn from ``seed`` (both directions)."""
    import itertools

    pairs = list(itertools.combinations(range(n), 2))
    keep = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))[missing:]
    edges = torch.tensor([pairs[i] for i in keep.tolist()]).t()
    return Data(x=torch.randn(n, 3), edge_index=torch.cat([edges, edges.flip(0)], 1), num_nodes=n)


def test_a_split_one_negative_short_is_named_and_fixed_negatives_of_no_pair_are_refused():
    """K_11 less 13 edges: 42 edges, 6 validation and 8 test ones, and 13 non-edges: the validation split takes 6, the
    test split the 7 left, one fewer than its edges (warned); no pair is left for fixed training negatives."""
    from fwdlearn.graphs.nn.linkpred import split_negatives

    with pytest.warns(UserWarning) as caught:
        train, val, test = link_split(near_complete_graph(11, 13))
    assert [str(w.message) for w in caught] == [
        "the graph is dense: its test split has 8 edges but only 7 negative pairs (not 1:1), so its AUC rests on few "
        "negatives"]
    assert val.neg_edge_label_index.shape == (2, 6) and test.neg_edge_label_index.shape == (2, 7)
    negatives = torch.cat([val.neg_edge_label_index, test.neg_edge_label_index], 1)
    assert bool((negatives[0] != negatives[1]).all())  # (the repeats' replacements are no self-pairs)
    assert len({(min(u, v), max(u, v)) for u, v in negatives.t().tolist()}) == 13  # every non-edge, once
    with pytest.raises(ValueError, match=r"^the graph is too dense for fixed training negatives: every pair of its 11 "
                                         r"nodes that is no edge is a validation or test negative, so none is left to "
                                         r"train on; use train_negatives='fresh' \(drawn every epoch among the pairs "
                                         r"that are not training edges\)$"):
        split_negatives(train, val, test, 11, 0)


def test_fixed_negatives_one_short_of_the_training_edges_are_named():
    """K_9 less 14 edges: 15 training edges and 7 unordered non-edges left after the 3 + 4 held-out negatives, so 14
    ordered pairs, one fewer than wanted: every one is given and the warning says how many."""
    from fwdlearn.graphs.nn.linkpred import split_negatives

    train, val, test = link_split(near_complete_graph(9, 14))
    with pytest.warns(UserWarning, match=r"^the graph is dense: only 14 ordered pairs are neither an edge nor a "
                                         r"validation or test negative, so its 15 training edges get 14 fixed "
                                         r"negatives \(not 1:1\); train_negatives='fresh' draws one per training edge "
                                         r"every epoch among the pairs that are not training edges$"):
        negatives = split_negatives(train, val, test, 9, 0)
    assert negatives.shape == (2, 14) and bool((negatives[0] != negatives[1]).all())


def test_an_unknown_kind_of_training_negatives_is_refused_by_name():
    model = ForwardLinkPredictor(3, hidden=4, layers=1)
    with pytest.raises(ValueError, match=r"^unknown train_negatives 'none'; use 'fresh' \(drawn every epoch, excluding "
                                         r"the training edges\) or 'fixed' \(drawn once, excluding every edge: the "
                                         r"reference's\)$"):
        model.fit(small_link_graph(), epochs=1, quiet=True, train_negatives="none")


def test_a_link_predictor_file_keeps_every_setting():
    """config_dict() builds the same model again, ``cache`` (a non-default) included, and save/load keeps it."""
    model = ForwardLinkPredictor(5, conv="sage", hidden=4, layers=2, method="ff", theta=1.5, cache=False)
    assert model.config_dict() == {"in_dim": 5, "conv": "sage", "hidden": 4, "layers": 2, "method": "ff",
                                   "theta": 1.5, "cache": False}


def test_layerwise_link_probabilities_are_the_mean_of_the_layers():
    """ce's probability of a pair is the mean over layers of sigmoid(<h_u, h_v>) of each layer's output."""
    torch.manual_seed(0)
    data = tiny_graph()
    model = ForwardLinkPredictor(5, hidden=4, layers=2, method="ce").eval()
    pairs = torch.tensor([[0, 3, 7], [1, 9, 2]])
    with torch.no_grad():
        h1 = model.blocks[0](data.x, data.edge_index)
        h2 = model.blocks[1](h1, data.edge_index)
        expected = sum(torch.sigmoid((h[pairs[0]] * h[pairs[1]]).sum(-1)) for h in (h1, h2)) / 2
        torch.testing.assert_close(model(data.x, data.edge_index, pairs), expected)


def test_only_layerwise_link_methods_end_every_block_with_a_relu():
    """Each layer of ce / ff is scored on its own (a ReLU output); bp's last block gives the dot product's inputs
    unclipped, as a classifier's last layer."""
    for method, last in (("ce", True), ("ff", True), ("bp", False)):
        model = ForwardLinkPredictor(5, hidden=4, layers=2, method=method)
        assert [block.activation for block in model.blocks] == [True, last]


def test_a_link_fit_refuses_features_that_are_not_finite_by_name():
    from fwdlearn.errors import UsageError

    data = small_link_graph()
    data.x[3, 1] = float("nan")
    with pytest.raises(UsageError, match=r"^data\.x holds 1 NaN or infinite entries \(of 60\); clean or impute them "
                                         r"first$"):
        ForwardLinkPredictor(3, hidden=4, layers=1, method="ce").fit(data, epochs=2, quiet=True)


def test_a_link_checkpoint_resumed_with_another_threshold_is_refused(tmp_path):
    """``theta`` sets ``ff``'s edge probability and loss: a run resumed with another one would mix two objectives."""
    from fwdlearn.fit import CheckpointMismatch

    data, path = small_link_graph(), tmp_path / "link.ckpt"
    ForwardLinkPredictor(3, hidden=4, layers=2, method="ff", theta=2.0).fit(data, epochs=2, quiet=True,
                                                                             checkpoint=path)
    with pytest.raises(CheckpointMismatch, match=r"model\.theta 2\.0 \(checkpoint\) vs 3\.0 \(now\)"):
        ForwardLinkPredictor(3, hidden=4, layers=2, method="ff", theta=3.0).fit(data, epochs=4, quiet=True,
                                                                                 checkpoint=path, resume=True)
