"""Configuration as dataclasses, with command-line flags mapped one to one onto fields.

Example::

    @dataclass
    class TrainConfig:
        data: str = field(default="cora", metadata={"help": "data set name or path"})
        layers: int = 4
        quiet: bool = False

    add_dataclass_arguments(parser, TrainConfig)   # --data, --layers, --quiet
    config = dataclass_from_args(TrainConfig, parser.parse_args())
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

__all__ = ["add_dataclass_arguments", "dataclass_from_args"]

T = TypeVar("T")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


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


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per field of the dataclass ``cls`` (``--field-name``).

    Booleans become ``--flag`` / ``--no-flag``; ``list[...]`` fields take several values;
    ``metadata={"help": ..., "choices": [...]}`` sets help and choices.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, many = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        help_text = f.metadata.get("help", "")
        help_text = f"{help_text} (default: {default})" if help_text else f"(default: {default})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": help_text}
        if tp is bool:
            parser.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        if many:
            kwargs["nargs"] = "+"
        parser.add_argument(_flag(f.name), type=tp if tp in (int, float, str) else str, **kwargs)


def dataclass_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """Build ``cls`` from parsed arguments (fields missing from ``args`` keep their defaults)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in vars(args).items() if k in names}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if isinstance(values.get(f.name), list) and isinstance(f.default, tuple):
            values[f.name] = tuple(values[f.name])
    return cls(**values)
