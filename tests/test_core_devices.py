"""What a GPU run needs that a CPU run does not show, checked on the CPU: draws from a seeded CPU generator made
where the tensor is made (CUDA refuses a CPU generator for a CUDA tensor), and inputs that follow the model's device.
The meta device stands in for the GPU: it is another device than the CPU's, and a tensor there is made without
values."""

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from fwdlearn.feedback import DirectFeedback, feedback_matrix, make_feedback


class _GeneratorOnItsDevice(TorchFunctionMode):
    """CUDA's rule, on any device: a draw from a generator is made on the generator's device ("Expected a 'cuda'
    device type for generator but found 'cpu'"); the meta device itself lets any generator through."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        generator, device = kwargs.get("generator"), kwargs.get("device")
        if generator is not None and device is not None and torch.device(device).type != generator.device.type:
            raise RuntimeError(f"{getattr(func, '__name__', func)}: a {generator.device.type} generator draws onto "
                               f"{torch.device(device).type}")
        return func(*args, **kwargs)


def _built_on_meta(make):
    """``make()`` as ``with torch.device("meta"):`` builds it (as ``with torch.device("cuda"):`` builds a model on the
    GPU), under CUDA's generator rule."""
    with _GeneratorOnItsDevice(), torch.device("meta"):
        return make()


@pytest.mark.parametrize("name", ["dfa transformer", "dfa:orthogonal transformer", "dsf:gaussian rnn",
                                  "dsf:orthogonal rnn", "sf gnn", "ff-vn gnn", "sf-top2input gnn", "dfa gnn"])
def test_models_build_inside_a_device_block(name):
    """``with torch.device("cuda"): model = ...`` (a model built on the GPU, not moved there) failed for every model
    with seeded random buffers -- DFA's feedback matrices, DSF's Gaussian and orthogonal feedback, the virtual nodes'
    features -- as their CPU generator drew onto the GPU. They are drawn on the CPU, the same numbers as a CPU build,
    and placed on the block's device with the rest of the model."""
    from fwdlearn.graphs import ForwardGNN
    from fwdlearn.sequences import RecurrentLM, TransformerLM

    rule, kind = name.split()
    make = {"transformer": lambda: TransformerLM(11, hidden=8, layers=2, heads=2, training=rule, context=16),
            "rnn": lambda: RecurrentLM(11, hidden=8, layers=2, training=rule),
            "gnn": lambda: ForwardGNN(5, 3, hidden=8, layers=2, method=rule)}[kind]
    model = _built_on_meta(make)
    assert {t.device.type for t in [*model.parameters(), *model.buffers()]} == {"meta"}
    on_cpu = make()
    seeded = [n for n, _ in on_cpu.named_buffers() if n.split(".")[-1].startswith(("B_", "feedback_", "virtual_x"))]
    assert seeded  # (the buffers drawn from a seed: on the CPU, the numbers every device gets)
    assert all(dict(model.named_buffers())[n].shape == dict(on_cpu.named_buffers())[n].shape for n in seeded)


def test_feedback_is_drawn_on_the_generators_device_and_placed_on_the_default_one():
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    for kind in ("uniform", "gaussian", "orthogonal"):
        here = feedback_matrix(4, 6, kind, gen())
        with _GeneratorOnItsDevice(), torch.device("meta"):
            there = feedback_matrix(4, 6, kind, gen())
        assert there.device.type == "meta" and there.shape == here.shape
    with _GeneratorOnItsDevice(), torch.device("meta"):
        assert make_feedback("gaussian", 5, gen()).device.type == "meta"
        assert make_feedback("diagonal", 5).device.type == "meta"
        assert DirectFeedback(3, {"a": 4, "b": 2}, seed=1).matrix("b").device.type == "meta"
    # the numbers are the CPU generator's wherever the model is built
    torch.testing.assert_close(feedback_matrix(4, 6, "uniform", gen()),
                               (torch.rand(4, 6, generator=gen()) * 2 - 1) / 6 ** 0.5)


class _Reached(Exception):
    """Raised by the models below when called: the devices of what reached them are what is checked."""


class _OnMeta(nn.Module):
    """A model whose weights live on another device than the inputs given (the meta device standing in for a GPU):
    it records where its inputs arrive, then stops the measurement (a meta model computes no values)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(4, 3, device="meta"))
        self.seen: list[str] = []

    def forward(self, x, edge_index):  # a graph model
        self.seen += [x.device.type, edge_index.device.type]
        raise _Reached

    def embed(self, tokens):  # a sequence model
        self.seen.append(tokens.device.type)
        raise _Reached

    def forward_from_embeddings(self, x):
        raise AssertionError("embed stops first")


def _meta_as_a_gpu(monkeypatch) -> None:
    """Lift the refusal of a model on the meta device (``check_model_values``: it has no values to compute with) where
    a test's meta model stands in for a GPU one, to see where its inputs go."""
    import fwdlearn.diagnostics.influence
    import fwdlearn.graphs.nn.linkpred

    for module in (fwdlearn.diagnostics.influence, fwdlearn.graphs.nn.linkpred):
        monkeypatch.setattr(module, "check_model_values", lambda *args, **kwargs: None)


def test_influence_inputs_follow_the_models_device(monkeypatch):
    """A GPU model measured on a CPU graph or on CPU tokens (a corpus split: evaluate and generate take them so)
    failed in its first layer, "Expected all tensors to be on the same device": hop_influence and lag_influence move
    an nn.Module's inputs to its device, as ForwardGNN.scores does."""
    from torch_geometric.data import Data

    _meta_as_a_gpu(monkeypatch)
    from fwdlearn.graphs import hop_influence
    from fwdlearn.sequences import lag_influence

    edges = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    graph = Data(x=torch.randn(3, 3), edge_index=edges)
    model = _OnMeta()
    with pytest.raises(_Reached):
        hop_influence(model, graph, 1)
    assert model.seen == ["meta", "meta"]
    model = _OnMeta()
    with pytest.raises(_Reached):
        lag_influence(model, torch.zeros(1, 5, dtype=torch.long), 2)
    assert model.seen == ["meta"]


@pytest.mark.parametrize("what", ["feedback_alignment", "state_alignment"])
def test_alignment_windows_follow_the_models_device(what, monkeypatch):
    """A GPU model's alignment read on a CPU window (a corpus split) failed in its embedding; feedback_alignment moved
    the targets to the model's device but not the tokens (and forked the generator of the tokens' device, not of the
    one that draws the dropout masks)."""
    from fwdlearn.sequences import RecurrentLM, TransformerLM
    from fwdlearn.sequences.alignment import state_alignment

    seen = []

    def embed(tokens):
        seen.append(tokens.device.type)
        raise _Reached

    if what == "feedback_alignment":
        model = TransformerLM(11, hidden=8, layers=1, heads=2, training="dfa", context=16).to("meta")
        read = lambda x, y: model.feedback_alignment(x, y)  # noqa: E731
    else:
        model = RecurrentLM(11, hidden=8, layers=1, training="dsf").to("meta")
        read = lambda x, y: state_alignment(model, x, y)  # noqa: E731
    monkeypatch.setattr(model, "embed", embed)
    window = torch.zeros(1, 5, dtype=torch.long)
    with pytest.raises(_Reached):
        read(window, window)
    assert seen == ["meta"]


def test_link_auc_reads_the_graph_on_the_models_device(monkeypatch):
    """ForwardLinkPredictor.auc, the link model's evaluate, failed for a GPU model given a CPU graph (ForwardGNN's
    evaluate moves its graph): the features, edges and scored pairs go to the model's device."""
    from torch_geometric.data import Data

    from fwdlearn.graphs import ForwardLinkPredictor

    _meta_as_a_gpu(monkeypatch)
    model = ForwardLinkPredictor(3, hidden=4, layers=1).to("meta")
    seen = []

    def forward(x, edge_index, pairs):
        seen.extend(t.device.type for t in (x, edge_index, pairs))
        raise _Reached

    monkeypatch.setattr(model, "forward", forward)
    split = Data(pos_edge_label_index=torch.tensor([[0], [1]]), neg_edge_label_index=torch.tensor([[0], [2]]))
    with pytest.raises(_Reached):
        model.auc(torch.randn(3, 3), torch.tensor([[0, 1], [1, 0]]), split)
    assert seen == ["meta"] * 3


def test_influence_seeds_are_drawn_and_kept_on_the_cpu():
    """Under a default device (``torch.set_default_device("cuda")``, or a ``with torch.device("cuda"):`` block around
    the model and the measurement) hop_influence's seed nodes and lag_influence's positions were made on it, though
    documented on the CPU, and their seeded draws -- and the random input of the separability check -- put a CPU
    generator's numbers there, which CUDA refuses ("Expected a 'cuda' generator device but found 'cpu'")."""
    from fwdlearn.graphs.influence.hop_influence import select_seeds
    from fwdlearn.sequences.influence import _check_sequences_apart, _select_positions

    def reached(x):
        raise _Reached

    drawn = select_seeds(10, 3, seed=1), _select_positions(8, 3, 1)
    window = torch.zeros(1, 5, 3)  # (a CPU model's embeddings: measured inside the block all the same)
    with _GeneratorOnItsDevice(), torch.device("meta"):
        seeds = [select_seeds(10), select_seeds(10, 3, seed=1)]
        positions = [_select_positions(8, None, 0), _select_positions(8, 3, 1)]
        with pytest.raises(_Reached):  # (its random sequence is drawn before the model is called)
            _check_sequences_apart(reached, window)
    assert [t.device.type for t in [*seeds, *positions]] == ["cpu"] * 4
    assert torch.equal(seeds[1], drawn[0]) and torch.equal(positions[1], drawn[1])  # (the same draws as on the CPU)


def test_seeded_splits_batches_and_samples_draw_on_their_generators_device(monkeypatch):
    """Under a default device (``torch.set_default_device("cuda")``) a random node split, Karate's split, the link
    split's replacement negatives, random text windows and the synthetic tasks' samples drew from a CPU generator
    onto it, which CUDA refuses ("Expected a 'cuda' device type for generator but found 'cpu'"). They draw on the
    CPU, the numbers a CPU run draws; windows stay on their ids' device, samples on their generator's."""
    import torch_geometric.datasets

    from fwdlearn.graphs.data.datasets import load_graph, random_split
    from fwdlearn.graphs.nn.linkpred import link_split
    from fwdlearn.sequences import make_task, random_windows

    club = torch_geometric.datasets.KarateClub()  # (built on the CPU: PyG reads its labels' values as it builds)
    monkeypatch.setattr(torch_geometric.datasets, "KarateClub", lambda: club)
    graph = load_graph("karate")
    gen = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    ids = torch.arange(50)
    tasks = [make_task(name, lag=10) for name in ("delayed-recall", "copy", "adding")]
    on_cpu = [random_windows(ids, 3, 5, gen()), *(task.sample(4, gen()) for task in tasks)]
    split = load_graph("karate", seed=3)
    with _GeneratorOnItsDevice(), torch.device("meta"):
        masks = random_split(20, 1)
        karate = load_graph("karate", seed=3)
        link_split(graph, seed=0)  # (a seed whose negatives repeat: a replacement is drawn)
        there = [random_windows(ids, 3, 5, gen()), *(task.sample(4, gen()) for task in tasks)]
    assert [m.shape for m in masks] == [torch.Size([20])] * 3
    assert all(torch.equal(karate[key], split[key]) for key in ("train_mask", "val_mask", "test_mask"))
    for drawn, expected in zip(there, on_cpu):
        assert [t.device.type for t in drawn] == ["cpu", "cpu"]
        torch.testing.assert_close(drawn, expected, equal_nan=True)


def test_a_model_on_the_meta_device_is_refused_by_name():
    """A model built in a ``torch.device("meta")`` block (no values) given CPU inputs: its inputs were moved to its
    device and refused as the caller's own ("tokens is on the meta device (shape [2, 4]) ... make it on the CPU", "x is
    on the meta device ... build or load the graph on the CPU", of tensors made on the CPU), or torch's "META device
    type not an accelerator" (generate), "Cannot copy out of meta tensor" (ForwardGNN.fit) and "register_meta for
    torch.nonzero() raises unimplemented" (evaluate) named nothing. The model's own tensor is named, with the fix."""
    from torch_geometric.data import Data

    from fwdlearn.graphs import ForwardGNN, ForwardLinkPredictor, hop_influence
    from fwdlearn.graphs.data.datasets import random_split
    from fwdlearn.sequences import DelayedRecall, RecurrentLM, lag_influence

    task = DelayedRecall(lag=2)
    with torch.device("meta"):
        lm = RecurrentLM(task.vocab_size, cell="gru", hidden=8, layers=1)
        gnn = ForwardGNN(5, 3, hidden=8, layers=2, method="bp")
        link = ForwardLinkPredictor(5, hidden=8, layers=1)
    tokens = torch.randint(0, task.vocab_size, (2, 4))
    edges = torch.randint(0, 30, (2, 60))
    train, val, test = random_split(30, seed=0)
    graph = Data(x=torch.randn(30, 5), edge_index=torch.cat([edges, edges.flip(0)], 1), y=torch.randint(0, 3, (30,)),
                 train_mask=train, val_mask=val, test_mask=test)
    calls = {"lag_influence": lambda: lag_influence(lm, tokens, 2),
             "evaluate": lambda: lm.evaluate(torch.randint(0, task.vocab_size, (100,)), context=8, batch_size=2),
             "evaluate task": lambda: lm.evaluate(task, batches=1, batch_size=2),
             "generate": lambda: lm.generate(tokens[0], 3),
             "fit task": lambda: lm.fit(task, steps=1, batch_size=2, quiet=True),
             "hop_influence": lambda: hop_influence(gnn, graph, 1),
             "ForwardGNN.fit": lambda: gnn.fit(graph, epochs=1, quiet=True),
             "ForwardGNN.evaluate": lambda: gnn.evaluate(graph),
             "ForwardLinkPredictor.fit": lambda: link.fit(graph, epochs=1, quiet=True),
             "ForwardLinkPredictor.auc": lambda: link.auc(graph.x, graph.edge_index, Data(
                 pos_edge_label_index=torch.tensor([[0], [1]]), neg_edge_label_index=torch.tensor([[0], [2]])))}
    for name, call in calls.items():
        with pytest.raises(ValueError, match=r"^(the model|this \w+)'s [\w.]+ is on the meta device \(shape \[[\d, ]+\]\): "
                                             r"a shape without values.*build the model outside the "
                                             r"torch.device\('meta'\) block") as refused:
            call()
        assert "tokens" not in str(refused.value) and "data.x" not in str(refused.value), name
