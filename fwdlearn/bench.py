"""The frame every ``fwdlearn bench`` run shares, whatever it measures.

:class:`BenchRun` resolves and checks the outputs before any work (``<out>.json`` / ``<out>.md``, the run
record ``<out>-record.json`` and further files such as a plot; nothing overwritten without ``--overwrite``),
applies the run options (``--threads``, ``--device``) and opens the run record; :meth:`BenchRun.finish` writes
the results (as :func:`~fwdlearn.reporting.write_results`) and the record that names them, the three together.
:func:`run_parts` is the whole run of a bench made of parts that fill one table and of claims checked at the end.
Each fit or group of interleaved timings runs as a piece (:meth:`BenchRun.piece`), saved in ``<out>-progress.pt`` as
it ends: ``--resume`` after an interrupt reads the pieces finished (:mod:`fwdlearn.bench_progress`).

Example::

    bench = BenchRun.start("bench-mine", config)
    rows = [{"method": "bp", "seconds": 1.0}]
    json_path, md_path = bench.finish(rows, ["method", "seconds"], title="Mine", notes="...")
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .bench_progress import PROGRESS_SUFFIX, BenchProgress, saved_job
from .errors import UsageError
from .files import check_writable, remove_quietly
from .records import RunRecord
from .reporting import markdown_table, result_paths, result_texts
from .runs import RunPaths, record_files, run_outputs, start_run

__all__ = ["BenchRun", "run_parts", "distinct_names", "check_rules_build", "shown", "apart", "below", "at_most",
           "at_least", "ROUNDING"]

#: how far a measured figure may sit from a threshold and still count as on it (a mean of 84 % accuracies came out
#: 0.8399999999999999; 2.4 - 2.3 is 0.09999999999999964): every bench's claims compare with this tolerance
ROUNDING = 1e-9


def shown(value: float, threshold: float, places: int) -> str:
    """``value`` to ``places`` decimals, or as many more as keep it off ``threshold``, so that a claim's verdict
    follows from the number printed beside it (83.996 printed as 84.00 stood beside 'MISSED' for '>= 84.0', a worst
    ratio of 0.7004 as 0.700 beside 'NO' for '<= 0.7'); a value within :data:`ROUNDING` of the threshold, on it, is
    printed as the threshold."""
    if abs(value - threshold) <= _on(threshold):
        return f"{threshold:.{places}f}"
    while places < 8 and round(value, places) == round(threshold, places):
        places += 1
    return f"{value:.{places}f}"


def below(value: float, threshold: float) -> bool:
    """Whether ``value`` is strictly below ``threshold`` as :func:`shown` and :func:`apart` print them: a value within
    :data:`ROUNDING` of it is on it, so not below (1 - 1e-12 printed 1.000 beside 'faster: yes', where 1.0 stood
    beside 'NO')."""
    return value < threshold - _on(threshold)


def at_most(value: float, threshold: float) -> bool:
    """Whether ``value`` is at most ``threshold`` as :func:`shown` prints them: a value within :data:`ROUNDING` of it
    (scaled by the threshold's size, as :func:`shown` scales it) is on it. (A fixed 1e-9 let 1.05 + 1.02e-9 print as
    1.050 beside 'within 5%: NO'.)"""
    return value <= threshold + _on(threshold)


def at_least(value: float, threshold: float) -> bool:
    """Whether ``value`` is at least ``threshold`` as :func:`shown` prints them (see :func:`at_most`)."""
    return value >= threshold - _on(threshold)


def _on(threshold: float) -> float:
    """How far from ``threshold`` a value still counts as on it: :data:`ROUNDING`, times the threshold's size above 1
    (figures of 84 or 1.2 carry their rounding in proportion)."""
    return ROUNDING * max(1.0, abs(threshold))


def apart(first: float, second: float, places: int) -> tuple[str, str]:
    """Two figures a claim compares, each to ``places`` decimals or as many more as tell them apart (2.10090 and
    2.10092, printed 2.1009 and 2.1009 beside 'DSF better: yes')."""
    text = shown(first, second, places)
    decimals = len(text.partition(".")[2])
    return text, f"{second:.{decimals}f}"


def check_rules_build(flag: str, given: Sequence[str], rules: Sequence[str], build: Callable[[str], Any]) -> None:
    """Before any part runs, build a tiny model under each of ``rules`` (the canonical spellings of ``given``, the
    rules as typed after ``flag``); a model's refusal is said naming ``flag`` and the rule as typed (it named
    neither: '--rules sf' read 'got local:prototype', after the parts before had run)."""
    for typed, rule in zip(given, rules):
        try:
            build(rule)
        except ValueError as error:
            raise UsageError(f"{flag} {typed}: {error}") from None


def distinct_names(flag: str, given: Sequence[str], name_of: Callable[[str], str], what: str,
                   same_as: Callable[[str], Any] | None = None) -> list[str]:
    """``given`` (a list flag's values) by the one name each is keyed by in results, baselines and verdicts
    (``name_of``: any spelling -> that name; its ``ValueError`` is refused naming ``flag``); a ``what`` (a method,
    a rule) named twice, in whatever spellings, is refused too, as its work would run twice under one name
    (``same_as``, when given, says what a name stands for where two names may be one, e.g. two paths of a file)."""
    names = []
    for value in given:
        try:
            names.append(name_of(value))
        except ValueError as error:
            raise UsageError(f"{flag}: {error}") from None
    keys = [same_as(name) for name in names] if same_as is not None else names
    for key in dict.fromkeys(keys):
        if keys.count(key) > 1:
            same = [value for value, k in zip(given, keys) if k == key]
            name = names[keys.index(key)]
            raise UsageError(f"{flag} names the {what} {name} more than once ({', '.join(same)}); give each once")
    return names


def _device_setting(device: Any) -> str:
    """The device a bench's settings name: its indexed form (``cuda`` is ``cuda:0`` when that is the current device),
    so that a resume given the other spelling of the same device is the same run."""
    import torch

    if device.type == "cuda" and device.index is None:
        return str(torch.device("cuda", torch.cuda.current_device()))
    return str(device)


@dataclass
class BenchRun:
    """One bench run: its checked output ``paths``, the ``device`` it runs on, its run ``record`` and its
    ``progress`` (:class:`~fwdlearn.bench_progress.BenchProgress`, ``<out>-progress.pt``: the pieces finished so far,
    which ``--resume`` reads after an interrupt; :meth:`piece`)."""

    job: str
    config: Any
    paths: RunPaths
    device: Any  # a torch.device (torch is imported only once a run starts)
    record: RunRecord
    progress: BenchProgress

    @classmethod
    def start(cls, job: str, config: Any, more: Sequence[str] = (), resolve: bool = False,
              inputs: Sequence[tuple[str, str | Path]] = ()) -> "BenchRun":
        """Check the outputs of ``config.out`` (and ``<out><suffix>`` for each suffix in ``more``; none of them one of
        the ``inputs``, the ``(flag, path)`` of the files the bench reads), apply the run options and open the record
        of ``config``; with ``resolve`` the config (also the one recorded) has its ``device`` and ``out`` replaced by
        the resolved device and results prefix. The progress ``<out>-progress.pt`` is checked with the outputs (with
        ``config.resume``: it must be there, an interrupted run's of this bench with the same settings; without:
        an interrupted run's is refused, or with ``--overwrite`` removed; another bench's is refused even then) and
        held as the run's checkpoint (locked with the record; an interrupt after a piece was saved names it and
        ``--resume``)."""
        paths = run_outputs(job, config, out=config.out, more=more, inputs=inputs)
        resume = bool(getattr(config, "resume", False))
        progress = _progress_path(job, paths, config, resume)
        paths.checkpoint, paths.checkpoint_flag = progress, _named_by(config)
        paths.resume_naming = f"--out {_prefix(paths)} if it had no --out or --name"
        if config.overwrite and not resume and progress.is_file():  # (an interrupted run's: this one starts over,
            paths.stale += (progress,)                                # removed once start_run holds the locks)
        device = start_run(config, paths)
        if resolve:
            config = replace(config, device=str(device), out=str(_prefix(paths)))
        # (the settings name the device run on: --device auto then cpu is one run, wherever the config resolves it;
        # cuda then cuda:0 is one run too)
        measured = replace(config, device=_device_setting(device))
        return cls(job, config, paths, device, RunRecord(job, config, seed=config.seed),
                   BenchProgress.open(progress, job, measured, resume, inputs))

    def piece(self, key: str, compute: Callable[[], Any]) -> Any:
        """The result of the bench's piece ``key`` (one fit, one group of interleaved timings): read from the
        interrupted run's progress under ``--resume`` when it finished the piece, else ``compute()``, saved to the
        progress before it is returned (:meth:`BenchProgress.piece <fwdlearn.bench_progress.BenchProgress.piece>`)."""
        return self.progress.piece(key, compute)

    @property
    def results(self) -> tuple[Path, ...]:
        """``(<out>.json, <out>.md, <out><suffix> for each of more)``."""
        return self.paths.results

    @contextmanager
    def drawing(self) -> Iterator[None]:
        """Inside the block the run draws its further files (``<out><suffix>``, a plot) and :meth:`finish` writes
        the rest: an error or an interrupt before the record naming them is written (a record that fails to write, a
        full disk, Ctrl-C after the plot) removes those it drew that were not there before, so the failed run leaves
        none behind that a re-run would refuse without ``--overwrite`` ("<out>-alignment.png already exists"). A file
        the written record names stays (Ctrl-C between its renames: the new set is finished whole), and so does one
        there before the block (an earlier run's, which a re-run with ``--overwrite`` replaces again)."""
        new = [path for path in self.results[2:] if not os.path.lexists(path)]
        try:
            yield
        except BaseException:
            found = record_files(self.paths.record)
            named = set().union(*(spellings for _, spellings in found[1].values())) if found else set()
            for path in new:
                if Path(os.path.realpath(path)) not in named:
                    remove_quietly(path)  # (a removal the file system refuses does not hide the run's own error)
            raise

    def finish(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, title: str, notes: str,
               headers: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None,
               files: Mapping[str, str | Path] | None = None) -> tuple[Path, Path]:
        """Write ``<out>.json`` / ``<out>.md`` (as :func:`~fwdlearn.reporting.write_results` does), name them in the
        record (``"results"``, ``"table"``, then each of ``files``: kind -> path, which must exist) and save the record
        (refused over an existing one without ``--overwrite``), the three files together
        (:func:`~fwdlearn.files.atomic_write_all`): a failure or an interrupt while they are written leaves an earlier
        run's three whole, never new results beside an old table or record. An earlier run's file of
        ``<out><suffix>`` that this run did not write (a plot it does not draw) is removed then, not at the start: a
        run that fails keeps the earlier run's files whole; so is, with ``--overwrite``, an earlier run's
        ``<out>-record.json`` when ``--json`` puts this run's record elsewhere (it described the results replaced;
        a file there that names no such results, another command's run record, is left alone).
        Returns the two result paths."""
        json_path, md_path = self.results[:2]
        resumed = self.progress.note()
        if resumed:
            notes += "\n\n" + resumed
            self.record.summary["resumed_pieces"] = list(self.progress.resumed)
        texts = result_texts(rows, columns, title=title, notes=notes, headers=headers, extra=extra)
        for kind, path in (files or {}).items():  # (each must exist: refused before anything is written)
            self.record.add_file(kind, path)
        self.record.save_with(self.paths.record, {"results": (json_path, texts[0]), "table": (md_path, texts[1])},
                              overwrite=self.config.overwrite)
        ours = {Path(path) for path in (files or {}).values()}
        for stale in self.results[2:]:  # (checked at the start: there only with --overwrite)
            if stale not in ours:
                stale.unlink(missing_ok=True)
        usual = result_paths(_prefix(self.paths))[2]  # <out>-record.json: an earlier run's, when --json moved ours
        if self.config.overwrite and usual != self.paths.record and _describes(usual, json_path):  # (it described
            # the results now replaced; a file there that is not their record -- another command's run record --
            # is not this run's to remove: it was deleted, unchecked)
            usual.unlink()
        self.progress.path.unlink(missing_ok=True)  # (the run is whole: nothing is left to resume)
        return json_path, md_path


def _progress_path(job: str, paths: RunPaths, config: Any, resume: bool) -> Path:
    """``<out>-progress.pt``, checked: ``--resume`` needs the file (and a name: a fresh one's never exists); a run
    without it refuses an interrupted run's file unless ``--overwrite`` (which starts over); another bench's (``job``
    is this one) is refused with ``--overwrite`` or ``--resume`` too; no other output is there."""
    progress = _prefix(paths).with_name(_prefix(paths).name + PROGRESS_SUFFIX)
    flag = _named_by(config)
    if resume and not (config.out or config.name):
        raise UsageError("--resume continues an interrupted bench from its <out>-progress.pt, which the bench saves as "
                         "each piece ends: pass the --out (or --name) it was run with")
    for given, path in paths.outputs():
        if os.path.realpath(path) == os.path.realpath(progress):
            raise UsageError(f"{given} {path} is where this bench keeps its progress; give {given} another path")
    if progress.is_dir():
        raise UsageError(f"{progress}, where this bench keeps its progress, is a folder; move it, or give the bench "
                         f"another {flag}")
    if resume and not progress.is_file():
        raise FileNotFoundError(f"--resume was given but {progress} does not exist: no interrupted run of this bench "
                                f"saved its progress there (a finished run removes it); check {flag}, or run without "
                                "--resume")
    other = saved_job(progress) if progress.is_file() else None
    if other is not None and other != job:  # (--overwrite would remove what another bench's interrupted run finished;
        # --resume cannot continue it: refused here, in the flag the run was named by, before the run starts)
        theirs, ours = other.replace("-", " "), job.replace("-", " ")
        text = (f"{progress} holds the progress of an interrupted '{theirs}' run, not of this '{ours}': give this "
                f"bench another {flag} ('fwdlearn {theirs} ... --resume' continues that run")
        if resume:
            raise UsageError(f"--resume: {text})")
        raise FileExistsError(f"{text}; --overwrite removes no other bench's progress)")
    if not resume and not config.overwrite and progress.is_file():
        raise FileExistsError(f"{progress} holds the progress of an interrupted run of this bench: pass --resume to "
                              f"continue it (same settings), --overwrite to start over, or give another {flag}")
    check_writable(progress, flag)
    return progress


def _named_by(config: Any) -> str:
    """The flag a bench's files are named by: ``--name`` when given without ``--out``, else ``--out``."""
    return "--name" if config.name and not config.out else "--out"


def _describes(record: Path, results: Path) -> bool:
    """Whether ``record`` is the run record of the results ``results`` (it names them as its ``"results"``)."""
    found = record_files(record)
    return found is not None and Path(os.path.realpath(results)) in found[1].get("results", ("", set()))[1]


def _prefix(paths: RunPaths) -> Path:
    """The results prefix ``<out>`` of ``<out>.json``."""
    return paths.results[0].with_name(paths.results[0].name[: -len(".json")])


def run_parts(config: Any, job: str, parts: Callable[[Any, list, dict, Callable], None],
              verdicts: Callable[[dict], list[str]],
              columns: list[str], title: str, notes: list[str], more: Sequence[str] = (),
              inputs: Sequence[tuple[str, str | Path]] = ()) -> tuple[Path, Path]:
    """A bench of parts: start the run (:meth:`BenchRun.start`, ``config.out`` and ``config.device`` resolved), run
    ``parts(config, rows, extra, piece)`` (``piece``: :meth:`BenchRun.piece`, through which each fit or group of
    timings is run, saved, and under ``--resume`` read when an interrupted run finished it), check the claims
    (``verdicts(extra)``), write the results (the notes begin with the device, the threads and the whole bench's
    seconds and end with the claims; a resumed run's, with the pieces read) and the record (one metrics row per table
    row), print them (the table unless ``config.quiet``). A file of ``more`` a part drew (a plot) is removed when the
    run then fails or is interrupted before its results are written (:meth:`BenchRun.drawing`)."""
    import torch

    bench = BenchRun.start(job, config, more=more, resolve=True, inputs=inputs)
    config = bench.config
    with bench.drawing():  # (a plot a part drew goes when the results then fail to be written)
        start = time.perf_counter()
        rows: list[dict] = []
        extra: dict = {"config": config, "threads": torch.get_num_threads()}
        parts(config, rows, extra, bench.piece)
        extra["seconds"] = time.perf_counter() - start
        checks = verdicts(extra)
        extra["checks"] = checks
        head = (f"Device: {config.device}, torch threads: {extra['threads']}; whole bench {extra['seconds']:.0f} s"
                f"{' in this process (resumed: see the end)' if bench.progress.resumed else ''}. ")
        text = "\n".join([head + notes[0], *notes[1:], "", "Claims checked in this run:",
                          *(checks or ["(none: the parts that ran check no claim)"])])
        for row in rows:
            bench.record.log(**row)
        bench.record.summary.update({"checks": checks, "seconds": extra["seconds"], "threads": extra["threads"]})
        files = {"plot": extra["plot"]} if extra.get("plot") else {}  # (a part's drawing, named in the record)
        written = bench.finish(rows, columns, title=title, notes=text, extra=extra, files=files)
    if not config.quiet:
        print(markdown_table(rows, columns))
    print("\n".join(checks))
    print(f"results: {written[0]}, {written[1]}{''.join(f', {path}' for path in files.values())}; "
          f"record: {bench.paths.record}")
    return written
