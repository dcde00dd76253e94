"""The command line a result was made by: ``fwdlearn ...`` as a user would type it (records and result tables
write it down)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["invoked_as", "invoked_command"]

#: the arguments ``fwdlearn.cli.main`` runs (set while it runs): ``main([...])`` called from Python has no command line
_invocation: list[str] | None = None


@contextmanager
def invoked_as(argv: Sequence[str]) -> Iterator[None]:
    """Inside this block :func:`invoked_command` is ``fwdlearn <argv>`` (what ``fwdlearn.cli.main(argv)`` ran)."""
    global _invocation
    before, _invocation = _invocation, list(argv)
    try:
        yield
    finally:
        _invocation = before


def invoked_command() -> str:
    """The command line of this process, as a user would type it (``fwdlearn ...``): the arguments the CLI's
    ``main`` runs, else ``sys.argv``."""
    argv = ["fwdlearn", *_invocation] if _invocation is not None else list(sys.argv)
    prog = Path(argv[0]).name if argv else "fwdlearn"
    if prog in ("__main__.py", "-m", "-c"):
        prog = "fwdlearn"
    return " ".join([prog] + [shlex.quote(a) for a in argv[1:]])
