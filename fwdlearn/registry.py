"""Registries: a choice (a graph method, a model family) is an object looked up by name.

Entries may be given as ``"module:attribute"`` strings, imported on first use, so listing the
names (for ``--help``) imports nothing heavy.

Example::

    METHODS = Registry("graph method", {"local:prototype": "fwdlearn.graphs.methods.sf:SingleForward"})
    METHODS.register("toy", ToyMethod)          # a user's own, from any file
    cls = METHODS.get("toy")
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from importlib import import_module
from typing import Any

__all__ = ["Registry", "instance_entry", "lazy_exports", "did_you_mean", "unknown"]


class Registry:
    """Names -> objects (or lazy ``"module:attribute"`` targets).

    Args:
        what: what an entry is, for error messages ("graph method").
        entries: the initial entries.
        lower_case: the registry's lookups lower-case the name given, so a name registered must be lower case (one
            in capitals would be listed but never found).
        check: ``check(name, obj)``, called before an entry is registered, raises for one the registry cannot use (a
            class where its entries are instances; a name that another registry's entries would hide).
    """

    def __init__(self, what: str, entries: dict[str, Any] | None = None, lower_case: bool = False,
                 check: Callable[[str, Any], None] | None = None) -> None:
        self.what, self.lower_case, self.check = what, lower_case, check
        self._entries: dict[str, Any] = dict(entries or {})

    def register(self, name: str, obj: Any = None) -> Any:
        """Add ``obj`` under ``name`` (replacing an earlier entry); without ``obj``, a decorator. A name that is not
        a string, is blank or has spaces around it (or, in a ``lower_case`` registry, capitals) is refused, and so is
        an entry the registry's ``check`` refuses."""
        if not isinstance(name, str) or not name.strip() or name != name.strip() \
                or (self.lower_case and name != name.lower()):
            case = " and in lower case" if self.lower_case else ""
            fixed = name.strip() if isinstance(name, str) and name.strip() else None
            fixed = fixed.lower() if fixed and self.lower_case else fixed
            raise ValueError(f"a {self.what}'s name must be a non-blank string without surrounding spaces{case}; got "
                             f"{name!r}" + (f": use {fixed!r}" if fixed else ""))
        if obj is None:
            def decorate(target: Any) -> Any:
                if self.check is not None:
                    self.check(name, target)
                self._entries[name] = target
                return target
            return decorate
        if self.check is not None:
            self.check(name, obj)
        self._entries[name] = obj
        return obj

    def unregister(self, name: str) -> None:
        """Remove the entry ``name`` (a ``KeyError`` if there is none; any case in a ``lower_case`` registry)."""
        del self._entries[self._key(name)]

    def names(self) -> list[str]:
        """The registered names, in the order they were registered (``list(registry)`` alike)."""
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._entries)})"

    def _key(self, name: object) -> object:
        """The key ``name`` is looked up by: lower-cased in a ``lower_case`` registry."""
        return name.lower() if self.lower_case and isinstance(name, str) else name

    def __contains__(self, name: object) -> bool:
        return self._key(name) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def get(self, name: str) -> Any:
        """The entry named ``name`` (imported on first use; in a ``lower_case`` registry ``name`` in any case);
        ``ValueError`` listing the names if unknown, with the closest one (:func:`did_you_mean`)."""
        key = self._key(name)
        if key not in self._entries:
            raise ValueError(unknown(self.what, name, self._entries))
        target = self._entries[key]
        if isinstance(target, str):
            module, _, attribute = target.partition(":")
            target = getattr(import_module(module), attribute)
            self._entries[key] = target
        return target


def did_you_mean(name: object, choices: Iterable[str]) -> str:
    """``" (did you mean 'gru'?)"``: the choice closest to the unknown ``name`` (the same word in other capitals or with
    spaces around it first, then :func:`difflib.get_close_matches`' closest, case aside), for the end of an "unknown
    ..." message; ``""`` when none is close or ``name`` is not a string."""
    if not isinstance(name, str):
        return ""
    lowered: dict[str, str] = {}
    for choice in choices:
        lowered.setdefault(str(choice).lower(), str(choice))
    key = name.strip().lower()
    close = [key] if key in lowered else difflib.get_close_matches(key, list(lowered), n=1)
    return f" (did you mean {lowered[close[0]]!r}?)" if close and lowered[close[0]] != name else ""


def unknown(what: str, name: object, choices: Iterable[str]) -> str:
    """``"unknown cell 'GRU'; choose one of tanh, gru, lstm (did you mean 'gru'?)"``: the refusal of a name that is
    none of ``choices`` (:func:`did_you_mean`)."""
    choices = list(choices)
    return f"unknown {what} {name!r}; choose one of {', '.join(map(str, choices))}{did_you_mean(name, choices)}"


def instance_entry(registry: str, what: str) -> Callable[[str, Any], None]:
    """A ``check`` for a registry whose entries are objects, not classes (``registry``: its name, ``what``: what an
    entry is): a class, as the decorator form registers one, is refused naming the fix (it failed at first use, as a
    method called without its instance: "build() missing 1 required positional argument")."""

    def check(name: str, obj: Any) -> None:
        if isinstance(obj, type):
            raise TypeError(f"a {what} is registered as an instance, not as its class: "
                            f"{registry}.register({name!r}, {obj.__name__}()) (the decorator form registers the class "
                            "itself)")

    return check


def lazy_exports(module: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a package whose public names (``name -> "module"``) import on first use.

    Example (in a package's ``__init__.py``)::

        __getattr__, __dir__ = lazy_exports(__name__, {"load_graph": "fwdlearn.graphs.data.datasets"})
    """
    namespace = import_module(module).__dict__

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(import_module(exports[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
