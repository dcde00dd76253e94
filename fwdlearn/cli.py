"""The ``fwdlearn`` command.

The core defines the command groups and dispatches each subcommand to a
:class:`Command` that a domain package provides (the only place where the core
names a domain package). A command whose domain code is not there yet says so
plainly and exits with status 2; it never pretends to work.

::

    fwdlearn quickstart
    fwdlearn graph train --data cora --method sf --conv gcn --layers 4
    fwdlearn seq train --data tinyshakespeare --model gru --training dsf
    fwdlearn influence graph|seq ...
    fwdlearn bench graph|seq|influence ...
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from . import __version__

__all__ = ["Command", "Entry", "ENTRY_POINTS", "build_parser", "main"]


@dataclass(frozen=True)
class Command:
    """A subcommand provided by a domain package.

    Attributes:
        help: one line for ``--help``.
        configure: adds the command's flags to its parser.
        run: runs the command with the parsed arguments; returns an exit status (``None`` = 0).
    """

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


class Entry(NamedTuple):
    """Where a subcommand's :class:`Command` lives, and its help until that module exists."""

    target: str  # "module:attribute"
    help: str


#: ``(group, name)`` -> :class:`Entry` (``name`` is ``None`` for a command without subcommands).
ENTRY_POINTS: dict[tuple[str, str | None], Entry] = {
    ("quickstart", None): Entry("fwdlearn.graphs.commands:quickstart", "the main job on built-in data"),
    ("graph", "train"): Entry("fwdlearn.graphs.commands:train", "train a GNN with a forward method or BP"),
    ("seq", "train"): Entry("fwdlearn.sequences.commands:train", "train a recurrent LM (bptt, tbptt:k, ft-bptt, dsf)"),
    ("influence", "graph"): Entry("fwdlearn.graphs.influence_commands:influence", "hop-wise influence and range R"),
    ("influence", "seq"): Entry("fwdlearn.sequences.influence_commands:influence", "lag-wise influence and range R"),
    ("bench", "graph"): Entry("fwdlearn.graphs.commands:bench", "ForwardGNN vs BP: accuracy, time, memory by depth"),
    ("bench", "seq"): Entry("fwdlearn.sequences.commands:bench", "DSF vs BPTT: cost per step, quality, alignment"),
    ("bench", "influence"): Entry("fwdlearn.graphs.influence_commands:bench", "influence speed vs PyG, ranges of models"),
}

GROUP_HELP = {
    "quickstart": "the main job on built-in data: train a GNN without backprop next to a BP baseline",
    "graph": "train graph neural networks without end-to-end backprop (ForwardGNN)",
    "seq": "train recurrent language models without BPTT (DSF) and their baselines",
    "influence": "measure long-range Jacobian influence (per hop in a graph, per lag in a sequence)",
    "bench": "benchmarks: JSON + markdown tables, every figure next to its baseline from the same run",
}


def _load(target: str) -> Command | None:
    """Import ``module:attribute``; ``None`` if that module or attribute does not exist yet."""
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and module_name.startswith(err.name):
            return None  # the domain module itself is missing, not one of its dependencies
        raise
    return getattr(module, attr, None)


def _not_available(group: str, name: str | None) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        label = f"fwdlearn {group}" + (f" {name}" if name else "")
        print(f"{label}: not available yet in fwdlearn {__version__} (this command is planned but not implemented).",
              file=sys.stderr)
        return 2

    return run


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every available command's flags."""
    parser = argparse.ArgumentParser(
        prog="fwdlearn",
        description="Train graph and sequence models without end-to-end backpropagation, "
        "and measure how far their predictions reach.",
    )
    parser.add_argument("--version", action="version", version=f"fwdlearn {__version__}")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND")
    group_parsers: dict[str, argparse._SubParsersAction] = {}
    for (group, name), entry in ENTRY_POINTS.items():
        command = _load(entry.target)
        help_text = command.help if command else entry.help
        if command is None:
            help_text += " [not available yet]"
        if name is None:
            sub = groups.add_parser(group, help=help_text, description=help_text)
        else:
            if group not in group_parsers:
                gp = groups.add_parser(group, help=GROUP_HELP[group], description=GROUP_HELP[group])
                group_parsers[group] = gp.add_subparsers(dest="name", metavar="SUBCOMMAND")
                gp.set_defaults(run=None, group_parser=gp)
            sub = group_parsers[group].add_parser(name, help=help_text, description=help_text)
        if command is not None:
            command.configure(sub)
            sub.set_defaults(run=command.run)
        else:
            sub.set_defaults(run=_not_available(group, name))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fwdlearn`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.group is None:
        parser.print_help()
        return 0
    run = getattr(args, "run", None)
    if run is None:  # a group without its subcommand
        args.group_parser.print_help()
        return 2
    try:
        status = run(args)
    except (FileExistsError, FileNotFoundError) as error:  # a user's file in the way, or data not found
        print(f"fwdlearn: error: {error}", file=sys.stderr)
        return 2
    return 0 if status is None else int(status)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
