"""Edges of :mod:`fwdlearn.config`: a message said in the flags' words (:func:`as_flags`), the ``--help`` text of a
field, the flags of optional and list fields, and what :func:`validate_config` accepts from Python."""

import argparse
from dataclasses import dataclass, field

import pytest

from fwdlearn.config import add_dataclass_arguments, as_flags, dataclass_from_args, validate_config
from fwdlearn.errors import UsageError


# ---------------------------------------------------------------------------- as_flags
@pytest.mark.parametrize("message, names, said", [
    ("use a=5", [], "use a=5"),  # (no field: the message as it is)
    ("use training=tbptt:8 and lr=1e-3", ["training", "lr"], "use --training tbptt:8 and --lr 1e-3"),
    ("pass download=True (--download-dir is another flag)", ["download"],
     "pass --download (--download-dir is another flag)"),
    ("(vocab=v) is missing", ["vocab"], "(--vocab v) is missing"),  # (parentheses at the start: no call)
    ("use (f(a), vocab=v)", ["vocab"], "use (f(a), --vocab v)"),  # (a closed call before it: not inside one)
    ("save it (save_state(path, vocab=v))", ["vocab"], "save it (save_state(path, vocab=v))"),
    ("call model.save(path, vocab=v)", ["vocab"], "call model.save(path, vocab=v)"),
    ("call Model.__init__(self, vocab=v)", ["vocab"], "call Model.__init__(self, vocab=v)"),
    ("use clip=-1 for none, shift=+2", ["clip", "shift"], "use --clip -1 for none, --shift +2"),
])
def test_a_message_is_said_in_the_flags_words_where_it_means_a_flag(message, names, said):
    assert as_flags(message, names) == said


# ---------------------------------------------------------------------------- --help
@dataclass
class Job:
    hidden: int = 4
    depths: list[int] = field(default_factory=lambda: [1, 2], metadata={"help": "depths to run"})
    extra: list[str] = field(default_factory=list, metadata={"help": "extra names"})
    layers: list[int] | None = field(default=None, metadata={"help": "layers, if any"})
    lr: float = field(default=0.5, metadata={"help": "learning rate"})
    seed: int = field(default=0, metadata={"help": "random seed", "group": "run options"})
    quiet: bool = field(default=False, metadata={"help": "no progress bars", "group": "run options"})
    tie: bool | None = field(default=None, metadata={"help": "tie the weights (the model's own choice if not given)"})


def _parser():
    parser = argparse.ArgumentParser(prog="job")
    add_dataclass_arguments(parser, Job)
    return parser


def test_the_help_of_each_field_says_its_default_once_as_typed_on_the_command_line():
    helps = {action.dest: action.help for action in _parser()._actions}
    assert helps["hidden"] == "(default: 4)"
    assert helps["depths"] == "depths to run (default: 1 2)"
    assert helps["extra"] == "extra names"  # (an empty default: nothing to show)
    assert helps["tie"] == "tie the weights (the model's own choice if not given)"  # (None: not given)
    text = " ".join(_parser().format_help().split())
    assert text.count("no progress bars (default: False)") == 1 and "(default: None)" not in text


def test_fields_of_one_group_are_listed_under_one_heading():
    text = _parser().format_help()
    assert text.count("run options:") == 1
    run_options = text.split("run options:")[1]
    assert "--seed" in run_options and "--quiet" in run_options


def test_an_optional_list_field_takes_several_values():
    job = dataclass_from_args(Job, _parser().parse_args(["--layers", "1", "2", "--tie"]))
    assert job.layers == [1, 2] and job.tie is True and job.depths == [1, 2]
    assert dataclass_from_args(Job, _parser().parse_args([])) == Job()


# ---------------------------------------------------------------------------- validate_config
@pytest.mark.parametrize("values, message", [
    ({"hidden": None}, "--hidden must be an int, got None"),
    ({"lr": True}, "--lr must be a number, got True"),
    ({"depths": [1, "2"]}, "--depths must be an int, got '2'"),
    ({"depths": ["1"]}, "--depths must be an int, got '1'"),
    ({"depths": [3, 3]}, "--depths names 3 more than once; give each once"),
])
def test_a_config_built_in_python_is_refused_as_the_command_line_would_refuse_it(values, message):
    with pytest.raises(UsageError) as raised:
        validate_config(Job(**values))
    assert str(raised.value) == message


def test_an_empty_list_is_taken_where_the_default_is_empty():
    assert validate_config(Job(extra=[])).extra == []
    with pytest.raises(UsageError) as raised:
        validate_config(Job(depths=[]))
    assert str(raised.value) == "--depths needs at least one value"


def test_a_registry_with_no_names_accepts_no_value():
    @dataclass
    class Pick:
        method: str = field(default="sf", metadata={"choices": lambda: []})

    with pytest.raises(UsageError) as raised:
        validate_config(Pick())
    assert str(raised.value) == "--method must be one of , got 'sf'"
