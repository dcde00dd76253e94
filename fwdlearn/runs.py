"""What every command shares: the run options (device, threads, seed, quiet, name, record, overwrite,
debug) and where a run's files go.

**Run options.** A command's config dataclass derives from :class:`RunOptions`, so every training,
influence and bench command takes the same flags, listed under "run options" in ``--help``, and every
config is range-checked when it is built (:func:`fwdlearn.config.validate_config`).

**Output paths** (:func:`run_outputs`). A run writes under ``runs/``:

- ``--name dsf``: ``runs/dsf.json`` (the record), ``runs/dsf.pt`` (the checkpoint), so
  ``--resume --name dsf`` continues it and ``influence seq --checkpoints runs/dsf.pt`` reads it. A name
  with folders (``--name sweep/lr3``) makes a run folder (``runs/sweep/lr3.json``, ...).
- no name: a fresh ``runs/<command>-<UTC time>-<6 hex digits>.*``, unique per run, so concurrent runs
  never share a file.
- ``--json`` names the record (and, without ``--name``, the checkpoint next to it, ``.pt``);
  ``--checkpoint`` and ``--plot`` override their own paths; a bench's ``--out`` names its files instead of
  ``--name`` (given both, it is refused, as both ``--name`` and ``--json`` are where the record is the only file
  a name would place).

Before any work, every output path is checked: the paths differ from each other, none exists unless
``--overwrite`` (a checkpoint: unless ``--resume``), the record replaces no other command's run record that
names files this run keeps (``--overwrite`` or not: they would be left without it), each can be written (its
folder exists or can be created, and is writable), a plot's format is one matplotlib writes; files a killed run
was renaming into place together (:func:`fwdlearn.files.finish_renames`) are finished, and a ``.tmp`` file it left
is removed. A run started over with ``--overwrite`` removes the earlier run's record, which names the checkpoint it
replaces, once it holds the locks (killed before it writes its own, it leaves no record of another run beside its
checkpoint). A run whose paths were named (``--name``, ``--json``, ``--checkpoint``,
``--out``) holds ``<record>.lock`` while it runs (from :func:`start_run`), so a second run given the same name
refuses to start instead of writing the same files; a lock left by a killed process is taken over.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .config import validate_config
from . import files
from .errors import InputError, UsageError
from .files import (alive, check_writable, finish_renames, read_at_most, refuse_overwrite, remove_quietly,
                    remove_stale_tmp, synced, writing)
from .records import read_record

__all__ = ["RunOptions", "RunPaths", "RUN_OPTIONS", "RUNS_FOLDER", "MAX_THREADS", "DEBUG_HELP", "fresh_stem",
           "run_outputs", "resolve_device", "start_run", "check_plot_format", "check_run_name", "launch_rank",
           "launched_processes", "resume_naming", "kept_checkpoint",
           "lock_run", "release_runs", "refuse_torchrun", "process_checkpoint", "resumable_checkpoint", "record_files"]

RUN_OPTIONS = "run options"
#: the characters Windows' file names may not hold (a ':' names a file's hidden stream, or a drive)
_NOT_IN_WINDOWS_NAMES = '<>:"|?*'
RUNS_FOLDER = "runs"
#: the most ``--threads`` any command takes (10**12 hung, 100000 was a bare libgomp error)
MAX_THREADS = 1024
#: the --debug help (None, not given: FWDLEARN_DEBUG decides; --no-debug overrides FWDLEARN_DEBUG=1)
DEBUG_HELP = ("on an error, show the Python traceback (default: off, or on where the environment sets "
              "FWDLEARN_DEBUG=1; --no-debug turns it off there)")


def _option(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, "group": RUN_OPTIONS, **meta})


@dataclass
class RunOptions:
    """The options every training, influence and bench command takes (a mixin for config dataclasses)."""

    name: str = _option("", "name of the run: its files are runs/<name>.json (record) and, for a training command, "
                            "runs/<name>.pt (checkpoint), which its --resume --name <name> continues (a bench: "
                            "runs/<name>.json/.md and runs/<name>-record.json, written when it ends, and "
                            "runs/<name>-progress.pt while it runs, which its --resume continues); folders in the name "
                            "(sweep/lr3) make a run folder. Without it every run gets a fresh "
                            "runs/<command>-<time>-<id> name")
    json: str = _option("", "run record path (default: runs/<name>.json, a bench's <out>-record.json, or a fresh "
                            "file under runs/)")
    overwrite: bool = _option(False, "replace existing output files instead of refusing to start")
    device: str = _option("auto", "cpu, cuda, cuda:N, mps, or auto (cuda when available, else cpu)")
    threads: int = _option(0, "torch CPU threads (0: torch's default)", min=0, max=MAX_THREADS)
    seed: int = _option(0, "random seed of weights, data order, splits and samples", min=0, max=2**31 - 1)
    quiet: bool = _option(False, "no progress bars or per-step output")
    debug: bool | None = _option(None, DEBUG_HELP)

    def __post_init__(self) -> None:
        validate_config(self)


def fresh_stem(job: str, folder: str | Path = RUNS_FOLDER) -> Path:
    """``<folder>/<job>-<UTC time>-<6 random hex digits>``: unique per run, also for runs started in the same second."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path(folder) / f"{job}-{stamp}-{secrets.token_hex(3)}"


def check_plot_format(path: str | Path, flag: str = "--plot") -> None:
    """Raise :class:`~fwdlearn.errors.UsageError` unless matplotlib is installed and writes ``path``'s format (``.pgf``
    only where the TeX program matplotlib writes it through is installed)."""
    try:
        import matplotlib
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise UsageError(f"{flag} needs matplotlib: pip install 'fwdlearn[plot]'") from None
    formats = dict(FigureCanvasBase.get_supported_filetypes())
    tex = matplotlib.rcParams["pgf.texsystem"]
    suffix = Path(path).suffix.lower().lstrip(".")
    if shutil.which(tex) is None:  # (.pgf passed this check and failed after the whole run: "'xelatex' not found")
        formats.pop("pgf", None)
        if suffix == "pgf":
            raise UsageError(f"{flag} {path}: matplotlib writes .pgf through {tex}, which is not installed; install "
                             f"a TeX system with {tex}, or end the name with .pdf, .svg or .png")
    if suffix not in formats:
        shown = "none" if not suffix else f".{suffix}"
        raise UsageError(f"{flag} {path}: matplotlib cannot write the format {shown}; end the name with one of "
                         + ", ".join(f".{s}" for s in sorted(formats)))


@dataclass
class RunPaths:
    """Where one run writes: the record, and when the command has them a checkpoint, a plot, result tables."""

    record: Path
    checkpoint: Path | None = None
    plot: Path | None = None
    results: tuple[Path, ...] = ()
    #: the checkpoints of splits 1, 2, ... of a run of several (``<stem>-split<i><suffix>``; split 0's is
    #: ``checkpoint``)
    split_checkpoints: tuple[Path, ...] = ()
    #: the paths were chosen by the user (so another run may choose them too: :func:`start_run` locks them)
    named: bool = False
    #: an earlier run's checkpoints of splits this run does not have, or (``--overwrite``) of this run's later
    #: splits, and (``--overwrite``) its record, which names the checkpoints this run replaces, to remove once
    #: :func:`start_run` holds the locks
    stale: tuple[Path, ...] = ()
    #: the flag the record's path came from (``--json``, or ``--out`` / ``--name`` it was derived from)
    record_flag: str = "--json"
    #: the flag the checkpoint's path came from (``--checkpoint``, or ``--name`` / ``--json`` it was derived from)
    checkpoint_flag: str = "--checkpoint"
    #: how the command, run again with ``--resume``, names the checkpoint when it was run without a name (the words
    #: an interrupt's message ends with; "": ``--checkpoint <path> if it had no --name``)
    resume_naming: str = ""

    def outputs(self) -> list[tuple[str, Path]]:
        """``(flag, path)`` of every file this run may write."""
        pairs = [(self.record_flag, self.record)]
        pairs += [(self.checkpoint_flag, self.checkpoint)] if self.checkpoint is not None else []
        pairs += [(self.checkpoint_flag, p) for p in self.split_checkpoints]
        pairs += [("--plot", self.plot)] if self.plot is not None else []
        pairs += [("--out", p) for p in self.results]
        return pairs

    def save_record(self, record: Any, overwrite: bool, draw: Callable[[Path], Any] | None = None) -> Path:
        """Draw the run's plot, ``draw(path)`` (where the run has one, :attr:`plot`, and ``draw`` is given), name it
        in ``record`` (a :class:`~fwdlearn.records.RunRecord`) and save that to :attr:`record`; the record's path.
        A failure or an interrupt meanwhile (a record that fails to write, a full disk) removes the plot it drew
        (:func:`fwdlearn.files.removed_on_failure`): a re-run was refused for it ("p.png already exists ...
        --overwrite"). The run's other files (a checkpoint, for ``--resume``) stay."""
        with files.removed_on_failure(self.plot):
            if self.plot is not None and draw is not None:
                draw(self.plot)
                record.add_file("plot", self.plot)
            return record.save(self.record, overwrite=overwrite)


def launched_processes() -> int:
    """How many processes ``torchrun`` (or another launcher) started, as its ``WORLD_SIZE`` says, known before any
    process group; 1 when unset or not a number. The one reading of ``WORLD_SIZE``, for the commands' checks (made
    without importing torch) and :mod:`fwdlearn.distributed` alike."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


def launch_rank() -> int:
    """This process's rank as ``torchrun`` set it (``RANK``), known before any process group; 0 outside a launch of
    several processes (``WORLD_SIZE`` unset or 1: a stray ``RANK`` alone made a lone process silence its errors and
    skip the run lock as a non-leading rank does)."""
    if launched_processes() <= 1:
        return 0
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def refuse_torchrun(job: str) -> None:
    """Raise :class:`UsageError` under ``torchrun`` (``WORLD_SIZE`` > 1): command ``job`` does not share its work out,
    so every process would run all of it and write the same files."""
    if launched_processes() > 1:
        raise UsageError(f"fwdlearn {job.replace('-', ' ', 1)} runs in one process: start it without torchrun "
                         "(torchrun scales out seq train and influence graph)")


def check_run_name(name: str, elsewhere: str = "; write elsewhere with --json (and --checkpoint)") -> None:
    """Refuse a ``--name`` that would leave ``runs/``: an absolute path, ``..``, or ``.``; one that begins with ``~``
    (the home folder to the output path flags, it made a folder ``runs/~``); and one whose parts are
    blank or begin or end with a space (``' '`` wrote ``runs/ .json``); on Windows, one with a character its file names
    may not hold (``--name dfa:gaussian``, a method's name, wrote the record into a hidden stream of a file ``dfa``,
    and ``c:x`` wrote ``x.json`` outside ``runs/``)."""
    if Path(name).is_absolute() or ".." in Path(name).parts or Path(name).name in ("", "."):
        raise UsageError(f"--name {name!r} must name a run under {RUNS_FOLDER}/ (no absolute path, no '..', not '.')"
                         f"{elsewhere}")
    if name.startswith("~"):  # (the shell leaves --name=~/x as it is: it made a folder runs/~, where the output paths
        # flags expand ~ to the home folder)
        raise UsageError(f"--name {name!r} names a run under {RUNS_FOLDER}/, where a leading '~' is kept as it is "
                         f"({RUNS_FOLDER}/{name}...), not read as your home folder: choose a name without it"
                         f"{elsewhere}")
    _check_blank_parts("--name", name, "a run name")
    if files.WINDOWS and (refused := sorted(set(name) & set(_NOT_IN_WINDOWS_NAMES))):
        fixed = "".join("-" if c in _NOT_IN_WINDOWS_NAMES else c for c in name)
        raise UsageError(f"--name {name!r}: Windows allows no {' '.join(map(repr, refused))} in a file name; choose "
                         f"a name without (e.g. {fixed!r})")


def _check_blank_parts(flag: str, value: str, what: str) -> None:
    """Refuse a path whose name or a folder in it is blank or begins or ends with a space (``' '`` wrote
    ``runs/ .json``)."""
    if any(part != part.strip() or not part for part in Path(value).parts):
        raise UsageError(f"{flag} {value!r}: {what} (and each folder in it) must not be blank or begin or end with "
                         "a space")


def run_outputs(job: str, options: RunOptions, *, checkpoint: str | None = None, plot: str = "",
                out: str | None = None, resume: bool = False, scales_out: bool = False,
                splits: int | None = None, more: Sequence[str] = (),
                inputs: Sequence[tuple[str, str | Path]] = ()) -> RunPaths:
    """Resolve this run's output paths (see the module doc) and check them before any work.

    Args:
        job: the command's name in default file names (``"seq-train"``).
        options: the run options (``name``, ``json``, ``overwrite``).
        checkpoint: ``None``: the command keeps no checkpoint; ``""``: the default path; else the path.
        plot: the ``--plot`` path (``""``: none).
        out: benches: the ``--out`` results prefix (``""``: from the name, or fresh); ``None``: no tables.
        more: benches: suffixes of further files next to the tables (``"-alignment.png"``: ``<out>-alignment.png``),
            appended to :attr:`RunPaths.results` and checked as they are.
        inputs: ``(flag, path)`` of the files the command reads (``--checkpoints``, a ``--data`` file): an output
            that names one is refused, ``--overwrite`` or not (it would replace what the run reads).
        resume: the checkpoint must exist (it is continued), instead of must not; the record may exist (the
            continued run rewrites its own record).
        scales_out: the command shares its work out under ``torchrun``; a command that does not is refused there
            (every process would run all of it and write the same files).
        splits: a command run over several splits (``None``: a command without splits) keeps a checkpoint per
            split (:attr:`RunPaths.split_checkpoints`), checked and locked with the first; a fresh run refuses (or
            with ``--overwrite`` removes, once it holds the locks) an earlier run's checkpoints of further splits,
            which a later ``--resume`` with more splits would otherwise continue; with ``--overwrite`` it removes
            the earlier run's checkpoints of its own later splits too, which a ``--resume`` after an interrupt in
            an earlier split would otherwise continue as this run's.

    Raises:
        UsageError: two outputs share a path, an output is one of the ``inputs``, a bench's results would replace
            another command's run record, the record would replace another command's run record that names files
            this run does not write, a path cannot be written, a plot format is unknown, a ``--name`` ends with a
            slash, a bench is given both ``--name`` and ``--out``, a command whose one named file is its record
            both ``--name`` and ``--json``.
        FileExistsError: an output exists and ``--overwrite`` was not given.
        FileNotFoundError: ``resume`` and the checkpoint does not exist.
    """
    from .reporting import result_paths

    if not scales_out:
        refuse_torchrun(job)
    if launched_processes() > 1 and not (options.name or options.json or out):
        raise UsageError("under torchrun pass --name (every process must agree on the run's file names)")
    if options.name:
        check_run_name(options.name)
        if out:  # (the results and the record took --out's prefix: the name named no file, and was dropped in silence)
            raise UsageError(f"--name {options.name} and --out {out} both name the bench's files (--name: "
                             f"{RUNS_FOLDER}/<name>.json, .md and -record.json; --out: <out>.json, ...): give one")
        if options.json and checkpoint is None and out is None:  # (a command whose one file is its record: likewise)
            raise UsageError(f"--name {options.name} and --json {options.json} both name the run record, this "
                             "command's one file by name: give one")
        if options.name.endswith(("/", os.sep)):  # (the slash was dropped: --name sweep/ wrote runs/sweep.json, not a
            # run in the folder runs/sweep/, where --json, --checkpoint and --out refuse a folder)
            raise UsageError(f"--name {options.name!r} ends with a slash, a folder; --name names a run (its files "
                             f"{RUNS_FOLDER}/<name>.json, ...): name one inside the folder, e.g. --name "
                             f"{options.name.rstrip('/' + os.sep)}/run")
    if resume and not (options.name or options.json or checkpoint):  # (a fresh name's checkpoint never exists)
        raise UsageError("--resume needs a checkpoint: pass the --name (or --checkpoint) of the run to continue")
    stem = Path(RUNS_FOLDER) / options.name if options.name else fresh_stem(job)
    paths = RunPaths(record=stem.with_name(stem.name + ".json"), record_flag="--name" if options.name else "--json")
    out = os.path.expanduser(out) if out else out
    if out and (out.endswith(("/", os.sep)) or Path(out).is_dir()):
        raise UsageError(f"--out {out!r} is a folder; --out is a prefix of the result files: name them inside it, "
                         f"e.g. --out {os.path.join(out, 'results')}")
    if out:
        _check_blank_parts("--out", out, "a results prefix")
    if out is not None:
        json_path, md_path, record_path = result_paths(out or stem)
        prefix = md_path.with_suffix("")
        extras = tuple(prefix.with_name(prefix.name + suffix) for suffix in more)
        paths.results, paths.record = (json_path, md_path, *extras), record_path
        paths.record_flag = "--out" if out else paths.record_flag
        if out or options.name:  # (before the refusal of an existing file, which offers --overwrite)
            _refuse_a_run_record(json_path, "--out" if out else "--name", out or options.name)
    if options.json:
        paths.record, paths.record_flag = _output_path("--json", options.json), "--json"
    if checkpoint is not None:
        if checkpoint:
            paths.checkpoint = _output_path("--checkpoint", checkpoint)
        elif options.json and not options.name:
            paths.checkpoint = paths.record.with_suffix(".pt")  # next to the record
            paths.checkpoint_flag = "--json"
        else:
            paths.checkpoint = stem.with_name(stem.name + ".pt")
            paths.checkpoint_flag = "--name" if options.name else "--checkpoint"
    if plot:
        paths.plot = _output_path("--plot", plot)
    if paths.checkpoint is not None and splits is not None and splits > 1:
        paths.split_checkpoints = tuple(split_checkpoint(paths.checkpoint, i) for i in range(1, splits))
    # a set of files a killed run was renaming into place (a bench's results, table and record) is finished first,
    # so that what the checks below find, and what a refusal leaves, is one run's whole set
    finish_renames(*(path for _, path in paths.outputs()))
    _refuse_inputs_as_outputs(paths, inputs)
    _check_outputs(paths, options.overwrite, resume, job)
    if paths.checkpoint is not None and splits is not None:  # an earlier run's checkpoints of further splits
        if not resume:
            paths.stale = _further_splits(paths.checkpoint, splits, options.overwrite)
            if options.overwrite:  # and of this run's later splits: until this run saves them they are the earlier
                # run's, and a --resume after an interrupt in split 0 continued them (finished, with the old settings)
                paths.stale += tuple(p for i, p in _split_files(paths.checkpoint, 1).items() if i < splits)
        elif more := _split_files(paths.checkpoint, splits):  # this run's: fewer splits would leave them unfinished
            last = max(more)
            raise UsageError(f"{more[last]} is split {last}'s checkpoint of this run: it has at least {last + 1} "
                             f"splits; resume with --splits {last + 1} (or as many as it was started with)")
    if paths.checkpoint is not None and scales_out and not resume:
        paths.stale += _process_checkpoints(paths.checkpoint, options.overwrite)
    if options.overwrite and not resume and _own_files(paths):  # the record of the run this one starts over: kept
        # until this run's own, it named the checkpoint this run's first save replaces (a run killed after that save,
        # SIGKILL or the OOM killer, left the earlier run's record -- its config, steps, scores -- naming it)
        paths.stale += (paths.record,)
    paths.named = bool(options.name or options.json or out or checkpoint)  # a fresh default name is never shared
    return paths


_held: list[Path] = []
#: torch's thread count before a run's --threads changed it (restored by release_runs)
_threads_before: int | None = None
#: the running command's checkpoints (split 0's first) as they were when it started (``(inode, mtime)``, ``None``: no
#: file), and whether it resumes them: :func:`resumable_checkpoint` tells what the run itself saved
_checkpoints: dict[Path, tuple[int, int] | None] = {}
_resuming = False
#: the running command's :attr:`RunPaths.resume_naming`
_resume_naming = ""


def lock_run(record: Path) -> None:
    """Hold ``<record>.lock`` (holding this process's id) until :func:`release_runs` or exit.

    Raises:
        UsageError: a live process holds it (another run with the same name); a lock whose process is gone
            is taken over. Under ``torchrun`` only rank 0 locks (every process shares the names).
    """
    if launch_rank() != 0:
        return
    lock = record.with_name(record.name + ".lock")
    mine = lock.with_name(f"{lock.name}.{os.getpid()}")
    try:
        with writing(lock):  # (a full disk said "[Errno 28] No space left on device", naming no file)
            lock.parent.mkdir(parents=True, exist_ok=True)
            mine.unlink(missing_ok=True)  # (a killed process's of this id, or a link: never written through)
            mine.write_text(str(os.getpid()))  # linked into place whole, so a lock is never seen without its owner
            synced(mine)  # (unsynced, a power loss could leave the lock empty, refused as "not a lock fwdlearn left")
    except BaseException:
        remove_quietly(mine)  # (it was left behind, empty)
        raise
    # one process at a time reads, takes over and takes the locks of a folder: two runs that both found a dead
    # process's lock could otherwise both remove it, the second removing the first's fresh lock, and both run
    with _one_at_a_time(lock.parent):
        _take(lock, mine, record)


@contextmanager
def _one_at_a_time(folder: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` (released when the block ends, or when the process dies). Where
    none can be held -- no ``fcntl`` (Windows), a folder this process may write but not read, a file system without
    ``flock`` on folders (NFS may refuse it) -- the block runs without it, as locks were taken before."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # (closing releases the flock)


def _place(mine: Path, lock: Path) -> None:
    """Link ``mine`` into place as ``lock`` (``FileExistsError`` when there is one). A file system without hard links
    (FAT and exFAT drives, some network and virtual machines' shared folders: the link's ``EPERM`` was reported as a
    permission to check, and no run could start there) gets ``lock`` created exclusively, the id then written into
    it; a process reading it meanwhile would find it empty, which the folder's ``flock`` (:func:`_one_at_a_time`)
    rules out where there is one."""
    try:
        os.link(mine, lock)
        return
    except FileExistsError:
        raise
    except (OSError, AttributeError, NotImplementedError):  # (no hard links here: the exclusive create says why not)
        pass
    with writing(lock):
        handle = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            with os.fdopen(handle, "w") as f:
                f.write(str(os.getpid()))
            synced(lock)
        except BaseException:
            remove_quietly(lock)  # (ours, empty: left, it would be taken for a dead process's)
            raise


def _take(lock: Path, mine: Path, record: Path) -> None:
    """Link ``mine`` (this process's id) into place as ``lock``, taking over a lock whose process is gone."""
    try:
        while True:  # ends by taking the lock, or by an error naming the live process that holds it
            try:
                _place(mine, lock)
            except FileExistsError:
                owner = _lock_owner(lock)
                if owner is None:  # (a file of the user's, which was taken for a dead run's lock and deleted)
                    raise UsageError(f"{lock} is in the way of this run's lock on {record}: it is not a lock fwdlearn "
                                     "left (no process id could be read from it); move or remove it, or choose "
                                     "another --name")
                if owner != os.getpid() and alive(owner):
                    raise UsageError(f"another fwdlearn run (process {owner}) is writing {record}; wait for it to "
                                     f"finish or choose another --name (remove {lock} if no such run exists)") from None
                lock.unlink(missing_ok=True)  # left by a process that is gone
                continue
            _held.append(lock)
            return
    finally:
        mine.unlink(missing_ok=True)


#: the most bytes read of a file at a lock's path: a lock holds its process's id, a few digits (a file of 2 GB there
#: took 16 s and 4 GB of memory to be found no lock)
LOCK_BYTES = 64


def _lock_owner(lock: Path) -> int | None:
    """The process id a lock at ``lock`` holds (a lock is linked into place whole, with its owner's id); ``None`` when
    it holds none: a file that is no lock of fwdlearn's (a user's; one longer than :data:`LOCK_BYTES`, of which no
    more is read), a folder, or one that cannot be read."""
    try:
        if not lock.is_file():
            return None
        text = read_at_most(lock, LOCK_BYTES).decode("ascii").strip()
    except (OSError, ValueError):  # (longer than a lock; UnicodeDecodeError is a ValueError too)
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def release_runs() -> None:
    """Remove the locks this process holds and restore torch's thread count from before ``--threads`` (the CLI does
    it when a command ends, so that ``main([...])`` called from Python leaves the process as it was; also at exit)."""
    global _threads_before, _resuming, _resume_naming
    while _held:
        _held.pop().unlink(missing_ok=True)
    _checkpoints.clear()
    _resuming, _resume_naming = False, ""
    if _threads_before is not None:
        import torch

        torch.set_num_threads(_threads_before)
        _threads_before = None


atexit.register(release_runs)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def resumable_checkpoint() -> Path | None:
    """The checkpoint ``--resume`` continues the running command's run from (the one :func:`start_run` was given), when
    there is one: a run that resumes it, or that saved one of its checkpoints since it started (a split's, a layer's;
    a save replaces the file, so a file as it was at the start is an earlier run's); else ``None``. The CLI names it
    when an interrupt lands outside a training loop (between splits or layers, in the final evaluation)."""
    if not _checkpoints:
        return None
    first = next(iter(_checkpoints))
    if _resuming and first.is_file():
        return first
    saved = any(_identity(path) not in (None, before) for path, before in _checkpoints.items())
    return first if saved and first.is_file() else None


def kept_checkpoint() -> Path | None:
    """The checkpoint the running command keeps (split 0's; a bench's progress), saved yet or not; ``None`` when it
    keeps none. (:func:`resumable_checkpoint` is the one to name for ``--resume``: saved, or resumed.)"""
    return next(iter(_checkpoints), None)


def resume_naming(checkpoint: Path) -> str:
    """How the running command, run again with ``--resume``, names ``checkpoint`` (:func:`resumable_checkpoint`) when
    it was run without a name: ``--checkpoint <path> if it had no --name``, or a bench's ``--out <prefix> ...``."""
    return _resume_naming or f"--checkpoint {checkpoint} if it had no --name"


def split_checkpoint(path: Path, split: int) -> Path:
    """The checkpoint of split ``split`` >= 1 of a run whose first checkpoint is ``path``:
    ``<stem>-split<i><suffix>``."""
    return path.with_name(f"{path.stem}-split{split}{path.suffix}")


def _split_files(path: Path, splits: int) -> dict[int, Path]:
    """The checkpoints of splits ``>= splits`` beside ``path`` (``<stem>-split<i><suffix>``) by split. A file with a
    record of its own beside it (``<stem>-split<i>.json``) is the checkpoint of a run of that name, not a split."""
    pattern = re.compile(re.escape(path.stem) + r"-split(\d+)" + re.escape(path.suffix))
    found = {}
    for p in path.parent.glob(f"{path.stem}-split*{path.suffix}"):
        match = pattern.fullmatch(p.name)
        if match and int(match.group(1)) >= splits and not p.with_suffix(".json").exists():
            found[int(match.group(1))] = p
    return dict(sorted(found.items()))


def _further_splits(path: Path, splits: int, overwrite: bool) -> tuple[Path, ...]:
    """An earlier run's checkpoints of splits ``>= splits`` (to remove), refused unless ``overwrite``."""
    further = tuple(_split_files(path, splits).values())
    if further and not overwrite:
        raise FileExistsError(f"{further[0]} is a checkpoint of an earlier run of this name with more splits; pass "
                              "--overwrite to start over (it is removed), or choose another --name")
    return further


def process_checkpoint(path: str | Path, rank: int) -> Path:
    """Where process ``rank`` > 0 of a ``torchrun`` run keeps its part of the checkpoint ``path``:
    ``<path>.rank<rank>`` (a full training state, with its stream position and carried state)."""
    path = Path(path)
    return path.with_name(f"{path.name}.rank{rank}")


def _process_checkpoints(path: Path, overwrite: bool) -> tuple[Path, ...]:
    """An earlier ``torchrun`` run's checkpoints of processes ``r > 0`` (``<checkpoint>.rank<r>``, to remove),
    refused unless ``overwrite``: a fresh run of several processes would find them only at its first save (and
    fail there), and an overwriting run of one process would leave them beside its own checkpoint."""
    pattern = re.compile(re.escape(path.name) + r"\.rank(\d+)(\.prev)?")  # (process_checkpoint's names, and the
    # save before the last each process keeps: fwdlearn.fit.previous_checkpoint)
    siblings = path.parent.iterdir() if path.parent.is_dir() else ()
    found = sorted((p for p in siblings if pattern.fullmatch(p.name)),  # rank order, each file before its .prev
                   key=lambda p: (int(pattern.fullmatch(p.name)[1]), p.name))
    if found and not overwrite:
        raise FileExistsError(f"{found[0]} is a checkpoint of an earlier run of this name with several processes; "
                              "pass --resume (with as many processes) to continue it, --overwrite to start over (it "
                              "is removed), or choose another --name")
    return tuple(found)


def record_files(path: str | Path) -> tuple[str, dict[str, tuple[str, set[Path]]]] | None:
    """``(job, {kind: (path as recorded, paths)})`` of the run record at ``path``: its command and the files it names,
    each with the paths it may mean (:meth:`fwdlearn.records.SavedRecord.spellings`: links resolved; a relative one
    as typed, from the run's folder, its ``"cwd"`` -- resumed from another folder -- from this one, or from a folder
    above the record -- the run's folder moved or renamed since, or mounted elsewhere); ``""`` for the job of JSON that
    names none; ``None`` when ``path`` holds no run record (:func:`fwdlearn.records.read_record`: no file, not JSON, a
    bench's results, a file of the user's)."""
    try:
        found = read_record(path)
    except InputError:  # (a file that is no run record)
        return None
    if found is None:
        return None
    return found.job, {kind: (given, found.spellings(kind)) for kind, given in found.files.items()}


def _own_files(paths: RunPaths) -> set[Path]:
    """The files a resumed run may rewrite: its record, when that names the run's checkpoint, and the files the
    record names (its plot); an unrelated file at the same path is not the run's to replace."""
    if paths.checkpoint is None or not paths.record.is_file():
        return set()
    found = record_files(paths.record)
    named = set().union(*(spellings for _, spellings in found[1].values())) if found else set()
    if Path(os.path.realpath(paths.checkpoint)) not in named:  # (links resolved: another spelling of the run's files)
        return set()
    return named | {Path(os.path.realpath(paths.record))}


def _refuse_another_commands_record(paths: RunPaths, job: str) -> None:
    """Refuse, ``--overwrite`` or not, a record path that holds the record of another command's run which names files
    this run does not write (``influence seq --name foo`` over ``seq train --name foo``'s record, a bench's
    ``<out>-record.json`` over ``graph train --name <out>-record``'s): replacing it left that run's checkpoint (or
    results) without its record, and the refusal without ``--overwrite`` said to pass it."""
    found = record_files(paths.record)
    if found is None or found[0] in ("", job):  # (a run of this command: --overwrite starts it over)
        return
    ours = {Path(os.path.realpath(path)) for _, path in paths.outputs()}
    for kind, (given, spellings) in found[1].items():
        if any(p.is_file() for p in spellings) and not ours & spellings:
            raise UsageError(f"{paths.record} is the record of a '{found[0]}' run, which names its {kind} {given}; "
                             f"this run would replace that record and leave the {kind} without it (--overwrite "
                             f"replaces this run's own files only): give this run another {paths.record_flag}, or "
                             f"remove {paths.record} first if that run is no longer wanted")


def _refuse_unreadable_record(paths: RunPaths) -> None:
    """Refuse to resume a run whose record is there but cannot be read (cut short, damaged, not a record), saying so:
    it was "already exists; choose another output path or pass --overwrite", as if a resumed run did not rewrite its
    own record."""
    try:
        read_record(paths.record)
    except InputError as error:
        raise FileExistsError(f"{error}, so --resume cannot tell whether it is this run's own record (which it "
                              f"rewrites); pass --overwrite with --resume to replace it, or give this run another "
                              f"--json") from None


def _refuse_inputs_as_outputs(paths: RunPaths, inputs: Sequence[tuple[str, str | Path]]) -> None:
    """Refuse an output path that is one of the files the command reads (an existing file, links resolved)."""
    read = {Path(os.path.realpath(path)): (flag, path) for flag, path in inputs if path and Path(path).is_file()}
    for flag, path in paths.outputs():
        if Path(os.path.realpath(path)) in read:
            source, given = read[Path(os.path.realpath(path))]
            if flag != "--checkpoint" and path != paths.record and (path == paths.checkpoint
                                                                     or path in paths.split_checkpoints):
                # (a checkpoint placed beside the record: it read "--json g.pt is the file ...", given --json g.json;
                # --json g.pt is the record itself, which --checkpoint would not move)
                raise UsageError(f"the checkpoint {path}, which {flag} places beside the record {paths.record}, is "
                                 f"the file {source} {given} reads: an output never replaces what the command reads; "
                                 f"give {flag} another value, or the checkpoint its own path with --checkpoint")
            raise UsageError(f"{flag} {path} is the file {source} {given} reads: an output never replaces what the "
                             f"command reads; give {flag} another path")


def _refuse_a_run_record(results: Path, flag: str, given: str) -> None:
    """Refuse, ``--overwrite`` or not, a bench's results ``<out>.json`` that is another command's run record: a
    bench's ``--name foo`` writes ``runs/foo.json``, the very file ``graph train --name foo`` keeps its record in (the
    refusal without ``--overwrite`` said to pass it, and the record went, leaving ``runs/foo.pt`` without it)."""
    found = record_files(results)  # (none there, a folder, not a record: the checks of the outputs say what it is)
    if found is not None and found[0]:  # (JSON that names no command is no run's)
        raise UsageError(f"{results} is the run record of a '{found[0]}' run, not a bench's results; "
                         f"{flag} {given} would replace it (--overwrite replaces results only): give the bench another "
                         f"{flag}")


def _output_path(flag: str, given: str | Path) -> Path:
    """An output flag's file: ``~`` expanded (as the inputs' are; it made a folder named ``~``), a trailing slash
    refused (it was dropped, and a file written where a folder was meant)."""
    text = str(given)
    if text.endswith(("/", os.sep)):
        suffix = {"--plot": ".png", "--json": ".json"}.get(flag, ".pt")
        raise UsageError(f"{flag} {text!r} ends with a slash, a folder; {flag} names a file: e.g. "
                         f"{flag} {os.path.join(text, 'run' + suffix)}")
    return Path(text).expanduser()


def _check_outputs(paths: RunPaths, overwrite: bool, resume: bool, job: str) -> None:
    seen: dict[Path, str] = {}
    for flag, path in paths.outputs():
        key = Path(os.path.realpath(path))  # (a symlinked spelling of one file is that file)
        if key in seen and seen[key] == flag:  # (--json x.pt: the record, and the checkpoint named after it)
            raise UsageError(f"{flag} {path} would name the record and the checkpoint beside it (the record's name "
                             f"with .pt) alike; end {flag} with .json, or give --checkpoint its own path")
        if key in seen:
            raise UsageError(f"{seen[key]} and {flag} both name {path}; give each output its own path")
        seen[key] = flag
    _refuse_another_commands_record(paths, job)  # (before the refusals of existing files, which offer --overwrite)
    if paths.checkpoint is not None and not resume and not overwrite:  # before the record's refusal, which would
        for path in (paths.checkpoint, *paths.split_checkpoints):      # only say that it exists
            if path.is_file():
                made_by = record_files(paths.record)  # (another command's run: --resume said here refused it)
                if made_by is not None and made_by[0] not in ("", job) and any(
                        Path(os.path.realpath(path)) in spellings for _, spellings in made_by[1].values()):
                    raise FileExistsError(f"checkpoint {path} is a '{made_by[0]}' run's (its record: {paths.record}), "
                                          "which this command cannot continue; choose another --name, or pass "
                                          "--overwrite to replace that run")
                raise FileExistsError(f"checkpoint {path} already exists; pass --resume to continue that run, "
                                      "--overwrite to start it over, or choose another --name")
    own = _own_files(paths) if resume else set()
    checkpoints = {paths.checkpoint, *paths.split_checkpoints}
    for flag, path in paths.outputs():
        if path in checkpoints:
            continue
        check_writable(path, flag)  # a resumed run rewrites its own record and plot, nobody else's
        if resume and not overwrite and path == paths.record:
            _refuse_unreadable_record(paths)
        refuse_overwrite(path, overwrite=overwrite or Path(os.path.realpath(path)) in own)
    if paths.checkpoint is not None:
        ckpt, flag = paths.checkpoint, paths.checkpoint_flag
        if ckpt.is_dir() and flag != "--checkpoint":  # (named after --name or --json: the user gave no --checkpoint)
            raise UsageError(f"the checkpoint {ckpt}, named after {flag}, is a folder; choose another {flag}, move the "
                             f"folder, or give --checkpoint a file path")
        if ckpt.is_dir():
            raise UsageError(f"--checkpoint {ckpt} is a folder; give the checkpoint's file path "
                             f"(e.g. {ckpt / 'run.pt'})")
        if resume and not ckpt.is_file():  # (a resumed run may not have reached the later splits yet)
            raise FileNotFoundError(f"--resume was given but the checkpoint {ckpt} does not exist; pass the "
                                    "--name (or --checkpoint) of the run to continue")
        for path in (ckpt, *paths.split_checkpoints):
            check_writable(path, flag)
    elif resume:
        raise UsageError("--resume needs a checkpoint: pass the --name (or --checkpoint) of the run to continue")
    if paths.plot is not None:
        check_plot_format(paths.plot)


def resolve_device(spec: str) -> Any:
    """The ``torch.device`` a ``--device`` value names; :class:`~fwdlearn.errors.UsageError` when it is
    unknown or not present on this machine."""
    import torch

    text = spec.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {spec!r} is not a device; use cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {spec}: this machine has no CUDA device (torch.cuda.is_available() is "
                             "False); use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"numbered from 0; use cuda:0..cuda:{torch.cuda.device_count() - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError(f"--device {spec}: MPS is not available on this machine; use --device cpu or auto")
    elif device.type != "cpu":
        raise UsageError(f"--device {spec}: fwdlearn runs on cpu, cuda or mps")
    return device


def start_run(options: RunOptions, paths: RunPaths | None = None) -> Any:
    """Apply the run options that act on the process (``--threads``) and return the ``--device`` as a
    ``torch.device`` (checked to exist); with the run's ``paths``, when they were named, hold their lock
    (:func:`lock_run`), and note the run's checkpoints as they are now (:func:`resumable_checkpoint`; a run without
    one has none, whatever an earlier run in the process kept)."""
    import torch

    device = resolve_device(options.device)
    if paths is not None:
        if paths.named:  # the record, the checkpoints and the tables: two runs never write one file
            for path in (paths.record, paths.checkpoint, *paths.split_checkpoints, *paths.results[:1]):
                if path is not None:
                    lock_run(path)
        if launch_rank() == 0:  # the process that holds the locks, once they are ours: never
            remove_stale_tmp(*(path for _, path in paths.outputs()))  # a live run's save, nor its split checkpoints
            for path in paths.stale:
                if path.with_name(path.name + ".lock") not in _held:  # (the record's: held above)
                    lock_run(path)  # refused while a live run holds it (a run of that very name, say)
                path.unlink(missing_ok=True)
    global _resuming, _resume_naming
    _checkpoints.clear()  # (this run's alone: a run without a checkpoint, started after one that kept one -- run_train
    _resuming = False     # called from Python, then another command -- was told to --resume the earlier run's)
    if paths is not None and paths.checkpoint is not None and launch_rank() == 0:
        _checkpoints.update({path: _identity(path) for path in (paths.checkpoint, *paths.split_checkpoints)})
        _resuming = bool(getattr(options, "resume", False))
    _resume_naming = paths.resume_naming if paths is not None else ""
    if options.threads:
        global _threads_before
        if _threads_before is None:
            _threads_before = torch.get_num_threads()
        torch.set_num_threads(options.threads)
    return device
