"""ForwardGNN's FF, top-down and DFA methods at their edges: option checks, losses against hand computations, the
candidate graphs of an unsplit scoring, a top-down time step written out, and DFA's prior-loss warning."""

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Data
from torch_geometric.utils import to_undirected

from fwdlearn.graphs import ForwardGNN
from fwdlearn.graphs.methods.label_appending import append_labels
from fwdlearn.graphs.methods.virtual_nodes import add_virtual_nodes, wrong_labels
from test_graph_methods import _reference_goodness, tiny_graph  # (the reference's FF scoring; a small split graph)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- FF-LA, FF-VN, FF-SymBa
@pytest.mark.parametrize("negatives", [0, -1])
def test_negatives_below_one_are_refused(negatives):
    """0 negative copies left the loss nothing to stack (torch's raw 'stack expects a non-empty TensorList')."""
    with pytest.raises(ValueError, match=r"negatives must be an int in \[1, 2\] \(the wrong classes of 3\), or None "
                                         rf"for all of them; got {negatives}"):
        ForwardGNN(5, 3, method="ff-la", negatives=negatives)


def _first_layer_goodness(model, data, labels):
    block, train = model.blocks[0], data.train_mask
    return block(append_labels(data.x, 3, labels, train), data.edge_index)[train].pow(2).sum(-1)


def test_symba_loss_reads_its_alpha_on_every_positive_negative_pair():
    torch.manual_seed(0)
    data = tiny_graph()
    model = ForwardGNN(5, 3, hidden=8, layers=1, method="ff-symba", seed=3, alpha=1.5)
    wrong = wrong_labels(data.y, 3, torch.Generator().manual_seed(3), count=2)
    g_pos = _first_layer_goodness(model, data, data.y)
    g_neg = torch.stack([_first_layer_goodness(model, data, w) for w in wrong])
    expected = F.softplus(-1.5 * (g_pos.unsqueeze(0) - g_neg)).mean()
    torch.testing.assert_close(model.layer_losses(data)[0], expected)


def test_ff_loss_reads_its_theta():
    torch.manual_seed(0)
    data = tiny_graph()
    model = ForwardGNN(5, 3, hidden=8, layers=1, method="ff-la", seed=3, theta=0.5, negatives=1)
    wrong = wrong_labels(data.y, 3, torch.Generator().manual_seed(3), count=1)[0]
    g_pos, g_neg = _first_layer_goodness(model, data, data.y), _first_layer_goodness(model, data, wrong)
    expected = F.softplus(0.5 - g_pos).mean() + F.softplus(g_neg - 0.5).mean()
    torch.testing.assert_close(model.layer_losses(data)[0], expected)


def test_ff_vn_without_a_split_links_every_node_to_a_virtual_node():
    """Without a split every node outside the training set is evaluated (linked to virtual node k in pass k), the
    training nodes to their own class's; inductively (no labels) every node is linked to virtual node k."""
    torch.manual_seed(0)
    data = tiny_graph()
    model = ForwardGNN(5, 3, hidden=8, layers=2, method="ff-vn").eval()
    every, train = torch.arange(30), data.train_mask

    def transductive(k):
        assign = torch.where(train, data.y, torch.full_like(data.y, k))
        return add_virtual_nodes(data.x, data.edge_index, every, assign, model.method.virtual_x)

    def inductive(k):
        return add_virtual_nodes(data.x, data.edge_index, every, torch.full((30,), k), model.method.virtual_x)

    with torch.no_grad():
        for scored, inputs in ((model.scores(data), transductive), (model(data.x, data.edge_index), inductive)):
            torch.testing.assert_close(scored, _reference_goodness(model, data, None, None, inputs))


@pytest.mark.parametrize("method", ["ff-la", "ff-vn"])
def test_ff_scores_of_a_disjoint_union_are_not_each_graphs_own_so_they_are_not_separable(method):
    """FF-LA shifts the features by the whole graph's smallest one, FF-VN links every node to shared virtual nodes:
    a graph's rows change with another component beside it, as ``separable`` (read by hop_influence) says."""
    torch.manual_seed(0)
    a, b = tiny_graph(seed=0), tiny_graph(seed=1)
    model = ForwardGNN(5, 3, hidden=8, layers=2, method=method).eval()
    with torch.no_grad():
        alone = model(a.x, a.edge_index)
        union = model(torch.cat([a.x, b.x - 3.0]), torch.cat([a.edge_index, b.edge_index + 30], dim=1))
    assert not torch.allclose(union[:30], alone)
    assert model.separable is False


# ---------------------------------------------------------------- SF-TopDown
def test_context_vectors_are_one_hot_labels_on_the_mask_a_uniform_row_elsewhere_and_a_class_per_virtual_node():
    from fwdlearn.graphs.methods.topdown import context_vectors

    y, mask = torch.tensor([2, 0, 1, 1]), torch.tensor([True, False, True, False])
    got = context_vectors(4, 3, y, mask, virtual=3, dtype=torch.float64)
    expected = torch.tensor([[0, 0, 1], [1 / 3] * 3, [0, 1, 0], [1 / 3] * 3, [1, 0, 0], [0, 1, 0], [0, 0, 1]],
                            dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    torch.testing.assert_close(context_vectors(2, 4), torch.full((2, 4), 0.25), rtol=0, atol=0)


@pytest.mark.parametrize("update", ["async", "Sync", ""])
def test_an_update_other_than_sync_or_alternate_is_refused(update):
    with pytest.raises(ValueError, match=rf"^unknown update '{update}'; use 'sync' or 'alternate'$"):
        ForwardGNN(5, 3, method="sf-top2input", update=update)


def _read(block, ei, below, above):
    """Top-To-Input's block written out: the conv reads [norm(below) || norm(above)] as it is."""
    return F.relu(block.conv(torch.cat([F.normalize(below, dim=-1), F.normalize(above, dim=-1)], dim=-1), ei))


def test_sync_update_reads_the_layer_below_now_and_the_layer_above_one_step_ago():
    from fwdlearn.graphs.methods.topdown import topdown_step

    torch.manual_seed(0)
    data = tiny_graph()
    model = ForwardGNN(5, 3, hidden=4, layers=3, method="sf-top2input")
    blocks, ei = model.blocks, data.edge_index
    states = [torch.randn(30, 4) for _ in range(3)]
    context = torch.rand(30, 3)
    outs = topdown_step(blocks, model.method, data.x, ei, states, context, update="sync")
    torch.testing.assert_close(outs[0], _read(blocks[0], ei, data.x, states[1]))
    torch.testing.assert_close(outs[1], _read(blocks[1], ei, outs[0], states[2]))
    torch.testing.assert_close(outs[2], _read(blocks[2], ei, outs[1], context))


@pytest.mark.parametrize("method", ["sf-top2input", "sf-top2loss"])
def test_top_down_training_graph_gives_the_training_labels_as_context(method):
    from fwdlearn.graphs.methods.topdown import context_vectors

    data = tiny_graph()
    model = ForwardGNN(5, 3, hidden=4, layers=2, method=method)
    xa, ea, ctx = model.method._training_graph(data.x, data.edge_index, data.y, data.train_mask)
    assert xa.shape == (33, 5) and ea.shape[1] == data.edge_index.shape[1] + 2 * int(data.train_mask.sum())
    torch.testing.assert_close(ctx, context_vectors(30, 3, data.y, data.train_mask, virtual=3), rtol=0, atol=0)
    torch.testing.assert_close(ctx[:30][data.train_mask], F.one_hot(data.y[data.train_mask], 3).float())


def test_top_down_states_persist_from_one_epoch_to_the_next(monkeypatch):
    """Training runs one time step per epoch: the step of epoch 2 starts from the (detached) outputs of epoch 1."""
    torch.manual_seed(0)
    data = tiny_graph()
    model = ForwardGNN(5, 3, hidden=4, layers=2, method="sf-top2input")
    method, seen = model.method, []
    losses = type(method)._losses

    def spy(self, blocks, xa, ea, ctx, states, y, train, n):
        result = losses(self, blocks, xa, ea, ctx, states, y, train, n)
        seen.append(([s.clone() for s in states], [o.detach().clone() for o in result[1]]))
        return result

    monkeypatch.setattr(type(method), "_losses", spy)
    model.fit(data, epochs=3, patience=None, quiet=True)
    assert len(seen) == 3
    assert all(float(s.abs().max()) == 0 for s in seen[0][0])  # the first step starts from zero states
    for before, after in zip(seen, seen[1:]):
        for state, out in zip(after[0], before[1]):
            torch.testing.assert_close(state, out, rtol=0, atol=0)


def test_a_top_down_fit_history_has_one_row_per_epoch_and_no_layer():
    """Top-down trains every layer every step: its history counts epochs of the whole model, with no ``layer``."""
    torch.manual_seed(0)
    report = ForwardGNN(5, 3, hidden=4, layers=2, method="sf-top2loss").fit(tiny_graph(), epochs=3, patience=None,
                                                                            quiet=True)
    assert [row["epoch"] for row in report.history] == [1, 2, 3]
    assert all("layer" not in row and "loss" in row for row in report.history)


def test_a_top_down_fit_stores_the_prototypes_of_its_last_evaluated_step():
    from fwdlearn.graphs.methods.topdown import topdown_scores

    torch.manual_seed(0)
    data = tiny_graph()
    model = ForwardGNN(5, 3, hidden=4, layers=2, method="sf-top2input")
    model.fit(data, epochs=2, patience=None, quiet=True)
    method = model.method
    xa, ea, ctx = method._training_graph(data.x, data.edge_index, data.y, data.train_mask)
    with torch.no_grad():
        _, protos = topdown_scores(model.blocks, method, xa, ea, ctx, 4, 30, None, method.tau, method.steps)
    torch.testing.assert_close(method.prototypes, protos)
    assert float(protos.abs().max()) > 0


# ---------------------------------------------------------------- DFA's prior-loss warning
def _ring(features, y, n=30):
    idx = torch.arange(n)
    edge_index = torch.cat([torch.stack([idx, (idx + 1) % n]), torch.stack([(idx + 1) % n, idx])], dim=1)
    return Data(x=features, edge_index=edge_index, y=y, train_mask=idx % 5 < 3, val_mask=idx % 5 == 3,
                test_mask=idx % 5 == 4, num_classes=3)


def _dfa_fit_warnings(data, epochs):
    import warnings

    from fwdlearn.fit import seed_everything

    seed_everything(0)
    model = ForwardGNN(4, 3, hidden=8, layers=2, method="dfa")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(data, epochs=epochs, lr=0.01, patience=None, quiet=True)
    return [str(w.message) for w in caught if "class frequencies" in str(w.message)]


def test_a_dfa_fit_of_20_epochs_is_checked_and_one_of_19_is_not():
    """PRIOR_CHECK_EPOCHS (20): shorter fits, not ended by early stopping, are smoke tests and are not checked."""
    blind = _ring(torch.ones(30, 4), torch.arange(30) * 3 // 30)  # nodes all alike: nothing to learn
    (said,) = _dfa_fit_warnings(blind, 20)
    assert said.startswith("dfa gcn-2: in 20 epochs the training loss never fell 5% below 1.099")
    assert "early stopping" not in said
    assert _dfa_fit_warnings(blind, 19) == []


def test_a_dfa_fit_on_training_labels_of_one_class_does_not_warn():
    """One class: the prior's loss is 0 and there is nothing to learn beyond it."""
    one_class = _ring(torch.ones(30, 4), torch.zeros(30, dtype=torch.long))
    assert _dfa_fit_warnings(one_class, 25) == []


def test_prior_loss_counts_a_class_of_one_label():
    from fwdlearn.graphs.methods.dfa import prior_loss

    p = torch.tensor([2 / 3, 1 / 3], dtype=torch.float64)
    assert prior_loss(torch.tensor([0, 2, 0])) == pytest.approx(float(-(p * p.log()).sum()), rel=1e-12)


def test_dfa_spreads_the_error_over_each_new_graph_of_the_same_size():
    """The cached adjacency is rebuilt for another edge tensor even when the node count, dtype and version match."""
    from fwdlearn.fit import seed_everything

    a, b = tiny_graph(seed=0), tiny_graph(seed=0)
    b.edge_index = to_undirected(torch.randint(0, 30, (2, 60), generator=torch.Generator().manual_seed(7)))
    assert a.edge_index._version == b.edge_index._version
    seed_everything(0)
    model = ForwardGNN(5, 3, hidden=8, layers=3, method="dfa")

    def first_block_gradient(data):
        model.zero_grad()
        (loss,) = model.layer_losses(data)
        loss.backward()
        return model.blocks[0].conv.lin.weight.grad.clone()

    first_block_gradient(a)
    after_a = first_block_gradient(b)
    model.method._adjacency = None
    torch.testing.assert_close(after_a, first_block_gradient(b), rtol=0, atol=0)


def test_dfa_draws_its_feedback_from_a_seed_of_its_own_and_refuses_a_text_switch():
    """B is drawn from ``FEEDBACK_SEED_OFFSET + seed``, not ``seed``: ``DirectFeedback(seed=s)`` draws what
    ``torch.manual_seed(s)`` draws, so with the model's own seed B would be a function of the weights drawn after
    ``seed_everything(seed)``. ``spread_error`` is a switch: the text "no" is refused by the method itself too, not
    taken as true."""
    from fwdlearn.errors import UsageError
    from fwdlearn.feedback import FEEDBACK_SEED_OFFSET, DirectFeedback
    from fwdlearn.graphs.methods.dfa import DirectFeedbackGNN

    model = ForwardGNN(5, 3, hidden=8, layers=2, method="dfa", seed=7)
    points = {f"block{l}": 8 for l in range(2)}
    own = DirectFeedback(3, points, kind="uniform", seed=FEEDBACK_SEED_OFFSET + 7)
    shared = DirectFeedback(3, points, kind="uniform", seed=7)
    for name in points:
        assert torch.equal(model.method.feedback.matrix(name), own.matrix(name))
        assert not torch.equal(model.method.feedback.matrix(name), shared.matrix(name))
    with pytest.raises(UsageError, match=r"^spread_error must be True or False, got 'no'$"):
        DirectFeedbackGNN(5, 3, 8, 2, "gcn", spread_error="no")  # (the method itself, as a custom model builds it)
