"""The public surface as a user meets it: registries print their names and an unknown name is answered with the
closest one; the objects users print (tasks, batchers, cells, fit results) say what they are, not ``<... object at
0x...>``; the names an error message tells a user to type exist; every public method of the exported classes has a
docstring."""

import inspect
import re

import pytest
import torch

import fwdlearn.graphs as graphs
import fwdlearn.sequences as sequences
from fwdlearn.diagnostics.cost import CostReport
from fwdlearn.graphs.methods import method_class
from fwdlearn.graphs.methods.bp import NodeFit
from fwdlearn.graphs.registries import CONV_KINDS, LINK_METHODS, link_method
from fwdlearn.optim import OptimizerSettings
from fwdlearn.registry import Registry, did_you_mean
from fwdlearn.rules import DFA, parse_rule
from fwdlearn.sequences import AddingProblem, CopyTask, Corpus, DelayedRecall, StreamBatcher, Vocabulary, make_task
from fwdlearn.sequences.nn.language_model import make_language_model
from fwdlearn.sequences.registries import LM_KINDS, RECURRENT_CELLS

ADDRESS = re.compile(r"object at 0x[0-9a-f]+")


def test_registries_print_and_count_their_names():
    """``print(CONV_KINDS)`` was ``<fwdlearn.registry.Registry object at 0x7f...>`` and ``len()`` a TypeError."""
    assert repr(CONV_KINDS) == "Registry('conv': gcn, sage, gat, mlp)"
    assert repr(RECURRENT_CELLS) == "Registry('cell': tanh, gru, lstm, linear)"
    assert (len(CONV_KINDS), len(LINK_METHODS), len(LM_KINDS)) == (4, 3, 3)
    assert len(Registry("toy")) == 0 and repr(Registry("toy")) == "Registry('toy': )"
    assert RECURRENT_CELLS.names() == list(RECURRENT_CELLS) and inspect.getdoc(Registry.names)


@pytest.mark.parametrize("call, expected", [
    (lambda: CONV_KINDS.get("gcnn"), "unknown conv 'gcnn'; choose one of gcn, sage, gat, mlp (did you mean 'gcn'?)"),
    # (the cells' registry is case-sensitive: 'GRU' was refused naming no fix)
    (lambda: RECURRENT_CELLS.get("GRU"), "unknown cell 'GRU'; choose one of tanh, gru, lstm, linear (did you mean "
                                         "'gru'?)"),
    (lambda: link_method("cee"), "(did you mean 'ce'?)"),
    (lambda: method_class("ff_la"), "(did you mean 'ff-la'?)"),
    (lambda: parse_rule("dfaa:micro"), "unknown rule 'dfaa:micro' in 'dfaa:micro' (did you mean 'dfa'?). Valid: "),
    (lambda: parse_rule("bpt"), "(did you mean 'bptt'?)"),
    (lambda: DFA(feedback="gausian"), "(did you mean 'gaussian'?)"),
    (lambda: OptimizerSettings(optimizer="adam_w"), "(did you mean 'adamw'?)"),
    (lambda: make_task("delayed_recall"), "(did you mean 'delayed-recall'?)"),
    (lambda: make_language_model("Transformer", vocab_size=4), "(did you mean 'transformer'?)"),
    (lambda: graphs.load_graph("corra"), "(did you mean 'cora'?)"),
])
def test_an_unknown_name_is_answered_with_the_closest(call, expected):
    with pytest.raises(ValueError) as error:
        call()
    assert expected in str(error.value)


def test_a_name_near_none_gets_no_suggestion():
    assert did_you_mean("xyz", RECURRENT_CELLS) == "" and did_you_mean(None, ["gcn"]) == ""
    assert did_you_mean(" Sage ", CONV_KINDS) == " (did you mean 'sage'?)"
    with pytest.raises(ValueError) as error:
        RECURRENT_CELLS.get("toy-leaky")
    assert str(error.value) == "unknown cell 'toy-leaky'; choose one of tanh, gru, lstm, linear"


def test_the_objects_users_print_say_what_they_are():
    assert repr(DelayedRecall(5)) == "DelayedRecall(lag=5, symbols=8, length=21, chance=0.125)"
    assert repr(CopyTask(10, count=4)) == "CopyTask(lag=10, count=4, symbols=8, chance=0.125)"
    assert repr(AddingProblem(20)) == "AddingProblem(length=20, levels=10, chance=0.165)"
    assert repr(StreamBatcher(torch.arange(1001), 4, 16)) == \
        "StreamBatcher(batch_size=4, context=16, stream_length=250, position=0, epoch=0)"
    assert repr(RECURRENT_CELLS.get("gru")) == "GRU()"
    for obj in (*map(RECURRENT_CELLS.get, RECURRENT_CELLS), make_task("adding", 8), CONV_KINDS, RECURRENT_CELLS):
        assert not ADDRESS.search(repr(obj)), repr(obj)


def test_train_node_classifier_result_prints_its_history_as_a_length():
    """``NodeFit`` (what ``train_node_classifier`` returns) printed every epoch's row, where ForwardGNN's and the
    link predictor's reports give ``history=<N rows>``; and it named ``epochs_run`` ``steps_run`` alone."""
    rows = [{"epoch": i + 1, "loss": 1.0 / (i + 1), "val_accuracy": 0.5} for i in range(500)]
    fit = NodeFit(val_accuracy=0.5, test_accuracy=0.4, train_accuracy=0.9, fit_seconds=1.5, steps_run=500,
                  cost=CostReport(1, 2, 3), history=rows)
    text = repr(fit)
    assert "history=<500 rows>" in text and "'loss'" not in text and len(text) < 300
    assert text.startswith("NodeFit(val_accuracy=0.5, test_accuracy=0.4, train_accuracy=0.9, fit_seconds=1.5, "
                           "steps_run=500, cost=CostReport(")
    assert fit.epochs_run == fit.steps_run == 500 and fit.history is rows


def test_evaluate_given_a_corpus_names_splits_it_has():
    """The hint named ``corpus.test``, which was no attribute (and Tiny Shakespeare has no test split)."""
    vocab = Vocabulary(list("ab"))
    corpus = Corpus("toy", {"train": torch.tensor([0, 1] * 20), "validation": torch.tensor([1, 0] * 20)}, vocab)
    model = sequences.RecurrentLM(2, hidden=4, layers=1)
    with pytest.raises(TypeError, match=r"got Corpus: pass one of its splits \(corpus\.train, corpus\.validation\)$"):
        model.evaluate(corpus)
    other = Corpus("toy", {"train": corpus.train, "dev": corpus.validation}, vocab)
    with pytest.raises(TypeError, match=r"\(corpus\.train, corpus\.split\('dev'\)\)$"):
        model.evaluate(other)
    with_test = Corpus("toy", {**corpus.splits, "test": corpus.train[:10]}, vocab)
    assert with_test.test is with_test.splits["test"]
    with pytest.raises(Exception, match=r"corpus 'toy' has no 'test' split; available: train, validation"):
        corpus.test


def _undocumented() -> list[str]:
    missing = []
    for package in (graphs, sequences):
        for name in package.__all__:
            obj = getattr(package, name)
            if not inspect.getdoc(obj):
                missing.append(f"{package.__name__}.{name}")
            if not inspect.isclass(obj):
                continue
            for attribute in dir(obj):
                if attribute.startswith("_") or (issubclass(obj, torch.nn.Module) and hasattr(torch.nn.Module,
                                                                                              attribute)):
                    continue
                raw = inspect.getattr_static(obj, attribute)
                if isinstance(raw, property):
                    doc = raw.fget.__doc__
                elif callable(raw) or isinstance(raw, (classmethod, staticmethod)):
                    doc = inspect.getdoc(getattr(obj, attribute))
                else:
                    continue
                if not doc:
                    missing.append(f"{package.__name__}.{name}.{attribute}")
    return missing


def test_every_public_method_and_property_has_a_docstring():
    """``help(report)`` showed ``peak_memory_bytes``, ``as_dict``, ``Corpus.train``, ``LanguageModel.device`` and 25
    more with nothing beside them."""
    assert _undocumented() == []
