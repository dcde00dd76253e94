"""The ``fwdlearn`` command.

The core defines the command groups and dispatches each subcommand to a
:class:`Command` that a domain package provides (the only place where the core
names a domain package). Commands load lazily: ``fwdlearn --help``, ``fwdlearn <group> --help``
and ``--version`` import no command module (and so neither torch nor a domain); a command's
module is imported only when that command is named, and command modules import their heavy
dependencies inside their ``run``. A command whose domain code is not there yet says so
plainly and exits with status 2; it never pretends to work.

**One error boundary.** :func:`main` reports every anticipated error (:mod:`fwdlearn.errors`: a bad
value, a missing, unreadable or malformed file, an unknown name, a checkpoint that does not fit, a
device that is not there) as one line ``fwdlearn: error: ...`` naming the problem and the fix (a Python spelling of
one of the command's flags in the message, ``split='random'``, said as the flag, ``--split random``), and exits
with status 2 (a file-system error -- a full disk, a read-only one, a permission, a name too long -- as the path, the
cause in words and the fix, :func:`fwdlearn.files.describe_os_error`, for every command alike); a diverged training
run exits with 3; Ctrl-C with 130 and a line saying where the last
checkpoint is and how to resume it (also when it lands between splits or layers, or after training), SIGTERM (a
scheduler stopping the job) likewise with 143; a reader that stops reading the
output (``fwdlearn ... | head``) ends it quietly with 141 (128 + SIGPIPE). Wrong flags are reported by the parser in
one line too (status 2). ``--debug`` (or ``FWDLEARN_DEBUG=1``, unless ``--no-debug``) shows the traceback instead. A
warning of fwdlearn's own is one line too, ``fwdlearn: warning: ...``. Under ``torchrun`` an error found before the
processes connect is reported by rank 0 alone, and so is a later one that every process meets alike (a check of
the flags or of the data, :func:`fwdlearn.errors.alike_on_every_process`; a divergence, found on the global batch's
loss; a resume that rank 0's part of the checkpoint refuses, :func:`fwdlearn.distributed.raise_together`); any other by
the rank that hit it, with its rank; a process
whose peer stopped says so in one line instead of a traceback.

::

    fwdlearn quickstart
    fwdlearn graph train --data cora --method sf --conv gcn --layers 4
    fwdlearn seq train --data tinyshakespeare --model gru --training dsf
    fwdlearn seq sample --model runs/<name>.pt --prompt "ROMEO:" --top-k 20
    fwdlearn influence graph|seq ...
    fwdlearn bench graph|seq|dfa|influence ...
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import __version__
from ..errors import EXIT_STATUS, TrainingInterrupted, exit_status
from ..runs import launch_rank

__all__ = ["Command", "Entry", "ENTRY_POINTS", "build_parser", "main"]


@dataclass(frozen=True)
class Command:
    """A subcommand provided by a domain package.

    Attributes:
        help: one line for ``--help``.
        configure: adds the command's flags to its parser.
        run: runs the command with the parsed arguments; returns an exit status (``None`` = 0).
        elsewhere: how the command's outputs are written elsewhere, the fix of a write the file system refused (a
            full disk: "free space on that disk, or ..."); ``""``: its output path flags that it takes (``--out``,
            ``--json``, ``--checkpoint``, ``--plot``).
    """

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    elsewhere: str = ""


class Entry(NamedTuple):
    """Where a subcommand's :class:`Command` lives, and its help until that module exists."""

    target: str  # "module:attribute"
    help: str


#: ``(group, name)`` -> :class:`Entry` (``name`` is ``None`` for a command without subcommands).
ENTRY_POINTS: dict[tuple[str, str | None], Entry] = {
    ("quickstart", None): Entry("fwdlearn.cli.quickstart:quickstart",
                                "the main job in about a minute, offline: training without backprop next to BP"),
    ("graph", "train"): Entry("fwdlearn.graphs.cli.train:train", "train a GNN with a forward method or BP"),
    ("seq", "train"): Entry("fwdlearn.sequences.cli.train:train",
                            "train a recurrent or transformer LM (bptt, tbptt:k, ft-bptt, dsf; bp, dfa, local:readout, "
                            "shallow)"),
    ("seq", "sample"): Entry("fwdlearn.sequences.cli.sample:sample",
                             "sample text from a saved language model or a seq train checkpoint"),
    ("influence", "graph"): Entry("fwdlearn.graphs.cli.influence:influence", "hop-wise influence and range R of GNNs"),
    ("influence", "seq"): Entry("fwdlearn.sequences.cli.influence:influence",
                                "lag-wise influence and range R of sequence models"),
    ("bench", "graph"): Entry("fwdlearn.graphs.cli.bench:bench", "ForwardGNN vs BP: accuracy, time, memory by depth"),
    ("bench", "seq"): Entry("fwdlearn.sequences.cli.bench:bench", "DSF vs BPTT: cost per step, quality, alignment"),
    ("bench", "dfa"): Entry("fwdlearn.sequences.cli.bench_dfa:bench",
                            "DFA vs BP for transformer and recurrent LMs: bits/char, alignment per block, step cost"),
    ("bench", "influence"): Entry("fwdlearn.graphs.cli.influence:bench", "influence speed vs PyG, ranges of models"),
}

GROUP_HELP = {
    "quickstart": "the main job in about a minute, offline: training without backprop next to BP, with influence",
    "graph": "train graph neural networks without end-to-end backprop (ForwardGNN)",
    "seq": "train language models without BPTT (DSF) or without backprop through depth (DFA, local), and baselines",
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


def _named_command(argv: Sequence[str]) -> tuple[str, str | None] | None:
    """The ``(group, name)`` that ``argv`` names, read from its first words (``None`` if it names none)."""
    words = [a for a in argv if not a.startswith("-")]
    if not words:
        return None
    if (words[0], None) in ENTRY_POINTS:
        return words[0], None
    if len(words) > 1 and (words[0], words[1]) in ENTRY_POINTS:
        return words[0], words[1]
    return None


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage is one ``--help`` away). Flags are not abbreviated:
    ``--lay 2`` would mean ``--layers`` today and fail once another flag starts with ``--lay``, and ``--plot x.png``
    read as the switch ``--plots``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        if launch_rank() == 0:
            print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        else:
            _leave_it_to_rank_0()
        self.exit(2)


#: seconds a process other than rank 0 waits before it exits silently on an error every process found: torchrun
#: stops the other processes once one has exited, and rank 0 must have said the error by then
RANK_0_SPEAKS = 3.0


def _leave_it_to_rank_0() -> None:
    import time

    time.sleep(RANK_0_SPEAKS)


def _group_rank() -> int | None:
    """This process's rank in a running ``torch.distributed`` group, ``None`` outside one."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return dist.get_rank()


def _peer_failed(error: BaseException) -> bool:
    """Whether ``error`` is a collective call that failed because another process of the group exited (gloo
    raises a ``RuntimeError`` saying the peer closed the connection)."""
    if _group_rank() is None or not isinstance(error, RuntimeError):
        return False
    dist = sys.modules["torch.distributed"]
    return isinstance(error, getattr(dist, "DistNetworkError", ())) or any(
        sign in str(error) for sign in ("Connection closed by peer", "Connection reset by peer"))


_terminated = False  # set when SIGTERM stopped the command


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM (a scheduler stopping a job) stops the command as Ctrl-C does: the training loop
    says where the last checkpoint is, the run's locks are released, and the exit status is 143 (128 + SIGTERM).
    Only in the main thread, where Python can install a handler."""
    import signal
    import threading

    global _terminated
    _terminated = False
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame) -> None:
        global _terminated
        _terminated = True
        raise KeyboardInterrupt("terminated (SIGTERM)")

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


@contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Inside the block, fwdlearn's own warnings (:class:`~fwdlearn.errors.FwdlearnWarning`) are printed as one line,
    ``fwdlearn: warning: ...`` (the location Python would name is the command's entry point), by rank 0 alone under
    torchrun (every process meets them alike); other warnings as Python shows them."""
    import warnings

    from fwdlearn.errors import FwdlearnWarning

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if not issubclass(category, FwdlearnWarning):
            shown(message, category, filename, lineno, file, line)
        elif launch_rank() == 0:
            print(f"fwdlearn: warning: {message}", file=sys.stderr if file is None else file)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def _out_of_memory(error: BaseException) -> bool:
    """An allocation torch or NumPy could not make (CPU or GPU): a size flag too large, not a bug."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(error, torch.OutOfMemoryError):
        return True
    if isinstance(error, MemoryError):  # (NumPy's "Unable to allocate 7.28 TiB ...": a traceback before)
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _report(error: BaseException, flags: Sequence[str] = (), elsewhere: str = "write the outputs elsewhere") -> None:
    """Print ``error`` as one line on stderr (see the module doc for which process speaks), an API spelling of one of
    the command's ``flags`` in its flag's words (:func:`~fwdlearn.config.as_flags`: ``split='random'`` ->
    ``--split random``; a load or a model refuses in Python's words what the command was given as a flag); a
    file-system error as its path, its cause in words and the fix (:func:`~fwdlearn.files.describe_os_error`;
    ``elsewhere``: how the command writes its outputs elsewhere)."""
    rank = _group_rank()
    if isinstance(error, KeyboardInterrupt):
        from fwdlearn.runs import kept_checkpoint, resumable_checkpoint, resume_naming

        text = str(error) or "interrupted"
        told = (isinstance(error, TrainingInterrupted) and error.checkpoint is not None
                and error.saved_step is not None)  # (its own line names the checkpoint and --resume)
        checkpoint = None if told else resumable_checkpoint()
        kept = kept_checkpoint()
        if kept is not None and isinstance(error, TrainingInterrupted) and error.checkpoint is None:
            # (a fit inside a run that keeps one, a bench's piece: "this run keeps no checkpoint" denied the line's end,
            # or, before the run's first save, what the run keeps)
            text = f"interrupted at {error.at}, in a fit that keeps no checkpoint of its own (it runs again)"
            if checkpoint is None:
                text += f", before {kept} held anything to continue from (it is saved as each part of the run ends)"
        if _terminated and not text.startswith("terminated"):
            text = f"terminated (SIGTERM): {text}"
        if checkpoint is not None:  # (outside a training loop: between splits or layers, in the final evaluation, or
            # before a later split's first save: the run's checkpoint holds what it trained)
            text += (f"; {checkpoint} holds the run so far: run the same command with --resume to continue (and "
                     f"{resume_naming(checkpoint)})")
        if launch_rank() == 0:
            print(f"fwdlearn: {text}", file=sys.stderr)
        return
    from fwdlearn.errors import DivergenceError, found_by_every_process

    # (a divergence is found alike too: under torchrun every process checks the global batch's loss, same weights)
    alike = found_by_every_process(error) or isinstance(error, DivergenceError)
    if launch_rank() != 0 and (rank is None or alike):
        _leave_it_to_rank_0()  # every process found the same problem (before connecting, or alike): rank 0 says it
        return
    from fwdlearn.files import describe_os_error

    described = describe_os_error(error, elsewhere)
    text = described or " ".join(str(error).split()) or type(error).__name__
    if described is not None:  # (the file system's problem, not the run's: what the run saved stays resumable)
        from fwdlearn.runs import resumable_checkpoint, resume_naming

        checkpoint = resumable_checkpoint()
        if checkpoint is not None:
            text += (f"; {checkpoint} holds the run so far: once that is fixed, the same command with --resume "
                     f"continues it (and {resume_naming(checkpoint)})")
    if flags:
        from fwdlearn.config import as_flags

        text = as_flags(text, flags)
    where = f" (rank {rank})" if rank is not None and rank > 0 else ""
    print(f"fwdlearn: error{where}: {text}", file=sys.stderr)


def build_parser(load: Sequence[tuple[str, str | None]] | None = None) -> argparse.ArgumentParser:
    """The argument parser: every command with its help; the flags of the commands in ``load``
    (default: all of them, which imports every command module)."""
    parser = _Parser(
        prog="fwdlearn",
        description="Train graph and sequence models without end-to-end backpropagation, "
        "and measure how far their predictions reach.",
    )
    parser.add_argument("--version", action="version", version=f"fwdlearn {__version__}")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND")
    group_parsers: dict[str, argparse._SubParsersAction] = {}
    for (group, name), entry in ENTRY_POINTS.items():
        configure = load is None or (group, name) in load
        command = _load(entry.target) if configure else None
        help_text = command.help if command else entry.help
        if configure and command is None:
            help_text += " [not available yet]"
        if name is None:
            sub = groups.add_parser(group, help=help_text, description=help_text)
        else:
            if group not in group_parsers:
                gp = groups.add_parser(group, help=GROUP_HELP[group], description=GROUP_HELP[group])
                group_parsers[group] = gp.add_subparsers(dest="name", metavar="SUBCOMMAND")
                gp.set_defaults(run=None, group_parser=gp)
            sub = group_parsers[group].add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(command_parser=sub)  # (an unknown flag is the command's: its --help lists the flags)
        if command is not None:
            command.configure(sub)
            sub.set_defaults(run=command.run)
        elif configure:
            sub.set_defaults(run=_not_available(group, name))
    return parser


class _PipeSafeStdout:
    """``sys.stdout`` for a command's run: once the reader of a pipe has gone (``fwdlearn ... | head``), what is
    printed after is dropped, and the command goes on to save its record and checkpoints (the first print into a
    closed pipe ended the run before its record was written)."""

    def __init__(self, stream) -> None:
        self.stream, self.broken = stream, False

    def _unless_broken(self, call: Callable[..., Any], *args: Any) -> Any:
        if not self.broken:
            try:
                return call(*args)
            except BrokenPipeError:
                self.broken = True
                _quiet_stdout()
        return None

    def write(self, text: str) -> int:
        written = self._unless_broken(self.stream.write, text)
        return len(text) if written is None else written

    def flush(self) -> None:
        self._unless_broken(self.stream.flush)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def _quiet_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's flush at exit meets no closed pipe either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # (no real file behind sys.stdout: nothing to flush there)
        pass


def _interrupt_handled() -> None:
    """Clear the mark CPython leaves when a ``KeyboardInterrupt`` escapes code run from a string (``exec(text)``, as
    the ``__init__`` of every dataclass an import defines is written): a process started as ``python -m fwdlearn`` then
    killed itself by SIGINT as it exited, however the interrupt was handled, so a Ctrl-C or a SIGTERM that landed
    while torch was imported ended with status -2 instead of 130 or 143. Running a string again clears the mark."""
    exec("pass")  # noqa: S102 - a constant string


#: the parsed arguments that are no command's flag (the parser's own bookkeeping)
_NOT_FLAGS = frozenset({"group", "run", "command_parser", "group_parser"})

#: the flags that place a command's output files, for the fix of a write the file system refused
_OUTPUT_FLAGS = ("out", "json", "checkpoint", "plot")


def _elsewhere(named: tuple[str, str | None] | None, args: argparse.Namespace) -> str:
    """How the command ``named`` (run with ``args``) writes its outputs elsewhere: its own words
    (:attr:`Command.elsewhere`), else its output path flags."""
    command = _load(ENTRY_POINTS[named].target) if named in ENTRY_POINTS else None  # (imported: it ran)
    if command is not None and command.elsewhere:
        return command.elsewhere
    flags = [f"--{name}" for name in _OUTPUT_FLAGS if isinstance(getattr(args, name, None), str)]
    return f"write the outputs elsewhere ({', '.join(flags)})" if flags else "write the outputs elsewhere"


#: a flag of one command and the flags that say the same to another (graph train trains --epochs by a --method, seq
#: train --steps by a --training rule; seq sample reads one --model, influence seq --checkpoints or untrained --models)
EQUIVALENT_FLAGS = {"--method": ("--training",), "--training": ("--method",), "--rule": ("--training", "--method"),
                    "--epochs": ("--steps",), "--steps": ("--epochs",), "--checkpoint": ("--model", "--checkpoints"),
                    "--model": ("--checkpoints", "--models"), "--models": ("--model",), "--checkpoints": ("--model",),
                    "--cell": ("--model",)}


def _flag_hints(parser: argparse.ArgumentParser, unknown: Sequence[str]) -> str:
    """What the unknown flags among ``unknown`` are called by this command (``parser``): another command's flag
    (``seq train --method dsf``: ``--training``, :data:`EQUIVALENT_FLAGS`), or a close spelling of one of its own
    (``--hiden``: ``--hidden``); ``""`` when none is."""
    import difflib

    flags = [flag for flag in parser._option_string_actions if flag.startswith("--")]
    hints = []
    for word in unknown:
        flag = word.split("=", 1)[0]
        if not flag.startswith("--"):
            continue
        same = [other for other in EQUIVALENT_FLAGS.get(flag, ()) if other in flags]
        if same:
            hints.append(f"for {flag} use {' or '.join(same)}")
        elif close := difflib.get_close_matches(flag, flags, n=1, cutoff=0.8):
            hints.append(f"{flag}: did you mean {close[0]}?")
    return f"; {'; '.join(hints)}" if hints else ""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fwdlearn`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    named = _named_command(argv)
    parser = build_parser(load=[named] if named else [])
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command_parser = getattr(args, "command_parser", parser)
        command_parser.error(f"unrecognized arguments: {' '.join(unknown)}{_flag_hints(command_parser, unknown)}")
    if args.group is None:
        parser.print_help()
        return 0
    run = getattr(args, "run", None)
    if run is None:  # a group without its subcommand: a usage error, its help on stderr
        args.group_parser.print_help(sys.stderr)
        return 2
    debug = getattr(args, "debug", None)  # (--debug / --no-debug, else the environment's FWDLEARN_DEBUG)
    if debug is None:
        debug = os.environ.get("FWDLEARN_DEBUG", "") not in ("", "0")
    from fwdlearn.invocation import invoked_as
    from fwdlearn.runs import release_runs

    stdout = sys.stdout = _PipeSafeStdout(sys.stdout)
    try:
        with invoked_as(argv), _terminate_as_interrupt(), _one_line_warnings():  # (the reports' "Command:" lines
            status = run(args)                                                # say argv, also for main([...]))
    except BaseException as error:  # noqa: BLE001 - the one boundary; unanticipated errors are re-raised
        code = exit_status(error)
        if isinstance(error, KeyboardInterrupt) and not debug:
            _interrupt_handled()
        if isinstance(error, BrokenPipeError) and not debug:  # (`fwdlearn ... | head`: the reader stopped reading;
            _quiet_stdout()                                   # it said "fwdlearn: error: [Errno 32] Broken pipe")
            return EXIT_STATUS["broken_pipe"]
        if isinstance(error, KeyboardInterrupt) and _terminated:
            code = EXIT_STATUS["terminated"]
        if code is None and not debug and _peer_failed(error):
            print(f"fwdlearn: error (rank {_group_rank()}): another process of this torchrun job stopped (its own "
                  "message says why), so this one could not go on", file=sys.stderr)
            return EXIT_STATUS["error"]
        if code is None and not debug and _out_of_memory(error):
            print(f"fwdlearn: error: out of memory ({_first_line(error)}): the sizes given need more memory than "
                  "this machine has; lower them (e.g. --hidden, --layers, --batch-size, --context, --samples, "
                  "--max-lag / --max-hops) or use a larger machine", file=sys.stderr)
            return EXIT_STATUS["error"]
        if code is None or debug:
            raise
        _report(error, [name for name in vars(args) if name not in _NOT_FLAGS], _elsewhere(named, args))
        return code
    finally:
        release_runs()
        sys.stdout = stdout.stream
    if stdout.broken:  # (the command finished, its files written; what it printed after the reader left is lost)
        return EXIT_STATUS["broken_pipe"]
    return 0 if status is None else int(status)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
