"""Run records: one JSON file per run with the config, metrics, timings, seed, versions (and the commit, run from a git
checkout), the host's arithmetic and the files it wrote.

A record is always valid JSON: a NaN or infinite number is written as ``null`` and listed under
``"non_finite"`` (where it was and what it was). Files a record names (``"files"``) exist when it is saved; a
relative one starts from the record's ``"cwd"``, the working folder of the run. :func:`read_record` reads one back
(the one reader of a record's format: what it names, and where those files are now).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import InputError
from .files import atomic_write, atomic_write_all, refuse_overwrite
from .invocation import invoked_command

__all__ = ["RunRecord", "SavedRecord", "read_record", "NoRunRecord", "RECORD_BYTES", "host_facts", "code_version",
           "library_versions", "to_jsonable", "finite_json", "plain_json", "json_text", "write_json", "refuse_overwrite"]


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries a result depends on (those that are installed)."""
    from importlib import metadata

    versions = {"python": sys.version.split()[0]}
    for name in ("fwdlearn", "torch", "torch-geometric", "datasets", "numpy", "scipy", "networkx"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def to_jsonable(value: Any) -> Any:
    """Turn dataclasses, paths, tensors and numpy scalars into plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # torch / numpy
        return to_jsonable(value.tolist())
    return value


def finite_json(value: Any, notes: list[str] | None = None, where: str = "") -> Any:
    """``value`` with every NaN / infinite float replaced by ``None`` (not JSON otherwise); each replacement
    is appended to ``notes`` as ``"<where>: nan"``."""
    if isinstance(value, float) and not math.isfinite(value):
        if notes is not None:
            notes.append(f"{where or 'value'}: {value}")
        return None
    if isinstance(value, dict):
        return {k: finite_json(v, notes, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_json(v, notes, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def plain_json(value: Any) -> Any:
    """``value`` (a mapping: a record, a result table) as plain, valid JSON values (:func:`to_jsonable`, then
    :func:`finite_json`), its non-finite numbers replaced and listed under ``"non_finite"``. Anything else is
    refused (a ``TypeError`` naming the fix): a list or a number has no place for that list, so a list of rows
    failed only when one of its numbers was NaN."""
    plain = to_jsonable(value)
    if not isinstance(plain, dict):
        raise TypeError(f"plain_json / write_json write a mapping (its non-finite numbers are listed under its "
                        f"\"non_finite\" key); got {type(value).__name__}: wrap it, e.g. {{\"rows\": value}}")
    notes: list[str] = []
    content = finite_json(plain, notes)
    if notes:
        content["non_finite"] = notes
    return content


def json_text(value: Any) -> str:
    """``value`` (a mapping) as the indented, valid JSON :func:`write_json` writes."""
    return json.dumps(plain_json(value), indent=2, allow_nan=False)


def write_json(path: str | Path, value: Any) -> Path:
    """Write ``value`` (a mapping) to ``path`` atomically as indented, valid JSON (:func:`plain_json`: non-finite
    numbers as ``null``, listed under ``"non_finite"``), in UTF-8 (as every text file fwdlearn writes, whatever the
    system's locale)."""
    text = json_text(value)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


#: the settings of the maths libraries that change a run's arithmetic, recorded where given: MKL's (matrix
#: products), torch's CPU kernels' and oneDNN's (GELU, layer kernels; ``DNNL_MAX_CPU_ISA`` is its older name)
ARITHMETIC_SETTINGS = ("MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                       "DNNL_MAX_CPU_ISA")


def host_facts() -> dict[str, Any]:
    """What a record says of the machine: the platform, the CPU model and the instruction set torch's CPU kernels run
    (``torch.backends.cpu.get_cpu_capability()``) with the maths libraries' settings (:data:`ARITHMETIC_SETTINGS`:
    ``MKL_ENABLE_INSTRUCTIONS``, ``MKL_CBWR``, ``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``) where given. A figure
    repeats to the last digit only where these agree: two machines reporting the same platform gave accuracies a few
    tenths of a point apart (their training losses differed in the last bits)."""
    import torch

    facts: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine()}
    try:
        with open("/proc/cpuinfo") as f:
            facts["cpu"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:  # (no /proc: macOS, Windows)
        facts["cpu"] = platform.processor() or None
    facts["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    facts.update({name: os.environ[name] for name in ARITHMETIC_SETTINGS if name in os.environ})
    return facts


def code_version() -> dict[str, Any] | None:
    """The code a record's run imported, where fwdlearn runs from a git checkout: ``{"commit": <HEAD>, "modified":
    <tracked files differ from it>}``; ``None`` for an installed copy, or without git. (``versions`` says fwdlearn
    0.1.0 over hundreds of commits: a published record could be tied to its code only by its start time, and not at
    all to uncommitted changes.)"""
    import subprocess

    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    try:
        top, commit = git("rev-parse", "--show-toplevel", "HEAD").splitlines()
        if Path(top).resolve() != root:  # (an installed copy inside another project's repository)
            return None
        return {"commit": commit, "modified": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, ValueError, subprocess.SubprocessError):  # (no git, not a checkout)
        return None


class RunRecord:
    """What one run did: its config, a row of metrics per logged step, and a summary.

    Example::

        record = RunRecord("graph-train", config, seed=0)
        record.log(epoch=1, loss=0.7, val_accuracy=0.81)
        record.summary["test_accuracy"] = 0.84
        record.add_file("checkpoint", "runs/cora-sf.pt")   # must exist
        record.save("runs/cora-sf.json")
    """

    def __init__(self, job: str, config: Any = None, seed: int | None = None) -> None:
        self.job = job
        self.config = config
        self.seed = seed
        self.metrics: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {}
        self.files: dict[str, str] = {}
        self.started = time.time()
        self.code = code_version()  # (when the run starts: the code it imported, not the tree at saving)

    def add_file(self, kind: str, path: str | Path) -> None:
        """Name a file this run wrote (``"checkpoint"``, ``"plot"``, ...); it must exist."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"the record would name {kind} {path}, which was not written")
        self.files[kind] = str(path)

    def log(self, **metrics: Any) -> None:
        """Append one row of metrics."""
        self.metrics.append(metrics)

    def as_dict(self, pending: Iterable[str | Path] = ()) -> dict[str, Any]:
        """The record as plain JSON values (non-finite numbers as ``None``, listed under ``"non_finite"``).
        ``pending``: files it names that are written together with it (a bench's results:
        :meth:`fwdlearn.bench.BenchRun.finish`), not there yet; every other file it names must exist."""
        pending = {Path(path) for path in pending}
        missing = [f"{kind} {path}" for kind, path in self.files.items()
                   if Path(path) not in pending and not Path(path).is_file()]
        if missing:
            raise FileNotFoundError(f"the record names {', '.join(missing)}, which no longer exist(s)")
        return plain_json({
            "job": self.job,
            "command": invoked_command(),
            "config": self.config,
            "seed": self.seed,
            "summary": self.summary,
            "files": self.files,
            "cwd": os.getcwd(),  # (the folder the files' relative paths start from)
            "metrics": self.metrics,
            "seconds": time.time() - self.started,
            "started": datetime.fromtimestamp(self.started, timezone.utc).isoformat(),
            "versions": library_versions(),
            "host": host_facts(),
            "code": self.code,
        })

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the record as JSON (atomically); refuses to replace an existing file unless ``overwrite``."""
        refuse_overwrite(path, overwrite=overwrite, flag="overwrite=True (--overwrite)")
        return write_json(path, self.as_dict())

    def save_with(self, path: str | Path, texts: Mapping[str, tuple[str | Path, str]], overwrite: bool = False) -> Path:
        """Save the record with text files it names, written together (:func:`~fwdlearn.files.atomic_write_all`: a
        failure or an interrupt leaves the earlier set whole, never a new file beside an old record): ``texts`` maps
        kind -> ``(path, text)``, named first in the record's files. Refuses to replace an existing record unless
        ``overwrite``."""
        refuse_overwrite(path, overwrite=overwrite, flag="overwrite=True (--overwrite)")
        self.files = {**{kind: str(file) for kind, (file, _) in texts.items()}, **self.files}
        record = json_text(self.as_dict(pending=[file for file, _ in texts.values()]))
        atomic_write_all({**{file: lambda tmp, text=text: tmp.write_text(text, encoding="utf-8")
                             for file, text in texts.values()},
                          path: lambda tmp: tmp.write_text(record, encoding="utf-8")})
        return Path(path)

    @staticmethod
    def default_path(job: str, folder: str | Path = "runs") -> Path:
        """A fresh file name ``<folder>/<job>-<UTC time>-<random>.json``, unique per run."""
        from .runs import fresh_stem

        stem = fresh_stem(job, folder)
        return stem.with_name(stem.name + ".json")


@dataclasses.dataclass(frozen=True)
class SavedRecord:
    """A run record as :func:`read_record` read it: its command, the files it names, the folder it was written from."""

    #: where it was read
    path: Path
    #: the command of its run (``"seq-train"``, ...; ``""`` in JSON that names none)
    job: str
    #: ``{kind: path as recorded}``
    files: dict[str, str]
    #: the run's working folder, which its relative paths start from (``None``: a record of an older fwdlearn)
    cwd: Path | None

    def candidates(self, kind: str) -> list[Path]:
        """The paths the file ``kind`` may be at now, most likely first: an absolute one as recorded; a relative one
        from the run's folder (resumed from another folder), from this one (the run's folder renamed, moved or
        mounted elsewhere, and used from its new place), and from each folder above the record (moved, and used from
        elsewhere; a record without ``"cwd"``)."""
        near, above = self._bases(kind)
        return near + [path for path in above if path not in near]

    def _bases(self, kind: str) -> tuple[list[Path], list[Path]]:
        """:meth:`candidates` as ``(as recorded, from the run's folder and from this one; from the folders above the
        record)``."""
        given = Path(self.files[kind])
        if given.is_absolute():
            return [given], []
        near: list[Path] = []
        for base in [*([self.cwd] if self.cwd is not None else []), Path.cwd()]:
            if base / given not in near:
                near.append(base / given)
        return near, [base / given for base in Path(os.path.abspath(self.path)).parents]

    def spellings(self, kind: str) -> set[Path]:
        """The real paths (links resolved) the file ``kind`` may mean (:meth:`candidates`): from the run's folder and
        from this one; from the folders above the record only where neither is a file (the run's folder moved since).
        Where the file is still where its run wrote it, a file of that relative name beside the record (or above it)
        is another run's: read as this record's, a run resuming that file was let rewrite this record, leaving its
        run's checkpoint without it."""
        near, above = self._bases(kind)

        def real(paths: list[Path]) -> set[Path]:
            found = set()
            for path in paths:
                try:
                    found.add(Path(os.path.realpath(path)))
                except (OSError, ValueError):  # (a NUL in a damaged record's path)
                    continue
            return found

        def is_file(path: Path) -> bool:
            try:
                return path.is_file()
            except (OSError, ValueError):
                return False

        return real(near) if any(is_file(p) for p in near) else real(near + above)

    def located(self, kind: str) -> str | None:
        """Where the file ``kind`` is now, for a message: as recorded where that names it from this folder, else the
        first of :meth:`candidates` that is a file; ``None`` when none is (moved elsewhere, or removed)."""
        for path in self.candidates(kind):
            try:
                if path.is_file():
                    same = Path(self.files[kind]).is_file() and os.path.samefile(self.files[kind], path)
                    return self.files[kind] if same else str(path)
            except (OSError, ValueError):
                continue
        return None


class NoRunRecord(InputError):
    """:func:`read_record`'s refusal of a file that holds no run record it can read. ``why``: what the file is, in
    words (``"it is a bench's results"``); ``json``: whether it is JSON text, a record's format (a bench's results, a
    record cut short or damaged), not another kind of file (a torch file, a text); ``damaged``: whether it is JSON text
    that cannot be read (cut short or damaged since it was written: likely a record)."""

    def __init__(self, message: str, why: str, json: bool, damaged: bool = False) -> None:
        super().__init__(message)
        self.why, self.json, self.damaged = why, json, damaged


#: the largest file :func:`read_record` reads as a run record unless it ends as a JSON object does (``}``): a record is
#: some kB to a few MB (``graph train --splits 5 --epochs 300 --patience 0``, a history row per epoch of each of 4
#: layers of 5 splits: 0.8 MB), and a file of 2 GB put at a record's path took 18 s and 4 GB of memory to be found no
#: record. A long run's record may be larger (``seq train`` logs a row per step, about 125 bytes: 560,000 steps wrote
#: 70 MB), and it ends with its closing brace: it is read whole
RECORD_BYTES = 64 << 20


def _ends_an_object(handle, size: int) -> bool:
    """Whether the file open as ``handle`` (``size`` bytes) ends as a JSON object does, with ``}`` (and white space):
    its last bytes read, no more."""
    handle.seek(max(0, size - 64))
    return handle.read(64).rstrip().endswith(b"}")


def read_record(path: str | Path, largest: int | None = RECORD_BYTES) -> SavedRecord | None:
    """The run record at ``path`` (:meth:`RunRecord.save`'s JSON; any command's); ``None`` where no regular file is
    there (none, a folder, a device or a pipe: those were read without end). A file there that is no run record is
    a :class:`NoRunRecord` (an :class:`~fwdlearn.errors.InputError`) naming it and what it is: not a JSON object, not
    UTF-8 text, not valid JSON (cut short or damaged), a bench's results, a ``"job"`` that is no string, or larger
    than ``largest`` bytes (by default :data:`RECORD_BYTES`, 64 MiB; ``None``: any size) without ending as a JSON
    object does, which is not read (a big file is something else: a torch file, data). A file over ``largest`` that
    ends with ``}`` (the record of a long run: ``seq train`` logs a row per step) is read whole. Keys a record of an
    older fwdlearn (or a JSON object of the user's) lacks are read as empty (``"job"``: ``""``; ``"files"``: none;
    ``"cwd"``: ``None``)."""
    path = Path(path)

    def refused(why: str, json: bool = True, damaged: bool = False, readable: bool = False) -> NoRunRecord:
        what = "a run record fwdlearn can read" if readable or damaged else "a run record"
        return NoRunRecord(f"{path} is not {what}{' ' if why.startswith('(') else ': '}{why}", why, json, damaged)

    try:
        if not path.is_file():
            return None
        with open(path, "rb") as handle:
            if handle.read(64).lstrip()[:1] != b"{":  # (a torch file, a text: never read whole)
                raise refused("it is not a JSON object", json=False)
            size = os.fstat(handle.fileno()).st_size
            whole = largest is None or size > largest and _ends_an_object(handle, size)  # (a long run's record: a
            # record that the run itself wrote was refused as larger than a record, and --resume with it)
            too_big = not whole and size > largest
            handle.seek(0)
            # (no more than the cap read, even of a file grown since its size was asked)
            data = b"" if too_big else handle.read(-1 if whole else largest + 1)
            if too_big or not whole and len(data) > largest:
                raise refused(f"it is larger than {largest:,} bytes, more than a run record holds (some kB to a few "
                              "MB)", json=False)
    except OSError as error:
        raise refused(f"({error.strerror or error})", json=False, readable=True) from None
    try:
        content = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise refused(f"it is not UTF-8 text (byte {error.start}), damaged since it was written",
                      damaged=True) from None
    except (ValueError, RecursionError) as error:
        raise refused(f"it is not valid JSON ({error}), cut short or damaged since it was written",
                      damaged=True) from None
    if "rows" in content:  # (a JSON object: it began with '{')
        raise refused("it is a bench's results")
    if not isinstance(content.get("job", ""), str):
        raise refused(f"its \"job\" is {content['job']!r}, not a command's name")
    files, cwd = content.get("files"), content.get("cwd")
    return SavedRecord(path=path, job=content.get("job", ""),
                       files={kind: p for kind, p in files.items() if isinstance(p, str)} if isinstance(files, dict)
                       else {},
                       cwd=Path(cwd) if isinstance(cwd, str) and cwd else None)
