"""Configuration as dataclasses, with command-line flags mapped one to one onto fields.

A field's ``metadata`` says everything about its flag:

- ``help``: one sentence for ``--help`` (the default is appended unless it is empty), or a function returning it;
- ``choices``: the accepted values, or a function returning them (e.g. a registry's ``names``: called when the parser
  is built and when a config is checked, so that a name registered later is offered and accepted);
- ``min`` / ``max`` (inclusive) and ``gt`` (exclusive lower bound): the range of a number, checked for
  every value (and every item of a list) by :func:`validate_config`, together with finiteness of floats and their
  fitting float32 (:func:`~fwdlearn.errors.check_representable`: a model trains in it), unless ``python_float``
  says the value never meets a tensor (a divergence factor compared in Python);
- ``group``: the heading the flag is listed under in ``--help`` (the shared run options use it);
- ``unordered``: a list that is a set (``--skip``): a bench's resume compares it sorted
  (:func:`fwdlearn.bench_progress.bench_settings`).

Example::

    @dataclass
    class TrainConfig:
        data: str = field(default="cora", metadata={"help": "data set name or path"})
        layers: int = field(default=4, metadata={"help": "GNN layers", "min": 1})
        lr: float = field(default=1e-3, metadata={"help": "Adam learning rate", "gt": 0})
        quiet: bool = field(default=False, metadata={"help": "no progress bars"})

    add_dataclass_arguments(parser, TrainConfig)   # --data, --layers, --lr, --quiet
    config = dataclass_from_args(TrainConfig, parser.parse_args())   # validated
"""

from __future__ import annotations

import argparse
import dataclasses
import numbers
import os
import re
import types
import typing
from typing import Any, TypeVar

from .errors import check_range, check_representable, is_integer

__all__ = ["add_dataclass_arguments", "dataclass_from_args", "validate_config", "flag_name", "as_flags", "choices_of"]

T = TypeVar("T")
_RANGE_KEYS = ("min", "max", "gt")


def flag_name(name: str) -> str:
    """The flag of a field: ``eval_every`` -> ``--eval-every``."""
    return "--" + name.replace("_", "-")


def as_flags(message: str, names: typing.Iterable[str]) -> str:
    """A Python API message in the words of the command line, for the fields ``names`` of a command's config:
    ``norm=True`` -> ``--norm``, ``tie=False`` -> ``--no-tie``, ``training='dfa'`` -> ``--training dfa``. Python
    that a message means as Python is left so: a keyword argument inside a call's parentheses (``save(path,
    vocab=corpus.vocab)`` is no ``--vocab`` flag), and the spelling of a flag the message names as well
    (``--download (download=True in Python)``)."""
    def flag(match: re.Match) -> str:
        name, value = match[1], match[2]
        if _in_call(message, match.start()) or re.search(re.escape(flag_name(name)) + r"(?![\w-])", message):
            return match[0]
        if value in ("True", "False"):
            return flag_name(name) if value == "True" else "--no-" + flag_name(name)[2:]
        return f"{flag_name(name)} {value.strip(chr(39) + chr(34))}"

    names = sorted(names, key=len, reverse=True)  # (the longest first: reference_block before block)
    if not names:
        return message
    pattern = r"\b(" + "|".join(map(re.escape, names)) + r")=(True|False|'[^']*'|\"[^\"]*\"|[\w.:+-]+)"
    return re.sub(pattern, flag, message)


def _in_call(text: str, at: int) -> bool:
    """Whether position ``at`` of ``text`` lies inside the parentheses of a call (``name(`` or ``obj.name(``)."""
    depth = 0
    for i in range(at - 1, -1, -1):
        if text[i] == ")":
            depth += 1
        elif text[i] == "(":
            if depth == 0:
                return i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_.")
            depth -= 1
    return False


def _base_type(tp: Any) -> tuple[Any, bool]:
    """The scalar type of a field annotation, and whether it is a list (``list[int]``)."""
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return (args[0] if args else str), True
    if origin is typing.Union or origin is types.UnionType:  # Optional[X], X | None
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0]) if args else (str, False)
    return tp, False


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def choices_of(f: dataclasses.Field) -> list | None:
    """The accepted values of a field (its ``choices``, called if it is a function), or ``None`` if any value goes."""
    choices = f.metadata.get("choices")
    if choices is None:
        return None
    return list(choices() if callable(choices) else choices)


def _help(f: dataclasses.Field, default: Any) -> str:
    text = f.metadata.get("help", "")
    if callable(text):
        text = text()
    if default in ("", None, [], ()) or isinstance(default, bool):
        return text
    shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
    return f"{text} (default: {shown})" if text else f"(default: {shown})"


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per field of the dataclass ``cls`` (``--field-name``).

    Booleans become ``--flag`` / ``--no-flag``; ``list[...]`` fields take several values; ``metadata``
    gives help, choices and the ``--help`` heading (``group``); see the module doc.
    """
    hints = typing.get_type_hints(cls)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(cls):
        tp, many = _base_type(hints[f.name])
        default = _default(f)
        group_name = f.metadata.get("group")
        target = parser
        if group_name:
            if group_name not in groups:
                groups[group_name] = parser.add_argument_group(group_name)
            target = groups[group_name]
        kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": _help(f, default)}
        if tp is bool:
            action = target.add_argument(flag_name(f.name), action=argparse.BooleanOptionalAction, **kwargs)
            if default is not None and "%(default)" not in (action.help or ""):  # Python < 3.13 appends the
                # default itself (None: "not given", the help says what that means)
                action.help = f"{action.help} (default: {default})".strip()
            continue
        if "choices" in f.metadata:
            kwargs["choices"] = choices_of(f)
        if many:  # several values, also over several uses of the flag (argparse's default would keep the last use)
            kwargs.update(nargs="+", action="extend", default=None)  # (None: the dataclass default, not extended)
        target.add_argument(flag_name(f.name), type=tp if tp in (int, float, str) else str, **kwargs)


#: the scalar types the CLI parses: how a message names each, and what a config built in Python may hold for it
_TYPES: dict[type, tuple[str, Any]] = {
    bool: ("true or false", lambda v: isinstance(v, bool)),
    int: ("an int", lambda v: is_integer(v)),
    float: ("a number", lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool)),  # (NumPy floats too)
    str: ("a string", lambda v: isinstance(v, (str, os.PathLike))),  # (a path for a path)
}


def _check_type(f: dataclasses.Field, hint: Any, value: Any) -> None:
    """A config built in Python holds what the CLI would parse: a list (not a string) for a list field, never empty
    when its default is not; ``bool``, ``int``, ``float`` or ``str`` items as annotated (``None`` where the default
    is ``None``). A string ``"no"`` for a bool would be true; ``"gru"`` for a list would run ``g``, ``r``, ``u``."""
    from .errors import UsageError

    tp, many = _base_type(hint)
    flag = flag_name(f.name)
    if value is None and _default(f) is None:
        return
    if many:
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{flag} takes a list of values, got {value!r}")
        if not value and _default(f):
            raise UsageError(f"{flag} needs at least one value")
        items = list(value)
    else:
        items = [value]
    if tp not in _TYPES:  # (a type the CLI does not parse: nothing to compare with)
        return
    expected, fits = _TYPES[tp]
    for item in items:
        if not fits(item):
            raise UsageError(f"{flag} must be {expected}, got {item!r}")


def validate_config(config: Any) -> Any:
    """Check every field of a dataclass instance against its metadata (ranges, finiteness, choices).

    Raises:
        fwdlearn.errors.UsageError: naming the flag, the rule and the value given.
    """
    from .errors import UsageError

    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        _check_type(f, hints[f.name], value)
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        choices = choices_of(f)
        if isinstance(value, (list, tuple)):
            repeated = next((item for i, item in enumerate(values) if item in values[:i]), None)
            if repeated is not None:  # a list option runs each entry once: a repeat would redo (and reread) its work
                raise UsageError(f"{flag_name(f.name)} names {repeated!r} more than once; give each once")
            if f.metadata.get("not_all") and set(choices) <= set(values):
                raise UsageError(f"{flag_name(f.name)} names every part ({', '.join(choices)}); "
                                 "nothing would run: leave at least one out")
        bounds = {k: f.metadata[k] for k in _RANGE_KEYS if k in f.metadata}
        for item in values:
            if item is None and f.default is None:  # an optional setting left to its default
                continue
            # (a float: Python's or NumPy's, np.float32 being no float subclass: its NaN passed an unbounded field)
            is_float = isinstance(item, numbers.Real) and not isinstance(item, numbers.Integral)
            if is_float or bounds:
                check_range(flag_name(f.name), item, **bounds)
            if is_float and not f.metadata.get("python_float"):  # (1e39 is float32's inf: torch's raw
                check_representable(flag_name(f.name), item)  # error in the optimizer, or NaN losses)
            if choices is not None and item not in choices:
                raise UsageError(f"{flag_name(f.name)} must be one of {', '.join(map(str, choices))}, got {item!r}")
    return config


def dataclass_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """Build ``cls`` from parsed arguments (fields missing from ``args`` keep their defaults) and
    :func:`validate_config` it."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in vars(args).items() if k in names}
    hints = typing.get_type_hints(cls)
    for name in list(values):
        if values[name] is None and _base_type(hints[name])[1]:  # a list flag not given: the dataclass default
            del values[name]
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if isinstance(values.get(f.name), list) and isinstance(f.default, tuple):
            values[f.name] = tuple(values[f.name])
    return validate_config(cls(**values))
