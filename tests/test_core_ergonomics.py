"""The Python API as a PyG / Hugging Face user meets it: reports and models print what matters in a few lines, the
report names agree across the graph and sequence sides, what the fits return is exported beside them, and a PyG
dataset, a text corpus or a language model handed to a graph call is refused naming the fix."""

import pytest
from torch_geometric.data import InMemoryDataset

from fwdlearn.diagnostics.cost import CostReport
from fwdlearn.feedback import DirectFeedback
from fwdlearn.fit import FitResult
from fwdlearn.graphs import ForwardGNN, ForwardLinkPredictor, hop_influence, load_graph
from fwdlearn.graphs import FitReport as GraphFitReport
from fwdlearn.sequences import RecurrentLM, TransformerLM
from fwdlearn.sequences.training import FitReport

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROWS = [{"step": i, "loss": 1.0 / i, "val_accuracy": 0.5} for i in range(1, 1001)]


def test_fit_reports_print_their_history_as_its_length():
    # (the dataclass repr printed every row on one line: 100,000 characters for a 1000-step fit, the figures lost)
    result = FitResult(history=ROWS, best=ROWS[-1], best_step=1000, steps_run=1000, seconds=12.5)
    graph = GraphFitReport("local:prototype", "gcn", 4, 0.81, 0.8, 0.99, 3.0, CostReport(10, 20, 30), 1000,
                           history=ROWS)
    for report in (result, graph, FitReport(result, 1000, dict(ROWS[-1]), 12.5)):
        shown = repr(report)
        assert "history=<1000 rows>" in shown and len(shown) < 1000, shown
        assert str(report) == shown and len(report.history) == 1000  # (the rows are still there)
    assert "test_accuracy=0.81" in repr(graph) and "saved_bytes_per_step=10" in repr(graph)
    assert "best_step=1000" in repr(result) and "seconds=12.5" in repr(result)


def test_every_fit_report_answers_to_fit_seconds():
    # (the graph reports' fit_seconds was the sequence report's seconds: report.fit_seconds raised AttributeError)
    report = FitReport(FitResult(seconds=4.0), 10, {}, 4.0)
    assert report.fit_seconds == report.seconds == 4.0


def test_models_print_the_rule_they_train_by():
    # (print(model) of a RecurrentLM showed "(depth): Wiring()" whatever its time rule; DirectFeedback() nothing)
    recurrent = repr(RecurrentLM(10, hidden=8, layers=1, training="dfa+dsf:gaussian"))
    assert "rule=dfa+dsf:gaussian" in recurrent and "cell='gru'" in recurrent and "feedback='gaussian'" in recurrent
    transformer = repr(TransformerLM(10, hidden=8, layers=2, heads=2, context=16, training="dfa:micro:orthogonal"))
    assert "rule=dfa:micro:orthogonal" in transformer and "context=16" in transformer
    assert "kind=orthogonal" in transformer and "block1.mlp: 32" in transformer
    assert "rule=local:ff, conv=sage, layers=1, hidden=8" in repr(ForwardLinkPredictor(5, "sage", 8, 1, "ff"))
    assert repr(DirectFeedback(3, {"a": 4, "b": 2}, kind="gaussian")) == \
        "DirectFeedback(error_dim=3, kind=gaussian, points={a: 4, b: 2})"
    many = repr(DirectFeedback(3, {f"p{i}": 4 for i in range(20)}))
    assert "p7: 4, ... 20 in all" in many and "p8" not in many


def test_what_the_fits_return_is_exported_beside_the_models():
    import fwdlearn.graphs
    import fwdlearn.sequences
    from fwdlearn.graphs.nn.linkpred import LinkReport

    assert "LinkReport" in fwdlearn.graphs.__all__ and fwdlearn.graphs.LinkReport is LinkReport
    assert "FitReport" in fwdlearn.sequences.__all__ and fwdlearn.sequences.FitReport is FitReport


class OneGraph(InMemoryDataset):
    def __init__(self, graph):
        super().__init__(None)
        self.data, self.slices = self.collate([graph])


def test_a_pyg_dataset_is_refused_naming_its_graph(tiny_corpus):
    # (Planetoid(root, "Cora") for Planetoid(root, "Cora")[0]: "'Planetoid' object has no attribute 'num_nodes'")
    graph = load_graph("karate", split="random", seed=0)
    dataset = OneGraph(graph)
    model = ForwardGNN(graph.num_features, graph.num_classes, hidden=8, layers=1)
    with pytest.raises(TypeError, match=r"got the OneGraph dataset of 1 graph\(s\): pass its graph, dataset\[0\]"):
        model.fit(dataset, epochs=1, quiet=True)
    with pytest.raises(TypeError, match=r"dataset\[0\]"):
        model.evaluate(dataset)
    with pytest.raises(TypeError, match=r"dataset\[0\]"):
        model.predict(dataset)
    with pytest.raises(TypeError, match=r"dataset\[0\]"):
        ForwardLinkPredictor(graph.num_features, hidden=8, layers=1).fit(dataset, epochs=1, quiet=True)
    # (a text corpus was told "the graph has none [node features]: give it some")
    with pytest.raises(TypeError, match="got Corpus: a text corpus trains a language model"):
        model.fit(tiny_corpus, epochs=1, quiet=True)
    assert 0 <= model.fit(dataset[0], epochs=1, quiet=True).test_accuracy <= 1


def test_hop_influence_refuses_a_language_model_naming_lag_influence():
    # (it was called on the graph and refused data.x as "tokens must be integer ids")
    graph = load_graph("karate")
    with pytest.raises(TypeError, match="RecurrentLM is a sequence model: measure it per lag with "
                                        r"fwdlearn.sequences.lag_influence"):
        hop_influence(RecurrentLM(10, hidden=8, layers=1), graph, max_hops=2)
