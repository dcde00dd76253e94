"""The rule vocabulary: one parser, canonical spellings that round-trip, aliases, clear errors, extension
from outside the library (a toy rule, a toy graph method defined here and trained)."""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fwdlearn.rules import (BP, BPTT, DFA, DSF, FTBPTT, TBPTT, DepthRule, Local, Rule, Shallow, parse_rule,
                            register_depth_rule)


@pytest.mark.parametrize("spec, depth, time, canonical", [
    ("bp", BP(), None, "bp"),
    ("dsf", BP(), DSF(), "dsf"),
    ("bp+dsf", BP(), DSF(), "dsf"),
    ("dsf:gaussian", BP(), DSF("gaussian"), "dsf:gaussian"),
    ("tbptt:32", BP(), TBPTT(32), "tbptt:32"),
    ("FT-BPTT", BP(), FTBPTT(), "ft-bptt"),
    ("ftbptt", BP(), FTBPTT(), "ft-bptt"),
    ("dfa", DFA(), None, "dfa"),
    ("dfa:micro", DFA("micro"), None, "dfa:micro"),
    ("dfa:gaussian:macro", DFA("macro", "gaussian"), None, "dfa:gaussian"),
    ("dfa+dsf", DFA(), DSF(), "dfa+dsf"),
    ("dsf+dfa:micro", DFA("micro"), DSF(), "dfa:micro+dsf"),
    ("local:readout+ft-bptt", Local("readout"), FTBPTT(), "local:readout+ft-bptt"),
    ("shallow+bptt", Shallow(), BPTT(), "shallow+bptt"),
    ("sf", Local("prototype"), None, "local:prototype"),
    ("sf-top2input", Local("prototype", "top2input"), None, "local:prototype:top2input"),
    ("ff-la", Local("ff", "la"), None, "local:ff:la"),
    ("ff-vn", Local("ff", "vn"), None, "local:ff:vn"),
    ("ff-symba", Local("symba", "la"), None, "local:symba:la"),
    ("ce", Local("ce"), None, "local:ce"),
])
def test_specs_parse_to_frozen_rules_and_round_trip(spec, depth, time, canonical):
    rule = parse_rule(spec)
    assert rule == Rule(depth, time)
    assert str(rule) == canonical
    assert parse_rule(str(rule)) == rule
    with pytest.raises(AttributeError):
        rule.depth = Shallow()  # frozen


def test_the_diagonal_dsf_kind_is_spelled_as_the_default_dsf():
    """As the module doc says: str() leaves DSF's diagonal kind unnamed ("dsf", like DSF()), the one exception to
    parse_rule(str(rule)) == rule (a model saves its rule and its feedback kind side by side)."""
    assert str(parse_rule("dsf:diagonal")) == str(DSF("diagonal")) == "dsf"
    assert str(parse_rule("dfa+dsf:diagonal")) == "dfa+dsf"
    assert parse_rule(str(DSF("diagonal"))) == Rule(BP(), DSF())


@pytest.mark.parametrize("spec, match", [
    ("sgd", r"unknown rule 'sgd' in 'sgd'\. Valid: depth rules: bp, dfa"),
    ("dfa+bp", "names two depth rules"),
    ("dsf+bptt", "names two time rules"),
    ("tbptt", "needs one positive window"),
    ("tbptt:x", "positive integer window"),
    ("dsf:learned", "unknown DSF feedback 'learned'"),
    ("dfa:wide", "unknown DFA option 'wide'"),
    ("local", "'local' needs an objective"),
    ("local:hebb", "unknown local objective 'hebb'"),
    ("bp:1", "takes no arguments"),
    ("a+b+c", "at most one depth rule and one time rule"),
    ("", "empty rule"),
    ("dfa:micro:macro", "names the placement more than once"),
    ("dfa:uniform:gaussian", "names the feedback kind more than once"),
    ("local:readout:", r"empty option in 'local:readout:' \(in 'local:readout:'\): remove the stray ':'"),
])
def test_bad_specs_name_the_problem(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_rule(spec)


def test_unknown_name_lists_every_valid_word():
    with pytest.raises(ValueError) as error:
        parse_rule("rtrl")
    for word in ("bp", "dfa", "local:<", "shallow", "bptt", "tbptt:<k>", "ft-bptt", "dsf", "sf-top2input", "ff-la"):
        assert word in str(error.value)


def test_a_depth_rule_defined_outside_the_library_parses_and_round_trips():
    @register_depth_rule
    @dataclass(frozen=True)
    class Perturbation(DepthRule):
        name: ClassVar[str] = "perturb"
        sigma: float = 0.1

        @classmethod
        def parse(cls, args):
            return cls(float(args[0])) if args else cls()

        def __str__(self):
            return f"perturb:{self.sigma}"

    rule = parse_rule("perturb:0.5+dsf")
    assert rule == Rule(Perturbation(0.5), DSF()) and str(rule) == "perturb:0.5+dsf"
    assert parse_rule(str(rule)) == rule
    assert "perturb" in str(pytest.raises(ValueError, parse_rule, "nope").value)


def test_a_graph_method_defined_in_a_test_file_trains_without_editing_the_library(one_torch_thread):
    """A per-layer linear read-out (the ``local:readout`` idea on a GNN), registered from here."""
    from fwdlearn.fit import seed_everything
    from fwdlearn.graphs import ForwardGNN, load_graph
    from fwdlearn.graphs.methods import METHODS
    from fwdlearn.graphs.methods.base import LayerwiseMethod

    class ReadoutPerLayer(LayerwiseMethod):
        rule: ClassVar[str] = "toy-readout"

        def __init__(self, in_dim, num_classes, hidden, layers, conv, seed=0, cache=True):
            super().__init__(in_dim, num_classes, hidden, layers, conv, seed, cache)
            self.heads = torch.nn.ModuleList(torch.nn.Linear(hidden, num_classes) for _ in range(layers))

        def make_blocks(self):
            blocks = super().make_blocks()
            for block, head in zip(blocks, self.heads):
                block.add_module("head", head)  # trained with its block by the block's own optimizer
            return blocks

        def training_streams(self, x, edge_index, y, train, generator):
            return {"graph": (x, edge_index)}

        def scoring_streams(self, x, edge_index, y, train):
            return {"graph": (x, edge_index)}

        def layer_loss(self, outs, y, train, num_nodes, layer):
            return F.cross_entropy(self.heads[layer](outs["graph"])[train], y[train])

        def layer_scores(self, outs, num_nodes, layer):
            return self.heads[layer](outs["graph"]).softmax(-1)

    METHODS.register("toy-readout", ReadoutPerLayer)
    try:
        data = load_graph("karate", split="random", seed=0)
        seed_everything(0)
        model = ForwardGNN(data.num_features, data.num_classes, hidden=16, layers=2, method="toy-readout")
        before = [h.weight.detach().clone() for h in model.method.heads]
        report = model.fit(data, epochs=100, lr=0.01, patience=None, eval_every=100, quiet=True)
        assert all(not torch.equal(b, h.weight) for b, h in zip(before, model.method.heads))
        assert report.method == "toy-readout" and len(report.per_layer) == 2
        assert report.test_accuracy >= 0.5  # 4 classes: chance is about 0.25-0.4 on karate
        from fwdlearn.graphs.cli.bench import BenchGraphConfig, _learning_rate

        assert _learning_rate(BenchGraphConfig(lr=0.02), "toy-readout") == 0.02  # (bench graph: 'unknown rule')
        with pytest.raises(ValueError, match="a graph method's name must be .* in lower case; got 'Toy-Readout': use "
                                             "'toy-readout'"):  # (listed, never found: lookups lower-case the name)
            METHODS.register("Toy-Readout", ReadoutPerLayer)
        # the registry's own lookups lower-case the name, as its docs say (only the domain resolvers did)
        assert METHODS.get("Toy-Readout") is ReadoutPerLayer and "TOY-READOUT" in METHODS
        METHODS.unregister("TOY-readout")  # (in any case, as get finds it)
        assert "toy-readout" not in METHODS
        METHODS.register("toy-readout", ReadoutPerLayer)
        from fwdlearn.graphs.registries import CONV_KINDS

        assert CONV_KINDS.get("GCN") is CONV_KINDS.get("gcn")
    finally:
        METHODS.unregister("toy-readout")


def test_a_rule_class_registers_only_as_its_own_kind_and_every_dfa_kind_is_a_graph_method():
    from fwdlearn.graphs.methods import METHODS
    from fwdlearn.rules import DFA_FEEDBACKS, TBPTT, Shallow, register_depth_rule, register_time_rule

    with pytest.raises(TypeError, match="register_depth_rule takes a DepthRule subclass"):
        register_depth_rule(TBPTT)  # (it was listed as a depth rule, parsed as a time rule)
    with pytest.raises(TypeError, match="register_time_rule takes a TimeRule subclass"):
        register_time_rule(Shallow)
    assert {str(parse_rule(f"dfa:{kind}")) for kind in DFA_FEEDBACKS} <= set(METHODS.names())


def test_an_alias_cannot_replace_a_rule_name():
    from fwdlearn.rules import register_alias

    for alias in ("bp", "DSF", "tbptt:4", "dfa+dsf", ""):
        with pytest.raises(ValueError, match="cannot register the alias"):
            register_alias(alias, "dfa:micro")
    assert parse_rule("bp") == Rule(BP())


def test_an_alias_is_one_word_and_a_string():
    """The docs say an alias is one word: "my rule" was accepted (and an integer failed with "'int' object has no
    attribute 'strip'")."""
    from fwdlearn.rules import ALIASES, register_alias

    for alias in ("my rule", "my\trule"):
        with pytest.raises(ValueError, match="an alias is one word"):
            register_alias(alias, "dfa")
    with pytest.raises(TypeError, match="an alias is a string"):
        register_alias(7, "dfa")
    assert "my rule" not in ALIASES


def test_aliases_are_stored_canonically_and_work_as_either_side_of_a_rule():
    """An alias of an alias, of "DFA+DSF" or used as one side of '+' failed with "unknown rule" after registering."""
    from fwdlearn.rules import ALIASES, register_alias

    try:
        register_alias("my-sf", "sf")
        register_alias("my-sf2", "my-sf")
        register_alias("my-up", "DFA+DSF")
        assert parse_rule("my-sf2") == parse_rule("sf") and parse_rule("my-sf+dsf") == parse_rule("sf+dsf")
        assert parse_rule("my-up") == parse_rule("dfa+dsf") and ALIASES["my-up"] == "dfa+dsf"
        with pytest.raises(ValueError, match="cannot register the alias 'sf'"):
            register_alias("sf", "dfa")  # a built-in alias is not redefined
    finally:
        for name in ("my-sf", "my-sf2", "my-up"):
            ALIASES.pop(name, None)


def test_an_alias_of_the_diagonal_dsf_kind_keeps_the_kind_named():
    """str(DSF("diagonal")) is "dsf", the model's own kind: an alias stored as it trained a
    RecurrentLM(feedback="gaussian") with Gaussian feedback where "dsf:diagonal" trains with the diagonal one."""
    from fwdlearn.rules import ALIASES, register_alias

    try:
        register_alias("dsf-ref", "dsf:diagonal")
        register_alias("dfa-dsf-ref", "dfa+dsf:diagonal")
        register_alias("dsf-own", "dsf")
        assert parse_rule("dsf-ref") == parse_rule("dsf:diagonal") == Rule(BP(), DSF("diagonal"))
        assert parse_rule("dfa-dsf-ref") == Rule(DFA(), DSF("diagonal"))
        assert parse_rule("sf+dsf-ref") == Rule(parse_rule("sf").depth, DSF("diagonal"))
        assert parse_rule("dsf-own") == Rule(BP(), DSF())  # no kind named: still the model's own
    finally:
        for name in ("dsf-ref", "dfa-dsf-ref", "dsf-own"):
            ALIASES.pop(name, None)


def test_rule_names_and_parts_that_could_never_parse_back_are_refused():
    from fwdlearn.rules import TBPTT, Local, TimeRule, register_time_rule

    for name, message in (("Window", "needs a lower-case name"), ("ff", "is already an alias's"),
                          ("dfa", "is already a depth rule's")):
        cls = type("Odd", (TimeRule,), {"name": name, "parse": classmethod(lambda cls, args: cls()),
                                        "__str__": lambda self: name})
        with pytest.raises(ValueError, match=message):
            register_time_rule(cls)
    for bad in (lambda: Local("ff", "LA"), lambda: Local("readout", ""), lambda: TBPTT(True), lambda: Local("ff", "la:x"),
                lambda: Local("ff", "a+b"), lambda: Local("ff", "la x")):
        with pytest.raises(ValueError):  # (str(rule) gave 'local:ff:LA', 'local:readout', 'tbptt:True',
            bad()                        # 'local:ff:la:x', 'local:ff:a+b': none parses back)


def test_a_rule_object_holds_rule_objects():
    """Rule(depth="bp") failed inside the model ('str' object has no attribute 'name'); Rule(time="dsf") built a model
    whose fit failed."""
    from fwdlearn.rules import BP, DSF, Rule

    with pytest.raises(TypeError, match=r"Rule\(depth=...\) takes a depth rule object .* use parse_rule\('bp'\)"):
        Rule(depth="bp")
    with pytest.raises(TypeError, match=r"Rule\(time=...\) takes a time rule object .* use parse_rule\('dsf'\)"):
        Rule(depth=BP(), time="dsf")
    assert str(Rule(depth=BP(), time=DSF())) == "dsf"


def test_spaces_around_a_colon_are_read_as_around_a_plus():
    """'tbptt: 5' was read (int() strips) but 'dsf: gaussian', 'local: readout' and 'dfa :micro' were refused."""
    for spec, canonical in (("dsf: gaussian", "dsf:gaussian"), ("local: readout", "local:readout"),
                            ("dfa :micro", "dfa:micro"), ("tbptt: 5", "tbptt:5"), (" DFA + DSF ", "dfa+dsf")):
        assert str(parse_rule(spec)) == canonical


def test_vocabulary_is_built_from_the_rule_classes_and_their_choices():
    from fwdlearn.rules import vocabulary

    text = vocabulary()  # (other tests may have registered rules and aliases: they follow the built-in ones)
    assert text.startswith("depth rules: bp, dfa[:macro|:micro][:uniform|:gaussian|:orthogonal], "
                           "local:<prototype|ff|symba|readout|ce>[:<variant>], shallow")
    assert "; time rules: bptt, tbptt:<k>, ft-bptt, dsf[:diagonal|:gaussian|:orthogonal]" in text
    assert "; joined as <depth>+<time> (e.g. dfa+dsf); aliases: backprop, sf, " in text


def test_a_switch_given_as_text_is_refused():
    """spread_error="False" trained with the spread on (a non-empty string is true), and was stored as given."""
    from fwdlearn.errors import UsageError
    from fwdlearn.graphs import ForwardGNN, ForwardLinkPredictor
    from fwdlearn.sequences import RecurrentLM, TransformerLM

    for build, name in ((lambda v: ForwardGNN(5, 3, hidden=4, layers=2, method="dfa", spread_error=v), "spread_error"),
                        (lambda v: ForwardGNN(5, 3, hidden=4, layers=2, cache=v), "cache"),
                        (lambda v: ForwardLinkPredictor(5, hidden=4, layers=1, cache=v), "cache"),
                        (lambda v: RecurrentLM(5, hidden=4, layers=1, norm=v), "norm"),
                        (lambda v: RecurrentLM(5, hidden=4, layers=1, reference_block=v), "reference_block"),
                        (lambda v: TransformerLM(5, hidden=4, layers=1, heads=1, context=4, tie=v), "tie")):
        with pytest.raises(UsageError, match=rf"{name} must be True or False, got 'False'"):
            build("False")
        build(False)
        build(np.bool_(True))  # (NumPy's bool too: NumPy 2 names its type 'bool', not 'bool_')
