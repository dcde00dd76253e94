"""Extending fwdlearn from a user's own module, as the docs say: a model kind, a cell, a conv and a time rule registered
outside the package train, save, load back, and are refused with the fix when they are registered wrongly or not at
all in the process that reads their files."""

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import nn

from fwdlearn.cli import main
from fwdlearn.errors import InputError
from fwdlearn.rules import TimeRule
from fwdlearn.sequences.nn.language_model import LanguageModel, load_language_model
from fwdlearn.sequences.registries import LM_KINDS, RECURRENT_CELLS


@dataclass
class BigramConfig:
    vocab_size: int
    hidden: int = 8
    training: str = "bp"
    kind: str = "toy-bigram"


class Bigram(LanguageModel):
    """A model kind written as language_model's module doc says: a LanguageModel, a config dataclass with a kind."""

    def __init__(self, vocab_size, hidden=8, training="bp"):
        super().__init__()
        from fwdlearn.rules import parse_rule

        self.rule = parse_rule(training)
        self.config = BigramConfig(vocab_size, hidden, str(self.rule))
        self.emb, self.head = nn.Embedding(vocab_size, hidden), nn.Linear(hidden, vocab_size)

    def embed(self, tokens):
        return self.emb(self.check_tokens(tokens))

    def forward_from_embeddings(self, emb, state=None):
        return self.head(emb)

    def forward(self, tokens, state=None):
        return self.forward_from_embeddings(self.embed(tokens)), None


@pytest.fixture
def bigram():
    LM_KINDS.register("toy-bigram", Bigram)
    yield "toy-bigram"
    LM_KINDS.unregister("toy-bigram")


def test_a_model_kind_registered_as_documented_loads_back(bigram, tmp_path):
    """Its file could not be read: "cannot read ... (AttributeError: type object 'Bigram' has no attribute
    'from_config'); it may have been cut short" -- LanguageModel had no from_config, which the loader calls."""
    torch.manual_seed(0)
    model = Bigram(5, hidden=4)
    model.save(tmp_path / "b.pt")
    loaded, _ = load_language_model(tmp_path / "b.pt")
    assert isinstance(loaded, Bigram) and loaded.config == model.config
    tokens = torch.tensor([[0, 1, 2, 3, 4]])
    assert torch.equal(loaded(tokens)[0], model.eval()(tokens)[0])
    bundle = torch.load(tmp_path / "b.pt", weights_only=True)
    torch.save({**bundle, "config": {**bundle["config"], "heads": 2}}, tmp_path / "newer.pt")
    with pytest.raises(InputError, match=r"newer\.pt: its config holds heads=2, which Bigram does not take \(its "
                                         r"settings: hidden, training, vocab_size\)"):
        load_language_model(tmp_path / "newer.pt")


def test_influence_seq_measures_a_registered_kind_without_layers(bigram, tmp_path, capsys, one_torch_thread):
    """--models offered the kind but gave it --layers' default, and it was refused: "model 'toy-bigram' does not take
    layers"; a --layers it does not take is refused before any model is measured."""
    out = ["--quiet", "--json", str(tmp_path / "i.json")]
    assert main(["influence", "seq", "--models", "toy-bigram", "--length", "8", "--max-lag", "4", *out]) == 0
    assert "| toy-bigram |" in capsys.readouterr().out
    assert main(["influence", "seq", "--models", "gru", "toy-bigram", "--layers", "2", "--length", "8",
                 "--json", str(tmp_path / "j.json")]) == 2
    captured = capsys.readouterr()
    assert "fwdlearn: error: --layers 2: --models toy-bigram does not take it" in captured.err
    assert "| gru |" not in captured.out


def _leaky_cell():
    from fwdlearn.sequences.nn.cells import RecurrentCell
    from fwdlearn.sequences.nn.time_rules import unrolled_states

    class LeakyCell(RecurrentCell):
        name = "toy-leaky"

        def build(self, layer, input_size, hidden):
            layer.input = nn.Linear(input_size, hidden)

        def states(self, layer, u, s0):
            return unrolled_states(layer, u, s0, retain=False)[0]

        def step(self, layer, u, s):
            return 0.5 * s + torch.tanh(layer.input(u))

    return LeakyCell


def test_a_file_whose_cell_is_not_registered_names_the_import_that_reads_it(tmp_path):
    """The refusal said the file "was written by a kind (registered in other code) or a fwdlearn version this one
    cannot build", not what to do: import the module that registers it (the fwdlearn command: from a script)."""
    from fwdlearn.sequences import RecurrentLM

    RECURRENT_CELLS.register("toy-leaky", _leaky_cell()())
    try:
        RecurrentLM(6, cell="toy-leaky", hidden=4, layers=1).save(tmp_path / "m.pt")
    finally:
        RECURRENT_CELLS.unregister("toy-leaky")
    with pytest.raises(InputError, match=r"m\.pt: unknown cell 'toy-leaky'; choose one of tanh, gru, lstm, linear; "
                                         r"it was written by .*: if it names a cell, .* your own code registers, "
                                         r"import the module that registers it before loading the file \(for the "
                                         r"fwdlearn command: run it from a script that imports that module and then "
                                         r"calls fwdlearn\.cli\.main"):
        load_language_model(tmp_path / "m.pt")


def test_a_cell_or_conv_class_registered_by_the_decorator_is_refused_naming_the_instance():
    """``@RECURRENT_CELLS.register("x")`` on a cell class registered the class, which failed when a model was built:
    "build() missing 1 required positional argument: 'hidden'"."""
    from fwdlearn.graphs.nn.convs import CONV_KINDS, ConvKind

    with pytest.raises(TypeError, match=r"a cell is registered as an instance, not as its class: "
                                        r"RECURRENT_CELLS\.register\('toy-leaky', LeakyCell\(\)\)"):
        RECURRENT_CELLS.register("toy-leaky")(_leaky_cell())
    assert "toy-leaky" not in RECURRENT_CELLS

    class Dense(ConvKind):
        name = "toy-dense"

    with pytest.raises(TypeError, match=r"CONV_KINDS\.register\('toy-dense', Dense\(\)\)"):
        CONV_KINDS.register("toy-dense", Dense)
    assert "toy-dense" not in CONV_KINDS


def test_a_conv_kind_that_says_it_is_linear_without_its_methods_is_refused_when_registered():
    """``linear = True`` sends a layer-wise fit through the cached aggregation: a kind without ``from_aggregation``
    failed there with "a TOY-SUM block has no cached aggregation (its attention depends on the weights)", one without
    ``propagation`` with "no cached aggregation for conv 'toy-sum'; it applies to 'gcn', 'sage', 'toy-sum'"."""
    from fwdlearn.graphs.nn.backbones import GNNBlock
    from fwdlearn.graphs.nn.convs import CONV_KINDS, ConvKind

    class Sum(ConvKind):  # PyG's GraphConv: linear after a sum over in-neighbours
        name = "toy-sum"
        linear = True

        def make(self, in_dim, out_dim):
            from torch_geometric.nn import GraphConv

            return GraphConv(in_dim, out_dim)

        def weights(self, conv):
            return conv.lin_rel.weight, conv.lin_root.weight

    class WithAggregation(Sum):
        def from_aggregation(self, conv, aggregated, normalized):
            return conv.lin_rel(aggregated) + conv.lin_root(normalized)

    for kind, missing in ((Sum(), "from_aggregation, propagation"), (WithAggregation(), "propagation")):
        with pytest.raises(TypeError, match=rf"the conv 'toy-sum' says it is linear after a fixed aggregation "
                                            rf"\(linear = True\) but does not define {missing}, .* or leave "
                                            r"linear = False"):
            CONV_KINDS.register("toy-sum", kind)
        assert "toy-sum" not in CONV_KINDS

    class MessagePassing(Sum):
        linear = False

    CONV_KINDS.register("toy-sum", MessagePassing())  # (no claim, nothing to define)
    try:
        block = GNNBlock("toy-sum", 3, 2)
        assert not block.cacheable
        with pytest.raises(ValueError, match=r"a toy-sum block has no cached aggregation \(its conv is not linear "
                                             r"after a fixed aggregation of its input\)"):
            block.from_aggregation(torch.zeros(4, 3))
    finally:
        CONV_KINDS.unregister("toy-sum")


def test_a_cell_named_like_a_model_kind_or_a_kind_like_a_cell_is_refused():
    """A cell named 'conv' made --model conv (and make_language_model('conv')) a recurrent model in silence, the causal
    conv model no longer reachable; a kind named 'lstm' was never built by its name."""
    from fwdlearn.sequences.registries import MODEL_NAMES

    with pytest.raises(ValueError, match=r"the cell name 'conv' is already a language model kind's \(LM_KINDS: "
                                         r"recurrent, conv, transformer\).*; choose another name"):
        RECURRENT_CELLS.register("conv", _leaky_cell()())
    with pytest.raises(ValueError, match=r"the language model kind name 'lstm' is already a cell's \(RECURRENT_CELLS: "
                                         r"tanh, gru, lstm, linear\).*; choose another name"):
        LM_KINDS.register("lstm", Bigram)
    assert "conv" not in RECURRENT_CELLS and MODEL_NAMES["conv"] == ("conv", {}) and "lstm" not in LM_KINDS


@dataclass(frozen=True)
class NoRun(TimeRule):
    name: ClassVar[str] = "norun"


def test_a_time_rule_without_a_run_is_refused_when_the_model_is_built(monkeypatch):
    """A time rule registered in fwdlearn.rules alone built a model, which failed in its first training step naming
    no fix, and listed 'unrolled' (a diagnostic no spec can name) among the known rules."""
    from fwdlearn import rules
    from fwdlearn.sequences import RecurrentLM

    monkeypatch.setitem(rules.TIME_RULES, "norun", NoRun)
    with pytest.raises(ValueError, match=r"no recurrent implementation of time rule norun \(the time rules recurrent "
                                         r"layers run: bptt, tbptt, ft-bptt, dsf\); add its run function before "
                                         r"building the model: fwdlearn\.sequences\.nn\.time_rules\.RUNS\['norun'\] = "
                                         r"run"):
        RecurrentLM(6, hidden=4, layers=1, training="dfa+norun")


def test_a_graph_method_whose_rule_names_another_method_is_refused_when_registered():
    """A Backprop subclass registered as 'tempered' kept rule = 'bp': ForwardGNN saved it as 'bp' and ForwardGNN.load
    built the library's Backprop in silence, not the method trained."""
    from fwdlearn.graphs.methods import METHODS, method_class
    from fwdlearn.graphs.methods.bp import Backprop

    class Tempered(Backprop):
        pass

    with pytest.raises(ValueError, match=r"the graph method Tempered registered as 'tempered' has the rule 'bp', which "
                                         r"names the method Backprop: a model saves its method by its rule, so "
                                         r"ForwardGNN\.load would not build Tempered again; give the class rule = "
                                         r"'tempered'$"):
        METHODS.register("tempered", Tempered)
    assert "tempered" not in METHODS
    with pytest.raises(TypeError, match=r"a graph method is registered as its class, not an instance"):
        METHODS.register("tempered", object())

    class Renamed(Backprop):
        rule: ClassVar[str] = "tempered"

    METHODS.register("tempered", Renamed)
    try:
        assert method_class("tempered") is Renamed
        METHODS.register("bp", Backprop)  # (a class registered again under its own rule)
    finally:
        METHODS.unregister("tempered")


def test_a_graph_method_registered_under_its_own_rule_that_is_an_alias_is_taken():
    """A class with rule = 'sf' registered as 'sf' (in place of the alias) was refused, told to 'give the class
    rule = 'sf'', which it had: method_class('sf') finds the registered name before the alias, so it saves and
    loads back as itself."""
    from fwdlearn.graphs.methods import METHODS, method_class
    from fwdlearn.graphs.methods.sf import SingleForward

    class Mine(SingleForward):
        rule: ClassVar[str] = "sf"

    METHODS.register("sf", Mine)
    try:
        assert method_class("sf") is Mine and method_class("local:prototype") is SingleForward
    finally:
        METHODS.unregister("sf")
    assert method_class("sf") is SingleForward


def test_a_graph_task_registered_by_a_user_is_a_choice_of_graph_train(tmp_path):
    """``graph train --task`` asks the task object (its default method, its model, its metric, what it reads of the
    graph) instead of comparing the flag with "node" and "link": a task registered from any file is a choice of the
    CLI, trains through its own ``train`` and reports its own metric."""
    import json

    from fwdlearn.graphs.registries import GRAPH_TASKS
    from fwdlearn.graphs.tasks import NodeClassification

    calls = []

    class NodesByBackprop(NodeClassification):
        default_method = "bp"

        def train(self, data, **settings):
            calls.append(settings["method"])
            return super().train(data, **settings)

    with pytest.raises(TypeError, match=r"GRAPH_TASKS\.register\('nodes-bp', NodesByBackprop\(\)\)"):
        GRAPH_TASKS.register("nodes-bp", NodesByBackprop)
    GRAPH_TASKS.register("nodes-bp", NodesByBackprop())
    try:
        path = tmp_path / "run.json"
        assert main(["graph", "train", "--data", "karate", "--task", "nodes-bp", "--layers", "1", "--hidden", "8",
                     "--epochs", "2", "--quiet", "--json", str(path)]) == 0
        record = json.loads(path.read_text())
        assert calls == ["bp"] and record["config"]["method"] == "bp"
        assert 0.0 <= record["summary"]["test_accuracy"] <= 1.0
    finally:
        GRAPH_TASKS.unregister("nodes-bp")
    assert "nodes-bp" not in GRAPH_TASKS


def test_a_label_free_task_of_a_user_is_not_said_to_split_edges(capsys):
    """--split with a task that reads no node label is refused in the task's words: a user's label-free task was
    said to split "the edges itself (drawn from --seed)", link prediction's words."""
    from fwdlearn.graphs.registries import GRAPH_TASKS
    from fwdlearn.graphs.tasks import LinkPrediction

    class Unlabelled(LinkPrediction):
        own_split = ""

    GRAPH_TASKS.register("unlabelled", Unlabelled())
    try:
        assert main(["graph", "train", "--data", "karate", "--task", "unlabelled", "--split", "public", "--quiet"]) == 2
        assert ("--split public chooses the node split, which --task unlabelled does not read (it reads no node "
                "label): leave --split out") in capsys.readouterr().err
    finally:
        GRAPH_TASKS.unregister("unlabelled")


def test_a_graph_task_with_a_report_of_its_own_trains_and_a_wrong_metric_is_named(tmp_path):
    """``GraphTask.train`` returns a report whose ``as_dict()`` holds the task's metric: a report of the task's own
    holding its metric alone failed after the fit (``AttributeError: 'Scored' object has no attribute 'resumed'``,
    then with ``--splits 2`` ``KeyError: 'method'``), and a metric the report does not hold was a ``KeyError:
    'test_acc'`` once every split had trained, naming neither the task nor the keys it holds."""
    import json

    from fwdlearn.graphs.registries import GRAPH_TASKS
    from fwdlearn.graphs.tasks import NodeClassification

    class Scored:
        def __init__(self, score):
            self.score = score

        def as_dict(self):
            return {"test_score": self.score}

    class OwnReport(NodeClassification):
        default_method = "bp"
        metric = "test_score"

        def train(self, data, **settings):
            return Scored(super().train(data, **settings).test_accuracy)

    class Misnamed(NodeClassification):
        metric = "test_acc"

    GRAPH_TASKS.register("own-report", OwnReport())
    GRAPH_TASKS.register("misnamed", Misnamed())
    flags = ["--data", "karate", "--layers", "1", "--hidden", "8", "--epochs", "2", "--quiet"]
    try:
        path = tmp_path / "run.json"
        assert main(["graph", "train", "--task", "own-report", *flags, "--splits", "2", "--json", str(path)]) == 0
        summary = json.loads(path.read_text())["summary"]
        assert 0.0 <= summary["test_score_mean"] <= 1.0 and summary["test_score_std"] >= 0.0
        with pytest.raises(TypeError, match=r"'misnamed' \(Misnamed\) says its metric is 'test_acc', but the report "
                                            r"its train\(\) returned holds .*'test_accuracy'"):
            main(["graph", "train", "--task", "misnamed", *flags, "--json", str(tmp_path / "misnamed.json")])
    finally:
        GRAPH_TASKS.unregister("own-report")
        GRAPH_TASKS.unregister("misnamed")


def test_a_graph_task_that_leaves_what_graph_train_asks_undefined_is_refused_when_registered():
    """A ``GraphTask`` subclass without a ``default_method`` was registered, and ``graph train --task`` alone refused
    it as "--method '' is not a ... method", a flag the user had not given; one without ``train`` failed once the graph
    was read, with a bare ``NotImplementedError``. Both are refused when registered, naming what is missing."""
    from fwdlearn.graphs.registries import GRAPH_TASKS, LINK_METHODS, link_method
    from fwdlearn.graphs.tasks import GraphTask, LinkPrediction

    class NoDefault(LinkPrediction):
        default_method = ""

    class NoTrain(GraphTask):
        default_method, metric, labels = "bp", "test_auc", False

        def method_names(self):
            return LINK_METHODS.names()

        def method_name(self, method):
            return link_method(method)

    with pytest.raises(TypeError, match=r"'no-default' \(NoDefault\) does not define default_method, which graph "
                                        r"train asks of a task"):
        GRAPH_TASKS.register("no-default", NoDefault())
    with pytest.raises(TypeError, match=r"'no-train' \(NoTrain\) does not define train, .*subclass "
                                        r"NodeClassification or LinkPrediction"):
        GRAPH_TASKS.register("no-train", NoTrain())
    with pytest.raises(TypeError, match="does not define default_method, metric, method_names, method_name, train"):
        GRAPH_TASKS.register("nothing", GraphTask())
    assert not {"no-default", "no-train", "nothing"} & set(GRAPH_TASKS)
